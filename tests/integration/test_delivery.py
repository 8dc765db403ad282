"""The delivery engine through the real sms binary on the emulator: retries with one webhook-id,
the dead-letter queue after the schedule, no duplicate sends, 410 Gone, filters."""

import json
import subprocess
import time

from conftest import (SECRET, envelope, find_dead_letter, get_item, log_records, publish, put_subscription, unique,
                      wait_until)

import supervise


def disabled(stack, account, subscription):
    """The record once the system has disabled it, else None."""
    record = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": subscription})
    return record if record.get("enabled", {}).get("BOOL") is False else None


SMS = {"message_id": "msg_in_1", "from": "+14155550123", "to": "+14155559876", "body": "hello"}


def test_fails_twice_then_succeeds_with_one_webhook_id(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/flaky", SECRET, answers=[500, 503, 200])
    put_subscription(stack, account, "sub_flaky", url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/flaky", count=3, timeout=30)
    assert [h.status for h in hits] == [500, 503, 200]
    assert all(h.verified for h in hits), [h.error for h in hits]
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1, "every retry sends the same bytes"
    # Each retry came after its scheduled delay (1 s, ±20%).
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:])]
    assert all(g >= 0.75 for g in gaps), gaps
    stack.settle()
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/flaky", count=4, timeout=0)) == 3
    # The attempt log is on the claim item.
    claim = get_item(stack, "StateTableName", {"pk": f"webhook#{hits[0].headers['webhook-id']}", "sk": "delivery"})
    assert claim["status"]["S"] == "delivered"
    assert [int(a["M"]["status"]["N"]) for a in claim["attempts"]["L"]] == [500, 503, 200]
    assert "expires_at" in claim


def test_always_failing_ends_on_the_dead_letter_queue_and_redrive_restarts_it(stack, receiver, tmp_path):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/down", SECRET, answers=[502, 502, 502, 502, 200])
    put_subscription(stack, account, "sub_down", url, triggers=["sms.received"])
    event = envelope("sms.received", account, SMS)
    publish(stack, event)
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/down", count=4, timeout=30)
    assert len(hits) == 4 and len({h.headers["webhook-id"] for h in hits}) == 1
    letter = find_dead_letter(stack, "SmsDeadLetterQueueUrl", hits[0].headers["webhook-id"])
    assert letter is not None, "no dead letter"
    body = letter["body"]
    assert body["reason"] == "retry schedule exhausted after 4 attempts"
    assert body["last_error"] == "receiver answered 502"
    assert (body["account_id"], body["subscription_id"], body["event_id"]) == (account, "sub_down", event["id"])
    assert body["payload"]["data"]["body"] == "hello"
    assert letter["attributes"]["reason"]["StringValue"] == body["reason"]
    stack.settle()
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/down", count=5, timeout=0)) == 4
    # The subscription's failing streak has started (auto-disable counts from it).
    record = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "sub_down"})
    assert "failing_since" in record
    webhook_id = hits[0].headers["webhook-id"]
    claim = get_item(stack, "StateTableName", {"pk": f"webhook#{webhook_id}", "sk": "delivery"})
    assert claim["status"]["S"] == "exhausted"

    # The receiver is fixed; the operator redrives this subscription's dead letters.
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(stack.outputs))
    out = subprocess.run([str(supervise.binary_dir() / "dataflows"), "--outputs", str(outputs), "--json",
                          "dead-letters", "redrive", "--category", "sms", "--account", account,
                          "--subscription", "sub_down"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"moved": 1, "matched": 1, "skipped": 0, "failed": 0}, out.stdout
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/down", count=5, timeout=20)
    assert hits[4].status == 200 and hits[4].headers["webhook-id"] == webhook_id and hits[4].verified
    def delivered():
        claim = get_item(stack, "StateTableName", {"pk": f"webhook#{webhook_id}", "sk": "delivery"})
        return claim if claim["status"]["S"] == "delivered" else None

    claim = wait_until(delivered)
    assert claim and claim["status"]["S"] == "delivered"
    assert len(claim["attempts"]["L"]) == 5


def test_metrics_are_embedded_in_the_logs(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/m", SECRET)
    put_subscription(stack, account, "sub_m", url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    receiver.wait_for(lambda r: r.path == f"/{account}/m")
    stack.settle()
    lines = [line for line in log_records(stack) if "_aws" in line]
    assert lines, "no EMF line"
    emf = lines[-1]
    assert emf["Category"] == "sms" and emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "DataFlows/SmsWebhooks"
    assert sum(line["WebhooksDelivered"] for line in lines) >= 1


def test_every_line_of_an_invocation_carries_its_request_id_and_trace_id(stack, receiver):
    """A log line leads to its invocation and, with Tracing Active, to its X-Ray trace (the local
    runtime emulator sends no trace header: the field is there, empty)."""
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/span", SECRET)
    put_subscription(stack, account, "sub_span", url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    receiver.wait_for(lambda r: r.path == f"/{account}/span")
    stack.settle()
    ours = [line for line in log_records(stack)
            if line.get("account_id") == account and line.get("level") in ("INFO", "WARN", "ERROR")]
    assert ours, "no log line about the delivery"
    for line in ours:
        span = line.get("span") or {}
        assert span.get("name") == "invocation" and span.get("request_id"), line
        assert "xray_trace_id" in span, line


def test_the_same_event_twice_is_delivered_once(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/once", SECRET)
    put_subscription(stack, account, "sub_once", url, triggers=["sms.received"])
    event = envelope("sms.received", account, SMS)
    publish(stack, event)
    receiver.wait_for(lambda r: r.path == f"/{account}/once")
    publish(stack, event)
    stack.settle()
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/once", count=2, timeout=0)) == 1


def test_410_gone_disables_the_subscription(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/gone", SECRET, answers=[410])
    put_subscription(stack, account, "sub_gone", url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    receiver.wait_for(lambda r: r.path == f"/{account}/gone")
    record = wait_until(lambda: disabled(stack, account, "sub_gone"))
    assert record["enabled"] == {"BOOL": False}
    assert record["disabled_reason"]["S"].startswith("receiver answered 410 Gone")
    # No retry after a 410, and nothing more once disabled.
    publish(stack, envelope("sms.received", account, SMS))
    stack.settle()
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/gone", count=2, timeout=0)) == 1


def test_filters_select_webhooks(stack, receiver):
    account = unique("acc")
    vip = receiver.endpoint(f"/{account}/vip", SECRET)
    put_subscription(stack, account, "sub_vip", vip, triggers=["sms.received"],
                     filter={"data": {"from": [{"prefix": "+1415"}], "body": [{"wildcard": "*order*"}]}})
    publish(stack, envelope("sms.received", account, {**SMS, "body": "where is my order?", "message_id": "m_yes"}))
    publish(stack, envelope("sms.received", account, {**SMS, "body": "hello", "message_id": "m_no"}))
    publish(stack, envelope("sms.received", account, {**SMS, "from": "+4420", "body": "order", "message_id": "m_no2"}))
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/vip")
    stack.settle()
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/vip", count=2, timeout=0)
    assert [h.json["data"]["message_id"] for h in hits] == ["m_yes"]


def test_a_subscription_failing_for_days_is_disabled(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/dead", SECRET, answers=[500])
    six_days_ago = int(time.time()) - 6 * 86_400
    put_subscription(stack, account, "sub_dead", url, triggers=["sms.received"], failing_since=six_days_ago)
    publish(stack, envelope("sms.received", account, SMS))
    receiver.wait_for(lambda r: r.path == f"/{account}/dead")
    record = wait_until(lambda: disabled(stack, account, "sub_dead"))
    assert record["enabled"] == {"BOOL": False}
    assert record["disabled_reason"]["S"].startswith("every attempt failed since")
    # Its pending retry is dropped: one attempt only.
    stack.settle()
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/dead", count=2, timeout=0)) == 1


def test_healthy_subscription_clears_its_failing_streak(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/back", SECRET)
    put_subscription(stack, account, "sub_back", url, triggers=["sms.received"], failing_since=int(time.time()) - 3600)
    publish(stack, envelope("sms.received", account, SMS))
    receiver.wait_for(lambda r: r.path == f"/{account}/back")

    def cleared():
        record = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "sub_back"})
        return record if "failing_since" not in record else None

    record = wait_until(cleared)
    assert record and "failing_since" not in record and record.get("enabled", {"BOOL": True}) == {"BOOL": True}


def test_claims_and_results_go_in_signed_partiql_batches(stack, receiver):
    """The claims and results of an event's webhooks reach DynamoDB as PartiQL batches the
    emulator accepts (each request's SigV4 signature checked as DynamoDB checks it): one request
    for the claims and one for the results, not a single-item write per webhook."""
    account = unique("acc")
    for i in range(3):
        put_subscription(stack, account, f"sub_batch{i}", receiver.endpoint(f"/{account}/batch{i}", SECRET),
                         triggers=["sms.received"])
    stack.settle()
    supervise.reset_emulator_stats(stack.emulator.endpoint)
    publish(stack, envelope("sms.received", account, SMS))
    hits = receiver.wait_for(lambda r: r.path.startswith(f"/{account}/batch"), count=3, timeout=30)
    assert len(hits) == 3 and all(h.verified for h in hits)
    ids = {h.headers["webhook-id"] for h in hits}
    wait_until(lambda: all(get_item(stack, "StateTableName", {"pk": f"webhook#{i}", "sk": "delivery"})
                           .get("status", {}).get("S") == "delivered" for i in ids), timeout=10)
    stats = supervise.emulator_stats(stack.emulator.endpoint)
    assert stats["requests"].get("BatchExecuteStatement", 0) >= 2, stats["requests"]
    assert stats["refused"]["Signature"] == 0
    alone = [r for r in log_records(stack) if r.get("webhook_id") in ids and "on its own" in r.get("message", "")]
    assert not alone, alone


def test_a_retrys_claim_goes_in_a_partiql_batch_too(stack, receiver):
    """The second attempt claims with the retry's statement (a grouped OR in its WHERE clause),
    batched like the first: not refused and written on its own."""
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/retry", SECRET, answers=[500, 200])
    put_subscription(stack, account, "sub_retry", url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/retry", count=2, timeout=60)
    assert [h.status for h in hits] == [500, 200]
    wid = hits[0].headers["webhook-id"]
    claim = wait_until(lambda: (c := get_item(stack, "StateTableName", {"pk": f"webhook#{wid}", "sk": "delivery"}))
                       .get("status", {}).get("S") == "delivered" and c, timeout=10)
    assert claim and len(claim["attempts"]["L"]) == 2
    alone = [r for r in log_records(stack) if r.get("webhook_id") == wid and "on its own" in r.get("message", "")]
    assert not alone, alone
