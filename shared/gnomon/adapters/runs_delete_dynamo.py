"""`delete` for `gnomon.adapters.dynamo.DynamoRunStore` (purge and the retention sweep).

Wire it as a method of the store:

    def delete(self, run_id: str, *, expected_version: int) -> None:
        delete_run(self, run_id, expected_version=expected_version)

A run whose id encodes its key is one conditional DeleteItem. Any other run also has a pointer
item: both go in ONE TransactWriteItems (the run conditioned on its version), so a pointer is
never left behind by a delete (one left by TTL is handled by `create`, as before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pynamodb.exceptions import DeleteError, TransactWriteError
from pynamodb.transactions import TransactWrite

from gnomon.adapters.dynamo import _CONDITION_FAILED, _MAX_ATTEMPTS, _POINTER_SK, _backoff, _pointer_pk
from gnomon.adapters.memory import conflict_current
from gnomon.domain.errors import Conflict, NotFound
from gnomon.domain.runs import parse_scheduled_run_id

if TYPE_CHECKING:
    from gnomon.adapters.dynamo import DynamoRunStore

_RETRYABLE = {"ConditionalCheckFailed", "TransactionConflict"}


def delete_run(store: DynamoRunStore, run_id: str, *, expected_version: int) -> None:
    """Delete a run if it is at `expected_version`. `NotFound`; `Conflict(current=doc)`."""
    m = store._item
    located = parse_scheduled_run_id(run_id) is not None
    for attempt in range(_MAX_ATTEMPTS):
        item = store._read(run_id)
        if item is None:
            raise NotFound(f"run/{run_id}")
        if int(item.version) != expected_version:
            break
        condition = m.version == expected_version
        try:
            if located:
                item.delete(condition=condition)
            else:
                pointer = store._pointer(_pointer_pk(run_id), _POINTER_SK)
                with TransactWrite(connection=store._connection) as tx:
                    tx.delete(item, condition=condition)
                    tx.delete(pointer)
            return
        except DeleteError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise
        except TransactWriteError as e:
            codes = {r.code for r in e.cancellation_reasons if r is not None}
            if e.cause_response_code != "TransactionCanceledException" or not codes <= _RETRYABLE:
                raise
        _backoff(attempt)  # changed or met a transaction meanwhile: look again
    current = store._read(run_id)
    if current is None:
        raise NotFound(f"run/{run_id}")
    stored = store._record(current)
    raise Conflict(
        f"run/{run_id} is at version {stored.version}, not {expected_version}",
        current=conflict_current(stored.doc, stored.version),
    )
