"""The bad-input corpus through the real sms function: every malformed envelope of
tests/corpus/envelopes.json ends on the DLQ with exactly its error as the reason, the good events
sent among them are delivered, and the function never crashes. Bad subscription records next to a
good one: the good one still delivers and each bad one is logged with its field."""

import json
from pathlib import Path

from conftest import (SECRET, dead_letters_by_source, envelope, log_records, publish, put_subscription, to_ddb_value,
                      unique)

ROOT = Path(__file__).resolve().parents[2]
SMS = {"message_id": "m", "from": "+14155550123", "to": "+14155559876", "body": "hi"}


def test_every_bad_envelope_is_dead_lettered_with_its_reason(stack, receiver):
    cases = json.loads((ROOT / "tests" / "corpus" / "envelopes.json").read_text())
    # SQS itself refuses empty and over-256-KiB bodies, so those two only reach the parser in unit tests.
    sendable = [c for c in cases if c["body"] and len(c["body"].encode()) <= 256 * 1024]
    assert len(sendable) >= 39
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/corpus", SECRET)
    put_subscription(stack, account, "sub_c", url, triggers=["sms.received"])
    sqs = stack.client("sqs")
    queue = stack.outputs["SmsQueueUrl"]
    ids = {}
    goods = 0
    for i, case in enumerate(sendable):
        ids[sqs.send_message(QueueUrl=queue, MessageBody=case["body"])["MessageId"]] = case
        if i % 8 == 0:  # good events mixed into the same batches
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
                envelope("sms.received", account, {**SMS, "message_id": f"good_{i}"})))
            goods += 1
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/corpus", count=goods, timeout=30)
    assert len(hits) == goods and all(h.verified for h in hits)
    letters = dead_letters_by_source(stack, "SmsDeadLetterQueueUrl", set(ids), timeout=30)
    wrong = {ids[i]["name"]: (letters.get(i) or {}).get("reason") for i in ids
             if (letters.get(i) or {}).get("reason") != ids[i]["error"]}
    assert not wrong, wrong
    runner = next(r for r in stack.runners if r.fn.binary == "sms")
    assert runner.proc.poll() is None, "the function process died"
    assert "panicked" not in runner.log_path.read_text()


def test_bad_records_are_skipped_and_named(stack, receiver):
    # http:// is allowed on the local stack (ALLOW_PRIVATE_TARGETS=true), so that case is unit-tested only.
    cases = [c for c in json.loads((ROOT / "tests" / "corpus" / "records.json").read_text())
             if c["field"] and c["name"] != "url_http"]
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/good", SECRET)
    ddb = stack.client("dynamodb")
    table = stack.outputs["SubscriptionsTableName"]
    for i, case in enumerate(cases):
        record = {**case["record"], "account_id": account, "subscription_id": f"bad_{i:02d}_{case['name']}"}
        ddb.put_item(TableName=table, Item={k: to_ddb_value(v) for k, v in record.items()})
    put_subscription(stack, account, "sub_good", url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, SMS))
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/good")
    assert len(hits) == 1 and hits[0].verified
    stack.settle()
    skipped = [line for line in log_records(stack)
               if line.get("account_id") == account and line.get("message", "").startswith("subscription record skipped")]
    named = {(s["subscription_id"], s["field"]) for s in skipped}
    for i, case in enumerate(cases):
        assert (f"bad_{i:02d}_{case['name']}", case["field"]) in named, case["name"]
    assert "MfKQ9r8GKYqrTwjU" not in json.dumps(log_records(stack)), "a secret reached the logs"
