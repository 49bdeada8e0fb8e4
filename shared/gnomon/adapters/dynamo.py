# pynamodb leaves Index.__init_subclass__, MapAttribute() and as_dict() untyped.
# mypy: disable-error-code="no-untyped-call"
"""DynamoDB stores (pynamodb), held to the same contract suite as `gnomon.adapters.memory`.

Tables (names from env at runtime; the SAM template declares the same keys and indexes):

- catalog `GNOMON_CATALOG_TABLE`: `pk` = "<kind>#<name>", `sk` = "cur" (the current version,
  carrying `kind` and `name` for the `by_kind` GSI, and the `incarnation` it belongs to) or
  "v#<incarnation 10 digits>#<version 10 digits>" (the audit copy of each version, e.g.
  "v#0000000002#0000000001"). Every create/replace writes both in ONE TransactWriteItems. A create
  starts at version 1 in a new incarnation: 1 for a name never seen, else the incarnation of the
  newest audit item + 1 (the name was deleted), so a re-created name keeps its whole history.
- schedules `GNOMON_SCHEDULES_TABLE`: `schedule_id`; sparse `due` GSI on (`due_shard`,
  `due_key` = "<sortable next_fire_at>#<schedule_id>"), KEYS_ONLY GSIs `by_kind`,
  `by_definition`, `by_group` (list → query the index, then BatchGetItem the items).
- requests `GNOMON_REQUESTS_TABLE`: `pk`; `expires_at` (epoch seconds) is the TTL attribute.

Storage choices: `doc` is a JSON string (exact round trip of ints/floats/nulls/key order, no
DynamoDB type mapping to drift from the in-memory fake); schedule counters are a map attribute
`counters` (created empty with the item) updated with `SET counters.#n =
if_not_exists(counters.#n, 0) + :d`, which is atomic and valid on nested paths.

Versions: plain `NumberAttribute` plus explicit `version = :v` / `attribute_exists` conditions,
not pynamodb's `VersionAttribute`: that one appends a version increment to *every* update (an
`add_counters` must not change the version) and cannot be switched off in `TransactWrite.save`
(the audit item is a put with its own condition). Unconditional writes never lose an increment:
a schedule update does `ADD version 1` atomically; a catalog replace re-reads and retries on the
(incarnation, version) it read — the condition pins both, so a replace racing a delete and
re-create never files its audit copy under the old incarnation.
"""

from __future__ import annotations

import builtins
import json
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast

from pynamodb.attributes import (
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from gnomon.adapters.memory import (
    DEFAULT_SHARDS,
    check_limit,
    check_schedule,
    conflict_current,
    due_key,
    due_upper_bound,
    epoch_seconds,
    parse_due_key,
    parse_version_key,
    shard_of,
    store_instant,
    version_key,
)
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.ports import JSON, CatalogRecord, DueEntry, Page, RequestEntry, ScheduleRecord

__all__ = ["DynamoCatalogStore", "DynamoRequestLog", "DynamoScheduleStore", "shard_of"]

CATALOG_TABLE_ENV = "GNOMON_CATALOG_TABLE"
SCHEDULES_TABLE_ENV = "GNOMON_SCHEDULES_TABLE"
REQUESTS_TABLE_ENV = "GNOMON_REQUESTS_TABLE"
SHARDS_ENV = "GNOMON_DUE_SHARDS"

_CONDITION_FAILED = "ConditionalCheckFailedException"
# A single-item write that meets an in-flight transaction on the same item (real DynamoDB only).
_TRANSACTION_CONFLICT = "TransactionConflictException"
# Cancellation reasons of a TransactWriteItems that mean "look again", not "broken request".
_RETRYABLE_REASONS = {"ConditionalCheckFailed", "TransactionConflict"}
_MAX_ATTEMPTS = 50
_BATCH_GET_MAX = 100

M = TypeVar("M", bound=Model)


# --- wiring ---------------------------------------------------------------------------------------


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None


def _region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _table(table_name: str | None, env: str) -> str:
    name = table_name or os.environ.get(env)
    if not name:
        raise RuntimeError(f"no table name given and {env} is not set")
    return name


def _bind(base: type[M], table_name: str) -> type[M]:
    """A subclass of `base` bound to `table_name` and to the endpoint/region in the environment
    now: table names are only known at runtime, and each store gets its own connection."""
    meta: dict[str, Any] = {"table_name": table_name, "host": _endpoint()}
    if (region := _region()) is not None:
        meta["region"] = region
    name = base.__name__.lstrip("_")
    return cast(type[M], type(name, (base,), {"Meta": type("Meta", (), meta), "__module__": __name__}))


def _connection() -> Connection:
    """A bare connection for TransactWriteItems (the items carry their own table names)."""
    return Connection(region=_region(), host=_endpoint())


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Cancelled(Exception):
    """A transaction cancelled by a failed condition or a concurrent transaction."""


def _transact(connection: Connection, puts: list[tuple[Model, Condition]]) -> None:
    try:
        with TransactWrite(connection=connection) as tx:
            for item, condition in puts:
                tx.save(item, condition=condition)
    except TransactWriteError as e:
        codes = {r.code for r in e.cancellation_reasons if r is not None}
        if e.cause_response_code == "TransactionCanceledException" and codes <= _RETRYABLE_REASONS:
            raise _Cancelled() from e
        raise


# --- catalog ------------------------------------------------------------------------------------


class _CatalogByKind(GlobalSecondaryIndex["_CatalogItem"]):
    class Meta:
        index_name = "by_kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute(range_key=True)


class _CatalogItem(Model):
    """A catalog item: the current version (sk "cur") or an audit copy
    (sk "v#<incarnation 10 digits>#<version 10 digits>")."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(null=True)  # "cur" only: keeps audit copies out of by_kind
    name = UnicodeAttribute(null=True)
    incarnation = NumberAttribute(null=True)  # "cur" only (an audit copy has it in its sk)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    tags = UnicodeSetAttribute(null=True)
    by_kind = _CatalogByKind()


_CURRENT = "cur"
_VERSION_PREFIX = "v#"
# Bounds of every audit sort key ("cur" sorts below "v#", so audit ranges are bounded on both sides).
_AUDIT_LOW = _VERSION_PREFIX + version_key(0, 0)
_AUDIT_HIGH = _VERSION_PREFIX + version_key(9_999_999_999, 9_999_999_999)


def _version_sk(incarnation: int, version: int) -> str:
    return _VERSION_PREFIX + version_key(incarnation, version)


class DynamoCatalogStore:
    """`CatalogStore` on one table; see the module docstring for the item layout."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = _table(table_name, CATALOG_TABLE_ENV)
        self._item = _bind(_CatalogItem, self.table_name)
        self._connection = _connection()

    def create(self, kind: str, name: str, doc: JSON, *, tags: list[str] | None = None) -> CatalogRecord:
        body = json.dumps(doc)
        item = self._item
        for attempt in range(_MAX_ATTEMPTS):
            # A name deleted before starts a new incarnation, so its audit trail stays whole.
            latest = self._latest_audit(kind, name)
            incarnation = latest[0] + 1 if latest is not None else 1
            try:
                self._write(kind, name, body, incarnation, 1, tags, item.pk.does_not_exist())
                return CatalogRecord(kind, name, json.loads(body), 1)
            except _Cancelled:
                if self._read(kind, name) is not None:
                    raise AlreadyExists(
                        f"{kind}/{name} already exists", {"resource": f"{kind}/{name}"}
                    ) from None
                _backoff(attempt)  # a concurrent create+delete took our incarnation: renumber
        raise Conflict(f"{kind}/{name}: too much contention", current=None)

    def get(self, kind: str, name: str) -> CatalogRecord:
        cur = self._read(kind, name)
        if cur is None:
            raise NotFound(f"{kind}/{name}")
        return self._record(kind, name, cur)

    def replace(
        self, kind: str, name: str, doc: JSON, *, expected_version: int | None, tags: list[str] | None = None
    ) -> CatalogRecord:
        body = json.dumps(doc)
        item = self._item
        # The audit key needs the incarnation, so read the current item first (which also turns
        # a stale `expected_version` into a Conflict without a write).
        cur = self._current_as_expected(kind, name, expected_version)
        for attempt in range(_MAX_ATTEMPTS):
            base, incarnation = int(cur.version), _incarnation(cur)
            condition = (item.version == base) & (item.incarnation == incarnation)
            try:
                self._write(kind, name, body, incarnation, base + 1, tags, condition)
                return CatalogRecord(kind, name, json.loads(body), base + 1)
            except _Cancelled:
                pass
            cur = self._current_as_expected(kind, name, expected_version)
            _backoff(attempt)  # lost a race (expected None), met a concurrent transaction or a re-create
        raise Conflict(f"{kind}/{name}: too much contention", current=None)

    def delete(self, kind: str, name: str, *, expected_version: int | None = None) -> None:
        item = self._item
        condition = item.pk.exists() if expected_version is None else item.version == expected_version
        for attempt in range(_MAX_ATTEMPTS):
            try:
                item(_pk(kind, name), _CURRENT).delete(condition=condition)
                return
            except DeleteError as e:
                if e.cause_response_code == _TRANSACTION_CONFLICT:
                    _backoff(attempt)
                    continue
                if e.cause_response_code != _CONDITION_FAILED:
                    raise
            cur = self._read(kind, name) if expected_version is not None else None
            if cur is None:
                raise NotFound(f"{kind}/{name}")
            raise self._conflict(kind, name, cur, expected_version)
        raise Conflict(f"{kind}/{name}: too much contention", current=None)

    def list(
        self, kind: str, *, after: str | None, limit: int, tag: str | None = None
    ) -> Page[CatalogRecord]:
        check_limit(limit)
        item = self._item
        # limit + 1 tells whether a next page exists; with a tag filter pynamodb keeps reading
        # pages until it has that many matches, so pages are full whenever more items exist.
        found = list(
            item.by_kind.query(
                kind,
                item.name > after if after is not None else None,
                filter_condition=item.tags.contains(tag) if tag is not None else None,
                limit=limit + 1,
            )
        )
        records = [self._record(kind, str(i.name), i) for i in found[:limit]]
        return Page(records, records[-1].name if len(found) > limit else None)

    def versions(self, kind: str, name: str, *, after: str | None, limit: int) -> Page[CatalogRecord]:
        check_limit(limit)
        item = self._item
        skip: str | None = None
        if after is not None:
            skip = _version_sk(*parse_version_key(after))
        # "cur" sorts below "v#...", so the range is bounded on both sides. BETWEEN is inclusive:
        # the `after` item itself comes back first, so ask one more and drop it.
        found = [
            i
            for i in item.query(
                _pk(kind, name),
                item.sk.between(_AUDIT_LOW, skip if skip is not None else _AUDIT_HIGH),
                scan_index_forward=False,
                consistent_read=True,
                limit=limit + 1 if skip is None else limit + 2,
            )
            if i.sk != skip
        ][: limit + 1]
        if not found and self._latest_audit(kind, name) is None:
            raise NotFound(f"{kind}/{name}")
        records = [self._record(kind, name, i) for i in found[:limit]]
        last_key = found[limit - 1].sk.removeprefix(_VERSION_PREFIX) if len(found) > limit else None
        return Page(records, last_key)

    # internals

    def _write(
        self,
        kind: str,
        name: str,
        body: str,
        incarnation: int,
        version: int,
        tags: builtins.list[str] | None,
        condition: Condition,
    ) -> None:
        item = self._item
        tag_set = set(tags) if tags else None
        current = item(
            _pk(kind, name),
            _CURRENT,
            kind=kind,
            name=name,
            incarnation=incarnation,
            doc=body,
            version=version,
            tags=tag_set,
        )
        audit = item(
            _pk(kind, name), _version_sk(incarnation, version), doc=body, version=version, tags=tag_set
        )
        _transact(self._connection, [(current, condition), (audit, item.pk.does_not_exist())])

    def _read(self, kind: str, name: str) -> _CatalogItem | None:
        try:
            return self._item.get(_pk(kind, name), _CURRENT, consistent_read=True)
        except self._item.DoesNotExist:
            return None

    def _current_as_expected(self, kind: str, name: str, expected_version: int | None) -> _CatalogItem:
        """The current item; `NotFound` if absent, `Conflict` if not at `expected_version`."""
        cur = self._read(kind, name)
        if cur is None:
            raise NotFound(f"{kind}/{name}")
        if expected_version is not None and int(cur.version) != expected_version:
            raise self._conflict(kind, name, cur, expected_version)
        return cur

    def _latest_audit(self, kind: str, name: str) -> tuple[int, int] | None:
        """(incarnation, version) of the newest audit item; None if the name never existed."""
        item = self._item
        query = item.query(
            _pk(kind, name),
            item.sk.startswith(_VERSION_PREFIX),
            scan_index_forward=False,
            consistent_read=True,
            limit=1,
        )
        latest = next(iter(query), None)
        return parse_version_key(latest.sk.removeprefix(_VERSION_PREFIX)) if latest is not None else None

    @staticmethod
    def _record(kind: str, name: str, item: _CatalogItem) -> CatalogRecord:
        return CatalogRecord(kind, name, json.loads(item.doc), int(item.version))

    @staticmethod
    def _conflict(kind: str, name: str, cur: _CatalogItem, expected: int | None) -> Conflict:
        return Conflict(
            f"{kind}/{name} is at version {int(cur.version)}, not {expected}",
            current=conflict_current(json.loads(cur.doc), int(cur.version)),
        )


def _pk(kind: str, name: str) -> str:
    return f"{kind}#{name}"


def _incarnation(cur: _CatalogItem) -> int:
    if cur.incarnation is None:  # written before incarnations existed: rebuild the local state
        raise RuntimeError(f"catalog item {cur.pk} has no incarnation")
    return int(cur.incarnation)


# --- schedules ----------------------------------------------------------------------------------


class _DueIndex(GlobalSecondaryIndex["_ScheduleItem"]):
    class Meta:
        index_name = "due"
        projection = KeysOnlyProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_key = UnicodeAttribute(range_key=True)


class _ScheduleByKind(GlobalSecondaryIndex["_ScheduleItem"]):
    class Meta:
        index_name = "by_kind"
        projection = KeysOnlyProjection()

    kind = UnicodeAttribute(hash_key=True)
    schedule_id = UnicodeAttribute(range_key=True)


class _ScheduleByDefinition(GlobalSecondaryIndex["_ScheduleItem"]):
    class Meta:
        index_name = "by_definition"
        projection = KeysOnlyProjection()

    definition = UnicodeAttribute(hash_key=True)
    schedule_id = UnicodeAttribute(range_key=True)


class _ScheduleByGroup(GlobalSecondaryIndex["_ScheduleItem"]):
    class Meta:
        index_name = "by_group"
        projection = KeysOnlyProjection()

    group = UnicodeAttribute(hash_key=True)
    schedule_id = UnicodeAttribute(range_key=True)


class _ScheduleItem(Model):
    schedule_id = UnicodeAttribute(hash_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    generation = UnicodeAttribute()
    definition = UnicodeAttribute()
    group = UnicodeAttribute()
    kind = UnicodeAttribute(default="schedule")
    due_shard = UnicodeAttribute(null=True)  # both absent when next_fire_at is None: sparse `due`
    due_key = UnicodeAttribute(null=True)
    counters = MapAttribute[str, Any](default=dict)  # raw map: counter name → number

    due = _DueIndex()
    by_kind = _ScheduleByKind()
    by_definition = _ScheduleByDefinition()
    by_group = _ScheduleByGroup()


class DynamoScheduleStore:
    """`ScheduleStore` on one table with a sharded, sparse due index."""

    def __init__(self, table_name: str | None = None, shards: int | None = None) -> None:
        self.table_name = _table(table_name, SCHEDULES_TABLE_ENV)
        self.shards = shards if shards is not None else int(os.environ.get(SHARDS_ENV) or DEFAULT_SHARDS)
        if self.shards < 1:
            raise ValueError("shards must be >= 1")
        self._item = _bind(_ScheduleItem, self.table_name)

    def create(self, rec: ScheduleRecord) -> ScheduleRecord:
        check_schedule(rec)
        item = self._item(
            rec.schedule_id,
            doc=json.dumps(rec.doc),
            version=1,
            generation=rec.generation,
            definition=rec.definition,
            group=rec.group,
            kind="schedule",
            counters={k: int(v) for k, v in rec.counters.items()},
        )
        if rec.next_fire_at is not None:
            item.due_shard = str(shard_of(rec.schedule_id, self.shards))
            item.due_key = due_key(store_instant(rec.next_fire_at), rec.schedule_id)
        try:
            item.save(condition=self._item.schedule_id.does_not_exist())
        except PutError as e:
            if e.cause_response_code == _CONDITION_FAILED:
                raise AlreadyExists(
                    f"schedule/{rec.schedule_id} already exists", {"resource": f"schedule/{rec.schedule_id}"}
                ) from None
            raise
        return self._record(item)

    def get(self, schedule_id: str) -> ScheduleRecord:
        item = self._read(schedule_id)
        if item is None:
            raise NotFound(f"schedule/{schedule_id}")
        return self._record(item)

    def update(self, rec: ScheduleRecord, *, expected_version: int | None) -> ScheduleRecord:
        check_schedule(rec)
        m = self._item
        actions: list[Action] = [
            m.doc.set(json.dumps(rec.doc)),
            m.generation.set(rec.generation),
            m.definition.set(rec.definition),
            m.group.set(rec.group),
            m.version.add(1),  # atomic: concurrent unconditional updates never lose an increment
        ]
        if rec.next_fire_at is not None:
            actions += [
                m.due_shard.set(str(shard_of(rec.schedule_id, self.shards))),
                m.due_key.set(due_key(store_instant(rec.next_fire_at), rec.schedule_id)),
            ]
        else:
            actions += [m.due_shard.remove(), m.due_key.remove()]
        condition = m.schedule_id.exists() if expected_version is None else m.version == expected_version
        item = m(rec.schedule_id)
        try:
            item.update(actions, condition=condition)  # returns ALL_NEW into `item`
        except UpdateError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise
            raise self._failed(rec.schedule_id, expected_version) from None
        return self._record(item)

    def delete(self, schedule_id: str, *, expected_version: int | None = None) -> None:
        m = self._item
        condition = m.schedule_id.exists() if expected_version is None else m.version == expected_version
        try:
            m(schedule_id).delete(condition=condition)
        except DeleteError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise
            raise self._failed(schedule_id, expected_version) from None

    def list(
        self, *, after: str | None, limit: int, group: str | None = None, definition: str | None = None
    ) -> Page[ScheduleRecord]:
        check_limit(limit)
        m = self._item
        index: _ScheduleByGroup | _ScheduleByDefinition | _ScheduleByKind
        if group is not None:
            index, hash_key = m.by_group, group
        elif definition is not None:
            index, hash_key = m.by_definition, definition
        else:
            index, hash_key = m.by_kind, "schedule"
        size = min(limit + 1, _BATCH_GET_MAX)
        keys = index.query(hash_key, m.schedule_id > after if after is not None else None, page_size=size)
        matched: list[ScheduleRecord] = []
        for chunk in _chunks((k.schedule_id for k in keys), size):
            items = self._batch_get(chunk)
            for sid in chunk:
                item = items.get(sid)
                # Re-check both filters on the item itself: GSIs are eventually consistent, and
                # with group and definition both given only one of them was the index's key.
                if item is None or (group is not None and item.group != group):
                    continue
                if definition is not None and item.definition != definition:
                    continue
                matched.append(self._record(item))
                if len(matched) > limit:
                    return Page(matched[:limit], matched[limit - 1].schedule_id)
        return Page(matched, None)

    def ids_using_definition(self, definition: str, *, limit: int) -> builtins.list[str]:
        if limit < 1:
            return []
        return [k.schedule_id for k in self._item.by_definition.query(definition, limit=limit)]

    def due(
        self, shard: int, until: datetime, *, limit: int, after: DueEntry | None = None
    ) -> builtins.list[DueEntry]:
        check_limit(limit)
        m = self._item
        upper = due_upper_bound(until)
        condition: Condition
        skip: str | None = None
        if after is None:
            condition = m.due_key < upper
        else:
            skip = due_key(store_instant(after.next_fire_at), after.schedule_id)
            if skip >= upper:
                return []
            # BETWEEN is inclusive: `after` itself may come back, so ask one more and drop it.
            condition = m.due_key.between(skip, upper)
        keys = m.due.query(str(shard), condition, limit=limit if skip is None else limit + 1)
        return [parse_due_key(k.due_key) for k in keys if k.due_key != skip][:limit]

    def add_counters(self, schedule_id: str, deltas: Mapping[str, int]) -> None:
        if not deltas:
            return
        m = self._item
        actions: list[Action] = []
        for name, delta in deltas.items():
            path = m.counters[name]
            actions.append(path.set((path | 0) + int(delta)))
        try:
            m(schedule_id).update(actions, condition=m.schedule_id.exists())
        except UpdateError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise  # a missing schedule is a no-op; anything else is not

    # internals

    def _read(self, schedule_id: str) -> _ScheduleItem | None:
        try:
            return self._item.get(schedule_id, consistent_read=True)
        except self._item.DoesNotExist:
            return None

    def _batch_get(self, ids: builtins.list[str]) -> dict[str, _ScheduleItem]:
        # pynamodb's batch_get sends at most 100 keys per BatchGetItem and re-sends
        # UnprocessedKeys until none are left; it returns items in no particular order.
        return {i.schedule_id: i for i in self._item.batch_get(ids, consistent_read=True)}

    def _failed(self, schedule_id: str, expected_version: int | None) -> Exception:
        """The domain error for a failed condition: re-read to tell NotFound from Conflict."""
        cur = self._read(schedule_id) if expected_version is not None else None
        if cur is None:
            return NotFound(f"schedule/{schedule_id}")
        return Conflict(
            f"schedule/{schedule_id} is at version {int(cur.version)}, not {expected_version}",
            current=conflict_current(json.loads(cur.doc), int(cur.version)),
        )

    @staticmethod
    def _record(item: _ScheduleItem) -> ScheduleRecord:
        counters = item.counters.as_dict() if item.counters is not None else {}
        return ScheduleRecord(
            schedule_id=item.schedule_id,
            doc=json.loads(item.doc),
            generation=item.generation,
            definition=item.definition,
            group=item.group,
            next_fire_at=parse_due_key(item.due_key).next_fire_at if item.due_key else None,
            version=int(item.version),
            counters={str(k): int(v) for k, v in counters.items()},
        )


# --- request log --------------------------------------------------------------------------------


class _RequestItem(Model):
    pk = UnicodeAttribute(hash_key=True)
    fingerprint = UnicodeAttribute()
    status = NumberAttribute(null=True)  # absent while the first call is in progress
    body = UnicodeAttribute(null=True)  # JSON
    expires_at = TTLAttribute()


class DynamoRequestLog:
    """`RequestLog` on one table. `expires_at` is the TTL attribute (epoch seconds): DynamoDB
    deletes an expired claim eventually (typically within two days), and until then `claim`
    treats it as absent by comparing it with the caller's `now` in its condition."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = _table(table_name, REQUESTS_TABLE_ENV)
        self._item = _bind(_RequestItem, self.table_name)

    def claim(
        self, key: str, fingerprint: str, *, now: datetime, expires_at: datetime
    ) -> RequestEntry | None:
        m = self._item
        now_s = epoch_seconds(now)
        # `expires_at < now`, both serialised by TTLAttribute as whole epoch seconds (the memory
        # store compares the same numbers).
        absent = m.pk.does_not_exist() | (m.expires_at < now)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                m(key, fingerprint=fingerprint, expires_at=expires_at).save(condition=absent)
                return None
            except PutError as e:
                if e.cause_response_code != _CONDITION_FAILED:
                    raise
            try:
                existing = m.get(key, consistent_read=True)
            except m.DoesNotExist:
                _backoff(attempt)  # released between our put and our read: claim again
                continue
            if epoch_seconds(existing.expires_at) < now_s:
                _backoff(attempt)  # replaced by an already expired claim meanwhile: claim again
                continue
            body = json.loads(existing.body) if existing.body is not None else None
            status = int(existing.status) if existing.status is not None else None
            return RequestEntry(key, existing.fingerprint, status, body)
        raise Conflict(f"request/{key}: too much contention", current=None)

    def complete(self, key: str, status: int, body: Any) -> None:
        """Store the answer; a claim that is gone (released, expired) is left gone."""
        m = self._item
        try:
            m(key).update([m.status.set(status), m.body.set(json.dumps(body))], condition=m.pk.exists())
        except UpdateError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise

    def release(self, key: str) -> None:
        """Forget an in-progress claim; a completed one keeps its answer."""
        m = self._item
        try:
            m(key).delete(condition=m.status.does_not_exist())
        except DeleteError as e:
            if e.cause_response_code != _CONDITION_FAILED:
                raise
