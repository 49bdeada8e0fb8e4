# pynamodb leaves Index.__init_subclass__ untyped.
# mypy: disable-error-code="no-untyped-call"
"""The DynamoDB event store (pynamodb), held to the same contract suite as
`gnomon.adapters.events_memory`.

Table `GNOMON_EVENTS_TABLE` (the template's `EventsTable`), keys `pk` / `sk`:

- a stream's head: `pk` = "k#<definition>#<key>" (`#` never occurs in a definition name),
  `sk` = "head"; `doc` (the head as JSON, without `last_seq`), `last_seq` (number, moved only
  by an append), `version`; and, while the stream is not idle, the sparse `busy` GSI's keys
  `busy_def` = definition and `busy_key` = "<halted|running>#<key>" (what `GET /v1/operators`
  reads: only the keys with work or halted, never every key a definition has seen);
- its events: the same `pk`, `sk` = "e#<seq, 12 digits>", `event_id`, `doc` — so a stream
  reads in order from its partition;
- one marker per (definition, event id): `pk` = "i#<definition>#<event_id>", `sk` = "id", `seq`
  (kept for good: an id is never run twice);
- `expires_at` (epoch seconds, the TTL attribute) on an event once the stream moved past it:
  the definition's `history.retention_days` later. Pending events of a halted key never expire.

An append is ONE TransactWriteItems of three puts: the head at the version read (or absent),
the event item (absent) and the marker (absent); a cancelled transaction is re-read into
`AlreadyExists` (the marker exists) or `Conflict` (the head moved). A head update is an
UpdateItem conditioned on `version` that leaves `last_seq` alone.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import replace
from datetime import datetime

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from gnomon.adapters.dynamo import _backoff, _bind, _Cancelled, _connection, _table, _transact
from gnomon.adapters.events_memory import check_append, head_doc, head_of
from gnomon.adapters.memory import check_limit
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.ports_events import StoredEvent, StreamHead

__all__ = ["EVENTS_TABLE_ENV", "DynamoEventStore"]

EVENTS_TABLE_ENV = "GNOMON_EVENTS_TABLE"
_HEAD = "head"
_MARKER = "id"
_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CONFLICT = "TransactionConflictException"
_MAX_ATTEMPTS = 50


class _Busy(GlobalSecondaryIndex["_EventItem"]):
    class Meta:
        index_name = "busy"
        projection = AllProjection()

    busy_def = UnicodeAttribute(hash_key=True)
    busy_key = UnicodeAttribute(range_key=True)


class _EventItem(Model):
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute(null=True)
    version = NumberAttribute(null=True)  # heads
    last_seq = NumberAttribute(null=True)  # heads
    event_id = UnicodeAttribute(null=True)  # events
    seq = NumberAttribute(null=True)  # markers
    expires_at = TTLAttribute(null=True)  # processed events (retention)
    busy_def = UnicodeAttribute(null=True)  # heads that are not idle: sparse
    busy_key = UnicodeAttribute(null=True)
    busy = _Busy()


def _stream_pk(definition: str, key: str) -> str:
    return f"k#{definition}#{key}"


def _event_sk(seq: int) -> str:
    return f"e#{seq:012d}"


def _marker_pk(definition: str, event_id: str) -> str:
    return f"i#{definition}#{event_id}"


def _busy_key(head: StreamHead) -> str | None:
    state = head.state
    return None if state == "idle" else f"{state}#{head.key}"


class DynamoEventStore:
    """`EventStore` on one table; see the module docstring for the item layout."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = _table(table_name, EVENTS_TABLE_ENV)
        self._item = _bind(_EventItem, self.table_name)
        self._connection = _connection()

    def head(self, definition: str, key: str) -> StreamHead:
        try:
            item = self._item.get(_stream_pk(definition, key), _HEAD, consistent_read=True)
        except self._item.DoesNotExist:
            return StreamHead(definition=definition, key=key)
        return self._head(definition, key, item)

    def append(self, head: StreamHead, event: StoredEvent) -> StreamHead:
        check_append(head, event)
        m = self._item
        new = replace(head, last_seq=event.seq, version=head.version + 1)
        doc = head_doc(new)
        doc.pop("last_seq")
        busy = _busy_key(new)
        head_item = m(
            _stream_pk(head.definition, head.key),
            _HEAD,
            doc=json.dumps(doc),
            version=new.version,
            last_seq=event.seq,
            busy_def=head.definition if busy else None,
            busy_key=busy,
        )
        event_item = m(
            _stream_pk(head.definition, head.key),
            _event_sk(event.seq),
            doc=json.dumps(event.doc),
            event_id=event.event_id,
        )
        marker = m(_marker_pk(head.definition, event.event_id), _MARKER, seq=event.seq)
        head_condition = m.pk.does_not_exist() if head.version == 0 else (m.version == head.version)
        try:
            _transact(
                self._connection,
                [
                    (head_item, head_condition),
                    (event_item, m.pk.does_not_exist()),
                    (marker, m.pk.does_not_exist()),
                ],
            )
        except _Cancelled:
            try:
                seen = m.get(marker.pk, _MARKER, consistent_read=True)
            except m.DoesNotExist:
                raise Conflict(f"the stream {head.definition}/{head.key} moved", current=None) from None
            raise AlreadyExists(
                f"event {event.event_id} was appended before", {"seq": int(seen.seq or 0)}
            ) from None
        return new

    def update_head(self, head: StreamHead, *, expected_version: int) -> StreamHead:
        m = self._item
        doc = head_doc(head)
        doc.pop("last_seq")
        busy = _busy_key(head)
        actions: list[Action] = [m.doc.set(json.dumps(doc)), m.version.add(1)]
        if busy is not None:
            actions += [m.busy_def.set(head.definition), m.busy_key.set(busy)]
        else:
            actions += [m.busy_def.remove(), m.busy_key.remove()]
        item = m(_stream_pk(head.definition, head.key), _HEAD)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                item.update(actions, condition=(m.version == expected_version))
                return self._head(head.definition, head.key, item)
            except UpdateError as e:
                if e.cause_response_code == _TRANSACTION_CONFLICT:
                    _backoff(attempt)
                    continue
                if e.cause_response_code != _CONDITION_FAILED:
                    raise
            current = self.head(head.definition, head.key)
            raise Conflict(
                f"the stream {head.definition}/{head.key} moved",
                current={"version": current.version} if current.version else None,
            )
        raise Conflict(f"the stream {head.definition}/{head.key}: too much contention", current=None)

    def event(self, definition: str, key: str, seq: int) -> StoredEvent:
        try:
            item = self._item.get(_stream_pk(definition, key), _event_sk(seq), consistent_read=True)
        except self._item.DoesNotExist:
            raise NotFound(f"event/{definition}/{key}/{seq}") from None
        return StoredEvent(definition, key, seq, str(item.event_id), json.loads(item.doc or "{}"))

    def events(self, definition: str, key: str, *, after_seq: int, limit: int) -> builtins.list[StoredEvent]:
        check_limit(limit)
        m = self._item
        items = m.query(
            _stream_pk(definition, key),
            m.sk.between(_event_sk(after_seq + 1), _event_sk(10**12 - 1)),
            limit=limit,
            consistent_read=True,
        )
        return [
            StoredEvent(definition, key, int(i.sk[2:]), str(i.event_id), json.loads(i.doc or "{}"))
            for i in items
        ]

    def expire(self, definition: str, key: str, seq: int, at: datetime) -> None:
        m = self._item
        item = m(_stream_pk(definition, key), _event_sk(seq))
        try:
            item.update([m.expires_at.set(at)], condition=m.pk.exists())
        except UpdateError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise

    def expires_at(self, definition: str, key: str, seq: int) -> datetime | None:
        """The retention instant an event was given (for tests)."""
        try:
            item = self._item.get(_stream_pk(definition, key), _event_sk(seq), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        return item.expires_at

    def busy(self, definition: str, *, limit: int) -> builtins.list[StreamHead]:
        check_limit(limit)
        heads = [
            self._head(definition, str(i.pk).split("#", 2)[2], i)
            for i in self._item.busy.query(definition, limit=limit)
        ]
        # The index is eventually consistent: keep what is still busy, sorted by key.
        return sorted((h for h in heads if h.state != "idle"), key=lambda h: h.key)

    @staticmethod
    def _head(definition: str, key: str, item: _EventItem) -> StreamHead:
        doc = json.loads(item.doc or "{}")
        doc["last_seq"] = int(item.last_seq or 0)
        return head_of(definition, key, doc, int(item.version or 0))
