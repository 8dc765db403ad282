"""The CloudWatch dashboard (issue #12): every metric its widgets name is one that exists, either
written by the functions (shared/src/metrics.rs's EMF line, read here from the Rust source: its
namespace, its metric names, its dimension) or published by AWS for a queue or a function of this
stack. And it shows, for every category, what the issue asks: webhooks delivered / failed /
retried / exhausted / deferred, delivery latency p50 and p99, queue age and DLQ depth, function
errors, throttles and duration; and every alarm of the stack.
"""

from __future__ import annotations

import json
import re

import pytest

from test_iam import ROOT, functions

METRICS_RS = ROOT / "shared" / "src" / "metrics.rs"
TRIGGER_RS = ROOT / "shared" / "src" / "trigger.rs"

# What AWS publishes for the resources the dashboard names, by namespace and dimension.
AWS_METRICS = {
    ("AWS/SQS", "QueueName"): {"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible",
                               "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
                               "NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted",
                               "NumberOfEmptyReceives", "SentMessageSize"},
    ("AWS/Lambda", "FunctionName"): {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions",
                                     "DeadLetterErrors"},
}
STAT = re.compile(r"^(Sum|Average|Maximum|Minimum|SampleCount|p\d{1,2}(\.\d+)?|p100)$")


# ---------------------------------------------------------------- what the code writes

def emitted() -> tuple[str, set[str], set[frozenset[str]]]:
    """(namespace, metric names, dimension sets) of the EMF line shared/src/metrics.rs writes."""
    code = METRICS_RS.read_text()
    namespace = re.search(r'pub(?:\(crate\))? const NAMESPACE: &str = "([^"]+)";', code).group(1)
    start = re.search(r"pub(?:\(crate\))? fn emf\(", code).start()
    backlogs = re.search(r"pub(?:\(crate\))? fn emf_backlogs\(", code)
    emf = code[start:backlogs.start() if backlogs and backlogs.start() > start else code.index("#[cfg(test)]")]
    names = set(re.findall(r'json!\(\{\s*"Name":\s*"(\w+)"', emf))
    # A name in CloudWatchMetrics only becomes a metric if the line also carries its value.
    valued = {n for n in names if re.search(rf'"{n}":\s*counts\.|line\["{n}"\]\s*=', emf)}
    assert names and names == valued, f"metrics declared without a value: {names - valued}"
    dims = {frozenset(re.findall(r'"(\w+)"', d)) for d in re.findall(r'"Dimensions":\s*\[(\[[^\]]*\])', emf)}
    assert dims, "could not read the EMF dimensions"
    return namespace, names, dims


def emitted_per_subscription() -> tuple[set[str], set[frozenset[str]]]:
    """(metric names, dimension sets) of the per-subscription backlog lines (emf_backlogs)."""
    code = METRICS_RS.read_text()
    start = re.search(r"pub(?:\(crate\))? fn emf_backlogs\(", code).start()
    block = code[start:code.index("#[cfg(test)]")]
    names = set(re.findall(r'\{"Name":\s*"(\w+)"', block))
    dims = {frozenset(re.findall(r'"(\w+)"', d)) for d in re.findall(r'"Dimensions":\s*\[(\[[^\]]*\])', block)}
    return names, dims


def category_names() -> set[str]:
    code = TRIGGER_RS.read_text()
    block = code[code.index("impl Category"):]
    block = block[block.index("fn as_str"):]
    return set(re.findall(r'Category::\w+\s*=>\s*"(\w+)"', block[:block.index("}\n")]))


def test_the_rust_source_is_read():
    namespace, names, dims = emitted()
    assert namespace == "DataFlows/SmsWebhooks"
    assert {"WebhooksDelivered", "WebhooksFailed", "WebhooksRetried", "WebhooksExhausted", "WebhooksDeferred",
            "DeliveryLatency"} <= names
    assert dims == {frozenset({"Category"})}
    assert {"WebhooksHeld", "HeldWebhookAge"} <= names
    # Per subscription, only while it has a backlog: no dashboard widget can name them in advance.
    names, dims = emitted_per_subscription()
    assert names == {"SubscriptionWebhooksHeld", "SubscriptionBacklogAge"}
    assert dims == {frozenset({"Category", "Subscription"})}
    assert category_names() == {"sms", "operations", "contacts", "messaging", "performance", "admin"}


# ---------------------------------------------------------------- the dashboard

@pytest.fixture(scope="module")
def dashboard(cfn) -> dict:
    boards = [b for b in cfn["Resources"].values() if b["Type"] == "AWS::CloudWatch::Dashboard"]
    assert len(boards) == 1
    return boards[0]["Properties"]


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$\{([^}!]+)\}", text))


@pytest.fixture(scope="module")
def body(cfn, dashboard) -> dict:
    sub = dashboard["DashboardBody"]["Fn::Sub"]
    assert isinstance(sub, str), "DashboardBody: one Fn::Sub string"
    for p in placeholders(sub):
        name = p.split(".")[0]
        assert name.startswith("AWS::") or name in cfn["Resources"], f"${{{p}}}: not a resource of the stack"
    # Valid JSON once CloudFormation has substituted (each placeholder sits inside a string).
    return json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: f"@{m.group(1)}@", sub))


def metric_rows(body: dict) -> list[tuple[dict, str, str, dict[str, str], dict]]:
    """(widget properties, namespace, metric, dimensions, options) for every metric of every widget."""
    rows = []
    for w in body["widgets"]:
        if w["type"] != "metric":
            continue
        for m in w["properties"]["metrics"]:
            opts = m[-1] if isinstance(m[-1], dict) else {}
            parts = m[:-1] if opts else m
            assert "." not in parts, f"{w['properties']['title']}: no '.' shorthand, so each row can be checked"
            ns, name, *dims = parts
            assert len(dims) % 2 == 0
            rows.append((w["properties"], ns, name, dict(zip(dims[::2], dims[1::2])), opts))
    return rows


def ref(value: str) -> str:
    m = re.fullmatch(r"@([^@]+)@", value)
    assert m, f"{value}: not a resource of the stack"
    return m.group(1)


def test_every_metric_on_the_dashboard_exists(cfn, body):
    namespace, names, dims = emitted()
    categories = category_names()
    res = cfn["Resources"]
    rows = metric_rows(body)
    assert rows
    for props, ns, name, dim, opts in rows:
        where = f"{props['title']}: {ns} {name} {dim}"
        stat = opts.get("stat", props.get("stat"))
        assert stat and STAT.match(stat), f"{where}: stat {stat}"
        assert props["region"] == "@AWS::Region@", where
        if ns == namespace:
            assert name in names, f"{where}: metrics.rs writes no {name} (it writes {sorted(names)})"
            assert frozenset(dim) in dims, f"{where}: metrics.rs writes the dimensions {dims}"
            assert dim["Category"] in categories, f"{where}: no category {dim['Category']}"
        else:
            ((key, value),) = dim.items()
            assert name in AWS_METRICS[(ns, key)], f"{where}: AWS publishes no such metric"
            target = ref(value)
            if key == "QueueName":
                lid, attr = target.split(".")
                assert res[lid]["Type"] == "AWS::SQS::Queue" and attr == "QueueName", where
            else:
                assert res[target]["Type"] == "AWS::Lambda::Function", where


def test_each_category_shows_what_the_issue_asks(source, body):
    _, names, _ = emitted()
    rows = metric_rows(body)
    for fn, f in functions(source).items():
        cat = source["Resources"][fn]["Metadata"]["BuildProperties"]["Binary"]
        custom = {(name, opts.get("stat", p.get("stat"))) for p, ns, name, dim, opts in rows
                  if dim.get("Category") == cat}
        shown = {n for n, _ in custom}
        assert names - {"DeliveryLatency"} <= shown, f"{cat}: missing {names - shown}"
        assert {("DeliveryLatency", "p50"), ("DeliveryLatency", "p99")} <= custom, f"{cat}: latency p50/p99"
        aws = {(ns, name, ref(next(iter(dim.values())))) for p, ns, name, dim, opts in rows if "Category" not in dim}
        assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", f"{f['queue']}.QueueName") in aws, cat
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{f['dlq']}.QueueName") in aws, cat
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, fn) in aws, f"{cat}: function {metric}"
    assert any(dim.get("QueueName") == "@UnroutedQueue.QueueName@" for _, _, _, dim, _ in rows)


def test_the_alarm_widget_shows_every_alarm(cfn, body):
    alarms = {lid for lid, b in cfn["Resources"].items() if b["Type"] == "AWS::CloudWatch::Alarm"}
    shown = set()
    for w in body["widgets"]:
        if w["type"] == "alarm":
            shown |= {ref(a).removesuffix(".Arn") for a in w["properties"]["alarms"]}
    assert shown == alarms, f"not shown: {alarms - shown}; not alarms: {shown - alarms}"


def test_widgets_fit_the_grid_without_overlapping(body):
    cells: set[tuple[int, int]] = set()
    for w in body["widgets"]:
        assert 0 <= w["x"] and w["x"] + w["width"] <= 24, w
        mine = {(x, y) for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])}
        assert not mine & cells, f"overlap: {w.get('properties', {}).get('title')}"
        cells |= mine


def test_the_outputs_link_the_dashboard(cfn, dashboard):
    url = cfn["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "${Dashboard}" in url and url.startswith("https://") and "cloudwatch" in url
    assert dashboard["DashboardName"] == {"Fn::Sub": "${AWS::StackName}"}
