"""In-memory stores: the fake behind unit tests, held to the same contract suite as the DynamoDB
adapters (`tests/contract/`), so it behaves like them wherever the suite can tell.

Faithful on purpose where it is cheap:
- documents are copied through JSON on the way in and out, so a doc that DynamoDB could not store
  (a datetime, a set) fails here too, and no caller can mutate stored state;
- `next_fire_at` is kept at millisecond precision, the precision of the due index's sort key;
- pages are exact (`last_key` is None when nothing follows), as in the DynamoDB adapters.

- a request claim expires as in DynamoDB: `claim` compares whole epoch seconds (the precision of
  the TTL attribute), and a claim whose `expires_at` is before the caller's `now` counts as absent.

Not modelled: TTL's deletion. `MemoryRequestLog` never drops an expired claim by itself (DynamoDB
deletes one eventually, within about two days); through the port only `claim` can tell.

The helpers `shard_of`, `due_key`, `parse_due_key`, `version_key`, `parse_version_key` and
`epoch_seconds` live here and are imported by `gnomon.adapters.dynamo`, so both stores shard and
order the due index, order and page the audit trail, and expire claims identically; likewise the
run helpers (`run_time_key`, `run_key_range`, `check_run`, ...) for ordering, bounding and paging
runs and sharding their indexes.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.runs import parse_scheduled_run_id, run_duration, start_lateness
from gnomon.domain.timefmt import sortable
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
    shard_of,
)

DEFAULT_SHARDS = 8


# --- helpers shared with gnomon.adapters.dynamo -------------------------------------------------


def store_instant(t: datetime) -> datetime:
    """An instant as the stores keep it: aware UTC, truncated to the millisecond (the precision
    of `sortable`, hence of the due index)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    t = t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def due_key(next_fire_at: datetime, schedule_id: str) -> str:
    """The due index's sort key: `<sortable time>#<schedule_id>` (ties broken by id)."""
    return f"{sortable(next_fire_at)}#{schedule_id}"


def due_upper_bound(until: datetime) -> str:
    """A key above every due key at or before `until` and below every later one: the fixed-width
    time followed by `$`, the character after `#`, so it holds whatever characters ids use."""
    return f"{sortable(until)}$"


def parse_due_key(key: str) -> DueEntry:
    """The `DueEntry` a due key stands for."""
    when, _, schedule_id = key.partition("#")
    t = datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return DueEntry(schedule_id=schedule_id, next_fire_at=t)


def phase_key(phase: int, schedule_id: str) -> str:
    """The phase index's sort key: `<phase, 5 digits>#<schedule_id>` (a period divides a day)."""
    return f"{phase:05d}#{schedule_id}"


def phase_shard(period: int, shard: int) -> str:
    """The phase index's partition key: one per period and shard."""
    return f"{period}/{shard}"


def parse_phase_key(key: str) -> PhaseEntry:
    phase, _, schedule_id = key.partition("#")
    return PhaseEntry(schedule_id=schedule_id, phase=int(phase))


def check_phase(rec: ScheduleRecord) -> None:
    if rec.phase is not None:
        period, phase = rec.phase
        if not (0 < period <= 86_400 and 0 <= phase < period):
            raise ValueError(f"phase {rec.phase} out of range")


def version_key(incarnation: int, version: int) -> str:
    """The audit trail's order key and page key: `<incarnation 10 digits>#<version 10 digits>`,
    so string order is (incarnation, version) order. The DynamoDB audit sort key is `v#` + it."""
    return f"{incarnation:010d}#{version:010d}"


_VERSION_KEY = re.compile(r"[0-9]{10}#[0-9]{10}")


def parse_version_key(key: str) -> tuple[int, int]:
    """(incarnation, version) of a `version_key`; ValueError if `key` is not one (a page key
    the store did not hand out)."""
    if not _VERSION_KEY.fullmatch(key):
        raise ValueError(f"not a version page key: {key!r}")
    incarnation, _, version = key.partition("#")
    return int(incarnation), int(version)


def epoch_seconds(t: datetime) -> int:
    """Whole seconds since the epoch, rounded down: how DynamoDB's TTL attribute (and pynamodb's
    `TTLAttribute`) stores an instant."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    return math.floor(t.timestamp())


def json_copy(doc: Any) -> Any:
    """A deep copy through JSON: detaches the caller's object and rejects what is not JSON."""
    return json.loads(json.dumps(doc))


def conflict_current(doc: JSON, version: int) -> JSON:
    """The `current` of a `Conflict`: the stored document with its version merged in."""
    return {**json_copy(doc), "version": version}


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError("limit must be >= 1")


def check_schedule(rec: ScheduleRecord) -> None:
    """Index keys may not be empty strings in DynamoDB: refuse them in every store alike."""
    for name in ("schedule_id", "definition", "group", "generation"):
        if not getattr(rec, name):
            raise ValueError(f"{name} must not be empty")


# --- catalog ------------------------------------------------------------------------------------


@dataclass
class _Current:
    doc: JSON
    version: int
    incarnation: int
    tags: frozenset[str]


@dataclass(frozen=True)
class _Audit:
    incarnation: int
    version: int
    doc: JSON

    @property
    def key(self) -> str:
        return version_key(self.incarnation, self.version)


class MemoryCatalogStore:
    """Named, versioned documents with their audit trail, in dicts behind one lock.

    Every create starts at version 1. The audit trail of a name keeps every version of every
    incarnation: the first create is incarnation 1, a create after a delete takes the last
    incarnation + 1, and the trail is ordered by (incarnation, version). The DynamoDB store does
    the same with its audit sort keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str], _Current] = {}
        self._versions: dict[tuple[str, str], list[_Audit]] = {}  # oldest first

    def create(self, kind: str, name: str, doc: JSON, *, tags: list[str] | None = None) -> CatalogRecord:
        stored = json_copy(doc)
        with self._lock:
            key = (kind, name)
            if key in self._current:
                raise AlreadyExists(f"{kind}/{name} already exists", {"resource": f"{kind}/{name}"})
            history = self._versions.get(key)
            incarnation = history[-1].incarnation + 1 if history else 1
            return self._write(key, stored, incarnation, 1, tags)

    def get(self, kind: str, name: str) -> CatalogRecord:
        with self._lock:
            cur = self._current.get((kind, name))
            if cur is None:
                raise NotFound(f"{kind}/{name}")
            return CatalogRecord(kind, name, json_copy(cur.doc), cur.version)

    def replace(
        self, kind: str, name: str, doc: JSON, *, expected_version: int | None, tags: list[str] | None = None
    ) -> CatalogRecord:
        stored = json_copy(doc)
        with self._lock:
            cur = self._checked((kind, name), expected_version)
            return self._write((kind, name), stored, cur.incarnation, cur.version + 1, tags)

    def delete(self, kind: str, name: str, *, expected_version: int | None = None) -> None:
        with self._lock:
            self._checked((kind, name), expected_version)
            del self._current[(kind, name)]

    def list(
        self, kind: str, *, after: str | None, limit: int, tag: str | None = None
    ) -> Page[CatalogRecord]:
        check_limit(limit)
        with self._lock:
            names = sorted(
                name
                for (k, name), cur in self._current.items()
                if k == kind and (after is None or name > after) and (tag is None or tag in cur.tags)
            )[: limit + 1]
            current = [(n, self._current[(kind, n)]) for n in names[:limit]]
            items = [CatalogRecord(kind, n, json_copy(cur.doc), cur.version) for n, cur in current]
        return Page(items, items[-1].name if len(names) > limit else None)

    def versions(self, kind: str, name: str, *, after: str | None, limit: int) -> Page[CatalogRecord]:
        check_limit(limit)
        with self._lock:
            history = self._versions.get((kind, name))
            if not history:
                raise NotFound(f"{kind}/{name}")
            if after is not None:
                parse_version_key(after)  # refuse a key this store did not hand out
            chosen = [a for a in reversed(history) if after is None or a.key < after][: limit + 1]
            items = [CatalogRecord(kind, name, json_copy(a.doc), a.version) for a in chosen[:limit]]
        return Page(items, chosen[limit - 1].key if len(chosen) > limit else None)

    def _checked(self, key: tuple[str, str], expected_version: int | None) -> _Current:
        cur = self._current.get(key)
        if cur is None:
            raise NotFound(f"{key[0]}/{key[1]}")
        if expected_version is not None and cur.version != expected_version:
            raise Conflict(
                f"{key[0]}/{key[1]} is at version {cur.version}, not {expected_version}",
                current=conflict_current(cur.doc, cur.version),
            )
        return cur

    def _write(
        self,
        key: tuple[str, str],
        doc: JSON,
        incarnation: int,
        version: int,
        tags: builtins.list[str] | None,
    ) -> CatalogRecord:
        self._current[key] = _Current(doc, version, incarnation, frozenset(tags or ()))
        self._versions.setdefault(key, []).append(_Audit(incarnation, version, doc))
        return CatalogRecord(key[0], key[1], json_copy(doc), version)


# --- schedules ----------------------------------------------------------------------------------


@dataclass
class _Schedule:
    doc: JSON
    generation: str
    definition: str
    group: str
    next_fire_at: datetime | None
    version: int
    counters: dict[str, int] = field(default_factory=dict)
    phase: tuple[int, int] | None = None
    phase_plan: list[Any] | None = None

    def record(self, schedule_id: str) -> ScheduleRecord:
        return ScheduleRecord(
            schedule_id=schedule_id,
            doc=json_copy(self.doc),
            generation=self.generation,
            definition=self.definition,
            group=self.group,
            next_fire_at=self.next_fire_at,
            version=self.version,
            counters=dict(self.counters),
            phase=self.phase,
            phase_plan=json_copy(self.phase_plan) if self.phase is not None else None,
        )


class MemoryScheduleStore:
    """Schedules in a dict behind one lock; `due()` filters by shard like the sharded index."""

    def __init__(self, shards: int = DEFAULT_SHARDS) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.shards = shards
        self._lock = threading.Lock()
        self._items: dict[str, _Schedule] = {}
        self._periods: set[int] = set()
        self._marks: dict[tuple[int, int], datetime] = {}

    def create(self, rec: ScheduleRecord) -> ScheduleRecord:
        check_schedule(rec)
        check_phase(rec)
        item = _Schedule(
            doc=json_copy(rec.doc),
            generation=rec.generation,
            definition=rec.definition,
            group=rec.group,
            next_fire_at=store_instant(rec.next_fire_at) if rec.next_fire_at is not None else None,
            version=1,
            counters={k: int(v) for k, v in rec.counters.items()},
            phase=rec.phase,
            phase_plan=json_copy(rec.phase_plan),
        )
        with self._lock:
            if rec.schedule_id in self._items:
                raise AlreadyExists(
                    f"schedule/{rec.schedule_id} already exists", {"resource": f"schedule/{rec.schedule_id}"}
                )
            self._items[rec.schedule_id] = item
            return item.record(rec.schedule_id)

    def get(self, schedule_id: str, *, consistent: bool = True) -> ScheduleRecord:
        with self._lock:  # the newest version, whatever `consistent` (a read that may lag may also not)
            item = self._items.get(schedule_id)
            if item is None:
                raise NotFound(f"schedule/{schedule_id}")
            return item.record(schedule_id)

    def get_many(self, schedule_ids: Iterable[str], *, consistent: bool = True) -> dict[str, ScheduleRecord]:
        with self._lock:
            return {sid: self._items[sid].record(sid) for sid in schedule_ids if sid in self._items}

    def update(
        self, rec: ScheduleRecord, *, expected_version: int | None, counters: Mapping[str, int] | None = None
    ) -> ScheduleRecord:
        check_schedule(rec)
        check_phase(rec)
        doc = json_copy(rec.doc)
        next_fire_at = store_instant(rec.next_fire_at) if rec.next_fire_at is not None else None
        with self._lock:
            item = self._checked(rec.schedule_id, expected_version)
            item.doc, item.next_fire_at, item.phase = doc, next_fire_at, rec.phase
            item.phase_plan = json_copy(rec.phase_plan)
            item.generation, item.definition, item.group = rec.generation, rec.definition, rec.group
            item.version += 1
            for name, delta in (counters or {}).items():
                item.counters[name] = item.counters.get(name, 0) + int(delta)
            return item.record(rec.schedule_id)

    def delete(self, schedule_id: str, *, expected_version: int | None = None) -> None:
        with self._lock:
            self._checked(schedule_id, expected_version)
            del self._items[schedule_id]

    def list(
        self, *, after: str | None, limit: int, group: str | None = None, definition: str | None = None
    ) -> Page[ScheduleRecord]:
        check_limit(limit)
        with self._lock:
            ids = sorted(
                sid
                for sid, item in self._items.items()
                if (after is None or sid > after)
                and (group is None or item.group == group)
                and (definition is None or item.definition == definition)
            )[: limit + 1]
            items = [self._items[sid].record(sid) for sid in ids[:limit]]
        return Page(items, items[-1].schedule_id if len(ids) > limit else None)

    def ids_using_definition(self, definition: str, *, limit: int) -> builtins.list[str]:
        with self._lock:
            ids = sorted(sid for sid, item in self._items.items() if item.definition == definition)
        return ids[: max(limit, 0)]

    def due(
        self, shard: int, until: datetime, *, limit: int, after: DueEntry | None = None
    ) -> builtins.list[DueEntry]:
        check_limit(limit)
        upper = due_upper_bound(until)
        lower = due_key(after.next_fire_at, after.schedule_id) if after is not None else None
        with self._lock:
            keys = sorted(
                key
                for sid, item in self._items.items()
                if item.next_fire_at is not None
                and shard_of(sid, self.shards) == shard
                and (key := due_key(item.next_fire_at, sid)) < upper
                and (lower is None or key > lower)
            )
        return [parse_due_key(k) for k in keys[:limit]]

    def add_counters(self, schedule_id: str, deltas: Mapping[str, int]) -> None:
        with self._lock:
            item = self._items.get(schedule_id)
            if item is None:
                return
            for name, delta in deltas.items():
                item.counters[name] = item.counters.get(name, 0) + int(delta)

    def phased(
        self, period: int, shard: int, low: int, high: int, *, limit: int, after: PhaseEntry | None = None
    ) -> builtins.list[PhaseEntry]:
        check_limit(limit)
        lower = phase_key(after.phase, after.schedule_id) if after is not None else None
        with self._lock:
            matched = sorted(
                (phase_key(ph[1], sid), sid, ph[1], item)
                for sid, item in self._items.items()
                if (ph := item.phase) is not None
                and ph[0] == period
                and low <= ph[1] <= high
                and shard_of(sid, self.shards) == shard
            )  # keys are unique (they end with the id): items are never compared
            return [
                PhaseEntry(
                    sid, phase, json_copy(item.phase_plan), item.generation, item.definition, item.group
                )
                for key, sid, phase, item in matched
                if lower is None or key > lower
            ][:limit]

    def phase_periods(self) -> builtins.set[int]:
        with self._lock:
            return set(self._periods)

    def add_phase_period(self, period: int) -> None:
        with self._lock:
            self._periods.add(period)

    def phase_marks(self, periods: Iterable[int]) -> dict[tuple[int, int], datetime]:
        wanted = set(periods)
        with self._lock:
            return {k: v for k, v in self._marks.items() if k[0] in wanted}

    def advance_phase_marks(self, period: int, moves: Mapping[int, tuple[datetime | None, datetime]]) -> bool:
        with self._lock:
            if any(self._marks.get((period, shard)) != old for shard, (old, _) in moves.items()):
                return False
            for shard, (_, new) in moves.items():
                self._marks[(period, shard)] = store_instant(new)
            return True

    def _checked(self, schedule_id: str, expected_version: int | None) -> _Schedule:
        item = self._items.get(schedule_id)
        if item is None:
            raise NotFound(f"schedule/{schedule_id}")
        if expected_version is not None and item.version != expected_version:
            raise Conflict(
                f"schedule/{schedule_id} is at version {item.version}, not {expected_version}",
                current=conflict_current(item.doc, item.version),
            )
        return item


# --- request log --------------------------------------------------------------------------------


@dataclass
class _Request:
    fingerprint: str
    expires_at: int  # epoch seconds, as the TTL attribute keeps it
    status: int | None = None
    body: Any = None


class MemoryRequestLog:
    """`request_id` claims in a dict. An expired claim counts as absent for `claim` but is never
    dropped by itself (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Request] = {}

    def claim(
        self, key: str, fingerprint: str, *, now: datetime, expires_at: datetime
    ) -> RequestEntry | None:
        now_s, expires_s = epoch_seconds(now), epoch_seconds(expires_at)
        with self._lock:
            existing = self._items.get(key)
            if existing is None or existing.expires_at < now_s:
                self._items[key] = _Request(fingerprint, expires_s)
                return None
            return RequestEntry(key, existing.fingerprint, existing.status, json_copy(existing.body))

    def complete(self, key: str, status: int, body: Any) -> None:
        """Store the answer; a claim that is gone (released, expired) is left gone."""
        stored = json_copy(body)
        with self._lock:
            existing = self._items.get(key)
            if existing is not None:
                existing.status, existing.body = status, stored

    def release(self, key: str) -> None:
        """Forget an in-progress claim; a completed one keeps its answer."""
        with self._lock:
            existing = self._items.get(key)
            if existing is not None and existing.status is None:
                del self._items[key]


# --- runs ---------------------------------------------------------------------------------------
#
# Helpers shared with gnomon.adapters.dynamo: both stores order, bound and page runs by the same
# "time key" `<sortable nominal_time>#<run_id>` (the DynamoDB sort key is `r#` + it), and shard
# the `by_time` and `active` indexes alike.

TIME_SHARDS = 4
"""Shards of the DynamoDB `by_time` index (fixed: changing it would re-key every run)."""

_SORTABLE_WIDTH = len("2000-01-01T00:00:00.000Z")
_TIME_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z#.+", re.DOTALL)


def hold_key(until: datetime) -> str:
    """A hold's id: its expiry, sortable, then a random part ("<sortable until>#<hex>")."""
    return f"{sortable(until)}#{uuid.uuid4().hex}"


def run_time_key(nominal: datetime, run_id: str) -> str:
    """A run's order key and page key: `<sortable nominal_time>#<run_id>`; string order is
    (nominal_time, run_id) order because the time part has a fixed width."""
    return f"{sortable(nominal)}#{run_id}"


def split_run_time_key(key: str) -> tuple[datetime, str]:
    """(nominal_time, run_id) of a `run_time_key`; ValueError if `key` is not one (a page key
    the store did not hand out)."""
    if not _TIME_KEY.fullmatch(key):
        raise ValueError(f"not a run page key: {key!r}")
    when = datetime.strptime(key[:_SORTABLE_WIDTH], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return when, key[_SORTABLE_WIDTH + 1 :]


def run_partition(schedule_id: str | None, definition: str) -> str:
    """The partition a run lives in: `s#<schedule_id>`, or `d#<definition>` without a schedule."""
    return f"s#{schedule_id}" if schedule_id is not None else f"d#{definition}"


def ceil_instant(t: datetime) -> datetime:
    """`t` rounded up to the millisecond: stored instants are whole milliseconds, so
    `stored >= t` ⇔ `stored >= ceil_instant(t)` and `stored < t` ⇔ `stored < ceil_instant(t)`."""
    down = store_instant(t)
    return down if down == t.astimezone(UTC) else down + timedelta(milliseconds=1)


def run_key_range(start: datetime | None, end: datetime | None, after: str | None) -> tuple[str, str | None]:
    """The time keys a run list may return: `lower <= key < upper` (upper None = unbounded).
    `start` is inclusive and `end` exclusive on nominal_time; `after` (a page key) exclusive."""
    lower = sortable(ceil_instant(start)) if start is not None else ""
    uppers: builtins.list[str] = []
    if end is not None:
        uppers.append(sortable(ceil_instant(end)))  # every key with that time is above it
    if after is not None:
        split_run_time_key(after)  # refuse a key this store did not hand out
        uppers.append(after)
    return lower, min(uppers) if uppers else None


def check_run(rec: RunRecord) -> None:
    """Refuse what either store could not keep or find again alike: empty key strings, naive
    instants, and a scheduled-firing run id whose schedule or nominal time differs from the
    record's (the id alone locates such a run)."""
    for name in ("run_id", "definition", "status"):
        if not getattr(rec, name):
            raise ValueError(f"{name} must not be empty")
    if rec.schedule_id == "":
        raise ValueError("schedule_id must not be empty (None when there is none)")
    for t in (rec.nominal_time, rec.active_at, rec.expires_at):
        if t is not None and t.tzinfo is None:
            raise ValueError("naive datetime")
    parsed = parse_scheduled_run_id(rec.run_id)
    if parsed is not None:
        schedule_id, _, nominal = parsed
        if rec.schedule_id != schedule_id or store_instant(rec.nominal_time) != nominal:
            raise ValueError(f"run id {rec.run_id!r} names another schedule or nominal time than the record")


def check_run_location(rec: RunRecord, schedule_id: str | None, definition: str, nominal: datetime) -> None:
    """`update` may not move a run: its schedule_id, definition and nominal_time are fixed."""
    given = (rec.schedule_id, rec.definition, store_instant(rec.nominal_time))
    if given != (schedule_id, definition, nominal):
        raise ValueError(f"run/{rec.run_id}: schedule_id, definition and nominal_time cannot change")


def already_exists_run(run_id: str, doc: JSON) -> AlreadyExists:
    """The `AlreadyExists` of a run `create`: details carry the stored document, from which the
    caller decides what the duplicate means."""
    return AlreadyExists(f"run/{run_id} already exists", {"current": json_copy(doc)})


@dataclass
class _Run:
    doc: JSON
    schedule_id: str | None
    definition: str
    nominal_time: datetime
    status: str
    active_at: datetime | None
    expires_at: int | None  # epoch seconds, as the TTL attribute keeps it
    version: int

    def record(self, run_id: str) -> RunRecord:
        return RunRecord(
            run_id=run_id,
            doc=json_copy(self.doc),
            schedule_id=self.schedule_id,
            definition=self.definition,
            nominal_time=self.nominal_time,
            status=self.status,
            active_at=self.active_at,
            expires_at=datetime.fromtimestamp(self.expires_at, UTC) if self.expires_at is not None else None,
            version=self.version,
        )


class MemoryRunStore:
    """Runs in a dict behind one lock; lists sort by time key, `active()` filters by shard like
    the sharded index. Instants are kept as DynamoDB keeps them: nominal_time and active_at to the
    millisecond (their index keys), expires_at in whole epoch seconds (the TTL attribute)."""

    def __init__(self, shards: int = DEFAULT_SHARDS) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.shards = shards
        self._lock = threading.Lock()
        self._items: dict[str, _Run] = {}
        self._holds: dict[str, Hold] = {}

    def create(self, rec: RunRecord) -> RunRecord:
        check_run(rec)
        item = _Run(
            doc=json_copy(rec.doc),
            schedule_id=rec.schedule_id,
            definition=rec.definition,
            nominal_time=store_instant(rec.nominal_time),
            status=rec.status,
            active_at=store_instant(rec.active_at) if rec.active_at is not None else None,
            expires_at=epoch_seconds(rec.expires_at) if rec.expires_at is not None else None,
            version=1,
        )
        with self._lock:
            existing = self._items.get(rec.run_id)
            if existing is not None:
                raise already_exists_run(rec.run_id, existing.doc)
            self._items[rec.run_id] = item
            return item.record(rec.run_id)

    def get(self, run_id: str) -> RunRecord:
        with self._lock:
            item = self._items.get(run_id)
            if item is None:
                raise NotFound(f"run/{run_id}")
            return item.record(run_id)

    def update(self, rec: RunRecord, *, expected_version: int) -> RunRecord:
        check_run(rec)
        doc = json_copy(rec.doc)
        active_at = store_instant(rec.active_at) if rec.active_at is not None else None
        expires_at = epoch_seconds(rec.expires_at) if rec.expires_at is not None else None
        with self._lock:
            item = self._items.get(rec.run_id)
            if item is None:
                raise NotFound(f"run/{rec.run_id}")
            check_run_location(rec, item.schedule_id, item.definition, item.nominal_time)
            if item.version != expected_version:
                raise Conflict(
                    f"run/{rec.run_id} is at version {item.version}, not {expected_version}",
                    current=conflict_current(item.doc, item.version),
                )
            item.doc, item.status, item.active_at, item.expires_at = doc, rec.status, active_at, expires_at
            item.version += 1
            return item.record(rec.run_id)

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
        wanted = set(statuses) if statuses is not None else None
        with self._lock:
            keyed = sorted(
                (
                    (key, run_id)
                    for run_id, item in self._items.items()
                    if (schedule_id is None or item.schedule_id == schedule_id)
                    and (definition is None or item.definition == definition)
                    and (wanted is None or item.status in wanted)
                    and lower <= (key := run_time_key(item.nominal_time, run_id))
                    and (upper is None or key < upper)
                ),
                reverse=True,
            )[: limit + 1]
            items = [self._items[run_id].record(run_id) for _, run_id in keyed[:limit]]
        return Page(items, keyed[limit - 1][0] if len(keyed) > limit else None)

    def recent(self, schedule_id: str, *, limit: int, consistent: bool = True) -> builtins.list[RunRecord]:
        return self.list(schedule_id=schedule_id, after=None, limit=limit).items

    def delete(self, run_id: str, *, expected_version: int) -> None:
        from gnomon.adapters.runs_delete_memory import delete_run  # it imports this module

        delete_run(self, run_id, expected_version=expected_version)

    def active(self, shard: int, until: datetime, *, limit: int) -> builtins.list[RunRecord]:
        check_limit(limit)
        upper = due_upper_bound(store_instant(until))
        with self._lock:
            keyed = sorted(
                (key, run_id)
                for run_id, item in self._items.items()
                if item.active_at is not None
                and shard_of(run_id, self.shards) == shard
                and (key := run_time_key(item.active_at, run_id)) < upper
            )[:limit]
            return [self._items[run_id].record(run_id) for _, run_id in keyed]

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
        out: list[RunSample] = []
        after: str | None = None
        more = True
        while more and len(out) < limit:
            page = self.list(
                schedule_id=schedule_id,
                definition=definition,
                start=start,
                end=end,
                after=after,
                limit=min(1000, limit - len(out)),
            )
            out += [
                RunSample(r.nominal_time, r.status, start_lateness(r.doc), run_duration(r.doc))
                for r in page.items
            ]
            after = page.last_key
            more = after is not None
        return out, more  # more: runs past the `limit` newest

    def hold(self, run_ids: Sequence[str], until: datetime) -> str:
        hold_id = hold_key(store_instant(until))
        with self._lock:
            self._holds[hold_id] = Hold(hold_id, tuple(run_ids), store_instant(until))
        return hold_id

    def release(self, hold_id: str) -> None:
        with self._lock:
            self._holds.pop(hold_id, None)

    @contextlib.contextmanager
    def listed_together(
        self,
        run_ids: Sequence[str],
        retention_of: Callable[[str], int],
        definitions: Mapping[str, str] | None = None,
    ) -> Iterator[None]:
        yield  # every run is listed from memory alike

    def expired_holds(self, until: datetime, *, limit: int) -> builtins.list[Hold]:
        check_limit(limit)
        upper = due_upper_bound(store_instant(until))
        with self._lock:
            return [h for k, h in sorted(self._holds.items()) if k < upper][:limit]
