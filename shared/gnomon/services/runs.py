"""Use cases for runs over the API: execute now, read, list, history, retry, async completion."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from gnomon.domain.errors import AlreadyClosed, AlreadyExists, Conflict, InvalidArgument, NotFound
from gnomon.domain.runs import TERMINAL, RunStatus, check_transition, parse_scheduled_run_id
from gnomon.domain.timefmt import fmt
from gnomon.ports import JSON, CatalogStore, Clock, FiringQueue, Outcome, RunRecord, RunStore, ScheduleStore
from gnomon.services.execute import Executor
from gnomon.services.pagetoken import PageTokens
from gnomon.services.schedules import check_input
from gnomon.services.tick import new_run_doc, run_message

HIDDEN = frozenset(
    {
        "attempts",
        "events",
        "callback_token",
        "lease",
        "lease_attempt",
        "next_attempt",
        "previous_nominal_time",
    }
)
LIST_HIDDEN = HIDDEN | {"input", "result", "error", "memo", "inbox", "details"}
RETRYABLE = frozenset({RunStatus.failed, RunStatus.timed_out, RunStatus.canceled, RunStatus.terminated})


def run_view(rec: RunRecord) -> JSON:
    """A run as the API answers it (history lives at /history)."""
    view = {k: v for k, v in rec.doc.items() if k not in HIDDEN}
    view["status"] = rec.status
    return view


def run_summary(rec: RunRecord) -> JSON:
    return {k: v for k, v in run_view(rec).items() if k not in LIST_HIDDEN}


class Runs:
    def __init__(
        self,
        runs: RunStore,
        catalog: CatalogStore,
        queue: FiringQueue,
        clock: Clock,
        tokens: PageTokens,
        executor: Executor,
        schedules: ScheduleStore | None = None,
    ) -> None:
        self._schedules = schedules
        self._runs = runs
        self._catalog = catalog
        self._queue = queue
        self._clock = clock
        self._tokens = tokens
        self._executor = executor

    def get(self, run_id: str) -> JSON:
        return run_view(self._runs.get(run_id))

    def list(
        self,
        *,
        definition: str | None,
        schedule: str | None,
        statuses: list[str] | None,
        start: datetime | None,
        end: datetime | None,
        page_token: str | None,
        page_size: int,
    ) -> JSON:
        for i, s in enumerate(statuses or []):
            if s not in RunStatus.__members__:
                raise InvalidArgument("query.status", f"unknown status {s!r}" + (f" (#{i + 1})" if i else ""))
        filters = {
            "definition": definition,
            "schedule": schedule,
            "status": sorted(statuses) if statuses else None,
            "from": fmt(start),
            "to": fmt(end),
        }
        after = self._tokens.decode(page_token, "runs", filters)
        page = self._runs.list(
            schedule_id=schedule,
            definition=definition,
            statuses=statuses or None,
            start=start,
            end=end,
            after=after,
            limit=page_size,
        )
        return {
            "items": [run_summary(r) for r in page.items],
            "next_page_token": self._tokens.encode(page.last_key, "runs", filters),
        }

    def history(self, run_id: str, max_events: int) -> JSON:
        rec = self._runs.get(run_id)
        events = rec.doc.get("events", [])
        truncated = bool(max_events) and len(events) > max_events
        if truncated:
            events = events[-max_events:]
        attempts = [{**a, "input": rec.doc.get("input")} for a in rec.doc.get("attempts", [])]
        return {"run_id": run_id, "attempts": attempts, "events": events, "truncated": truncated}

    def execute(self, name: str, input_: Any, run_id: str | None, memo: JSON | None) -> tuple[int, JSON]:
        """Run a definition now; the same run_id with the same input answers the first run (200)."""
        definition = self._catalog.get("definition", name)
        check_input(definition.doc, input_)
        if run_id is not None and parse_scheduled_run_id(run_id) is not None:
            raise InvalidArgument("run_id", "has the form of a scheduled firing's run id")
        run_id = run_id or f"{name}-{uuid.uuid4().hex}"
        now = self._clock.now()
        doc = new_run_doc(
            run_id=run_id,
            definition=name,
            definition_version=definition.version,
            schedule_id=None,
            generation=None,
            nominal=now,
            scheduled=now,
            trigger="execute",
            input_=input_,
            memo=memo or {},
        )
        doc["next_attempt"] = 1
        doc["events"].append({"time": fmt(now), "type": "requested", "details": {}})
        rec = RunRecord(
            run_id=run_id,
            doc=doc,
            schedule_id=None,
            definition=name,
            nominal_time=now,
            status=RunStatus.pending.value,
            active_at=now,
        )
        try:
            rec = self._runs.create(rec)
        except AlreadyExists as exc:
            current = self._runs.get(run_id)
            if current.definition == name and current.doc.get("input") == input_:
                return 200, run_view(current)
            raise AlreadyExists(
                f"run {run_id} exists with another input", {"current": run_view(current)}
            ) from exc
        self._queue.send([run_message(run_id, 1)])
        return 201, run_view(rec)

    def trigger(
        self, schedule_id: str, overlap: str | None, input_: Any, key: str | None
    ) -> tuple[int, JSON]:
        """Run a schedule's action now (works while paused; not counted against
        remaining_actions). The same idempotency key answers the first run with 200."""
        assert self._schedules is not None
        sched = self._schedules.get(schedule_id)
        suffix = (
            hashlib.sha256(f"{sched.generation}:{key}".encode()).hexdigest()[:12]
            if key
            else uuid.uuid4().hex[:12]
        )
        run_id = f"{schedule_id}-t-{suffix}"
        if key is not None:
            try:
                return 200, run_view(self._runs.get(run_id))
            except NotFound:
                pass
        definition = self._catalog.get("definition", sched.definition)
        run_input = sched.doc.get("input") if input_ is None else input_
        check_input(definition.doc, run_input)
        now = self._clock.now()
        doc = new_run_doc(
            run_id=run_id,
            definition=sched.definition,
            definition_version=definition.version,
            schedule_id=schedule_id,
            generation=sched.generation,
            nominal=now,
            scheduled=now,
            trigger="trigger",
            input_=run_input,
            memo=sched.doc.get("memo", {}),
        )
        policy = overlap or sched.doc["policies"]["overlap"]
        busy = any(
            r.status in (RunStatus.running.value, RunStatus.pending.value)
            for r in self._runs.recent(schedule_id, limit=20)
        )
        skipped = policy != "allow_all" and busy
        if skipped:
            doc.update(status=RunStatus.skipped.value, reason="overlap", closed_at=fmt(now))
        else:
            doc["next_attempt"] = 1
        doc["events"].append({"time": fmt(now), "type": "triggered", "details": {"overlap": policy}})
        rec = RunRecord(
            run_id=run_id,
            doc=doc,
            schedule_id=schedule_id,
            definition=sched.definition,
            nominal_time=now,
            status=doc["status"],
            active_at=None if skipped else now,
        )
        try:
            rec = self._runs.create(rec)
        except AlreadyExists:
            return 200, run_view(self._runs.get(run_id))
        if skipped:
            self._schedules.add_counters(schedule_id, {"skipped_overlap": 1})
        else:
            self._queue.send([run_message(run_id, 1)])
        return 201, run_view(rec)

    def retry(self, run_id: str) -> JSON:
        """A closed run that did not complete gets a new attempt (back to pending)."""
        for _ in range(5):
            rec = self._runs.get(run_id)
            if RunStatus(rec.status) not in RETRYABLE:
                raise Conflict(f"a {rec.status} run cannot be retried", current=run_view(rec))
            check_transition(rec.status, RunStatus.pending.value)
            now = self._clock.now()
            attempt = int(rec.doc.get("attempt", 0)) + 1
            doc = {
                **rec.doc,
                "status": RunStatus.pending.value,
                "next_attempt": attempt,
                "closed_at": None,
                "reason": None,
                "events": [
                    *rec.doc.get("events", []),
                    {"time": fmt(now), "type": "retry_requested", "details": {}},
                ],
            }
            new = RunRecord(
                run_id=rec.run_id,
                doc=doc,
                schedule_id=rec.schedule_id,
                definition=rec.definition,
                nominal_time=rec.nominal_time,
                status=RunStatus.pending.value,
                active_at=now,
                expires_at=None,
                version=rec.version,
            )
            try:
                saved = self._runs.update(new, expected_version=rec.version)
            except Conflict:
                continue
            self._queue.send([run_message(run_id, attempt)])
            return run_view(saved)
        raise Conflict("the run kept changing; try again", current=None)

    def callback(self, run_id: str, token: str, outcome: Outcome) -> JSON:
        """Finish an attempt whose http target answered 202."""
        rec = self._runs.get(run_id)
        if RunStatus(rec.status) in TERMINAL:
            raise AlreadyClosed(f"the run is already {rec.status}", {"status": rec.status})
        if rec.status != RunStatus.running.value or rec.doc.get("callback_token") != token:
            raise Conflict("callback_token does not match the run's current attempt", current=run_view(rec))
        self._executor.finish(rec, outcome)
        return run_view(self._runs.get(run_id))
