"""AWS's own faults, between the functions and the emulator: an HTTP proxy on the functions'
`AWS_ENDPOINT_URL` that fails a configured share of their DynamoDB and SQS requests the ways the
real services fail. It lives outside the product code, as the emulator does.

The kinds, each a share of the requests it sees (chosen at random, seeded):
- `throttle`: `400 ThrottlingException`, not forwarded ("the request rate is too high",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html);
- `error500`: `500 InternalFailure` ("the request processing has failed because of an unknown
  error"), not forwarded;
- `slow`: forwarded, and the answer held back `slow_seconds` before it is sent;
- `lost_reply`: forwarded and applied, then the connection is reset before the answer is sent,
  so the caller cannot tell whether its write happened (the case the AWS SDKs retry, and the one
  a conditional write must recognise as its own: "if the client does not receive a response ...
  the SDK retries the request", docs above, "Error retries and exponential backoff").

Requests are told apart by `X-Amz-Target` (the JSON protocols of both services): `DynamoDB_*`
and `AmazonSQS.*`. `only` limits the faults to some operations (e.g. `{"UpdateItem"}`), and
`script()` puts exact faults: (operation, substrings of the body, kind, times), each
applied to the next `times` requests that match, before any random fault; a scripted fault is
how an integration test puts a lost reply on one webhook's claim.

`python infra/faults.py --upstream http://127.0.0.1:4566 --share 0.1` runs one by hand; the soak
and the tests start it in-process (`FaultProxy(...)`), and read `counts` by kind.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

KINDS = ("throttle", "error500", "slow", "lost_reply")


@dataclass
class Rule:
    """The next `times` requests of `operation` whose body contains every string of `match` get
    `kind`."""

    operation: str
    match: tuple[str, ...]
    kind: str
    times: int = 1


class FaultProxy:
    def __init__(self, upstream: str, share: float = 0.0, seed: int = 7, slow_seconds: float = 1.5,
                 kinds: tuple[str, ...] = KINDS, only: set[str] | None = None, port: int = 0):
        for k in kinds:
            if k not in KINDS:
                raise ValueError(f"unknown fault kind {k!r}; known: {', '.join(KINDS)}")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be between 0 and 1, got {share}")
        up = urlparse(upstream)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.share = share
        self.kinds = kinds
        self.only = only
        self.slow_seconds = slow_seconds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.counts: Counter = Counter()  # "<kind>" and "<kind> <Operation>" -> faults injected
        self.requests: Counter = Counter()  # "<service>" -> requests seen
        self.local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                target = self.headers.get("x-amz-target", "")
                service, _, operation = target.partition(".")
                service = "dynamodb" if service.startswith("DynamoDB") else (
                    "sqs" if service == "AmazonSQS" else "other")
                kind = proxy._choose(service, operation, body)
                if kind == "throttle":
                    return self._error(400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.",
                                       service)
                if kind == "error500":
                    return self._error(500, "InternalFailure",
                                       "The request processing has failed because of an unknown error.", service)
                status, headers, answer = proxy._forward(self.command, self.path, self.headers, body)
                if kind == "slow":
                    time.sleep(proxy.slow_seconds)
                if kind == "lost_reply":
                    # Applied upstream; the caller never hears: reset the connection.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_GET = do_PUT = do_DELETE = _relay  # noqa: N815

            def _error(self, status: int, code: str, message: str, service: str) -> None:
                doc = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}" if service == "dynamodb" else code,
                       "message": message}
                answer = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("content-type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-requestid", f"fault-{time.time_ns()}")
                if service == "sqs":
                    self.send_header("x-amzn-query-error", f"{code};{'Sender' if status < 500 else 'Receiver'}")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # noqa: ARG002
                pass  # a caller that gave up (an SDK timeout, a killed function) is not news

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fault-proxy").start()

    def script(self, operation: str, match: str | tuple[str, ...], kind: str, times: int = 1) -> Rule:
        """Put `kind` on the next `times` requests of `operation` whose body contains `match` (a
        string, or several that must all be there). The rule is returned: `rule.times` is what
        is left of it."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        rule = Rule(operation, (match,) if isinstance(match, str) else tuple(match), kind, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def set_share(self, share: float) -> None:
        with self.lock:
            self.share = share

    def _choose(self, service: str, operation: str, body: bytes) -> str | None:
        with self.lock:
            self.requests[service] += 1
            if service == "other":
                return None
            text = None
            for rule in self.rules:
                if rule.times > 0 and rule.operation == operation:
                    text = body.decode("utf-8", "replace") if text is None else text
                    if all(m in text for m in rule.match):
                        rule.times -= 1
                        self.counts[rule.kind] += 1
                        self.counts[f"{rule.kind} {operation}"] += 1
                        self.counts["scripted"] += 1
                        return rule.kind
            if self.only is not None and operation not in self.only:
                return None
            if self.share <= 0 or self.rng.random() >= self.share:
                return None
            kind = self.rng.choice(self.kinds)
            self.counts[kind] += 1
            self.counts[f"{kind} {operation}"] += 1
            return kind

    def _forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, list, bytes]:
        conn = getattr(self.local, "conn", None)
        for attempt in (0, 1):
            if conn is None:
                conn = http.client.HTTPConnection(*self.upstream, timeout=60)
                self.local.conn = conn
            try:
                conn.request(method, path, body=body, headers={k: v for k, v in headers.items()
                                                               if k.lower() not in ("connection",)})
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                conn = None
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def summary(self) -> dict:
        """Faults by kind (and by kind and operation), and requests by service."""
        with self.lock:
            return {"requests": dict(self.requests), "faults": dict(self.counts)}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", default="http://127.0.0.1:4566")
    ap.add_argument("--port", type=int, default=4567)
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    proxy = FaultProxy(args.upstream, args.share, args.seed, port=args.port)
    print(f"fault proxy on {proxy.endpoint} -> {args.upstream}, {args.share:.0%} of DynamoDB and SQS requests")
    try:
        while True:
            time.sleep(10)
            print(json.dumps(proxy.summary()))
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
