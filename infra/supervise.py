"""The processes of the local stack: the emulator (infra/dynamodb_emulator.py, the moto server with
DynamoDB made to behave like the service) and, per function, a Runner: the real bootstrap behind
the Lambda runtime interface emulator, fed by a poller with the SQS event source's semantics, in
one or more execution environments (concurrent invocations, as Lambda runs them).
Also the helpers they need (free ports, waiting for an HTTP server, stopping a process group) and
what the local stack changes in every function's environment.

It is not the provisioner: it creates no AWS resource (infra/provision.py does) and reads no
template; a Runner runs the LocalFunction it is given, against queues that already exist.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cfn import REGION, ROOT
from provision import EventSource, LocalFunction, client

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, and never one this process handed out before: the kernel can give the same
    port to two `bind(0)`s in a row once the first is closed, and a stack asks for a dozen before it
    starts anything (one soak failed at start on a runtime emulator whose API port was another
    emulator's address)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s")
            time.sleep(0.1)


def rie_path() -> Path:
    import samcli

    path = Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"
    if not path.exists():
        raise FileNotFoundError(f"the runtime interface emulator is not at {path}")
    return path


def binary_dir() -> Path:
    profile = os.environ.get("LOCAL_PROFILE", "debug")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / profile


class Emulator:
    """The emulator, infra/dynamodb_emulator.py (the moto server with DynamoDB's transaction
    conflicts, per-item throttling, item size limit and request accounting), on 127.0.0.1:port.
    `config` (any of hold_ms, item_wcu_per_second, max_item_bytes, respond_after_hold) is given to
    it as its environment and applied again through /_emulator/config once it answers."""

    def __init__(self, port: int, log: Path, config: dict[str, Any] | None = None):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        env = dict(os.environ)
        for key, value in (config or {}).items():
            if key in EMULATOR_ENV:
                env[EMULATOR_ENV[key]] = str(value)
        cmd = [sys.executable, str(Path(__file__).parent / "dynamodb_emulator.py"), "-H", "127.0.0.1", "-p", str(port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"{self.endpoint}/moto-api/")
            if config:
                configure_emulator(self.endpoint, **config)
        except BaseException:
            self.stop()
            raise

    def stats(self) -> dict:
        return emulator_stats(self.endpoint)

    def reset_stats(self) -> None:
        reset_emulator_stats(self.endpoint)

    def configure(self, **config: Any) -> dict:
        return configure_emulator(self.endpoint, **config)

    def stop(self) -> None:
        _terminate(self.proc)
        self._log.close()


EMULATOR_ENV = {"hold_ms": "DDB_EMULATOR_HOLD_MS", "item_wcu_per_second": "DDB_EMULATOR_ITEM_WCU",
                "max_item_bytes": "DDB_EMULATOR_MAX_ITEM_BYTES",
                "respond_after_hold": "DDB_EMULATOR_RESPOND_AFTER_HOLD"}


def _emulator_call(endpoint: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{endpoint}/_emulator/{path}", data=data, method="GET" if data is None else "POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def emulator_stats(endpoint: str) -> dict:
    """What the DynamoDB requests so far would have cost: requests by operation, read and write
    units (in all and by table), the hottest items, refusals by kind. See infra/dynamodb_emulator.py."""
    return _emulator_call(endpoint, "stats")


def reset_emulator_stats(endpoint: str) -> None:
    _emulator_call(endpoint, "stats/reset", {})


def configure_emulator(endpoint: str, **config: Any) -> dict:
    """Change the emulator's DynamoDB behaviour (hold_ms, item_wcu_per_second, max_item_bytes,
    respond_after_hold); answers the whole configuration."""
    return _emulator_call(endpoint, "config", config)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


class Environment:
    """One execution environment of a function: a runtime interface emulator on its own ports and
    the bootstrap it starts on its first invoke. It serves one invocation at a time, as a Lambda
    execution environment does."""

    def __init__(self, index: int, port: int, api_port: int):
        self.index = index
        self.port = port
        self.api_port = api_port
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.lock = threading.Lock()  # held for the length of an invocation
        self.invoke_url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"


class Runner:
    """One function: its real bootstrap behind the runtime interface emulator, and a poller per
    event source with the SQS event source's semantics: batches of up to BatchSize, the batching
    window, partial batch failures (failed messages are left for redelivery after the visibility
    timeout; the queue's redrive policy moves them to the DLQ), and a whole-batch failure when the
    function errors.

    `environments` execution environments, as Lambda runs concurrent invocations of one function:
    each is its own runtime interface emulator and bootstrap (its own process, memory and caches),
    and each polls each event source with its own thread, as the SQS event source's concurrent
    pollers do. With one, a batch stuck on a slow receiver holds the function: nothing else of its
    queue is processed until it ends. On AWS it does not: the event source keeps polling and hands
    the next batch to another execution environment, scaling up to the source's
    MaximumConcurrency (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
    So anything shared between invocations (the webhook claims, trigger state, a subscription's
    pacing) is only exercised as on AWS with several. The environments share the function's log
    file. `invoke()` runs on the first environment unless given another; `invocations`,
    `failed_invocations` and `restarts` are totals over all of them."""

    def __init__(self, fn: LocalFunction, endpoint: str, env_overrides: dict[str, str], log_dir: Path,
                 environments: int = 1):
        if environments < 1:
            raise ValueError(f"a function needs at least one execution environment, not {environments}")
        self.fn = fn
        self.endpoint = endpoint
        self.stop_event = threading.Event()
        self._counts = threading.Lock()
        self.invocations = 0
        self.failed_invocations = 0  # the function errored or timed out: the whole batch goes back
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            **fn.environment,
            **env_overrides,
        }
        self.env = env
        self.binary = binary_dir() / fn.binary
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} is missing: run `cargo build --workspace` first")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{fn.binary}.log"
        self._log = open(self.log_path, "ab")  # O_APPEND: the environments' lines do not overwrite each other
        ports: list[int] = []
        while len(ports) < 2 * environments:
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.environments = [Environment(i, ports[2 * i], ports[2 * i + 1]) for i in range(environments)]
        try:
            for e in self.environments:
                self._spawn(e)
        except BaseException:
            for e in self.environments:
                if e.proc is not None:
                    _terminate(e.proc)
            self._log.close()
            raise
        first = self.environments[0]
        self.port = first.port
        self.api_port = first.api_port
        self.invoke_url = first.invoke_url
        self.threads = [threading.Thread(target=self._poll, args=(src, e), daemon=True,
                                         name=f"poll-{fn.binary}-{e.index}")
                        for e in self.environments for src in fn.sources]

    @property
    def proc(self) -> subprocess.Popen:
        """The first environment's emulator process."""
        return self.environments[0].proc

    @property
    def restarts(self) -> int:
        return sum(e.restarts for e in self.environments)

    def _spawn(self, e: Environment) -> None:
        e.proc = subprocess.Popen(
            [str(rie_path()), "--log-level", "error",
             "--runtime-interface-emulator-address", f"127.0.0.1:{e.port}",
             "--runtime-api-address", f"127.0.0.1:{e.api_port}", str(self.binary)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def runtime_pids(self, environment: Environment | None = None) -> list[int]:
        """The bootstrap processes the emulators run (each starts one on its first invoke): of
        every environment, or of the one given."""
        pids: list[int] = []
        for e in [environment] if environment else self.environments:
            out = subprocess.run(["pgrep", "-P", str(e.proc.pid)], capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        return pids

    def _restart_if_dead(self, e: Environment) -> None:
        """The emulator does not restart a runtime that died (crash, SIGKILL); Lambda would start a
        fresh execution environment, so start a fresh emulator in its place."""
        if e.proc.poll() is None and self.runtime_pids(e):
            return
        _terminate(e.proc)
        self._spawn(e)
        e.restarts += 1
        wait_http(f"http://127.0.0.1:{e.port}/", timeout=10)
        which = f" environment {e.index + 1}/{len(self.environments)}" if len(self.environments) > 1 else ""
        print(f"[{self.fn.binary}] runtime{which} died; started a fresh environment (restart {e.restarts})",
              file=sys.stderr)

    def start(self) -> None:
        for e in self.environments:
            wait_http(f"http://127.0.0.1:{e.port}/", timeout=10)
        for t in self.threads:
            t.start()

    def invoke(self, event: dict, environment: Environment | None = None) -> tuple[bool, Any]:
        """(function succeeded, response payload), on the first environment unless given another;
        it waits for an invocation that environment is running to end."""
        e = environment or self.environments[0]
        req = urllib.request.Request(e.invoke_url, data=json.dumps(event).encode(),
                                     headers={"content-type": "application/json"})
        with self._counts:
            self.invocations += 1
        try:
            with e.lock, urllib.request.urlopen(req, timeout=self.fn.timeout + 10) as resp:
                payload = json.loads(resp.read() or b"null")
        except Exception as ex:  # connection refused while restarting, timeouts
            return False, {"errorMessage": str(ex)}
        if isinstance(payload, dict) and "errorType" in payload:
            return False, payload
        return True, payload

    def _poll(self, src: EventSource, e: Environment) -> None:
        sqs = client("sqs", self.endpoint)
        tag = f"{self.fn.binary}" + (f" {e.index + 1}/{len(self.environments)}" if len(self.environments) > 1 else "")
        while not self.stop_event.is_set():
            try:
                messages = self._receive(sqs, src)
            except Exception as ex:
                if self.stop_event.is_set():
                    return
                print(f"[{tag}] receive failed: {ex}", file=sys.stderr)
                time.sleep(1)
                continue
            if not messages:
                continue
            event = {"Records": [_sqs_record(m, src.queue_arn) for m in messages]}
            ok, payload = self.invoke(event, e)
            if not ok and self.stop_event.is_set():
                return  # stopped under it: the messages go back to the queue, as at any stop
            if not ok:
                with self._counts:
                    self.failed_invocations += 1
                print(f"[{tag}] invocation failed, {len(messages)} message(s) left for redelivery: "
                      f"{payload.get('errorMessage', payload)}", file=sys.stderr)
                self._restart_if_dead(e)
                continue
            failed = set()
            if src.report_failures and isinstance(payload, dict):
                failed = {f.get("itemIdentifier") for f in payload.get("batchItemFailures") or []}
            done = [m for m in messages if m["MessageId"] not in failed]
            for i in range(0, len(done), 10):
                sqs.delete_message_batch(QueueUrl=src.queue_url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[i:i + 10])])

    def _receive(self, sqs, src: EventSource) -> list[dict]:
        """Up to BatchSize messages, as the SQS event source gathers them: long-poll for the first,
        then keep gathering until the batch is full or the batching window has passed since the
        first ("Lambda continues to poll ... until the batching window expires, the batch size
        quota is reached, or the payload limit of 6 MB is reached",
        https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html). A momentarily
        empty queue does not end the batch while the window is open."""
        messages: list[dict] = []
        deadline = None
        while len(messages) < src.batch_size and not self.stop_event.is_set():
            resp = sqs.receive_message(QueueUrl=src.queue_url,
                                       MaxNumberOfMessages=min(10, src.batch_size - len(messages)),
                                       WaitTimeSeconds=0 if messages else 1,
                                       MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
            got = resp.get("Messages", [])
            messages.extend(got)
            if not messages:
                break  # nothing yet: the caller polls again
            deadline = deadline or time.monotonic() + src.window_seconds
            if time.monotonic() >= deadline:
                break
            if not got:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return messages

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            if t.ident is not None:  # started: a stack that failed to start stops without them
                t.join(timeout=5)
        for e in self.environments:
            _terminate(e.proc)
        self._log.close()


def _sqs_record(m: dict, queue_arn: str) -> dict:
    return {
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {
            k: {"stringValue": v.get("StringValue"), "binaryValue": None, "stringListValues": [],
                "binaryListValues": [], "dataType": v["DataType"]}
            for k, v in m.get("MessageAttributes", {}).items()},
        "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def function_overrides(env_overrides: dict[str, str] | None = None) -> dict[str, str]:
    """What the local stack changes in every function's environment: private targets allowed
    (the receivers are on 127.0.0.1), and RETRY_SCHEDULE, ALLOW_PRIVATE_TARGETS, LOG_LEVEL from
    this process's environment when set."""
    overrides = {"ALLOW_PRIVATE_TARGETS": "true"}
    for var in ("RETRY_SCHEDULE", "ALLOW_PRIVATE_TARGETS", "LOG_LEVEL"):
        if os.environ.get(var):
            overrides[var] = os.environ[var]
    overrides.update(env_overrides or {})
    return overrides


UP_ENVIRONMENTS = 3  # execution environments per function under `make up`


def environments_from_env(default: int = 1) -> int:
    """$LOCAL_ENVIRONMENTS (execution environments per function), else `default`."""
    value = os.environ.get("LOCAL_ENVIRONMENTS", "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"LOCAL_ENVIRONMENTS must be a whole number of execution environments, not {value!r}") from None
    if n < 1:
        raise ValueError(f"LOCAL_ENVIRONMENTS must be at least 1, not {n}")
    return n
