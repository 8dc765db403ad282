"""The local stack's AWS emulator: the moto server, patched so that DynamoDB answers like the real
service in the ways that matter for concurrency and cost, and counting what every request would
cost. Same command line as moto_server:

  python infra/dynamodb_emulator.py -H 127.0.0.1 -p 4566

Every patch is applied when this module is imported, by replacing functions of moto 5.2.5. All
DynamoDB requests are served one at a time under one lock (moto's server is threaded and moto's
DynamoDB backend has no locking of its own, so two conditional writes could both succeed). SQS is
patched for speed at depth (7) and to refuse the messages SQS refuses (8); the other services are
untouched.

Behaviours (2, 3 and 4 configurable at run time, see the HTTP routes and the environment below):

1. TransactWriteItems touches only its items. moto deep-copies every table a transaction touches,
   on every call, to be able to roll back: each transaction then costs time and memory in
   proportion to everything stored so far. Here only the items the transaction names are
   snapshotted (an Update's item is copied, since moto changes it in place; a Put or Delete
   replaces or removes the stored item, which is kept as it is) and put back if it fails, or if
   the emulator refuses it afterwards (size, throttling); the tables are never copied.

2. Transaction conflicts, as in
   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling
   Each TransactWriteItems that is admitted (no conflict, no validation or throttling refusal) is
   in flight for `hold_ms` milliseconds from its arrival and holds every item it names (Put,
   Update, Delete and ConditionCheck alike), also when its conditions then fail: it was in flight
   when they were evaluated. While an item is held:
   - a TransactWriteItems naming it fails with TransactionCanceledException; CancellationReasons
     has one entry per item, in request order: {"Code": "TransactionConflict", "Message":
     "Transaction is ongoing for the item"} for each held item, {"Code": "None"} for the others;
   - a PutItem, UpdateItem or DeleteItem of it fails with TransactionConflictException (HTTP 400).
   Reads are not affected (GetItem, Query, Scan, BatchGetItem, TransactGetItems). A refused
   request holds nothing. `hold_ms: 0` disables conflicts.
   By default the transaction is answered at once and its items stay held for the rest of
   `hold_ms`: a client that writes an item right after its own transaction on it can meet a
   conflict DynamoDB would not give it (DynamoDB answers once the transaction is over).
   `respond_after_hold: true` sends the answer at the end of the hold instead (each transaction
   then takes `hold_ms`, as a real one takes its time), so that only concurrent clients conflict.

3. Per-item write throttling. One partition serves at most 1,000 write units per second
   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html),
   so one item can take no more. Each item (table + full primary key) has a token bucket refilled
   at `item_wcu_per_second` with a burst of one second's worth (it starts full). A write costs
   ceil(max(size before, size after) / 1 KB) units, at least 1; in a transaction each item costs
   twice that (a prepare and a commit write), a ConditionCheck too
   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html,
   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling).
   When the bucket cannot pay: PutItem/UpdateItem/DeleteItem fail with
   ProvisionedThroughputExceededException; a TransactWriteItems fails with
   TransactionCanceledException, Code "ThrottlingError" on each item that cannot be paid, "None" on
   the others. A refused request writes nothing and consumes nothing. A conditional write whose
   condition fails still consumes units, as DynamoDB documents (the new item's size when the item
   exists, otherwise 1). BatchWriteItem is counted but not throttled (the project does not use it).
   `item_wcu_per_second: 0` disables throttling.

4. Item size limit, 400 KB = 409,600 bytes
   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items),
   with DynamoDB's size arithmetic
   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
   attribute names in UTF-8 + values; a number is 1 byte per two significant digits + 1; a binary
   its raw bytes; a boolean or null 1 byte; a list or map 3 bytes + its elements + 1 byte per
   element. moto checks sizes itself, but at 405,000 bytes, with its own arithmetic (a number
   counts as its decimal string, a binary as its base64 text, lists and maps carry no overhead),
   re-summing the whole item at every attribute it sets, and an UpdateItem it refuses can be left
   half applied. That check is replaced by this one, applied to the item as it would be stored:
   a PutItem over the limit fails with ValidationException "Item size has exceeded the maximum
   allowed size" before anything is evaluated, an UpdateItem whose result is over it fails with
   DynamoDB's "Item size to update has exceeded the maximum allowed size" and is undone; in a
   TransactWriteItems the whole transaction fails with TransactionCanceledException, Code
   "ValidationError" on each item over the limit and "None" on the others. moto's Item.size()
   (used for the 1 MB page and 16 MB BatchGetItem limits) uses the same arithmetic.
   `max_item_bytes: 0` disables the limit.

5. Condition failures inside a transaction are moto's: TransactionCanceledException with Code
   "ConditionalCheckFailed" on the failing items (with "Item" when the item asked for
   ReturnValuesOnConditionCheckFailure=ALL_OLD) and "None" on the others, as DynamoDB returns them
   (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
   Nothing was missing there; the tests pin it.

6. Accounting, with the unit rules of
   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html:
   - requests by operation (every DynamoDB request, refused or not);
   - read units: GetItem ceil(size / 4 KB) (at least 1, also for a missing item) x 1 when
     strongly consistent, x 0.5 when eventually consistent (the size is the stored item's, whatever
     the projection); BatchGetItem the same per key; Query and Scan ceil(sum of the sizes of the
     items read on the page / 4 KB), at least 1, x the same factor (items read before any
     FilterExpression and projection, as DynamoDB charges them); TransactGetItems 2 per 4 KB per
     item;
   - write units as in 3 (transactional x 2, failed conditional single writes included;
     BatchWriteItem per item); a cancelled transaction is counted as costing nothing;
   - read and write units by table, and by table and partition key kind: the partition key's value
     up to its first '#' (msg#acc#m1 is of kind "msg"); a Query or Scan page is of the kind its
     items share, "*" when they are of several; at most 1,000 kinds a table, then "(other)";
   - per item (table + key): write units, accepted writes, of which transactional; the 20 items
     with the most write units are reported, keys as plain values (at most 100,000 items are
     tracked; past that the half with the fewest units is forgotten);
   - refused requests by kind: TransactionConflict, Throttling, ConditionalCheckFailed, Validation
     (one per request and kind; a cancelled transaction counts the kinds of its reasons).

7. SQS at queue depth. moto 5.2.5 finds a receipt handle by scanning every message of the queue
   and every handle each message ever had, for each DeleteMessage and ChangeMessageVisibility,
   and reads the clock twice per stored message on every ReceiveMessage: with 10,000 messages
   queued, draining one batch cost seconds and the whole server sat at 100 % CPU. Here handles
   are indexed as they are issued; what SQS answers is unchanged (an unknown or moved handle is
   ReceiptHandleIsInvalid, a second delete of the same handle succeeds).

8. SQS message bodies as SQS validates them, per
   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html and
   API_SendMessageBatch.html: "A message can include only XML, JSON, and unformatted text. The
   following Unicode characters are allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
   #x10000 to #x10FFFF"; any other is refused with InvalidMessageContents (HTTP 400, "Invalid
   binary character '#xFFFF' was found in the message body, ..." as SQS words it). The maximum
   size is the queue's MaximumMessageSize (1,024 to 1,048,576 bytes; the default is 1 MiB since
   https://aws.amazon.com/about-aws/whats-new/2025/08/amazon-sqs-max-payload-size-1mib/, it was
   256 KiB before), counting the body in UTF-8 and each message attribute's name, data type and
   value ("All parts of the message attribute, including Name, Type, and Value, are part of the
   message size restriction", API_MessageAttributeValue.html in the same reference); over it:
   InvalidParameterValue "One or more parameters are invalid. Reason: Message must be shorter
   than <limit> bytes." (a message of exactly <limit> bytes passes). moto 5.2.5 checks no
   character and counts the body alone, in characters (600,000 'é' = 1.2 MB passed a 1 MiB
   queue). SendMessage is refused whole; in a SendMessageBatch each refused entry is reported in
   Failed (its Code, SenderFault true) and the others are sent, and the whole batch is
   BatchRequestTooLong when the entries' sizes, attributes included, add up to more than
   1,048,576 bytes. Only the SQS API is checked: SNS deliveries to SQS (where what AWS does with
   such a body is not documented) are left as moto has them.

9. SNS to SQS deliveries that fail go to the subscription's dead-letter queue. moto 5.2.5 calls
   the SQS backend inside Publish: a queue that is gone (or refuses the message) fails the
   Publish call itself and skips the topic's other subscriptions. SNS accepts the Publish and
   delivers to each subscription on its own; a delivery refused by the queue (a client-side
   error: the queue deleted, its policy or key) is not retried and, when the subscription has a
   RedrivePolicy, moved to its dead-letter queue, else dropped
   (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html). Here each SQS
   subscription's delivery is tried alone; a failure goes to its RedrivePolicy's queue (the raw
   message with raw delivery, else the JSON envelope moto would have sent) or is dropped, and
   counted in the stats as "sns_delivery_failures".

10. PartiQL write batches (BatchExecuteStatement) as DynamoDB runs them
   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.multiplestatements.batching.html,
   https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchStatementError.html):
   at most 25 statements; each runs on its own (no transaction) and gets its own answer in
   Responses, in order. moto 5.2.5's PartiQL evaluates no condition beyond the key. Here each
   INSERT and UPDATE is translated into the PutItem or UpdateItem it means (INSERT: only if the
   item is absent, else Code DuplicateItem; UPDATE: only if the item exists and the WHERE clause
   holds, else Code ConditionalCheckFailed, with the old item when the statement asks ALL_OLD)
   and served by behaviours 2 to 6: a statement can be throttled (ProvisionedThroughputExceeded),
   meet a transaction (TransactionConflict) or be too large (ValidationError) while the others
   are applied; each statement's write units are counted as the single write's. The request
   counts once. SELECT batches stay moto's.

11. Signatures, as DynamoDB checks them
   (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html,
   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html):
   every DynamoDB request must carry an `Authorization: AWS4-HMAC-SHA256` header whose signature
   is the one botocore's SigV4 signer computes for the request as received (its method, path,
   query, the headers it lists in SignedHeaders, its body's SHA-256), with the secret key of its
   access key, at its X-Amz-Date. moto checks none of it, so a client that signs the wrong headers
   or the wrong bytes would pass here and be refused by AWS. Refusals, HTTP 400 as DynamoDB
   answers: no Authorization header, MissingAuthenticationTokenException; one that cannot be read
   (or is not SigV4), IncompleteSignatureException; an unknown access key,
   UnrecognizedClientException; a signature that does not match, or an X-Amz-Date more than 15
   minutes from now, or a credential scoped to another region or service than
   `dynamodb` in DDB_EMULATOR_REGION (default us-east-1), InvalidSignatureException. Known keys: the
   local stack's (testing/testing), or DDB_EMULATOR_CREDENTIALS="KEY:SECRET,...".
   `verify_signatures: false` turns it off.

HTTP, on the emulator's own port:
  GET  /_emulator/stats        {"requests": {op: n}, "read_units": x, "write_units": y,
                                "by_table": {table: {"read_units": x, "write_units": y}},
                                "by_prefix": {table: {kind: {"read_units": x, "write_units": y}}},
                                "hottest_items": [{"table", "key": {"pk": "...", "sk": "..."},
                                                   "write_units", "writes", "transactional_writes"},
                                                  ...top 20 by write units],
                                "refused": {"TransactionConflict": n, "Throttling": n,
                                            "ConditionalCheckFailed": n, "Validation": n,
                                            "Signature": n}}
  POST /_emulator/stats/reset  zero everything above
  GET  /_emulator/config       {"hold_ms": 30, "item_wcu_per_second": 1000, "max_item_bytes": 409600,
                                "respond_after_hold": false, "verify_signatures": true}
  POST /_emulator/config       a JSON object with any of those keys; answers the whole config.
                               Applying a config also empties the token buckets (all full again)
                               and forgets the transactions in flight.

Configuration at start: DDB_EMULATOR_HOLD_MS, DDB_EMULATOR_ITEM_WCU, DDB_EMULATOR_MAX_ITEM_BYTES,
DDB_EMULATOR_RESPOND_AFTER_HOLD (1/true).
"""

from __future__ import annotations

import base64
import copy
import decimal
import json
import math
import os
import re
import sys
import threading
import time
from typing import Any

import moto.dynamodb.models as ddb_models
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.exceptions import (
    ERROR_TYPE_PREFIX,
    ConditionalCheckFailed,
    ItemSizeTooLarge,
    ItemSizeToUpdateTooLarge,
    MockValidationException,
    TransactionCanceledException,
)
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
import moto.sns.models as sns_models
import moto.sqs.models as sqs_models
from moto.core.utils import camelcase_to_underscores, unix_time, unix_time_millis
from moto.sqs.exceptions import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    InvalidAttributeName,
    InvalidBatchEntryId,
    InvalidParameterValue,
    ReceiptHandleIsInvalid,
    SQSException,
    TooManyEntriesInBatchRequest,
)
from moto.sqs.responses import SQSResponse

# ---------------------------------------------------------------- configuration

DEFAULTS: dict[str, Any] = {"hold_ms": 30, "item_wcu_per_second": 1000, "max_item_bytes": 409_600,
                            "respond_after_hold": False, "verify_signatures": True}
_ENV = {"hold_ms": "DDB_EMULATOR_HOLD_MS", "item_wcu_per_second": "DDB_EMULATOR_ITEM_WCU",
        "max_item_bytes": "DDB_EMULATOR_MAX_ITEM_BYTES", "respond_after_hold": "DDB_EMULATOR_RESPOND_AFTER_HOLD",
        "verify_signatures": "DDB_EMULATOR_VERIFY_SIGNATURES"}


def _validated(updates: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(updates, dict):
        raise ValueError("the config must be a JSON object")
    out = dict(base)
    for k, v in updates.items():
        if k not in DEFAULTS:
            raise ValueError(f"unknown config key {k!r}; known: {sorted(DEFAULTS)}")
        if k in ("respond_after_hold", "verify_signatures"):
            if not isinstance(v, bool):
                raise ValueError(f"{k} must be true or false, not {v!r}")
            out[k] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
            raise ValueError(f"{k} must be a non-negative number, not {v!r}")
        out[k] = v if k == "item_wcu_per_second" else int(v)
    return out


def _initial_config() -> dict[str, Any]:
    env: dict[str, Any] = {}
    for k, var in _ENV.items():
        raw = os.environ.get(var)
        if not raw:
            continue
        if k in ("respond_after_hold", "verify_signatures"):
            env[k] = raw.strip().lower() in ("1", "true", "yes")
        else:
            env[k] = float(raw) if k == "item_wcu_per_second" else int(raw)
    return _validated(env, DEFAULTS)


CONFIG: dict[str, Any] = _initial_config()

# One lock for all DynamoDB work: requests, the admin routes, the state below.
_LOCK = threading.RLock()

ITEM_LIMIT_MSG = "Item size has exceeded the maximum allowed size"
CONFLICT_MSG = "Transaction is ongoing for the item"
# What DynamoDB says when an on-demand table's partition (here: an item) is written too fast; the
# same text is the Message of a ThrottlingError cancellation reason.
THROTTLE_MSG = ("Throughput exceeds the current capacity of your table or index. DynamoDB is automatically "
                "scaling your table or index so please try again shortly. If exceptions persist, check if you "
                "have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                "bp-partition-key-design.html.")


class TransactionConflictException(JsonRESTError):
    def __init__(self) -> None:
        super().__init__(ERROR_TYPE_PREFIX + "TransactionConflictException", CONFLICT_MSG)


class ProvisionedThroughputExceededException(JsonRESTError):
    def __init__(self) -> None:
        super().__init__(ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException", THROTTLE_MSG)


# ---------------------------------------------------------------- DynamoDB item sizes

def _number_size(text: str) -> int:
    mantissa = text.strip().lstrip("+-").lower().split("e")[0].replace(".", "")
    digits = len(mantissa.lstrip("0").rstrip("0")) or 1
    return 1 + (digits + 1) // 2


def _binary_size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    text = str(value).strip()
    return len(text) * 3 // 4 - (len(text) - len(text.rstrip("=")))


def _type_value(v: Any) -> tuple[str, Any]:
    if isinstance(v, DynamoType):
        return v.type, v.value
    ((t, val),) = v.items()
    return t, val


def value_size(v: Any) -> int:
    """Size of one attribute value, a DynamoType or its DynamoDB JSON ({"S": "..."})."""
    t, val = _type_value(v)
    if t == "S":
        return len(val.encode("utf-8"))
    if t == "N":
        return _number_size(str(val))
    if t == "B":
        return _binary_size(val)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(x.encode("utf-8")) for x in val)
    if t == "NS":
        return sum(_number_size(str(x)) for x in val)
    if t == "BS":
        return sum(_binary_size(x) for x in val)
    if t == "L":
        return 3 + sum(1 + value_size(x) for x in val)
    if t == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(x) for k, x in val.items())
    return len(json.dumps(val))


def item_size(attrs: Any) -> int:
    """Size of an item: a moto Item, its attrs, or DynamoDB JSON {name: {type: value}}."""
    if attrs is None:
        return 0
    if isinstance(attrs, Item):
        attrs = attrs.attrs
    return sum(len(k.encode("utf-8")) + value_size(v) for k, v in attrs.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


# moto's own size check (LimitedSizeDict, 405,000 bytes by its arithmetic, re-summed at every
# attribute set) gives way to the check above; Item.size() uses DynamoDB's arithmetic.
LimitedSizeDict.__setitem__ = dict.__setitem__  # type: ignore[assignment,method-assign]
Item.size = lambda self: item_size(self)  # type: ignore[method-assign]

# ---------------------------------------------------------------- items by key


_DECIMAL = decimal.Context(prec=100)


def _canonical(t: str, v: Any) -> str:
    """One spelling per key value: numbers are compared as numbers (1, 1.0 and 1E0 are one key)."""
    if t == "N":
        try:
            number = _DECIMAL.create_decimal(str(v).strip())
            return "N:" + ("0" if number.is_zero() else str(number.normalize(_DECIMAL)))
        except decimal.InvalidOperation:
            return f"N:{v}"
    if isinstance(v, (bytes, bytearray)):
        v = base64.b64encode(v).decode()
    return f"{t}:{v}"


class Target:
    """One item a write names: its table, key, identity and where moto stores it."""

    __slots__ = ("table", "hash", "range", "id", "key", "prefix")

    def __init__(self, table: Table, key_attrs: dict[str, Any]):
        self.table = table
        hv = key_attrs[table.hash_key_attr]
        self.hash = DynamoType(hv)
        self.key = {table.hash_key_attr: hv}
        ident = [_canonical(*_type_value(hv))]
        if table.range_key_attr is not None:
            rv = key_attrs[table.range_key_attr]
            self.range: DynamoType | None = DynamoType(rv)
            self.key[table.range_key_attr] = rv
            ident.append(_canonical(*_type_value(rv)))
        else:
            self.range = None
        self.id = (table.name, tuple(ident))
        self.prefix = key_prefix(self.hash)

    def stored(self) -> Item | None:
        """The stored Item (not a copy), or None. Unlike Table.get_item, this leaves no empty
        entry behind for a partition key that has no items."""
        found = self.table.items.get(self.hash)
        if self.range is not None:
            found = found.get(self.range) if isinstance(found, dict) else None
        return found if isinstance(found, Item) else None

    def restore(self, item: Item | None) -> None:
        """Put back `item` (or its absence) exactly, without validation or stream records."""
        items = self.table.items
        if self.range is None:
            if item is None:
                items.pop(self.hash, None)
            else:
                items[self.hash] = item
        elif item is None:
            if self.hash in items:
                items[self.hash].pop(self.range, None)
        else:
            items[self.hash][self.range] = item

    def key_json(self) -> dict[str, str]:
        """The key as plain values: {"pk": "msg#acc#m1", "sk": "status"} (numbers as their text,
        binaries in base64)."""
        return {name: _plain(v) for name, v in self.key.items()}


def _plain(v: Any) -> str:
    _, val = _type_value(v)
    return base64.b64encode(val).decode() if isinstance(val, (bytes, bytearray)) else str(val)


def key_prefix(hash_value: Any) -> str:
    """A partition key's kind: its value up to the first '#' (the project's keys are
    kind#part#part; a key without '#' is its own kind)."""
    return _plain(hash_value).split("#", 1)[0]


def _target(backend: Any, table_name: Any, attrs: Any) -> Target | None:
    """The item named, or None when the request is malformed (moto then reports why)."""
    try:
        table = backend.tables.get(table_name)
        if table is None or not isinstance(attrs, dict):
            return None
        return Target(table, attrs)
    except Exception:
        return None


# ---------------------------------------------------------------- 1. transactions touch only their items

_real_deepcopy = copy.deepcopy


class _NoTableCopy:
    """Stands in for the `copy` module inside moto.dynamodb.models: tables are not copied (moto's
    transact_write_items deep-copies each table it touches to roll back; rollback is done below)."""

    @staticmethod
    def deepcopy(obj: Any, memo: Any = None) -> Any:
        return obj if isinstance(obj, Table) else _real_deepcopy(obj, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


ddb_models.copy = _NoTableCopy()  # type: ignore[assignment]
_original_backend_transact = ddb_models.DynamoDBBackend.transact_write_items


def _transact_targets(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[str, dict, Target | None]]:
    out = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
        except Exception:
            out.append(("", {}, None))
            continue
        attrs = op.get("Item") if op_type == "Put" else op.get("Key")
        out.append((op_type, op, _target(backend, op.get("TableName"), attrs)))
    return out


_TXN = threading.local()  # .snapshot: the last transaction's snapshot, for the request handler to undo it


def backend_transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's transaction, with a snapshot of only the items it names, put back on failure. A Put
    replaces the stored Item and a Delete removes it, so keeping the Item is enough; an Update
    changes it in place, so it is copied."""
    snapshot = [(t, _real_deepcopy(t.stored()) if op_type == "Update" else t.stored())
                for op_type, _, t in _transact_targets(self, transact_items) if t]
    _TXN.snapshot = snapshot
    try:
        return _original_backend_transact(self, transact_items)
    except Exception:
        for t, item in reversed(snapshot):
            t.restore(item)
        raise


ddb_models.DynamoDBBackend.transact_write_items = backend_transact_write_items  # type: ignore[method-assign]

# ---------------------------------------------------------------- 2, 3: holds and buckets


class _Holds:
    """Items held by in-flight transactions: id -> monotonic expiry."""

    def __init__(self) -> None:
        self.until: dict[Any, float] = {}

    def held(self, ident: Any, now: float) -> bool:
        return self.until.get(ident, 0.0) > now

    def hold(self, idents: list[Any], now: float) -> None:
        hold_s = CONFIG["hold_ms"] / 1000.0
        if hold_s <= 0:
            return
        if CONFIG["respond_after_hold"]:
            _REPLY.at = now + hold_s
        if len(self.until) > 4096:
            self.until = {k: v for k, v in self.until.items() if v > now}
        for ident in idents:
            self.until[ident] = now + hold_s

    def clear(self) -> None:
        self.until.clear()


class _Buckets:
    """A token bucket per item: rate = burst = item_wcu_per_second."""

    def __init__(self) -> None:
        self.state: dict[Any, tuple[float, float]] = {}  # id -> (tokens, at)

    def _tokens(self, ident: Any, now: float, rate: float) -> float:
        tokens, at = self.state.get(ident, (rate, now))
        return min(rate, tokens + (now - at) * rate)

    def can_pay(self, ident: Any, cost: float, now: float) -> bool:
        rate = float(CONFIG["item_wcu_per_second"])
        return rate <= 0 or self._tokens(ident, now, rate) >= cost

    def pay(self, ident: Any, cost: float, now: float) -> None:
        rate = float(CONFIG["item_wcu_per_second"])
        if rate <= 0:
            return
        if len(self.state) > 100_000:  # forget the buckets that are full again
            self.state = {k: (tok, at) for k, (tok, at) in self.state.items() if tok + (now - at) * rate < rate}
        self.state[ident] = (self._tokens(ident, now, rate) - cost, now)

    def clear(self) -> None:
        self.state.clear()


HOLDS = _Holds()
BUCKETS = _Buckets()

# ---------------------------------------------------------------- 6. accounting

REFUSAL_KINDS = ("TransactionConflict", "Throttling", "ConditionalCheckFailed", "Validation", "Signature")
MAX_TRACKED_ITEMS = 100_000
MAX_PREFIXES = 1000  # per table; beyond, "(other)"


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, int] = {}
        self.read_units = 0.0
        self.write_units = 0.0
        self.by_table: dict[str, list[float]] = {}  # name -> [read, write]
        self.by_prefix: dict[str, dict[str, list[float]]] = {}  # name -> partition key kind -> [read, write]
        self.items: dict[Any, list[Any]] = {}  # id -> [table, key json, units, writes, transactional writes]
        self.refused = dict.fromkeys(REFUSAL_KINDS, 0)

    def request(self, op: str) -> None:
        self.requests[op] = self.requests.get(op, 0) + 1

    def _prefix_row(self, table: str, prefix: str) -> list[float]:
        rows = self.by_prefix.setdefault(table, {})
        if prefix not in rows and len(rows) >= MAX_PREFIXES:
            prefix = "(other)"
        return rows.setdefault(prefix, [0.0, 0.0])

    def read(self, table: str, units: float, prefix: str) -> None:
        self.read_units += units
        self.by_table.setdefault(table, [0.0, 0.0])[0] += units
        self._prefix_row(table, prefix)[0] += units

    def write(self, target: Target, units: float, wrote: bool, transactional: bool) -> None:
        self.write_units += units
        self.by_table.setdefault(target.table.name, [0.0, 0.0])[1] += units
        self._prefix_row(target.table.name, target.prefix)[1] += units
        row = self.items.get(target.id)
        if row is None:
            if len(self.items) >= MAX_TRACKED_ITEMS:
                keep = sorted(self.items.items(), key=lambda kv: kv[1][2], reverse=True)[:MAX_TRACKED_ITEMS // 2]
                self.items = dict(keep)
            row = self.items[target.id] = [target.table.name, target.key_json(), 0.0, 0, 0]
        row[2] += units
        if wrote:
            row[3] += 1
            if transactional:
                row[4] += 1

    def refuse(self, kind: str) -> None:
        self.refused[kind] += 1

    def to_json(self) -> dict[str, Any]:
        hottest = sorted(self.items.values(), key=lambda r: r[2], reverse=True)[:20]
        return {
            "requests": dict(sorted(self.requests.items())),
            "read_units": self.read_units,
            "write_units": self.write_units,
            "by_table": {t: {"read_units": r, "write_units": w} for t, (r, w) in sorted(self.by_table.items())},
            "by_prefix": {t: {p: {"read_units": r, "write_units": w} for p, (r, w) in sorted(rows.items())}
                          for t, rows in sorted(self.by_prefix.items())},
            "hottest_items": [{"table": t, "key": k, "write_units": u, "writes": n, "transactional_writes": x}
                              for t, k, u, n, x in hottest],
            "refused": dict(self.refused),
        }


STATS = Stats()

_ERROR_KINDS = {
    "TransactionConflictException": "TransactionConflict",
    "ProvisionedThroughputExceededException": "Throttling",
    "ThrottlingException": "Throttling",
    "RequestLimitExceeded": "Throttling",
    "ConditionalCheckFailedException": "ConditionalCheckFailed",
    "ValidationException": "Validation",
}
_REASON_KINDS = {
    "TransactionConflict": "TransactionConflict",
    "ThrottlingError": "Throttling",
    "ProvisionedThroughputExceeded": "Throttling",
    "ConditionalCheckFailed": "ConditionalCheckFailed",
    "ValidationError": "Validation",
}


def _count_refusal(body: Any) -> None:
    try:
        doc = json.loads(body)
    except Exception:
        return
    error = str(doc.get("__type", "")).split("#")[-1]
    if error == "TransactionCanceledException":
        kinds = {_REASON_KINDS.get(r.get("Code")) for r in doc.get("CancellationReasons", [])}
        for kind in sorted(k for k in kinds if k):
            STATS.refuse(kind)
    elif error in _ERROR_KINDS:
        STATS.refuse(_ERROR_KINDS[error])


# ---------------------------------------------------------------- request handling

_original_call_action = DynamoHandler.call_action


_REPLY = threading.local()  # .at: monotonic time before which this thread's answer is not sent


_AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request,\s*"
                            r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})")
_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")


def _known_keys() -> dict[str, str]:
    pairs = os.environ.get("DDB_EMULATOR_CREDENTIALS", "testing:testing")
    return dict(p.split(":", 1) for p in pairs.split(",") if ":" in p)


KNOWN_KEYS = _known_keys()
# The region this endpoint stands for: a request signed for another is refused, as DynamoDB's
# regional endpoint refuses it.
REGION = os.environ.get("DDB_EMULATOR_REGION", "us-east-1")


def signature_refusal(method: str, url: str, headers: Any, body: bytes, now: float | None = None) -> tuple[str, str] | None:
    """Why DynamoDB would refuse this request's signature (error code, message), or None. The
    expected signature is botocore's SigV4 over the request as received (behaviour 11)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {str(k).lower(): v for k, v in headers.items()}
    authorization = headers.get("authorization")
    if not authorization:
        return "MissingAuthenticationTokenException", "Request is missing Authentication Token"
    m = _AUTHORIZATION.fullmatch(authorization.strip())
    if not m:
        return "IncompleteSignatureException", f"Authorization header requires a SigV4 signature: {authorization[:40]}"
    key, day, region, service, signed, signature = m.groups()
    if key not in KNOWN_KEYS:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    stamp = headers.get("x-amz-date") or ""
    try:
        at = time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) - time.timezone
    except ValueError:
        return "IncompleteSignatureException", "X-Amz-Date is missing or not a date"
    if abs((time.time() if now is None else now) - at) > 15 * 60:
        return "InvalidSignatureException", f"Signature expired: {stamp} is now earlier or later than 15 minutes from now"
    if service != "dynamodb" or region != REGION:
        return "InvalidSignatureException", (f"Credential should be scoped to a valid region and service, "
                                              f"not '{region}/{service}'.")
    names = signed.split(";")
    if "host" not in names or stamp[:8] != day:
        return "InvalidSignatureException", _MISMATCH
    # The host the client signed is the Host header it sent (botocore falls back on the URL's).
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in names if name in headers})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key, KNOWN_KEYS[key], headers.get("x-amz-security-token")), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return None if expected == signature else ("InvalidSignatureException", _MISMATCH)


def call_action(self: DynamoHandler) -> Any:
    target = self.headers.get("X-Amz-Target") or self.headers.get("x-amz-target") or ""
    op = target.split(".", 1)[-1] if target else "Unknown"
    _REPLY.at = None
    # Requests that came over HTTP (not moto's in-process mock, which intercepts before the wire).
    if CONFIG["verify_signatures"] and getattr(self, "is_werkzeug_request", False):
        raw = self.raw_body if isinstance(self.raw_body, bytes) else (self.raw_body or "").encode()
        refusal = signature_refusal(self.method, self.uri, self.headers, raw)
        if refusal:
            with _LOCK:
                STATS.request(op)
                STATS.refuse("Signature")
            code, message = refusal
            return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(
                {"__type": f"com.amazon.coral.service#{code}", "message": message})
    with _LOCK:
        STATS.request(op)
        status, headers, body = _original_call_action(self)
        if int(status) >= 400:
            _count_refusal(body)
    if _REPLY.at is not None:  # respond_after_hold: answer when the transaction is no longer in flight
        time.sleep(max(0.0, _REPLY.at - time.monotonic()))
    return status, headers, body


DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _wrap(name: str):
    def decorator(fn):
        original = getattr(DynamoHandler, name)

        def handler(self: DynamoHandler) -> Any:
            return fn(self, lambda: original(self))

        handler.__name__ = name
        setattr(DynamoHandler, name, handler)
        return fn

    return decorator


def _single_write(kind: str):
    """PutItem / UpdateItem / DeleteItem: conflicts, size, throttling, accounting."""

    def serve(self: DynamoHandler, original) -> Any:
        body = self.body
        attrs = body.get("Item") if kind == "Put" else body.get("Key")
        t = _target(self.dynamodb_backend, body.get("TableName"), attrs)
        if t is None:
            return original()
        now = time.monotonic()
        if HOLDS.held(t.id, now):
            raise TransactionConflictException()
        limit = CONFIG["max_item_bytes"]
        if kind == "Put" and limit and item_size(attrs) > limit:
            raise ItemSizeTooLarge()
        before = t.stored()
        before_size = item_size(before)
        snapshot = _real_deepcopy(before) if kind == "Update" else before  # Update changes it in place
        try:
            result = original()
        except ConditionalCheckFailed:
            # DynamoDB charges a failed conditional write: the new item's size when the item
            # exists, otherwise one unit.
            if before is None:
                cost = 1
            elif kind == "Put":
                cost = write_units(item_size(attrs))
            else:
                cost = write_units(before_size)
            if not BUCKETS.can_pay(t.id, cost, now):
                raise ProvisionedThroughputExceededException()
            BUCKETS.pay(t.id, cost, now)
            STATS.write(t, cost, wrote=False, transactional=False)
            raise
        except Exception:
            t.restore(snapshot)
            raise
        after_size = item_size(t.stored())
        if kind == "Update" and limit and after_size > limit:
            t.restore(snapshot)
            raise ItemSizeToUpdateTooLarge()
        cost = write_units(max(before_size, after_size))
        if not BUCKETS.can_pay(t.id, cost, now):
            t.restore(snapshot)
            raise ProvisionedThroughputExceededException()
        BUCKETS.pay(t.id, cost, now)
        STATS.write(t, cost, wrote=True, transactional=False)
        return result

    return serve


for _name, _kind in (("put_item", "Put"), ("update_item", "Update"), ("delete_item", "Delete")):
    _wrap(_name)(_single_write(_kind))


def _cancel(reasons: list[tuple[str, str] | None]) -> TransactionCanceledException:
    return TransactionCanceledException([(r[0], r[1], None) if r else (None, None, None) for r in reasons])


@_wrap("transact_write_items")
def _transact_write_items(self: DynamoHandler, original) -> Any:
    targets = _transact_targets(self.dynamodb_backend, self.body.get("TransactItems") or [])
    ids = [t.id for _, _, t in targets if t]
    if not targets or len(ids) != len(targets) or len(set(ids)) != len(ids):
        return original()  # malformed, or two actions on one item: moto says why
    now = time.monotonic()
    limit = CONFIG["max_item_bytes"]

    def refuse_if(reasons: list[tuple[str, str] | None]) -> None:
        if any(reasons):
            raise _cancel(reasons)

    refuse_if([("ValidationError", ITEM_LIMIT_MSG) if op_type == "Put" and limit and item_size(op.get("Item")) > limit
               else None for op_type, op, _ in targets])
    refuse_if([("TransactionConflict", CONFLICT_MSG) if HOLDS.held(t.id, now) else None for _, _, t in targets])

    before_sizes = [item_size(t.stored()) for _, _, t in targets]  # type: ignore[union-attr]
    _TXN.snapshot = []
    try:
        result = original()
    except TransactionCanceledException:
        HOLDS.hold(ids, now)  # admitted, in flight while its conditions were evaluated
        raise
    snapshot = _TXN.snapshot  # taken by backend_transact_write_items

    def undo() -> None:
        for t, item in reversed(snapshot):
            t.restore(item)

    after_sizes = [item_size(t.stored()) for _, _, t in targets]  # type: ignore[union-attr]
    too_big = [("ValidationError", ITEM_LIMIT_MSG) if op_type == "Update" and limit and size > limit else None
               for (op_type, _, _), size in zip(targets, after_sizes)]
    if any(too_big):
        undo()
        raise _cancel(too_big)
    costs = [2 * write_units(max(b, a)) for b, a in zip(before_sizes, after_sizes)]
    unpaid = [None if BUCKETS.can_pay(t.id, c, now) else ("ThrottlingError", THROTTLE_MSG)  # type: ignore
              for (_, _, t), c in zip(targets, costs)]
    if any(unpaid):
        undo()
        raise _cancel(unpaid)
    for (op_type, _, t), c in zip(targets, costs):
        BUCKETS.pay(t.id, c, now)  # type: ignore[union-attr]
        STATS.write(t, c, wrote=op_type != "ConditionCheck", transactional=True)  # type: ignore[arg-type]
    HOLDS.hold(ids, now)
    return result


@_wrap("batch_write_item")
def _batch_write_item(self: DynamoHandler, original) -> Any:
    planned = []
    backend = self.dynamodb_backend
    for table_name, requests in (self.body.get("RequestItems") or {}).items():
        for request in requests:
            if "PutRequest" in request:
                attrs = request["PutRequest"].get("Item")
                t, after = _target(backend, table_name, attrs), item_size(attrs)
            else:
                t, after = _target(backend, table_name, request.get("DeleteRequest", {}).get("Key")), 0
            if t is not None:
                planned.append((t, max(item_size(t.stored()), after)))
    result = original()
    for t, size in planned:
        STATS.write(t, write_units(size), wrote=True, transactional=False)
    return result


# ---------------------------------------------------------------- PartiQL batches (behaviour 10)

_PARTIQL_TOKEN = re.compile(r"""\s*(?:("(?:[^"]|"")*")|('(?:[^']|'')*')|(\?)|(<=|>=|<>|!=|=|<|>|\(|\)|\{|\}|\[|\]|,|:)"""
                            r"""|([A-Za-z_][A-Za-z0-9_]*)|(-?\d+(?:\.\d+)?))""")


class PartiqlError(Exception):
    """A statement outside what the emulator translates: answered as DynamoDB's ValidationError."""


def _partiql_tokens(text: str, parameters: list[dict]) -> list[tuple[str, Any]]:
    """(kind, value): kind is ident (quoted or not), word (an unquoted identifier, for keywords),
    value (a DynamoDB JSON value: a parameter or a literal) or op."""
    tokens, pos, params = [], 0, iter(parameters)
    text = text.rstrip()
    while pos < len(text):
        m = _PARTIQL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PartiqlError(f"Statement wasn't well formed, can't be processed: unexpected text at {pos}")
        pos = m.end()
        quoted, string, param, op, word, number = m.groups()
        if quoted is not None:
            tokens.append(("ident", quoted[1:-1].replace('""', '"')))
        elif string is not None:
            tokens.append(("value", {"S": string[1:-1].replace("''", "'")}))
        elif param is not None:
            try:
                tokens.append(("value", next(params)))
            except StopIteration:
                raise PartiqlError("Number of parameters in request and statement don't match.") from None
        elif op is not None:
            tokens.append(("op", op))
        elif word is not None:
            tokens.append(("word", word))
        else:
            tokens.append(("value", {"N": number}))
    if next(params, None) is not None:
        raise PartiqlError("Number of parameters in request and statement don't match.")
    # List literals of values ([] or [?, 'a', 1]) become one list value.
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == ("op", "["):
            j, items = i + 1, []
            while j < len(tokens) and tokens[j] != ("op", "]"):
                if tokens[j][0] == "value":
                    items.append(tokens[j][1])
                elif tokens[j] != ("op", ","):
                    raise PartiqlError("only lists of values are supported")
                j += 1
            out.append(("value", {"L": items}))
            i = j + 1
        else:
            out.append(tokens[i])
            i += 1
    return out


class _Expr:
    """DynamoDB expression text with its #names and :values, built from PartiQL tokens."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, ident: str) -> str:
        for k, v in self.names.items():
            if v == ident:
                return k
        k = f"#n{len(self.names)}"
        self.names[k] = ident
        return k

    def value(self, v: Any) -> str:
        k = f":v{len(self.values)}"
        self.values[k] = v
        return k

    def text(self, tokens: list[tuple[str, Any]]) -> str:
        out, i = [], 0
        while i < len(tokens):
            kind, v = tokens[i]
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if kind in ("ident", "word") and nxt == ("op", "("):
                out.append(v.lower())  # a function: list_append, begins_with, attribute_exists...
            elif kind == "word" and v.upper() in ("AND", "OR", "NOT"):
                out.append(v.upper())
            elif kind in ("ident", "word") and len(tokens) > i + 2 and tokens[i + 1][1] in ("IS", "is") \
                    and tokens[i + 2][0] == "word":
                negated = tokens[i + 2][1].upper() == "NOT"
                last = tokens[i + 3][1].upper() if negated and len(tokens) > i + 3 else tokens[i + 2][1].upper()
                if last != "MISSING":
                    raise PartiqlError(f"unsupported IS {last}")
                out.append(f"attribute_{'exists' if negated else 'not_exists'}({self.name(v)})")
                i += 4 if negated else 3
                continue
            elif kind in ("ident", "word"):
                out.append(self.name(v))
            elif kind == "value":
                out.append(self.value(v))
            else:
                out.append({"!=": "<>"}.get(v, v))
            i += 1
        return " ".join(out)


def _split_top(tokens: list[tuple[str, Any]], separator: str) -> list[list[tuple[str, Any]]]:
    """Split at `separator` (a keyword such as AND or SET, or "," between values) outside brackets."""
    parts, depth, current = [], 0, []
    for t in tokens:
        if t in (("op", "("), ("op", "{"), ("op", "[")):
            depth += 1
        elif t in (("op", ")"), ("op", "}"), ("op", "]")):
            depth -= 1
        at_separator = t == ("op", ",") if separator == "," else t[0] == "word" and t[1].upper() == separator
        if depth == 0 and at_separator:
            parts.append(current)
            current = []
        else:
            current.append(t)
    parts.append(current)
    return parts


def partiql_write(backend: Any, statement: str, parameters: list[dict]) -> tuple[str, dict[str, Any]]:
    """A PartiQL INSERT or UPDATE as the equivalent PutItem or UpdateItem request: (operation,
    body). INSERT is conditional on the item's absence (DuplicateItem otherwise), UPDATE on its
    presence (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.update.html:
    "If the WHERE clause ... does not evaluate to true for any item ..., ConditionalCheckFailedException
    is returned"). What the project writes: INSERT INTO "t" VALUE {'a': ?, ...} and UPDATE "t" SET
    path = value|function(...) [SET ...] WHERE key = ? AND key = ? [AND condition]."""
    tokens = _partiql_tokens(statement, parameters)
    words = [v.upper() if k == "word" else None for k, v in tokens]
    if words[:2] == ["INSERT", "INTO"] and len(tokens) > 4 and words[3] == "VALUE":
        table_name = tokens[2][1]
        body = tokens[4:]
        if body[0] != ("op", "{") or body[-1] != ("op", "}"):
            raise PartiqlError("INSERT expects VALUE {...}")
        item = {}
        for pair in _split_top(body[1:-1], ","):
            if len(pair) != 3 or pair[0][0] != "value" or "S" not in pair[0][1] or pair[1] != ("op", ":") \
                    or pair[2][0] != "value":
                raise PartiqlError("INSERT VALUE expects 'name': value pairs")
            item[pair[0][1]["S"]] = pair[2][1]
        table = backend.get_table(table_name)
        expr = _Expr()
        return "Put", {"TableName": table_name, "Item": item,
                       "ConditionExpression": f"attribute_not_exists({expr.name(table.hash_key_attr)})",
                       "ExpressionAttributeNames": expr.names}
    if words[:1] == ["UPDATE"] and len(tokens) > 2:
        table_name = tokens[1][1]
        table = backend.get_table(table_name)
        keys = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        try:
            where = words.index("WHERE")
        except ValueError:
            raise PartiqlError("UPDATE needs a WHERE clause naming the item's key") from None
        expr = _Expr()
        sets = _split_top(tokens[2:where], "SET")
        if sets[0]:
            raise PartiqlError("UPDATE supports SET clauses only")
        assignments = []
        for clause in sets[1:]:
            if len(clause) < 3 or clause[0][0] not in ("ident", "word") or clause[1] != ("op", "="):
                raise PartiqlError("SET expects path = value")
            assignments.append(f"{expr.name(clause[0][1])} = {expr.text(clause[2:])}")
        key, rest = {}, []
        for conjunct in _split_top(tokens[where + 1:], "AND"):
            if len(conjunct) == 3 and conjunct[0][0] in ("ident", "word") and conjunct[0][1] in keys \
                    and conjunct[1] == ("op", "=") and conjunct[2][0] == "value" and conjunct[0][1] not in key:
                key[conjunct[0][1]] = conjunct[2][1]
            else:
                if len(_split_top(conjunct, "OR")) > 1:  # `a AND b OR c` is `(a AND b) OR c`: not one item
                    raise PartiqlError("Where clause does not contain a mandatory equality on all key attributes")
                # No top-level AND or OR is left in a conjunct: it is one comparison or one group
                # in parentheses, taken as written (wrapping a group again is "redundant
                # parentheses" to DynamoDB's expression parser, which real PartiQL never meets).
                rest.append(expr.text(conjunct))
        if set(key) != set(keys):
            raise PartiqlError("Where clause does not contain a mandatory equality on all key attributes")
        condition = " AND ".join([f"attribute_exists({expr.name(keys[0])})"] + rest)
        body = {"TableName": table_name, "Key": key, "UpdateExpression": "SET " + ", ".join(assignments),
                "ConditionExpression": condition, "ExpressionAttributeNames": expr.names}
        if expr.values:
            body["ExpressionAttributeValues"] = expr.values
        return "Update", body
    raise PartiqlError("the emulator translates INSERT and UPDATE statements only")


_BATCH_CODES = {
    "ConditionalCheckFailedException": "ConditionalCheckFailed",
    "ProvisionedThroughputExceededException": "ProvisionedThroughputExceeded",
    "TransactionConflictException": "TransactionConflict",
    "ValidationException": "ValidationError",
    "ResourceNotFoundException": "ResourceNotFound",
    "ThrottlingException": "ThrottlingError",
}


@_wrap("batch_execute_statement")
def _batch_execute_statement(self: DynamoHandler, original) -> Any:
    """Behaviour 10: write statements run one by one through the PutItem / UpdateItem of this
    emulator (conflicts, throttling, size, accounting), each with its own answer, as DynamoDB's
    batch is not a transaction; a failed condition returns the old item when asked (ALL_OLD)."""
    statements = self.body.get("Statements") or []
    if not statements or any(s.get("Statement", "").lstrip()[:6].upper() == "SELECT" for s in statements):
        return original()  # reads: moto's own
    if len(statements) > 25:
        raise MockValidationException("Member must have length less than or equal to 25")
    from moto.dynamodb.responses import DynamoResult
    saved = self.body
    responses = []
    try:
        for entry in statements:
            try:
                kind, body = partiql_write(self.dynamodb_backend, entry["Statement"], entry.get("Parameters") or [])
            except PartiqlError as e:
                responses.append({"Error": {"Code": "ValidationError", "Message": str(e)}})
                continue
            except Exception as e:  # an unknown table, say
                responses.append({"Error": {"Code": "ResourceNotFound", "Message": str(e)}})
                continue
            if entry.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and kind == "Update":
                body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            self.body = body
            try:
                (self.put_item if kind == "Put" else self.update_item)()
                responses.append({"TableName": body["TableName"]})
            except ConditionalCheckFailed as e:
                if kind == "Put":
                    responses.append({"Error": {"Code": "DuplicateItem",
                                                "Message": "Duplicate primary key exists in table"}})
                    continue
                error: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
                try:
                    old = json.loads(e.description).get("Item")
                except (TypeError, ValueError, AttributeError):
                    old = None
                if old:
                    error["Item"] = old
                responses.append({"Error": error})
            except JsonRESTError as e:
                code = getattr(e, "error_type", "") or ""
                code = code.split("#")[-1]
                responses.append({"Error": {"Code": _BATCH_CODES.get(code, "InternalServerError"),
                                            "Message": getattr(e, "message", str(e))}})
    finally:
        self.body = saved
    return DynamoResult({"Responses": responses})


@_wrap("get_item")
def _get_item(self: DynamoHandler, original) -> Any:
    result = original()
    t = _target(self.dynamodb_backend, self.body.get("TableName"), self.body.get("Key"))
    if t is not None:
        STATS.read(t.table.name, read_units(item_size(t.stored()), bool(self.body.get("ConsistentRead"))), t.prefix)
    return result


@_wrap("batch_get_item")
def _batch_get_item(self: DynamoHandler, original) -> Any:
    result = original()
    backend = self.dynamodb_backend
    for table_name, request in (self.body.get("RequestItems") or {}).items():
        consistent = bool(request.get("ConsistentRead"))
        for key in request.get("Keys", []):
            t = _target(backend, table_name, key)
            if t is not None:
                STATS.read(table_name, read_units(item_size(t.stored()), consistent), t.prefix)
    return result


@_wrap("transact_get_items")
def _transact_get_items(self: DynamoHandler, original) -> Any:
    result = original()
    backend = self.dynamodb_backend
    for entry in self.body.get("TransactItems") or []:
        get = entry.get("Get", {})
        t = _target(backend, get.get("TableName"), get.get("Key"))
        if t is not None:
            STATS.read(t.table.name, 2 * read_units(item_size(t.stored()), True), t.prefix)
    return result


# Query and Scan: the page's items are measured before the FilterExpression and the projection
# (DynamoDB charges what it reads), which are then applied as moto applies them.
_original_query = Table.query
_original_scan = Table.scan


def _read_page(table: Table, items: list[Item], consistent: bool, queried: Any = None) -> None:
    """One Query or Scan page: units on the sum of its items' sizes; its partition key kind is the
    one its items share (or the queried key's when it is empty), "*" when they are of several."""
    units = max(1, math.ceil(sum(item_size(i) for i in items) / 4096)) * (1.0 if consistent else 0.5)
    kinds = {key_prefix(i.hash_key) for i in items if isinstance(getattr(i, "hash_key", None), DynamoType)}
    if not kinds and isinstance(queried, DynamoType):
        kinds = {key_prefix(queried)}
    STATS.read(table.name, units, kinds.pop() if len(kinds) == 1 else "*")


def table_query(self: Table, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                scan_index_forward, projection_expressions, index_name=None, consistent_read=False,
                filter_expression=None, **kwargs) -> Any:
    results, scanned, last = _original_query(self, hash_key, range_comparison, range_objs, limit,
                                             exclusive_start_key, scan_index_forward, None, index_name,
                                             consistent_read, None, **kwargs)
    _read_page(self, results, consistent_read, None if index_name else hash_key)
    if filter_expression is not None:
        results = [item for item in results if filter_expression.expr(item)]
    if projection_expressions:
        results = [r.project(projection_expressions) for r in results]
    return results, scanned, last


def table_scan(self: Table, filters, limit, exclusive_start_key, filter_expression=None, index_name=None,
               consistent_read=False, projection_expression=None, segments=(None, None)) -> Any:
    results, scanned, last = _original_scan(self, filters, limit, exclusive_start_key, None, index_name,
                                            consistent_read, None, segments=segments)
    _read_page(self, results, consistent_read)
    if filter_expression is not None:
        results = [item for item in results if filter_expression.expr(item)]
    if projection_expression:
        results = [r.project(projection_expression) for r in results]
    return results, scanned, last


Table.query = table_query  # type: ignore[method-assign]
Table.scan = table_scan  # type: ignore[method-assign]

# ---------------------------------------------------------------- /_emulator/ routes


def configure(updates: dict[str, Any]) -> dict[str, Any]:
    with _LOCK:
        CONFIG.update(_validated(updates, CONFIG))
        BUCKETS.clear()
        HOLDS.clear()
        return dict(CONFIG)


def _admin(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "").rstrip("/")
    status, doc = "200 OK", None
    try:
        if path == "/_emulator/stats" and method == "GET":
            with _LOCK:
                doc = {**STATS.to_json(), "sns_delivery_failures": dict(SNS_DELIVERY_FAILURES)}
        elif path == "/_emulator/stats/reset" and method == "POST":
            with _LOCK:
                STATS.reset()
                SNS_DELIVERY_FAILURES.update(dead_lettered=0, dropped=0)
                doc = {**STATS.to_json(), "sns_delivery_failures": dict(SNS_DELIVERY_FAILURES)}
        elif path == "/_emulator/config" and method == "GET":
            with _LOCK:
                doc = dict(CONFIG)
        elif path == "/_emulator/config" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b"{}"
            doc = configure(json.loads(raw or b"{}"))
        else:
            status, doc = "404 Not Found", {"error": f"no route {method} {path}"}
    except (ValueError, TypeError) as e:
        status, doc = "400 Bad Request", {"error": str(e)}
    payload = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


_original_app_call = DomainDispatcherApplication.__call__


def app_call(self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any) -> Any:
    if environ.get("PATH_INFO", "").startswith("/_emulator/"):
        return _admin(environ, start_response)
    return _original_app_call(self, environ, start_response)


DomainDispatcherApplication.__call__ = app_call  # type: ignore[method-assign]


# ---------------------------------------------------------------- Query reads one partition

_query_all_items = Table.query


def partition_query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
    """A Query on the table's own key reads only its partition. moto 5.2.5 sorts every item of the
    table on each Query (Table.all_items), so a Query's cost grew with everything stored: on a
    state table of 50,000 items, every alert evaluation paid for all of them."""
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    if index_name is not None or not self.range_key_attr or hash_key is None:
        return _query_all_items(self, hash_key, *args, **kwargs)
    partition = sorted(self.items.get(hash_key, {}).values(), key=lambda item: item.range_key)
    self.all_items = lambda: partition  # type: ignore[method-assign]  # shadows the method for this call
    try:
        return _query_all_items(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = partition_query  # type: ignore[method-assign]

# ---------------------------------------------------------------- SQS at depth

_HANDLES: dict[str, Any] = {}  # every receipt handle issued and not yet deleted -> its message
_original_mark_received = sqs_models.Message.mark_received


def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
    _original_mark_received(self, visibility_timeout)
    _HANDLES[self.receipt_handle] = self


def _held_message(queue: Any, receipt_handle: str) -> Any:
    """The queue's message that was given this receipt handle, found by the handle: moto 5.2.5
    scans every message of the queue, and every handle each one ever had, for each DeleteMessage
    and ChangeMessageVisibility."""
    message = _HANDLES.get(receipt_handle)
    if message is None or message not in queue._messages:  # identity: Message has no __eq__
        raise ReceiptHandleIsInvalid()
    return message


def queue_delete_message(self: Any, receipt_handle: str) -> None:
    if receipt_handle in self.deleted_messages:
        return  # already deleted: SQS accepts the second delete
    message = _held_message(self, receipt_handle)
    with self._messages_lock:
        self._messages.remove(message)
    self.pending_messages.discard(message)
    handles = message.all_receipt_handles
    self.deleted_messages.update(handles)
    for handle in handles:
        _HANDLES.pop(handle, None)


def backend_change_message_visibility(self: Any, queue_name: str, receipt_handle: str,
                                      visibility_timeout: int) -> None:
    queue = self.get_queue(queue_name)
    message = _held_message(queue, receipt_handle)
    if unix_time_millis() + int(visibility_timeout) * 1000 - message.sent_timestamp > 43200 * 1000:
        raise InvalidParameterValue(
            f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
            "VisibilityTimeout for the message is beyond the limit [43200 seconds]")
    message.change_visibility(visibility_timeout)
    if message.visible and message in queue.pending_messages:
        queue.pending_messages.remove(message)


def queue_messages(self: Any) -> list[Any]:
    """The visible messages, with the clock read once: moto reads it twice per stored message."""
    now = unix_time_millis()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


def _counts(queue: Any) -> tuple[int, int, int]:
    """(visible, not visible, delayed) in one pass with one clock read, as moto counts them."""
    now = unix_time_millis()
    visible = not_visible = delayed = 0
    for m in queue._messages:
        is_delayed = now < m.delayed_until
        delayed += is_delayed
        if now > m.visible_at:
            visible += not is_delayed
        else:
            not_visible += 1
    return visible, not_visible, delayed


_COUNTED = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed")


def queue_attributes(self: Any) -> dict[str, Any]:
    """moto's Queue.attributes, with the three counts taken in one pass: moto scans the queue,
    reading the clock per message, once per count, on every SendMessage (for one FIFO setting)
    and three times per received message (for the retention period)."""
    counts = dict(zip(_COUNTED, _counts(self)))
    names = list(self.BASE_ATTRIBUTES)
    if self.fifo_queue:
        names += self.FIFO_ATTRIBUTES
    if self.kms_master_key_id:
        names += self.KMS_ATTRIBUTES
    result: dict[str, Any] = {name: counts[name] if name in counts
                              else getattr(self, camelcase_to_underscores(name)) for name in names}
    if self.policy:
        result["Policy"] = self.policy
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy)
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in result.items()}


def get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    if "All" in attribute_names or not attribute_names:
        return _original_get_queue_attributes(self, queue_name, attribute_names)
    queue = self.get_queue(queue_name)
    valid = set(queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES)
    bad = next((name for name in attribute_names if name not in valid), None)
    if bad is not None:
        raise InvalidAttributeName(bad)
    attributes = queue.attributes  # once, not twice per name
    return {name: attributes[name] for name in attribute_names if attributes.get(name) is not None}


def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
    retention = self.get_queue(queue_name).message_retention_period
    return retention + message.sent_timestamp / 1000 > unix_time()


_original_get_queue_attributes = sqs_models.SQSBackend.get_queue_attributes
sqs_models.Queue.attributes = property(queue_attributes)  # type: ignore[assignment]
sqs_models.SQSBackend.get_queue_attributes = get_queue_attributes  # type: ignore[method-assign]
sqs_models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]
sqs_models.Message.mark_received = mark_received  # type: ignore[method-assign]
sqs_models.Queue.delete_message = queue_delete_message  # type: ignore[method-assign]
sqs_models.Queue.messages = property(queue_messages)  # type: ignore[assignment]
sqs_models.SQSBackend.change_message_visibility = backend_change_message_visibility  # type: ignore[method-assign]

# ---------------------------------------------------------------- SQS message bodies (8)

SQS_MAX_BATCH_BYTES = 1_048_576  # SendMessageBatch: the sum of the entries' sizes, attributes included
# Anything but #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (XML 1.0 Char).
_BAD_BODY_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class InvalidMessageContents(SQSException):
    def __init__(self, char: str):
        super().__init__(
            "InvalidMessageContents",
            f"Invalid binary character '#x{ord(char):X}' was found in the message body, the set of allowed "
            "characters is #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].")


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def sqs_message_bytes(body: str | None, attributes: dict[str, Any] | None) -> int:
    """A message's size as SQS counts it against MaximumMessageSize: the body in UTF-8, plus each
    message attribute's name, data type and value (a string in UTF-8, a binary as its raw bytes).
    Message system attributes (AWSTraceHeader) do not count."""
    size = _utf8_len(body) if isinstance(body, str) else 0
    for name, attr in (attributes or {}).items():
        size += _utf8_len(str(name)) + _utf8_len(str(attr.get("DataType") or ""))
        string, binary = attr.get("StringValue"), attr.get("BinaryValue")
        if isinstance(string, str):
            size += _utf8_len(string)
        if isinstance(binary, (bytes, bytearray)):
            size += len(binary)
        elif isinstance(binary, str):  # base64 text, should a protocol leave it encoded
            try:
                size += len(base64.b64decode(binary, validate=True))
            except ValueError:
                size += _utf8_len(binary)
    return size


def sqs_message_refusal(queue: Any, body: str | None, attributes: dict[str, Any] | None) -> SQSException | None:
    """What SQS answers to one message sent to this queue, or None when it takes it."""
    if not isinstance(body, str):
        return None  # moto answers a missing body itself
    limit = int(queue.maximum_message_size)
    if sqs_message_bytes(body, attributes) > limit:
        return InvalidParameterValue(
            f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.")
    bad = _BAD_BODY_CHAR.search(body)
    if bad is not None:
        return InvalidMessageContents(bad.group())
    return None


def response_send_message(self: Any) -> Any:
    """SendMessage, refused as SQS refuses it before moto stores it. Only the SQS API goes through
    here: SNS, EventBridge and S3 deliveries call the backend directly and are left as moto has
    them."""
    queue = self.sqs_backend.get_queue(self._get_queue_name())
    refusal = sqs_message_refusal(queue, self._get_param("MessageBody"), self._get_param("MessageAttributes", {}))
    if refusal is not None:
        raise refusal
    return _original_response_send_message(self)


def backend_send_message_batch(self: Any, queue_name: str,
                               entries: dict[str, dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """SendMessageBatch (called only by the SQS API): the checks on the whole request first, as moto
    makes them but with the batch size in bytes and attributes included (BatchRequestTooLong over
    1 MiB); then each entry SQS refuses is reported in Failed with its code and SenderFault, and
    the others are sent by moto."""
    queue = self.get_queue(queue_name)
    if any(not re.match(r"^[\w-]{1,80}$", entry["Id"]) for entry in entries.values()):
        raise InvalidBatchEntryId()
    total = sum(sqs_message_bytes(entry.get("MessageBody"), entry.get("MessageAttributes"))
                for entry in entries.values())
    if total > SQS_MAX_BATCH_BYTES:
        raise BatchRequestTooLong(total)
    duplicate = self._get_first_duplicate_id([entry["Id"] for entry in entries.values()])
    if duplicate:
        raise BatchEntryIdsNotDistinct(duplicate)
    if len(entries) > 10:
        raise TooManyEntriesInBatchRequest(len(entries))
    failed: list[dict[str, Any]] = []
    accepted: dict[str, dict[str, Any]] = {}
    for index, entry in entries.items():
        refusal = sqs_message_refusal(queue, entry.get("MessageBody"), entry.get("MessageAttributes"))
        if refusal is None:
            accepted[index] = entry
        else:
            failed.append({"Id": entry["Id"], "SenderFault": True, "Code": refusal.code, "Message": refusal.message})
    messages, moto_failed = _original_send_message_batch(self, queue_name, accepted) if accepted else ([], [])
    order = {entry["Id"]: n for n, entry in enumerate(entries.values())}
    return messages, sorted(failed + moto_failed, key=lambda f: order.get(f["Id"], len(order)))


_original_response_send_message = SQSResponse.send_message
_original_send_message_batch = sqs_models.SQSBackend.send_message_batch
SQSResponse.send_message = response_send_message  # type: ignore[method-assign]
sqs_models.SQSBackend.send_message_batch = backend_send_message_batch  # type: ignore[method-assign]

SNS_DELIVERY_FAILURES = {"dead_lettered": 0, "dropped": 0}


def sns_subscription_publish(self: Any, message: str, message_id: str, *args: Any, **kwargs: Any) -> None:
    """One subscription's delivery (behaviour 9): a refused SQS delivery goes to the subscription's
    RedrivePolicy queue, or is dropped, never failing the Publish."""
    try:
        return _original_sns_publish(self, message, message_id, *args, **kwargs)
    except Exception as e:  # noqa: BLE001 - whatever the queue refused with
        if self.protocol != "sqs":
            raise
        policy = self.attributes.get("RedrivePolicy")
        target = json.loads(policy).get("deadLetterTargetArn") if policy else None
        if not target:
            SNS_DELIVERY_FAILURES["dropped"] += 1
            print(f"sns: delivery to {self.endpoint} failed ({e!r}); no RedrivePolicy: dropped", file=sys.stderr)
            return None
        region, queue_name = target.split(":")[3], target.split(":")[-1]
        body = message if self.attributes.get("RawMessageDelivery") in (True, "true") else json.dumps(
            self.get_post_data(message, message_id, args[0] if args else kwargs.get("subject")))
        try:
            sqs_models.sqs_backends[self.account_id][region].send_message(queue_name, body)
            SNS_DELIVERY_FAILURES["dead_lettered"] += 1
        except Exception as dlq_error:  # noqa: BLE001
            SNS_DELIVERY_FAILURES["dropped"] += 1
            print(f"sns: delivery to {self.endpoint} failed and its DLQ refused it too: {dlq_error!r}",
                  file=sys.stderr)
        return None


_original_sns_publish = sns_models.Subscription.publish
sns_models.Subscription.publish = sns_subscription_publish  # type: ignore[method-assign]

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
