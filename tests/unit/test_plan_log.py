"""The ticker's plan log writes: one `record` per page of planned schedules (never one per firing
or per schedule), what it records is what it sent, and a failing write costs the listing only,
never the tick."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import PlannedFiring
from tests.unit.pipeline import CALLER, T0, Pipeline


def _spy(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[list[PlannedFiring]]:
    calls: list[list[PlannedFiring]] = []
    original = p.s.plan_log.record

    def record(firings: list[PlannedFiring], *, now: Any) -> None:
        calls.append(list(firings))
        original(firings, now=now)

    monkeypatch.setattr(p.s.plan_log, "record", record)
    return calls


def test_a_tick_records_its_page_of_firings_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Pipeline(horizon=900.0)
    p.definition()
    for i in range(30):  # created paused: the creates plan nothing
        p.schedule(f"s{i:02d}", spec={"cron": ["* * * * *"]}, state={"paused": True})
    for i in range(30):
        p.s.schedules.unpause(f"s{i:02d}", None, "none", CALLER)
    p.queue.drain()  # what the unpauses sent
    calls = _spy(p, monkeypatch)
    p.clock.advance(15 * 60)  # every cursor is due again (the unpauses planned 15 minutes)
    report = p.s.ticker.tick()
    assert report.schedules_advanced == 30 and not report.errors
    assert len(calls) == 1 and len(calls[0]) == report.firings_enqueued == 30 * 15
    sent = {(b["schedule_id"], b["nominal_time"], b["scheduled_time"]) for b, _ in p.queue.drain()}
    assert {(f.schedule_id, fmt(f.nominal_time), fmt(f.scheduled_time)) for f in calls[0]} == sent


def test_a_create_records_what_it_enqueued_with_the_schedules_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = Pipeline(horizon=900.0)
    p.definition()
    calls = _spy(p, monkeypatch)
    p.schedule("a", spec={"cron": ["5 10 * * *"], "jitter_seconds": 30}, group="g")
    ((f,),) = calls
    rec = p.schedule_store.get("a")
    assert (f.schedule_id, f.generation, f.config_version, f.group, f.definition) == (
        "a",
        rec.generation,
        rec.doc["config_version"],
        "g",
        "job",
    )
    assert f.nominal_time == T0 + timedelta(minutes=5)
    ((body, _),) = p.queue.drain()
    assert f.scheduled_time == parse(body["scheduled_time"]) > f.nominal_time


def test_a_failing_plan_log_costs_the_listing_not_the_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Pipeline(horizon=900.0)
    p.definition()
    p.schedule("a", spec={"cron": ["* * * * *"]}, state={"paused": True})
    p.s.schedules.unpause("a", None, "none", CALLER)
    p.clock.advance(15 * 60)

    def broken(firings: list[PlannedFiring], *, now: Any) -> None:
        raise RuntimeError("throttled")

    monkeypatch.setattr(p.s.plan_log, "record", broken)
    report = p.s.ticker.tick()
    assert report.schedules_advanced == 1 and report.firings_enqueued == 15
    assert report.errors == ["plan log: RuntimeError('throttled')"]
