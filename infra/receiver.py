"""A webhook receiver for the demo and the tests: records every request and verifies its signature
with the independent Standard Webhooks reference library (PyPI `standardwebhooks`).

Each path is one endpoint with its own secret and, optionally, a script of answers
(e.g. [500, 500, 200]: fail twice, then succeed; the last answer repeats)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    verified: bool
    error: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Endpoint:
    secret: str
    answers: list[int] = field(default_factory=lambda: [200])
    calls: int = 0
    delay: float = 0.0  # seconds before answering


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
                status, verified, error = receiver._answer(self.path, headers, body)
                ep = receiver.endpoints.get(self.path)
                if ep and ep.delay:
                    time.sleep(ep.delay)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def endpoint(self, path: str, secret: str, answers: list[int] | None = None, delay: float = 0.0) -> str:
        self.endpoints[path] = Endpoint(secret, answers or [200], delay=delay)
        return self.url(path)

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bool, str | None]:
        ep = self.endpoints.get(path)
        verified, error = False, None
        if ep is None:
            status, error = 404, "no such endpoint"
        else:
            try:
                Webhook(ep.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError as e:
                error = f"signature: {e}"
            status = ep.answers[min(ep.calls, len(ep.answers) - 1)]
            ep.calls += 1
        with self.lock:
            self.received.append(Received(path, headers, body, time.time(), status, verified, error))
            self.lock.notify_all()
        return status, verified, error

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
