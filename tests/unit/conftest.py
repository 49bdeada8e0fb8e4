"""Unit-test fixtures: the real API handler over in-memory stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.apiclient import ApiClient


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiClient]:
    from gnomon import wiring
    from gnomon.api.app import lambda_handler

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    yield ApiClient(lambda_handler)
    wiring.services.cache_clear()
