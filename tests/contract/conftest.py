"""Fixtures of the contract suite: every store fixture runs once per backend.

`memory` is the in-process fake; `dynamo` is the pynamodb adapter on moto's in-process DynamoDB,
with the tables `template.yaml` declares, built by the one loader the dev stack uses
(`gnomon.local.template.create_resources`), and moto's request handling serialised
(`gnomon.local.motolock`) so the concurrency tests test the adapters, not moto.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from gnomon.adapters.dynamo import DynamoCatalogStore, DynamoRequestLog, DynamoRunStore, DynamoScheduleStore
from gnomon.adapters.memory import MemoryCatalogStore, MemoryRequestLog, MemoryRunStore, MemoryScheduleStore
from gnomon.local.motolock import serialised_moto_dynamodb
from gnomon.local.template import create_resources, load_template
from gnomon.ports import CatalogStore, RequestLog, RunStore, ScheduleStore

BACKENDS = ["memory", "dynamo"]

PREFIX = "gnomon-test-"

# The stores' table variables and the template's logical ids they name.
TABLE_ENV = {
    "GNOMON_CATALOG_TABLE": "CatalogTable",
    "GNOMON_SCHEDULES_TABLE": "SchedulesTable",
    "GNOMON_REQUESTS_TABLE": "RequestsTable",
    "GNOMON_RUNS_TABLE": "RunsTable",
    "GNOMON_EVENTS_TABLE": "EventsTable",
}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """`template.yaml`, parsed once per test process."""
    return load_template()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, template: dict[str, Any]) -> Iterator[None]:
    """moto's DynamoDB with the template's resources created and the table names in the
    environment."""
    for var in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_REGION",
        "GNOMON_DUE_SHARDS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with serialised_moto_dynamodb(), mock_aws():
        res = create_resources(template, endpoint_url=None, prefix=PREFIX)
        for var, logical_id in TABLE_ENV.items():
            monkeypatch.setenv(var, res.tables[logical_id])
        yield


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "dynamo":
        request.getfixturevalue("aws")
    return str(request.param)


@pytest.fixture
def catalog(backend: str) -> CatalogStore:
    return MemoryCatalogStore() if backend == "memory" else DynamoCatalogStore()


@pytest.fixture
def schedules(backend: str) -> ScheduleStore:
    return MemoryScheduleStore() if backend == "memory" else DynamoScheduleStore()


@pytest.fixture
def requests_log(backend: str) -> RequestLog:
    return MemoryRequestLog() if backend == "memory" else DynamoRequestLog()


@pytest.fixture
def runs_table(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The runs table (moto), named in `GNOMON_RUNS_TABLE`: `<prefix><LogicalId>`, as the
    loader names tables."""
    return os.environ["GNOMON_RUNS_TABLE"]


@pytest.fixture
def runs(backend: str, request: pytest.FixtureRequest) -> RunStore:
    if backend == "memory":
        return MemoryRunStore()
    request.getfixturevalue("runs_table")
    return DynamoRunStore()
