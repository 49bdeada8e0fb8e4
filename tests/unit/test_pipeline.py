"""The firing pipeline — ticker, queue, worker — on in-memory stores with a fake clock."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from gnomon.domain.timefmt import fmt
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


def test_a_ticker_dying_before_its_advance_and_two_tickers_racing_run_each_firing_once(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 20}]})
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
