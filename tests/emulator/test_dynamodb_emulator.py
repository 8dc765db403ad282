"""infra/dynamodb_emulator.py answers like DynamoDB where it matters for concurrency and cost:
transactions touch only their items, transaction conflicts, per-item write throttling, the 400 KB
item size limit, per-item condition failure reasons, and the accounting of capacity units; and
SQS answers like SQS at queue depth and refuses the message bodies SQS refuses. Each test cites
the AWS documentation page it copies."""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import DEFAULTS, ROOT, make_client
import supervise  # noqa: E402 (conftest put infra/ on the path)

CONFLICT = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
NONE = {"Code": "None"}
SIZE_MSG = "Item size has exceeded the maximum allowed size"


def key(pk: str, sk: str = "x") -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def item(pk: str, sk: str = "x", **attrs) -> dict:
    return {**key(pk, sk), **attrs}


def unique(prefix: str = "p") -> str:
    return f"{prefix}{uuid.uuid4().hex[:9]}"


def refusal(call) -> dict:
    """The error a call ends with: code, message, HTTP status, cancellation reasons."""
    with pytest.raises(ClientError) as e:
        call()
    r = e.value.response
    return {"code": r["Error"]["Code"], "message": r["Error"].get("Message", ""),
            "status": r["ResponseMetadata"]["HTTPStatusCode"], "reasons": r.get("CancellationReasons")}


def stored(ddb, table: str, pk: str, sk: str = "x") -> dict | None:
    return ddb.get_item(TableName=table, Key=key(pk, sk), ConsistentRead=True).get("Item")


def configure(endpoint: str, **config) -> dict:
    return supervise.configure_emulator(endpoint, **config)


# ---------------------------------------------------------------- 1. transactions touch only their items

def test_transaction_copies_no_table_and_rolls_back_only_its_items(ddb, table):
    """A failed TransactWriteItems changes nothing ("the actions are completed atomically so that
    either all of them succeed, or all of them fail",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html), and
    the emulator gets there by snapshotting only the items the transaction names: moto 5.2.5
    deep-copies every table the transaction touches, on every call."""
    # Over the wire: the rollback puts back exactly the named items and leaves the others alone.
    for i in range(20):
        ddb.put_item(TableName=table, Item=item(f"other{i}", v={"N": str(i)}))
    ddb.put_item(TableName=table, Item=item("a", v={"N": "1"}))
    ddb.put_item(TableName=table, Item=item("b", v={"N": "1"}))
    reasons = refusal(lambda: ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": table, "Key": key("a"), "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Put": {"TableName": table, "Item": item("new", v={"N": "1"})}},
        {"Delete": {"TableName": table, "Key": key("b")}},
        {"ConditionCheck": {"TableName": table, "Key": key("other3"), "ConditionExpression": "v = :nine",
                            "ExpressionAttributeValues": {":nine": {"N": "9"}}}},
    ]))["reasons"]
    assert [r["Code"] for r in reasons] == ["None", "None", "None", "ConditionalCheckFailed"]
    assert stored(ddb, table, "a")["v"] == {"N": "1"}
    assert stored(ddb, table, "b")["v"] == {"N": "1"}
    assert stored(ddb, table, "new") is None
    assert ddb.scan(TableName=table, ConsistentRead=True)["Count"] == 22

    # In process: with every deep copy of a table made to fail, transactions still work, both ways.
    import boto3
    import dynamodb_emulator as emu
    import moto.dynamodb.models as ddb_models
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    def no_table_copies(self, memo):
        raise AssertionError("a whole table was deep-copied")

    with mock_aws():
        local = boto3.client("dynamodb", region_name="us-east-1")
        local.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                           AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                 {"AttributeName": "sk", "AttributeType": "S"}],
                           KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                      {"AttributeName": "sk", "KeyType": "RANGE"}])
        local.put_item(TableName="t", Item=item("a", v={"N": "1"}))
        Table.__deepcopy__ = no_table_copies
        try:
            put = [{"Put": {"TableName": "t", "Item": item("c", v={"N": "1"})}}]
            # The trap works: moto's own transaction trips it.
            saved, ddb_models.copy = ddb_models.copy, copy
            try:
                backend = ddb_models.dynamodb_backends["123456789012"]["us-east-1"]
                with pytest.raises(AssertionError, match="deep-copied"):
                    emu._original_backend_transact(backend, put)
            finally:
                ddb_models.copy = saved
            local.transact_write_items(TransactItems=put)
            with pytest.raises(ClientError):
                local.transact_write_items(TransactItems=[
                    {"Update": {"TableName": "t", "Key": key("a"), "UpdateExpression": "SET v = :two",
                                "ExpressionAttributeValues": {":two": {"N": "2"}}}},
                    {"ConditionCheck": {"TableName": "t", "Key": key("c"),
                                        "ConditionExpression": "attribute_not_exists(pk)"}}])
        finally:
            del Table.__deepcopy__
        assert local.get_item(TableName="t", Key=key("a"))["Item"]["v"] == {"N": "1"}
        assert local.get_item(TableName="t", Key=key("c"))["Item"]["v"] == {"N": "1"}


# ---------------------------------------------------------------- 2. transaction conflicts

def test_items_of_a_transaction_in_flight_conflict(emulator, ddb, table):
    """Transaction conflict handling,
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling:
    a PutItem, UpdateItem or DeleteItem of an item of an ongoing TransactWriteItems fails with
    TransactionConflictException; a TransactWriteItems naming such an item fails with
    TransactionCanceledException, its CancellationReasons in request order; GetItem is not
    affected. Here each transaction is in flight for hold_ms from its arrival."""
    configure(emulator, hold_ms=2000)
    ddb.put_item(TableName=table, Item=item("b", v={"N": "1"}))
    ddb.put_item(TableName=table, Item=item("d", v={"N": "1"}))
    started = time.monotonic()
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": item("a", v={"N": "1"})}},
        {"Update": {"TableName": table, "Key": key("b"), "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
    ])
    second = [
        {"Put": {"TableName": table, "Item": item("c", v={"N": "1"})}},
        {"Update": {"TableName": table, "Key": key("a"), "UpdateExpression": "SET v = :three",
                    "ExpressionAttributeValues": {":three": {"N": "3"}}}},
        {"Delete": {"TableName": table, "Key": key("d")}},
        {"ConditionCheck": {"TableName": table, "Key": key("b"), "ConditionExpression": "attribute_exists(pk)"}},
    ]
    err = refusal(lambda: ddb.transact_write_items(TransactItems=second))
    assert err["code"] == "TransactionCanceledException" and err["status"] == 400
    assert err["reasons"] == [NONE, CONFLICT, NONE, CONFLICT]
    assert stored(ddb, table, "c") is None and stored(ddb, table, "d") is not None

    for call in (lambda: ddb.put_item(TableName=table, Item=item("a", v={"N": "9"})),
                 lambda: ddb.update_item(TableName=table, Key=key("b"), UpdateExpression="SET v = :n",
                                         ExpressionAttributeValues={":n": {"N": "9"}}),
                 lambda: ddb.delete_item(TableName=table, Key=key("a"))):
        err = refusal(call)
        assert (err["code"], err["status"], err["message"]) == (
            "TransactionConflictException", 400, "Transaction is ongoing for the item")
    # Reads are unaffected; an item the transaction does not name is free.
    assert stored(ddb, table, "a")["v"] == {"N": "1"}
    assert ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "b"}})["Items"][0]["v"] == {"N": "2"}
    ddb.put_item(TableName=table, Item=item("free"))
    assert time.monotonic() - started < 2.0, "too slow to test inside the hold"

    time.sleep(max(0.0, started + 2.1 - time.monotonic()))
    ddb.transact_write_items(TransactItems=second)
    assert stored(ddb, table, "a")["v"] == {"N": "3"}
    assert stored(ddb, table, "c") is not None and stored(ddb, table, "d") is None
    assert supervise.emulator_stats(emulator)["refused"]["TransactionConflict"] == 4


def test_concurrent_transactions_on_one_item_one_wins(emulator, table):
    """Of concurrent TransactWriteItems on one item exactly one goes through, the others are
    cancelled with TransactionConflict
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling):
    the check and the hold are one atomic step."""
    configure(emulator, hold_ms=2000)
    clients = [make_client(emulator) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    outcomes: list[str] = []

    def run(client, i: int) -> None:
        barrier.wait()
        try:
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": item(f"own{i}")}},
                {"Update": {"TableName": table, "Key": key("hot"), "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
            outcomes.append("ok")
        except ClientError as e:
            assert e.response["CancellationReasons"] == [NONE, CONFLICT]
            outcomes.append("conflict")

    threads = [threading.Thread(target=run, args=(c, i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    assert stored(make_client(emulator), table, "hot")["n"] == {"N": "1"}


def test_conflicts_are_configurable(emulator, ddb, table):
    """hold_ms 0 turns conflicts off; respond_after_hold answers a transaction only when it is
    over, as DynamoDB does, so that only concurrent requests meet it in flight
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling)."""
    configure(emulator, hold_ms=0)
    txn = [{"Update": {"TableName": table, "Key": key("a"), "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}]
    for _ in range(3):
        ddb.transact_write_items(TransactItems=txn)
        ddb.put_item(TableName=table, Item=item("a", n={"N": "0"}))

    configure(emulator, hold_ms=600, respond_after_hold=True)
    took: list[float] = []

    def in_flight() -> None:
        t0 = time.monotonic()
        make_client(emulator).transact_write_items(TransactItems=txn)
        took.append(time.monotonic() - t0)

    worker = threading.Thread(target=in_flight)
    worker.start()
    time.sleep(0.2)
    assert refusal(lambda: ddb.put_item(TableName=table, Item=item("a")))["code"] == "TransactionConflictException"
    worker.join()
    assert took[0] >= 0.55
    ddb.put_item(TableName=table, Item=item("a", n={"N": "7"}))  # the same client, right after: no conflict
    assert stored(ddb, table, "a")["n"] == {"N": "7"}


# ---------------------------------------------------------------- 3. per-item throttling

def _within(seconds: float, scenario):
    """Run `scenario` (which reports how long its timed part took) until that part takes less
    than `seconds`: a token bucket refills while the test runs, and a loaded machine could refill
    it enough to let the extra write through."""
    for _ in range(5):
        result, elapsed = scenario()
        if elapsed < seconds:
            return result
    pytest.skip(f"the machine is too slow to observe a bucket within {seconds}s")


def _outcome(call) -> str:
    try:
        call()
        return "ok"
    except ClientError as e:
        reasons = e.response.get("CancellationReasons")
        return json.dumps(reasons) if reasons else e.response["Error"]["Code"]


def test_writes_to_one_item_are_throttled_per_item(emulator, ddb, table):
    """One partition, so one item, serves at most 1,000 write units per second
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html);
    a write of up to 1 KB is one unit
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html).
    Scaled down to 5 units per second: five 1 KB writes go through, the sixth is refused with
    ProvisionedThroughputExceededException and writes nothing, another item is not affected, and
    the bucket refills."""
    def scenario():
        configure(emulator, item_wcu_per_second=5)  # buckets full
        supervise.reset_emulator_stats(emulator)
        pk = unique()  # 10 characters: 12 + 3 + 1,001 = 1,016 bytes, one unit

        def put(fill: str):
            return lambda: ddb.put_item(TableName=table, Item=item(pk, v={"S": fill * 1000}))

        started = time.monotonic()
        outcomes = [_outcome(put(c)) for c in "abcdef"]
        return (pk, outcomes), time.monotonic() - started

    pk, outcomes = _within(0.19, scenario)
    assert outcomes == ["ok"] * 5 + ["ProvisionedThroughputExceededException"]
    assert stored(ddb, table, pk)["v"]["S"][0] == "e"  # the refused write wrote nothing
    err = refusal(lambda: ddb.update_item(TableName=table, Key=key(pk), UpdateExpression="SET w = :w",
                                          ExpressionAttributeValues={":w": {"S": "w"}}))
    assert err["status"] == 400 and "Throughput exceeds the current capacity" in err["message"]
    ddb.put_item(TableName=table, Item=item(unique(), v={"S": "a" * 1000}))  # another item
    time.sleep(0.25)  # > 1 unit refilled
    ddb.put_item(TableName=table, Item=item(pk, v={"S": "g" * 1000}))
    assert supervise.emulator_stats(emulator)["refused"]["Throttling"] == 2, supervise.emulator_stats(emulator)

    configure(emulator, item_wcu_per_second=0)  # off
    for _ in range(20):
        ddb.put_item(TableName=table, Item=item(pk, v={"S": "h" * 1000}))


def test_transactional_writes_cost_double_and_are_throttled(emulator, ddb, table):
    """A transactional write of up to 1 KB costs two units, a prepare and a commit
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling).
    At 5 units per second two such transactions on one item go through; the third is cancelled
    with reason ThrottlingError on that item and None on the other, writes nothing and consumes
    nothing."""
    def scenario():
        configure(emulator, item_wcu_per_second=5, hold_ms=0)
        pk, other = unique(), unique()

        def txn(*pks: str):
            return lambda: ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": item(p, v={"S": "a" * 1000})}} for p in pks])

        started = time.monotonic()
        outcomes = [_outcome(txn(pk)), _outcome(txn(pk)), _outcome(txn(other, pk))]
        elapsed = time.monotonic() - started
        # What the refused transaction left: one unit on `pk`, enough for a plain 1 KB write.
        outcomes.append(_outcome(lambda: ddb.put_item(TableName=table, Item=item(pk, v={"S": "b" * 1000}))))
        return (other, outcomes), elapsed

    other, outcomes = _within(0.19, scenario)
    assert outcomes[:2] == ["ok", "ok"] and outcomes[3] == "ok"
    reasons = json.loads(outcomes[2])
    assert reasons[0] == NONE
    assert reasons[1]["Code"] == "ThrottlingError"
    assert reasons[1]["Message"].startswith("Throughput exceeds the current capacity of your table or index.")
    assert stored(ddb, table, other) is None


# ---------------------------------------------------------------- 4. item size limit

def test_items_over_400_kb_are_refused(emulator, ddb, table):
    """The maximum item size is 400 KB
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items),
    names and values counted as in
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html.
    PutItem and UpdateItem over it fail with ValidationException; in a transaction the whole
    transaction is cancelled with ValidationError on that item. moto alone refuses from 405,000
    bytes."""
    # pk "big" 2+3, sk "x" 2+1, "payload" 7 + length: 409,600 bytes exactly with 409,585 characters.
    ddb.put_item(TableName=table, Item=item("big", payload={"S": "a" * 409_585}))
    err = refusal(lambda: ddb.put_item(TableName=table, Item=item("big", payload={"S": "b" * 409_586})))
    assert (err["code"], err["message"], err["status"]) == ("ValidationException", SIZE_MSG, 400)
    assert stored(ddb, table, "big")["payload"]["S"][0] == "a"

    big = {"S": "c" * 410 * 1024}
    ddb.put_item(TableName=table, Item=item("small", v={"N": "1"}))
    for pk in ("small", "absent"):
        err = refusal(lambda: ddb.update_item(TableName=table, Key=key(pk), UpdateExpression="SET payload = :b, v = :v",
                                              ExpressionAttributeValues={":b": big, ":v": {"N": "2"}}))
        assert err["code"] == "ValidationException" and "exceeded the maximum allowed size" in err["message"]
    assert stored(ddb, table, "small") == item("small", v={"N": "1"})  # not half-updated
    assert stored(ddb, table, "absent") is None  # and not created

    reasons = refusal(lambda: ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": item("huge", payload=big)}},
        {"Put": {"TableName": table, "Item": item("fine")}}]))["reasons"]
    assert reasons == [{"Code": "ValidationError", "Message": SIZE_MSG}, NONE]
    reasons = refusal(lambda: ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": item("fine")}},
        {"Update": {"TableName": table, "Key": key("small"), "UpdateExpression": "SET payload = :b",
                    "ExpressionAttributeValues": {":b": big}}}]))["reasons"]
    assert reasons == [NONE, {"Code": "ValidationError", "Message": SIZE_MSG}]
    assert stored(ddb, table, "fine") is None and stored(ddb, table, "huge") is None
    assert stored(ddb, table, "small") == item("small", v={"N": "1"})
    assert supervise.emulator_stats(emulator)["refused"]["Validation"] == 5

    configure(emulator, max_item_bytes=0)  # off
    ddb.put_item(TableName=table, Item=item("huge", payload=big))


# ---------------------------------------------------------------- 5. condition failures in a transaction

def test_transaction_condition_failures_are_reported_per_item(ddb, table):
    """A TransactWriteItems whose conditions fail is cancelled with one CancellationReason per
    action in request order: ConditionalCheckFailed ("The conditional request failed") where the
    condition failed, with the item when ReturnValuesOnConditionCheckFailure is ALL_OLD, None
    elsewhere (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html,
    https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CancellationReason.html)."""
    existing = item("old", version={"N": "3"}, doc={"S": "{}"})
    ddb.put_item(TableName=table, Item=existing)
    ddb.put_item(TableName=table, Item=item("there"))
    reasons = refusal(lambda: ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": item("new"), "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Put": {"TableName": table, "Item": item("old", version={"N": "4"}), "ConditionExpression": "version = :v",
                 "ExpressionAttributeValues": {":v": {"N": "2"}}, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        {"Update": {"TableName": table, "Key": key("missing"), "UpdateExpression": "SET v = :one",
                    "ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"ConditionCheck": {"TableName": table, "Key": key("there"), "ConditionExpression": "attribute_exists(pk)"}},
    ]))["reasons"]
    failed = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
    assert reasons == [NONE, {**failed, "Item": existing}, failed, NONE]
    assert stored(ddb, table, "new") is None and stored(ddb, table, "old") == existing


# ---------------------------------------------------------------- 6. accounting

def test_accounting_counts_units_as_dynamodb_bills_them(emulator, ddb, table):
    """Capacity units as in
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html:
    reads per 4 KB (strongly consistent 1, eventually consistent 0.5; Query and Scan on the sum
    of the items read, filtered or not; a missing item still costs), writes per 1 KB of the larger
    of before and after, transactional writes twice, a failed conditional write still one unit;
    sizes as in https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html.
    Units are also split by partition key kind (the key up to its first '#')."""
    configure(emulator, hold_ms=0)
    supervise.reset_emulator_stats(emulator)
    # A: pk "acc" 2+3, sk "a" 2+1, "s" 1 + 1,491 = 1,500 bytes; with n = 12345 (1 + 1 + 3) 1,505.
    ddb.put_item(TableName=table, Item=item("acc", "a", s={"S": "a" * 1491}))             # W 2
    ddb.update_item(TableName=table, Key=key("acc", "a"), UpdateExpression="SET n = :n",  # W 2
                    ExpressionAttributeValues={":n": {"N": "12345"}})
    ddb.get_item(TableName=table, Key=key("acc", "a"))                                    # R 0.5
    ddb.get_item(TableName=table, Key=key("acc", "a"), ConsistentRead=True)               # R 1
    ddb.get_item(TableName=table, Key=key("acc", "none"))                                 # R 0.5
    # B: 9 + 291 = 300 bytes, 1 unit, 2 in a transaction; the ConditionCheck of A 2 x 2.
    ddb.transact_write_items(TransactItems=[                                              # W 6
        {"Put": {"TableName": table, "Item": item("acc", "b", s={"S": "b" * 291})}},
        {"ConditionCheck": {"TableName": table, "Key": key("acc", "a"), "ConditionExpression": "attribute_exists(pk)"}}])
    ddb.query(TableName=table, KeyConditionExpression="pk = :p",                         # R 0.5 (1,805 bytes)
              ExpressionAttributeValues={":p": {"S": "acc"}})
    filtered = ddb.query(TableName=table, KeyConditionExpression="pk = :p", ConsistentRead=True,  # R 1
                         FilterExpression="attribute_exists(nothing)", ExpressionAttributeValues={":p": {"S": "acc"}})
    assert (filtered["Count"], filtered["ScannedCount"]) == (0, 2)
    ddb.scan(TableName=table)                                                             # R 0.5
    ddb.delete_item(TableName=table, Key=key("acc", "b"))                                 # W 1
    assert refusal(lambda: ddb.put_item(TableName=table, Item=item("acc", "a"),           # W 1
                                        ConditionExpression="attribute_not_exists(pk)"))["code"] == \
        "ConditionalCheckFailedException"
    # C1, C2: pk "c#1" 2+3, sk "c1" 2+2, n 12345 1+4, l [x, 1] 1 + 3 + 2 + 3, m {k: true} 1 + 3 + 3,
    # s 1 + length.
    attrs = {"n": {"N": "12345"}, "l": {"L": [{"S": "x"}, {"N": "1"}]}, "m": {"M": {"k": {"BOOL": True}}}}
    ddb.batch_write_item(RequestItems={table: [                                           # W 1 + 2
        {"PutRequest": {"Item": item("c#1", "c1", s={"S": "c" * 993}, **attrs)}},   # 1,024 bytes
        {"PutRequest": {"Item": item("c#1", "c2", s={"S": "c" * 994}, **attrs)}}]})  # 1,025 bytes
    ddb.batch_get_item(RequestItems={table: {"Keys": [key("acc", "a"), key("c#1", "c2")],  # R 1 + 1
                                             "ConsistentRead": True}})
    ddb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key("acc", "a")}}])  # R 2

    stats = supervise.emulator_stats(emulator)
    assert stats["requests"] == {"BatchGetItem": 1, "BatchWriteItem": 1, "DeleteItem": 1, "GetItem": 3,
                                 "PutItem": 2, "Query": 2, "Scan": 1, "TransactGetItems": 1,
                                 "TransactWriteItems": 1, "UpdateItem": 1}
    assert stats["write_units"] == 15
    assert stats["read_units"] == 8
    assert stats["by_table"] == {table: {"read_units": 8, "write_units": 15}}
    assert stats["by_prefix"] == {table: {"acc": {"read_units": 7, "write_units": 12},
                                          "c": {"read_units": 1, "write_units": 3}}}
    assert stats["hottest_items"] == [
        {"table": table, "key": {"pk": "acc", "sk": "a"}, "write_units": 9, "writes": 2, "transactional_writes": 0},
        {"table": table, "key": {"pk": "acc", "sk": "b"}, "write_units": 3, "writes": 2, "transactional_writes": 1},
        {"table": table, "key": {"pk": "c#1", "sk": "c2"}, "write_units": 2, "writes": 1, "transactional_writes": 0},
        {"table": table, "key": {"pk": "c#1", "sk": "c1"}, "write_units": 1, "writes": 1, "transactional_writes": 0},
    ]
    assert stats["refused"] == {"TransactionConflict": 0, "Throttling": 0, "ConditionalCheckFailed": 1,
                                "Validation": 0,
                                "Signature": 0}

    supervise.reset_emulator_stats(emulator)
    assert supervise.emulator_stats(emulator) == {
        "requests": {}, "read_units": 0, "write_units": 0, "by_table": {}, "by_prefix": {}, "hottest_items": [],
        "refused": {"TransactionConflict": 0, "Throttling": 0, "ConditionalCheckFailed": 0, "Validation": 0,
                    "Signature": 0},
        "sns_delivery_failures": {"dead_lettered": 0, "dropped": 0}}


def test_config_routes(emulator):
    """GET and POST /_emulator/config: partial updates, the whole config in answer, errors on
    unknown keys and bad values; anything else under /_emulator/ is 404."""
    assert supervise.emulator_stats(emulator)["requests"] == {}
    with urllib.request.urlopen(f"{emulator}/_emulator/config") as resp:
        assert json.loads(resp.read()) == DEFAULTS
    assert configure(emulator, hold_ms=5) == {**DEFAULTS, "hold_ms": 5}
    assert configure(emulator, item_wcu_per_second=2.5) == {**DEFAULTS, "hold_ms": 5, "item_wcu_per_second": 2.5}
    for bad in ({"hold": 1}, {"hold_ms": -1}, {"item_wcu_per_second": "fast"}, {"respond_after_hold": 1},
                {"verify_signatures": "yes"}):
        with pytest.raises(urllib.error.HTTPError) as e:
            configure(emulator, **bad)
        assert e.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{emulator}/_emulator/nothing")
    assert e.value.code == 404
    assert (ROOT / "infra" / "dynamodb_emulator.py").exists()


# ---------------------------------------------------------------- 7. SQS at depth

def boto3_client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_sqs_receipt_handles_keep_their_meaning_at_depth(emulator):
    """The SQS patch only indexes receipt handles; what SQS answers stays as
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessage.html and
    API_ChangeMessageVisibility.html say: a received message is deleted by its handle (deleting it
    twice succeeds), an unknown handle is ReceiptHandleIsInvalid, a visibility of 0 makes the
    message receivable again under a new handle, and the queue keeps every message not deleted.
    Run with 3,000 messages queued, where moto's scan of every handle made each delete slow."""
    sqs = boto3_client("sqs", emulator)
    url = sqs.create_queue(QueueName=unique("depth"))["QueueUrl"]
    total = 3000
    for start in range(0, total, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"}
                                                      for i in range(10)])
    bodies: set[str] = set()
    deleted = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not got:
            break
        first, rest = got[0], got[1:]
        # the first of each batch goes back to the queue and comes again with a new handle
        if first["Body"] not in bodies:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
            bodies.add(first["Body"])
        else:
            rest = got
        for m in rest:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])  # twice: still success
            deleted += 1
    assert deleted == total
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert e.value.response["Error"]["Code"] in ("ReceiptHandleIsInvalid", "AWS.SimpleQueueService.ReceiptHandleIsInvalid")
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="not-a-handle", VisibilityTimeout=0)
    assert "ReceiptHandleIsInvalid" in e.value.response["Error"]["Code"]


# ---------------------------------------------------------------- 8. SQS message bodies

TOO_LONG = "One or more parameters are invalid. Reason: Message must be shorter than {} bytes."


def sqs_refusal(call) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as e:
        call()
    r = e.value.response
    return r["Error"]["Code"], r["Error"].get("Message", ""), r["ResponseMetadata"]["HTTPStatusCode"]


def received_bodies(sqs, url: str) -> list[str]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in got]


def test_sqs_refuses_characters_outside_the_allowed_set(emulator):
    """https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html:
    "The following Unicode characters are allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to
    #xFFFD | #x10000 to #x10FFFF. Any characters not included in this list will be rejected", with
    InvalidMessageContents (an error of SendMessage there, HTTP 400).
    moto 5.2.5 stores them. U+FFFE and U+FFFF are the edge of the BMP range, U+0000 and U+0008
    control characters next to the allowed tab."""
    sqs = boto3_client("sqs", emulator)
    url = sqs.create_queue(QueueName=unique("chars"))["QueueUrl"]
    for char, shown in (("\uffff", "#xFFFF"), ("\ufffe", "#xFFFE"), ("\x00", "#x0"), ("\x08", "#x8"),
                        ("\x0b", "#xB"), ("\x1f", "#x1F")):
        code, message, status = sqs_refusal(lambda: sqs.send_message(QueueUrl=url, MessageBody=f"{{\"a\": \"x{char}y\"}}"))
        assert (code, status) == ("InvalidMessageContents", 400), shown
        assert message.startswith(f"Invalid binary character '{shown}' was found in the message body"), message
    assert received_bodies(sqs, url) == []  # nothing stored

    # allowed: tab, LF, CR, the BMP up to U+D7FF and from U+E000 to U+FFFD, astral characters
    good = ["a\tb\nc\r\nd", "\x20\ud7ff\ue000\ufffd", "emoji \U0001F600 and \U0010FFFF", "é中"]
    for body in good:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    assert sorted(received_bodies(sqs, url)) == sorted(good)  # stored and returned unchanged


def test_sqs_batch_fails_only_the_bad_entry(emulator):
    """https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html:
    "The result of sending each message is reported individually in the response", and the
    characters allowed are SendMessage's: the entry with U+FFFF is in Failed with
    InvalidMessageContents and SenderFault, the others are sent. moto 5.2.5 sends all three."""
    sqs = boto3_client("sqs", emulator)
    url = sqs.create_queue(QueueName=unique("batch"))["QueueUrl"]
    r = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "ok1", "MessageBody": "first"},
                                                      {"Id": "bad", "MessageBody": "x\uffff"},
                                                      {"Id": "ok2", "MessageBody": "third \U0001F600"}])
    assert sorted(s["Id"] for s in r["Successful"]) == ["ok1", "ok2"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("bad", "InvalidMessageContents", True)]
    assert "#xFFFF" in r["Failed"][0]["Message"]
    assert sorted(received_bodies(sqs, url)) == ["first", "third \U0001F600"]


def test_sqs_message_size_counts_bytes_and_attributes(emulator):
    """The limit is the queue's MaximumMessageSize (CreateQueue: 1,024 bytes to 1,048,576; the
    default is 1 MiB since https://aws.amazon.com/about-aws/whats-new/2025/08/amazon-sqs-max-payload-size-1mib/,
    256 KiB = 262,144 before), in bytes, and "All parts of the message attribute, including Name,
    Type, and Value, are part of the message size restriction"
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_MessageAttributeValue.html).
    Over it SendMessage is InvalidParameterValue "Message must be shorter than 262144 bytes.";
    exactly the limit passes. moto 5.2.5 counts the body alone, in characters."""
    sqs = boto3_client("sqs", emulator)
    url = sqs.create_queue(QueueName=unique("size"), Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="a" * 262_144)
    assert sqs_refusal(lambda: sqs.send_message(QueueUrl=url, MessageBody="a" * 262_145)) == (
        "InvalidParameterValue", TOO_LONG.format(262_144), 400)
    # UTF-8 bytes, not characters: 131,073 'é' are 262,146 bytes
    assert sqs_refusal(lambda: sqs.send_message(QueueUrl=url, MessageBody="é" * 131_073))[0] == "InvalidParameterValue"
    # attributes: "k" 1 + "String" 6 + "v" 1 = 8 bytes
    attrs = {"k": {"DataType": "String", "StringValue": "v"}}
    sqs.send_message(QueueUrl=url, MessageBody="b" * 262_136, MessageAttributes=attrs)
    assert sqs_refusal(lambda: sqs.send_message(QueueUrl=url, MessageBody="b" * 262_137, MessageAttributes=attrs))[0] == \
        "InvalidParameterValue"
    # a binary value counts its bytes: "bin" 3 + "Binary" 6 + 1,000
    binary = {"bin": {"DataType": "Binary", "BinaryValue": b"\x00" * 1000}}
    sqs.send_message(QueueUrl=url, MessageBody="c" * 261_135, MessageAttributes=binary)
    assert sqs_refusal(lambda: sqs.send_message(QueueUrl=url, MessageBody="c" * 261_136, MessageAttributes=binary))[0] == \
        "InvalidParameterValue"
    assert sorted(len(b) for b in received_bodies(sqs, url)) == [261_135, 262_136, 262_144]

    # in a batch the entry over the limit fails alone; past 1 MiB in all, the whole batch is refused
    r = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "big", "MessageBody": "d" * 262_137,
                                                       "MessageAttributes": attrs},
                                                      {"Id": "small", "MessageBody": "small"}])
    assert [s["Id"] for s in r["Successful"]] == ["small"]
    assert [(f["Id"], f["Code"], f["Message"], f["SenderFault"]) for f in r["Failed"]] == [
        ("big", "InvalidParameterValue", TOO_LONG.format(262_144), True)]
    code, message, status = sqs_refusal(lambda: sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": "e" * 262_144} for i in range(4)] + [{"Id": "x", "MessageBody": "f"}]))
    # the JSON protocol carries SQS's query error code, AWS.SimpleQueueService.BatchRequestTooLong
    assert code.endswith("BatchRequestTooLong") and "1048577 bytes" in message and status == 400

    # a queue with the default limit: 1 MiB
    default = sqs.create_queue(QueueName=unique("size"))["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=default, AttributeNames=["MaximumMessageSize"])["Attributes"] == {
        "MaximumMessageSize": "1048576"}
    sqs.send_message(QueueUrl=default, MessageBody="g" * 1_048_576)
    assert sqs_refusal(lambda: sqs.send_message(QueueUrl=default, MessageBody="g" * 1_048_577)) == (
        "InvalidParameterValue", TOO_LONG.format(1_048_576), 400)


def test_sns_moves_what_a_queue_refuses_to_the_subscriptions_dlq(emulator):
    """https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html: a delivery that fails
    with a client-side error (the queue is gone) is moved to the subscription's dead-letter queue
    when it has a RedrivePolicy, and lost otherwise; the Publish itself succeeds and the topic's
    other subscriptions are delivered. moto 5.2.5 failed the Publish and skipped the rest."""
    sqs, sns = boto3_client("sqs", emulator), boto3_client("sns", emulator)
    arn = lambda url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # noqa: E731
    topic = sns.create_topic(Name=unique("topic"))["TopicArn"]
    broken, healthy, dlq = (sqs.create_queue(QueueName=unique(n))["QueueUrl"] for n in ("broken", "healthy", "dlq"))
    lost = sqs.create_queue(QueueName=unique("lost"))["QueueUrl"]
    for url, redrive in ((broken, True), (healthy, True), (lost, False)):
        attrs = {"RawMessageDelivery": "true"}
        if redrive:
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn(dlq)})
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn(url), Attributes=attrs)
    sqs.delete_queue(QueueUrl=broken)
    sqs.delete_queue(QueueUrl=lost)
    sns.publish(TopicArn=topic, Message='{"id": "evt_1"}')
    assert received_bodies(sqs, healthy) == ['{"id": "evt_1"}'], "the other subscriptions are delivered"
    assert received_bodies(sqs, dlq) == ['{"id": "evt_1"}'], "the raw message, on the DLQ"
    assert supervise.emulator_stats(emulator)["sns_delivery_failures"] == {"dead_lettered": 1, "dropped": 1}


# ---------------------------------------------------------------- behaviour 10: PartiQL batches

def _insert(table: str, pk: str, **attrs) -> dict:
    names = ["pk", "sk", *attrs]
    values = [{"S": pk}, {"S": "delivery"}, *attrs.values()]
    text = f"INSERT INTO \"{table}\" VALUE {{{', '.join(f'{chr(39)}{n}{chr(39)}: ?' for n in names)}}}"
    return {"Statement": text, "Parameters": values}


def _finish(table: str, pk: str, owner: str, entry: dict) -> dict:
    return {"Statement": f'UPDATE "{table}" SET "status" = ? SET attempts = list_append(attempts, ?) '
                         f'WHERE pk = ? AND sk = ? AND "owner" = ? AND "status" = ?',
            "Parameters": [{"S": "delivered"}, {"L": [entry]}, {"S": pk}, {"S": "delivery"}, {"S": owner},
                           {"S": "pending"}],
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}


def test_a_partiql_batch_answers_each_statement_on_its_own(ddb, table, emulator):
    pending = {"status": {"S": "pending"}, "owner": {"S": "me"}, "attempts": {"L": []}}
    out = ddb.batch_execute_statement(Statements=[_insert(table, "a", **pending), _insert(table, "b", **pending)])
    assert [r.get("Error") for r in out["Responses"]] == [None, None]
    again = ddb.batch_execute_statement(Statements=[_insert(table, "a", **pending), _insert(table, "c", **pending)])
    assert again["Responses"][0]["Error"]["Code"] == "DuplicateItem"
    assert "Error" not in again["Responses"][1], "the other statement is applied: no transaction"

    entry = {"M": {"n": {"N": "1"}}}
    out = ddb.batch_execute_statement(Statements=[
        _finish(table, "a", "me", entry),          # applied
        _finish(table, "b", "someone else", entry),  # condition fails: the old item comes back
        _finish(table, "zzz", "me", entry),        # no such item: a failed condition, no item
    ])
    first, second, third = out["Responses"]
    assert "Error" not in first
    assert second["Error"]["Code"] == "ConditionalCheckFailed"
    assert second["Error"]["Item"]["owner"] == {"S": "me"}
    assert third["Error"]["Code"] == "ConditionalCheckFailed" and "Item" not in third["Error"]
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"S": "delivery"}})["Item"]
    assert item["status"] == {"S": "delivered"} and item["attempts"] == {"L": [entry]}
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "zzz"}, "sk": {"S": "delivery"}}).get("Item") is None

    stats = supervise.emulator_stats(emulator)
    assert stats["requests"]["BatchExecuteStatement"] == 3, "one request per batch"
    assert stats["write_units"] >= 4, "each statement's write is counted"


def test_a_partiql_statement_is_throttled_alone_and_refused_when_malformed(ddb, table, emulator):
    supervise.configure_emulator(emulator, item_wcu_per_second=1)
    hot = _insert(table, "hot", status={"S": "pending"})
    ddb.batch_execute_statement(Statements=[hot])  # spends the hot item's one unit
    update = {"Statement": f'UPDATE "{table}" SET lease_until = ? WHERE pk = ? AND sk = ?',
              "Parameters": [{"N": "0"}, {"S": "hot"}, {"S": "delivery"}]}
    out = ddb.batch_execute_statement(Statements=[update, _insert(table, "cold")])
    assert out["Responses"][0]["Error"]["Code"] == "ProvisionedThroughputExceeded"
    assert "Error" not in out["Responses"][1]
    bad = {"Statement": f'UPDATE "{table}" SET lease_until = ? WHERE pk = ?', "Parameters": [{"N": "0"}, {"S": "x"}]}
    out = ddb.batch_execute_statement(Statements=[bad])
    assert out["Responses"][0]["Error"]["Code"] == "ValidationError"


def test_a_partiql_statement_takes_literals_as_dynamodb_does(ddb, table):
    out = ddb.batch_execute_statement(Statements=[{
        "Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': ?, 'sk': 'delivery', 'n': 0, 'log': [], 'tags': ['a', 1]}}",
        "Parameters": [{"S": "lit"}]}])
    assert "Error" not in out["Responses"][0], out
    out = ddb.batch_execute_statement(Statements=[{
        "Statement": f"UPDATE \"{table}\" SET n = 1 SET log = list_append(log, ?) WHERE pk = ? AND sk = 'delivery' "
                     "AND n = 0",
        "Parameters": [{"L": [{"S": "x"}]}, {"S": "lit"}]}])
    assert "Error" not in out["Responses"][0], out
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "lit"}, "sk": {"S": "delivery"}})["Item"]
    assert item["n"] == {"N": "1"} and item["log"] == {"L": [{"S": "x"}]}
    assert item["tags"] == {"L": [{"S": "a"}, {"N": "1"}]}



def test_a_partiql_where_clause_takes_a_group_in_parentheses(ddb, table):
    """The retry's claim (shared/src/store/claim_batch.rs): an OR of conditions, grouped, after the
    key. It was refused with "redundant parentheses" by the emulator's own translation (each
    condition wrapped again), so every retry's claim fell back to a single write locally."""
    def claim(pk, now):
        return {"Statement": f'UPDATE "{table}" SET "owner" = ? WHERE pk = ? AND sk = \'delivery\' '
                             f'AND attempts_made <= ? AND ("status" = \'retrying\' '
                             f'OR ("status" = \'pending\' AND lease_until < ?))',
                "Parameters": [{"S": f"me{now}"}, {"S": pk}, {"N": "1"}, {"N": str(now)}],
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}

    for pk, status, lease in (("r", "retrying", "0"), ("p", "pending", "500"), ("d", "delivered", "0")):
        ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": "delivery"}, "status": {"S": status},
                                            "attempts_made": {"N": "1"}, "lease_until": {"N": lease}})
    out = ddb.batch_execute_statement(Statements=[claim("r", 100), claim("p", 100), claim("d", 100)])
    codes = [r.get("Error", {}).get("Code") for r in out["Responses"]]
    assert codes == [None, "ConditionalCheckFailed", "ConditionalCheckFailed"], out
    assert out["Responses"][1]["Error"]["Item"]["lease_until"] == {"N": "500"}, "a live lease is not taken"
    out = ddb.batch_execute_statement(Statements=[claim("p", 1000)])
    assert "Error" not in out["Responses"][0], "a lease run out is"
    owners = [ddb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": "delivery"}})["Item"].get("owner")
              for pk in ("r", "p", "d")]
    assert owners == [{"S": "me100"}, {"S": "me1000"}, None]

# ---------------------------------------------------------------- 11. signatures

def _signed(emulator: str, body: bytes, secret: str = "testing", key: str = "testing") -> dict[str, str]:
    """Headers of a ListTables request signed by botocore, as a client would send it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=f"{emulator}/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.0",
                                  "X-Amz-Target": "DynamoDB_20120810.ListTables"})
    SigV4Auth(Credentials(key, secret), "dynamodb", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _post(emulator: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(f"{emulator}/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_requests_are_refused_unless_signed_as_aws_checks_them(emulator):
    """Behaviour 11: a request signed by botocore passes; the same request with another body, a
    wrong secret or an unknown key is refused with the error DynamoDB gives, and counted; the
    check can be turned off."""
    body = b"{}"
    status, answer = _post(emulator, body, _signed(emulator, body))
    assert status == 200 and "TableNames" in answer
    tampered = _signed(emulator, body)
    status, answer = _post(emulator, b'{"Limit": 1}', tampered)
    assert (status, answer["__type"].split("#")[-1]) == (400, "InvalidSignatureException")
    assert "does not match" in answer["message"]
    status, answer = _post(emulator, body, _signed(emulator, body, secret="wrong"))
    assert (status, answer["__type"].split("#")[-1]) == (400, "InvalidSignatureException")
    status, answer = _post(emulator, body, _signed(emulator, body, key="AKIDUNKNOWN"))
    assert (status, answer["__type"].split("#")[-1]) == (400, "UnrecognizedClientException")
    assert supervise.emulator_stats(emulator)["refused"]["Signature"] == 3
    configure(emulator, verify_signatures=False)
    status, _ = _post(emulator, b'{"Limit": 1}', tampered)
    assert status == 200


def test_a_signature_older_than_15_minutes_is_expired():
    """DynamoDB refuses a request whose X-Amz-Date is more than 15 minutes away from its clock, one
    signed for another region, and one without a signature."""
    import dynamodb_emulator as emu
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url="http://127.0.0.1:4566/", data=b"{}",
                         headers={"Content-Type": "application/x-amz-json-1.0",
                                  "X-Amz-Target": "DynamoDB_20120810.ListTables"})
    SigV4Auth(Credentials("testing", "testing"), "dynamodb", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    now = time.time()
    assert emu.signature_refusal("POST", "http://127.0.0.1:4566/", headers, b"{}", now) is None
    code, message = emu.signature_refusal("POST", "http://127.0.0.1:4566/", headers, b"{}", now + 16 * 60)
    assert code == "InvalidSignatureException" and "expired" in message
    # Signed correctly, but for another region than the endpoint's.
    other = AWSRequest(method="POST", url="http://127.0.0.1:4566/", data=b"{}",
                       headers={"Content-Type": "application/x-amz-json-1.0",
                                "X-Amz-Target": "DynamoDB_20120810.ListTables"})
    SigV4Auth(Credentials("testing", "testing"), "dynamodb", "us-west-2").add_auth(other)
    code, message = emu.signature_refusal("POST", "http://127.0.0.1:4566/", dict(other.headers.items()), b"{}", now)
    assert code == "InvalidSignatureException" and "us-west-2" in message
    # Without an Authorization header moto's server cannot tell the service, so this one is
    # checked here rather than over the wire.
    unsigned = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    assert emu.signature_refusal("POST", "http://127.0.0.1:4566/", unsigned, b"{}", now)[0] == \
        "MissingAuthenticationTokenException"
