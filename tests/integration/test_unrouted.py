"""Events that no category consumes, end to end through the local stack (the template's filter
policies on the emulator's SNS, the six functions running): an envelope with a type no category
consumes, with no `type` at all, or with a `type` that is not a string, lands on the unrouted
queue and nowhere else (issue #12, item 2). A payload that is not a JSON object matches no
message-body filter policy, on SNS as on the emulator: it is dropped by SNS, as
docs/operations.md ("Known limits") says.

SNS: "Filter policies for the message body assume that the message payload is a well-formed JSON
object" (https://docs.aws.amazon.com/sns/latest/dg/message-filtering.html); `"exists": false`
matches a body without the key (https://docs.aws.amazon.com/sns/latest/dg/attribute-key-matching.html).
"""

from __future__ import annotations

import json
import time

from conftest import log_records, peek_queue, unique

CATEGORIES = ["Sms", "Operations", "Contacts", "Messaging", "Performance", "Admin"]


def publish_raw(stack, message: str) -> None:
    stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=message)


def bodies(stack, queue_output: str) -> list[str]:
    return [m["Body"] for m in peek_queue(stack, queue_output)]


def on_queue(stack, queue_output: str, marker: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(marker in b for b in bodies(stack, queue_output)):
            return True
        time.sleep(0.3)
    return False


def test_events_no_category_consumes_land_on_the_unrouted_queue_only(stack):
    account = unique("acc_unrouted")
    cases = {
        "no type": {"id": unique("evt_notype"), "account_id": account, "occurred_at": "2026-11-30T10:15:00Z",
                    "data": {}},
        "unknown type": {"id": unique("evt_unknown"), "type": "sms.exploded", "account_id": account,
                         "occurred_at": "2026-11-30T10:15:00Z", "data": {}},
        # (anything-but of strings passes a number on the emulator; SNS documents no type rule here)
        "numeric type": {"id": unique("evt_numeric"), "type": 42, "account_id": account,
                         "occurred_at": "2026-11-30T10:15:00Z", "data": {}},
        "misspelt type": {"id": unique("evt_typo"), "type": "sms.recieved", "account_id": account,
                          "occurred_at": "2026-11-30T10:15:00Z", "data": {}},
    }
    for event in cases.values():
        publish_raw(stack, json.dumps(event))
    for name, event in cases.items():
        assert on_queue(stack, "UnroutedQueueUrl", event["id"]), f"{name}: not on the unrouted queue"

    # Unrouted only: no function saw them (nothing on a category queue or its dead-letter queue,
    # no log line naming them), and each is on the unrouted queue once.
    stack.settle()  # anything SNS also sent to a category queue has been processed by now
    unrouted = bodies(stack, "UnroutedQueueUrl")
    for name, event in cases.items():
        assert sum(event["id"] in b for b in unrouted) == 1, f"{name}: on the unrouted queue more than once"
        for c in CATEGORIES:
            for q in (f"{c}QueueUrl", f"{c}DeadLetterQueueUrl"):
                assert not any(event["id"] in b for b in bodies(stack, q)), f"{name}: reached {q}"
    ids = {e["id"] for e in cases.values()}
    for runner in stack.runners:
        seen = [r for r in log_records(stack, runner.fn.binary) if r.get("event_id") in ids]
        assert not seen, f"the {runner.fn.binary} function saw an unrouted event: {seen[:3]}"


def test_the_envelope_of_a_consumed_type_is_not_unrouted(stack):
    """The other half of the policy: `exists: false` must not let a routed event through as well."""
    event = {"id": unique("evt_routed"), "type": "sender_id.approved", "account_id": unique("acc_unrouted"),
             "occurred_at": "2026-11-30T10:15:00Z", "data": {"sender_id": "ACME", "approved_at": "2026-11-30T10:15:00Z"}}
    publish_raw(stack, json.dumps(event))
    marker = unique("evt_notype")  # published after: once it is on the unrouted queue, the first was decided
    publish_raw(stack, json.dumps({"id": marker, "account_id": "acc", "data": {}}))
    assert on_queue(stack, "UnroutedQueueUrl", marker)
    assert not any(event["id"] in b for b in bodies(stack, "UnroutedQueueUrl"))


def test_payloads_that_are_not_json_objects_match_no_body_filter(stack):
    """The documented limit: no message-body filter policy catches these; SNS drops them."""
    marker = unique("notjson")
    # (A top-level JSON array is not an object either; the emulator matches its elements, SNS's
    # documentation does not say: the publisher contract is one JSON object per message.)
    for payload in (f"not json {marker}", json.dumps(f"a string {marker}"), f'{{"id": "{marker}", "type": '):
        publish_raw(stack, payload)
    control = unique("evt_notype")
    publish_raw(stack, json.dumps({"id": control, "account_id": "acc", "data": {}}))
    assert on_queue(stack, "UnroutedQueueUrl", control)
    stack.settle()
    for c in [*CATEGORIES, "Unrouted"]:
        assert not any(marker in b for b in bodies(stack, f"{c}QueueUrl")), f"a non-object payload reached {c}"
