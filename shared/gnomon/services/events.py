"""Use cases of event-triggered definitions (CONTRACT.md §7): publish and ingest events, move
each (definition, key) stream forward, the operators' views and restart.

An event is appended to the stream of every definition whose `triggers` name its type (one
conditional transaction per definition, so a repeated `event_id` is appended once, and a retried
publish that failed half-way completes the rest). Then the stream is *pumped*: when nothing is in
flight, the head is moved to name the run of its next event (a write conditioned on the head's
version: two pumps never start two runs), and that run is recorded (`trigger: "event"`) and
started through the firing queue like an executed run, with the definition's target, retry
policy and timeout. When the run's last attempt closes, the worker calls `run_closed`, which
pumps again: the head takes note of the outcome (`gnomon.domain.events.settle`) and the next
event starts — or, after `max_consecutive_failures` failed runs in a row, the key halts and the
definition's `halted` notifications fire. Every step re-reads the head and is idempotent, so
any pump repairs what a crashed one left (a head naming a run that was never recorded).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, ValidationError

from gnomon.domain.errors import AlreadyExists, Conflict, NotFound
from gnomon.domain.events import (
    KEY_MAX,
    TERMINAL,
    TYPE_MAX,
    Step,
    head_view,
    next_step,
    operator_status,
    restarted,
    run_id_for,
    run_input,
    settle,
    started,
)
from gnomon.domain.model import Doc64, Id, Mutation
from gnomon.domain.runs import RunStatus, retry_delay
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import JSON, CatalogStore, Clock, FiringQueue, RunRecord, RunStore
from gnomon.ports_events import EventStore, StoredEvent, StreamHead
from gnomon.services.execute import counts_as_running
from gnomon.services.pagetoken import PageTokens
from gnomon.services.tick import MAX_DELAY, RETRY_GRACE, new_run_doc, run_message

log = logging.getLogger("gnomon.events")

MAX_STEPS = 50
BUSY_LIMIT = 1000
"""Keys with work or halted that an operator view lists, at most."""
DEFAULT_MAX_FAILURES = 5
DEFAULT_RETENTION_DAYS = 30
Notify = Callable[[str, str, JSON], Any]


class EventIn(Mutation):
    """An event: `POST /v1/events`, or a message of the ingestion queue."""

    type: str = Field(min_length=1, max_length=TYPE_MAX, description="matched against definitions' triggers")
    key: str = Field(min_length=1, max_length=KEY_MAX, description="events with one key run in order")
    payload: Doc64 = None
    event_id: Id | None = Field(None, description="a repeated id is not run again; generated when omitted")


class RestartIn(Mutation):
    key: str | None = Field(None, min_length=1, max_length=KEY_MAX, description="default: every halted key")


def is_event_message(body: JSON) -> bool:
    """Whether a queue message is an event to ingest (an EventBridge envelope or a bare event)
    rather than one of the worker's own messages (which carry `kind`)."""
    if "kind" in body:
        return False
    return ("detail-type" in body and "detail" in body) or ("type" in body and "key" in body)


def event_of_message(body: JSON) -> EventIn:
    """The event a queue message carries. An EventBridge envelope's `detail` is the event; its
    `type` defaults to the envelope's `detail-type` and its `event_id` to the envelope's `id`
    (EventBridge's own retries then do not run it twice). ValueError when it is not one."""
    raw: Any = body
    if "detail-type" in body and "detail" in body:
        detail = body.get("detail")
        if not isinstance(detail, dict):
            raise ValueError("the EventBridge event's detail is not an object")
        raw = {"type": body.get("detail-type"), "event_id": _safe_id(body.get("id")), **detail}
    try:
        return EventIn.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"not an event: {exc}") from None


def _safe_id(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None


class Events:
    """Event streams over an `EventStore`; runs through the run store and the firing queue."""

    def __init__(
        self,
        store: EventStore,
        catalog: CatalogStore,
        runs: RunStore,
        queue: FiringQueue,
        clock: Clock,
        tokens: PageTokens,
        *,
        notify: Notify | None = None,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._runs = runs
        self._queue = queue
        self._clock = clock
        self._tokens = tokens
        self._notify = notify

    @property
    def store(self) -> EventStore:
        return self._store

    # -- events in ---------------------------------------------------------------------------

    def publish(self, event: EventIn) -> JSON:
        """Append the event to the stream of every definition it triggers, then start what may
        start. Answers `{"event_id", "type", "key", "received_at", "definitions": [{"definition",
        "seq", "duplicate"}]}` (202)."""
        now = self._clock.now()
        event_id = event.event_id or uuid.uuid4().hex
        doc: JSON = {
            "event_id": event_id,
            "type": event.type,
            "payload": event.payload,
            "received_at": fmt(now),
        }
        results: list[JSON] = []
        for definition in self._subscribers(event.type):
            seq, duplicate = self._append(definition, event.key, event_id, doc)
            results.append({"definition": definition, "seq": seq, "duplicate": duplicate})
            self.pump(definition, event.key)
        return {
            "event_id": event_id,
            "type": event.type,
            "key": event.key,
            "received_at": fmt(now),
            "definitions": results,
        }

    def ingest(self, body: JSON) -> JSON:
        """An event from the ingestion queue (EventBridge rule or a direct send)."""
        return self.publish(event_of_message(body))

    def _subscribers(self, event_type: str) -> list[str]:
        """Definitions whose triggers name `event_type`, by name."""
        out: list[str] = []
        after: str | None = None
        while True:
            page = self._catalog.list("definition", after=after, limit=1000)
            out += [
                r.name
                for r in page.items
                if any(t.get("event_type") == event_type for t in r.doc.get("triggers") or [])
            ]
            if page.last_key is None:
                return out
            after = page.last_key

    def _append(self, definition: str, key: str, event_id: str, doc: JSON) -> tuple[int | None, bool]:
        for _ in range(MAX_STEPS):
            head = self._store.head(definition, key)
            stored = StoredEvent(definition, key, head.last_seq + 1, event_id, doc)
            try:
                saved = self._store.append(head, stored)
            except AlreadyExists as exc:
                seq = exc.details.get("seq") if isinstance(exc.details, dict) else None
                return (int(seq) if seq else None), True
            except Conflict:
                continue  # another event took that number: take the next
            return saved.last_seq, False
        raise Conflict(f"the stream {definition}/{key} kept changing; try again", current=None)

    # -- moving a stream ------------------------------------------------------------------------

    def run_closed(self, run: RunRecord) -> None:
        """The worker's hook: a run's last attempt closed. An event run's stream moves on.
        Never raises (the run is recorded already; the next pump of its key repairs)."""
        if run.doc.get("trigger") != "event":
            return
        key = (run.doc.get("event") or {}).get("key")
        if not isinstance(key, str):
            return
        try:
            self.pump(run.definition, key)
        except Exception:
            log.exception("the stream %s/%s could not move after run %s", run.definition, key, run.run_id)

    def pump(self, definition: str, key: str) -> StreamHead:
        """Move the stream as far as it can go now: note the end of the run in flight, start the
        next event's run. Answers the head as it was left."""
        for _ in range(MAX_STEPS):
            head = self._store.head(definition, key)
            step = next_step(head)
            if step in (Step.idle, Step.halted):
                return head
            now = self._clock.now()
            if step is Step.settle:
                assert head.inflight is not None
                try:
                    run = self._runs.get(head.inflight)
                except NotFound:
                    self._record_run(head)  # a pump died between the head and the run: repair
                    return head
                if run.status not in TERMINAL or counts_as_running(run, now):
                    # in flight (a canceled run's attempt may still be out): its close pumps again
                    return head
                new = settle(
                    head, run.run_id, run.status, run.doc.get("error"), self._max_failures(definition), now
                )
                if new is None:
                    return head
                try:
                    saved = self._store.update_head(new, expected_version=head.version)
                except Conflict:
                    continue
                if saved.halted:
                    self._halted(saved)
                if saved.done_seq > head.done_seq:  # processed: its event may go after retention
                    self._expire(definition, key, head.done_seq + 1, now)
                continue
            run_id = run_id_for(definition, key, head.done_seq + 1, head.runs + 1)
            try:
                saved = self._store.update_head(started(head, run_id, now), expected_version=head.version)
            except Conflict:
                continue
            self._record_run(saved)
            return saved
        return self._store.head(definition, key)

    def _record_run(self, head: StreamHead) -> None:
        """Record and start the run the head names for event `done_seq + 1` (once: its id is
        deterministic; a second recorder finds it existing and leaves it to the first)."""
        assert head.inflight is not None
        seq = head.done_seq + 1
        event = self._store.event(head.definition, head.key, seq)
        now = self._clock.now()
        version: int | None = None
        delay = 0.0
        try:
            definition = self._catalog.get("definition", head.definition)
            version = definition.version
            if head.failures:  # a failed event runs again after the retry policy's backoff
                delay = min(retry_delay(dict(definition.doc.get("retry") or {}), head.failures), MAX_DELAY)
        except NotFound:
            pass  # the worker closes the run as `definition_missing`
        start = now + timedelta(seconds=delay)
        doc = new_run_doc(
            run_id=head.inflight,
            definition=head.definition,
            definition_version=version,
            schedule_id=None,
            generation=None,
            nominal=parse(event.doc["received_at"]),
            scheduled=start,
            trigger="event",
            input_=run_input(event.doc, head.key, seq),
            memo={},
        )
        doc["event"] = {
            "event_id": event.event_id,
            "type": event.doc.get("type"),
            "key": head.key,
            "seq": seq,
            "run": head.runs,
        }
        doc["next_attempt"] = 1
        doc["events"].append(
            {"time": fmt(now), "type": "event", "details": {"event_id": event.event_id, "seq": seq}}
        )
        rec = RunRecord(
            run_id=head.inflight,
            doc=doc,
            schedule_id=None,
            definition=head.definition,
            nominal_time=parse(event.doc["received_at"]),
            status=RunStatus.pending.value,
            active_at=start + RETRY_GRACE,  # the sweep starts it if its message is lost
        )
        try:
            self._runs.create(rec)
        except AlreadyExists:
            return
        self._queue.send([run_message(rec.run_id, 1, delay)])

    def _expire(self, definition: str, key: str, seq: int, now: datetime) -> None:
        try:
            doc = self._catalog.get("definition", definition).doc
            days = int((doc.get("history") or {}).get("retention_days", DEFAULT_RETENTION_DAYS))
        except NotFound:
            days = DEFAULT_RETENTION_DAYS
        try:
            self._store.expire(definition, key, seq, now + timedelta(days=days))
        except Exception:  # retention is housekeeping: the stream has moved on already
            log.exception("could not set the retention of event %s/%s/%d", definition, key, seq)

    def _halted(self, head: StreamHead) -> None:
        if self._notify is None:
            return
        details = {
            "key": head.key,
            "seq": head.done_seq + 1,
            "failures": head.failures,
            "run_id": head.last_run_id,
            "error": head.error,
            "since": fmt(head.since),
        }
        try:
            self._notify(head.definition, "halted", details)
        except Exception:
            log.exception("halted notification of %s/%s", head.definition, head.key)

    def _max_failures(self, definition: str) -> int:
        try:
            doc = self._catalog.get("definition", definition).doc
        except NotFound:
            return DEFAULT_MAX_FAILURES
        return int(doc.get("max_consecutive_failures") or DEFAULT_MAX_FAILURES)

    def sweep(self, *, limit: int = 1000) -> int:
        """The safety net behind `run_closed`: pump every busy, not halted key of every
        event-triggered definition (at most `limit` keys), so a stream whose run ended while
        its worker died before telling it moves on. Answers the keys looked at."""
        looked = 0
        after: str | None = None
        while looked < limit:
            page = self._catalog.list("definition", after=after, limit=100)
            for rec in page.items:
                if not rec.doc.get("triggers"):
                    continue
                for head in self._store.busy(rec.name, limit=max(1, limit - looked)):
                    if not head.halted:
                        try:
                            self.pump(rec.name, head.key)
                        except Exception:  # one stream must not stop the others
                            log.exception("sweep: the stream %s/%s could not move", rec.name, head.key)
                    looked += 1
                    if looked >= limit:
                        return looked
            if page.last_key is None:
                return looked
            after = page.last_key
        return looked

    # -- operators ------------------------------------------------------------------------------

    def operators(self, page_token: str | None, page_size: int) -> JSON:
        """`GET /v1/operators`: event-triggered definitions by name with their status (pages may
        be short: definitions without triggers are skipped)."""
        after = self._tokens.decode(page_token, "operators", {})
        page = self._catalog.list("definition", after=after, limit=page_size)
        items = [self._view(r.name, r.doc, summary=True) for r in page.items if r.doc.get("triggers")]
        return {"items": items, "next_page_token": self._tokens.encode(page.last_key, "operators", {})}

    def operator(self, definition: str) -> JSON:
        """`GET /v1/operators/{definition}`: status, halted keys (error, since) and busy keys."""
        doc = self._catalog.get("definition", definition).doc
        view = self._view(definition, doc, summary=False)
        if not doc.get("triggers") and view["status"] == "idle":
            raise NotFound(f"operator/{definition}", f"{definition} has no event triggers")
        return view

    def restart(self, definition: str, key: str | None) -> JSON:
        """`POST /v1/operators/{definition}/restart`: resume the halted keys (or only `key`) from
        their failed event. Answers the operator with `restarted` (the keys resumed)."""
        self._catalog.get("definition", definition)
        heads = (
            [self._store.head(definition, key)]
            if key is not None
            else self._store.busy(definition, limit=BUSY_LIMIT)
        )
        resumed: list[str] = []
        for head in heads:
            for _ in range(MAX_STEPS):
                if not head.halted:
                    break
                try:
                    self._store.update_head(restarted(head, self._clock.now()), expected_version=head.version)
                    resumed.append(head.key)
                    break
                except Conflict:
                    head = self._store.head(definition, head.key)
            if head.version:
                self.pump(definition, head.key)  # also repairs a stream whose run ended unnoticed
        doc = self._catalog.get("definition", definition).doc
        return {**self._view(definition, doc, summary=False), "restarted": resumed}

    def _view(self, definition: str, doc: JSON, *, summary: bool) -> JSON:
        heads = self._store.busy(definition, limit=BUSY_LIMIT)
        halted = [h for h in heads if h.halted]
        first = min(halted, key=lambda h: (h.since or self._clock.now(), h.key)) if halted else None
        view: JSON = {
            "definition": definition,
            "event_types": [t.get("event_type") for t in doc.get("triggers") or []],
            "max_consecutive_failures": int(doc.get("max_consecutive_failures") or DEFAULT_MAX_FAILURES),
            "status": operator_status(heads),
            "key": first.key if first else None,
            "error": first.error if first else None,
            "since": fmt(first.since) if first else None,
            "halted_keys": [h.key for h in halted],
            "running_keys": len([h for h in heads if h.state == "running"]),
        }
        if not summary:
            view["keys"] = [head_view(h, fmt) for h in heads]
        return view
