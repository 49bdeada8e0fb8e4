"""The event store's contract: every test runs against the in-memory fake and the DynamoDB adapter
(on moto, the table from template.yaml) — appends in sequence, event-id dedup, versioned heads,
the sparse `busy` index — and one thread race where appenders never share a sequence number."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gnomon.adapters.events_memory import MemoryEventStore
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.ports_events import EventStore, StoredEvent, StreamHead
from tests.contract.conftest import PREFIX
from tests.contract.helpers import race

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> EventStore:
    if backend == "memory":
        return MemoryEventStore()
    request.getfixturevalue("aws")
    monkeypatch.setenv("GNOMON_EVENTS_TABLE", f"{PREFIX}EventsTable")
    from gnomon.adapters.events_dynamo import DynamoEventStore

    return DynamoEventStore()


def ev(head: StreamHead, event_id: str, payload: object = None) -> StoredEvent:
    doc = {
        "event_id": event_id,
        "type": "order.created",
        "payload": payload,
        "received_at": "2026-12-01T10:00:00Z",
    }
    return StoredEvent(head.definition, head.key, head.last_seq + 1, event_id, doc)


def append(store: EventStore, definition: str, key: str, event_id: str, payload: object = None) -> StreamHead:
    head = store.head(definition, key)
    return store.append(head, ev(head, event_id, payload))


def test_a_new_stream_has_an_empty_head(store: EventStore) -> None:
    head = store.head("orders", "o-1")
    assert (head.version, head.last_seq, head.done_seq, head.state) == (0, 0, 0, "idle")
    with pytest.raises(NotFound):
        store.event("orders", "o-1", 1)


def test_appends_take_consecutive_numbers_and_read_back_in_order(store: EventStore) -> None:
    for i in range(1, 4):
        head = append(store, "orders", "o-1", f"e{i}", {"n": i})
        assert (head.last_seq, head.version) == (i, i)
    append(store, "orders", "o-2", "x1")
    events = store.events("orders", "o-1", after_seq=0, limit=10)
    assert [(e.seq, e.event_id, e.doc["payload"]) for e in events] == [
        (1, "e1", {"n": 1}),
        (2, "e2", {"n": 2}),
        (3, "e3", {"n": 3}),
    ]
    assert [e.seq for e in store.events("orders", "o-1", after_seq=1, limit=1)] == [2]
    assert store.event("orders", "o-1", 2).doc["payload"] == {"n": 2}
    assert store.head("orders", "o-2").last_seq == 1


def test_a_repeated_event_id_is_not_appended_again(store: EventStore) -> None:
    append(store, "orders", "o-1", "e1")
    append(store, "orders", "o-1", "e2")
    with pytest.raises(AlreadyExists) as caught:
        append(store, "orders", "o-1", "e1")
    assert caught.value.details.get("seq") == 1
    with pytest.raises(AlreadyExists):  # per definition, whatever the key
        append(store, "orders", "o-9", "e2")
    assert store.head("orders", "o-1").last_seq == 2
    assert store.head("orders", "o-9").version == 0
    append(store, "billing", "o-1", "e1")  # another definition has its own ids
    assert store.head("billing", "o-1").last_seq == 1


def test_append_on_a_stale_head_conflicts_and_stores_nothing(store: EventStore) -> None:
    stale = store.head("orders", "o-1")
    append(store, "orders", "o-1", "e1")
    with pytest.raises(Conflict):
        store.append(stale, ev(stale, "e2"))
    assert store.head("orders", "o-1").last_seq == 1
    # the id was not taken by the failed append
    append(store, "orders", "o-1", "e2")


def test_head_updates_are_versioned_and_keep_last_seq(store: EventStore) -> None:
    head = append(store, "orders", "o-1", "e1")
    moved = replace(head, inflight="run-1", runs=1, last_seq=99, updated_at=T0)
    saved = store.update_head(moved, expected_version=head.version)
    assert (saved.version, saved.inflight, saved.runs, saved.last_seq) == (head.version + 1, "run-1", 1, 1)
    assert store.head("orders", "o-1") == saved
    with pytest.raises(Conflict):
        store.update_head(replace(saved, inflight=None), expected_version=head.version)
    with pytest.raises(Conflict):  # no head to update
        store.update_head(StreamHead("orders", "nope"), expected_version=0)
    error = {"code": "http_500", "message": "boom", "details": {"n": 1}}
    halted = replace(saved, inflight=None, failures=3, halted=True, since=T0, error=error)
    back = store.update_head(halted, expected_version=saved.version)
    assert (back.halted, back.since, back.error, back.failures) == (True, T0, error, 3)


def test_busy_lists_only_streams_with_work_or_halted(store: EventStore) -> None:
    idle = append(store, "orders", "a", "a1")
    store.update_head(replace(idle, done_seq=1), expected_version=idle.version)  # processed: idle
    append(store, "orders", "c", "c1")  # waiting: running
    h = append(store, "orders", "b", "b1")
    store.update_head(replace(h, done_seq=1, halted=True, since=T0), expected_version=h.version)
    append(store, "billing", "x", "x1")
    assert [(s.key, s.state) for s in store.busy("orders", limit=10)] == [("b", "halted"), ("c", "running")]
    assert [s.key for s in store.busy("billing", limit=10)] == ["x"]
    c = store.head("orders", "c")
    store.update_head(replace(c, done_seq=1), expected_version=c.version)
    assert [s.key for s in store.busy("orders", limit=10)] == ["b"]


def test_keys_may_hold_any_character(store: EventStore) -> None:
    key = "tenant#1/order 7:ä"
    append(store, "orders", key, "e1")
    assert store.event("orders", key, 1).key == key
    assert [s.key for s in store.busy("orders", limit=10)] == [key]


def test_concurrent_appenders_never_share_a_sequence_number(store: EventStore) -> None:
    def work(i: int) -> int:
        for _ in range(100):
            head = store.head("orders", "hot")
            try:
                return store.append(head, ev(head, f"e{i}")).last_seq
            except Conflict:
                continue
        raise AssertionError("no progress")

    results = race(6, work)
    assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3, 4, 5, 6]
    events = store.events("orders", "hot", after_seq=0, limit=10)
    assert sorted(e.event_id for e in events) == [f"e{i}" for i in range(6)]


def test_expire_sets_the_retention_of_an_event(store: EventStore) -> None:
    append(store, "orders", "o-1", "e1")
    later = datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
    store.expire("orders", "o-1", 1, later)
    store.expire("orders", "o-1", 7, later)  # no such event: nothing happens
    got = store.expires_at("orders", "o-1", 1)  # type: ignore[attr-defined]
    assert got == later
    assert store.expires_at("orders", "o-1", 7) is None  # type: ignore[attr-defined]
    assert store.event("orders", "o-1", 1).event_id == "e1"
