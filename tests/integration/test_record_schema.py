"""The documented subscription examples validate against schemas/subscription.schema.json, and
records that break the schema's main rules are rejected by it (the functions' own validation of the
same records is unit-tested in Rust)."""

import json
from pathlib import Path

import jsonschema
import pytest
from boto3.dynamodb.types import TypeDeserializer

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "subscription.schema.json").read_text())
EXAMPLES = sorted((ROOT / "docs" / "examples" / "subscriptions").glob("*.json"))


def plain(path: Path) -> dict:
    d = TypeDeserializer()
    item = {k: d.deserialize(v) for k, v in json.loads(path.read_text()).items()}
    return json.loads(json.dumps(item, default=float))  # Decimals to numbers


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_validate(path):
    jsonschema.validate(plain(path), SCHEMA)


@pytest.mark.parametrize("patch", [
    {"url": None}, {"triggers": ["sms.recieved"]}, {"secrets": []}, {"secrets": ["nope"]},
    {"delivery_rate_low": {"threshold": 90}}, {"keywords": [{"keyword": "x", "match": "fuzzy"}]},
])
def test_broken_records_are_rejected(patch):
    record = plain(EXAMPLES[0])
    for k, v in patch.items():
        if v is None:
            record.pop(k)
        else:
            record[k] = v
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, SCHEMA)
