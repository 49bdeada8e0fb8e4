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
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
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


def shard_of(schedule_id: str, shards: int) -> int:
    """The due-index shard of a schedule: CRC-32 of its id (stable across processes and
    Python versions, unlike `hash()`) modulo `shards`."""
    return zlib.crc32(schedule_id.encode("utf-8")) % shards


@dataclass(frozen=True)
class ScheduleRecord:
    """A schedule as stored.

    `doc` is the schedule's JSON document (spec, policies, state, action, memo, timestamps).
    `next_fire_at` is the instant the ticker should next look at this schedule: the record is in
    the sharded "due" index under it, or absent from the index when None (paused without
    `until`, or nothing left to fire). `counters` are atomic-add counters kept beside the
    versioned document (adding to them does not change `version`). `phase` (period, phase in
    seconds) puts the record in the phase index too: the schedule fires at every instant t with
    t mod period == phase, and the ticker finds it there by its phase, through windows it
    tracks per period — an entry that never moves (see `gnomon.services.tick`).
    """

    schedule_id: str
    doc: JSON
    generation: str
    definition: str
    group: str
    next_fire_at: datetime | None
    version: int = 0
    counters: Mapping[str, int] = field(default_factory=dict)
    phase: tuple[int, int] | None = None
    phase_plan: list[Any] | None = None  # what the phase index carries for the ticker (`PhaseEntry`)


@dataclass(frozen=True)
class DueEntry:
    """One entry of the due index: a schedule whose `next_fire_at` is at or before a bound."""

    schedule_id: str
    next_fire_at: datetime


@dataclass(frozen=True)
class PhaseEntry:
    """One entry of the phase index: a schedule firing at every instant ≡ `phase` (mod its period).
    `plan` is what the ticker needs to plan a `phased` schedule's firings without reading it
    (projected into the index with the schedule's generation, definition and group; it changes
    only with the schedule's configuration)."""

    schedule_id: str
    phase: int
    plan: list[Any] | None = None
    generation: str | None = None
    definition: str | None = None
    group: str | None = None


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

    def get(self, schedule_id: str, *, consistent: bool = True) -> ScheduleRecord:
        """`NotFound(f"schedule/{id}")` if absent. `consistent=False` may answer a version up to
        about a second old (half the read cost on DynamoDB)."""
        ...

    def get_many(self, schedule_ids: Iterable[str], *, consistent: bool = True) -> dict[str, ScheduleRecord]:
        """Those of the schedules that exist, by id (BatchGetItem on DynamoDB: 100 a request)."""
        ...

    def update(
        self, rec: ScheduleRecord, *, expected_version: int | None, counters: Mapping[str, int] | None = None
    ) -> ScheduleRecord:
        """Replace doc / definition / group / next_fire_at if the stored version is
        `expected_version` (None = any); version + 1. `NotFound`; `Conflict(current=doc)`.
        Counters are not replaced; `counters` adds deltas to them in the same atomic write."""
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

    def phased(
        self, period: int, shard: int, low: int, high: int, *, limit: int, after: PhaseEntry | None = None
    ) -> builtins.list[PhaseEntry]:
        """Phase-index entries of one period and shard with low <= phase <= high (seconds), by
        phase then id, after `after`."""
        ...

    def phase_periods(self) -> builtins.set[int]:
        """The periods the ticker scans (registered with `add_phase_period`)."""
        ...

    def add_phase_period(self, period: int) -> None:
        """Register a period (idempotent)."""
        ...

    def phase_marks(self, periods: Iterable[int]) -> dict[tuple[int, int], datetime]:
        """The watermarks of those periods' shards, by (period, shard), of those that have one:
        every firing of that family at or before it was enqueued."""
        ...

    def advance_phase_marks(self, period: int, moves: Mapping[int, tuple[datetime | None, datetime]]) -> bool:
        """Move the watermarks of a period's shards, each from its expected value (None: none
        yet) to its new one, in one conditional write; False (nothing moved) if one of them was
        not where expected (another ticker moved it)."""
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


@dataclass(frozen=True)
class RunRecord:
    """A run as stored.

    `doc` is the run resource (CONTRACT.md §6 fields, plus `attempts` and `events` for history).
    Location: a scheduled firing's run lives in partition `s#<schedule_id>`, an executed one in
    `d#<definition>`, sorted by `nominal_time` then `run_id`; runs whose id does not encode the
    location (`gnomon.domain.runs.parse_scheduled_run_id` is None) also get a pointer item, so
    `get(run_id)` needs no index. `active_at` puts the run into the sparse `active` index at that
    instant (a running attempt's lease expiry, or when a pending attempt is due): the ticker's
    sweep finds lost and long-delayed attempts there. None = not active (closed runs).
    `expires_at` is the TTL (retention) instant.
    """

    run_id: str
    doc: JSON
    schedule_id: str | None
    definition: str
    nominal_time: datetime
    status: str
    active_at: datetime | None = None
    expires_at: datetime | None = None
    version: int = 0


@dataclass(frozen=True)
class RunSample:
    """What the run metrics need of one run, read without its document where the store can
    (`RunStore.run_samples`)."""

    nominal_time: datetime
    status: str
    # (scheduled_time, start lateness ms): `gnomon.domain.runs.start_lateness`; None = never started
    lateness: tuple[datetime, float] | None
    duration_ms: int | None  # `gnomon.domain.runs.run_duration`; None when asked without durations


@dataclass(frozen=True)
class Hold:
    """A worker batch's lease on the runs it claims (`RunStore.hold`): while it holds, its runs
    need no entry of their own in the `active` index; once `until` passed without a release
    (the worker died), the sweep looks at each of them."""

    hold_id: str
    run_ids: tuple[str, ...]
    until: datetime


class RunStore(Protocol):
    """Runs, their history, and the sparse `active` index of runs that still need attention."""

    shards: int

    def create(self, rec: RunRecord) -> RunRecord:
        """Store with version 1 (plus its pointer item when the id does not encode the location),
        atomically. `AlreadyExists` (with `details={"current": doc}`) if the run id exists."""
        ...

    def get(self, run_id: str) -> RunRecord:
        """`NotFound(f"run/{run_id}")` if absent."""
        ...

    def update(self, rec: RunRecord, *, expected_version: int) -> RunRecord:
        """Replace doc / status / active_at / expires_at if the stored version is `expected_version`;
        version + 1. `NotFound`; `Conflict(current=doc)` on a mismatch."""
        ...

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
        """Newest `nominal_time` first, then `run_id` descending; `start` inclusive, `end` exclusive.
        With neither schedule_id nor definition, every run (merged across definitions)."""
        ...

    def recent(self, schedule_id: str, *, limit: int, consistent: bool = True) -> builtins.list[RunRecord]:
        """The schedule's newest runs by nominal time (for describe's recent_actions);
        `consistent` False: an eventually consistent read (half the read units), which may
        miss the latest writes."""
        ...

    def active(self, shard: int, until: datetime, *, limit: int) -> builtins.list[RunRecord]:
        """Runs of one shard whose `active_at` <= until, oldest first."""
        ...

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
        """One `RunSample` per run with start <= nominal_time < end, newest first, at most
        `limit` (then True: truncated) — read without their documents where the store can.
        `durations=False` may leave `duration_ms` None (a store then spares the reads that
        only a duration would need)."""
        ...

    def hold(self, run_ids: Sequence[str], until: datetime) -> str:
        """Store a batch's hold on `run_ids` until `until`; answers its id."""
        ...

    def listed_together(
        self,
        run_ids: Sequence[str],
        retention_of: Callable[[str], int],
        definitions: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[None]:
        """A block in which the runs among `run_ids` (a worker batch's firings) that `create`
        makes may be listed across schedules together (one write for the batch instead of an
        index entry each); `retention_of(definition)` answers how many days that definition's
        runs are kept, `definitions` the definition of each run id where known. Lists answer
        the same either way."""
        ...

    def release(self, hold_id: str) -> None:
        """Drop a hold (gone already: nothing to do)."""
        ...

    def expired_holds(self, until: datetime, *, limit: int) -> builtins.list[Hold]:
        """Holds whose `until` <= until, oldest first."""
        ...

    def delete(self, run_id: str, *, expected_version: int) -> None:
        """Delete a run (with its pointer item) if it is at `expected_version` (purge, the
        retention sweep). `NotFound`; `Conflict(current=doc)` on a mismatch."""
        ...


@dataclass(frozen=True)
class PlannedFiring:
    """A scheduled firing the ticker handed to the firing queue (its message is on its way).

    The worker checks it against the schedule on delivery: it runs only if the schedule still
    has this `generation` and `config_version` and is not paused then."""

    schedule_id: str
    generation: str
    config_version: int
    nominal_time: datetime
    scheduled_time: datetime
    group: str
    definition: str


@dataclass(frozen=True)
class PlanWindow:
    """The planned firings of a window, by (scheduled_time, schedule_id, nominal_time).
    `complete` False: more were recorded than the caller's limit allowed to read."""

    firings: builtins.list[PlannedFiring]
    complete: bool


class PlanLog(Protocol):
    """What the ticker enqueued, by scheduled time: `/v1/upcoming` lists firings already handed
    to the queue from here (the due index only holds each schedule's next firing *not yet*
    enqueued). Written once per page of planned schedules, a few small items whatever the
    number of firings, and forgotten (TTL) an hour after the last firing of an item."""

    def record(self, firings: builtins.list[PlannedFiring], *, now: datetime) -> None:
        """Remember firings just enqueued (any order; none: no write). Unconditional: recording
        a firing twice (a re-plan after a conflict) is harmless, readers deduplicate."""
        ...

    def window(self, start: datetime, end: datetime, *, now: datetime, limit: int) -> PlanWindow:
        """The recorded firings with `start` ≤ scheduled_time < `end` whose record has not
        expired at `now`, sorted; after `limit` firings read, stop (`complete` False)."""
        ...


@dataclass(frozen=True)
class OutgoingMessage:
    """A message for the firing queue, delivered `delay_seconds` (0–900) after sending."""

    body: JSON
    delay_seconds: int = 0


class FiringQueue(Protocol):
    """The SQS firing queue (sending side; the event source mapping does the receiving)."""

    def send(self, messages: builtins.list[OutgoingMessage]) -> None:
        """Send all messages (in batches of 10); raise if any could not be sent."""
        ...


@dataclass(frozen=True)
class Invocation:
    """One attempt of a run, as a target invoker needs it."""

    run_id: str
    attempt: int
    definition: str
    schedule_id: str | None
    nominal_time: datetime
    scheduled_time: datetime
    previous_nominal_time: datetime | None
    last_success_time: datetime | None
    input: Any
    target: JSON
    signing_secret: str
    callback_token: str
    timeout_seconds: float


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `accepted` = an http 202: finished later through the callback."""

    status: str  # "completed" | "failed" | "timed_out" | "accepted"
    result: Any = None
    error: JSON | None = None
    retryable: bool = True
    retry_after: float | None = None


class TargetInvoker(Protocol):
    def invoke(self, inv: Invocation) -> Outcome:
        """Call the target once; never raise for the target's own failures."""
        ...


@dataclass(frozen=True)
class DeadLetter:
    """A message the firing queue gave up on (after `maxReceiveCount` deliveries)."""

    message_id: str
    body: str
    receive_count: int
    sent_at: datetime | None


class DeadLetterQueue(Protocol):
    def peek(self, limit: int) -> builtins.list[DeadLetter]:
        """Up to `limit` dead letters, left in the queue."""
        ...

    def redrive(self, limit: int) -> int:
        """Move up to `limit` dead letters back to the firing queue; answers how many moved."""
        ...
