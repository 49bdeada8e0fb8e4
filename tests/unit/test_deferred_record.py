"""A scheduled firing claimed by its overlap-ledger write alone: the run is written once, when its
attempt ends — and recorded earlier for whoever asks for it before (the API, another copy of the
firing, the next arrival once the claim's lease is over)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from gnomon.domain.errors import NotFound
from gnomon.domain.timefmt import fmt
from gnomon.ports import Invocation, Outcome
from tests.unit.pipeline import T0, Pipeline


@pytest.fixture
def p() -> Pipeline:
    pipe = Pipeline()
    pipe.definition()
    return pipe


def _count_writes(p: Pipeline) -> Counter[str]:
    writes = Counter[str]()
    store = p.run_store
    for name in ("create", "update"):
        real = getattr(store, name)

        def counted(*a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            writes[_name] += 1
            return _real(*a, **k)

        setattr(store, name, counted)
    return writes


def _first_firing(p: Pipeline, **extra: Any) -> dict[str, Any]:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, **extra)
    body = p.queue.drain()[0][0]
    p.clock.advance(10)
    return body


def test_a_firing_claimed_by_its_ledger_write_is_written_once_with_its_outcome(p: Pipeline) -> None:
    body = _first_firing(p)
    writes = _count_writes(p)
    during: list[Any] = []

    def script(inv: Invocation) -> Outcome:
        try:
            p.run_store.get(inv.run_id)
            during.append("recorded")
        except NotFound:
            during.append("not yet")
        return Outcome(status="completed", result={"ok": 1})

    p.target.script = script
    assert p.s.executor.handle(body).outcome == "ran"
    assert during == ["not yet"] and writes == {"create": 1}
    (run,) = p.runs()
    assert run.status == "completed" and run.doc["result"] == {"ok": 1} and run.active_at is None
    assert [a["status"] for a in run.doc["attempts"]] == ["completed"]
    assert [e["type"] for e in run.doc["events"]] == ["scheduled", "attempt_started", "attempt_completed"]
    assert p.target.calls[0].callback_token == run.doc["callback_token"]
    assert p.s.schedules.describe("s")["info"]["counters"]["actions"] == 1
    assert p.s.executor.handle(body).outcome == "duplicate" and len(p.target.calls) == 1


def test_asked_for_while_its_attempt_runs_it_is_recorded_then_and_the_end_updates_that_record(
    p: Pipeline,
) -> None:
    body = _first_firing(p)
    seen: list[dict[str, Any]] = []

    def script(inv: Invocation) -> Outcome:
        seen.append(p.s.runs.get(inv.run_id))  # GET /v1/runs/{id}
        listed = _list(p, statuses=["running"], page_size=5)
        seen.append({"listed": [x["run_id"] for x in listed["items"]]})
        return Outcome(status="completed")

    p.target.script = script
    assert p.s.executor.handle(body).outcome == "ran"
    view, listed = seen
    assert view["status"] == "running" and view["attempt"] == 1 and view["started_at"]
    assert listed == {"listed": [view["run_id"]]}
    (run,) = p.runs()
    assert run.status == "completed" and [a["status"] for a in run.doc["attempts"]] == ["completed"]
    assert run.doc["started_at"] == view["started_at"]
    assert [e["type"] for e in run.doc["events"]] == ["scheduled", "attempt_started", "attempt_completed"]


def test_the_schedules_first_page_lists_its_firing_in_flight_without_recording_it(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    pages: list[Any] = []

    def script(inv: Invocation) -> Outcome:
        pages.append(_pages(p))
        try:
            p.run_store.get(inv.run_id)
            pages.append("recorded")
        except NotFound:
            pages.append("not recorded")  # listing records nothing
        return Outcome(status="completed")

    p.target.script = script
    p.run_for(31)
    assert len(pages) == 6 and pages[5] == "not recorded"
    # the third firing's call: two runs recorded, the third only in the ledger (listed first);
    # a page of 2 holds the in-flight one and the newest recorded one, the token goes on
    first, rest, running_only = pages[4]
    assert [s for _, s in first] == ["running", "completed"]
    assert len(rest) == 1 and rest[0][1] == "completed"
    assert running_only == [first[0][0]]


def _list(p: Pipeline, *, page_size: int, statuses: list[str] | None = None, token: str | None = None) -> Any:
    """GET /v1/runs?schedule=s (the API's runs service)."""
    return p.s.runs.list(
        definition=None,
        schedule="s",
        statuses=statuses,
        start=None,
        end=None,
        page_token=token,
        page_size=page_size,
    )


def _pages(p: Pipeline) -> Any:
    one = _list(p, page_size=2)
    two = _list(p, page_size=2, token=one["next_page_token"])
    running = _list(p, statuses=["running"], page_size=10)
    return (
        [(x["run_id"], x["status"]) for x in one["items"]],
        [(x["run_id"], x["status"]) for x in two["items"]],
        [x["run_id"] for x in running["items"]],
    )


def test_canceled_while_its_attempt_runs_it_keeps_the_late_outcome(p: Pipeline) -> None:
    body = _first_firing(p)

    def script(inv: Invocation) -> Outcome:
        p.s.runs.cancel(inv.run_id, "stop it")
        return Outcome(status="completed", result={"late": True})

    p.target.script = script
    p.s.executor.handle(body)
    (run,) = p.runs()
    assert run.status == "canceled"
    types = [e["type"] for e in run.doc["events"]]
    assert types[-2:] == ["cancel_requested", "late_finish"], types
    assert run.doc["attempts"][-1]["closed_at"] is not None
    assert p.s.schedules.describe("s")["info"]["running_runs"] == []


def test_a_callback_before_the_targets_answer_closes_it_and_the_202_changes_nothing(p: Pipeline) -> None:
    body = _first_firing(p)

    def script(inv: Invocation) -> Outcome:
        # the target calls back inside its own call, before it answers 202
        p.s.runs.callback(inv.run_id, inv.callback_token, Outcome(status="completed", result={"early": 1}))
        return Outcome(status="accepted")

    p.target.script = script
    p.s.executor.handle(body)
    (run,) = p.runs()
    assert run.status == "completed" and run.doc["result"] == {"early": 1}
    assert [a["status"] for a in run.doc["attempts"]] == ["completed"]
    assert run.active_at is None


def test_a_202_is_written_as_running_and_its_callback_closes_it(p: Pipeline) -> None:
    body = _first_firing(p)
    p.target.script = lambda inv: Outcome(status="accepted")
    p.s.executor.handle(body)
    (run,) = p.runs()
    assert run.status == "running" and run.active_at is not None  # its lease entry
    inv = p.target.calls[0]
    p.s.runs.callback(run.run_id, inv.callback_token, Outcome(status="completed"))
    assert p.runs()[0].status == "completed"


def test_a_copy_delivered_while_the_first_calls_the_target_records_it_and_calls_nothing(
    p: Pipeline,
) -> None:
    body = _first_firing(p)
    outcomes: list[str] = []

    def script(inv: Invocation) -> Outcome:
        if not outcomes:
            outcomes.append(p.s.executor.handle(body).outcome)  # the visibility timeout ran out
        return Outcome(status="completed")

    p.target.script = script
    outcomes.append(p.s.executor.handle(body).outcome)
    assert outcomes == ["duplicate", "ran"] and len(p.target.calls) == 1
    (run,) = p.runs()
    assert run.status == "completed" and [a["status"] for a in run.doc["attempts"]] == ["completed"]
    assert p.s.schedules.describe("s")["info"]["counters"]["actions"] == 1


def test_a_late_copy_after_its_run_left_the_ledger_is_not_called_again(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = [b for b, _ in p.queue.drain()]
    for i in range(4):  # four firings run and close; each arrival drops the one before
        p.clock.advance(10)
        assert p.s.executor.handle(sent[i]).outcome == "ran"
    assert len(p.target.calls) == 4
    # a copy of the first, long after: not among the schedule's newest runs, no longer in the
    # ledger — the ledger's high-water mark sends it the create-first way, which finds its run
    assert p.s.executor.handle(sent[0]).outcome == "duplicate"
    assert len(p.target.calls) == 4
    assert p.s.schedules.describe("s")["info"]["counters"]["actions"] == 4


def test_a_claim_whose_worker_died_is_recorded_by_the_next_arrival_once_its_lease_ended() -> None:
    p = Pipeline(horizon=300)
    p.definition("job", retry={"max_attempts": 2, "initial_interval_seconds": 1})
    p.schedule(spec={"intervals": [{"every_seconds": 30}]})
    sent = [b for b, _ in p.queue.drain()]

    def dies(inv: Invocation) -> Outcome:
        raise SystemExit("worker killed")

    p.target.script = dies
    p.clock.advance(30)
    with pytest.raises(SystemExit):
        p.s.executor.handle(sent[0])
    p.target.script = lambda inv: Outcome(status="completed")
    p.clock.advance(30)  # the lease (60 s + 30 s) still runs: the second firing is skipped
    assert p.s.executor.handle(sent[1]).outcome == "skipped"
    with pytest.raises(NotFound):
        p.run_store.get(p.target.calls[0].run_id)
    p.clock.advance(61)  # over: the next arrival records the first run, whose lease the sweep ends
    assert sent[3]["nominal_time"] == fmt(p.clock.now() - timedelta(seconds=1))
    p.s.executor.handle(sent[3])
    first = p.run_store.get(p.target.calls[0].run_id)
    assert first.status == "running" and first.active_at == T0 + timedelta(seconds=30 + 90)
    p.run_for(5)
    first = p.run_store.get(first.run_id)
    assert first.status == "completed" and [a["status"] for a in first.doc["attempts"]] == [
        "timed_out",
        "completed",
    ]
    assert first.doc["attempts"][0]["error"]["code"] == "lease_expired"


def test_terminate_other_terminates_a_run_that_only_its_ledger_holds(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"overlap": "terminate_other"})
    sent = [b for b, _ in p.queue.drain()]
    p.clock.advance(10)
    inner: list[str] = []

    def script(inv: Invocation) -> Outcome:
        if inv.run_id != p.target.calls[0].run_id:
            return Outcome(status="completed")
        p.clock.advance(10)
        inner.append(p.s.executor.handle(sent[1]).outcome)  # the next firing, during this call
        return Outcome(status="completed")

    p.target.script = script
    p.s.executor.handle(sent[0])
    assert inner == ["ran"]
    first, second = p.runs()
    assert first.status == "terminated" and second.status == "completed"
    assert [e["type"] for e in first.doc["events"]][-1] == "late_finish"


def test_history_at_the_claim_carries_what_the_target_was_called_with(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, input={"k": 1})
    sent = [b for b, _ in p.queue.drain()]
    p.clock.advance(10)
    p.s.executor.handle(sent[0])
    p.clock.advance(10)
    seen: list[dict[str, Any]] = []
    p.target.script = lambda inv: seen.append(p.s.runs.get(inv.run_id)) or Outcome(status="completed")  # type: ignore[func-returns-value]
    p.s.executor.handle(sent[1])
    (view,) = seen
    inv = p.target.calls[1]
    assert view["input"] == {"k": 1} and view["scheduled_time"] == fmt(inv.scheduled_time)
    assert view["definition_version"] == 1
    recorded = p.run_store.get(inv.run_id)
    assert recorded.doc["previous_nominal_time"] == fmt(T0 + timedelta(seconds=10))


def test_its_close_leaves_the_ledger_unread_when_nothing_can_wait_for_its_place(p: Pipeline) -> None:
    body = _first_firing(p)
    reads = Counter[str]()
    store = p.s.executor._schedules  # type: ignore[attr-defined]
    real_get = store.get

    def get(schedule_id: str, **kw: Any) -> Any:
        reads[schedule_id] += 1
        return real_get(schedule_id, **kw)

    store.get = get
    assert p.s.executor.handle(body).outcome == "ran"
    assert reads == {"s": 1}  # the firing's own read; the close reads nothing
    assert p.s.schedules.describe("s")["info"]["running_runs"] == []


@pytest.mark.parametrize("overlap", ["buffer_one", "buffer_all"])
def test_a_trigger_that_waits_behind_it_records_it_and_starts_when_it_closes(
    p: Pipeline, overlap: str
) -> None:
    body = _first_firing(p)
    started: list[str] = []

    def script(inv: Invocation) -> Outcome:
        started.append(inv.run_id)
        if len(started) == 1:  # during the firing's call: a trigger that waits for its place
            code, run = p.s.runs.trigger("s", overlap, None, "k")
            assert code == 201
            p.deliver_due()
            assert p.run_store.get(run["run_id"]).status == "pending"
            assert p.run_store.get(inv.run_id).status == "running"  # recorded by the trigger
        return Outcome(status="completed")

    p.target.script = script
    assert p.s.executor.handle(body).outcome == "ran"
    p.deliver_due()  # at once: the close looked at the ledger and started the waiting run
    assert len(started) == 2
    assert [r.status for r in p.runs()] == ["completed", "completed"]


def _stale_recent(p: Pipeline, snapshot: list[Any]) -> list[bool]:
    """The run store's eventually consistent `recent` answers `snapshot` (an older page)."""
    store = p.run_store
    real = store.recent
    calls: list[bool] = []

    def recent(schedule_id: str, *, limit: int, consistent: bool = True) -> Any:
        calls.append(consistent)
        return real(schedule_id, limit=limit) if consistent else list(snapshot)

    store.recent = recent  # type: ignore[method-assign]
    return calls


def test_a_stale_page_of_newest_runs_still_gives_the_previous_success(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = [b for b, _ in p.queue.drain()]
    p.clock.advance(10)
    p.s.executor.handle(sent[0])
    old_page = p.run_store.recent("s", limit=3)
    p.clock.advance(10)
    p.s.executor.handle(sent[1])
    calls = _stale_recent(p, old_page)  # the page does not show the second run yet
    p.clock.advance(10)
    p.s.executor.handle(sent[2])
    assert calls == [False]
    assert p.target.calls[2].last_success_time == T0 + timedelta(seconds=20)  # the second's


def test_a_run_a_stale_page_shows_running_is_read_again_before_a_firing_is_skipped(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = [b for b, _ in p.queue.drain()]
    p.target.script = lambda inv: Outcome(status="accepted")  # 202: recorded running
    p.clock.advance(10)
    p.s.executor.handle(sent[0])
    (first,) = p.runs()
    page = p.run_store.recent("s", limit=3)
    assert [r.status for r in page] == ["running"]
    p.s.runs.callback(first.run_id, p.target.calls[0].callback_token, Outcome(status="completed"))
    _stale_recent(p, page)  # still shows it running
    p.target.script = lambda inv: Outcome(status="completed")
    p.clock.advance(10)
    assert p.s.executor.handle(sent[1]).outcome == "ran"  # not skipped as an overlap
    assert [r.status for r in p.runs()] == ["completed", "completed"]


def test_a_skip_recorded_by_another_copy_while_the_claim_runs_is_overruled_by_the_run(p: Pipeline) -> None:
    """A copy of the second firing decided on a skip while the first run still ran; the first
    closed, a second copy claimed the firing and called its target — and only then did the
    first copy write its skip. The firing ran: its record says so, and the skip is not counted."""
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = [b for b, _ in p.queue.drain()]
    p.clock.advance(10)
    p.s.executor.handle(sent[0])
    p.clock.advance(10)

    def script(inv: Invocation) -> Outcome:
        sched = p.schedule_store.get("s")
        late_skip = p.s.executor._skip(sched, inv.nominal_time, "overlap", "skipped_overlap")  # type: ignore[attr-defined]
        assert late_skip.outcome == "skipped" and p.run_store.get(inv.run_id).status == "skipped"
        return Outcome(status="completed", result={"ran": True})

    p.target.script = script
    assert p.s.executor.handle(sent[1]).outcome == "ran"
    second = p.runs()[1]
    assert second.status == "completed" and second.doc["result"] == {"ran": True}
    assert [a["status"] for a in second.doc["attempts"]] == ["completed"] and second.doc["reason"] is None
    counters = p.s.schedules.describe("s")["info"]["counters"]
    assert counters["skipped_overlap"] == 0 and counters["actions"] == 2
