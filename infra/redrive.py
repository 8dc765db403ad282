"""Move messages from a category's dead-letter queue back to its queue for reprocessing.

Input events are processed again; dead letters of webhooks (`dataflows_dead_letter`) restart their
retry schedule from the first attempt (their claim goes from exhausted back to pending).

  python infra/redrive.py --category sms                       # the local stack (.local/outputs.json)
  python infra/redrive.py --dlq-url URL --queue-url URL        # any account; AWS credentials as usual
  python infra/redrive.py --category sms --subscription zapier # only that subscription's dead letters

On AWS, `aws sqs start-message-move-task --source-arn <DLQ ARN> --destination-arn <queue ARN>`
(both ARNs are in the stack's Outputs) moves everything at once. Without --destination-arn, only the
messages SQS itself moved would go back, not the dead letters the functions write. This command
adds the filters and works on the local emulator, which lacks move tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3

OUTPUTS = Path(__file__).resolve().parent.parent / ".local" / "outputs.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--category", choices=["sms", "operations", "contacts", "messaging", "performance", "admin"])
    ap.add_argument("--dlq-url")
    ap.add_argument("--queue-url")
    ap.add_argument("--endpoint-url", help="AWS endpoint (default: the local stack's, with --category)")
    ap.add_argument("--subscription", help="only dead letters of this subscription id")
    ap.add_argument("--account", help="only messages of this account id")
    ap.add_argument("--max", type=int, default=10_000, help="stop after moving this many")
    args = ap.parse_args()

    endpoint = args.endpoint_url
    dlq, queue = args.dlq_url, args.queue_url
    if args.category and not (dlq and queue):
        if not OUTPUTS.exists():
            ap.error("--category needs the local stack's .local/outputs.json (make up), or give --dlq-url and --queue-url")
        outputs = json.loads(OUTPUTS.read_text())
        name = args.category.capitalize()
        dlq, queue = outputs[f"{name}DeadLetterQueueUrl"], outputs[f"{name}QueueUrl"]
        endpoint = endpoint or outputs["EndpointUrl"]
    if not (dlq and queue):
        ap.error("give --category, or --dlq-url and --queue-url")
    kwargs = {"endpoint_url": endpoint} if endpoint else {}
    if endpoint and "127.0.0.1" in endpoint:
        kwargs.update(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    sqs = boto3.client("sqs", **kwargs)

    moved = 0
    skipped: list[str] = []
    seen: set[str] = set()
    while moved < args.max:
        msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30,
                                   MessageAttributeNames=["All"]).get("Messages", [])
        fresh = [m for m in msgs if m["MessageId"] not in seen]
        if not fresh:
            break
        for m in fresh:
            seen.add(m["MessageId"])
            try:
                body = json.loads(m["Body"])
            except ValueError:
                body = None
            if not isinstance(body, dict):
                body = {}
            if (args.subscription and body.get("subscription_id") != args.subscription) or \
                    (args.account and body.get("account_id") != args.account):
                skipped.append(m["ReceiptHandle"])  # stays hidden until the scan ends
                continue
            attrs = {k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
                     for k, v in m.get("MessageAttributes", {}).items() if "StringValue" in v}
            sqs.send_message(QueueUrl=queue, MessageBody=m["Body"], MessageAttributes=attrs)
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    for handle in skipped:  # visible again for the next reader
        sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=handle, VisibilityTimeout=0)
    print(f"moved {moved} message(s) back to {queue}; {len(skipped)} left on the DLQ by the filters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
