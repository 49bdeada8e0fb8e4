"""Schedule semantics as scenario tables, in the style of the Kubernetes CronJob controller and
Temporal scheduler tests: one row per (start, spec, policy, what happens) → the runs that result,
driven through the whole simulated pipeline (ticker → queue → worker) on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.pipeline import CALLER, T0, Pipeline
from tests.unit.test_pipeline import _CODE


def _pipeline(start: datetime) -> Pipeline:
    p = Pipeline()
    p.clock.t = start
    p.definition()
    return p


def _completed_utc(p: Pipeline) -> list[str]:
    return [r.doc["nominal_time"][11:19] for r in p.runs() if r.status == "completed"]


# -- DST in both directions, with both policies, through the pipeline --------------------------
# America/New_York: 2026-03-08 02:00 EST → 03:00 EDT (02:xx does not exist);
#                   2026-11-01 02:00 EDT → 01:00 EST (01:xx happens twice).
# Rows: start (UTC), cron, dst policy (None = the Vixie default) → nominal times (UTC) that ran.
SPRING = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
FALL = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
DST = [
    # a fixed time inside the gap: the default shifts it to the instant the clocks jump (03:00 EDT)
    ("spring default", SPRING, "30 2 * * *", None, ["07:00:00"]),
    ("spring shift", SPRING, "30 2 * * *", {"skipped": "shift", "repeated": "once"}, ["07:00:00"]),
    ("spring skip", SPRING, "30 2 * * *", {"skipped": "skip", "repeated": "once"}, []),
    # a wildcard minute follows elapsed time: 01:45 EST, then 03:00, 03:15 … EDT (02:xx skipped)
    (
        "spring wildcard",
        SPRING,
        "*/15 1-3 * * *",
        None,
        ["06:15:00", "06:30:00", "06:45:00", "07:00:00", "07:15:00", "07:30:00", "07:45:00"],
    ),
    ("spring wildcard shift", SPRING, "0 2 * * *", {"skipped": "shift", "repeated": "once"}, ["07:00:00"]),
    # a fixed time in the repeated hour: the default fires the first 01:30 only
    ("fall default", FALL, "30 1 * * *", None, ["05:30:00"]),
    ("fall once", FALL, "30 1 * * *", {"skipped": "skip", "repeated": "once"}, ["05:30:00"]),
    ("fall twice", FALL, "30 1 * * *", {"skipped": "skip", "repeated": "twice"}, ["05:30:00", "06:30:00"]),
    # a wildcard minute fires in both passes of the repeated hour by default …
    ("fall wildcard", FALL, "0,30 1 * * *", None, ["05:00:00", "05:30:00"]),
    (
        "fall wildcard twice",
        FALL,
        "*/30 1 * * *",
        {"skipped": "skip", "repeated": "twice"},
        ["05:00:00", "05:30:00", "06:00:00", "06:30:00"],
    ),
    # … and an explicit `once` overrides that
    (
        "fall wildcard once",
        FALL,
        "*/30 1 * * *",
        {"skipped": "skip", "repeated": "once"},
        ["05:00:00", "05:30:00"],
    ),
]


@pytest.mark.parametrize(
    ("start", "cron", "dst", "ran"), [row[1:] for row in DST], ids=[row[0] for row in DST]
)
def test_dst(start: datetime, cron: str, dst: dict[str, str] | None, ran: list[str]) -> None:
    p = _pipeline(start)
    spec: dict[str, Any] = {"cron": [cron], "timezone": "America/New_York"}
    if dst is not None:
        spec["dst"] = dst
    p.schedule(spec=spec)
    p.run_for(4 * 3600, step=60)
    assert _completed_utc(p) == ran
    assert len(p.target.calls) == len(ran)  # each once, nothing else


# -- unpause with each catch-up mode -----------------------------------------------------------
# A firing every 10 s; paused at 10:00:01 for two minutes. The six firings planned before the
# pause (10:00:10 … 10:01:00) are recorded skipped/paused as they arrive; the six that fall while
# paused (10:01:10 … 10:02:00) are only counted. Unpaused at 10:02:05 with catch_up → which of
# the missed nominal times ran, and the counters: skipped_paused counts every paused firing that
# did not run (the six recorded ones and the missed ones not caught up).
UNPAUSE = [
    ("none", 31_536_000, [], {"skipped_paused": 12}),
    ("latest", 31_536_000, ["10:02:00"], {"skipped_paused": 11, "actions": 1}),
    (
        "all",
        31_536_000,
        ["10:01:10", "10:01:20", "10:01:30", "10:01:40", "10:01:50", "10:02:00"],
        {"skipped_paused": 6, "actions": 6},
    ),
    # `all` takes only what lies inside the catch-up window measured back from now
    ("all", 30, ["10:01:40", "10:01:50", "10:02:00"], {"skipped_paused": 9, "actions": 3}),
    # the latest missed firing is 5 s old: outside a 3 s window it is skipped as missed
    ("latest", 3, [], {"skipped_paused": 11, "missed_catchup_window": 1}),
]


@pytest.mark.parametrize(("catch_up", "window", "caught_up", "counters"), UNPAUSE)
def test_unpause_catch_up(catch_up: str, window: int, caught_up: list[str], counters: dict[str, int]) -> None:
    p = _pipeline(T0)
    p.schedule(spec={"intervals": [{"every_seconds": 10}]}, policies={"catchup_window_seconds": window})
    p.clock.advance(1)
    p.s.schedules.pause("s", "hold", None, CALLER)
    p.run_for(124)  # 10:00:01 … 10:02:04
    assert [r.doc["nominal_time"][11:19] for r in p.runs()] == [f"10:00:{s}0" for s in range(1, 6)] + [
        "10:01:00"
    ]
    assert {(r.status, r.doc.get("reason")) for r in p.runs()} == {("skipped", "paused")}
    assert p.clock.now() == T0 + timedelta(seconds=125)
    p.s.schedules.unpause("s", None, catch_up, CALLER)
    p.run_for(3)  # the next regular firing (10:02:10) is not due yet
    caught = [r for r in p.runs() if r.status != "skipped"]
    assert [r.doc["nominal_time"][11:19] for r in caught] == caught_up
    assert all(r.status == "completed" and r.doc["trigger"] == "schedule" for r in caught)
    moved = {k: v for k, v in p.s.schedules.describe("s")["info"]["counters"].items() if v}
    assert moved == counters
    assert len({inv.run_id for inv in p.target.calls}) == len(p.target.calls) == len(caught_up)


# -- backfill with each overlap policy ---------------------------------------------------------
# Three hourly nominal times backfilled into a schedule whose target holds every run open:
# → (status, reason) of the three runs while the first still runs, then after it finishes.
BACKFILL = [
    ("skip", "R S S", "C S S"),
    ("buffer_one", "R P S", "C R S"),
    ("buffer_all", "R P P", "C R P"),
    ("allow_all", "R R R", "C R R"),
    ("cancel_other", "X P P", "X S R"),
    ("terminate_other", "T T R", "T T R"),
]


@pytest.mark.parametrize(("overlap", "before", "after"), BACKFILL)
def test_backfill_overlap(overlap: str, before: str, after: str) -> None:
    p = _pipeline(T0)
    p.hold()
    p.schedule(spec={"cron": ["0 * * * *"]}, policies={"backfill_rate": 1})
    code, answer = p.s.schedules.backfill(
        "s", T0 - timedelta(hours=3), T0 - timedelta(hours=1), overlap, dry_run=False
    )
    assert (code, answer["runs_created"]) == (201, 3)
    p.run_for(4)  # one start a second: each later run meets the earlier ones running
    assert p.statuses() == [_CODE[c] for c in before.split()]
    p.finish(p.runs()[0].run_id)
    p.run_for(2)
    assert p.statuses() == [_CODE[c] for c in after.split()]
    assert all(r.doc["trigger"] == "backfill" for r in p.runs())
    started = [inv.run_id for inv in p.target.calls]
    assert len(started) == len(set(started))
