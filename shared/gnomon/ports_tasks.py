"""The port of leased tasks (CONTRACT.md §8): the task store.

Like `gnomon.ports`: every mutating method is a conditional write; a failed condition raises a
domain error (`AlreadyExists`, `NotFound`, `Conflict` carrying the current document), never a
driver error. `doc` is the task resource as the service shapes it (without `record_version`,
which the store owns); the store owns keys, versions and indexes.

Where a task is indexed is given explicitly by the record, not read from `doc`:

- `ready_at`: the task is in the `ready` index of its topic at that instant — a ready task under
  the instant it became ready, a snoozed one under its `not_before` — so reserve finds, oldest
  first, every task whose `ready_at` has come (`ready()`);
- `held_until`: the task is in the `leased` index of its topic — a `leased` task under its lease
  expiry (so `expired()` finds lapsed leases), a `snoozed` one under its `not_before` (so
  `leased()` lists what is leased or snoozed);
- `task_group_id` and `created_at`: the `by_group` and `by_topic` lists, in creation order.

Implementations: `gnomon.adapters.memory_tasks` (the fake) and `gnomon.adapters.dynamo_tasks`
(pynamodb); `tests/contract/test_tasks.py` runs one suite against both.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gnomon.ports import JSON, Page

LEASED = "leased"
"""The record status whose `held_until` is a lease expiry (what `expired()` looks for); any other
status with a `held_until` (a snooze) is listed by `leased()` only."""


@dataclass(frozen=True)
class TaskRecord:
    """A task as stored.

    `status` is the status last written (the service computes the effective one: time turns a
    snooze into `ready` and a lapsed lease into `ready` or `failed`). `topic`, `sub_topic`,
    `task_group_id` and `created_at` are fixed at create; `update` keeps the stored ones.
    `expires_at` is the TTL (retention) instant of a closed task. `record_version` is 1 after
    create and grows by one with every update. Instants are kept to the millisecond
    (`expires_at`: whole epoch seconds, the TTL attribute's precision)."""

    task_id: str
    topic: str
    doc: JSON
    status: str
    created_at: datetime
    sub_topic: str | None = None
    task_group_id: str | None = None
    ready_at: datetime | None = None
    held_until: datetime | None = None
    expires_at: datetime | None = None
    record_version: int = 0


@dataclass(frozen=True)
class TaskEntry:
    """An index entry: a task and the instant it is indexed under."""

    task_id: str
    at: datetime


class TaskStore(Protocol):
    """Tasks, with the sparse `ready` and `leased` indexes reserve and the lease list query
    instead of scanning, and per-topic "workers seen" records."""

    def create(self, rec: TaskRecord) -> TaskRecord:
        """Store with record_version 1. `AlreadyExists` (details `{"resource": "task/<id>"}`) if
        the id is taken."""
        ...

    def get(self, task_id: str) -> TaskRecord:
        """A strongly consistent read. `NotFound(f"task/{task_id}")` if absent."""
        ...

    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskRecord]:
        """Strongly consistent reads of several tasks at once; absent ids are left out."""
        ...

    def update(self, rec: TaskRecord, *, expected_version: int) -> TaskRecord:
        """Replace doc / status / ready_at / held_until / expires_at if the stored record_version
        is `expected_version`; record_version + 1. `NotFound`; `Conflict(current=doc)` on a
        mismatch (`current` carries `record_version`)."""
        ...

    def ready(self, topic: str, now: datetime, *, limit: int) -> builtins.list[TaskEntry]:
        """Up to `limit` entries of the topic's `ready` index with `ready_at` <= now, oldest
        first, then by task_id. Eventually consistent in DynamoDB: read each task before use."""
        ...

    def expired(self, topic: str, until: datetime, *, limit: int) -> builtins.list[TaskEntry]:
        """Up to `limit` `leased` tasks of the topic whose `held_until` (lease expiry) <= until,
        earliest first, then by task_id."""
        ...

    def leased(self, topic: str | None, *, after: str | None, limit: int) -> Page[TaskRecord]:
        """Tasks in the `leased` index — `leased` and `snoozed` ones, including those time has
        since freed (the caller filters by effective status) — of one topic (ordered: leases by
        expiry, then snoozes by `not_before`) or of every topic (topic None: grouped by topic, in
        no further order). `after` is a `last_key` this method returned; pages may be short."""
        ...

    def list(
        self,
        *,
        topic: str | None = None,
        sub_topic: str | None = None,
        task_group_id: str | None = None,
        statuses: builtins.list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: str | None,
        limit: int,
    ) -> Page[TaskRecord]:
        """Tasks filtered by topic, sub_topic, group, stored status (any of `statuses`) and
        `created_at` (`start` inclusive, `end` exclusive). With a topic or a group: oldest
        `created_at` first, then task_id. With neither: grouped by topic, in no further order
        (DynamoDB scans an index). `after` is a `last_key` this method returned; pages may be
        short (a filtered list stops reading after a budget and resumes from where it stopped)."""
        ...

    def by_group(self, task_group_id: str, *, after: str | None, limit: int) -> Page[TaskRecord]:
        """The tasks of a group, oldest first (`list(task_group_id=...)`)."""
        ...

    def count_ready(self, topic: str, now: datetime) -> tuple[int, int]:
        """Entries of the topic's `ready` index: (with `ready_at` <= now, with `ready_at` > now)."""
        ...

    def count_leased(self, topic: str, after: datetime) -> int:
        """`leased` tasks of the topic whose lease expiry (`held_until`) is > after."""
        ...

    def touch_worker(self, topic: str, worker_id: str, at: datetime) -> None:
        """Record that `worker_id` asked the topic for work at `at` (kept beside the tasks, never
        listed as one). Only the most recent workers of a topic are kept (see the adapters)."""
        ...

    def workers(self, topic: str) -> dict[str, datetime]:
        """The workers seen on the topic and when each was seen last."""
        ...
