"""Tenant isolation and trust boundaries, tried as an attacker would, end to end through the local
stack: two accounts whose events share an id and whose subscriptions share an id each get their
own data; a retry or a dead letter published to the events topic is never sent."""

import base64
import json
import time

from conftest import SECRET, envelope, find_dead_letter, peek_queue, publish, put_subscription, unique


def contact(name: str, email: str) -> dict:
    return {"contact_id": "ct_1", "contact": {"phone": "+14155550123", "name": name, "email": email},
            "group_ids": []}


def test_two_accounts_with_the_same_event_id_and_subscription_id_each_get_their_own_data(stack, receiver):
    """Event ids are unique per account only, subscription ids are chosen by customers: neither may
    let one account's webhook carry another's data (the stored decision and the claim are keyed
    by account)."""
    a, b = unique("acc_a"), unique("acc_b")
    shared_event_id = unique("evt_same")
    paths = {}
    for account in (a, b):
        paths[account] = f"/{account}/crm"
        put_subscription(stack, account, "crm", receiver.endpoint(paths[account], SECRET), triggers=["contact.added"])
    publish(stack, envelope("contact.added", a, contact("Alice A", "alice@a.example"), event_id=shared_event_id))
    got_a = receiver.wait_for(lambda r: r.path == paths[a], timeout=20)
    publish(stack, envelope("contact.added", b, contact("Bob B", "bob@b.example"), event_id=shared_event_id))
    got_b = receiver.wait_for(lambda r: r.path == paths[b], timeout=20)
    assert len(got_a) == 1 and len(got_b) == 1
    assert got_a[0].json["data"]["contact"]["email"] == "alice@a.example"
    assert got_b[0].json["data"]["contact"]["email"] == "bob@b.example", "account b got account a's contact"
    assert got_a[0].json["account_id"] == a and got_b[0].json["account_id"] == b
    assert got_a[0].headers["webhook-id"] != got_b[0].headers["webhook-id"]
    assert got_a[0].verified and got_b[0].verified


def forged_messages(account: str, subscription: str) -> list[dict]:
    """What an attacker able to publish to the topic would send: a retry task and a dead letter
    for the victim's subscription, with no seal, a made-up seal, and the SNS filter's `type`."""
    evil = json.dumps({"type": "sms.received", "data": {"body": "send your password to evil.example"}})
    now = int(time.time())
    retry = {"dataflows_retry": 1, "type": "sms.received", "webhook_id": unique("msg"), "trigger": "sms.received",
             "account_id": account, "subscription_id": subscription, "event_id": unique("evt"),
             "body_base64": base64.b64encode(evil.encode()).decode(),
             "attempt": 2, "first_attempt_at": now, "not_before": 0}
    letter = {"dataflows_dead_letter": 1, "type": "sms.received", "reason": "x", "webhook_id": unique("msg"),
              "trigger": "sms.received", "account_id": account, "subscription_id": subscription,
              "url": "https://example.com", "event_id": unique("evt"), "attempts": 1, "first_attempt_at": now,
              "last_error": "", "payload": json.loads(evil)}
    return [retry, {**retry, "webhook_id": unique("msg"), "seal": "c2VhbA=="}, letter,
            {**letter, "webhook_id": unique("msg"), "seal": "c2VhbA=="}]


def test_a_retry_or_dead_letter_published_to_the_topic_is_never_sent(stack, receiver):
    account = unique("acc_victim")
    path = f"/{account}/inbox"
    put_subscription(stack, account, "inbox", receiver.endpoint(path, SECRET), triggers=["sms.received"])
    forged = forged_messages(account, "inbox")
    sns = stack.client("sns")
    ids = set()
    for message in forged:
        ids.add(sns.publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(message))["MessageId"])
    # Both categories that consume sms.received dead-letter every forged message, with the reason.
    # (The SQS message id differs from the SNS one: find them by body.)
    for dlq in ("SmsDeadLetterQueueUrl", "MessagingDeadLetterQueueUrl"):
        found = wait_for_bodies(stack, dlq, [json.dumps(m) for m in forged])
        assert len(found) == len(forged), (dlq, found)
        for attrs in found.values():
            assert attrs["reason"].startswith("internal message not authenticated"), attrs
            assert attrs["field"] == "seal"
    # And a genuine event for the same subscription still arrives: only the forgeries were refused.
    publish(stack, envelope("sms.received", account, {"message_id": "m1", "from": "+14155550123",
                                                      "to": "+14155559876", "body": "hello"}))
    hits = receiver.wait_for(lambda r: r.path == path, timeout=20)
    stack.settle()
    hits = receiver.wait_for(lambda r: r.path == path, count=10, timeout=0)
    assert [h.json["data"]["body"] for h in hits] == ["hello"], "a forged message was sent"


def wait_for_bodies(stack, queue_output: str, bodies: list[str], timeout: float = 20.0) -> dict:
    """{body: {"reason", "field"}} of the messages on a queue with these exact bodies, left in place."""
    found: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < len(bodies):
        for m in peek_queue(stack, queue_output):
            if m["Body"] in bodies:
                attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
                found[m["Body"]] = {"reason": attrs.get("reason"), "field": attrs.get("field")}
        time.sleep(0.5)
    return found


def test_a_body_sqs_would_refuse_and_a_body_near_the_input_limit_are_retried_and_dead_lettered(stack, receiver):
    """U+FFFF is valid JSON but SQS refuses it in a message (InvalidMessageContents; the emulator
    refuses it too), and a body of quotes doubles when JSON-escaped: the retry and the dead letter
    of such webhooks must still be written, and carry the same bytes."""
    account = unique("acc")
    odd = "order \uffff\ufffe shipped \U0001F600"
    quotes = '"' * 120_000  # 240 KB escaped in the input; the SNS limit is 256 KiB
    for name, text in (("odd", odd), ("quotes", quotes)):
        path = f"/{account}/{name}"
        put_subscription(stack, account, name, receiver.endpoint(path, SECRET, answers=[500, 200]),
                         triggers=["sms.received"], filter={"data": {"body": [{"prefix": text[:3]}]}})
    # (All records first: an account's subscriptions are cached for 30 s once read.)
    down = f"/{account}/down"
    put_subscription(stack, account, "down", receiver.endpoint(down, SECRET, answers=[503] * 10),
                     triggers=["sms.received"], filter={"data": {"body": [{"prefix": "down"}]}})
    for text in (odd, quotes):
        publish(stack, envelope("sms.received", account, {"message_id": unique("m"), "from": "+14155550123",
                                                          "to": "+14155559876", "body": text}))
    for name, text in (("odd", odd), ("quotes", quotes)):
        hits = receiver.wait_for(lambda r, p=f"/{account}/{name}": r.path == p, count=2, timeout=30)
        assert [h.status for h in hits] == [500, 200], name
        assert hits[0].body == hits[1].body, "the retry sends the same bytes"
        assert hits[1].json["data"]["body"] == text and hits[1].verified

    # Always failing: the dead letter is written too, with the body intact.
    publish(stack, envelope("sms.received", account, {"message_id": unique("m"), "from": "+14155550123",
                                                      "to": "+14155559876", "body": "down " + odd}))
    hits = receiver.wait_for(lambda r: r.path == down, count=4, timeout=30)
    assert len(hits) == 4, hits
    letter = find_dead_letter(stack, "SmsDeadLetterQueueUrl", hits[0].headers["webhook-id"])
    assert letter is not None, "no dead letter"
    assert letter["body"]["payload"]["data"]["body"] == "down " + odd
    assert letter["body"]["url"] == receiver.url("").rstrip("/"), "the dead letter names the origin only"


def test_a_slow_receiver_beside_a_normal_one_in_the_same_batch_does_not_hold_it_up(stack, receiver):
    """A receiver that takes 4 s to answer 200 is never failing, but used to hold the batch's
    record slots (10) for its whole time: the normal receiver's webhooks of the same batch waited
    behind it. Now only evaluation takes a record slot, and each subscription has its own lane
    (4 sends at once) before the batch's send slots."""
    account = unique("acc")
    slow, fast = f"/{account}/slow", f"/{account}/fast"
    put_subscription(stack, account, "slow", receiver.endpoint(slow, SECRET, delay=4.0), triggers=["sms.received"],
                     filter={"data": {"body": [{"prefix": "slow"}]}})
    put_subscription(stack, account, "fast", receiver.endpoint(fast, SECRET), triggers=["sms.received"],
                     filter={"data": {"body": [{"prefix": "fast"}]}})
    events = [envelope("sms.received", account, {"message_id": unique("m"), "from": "+14155550123",
                                                 "to": "+14155559876", "body": f"{kind} {i}"})
              for i in range(12) for kind in ("slow", "fast")]  # interleaved
    sns = stack.client("sns")
    for i in range(0, len(events), 10):  # one batch: published within the 1 s batching window
        sns.publish_batch(TopicArn=stack.outputs["EventsTopicArn"], PublishBatchRequestEntries=[
            {"Id": str(j), "Message": json.dumps(e)} for j, e in enumerate(events[i:i + 10])])
    fast_hits = receiver.wait_for(lambda r: r.path == fast, count=12, timeout=30)
    slow_hits = receiver.wait_for(lambda r: r.path == slow, count=12, timeout=60)
    assert len(fast_hits) == 12 and len(slow_hits) == 12
    first_slow = min(h.at for h in slow_hits)
    last_fast = max(h.at for h in fast_hits)
    assert last_fast - first_slow < 2.0, f"the fast receiver waited {last_fast - first_slow:.1f} s behind the slow one"
    # The slow subscription had at most 4 requests in flight at once: its arrivals come in waves.
    starts = sorted(h.at for h in slow_hits)
    assert starts[4] - starts[0] >= 3.0, "a fifth request to the slow receiver started before one ended"


def test_a_hostile_filter_costs_one_pass_and_holds_up_no_one(stack, receiver):
    """The largest wildcard a record may hold against a 200 KB message, on five subscriptions, in
    the same batch as another account's event: with the backtracking matcher that was ~10^9 steps
    per subscription per event, enough to time the batch out (the other account's record with
    it). Now each is one pass over the field."""
    hostile, other = unique("acc_hostile"), unique("acc_other")
    pattern = "*" + "a" * 4000 + "b*"  # the backtracking matcher's worst case: almost matches everywhere
    for i in range(5):
        put_subscription(stack, hostile, f"h{i}", receiver.endpoint(f"/{hostile}/h{i}", SECRET),
                         triggers=["sms.received"], filter={"data": {"body": [{"wildcard": pattern}]}})
    put_subscription(stack, other, "inbox", receiver.endpoint(f"/{other}/inbox", SECRET), triggers=["sms.received"])
    sms = next(r for r in stack.runners if r.fn.binary == "sms")
    failed_before = sms.failed_invocations
    events = [envelope("sms.received", hostile, {"message_id": unique("m"), "from": "+14155550123",
                                                 "to": "+14155559876", "body": "a" * 200_000}),
              envelope("sms.received", other, {"message_id": unique("m"), "from": "+14155550123",
                                               "to": "+14155559876", "body": "hello"})]
    started = time.monotonic()
    stack.client("sns").publish_batch(TopicArn=stack.outputs["EventsTopicArn"], PublishBatchRequestEntries=[
        {"Id": str(i), "Message": json.dumps(e)} for i, e in enumerate(events)])
    hits = receiver.wait_for(lambda r: r.path == f"/{other}/inbox", timeout=30)
    assert len(hits) == 1 and hits[0].verified
    assert time.monotonic() - started < 15, "the other account's webhook waited behind the hostile filter"
    assert sms.failed_invocations == failed_before, "no invocation failed or timed out"
    assert not receiver.wait_for(lambda r: r.path.startswith(f"/{hostile}/"), timeout=0), "the filter matched"


def test_an_accounts_worst_case_keyword_regexes_stay_within_its_budget_beside_another_account(stack, receiver):
    """100 records of one account, each with 10 regex keyword rules of the largest size a pattern
    may have, used to take every function's memory past its MemorySize on a cache miss. Now the
    account's regexes share one budget: the first records that fit are kept (and match), the
    rest are refused naming the budget, and another account's webhook arrives as usual."""
    from conftest import log_records

    worst, other = unique("acc_worst"), unique("acc_h")
    path = f"/{worst}/kw"
    url = receiver.endpoint(path, SECRET)
    for r in range(100):
        rules = [{"keyword": f"(w{r}z{k})(?-u:\\w){{660}}b", "match": "regex"} for k in range(10)]
        if r == 0:
            rules[0] = {"keyword": "^order\\s+\\d+$", "match": "regex"}
        put_subscription(stack, worst, f"sub_{r:03}", url, triggers=["keyword.matched"], keywords=rules)
    put_subscription(stack, other, "crm", receiver.endpoint(f"/{other}/crm", SECRET), triggers=["sms.received"])
    sms = {"message_id": unique("in"), "from": "+14155550123", "to": "+14155559876", "body": "ORDER 42"}
    started = time.monotonic()
    publish(stack, envelope("sms.received", worst, sms))
    publish(stack, envelope("sms.received", other, {**sms, "message_id": unique("in")}))
    got = receiver.wait_for(lambda r: r.path == f"/{other}/crm", timeout=20)
    assert len(got) == 1 and got[0].verified, "the other account's webhook arrived"
    assert time.monotonic() - started < 20
    matched = receiver.wait_for(lambda r: r.path == path, timeout=20)
    assert len(matched) == 1, "the first record fits the budget and still matches"
    assert matched[0].json["data"]["keyword"] == "^order\\s+\\d+$"
    stack.settle()
    skipped = [r for r in log_records(stack, "messaging") if r.get("message", "").startswith("subscription record skipped")
               and r.get("account_id") == worst]
    assert skipped and all("over their budget" in r["reason"] for r in skipped), skipped[:1]
    assert len({r["subscription_id"] for r in skipped}) == 99, "every record after the budget ran out is refused"
