"""Operational webhooks (issue #21) through the real sms binary on the emulator: an account's
other subscriptions hear, signed and once, that one of its subscriptions started failing, was
disabled, or had a webhook dead-lettered; never the subscription they are about, and an
operational webhook that fails reports nothing about itself."""

import time

from conftest import SECRET, envelope, find_dead_letter, publish, put_subscription, unique, wait_until
from test_delivery import SMS, disabled

OPS = ["subscription.failing", "subscription.disabled", "webhook.dead_lettered"]


def ops_hits(receiver, path, trigger=None):
    return [r for r in receiver.wait_for(lambda r: r.path == path, count=10**6, timeout=0)
            if trigger is None or r.json["type"] == trigger]


def test_an_auto_disable_is_told_once_to_the_accounts_ops_subscription(stack, receiver):
    account = unique("acc_ops")
    dead, ops, other = f"/{account}/dead", f"/{account}/ops", f"/{account}/other"
    six_days_ago = int(time.time()) - 6 * 86_400
    put_subscription(stack, account, "crm", receiver.endpoint(dead, SECRET, answers=[500]),
                     triggers=["sms.received"], failing_since=six_days_ago)
    put_subscription(stack, account, "ops", receiver.endpoint(ops, SECRET), triggers=OPS)
    # "*" is the 17 triggers: this one gets none of the operational webhooks.
    put_subscription(stack, account, "all", receiver.endpoint(other, SECRET), triggers="*")
    # Three webhooks fail at once: each attempt finds the streak older than the auto-disable period.
    for i in range(3):
        publish(stack, envelope("sms.received", account, {**SMS, "message_id": f"m{i}"}))
    receiver.wait_for(lambda r: r.path == dead, count=3, timeout=30)
    assert wait_until(lambda: disabled(stack, account, "crm"), timeout=20)
    [hit] = receiver.wait_for(lambda r: r.path == ops and r.json["type"] == "subscription.disabled", timeout=20)
    stack.settle()
    assert len(ops_hits(receiver, ops, "subscription.disabled")) == 1, "once per disable"
    assert hit.verified and hit.status == 200
    body = hit.json
    assert body["account_id"] == account and body["event_id"].startswith("ntc_")
    assert hit.headers["webhook-id"].startswith("msg_")
    data = body["data"]
    assert (data["subscription_id"], data["cause"]) == ("crm", "failing")
    assert data["reason"].startswith("every attempt failed since")
    assert "dataflows subscription enable" in data["how_to_enable"]
    assert data["url"] == receiver.url("").rstrip("/"), "the origin only"
    # The streak was already running: no subscription.failing. The others' webhooks went nowhere.
    assert ops_hits(receiver, ops, "subscription.failing") == []
    assert [h.json["type"] for h in receiver.wait_for(lambda r: r.path == other, count=10**6, timeout=0)] == \
        ["sms.received"] * 3
    assert all(h.json["data"]["subscription_id"] == "crm" for h in ops_hits(receiver, ops))


def test_a_410_is_told_as_a_disable_with_cause_gone(stack, receiver):
    account = unique("acc_ops")
    gone, ops = f"/{account}/gone", f"/{account}/ops"
    put_subscription(stack, account, "crm", receiver.endpoint(gone, SECRET, answers=[410]), triggers=["sms.received"])
    put_subscription(stack, account, "ops", receiver.endpoint(ops, SECRET), triggers=["subscription.disabled"])
    publish(stack, envelope("sms.received", account, SMS))
    [hit] = receiver.wait_for(lambda r: r.path == ops, timeout=20)
    assert hit.json["type"] == "subscription.disabled"
    assert hit.json["data"]["cause"] == "gone" and "410 Gone" in hit.json["data"]["reason"]


def test_an_exhausted_webhook_is_told_with_its_id_and_the_streak_once(stack, receiver):
    account = unique("acc_ops")
    down, ops = f"/{account}/down", f"/{account}/ops"
    put_subscription(stack, account, "crm", receiver.endpoint(down, SECRET, answers=[502]), triggers=["sms.received"])
    put_subscription(stack, account, "ops", receiver.endpoint(ops, SECRET), triggers=OPS)
    publish(stack, envelope("sms.received", account, {**SMS, "message_id": "m_a"}))
    publish(stack, envelope("sms.received", account, {**SMS, "message_id": "m_b"}))
    hits = receiver.wait_for(lambda r: r.path == down, count=8, timeout=40)
    ids = {h.headers["webhook-id"] for h in hits}
    assert len(ids) == 2
    told = receiver.wait_for(lambda r: r.path == ops and r.json["type"] == "webhook.dead_lettered", count=2, timeout=30)
    stack.settle()
    told = ops_hits(receiver, ops, "webhook.dead_lettered")
    assert {h.json["data"]["webhook_id"] for h in told} == ids, "one per dead letter, with its webhook-id"
    assert len(told) == 2
    for h in told:
        data = h.json["data"]
        assert (data["subscription_id"], data["trigger"], data["attempts"]) == ("crm", "sms.received", 4)
        assert data["last_error"] == "receiver answered 502"
        assert "hello" not in h.body.decode(), "never the payload"
        assert find_dead_letter(stack, "SmsDeadLetterQueueUrl", data["webhook_id"]) is not None
    # Two webhooks failed together: the streak began once, and was told once.
    [failing] = ops_hits(receiver, ops, "subscription.failing")
    assert failing.json["data"]["first_failure"]["status"] == 502
    assert failing.json["data"]["first_failure"]["webhook_id"] in ids
    assert all(h.verified for h in ops_hits(receiver, ops))


def test_a_failing_ops_subscription_produces_nothing_about_itself(stack, receiver):
    account = unique("acc_ops")
    down, ops_down, ops_up = f"/{account}/down", f"/{account}/ops_down", f"/{account}/ops_up"
    put_subscription(stack, account, "crm", receiver.endpoint(down, SECRET, answers=[500]), triggers=["sms.received"])
    put_subscription(stack, account, "ops_down", receiver.endpoint(ops_down, SECRET, answers=[500]), triggers=OPS)
    put_subscription(stack, account, "ops_up", receiver.endpoint(ops_up, SECRET), triggers=OPS)
    publish(stack, envelope("sms.received", account, SMS))
    # crm's webhook dies after 4 attempts; ops_down's copies of the notices die after 4 each.
    receiver.wait_for(lambda r: r.path == down, count=4, timeout=30)
    receiver.wait_for(lambda r: r.path == ops_up and r.json["type"] == "webhook.dead_lettered", timeout=30)
    receiver.wait_for(lambda r: r.path == ops_down, count=8, timeout=40)
    time.sleep(3)
    stack.settle()
    up = ops_hits(receiver, ops_up)
    assert sorted(h.json["type"] for h in up) == ["subscription.failing", "webhook.dead_lettered"]
    assert {h.json["data"]["subscription_id"] for h in up} == {"crm"}, \
        "ops_down's failing streak and dead letters are never reported"
    down_hits = ops_hits(receiver, ops_down)
    assert len({h.headers["webhook-id"] for h in down_hits}) == 2 and len(down_hits) == 8
