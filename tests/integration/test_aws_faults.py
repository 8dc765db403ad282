"""AWS's own faults, end to end: the sms function reaches DynamoDB and SQS through infra/faults.py,
which puts exact faults on the requests a test names (a lost reply on one webhook's claim, a
throttled finish, a failing subscription Query) and lets everything else through.

A stack of its own with the sms function only, claims leased for 5 s (a retry that meets a claim
left pending waits that long, not a minute), the retry schedule of the suite."""

from __future__ import annotations

import json
import time

import pytest

from conftest import (RETRY_SCHEDULE, SECRET, envelope, get_item, local_stack, log_records, publish, put_subscription,
                      unique, wait_until)
import provision  # noqa: E402 (conftest put infra/ on the path)
import supervise  # noqa: E402 (conftest put infra/ on the path)
from soak import webhook_id  # the same derivation as shared/src/webhook.rs (conftest put infra/ on the path)


@pytest.fixture(scope="module")
def faulty_stack(tmp_path_factory):
    s = local_stack.Stack(port=supervise.free_port(), log_dir=tmp_path_factory.mktemp("faults-logs"),
                          functions=["sms"], aws_faults={"share": 0.0},
                          env_overrides={"RETRY_SCHEDULE": RETRY_SCHEDULE, "CLAIM_LEASE": "5s"})
    yield s
    s.stop()


def sms(account: str) -> tuple[dict, str]:
    event = envelope("sms.received", account,
                     {"message_id": unique("in"), "from": "+14155550123", "to": "+14155559876", "body": "hi"})
    return event, webhook_id(event["id"], "sms.received", account, "crm")


def claim_of(stack, wid: str) -> dict:
    return get_item(stack, "StateTableName", {"pk": f"webhook#{wid}", "sk": "delivery"})


def test_a_lost_reply_on_the_claim_is_read_as_ours_and_delivered_once(faulty_stack, receiver):
    stack, faults = faulty_stack, faulty_stack.faults
    account = unique("acc")
    put_subscription(stack, account, "crm", receiver.endpoint(f"/{account}/crm", SECRET), triggers=["sms.received"])
    event, wid = sms(account)
    # The claim (the batch's INSERT of this webhook) is applied, then its answer is lost.
    rule = faults.script("BatchExecuteStatement", (f"webhook#{wid}", "INSERT INTO"), "lost_reply")
    started = time.monotonic()
    publish(stack, event)
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/crm", timeout=60)
    took = time.monotonic() - started
    assert rule.times == 0, "the fault was put on the claim"
    assert len(hits) == 1 and hits[0].verified
    assert took < 60, f"delivered {took:.0f} s after publish"
    stack.settle()
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/crm", count=2, timeout=0)) == 1, "sent twice"
    claim = claim_of(stack, wid)
    assert claim["status"]["S"] == "delivered"
    assert len(claim["attempts"]["L"]) == 1
    busy = [r for r in log_records(stack, "sms") if wid in str(r.get("error", "")) and "another invocation" in str(r)]
    assert not busy, f"its own claim was read as another invocation's: {busy[:1]}"


def test_a_lost_reply_on_the_finish_writes_the_attempt_once(faulty_stack, receiver):
    stack, faults = faulty_stack, faulty_stack.faults
    account = unique("acc")
    put_subscription(stack, account, "crm", receiver.endpoint(f"/{account}/crm", SECRET), triggers=["sms.received"])
    event, wid = sms(account)
    rule = faults.script("BatchExecuteStatement", (f"webhook#{wid}", "list_append"), "lost_reply")
    publish(stack, event)
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/crm", timeout=30)) == 1
    stack.settle()
    assert rule.times == 0
    claim = claim_of(stack, wid)
    assert claim["status"]["S"] == "delivered"
    assert len(claim["attempts"]["L"]) == 1, "the finish sent again appended the attempt a second time"
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/crm", count=2, timeout=0)) == 1


def test_a_failed_finish_never_sends_a_delivered_webhook_again(faulty_stack, receiver):
    """The sequence that once sent twice: attempt 1 fails (500) and its retry is queued; the retry
    delivers attempt 2; then writing that result is throttled beyond every try. Failing the record
    would have brought it back to send attempt 2 again once the lease ran out."""
    stack, faults = faulty_stack, faulty_stack.faults
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/crm", SECRET, answers=[500, 200])
    put_subscription(stack, account, "crm", url, triggers=["sms.received"])
    event, wid = sms(account)
    # Attempt 2's finish (status delivered): throttled more times than the SDK and the in-place
    # tries make in one invocation, batched and then on its own.
    rule = faults.script("BatchExecuteStatement", (f"webhook#{wid}", "list_append", '"delivered"'), "throttle",
                         times=40)
    single = faults.script("UpdateItem", (f"webhook#{wid}", '":entry"', '"delivered"'), "throttle", times=40)
    publish(stack, event)
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/crm", count=2, timeout=60)
    assert [h.status for h in hits] == [500, 200]
    stack.settle(timeout=120)
    time.sleep(7)  # past the 5 s lease: a redelivery would claim and send now
    stack.settle(timeout=60)
    sent = receiver.wait_for(lambda r: r.path == f"/{account}/crm", count=3, timeout=0)
    assert len(sent) == 2, f"{len(sent)} requests: the delivered webhook was sent again"
    assert rule.times < 40 and single.times < 40, "the finish was throttled, batched and on its own"
    not_recorded = [r for r in log_records(stack, "sms") if r.get("webhook_id") == wid
                    and "could not write after an attempt" in r.get("message", "")]
    assert not_recorded, "the failed finish is logged"


def test_a_failing_subscription_query_is_delivered_within_a_minute(faulty_stack, receiver):
    stack, faults = faulty_stack, faulty_stack.faults
    account = unique("acc")
    put_subscription(stack, account, "crm", receiver.endpoint(f"/{account}/crm", SECRET), triggers=["sms.received"])
    event, wid = sms(account)
    # More 500s than one invocation's SDK attempts and in-place tries: the record fails, and
    # comes back in seconds (its visibility shortened), not after the 3-minute visibility timeout.
    rule = faults.script("Query", f'"{account}"', "error500", times=20)
    started = time.monotonic()
    publish(stack, event)
    hits = receiver.wait_for(lambda r: r.path == f"/{account}/crm", timeout=90)
    took = time.monotonic() - started
    assert rule.times == 0, f"{20 - rule.times} of the 20 scripted failures were met"
    assert len(hits) == 1 and hits[0].verified
    assert took < 60, f"delivered {took:.0f} s after publish"
    failed = [r for r in log_records(stack, "sms") if r.get("message") == "record failed" and account in str(r)]
    assert failed, "the Query failed past the in-place tries, so the record was redelivered"


def test_an_event_sns_cannot_deliver_lands_on_its_dlq_and_is_redriven(faulty_stack, tmp_path):
    """A category queue that refuses SNS (here: deleted, as a queue being replaced is) no longer
    loses the event: the subscription's RedrivePolicy puts it on the events delivery DLQ, where
    `dataflows dead-letters --category sns` lists it and redrives it to every queue that consumes
    its type. This stack runs the sms function only, so the admin queue is free to break."""
    import json
    import subprocess

    stack = faulty_stack
    sqs = stack.client("sqs")
    admin_url = stack.outputs["AdminQueueUrl"]
    name = admin_url.rsplit("/", 1)[-1]
    sqs.delete_queue(QueueUrl=admin_url)
    account = unique("acc")
    event = envelope("sender_id.approved", account, {"sender_id": "ACME"})
    publish(stack, event)  # SNS accepts it; the delivery to the admin queue fails
    dlq = stack.outputs["EventsDeliveryDeadLetterQueueUrl"]
    deadline = time.monotonic() + 20
    held = []
    while not held and time.monotonic() < deadline:
        held = [m for m in provision.peek_queue(sqs, dlq) if json.loads(m["Body"]).get("id") == event["id"]]
        time.sleep(0.2)
    assert held, "the undeliverable event is on the events delivery DLQ"
    assert json.loads(held[0]["Body"]) == event, "the raw event, as the queue would have had it"

    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(stack.outputs))
    binary = supervise.binary_dir() / "dataflows"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), "--outputs", str(outputs), "--json", *args], capture_output=True,
                              text=True, timeout=60)

    listed = cli("dead-letters", "list", "--category", "sns", "--account", account)
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)["dead_letters"]
    assert [(x["category"], x["kind"], x["event_id"]) for x in letters] == [("sns", "input", event["id"])]
    sqs.create_queue(QueueName=name)  # the queue is back
    moved = cli("dead-letters", "redrive", "--category", "sns", "--account", account)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["moved"] == 1
    back = [m for m in provision.peek_queue(sqs, admin_url) if json.loads(m["Body"]).get("id") == event["id"]]
    assert len(back) == 1, "redriven to the admin queue, the one that consumes sender_id.approved"
    assert not [m for m in provision.peek_queue(sqs, dlq) if json.loads(m["Body"]).get("id") == event["id"]]


@pytest.fixture(scope="module")
def counting_stack(tmp_path_factory):
    """The performance function (it counts status receipts) and the operations function (its
    campaign.completed reads the counts), reaching AWS through the fault proxy."""
    s = local_stack.Stack(port=supervise.free_port(), log_dir=tmp_path_factory.mktemp("counting-logs"),
                          functions=["performance", "operations"], aws_faults={"share": 0.0},
                          env_overrides={"RETRY_SCHEDULE": RETRY_SCHEDULE, "CLAIM_LEASE": "5s"})
    yield s
    s.stop()


def test_a_marker_applied_without_its_reply_then_failing_is_still_counted(counting_stack, receiver):
    """The soak's short campaign count (999 of 1000): one receipt's marker put is applied and its
    reply lost, the SDK's retries then meet 500s, and the receipt fails. The marker names this
    batch's token; had the batch applied that token at the counter for the other receipts, the
    receipt coming back would read its token as applied and never be counted. When it comes back,
    its recovery's put is applied with its reply lost too: the SDK's retry meets that write, which
    must be read as its own, not as another invocation's. The counts must come out exact."""
    stack, faults = counting_stack, counting_stack.faults
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/ops", SECRET)
    put_subscription(stack, account, "ops", url, triggers=["campaign.completed"])
    outcomes = {"m1": "delivered", "m2": "delivered", "m3": "failed"}
    # The first attempt of m1's marker put is applied and its reply lost; the SDK's next two
    # attempts are answered 500: past every attempt one invocation makes.
    marker = f"count#{account}#m1"
    lost = faults.script("PutItem", (marker, "attribute_not_exists"), "lost_reply")
    errors = faults.script("PutItem", (marker, "attribute_not_exists"), "error500", times=2)
    # The receipt comes back, finds its marker and puts it again under the next batch's token:
    # that put too is applied and its reply lost (the SDK's retry then meets its own write).
    lost_again = faults.script("PutItem", (marker, "version = :v"), "lost_reply")
    stack.client("sns").publish_batch(TopicArn=stack.outputs["EventsTopicArn"], PublishBatchRequestEntries=[
        {"Id": mid, "Message": json.dumps(envelope("sms.status_changed", account, {
            "message_id": mid, "status": status, "recipient": "+1555", "campaign_id": "cmp_1"}))}
        for mid, status in outcomes.items()])
    assert wait_until(lambda: lost.times == 0 and errors.times == 0 and lost_again.times == 0, timeout=60), \
        "the scripted faults were met"
    stack.settle(timeout=120)
    publish(stack, envelope("campaign.completed", account, {"campaign_id": "cmp_1", "name": "Spring"}))
    [done] = receiver.wait_for(lambda r: r.path == f"/{account}/ops", timeout=30)
    figures = {k: done.json["data"][k] for k in ("total_sent", "delivered", "failed")}
    assert figures == {"total_sent": 3, "delivered": 2, "failed": 1}, f"counted {figures}"
    failed = [r for r in log_records(stack, "performance") if r.get("message") == "record failed"]
    assert failed, "m1's receipt failed once and came back"
