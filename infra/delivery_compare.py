"""Builds of the sms bootstrap against each other with the delivery measure of `make bench`
(infra/bench.py `_warm_run`, called as it is: one warm process through `--batches` invocations of 100 events x 10
subscriptions, its CPU time per webhook and its rate), beside the bare client loop, all in turn
round after round so that they meet the same minutes of the machine:

  python infra/delivery_compare.py BINARY[@NAME=VALUE] BINARY[@NAME=VALUE] ... [--rounds 6]
                                   [--batches 10] [--receiver-delay-ms 20]

A BINARY is a release bootstrap (copy target/release/sms aside before a change); `@NAME=VALUE`
adds one environment variable for that entry only, so one build can be compared with itself under
another setting (`target/release/sms@LOG_LEVEL=warn`). Prints every round, then for each entry
its least and median CPU per webhook, the ratio of the least to the bare loop's least, and its
best rate over the bare loop's best (docs/performance.md, "Fifth pass")."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import cfn  # noqa: E402
import supervise  # noqa: E402


def parse_entry(entry: str) -> tuple[Path, dict[str, str]]:
    """`path[@NAME=VALUE]` -> the path and its extra environment. Pure."""
    path, _, setting = entry.partition("@")
    if not setting:
        return Path(path), {}
    name, sep, value = setting.partition("=")
    if not sep or not name:
        raise ValueError(f"{entry!r}: expected BINARY@NAME=VALUE")
    return Path(path), {name: value}


def summary(rounds: list[float], rates: list[float], bare_cpu: float, bare_rate: float) -> str:
    """One entry's line: least and median CPU per webhook (us), least over the bare loop's least,
    best rate over the bare loop's best. Pure."""
    least = min(rounds)
    return (f"{least:.0f} us ({least / bare_cpu:.2f}x the bare loop), median {statistics.median(rounds):.0f} us; "
            f"{max(rates):.0f}/s ({max(rates) / bare_rate * 100:.1f} %)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("entries", nargs="+")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--receiver-delay-ms", type=int, default=20)
    ap.add_argument("--aws-delay-ms", type=int, default=5)
    args = ap.parse_args()
    entries = [(e, *parse_entry(e)) for e in args.entries]
    log_dir = cfn.LOCAL / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    batch, accounts = 100, 2
    webhooks = args.batches * batch * 10
    with bench.pinned():  # the measure's CPU split, as make bench has it
        serve, receiver, aws = bench._serve(args.receiver_delay_ms, args.aws_delay_ms, 10, log_dir)
        cpu: dict[str, list[float]] = {e: [] for e, _, _ in entries}
        rate: dict[str, list[float]] = {e: [] for e, _, _ in entries}
        bare_cpu: list[float] = []
        bare_rate: list[float] = []
        try:
            for r in range(args.rounds):
                bare = bench._bare(receiver, webhooks, 32)
                bare_cpu.append(bare["cpu_us_per_request"])
                bare_rate.append(bare["rate"])
                line = [f"round {r}: bare {bare_cpu[-1]:.0f} us {bare_rate[-1]:.0f}/s"]
                for name, binary, extra in entries:
                    run = bench._warm_run(receiver, aws, args.batches, batch, accounts,
                                          log_dir / "delivery-compare.log", binary, extra)
                    cpu[name].append(run["cpu"] / webhooks * 1e6)
                    rate[name].append(webhooks / run["seconds"])
                    line.append(f"{name} {cpu[name][-1]:.0f} us {rate[name][-1]:.0f}/s")
                print(" | ".join(line), flush=True)
        finally:
            supervise._terminate(serve)
    print(f"bare loop: least {min(bare_cpu):.0f} us per request, best {max(bare_rate):.0f}/s")
    for name, _, _ in entries:
        print(f"  {name}: {summary(cpu[name], rate[name], min(bare_cpu), max(bare_rate))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
