"""`make invoke FN=<function> EVENT=<file>` (infra/invoke.py): every sample event of events/ given
to its function's real bootstrap under the runtime interface emulator, against a running local
stack's resources, prints the response and the function's log lines (issue #12)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import ROOT, SECRET, put_subscription, unique

import provision
import supervise

EVENTS = sorted((ROOT / "events").glob("*.json"))


def function_of(event_file) -> str:
    """The category whose queue the sample names (eventSourceARN `...-<Category>Queue`)."""
    arn = json.loads(event_file.read_text())["Records"][0]["eventSourceARN"]
    return re.search(r"-(\w+)Queue$", arn).group(1).lower()


@pytest.fixture(scope="module")
def running(stack, receiver, tmp_path_factory):
    """The session's stack as `make up` leaves it: outputs.json and functions.json in a directory,
    and a subscription for the samples' account (every trigger) on the receiver."""
    d = tmp_path_factory.mktemp("local")
    provision.write_outputs(stack.outputs, d / "outputs.json")
    provision.write_functions(stack.provisioned, d / "functions.json")
    put_subscription(stack, "acc_demo", "invoke-samples", receiver.endpoint("/invoke-samples", SECRET))
    return d


def run_invoke(running, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "infra" / "invoke.py"), *args,
                           "--outputs", str(running / "outputs.json")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def response_of(stdout: str) -> dict:
    text = stdout.split("# response\n", 1)[1].split("\n# ", 1)[0]
    return json.loads(text)


@pytest.mark.parametrize("event_file", EVENTS, ids=[e.stem for e in EVENTS])
def test_every_sample_event_invokes_its_function(running, event_file):
    fn = function_of(event_file)
    out = run_invoke(running, fn, str(event_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert response_of(out.stdout) == {"batchItemFailures": []}, out.stdout
    log = out.stdout.split("# log\n", 1)[1].splitlines()
    assert any(line.startswith("START RequestId") for line in log), out.stdout
    assert any(line.startswith("REPORT RequestId") for line in log), out.stdout


def test_make_invoke_delivers_and_prints_the_function_log(running, receiver, tmp_path):
    """The make target itself, on the sample of the README (with an event id of its own, so no
    claim of an earlier test holds it back): the webhook reaches the subscriber, verified, and the
    output holds the function's EMF line."""
    sample = json.loads((ROOT / "events" / "sms.received.json").read_text())
    body = json.loads(sample["Records"][0]["body"])
    event_id = body["id"] = unique("evt_invoke")
    sample["Records"][0]["body"] = json.dumps(body)
    (tmp_path / "sms.received.json").write_text(json.dumps(sample))
    out = subprocess.run(["make", "--no-print-directory", "invoke", "FN=sms", f"EVENT={tmp_path / 'sms.received.json'}",
                          f"INVOKE_ARGS=--outputs {running / 'outputs.json'}"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    hits = receiver.wait_for(lambda r: r.path == "/invoke-samples" and r.json.get("event_id") == event_id
                             and r.json.get("type") == "sms.received", timeout=10)
    assert hits and all(h.verified for h in hits)
    log = out.stdout.split("# log\n", 1)[1].splitlines()
    emf = [json.loads(line) for line in log if line.startswith("{") and '"_aws"' in line]
    assert emf and emf[0]["Category"] == "sms" and emf[0]["WebhooksDelivered"] >= 1, out.stdout


def test_the_logical_id_names_the_function_too(running):
    out = run_invoke(running, "AdminFunction", str(ROOT / "events" / "sender_id.approved.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("# AdminFunction")


def test_a_function_error_is_reported(running):
    """A body that is not an SQS event: the function errors, the exit status says so."""
    out = subprocess.run([sys.executable, str(ROOT / "infra" / "invoke.py"), "sms", "-",
                          "--outputs", str(running / "outputs.json")], input='{"Records": "not a list"}',
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "errorType" in out.stdout and "the invocation failed" in out.stderr


def test_without_a_running_stack_it_says_what_to_do(tmp_path):
    (tmp_path / "outputs.json").write_text(json.dumps({"EndpointUrl": f"http://127.0.0.1:{supervise.free_port()}"}))
    out = subprocess.run([sys.executable, str(ROOT / "infra" / "invoke.py"), "sms", "events/sms.received.json",
                          "--outputs", str(tmp_path / "outputs.json")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "make up" in out.stderr
