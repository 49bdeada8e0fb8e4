"""Use cases for runs over the API: execute now, read, list, history, retry, async completion,
and run control: cancel, terminate, signal, query, purge, the retention sweep.

The control functions are module-level too (`cancel_run`, `terminate_run`, `signal_run`, ...), so
the worker's overlap policies can use them without the API's use-case object. Every change is a
version-conditioned update retried on `Conflict`; statuses move only through `check_transition`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gnomon.domain.errors import AlreadyClosed, AlreadyExists, Conflict, InvalidArgument, NotFound
from gnomon.domain.runs import (
    TERMINAL,
    RunStatus,
    cap_json,
    check_transition,
    parse_scheduled_run_id,
)
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import JSON, CatalogStore, Clock, FiringQueue, Outcome, RunRecord, RunStore, ScheduleStore
from gnomon.services.common import Caller
from gnomon.services.pagetoken import PageTokens
from gnomon.services.schedules import check_input
from gnomon.services.tick import new_run_doc, run_message

if TYPE_CHECKING:  # a type only: the worker (execute) imports the control functions from here
    from gnomon.services.execute import Executor

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


def _in_flight(
    schedules: ScheduleStore | None,
    schedule: str | None,
    definition: str | None,
    statuses: list[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> list[RunRecord]:
    """A schedule's firings in flight that its ledger claimed alone and that are written
    only when their attempt ends (`Executor._fire_deferred`): listed as running on its runs'
    first page, which asks the store for as many fewer (a page token stays exact)."""
    from gnomon.services.execute import deferred_run  # it imports this module: bind late

    if schedule is None or schedules is None or (statuses and "running" not in statuses):
        return []
    try:
        sched = schedules.get(schedule)
    except NotFound:
        return []
    if definition is not None and sched.definition != definition:
        return []
    out = []
    for entry in (sched.doc.get("flight") or {}).get("running", []):
        if entry.get("d") is None:
            continue
        rec = deferred_run(sched, entry)
        if (start is None or rec.nominal_time >= start) and (end is None or rec.nominal_time < end):
            out.append(rec)
    return out


class RecordingRunStore:
    """A run store whose `get` also finds a scheduled run that so far lives only in its
    schedule's overlap ledger — a firing claimed by the ledger's write alone, written once
    when its attempt ends (`Executor.materialize`): asked for earlier (by the API: read,
    cancel, signal, a 202 target's callback), it is recorded then, as running, and the attempt's
    end updates that record. Everything else is the wrapped store's."""

    def __init__(self, inner: RunStore, materialize: Callable[[str], RunRecord | None]) -> None:
        self._inner = inner
        self._materialize = materialize

    @property
    def wrapped(self) -> RunStore:
        return self._inner

    def get(self, run_id: str) -> RunRecord:
        try:
            return self._inner.get(run_id)
        except NotFound:
            rec = self._materialize(run_id)
            if rec is None:
                raise
            return rec

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run_view(rec: RunRecord) -> JSON:
    """A run as the API answers it (history lives at /history)."""
    view = {k: v for k, v in rec.doc.items() if k not in HIDDEN}
    view["status"] = rec.status
    return view


def run_summary(rec: RunRecord) -> JSON:
    return {k: v for k, v in run_view(rec).items() if k not in LIST_HIDDEN}


# --- run control: module-level, for the API and the worker's overlap policies -------------------

MAX_TRIES = 10
DEFAULT_RETENTION_DAYS = 30  # as the worker's (services.execute); the definition's history wins
INBOX_LIMIT = 100
"""Signals a run's inbox keeps; beyond, the oldest are dropped (counted in `inbox_dropped`)."""
INBOX_BYTES = 64 * 1024
"""Bytes (compact JSON) the inbox may hold; beyond, the oldest signals are dropped likewise."""
LATE_RESULT_LIMIT = 2048
STOPPED = frozenset({RunStatus.canceled.value, RunStatus.terminated.value})
_FINAL_OUTCOMES = frozenset({"completed", "failed", "timed_out"})


@runtime_checkable
class RunDeleter(Protocol):
    """The run store's `delete` (purge, the retention sweep)."""

    def delete(self, run_id: str, *, expected_version: int) -> None:
        """Delete a run at `expected_version`. `NotFound`; `Conflict(current=doc)`."""
        ...


def attempt_open(rec: RunRecord, now: datetime | None = None) -> bool:
    """Whether the run's last attempt is still out. A run counts as running until then, even
    when already marked canceled (CONTRACT.md §5): a canceled running run keeps its `lease`
    until the attempt's late finish closes it. With `now`, a lease that ran out (its worker is
    gone) no longer counts."""
    if rec.status == RunStatus.running.value:
        return True
    lease = rec.doc.get("lease")
    if rec.status not in STOPPED or not lease:
        return False
    return now is None or parse(lease["expires_at"]) > now


def cancel_run(
    runs: RunStore,
    run_id: str,
    reason: str | None,
    now: datetime,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    by: Caller | None = None,
) -> RunRecord:
    """Cancel a run: a pending one never starts (the worker drops its message); a running one is
    `canceled` at once while its attempt runs on — its late finish goes into history, its lease
    and `active_at` stay so a lost attempt is still swept, `cancel_requested_at` says when.
    `reason` becomes `error.message`. `NotFound`; a closed run → `AlreadyClosed`."""
    return _stop(runs, run_id, RunStatus.canceled, reason, now, retention_days, by)


def terminate_run(
    runs: RunStore,
    run_id: str,
    reason: str | None,
    now: datetime,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    by: Caller | None = None,
) -> RunRecord:
    """Terminate a run at once: a running attempt is closed as `terminated` now (its late finish
    still goes into history). `NotFound`; a closed run → `AlreadyClosed`."""
    return _stop(runs, run_id, RunStatus.terminated, reason, now, retention_days, by)


def stopped(
    rec: RunRecord,
    status: RunStatus,
    reason: str | None,
    now: datetime,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    by: Caller | None = None,
) -> RunRecord:
    """`rec` canceled or terminated at `now` (pure; raises as `check_transition` does)."""
    check_transition(rec.status, status.value)
    doc = dict(rec.doc)
    error: JSON = {"code": status.value, "message": reason or f"{status.value} by request", "details": {}}
    doc.update(error=error, error_truncated=False, closed_at=fmt(now), status=status.value)
    if doc.get("started_at"):
        doc["duration_ms"] = int((now - parse(doc["started_at"])).total_seconds() * 1000)
    doc.pop("next_attempt", None)
    doc.pop("next_attempt_at", None)
    running = rec.status == RunStatus.running.value
    active_at: datetime | None = None
    if running and status == RunStatus.canceled:
        event = "cancel_requested"
        doc["cancel_requested_at"] = fmt(now)
        active_at = rec.active_at  # the lease's expiry: the sweep still finds a lost attempt
    else:
        event = status.value
        if running:
            doc = close_open_attempt(doc, status.value, now, error=error)
        doc.pop("lease", None)
    details: JSON = {"reason": reason, "from": rec.status}
    if by is not None:
        details.update(by.stamp())
    doc["events"] = [*doc.get("events", []), {"time": fmt(now), "type": event, "details": details}]
    return _with(rec, doc, status.value, active_at, now + timedelta(days=retention_days))


def close_open_attempt(
    doc: JSON, status: str, now: datetime, *, result: Any = None, error: Any = None
) -> JSON:
    """`doc` with its last attempt, if still `running`, closed as `status` at `now`."""
    attempts = [dict(a) for a in doc.get("attempts", [])]
    if not attempts or attempts[-1].get("status") != RunStatus.running.value:
        return doc
    last = attempts[-1]
    started = parse(last["started_at"]) if last.get("started_at") else now
    last.update(
        status=status,
        closed_at=fmt(now),
        duration_ms=int((now - started).total_seconds() * 1000),
        result=cap_json(result)[0],
        error=cap_json(error, LATE_RESULT_LIMIT)[0] if error is not None else None,
    )
    return {**doc, "attempts": attempts}


def record_late_finish(
    doc: JSON, status: str, now: datetime, *, result: Any = None, error: JSON | None = None
) -> JSON:
    """`doc` of a canceled or terminated run after its attempt ended anyway with `status`
    (an `Outcome.status`): the outcome goes into history — the attempt, if still open, and a
    `late_finish` event — and the run's status stays. A final outcome drops the lease, so the
    run no longer counts as running."""
    details: JSON = {
        "attempt": doc.get("attempt"),
        "status": status,
        "error_code": (error or {}).get("code"),
        "result": cap_json(result, LATE_RESULT_LIMIT)[0],
    }
    if status in _FINAL_OUTCOMES:
        doc = close_open_attempt(doc, status, now, result=result, error=error)
        doc = {k: v for k, v in doc.items() if k != "lease"}
    event = {"time": fmt(now), "type": "late_finish", "details": details}
    return {**doc, "events": [*doc.get("events", []), event]}


def late_finish_recorded(doc: JSON) -> bool:
    """Whether a final outcome of the run's current attempt is already in its history."""
    attempt = doc.get("attempt")
    return any(
        e.get("type") == "late_finish"
        and e.get("details", {}).get("attempt") == attempt
        and e.get("details", {}).get("status") in _FINAL_OUTCOMES
        for e in doc.get("events", [])
    )


def signal_run(runs: RunStore, run_id: str, name: str, payload: Any, now: datetime) -> RunRecord:
    """Append `{"name", "payload", "time"}` to the run's inbox (handed to a task worker on its
    next heartbeat). The inbox keeps the newest `INBOX_LIMIT` signals within `INBOX_BYTES`;
    older ones are dropped and counted in `inbox_dropped`. A closed run → `AlreadyClosed`."""
    for _ in range(MAX_TRIES):
        rec = runs.get(run_id)
        _refuse_closed(rec)
        inbox = [*(rec.doc.get("inbox") or []), {"name": name, "payload": payload, "time": fmt(now)}]
        kept = _bounded(inbox)
        doc = {**rec.doc, "inbox": kept}
        if len(kept) < len(inbox):
            doc["inbox_dropped"] = int(rec.doc.get("inbox_dropped") or 0) + len(inbox) - len(kept)
        doc["events"] = [
            *doc.get("events", []),
            {"time": fmt(now), "type": "signal_received", "details": {"name": name}},
        ]
        try:
            return runs.update(
                _with(rec, doc, rec.status, rec.active_at, rec.expires_at), expected_version=rec.version
            )
        except Conflict:
            continue
    raise Conflict("the run kept changing; try again", current=None)


def query_run(runs: RunStore, run_id: str) -> JSON:
    """`{"details"}`: the run's latest heartbeat details (null without heartbeats)."""
    return {"details": runs.get(run_id).doc.get("details")}


def deletable(rec: RunRecord) -> bool:
    """Closed, and no attempt still out (deleting it would lose that attempt's finish)."""
    return RunStatus(rec.status) in TERMINAL and not attempt_open(rec)


def purge_runs(
    runs: RunStore, definition: str, *, after: str | None, limit: int
) -> tuple[int, int, str | None]:
    """Delete the closed runs of `definition` among its next `limit` runs after the list key
    `after`; (deleted, kept — open or changed meanwhile —, the key to continue after or None)."""
    deleter = _deleter(runs)
    page = runs.list(definition=definition, after=after, limit=limit)
    deleted = sum(_delete(deleter, r) for r in page.items if deletable(r))
    return deleted, len(page.items) - deleted, page.last_key


EXPIRY_FLOOR = timedelta(days=1)
"""The shortest retention (`history.retention_days` ≥ 1): a run whose nominal time is within it
of now cannot have expired (nominal time ≤ closed_at), so the sweep does not look at it."""


def sweep_expired(
    runs: RunStore, now: datetime, *, limit: int = 100, after: str | None = None
) -> tuple[int, str | None]:
    """Delete closed runs whose retention (`expires_at`, the TTL attribute) has passed, among
    the next `limit` runs older than a day, newest first after the list key `after`. Answers
    (deleted, the key to pass next time; None = the end was reached, start over). DynamoDB's
    TTL does this in AWS; moto never expires items, so the local stack sweeps."""
    deleter = _deleter(runs)
    page = runs.list(end=now - EXPIRY_FLOOR, after=after, limit=limit)
    expired = [r for r in page.items if r.expires_at is not None and r.expires_at <= now and deletable(r)]
    return sum(_delete(deleter, r) for r in expired), page.last_key


def _stop(
    runs: RunStore,
    run_id: str,
    status: RunStatus,
    reason: str | None,
    now: datetime,
    retention_days: int,
    by: Caller | None,
) -> RunRecord:
    for _ in range(MAX_TRIES):
        rec = runs.get(run_id)
        new = stopped(rec, status, reason, now, retention_days=retention_days, by=by)
        try:
            return runs.update(new, expected_version=rec.version)
        except Conflict:
            continue  # the worker moved it (claimed, closed): look again
    raise Conflict("the run kept changing; try again", current=None)


def _refuse_closed(rec: RunRecord) -> None:
    if RunStatus(rec.status) in TERMINAL:
        raise AlreadyClosed(f"the run is already {rec.status}", {"status": rec.status})


def _bounded(inbox: list[JSON]) -> list[JSON]:
    sizes = [len(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()) for e in inbox]
    start, total = 0, sum(sizes)
    while start < len(inbox) - 1 and (len(inbox) - start > INBOX_LIMIT or total > INBOX_BYTES):
        total -= sizes[start]
        start += 1
    return inbox[start:]


def _deleter(runs: RunStore) -> RunDeleter:
    if not isinstance(runs, RunDeleter):
        raise RuntimeError("this run store cannot delete runs (RunStore.delete is not wired)")
    return runs


def _delete(deleter: RunDeleter, rec: RunRecord) -> bool:
    try:
        deleter.delete(rec.run_id, expected_version=rec.version)
    except (Conflict, NotFound):
        return False  # changed or gone meanwhile: left for the next pass
    return True


def _with(
    rec: RunRecord, doc: JSON, status: str, active_at: datetime | None, expires_at: datetime | None
) -> RunRecord:
    return RunRecord(
        run_id=rec.run_id,
        doc={**doc, "status": status},
        schedule_id=rec.schedule_id,
        definition=rec.definition,
        nominal_time=rec.nominal_time,
        status=status,
        active_at=active_at,
        expires_at=expires_at,
        version=rec.version,
    )


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
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._retention = retention_days
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
        in_flight = (
            _in_flight(self._schedules, schedule, definition, statuses, start, end) if after is None else []
        )
        page = self._runs.list(
            schedule_id=schedule,
            definition=definition,
            statuses=statuses or None,
            start=start,
            end=end,
            after=after,
            limit=max(1, page_size - len(in_flight)),
        )
        items = list(page.items)
        listed = {r.run_id for r in items}
        for rec in in_flight:
            if rec.run_id in listed:
                continue
            try:
                # recorded since (closed: not running, or filtered out); a read, not a recording
                getattr(self._runs, "wrapped", self._runs).get(rec.run_id)
                continue
            except NotFound:
                items.append(rec)
        items.sort(key=lambda r: (r.nominal_time, r.run_id), reverse=True)
        return {
            "items": [run_summary(r) for r in items],
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
        # `skip` decides here, so the answer says `skipped`; every other policy (buffering,
        # cancel/terminate_other, max_concurrency) is the worker's overlap ledger's to apply.
        skipped = policy == "skip" and busy
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
            if rec.doc.get("trigger") == "event":
                # Its key's stream decides what runs next, in order: a retry beside it would run
                # the event twice, or out of order.
                raise Conflict(
                    "an event run is run again by restarting its key: "
                    f"POST /v1/operators/{rec.definition}/restart",
                    current=run_view(rec),
                )
            if attempt_open(rec):
                raise Conflict(
                    "the canceled run's attempt is still running; retry once it closes", current=run_view(rec)
                )
            check_transition(rec.status, RunStatus.pending.value)
            now = self._clock.now()
            attempt = int(rec.doc.get("attempt", 0)) + 1
            doc = {
                **{k: v for k, v in rec.doc.items() if k not in ("lease", "cancel_requested_at")},
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
        """Finish an attempt whose http target answered 202. For a run canceled or terminated
        meanwhile, the attempt's outcome is recorded in history (the status stays) and the run
        answered; once only."""
        rec = self._runs.get(run_id)
        if (
            rec.status in STOPPED
            and rec.doc.get("callback_token") == token
            and not late_finish_recorded(rec.doc)
        ):
            return run_view(self._late_callback(rec, outcome))
        if RunStatus(rec.status) in TERMINAL:
            raise AlreadyClosed(f"the run is already {rec.status}", {"status": rec.status})
        if rec.status != RunStatus.running.value or rec.doc.get("callback_token") != token:
            raise Conflict("callback_token does not match the run's current attempt", current=run_view(rec))
        self._executor.finish(rec, outcome)
        return run_view(self._runs.get(run_id))

    def _late_callback(self, rec: RunRecord, outcome: Outcome) -> RunRecord:
        for _ in range(MAX_TRIES):
            doc = record_late_finish(
                rec.doc, outcome.status, self._clock.now(), result=outcome.result, error=outcome.error
            )
            active_at = rec.active_at if doc.get("lease") else None
            try:
                return self._runs.update(
                    _with(rec, doc, rec.status, active_at, rec.expires_at), expected_version=rec.version
                )
            except Conflict:
                rec = self._runs.get(rec.run_id)
                if rec.status not in STOPPED or late_finish_recorded(rec.doc):
                    raise AlreadyClosed(f"the run is already {rec.status}", {"status": rec.status}) from None
        raise Conflict("the run kept changing; try again", current=None)

    # -- run control ----------------------------------------------------------------------------

    def cancel(self, run_id: str, reason: str | None, caller: Caller | None = None) -> JSON:
        """`POST /v1/runs/{id}/cancel`."""
        retention = self._retention_of(self._runs.get(run_id).definition)
        rec = cancel_run(self._runs, run_id, reason, self._clock.now(), retention_days=retention, by=caller)
        self._stopped(rec)
        return run_view(rec)

    def terminate(self, run_id: str, reason: str | None, caller: Caller | None = None) -> JSON:
        """`POST /v1/runs/{id}/terminate`."""
        retention = self._retention_of(self._runs.get(run_id).definition)
        rec = terminate_run(
            self._runs, run_id, reason, self._clock.now(), retention_days=retention, by=caller
        )
        self._stopped(rec)
        return run_view(rec)

    def _stopped(self, rec: RunRecord) -> None:
        """After a cancel or terminate: the worker's bookkeeping of a run that may have closed
        (overlap ledger, event stream) and, for a `task` target, its task withdrawn."""
        self._executor.withdraw_task(rec)
        self._executor.run_closed(rec.run_id)

    def signal(self, run_id: str, name: str, payload: Any) -> JSON:
        """`POST /v1/runs/{id}/signal`: answers the run with its inbox. For a running `task`
        target, the signal is put into its task's inbox at once too."""
        rec = signal_run(self._runs, run_id, name, payload, self._clock.now())
        inbox = rec.doc.get("inbox") or []
        if inbox:
            self._executor.signal_task(rec, inbox[-1])
        return run_view(rec)

    def query(self, run_id: str, name: str, args: Any) -> JSON:
        """`POST /v1/runs/{id}/query`: the latest heartbeat details, whatever the query's name."""
        return query_run(self._runs, run_id)

    def purge(self, definition: str, page_token: str | None, page_size: int) -> JSON:
        """`DELETE /v1/definitions/{name}/runs`: one bounded step; continue with the token."""
        filters = {"definition": definition}
        after = self._tokens.decode(page_token, "purge", filters)
        deleted, kept, last_key = purge_runs(self._runs, definition, after=after, limit=page_size)
        return {
            "deleted": deleted,
            "kept": kept,
            "next_page_token": self._tokens.encode(last_key, "purge", filters),
        }

    def _retention_of(self, definition: str) -> int:
        try:
            doc = self._catalog.get("definition", definition).doc
        except NotFound:
            return self._retention
        return int((doc.get("history") or {}).get("retention_days", self._retention))
