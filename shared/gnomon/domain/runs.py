"""Runs: deterministic identities, statuses and the transitions between them (CONTRACT.md §6).

A scheduled firing's run id is derived from the schedule id, its generation and the nominal
time — `<schedule_id>:<generation>:<YYYYMMDDTHHMMSS[fff]Z>` — so one firing is never two runs
and a store can find the run from its id alone (`:` never occurs in a schedule id). Runs with
other ids (execute, trigger) are found through a pointer item.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gnomon.domain.errors import AlreadyClosed, Conflict
from gnomon.domain.timefmt import parse

RESULT_LIMIT = 32 * 1024


class RunStatus(StrEnum):
    pending = "pending"
    """Waiting to start: not yet picked up, or between attempts."""
    running = "running"
    """An attempt holds the run's lease."""
    completed = "completed"
    """The target succeeded."""
    failed = "failed"
    """The last attempt failed."""
    canceled = "canceled"
    """Canceled before it started, or while running (a late finish is kept in history)."""
    terminated = "terminated"
    """Stopped at once by an operator."""
    timed_out = "timed_out"
    """The last attempt exceeded its timeout."""
    skipped = "skipped"
    """Never ran: `reason` says why (overlap, missed_catchup_window, paused, buffer_full)."""


TERMINAL = frozenset(
    {
        RunStatus.completed,
        RunStatus.failed,
        RunStatus.canceled,
        RunStatus.terminated,
        RunStatus.timed_out,
        RunStatus.skipped,
    }
)

DURATION_STATUSES = TERMINAL - {RunStatus.skipped}
"""Statuses of runs that closed after an attempt: the runs whose `duration_ms` counts in the run
metrics (a skipped run never started; a pending or running one may hold an earlier attempt's)."""

# Allowed transitions, as data: the domain refuses anything else.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.pending: frozenset(
        {RunStatus.running, RunStatus.canceled, RunStatus.terminated, RunStatus.skipped, RunStatus.failed}
    ),
    RunStatus.running: frozenset(
        {
            RunStatus.pending,
            RunStatus.completed,
            RunStatus.failed,
            RunStatus.timed_out,
            RunStatus.canceled,
            RunStatus.terminated,
        }
    ),
    RunStatus.failed: frozenset({RunStatus.pending}),  # retry
    RunStatus.timed_out: frozenset({RunStatus.pending}),
    RunStatus.canceled: frozenset({RunStatus.pending}),
    RunStatus.terminated: frozenset({RunStatus.pending}),
    RunStatus.completed: frozenset(),
    RunStatus.skipped: frozenset(),
}


def check_transition(current: str, new: str) -> None:
    """Raise unless `current → new` is allowed (AlreadyClosed when a closed run may not move)."""
    cur, nxt = RunStatus(current), RunStatus(new)
    if nxt in TRANSITIONS[cur]:
        return
    if cur in TERMINAL:
        raise AlreadyClosed(f"the run is already {cur.value}", {"status": cur.value})
    raise Conflict(f"a {cur.value} run cannot become {nxt.value}", current=None)


_RUN_ID = re.compile(
    r"^(?P<sid>[A-Za-z0-9][A-Za-z0-9._-]{0,79}):(?P<gen>[0-9a-z]+):(?P<t>\d{8}T\d{6}(\d{3})?Z)$"
)


def scheduled_run_id(schedule_id: str, generation: str, nominal: datetime) -> str:
    """The run id of a schedule's firing at `nominal` (scheduled or backfilled)."""
    t = nominal.astimezone(UTC)
    stamp = (
        t.strftime("%Y%m%dT%H%M%S") + (f"{t.microsecond // 1000:03d}" if t.microsecond >= 1000 else "") + "Z"
    )
    return f"{schedule_id}:{generation}:{stamp}"


def parse_scheduled_run_id(run_id: str) -> tuple[str, str, datetime] | None:
    """(schedule_id, generation, nominal_time) of a scheduled firing's run id, else None."""
    m = _RUN_ID.match(run_id)
    if not m:
        return None
    stamp = m.group("t")
    t = datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    if len(stamp) == 19:
        t += timedelta(milliseconds=int(stamp[15:18]))
    return m.group("sid"), m.group("gen"), t


def retry_delay(retry: dict[str, Any], failed_attempt: int) -> float:
    """Seconds before attempt n+1 after attempt n failed: min(initial × coefficient^(n−1), maximum)."""
    initial = float(retry.get("initial_interval_seconds", 1))
    coefficient = float(retry.get("backoff_coefficient", 2.0))
    maximum = float(retry.get("maximum_interval_seconds", 300))
    return float(min(initial * coefficient ** (failed_attempt - 1), maximum))


def cap_json(value: Any, limit: int = RESULT_LIMIT) -> tuple[Any, bool]:
    """`value` if its JSON fits in `limit` bytes, else a truncated string form and True."""
    import json

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    data = text.encode()
    if len(data) <= limit:
        return value, False
    return data[: limit - 3].decode(errors="ignore") + "...", True


def start_lateness(doc: dict[str, Any]) -> tuple[datetime, float] | None:
    """(scheduled_time, ms from it to the first attempt's start) of a run document, or None
    when it never started (or has no scheduled time): a sample of `/v1/metrics/lateness`."""
    first = (doc.get("attempts") or [{}])[0].get("started_at") or doc.get("started_at")
    if not first or not doc.get("scheduled_time"):
        return None
    scheduled = parse(doc["scheduled_time"])
    return scheduled, (parse(first) - scheduled).total_seconds() * 1000


def run_duration(doc: dict[str, Any]) -> int | None:
    """The run document's `duration_ms` (set once an attempt closed), or None: a sample of the
    run-duration histogram of `/v1/metrics/lateness?include=durations`."""
    value = doc.get("duration_ms")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)
