"""EventBridge rate(1 minute) → one tick: enqueue due firings, advance schedules, sweep leases."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from gnomon import tracing
from gnomon.services.runs import sweep_expired
from gnomon.wiring import services

logger = Logger(service="gnomon")
metrics = Metrics(namespace="gnomon", service="ticker")
_expiry_cursor: str | None = None  # where the local stack's retention sweep goes on


@metrics.log_metrics
@tracing.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time_left = (lambda: context.get_remaining_time_in_millis() / 1000) if context else (lambda: 60.0)
    started = time.monotonic()
    report = services().ticker.tick(time_left)
    tick_ms = (time.monotonic() - started) * 1000
    _sweep_event_streams()
    if os.environ.get("GNOMON_DEV_AWS_ENDPOINT"):
        _sweep_expired_runs()
    metrics.add_metric("FiringsEnqueued", MetricUnit.Count, report.firings_enqueued)
    metrics.add_metric("DueItemsRead", MetricUnit.Count, report.due_read)
    metrics.add_metric("RunsSwept", MetricUnit.Count, report.runs_swept)
    # For the dashboard and the TickerErrorsAlarm (template.yaml; docs/operations.md).
    metrics.add_metric("FiringsMissed", MetricUnit.Count, report.missed)
    metrics.add_metric("TickErrors", MetricUnit.Count, len(report.errors))
    metrics.add_metric("TickDuration", MetricUnit.Milliseconds, round(tick_ms, 1))
    if report.errors:
        logger.warning("tick errors", extra={"errors": report.errors[:20]})
    return asdict(report)


_EVENT_SWEEP_EVERY = 60.0  # seconds: the local stack ticks far more often than AWS's once a minute
_last_event_sweep = -_EVENT_SWEEP_EVERY


def _sweep_event_streams() -> None:
    """At most once a minute: move event streams whose run ended unnoticed (its worker died
    between closing the run and telling the stream)."""
    global _last_event_sweep
    now = time.monotonic()
    if now - _last_event_sweep < _EVENT_SWEEP_EVERY:
        return
    _last_event_sweep = now
    try:
        looked = services().events.sweep()
        metrics.add_metric("EventStreamsSwept", MetricUnit.Count, looked)
    except Exception:
        logger.exception("event stream sweep failed")


def _sweep_expired_runs() -> None:
    """moto never expires items (TTL): the local stack deletes expired runs here, a bounded
    page per tick, going on where the last tick stopped."""
    global _expiry_cursor
    s = services()
    try:
        _, _expiry_cursor = sweep_expired(s.run_store, s.clock.now(), limit=100, after=_expiry_cursor)
    except Exception:
        logger.exception("retention sweep failed")
        _expiry_cursor = None
