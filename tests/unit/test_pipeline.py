"""The firing pipeline — ticker, queue, worker — on in-memory stores with a fake clock."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.domain.errors import NotFound
from gnomon.domain.model import ScheduleUpdate
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import Outcome
from tests.unit.pipeline import T0, Pipeline


@pytest.fixture
def p() -> Pipeline:
    pipe = Pipeline()
    pipe.definition()
    return pipe


def test_firings_are_enqueued_with_delays_that_land_on_their_second(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 5}]})
    sent = p.queue.drain()  # the create itself plans the horizon
    assert [b["nominal_time"] for b, _ in sent] == [fmt(T0 + timedelta(seconds=s)) for s in range(5, 61, 5)]
    assert [d for _, d in sent] == list(range(5, 61, 5))
    assert all(b["kind"] == "firing" and b["config_version"] == 1 for b, _ in sent)
    assert p.s.ticker.tick().firings_enqueued == 0  # nothing new within the horizon


def test_each_firing_runs_once_and_is_recorded(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.run_for(65)
    runs = p.runs()
    assert [r.status for r in runs] == ["completed"] * 6
    assert [r.doc["nominal_time"] for r in runs] == [
        fmt(T0 + timedelta(seconds=s)) for s in range(10, 61, 10)
    ]
    assert len(p.target.calls) == 6
    inv = p.target.calls[1]
    assert inv.previous_nominal_time == T0 + timedelta(seconds=10)
    assert inv.last_success_time == T0 + timedelta(seconds=10)
    described = p.s.schedules.describe("s")
    assert described["info"]["counters"]["actions"] == 6
    assert described["info"]["recent_actions"][0]["status"] == "completed"
    assert described["info"]["last_fire_time"] == fmt(T0 + timedelta(seconds=60))


def test_a_duplicated_message_runs_once_even_concurrently(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 30}]})
    body, _ = p.queue.drain()[0]
    p.clock.advance(30)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        outcomes.append(p.s.executor.handle(body).outcome)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["duplicate"] * 3 + ["ran"]
    assert len(p.target.calls) == 1


# A far `at` time makes a schedule aperiodic: the due index plans it, not the phase index.
APERIODIC = {"at": ["2099-01-01T00:00:00Z"]}


def test_a_ticker_dying_before_its_advance_and_two_tickers_racing_run_each_firing_once(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 20}], **APERIODIC})
    p.queue.drain()
    store = p.schedule_store
    real_update, real_get = store.update, store.get
    # 1. a ticker that dies between enqueue and advance: its messages are out, the cursor is not moved
    p.clock.advance(61)
    store.update = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed"))  # type: ignore[method-assign]
    assert p.s.ticker.tick().errors
    store.update = real_update  # type: ignore[method-assign]
    assert p.s.ticker.tick().firings_enqueued == 3  # the next tick enqueues the same firings again
    # 2. two tickers that both read the schedule before either advances it
    p.clock.advance(60)
    barrier = threading.Barrier(2, timeout=5)
    first_reads = iter(range(2))

    def get_then_wait(schedule_id: str):  # type: ignore[no-untyped-def]
        rec = real_get(schedule_id)
        if next(first_reads, None) is not None:  # only the first read of each ticker waits
            barrier.wait()
        return rec

    store.get = get_then_wait  # type: ignore[method-assign]
    threads = [threading.Thread(target=lambda: p.s.ticker.plan("s")) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.get = real_get  # type: ignore[method-assign]
    p.collect()
    sent = Counter(b["nominal_time"] for _, b in p.pending)
    assert sent[fmt(T0 + timedelta(seconds=80))] == 2  # from the dead ticker and its successor
    assert sent[fmt(T0 + timedelta(seconds=140))] == 2  # from both racing tickers
    p.run_for(130)
    counts = Counter(r.doc["nominal_time"] for r in p.runs())
    assert len(counts) >= 9 and all(c == 1 for c in counts.values())
    assert len(p.target.calls) == len(counts)


def test_a_failing_target_is_retried_with_backoff_then_fails_with_history(p: Pipeline) -> None:
    p.definition("flaky", retry={"max_attempts": 3, "initial_interval_seconds": 2, "backoff_coefficient": 3})
    p.target.script = lambda inv: Outcome(status="failed", error={"code": "http_500", "message": "boom"})
    code, run = p.s.runs.execute("flaky", {"n": 1}, None, None)
    assert code == 201 and run["status"] == "pending"
    p.deliver_due()
    first = p.s.runs.get(run["run_id"])
    assert first["status"] == "pending" and first["attempt"] == 1
    assert [d for _, d in p.queue.sent] == [] and p.pending[0][0] == T0 + timedelta(seconds=2)
    p.clock.advance(2)
    p.deliver_due()
    p.clock.advance(6)  # 2 × 3^1
    p.deliver_due()
    final = p.s.runs.get(run["run_id"])
    assert final["status"] == "failed" and final["attempt"] == 3
    assert final["error"]["code"] == "http_500"
    history = p.s.runs.history(run["run_id"], 0)
    assert [a["status"] for a in history["attempts"]] == ["failed"] * 3
    assert all(a["input"] == {"n": 1} for a in history["attempts"])
    assert [inv.attempt for inv in p.target.calls] == [1, 2, 3]


def test_non_retryable_errors_end_at_once(p: Pipeline) -> None:
    p.target.script = lambda inv: Outcome(status="failed", error={"code": "http_404"}, retryable=False)
    _, run = p.s.runs.execute("job", {}, None, None)
    p.deliver_due()
    assert p.s.runs.get(run["run_id"])["status"] == "failed"
    assert len(p.target.calls) == 1


def test_a_timed_out_last_attempt_ends_timed_out(p: Pipeline) -> None:
    p.definition("slow", retry={"max_attempts": 1})
    p.target.script = lambda inv: Outcome(status="timed_out", error={"code": "timeout"})
    _, run = p.s.runs.execute("slow", {}, None, None)
    p.deliver_due()
    assert p.s.runs.get(run["run_id"])["status"] == "timed_out"


def test_a_worker_dying_after_its_claim_loses_only_that_attempt(p: Pipeline) -> None:
    p.definition("dies", timeout_seconds=10, retry={"max_attempts": 2, "initial_interval_seconds": 1})
    calls = {"n": 0}

    def script(inv):  # the first worker dies mid-run: the invocation never returns
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("worker killed")
        return Outcome(status="completed", result="second time lucky")

    p.target.script = script
    _, run = p.s.runs.execute("dies", {}, None, None)
    p.collect()
    body = p.pending.pop(0)[1]
    with pytest.raises(SystemExit):
        p.s.executor.handle(body)
    assert p.s.runs.get(run["run_id"])["status"] == "running"
    p.clock.advance(45)  # timeout 10 + lease grace 30
    p.s.ticker.tick()  # the sweep finds the expired lease
    p.deliver_due()
    p.clock.advance(1)
    p.deliver_due()
    final = p.s.runs.get(run["run_id"])
    assert final["status"] == "completed" and final["attempt"] == 2
    attempts = p.s.runs.history(run["run_id"], 0)["attempts"]
    assert [a["status"] for a in attempts] == ["timed_out", "completed"]
    assert attempts[0]["error"]["code"] == "lease_expired"


def test_an_update_inside_the_horizon_drops_the_old_firings_as_stale(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.collect()
    p.s.schedules.update("s", _update(input={"v": 2}), _caller())
    p.run_for(62)
    runs = p.runs()
    assert [r.status for r in runs] == ["completed"] * 6
    assert all(inv.input == {"v": 2} for inv in p.target.calls)
    assert p.s.schedules.describe("s")["info"]["counters"]["dropped_stale"] == 6


def test_a_pause_inside_the_horizon_records_skipped_paused_and_delete_drops(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.collect()
    p.s.schedules.pause("s", "hold", None, _caller())
    p.clock.advance(25)
    p.deliver_due()
    runs = p.runs()
    assert [(r.status, r.doc["reason"]) for r in runs] == [("skipped", "paused")] * 2
    p.s.schedules.delete("s")
    p.clock.advance(60)
    assert {h.outcome for h in p.deliver_due()} == {"deleted"}
    assert not p.target.calls


def test_overlap_skip_records_the_skipped_firing(p: Pipeline) -> None:
    p.target.script = lambda inv: Outcome(status="accepted")  # stays running until its callback
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.run_for(25)
    statuses = [(r.status, r.doc["reason"]) for r in p.runs()]
    assert statuses[:2] == [("running", None), ("skipped", "overlap")]
    assert p.s.schedules.describe("s")["info"]["counters"]["skipped_overlap"] >= 1


def test_async_completion_through_the_callback(p: Pipeline) -> None:
    p.target.script = lambda inv: Outcome(status="accepted")
    _, run = p.s.runs.execute("job", {}, None, None)
    p.deliver_due()
    token = p.target.calls[0].callback_token
    from gnomon.domain.errors import Conflict

    with pytest.raises(Conflict):
        p.s.runs.callback(run["run_id"], "wrong", Outcome(status="completed"))
    done = p.s.runs.callback(run["run_id"], token, Outcome(status="completed", result={"rows": 3}))
    assert done["status"] == "completed" and done["result"] == {"rows": 3}


def test_catch_up_after_an_outage_skips_what_is_older_than_the_window(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 60}]}, policies={"catchup_window_seconds": 180})
    p.queue.drain()
    p.clock.advance(600)  # ten minutes of downtime
    p.run_for(2)
    runs = p.runs()
    skipped = [r for r in runs if r.status == "skipped"]
    ran = [r for r in runs if r.status == "completed"]
    assert {r.doc["reason"] for r in skipped} == {"missed_catchup_window"}
    # 10:01 was enqueued before the outage (and lost with it here); 10:02–10:06 are older than
    # the 3-minute window at 10:10; 10:07–10:10 catch up at once.
    assert [r.doc["nominal_time"][11:16] for r in skipped] == ["10:02", "10:03", "10:04", "10:05", "10:06"]
    assert [r.doc["nominal_time"][11:16] for r in ran] == ["10:07", "10:08", "10:09", "10:10"]
    assert p.s.schedules.describe("s")["info"]["counters"]["missed_catchup_window"] == 5


def test_remaining_actions_pause_the_schedule_at_zero(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, state={"remaining_actions": 2})
    p.run_for(65)
    assert [r.status for r in p.runs()] == ["completed", "completed"]
    state = p.s.schedules.describe("s")["state"]
    assert state == {
        "paused": True,
        "note": "remaining actions exhausted",
        "paused_until": None,
        "remaining_actions": 0,
    }


def test_retry_endpoint_and_execute_idempotency(p: Pipeline) -> None:
    p.definition("once", retry={"max_attempts": 1})
    p.target.script = lambda inv: Outcome(status="failed", error={"code": "x"})
    code, run = p.s.runs.execute("once", {"a": 1}, "my-run-1", None)
    assert code == 201
    assert p.s.runs.execute("once", {"a": 1}, "my-run-1", None)[0] == 200
    from gnomon.domain.errors import AlreadyExists, Conflict

    with pytest.raises(AlreadyExists):
        p.s.runs.execute("once", {"a": 2}, "my-run-1", None)
    p.deliver_due()
    assert p.s.runs.get("my-run-1")["status"] == "failed"
    p.target.script = lambda inv: Outcome(status="completed")
    assert p.s.runs.retry("my-run-1")["status"] == "pending"
    p.deliver_due()
    assert p.s.runs.get("my-run-1")["status"] == "completed"
    with pytest.raises(Conflict):
        p.s.runs.retry("my-run-1")


def _update(**fields):
    from gnomon.domain.model import ScheduleUpdate

    return ScheduleUpdate.model_validate(fields)


def _caller():
    from tests.unit.pipeline import CALLER

    return CALLER


# -- overlap policies (CONTRACT.md §5) ----------------------------------------------------------
# A firing every 10 s; each run stays running (a slow target) until the first one is finished.
# Rows: policy, max_concurrency → (status, reason) of the three firings at 10, 20 and 30 s, then
# after the first run's attempt returns; and the counters that moved.
OVERLAP = [
    ("skip", None, "R S S", "C S S", {"skipped_overlap": 2}),
    ("buffer_one", None, "R P S", "C R S", {"skipped_overlap": 1}),
    ("buffer_all", None, "R P P", "C R P", {}),
    ("buffer_all", 2, "R R P", "C R R", {}),
    ("allow_all", None, "R R R", "C R R", {}),
    ("allow_all", 2, "R R P", "C R R", {}),
    # canceled at once but still running until its attempt returns; then the newest waiting run
    # starts and the older waiting one gives way (Temporal: the newest wins)
    ("cancel_other", None, "X P P", "X S R", {"skipped_overlap": 1}),
    ("terminate_other", None, "T T R", "T T R", {}),
]
_CODE = {
    "R": ("running", None),
    "P": ("pending", None),
    "S": ("skipped", "overlap"),
    "C": ("completed", None),
    "X": ("canceled", None),
    "T": ("terminated", None),
}


@pytest.mark.parametrize(("policy", "max_concurrency", "before", "after", "counters"), OVERLAP)
def test_overlap_policies(
    p: Pipeline, policy: str, max_concurrency: int | None, before: str, after: str, counters: dict[str, int]
) -> None:
    p.hold()
    p.schedule(
        spec={"intervals": [{"every_seconds": 10}]},
        policies={"overlap": policy, "max_concurrency": max_concurrency},
    )
    p.run_for(35)
    assert p.statuses() == [_CODE[c] for c in before.split()]
    waiting = [r for r in p.runs() if r.status == "pending"]
    assert all(r.doc["buffered"] and r.doc["attempt"] == 0 for r in waiting)  # recorded, no message
    assert not any(b.get("run_id") in {r.run_id for r in waiting} for b, _ in p.queue.sent)
    p.finish(p.runs()[0].run_id)
    assert p.statuses() == [_CODE[c] for c in after.split()]
    moved = {k: v for k, v in p.s.schedules.describe("s")["info"]["counters"].items() if v and k != "actions"}
    assert moved == counters
    started = {inv.run_id for inv in p.target.calls}
    assert len(p.target.calls) == len(started)  # nothing started twice
    assert started == {r.run_id for r in p.runs() if r.doc["attempt"] > 0}


def test_cancel_other_starts_the_new_run_only_when_the_canceled_attempt_closes(p: Pipeline) -> None:
    held = p.hold()
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"overlap": "cancel_other"})
    p.run_for(25)
    first, second = p.runs()
    assert first.status == "canceled" and first.doc["cancel_requested_at"] and first.run_id in held
    assert second.status == "pending" and second.run_id not in held
    assert p.s.schedules.describe("s")["info"]["running_runs"] == [first.run_id]  # still counts
    p.finish(first.run_id, Outcome(status="completed", result={"late": True}))
    first, second = p.runs()
    assert first.status == "canceled" and first.doc["error"]["code"] == "canceled"
    history = p.s.runs.history(first.run_id, 0)
    assert [e["type"] for e in history["events"]][-2:] == ["cancel_requested", "late_finish"]
    assert history["attempts"][-1]["closed_at"] is not None
    assert second.status == "running" and second.run_id in held


def test_cancel_other_whose_canceled_attempt_is_lost_starts_the_new_run_when_its_lease_ends(
    p: Pipeline,
) -> None:
    p.hold()  # the first attempt never returns: its worker is gone
    at = [fmt(T0 + timedelta(seconds=s)) for s in (10, 20)]
    p.schedule(spec={"at": at}, policies={"overlap": "cancel_other"})
    p.run_for(25)
    first, second = p.runs()
    assert (first.status, second.status) == ("canceled", "pending")
    p.run_for(60, step=5)  # the lease (timeout 60 s + 30 s) has not ended yet
    assert p.run_store.get(second.run_id).status == "pending"
    p.run_for(30, step=5)
    assert p.run_store.get(second.run_id).status == "running"
    attempt = p.s.runs.history(first.run_id, 0)["attempts"][-1]
    assert attempt["closed_at"] is not None and attempt["error"]["code"] == "lease_expired"
    assert p.run_store.get(first.run_id).status == "canceled"


def test_terminate_other_stops_the_running_run_at_once(p: Pipeline) -> None:
    p.hold()
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"overlap": "terminate_other"})
    p.run_for(25)
    first, second = p.runs()
    assert (first.status, second.status) == ("terminated", "running")
    assert first.doc["error"]["code"] == "terminated" and first.doc["closed_at"] == fmt(
        T0 + timedelta(seconds=20)
    )
    p.finish(first.run_id)  # the terminated attempt's late return changes nothing
    assert p.run_store.get(first.run_id).status == "terminated"
    assert p.s.runs.history(first.run_id, 0)["events"][-1]["type"] == "late_finish"


def test_buffered_runs_start_once_under_duplicate_deliveries_and_racing_closers(p: Pipeline) -> None:
    held = p.hold()
    p.schedule(
        spec={"intervals": [{"every_seconds": 10}]},
        policies={"overlap": "buffer_one"},
        state={"remaining_actions": 5},
    )
    for _ in range(25):  # every message delivered twice
        p.s.ticker.tick()
        p.deliver_due(copies=2)
        p.clock.advance(1)
    assert p.statuses() == [("running", None), ("pending", None)]
    first = p.runs()[0].run_id

    def twice_at_once(action: Callable[[], Any]) -> list[Any]:
        barrier = threading.Barrier(2)
        out: list[Any] = []

        def go() -> None:
            barrier.wait()
            out.append(action())

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    # the worker's attempt returning twice at once: one closes it and starts the waiting run
    record = held.pop(first)
    closed = twice_at_once(lambda: p.s.executor.finish(record, Outcome(status="completed")).outcome)
    assert sorted(closed) == ["duplicate", "ran"]
    p.collect()
    starts = [body for _, body in p.pending if body["kind"] == "run"]
    assert len(starts) == 1
    # that start message delivered twice at once: claimed, counted and invoked once
    started = twice_at_once(lambda: p.s.executor.handle(starts[0]).outcome)
    assert sorted(started) == ["duplicate", "ran"]
    assert p.statuses() == [("completed", None), ("running", None)]
    assert len(p.target.calls) == 2 and len({c.run_id for c in p.target.calls}) == 2
    described = p.s.schedules.describe("s")
    assert described["info"]["counters"]["actions"] == 2
    assert described["state"]["remaining_actions"] == 3


def test_the_sweep_never_starts_a_buffered_run(p: Pipeline) -> None:
    p.hold()
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"overlap": "buffer_one"})
    p.run_for(25)
    waiting = p.runs()[1]
    assert waiting.status == "pending" and waiting.active_at is not None  # only a watchdog
    store = p.run_store
    store.update(replace(waiting, active_at=p.clock.now()), expected_version=waiting.version)
    p.run_for(2)
    assert p.run_store.get(waiting.run_id).status == "pending"
    assert len(p.target.calls) == 1


def test_a_lost_start_or_a_closer_dying_before_the_ledger_is_repaired_by_the_watchdog(p: Pipeline) -> None:
    p.hold()
    at = [fmt(T0 + timedelta(seconds=s)) for s in (10, 20, 21)]  # no later arrival repairs it
    p.schedule(spec={"at": at}, policies={"overlap": "buffer_all"})
    p.run_for(25)
    assert p.statuses() == [("running", None), ("pending", None), ("pending", None)]
    first, second, third = (r.run_id for r in p.runs())
    # 1. the closer wrote the ledger, then died before sending the waiting run's message
    real_send = p.queue.send
    p.queue.send = lambda msgs: real_send([m for m in msgs if m.body.get("kind") != "run"])  # type: ignore[method-assign]
    p.finish(first)
    p.queue.send = real_send  # type: ignore[method-assign]
    assert p.run_store.get(second).status == "pending"
    p.run_for(4 * 60, step=10)  # the ledger's watchdog: the ticker asks a worker to settle it
    assert p.run_store.get(second).status == "running"
    # 2. a run closed but its worker died before leaving the ledger
    release = p.s.executor._release
    p.s.executor._release = lambda run, **_: None  # type: ignore[method-assign]
    p.finish(second)
    p.s.executor._release = release  # type: ignore[method-assign]
    assert p.run_store.get(third).status == "pending"
    p.run_for(4 * 60, step=10)
    assert p.run_store.get(third).status == "running"


# -- backfill -------------------------------------------------------------------------------------


def test_backfill_records_at_once_and_starts_at_most_backfill_rate_per_second(p: Pipeline) -> None:
    p.schedule(
        spec={"intervals": [{"every_seconds": 60}], "jitter_seconds": 30},
        policies={"overlap": "allow_all", "backfill_rate": 4},
    )
    p.run_for(95)  # the firing at 10:01 runs as scheduled (jittered)
    scheduled = p.runs()
    assert [r.doc["trigger"] for r in scheduled] == ["schedule"]
    start, end = T0 - timedelta(minutes=10), T0 + timedelta(minutes=1)  # both ends included
    code, answer = p.s.schedules.backfill("s", start, end, None, dry_run=False)
    assert code == 201
    assert answer["fire_times"] == [fmt(start + timedelta(minutes=m)) for m in range(12)]
    assert answer["runs_created"] == 11  # 10:01 already has its run: neither re-run nor counted
    backfilled = [r for r in p.runs() if r.doc["trigger"] == "backfill"]
    assert len(backfilled) == 11 and all(r.status == "pending" for r in backfilled)
    assert all(r.doc["scheduled_time"] == r.doc["nominal_time"] for r in backfilled)  # no jitter
    (progress,) = p.s.schedules.describe("s")["info"]["backfills"]
    assert {k: progress[k] for k in ("start", "end", "total", "started", "overlap")} == {
        "start": fmt(start),
        "end": fmt(end),
        "total": 11,
        "started": 0,
        "overlap": "allow_all",
    }
    p.run_for(5, step=0.25)
    backfilled = [r for r in p.runs() if r.doc["trigger"] == "backfill"]
    assert all(r.status == "completed" for r in backfilled)
    starts = sorted(parse(r.doc["started_at"]) for r in backfilled)
    # never more than 4 starts within any second
    assert all((starts[i + 4] - starts[i]).total_seconds() >= 1 for i in range(len(starts) - 4))
    assert p.s.schedules.describe("s")["info"]["backfills"][0]["started"] == 11
    assert p.s.schedules.backfill("s", start, end, None, dry_run=False)[1]["runs_created"] == 0


def test_backfill_ignores_pause_and_remaining_actions_and_applies_its_overlap(p: Pipeline) -> None:
    p.hold()
    p.schedule(spec={"cron": ["0 * * * *"]}, state={"paused": True, "remaining_actions": 0})
    code, answer = p.s.schedules.backfill(
        "s", T0 - timedelta(hours=3), T0 - timedelta(hours=1), "buffer_all", dry_run=False
    )
    assert (code, answer["runs_created"]) == (201, 3)
    p.run_for(2)
    assert p.statuses() == [("running", None), ("pending", None), ("pending", None)]
    for _ in range(3):
        p.finish(next(r.run_id for r in p.runs() if r.status == "running"))
    assert [s for s, _ in p.statuses()] == ["completed"] * 3
    assert [inv.nominal_time for inv in p.target.calls] == [T0 - timedelta(hours=h) for h in (3, 2, 1)]
    # under the schedule's own policy (skip) the others are skipped while the first runs
    p.s.schedules.backfill("s", T0 - timedelta(hours=6), T0 - timedelta(hours=4), None, dry_run=False)
    p.run_for(2)
    assert p.statuses()[:3] == [("running", None), ("skipped", "overlap"), ("skipped", "overlap")]
    assert p.s.schedules.describe("s")["state"]["paused"] is True


def test_a_backfill_beyond_its_head_is_started_by_the_sweep(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gnomon.services import schedules

    monkeypatch.setattr(schedules, "KICK_MAX", 3)  # the API hands the ticker only the first 3
    p.schedule(
        spec={"intervals": [{"every_seconds": 60}]}, policies={"overlap": "allow_all", "backfill_rate": 4}
    )
    code, answer = p.s.schedules.backfill(
        "s", T0 - timedelta(minutes=12), T0 - timedelta(minutes=1), None, dry_run=False
    )
    assert answer["runs_created"] == 12
    kicked = [r for r in p.runs() if r.active_at is not None and r.active_at > T0]
    assert len(kicked) == 3  # the others are within the sweep's reach already
    p.run_for(4, step=0.25)
    backfilled = [r for r in p.runs() if r.doc["trigger"] == "backfill"]
    assert [r.status for r in backfilled] == ["completed"] * 12
    # never before its slot, never more than 4 within a second (this worker takes one message
    # at a time, in the order the queue hands them out, so a run may start a little late)
    assert all(parse(r.doc["started_at"]) >= parse(r.doc["not_before"]) for r in backfilled)
    assert max(Counter(r.doc["started_at"][:19] for r in backfilled).values()) == 4


def test_trigger_immediately_and_initial_backfill_on_create(p: Pipeline) -> None:
    p.schedule(
        spec={"cron": ["0 0 * * *"]},
        trigger_immediately=True,
        initial_backfill=[{"start": fmt(T0 - timedelta(days=2)), "end": fmt(T0), "overlap": "allow_all"}],
        policies={"overlap": "buffer_all"},
    )
    p.run_for(2)
    runs = p.runs()
    by_trigger = Counter((r.doc["trigger"], r.status) for r in runs)
    assert by_trigger == {("trigger", "completed"): 1, ("backfill", "completed"): 2}
    assert [r.doc["nominal_time"] for r in runs if r.doc["trigger"] == "backfill"] == [
        "2026-11-30T00:00:00Z",
        "2026-12-01T00:00:00Z",
    ]
    assert p.s.schedules.describe("s")["info"]["backfills"][0]["total"] == 2


# -- pause_on_failure, action_after_completion, pause until -------------------------------------

PAUSE_ON_FAILURE = [
    # outcome of every attempt, max_attempts → the first run's status, paused, the note's start
    ("failed", 1, "failed", True, "paused due to run failure: "),
    ("failed", 3, "failed", True, "paused due to run failure: "),
    ("timed_out", 2, "timed_out", True, "paused due to run timeout: "),
    ("completed", 1, "completed", False, ""),
]


@pytest.mark.parametrize(("outcome", "attempts", "status", "paused", "note"), PAUSE_ON_FAILURE)
def test_pause_on_failure(
    p: Pipeline, outcome: str, attempts: int, status: str, paused: bool, note: str
) -> None:
    p.definition(
        "flaky", retry={"max_attempts": attempts, "initial_interval_seconds": 1, "backoff_coefficient": 1}
    )
    p.target.script = lambda inv: Outcome(
        status=outcome, error=None if outcome == "completed" else {"code": "x", "message": "boom"}
    )
    p.schedule(
        definition="flaky", spec={"intervals": [{"every_seconds": 10}]}, policies={"pause_on_failure": True}
    )
    p.run_for(25)
    runs = p.runs()
    assert runs[0].status == status and runs[0].doc["attempt"] == attempts
    state = p.s.schedules.describe("s")["state"]
    assert state["paused"] is paused
    if paused:
        assert state["note"].startswith(note + runs[0].run_id)
        # the next firing was already enqueued: it meets the paused schedule
        assert (runs[1].status, runs[1].doc["reason"]) == ("skipped", "paused")
    else:
        assert runs[1].status == "completed"


def test_action_after_completion_deletes_the_schedule_once_nothing_is_left(p: Pipeline) -> None:
    p.definition("long", timeout_seconds=840)  # its attempts' leases outlast the test
    held = p.hold()
    at = [fmt(T0 + timedelta(seconds=s)) for s in (5, 10)]
    p.schedule(
        definition="long",
        spec={"at": at},
        policies={"action_after_completion": "delete", "overlap": "allow_all"},
    )
    p.run_for(15)
    assert len(held) == 2 and p.s.schedules.describe("s")["info"]["completed"] is True
    p.finish(p.runs()[0].run_id)
    p.run_for(200, step=10)
    assert p.s.schedules.describe("s")["schedule_id"] == "s"  # a run of it is still running
    p.finish(p.runs()[1].run_id)
    p.run_for(2)
    with pytest.raises(NotFound):
        p.s.schedules.describe("s")
    assert [r.status for r in p.runs()] == ["completed", "completed"]


def test_pause_until_counts_the_firings_that_fell_while_paused(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})  # plans 10:00:10 … 10:01:00 at once
    p.clock.advance(1)
    p.s.schedules.pause("s", "hold", T0 + timedelta(seconds=125), _caller())
    p.run_for(130)
    runs = p.runs()
    paused = [r for r in runs if r.status == "skipped"]
    assert len(paused) == 6 and {r.doc["reason"] for r in paused} == {"paused"}  # enqueued before
    info = p.s.schedules.describe("s")
    assert info["state"]["paused"] is False and info["state"]["note"] == "unpaused (until reached)"
    # 10:00:10 … 10:02:00 fell while paused: 6 recorded as they arrived, 6 only counted
    assert info["info"]["counters"]["skipped_paused"] == 12
    assert [r.doc["nominal_time"] for r in runs if r.status == "completed"] == [
        fmt(T0 + timedelta(seconds=130))
    ]


def test_the_schedule_list_shows_the_last_fire_time(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    listed = p.s.schedules.list(
        group=None, definition=None, paused=None, tag=None, page_token=None, page_size=10
    )
    assert listed["items"][0]["last_fire_time"] is None
    p.run_for(25)
    listed = p.s.schedules.list(
        group=None, definition=None, paused=None, tag=None, page_token=None, page_size=10
    )
    assert listed["items"][0]["last_fire_time"] == fmt(T0 + timedelta(seconds=20))


def test_each_summary_of_a_list_page_has_its_own_schedules_last_fire_time(p: Pipeline) -> None:
    # The summaries' newest-run reads go out together: each answer must land on its schedule.
    periods = (7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)
    for i, every in enumerate(periods):
        p.schedule(f"s{i:02d}", spec={"intervals": [{"every_seconds": every}]})
    p.schedule("t-never", spec={"intervals": [{"every_seconds": 3600}]})
    p.run_for(100)
    listed = p.s.schedules.list(
        group=None, definition=None, paused=None, tag=None, page_token=None, page_size=50
    )["items"]
    assert [i["schedule_id"] for i in listed] == [f"s{i:02d}" for i in range(12)] + ["t-never"]
    last = int(T0.timestamp()) + 99  # the last tick of run_for(100)
    want = [fmt(datetime.fromtimestamp(last - last % every, UTC)) for every in periods] + [None]
    assert [i["last_fire_time"] for i in listed] == want
    assert len(set(want)) > 6  # the schedules' answers differ: a mix-up would show
    for item in listed:
        assert item["last_fire_time"] == p.s.schedules.describe(item["schedule_id"])["info"]["last_fire_time"]


def test_a_group_firing_quota_delays_firings_and_counts_them(p: Pipeline) -> None:
    p.s.catalog.create(
        "group", "default", {"group": "default", "max_schedules": None, "max_firings_per_second": 1}
    )
    for sid in ("q1", "q2", "q3"):
        p.schedule(sid, spec={"intervals": [{"every_seconds": 30}]})
    p.collect()
    by_second = Counter(b["scheduled_time"] for _, b in p.pending)
    assert max(by_second.values()) == 1, by_second  # never more than 1 firing a second
    assert {b["nominal_time"] for _, b in p.pending} == {
        fmt(T0 + timedelta(seconds=30)),
        fmt(T0 + timedelta(seconds=60)),
    }
    delayed = sum(p.s.schedules.describe(s)["info"]["counters"]["quota_delayed"] for s in ("q1", "q2", "q3"))
    assert delayed == 4  # of 6 firings at two instants, two keep their second and four move
    p.run_for(65)
    assert sum(len(p.runs(s)) for s in ("q1", "q2", "q3")) == 6  # delayed, never dropped


def test_a_trigger_under_buffer_one_waits_for_the_running_run(p: Pipeline) -> None:
    calls = {"n": 0}

    def script(inv):  # the first run is accepted (stays running until its callback)
        calls["n"] += 1
        return Outcome(status="accepted") if calls["n"] == 1 else Outcome(status="completed")

    p.target.script = script
    p.schedule(spec={"cron": ["0 0 1 1 *"]}, policies={"overlap": "buffer_one"})
    code, first = p.s.runs.trigger("s", None, None, "k1")
    p.deliver_due()
    assert p.s.runs.get(first["run_id"])["status"] == "running"
    code, second = p.s.runs.trigger("s", None, None, "k2")
    assert code == 201 and second["status"] == "pending"  # not skipped: buffer_one lets it wait
    p.deliver_due()
    assert p.s.runs.get(second["run_id"])["status"] == "pending" and calls["n"] == 1
    token = p.target.calls[0].callback_token
    p.s.runs.callback(first["run_id"], token, Outcome(status="completed"))
    p.clock.advance(1)
    p.deliver_due()
    assert p.s.runs.get(second["run_id"])["status"] == "completed" and calls["n"] == 2


def test_a_schedule_deleted_while_a_tick_plans_it_is_no_tick_error(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.queue.drain()
    p.clock.advance(55)  # due again within the lead
    real_update = p.schedule_store.update

    def deleted_first(rec: Any, **kw: Any) -> Any:
        p.s.schedules.delete("s")  # a user deletes it between the tick's read and its write
        p.schedule_store.update = real_update  # type: ignore[method-assign]
        return real_update(rec, **kw)

    p.schedule_store.update = deleted_first  # type: ignore[method-assign]
    report = p.s.ticker.tick()
    assert report.errors == []
    with pytest.raises(NotFound):
        p.s.schedules.describe("s")


def _ledger_running(p: Pipeline, sid: str = "s") -> list[str]:
    flight = p.schedule_store.get(sid).doc.get("flight") or {}
    return [e["run_id"] for e in flight.get("running", [])]


def test_under_skip_a_closed_run_leaves_the_ledger_with_the_next_arrival_not_its_own_write(
    p: Pipeline,
) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = p.queue.drain()  # the create planned the horizon: no ticker write below
    writes = Counter[str]()
    real_update = p.schedule_store.update

    def counting_update(*args: Any, **kwargs: Any) -> Any:
        writes["update"] += 1
        return real_update(*args, **kwargs)

    p.schedule_store.update = counting_update  # type: ignore[method-assign]
    p.clock.advance(10)
    assert p.s.executor.handle(sent[0][0]).outcome == "ran"
    first = p.runs()[0]
    assert first.status == "completed"
    assert _ledger_running(p) == [first.run_id]  # closed, still in the ledger: no release write
    assert writes["update"] == 1  # the arrival's ledger write only
    assert p.s.schedules.describe("s")["info"]["running_runs"] == []  # describe shows what runs
    p.clock.advance(10)
    assert p.s.executor.handle(sent[1][0]).outcome == "ran"
    second = p.runs()[1]
    assert second.status == "completed"  # the closed run did not block it
    assert _ledger_running(p) == [second.run_id]  # the arrival's write dropped the closed one
    assert writes["update"] == 2


def test_a_redelivery_after_its_run_closed_is_a_duplicate_and_counts_nothing(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = p.queue.drain()
    p.clock.advance(10)
    first = sent[0][0]
    assert p.s.executor.handle(first).outcome == "ran"
    p.clock.advance(10)
    assert p.s.executor.handle(sent[1][0]).outcome == "ran"
    for _ in range(2):  # late copies of both, after both closed
        assert p.s.executor.handle(first).outcome == "duplicate"
        assert p.s.executor.handle(sent[1][0]).outcome == "duplicate"
    assert [r.status for r in p.runs()] == ["completed", "completed"]
    assert len(p.target.calls) == 2
    counters = p.s.schedules.describe("s")["info"]["counters"]
    assert counters["actions"] == 2 and counters["skipped_overlap"] == 0


def test_a_copy_that_creates_the_run_on_another_copys_ledger_count_counts_it_once(p: Pipeline) -> None:
    """Copy A's ledger write starts the firing and counts its action; copy B, delivered at the
    same time, sees it started (counted by A) and creates the run first. A's create then finds
    the run: the action it counted is the run's, not one to take back. A late copy C, after the
    run closed and left the ledger, counts again on entering it and takes that back."""
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = p.queue.drain()
    body = sent[0][0]
    p.clock.advance(10)
    real_create = p.run_store.create
    copies: list[str] = []

    def create_after_the_other_copy(rec: Any) -> Any:
        p.run_store.create = real_create  # type: ignore[method-assign]
        copies.append(p.s.executor.handle(body).outcome)  # B, between A's ledger write and create
        return real_create(rec)

    p.run_store.create = create_after_the_other_copy  # type: ignore[method-assign]
    copies.append(p.s.executor.handle(body).outcome)  # A
    assert sorted(copies) == ["duplicate", "ran"]
    assert p.s.schedules.describe("s")["info"]["counters"]["actions"] == 1
    p.clock.advance(10)
    assert p.s.executor.handle(sent[1][0]).outcome == "ran"  # its arrival drops the closed run
    assert p.s.executor.handle(body).outcome == "duplicate"  # C
    assert [r.status for r in p.runs()] == ["completed", "completed"]
    assert p.s.schedules.describe("s")["info"]["counters"]["actions"] == 2
    assert len(p.target.calls) == 2


def test_a_redelivery_while_a_later_run_holds_the_place_is_still_a_duplicate(p: Pipeline) -> None:
    held = p.hold()
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    sent = p.queue.drain()
    p.clock.advance(10)
    assert p.s.executor.handle(sent[0][0]).outcome == "ran"
    p.finish(next(iter(held)))
    p.clock.advance(10)
    p.s.executor.handle(sent[1][0])  # the second run is running (held)
    assert p.s.executor.handle(sent[0][0]).outcome == "duplicate"  # not a skip: it already ran
    assert [r.status for r in p.runs()] == ["completed", "running"]
    assert p.s.schedules.describe("s")["info"]["counters"]["skipped_overlap"] == 0


def test_a_release_still_writes_when_a_run_waits_for_the_place(p: Pipeline) -> None:
    held = p.hold()
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"overlap": "buffer_one"})
    p.run_for(11)
    p.run_for(10)  # the second firing waits in the buffer
    assert [s for s, _ in p.statuses()] == ["running", "pending"]
    p.target.script = lambda inv: Outcome(status="completed")
    p.finish(p.runs()[0].run_id)
    assert [s for s, _ in p.statuses()] == ["completed", "completed"]  # started by the release
    assert not held


def _three_schedules(p: Pipeline) -> list[dict[str, Any]]:
    """Three schedules firing at the same second (a cron fleet): their first firings' bodies.
    `allow_all`: no overlap ledger, so each firing is claimed by creating its run (a firing the
    ledger claims alone is written once, at its attempt's end, and needs no hold)."""
    for sid in ("a", "b", "c"):
        p.schedule(sid, spec={"cron": ["* * * * *"]}, policies={"overlap": "allow_all"})
    p.collect()
    firsts = [body for _, body in p.pending if body["nominal_time"] == fmt(T0 + timedelta(minutes=1))]
    p.pending.clear()
    assert len(firsts) == 3
    return firsts


def test_a_batch_holds_its_runs_with_one_item_instead_of_a_lease_entry_each(p: Pipeline) -> None:
    bodies = _three_schedules(p)
    p.clock.advance(60)
    seen: list[Any] = []

    def script(inv: Any) -> Outcome:  # as the target runs: the run has no entry of its own
        seen.append(p.run_store.get(inv.run_id).active_at)
        assert len(p.run_store.expired_holds(T0 + timedelta(days=1), limit=10)) == 1
        return Outcome(status="completed")

    p.target.script = script
    with p.s.per_batch(bodies) as hold:
        assert hold.hold_id is None  # stored with the first claim
        outcomes = [p.s.executor.handle(b).outcome for b in bodies]
        assert hold.hold_id is not None
    assert outcomes == ["ran"] * 3 and seen == [None] * 3
    assert p.run_store.expired_holds(T0 + timedelta(days=1), limit=10) == []  # released
    assert [r.status for sid in "abc" for r in p.runs(sid)] == ["completed"] * 3


def test_a_batchs_runs_are_listed_across_schedules_by_one_page(p: Pipeline) -> None:
    """The runs a worker batch makes are listed across schedules as any run is; on DynamoDB by
    one page item for the batch, not a `by_time` entry each."""
    bodies = _three_schedules(p)
    p.clock.advance(60)
    p.target.script = lambda inv: Outcome(status="completed")
    with p.s.per_batch(bodies):
        for b in bodies:
            p.s.executor.handle(b)
    listed = p.run_store.list(after=None, limit=10).items
    assert sorted(r.schedule_id or "" for r in listed) == ["a", "b", "c"]
    assert p.run_store.list(definition="job", after=None, limit=10).items == listed
    from gnomon.adapters.dynamo import DynamoRunStore

    if isinstance(p.run_store, DynamoRunStore):
        import boto3

        items = boto3.client("dynamodb").scan(TableName=p.run_store.table_name)["Items"]
        pages = [i for i in items if i["pk"]["S"].startswith("page#")]
        assert len(pages) == 1 and [d for _, d in json.loads(pages[0]["entries"]["S"])] == ["job"] * 3
        assert sorted(r for r, _ in json.loads(pages[0]["entries"]["S"])) == sorted(r.run_id for r in listed)
        assert not [i for i in items if i["sk"]["S"].startswith("r#") and "time_shard" in i]


def test_a_small_batch_keeps_a_lease_entry_per_run(p: Pipeline) -> None:
    bodies = _three_schedules(p)[:2]
    p.clock.advance(60)
    seen: list[Any] = []
    p.target.script = lambda inv: (
        seen.append(p.run_store.get(inv.run_id).active_at) or Outcome(status="completed")
    )
    with p.s.per_batch(bodies) as hold:
        assert hold.hold_id is None
        for b in bodies:
            p.s.executor.handle(b)
    assert len(seen) == 2 and all(a is not None for a in seen)


def test_a_worker_dying_inside_a_held_batch_loses_only_that_attempt() -> None:
    p = Pipeline()
    p.definition("job", retry={"max_attempts": 2, "initial_interval_seconds": 1})
    bodies = _three_schedules(p)
    p.clock.advance(60)
    killed: list[str] = []

    def script(inv: Any) -> Outcome:
        if inv.schedule_id == "b" and not killed:
            killed.append(inv.run_id)
            raise SystemExit("worker killed")  # the process dies: nothing after this runs
        return Outcome(status="completed")

    p.target.script = script
    batch = p.s.per_batch(bodies)
    batch.__enter__()  # never exited: the worker died inside the batch
    for b in bodies:
        try:
            p.s.executor.handle(b)
        except SystemExit:
            break
    p.s.executor._held.clear()  # type: ignore[attr-defined]  # a new worker process
    dead = p.runs("b")[0]
    assert dead.status == "running" and dead.active_at is None
    assert [r.status for r in p.runs("a")] == ["completed"] and not p.runs("c")
    p.clock.advance(89)  # the hold (default timeout 60 s + grace 30 s) has not expired yet
    p.s.ticker.sweep_holds(p.clock.now(), _report(), lambda: 1e9, 0)
    assert p.run_store.get(dead.run_id).status == "running" and not p.queue.sent
    p.clock.advance(2)  # hold and lease expired: the sweep hands the lost attempt on
    p.s.ticker.tick()
    assert p.run_store.expired_holds(p.clock.now(), limit=10) == []
    p.deliver_due()
    p.clock.advance(2)
    p.deliver_due()
    final = p.s.runs.get(dead.run_id)
    assert final["status"] == "completed" and final["attempt"] == 2
    assert p.s.runs.history(dead.run_id, 0)["attempts"][0]["error"]["code"] == "lease_expired"


def test_a_run_outliving_its_batch_hold_gets_its_own_lease_entry() -> None:
    p = Pipeline()
    p.definition("job", timeout_seconds=600)
    bodies = _three_schedules(p)
    p.clock.advance(60)
    p.target.script = lambda inv: Outcome(status="completed")
    batch = p.s.per_batch(bodies)
    batch.__enter__()  # still inside the batch: the first run's call takes long
    slow = bodies[0]
    p.target.script = lambda inv: (p.clock.advance(120), p.s.ticker.tick(), Outcome(status="completed"))[-1]
    assert p.s.executor.handle(slow).outcome == "ran"
    run = p.runs("a")[0]
    assert run.status == "completed"
    # while it ran, the sweep gave it an entry of its own at its lease's end and let the hold go
    assert p.run_store.expired_holds(p.clock.now() + timedelta(days=1), limit=10) == []
    history = p.s.runs.history(run.run_id, 0)["attempts"]
    assert [a["status"] for a in history] == ["completed"]
    batch.__exit__(None, None, None)


def test_a_claim_after_its_batch_hold_expired_takes_its_own_lease_entry() -> None:
    """The batch's first call outlives the hold; the sweep settles and releases it. A run the
    batch claims after that must not count on the gone hold: it takes an entry of its own, so
    its worker dying still leaves it to the sweep."""
    p = Pipeline()
    p.definition("job", timeout_seconds=600)
    bodies = _three_schedules(p)
    p.clock.advance(60)
    batch = p.s.per_batch(bodies)
    hold = batch.__enter__()
    p.target.script = lambda inv: (p.clock.advance(120), p.s.ticker.tick(), Outcome(status="completed"))[-1]
    assert p.s.executor.handle(bodies[0]).outcome == "ran"
    assert hold.hold_id is not None
    assert p.run_store.expired_holds(p.clock.now() + timedelta(days=1), limit=10) == []  # swept
    seen: list[Any] = []
    p.target.script = lambda inv: (
        seen.append(p.run_store.get(inv.run_id).active_at) or Outcome(status="completed")
    )
    assert p.s.executor.handle(bodies[1]).outcome == "ran"
    assert len(seen) == 1 and seen[0] is not None  # its own entry, not the released hold
    batch.__exit__(None, None, None)


def test_a_claim_near_its_batch_hold_end_takes_its_own_lease_entry(p: Pipeline) -> None:
    from gnomon.services.execute import HOLD_FOR, HOLD_MARGIN

    bodies = _three_schedules(p)
    p.clock.advance(60)
    seen: list[Any] = []
    calls = 0

    def script(inv: Any) -> Outcome:
        nonlocal calls
        calls += 1
        seen.append(p.run_store.get(inv.run_id).active_at)
        if calls == 2:  # the third claim comes just inside the margin before the hold's end
            p.clock.advance((HOLD_FOR - HOLD_MARGIN).total_seconds())
        return Outcome(status="completed")

    p.target.script = script
    with p.s.per_batch(bodies):
        assert [p.s.executor.handle(b).outcome for b in bodies] == ["ran"] * 3
    assert seen[:2] == [None, None] and seen[2] is not None


def _report() -> Any:
    from gnomon.services.tick import TickReport

    return TickReport()


def test_a_batch_that_claims_nothing_stores_no_hold() -> None:
    p = Pipeline()
    p.definition("job", history={"mode": "off"})
    bodies = _three_schedules(p)
    p.clock.advance(60)
    stored: list[Any] = []
    real_hold = p.run_store.hold
    p.run_store.hold = lambda *a, **k: stored.append(a) or real_hold(*a, **k)  # type: ignore[method-assign]
    with p.s.per_batch(bodies) as hold:
        assert [p.s.executor.handle(b).outcome for b in bodies] == ["ran"] * 3
    assert hold.hold_id is None and not stored and len(p.target.calls) == 3


@pytest.mark.parametrize(
    ("tick", "horizon", "lead"), [(60, 900, 300), (60, 60, 60), (1, 5, 2), (0.5, 5, 5 / 3)]
)
def test_the_ticker_re_plans_two_tick_periods_ahead(tick: float, horizon: float, lead: float) -> None:
    from gnomon.services.tick import Ticker

    p = Pipeline(horizon=horizon)
    t = p.s.ticker
    ticker = Ticker(
        p.schedule_store,
        p.run_store,
        p.queue,
        p.clock,
        t._compile,
        horizon_seconds=horizon,
        tick_seconds=tick,
    )
    assert ticker.lead.total_seconds() == pytest.approx(lead)


def _one_second_ticks(tick_seconds: float, *, phased: bool = False) -> tuple[int, list[float]]:
    """30 ticks a second apart over an every-second schedule, horizon 5 s: the schedule writes
    and each firing's margin (scheduled time − the tick that sent it)."""
    from gnomon.services.tick import Ticker

    p = Pipeline(horizon=5)
    p.definition()
    p.schedule(spec={"intervals": [{"every_seconds": 1}], **({} if phased else APERIODIC)})
    ticker = Ticker(
        p.schedule_store,
        p.run_store,
        p.queue,
        p.clock,
        p.s.ticker._compile,
        horizon_seconds=5,
        tick_seconds=tick_seconds,
    )
    writes = 0
    real_update = p.schedule_store.update

    def counted(rec: Any, **kw: Any) -> Any:
        nonlocal writes
        writes += 1
        return real_update(rec, **kw)

    p.schedule_store.update = counted  # type: ignore[method-assign]
    p.queue.drain()  # what the create itself planned
    margins: list[float] = []
    for _ in range(30):
        p.clock.advance(1)
        ticker.tick()
        now = p.clock.now()
        for body, _delay in p.queue.drain():
            margins.append((parse(body["scheduled_time"]) - now).total_seconds())
    return writes, margins


def test_a_one_second_ticker_plans_every_firing_ahead_without_writing_the_schedule_every_tick() -> None:
    """`gnomon dev` (tick 1 s, horizon 5 s): the schedule is written every ~4 s, not on every
    tick as with a lead of the whole horizon, and each firing is still sent at least a tick
    period before it is due."""
    writes, margins = _one_second_ticks(1)
    assert 6 <= writes <= 10
    assert len(margins) >= 28 and min(margins) >= 1.0
    every_tick, _ = _one_second_ticks(60)  # the AWS period: lead = the whole 5 s horizon
    assert every_tick >= 28
    # From the phase index: written once, when a window confirms it; every firing as early.
    writes, margins = _one_second_ticks(1, phased=True)
    assert writes == 1
    assert len(margins) >= 28 and min(margins) >= 1.0


def test_a_slow_tick_counts_each_firings_delay_from_when_it_is_sent() -> None:
    """A tick that spends seconds reading its due schedules (a big page, a slow table) must not
    deliver their firings that much late: delays are counted from the send, not the tick's start."""
    p = Pipeline(horizon=60)
    p.definition()
    for i in range(5):
        p.schedule(f"s{i}", spec={"intervals": [{"every_seconds": 30}]})
    p.queue.drain()
    p.clock.advance(45)  # each schedule is due within the lead again
    real_get = p.schedule_store.get

    def slow_get(sid: str) -> Any:
        p.clock.advance(2)  # two seconds per schedule read
        return real_get(sid)

    p.schedule_store.get = slow_get  # type: ignore[method-assign]
    sent: list[tuple[datetime, dict[str, Any], int]] = []
    real_send = p.queue.send

    def send(messages: list[Any]) -> None:
        sent.extend((p.clock.now(), m.body, m.delay_seconds) for m in messages)
        real_send(messages)

    p.queue.send = send  # type: ignore[method-assign]
    p.s.ticker.tick()
    firings = [(at, body, delay) for at, body, delay in sent if body["kind"] == "firing"]
    assert len(firings) >= 5
    for at, body, delay in firings:
        visible = at + timedelta(seconds=delay)
        scheduled = parse(body["scheduled_time"])
        assert scheduled - timedelta(seconds=1) < visible <= scheduled, (at, delay, scheduled)


def test_a_ledger_write_that_landed_but_failed_to_answer_counts_its_action_once(p: Pipeline) -> None:
    """The firing's ledger write (which also counts its action) lands, but the caller sees an
    error (an ambiguous failure the store could not recognize) and the message fails; its
    redelivery finds the run in the ledger and must not count the action again."""
    p.schedule(spec={"intervals": [{"every_seconds": 60}]})  # overlap `skip`: the ledger is written
    p.clock.advance(61)
    p.s.ticker.tick()
    p.collect()
    real_update = p.schedule_store.update
    failed: list[bool] = []

    def lands_then_fails(rec: Any, **kw: Any) -> Any:
        out = real_update(rec, **kw)
        if kw.get("counters") and not failed:
            failed.append(True)
            raise RuntimeError("the answer was lost")
        return out

    p.schedule_store.update = lands_then_fails  # type: ignore[method-assign]
    assert p.pending
    _, body = p.pending[0]
    with pytest.raises(RuntimeError):
        p.s.executor.handle(body)
    assert failed
    # The redelivery cannot tell a copy that died after the write from one still calling the
    # target: it records the run under that copy's lease; when the lease ends, the sweep hands
    # the lost attempt on (the target was never called).
    assert p.s.executor.handle(body).outcome == "duplicate"
    assert p.s.executor.handle(body).outcome == "duplicate"
    assert [r.status for r in p.runs("s")] == ["running"] and not p.target.calls
    p.clock.advance(91)
    p.s.ticker.tick()
    p.deliver_due()
    p.clock.advance(5)
    p.deliver_due()
    run = next(r for r in p.runs("s") if r.doc["nominal_time"] == body["nominal_time"])
    assert run.status == "completed" and [c.run_id for c in p.target.calls].count(run.run_id) == 1
    assert [a["status"] for a in run.doc["attempts"]] == ["timed_out", "completed"]
    started = [r for r in p.runs("s") if r.doc["attempts"]]
    assert p.s.schedules.describe("s")["info"]["counters"]["actions"] == len(started)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_a_firing_reads_its_schedule_eventually_consistent(mode: str) -> None:
    """A firing's schedule read may be a second old (half a read unit): history off records
    nothing and is at least once; a recorded firing's ledger write is conditional on the version
    it read, so it lands on the current schedule only (`test_a_stale_schedule_read_...`)."""
    p = Pipeline()
    p.definition("job", history={"mode": mode})
    p.schedule("s", spec={"cron": ["* * * * *"]})
    p.collect()
    body = next(b for _, b in p.pending)
    assert body["definition"] == "job"
    reads: list[bool] = []
    store = p.s.executor._schedules
    original = store.get

    def spy(schedule_id: str, *, consistent: bool = True) -> Any:
        reads.append(consistent)
        return original(schedule_id, consistent=consistent)

    store.get = spy  # type: ignore[method-assign]
    p.clock.advance(60)
    p.target.script = lambda inv: Outcome(status="completed")
    assert p.s.executor.handle(body).outcome == "ran"
    assert reads == [False]
    # a message sent before the definition was in the body: the same
    reads.clear()
    old = {k: v for k, v in body.items() if k != "definition"}
    p.s.executor.handle({**old, "nominal_time": body["nominal_time"]})
    assert reads[0] is False


@pytest.mark.parametrize("change", ["none", "pause", "update", "unpause"])
def test_a_stale_schedule_read_never_decides_a_recorded_firing(p: Pipeline, change: str) -> None:
    """The eventually consistent read answers the schedule as it was before a change: the
    ledger write conditional on that version fails, and the firing is decided on a strong read
    — paused since: skipped `paused`; reconfigured since: dropped `stale`; unpaused since (the
    stale read says paused): it runs."""
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    body = p.queue.drain()[0][0]
    caller = _caller()
    if change == "unpause":
        p.s.schedules.pause("s", None, None, caller)
    store = p.s.executor._schedules  # type: ignore[attr-defined]
    before = store.get("s")
    if change == "none":  # another write (a ticker's advance, a ledger write): a new version only
        store.update(before, expected_version=before.version)
    elif change == "pause":
        p.s.schedules.pause("s", None, None, caller)
    elif change == "update":
        p.s.schedules.update("s", ScheduleUpdate.model_validate({"input": {"v": 2}}), caller)
    else:
        p.s.schedules.unpause("s", None, "none", caller)
    original = store.get

    def stale(schedule_id: str, *, consistent: bool = True) -> Any:
        return original(schedule_id) if consistent else before

    store.get = stale
    p.clock.advance(10)
    handled = p.s.executor.handle(body)
    expected = {"none": "ran", "pause": "skipped", "update": "stale", "unpause": "ran"}[change]
    assert handled.outcome == expected, handled
    runs = p.runs()
    if change == "pause":
        assert [(r.status, r.doc["reason"]) for r in runs] == [("skipped", "paused")]
    elif change == "update":
        assert runs == [] and p.s.schedules.describe("s")["info"]["counters"]["dropped_stale"] == 1
    else:
        assert [r.status for r in runs] == ["completed"] and len(p.target.calls) == 1
