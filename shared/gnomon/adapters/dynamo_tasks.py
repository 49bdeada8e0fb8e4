# pynamodb leaves Index.__init_subclass__, MapAttribute() and as_dict() untyped.
# mypy: disable-error-code="no-untyped-call"
"""The DynamoDB task store (pynamodb), held to the same contract suite as
`gnomon.adapters.memory_tasks`.

Table `GNOMON_TASKS_TABLE` (the template's `TasksTable`), one item per task, `task_id` its key:

- `doc` (the task resource as a JSON string), `record_version` (the conditional-write version),
  `status` (as last written), `topic`, `sub_topic`, `task_group_id`, `created_key` =
  "<sortable created_at>#<task_id>", `expires_at` (TTL, closed tasks only);
- sparse KEYS_ONLY `ready` on (`ready_topic`, `ready_key` = "<sortable ready_at>#<task_id>"):
  ready tasks, and snoozed ones under their `not_before`; reserve queries it up to now;
- sparse KEYS_ONLY `leased` on (`leased_topic`, `lease_key` = "<status>#<sortable
  held_until>#<task_id>"): leased tasks under their lease expiry ("leased#…"; reserve finds lapsed
  leases there) and snoozed ones under `not_before` ("snoozed#…"; so the lease list is this
  index: a query per topic, a scan of the sparse index across topics);
- KEYS_ONLY `by_topic` (`topic`, `created_key`) and `by_group` (`task_group_id`, `created_key`)
  for lists (query the index, then BatchGetItem the items; filters are re-checked on the items,
  since a GSI is eventually consistent). A list across every topic scans `by_topic`.

Per topic, an item `task_id` = "topic#<topic>" (`#` never occurs in a task id) holds the map
`workers` (worker id → sortable last-seen time); it carries none of the index attributes, so no
index and no list ever sees it.

As in `gnomon.adapters.dynamo`: `record_version` is a plain number with explicit
`record_version = :v` conditions, and a failed condition is re-read into `NotFound`, `Conflict`
(carrying the current document) or a `ValueError` for a record that would move the task.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from gnomon.adapters.dynamo import _backoff, _bind, _chunks, _table
from gnomon.adapters.memory import check_limit, store_instant
from gnomon.adapters.memory_tasks import (
    MAX_WORKERS,
    already_exists_task,
    check_task,
    conflict_task,
    created_range,
    keep_recent,
    lease_key,
    list_key,
    split_lease_key,
    split_list_key,
    split_time_key,
    time_key,
    upper_key,
)
from gnomon.domain.errors import Conflict, NotFound
from gnomon.domain.timefmt import sortable
from gnomon.ports import Page
from gnomon.ports_tasks import LEASED, TaskEntry, TaskRecord

__all__ = ["TASKS_TABLE_ENV", "DynamoTaskStore"]

TASKS_TABLE_ENV = "GNOMON_TASKS_TABLE"

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CONFLICT = "TransactionConflictException"
_MAX_ATTEMPTS = 50
_BATCH_GET_MAX = 100
# Index pages one list call may read before it answers a short page (filters may reject most of a
# topic; a list must not read all of it in one request), and keys asked per page.
_LIST_READS = 16
_INDEX_PAGE = 100
_TOPIC_PREFIX = "topic#"
_NO_TOPIC = "-"  # stands for the topic in a page key that needs none (never a topic name)


class _Ready(GlobalSecondaryIndex["_TaskItem"]):
    class Meta:
        index_name = "ready"
        projection = KeysOnlyProjection()

    ready_topic = UnicodeAttribute(hash_key=True)
    ready_key = UnicodeAttribute(range_key=True)


class _Leased(GlobalSecondaryIndex["_TaskItem"]):
    class Meta:
        index_name = "leased"
        projection = KeysOnlyProjection()

    leased_topic = UnicodeAttribute(hash_key=True)
    lease_key = UnicodeAttribute(range_key=True)


class _ByGroup(GlobalSecondaryIndex["_TaskItem"]):
    class Meta:
        index_name = "by_group"
        projection = KeysOnlyProjection()

    task_group_id = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class _ByTopic(GlobalSecondaryIndex["_TaskItem"]):
    class Meta:
        index_name = "by_topic"
        projection = KeysOnlyProjection()

    topic = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


class _TaskItem(Model):
    task_id = UnicodeAttribute(hash_key=True)
    doc = UnicodeAttribute()
    record_version = NumberAttribute()
    status = UnicodeAttribute()
    topic = UnicodeAttribute()
    sub_topic = UnicodeAttribute(null=True)
    task_group_id = UnicodeAttribute(null=True)  # absent without a group: sparse `by_group`
    created_key = UnicodeAttribute()
    ready_topic = UnicodeAttribute(null=True)  # both absent unless ready_at: sparse `ready`
    ready_key = UnicodeAttribute(null=True)
    leased_topic = UnicodeAttribute(null=True)  # both absent unless held_until: sparse `leased`
    lease_key = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)

    ready = _Ready()
    leased = _Leased()
    by_group = _ByGroup()
    by_topic = _ByTopic()


class _TopicItem(Model):
    """Per-topic bookkeeping: `task_id` = "topic#<topic>", `workers` = {worker_id: sortable time}."""

    task_id = UnicodeAttribute(hash_key=True)
    workers = MapAttribute[str, Any](default=dict)


# Candidates a list yields in order: (page key, task_id); the generator returns None when nothing
# more can match, or the page key to resume after when its read budget ran out.
_Source = Generator[tuple[str, str], None, str | None]


class DynamoTaskStore:
    """`TaskStore` on one table; see the module docstring for the item layout."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = _table(table_name, TASKS_TABLE_ENV)
        self._item = _bind(_TaskItem, self.table_name)
        self._topic = _bind(_TopicItem, self.table_name)

    def create(self, rec: TaskRecord) -> TaskRecord:
        check_task(rec)
        m = self._item
        item = m(
            rec.task_id,
            doc=json.dumps(rec.doc),
            record_version=1,
            status=rec.status,
            topic=rec.topic,
            sub_topic=rec.sub_topic,
            task_group_id=rec.task_group_id,
            created_key=time_key(store_instant(rec.created_at), rec.task_id),
            expires_at=rec.expires_at,
        )
        if rec.ready_at is not None:
            item.ready_topic, item.ready_key = rec.topic, time_key(store_instant(rec.ready_at), rec.task_id)
        if rec.held_until is not None:
            item.leased_topic = rec.topic
            item.lease_key = lease_key(rec.status, store_instant(rec.held_until), rec.task_id)
        try:
            item.save(condition=m.task_id.does_not_exist())
        except PutError as e:
            if e.cause_response_code == _CONDITION_FAILED:
                raise already_exists_task(rec.task_id) from None
            raise
        return self._record(item)

    def get(self, task_id: str) -> TaskRecord:
        item = self._read(task_id)
        if item is None:
            raise NotFound(f"task/{task_id}")
        return self._record(item)

    def get_many(self, task_ids: Iterable[str]) -> dict[str, TaskRecord]:
        return {tid: self._record(i) for tid, i in self._batch_get(task_ids).items()}

    def update(self, rec: TaskRecord, *, expected_version: int) -> TaskRecord:
        check_task(rec)
        m = self._item
        actions: list[Action] = [
            m.doc.set(json.dumps(rec.doc)),
            m.status.set(rec.status),
            m.record_version.add(1),
        ]
        if rec.ready_at is not None:
            actions += [
                m.ready_topic.set(rec.topic),
                m.ready_key.set(time_key(store_instant(rec.ready_at), rec.task_id)),
            ]
        else:
            actions += [m.ready_topic.remove(), m.ready_key.remove()]
        if rec.held_until is not None:
            actions += [
                m.leased_topic.set(rec.topic),
                m.lease_key.set(lease_key(rec.status, store_instant(rec.held_until), rec.task_id)),
            ]
        else:
            actions += [m.leased_topic.remove(), m.lease_key.remove()]
        actions.append(
            m.expires_at.set(rec.expires_at) if rec.expires_at is not None else m.expires_at.remove()
        )
        # The topic is pinned too: the indexes are keyed by it, so a record naming another topic
        # fails like in the memory store.
        condition = (m.record_version == expected_version) & (m.topic == rec.topic)
        item = m(rec.task_id)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                item.update(actions, condition=condition)  # returns ALL_NEW into `item`
                return self._record(item)
            except UpdateError as e:
                if e.cause_response_code == _TRANSACTION_CONFLICT:
                    _backoff(attempt)
                    continue
                if e.cause_response_code != _CONDITION_FAILED:
                    raise
            raise self._failed(rec, expected_version)
        raise Conflict(f"task/{rec.task_id}: too much contention", current=None)

    def ready(self, topic: str, now: datetime, *, limit: int) -> builtins.list[TaskEntry]:
        check_limit(limit)
        m = self._item
        keys = m.ready.query(topic, m.ready_key < upper_key(now), limit=limit)
        return [TaskEntry(task_id, at) for at, task_id in (split_time_key(k.ready_key) for k in keys)]

    def expired(self, topic: str, until: datetime, *, limit: int) -> builtins.list[TaskEntry]:
        check_limit(limit)
        m = self._item
        # BETWEEN is inclusive, but neither bound is a key: "leased#" is shorter than any, and the
        # upper bound ends in "$".
        condition = m.lease_key.between(f"{LEASED}#", f"{LEASED}#{upper_key(until)}")
        keys = m.leased.query(topic, condition, limit=limit)
        return [TaskEntry(task_id, at) for _, at, task_id in (split_lease_key(k.lease_key) for k in keys)]

    def leased(self, topic: str | None, *, after: str | None, limit: int) -> Page[TaskRecord]:
        check_limit(limit)
        m = self._item
        start: dict[str, dict[str, str]] | None = None
        after_key: str | None = None
        if after is not None:
            after_topic, after_key = split_list_key(after)
            _, _, after_id = split_lease_key(after_key)
            start = {
                "task_id": {"S": after_id},
                "leased_topic": {"S": after_topic},
                "lease_key": {"S": after_key},
            }
        page_size = min(limit + 1, 1000)
        if topic is not None:
            condition = m.lease_key > after_key if after_key is not None else None
            results = m.leased.query(topic, condition, page_size=page_size)
        else:
            results = m.leased.scan(last_evaluated_key=start, page_size=page_size)

        def source() -> _Source:
            reads = 0
            pages = results.page_iter
            while True:
                page = next(pages)
                reads += 1
                for raw in page.get("Items", []):
                    key = list_key(raw["leased_topic"]["S"], raw["lease_key"]["S"])
                    yield key, raw["task_id"]["S"]
                last = pages.last_evaluated_key
                if last is None:
                    return None
                if reads >= _LIST_READS:
                    return list_key(last["leased_topic"]["S"], last["lease_key"]["S"])

        def accept(item: _TaskItem) -> bool:
            return item.lease_key is not None and (topic is None or item.leased_topic == topic)

        return self._collect(source(), accept, limit)

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
        if statuses is not None and not statuses:
            return Page([], None)  # no status allowed: nothing matches
        m = self._item
        lower, upper = created_range(start, end)
        after_topic: str | None = None
        after_key: str | None = None
        if after is not None:
            after_topic, after_key = split_list_key(after)
            split_time_key(after_key)
        if upper is not None and upper <= lower:
            return Page([], None)
        page_size = min(max(limit + 1, _INDEX_PAGE), 1000)
        if task_group_id is not None or topic is not None:
            low = max(lower, after_key) if after_key is not None else lower
            condition: Condition | None
            if upper is None:
                if after_key is not None and after_key >= lower:
                    condition = m.created_key > after_key
                else:
                    condition = m.created_key >= lower if lower else None
            elif not low:  # a key may not be compared with an empty string
                condition = m.created_key < upper
            else:
                if low > upper:
                    return Page([], None)
                condition = m.created_key.between(low, upper)  # inclusive: ends dropped below
            if task_group_id is not None:
                results = m.by_group.query(task_group_id, condition, page_size=page_size)
            else:
                results = m.by_topic.query(str(topic), condition, page_size=page_size)
        else:
            filters: Condition | None = None
            if lower:
                filters = m.created_key >= lower
            if upper is not None:
                below = m.created_key < upper
                filters = below if filters is None else filters & below
            last_evaluated = None
            if after_key is not None:
                _, after_id = split_time_key(after_key)
                last_evaluated = {
                    "task_id": {"S": after_id},
                    "topic": {"S": str(after_topic)},
                    "created_key": {"S": after_key},
                }
            results = m.by_topic.scan(
                filter_condition=filters, last_evaluated_key=last_evaluated, page_size=page_size
            )

        def source() -> _Source:
            reads = 0
            pages = results.page_iter
            while True:
                page = next(pages)
                reads += 1
                for raw in page.get("Items", []):
                    key = raw["created_key"]["S"]
                    if key == after_key or (upper is not None and key >= upper) or key < lower:
                        continue
                    yield key, raw["task_id"]["S"]  # the page key is the matched item's (below)
                last = pages.last_evaluated_key
                if last is None:
                    return None
                if reads >= _LIST_READS:
                    # A group's index entry lacks the topic; only the scan across topics reads
                    # it back from a page key, and the scan's entries carry it.
                    last_topic = last["topic"]["S"] if "topic" in last else (topic or _NO_TOPIC)
                    return list_key(last_topic, last["created_key"]["S"])

        wanted = set(statuses) if statuses is not None else None

        def accept(item: _TaskItem) -> bool:
            # Re-check every filter on the item: the index is eventually consistent, and only one
            # filter was the index's key.
            return (
                (topic is None or item.topic == topic)
                and (sub_topic is None or item.sub_topic == sub_topic)
                and (task_group_id is None or item.task_group_id == task_group_id)
                and (wanted is None or item.status in wanted)
                and lower <= item.created_key
                and (upper is None or item.created_key < upper)
            )

        return self._collect(source(), accept, limit, page_key=lambda i: list_key(i.topic, i.created_key))

    def by_group(self, task_group_id: str, *, after: str | None, limit: int) -> Page[TaskRecord]:
        return self.list(task_group_id=task_group_id, after=after, limit=limit)

    def count_ready(self, topic: str, now: datetime) -> tuple[int, int]:
        m = self._item
        upper = upper_key(now)
        return m.ready.count(topic, m.ready_key < upper), m.ready.count(topic, m.ready_key > upper)

    def count_leased(self, topic: str, after: datetime) -> int:
        m = self._item
        return m.leased.count(topic, m.lease_key.between(f"{LEASED}#{upper_key(after)}", f"{LEASED}$"))

    def touch_worker(self, topic: str, worker_id: str, at: datetime) -> None:
        t = self._topic
        when = sortable(store_instant(at))
        seen = t.workers[worker_id]
        # Only ever move a worker's time forward (concurrent touches may arrive out of order).
        newer = t.task_id.exists() & (seen.does_not_exist() | (seen < when))
        item = t(_TOPIC_PREFIX + topic)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                item.update([seen.set(when)], condition=newer)  # returns ALL_NEW into `item`
                self._prune(item)
                return
            except UpdateError as e:
                if e.cause_response_code != _CONDITION_FAILED:
                    raise
            current = self._topic_item(topic)
            if current is not None:
                if _workers(current).get(worker_id, "") >= when:
                    return  # the stored time is as new or newer
                continue  # the item appeared after our update: update it
            try:
                t(_TOPIC_PREFIX + topic, workers={worker_id: when}).save(condition=t.task_id.does_not_exist())
                return
            except PutError as e:
                if e.cause_response_code != _CONDITION_FAILED:
                    raise
            _backoff(attempt)  # another worker created the topic item meanwhile: update it

    def workers(self, topic: str) -> dict[str, datetime]:
        item = self._topic_item(topic)
        if item is None:
            return {}
        return {str(k): _parse_sortable(str(v)) for k, v in _workers(item).items()}

    # internals

    def _read(self, task_id: str) -> _TaskItem | None:
        if "#" in task_id:  # never a task id (topic items live under "topic#...")
            return None
        try:
            return self._item.get(task_id, consistent_read=True)
        except self._item.DoesNotExist:
            return None

    def _topic_item(self, topic: str) -> _TopicItem | None:
        try:
            return self._topic.get(_TOPIC_PREFIX + topic, consistent_read=True)
        except self._topic.DoesNotExist:
            return None

    def _prune(self, item: _TopicItem) -> None:
        seen = _workers(item)
        if len(seen) <= MAX_WORKERS:
            return
        parsed = {k: _parse_sortable(v) for k, v in seen.items()}
        keep = keep_recent(parsed)
        t = self._topic
        drop = [t.workers[k].remove() for k in parsed if k not in keep]
        for chunk in (drop[i : i + 50] for i in range(0, len(drop), 50)):
            t(item.task_id).update(chunk)

    def _batch_get(self, task_ids: Iterable[str]) -> dict[str, _TaskItem]:
        ids = [tid for tid in dict.fromkeys(task_ids) if "#" not in tid]
        found: dict[str, _TaskItem] = {}
        for chunk in _chunks(ids, _BATCH_GET_MAX):
            # pynamodb re-sends UnprocessedKeys; items come back in no particular order.
            found.update({i.task_id: i for i in self._item.batch_get(chunk, consistent_read=True)})
        return found

    def _collect(
        self,
        source: _Source,
        accept: Callable[[_TaskItem], bool],
        limit: int,
        page_key: Callable[[_TaskItem], str] | None = None,
    ) -> Page[TaskRecord]:
        """Take candidates in order until limit + 1 are accepted (a next page exists), the source
        ends (no next page) or its read budget does (a short page resuming after what was
        examined). Items are fetched with BatchGetItem, in chunks of what is still needed."""
        matched: list[tuple[str, TaskRecord]] = []
        pending: list[tuple[str, str]] = []
        resume: str | None = None
        while True:
            done = False
            try:
                pending.append(next(source))
            except StopIteration as stop:
                resume, done = stop.value, True
            if not done and len(pending) < min(_BATCH_GET_MAX, limit + 1 - len(matched)):
                continue
            items = self._batch_get(tid for _, tid in pending)
            for key, tid in pending:
                item = items.get(tid)
                if item is None or not accept(item):
                    continue  # gone since the index was read, moved, or filtered out
                matched.append((page_key(item) if page_key is not None else key, self._record(item)))
                if len(matched) > limit:
                    return Page([r for _, r in matched[:limit]], matched[limit - 1][0])
            pending = []
            if done:
                return Page([r for _, r in matched], resume)

    def _failed(self, rec: TaskRecord, expected_version: int) -> Exception:
        """The error for a failed update condition: re-read to tell NotFound, a moved task
        (ValueError, as in the memory store) and Conflict apart."""
        cur = self._read(rec.task_id)
        if cur is None:
            return NotFound(f"task/{rec.task_id}")
        if cur.topic != rec.topic:
            return ValueError(f"task/{rec.task_id}: the topic cannot change")
        return conflict_task(rec.task_id, json.loads(cur.doc), int(cur.record_version), expected_version)

    @staticmethod
    def _record(item: _TaskItem) -> TaskRecord:
        created_at, _ = split_time_key(item.created_key)
        return TaskRecord(
            task_id=item.task_id,
            topic=item.topic,
            doc=json.loads(item.doc),
            status=item.status,
            created_at=created_at,
            sub_topic=item.sub_topic,
            task_group_id=item.task_group_id,
            ready_at=split_time_key(item.ready_key)[0] if item.ready_key else None,
            held_until=split_lease_key(item.lease_key)[1] if item.lease_key else None,
            expires_at=item.expires_at,
            record_version=int(item.record_version),
        )


def _workers(item: _TopicItem) -> dict[str, str]:
    raw = item.workers.as_dict() if item.workers is not None else {}
    return {str(k): str(v) for k, v in raw.items()}


def _parse_sortable(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
