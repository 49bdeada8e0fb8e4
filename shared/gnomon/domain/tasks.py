"""Leased tasks: statuses, the transitions between them, and the lease rules (CONTRACT.md §8).

Pure: every function takes `now` and returns values; nothing here reads the clock or a store.

Time moves a task without anyone writing it: a `snoozed` task is `ready` from `not_before` on,
and a lease that lapsed (now ≥ `expires_at` + the clock-skew allowance) has ended — an attempt is
counted, and the task is `ready` again or, with its attempts exhausted, `failed` with
`lease_expired`. `effective(task, now)` is the task as it is at `now`; stores keep what was last
written, and every read and every change starts from the effective task.

Instants are kept at millisecond precision (what the contract writes and the indexes sort by):
callers pass `now` truncated with `ms()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gnomon.domain.errors import AlreadyDone, Conflict, LeaseExpired, NotFound, WrongOwner
from gnomon.domain.timefmt import fmt

DEFAULT_SKEW = timedelta(seconds=0.5)
"""How long after a lease's `expires_at` another worker may reserve the task: the owner's clock
may run behind ours, so it must not find its lease gone while it still believes it live."""

MAX_LEASE_SECONDS = 43_200
DEFAULT_MAX_ATTEMPTS = 3


class TaskStatus(StrEnum):
    ready = "ready"
    """Waiting for a worker; reserve hands out the one that became ready first, then by task_id."""
    leased = "leased"
    """Reserved by `lease.owner` until `lease.expires_at`."""
    snoozed = "snoozed"
    """Waiting until `not_before` (created so, snoozed, or waiting out a retry backoff); `ready` then."""
    completed = "completed"
    """The owner completed it (terminal)."""
    failed = "failed"
    """Its last attempt failed or its last lease expired (terminal)."""


DONE = frozenset({TaskStatus.completed, TaskStatus.failed})

# Allowed transitions, as data: every change goes through `check_transition`.
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.ready: frozenset({TaskStatus.leased, TaskStatus.failed}),  # reserve, withdraw
    TaskStatus.snoozed: frozenset({TaskStatus.ready, TaskStatus.failed}),  # not_before reached, withdraw
    TaskStatus.leased: frozenset(
        {
            TaskStatus.leased,  # extend
            TaskStatus.completed,  # complete
            TaskStatus.ready,  # fail with attempts left, release, revoke, lease lapsed
            TaskStatus.snoozed,  # snooze, fail with a retry backoff
            TaskStatus.failed,  # fail or lapse with attempts exhausted, withdraw
        }
    ),
    TaskStatus.completed: frozenset(),
    TaskStatus.failed: frozenset(),
}


def check_transition(current: TaskStatus, new: TaskStatus) -> None:
    """Raise unless `current → new` is allowed: `AlreadyDone` when the task is closed, else
    `Conflict`."""
    if new in TRANSITIONS[current]:
        return
    if current in DONE:
        raise AlreadyDone(f"the task is already {current.value}", {"status": current.value})
    raise Conflict(f"a {current.value} task cannot become {new.value}", current=None)


def ms(t: datetime) -> datetime:
    """`t` in UTC, truncated to the millisecond."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    t = t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Lease:
    """Who holds a leased task, until when, and the token of this reservation (the same across
    extends, new with every reservation)."""

    owner: str
    expires_at: datetime
    token: str


@dataclass(frozen=True)
class Task:
    """A task (CONTRACT.md §8). `ready_since` is when it became (or becomes, when snoozed)
    reservable: reserve takes the earliest; it is internal, not part of the resource."""

    task_id: str
    topic: str
    created_at: datetime
    updated_at: datetime
    status: TaskStatus = TaskStatus.ready
    sub_topic: str | None = None
    task_group_id: str | None = None
    data: Any = field(default_factory=dict)
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    not_before: datetime | None = None
    lease: Lease | None = None
    inbox: list[Any] = field(default_factory=list)
    details: Any = None
    result: Any = None
    error: Any = None
    run_id: str | None = None
    ready_since: datetime | None = None
    record_version: int = 0


def new_task(
    *,
    task_id: str,
    topic: str,
    now: datetime,
    data: Any = None,
    sub_topic: str | None = None,
    task_group_id: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    not_before: datetime | None = None,
    run_id: str | None = None,
) -> Task:
    """A new task: `snoozed` while `not_before` is in the future, else `ready` from `now`."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    later = not_before is not None and not_before > now
    return Task(
        task_id=task_id,
        topic=topic,
        created_at=now,
        updated_at=now,
        status=TaskStatus.snoozed if later else TaskStatus.ready,
        sub_topic=sub_topic,
        task_group_id=task_group_id,
        data=data if data is not None else {},
        max_attempts=max_attempts,
        not_before=not_before,
        run_id=run_id,
        ready_since=not_before if later and not_before is not None else now,
    )


# --- the lease ----------------------------------------------------------------------------------


def lease_live(task: Task, now: datetime) -> bool:
    """The owner may act on the task: it is leased and now < `lease.expires_at`."""
    return task.status is TaskStatus.leased and task.lease is not None and now < task.lease.expires_at


def lease_lapsed(task: Task, now: datetime, skew: timedelta = DEFAULT_SKEW) -> bool:
    """The lease has ended for everyone: now ≥ `lease.expires_at` + `skew`, so another worker
    may reserve the task. Between `expires_at` and that instant the lease is neither live for the
    owner nor free for others."""
    return task.status is TaskStatus.leased and task.lease is not None and now >= task.lease.expires_at + skew


def effective(task: Task, now: datetime, skew: timedelta = DEFAULT_SKEW) -> Task:
    """The task as it is at `now`: a snooze whose `not_before` has come is `ready`; a lapsed lease
    counts an attempt and leaves the task `ready`, or `failed` with `lease_expired` when that was
    its last attempt. Anything else is returned unchanged (record_version included: time alone
    writes nothing)."""
    if task.status is TaskStatus.snoozed and task.not_before is not None and task.not_before <= now:
        return replace(task, status=TaskStatus.ready, ready_since=task.not_before)
    if lease_lapsed(task, now, skew):
        assert task.lease is not None
        lapsed_at = task.lease.expires_at + skew
        attempts = task.attempts + 1
        if attempts >= task.max_attempts:
            error = {
                "code": "lease_expired",
                "message": f"the lease of {task.lease.owner} expired and no attempts are left",
                "details": {"owner": task.lease.owner, "attempts": attempts},
            }
            return replace(
                task, status=TaskStatus.failed, attempts=attempts, lease=None, ready_since=None, error=error
            )
        return replace(task, status=TaskStatus.ready, attempts=attempts, lease=None, ready_since=lapsed_at)
    return task


def reservable(task: Task, now: datetime, skew: timedelta = DEFAULT_SKEW) -> bool:
    """Another worker may reserve the task at `now` (it is effectively `ready`)."""
    return effective(task, now, skew).status is TaskStatus.ready


def check_owner(
    task: Task | None,
    worker_id: str,
    lease_token: str | None,
    now: datetime,
    *,
    skew: timedelta = DEFAULT_SKEW,
    task_id: str | None = None,
) -> Task:
    """Allow an owner's call (extend, complete, fail, snooze, release) or raise, in the order of
    CONTRACT.md §8: `NotFound`; `AlreadyDone` (completed or failed, also by a lapsed last lease);
    `WrongOwner` (leased to another or not leased); `LeaseExpired` (now ≥ `expires_at`); and
    `WrongOwner` when `lease_token` is given and is not the current lease's. Answers the task."""
    if task is None:
        raise NotFound(f"task/{task_id}" if task_id is not None else "task")
    current = effective(task, now, skew)
    if current.status in DONE:
        raise AlreadyDone(f"the task is already {current.status.value}", {"status": current.status.value})
    # A lapsed lease (not yet reserved by another) is still the owner's to hear about: the stored
    # lease decides ownership, so its owner learns `lease_expired`, not `wrong_owner`.
    lease = task.lease if task.status is TaskStatus.leased else None
    if lease is None:
        raise WrongOwner("the task is not leased", {"owner": None})
    if lease.owner != worker_id:
        raise WrongOwner(f"the task is leased to {lease.owner}", {"owner": lease.owner})
    if not lease_live(task, now):
        raise LeaseExpired("the lease has expired", {"expires_at": _iso(lease.expires_at)})
    if lease_token is not None and lease_token != lease.token:
        raise WrongOwner("lease_token is not the current lease's", {"owner": lease.owner})
    return task


# --- transitions (each from the effective task; the caller has checked who may make it) ---------


def _moved(task: Task, new: TaskStatus, now: datetime, **changes: Any) -> Task:
    check_transition(task.status, new)
    return replace(task, status=new, updated_at=now, **changes)


def reserve(task: Task, worker_id: str, token: str, now: datetime, lease_seconds: float) -> Task:
    """Lease a ready task to `worker_id` for `lease_seconds` with a fresh `token`."""
    _check_seconds("lease_seconds", lease_seconds, 1, MAX_LEASE_SECONDS)
    lease = Lease(owner=worker_id, expires_at=ms(now + timedelta(seconds=lease_seconds)), token=token)
    return _moved(task, TaskStatus.leased, now, lease=lease, ready_since=None)


def extend(
    task: Task, now: datetime, lease_seconds: float, *, details: Any = None, set_details: bool
) -> Task:
    """Move the lease's expiry to now + `lease_seconds` (same owner, same token); record the
    heartbeat `details` when `set_details`."""
    _check_seconds("lease_seconds", lease_seconds, 1, MAX_LEASE_SECONDS)
    assert task.lease is not None
    lease = replace(task.lease, expires_at=ms(now + timedelta(seconds=lease_seconds)))
    return _moved(task, TaskStatus.leased, now, lease=lease, details=details if set_details else task.details)


def complete(task: Task, now: datetime, result: Any) -> Task:
    """Close the task as `completed` with its `result`."""
    return _moved(task, TaskStatus.completed, now, lease=None, result=result, error=None, ready_since=None)


def fail(task: Task, now: datetime, error: Any, *, retry_delay_seconds: float = 0.0) -> Task:
    """End the attempt with `error`: `ready` again while attempts < max_attempts (`snoozed` for
    `retry_delay_seconds` first when > 0), else `failed`."""
    attempts = task.attempts + 1
    if attempts >= task.max_attempts:
        return _moved(
            task, TaskStatus.failed, now, attempts=attempts, lease=None, error=error, ready_since=None
        )
    if retry_delay_seconds > 0:
        until = ms(now + timedelta(seconds=retry_delay_seconds))
        return _moved(
            task,
            TaskStatus.snoozed,
            now,
            attempts=attempts,
            lease=None,
            error=error,
            not_before=until,
            ready_since=until,
        )
    return _moved(task, TaskStatus.ready, now, attempts=attempts, lease=None, error=error, ready_since=now)


def withdraw(task: Task, now: datetime, reason: str) -> Task:
    """The run attempt this task stands for ended otherwise (canceled, terminated, timed out):
    `failed` with error `withdrawn` at once, whatever its state — no longer reservable, and
    its lease holder's next call is refused (`already_done`). No attempt is counted."""
    error = {"code": "withdrawn", "message": reason, "details": None}
    return _moved(task, TaskStatus.failed, now, lease=None, error=error, ready_since=None)


def snooze(task: Task, now: datetime, delay_seconds: float) -> Task:
    """Free the lease without counting an attempt; `ready` again after `delay_seconds`."""
    if delay_seconds < 0:
        raise ValueError("delay_seconds must be >= 0")
    until = ms(now + timedelta(seconds=delay_seconds))
    return _moved(task, TaskStatus.snoozed, now, lease=None, not_before=until, ready_since=until)


def release(task: Task, now: datetime) -> Task:
    """Free the lease without counting an attempt (release, revoke-lease): `ready` at once."""
    return _moved(task, TaskStatus.ready, now, lease=None, ready_since=now)


def close_lapsed(task: Task, now: datetime, skew: timedelta = DEFAULT_SKEW) -> Task:
    """Write down what time did: the effective task of a lapsed lease or an ended snooze, stamped
    `updated_at` = now (a store write that takes a dead lease out of the lease index)."""
    current = effective(task, now, skew)
    if current.status is not task.status:
        check_transition(task.status, current.status)
    return replace(current, updated_at=now)


def add_signal(task: Task, now: datetime, signal: Any) -> Task:
    """Append a signal to the inbox (handed to the worker with every extend-lease answer)."""
    if task.status in DONE:
        raise AlreadyDone(f"the task is already {task.status.value}", {"status": task.status.value})
    return replace(task, inbox=[*task.inbox, signal], updated_at=now)


def _check_seconds(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}")


def _iso(t: datetime) -> str:
    return str(fmt(t))
