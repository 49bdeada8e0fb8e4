"""Security-test fixtures: the real API handler over in-memory stores, as chosen callers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.unit.apiclient import ApiClient

HOOK = {"type": "http", "url": "https://example.com/hook"}
Caller = Callable[..., ApiClient]


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from gnomon import wiring
    from gnomon.api import access
    from gnomon.api.app import lambda_handler

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    access.configure(None)
    yield lambda_handler
    access.configure(None)
    wiring.services.cache_clear()


@pytest.fixture
def admin(handler: Any) -> ApiClient:
    """The unrestricted IAM caller the dev bridge builds."""
    return ApiClient(handler)


def _as_jwt(handler: Any, claims: dict[str, Any]) -> Any:
    def call(event: dict[str, Any], context: Any) -> Any:
        event = copy.deepcopy(event)
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
        return handler(event, context)

    return call


def _as_iam(handler: Any, arn: str) -> Any:
    def call(event: dict[str, Any], context: Any) -> Any:
        event = copy.deepcopy(event)
        event["requestContext"]["authorizer"]["iam"]["userArn"] = arn
        return handler(event, context)

    return call


@pytest.fixture
def jwt_caller(handler: Any) -> Caller:
    """`jwt_caller(sub="alice", groups="[team-a]")`: a client whose requests carry those claims."""

    def make(**claims: Any) -> ApiClient:
        return ApiClient(_as_jwt(handler, {k.replace("_", ":"): v for k, v in claims.items()}))

    return make


@pytest.fixture
def iam_caller(handler: Any) -> Callable[[str], ApiClient]:
    return lambda arn: ApiClient(_as_iam(handler, arn))
