"""The phase index: a schedule firing once every period at a fixed phase is planned from an
index entry that never moves — the ticker writes it once, when a window confirms it, and never
again while its configuration stays — with every firing enqueued once, on time, whatever the
windows, tickers, pauses and changes around it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.domain.model import ScheduleUpdate
from gnomon.domain.spec import Spec, compile_spec
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import PhaseEntry, shard_of
from gnomon.services.admin import Upcoming
from gnomon.services.pagetoken import PageTokens
from gnomon.services.tick import Ticker, phase_ranges
from tests.unit.pipeline import CALLER, T0, Pipeline


@pytest.fixture
def p() -> Pipeline:
    pipe = Pipeline(horizon=900.0)
    pipe.definition()
    return pipe


def _ticks(p: Pipeline, minutes: int) -> int:
    """A tick a minute (as in AWS), delivering what is due every 10 s between; answers the
    schedule writes the ticks made."""
    writes = 0
    for _ in range(minutes):
        writes += p.s.ticker.tick().schedules_advanced
        for _ in range(6):
            p.deliver_due()
            p.clock.advance(10)
    return writes


def _nominals(p: Pipeline, sid: str) -> list[datetime]:
    return [r.nominal_time for r in p.runs(sid)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"cron": ["* * * * *"]}, (60, 0)),
        ({"cron": ["0 * * * *"]}, (3600, 0)),
        ({"cron": ["*/15 * * * *"]}, (900, 0)),
        ({"cron": ["30 9 * * *"]}, (86400, 34200)),
        ({"cron": ["0 9 * * *"], "timezone": "Asia/Tokyo"}, (86400, 0)),
        ({"cron": ["0 0,12 * * *"]}, (43200, 0)),
        ({"intervals": [{"every_seconds": 90, "offset_seconds": 7}]}, (90, 7)),
        ({"cron": ["0 9 * * *"], "timezone": "Europe/Paris"}, None),  # DST: not a fixed period
        ({"cron": ["0 9 * * 1-5"]}, None),  # weekdays
        ({"cron": ["*/7 * * * *"]}, None),  # 7 does not divide the hour evenly
        ({"cron": ["0 9,17 * * *"]}, None),  # uneven times of day
        ({"intervals": [{"every_seconds": 7}]}, None),  # does not divide a day
        ({"cron": ["0 * * * *"], "at": ["2099-01-01T00:00:00Z"]}, None),
        ({"cron": ["0 * * * *", "30 * * * *"]}, None),  # two streams
        ({"cron": ["0 * * * *"], "exclude_calendars": [{"hour": 3}]}, None),
    ],
)
def test_a_fixed_period_is_recognised_only_where_every_firing_is_on_one_phase(
    spec: dict[str, Any], expected: tuple[int, int] | None
) -> None:
    compiled = compile_spec(Spec.model_validate(spec))
    assert compiled.fixed_period() == expected
    if expected is not None:  # and it is the truth: a day of firings all on that phase
        period, phase = expected
        times = compiled.times(T0, 2 * 86_400 // period + 2)
        assert all(int(t.timestamp()) % period == phase for t in times)
        assert all((b - a).total_seconds() == period for a, b in zip(times, times[1:], strict=False))


def test_phase_ranges_cover_exactly_the_window() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert phase_ranges(3600, t, t + timedelta(minutes=15)) == [(1, 900)]
    assert phase_ranges(3600, t - timedelta(minutes=5), t + timedelta(minutes=5)) == [(3301, 3599), (0, 300)]
    assert phase_ranges(60, t, t + timedelta(minutes=15)) == [(0, 59)]
    assert phase_ranges(60, t, t) == []
    assert phase_ranges(86400, t + timedelta(milliseconds=500), t + timedelta(seconds=1)) == [(1, 1)]


def test_an_hourly_schedule_is_written_once_then_fires_every_hour_from_the_phase_index(p: Pipeline) -> None:
    p.schedule("h", spec={"cron": ["0 * * * *"]})
    writes = _ticks(p, 90)  # confirmed by then
    reads: list[str] = []
    for name in ("get", "get_many"):
        real = getattr(p.schedule_store, name)
        setattr(
            p.schedule_store,
            name,
            lambda *a, _real=real, _name=name, **k: reads.append(_name) or _real(*a, **k),
        )
    ticker_reads = 0
    for _ in range(6 * 60 + 1 - 90):
        before = len(reads)
        writes += p.s.ticker.tick().schedules_advanced
        ticker_reads += len(reads) - before
        for _ in range(6):
            p.deliver_due()
            p.clock.advance(10)
    assert ticker_reads == 0  # the windows plan it from its phase entry, unread
    nominals = _nominals(p, "h")
    assert nominals == [T0 + timedelta(hours=h) for h in range(1, 7)]  # T0 is 10:00, created at it
    assert writes == 1  # the window that confirmed it `phased`
    rec = p.schedule_store.get("h")
    assert rec.doc["phased"] and rec.phase == (3600, 0) and rec.next_fire_at is None
    assert len(p.target.calls) == 6


def test_previous_nominal_time_runs_on_across_phase_windows(p: Pipeline) -> None:
    p.schedule("m", spec={"cron": ["*/5 * * * *"]})
    sent: list[dict[str, Any]] = []
    real = p.queue.send

    def spy(messages: list[Any]) -> None:
        sent.extend(m.body for m in messages if m.body.get("kind") == "firing")
        real(messages)

    p.queue.send = spy  # type: ignore[method-assign]
    _ticks(p, 90)
    firings = sorted(sent, key=lambda b: b["nominal_time"])
    assert [parse(b["nominal_time"]) for b in firings] == sorted({parse(b["nominal_time"]) for b in firings})
    for before, after in zip(firings, firings[1:], strict=False):
        assert after["previous_nominal_time"] == before["nominal_time"]


def test_a_daily_schedule_fires_once_a_day_and_the_ticker_writes_nothing_after_confirming(
    p: Pipeline,
) -> None:
    p.schedule("d", spec={"cron": ["30 10 * * *"]})
    writes = [_ticks(p, 24 * 60) for _day in range(3)]
    assert _nominals(p, "d") == [T0 + timedelta(minutes=30) + timedelta(days=d) for d in range(3)]
    assert writes == [1, 0, 0]


def test_an_entry_the_phase_index_shows_late_loses_no_firing(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GSIs are eventually consistent: until a window reads its entry, the due index plans an
    entering schedule from its cursor; the window that reads it plans on from there."""
    hidden = {"late"}
    real = p.schedule_store.phased

    def lagging(*a: Any, **k: Any) -> list[Any]:
        return [e for e in real(*a, **k) if e.schedule_id not in hidden]

    monkeypatch.setattr(p.schedule_store, "phased", lagging)
    p.schedule("late", spec={"cron": ["* * * * *"]})
    _ticks(p, 40)
    assert not p.schedule_store.get("late").doc.get("phased")  # still the due index's
    hidden.clear()
    _ticks(p, 40)
    assert p.schedule_store.get("late").doc.get("phased")
    nominals = _nominals(p, "late")
    assert nominals == [T0 + timedelta(minutes=m) for m in range(1, len(nominals) + 1)]
    assert len(nominals) >= 78 and len(p.target.calls) == len(nominals)


def test_an_entering_schedule_behind_the_watermark_is_planned_from_its_cursor(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window that confirms a schedule plans it from its own cursor, not from the window's
    start: firings the due index did not reach (its entry lagging too) are not skipped."""
    p.schedule("early", spec={"cron": ["* * * * *"]})
    _ticks(p, 20)  # the family's watermark runs ~10-15 minutes ahead
    monkeypatch.setattr(p.s.schedules, "_planner", None)  # the create plans nothing
    monkeypatch.setattr(p.schedule_store, "due", lambda *a, **k: [])  # nor does the due index
    created = p.clock.now()
    p.schedule("late", spec={"cron": ["* * * * *"]})
    _ticks(p, 20)
    monkeypatch.undo()
    _ticks(p, 5)
    nominals = _nominals(p, "late")
    assert nominals[0] == created.replace(second=0) + timedelta(minutes=1)
    assert nominals == [nominals[0] + timedelta(minutes=i) for i in range(len(nominals))]


def test_a_ticker_dying_before_its_watermark_moves_and_two_tickers_racing_run_each_firing_once(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    p.schedule("a", spec={"cron": ["* * * * *"]})
    _ticks(p, 20)  # confirmed by now
    assert p.schedule_store.get("a").doc.get("phased")
    # a ticker that dies after sending, before its watermark moves: the next reads the window again
    real_advance = p.schedule_store.advance_phase_marks

    def dying(*a: Any, **k: Any) -> bool:
        raise RuntimeError("killed")

    p.clock.advance(11 * 60)
    monkeypatch.setattr(p.schedule_store, "advance_phase_marks", dying)
    with pytest.raises(RuntimeError):
        p.s.ticker.tick()
    monkeypatch.setattr(p.schedule_store, "advance_phase_marks", real_advance)
    # a second ticker racing the first over the same window: one watermark move wins
    other = Ticker(p.schedule_store, p.run_store, p.queue, p.clock, p.s.ticker._compile, horizon_seconds=900)
    first = p.s.ticker.tick()
    second = other.tick()
    assert first.firings_enqueued > 0 and second.firings_enqueued == 0  # the window moved on
    p.collect()
    sent = Counter(b["nominal_time"] for _, b in p.pending if b.get("kind") == "firing")
    assert max(sent.values()) >= 2  # enqueued twice: by the dead ticker and the next
    _ticks(p, 40)
    counts = Counter(fmt(t) for t in _nominals(p, "a"))
    assert all(c == 1 for c in counts.values())
    assert len(p.target.calls) == len(counts) >= 70
    nominals = sorted(parse(n) for n in counts)
    assert nominals == [nominals[0] + timedelta(minutes=i) for i in range(len(nominals))]  # no gap


def test_two_tickers_in_the_same_window_conflict_on_the_watermark_and_each_firing_runs_once(
    p: Pipeline,
) -> None:
    p.schedule("a", spec={"cron": ["* * * * *"]})
    _ticks(p, 20)
    other = Ticker(p.schedule_store, p.run_store, p.queue, p.clock, p.s.ticker._compile, horizon_seconds=900)
    p.clock.advance(11 * 60)
    real_advance = p.schedule_store.advance_phase_marks
    reports = []

    def racing(*a: Any, **k: Any) -> bool:
        if not reports:  # the other ticker reads and plans the same window before this one moves it
            reports.append(None)
            reports[0] = other.tick()
        return real_advance(*a, **k)

    p.schedule_store.advance_phase_marks = racing  # type: ignore[method-assign]
    mine = p.s.ticker.tick()
    p.schedule_store.advance_phase_marks = real_advance  # type: ignore[method-assign]
    assert reports[0].firings_enqueued == mine.firings_enqueued > 0
    assert mine.conflicts >= 1  # its watermark move lost
    _ticks(p, 30)
    counts = Counter(_nominals(p, "a"))
    assert all(c == 1 for c in counts.values()) and len(p.target.calls) == len(counts)


def test_a_schedule_a_window_cannot_plan_goes_back_to_the_due_index_and_the_others_move_on(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sid in ("a", "b"):
        p.schedule(sid, spec={"cron": ["* * * * *"]})
    _ticks(p, 20)
    assert all(p.schedule_store.get(s).doc.get("phased") for s in ("a", "b"))
    real = p.s.ticker._prepare_phased
    broken = {"b"}

    def failing(rec: Any, *a: Any) -> Any:
        if rec.schedule_id in broken:
            raise RuntimeError("boom")
        return real(rec, *a)

    monkeypatch.setattr(p.s.ticker, "_prepare_phased", failing)
    p.clock.advance(11 * 60)
    report = p.s.ticker.tick()
    assert any("boom" in e for e in report.errors)
    b = p.schedule_store.get("b")
    assert not b.doc.get("phased") and b.next_fire_at is not None  # the due index plans it now
    broken.clear()
    _ticks(p, 30)
    for sid in ("a", "b"):
        nominals = _nominals(p, sid)
        assert nominals == [T0 + timedelta(minutes=m) for m in range(1, len(nominals) + 1)], sid
    assert p.schedule_store.get("b").doc.get("phased")  # confirmed again


def test_pausing_a_phased_schedule_keeps_the_cursor_at_its_watermark(p: Pipeline) -> None:
    p.schedule("a", spec={"cron": ["* * * * *"]})
    _ticks(p, 20)
    p.s.schedules.pause("a", "hold", None, CALLER)
    rec = p.schedule_store.get("a")
    assert rec.phase is None and not rec.doc.get("phased")
    # the cursor is the first firing not enqueued: after the last the windows sent
    enqueued = {parse(b["nominal_time"]) for _, b in p.pending if b.get("kind") == "firing"}
    p.collect()
    enqueued |= {parse(b["nominal_time"]) for _, b in p.pending if b.get("kind") == "firing"}
    assert parse(rec.doc["cursor"]) == max(enqueued) + timedelta(minutes=1)
    _ticks(p, 30)
    p.s.schedules.unpause("a", None, "none", CALLER)
    skipped_by_worker = [r.nominal_time for r in p.runs("a") if r.status == "skipped"]
    assert skipped_by_worker == sorted(t for t in enqueued if t >= parse(rec.doc["state"]["paused_at"]))
    # every minute of the pause counted once: those enqueued skipped by the worker, the rest
    # (from the cursor on) by the unpause
    cursor, now = parse(rec.doc["cursor"]), p.clock.now()
    by_unpause = int((now - cursor).total_seconds()) // 60 + 1
    assert p.schedule_store.get("a").counters["skipped_paused"] == len(skipped_by_worker) + by_unpause
    _ticks(p, 20)
    assert p.schedule_store.get("a").doc.get("phased")  # back in the phase index


def test_a_firing_a_stale_read_enqueues_past_the_pause_is_recorded_skipped_and_counted_once(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    p.schedule("a", spec={"cron": ["* * * * *"]})
    _ticks(p, 20)
    before_pause = p.schedule_store.get_many(["a"])
    p.s.schedules.pause("a", "hold", None, CALLER)
    rec = p.schedule_store.get("a")
    cursor, paused_at = parse(rec.doc["cursor"]), parse(rec.doc["state"]["paused_at"])
    # the next window still finds its phase entry (the index lags) and reads the schedule as it
    # was before the pause (an eventually consistent read)
    real, real_phased = p.schedule_store.get_many, p.schedule_store.phased
    shard = shard_of("a", p.schedule_store.shards)

    def lagging(period: int, s: int, *a: Any, **k: Any) -> list[PhaseEntry]:
        return real_phased(period, s, *a, **k) + ([PhaseEntry("a", 0)] if s == shard else [])

    monkeypatch.setattr(p.schedule_store, "phased", lagging)
    monkeypatch.setattr(p.schedule_store, "get_many", lambda ids, **k: {**real(ids, **k), **before_pause})
    p.clock.advance(5 * 60)
    assert p.s.ticker.tick().firings_enqueued > 0
    monkeypatch.setattr(p.schedule_store, "get_many", real)
    monkeypatch.setattr(p.schedule_store, "phased", real_phased)
    _ticks(p, 25)
    skipped = [r.nominal_time for r in p.runs("a") if r.status == "skipped"]
    assert max(skipped) > cursor  # the stale window's firings were delivered, and skipped
    p.s.schedules.unpause("a", None, "none", CALLER)
    by_worker = sum(1 for t in skipped if t < cursor)
    by_unpause = int((p.clock.now() - cursor).total_seconds()) // 60 + 1
    assert all(t >= paused_at for t in skipped)
    assert p.schedule_store.get("a").counters["skipped_paused"] == by_worker + by_unpause


def test_an_update_moves_the_schedule_to_its_new_phase_and_drops_the_old_firings(p: Pipeline) -> None:
    p.schedule("a", spec={"cron": ["0 * * * *"]})
    _ticks(p, 70)
    assert p.schedule_store.get("a").phase == (3600, 0)
    p.s.schedules.update("a", ScheduleUpdate.model_validate({"spec": {"cron": ["30 * * * *"]}}), CALLER)
    rec = p.schedule_store.get("a")
    assert rec.phase == (3600, 1800) and not rec.doc.get("phased")
    _ticks(p, 3 * 60)
    minutes = {t.minute for t in _nominals(p, "a")}
    assert minutes == {0, 30}
    after = [t for t in _nominals(p, "a") if t > T0 + timedelta(minutes=72)]
    assert after and all(t.minute == 30 for t in after)
    assert p.schedule_store.get("a").doc.get("phased")


def test_a_phased_schedule_whose_end_comes_leaves_the_index_and_deletes_itself(p: Pipeline) -> None:
    end = T0 + timedelta(minutes=45)
    p.schedule(
        "a",
        spec={"cron": ["*/5 * * * *"], "end_at": fmt(end)},
        policies={"action_after_completion": "delete"},
    )
    _ticks(p, 20)
    assert p.schedule_store.get("a").doc.get("phased")
    _ticks(p, 60)
    assert [r.nominal_time for r in p.run_store.recent("a", limit=100)][::-1][-1] == end
    with pytest.raises(Exception, match="schedule/a"):
        p.schedule_store.get("a")


def test_a_ticker_down_for_hours_catches_up_within_the_catchup_window(p: Pipeline) -> None:
    p.schedule("a", spec={"cron": ["*/10 * * * *"]}, policies={"catchup_window_seconds": 3600})
    _ticks(p, 30)
    assert p.schedule_store.get("a").doc.get("phased")
    p.clock.advance(5 * 3600)  # no tick for five hours
    _ticks(p, 30)
    runs = p.runs("a")
    skipped = [r for r in runs if r.status == "skipped"]
    ran = [r for r in runs if r.status != "skipped"]
    assert skipped and all(r.doc["reason"] == "missed_catchup_window" for r in skipped)
    nominals = sorted(r.nominal_time for r in runs)
    assert nominals == [nominals[0] + timedelta(minutes=10 * i) for i in range(len(nominals))]  # none lost
    assert len(ran) == len(p.target.calls)


def test_upcoming_lists_a_phased_schedules_firings_beyond_the_horizon(p: Pipeline) -> None:
    p.schedule("a", spec={"cron": ["0 * * * *"]})
    _ticks(p, 70)
    assert p.schedule_store.get("a").doc.get("phased")
    upcoming = Upcoming(p.schedule_store, p.s.ticker._compile, p.clock, PageTokens(b"k"), p.s.plan_log)
    now = p.clock.now()
    page = upcoming.list(start=now, end=now + timedelta(hours=5), group=None, page_token=None, page_size=50)
    times = [parse(i["nominal_time"]) for i in page["items"] if i["schedule_id"] == "a"]
    first = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    assert times[:4] == [first + timedelta(hours=h) for h in range(4)]
