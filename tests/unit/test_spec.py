"""The schedule spec engine (CONTRACT.md §5): cron, calendars, intervals, at, exclusions, DST."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gnomon.domain.cron import Matcher, parse_cron
from gnomon.domain.errors import InvalidArgument
from gnomon.domain.spec import (
    Calendar,
    CompiledSpec,
    DstPolicy,
    Interval,
    Range,
    Spec,
    compile_calendar,
    compile_spec,
)
from gnomon.domain.timefmt import fmt, parse


def compiled(spec: dict[str, Any], **kwargs: Any) -> CompiledSpec:
    return compile_spec(Spec.model_validate(spec), **kwargs)


def upcoming(spec: dict[str, Any], after: str, count: int) -> list[str]:
    return [str(fmt(t)) for t in compiled(spec).times(parse(after), count)]


NY = "America/New_York"
JAN1 = "2026-01-01T00:00:00Z"  # a Thursday

# One row per case: id, spec, after, the next times (UTC).
CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    # -- cron syntax (UTC) --------------------------------------------------------------------
    ("5-field step", {"cron": ["*/15 * * * *"]}, JAN1, ["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"]),
    (
        "6-field leading seconds",
        {"cron": ["*/20 * * * * *"]},
        JAN1,
        ["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"],
    ),
    ("one-value range", {"cron": ["5-5 0-0 * * *"]}, JAN1, ["2026-01-01T00:05:00Z", "2026-01-02T00:05:00Z"]),
    ("6-field fixed", {"cron": ["30 0 12 * * *"]}, JAN1, ["2026-01-01T12:00:30Z", "2026-01-02T12:00:30Z"]),
    (
        "names any case",
        {"cron": ["0 9 * jan,Feb mOn"]},
        JAN1,
        ["2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z", "2026-01-19T09:00:00Z"],
    ),
    (
        "dow name range any case",
        {"cron": ["0 9 * * Fri-sAT"]},
        JAN1,
        ["2026-01-02T09:00:00Z", "2026-01-03T09:00:00Z", "2026-01-09T09:00:00Z"],
    ),
    (
        "ranges, steps, lists",
        {"cron": ["5-10/2 3,4 * * *"]},
        JAN1,
        ["2026-01-01T03:05:00Z", "2026-01-01T03:07:00Z", "2026-01-01T03:09:00Z", "2026-01-01T04:05:00Z"],
    ),
    (
        "a/N = a to field end by N",
        {"cron": ["0 0 2/3 * *"]},
        JAN1,
        ["2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z", "2026-01-08T00:00:00Z"],
    ),
    ("a/N near the end", {"cron": ["0 0 29/3 * *"]}, JAN1, ["2026-01-29T00:00:00Z", "2026-03-29T00:00:00Z"]),
    (
        "a/N day-of-week ends at 6",
        {"cron": ["0 0 * * 2/3"]},
        JAN1,
        ["2026-01-02T00:00:00Z", "2026-01-06T00:00:00Z", "2026-01-09T00:00:00Z"],
    ),
    (
        "*/N day-of-week from 0",
        {"cron": ["0 0 * * */3"]},
        JAN1,
        ["2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-07T00:00:00Z"],
    ),
    (
        "L last day",
        {"cron": ["0 0 L * *"]},
        JAN1,
        ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"],
    ),
    ("L in leap February", {"cron": ["0 0 L 2 *"]}, "2027-03-01T00:00:00Z", ["2028-02-29T00:00:00Z"]),
    (
        "L in a list",
        {"cron": ["0 0 1,L * *"]},
        JAN1,
        ["2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z", "2026-02-28T00:00:00Z"],
    ),
    (
        "5L last Friday",
        {"cron": ["0 0 * * 5L"]},
        JAN1,
        ["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z", "2026-03-27T00:00:00Z"],
    ),
    ("FRIL last Friday by name", {"cron": ["0 0 * * friL"]}, JAN1, ["2026-01-30T00:00:00Z"]),
    (
        "FRI#3",
        {"cron": ["0 0 * * FRI#3"]},
        JAN1,
        ["2026-01-16T00:00:00Z", "2026-02-20T00:00:00Z", "2026-03-20T00:00:00Z"],
    ),
    ("5#3", {"cron": ["0 0 * * 5#3"]}, JAN1, ["2026-01-16T00:00:00Z", "2026-02-20T00:00:00Z"]),
    (
        "#5 only in long months",
        {"cron": ["0 0 * * THU#5"]},
        JAN1,
        ["2026-01-29T00:00:00Z", "2026-04-30T00:00:00Z"],
    ),
    ("7 is Sunday", {"cron": ["0 0 * * 7"]}, JAN1, ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("0 is Sunday", {"cron": ["0 0 * * 0"]}, JAN1, ["2026-01-04T00:00:00Z"]),
    (
        "range up to 7",
        {"cron": ["0 0 * * 5-7"]},
        JAN1,
        ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z"],
    ),
    ("@yearly", {"cron": ["@yearly"]}, JAN1, ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("@annually", {"cron": ["@annually"]}, JAN1, ["2027-01-01T00:00:00Z"]),
    ("@monthly", {"cron": ["@monthly"]}, JAN1, ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
    ("@weekly", {"cron": ["@weekly"]}, JAN1, ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("@daily", {"cron": ["@daily"]}, JAN1, ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
    ("@midnight", {"cron": ["@midnight"]}, JAN1, ["2026-01-02T00:00:00Z"]),
    ("@hourly", {"cron": ["@hourly"]}, JAN1, ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]),
    ("macro any case", {"cron": ["@Daily"]}, JAN1, ["2026-01-02T00:00:00Z"]),
    (
        "Vixie: both day fields restricted = either",
        {"cron": ["0 0 13 * FRI"]},
        JAN1,
        ["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z"],
    ),
    (
        "Vixie: */N day-of-month is unrestricted = both",
        {"cron": ["0 0 */2 * MON"]},
        JAN1,
        ["2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z", "2026-02-09T00:00:00Z"],
    ),
    (
        "Vixie: */N day-of-week is unrestricted = both",
        {"cron": ["0 0 1 * */2"]},
        JAN1,
        ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z"],
    ),
    ("Feb 29 only in leap years", {"cron": ["0 0 29 2 *"]}, "2027-01-01T00:00:00Z", ["2028-02-29T00:00:00Z"]),
    ("strictly after", {"cron": ["0 0 * * *"]}, "2026-01-02T00:00:00Z", ["2026-01-03T00:00:00Z"]),
    (
        "after with a fraction",
        {"cron": ["* * * * * *"]},
        "2026-01-01T00:00:00.500Z",
        ["2026-01-01T00:00:01Z"],
    ),
    ("after in another zone", {"cron": ["0 * * * *"]}, "2026-01-01T02:30:00+02:00", ["2026-01-01T01:00:00Z"]),
    # -- calendars ----------------------------------------------------------------------------
    (
        "calendar omitted second/minute/hour = 0",
        {"calendars": [{"hour": 9, "day_of_week": "MON-FRI"}]},
        JAN1,
        ["2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z", "2026-01-05T09:00:00Z"],
    ),
    (
        "calendar day_of_month AND day_of_week",
        {"calendars": [{"day_of_month": 13, "day_of_week": "FRI"}]},
        JAN1,
        ["2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z", "2026-11-13T00:00:00Z"],
    ),
    (
        "calendar cron strings",
        {"calendars": [{"minute": "*/15", "hour": "1,15", "day_of_month": 1}]},
        JAN1,
        ["2026-01-01T01:00:00Z", "2026-01-01T01:15:00Z", "2026-01-01T01:30:00Z", "2026-01-01T01:45:00Z"],
    ),
    (
        "calendar ranges",
        {"calendars": [{"second": [{"start": 10, "end": 20, "step": 5}], "minute": [{"start": 7}]}]},
        JAN1,
        ["2026-01-01T00:07:10Z", "2026-01-01T00:07:15Z", "2026-01-01T00:07:20Z", "2026-01-02T00:07:10Z"],
    ),
    (
        "calendar years",
        {"calendars": [{"month": 6, "day_of_month": 1, "year": "2027-2028"}]},
        JAN1,
        ["2027-06-01T00:00:00Z", "2028-06-01T00:00:00Z"],
    ),
    (
        "calendar rare match decades away",
        {"calendars": [{"day_of_month": 29, "month": 2, "day_of_week": "MON"}]},
        JAN1,
        ["2044-02-29T00:00:00Z", "2072-02-29T00:00:00Z"],
    ),
    ("calendar past years only: nothing", {"calendars": [{"year": 2020}]}, JAN1, []),
    (
        "calendar L and nth weekday",
        {"calendars": [{"day_of_month": "L", "day_of_week": "5L"}]},
        JAN1,
        ["2026-07-31T00:00:00Z", "2027-04-30T00:00:00Z"],
    ),
    # -- time zones and DST (defaults) --------------------------------------------------------
    (
        "NY fixed time in the spring gap shifts to the jump",
        {"cron": ["30 2 * * *"], "timezone": NY},
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
    ),
    (
        "NY 02:01 shifts to 03:00, not 03:01",
        {"cron": ["1 2 * * *"], "timezone": NY},
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:01:00Z"],
    ),
    (
        "NY wildcard minute runs the repeated hour twice",
        {"cron": ["30 * * * *"], "timezone": NY},
        "2026-11-01T04:00:00Z",
        ["2026-11-01T04:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-01T07:30:00Z"],
    ),
    (
        "NY wildcard minute skips the gap",
        {"cron": ["*/20 2 * * *"], "timezone": NY},
        "2026-03-07T12:00:00Z",
        ["2026-03-09T06:00:00Z", "2026-03-09T06:20:00Z", "2026-03-09T06:40:00Z"],
    ),
    (
        "NY fixed time in the repeated hour fires once",
        {"cron": ["30 1 * * *"], "timezone": NY},
        "2026-10-31T12:00:00Z",
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    ),
    (
        "NY once: from inside the second pass",
        {"cron": ["45 1 * * *"], "timezone": NY},
        "2026-11-01T06:10:00Z",
        ["2026-11-02T06:45:00Z"],
    ),
    (
        "NY twice: from inside the second pass",
        {"cron": ["*/30 1 * * *"], "timezone": NY},
        "2026-11-01T06:10:00Z",
        ["2026-11-01T06:30:00Z", "2026-11-02T06:00:00Z"],
    ),
    (
        "NY twice: from the last second before the fall-back",
        {"cron": ["* 1 * * SUN"], "timezone": NY},
        "2025-11-02T05:59:00Z",
        ["2025-11-02T06:00:00Z", "2025-11-02T06:01:00Z"],
    ),
    (
        "NY several skipped times fire once",
        {"cron": ["0,15,30 2 * * *", "0 3 * * *"], "timezone": NY},
        "2026-03-08T06:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"],
    ),
    (
        "Riga weekdays across spring-forward",
        {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"},
        "2026-03-26T12:00:00Z",
        ["2026-03-27T07:00:00Z", "2026-03-30T06:00:00Z", "2026-03-31T06:00:00Z"],
    ),
    (
        "Riga weekdays across fall-back",
        {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"},
        "2026-10-22T12:00:00Z",
        ["2026-10-23T06:00:00Z", "2026-10-26T07:00:00Z"],
    ),
    (
        "calendar hour/minute omitted = fixed: shift",
        {"calendars": [{"hour": 2, "minute": 30}], "timezone": NY},
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z"],
    ),
    (
        "calendar '*/N' minute = wildcard: skip",
        {"calendars": [{"hour": 2, "minute": "*/30"}], "timezone": NY},
        "2026-03-07T12:00:00Z",
        ["2026-03-09T06:00:00Z"],
    ),
    (
        "Lord Howe: 30-minute gap shifts to 02:30",
        {"cron": ["15 2 * * *"], "timezone": "Australia/Lord_Howe"},
        "2026-10-03T00:00:00Z",
        ["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
    ),
    (
        "Lord Howe: 30-minute overlap, once",
        {"cron": ["45 1 * * *"], "timezone": "Australia/Lord_Howe"},
        "2026-04-04T12:00:00Z",
        ["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
    ),
    (
        "Lord Howe: 30-minute overlap, twice",
        {"cron": ["45 * * * *"], "timezone": "Australia/Lord_Howe"},
        "2026-04-04T14:00:00Z",
        ["2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z", "2026-04-04T16:15:00Z"],
    ),
    (
        "Chatham: change at 02:45",
        {"cron": ["50 2 * * *"], "timezone": "Pacific/Chatham"},
        "2026-09-25T00:00:00Z",
        ["2026-09-25T14:05:00Z", "2026-09-26T14:00:00Z", "2026-09-27T13:05:00Z"],
    ),
    (
        "Santiago: missing midnight shifts to 01:00",
        {"cron": ["0 0 * * *"], "timezone": "America/Santiago"},
        "2026-09-05T00:00:00Z",
        ["2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"],
    ),
    (
        "Santiago: repeated 23:00 hour, wildcard twice",
        {"cron": ["30 23 * * *", "0 0 * * *"], "timezone": "America/Santiago"},
        "2026-04-04T12:00:00Z",
        ["2026-04-05T02:30:00Z", "2026-04-05T04:00:00Z", "2026-04-06T03:30:00Z"],
    ),
    (
        "Kathmandu +05:45",
        {"cron": ["0 9 * * *"], "timezone": "Asia/Kathmandu"},
        JAN1,
        ["2026-01-01T03:15:00Z", "2026-01-02T03:15:00Z"],
    ),
    # -- explicit dst policies override the defaults ------------------------------------------
    (
        "fixed time, dst skip",
        {"cron": ["30 2 * * *"], "timezone": NY, "dst": {"skipped": "skip", "repeated": "once"}},
        "2026-03-07T12:00:00Z",
        ["2026-03-09T06:30:00Z"],
    ),
    (
        "fixed time, dst shift",
        {"cron": ["30 2 * * *"], "timezone": NY, "dst": {"skipped": "shift", "repeated": "twice"}},
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z"],
    ),
    (
        "fixed time, dst twice",
        {"cron": ["30 1 * * *"], "timezone": NY, "dst": {"skipped": "skip", "repeated": "twice"}},
        "2026-10-31T12:00:00Z",
        ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"],
    ),
    (
        "fixed time, dst once",
        {"cron": ["30 1 * * *"], "timezone": NY, "dst": {"skipped": "shift", "repeated": "once"}},
        "2026-10-31T12:00:00Z",
        ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
    ),
    (
        "wildcard, dst shift + once (spring)",
        {"cron": ["*/30 * * * *"], "timezone": NY, "dst": {"skipped": "shift", "repeated": "once"}},
        "2026-03-08T06:00:00Z",
        ["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"],
    ),
    (
        "wildcard, dst shift + once (fall)",
        {"cron": ["*/30 * * * *"], "timezone": NY, "dst": {"skipped": "shift", "repeated": "once"}},
        "2026-11-01T05:00:00Z",
        ["2026-11-01T05:30:00Z", "2026-11-01T07:00:00Z"],
    ),
    (
        "dst policy applies to calendars too",
        {
            "calendars": [{"hour": 2, "minute": 30}],
            "timezone": NY,
            "dst": {"skipped": "skip", "repeated": "once"},
        },
        "2026-03-07T12:00:00Z",
        ["2026-03-09T06:30:00Z"],
    ),
    # -- intervals and at ---------------------------------------------------------------------
    (
        "interval with offset",
        {"intervals": [{"every_seconds": 3600, "offset_seconds": 900}]},
        "2026-01-01T00:20:00Z",
        ["2026-01-01T01:15:00Z", "2026-01-01T02:15:00Z"],
    ),
    (
        "interval is epoch-based",
        {"intervals": [{"every_seconds": 11}]},  # 1767225600 = 2026-01-01 ≡ 8 (mod 11)
        JAN1,
        ["2026-01-01T00:00:03Z", "2026-01-01T00:00:14Z"],
    ),
    (
        "interval ignores timezone and dst",
        {"intervals": [{"every_seconds": 3600}], "timezone": NY},
        "2026-03-08T05:30:00Z",
        ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"],
    ),
    (
        "at keeps milliseconds, sorted, then exhausted",
        {"at": ["2026-12-01T10:00:00.250Z", "2026-06-01T12:00:00+02:00", "2025-01-01T00:00:00Z"]},
        JAN1,
        ["2026-06-01T10:00:00Z", "2026-12-01T10:00:00.250Z"],
    ),
    ("at ignores dst", {"at": ["2026-03-08T07:30:00Z"], "timezone": NY}, JAN1, ["2026-03-08T07:30:00Z"]),
    (
        "union dedupe",
        {"cron": ["0 * * * *"], "intervals": [{"every_seconds": 1800}], "at": ["2026-01-01T01:00:00Z"]},
        JAN1,
        ["2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z", "2026-01-01T01:30:00Z", "2026-01-01T02:00:00Z"],
    ),
    # -- exclusions (local wall time) ---------------------------------------------------------
    (
        "exclusion in local time",
        {"cron": ["0 * * * *"], "timezone": "Europe/Riga", "exclude_calendars": [{"hour": "0-5"}]},
        "2026-01-01T20:00:00Z",
        ["2026-01-01T21:00:00Z", "2026-01-02T04:00:00Z"],
    ),
    (
        "exclusion applies to intervals and at",
        {
            "intervals": [{"every_seconds": 3600}],
            "at": ["2026-01-01T02:00:00.500Z"],
            "exclude_calendars": [{"hour": "1-3", "second": "*", "minute": "*"}],
        },
        JAN1,
        ["2026-01-01T04:00:00Z"],
    ),
    (
        "exclusion matches the wall time before the shift",
        {
            "cron": ["30 2 * * *"],
            "timezone": NY,
            "exclude_calendars": [{"month": 3, "day_of_month": 8, "hour": 2, "minute": 30}],
        },
        "2026-03-07T12:00:00Z",
        ["2026-03-09T06:30:00Z"],
    ),
    (
        "exclusion of the shifted-to time does not apply",
        {
            "cron": ["30 2 * * *"],
            "timezone": NY,
            "exclude_calendars": [{"month": 3, "day_of_month": 8, "hour": 3}],
        },
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z"],
    ),
    (
        "exclusion of one shifted time keeps the other",
        {
            "cron": ["0,30 2 * * *"],
            "timezone": NY,
            "exclude_calendars": [{"month": 3, "day_of_month": 8, "hour": 2, "minute": 0}],
        },
        "2026-03-07T12:00:00Z",
        ["2026-03-08T07:00:00Z", "2026-03-09T06:00:00Z"],
    ),
    (
        "exclusion of weekends at second grain",
        {
            "cron": ["0 0 12 * * *"],
            "intervals": [{"every_seconds": 1}],
            "exclude_calendars": [{"second": "*", "minute": "*", "hour": "*", "day_of_week": "SAT,SUN"}],
        },
        "2026-01-02T23:59:58Z",
        ["2026-01-02T23:59:59Z", "2026-01-05T00:00:00Z", "2026-01-05T00:00:01Z"],
    ),
    ("everything excluded: None", {"cron": ["0 0 * * *"], "exclude_calendars": [{}]}, JAN1, []),
    # -- window -------------------------------------------------------------------------------
    (
        "start_at / end_at inclusive",
        {"cron": ["0 * * * *"], "start_at": "2026-01-01T05:00:00Z", "end_at": "2026-01-01T07:00:00Z"},
        "2025-06-01T00:00:00Z",
        ["2026-01-01T05:00:00Z", "2026-01-01T06:00:00Z", "2026-01-01T07:00:00Z"],
    ),
    (
        "start_at with a fraction",
        {"intervals": [{"every_seconds": 1}], "start_at": "2026-01-01T00:00:00.500Z"},
        "2025-06-01T00:00:00Z",
        ["2026-01-01T00:00:01Z"],
    ),
    (
        "at exactly at start_at counts",
        {"at": ["2026-01-01T05:00:00Z"], "start_at": "2026-01-01T05:00:00Z"},
        "2025-06-01T00:00:00Z",
        ["2026-01-01T05:00:00Z"],
    ),
    ("window in the past", {"cron": ["0 * * * *"], "end_at": "2025-01-01T00:00:00Z"}, JAN1, []),
]


@pytest.mark.parametrize(("spec", "after", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_times(spec: dict[str, Any], after: str, expected: list[str]) -> None:
    # An empty row means "nothing at all", so ask for a few.
    assert upcoming(spec, after, len(expected) or 3) == expected


# (spec, after) → the exact list of remaining times: asserts exhaustion too.
EXHAUSTED: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("at only", {"at": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]}, JAN1, ["2026-01-02T00:00:00Z"]),
    (
        "end_at",
        {"cron": ["0 0 * * *"], "end_at": "2026-01-03T00:00:00Z"},
        JAN1,
        ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
    ),
    (
        "calendar years",
        {"calendars": [{"year": 2026, "month": 1, "day_of_month": 1, "hour": 5}]},
        JAN1,
        ["2026-01-01T05:00:00Z"],
    ),
]


@pytest.mark.parametrize(
    ("spec", "after", "expected"), [c[1:] for c in EXHAUSTED], ids=[c[0] for c in EXHAUSTED]
)
def test_exhausted(spec: dict[str, Any], after: str, expected: list[str]) -> None:
    c = compiled(spec)
    assert [fmt(t) for t in c.times(parse(after), 100)] == expected
    assert c.next_after(parse(expected[-1])) is None


def test_next_after_returns_aware_utc_and_rejects_naive() -> None:
    c = compiled({"cron": ["0 9 * * *"], "timezone": "Europe/Riga"})
    t = c.next_after(datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert t == datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert t is not None and t.tzinfo is UTC
    with pytest.raises(ValueError):
        c.next_after(datetime(2026, 1, 1))


def test_times_count_and_end() -> None:
    c = compiled({"cron": ["0 * * * *"]})
    after = parse(JAN1)
    assert [fmt(t) for t in c.times(after, 10, end=parse("2026-01-01T03:00:00Z"))] == [
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
        "2026-01-01T03:00:00Z",
    ]
    assert len(c.times(after, 5)) == 5
    assert c.times(after, 0) == []


def test_named_exclusions() -> None:
    spec = Spec.model_validate({"cron": ["0 0 * * *"], "exclude_calendar_refs": ["holidays"]})
    holidays = [Calendar(month=1, day_of_month="2,3")]
    c = compile_spec(spec, named_exclusions=holidays)
    assert [fmt(t) for t in c.times(parse(JAN1), 2)] == ["2026-01-04T00:00:00Z", "2026-01-05T00:00:00Z"]


def test_thousand_second_grain_times_with_exclusion() -> None:
    exclusion = {"second": "*", "minute": "*", "hour": "*", "day_of_week": "SAT,SUN"}
    c = compiled({"cron": ["* * * * * *"], "timezone": "Europe/Riga", "exclude_calendars": [exclusion]})
    riga = ZoneInfo("Europe/Riga")
    # Friday 23:59:30 in Riga: 30 seconds, then Monday.
    times = c.times(parse("2026-01-02T21:59:29Z"), 1000)
    assert len(times) == 1000
    assert times[0] == parse("2026-01-02T21:59:30Z")
    assert times[30] == parse("2026-01-04T22:00:00Z")
    assert all(b - a == timedelta(seconds=1) for a, b in zip(times[30:], times[31:], strict=False))
    assert all(t.astimezone(riga).weekday() < 5 for t in times)


def test_never_matching_feb_29_search_is_bounded() -> None:
    c = compiled({"cron": ["0 0 29 2 *"], "timezone": "Europe/Riga"})
    assert [fmt(t) for t in c.times(parse("2027-01-01T00:00:00Z"), 3)] == [
        "2028-02-28T22:00:00Z",
        "2032-02-28T22:00:00Z",
        "2036-02-28T22:00:00Z",
    ]


# -- jitter --------------------------------------------------------------------------------------


def test_jitter_deterministic_and_bounded() -> None:
    c = compiled({"cron": ["0 * * * *"], "jitter_seconds": 600})
    offsets = set()
    for nominal in c.times(parse(JAN1), 50):
        s1 = c.scheduled_time("sched-a", nominal)
        assert s1 == c.scheduled_time("sched-a", nominal)
        assert nominal <= s1 < nominal + timedelta(seconds=600)
        offsets.add(s1 - nominal)
    assert len(offsets) > 40
    nominal = parse("2026-01-01T05:00:00Z")
    assert c.scheduled_time("sched-a", nominal) != c.scheduled_time("sched-b", nominal)


def test_jitter_capped_below_the_next_nominal_time() -> None:
    c = compiled({"cron": ["* * * * * *"], "jitter_seconds": 3600})
    for nominal in c.times(parse(JAN1), 100):
        assert nominal <= c.scheduled_time("s", nominal) < nominal + timedelta(seconds=1)


def test_no_jitter_is_the_nominal_time() -> None:
    c = compiled({"cron": ["0 * * * *"]})
    nominal = parse("2026-01-01T05:00:00Z")
    assert c.scheduled_time("s", nominal) == nominal


# -- invalid specs -------------------------------------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unparsable cron", {"cron": ["nope"]}, "spec.cron[0]"),
    ("too few fields", {"cron": ["* * *"]}, "spec.cron[0]"),
    ("too many fields", {"cron": ["* * * * * * *"]}, "spec.cron[0]"),
    ("second cron", {"cron": ["0 * * * *", "61 * * * *"]}, "spec.cron[1]"),
    ("dow 8", {"cron": ["0 0 * * 8"]}, "spec.cron[0]"),
    ("month 13", {"cron": ["0 0 1 13 *"]}, "spec.cron[0]"),
    ("unknown name", {"cron": ["0 0 * * FUN"]}, "spec.cron[0]"),
    ("unknown macro", {"cron": ["@reboot"]}, "spec.cron[0]"),
    ("step 0", {"cron": ["*/0 * * * *"]}, "spec.cron[0]"),
    ("backwards range", {"cron": ["0 0 * * FRI-MON"]}, "spec.cron[0]"),
    ("#6", {"cron": ["0 0 * * 5#6"]}, "spec.cron[0]"),
    ("L in day-of-week alone", {"cron": ["0 0 * * L"]}, "spec.cron[0]"),
    ("empty list item", {"cron": ["0 0 1,,2 * *"]}, "spec.cron[0]"),
    ("never: Feb 31", {"cron": ["0 0 31 2 *"]}, "spec.cron[0]"),
    ("never: 31st of 30-day months", {"cron": ["0 0 31 2,4,6,9,11 *"]}, "spec.cron[0]"),
    ("never: Feb 30", {"cron": ["0 0 0 30 2 *"]}, "spec.cron[0]"),
    ("empty spec", {}, "spec"),
    ("only exclusions", {"exclude_calendars": [{"hour": 1}]}, "spec"),
    ("calendar hour 24", {"calendars": [{"hour": 24}]}, "spec.calendars[0].hour"),
    (
        "calendar bad string",
        {"calendars": [{"hour": 1}, {"day_of_week": "XYZ"}]},
        "spec.calendars[1].day_of_week",
    ),
    ("calendar empty ranges", {"calendars": [{"minute": []}]}, "spec.calendars[0].minute"),
    (
        "calendar range out of bounds",
        {"calendars": [{"month": [{"start": 11, "end": 13}]}]},
        "spec.calendars[0].month",
    ),
    ("calendar year too early", {"calendars": [{"year": 1900}]}, "spec.calendars[0].year"),
    ("calendar never: Feb 30", {"calendars": [{"month": 2, "day_of_month": 30}]}, "spec.calendars[0]"),
    (
        "calendar never: Feb 29 2030",
        {"calendars": [{"year": 2030, "month": 2, "day_of_month": 29}]},
        "spec.calendars[0]",
    ),
    (
        "calendar never: Monday Jan 1 2030",
        {"calendars": [{"year": 2030, "month": 1, "day_of_month": 1, "day_of_week": "MON"}]},
        "spec.calendars[0]",
    ),
    (
        "exclusion bad field",
        {"cron": ["@daily"], "exclude_calendars": [{"month": 13}]},
        "spec.exclude_calendars[0].month",
    ),
    (
        "start_at after end_at",
        {"cron": ["@daily"], "start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
        "spec.end_at",
    ),
]


@pytest.mark.parametrize(("spec", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        compiled(spec)
    assert info.value.field == field
    assert info.value.details[0]["field"] == field


def test_invalid_uses_field_prefix_and_reports_all() -> None:
    spec = Spec.model_validate({"cron": ["bad", "0 0 31 2 *"], "calendars": [{"hour": 99}]})
    with pytest.raises(InvalidArgument) as info:
        compile_spec(spec, field_prefix="schedules[3].spec")
    assert [d["field"] for d in info.value.details] == [
        "schedules[3].spec.cron[0]",
        "schedules[3].spec.cron[1]",
        "schedules[3].spec.calendars[0].hour",
    ]


def test_invalid_named_exclusion() -> None:
    spec = Spec.model_validate({"cron": ["@daily"], "exclude_calendar_refs": ["a", "b"]})
    with pytest.raises(InvalidArgument) as info:
        compile_spec(spec, named_exclusions=[Calendar(), Calendar(hour=30)])
    assert info.value.field == "spec.exclude_calendar_refs[1].hour"


# Values the models already refuse, built with model_construct to reach compile_spec's own checks.
CONSTRUCTED: list[tuple[str, Spec, str]] = [
    (
        "unknown timezone",
        Spec.model_construct(cron=["@daily"], timezone="Mars/Olympus_Mons"),
        "spec.timezone",
    ),
    (
        "every_seconds 0",
        Spec.model_construct(
            intervals=[Interval(every_seconds=5), Interval.model_construct(every_seconds=0, offset_seconds=0)]
        ),
        "spec.intervals[1].every_seconds",
    ),
    (
        "offset >= every",
        Spec.model_construct(intervals=[Interval.model_construct(every_seconds=5, offset_seconds=5)]),
        "spec.intervals[0].offset_seconds",
    ),
    ("negative jitter", Spec.model_construct(cron=["@daily"], jitter_seconds=-1), "spec.jitter_seconds"),
]


@pytest.mark.parametrize(("spec", "field"), [c[1:] for c in CONSTRUCTED], ids=[c[0] for c in CONSTRUCTED])
def test_invalid_constructed(spec: Spec, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        compile_spec(spec)
    assert info.value.field == field


MODEL_ERRORS: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    ("every_seconds 0", {"intervals": [{"every_seconds": 0}]}, ("intervals", 0, "every_seconds")),
    (
        "offset = every",
        {"intervals": [{"every_seconds": 5, "offset_seconds": 5}]},
        ("intervals", 0, "offset_seconds"),
    ),
    (
        "negative offset",
        {"intervals": [{"every_seconds": 5, "offset_seconds": -1}]},
        ("intervals", 0, "offset_seconds"),
    ),
    ("every as a string", {"intervals": [{"every_seconds": "5"}]}, ("intervals", 0, "every_seconds")),
    ("negative jitter", {"jitter_seconds": -1}, ("jitter_seconds",)),
    ("unknown timezone", {"timezone": "Mars/Olympus_Mons"}, ("timezone",)),
    ("path as timezone", {"timezone": "../etc/passwd"}, ("timezone",)),
    ("empty timezone", {"timezone": ""}, ("timezone",)),
    ("unknown field", {"crons": ["@daily"]}, ("crons",)),
    ("naive at", {"at": ["2026-01-01T00:00:00"]}, ("at", 0)),
    ("bad dst", {"dst": {"skipped": "jump", "repeated": "once"}}, ("dst", "skipped")),
    ("dst unknown field", {"dst": {"skipped": "skip", "repeated": "once", "x": 1}}, ("dst", "x")),
    ("range step 0", {"calendars": [{"hour": [{"start": 1, "step": 0}]}]}, ("calendars", 0, "hour")),
    ("calendar unknown field", {"calendars": [{"hours": 1}]}, ("calendars", 0, "hours")),
]


@pytest.mark.parametrize(("data", "loc"), [c[1:] for c in MODEL_ERRORS], ids=[c[0] for c in MODEL_ERRORS])
def test_model_rejects(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        Spec.model_validate(data)
    assert any(e["loc"][: len(loc)] == loc for e in info.value.errors())


def test_range_end_before_start() -> None:
    with pytest.raises(ValidationError) as info:
        Range(start=5, end=4)
    assert info.value.errors()[0]["loc"] == ("end",)


def test_models_round_trip() -> None:
    data = {
        "cron": ["*/5 * * * *"],
        "intervals": [{"every_seconds": 5, "offset_seconds": 0}],
        "calendars": [{"hour": 9, "day_of_week": "MON-FRI"}],
        "at": ["2026-12-01T10:00:00Z"],
        "timezone": "Europe/Riga",
        "dst": {"skipped": "skip", "repeated": "twice"},
    }
    spec = Spec.model_validate(data)
    assert Spec.model_validate(spec.model_dump(mode="json")) == spec
    assert spec.dst == DstPolicy(skipped="skip", repeated="twice")


def test_compile_calendar_helper() -> None:
    assert compile_calendar(Calendar(hour=1)).matches(datetime(2026, 5, 5, 1))
    with pytest.raises(InvalidArgument) as info:
        compile_calendar(Calendar(month=2, day_of_month=31), "calendar")
    assert info.value.field == "calendar"


# -- properties ----------------------------------------------------------------------------------


def _items(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    """One non-wildcard cron list item in [low, high]."""
    value = st.integers(low, high)
    single = value.map(str) if names is None else st.one_of(value.map(str), st.sampled_from(names))
    # croniter 7.0 reads a one-value range ("5-5") as "*": keep ranges at least two long here.
    span = st.tuples(value, value).filter(lambda ab: ab[0] != ab[1]).map(lambda ab: (min(ab), max(ab)))
    return st.one_of(
        single,
        span.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(span, st.integers(1, 7)).map(lambda x: f"{x[0][0]}-{x[0][1]}/{x[1]}"),
        st.tuples(value, st.integers(1, 7)).map(lambda x: f"{x[0]}/{x[1]}"),
    )


def _field(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    explicit = st.lists(_items(low, high, names), min_size=1, max_size=3).map(",".join)
    return st.one_of(st.just("*"), st.integers(1, 12).map(lambda n: f"*/{n}"), explicit)


MONTHS = ["jan", "FEB", "Mar", "apr", "MAY", "jun", "JUL", "aug", "sep", "OCT", "nov", "DEC"]
DAYS = ["sun", "MON", "Tue", "wed", "THU", "fri", "SAT"]


@st.composite
def crons(draw: st.DrawFn) -> str:
    minute = draw(_field(0, 59))
    hour = draw(_field(0, 23))
    dom = draw(st.one_of(_field(1, 31), st.just("L"), st.just("1,L")))
    month = draw(_field(1, 12, MONTHS))
    dow = draw(st.one_of(_field(0, 7, DAYS), st.sampled_from(["FRI#3", "1#1", "mon#5"])))
    # croniter ORs the day fields whenever neither is exactly "*"; Vixie (and gnomon) treat a
    # field starting with "*" as unrestricted. Only compare where the two rules agree.
    both_restricted = dom != "*" and dow != "*"
    assume(not (both_restricted and (dom.startswith("*") or dow.startswith("*"))))
    # croniter ignores (or fails on) a restricted day-of-month next to `#`: '* * 8 * FRI#3' raises
    # CroniterBadDateError, '* * 1 nov 1#1' skips Nov 1. Vixie's OR is covered by the table.
    assume(not (dom != "*" and "#" in dow))
    return f"{minute} {hour} {dom} {month} {dow}"


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1)).map(
    lambda t: t.replace(tzinfo=UTC)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(expression=crons(), after=instants)
def test_agrees_with_croniter_in_utc(expression: str, after: datetime) -> None:
    try:
        c = compiled({"cron": [expression]})
    except InvalidArgument:
        assume(False)
    ours = c.times(after, 6)
    it = croniter(expression, after)
    theirs = [it.get_next(datetime) for _ in range(len(ours))]
    assert ours == theirs
    assert len(ours) == 6
    assert all(a < b for a, b in zip(ours, ours[1:], strict=False))


def _oracle(
    matches: Callable[[datetime], bool], shift: bool, twice: bool, tz: ZoneInfo, lo: datetime, hi: datetime
) -> list[datetime]:
    """Brute force, minute by minute over instants: which instants a minute-grain rule fires at."""
    fired: set[datetime] = set()
    seen: set[datetime] = set()
    prev_wall: datetime | None = None
    u = lo
    minute = timedelta(minutes=1)
    while u <= hi:
        wall = u.astimezone(tz).replace(tzinfo=None)
        if prev_wall is not None and wall - prev_wall > minute:
            g = prev_wall + minute
            while g < wall:  # wall times the clocks jumped over
                if shift and matches(g):
                    fired.add(u)
                g += minute
        if matches(wall):
            if wall not in seen or twice:
                fired.add(u)
            seen.add(wall)
        prev_wall = wall
        u += minute
    return sorted(fired)


ZONES = [
    "America/New_York",
    "Europe/Riga",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Kathmandu",
]


def _transitions(zone: str) -> list[datetime]:
    tz, out, prev = ZoneInfo(zone), [], None
    t = datetime(2025, 1, 1, tzinfo=UTC)
    while t.year < 2028:
        off = t.astimezone(tz).utcoffset()
        if prev is not None and off != prev:
            out.append(t)
        prev, t = off, t + timedelta(minutes=15)
    return out or [datetime(2026, 3, 1, tzinfo=UTC)]


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}


@st.composite
def dst_crons(draw: st.DrawFn) -> str:
    minute = draw(
        st.one_of(
            st.sampled_from(["*", "*/15", "0", "30", "45", "0,30", "10-50/20", "1", "59"]), _field(0, 59)
        )
    )
    hour = draw(
        st.one_of(st.sampled_from(["*", "*/2", "0", "1", "2", "3", "23", "0-3", "1,2"]), _field(0, 23))
    )
    dow = draw(st.sampled_from(["*", "*", "SUN", "SAT,SUN", "MON-FRI"]))
    return f"{minute} {hour} * * {dow}"


@settings(max_examples=60, deadline=None)
@given(
    expression=dst_crons(),
    zone=st.sampled_from(ZONES),
    pick=st.integers(0, 100),
    policy=st.sampled_from(
        [None, ("shift", "once"), ("shift", "twice"), ("skip", "once"), ("skip", "twice")]
    ),
    exclude=st.sampled_from([None, {"hour": "*", "minute": "0-9"}, {"hour": 2, "minute": "*"}]),
)
def test_dst_mapping_matches_brute_force(
    expression: str, zone: str, pick: int, policy: tuple[str, str] | None, exclude: dict[str, Any] | None
) -> None:
    transitions = TRANSITIONS[zone]
    around = transitions[pick % len(transitions)]
    spec: dict[str, Any] = {"cron": [expression], "timezone": zone}
    if policy is not None:
        spec["dst"] = {"skipped": policy[0], "repeated": policy[1]}
    if exclude is not None:
        spec["exclude_calendars"] = [exclude]
    c = compiled(spec)
    fields = parse_cron(expression)
    fixed = not (fields.hour.wildcard or fields.minute.wildcard)
    shift, twice = (policy[0] == "shift", policy[1] == "twice") if policy else (fixed, not fixed)
    matcher = Matcher.from_cron(fields)
    excluder = compile_calendar(Calendar(**exclude)) if exclude else None

    def matches(t: datetime) -> bool:
        return matcher.matches(t) and not (excluder is not None and excluder.matches(t))

    lo, hi = around - timedelta(days=2), around + timedelta(days=2)
    expected = [
        t for t in _oracle(matches, shift, twice, ZoneInfo(zone), lo, hi) if t > lo + timedelta(days=1)
    ]
    start = lo + timedelta(days=1)
    got = c.times(start, 10_000, end=hi)
    assert got == expected


@settings(max_examples=40, deadline=None)
@given(
    every=st.integers(60, 5400),
    zone=st.sampled_from(ZONES),
    pick=st.integers(0, 100),
    exclude=st.sampled_from(
        [
            {"hour": "1-2", "minute": "*", "second": "*"},
            {"hour": "*", "minute": "0-29", "second": "*"},
            {"hour": 0, "minute": "*/10", "second": "*"},
        ]
    ),
)
def test_interval_exclusions_match_brute_force(
    every: int, zone: str, pick: int, exclude: dict[str, Any]
) -> None:
    around = TRANSITIONS[zone][pick % len(TRANSITIONS[zone])]
    c = compiled({"intervals": [{"every_seconds": every}], "timezone": zone, "exclude_calendars": [exclude]})
    excluder = compile_calendar(Calendar(**exclude))
    tz = ZoneInfo(zone)
    lo, hi = around - timedelta(days=1), around + timedelta(days=1)
    first = int(lo.timestamp()) // every * every + every
    expected = [
        t
        for t in (datetime.fromtimestamp(s, UTC) for s in range(first, int(hi.timestamp()) + 1, every))
        if not excluder.matches(t.astimezone(tz).replace(tzinfo=None))
    ]
    assert c.times(lo, 100_000, end=hi) == expected


# -- streams that exclusions silence entirely --------------------------------------------------
SILENCED = [
    # one exclusion covers the cron expression
    ({"cron": ["30 */5 * * FRI#3"]}, [{"hour": "*", "minute": "*/3", "second": "*"}]),
    # every-day exclusions that together cover every time of day the cron allows
    (
        {"cron": ["*/5 * * * *"]},
        [{"hour": "*", "minute": "0-29", "second": "*"}, {"hour": "*", "minute": "30-59", "second": "*"}],
    ),
    # an interval whose grid always lands on an excluded second (was a 36 s search of 5 years)
    (
        {"intervals": [{"every_seconds": 60, "offset_seconds": 30}]},
        [{"hour": "*", "minute": "*", "second": 30}],
    ),
    # … in a zone with DST and a half-hour offset history: every offset's grid is excluded
    (
        {"intervals": [{"every_seconds": 5400, "offset_seconds": 1263}], "timezone": "America/Santiago"},
        [{"hour": "*", "minute": "*/3", "second": "*"}],
    ),
    ({"intervals": [{"every_seconds": 1}]}, [{"hour": "*", "minute": "*", "second": "*"}]),
]


@pytest.mark.parametrize(("spec", "exclusions"), SILENCED)
def test_a_stream_silenced_by_exclusions_is_dropped_at_compile(
    spec: dict[str, Any], exclusions: list[dict[str, Any]]
) -> None:
    c = compiled({**spec, "exclude_calendars": exclusions})
    assert (c._wall_rules, c._intervals) == ((), ())
    assert c.times(datetime(2026, 1, 1, tzinfo=UTC), 3) == []


def test_a_stream_only_partly_excluded_stays() -> None:
    # an hourly interval at …:22:03 in whole-hour offsets: minute 22 escapes the */3 exclusion
    c = compiled(
        {
            "intervals": [{"every_seconds": 3600, "offset_seconds": 1323}],
            "timezone": "America/Santiago",
            "exclude_calendars": [{"hour": "*", "minute": "*/3", "second": "*"}],
        }
    )
    assert len(c._intervals) == 1
    c = compiled(
        {
            "cron": ["*/5 * * * MON"],
            "exclude_calendars": [{"hour": "*", "minute": "*", "second": "*", "day_of_week": "TUE-SAT,SUN"}],
        }
    )
    assert len(c._wall_rules) == 1 and len(c.times(datetime(2026, 1, 1, tzinfo=UTC), 3)) == 3


@settings(max_examples=80, deadline=None)
@given(
    every=st.sampled_from([1, 7, 30, 60, 90, 3600]),
    offset=st.integers(0, 3599),
    cron=st.sampled_from(["*/5 * * * *", "0,30 * * * * *", "15 9 * * MON-FRI", "*/20 */2 * * * *"]),
    exclusions=st.lists(
        st.fixed_dictionaries(
            {
                "hour": st.sampled_from(["*", "0-11", 9]),
                "minute": st.sampled_from(["*", "*/3", "0-29", "30-59", 15]),
                "second": st.sampled_from(["*", 30, "0-29", "*/20"]),
            }
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_dropping_silenced_streams_never_changes_the_times(
    every: int, offset: int, cron: str, exclusions: list[dict[str, Any]]
) -> None:
    spec = {"cron": [cron], "intervals": [{"every_seconds": every, "offset_seconds": offset % every}]}
    start = datetime(2026, 3, 1, tzinfo=UTC)
    excluders = [compile_calendar(Calendar(**x)) for x in exclusions]
    end = start + timedelta(hours=2)
    unfiltered = compiled(spec).times(start, 10_000, end=end)
    expected = [t for t in unfiltered if not any(x.matches(t.replace(tzinfo=None)) for x in excluders)]
    assert compiled({**spec, "exclude_calendars": exclusions}).times(start, 10_000, end=end) == expected
