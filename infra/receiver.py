"""A webhook receiver for the demo and the tests: records every request and verifies its signature
with the independent Standard Webhooks reference library (PyPI `standardwebhooks`).

Each path is one endpoint with its own secret and, optionally, a script of answers
(e.g. [500, 500, 200]: fail twice, then succeed; the last answer repeats), a delay before answering,
and a capacity: at most `capacity` requests served in any sliding 1-second window, every request
beyond answered at once with 429 and `Retry-After` (as SaaS CRMs do). A request answered 429 over
capacity is recorded like any other (status 429) and uses up neither the script of answers nor the
capacity. A `retry_after` given explicitly is also sent with the script's own 429 and 503 answers.

`peak_per_second` gives the most requests that arrived in any 1-second window.

Every body is also checked against its published JSON Schema (infra/contract.py): `contract_error`
says why one breaks the contract, and `broken_contracts()` lists them all."""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contract import contract_error


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    verified: bool
    error: str | None = None
    contract_error: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def peak_per_second(times: list[float]) -> int:
    """The most timestamps (seconds) within any window [t, t + 1): the peak requests per second
    over a sliding 1-second window (not over calendar seconds, which can split a burst in two)."""
    ts = sorted(times)
    peak = 0
    for i, t in enumerate(ts):
        peak = max(peak, bisect.bisect_left(ts, t + 1.0, lo=i) - i)
    return peak


class SlidingWindow:
    """Admits at most `capacity` events in any sliding 1-second window. A capacity below 1 (e.g.
    0.5) admits one event per 1 / capacity seconds. Not thread-safe: callers hold their lock."""

    def __init__(self, capacity: float):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.window = max(1.0, 1.0 / capacity)
        self.limit = max(1, int(capacity * self.window + 1e-9))
        self.admitted: deque[float] = deque()

    def admit(self, now: float) -> bool:
        while self.admitted and self.admitted[0] <= now - self.window:
            self.admitted.popleft()
        if len(self.admitted) >= self.limit:
            return False
        self.admitted.append(now)
        return True


@dataclass
class Endpoint:
    secret: str
    answers: list[int] = field(default_factory=lambda: [200])
    calls: int = 0
    delay: float = 0.0  # seconds before answering
    capacity: float | None = None  # most requests served in any 1-second window; 429 beyond
    retry_after: str | None = "1"  # the Retry-After header of those 429s (None: no header)
    answers_retry_after: str | None = None  # the Retry-After header of the script's 429s and 503s
    window: SlidingWindow | None = None

    def __post_init__(self) -> None:
        if self.capacity is not None and self.window is None:
            self.window = SlidingWindow(self.capacity)


class _Unset:
    def __repr__(self) -> str:
        return '"1" for 429s over capacity only'


UNSET: Any = _Unset()


class BacklogServer(ThreadingHTTPServer):
    """A threading HTTP server with a listen backlog for bursts: with socketserver's default of 5,
    connections beyond it wait for a SYN retransmission (1 s and more), which would show as latency
    that is not the sender's. (The backlog is given to listen() in the constructor: setting
    request_queue_size on an instance afterwards changes nothing.)"""

    request_queue_size = 256


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.endpoints: dict[str, Endpoint] = {}
        self.received: list[Received] = []
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, delay = receiver._answer(self.path, headers, body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (its timeout) before the answer

            def log_message(self, *args):
                pass

        self.server = BacklogServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def endpoint(self, path: str, secret: str, answers: list[int] | None = None, delay: float = 0.0,
                 capacity: float | None = None, retry_after: str | None = UNSET) -> str:
        """Serve `path`: `answers` in turn (the last repeats) after `delay` seconds; with
        `capacity`, at most that many requests served in any 1-second window and the others
        answered 429 at once, with `Retry-After: retry_after` ("1" unless given; None: no header).
        A `retry_after` given explicitly also goes with the script's 429 and 503 answers (which
        otherwise carry none, as before)."""
        given = retry_after is not UNSET
        self.endpoints[path] = Endpoint(secret, answers or [200], delay=delay, capacity=capacity,
                                        retry_after=retry_after if given else "1",
                                        answers_retry_after=retry_after if given else None)
        return self.url(path)

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], float]:
        """The status to answer, its headers (Retry-After on a 429 over capacity) and the seconds
        to wait before answering (the endpoint's delay; none for a 429 over capacity)."""
        ep = self.endpoints.get(path)
        verified, error, extra, delay = False, None, {}, 0.0
        if ep is None:
            status, error = 404, "no such endpoint"
        else:
            try:
                Webhook(ep.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError as e:
                error = f"signature: {e}"
        with self.lock:
            now = time.time()
            if ep is not None:
                if ep.window is not None and not ep.window.admit(now):
                    status = 429
                    error = error or "over capacity"
                    if ep.retry_after is not None:
                        extra["retry-after"] = ep.retry_after
                else:
                    status = ep.answers[min(ep.calls, len(ep.answers) - 1)]
                    ep.calls += 1
                    delay = ep.delay
                    if status in (429, 503) and ep.answers_retry_after is not None:
                        extra["retry-after"] = ep.answers_retry_after
            self.received.append(Received(path, headers, body, now, status, verified, error,
                                          contract_error(body)))
            self.lock.notify_all()
        return status, extra, delay

    def broken_contracts(self) -> list[Received]:
        """Every request received whose body does not validate against its published schema."""
        with self.lock:
            return [r for r in self.received if r.contract_error is not None]

    def wait_for(self, predicate, count: int = 1, timeout: float = 30.0) -> list[Received]:
        """Wait until at least `count` received requests satisfy `predicate`; return them."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                hits = [r for r in self.received if predicate(r)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    return hits
                self.lock.wait(left)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
