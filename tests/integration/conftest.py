"""Fixtures for the integration tests: the real local stack (moto emulator, resources provisioned
from template.yaml, the real function binaries under the runtime interface emulator) and a
verifying webhook receiver."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

import stack as local_stack  # noqa: E402
import provision  # noqa: E402
import supervise  # noqa: E402
from receiver import Receiver  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RETRY_SCHEDULE = "1s,1s,1s"


def pytest_configure(config):
    config.addinivalue_line("markers", "runs_last: run after every other test of the session")


def pytest_collection_modifyitems(session, config, items):
    # test_secrets.py searches the logs the whole run wrote for secrets, so it must come after every
    # other test, whatever its file name sorts as. A stable sort: the other tests keep their order.
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    # A short retry schedule so the retry tests finish in seconds: 4 attempts in all. The most
    # verbose log level, so test_secrets.py searches everything that could ever be logged.
    s = local_stack.Stack(port=supervise.free_port(), log_dir=tmp_path_factory.mktemp("logs"),
                          env_overrides={"RETRY_SCHEDULE": RETRY_SCHEDULE, "LOG_LEVEL": "trace"})
    yield s
    s.stop()


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def bodies_keep_their_contract(request):
    """After each test, every webhook body the receiver got so far validates against its
    published schema (schemas/webhooks/): no body drifts from the contract unnoticed."""
    yield
    if "receiver" in request.fixturenames:
        r = request.getfixturevalue("receiver")
        broken = r.broken_contracts()
        assert not broken, f"{len(broken)} webhook(s) broke their schema, first: {broken[0].contract_error}"


@pytest.fixture(autouse=True)
def requests_signed_as_aws_checks_them(request):
    """After each test, no DynamoDB request of the functions, the tools or the tests was refused
    for its signature (the emulator checks each one as DynamoDB does, behaviour 11): a request
    signed wrong would otherwise pass here and be refused by AWS. A PartiQL batch refused this way
    would even go unnoticed by the other tests, its statements then written one by one."""
    yield
    if "stack" in request.fixturenames:
        s = request.getfixturevalue("stack")
        refused = supervise.emulator_stats(s.emulator.endpoint)["refused"].get("Signature", 0)
        assert refused == 0, f"{refused} DynamoDB request(s) refused for their signature (see moto.log)"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def put_subscription(stack, account_id: str, subscription_id: str, url: str, **attrs) -> None:
    """Write a record the way a customer would, with native DynamoDB types."""
    item = {"account_id": account_id, "subscription_id": subscription_id, "url": url,
            "secrets": [SECRET], "triggers": ["*"], **attrs}
    stack.client("dynamodb").put_item(TableName=stack.outputs["SubscriptionsTableName"],
                                      Item={k: to_ddb_value(v) for k, v in item.items()})


to_ddb_value = provision.to_ddb_value


def envelope(event_type: str, account_id: str, data: dict, event_id: str | None = None,
             occurred_at: str = "2026-11-30T10:15:00Z") -> dict:
    return {"id": event_id or unique("evt"), "type": event_type, "account_id": account_id,
            "occurred_at": occurred_at, "data": data}


def publish(stack, event: dict) -> None:
    stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(event))


def get_item(stack, table_output: str, key: dict) -> dict:
    item = stack.client("dynamodb").get_item(TableName=stack.outputs[table_output],
                                             Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True)
    return item.get("Item", {})


def peek_queue(stack, queue_output: str) -> list[dict]:
    return provision.peek_queue(stack.client("sqs"), stack.outputs[queue_output])


def wait_until(probe, timeout: float = 10.0, every: float = 0.2):
    """Call `probe` until it returns something truthy (returned) or the time is up (the last value)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def find_dead_letter(stack, queue_output: str, webhook_id: str, timeout: float = 30.0) -> dict | None:
    """The dead letter of one webhook on a DLQ, left in place."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in peek_queue(stack, queue_output):
            try:
                body = json.loads(m["Body"])
            except ValueError:
                continue  # a malformed input event dead-lettered by another test
            if isinstance(body, dict) and body.get("webhook_id") == webhook_id:
                return {"body": body, "attributes": m.get("MessageAttributes", {})}
        time.sleep(0.5)
    return None


def dead_letters_by_source(stack, queue_output: str, source_ids: set[str], timeout: float = 20.0) -> dict:
    """Dead-lettered messages, left in place, by their original SQS message id:
    {id: {"reason", "field", "body"}}."""
    import time

    found: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < len(source_ids):
        for m in peek_queue(stack, queue_output):
            attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
            if attrs.get("source_message_id") in source_ids:
                found[attrs["source_message_id"]] = {"reason": attrs.get("reason"), "field": attrs.get("field"),
                                                     "body": m["Body"]}
        if len(found) < len(source_ids):
            time.sleep(0.5)
    return found


def log_records(stack, binary: str = "sms") -> list[dict]:
    """The JSON log lines a function has written so far."""
    text = next(r for r in stack.runners if r.fn.binary == binary).log_path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
