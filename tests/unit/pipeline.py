"""A simulated firing pipeline for unit tests: in-memory stores, a fake clock, a queue that
delivers by visibility time, and a scripted target."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gnomon.adapters.memory import MemoryCatalogStore, MemoryRequestLog, MemoryRunStore, MemoryScheduleStore
from gnomon.adapters.memory_queue import MemoryFiringQueue
from gnomon.domain.model import DefinitionBody, ScheduleCreate
from gnomon.ports import Invocation, Outcome, PlanLog, RunRecord, RunStore, ScheduleStore
from gnomon.ports_events import EventStore
from gnomon.services.common import Caller
from gnomon.wiring import Services, build

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
CALLER = Caller("arn:aws:iam::000000000000:user/test")


@dataclass
class FakeClock:
    t: datetime = T0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        with self.lock:
            return self.t

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.t += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


@dataclass
class ScriptedTarget:
    """Answers each invocation with `script(inv)` (default: completed) and records them."""

    script: Callable[[Invocation], Outcome] = lambda inv: Outcome(status="completed", result={"ok": True})
    calls: list[Invocation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke(self, inv: Invocation) -> Outcome:
        with self.lock:
            self.calls.append(inv)
        return self.script(inv)


class _Held(dict[str, Any]):
    """Held attempts by run id: their run records as the worker left them when the attempt
    answered (`snapshot`, after each delivery) — a scheduled firing claimed by its ledger write
    alone is written only then —, else as read when taken."""

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self._store = store

    def snapshot(self) -> None:
        for run_id, rec in list(super().items()):
            if rec is None:
                super().__setitem__(run_id, self._store.get(run_id))

    def _record(self, run_id: str, rec: Any) -> RunRecord:
        return rec if rec is not None else self._store.get(run_id)

    def __getitem__(self, run_id: str) -> RunRecord:
        return self._record(run_id, super().__getitem__(run_id))

    def pop(self, run_id: str, *default: Any) -> RunRecord:  # type: ignore[override]
        if run_id not in self and default:
            return default[0]  # type: ignore[no-any-return]
        return self._record(run_id, super().pop(run_id))

    def values(self) -> Any:  # type: ignore[override]
        return [self._record(r, v) for r, v in super().items()]

    def items(self) -> Any:  # type: ignore[override]
        return [(r, self._record(r, v)) for r, v in super().items()]


class Pipeline:
    def __init__(self, *, horizon: float = 60.0, backend: str = "memory") -> None:
        self.clock = FakeClock()
        self.queue = MemoryFiringQueue()
        self.target = ScriptedTarget()
        self.schedule_store: ScheduleStore
        self.run_store: RunStore
        events: EventStore | None = None
        plan_log: PlanLog | None = None  # build()'s in-memory one
        if backend == "dynamo":  # the caller has moto running with the tables in the environment
            from gnomon.adapters.dynamo import (
                DynamoCatalogStore,
                DynamoRequestLog,
                DynamoRunStore,
                DynamoScheduleStore,
            )
            from gnomon.adapters.planlog_dynamo import DynamoPlanLog

            catalog, requests = DynamoCatalogStore(), DynamoRequestLog()
            self.schedule_store, self.run_store = DynamoScheduleStore(), DynamoRunStore()
            plan_log = DynamoPlanLog()
            if os.environ.get("GNOMON_EVENTS_TABLE"):
                from gnomon.adapters.events_dynamo import DynamoEventStore

                events = DynamoEventStore()
        else:
            catalog, requests = MemoryCatalogStore(), MemoryRequestLog()
            self.schedule_store, self.run_store = MemoryScheduleStore(), MemoryRunStore()
        self.s: Services = build(
            clock=self.clock,
            catalog=catalog,
            schedule_store=self.schedule_store,
            run_store=self.run_store,
            requests=requests,
            queue=self.queue,
            invoker=self.target,
            token_key=b"k",
            horizon_seconds=horizon,
            event_store=events,
            plan_log=plan_log,
        )
        self.s.executor._sleep = self.clock.sleep  # type: ignore[attr-defined]
        self.pending: list[tuple[datetime, dict[str, Any]]] = []
        self.held: dict[str, Any] = {}

    def definition(self, name: str = "job", **extra: Any) -> None:
        body = DefinitionBody.model_validate(
            {"name": name, "target": {"type": "http", "url": "https://example.com/h"}, **extra}
        )
        self.s.definitions.create(body, CALLER)

    def schedule(self, sid: str = "s", **extra: Any) -> dict[str, Any]:
        body = ScheduleCreate.model_validate({"schedule_id": sid, "definition": "job", **extra})
        return self.s.schedules.create(body, CALLER)

    def collect(self) -> None:
        """Move sent messages into the simulated queue with their visibility times."""
        now = self.clock.now()
        for body, delay in self.queue.drain():
            self.pending.append((now + timedelta(seconds=delay), body))
        self.pending.sort(key=lambda p: p[0])

    def deliver_due(self, copies: int = 1) -> list[Any]:
        """Hand every visible message to the worker, oldest first (each `copies` times, as an
        at-least-once queue may); answers what happened."""
        self.collect()
        handled = []
        while self.pending and self.pending[0][0] <= self.clock.now():
            _, body = self.pending.pop(0)
            handled += [self.s.executor.handle(body) for _ in range(copies)]
            if isinstance(self.held, _Held):
                self.held.snapshot()
            self.collect()
        return handled

    def hold(self) -> dict[str, Any]:
        """Make the target slow: each attempt stays open (running) until `finish` ends it, as a
        worker still inside a long call would. Answers the held attempts by run id."""
        held = _Held(self.run_store)

        def script(inv: Invocation) -> Outcome:
            # A scheduled firing claimed by its ledger write alone is written when the attempt
            # answers (accepted: running): the held record is read when a test takes it.
            held[inv.run_id] = None
            return Outcome(status="accepted")

        self.target.script = script
        self.held = held
        return held

    def finish(self, run_id: str, outcome: Outcome | None = None) -> Any:
        """The held attempt of `run_id` returns now (with `outcome`, default completed), then
        the messages that follows are delivered."""
        handled = self.s.executor.finish(self.held.pop(run_id), outcome or Outcome(status="completed"))
        self.deliver_due()
        return handled

    def statuses(self, sid: str = "s") -> list[tuple[str, str | None]]:
        """(status, reason) of each run of `sid`, by nominal time."""
        return [(r.status, r.doc.get("reason")) for r in self.runs(sid)]

    def run_for(self, seconds: float, step: float = 1.0) -> None:
        """Tick and deliver every `step` seconds."""
        elapsed = 0.0
        while elapsed < seconds:
            self.s.ticker.tick()
            self.deliver_due()
            self.clock.advance(step)
            elapsed += step

    def runs(self, sid: str = "s") -> list[Any]:
        return sorted(self.run_store.recent(sid, limit=10_000), key=lambda r: r.nominal_time)
