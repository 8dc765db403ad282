"""The moto server, with one change for long local runs (the soak): TransactWriteItems snapshots
only the items it touches instead of deep-copying every table it touches on each call (moto 5.2.5
does the latter, which makes each transaction cost time and memory in proportion to everything
stored so far). Rollback semantics are kept: on failure the touched items are put back.

  python infra/moto_fast_transactions.py -H 127.0.0.1 -p 4566
"""

import copy
import sys

import moto.dynamodb.models as ddb_models
from moto.dynamodb.models.table import Table

_real_deepcopy = copy.deepcopy


class _NoTableCopy:
    """Stands in for the `copy` module inside moto.dynamodb.models: tables are not copied."""

    @staticmethod
    def deepcopy(obj, memo=None):
        return obj if isinstance(obj, Table) else _real_deepcopy(obj, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


ddb_models.copy = _NoTableCopy()
_original = ddb_models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    snapshot = []
    for item in transact_items:
        op_type, op = next(iter(item.items()))
        table = self.tables.get(op.get("TableName"))
        if table is None:
            continue
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op.get("Key")
        if not key:
            continue
        current = self.get_item(table.name, key)
        snapshot.append((table.name, key, _real_deepcopy(current.to_json()["Attributes"]) if current else None))
    try:
        return _original(self, transact_items)
    except Exception:
        for table_name, key, attrs in reversed(snapshot):
            if attrs is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attrs)
        raise


ddb_models.DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
