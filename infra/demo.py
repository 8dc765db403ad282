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
from receiver import Receiver  # noqa: E402

ROOT = local_stack.ROOT
SECRET = "whsec_" + "ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXVzZS1vbmx5IQ=="  # "demo-secret-for-local-use-only!"

# Input sample (events/<type>.json) -> the webhooks it must produce. Grows as triggers land.
EXPECTED: dict[str, list[str]] = {
    "sms.received": ["sms.received"],
}

# What to show of each webhook's data.
KEY_FIELDS = {
    "sms.received": ["from", "to", "body"],
}


def running_stack() -> dict | None:
    """The outputs of a `make up` that is still running, if any."""
    pid_file, outputs_file = local_stack.LOCAL / "stack.pid", local_stack.LOCAL / "outputs.json"
    if not (pid_file.exists() and outputs_file.exists()):
        return None
    try:
        os.kill(int(pid_file.read_text()), 0)
        outputs = json.loads(outputs_file.read_text())
        local_stack.wait_http(f"{outputs['EndpointUrl']}/moto-api/", timeout=2)
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
        own_stack = local_stack.Stack(port=local_stack.free_port())
        outputs = own_stack.outputs
    endpoint = outputs["EndpointUrl"]
    receiver = Receiver()
    try:
        account = f"acc_demo_{uuid.uuid4().hex[:8]}"
        url = receiver.endpoint("/webhooks", SECRET)
        ddb = local_stack.client("dynamodb", endpoint)
        ddb.put_item(TableName=outputs["SubscriptionsTableName"], Item={
            "account_id": {"S": account}, "subscription_id": {"S": "sub_demo"}, "url": {"S": url},
            "secrets": {"L": [{"S": SECRET}]}, "triggers": {"S": "*"},
            "description": {"S": "make demo"}})
        print(f"subscription {account}/sub_demo -> {url} (all triggers)")
        sns = local_stack.client("sns", endpoint)
        expected = []
        started = time.time()
        for event_type, triggers in EXPECTED.items():
            event = sample(event_type)
            event.update(account_id=account, id=f"evt_demo_{uuid.uuid4().hex[:12]}")
            sns.publish(TopicArn=outputs["EventsTopicArn"], Message=json.dumps(event))
            print(f"published {event_type} ({event['id']})")
            expected += [(t, event["id"]) for t in triggers]

        def ours(r):
            return r.path == "/webhooks" and r.json.get("account_id") == account

        hits = receiver.wait_for(ours, count=len(expected), timeout=60)
        print(f"\n{len(hits)} webhook(s) received in {time.time() - started:.1f}s:")
        print(f"  {'trigger':<22} {'subscription':<10} {'signature':<10} key fields")
        for h in hits:
            body = h.json
            fields = {k: body["data"].get(k) for k in KEY_FIELDS.get(body["type"], [])}
            print(f"  {body['type']:<22} {'sub_demo':<10} {'verified' if h.verified else 'INVALID':<10} "
                  f"{json.dumps(fields, ensure_ascii=False)}")
        got = {(h.json["type"], h.json["event_id"]) for h in hits if h.verified}
        missing = [e for e in expected if e not in got]
        invalid = [h for h in hits if not h.verified]
        if missing or invalid:
            for t, ev in missing:
                print(f"MISSING: {t} for {ev}")
            for h in invalid:
                print(f"INVALID SIGNATURE: {h.json.get('type')}: {h.error}")
            print("see the function logs in .local/logs/")
            return 1
        print(f"\nall {len(expected)} expected webhook(s) arrived, signatures verified")
        return 0
    finally:
        receiver.stop()
        if own_stack:
            own_stack.stop()


if __name__ == "__main__":
    sys.exit(main())
