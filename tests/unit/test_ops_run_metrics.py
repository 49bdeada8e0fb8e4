"""`GET /v1/metrics/lateness?include=firings,durations` (`Ops.lateness`): the overview's firings
by day and hour and its run-duration histogram, from the same run samples as the percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.adapters.memory import MemoryRunStore
from gnomon.domain.errors import InvalidArgument
from gnomon.domain.runs import scheduled_run_id
from gnomon.domain.timefmt import fmt
from gnomon.ports import RunRecord, RunSample
from gnomon.services import ops
from tests.unit.pipeline import FakeClock

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # a Tuesday; Europe/Riga is UTC+2 in December
WINDOW = {"schedule": None, "definition": None, "start": T0, "end": T0 + timedelta(days=7)}


def _store(*runs: tuple[datetime, str, int | None]) -> MemoryRunStore:
    """One run per (nominal time, status, duration_ms), each started 5 ms late."""
    store = MemoryRunStore()
    for nominal, status, duration in runs:
        rid = scheduled_run_id("s", "g", nominal)
        doc: dict[str, Any] = {"run_id": rid, "status": status, "duration_ms": duration}
        if status not in ("pending", "skipped"):
            doc |= {"scheduled_time": fmt(nominal), "started_at": fmt(nominal + timedelta(milliseconds=5))}
        store.create(
            RunRecord(
                run_id=rid, doc=doc, schedule_id="s", definition="d", nominal_time=nominal, status=status
            )
        )
    return store


def _ops(store: MemoryRunStore) -> ops.Ops:
    return ops.Ops(store, None, FakeClock(T0 + timedelta(days=8)))


def test_without_include_the_answer_is_the_percentiles_only() -> None:
    got = _ops(_store((T0, "completed", 10))).lateness(**WINDOW, bucket_seconds=3600)
    assert set(got) == {"from", "to", "bucket_seconds", "buckets", "truncated"}
    assert got["buckets"][0]["count"] == 1


@pytest.mark.parametrize(
    ("timezone", "cells"),
    [
        # (day of week, hour) → count; Monday = 0
        (None, {(1, 10): 2, (1, 23): 1, (6, 23): 1}),
        ("UTC", {(1, 10): 2, (1, 23): 1, (6, 23): 1}),
        # Riga: 10:00 → 12:00 Tuesday, 23:30 Tuesday → 01:30 Wednesday, Sunday 23:30 → Monday 01:30
        ("Europe/Riga", {(1, 12): 2, (2, 1): 1, (0, 1): 1}),
        # Los Angeles (UTC−8): 10:00 → 02:00 Tuesday, 23:30 → 15:30 Tuesday, Sunday 23:30 → 15:30 Sunday
        ("America/Los_Angeles", {(1, 2): 2, (1, 15): 1, (6, 15): 1}),
    ],
)
def test_firings_count_every_run_by_local_day_and_hour(timezone: str | None, cells: dict[Any, int]) -> None:
    store = _store(
        (T0, "completed", 10),
        (T0 + timedelta(minutes=30), "skipped", None),  # a firing too, though it never ran
        (T0 + timedelta(hours=13, minutes=30), "failed", 20),
        (T0 + timedelta(days=5, hours=13, minutes=30), "pending", None),  # Sunday 23:30 UTC
    )
    got = _ops(store).lateness(**WINDOW, bucket_seconds=3600, include=["firings"], timezone=timezone)
    assert "durations" not in got
    firings = got["firings"]
    assert firings["timezone"] == (timezone or "UTC")
    assert firings["total"] == 4
    assert firings["by_status"] == {"completed": 1, "failed": 1, "pending": 1, "skipped": 1}
    grid = firings["by_day_hour"]
    assert len(grid) == 7 and all(len(row) == 24 for row in grid)
    assert {(d, h): n for d, row in enumerate(grid) for h, n in enumerate(row) if n} == cells


def test_durations_histogram_of_closed_runs_in_log_spaced_bins() -> None:
    minute = timedelta(minutes=1)
    store = _store(
        (T0, "completed", 0),
        (T0 + minute, "completed", 1),
        (T0 + 2 * minute, "failed", 999),
        (T0 + 3 * minute, "completed", 1000),
        (T0 + 4 * minute, "timed_out", 1999),
        (T0 + 5 * minute, "canceled", 6_000_000),
        (T0 + 6 * minute, "pending", 300),  # between attempts: its last attempt's duration, not counted
        (T0 + 7 * minute, "running", None),
        (T0 + 8 * minute, "skipped", None),
    )
    got = _ops(store).lateness(**WINDOW, bucket_seconds=3600, include=["durations"])
    assert "firings" not in got
    d = got["durations"]
    assert (d["count"], d["p50_ms"], d["p95_ms"], d["max_ms"]) == (6, 999, 6_000_000, 6_000_000)
    bins = d["bins"]
    edges = [(b["lower_ms"], b["upper_ms"]) for b in bins]
    assert edges[:4] == [(0, 1), (1, 2), (2, 5), (5, 10)]
    assert edges[-2:] == [(2_000_000, 5_000_000), (5_000_000, None)]
    assert all(lo < up for lo, up in edges[:-1]) and all(
        a[1] == b[0] for a, b in zip(edges, edges[1:], strict=False)
    )
    assert len(bins) == 22  # 1-2-5 from 1 ms to 5 000 s, and the open last bin
    filled = {(b["lower_ms"], b["upper_ms"]): (b["count"], b["by_status"]) for b in bins if b["count"]}
    assert filled == {
        (0, 1): (1, {"completed": 1}),
        (1, 2): (1, {"completed": 1}),
        (500, 1000): (1, {"failed": 1}),
        (1000, 2000): (2, {"completed": 1, "timed_out": 1}),
        (5_000_000, None): (1, {"canceled": 1}),
    }
    assert all(b["by_status"] == {} for b in bins if not b["count"])


def test_empty_window() -> None:
    got = _ops(_store()).lateness(**WINDOW, bucket_seconds=60, include=["firings", "durations"])
    assert got["buckets"] == [] and got["firings"]["total"] == 0 and got["firings"]["by_status"] == {}
    assert got["firings"]["by_day_hour"] == [[0] * 24] * 7
    d = got["durations"]
    assert (d["count"], d["p50_ms"], d["p95_ms"], d["max_ms"]) == (0, None, None, None)
    assert sum(b["count"] for b in d["bins"]) == 0


def test_firings_and_durations_stop_at_the_run_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "MAX_LATENESS_RUNS", 3)
    store = _store(*((T0 + timedelta(hours=i), "completed", 10 * (i + 1)) for i in range(5)))
    got = _ops(store).lateness(**WINDOW, bucket_seconds=3600, include=["firings", "durations"])
    assert got["truncated"] is True
    assert got["firings"]["total"] == 3
    assert [got["firings"]["by_day_hour"][1][h] for h in range(10, 15)] == [0, 0, 1, 1, 1]  # the newest 3
    assert got["durations"]["count"] == 3 and got["durations"]["max_ms"] == 50


def test_the_store_is_asked_for_durations_only_when_they_are_included() -> None:
    """Durations of runs written before the `du` attribute cost a document read each
    (`DynamoRunStore.run_samples`): asked only for the histogram."""
    asked: list[bool] = []

    class Spy(MemoryRunStore):
        def run_samples(self, **kw: Any) -> tuple[list[RunSample], bool]:
            asked.append(kw["durations"])
            return super().run_samples(**kw)

    o = ops.Ops(Spy(), None, FakeClock(T0))
    for include in ([], ["firings"], ["durations"], ["firings", "durations"]):
        o.lateness(**WINDOW, bucket_seconds=60, include=include)
    assert asked == [False, False, True, True]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"include": ["firings", "heatmap"]}, "query.include"),
        ({"include": [""]}, "query.include"),
        ({"timezone": "Mars/Olympus"}, "query.timezone"),
        ({"timezone": ""}, "query.timezone"),
        ({"include": ["firings"], "timezone": "../etc/passwd"}, "query.timezone"),
    ],
)
def test_bad_input(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        _ops(_store()).lateness(**WINDOW, bucket_seconds=60, **kw)
    assert e.value.field == field
