"""`make demo`: the whole local stack, a verifying receiver, sample events from events/ published to
the EventsTopic, and a report of every webhook received. Exits 0 only when every expected webhook
arrived with a valid signature.

Reuses a stack started by `make up` when one is running; otherwise starts (and stops) its own.
Every run uses a fresh account and fresh event ids, so it can be run again and again."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stack as local_stack  # noqa: E402
import cfn  # noqa: E402
import provision  # noqa: E402
import supervise  # noqa: E402
from receiver import Receiver  # noqa: E402

ROOT = cfn.ROOT
SECRET = "whsec_" + "ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXVzZS1vbmx5IQ=="  # "demo-secret-for-local-use-only!"

# Published in three phases: contact.updated, message.cancelled and contact.deleted need the state
# that contact.added and message.scheduled store.
PHASES: list[list[str]] = [
    ["sms.received", "sms.status_changed", "account.balance_changed", "campaign.started", "campaign.completed",
     "campaign.failed", "contact.added", "message.scheduled", "auto_reply.sent", "sender_id.approved",
     "sender_id.rejected"],
    ["contact.updated", "message.cancelled"],
    ["contact.deleted"],
]

# Input sample -> the webhooks it produces for the demo subscription.
PRODUCES: dict[str, list[str]] = {
    "sms.received": ["sms.received", "keyword.matched"],
    "sms.status_changed": ["sms.status_changed", "delivery_rate.low", "bounce_rate.high"],
    "account.balance_changed": ["balance.low"],
    "campaign.started": ["campaign.started"],
    "campaign.completed": ["campaign.completed"],
    "campaign.failed": ["campaign.failed"],
    "contact.added": ["contact.added"],
    "contact.updated": ["contact.updated"],
    "contact.deleted": ["contact.deleted"],
    "message.scheduled": ["message.scheduled"],
    "message.cancelled": ["message.cancelled"],
    "auto_reply.sent": ["auto_reply.sent"],
    "sender_id.approved": ["sender_id.approved"],
    "sender_id.rejected": ["sender_id.rejected"],
}

# What to show of each webhook's data.
KEY_FIELDS = {
    "sms.received": ["from", "body"],
    "sms.status_changed": ["message_id", "status", "previous_status"],
    "balance.low": ["balance", "threshold"],
    "campaign.started": ["campaign_id", "recipient_count"],
    "campaign.completed": ["campaign_id", "delivery_rate"],
    "campaign.failed": ["campaign_id", "error"],
    "contact.added": ["contact_id", "group_ids"],
    "contact.updated": ["changed_fields"],
    "contact.deleted": ["contact_id", "reason"],
    "message.scheduled": ["message_id", "send_at"],
    "message.cancelled": ["message_id", "original_schedule"],
    "keyword.matched": ["keyword", "match_type"],
    "auto_reply.sent": ["recipient"],
    "delivery_rate.low": ["rate", "samples"],
    "bounce_rate.high": ["rate", "reasons"],
    "sender_id.approved": ["sender_id"],
    "sender_id.rejected": ["sender_id", "reason"],
}


def running_stack() -> dict | None:
    """The outputs of a `make up` that is still running, if any."""
    pid_file, outputs_file = cfn.LOCAL / "stack.pid", cfn.LOCAL / "outputs.json"
    if not (pid_file.exists() and outputs_file.exists()):
        return None
    try:
        os.kill(int(pid_file.read_text()), 0)
        outputs = json.loads(outputs_file.read_text())
        supervise.wait_http(f"{outputs['EndpointUrl']}/moto-api/", timeout=2)
        return outputs
    except (OSError, ValueError, KeyError, TimeoutError):
        return None


def sample(event_type: str) -> dict:
    record = json.loads((ROOT / "events" / f"{event_type}.json").read_text())["Records"][0]
    return json.loads(record["body"])


def main() -> int:
    own_stack = None
    outputs = running_stack()
    if outputs:
        print(f"using the stack of `make up` at {outputs['EndpointUrl']}")
    else:
        print("starting the local stack (emulator, resources from template.yaml, six functions)...")
        own_stack = local_stack.Stack(port=supervise.free_port())
        outputs = own_stack.outputs
    endpoint = outputs["EndpointUrl"]
    receiver = Receiver()
    try:
        account = f"acc_demo_{uuid.uuid4().hex[:8]}"
        url = receiver.endpoint("/webhooks", SECRET)
        ddb = provision.client("dynamodb", endpoint)
        ddb.put_item(TableName=outputs["SubscriptionsTableName"], Item={
            "account_id": {"S": account}, "subscription_id": {"S": "sub_demo"}, "url": {"S": url},
            "secrets": {"L": [{"S": SECRET}]}, "triggers": {"S": "*"},
            "balance_low": {"M": {"threshold": {"N": "100"}}},
            "delivery_rate_low": {"M": {"threshold": {"N": "0.9"}, "min_samples": {"N": "1"}}},
            "bounce_rate_high": {"M": {"threshold": {"N": "0.05"}, "min_samples": {"N": "1"}}},
            "keywords": {"L": [{"M": {"keyword": {"S": "order"}, "match": {"S": "contains"}}}]},
            "description": {"S": "make demo"}})
        print(f"subscription {account}/sub_demo -> {url} (all triggers)")
        sns = provision.client("sns", endpoint)

        def ours(r):
            return r.path == "/webhooks" and r.json.get("account_id") == account

        expected = []
        started = time.time()
        for phase in PHASES:
            for event_type in phase:
                event = sample(event_type)
                # Fresh ids, and now as occurred_at: the rate windows end at the current minute.
                event.update(account_id=account, id=f"evt_demo_{uuid.uuid4().hex[:12]}",
                             occurred_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                sns.publish(TopicArn=outputs["EventsTopicArn"], Message=json.dumps(event))
                print(f"published {event_type} ({event['id']})")
                expected += [(t, event["id"]) for t in PRODUCES[event_type]]
            receiver.wait_for(ours, count=len(expected), timeout=60)

        time.sleep(1)  # a duplicate would arrive now
        hits = receiver.wait_for(ours, count=10**6, timeout=0)
        print(f"\n{len(hits)} webhook(s) received in {time.time() - started:.1f}s:")
        print(f"  {'trigger':<22} {'subscription':<10} {'signature':<10} {'schema':<8} key fields")
        for h in hits:
            body = h.json
            fields = {k: body["data"].get(k) for k in KEY_FIELDS.get(body["type"], [])}
            print(f"  {body['type']:<22} {'sub_demo':<10} {'verified' if h.verified else 'INVALID':<10} "
                  f"{'INVALID' if h.contract_error else 'valid':<8} "
                  f"{json.dumps(fields, ensure_ascii=False)}")
        got = {(h.json["type"], h.json["event_id"]) for h in hits if h.verified}
        missing = [e for e in expected if e not in got]
        invalid = [h for h in hits if not h.verified]
        broken = [h for h in hits if h.contract_error]
        extra = len(hits) - len(expected)
        if missing or invalid or extra or broken:
            if extra:
                print(f"UNEXPECTED: {extra} webhook(s) more than the {len(expected)} expected")
            for t, ev in missing:
                print(f"MISSING: {t} for {ev}")
            for h in invalid:
                print(f"INVALID SIGNATURE: {h.json.get('type')}: {h.error}")
            for h in broken:
                print(f"BREAKS ITS SCHEMA: {h.contract_error}")
            print("see the function logs in .local/logs/")
            return 1
        print(f"\nall {len(expected)} expected webhook(s) arrived, signatures verified, "
              f"each body valid against its schema in schemas/webhooks/")
        return 0
    finally:
        receiver.stop()
        if own_stack:
            own_stack.stop()


if __name__ == "__main__":
    sys.exit(main())
