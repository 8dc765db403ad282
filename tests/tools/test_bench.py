"""The delivery benchmark's verdict over several rounds (infra/bench.py `best_of`): each side's best
rate and least CPU, so that a round slowed by the rest of the machine does not decide it. Pure."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

import bench  # noqa: E402


def test_each_side_counts_its_best_round():
    webhooks = 1000
    rounds = [
        ({"rate": 1400.0, "cpu_us_per_request": 50.0}, {"seconds": 1.0, "cpu": 0.120}),   # a busy round
        ({"rate": 1500.0, "cpu_us_per_request": 44.0}, {"seconds": 0.8, "cpu": 0.090}),
        ({"rate": 1450.0, "cpu_us_per_request": 46.0}, {"seconds": 0.75, "cpu": 0.100}),
    ]
    best = bench.best_of(rounds, webhooks)
    assert best["bare_rate"] == 1500.0 and best["bare_cpu_us"] == 44.0
    assert best["rate"] == webhooks / 0.75 and abs(best["cpu_us"] - 90.0) < 1e-9
    assert abs(best["ratio"] - (webhooks / 0.75) / 1500.0) < 1e-12
    assert abs(best["cpu_ratio"] - 90.0 / 44.0) < 1e-12
    assert [r["rate"] for r in best["rounds"]] == [1000.0, 1250.0, webhooks / 0.75], "every round is kept"
    # Each round's own ratio, its two sides back to back (information beside the verdict).
    assert [round(r["cpu_ratio"], 6) for r in best["rounds"]] == [2.4, round(90 / 44, 6), round(100 / 46, 6)]


def test_the_timeline_groups_deliveries_by_invocation_in_order():
    import bench_timeline

    def line(request_id, at, message="webhook delivered"):
        return ('{"timestamp":"2026-12-07T10:00:%06.3fZ","message":"%s","span":{"request_id":"%s"}}'
                % (at, message, request_id))

    output = "\n".join([
        "START RequestId: b", line("b", 2.0), line("b", 2.5), line("b", 2.1, "claim busy"),
        line("a", 1.0), "not json {", line("a", 1.25),
    ])
    groups = bench_timeline.delivered_by_invocation(output)
    assert [len(g) for g in groups] == [2, 2], "one group per request id, other lines left out"
    assert min(groups[0]) < min(groups[1]), "in the order the invocations began"
    p = bench_timeline.phases((min(groups[1]) - 0.030, max(groups[1]) + 0.008), groups[1])
    assert round(p["before_ms"], 3) == 30.0 and round(p["within_ms"], 3) == 500.0
    assert round(p["after_ms"], 3) == 8.0 and p["webhooks"] == 2


def test_the_cold_start_is_timed_with_a_deployed_functions_environment():
    env = bench.function_env("sms", "http://127.0.0.1:9")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    prod = bench.production_env({**env, "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9"})
    assert not [k for k in prod if k.startswith("AWS_ENDPOINT_URL")], "endpoints by the SDK's rules, as deployed"
    assert prod["AWS_REGION"] == env["AWS_REGION"] and prod["STATE_TABLE"] == env["STATE_TABLE"]


def test_a_compared_build_may_carry_one_setting_of_its_own():
    import delivery_compare

    assert delivery_compare.parse_entry("/tmp/a/sms") == (Path("/tmp/a/sms"), {})
    assert delivery_compare.parse_entry("target/release/sms@LOG_LEVEL=warn") == (
        Path("target/release/sms"), {"LOG_LEVEL": "warn"})
    assert delivery_compare.parse_entry("sms@X=a=b") == (Path("sms"), {"X": "a=b"})
    for bad in ("sms@LOG_LEVEL", "sms@=warn"):
        try:
            delivery_compare.parse_entry(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_a_compared_build_is_judged_by_its_least_cpu_and_best_rate():
    import delivery_compare

    line = delivery_compare.summary([93.0, 81.0, 96.0], [1360.0, 1374.0], bare_cpu=34.0, bare_rate=1453.0)
    assert line == "81 us (2.38x the bare loop), median 93 us; 1374/s (94.6 %)"


def test_the_measured_process_gets_a_cpu_of_its_own():
    assert bench.cpu_split({0, 1}) == ({0}, {1})
    assert bench.cpu_split({3, 1, 2}) == ({1, 2}, {3}), "the last CPU allowed, the rest for the fixture"
    assert bench.cpu_split({5}) is None, "one CPU: nothing to split, everything shares it"


def test_a_running_process_is_moved_with_every_thread():
    import os
    import subprocess
    if len(os.sched_getaffinity(0)) < 2:
        return  # nothing to move between
    cpus = bench.cpu_split(os.sched_getaffinity(0))
    # A process with a second thread, as the function has (its start's background thread).
    proc = subprocess.Popen([sys.executable, "-c",
                             "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
                             "print('up', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        bench.pin_process(proc.pid, cpus[1])
        tasks = list(Path(f"/proc/{proc.pid}/task").iterdir())
        assert len(tasks) >= 2
        assert all(os.sched_getaffinity(int(t.name)) == cpus[1] for t in tasks)
    finally:
        proc.kill()
        proc.wait()
