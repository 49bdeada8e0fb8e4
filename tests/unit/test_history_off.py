"""`history: {"mode": "off"}`: firings delivered at least once with an Idempotency-Key derived
from the run id, and no per-firing record — the cheap mode of the cost model (bench/cost.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from gnomon.domain.model import DefinitionBody, ScheduleUpdate
from gnomon.domain.runs import scheduled_run_id
from gnomon.domain.timefmt import fmt
from gnomon.ports import Outcome
from gnomon.services.execute import history_off
from tests.unit.pipeline import CALLER, T0, Pipeline

OFF = {"history": {"mode": "off"}}


@pytest.fixture
def p() -> Pipeline:
    pipe = Pipeline()
    pipe.definition(**OFF)
    return pipe


def _writes(p: Pipeline) -> int:
    """Run records of schedule `s` (there must be none in this mode)."""
    return len(p.run_store.recent("s", limit=1000))


def test_the_mode_is_part_of_the_definition_and_defaults_to_on() -> None:
    body = {"name": "j", "target": {"type": "http", "url": "https://example.com/h"}}
    assert DefinitionBody.model_validate(body).model_dump(mode="json")["history"] == {
        "retention_days": 30,
        "mode": "on",
    }
    off = DefinitionBody.model_validate({**body, **OFF}).model_dump(mode="json")
    assert history_off(off) and not history_off({"history": {"retention_days": 3}})
    with pytest.raises(ValidationError):
        DefinitionBody.model_validate({**body, "history": {"mode": "sometimes"}})


def test_firings_are_delivered_with_the_run_id_and_nothing_is_recorded(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.run_for(65)
    calls = p.target.calls
    assert [c.nominal_time for c in calls] == [T0 + timedelta(seconds=s) for s in range(10, 61, 10)]
    gen = p.s.schedules.describe("s")["generation"]
    # the Idempotency-Key an http target gets is the run id the firing would have had
    assert [c.run_id for c in calls] == [scheduled_run_id("s", gen, c.nominal_time) for c in calls]
    assert calls[1].previous_nominal_time == T0 + timedelta(seconds=10)
    assert all(c.last_success_time is None and c.attempt == 1 for c in calls)
    assert _writes(p) == 0
    stats = p.s.stats.today(None, None)
    assert stats["completed_today"] == 0 and stats["running"] == 0  # no run, nothing counted


def test_a_redelivered_firing_is_invoked_again_with_the_same_key(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 30}]})
    p.collect()
    p.clock.advance(30)
    handled = p.deliver_due(copies=2)  # at-least-once: the receiver dedupes by Idempotency-Key
    assert [h.outcome for h in handled] == ["ran", "ran"]
    assert len({c.run_id for c in p.target.calls}) == 1 and len(p.target.calls) == 2
    assert _writes(p) == 0


def test_a_failing_target_is_retried_by_resent_messages_then_given_up(p: Pipeline) -> None:
    p.target.script = lambda inv: Outcome(status="failed", error={"code": "http_500", "message": "x"})
    p.schedule(spec={"at": [fmt(T0 + timedelta(seconds=5))]})
    p.run_for(20)
    assert [c.attempt for c in p.target.calls] == [1, 2, 3]  # the default retry policy: 3 attempts
    assert len({c.run_id for c in p.target.calls}) == 1
    assert _writes(p) == 0


def test_stale_and_paused_firings_are_counted_not_recorded(p: Pipeline) -> None:
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.collect()
    p.s.schedules.update("s", ScheduleUpdate.model_validate({"input": {"v": 2}}), CALLER)
    p.s.schedules.pause("s", "hold", None, CALLER)
    p.clock.advance(25)
    p.deliver_due()
    counters = p.s.schedules.describe("s")["info"]["counters"]
    assert counters["dropped_stale"] == 2  # planned before the update
    assert _writes(p) == 0 and not p.target.calls
    p.s.schedules.unpause("s", "go", "none", CALLER)
    p.clock.advance(11)
    p.s.ticker.tick()
    p.clock.advance(10)
    p.deliver_due()
    p.s.schedules.pause("s", "hold", None, CALLER)
    p.clock.advance(30)
    p.deliver_due()
    assert p.s.schedules.describe("s")["info"]["counters"]["skipped_paused"] >= 1
    assert _writes(p) == 0


def test_a_definition_with_history_on_still_records_every_firing() -> None:
    p = Pipeline()
    p.definition()
    p.schedule(spec={"intervals": [{"every_seconds": 10}]})
    p.run_for(25)
    assert [r.status for r in p.runs()] == ["completed", "completed"]
