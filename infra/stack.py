"""The local stack: the AWS emulator (moto, with DynamoDB made to behave like the service:
infra/dynamodb_emulator.py), every resource template.yaml declares, and the six real
function binaries behind the Lambda runtime interface emulator, fed by a poller with the SQS event
source's semantics.

template.yaml is the only list of resources. This module reads it, resolves the intrinsic functions
it uses, and creates each resource through the AWS API with its real properties (filter policies,
redrive, TTL, alarms). The emulator's own CloudFormation is not used: it silently drops SNS
subscriptions, queue policies, alarms and TTL settings.

CLI:  python infra/stack.py up [--port 4566]     the stack in the foreground until Ctrl-C
      python infra/stack.py provision [--port]  resources only, on an emulator already running
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "dataflows-local"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class TemplateError(Exception):
    """template.yaml uses something the local stack cannot create faithfully."""


# ---------------------------------------------------------------- template reading

class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Callable:
    fn = "Ref" if name == "Ref" else ("Condition" if name == "Condition" else f"Fn::{name}")

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {fn: value}

    return construct


for _name in ["Ref", "GetAtt", "Sub", "If", "Not", "Equals", "And", "Or", "Join", "Select", "Split",
              "FindInMap", "Base64", "ImportValue", "GetAZs", "Condition"]:
    _CfnLoader.add_constructor(f"!{_name}", _tag(_name))


def load_template(path: Path = TEMPLATE) -> dict:
    with open(path) as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


_NO_VALUE = object()


@dataclass
class Resolver:
    """Resolves the intrinsic functions template.yaml uses, against what has been created."""

    template: dict
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            if self.template.get("Parameters", {}).get(name, {}).get("Type") == "CommaDelimitedList":
                return [x.strip() for x in str(value).split(",")]  # as CloudFormation: "" is [""]
            return value
        if name in self.refs:
            return self.refs[name]
        raise TemplateError(f"Ref {name}: not a parameter or a resource created so far")

    def resolve(self, v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (self.resolve(i) for i in v) if x is not _NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.ref(arg)
            if k == "Fn::GetAtt":
                key = (arg[0], arg[1])
                if key not in self.attrs:
                    raise TemplateError(f"GetAtt {arg[0]}.{arg[1]}: not available")
                return self.attrs[key]
            if k == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if k == "Fn::Not":
                return not self.resolve(arg[0])
            if k == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return a == b
            if k == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if k == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
            if k == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.resolve(items))
            if k == "Fn::FindInMap":
                name, top, second = (str(self.resolve(x)) for x in arg)
                try:
                    return self.template["Mappings"][name][top][second]
                except KeyError:
                    raise TemplateError(f"FindInMap {name}.{top}.{second}: no such entry") from None
            if k == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return self._sub(text, extra)
            if k.startswith("Fn::"):
                raise TemplateError(f"{k} is not supported by the local stack")
        out = {}
        for key, val in v.items():
            r = self.resolve(val)
            if r is not _NO_VALUE:
                out[key] = r
        return out

    def _sub(self, text: str, extra: dict) -> str:
        out, i = [], 0
        while True:
            j = text.find("${", i)
            if j < 0:
                out.append(text[i:])
                return "".join(out)
            k = text.index("}", j)
            out.append(text[i:j])
            name = text[j + 2:k]
            if name in extra:
                out.append(str(extra[name]))
            elif "." in name:
                res, att = name.split(".", 1)
                out.append(str(self.resolve({"Fn::GetAtt": [res, att]})))
            else:
                out.append(str(self.ref(name)))
            i = k + 1


def dependencies(value: Any) -> set[str]:
    """Logical ids a resource's definition refers to."""
    deps: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                deps.add(v)
            elif k == "Fn::GetAtt":
                deps.add(v[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                for part in text.split("${")[1:]:
                    deps.add(part.split("}")[0].split(".")[0])
                if not isinstance(v, str):
                    deps |= dependencies(v[1])
            else:
                deps |= dependencies(v)
    elif isinstance(value, list):
        for v in value:
            deps |= dependencies(v)
    return deps


def creation_order(resources: dict, function_globals: dict | None = None) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise TemplateError(f"dependency cycle through {name}")
        state[name] = 1
        body = resources[name]
        deps = dependencies(body.get("Properties", {})) | set(_as_list(body.get("DependsOn", [])))
        if body.get("Type") == "AWS::Serverless::Function":
            deps |= dependencies(function_globals or {})
        for dep in sorted(deps & resources.keys()):
            visit(dep)
        state[name] = 2
        order.append(name)

    for name in resources:
        visit(name)
    return order


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


# ---------------------------------------------------------------- provisioning

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
    functions: list[LocalFunction] = []
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

        if rtype == "AWS::SNS::Topic":
            attrs = {}
            if "KmsMasterKeyId" in props:
                attrs["KmsMasterKeyId"] = props["KmsMasterKeyId"]
            if "DisplayName" in props:
                attrs["DisplayName"] = props["DisplayName"]
            arn = sns.create_topic(Name=name, Attributes=attrs)["TopicArn"]
            r.refs[logical] = arn
            r.attrs[(logical, "TopicArn")] = arn
            r.attrs[(logical, "TopicName")] = name

        elif rtype == "AWS::DynamoDB::Table":
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

        elif rtype == "AWS::SQS::Queue":
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

        elif rtype == "AWS::SQS::QueuePolicy":
            for url in props["Queues"]:
                sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
            r.refs[logical] = name

        elif rtype == "AWS::SNS::TopicPolicy":
            for arn in props["Topics"]:
                sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                                         AttributeValue=json.dumps(props["PolicyDocument"]))
            r.refs[logical] = name

        elif rtype == "AWS::IAM::Role":
            # Not created: the emulator does not enforce IAM, and the functions run with the local
            # credentials. Its policies are resolved above (every Ref and GetAtt in them must name
            # something created); tests/template checks what they grant.
            r.refs[logical] = name
            r.attrs[(logical, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{name}"

        elif rtype == "AWS::Logs::LogGroup":
            group = props.get("LogGroupName", name)
            try:
                logs.create_log_group(logGroupName=group)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            if "RetentionInDays" in props:
                logs.put_retention_policy(logGroupName=group, retentionInDays=int(props["RetentionInDays"]))
            r.refs[logical] = group
            r.attrs[(logical, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"

        elif rtype == "AWS::SNS::Subscription":
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

        elif rtype == "AWS::CloudWatch::Alarm":
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

        elif rtype == "AWS::CloudWatch::Dashboard":
            dashboard = props.get("DashboardName", name)
            body = props["DashboardBody"]
            json.loads(body)  # CloudWatch refuses a body that is not JSON; so does the local stack
            cw.put_dashboard(DashboardName=dashboard, DashboardBody=body)
            r.refs[logical] = dashboard

        elif rtype == "AWS::Serverless::Function":
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
            functions.append(LocalFunction(logical, fn_name, binary, env, int(props.get("Timeout", 3)),
                                           int(props.get("MemorySize", 128)), sources))
            r.refs[logical] = fn_name
            r.attrs[(logical, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn_name}"

        else:
            raise TemplateError(f"{logical}: resource type {rtype} is not supported by the local stack")

    outputs = {k: str(r.resolve(v["Value"])) for k, v in template.get("Outputs", {}).items()}
    outputs["EndpointUrl"] = endpoint
    return Provisioned(endpoint, outputs, functions)


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s")
            time.sleep(0.1)


def rie_path() -> Path:
    import samcli

    path = Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"
    if not path.exists():
        raise FileNotFoundError(f"the runtime interface emulator is not at {path}")
    return path


def binary_dir() -> Path:
    profile = os.environ.get("LOCAL_PROFILE", "debug")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / profile


class Emulator:
    """The emulator, infra/dynamodb_emulator.py (the moto server with DynamoDB's transaction
    conflicts, per-item throttling, item size limit and request accounting), on 127.0.0.1:port.
    `config` (any of hold_ms, item_wcu_per_second, max_item_bytes, respond_after_hold) is given to
    it as its environment and applied again through /_emulator/config once it answers."""

    def __init__(self, port: int, log: Path, config: dict[str, Any] | None = None):
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        env = dict(os.environ)
        for key, value in (config or {}).items():
            if key in EMULATOR_ENV:
                env[EMULATOR_ENV[key]] = str(value)
        cmd = [sys.executable, str(Path(__file__).parent / "dynamodb_emulator.py"), "-H", "127.0.0.1", "-p", str(port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"{self.endpoint}/moto-api/")
            if config:
                configure_emulator(self.endpoint, **config)
        except BaseException:
            self.stop()
            raise

    def stats(self) -> dict:
        return emulator_stats(self.endpoint)

    def reset_stats(self) -> None:
        reset_emulator_stats(self.endpoint)

    def configure(self, **config: Any) -> dict:
        return configure_emulator(self.endpoint, **config)

    def stop(self) -> None:
        _terminate(self.proc)
        self._log.close()


EMULATOR_ENV = {"hold_ms": "DDB_EMULATOR_HOLD_MS", "item_wcu_per_second": "DDB_EMULATOR_ITEM_WCU",
                "max_item_bytes": "DDB_EMULATOR_MAX_ITEM_BYTES",
                "respond_after_hold": "DDB_EMULATOR_RESPOND_AFTER_HOLD"}


def _emulator_call(endpoint: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{endpoint}/_emulator/{path}", data=data, method="GET" if data is None else "POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def emulator_stats(endpoint: str) -> dict:
    """What the DynamoDB requests so far would have cost: requests by operation, read and write
    units (in all and by table), the hottest items, refusals by kind. See infra/dynamodb_emulator.py."""
    return _emulator_call(endpoint, "stats")


def reset_emulator_stats(endpoint: str) -> None:
    _emulator_call(endpoint, "stats/reset", {})


def configure_emulator(endpoint: str, **config: Any) -> dict:
    """Change the emulator's DynamoDB behaviour (hold_ms, item_wcu_per_second, max_item_bytes,
    respond_after_hold); answers the whole configuration."""
    return _emulator_call(endpoint, "config", config)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


class Runner:
    """One function: its real bootstrap behind the runtime interface emulator, and a poller per
    event source with the SQS event source's semantics: batches of up to BatchSize, the batching
    window, partial batch failures (failed messages are left for redelivery after the visibility
    timeout; the queue's redrive policy moves them to the DLQ), and a whole-batch failure when the
    function errors."""

    def __init__(self, fn: LocalFunction, endpoint: str, env_overrides: dict[str, str], log_dir: Path):
        self.fn = fn
        self.endpoint = endpoint
        self.stop_event = threading.Event()
        self.port = free_port()
        self.api_port = free_port()
        self.invocations = 0
        self.failed_invocations = 0  # the function errored or timed out: the whole batch goes back
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            **fn.environment,
            **env_overrides,
        }
        self.env = env
        self.binary = binary_dir() / fn.binary
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} is missing: run `cargo build --workspace` first")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{fn.binary}.log"
        self._log = open(self.log_path, "ab")
        self.restarts = 0
        self._spawn()
        self.invoke_url = f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations"
        self.threads = [threading.Thread(target=self._poll, args=(src,), daemon=True, name=f"poll-{fn.binary}")
                        for src in fn.sources]

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [str(rie_path()), "--log-level", "error",
             "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
             "--runtime-api-address", f"127.0.0.1:{self.api_port}", str(self.binary)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def runtime_pids(self) -> list[int]:
        """The bootstrap processes the emulator runs (it starts one on the first invoke)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def _restart_if_dead(self) -> None:
        """The emulator does not restart a runtime that died (crash, SIGKILL); Lambda would start a
        fresh execution environment, so start a fresh emulator."""
        if self.proc.poll() is None and self.runtime_pids():
            return
        _terminate(self.proc)
        self._spawn()
        self.restarts += 1
        wait_http(f"http://127.0.0.1:{self.port}/", timeout=10)
        print(f"[{self.fn.binary}] runtime died; started a fresh environment (restart {self.restarts})", file=sys.stderr)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def invoke(self, event: dict) -> tuple[bool, Any]:
        """(function succeeded, response payload)."""
        req = urllib.request.Request(self.invoke_url, data=json.dumps(event).encode(),
                                     headers={"content-type": "application/json"})
        self.invocations += 1
        try:
            with urllib.request.urlopen(req, timeout=self.fn.timeout + 10) as resp:
                payload = json.loads(resp.read() or b"null")
        except Exception as e:  # connection refused while restarting, timeouts
            return False, {"errorMessage": str(e)}
        if isinstance(payload, dict) and "errorType" in payload:
            return False, payload
        return True, payload

    def _poll(self, src: EventSource) -> None:
        sqs = client("sqs", self.endpoint)
        while not self.stop_event.is_set():
            try:
                messages = self._receive(sqs, src)
            except Exception as e:
                if self.stop_event.is_set():
                    return
                print(f"[{self.fn.binary}] receive failed: {e}", file=sys.stderr)
                time.sleep(1)
                continue
            if not messages:
                continue
            event = {"Records": [_sqs_record(m, src.queue_arn) for m in messages]}
            ok, payload = self.invoke(event)
            if not ok:
                self.failed_invocations += 1
                print(f"[{self.fn.binary}] invocation failed, {len(messages)} message(s) left for redelivery: "
                      f"{payload.get('errorMessage', payload)}", file=sys.stderr)
                self._restart_if_dead()
                continue
            failed = set()
            if src.report_failures and isinstance(payload, dict):
                failed = {f.get("itemIdentifier") for f in payload.get("batchItemFailures") or []}
            done = [m for m in messages if m["MessageId"] not in failed]
            for i in range(0, len(done), 10):
                sqs.delete_message_batch(QueueUrl=src.queue_url, Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[i:i + 10])])

    def _receive(self, sqs, src: EventSource) -> list[dict]:
        """Up to BatchSize messages, as the SQS event source gathers them: long-poll for the first,
        then keep gathering until the batch is full or the batching window has passed since the
        first ("Lambda continues to poll ... until the batching window expires, the batch size
        quota is reached, or the payload limit of 6 MB is reached",
        https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html). A momentarily
        empty queue does not end the batch while the window is open."""
        messages: list[dict] = []
        deadline = None
        while len(messages) < src.batch_size and not self.stop_event.is_set():
            resp = sqs.receive_message(QueueUrl=src.queue_url,
                                       MaxNumberOfMessages=min(10, src.batch_size - len(messages)),
                                       WaitTimeSeconds=0 if messages else 1,
                                       MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
            got = resp.get("Messages", [])
            messages.extend(got)
            if not messages:
                break  # nothing yet: the caller polls again
            deadline = deadline or time.monotonic() + src.window_seconds
            if time.monotonic() >= deadline:
                break
            if not got:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return messages

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=5)
        _terminate(self.proc)
        self._log.close()


def _sqs_record(m: dict, queue_arn: str) -> dict:
    return {
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {
            k: {"stringValue": v.get("StringValue"), "binaryValue": None, "stringListValues": [],
                "binaryListValues": [], "dataType": v["DataType"]}
            for k, v in m.get("MessageAttributes", {}).items()},
        "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def function_overrides(env_overrides: dict[str, str] | None = None) -> dict[str, str]:
    """What the local stack changes in every function's environment: private targets allowed
    (the receivers are on 127.0.0.1), and RETRY_SCHEDULE, ALLOW_PRIVATE_TARGETS, LOG_LEVEL from
    this process's environment when set."""
    overrides = {"ALLOW_PRIVATE_TARGETS": "true"}
    for var in ("RETRY_SCHEDULE", "ALLOW_PRIVATE_TARGETS", "LOG_LEVEL"):
        if os.environ.get(var):
            overrides[var] = os.environ[var]
    overrides.update(env_overrides or {})
    return overrides


class Stack:
    """Everything, started in order and stopped in reverse."""

    def __init__(self, port: int = 4566, env_overrides: dict[str, str] | None = None,
                 parameters: dict[str, str] | None = None, log_dir: Path = LOCAL / "logs",
                 functions: list[str] | None = None, config: dict[str, Any] | None = None):
        self.log_dir = log_dir
        # A transaction is answered when it is no longer in flight, as DynamoDB does: only
        # concurrent transactions on the same item conflict.
        self.emulator = Emulator(port, log_dir / "moto.log", {"respond_after_hold": True, **(config or {})})
        self.runners: list[Runner] = []
        try:
            self.provisioned = provision(self.emulator.endpoint, parameters)
            overrides = function_overrides(env_overrides)
            for fn in self.provisioned.functions:
                if functions is None or fn.binary in functions:
                    self.runners.append(Runner(fn, self.emulator.endpoint, overrides, log_dir))
            for runner in self.runners:
                runner.start()
        except BaseException:
            self.stop()
            raise

    @property
    def outputs(self) -> dict[str, str]:
        return self.provisioned.outputs

    def client(self, service: str):
        return client(service, self.emulator.endpoint)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until every function's source queues are empty: nothing visible, nothing being
        processed (a message a function holds stays in flight until it is deleted, after its
        webhooks were sent and its retries queued) and nothing delayed (a retry due later). Then
        everything published before the call has had its full effect, so a test can check that
        nothing more arrived, or publish the next event knowing the previous one was applied,
        without guessing a sleep. Raises TimeoutError naming the queues still busy."""
        sqs = self.client("sqs")
        urls = sorted({src.queue_url for r in self.runners for src in r.fn.sources})
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            busy = {}
            for url in urls:
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
                counts = [int(attrs.get(n, 0)) for n in names]
                if any(counts):
                    busy[url.rsplit("/", 1)[-1]] = dict(zip(("visible", "in_flight", "delayed"), counts))
            # Twice in a row: SNS fans out to the queues one after another.
            quiet = quiet + 1 if not busy else 0
            if quiet >= 2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues still busy after {timeout:.0f} s: {busy}")
            time.sleep(0.1)

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        self.emulator.stop()


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "provision"])
    ap.add_argument("--port", type=int, default=4566)
    args = ap.parse_args()
    if args.command == "provision":
        p = provision(f"http://127.0.0.1:{args.port}")
        write_outputs(p.outputs)
        write_functions(p)
        print(json.dumps(p.outputs, indent=2))
        return 0

    stack = Stack(port=args.port)
    write_outputs(stack.outputs)
    write_functions(stack.provisioned)
    (LOCAL / "stack.pid").write_text(str(os.getpid()))
    print(f"emulator: {stack.emulator.endpoint}")
    for runner in stack.runners:
        print(f"function {runner.fn.binary}: {runner.invoke_url} (log: {runner.log_path.relative_to(ROOT)})")
    print(f"outputs: {(LOCAL / 'outputs.json').relative_to(ROOT)}\nready; Ctrl-C stops everything", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set():
            stopping.wait(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping", flush=True)
        stack.stop()
        (LOCAL / "stack.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
