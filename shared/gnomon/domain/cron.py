"""Cron fields as sets of allowed values, and a field-by-field search in local wall-clock time.

This module knows nothing about time zones or instants: it answers "which wall-clock times match"
(naive datetimes, second grain). `gnomon.domain.spec` maps those wall times to instants under a DST
policy. Used for both `cron` expressions and `calendars` (whose fields use the same syntax).
"""

from __future__ import annotations

import calendar as _calendar
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum


class CronSyntaxError(ValueError):
    """A cron expression or field that cannot be parsed; the message says why."""


class Kind(Enum):
    """A cron field with its range of values (day-of-week 7 is read as 0, Sunday)."""

    SECOND = ("second", 0, 59)
    MINUTE = ("minute", 0, 59)
    HOUR = ("hour", 0, 23)
    DAY_OF_MONTH = ("day_of_month", 1, 31)
    MONTH = ("month", 1, 12)
    DAY_OF_WEEK = ("day_of_week", 0, 6)
    YEAR = ("year", 1970, 9999)

    def __init__(self, label: str, low: int, high: int) -> None:
        self.label = label
        self.low = low
        self.high = high


_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DOW_NAMES = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_NUMBER = re.compile(r"^[0-9]{1,4}$")
_NTH = re.compile(r"^([A-Za-z0-9]+)#([0-9]+)$")
_LAST_WEEKDAY = re.compile(r"^([A-Za-z0-9]+?)[Ll]$")


@dataclass(frozen=True)
class FieldSet:
    """The values one field allows.

    `wildcard` records whether the text started with `*` (Vixie cron's "unrestricted" test, also the
    DST default's "follows elapsed time" test). `last` (day-of-month `L`), `last_weekdays` (`5L`)
    and `nth_weekdays` (`FRI#3`, as (weekday, n)) only occur in the day fields.
    """

    values: tuple[int, ...]
    wildcard: bool = False
    last: bool = False
    last_weekdays: frozenset[int] = frozenset()
    nth_weekdays: frozenset[tuple[int, int]] = frozenset()


def _value(token: str, kind: Kind) -> int:
    """One number or name of `kind`, range-checked (7 is accepted for day-of-week)."""
    upper = token.upper()
    if kind is Kind.MONTH and upper in _MONTH_NAMES:
        return _MONTH_NAMES[upper]
    if kind is Kind.DAY_OF_WEEK and upper in _DOW_NAMES:
        return _DOW_NAMES[upper]
    if not _NUMBER.match(token):
        raise CronSyntaxError(f"{kind.label}: {token!r} is not a number")
    value = int(token)
    high = 7 if kind is Kind.DAY_OF_WEEK else kind.high
    if not kind.low <= value <= high:
        raise CronSyntaxError(f"{kind.label}: {value} is out of range {kind.low}-{high}")
    return value


def _step(token: str, kind: Kind) -> int:
    if not _NUMBER.match(token) or int(token) < 1:
        raise CronSyntaxError(f"{kind.label}: step {token!r} must be a whole number >= 1")
    return int(token)


def expand_range(start: int, end: int, step: int, kind: Kind) -> set[int]:
    """The values start..end (inclusive) by step, range-checked; day-of-week 7 becomes 0."""
    high = 7 if kind is Kind.DAY_OF_WEEK else kind.high
    for v in (start, end):
        if not kind.low <= v <= high:
            raise CronSyntaxError(f"{kind.label}: {v} is out of range {kind.low}-{high}")
    if end < start:
        # Wrap-around ranges (FRI-MON, 22-2) are ambiguous between cron dialects: refuse them.
        raise CronSyntaxError(f"{kind.label}: range {start}-{end} runs backwards")
    if step < 1:
        raise CronSyntaxError(f"{kind.label}: step must be >= 1")
    values = set(range(start, end + 1, step))
    if kind is Kind.DAY_OF_WEEK and 7 in values:
        values.discard(7)
        values.add(0)
    return values


def parse_field(text: str, kind: Kind) -> FieldSet:
    """Parse one cron field (`*`, `*/5`, `1-5`, `2/3`, `MON-FRI`, `1,15,L`, `5L`, `FRI#3`, ...)."""
    text = text.strip()
    if not text:
        raise CronSyntaxError(f"{kind.label}: empty field")
    values: set[int] = set()
    last = False
    last_weekdays: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in text.split(","):
        if not item:
            raise CronSyntaxError(f"{kind.label}: empty list item in {text!r}")
        if kind is Kind.DAY_OF_MONTH and item.upper() == "L":
            last = True
            continue
        if kind is Kind.DAY_OF_WEEK:
            m = _NTH.match(item)
            if m:
                n = int(m.group(2)) if _NUMBER.match(m.group(2)) else 0
                if not 1 <= n <= 5:
                    raise CronSyntaxError(f"{kind.label}: {item!r}: the week number must be 1-5")
                nth.add((_value(m.group(1), kind) % 7, n))
                continue
            m = _LAST_WEEKDAY.match(item)
            if m:
                last_weekdays.add(_value(m.group(1), kind) % 7)
                continue
        base, slash, step_text = item.partition("/")
        step = _step(step_text, kind) if slash else 1
        if base == "*":
            # `*/N` runs over the whole field; day-of-week ends at 6 (Sunday is 0 here).
            values |= expand_range(kind.low, kind.high, step, kind)
        elif "-" in base:
            a, _, b = base.partition("-")
            values |= expand_range(_value(a, kind), _value(b, kind), step, kind)
        else:
            start = _value(base, kind)
            # `a/N` = from a to the field's end by N (day-of-week ends at 6).
            end = kind.high if slash else start
            if slash and kind is Kind.DAY_OF_WEEK and start == 7:
                start = 0
            values |= expand_range(start, end, step, kind)
    return FieldSet(
        values=tuple(sorted(values)),
        wildcard=text.startswith("*"),
        last=last,
        last_weekdays=frozenset(last_weekdays),
        nth_weekdays=frozenset(nth),
    )


def full(kind: Kind) -> FieldSet:
    """Every value of the field (an omitted calendar field), counted as a wildcard."""
    return FieldSet(values=tuple(range(kind.low, kind.high + 1)), wildcard=True)


@dataclass(frozen=True)
class CronFields:
    """A parsed cron expression: one FieldSet per field (second is {0} for 5-field expressions)."""

    second: FieldSet
    minute: FieldSet
    hour: FieldSet
    day_of_month: FieldSet
    month: FieldSet
    day_of_week: FieldSet


def parse_cron(expression: str) -> CronFields:
    """Parse a 5-field (minute precision) or 6-field (leading seconds) expression, or a macro."""
    text = expression.strip()
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise CronSyntaxError(f"unknown macro {text!r} (use one of {', '.join(MACROS)})")
        text = macro
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise CronSyntaxError(f"expected 5 or 6 fields, got {len(parts)}")
    kinds = (Kind.SECOND, Kind.MINUTE, Kind.HOUR, Kind.DAY_OF_MONTH, Kind.MONTH, Kind.DAY_OF_WEEK)
    sets = [parse_field(p, k) for p, k in zip(parts, kinds, strict=True)]
    return CronFields(*sets)


def _cron_weekday(year: int, month: int, day: int) -> int:
    """Day of week with Sunday = 0, as cron counts."""
    return (_calendar.weekday(year, month, day) + 1) % 7


@dataclass
class Matcher:
    """Which local wall-clock times (second grain) match a cron expression or a calendar.

    `day_or` is Vixie cron's rule (either day field may match); calendars need both.
    `years` None means every year.
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day_of_month: FieldSet
    months: tuple[int, ...]
    day_of_week: FieldSet
    years: tuple[int, ...] | None
    day_or: bool
    _day_cache: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict, repr=False)
    _sets: tuple[frozenset[int], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        self._sets = (
            frozenset(self.seconds),
            frozenset(self.minutes),
            frozenset(self.hours),
            frozenset(self.months),
        )

    @classmethod
    def from_cron(cls, fields: CronFields) -> Matcher:
        """Vixie semantics: both day fields restricted (neither starts with `*`) → either matches."""
        dom, dow = fields.day_of_month, fields.day_of_week
        return cls(
            seconds=fields.second.values,
            minutes=fields.minute.values,
            hours=fields.hour.values,
            day_of_month=dom,
            months=fields.month.values,
            day_of_week=dow,
            years=None,
            day_or=not (dom.wildcard or dow.wildcard),
        )

    # -- days ------------------------------------------------------------------------------------

    def _days_for(self, length: int, first_weekday: int) -> tuple[int, ...]:
        """Matching days of a month of `length` days whose 1st is `first_weekday` (Sunday = 0)."""
        key = (length, first_weekday)
        cached = self._day_cache.get(key)
        if cached is not None:
            return cached
        dom, dow = self.day_of_month, self.day_of_week
        dom_values = frozenset(dom.values)
        dow_values = frozenset(dow.values)
        days = []
        for d in range(1, length + 1):
            wd = (first_weekday + d - 1) % 7
            dom_ok = d in dom_values or (dom.last and d == length)
            dow_ok = (
                wd in dow_values
                or (wd in dow.last_weekdays and d + 7 > length)
                or (wd, (d - 1) // 7 + 1) in dow.nth_weekdays
            )
            if (dom_ok or dow_ok) if self.day_or else (dom_ok and dow_ok):
                days.append(d)
        result = tuple(days)
        self._day_cache[key] = result
        return result

    def days(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of `month` in `year` (month and year membership not checked)."""
        first, length = _calendar.monthrange(year, month)
        return self._days_for(length, (first + 1) % 7)

    def every_day(self) -> bool:
        """Whether the day, month and year fields allow every date (only the time fields
        restrict): such a matcher excludes the same times of day on every day."""
        return (
            self.years is None
            and len(self._sets[3]) == 12
            and all(
                len(self._days_for(length, first)) == length
                for length in (28, 29, 30, 31)
                for first in range(7)
            )
        )

    def times_of_day(self) -> frozenset[int]:
        """The seconds of the day (0–86 399) the time fields allow."""
        sec, minute, hour, _ = self._sets
        return frozenset(h * 3600 + m * 60 + s for h in hour for m in minute for s in sec)

    def covers(self, other: Matcher) -> bool:
        """Whether every wall time `other` matches, this matches too (a sufficient test, exact
        for the day fields: which days match depends only on a month's length and first
        weekday, so all 28 cases are compared)."""
        if not all(mine >= theirs for mine, theirs in zip(self._sets, other._sets, strict=True)):
            return False
        if self.years is not None and (other.years is None or not set(other.years) <= set(self.years)):
            return False
        return all(
            set(other._days_for(length, first)) <= set(self._days_for(length, first))
            for length in (28, 29, 30, 31)
            for first in range(7)
        )

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Whether the date matches the year, month and day fields."""
        if self.years is not None and year not in self.years:
            return False
        if month not in self._sets[3]:
            return False
        return day in self.days(year, month)

    def matches(self, t: datetime) -> bool:
        """Whether the wall time `t` (microseconds ignored) matches."""
        sec, minute, hour, _ = self._sets
        return (
            t.second in sec
            and t.minute in minute
            and t.hour in hour
            and self.day_matches(t.year, t.month, t.day)
        )

    # -- compile-time check ----------------------------------------------------------------------

    def can_ever_match(self, years_from: int = Kind.YEAR.low) -> bool:
        """Whether some date ever matches (with years: some year in the set from `years_from` on).

        Without a year field every (month, month length, weekday of the 1st) combination recurs
        within a 400-year cycle, so those few combinations decide it.
        """
        if not (self.seconds and self.minutes and self.hours and self.months):
            return False
        if self.years is None:
            for month in self.months:
                lengths = (28, 29) if month == 2 else (_calendar.monthrange(2001, month)[1],)
                for length in lengths:
                    for first in range(7):
                        if self._days_for(length, first):
                            return True
            return False
        for year in self.years:
            if year < years_from:
                continue
            for month in self.months:
                if self.days(year, month):
                    return True
        return False

    # -- search ----------------------------------------------------------------------------------

    def next_match(self, start: datetime, max_year: int) -> datetime | None:
        """The first matching wall time at or after `start` (naive, whole seconds), or None when
        there is none up to the end of `max_year`.

        Searches field by field (year → month → day → hour → minute → second): a field without a
        match at its current value jumps to its next allowed value and resets the fields below, so
        the cost grows with the number of months visited, not with the seconds between matches.
        """
        y, mo, d = start.year, start.month, start.day
        h, mi, s = start.hour, start.minute, start.second
        if start.microsecond:
            s += 1
        seconds, minutes, hours, months = self.seconds, self.minutes, self.hours, self.months
        while True:
            if y > max_year:
                return None
            if self.years is not None:
                i = bisect_left(self.years, y)
                if i == len(self.years):
                    return None
                if self.years[i] != y:
                    y, mo, d, h, mi, s = self.years[i], 1, 1, 0, 0, 0
                    continue
            i = bisect_left(months, mo)
            if i == len(months):
                y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                continue
            if months[i] != mo:
                mo, d, h, mi, s = months[i], 1, 0, 0, 0
            days = self.days(y, mo)
            i = bisect_left(days, d)
            if i == len(days):
                y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
                d, h, mi, s = 1, 0, 0, 0
                continue
            if days[i] != d:
                d, h, mi, s = days[i], 0, 0, 0
            i = bisect_left(hours, h)
            if i == len(hours):
                # Day d + 1 may not exist: the day lookup above then moves to the next month.
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if hours[i] != h:
                h, mi, s = hours[i], 0, 0
            i = bisect_left(minutes, mi)
            if i == len(minutes):
                h, mi, s = h + 1, 0, 0
                continue
            if minutes[i] != mi:
                mi, s = minutes[i], 0
            i = bisect_left(seconds, s)
            if i == len(seconds):
                mi, s = mi + 1, 0
                continue
            return datetime(y, mo, d, h, mi, seconds[i])

    def block_end(self, t: datetime) -> datetime:
        """For a matching wall time `t`, a wall time after it such that everything in between
        matches too: the end of the second, or of the minute / hour / run of days when the finer
        fields allow every value. Lets an exclusion skip a whole excluded weekend in a few steps.
        """
        t = t.replace(microsecond=0)
        if len(self.seconds) < 60:
            return t + timedelta(seconds=1)
        t = t.replace(second=0)
        if len(self.minutes) < 60:
            return t + timedelta(minutes=1)
        t = t.replace(minute=0)
        if len(self.hours) < 24:
            return t + timedelta(hours=1)
        day = t.replace(hour=0) + timedelta(days=1)
        # A run of fully matching days; bounded so a pathological calendar cannot spin.
        for _ in range(400):
            if not self.day_matches(day.year, day.month, day.day):
                break
            day += timedelta(days=1)
        return day
