"""Charts of `make soak` and `make bench`: PNG files under .local/charts/ (matplotlib, no display).

`make soak` (infra/soak.py) and `make bench` (infra/bench.py) call this at their end with what they
measured; the charts are drawn from samples (one value per webhook) kept beside them as JSON, so
they can be drawn again without running anything:

  python infra/charts.py soak  [--samples .local/charts/soak-samples.json]
  python infra/charts.py bench [--results .local/bench/results.json] [--samples .local/charts/bench-load-samples.json]

soak:   soak-latency.png     end-to-end latency of each delivered webhook (publish to first 2xx)
        soak-throughput.png  webhooks published and delivered per 5 s, the kills marked
        soak-outcomes.png    every expected webhook by outcome; the receiver's answers by kind
bench:  bench-figures.png    each figure beside its target (size, cold start, delivery rate, cost)
        bench-load-latency.png, bench-load-throughput.png, bench-load-outcomes.png: the same three
                             views of the load section (the default local stack, bulk senders)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / ".local" / "charts"
DPI = 110


def percentile(values: list[float], p: float) -> float:
    """The same nearest-rank percentile as infra/soak.py's report."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_chart(latencies_s: list[float], title: str, path: Path) -> Path:
    """Histogram on logarithmic bins, with p50, p90 and p99 marked."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    values = [max(v, 1e-3) for v in latencies_s]
    if values:
        lo, hi = math.log10(min(values)), math.log10(max(values))
        hi = hi if hi > lo else lo + 1
        bins = [10 ** (lo + (hi - lo) * i / 40) for i in range(41)]
        ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white", linewidth=0.3)
        ax.set_xscale("log")
        for p, style in ((50, "-"), (90, "--"), (99, ":")):
            v = percentile(values, p)
            ax.axvline(v, color="#c44e52", linestyle=style, linewidth=1.2, label=f"p{p} {v:.3g} s")
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no deliveries", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("end-to-end latency, publish to first 2xx (s, log scale)")
    ax.set_ylabel("webhooks")
    ax.set_title(f"{title} ({len(values):,} webhooks)")
    return _save(fig, path)


def _per_bucket(times: list[float], start: float, bucket: float) -> tuple[list[float], list[float]]:
    if not times:
        return [], []
    n = int((max(times) - start) // bucket) + 1
    counts = [0] * max(n, 1)
    for t in times:
        counts[max(0, int((t - start) // bucket))] += 1
    # One more point, so that the last bucket (or the only one) is drawn as wide as the others.
    return [i * bucket for i in range(len(counts) + 1)], [c / bucket for c in counts] + [counts[-1] / bucket]


def throughput_chart(published: list[float], delivered: list[float], start: float, title: str, path: Path,
                     marks: list[tuple[float, str]] = (), bucket: float = 5.0,
                     labels: tuple[str, str] = ("published (webhooks expected)", "delivered (first 2xx)")) -> Path:
    """Webhooks published and delivered per second, averaged over `bucket` seconds, against time
    since `start`; vertical lines at `marks` (seconds, label)."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for times, label, color in ((published, labels[0], "#8c8c8c"), (delivered, labels[1], "#55a868")):
        x, y = _per_bucket(times, start, bucket)
        if x:
            ax.step(x, y, where="post", label=label, color=color, linewidth=1.2)
    for i, (t, label) in enumerate(marks):
        ax.axvline(t, color="#c44e52", linestyle="--", linewidth=0.9, label="function killed" if i == 0 else None)
        ax.annotate(label, (t, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=7, color="#c44e52")
    ax.set_xlabel("seconds since the start")
    ax.set_ylabel(f"per second ({bucket:g} s buckets)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    return _save(fig, path)


def outcomes_chart(groups: dict[str, dict[str, int]], title: str, path: Path) -> Path:
    """One horizontal bar chart per group (title -> {outcome: count}), counts written on the bars."""
    groups = {k: v for k, v in groups.items() if v}
    fig, axes = plt.subplots(len(groups) or 1, 1, figsize=(8, 1.2 + sum(0.45 * len(v) + 0.6 for v in groups.values())),
                             squeeze=False)
    for ax, (name, counts) in zip(axes[:, 0], groups.items()):
        labels = list(counts)
        values = [counts[k] for k in labels]
        colors = [_outcome_color(k) for k in labels]
        bars = ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        top = max(values) if values else 1
        for bar, v in zip(bars, values):
            ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, f"{v:,}", va="center", fontsize=8)
        ax.set_xlim(0, top * 1.15 or 1)
        ax.set_title(name, fontsize=10, loc="left")
    axes[0, 0].figure.suptitle(title)
    return _save(fig, path)


def _outcome_color(label: str) -> str:
    label = label.lower()
    if label.startswith(("delivered", "ok", "2xx")):
        return "#55a868"
    if label.startswith(("lost", "missing", "failed invocations", "runtime resets")):
        return "#c44e52"
    if label.startswith(("dead", "exhausted")):
        return "#dd8452"
    if label.startswith(("duplicate", "unexpected")):
        return "#8172b2"
    return "#4c72b0"


# ---------------------------------------------------------------- soak

def soak_samples(expected: dict[str, float], delivered: dict[str, list[float]], dead_lettered: dict[str, str],
                 faults: dict[str, int], kills: list[str], started: float, report: dict | None = None) -> dict:
    """What the soak's charts are drawn from, as JSON."""
    return {"started": started, "expected": expected, "delivered": delivered, "dead_lettered": dead_lettered,
            "faults": dict(faults), "kills": list(kills), "report": report or {}}


def soak_charts(samples: dict, out_dir: Path | None = None) -> list[Path]:
    out_dir = out_dir or CHARTS
    expected: dict[str, float] = samples["expected"]
    delivered = {w: t for w, t in samples["delivered"].items() if w in expected}
    dlq: dict[str, str] = samples["dead_lettered"]
    started = samples["started"]
    latencies = [min(t) - expected[w] for w, t in delivered.items() if t]
    marks = []
    for k in samples.get("kills", []):
        m = re.match(r"\s*([0-9.]+)s\s+(\w+)", k)
        if m:
            marks.append((float(m.group(1)), m.group(2)))
    lost = [w for w in expected if w not in delivered and w not in dlq]
    dups = sum(1 for t in delivered.values() if len(t) > 1)
    outcomes = {"delivered": len(delivered)}
    for reason, n in Counter(dlq[w] for w in expected if w in dlq and w not in delivered).most_common():
        outcomes[f"dead-lettered: {_short(reason)}"] = n
    outcomes["lost"] = len(lost)
    outcomes["duplicates (same webhook-id twice)"] = dups
    answers = {("ok (2xx)" if k == "ok" else {"500": "500", "429": "429 + Retry-After", "slow": "slower than the timeout",
                                              "reset": "connection reset"}.get(k, k)): v
               for k, v in sorted(samples.get("faults", {}).items(), key=lambda kv: kv[0] != "ok")}
    n = len(expected)
    return [
        latency_chart(latencies, "make soak: end-to-end latency", out_dir / "soak-latency.png"),
        throughput_chart(list(expected.values()), [min(t) for t in delivered.values() if t], started,
                         f"make soak: throughput ({n:,} webhooks expected)", out_dir / "soak-throughput.png", marks),
        outcomes_chart({f"every expected webhook ({n:,})": outcomes, "the receiver's answers, by kind": answers},
                       "make soak: deliveries by outcome", out_dir / "soak-outcomes.png"),
    ]


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# ---------------------------------------------------------------- bench

def bench_load_samples(published_at: dict[str, float], received: list, expected: dict[str, int], paths: dict[str, str],
                       started: float, data: dict) -> dict:
    """What the load charts are drawn from: when each input event was published, and for each
    webhook received, when, on which path, for which event."""
    rows = []
    for r in received:
        try:
            body = json.loads(r.body)
        except ValueError:
            body = {}
        rows.append({"at": r.at, "path": r.path, "status": r.status, "event_id": body.get("event_id"),
                     "type": body.get("type"), "webhook_id": r.headers.get("webhook-id")})
    return {"started": started, "published_at": published_at, "received": rows, "expected": expected,
            "paths": paths, "load": data}


def bench_charts(results: dict, load_samples: dict | None = None, out_dir: Path | None = None) -> list[Path]:
    out_dir = out_dir or CHARTS
    out = []
    fig_path = bench_figures_chart(results, out_dir / "bench-figures.png")
    if fig_path:
        out.append(fig_path)
    if load_samples:
        out += bench_load_charts(load_samples, out_dir)
    return out


def bench_figures_chart(results: dict, path: Path) -> Path | None:
    """Each figure of `make bench` that has a target, beside it."""
    panels = []
    if results.get("size_bytes"):
        panels.append("size")
    if results.get("cold_ms"):
        panels.append("cold")
    if results.get("delivery"):
        panels.append("delivery")
    if results.get("cost"):
        panels.append("cost")
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        if panel == "size":
            sizes = results["size_bytes"]
            ax.bar(list(sizes), [v / 1e6 for v in sizes.values()], color="#4c72b0")
            ax.axhline(7, color="#c44e52", linestyle="--", label="target <= 7 MB")
            ax.set_ylabel("MB")
            ax.set_title("stripped bootstrap size")
        elif panel == "cold":
            cold = results["cold_ms"]
            names = list(cold)
            med = [cold[n]["median"] for n in names]
            err = [[m - cold[n]["min"] for n, m in zip(names, med)], [cold[n]["max"] - m for n, m in zip(names, med)]]
            ax.bar(names, med, yerr=err, capsize=3, color="#4c72b0", label="function")
            hello = [cold[n].get("hello_median") for n in names]
            if all(h is not None for h in hello):
                ax.scatter(names, [1.3 * h for h in hello], color="#c44e52", marker="_", s=400, zorder=3,
                           label="target <= 1.3 x hello world (same run)")
            ax.set_ylabel("ms (median, min to max)")
            ax.set_title("cold start (INIT REPORT)")
        elif panel == "delivery":
            d = results["delivery"]
            ax.bar(["bare client loop", "sms function"], [d["bare"]["rate"], d["rate"]], color=["#8c8c8c", "#55a868"])
            ax.axhline(0.95 * d["bare"]["rate"], color="#c44e52", linestyle="--", label="target >= 95 % of bare")
            ax.set_ylabel("webhooks per second")
            ax.set_title(f"delivery ({d['webhooks']:,} webhooks, {d['ratio'] * 100:.0f} % of bare)")
        elif panel == "cost":
            cost = results["cost"]
            labels, this, pipes = [], [], []
            for key in sorted(k for k in cost if k.startswith("fanout_")):
                labels.append(f"{key.split('_')[1]} subscription(s)/event")
                this.append(cost[key]["this_total"])
                pipes.append(cost[key]["pipes_total"])
            x = range(len(labels))
            ax.bar([i - 0.2 for i in x], this, width=0.4, label="this project", color="#55a868")
            ax.bar([i + 0.2 for i in x], pipes, width=0.4, label="Pipes + API destinations", color="#8c8c8c")
            ax.set_xticks(list(x), labels)
            ax.set_ylabel("USD per million webhooks")
            ax.set_title("cost per million webhooks (us-east-1)")
        ax.legend(loc="best", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"make bench {results.get('date', '')} {results.get('commit', '')}".strip())
    return _save(fig, path)


def bench_load_charts(samples: dict, out_dir: Path | None = None) -> list[Path]:
    out_dir = out_dir or CHARTS
    published: dict[str, float] = samples["published_at"]
    received = [r for r in samples["received"] if 200 <= (r.get("status") or 0) < 300]
    first: dict[str, dict] = {}
    for r in sorted(received, key=lambda r: r["at"]):
        first.setdefault(r.get("webhook_id") or f"{r['path']}:{r['event_id']}:{r['type']}", r)
    latencies = [r["at"] - published[r["event_id"]] for r in first.values() if r.get("event_id") in published]
    started = samples["started"]
    load = samples.get("load", {})
    n_in = len(published)
    by_account = {}
    for account, path in samples.get("paths", {}).items():
        got = sum(1 for r in first.values() if r["path"] == path and r["type"] == "sms.status_changed")
        want = samples.get("expected", {}).get(account, 0)
        by_account[f"{account}: delivered"] = got
        if want > got:
            by_account[f"{account}: missing"] = want - got
    health = {"dead letters": load.get("dead_letters", 0), "failed invocations": load.get("failed_invocations", 0),
              "runtime resets": load.get("runtime_resets", 0)}
    kinds = Counter(r["type"] for r in first.values())
    return [
        latency_chart(latencies, "make bench, load: end-to-end latency", out_dir / "bench-load-latency.png"),
        throughput_chart(list(published.values()), [r["at"] for r in first.values()], started,
                         f"make bench, load: throughput ({n_in:,} input events)", out_dir / "bench-load-throughput.png",
                         bucket=2.0, labels=("input events published", "webhooks delivered (first 2xx)")),
        outcomes_chart({"subscribed receipts, by account": by_account,
                        "webhooks delivered, by type": dict(kinds.most_common()),
                        "what must stay at 0": health},
                       "make bench, load: deliveries by outcome", out_dir / "bench-load-outcomes.png"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", choices=["soak", "bench"])
    ap.add_argument("--samples", type=Path)
    ap.add_argument("--results", type=Path, default=ROOT / ".local" / "bench" / "results.json")
    ap.add_argument("--out", type=Path, default=CHARTS)
    args = ap.parse_args()
    if args.which == "soak":
        samples = json.loads((args.samples or CHARTS / "soak-samples.json").read_text())
        paths = soak_charts(samples, args.out)
    else:
        results = json.loads(args.results.read_text()) if args.results.exists() else {}
        sp = args.samples or CHARTS / "bench-load-samples.json"
        paths = bench_charts(results, json.loads(sp.read_text()) if sp.exists() else None, args.out)
    for p in paths:
        print(f"chart: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
