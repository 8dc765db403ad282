"""`make invoke FN=sms EVENT=events/sms.received.json`: what `sam local invoke` does, without Docker.

Runs one function's bootstrap (the binary `make up` runs, target/debug/<fn>) under the Lambda
runtime interface emulator, with the environment template.yaml gives it resolved against the
running local stack (`make up`: its emulator, tables and queues, from .local/outputs.json and
.local/functions.json), invokes it once with the event file, and prints the response (the batch
item failures) and the function's log lines (its JSON logs, the EMF metric line, START/END/REPORT).

  python infra/invoke.py sms events/sms.received.json
  python infra/invoke.py SmsFunction events/sms.received.json      # the logical id works too
  python infra/invoke.py sms - < event.json                        # the event on stdin

Exit status: 0 when the invocation succeeded, with or without batch item failures (they are
printed); 1 when the function failed (an error, a timeout, a crash) or the stack is not up.

What it shares with the running stack: the tables, the queues and the topic (a retry or a dead
letter the invocation writes goes to the category queue, where `make up`'s poller picks it up).
What it does not: the queue itself. The event is given to the function directly, as `sam local
invoke -e` does, and nothing is received from or deleted on the queue.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cfn  # noqa: E402
import provision  # noqa: E402
import supervise  # noqa: E402


def load_functions(outputs: dict, functions_file: Path) -> list[provision.LocalFunction]:
    """The running stack's functions as `make up` wrote them; if that file is missing or belongs to
    another emulator, resolved again from template.yaml (provisioning is idempotent)."""
    if functions_file.exists():
        doc = json.loads(functions_file.read_text())
        if doc.get("endpoint") == outputs["EndpointUrl"]:
            return [provision.LocalFunction(**{**f, "sources": [provision.EventSource(**s) for s in f["sources"]]})
                    for f in doc["functions"]]
    print(f"({functions_file.name} not written by this stack: resolving template.yaml against it)", file=sys.stderr)
    return provision.provision(outputs["EndpointUrl"]).functions


def find_function(functions: list[provision.LocalFunction], name: str) -> provision.LocalFunction:
    for f in functions:
        if name in (f.binary, f.logical_id, f.name):
            return f
    raise SystemExit(f"no function {name!r}: one of {', '.join(f.binary for f in functions)} "
                     f"(or {', '.join(f.logical_id for f in functions)})")


def stack_answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
        return True
    except Exception:
        return False


def invoke(fn: provision.LocalFunction, endpoint: str, event: dict, log_dir: Path) -> tuple[bool, object, list[str]]:
    """(succeeded, response payload, the function's log lines)."""
    log = log_dir / f"{fn.binary}.log"
    log.unlink(missing_ok=True)
    # No event source: nothing is polled, the one event is given directly.
    runner = supervise.Runner(replace(fn, sources=[]), endpoint, supervise.function_overrides(), log_dir)
    try:
        supervise.wait_http(f"http://127.0.0.1:{runner.port}/", timeout=10)
        ok, payload = runner.invoke(event)
        # The emulator writes REPORT once the runtime is done with the invocation.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "REPORT RequestId" not in log.read_text(errors="replace"):
            time.sleep(0.05)
    finally:
        runner.stop()
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return ok, payload, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("function", help="sms, operations, contacts, messaging, performance, admin (or SmsFunction, ...)")
    ap.add_argument("event", help="an SQS event file (events/), or - for stdin")
    ap.add_argument("--outputs", type=Path, default=cfn.LOCAL / "outputs.json",
                    help="the running stack's outputs (default: what `make up` wrote)")
    ap.add_argument("--log-dir", type=Path, help="where the invocation's log is kept (default: a temporary directory)")
    args = ap.parse_args()

    if not args.outputs.exists():
        print(f"{args.outputs} is missing: start the local stack first (`make up`, in another terminal)", file=sys.stderr)
        return 1
    outputs = json.loads(args.outputs.read_text())
    endpoint = outputs["EndpointUrl"]
    if not stack_answers(endpoint):
        print(f"the local stack at {endpoint} does not answer: start it with `make up` (in another terminal)",
              file=sys.stderr)
        return 1
    event = json.load(sys.stdin) if args.event == "-" else json.loads(Path(args.event).read_text())
    fn = find_function(load_functions(outputs, args.outputs.parent / "functions.json"), args.function)

    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix=f"invoke-{fn.binary}-"))
    ok, payload, lines = invoke(fn, endpoint, event, log_dir)
    records = len(event.get("Records", [])) if isinstance(event, dict) else 0
    print(f"# {fn.logical_id} ({supervise.binary_dir() / fn.binary}), {records} record(s), against {endpoint}")
    print("# response")
    print(json.dumps(payload, indent=2))
    if ok and isinstance(payload, dict):
        failures = payload.get("batchItemFailures") or []
        print(f"# {len(failures)} batch item failure(s)" + (": " + ", ".join(f.get("itemIdentifier", "?") for f in failures)
                                                            if failures else ""))
    print("# log")
    for line in lines:
        print(line)
    if not ok:
        print(f"# the invocation failed: {payload.get('errorType', '') if isinstance(payload, dict) else ''} "
              f"{payload.get('errorMessage', payload) if isinstance(payload, dict) else payload}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
