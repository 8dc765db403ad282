"""`make bench` state section: what trigger state costs at bulk-sender scale, counted request by
request on the emulator's side (infra/dynamodb_emulator.py), through the whole local stack with
the release binaries.

Two phases on one stack (the first with a quarter of the messages), each published as fast as the emulator takes it (PublishBatch, 4
threads), in the mix of a bulk sender (per message one `sent` and one final receipt; finals 85 %
delivered, 10 % failed, 5 % bounced; plus 10 % inbound SMS):

  unsubscribed  one account with no subscription, one subscribed only to contact.added
  subscribed    one bulk account subscribed to everything (`*`, rate alerts on, campaign.completed)

For each: read and write units of the State table per 1,000 status events (webhook claims apart:
they are the delivery's cost, measured in the delivery section), the hottest item's write units and
transactional writes per 1,000 status events and the per-account ceiling they imply under
DynamoDB's 1,000 WCU/s per item, refusals (conflicts, throttles) and how they ended. The run checks
itself: every receipt's webhook arrives exactly once, each rate alert fires exactly once, and
campaign.completed reports exactly the number of messages counted.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stack as local_stack  # noqa: E402
import provision  # noqa: E402
import supervise  # noqa: E402
from receiver import Receiver  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ITEM_WCU = 1000  # DynamoDB's per-partition (so per-item) write limit
# Before this design (issue #10's count on the emulator and on-demand prices): DynamoDB per million
# input events of the mix.
BEFORE = {"unsubscribed": 5.3, "subscribed": 6.9}


def mix(account: str, messages: int, campaign: str, seed: int = 7) -> list[dict]:
    """Envelopes of a bulk send: a `sent` and a final receipt per message, 10 % inbound SMS."""
    import random

    rnd = random.Random(seed)
    now = time.time()
    stamp = lambda s: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + "Z"  # noqa: E731
    sent, final, inbound = [], [], []
    for i in range(messages):
        mid = f"msg_{uuid.uuid4().hex[:16]}"
        r = rnd.random()
        status = "delivered" if r < 0.85 else ("failed" if r < 0.95 else "bounced")
        base = {"message_id": mid, "recipient": f"+1415555{i:04d}", "campaign_id": campaign}
        sent.append({"id": f"evt_{uuid.uuid4().hex}", "type": "sms.status_changed", "account_id": account,
                     "occurred_at": stamp(now - 2), "data": {**base, "status": "sent"}})
        data = {**base, "status": status}
        if status == "bounced":
            data["error_code"] = "30003"
        final.append({"id": f"evt_{uuid.uuid4().hex}", "type": "sms.status_changed", "account_id": account,
                      "occurred_at": stamp(now - 1), "data": data})
        if i % 10 == 0:
            inbound.append({"id": f"evt_{uuid.uuid4().hex}", "type": "sms.received", "account_id": account,
                            "occurred_at": stamp(now), "data": {"message_id": f"in_{mid}", "from": base["recipient"],
                                                                "to": "+14155550000", "body": "thanks"}})
    return sent + final + inbound


# When each input event was published (event id -> time), for the load charts (infra/charts.py).
PUBLISHED_AT: dict[str, float] = {}


def publish_all(stack, events: list[dict], threads: int = 4) -> float:
    """Publish in batches of 10 from `threads` threads; the publish rate (events/s)."""
    sns = [stack.client("sns") for _ in range(threads)]
    topic = stack.outputs["EventsTopicArn"]
    chunks = [events[i:i + 10] for i in range(0, len(events), 10)]
    start = time.monotonic()

    def work(k: int) -> None:
        for chunk in chunks[k::threads]:
            sns[k].publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
                {"Id": str(j), "Message": json.dumps(e)} for j, e in enumerate(chunk)])
            PUBLISHED_AT.update((e["id"], time.time()) for e in chunk)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(events) / (time.monotonic() - start)


def queues_empty(stack) -> bool:
    sqs = stack.client("sqs")
    for name, url in stack.outputs.items():
        if not name.endswith("QueueUrl") or "DeadLetter" in name:
            continue
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        if any(int(v) for v in a.values()):
            return False
    return True


def wait_processed(stack, timeout: float) -> float:
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout:
        quiet = quiet + 1 if queues_empty(stack) else 0
        if quiet >= 3:
            return time.monotonic() - start
        time.sleep(1)
    raise TimeoutError(f"queues not empty after {timeout:.0f} s")


def dead_letters(stack) -> int:
    sqs = stack.client("sqs")
    total = 0
    for name, url in stack.outputs.items():
        if name.endswith("DeadLetterQueueUrl"):
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            total += int(a["ApproximateNumberOfMessages"])
    return total


def state_figures(stats: dict, table: str, status_events: int) -> dict:
    """Per 1,000 status events, claims apart."""
    prefixes = stats["by_prefix"].get(table, {})
    state = {p: v for p, v in prefixes.items() if p != "webhook"}
    hottest = [h for h in stats["hottest_items"] if h["table"] == table and not h["key"]["pk"].startswith("webhook#")]
    top = hottest[0] if hottest else {"write_units": 0, "writes": 0, "transactional_writes": 0, "key": None}
    k = 1000 / status_events
    wu = sum(v["write_units"] for v in state.values())
    per_event_hot = top["write_units"] / status_events
    return {
        "write_units_per_1000": wu * k,
        "read_units_per_1000": sum(v["read_units"] for v in state.values()) * k,
        "by_prefix_per_1000": {p: {"write_units": v["write_units"] * k, "read_units": v["read_units"] * k}
                               for p, v in state.items()},
        "claims_write_units_per_1000": prefixes.get("webhook", {}).get("write_units", 0) * k,
        "hottest_item": top["key"],
        "hottest_write_units_per_1000": top["write_units"] * k,
        "hottest_transactions_per_1000": top["transactional_writes"] * k,
        "ceiling_events_per_second": (ITEM_WCU / per_event_hot) if per_event_hot else float("inf"),
        "refused": stats["refused"],
        "requests": stats["requests"],
    }


def dollars_per_million_inputs(f: dict, status_share: float, prices: dict) -> float:
    """DynamoDB (State table, claims apart) per million input events of the mix."""
    per_status = (f["write_units_per_1000"] / 1000 * prices["dynamodb_per_million_wru"]
                  + f["read_units_per_1000"] / 1000 * prices["dynamodb_per_million_rru"])
    return per_status * status_share  # dollars per million input events (the per-million cancels)


def bench_state(res, log_dir: Path, messages: int, prices: dict, item_wcu: float) -> None:
    os.environ.setdefault("LOCAL_PROFILE", "release")
    print(f"state: {messages} messages through the local stack ({os.environ['LOCAL_PROFILE']} binaries; request "
          f"counts do not depend on it), emulator throttling at {item_wcu:g} WCU/s per item", flush=True)
    receiver = Receiver()
    stack = local_stack.Stack(port=supervise.free_port(), log_dir=log_dir / "state",
                              config={"item_wcu_per_second": item_wcu, "hold_ms": 30})
    data: dict = {"messages": messages, "item_wcu_per_second": item_wcu}
    try:
        ddb = stack.client("dynamodb")
        subs_table, state_table = stack.outputs["SubscriptionsTableName"], stack.outputs["StateTableName"]

        def subscribe(account: str, sid: str, triggers, **extra) -> str:
            path = f"/{account}/{sid}"
            url = receiver.endpoint(path, SECRET)
            item = {"account_id": account, "subscription_id": sid, "url": url, "secrets": [SECRET],
                    "triggers": triggers, **extra}
            ddb.put_item(TableName=subs_table, Item={k: provision.to_ddb_value(v) for k, v in item.items()})
            return path

        tag = uuid.uuid4().hex[:6]
        none, other, bulk = f"acc_none_{tag}", f"acc_other_{tag}", f"acc_bulk_{tag}"
        subscribe(other, "crm", ["contact.added"])
        bulk_path = subscribe(bulk, "all", "*",
                              delivery_rate_low={"threshold": 0.9, "window_minutes": 60, "min_samples": 50,
                                                 "cooldown_minutes": 60},
                              bounce_rate_high={"threshold": 0.03, "window_minutes": 60, "min_samples": 50,
                                                "cooldown_minutes": 60})

        # Phase 1: accounts whose subscriptions need no state.
        quiet = max(messages // 4, 100)  # ratios per 1,000 receipts: a quarter of the bulk run is plenty
        data["unsubscribed_messages"] = quiet
        events = mix(none, quiet, "cmp_a") + mix(other, quiet, "cmp_b")
        status_events = sum(e["type"] == "sms.status_changed" for e in events)
        supervise.reset_emulator_stats(stack.emulator.endpoint)
        rate = publish_all(stack, events)
        took = wait_processed(stack, timeout=900)
        f = state_figures(supervise.emulator_stats(stack.emulator.endpoint), state_table, status_events)
        f.update(published_per_second=rate, seconds=took, status_events=status_events)
        data["unsubscribed"] = f
        res.add("state, no subscription needing it: write units / 1,000 receipts", f"{f['write_units_per_1000']:.1f}",
                "0", f["write_units_per_1000"] == 0)
        res.add("  read units / 1,000 receipts", f"{f['read_units_per_1000']:.1f}", "", None)

        # Phase 2: the bulk sender, subscribed to everything.
        events = mix(bulk, messages, "cmp_bulk")
        status_events = sum(e["type"] == "sms.status_changed" for e in events)
        supervise.reset_emulator_stats(stack.emulator.endpoint)
        receiver.received.clear()
        rate = publish_all(stack, events)
        took = wait_processed(stack, timeout=1800)
        stats = supervise.emulator_stats(stack.emulator.endpoint)
        f = state_figures(stats, state_table, status_events)
        f.update(published_per_second=rate, seconds=took, status_events=status_events)

        # It all happened exactly once.
        got = [r for r in receiver.received if r.path == bulk_path]
        by_type: dict[str, set] = {}
        for r in got:
            by_type.setdefault(r.json["type"], set()).add(r.headers["webhook-id"])
        receipts = len(by_type.get("sms.status_changed", ()))
        f["webhooks"] = {t: len(ids) for t, ids in by_type.items()}
        f["duplicate_deliveries"] = len(got) - sum(len(v) for v in by_type.values())
        f["dead_letters"] = dead_letters(stack)
        publish_all(stack, [{"id": f"evt_{uuid.uuid4().hex}", "type": "campaign.completed", "account_id": bulk,
                             "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "data": {"campaign_id": "cmp_bulk", "name": "bulk"}}], threads=1)
        done = receiver.wait_for(lambda r: r.path == bulk_path and r.json["type"] == "campaign.completed", timeout=60)
        f["campaign_total_sent"] = done[0].json["data"]["total_sent"] if done else None
        data["subscribed"] = f

        res.add("state, subscribed to everything: write units / receipt", f"{f['write_units_per_1000'] / 1000:.3f}",
                "<= 2", f["write_units_per_1000"] <= 2000)
        res.add("  read units / receipt", f"{f['read_units_per_1000'] / 1000:.3f}", "", None)
        res.add("  hottest item: write units / 1,000 receipts", f"{f['hottest_write_units_per_1000']:.1f}",
                "<= 100", f["hottest_write_units_per_1000"] <= 100)
        res.add("  hottest item: transactions / 1,000 receipts", f"{f['hottest_transactions_per_1000']:.1f}", "", None)
        res.add("  per-account ceiling (1,000 WCU/s per item)", f"{f['ceiling_events_per_second']:,.0f} receipts/s",
                ">= 10,000", f["ceiling_events_per_second"] >= 10_000)
        refused = f["refused"]
        res.add("  refused: conflicts / throttles", f"{refused.get('TransactionConflict', 0)} / {refused.get('Throttling', 0)}",
                "", None)
        ok = (receipts == status_events and f["duplicate_deliveries"] == 0 and f["dead_letters"] == 0
              and len(by_type.get("delivery_rate.low", ())) == 1 and len(by_type.get("bounce_rate.high", ()))
              == 1 and f["campaign_total_sent"] == messages)
        res.add("  every receipt's webhook once, each alert once, campaign count exact",
                f"{receipts}/{status_events}, {f['campaign_total_sent']}/{messages}", "all", ok)
        res.add("  publish rate / processed in", f"{rate:,.0f} ev/s / {took:.0f} s", "", None)

        share = 2 / 2.2  # status events per input event in the mix
        for phase in ("unsubscribed", "subscribed"):
            usd = dollars_per_million_inputs(data[phase], share, prices)
            data[phase]["dynamodb_per_million_inputs"] = usd
            res.add(f"  DynamoDB state per million input events, {phase}", f"${usd:.2f}",
                    f"was ${BEFORE[phase]:.1f}", None)
    finally:
        stack.stop()
        receiver.stop()
    res.data["state"] = data


def save_load_samples(receiver, expected: dict, paths: dict, data: dict) -> None:
    """What the load charts are drawn from (.local/charts/bench-load-samples.json; bench.py draws
    them at its end). Never changes a figure."""
    try:
        import charts

        samples = charts.bench_load_samples(dict(PUBLISHED_AT), list(receiver.received), expected, paths,
                                            min(PUBLISHED_AT.values(), default=time.time()), data)
        charts.CHARTS.mkdir(parents=True, exist_ok=True)
        (charts.CHARTS / "bench-load-samples.json").write_text(json.dumps(samples))
    except Exception as e:  # noqa: BLE001
        print(f"load samples not written: {e!r}", flush=True)


def bench_load(res, log_dir: Path, status_events: int) -> None:
    """A bulk load on the local stack as it starts by default (DynamoDB's 1,000 WCU/s per item,
    conflicts on): `status_events` receipts over three accounts (half from a bulk sender subscribed
    to everything with rate alerts, three tenths from one subscribed to delivery receipts only, the
    rest from one with no subscription), plus their 10 % inbound SMS, published as fast as the
    emulator takes them. Everything must be processed with no function error or timeout, no
    runtime reset, nothing dead-lettered, and every subscribed receipt's webhook delivered once."""
    os.environ.setdefault("LOCAL_PROFILE", "release")
    print(f"load: {status_events} status events over three accounts through the local stack", flush=True)
    PUBLISHED_AT.clear()
    receiver = Receiver()
    stack = local_stack.Stack(port=supervise.free_port(), log_dir=log_dir / "load")
    data: dict = {"status_events": status_events}
    try:
        ddb = stack.client("dynamodb")
        subs_table = stack.outputs["SubscriptionsTableName"]
        tag = uuid.uuid4().hex[:6]
        accounts = {f"acc_bulk_{tag}": ("*", 0.5), f"acc_receipts_{tag}": (["sms.status_changed"], 0.3),
                    f"acc_none_{tag}": (None, 0.2)}
        paths, events, expected = {}, [], {}
        for n, (account, (triggers, share)) in enumerate(accounts.items()):
            messages = int(status_events * share) // 2
            if triggers is not None:
                paths[account] = f"/{account}/s"
                item = {"account_id": account, "subscription_id": "s", "url": receiver.endpoint(paths[account], SECRET),
                        "secrets": [SECRET], "triggers": triggers,
                        "delivery_rate_low": {"threshold": 0.9, "window_minutes": 60, "min_samples": 50,
                                              "cooldown_minutes": 60}}
                ddb.put_item(TableName=subs_table, Item={k: provision.to_ddb_value(v) for k, v in item.items()})
                expected[account] = 2 * messages
            events += mix(account, messages, f"cmp_{n}", seed=n)
        receipts = sum(e["type"] == "sms.status_changed" for e in events)
        rate = publish_all(stack, events)
        took = wait_processed(stack, timeout=1800)
        got: dict[str, set] = {}
        for r in receiver.received:
            if r.json.get("type") == "sms.status_changed":
                got.setdefault(r.path, set()).add(r.headers["webhook-id"])
        delivered = {a: len(got.get(paths[a], ())) for a in expected}
        failed = sum(r.failed_invocations for r in stack.runners)
        resets = sum(r.restarts for r in stack.runners)
        stats = supervise.emulator_stats(stack.emulator.endpoint)
        data.update(receipts=receipts, inputs=len(events), published_per_second=rate, seconds=took,
                    processed_per_second=len(events) / took, failed_invocations=failed, runtime_resets=resets,
                    dead_letters=dead_letters(stack), delivered=delivered, expected=expected,
                    refused=stats["refused"], invocations=sum(r.invocations for r in stack.runners))
        res.add(f"load: {receipts:,} receipts + {len(events) - receipts:,} inbound, processed in",
                f"{took:.0f} s ({len(events) / took:,.0f} events/s)", "minutes", took <= 900)
        res.add("  function errors or timeouts / runtime resets", f"{failed} / {resets}", "0 / 0",
                failed == 0 and resets == 0)
        res.add("  subscribed receipts delivered / dead letters",
                f"{sum(delivered.values()):,}/{sum(expected.values()):,} / {data['dead_letters']}", "all / 0",
                delivered == expected and data["dead_letters"] == 0)
        res.add("  refused: conflicts / throttles",
                f"{stats['refused'].get('TransactionConflict', 0)} / {stats['refused'].get('Throttling', 0)}", "", None)
        save_load_samples(receiver, expected, paths, data)
    finally:
        stack.stop()
        receiver.stop()
    res.data["load"] = data
