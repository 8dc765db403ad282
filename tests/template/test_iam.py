"""The IAM the stack deploys, read from the template as CloudFormation receives it: after the SAM
transform (samtranslator, which comes with aws-sam-cli, run offline), so that what SAM adds on its
own is checked too (an SQS event source adds AWSLambdaSQSQueueExecutionRole, a role SAM generates
gets AWSLambdaBasicExecutionRole: both grant on every resource of the account).

What must hold (issue #11, "IAM wider than written"):
- no Allow statement of any policy on `*` (or with a wildcard action), no AWS managed policy;
- each function has a role of its own that reaches its own queue, its own dead-letter queue, the
  two tables and its own log group, with exactly the actions the code calls, and nothing else;
- UpdateItem on Subscriptions only on the attributes shared/src/store/subscriptions.rs updates;
- the events topic has a policy naming who may publish (the PublisherPrincipals parameter),
  denying everyone else; the queue policy lets only the topic send.

TEMPLATE_UNDER_TEST=path runs the same checks on another template (e.g. an older revision).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(os.environ.get("TEMPLATE_UNDER_TEST", ROOT / "template.yaml"))
SUBSCRIPTION_WRITES = ROOT / "shared" / "src" / "store" / "subscriptions.rs"

# What the functions call (shared/src): the SQS event source polls with the function's role;
# retries and deferred sends go back on the function's own queue, dead letters on its DLQ
# (delivery/engine.rs), and a failed record's visibility is shortened to its backoff (app.rs); subscriptions are read with Query and updated (store/subscriptions.rs);
# the State table is read with GetItem and Query, written with PutItem and UpdateItem,
# TransactWriteItems of Puts and Deletes (which IAM authorises as PutItem and DeleteItem), and
# BatchExecuteStatement of PartiQL INSERTs and UPDATEs (authorised statement by statement,
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-iam.html);
# logs and EMF metrics go to the function's log group.
EXPECTED_GRANTS = {
    "queue": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:SendMessage",
              "sqs:ChangeMessageVisibility"},
    "dlq": {"sqs:SendMessage"},
    "SubscriptionsTable": {"dynamodb:Query", "dynamodb:UpdateItem"},
    "StateTable": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem",
                   "dynamodb:DeleteItem", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate"},
    "log_group": {"logs:CreateLogStream", "logs:PutLogEvents"},
}
# The SDK calls that need those grants, as shared/src makes them (a transaction's items are
# authorised one by one, by their kind).
SDK_CALLS = {
    "get_item": "dynamodb:GetItem", "query": "dynamodb:Query", "scan": "dynamodb:Scan",
    "put_item": "dynamodb:PutItem", "update_item": "dynamodb:UpdateItem", "delete_item": "dynamodb:DeleteItem",
    "batch_get_item": "dynamodb:BatchGetItem", "batch_write_item": "dynamodb:BatchWriteItem",
    "transact_get_items": "dynamodb:GetItem", "execute_statement": "dynamodb:PartiQLSelect",
    "Put::builder": "dynamodb:PutItem", "Update::builder": "dynamodb:UpdateItem",
    "Delete::builder": "dynamodb:DeleteItem", "ConditionCheck::builder": "dynamodb:ConditionCheckItem",
    "Get::builder": "dynamodb:GetItem",
    # PartiQL statements, in the files that send them with batch_execute_statement or store::partiql
    "INSERT INTO": "dynamodb:PartiQLInsert", "UPDATE \\\"": "dynamodb:PartiQLUpdate",
    "DELETE FROM": "dynamodb:PartiQLDelete", "SELECT ": "dynamodb:PartiQLSelect",
    "send_message": "sqs:SendMessage", "send_message_batch": "sqs:SendMessage",
    "receive_message": "sqs:ReceiveMessage", "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage", "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility", "purge_queue": "sqs:PurgeQueue",
}
# Granted for the SQS event source and for Lambda's logging, not called by the code.
NOT_CALLED_BY_THE_CODE = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                          "logs:CreateLogStream", "logs:PutLogEvents"}
# ReturnValues that return only what the request itself updated.
SAFE_RETURN_VALUES = {"NONE", "UPDATED_OLD", "UPDATED_NEW"}


# ---------------------------------------------------------------- reading the template

def load_source() -> dict:
    return yaml_parse(TEMPLATE.read_text())


def sam_transform(source: dict) -> dict:
    """The template as CloudFormation gets it after `sam package`: code on S3, SAM transformed."""
    t = copy.deepcopy(source)
    for body in t["Resources"].values():
        if body.get("Type") == "AWS::Serverless::Function":
            body["Properties"]["CodeUri"] = "s3://bucket/key"  # what `sam package` puts there
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    # Managed policy names resolve from the map bundled with samtranslator; IAM is never asked.
    return translator.translate(t, parameter_values={}, get_managed_policy_map=lambda: {})


_NO_VALUE = object()


def with_parameters(template: dict, overrides: dict[str, str] | None = None) -> dict:
    """`template` as CloudFormation deploys it with these parameter values (the defaults, and
    `overrides`): every Fn::If chosen by its condition, every AWS::NoValue dropped. Other
    intrinsics (Ref, GetAtt, Sub) stay as written."""
    import sys
    sys.path.insert(0, str(ROOT / "infra"))
    from cfn import Resolver

    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    params.update(overrides or {})
    resolver = Resolver(template, params)

    def walk(v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (walk(i) for i in v) if x is not _NO_VALUE]
        if isinstance(v, dict):
            if set(v) == {"Fn::If"}:
                cond, yes, no = v["Fn::If"]
                return walk(yes if resolver.condition(cond) else no)
            if v == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            out = {k: walk(x) for k, x in v.items()}
            return {k: x for k, x in out.items() if x is not _NO_VALUE}
        return v

    return walk(template)


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def logical_ids(value: Any) -> set[str]:
    """The resources (and parameters) an expression refers to through Ref, GetAtt or Sub."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(v, str):
                    out |= logical_ids(v[1])
            else:
                out |= logical_ids(v)
    elif isinstance(value, list):
        for v in value:
            out |= logical_ids(v)
    return {x for x in out if not x.startswith("AWS::")}


def policy_documents(cfn: dict) -> list[tuple[str, dict]]:
    """(where, document) for every policy document of the template: identity and resource ones."""
    docs = []
    for lid, body in cfn["Resources"].items():
        props = body.get("Properties", {})
        rtype = body["Type"]
        if rtype == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                docs.append((f"{lid}/{p['PolicyName']}", p["PolicyDocument"]))
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy",
                       "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
            docs.append((lid, props["PolicyDocument"]))
    return docs


def statements(doc: dict) -> list[dict]:
    return as_list(doc.get("Statement", []))


def role_statements(cfn: dict, role: str) -> list[dict]:
    """Every statement that applies to `role`: its inline policies and any policy attached to it."""
    out = []
    for p in cfn["Resources"][role]["Properties"].get("Policies", []):
        out += statements(p["PolicyDocument"])
    for body in cfn["Resources"].values():
        if body["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            attached = body["Properties"].get("Roles", []) + as_list(body["Properties"].get("RoleName", []))
            if any(logical_ids(r) == {role} for r in attached):
                out += statements(body["Properties"]["PolicyDocument"])
    return out


def functions(source: dict) -> dict[str, dict]:
    """Each function of the source template: its role, queue, DLQ, log group and name."""
    res = source["Resources"]
    out = {}
    for lid, body in res.items():
        if body["Type"] != "AWS::Serverless::Function":
            continue
        props = body["Properties"]
        queues = [logical_ids(ev["Properties"]["Queue"]) for ev in props.get("Events", {}).values()
                  if ev["Type"] == "SQS"]
        assert len(queues) == 1 and len(queues[0]) == 1, f"{lid}: expected one SQS event source"
        queue = queues[0].pop()
        dlq = logical_ids(res[queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]).pop()
        env = props.get("Environment", {}).get("Variables", {})
        assert logical_ids(env.get("QUEUE_URL")) == {queue}, f"{lid}: QUEUE_URL is not its event source queue"
        assert logical_ids(env.get("DEAD_LETTER_QUEUE_URL")) == {dlq}, f"{lid}: DEAD_LETTER_QUEUE_URL"
        out[lid] = {"queue": queue, "dlq": dlq, "props": props}
    return out


def role_of(cfn: dict, function: str) -> str:
    role = cfn["Resources"][function]["Properties"]["Role"]
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{function}: Role is not a role of the template"
    return logical_ids(role).pop()


def own_log_group(cfn: dict, function: str) -> str:
    """The log group resource the function logs to (LoggingConfig.LogGroup)."""
    ids = logical_ids(cfn["Resources"][function]["Properties"].get("LoggingConfig", {}).get("LogGroup"))
    assert len(ids) == 1, f"{function}: LoggingConfig.LogGroup names no log group of the stack"
    return ids.pop()


def subscription_update_attributes() -> set[str]:
    """The attributes shared/src/store/subscriptions.rs updates: the names in its update and
    condition expressions (and any expression attribute names)."""
    code = SUBSCRIPTION_WRITES.read_text()
    names: set[str] = set()
    keywords = {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "if_not_exists", "list_append",
                "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains", "size"}
    for expr in re.findall(r"\.(?:update|condition)_expression\(\s*\"([^\"]*)\"", code):
        for word in re.findall(r"(?<![:#\w])[A-Za-z_][A-Za-z0-9_]*", expr):
            if word not in keywords:
                names.add(word)
    names |= set(re.findall(r"\.expression_attribute_names\(\s*\"#\w+\"\s*,\s*\"([^\"]+)\"", code))
    assert {"failing_since", "enabled"} <= names, f"could not read the update expressions of {SUBSCRIPTION_WRITES}"
    return names


def actions_the_code_calls() -> dict[str, set[str]]:
    """IAM action -> where shared/src or functions/ call it (files that use the DynamoDB or SQS SDK,
    or send PartiQL statements through store::partiql without naming the SDK)."""
    statements = [c for c in SDK_CALLS if c.isupper() or c.startswith(("UPDATE", "INSERT", "DELETE", "SELECT"))]
    calls = "|".join(re.escape(c) for c in SDK_CALLS if "::" not in c and c not in statements)
    builders = "|".join(re.escape(c) for c in SDK_CALLS if "::" in c)
    pattern = re.compile(rf"\.\s*({calls})\(\)|\b({builders})\b")
    partiql = re.compile("|".join(re.escape(c) for c in statements))
    found: dict[str, set[str]] = {}
    for path in sorted([*(ROOT / "shared" / "src").rglob("*.rs"), *(ROOT / "functions").rglob("*.rs")]):
        code = path.read_text()
        if not re.search(r"aws_sdk_(dynamodb|sqs)|store::partiql::", code):
            continue
        for m in pattern.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            found.setdefault(SDK_CALLS[m.group(1) or m.group(2)], set()).add(f"{path.relative_to(ROOT)}:{line}")
        # Statements sent in PartiQL batches: through the SDK, or through store::partiql (the
        # delivery claims, shared/src/store/claim_batch.rs).
        if ".batch_execute_statement()" in code or "store::partiql::" in code:
            for m in partiql.finditer(code):
                line = code.count("\n", 0, m.start()) + 1
                found.setdefault(SDK_CALLS[m.group(0)], set()).add(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_the_grants_are_the_calls_the_code_makes():
    called = actions_the_code_calls()
    granted = set().union(*EXPECTED_GRANTS.values()) - NOT_CALLED_BY_THE_CODE
    assert set(called) == granted, (
        f"the code calls {sorted(called)} ({called}); the roles grant {sorted(granted)}: "
        "change template.yaml's roles and EXPECTED_GRANTS together with the code")


# ---------------------------------------------------------------- every policy

def resource_text(r: Any) -> str:
    """A Resource as text, with the one wildcard allowed taken out: the `:*` after a log group's
    name (its log streams)."""
    if isinstance(r, str):
        return r
    if isinstance(r, dict) and set(r) == {"Fn::Sub"}:
        text = r["Fn::Sub"] if isinstance(r["Fn::Sub"], str) else r["Fn::Sub"][0]
        return re.sub(r"(:log-group:\$\{[A-Za-z0-9]+\}):\*$", r"\1", text)
    if isinstance(r, dict) and set(r) <= {"Ref", "Fn::GetAtt"}:
        return ""
    return str(r)  # anything else is read as written


def test_no_allow_statement_on_every_resource(cfn):
    wide = []
    for where, doc in policy_documents(cfn):
        for st in statements(doc):
            if st.get("Effect") != "Allow":
                continue
            if "NotResource" in st or "NotAction" in st:
                wide.append((where, st.get("Sid"), "NotResource/NotAction"))
                continue
            for r in as_list(st.get("Resource")):
                if r is None or "*" in resource_text(r):
                    wide.append((where, st.get("Sid"), r))
            for a in as_list(st.get("Action")):
                if "*" in a:
                    wide.append((where, st.get("Sid"), a))
            if st.get("Principal") == "*" or st.get("Principal") == {"AWS": "*"}:
                wide.append((where, st.get("Sid"), "Principal *"))
    # A managed policy's statements are not in the template: they cannot be shown to be narrow
    # (the two SAM attaches to an SQS-fed function grant on `*`).
    for lid, body in cfn["Resources"].items():
        if body["Type"] == "AWS::IAM::Role":
            wide += [(lid, "ManagedPolicyArns", arn) for arn in body["Properties"].get("ManagedPolicyArns", [])]
    assert not wide, f"Allow statements on everything: {wide}"


def test_no_managed_policies(cfn):
    attached = {lid: body["Properties"]["ManagedPolicyArns"] for lid, body in cfn["Resources"].items()
                if body["Type"] == "AWS::IAM::Role" and body["Properties"].get("ManagedPolicyArns")}
    assert not attached, f"managed policies (AWS managed ones grant on *): {attached}"


# ---------------------------------------------------------------- each function's role

def test_each_function_has_a_role_of_its_own(source, cfn):
    fns = functions(source)
    assert len(fns) == 6
    roles = {fn: role_of(cfn, fn) for fn in fns}
    assert len(set(roles.values())) == len(roles), f"functions share a role: {roles}"
    for fn, role in roles.items():
        assert cfn["Resources"][role]["Type"] == "AWS::IAM::Role"
        trust = statements(cfn["Resources"][role]["Properties"]["AssumeRolePolicyDocument"])
        assert [(st["Effect"], as_list(st["Action"]), st["Principal"].keys(), as_list(st["Principal"].get("Service")))
                for st in trust] == [("Allow", ["sts:AssumeRole"], {"Service"}, ["lambda.amazonaws.com"])], \
            f"{role}: assumed by more than Lambda: {trust}"
        # With Role set, SAM ignores Policies: they would read as granted and not be.
        assert "Policies" not in source["Resources"][fn]["Properties"], f"{fn}: Policies beside Role"


def test_each_role_reaches_only_its_own_queues_and_log_group(source, cfn):
    for fn, f in functions(source).items():
        role = role_of(cfn, fn)
        log_group = own_log_group(cfn, fn)
        names = {f["queue"]: "queue", f["dlq"]: "dlq", "SubscriptionsTable": "SubscriptionsTable",
                 "StateTable": "StateTable", log_group: "log_group"}
        grants: dict[str, set[str]] = {}
        for st in role_statements(cfn, role):
            assert st["Effect"] == "Allow"
            for r in as_list(st["Resource"]):
                ids = logical_ids(r)
                assert len(ids) == 1, f"{role}/{st.get('Sid')}: resource {r} is not one resource of the stack"
                (lid,) = ids
                assert lid in names, f"{role}/{st.get('Sid')}: {lid} is not {fn}'s (it may reach only {sorted(names)})"
                grants.setdefault(names[lid], set()).update(as_list(st["Action"]))
        assert grants == EXPECTED_GRANTS, f"{role}: grants {grants}, the code needs {EXPECTED_GRANTS}"


def test_each_function_logs_only_to_its_own_log_group(source, cfn):
    for fn in functions(source):
        props = cfn["Resources"][fn]["Properties"]
        role = role_of(cfn, fn)
        log_group = own_log_group(cfn, fn)
        group = cfn["Resources"][log_group]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"].get("RetentionInDays"), f"{log_group}: kept forever"
        # /aws/lambda/<function name>, the group Lambda writes to by default.
        binary = source["Resources"][fn]["Metadata"]["BuildProperties"]["Binary"]
        assert props.get("FunctionName") == {"Fn::Sub": "${AWS::StackName}-" + binary}
        assert group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + props["FunctionName"]["Fn::Sub"]}
        logs = [st for st in role_statements(cfn, role) if any(a.startswith("logs:") for a in as_list(st["Action"]))]
        assert [st["Resource"] for st in logs] == [
            {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${" + log_group + "}:*"}]


def test_subscriptions_updates_are_limited_to_the_attributes_the_code_writes(source, cfn):
    key = {k["AttributeName"] for k in source["Resources"]["SubscriptionsTable"]["Properties"]["KeySchema"]}
    written = subscription_update_attributes()
    for fn in functions(source):
        role = role_of(cfn, fn)
        updates = [st for st in role_statements(cfn, role)
                   if logical_ids(st["Resource"]) == {"SubscriptionsTable"}
                   and any(a in ("dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
                                 "dynamodb:BatchWriteItem") for a in as_list(st["Action"]))]
        assert updates, f"{role}: no UpdateItem on Subscriptions (the code disables and marks failing)"
        for st in updates:
            assert as_list(st["Action"]) == ["dynamodb:UpdateItem"], f"{role}/{st.get('Sid')}: {st['Action']}"
            cond = st.get("Condition", {})
            allowed = set(cond.get("ForAllValues:StringEquals", {}).get("dynamodb:Attributes", []))
            assert allowed == key | written, (
                f"{role}/{st.get('Sid')}: UpdateItem on Subscriptions allowed for {sorted(allowed)}; "
                f"the code updates {sorted(written)} by key {sorted(key)}")
            # ForAllValues holds for a request that names no attribute: require the key.
            assert cond.get("Null", {}).get("dynamodb:Attributes") == "false"
            # ALL_OLD / ALL_NEW would return the whole record (the signing secret included).
            returns = set(as_list(cond.get("StringEqualsIfExists", {}).get("dynamodb:ReturnValues", [])))
            assert returns and returns <= SAFE_RETURN_VALUES, f"{role}: ReturnValues {returns}"


# ---------------------------------------------------------------- who may publish, who may send

def test_topic_policy_names_the_publishers_and_denies_everyone_else(source, transformed):
    cfn = transformed  # both ways of the PublisherPrincipals condition
    param = source["Parameters"].get("PublisherPrincipals")
    assert param and param["Type"] == "CommaDelimitedList"
    policies = [b for b in cfn["Resources"].values() if b["Type"] == "AWS::SNS::TopicPolicy"
                and logical_ids(b["Properties"]["Topics"]) == {"EventsTopic"}]
    assert len(policies) == 1, "the events topic has no topic policy"
    sts = statements(policies[0]["Properties"]["PolicyDocument"])
    allows = [st for st in sts if st["Effect"] == "Allow"]
    assert [as_list(st["Action"]) for st in allows] == [["sns:Publish"]]
    assert "PublisherPrincipals" in logical_ids(allows[0]["Principal"])
    assert logical_ids(allows[0]["Resource"]) == {"EventsTopic"}
    denies = [st for st in sts if st["Effect"] == "Deny" and "sns:Publish" in as_list(st["Action"])]
    assert len(denies) == 1 and denies[0]["Principal"] == "*"
    assert logical_ids(denies[0]["Resource"]) == {"EventsTopic"}
    assert "PublisherPrincipals" in logical_ids(denies[0]["Condition"]), "the deny does not spare the publishers"


def test_only_the_topic_may_send_to_the_queues(cfn):
    res = cfn["Resources"]
    subscribed = {logical_ids(b["Properties"]["Endpoint"]).pop() for b in res.values()
                  if b["Type"] == "AWS::SNS::Subscription" and b["Properties"]["Protocol"] == "sqs"}
    # The queues SNS moves what it could not deliver to (the subscriptions' RedrivePolicy).
    subscribed |= {logical_ids(b["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]).pop() for b in res.values()
                   if b["Type"] == "AWS::SNS::Subscription" and "RedrivePolicy" in b["Properties"]}
    covered: set[str] = set()
    for body in res.values():
        if body["Type"] != "AWS::SQS::QueuePolicy":
            continue
        covered |= logical_ids(body["Properties"]["Queues"])
        for st in statements(body["Properties"]["PolicyDocument"]):
            if st["Effect"] != "Allow":
                continue
            assert st["Principal"] == {"Service": "sns.amazonaws.com"}
            assert as_list(st["Action"]) == ["sqs:SendMessage"]
            assert st["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "EventsTopic"}}}
            assert logical_ids(st["Resource"]) <= subscribed
    assert covered == subscribed, f"queue policies on {sorted(covered)}, the topic feeds {sorted(subscribed)}"
