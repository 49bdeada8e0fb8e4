"""SQS event source (ReportBatchItemFailures) → run the firings of a batch, concurrently.

Powertools' BatchProcessor handles records one after another; a batch of ten slow targets would
then take ten timeouts. Records are independent (each run is claimed by a conditional write), so
they run in a thread pool and the failures are reported in the same `batchItemFailures` shape.
A record may pack the firings of one second (`gnomon.services.tick.pack_firings`): each runs on
its own, and those that fail are sent again alone rather than the record coming back whole.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from gnomon import tracing
from gnomon.ports import OutgoingMessage
from gnomon.services.events import is_event_message
from gnomon.services.tick import unpack_firings
from gnomon.wiring import services

logger = Logger(service="gnomon")
metrics = Metrics(namespace="gnomon", service="worker")
# A batch is ten records of up to ten firings each: 32 run at once (each firing waits
# out the rest of its second, then mostly waits on DynamoDB and its target).
_pool = ThreadPoolExecutor(max_workers=32)  # the SDK clients keep 32 connections each
RESEND_DELAY = 30  # seconds before a packed firing that failed comes again on its own
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


def _bodies(record: dict[str, Any]) -> list[dict[str, Any]]:
    """What a record carries: its body, or the firings it packs (the ticker sends the firings
    of one second ten a message); [{}] when it is not a JSON object."""
    body = _body(record)
    try:
        return unpack_firings(body) or [body]
    except ValueError:
        return [{}]


def _handle(body: dict[str, Any]) -> tuple[bool, Any]:
    """(True, handled) when handled; (False, None) when it must come again."""
    try:
        if not body:
            raise ValueError("message body is not a JSON object")
        if is_event_message(body):  # the event ingestion queue (CONTRACT.md §7)
            answer = services().events.ingest(body)
            logger.info("event ingested", extra={"event_id": answer["event_id"], "type": answer["type"]})
            return True, None
        handled = services().executor.handle(body)
        logger.info(
            "handled",
            extra={"run_id": handled.run_id, "outcome": handled.outcome, "status": handled.status},
        )
        return True, handled
    except Exception:
        logger.exception("message failed", extra={"kind": body.get("kind"), "run_id": body.get("run_id")})
        return False, None


def _settle(
    record: dict[str, Any], bodies: list[dict[str, Any]], results: list[tuple[bool, Any]]
) -> str | None:
    """The record's message id when it must come back, else None. Of a packed record, the
    firings that failed are sent again, each a message of its own (after a back-off, as a
    redelivery would come; from then on the queue's redrive policy counts their receives):
    the others are not delivered again. If that send fails, the whole record comes back."""
    failed = [b for b, (ok, _) in zip(bodies, results, strict=True) if not ok]
    if not failed:
        return None
    if len(bodies) > 1:
        try:
            services().queue.send([OutgoingMessage(body=b, delay_seconds=RESEND_DELAY) for b in failed])
            logger.info("packed firings sent again", extra={"count": len(failed)})
            return None
        except Exception:
            logger.exception("packed firings not sent again", extra={"message_id": record.get("messageId")})
    return str(record["messageId"])


def _process(record: dict[str, Any]) -> tuple[str | None, list[Any], bool]:
    """One record, its firings one after another: (message id or None, what was handled,
    whether every firing was — a batch with one that was not keeps its hold for the sweep)."""
    bodies = _bodies(record)
    results = [_handle(b) for b in bodies]
    handled = [h for ok, h in results if ok and h is not None]
    return _settle(record, bodies, results), handled, all(ok for ok, _ in results)


@metrics.log_metrics
@tracing.capture_lambda_handler
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records", [])
    carried = [_bodies(r) for r in records]
    units = [b for bodies in carried for b in bodies]  # every firing of the batch runs at once
    # The batch's run counters: one write per counter item; its runs: one hold for all.
    with services().per_batch(units) as hold:
        done = list(_pool.map(_handle, units))
        hold.keep = not all(ok for ok, _ in done)  # the sweep looks at them
    failures: list[str] = []
    at = 0
    for record, bodies in zip(records, carried, strict=True):
        failed = _settle(record, bodies, done[at : at + len(bodies)])
        at += len(bodies)
        if failed is not None:
            failures.append(failed)
    for ok, handled in done:
        if not ok or handled is None:
            continue
        for name in _METRICS_BY_STATUS.get(handled.status or "", ()):
            metrics.add_metric(name, MetricUnit.Count, 1)
        if handled.outcome == "retry_scheduled":
            metrics.add_metric("RunsRetried", MetricUnit.Count, 1)
        if handled.outcome in ("duplicate", "stale"):
            metrics.add_metric(f"Firings{handled.outcome.capitalize()}", MetricUnit.Count, 1)
        if handled.lateness_ms is not None:
            metrics.add_metric("StartLateness", MetricUnit.Milliseconds, handled.lateness_ms)
    return {"batchItemFailures": [{"itemIdentifier": f} for f in failures]}
