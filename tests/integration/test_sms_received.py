"""sms.received end to end: published to the EventsTopic, routed by SNS to the sms queue, polled
into the real sms bootstrap under the runtime interface emulator, delivered to a local receiver
and verified with the independent Standard Webhooks library."""

import json
import time

from conftest import SECRET, dead_letters_by_source, envelope, log_records, publish, put_subscription, unique

SMS = {"message_id": "msg_in_1", "from": "+14155550123", "to": "+14155559876", "body": "Is order 4821 shipped?"}


def test_sms_received_is_delivered_signed(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/crm", SECRET)
    other = receiver.endpoint(f"/{account}/balance-only", SECRET)
    disabled = receiver.endpoint(f"/{account}/disabled", SECRET)
    put_subscription(stack, account, "sub_crm", url, triggers=["sms.received"], description="CRM")
    put_subscription(stack, account, "sub_balance", other, triggers=["balance.low"])
    put_subscription(stack, account, "sub_off", disabled, triggers=["*"], enabled=False)
    event = envelope("sms.received", account, SMS, occurred_at="2026-11-30T10:15:00Z")
    before = time.time()
    publish(stack, event)

    [hit] = receiver.wait_for(lambda r: r.path == f"/{account}/crm")
    assert hit.verified, hit.error
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["webhook-id"].startswith("msg_")
    assert abs(int(hit.headers["webhook-timestamp"]) - before) < 60
    assert hit.headers["webhook-signature"].startswith("v1,")
    assert hit.headers["user-agent"].startswith("DataFlows-SMS-Webhooks/")
    assert hit.json == {
        "type": "sms.received",
        "timestamp": "2026-11-30T10:15:00Z",
        "account_id": account,
        "event_id": event["id"],
        "data": {**SMS, "received_at": "2026-11-30T10:15:00Z"},
    }
    # Nothing for the subscription that wants another trigger, nor for the disabled one.
    stack.settle()
    assert not [r for r in receiver.received if r.path in (f"/{account}/balance-only", f"/{account}/disabled")]


def test_rotation_signs_with_every_secret(stack, receiver):
    account = unique("acc")
    new_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="  # "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    url = receiver.endpoint(f"/{account}/new", new_secret)  # verifies with the new secret only
    put_subscription(stack, account, "sub_rot", url, triggers=["sms.received"], secrets=[SECRET, new_secret])
    publish(stack, envelope("sms.received", account, SMS))
    [hit] = receiver.wait_for(lambda r: r.path == f"/{account}/new")
    assert hit.verified, hit.error
    assert len(hit.headers["webhook-signature"].split(" ")) == 2


def test_bad_record_does_not_stop_the_good_one(stack, receiver):
    account = unique("acc")
    good = receiver.endpoint(f"/{account}/good", SECRET)
    put_subscription(stack, account, "sub_bad", good, triggers=["sms.recieved"])  # misspelt trigger
    put_subscription(stack, account, "sub_good", good, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/good")
    assert len(hits) == 1 and hits[0].verified
    # The skipped record is reported with account, subscription and field.
    stack.settle()
    lines = [line for line in log_records(stack) if line.get("subscription_id") == "sub_bad"]
    assert any(line.get("field") == "triggers[0]" and line.get("account_id") == account for line in lines), lines


def test_batch_with_malformed_records_delivers_the_rest(stack, receiver):
    """The real binary, invoked with one SQS batch: two good records, two malformed. The good ones
    are delivered; the malformed ones go straight to the DLQ with their reason (retrying them could
    never succeed), so the response fails nothing."""
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/batch", SECRET)
    put_subscription(stack, account, "sub_batch", url, triggers=["sms.received"])
    good = [envelope("sms.received", account, {**SMS, "message_id": f"m{i}"}) for i in range(2)]
    bad = envelope("sms.received", account, {"message_id": "m_bad", "from": "+1", "to": "+2"})  # no body
    records = [
        {"messageId": "good-1", "body": json.dumps(good[0])},
        {"messageId": "bad-1", "body": json.dumps(bad)},
        {"messageId": "good-2", "body": json.dumps(good[1])},
        {"messageId": "junk-1", "body": "{not json"},
    ]
    for r in records:
        r.update({"receiptHandle": "rh", "attributes": {}, "messageAttributes": {}, "md5OfBody": "",
                  "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                  "awsRegion": "us-east-1"})
    runner = next(r for r in stack.runners if r.fn.binary == "sms")
    ok, payload = runner.invoke({"Records": records})
    assert ok, payload
    assert payload["batchItemFailures"] == []
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/batch", count=2)
    assert sorted(h.json["data"]["message_id"] for h in hits) == ["m0", "m1"]
    assert all(h.verified for h in hits)
    letters = dead_letters_by_source(stack, "SmsDeadLetterQueueUrl", {"bad-1", "junk-1"})
    assert letters["bad-1"]["reason"] == "`data.body` is missing" and letters["bad-1"]["field"] == "data.body"
    assert letters["bad-1"]["body"] == json.dumps(bad), "dead-lettered as it was, ready for a redrive"
    assert letters["junk-1"]["reason"].startswith("body is not valid JSON: key must be a string")
    log = runner.log_path.read_text()
    assert "`data.body` is missing" in log
