"""API Gateway HTTP API (payload v2) → the management API."""

from gnomon.api.app import lambda_handler

__all__ = ["lambda_handler"]
