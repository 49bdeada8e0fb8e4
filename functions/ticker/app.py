"""EventBridge rate(1 minute) → one tick of the scheduler."""

from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The firing pipeline (issue: ticker → SQS → worker) fills this in.
    return {"enqueued": 0}
