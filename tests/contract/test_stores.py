"""The storage contract: every test runs against the in-memory fake and the DynamoDB adapter."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from gnomon.adapters.memory import shard_of
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.ports import (
    CatalogRecord,
    CatalogStore,
    DueEntry,
    Page,
    RequestLog,
    ScheduleRecord,
    ScheduleStore,
)
from tests.contract.helpers import collect_pages, race

T = TypeVar("T")
K = "definition"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def collect(fetch: Callable[[str | None], Page[T]], key: Callable[[T], Any]) -> list[Any]:
    """Every item's key across all pages, in page order."""
    return [k for page in collect_pages(fetch, key) for k in page]


def sched(
    sid: str, *, group: str = "default", definition: str = "d1", at: datetime | None = T0, **doc: Any
) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=sid,
        doc={"schedule_id": sid, **doc},
        generation="g1",
        definition=definition,
        group=group,
        next_fire_at=at,
    )


# --- catalog ------------------------------------------------------------------------------------


def test_catalog_create_get(catalog: CatalogStore) -> None:
    rec = catalog.create(K, "nightly", {"name": "nightly", "n": 1.5, "x": None}, tags=["a"])
    assert (rec.kind, rec.name, rec.version) == (K, "nightly", 1)
    assert rec.doc == {"name": "nightly", "n": 1.5, "x": None}
    got = catalog.get(K, "nightly")
    assert (got.doc, got.version) == (rec.doc, 1)


def test_catalog_create_taken(catalog: CatalogStore) -> None:
    catalog.create(K, "nightly", {"v": 1})
    with pytest.raises(AlreadyExists):
        catalog.create(K, "nightly", {"v": 2})
    assert catalog.get(K, "nightly").doc == {"v": 1}


def test_catalog_get_missing(catalog: CatalogStore) -> None:
    with pytest.raises(NotFound) as err:
        catalog.get(K, "x")
    assert err.value.details == {"resource": "definition/x"}


def test_catalog_docs_are_copies(catalog: CatalogStore) -> None:
    doc: dict[str, Any] = {"list": [1]}
    rec = catalog.create(K, "a", doc)
    doc["list"].append(2)
    rec.doc["list"].append(3)
    got = catalog.get(K, "a")
    got.doc["list"].append(4)
    assert catalog.get(K, "a").doc == {"list": [1]}


def test_catalog_replace_and_versions(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 1})
    rec = catalog.replace(K, "a", {"v": 2}, expected_version=1)
    assert rec.version == 2
    assert catalog.get(K, "a").doc == {"v": 2}
    page = catalog.versions(K, "a", after=None, limit=10)
    assert [(r.version, r.doc) for r in page.items] == [(2, {"v": 2}), (1, {"v": 1})]
    assert page.last_key is None


def test_catalog_replace_stale(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 1})
    catalog.replace(K, "a", {"v": 2}, expected_version=1)
    with pytest.raises(Conflict) as err:
        catalog.replace(K, "a", {"v": 3}, expected_version=1)
    assert err.value.current == {"v": 2, "version": 2}
    assert catalog.get(K, "a").version == 2


def test_catalog_replace_unconditional(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 1})
    catalog.replace(K, "a", {"v": 2}, expected_version=1)
    assert catalog.replace(K, "a", {"v": 3}, expected_version=None).version == 3


def test_catalog_replace_missing(catalog: CatalogStore) -> None:
    for expected in (None, 1):
        with pytest.raises(NotFound):
            catalog.replace(K, "nope", {}, expected_version=expected)


def test_catalog_delete_keeps_audit(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 1})
    catalog.replace(K, "a", {"v": 2}, expected_version=1)
    with pytest.raises(Conflict) as err:
        catalog.delete(K, "a", expected_version=1)
    assert err.value.current == {"v": 2, "version": 2}
    catalog.delete(K, "a", expected_version=2)
    with pytest.raises(NotFound):
        catalog.get(K, "a")
    assert [r.version for r in catalog.versions(K, "a", after=None, limit=10).items] == [2, 1]
    assert catalog.list(K, after=None, limit=10).items == []
    with pytest.raises(NotFound):
        catalog.delete(K, "a")
    with pytest.raises(NotFound):
        catalog.delete(K, "a", expected_version=2)


def versions_page(catalog: CatalogStore, limit: int, after: str | None) -> Page[CatalogRecord]:
    return catalog.versions(K, "a", after=after, limit=limit)


def test_catalog_recreate_starts_at_version_1(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"inc": 1, "v": 1})
    catalog.replace(K, "a", {"inc": 1, "v": 2}, expected_version=1)
    catalog.replace(K, "a", {"inc": 1, "v": 3}, expected_version=2)
    catalog.delete(K, "a")
    rec = catalog.create(K, "a", {"inc": 2, "v": 1})
    assert rec.version == 1
    assert catalog.get(K, "a").version == 1
    # a version of the old incarnation is not the current one
    with pytest.raises(Conflict) as err:
        catalog.replace(K, "a", {}, expected_version=3)
    assert err.value.current == {"inc": 2, "v": 1, "version": 1}
    assert catalog.replace(K, "a", {"inc": 2, "v": 2}, expected_version=1).version == 2
    # the whole trail: this incarnation newest first, then the older one
    expected = [(2, 2), (2, 1), (1, 3), (1, 2), (1, 1)]
    page = catalog.versions(K, "a", after=None, limit=10)
    assert [r.version for r in page.items] == [2, 1, 3, 2, 1]
    assert [(r.doc["inc"], r.doc["v"]) for r in page.items] == expected
    assert page.last_key is None
    for limit in (1, 2, 4):
        docs = collect(functools.partial(versions_page, catalog, limit), lambda r: r.doc)
        assert [(d["inc"], d["v"]) for d in docs] == expected
    # deleted again: the trail stays, a third create starts at 1 again
    catalog.delete(K, "a", expected_version=2)
    assert [r.version for r in catalog.versions(K, "a", after=None, limit=10).items] == [2, 1, 3, 2, 1]
    assert catalog.create(K, "a", {"inc": 3, "v": 1}).version == 1
    assert [r.version for r in catalog.versions(K, "a", after=None, limit=10).items] == [1, 2, 1, 3, 2, 1]


def test_catalog_versions_page_keys(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {})
    catalog.replace(K, "a", {}, expected_version=1)
    catalog.delete(K, "a")
    catalog.create(K, "a", {})
    first = catalog.versions(K, "a", after=None, limit=1)
    assert first.last_key is not None
    # page keys are opaque and unique across incarnations (both trails have a version 1)
    keys: list[str] = []
    after: str | None = None
    while True:
        page = catalog.versions(K, "a", after=after, limit=1)
        if page.last_key is None:
            break
        keys.append(page.last_key)
        after = page.last_key
    assert len(keys) == len(set(keys)) == 2
    with pytest.raises(ValueError):
        catalog.versions(K, "a", after="not-a-key", limit=1)


def test_catalog_versions_missing(catalog: CatalogStore) -> None:
    with pytest.raises(NotFound):
        catalog.versions(K, "never", after=None, limit=10)


def test_catalog_versions_paginated(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 1})
    for v in range(1, 5):
        catalog.replace(K, "a", {"v": v + 1}, expected_version=v)
    versions = collect(lambda after: catalog.versions(K, "a", after=after, limit=2), lambda r: r.version)
    assert versions == [5, 4, 3, 2, 1]


def test_catalog_list_sorted_paginated(catalog: CatalogStore) -> None:
    names = ["echo", "alpha", "delta", "bravo", "charlie"]
    for n in names:
        catalog.create(K, n, {"name": n})
    pages: list[Page[Any]] = []

    def fetch(after: str | None) -> Page[Any]:
        pages.append(catalog.list(K, after=after, limit=2))
        return pages[-1]

    assert collect(fetch, lambda r: r.name) == sorted(names)
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert pages[0].items[0].doc == {"name": "alpha"}
    assert pages[0].items[0].version == 1


def test_catalog_list_tag_filter(catalog: CatalogStore) -> None:
    for i in range(7):
        catalog.create(K, f"n{i}", {}, tags=["even"] if i % 2 == 0 else ["odd", "x"])
    catalog.create(K, "untagged", {})
    evens = collect(lambda after: catalog.list(K, after=after, limit=2, tag="even"), lambda r: r.name)
    assert evens == ["n0", "n2", "n4", "n6"]
    assert collect(lambda after: catalog.list(K, after=after, limit=10, tag="x"), lambda r: r.name) == [
        "n1",
        "n3",
        "n5",
    ]
    assert catalog.list(K, after=None, limit=10, tag="none").items == []
    # a replace replaces the tags too (None = no tags)
    catalog.replace(K, "n0", {}, expected_version=1, tags=[])
    catalog.replace(K, "n2", {}, expected_version=1)
    catalog.replace(K, "n4", {}, expected_version=1, tags=["even"])
    assert catalog.list(K, after=None, limit=1, tag="even").items[0].name == "n4"


def test_catalog_kinds_are_separate(catalog: CatalogStore) -> None:
    catalog.create("definition", "same", {"k": "d"})
    catalog.create("calendar", "same", {"k": "c"})
    catalog.create("calendar", "other", {"k": "c2"})
    assert catalog.get("definition", "same").doc == {"k": "d"}
    assert catalog.get("calendar", "same").doc == {"k": "c"}
    assert [r.name for r in catalog.list("definition", after=None, limit=10).items] == ["same"]
    assert [r.name for r in catalog.list("calendar", after=None, limit=10).items] == ["other", "same"]
    catalog.delete("calendar", "same")
    assert catalog.get("definition", "same").version == 1
    with pytest.raises(NotFound) as err:
        catalog.get("group", "same")
    assert err.value.details == {"resource": "group/same"}


def test_catalog_concurrent_conditional_replace(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 0})
    v = catalog.get(K, "a").version
    results = race(8, lambda i: catalog.replace(K, "a", {"writer": i}, expected_version=v))
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(e, Conflict) for e in losers), losers
    assert catalog.get(K, "a").version == v + 1
    assert [r.version for r in catalog.versions(K, "a", after=None, limit=20).items] == [2, 1]


def test_catalog_concurrent_unconditional_replace(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"v": 0})
    results = race(8, lambda i: catalog.replace(K, "a", {"writer": i}, expected_version=None))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.version for r in results if not isinstance(r, Exception)) == list(range(2, 10))
    assert catalog.get(K, "a").version == 9
    audit = catalog.versions(K, "a", after=None, limit=20).items
    assert [r.version for r in audit] == list(range(9, 0, -1))
    assert sorted(r.doc["writer"] for r in audit[:8]) == list(range(8))


def test_catalog_concurrent_create(catalog: CatalogStore) -> None:
    results = race(8, lambda i: catalog.create(K, "a", {"writer": i}))
    assert len([r for r in results if not isinstance(r, Exception)]) == 1, results
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, Exception))
    assert [r.version for r in catalog.versions(K, "a", after=None, limit=20).items] == [1]


def test_catalog_concurrent_recreate(catalog: CatalogStore) -> None:
    catalog.create(K, "a", {"writer": "first"})
    catalog.replace(K, "a", {"writer": "first"}, expected_version=1)
    catalog.delete(K, "a")
    results = race(8, lambda i: catalog.create(K, "a", {"writer": i}))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1 and winners[0].version == 1, results
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, Exception))
    audit = catalog.versions(K, "a", after=None, limit=20).items
    assert [r.version for r in audit] == [1, 2, 1]
    assert audit[0].doc == winners[0].doc


def test_catalog_replace_races_recreate(catalog: CatalogStore) -> None:
    """Unconditional replaces racing deletes and re-creates: every audit copy lands in the
    incarnation it belongs to, so oldest first the trail reads 1, 2, ..., 1, 2, ... without gaps,
    and the current version is the newest audit entry."""
    catalog.create(K, "a", {"writer": "create"})
    recreates = 3

    def act(i: int) -> int:
        done = 0
        for _ in range(recreates if i == 0 else 4):
            if i == 0:
                catalog.delete(K, "a")
                catalog.create(K, "a", {"writer": "create"})
            else:
                try:
                    catalog.replace(K, "a", {"writer": i}, expected_version=None)
                    done += 1
                except NotFound:
                    pass
        return done

    results = race(6, act)
    assert not [r for r in results if isinstance(r, Exception)], results
    oldest_first = [r.version for r in reversed(catalog.versions(K, "a", after=None, limit=100).items)]
    assert oldest_first[0] == 1
    assert all(b in (1, a + 1) for a, b in zip(oldest_first, oldest_first[1:], strict=False)), oldest_first
    assert oldest_first.count(1) == 1 + recreates
    assert len(oldest_first) == 1 + recreates + sum(r for r in results if isinstance(r, int))
    assert catalog.get(K, "a").version == oldest_first[-1]


# --- schedules ----------------------------------------------------------------------------------


def test_schedule_create_get(schedules: ScheduleStore) -> None:
    rec = schedules.create(sched("s1", note="hi"))
    assert rec.version == 1
    assert rec.doc == {"schedule_id": "s1", "note": "hi"}
    got = schedules.get("s1")
    assert (got.version, got.doc, got.generation, got.definition, got.group) == (
        1,
        {"schedule_id": "s1", "note": "hi"},
        "g1",
        "d1",
        "default",
    )
    assert got.next_fire_at == T0
    assert dict(got.counters) == {}
    assert schedules.get("s1", consistent=False) == got  # moto, like the fake, answers the newest
    with pytest.raises(AlreadyExists):
        schedules.create(sched("s1"))


def test_schedule_get_missing(schedules: ScheduleStore) -> None:
    with pytest.raises(NotFound) as err:
        schedules.get("nope")
    assert err.value.details == {"resource": "schedule/nope"}
    with pytest.raises(NotFound):
        schedules.get("nope", consistent=False)


def test_schedule_next_fire_at_milliseconds_utc(schedules: ScheduleStore) -> None:
    local = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    rec = schedules.create(sched("s1", at=local))
    expected = datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert rec.next_fire_at == expected
    assert schedules.get("s1").next_fire_at == expected


def test_schedule_update_versions(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    rec = schedules.update(sched("s1", group="g2", definition="d2", v=2), expected_version=1)
    assert rec.version == 2
    got = schedules.get("s1")
    assert (got.version, got.group, got.definition, got.doc["v"]) == (2, "g2", "d2", 2)
    assert schedules.update(sched("s1", v=3), expected_version=None).version == 3


def test_schedule_update_stale(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    schedules.update(sched("s1", v=2), expected_version=1)
    with pytest.raises(Conflict) as err:
        schedules.update(sched("s1", v=3), expected_version=1)
    assert err.value.current == {"schedule_id": "s1", "v": 2, "version": 2}
    assert schedules.get("s1").doc["v"] == 2


def test_schedule_update_delete_missing(schedules: ScheduleStore) -> None:
    for expected in (None, 1):
        with pytest.raises(NotFound):
            schedules.update(sched("nope"), expected_version=expected)
        with pytest.raises(NotFound):
            schedules.delete("nope", expected_version=expected)


def test_schedule_delete(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    schedules.update(sched("s1"), expected_version=1)
    with pytest.raises(Conflict) as err:
        schedules.delete("s1", expected_version=1)
    assert err.value.current is not None and err.value.current["version"] == 2
    schedules.delete("s1", expected_version=2)
    with pytest.raises(NotFound):
        schedules.get("s1")
    assert schedules.list(after=None, limit=10).items == []
    assert schedules.due(shard_of("s1", schedules.shards), T0, limit=10) == []
    assert schedules.create(sched("s1")).version == 1


def test_schedule_docs_are_copies(schedules: ScheduleStore) -> None:
    rec = sched("s1", items=[1])
    out = schedules.create(rec)
    rec.doc["items"].append(2)
    out.doc["items"].append(3)
    assert schedules.get("s1").doc["items"] == [1]


def test_schedule_list(schedules: ScheduleStore) -> None:
    layout = {
        "s05": ("ga", "d1"),
        "s01": ("gb", "d1"),
        "s04": ("ga", "d2"),
        "s02": ("ga", "d1"),
        "s03": ("gb", "d2"),
        "s06": ("ga", "d1"),
    }
    for sid, (group, definition) in layout.items():
        schedules.create(sched(sid, group=group, definition=definition))

    def ids(**filters: str) -> list[str]:
        return collect(lambda after: schedules.list(after=after, limit=2, **filters), lambda r: r.schedule_id)

    assert ids() == sorted(layout)
    assert ids(group="ga") == ["s02", "s04", "s05", "s06"]
    assert ids(definition="d2") == ["s03", "s04"]
    assert ids(group="ga", definition="d1") == ["s02", "s05", "s06"]
    assert ids(group="gz") == []
    first = schedules.list(after=None, limit=2, group="ga")
    assert [r.schedule_id for r in first.items] == ["s02", "s04"] and first.last_key == "s04"
    assert first.items[0].doc == {"schedule_id": "s02"} and first.items[0].version == 1
    last = schedules.list(after="s05", limit=2, group="ga")
    assert [r.schedule_id for r in last.items] == ["s06"] and last.last_key is None
    # moving a schedule to another group moves it between lists
    schedules.update(sched("s01", group="ga"), expected_version=1)
    assert ids(group="ga") == ["s01", "s02", "s04", "s05", "s06"]
    assert ids(group="gb") == ["s03"]


def test_schedule_list_many(schedules: ScheduleStore) -> None:
    for i in range(130):
        schedules.create(sched(f"s{i:03d}", group="even" if i % 2 == 0 else "odd"))
    assert collect(lambda a: schedules.list(after=a, limit=120), lambda r: r.schedule_id) == [
        f"s{i:03d}" for i in range(130)
    ]
    page = schedules.list(after=None, limit=1000, group="odd", definition="d1")
    assert [r.schedule_id for r in page.items] == [f"s{i:03d}" for i in range(1, 130, 2)]
    assert page.last_key is None


def test_ids_using_definition(schedules: ScheduleStore) -> None:
    for sid, d in [("c", "d1"), ("a", "d1"), ("b", "d2"), ("d", "d1")]:
        schedules.create(sched(sid, definition=d))
    assert schedules.ids_using_definition("d1", limit=10) == ["a", "c", "d"]
    assert schedules.ids_using_definition("d1", limit=2) == ["a", "c"]
    assert schedules.ids_using_definition("d9", limit=10) == []


def test_due(schedules: ScheduleStore) -> None:
    n = 40
    times = {f"s{i:02d}": T0 + timedelta(minutes=(i * 7) % 13) for i in range(n)}
    for sid, t in times.items():
        schedules.create(sched(sid, at=t))
    schedules.create(sched("paused", at=None))
    until = T0 + timedelta(minutes=6)
    union: list[DueEntry] = []
    for shard in range(schedules.shards):
        entries = schedules.due(shard, until, limit=1000)
        assert all(shard_of(e.schedule_id, schedules.shards) == shard for e in entries)
        assert entries == sorted(entries, key=lambda e: (e.next_fire_at, e.schedule_id))
        assert all(e.next_fire_at <= until for e in entries)
        union += entries
    expected = {(sid, t) for sid, t in times.items() if t <= until}
    assert {(e.schedule_id, e.next_fire_at) for e in union} == expected
    assert len(union) == len(expected)


def test_phase_index_entries_by_period_shard_and_phase(schedules: ScheduleStore) -> None:
    from dataclasses import replace

    ids = [sid for sid in (f"p{i}" for i in range(400)) if shard_of(sid, schedules.shards) == 0][:6]
    phases = [0, 0, 59, 1800, 3599, 1800]
    for sid, ph in zip(ids, phases, strict=True):
        schedules.create(replace(sched(sid, at=None), phase=(3600, ph), phase_plan=[sid, 1, None]))
    schedules.create(replace(sched("other-period", at=None), phase=(60, 0)))
    schedules.create(sched("none", at=T0))
    every = schedules.phased(3600, 0, 0, 3599, limit=100)
    assert [(e.phase, e.schedule_id) for e in every] == sorted(zip(phases, ids, strict=True))
    assert schedules.phased(3600, 0, 1, 1799, limit=100) == [e for e in every if e.phase == 59]
    assert [e.phase for e in schedules.phased(3600, 0, 1800, 1800, limit=100)] == [1800, 1800]
    assert schedules.get(ids[0]).phase == (3600, 0)
    # the entries carry their plan (projected into the index)
    assert all(
        e.plan == [e.schedule_id, 1, None] and e.generation == "g1" and e.definition == "d1" for e in every
    )
    assert schedules.get(ids[0]).phase_plan == [ids[0], 1, None]
    # paging with `after`
    got, after = [], None
    while page := schedules.phased(3600, 0, 0, 3599, limit=2, after=after):
        got += page
        after = page[-1]
    assert got == every
    # a write without a phase takes the entry out; another phase moves it
    rec = schedules.get(ids[2])
    schedules.update(replace(rec, phase=None, phase_plan=None), expected_version=rec.version)
    rec = schedules.get(ids[3])
    schedules.update(replace(rec, phase=(3600, 7)), expected_version=rec.version)
    assert [(e.phase, e.schedule_id) for e in schedules.phased(3600, 0, 0, 3599, limit=100)] == sorted(
        [(0, ids[0]), (0, ids[1]), (7, ids[3]), (3599, ids[4]), (1800, ids[5])]
    )
    assert schedules.get(ids[2]).phase is None and schedules.get(ids[2]).phase_plan is None


def test_phase_periods_and_watermarks(schedules: ScheduleStore) -> None:
    assert schedules.phase_periods() == set()
    schedules.add_phase_period(3600)
    schedules.add_phase_period(60)
    schedules.add_phase_period(3600)
    assert schedules.phase_periods() == {60, 3600}
    assert schedules.phase_marks([60, 3600]) == {}
    assert schedules.advance_phase_marks(60, {0: (None, T0), 3: (None, T0)})
    assert not schedules.advance_phase_marks(60, {0: (None, T0 + timedelta(minutes=1))})
    later = T0 + timedelta(minutes=15, milliseconds=250)
    # all or nothing: one shard not where expected moves none
    assert not schedules.advance_phase_marks(60, {0: (T0, later), 3: (later, later)})
    assert schedules.phase_marks([60]) == {(60, 0): T0, (60, 3): T0}
    assert schedules.advance_phase_marks(60, {0: (T0, later), 1: (None, later)})
    assert not schedules.advance_phase_marks(60, {0: (T0, later)})
    assert schedules.advance_phase_marks(3600, {})
    assert schedules.phase_marks([60, 3600]) == {(60, 0): later, (60, 1): later, (60, 3): T0}
    assert schedules.phase_marks([3600]) == {}
    # the bookkeeping is no schedule
    assert schedules.list(after=None, limit=100).items == []


def test_due_bounds_and_paging(schedules: ScheduleStore) -> None:
    # all in one shard: ids chosen to land on shard 0
    ids = [sid for sid in (f"x{i}" for i in range(200)) if shard_of(sid, schedules.shards) == 0][:5]
    at = [T0, T0, T0 + timedelta(seconds=1), T0 + timedelta(milliseconds=1500), T0 + timedelta(seconds=2)]
    for sid, t in zip(ids, at, strict=True):
        schedules.create(sched(sid, at=t))
    every = schedules.due(0, T0 + timedelta(seconds=2), limit=100)
    assert [e.next_fire_at for e in every] == at
    assert [e.schedule_id for e in every[:2]] == sorted(ids[:2])
    # the bound is inclusive, to the millisecond
    assert len(schedules.due(0, T0 + timedelta(seconds=1), limit=100)) == 3
    assert len(schedules.due(0, T0, limit=100)) == 2
    assert schedules.due(0, T0 - timedelta(milliseconds=1), limit=100) == []
    # paging with `after`
    got: list[DueEntry] = []
    after: DueEntry | None = None
    while True:
        page = schedules.due(0, T0 + timedelta(seconds=2), limit=2, after=after)
        if not page:
            break
        got += page
        after = page[-1]
    assert got == every
    assert schedules.due(0, T0, limit=10, after=every[-1]) == []


def test_due_follows_updates(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1", at=T0))
    shard = shard_of("s1", schedules.shards)
    assert [e.schedule_id for e in schedules.due(shard, T0, limit=10)] == ["s1"]
    schedules.update(sched("s1", at=None), expected_version=1)
    assert schedules.due(shard, T0 + timedelta(days=365), limit=10) == []
    assert schedules.get("s1").next_fire_at is None
    later = T0 + timedelta(hours=1)
    schedules.update(sched("s1", at=later), expected_version=2)
    assert schedules.due(shard, T0, limit=10) == []
    assert schedules.due(shard, later, limit=10) == [DueEntry("s1", later)]


def test_add_counters(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    schedules.add_counters("s1", {"fired": 1, "skipped_paused": 2})
    schedules.add_counters("s1", {"fired": 3})
    schedules.add_counters("s1", {})
    got = schedules.get("s1")
    assert dict(got.counters) == {"fired": 4, "skipped_paused": 2}
    assert got.version == 1
    # an update keeps counters
    rec = schedules.update(sched("s1", v=2), expected_version=1)
    assert dict(rec.counters) == {"fired": 4, "skipped_paused": 2}
    # a missing schedule is a no-op
    schedules.add_counters("nope", {"fired": 1})
    with pytest.raises(NotFound):
        schedules.get("nope")


def test_update_adds_counters_in_the_same_conditional_write(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    schedules.add_counters("s1", {"actions": 2})
    rec = schedules.update(sched("s1", v=2), expected_version=1, counters={"actions": 1, "other": 3})
    assert dict(rec.counters) == {"actions": 3, "other": 3} and rec.version == 2
    with pytest.raises(Conflict):  # a failed condition adds nothing
        schedules.update(sched("s1", v=3), expected_version=1, counters={"actions": 1})
    assert dict(schedules.get("s1").counters) == {"actions": 3, "other": 3}


def test_add_counters_concurrent(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    results = race(8, lambda i: schedules.add_counters("s1", {"fired": 1, f"w{i % 2}": 1}))
    assert not [r for r in results if isinstance(r, Exception)], results
    got = schedules.get("s1")
    assert dict(got.counters) == {"fired": 8, "w0": 4, "w1": 4}
    assert got.version == 1


def test_schedule_concurrent_conditional_update(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    v = schedules.get("s1").version
    results = race(8, lambda i: schedules.update(sched("s1", writer=i), expected_version=v))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))
    assert schedules.get("s1").version == v + 1


def test_schedule_concurrent_unconditional_update(schedules: ScheduleStore) -> None:
    schedules.create(sched("s1"))
    results = race(8, lambda i: schedules.update(sched("s1", writer=i), expected_version=None))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.version for r in results if not isinstance(r, Exception)) == list(range(2, 10))
    assert schedules.get("s1").version == 9


# --- request log --------------------------------------------------------------------------------


def test_request_log(requests_log: RequestLog) -> None:
    exp = T0 + timedelta(days=1)
    assert requests_log.claim("r1", "fp1", now=T0, expires_at=exp) is None
    again = requests_log.claim("r1", "fp2", now=T0, expires_at=exp)
    assert again is not None
    assert (again.key, again.fingerprint, again.status, again.body) == ("r1", "fp1", None, None)
    requests_log.complete("r1", 201, {"id": "x", "n": [1, 2]})
    done = requests_log.claim("r1", "fp1", now=T0, expires_at=exp)
    assert done is not None
    assert (done.fingerprint, done.status, done.body) == ("fp1", 201, {"id": "x", "n": [1, 2]})
    # a completed answer is not released
    requests_log.release("r1")
    kept = requests_log.claim("r1", "fp1", now=T0, expires_at=exp)
    assert kept is not None and kept.status == 201


def test_request_log_release(requests_log: RequestLog) -> None:
    exp = T0 + timedelta(days=1)
    assert requests_log.claim("r1", "fp1", now=T0, expires_at=exp) is None
    requests_log.release("r1")
    assert requests_log.claim("r1", "fp2", now=T0, expires_at=exp) is None
    entry = requests_log.claim("r1", "fp3", now=T0, expires_at=exp)
    assert entry is not None and entry.fingerprint == "fp2"
    requests_log.release("never-claimed")
    requests_log.complete("never-claimed", 200, {})
    assert requests_log.claim("never-claimed", "fp", now=T0, expires_at=exp) is None


def test_request_log_expired_claim(requests_log: RequestLog) -> None:
    exp = T0 + timedelta(seconds=10)
    assert requests_log.claim("r1", "fp1", now=T0, expires_at=exp) is None
    # not expired up to and including `expires_at` (whole seconds, DynamoDB's TTL precision)
    for now in (exp - timedelta(seconds=1), exp, exp + timedelta(milliseconds=999)):
        entry = requests_log.claim("r1", "fp2", now=now, expires_at=now + timedelta(seconds=10))
        assert entry is not None and entry.fingerprint == "fp1", now
    # expired: absent, so another fingerprint claims it afresh
    later = exp + timedelta(seconds=1)
    assert requests_log.claim("r1", "fp2", now=later, expires_at=later + timedelta(seconds=10)) is None
    entry = requests_log.claim("r1", "fp3", now=later, expires_at=later + timedelta(seconds=10))
    assert entry is not None and (entry.fingerprint, entry.status, entry.body) == ("fp2", None, None)
    # an expired completed answer is gone too
    requests_log.complete("r1", 201, {"id": "x"})
    done = requests_log.claim("r1", "fp2", now=later, expires_at=later)
    assert done is not None and done.status == 201
    much_later = later + timedelta(days=2)
    assert requests_log.claim("r1", "fp4", now=much_later, expires_at=much_later + timedelta(days=1)) is None
    fresh = requests_log.claim("r1", "fp4", now=much_later, expires_at=much_later)
    assert fresh is not None and (fresh.fingerprint, fresh.status, fresh.body) == ("fp4", None, None)


def test_request_log_concurrent_claim_of_expired(requests_log: RequestLog) -> None:
    assert requests_log.claim("r1", "old", now=T0, expires_at=T0 + timedelta(hours=1)) is None
    now = T0 + timedelta(days=1)
    exp = now + timedelta(days=1)
    results = race(8, lambda i: requests_log.claim("r1", f"fp{i}", now=now, expires_at=exp))
    assert sum(r is None for r in results) == 1, results
    owner = [i for i, r in enumerate(results) if r is None][0]
    others = [r for r in results if r is not None]
    assert all(not isinstance(r, Exception) and r.fingerprint == f"fp{owner}" for r in others), results


def test_request_log_concurrent_claim(requests_log: RequestLog) -> None:
    exp = T0 + timedelta(days=1)
    results = race(8, lambda i: requests_log.claim("r1", f"fp{i}", now=T0, expires_at=exp))
    assert sum(r is None for r in results) == 1, results
    owner = [i for i, r in enumerate(results) if r is None][0]
    assert all(
        r.fingerprint == f"fp{owner}" for r in results if r is not None and not isinstance(r, Exception)
    )


# --- the DynamoDB item layout the SAM template and other readers rely on ------------------------


def test_dynamo_item_layout(aws: None) -> None:
    import os

    import boto3

    from gnomon.adapters.dynamo import DynamoCatalogStore, DynamoScheduleStore

    ddb = boto3.client("dynamodb")
    catalog, schedules = DynamoCatalogStore(), DynamoScheduleStore(shards=4)
    catalog.create(K, "a", {"v": 1}, tags=["t1", "t2"])
    catalog.replace(K, "a", {"v": 2}, expected_version=1, tags=["t1", "t2"])
    table = os.environ["GNOMON_CATALOG_TABLE"]
    cur = ddb.get_item(TableName=table, Key={"pk": {"S": "definition#a"}, "sk": {"S": "cur"}})["Item"]
    assert cur["kind"] == {"S": "definition"} and cur["name"] == {"S": "a"}
    assert cur["version"] == {"N": "2"} and cur["doc"] == {"S": '{"v": 2}'}
    assert sorted(cur["tags"]["SS"]) == ["t1", "t2"]

    def audit_sks() -> list[str]:
        items = ddb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
            ExpressionAttributeValues={":pk": {"S": "definition#a"}, ":v": {"S": "v#"}},
        )["Items"]
        return [i["sk"]["S"] for i in items]

    audit = ddb.get_item(
        TableName=table, Key={"pk": {"S": "definition#a"}, "sk": {"S": "v#0000000001#0000000001"}}
    )["Item"]
    assert "kind" not in audit and "name" not in audit and audit["version"] == {"N": "1"}
    assert audit_sks() == ["v#0000000001#0000000001", "v#0000000001#0000000002"]
    catalog.delete(K, "a")
    catalog.create(K, "a", {"v": 1})
    assert audit_sks() == ["v#0000000001#0000000001", "v#0000000001#0000000002", "v#0000000002#0000000001"]

    schedules.create(sched("s1", at=T0))
    schedules.add_counters("s1", {"fired": 2})
    table = os.environ["GNOMON_SCHEDULES_TABLE"]
    item = ddb.get_item(TableName=table, Key={"schedule_id": {"S": "s1"}})["Item"]
    assert item["due_shard"] == {"S": str(shard_of("s1", 4))}
    assert item["due_key"] == {"S": "2026-12-01T10:00:00.000Z#s1"}
    assert item["kind"] == {"S": "schedule"} and item["group"] == {"S": "default"}
    assert item["counters"] == {"M": {"fired": {"N": "2"}}}
    schedules.update(sched("s1", at=None), expected_version=1)
    item = ddb.get_item(TableName=table, Key={"schedule_id": {"S": "s1"}})["Item"]
    assert "due_shard" not in item and "due_key" not in item


@pytest.mark.parametrize("expected_version", [None, 1])
def test_dynamo_replace_between_read_and_recreate(
    aws: None, monkeypatch: pytest.MonkeyPatch, expected_version: int | None
) -> None:
    """The name is deleted and re-created between a replace's read and its write: the replace
    must land in the new incarnation (its condition pins the incarnation, not only the version)."""
    from gnomon.adapters.dynamo import DynamoCatalogStore

    store, other = DynamoCatalogStore(), DynamoCatalogStore()
    store.create(K, "a", {"inc": 1, "v": 1})
    read = store._read
    interfered: list[bool] = []

    def read_then_recreate(kind: str, name: str) -> Any:
        cur = read(kind, name)
        if not interfered:
            interfered.append(True)
            other.delete(K, "a")
            other.create(K, "a", {"inc": 2, "v": 1})
        return cur

    monkeypatch.setattr(store, "_read", read_then_recreate)
    rec = store.replace(K, "a", {"inc": 2, "v": 2}, expected_version=expected_version)
    assert interfered and rec.version == 2
    audit = store.versions(K, "a", after=None, limit=10).items
    assert [(r.version, r.doc) for r in audit] == [
        (2, {"inc": 2, "v": 2}),
        (1, {"inc": 2, "v": 1}),
        (1, {"inc": 1, "v": 1}),
    ]
