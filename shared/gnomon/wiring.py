"""The composition root: builds the services from the environment the template gives a function.

`GNOMON_STORE=memory` selects the in-memory stores (unit tests); anything else uses DynamoDB
(moto locally). Built once per process (a Lambda container reuses it across invocations).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gnomon.domain import netpolicy
from gnomon.domain.spec import Calendar, CompiledSpec, Spec, compile_spec
from gnomon.ports import (
    JSON,
    CatalogStore,
    Clock,
    DeadLetterQueue,
    FiringQueue,
    PlanLog,
    RequestLog,
    RunStore,
    ScheduleStore,
    TargetInvoker,
)
from gnomon.ports_events import EventStore, LifecycleBus, NotificationSender
from gnomon.services.admin import check_group_quota, group_quota
from gnomon.services.catalog import Calendars, Definitions
from gnomon.services.events import Events
from gnomon.services.execute import BatchHold, Executor
from gnomon.services.notify import Notifier, PublishingScheduleStore, RunPublisher
from gnomon.services.ops import Ops
from gnomon.services.pagetoken import PageTokens
from gnomon.services.runs import RecordingRunStore, Runs
from gnomon.services.schedules import Schedules
from gnomon.services.stats import CountingRunStore, Stats, StatsStore
from gnomon.services.tick import TICK_SECONDS, Ticker


@dataclass
class Services:
    clock: Clock
    catalog: CatalogStore
    schedule_store: ScheduleStore
    run_store: RunStore
    requests: RequestLog
    queue: FiringQueue
    tokens: PageTokens
    definitions: Definitions
    calendars: Calendars
    schedules: Schedules
    ticker: Ticker
    executor: Executor
    runs: Runs
    ops: Ops
    stats_store: StatsStore
    stats: Stats
    events: Events
    notifier: Notifier
    plan_log: PlanLog

    @contextlib.contextmanager
    def per_batch(self, bodies: Sequence[JSON] = ()) -> Iterator[BatchHold]:
        """A worker batch (`bodies`: its messages): its run counters summed and written once at
        its end, each definition read once, its runs held by one item (`Executor.per_batch`)."""
        store = self.run_store
        if isinstance(store, RecordingRunStore):
            store = store.wrapped
        counting = store.deferred() if isinstance(store, CountingRunStore) else contextlib.nullcontext()
        with counting, self.executor.per_batch(bodies) as hold:
            yield hold


def build(
    *,
    clock: Clock,
    catalog: CatalogStore,
    schedule_store: ScheduleStore,
    run_store: RunStore,
    requests: RequestLog,
    queue: FiringQueue,
    invoker: TargetInvoker | None,
    token_key: bytes,
    horizon_seconds: float = 60.0,
    tick_seconds: float = TICK_SECONDS,
    worker_id: str = "worker",
    dlq: DeadLetterQueue | None = None,
    stats_store: StatsStore | None = None,
    event_store: EventStore | None = None,
    notification_sender: NotificationSender | None = None,
    lifecycle_bus: LifecycleBus | None = None,
    plan_log: PlanLog | None = None,
    pack_firings: bool = False,
) -> Services:
    """Wire the use cases over the given adapters. With a `lifecycle_bus`, every run status
    change and schedule create/delete/pause/unpause is put on it. Without a `plan_log`, the
    ticker records what it enqueues in memory (`/v1/upcoming` of this process reads it). With
    `pack_firings`, the ticker sends the firings of one second several a message (the worker
    Lambda's handler unpacks them; a test driving `Executor.handle` leaves it off)."""
    if plan_log is None:
        from gnomon.adapters.planlog import MemoryPlanLog

        plan_log = MemoryPlanLog()
    if stats_store is None:
        from gnomon.adapters.stats_memory import MemoryStatsStore

        stats_store = MemoryStatsStore()
    if event_store is None:
        from gnomon.adapters.events_memory import MemoryEventStore

        event_store = MemoryEventStore()
    run_listeners: list[RunPublisher] = []
    if lifecycle_bus is not None:
        run_listeners.append(RunPublisher(lifecycle_bus, clock))
        schedule_store = PublishingScheduleStore(schedule_store, lifecycle_bus, clock)
    # every status change is counted (and put on the lifecycle bus when there is one)
    run_store = CountingRunStore(run_store, stats_store, clock, listeners=run_listeners)
    tokens = PageTokens(token_key)
    definitions = Definitions(catalog, schedule_store, clock, tokens)
    calendars = Calendars(catalog, clock, tokens)

    def compile_doc(spec: JSON) -> CompiledSpec:
        model = Spec.model_validate(spec)
        named = calendars.resolve(model.exclude_calendar_refs, "spec.exclude_calendar_refs")
        return compile_spec(model, named_exclusions=[Calendar.model_validate(c) for c in named])

    ticker = Ticker(
        schedule_store,
        run_store,
        queue,
        clock,
        compile_doc,
        horizon_seconds=horizon_seconds,
        tick_seconds=tick_seconds,
        firing_quota=lambda group: group_quota(catalog, group).max_firings_per_second,
        plan_log=plan_log,
        pack_firings=pack_firings,
    )
    schedules = Schedules(
        schedule_store,
        definitions,
        calendars,
        clock,
        tokens,
        runs=run_store,
        planner=ticker.plan,
        quota_check=lambda group: check_group_quota(catalog, schedule_store, group),
    )
    retention_days = int(os.environ.get("GNOMON_RUN_RETENTION_DAYS", "30"))
    executor = Executor(
        schedule_store,
        run_store,
        catalog,
        queue,
        clock,
        invoker or _NoInvoker(),
        worker_id=worker_id,
        retention_days=retention_days,
    )
    # The API's runs: a firing claimed by its ledger write alone is recorded when asked for.
    run_store = RecordingRunStore(run_store, executor.materialize)
    runs = Runs(
        run_store, catalog, queue, clock, tokens, executor, schedule_store, retention_days=retention_days
    )
    ops = Ops(run_store, dlq, clock)
    notifier = Notifier(catalog, notification_sender, clock)
    events = Events(event_store, catalog, run_store, queue, clock, tokens, notify=notifier.notify)
    executor.add_close_listener(events.run_closed)  # an event run's end moves its stream
    executor.attach_notifier(notifier.notify)
    ticker.attach_notifier(notifier.notify)
    return Services(
        clock,
        catalog,
        schedule_store,
        run_store,
        requests,
        queue,
        tokens,
        definitions,
        calendars,
        schedules,
        ticker,
        executor,
        runs,
        ops,
        stats_store,
        Stats(stats_store, clock, definitions=lambda: _definition_names(catalog)),
        events,
        notifier,
        plan_log,
    )


def _definition_names(catalog: CatalogStore) -> list[str]:
    """Every definition's name (the scopes `GET /v1/stats` sums for every run)."""
    names: list[str] = []
    after: str | None = None
    while True:
        page = catalog.list("definition", after=after, limit=100)
        names += [r.name for r in page.items]
        if page.last_key is None:
            return names
        after = page.last_key


class _NoInvoker:
    """The API never invokes targets; a misuse fails loudly."""

    def invoke(self, inv: Any) -> Any:
        raise RuntimeError("this process does not invoke targets")


@functools.cache
def services() -> Services:
    """The process-wide services, from the environment."""
    from gnomon.adapters.clock import SystemClock

    configure_network_policy()
    horizon = float(os.environ.get("GNOMON_HORIZON_SECONDS", "60"))
    # The ticker's period: EventBridge's rate(1 minute) in AWS, --tick-seconds in `gnomon dev`.
    tick = float(os.environ.get("GNOMON_TICK_SECONDS", TICK_SECONDS))
    if os.environ.get("GNOMON_STORE") == "memory":
        from gnomon.adapters.memory import (
            MemoryCatalogStore,
            MemoryRequestLog,
            MemoryRunStore,
            MemoryScheduleStore,
        )
        from gnomon.adapters.memory_queue import MemoryFiringQueue

        return build(
            clock=SystemClock(),
            catalog=MemoryCatalogStore(),
            schedule_store=MemoryScheduleStore(),
            run_store=MemoryRunStore(),
            requests=MemoryRequestLog(),
            queue=MemoryFiringQueue(),
            invoker=None,
            token_key=_token_key(),
            horizon_seconds=horizon,
            tick_seconds=tick,
        )
    from gnomon.adapters.dynamo import (
        DynamoCatalogStore,
        DynamoRequestLog,
        DynamoRunStore,
        DynamoScheduleStore,
    )
    from gnomon.adapters.notify import AwsNotificationSender, bus_from_env
    from gnomon.adapters.planlog_dynamo import DynamoPlanLog
    from gnomon.adapters.sqs import SqsDeadLetterQueue, SqsFiringQueue
    from gnomon.adapters.stats_dynamo import DynamoStatsStore

    return build(
        clock=SystemClock(),
        catalog=DynamoCatalogStore(),
        schedule_store=DynamoScheduleStore(),
        run_store=DynamoRunStore(),
        requests=DynamoRequestLog(),
        queue=SqsFiringQueue(),
        invoker=_LazyInvoker(),
        token_key=_token_key(),
        horizon_seconds=horizon,
        tick_seconds=tick,
        worker_id=f"worker-{uuid.uuid4().hex[:12]}",
        dlq=SqsDeadLetterQueue() if os.environ.get("GNOMON_DLQ_URL") else None,
        stats_store=DynamoStatsStore(),
        event_store=_event_store(),
        notification_sender=AwsNotificationSender(),
        lifecycle_bus=bus_from_env(),
        plan_log=DynamoPlanLog(),
        pack_firings=True,
    )


def _event_store() -> EventStore:
    """DynamoDB (`GNOMON_EVENTS_TABLE`, which the template always sets); in memory for
    environments that name no events table (older test set-ups)."""
    if os.environ.get("GNOMON_EVENTS_TABLE"):
        from gnomon.adapters.events_dynamo import DynamoEventStore

        return DynamoEventStore()
    from gnomon.adapters.events_memory import MemoryEventStore

    return MemoryEventStore()


class _LazyInvoker:
    """Builds the target invokers on first use, so the API and ticker never import them."""

    @functools.cached_property
    def _real(self) -> TargetInvoker:
        from gnomon.adapters.targets import build_invoker

        return build_invoker(allow_python_modules=None)

    def invoke(self, inv: Any) -> Any:
        return self._real.invoke(inv)


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
