"""SQS event source (ReportBatchItemFailures) → run the firings of a batch, concurrently.

Powertools' BatchProcessor handles records one after another; a batch of ten slow targets would
then take ten timeouts. Records are independent (each run is claimed by a conditional write), so
they run in a thread pool and the failures are reported in the same `batchItemFailures` shape.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger

from gnomon.wiring import services

logger = Logger(service="gnomon")
_pool = ThreadPoolExecutor(max_workers=10)


def _process(record: dict[str, Any]) -> str | None:
    """None when handled; the message id when the message must come back (or go to the DLQ)."""
    try:
        body = json.loads(record["body"])
        if not isinstance(body, dict):
            raise ValueError("message body is not a JSON object")
        handled = services().executor.handle(body)
        logger.info(
            "handled", extra={"run_id": handled.run_id, "outcome": handled.outcome, "status": handled.status}
        )
        return None
    except Exception:
        logger.exception("message failed", extra={"message_id": record.get("messageId")})
        return str(record["messageId"])


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = [f for f in _pool.map(_process, event.get("Records", [])) if f is not None]
    return {"batchItemFailures": [{"itemIdentifier": f} for f in failures]}
