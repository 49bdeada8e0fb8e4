"""The ticker: find due schedules through the sharded due index, enqueue their firings within
the look-ahead horizon (each with the delay that lands it on its second), advance each schedule
past the horizon with one version-conditioned write, and sweep runs whose lease expired.

Why duplicates are harmless here: every firing's run id is deterministic and the worker claims
it with a conditional write. Two tickers racing, or a ticker dying between enqueue and advance,
only enqueue a firing twice; it still runs once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.runs import RunStatus, scheduled_run_id
from gnomon.domain.spec import CompiledSpec
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import (
    JSON,
    Clock,
    DueEntry,
    FiringQueue,
    OutgoingMessage,
    RunRecord,
    RunStore,
    ScheduleRecord,
    ScheduleStore,
)

MAX_DELAY = 900
MAX_FIRINGS_PER_SCHEDULE = (
    1000  # per tick; the rest follow next tick (the cursor only moves past what was planned)
)
MAX_SKIPPED_RECORDED = 1000
MAX_MISSED_COUNTED = 1_000_000
PAGE = 100
RETRY_GRACE = timedelta(seconds=60)


@dataclass
class TickReport:
    """What one tick did (logged, returned by the handler, read by benchmarks)."""

    due_read: int = 0
    schedules_advanced: int = 0
    firings_enqueued: int = 0
    missed: int = 0
    conflicts: int = 0
    runs_swept: int = 0
    complete: bool = True
    errors: list[str] = field(default_factory=list)


class Ticker:
    """Plans firings. `compile` turns a stored spec into a `CompiledSpec` (named calendars resolved)."""

    def __init__(
        self,
        schedules: ScheduleStore,
        runs: RunStore,
        queue: FiringQueue,
        clock: Clock,
        compile: Callable[[JSON], CompiledSpec],
        *,
        horizon_seconds: float = 60.0,
    ) -> None:
        self._schedules = schedules
        self._runs = runs
        self._queue = queue
        self._clock = clock
        self._compile = compile
        self.horizon = timedelta(seconds=min(max(horizon_seconds, 1.0), MAX_DELAY))

    def tick(self, time_left: Callable[[], float] = lambda: math.inf, *, reserve: float = 5.0) -> TickReport:
        """One pass over every shard of the due index and the active-run index, stopping early
        (report.complete False) when fewer than `reserve` seconds are left."""
        report = TickReport()
        now = self._clock.now()
        until = now + self.horizon
        for shard in range(self._schedules.shards):
            after: DueEntry | None = None
            while True:
                if time_left() < reserve:
                    report.complete = False
                    return report
                entries = self._schedules.due(shard, until, limit=PAGE, after=after)
                report.due_read += len(entries)
                for entry in entries:
                    try:
                        self.plan(entry.schedule_id, now=now, report=report)
                    except Exception as exc:  # one bad schedule must not stop the others
                        report.errors.append(f"{entry.schedule_id}: {exc!r}")
                if len(entries) < PAGE:
                    break
                after = entries[-1]
        self.sweep(now, report, time_left, reserve)
        return report

    def plan(self, schedule_id: str, *, now: datetime | None = None, report: TickReport | None = None) -> int:
        """Enqueue the firings of one schedule up to now + horizon and advance its cursor.
        Used by the tick and, right after a create/update/unpause, by the API. Answers the
        number of firings enqueued."""
        now = now or self._clock.now()
        report = report or TickReport()
        until = now + self.horizon
        for _ in range(5):
            try:
                rec = self._schedules.get(schedule_id)
            except NotFound:
                return 0
            if rec.next_fire_at is None or rec.next_fire_at > until:
                return 0
            try:
                sent = self._plan_record(rec, now, until, report)
            except Conflict:
                report.conflicts += 1
                continue  # a user change or another ticker moved it: re-read and plan again
            report.schedules_advanced += 1
            report.firings_enqueued += sent
            return sent
        return 0

    def _plan_record(self, rec: ScheduleRecord, now: datetime, until: datetime, report: TickReport) -> int:
        doc = rec.doc
        state = doc["state"]
        if state.get("paused"):
            until_s = state.get("paused_until")
            if not until_s or parse(until_s) > now:
                return 0
            # `pause until` reached: unpause by itself with catch_up none.
            compiled = self._compile(doc["spec"])
            doc = {
                **doc,
                "state": {**state, "paused": False, "paused_until": None, "note": "unpaused (until reached)"},
            }
            doc["state"].pop("paused_at", None)
            nxt = compiled.next_after(now)
            self._schedules.update(_with(rec, doc, nxt), expected_version=rec.version)
            return 0
        assert rec.next_fire_at is not None
        compiled = self._compile(doc["spec"])
        window = timedelta(seconds=int(doc["policies"]["catchup_window_seconds"]))
        cursor: datetime | None = rec.next_fire_at
        previous = doc.get("last_nominal")
        missed_runs: list[RunRecord] = []
        missed = 0
        # Firings older than the catch-up window are skipped (recorded up to a bound, then counted).
        while cursor is not None and cursor < now - window and missed < MAX_MISSED_COUNTED:
            if len(missed_runs) < MAX_SKIPPED_RECORDED:
                missed_runs.append(self._skipped_run(rec, cursor, "missed_catchup_window"))
            missed += 1
            previous = fmt(cursor)
            cursor = compiled.next_after(cursor)
        if missed >= MAX_MISSED_COUNTED and cursor is not None:
            cursor = compiled.next_after(now - window - timedelta(milliseconds=1))
        messages: list[OutgoingMessage] = []
        remaining = doc["state"].get("remaining_actions")
        # A schedule with remaining_actions never has more firings in flight than it may still
        # run: `planned` lists the nominal times enqueued and not yet consumed by the worker
        # (entries older than any message could still be waiting are forgotten).
        planned: list[str] = [
            t
            for t in doc.get("planned", [])
            if parse(t) > now - timedelta(seconds=MAX_DELAY) - 2 * self.horizon
        ]
        budget = (
            MAX_FIRINGS_PER_SCHEDULE
            if remaining is None
            else min(MAX_FIRINGS_PER_SCHEDULE, remaining - len(planned))
        )
        while cursor is not None and cursor <= until and len(messages) < budget:
            scheduled = compiled.scheduled_time(rec.schedule_id, cursor)
            delay = (scheduled - now).total_seconds()
            messages.append(
                OutgoingMessage(
                    body={
                        "kind": "firing",
                        "schedule_id": rec.schedule_id,
                        "generation": rec.generation,
                        "config_version": doc.get("config_version", 1),
                        "nominal_time": fmt(cursor),
                        "scheduled_time": fmt(scheduled),
                        "previous_nominal_time": previous,
                    },
                    delay_seconds=max(0, min(MAX_DELAY, math.floor(delay))),
                )
            )
            previous = fmt(cursor)
            cursor = compiled.next_after(cursor)
        # Enqueue first, then advance: dying in between only enqueues twice (deduplicated by run id).
        if messages:
            self._queue.send(messages)
        new_doc = {**doc, "last_nominal": previous}
        if remaining is not None:
            new_doc["planned"] = planned + [m.body["nominal_time"] for m in messages]
        self._schedules.update(_with(rec, new_doc, cursor), expected_version=rec.version)
        if missed:
            for run in missed_runs:
                with contextlib.suppress(AlreadyExists):  # recorded by an earlier tick
                    self._runs.create(run)
            self._schedules.add_counters(rec.schedule_id, {"missed_catchup_window": missed})
            report.missed += missed
        return len(messages)

    def _skipped_run(self, rec: ScheduleRecord, nominal: datetime, reason: str) -> RunRecord:
        return skipped_run(rec, nominal, reason, self._clock.now())

    def sweep(
        self, now: datetime, report: TickReport, time_left: Callable[[], float], reserve: float
    ) -> None:
        """Re-enqueue runs whose attempt is due but has no message in flight (long backoffs,
        lost messages) and runs whose worker died holding the lease."""
        for shard in range(self._runs.shards):
            if time_left() < reserve:
                report.complete = False
                return
            for run in self._runs.active(shard, now, limit=PAGE):
                try:
                    if self._sweep_one(run, now):
                        report.runs_swept += 1
                except Conflict:
                    report.conflicts += 1

    def _sweep_one(self, run: RunRecord, now: datetime) -> bool:
        doc = dict(run.doc)
        if run.status == RunStatus.pending:
            attempt = int(doc.get("next_attempt", doc.get("attempt", 0) + 1))
            updated = self._runs.update(
                _run_with(run, doc, active_at=now + RETRY_GRACE), expected_version=run.version
            )
            self._queue.send([run_message(updated.run_id, attempt)])
            return True
        if run.status == RunStatus.running:
            # The lease expired: the worker holding it is gone. That attempt failed; the
            # worker's retry rules decide about the next (a "lease_expired" message does it).
            self._runs.update(_run_with(run, doc, active_at=now + RETRY_GRACE), expected_version=run.version)
            self._queue.send([OutgoingMessage(body={"kind": "lease_expired", "run_id": run.run_id})])
            return True
        # Closed runs should not be active; drop them from the index.
        self._runs.update(_run_with(run, doc, active_at=None), expected_version=run.version)
        return False


def run_message(run_id: str, attempt: int, delay: float = 0) -> OutgoingMessage:
    """The message that starts attempt `attempt` of an existing pending run."""
    return OutgoingMessage(
        body={"kind": "run", "run_id": run_id, "attempt": attempt},
        delay_seconds=max(0, min(MAX_DELAY, math.ceil(delay))),
    )


def skipped_run(rec: ScheduleRecord, nominal: datetime, reason: str, now: datetime) -> RunRecord:
    """A `skipped` run of a schedule's firing, with its reason."""
    run_id = scheduled_run_id(rec.schedule_id, rec.generation, nominal)
    doc = new_run_doc(
        run_id=run_id,
        definition=rec.definition,
        definition_version=None,
        schedule_id=rec.schedule_id,
        generation=rec.generation,
        nominal=nominal,
        scheduled=nominal,
        trigger="schedule",
        input_=rec.doc.get("input"),
        memo=rec.doc.get("memo", {}),
    )
    doc.update(status=RunStatus.skipped.value, reason=reason, closed_at=fmt(now))
    doc["events"].append({"time": fmt(now), "type": "skipped", "details": {"reason": reason}})
    return RunRecord(
        run_id=run_id,
        doc=doc,
        schedule_id=rec.schedule_id,
        definition=rec.definition,
        nominal_time=nominal,
        status=RunStatus.skipped.value,
    )


def new_run_doc(
    *,
    run_id: str,
    definition: str,
    definition_version: int | None,
    schedule_id: str | None,
    generation: str | None,
    nominal: datetime,
    scheduled: datetime,
    trigger: str,
    input_: Any,
    memo: Any,
) -> JSON:
    """A run document with every contract field at its initial value."""
    return {
        "run_id": run_id,
        "definition": definition,
        "definition_version": definition_version,
        "schedule_id": schedule_id,
        "generation": generation,
        "nominal_time": fmt(nominal),
        "scheduled_time": fmt(scheduled),
        "started_at": None,
        "closed_at": None,
        "duration_ms": None,
        "status": RunStatus.pending.value,
        "attempt": 0,
        "input": input_,
        "memo": memo,
        "result": None,
        "result_truncated": False,
        "error": None,
        "error_truncated": False,
        "reason": None,
        "trigger": trigger,
        "inbox": [],
        "details": None,
        "attempts": [],
        "events": [],
    }


def _with(rec: ScheduleRecord, doc: JSON, next_fire_at: datetime | None) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=rec.schedule_id,
        doc=doc,
        generation=rec.generation,
        definition=rec.definition,
        group=rec.group,
        next_fire_at=next_fire_at,
        version=rec.version,
    )


def _run_with(run: RunRecord, doc: JSON, *, active_at: datetime | None) -> RunRecord:
    return RunRecord(
        run_id=run.run_id,
        doc=doc,
        schedule_id=run.schedule_id,
        definition=run.definition,
        nominal_time=run.nominal_time,
        status=doc["status"],
        active_at=active_at,
        expires_at=run.expires_at,
        version=run.version,
    )
