"""A run write whose answer is lost (found by the chaos harness, `tests/chaos`).

DynamoDB may apply a write and the caller still see an error: the response is lost (a read
timeout), or the SDK retries it and the retry fails on the condition the first try satisfied
(ConditionalCheckFailed on a put that created the item). Before the run store recognised its
own writes, a worker whose claim was answered so took its own run for someone else's
(`duplicate`), never invoked the target (the run waited for its lease to expire) and its
counters missed the run; a close answered so was never counted in `/v1/stats`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from gnomon.adapters.dynamo import DynamoRunStore, DynamoScheduleStore
from gnomon.domain.errors import AlreadyExists, Conflict
from gnomon.domain.runs import scheduled_run_id
from gnomon.ports import RunRecord, ScheduleRecord
from tests.chaos.faults import Faults

NOMINAL = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
RUN_ID = scheduled_run_id("s", "g1", NOMINAL)


@pytest.fixture
def faults(aws: None) -> Iterator[Faults]:
    f = Faults(seed=1)
    with f.installed():
        f.enabled = True
        yield f


def _run(status: str = "running", **doc: object) -> RunRecord:
    return RunRecord(
        run_id=RUN_ID,
        doc={"run_id": RUN_ID, "status": status, **doc},
        schedule_id="s",
        definition="job",
        nominal_time=NOMINAL,
        status=status,
    )


@pytest.mark.parametrize("kind", ["ambiguous", "ambiguous_retried"])
def test_a_create_whose_answer_was_lost_is_still_the_callers(faults: Faults, kind: str) -> None:
    runs = DynamoRunStore()
    faults.script("PutItem", kind)
    created = runs.create(_run(owner="w1"))
    assert faults.counts[kind] == 1
    assert created.version == 1 and runs.get(RUN_ID).doc["owner"] == "w1"
    with pytest.raises(AlreadyExists):  # another writer still finds it taken
        runs.create(_run(owner="w2"))


@pytest.mark.parametrize("kind", ["ambiguous", "ambiguous_retried"])
def test_an_update_whose_answer_was_lost_is_still_the_callers(faults: Faults, kind: str) -> None:
    runs = DynamoRunStore()
    runs.create(_run())
    faults.script("UpdateItem", kind)
    saved = runs.update(_run("completed", by="w1"), expected_version=1)
    assert faults.counts[kind] == 1
    assert saved.version == 2 and saved.status == "completed"
    with pytest.raises(Conflict):  # another writer of version 1 still loses
        runs.update(_run("failed", by="w2"), expected_version=1)
    assert runs.get(RUN_ID).doc["by"] == "w1"


def test_a_write_that_did_not_happen_still_fails(faults: Faults) -> None:
    runs = DynamoRunStore()
    runs.create(_run())
    for _ in range(4):  # pynamodb's client makes 4 attempts: every one throttled
        faults.script("UpdateItem", "throttle")
    with pytest.raises(Exception, match="Throughput|Throttl"):
        runs.update(_run("completed"), expected_version=1)
    assert sum(n for k, n in faults.counts.items() if k.startswith("throttle")) == 4
    assert runs.get(RUN_ID).version == 1


@pytest.mark.parametrize("kind", ["ambiguous", "ambiguous_retried"])
def test_a_schedule_update_whose_answer_was_lost_is_still_the_callers(faults: Faults, kind: str) -> None:
    """The overlap ledger's write also counts the firing's `actions`: taken for someone else's
    write, the worker counted the action again (the chaos harness's long form: one slip in
    10 210 firings)."""
    schedules, rec = _schedule()
    faults.script("UpdateItem", kind)
    saved = schedules.update(
        ScheduleRecord(**{**rec.__dict__, "doc": {"state": {}, "by": "w1"}}),
        expected_version=1,
        counters={"actions": 1},
    )
    assert faults.counts[kind] == 1
    assert saved.version == 2 and saved.counters == {"actions": 1}
    with pytest.raises(Conflict):  # another writer of version 1 still loses
        schedules.update(
            ScheduleRecord(**{**rec.__dict__, "doc": {"state": {}, "by": "w2"}}), expected_version=1
        )
    stored = schedules.get("s")
    assert stored.doc["by"] == "w1" and stored.counters == {"actions": 1}


@pytest.mark.parametrize("kind", ["ambiguous", "ambiguous_retried"])
def test_a_counter_add_whose_answer_was_lost_counts_once(faults: Faults, kind: str) -> None:
    from gnomon.adapters.stats_dynamo import DynamoStatsStore

    schedules, _ = _schedule()
    faults.script("UpdateItem", kind)
    schedules.add_counters("s", {"actions": 1})
    schedules.add_counters("s", {"actions": 1})
    assert faults.counts[kind] == 1
    assert schedules.get("s").counters == {"actions": 2}

    stats = DynamoStatsStore()
    faults.script("UpdateItem", kind)
    stats.add("k", {"completed": 1})
    stats.add("k", {"completed": 2})
    assert faults.counts[kind] == 2
    assert stats.get_many(["k"]) == {"k": {"completed": 3}}


def _schedule() -> tuple[DynamoScheduleStore, ScheduleRecord]:
    """A stored schedule "s" (version 1) and its store."""
    schedules = DynamoScheduleStore()
    rec = ScheduleRecord(
        schedule_id="s",
        doc={"state": {}},
        generation="g1",
        definition="job",
        group="default",
        next_fire_at=None,
    )
    schedules.create(rec)
    return schedules, rec
