"""`make bench` pacing section: delivering at each receiver's pace, through the whole local stack
(the emulator and the six function binaries, 3 execution environments each as `make up` runs
them, or $LOCAL_ENVIRONMENTS) with the template's retry schedule. Each case runs on a fresh
stack, so what one leaves queued (retries due in minutes) cannot touch the next.

  (a) rate limit   account F's subscription `crm` (sms.status_changed) with `rate_limit: 5`; its
                   receiver serves 5 requests in any 1-second window and answers 429 with
                   `Retry-After: 1` beyond. A campaign's N final receipts (distinct messages, one
                   webhook each) published as fast as the emulator takes them. Figures: the peak
                   requests in any 1-second window at the receiver (target <= 1.1 x the rate), 429s
                   per webhook (<= 1 %), first publish to all N delivered (<= 1.2 x N / rate + 30 s)
  (b) no limit     the same campaign, another account, no `rate_limit`, a fresh receiver of the same
                   capacity: 429s per webhook (<= 10 %), attempts per webhook, first publish to all
                   delivered (<= 2 x N / rate + 60 s), dead letters (0)
  (c) neighbours   account E has 40 subscriptions to contact.added whose endpoint answers after 20 s,
                   account H one healthy subscription; both publish 20 contact.added, interleaved, as
                   fast as possible. H's latency from publish to receipt: p50, maximum (<= 5 s)
  (d) limiter cost the State table's `pace` items (partition key `pace#...`, the emulator's kind
                   "pace"), read and write units per webhook of (a) (<= 0.1 write units)

Each case is time-boxed (its target plus 30 s; (c) 120 s): a case that does not finish reports a
miss instead of hanging the bench.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from pathlib import Path

import stack as local_stack
import cfn
import provision
import supervise
from bench_state import PUBLISHED_AT, SECRET, dead_letters, publish_all, queues_empty
from receiver import Receiver, peak_per_second

RATE = 5.0  # requests per second the receiver serves, and (a)'s rate_limit
NEIGHBOUR_SUBSCRIPTIONS = 40
NEIGHBOUR_EVENTS = 20
NEIGHBOUR_DELAY_S = 20
NEIGHBOUR_TIMEBOX_S = 120


def template_retry_schedule() -> str:
    return cfn.load_template()["Parameters"]["RetrySchedule"]["Default"]


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + "Z"


def campaign(account: str, n: int, campaign_id: str) -> list[dict]:
    """N final receipts of N distinct messages (85 % delivered, 10 % failed, 5 % bounced): one
    sms.status_changed webhook each."""
    now = time.time()
    events = []
    for i in range(n):
        status = "delivered" if i % 20 < 17 else ("failed" if i % 20 < 19 else "bounced")
        data = {"message_id": f"msg_{uuid.uuid4().hex[:16]}", "status": status, "recipient": f"+1415555{i:04d}",
                "campaign_id": campaign_id}
        if status == "bounced":
            data["error_code"] = "30003"
        events.append({"id": f"evt_{uuid.uuid4().hex}", "type": "sms.status_changed", "account_id": account,
                       "occurred_at": _stamp(now - 1), "data": data})
    return events


def subscribe(stack, receiver: Receiver, account: str, sid: str, triggers: list[str], *,
              rate_limit: float | None = None, **endpoint) -> str:
    """A subscription record to a fresh receiver endpoint (`endpoint`: Receiver.endpoint's options);
    its path."""
    path = f"/{account}/{sid}"
    url = receiver.endpoint(path, SECRET, **endpoint)
    item = {"account_id": account, "subscription_id": sid, "url": url, "secrets": [SECRET], "triggers": triggers}
    if rate_limit is not None:
        item["rate_limit"] = rate_limit
    stack.client("dynamodb").put_item(TableName=stack.outputs["SubscriptionsTableName"],
                                      Item={k: provision.to_ddb_value(v) for k, v in item.items()})
    return path


def wait_delivered(receiver: Receiver, path: str, n: int, deadline: float) -> dict[str, float]:
    """Until `n` distinct webhook-ids were answered 2xx at `path`, or time.monotonic() passes
    `deadline`: each delivered webhook-id with the time of its first 2xx."""
    with receiver.lock:
        while True:
            delivered: dict[str, float] = {}
            for r in receiver.received:
                if r.path == path and 200 <= r.status < 300:
                    wid = r.headers.get("webhook-id", "")
                    delivered[wid] = min(delivered.get(wid, r.at), r.at)
            left = deadline - time.monotonic()
            if len(delivered) >= n or left <= 0:
                return delivered
            receiver.lock.wait(min(left, 1.0))


def requests_at(receiver: Receiver, path: str) -> list:
    with receiver.lock:
        return [r for r in receiver.received if r.path == path]


def drain(stack, timeout: float = 30.0) -> None:
    """Let the functions finish what they hold (claims finished, messages deleted), at most `timeout`."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        quiet = quiet + 1 if queues_empty(stack) else 0
        time.sleep(0.5)


def pace_units(stats: dict, table: str) -> dict:
    """The pacing state's units: the State table's partition-key kinds that start with "pace"
    (items `pace#...` are of kind "pace"), and its hottest item."""
    kinds = {k: v for k, v in stats["by_prefix"].get(table, {}).items() if k.startswith("pace")}
    hot = [h for h in stats["hottest_items"] if h["table"] == table and str(h["key"].get("pk", "")).startswith("pace")]
    return {"kinds": kinds, "read_units": sum(v["read_units"] for v in kinds.values()),
            "write_units": sum(v["write_units"] for v in kinds.values()),
            "hottest": hot[0] if hot else None}


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s"


def campaign_case(res, receiver: Receiver, log_dir: Path, n: int, environments: int, *, limited: bool) -> dict:
    """(a) with `rate_limit`, or (b) without; (d)'s units come with (a)."""
    name = "limited" if limited else "unlimited"
    budget = 1.2 * n / RATE + 30 if limited else 2 * n / RATE + 60
    stack = local_stack.Stack(port=supervise.free_port(), log_dir=log_dir / name, environments=environments,
                              env_overrides={"RETRY_SCHEDULE": template_retry_schedule()})
    try:
        tag = uuid.uuid4().hex[:6]
        account = f"acc_F_{tag}" if limited else f"acc_G_{tag}"
        path = subscribe(stack, receiver, account, "crm", ["sms.status_changed"],
                         rate_limit=RATE if limited else None, capacity=RATE, retry_after="1")
        events = campaign(account, n, f"cmp_{name}_{tag}")
        supervise.reset_emulator_stats(stack.emulator.endpoint)
        started, t0 = time.time(), time.monotonic()
        publish_rate = publish_all(stack, events)
        delivered = wait_delivered(receiver, path, n, t0 + budget + 30)
        took = (max(delivered.values()) - started) if len(delivered) >= n else None
        if took is not None:
            drain(stack)  # what follows the last 2xx (claims finished) is the run's too
        stats = supervise.emulator_stats(stack.emulator.endpoint)
        state_table = stack.outputs["StateTableName"]
        got = requests_at(receiver, path)
        f = {
            "webhooks": n, "rate": RATE, "delivered": len(delivered), "seconds": took,
            "seconds_target": budget, "ideal_seconds": n / RATE, "published_per_second": publish_rate,
            "requests": len(got), "responses_429": sum(r.status == 429 for r in got),
            "peak_per_second": peak_per_second([r.at for r in got]),
            "peak_2xx_per_second": peak_per_second([r.at for r in got if 200 <= r.status < 300]),
            "distinct_webhooks": len({r.headers.get("webhook-id") for r in got}),
            "dead_letters": dead_letters(stack),
            "failed_invocations": sum(r.failed_invocations for r in stack.runners),
            "pace": pace_units(stats, state_table),
            "state_kinds": stats["by_prefix"].get(state_table, {}),
        }
    finally:
        stack.stop()
    share = f["responses_429"] / n
    f["share_429"] = share
    f["attempts_per_webhook"] = f["requests"] / max(1, f["distinct_webhooks"])
    done = took is not None
    when = _seconds(took) if done else f"{len(delivered)}/{n} in {budget + 30:.0f} s"
    if limited:
        res.add(f"pacing (a): rate_limit {RATE:g}/s, {n} webhooks: peak requests in 1 s", str(f["peak_per_second"]),
                f"<= {1.1 * RATE:g}", f["peak_per_second"] <= 1.1 * RATE)
        res.add("  429s / webhooks", f"{f['responses_429']} ({share * 100:.1f} %)", "<= 1 %", share <= 0.01)
        res.add(f"  first publish to all delivered (N / rate {n / RATE:.0f} s)", when, f"<= {budget:.0f} s",
                done and took <= budget)
        res.add("  requests / webhooks; dead letters", f"{f['requests']} / {n}; {f['dead_letters']}", "", None)
        p = f["pace"]
        res.add("pacing (d): limiter write units / webhook", f"{p['write_units'] / n:.3f}", "<= 0.1",
                p["write_units"] / n <= 0.1)
        res.add("  limiter read units / webhook", f"{p['read_units'] / n:.3f}", "", None)
        if p["hottest"] and done:
            res.add("  hottest pace item: writes / s", f"{p['hottest']['writes'] / took:.2f}", "", None)
        kinds = ", ".join(f"{k} {v['write_units']:g}" for k, v in sorted(f["state_kinds"].items())) or "none"
        res.add("  State table write units by key kind", kinds, "", None)
    else:
        res.add(f"pacing (b): no rate_limit, receiver {RATE:g}/s, {n} webhooks: 429s / webhooks",
                f"{f['responses_429']} ({share * 100:.1f} %)", "<= 10 %", share <= 0.10)
        res.add("  attempts / webhook", f"{f['attempts_per_webhook']:.2f}", "", None)
        res.add(f"  first publish to all delivered (N / rate {n / RATE:.0f} s)", when, f"<= {budget:.0f} s",
                done and took <= budget)
        res.add("  dead letters", str(f["dead_letters"]), "0", f["dead_letters"] == 0)
        res.add("  peak requests in 1 s; pace write units / webhook",
                f"{f['peak_per_second']}; {f['pace']['write_units'] / n:.3f}", "", None)
    return f


def neighbour_case(res, receiver: Receiver, log_dir: Path, environments: int) -> dict:
    """(c): E's hanging endpoints must not delay H."""
    stack = local_stack.Stack(port=supervise.free_port(), log_dir=log_dir / "neighbours", environments=environments,
                              env_overrides={"RETRY_SCHEDULE": template_retry_schedule()})
    try:
        tag = uuid.uuid4().hex[:6]
        slow, healthy = f"acc_E_{tag}", f"acc_H_{tag}"
        for i in range(NEIGHBOUR_SUBSCRIPTIONS):
            subscribe(stack, receiver, slow, f"s{i:02d}", ["contact.added"], delay=NEIGHBOUR_DELAY_S)
        h_path = subscribe(stack, receiver, healthy, "crm", ["contact.added"])
        now = time.time()
        events = []
        for i in range(NEIGHBOUR_EVENTS):
            for account in (slow, healthy):
                events.append({"id": f"evt_{uuid.uuid4().hex}", "type": "contact.added", "account_id": account,
                               "occurred_at": _stamp(now),
                               "data": {"contact_id": f"ct_{uuid.uuid4().hex[:12]}", "contact": {"name": f"C {i}"}}})
        h_ids = {e["id"] for e in events if e["account_id"] == healthy}
        supervise.reset_emulator_stats(stack.emulator.endpoint)
        t0 = time.monotonic()
        publish_all(stack, events)
        published = {e: PUBLISHED_AT[e] for e in h_ids}
        wait_delivered(receiver, h_path, NEIGHBOUR_EVENTS, t0 + NEIGHBOUR_TIMEBOX_S)
        waited = time.monotonic() - t0
        stats = supervise.emulator_stats(stack.emulator.endpoint)
        with receiver.lock:
            first: dict[str, float] = {}
            for r in receiver.received:
                if r.path == h_path and 200 <= r.status < 300:
                    eid = r.json.get("event_id")
                    first[eid] = min(first.get(eid, r.at), r.at)
            e_requests = [r.at for r in receiver.received if r.path.startswith(f"/{slow}/")]
    finally:
        stack.stop()
    latencies = sorted(first[e] - published[e] for e in first if e in published)
    got = len(latencies)
    f = {"subscriptions_slow": NEIGHBOUR_SUBSCRIPTIONS, "events_each": NEIGHBOUR_EVENTS,
         "slow_delay_s": NEIGHBOUR_DELAY_S, "healthy_received": got,
         "p50_s": statistics.median(latencies) if latencies else None,
         "max_s": latencies[-1] if got == NEIGHBOUR_EVENTS else None,
         "slow_requests": len(e_requests),
         # Each of E's requests is open until the sender's HTTP timeout (15 s, below E's 20 s).
         "slow_open_at_once": _most_open(e_requests, 15.0),
         # The emulator serves DynamoDB one request at a time: E's claims queue there with H's.
         "dynamodb_requests": sum(stats["requests"].values()), "dynamodb_seconds": waited}
    mx = "-" if f["max_s"] is None else f"{f['max_s']:.1f} s"
    res.add(f"pacing (c): H beside E's {NEIGHBOUR_SUBSCRIPTIONS} hanging subscriptions: H received",
            f"{got}/{NEIGHBOUR_EVENTS}", "all", got == NEIGHBOUR_EVENTS)
    res.add("  H latency p50 / max", f"{'-' if f['p50_s'] is None else format(f['p50_s'], '.1f') + ' s'} / {mx}",
            "max <= 5 s", f["max_s"] is not None and f["max_s"] <= 5)
    res.add("  E's requests made / most open at once", f"{f['slow_requests']} / {f['slow_open_at_once']}", "", None)
    res.add("  DynamoDB requests meanwhile (one emulator)",
            f"{f['dynamodb_requests']} in {f['dynamodb_seconds']:.0f} s", "", None)
    return f


def _most_open(starts: list[float], length: float) -> int:
    """The most intervals [start, start + length) open at one time."""
    edges = sorted([(s, 1) for s in starts] + [(s + length, -1) for s in starts])
    most = cur = 0
    for _, d in edges:
        cur += d
        most = max(most, cur)
    return most


def bench_pacing(res, log_dir: Path, webhooks: int) -> dict:
    """The receiver-capacity section; its figures (also in res.data["pacing"])."""
    os.environ.setdefault("LOCAL_PROFILE", "release")
    environments = supervise.environments_from_env(supervise.UP_ENVIRONMENTS)  # as `make up`
    print(f"pacing: receivers that take {RATE:g} requests/s and answer 429 beyond, a {webhooks}-webhook campaign, "
          f"and a tenant beside hanging endpoints; local stack, {environments} environments per function, "
          f"{os.environ['LOCAL_PROFILE']} binaries, RETRY_SCHEDULE {template_retry_schedule()}", flush=True)
    receiver = Receiver()
    data: dict = {"webhooks": webhooks, "rate": RATE, "environments": environments}
    try:
        data["limited"] = campaign_case(res, receiver, log_dir / "pacing", webhooks, environments, limited=True)
        data["unlimited"] = campaign_case(res, receiver, log_dir / "pacing", webhooks, environments, limited=False)
        data["neighbours"] = neighbour_case(res, receiver, log_dir / "pacing", environments)
        lim = data["limited"]
        data["limiter"] = {"write_units_per_webhook": lim["pace"]["write_units"] / webhooks,
                           "read_units_per_webhook": lim["pace"]["read_units"] / webhooks}
    finally:
        receiver.stop()
        res.data["pacing"] = data
    return data
