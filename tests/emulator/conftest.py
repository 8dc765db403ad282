"""Fixtures for the emulator's own tests: one emulator (infra/dynamodb_emulator.py, started the
way the local stack starts it) for the session, its configuration back to the defaults and its
accounting zeroed before each test, and boto3 clients that do not retry, so that every refusal
reaches the test."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

import supervise  # noqa: E402

DEFAULTS = {"hold_ms": 30, "item_wcu_per_second": 1000, "max_item_bytes": 409_600, "respond_after_hold": False,
            "verify_signatures": True}


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The endpoint of an emulator on a free port."""
    emu = supervise.Emulator(supervise.free_port(), tmp_path_factory.mktemp("logs") / "emulator.log")
    yield emu.endpoint
    emu.stop()


@pytest.fixture(autouse=True)
def defaults(emulator):
    supervise.configure_emulator(emulator, **DEFAULTS)
    supervise.reset_emulator_stats(emulator)
    yield


def make_client(endpoint: str):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}))  # one attempt, no retry


@pytest.fixture
def ddb(emulator):
    return make_client(emulator)


@pytest.fixture
def table(ddb):
    """A fresh table keyed like the project's state table: pk (hash) and sk (range), strings."""
    name = f"emu-{uuid.uuid4().hex[:10]}"
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    yield name
    ddb.delete_table(TableName=name)
