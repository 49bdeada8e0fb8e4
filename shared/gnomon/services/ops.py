"""Operations views: dead letters, start lateness, and the overview's run metrics (firings by
day and hour, run durations) read with the lateness samples."""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from gnomon.domain.errors import InvalidArgument
from gnomon.domain.runs import DURATION_STATUSES
from gnomon.domain.timefmt import EPOCH, fmt
from gnomon.ports import JSON, Clock, DeadLetterQueue, RunSample, RunStore
from gnomon.services.stats import zone

KNOWN_KINDS = frozenset({"firing", "firings", "run", "lease_expired"})
MAX_LATENESS_RUNS = 10_000
DEFAULT_WINDOW = timedelta(hours=1)
INCLUDES = ("firings", "durations")
"""What `GET /v1/metrics/lateness?include=` may add to the percentiles."""
# Upper edges of the duration histogram's bins, log-spaced 1-2-5 from 1 ms to 5 000 s: bin i
# holds [edge i-1, edge i) (bin 0 from 0), the last one everything from 5 000 s on.
DURATION_EDGES_MS: tuple[int, ...] = tuple(m * 10**e for e in range(7) for m in (1, 2, 5))


def dead_letter_reason(body: str, receive_count: int) -> str:
    """Why a message was dead-lettered, as far as its body tells."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "unreadable: the body is not JSON"
    if not isinstance(parsed, dict) or parsed.get("kind") not in KNOWN_KINDS:
        return "unreadable: not a gnomon firing message"
    return f"failed {receive_count} deliveries (the worker raised each time)"


class Ops:
    def __init__(self, runs: RunStore, dlq: DeadLetterQueue | None, clock: Clock) -> None:
        self._runs = runs
        self._dlq = dlq
        self._clock = clock

    def dead_letters(self, limit: int) -> JSON:
        items = []
        for m in self._dlq.peek(limit) if self._dlq else []:
            try:
                body: Any = json.loads(m.body)
            except ValueError:
                body = m.body
            items.append(
                {
                    "message_id": m.message_id,
                    "body": body,
                    "receive_count": m.receive_count,
                    "sent_at": fmt(m.sent_at),
                    "reason": dead_letter_reason(m.body, m.receive_count),
                }
            )
        last_page = None  # the queue cannot be paged by key: one page only
        return {"items": items, "next_page_token": last_page}

    def redrive(self, limit: int) -> JSON:
        return {"redriven": self._dlq.redrive(limit) if self._dlq else 0}

    def lateness(
        self,
        *,
        schedule: str | None,
        definition: str | None,
        start: datetime | None,
        end: datetime | None,
        bucket_seconds: int,
        include: Collection[str] = (),
        timezone: str | None = None,
    ) -> JSON:
        """p50/p95/p99/max of `started_at − scheduled_time` (ms) per bucket of scheduled time;
        with `include`, from the same read of the window's runs: `firings` (runs by day of week
        and hour of their nominal time in `timezone`, and by status) and `durations` (a
        histogram of closed runs' `duration_ms`)."""
        if bucket_seconds < 1:
            raise InvalidArgument("query.bucket_seconds", "must be an integer ≥ 1")
        if unknown := sorted(set(include) - set(INCLUDES)):
            raise InvalidArgument(
                "query.include", f"unknown {unknown[0]!r}: give any of {', '.join(INCLUDES)}"
            )
        tz_name = "UTC" if timezone is None else timezone
        tz = zone(tz_name)
        end = end or self._clock.now()
        start = start or end - DEFAULT_WINDOW
        if start >= end:
            raise InvalidArgument("query.from", "must be before to")
        samples: dict[int, list[float]] = {}
        found, truncated = self._runs.run_samples(
            schedule_id=schedule,
            definition=definition,
            start=start,
            end=end,
            limit=MAX_LATENESS_RUNS,
            durations="durations" in include,
        )
        for run in found:
            if run.lateness is None:
                continue
            scheduled, late_ms = run.lateness
            bucket = int((scheduled - EPOCH).total_seconds()) // bucket_seconds
            samples.setdefault(bucket, []).append(late_ms)
        buckets = []
        for b in sorted(samples):
            values = sorted(samples[b])
            buckets.append(
                {
                    "start": fmt(EPOCH + timedelta(seconds=b * bucket_seconds)),
                    "count": len(values),
                    "p50_ms": _pct(values, 50),
                    "p95_ms": _pct(values, 95),
                    "p99_ms": _pct(values, 99),
                    "max_ms": round(values[-1], 1),
                }
            )
        answer: JSON = {
            "from": fmt(start),
            "to": fmt(end),
            "bucket_seconds": bucket_seconds,
            "buckets": buckets,
            "truncated": truncated,
        }
        if "firings" in include:
            answer["firings"] = _firings(found, tz, tz_name)
        if "durations" in include:
            answer["durations"] = _durations(found)
        return answer


def _firings(found: Sequence[RunSample], tz: tzinfo, tz_name: str) -> JSON:
    """Runs counted by (day of week, hour) of their nominal time in `tz`: `by_day_hour[d][h]`,
    d = 0 for Monday … 6 for Sunday, h = 0 … 23 local; and by status."""
    grid = [[0] * 24 for _ in range(7)]
    for run in found:
        local = run.nominal_time.astimezone(tz)
        grid[local.weekday()][local.hour] += 1
    return {
        "timezone": tz_name,
        "total": len(found),
        "by_status": dict(sorted(Counter(run.status for run in found).items())),
        "by_day_hour": grid,
    }


def _durations(found: Sequence[RunSample]) -> JSON:
    """A histogram of the closed runs' durations over `DURATION_EDGES_MS`, with percentiles."""
    closed = [
        (run.duration_ms, run.status)
        for run in found
        if run.duration_ms is not None and run.status in DURATION_STATUSES
    ]
    counts: list[Counter[str]] = [Counter() for _ in range(len(DURATION_EDGES_MS) + 1)]
    for duration, status in closed:
        counts[bisect_right(DURATION_EDGES_MS, duration)][status] += 1
    lowers = (0, *DURATION_EDGES_MS)
    uppers: tuple[int | None, ...] = (*DURATION_EDGES_MS, None)
    values = sorted(duration for duration, _ in closed)
    return {
        "count": len(values),
        "p50_ms": _pct(values, 50) if values else None,
        "p95_ms": _pct(values, 95) if values else None,
        "max_ms": values[-1] if values else None,
        "bins": [
            {"lower_ms": lo, "upper_ms": up, "count": sum(c.values()), "by_status": dict(sorted(c.items()))}
            for lo, up, c in zip(lowers, uppers, counts, strict=True)
        ],
    }


def _pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, math.ceil(p / 100 * len(values)) - 1)
    return round(values[k], 1)
