"""Two builds of a function's bootstrap against each other and against the bare hello world, with
the cold-start measure of `make bench` (infra/bench.py `bench_cold`: the emulator's INIT REPORT),
started in turn so that all three meet the same minutes of the machine:

  python infra/cold_compare.py BEFORE AFTER [--function sms] [--runs 40]

BEFORE and AFTER are paths to release bootstraps (copy target/release/sms aside before a change).
Prints each median and its ratio to the hello world's."""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import cfn  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--function", default="sms")
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    counter = bench.ConnectionCounter()
    log_dir = cfn.LOCAL / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    starts: dict[str, list[float]] = {"before": [], "hello world": [], "after": []}
    binaries = {"before": args.before, "hello world": bench.RELEASE / "dataflows-hello", "after": args.after}
    for _ in range(args.runs):
        for name, binary in binaries.items():
            env = bench.production_env(bench.function_env("hello" if name == "hello world" else args.function, counter.endpoint))
            starts[name].append(bench._init_ms(binary, env, log_dir / "cold-compare.log")[0])
    hello = statistics.median(starts["hello world"])
    for name, ms in starts.items():
        print(f"{name}: median {statistics.median(ms):.2f} ms over {len(ms)} starts, "
              f"{statistics.median(ms) / hello:.2f}x the hello world")
    print(f"network connections during init: {counter.count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
