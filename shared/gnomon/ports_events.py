"""The ports of event-triggered definitions (CONTRACT.md §7) and of notifications.

Events are kept per (definition, key) as an ordered *stream*: a head item (`StreamHead`, its
version the precondition of every change) and one item per event under its sequence number
1, 2, 3, … The head says how far the stream got (`done_seq`), which run is processing the next
event (`inflight`), how many runs in a row failed (`failures`) and whether the key halted.
Appending an event is ONE atomic write of three items, each conditioned: the head at the version
read (its `last_seq` + 1), the new event item (absent), and the event id's marker for this
definition (absent) — so a repeated `event_id` is never appended twice, and two appenders never
take one sequence number.

Implementations: `gnomon.adapters.events_memory` (the fake) and `gnomon.adapters.events_dynamo`
(pynamodb); `tests/contract/test_events_store.py` runs one suite against both.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gnomon.ports import JSON


@dataclass(frozen=True)
class StreamHead:
    """Where the stream of one (definition, key) stands. `version` 0 = not stored yet."""

    definition: str
    key: str
    last_seq: int = 0
    """The sequence number of the newest event appended (0: none)."""
    done_seq: int = 0
    """Every event up to this one is processed; `done_seq + 1` is the next (when ≤ last_seq)."""
    runs: int = 0
    """Runs made so far for event `done_seq + 1` (each failed run is followed by a new one)."""
    inflight: str | None = None
    """The run processing event `done_seq + 1`, until the stream has taken note of its end."""
    failures: int = 0
    """Runs that failed in a row (after their last attempt); reset by a success or a restart."""
    halted: bool = False
    """Set after `max_consecutive_failures` failures: no run starts until a restart."""
    since: datetime | None = None
    """When the key halted."""
    error: JSON | None = None
    """The error of the last failed run."""
    last_run_id: str | None = None
    """The last run whose end the stream noted."""
    updated_at: datetime | None = None
    version: int = 0

    @property
    def state(self) -> str:
        """`halted`, `running` (a run is in flight or events wait) or `idle`."""
        if self.halted:
            return "halted"
        if self.inflight is not None or self.done_seq < self.last_seq:
            return "running"
        return "idle"


@dataclass(frozen=True)
class StoredEvent:
    """One event of a stream: `doc` holds `event_id`, `type`, `payload`, `received_at`."""

    definition: str
    key: str
    seq: int
    event_id: str
    doc: JSON


class EventStore(Protocol):
    """Event streams per (definition, key), with the sparse `busy` index of the streams that are
    not idle (running or halted), per definition."""

    def head(self, definition: str, key: str) -> StreamHead:
        """The stream's head; one with `version` 0 (and everything at its default) if none."""
        ...

    def append(self, head: StreamHead, event: StoredEvent) -> StreamHead:
        """Store `event` (its `seq` must be `head.last_seq + 1`) and the head with that
        `last_seq`, if the stored head is still at `head.version` (0 = absent) and the event's
        `event_id` was never appended to this definition; atomically. Answers the new head.
        `AlreadyExists` (details `{"seq"}` when known) for a repeated event id; `Conflict` when
        the head moved."""
        ...

    def update_head(self, head: StreamHead, *, expected_version: int) -> StreamHead:
        """Replace the head (everything but `last_seq`, which only `append` moves) if it is at
        `expected_version`; version + 1. `Conflict(current=...)` on a mismatch or when absent."""
        ...

    def event(self, definition: str, key: str, seq: int) -> StoredEvent:
        """One event. `NotFound(f"event/{definition}/{key}/{seq}")` if absent."""
        ...

    def events(self, definition: str, key: str, *, after_seq: int, limit: int) -> builtins.list[StoredEvent]:
        """The stream's events with seq > `after_seq`, in order, at most `limit`."""
        ...

    def expire(self, definition: str, key: str, seq: int, at: datetime) -> None:
        """Give a processed event its retention instant (`expires_at`, the TTL attribute);
        a missing event: no-op. The event id's marker stays (an id is never run twice)."""
        ...

    def busy(self, definition: str, *, limit: int) -> builtins.list[StreamHead]:
        """The definition's heads that are not idle (running or halted), sorted by key."""
        ...


class NotificationSender(Protocol):
    """Where a definition's notifications go (CONTRACT.md §5 `notifications`)."""

    def publish_sns(self, topic_arn: str, subject: str, message: JSON) -> None:
        """Publish `message` (as JSON) to an SNS topic; raise on failure."""
        ...

    def post_webhook(self, url: str, body: bytes, signing_secret: str) -> None:
        """POST `body` signed like a target request (`Gnomon-Signature`), through the same
        address policy; raise on failure (anything but 2xx)."""
        ...


class LifecycleBus(Protocol):
    """An EventBridge bus that run and schedule lifecycle changes are put on."""

    def put(self, entries: builtins.list[tuple[str, JSON]]) -> None:
        """Put `(detail_type, detail)` entries (source `gnomon`); raise on failure."""
        ...
