"""Runs last (marked runs_last: conftest.py moves it after every other test of the session): after
every other test has gone through the stack, at the most verbose log level (conftest.py runs the
stack with LOG_LEVEL=trace), no signing secret, no custom header value and no secret-bearing URL
path appears in any function's logs, claims or dead letters. Run alone, it searches the logs of
its own events only."""

import base64
import json
import time

import pytest

from conftest import SECRET, envelope, find_dead_letter, get_item, publish, put_subscription, unique

ROTATION_SECRET = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
API_KEY = "k-super-secret-4242"


PATH_TOKEN = "T0K3N-hooks-catch-8f2b71c9"  # a catch-hook URL's path is its credential


@pytest.mark.runs_last
def test_no_secret_in_any_log(stack, receiver, request):
    items = request.session.items
    earlier = [i for i in items[:items.index(request.node)] if "stack" in i.fixturenames]
    logs_before = sum(len(r.log_path.read_text(errors="replace")) for r in stack.runners)
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/keyed/{PATH_TOKEN}", SECRET)
    put_subscription(stack, account, "sub_keyed", url, triggers=["sms.received"], secrets=[SECRET, ROTATION_SECRET],
                     headers={"x-api-key": API_KEY})
    # And one whose every attempt fails to connect, so errors, the attempt log and the dead letter
    # are written for a URL with a secret path and query.
    put_subscription(stack, account, "sub_down", f"http://127.0.0.1:9/{PATH_TOKEN}/x?token={PATH_TOKEN}",
                     triggers=["sms.received"])
    publish(stack, envelope("sms.received", account, {"message_id": "m", "from": "+1", "to": "+2", "body": "b"}))
    [hit] = receiver.wait_for(lambda r: r.path == f"/{account}/keyed/{PATH_TOKEN}")
    assert hit.verified and hit.headers["x-api-key"] == API_KEY
    letter = None
    # Refused connections open the subscription's circuit after two attempts: the last two wait
    # out its 30 s and then 60 s (held back, not attempts) before they are made.
    deadline = time.monotonic() + 150
    while letter is None and time.monotonic() < deadline:
        ids = [r for r in log_lines(stack)
               if r.get("account_id") == account and r.get("subscription_id") == "sub_down" and r.get("webhook_id")]
        if ids:
            letter = find_dead_letter(stack, "SmsDeadLetterQueueUrl", ids[0]["webhook_id"], timeout=2)
        time.sleep(0.5)
    assert letter is not None, "the failing subscription's webhook was dead-lettered"
    assert letter["body"]["url"] == "http://127.0.0.1:9"
    assert PATH_TOKEN not in json.dumps(letter["body"])
    claim = get_item(stack, "StateTableName", {"pk": f"webhook#{letter['body']['webhook_id']}", "sk": "delivery"})
    assert claim["attempts"]["L"], claim
    assert PATH_TOKEN not in json.dumps(claim)
    stack.settle()
    needles = [API_KEY, PATH_TOKEN]
    for s in (SECRET, ROTATION_SECRET):
        raw = s.removeprefix("whsec_")
        needles += [s, raw, base64.b64decode(raw).hex()]
    logs = {r.fn.binary: r.log_path.read_text(errors="replace") for r in stack.runners}
    # This test's own lines are in them (its dead letter was found through them, above). When
    # tests before it used the stack, so are theirs: the same stack, its logs since it started.
    if earlier:
        assert logs_before > 0, f"the logs of the {len(earlier)} tests before this one that used the stack are here"
    leaks = [(name, n) for name, text in logs.items() for n in needles if n in text]
    assert not leaks, leaks


def log_lines(stack) -> list[dict]:
    out = []
    for r in stack.runners:
        for line in r.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out
