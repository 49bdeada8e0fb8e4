"""Notifications and lifecycle events.

A definition's `notifications` (`[{"on": [...], "sns_topic_arn" | "webhook_url"}]`) fire on
`failed` (a run failed or timed out after its last attempt), `missed` (firings fell outside the
catch-up window), `paused_on_failure` (a schedule paused itself after a failure) and `halted` (an
event key halted). A webhook gets a JSON POST signed exactly like a target request
(`Gnomon-Signature: t=<unix>,v1=<HMAC-SHA256 of "<t>." + body, keyed with the definition's
signing_secret>`), through the same address policy. A notification that cannot be delivered
never fails what caused it: it is logged and counted (`Notifier.failed`).

Lifecycle events (Kubernetes-events style): with an EventBridge bus configured
(`GNOMON_EVENT_BUS_NAME`, the template's `EventBusName`), every run status change and every
schedule create, delete, pause and unpause is put on it (source `gnomon`, detail-type
`gnomon.run` / `gnomon.schedule`): run changes as `CountingRunStore` tells them (the status at
the version each write replaced — the same changes the stats count), schedule changes by wrapping
the schedule store. Off when the bus name is empty.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gnomon.domain.errors import NotFound
from gnomon.domain.timefmt import fmt
from gnomon.ports import JSON, CatalogStore, Clock, Page, RunRecord, ScheduleRecord, ScheduleStore
from gnomon.ports_events import LifecycleBus, NotificationSender

log = logging.getLogger("gnomon.notify")

EVENTS = ("failed", "missed", "paused_on_failure", "halted")


class Notifier:
    """Sends a definition's notifications; counts what was sent and what failed."""

    def __init__(self, catalog: CatalogStore, sender: NotificationSender | None, clock: Clock) -> None:
        self._catalog = catalog
        self._sender = sender
        self._clock = clock
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def notify(self, definition: str, event: str, details: JSON) -> int:
        """Fire `definition`'s notifications that listen to `event`; answers how many were
        delivered. Never raises."""
        try:
            doc = self._catalog.get("definition", definition).doc
        except NotFound:
            return 0
        except Exception:
            log.exception("notification %s of %s: cannot read the definition", event, definition)
            self._count(failed=1)
            return 0
        wanted = [n for n in doc.get("notifications") or [] if event in (n.get("on") or [])]
        if not wanted:
            return 0
        message: JSON = {
            "notification": event,
            "definition": definition,
            "time": fmt(self._clock.now()),
            **details,
        }
        delivered = 0
        for n in wanted:
            try:
                if self._sender is None:
                    raise RuntimeError("no notification sender is configured in this process")
                if n.get("sns_topic_arn"):
                    self._sender.publish_sns(
                        str(n["sns_topic_arn"]), f"gnomon {event}: {definition}"[:100], message
                    )
                else:
                    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
                    self._sender.post_webhook(str(n["webhook_url"]), body, str(doc.get("signing_secret", "")))
                delivered += 1
            except Exception as exc:  # a notification never fails what caused it
                log.warning("notification %s of %s could not be delivered: %r", event, definition, exc)
                self._count(failed=1)
        self._count(sent=delivered)
        return delivered

    def _count(self, *, sent: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.failed += failed


class _Statuses:
    """The last status seen per id (bounded), to tell a change from a rewrite."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, Any] = OrderedDict()
        self._limit = limit

    def swap(self, key: str, value: Any) -> tuple[bool, Any]:
        """Remember `value`; answers (known before, the value before)."""
        with self._lock:
            known = key in self._seen
            old = self._seen.pop(key, None)
            self._seen[key] = value
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)
        return known, old

    def forget(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)


def _put(bus: LifecycleBus, detail_type: str, detail: JSON) -> None:
    try:
        bus.put([(detail_type, detail)])
    except Exception as exc:  # never fails the write it reports
        log.warning("lifecycle event %s could not be put on the bus: %r", detail_type, exc)


class RunPublisher:
    """Puts every run status change on the lifecycle bus (`gnomon.run`). A listener of
    `CountingRunStore`, which already tells each change exactly (the status stored at the
    version a write replaced), so the bus and the counters see the same changes."""

    def __init__(self, bus: LifecycleBus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock

    def __call__(self, previous: str | None, rec: RunRecord) -> None:
        detail: JSON = {
            "run_id": rec.run_id,
            "definition": rec.definition,
            "schedule_id": rec.schedule_id,
            "status": rec.status,
            "previous_status": previous,
            "trigger": rec.doc.get("trigger"),
            "attempt": rec.doc.get("attempt"),
            "nominal_time": rec.doc.get("nominal_time"),
            "error": rec.doc.get("error"),
            "time": fmt(self._clock.now()),
        }
        _put(self._bus, "gnomon.run", detail)


class PublishingScheduleStore:
    """A `ScheduleStore` that puts schedule creates, deletes, pauses and unpauses on the
    lifecycle bus (`gnomon.schedule`)."""

    def __init__(self, inner: ScheduleStore, bus: LifecycleBus, clock: Clock) -> None:
        self._inner = inner
        self._bus = bus
        self._clock = clock
        self._seen = _Statuses()

    @property
    def shards(self) -> int:
        return self._inner.shards

    def create(self, rec: ScheduleRecord) -> ScheduleRecord:
        saved = self._inner.create(rec)
        self._seen.swap(saved.schedule_id, _paused(saved))
        self._publish(saved.schedule_id, "created", saved.doc)
        return saved

    def get(self, schedule_id: str, *, consistent: bool = True) -> ScheduleRecord:
        rec = self._inner.get(schedule_id, consistent=consistent)
        if consistent:  # an older version's pause state would make the next update look like a change
            self._seen.swap(schedule_id, _paused(rec))
        return rec

    def get_many(self, schedule_ids: Any, *, consistent: bool = True) -> dict[str, ScheduleRecord]:
        return self._inner.get_many(schedule_ids, consistent=consistent)  # the ticker's: no lifecycle

    def update(self, rec: ScheduleRecord, *, expected_version: int | None) -> ScheduleRecord:
        saved = self._inner.update(rec, expected_version=expected_version)
        known, old = self._seen.swap(saved.schedule_id, _paused(saved))
        if known and old != _paused(saved):
            self._publish(saved.schedule_id, "paused" if _paused(saved) else "unpaused", saved.doc)
        return saved

    def delete(self, schedule_id: str, *, expected_version: int | None = None) -> None:
        self._inner.delete(schedule_id, expected_version=expected_version)
        self._seen.forget(schedule_id)
        self._publish(schedule_id, "deleted", None)

    def list(
        self, *, after: str | None, limit: int, group: str | None = None, definition: str | None = None
    ) -> Page[ScheduleRecord]:
        return self._inner.list(after=after, limit=limit, group=group, definition=definition)

    def ids_using_definition(self, definition: str, *, limit: int) -> builtins.list[str]:
        return self._inner.ids_using_definition(definition, limit=limit)

    def due(self, shard: int, until: datetime, *, limit: int, after: Any = None) -> builtins.list[Any]:
        return self._inner.due(shard, until, limit=limit, after=after)

    def add_counters(self, schedule_id: str, deltas: Mapping[str, int]) -> None:
        self._inner.add_counters(schedule_id, deltas)

    def phased(
        self, period: int, shard: int, low: int, high: int, *, limit: int, after: Any = None
    ) -> builtins.list[Any]:
        return self._inner.phased(period, shard, low, high, limit=limit, after=after)

    def phase_periods(self) -> builtins.set[int]:
        return self._inner.phase_periods()

    def add_phase_period(self, period: int) -> None:
        self._inner.add_phase_period(period)

    def phase_marks(self, periods: Any) -> dict[tuple[int, int], datetime]:
        return self._inner.phase_marks(periods)

    def advance_phase_marks(self, period: int, moves: Any) -> bool:
        return self._inner.advance_phase_marks(period, moves)

    def _publish(self, schedule_id: str, change: str, doc: JSON | None) -> None:
        state = (doc or {}).get("state") or {}
        detail: JSON = {
            "schedule_id": schedule_id,
            "change": change,
            "definition": (doc or {}).get("definition"),
            "group": (doc or {}).get("group"),
            "note": state.get("note"),
            "time": fmt(self._clock.now()),
        }
        _put(self._bus, "gnomon.schedule", detail)


def _paused(rec: ScheduleRecord) -> bool:
    return bool(rec.doc.get("state", {}).get("paused"))
