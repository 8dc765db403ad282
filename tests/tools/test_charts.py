"""The charts `make soak` and `make bench` write (infra/charts.py), and the glue that calls it at the
end of infra/soak.py, infra/bench_state.py (load samples) and infra/bench.py: PNG files under the
charts directory, drawn from samples kept beside them, and a chart that cannot be drawn never
changes a verdict. Synthetic samples, no stack, no Rust."""

from __future__ import annotations

import json
import random
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

import charts  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def out(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(charts, "CHARTS", tmp_path / "charts")
    return tmp_path / "charts"


def is_png(path: Path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def soak_like(n: int = 400, seed: int = 1) -> tuple[dict, dict, dict, dict, list, float]:
    rng = random.Random(seed)
    t0 = 1_796_000_000.0
    expected = {f"msg_{i:04d}": t0 + i * 0.05 for i in range(n)}
    delivered, dlq = {}, {}
    for i, (w, t) in enumerate(expected.items()):
        if i % 97 == 0:
            dlq[w] = "retry schedule exhausted after 6 attempts"
        elif i % 131 == 0:
            continue  # lost
        else:
            delivered[w] = [t + rng.lognormvariate(1.5, 1.0)] + ([t + 200] if i % 150 == 1 else [])
    faults = {"ok": 500, "500": 40, "429": 35, "slow": 30, "reset": 31}
    return expected, delivered, dlq, faults, ["20s admin (1 process)", "46s sms (1 process)"], t0


def test_soak_charts(out):
    expected, delivered, dlq, faults, kills, t0 = soak_like()
    samples = charts.soak_samples(expected, delivered, dlq, faults, kills, t0)
    paths = charts.soak_charts(json.loads(json.dumps(samples)), out)
    assert [p.name for p in paths] == ["soak-latency.png", "soak-throughput.png", "soak-outcomes.png"]
    assert all(is_png(p) for p in paths)


def test_charts_of_nothing_are_still_drawn(out):
    paths = charts.soak_charts(charts.soak_samples({}, {}, {}, {}, [], 0.0), out)
    assert all(p.exists() and p.read_bytes()[:8] == PNG for p in paths)


def test_percentile_is_the_soak_reports():
    import soak

    values = [random.Random(3).random() * 100 for _ in range(1001)]
    for p in (50, 99):
        assert charts.percentile(values, p) == soak.pct(values, p)


def test_soak_write_charts_glue(out, capsys):
    import soak

    expected, delivered, dlq, faults, kills, t0 = soak_like()
    receiver = SimpleNamespace(lock=threading.Lock(), delivered=delivered, faults=faults)
    soak.write_charts(expected, receiver, dlq, kills, t0, {"lost": 3})
    printed = capsys.readouterr().out
    assert printed.count("chart: ") == 3, printed
    samples = json.loads((out / "soak-samples.json").read_text())
    assert samples["report"] == {"lost": 3} and len(samples["expected"]) == len(expected)
    # Drawn again from the samples alone, as `python infra/charts.py soak` does.
    assert all(is_png(p) for p in charts.soak_charts(samples, out / "again"))


def test_a_chart_that_fails_does_not_fail_the_soak(out, capsys, monkeypatch):
    import soak

    monkeypatch.setattr(charts, "soak_charts", lambda *a, **k: 1 / 0)
    expected, delivered, dlq, faults, kills, t0 = soak_like(10)
    soak.write_charts(expected, SimpleNamespace(lock=threading.Lock(), delivered=delivered, faults=faults),
                      dlq, kills, t0, {})
    assert "charts not written" in capsys.readouterr().err


def bench_results() -> dict:
    fns = ["sms", "operations", "contacts", "messaging", "performance", "admin"]
    return {
        "date": "2026-11-30 22:00 UTC", "commit": "abc1234",
        "size_bytes": {f: 7_000_000 + i * 100_000 for i, f in enumerate(fns)},
        "cold_ms": {f: {"median": 5.0 + i, "min": 4.0 + i, "max": 9.0 + i, "rss_after_init": 10_000_000}
                    for i, f in enumerate(fns)},
        "delivery": {"webhooks": 10000, "rate": 900.0, "bare": {"rate": 1000.0}, "ratio": 0.9},
        "cost": {"fanout_1": {"this_total": 3.1, "pipes_total": 1.4}, "fanout_10": {"this_total": 1.2, "pipes_total": 1.4}},
        "load": {"dead_letters": 0, "failed_invocations": 0, "runtime_resets": 0},
    }


def test_bench_load_samples_and_charts(out, capsys):
    import bench
    import bench_state

    t0 = 1_796_000_000.0
    bench_state.PUBLISHED_AT.clear()
    received, expected, paths = [], {"acc_bulk": 0, "acc_receipts": 0}, {"acc_bulk": "/acc_bulk/s",
                                                                          "acc_receipts": "/acc_receipts/s"}
    for i in range(600):
        eid = f"evt_{i}"
        bench_state.PUBLISHED_AT[eid] = t0 + i * 0.01
        account = "acc_bulk" if i % 2 else "acc_receipts"
        expected[account] += 1
        if i % 50 == 7:
            continue  # one missing webhook in fifty
        body = json.dumps({"type": "sms.status_changed", "event_id": eid}).encode()
        received.append(SimpleNamespace(at=t0 + i * 0.01 + 0.5 + (i % 13) * 0.1, path=paths[account], status=200,
                                        body=body, headers={"webhook-id": f"msg_{i}"}))
    receiver = SimpleNamespace(received=received)
    bench_state.save_load_samples(receiver, expected, paths, {"dead_letters": 0, "failed_invocations": 0})
    assert (out / "bench-load-samples.json").exists()
    bench.draw_charts(bench_results())
    printed = capsys.readouterr().out
    names = sorted(Path(line.split("chart: ")[1]).name for line in printed.splitlines() if line.startswith("chart: "))
    assert names == ["bench-figures.png", "bench-load-latency.png", "bench-load-outcomes.png",
                     "bench-load-throughput.png"], printed
    assert all(is_png(out / n) for n in names)


def test_bench_without_load_draws_only_the_figures(out, capsys):
    import bench

    results = bench_results()
    del results["load"]
    bench.draw_charts(results)
    printed = capsys.readouterr().out
    assert printed.count("chart: ") == 1 and "bench-figures.png" in printed
