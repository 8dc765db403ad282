"""`dataflows`, the operator's CLI (cli/), against the local stack: validate, put (with a generated
secret; an existing record only with --replace), list and show (secrets masked), enable and disable,
send-test (to a good and to a failing receiver), event publish (a bad envelope refused with its
field, a good one delivered end to end)."""

import json
import subprocess

import pytest
from conftest import ROOT, SECRET, envelope, get_item, put_subscription, unique

import supervise

BINARY = supervise.binary_dir() / "dataflows"


@pytest.fixture(scope="module")
def cli(stack, tmp_path_factory):
    outputs = tmp_path_factory.mktemp("cli") / "outputs.json"
    outputs.write_text(json.dumps(stack.outputs))
    assert BINARY.exists(), f"{BINARY} is missing: cargo build --workspace --bins"

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(BINARY), "--outputs", str(outputs), *args], capture_output=True, text=True,
                              input=stdin, timeout=60)

    return run


def write(tmp_path, name: str, record: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(record))
    return str(path)


def test_validate_names_the_field_and_exits_1(cli, tmp_path):
    good = write(tmp_path, "good.json", {"account_id": "a", "subscription_id": "s", "url": "https://hooks.example.com/x",
                                         "secrets": [SECRET], "triggers": ["sms.received"]})
    typed = write(tmp_path, "typed.json", {"account_id": {"S": "a"}, "subscription_id": {"S": "t"},
                                           "url": {"S": "https://hooks.example.com/x"}, "secret": {"S": SECRET},
                                           "triggers": {"L": [{"S": "contact.added"}]}})
    bad = write(tmp_path, "bad.json", {"account_id": "a", "subscription_id": "b", "url": "https://10.0.0.1/x",
                                       "secrets": [SECRET], "triggers": ["sms.received"]})
    ok = cli("subscription", "validate", good, typed)
    assert ok.returncode == 0, ok.stderr
    assert "a/s" in ok.stdout and "a/t" in ok.stdout
    refused = cli("--json", "subscription", "validate", good, bad)
    assert refused.returncode == 1
    doc = json.loads(refused.stdout)
    assert doc["invalid"] == 1
    [error] = [r["error"] for r in doc["results"] if not r["valid"]]
    assert "`url`" in error and "private" in error, error


def test_put_generates_a_secret_that_signs_and_never_overwrites_unasked(cli, stack, receiver, tmp_path):
    account = unique("acc_cli")
    path = f"/{account}/crm"
    record = {"account_id": account, "subscription_id": "crm", "url": receiver.url(path), "triggers": ["contact.added"]}
    put = cli("--json", "subscription", "put", write(tmp_path, "crm.json", record))
    assert put.returncode == 0, put.stderr
    doc = json.loads(put.stdout)
    secret = doc["generated_secret"]
    assert secret.startswith("whsec_")
    assert secret not in json.dumps(doc["stored"]), "the stored record is shown masked"
    # The secret printed once is the one the functions sign with.
    receiver.endpoint(path, secret)
    stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(envelope(
        "contact.added", account, {"contact_id": "c1", "contact": {"name": "Dana"}})))
    [hit] = receiver.wait_for(lambda r: r.path == path, timeout=20)
    assert hit.verified, hit.error

    again = cli("subscription", "put", write(tmp_path, "crm.json", {**record, "secret": secret}))
    assert again.returncode == 1 and "--replace" in again.stderr
    replaced = cli("subscription", "put", "--replace", write(tmp_path, "crm.json", {**record, "secret": secret,
                                                                                   "description": "v2"}))
    assert replaced.returncode == 0, replaced.stderr
    stored = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "crm"})
    assert stored["description"]["S"] == "v2" and "updated_at" in stored


def test_put_from_flags(cli, stack, receiver):
    account = unique("acc_cli")
    path = f"/{account}/flags"
    put = cli("--json", "subscription", "put", "--account", account, "--id", "flags", "--url", receiver.url(path),
              "--trigger", "sms.received", "--trigger", "contact.added", "--header", "x-api-key=k-flag-7",
              "--filter", '{"data": {"body": [{"prefix": "order"}]}}', "--description", "from flags")
    assert put.returncode == 0, put.stderr
    secret = json.loads(put.stdout)["generated_secret"]
    stored = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "flags"})
    assert [t["S"] for t in stored["triggers"]["L"]] == ["sms.received", "contact.added"]
    assert stored["headers"]["M"]["x-api-key"]["S"] == "k-flag-7" and stored["description"]["S"] == "from flags"
    receiver.endpoint(path, secret)
    for body in ("hello", "order 42"):  # the filter lets only the second through
        stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(envelope(
            "sms.received", account, {"message_id": unique("m"), "from": "+1", "to": "+2", "body": body})))
    stack.settle()
    hits = receiver.wait_for(lambda r: r.path == path, count=2, timeout=0)
    assert [h.json["data"]["body"] for h in hits] == ["order 42"] and hits[0].verified
    assert hits[0].headers["x-api-key"] == "k-flag-7"

    bad = cli("subscription", "put", "--account", account, "--id", "x", "--url", receiver.url(path),
              "--trigger", "sms.received", "--filter", "{not json")
    assert bad.returncode == 1 and "--filter is not JSON" in bad.stderr
    typo = cli("subscription", "put", "--account", account, "--id", "x", "--url", receiver.url(path),
               "--trigger", "sms.recieved")
    assert typo.returncode == 1 and "`triggers" in typo.stderr, typo.stderr
    usage = cli("subscription", "put", "--account", account, "--id", "x")  # neither a file nor the flags
    assert usage.returncode == 2


def test_put_and_show_a_rate_limit(cli, stack, receiver):
    account = unique("acc_cli")
    flags = ["subscription", "put", "--account", account, "--id", "paced", "--url", receiver.url(f"/{account}/p"),
             "--trigger", "contact.added"]
    put = cli("--json", *flags, "--rate-limit", "2.5")
    assert put.returncode == 0, put.stderr
    stored = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "paced"})
    assert stored["rate_limit"]["N"] == "2.5"
    shown = json.loads(cli("--json", "subscription", "show", "--account", account, "--id", "paced").stdout)
    assert shown["status"]["rate_limit"] == 2.5
    assert shown["pacing"] is None, "never paced yet: no pacing item"
    for bad in ("0", "-1", "10001"):
        refused = cli(*flags[:5], "bad", *flags[6:], f"--rate-limit={bad}")
        assert refused.returncode == 1 and "`rate_limit`" in refused.stderr, (bad, refused.stderr)
    word = cli(*flags[:5], "bad", *flags[6:], "--rate-limit=fast")
    assert word.returncode == 2, "not a number: refused by the argument parser"


def test_list_show_enable_disable(cli, stack, tmp_path):
    account = unique("acc_cli")
    put_subscription(stack, account, "a", "https://hooks.example.com/a", headers={"x-api-key": "k-secret-9"})
    put_subscription(stack, account, "b", "https://hooks.example.com/b", triggers=["sms.recieved"])  # a typo
    listed = cli("--json", "subscription", "list", "--account", account)
    assert listed.returncode == 0, listed.stderr
    subs = {s["subscription_id"]: s for s in json.loads(listed.stdout)["subscriptions"]}
    assert subs["a"]["valid"] is True and subs["b"]["valid"] is False and "`triggers" in subs["b"]["error"]
    human = cli("subscription", "list", "--account", account)
    assert SECRET not in human.stdout and "invalid:" in human.stdout
    shown = cli("--json", "subscription", "show", "--account", account, "--id", "a")
    assert shown.returncode == 0
    assert SECRET not in shown.stdout and "k-secret-9" not in shown.stdout
    # URLs show their origin only (a path or query often carries the receiver's token).
    assert subs["a"]["url"] == "https://hooks.example.com/…"
    assert json.loads(shown.stdout)["record"]["url"] == "https://hooks.example.com/…"
    assert "hooks.example.com/a" not in human.stdout
    whole = cli("--json", "--show-urls", "subscription", "show", "--account", account, "--id", "a")
    assert json.loads(whole.stdout)["record"]["url"] == "https://hooks.example.com/a"

    assert cli("subscription", "disable", "--account", account, "--id", "a", "--reason", "moving").returncode == 0
    item = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "a"})
    assert item["enabled"]["BOOL"] is False and item["disabled_reason"]["S"] == "moving"
    assert cli("subscription", "enable", "--account", account, "--id", "a").returncode == 0
    item = get_item(stack, "SubscriptionsTableName", {"account_id": account, "subscription_id": "a"})
    assert item["enabled"]["BOOL"] is True and "disabled_reason" not in item
    missing = cli("subscription", "enable", "--account", account, "--id", "nope")
    assert missing.returncode == 1 and "no subscription" in missing.stderr


def test_send_test_to_a_good_and_to_a_failing_receiver(cli, stack, receiver):
    account = unique("acc_cli")
    good, bad = f"/{account}/good", f"/{account}/bad"
    put_subscription(stack, account, "good", receiver.endpoint(good, SECRET), triggers=["balance.low"],
                     balance_low={"threshold": 100})
    put_subscription(stack, account, "bad", receiver.endpoint(bad, SECRET, answers=[500]))
    ok = cli("--json", "send-test", "--account", account, "--subscription", "good")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["ok"] is True and doc["status"] == 200 and doc["trigger"] == "balance.low"
    [hit] = receiver.wait_for(lambda r: r.path == good, timeout=10)
    assert hit.verified and hit.json["type"] == "balance.low" and hit.json["account_id"] == account
    failed = cli("send-test", "--account", account, "--subscription", "bad", "--trigger", "contact.added")
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout and "500" in failed.stdout
    # A test send touches no claim and no state: the same webhook can be tested again.
    assert cli("send-test", "--account", account, "--subscription", "good").returncode == 0


def test_event_publish_refuses_a_bad_envelope_and_delivers_a_good_one(cli, stack, receiver, tmp_path):
    account = unique("acc_cli")
    path = f"/{account}/inbox"
    put_subscription(stack, account, "inbox", receiver.endpoint(path, SECRET), triggers=["sms.received"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "e1", "type": "sms.received", "account_id": account,
                               "occurred_at": "2026-11-30T10:00:00Z", "data": {"from": "+1", "to": "+2", "body": "x"}}))
    refused = cli("--json", "event", "publish", str(bad))
    assert refused.returncode == 1
    assert "message_id" in json.loads(refused.stdout)["error"]
    good = envelope("sms.received", account, {"message_id": "m1", "from": "+14155550123", "to": "+14155559876",
                                              "body": "hello"})
    published = cli("event", "publish", "-", stdin=json.dumps(good))
    assert published.returncode == 0, published.stderr
    [hit] = receiver.wait_for(lambda r: r.path == path, timeout=20)
    assert hit.verified and hit.json["event_id"] == good["id"]


def test_help_has_an_example_on_every_command():
    for args in (["subscription", "validate"], ["subscription", "put"], ["subscription", "list"],
                 ["subscription", "show"], ["subscription", "enable"], ["subscription", "disable"],
                 ["send-test"], ["event", "publish"], ["secret", "rotate"], ["dead-letters", "list"],
                 ["dead-letters", "redrive"], ["deliveries"], ["completions"], ["webhooks", "list"],
                 ["webhooks", "schema"], ["webhooks", "asyncapi"]):
        out = subprocess.run([str(BINARY), *args, "--help"], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0 and "Example: dataflows" in out.stdout, args


def test_webhooks_list_and_schema_print_the_published_contract():
    """`dataflows webhooks` needs no stack: the triggers with what fires them, and each schema
    byte for byte as published in schemas/webhooks/ (what a receiver generates types from)."""
    listed = subprocess.run([str(BINARY), "--json", "webhooks", "list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    hooks = json.loads(listed.stdout)["webhooks"]
    assert len(hooks) == 20
    by_name = {h["trigger"]: h for h in hooks}
    assert by_name["keyword.matched"]["fired_by"] == "sms.received"
    assert by_name["keyword.matched"]["category"] == "messaging"
    assert [h["trigger"] for h in hooks if h["operational"]] == [
        "subscription.failing", "subscription.disabled", "webhook.dead_lettered"]
    for name in by_name:
        shown = subprocess.run([str(BINARY), "webhooks", "schema", name], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == (ROOT / f"schemas/webhooks/{name}.schema.json").read_text(), name
    document = subprocess.run([str(BINARY), "webhooks", "asyncapi"], capture_output=True, text=True)
    assert document.stdout == (ROOT / "schemas/asyncapi.json").read_text()
    unknown = subprocess.run([str(BINARY), "webhooks", "schema", "sms.exploded"], capture_output=True, text=True)
    assert unknown.returncode == 1 and "not a webhook type" in unknown.stderr


ROTATED_FROM = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="


def test_secret_rotation_keeps_both_verifying_during_the_overlap(cli, stack, receiver):
    """After `secret rotate`, every webhook carries a signature for the new and the old secret, so
    a receiver verifying with either (the receiver checks with the Standard Webhooks reference
    library) accepts it; after `--retire` only the new one signs."""
    def send_one(account: str, path: str, secret: str):
        receiver.endpoint(path, secret)
        stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(envelope(
            "sms.received", account, {"message_id": unique("m"), "from": "+1", "to": "+2", "body": "hi"})))
        [hit] = receiver.wait_for(lambda r: r.path == path, timeout=20)
        return hit

    # Fresh accounts: the functions cache an account's records for 30 s once read.
    overlap, retired = unique("acc_rot"), unique("acc_rot")
    for account in (overlap, retired):
        put_subscription(stack, account, "s", receiver.url(f"/{account}/old"), triggers=["sms.received"],
                         secrets=[ROTATED_FROM])
    out = cli("--json", "secret", "rotate", "--account", overlap, "--id", "s", "--keep-old", "24h")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    new = doc["generated_secret"]
    assert len(doc["secrets"]) == 2 and doc["old_secrets_sign_until"]
    stored = get_item(stack, "SubscriptionsTableName", {"account_id": overlap, "subscription_id": "s"})
    assert [s["S"] for s in stored["secrets"]["L"]] == [new, ROTATED_FROM]
    # The same webhook verifies with the old secret and with the new one.
    hit = send_one(overlap, f"/{overlap}/old", ROTATED_FROM)
    assert hit.verified, hit.error
    assert len(hit.headers["webhook-signature"].split()) == 2
    from standardwebhooks.webhooks import Webhook  # the reference library, as the receiver uses it

    Webhook(new).verify(hit.body, hit.headers)  # the new secret verifies the same delivery (raises if not)

    # --retire: only the new secret remains, and the old one no longer verifies.
    rotated = json.loads(cli("--json", "secret", "rotate", "--account", retired, "--id", "s").stdout)
    out = cli("--json", "secret", "rotate", "--account", retired, "--id", "s", "--retire")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["removed"] == 1
    stored = get_item(stack, "SubscriptionsTableName", {"account_id": retired, "subscription_id": "s"})
    assert [s["S"] for s in stored["secrets"]["L"]] == [rotated["generated_secret"]]
    assert "secrets_keep_until" not in stored
    hit = send_one(retired, f"/{retired}/old", ROTATED_FROM)
    assert not hit.verified, "the retired secret no longer signs"


def test_dead_letters_list_and_redrive(cli, stack, receiver):
    """A webhook whose receiver is down ends on the DLQ; `dead-letters list` shows it with its
    reason (and leaves it there), `dead-letters redrive` with a filter moves only it back, and
    once the receiver is up again it is delivered under the same webhook-id."""
    account = unique("acc_cli")
    path = f"/{account}/down"
    put_subscription(stack, account, "down", receiver.endpoint(path, SECRET, answers=[503, 503, 503, 503, 200]),
                     triggers=["sms.received"])
    stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(envelope(
        "sms.received", account, {"message_id": unique("m"), "from": "+1", "to": "+2", "body": "hi"})))
    hits = receiver.wait_for(lambda r: r.path == path, count=4, timeout=30)
    webhook_id = hits[0].headers["webhook-id"]

    def listed():
        out = cli("--json", "dead-letters", "list", "--category", "sms", "--account", account)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["dead_letters"]

    import time

    deadline = time.monotonic() + 20
    letters = listed()
    while not letters and time.monotonic() < deadline:
        time.sleep(0.5)
        letters = listed()
    assert [(l["kind"], l["webhook_id"], l["subscription_id"]) for l in letters] == [("webhook", webhook_id, "down")]
    assert letters[0]["reason"] == "retry schedule exhausted after 4 attempts"
    assert listed() == letters, "listing leaves the letters in place"
    human = cli("dead-letters", "list", "--category", "sms", "--account", account)
    assert "retry schedule exhausted" in human.stdout and "1 dead letter(s)" in human.stdout

    nothing = cli("--json", "dead-letters", "redrive", "--category", "sms", "--account", account,
                  "--subscription", "someone-else")
    assert json.loads(nothing.stdout)["moved"] == 0
    moved = cli("--json", "dead-letters", "redrive", "--category", "sms", "--account", account)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout) == {"moved": 1, "matched": 1, "skipped": 0, "failed": 0}
    hits = receiver.wait_for(lambda r: r.path == path, count=5, timeout=20)
    assert hits[4].status == 200 and hits[4].headers["webhook-id"] == webhook_id and hits[4].verified
    assert listed() == []


def test_deliveries_from_the_logs_and_from_the_claim(cli, stack, receiver):
    account = unique("acc_cli")
    path = f"/{account}/flaky"
    put_subscription(stack, account, "flaky", receiver.endpoint(path, SECRET, answers=[500, 200]),
                     triggers=["sms.received"])
    stack.client("sns").publish(TopicArn=stack.outputs["EventsTopicArn"], Message=json.dumps(envelope(
        "sms.received", account, {"message_id": unique("m"), "from": "+1", "to": "+2", "body": "hi"})))
    hits = receiver.wait_for(lambda r: r.path == path, count=2, timeout=30)
    webhook_id = hits[0].headers["webhook-id"]
    stack.settle()  # the log lines of the second attempt are written
    out = cli("--json", "deliveries", "--account", account, "--since", "10m", "--logs", str(stack.log_dir))
    assert out.returncode == 0, out.stderr
    [d] = json.loads(out.stdout)["deliveries"]
    assert (d["webhook_id"], d["subscription_id"], d["trigger"], d["status"]) == (webhook_id, "flaky", "sms.received",
                                                                                  "delivered")
    assert [a["outcome"] for a in d["attempts"]] == ["failed", "delivered"]
    assert d["last_error"] == "receiver answered 500"
    assert cli("--json", "deliveries", "--account", account, "--subscription", "other", "--logs",
               str(stack.log_dir)).stdout.count("webhook_id") == 0
    human = cli("deliveries", "--account", account, "--logs", str(stack.log_dir))
    assert webhook_id in human.stdout and "1 webhook(s)" in human.stdout

    claim = cli("--json", "deliveries", "--webhook-id", webhook_id)
    assert claim.returncode == 0, claim.stderr
    [c] = json.loads(claim.stdout)["deliveries"]
    assert c["status"] == "delivered" and [a["status"] for a in c["attempts"]] == [500, 200]
    missing = cli("deliveries", "--webhook-id", "msg_nope")
    assert missing.returncode == 1 and "no claim" in missing.stderr

    # On AWS the same lines are in CloudWatch Logs: ship them there as Lambda does (one log group
    # per function, /aws/lambda/<function>) and read them back through Logs Insights.
    ship_logs_to_cloudwatch(stack)
    insights = cli("--json", "deliveries", "--account", account, "--since", "10m", "--source", "cloudwatch")
    assert insights.returncode == 0, insights.stderr
    doc = json.loads(insights.stdout)
    assert doc["source"] == [f"/aws/lambda/{r.fn.name}" for r in sorted(stack.runners, key=lambda r: CATEGORY_ORDER.index(r.fn.binary))]
    assert doc["deliveries"] == json.loads(out.stdout)["deliveries"], "Logs Insights and the files agree"
    assert doc["truncated"] is False


CATEGORY_ORDER = ["sms", "operations", "contacts", "messaging", "performance", "admin"]


def ship_logs_to_cloudwatch(stack) -> None:
    """Every JSON line each function wrote, into its log group, timestamped as CloudWatch would."""
    import datetime

    logs = stack.client("logs")
    for r in stack.runners:
        group = f"/aws/lambda/{r.fn.name}"
        try:
            logs.create_log_group(logGroupName=group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        stream = f"local-{unique('s')}"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        events = []
        for line in r.log_path.read_text(errors="replace").splitlines():
            try:
                at = datetime.datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError):
                continue
            events.append({"timestamp": int(at.timestamp() * 1000), "message": line})
        events.sort(key=lambda e: e["timestamp"])
        for i in range(0, len(events), 1000):
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[i:i + 1000])


def test_stack_reads_the_outputs_from_cloudformation(stack, tmp_path):
    """--stack NAME: the Outputs come from CloudFormation's DescribeStacks, credentials and endpoint
    from the standard chain (here the environment, pointed at the emulator)."""
    cfn = stack.client("cloudformation")
    name = unique("dataflows").replace("_", "-")
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in stack.outputs.items()}}
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    account = unique("acc_cfn")
    put_subscription(stack, account, "crm", "https://hooks.example.com/crm", triggers=["contact.added"])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ENDPOINT_URL": stack.emulator.endpoint,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}

    def run(*args, stack_name=name):
        return subprocess.run([str(BINARY), "--stack", stack_name, *args], capture_output=True, text=True, env=env,
                              timeout=60, cwd=tmp_path)

    listed = run("--json", "subscription", "list", "--account", account)
    assert listed.returncode == 0, listed.stderr
    assert [s["subscription_id"] for s in json.loads(listed.stdout)["subscriptions"]] == ["crm"]
    # A deployed stack's account history comes from CloudWatch Logs, not local files.
    history = run("--json", "deliveries", "--account", account)
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)["source"][0].startswith("/aws/lambda/")
    missing = run("subscription", "list", "--account", account, stack_name="no-such-stack")
    assert missing.returncode == 3 and "no-such-stack" in missing.stderr, missing.stderr


def test_shell_completions():
    out = subprocess.run([str(BINARY), "completions", "bash"], capture_output=True, text=True)
    assert out.returncode == 0 and "dataflows" in out.stdout and "dead-letters" in out.stdout
