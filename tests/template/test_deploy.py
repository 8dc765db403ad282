"""What the stack deploys beyond IAM (issue #12, items 2 to 6), read from the template as
CloudFormation receives it, after the SAM transform (see test_iam.py):

- routing: the unrouted subscription catches every event no category consumes, a missing `type`
  included, in the form both SNS and the local emulator accept;
- logs: a log group per function with the LogRetentionDays retention; Lambda's log-level filter
  follows LogLevel but never drops the EMF metric lines;
- alarms: a crashing, throttled or stalled function alarms within minutes, and every alarm says
  when it is OK again;
- retention and redrive: a dead letter that SQS moves keeps days on its DLQ, the DLQs and the
  unrouted queue outlive the stack, the Outputs give the ARNs a redrive needs;
- limits: the visibility timeout follows the function timeout.

TEMPLATE_UNDER_TEST=path runs the same checks on another template.
"""

from __future__ import annotations

import re

from test_iam import ROOT, as_list, functions, logical_ids

METRICS_RS = ROOT / "shared" / "src" / "metrics.rs"
APP_RS = ROOT / "shared" / "src" / "app.rs"
LOGGING_RS = ROOT / "shared" / "src" / "logging.rs"
OPERATIONS_MD = ROOT / "docs" / "operations.md"

NO_ACTION = {"Fn::If": ["HasAlarmAction", [{"Ref": "AlarmActionArn"}], {"Ref": "AWS::NoValue"}]}
# CloudWatch Logs' retention values (PutRetentionPolicy's retentionInDays).
LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653]
# Lambda's application log levels, most detailed first (LoggingConfig.ApplicationLogLevel).
APP_LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
SYSTEM_LEVELS = ["DEBUG", "INFO", "WARN"]
DAY = 86400


def of_type(cfn: dict, rtype: str) -> dict[str, dict]:
    return {lid: body for lid, body in cfn["Resources"].items() if body["Type"] == rtype}


def find_in_map(source: dict, expr, params: dict[str, str]):
    """Evaluate a Fn::FindInMap over parameters (Ref to a parameter only)."""
    name, top, second = expr["Fn::FindInMap"]
    top = params[top["Ref"]] if isinstance(top, dict) else top
    return source["Mappings"][name][str(top)][second]


# ---------------------------------------------------------------- item 2: routing

def subscriptions(cfn: dict) -> dict[str, dict]:
    """Queue logical id -> its subscription's properties."""
    return {logical_ids(b["Properties"]["Endpoint"]).pop(): b["Properties"]
            for b in of_type(cfn, "AWS::SNS::Subscription").values()}


def test_every_subscription_filters_the_raw_body_on_type(cfn):
    for queue, props in subscriptions(cfn).items():
        assert props["FilterPolicyScope"] == "MessageBody", queue
        assert props["RawMessageDelivery"] is True, queue
        assert list(props["FilterPolicy"]) == ["type"], f"{queue}: filters on more than `type`"


def test_the_unrouted_queue_gets_every_event_no_category_consumes(cfn):
    subs = subscriptions(cfn)
    unrouted = subs.pop("UnroutedQueue")["FilterPolicy"]["type"]
    consumed = set()
    for queue, props in subs.items():
        rules = props["FilterPolicy"]["type"]
        assert all(isinstance(r, str) for r in rules), f"{queue}: category policies are exact type names"
        consumed |= set(rules)
    # An envelope without `type` matches no category's exact names: the unrouted policy must match
    # it, with `exists: false`, and everything else no category consumes, with anything-but.
    # `exists: false` first: the emulator (moto 5.2.5) evaluates the array in order and stops at an
    # anything-but on a missing key; SNS accepts either order.
    assert unrouted[0] == {"exists": False}, f"`exists: false` must come first: {unrouted}"
    assert len(unrouted) == 2 and set(unrouted[1]) == {"anything-but"}, unrouted
    assert set(unrouted[1]["anything-but"]) == consumed, (
        f"anything-but lists {sorted(unrouted[1]['anything-but'])}, the categories consume {sorted(consumed)}")


def test_every_subscription_keeps_what_sns_cannot_deliver(cfn):
    """An SNS->SQS subscription without a RedrivePolicy drops the event after SNS's retries when the
    queue refuses it (a policy or key error, a queue being replaced); with one, SNS moves it to the
    DLQ, and only if that queue's policy lets the topic send
    (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html). cfn-lint's serverless
    rule ES7000 asks for the same."""
    subs = subscriptions(cfn)
    assert len(subs) == 7
    for queue, props in subs.items():
        target = props.get("RedrivePolicy", {}).get("deadLetterTargetArn")
        assert target == {"Fn::GetAtt": ["EventsDeliveryDeadLetterQueue", "Arn"]}, f"{queue}: {target}"
    policies = [b["Properties"] for b in of_type(cfn, "AWS::SQS::QueuePolicy").values()
                if {"Ref": "EventsDeliveryDeadLetterQueue"} in b["Properties"]["Queues"]]
    assert len(policies) == 1, "the DLQ needs a policy of its own"
    [statement] = policies[0]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "EventsTopic"}}}, \
        "only the events topic may send to it"
    assert cfn["Resources"]["EventsDeliveryDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * DAY
    assert "EventsDeliveryDeadLetterQueueUrl" in cfn["Outputs"]


def test_filter_policies_are_within_sns_limits(cfn):
    """At most 5 keys, and at most 150 combinations of values (the product of each key's values),
    https://docs.aws.amazon.com/sns/latest/dg/subscription-filter-policy-constraints.html."""
    for queue, props in subscriptions(cfn).items():
        policy = props["FilterPolicy"]
        assert len(policy) <= 5, queue
        combinations = 1
        for rules in policy.values():
            combinations *= sum(len(as_list(next(iter(r.values())))) if isinstance(r, dict) else 1 for r in rules)
        assert combinations <= 150, f"{queue}: {combinations} combinations"


# ---------------------------------------------------------------- item 3: logs

def test_each_function_logs_to_a_group_with_the_retention_parameter(source, cfn):
    param = source["Parameters"]["LogRetentionDays"]
    assert sorted(int(v) for v in param["AllowedValues"]) == LOG_RETENTION_DAYS
    assert int(param["Default"]) in LOG_RETENTION_DAYS
    groups = of_type(cfn, "AWS::Logs::LogGroup")
    used = set()
    for fn in functions(source):
        group = logical_ids(cfn["Resources"][fn]["Properties"]["LoggingConfig"]["LogGroup"]).pop()
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group
        used.add(group)
    assert used == set(groups), f"log groups no function uses: {set(groups) - used}"


def emf_line_level() -> str:
    """The level Lambda gives the EMF metric line: its `level` if it has one, else INFO ("If the
    level value field is invalid or missing, Lambda will assign the log output the level INFO",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html)."""
    code = METRICS_RS.read_text()
    emf = code[re.search(r"pub(?:\(crate\))? fn emf\(", code).start():]
    assert "CloudWatchMetrics" in emf, "could not find the EMF line in metrics.rs"
    # It is written as is (`logging::write_line`, among the gathered lines), not through tracing,
    # so it gets no `level` there either.
    assert re.search(r"crate::logging::write_line\(&line\.to_string\(\)\)", APP_RS.read_text()), \
        "the EMF line no longer goes out as is"
    writer = LOGGING_RS.read_text()
    write_line = writer[writer.index("fn write_line("):]
    write_line = write_line[:write_line.index("\n}\n")]
    assert "tracing::" not in write_line and "STDOUT.add(" in write_line, "write_line must not go through tracing"
    m = re.search(r"\"level\"\s*:\s*\"(\w+)\"", emf)
    return m.group(1).upper() if m and m.group(1).upper() in APP_LEVELS else "INFO"


def test_lambda_log_levels_follow_log_level_and_keep_the_metrics(source, cfn):
    levels = source["Parameters"]["LogLevel"]["AllowedValues"]
    emf = emf_line_level()
    for fn in functions(source):
        props = cfn["Resources"][fn]["Properties"]
        config = props["LoggingConfig"]
        assert config["LogFormat"] == "JSON", f"{fn}: Lambda filters levels only with JSON logs"
        assert props["Environment"]["Variables"]["LOG_LEVEL"] == {"Ref": "LogLevel"}
        for level in levels:
            params = {"LogLevel": level}
            app = find_in_map(source, config["ApplicationLogLevel"], params)
            system = find_in_map(source, config["SystemLogLevel"], params)
            assert app in APP_LEVELS and system in SYSTEM_LEVELS, (level, app, system)
            # The code's own lines at LogLevel reach CloudWatch (debug and trace too) ...
            assert APP_LEVELS.index(app) <= APP_LEVELS.index(level.upper()), (
                f"LogLevel={level}: ApplicationLogLevel {app} drops the {level} lines the code writes")
            # ... and so do the EMF lines, at every setting (the metrics feed the alarms).
            assert APP_LEVELS.index(app) <= APP_LEVELS.index(emf), (
                f"LogLevel={level}: ApplicationLogLevel {app} drops the EMF metric lines (read as {emf})")
            # platform.report (a timeout, a crashed runtime) is INFO.
            assert SYSTEM_LEVELS.index(system) <= SYSTEM_LEVELS.index("INFO"), (level, system)


# ---------------------------------------------------------------- item 4: alarms

def alarms_on(cfn: dict, namespace: str, metric: str) -> dict[str, dict]:
    """Logical id of what the alarm watches (the Ref/GetAtt of its one dimension) -> properties."""
    out = {}
    for lid, body in of_type(cfn, "AWS::CloudWatch::Alarm").items():
        p = body["Properties"]
        if p.get("Namespace") == namespace and p.get("MetricName") == metric:
            (dim,) = p["Dimensions"]
            (target,) = logical_ids(dim["Value"])
            assert target not in out, f"two {metric} alarms on {target}"
            out[target] = {**p, "_id": lid}
    return out


def fires_on_the_first(p: dict, within: int) -> None:
    assert p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and float(p["Threshold"]) <= 1, p["_id"]
    assert p["Statistic"] == "Sum", p["_id"]
    assert int(p["Period"]) * int(p["EvaluationPeriods"]) <= within, p["_id"]
    assert int(p.get("DatapointsToAlarm", 1)) == 1, p["_id"]
    assert p["TreatMissingData"] == "notBreaching", p["_id"]


def test_a_crashing_or_throttled_function_alarms_within_a_minute(source, cfn):
    fns = functions(source)
    errors = alarms_on(cfn, "AWS/Lambda", "Errors")
    throttles = alarms_on(cfn, "AWS/Lambda", "Throttles")
    assert set(errors) == set(fns) and set(throttles) == set(fns)
    for fn, f in fns.items():
        # Before: the first sign of a crash loop was the DLQ, after 5 receives x the visibility
        # timeout. Now the first failed invocation fires, well within one visibility timeout.
        fires_on_the_first(errors[fn], within=60)
        fires_on_the_first(throttles[fn], within=60)


def test_a_stalled_queue_alarms_before_anything_could_expire(source, cfn):
    fns = functions(source)
    ages = alarms_on(cfn, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert set(ages) == {f["queue"] for f in fns.values()}
    for f in fns.values():
        p = ages[f["queue"]]
        retention = int(cfn["Resources"][f["queue"]]["Properties"]["MessageRetentionPeriod"])
        assert p["Statistic"] == "Maximum" and p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        # Above what a healthy queue shows (a chained retry waits up to 900 s, SQS's largest
        # DelaySeconds), far below the retention.
        assert 900 < float(p["Threshold"]) <= 3600, p["_id"]
        assert float(p["Threshold"]) + int(p["Period"]) * int(p["EvaluationPeriods"]) < retention / 10


def test_every_queue_that_holds_what_needs_reading_alarms(source, cfn):
    fns = functions(source)
    depth = alarms_on(cfn, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert set(depth) == {f["dlq"] for f in fns.values()} | {"UnroutedQueue", "EventsDeliveryDeadLetterQueue"}
    exhausted = [b["Properties"] for b in of_type(cfn, "AWS::CloudWatch::Alarm").values()
                 if b["Properties"].get("MetricName") == "WebhooksExhausted"]
    assert sorted(p["Dimensions"][0]["Value"] for p in exhausted) == sorted(
        source["Resources"][fn]["Metadata"]["BuildProperties"]["Binary"] for fn in fns)


def test_every_alarm_notifies_when_it_fires_and_when_it_is_ok_again(transformed):
    alarms = of_type(transformed, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 2 + 6 * 5
    for lid, body in alarms.items():
        p = body["Properties"]
        assert p.get("AlarmActions") == NO_ACTION, f"{lid}: AlarmActions"
        assert p.get("OKActions") == NO_ACTION, f"{lid}: no OKActions: the page never clears"


# ---------------------------------------------------------------- item 5: retention and redrive

def test_a_dead_letter_sqs_moves_keeps_days_on_its_dlq(source, cfn):
    """SQS keeps a moved message's first enqueue time: what it spent on the source queue is taken
    from its time on the DLQ. The source keeps messages for far less than the DLQ does."""
    for fn, f in functions(source).items():
        src = int(cfn["Resources"][f["queue"]]["Properties"]["MessageRetentionPeriod"])
        dlq = int(cfn["Resources"][f["dlq"]]["Properties"]["MessageRetentionPeriod"])
        assert dlq == 14 * DAY, f"{f['dlq']}: keep dead letters as long as SQS can"
        assert dlq - src >= 7 * DAY, f"{f['queue']}: a moved dead letter could have {(dlq - src) / DAY:.1f} days left"


def test_dead_letters_and_unrouted_events_outlive_the_stack(source):
    res = source["Resources"]
    keep = {f["dlq"] for f in functions(source).values()} | {"UnroutedQueue", "EventsDeliveryDeadLetterQueue"}
    for lid in keep:
        assert res[lid].get("DeletionPolicy") == "Retain", f"{lid}: deleted with the stack, unread messages included"
        assert res[lid].get("UpdateReplacePolicy") == "Retain", f"{lid}: a replacement would delete it"


def test_the_outputs_give_what_a_redrive_needs(source, cfn):
    outputs = cfn["Outputs"]
    for fn, f in functions(source).items():
        cat = f["queue"].removesuffix("Queue")
        assert outputs[f"{cat}QueueArn"]["Value"] == {"Fn::GetAtt": [f["queue"], "Arn"]}
        assert outputs[f"{cat}DeadLetterQueueArn"]["Value"] == {"Fn::GetAtt": [f["dlq"], "Arn"]}
    assert outputs["UnroutedQueueArn"]["Value"] == {"Fn::GetAtt": ["UnroutedQueue", "Arn"]}


def test_the_documented_redrive_names_its_destination():
    """Without --destination-arn, a move task only returns messages SQS itself moved (they carry
    their source queue); the dead letters the functions write would not move."""
    commands = [line for line in OPERATIONS_MD.read_text().splitlines() if "start-message-move-task" in line
                and line.lstrip().startswith("aws ")]
    assert commands, "docs/operations.md shows no start-message-move-task command"
    for line in commands:
        assert "--destination-arn" in line, f"a redrive without a destination: {line.strip()}"


# ---------------------------------------------------------------- item 6: limits

def test_the_visibility_timeout_follows_the_function_timeout(source, cfn):
    param = source["Parameters"]["FunctionTimeout"]
    allowed = [str(v) for v in param["AllowedValues"]]
    assert source["Globals"]["Function"]["Timeout"] == {"Ref": "FunctionTimeout"}
    assert sorted(source["Mappings"]["FunctionTimeouts"], key=int) == sorted(allowed, key=int)
    for fn, f in functions(source).items():
        assert cfn["Resources"][fn]["Properties"]["Timeout"] == {"Ref": "FunctionTimeout"}
        vt = cfn["Resources"][f["queue"]]["Properties"]["VisibilityTimeout"]
        for timeout in allowed:
            seconds = find_in_map(source, vt, {"FunctionTimeout": timeout})
            # "at least six times the configuration timeout on your function",
            # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
            assert int(seconds) >= 6 * int(timeout), (f["queue"], timeout, seconds)
            assert int(seconds) <= 43200  # SQS's largest visibility timeout
    # The deadline margin (HTTP timeout 15 s + 2 s) leaves room to send at the smallest timeout.
    assert min(int(v) for v in allowed) >= 30


def test_each_event_source_is_bounded_and_reports_partial_failures(source, cfn):
    mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping")
    by_fn = {logical_ids(m["Properties"]["FunctionName"]).pop(): m["Properties"] for m in mappings.values()}
    fns = functions(source)
    assert set(by_fn) == set(fns)
    for fn, f in fns.items():
        p = by_fn[fn]
        assert logical_ids(p["EventSourceArn"]) == {f["queue"]}
        assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert p["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}
        assert p["BatchSize"] == {"Ref": "BatchSize"} and p["MaximumBatchingWindowInSeconds"] == 1
    # Six event sources at most MaximumConcurrency each: the README's deploy section has the
    # account quota check that goes with it.
    readme = (ROOT / "README.md").read_text()
    assert "get-account-settings" in readme and "MaximumConcurrency" in readme
