"""The run store's contract: every test runs against the in-memory fake and the DynamoDB adapter
(except the item layout test at the end, which is DynamoDB's own)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.adapters.memory import TIME_SHARDS, shard_of, split_run_time_key
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.runs import parse_scheduled_run_id, scheduled_run_id
from gnomon.ports import Page, RunRecord, RunSample, RunStore
from tests.contract.helpers import collect_pages as collect
from tests.contract.helpers import race

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def run(
    run_id: str,
    *,
    schedule_id: str | None = None,
    definition: str = "d1",
    nominal: datetime = T0,
    status: str = "pending",
    active_at: datetime | None = None,
    expires_at: datetime | None = None,
    **doc: Any,
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        doc={"run_id": run_id, "status": status, **doc},
        schedule_id=schedule_id,
        definition=definition,
        nominal_time=nominal,
        status=status,
        active_at=active_at,
        expires_at=expires_at,
    )


def fired(schedule_id: str, nominal: datetime, **kw: Any) -> RunRecord:
    """A scheduled firing's run (its id encodes schedule and nominal time)."""
    return run(scheduled_run_id(schedule_id, "g1", nominal), schedule_id=schedule_id, nominal=nominal, **kw)


def newest_first(recs: list[RunRecord]) -> list[str]:
    return [r.run_id for r in sorted(recs, key=lambda r: (r.nominal_time, r.run_id), reverse=True)]


def ids(page: Page[RunRecord]) -> list[str]:
    return [r.run_id for r in page.items]


# --- create / get / update ----------------------------------------------------------------------


def test_create_get_scheduled_firing(runs: RunStore) -> None:
    nominal = T0 + timedelta(microseconds=1500)  # kept to the millisecond
    rec = fired(
        "nightly",
        nominal,
        status="running",
        active_at=T0 + timedelta(minutes=5, microseconds=2500),
        expires_at=T0 + timedelta(days=30, milliseconds=900),
        n=1.5,
        x=None,
    )
    assert parse_scheduled_run_id(rec.run_id) is not None
    created = runs.create(rec)
    assert created.version == 1
    assert created.doc == {"run_id": rec.run_id, "status": "running", "n": 1.5, "x": None}
    assert (created.schedule_id, created.definition, created.status) == ("nightly", "d1", "running")
    assert created.nominal_time == T0 + timedelta(milliseconds=1)
    assert created.active_at == T0 + timedelta(minutes=5, milliseconds=2)
    assert created.expires_at == T0 + timedelta(days=30)  # whole seconds (the TTL attribute)
    assert runs.get(rec.run_id) == created


@pytest.mark.parametrize(
    ("run_id", "schedule_id"),
    [("job-1234", None), ("sched-t-0123456789ab", "sched")],
    ids=["execute", "trigger"],
)
def test_create_get_other_ids(runs: RunStore, run_id: str, schedule_id: str | None) -> None:
    assert parse_scheduled_run_id(run_id) is None
    created = runs.create(run(run_id, schedule_id=schedule_id, definition="d7"))
    assert (created.run_id, created.schedule_id, created.definition, created.version) == (
        run_id,
        schedule_id,
        "d7",
        1,
    )
    assert created.active_at is None and created.expires_at is None
    assert runs.get(run_id) == created
    with pytest.raises(NotFound) as e:
        runs.get(run_id + "x")
    assert e.value.details == {"resource": f"run/{run_id}x"}


def test_get_missing(runs: RunStore) -> None:
    for run_id in ("job-1", scheduled_run_id("nightly", "g1", T0)):
        with pytest.raises(NotFound) as e:
            runs.get(run_id)
        assert e.value.details == {"resource": f"run/{run_id}"}


@pytest.mark.parametrize("kind", ["scheduled", "execute", "trigger"])
def test_create_duplicate(runs: RunStore, kind: str) -> None:
    if kind == "scheduled":
        first, again = fired("nightly", T0, status="running"), fired("nightly", T0, writer=2)
    elif kind == "execute":
        # the same id with another definition (another partition): the pointer makes it a duplicate
        first, again = run("job-1", status="running"), run("job-1", definition="d2", writer=2)
    else:
        first, again = (
            run("s-t-1", schedule_id="s", status="running"),
            run("s-t-1", nominal=T0 + timedelta(hours=1)),
        )
    stored = runs.create(first)
    with pytest.raises(AlreadyExists) as e:
        runs.create(again)
    assert e.value.details == {"current": stored.doc}
    assert runs.get(first.run_id) == stored


def test_create_refuses_a_misplaced_scheduled_id(runs: RunStore) -> None:
    good = fired("nightly", T0)
    for bad in (
        run(good.run_id, schedule_id="other", nominal=T0),
        run(good.run_id, schedule_id=None, nominal=T0),
        run(good.run_id, schedule_id="nightly", nominal=T0 + timedelta(seconds=1)),
        run("", schedule_id=None),
        run("job-1", schedule_id=""),
        run("job-1", definition=""),
    ):
        with pytest.raises(ValueError):
            runs.create(bad)
    with pytest.raises(ValueError):
        runs.create(run("job-1", nominal=datetime(2026, 1, 1)))  # naive


def test_docs_are_copies(runs: RunStore) -> None:
    rec = run("job-1", items=[1])
    runs.create(rec)
    rec.doc["items"].append(2)
    got = runs.get("job-1")
    got.doc["items"].append(3)
    assert runs.get("job-1").doc["items"] == [1]


@pytest.mark.parametrize("run_id", ["job-1", "s-t-1", "scheduled"])
def test_update(runs: RunStore, run_id: str) -> None:
    base = (
        fired("s", T0) if run_id == "scheduled" else run(run_id, schedule_id="s" if "-t-" in run_id else None)
    )
    created = runs.create(base)
    new = RunRecord(
        run_id=created.run_id,
        doc={"status": "running", "attempts": [{"n": 1}]},
        schedule_id=created.schedule_id,
        definition=created.definition,
        nominal_time=created.nominal_time,
        status="running",
        active_at=T0 + timedelta(minutes=1),
        expires_at=T0 + timedelta(days=1),
    )
    updated = runs.update(new, expected_version=1)
    assert updated.version == 2
    assert (updated.doc, updated.status) == (new.doc, "running")
    assert (updated.active_at, updated.expires_at) == (new.active_at, new.expires_at)
    assert updated.nominal_time == created.nominal_time
    assert runs.get(created.run_id) == updated
    # back to inactive, no expiry
    closed = runs.update(
        RunRecord(**{**new.__dict__, "status": "completed", "active_at": None, "expires_at": None}),
        expected_version=2,
    )
    assert (closed.version, closed.status, closed.active_at, closed.expires_at) == (
        3,
        "completed",
        None,
        None,
    )
    with pytest.raises(Conflict) as e:
        runs.update(new, expected_version=2)
    assert e.value.current == {**new.doc, "version": 3}
    assert runs.get(created.run_id) == closed


def test_update_missing(runs: RunStore) -> None:
    for rec in (run("job-1"), fired("s", T0), run("s-t-1", schedule_id="s")):
        with pytest.raises(NotFound) as e:
            runs.update(rec, expected_version=1)
        assert e.value.details == {"resource": f"run/{rec.run_id}"}


def test_update_may_not_move_a_run(runs: RunStore) -> None:
    runs.create(run("job-1", definition="d1"))
    runs.create(fired("s", T0, definition="d1"))
    for moved in (
        run("job-1", definition="d2"),
        run("job-1", schedule_id="s"),
        run("job-1", nominal=T0 + timedelta(hours=1)),
        fired("s", T0, definition="d2"),
    ):
        with pytest.raises(ValueError):
            runs.update(moved, expected_version=1)
    assert runs.get("job-1").version == 1


@pytest.mark.parametrize("run_id", ["job-1", "s-t-1", "scheduled"])
def test_concurrent_create(runs: RunStore, run_id: str) -> None:
    def make(i: int) -> RunRecord:
        if run_id == "scheduled":
            return fired("s", T0, writer=i)
        # different definitions: different partitions for the executes, one pointer
        return run(run_id, schedule_id="s" if "-t-" in run_id else None, definition=f"d{i}", writer=i)

    results = race(8, lambda i: runs.create(make(i)))
    winners = [r for r in results if isinstance(r, RunRecord)]
    assert len(winners) == 1, results
    losers = [r for r in results if not isinstance(r, RunRecord)]
    assert all(isinstance(r, AlreadyExists) for r in losers), results
    assert all(isinstance(r, AlreadyExists) and r.details == {"current": winners[0].doc} for r in losers)
    assert runs.get(winners[0].run_id) == winners[0]
    assert len(runs.list(after=None, limit=100).items) == 1


def test_concurrent_update(runs: RunStore) -> None:
    created = runs.create(run("job-1"))
    results = race(
        8,
        lambda i: runs.update(run("job-1", status="running", writer=i), expected_version=created.version),
    )
    winners = [r for r in results if isinstance(r, RunRecord)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, RunRecord)), results
    got = runs.get("job-1")
    assert got.version == 2 and got.doc == winners[0].doc


# --- lists --------------------------------------------------------------------------------------


def schedule_runs(runs: RunStore) -> list[RunRecord]:
    """7 runs of schedule s1 (six firings an hour apart, one manual trigger tied with the 3rd),
    plus runs elsewhere that its lists must not show."""
    statuses = ["completed", "failed", "completed", "running", "completed", "skipped"]
    mine = [fired("s1", T0 + timedelta(hours=i), status=statuses[i]) for i in range(6)]
    mine.append(
        run("s1-t-000000000001", schedule_id="s1", nominal=T0 + timedelta(hours=2), status="completed")
    )
    others = [
        fired("s10", T0 + timedelta(hours=1)),
        fired("s", T0),
        run("job-1", nominal=T0 + timedelta(hours=3)),
        run("s10-t-1", schedule_id="s10", nominal=T0),
    ]
    for rec in mine + others:
        runs.create(rec)
    return mine


def test_list_by_schedule(runs: RunStore) -> None:
    mine = schedule_runs(runs)
    expected = newest_first(mine)
    assert expected[3:5] == sorted([mine[2].run_id, mine[6].run_id], reverse=True)  # a tie, by run id

    def fetch(after: str | None, **kw: Any) -> Page[RunRecord]:
        return runs.list(schedule_id="s1", after=after, limit=2, **kw)

    pages = collect(fetch, lambda r: r.run_id)
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert sum(pages, []) == expected
    assert runs.list(schedule_id="s1", after=None, limit=7).last_key is None
    assert runs.list(schedule_id="s1", after=None, limit=6).last_key is not None

    # start inclusive, end exclusive
    window = [r for r in mine if T0 + timedelta(hours=1) <= r.nominal_time < T0 + timedelta(hours=4)]
    bounded = collect(
        lambda a: fetch(a, start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=4)), lambda r: r.run_id
    )
    assert sum(bounded, []) == newest_first(window) and len(window) == 4
    # bounds between milliseconds: the stored nominal time is whole milliseconds
    just_after = T0 + timedelta(hours=1, microseconds=1)
    assert ids(fetch(None, start=T0, end=just_after)) == newest_first(mine[1:2] + mine[:1])
    assert ids(runs.list(schedule_id="s1", start=just_after, after=None, limit=100)) == expected[:-2]

    completed = [r for r in mine if r.status == "completed"]
    by_status = collect(lambda a: fetch(a, statuses=["completed"]), lambda r: r.run_id)
    assert [len(p) for p in by_status] == [2, 2]
    assert sum(by_status, []) == newest_first(completed)
    two = collect(
        lambda a: fetch(a, statuses=["failed", "running"], definition="d1", end=T0 + timedelta(hours=5)),
        lambda r: r.run_id,
    )
    assert two == [newest_first([mine[1], mine[3]])]
    assert runs.list(schedule_id="s1", definition="d2", after=None, limit=5) == Page([], None)
    assert runs.list(schedule_id="s1", statuses=[], after=None, limit=5) == Page([], None)
    assert runs.list(schedule_id="nope", after=None, limit=5) == Page([], None)
    assert runs.list(schedule_id="s1", start=T0 + timedelta(hours=3), end=T0, after=None, limit=5) == Page(
        [], None
    )


def test_list_items_are_full_records(runs: RunStore) -> None:
    created = runs.create(
        run("job-1", status="running", active_at=T0, expires_at=T0 + timedelta(days=3), n=2)
    )
    trig = runs.create(run("s-t-1", schedule_id="s", nominal=T0 - timedelta(hours=1)))
    assert runs.list(after=None, limit=5).items == [created, trig]
    assert runs.list(definition="d1", statuses=["running"], after=None, limit=5).items == [created]
    assert runs.list(schedule_id="s", after=None, limit=5).items == [trig]


def test_list_page_key_must_be_one_handed_out(runs: RunStore) -> None:
    for bad in ("x", "2026-12-01T10:00:00.000Z", "2026-12-01T10:00:00Z#a"):
        with pytest.raises(ValueError):
            runs.list(after=bad, limit=5)
        with pytest.raises(ValueError):
            runs.list(schedule_id="s", after=bad, limit=5)
    with pytest.raises(ValueError):
        runs.list(after=None, limit=0)


def many_runs(runs: RunStore) -> list[RunRecord]:
    recs = many_records()
    for rec in recs:
        runs.create(rec)
    return recs


def many_records() -> list[RunRecord]:
    """Runs of two definitions: firings of two schedules, executes and triggers, with ties on
    nominal time, spread over every `by_time` shard."""
    recs: list[RunRecord] = []
    statuses = ["completed", "failed", "running", "pending"]
    for i in range(6):
        t = T0 + timedelta(minutes=10 * i)
        recs.append(fired("a", t, definition="d1", status=statuses[i % 4]))
        recs.append(
            fired("b", t + timedelta(minutes=5 * (i % 2)), definition="d2", status=statuses[(i + 1) % 4])
        )
    for i in range(8):
        t = T0 + timedelta(minutes=10 * (i % 5), milliseconds=i % 2)
        recs.append(
            run(f"job-{i:04d}", definition="d1" if i % 3 else "d2", nominal=t, status=statuses[i % 4])
        )
    recs += [
        run(f"a-t-{i:012d}", schedule_id="a", definition="d1", nominal=T0 + timedelta(minutes=20 * i))
        for i in range(4)
    ]
    assert {shard_of(r.run_id, TIME_SHARDS) for r in recs} == set(range(TIME_SHARDS))
    return recs


def test_list_all_and_by_definition(runs: RunStore) -> None:
    _check_lists_across_schedules(runs, many_runs(runs))


def paged_runs(runs: RunStore) -> list[RunRecord]:
    """`many_runs`, with the scheduled firings (and two more, hours apart) created by worker
    batches (`listed_together`): batches of one to five firings, one with firings that never
    become runs, one whose firings lie hours apart (several pages), one that meets a run an
    earlier batch made (the run is on two pages), and runs of a definition kept longer than the
    page they would be on (their own `by_time` entry)."""
    recs = many_records()
    firings = [r for r in recs if parse_scheduled_run_id(r.run_id) is not None]
    firings += [
        fired("c", T0 - timedelta(hours=3), definition="d1", status="completed"),
        fired("c", T0 + timedelta(hours=2), definition="d2", status="failed"),
    ]
    for rec in recs:
        if rec not in firings:
            runs.create(rec)
    never = [fired("z", T0 + timedelta(minutes=i)).run_id for i in range(3)]
    kept = {"d1": 30, "d2": 90}  # d2's runs outlive a page written for d1's

    def batch(members: list[RunRecord], extra: list[str], again: list[RunRecord]) -> None:
        with runs.listed_together([r.run_id for r in [*again, *members]] + extra, kept.__getitem__):
            for rec in members:
                runs.create(rec)
            for rec in again:
                with pytest.raises(AlreadyExists):
                    runs.create(rec)

    batch(firings[0:1], [], [])
    batch(firings[1:4], never, [])
    batch(firings[4:9], [], [])
    batch(firings[9:12], [], firings[2:3])
    batch(firings[12:14], [], [])
    assert len(firings) == 14
    return recs + firings[12:]


def test_list_all_and_by_definition_with_batch_pages(runs: RunStore) -> None:
    _check_lists_across_schedules(runs, paged_runs(runs))


def _check_lists_across_schedules(runs: RunStore, recs: list[RunRecord]) -> None:
    def check(want: list[RunRecord], limit: int, **kw: Any) -> None:
        pages = collect(lambda a: runs.list(after=a, limit=limit, **kw), lambda r: r.run_id)
        assert sum(pages, []) == newest_first(want), kw
        assert all(len(p) == limit for p in pages[:-1]), pages
        assert 0 < len(pages[-1]) <= limit or want == [], pages

    for limit in (1, 3, 100):
        check(recs, limit)
    check([r for r in recs if r.definition == "d1"], 3, definition="d1")
    check([r for r in recs if r.definition == "d2"], 2, definition="d2")
    start, end = T0 + timedelta(minutes=10), T0 + timedelta(minutes=40)
    window = [r for r in recs if start <= r.nominal_time < end]
    check(window, 4, start=start, end=end)
    check(
        [r for r in window if r.status in ("failed", "pending")],
        2,
        start=start,
        end=end,
        statuses=["failed", "pending"],
    )
    check(
        [r for r in recs if r.definition == "d2" and r.status == "failed"],
        1,
        definition="d2",
        statuses=["failed"],
    )
    check([], 5, definition="d3")
    assert runs.list(statuses=[], after=None, limit=5) == Page([], None)


def test_list_failures_across_schedules_finds_them_however_many_runs_are_newer(runs: RunStore) -> None:
    """`failed` / `timed_out` across schedules: full pages of exactly those runs, newest first,
    whatever else is newer (the DynamoDB store reads them from their own sparse index)."""
    recs: list[RunRecord] = []
    for i in range(90):
        t = T0 + timedelta(minutes=i)
        status = "failed" if i % 17 == 3 else "timed_out" if i % 29 == 5 else "completed"
        if i % 3 == 0:
            recs.append(run(f"job-{i:04d}", definition="d2", nominal=t, status=status))
        else:
            recs.append(fired(f"s{i % 4}", t, definition="d1", status=status))
    for rec in recs:
        runs.create(rec)
    failed = [r for r in recs if r.status == "failed"]
    timed_out = [r for r in recs if r.status == "timed_out"]
    assert len(failed) == 6 and len(timed_out) == 3

    def check(want: list[RunRecord], limit: int, **kw: Any) -> None:
        pages = collect(lambda a: runs.list(after=a, limit=limit, **kw), lambda r: r.run_id)
        assert sum(pages, []) == newest_first(want), kw
        assert all(len(p) == limit for p in pages[:-1]), pages  # never a short page

    check(failed, 2, statuses=["failed"])
    check(failed + timed_out, 4, statuses=["timed_out", "failed"])
    check([r for r in failed if r.definition == "d2"], 1, statuses=["failed"], definition="d2")
    start, end = T0 + timedelta(minutes=20), T0 + timedelta(minutes=70)
    check(
        [r for r in timed_out if start <= r.nominal_time < end],
        1,
        statuses=["timed_out"],
        start=start,
        end=end,
    )
    # mixed with a common status: every run of those statuses
    check(
        [r for r in recs if r.status in ("failed", "completed")][:10],
        10,
        statuses=["failed", "completed"],
        end=T0 + timedelta(minutes=11),
    )

    # a retried run leaves the failures, a run that fails enters them
    retried = runs.get(failed[-1].run_id)
    runs.update(RunRecord(**{**retried.__dict__, "status": "pending"}), expected_version=retried.version)
    newly = runs.get(recs[0].run_id)
    assert newly.status == "completed"
    runs.update(RunRecord(**{**newly.__dict__, "status": "failed"}), expected_version=newly.version)
    check(failed[:-1] + [newly], 3, statuses=["failed"])


def test_recent(runs: RunStore) -> None:
    mine = schedule_runs(runs)
    assert [r.run_id for r in runs.recent("s1", limit=3)] == newest_first(mine)[:3]
    assert [r.run_id for r in runs.recent("s1", limit=50)] == newest_first(mine)
    assert runs.recent("nope", limit=3) == []
    assert runs.recent("s1", limit=1)[0] == runs.get(newest_first(mine)[0])


# --- active index -------------------------------------------------------------------------------


def test_active(runs: RunStore) -> None:
    recs = [
        run(f"job-{i:02d}", status="running", active_at=T0 + timedelta(minutes=i % 7, milliseconds=i))
        for i in range(16)
    ]
    recs.append(fired("s", T0, status="pending", active_at=T0))
    recs.append(run("idle", status="completed"))
    for rec in recs:
        runs.create(rec)
    shards = runs.shards

    def expected(shard: int, until: datetime) -> list[str]:
        hits = [r for r in recs if r.active_at is not None and r.active_at <= until]
        hits = [r for r in hits if shard_of(r.run_id, shards) == shard]
        return [r.run_id for r in sorted(hits, key=lambda r: (r.active_at, r.run_id))]

    for until in (
        T0 - timedelta(seconds=1),
        T0 + timedelta(minutes=3, milliseconds=3),
        T0 + timedelta(hours=1),
    ):
        union: list[str] = []
        for shard in range(shards):
            got = runs.active(shard, until, limit=100)
            assert [r.run_id for r in got] == expected(shard, until), (shard, until)
            assert all(r == runs.get(r.run_id) for r in got)
            union += [r.run_id for r in got]
        want = {r.run_id for r in recs if r.active_at is not None and r.active_at <= until}
        assert sorted(union) == sorted(want)

    # exactly at `active_at` it is found, a millisecond earlier not
    target = runs.get("job-03")
    assert target.active_at is not None
    shard = shard_of("job-03", shards)
    assert "job-03" in [r.run_id for r in runs.active(shard, target.active_at, limit=100)]
    earlier = target.active_at - timedelta(milliseconds=1)
    assert "job-03" not in [r.run_id for r in runs.active(shard, earlier, limit=100)]
    assert "job-03" not in [
        r.run_id
        for s in range(shards)
        if s != shard
        for r in runs.active(s, T0 + timedelta(days=1), limit=100)
    ]
    # limit: the oldest first
    full = runs.active(shard, T0 + timedelta(days=1), limit=100)
    assert runs.active(shard, T0 + timedelta(days=1), limit=1) == full[:1]

    # inactive → gone; moved later → found only later
    runs.update(
        RunRecord(**{**target.__dict__, "status": "completed", "active_at": None}), expected_version=1
    )
    later = T0 + timedelta(hours=2)
    moved = runs.get("job-04")
    runs.update(RunRecord(**{**moved.__dict__, "active_at": later}), expected_version=1)
    everywhere = {r.run_id for s in range(shards) for r in runs.active(s, T0 + timedelta(hours=1), limit=100)}
    assert "job-03" not in everywhere and "job-04" not in everywhere
    assert "job-04" in [r.run_id for r in runs.active(shard_of("job-04", shards), later, limit=100)]
    assert "job-03" not in {r.run_id for s in range(shards) for r in runs.active(s, later, limit=100)}


def test_holds(runs: RunStore) -> None:
    early = runs.hold(["a", "b", "c"], T0 + timedelta(seconds=90))
    late = runs.hold(["d"], T0 + timedelta(minutes=5))
    assert runs.expired_holds(T0 + timedelta(seconds=89), limit=10) == []
    got = runs.expired_holds(T0 + timedelta(seconds=90), limit=10)
    assert [(h.hold_id, h.run_ids, h.until) for h in got] == [
        (early, ("a", "b", "c"), T0 + timedelta(seconds=90))
    ]
    assert [h.hold_id for h in runs.expired_holds(T0 + timedelta(hours=1), limit=10)] == [early, late]
    assert [h.hold_id for h in runs.expired_holds(T0 + timedelta(hours=1), limit=1)] == [early]
    runs.release(early)
    runs.release(early)  # gone already: nothing to do
    assert [h.hold_id for h in runs.expired_holds(T0 + timedelta(hours=1), limit=10)] == [late]
    many = [runs.hold([f"r{i}"], T0 + timedelta(seconds=i)) for i in range(12)]
    assert [h.hold_id for h in runs.expired_holds(T0 + timedelta(hours=1), limit=20)] == [*many, late]


def _started(
    sid: str,
    nominal: datetime,
    *,
    jitter_ms: int,
    late_ms: int,
    definition: str = "d1",
    status: str = "completed",
    duration_ms: int | None = None,
) -> RunRecord:
    scheduled = nominal + timedelta(milliseconds=jitter_ms)
    first = scheduled + timedelta(milliseconds=late_ms)
    rec = fired(sid, nominal, status=status, definition=definition)
    doc = {
        **rec.doc,
        "scheduled_time": scheduled.isoformat().replace("+00:00", "Z"),
        "started_at": (first + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),  # a later attempt's
        "attempts": [{"attempt": 1, "started_at": first.isoformat().replace("+00:00", "Z")}],
        "duration_ms": duration_ms,
    }
    return RunRecord(**{**rec.__dict__, "doc": doc})


def _lateness(samples: list[RunSample]) -> list[tuple[datetime, float]]:
    return sorted(s.lateness for s in samples if s.lateness is not None)


@pytest.mark.parametrize("paged", [False, True], ids=["own-entries", "batch-pages"])
def test_run_samples_give_the_lateness_of_started_runs(runs: RunStore, paged: bool) -> None:
    recs = [
        _started(
            f"s{i % 2}", T0 + timedelta(minutes=i), jitter_ms=i * 100, late_ms=10 * i, definition=f"d{i % 3}"
        )
        for i in range(12)
    ]
    recs.append(fired("s0", T0 + timedelta(minutes=20), status="skipped"))  # never started: no sample
    if paged:  # created by worker batches of 1, 5 and 7 (one listed again, on two pages)
        for batch in (recs[:1], recs[1:6], recs[6:]):
            with runs.listed_together([r.run_id for r in [recs[3], *batch]], lambda d: 30):
                for rec in batch:
                    runs.create(rec)
    else:
        for rec in recs:
            runs.create(rec)
    window = {"start": T0, "end": T0 + timedelta(hours=1)}

    def got(**kw: Any) -> tuple[list[tuple[datetime, float]], bool]:
        samples, truncated = runs.run_samples(**{"schedule_id": None, "definition": None, **window, **kw})
        return _lateness(samples), truncated

    every = [(T0 + timedelta(minutes=i, milliseconds=i * 100), 10.0 * i) for i in range(12)]
    assert got(limit=100) == (every, False)
    assert got(schedule_id="s1", limit=100) == ([x for i, x in enumerate(every) if i % 2], False)
    assert got(definition="d2", limit=100) == ([x for i, x in enumerate(every) if i % 3 == 2], False)
    assert got(schedule_id="s0", definition="d0", limit=100) == ([every[0], every[6]], False)
    # `end` exclusive, `start` inclusive, on nominal time
    assert got(start=T0 + timedelta(minutes=3), end=T0 + timedelta(minutes=5), limit=100) == (
        every[3:5],
        False,
    )
    # at most `limit` runs looked at, the newest (the skipped one included)
    assert got(limit=5) == (every[8:], True)
    assert got(schedule_id="s0", limit=2) == ([every[10]], True)
    assert got(limit=13) == (every, False)  # exactly every run: nothing left out


@pytest.mark.parametrize("durations", [False, True])
def test_run_samples_carry_nominal_time_status_and_duration(runs: RunStore, durations: bool) -> None:
    """One sample per run of the window, newest first, whatever its status; the duration once
    an attempt closed (`duration_ms` of the document), the lateness once it started."""
    recs = [
        _started("s", T0, jitter_ms=5, late_ms=7, duration_ms=1234),
        _started("s", T0 + timedelta(minutes=1), jitter_ms=0, late_ms=3, status="failed", duration_ms=40),
        _started("s", T0 + timedelta(minutes=2), jitter_ms=0, late_ms=9, status="running"),
        fired("s", T0 + timedelta(minutes=3), status="skipped", reason="overlap"),
        fired("s", T0 + timedelta(minutes=4), status="pending"),
        run("job-9", definition="d2", nominal=T0 + timedelta(minutes=5, milliseconds=7), status="canceled"),
    ]
    for rec in recs:
        runs.create(rec)
    # an update is kept as well: the run that was running completes
    running = runs.get(recs[2].run_id)
    runs.update(
        RunRecord(**{**running.__dict__, "status": "completed", "doc": {**running.doc, "duration_ms": 0}}),
        expected_version=running.version,
    )
    for sid in ("s", None):
        samples, truncated = runs.run_samples(
            schedule_id=sid,
            definition=None,
            start=T0,
            end=T0 + timedelta(hours=1),
            limit=10,
            durations=durations,
        )
        assert truncated is False
        want = [
            (T0 + timedelta(minutes=5, milliseconds=7), "canceled", False, None),
            (T0 + timedelta(minutes=4), "pending", False, None),
            (T0 + timedelta(minutes=3), "skipped", False, None),
            (T0 + timedelta(minutes=2), "completed", True, 0),
            (T0 + timedelta(minutes=1), "failed", True, 40),
            (T0, "completed", True, 1234),
        ]
        if sid == "s":
            want = want[1:]
        assert [(s.nominal_time, s.status, s.lateness is not None, s.duration_ms) for s in samples] == want
        assert samples[-1].lateness == (T0 + timedelta(milliseconds=5), 7.0)


# --- the DynamoDB item layout the SAM template and other readers rely on ------------------------


def test_dynamo_a_closed_run_keeps_its_active_entry_and_the_sweep_floor_passes_it(
    runs_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a run costs no index delete: its `active` entry stays, marked done on the item,
    and `active` moves the shard's floor past such entries — never past a live one."""
    import boto3

    from gnomon.adapters import dynamo
    from gnomon.adapters.dynamo import DynamoRunStore

    monkeypatch.setattr(dynamo, "FLOOR_WRITE_AFTER", 1)  # write the floor at every move

    ddb = boto3.client("dynamodb")
    store = DynamoRunStore(shards=1)

    def entries() -> list[str]:
        got = ddb.query(
            TableName=runs_table,
            IndexName="active",
            KeyConditionExpression="active_shard = :s",
            ExpressionAttributeValues={":s": {"S": "0"}},
        )["Items"]
        return sorted(i["pk"]["S"].split("#", 1)[1] for i in got)

    def floor() -> str | None:
        item = ddb.get_item(TableName=runs_table, Key={"pk": {"S": "sweep#0"}, "sk": {"S": "floor"}})
        return item.get("Item", {}).get("floor", {}).get("S")

    recs = [fired(f"s{i}", T0, status="running", active_at=T0 + timedelta(minutes=i)) for i in range(6)]
    for rec in recs:
        store.create(rec)
    # runs 0, 1, 3 close; 4 moves later (its old entry moves with it)
    for i in (0, 1, 3):
        cur = store.get(recs[i].run_id)
        store.update(
            RunRecord(**{**cur.__dict__, "status": "completed", "active_at": None}), expected_version=1
        )
    cur = store.get(recs[4].run_id)
    store.update(RunRecord(**{**cur.__dict__, "active_at": T0 + timedelta(hours=3)}), expected_version=1)
    assert entries() == [f"s{i}" for i in range(6)]  # no entry was deleted
    assert store.get(recs[0].run_id).active_at is None
    assert floor() is None

    until = T0 + timedelta(hours=1)
    got = [r.run_id for r in store.active(0, until, limit=100)]
    assert got == [recs[2].run_id, recs[5].run_id]
    # the floor passed the closed runs before the first live one (run 2), and stopped there
    assert str(floor()).endswith(recs[1].run_id)
    # still right from the floor up; once run 2 closes, the floor passes run 3 too, up to run 5
    assert [r.run_id for r in store.active(0, until, limit=100)] == got
    cur = store.get(recs[2].run_id)
    store.update(RunRecord(**{**cur.__dict__, "status": "completed", "active_at": None}), expected_version=1)
    assert [r.run_id for r in store.active(0, until, limit=100)] == [recs[5].run_id]
    assert floor() is not None and str(floor()).endswith(recs[3].run_id)
    # a run active again (a later attempt) is found at its new key
    cur = store.get(recs[0].run_id)
    store.update(
        RunRecord(**{**cur.__dict__, "status": "pending", "active_at": T0 + timedelta(minutes=30)}),
        expected_version=2,
    )
    assert [r.run_id for r in store.active(0, until, limit=100)] == [recs[5].run_id, recs[0].run_id]
    # the floor never passes `until` minus the sweep margin
    for i in (0, 5):
        cur = store.get(recs[i].run_id)
        store.update(
            RunRecord(**{**cur.__dict__, "status": "completed", "active_at": None}),
            expected_version=cur.version,
        )
    assert store.active(0, T0 + timedelta(minutes=40), limit=100) == []
    assert str(floor()) <= "2026-12-01T10:39:55.000Z#"


def test_dynamo_the_sweep_floor_is_written_once_enough_stale_entries_lie_below_it(runs_table: str) -> None:
    import boto3

    from gnomon.adapters.dynamo import FLOOR_WRITE_AFTER, DynamoRunStore

    ddb = boto3.client("dynamodb")
    store = DynamoRunStore(shards=1)

    def floor() -> str | None:
        item = ddb.get_item(TableName=runs_table, Key={"pk": {"S": "sweep#0"}, "sk": {"S": "floor"}})
        return item.get("Item", {}).get("floor", {}).get("S")

    def close(i: int) -> None:
        rec = fired(f"s{i:02d}", T0, status="running", active_at=T0 + timedelta(seconds=i))
        store.create(rec)
        store.update(
            RunRecord(**{**rec.__dict__, "status": "completed", "active_at": None}), expected_version=1
        )

    for i in range(FLOOR_WRITE_AFTER - 1):
        close(i)
    until = T0 + timedelta(hours=1)
    assert store.active(0, until, limit=10) == [] and floor() is None  # too few to pay a write
    close(FLOOR_WRITE_AFTER - 1)
    assert store.active(0, until, limit=10) == []
    assert str(floor()).endswith(fired(f"s{FLOOR_WRITE_AFTER - 1:02d}", T0).run_id)


def test_dynamo_run_item_layout(runs_table: str) -> None:
    import json
    import re
    import zlib

    import boto3

    from gnomon.adapters.dynamo import DynamoRunStore

    ddb = boto3.client("dynamodb")
    store = DynamoRunStore(shards=4)

    def item(pk: str, sk: str) -> dict[str, Any]:
        return ddb.get_item(TableName=runs_table, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item", {})

    fired_rec = fired(
        "nightly",
        T0,
        status="running",
        active_at=T0 + timedelta(minutes=5),
        expires_at=T0 + timedelta(days=30),
    )
    store.create(fired_rec)
    rid = fired_rec.run_id
    sk = f"r#2026-12-01T10:00:00.000Z#{rid}"
    got = item("s#nightly", sk)
    # the document: zlib-compressed compact JSON (one write unit where plain JSON took two)
    assert json.loads(zlib.decompress(got.pop("docz")["B"])) == fired_rec.doc
    # A fresh token per write: a writer recognises its own write when the answer was lost.
    assert re.fullmatch(r"[0-9a-f]{32}", got.pop("write_token")["S"])
    assert got == {
        "pk": {"S": "s#nightly"},
        "sk": {"S": sk},
        "version": {"N": "1"},
        "run_id": {"S": rid},
        "definition": {"S": "d1"},
        "status": {"S": "running"},
        "schedule_id": {"S": "nightly"},
        "expires_at": {"N": str(int((T0 + timedelta(days=30)).timestamp()))},
        "time_shard": {"S": str(shard_of(rid, 4))},
        "time_key": {"S": f"2026-12-01T10:00:00.000Z#{rid}"},
        "active_shard": {"S": str(shard_of(rid, 4))},
        "active_key": {"S": f"2026-12-01T10:05:00.000Z#{rid}"},
        "lt": {"S": "-"},  # not started: no lateness sample (`run_samples`)
        "du": {"S": "-"},  # no attempt closed: no duration (`run_samples`)
    }

    store.create(run("job-1234", definition="d2", nominal=T0 + timedelta(milliseconds=7)))
    job_sk = "r#2026-12-01T10:00:00.007Z#job-1234"
    job = item("d#d2", job_sk)
    assert set(job) == {
        "pk",
        "sk",
        "docz",
        "version",
        "run_id",
        "definition",
        "status",
        "time_shard",
        "time_key",
        "write_token",
        "lt",
        "du",
    }
    assert job["time_shard"] == {"S": str(shard_of("job-1234", 4))}
    assert item("id#job-1234", "ptr") == {
        "pk": {"S": "id#job-1234"},
        "sk": {"S": "ptr"},
        "run_pk": {"S": "d#d2"},
        "run_sk": {"S": job_sk},
    }

    store.create(run("nightly-t-0123456789ab", schedule_id="nightly", nominal=T0))
    trig_sk = "r#2026-12-01T10:00:00.000Z#nightly-t-0123456789ab"
    assert item("s#nightly", trig_sk)["schedule_id"] == {"S": "nightly"}
    assert item("id#nightly-t-0123456789ab", "ptr")["run_pk"] == {"S": "s#nightly"}

    # only ids that do not encode their key get a pointer
    keys = sorted((i["pk"]["S"], i["sk"]["S"]) for i in ddb.scan(TableName=runs_table)["Items"])
    assert keys == sorted(
        [
            ("s#nightly", sk),
            ("s#nightly", trig_sk),
            ("d#d2", job_sk),
            ("id#job-1234", "ptr"),
            ("id#nightly-t-0123456789ab", "ptr"),
        ]
    )

    # closing a run marks it done in `active` (the entry stays: no index delete), and removes
    # its expiry when there is none
    cur = store.get(rid)
    store.update(
        RunRecord(**{**cur.__dict__, "status": "completed", "active_at": None, "expires_at": None}),
        expected_version=1,
    )
    closed = item("s#nightly", sk)
    assert "expires_at" not in closed and closed["active_done"] == {"N": "1"}
    assert closed["active_key"] == got["active_key"]
    assert closed["version"] == {"N": "2"} and closed["status"] == {"S": "completed"}
    assert closed["time_key"] == got["time_key"]


def test_dynamo_pointer_outliving_its_run(runs_table: str) -> None:
    """TTL deletes an expired run but not its pointer: `get` says NotFound and a new run may
    take the id; a live run's pointer is never dropped."""
    import boto3

    from gnomon.adapters.dynamo import DynamoRunStore

    ddb = boto3.client("dynamodb")
    store = DynamoRunStore()
    old = store.create(run("job-1", definition="d1", expires_at=T0))
    ddb.delete_item(  # what TTL does
        TableName=runs_table, Key={"pk": {"S": "d#d1"}, "sk": {"S": "r#2026-12-01T10:00:00.000Z#job-1"}}
    )
    with pytest.raises(NotFound):
        store.get("job-1")
    new = store.create(run("job-1", definition="d2", nominal=T0 + timedelta(days=40), n=2))
    assert store.get("job-1") == new and new.doc != old.doc
    with pytest.raises(AlreadyExists) as e:
        store.create(run("job-1", definition="d1"))
    assert e.value.details == {"current": new.doc}
    assert store.get("job-1") == new


def test_dynamo_failures_index_holds_failed_and_timed_out_runs_only(
    runs_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from gnomon.adapters import dynamo

    ddb = boto3.client("dynamodb")
    store = dynamo.DynamoRunStore()

    def keys(rec: RunRecord) -> dict[str, Any]:
        sk = f"r#2026-12-01T10:00:00.000Z#{rec.run_id}"
        got = ddb.get_item(TableName=runs_table, Key={"pk": {"S": "s#nightly"}, "sk": {"S": sk}})["Item"]
        return {k: v["S"] for k, v in got.items() if k.startswith("failure_")}

    rec = store.create(fired("nightly", T0, status="running"))
    assert keys(rec) == {}
    for status in ("failed", "timed_out"):
        rec = store.update(RunRecord(**{**rec.__dict__, "status": status}), expected_version=rec.version)
        assert keys(rec) == {
            "failure_shard": f"{status}#{shard_of(rec.run_id, TIME_SHARDS)}",
            "failure_key": f"2026-12-01T10:00:00.000Z#{rec.run_id}",
        }
    rec = store.update(RunRecord(**{**rec.__dict__, "status": "pending"}), expected_version=rec.version)
    assert keys(rec) == {}  # a retry takes it out
    rec = store.update(RunRecord(**{**rec.__dict__, "status": "completed"}), expected_version=rec.version)
    assert keys(rec) == {}
    index = ddb.query(
        TableName=runs_table,
        IndexName="failures",
        KeyConditionExpression="failure_shard = :s",
        ExpressionAttributeValues={":s": {"S": f"failed#{shard_of(rec.run_id, TIME_SHARDS)}"}},
    )
    assert index["Items"] == []

    # Listed from the index: one Query per shard finds the failures below 40 newer completed
    # runs (reading `by_time` with one Query per shard would find none of them).
    for i in range(40):
        store.create(fired(f"s{i % 3}", T0 + timedelta(hours=1, minutes=i), status="completed"))
    old = [store.create(fired("old", T0 - timedelta(minutes=i), status="failed")) for i in range(3)]
    monkeypatch.setattr(dynamo, "_LIST_READS", 1)
    page = store.list(statuses=["failed"], after=None, limit=5)
    assert ids(page) == [r.run_id for r in old] and page.last_key is None


@pytest.mark.parametrize("paged", [False, True], ids=["own-entries", "batch-pages"])
@pytest.mark.parametrize("where", ["schedule", "definition", "all"])
def test_dynamo_list_read_budget(
    runs_table: str, monkeypatch: pytest.MonkeyPatch, where: str, paged: bool
) -> None:
    """A list that runs out of Query calls returns a short page whose `last_key` resumes below
    what it examined: following it still yields exactly the matches, newest first — also when
    the runs are on worker batches' pages (three to a page, pages read two at a time)."""
    from gnomon.adapters import dynamo

    monkeypatch.setattr(dynamo, "_LIST_READS", 5)
    monkeypatch.setattr(dynamo, "_FILTERED_PAGE", 2)
    store = dynamo.DynamoRunStore()
    recs = [
        fired(
            "s1",
            T0 + timedelta(minutes=i),
            definition="d1" if i % 11 == 0 else "d2",
            status="completed" if i % 13 == 0 else "failed",
        )
        for i in range(40)
    ]
    for i in range(0, len(recs), 3):
        batch = recs[i : i + 3]
        with store.listed_together([r.run_id for r in batch] if paged else [], lambda d: 30):
            for rec in batch:
                store.create(rec)
    kw: dict[str, Any] = {"statuses": ["completed"]} if where != "definition" else {"definition": "d1"}
    if where == "schedule":
        kw["schedule_id"] = "s1"
    want = [
        r
        for r in recs
        if r.status in kw.get("statuses", [r.status]) and r.definition == kw.get("definition", r.definition)
    ]
    pages = collect(lambda a: store.list(after=a, limit=2, **kw), lambda r: r.run_id)
    assert sum(pages, []) == newest_first(want)
    assert any(len(p) < 2 for p in pages[:-1]), pages  # the budget ran out at least once


def test_dynamo_run_samples_read_older_runs_whole(runs_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run written before the `lt` attribute still gives its lateness and duration (its
    document is read); one written before `du` (with `lt` in the old "<jitter>:<late>" form)
    gives its duration from its document when durations are asked for and it closed; runs
    written now are read without their documents."""
    import boto3

    from gnomon.adapters.dynamo import DynamoRunStore

    store = DynamoRunStore(shards=1)
    whole: list[str] = []
    batch_get = store._batch_get

    def counted(keys: list[tuple[str, str]]) -> Any:
        whole.extend(sk for _, sk in keys)
        return batch_get(keys)

    monkeypatch.setattr(store, "_batch_get", counted)
    no_lt = _started("s", T0, jitter_ms=250, late_ms=40, duration_ms=900)
    old_lt = _started("s", T0 + timedelta(minutes=1), jitter_ms=5, late_ms=6, status="failed", duration_ms=70)
    old_running = _started("s", T0 + timedelta(minutes=2), jitter_ms=1, late_ms=2, status="running")
    new = _started("s", T0 + timedelta(minutes=3), jitter_ms=3, late_ms=4, duration_ms=12)
    ddb = boto3.client("dynamodb")

    def key(rec: RunRecord) -> dict[str, Any]:
        sk = f"r#{rec.nominal_time.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}#{rec.run_id}"
        return {"pk": {"S": "s#s"}, "sk": {"S": sk}}

    for rec in (no_lt, old_lt, old_running, new):
        store.create(rec)
    assert ddb.get_item(TableName=runs_table, Key=key(no_lt))["Item"]["lt"] == {"S": "250:40.0"}
    assert ddb.get_item(TableName=runs_table, Key=key(new))["Item"]["du"] == {"S": "12"}
    ddb.update_item(TableName=runs_table, Key=key(no_lt), UpdateExpression="REMOVE lt, du")
    for rec in (old_lt, old_running):
        ddb.update_item(TableName=runs_table, Key=key(rec), UpdateExpression="REMOVE du")
    for sid in ("s", None):
        for durations in (False, True):
            whole.clear()
            samples, _ = store.run_samples(
                schedule_id=sid,
                definition=None,
                start=T0,
                end=T0 + timedelta(hours=1),
                limit=10,
                durations=durations,
            )
            got = [(s.status, s.lateness, s.duration_ms) for s in samples]
            assert got == [
                ("completed", (T0 + timedelta(minutes=3, milliseconds=3), 4.0), 12),
                ("running", (T0 + timedelta(minutes=2, milliseconds=1), 2.0), None),
                ("failed", (T0 + timedelta(minutes=1, milliseconds=5), 6.0), 70 if durations else None),
                ("completed", (T0 + timedelta(milliseconds=250), 40.0), 900),
            ]
            read = [key(no_lt)["sk"]["S"]] + ([key(old_lt)["sk"]["S"]] if durations else [])
            assert sorted(whole) == sorted(read)


def test_dynamo_batch_pages_replace_by_time_entries(runs_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs a batch creates are on its page item(s), without a `by_time` entry — except a run
    kept longer than the page, and every run of a batch whose page could not be written."""
    import boto3

    from gnomon.adapters import dynamo

    ddb = boto3.client("dynamodb")
    store = dynamo.DynamoRunStore()
    recs = paged_runs(store)
    items = ddb.scan(TableName=runs_table)["Items"]
    pages = [i for i in items if i["pk"]["S"].startswith("page#")]
    assert len(pages) == 6  # one per batch, two for the batch whose firings lie 5 hours apart
    for page in pages:
        entries = [r for r, _ in json.loads(page["entries"]["S"])]
        keys = sorted(dynamo._scheduled_time_key(r) for r in entries)
        assert page["page_key"]["S"].startswith(keys[-1] + "~")
        assert split_run_time_key(keys[-1])[0] - split_run_time_key(keys[0])[0] <= dynamo.PAGE_SPAN
        assert int(page["expires_at"]["N"]) > (datetime.now(UTC) + timedelta(days=30)).timestamp()
    listed = sorted(r for p in pages for r, _ in json.loads(p["entries"]["S"]))
    on_pages = {r.run_id for r in recs if r.run_id in listed}
    assert len(listed) == len(on_pages) + 3 + 1  # 3 never made, one run on two pages
    runs = {i["run_id"]["S"]: i for i in items if i["sk"]["S"].startswith("r#")}
    own_entry = {r for r, i in runs.items() if "time_shard" in i}
    # kept 90 days on a page written for a 30-day run: b at 20 and 35 min, c two hours ahead
    longer = {fired("b", T0 + timedelta(minutes=m)).run_id for m in (20, 35)} | {
        fired("c", T0 + timedelta(hours=2)).run_id
    }
    assert on_pages - own_entry == on_pages - longer and longer <= own_entry
    assert {r for r in runs if parse_scheduled_run_id(r) is None} <= own_entry

    # A page that cannot be written: each run gets its own entry, and is listed once.
    def broken(*args: Any) -> None:
        raise RuntimeError("throttled")

    monkeypatch.setattr(store, "_write_pages", broken)
    late = [fired("d", T0 + timedelta(minutes=i), definition="d1") for i in range(3)]
    with store.listed_together([r.run_id for r in late], lambda d: 30):
        for rec in late:
            store.create(rec)
    items = ddb.scan(TableName=runs_table)["Items"]
    assert all("time_shard" in i for i in items if i.get("run_id", {}).get("S") in {r.run_id for r in late})
    assert ids(store.list(schedule_id=None, after=None, limit=100)) == newest_first(recs + late)


def test_dynamo_a_run_that_outlives_its_page_gets_its_own_entry(runs_table: str) -> None:
    """A run on a batch page is kept past the page's TTL only if its close keeps it longer than
    the page (it stayed open for days): that close gives it a `by_time` entry of its own."""
    import boto3

    from gnomon.adapters import dynamo

    ddb = boto3.client("dynamodb")
    store = dynamo.DynamoRunStore()
    now = datetime.now(UTC)
    short, long_ = fired("s", T0, status="running"), fired("s", T0 + timedelta(minutes=1), status="running")
    with store.listed_together([short.run_id, long_.run_id], lambda d: 30):
        short, long_ = store.create(short), store.create(long_)

    def item(rec: RunRecord) -> dict[str, Any]:
        key = {"pk": {"S": "s#s"}, "sk": {"S": "r#" + dynamo._scheduled_time_key(rec.run_id)}}
        return dict(ddb.get_item(TableName=runs_table, Key=key)["Item"])

    assert (
        "time_shard" not in item(short)
        and int(item(short)["page_until"]["N"]) > (now + timedelta(days=30)).timestamp()
    )

    def close(rec: RunRecord, kept: timedelta) -> RunRecord:
        done = RunRecord(**{**rec.__dict__, "status": "completed", "expires_at": now + kept})
        return store.update(done, expected_version=rec.version)

    close(short, timedelta(days=30))  # within the page's TTL
    close(long_, timedelta(days=30 + 9))  # it closed nine days later than the page was written
    assert "time_shard" not in item(short)
    assert item(long_)["time_shard"] == {"S": str(shard_of(long_.run_id, TIME_SHARDS))}
    assert ids(store.list(after=None, limit=10)) == [long_.run_id, short.run_id]  # once each


def test_dynamo_a_page_names_its_runs_definitions(runs_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the batch's definitions, a page covers its longest-kept definition (no run of it
    needs its own entry) and a list of one definition's runs does not read the others'."""
    import boto3

    from gnomon.adapters import dynamo

    ddb = boto3.client("dynamodb")
    store = dynamo.DynamoRunStore()
    recs = [fired(f"s{i}", T0 + timedelta(seconds=i), definition="d1" if i % 3 else "d2") for i in range(9)]
    kept = {"d1": 30, "d2": 90}
    with store.listed_together(
        [r.run_id for r in recs], kept.__getitem__, {r.run_id: r.definition for r in recs}
    ):
        for rec in sorted(recs, key=lambda r: r.definition):  # d1's first: the page still keeps d2's
            store.create(rec)
    items = ddb.scan(TableName=runs_table)["Items"]
    (page,) = [i for i in items if i["pk"]["S"].startswith("page#")]
    assert sorted(map(tuple, json.loads(page["entries"]["S"]))) == sorted(
        (r.run_id, r.definition) for r in recs
    )
    assert int(page["expires_at"]["N"]) > (datetime.now(UTC) + timedelta(days=90)).timestamp()
    assert not [i for i in items if "time_shard" in i]
    fetched: list[tuple[str, str]] = []
    batch_get = store._batch_get

    def spy(keys: list[tuple[str, str]]) -> Any:
        fetched.extend(keys)
        return batch_get(keys)

    monkeypatch.setattr(store, "_batch_get", spy)
    d2 = [r for r in recs if r.definition == "d2"]
    assert ids(store.list(definition="d2", after=None, limit=10)) == newest_first(d2)
    assert len(fetched) == len(d2)  # d1's runs on the same page were never read
    samples, _ = store.run_samples(
        schedule_id=None, definition="d2", start=T0, end=T0 + timedelta(hours=1), limit=10
    )
    assert len(samples) == len(d2)
