"""Run control — cancel, terminate, signal, query, stats, purge, retention — through the real API
handler over in-memory stores, and against the worker in the simulated pipeline (fake clock)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gnomon.adapters.memory import MemoryCatalogStore, MemoryRequestLog, MemoryRunStore, MemoryScheduleStore
from gnomon.adapters.memory_queue import MemoryFiringQueue
from gnomon.adapters.runs_delete_memory import delete_run
from gnomon.adapters.stats_memory import MemoryStatsStore
from gnomon.api import common as api_common
from gnomon.domain.errors import AlreadyClosed, Conflict, NotFound
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import Outcome, RunRecord
from gnomon.services import runs as runs_service
from gnomon.services.runs import attempt_open, cancel_run, sweep_expired, terminate_run
from gnomon.services.stats import CountingRunStore, Stats, local_day, quarters, record_transition
from gnomon.wiring import Services, build
from tests.unit.apiclient import ApiClient
from tests.unit.pipeline import T0, FakeClock, Pipeline

HOOK = {"type": "http", "url": "https://example.com/hook"}


# --- wiring for the tests -------------------------------------------------------------------------
#
# Until gnomon.wiring builds the stats store and RunStore.delete exists, these helpers wire what
# the report asks the lead to wire; once it is, they take the real path (no double counting).


class _DeletingMemoryRunStore(MemoryRunStore):
    def delete(self, run_id: str, *, expected_version: int) -> None:
        delete_run(self, run_id, expected_version=expected_version)


def _run_store() -> MemoryRunStore:
    return MemoryRunStore() if hasattr(MemoryRunStore, "delete") else _DeletingMemoryRunStore()


def counting_build(**kw: Any) -> tuple[Services, MemoryStatsStore]:
    """`build` with counting stats over a memory stats store, and `services.stats` set."""
    store = MemoryStatsStore()
    if "stats_store" in inspect.signature(build).parameters:
        s = build(**kw, stats_store=store)
    else:
        kw["run_store"] = CountingRunStore(kw["run_store"], store, kw["clock"])
        s = build(**kw)
        s.stats = Stats(store, kw["clock"], definitions=lambda: ["job", "flaky"])  # type: ignore[attr-defined]
    return s, store


def _include_router() -> None:
    from gnomon.api import app as app_module
    from gnomon.api.runs_control import router

    app = app_module.app
    if not any(r.rule.match("/v1/stats") for r in app._static_routes + app._dynamic_routes):
        app.include_router(router)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[tuple[ApiClient, Services]]:
    """The real handler, its services built over memory stores with a fake clock."""
    from gnomon.api import app as app_module
    from gnomon.api import runs_control

    _include_router()
    s, _ = counting_build(
        clock=clock,
        catalog=MemoryCatalogStore(),
        schedule_store=MemoryScheduleStore(),
        run_store=_run_store(),
        requests=MemoryRequestLog(),
        queue=MemoryFiringQueue(),
        invoker=None,
        token_key=b"test",
    )
    monkeypatch.setattr(app_module, "services", lambda: s)
    monkeypatch.setattr(runs_control, "services", lambda: s)
    monkeypatch.setattr(api_common, "services", lambda: s)
    api = ApiClient(app_module.lambda_handler)
    assert api.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    yield api, s


def _execute(api: ApiClient, **body: Any) -> str:
    r = api.post("/v1/definitions/job/execute", body or {})
    assert r.status == 201, r.body
    return str(r.body["run_id"])


def _err(r: Any) -> tuple[int, str]:
    return r.status, r.body["error"]["code"]


def _field(r: Any) -> tuple[int, str]:
    return r.status, r.body["error"]["details"][0]["field"]


# --- the API ------------------------------------------------------------------------------------


def test_cancel_a_pending_run(ctl: tuple[ApiClient, Services], clock: FakeClock) -> None:
    api, s = ctl
    run_id = _execute(api)
    clock.advance(5)
    r = api.post(f"/v1/runs/{run_id}/cancel", {"reason": "not needed", "identity": "ops"})
    assert r.status == 200, r.body
    run = r.body
    assert run["status"] == "canceled" and run["closed_at"] == fmt(clock.now())
    assert run["error"] == {"code": "canceled", "message": "not needed", "details": {}}
    assert "cancel_requested_at" not in run  # it never started: canceled outright
    events = api.get(f"/v1/runs/{run_id}/history").body["events"]
    assert events[-1]["type"] == "canceled"
    assert events[-1]["details"] == {
        "reason": "not needed",
        "from": "pending",
        "updated_by": "arn:aws:iam::000000000000:user/tester",
        "identity": "ops",
    }
    stored = s.run_store.get(run_id)
    assert stored.active_at is None  # out of the sweep's index
    assert stored.expires_at == parse(run["closed_at"]) + timedelta(days=30)
    # closed now: every control action but query says so
    for action, body in (("cancel", {}), ("terminate", {}), ("signal", {"name": "go"})):
        assert _err(api.post(f"/v1/runs/{run_id}/{action}", body)) == (409, "already_closed"), action
    assert api.post(f"/v1/runs/{run_id}/query", {"name": "progress"}).body == {"details": None}


def test_cancel_without_a_reason_and_replay_by_request_id(ctl: tuple[ApiClient, Services]) -> None:
    api, _ = ctl
    run_id = _execute(api)
    first = api.request("POST", f"/v1/runs/{run_id}/cancel", raw=b"")  # empty body = {}
    assert first.status == 200 and first.body["error"]["message"] == "canceled by request"
    run_id2 = _execute(api)
    a = api.post(f"/v1/runs/{run_id2}/cancel", {"request_id": "req-1"})
    b = api.post(f"/v1/runs/{run_id2}/cancel", {"request_id": "req-1"})
    assert (a.status, b.status) == (200, 200) and a.body == b.body  # a replay, not already_closed
    assert _err(api.post(f"/v1/runs/{run_id2}/cancel", {"request_id": "req-1", "reason": "x"})) == (
        409,
        "conflict",
    )


def test_terminate_a_pending_run(ctl: tuple[ApiClient, Services]) -> None:
    api, _ = ctl
    run_id = _execute(api)
    r = api.post(f"/v1/runs/{run_id}/terminate", {"reason": "stop it"})
    assert r.status == 200 and r.body["status"] == "terminated"
    assert r.body["error"] == {"code": "terminated", "message": "stop it", "details": {}}
    assert _err(api.post(f"/v1/runs/{run_id}/terminate", {})) == (409, "already_closed")


@pytest.mark.parametrize("action", ["cancel", "terminate", "signal", "query"])
def test_control_errors(ctl: tuple[ApiClient, Services], action: str) -> None:
    api, _ = ctl
    body: dict[str, Any] = {"name": "n"} if action in ("signal", "query") else {}
    r = api.post(f"/v1/runs/ghost/{action}", body)
    assert _err(r) == (404, "not_found") and r.body["error"]["details"]["resource"] == "run/ghost"
    run_id = _execute(api)
    assert _field(api.post(f"/v1/runs/{run_id}/{action}", {**body, "colour": 1})) == (422, "colour")
    assert _err(api.request("POST", f"/v1/runs/{run_id}/{action}", raw=b"[1]")) == (400, "bad_request")
    r = api.request("POST", f"/v1/runs/{run_id}/{action}", raw=b"{}", content_type="text/plain")
    assert r.status == 415
    assert api.get(f"/v1/runs/{run_id}/{action}").status == 405
    if action in ("cancel", "terminate"):
        assert _field(api.post(f"/v1/runs/{run_id}/{action}", {"reason": 7})) == (422, "reason")
    else:
        assert _field(api.post(f"/v1/runs/{run_id}/{action}", {})) == (422, "name")
        assert _field(api.post(f"/v1/runs/{run_id}/{action}", {"name": ""})) == (422, "name")
    assert api.get(f"/v1/runs/{run_id}").body["status"] == "pending"  # bad input changed nothing


def test_signal_appends_to_a_bounded_inbox(ctl: tuple[ApiClient, Services], clock: FakeClock) -> None:
    api, s = ctl
    run_id = _execute(api)
    r = api.post(f"/v1/runs/{run_id}/signal", {"name": "resize", "payload": {"n": 3}})
    assert r.status == 200, r.body
    assert r.body["inbox"] == [{"name": "resize", "payload": {"n": 3}, "time": fmt(clock.now())}]
    for i in range(runs_service.INBOX_LIMIT + 4):
        clock.advance(1)
        api.post(f"/v1/runs/{run_id}/signal", {"name": f"s{i}"})
    run = api.get(f"/v1/runs/{run_id}").body
    assert len(run["inbox"]) == runs_service.INBOX_LIMIT and run["inbox_dropped"] == 5  # oldest dropped
    assert run["inbox"][0]["name"] == "s4" and run["inbox"][-1]["name"] == f"s{runs_service.INBOX_LIMIT + 3}"
    assert run["inbox"][-1]["payload"] is None
    # bytes are bounded too: big payloads push the oldest out
    big = {"blob": "x" * 30_000}
    for _ in range(3):
        api.post(f"/v1/runs/{run_id}/signal", {"name": "big", "payload": big})
    inbox = api.get(f"/v1/runs/{run_id}").body["inbox"]
    assert [e["name"] for e in inbox] == ["big", "big"]
    assert _field(api.post(f"/v1/runs/{run_id}/signal", {"name": "x", "payload": "y" * 70_000})) == (
        422,
        "payload",
    )
    events = s.run_store.get(run_id).doc["events"]
    assert events[-1] == {"time": fmt(clock.now()), "type": "signal_received", "details": {"name": "big"}}


def test_query_answers_the_latest_heartbeat_details(ctl: tuple[ApiClient, Services]) -> None:
    api, s = ctl
    run_id = _execute(api)
    assert api.post(f"/v1/runs/{run_id}/query", {"name": "progress", "args": [1]}).body == {"details": None}
    rec = s.run_store.get(run_id)  # a heartbeat (the task worker's) stores its details on the run
    s.run_store.update(_doc(rec, details={"done": 40}), expected_version=rec.version)
    r = api.post(f"/v1/runs/{run_id}/query", {"name": "progress"})
    assert (r.status, r.body) == (200, {"details": {"done": 40}})


def test_stats_validation(ctl: tuple[ApiClient, Services]) -> None:
    api, _ = ctl
    r = api.get("/v1/stats")
    assert r.status == 200
    assert r.body == {
        "timezone": "UTC",
        "running": 0,
        "pending": 0,
        "completed_today": 0,
        "failed_today": 0,
        "date": "2026-12-01",
    }
    assert api.get("/v1/stats?timezone=Asia/Kathmandu&definition=job").body["timezone"] == "Asia/Kathmandu"
    for q, field in (
        ("timezone=Mars/Olympus", "query.timezone"),
        ("timezone=../etc/passwd", "query.timezone"),
        ("timezone=", "query.timezone"),
        ("definition=bad%20name", "query.definition"),
        ("colour=1", "query.colour"),
    ):
        assert _field(api.get(f"/v1/stats?{q}")) == (422, field), q


def test_stats_count_pending_and_closes_through_the_api(ctl: tuple[ApiClient, Services]) -> None:
    api, _ = ctl
    api.post("/v1/definitions", {"name": "other", "target": HOOK})
    ids = [_execute(api) for _ in range(3)]
    api.post("/v1/definitions/other/execute", {})
    assert api.get("/v1/stats").body["pending"] == 4
    assert api.get("/v1/stats?definition=job").body["pending"] == 3
    api.post(f"/v1/runs/{ids[0]}/cancel", {})
    body = api.get("/v1/stats?definition=job").body
    assert (body["pending"], body["completed_today"], body["failed_today"]) == (2, 0, 0)  # canceled: neither
    assert api.get("/v1/stats?definition=ghost").body["pending"] == 0


def test_purge_deletes_closed_runs_page_by_page(ctl: tuple[ApiClient, Services], clock: FakeClock) -> None:
    api, s = ctl
    api.post("/v1/definitions", {"name": "other", "target": HOOK})
    ids = []
    for _ in range(5):
        ids.append(_execute(api))
        clock.advance(1)
    other = api.post("/v1/definitions/other/execute", {}).body["run_id"]
    for run_id in ids[:4]:
        api.post(f"/v1/runs/{run_id}/cancel", {})
    first = api.delete("/v1/definitions/job/runs?page_size=3")
    assert first.status == 200, first.body
    assert (first.body["deleted"], first.body["kept"]) == (2, 1)  # newest first: ids[4] is pending
    token = first.body["next_page_token"]
    assert token
    assert _err(api.delete(f"/v1/definitions/other/runs?page_token={token}")) == (400, "invalid_page_token")
    assert _err(api.delete("/v1/definitions/job/runs?page_token=forged")) == (400, "invalid_page_token")
    assert _err(api.delete("/v1/definitions/job/runs?page_size=0")) == (400, "bad_request")
    second = api.delete(f"/v1/definitions/job/runs?page_size=3&page_token={token}")
    assert second.body == {"deleted": 2, "kept": 0, "next_page_token": None}
    assert [r["run_id"] for r in api.get("/v1/runs?definition=job").body["items"]] == [ids[4]]
    assert api.get(f"/v1/runs/{other}").status == 200  # another definition's runs stay
    assert _err(api.get(f"/v1/runs/{ids[0]}")) == (404, "not_found")
    # purging works for a deleted definition too, and a pointer-less re-create of an id is fine
    assert api.delete("/v1/definitions/ghost/runs").body == {"deleted": 0, "kept": 0, "next_page_token": None}
    again = api.post("/v1/definitions/job/execute", {"run_id": ids[0]})
    assert again.status == 201


def test_the_router_is_wired_into_the_app(api: ApiClient) -> None:
    """The real wiring (`GNOMON_STORE=memory`), once the lead has included the router."""
    from gnomon import wiring
    from gnomon.api.app import app

    if not any(r.rule.match("/v1/stats") for r in app._static_routes + app._dynamic_routes):
        pytest.skip("gnomon.api.runs_control.router is not included in gnomon.api.app yet")
    if not hasattr(wiring.services(), "stats"):
        pytest.skip("gnomon.wiring does not build the stats service yet")
    assert api.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    run_id = api.post("/v1/definitions/job/execute", {}).body["run_id"]
    assert api.get("/v1/stats").body["pending"] == 1
    assert api.post(f"/v1/runs/{run_id}/cancel", {}).body["status"] == "canceled"
    assert api.get("/v1/stats").body["pending"] == 0
    assert api.delete("/v1/definitions/job/runs").body["deleted"] == 1


# --- the worker -----------------------------------------------------------------------------------


class CtlPipeline(Pipeline):
    """The simulated pipeline, with counting stats and a run store that can delete."""

    def __init__(self) -> None:
        super().__init__()
        self.run_store = _run_store()
        self.s, self.stats_store = counting_build(
            clock=self.clock,
            catalog=self.s.catalog,
            schedule_store=self.schedule_store,
            run_store=self.run_store,
            requests=self.s.requests,
            queue=self.queue,
            invoker=self.target,
            token_key=b"k",
        )
        self.s.executor._sleep = self.clock.sleep  # type: ignore[attr-defined]
        self.stats = Stats(self.stats_store, self.clock, definitions=lambda: ["job", "flaky"])

    def execute(self) -> str:
        return str(self.s.runs.execute("job", {}, None, None)[1]["run_id"])

    def run(self, run_id: str) -> RunRecord:
        return self.s.run_store.get(run_id)

    def today(self, tz: str = "UTC", definition: str | None = None) -> dict[str, Any]:
        return self.stats.today(tz, definition)


@pytest.fixture
def p() -> CtlPipeline:
    pipe = CtlPipeline()
    pipe.definition()
    return pipe


def test_a_canceled_pending_run_never_starts(p: CtlPipeline) -> None:
    run_id = p.execute()
    p.s.runs.cancel(run_id, "changed my mind")
    handled = p.deliver_due()
    assert [h.outcome for h in handled] == ["duplicate"]
    assert p.target.calls == []
    assert p.run(run_id).status == "canceled"
    p.run_for(180)  # neither the sweep nor anything else starts it later
    assert p.target.calls == [] and p.run(run_id).status == "canceled"


def test_a_canceled_running_run_stays_canceled_and_keeps_its_late_result(p: CtlPipeline) -> None:
    run_id = p.execute()
    seen: dict[str, Any] = {}

    def target(inv: Any) -> Outcome:
        canceled = p.s.runs.cancel(inv.run_id, "too slow")  # while the attempt runs
        seen["during"] = canceled
        seen["open"] = attempt_open(p.run(inv.run_id))
        seen["active_at"] = p.run(inv.run_id).active_at
        p.clock.advance(2)
        return Outcome(status="completed", result={"rows": 7})

    p.target.script = target
    handled = p.deliver_due()
    assert [h.status for h in handled] == ["canceled"]
    during = seen["during"]
    assert during["status"] == "canceled" and during["cancel_requested_at"] == fmt(T0)
    assert during["error"] == {"code": "canceled", "message": "too slow", "details": {}}
    assert seen["open"] is True and seen["active_at"] is not None  # still counts as running
    run = p.run(run_id)
    assert run.status == "canceled" and run.doc["result"] is None
    late = [e for e in run.doc["events"] if e["type"] == "late_finish"]
    assert len(late) == 1 and late[0]["details"]["status"] == "completed"
    types = [e["type"] for e in run.doc["events"]]
    assert types.index("cancel_requested") < types.index("late_finish")
    assert p.today()["completed_today"] == 0 and p.today()["running"] == 0


def test_a_terminated_running_run_closes_its_attempt_at_once(p: CtlPipeline) -> None:
    run_id = p.execute()

    def target(inv: Any) -> Outcome:
        p.s.runs.terminate(inv.run_id, "kill")
        return Outcome(status="failed", error={"code": "boom"})

    p.target.script = target
    p.deliver_due()
    run = p.run(run_id)
    assert run.status == "terminated" and run.active_at is None and "lease" not in run.doc
    assert run.doc["attempts"][-1]["status"] == "terminated"
    assert run.doc["attempts"][-1]["closed_at"] == fmt(T0)
    assert run.doc["error"] == {"code": "terminated", "message": "kill", "details": {}}
    late = [e for e in run.doc["events"] if e["type"] == "late_finish"]
    assert late and late[0]["details"]["error_code"] == "boom"
    assert not attempt_open(run)
    assert p.today()["failed_today"] == 0  # terminated is neither completed nor failed


def test_an_accepted_attempt_of_a_canceled_run_reports_back_into_history(p: CtlPipeline) -> None:
    p.target.script = lambda inv: Outcome(status="accepted")
    run_id = p.execute()
    p.deliver_due()
    assert p.run(run_id).status == "running" and p.today()["running"] == 1
    token = p.target.calls[0].callback_token
    p.s.runs.cancel(run_id, None)
    assert p.today()["running"] == 0
    assert attempt_open(p.run(run_id))
    with pytest.raises(AlreadyClosed):
        p.s.runs.callback(run_id, "wrong-token", Outcome(status="completed"))
    p.clock.advance(3)
    done = p.s.runs.callback(run_id, token, Outcome(status="completed", result={"rows": 3}))
    assert done["status"] == "canceled" and done["result"] is None
    run = p.run(run_id)
    assert run.doc["attempts"][-1]["status"] == "completed"
    assert run.doc["attempts"][-1]["result"] == {"rows": 3}
    assert run.doc["attempts"][-1]["duration_ms"] == 3000
    assert run.doc["events"][-1]["type"] == "late_finish"
    assert run.doc["events"][-1]["details"]["result"] == {"rows": 3}
    assert not attempt_open(run) and run.active_at is None
    with pytest.raises(AlreadyClosed):  # once only
        p.s.runs.callback(run_id, token, Outcome(status="completed"))


def test_a_canceled_run_is_retried_only_once_its_attempt_closed(p: CtlPipeline) -> None:
    p.target.script = lambda inv: Outcome(status="accepted")
    run_id = p.execute()
    p.deliver_due()
    token = p.target.calls[0].callback_token
    p.s.runs.cancel(run_id, None)
    with pytest.raises(Conflict):
        p.s.runs.retry(run_id)
    p.s.runs.callback(run_id, token, Outcome(status="failed", error={"code": "x"}))
    p.target.script = lambda inv: Outcome(status="completed")
    retried = p.s.runs.retry(run_id)
    assert retried["status"] == "pending" and "cancel_requested_at" not in retried
    p.deliver_due()
    run = p.run(run_id)
    assert run.status == "completed" and [a["status"] for a in run.doc["attempts"]] == ["failed", "completed"]


def test_a_lost_attempt_of_a_canceled_run_is_never_rerun(p: CtlPipeline) -> None:
    p.target.script = lambda inv: Outcome(status="accepted")  # and the callback never comes
    run_id = p.execute()
    p.deliver_due()
    p.s.runs.cancel(run_id, None)
    canceled = p.run(run_id)
    assert attempt_open(canceled, p.clock.now())  # counts as running while its lease lasts
    assert not attempt_open(canceled, p.clock.now() + timedelta(seconds=91))  # 60 s timeout + 30 s grace
    p.run_for(200)  # past the lease: the sweep finds it
    run = p.run(run_id)
    assert run.status == "canceled" and len(p.target.calls) == 1
    assert run.active_at is None  # out of the sweep's index


def test_signal_and_query_on_a_running_run(p: CtlPipeline) -> None:
    p.target.script = lambda inv: Outcome(status="accepted")
    run_id = p.execute()
    p.deliver_due()
    p.s.runs.signal(run_id, "pause", {"for": 10})
    rec = p.run(run_id)
    assert rec.status == "running" and rec.doc["inbox"][0]["name"] == "pause"
    assert rec.active_at is not None  # the lease is untouched
    assert p.s.runs.query(run_id, "progress", None) == {"details": None}
    token = p.target.calls[0].callback_token
    p.s.runs.callback(run_id, token, Outcome(status="completed"))
    with pytest.raises(AlreadyClosed):
        p.s.runs.signal(run_id, "late", None)


def test_module_level_controls_for_the_overlap_policies(p: CtlPipeline) -> None:
    run_id = p.execute()
    rec = cancel_run(p.s.run_store, run_id, "overlap", p.clock.now(), retention_days=2)
    assert rec.status == "canceled" and rec.expires_at == p.clock.now() + timedelta(days=2)
    with pytest.raises(AlreadyClosed):
        terminate_run(p.s.run_store, run_id, None, p.clock.now())
    with pytest.raises(NotFound):
        cancel_run(p.s.run_store, "ghost", None, p.clock.now())


def test_cancel_retries_on_a_version_conflict(p: CtlPipeline) -> None:
    run_id = p.execute()
    store = p.s.run_store
    real_update = store.update
    calls = {"n": 0}

    def racing_update(rec: RunRecord, *, expected_version: int) -> RunRecord:
        calls["n"] += 1
        if calls["n"] == 1:  # the worker claims the run between our read and our write
            current = store.get(rec.run_id)
            real_update(_doc(current, note="claimed"), expected_version=current.version)
        return real_update(rec, expected_version=expected_version)

    store.update = racing_update  # type: ignore[method-assign]
    rec = cancel_run(store, run_id, None, p.clock.now())
    assert rec.status == "canceled" and rec.doc["note"] == "claimed" and calls["n"] == 2


# --- stats ------------------------------------------------------------------------------------------


def test_stats_gauges_follow_the_run_life_cycle(p: CtlPipeline) -> None:
    p.definition("flaky", retry={"max_attempts": 2, "initial_interval_seconds": 10})
    outcomes = iter([Outcome(status="failed", error={"code": "e"})] * 2)
    ok = p.execute()
    bad = str(p.s.runs.execute("flaky", {}, None, None)[1]["run_id"])
    assert (p.today()["pending"], p.today()["running"]) == (2, 0)

    def target(inv: Any) -> Outcome:
        now = p.today()
        assert now["running"] == 1 and now["pending"] == 1  # the other run waits
        return Outcome(status="completed") if inv.run_id == ok else next(outcomes)

    p.target.script = target
    p.deliver_due()
    t = p.today()
    assert (t["pending"], t["running"], t["completed_today"], t["failed_today"]) == (1, 0, 1, 0)  # backoff
    assert p.today(definition="flaky")["pending"] == 1 and p.today(definition="job")["pending"] == 0
    p.clock.advance(11)
    p.deliver_due()
    t = p.today()
    assert (t["pending"], t["running"], t["completed_today"], t["failed_today"]) == (0, 0, 1, 1)
    assert p.run(bad).status == "failed"
    assert p.today(definition="flaky")["failed_today"] == 1
    # a retry takes the failure back out; its new close counts
    p.target.script = lambda inv: Outcome(status="timed_out", error={"code": "timeout"})
    p.s.runs.retry(bad)
    assert (p.today()["pending"], p.today()["failed_today"]) == (1, 0)
    p.deliver_due()
    assert p.run(bad).status == "timed_out"
    assert (p.today()["pending"], p.today()["failed_today"]) == (0, 1)  # timed_out counts as failed


def test_stats_today_follows_the_zone_across_its_day_boundary() -> None:
    clock = FakeClock(datetime(2026, 12, 1, 18, 0, tzinfo=UTC))
    store = MemoryStatsStore()
    stats = Stats(store, clock, definitions=lambda: ["job"])

    def close(at: datetime, status: str = "completed") -> None:
        record_transition(store, "running", status, "job", at, new_closed_at=at)

    # Kathmandu is UTC+05:45: its Dec 2 starts at 18:15 UTC on Dec 1.
    close(datetime(2026, 12, 1, 18, 10, tzinfo=UTC))  # 23:55 on Dec 1 in Kathmandu
    close(datetime(2026, 12, 1, 18, 14, 59, tzinfo=UTC), "failed")  # 23:59:59
    close(datetime(2026, 12, 1, 18, 15, tzinfo=UTC))  # 00:00 on Dec 2
    close(datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC), "timed_out")
    close(datetime(2026, 12, 2, 0, 30, tzinfo=UTC))  # Dec 2 everywhere east of UTC−00:30
    clock.t = datetime(2026, 12, 1, 18, 14, tzinfo=UTC)
    k = stats.today("Asia/Kathmandu", None)
    assert (k["date"], k["completed_today"], k["failed_today"]) == ("2026-12-01", 1, 1)
    clock.t = datetime(2026, 12, 1, 18, 16, tzinfo=UTC)
    k = stats.today("Asia/Kathmandu", None)
    assert (k["date"], k["completed_today"], k["failed_today"]) == ("2026-12-02", 2, 1)
    u = stats.today("UTC", None)
    assert (u["date"], u["completed_today"], u["failed_today"]) == ("2026-12-01", 2, 2)
    # St John's is UTC−03:30: it is still Dec 1 there until 03:30 UTC on Dec 2
    clock.t = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    n = stats.today("America/St_Johns", "job")
    assert (n["date"], n["completed_today"], n["failed_today"]) == ("2026-12-01", 3, 2)
    assert stats.today("UTC", "job")["completed_today"] == 1
    assert stats.today("UTC", "other")["completed_today"] == 0


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Riga", datetime(2026, 3, 29), 23),  # spring forward
        ("Europe/Riga", datetime(2026, 10, 25), 25),  # fall back
        ("Australia/Lord_Howe", datetime(2026, 4, 5), 24.5),  # a 30-minute shift
        ("America/Santiago", datetime(2026, 9, 6), 23),  # the clocks jump at midnight
        ("Asia/Kathmandu", datetime(2026, 12, 1), 24),
    ],
)
def test_local_days_are_whole_quarter_hours(zone: str, day: datetime, hours: float) -> None:
    tz = ZoneInfo(zone)
    noon = day.replace(hour=12, tzinfo=tz)
    today, start, end = local_day(tz, noon)
    assert today == day.date()
    assert (end - start) == timedelta(hours=hours)
    assert len(list(quarters(start, end))) == hours * 4
    assert start.minute % 15 == 0 and end.minute % 15 == 0


def test_stats_day_items_expire(p: CtlPipeline) -> None:
    run_id = p.execute()
    p.deliver_due()
    assert p.run(run_id).status == "completed"
    key = "stats#def#job#day#2026-12-01"
    assert p.stats_store.expires_at(key) == int(datetime(2026, 12, 5, tzinfo=UTC).timestamp())
    assert p.stats_store.expires_at("stats#def#job#gauge") is None


def test_the_counting_store_reads_a_version_it_has_not_seen(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    inner, stats_store = MemoryRunStore(), MemoryStatsStore()
    counting = CountingRunStore(inner, stats_store, clock, remember=1)
    doc = {"status": "pending", "closed_at": None}
    a = inner.create(RunRecord("a", doc, None, "job", T0, "pending"))
    counting.update(_doc(a, status="running"), expected_version=1)  # not seen: read, then counted
    assert stats_store.get_many(["stats#def#job#gauge"]) == {
        "stats#def#job#gauge": {"pending": -1, "running": 1}
    }
    stale = inner.get("a")
    inner.update(_doc(stale, status="completed"), expected_version=stale.version)  # behind its back
    with caplog.at_level(logging.WARNING, logger="gnomon.stats"), pytest.raises(Conflict):
        counting.update(_doc(stale, status="failed"), expected_version=stale.version)
    assert (
        stats_store.get_many(["stats#def#job#gauge"])["stats#def#job#gauge"]["running"] == 1
    )  # nothing counted


def test_a_failing_counter_write_never_fails_the_run_write(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryStatsStore):
        def add(self, *a: Any, **k: Any) -> None:
            raise RuntimeError("throttled")

    counting = CountingRunStore(MemoryRunStore(), Broken(), FakeClock())
    with caplog.at_level(logging.ERROR, logger="gnomon.stats"):
        rec = counting.create(RunRecord("a", {"status": "pending"}, None, "job", T0, "pending"))
    assert rec.version == 1 and "could not count" in caplog.text


# --- retention ----------------------------------------------------------------------------------------


def test_closed_runs_get_expires_at_and_the_sweep_honours_it(p: CtlPipeline) -> None:
    p.definition("short", history={"retention_days": 1})
    done = p.execute()  # job: 30 days
    short = str(p.s.runs.execute("short", {}, None, None)[1]["run_id"])
    p.deliver_due()
    p.clock.advance(1)
    canceled = p.execute()
    p.s.runs.cancel(canceled, None)
    p.clock.advance(1)
    p.target.script = lambda inv: Outcome(status="accepted")
    still_open = p.execute()
    p.deliver_due()
    assert p.run(done).expires_at == T0 + timedelta(days=30)
    assert p.run(short).expires_at == T0 + timedelta(days=1)
    assert p.run(canceled).expires_at == T0 + timedelta(days=30, seconds=1)
    assert p.run(still_open).expires_at is None

    now = T0 + timedelta(days=1)
    assert sweep_expired(p.s.run_store, now) == (0, None)  # nominal within a day: not even looked at
    now = T0 + timedelta(days=2)
    deleted, after = sweep_expired(p.s.run_store, now, limit=1)  # bounded: one run looked at
    assert deleted == 0 and after is not None  # the newest (still open) is kept
    total = deleted
    while after is not None:
        n, after = sweep_expired(p.s.run_store, now, limit=1, after=after)
        total += n
    assert total == 1
    with pytest.raises(NotFound):
        p.run(short)
    assert {p.run(r).run_id for r in (done, canceled, still_open)} == {done, canceled, still_open}
    assert sweep_expired(p.s.run_store, T0 + timedelta(days=31)) == (2, None)  # the open one stays
    assert p.run(still_open).status == "running"
    assert p.today()["running"] == 1  # deleting closed runs leaves the gauges alone


# --- helpers --------------------------------------------------------------------------------------------


def _doc(rec: RunRecord, **changes: Any) -> RunRecord:
    doc = {**rec.doc, **changes}
    return RunRecord(
        run_id=rec.run_id,
        doc=doc,
        schedule_id=rec.schedule_id,
        definition=rec.definition,
        nominal_time=rec.nominal_time,
        status=str(doc.get("status", rec.status)),
        active_at=rec.active_at,
        expires_at=rec.expires_at,
        version=rec.version,
    )


# --- the DynamoDB adapters (moto in-process, tables from template.yaml) ----------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from moto import mock_aws

    from gnomon.local.motolock import serialised_moto_dynamodb
    from gnomon.local.template import create_resources, load_template

    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "GNOMON_DUE_SHARDS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with serialised_moto_dynamodb(), mock_aws():
        res = create_resources(load_template(), endpoint_url=None, prefix="gnomon-ctl-")
        tables = {"runs": res.tables["RunsTable"], "requests": res.tables["RequestsTable"]}
        monkeypatch.setenv("GNOMON_RUNS_TABLE", tables["runs"])
        monkeypatch.setenv("GNOMON_REQUESTS_TABLE", tables["requests"])
        yield tables


def _dynamo_runs() -> Any:
    from gnomon.adapters.dynamo import DynamoRunStore
    from gnomon.adapters.runs_delete_dynamo import delete_run as dynamo_delete

    if hasattr(DynamoRunStore, "delete"):
        return DynamoRunStore()

    class Deleting(DynamoRunStore):
        def delete(self, run_id: str, *, expected_version: int) -> None:
            dynamo_delete(self, run_id, expected_version=expected_version)

    return Deleting()


def test_dynamo_stats_store_adds_atomically_with_ttl(aws: dict[str, str]) -> None:
    import threading

    import boto3

    from gnomon.adapters.stats_dynamo import DynamoStatsStore

    store = DynamoStatsStore()
    expires = datetime(2026, 12, 5, tzinfo=UTC)
    store.add("stats#def#job#day#2026-12-01", {"c03": 1, "f03": 2}, expires_at=expires)
    store.add("stats#def#job#day#2026-12-01", {"c03": -1, "c04": 1})
    store.add("stats#def#job#gauge", {})  # nothing to add: no item
    threads = [
        threading.Thread(target=lambda: [store.add("stats#def#job#gauge", {"running": 1}) for _ in range(10)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get_many(["stats#def#job#day#2026-12-01", "stats#def#job#gauge", "stats#none"])
    assert got == {
        "stats#def#job#day#2026-12-01": {"c03": 0, "f03": 2, "c04": 1},
        "stats#def#job#gauge": {"running": 40},
    }
    item = boto3.client("dynamodb").get_item(
        TableName=aws["requests"], Key={"pk": {"S": "stats#def#job#day#2026-12-01"}}
    )["Item"]
    assert item["expires_at"] == {"N": str(int(expires.timestamp()))}  # the table's TTL attribute
    with pytest.raises(ValueError):
        store.add("stats#def#job#gauge", {"expires_at": 1})
    # the Stats reader over it
    s = Stats(store, FakeClock(datetime(2026, 12, 1, 12, tzinfo=UTC)), definitions=lambda: ["job"])
    assert s.today("UTC", None)["completed_today"] == 1 and s.today("UTC", None)["running"] == 40


def test_dynamo_run_delete_is_version_conditioned_and_takes_the_pointer(aws: dict[str, str]) -> None:
    import boto3

    runs = _dynamo_runs()
    doc = {"status": "completed", "closed_at": fmt(T0)}
    scheduled = runs.create(RunRecord("s1:g1:20261201T100000Z", doc, "s1", "job", T0, "completed"))
    executed = runs.create(RunRecord("job-1", doc, None, "job", T0, "completed"))
    for rec in (scheduled, executed):
        with pytest.raises(Conflict):
            runs.delete(rec.run_id, expected_version=rec.version + 1)
        runs.delete(rec.run_id, expected_version=rec.version)
        with pytest.raises(NotFound):
            runs.get(rec.run_id)
        with pytest.raises(NotFound):
            runs.delete(rec.run_id, expected_version=rec.version)
    pointer = boto3.client("dynamodb").get_item(
        TableName=aws["runs"], Key={"pk": {"S": "id#job-1"}, "sk": {"S": "ptr"}}
    )
    assert "Item" not in pointer
    assert runs.create(RunRecord("job-1", doc, None, "job", T0, "completed")).version == 1


def test_dynamo_purge_and_sweep(aws: dict[str, str]) -> None:
    runs = _dynamo_runs()
    for i in range(5):
        closed = T0 + timedelta(minutes=i)
        runs.create(
            RunRecord(
                f"job-{i}",
                {"status": "completed", "closed_at": fmt(closed)},
                None,
                "job",
                closed,
                "completed",
                expires_at=closed + timedelta(days=1 if i % 2 else 30),
            )
        )
    runs.create(RunRecord("job-open", {"status": "running"}, None, "job", T0, "running", active_at=T0))
    deleted, after = sweep_expired(runs, T0 + timedelta(days=2), limit=4)
    while after is not None:
        n, after = sweep_expired(runs, T0 + timedelta(days=2), limit=4, after=after)
        deleted += n
    assert deleted == 2
    left = {r.run_id for r in runs.list(definition="job", after=None, limit=100).items}
    assert left == {"job-0", "job-2", "job-4", "job-open"}
    total, kept, after = runs_service.purge_runs(runs, "job", after=None, limit=3)
    while after is not None:
        n, k, after = runs_service.purge_runs(runs, "job", after=after, limit=3)
        total, kept = total + n, kept + k
    assert (total, kept) == (3, 1)
    assert [r.run_id for r in runs.list(definition="job", after=None, limit=100).items] == ["job-open"]
