"""The ports the services need: stores, queue, clock.

Every store method that mutates is a conditional write. A failed condition raises a domain error
from `gnomon.domain.errors` (`Conflict` carrying the current document, `AlreadyExists`,
`NotFound`) — never a bare driver error. Documents are plain JSON dicts; the services own their
shape, the stores own keys, versions and indexes.

Implementations: `gnomon.adapters.memory` (unit tests, the fake) and `gnomon.adapters.dynamo`
(pynamodb over DynamoDB / moto). `tests/contract/` runs ONE suite against both.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")

JSON = dict[str, Any]


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list. `last_key` is the store's raw continuation (None = no more);
    the API wraps it in a signed, opaque page token."""

    items: list[T]
    last_key: str | None


@dataclass(frozen=True)
class CatalogRecord:
    """A named, versioned document of the catalog: a definition, calendar or group."""

    kind: str
    name: str
    doc: JSON
    version: int


@dataclass(frozen=True)
class ScheduleRecord:
    """A schedule as stored.

    `doc` is the schedule's JSON document (spec, policies, state, action, memo, timestamps).
    `next_fire_at` is the instant the ticker should next look at this schedule: the record is in
    the sharded "due" index under it, or absent from the index when None (paused without
    `until`, or nothing left to fire). `counters` are atomic-add counters kept beside the
    versioned document (adding to them does not change `version`).
    """

    schedule_id: str
    doc: JSON
    generation: str
    definition: str
    group: str
    next_fire_at: datetime | None
    version: int = 0
    counters: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DueEntry:
    """One entry of the due index: a schedule whose `next_fire_at` is at or before a bound."""

    schedule_id: str
    next_fire_at: datetime


@dataclass(frozen=True)
class RequestEntry:
    """A recorded mutating request (`request_id` idempotency).

    `status` None means the first call is still in progress."""

    key: str
    fingerprint: str
    status: int | None
    body: Any


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class CatalogStore(Protocol):
    """Named, versioned documents with an audit trail of every version (definitions, calendars,
    groups). `kind` separates the namespaces.

    Each create of a name begins a new incarnation at version 1 (a name deleted and created
    again starts over at 1); the audit trail keeps every version of every incarnation."""

    def create(self, kind: str, name: str, doc: JSON, *, tags: list[str] | None = None) -> CatalogRecord:
        """Store version 1 of a new incarnation (and its audit copy), also when the name existed
        before and was deleted. `AlreadyExists` if the name is taken."""
        ...

    def get(self, kind: str, name: str) -> CatalogRecord:
        """The current version. `NotFound(f"{kind}/{name}")` if absent."""
        ...

    def replace(
        self, kind: str, name: str, doc: JSON, *, expected_version: int | None, tags: list[str] | None = None
    ) -> CatalogRecord:
        """Store version n+1 (and its audit copy) if the current version is `expected_version`
        (None = whatever it is). `NotFound` if absent; `Conflict(current=doc)` on a mismatch."""
        ...

    def delete(self, kind: str, name: str, *, expected_version: int | None = None) -> None:
        """Delete the current version (the audit trail stays). `NotFound`; `Conflict` on mismatch."""
        ...

    def list(
        self, kind: str, *, after: str | None, limit: int, tag: str | None = None
    ) -> Page[CatalogRecord]:
        """Current versions sorted by name, names > `after`; `tag` filters (pages may be short)."""
        ...

    def versions(self, kind: str, name: str, *, after: str | None, limit: int) -> Page[CatalogRecord]:
        """Every stored version of every incarnation, newest first: the current (or last)
        incarnation's versions newest first, then the previous incarnation's, and so on; so
        version numbers may repeat (create, replace, delete, create, replace → 2, 1, 2, 1).
        `after` is a `last_key` this method returned (opaque; ValueError if it is not one).
        `NotFound` if the name never existed."""
        ...


class ScheduleStore(Protocol):
    """Schedules, with the sharded due index the ticker queries instead of scanning."""

    shards: int

    def create(self, rec: ScheduleRecord) -> ScheduleRecord:
        """Store with version 1. `AlreadyExists` if the id is taken."""
        ...

    def get(self, schedule_id: str) -> ScheduleRecord:
        """`NotFound(f"schedule/{id}")` if absent."""
        ...

    def update(self, rec: ScheduleRecord, *, expected_version: int | None) -> ScheduleRecord:
        """Replace doc / definition / group / next_fire_at if the stored version is
        `expected_version` (None = any); version + 1. `NotFound`; `Conflict(current=doc)`.
        Counters are not touched."""
        ...

    def delete(self, schedule_id: str, *, expected_version: int | None = None) -> None:
        """`NotFound`; `Conflict` on a version mismatch."""
        ...

    def list(
        self, *, after: str | None, limit: int, group: str | None = None, definition: str | None = None
    ) -> Page[ScheduleRecord]:
        """Sorted by schedule_id, ids > `after`, filtered by group and/or definition."""
        ...

    def ids_using_definition(self, definition: str, *, limit: int) -> builtins.list[str]:
        """Up to `limit` schedule ids whose definition is `definition` (sorted)."""
        ...

    def due(
        self, shard: int, until: datetime, *, limit: int, after: DueEntry | None = None
    ) -> builtins.list[DueEntry]:
        """Entries of one shard with next_fire_at <= until, oldest first, after `after`."""
        ...

    def add_counters(self, schedule_id: str, deltas: Mapping[str, int]) -> None:
        """Atomically add to named counters (no version change). Missing schedule: no-op."""
        ...


class RequestLog(Protocol):
    """`request_id` idempotency: first call claims the key, replays read what it answered."""

    def claim(
        self, key: str, fingerprint: str, *, now: datetime, expires_at: datetime
    ) -> RequestEntry | None:
        """Record an in-progress request that expires at `expires_at`. Returns None when claimed
        now, or the entry stored under `key`. A stored claim whose `expires_at` is before `now`
        counts as absent (it is overwritten and None is returned); both instants are compared in
        whole epoch seconds, the precision of DynamoDB's TTL attribute. Aware datetimes only."""
        ...

    def complete(self, key: str, status: int, body: Any) -> None:
        """Store the answer of a claimed request."""
        ...

    def release(self, key: str) -> None:
        """Forget a claim whose request failed (so a retry may run it)."""
        ...
