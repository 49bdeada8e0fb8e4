"""Run statistics from counters maintained on write (CONTRACT.md §4, `GET /v1/stats`).

Nothing here scans runs. Two kinds of counter items, kept per definition ("def#<name>"; every
run's figures are their sum over the definitions, read together — one counter write per batch
instead of two):

- gauges `stats#<scope>#gauge` with `pending` and `running`: +1 when a run enters the status,
  −1 when it leaves it;
- closes `stats#<scope>#day#<UTC date>` with one counter per UTC quarter hour of that day:
  `c<q>` (completed) and `f<q>` (failed or timed_out), q = 0..95, bumped in the quarter hour of
  the run's `closed_at`. A retry takes the close back out of its quarter hour, so the counters
  always equal "runs whose current `closed_at` falls in the window", as a scan would count them.

Today in a zone is [local midnight, next local midnight) converted to UTC: a whole number of
quarter hours for every zone in use (all UTC offsets and DST shifts today are multiples of
15 minutes: Kathmandu +05:45, Chatham +12:45, Lord Howe's 30-minute shift), so summing the
quarter hours is exact; a day spans 2 or 3 day items. (Historic local-mean-time offsets are not
quarter hours: a day in such a zone is read from the quarter hour holding its midnight.)

Where the counters are written: `CountingRunStore` wraps the run store, so every status change
that reaches the store — worker, ticker, API — is counted, and none can be forgotten by a code
path added later. The counter write follows the run write; a process dying in between loses
that one increment (the counters are statistics, not state: nothing reads them to decide).

Per batch (`CountingRunStore.deferred()`, used by the worker around each SQS batch): the deltas
are summed in memory and written once at the end — a run created `running` and closed
`completed` in the same batch nets to nothing on the gauges and to one `c<q>` per day item, so a
batch of ten firings of one definition costs one counter write instead of sixty. A worker dying mid-batch loses that batch's increments, as it would lose one above.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gnomon.domain.errors import InvalidArgument
from gnomon.domain.model import NAME_RE
from gnomon.domain.runs import RunStatus
from gnomon.domain.timefmt import parse
from gnomon.ports import JSON, Clock, Page, RunRecord, RunStore

log = logging.getLogger("gnomon.stats")
_NAME = re.compile(NAME_RE)

QUARTER = timedelta(minutes=15)
DAY_ITEM_TTL = timedelta(days=3)
"""A day item outlives every zone's day that reads it (UTC−12 … UTC+14 and a 25-hour day)."""

GAUGED = frozenset({RunStatus.pending.value, RunStatus.running.value})
COMPLETED = frozenset({RunStatus.completed.value})
FAILED = frozenset({RunStatus.failed.value, RunStatus.timed_out.value})


class StatsStore(Protocol):
    """Named integer counters in small items, changed by atomic adds (DynamoDB `ADD`)."""

    def add(self, key: str, deltas: Mapping[str, int], *, expires_at: datetime | None = None) -> None:
        """Atomically add each delta to the item's counter of that name (a missing item or
        counter counts as 0); `expires_at` sets the item's TTL."""
        ...

    def get_many(self, keys: list[str]) -> dict[str, dict[str, int]]:
        """The counters of the items that exist among `keys` (at most 100 keys)."""
        ...


# --- keys ---------------------------------------------------------------------------------------


def scope(definition: str) -> str:
    """The counters' scope: one definition's (every run's figures are the definitions' sum)."""
    return f"def#{definition}"


def gauge_key(scope_: str) -> str:
    return f"stats#{scope_}#gauge"


def day_key(scope_: str, day: date) -> str:
    return f"stats#{scope_}#day#{day.isoformat()}"


def quarter_of(t: datetime) -> tuple[date, int]:
    """The UTC day of `t` and its quarter hour in that day (0..95)."""
    u = t.astimezone(UTC)
    return u.date(), (u.hour * 60 + u.minute) // 15


# --- writing ------------------------------------------------------------------------------------


def transition_deltas(
    old_status: str | None,
    new_status: str | None,
    now: datetime,
    *,
    old_closed_at: datetime | None = None,
    new_closed_at: datetime | None = None,
) -> tuple[dict[str, int], dict[date, dict[str, int]]]:
    """(gauge deltas, close deltas per UTC day) of a run moving from `old_status` (None: it is
    being created) to `new_status` (None: it is being deleted)."""
    gauge: dict[str, int] = {}
    days: dict[date, dict[str, int]] = {}
    if old_status == new_status:
        return gauge, days

    def bump(t: datetime, prefix: str, delta: int) -> None:
        day, q = quarter_of(t)
        counters = days.setdefault(day, {})
        name = f"{prefix}{q:02d}"
        counters[name] = counters.get(name, 0) + delta

    if old_status in GAUGED:
        gauge[old_status] = gauge.get(old_status, 0) - 1
    if new_status in GAUGED:
        gauge[new_status] = gauge.get(new_status, 0) + 1
    # A run leaving a counted close (retry; a delete does not: the close happened) un-counts it.
    if new_status is not None and old_status in COMPLETED | FAILED and old_closed_at is not None:
        bump(old_closed_at, "c" if old_status in COMPLETED else "f", -1)
    if new_status in COMPLETED | FAILED:
        bump(new_closed_at or now, "c" if new_status in COMPLETED else "f", +1)
    return gauge, days


def record_transition(
    stats: StatsStore,
    old_status: str | None,
    new_status: str | None,
    definition: str,
    now: datetime,
    *,
    old_closed_at: datetime | None = None,
    new_closed_at: datetime | None = None,
) -> None:
    """Count a run's status change (after the run write succeeded): the `pending`/`running`
    gauges, and a close into the quarter hour of its `closed_at` (default `now`). `old_status`
    None = the run was just created. Idempotent only in the sense that an unchanged status
    counts nothing: call it once per successful write."""
    gauge, days = transition_deltas(
        old_status, new_status, now, old_closed_at=old_closed_at, new_closed_at=new_closed_at
    )
    gauge = {k: v for k, v in gauge.items() if v}
    scope_ = scope(definition)
    if gauge:
        stats.add(gauge_key(scope_), gauge)
    for day, counters in days.items():
        expires = datetime.combine(day, time(), UTC) + timedelta(days=1) + DAY_ITEM_TTL
        stats.add(day_key(scope_, day), counters, expires_at=expires)


class DeferredStats:
    """A `StatsStore` that sums the deltas added to it until `flush` writes them, one `add` per
    item (zero sums are not written; the latest expiry of an item wins)."""

    def __init__(self, inner: StatsStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._deltas: dict[str, dict[str, int]] = {}
        self._expires: dict[str, datetime | None] = {}

    def add(self, key: str, deltas: Mapping[str, int], *, expires_at: datetime | None = None) -> None:
        with self._lock:
            sums = self._deltas.setdefault(key, {})
            for name, delta in deltas.items():
                sums[name] = sums.get(name, 0) + int(delta)
            prior = self._expires.get(key)
            if expires_at is not None and (prior is None or expires_at > prior):
                self._expires[key] = expires_at
            else:
                self._expires.setdefault(key, prior)

    def get_many(self, keys: list[str]) -> dict[str, dict[str, int]]:
        return self._inner.get_many(keys)

    def flush(self) -> None:
        """Write what was summed (errors are logged: statistics never fail a batch)."""
        with self._lock:
            deltas, expires = self._deltas, self._expires
            self._deltas, self._expires = {}, {}
        for key, sums in deltas.items():
            nonzero = {k: v for k, v in sums.items() if v}
            if not nonzero:
                continue
            try:
                self._inner.add(key, nonzero, expires_at=expires.get(key))
            except Exception:
                log.exception("stats: could not write the counters of %s", key)


# --- reading ------------------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; unknown → 422 `query.timezone`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument("query.timezone", f"unknown time zone {name!r}") from None


def local_day(tz: ZoneInfo, now: datetime) -> tuple[date, datetime, datetime]:
    """The zone's current date and its [start, end) in UTC. A midnight that does not exist
    (clocks jump at 00:00) starts the day at the first instant that does."""
    today = now.astimezone(tz).date()
    start = datetime.combine(today, time(), tz).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(), tz).astimezone(UTC)
    return today, start, end


def quarters(start: datetime, end: datetime) -> Iterator[tuple[date, int]]:
    """The UTC quarter hours covering [start, end) (start rounded down to a quarter hour)."""
    t = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
    while t < end:
        yield quarter_of(t)
        t += QUARTER


class Stats:
    """`GET /v1/stats`: gauges and today's closes, read from a handful of counter items."""

    def __init__(
        self, store: StatsStore, clock: Clock, definitions: Callable[[], Sequence[str]] = lambda: ()
    ) -> None:
        self._store = store
        self._clock = clock
        self._definitions = definitions  # every definition's name: the scopes every run sums

    def today(self, timezone: str | None, definition: str | None) -> JSON:
        name = "UTC" if timezone is None else timezone
        tz = zone(name)
        if definition is not None and not _is_name(definition):
            raise InvalidArgument("query.definition", "not a definition name")
        today, start, end = local_day(tz, self._clock.now())
        slots = list(quarters(start, end))
        scopes = [scope(definition)] if definition is not None else [scope(d) for d in self._definitions()]
        keys = [
            key
            for scope_ in scopes
            for key in (gauge_key(scope_), *dict.fromkeys(day_key(scope_, d) for d, _ in slots))
        ]
        items: dict[str, dict[str, int]] = {}
        for i in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            items.update(self._store.get_many(keys[i : i + 100]))
        running = pending = completed = failed = 0
        for scope_ in scopes:
            gauge = items.get(gauge_key(scope_), {})
            running += max(0, gauge.get(RunStatus.running.value, 0))
            pending += max(0, gauge.get(RunStatus.pending.value, 0))
            for d, q in slots:
                counters = items.get(day_key(scope_, d), {})
                completed += counters.get(f"c{q:02d}", 0)
                failed += counters.get(f"f{q:02d}", 0)
        return {
            "timezone": name,
            "running": running,
            "pending": pending,
            "completed_today": max(0, completed),
            "failed_today": max(0, failed),
            "date": today.isoformat(),
        }


def _is_name(value: str) -> bool:
    return _NAME.fullmatch(value) is not None


# --- the counting run store -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    version: int
    status: str
    closed_at: datetime | None
    definition: str

    @classmethod
    def of(cls, rec: RunRecord) -> _Seen:
        closed = rec.doc.get("closed_at")
        return cls(rec.version, rec.status, parse(closed) if closed else None, rec.definition)


class CountingRunStore:
    """A `RunStore` that counts every status change it writes (see the module docstring).

    Each update is conditioned on the version its caller read, so the status it replaces is
    the one stored at that version: the store remembers (version, status, closed_at) of the
    runs it hands out and writes, and reads the run only when it has not seen that version
    (a cache miss costs one read; a version it cannot tell is logged, not guessed).
    Counter writes never fail the run write they follow: errors are logged."""

    def __init__(
        self,
        inner: RunStore,
        stats: StatsStore,
        clock: Clock,
        *,
        remember: int = 4096,
        listeners: Sequence[Callable[[str | None, RunRecord], None]] = (),
    ) -> None:
        self._inner = inner
        self._listeners = tuple(listeners)  # `listener(previous status, run)` on every change
        self._stats = stats
        self._clock = clock
        self._limit = remember
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._deferred = DeferredStats(stats)
        self._depth = 0  # open `deferred()` blocks

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Sum the counter changes of the block (and of any block overlapping it) and write them
        once when it ends (see the module docstring)."""
        with self._lock:
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
            self._deferred.flush()

    @property
    def shards(self) -> int:
        return self._inner.shards

    @property
    def inner(self) -> RunStore:
        """The wrapped store."""
        return self._inner

    def create(self, rec: RunRecord) -> RunRecord:
        saved = self._inner.create(rec)
        self._remember(saved)
        self._count(None, saved)
        return saved

    def get(self, run_id: str) -> RunRecord:
        return self._remember(self._inner.get(run_id))

    def update(self, rec: RunRecord, *, expected_version: int) -> RunRecord:
        old = self._known(rec.run_id, expected_version)
        saved = self._inner.update(rec, expected_version=expected_version)
        self._remember(saved)
        if old is None:
            log.warning("stats: run %s changed from an unknown version %d", rec.run_id, expected_version)
        else:
            self._count(old, saved)
        return saved

    def delete(self, run_id: str, *, expected_version: int) -> None:
        """Delete through the wrapped store (which must have `delete`); gauges follow when an
        open run is deleted, closes stay counted (they happened)."""
        old = self._known(run_id, expected_version)
        self._inner.delete(run_id, expected_version=expected_version)  # type: ignore[attr-defined,unused-ignore]
        with self._lock:
            self._seen.pop(run_id, None)
        if old is not None and old.status in GAUGED:
            self._write(old.status, None, old.definition, None, None)

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
        page = self._inner.list(
            schedule_id=schedule_id,
            definition=definition,
            statuses=statuses,
            start=start,
            end=end,
            after=after,
            limit=limit,
        )
        for r in page.items:
            self._remember(r)
        return page

    def recent(self, schedule_id: str, *, limit: int, consistent: bool = True) -> builtins.list[RunRecord]:
        got = self._inner.recent(schedule_id, limit=limit, consistent=consistent)
        # an eventually consistent read may answer an older version: not one to count from
        return [self._remember(r) for r in got] if consistent else got

    def active(self, shard: int, until: datetime, *, limit: int) -> builtins.list[RunRecord]:
        return [self._remember(r) for r in self._inner.active(shard, until, limit=limit)]

    def __getattr__(self, name: str) -> Any:
        # Methods added to the run store later pass through (they are not counted).
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    # internals

    def _remember(self, rec: RunRecord) -> RunRecord:
        seen = _Seen.of(rec)
        with self._lock:
            self._seen[rec.run_id] = seen
            self._seen.move_to_end(rec.run_id)
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)
        return rec

    def _known(self, run_id: str, version: int) -> _Seen | None:
        with self._lock:
            seen = self._seen.get(run_id)
        if seen is not None and seen.version == version:
            return seen
        try:
            current = self._inner.get(run_id)
        except Exception:  # NotFound and the like: the write will say so itself
            return None
        return _Seen.of(current) if current.version == version else None

    def _count(self, old: _Seen | None, new: RunRecord) -> None:
        previous = old.status if old else None
        if previous != new.status:
            for listener in self._listeners:
                try:
                    listener(previous, new)
                except Exception:  # a listener never fails the run write it follows
                    log.exception("run status listener failed for %s", new.run_id)
        closed = new.doc.get("closed_at")
        self._write(
            old.status if old else None,
            new.status,
            new.definition,
            old.closed_at if old else None,
            parse(closed) if closed else None,
        )

    def _write(
        self,
        old_status: str | None,
        new_status: str | None,
        definition: str,
        old_closed_at: datetime | None,
        new_closed_at: datetime | None,
    ) -> None:
        if old_status == new_status:
            return
        with self._lock:
            target: StatsStore = self._deferred if self._depth else self._stats
        try:
            record_transition(
                target,
                old_status,
                new_status,
                definition,
                self._clock.now(),
                old_closed_at=old_closed_at,
                new_closed_at=new_closed_at,
            )
        except Exception:  # statistics must never fail a run's write
            log.exception("stats: could not count %s → %s", old_status, new_status)
