"""The local stack: the AWS emulator (moto, with DynamoDB made to behave like the service:
infra/dynamodb_emulator.py), every resource template.yaml declares, and the six real
function binaries behind the Lambda runtime interface emulator, fed by a poller with the SQS event
source's semantics.

template.yaml is the only list of resources. This module composes the three parts that make the
stack, and holds the `make up` entry point:

  infra/cfn.py        reads template.yaml and resolves the intrinsic functions it uses
  infra/provision.py  creates each resource through the AWS API with its real properties (filter
                      policies, redrive, TTL, alarms), one function per resource type
  infra/supervise.py  the emulator and the function processes, and the SQS pollers

Only Stack and main() are here: the tools and tests import every other name from the module that
defines it (cfn, provision, supervise).

CLI:  python infra/stack.py up [--port 4566]     the stack in the foreground until Ctrl-C
      python infra/stack.py provision [--port]  resources only, on an emulator already running

Execution environments per function (concurrent invocations, see supervise.Runner): Stack's
`environments`, by default $LOCAL_ENVIRONMENTS or 1 (the integration tests run one); `up` (what
`make up` runs) starts 3 unless $LOCAL_ENVIRONMENTS says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cfn import LOCAL, ROOT
from provision import client, provision, write_outputs, write_functions
from supervise import Emulator, Runner, function_overrides, UP_ENVIRONMENTS, environments_from_env


class Stack:
    """Everything, started in order and stopped in reverse. `environments`: execution environments
    per function (concurrent invocations, see supervise.Runner), by default $LOCAL_ENVIRONMENTS or 1."""

    def __init__(self, port: int = 4566, env_overrides: dict[str, str] | None = None,
                 parameters: dict[str, str] | None = None, log_dir: Path = LOCAL / "logs",
                 functions: list[str] | None = None, config: dict[str, Any] | None = None,
                 environments: int | None = None, aws_faults: dict[str, Any] | None = None):
        """`aws_faults`: keyword arguments of infra/faults.py's FaultProxy (e.g. `{"share": 0.1}`);
        when given, the functions reach AWS through it (the pollers and the caller do not)."""
        self.log_dir = log_dir
        self.faults = None
        self.environments = environments_from_env() if environments is None else environments
        # A transaction is answered when it is no longer in flight, as DynamoDB does: only
        # concurrent transactions on the same item conflict.
        self.emulator = Emulator(port, log_dir / "moto.log", {"respond_after_hold": True, **(config or {})})
        self.runners: list[Runner] = []
        try:
            self.provisioned = provision(self.emulator.endpoint, parameters)
            overrides = function_overrides(env_overrides)
            if aws_faults is not None:
                from faults import FaultProxy

                self.faults = FaultProxy(self.emulator.endpoint, **aws_faults)
                overrides["AWS_ENDPOINT_URL"] = self.faults.endpoint
            for fn in self.provisioned.functions:
                if functions is None or fn.binary in functions:
                    self.runners.append(Runner(fn, self.emulator.endpoint, overrides, log_dir,
                                               environments=self.environments))
            for runner in self.runners:
                runner.start()
        except BaseException:
            self.stop()
            raise

    @property
    def outputs(self) -> dict[str, str]:
        return self.provisioned.outputs

    def client(self, service: str):
        return client(service, self.emulator.endpoint)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until every function's source queues are empty: nothing visible, nothing being
        processed (a message a function holds stays in flight until it is deleted, after its
        webhooks were sent and its retries queued) and nothing delayed (a retry due later). Then
        everything published before the call has had its full effect, so a test can check that
        nothing more arrived, or publish the next event knowing the previous one was applied,
        without guessing a sleep. Raises TimeoutError naming the queues still busy."""
        sqs = self.client("sqs")
        urls = sorted({src.queue_url for r in self.runners for src in r.fn.sources})
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            busy = {}
            for url in urls:
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
                counts = [int(attrs.get(n, 0)) for n in names]
                if any(counts):
                    busy[url.rsplit("/", 1)[-1]] = dict(zip(("visible", "in_flight", "delayed"), counts))
            # Twice in a row: SNS fans out to the queues one after another.
            quiet = quiet + 1 if not busy else 0
            if quiet >= 2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues still busy after {timeout:.0f} s: {busy}")
            time.sleep(0.1)

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        if self.faults is not None:
            self.faults.stop()
        self.emulator.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "provision"])
    ap.add_argument("--port", type=int, default=4566)
    args = ap.parse_args()
    if args.command == "provision":
        p = provision(f"http://127.0.0.1:{args.port}")
        write_outputs(p.outputs)
        write_functions(p)
        print(json.dumps(p.outputs, indent=2))
        return 0

    stack = Stack(port=args.port, environments=environments_from_env(UP_ENVIRONMENTS))
    write_outputs(stack.outputs)
    write_functions(stack.provisioned)
    (LOCAL / "stack.pid").write_text(str(os.getpid()))
    print(f"emulator: {stack.emulator.endpoint}")
    print(f"{stack.environments} execution environment(s) per function (LOCAL_ENVIRONMENTS); the first's invoke URL:")
    for runner in stack.runners:
        print(f"function {runner.fn.binary}: {runner.invoke_url} (log: {runner.log_path.relative_to(ROOT)})")
    print(f"outputs: {(LOCAL / 'outputs.json').relative_to(ROOT)}\nready; Ctrl-C stops everything", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set():
            stopping.wait(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping", flush=True)
        stack.stop()
        (LOCAL / "stack.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
