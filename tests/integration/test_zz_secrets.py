"""Runs last (file order): after every other test has gone through the stack, no signing secret
and no custom header value appears in any function's logs."""

import base64
import time

from conftest import SECRET, envelope, publish, put_subscription, unique

ROTATION_SECRET = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
API_KEY = "k-super-secret-4242"


def test_no_secret_in_any_log(stack, receiver):
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/keyed", SECRET)
    put_subscription(stack, account, "sub_keyed", url, triggers=["sms.received"], secrets=[SECRET, ROTATION_SECRET],
                     headers={"x-api-key": API_KEY})
    publish(stack, envelope("sms.received", account, {"message_id": "m", "from": "+1", "to": "+2", "body": "b"}))
    [hit] = receiver.wait_for(lambda r: r.path == f"/{account}/keyed")
    assert hit.verified and hit.headers["x-api-key"] == API_KEY
    time.sleep(0.5)
    needles = [API_KEY]
    for s in (SECRET, ROTATION_SECRET):
        raw = s.removeprefix("whsec_")
        needles += [s, raw, base64.b64decode(raw).hex()]
    logs = {r.fn.binary: r.log_path.read_text(errors="replace") for r in stack.runners}
    assert sum(len(text) for text in logs.values()) > 10_000, "the logs of the whole run are here"
    leaks = [(name, n) for name, text in logs.items() for n in needles if n in text]
    assert not leaks, leaks
