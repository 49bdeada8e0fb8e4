"""SQS event source (ReportBatchItemFailures) → run the firings of a batch, concurrently.

Powertools' BatchProcessor handles records one after another; a batch of ten slow targets would
then take ten timeouts. Records are independent (each run is claimed by a conditional write), so
they run in a thread pool and the failures are reported in the same `batchItemFailures` shape.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from gnomon import tracing
from gnomon.services.events import is_event_message
from gnomon.wiring import services

logger = Logger(service="gnomon")
metrics = Metrics(namespace="gnomon", service="worker")
_pool = ThreadPoolExecutor(max_workers=10)
# Runs by final status, for the dashboard (template.yaml); timed_out counts as failed too.
_METRICS_BY_STATUS = {
    "completed": ("RunsCompleted",),
    "failed": ("RunsFailed",),
    "timed_out": ("RunsFailed", "RunsTimedOut"),
    "canceled": ("RunsCanceled",),
    "terminated": ("RunsTerminated",),
    "skipped": ("RunsSkipped",),
}


def _body(record: dict[str, Any]) -> dict[str, Any]:
    """A record's message body, or {} when it is not a JSON object (`_process` reports it)."""
    try:
        body = json.loads(record["body"])
    except (KeyError, TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _process(record: dict[str, Any]) -> tuple[str | None, Any]:
    """(None, handled) when handled; (message id, None) when the message must come back."""
    try:
        body = json.loads(record["body"])
        if not isinstance(body, dict):
            raise ValueError("message body is not a JSON object")
        if is_event_message(body):  # the event ingestion queue (CONTRACT.md §7)
            answer = services().events.ingest(body)
            logger.info("event ingested", extra={"event_id": answer["event_id"], "type": answer["type"]})
            return None, None
        handled = services().executor.handle(body)
        logger.info(
            "handled",
            extra={"run_id": handled.run_id, "outcome": handled.outcome, "status": handled.status},
        )
        return None, handled
    except Exception:
        logger.exception("message failed", extra={"message_id": record.get("messageId")})
        return str(record["messageId"]), None


@metrics.log_metrics
@tracing.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records", [])
    # The batch's run counters: one write per counter item; its runs: one hold for all.
    with services().per_batch([_body(r) for r in records]) as hold:
        results = list(_pool.map(_process, records))
        hold.keep = any(failed is not None for failed, _ in results)  # the sweep looks at them
    for _, handled in results:
        if handled is None:
            continue
        for name in _METRICS_BY_STATUS.get(handled.status or "", ()):
            metrics.add_metric(name, MetricUnit.Count, 1)
        if handled.outcome == "retry_scheduled":
            metrics.add_metric("RunsRetried", MetricUnit.Count, 1)
        if handled.outcome in ("duplicate", "stale"):
            metrics.add_metric(f"Firings{handled.outcome.capitalize()}", MetricUnit.Count, 1)
        if handled.lateness_ms is not None:
            metrics.add_metric("StartLateness", MetricUnit.Milliseconds, handled.lateness_ms)
    return {"batchItemFailures": [{"itemIdentifier": f} for f, _ in results if f is not None]}
