"""The invocation's deadline, end to end: sends that could outlast the invocation are deferred to
a later one, and every webhook still arrives once, with one attempt in its log.

A stack of its own with the sms function only: HTTP_TIMEOUT 27 s with the 30 s function timeout
leaves a 29 s send budget (timeout + 2 s margin), so only a send that starts within the first
second of an invocation is made; one in flight at a time, to a receiver that answers after 1.5 s;
claims leased for 2 s, so a deferred webhook comes back 3 s later."""


import pytest

from conftest import SECRET, envelope, get_item, local_stack, log_records, publish, put_subscription, unique
import supervise  # noqa: E402 (conftest put infra/ on the path)


@pytest.fixture(scope="module")
def tight_stack(tmp_path_factory):
    s = local_stack.Stack(port=supervise.free_port(), log_dir=tmp_path_factory.mktemp("deadline-logs"),
                          functions=["sms"],
                          env_overrides={"HTTP_TIMEOUT": "27s", "DELIVERY_CONCURRENCY": "1", "CLAIM_LEASE": "2s"})
    yield s
    s.stop()


def test_sends_near_the_deadline_are_deferred_and_still_arrive_once(tight_stack, receiver):
    stack = tight_stack
    account = unique("acc")
    url = receiver.endpoint(f"/{account}/slow", SECRET, delay=1.5)
    for sub in ("sub_a", "sub_b", "sub_c"):
        put_subscription(stack, account, sub, url, triggers=["sms.received"])
    publish(stack, envelope("sms.received", account,
                            {"message_id": "in_1", "from": "+14155550123", "to": "+14155559876", "body": "hi"}))

    hits = receiver.wait_for(lambda r: r.path == f"/{account}/slow", count=3, timeout=40)
    assert len(hits) == 3, f"{len(hits)} of 3 webhooks arrived"
    assert all(h.verified for h in hits), [h.error for h in hits]
    ids = {h.headers["webhook-id"] for h in hits}
    assert len(ids) == 3, "one webhook per subscription"

    deferred = [r for r in log_records(stack, "sms") if r.get("message", "").startswith("webhook deferred")
                and r.get("account_id") == account]
    assert deferred, "the first invocation had time for one 1.5 s send only: the others were deferred"
    assert all(r["attempt"] == 1 for r in deferred), "a deferral keeps the attempt number"

    stack.settle()  # every deferred copy has been delivered: one sent twice would be here now
    assert len(receiver.wait_for(lambda r: r.path == f"/{account}/slow", count=4, timeout=0)) == 3
    for webhook_id in ids:
        claim = get_item(stack, "StateTableName", {"pk": f"webhook#{webhook_id}", "sk": "delivery"})
        assert claim["status"]["S"] == "delivered"
        assert len(claim["attempts"]["L"]) == 1, "a deferral is not an attempt"
