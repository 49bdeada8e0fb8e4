"""`GET /v1/metrics/lateness` (`Ops.lateness`): percentiles per bucket over every run of the
window (`RunStore.lateness_samples`), up to MAX_LATENESS_RUNS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gnomon.adapters.memory import MemoryRunStore
from gnomon.domain.runs import scheduled_run_id
from gnomon.domain.timefmt import fmt
from gnomon.ports import RunRecord
from gnomon.services import ops
from tests.unit.pipeline import FakeClock

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _runs(n: int) -> MemoryRunStore:
    """n runs a minute apart from T0, run i started i × 10 ms late (its first attempt's start)."""
    store = MemoryRunStore()
    for i in range(n):
        nominal = T0 + timedelta(minutes=i)
        rid = scheduled_run_id(f"s{i % 3}", "g", nominal)
        first = fmt(nominal + timedelta(milliseconds=10 * i))
        doc = {
            "run_id": rid,
            "scheduled_time": fmt(nominal),
            "started_at": fmt(nominal + timedelta(hours=1)),  # a later attempt's: not the lateness
            "attempts": [{"attempt": 1, "started_at": first}, {"attempt": 2, "started_at": "x"}],
        }
        store.create(
            RunRecord(
                run_id=rid,
                doc=doc,
                schedule_id=f"s{i % 3}",
                definition="d",
                nominal_time=nominal,
                status="completed",
            )
        )
    return store


def test_lateness_reads_every_run_of_the_window() -> None:
    o = ops.Ops(_runs(40), None, FakeClock(T0 + timedelta(hours=2)))
    got = o.lateness(
        schedule=None, definition=None, start=T0, end=T0 + timedelta(minutes=40), bucket_seconds=600
    )
    assert got["truncated"] is False
    assert [b["start"] for b in got["buckets"]] == [fmt(T0 + timedelta(minutes=m)) for m in (0, 10, 20, 30)]
    first = got["buckets"][0]  # runs 0..9: 0, 10, …, 90 ms late
    assert (first["count"], first["p50_ms"], first["p95_ms"], first["p99_ms"], first["max_ms"]) == (
        10,
        40.0,
        90.0,
        90.0,
        90.0,
    )
    assert [b["count"] for b in got["buckets"]] == [10, 10, 10, 10]
    assert got["buckets"][3]["max_ms"] == 390.0
    one = o.lateness(
        schedule="s1", definition=None, start=T0, end=T0 + timedelta(minutes=40), bucket_seconds=3600
    )
    assert [b["count"] for b in one["buckets"]] == [13]  # runs 1, 4, …, 37


def test_lateness_stops_at_the_run_limit_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "MAX_LATENESS_RUNS", 30)
    o = ops.Ops(_runs(40), None, FakeClock(T0 + timedelta(hours=2)))
    got = o.lateness(
        schedule=None, definition=None, start=T0, end=T0 + timedelta(minutes=40), bucket_seconds=3600
    )
    assert got["truncated"] is True
    assert [b["count"] for b in got["buckets"]] == [30]  # the newest 30 (runs 10..39)
    assert got["buckets"][0]["max_ms"] == 390.0 and got["buckets"][0]["p50_ms"] == 240.0
    monkeypatch.setattr(ops, "MAX_LATENESS_RUNS", 40)
    got = o.lateness(
        schedule=None, definition=None, start=T0, end=T0 + timedelta(minutes=40), bucket_seconds=3600
    )
    assert [b["count"] for b in got["buckets"]] == [40]
