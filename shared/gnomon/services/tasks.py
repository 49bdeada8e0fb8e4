"""Use cases for leased tasks (CONTRACT.md §8): create, read, list, reserve, the lease life cycle,
revoke, topic info and the lease list.

Every change reads the task, applies a pure transition from `gnomon.domain.tasks` to its
effective state (what time has made of it) and writes it back conditionally on the
`record_version` it read; a lost race re-reads and decides again. Reserve takes candidates from
the topic's `ready` index (ready tasks, and snoozes whose `not_before` has come) and from lapsed
leases, oldest first, and leases the first one whose conditional write wins — so two workers
never get one task.

Tasks of a definition's `task` target are created by the worker for a run's attempt with
`run_id` set (`Tasks.create(..., run_id=...)`, one task per run attempt, `max_attempts` 1: the
run's retry policy makes the next attempt, with its backoff, as a new task). The run side is
told through a `RunLink` (the Executor): a completed or failed task closes the run's attempt,
heartbeat details become the run's details, and the run's signals are merged into the task's
inbox on every extend-lease (which is where a worker reads them).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from gnomon.domain.errors import AlreadyDone, Conflict, InvalidArgument
from gnomon.domain.tasks import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SKEW,
    DONE,
    Lease,
    Task,
    TaskStatus,
    check_owner,
    close_lapsed,
    effective,
    lease_lapsed,
    ms,
    new_task,
)
from gnomon.domain.tasks import add_signal as _add_signal
from gnomon.domain.tasks import complete as _complete
from gnomon.domain.tasks import extend as _extend
from gnomon.domain.tasks import fail as _fail
from gnomon.domain.tasks import release as _release
from gnomon.domain.tasks import reserve as _reserve
from gnomon.domain.tasks import snooze as _snooze
from gnomon.domain.tasks import withdraw as _withdraw
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import JSON, Clock
from gnomon.ports_tasks import TaskRecord, TaskStore
from gnomon.services.common import Caller
from gnomon.services.pagetoken import PageTokens

LIST_HIDDEN = frozenset({"data", "result", "error", "inbox", "details"})
# Stored statuses a task may have while it is effectively `status` (time moves snoozes and lapsed
# leases): a list asks the store for these, then keeps the tasks whose effective status matches.
_STORED_AS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.ready: frozenset({TaskStatus.ready, TaskStatus.snoozed, TaskStatus.leased}),
    TaskStatus.snoozed: frozenset({TaskStatus.snoozed}),
    TaskStatus.leased: frozenset({TaskStatus.leased}),
    TaskStatus.completed: frozenset({TaskStatus.completed}),
    TaskStatus.failed: frozenset({TaskStatus.failed, TaskStatus.leased}),
}
_RESERVE_CANDIDATES = 25  # index entries read per reserve round
_RESERVE_ROUNDS = 4
_CHANGE_ATTEMPTS = 8
_TOPIC_INFO_LAPSED = 1000  # lapsed leases topic info reads to tell ready from failed


class RunLink(Protocol):
    """The run side of tasks with `run_id` (`gnomon.services.execute.Executor`)."""

    def task_closed(self, task: JSON) -> Any:
        """The task completed or failed (idempotent)."""
        ...

    def task_details(self, task: JSON) -> None:
        """A heartbeat recorded the task's `details`."""
        ...

    def run_inbox(self, run_id: str) -> list[JSON]:
        """The run's signals, oldest first."""
        ...


def merge_inbox(inbox: list[Any], signals: list[Any]) -> list[Any]:
    """`inbox` with the `signals` it does not hold yet appended, in order (counted as a
    multiset: a signal sent twice is delivered twice; one already delivered is not again)."""
    held = list(inbox)
    missing: list[Any] = []
    for signal in signals:
        if signal in held:
            held.remove(signal)
        else:
            missing.append(signal)
    return [*inbox, *missing] if missing else inbox


# --- the task as stored and as answered ------------------------------------------------------------


def task_doc(task: Task) -> JSON:
    """The task resource (CONTRACT.md §8) without `record_version`: what the store keeps as `doc`."""
    lease = task.lease
    return {
        "task_id": task.task_id,
        "topic": task.topic,
        "sub_topic": task.sub_topic,
        "task_group_id": task.task_group_id,
        "data": task.data,
        "status": task.status.value,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "not_before": fmt(task.not_before),
        "lease": (
            {"owner": lease.owner, "expires_at": fmt(lease.expires_at), "token": lease.token}
            if lease is not None
            else None
        ),
        "inbox": task.inbox,
        "details": task.details,
        "result": task.result,
        "error": task.error,
        "run_id": task.run_id,
        "created_at": fmt(task.created_at),
        "updated_at": fmt(task.updated_at),
    }


def task_of(rec: TaskRecord) -> Task:
    """The domain task a stored record holds."""
    d = rec.doc
    raw_lease = d.get("lease")
    lease = (
        Lease(owner=raw_lease["owner"], expires_at=parse(raw_lease["expires_at"]), token=raw_lease["token"])
        if raw_lease
        else None
    )
    status = TaskStatus(rec.status)
    return Task(
        task_id=rec.task_id,
        topic=rec.topic,
        created_at=parse(d["created_at"]),
        updated_at=parse(d["updated_at"]),
        status=status,
        sub_topic=rec.sub_topic,
        task_group_id=rec.task_group_id,
        data=d.get("data"),
        attempts=int(d.get("attempts", 0)),
        max_attempts=int(d.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        not_before=parse(d["not_before"]) if d.get("not_before") else None,
        lease=lease,
        inbox=list(d.get("inbox") or []),
        details=d.get("details"),
        result=d.get("result"),
        error=d.get("error"),
        run_id=d.get("run_id"),
        ready_since=rec.ready_at if status in (TaskStatus.ready, TaskStatus.snoozed) else None,
        record_version=rec.record_version,
    )


def record_of(task: Task, stamp: JSON, expires_at: datetime | None = None) -> TaskRecord:
    """The record that stores `task`: its index positions follow from its status (ready and
    snoozed tasks in `ready` under `ready_since`; leased ones in `leased` under the lease expiry,
    snoozed ones under `not_before`)."""
    held_until: datetime | None = None
    if task.status is TaskStatus.leased and task.lease is not None:
        held_until = task.lease.expires_at
    elif task.status is TaskStatus.snoozed:
        held_until = task.not_before
    ready_at = task.ready_since if task.status in (TaskStatus.ready, TaskStatus.snoozed) else None
    return TaskRecord(
        task_id=task.task_id,
        topic=task.topic,
        doc={**task_doc(task), **stamp},
        status=task.status.value,
        created_at=task.created_at,
        sub_topic=task.sub_topic,
        task_group_id=task.task_group_id,
        ready_at=ready_at,
        held_until=held_until,
        expires_at=expires_at if task.status in DONE else None,
        record_version=task.record_version,
    )


def _stamp_of(rec: TaskRecord) -> JSON:
    return {k: rec.doc.get(k) for k in ("updated_by", "identity") if k in rec.doc}


def task_view(task: Task, stamp: JSON) -> JSON:
    """The task as the API answers it."""
    return {**task_doc(task), **stamp, "record_version": task.record_version}


def task_summary(task: Task, stamp: JSON) -> JSON:
    """A list item: the task without its data, result, error, inbox and details."""
    return {k: v for k, v in task_view(task, stamp).items() if k not in LIST_HIDDEN}


# --- the use cases -------------------------------------------------------------------------------


class Tasks:
    """Leased tasks over a `TaskStore`; `skew_seconds` is the clock-skew allowance after a
    lease's expiry before another worker may reserve the task."""

    def __init__(
        self,
        store: TaskStore,
        clock: Clock,
        tokens: PageTokens,
        *,
        skew_seconds: float = DEFAULT_SKEW.total_seconds(),
        retention_days: float = 30,
        retry_delay: Callable[[Task], float] | None = None,
        touch_every_seconds: float = 5.0,
        new_token: Callable[[], str] = lambda: secrets.token_urlsafe(18),
        new_id: Callable[[], str] = lambda: f"t-{uuid.uuid4().hex}",
        runs: RunLink | None = None,
    ) -> None:
        if skew_seconds < 0:
            raise ValueError("skew_seconds must be >= 0")
        self._store = store
        self._clock = clock
        self._tokens = tokens
        self.skew = timedelta(seconds=skew_seconds)
        self._retention = timedelta(days=retention_days)
        self._retry_delay = retry_delay
        self._touch_every = timedelta(seconds=touch_every_seconds)
        self._new_token = new_token
        self._new_id = new_id
        self._touched: dict[tuple[str, str], datetime] = {}
        self._runs = runs

    def attach_runs(self, runs: RunLink) -> None:
        """The run side that tasks with `run_id` report to."""
        self._runs = runs

    @property
    def store(self) -> TaskStore:
        return self._store

    def now(self) -> datetime:
        """The clock's now, to the millisecond (the precision every task instant is kept at)."""
        return ms(self._clock.now())

    # reads

    def get(self, task_id: str) -> JSON:
        """The task as it is now."""
        rec = self._store.get(task_id)
        return task_view(effective(task_of(rec), self.now(), self.skew), _stamp_of(rec))

    def list(
        self,
        *,
        topic: str | None = None,
        sub_topic: str | None = None,
        task_group_id: str | None = None,
        statuses: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        page_token: str | None = None,
        page_size: int = 100,
    ) -> JSON:
        """Task summaries, oldest `created_at` first within a topic or group (`start` inclusive,
        `end` exclusive); `statuses` are effective statuses."""
        wanted: set[TaskStatus] | None = None
        if statuses:
            wanted = set()
            for i, s in enumerate(statuses):
                if s not in TaskStatus.__members__:
                    raise InvalidArgument(
                        "query.status", f"unknown status {s!r}" + (f" (#{i + 1})" if i else "")
                    )
                wanted.add(TaskStatus(s))
        filters = {
            "topic": topic,
            "sub_topic": sub_topic,
            "task_group_id": task_group_id,
            "status": sorted(s.value for s in wanted) if wanted else None,
            "from": fmt(start),
            "to": fmt(end),
        }
        after = self._tokens.decode(page_token, "tasks", filters)
        stored = sorted({s.value for w in wanted for s in _STORED_AS[w]}) if wanted else None
        page = self._store.list(
            topic=topic,
            sub_topic=sub_topic,
            task_group_id=task_group_id,
            statuses=stored,
            start=start,
            end=end,
            after=after,
            limit=page_size,
        )
        now = self.now()
        items = []
        for rec in page.items:
            task = effective(task_of(rec), now, self.skew)
            if wanted is None or task.status in wanted:
                items.append(task_summary(task, _stamp_of(rec)))
        return {"items": items, "next_page_token": self._tokens.encode(page.last_key, "tasks", filters)}

    def leases(
        self, *, topic: str | None = None, page_token: str | None = None, page_size: int = 100
    ) -> JSON:
        """Summaries of the tasks leased or snoozed now (of one topic, or of all)."""
        filters = {"topic": topic}
        after = self._tokens.decode(page_token, "leases", filters)
        page = self._store.leased(topic, after=after, limit=page_size)
        now = self.now()
        items = []
        for rec in page.items:
            task = effective(task_of(rec), now, self.skew)
            if task.status in (TaskStatus.leased, TaskStatus.snoozed):
                items.append(task_summary(task, _stamp_of(rec)))
        return {"items": items, "next_page_token": self._tokens.encode(page.last_key, "leases", filters)}

    def topic_info(self, topic: str) -> JSON:
        """Counts of the topic's ready, leased and snoozed tasks now, and the workers seen on it
        (most recent first)."""
        now = self.now()
        lapse_before = now - self.skew
        ready, snoozed = self._store.count_ready(topic, now)
        leased = self._store.count_leased(topic, lapse_before)
        # A lapsed lease is ready again, or failed when it was the last attempt: look.
        lapsed = self._store.expired(topic, lapse_before, limit=_TOPIC_INFO_LAPSED)
        records = self._store.get_many(e.task_id for e in lapsed)
        ready += sum(
            1
            for rec in records.values()
            if effective(task_of(rec), now, self.skew).status is TaskStatus.ready
        )
        seen = sorted(self._store.workers(topic).items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        return {
            "topic": topic,
            "ready": ready,
            "leased": leased,
            "snoozed": snoozed,
            "workers": [{"worker_id": w, "last_seen": fmt(t)} for w, t in seen],
        }

    # changes

    def create(
        self,
        topic: str,
        *,
        data: Any = None,
        sub_topic: str | None = None,
        task_group_id: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        not_before: datetime | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        caller: Caller | None = None,
    ) -> tuple[int, JSON]:
        """Create a task → (201, task); the id taken → `AlreadyExists`. `run_id` marks a task of
        a definition's `task` target (its failures wait out the retry backoff)."""
        now = self.now()
        task = new_task(
            task_id=task_id or self._new_id(),
            topic=topic,
            now=now,
            data=data,
            sub_topic=sub_topic,
            task_group_id=task_group_id,
            max_attempts=max_attempts,
            not_before=ms(not_before) if not_before is not None else None,
            run_id=run_id,
        )
        rec = self._store.create(record_of(task, _stamp(caller, None)))
        return 201, task_view(task_of(rec), _stamp_of(rec))

    def reserve(
        self, topic: str, worker_id: str, lease_seconds: float, caller: Caller | None = None
    ) -> JSON | None:
        """Lease the topic's task that became ready first (then by task_id) to `worker_id` with a
        fresh lease token; None when no task is ready."""
        self._touch(topic, worker_id)
        for _ in range(_RESERVE_ROUNDS):
            now = self.now()
            lapse_before = now - self.skew
            ready = self._store.ready(topic, now, limit=_RESERVE_CANDIDATES)
            lapsed = self._store.expired(topic, lapse_before, limit=_RESERVE_CANDIDATES)
            # A lapsed lease became ready when it lapsed: expires_at + skew.
            order = sorted(
                {(e.at, e.task_id) for e in ready} | {(e.at + self.skew, e.task_id) for e in lapsed}
            )
            ids = list(dict.fromkeys(tid for _, tid in order))
            if not ids:
                return None
            records = self._store.get_many(ids)
            for tid in ids:
                rec = records.get(tid)
                if rec is None:
                    continue
                stored = task_of(rec)
                task = effective(stored, now, self.skew)
                if task.status is TaskStatus.failed and lease_lapsed(stored, now, self.skew):
                    self._write_lapsed(stored, rec, now)  # its last lease lapsed: close it
                    continue
                if task.status is not TaskStatus.ready:
                    continue  # taken or changed since the index was read
                new = _reserve(task, worker_id, self._new_token(), now, lease_seconds)
                try:
                    saved = self._store.update(
                        record_of(new, _stamp(caller, rec)), expected_version=rec.record_version
                    )
                except Conflict:
                    continue  # another worker won it: try the next one
                return task_view(task_of(saved), _stamp_of(saved))
            if len(ready) < _RESERVE_CANDIDATES and len(lapsed) < _RESERVE_CANDIDATES:
                return None  # every candidate there was is gone
        return None

    def extend_lease(
        self,
        task_id: str,
        worker_id: str,
        lease_seconds: float,
        *,
        details: Any = None,
        set_details: bool = False,
        lease_token: str | None = None,
        caller: Caller | None = None,
    ) -> JSON:
        """Heartbeat: the lease's expiry moves to now + `lease_seconds`; `details` are recorded
        when `set_details`. Answers the task, with its inbox of signals (for a task of a `task`
        target, the run's signals too: they are merged into the inbox by the same write)."""

        def change(t: Task, now: datetime) -> Task:
            new = _extend(t, now, lease_seconds, details=details, set_details=set_details)
            if t.run_id is not None and self._runs is not None:
                inbox = merge_inbox(new.inbox, self._runs.run_inbox(t.run_id))
                if inbox is not new.inbox:
                    new = dataclasses.replace(new, inbox=inbox)
            return new

        view = self._owned(task_id, worker_id, lease_token, caller, change)
        if set_details and view.get("run_id") and self._runs is not None:
            self._runs.task_details(view)
        return view

    def complete(
        self,
        task_id: str,
        worker_id: str,
        result: Any = None,
        *,
        lease_token: str | None = None,
        caller: Caller | None = None,
    ) -> JSON:
        """The owner completes the task with `result` (a task of a `task` target closes its
        run's attempt)."""
        return self._closing(
            task_id,
            lambda: self._owned(
                task_id, worker_id, lease_token, caller, lambda t, now: _complete(t, now, result)
            ),
        )

    def fail(
        self,
        task_id: str,
        worker_id: str,
        error: Any = None,
        *,
        lease_token: str | None = None,
        caller: Caller | None = None,
    ) -> JSON:
        """The owner fails the attempt: `ready` again while attempts remain (a `task` target's
        task is `snoozed` for its retry backoff first), else `failed`."""

        def change(t: Task, now: datetime) -> Task:
            delay = self._retry_delay(t) if self._retry_delay is not None and t.run_id is not None else 0.0
            return _fail(t, now, error, retry_delay_seconds=delay)

        return self._closing(task_id, lambda: self._owned(task_id, worker_id, lease_token, caller, change))

    def snooze(
        self,
        task_id: str,
        worker_id: str,
        delay_seconds: float,
        *,
        lease_token: str | None = None,
        caller: Caller | None = None,
    ) -> JSON:
        """The owner gives the task back until now + `delay_seconds`; no attempt is counted."""
        return self._owned(
            task_id, worker_id, lease_token, caller, lambda t, now: _snooze(t, now, delay_seconds)
        )

    def release(
        self, task_id: str, worker_id: str, *, lease_token: str | None = None, caller: Caller | None = None
    ) -> JSON:
        """The owner gives the task back at once; no attempt is counted."""
        return self._owned(task_id, worker_id, lease_token, caller, lambda t, now: _release(t, now))

    def revoke_lease(self, task_id: str, record_version: int, caller: Caller | None = None) -> JSON:
        """Free a lease whatever its owner (no attempt counted), if the task is still at
        `record_version` and leased; else `Conflict` carrying the task as it is."""
        rec = self._store.get(task_id)
        now = self.now()
        task = effective(task_of(rec), now, self.skew)
        stamp = _stamp_of(rec)
        if rec.record_version != record_version:
            raise Conflict(
                f"task/{task_id} is at record_version {rec.record_version}, not {record_version}",
                current=task_view(task, stamp),
            )
        if task.status is not TaskStatus.leased:
            raise Conflict(
                f"task/{task_id} is not leased (it is {task.status.value})", current=task_view(task, stamp)
            )
        new = _release(task, now)
        try:
            saved = self._store.update(record_of(new, _stamp(caller, rec)), expected_version=record_version)
        except Conflict:
            current = self._store.get(task_id)
            raise Conflict(
                f"task/{task_id} changed meanwhile",
                current=task_view(effective(task_of(current), self.now(), self.skew), _stamp_of(current)),
            ) from None
        return task_view(task_of(saved), _stamp_of(saved))

    def withdraw(self, task_id: str, reason: str) -> JSON:
        """Withdraw a task whose run attempt ended otherwise (cancel, terminate, timeout):
        `failed` (`withdrawn`) at once, so no worker reserves it and its holder is refused from
        its next call on. A task already closed is answered as it is."""
        for _ in range(_CHANGE_ATTEMPTS):
            rec = self._store.get(task_id)
            now = self.now()
            task = effective(task_of(rec), now, self.skew)
            if task.status in DONE:
                return task_view(task, _stamp_of(rec))
            new = _withdraw(task, now, reason)
            try:
                saved = self._store.update(
                    record_of(new, _stamp_of(rec), now + self._retention), expected_version=rec.record_version
                )
            except Conflict:
                continue
            view = task_view(task_of(saved), _stamp_of(saved))
            self._report_closed(view)
            return view
        raise Conflict(f"task/{task_id} kept changing; try again", current=None)

    def signal(self, task_id: str, signal: Any) -> JSON:
        """Append a signal to the task's inbox (the worker gets it with its next extend-lease).
        The hook for `POST /v1/runs/{id}/signal` on a run of a `task` target."""
        for _ in range(_CHANGE_ATTEMPTS):
            rec = self._store.get(task_id)
            now = self.now()
            new = _add_signal(task_of(rec), now, signal)
            try:
                saved = self._store.update(
                    record_of(new, _stamp_of(rec)), expected_version=rec.record_version
                )
            except Conflict:
                continue
            return task_view(task_of(saved), _stamp_of(saved))
        raise Conflict(f"task/{task_id} kept changing; try again", current=None)

    # internals

    def _closing(self, task_id: str, action: Callable[[], JSON]) -> JSON:
        """Run an owner's change that may close the task, then tell the run side when it did.
        A repeated call on a closed task (409 already_done) tells it again first — so a run
        whose report was lost (the process died between the two writes) still closes."""
        try:
            view = action()
        except AlreadyDone:
            self._report_closed(self.get(task_id))
            raise
        self._report_closed(view)
        return view

    def _report_closed(self, view: JSON) -> None:
        closed = view.get("status") in (TaskStatus.completed.value, TaskStatus.failed.value)
        if closed and view.get("run_id") and self._runs is not None:
            self._runs.task_closed(view)

    def _owned(
        self,
        task_id: str,
        worker_id: str,
        lease_token: str | None,
        caller: Caller | None,
        change: Callable[[Task, datetime], Task],
    ) -> JSON:
        """An owner's change: check the owner (CONTRACT.md §8's order), apply, write on the
        record_version read; a lost race re-reads and checks again."""
        for _ in range(_CHANGE_ATTEMPTS):
            rec = self._store.get(task_id)
            now = self.now()
            task = check_owner(task_of(rec), worker_id, lease_token, now, skew=self.skew, task_id=task_id)
            new = change(task, now)
            try:
                saved = self._store.update(
                    record_of(new, _stamp(caller, rec), now + self._retention),
                    expected_version=rec.record_version,
                )
            except Conflict:
                continue
            return task_view(task_of(saved), _stamp_of(saved))
        raise Conflict(f"task/{task_id} kept changing; try again", current=None)

    def _write_lapsed(self, stored: Task, rec: TaskRecord, now: datetime) -> None:
        """Write down a lapsed last lease (`failed`, `lease_expired`), so reserve stops finding it.
        A lost race means someone else wrote it first."""
        closed = close_lapsed(stored, now, self.skew)
        try:
            saved = self._store.update(
                record_of(closed, _stamp_of(rec), now + self._retention), expected_version=rec.record_version
            )
        except Conflict:
            return
        self._report_closed(task_view(task_of(saved), _stamp_of(saved)))

    def _touch(self, topic: str, worker_id: str) -> None:
        """Record the worker as seen on the topic, at most once per `touch_every_seconds` per
        process (a worker polling an empty topic must not cost a write per poll)."""
        now = self.now()
        key = (topic, worker_id)
        last = self._touched.get(key)
        if last is not None and now - last < self._touch_every:
            return
        self._store.touch_worker(topic, worker_id, now)
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[key] = now


def _stamp(caller: Caller | None, rec: TaskRecord | None) -> JSON:
    """Who made the change (`updated_by`, `identity`); without a caller, the stored stamp stays."""
    if caller is not None:
        return caller.stamp()
    return _stamp_of(rec) if rec is not None else {}


# --- wiring (moves into gnomon.wiring once the task routes are wired) --------------------------------


@functools.cache
def tasks_service() -> Tasks:
    """The process-wide task use cases, from the environment: the in-memory store when
    `GNOMON_STORE=memory`, else DynamoDB (`GNOMON_TASKS_TABLE`); the clock and page-token key of
    `gnomon.wiring.services()`; `GNOMON_LEASE_SKEW_SECONDS` (default 0.5) and
    `GNOMON_TASK_RETENTION_DAYS` (default `GNOMON_RUN_RETENTION_DAYS`, else 30)."""
    from gnomon.wiring import services

    s = services()
    store: TaskStore
    if os.environ.get("GNOMON_STORE") == "memory":
        from gnomon.adapters.memory_tasks import MemoryTaskStore

        store = MemoryTaskStore()
    else:
        from gnomon.adapters.dynamo_tasks import DynamoTaskStore

        store = DynamoTaskStore()
    retention = (
        os.environ.get("GNOMON_TASK_RETENTION_DAYS") or os.environ.get("GNOMON_RUN_RETENTION_DAYS") or "30"
    )
    tasks = Tasks(
        store,
        s.clock,
        s.tokens,
        skew_seconds=float(os.environ.get("GNOMON_LEASE_SKEW_SECONDS") or DEFAULT_SKEW.total_seconds()),
        retention_days=float(retention),
        runs=s.executor,
    )
    s.executor.attach_tasks(tasks)  # the worker's `task` targets create their tasks here
    return tasks


__all__ = ["Tasks", "record_of", "task_doc", "task_of", "task_summary", "task_view", "tasks_service"]
