"""Schedule specs (CONTRACT.md §5): the `spec` models, their compilation, and next-time arithmetic.

A spec fires at the union of its cron, interval, calendar and `at` times, minus exclusion
calendars, within [start_at, end_at]. Cron expressions and calendars match LOCAL wall-clock times
in `timezone` (see `gnomon.domain.cron`); each local match is then mapped to instants under a DST
policy. Intervals and `at` are instants already and ignore DST.

Everything here is pure: time is always passed in; nothing reads the clock or does I/O (loading a
zone's rules is zoneinfo's business, cached by it).

Internally instants are whole seconds since the Unix epoch (ints) and wall times are naive
datetimes; only `at` times keep their milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from gnomon.domain.cron import (
    CronSyntaxError,
    FieldSet,
    Kind,
    Matcher,
    expand_range,
    full,
    parse_cron,
    parse_field,
)
from gnomon.domain.errors import InvalidArgument
from gnomon.domain.timefmt import EPOCH, Instant, fmt

__all__ = [
    "Calendar",
    "CompiledSpec",
    "DstPolicy",
    "Interval",
    "Range",
    "Spec",
    "compile_calendar",
    "compile_spec",
    "load_zone",
]

# How far ahead a cron/calendar search looks. Month-by-month skipping keeps this cheap, and a
# rare but valid match (a calendar's Feb 29 that is a Monday) can be decades away.
SEARCH_YEARS = 100
# Once exclusions start rejecting matches, give up after this many years of rejections in a row,
# so a spec whose exclusions cover everything answers None instead of spinning.
EXCLUSION_YEARS = 5
# datetime stops at 9999; keep a margin for local offsets and "next day" arithmetic.
_LAST_YEAR = 9997
_FIRST_YEAR = 2

_SECOND = timedelta(seconds=1)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_FIXED_ZONES = frozenset(
    {"UTC", "ETC/UTC", "ETC/UCT", "UCT", "ETC/UNIVERSAL", "UNIVERSAL", "ZULU", "ETC/ZULU"}
)
_ZONE_KEY = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class Interval(BaseModel):
    """Every instant t with (t − Unix epoch − offset_seconds) mod every_seconds == 0 (UTC-based)."""

    model_config = ConfigDict(extra="forbid")

    every_seconds: StrictInt = Field(ge=1)
    offset_seconds: StrictInt = Field(default=0, ge=0)

    @field_validator("offset_seconds")
    @classmethod
    def _offset_below_every(cls, value: int, info: ValidationInfo) -> int:
        every = info.data.get("every_seconds")
        if isinstance(every, int) and value >= every:
            raise ValueError("offset_seconds must be less than every_seconds")
        return value


class DstPolicy(BaseModel):
    """What a local time in a spring-forward gap (`skipped`) or fall-back overlap (`repeated`) does."""

    model_config = ConfigDict(extra="forbid")

    skipped: Literal["shift", "skip"]
    repeated: Literal["once", "twice"]


class Range(BaseModel):
    """start..end (inclusive; end defaults to start) by step."""

    model_config = ConfigDict(extra="forbid")

    start: StrictInt
    end: StrictInt | None = None
    step: StrictInt = Field(default=1, ge=1)

    @field_validator("end")
    @classmethod
    def _end_not_before_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start")
        if value is not None and isinstance(start, int) and value < start:
            raise ValueError("end must not be before start")
        return value


CalendarValue = StrictInt | StrictStr | list[Range] | None


class Calendar(BaseModel):
    """Temporal-style calendar: each field an int, a cron-syntax string for that field, or ranges.

    Omitted second / minute / hour = 0; omitted day_of_month / month / year / day_of_week = every
    value. Day-of-month AND day-of-week must both match.
    """

    model_config = ConfigDict(extra="forbid")

    second: CalendarValue = None
    minute: CalendarValue = None
    hour: CalendarValue = None
    day_of_month: CalendarValue = None
    month: CalendarValue = None
    year: CalendarValue = None
    day_of_week: CalendarValue = None
    comment: StrictStr = ""


class Spec(BaseModel):
    """The `spec` of a schedule (CONTRACT.md §5)."""

    model_config = ConfigDict(extra="forbid")

    cron: list[StrictStr] = Field(default_factory=list)
    intervals: list[Interval] = Field(default_factory=list)
    calendars: list[Calendar] = Field(default_factory=list)
    at: list[Instant] = Field(default_factory=list)
    exclude_calendars: list[Calendar] = Field(default_factory=list)
    exclude_calendar_refs: list[StrictStr] = Field(default_factory=list)
    timezone: StrictStr = "UTC"
    start_at: Instant | None = None
    end_at: Instant | None = None
    jitter_seconds: StrictInt = Field(default=0, ge=0)
    dst: DstPolicy | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        load_zone(value)
        return value


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError when it is not one."""
    if not _ZONE_KEY.match(name) or name.lower() in ("localtime", "posixrules", "factory"):
        raise ValueError(f"unknown timezone {name!r} (use an IANA name such as Europe/Riga)")
    try:
        return ZoneInfo(name)
    except Exception as exc:  # ZoneInfoNotFoundError, IsADirectoryError, ValueError...
        raise ValueError(f"unknown timezone {name!r} (use an IANA name such as Europe/Riga)") from exc


# ---------------------------------------------------------------------------------------------
# Calendars → matchers
# ---------------------------------------------------------------------------------------------

_CALENDAR_FIELDS: tuple[tuple[str, Kind], ...] = (
    ("second", Kind.SECOND),
    ("minute", Kind.MINUTE),
    ("hour", Kind.HOUR),
    ("day_of_month", Kind.DAY_OF_MONTH),
    ("month", Kind.MONTH),
    ("year", Kind.YEAR),
    ("day_of_week", Kind.DAY_OF_WEEK),
)


def _calendar_field(value: int | str | list[Range] | None, kind: Kind) -> FieldSet | None:
    """One calendar field as a FieldSet (None = an omitted year: every year)."""
    if value is None:
        if kind in (Kind.SECOND, Kind.MINUTE, Kind.HOUR):
            return FieldSet(values=(0,))
        return None if kind is Kind.YEAR else full(kind)
    if isinstance(value, bool):
        raise CronSyntaxError("expected an int, a string or a list of ranges")
    if isinstance(value, int):
        return FieldSet(values=tuple(sorted(expand_range(value, value, 1, kind))))
    if isinstance(value, str):
        return parse_field(value, kind)
    if not value:
        raise CronSyntaxError("an empty list of ranges matches nothing")
    values: set[int] = set()
    for r in value:
        values |= expand_range(r.start, r.start if r.end is None else r.end, r.step, kind)
    return FieldSet(values=tuple(sorted(values)))


@dataclass(frozen=True)
class _CompiledCalendar:
    matcher: Matcher
    fixed: bool  # hour and minute both fixed (the DST default's test)


def _compile_calendar(calendar: Calendar, field: str) -> _CompiledCalendar:
    errors: list[dict[str, str]] = []
    sets: dict[str, FieldSet | None] = {}
    for name, kind in _CALENDAR_FIELDS:
        try:
            sets[name] = _calendar_field(getattr(calendar, name), kind)
        except CronSyntaxError as exc:
            errors.append({"field": f"{field}.{name}", "message": str(exc)})
    if errors:
        raise InvalidArgument.many(errors)

    def values(name: str) -> tuple[int, ...]:
        fs = sets[name]
        assert fs is not None
        return fs.values

    dom, dow, year = sets["day_of_month"], sets["day_of_week"], sets["year"]
    assert dom is not None and dow is not None
    hour, minute = sets["hour"], sets["minute"]
    assert hour is not None and minute is not None
    matcher = Matcher(
        seconds=values("second"),
        minutes=values("minute"),
        hours=values("hour"),
        day_of_month=dom,
        months=values("month"),
        day_of_week=dow,
        # A year field allowing every year is the same as an omitted one (and cheaper).
        years=None if year is None or len(year.values) == Kind.YEAR.high - Kind.YEAR.low + 1 else year.values,
        day_or=False,
    )
    return _CompiledCalendar(matcher, fixed=not (hour.wildcard or minute.wildcard))


def compile_calendar(calendar: Calendar, field: str = "calendar") -> Matcher:
    """Check a calendar's fields and return its matcher; InvalidArgument names `field`.<name>.

    For stored calendars used by `exclude_calendar_refs`. A calendar that can never match is
    refused (InvalidArgument on `field`).
    """
    compiled = _compile_calendar(calendar, field)
    if not compiled.matcher.can_ever_match():
        raise InvalidArgument(field, "this calendar can never match")
    return compiled.matcher


# ---------------------------------------------------------------------------------------------
# Zones: offsets and transitions
# ---------------------------------------------------------------------------------------------


def _instant(t: datetime) -> int:
    """Whole seconds since the epoch, rounded down."""
    return (t - EPOCH) // _SECOND


def _utc(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _wall(seconds: int) -> datetime:
    """The naive wall time `seconds` after 1970-01-01T00:00 (wall seconds = instant + offset)."""
    return _NAIVE_EPOCH + timedelta(seconds=seconds)


def _wall_seconds(t: datetime) -> int:
    return (t - _NAIVE_EPOCH) // _SECOND


def _jan1(year: int) -> int:
    return _instant(datetime(year, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class _Segment:
    """A stretch [start, end) of instants with one UTC offset; `prev_off` is the offset just before.

    Inside a segment wall time = instant + off, a bijection. A forward change (off > prev_off)
    leaves the wall times [start + prev_off, start + off) out (skipped); a backward change makes
    [start + off, start + prev_off) occur a second time (repeated). Boundaries may also be
    artificial (prev_off == off): they only keep segments short enough to find.
    """

    start: int
    end: int
    off: int
    prev_off: int


class _Zone:
    """A zone's UTC offsets, and the segments between its changes, found by probing zoneinfo
    (which hides its transition table) near the instants asked about.

    Segments end at the next change within `_AHEAD`, or artificially at `_AHEAD`; callers jump
    over long stretches instead of walking them, so no zone table is ever built.
    """

    # Probing every 6 hours finds every change unless a zone changes twice within 6 hours.
    _PROBE = 6 * 3600
    _AHEAD = 4 * 86400
    # The longest fall-back that `once` must remember (real ones are at most 2 hours).
    _BEHIND = 86400

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.fixed = tz.key.upper() in _FIXED_ZONES
        self._last: _Segment | None = None

    def offset(self, instant: int) -> int:
        """The UTC offset in seconds at `instant`."""
        delta = _utc(instant).astimezone(self.tz).utcoffset()
        assert delta is not None
        return delta // _SECOND

    def _first_change(self, lo: int, off_lo: int, hi: int) -> int | None:
        """The first instant in (lo, hi] whose offset differs from `off_lo` (the offset at lo)."""
        prev = lo
        while prev < hi:
            probe = min(prev + self._PROBE, hi)
            if self.offset(probe) != off_lo:
                a, b = prev, probe
                while b - a > 1:
                    mid = (a + b) // 2
                    if self.offset(mid) == off_lo:
                        a = mid
                    else:
                        b = mid
                return b
            prev = probe
        return None

    def segment(self, instant: int) -> _Segment:
        """A segment containing `instant`: exact at real changes, artificial elsewhere."""
        last = self._last
        if last is not None and last.start <= instant < last.end:
            return last
        off = self.offset(instant)
        if self.fixed:
            seg = _Segment(start=-(2**62), end=2**62, off=off, prev_off=off)
        else:
            start, prev_off = instant - self._BEHIND, off
            cursor, cursor_off = start, self.offset(start)
            while True:
                change = self._first_change(cursor, cursor_off, instant)
                if change is None:
                    break
                start, prev_off = change, cursor_off
                cursor, cursor_off = change, self.offset(change)
            end = self._first_change(instant, off, instant + self._AHEAD)
            seg = _Segment(
                start=start, end=instant + self._AHEAD if end is None else end, off=off, prev_off=prev_off
            )
        self._last = seg
        return seg


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


class _Exclusions:
    """Exclusion calendars, matched against local wall time."""

    def __init__(self, matchers: Sequence[Matcher], zone: _Zone) -> None:
        self.matchers = tuple(matchers)
        self.zone = zone

    def __bool__(self) -> bool:
        return bool(self.matchers)

    def match(self, wall: datetime) -> Matcher | None:
        """The first exclusion matching `wall`, if any."""
        for m in self.matchers:
            if m.matches(wall):
                return m
        return None

    def search(self, matcher: Matcher, lo: datetime, max_year: int) -> datetime | None:
        """The first wall time at or after `lo` that `matcher` matches and no exclusion does."""
        limit = max_year
        rejected = False
        while True:
            wall = matcher.next_match(lo, limit)
            if wall is None:
                return None
            excluding = self.match(wall)
            if excluding is None:
                return wall
            if not rejected:
                rejected = True
                limit = min(max_year, wall.year + EXCLUSION_YEARS)
            lo = excluding.block_end(wall)

    def next_instant(self, instant: int, wall: datetime) -> int | None:
        """If the instant (whose local wall time is `wall`) is excluded: the first later instant
        that may not be (the end of the excluded block, within the current offset segment).
        None when it is not excluded."""
        excluding = self.match(wall)
        if excluding is None:
            return None
        seg = self.zone.segment(instant)
        resume = min(_wall_seconds(excluding.block_end(wall)) - seg.off, seg.end)
        return max(resume, instant + 1)


@dataclass(frozen=True)
class _WallRule:
    """A cron expression or calendar: local matches mapped to instants under a DST policy."""

    matcher: Matcher
    shift: bool  # skipped local times fire at the jump (else not at all)
    twice: bool  # repeated local times fire at both occurrences (else the first only)

    def next_at_or_after(self, a: int, zone: _Zone, exclusions: _Exclusions, max_year: int) -> int | None:
        """The first instant >= `a` that this rule fires at, or None up to `max_year`."""
        cache: list[tuple[int, int | None]] = []

        def search(lo: int) -> int | None:
            # Segments ask for overlapping ranges; a previous answer holds for any lo in [lo0, w0].
            if cache:
                lo0, w0 = cache[0]
                if lo0 <= lo and (w0 is None or lo <= w0):
                    return w0
            found = exclusions.search(self.matcher, _wall(lo), max_year)
            w = None if found is None else _wall_seconds(found)
            cache[:] = [(lo, w)]
            return w

        seg = zone.segment(a)
        while True:
            lo = max(a, seg.start) + seg.off
            if not self.twice and seg.prev_off > seg.off:
                # Fall-back: wall times up to the old clock's end already occurred in the
                # previous segment; `once` fires only at that first occurrence.
                lo = max(lo, seg.start + seg.prev_off)
            if self.shift and seg.off > seg.prev_off and seg.start >= a:
                # Spring-forward: any match in the skipped wall times fires once, at the jump.
                w = search(seg.start + seg.prev_off)
                if w is None:
                    return None
                if w < seg.start + seg.off:
                    return seg.start
            w = search(lo)
            if w is None:
                return None
            if w < seg.end + seg.off:
                return w - seg.off
            if w - (seg.end + seg.off) > 3 * 86400 and seg.end - (lo - seg.off) >= 2 * 86400:
                # Every wall time in [lo, w) is match-free. Instants two days past lo's instant
                # have wall times >= lo whatever the offsets do (a fall-back could otherwise
                # revisit walls below lo), and those before w − 2 days have wall times < w: so
                # no instant from here to w − 2 days fires. Jump instead of walking segments.
                a = w - seg.off - 2 * 86400
                seg = zone.segment(a)
            else:
                seg = zone.segment(seg.end)


@dataclass(frozen=True)
class _IntervalRule:
    every: int
    offset: int

    def at_or_after(self, a: int) -> int:
        """The first instant >= a on the interval's grid."""
        return a + (self.offset - a) % self.every


# ---------------------------------------------------------------------------------------------
# Compiled spec
# ---------------------------------------------------------------------------------------------


def _default_policy(fixed: bool) -> DstPolicy:
    # Vixie cron: a fixed hour and minute keeps its wall-clock meaning (shift once); a wildcard
    # follows elapsed time (skip the missing hour, run the repeated one again).
    return (
        DstPolicy(skipped="shift", repeated="once") if fixed else DstPolicy(skipped="skip", repeated="twice")
    )


_UNKNOWN = object()


class CompiledSpec:
    """A validated spec, ready to answer its nominal times. Build it with `compile_spec`."""

    def __init__(
        self,
        spec: Spec,
        zone: ZoneInfo,
        wall_rules: Sequence[_WallRule],
        exclusions: Sequence[Matcher],
        intervals: Sequence[Interval] | None = None,
    ) -> None:
        self.spec = spec
        self.zone = zone
        self._zone = _Zone(zone)
        self._wall_rules = tuple(wall_rules)
        kept = spec.intervals if intervals is None else intervals
        self._intervals = tuple(_IntervalRule(i.every_seconds, i.offset_seconds) for i in kept)
        self._at = sorted({t.astimezone(UTC) for t in spec.at})
        self._exclusions = _Exclusions(exclusions, self._zone)
        self._start = spec.start_at.astimezone(UTC) if spec.start_at else None
        self._end = spec.end_at.astimezone(UTC) if spec.end_at else None
        self._last_instant = _jan1(_LAST_YEAR)
        # Per stream (wall rule or interval), the last answer: (from instant, first firing at or
        # after it or None, searched up to year). Each entry is a fact that stays true, so later
        # queries inside its range reuse it — a stream that exclusions silence for years is
        # searched once, not once per firing of the other streams. Entries are immutable tuples,
        # replaced whole: safe to share between threads.
        self._memo: dict[tuple[str, int], tuple[int, int | None, int]] = {}

    def _local_wall(self, instant: int) -> datetime:
        return _wall(instant + self._zone.offset(instant))

    def _next_interval(self, rule: _IntervalRule, a: int) -> int | None:
        t = rule.at_or_after(a)
        first_rejected: int | None = None
        while t < self._last_instant:
            if not self._exclusions:
                return t
            resume = self._exclusions.next_instant(t, self._local_wall(t))
            if resume is None:
                return t
            if first_rejected is None:
                first_rejected = t
            elif t - first_rejected > EXCLUSION_YEARS * 366 * 86400:
                return None
            t = rule.at_or_after(resume)
        return None

    def _next_at(self, lower: datetime) -> datetime | None:
        i = bisect_right(self._at, lower)
        for t in self._at[i:]:
            if not self._exclusions or self._exclusions.match(self._local_wall(_instant(t))) is None:
                return t
        return None

    def next_after(self, after: datetime) -> datetime | None:
        """The first nominal time strictly after `after` (aware, any zone), as an aware UTC
        datetime, or None if there is none (window ended, only past `at` times...)."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        lower = after.astimezone(UTC)
        if self._start is not None and lower < self._start:
            # "strictly after start − 1µs" = "at or after start" (start_at is inclusive).
            lower = self._start - timedelta(microseconds=1)
        if self._end is not None and lower >= self._end:
            return None
        try:
            a = _instant(lower) + 1
        except OverflowError:
            return None
        a = max(a, _jan1(_FIRST_YEAR + 1))
        best = self._next_at(lower)
        if a < self._last_instant:
            max_year = min(_utc(a).year + SEARCH_YEARS, _LAST_YEAR)
            if self._end is not None:
                # Wall years can run a day past the UTC year.
                max_year = min(max_year, self._end.year + 1)
            for i, rule in enumerate(self._wall_rules):
                found = self._recall(("w", i), a, max_year)
                if found is _UNKNOWN:
                    found = rule.next_at_or_after(a, self._zone, self._exclusions, max_year)
                    self._memo[("w", i)] = (a, found, max_year)
                if isinstance(found, int):
                    t = _utc(found)
                    if best is None or t < best:
                        best = t
            for i, interval in enumerate(self._intervals):
                # an interval silenced by exclusions for EXCLUSION_YEARS counts as silenced
                horizon = _utc(a).year + EXCLUSION_YEARS
                found = self._recall(("i", i), a, horizon)
                if found is _UNKNOWN:
                    found = self._next_interval(interval, a)
                    self._memo[("i", i)] = (a, found, horizon)
                if isinstance(found, int):
                    t = _utc(found)
                    if best is None or t < best:
                        best = t
        if best is not None and self._end is not None and best > self._end:
            return None
        return best

    def fixed_period(self) -> tuple[int, int] | None:
        """(period, phase) in seconds when every nominal time is an instant t with
        t mod period == phase (between start_at and end_at), with period dividing a day — one
        interval, or one cron expression / calendar firing on every day at evenly spaced
        times in a zone without offset changes; None otherwise (`at` times, exclusions,
        several streams, days that differ, DST)."""
        if self._at or self._exclusions or len(self._wall_rules) + len(self._intervals) != 1:
            return None
        if self._intervals:
            rule = self._intervals[0]
            period, phase = rule.every, rule.offset % rule.every
        else:
            matcher = self._wall_rules[0].matcher
            offsets = _zone_offsets(self.zone)
            if len(offsets) != 1 or not matcher.every_day():
                return None
            times = sorted(matcher.times_of_day())
            period = 86_400 if len(times) == 1 else times[1] - times[0]
            if period * len(times) != 86_400 or any(b - a != period for a, b in itertools.pairwise(times)):
                return None
            phase = (times[0] - next(iter(offsets))) % period
        return (period, phase) if 86_400 % period == 0 else None

    def _recall(self, key: tuple[str, int], a: int, max_year: int) -> int | None | object:
        """The stream's first firing at or after `a` (searched up to `max_year`) when an earlier
        search already answers it, else _UNKNOWN."""
        known = self._memo.get(key)
        if known is not None:
            a0, found, year0 = known
            if a0 <= a and (a <= found if found is not None else year0 == max_year):
                return found
        return _UNKNOWN

    def times(self, after: datetime, count: int, end: datetime | None = None) -> list[datetime]:
        """Up to `count` nominal times strictly after `after`, none after `end` (inclusive)."""
        out: list[datetime] = []
        t: datetime | None = after
        while len(out) < count and t is not None:
            t = self.next_after(t)
            if t is None or (end is not None and t > end):
                break
            out.append(t)
        return out

    def scheduled_time(self, schedule_id: str, nominal: datetime) -> datetime:
        """nominal + deterministic jitter in [0, jitter_seconds) from sha256(schedule_id, nominal) —
        never at or past the next nominal time (capped below that gap).

        The offset has millisecond grain, so jitter spreads load within each second too.
        """
        nominal = nominal.astimezone(UTC)
        span_ms = self.spec.jitter_seconds * 1000
        if span_ms <= 0:
            return nominal
        following = self.next_after(nominal)
        if following is not None:
            span_ms = min(span_ms, (following - nominal) // timedelta(milliseconds=1))
        if span_ms <= 1:
            return nominal
        digest = hashlib.sha256(f"{schedule_id}\n{fmt(nominal)}".encode()).digest()
        return nominal + timedelta(milliseconds=int.from_bytes(digest[:8], "big") % span_ms)


def compile_spec(
    spec: Spec, *, field_prefix: str = "spec", named_exclusions: Sequence[Calendar] = ()
) -> CompiledSpec:
    """Validate semantically and compile.

    Raises InvalidArgument(field, message) with the field path like "spec.cron[0]",
    "spec.timezone", "spec.intervals[1].every_seconds", "spec" (empty spec), for: an unparsable
    cron, a cron/calendar that can never match (e.g. "0 0 31 2 *"), a bad calendar field
    ("spec.calendars[0].hour"), an empty spec (none of cron/intervals/calendars/at), an unknown
    timezone, start_at > end_at ("spec.end_at"). `named_exclusions` are the calendars that
    `exclude_calendar_refs` name, resolved by the caller (errors name
    "spec.exclude_calendar_refs[i]"). All problems found are reported together; the first is
    `InvalidArgument.field`.
    """
    p = field_prefix
    errors: list[dict[str, str]] = []

    def fail(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    if not (spec.cron or spec.intervals or spec.calendars or spec.at):
        fail(p, "give at least one of cron, intervals, calendars or at")

    wall_rules: list[_WallRule] = []

    def add_rule(matcher: Matcher, fixed: bool) -> None:
        policy = spec.dst or _default_policy(fixed)
        wall_rules.append(
            _WallRule(matcher, shift=policy.skipped == "shift", twice=policy.repeated == "twice")
        )

    for i, expression in enumerate(spec.cron):
        field = f"{p}.cron[{i}]"
        try:
            fields = parse_cron(expression)
        except CronSyntaxError as exc:
            fail(field, f"invalid cron expression {expression!r}: {exc}")
            continue
        matcher = Matcher.from_cron(fields)
        if not matcher.can_ever_match():
            fail(field, f"cron expression {expression!r} can never match")
            continue
        add_rule(matcher, fixed=not (fields.hour.wildcard or fields.minute.wildcard))

    for i, interval in enumerate(spec.intervals):
        # Re-checked here for specs built without validation (model_construct).
        if interval.every_seconds < 1:
            fail(f"{p}.intervals[{i}].every_seconds", "must be at least 1")
        elif not 0 <= interval.offset_seconds < interval.every_seconds:
            fail(f"{p}.intervals[{i}].offset_seconds", "must be >= 0 and less than every_seconds")

    for i, calendar in enumerate(spec.calendars):
        field = f"{p}.calendars[{i}]"
        try:
            compiled = _compile_calendar(calendar, field)
        except InvalidArgument as exc:
            errors.extend(exc.details)
            continue
        if not compiled.matcher.can_ever_match():
            fail(field, "this calendar can never match")
            continue
        add_rule(compiled.matcher, compiled.fixed)

    exclusions: list[Matcher] = []
    for group, calendars in (
        ("exclude_calendars", spec.exclude_calendars),
        ("exclude_calendar_refs", named_exclusions),
    ):
        for i, calendar in enumerate(calendars):
            try:
                # An exclusion that never matches is pointless but harmless: accepted.
                exclusions.append(_compile_calendar(calendar, f"{p}.{group}[{i}]").matcher)
            except InvalidArgument as exc:
                errors.extend(exc.details)

    zone: ZoneInfo | None = None
    try:
        zone = load_zone(spec.timezone)
    except ValueError as exc:
        fail(f"{p}.timezone", str(exc))

    if spec.start_at is not None and spec.end_at is not None and spec.start_at > spec.end_at:
        fail(f"{p}.end_at", "end_at is before start_at")
    if spec.jitter_seconds < 0:
        fail(f"{p}.jitter_seconds", "must be >= 0")

    if errors:
        raise InvalidArgument.many(errors)
    assert zone is not None
    # A stream that exclusions silence entirely never fires: leave it out rather than search
    # years of excluded matches for nothing (a 1-second step over years would take minutes).
    live_rules, live_intervals = _live_streams(wall_rules, spec.intervals, exclusions, zone)
    return CompiledSpec(spec, zone, live_rules, exclusions, live_intervals)


@functools.lru_cache(maxsize=64)
def _zone_offsets(zone: ZoneInfo) -> frozenset[int]:
    """Every UTC offset (seconds) the zone uses from 1970 to 2100 (tzdata repeats its rules
    past 2037), probed twice a month."""
    out = set()
    t = datetime(1970, 1, 1, tzinfo=UTC)
    while t.year < 2100:
        delta = t.astimezone(zone).utcoffset()
        assert delta is not None
        out.add(int(delta.total_seconds()))
        t += timedelta(days=15)
    return frozenset(out)


def _live_streams(
    wall_rules: Sequence[_WallRule],
    intervals: Sequence[Interval],
    exclusions: Sequence[Matcher],
    zone: ZoneInfo,
) -> tuple[list[_WallRule], list[Interval]]:
    """The cron expressions / calendars and intervals that some wall time can still come out of.

    Exclusions match wall times before any DST shift. A wall rule is silenced when one exclusion
    covers it, or when the exclusions that apply to every day cover all its times of day. An
    interval's wall times of day, at offset `off`, are the seconds r with r ≡ offset + off
    (mod gcd(every, 86 400)): it is silenced when, for every offset the zone uses, the every-day
    exclusions cover all of those.
    """
    if not exclusions:
        return list(wall_rules), list(intervals)
    daily: set[int] = set()
    for x in exclusions:
        if x.every_day():
            daily |= x.times_of_day()
    rules = [
        r
        for r in wall_rules
        if not any(x.covers(r.matcher) for x in exclusions)
        and not (daily and r.matcher.times_of_day() <= daily)
    ]
    if not daily or not intervals:
        return rules, list(intervals)
    offsets = _zone_offsets(zone)
    live = []
    for interval in intervals:
        g = math.gcd(interval.every_seconds, 86_400)
        dead = all(
            all(r in daily for r in range((interval.offset_seconds + off) % g, 86_400, g)) for off in offsets
        )
        if not dead:
            live.append(interval)
    return rules, live
