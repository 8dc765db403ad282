"""The receiver's contract, checked from the receiving side: every webhook body against its
published JSON Schema (schemas/webhooks/<type>.schema.json, generated from the Rust types by
`make schemas`), with the pinned `jsonschema` (Draft 2020-12, formats checked).

The test receiver (infra/receiver.py) checks every body it gets, so the integration suite,
`make demo` and `make soak` all hold the bodies to the contract; `make contract` checks the
schemas themselves and the AsyncAPI document (tests/contract)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from jsonschema import Draft202012Validator, FormatChecker

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SCHEMAS = ROOT / "schemas" / "webhooks"
ASYNCAPI = ROOT / "schemas" / "asyncapi.json"


@functools.cache
def validator(webhook_type: str) -> Draft202012Validator | None:
    """The validator of one webhook type's body; None when no schema is published for it."""
    path = WEBHOOK_SCHEMAS / f"{webhook_type}.schema.json"
    if "/" in webhook_type or not path.is_file():
        return None
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def contract_error(body: bytes | str) -> str | None:
    """Why a webhook body breaks its published contract, or None when it keeps it."""
    try:
        value = json.loads(body)
    except ValueError as e:
        return f"not JSON: {e}"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return "no `type`: not a webhook body"
    v = validator(value["type"])
    if v is None:
        return f"no published schema for type {value['type']!r}"
    errors = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    where = "/".join(str(p) for p in first.absolute_path) or "(root)"
    return f"{value['type']}: at {where}: {first.message}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
