"""The in-memory task store: the fake behind unit tests, held to the same contract suite as the
DynamoDB adapter (`tests/contract/test_tasks.py`).

Faithful where it is cheap, as `gnomon.adapters.memory` is: documents are copied through JSON,
instants are kept to the millisecond (the index keys' precision) and `expires_at` in whole epoch
seconds (the TTL attribute's); pages are exact. TTL deletion is not modelled.

The key helpers here (`time_key`, `lease_key`, `list_key`, ...) are imported by
`gnomon.adapters.dynamo_tasks`, so both stores order and page alike.
"""

from __future__ import annotations

import builtins
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gnomon.adapters.memory import (
    ceil_instant,
    check_limit,
    conflict_current,
    due_upper_bound,
    epoch_seconds,
    json_copy,
    store_instant,
)
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.timefmt import sortable
from gnomon.ports import Page
from gnomon.ports_tasks import LEASED, TaskEntry, TaskRecord

MAX_WORKERS = 100
"""Workers remembered per topic: when more are seen, the least recently seen are forgotten."""

_SORTABLE_WIDTH = len("2000-01-01T00:00:00.000Z")
_TIME_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z#.+", re.DOTALL)


# --- helpers shared with gnomon.adapters.dynamo_tasks ---------------------------------------------


def time_key(t: datetime, task_id: str) -> str:
    """`<sortable t>#<task_id>`: the sort key of the `ready`, `by_topic` and `by_group` indexes
    (string order is (t, task_id) order: the time part has a fixed width)."""
    return f"{sortable(t)}#{task_id}"


def split_time_key(key: str) -> tuple[datetime, str]:
    """(t, task_id) of a `time_key`; ValueError if `key` is not one."""
    if not _TIME_KEY.fullmatch(key):
        raise ValueError(f"not a task time key: {key!r}")
    when = datetime.strptime(key[:_SORTABLE_WIDTH], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return when, key[_SORTABLE_WIDTH + 1 :]


def lease_key(status: str, held_until: datetime, task_id: str) -> str:
    """The `leased` index's sort key: `<status>#<sortable held_until>#<task_id>`, so a topic's
    leases (`leased#...`) sort apart from its snoozes (`snoozed#...`), each by time."""
    return f"{status}#{time_key(held_until, task_id)}"


def split_lease_key(key: str) -> tuple[str, datetime, str]:
    """(status, held_until, task_id) of a `lease_key`; ValueError if `key` is not one."""
    status, sep, rest = key.partition("#")
    if not sep or not status:
        raise ValueError(f"not a lease key: {key!r}")
    when, task_id = split_time_key(rest)
    return status, when, task_id


def list_key(topic: str, key: str) -> str:
    """A page key of `list` / `leased`: `<topic>#<index sort key>` (topics never hold `#`)."""
    return f"{topic}#{key}"


def split_list_key(page_key: str) -> tuple[str, str]:
    """(topic, index sort key) of a `list_key`; ValueError if it is not one (the caller checks
    the sort key's shape)."""
    topic, sep, key = page_key.partition("#")
    if not sep or not topic:
        raise ValueError(f"not a task page key: {page_key!r}")
    return topic, key


def upper_key(t: datetime) -> str:
    """A key above every `time_key` at or before `t` (to the millisecond) and below every later one."""
    return due_upper_bound(store_instant(t))


def check_task(rec: TaskRecord) -> None:
    """Refuse what either store could not keep or index alike: empty key strings, a `#` in a
    topic (page keys split on it) or a task id (the DynamoDB store keeps topic items under
    "topic#..."), naive instants."""
    for name in ("task_id", "topic", "status"):
        if not getattr(rec, name):
            raise ValueError(f"{name} must not be empty")
    if "#" in rec.topic or "#" in rec.task_id:
        raise ValueError("task_id and topic must not contain '#'")
    for name in ("sub_topic", "task_group_id"):
        if getattr(rec, name) == "":
            raise ValueError(f"{name} must not be empty (None when there is none)")
    for t in (rec.created_at, rec.ready_at, rec.held_until, rec.expires_at):
        if t is not None and t.tzinfo is None:
            raise ValueError("naive datetime")


def already_exists_task(task_id: str) -> AlreadyExists:
    return AlreadyExists(f"task/{task_id} already exists", {"resource": f"task/{task_id}"})


def conflict_task(task_id: str, doc: dict[str, object], version: int, expected: int) -> Conflict:
    """The `Conflict` of a stale update: `current` is the stored task with its record_version."""
    current = conflict_current(doc, version)
    current.pop("version", None)
    current["record_version"] = version
    return Conflict(f"task/{task_id} is at record_version {version}, not {expected}", current=current)


def keep_recent(seen: dict[str, datetime], limit: int = MAX_WORKERS) -> dict[str, datetime]:
    """The `limit` most recently seen workers (ties by worker id)."""
    if len(seen) <= limit:
        return dict(seen)
    ranked = sorted(seen.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:limit]
    return dict(ranked)


# --- the store ------------------------------------------------------------------------------------


@dataclass
class _Task:
    topic: str
    sub_topic: str | None
    task_group_id: str | None
    created_at: datetime
    doc: dict[str, object]
    status: str
    ready_at: datetime | None
    held_until: datetime | None
    expires_at: int | None  # epoch seconds, as the TTL attribute keeps it
    version: int

    def record(self, task_id: str) -> TaskRecord:
        return TaskRecord(
            task_id=task_id,
            topic=self.topic,
            doc=json_copy(self.doc),
            status=self.status,
            created_at=self.created_at,
            sub_topic=self.sub_topic,
            task_group_id=self.task_group_id,
            ready_at=self.ready_at,
            held_until=self.held_until,
            expires_at=datetime.fromtimestamp(self.expires_at, UTC) if self.expires_at is not None else None,
            record_version=self.version,
        )

    def created_key(self, task_id: str) -> str:
        return time_key(self.created_at, task_id)


def _instant(t: datetime | None) -> datetime | None:
    return store_instant(t) if t is not None else None


class MemoryTaskStore:
    """Tasks in a dict behind one lock; the indexes are computed by filtering it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Task] = {}
        self._workers: dict[str, dict[str, datetime]] = {}

    def create(self, rec: TaskRecord) -> TaskRecord:
        check_task(rec)
        item = _Task(
            topic=rec.topic,
            sub_topic=rec.sub_topic,
            task_group_id=rec.task_group_id,
            created_at=store_instant(rec.created_at),
            doc=json_copy(rec.doc),
            status=rec.status,
            ready_at=_instant(rec.ready_at),
            held_until=_instant(rec.held_until),
            expires_at=epoch_seconds(rec.expires_at) if rec.expires_at is not None else None,
            version=1,
        )
        with self._lock:
            if rec.task_id in self._items:
                raise already_exists_task(rec.task_id)
            self._items[rec.task_id] = item
            return item.record(rec.task_id)

    def get(self, task_id: str) -> TaskRecord:
        with self._lock:
            item = self._items.get(task_id)
            if item is None:
                raise NotFound(f"task/{task_id}")
            return item.record(task_id)

    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskRecord]:
        with self._lock:
            return {
                tid: self._items[tid].record(tid) for tid in dict.fromkeys(task_ids) if tid in self._items
            }

    def update(self, rec: TaskRecord, *, expected_version: int) -> TaskRecord:
        check_task(rec)
        doc = json_copy(rec.doc)
        expires_at = epoch_seconds(rec.expires_at) if rec.expires_at is not None else None
        with self._lock:
            item = self._items.get(rec.task_id)
            if item is None:
                raise NotFound(f"task/{rec.task_id}")
            if item.topic != rec.topic:
                raise ValueError(f"task/{rec.task_id}: the topic cannot change")
            if item.version != expected_version:
                raise conflict_task(rec.task_id, item.doc, item.version, expected_version)
            item.doc, item.status = doc, rec.status
            item.ready_at, item.held_until = _instant(rec.ready_at), _instant(rec.held_until)
            item.expires_at = expires_at
            item.version += 1
            return item.record(rec.task_id)

    def ready(self, topic: str, now: datetime, *, limit: int) -> builtins.list[TaskEntry]:
        check_limit(limit)
        upper = upper_key(now)
        with self._lock:
            keys = sorted(
                key
                for tid, item in self._items.items()
                if item.topic == topic
                and item.ready_at is not None
                and (key := time_key(item.ready_at, tid)) < upper
            )[:limit]
        return [TaskEntry(task_id, at) for at, task_id in map(split_time_key, keys)]

    def expired(self, topic: str, until: datetime, *, limit: int) -> builtins.list[TaskEntry]:
        check_limit(limit)
        upper = f"{LEASED}#{upper_key(until)}"
        with self._lock:
            keys = sorted(
                key
                for tid, item in self._items.items()
                if item.topic == topic
                and item.held_until is not None
                and item.status == LEASED
                and (key := lease_key(item.status, item.held_until, tid)) < upper
            )[:limit]
        return [TaskEntry(task_id, at) for _, at, task_id in map(split_lease_key, keys)]

    def leased(self, topic: str | None, *, after: str | None, limit: int) -> Page[TaskRecord]:
        check_limit(limit)
        lower: tuple[str, str] | None = None
        if after is not None:
            after_topic, after_key = split_list_key(after)
            split_lease_key(after_key)
            lower = (after_topic, after_key)
        with self._lock:
            keyed = sorted(
                ((item.topic, lease_key(item.status, item.held_until, tid)), tid)
                for tid, item in self._items.items()
                if item.held_until is not None and (topic is None or item.topic == topic)
            )
            chosen = [(k, tid) for k, tid in keyed if lower is None or k > lower][: limit + 1]
            items = [self._items[tid].record(tid) for _, tid in chosen[:limit]]
        last = chosen[limit - 1][0] if len(chosen) > limit else None
        return Page(items, list_key(*last) if last is not None else None)

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
        check_limit(limit)
        lower, upper = created_range(start, end)
        by_topic_order = topic is None and task_group_id is None
        after_pos: tuple[str, str] | None = None
        if after is not None:
            after_topic, after_key = split_list_key(after)
            split_time_key(after_key)
            after_pos = (after_topic if by_topic_order else "", after_key)
        wanted = set(statuses) if statuses is not None else None
        with self._lock:
            keyed: builtins.list[tuple[tuple[str, str], str]] = []
            for tid, item in self._items.items():
                key = item.created_key(tid)
                if (
                    (topic is None or item.topic == topic)
                    and (sub_topic is None or item.sub_topic == sub_topic)
                    and (task_group_id is None or item.task_group_id == task_group_id)
                    and (wanted is None or item.status in wanted)
                    and lower <= key
                    and (upper is None or key < upper)
                ):
                    pos = (item.topic if by_topic_order else "", key)
                    if after_pos is None or pos > after_pos:
                        keyed.append((pos, tid))
            keyed.sort()
            chosen = keyed[: limit + 1]
            items = [self._items[tid].record(tid) for _, tid in chosen[:limit]]
        last = items[-1] if len(chosen) > limit else None
        return Page(items, list_key(last.topic, time_key(last.created_at, last.task_id)) if last else None)

    def by_group(self, task_group_id: str, *, after: str | None, limit: int) -> Page[TaskRecord]:
        return self.list(task_group_id=task_group_id, after=after, limit=limit)

    def count_ready(self, topic: str, now: datetime) -> tuple[int, int]:
        upper = upper_key(now)
        due = later = 0
        with self._lock:
            for tid, item in self._items.items():
                if item.topic == topic and item.ready_at is not None:
                    if time_key(item.ready_at, tid) < upper:
                        due += 1
                    else:
                        later += 1
        return due, later

    def count_leased(self, topic: str, after: datetime) -> int:
        upper = f"{LEASED}#{upper_key(after)}"
        with self._lock:
            return sum(
                1
                for tid, item in self._items.items()
                if item.topic == topic
                and item.status == LEASED
                and item.held_until is not None
                and lease_key(LEASED, item.held_until, tid) > upper
            )

    def touch_worker(self, topic: str, worker_id: str, at: datetime) -> None:
        when = store_instant(at)
        with self._lock:
            seen = self._workers.setdefault(topic, {})
            if seen.get(worker_id, when) <= when:
                seen[worker_id] = when
            self._workers[topic] = keep_recent(seen)

    def workers(self, topic: str) -> dict[str, datetime]:
        with self._lock:
            return dict(self._workers.get(topic, {}))


def created_range(start: datetime | None, end: datetime | None) -> tuple[str, str | None]:
    """The `created_key`s a list may return: `lower <= key < upper` (upper None = unbounded);
    `start` inclusive, `end` exclusive on created_at."""
    lower = sortable(ceil_instant(start)) if start is not None else ""
    upper = sortable(ceil_instant(end)) if end is not None else None
    return lower, upper
