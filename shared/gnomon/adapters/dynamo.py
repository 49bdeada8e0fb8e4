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
- runs `GNOMON_RUNS_TABLE`: `pk` = "s#<schedule_id>" (runs of a schedule) or "d#<definition>"
  (runs without one), `sk` = "r#<sortable nominal_time>#<run_id>", so a schedule's runs list
  newest first from its partition. A scheduled firing's id (`gnomon.domain.runs`) encodes its key:
  one conditional put creates it. Any other id also gets a pointer item (`pk` = "id#<run_id>",
  `sk` = "ptr", `run_pk`, `run_sk`), put with the run in ONE TransactWriteItems, both conditional
  on absence: that makes every run id unique. GSIs: `by_time` on (`time_shard` = CRC-32 of the
  run id mod 4, `time_key` = "<sortable nominal_time>#<run_id>"), projecting `definition` (never
  `status`, which changes), for lists across schedules (the 4 shards merged newest first); sparse
  KEYS_ONLY `active` on (`active_shard`, `active_key` = "<sortable active_at>#<run_id>"), absent
  until the run is first active (a run held by its worker batch has none); a closed run keeps its entry, marked
  `active_done` on the item (no index delete: the sweep passes it by its per-shard floor item,
  pk "sweep#<shard>"); sparse `failures` on (`failure_shard` = "<status>#<time shard>",
  `failure_key` = the time key), projecting `definition`, present only while the run is `failed`
  or `timed_out` — rare statuses a list across schedules would otherwise find by reading every
  newer run (`?status=failed`); a run enters it when it closes so and leaves it on a retry, so
  runs that complete never cost it a write. `expires_at` (epoch seconds) is the TTL attribute.
  Items of other kinds share the table without index attributes: the plan log's (pk
  "plan#<day>", `gnomon.adapters.planlog_dynamo`) and worker batches' holds (pk "hold#<n>").
  **Batch pages**: a worker batch's firings are listed across schedules by one *page* item
  instead of a `by_time` entry each (an index write unit per run): pk "page#<id>", sk "page",
  `entries` (a JSON list of [run id, definition or null]: the ids encode the runs' keys, the
  definitions let a list of one definition skip the others unread), in the `pages` GSI on
  (`page_shard` = CRC-32 of the id mod 4, `page_key` = the newest entry's time key + "~<id>",
  so it sorts at or above every entry it holds) projecting `entries`. It is written when the
  batch creates its first run (`listed_together`), before that run, and lists every firing of
  the batch — some may never become runs (a duplicate, a history-off definition): a list skips
  entries whose run is not there, as it skips runs deleted since their index entry was read.
  The runs it lists are created without `time_shard` (so outside `by_time`); a run is listed by
  both (a page written but its answer lost) or by two pages (a batch redelivered) at worst, and
  lists merge them once. A page's entries lie within PAGE_SPAN below its key, so a list
  bounded above by a time key reads pages up to PAGE_SPAN above it. A page's TTL is the
  longest retention among its runs' definitions (those the batch's messages name, and its first
  run's) + a day; a run kept longer (a definition not named, or a run that closes days later:
  `page_until` on the item) gets its own `by_time` entry.

Storage choices: `doc` is a JSON string (exact round trip of ints/floats/nulls/key order, no
DynamoDB type mapping to drift from the in-memory fake); schedules and runs keep it
zlib-compressed in `docz` (binary; `pack_doc`), which halves the write units of every write of
those items — the ones made per firing — while `doc` is still read from items written before; schedule counters are a map attribute
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

import bisect
import builtins
import contextlib
import json
import logging
import math
import os
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from pynamodb.attributes import (
    BinaryAttribute,
    MapAttribute,
    NumberAttribute,
    NumberSetAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.pagination import PageIterator
from pynamodb.transactions import TransactWrite

from gnomon.adapters.memory import (
    DEFAULT_SHARDS,
    TIME_SHARDS,
    already_exists_run,
    check_limit,
    check_phase,
    check_run,
    check_run_location,
    check_schedule,
    conflict_current,
    due_key,
    due_upper_bound,
    epoch_seconds,
    hold_key,
    parse_due_key,
    parse_phase_key,
    parse_version_key,
    phase_key,
    phase_shard,
    run_key_range,
    run_partition,
    run_time_key,
    shard_of,
    split_run_time_key,
    store_instant,
    version_key,
)
from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.runs import DURATION_STATUSES, parse_scheduled_run_id, run_duration, start_lateness
from gnomon.domain.timefmt import fmt, parse, sortable
from gnomon.ports import (
    JSON,
    CatalogRecord,
    DueEntry,
    Hold,
    Page,
    PhaseEntry,
    RequestEntry,
    RunRecord,
    RunSample,
    ScheduleRecord,
)

__all__ = ["DynamoCatalogStore", "DynamoRequestLog", "DynamoRunStore", "DynamoScheduleStore", "shard_of"]

CATALOG_TABLE_ENV = "GNOMON_CATALOG_TABLE"
SCHEDULES_TABLE_ENV = "GNOMON_SCHEDULES_TABLE"
REQUESTS_TABLE_ENV = "GNOMON_REQUESTS_TABLE"
RUNS_TABLE_ENV = "GNOMON_RUNS_TABLE"
SHARDS_ENV = "GNOMON_DUE_SHARDS"

_CONDITION_FAILED = "ConditionalCheckFailedException"
# A single-item write that meets an in-flight transaction on the same item (real DynamoDB only).
_TRANSACTION_CONFLICT = "TransactionConflictException"
# Cancellation reasons of a TransactWriteItems that mean "look again", not "broken request".
_RETRYABLE_REASONS = {"ConditionalCheckFailed", "TransactionConflict"}
_MAX_ATTEMPTS = 50
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_ADD_TRIES = 6  # calls of one counter add (each with the SDK's own retries) while throttled
_BATCH_GET_MAX = 100

M = TypeVar("M", bound=Model)
_T = TypeVar("_T")


# --- wiring ---------------------------------------------------------------------------------------


MAX_POOL = 32


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
    # A worker runs a batch's ten records on ten threads (and the dev stack several batches):
    # pynamodb's default pool of 10 connections would be discarded and reopened under that load.
    meta: dict[str, Any] = {"table_name": table_name, "host": _endpoint(), "max_pool_connections": MAX_POOL}
    if (region := _region()) is not None:
        meta["region"] = region
    name = base.__name__.lstrip("_")
    return cast(type[M], type(name, (base,), {"Meta": type("Meta", (), meta), "__module__": __name__}))


def _connection() -> Connection:
    """A bare connection for TransactWriteItems (the items carry their own table names)."""
    return Connection(region=_region(), host=_endpoint(), max_pool_connections=MAX_POOL)


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))  # nosec B311 # retry jitter


_SETTLING_READS = 4


def _settling_read(read: Callable[[], _T]) -> _T:
    """The read that tells whether a write whose answer was lost took effect: tried again
    (after a backoff) when it fails itself — giving up would leave the caller redoing, or
    forgetting, what that write did (counting an action twice, or never)."""
    for attempt in range(_SETTLING_READS):
        try:
            return read()
        except Exception:
            if attempt == _SETTLING_READS - 1:
                raise
            _backoff(attempt + 4)
    raise AssertionError("unreachable")


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _cause_code(e: Exception) -> str | None:
    """The DynamoDB error code behind a pynamodb error (pynamodb's own `cause_response_code`
    raises AttributeError when the cause is not a ClientError, e.g. a read timeout)."""
    response = getattr(getattr(e, "cause", None), "response", None)
    return (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None


class _Cancelled(Exception):
    """A transaction cancelled by a failed condition or a concurrent transaction."""


def _transact(connection: Connection, puts: list[tuple[Model, Condition]]) -> None:
    try:
        with TransactWrite(connection=connection) as tx:
            for item, condition in puts:
                tx.save(item, condition=condition)
    except TransactWriteError as e:
        codes = {r.code for r in e.cancellation_reasons if r is not None}
        if _cause_code(e) == "TransactionCanceledException" and codes <= _RETRYABLE_REASONS:
            raise _Cancelled() from e
        raise


def pack_doc(doc: JSON) -> bytes:
    """A schedule's or run's document as stored: compact JSON, zlib-compressed. A write costs a
    write unit per KB of the whole item (and a counter update rewrites it all): compressed, a
    schedule or a run with its history fits in one unit instead of two or three."""
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def unpack_doc(item: Any) -> JSON:
    """The document of an item (`docz`, or the plain JSON `doc` of items written before)."""
    if getattr(item, "docz", None) is not None:
        return cast(JSON, json.loads(zlib.decompress(item.docz)))
    return cast(JSON, json.loads(item.doc))


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
                if _cause_code(e) == _TRANSACTION_CONFLICT:
                    _backoff(attempt)
                    continue
                if _cause_code(e) != _CONDITION_FAILED:
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


class _PhaseIndex(GlobalSecondaryIndex["_ScheduleItem"]):
    class Meta:
        index_name = "phase"
        projection = IncludeProjection(["phase_plan", "generation", "definition", "group"])

    phase_shard = UnicodeAttribute(hash_key=True)
    phase_key = UnicodeAttribute(range_key=True)


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
    doc = UnicodeAttribute(null=True)  # items written before docz
    docz = BinaryAttribute(null=True, legacy_encoding=False)  # the document, zlib-compressed JSON
    version = NumberAttribute()
    generation = UnicodeAttribute()
    definition = UnicodeAttribute()
    group = UnicodeAttribute()
    kind = UnicodeAttribute(default="schedule")
    due_shard = UnicodeAttribute(null=True)  # both absent when next_fire_at is None: sparse `due`
    due_key = UnicodeAttribute(null=True)
    phase_shard = UnicodeAttribute(null=True)  # both absent when the record has no phase: sparse `phase`
    phase_key = UnicodeAttribute(null=True)
    phase_plan = UnicodeAttribute(null=True)  # JSON, projected into `phase`: the same value writes no index
    counters = MapAttribute[str, Any](default=dict)  # raw map: counter name → number
    write_token = UnicodeAttribute(null=True)  # fresh per update: see `DynamoScheduleStore.update`

    due = _DueIndex()
    phase = _PhaseIndex()
    by_kind = _ScheduleByKind()
    by_definition = _ScheduleByDefinition()
    by_group = _ScheduleByGroup()


class _PhaseMarkItem(Model):
    """The phase index's bookkeeping, in the schedules table under ids no schedule can have
    (names start with a letter or digit): `#periods` lists the periods the ticker scans;
    `#phase/<period>` holds the watermarks of that period's shards (shard → instant), one
    small item per period so that a tick reads and moves each in one request."""

    schedule_id = UnicodeAttribute(hash_key=True)
    periods = NumberSetAttribute(null=True)
    marks = MapAttribute[str, Any](null=True)  # raw map: shard → fmt(instant)


_PERIODS_ID = "#periods"


def _plan_json(plan: list[Any] | None) -> str | None:
    """A phase plan as stored: compact JSON, so an unchanged plan is the same value again."""
    return None if plan is None else json.dumps(plan, separators=(",", ":"))


def _marks_id(period: int) -> str:
    return f"#phase/{period}"


class DynamoScheduleStore:
    """`ScheduleStore` on one table with a sharded, sparse due index and a phase index."""

    def __init__(self, table_name: str | None = None, shards: int | None = None) -> None:
        self.table_name = _table(table_name, SCHEDULES_TABLE_ENV)
        self.shards = shards if shards is not None else int(os.environ.get(SHARDS_ENV) or DEFAULT_SHARDS)
        if self.shards < 1:
            raise ValueError("shards must be >= 1")
        self._item = _bind(_ScheduleItem, self.table_name)
        self._mark = _bind(_PhaseMarkItem, self.table_name)

    def create(self, rec: ScheduleRecord) -> ScheduleRecord:
        check_schedule(rec)
        check_phase(rec)
        item = self._item(
            rec.schedule_id,
            docz=pack_doc(rec.doc),
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
        if rec.phase is not None:
            item.phase_shard = phase_shard(rec.phase[0], shard_of(rec.schedule_id, self.shards))
            item.phase_key = phase_key(rec.phase[1], rec.schedule_id)
            item.phase_plan = _plan_json(rec.phase_plan)
        try:
            item.save(condition=self._item.schedule_id.does_not_exist())
        except PutError as e:
            if _cause_code(e) == _CONDITION_FAILED:
                raise AlreadyExists(
                    f"schedule/{rec.schedule_id} already exists", {"resource": f"schedule/{rec.schedule_id}"}
                ) from None
            raise
        return self._record(item)

    def get(self, schedule_id: str, *, consistent: bool = True) -> ScheduleRecord:
        item = self._read(schedule_id, consistent=consistent)
        if item is None:
            raise NotFound(f"schedule/{schedule_id}")
        return self._record(item)

    def get_many(self, schedule_ids: Iterable[str], *, consistent: bool = True) -> dict[str, ScheduleRecord]:
        ids = list(dict.fromkeys(schedule_ids))
        if not ids:
            return {}
        return {sid: self._record(i) for sid, i in self._batch_get(ids, consistent=consistent).items()}

    def update(
        self, rec: ScheduleRecord, *, expected_version: int | None, counters: Mapping[str, int] | None = None
    ) -> ScheduleRecord:
        check_schedule(rec)
        check_phase(rec)
        m = self._item
        actions: list[Action] = [
            m.docz.set(pack_doc(rec.doc)),
            m.doc.remove(),
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
        if rec.phase is not None:  # the same values again write no index
            actions += [
                m.phase_shard.set(phase_shard(rec.phase[0], shard_of(rec.schedule_id, self.shards))),
                m.phase_key.set(phase_key(rec.phase[1], rec.schedule_id)),
            ]
            plan = _plan_json(rec.phase_plan)
            actions.append(m.phase_plan.set(plan) if plan is not None else m.phase_plan.remove())
        else:
            actions += [m.phase_shard.remove(), m.phase_key.remove(), m.phase_plan.remove()]
        for name, delta in (counters or {}).items():  # same atomic add as add_counters
            path = m.counters[name]
            actions.append(path.set((path | 0) + int(delta)))
        # A token fresh for every write: an answer lost in transit (or an SDK retry failing on the
        # condition its own first try satisfied) must not read as someone else's write — the
        # caller would redo what it already did, e.g. count an action twice.
        token = uuid.uuid4().hex
        actions.append(m.write_token.set(token))
        condition = m.schedule_id.exists() if expected_version is None else m.version == expected_version
        item = m(rec.schedule_id)
        try:
            item.update(actions, condition=condition)  # returns ALL_NEW into `item`
        except UpdateError as e:
            if _cause_code(e) != _CONDITION_FAILED:
                return self._record(self._own_or_raise(rec.schedule_id, token, e))
            cur = self._read(rec.schedule_id)
            if cur is not None and cur.write_token == token:
                return self._record(cur)
            raise self._failed(rec.schedule_id, expected_version) from None
        except Exception as e:
            return self._record(self._own_or_raise(rec.schedule_id, token, e))
        return self._record(item)

    def _own_or_raise(self, schedule_id: str, token: str, error: Exception) -> _ScheduleItem:
        """After an error that does not say whether the write happened: the item if it did."""
        cur = _settling_read(lambda: self._read(schedule_id))
        if cur is not None and cur.write_token == token:
            return cur
        raise error

    def delete(self, schedule_id: str, *, expected_version: int | None = None) -> None:
        m = self._item
        condition = m.schedule_id.exists() if expected_version is None else m.version == expected_version
        try:
            m(schedule_id).delete(condition=condition)
        except DeleteError as e:
            if _cause_code(e) != _CONDITION_FAILED:
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
        # The SDK's retry of an add whose answer was lost finds its own token and is not added twice.
        token = uuid.uuid4().hex
        actions.append(m.write_token.set(token))
        condition = m.schedule_id.exists() & (m.write_token.does_not_exist() | (m.write_token != token))
        for attempt in range(_ADD_TRIES):
            try:
                m(schedule_id).update(actions, condition=condition)
                return
            except UpdateError as e:
                code = _cause_code(e)
                if code == _CONDITION_FAILED:
                    return  # a missing schedule (or our own add, already applied) is a no-op
                if code in _THROTTLED and attempt + 1 < _ADD_TRIES:
                    _backoff(attempt)  # refused, so not applied: the same add again
                    continue
                self._own_or_raise(schedule_id, token, e)
                return
            except Exception as e:
                self._own_or_raise(schedule_id, token, e)
                return

    def phased(
        self, period: int, shard: int, low: int, high: int, *, limit: int, after: PhaseEntry | None = None
    ) -> builtins.list[PhaseEntry]:
        check_limit(limit)
        m = self._item
        lower = phase_key(low, "")
        if after is not None:
            lower = max(lower, phase_key(after.phase, after.schedule_id) + "\x00")  # strictly after
        upper = f"{high:05d}$"  # above every key of phase `high` (`$` follows `#`)
        if lower >= upper:
            return []
        keys = m.phase.query(phase_shard(period, shard), m.phase_key.between(lower, upper), limit=limit)
        return [
            replace(
                parse_phase_key(k.phase_key),
                plan=json.loads(k.phase_plan) if k.phase_plan else None,
                generation=k.generation,
                definition=k.definition,
                group=k.group,
            )
            for k in keys
        ]

    def phase_periods(self) -> builtins.set[int]:
        try:
            item = self._mark.get(_PERIODS_ID, consistent_read=True)
        except self._mark.DoesNotExist:
            return set()
        return {int(p) for p in item.periods or ()}

    def add_phase_period(self, period: int) -> None:
        # The watermarks' item first: a ticker that sees the period moves them in it.
        m = self._mark
        m(_marks_id(period)).update([m.marks.set(m.marks | {})])
        m(_PERIODS_ID).update([m.periods.add({period})])

    def phase_marks(self, periods: Iterable[int]) -> dict[tuple[int, int], datetime]:
        by_id = {_marks_id(p): p for p in periods}
        out: dict[tuple[int, int], datetime] = {}
        for item in self._mark.batch_get(list(by_id), consistent_read=True):
            for shard, mark in (item.marks.as_dict() if item.marks is not None else {}).items():
                out[(by_id[item.schedule_id], int(shard))] = parse(str(mark))
        return out

    def advance_phase_marks(self, period: int, moves: Mapping[int, tuple[datetime | None, datetime]]) -> bool:
        if not moves:
            return True
        m = self._mark
        actions: list[Action] = []
        condition: Condition | None = None
        for shard, (old, new) in moves.items():
            path = m.marks[str(shard)]
            actions.append(path.set(fmt(store_instant(new))))
            check = path.does_not_exist() if old is None else path == fmt(store_instant(old))
            condition = check if condition is None else condition & check
        try:
            m(_marks_id(period)).update(actions, condition=condition)
        except UpdateError as e:
            if _cause_code(e) == _CONDITION_FAILED:
                return False
            raise
        return True

    # internals

    def _read(self, schedule_id: str, *, consistent: bool = True) -> _ScheduleItem | None:
        try:
            return self._item.get(schedule_id, consistent_read=consistent)
        except self._item.DoesNotExist:
            return None

    def _batch_get(self, ids: builtins.list[str], *, consistent: bool = True) -> dict[str, _ScheduleItem]:
        # pynamodb's batch_get sends at most 100 keys per BatchGetItem and re-sends
        # UnprocessedKeys until none are left; it returns items in no particular order.
        return {i.schedule_id: i for i in self._item.batch_get(ids, consistent_read=consistent)}

    def _failed(self, schedule_id: str, expected_version: int | None) -> Exception:
        """The domain error for a failed condition: re-read to tell NotFound from Conflict."""
        cur = self._read(schedule_id) if expected_version is not None else None
        if cur is None:
            return NotFound(f"schedule/{schedule_id}")
        return Conflict(
            f"schedule/{schedule_id} is at version {int(cur.version)}, not {expected_version}",
            current=conflict_current(unpack_doc(cur), int(cur.version)),
        )

    @staticmethod
    def _record(item: _ScheduleItem) -> ScheduleRecord:
        counters = item.counters.as_dict() if item.counters is not None else {}
        return ScheduleRecord(
            schedule_id=item.schedule_id,
            doc=unpack_doc(item),
            generation=item.generation,
            definition=item.definition,
            group=item.group,
            next_fire_at=parse_due_key(item.due_key).next_fire_at if item.due_key else None,
            version=int(item.version),
            counters={str(k): int(v) for k, v in counters.items()},
            phase=(
                (int(item.phase_shard.partition("/")[0]), parse_phase_key(item.phase_key).phase)
                if item.phase_shard and item.phase_key
                else None
            ),
            phase_plan=json.loads(item.phase_plan) if item.phase_shard and item.phase_plan else None,
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
                if _cause_code(e) != _CONDITION_FAILED:
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
            if _cause_code(e) != _CONDITION_FAILED:
                raise

    def release(self, key: str) -> None:
        """Forget an in-progress claim; a completed one keeps its answer."""
        m = self._item
        try:
            m(key).delete(condition=m.status.does_not_exist())
        except DeleteError as e:
            if _cause_code(e) != _CONDITION_FAILED:
                raise


# --- runs ---------------------------------------------------------------------------------------


class _RunByTime(GlobalSecondaryIndex["_RunItem"]):
    class Meta:
        index_name = "by_time"
        # Never `status`: a projected attribute that changes costs an index write per change.
        projection = IncludeProjection(["definition"])

    time_shard = UnicodeAttribute(hash_key=True)
    time_key = UnicodeAttribute(range_key=True)


class _RunFailures(GlobalSecondaryIndex["_RunItem"]):
    class Meta:
        index_name = "failures"
        projection = IncludeProjection(["definition"])

    failure_shard = UnicodeAttribute(hash_key=True)
    failure_key = UnicodeAttribute(range_key=True)


class _RunActive(GlobalSecondaryIndex["_RunItem"]):
    class Meta:
        index_name = "active"
        projection = KeysOnlyProjection()

    active_shard = UnicodeAttribute(hash_key=True)
    active_key = UnicodeAttribute(range_key=True)


class _RunItem(Model):
    """A run: pk "s#<schedule_id>" or "d#<definition>", sk "r#<sortable nominal>#<run_id>"."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute(null=True)  # items written before docz
    docz = BinaryAttribute(null=True, legacy_encoding=False)  # the document, zlib-compressed JSON
    version = NumberAttribute()
    run_id = UnicodeAttribute()
    definition = UnicodeAttribute()
    status = UnicodeAttribute()
    schedule_id = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)
    time_shard = UnicodeAttribute(null=True)  # str(shard_of(run_id, TIME_SHARDS)); absent: on a page
    time_key = UnicodeAttribute()  # "<sortable nominal>#<run_id>" (= sk without "r#")
    active_shard = UnicodeAttribute(null=True)  # both absent until the run is first active
    active_key = UnicodeAttribute(null=True)  # "<sortable active_at>#<run_id>"
    # 1 when the run is no longer active (closed): its `active` entry stays where it was, as
    # removing it would cost an index delete per run; the sweep passes over it (`active`).
    active_done = NumberAttribute(null=True)
    # "<scheduled - nominal ms>:<start lateness ms>" once the run started, "-" before: the
    # lateness metric reads this instead of the document (`run_samples`); absent on items
    # written before it existed.
    lt = UnicodeAttribute(null=True)
    # "<duration_ms>" once an attempt closed (the document's `duration_ms`), "-" before; the
    # run metrics' duration histogram reads it with `lt` and `status` (`run_samples`); absent on
    # items written before it existed (then a closed run's document is read). An attribute of
    # its own rather than a third field of `lt`: Lambdas still running the previous code during
    # a deploy parse `lt` as "<int>:<float>" and would fail on items the new code wrote.
    du = UnicodeAttribute(null=True)
    # A run on a batch page (no `time_shard`): the epoch second its page expires. A close that
    # keeps the run longer (it ran for days) gives it a `by_time` entry of its own.
    page_until = NumberAttribute(null=True)
    failure_shard = UnicodeAttribute(null=True)  # "<status>#<time shard>" while failed/timed_out
    failure_key = UnicodeAttribute(null=True)  # = time_key; both absent otherwise: sparse
    # A token fresh for every write, so a writer can tell its own write from another's when the
    # answer was lost: a response lost in transit (the error it gets is ambiguous) or one the
    # SDK retried, whose retry then fails on the condition its first try already satisfied.
    write_token = UnicodeAttribute(null=True)

    by_time = _RunByTime()
    active = _RunActive()
    failures = _RunFailures()


class _SweepFloor(Model):
    """How far the sweep has passed over one `active` shard: pk "sweep#<shard>", sk "floor";
    every entry below `floor` is a run that is no longer active (or moved since)."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    floor = UnicodeAttribute()


class _HoldItem(Model):
    """A worker batch's hold on its runs: pk "hold#<n>", sk the hold id ("<sortable until>#<hex>")."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    run_ids = UnicodeAttribute()  # JSON list
    expires_at = TTLAttribute()


class _RunPages(GlobalSecondaryIndex["_PageItem"]):
    class Meta:
        index_name = "pages"
        projection = IncludeProjection(["entries"])

    page_shard = UnicodeAttribute(hash_key=True)
    page_key = UnicodeAttribute(range_key=True)


class _PageItem(Model):
    """A worker batch's runs, listed across schedules: pk "page#<id>", sk "page"."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    page_shard = UnicodeAttribute()
    page_key = UnicodeAttribute()  # "<newest entry's time key>~<id>"
    entries = UnicodeAttribute()  # JSON [[run id, definition or null], …] (run ids encode their keys)
    expires_at = TTLAttribute()

    pages = _RunPages()


@dataclass
class _BatchPage:
    """One worker batch's page, written at its first run (`DynamoRunStore.listed_together`)."""

    run_ids: tuple[str, ...]
    retention_of: Callable[[str], int]  # a definition's run retention in days
    definitions: dict[str, str]  # run id -> its definition, where the batch's message named it
    lock: threading.Lock = field(default_factory=threading.Lock)
    expires_at: datetime | None = None  # its TTL, once written
    failed: bool = False
    retention: int = 0  # the days its TTL keeps it: runs kept longer get a `by_time` entry


class _RunPointer(Model):
    """Where a run whose id does not encode its location lives: pk "id#<run_id>", sk "ptr"."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    run_pk = UnicodeAttribute()
    run_sk = UnicodeAttribute()


_RUN_SK_PREFIX = "r#"
_PAGE_SK = "page"
PAGE_SHARDS = 4
PAGE_SPAN = timedelta(hours=1)  # a page's entries lie at most this far below its key
_PAGE_MAX = 100  # entries a page holds at most (~5 KB)
_PAGE_KEPT = timedelta(days=1)  # a page outlives the runs it lists by this much
_POINTER_SK = "ptr"
_FLOOR_SK = "floor"
_HOLD_SHARDS = 4  # partitions of the holds: a put and a delete per worker batch each
_HOLD_KEPT = timedelta(days=7)  # TTL of a hold nobody released nor swept (a sweep deletes it)
# The sweep's floor stays this far behind the instant it swept to: an index entry written just
# before (GSI propagation, clocks of other Lambdas) is still read by the next sweep.
SWEEP_MARGIN_SECONDS = 5.0
# `active` index entries one `active` call examines at most (stale ones included).
_ACTIVE_EXAMINE = 2000
# The floor is written once this many stale entries lie below its new place: re-reading fewer
# (half a read unit each) costs less than the write (a write unit is five read units). In
# between, the process keeps its own floor: a new process re-reads what lies above the written one.
FLOOR_WRITE_AFTER = 10
# Query calls one `list` may make before it returns a short page (whose `last_key` resumes
# after everything examined): filters may reject most of a partition, and a list must not read
# all of it in one request.
_LIST_READS = 16
# Items a filtered list asks per Query page (an unfiltered one asks limit + 1; across schedules,
# each `by_time` shard its share of it: (limit + 1) × _SHARD_SPARE / TIME_SHARDS + _SHARD_MARGIN).
_FILTERED_PAGE = 100
_SHARD_SPARE = 1.25
_SHARD_MARGIN = 8


FAILURE_STATUSES = frozenset({"failed", "timed_out"})
"""The statuses the sparse `failures` index holds."""


def _failure_keys(rec: RunRecord) -> tuple[str, str] | None:
    """(`failure_shard`, `failure_key`) of a run in the `failures` index; None = not in it."""
    if rec.status not in FAILURE_STATUSES:
        return None
    shard = f"{rec.status}#{shard_of(rec.run_id, TIME_SHARDS)}"
    return shard, run_time_key(store_instant(rec.nominal_time), rec.run_id)


def _run_location(rec: RunRecord) -> tuple[str, str]:
    """(pk, sk) of a run item."""
    return run_partition(rec.schedule_id, rec.definition), _RUN_SK_PREFIX + run_time_key(
        store_instant(rec.nominal_time), rec.run_id
    )


def _scheduled_time_key(run_id: str) -> str:
    """The time key of a scheduled firing's run id (which encodes its nominal time)."""
    parsed = parse_scheduled_run_id(run_id)
    assert parsed is not None
    return run_time_key(store_instant(parsed[2]), run_id)


def _page_entries(raw: Any, definition: str | None = None) -> Iterator[_Candidate]:
    """The runs a page item (as a Query returned it) lists, as candidates to BatchGet; with
    `definition`, not those the page knows to be another definition's."""
    for entry in json.loads(raw["entries"]["S"]):
        run_id, of = (entry, None) if isinstance(entry, str) else (entry[0], entry[1])
        parsed = parse_scheduled_run_id(run_id)
        if parsed is None or (definition is not None and of is not None and of != definition):
            continue
        key = run_time_key(store_instant(parsed[2]), run_id)
        yield _Candidate(key, run_partition(parsed[0], ""), _RUN_SK_PREFIX + key, None)


def _page_upper(upper: str) -> str:
    """The page keys that may hold entries below `upper` are below this."""
    width = len("2000-01-01T00:00:00.000Z")  # the fixed-width time part of a time key
    when = datetime.strptime(upper[:width], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return sortable(when + PAGE_SPAN) + "#"


def _pointer_pk(run_id: str) -> str:
    return f"id#{run_id}"


def _lateness_attr(rec: RunRecord) -> str:
    sample = start_lateness(rec.doc)
    if sample is None:
        return "-"
    scheduled, late_ms = sample
    jitter_ms = round((scheduled - rec.nominal_time).total_seconds() * 1000)
    return f"{jitter_ms}:{round(late_ms, 1)}"


def _duration_attr(rec: RunRecord) -> str:
    duration = run_duration(rec.doc)
    return "-" if duration is None else str(duration)


def _hold_pk(hold_id: str) -> str:
    return f"hold#{int(hold_id.rpartition('#')[2][:8], 16) % _HOLD_SHARDS}"


class _Reads:
    """The Query budget of one `list` call."""

    def __init__(self, n: int) -> None:
        self.left = n

    def take(self) -> bool:
        if self.left < 1:
            return False
        self.left -= 1
        return True


@dataclass
class _Candidate:
    """A run a list may return: its time key, its item's key, and the item when the query read
    it whole (None: an index entry, BatchGet the item)."""

    key: str
    pk: str
    sk: str
    item: _RunItem | None


# Yields candidates newest first; returns None when nothing more matches, or the time key to
# resume below when the Query budget ran out (everything at or above it has been yielded).
_Source = Generator[_Candidate, None, str | None]


@dataclass
class _TimeShard:
    """One `by_time` (or `pages`) shard being merged: keys read but not yet yielded (`buffer`,
    oldest first: a page's entries come in any order), and how far the shard has been read
    (`frontier`: every key >= it is read — a page's entries lie below its key —; None before
    the first page)."""

    pages: PageIterator[Any]
    paged: bool = False  # a `pages` shard: its items are batch pages
    buffer: list[_Candidate] = field(default_factory=list)
    frontier: str | None = None
    done: bool = False


class DynamoRunStore:
    """`RunStore` on one table; see the module docstring for the item layout."""

    def __init__(self, table_name: str | None = None, shards: int | None = None) -> None:
        self.table_name = _table(table_name, RUNS_TABLE_ENV)
        self.shards = shards if shards is not None else int(os.environ.get(SHARDS_ENV) or DEFAULT_SHARDS)
        if self.shards < 1:
            raise ValueError("shards must be >= 1")
        self._item = _bind(_RunItem, self.table_name)
        self._pointer = _bind(_RunPointer, self.table_name)
        self._floor = _bind(_SweepFloor, self.table_name)
        self._hold = _bind(_HoldItem, self.table_name)
        self._page = _bind(_PageItem, self.table_name)
        self._batch_pages: dict[str, _BatchPage] = {}  # run id -> the open batch page that lists it
        self._pages_lock = threading.Lock()
        self._floors: dict[int, str] = {}  # the floors this process read or moved
        self._unwritten: dict[int, int] = {}  # stale entries passed since the floor was written
        self._connection = _connection()

    @contextlib.contextmanager
    def listed_together(
        self,
        run_ids: Sequence[str],
        retention_of: Callable[[str], int],
        definitions: Mapping[str, str] | None = None,
    ) -> Iterator[None]:
        """Within the block, the runs among `run_ids` (a worker batch's firings) that `create`
        makes are listed across schedules by one page item, written before the first of them,
        instead of a `by_time` entry each. `retention_of(definition)`: the days that
        definition's runs are kept; `definitions`: the definition of each run id where known
        (the page names them, so a list of one definition's runs skips the others unread, and
        its TTL covers the longest-kept of them and the first run's; a run kept longer still
        gets its own entry)."""
        page = _BatchPage(
            run_ids=tuple(r for r in run_ids if parse_scheduled_run_id(r) is not None),
            retention_of=retention_of,
            definitions=dict(definitions or {}),
        )
        with self._pages_lock:
            for r in page.run_ids:
                self._batch_pages[r] = page
        try:
            yield
        finally:
            with self._pages_lock:
                for r in page.run_ids:
                    if self._batch_pages.get(r) is page:
                        del self._batch_pages[r]

    def _on_page(self, rec: RunRecord) -> datetime | None:
        """When the open batch page that lists `rec` expires (written now, before its first run);
        None: no page lists it."""
        with self._pages_lock:
            page = self._batch_pages.get(rec.run_id)
        if page is None:
            return None
        with page.lock:
            if page.failed:
                return None
            try:
                days = int(page.retention_of(rec.definition))
            except Exception:  # no retention to go by: the run gets its own entry
                return None
            if page.expires_at is not None:
                return page.expires_at if days <= page.retention else None
            for name in set(page.definitions.values()) - {rec.definition}:
                with contextlib.suppress(Exception):  # unknown: its runs are checked when made
                    days = max(days, int(page.retention_of(name)))
            expires = datetime.now(UTC) + timedelta(days=days) + _PAGE_KEPT
            try:
                self._write_pages(page.run_ids, expires, {**page.definitions, rec.run_id: rec.definition})
            except Exception:  # unwritten (or its answer lost): each run gets its own entry
                page.failed = True
                logging.getLogger("gnomon.dynamo").exception("could not write a batch page")
                return None
            page.expires_at, page.retention = expires, days
            return expires

    def _outlived_page(self, item: _RunItem) -> None:
        """A run on a page whose close keeps it past the page's TTL (it stayed open for days)
        gets a `by_time` entry of its own now (conditional on the version just written; a later
        write that keeps it longer does the same)."""
        if item.time_shard is not None or item.page_until is None or item.expires_at is None:
            return
        if epoch_seconds(item.expires_at) <= int(item.page_until):
            return
        m = self._item
        shard = str(shard_of(item.run_id, TIME_SHARDS))
        try:
            m(item.pk, item.sk).update([m.time_shard.set(shard)], condition=m.version == item.version)
            item.time_shard = shard
        except UpdateError as e:
            if _cause_code(e) != _CONDITION_FAILED:
                raise

    def _write_pages(self, run_ids: Sequence[str], expires: datetime, definitions: Mapping[str, str]) -> None:
        keys = sorted({_scheduled_time_key(r) for r in run_ids})  # a message delivered twice in a batch
        p = self._page
        chunk: list[str] = []
        for key in [*keys, None]:
            if key is not None and (
                not chunk
                or (
                    len(chunk) < _PAGE_MAX
                    and split_run_time_key(key)[0] - split_run_time_key(chunk[0])[0] <= PAGE_SPAN
                )
            ):
                chunk.append(key)
                continue
            page_id = uuid.uuid4().hex
            p(
                f"page#{page_id}",
                _PAGE_SK,
                page_shard=str(shard_of(page_id, PAGE_SHARDS)),
                page_key=f"{chunk[-1]}~{page_id}",
                entries=json.dumps(
                    [[r, definitions.get(r)] for r in (split_run_time_key(k)[1] for k in chunk)],
                    separators=(",", ":"),
                ),
                expires_at=expires,
            ).save(condition=p.pk.does_not_exist())
            chunk = [key] if key is not None else []

    def create(self, rec: RunRecord) -> RunRecord:
        check_run(rec)
        m = self._item
        pk, sk = _run_location(rec)
        nominal = store_instant(rec.nominal_time)
        item = m(
            pk,
            sk,
            docz=pack_doc(rec.doc),
            version=1,
            run_id=rec.run_id,
            definition=rec.definition,
            status=rec.status,
            schedule_id=rec.schedule_id,
            expires_at=rec.expires_at,
            time_key=run_time_key(nominal, rec.run_id),
            write_token=uuid.uuid4().hex,
            lt=_lateness_attr(rec),
            du=_duration_attr(rec),
        )
        if rec.active_at is not None:
            item.active_shard = str(shard_of(rec.run_id, self.shards))
            item.active_key = run_time_key(store_instant(rec.active_at), rec.run_id)
        if (failure := _failure_keys(rec)) is not None:
            item.failure_shard, item.failure_key = failure
        page_until = self._on_page(rec)
        if page_until is None:
            item.time_shard = str(shard_of(rec.run_id, TIME_SHARDS))
        else:
            item.page_until = epoch_seconds(page_until)
        located = parse_scheduled_run_id(rec.run_id) is not None
        for attempt in range(_MAX_ATTEMPTS):
            try:
                if located:  # the id gives the key: one conditional put
                    item.save(condition=m.pk.does_not_exist())
                else:  # the run and its pointer, both new, in one transaction: run ids stay unique
                    pointer = self._pointer(_pointer_pk(rec.run_id), _POINTER_SK, run_pk=pk, run_sk=sk)
                    _transact(
                        self._connection,
                        [(item, m.pk.does_not_exist()), (pointer, self._pointer.pk.does_not_exist())],
                    )
                return self._record(item)
            except PutError as e:
                if _cause_code(e) != _CONDITION_FAILED:
                    return self._record(self._raise_unless_own(rec.run_id, item.write_token))
            except _Cancelled:
                pass
            except Exception:
                return self._record(self._raise_unless_own(rec.run_id, item.write_token))
            existing = self._read(rec.run_id)
            if existing is not None:
                if existing.write_token == item.write_token:
                    return self._record(existing)  # our own put, retried after its answer was lost
                raise already_exists_run(rec.run_id, unpack_doc(existing))
            if not located:
                # TTL deletes a run but not its pointer: a pointer to nothing must not block a
                # new run under the same id.
                self._drop_stale_pointer(rec.run_id)
            _backoff(attempt)  # or met a concurrent transaction (real DynamoDB only): try again
        raise Conflict(f"run/{rec.run_id}: too much contention", current=None)

    def get(self, run_id: str) -> RunRecord:
        item = self._read(run_id)
        if item is None:
            raise NotFound(f"run/{run_id}")
        return self._record(item)

    def update(self, rec: RunRecord, *, expected_version: int) -> RunRecord:
        check_run(rec)
        m = self._item
        pk, sk = _run_location(rec)
        actions: list[Action] = [
            m.docz.set(pack_doc(rec.doc)),
            m.doc.remove(),
            m.status.set(rec.status),
            m.version.add(1),
            m.lt.set(_lateness_attr(rec)),
            m.du.set(_duration_attr(rec)),
        ]
        if rec.active_at is not None:
            actions += [
                m.active_shard.set(str(shard_of(rec.run_id, self.shards))),
                m.active_key.set(run_time_key(store_instant(rec.active_at), rec.run_id)),
                m.active_done.remove(),
            ]
        else:
            # Not removing the index keys: the entry stays (no index delete); see `active`.
            actions.append(m.active_done.set(1))
        if (failure := _failure_keys(rec)) is not None:
            actions += [m.failure_shard.set(failure[0]), m.failure_key.set(failure[1])]
        else:  # removing what is absent writes no index
            actions += [m.failure_shard.remove(), m.failure_key.remove()]
        actions.append(
            m.expires_at.set(rec.expires_at) if rec.expires_at is not None else m.expires_at.remove()
        )
        token = uuid.uuid4().hex
        actions.append(m.write_token.set(token))
        # The key pins run_id, schedule (or definition) and nominal_time; `definition` is pinned
        # too, so a record that would move the run fails like in the memory store.
        condition = (m.version == expected_version) & (m.definition == rec.definition)
        item = m(pk, sk)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                item.update(actions, condition=condition)  # returns ALL_NEW into `item`
                self._outlived_page(item)
                return self._record(item)
            except UpdateError as e:
                code = _cause_code(e)
                if code == _TRANSACTION_CONFLICT:
                    _backoff(attempt)
                    continue
                if code != _CONDITION_FAILED:
                    return self._record(self._raise_unless_own(rec.run_id, token))
            except Exception:
                return self._record(self._raise_unless_own(rec.run_id, token))
            cur = self._read(rec.run_id)
            if cur is not None and cur.write_token == token:
                return self._record(cur)  # our own update, retried after its answer was lost
            raise self._failed(rec, expected_version, cur)
        raise Conflict(f"run/{rec.run_id}: too much contention", current=None)

    def list(
        self,
        *,
        schedule_id: str | None = None,
        definition: str | None = None,
        statuses: builtins.list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: str | None,
        limit: int,
    ) -> Page[RunRecord]:
        check_limit(limit)
        lower, upper = run_key_range(start, end, after)
        if statuses is not None and not statuses:
            return Page([], None)  # no status allowed: nothing matches (DynamoDB has no empty IN)
        if upper is not None and upper <= lower:
            return Page([], None)
        reads = _Reads(_LIST_READS)
        source: _Source
        if schedule_id is not None:
            source = self._partition_source(
                run_partition(schedule_id, ""), definition, statuses, lower, upper, limit, reads
            )
        elif statuses is not None and set(statuses) <= FAILURE_STATUSES:
            # Only failures: their sparse index, not every newer run.
            shards = [f"{s}#{i}" for s in sorted(set(statuses)) for i in range(TIME_SHARDS)]
            source = self._time_source(definition, lower, upper, limit, reads, failures=shards)
        else:
            source = self._time_source(definition, lower, upper, limit, reads)
        return self._collect(source, set(statuses) if statuses is not None else None, limit, definition)

    def recent(self, schedule_id: str, *, limit: int, consistent: bool = True) -> builtins.list[RunRecord]:
        check_limit(limit)
        source = self._partition_source(
            run_partition(schedule_id, ""),
            None,
            None,
            "",
            None,
            limit,
            _Reads(_LIST_READS),
            consistent=consistent,
        )
        return self._collect(source, None, limit, None).items

    def delete(self, run_id: str, *, expected_version: int) -> None:
        from gnomon.adapters.runs_delete_dynamo import delete_run  # it imports this module

        delete_run(self, run_id, expected_version=expected_version)

    def active(self, shard: int, until: datetime, *, limit: int) -> builtins.list[RunRecord]:
        """A closed run keeps its `active` entry (removing it would cost an index delete per
        run), so entries are read from the shard's *floor* up: below it, every entry was seen
        stale (its run closed, or moved to another key). Each stale entry is read about once —
        an eventually consistent BatchGetItem, half a read unit — and the floor moves past it;
        a live entry holds the floor until the caller moves it."""
        check_limit(limit)
        m = self._item
        upper = due_upper_bound(store_instant(until))
        floor = self._read_floor(shard)
        condition = m.active_key < upper if floor is None else m.active_key.between(floor, upper)
        entries = m.active.query(str(shard), condition, page_size=min(_ACTIVE_EXAMINE, 4 * limit + 100))
        live: list[_RunItem] = []
        passed: str | None = None  # every entry up to this key is stale
        newly_passed = 0  # stale entries above the stored floor, passed now
        examined = 0
        chunk: list[tuple[str, str, str]] = []

        def screen() -> bool:
            """Classify a chunk of entries in key order; False once a live entry stops the floor."""
            nonlocal passed, newly_passed
            items = {
                (i.pk, i.sk): i
                for i in self._item.batch_get([(pk, sk) for pk, sk, _ in chunk], consistent_read=False)
            }
            floor_held = bool(live)
            for pk, sk, key in chunk:
                item = items.get((pk, sk))
                stale = (
                    item is None
                    or item.active_done
                    or item.active_key != key
                    or item.active_shard != str(shard)
                )
                if not stale:
                    assert item is not None
                    if len(live) < limit:
                        live.append(item)
                    floor_held = True
                elif not floor_held:
                    passed = key
                    newly_passed += floor is None or key > floor
            chunk.clear()
            return not floor_held

        for entry in entries:
            if entry.active_key is None or entry.active_key >= upper:
                continue
            chunk.append((entry.pk, entry.sk, entry.active_key))
            examined += 1
            if len(chunk) == 100 and (not screen() and len(live) >= limit):
                break
            if examined >= _ACTIVE_EXAMINE:
                break
        if chunk:
            screen()
        if passed is not None:
            cap = run_time_key(store_instant(until - timedelta(seconds=SWEEP_MARGIN_SECONDS)), "")
            self._floors[shard] = max(min(passed, cap), floor or "")  # this process reads from there
            self._unwritten[shard] = self._unwritten.get(shard, 0) + newly_passed
            if self._unwritten[shard] >= FLOOR_WRITE_AFTER:
                self._raise_floor(shard, self._floors[shard])
        live.sort(key=lambda i: str(i.active_key))
        return [self._record(i) for i in live]

    def _read_floor(self, shard: int) -> str | None:
        # Read once per process: a floor raised by another process since only costs this one
        # a few stale entries read again.
        if shard in self._floors:
            return self._floors[shard]
        try:
            floor = str(self._floor.get(f"sweep#{shard}", _FLOOR_SK, consistent_read=True).floor)
        except self._floor.DoesNotExist:
            return None
        self._floors[shard] = floor
        return floor

    def _raise_floor(self, shard: int, floor: str) -> None:
        """Move the floor up (never down: two sweeps at once keep the higher)."""
        f = self._floor
        try:
            f(f"sweep#{shard}", _FLOOR_SK, floor=floor).save(
                condition=f.pk.does_not_exist() | (f.floor < floor)
            )
        except PutError as e:
            if _cause_code(e) != _CONDITION_FAILED:
                raise
            self._floors.pop(shard, None)  # another sweep's is higher: read it next time
        self._unwritten[shard] = 0

    def run_samples(
        self,
        *,
        schedule_id: str | None,
        definition: str | None,
        start: datetime,
        end: datetime,
        limit: int,
        durations: bool = False,
    ) -> tuple[builtins.list[RunSample], bool]:
        """Keys from the schedule's partition or the `by_time` shards, then only the `lt`, `du`
        and `status` attributes of each run (ProjectionExpression) — not its document, except
        for items written before those attributes."""
        m = self._item
        lower, upper = run_key_range(start, end, None)
        assert upper is not None
        attrs = ["pk", "sk", "time_key", "status", "lt", "du", "definition"]
        found: list[_RunItem] = []
        cut = False
        if schedule_id is not None:
            condition = m.sk.between(_RUN_SK_PREFIX + lower, _RUN_SK_PREFIX + upper)
            filters = m.definition == definition if definition is not None else None
            for item in m.query(
                run_partition(schedule_id, ""),
                condition,
                filter_condition=filters,
                scan_index_forward=False,
                attributes_to_get=attrs,
                page_size=1000,
            ):
                if item.time_key < upper:
                    found.append(item)
                    if len(found) > limit:
                        break
        else:
            keys: list[tuple[str, str, str]] = []
            for shard in range(TIME_SHARDS):
                filters = m.definition == definition if definition is not None else None
                entries = m.by_time.query(
                    str(shard),
                    m.time_key.between(lower, upper),
                    filter_condition=filters,
                    scan_index_forward=False,
                    page_size=1000,
                    limit=limit + 1,
                )
                keys.extend((str(k.time_key), k.pk, k.sk) for k in entries if k.time_key < upper)
            keys.extend(self._page_keys(lower, upper, limit, definition))
            keys = sorted(set(keys), reverse=True)  # a run on two pages counts once
            cut = len(keys) > limit + 1
            found = list(m.batch_get([(pk, sk) for _, pk, sk in keys[: limit + 1]], attributes_to_get=attrs))
            if definition is not None:  # page entries carry no definition
                found = [i for i in found if i.definition == definition]
        truncated = len(found) > limit or (schedule_id is None and cut)
        found = sorted(found, key=lambda i: str(i.time_key), reverse=True)[:limit]
        # read whole: items written before `lt`, and (for durations) closed ones written before `du`
        older = [
            (i.pk, i.sk)
            for i in found
            if i.lt is None or (durations and i.du is None and i.status in DURATION_STATUSES)
        ]
        docs = {(pk, sk): unpack_doc(item) for (pk, sk), item in self._batch_get(older).items()}
        samples: list[RunSample] = []
        for item in found:
            nominal, _ = split_run_time_key(item.time_key)
            doc = docs.get((item.pk, item.sk))
            lateness: tuple[datetime, float] | None = None
            if item.lt is None:
                lateness = start_lateness(doc) if doc is not None else None
            elif item.lt != "-":
                jitter, _, late = item.lt.partition(":")
                lateness = nominal + timedelta(milliseconds=int(jitter)), float(late)
            duration: int | None = None
            if doc is not None:
                duration = run_duration(doc)
            elif item.du is not None and item.du != "-":
                duration = int(item.du)
            samples.append(RunSample(nominal, str(item.status), lateness, duration))
        return samples, truncated

    def _page_condition(self, lower: str, upper: str | None) -> Condition | None:
        """The page keys whose pages may hold entries in [lower, upper): a page's key is at or
        above every entry it holds, and at most PAGE_SPAN above the oldest."""
        p = self._page
        if upper is None:
            return p.page_key >= lower if lower else None
        if not lower:  # a key may not be compared with an empty string
            return p.page_key < _page_upper(upper)
        return p.page_key.between(lower, _page_upper(upper))

    def _page_keys(
        self, lower: str, upper: str, limit: int, definition: str | None
    ) -> builtins.list[tuple[str, str, str]]:
        """(time key, pk, sk) of the newest limit + 1 runs per `pages` shard in [lower, upper)."""
        p = self._page
        out: builtins.list[tuple[str, str, str]] = []
        for shard in range(PAGE_SHARDS):
            found: builtins.list[str] = []
            cands: dict[str, _Candidate] = {}
            for raw in p.pages.query(
                str(shard),
                self._page_condition(lower, upper),
                scan_index_forward=False,
                page_size=100,
            ).page_iter:
                for item in raw.get("Items", []):
                    for c in _page_entries(item, definition):
                        if lower <= c.key < upper and c.key not in cands:
                            cands[c.key] = c
                            bisect.insort(found, c.key)
                    # Every page left lies below this one's key: done once limit + 1 are above it.
                    if len(found) > limit and found[-(limit + 1)] >= item["page_key"]["S"]:
                        break
                else:
                    continue
                break
            out += [(k, cands[k].pk, cands[k].sk) for k in found[-(limit + 1) :]]
        return out

    def hold(self, run_ids: Sequence[str], until: datetime) -> str:
        hold_id = hold_key(store_instant(until))
        h = self._hold
        h(
            _hold_pk(hold_id),
            hold_id,
            run_ids=json.dumps(list(run_ids), separators=(",", ":")),
            expires_at=store_instant(until) + _HOLD_KEPT,
        ).save()
        return hold_id

    def release(self, hold_id: str) -> None:
        self._hold(_hold_pk(hold_id), hold_id).delete()

    def expired_holds(self, until: datetime, *, limit: int) -> builtins.list[Hold]:
        check_limit(limit)
        h = self._hold
        upper = due_upper_bound(store_instant(until))
        out: list[Hold] = []
        for n in range(_HOLD_SHARDS):
            for item in h.query(f"hold#{n}", h.sk < upper, limit=limit, consistent_read=True):
                when, _, _ = str(item.sk).partition("#")
                out.append(Hold(str(item.sk), tuple(json.loads(item.run_ids)), parse(when)))
        out.sort(key=lambda x: x.hold_id)
        return out[:limit]

    # internals

    def _read(self, run_id: str) -> _RunItem | None:
        parsed = parse_scheduled_run_id(run_id)
        if parsed is not None:
            schedule_id, _, nominal = parsed
            pk, sk = run_partition(schedule_id, ""), _RUN_SK_PREFIX + run_time_key(nominal, run_id)
        else:
            try:
                pointer = self._pointer.get(_pointer_pk(run_id), _POINTER_SK, consistent_read=True)
            except self._pointer.DoesNotExist:
                return None
            pk, sk = pointer.run_pk, pointer.run_sk
        try:
            return self._item.get(pk, sk, consistent_read=True)
        except self._item.DoesNotExist:
            return None

    def _drop_stale_pointer(self, run_id: str) -> None:
        """Delete the pointer of `run_id` if the run it points to is gone (expired by TTL; the
        pointer has no TTL of its own), atomically with a check that the run is absent, so a run
        created meanwhile keeps its pointer."""
        p = self._pointer
        try:
            pointer = p.get(_pointer_pk(run_id), _POINTER_SK, consistent_read=True)
        except p.DoesNotExist:
            return
        try:
            with TransactWrite(connection=self._connection) as tx:
                tx.condition_check(
                    self._item, pointer.run_pk, pointer.run_sk, condition=self._item.pk.does_not_exist()
                )
                tx.delete(pointer, condition=(p.run_pk == pointer.run_pk) & (p.run_sk == pointer.run_sk))
        except TransactWriteError as e:
            codes = {r.code for r in e.cancellation_reasons if r is not None}
            if _cause_code(e) != "TransactionCanceledException" or not codes <= _RETRYABLE_REASONS:
                raise

    def _raise_unless_own(self, run_id: str, token: str | None) -> _RunItem:
        """After a write that failed without a verdict (a lost answer, a throttle, a timeout):
        the item if that write took effect after all (it carries the write's token); otherwise
        re-raise the write's error (the exception being handled)."""
        try:
            item = _settling_read(lambda: self._read(run_id))
        except Exception:
            item = None
        if item is None or token is None or item.write_token != token:
            raise  # called from an `except` block: re-raises the write's error
        return item

    def _failed(self, rec: RunRecord, expected_version: int, cur: _RunItem | None) -> Exception:
        """The error for a failed update condition, from the item as re-read after it (`cur`):
        NotFound, a moved record (ValueError, as in the memory store) or Conflict."""
        if cur is None:
            return NotFound(f"run/{rec.run_id}")
        stored = self._record(cur)
        check_run_location(rec, stored.schedule_id, stored.definition, stored.nominal_time)
        return Conflict(
            f"run/{rec.run_id} is at version {stored.version}, not {expected_version}",
            current=conflict_current(stored.doc, stored.version),
        )

    def _batch_get(self, keys: builtins.list[tuple[str, str]]) -> dict[tuple[str, str], _RunItem]:
        # pynamodb sends at most 100 keys per BatchGetItem, re-sends UnprocessedKeys, and
        # returns items in no particular order.
        if not keys:
            return {}
        return {(i.pk, i.sk): i for i in self._item.batch_get(keys, consistent_read=True)}

    def _collect(
        self, source: _Source, statuses: set[str] | None, limit: int, definition: str | None = None
    ) -> Page[RunRecord]:
        """Take candidates newest first until limit + 1 match (a next page exists), the source
        ends (None: no next page) or its read budget does (a short page resuming below what was
        examined). Index candidates are fetched with BatchGetItem, in chunks of what is missing."""
        matched: list[tuple[str, RunRecord]] = []
        pending: list[_Candidate] = []
        resume: str | None = None
        while True:
            done = False
            try:
                pending.append(next(source))
            except StopIteration as stop:
                resume, done = stop.value, True
            if not done and len(pending) < min(_BATCH_GET_MAX, limit + 1 - len(matched)):
                continue
            fetched = self._batch_get([(c.pk, c.sk) for c in pending if c.item is None])
            for c in pending:
                item = c.item if c.item is not None else fetched.get((c.pk, c.sk))
                if (
                    item is None
                    or (statuses is not None and item.status not in statuses)
                    or (definition is not None and item.definition != definition)
                ):
                    continue  # gone since the index was read (or never made), or filtered out
                matched.append((c.key, self._record(item)))
                if len(matched) > limit:
                    return Page([r for _, r in matched[:limit]], matched[limit - 1][0])
            pending = []
            if done:
                return Page([r for _, r in matched], resume)

    def _partition_source(
        self,
        pk: str,
        definition: str | None,
        statuses: builtins.list[str] | None,
        lower: str,
        upper: str | None,
        limit: int,
        reads: _Reads,
        *,
        consistent: bool = True,
    ) -> _Source:
        """A schedule's runs, newest first, from its partition; definition and statuses are
        filtered by DynamoDB (FilterExpression), so only matching items come back."""
        m = self._item
        low = _RUN_SK_PREFIX + lower
        condition: Condition | None
        if upper is None:
            condition = m.sk >= low if lower else None  # the partition holds run items only
        else:
            condition = m.sk.between(low, _RUN_SK_PREFIX + upper)  # inclusive: drop `upper` below
        filters: Condition | None = None
        if definition is not None:
            filters = m.definition == definition
        if statuses is not None:
            by_status = m.status.is_in(*statuses)
            filters = by_status if filters is None else filters & by_status
        pages = m.query(
            pk,
            condition,
            filter_condition=filters,
            scan_index_forward=False,
            consistent_read=consistent,
            page_size=limit + 1 if filters is None else max(limit + 1, _FILTERED_PAGE),
        ).page_iter
        reads.take()
        while True:
            page = next(pages)
            for raw in page.get("Items", []):
                item = m.from_raw_data(raw)
                key = item.sk.removeprefix(_RUN_SK_PREFIX)
                if upper is None or key < upper:
                    yield _Candidate(key, item.pk, item.sk, item)
            last = pages.last_evaluated_key
            if last is None:
                return None
            if not reads.take():
                return str(last["sk"]["S"]).removeprefix(_RUN_SK_PREFIX)

    def _time_source(
        self,
        definition: str | None,
        lower: str,
        upper: str | None,
        limit: int,
        reads: _Reads,
        failures: builtins.list[str] | None = None,
    ) -> _Source:
        """Every run (or a definition's), newest first: the `by_time` shards, each read newest
        first, merged by time key; `definition` is filtered by DynamoDB on the projected attribute.
        With `failures` (shard keys of the `failures` index), only the runs in those shards.

        A key is yielded once every shard has been read down to it (its frontier), so the merge
        is exact; the shard read next is the one read least far."""
        m = self._item
        index: Any = m.by_time if failures is None else m.failures
        key_attr: Any = m.time_key if failures is None else m.failure_key
        key_name = "time_key" if failures is None else "failure_key"
        hashes = [str(s) for s in range(TIME_SHARDS)] if failures is None else failures
        condition: Condition | None
        if upper is None:
            condition = key_attr >= lower if lower else None
        elif not lower:  # a key may not be compared with an empty string
            condition = key_attr < upper
        else:
            condition = key_attr.between(lower, upper)  # inclusive: drop `upper` below
        filters = m.definition == definition if definition is not None else None
        # A shard holds about a TIME_SHARDS-th of any time range: ask each for its share (and some
        # spare) rather than for a whole page, and read a shard again when it falls short.
        share = min(limit + 1, math.ceil((limit + 1) * _SHARD_SPARE / TIME_SHARDS) + _SHARD_MARGIN)
        page_size = share if filters is None else max(limit + 1, _FILTERED_PAGE)
        shards = [
            _TimeShard(
                index.query(
                    h, condition, filter_condition=filters, scan_index_forward=False, page_size=page_size
                ).page_iter
            )
            for h in hashes
        ]
        if failures is None:
            # Batch pages (their entries carry no definition: `_collect` filters on the items).
            p = self._page
            page_cond = self._page_condition(lower, upper)
            shards += [
                _TimeShard(
                    p.pages.query(
                        str(h), page_cond, scan_index_forward=False, page_size=max(2, share // 4)
                    ).page_iter,
                    paged=True,
                )
                for h in range(PAGE_SHARDS)
            ]
        yielded: str | None = None  # the key yielded last: a run on two pages is yielded once
        while True:
            live = [s for s in shards if not s.done]
            unread = [s for s in live if s.frontier is None]
            # Every shard has been read down to `floor` (None: all shards are read to the end).
            floor = max((str(s.frontier) for s in live), default=None) if not unread else None
            if not unread:
                while True:
                    heads = [s for s in shards if s.buffer]
                    if not heads:
                        break
                    top = max(heads, key=lambda s: s.buffer[-1].key)
                    if floor is not None and top.buffer[-1].key < floor:
                        break
                    candidate = top.buffer.pop()
                    if candidate.key != yielded:
                        yielded = candidate.key
                        yield candidate
            if not live:
                return None
            target = unread[0] if unread else max(live, key=lambda s: str(s.frontier))
            # Out of reads: resume below `floor` — unless it is not below `upper` yet (a `pages`
            # shard reads up to PAGE_SPAN above it), where resuming would not move on.
            if not reads.take() and not unread and (upper is None or (floor is not None and floor < upper)):
                return floor
            page = next(target.pages)
            for raw in page.get("Items", []):
                if target.paged:
                    found = [
                        c
                        for c in _page_entries(raw, definition)
                        if c.key >= lower and (upper is None or c.key < upper)
                    ]
                else:
                    entry = m.from_raw_data(raw)
                    key = str(getattr(entry, key_name))
                    found = (
                        [_Candidate(key, entry.pk, entry.sk, None)] if upper is None or key < upper else []
                    )
                for c in found:
                    bisect.insort(target.buffer, c, key=lambda c: c.key)
            last = target.pages.last_evaluated_key
            if last is None:
                target.done = True
            else:
                target.frontier = str(last["page_key" if target.paged else key_name]["S"])

    @staticmethod
    def _record(item: _RunItem) -> RunRecord:
        nominal, _ = split_run_time_key(item.time_key)
        return RunRecord(
            run_id=item.run_id,
            doc=unpack_doc(item),
            schedule_id=item.schedule_id,
            definition=item.definition,
            nominal_time=nominal,
            status=item.status,
            active_at=split_run_time_key(item.active_key)[0]
            if item.active_key and not item.active_done
            else None,
            expires_at=item.expires_at,
            version=int(item.version),
        )
