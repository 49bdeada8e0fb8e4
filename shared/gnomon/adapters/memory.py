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
order the due index, order and page the audit trail, and expire claims identically.
"""

from __future__ import annotations

import builtins
import json
import math
import re
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.timefmt import sortable
from gnomon.ports import JSON, CatalogRecord, DueEntry, Page, RequestEntry, ScheduleRecord

DEFAULT_SHARDS = 8


# --- helpers shared with gnomon.adapters.dynamo -------------------------------------------------


def shard_of(schedule_id: str, shards: int) -> int:
    """The due-index shard of a schedule: CRC-32 of its id (stable across processes and
    Python versions, unlike `hash()`) modulo `shards`."""
    return zlib.crc32(schedule_id.encode("utf-8")) % shards


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
        )


class MemoryScheduleStore:
    """Schedules in a dict behind one lock; `due()` filters by shard like the sharded index."""

    def __init__(self, shards: int = DEFAULT_SHARDS) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.shards = shards
        self._lock = threading.Lock()
        self._items: dict[str, _Schedule] = {}

    def create(self, rec: ScheduleRecord) -> ScheduleRecord:
        check_schedule(rec)
        item = _Schedule(
            doc=json_copy(rec.doc),
            generation=rec.generation,
            definition=rec.definition,
            group=rec.group,
            next_fire_at=store_instant(rec.next_fire_at) if rec.next_fire_at is not None else None,
            version=1,
            counters={k: int(v) for k, v in rec.counters.items()},
        )
        with self._lock:
            if rec.schedule_id in self._items:
                raise AlreadyExists(
                    f"schedule/{rec.schedule_id} already exists", {"resource": f"schedule/{rec.schedule_id}"}
                )
            self._items[rec.schedule_id] = item
            return item.record(rec.schedule_id)

    def get(self, schedule_id: str) -> ScheduleRecord:
        with self._lock:
            item = self._items.get(schedule_id)
            if item is None:
                raise NotFound(f"schedule/{schedule_id}")
            return item.record(schedule_id)

    def update(self, rec: ScheduleRecord, *, expected_version: int | None) -> ScheduleRecord:
        check_schedule(rec)
        doc = json_copy(rec.doc)
        next_fire_at = store_instant(rec.next_fire_at) if rec.next_fire_at is not None else None
        with self._lock:
            item = self._checked(rec.schedule_id, expected_version)
            item.doc, item.next_fire_at = doc, next_fire_at
            item.generation, item.definition, item.group = rec.generation, rec.definition, rec.group
            item.version += 1
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
