"""The provisioner: every resource template.yaml declares, created on the emulator through the AWS
API with its real properties (filter policies, redrive, TTL, alarms), in dependency order, one
small function per resource type (RESOURCE_TYPES). The emulator's own CloudFormation is not used:
it silently drops SNS subscriptions, queue policies, alarms and TTL settings.

It is not a deployment: nothing here is sent to AWS, no Lambda function is created (each function
becomes a LocalFunction that infra/supervise.py runs), no IAM role is created, and a resource type
without a function in RESOURCE_TYPES is a TemplateError, never skipped. Reading and resolving the
template is infra/cfn.py's; starting processes is infra/supervise.py's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3

from cfn import ACCOUNT, LOCAL, REGION, STACK, TEMPLATE, Resolver, TemplateError, creation_order, load_template


@dataclass
class EventSource:
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: int
    report_failures: bool


@dataclass
class LocalFunction:
    logical_id: str
    name: str
    binary: str
    environment: dict[str, str]
    timeout: int
    memory: int
    sources: list[EventSource]


@dataclass
class Provisioned:
    endpoint: str
    outputs: dict[str, str]
    functions: list[LocalFunction]


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _merge_function(globals_: dict, props: dict) -> dict:
    merged = json.loads(json.dumps(globals_))
    for k, v in props.items():
        if k == "Environment":
            merged.setdefault("Environment", {}).setdefault("Variables", {}).update(v.get("Variables", {}))
        else:
            merged[k] = v
    return merged


@dataclass
class _Context:
    """What every resource type's function works with: the resolver (it records what each
    resource's Ref and GetAtt answer, for the resources created after it), the emulator's
    clients, and the functions found so far."""

    resolver: Resolver
    sqs: Any
    sns: Any
    ddb: Any
    cw: Any
    logs: Any
    functions: list[LocalFunction]


# Each function below creates one resource: `logical` is its logical id, `name` the physical name
# the local stack gives it ({STACK}-{logical}), `props` its Properties resolved, `body` its whole
# definition in the template (Type, Metadata, Properties as written).

def _sns_topic(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The topic, named `name`, with its KmsMasterKeyId and DisplayName as topic attributes (the
    emulator keeps them; it encrypts nothing). Skipped: every other property (a TopicName in the
    template would be ignored)."""
    r, sns = ctx.resolver, ctx.sns
    attrs = {}
    if "KmsMasterKeyId" in props:
        attrs["KmsMasterKeyId"] = props["KmsMasterKeyId"]
    if "DisplayName" in props:
        attrs["DisplayName"] = props["DisplayName"]
    arn = sns.create_topic(Name=name, Attributes=attrs)["TopicArn"]
    r.refs[logical] = arn
    r.attrs[(logical, "TopicArn")] = arn
    r.attrs[(logical, "TopicName")] = name


def _dynamodb_table(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The table, named `name`, with its attribute definitions, key schema, billing mode, global
    secondary indexes and server-side encryption switched on when SSEEnabled (the key settings are
    not passed); then time to live and point-in-time recovery when the template enables them. An
    existing table is kept as it is (its TTL and recovery are still switched on). Skipped: every
    other property (a TableName in the template would be ignored), and DeletionPolicy and
    UpdateReplacePolicy, which matter only to CloudFormation."""
    r, ddb = ctx.resolver, ctx.ddb
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if props.get("SSESpecification", {}).get("SSEEnabled"):
        kwargs["SSESpecification"] = {"Enabled": True}
    if "GlobalSecondaryIndexes" in props:
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    try:
        desc = ddb.create_table(**kwargs)["TableDescription"]
    except ddb.exceptions.ResourceInUseException:
        desc = ddb.describe_table(TableName=name)["Table"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})
    r.refs[logical] = name
    r.attrs[(logical, "Arn")] = desc["TableArn"]


def _sqs_queue(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The queue, named `name`, with its visibility timeout, retention, delay, maximum message
    size, receive wait, SQS-managed encryption and redrive policy (to its dead-letter queue, which
    the redrive policy's GetAtt made sure was created first) as queue attributes. The redrive
    policy is what moves a message to the DLQ after maxReceiveCount receives, locally as on AWS.
    Skipped: every other property (a QueueName in the template would be ignored), and
    DeletionPolicy and UpdateReplacePolicy."""
    r, sqs = ctx.resolver, ctx.sqs
    attrs = {}
    for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "MaximumMessageSize",
                "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled"):
        if key in props:
            attrs[key] = str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
    if "RedrivePolicy" in props:
        attrs["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    r.refs[logical] = url
    r.attrs[(logical, "Arn")] = arn
    r.attrs[(logical, "QueueName")] = name
    r.attrs[(logical, "QueueUrl")] = url


def _sqs_queue_policy(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The policy document set as the Policy attribute of each of its queues, so it can be read
    back. The emulator enforces no IAM, so locally it denies nothing; tests/template checks what
    it grants."""
    r, sqs = ctx.resolver, ctx.sqs
    for url in props["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
    r.refs[logical] = name


def _sns_topic_policy(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The policy document set as the Policy attribute of each of its topics, so it can be read
    back. As for queue policies, the emulator enforces none of it."""
    r, sns = ctx.resolver, ctx.sns
    for arn in props["Topics"]:
        sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                                 AttributeValue=json.dumps(props["PolicyDocument"]))
    r.refs[logical] = name


def _iam_role(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """Nothing is created; the role's Ref and Arn are recorded for the functions that name it."""
    r = ctx.resolver
    # Not created: the emulator does not enforce IAM, and the functions run with the local
    # credentials. Its policies are resolved by provision() (every Ref and GetAtt in them must name
    # something created); tests/template checks what they grant.
    r.refs[logical] = name
    r.attrs[(logical, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{name}"


def _log_group(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The log group (its LogGroupName, else `name`), with its retention. Nothing writes to it
    locally: the functions' logs go to files (infra/supervise.py's Runner). Skipped: every other
    property."""
    r, logs = ctx.resolver, ctx.logs
    group = props.get("LogGroupName", name)
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=group, retentionInDays=int(props["RetentionInDays"]))
    r.refs[logical] = group
    r.attrs[(logical, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"


def _sns_subscription(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The subscription, with raw message delivery, its filter policy and the policy's scope, and
    its redrive policy: the emulator applies the filter policy, so routing locally is the
    template's routing. A subscription that already exists (same topic, protocol and endpoint)
    has these attributes set again. Skipped: every other property."""
    r, sns = ctx.resolver, ctx.sns
    attrs = {}
    if props.get("RawMessageDelivery"):
        attrs["RawMessageDelivery"] = "true"
    if "FilterPolicyScope" in props:
        attrs["FilterPolicyScope"] = props["FilterPolicyScope"]
    if "FilterPolicy" in props:
        attrs["FilterPolicy"] = json.dumps(props["FilterPolicy"])
    if "RedrivePolicy" in props:
        attrs["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    existing = [s for s in sns.list_subscriptions_by_topic(TopicArn=props["TopicArn"])["Subscriptions"]
                if s["Endpoint"] == props["Endpoint"] and s["Protocol"] == props["Protocol"]]
    if existing:
        arn = existing[0]["SubscriptionArn"]
        for k, v in attrs.items():
            sns.set_subscription_attributes(SubscriptionArn=arn, AttributeName=k, AttributeValue=v)
    else:
        arn = sns.subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                            Endpoint=props["Endpoint"], Attributes=attrs,
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
    r.refs[logical] = arn


def _cloudwatch_alarm(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The alarm, named `name`, with its metric, statistic, period, threshold, comparison, missing
    data treatment and actions, so it can be read back. Nothing evaluates it locally (the emulator
    changes an alarm's state only when told to), so no action fires. Skipped: every other property
    (an AlarmName in the template would be ignored; metric math is not passed)."""
    r, cw = ctx.resolver, ctx.cw
    kwargs = {k: props[k] for k in ("AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic",
                                     "ExtendedStatistic", "Period", "EvaluationPeriods", "DatapointsToAlarm",
                                     "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions",
                                     "OKActions", "InsufficientDataActions", "Unit") if k in props}
    for k in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if k in kwargs:
            kwargs[k] = int(kwargs[k])
    if "Threshold" in kwargs:
        kwargs["Threshold"] = float(kwargs["Threshold"])
    cw.put_metric_alarm(AlarmName=name, **kwargs)
    r.refs[logical] = name
    r.attrs[(logical, "Arn")] = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"


def _cloudwatch_dashboard(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """The dashboard (its DashboardName, else `name`) with its body, after checking the body is
    JSON. Nothing renders it locally."""
    r, cw = ctx.resolver, ctx.cw
    dashboard = props.get("DashboardName", name)
    dashboard_body = props["DashboardBody"]
    json.loads(dashboard_body)  # CloudWatch refuses a body that is not JSON; so does the local stack
    cw.put_dashboard(DashboardName=dashboard, DashboardBody=dashboard_body)
    r.refs[logical] = dashboard


def _serverless_function(ctx: _Context, logical: str, name: str, props: dict, body: dict) -> None:
    """No Lambda function is created on the emulator: the function becomes a LocalFunction (the
    binary Metadata.BuildProperties.Binary names, its environment with Globals merged in, timeout,
    memory, and its SQS event sources with batch size, batching window and whether it reports
    batch item failures), which infra/supervise.py's Runner runs. An event source that is not SQS
    is a TemplateError. Nothing else is used: not Runtime, Handler, Architectures or CodeUri (the
    binary is the local build's), Role (the functions run with the local credentials),
    LoggingConfig (the logs go to files), nor the event sources' ScalingConfig (one poller per
    source)."""
    r = ctx.resolver
    binary = body.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
    if not binary:
        raise TemplateError(f"{logical}: Metadata.BuildProperties.Binary names no binary")
    sources = []
    for ev_name, ev in props.get("Events", {}).items():
        if ev["Type"] != "SQS":
            raise TemplateError(f"{logical}.Events.{ev_name}: type {ev['Type']} is not emulated locally")
        p = ev["Properties"]
        arn = p["Queue"]
        url = next(r.attrs[(lid, "QueueUrl")] for (lid, att), v in r.attrs.items()
                   if att == "Arn" and v == arn)
        sources.append(EventSource(
            queue_url=url, queue_arn=arn, batch_size=int(p.get("BatchSize", 10)),
            window_seconds=int(p.get("MaximumBatchingWindowInSeconds", 0)),
            report_failures="ReportBatchItemFailures" in p.get("FunctionResponseTypes", [])))
    env = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
    fn_name = props.get("FunctionName", name)
    ctx.functions.append(LocalFunction(logical, fn_name, binary, env, int(props.get("Timeout", 3)),
                                       int(props.get("MemorySize", 128)), sources))
    r.refs[logical] = fn_name
    r.attrs[(logical, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn_name}"


RESOURCE_TYPES: dict[str, Callable[[_Context, str, str, dict, dict], None]] = {
    "AWS::SNS::Topic": _sns_topic,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SQS::QueuePolicy": _sqs_queue_policy,
    "AWS::SNS::TopicPolicy": _sns_topic_policy,
    "AWS::IAM::Role": _iam_role,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::CloudWatch::Alarm": _cloudwatch_alarm,
    "AWS::CloudWatch::Dashboard": _cloudwatch_dashboard,
    "AWS::Serverless::Function": _serverless_function,
}


def provision(endpoint: str, parameters: dict[str, str] | None = None, template_path: Path = TEMPLATE) -> Provisioned:
    """Create every resource of the template on the emulator at `endpoint`. Idempotent."""
    template = load_template(template_path)
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    for k, v in (parameters or {}).items():
        if k not in params:
            raise TemplateError(f"parameter {k} is not declared in the template")
        params[k] = v
    r = Resolver(template, params)
    resources = template["Resources"]
    sqs, sns, ddb, cw, logs = (client(s, endpoint) for s in ("sqs", "sns", "dynamodb", "cloudwatch", "logs"))
    ctx = _Context(r, sqs, sns, ddb, cw, logs, [])
    fn_globals = template.get("Globals", {}).get("Function", {})

    for logical in creation_order(resources, fn_globals):
        body = resources[logical]
        rtype = body["Type"]
        if "Condition" in body and not r.condition(body["Condition"]):
            continue
        name = f"{STACK}-{logical}"
        if rtype == "AWS::Serverless::Function":
            # Resolved before Properties so GetAtt on the event source queue is available.
            props = r.resolve(_merge_function(fn_globals, body.get("Properties", {})))
        else:
            props = r.resolve(body.get("Properties", {}))
        create = RESOURCE_TYPES.get(rtype)
        if create is None:
            raise TemplateError(f"{logical}: resource type {rtype} is not supported by the local stack")
        create(ctx, logical, name, props, body)

    outputs = {k: str(r.resolve(v["Value"])) for k, v in template.get("Outputs", {}).items()}
    outputs["EndpointUrl"] = endpoint
    return Provisioned(endpoint, outputs, ctx.functions)


def to_ddb_value(v):
    """A plain JSON value as a DynamoDB attribute value, the way a customer writes a record."""
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, (int, float)):
        return {"N": str(v)}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, list):
        return {"L": [to_ddb_value(x) for x in v]}
    if isinstance(v, dict):
        return {"M": {k: to_ddb_value(x) for k, x in v.items()}}
    if v is None:
        return {"NULL": True}
    raise TypeError(v)


def peek_queue(sqs, url: str) -> list[dict]:
    """Every message on a queue, without consuming it: received hidden, then made visible again."""
    seen: list[dict] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                   MessageAttributeNames=["All"]).get("Messages", [])
        if not msgs:
            break
        seen += msgs
    for i in range(0, len(seen), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for n, m in enumerate(seen[i:i + 10])])
    return seen


def write_outputs(outputs: dict[str, str], path: Path = LOCAL / "outputs.json") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outputs, indent=2) + "\n")


def write_functions(provisioned: Provisioned, path: Path = LOCAL / "functions.json") -> None:
    """The functions as provisioned (binary, environment, timeout, event sources), for `make
    invoke` (infra/invoke.py) to run one of them against this stack."""
    from dataclasses import asdict

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"endpoint": provisioned.endpoint, "functions": [asdict(f) for f in provisioned.functions]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
