"""Preview is the single answer to "when will this fire": properties that tie it to itself
(paging, `end`), to the ticker (what the pipeline actually fires) and to `/v1/upcoming`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnomon.domain.model import PreviewRequest
from gnomon.domain.timefmt import fmt, parse
from gnomon.services.admin import Admin
from tests.unit.pipeline import T0, Pipeline

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


@settings(max_examples=15, deadline=None)
@given(spec=specs(fast=True))
def test_the_pipeline_fires_exactly_what_preview_and_upcoming_promised(spec: dict[str, Any]) -> None:
    p = Pipeline()
    p.definition()
    window = timedelta(minutes=10)
    promised = _preview(p, spec, T0, 1000, T0 + window)
    p.schedule(spec=spec, policies={"overlap": "allow_all"})
    s = p.s
    admin = Admin.build(
        catalog=s.catalog,
        schedule_store=s.schedule_store,
        schedules=s.schedules,
        resolve_calendars=s.calendars.resolve,
        clock=s.clock,
        tokens=s.tokens,
    )
    # upcoming reads the due index, which holds each schedule's next firing not yet enqueued:
    # from the end of the ticker's horizon (60 s here) on, it must promise what preview does
    beyond = T0 + timedelta(seconds=61)
    upcoming = admin.upcoming.list(
        start=beyond, end=T0 + window + timedelta(seconds=1), group=None, page_token=None, page_size=1000
    )
    assert [x["nominal_time"] for x in upcoming["items"]] == [t for t in promised if parse(t) >= beyond]
    p.run_for(window.total_seconds() + 1, step=1)
    fired = [r.doc["nominal_time"] for r in p.runs() if r.status == "completed"]
    assert fired == promised
    assert len(p.target.calls) == len(promised)
