"""The in-memory event store: the fake behind unit tests, held to the same contract suite as the
DynamoDB adapter (`tests/contract/test_events_store.py`). Documents are copied through JSON and
instants kept to the millisecond, as the DynamoDB store keeps them.

The head (de)serialisation here (`head_doc`, `head_of`) is shared with
`gnomon.adapters.events_dynamo`, so both stores keep heads alike.
"""

from __future__ import annotations

import builtins
import threading
from dataclasses import replace
from datetime import datetime

from gnomon.adapters.memory import check_limit, json_copy, store_instant
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import JSON
from gnomon.ports_events import StoredEvent, StreamHead


def head_doc(head: StreamHead) -> JSON:
    """The stored form of a head (without definition, key and version, which are the item's)."""
    return {
        "last_seq": head.last_seq,
        "done_seq": head.done_seq,
        "runs": head.runs,
        "inflight": head.inflight,
        "failures": head.failures,
        "halted": head.halted,
        "since": fmt(_ms(head.since)),
        "error": json_copy(head.error),
        "last_run_id": head.last_run_id,
        "updated_at": fmt(_ms(head.updated_at)),
    }


def head_of(definition: str, key: str, doc: JSON, version: int) -> StreamHead:
    """The head a stored document holds."""
    return StreamHead(
        definition=definition,
        key=key,
        last_seq=int(doc.get("last_seq", 0)),
        done_seq=int(doc.get("done_seq", 0)),
        runs=int(doc.get("runs", 0)),
        inflight=doc.get("inflight"),
        failures=int(doc.get("failures", 0)),
        halted=bool(doc.get("halted", False)),
        since=parse(doc["since"]) if doc.get("since") else None,
        error=doc.get("error"),
        last_run_id=doc.get("last_run_id"),
        updated_at=parse(doc["updated_at"]) if doc.get("updated_at") else None,
        version=version,
    )


def check_append(head: StreamHead, event: StoredEvent) -> None:
    """An append must add the next sequence number to the stream it names."""
    if (event.definition, event.key) != (head.definition, head.key):
        raise ValueError("the event belongs to another stream")
    if event.seq != head.last_seq + 1:
        raise ValueError(f"the next event of the stream is #{head.last_seq + 1}, not #{event.seq}")
    if not head.definition or not head.key or not event.event_id:
        raise ValueError("definition, key and event_id may not be empty")


def _ms(t: datetime | None) -> datetime | None:
    return store_instant(t) if t is not None else None


class MemoryEventStore:
    """`EventStore` in dicts, under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heads: dict[tuple[str, str], tuple[JSON, int]] = {}
        self._events: dict[tuple[str, str], dict[int, tuple[str, JSON]]] = {}
        self._ids: dict[tuple[str, str], int] = {}  # (definition, event_id) → seq
        self._expiry: dict[tuple[str, str, int], datetime] = {}

    def head(self, definition: str, key: str) -> StreamHead:
        with self._lock:
            stored = self._heads.get((definition, key))
        if stored is None:
            return StreamHead(definition=definition, key=key)
        return head_of(definition, key, json_copy(stored[0]), stored[1])

    def append(self, head: StreamHead, event: StoredEvent) -> StreamHead:
        check_append(head, event)
        stream = (head.definition, head.key)
        with self._lock:
            seen = self._ids.get((head.definition, event.event_id))
            if seen is not None:
                raise AlreadyExists(f"event {event.event_id} was appended before", {"seq": seen})
            current = self._heads.get(stream)
            version = current[1] if current is not None else 0
            if version != head.version:
                raise Conflict(f"the stream {stream} moved", current=_current(current))
            new = replace(head, last_seq=event.seq)
            self._heads[stream] = (head_doc(new), version + 1)
            self._events.setdefault(stream, {})[event.seq] = (event.event_id, json_copy(event.doc))
            self._ids[(head.definition, event.event_id)] = event.seq
        return replace(new, version=version + 1)

    def update_head(self, head: StreamHead, *, expected_version: int) -> StreamHead:
        stream = (head.definition, head.key)
        with self._lock:
            current = self._heads.get(stream)
            if current is None or current[1] != expected_version:
                raise Conflict(f"the stream {stream} moved", current=_current(current))
            doc = head_doc(head)
            doc["last_seq"] = current[0]["last_seq"]  # only append moves it
            self._heads[stream] = (doc, expected_version + 1)
        return head_of(head.definition, head.key, json_copy(doc), expected_version + 1)

    def event(self, definition: str, key: str, seq: int) -> StoredEvent:
        with self._lock:
            stored = self._events.get((definition, key), {}).get(seq)
        if stored is None:
            raise NotFound(f"event/{definition}/{key}/{seq}")
        return StoredEvent(definition, key, seq, stored[0], json_copy(stored[1]))

    def events(self, definition: str, key: str, *, after_seq: int, limit: int) -> builtins.list[StoredEvent]:
        check_limit(limit)
        with self._lock:
            stream = dict(self._events.get((definition, key), {}))
        seqs = sorted(s for s in stream if s > after_seq)[:limit]
        return [StoredEvent(definition, key, s, stream[s][0], json_copy(stream[s][1])) for s in seqs]

    def expire(self, definition: str, key: str, seq: int, at: datetime) -> None:
        # TTL deletion is not modelled (moto does not expire items either): the instant is kept.
        with self._lock:
            stored = self._events.get((definition, key), {}).get(seq)
            if stored is not None:
                self._expiry[(definition, key, seq)] = store_instant(at)

    def expires_at(self, definition: str, key: str, seq: int) -> datetime | None:
        """The retention instant an event was given (for tests)."""
        with self._lock:
            return self._expiry.get((definition, key, seq))

    def busy(self, definition: str, *, limit: int) -> builtins.list[StreamHead]:
        check_limit(limit)
        with self._lock:
            items = [(k, json_copy(d), v) for (dn, k), (d, v) in self._heads.items() if dn == definition]
        heads = [head_of(definition, k, d, v) for k, d, v in sorted(items, key=lambda i: i[0])]
        return [h for h in heads if h.state != "idle"][:limit]


def _current(stored: tuple[JSON, int] | None) -> JSON | None:
    return None if stored is None else {**json_copy(stored[0]), "version": stored[1]}
