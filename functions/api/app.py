"""API Gateway HTTP API (payload v2) → the management API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths

from gnomon import tracing
from gnomon.api.app import lambda_handler as handle

logger = Logger(service="gnomon")


@tracing.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context)
