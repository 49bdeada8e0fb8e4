"""Operations views: dead letters and start lateness."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from gnomon.domain.errors import InvalidArgument
from gnomon.domain.timefmt import EPOCH, fmt
from gnomon.ports import JSON, Clock, DeadLetterQueue, RunStore

KNOWN_KINDS = frozenset({"firing", "run", "lease_expired"})
MAX_LATENESS_RUNS = 10_000
DEFAULT_WINDOW = timedelta(hours=1)


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
    ) -> JSON:
        """p50/p95/p99/max of `started_at − scheduled_time` (ms) per bucket of scheduled time."""
        if bucket_seconds < 1:
            raise InvalidArgument("query.bucket_seconds", "must be an integer ≥ 1")
        end = end or self._clock.now()
        start = start or end - DEFAULT_WINDOW
        if start >= end:
            raise InvalidArgument("query.from", "must be before to")
        samples: dict[int, list[float]] = {}
        found, truncated = self._runs.lateness_samples(
            schedule_id=schedule, definition=definition, start=start, end=end, limit=MAX_LATENESS_RUNS
        )
        for scheduled, late_ms in found:
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
        return {
            "from": fmt(start),
            "to": fmt(end),
            "bucket_seconds": bucket_seconds,
            "buckets": buckets,
            "truncated": truncated,
        }


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, math.ceil(p / 100 * len(values)) - 1)
    return round(values[k], 1)
