"""`dataflows --json` is a contract for scripts: every command's JSON output, recorded once
(RECORD_CLI_JSON=1 writes tests/integration/cli_json.golden.json) and compared on every run, so a
refactor of the CLI (issue #23: one module per command) cannot change a byte of it unnoticed.
What varies from run to run (times, ports, generated ids and secrets, latencies) is normalised
first; everything else must be identical."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from conftest import ROOT, SECRET, envelope

import supervise

BINARY = supervise.binary_dir() / "dataflows"
GOLDEN = Path(__file__).with_name("cli_json.golden.json")
ACCOUNT = "acc_cli_golden"

PATTERNS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"msg_[0-9a-f]{32}"), "<webhook_id>"),
    (re.compile(r"whsec_[A-Za-z0-9+/]+=*"), "<secret>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"evt_test_[0-9a-f]+"), "<test_event>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"/tmp/[^\s\"']+"), "<tmp>"),
]
# Numbers that are times, durations or counts of the machine's moment, not of the scenario.
VOLATILE_NUMBERS = {"latency_ms", "at", "first_attempt_at", "failing_since", "not_before", "expires_at",
                    "age_s", "sent_at", "slots_reserved_for_s", "paused_for_s", "oldest_held_s", "held_back",
                    "secrets_keep_until", "received_at", "timestamp"}


def normalise(v, key: str = ""):
    if isinstance(v, dict):
        return {k: normalise(x, k) for k, x in v.items()}
    if isinstance(v, list):
        items = [normalise(x, key) for x in v]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True)) if all(isinstance(x, dict) for x in items) else items
    if isinstance(v, str):
        for pattern, stand_in in PATTERNS:
            v = pattern.sub(stand_in, v)
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and (key in VOLATILE_NUMBERS or v > 1_600_000_000):
        return "<n>"
    return v


def test_every_command_prints_the_recorded_json(stack, receiver, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(stack.outputs))

    def run(*args: str) -> dict:
        out = subprocess.run([str(BINARY), "--outputs", str(outputs), "--json", *args], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
        doc = json.loads(out.stdout) if out.stdout.strip() else None
        return {"args": [normalise(a) for a in args], "exit": out.returncode, "json": normalise(doc)}

    good_url = receiver.endpoint(f"/{ACCOUNT}/good", SECRET)
    bad_url = receiver.endpoint(f"/{ACCOUNT}/bad", SECRET, answers=[500])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"account_id": ACCOUNT, "subscription_id": "x", "url": "https://10.0.0.1/x",
                                  "secrets": [SECRET], "triggers": ["sms.recieved"]}))
    event = tmp_path / "event.json"
    event.write_text(json.dumps(envelope("sms.received", ACCOUNT, {"message_id": "m_golden", "from": "+14155550123",
                                                                  "to": "+14155559876", "body": "golden"},
                                         event_id="evt_cli_golden")))
    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs/examples/subscriptions").glob("*.json"))
    runs = [
        run("subscription", "validate", *examples),
        run("subscription", "validate", str(broken)),
        run("subscription", "put", "--account", ACCOUNT, "--id", "good", "--url", good_url, "--trigger", "sms.received",
            "--trigger", "balance.low", "--secret", SECRET, "--description", "golden", "--rate-limit", "5"),
        run("subscription", "put", "--account", ACCOUNT, "--id", "good", "--url", good_url, "--trigger", "sms.received"),
        run("subscription", "put", "--account", ACCOUNT, "--id", "bad", "--url", bad_url, "--trigger", "sms.received",
            "--secret", SECRET),
        run("subscription", "list", "--account", ACCOUNT),
        run("subscription", "show", "--account", ACCOUNT, "--id", "good"),
        run("subscription", "disable", "--account", ACCOUNT, "--id", "good", "--reason", "maintenance"),
        run("subscription", "enable", "--account", ACCOUNT, "--id", "good"),
        run("send-test", "--account", ACCOUNT, "--subscription", "good", "--trigger", "sms.received"),
        run("send-test", "--account", ACCOUNT, "--subscription", "bad"),
        run("event", "publish", str(event)),
    ]
    hits = receiver.wait_for(lambda r: r.path == f"/{ACCOUNT}/good" and r.json.get("event_id") == "evt_cli_golden",
                             timeout=20)
    webhook_id = hits[0].headers["webhook-id"]
    receiver.wait_for(lambda r: r.path == f"/{ACCOUNT}/bad" and r.json.get("event_id") == "evt_cli_golden",
                      count=4, timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = run("dead-letters", "list", "--category", "sms", "--account", ACCOUNT)
        if listed["json"] and listed["json"].get("dead_letters"):
            break
        time.sleep(0.5)
    stack.settle()
    runs += [
        run("dead-letters", "list", "--category", "sms", "--account", ACCOUNT),
        run("deliveries", "--webhook-id", webhook_id),
        run("secret", "rotate", "--account", ACCOUNT, "--id", "good", "--keep-old", "24h"),
        run("dead-letters", "redrive", "--category", "sms", "--account", ACCOUNT, "--subscription", "nobody"),
        run("webhooks", "list"),
        run("subscription", "show", "--account", "acc_nobody", "--id", "none"),
    ]
    if os.environ.get("RECORD_CLI_JSON"):
        GOLDEN.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(GOLDEN.read_text())
    assert len(recorded) == len(runs)
    for before, now in zip(recorded, runs):
        assert now == before, f"`dataflows --json {' '.join(before['args'])}` changed"
