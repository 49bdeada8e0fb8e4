"""The worker's use case: take one queued message — a firing, a run's next attempt, or a lost
lease — claim the run with a conditional write, invoke the target, and record the outcome.

Exactly once: a firing's run id is deterministic, so a redelivered or duplicated message finds
the run already created (`AlreadyExists`) and stops; a run's next attempt is claimed by a
version-conditioned `pending → running` update, so two deliveries of one attempt start it once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.runs import RunStatus, cap_json, check_transition, retry_delay, scheduled_run_id
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import (
    JSON,
    CatalogStore,
    Clock,
    FiringQueue,
    Invocation,
    Outcome,
    RunRecord,
    RunStore,
    ScheduleRecord,
    ScheduleStore,
    TargetInvoker,
)
from gnomon.services.tick import MAX_DELAY, RETRY_GRACE, new_run_doc, run_message, skipped_run

LEASE_GRACE = timedelta(seconds=30)
MAX_EARLY_WAIT = 1.5  # seconds: SQS delays are whole seconds; the rest is waited here
HISTORY_ERROR_LIMIT = 2048
DEFAULT_RETENTION_DAYS = 30
_BLOCKING = (RunStatus.running.value, RunStatus.pending.value)


@dataclass(frozen=True)
class Handled:
    """What became of a message (for logs, metrics and tests)."""

    outcome: str  # ran | duplicate | stale | deleted | skipped | retry_scheduled | gone
    run_id: str | None = None
    status: str | None = None
    lateness_ms: float | None = None  # started_at − scheduled_time of a firing's first attempt


class Executor:
    """Runs firings. `worker_id` names the lease owner (a Lambda request id, a thread)."""

    def __init__(
        self,
        schedules: ScheduleStore,
        runs: RunStore,
        catalog: CatalogStore,
        queue: FiringQueue,
        clock: Clock,
        invoker: TargetInvoker,
        *,
        worker_id: str = "worker",
        retention_days: int = DEFAULT_RETENTION_DAYS,
        sleep: Any = time.sleep,
    ) -> None:
        self._schedules = schedules
        self._runs = runs
        self._catalog = catalog
        self._queue = queue
        self._clock = clock
        self._invoker = invoker
        self._worker_id = worker_id
        self._retention = retention_days
        self._sleep = sleep

    def handle(self, body: JSON) -> Handled:
        """Process one message body; raise only for a message that cannot be understood."""
        kind = body.get("kind")
        if kind == "firing":
            return self._fire(body)
        if kind == "run":
            return self._start(str(body["run_id"]), int(body["attempt"]))
        if kind == "lease_expired":
            return self._expire(str(body["run_id"]))
        raise ValueError(f"unknown message kind {kind!r}")

    # -- a schedule's firing --------------------------------------------------------------------

    def _fire(self, body: JSON) -> Handled:
        sid, gen = str(body["schedule_id"]), str(body["generation"])
        nominal, scheduled = parse(body["nominal_time"]), parse(body["scheduled_time"])
        run_id = scheduled_run_id(sid, gen, nominal)
        try:
            sched = self._schedules.get(sid)
        except NotFound:
            return Handled("deleted", run_id)
        if sched.generation != gen:
            return Handled("deleted", run_id)  # deleted and re-created since
        if sched.doc.get("config_version", 1) != body.get("config_version", 1):
            self._schedules.add_counters(sid, {"dropped_stale": 1})
            self._count_down(sched, body["nominal_time"], consume=False)
            return Handled("stale", run_id)
        if sched.doc["state"].get("paused"):
            return self._skip(sched, nominal, "paused", "skipped_paused")
        self._wait_until(scheduled)
        if sched.doc["policies"]["overlap"] != "allow_all" and self._blocking_runs(sched, run_id):
            # skip; the buffer/cancel/terminate policies come with the schedule-semantics work
            return self._skip(sched, nominal, "overlap", "skipped_overlap")
        try:
            definition = self._catalog.get("definition", sched.definition)
        except NotFound:
            return self._skip(sched, nominal, "definition_missing", "dropped_stale")
        now = self._clock.now()
        doc = new_run_doc(
            run_id=run_id,
            definition=sched.definition,
            definition_version=definition.version,
            schedule_id=sid,
            generation=gen,
            nominal=nominal,
            scheduled=scheduled,
            trigger="schedule",
            input_=sched.doc.get("input"),
            memo=sched.doc.get("memo", {}),
        )
        doc["previous_nominal_time"] = body.get("previous_nominal_time")
        timeout = _timeout(definition.doc, sched.doc)
        doc["events"].append({"time": fmt(now), "type": "scheduled", "details": {"actual_time": fmt(now)}})
        _begin_attempt(doc, 1, self._worker_id, now, timeout)
        lease_until = now + timedelta(seconds=timeout) + LEASE_GRACE
        rec = RunRecord(
            run_id=run_id,
            doc=doc,
            schedule_id=sid,
            definition=sched.definition,
            nominal_time=nominal,
            status=RunStatus.running.value,
            active_at=lease_until,
        )
        try:
            rec = self._runs.create(rec)
        except AlreadyExists:
            self._count_down(sched, body["nominal_time"], consume=False)
            return Handled("duplicate", run_id)
        self._schedules.add_counters(sid, {"actions": 1})
        self._count_down(sched, body["nominal_time"], consume=True)
        handled = self._invoke(rec, definition.doc, sched.doc)
        return replace(handled, lateness_ms=(now - scheduled).total_seconds() * 1000)

    def _skip(self, sched: ScheduleRecord, nominal: datetime, reason: str, counter: str) -> Handled:
        self._count_down(sched, fmt(nominal) or "", consume=False)
        run = skipped_run(sched, nominal, reason, self._clock.now())
        try:
            self._runs.create(run)
        except AlreadyExists:
            return Handled("duplicate", run.run_id)
        self._schedules.add_counters(sched.schedule_id, {counter: 1})
        return Handled("skipped", run.run_id, RunStatus.skipped.value)

    def _blocking_runs(self, sched: ScheduleRecord, run_id: str) -> bool:
        return any(
            r.status in _BLOCKING and r.run_id != run_id
            for r in self._runs.recent(sched.schedule_id, limit=20)
        )

    def _count_down(self, sched: ScheduleRecord, nominal: str, *, consume: bool) -> None:
        """For a schedule with `remaining_actions`: forget the planned firing at `nominal` and,
        when it became an action (`consume`), take one of the remaining; at 0 it pauses."""
        if sched.doc["state"].get("remaining_actions") is None:
            return
        for _ in range(10):
            rec = self._schedules.get(sched.schedule_id)
            left = rec.doc["state"].get("remaining_actions")
            planned = list(rec.doc.get("planned", []))
            if left is None or rec.generation != sched.generation:
                return
            if nominal in planned:
                planned.remove(nominal)
            elif not consume:
                return
            state = dict(rec.doc["state"])
            if consume:
                left = max(0, int(left) - 1)
                state["remaining_actions"] = left
                if left == 0:
                    state.update(
                        paused=True, note="remaining actions exhausted", paused_at=fmt(self._clock.now())
                    )
            new = ScheduleRecord(
                schedule_id=rec.schedule_id,
                doc={**rec.doc, "state": state, "planned": planned},
                generation=rec.generation,
                definition=rec.definition,
                group=rec.group,
                next_fire_at=None if left == 0 else rec.next_fire_at,
                version=rec.version,
            )
            try:
                self._schedules.update(new, expected_version=rec.version)
                return
            except Conflict:
                continue

    def _wait_until(self, scheduled: datetime) -> None:
        early = (scheduled - self._clock.now()).total_seconds()
        if 0 < early <= MAX_EARLY_WAIT:
            self._sleep(early)

    # -- a run's next attempt -------------------------------------------------------------------

    def _start(self, run_id: str, attempt: int) -> Handled:
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return Handled("gone", run_id)
        if run.status != RunStatus.pending.value or int(run.doc.get("next_attempt", 1)) != attempt:
            return Handled("duplicate", run_id, run.status)
        try:
            definition = self._catalog.get("definition", run.definition)
        except NotFound:
            return self._close_now(
                run, "failed", {"code": "definition_missing", "message": "the definition was deleted"}
            )
        sched_doc = self._schedule_doc(run)
        now = self._clock.now()
        timeout = _timeout(definition.doc, sched_doc)
        doc = dict(run.doc)
        if attempt == 1 and not doc.get("definition_version"):
            doc["definition_version"] = definition.version
        _begin_attempt(doc, attempt, self._worker_id, now, timeout)
        claimed = _replace(run, doc, RunStatus.running.value, now + timedelta(seconds=timeout) + LEASE_GRACE)
        try:
            claimed = self._runs.update(claimed, expected_version=run.version)
        except Conflict:
            return Handled("duplicate", run_id)
        return self._invoke(claimed, definition.doc, sched_doc)

    def _schedule_doc(self, run: RunRecord) -> JSON | None:
        if run.schedule_id is None:
            return None
        try:
            sched = self._schedules.get(run.schedule_id)
        except NotFound:
            return None
        return sched.doc if sched.generation == run.doc.get("generation") else None

    # -- a lost lease ---------------------------------------------------------------------------

    def _expire(self, run_id: str) -> Handled:
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return Handled("gone", run_id)
        lease = run.doc.get("lease") or {}
        now = self._clock.now()
        if run.status != RunStatus.running.value or not lease or parse(lease["expires_at"]) > now:
            return Handled("duplicate", run_id, run.status)
        try:
            definition = self._catalog.get("definition", run.definition).doc
        except NotFound:
            definition = {"retry": {"max_attempts": 1}}
        outcome = Outcome(
            status="timed_out",
            error={
                "code": "lease_expired",
                "message": "the worker running this attempt stopped before it finished",
            },
        )
        return self._close(run, outcome, definition, self._schedule_doc(run))

    def finish(self, run: RunRecord, outcome: Outcome) -> Handled:
        """Close the current attempt of a running run with an outcome reported from outside
        (the asynchronous completion of an http target)."""
        try:
            definition = self._catalog.get("definition", run.definition).doc
        except NotFound:
            definition = {"retry": {"max_attempts": 1}}
        return self._close(run, outcome, definition, self._schedule_doc(run))

    # -- invoking and closing -------------------------------------------------------------------

    def _invoke(self, run: RunRecord, definition: JSON, sched_doc: JSON | None) -> Handled:
        doc = run.doc
        inv = Invocation(
            run_id=run.run_id,
            attempt=int(doc["attempt"]),
            definition=run.definition,
            schedule_id=run.schedule_id,
            nominal_time=parse(doc["nominal_time"]),
            scheduled_time=parse(doc["scheduled_time"]),
            previous_nominal_time=parse(doc["previous_nominal_time"])
            if doc.get("previous_nominal_time")
            else None,
            last_success_time=self._last_success(run),
            input=doc.get("input"),
            target=definition["target"],
            signing_secret=str(definition.get("signing_secret", "")),
            callback_token=str(doc["callback_token"]),
            timeout_seconds=float(_timeout(definition, sched_doc)),
        )
        try:
            outcome = self._invoker.invoke(inv)
        except Exception as exc:  # an invoker bug must still close the attempt
            outcome = Outcome(status="failed", error={"code": "internal_error", "message": repr(exc)})
        return self._close(run, outcome, definition, sched_doc)

    def _last_success(self, run: RunRecord) -> datetime | None:
        if run.schedule_id is None:
            return None
        for r in self._runs.recent(run.schedule_id, limit=20):
            if r.status == RunStatus.completed.value and r.run_id != run.run_id:
                return parse(r.doc["nominal_time"])
        return None

    def _close(self, run: RunRecord, outcome: Outcome, definition: JSON, sched_doc: JSON | None) -> Handled:
        """Record the attempt's outcome with a write conditioned on the version that holds the lease."""
        retry = _retry(definition, sched_doc)
        for _ in range(5):
            now = self._clock.now()
            doc = dict(run.doc)
            attempt = int(doc["attempt"])
            if run.status != RunStatus.running.value or int(doc.get("lease_attempt", attempt)) != attempt:
                return Handled("duplicate", run.run_id, run.status)
            status, active_at, delay = self._next_state(doc, outcome, retry, now)
            _end_attempt(doc, outcome, status, now)
            if status != RunStatus.running.value:
                doc.pop("lease", None)
            new = _replace(run, doc, status, active_at)
            if status in (RunStatus.completed.value, RunStatus.failed.value, RunStatus.timed_out.value):
                new = _closed(new, now, _retention_days(definition, self._retention))
            try:
                saved = self._runs.update(new, expected_version=run.version)
            except Conflict:
                run = self._runs.get(run.run_id)
                if run.status in (RunStatus.canceled.value, RunStatus.terminated.value):
                    return self._keep_late_finish(run, outcome)
                continue
            if status == RunStatus.pending.value and delay is not None and delay <= MAX_DELAY:
                self._queue.send([run_message(saved.run_id, attempt + 1, delay)])
                return Handled("retry_scheduled", saved.run_id, status)
            return Handled("ran", saved.run_id, status)
        raise Conflict(f"could not record the outcome of {run.run_id}", current=None)

    def _next_state(
        self, doc: JSON, outcome: Outcome, retry: JSON, now: datetime
    ) -> tuple[str, datetime | None, float | None]:
        attempt = int(doc["attempt"])
        if outcome.status == "completed":
            return RunStatus.completed.value, None, None
        if outcome.status == "accepted":
            lease = doc.get("lease") or {}
            expires = parse(lease["expires_at"]) if lease else now
            return RunStatus.running.value, expires, None
        code = str((outcome.error or {}).get("code", ""))
        final = not outcome.retryable or code in set(retry.get("non_retryable_errors", []))
        if not final and attempt < int(retry.get("max_attempts", 3)):
            delay = retry_delay(retry, attempt)
            if outcome.retry_after is not None:
                delay = min(
                    max(delay, outcome.retry_after), float(retry.get("maximum_interval_seconds", 300))
                )
            doc["next_attempt"] = attempt + 1
            doc["next_attempt_at"] = fmt(now + timedelta(seconds=delay))
            # The queued message starts it; the sweep only steps in if that message is lost.
            return RunStatus.pending.value, now + timedelta(seconds=delay) + RETRY_GRACE, delay
        return (
            (RunStatus.timed_out.value if outcome.status == "timed_out" else RunStatus.failed.value),
            None,
            None,
        )

    def _keep_late_finish(self, run: RunRecord, outcome: Outcome) -> Handled:
        """A canceled or terminated run keeps its status; the late outcome goes into history."""
        for _ in range(5):
            doc = dict(run.doc)
            doc["events"] = [
                *doc.get("events", []),
                {"time": fmt(self._clock.now()), "type": "late_finish", "details": _summary(outcome)},
            ]
            try:
                self._runs.update(_replace(run, doc, run.status, run.active_at), expected_version=run.version)
                break
            except Conflict:
                run = self._runs.get(run.run_id)
        return Handled("ran", run.run_id, run.status)

    def _close_now(self, run: RunRecord, status: str, error: JSON) -> Handled:
        now = self._clock.now()
        doc = {**run.doc, "error": error}
        new = _closed(_replace(run, doc, status, None), now, self._retention)
        try:
            self._runs.update(new, expected_version=run.version)
        except Conflict:
            return Handled("duplicate", run.run_id)
        return Handled("ran", run.run_id, status)


# -- run document helpers ---------------------------------------------------------------------


def _timeout(definition: JSON, sched_doc: JSON | None) -> int:
    override = (sched_doc or {}).get("policies", {}).get("timeout_seconds")
    return int(override or definition.get("timeout_seconds", 60))


def _retry(definition: JSON, sched_doc: JSON | None) -> JSON:
    override = (sched_doc or {}).get("policies", {}).get("retry")
    return dict(override or definition.get("retry") or {})


def _retention_days(definition: JSON, default: int) -> int:
    return int((definition.get("history") or {}).get("retention_days", default))


def _begin_attempt(doc: JSON, attempt: int, owner: str, now: datetime, timeout: int) -> None:
    if doc["status"] != RunStatus.running.value:
        check_transition(doc["status"], RunStatus.running.value)
    doc["status"] = RunStatus.running.value
    doc["attempt"] = attempt
    doc["lease_attempt"] = attempt
    doc.pop("next_attempt", None)
    doc.pop("next_attempt_at", None)
    doc["started_at"] = doc.get("started_at") or fmt(now)
    doc["callback_token"] = secrets.token_urlsafe(24)
    doc["lease"] = {"owner": owner, "expires_at": fmt(now + timedelta(seconds=timeout) + LEASE_GRACE)}
    doc["attempts"] = [
        *doc.get("attempts", []),
        {
            "attempt": attempt,
            "status": RunStatus.running.value,
            "started_at": fmt(now),
            "closed_at": None,
            "duration_ms": None,
            "result": None,
            "error": None,
        },
    ]
    doc["events"] = [
        *doc.get("events", []),
        {"time": fmt(now), "type": "attempt_started", "details": {"attempt": attempt}},
    ]


def _end_attempt(doc: JSON, outcome: Outcome, status: str, now: datetime) -> None:
    attempts = [dict(a) for a in doc.get("attempts", [])]
    current = attempts[-1] if attempts else {"attempt": doc["attempt"], "started_at": fmt(now)}
    result, result_cut = cap_json(outcome.result)
    error, error_cut = cap_json(outcome.error) if outcome.error is not None else (None, False)
    if outcome.status != "accepted":
        started = parse(current["started_at"])
        current.update(
            status=outcome.status if outcome.status in ("completed", "failed", "timed_out") else "failed",
            closed_at=fmt(now),
            duration_ms=int((now - started).total_seconds() * 1000),
            result=result,
            error=cap_json(outcome.error, HISTORY_ERROR_LIMIT)[0] if outcome.error is not None else None,
        )
    if attempts:
        attempts[-1] = current
    doc["attempts"] = attempts
    doc["result"], doc["result_truncated"] = result, result_cut
    doc["error"], doc["error_truncated"] = error, error_cut
    doc["events"] = [
        *doc.get("events", []),
        {
            "time": fmt(now),
            "type": f"attempt_{outcome.status}",
            "details": _summary(outcome) | {"attempt": doc["attempt"]},
        },
    ]
    if status != RunStatus.running.value:
        check_transition(RunStatus.running.value, status)


def _summary(outcome: Outcome) -> JSON:
    err = outcome.error or {}
    return {"status": outcome.status, "error_code": err.get("code")}


def _replace(run: RunRecord, doc: JSON, status: str, active_at: datetime | None) -> RunRecord:
    doc = {**doc, "status": status}
    return RunRecord(
        run_id=run.run_id,
        doc=doc,
        schedule_id=run.schedule_id,
        definition=run.definition,
        nominal_time=run.nominal_time,
        status=status,
        active_at=active_at,
        expires_at=run.expires_at,
        version=run.version,
    )


def _closed(run: RunRecord, now: datetime, retention_days: int) -> RunRecord:
    doc = dict(run.doc)
    doc["closed_at"] = fmt(now)
    if doc.get("started_at"):
        doc["duration_ms"] = int((now - parse(doc["started_at"])).total_seconds() * 1000)
    doc.pop("lease", None)
    return RunRecord(
        run_id=run.run_id,
        doc=doc,
        schedule_id=run.schedule_id,
        definition=run.definition,
        nominal_time=run.nominal_time,
        status=run.status,
        active_at=None,
        expires_at=now + timedelta(days=retention_days),
        version=run.version,
    )
