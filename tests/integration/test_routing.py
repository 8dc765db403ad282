"""The SNS filter policies of template.yaml, provisioned on the emulator, route each input type to
exactly the queues of docs/design.md §2, and anything else to the unrouted queue."""

import json

import pytest

import provision
import supervise

EXPECTED = {
    "sms.received": {"Sms", "Messaging"},
    "sms.status_changed": {"Sms", "Performance"},
    "account.balance_changed": {"Operations"},
    "campaign.started": {"Operations"},
    "campaign.completed": {"Operations"},
    "campaign.failed": {"Operations"},
    "contact.added": {"Contacts"},
    "contact.updated": {"Contacts"},
    "contact.deleted": {"Contacts"},
    "message.scheduled": {"Messaging"},
    "message.cancelled": {"Messaging"},
    "auto_reply.sent": {"Messaging"},
    "sender_id.approved": {"Admin"},
    "sender_id.rejected": {"Admin"},
    "sms.exploded": {"Unrouted"},  # a type no category consumes is kept, not dropped
}


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory):
    """Resources only, no functions: the queues keep what SNS delivers so the test can read it."""
    emulator = supervise.Emulator(supervise.free_port(), tmp_path_factory.mktemp("logs") / "moto.log")
    yield provision.provision(emulator.endpoint)
    emulator.stop()


def drain(sqs, url):
    types = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            return types
        for m in msgs:
            types.append(json.loads(m["Body"])["type"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_each_type_reaches_exactly_its_queues(provisioned):
    sns = provision.client("sns", provisioned.endpoint)
    sqs = provision.client("sqs", provisioned.endpoint)
    for event_type in EXPECTED:
        sns.publish(TopicArn=provisioned.outputs["EventsTopicArn"], Message=json.dumps(
            {"id": f"evt_{event_type}", "type": event_type, "account_id": "acc", "occurred_at": "2026-11-30T10:00:00Z",
             "data": {}}))
    got: dict[str, set[str]] = {t: set() for t in EXPECTED}
    queues = ["Sms", "Operations", "Contacts", "Messaging", "Performance", "Admin", "Unrouted"]
    for q in queues:
        for t in drain(sqs, provisioned.outputs[f"{q}QueueUrl"]):
            assert q not in got[t], f"{t} reached {q} twice"
            got[t].add(q)
    assert got == EXPECTED
    for q in queues[:-1]:
        assert drain(sqs, provisioned.outputs[f"{q}DeadLetterQueueUrl"]) == []


def test_queues_tables_and_alarms_have_their_template_properties(provisioned):
    sqs = provision.client("sqs", provisioned.endpoint)
    ddb = provision.client("dynamodb", provisioned.endpoint)
    cw = provision.client("cloudwatch", provisioned.endpoint)
    attrs = sqs.get_queue_attributes(QueueUrl=provisioned.outputs["SmsQueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 5
    assert redrive["deadLetterTargetArn"].endswith("SmsDeadLetterQueue")
    assert int(attrs["VisibilityTimeout"]) >= 6 * 30
    assert "sns.amazonaws.com" in attrs["Policy"]
    ttl = ddb.describe_time_to_live(TableName=provisioned.outputs["StateTableName"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    keys = ddb.describe_table(TableName=provisioned.outputs["SubscriptionsTableName"])["Table"]["KeySchema"]
    assert keys == [{"AttributeName": "account_id", "KeyType": "HASH"},
                    {"AttributeName": "subscription_id", "KeyType": "RANGE"}]
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    # six DLQs, six exhausted-webhook alarms, six function errors, six throttles, six queue ages, the unrouted
    # queue, the events delivery DLQ (what SNS could not deliver)
    assert len(alarms) == 32
    sns_dlq = alarms["dataflows-local-EventsDeliveryDeadLetterAlarm"]
    assert sns_dlq["Dimensions"] == [{"Name": "QueueName", "Value": "dataflows-local-EventsDeliveryDeadLetterQueue"}]
    dlq_alarm = alarms["dataflows-local-SmsDeadLetterAlarm"]
    assert dlq_alarm["Dimensions"] == [{"Name": "QueueName", "Value": "dataflows-local-SmsDeadLetterQueue"}]
    errors = alarms["dataflows-local-SmsErrorsAlarm"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": "dataflows-local-sms"}]
    age = alarms["dataflows-local-SmsQueueAgeAlarm"]
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": "dataflows-local-SmsQueue"}]
    # Retention: 4 days on the source, 14 on the DLQ; the visibility timeout from FunctionTimeout.
    assert (attrs["MessageRetentionPeriod"], attrs["VisibilityTimeout"]) == ("345600", "180")
    dlq = sqs.get_queue_attributes(QueueUrl=provisioned.outputs["SmsDeadLetterQueueUrl"],
                                   AttributeNames=["MessageRetentionPeriod"])["Attributes"]
    assert dlq["MessageRetentionPeriod"] == "1209600"
    assert provisioned.outputs["SmsDeadLetterQueueArn"].endswith(":dataflows-local-SmsDeadLetterQueue")
    # The dashboard, with every placeholder resolved to this stack's resources.
    body = json.loads(cw.get_dashboard(DashboardName="dataflows-local")["DashboardBody"])
    text = json.dumps(body)
    assert "${" not in text and "dataflows-local-SmsQueue" in text and "dataflows-local-sms" in text
    assert provisioned.outputs["DashboardUrl"].endswith("#dashboards/dashboard/dataflows-local")
    fns = {f.binary: f for f in provisioned.functions}
    assert sorted(fns) == ["admin", "contacts", "messaging", "operations", "performance", "sms"]
    assert fns["sms"].sources[0].report_failures and fns["sms"].sources[0].batch_size == 100  # the BatchSize default
    assert fns["sms"].environment["SUBSCRIPTIONS_TABLE"] == provisioned.outputs["SubscriptionsTableName"]
