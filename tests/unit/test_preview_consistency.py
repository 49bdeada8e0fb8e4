"""Preview is the single answer to "when will this fire": properties that tie it to itself
(paging, `end`), to the ticker (what the pipeline actually fires) and to `/v1/upcoming`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnomon.domain.model import PreviewRequest, ScheduleUpdate
from gnomon.domain.timefmt import fmt, parse
from gnomon.services.admin import Admin
from tests.unit.pipeline import CALLER, T0, Pipeline

ZONES = [
    "UTC",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Kathmandu",
]


@st.composite
def specs(draw: st.DrawFn, fast: bool = False) -> dict[str, Any]:
    """A spec mixing the four kinds of times, with exclusions, jitter-free."""
    spec: dict[str, Any] = {"timezone": draw(st.sampled_from(ZONES))}
    kinds = draw(st.sets(st.sampled_from(["cron", "intervals", "calendars", "at"]), min_size=1))
    if "cron" in kinds:
        second = draw(st.sampled_from(["", "*/20 ", "0,30 ", "15 "]))
        minute = draw(
            st.sampled_from(["*", "*/7", "0", "5-25/10", "59"] if fast else ["0", "30", "*/15", "45"])
        )
        hour = draw(st.sampled_from(["*"] if fast else ["*", "1-3", "9", "*/5"]))
        dow = draw(st.sampled_from(["*", "MON-FRI", "SUN,SAT", "FRI#3"]))
        spec["cron"] = [f"{second}{minute} {hour} * * {dow}"]
    if "intervals" in kinds:
        every = draw(st.sampled_from([7, 45, 90, 600] if fast else [600, 3600, 5400]))
        spec["intervals"] = [{"every_seconds": every, "offset_seconds": draw(st.integers(0, every - 1))}]
    if "calendars" in kinds:
        spec["calendars"] = [
            {
                "second": draw(st.sampled_from([0, 30])),
                "minute": draw(st.sampled_from(["*/10", 3, "0-5"])),
                "hour": "*",
            }
        ]
    if "at" in kinds:
        spec["at"] = [fmt(T0 + timedelta(seconds=draw(st.integers(1, 600))))]
    if draw(st.booleans()):
        spec["exclude_calendars"] = [
            {"hour": "*", "minute": draw(st.sampled_from(["0-9", "*/3", 30])), "second": "*"}
        ]
    return spec


def _preview(
    p: Pipeline, spec: dict[str, Any], start: datetime, count: int, end: datetime | None = None
) -> list[str]:
    req = PreviewRequest.model_validate(
        {"spec": spec, "start": fmt(start), "count": count, **({"end": fmt(end)} if end else {})}
    )
    return list(p.s.schedules.preview(req)["fire_times"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs(), offset=st.integers(0, 400 * 86_400), split=st.integers(1, 39))
def test_pages_of_preview_chain_into_one(spec: dict[str, Any], offset: int, split: int) -> None:
    p = Pipeline()
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
    whole = _preview(p, spec, start, 40)
    first = _preview(p, spec, start, split)
    assert whole[:split] == first
    if len(first) == split:  # continue strictly after the last time shown
        assert whole[split:] == _preview(p, spec, parse(first[-1]), 40 - split)
    assert whole == sorted(set(whole))  # strictly increasing
    if whole:  # `end` is inclusive and only cuts
        end = parse(whole[len(whole) // 2])
        assert _preview(p, spec, start, 40, end) == whole[: len(whole) // 2 + 1]


def _admin(p: Pipeline) -> Admin:
    s = p.s
    return Admin.build(
        catalog=s.catalog,
        schedule_store=s.schedule_store,
        schedules=s.schedules,
        resolve_calendars=s.calendars.resolve,
        clock=s.clock,
        tokens=s.tokens,
        plan_log=s.plan_log,
    )


def _upcoming(p: Pipeline, start: datetime, end: datetime, group: str | None = None) -> list[tuple[str, str]]:
    """(schedule id, nominal time) of every firing upcoming lists in [start, end), in order."""
    items = _admin(p).upcoming.list(start=start, end=end, group=group, page_token=None, page_size=1000)
    assert items["next_page_token"] is None
    return [(x["schedule_id"], x["nominal_time"]) for x in items["items"]]


def _fired(p: Pipeline, sids: list[str], start: datetime, end: datetime) -> list[tuple[str, str]]:
    """(schedule id, nominal time) of the completed runs of `sids` scheduled in [start, end),
    sorted."""
    return sorted(
        (sid, r.doc["nominal_time"])
        for sid in sids
        for r in p.runs(sid)
        if r.status == "completed" and start <= parse(r.doc["scheduled_time"]) < end
    )


@settings(max_examples=15, deadline=None)
@given(spec=specs(fast=True), horizon=st.sampled_from([60.0, 900.0]), look_at=st.integers(0, 540))
def test_the_pipeline_fires_exactly_what_preview_and_upcoming_promised(
    spec: dict[str, Any], horizon: float, look_at: int
) -> None:
    p = Pipeline(horizon=horizon)
    p.definition()
    window = timedelta(minutes=10)
    end = T0 + window + timedelta(seconds=1)
    promised = _preview(p, spec, T0, 1000, T0 + window)
    p.schedule(spec=spec, policies={"overlap": "allow_all"})
    # upcoming lists the firings the create already enqueued (inside the horizon, from the
    # plan log) and those after it (from the due index): all of them, exactly once
    assert [t for _, t in _upcoming(p, T0, end)] == promised
    # and so at any moment later, from then on
    p.run_for(look_at, step=1)
    now = p.clock.now()
    assert [t for _, t in _upcoming(p, now, end)] == [t for t in promised if parse(t) >= now]
    p.run_for(window.total_seconds() + 1 - look_at, step=1)
    fired = [r.doc["nominal_time"] for r in p.runs() if r.status == "completed"]
    assert fired == promised
    assert len(p.target.calls) == len(promised)


# Sparse schedules whose next firing is inside the 900 s horizon (enqueued at create, their
# cursor then lies hours ahead) and dense ones (their cursor ends the horizon), side by side.
SPARSE_AND_DENSE = {
    "hourly": {"cron": ["7 * * * *"]},  # 10:07
    "daily": {"cron": ["12 10 * * *"]},  # 10:12
    "once": {"at": [fmt(T0 + timedelta(minutes=3, seconds=20))]},
    "jittered-daily": {"cron": ["5 10 * * *"], "jitter_seconds": 120},
    "minutely": {"cron": ["* * * * *"]},
    "every-7s": {"intervals": [{"every_seconds": 7}]},
}


def _create_all(p: Pipeline) -> None:
    p.definition()
    for sid, spec in SPARSE_AND_DENSE.items():
        p.schedule(sid, spec=spec, policies={"overlap": "allow_all"})


@pytest.mark.parametrize("horizon", [900.0, 300.0])
@pytest.mark.parametrize(
    ("start_min", "end_min"),
    [(0, 15), (0, 4), (3, 8), (6, 13), (11, 12.5)],
)
def test_upcoming_lists_firings_already_enqueued_inside_the_horizon(
    horizon: float, start_min: float, end_min: float
) -> None:
    p = Pipeline(horizon=horizon)
    _create_all(p)
    sids = list(SPARSE_AND_DENSE)
    start, end = T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min)
    listed = _upcoming(p, start, end)
    promised = sorted(
        (_scheduled(p, sid, t), sid, t)
        for sid, spec in SPARSE_AND_DENSE.items()
        for t in _preview(p, spec, T0, 1000, end)
    )
    assert listed == [(sid, t) for scheduled, sid, t in promised if start <= scheduled < end]
    # with the 900 s horizon, some of them only the plan log can list: their schedule's place
    # in the due index (its next firing not yet enqueued) lies past the window
    beyond = [sid for sid, _ in listed if _due_place(p, sid) > end]
    assert beyond or horizon < 900
    # what was listed is what fires (and nothing else fires in the window)
    p.run_for(end_min * 60 + 2, step=1)
    assert _fired(p, sids, start, end) == sorted(listed)


def _due_place(p: Pipeline, sid: str) -> datetime:
    """Where a schedule sits in the due index (the end of time when it is not in it)."""
    return p.schedule_store.get(sid).next_fire_at or datetime.max.replace(tzinfo=UTC)


def _scheduled(p: Pipeline, sid: str, nominal: str) -> datetime:
    """The scheduled time of a firing of `sid` (jitter applied), as the ticker computes it."""
    rec = p.schedule_store.get(sid)
    return p.s.ticker._compile(rec.doc["spec"]).scheduled_time(sid, parse(nominal))


def test_a_paused_changed_or_deleted_schedules_enqueued_firings_leave_the_listing() -> None:
    p = Pipeline(horizon=900.0)
    _create_all(p)
    end = T0 + timedelta(minutes=15)
    before = _upcoming(p, T0, end)
    assert ("hourly", fmt(T0 + timedelta(minutes=7))) in before
    assert ("daily", fmt(T0 + timedelta(minutes=12))) in before
    assert ("once", fmt(T0 + timedelta(minutes=3, seconds=20))) in before
    p.run_for(30, step=1)
    s = p.s
    # paused: the worker would skip them
    s.schedules.pause("hourly", None, None, CALLER)
    s.schedules.pause("minutely", None, None, CALLER)
    # pausing until 10:05:03: its firings after then run again
    s.schedules.pause("every-7s", None, T0 + timedelta(minutes=5, seconds=3), CALLER)
    # a new config version: the old firing (10:12) is dropped as stale, the new one (10:09) listed
    s.schedules.update("daily", ScheduleUpdate.model_validate({"spec": {"cron": ["9 10 * * *"]}}), CALLER)
    # deleted: dropped
    s.schedules.delete("once")
    now = p.clock.now()
    after = _upcoming(p, now, end)
    by: dict[str, list[str]] = {}
    for sid, t in after:
        by.setdefault(sid, []).append(t)
    assert "hourly" not in by and "minutely" not in by and "once" not in by
    assert by["daily"] == [fmt(T0 + timedelta(minutes=9))]
    assert by["every-7s"] and all(parse(t) > T0 + timedelta(minutes=5) for t in by["every-7s"])
    assert len(by["jittered-daily"]) == 1
    # a new schedule under a deleted one's id is another generation: the old firings stay out
    p.schedule("once", spec={"at": [fmt(T0 + timedelta(minutes=14))]})
    assert [t for sid, t in _upcoming(p, now, end) if sid == "once"] == [fmt(T0 + timedelta(minutes=14))]
    # unpaused: the firings enqueued before the pause run again, and are listed again
    s.schedules.unpause("hourly", None, "none", CALLER)
    assert ("hourly", fmt(T0 + timedelta(minutes=7))) in _upcoming(p, now, end)
    # the listing is what the pipeline then does
    listed = _upcoming(p, now, end)
    p.run_for((end - now).total_seconds() + 1, step=1)
    assert _fired(p, [*SPARSE_AND_DENSE], now, end) == sorted(listed)


def test_a_window_of_a_dense_fleet_pages_through_both_sources_without_duplicates() -> None:
    p = Pipeline(horizon=900.0)
    p.definition()
    for i in range(12):
        p.schedule(f"m{i:02d}", spec={"cron": ["* * * * *"]}, group="odd" if i % 2 else "even")
    start, end = T0, T0 + timedelta(minutes=30)  # half enqueued, half not yet
    whole = _upcoming(p, start, end)
    assert len(whole) == 12 * 29 and len(set(whole)) == len(whole)  # 10:01 … 10:29
    pages: list[tuple[str, str]] = []
    token = None
    admin = _admin(p)
    while True:
        page = admin.upcoming.list(start=start, end=end, group=None, page_token=token, page_size=7)
        pages += [(x["schedule_id"], x["nominal_time"]) for x in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert pages == whole
    odd = _upcoming(p, start, end, group="odd")
    assert odd == [x for x in whole if int(x[0][1:]) % 2]
