"""Definitions with a `task` target (CONTRACT.md §5, §6, §8): each run attempt becomes one leased
task; the task's completion or failure closes the attempt; signals and heartbeat details pass
between the run and its task."""

from __future__ import annotations

from typing import Any

import pytest

from gnomon.adapters.memory_tasks import MemoryTaskStore
from gnomon.domain.errors import AlreadyDone
from gnomon.services.execute import TASK_TIMEOUT_MAX, task_id_for
from gnomon.services.tasks import Tasks, merge_inbox
from tests.unit.pipeline import CALLER, Pipeline

TOPIC = "reports"


def _pipeline(**definition: Any) -> tuple[Pipeline, Tasks]:
    p = Pipeline()
    tasks = Tasks(MemoryTaskStore(), p.clock, p.s.tokens, runs=p.s.executor)
    p.s.executor.attach_tasks(tasks)
    from gnomon.domain.model import DefinitionBody

    body = {
        "name": "job",
        "target": {"type": "task", "topic": TOPIC, "sub_topic": "eu"},
        "retry": {"max_attempts": 2, "initial_interval_seconds": 5},
        **definition,
    }
    p.s.definitions.create(DefinitionBody.model_validate(body), CALLER)
    return p, tasks


def _execute(p: Pipeline, run_id: str = "r1", input_: Any = None) -> str:
    p.s.runs.execute("job", input_, run_id, None)
    p.deliver_due()
    return run_id


def _reserve(tasks: Tasks, worker: str = "w1") -> dict[str, Any]:
    task = tasks.reserve(TOPIC, worker, 60)
    assert task is not None
    return task


def test_a_firing_creates_its_task_once_and_leaves_the_run_running() -> None:
    p, tasks = _pipeline()
    p.schedule(spec={"intervals": [{"every_seconds": 60}]})
    handled: list[Any] = []
    for _ in range(61):  # each firing delivered twice, as an at-least-once queue may
        p.s.ticker.tick()
        handled += p.deliver_due(copies=2)
        p.clock.advance(1)
    assert sorted(h.outcome for h in handled) == ["duplicate", "ran"]
    runs = p.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "running" and not p.target.calls  # the invoker is never called
    listed = tasks.list(topic=TOPIC)["items"]
    assert [t["task_id"] for t in listed] == [task_id_for(run.run_id, 1)]
    task = tasks.get(task_id_for(run.run_id, 1))
    assert task["run_id"] == run.run_id and task["max_attempts"] == 1 and task["sub_topic"] == "eu"
    assert task["data"]["run_id"] == run.run_id and task["data"]["attempt"] == 1
    assert task["data"]["schedule_id"] == "s" and task["data"]["definition"] == "job"
    assert run.doc["task_id"] == task["task_id"]
    # The attempt waits for the task: its deadline is the (bounded) task timeout, not 60 s.
    assert run.active_at is not None and run.active_at > p.clock.now()


def test_a_duplicate_run_message_creates_the_task_once() -> None:
    p, tasks = _pipeline()
    p.s.runs.execute("job", {"n": 1}, "r1", None)
    handled = p.deliver_due(copies=2)
    assert [h.outcome for h in handled] == ["ran", "duplicate"]
    assert len(tasks.list(topic=TOPIC)["items"]) == 1
    assert tasks.get(task_id_for("r1", 1))["data"]["input"] == {"n": 1}
    # Creating the same attempt's task again (a worker that died after the task write) is harmless.
    run = p.run_store.get("r1")
    assert run.status == "running" and run.doc["task_id"] == task_id_for("r1", 1)


def test_completing_the_task_completes_the_run() -> None:
    p, tasks = _pipeline()
    _execute(p)
    task = _reserve(tasks)
    done = tasks.complete(task["task_id"], "w1", {"rows": 7})
    assert done["status"] == "completed"
    run = p.run_store.get("r1")
    assert run.status == "completed" and run.doc["result"] == {"rows": 7}
    assert run.doc["attempts"][-1]["status"] == "completed"
    # A repeated complete is refused by the task and changes nothing on the run.
    with pytest.raises(AlreadyDone):
        tasks.complete(task["task_id"], "w1", {"rows": 8})
    assert p.run_store.get("r1").doc["result"] == {"rows": 7}


def test_a_failed_task_is_retried_by_the_run_policy_with_a_new_task() -> None:
    p, tasks = _pipeline()
    _execute(p)
    first = _reserve(tasks)
    tasks.fail(first["task_id"], "w1", {"code": "boom", "message": "disk full"})
    assert tasks.get(first["task_id"])["status"] == "failed"  # max_attempts 1: the run retries
    run = p.run_store.get("r1")
    assert run.status == "pending" and run.doc["error"]["code"] == "boom"
    assert tasks.reserve(TOPIC, "w1", 60) is None  # nothing until the backoff has passed
    p.collect()  # the retry message, as the queue takes it
    p.clock.advance(5)
    p.deliver_due()
    second = _reserve(tasks, "w2")
    assert second["task_id"] == task_id_for("r1", 2) and second["data"]["attempt"] == 2
    tasks.fail(second["task_id"], "w2", "still broken")
    run = p.run_store.get("r1")
    assert run.status == "failed" and run.doc["attempt"] == 2
    assert run.doc["error"] == {
        "code": "task_failed",
        "message": "the task failed",
        "details": "still broken",
    }
    p.clock.advance(60)
    p.deliver_due()
    assert tasks.reserve(TOPIC, "w1", 60) is None  # the last attempt made no third task


def test_a_stale_task_does_not_close_a_later_attempt() -> None:
    p, tasks = _pipeline()
    _execute(p)
    first = _reserve(tasks)
    tasks.fail(first["task_id"], "w1", None)
    p.collect()  # the retry message, as the queue takes it
    p.clock.advance(5)
    p.deliver_due()
    handled = p.s.executor.task_closed(tasks.get(first["task_id"]))  # reported again, late
    assert handled is not None and handled.outcome == "stale"
    assert p.run_store.get("r1").status == "running"


def test_run_signals_reach_the_task_inbox_on_heartbeat() -> None:
    p, tasks = _pipeline()
    _execute(p)
    task = _reserve(tasks)
    p.s.runs.signal("r1", "pause", {"why": "maintenance"})
    # put into the task's inbox at once, not only at the next heartbeat
    assert [s["name"] for s in tasks.get(task["task_id"])["inbox"]] == ["pause"]
    p.s.runs.signal("r1", "resume", None)
    beat = tasks.extend_lease(task["task_id"], "w1", 60)
    assert [s["name"] for s in beat["inbox"]] == ["pause", "resume"]
    assert beat["inbox"][0]["payload"] == {"why": "maintenance"}
    again = tasks.extend_lease(task["task_id"], "w1", 60)  # delivered once, not twice
    assert again["inbox"] == beat["inbox"]
    p.s.runs.signal("r1", "pause", {"why": "maintenance"})
    assert len(tasks.extend_lease(task["task_id"], "w1", 60)["inbox"]) == 3


def test_heartbeat_details_answer_the_run_query() -> None:
    p, tasks = _pipeline()
    _execute(p)
    assert p.s.runs.query("r1", "progress", None) == {"details": None}
    task = _reserve(tasks)
    tasks.extend_lease(task["task_id"], "w1", 60, details={"pct": 40}, set_details=True)
    assert p.s.runs.query("r1", "progress", None) == {"details": {"pct": 40}}
    tasks.extend_lease(task["task_id"], "w1", 60)  # without details: kept
    assert p.s.runs.query("r1", "progress", None) == {"details": {"pct": 40}}
    tasks.complete(task["task_id"], "w1", None)
    assert p.run_store.get("r1").status == "completed"


def test_a_canceled_run_withdraws_its_task_and_refuses_the_late_complete() -> None:
    p, tasks = _pipeline()
    _execute(p)
    task = _reserve(tasks)
    p.s.runs.cancel("r1", "no longer needed")
    withdrawn = tasks.get(task["task_id"])
    assert withdrawn["status"] == "failed" and withdrawn["error"]["code"] == "withdrawn"
    with pytest.raises(AlreadyDone):  # the worker's next call learns it lost the task
        tasks.extend_lease(task["task_id"], "w1", 60)
    with pytest.raises(AlreadyDone):
        tasks.complete(task["task_id"], "w1", {"ok": True})
    run = p.run_store.get("r1")
    assert run.status == "canceled" and run.doc["result"] is None
    assert any(e["type"] == "late_finish" for e in run.doc["events"])  # the withdrawal, in history
    assert not run.doc.get("lease")  # the attempt is closed: it no longer counts as running


@pytest.mark.parametrize("reserved", [True, False])
def test_a_terminated_run_withdraws_its_task(reserved: bool) -> None:
    p, tasks = _pipeline()
    _execute(p)
    if reserved:
        _reserve(tasks)
    p.s.runs.terminate("r1", "stop")
    assert tasks.reserve(TOPIC, "w2", 60) is None  # never handed out again
    assert tasks.get(task_id_for("r1", 1))["status"] == "failed"
    assert p.run_store.get("r1").status == "terminated"


def test_signals_to_a_closed_task_run_are_not_pushed() -> None:
    p, tasks = _pipeline()
    _execute(p)
    task = _reserve(tasks)
    tasks.complete(task["task_id"], "w1", None)
    from gnomon.domain.errors import AlreadyClosed

    with pytest.raises(AlreadyClosed):
        p.s.runs.signal("r1", "late", None)
    assert tasks.get(task["task_id"])["inbox"] == []


def test_a_timed_out_attempt_withdraws_its_task_and_the_retry_makes_a_new_one() -> None:
    p, tasks = _pipeline(timeout_seconds=30)
    _execute(p)
    first = tasks.reserve(TOPIC, "w1", 600)  # the worker's lease outlives the run's deadline
    assert first is not None
    p.clock.advance(30 + 31)  # the attempt's deadline (timeout + lease grace) passed
    p.s.ticker.tick()  # the sweep finds the lost attempt
    p.deliver_due()
    assert tasks.get(first["task_id"])["error"]["code"] == "withdrawn"
    with pytest.raises(AlreadyDone):
        tasks.complete(first["task_id"], "w1", {"late": True})
    p.clock.advance(10)
    p.deliver_due()
    second = _reserve(tasks, "w2")
    assert second["task_id"] == task_id_for("r1", 2)
    tasks.complete(second["task_id"], "w2", {"ok": 2})
    run = p.run_store.get("r1")
    assert run.status == "completed" and run.doc["result"] == {"ok": 2}


def test_a_lapsed_task_lease_fails_the_attempt() -> None:
    p, tasks = _pipeline(retry={"max_attempts": 1})
    _execute(p)
    _reserve(tasks)
    p.clock.advance(61)
    assert tasks.reserve(TOPIC, "w2", 60) is None  # the lapsed last lease is written down
    run = p.run_store.get("r1")
    assert run.status == "failed"


def test_task_timeout_is_bounded_and_defaults_long() -> None:
    from gnomon.services.execute import _timeout

    task = {"target": {"type": "task", "topic": TOPIC}}
    assert _timeout(task, None) == TASK_TIMEOUT_MAX
    assert _timeout({**task, "timeout_seconds": 3600}, None) == 3600
    assert _timeout({**task, "timeout_seconds": 10 * TASK_TIMEOUT_MAX}, None) == TASK_TIMEOUT_MAX
    assert _timeout({"target": {"type": "http"}}, None) == 60


def test_merge_inbox_counts_signals() -> None:
    a, b = {"name": "x", "time": "t1"}, {"name": "y", "time": "t2"}
    inbox = [a]
    assert merge_inbox(inbox, [a]) is inbox
    assert merge_inbox(inbox, [a, b, b]) == [a, b, b]
