"""Where a warm sms function's invocations spend their time at a given receiver delay, beside the
bare client loop measured in the same minute (docs/performance.md, "Third pass"):

  python infra/bench_timeline.py [--receiver-delay-ms 20] [--batches 10] [--accounts 2]

For each invocation of 100 events x 10 subscriptions (1,000 webhooks): from the invoke to the
first delivered webhook, from the first to the last, and from the last to the invoke's answer;
then the rate over the bare loop's. Needs the release build (`make bench` builds it)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
import cfn  # noqa: E402
import supervise  # noqa: E402


def delivered_by_invocation(output: str) -> list[list[float]]:
    """The epoch seconds of each "webhook delivered" line, grouped by invocation (the span's
    request id), in the order the invocations began. Pure."""
    by: dict[str, list[float]] = {}
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("message") != "webhook delivered":
            continue
        at = datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        by.setdefault(record.get("span", {}).get("request_id", ""), []).append(at)
    return sorted(by.values(), key=min)


def phases(span: tuple[float, float], delivered: list[float]) -> dict[str, float]:
    """One invocation's phases in ms: before its first delivery, first to last, after its last. Pure."""
    start, end = span
    first, last = min(delivered), max(delivered)
    return {"before_ms": (first - start) * 1e3, "within_ms": (last - first) * 1e3,
            "after_ms": (end - last) * 1e3, "total_ms": (end - start) * 1e3, "webhooks": len(delivered)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--receiver-delay-ms", type=int, default=20)
    ap.add_argument("--aws-delay-ms", type=int, default=5)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--accounts", type=int, default=2)
    args = ap.parse_args()
    log_dir = cfn.LOCAL / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    with bench.pinned():  # the measure's CPU split, as make bench has it
        serve, receiver, aws = bench._serve(args.receiver_delay_ms, args.aws_delay_ms, 10, log_dir)
        try:
            bare = bench._bare(receiver, 10000, 32)
            fn = bench.Emulated(bench.RELEASE / "sms", bench.function_env("sms", aws, {"ALLOW_PRIVATE_TARGETS": "true"}),
                                log_dir / "timeline-sms.log")
            try:
                fn.invoke(bench.sms_batch(args.accounts, args.accounts))  # the cold start and the cache
                bench.pin_process(fn.runtime_pid(), bench.measured_cpus())
                events = [bench.sms_batch(args.accounts, 100) for _ in range(args.batches)]
                spans = []
                for event in events:
                    started = time.time()
                    fn.invoke(event)
                    spans.append((started, time.time()))
                output = fn.output()
            finally:
                fn.stop()
        finally:
            supervise._terminate(serve)
    groups = delivered_by_invocation(output)[1:]  # the warm-up invocation is not measured
    print(f"bare loop: {bare['rate']:.0f} webhooks/s, 1,000 in {1e6 / bare['rate']:.0f} ms")
    total = 0.0
    for span, delivered in zip(spans, groups):
        p = phases(span, delivered)
        total += p["total_ms"]
        print(f"before {p['before_ms']:5.1f}  within {p['within_ms']:6.1f}  after {p['after_ms']:5.1f}  "
              f"total {p['total_ms']:6.1f} ms  ({p['webhooks']} webhooks)")
    rate = 1000 * len(spans) / (total / 1e3)
    print(f"function: {rate:.0f} webhooks/s = {100 * rate / bare['rate']:.1f} % of the bare loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
