"""The composition root: builds the services from the environment the template gives a function.

`GNOMON_STORE=memory` selects the in-memory stores (unit tests); anything else uses DynamoDB
(moto locally). Built once per process (a Lambda container reuses it across invocations).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

from gnomon.domain import netpolicy
from gnomon.ports import CatalogStore, Clock, RequestLog, ScheduleStore
from gnomon.services.catalog import Calendars, Definitions
from gnomon.services.pagetoken import PageTokens
from gnomon.services.schedules import Schedules


@dataclass
class Services:
    clock: Clock
    catalog: CatalogStore
    schedule_store: ScheduleStore
    requests: RequestLog
    tokens: PageTokens
    definitions: Definitions
    calendars: Calendars
    schedules: Schedules


def build(
    *,
    clock: Clock,
    catalog: CatalogStore,
    schedule_store: ScheduleStore,
    requests: RequestLog,
    token_key: bytes,
) -> Services:
    """Wire the use cases over the given adapters."""
    tokens = PageTokens(token_key)
    definitions = Definitions(catalog, schedule_store, clock, tokens)
    calendars = Calendars(catalog, clock, tokens)
    schedules = Schedules(schedule_store, definitions, calendars, clock, tokens)
    return Services(clock, catalog, schedule_store, requests, tokens, definitions, calendars, schedules)


@functools.cache
def services() -> Services:
    """The process-wide services, from the environment."""
    from gnomon.adapters.clock import SystemClock

    configure_network_policy()
    if os.environ.get("GNOMON_STORE") == "memory":
        from gnomon.adapters.memory import MemoryCatalogStore, MemoryRequestLog, MemoryScheduleStore

        return build(
            clock=SystemClock(),
            catalog=MemoryCatalogStore(),
            schedule_store=MemoryScheduleStore(),
            requests=MemoryRequestLog(),
            token_key=_token_key(),
        )
    from gnomon.adapters.dynamo import DynamoCatalogStore, DynamoRequestLog, DynamoScheduleStore

    return build(
        clock=SystemClock(),
        catalog=DynamoCatalogStore(),
        schedule_store=DynamoScheduleStore(),
        requests=DynamoRequestLog(),
        token_key=_token_key(),
    )


def configure_network_policy() -> None:
    """Set the target network policy from the environment (before any request is validated)."""
    netpolicy.configure(_allowed_networks())


def _allowed_networks() -> list[str]:
    raw = ",".join(os.environ.get(v, "") for v in ("GNOMON_ALLOW_TARGETS", "GNOMON_ALLOWED_TARGET_NETWORKS"))
    return [c for c in raw.split(",") if c.strip()]


def _token_key() -> bytes:
    if secret := os.environ.get("GNOMON_PAGE_TOKEN_SECRET"):
        return hashlib.sha256(secret.encode()).digest()
    if arn := os.environ.get("GNOMON_PAGE_TOKEN_SECRET_ARN"):
        from gnomon.adapters.secrets import secret_string

        return hashlib.sha256(secret_string(arn).encode()).digest()
    raise RuntimeError("set GNOMON_PAGE_TOKEN_SECRET or GNOMON_PAGE_TOKEN_SECRET_ARN")
