"""The plan log's contract: every test runs against the in-memory fake and the DynamoDB adapter
(on moto, the runs table from template.yaml) — firings read back by scheduled-time window, few
small items per recorded page (chunked by span and size), TTL set and honoured by readers, the
read bound — and, on DynamoDB, that its items stay out of the runs' indexes and listings."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.costmodel import item_size
from gnomon.adapters.memory import MemoryRunStore
from gnomon.adapters.planlog import MAX_PAYLOAD, RETENTION, SPAN, MemoryPlanLog
from gnomon.ports import PlanLog, PlannedFiring, RunStore

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> PlanLog:
    if backend == "memory":
        return MemoryPlanLog()
    request.getfixturevalue("runs_table")
    from gnomon.adapters.planlog_dynamo import DynamoPlanLog

    return DynamoPlanLog()


def firing(sid: str, nominal: datetime, jitter_ms: int = 0, **kw: Any) -> PlannedFiring:
    fields: dict[str, Any] = {
        "schedule_id": sid,
        "generation": "g1",
        "config_version": 1,
        "nominal_time": nominal,
        "scheduled_time": nominal + timedelta(milliseconds=jitter_ms),
        "group": "default",
        "definition": "job",
        **kw,
    }
    return PlannedFiring(**fields)


def raw_items(store: PlanLog, backend: str) -> list[dict[str, Any]]:
    """Every plan-log item as stored: keys, size in bytes, TTL (epoch seconds), firings."""
    if backend == "memory":
        assert isinstance(store, MemoryPlanLog)
        return [
            {
                "pk": c.pk,
                "sk": c.sk,
                "size": len(c.payload) + len(c.pk) + len(c.sk) + len(c.last) + 40,
                "expires_at": int(c.expires_at.timestamp()),
                "n": c.count,
            }
            for c in store.items.values()
        ]
    import boto3

    items = boto3.client("dynamodb").scan(TableName=os.environ["GNOMON_RUNS_TABLE"])["Items"]
    return [
        {
            "pk": i["pk"]["S"],
            "sk": i["sk"]["S"],
            "size": item_size(i),
            "expires_at": int(i["expires_at"]["N"]),
            "n": int(i["n"]["N"]),
            "attributes": set(i),
        }
        for i in items
        if i["pk"]["S"].startswith("plan#")
    ]


def keys(window: Any) -> list[tuple[str, datetime]]:
    return [(f.schedule_id, f.nominal_time) for f in window.firings]


def test_firings_read_back_by_scheduled_time_window(store: PlanLog) -> None:
    page = [
        firing("b", T0 + timedelta(seconds=30)),
        firing("a", T0 + timedelta(seconds=30)),
        firing("a", T0, jitter_ms=1500, generation="g7", config_version=3, group="g", definition="d"),
        firing("c", T0 + timedelta(minutes=10)),
        firing("a", T0 - timedelta(seconds=5)),  # a catch-up firing, before the window
    ]
    store.record(page, now=T0)
    got = store.window(T0, T0 + timedelta(minutes=10), now=T0, limit=100)
    assert got.complete
    # sorted by scheduled time, then schedule id; `end` is exclusive, `start` inclusive
    assert keys(got) == [("a", T0), ("a", T0 + timedelta(seconds=30)), ("b", T0 + timedelta(seconds=30))]
    assert got.firings[0] == page[2]  # every field round-trips
    late = store.window(T0 + timedelta(milliseconds=1500), T0 + timedelta(minutes=11), now=T0, limit=100)
    assert keys(late)[0] == ("a", T0) and keys(late)[-1] == ("c", T0 + timedelta(minutes=10))
    # a window whose bounds carry microseconds: times are kept in milliseconds
    edge = store.window(
        T0 + timedelta(microseconds=1), T0 + timedelta(seconds=1, microseconds=501_000), now=T0, limit=100
    )
    assert keys(edge) == [("a", T0)]
    assert store.window(T0 + timedelta(minutes=11), T0 + timedelta(hours=24), now=T0, limit=100).firings == []


def test_recording_nothing_writes_nothing(store: PlanLog, backend: str) -> None:
    store.record([], now=T0)
    assert raw_items(store, backend) == []


def test_a_chunk_that_starts_before_the_window_and_ends_in_it_is_found(store: PlanLog) -> None:
    store.record([firing("a", T0 - timedelta(minutes=14)), firing("a", T0 + timedelta(seconds=1))], now=T0)
    got = store.window(T0, T0 + timedelta(seconds=2), now=T0, limit=100)
    assert keys(got) == [("a", T0 + timedelta(seconds=1))]


def test_windows_across_midnight_and_24_hours_long(store: PlanLog) -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    store.record(
        [firing("a", midnight - timedelta(seconds=1)), firing("a", midnight + timedelta(seconds=1))], now=T0
    )
    store.record([firing("b", midnight + timedelta(hours=23, minutes=59))], now=T0)
    got = store.window(midnight - timedelta(minutes=1), midnight + timedelta(minutes=1), now=T0, limit=100)
    assert [t for _, t in keys(got)] == [midnight - timedelta(seconds=1), midnight + timedelta(seconds=1)]
    day = store.window(midnight, midnight + timedelta(hours=24), now=T0, limit=100)
    assert keys(day) == [
        ("a", midnight + timedelta(seconds=1)),
        ("b", midnight + timedelta(hours=23, minutes=59)),
    ]


def test_a_large_page_is_cut_into_small_items_spanning_at_most_15_minutes(
    store: PlanLog, backend: str
) -> None:
    rng = random.Random(7)
    # 400 schedules with opaque ids, every 30 s over 20 minutes, jittered: 16 000 firings
    sids = [f"sched-{rng.getrandbits(64):016x}" for _ in range(400)]
    page = [
        firing(sid, T0 + timedelta(seconds=30 * k), jitter_ms=rng.randrange(0, 10_000))
        for sid in sids
        for k in range(40)
    ]
    store.record(page, now=T0)
    items = raw_items(store, backend)
    assert len(items) > 2
    assert all(i["size"] <= 4096 for i in items), max(i["size"] for i in items)
    assert sum(i["n"] for i in items) == len(page)
    got = store.window(T0 - SPAN, T0 + timedelta(hours=1), now=T0, limit=100_000)
    expected = sorted(page, key=lambda f: (f.scheduled_time, f.schedule_id, f.nominal_time))
    assert got.complete and got.firings == expected
    # a page of a few firings over 25 minutes: the span cut, not the size, makes two items
    before = len(items)
    store.record([firing("x", T0 + timedelta(minutes=m)) for m in (0, 5, 16, 25)], now=T0)
    assert len(raw_items(store, backend)) == before + 2
    assert MAX_PAYLOAD < 4096


def test_items_expire_an_hour_after_their_last_firing_and_readers_skip_expired_ones(
    store: PlanLog, backend: str
) -> None:
    store.record([firing("a", T0), firing("a", T0 + timedelta(minutes=5))], now=T0)
    (item,) = raw_items(store, backend)
    last = T0 + timedelta(minutes=5)
    assert item["expires_at"] == int((last + RETENTION).timestamp())
    window = (T0, T0 + timedelta(minutes=6))
    assert len(store.window(*window, now=last + RETENTION, limit=100).firings) == 2
    assert store.window(*window, now=last + RETENTION + timedelta(seconds=1), limit=100).firings == []


def test_reading_stops_past_the_limit(store: PlanLog) -> None:
    store.record([firing(f"s{i}", T0 + timedelta(seconds=i)) for i in range(10)], now=T0)
    assert not store.window(T0, T0 + timedelta(minutes=1), now=T0, limit=9).complete
    got = store.window(T0, T0 + timedelta(minutes=1), now=T0, limit=10)
    assert got.complete and len(got.firings) == 10


def test_plan_items_stay_out_of_the_runs_indexes_and_listings(store: PlanLog, backend: str) -> None:
    runs: RunStore
    if backend == "memory":
        runs = MemoryRunStore()
    else:
        from gnomon.adapters.dynamo import DynamoRunStore

        runs = DynamoRunStore()
    store.record([firing("a", T0 + timedelta(seconds=i)) for i in range(50)], now=T0)
    assert runs.list(after=None, limit=100).items == []
    assert all(runs.active(shard, T0 + timedelta(days=1), limit=100) == [] for shard in range(runs.shards))
    if backend == "dynamo":
        (item,) = raw_items(store, backend)
        assert not item["attributes"] & {"time_shard", "time_key", "active_shard", "active_key"}
