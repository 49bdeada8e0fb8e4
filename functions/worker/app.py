"""SQS event source (ReportBatchItemFailures) → run the firings of a batch."""

from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The firing pipeline (issue: ticker → SQS → worker) fills this in.
    return {"batchItemFailures": []}
