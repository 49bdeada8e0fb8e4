"""The task store's contract: every test runs against the in-memory fake and the DynamoDB adapter
(on moto, tables from template.yaml), except the item layout test at the end, DynamoDB's own.

The store tests pin the port (versions, indexes, lists, paging); the `Tasks` tests at the end run
the reserve path — candidates from the indexes, then a conditional write — on both stores, with
a fake clock, because that is where "one task never goes to two workers" and "a lapsed lease is
reservable after the skew allowance" are decided.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.adapters.memory_tasks import MAX_WORKERS, MemoryTaskStore
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.ports import Page
from gnomon.ports_tasks import TaskRecord, TaskStore
from gnomon.services.pagetoken import PageTokens
from gnomon.services.tasks import Tasks
from tests.contract.conftest import PREFIX
from tests.contract.helpers import collect_pages as collect
from tests.contract.helpers import race

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def tasks_table(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tasks table (moto), named in `GNOMON_TASKS_TABLE` as the loader names tables."""
    name = f"{PREFIX}TasksTable"
    monkeypatch.setenv("GNOMON_TASKS_TABLE", name)
    return name


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest) -> TaskStore:
    if backend == "memory":
        return MemoryTaskStore()
    request.getfixturevalue("tasks_table")
    from gnomon.adapters.dynamo_tasks import DynamoTaskStore

    return DynamoTaskStore()


def task(
    task_id: str,
    *,
    topic: str = "reports",
    status: str = "ready",
    created: datetime = T0,
    ready_at: datetime | None = None,
    held_until: datetime | None = None,
    sub_topic: str | None = None,
    group: str | None = None,
    expires_at: datetime | None = None,
    **doc: Any,
) -> TaskRecord:
    if status == "ready" and ready_at is None:
        ready_at = created
    return TaskRecord(
        task_id=task_id,
        topic=topic,
        doc={"task_id": task_id, "status": status, **doc},
        status=status,
        created_at=created,
        sub_topic=sub_topic,
        task_group_id=group,
        ready_at=ready_at,
        held_until=held_until,
        expires_at=expires_at,
    )


def leased(rec: TaskRecord, until: datetime) -> TaskRecord:
    return replace(rec, status="leased", ready_at=None, held_until=until)


def snoozed(rec: TaskRecord, until: datetime) -> TaskRecord:
    return replace(rec, status="snoozed", ready_at=until, held_until=until)


def flat(pages: list[list[Any]]) -> list[Any]:
    return [k for page in pages for k in page]


# --- create, get, update --------------------------------------------------------------------------


def test_create_get(store: TaskStore) -> None:
    rec = store.create(
        task(
            "t-1",
            created=at(0.0015),
            sub_topic="pdf",
            group="batch-7",
            ready_at=at(1.2349),
            data={"n": 1, "f": 1.5, "z": None},
        )
    )
    assert rec.record_version == 1
    got = store.get("t-1")
    assert got == rec
    assert got.doc == {"task_id": "t-1", "status": "ready", "data": {"n": 1, "f": 1.5, "z": None}}
    assert (got.topic, got.sub_topic, got.task_group_id, got.status) == ("reports", "pdf", "batch-7", "ready")
    # instants are kept to the millisecond, in UTC
    assert got.created_at == at(0.001) and got.ready_at == at(1.234) and got.held_until is None
    assert got.created_at.tzinfo is not None


def test_create_taken_and_get_missing(store: TaskStore) -> None:
    store.create(task("t-1"))
    with pytest.raises(AlreadyExists) as exc:
        store.create(task("t-1", topic="other"))
    assert exc.value.details == {"resource": "task/t-1"}
    with pytest.raises(NotFound) as missing:
        store.get("t-2")
    assert missing.value.resource == "task/t-2"


def test_refuses_what_it_cannot_index(store: TaskStore) -> None:
    for bad in (
        task("a#b"),
        task("t", topic="a#b"),
        task("t", group=""),
        task("t", created=T0.replace(tzinfo=None)),
    ):
        with pytest.raises(ValueError):
            store.create(bad)


def test_get_many(store: TaskStore) -> None:
    for i in range(3):
        store.create(task(f"t-{i}"))
    got = store.get_many(["t-2", "nope", "t-0", "t-2"])
    assert sorted(got) == ["t-0", "t-2"] and got["t-2"].task_id == "t-2"
    assert store.get_many([]) == {}


def test_docs_are_copies(store: TaskStore) -> None:
    doc_data = {"n": [1]}
    rec = task("t-1", data=doc_data)
    store.create(rec)
    doc_data["n"].append(2)
    got = store.get("t-1")
    got.doc["data"]["n"].append(3)
    assert store.get("t-1").doc["data"] == {"n": [1]}


def test_update_grows_record_version_by_one(store: TaskStore) -> None:
    rec = store.create(task("t-1"))
    for expected in range(1, 5):
        rec = store.update(replace(rec, doc={**rec.doc, "step": expected}), expected_version=expected)
        assert rec.record_version == expected + 1
    assert store.get("t-1").record_version == 5 and store.get("t-1").doc["step"] == 4


def test_update_stale_missing_or_moving(store: TaskStore) -> None:
    rec = store.create(task("t-1", note="first"))
    store.update(rec, expected_version=1)
    with pytest.raises(Conflict) as exc:
        store.update(replace(rec, doc={"note": "late"}), expected_version=1)
    assert exc.value.current["record_version"] == 2 and exc.value.current["note"] == "first"
    with pytest.raises(NotFound):
        store.update(task("ghost"), expected_version=1)
    with pytest.raises(ValueError):
        store.update(replace(rec, topic="elsewhere"), expected_version=2)
    assert store.get("t-1").record_version == 2


def test_update_keeps_fixed_fields(store: TaskStore) -> None:
    rec = store.create(task("t-1", sub_topic="a", group="g", created=at(1)))
    moved = store.update(replace(rec, sub_topic="b", task_group_id="h", created_at=at(9)), expected_version=1)
    assert (moved.sub_topic, moved.task_group_id, moved.created_at) == ("a", "g", at(1))


def test_expires_at_whole_seconds(store: TaskStore) -> None:
    rec = store.create(task("t-1"))
    done = store.update(
        replace(rec, status="completed", ready_at=None, expires_at=at(30.9)), expected_version=1
    )
    assert done.expires_at == at(30) and store.get("t-1").expires_at == at(30)
    back = store.update(replace(done, status="ready", ready_at=at(31), expires_at=None), expected_version=2)
    assert back.expires_at is None


def test_concurrent_conditional_update_one_wins(store: TaskStore) -> None:
    rec = store.create(task("t-1"))
    results = race(8, lambda i: store.update(replace(rec, doc={"by": i}), expected_version=1))
    wins = [r for r in results if isinstance(r, TaskRecord)]
    assert len(wins) == 1 and all(isinstance(r, Conflict) for r in results if r not in wins)
    assert store.get("t-1").record_version == 2 and store.get("t-1").doc == wins[0].doc


# --- the ready and leased indexes -----------------------------------------------------------------


def test_ready_oldest_first_then_task_id(store: TaskStore) -> None:
    store.create(task("c", ready_at=at(2)))
    store.create(task("b", ready_at=at(1)))
    store.create(task("a", ready_at=at(2)))
    store.create(task("later", ready_at=at(60)))  # a snooze not yet over
    store.create(task("elsewhere", topic="other", ready_at=at(0)))
    store.create(leased(task("held"), at(0)))  # leased: not in the ready index
    store.create(task("done", status="completed", ready_at=None))
    entries = store.ready("reports", at(10), limit=10)
    assert [(e.task_id, e.at) for e in entries] == [("b", at(1)), ("a", at(2)), ("c", at(2))]
    assert [e.task_id for e in store.ready("reports", at(10), limit=2)] == ["b", "a"]
    assert [e.task_id for e in store.ready("reports", at(60), limit=10)][-1] == "later"
    assert [e.task_id for e in store.ready("reports", at(1.0004), limit=10)] == ["b"]  # to the ms
    assert store.ready("nothing", at(10), limit=10) == []


def test_ready_follows_updates(store: TaskStore) -> None:
    rec = store.create(task("t-1", ready_at=at(1)))
    rec = store.update(leased(rec, at(30)), expected_version=1)
    assert store.ready("reports", at(100), limit=10) == []
    rec = store.update(replace(rec, status="ready", ready_at=at(40), held_until=None), expected_version=2)
    assert [(e.task_id, e.at) for e in store.ready("reports", at(100), limit=10)] == [("t-1", at(40))]


def test_expired_finds_lapsed_leases_only(store: TaskStore) -> None:
    store.create(leased(task("l2"), at(20)))
    store.create(leased(task("l1"), at(10)))
    store.create(leased(task("l0"), at(10)))
    store.create(leased(task("live"), at(100)))
    store.create(snoozed(task("snz"), at(5)))  # a snooze is not a lease
    store.create(leased(task("o", topic="other"), at(1)))
    found = store.expired("reports", at(20), limit=10)
    assert [(e.task_id, e.at) for e in found] == [("l0", at(10)), ("l1", at(10)), ("l2", at(20))]
    assert [e.task_id for e in store.expired("reports", at(19.999), limit=10)] == ["l0", "l1"]
    assert [e.task_id for e in store.expired("reports", at(20), limit=1)] == ["l0"]


def test_leased_lists_leases_then_snoozes_per_topic(store: TaskStore) -> None:
    store.create(snoozed(task("s1"), at(5)))
    store.create(leased(task("l2"), at(20)))
    store.create(leased(task("l1"), at(10)))
    store.create(task("r"))  # ready: not listed
    store.create(leased(task("o", topic="other"), at(1)))
    page = store.leased("reports", after=None, limit=10)
    assert [r.task_id for r in page.items] == ["l1", "l2", "s1"] and page.last_key is None
    pages = collect(lambda after: store.leased("reports", after=after, limit=1), lambda r: r.task_id)
    assert pages == [["l1"], ["l2"], ["s1"]]
    every = flat(collect(lambda after: store.leased(None, after=after, limit=2), lambda r: r.task_id))
    assert sorted(every) == ["l1", "l2", "o", "s1"] and len(every) == 4


def test_leased_across_many_topics_pages_without_loss(store: TaskStore) -> None:
    ids = []
    for t in range(5):
        for i in range(7):
            tid = f"x{t}-{i}"
            ids.append(tid)
            store.create(leased(task(tid, topic=f"topic{t}"), at(i)))
    pages = collect(lambda after: store.leased(None, after=after, limit=4), lambda r: r.task_id)
    got = flat(pages)
    assert sorted(got) == sorted(ids) and len(got) == len(ids)
    assert all(len(p) <= 4 for p in pages)


def test_counts(store: TaskStore) -> None:
    store.create(task("r1", ready_at=at(1)))
    store.create(task("r2", ready_at=at(2)))
    store.create(snoozed(task("s1"), at(50)))
    store.create(leased(task("l1"), at(10)))
    store.create(leased(task("l2"), at(30)))
    store.create(task("o", topic="other"))
    assert store.count_ready("reports", at(20)) == (2, 1)
    assert store.count_ready("reports", at(50)) == (3, 0)
    assert store.count_leased("reports", at(9)) == 2
    assert store.count_leased("reports", at(10)) == 1  # expiry > after
    assert store.count_leased("reports", at(30)) == 0
    assert store.count_ready("nothing", at(0)) == (0, 0) and store.count_leased("nothing", at(0)) == 0


# --- lists ----------------------------------------------------------------------------------------


def _fill(store: TaskStore) -> None:
    rows = [
        ("a1", "alpha", "pdf", "g1", "ready", 1),
        ("a2", "alpha", "csv", "g1", "completed", 2),
        ("a3", "alpha", "pdf", None, "failed", 3),
        ("a0", "alpha", None, "g2", "ready", 3),  # same created_at as a3: task_id orders
        ("b1", "beta", "pdf", "g1", "ready", 0),
        ("b2", "beta", None, None, "leased", 5),
    ]
    for tid, topic, sub, group, status, created in rows:
        rec = task(tid, topic=topic, sub_topic=sub, group=group, status=status, created=at(created))
        if status != "ready":
            rec = replace(rec, ready_at=None)
        store.create(rec)


def ids(page: Page[TaskRecord]) -> list[str]:
    return [r.task_id for r in page.items]


def test_list_by_topic_in_creation_order(store: TaskStore) -> None:
    _fill(store)
    assert ids(store.list(topic="alpha", after=None, limit=10)) == ["a1", "a2", "a0", "a3"]
    pages = collect(lambda after: store.list(topic="alpha", after=after, limit=3), lambda r: r.task_id)
    assert flat(pages) == ["a1", "a2", "a0", "a3"] and pages[0] == ["a1", "a2", "a0"]
    assert ids(store.list(topic="nothing", after=None, limit=10)) == []


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"topic": "alpha", "sub_topic": "pdf"}, ["a1", "a3"]),
        ({"topic": "alpha", "statuses": ["ready", "failed"]}, ["a1", "a0", "a3"]),
        ({"topic": "alpha", "statuses": []}, []),
        ({"topic": "alpha", "start": at(2), "end": at(3)}, ["a2"]),
        ({"topic": "alpha", "start": at(2)}, ["a2", "a0", "a3"]),
        ({"topic": "alpha", "end": at(2.0001)}, ["a1", "a2"]),
        ({"topic": "alpha", "start": at(3), "end": at(3)}, []),
        ({"task_group_id": "g1"}, ["b1", "a1", "a2"]),
        ({"task_group_id": "g1", "topic": "alpha"}, ["a1", "a2"]),
        ({"task_group_id": "g1", "sub_topic": "pdf", "statuses": ["ready"]}, ["b1", "a1"]),
        ({"task_group_id": "g1", "start": at(1), "end": at(2)}, ["a1"]),
    ],
)
def test_list_filters(store: TaskStore, filters: dict[str, Any], expected: list[str]) -> None:
    _fill(store)
    got = flat(collect(lambda after: store.list(after=after, limit=2, **filters), lambda r: r.task_id))
    assert got == expected


def test_list_every_topic(store: TaskStore) -> None:
    _fill(store)
    got = flat(collect(lambda after: store.list(after=after, limit=2), lambda r: r.task_id))
    assert sorted(got) == ["a0", "a1", "a2", "a3", "b1", "b2"] and len(got) == 6
    # grouped by topic, creation order within one
    alpha = [t for t in got if t.startswith("a")]
    assert alpha == ["a1", "a2", "a0", "a3"]
    filtered = flat(
        collect(
            lambda after: store.list(after=after, limit=1, sub_topic="pdf", start=at(1)), lambda r: r.task_id
        )
    )
    assert sorted(filtered) == ["a1", "a3"]


def test_list_many_pages(store: TaskStore) -> None:
    for i in range(45):
        store.create(task(f"t{i:02d}", created=at(i // 3), group="g" if i % 2 else None))
    expected = [f"t{i:02d}" for i in range(45)]
    pages = collect(lambda after: store.list(topic="reports", after=after, limit=10), lambda r: r.task_id)
    assert flat(pages) == expected and [len(p) for p in pages] == [10, 10, 10, 10, 5]
    odd = flat(collect(lambda after: store.by_group("g", after=after, limit=7), lambda r: r.task_id))
    assert odd == expected[1::2]


def test_list_refuses_foreign_page_keys(store: TaskStore) -> None:
    store.create(task("t-1"))
    with pytest.raises(ValueError):
        store.list(topic="reports", after="not-a-key", limit=10)
    with pytest.raises(ValueError):
        store.leased("reports", after="reports#nonsense", limit=10)


# --- workers seen ---------------------------------------------------------------------------------


def test_workers_seen(store: TaskStore) -> None:
    assert store.workers("reports") == {}
    store.touch_worker("reports", "w1", at(1))
    store.touch_worker("reports", "w2", at(2.0009))
    store.touch_worker("reports", "w1", at(3))
    store.touch_worker("reports", "w2", at(1))  # out of order: the newer time stays
    store.touch_worker("other", "w9", at(1))
    assert store.workers("reports") == {"w1": at(3), "w2": at(2)}
    # never a task: lists and gets do not see the bookkeeping
    assert flat(collect(lambda after: store.list(after=after, limit=10), lambda r: r.task_id)) == []
    with pytest.raises(NotFound):
        store.get("topic#reports")


def test_workers_seen_keeps_the_most_recent(store: TaskStore) -> None:
    for i in range(MAX_WORKERS + 3):
        store.touch_worker("reports", f"w{i:03d}", at(i))
    seen = store.workers("reports")
    assert len(seen) == MAX_WORKERS and "w000" not in seen and f"w{MAX_WORKERS + 2:03d}" in seen


def test_workers_seen_concurrently(store: TaskStore) -> None:
    race(8, lambda i: store.touch_worker("fresh", f"w{i}", at(i)))
    assert store.workers("fresh") == {f"w{i}": at(i) for i in range(8)}


# --- reserve over each store (the service's candidates + conditional write) ------------------------


@dataclass
class FakeClock:
    t: datetime = T0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        with self.lock:
            return self.t

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.t += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tasks(store: TaskStore, clock: FakeClock) -> Tasks:
    return Tasks(store, clock, PageTokens(b"k" * 32))


def test_concurrent_reserves_never_share_a_task(tasks: Tasks, clock: FakeClock) -> None:
    for i in range(8):
        tasks.create("jobs", task_id=f"j{i}")
        clock.advance(0.001)
    got = race(8, lambda i: tasks.reserve("jobs", f"w{i}", 60))
    assert not [g for g in got if isinstance(g, Exception)], got
    won = [g for g in got if isinstance(g, dict)]
    assert sorted(g["task_id"] for g in won) == [f"j{i}" for i in range(8)]
    assert len({g["lease"]["owner"] for g in won}) == 8 and len({g["lease"]["token"] for g in won}) == 8
    assert tasks.reserve("jobs", "late", 60) is None


def test_eight_workers_drain_forty_tasks_each_reserved_once(tasks: Tasks, clock: FakeClock) -> None:
    for i in range(40):
        tasks.create("drain", task_id=f"d{i:02}")
        clock.advance(0.001)

    def worker(i: int) -> list[str]:
        mine: list[str] = []
        while (task := tasks.reserve("drain", f"w{i}", 60)) is not None:
            mine.append(task["task_id"])
            tasks.complete(task["task_id"], f"w{i}", {"by": i})
        return mine

    got = race(8, worker)
    assert not [g for g in got if isinstance(g, Exception)], got
    reserved = [t for g in got if isinstance(g, list) for t in g]
    assert sorted(reserved) == [f"d{i:02}" for i in range(40)]  # every task, each exactly once
    for g in got:
        assert isinstance(g, list)
        for task_id in g:
            done = tasks.get(task_id)
            assert done["status"] == "completed" and done["attempts"] == 0
            assert done["result"] == {"by": got.index(g)}


def test_concurrent_reserves_of_fewer_tasks(tasks: Tasks, clock: FakeClock) -> None:
    for i in range(3):
        tasks.create("jobs", task_id=f"j{i}")
    got = race(8, lambda i: tasks.reserve("jobs", f"w{i}", 60))
    assert not [g for g in got if isinstance(g, Exception)], got
    won = [g for g in got if isinstance(g, dict)]
    assert sorted(g["task_id"] for g in won) == ["j0", "j1", "j2"] and got.count(None) == 5
    for g in won:  # each stored lease is the winner's
        assert tasks.get(g["task_id"])["lease"]["owner"] == g["lease"]["owner"]


def test_reserve_order_ready_first_then_task_id(tasks: Tasks, clock: FakeClock) -> None:
    tasks.create("jobs", task_id="b")
    tasks.create("jobs", task_id="a")  # same instant: task_id decides
    clock.advance(1)
    tasks.create("jobs", task_id="0-later")
    tasks.create("jobs", task_id="snz", not_before=at(0.5))  # created ready (not_before passed)
    order = [tasks.reserve("jobs", "w", 60) for _ in range(4)]
    assert [t["task_id"] for t in order if t] == ["a", "b", "0-later", "snz"]


def test_lapsed_lease_reservable_after_skew(tasks: Tasks, clock: FakeClock) -> None:
    tasks.create("jobs", task_id="t-1")
    first = tasks.reserve("jobs", "w1", 10)
    assert first is not None and first["lease"]["expires_at"] == "2026-12-01T10:00:10Z"
    clock.advance(10)  # expired for the owner, not yet free for others
    assert tasks.reserve("jobs", "w2", 10) is None
    assert tasks.get("t-1")["status"] == "leased"
    clock.advance(0.499)
    assert tasks.reserve("jobs", "w2", 10) is None
    clock.advance(0.001)  # expires_at + 0.5 s
    assert tasks.get("t-1")["status"] == "ready" and tasks.get("t-1")["attempts"] == 1
    second = tasks.reserve("jobs", "w2", 10)
    assert second is not None and second["task_id"] == "t-1"
    assert second["lease"]["owner"] == "w2" and second["lease"]["token"] != first["lease"]["token"]
    assert second["attempts"] == 1 and second["record_version"] == first["record_version"] + 1


def test_lapsed_last_attempt_fails_with_lease_expired(tasks: Tasks, clock: FakeClock) -> None:
    tasks.create("jobs", task_id="t-1", max_attempts=1)
    tasks.create("jobs", task_id="t-2")
    clock.advance(1)
    assert tasks.reserve("jobs", "w1", 5)["task_id"] == "t-1"  # type: ignore[index]
    clock.advance(6)
    view = tasks.get("t-1")
    assert view["status"] == "failed" and view["error"]["code"] == "lease_expired" and view["attempts"] == 1
    assert view["lease"] is None
    # reserve hands out the next one, and passes the lapsed one by, writing it down as failed
    assert tasks.reserve("jobs", "w2", 5)["task_id"] == "t-2"  # type: ignore[index]
    assert tasks.reserve("jobs", "w3", 5) is None
    stored = tasks.store.get("t-1")
    assert stored.status == "failed" and stored.held_until is None and stored.expires_at is not None
    assert tasks.list(topic="jobs", statuses=["failed"])["items"][0]["task_id"] == "t-1"


def test_snoozed_task_ready_at_not_before(tasks: Tasks, clock: FakeClock) -> None:
    created = tasks.create("jobs", task_id="t-1", not_before=at(30))[1]
    assert created["status"] == "snoozed" and created["not_before"] == "2026-12-01T10:00:30Z"
    assert tasks.reserve("jobs", "w", 10) is None
    assert tasks.leases(topic="jobs")["items"][0]["task_id"] == "t-1"
    clock.advance(30)
    assert tasks.get("t-1")["status"] == "ready"
    assert tasks.leases(topic="jobs")["items"] == []
    got = tasks.reserve("jobs", "w", 10)
    assert got is not None and got["status"] == "leased"


def test_topic_info_counts(tasks: Tasks, clock: FakeClock) -> None:
    for i in range(4):
        tasks.create("jobs", task_id=f"j{i}")
    tasks.create("jobs", task_id="later", not_before=at(100))
    tasks.create("jobs", task_id="last", max_attempts=1)
    tasks.reserve("jobs", "w1", 10)  # j0
    tasks.reserve("jobs", "w2", 60)  # j1
    info = tasks.topic_info("jobs")
    assert (info["ready"], info["leased"], info["snoozed"]) == (3, 2, 1)
    assert [w["worker_id"] for w in info["workers"]] == ["w2", "w1"]  # same instant: by id, descending
    clock.advance(10.5)  # j0's lease lapsed: ready again
    info = tasks.topic_info("jobs")
    assert (info["ready"], info["leased"], info["snoozed"]) == (4, 1, 1)


# --- the DynamoDB item layout ---------------------------------------------------------------------


def test_dynamo_item_layout(tasks_table: str) -> None:
    import boto3

    from gnomon.adapters.dynamo_tasks import DynamoTaskStore

    ddb = boto3.client("dynamodb")
    store = DynamoTaskStore()
    rec = store.create(task("t-1", group="g", ready_at=at(1), note="x"))
    item = ddb.get_item(TableName=tasks_table, Key={"task_id": {"S": "t-1"}})["Item"]
    assert item["ready_topic"] == {"S": "reports"}
    assert item["ready_key"] == {"S": "2026-12-01T10:00:01.000Z#t-1"}
    assert item["created_key"] == {"S": "2026-12-01T10:00:00.000Z#t-1"}
    assert item["topic"] == {"S": "reports"} and item["task_group_id"] == {"S": "g"}
    assert item["record_version"] == {"N": "1"} and item["status"] == {"S": "ready"}
    assert "leased_topic" not in item and "lease_key" not in item and "expires_at" not in item
    store.update(leased(rec, at(40)), expected_version=1)
    item = ddb.get_item(TableName=tasks_table, Key={"task_id": {"S": "t-1"}})["Item"]
    assert "ready_topic" not in item and "ready_key" not in item
    assert item["leased_topic"] == {"S": "reports"}
    assert item["lease_key"] == {"S": "leased#2026-12-01T10:00:40.000Z#t-1"}
    store.create(task("t-2"))
    item = ddb.get_item(TableName=tasks_table, Key={"task_id": {"S": "t-2"}})["Item"]
    assert "task_group_id" not in item  # sparse by_group
    store.touch_worker("reports", "w1", at(1))
    topic_item = ddb.get_item(TableName=tasks_table, Key={"task_id": {"S": "topic#reports"}})["Item"]
    assert set(topic_item) == {"task_id", "workers"}
    assert topic_item["workers"] == {"M": {"w1": {"S": "2026-12-01T10:00:01.000Z"}}}
