"""The enterprise options (issue #22) after the SAM transform, each both ways: deployed with its
parameter empty (the default: as before) and set. Static egress through the customer's VPC
(VpcSubnetIds, VpcSecurityGroupIds), a customer-managed KMS key (KmsKeyArn), X-Ray tracing
(Tracing) and reserved concurrency (ReservedConcurrency)."""

from __future__ import annotations

import pytest
from test_iam import as_list, policy_documents, role_of, role_statements, statements, with_parameters

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = {"VpcSubnetIds": "subnet-0a1b2c3d4e5f60718,subnet-0b1c2d3e4f5a60718", "VpcSecurityGroupIds": "sg-0123456789abcdef0"}
ENI_ACTIONS = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
               "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
ALL_ON = {**VPC, "KmsKeyArn": KEY, "Tracing": "Active", "ReservedConcurrency": "20"}


def of_type(t: dict, rtype: str) -> dict[str, dict]:
    return {lid: b for lid, b in t["Resources"].items() if b["Type"] == rtype}


def lambdas(t: dict) -> dict[str, dict]:
    return {lid: b["Properties"] for lid, b in of_type(t, "AWS::Lambda::Function").items()}


def sids(t: dict, function: str) -> dict[str, dict]:
    return {st.get("Sid"): st for st in role_statements(t, role_of(t, function))}


@pytest.fixture(scope="module")
def on(transformed) -> dict:
    return with_parameters(transformed, ALL_ON)


def test_six_functions_both_ways(cfn, on):
    assert len(lambdas(cfn)) == 6 and len(lambdas(on)) == 6


def test_vpc_off_by_default_and_on_with_its_subnets_and_groups(cfn, transformed):
    for lid, props in lambdas(cfn).items():
        assert "VpcConfig" not in props, lid
        assert "VpcNetworkInterfaces" not in sids(cfn, lid)
    t = with_parameters(transformed, VPC)
    for lid, props in lambdas(t).items():
        assert props["VpcConfig"] == {"SubnetIds": {"Ref": "VpcSubnetIds"},
                                      "SecurityGroupIds": {"Ref": "VpcSecurityGroupIds"}}, lid
        eni = sids(t, lid)["VpcNetworkInterfaces"]
        assert eni["Effect"] == "Allow" and set(as_list(eni["Action"])) == ENI_ACTIONS, lid
        # Nothing else is granted for the VPC: no key, no tracing without their own parameters.
        assert {"CustomerManagedKey", "XRayTraces"}.isdisjoint(sids(t, lid)), lid


def test_the_vpc_parameters_go_together(source):
    [rule] = source["Rules"].values()
    text = str(rule)
    assert "VpcSubnetIds" in text and "VpcSecurityGroupIds" in text


ENCRYPTED = {
    "AWS::SQS::Queue": lambda p: p.get("KmsMasterKeyId"),
    "AWS::DynamoDB::Table": lambda p: p["SSESpecification"].get("KMSMasterKeyId"),
    "AWS::SNS::Topic": lambda p: p.get("KmsMasterKeyId"),
    "AWS::Logs::LogGroup": lambda p: p.get("KmsKeyId"),
    "AWS::Lambda::Function": lambda p: p.get("KmsKeyArn"),
}


def test_without_a_key_encryption_stays_as_before(cfn):
    for lid, b in of_type(cfn, "AWS::SQS::Queue").items():
        assert b["Properties"].get("SqsManagedSseEnabled") is True and "KmsMasterKeyId" not in b["Properties"], lid
    for lid, b in of_type(cfn, "AWS::DynamoDB::Table").items():
        assert b["Properties"]["SSESpecification"] == {"SSEEnabled": True}, lid
    [topic] = of_type(cfn, "AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    for lid, b in of_type(cfn, "AWS::Logs::LogGroup").items():
        assert "KmsKeyId" not in b["Properties"], lid
    for lid, props in lambdas(cfn).items():
        assert "KmsKeyArn" not in props and "CustomerManagedKey" not in sids(cfn, lid)
    kms = [(w, st) for w, doc in policy_documents(cfn) for st in statements(doc)
           if any(a.startswith("kms:") for a in as_list(st.get("Action", [])))]
    assert kms == []


def test_with_a_key_every_encryptable_resource_uses_it_and_the_roles_only_what_they_need(transformed):
    t = with_parameters(transformed, {"KmsKeyArn": KEY})
    counts = {}
    for rtype, key_of in ENCRYPTED.items():
        resources = of_type(t, rtype)
        counts[rtype] = len(resources)
        for lid, b in resources.items():
            assert key_of(b["Properties"]) == {"Ref": "KmsKeyArn"}, f"{lid} is not under the key"
    assert counts == {"AWS::SQS::Queue": 14, "AWS::DynamoDB::Table": 2, "AWS::SNS::Topic": 1,
                      "AWS::Logs::LogGroup": 6, "AWS::Lambda::Function": 6}
    for b in of_type(t, "AWS::SQS::Queue").values():
        assert "SqsManagedSseEnabled" not in b["Properties"], "SSE-SQS and SSE-KMS exclude each other"
    for b in of_type(t, "AWS::DynamoDB::Table").values():
        assert b["Properties"]["SSESpecification"]["SSEType"] == "KMS"
    for lid in lambdas(t):
        key = sids(t, lid)["CustomerManagedKey"]
        assert set(as_list(key["Action"])) == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
                                               "kms:DescribeKey"}, lid
        assert as_list(key["Resource"]) == [{"Ref": "KmsKeyArn"}], lid
        via = [v["Fn::Sub"] for v in key["Condition"]["StringEquals"]["kms:ViaService"]]
        assert via == ["sqs.${AWS::Region}.amazonaws.com", "dynamodb.${AWS::Region}.amazonaws.com",
                       "lambda.${AWS::Region}.amazonaws.com"], "only through the services holding its data"
    # No other statement anywhere grants a kms: action.
    kms = [st.get("Sid") for w, doc in policy_documents(t) for st in statements(doc)
           if any(a.startswith("kms:") for a in as_list(st.get("Action", [])))]
    assert kms == ["CustomerManagedKey"] * 6


def test_tracing_passthrough_by_default_active_on_demand(source, cfn, transformed):
    assert source["Parameters"]["Tracing"]["Default"] == "PassThrough"
    for lid, props in lambdas(cfn).items():
        assert props["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}, lid
        assert "XRayTraces" not in sids(cfn, lid)
    t = with_parameters(transformed, {"Tracing": "Active"})
    for lid in lambdas(t):
        xray = sids(t, lid)["XRayTraces"]
        assert set(as_list(xray["Action"])) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_reserved_concurrency_none_by_default_set_on_demand(cfn, transformed):
    for lid, props in lambdas(cfn).items():
        assert "ReservedConcurrentExecutions" not in props, lid
    t = with_parameters(transformed, {"ReservedConcurrency": "20"})
    for lid, props in lambdas(t).items():
        assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}, lid


def test_with_every_option_on_only_eni_and_xray_grant_on_every_resource(on):
    """The IAM rule of test_iam (no Allow on `*`) with the options on: the two statements whose
    actions have no resource-level permission are the only exceptions, each only with its option."""
    wide = set()
    for where, doc in policy_documents(on):
        for st in statements(doc):
            if st.get("Effect") == "Allow" and "*" in [r for r in as_list(st.get("Resource")) if isinstance(r, str)]:
                wide.add(st.get("Sid"))
    assert wide == {"VpcNetworkInterfaces", "XRayTraces"}


def test_every_linter_finding_suppressed_says_why(source):
    """make template runs cfn-lint with the serverless rules and checkov and fails on any finding;
    the ones that do not apply are suppressed on their resource, each with its reason, and no more
    than these."""
    from test_iam import TEMPLATE

    text = TEMPLATE.read_text()
    ignored = [line for line in text.splitlines() if line.strip().startswith("- ") and
               line.strip()[2:].split(" ")[0] in {"ES6000", "WS1000", "WS1004"}]
    assert ignored and all("#" in line and len(line.split("#", 1)[1].strip()) > 20 for line in ignored), ignored
    suppressed: dict[str, list[str]] = {}
    for lid, body in source["Resources"].items():
        meta = body.get("Metadata", {})
        for check in meta.get("cfn-lint", {}).get("config", {}).get("ignore_checks", []):
            suppressed.setdefault(check, []).append(lid)
        for skip in meta.get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, f"{lid}: {skip['id']} without a reason"
            suppressed.setdefault(skip["id"], []).append(lid)
    assert {k: len(v) for k, v in suppressed.items()} == {
        "WS1000": 6, "WS1004": 6, "CKV_AWS_116": 6, "ES6000": 8, "CKV_AWS_119": 2}, suppressed
