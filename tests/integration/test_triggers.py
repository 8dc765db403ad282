"""All 17 triggers through the real binaries on the emulator: every input type published, every
webhook arriving once, verified, with the data of docs/webhooks.md; plus the stateful conditions
that only the live stack can show (counters filled from receipts, redelivery counted once)."""

import json
import re
import time
from pathlib import Path

import pytest

from conftest import SECRET, envelope, publish, put_subscription, unique

ROOT = Path(__file__).resolve().parents[2]


def sample(event_type: str, account: str) -> dict:
    body = json.loads(json.loads((ROOT / "events" / f"{event_type}.json").read_text())["Records"][0]["body"])
    # Now as occurred_at: the rate windows end at the current minute, whatever day the test runs.
    body.update(account_id=account, id=unique("evt"), occurred_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return body


def catalogue_keys() -> dict[str, set[str]]:
    """The data keys of each trigger's example in docs/webhooks.md."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    keys = {}
    for block in re.findall(r"```json\n(.*?)\n```", text, re.S):
        body = json.loads(block)
        if "type" in body and body.get("type") != "<trigger>":
            keys[body["type"]] = set(body["data"])
    return keys


@pytest.fixture(scope="module")
def all_webhooks(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/all", SECRET)
    put_subscription(stack, account, "sub_all", url, triggers="*",
                     balance_low={"threshold": 100},
                     delivery_rate_low={"threshold": 0.9, "min_samples": 1},
                     bounce_rate_high={"threshold": 0.05, "min_samples": 1},
                     keywords=[{"keyword": "order", "match": "contains"}])

    def ours(r):
        return r.path == f"/{account}/all"

    phases = [
        ["sms.received", "sms.status_changed", "account.balance_changed", "campaign.started", "campaign.completed",
         "campaign.failed", "contact.added", "message.scheduled", "auto_reply.sent", "sender_id.approved",
         "sender_id.rejected"],
        ["contact.updated", "message.cancelled"],  # need the state the first phase stored
        ["contact.deleted"],
    ]
    expected = 0
    for phase in phases:
        for t in phase:
            publish(stack, sample(t, account))
        expected += len(phase) + (2 if "sms.status_changed" in phase else 0) + (1 if "sms.received" in phase else 0)
        receiver.wait_for(ours, count=expected, timeout=30)
    stack.settle()  # everything published has had its effect: anything extra is here now
    return receiver.wait_for(ours, count=10**6, timeout=0)


def test_every_trigger_arrives_once_verified(all_webhooks):
    types = sorted(h.json["type"] for h in all_webhooks)
    assert types == sorted([
        "sms.received", "sms.status_changed", "balance.low", "campaign.started", "campaign.completed",
        "campaign.failed", "contact.added", "contact.updated", "contact.deleted", "message.scheduled",
        "message.cancelled", "keyword.matched", "auto_reply.sent", "delivery_rate.low", "bounce_rate.high",
        "sender_id.approved", "sender_id.rejected"])
    assert all(h.verified for h in all_webhooks), [h.error for h in all_webhooks if not h.verified]
    assert len({h.headers["webhook-id"] for h in all_webhooks}) == 17


def test_data_matches_the_catalogue(all_webhooks):
    keys = catalogue_keys()
    assert len(keys) == 20, "the 17 triggers and the 3 operational webhooks"
    for h in all_webhooks:
        assert set(h.json["data"]) == keys[h.json["type"]], h.json["type"]


def test_stateful_data(all_webhooks):
    by_type = {h.json["type"]: h.json["data"] for h in all_webhooks}
    assert by_type["contact.updated"]["changed_fields"] == ["custom_fields.tier", "name"]
    assert by_type["contact.updated"]["previous"] == {"custom_fields.tier": "gold", "name": "Dana Smith"}
    assert by_type["contact.deleted"]["contact"]["name"] == "Dana Smith-Jones"
    assert by_type["message.cancelled"]["original_schedule"]["send_at"] == "2026-12-01T15:00:00Z"
    assert by_type["balance.low"] == {"balance": 42.5, "threshold": 100.0, "currency": "USD",
                                      "account": {"id": all_webhooks[0].json["account_id"], "name": "Acme Retail"}}
    assert by_type["keyword.matched"]["keyword"] == "order" and by_type["keyword.matched"]["reserved"] is None
    assert by_type["sms.status_changed"]["previous_status"] is None
    assert by_type["bounce_rate.high"]["reasons"] == {"30003": 1}
    assert by_type["bounce_rate.high"]["affected_numbers"] == ["+14155550123"]
    assert by_type["delivery_rate.low"]["affected_campaigns"] == [{"campaign_id": "cmp_spring_sale", "rate": 0.0, "samples": 1}]


def test_receipts_stale_duplicate_and_counters(stack, receiver):
    """sms.status_changed: previous_status, a duplicate and a stale receipt emit nothing; the
    campaign's counters fill campaign.completed when the platform omits the figures."""
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/receipts", SECRET)
    put_subscription(stack, account, "sub_r", url, triggers=["sms.status_changed", "campaign.completed"])

    def receipt(mid, status, at, campaign="cmp_1"):
        return envelope("sms.status_changed", account, {"message_id": mid, "status": status, "recipient": "+1555",
                                                        "campaign_id": campaign}, occurred_at=at)

    def hits(n, t="sms.status_changed"):
        return receiver.wait_for(lambda r: r.path == f"/{account}/receipts" and r.json["type"] == t, count=n, timeout=20)

    publish(stack, receipt("m1", "sent", "2026-11-30T10:00:00Z"))
    hits(1)
    publish(stack, receipt("m1", "delivered", "2026-11-30T10:01:00Z"))
    assert hits(2)[-1].json["data"]["previous_status"] == "sent"
    publish(stack, receipt("m1", "delivered", "2026-11-30T10:02:00Z"))  # duplicate status
    publish(stack, receipt("m1", "sent", "2026-11-30T09:59:00Z"))  # stale
    publish(stack, receipt("m2", "failed", "2026-11-30T10:01:00Z"))
    publish(stack, receipt("m3", "delivered", "2026-11-30T10:01:00Z"))
    assert len(hits(4)) == 4
    stack.settle()
    assert len(hits(5, "sms.status_changed")) == 4, "duplicate or stale receipt emitted"
    publish(stack, envelope("campaign.completed", account, {"campaign_id": "cmp_1", "name": "Test"}))
    [done] = hits(1, "campaign.completed")
    assert {k: done.json["data"][k] for k in ("total_sent", "delivered", "failed", "delivery_rate")} == \
        {"total_sent": 3, "delivered": 2, "failed": 1, "delivery_rate": 0.6667}


def test_balance_fires_once_until_rearmed(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/bal", SECRET)
    put_subscription(stack, account, "sub_b", url, triggers=["balance.low"],
                     balance_low={"threshold": 100, "rearm_above": 150})

    def bal(amount, minute):
        return envelope("account.balance_changed", account, {"balance": amount}, occurred_at=f"2026-11-30T10:{minute:02d}:00Z")

    def hits(n):
        return receiver.wait_for(lambda r: r.path == f"/{account}/bal", count=n, timeout=15)

    for amount, minute in [(100, 0), (90, 1)]:  # exactly at the threshold: nothing; below: fires
        publish(stack, bal(amount, minute))
        stack.settle()  # applied before the next one is published
    assert [h.json["data"]["balance"] for h in hits(1)] == [90]
    for amount, minute in [(80, 2), (120, 3), (40, 4)]:  # still disarmed (120 < rearm_above)
        publish(stack, bal(amount, minute))
        stack.settle()  # applied before the next one is published
    publish(stack, bal(500, 1))  # stale: older than the last applied, ignored
    stack.settle()
    publish(stack, bal(150, 5))  # re-arms
    stack.settle()
    publish(stack, bal(10, 6))  # fires again
    assert [h.json["data"]["balance"] for h in hits(2)] == [90, 10]
