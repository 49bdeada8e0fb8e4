"""Admin use cases: named calendars, schedule groups and their quotas, bulk actions over
schedules, and the upcoming firings across all schedules (CONTRACT.md §4, §5).

Calendars and groups live in the catalog beside definitions (kinds `calendar` and `group`), so
they are versioned and audited like definitions. Nothing here indexes what the stores do not:
the scans that have no index (who references a calendar, how many schedules each group holds)
are bounded by `SCAN_LIMIT` and say so in their answers.
"""

from __future__ import annotations

import builtins
import functools
import heapq
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import islice
from typing import Any, Literal

from pydantic import ValidationError

from gnomon.domain.errors import AlreadyExists, Conflict, InUse, InvalidArgument, InvalidPageToken, NotFound
from gnomon.domain.model import ScheduleUpdate
from gnomon.domain.spec import Calendar, CompiledSpec, Spec, compile_calendar, compile_spec
from gnomon.domain.timefmt import EPOCH, fmt, parse
from gnomon.ports import (
    JSON,
    CatalogRecord,
    CatalogStore,
    Clock,
    PlanLog,
    PlannedFiring,
    ScheduleRecord,
    ScheduleStore,
)
from gnomon.services.catalog import CALENDAR
from gnomon.services.common import Caller
from gnomon.services.pagetoken import PageTokens
from gnomon.services.schedules import Schedules
from gnomon.services.tick import phase_ranges

GROUP = "group"
# Schedules read by a scan that no index can replace (a calendar's users, the group counts of
# `GET /v1/groups`). 100 pages of 1 000: a few seconds on DynamoDB, well inside the API's 29 s.
SCAN_LIMIT = 100_000
SCAN_PAGE = 1000
IN_USE_LISTED = 100  # schedule ids an `in_use` error names
MAX_BULK = 1000  # schedules per bulk call (CONTRACT.md §4)
BULK_BUDGET_SECONDS = 20.0  # a bulk call stops early (with a page token) past this; the API has 29 s
UPCOMING_WINDOW = timedelta(hours=24)
PHASE_LOOKBACK = timedelta(minutes=15)
MAX_UPCOMING_SCHEDULES = 10_000  # schedules one upcoming page may read (due, or with enqueued firings)
# Enqueued firings (plan-log entries) one upcoming page may read: a 15-minute horizon of
# 100 000 firings is ~110 per second, beyond what one window listing is for.
MAX_UPCOMING_PLANNED = 100_000
# Upcoming counts a schedule's `remaining_actions` from now up to this many firings; a larger
# one is treated as unlimited (counting that far ahead would cost more than it could matter).
MAX_REMAINING_COUNTED = 10_000

_MICRO = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)


# ---------------------------------------------------------------------------------------------
# Named calendars
# ---------------------------------------------------------------------------------------------


def check_calendars(calendars: Sequence[Calendar], field: str = "calendars") -> None:
    """Every calendar must compile and be able to match; 422 names `calendars[i].<field>`."""
    errors: list[dict[str, str]] = []
    for i, calendar in enumerate(calendars):
        try:
            compile_calendar(calendar, f"{field}[{i}]")
        except InvalidArgument as exc:
            errors.extend(exc.details)
    if errors:
        raise InvalidArgument.many(errors)


def calendar_view(rec: CatalogRecord) -> JSON:
    """A named calendar as the API answers it."""
    doc = rec.doc
    return {
        "name": rec.name,
        "description": doc.get("description", ""),
        "calendars": doc.get("calendars", []),
        "version": rec.version,
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
        "updated_by": doc.get("updated_by"),
        "identity": doc.get("identity"),
    }


class NamedCalendars:
    """Create, read, replace, delete and list named calendars (`exclude_calendar_refs`).

    Replacing a calendar re-plans the schedules that reference it (`refresh`), so the change
    takes effect for their firings from the next second on, as a schedule update does.
    """

    def __init__(
        self,
        catalog: CatalogStore,
        schedules: ScheduleStore,
        clock: Clock,
        tokens: PageTokens,
        refresh: Callable[[str, Caller], object],
    ) -> None:
        self._catalog = catalog
        self._schedules = schedules
        self._clock = clock
        self._tokens = tokens
        self._refresh = refresh

    def create(self, name: str, description: str, calendars: Sequence[Calendar], caller: Caller) -> JSON:
        """Store version 1; 409 `already_exists` if the name is taken."""
        check_calendars(calendars)
        now = fmt(self._clock.now())
        doc = _calendar_doc(description, calendars, caller, created_at=now, updated_at=now)
        return calendar_view(self._catalog.create(CALENDAR, name, doc))

    def get(self, name: str) -> JSON:
        """The current version."""
        return calendar_view(self._catalog.get(CALENDAR, name))

    def list(self, *, page_token: str | None, page_size: int) -> JSON:
        """Current calendars sorted by name."""
        after = self._tokens.decode(page_token, "calendars", {})
        page = self._catalog.list(CALENDAR, after=after, limit=page_size)
        return {
            "items": [calendar_view(r) for r in page.items],
            "next_page_token": self._tokens.encode(page.last_key, "calendars", {}),
        }

    def replace(
        self,
        name: str,
        description: str,
        calendars: Sequence[Calendar],
        version: int | None,
        caller: Caller,
    ) -> JSON:
        """Replace it whole (`version`, when given, must be the current one), then re-plan the
        schedules that reference it."""
        check_calendars(calendars)
        current = self._catalog.get(CALENDAR, name)
        doc = _calendar_doc(
            description,
            calendars,
            caller,
            created_at=current.doc.get("created_at"),
            updated_at=fmt(self._clock.now()),
        )
        try:
            rec = self._catalog.replace(CALENDAR, name, doc, expected_version=version)
        except Conflict:
            raise Conflict("version does not match the current calendar", current=self.get(name)) from None
        users, _complete = self.users(name)
        for schedule_id in users:
            self._refresh(schedule_id, caller)
        return calendar_view(rec)

    def delete(self, name: str) -> None:
        """Delete it unless a schedule references it (409 `in_use` names them). When more than
        `SCAN_LIMIT` schedules exist the check cannot finish, and the delete is refused too."""
        self._catalog.get(CALENDAR, name)
        users, complete = self.users(name)
        if users or not complete:
            message = (
                f"calendar {name} is used by {len(users)} schedule(s)"
                if complete
                else f"calendar {name} may be in use: more than {SCAN_LIMIT} schedules to check"
            )
            raise InUse(message, {"schedules": users[:IN_USE_LISTED], "complete": complete})
        self._catalog.delete(CALENDAR, name)

    def users(self, name: str) -> tuple[builtins.list[str], bool]:
        """Ids of the schedules whose `spec.exclude_calendar_refs` name the calendar, and whether
        every schedule was read. No index holds references: this pages through all schedules,
        at most `SCAN_LIMIT` of them (see `ScheduleScan`)."""
        scan = ScheduleScan(self._schedules)
        users = [
            rec.schedule_id
            for rec in scan
            if name in rec.doc.get("spec", {}).get("exclude_calendar_refs", [])
        ]
        return users, scan.complete


def _calendar_doc(
    description: str, calendars: Sequence[Calendar], caller: Caller, *, created_at: Any, updated_at: Any
) -> JSON:
    return {
        "description": description,
        "calendars": [c.model_dump(mode="json") for c in calendars],
        "created_at": created_at,
        "updated_at": updated_at,
        **caller.stamp(),
    }


class ScheduleScan:
    """Every schedule (of one group, when given), page by page, at most `limit` of them.

    Iterate it once; afterwards `complete` tells whether the scan reached the end."""

    def __init__(self, store: ScheduleStore, *, group: str | None = None, limit: int | None = None) -> None:
        self._store = store
        self._group = group
        self._limit = SCAN_LIMIT if limit is None else limit
        self.complete = False

    def __iter__(self) -> Iterator[ScheduleRecord]:
        after: str | None = None
        read = 0
        size = min(SCAN_PAGE, max(self._limit, 1))
        while True:
            page = self._store.list(after=after, limit=size, group=self._group)
            yield from page.items
            read += len(page.items)
            if page.last_key is None:
                self.complete = True
                return
            if read >= self._limit:
                return
            after = page.last_key


def spec_compiler(resolve: Callable[[list[str], str], list[Any]]) -> Callable[[JSON], CompiledSpec]:
    """A stored spec → its `CompiledSpec`, named calendars resolved by `resolve`
    (`Calendars.resolve`). InvalidArgument / ValidationError when it no longer compiles."""

    def compile_doc(spec: JSON) -> CompiledSpec:
        model = Spec.model_validate(spec)
        named = resolve(model.exclude_calendar_refs, "spec.exclude_calendar_refs")
        return compile_spec(model, named_exclusions=[Calendar.model_validate(c) for c in named])

    return compile_doc


class Refresh:
    """Re-plan a schedule after a named calendar it references changed.

    It is the schedule use case's own update with the schedule's current spec (conditional on
    the `conflict_token` read just before, retried when it moved): the spec is compiled again
    with the calendar as it is now, `config_version` moves on (firings already enqueued under
    the old calendar are dropped as `dropped_stale` and planned again), the cursor and due-index
    place are derived anew and the planner runs, so the change takes effect from the next
    second on, exactly as a spec update does. The schedule records the calendar's editor as
    `updated_by`: its effective spec changed by their hand.
    """

    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    def __call__(self, schedule_id: str, caller: Caller) -> bool:
        """True when the schedule was re-planned. False when it is gone, kept changing, or no
        longer passes an update's checks (say its input stopped matching its definition's
        input_schema): it then keeps its old cursor, and the ticker reads the new calendar
        from its next firing on."""
        for _ in range(5):
            try:
                current = self._schedules.describe(schedule_id)
                body = ScheduleUpdate(spec=current["spec"], conflict_token=current["conflict_token"])
                self._schedules.update(schedule_id, body, caller)
                return True
            except Conflict:
                continue  # changed since the describe: read it again
            except (NotFound, InvalidArgument, ValidationError):
                return False
        return False


# ---------------------------------------------------------------------------------------------
# Groups and their quotas
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupQuota:
    """A group's quotas; None = unlimited."""

    max_schedules: int | None = None
    max_firings_per_second: float | None = None


def group_quota(catalog: CatalogStore, group: str) -> GroupQuota:
    """The quotas stored for `group` (none stored = unlimited). For the ticker and the API."""
    try:
        return _quota(catalog.get(GROUP, group))
    except NotFound:
        return GroupQuota()


def check_group_quota(catalog: CatalogStore, schedule_store: ScheduleStore, group: str) -> None:
    """422 on `group` when creating one more schedule in it would pass its `max_schedules`.

    Schedules.create calls it before storing. It counts the group's schedules through the group
    index, reading at most `max_schedules` of them. Not atomic with the create: concurrent
    creates into a nearly full group may pass the quota by the number racing (a soft limit;
    an exact one needs a counter item written in the create's transaction).
    """
    limit = group_quota(catalog, group).max_schedules
    if limit is None:
        return
    count = 0
    if limit > 0:
        count = sum(1 for _ in ScheduleScan(schedule_store, group=group, limit=limit))
    if count >= limit:
        raise InvalidArgument(
            "group", f"group {group!r} already holds {count} schedule(s): its max_schedules quota is {limit}"
        )


def spread_for_quota(
    scheduled_times: Sequence[datetime],
    max_per_second: float,
    *,
    taken: dict[int, int] | None = None,
) -> list[datetime]:
    """Delay the firings beyond a group's `max_firings_per_second` to later seconds; never drop one.

    Answers one time per input time, in the input's order. Firings are taken in time order (ties
    keep input order) and placed into whole UTC seconds: with r = `max_per_second` ≥ 1, at most
    ⌊r⌋ firings share a second; with r < 1, one firing per second and at least ⌈1/r⌉ seconds
    between two firings' seconds (0.5 → every other second at most). So no second ever holds
    more than r firings, and a firing within the quota is never moved. A firing that does not
    fit moves to the start of the first later second that has room; firings that fit keep
    their exact time (jitter included). Outputs never precede their inputs and keep their order.

    `taken` maps epoch seconds to the firings already placed in them (by an earlier plan of the
    same group); it is updated in place, so a ticker can carry it across the schedules of a
    group. The number of delayed firings (counter `quota_delayed`) is how many outputs differ
    from their inputs.
    """
    if not (max_per_second > 0 and math.isfinite(max_per_second)):
        raise ValueError("max_per_second must be a finite number > 0")
    used = taken if taken is not None else {}
    if max_per_second >= 1:
        per_second, gap = math.floor(max_per_second), 1
    else:
        per_second, gap = 1, math.ceil(1 / Fraction(str(max_per_second)))

    def blocked(second: int) -> int | None:
        """None when `second` has room, else the next second worth trying."""
        if used.get(second, 0) >= per_second:
            return second + 1
        for other in range(second + gap - 1, second - gap, -1):  # empty when gap == 1
            if other != second and used.get(other, 0):
                return other + gap
        return None

    out: list[datetime] = list(scheduled_times)
    cursor: int | None = None
    for i in sorted(range(len(out)), key=lambda j: out[j]):
        t = out[i].astimezone(UTC)
        second = (t - EPOCH) // _SECOND
        slot = second if cursor is None else max(second, cursor)
        while (later := blocked(slot)) is not None:
            slot = later
        used[slot] = used.get(slot, 0) + 1
        cursor = slot
        out[i] = t if slot == second else EPOCH + timedelta(seconds=slot)
    return out


def group_view(group: str, quota: GroupQuota, schedules: int) -> JSON:
    """A group as the API answers it."""
    return {
        "group": group,
        "max_schedules": quota.max_schedules,
        "max_firings_per_second": quota.max_firings_per_second,
        "schedules": schedules,
    }


class Groups:
    """Schedule groups: every group that has schedules or stored quotas.

    Groups are not stored as such: a group exists while schedules name it or once a PUT stored
    its quotas (a catalog document of kind `group`, kept even when both are null). Counting schedules needs a scan (no index
    counts them), bounded by `SCAN_LIMIT`; answers say `truncated: true` when it stopped early
    (the counts are then lower bounds).
    """

    def __init__(
        self, catalog: CatalogStore, schedules: ScheduleStore, clock: Clock, tokens: PageTokens
    ) -> None:
        self._catalog = catalog
        self._schedules = schedules
        self._clock = clock
        self._tokens = tokens

    def get(self, group: str) -> JSON:
        """One group with its quotas and schedule count; 404 when it has neither."""
        try:
            rec: CatalogRecord | None = self._catalog.get(GROUP, group)
        except NotFound:
            rec = None
        scan = ScheduleScan(self._schedules, group=group)
        count = sum(1 for _ in scan)
        if rec is None and count == 0:
            raise NotFound(f"group/{group}")
        return {**group_view(group, _quota(rec), count), "truncated": not scan.complete}

    def put(
        self, group: str, max_schedules: int | None, max_firings_per_second: float | None, caller: Caller
    ) -> JSON:
        """Set the group's quotas (both replaced; null = unlimited). Lowering `max_schedules`
        below the current count removes nothing: only later creates are refused."""
        now = fmt(self._clock.now())
        doc: JSON = {
            "group": group,
            "max_schedules": max_schedules,
            "max_firings_per_second": max_firings_per_second,
            "updated_at": now,
            **caller.stamp(),
        }
        for _ in range(5):
            try:
                self._catalog.replace(GROUP, group, doc, expected_version=None)
                break
            except NotFound:
                try:
                    self._catalog.create(GROUP, group, doc)
                    break
                except AlreadyExists:
                    continue  # created concurrently: replace it
        else:
            raise Conflict("the group kept changing; try again", current=None)
        return self.get(group)

    def list(self, *, page_token: str | None, page_size: int) -> JSON:
        """Groups sorted by name, each with its quotas and schedule count."""
        after = self._tokens.decode(page_token, "groups", {})
        quotas: dict[str, GroupQuota] = {}
        key: str | None = None
        while True:
            page = self._catalog.list(GROUP, after=key, limit=SCAN_PAGE)
            quotas.update((r.name, _quota(r)) for r in page.items)
            if page.last_key is None:
                break
            key = page.last_key
        scan = ScheduleScan(self._schedules)
        counts = Counter(rec.group for rec in scan)
        names = sorted(n for n in set(quotas) | set(counts) if after is None or n > after)
        shown = names[:page_size]
        last = shown[-1] if len(names) > page_size else None
        return {
            "items": [group_view(n, quotas.get(n, GroupQuota()), counts.get(n, 0)) for n in shown],
            "next_page_token": self._tokens.encode(last, "groups", {}),
            "truncated": not scan.complete,
        }


def _quota(rec: CatalogRecord | None) -> GroupQuota:
    if rec is None:
        return GroupQuota()
    return GroupQuota(rec.doc.get("max_schedules"), rec.doc.get("max_firings_per_second"))


# ---------------------------------------------------------------------------------------------
# Bulk actions
# ---------------------------------------------------------------------------------------------

BulkAction = Literal["pause", "unpause", "delete"]


class Bulk:
    """Pause, unpause or delete every schedule matching a filter, up to `MAX_BULK` per call.

    Each schedule goes through the `Schedules` use case (so each write stays conditional and
    does exactly what the single-schedule endpoint does). A call also stops early, with a page
    token, once `budget_seconds` have passed, so it always answers within the API's timeout.
    """

    def __init__(
        self,
        store: ScheduleStore,
        schedules: Schedules,
        tokens: PageTokens,
        *,
        budget_seconds: float = BULK_BUDGET_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._schedules = schedules
        self._tokens = tokens
        self._budget = budget_seconds
        self._monotonic = monotonic

    def run(
        self,
        action: BulkAction,
        *,
        group: str | None,
        definition: str | None,
        tag: str | None,
        note: str | None,
        catch_up: str,
        confirm: bool,
        page_token: str | None,
        caller: Caller,
    ) -> JSON:
        """`{"matched", "changed", "next_page_token"}`: matched = schedules of this page that
        pass the filter; changed = those this call changed (already paused / unpaused, or
        deleted meanwhile, count as matched only)."""
        if action == "delete" and group is None and definition is None and tag is None and not confirm:
            raise InvalidArgument(
                "confirm", 'deleting every schedule (an empty filter) needs "confirm": true'
            )
        filters = {"action": action, "group": group, "definition": definition, "tag": tag}
        after = self._tokens.decode(page_token, "schedules-bulk", filters)
        deadline = self._monotonic() + self._budget
        page = self._store.list(after=after, limit=MAX_BULK, group=group, definition=definition)
        matched = changed = 0
        last_key = page.last_key
        for i, rec in enumerate(page.items):
            if tag is None or tag in rec.doc.get("tags", []):
                matched += 1
                if self._apply(action, rec, note, catch_up, caller):
                    changed += 1
            if self._monotonic() > deadline and i + 1 < len(page.items):
                last_key = rec.schedule_id  # out of time: the next call goes on after this one
                break
        return {
            "matched": matched,
            "changed": changed,
            "next_page_token": self._tokens.encode(last_key, "schedules-bulk", filters),
        }

    def _apply(
        self, action: BulkAction, rec: ScheduleRecord, note: str | None, catch_up: str, caller: Caller
    ) -> bool:
        paused = bool(rec.doc["state"].get("paused"))
        try:
            if action == "pause":
                if paused:
                    return False
                self._schedules.pause(rec.schedule_id, note, None, caller)
            elif action == "unpause":
                if not paused:
                    return False
                self._schedules.unpause(rec.schedule_id, note, catch_up, caller)
            else:
                self._schedules.delete(rec.schedule_id)
        except NotFound:
            return False  # deleted since the page was read
        return True


# ---------------------------------------------------------------------------------------------
# Upcoming firings
# ---------------------------------------------------------------------------------------------


def _gather(ids: list[str], page: Callable[..., list[Any]]) -> None:
    """Add the schedule ids of every page `page(after=…)` answers (index entries) to `ids`;
    refuse a window past `MAX_UPCOMING_SCHEDULES`."""
    after = None
    while True:
        entries = page(after=after)
        ids.extend(e.schedule_id for e in entries)
        if len(ids) > MAX_UPCOMING_SCHEDULES:
            raise InvalidArgument(
                "query.to", f"more than {MAX_UPCOMING_SCHEDULES} schedules fire in this window; narrow it"
            )
        if len(entries) < SCAN_PAGE:
            return
        after = entries[-1]


class Upcoming:
    """Every firing due in a window (≤ 24 h) across all schedules, by scheduled time.

    Two sources, merged and deduplicated on (schedule id, nominal time):
    - the due index, not the schedules: only schedules whose next unplanned firing
      (`next_fire_at`) is before the window's end, then their spec's times inside the window;
    - the plan log: the firings the ticker already handed to the queue (up to its horizon
      ahead), which the due index no longer holds once a schedule's cursor moved past them.
      Each is listed only while the worker would still run it: the schedule exists with the
      same generation and config_version (an update makes enqueued firings stale), and is not
      paused (or pauses until before it). Where both list a firing, the plan log's scheduled
      time wins (a group's `max_firings_per_second` may have moved it).
    Paused schedules are left out, except those pausing until a time inside the window (their
    firings after it are listed); `remaining_actions` caps a schedule's firings counted from now.
    """

    def __init__(
        self,
        store: ScheduleStore,
        compile: Callable[[JSON], CompiledSpec],
        clock: Clock,
        tokens: PageTokens,
        plan_log: PlanLog | None = None,
    ) -> None:
        self._store = store
        self._compile = compile
        self._clock = clock
        self._tokens = tokens
        self._plan_log = plan_log

    def list(
        self, *, start: datetime, end: datetime, group: str | None, page_token: str | None, page_size: int
    ) -> JSON:
        """Firings with `start` ≤ scheduled_time < `end`, sorted by scheduled time, then
        schedule id, then nominal time; `{"items", "next_page_token"}`."""
        if end <= start:
            raise InvalidArgument("query.to", "must be after from")
        if end - start > UPCOMING_WINDOW:
            raise InvalidArgument("query.to", "the window may span at most 24 hours")
        filters = {"from": fmt(start), "to": fmt(end), "group": group}
        raw = self._tokens.decode(page_token, "upcoming", filters)
        cursor = _cursor(raw) if raw is not None else None
        records: dict[str, ScheduleRecord | None] = {r.schedule_id: r for r in self._due_records(start, end)}
        # The whole window is read (not from the cursor): every page deduplicates alike.
        planned = self._planned(start, end, group, records)
        taken = {(f.schedule_id, f.nominal) for f in planned}
        streams = [
            (f for f in s if (f.schedule_id, f.nominal) not in taken)
            for rec in records.values()
            if rec is not None and (group is None or rec.group == group)
            if (s := self._stream(rec, start, end, cursor)) is not None
        ]
        after_cursor = (f for f in planned if cursor is None or f.key() > cursor.key())
        merged = heapq.merge(after_cursor, *streams)
        taken_page = list(islice(merged, page_size + 1))
        shown = taken_page[:page_size]
        last = shown[-1] if len(taken_page) > page_size else None
        return {
            "items": [
                {
                    "schedule_id": f.schedule_id,
                    "definition": f.definition,
                    "group": f.group,
                    "nominal_time": fmt(f.nominal),
                    "scheduled_time": fmt(f.scheduled),
                }
                for f in shown
            ],
            "next_page_token": self._tokens.encode(
                None
                if last is None
                else json.dumps([fmt(last.scheduled), last.schedule_id, fmt(last.nominal)]),
                "upcoming",
                filters,
            ),
        }

    def _planned(
        self, start: datetime, end: datetime, group: str | None, records: dict[str, ScheduleRecord | None]
    ) -> builtins.list[_Firing]:
        """The plan log's firings in the window that will still run, sorted, one per (schedule,
        nominal time). `records` caches the schedules read (None: gone); the schedules read
        for the plan log count towards `MAX_UPCOMING_SCHEDULES` too."""
        if self._plan_log is None:
            return []
        window = self._plan_log.window(start, end, now=self._clock.now(), limit=MAX_UPCOMING_PLANNED)
        if not window.complete:
            raise InvalidArgument(
                "query.to", f"more than {MAX_UPCOMING_PLANNED} enqueued firings in this window; narrow it"
            )
        out: list[_Firing] = []
        seen: set[tuple[str, datetime]] = set()
        for p in window.firings:  # sorted: of two records of one firing, the earlier is kept
            if group is not None and p.group != group:
                continue  # a group change moves config_version on: this record is stale
            if (p.schedule_id, p.nominal_time) in seen:
                continue
            rec = self._record(p.schedule_id, records)
            if rec is None or not still_runs(rec, p):
                continue
            seen.add((p.schedule_id, p.nominal_time))
            out.append(_Firing(p.scheduled_time, p.schedule_id, p.nominal_time, rec.definition, rec.group))
        return out

    def _record(self, schedule_id: str, records: dict[str, ScheduleRecord | None]) -> ScheduleRecord | None:
        if schedule_id not in records:
            if len(records) >= MAX_UPCOMING_SCHEDULES:
                raise InvalidArgument(
                    "query.to", f"more than {MAX_UPCOMING_SCHEDULES} schedules fire in this window; narrow it"
                )
            try:
                records[schedule_id] = self._store.get(schedule_id)
            except NotFound:
                records[schedule_id] = None
        return records[schedule_id]

    def _due_records(self, start: datetime, end: datetime) -> Iterator[ScheduleRecord]:
        """The schedules whose next unplanned firing is at or before `end`, through the due
        index, and the `phased` ones firing in the window, through the phase index (O(due),
        never a scan of all schedules)."""
        ids: list[str] = []
        for shard in range(self._store.shards):
            _gather(ids, functools.partial(self._store.due, shard, end, limit=SCAN_PAGE))
        # A phased schedule's unplanned firings are not in the due index: the phase index has
        # those firing from the window's start or now, whichever is earlier, less the longest
        # jitter looked back for (a firing whose nominal time is more than PHASE_LOOKBACK before
        # now but jittered into the window was enqueued then: the plan log lists it).
        lower = min(start, self._clock.now()) - PHASE_LOOKBACK
        for period in sorted(self._store.phase_periods()):
            for shard in range(self._store.shards):
                for low, high in phase_ranges(period, lower, end):
                    _gather(
                        ids, functools.partial(self._store.phased, period, shard, low, high, limit=SCAN_PAGE)
                    )
        for schedule_id in dict.fromkeys(ids):
            try:
                yield self._store.get(schedule_id)
            except NotFound:
                continue  # deleted since

    def _stream(
        self, rec: ScheduleRecord, start: datetime, end: datetime, cursor: _Firing | None
    ) -> Iterator[_Firing] | None:
        """The schedule's firings in the window after `cursor`, in order (None: it fires none)."""
        state = rec.doc["state"]
        remaining = state.get("remaining_actions")
        if remaining == 0:
            return None
        try:
            compiled = self._compile(rec.doc["spec"])
        except (InvalidArgument, ValidationError):
            return None  # it cannot fire either (e.g. a named calendar deleted since)
        lower = start if cursor is None else max(start, cursor.scheduled)
        # scheduled_time ∈ [nominal, nominal + jitter): scheduled ≥ lower ⇒ nominal > lower − jitter.
        after = lower - timedelta(seconds=compiled.spec.jitter_seconds) - _MICRO
        if rec.doc.get("created_at"):
            # a schedule's first firing is strictly after its creation
            after = max(after, parse(rec.doc["created_at"]))
        if state.get("paused"):
            until = state.get("paused_until")
            if not until:
                return None
            after = max(after, parse(until))  # it unpauses by itself then (catch_up none)
        if remaining is not None and remaining > MAX_REMAINING_COUNTED:
            remaining = None
        return _firings(rec, compiled, after, start, end, cursor, remaining, self._clock.now())


def still_runs(rec: ScheduleRecord, planned: PlannedFiring) -> bool:
    """Whether an enqueued firing will run as things stand: the worker drops it when the
    schedule was re-created (generation) or changed (config_version), and skips it while paused;
    a schedule pausing until a time before the firing is counted unpaused by then, as
    `Upcoming._stream` counts it, and one with no actions left runs none."""
    if rec.generation != planned.generation or rec.doc.get("config_version", 1) != planned.config_version:
        return False
    state = rec.doc["state"]
    if state.get("remaining_actions") == 0:
        return False
    if state.get("paused"):
        until = state.get("paused_until")
        return bool(until) and planned.nominal_time > parse(until)
    return True


def _firings(
    rec: ScheduleRecord,
    compiled: CompiledSpec,
    after: datetime,
    start: datetime,
    end: datetime,
    cursor: _Firing | None,
    remaining: int | None,
    now: datetime,
) -> Iterator[_Firing]:
    """Nominal times t > `after` whose scheduled time lies in [start, end) and whose key is past
    `cursor`. With `remaining`, only the first `remaining` firings after `now` can happen: the
    walk then starts at now (when earlier) to count them."""
    t = after if remaining is None else min(after, now)
    counted = 0
    while True:
        found = compiled.next_after(t)
        if found is None or found >= end:
            return
        t = found
        if remaining is not None and t > now:
            counted += 1
            if counted > remaining:
                return
        if t <= after:
            continue
        scheduled = compiled.scheduled_time(rec.schedule_id, t)
        if scheduled >= end:
            return  # scheduled times grow with nominal ones
        f = _Firing(scheduled, rec.schedule_id, t, rec.definition, rec.group)
        if scheduled < start or (cursor is not None and f.key() <= cursor.key()):
            continue
        yield f


@dataclass(frozen=True, order=True)
class _Firing:
    scheduled: datetime
    schedule_id: str
    nominal: datetime
    definition: str = ""
    group: str = ""

    def key(self) -> tuple[datetime, str, datetime]:
        return (self.scheduled, self.schedule_id, self.nominal)


def _cursor(raw: str) -> _Firing:
    try:
        scheduled, schedule_id, nominal = json.loads(raw)
        return _Firing(parse(scheduled), str(schedule_id), parse(nominal))
    except (ValueError, TypeError):
        raise InvalidPageToken("page_token is not valid") from None


# ---------------------------------------------------------------------------------------------
# The facade the API uses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admin:
    """The admin use cases, wired over the same stores as the rest of the services."""

    calendars: NamedCalendars
    groups: Groups
    bulk: Bulk
    upcoming: Upcoming

    @classmethod
    def build(
        cls,
        *,
        catalog: CatalogStore,
        schedule_store: ScheduleStore,
        schedules: Schedules,
        resolve_calendars: Callable[[list[str], str], list[Any]],
        clock: Clock,
        tokens: PageTokens,
        plan_log: PlanLog | None = None,
    ) -> Admin:
        """Wire them; `resolve_calendars` is `Calendars.resolve`; `plan_log` is what the ticker
        records its enqueued firings in (None: upcoming lists the due index's firings only)."""
        return cls(
            calendars=NamedCalendars(catalog, schedule_store, clock, tokens, Refresh(schedules)),
            groups=Groups(catalog, schedule_store, clock, tokens),
            bulk=Bulk(schedule_store, schedules, tokens),
            upcoming=Upcoming(schedule_store, spec_compiler(resolve_calendars), clock, tokens, plan_log),
        )
