"""The worker's use case: take one queued message — a firing, a run's next attempt, or a lost
lease — claim the run with a conditional write, invoke the target, and record the outcome.

Exactly once: a firing's run id is deterministic, so a redelivered or duplicated message finds
the run already created (`AlreadyExists`) and stops; a run's next attempt is claimed by a
version-conditioned `pending → running` update, so two deliveries of one attempt start it once.

Overlap policies (CONTRACT.md §5, Temporal's semantics) rest on the schedule's *overlap ledger*,
`flight` in its document: the runs that count as running (`running`) and those that wait
(`buffer`, oldest first). Every change to it is one version-conditioned write of the schedule,
so two workers never both take the last free place, and the ledger decides before the runs are
written: a redelivered message finds its run already in the ledger and only redoes what that
decision implies. A run enters the ledger when it arrives (a firing, or the first start of a
triggered or backfilled run) and leaves it when its last attempt closes; then the oldest waiting
run is started by enqueueing its `run` message (whose `pending → running` claim is conditional,
so two closers starting it at once still start it once). Buffered runs are `pending` with
`buffered: true` and no message; the sweep never starts them. What a dead worker leaves behind
(a run that closed without leaving the ledger, a started run whose message was lost) is repaired
when the ledger is next blocked or by its watchdog (`flight.check_at`: the ticker sends `settle`),
which look at the runs themselves. Runs started under `allow_all` without `max_concurrency` are
not tracked, as Temporal does not track them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from gnomon.domain.errors import AlreadyClosed, AlreadyDone, AlreadyExists, Conflict, NotFound
from gnomon.domain.model import TASK_TIMEOUT_MAX
from gnomon.domain.runs import (
    RunStatus,
    cap_json,
    check_transition,
    parse_scheduled_run_id,
    retry_delay,
    scheduled_run_id,
)
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import (
    JSON,
    CatalogRecord,
    CatalogStore,
    Clock,
    FiringQueue,
    Invocation,
    Outcome,
    OutgoingMessage,
    RunRecord,
    RunStore,
    ScheduleRecord,
    ScheduleStore,
    TargetInvoker,
)
from gnomon.services.tick import (
    BUFFER_WATCHDOG,
    MAX_DELAY,
    RETRY_GRACE,
    SETTLE_AFTER,
    completion_ready,
    counted_by_unpause,
    new_run_doc,
    run_message,
    schedule_cursor,
    schedule_record,
    skipped_run,
)

LEASE_GRACE = timedelta(seconds=30)
MAX_EARLY_WAIT = 1.5  # seconds: SQS delays are whole seconds; the rest is waited here
HISTORY_ERROR_LIMIT = 2048
DEFAULT_RETENTION_DAYS = 30
BUFFER_LIMIT = 1000  # waiting runs per schedule (buffer_all); beyond: skipped `buffer_full`
# A ledger entry whose run is not written yet (its worker is between the two writes) is kept this
# long before a check drops it as abandoned.
UNWRITTEN_GRACE = timedelta(seconds=60)
LEDGER_TRIES = 20
# A worker batch with this many runs to claim holds them with one item (`per_batch`) instead of
# a lease entry in the `active` index each (a put and a delete per batch against one write unit
# a run); until the default timeout's lease ends — a run still running then gets its own entry.
HOLD_MIN_RUNS = 3
HOLD_FOR = timedelta(seconds=60) + LEASE_GRACE
# A claim this close to its batch's hold's end (or past it) takes its own lease entry: once the
# hold expired, the sweep may already have looked at its runs and released it, and a run
# claimed after that under the hold would be covered by nothing (its worker dying would leave
# it running for ever). The margin covers the claim's write landing after the check.
HOLD_MARGIN = timedelta(seconds=15)
RECENT_PAGE = 3  # a schedule's newest runs read per firing (one read unit)
FINAL = frozenset({RunStatus.completed.value, RunStatus.failed.value, RunStatus.timed_out.value})
# What a skip reason adds to: the schedule's counter.
SKIP_COUNTERS = {"overlap": "skipped_overlap", "buffer_full": "buffer_dropped", "paused": "skipped_paused"}
CANCEL_REASON = "canceled by a newer run of the schedule (overlap cancel_other)"
TERMINATE_REASON = "terminated by a newer run of the schedule (overlap terminate_other)"
DELETED_REASON = "the schedule was deleted before this run started"
LOST_ATTEMPT = {
    "code": "lease_expired",
    "message": "the worker running this attempt stopped before it finished",
}
# A `task` target's attempt is a leased task that waits for an external worker (CONTRACT.md §5,
# §8): the attempt's deadline (the run's lease) is the definition's timeout_seconds, bounded by
# TASK_TIMEOUT_MAX — a week covers a weekly batch job waiting over a weekend for a worker pool,
# while a run whose task nobody ever takes still ends (timed_out) and leaves the overlap ledger
# within a bounded time; the run index sweep only needs to look at it then. Without a
# timeout_seconds the deadline is that bound.


class TaskCreator(Protocol):
    """What the worker needs of the task use cases (`gnomon.services.tasks.Tasks`)."""

    def create(
        self,
        topic: str,
        *,
        data: Any = None,
        sub_topic: str | None = None,
        max_attempts: int = ...,
        task_id: str | None = None,
        run_id: str | None = None,
    ) -> tuple[int, JSON]: ...

    def withdraw(self, task_id: str, reason: str) -> JSON: ...

    def signal(self, task_id: str, signal: Any) -> JSON: ...


def task_id_for(run_id: str, attempt: int) -> str:
    """The task of a `task` target's attempt: one per run and attempt, so a redelivered message
    creates it once."""
    return f"{run_id}.a{attempt}"


@dataclass(frozen=True)
class Handled:
    """What became of a message (for logs, metrics and tests)."""

    outcome: str  # ran | duplicate | stale | deleted | skipped | buffered | retry_scheduled | gone | settled
    run_id: str | None = None
    status: str | None = None
    lateness_ms: float | None = None  # started_at − scheduled_time of a firing's first attempt


# -- the overlap policy, as a pure decision ----------------------------------------------------


@dataclass
class Admission:
    """What the overlap policy makes of a schedule's waiting runs (oldest first, the newest
    arrival last) given how many runs count as running."""

    start: list[JSON] = field(default_factory=list)
    """Start now, in order."""
    buffer: list[JSON] = field(default_factory=list)
    """Keep waiting, in order."""
    skipped: list[tuple[JSON, str]] = field(default_factory=list)
    """Never run: (entry, reason `overlap` | `buffer_full`)."""
    cancel: bool = False
    """Cancel what runs (cancel_other): the first waiting run starts once those attempts close."""
    terminate: bool = False
    """Terminate what runs (terminate_other): the first waiting run then starts at once."""

    @property
    def blocked(self) -> bool:
        """Something does not start because runs count as running."""
        return bool(self.buffer or self.skipped or self.cancel or self.terminate)


def decide(waiting: list[JSON], running: int, policy: str, max_concurrency: int | None) -> Admission:
    """Temporal's buffer processing, with `max_concurrency`: each entry (`{"run_id",
    "overlap"}`, `overlap` None = the schedule's `policy`) starts while fewer than its limit run
    — `max_concurrency` for `allow_all` (None = unbounded) and `buffer_all` (None = 1), 1 for the
    others — and otherwise is skipped (`skip`; `buffer_one` once one waits), waits (`buffer_one`,
    `buffer_all`, up to BUFFER_LIMIT) or waits for what runs to be canceled or terminated.
    A cancel_other / terminate_other entry with nothing actually running replaces the run chosen
    to start before it in the same pass (the newest wins, as in Temporal)."""
    out = Admission()

    def wait(entry: JSON) -> None:
        if len(out.buffer) < BUFFER_LIMIT:
            out.buffer.append(entry)
        else:
            out.skipped.append((entry, "buffer_full"))

    for entry in waiting:
        p = entry.get("overlap") or policy
        if p == "allow_all":
            if max_concurrency is None or running + len(out.start) < max_concurrency:
                out.start.append(entry)
            else:
                wait(entry)
            continue
        limit = (max_concurrency or 1) if p == "buffer_all" else 1
        if running + len(out.start) < limit:
            out.start.append(entry)
        elif p == "skip":
            out.skipped.append((entry, "overlap"))
        elif p == "buffer_one":
            if out.buffer:
                out.skipped.append((entry, "overlap"))
            else:
                out.buffer.append(entry)
        elif p == "buffer_all":
            wait(entry)
        elif running:  # cancel_other / terminate_other while something actually runs
            out.cancel = out.cancel or p == "cancel_other"
            out.terminate = out.terminate or p == "terminate_other"
            wait(entry)
        else:
            chosen = [i for i, e in enumerate(out.start) if (e.get("overlap") or policy) != "allow_all"]
            if chosen:
                out.skipped.append((out.start.pop(chosen[-1]), "overlap"))
                out.start.append(entry)
            else:
                wait(entry)
    return out


@dataclass
class BatchHold:
    """A worker batch's hold (`Executor.per_batch`), stored at its first claim; `keep` it when
    a message failed."""

    run_ids: tuple[str, ...] = ()
    hold_id: str | None = None
    expires_at: datetime | None = None  # the stored hold's end
    keep: bool = False
    failed: bool = False  # could not be stored: the batch's runs have their own entries
    lock: threading.Lock = field(default_factory=threading.Lock)


def claimed_run_id(body: JSON) -> str | None:
    """The run a message may claim: a firing's (its id derives from the firing) or a run's next
    attempt; None for the other kinds."""
    try:
        if body.get("kind") == "firing":
            return scheduled_run_id(
                str(body["schedule_id"]), str(body["generation"]), parse(body["nominal_time"])
            )
        if body.get("kind") == "run":
            return str(body["run_id"])
    except (KeyError, TypeError, ValueError):
        return None  # the message fails when handled
    return None


def counts_as_running(run: RunRecord, now: datetime) -> bool:
    """A run counts as running until its last attempt closes, even when already marked canceled
    (its attempt is open while it holds an unexpired lease)."""
    if run.status in (RunStatus.running.value, RunStatus.pending.value):
        return True
    if run.status == RunStatus.canceled.value:
        lease = run.doc.get("lease") or {}
        return bool(lease) and parse(lease["expires_at"]) > now
    return False


def _tracked(entry: JSON, policy: str, max_concurrency: int | None) -> bool:
    # allow_all without a limit never waits for anything: like Temporal, do not track those runs.
    return (entry.get("overlap") or policy) != "allow_all" or max_concurrency is not None


def _overlap_of(doc: JSON) -> str | None:
    """The overlap policy a run asked for (a backfill's or a trigger's), None = the schedule's."""
    if doc.get("overlap"):
        return str(doc["overlap"])
    for event in doc.get("events", []):
        if event.get("type") == "triggered":  # runs recorded by POST /trigger name it here
            policy = (event.get("details") or {}).get("overlap")
            return str(policy) if policy else None
    return None


def next_attempt_delay(outcome: Outcome, retry: JSON, attempt: int) -> float | None:
    """Seconds until the next attempt after a failed `attempt`, or None when it was the last:
    a non-retryable error, or `max_attempts` used up. A target's Retry-After stretches the
    backoff, up to `maximum_interval_seconds`."""
    code = str((outcome.error or {}).get("code", ""))
    if not outcome.retryable or code in set(retry.get("non_retryable_errors", [])):
        return None
    if attempt >= int(retry.get("max_attempts", 3)):
        return None
    delay = retry_delay(retry, attempt)
    if outcome.retry_after is not None:
        delay = min(max(delay, outcome.retry_after), float(retry.get("maximum_interval_seconds", 300)))
    return delay


class Executor:
    """Runs firings. `worker_id` names the lease owner (a Lambda request id, a thread)."""

    def __init__(
        self,
        schedules: ScheduleStore,
        runs: RunStore,
        catalog: CatalogStore,
        queue: FiringQueue,
        clock: Clock,
        invoker: TargetInvoker,
        *,
        worker_id: str = "worker",
        retention_days: int = DEFAULT_RETENTION_DAYS,
        sleep: Any = time.sleep,
        tasks: TaskCreator | None = None,
    ) -> None:
        self._schedules = schedules
        self._runs = runs
        self._catalog = catalog
        self._queue = queue
        self._clock = clock
        self._invoker = invoker
        self._worker_id = worker_id
        self._retention = retention_days
        self._sleep = sleep
        self._tasks = tasks
        self._cache_lock = threading.Lock()
        self._batches = 0  # open per_batch() blocks
        self._held: dict[str, BatchHold] = {}  # run id -> the open batch that may hold it
        self._definitions: dict[str, CatalogRecord] = {}
        self._close_listeners: list[Callable[[RunRecord], None]] = []
        self._notify: Callable[[str, str, JSON], Any] | None = None

    def add_close_listener(self, listener: Callable[[RunRecord], None]) -> None:
        """Call `listener(run)` whenever a run's last attempt closed (or a run no longer counts
        as running): event streams move on. May be called more than once for a run."""
        self._close_listeners.append(listener)

    def attach_notifier(self, notify: Callable[[str, str, JSON], Any]) -> None:
        """`notify(definition, event, details)` fires a definition's notifications (`failed`,
        `paused_on_failure`); it never raises."""
        self._notify = notify

    def _notify_definition(self, definition: str, event: str, details: JSON) -> None:
        if self._notify is not None:
            try:
                self._notify(definition, event, details)
            except Exception:  # a notification never fails the run
                logging.getLogger("gnomon.execute").exception("notification %s failed", event)

    @contextlib.contextmanager
    def per_batch(self, bodies: Sequence[JSON] = ()) -> Iterator[BatchHold]:
        """Within the block (a worker's SQS batch, and any batch overlapping it), read each
        definition once: a batch's firings mostly share one. A definition replaced meanwhile
        takes effect from the next batch.

        A batch of HOLD_MIN_RUNS or more runs it may claim (`bodies`: its messages) stores one
        *hold* on them (`RunStore.hold`, HOLD_FOR) before its first claim: the runs it claims
        then get no lease entry of their own in the `active` index (a write unit each), and the
        hold is released at the end — unless a message failed (`BatchHold.keep`): then, as when
        the worker dies, the sweep looks at each of its runs once the hold expired
        (`Ticker.sweep_holds`). A batch that claims nothing (history off) stores none.

        The runs its firings make are listed across schedules together
        (`RunStore.listed_together`): one write for the batch, not an index entry per run."""
        claimed = [(b, claimed_run_id(b)) for b in bodies]
        run_ids = [r for _, r in claimed if r is not None]
        firings = [r for b, r in claimed if r is not None and b.get("kind") == "firing"]
        named = {r: str(b["definition"]) for b, r in claimed if r is not None and b.get("definition")}
        hold = BatchHold(run_ids=tuple(run_ids))
        held = len(run_ids) >= HOLD_MIN_RUNS
        with self._cache_lock:
            self._batches += 1
            if held:
                for r in run_ids:
                    self._held[r] = hold
        try:
            with self._runs.listed_together(firings, self._retention_of, named):
                yield hold
        finally:
            with self._cache_lock:
                self._batches -= 1
                if not self._batches:
                    self._definitions.clear()
                for r in run_ids:
                    if self._held.get(r) is hold:
                        del self._held[r]
            if hold.hold_id is not None and not hold.keep:
                try:
                    self._runs.release(hold.hold_id)
                except Exception:  # left to expire: the sweep finds its runs closed
                    logging.getLogger("gnomon.execute").exception("could not release the batch's hold")

    def _lease_entry(self, run_id: str, until: datetime) -> datetime | None:
        """The `active_at` of a run claimed until `until`: none while a batch's hold covers it
        (stored now, before the batch's first claim)."""
        with self._cache_lock:
            hold = self._held.get(run_id)
        if hold is None:
            return until
        with hold.lock:
            now = self._clock.now()
            if hold.hold_id is None and not hold.failed:
                try:
                    hold.hold_id = self._runs.hold(hold.run_ids, now + HOLD_FOR)
                    hold.expires_at = now + HOLD_FOR
                except Exception:  # no hold: each run keeps its own lease entry
                    hold.failed = True
                    logging.getLogger("gnomon.execute").exception("could not store the batch's hold")
            if hold.expires_at is None or now >= hold.expires_at - HOLD_MARGIN:  # None: not stored
                return until
            return None

    def _retention_of(self, definition: str) -> int:
        """Days a definition's runs are kept (read once per batch, as `_definition` is)."""
        try:
            return _retention_days(self._definition(definition).doc, self._retention)
        except NotFound:
            return self._retention

    def _definition(self, name: str) -> CatalogRecord:
        with self._cache_lock:
            cached = self._definitions.get(name) if self._batches else None
        if cached is not None:
            return cached
        record = self._catalog.get("definition", name)
        with self._cache_lock:
            if self._batches:
                self._definitions[name] = record
        return record

    def attach_tasks(self, tasks: TaskCreator) -> None:
        """The task use cases that `task` targets create their tasks with."""
        self._tasks = tasks

    def _task_service(self) -> TaskCreator:
        if self._tasks is None:
            # Not wired explicitly: the process-wide task service (it attaches itself here).
            from gnomon.services.tasks import tasks_service

            self._tasks = tasks_service()
        return self._tasks

    def handle(self, body: JSON) -> Handled:
        """Process one message body; raise only for a message that cannot be understood."""
        kind = body.get("kind")
        if kind == "firing":
            return self._fire(body)
        if kind == "run":
            return self._start(str(body["run_id"]), int(body["attempt"]))
        if kind == "lease_expired":
            return self._expire(str(body["run_id"]))
        if kind == "settle":
            return self._settle(str(body["schedule_id"]), str(body["generation"]))
        if kind == "nudge":
            return self._nudge(str(body["run_id"]))
        raise ValueError(f"unknown message kind {kind!r}")

    def run_closed(self, run_id: str) -> None:
        """Tell the overlap ledger that a run may have closed outside the worker (canceled or
        terminated through the API, a canceled run's late callback): once it no longer counts
        as running, the oldest waiting run of its schedule may start. Without this call the
        ledger's watchdog notices within a few minutes."""
        self._release_if_closed(run_id)

    # -- a schedule's firing --------------------------------------------------------------------

    def _fire(self, body: JSON) -> Handled:
        sid, gen = str(body["schedule_id"]), str(body["generation"])
        nominal, scheduled = parse(body["nominal_time"]), parse(body["scheduled_time"])
        run_id = scheduled_run_id(sid, gen, nominal)
        # The schedule is read eventually consistent (half a read unit). A history-off firing
        # records nothing and is at least once: a pause, update or delete made in the last
        # second or so may not stop it yet. Any other firing reads it again, strongly, when
        # what it read would stop it; otherwise its ledger write, conditional on the version it
        # read, lands only on the current schedule — a stale one costs a retry that reads it
        # strongly and looks again at pause and configuration (`_ledger`'s `firing`).
        named = body.get("definition")  # absent from messages sent before it was added
        unrecorded = isinstance(named, str) and bool(named) and self._history_off(named)
        sched = self._firing_schedule(sid, gen, body, recorded=not unrecorded)
        if sched is None:
            return Handled("deleted", run_id)
        if sched.generation != gen:
            return Handled("deleted", run_id)  # deleted and re-created since
        if sched.doc.get("config_version", 1) != body.get("config_version", 1):
            self._schedules.add_counters(sid, {"dropped_stale": 1})
            self._count_down(sched, body["nominal_time"], consume=False)
            return Handled("stale", run_id)
        if sched.doc["state"].get("paused"):
            # (Counted here unless the unpause counts it: a firing past the cursor.)
            counter = None if counted_by_unpause(sched.doc, nominal) else "skipped_paused"
            if self._history_off(sched.definition):
                self._count_down(sched, body["nominal_time"], consume=False)
                if counter:
                    self._schedules.add_counters(sid, {counter: 1})  # counted, never recorded
                return Handled("skipped", run_id, RunStatus.skipped.value)
            return self._skip(sched, nominal, "paused", counter)
        self._wait_until(scheduled)
        try:
            definition = self._definition(sched.definition)
        except NotFound:
            return self._skip(sched, nominal, "definition_missing", "dropped_stale")
        if history_off(definition.doc):
            return self._fire_unrecorded(sched, definition.doc, body, run_id)
        # No read first to see whether the run exists (a redelivery): the ledger recognizes a run
        # it holds, and the run's conditional create below stops any other duplicate, whose
        # ledger write is undone by its release (a skipped duplicate is stopped by its create).
        now = self._clock.now()
        # The schedule's newest runs, read once: the ledger's look at the runs it holds (usually
        # the previous firing's) and the target's last_success_time both come from this page.
        recent = self._recent(sid, gen, body)
        high = sched.doc.get("deferred_hw")
        if high is not None and nominal <= parse(high) and self._recorded(run_id, recent):
            # A late copy of a firing the ledger claimed before: recorded, so nothing to claim.
            self._count_down(sched, body["nominal_time"], consume=False)
            self._release_if_closed(run_id)
            return Handled("duplicate", run_id)
        # The action is counted by the ledger write that claims the firing alone (`deferred`),
        # else once this call created the run (a copy that finds it created counts nothing).
        action = {"actions": 1}
        timeout = _timeout(definition.doc, sched.doc)
        lease_until = now + timedelta(seconds=timeout) + LEASE_GRACE
        deferral = _deferral(definition, body, self._worker_id, lease_until)
        verdict, written = self._ledger(
            sid,
            gen,
            arrival={"run_id": run_id, "overlap": None, "since": fmt(now)},
            read=sched,
            counted=action,
            known={r.run_id: r for r in recent},
            deferred=deferral,
            firing=body,
        )
        entry = _running_entry(written, run_id)
        if entry is not None and entry.get("d") is not None and written is not None:
            ours = deferral is not None and entry["d"].get("tok") == deferral["tok"]
            if entry["d"].get("late") and ours and self._recorded(run_id, recent):
                # A copy of a firing whose run was recorded and left the ledger: it entered it
                # again, and counted an action again — taken back; the next look drops it.
                self._schedules.add_counters(sid, {"actions": -1})
                self._count_down(sched, body["nominal_time"], consume=False)
                self._release_if_closed(run_id)
                return Handled("duplicate", run_id)
            if verdict == "start" or (verdict == "started" and ours):
                # Claimed by the ledger's write alone (`started` and ours: that write landed
                # though its answer was lost): the run is written once, when its attempt ends.
                return self._fire_deferred(written, entry, definition, recent, body)
            if verdict == "started":
                # Another copy of this firing claimed it that way and may be running it: record
                # the run now, under that copy's lease — its end updates this record, and if it
                # died the lease expires to the sweep as any claimed run's does.
                self.materialize_entry(written, entry)
                self._count_down(sched, body["nominal_time"], consume=False)
                self._release_if_closed(run_id)
                return Handled("duplicate", run_id)
        if verdict == "gone":
            return Handled("deleted", run_id)
        if verdict == "stale":
            self._schedules.add_counters(sid, {"dropped_stale": 1})
            self._count_down(sched, body["nominal_time"], consume=False)
            return Handled("stale", run_id)
        if verdict in SKIP_COUNTERS:
            return self._skip(sched, nominal, verdict, SKIP_COUNTERS[verdict])
        doc = new_run_doc(
            run_id=run_id,
            definition=sched.definition,
            definition_version=definition.version,
            schedule_id=sid,
            generation=gen,
            nominal=nominal,
            scheduled=scheduled,
            trigger="schedule",
            input_=sched.doc.get("input"),
            memo=sched.doc.get("memo", {}),
        )
        doc["previous_nominal_time"] = body.get("previous_nominal_time")
        if verdict == "buffer":
            return self._buffer_firing(sched, doc, body["nominal_time"])
        doc["events"].append({"time": fmt(now), "type": "scheduled", "details": {"actual_time": fmt(now)}})
        _begin_attempt(doc, 1, self._worker_id, now, timeout)
        rec = RunRecord(
            run_id=run_id,
            doc=doc,
            schedule_id=sid,
            definition=sched.definition,
            nominal_time=nominal,
            status=RunStatus.running.value,
            active_at=self._lease_entry(run_id, lease_until),
        )
        try:
            rec = self._runs.create(rec)
        except AlreadyExists:
            self._count_down(sched, body["nominal_time"], consume=False)
            self._release_if_closed(run_id)
            return Handled("duplicate", run_id)
        self._schedules.add_counters(sid, action)
        self._count_down(sched, body["nominal_time"], consume=True)
        handled = self._invoke(rec, definition.doc, sched.doc, recent=recent)
        return replace(handled, lateness_ms=(now - scheduled).total_seconds() * 1000)

    def _recent(self, sid: str, gen: str, body: JSON) -> list[RunRecord]:
        """A schedule's newest runs, read eventually consistent (half a read unit) — with the
        previous firing's run read strongly when that read does not show it (just written,
        not yet visible; or not written: in flight, or never recorded). What the ledger takes
        from the page is checked where it matters (`_verify` reads a run it shows running
        again); the target's last_success_time is the previous firing's when it completed."""
        recent = self._runs.recent(sid, limit=RECENT_PAGE, consistent=False)
        previous = body.get("previous_nominal_time")
        if not previous:
            return recent
        prev_id = scheduled_run_id(sid, gen, parse(previous))
        if any(r.run_id == prev_id for r in recent):
            return recent
        try:
            prev = self._runs.get(prev_id)
        except NotFound:
            return recent
        merged = sorted([*recent, prev], key=lambda r: (r.nominal_time, r.run_id), reverse=True)
        return merged[:RECENT_PAGE]

    def _recorded(self, run_id: str, recent: list[RunRecord]) -> bool:
        if any(r.run_id == run_id for r in recent):
            return True
        try:
            self._runs.get(run_id)
            return True
        except NotFound:
            return False

    def _firing_schedule(self, sid: str, gen: str, body: JSON, *, recorded: bool) -> ScheduleRecord | None:
        """The schedule of a firing, read eventually consistent — and for a recorded firing
        (`recorded`) read again strongly when that read would stop it (gone, re-created,
        reconfigured or paused), so a stale read never drops or skips it."""
        for consistent in (False, True) if recorded else (False,):
            try:
                sched: ScheduleRecord | None = self._schedules.get(sid, consistent=consistent)
            except NotFound:
                sched = None
            if sched is not None and sched.generation == gen and not _stops(sched, body):
                return sched
        return sched

    def _fire_deferred(
        self,
        sched: ScheduleRecord,
        entry: JSON,
        definition: CatalogRecord,
        recent: list[RunRecord],
        body: JSON,
    ) -> Handled:
        """A firing claimed by its ledger write alone (`_deferral`): the target is called and the
        run written once, with the attempt's outcome — one write instead of a create and a close.
        Until then the run is in the ledger's entry, which `materialize` turns into its record
        for whoever needs it earlier (the API, another copy of the firing, the next arrival
        once the entry's lease is over): the end of the attempt then updates that record."""
        rec = deferred_run(sched, entry)
        self._count_down(sched, body["nominal_time"], consume=True)
        handled = self._invoke(rec, definition.doc, sched.doc, recent=recent, unrecorded=sched)
        lateness = (parse(entry["since"]) - parse(body["scheduled_time"])).total_seconds() * 1000
        return replace(handled, lateness_ms=lateness)

    def materialize(self, run_id: str) -> RunRecord | None:
        """The record of a scheduled run that so far lives only in its schedule's ledger (its
        first attempt runs, claimed by the ledger's write, `_fire_deferred`): written now, as
        running under that attempt's lease; None when the ledger holds no such run."""
        parsed = parse_scheduled_run_id(run_id)
        if parsed is None:
            return None
        try:
            sched = self._schedules.get(parsed[0])
        except NotFound:
            return None
        entry = _running_entry(sched, run_id)
        if sched.generation != parsed[1] or entry is None or entry.get("d") is None:
            return None
        return self.materialize_entry(sched, entry)

    def materialize_entry(self, sched: ScheduleRecord, entry: JSON) -> RunRecord | None:
        rec = deferred_run(sched, entry)
        rec = replace(rec, active_at=parse(entry["d"]["until"]))  # its lease entry: the sweep's
        try:
            return self._runs.create(rec)
        except AlreadyExists:
            try:
                return self._runs.get(rec.run_id)
            except NotFound:
                return None

    def _history_off(self, definition: str) -> bool:
        try:
            return history_off(self._definition(definition).doc)
        except NotFound:
            return False

    def _fire_unrecorded(self, sched: ScheduleRecord, definition: JSON, body: JSON, run_id: str) -> Handled:
        """A firing of a definition with `history.mode` off: invoke the target with the run id
        as `Idempotency-Key` and record nothing (at-least-once, see `HistoryMode.off`). A failed
        attempt is retried by sending the firing again, delayed by the retry policy's backoff."""
        attempt = int(body.get("attempt", 1))
        if attempt == 1:
            self._count_down(sched, body["nominal_time"], consume=True)
        now = self._clock.now()
        scheduled = parse(body["scheduled_time"])
        inv = Invocation(
            run_id=run_id,
            attempt=attempt,
            definition=sched.definition,
            schedule_id=sched.schedule_id,
            nominal_time=parse(body["nominal_time"]),
            scheduled_time=scheduled,
            previous_nominal_time=parse(body["previous_nominal_time"])
            if body.get("previous_nominal_time")
            else None,
            last_success_time=None,
            input=sched.doc.get("input"),
            target=definition["target"],
            signing_secret=str(definition.get("signing_secret", "")),
            callback_token="",  # nosec B106 # history off: no run to call back into
            timeout_seconds=float(_timeout(definition, sched.doc)),
        )
        try:
            outcome = self._invoker.invoke(inv)
        except Exception as exc:  # an invoker bug fails the attempt like a target error
            outcome = Outcome(status="failed", error={"code": "internal_error", "message": repr(exc)})
        lateness = (now - scheduled).total_seconds() * 1000 if attempt == 1 else None
        if outcome.status in ("completed", "accepted"):
            return Handled("ran", run_id, RunStatus.completed.value, lateness)
        delay = next_attempt_delay(outcome, _retry(definition, sched.doc), attempt)
        if delay is not None:
            self._queue.send(
                [
                    OutgoingMessage(
                        body={**body, "attempt": attempt + 1}, delay_seconds=math.ceil(min(delay, MAX_DELAY))
                    )
                ]
            )
            return Handled("retry_scheduled", run_id, RunStatus.pending.value, lateness)
        status = RunStatus.timed_out.value if outcome.status == "timed_out" else RunStatus.failed.value
        return Handled("ran", run_id, status, lateness)

    def _buffer_firing(self, sched: ScheduleRecord, doc: JSON, nominal: str) -> Handled:
        """Record a firing that waits in the overlap buffer: `pending`, no message. It is not an
        action yet: remaining_actions is taken when it starts."""
        now = self._clock.now()
        doc.update(buffered=True, next_attempt=1)
        doc["events"].append({"time": fmt(now), "type": "buffered", "details": {"actual_time": fmt(now)}})
        rec = RunRecord(
            run_id=doc["run_id"],
            doc=doc,
            schedule_id=sched.schedule_id,
            definition=sched.definition,
            nominal_time=parse(doc["nominal_time"]),
            status=RunStatus.pending.value,
            active_at=now + BUFFER_WATCHDOG,
        )
        self._count_down(sched, nominal, consume=False)
        try:
            self._runs.create(rec)
        except AlreadyExists:
            return Handled("duplicate", rec.run_id)
        # The ledger may have moved on between its write and this one (the run ahead closed and
        # started this one before its record existed): look again, now that the run exists.
        return self._start(rec.run_id, 1)

    def _skip(self, sched: ScheduleRecord, nominal: datetime, reason: str, counter: str | None) -> Handled:
        self._count_down(sched, fmt(nominal) or "", consume=False)
        run = skipped_run(sched, nominal, reason, self._clock.now())
        try:
            self._runs.create(run)
        except AlreadyExists:
            return Handled("duplicate", run.run_id)
        if counter is not None:
            self._schedules.add_counters(sched.schedule_id, {counter: 1})
        return Handled("skipped", run.run_id, RunStatus.skipped.value)

    def _count_down(self, sched: ScheduleRecord, nominal: str, *, consume: bool) -> None:
        """For a schedule with `remaining_actions`: forget the planned firing at `nominal` and,
        when it became an action (`consume`), take one of the remaining; at 0 it pauses."""
        if sched.doc["state"].get("remaining_actions") is None:
            return
        for _ in range(10):
            rec = self._schedules.get(sched.schedule_id)
            left = rec.doc["state"].get("remaining_actions")
            planned = list(rec.doc.get("planned", []))
            if left is None or rec.generation != sched.generation:
                return
            if nominal in planned:
                planned.remove(nominal)
            elif not consume:
                return
            state = dict(rec.doc["state"])
            if consume:
                left = max(0, int(left) - 1)
                state["remaining_actions"] = left
                if left == 0:
                    state.update(
                        paused=True, note="remaining actions exhausted", paused_at=fmt(self._clock.now())
                    )
            doc = {**rec.doc, "state": state, "planned": planned}
            try:
                self._schedules.update(
                    schedule_record(rec, doc, schedule_cursor(rec)), expected_version=rec.version
                )
                return
            except Conflict:
                continue

    def _wait_until(self, scheduled: datetime) -> None:
        early = (scheduled - self._clock.now()).total_seconds()
        if 0 < early <= MAX_EARLY_WAIT:
            self._sleep(early)

    # -- a run's next attempt -------------------------------------------------------------------

    def _start(self, run_id: str, attempt: int) -> Handled:
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return Handled("gone", run_id)
        if run.status != RunStatus.pending.value or int(run.doc.get("next_attempt", 1)) != attempt:
            return Handled("duplicate", run_id, run.status)
        if run.schedule_id is not None and int(run.doc.get("attempt", 0)) == 0:
            return self._admit(run, attempt)
        return self._claim(run, attempt)

    def _admit(self, run: RunRecord, attempt: int) -> Handled:
        """The first start of a schedule's run that did not start yet (triggered, backfilled or
        buffered): the overlap ledger decides whether it starts, waits or is skipped."""
        assert run.schedule_id is not None
        doc = run.doc
        if doc.get("not_before"):
            self._wait_until(parse(doc["not_before"]))  # a backfilled run lands on its start
        entry = {"run_id": run.run_id, "overlap": _overlap_of(doc), "since": fmt(self._clock.now())}
        verdict, sched = self._ledger(run.schedule_id, doc.get("generation"), arrival=entry)
        if verdict == "gone" or sched is None:
            # The schedule was deleted: what it had not started yet is dropped.
            self._stop(run.run_id, RunStatus.canceled.value, DELETED_REASON)
            return Handled("deleted", run.run_id, RunStatus.canceled.value)
        if verdict == "buffer":
            return self._mark_buffered(run)
        if verdict in SKIP_COUNTERS:
            return self._mark_skipped(run, verdict)
        scheduled = doc.get("trigger") == "schedule"
        if scheduled and sched.doc["state"].get("paused"):
            # A buffered firing starts only while its schedule is not paused (as in Temporal).
            return self._mark_skipped(run, "paused")

        def claimed() -> None:
            # Counted once the claim succeeded: a duplicate delivery never counts twice. A
            # buffered firing is an action (remaining_actions) only now that it starts.
            assert sched is not None
            if scheduled:
                self._count_down(sched, doc["nominal_time"], consume=True)
            self._schedules.add_counters(sched.schedule_id, {"actions": 1})
            self._count_backfill(run)

        return self._claim(run, attempt, claimed)

    def _claim(self, run: RunRecord, attempt: int, claimed: Callable[[], None] | None = None) -> Handled:
        """Claim the run's next attempt (`pending → running`, conditional), then invoke the target."""
        run_id = run.run_id
        try:
            definition = self._catalog.get("definition", run.definition)
        except NotFound:
            return self._close_now(
                run, "failed", {"code": "definition_missing", "message": "the definition was deleted"}
            )
        sched_doc = self._schedule_doc(run)
        now = self._clock.now()
        timeout = _timeout(definition.doc, sched_doc)
        doc = dict(run.doc)
        doc.pop("buffered", None)
        if attempt == 1 and not doc.get("definition_version"):
            doc["definition_version"] = definition.version
        _begin_attempt(doc, attempt, self._worker_id, now, timeout)
        lease_until = now + timedelta(seconds=timeout) + LEASE_GRACE
        new = _replace(run, doc, RunStatus.running.value, self._lease_entry(run_id, lease_until))
        try:
            new = self._runs.update(new, expected_version=run.version)
        except Conflict:
            self._release_if_closed(run_id)  # e.g. canceled meanwhile: it no longer holds a place
            return Handled("duplicate", run_id)
        if claimed is not None:
            claimed()
        return self._invoke(new, definition.doc, sched_doc)

    def _count_backfill(self, run: RunRecord) -> None:
        """A backfilled run had its turn (started, buffered or skipped — counted once, when it
        first left its waiting-for-its-turn state): one more `started` in its backfill's progress."""
        backfill_id = run.doc.get("backfill_id")
        if backfill_id is None or run.doc.get("buffered") or run.schedule_id is None:
            return
        for _ in range(LEDGER_TRIES):
            try:
                rec = self._schedules.get(run.schedule_id)
            except NotFound:
                return
            if rec.generation != run.doc.get("generation"):
                return
            doc = {**rec.doc, "info": _count_started(rec.doc.get("info") or {}, str(backfill_id))}
            if doc == rec.doc:
                return
            try:
                self._schedules.update(
                    schedule_record(rec, doc, schedule_cursor(rec)), expected_version=rec.version
                )
                return
            except Conflict:
                continue

    def _mark_buffered(self, run: RunRecord) -> Handled:
        if run.doc.get("buffered"):
            return Handled("buffered", run.run_id, run.status)
        now = self._clock.now()
        doc = dict(run.doc)
        doc["buffered"] = True
        doc["events"] = [*doc.get("events", []), {"time": fmt(now), "type": "buffered", "details": {}}]
        try:
            self._runs.update(
                _replace(run, doc, run.status, now + BUFFER_WATCHDOG), expected_version=run.version
            )
        except Conflict:
            return Handled("duplicate", run.run_id)
        self._count_backfill(run)
        return Handled("buffered", run.run_id, run.status)

    def _mark_skipped(self, run: RunRecord, reason: str) -> Handled:
        """A run that never started becomes `skipped` (and leaves the ledger, if it held a place)."""
        now = self._clock.now()
        for _ in range(5):
            if run.status != RunStatus.pending.value or int(run.doc.get("attempt", 0)) != 0:
                return Handled("duplicate", run.run_id, run.status)
            doc = {**run.doc, "reason": reason}
            doc.pop("buffered", None)
            doc.pop("next_attempt", None)
            doc["events"] = [
                *doc.get("events", []),
                {"time": fmt(now), "type": "skipped", "details": {"reason": reason}},
            ]
            new = _closed(_replace(run, doc, RunStatus.skipped.value, None), now, self._retention)
            try:
                saved = self._runs.update(new, expected_version=run.version)
            except Conflict:
                try:
                    run = self._runs.get(run.run_id)
                except NotFound:
                    return Handled("gone", run.run_id)
                continue
            if run.schedule_id is not None:
                self._schedules.add_counters(
                    run.schedule_id, {SKIP_COUNTERS.get(reason, "skipped_overlap"): 1}
                )
            self._count_backfill(run)
            self._release(saved)
            return Handled("skipped", run.run_id, RunStatus.skipped.value)
        return Handled("duplicate", run.run_id)

    def _schedule_doc(self, run: RunRecord) -> JSON | None:
        if run.schedule_id is None:
            return None
        try:
            sched = self._schedules.get(run.schedule_id)
        except NotFound:
            return None
        return sched.doc if sched.generation == run.doc.get("generation") else None

    # -- a lost lease ---------------------------------------------------------------------------

    def _expire(self, run_id: str) -> Handled:
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return Handled("gone", run_id)
        lease = run.doc.get("lease") or {}
        now = self._clock.now()
        if run.status != RunStatus.running.value or not lease or parse(lease["expires_at"]) > now:
            return Handled("duplicate", run_id, run.status)
        try:
            definition = self._catalog.get("definition", run.definition).doc
        except NotFound:
            definition = {"retry": {"max_attempts": 1}}
        outcome = Outcome(status="timed_out", error=dict(LOST_ATTEMPT))
        handled = self._close(run, outcome, definition, self._schedule_doc(run))
        self.withdraw_task(run)  # a `task` target's attempt timed out: its task is withdrawn
        return handled

    def finish(self, run: RunRecord, outcome: Outcome) -> Handled:
        """Close the current attempt of a running run with an outcome reported from outside
        (the asynchronous completion of an http target)."""
        try:
            definition = self._catalog.get("definition", run.definition).doc
        except NotFound:
            definition = {"retry": {"max_attempts": 1}}
        return self._close(run, outcome, definition, self._schedule_doc(run))

    # -- the overlap ledger ---------------------------------------------------------------------

    def _ledger(
        self,
        schedule_id: str,
        generation: str | None,
        *,
        arrival: JSON | None = None,
        release: str | None = None,
        verify: bool = False,
        read: ScheduleRecord | None = None,
        counted: dict[str, int] | None = None,
        known: Mapping[str, RunRecord] | None = None,
        deferred: JSON | None = None,
        firing: JSON | None = None,
    ) -> tuple[str, ScheduleRecord | None]:
        """One conditional write of a schedule's overlap ledger: `release` leaves what counts as
        running, `arrival` joins the waiting runs, and the overlap policy decides what starts,
        waits or is skipped; then the other runs concerned are started (their run message),
        skipped, canceled or terminated. Answers what became of `arrival` — `start`, `started`
        (an earlier call let it start: a redelivery), `buffer`, `overlap` or `buffer_full`
        (skipped), `gone` (no such schedule), or `none` without an arrival — and the schedule as
        written (or read). `deferred`: the arrival is a scheduled firing that may be claimed by
        this write alone (`_deferral`): its entry keeps what its record will be made of — and
        says `late` when the ledger claimed a firing of the same schedule at or after its nominal
        time before (`deferred_hw`): a late or repeated copy, whose run may be recorded and
        gone from the ledger already (`_fire` looks). `firing`: the arrival is this scheduled
        firing's message, and `read` may be an eventually consistent read: a later try (a strong
        read) answers `paused` or `stale` when the schedule now stops it, and a decision that
        writes nothing is taken on a strong read only."""
        strong = read is None
        for _ in range(LEDGER_TRIES):
            now = self._clock.now()
            try:
                # The caller's fresh read serves the first try (the write is conditional on its
                # version: a stale one only costs a retry); later tries read again.
                rec, read = read or self._schedules.get(schedule_id), None
            except NotFound:
                return "gone", None
            if rec.generation != generation:
                return "gone", None
            if firing is not None and strong and _stops(rec, firing):
                stale = rec.doc.get("config_version", 1) != firing.get("config_version", 1)
                return ("stale" if stale else "paused"), rec
            doc = rec.doc
            flight = doc.get("flight") or {}
            running: list[JSON] = list(flight.get("running", []))
            waiting: list[JSON] = list(flight.get("buffer", []))
            if arrival is not None:  # decided before (a redelivery): redo what that implies
                if any(e["run_id"] == arrival["run_id"] for e in running):
                    # `started`, not `start`: a write let it start before, whatever became of
                    # that write's answer (a claim alone counted its action then; otherwise the
                    # run's creator, or its claim from the buffer, counts it)
                    return "started", rec
                if any(e["run_id"] == arrival["run_id"] for e in waiting):
                    return "buffer", rec
            if release is not None:
                if arrival is None and not verify and _lazy_release(rec, waiting, flight):
                    return "none", rec
                running = [e for e in running if e["run_id"] != release]
            policy = str(doc["policies"]["overlap"])
            cap = doc["policies"].get("max_concurrency")
            queue = waiting + ([arrival] if arrival is not None else [])
            decision = decide(queue, len(running), policy, cap)
            resend: list[str] = []
            if running and (verify or decision.blocked):
                # Before anything waits for them, make sure the runs in the ledger still run
                # (the caller's runs serve the first try only, as its schedule read does).
                # every policy but `skip` may leave the arrival waiting in the ledger
                may_wait = arrival is not None and (arrival.get("overlap") or policy) != "skip"
                running, resend = self._verify(running, now, known or {}, rec, may_wait=may_wait)
                decision = decide(queue, len(running), policy, cap)
            if decision.terminate:
                # Terminated at once — before the write, so the ledger never forgets a run that
                # still runs — and the newest waiting run starts at once.
                for e in running:
                    self._stop(e["run_id"], RunStatus.terminated.value, TERMINATE_REASON)
                running = []
                decision = decide(queue, 0, policy, cap)
            started = [
                {"run_id": e["run_id"], "since": fmt(now)} for e in decision.start if _tracked(e, policy, cap)
            ]
            new_doc = dict(doc)
            claimed_alone = False  # the arrival starts, claimed by this write alone
            if deferred is not None and arrival is not None:
                for e in started:
                    if e["run_id"] == arrival["run_id"]:
                        high = doc.get("deferred_hw")
                        late = high is not None and parse(deferred["n"]) <= parse(high)
                        e["d"] = {k: v for k, v in deferred.items() if k != "n"} | (
                            {"late": True} if late else {}
                        )
                        if not late:
                            new_doc["deferred_hw"] = deferred["n"]
                        claimed_alone = True
            new_flight: JSON = {"running": running + started, "buffer": decision.buffer}
            if new_flight["running"] or new_flight["buffer"]:
                # The watchdog is for what nobody else would notice: a run left waiting in the
                # buffer, a self-deleting schedule's completion. A stale running entry alone is
                # verified by the next arrival — and a watchdog time before the cursor would move
                # the schedule in the due index (an index delete and put) on every firing.
                if new_flight["buffer"] or flight.get("check_at") or _deletes_itself(doc):
                    new_flight["check_at"] = flight.get("check_at") or fmt(now + SETTLE_AFTER)
                new_doc["flight"] = new_flight
            else:
                new_doc.pop("flight", None)
            # `counted`: counters the caller wants added, in this write, when it claims the
            # arrival alone (one write instead of two; the record is then sure to be written).
            extra = counted if counted and claimed_alone else None
            if new_doc == doc and firing is not None and not strong:
                strong = True  # nothing to write: no version check, so decide on a strong read
                continue
            if new_doc != doc:
                try:
                    record = schedule_record(rec, new_doc, schedule_cursor(rec))
                    if extra:
                        rec = self._schedules.update(record, expected_version=rec.version, counters=extra)
                        extra.clear()  # done: the caller adds nothing itself
                    else:
                        rec = self._schedules.update(record, expected_version=rec.version)
                except Conflict:
                    known = None  # the runs may have moved on too: read them again
                    strong = True
                    continue
            self._carry_out(rec, decision, arrival, running, resend)
            if arrival is None:
                return "none", rec
            return _verdict(decision, arrival["run_id"]), rec
        raise Conflict(f"the overlap ledger of schedule {schedule_id} kept changing", current=None)

    def _carry_out(
        self,
        rec: ScheduleRecord,
        decision: Admission,
        arrival: JSON | None,
        running: list[JSON],
        resend: list[str],
    ) -> None:
        """What a ledger decision means for the other runs (the arrival's caller does its own)."""
        own = arrival["run_id"] if arrival is not None else None
        starts = [run_message(e["run_id"], 1) for e in decision.start if e["run_id"] != own]
        starts += [run_message(run_id, 1) for run_id in resend]
        if starts:
            self._queue.send(starts)
        for entry, reason in decision.skipped:
            if entry["run_id"] != own:
                self._skip_waiting(entry["run_id"], reason)
        if decision.cancel:
            for e in running:
                if not self._stop(e["run_id"], RunStatus.canceled.value, CANCEL_REASON):
                    # It had no attempt open (pending between attempts): it closed at once.
                    self._ledger(rec.schedule_id, rec.generation, release=e["run_id"])

    def _verify(
        self,
        running: list[JSON],
        now: datetime,
        known: Mapping[str, RunRecord],
        sched: ScheduleRecord | None = None,
        *,
        may_wait: bool = False,
    ) -> tuple[list[JSON], list[str]]:
        """The ledger's running entries whose runs still count as running, and those of them that
        were started from the buffer but are still waiting for their run message (sent again:
        a closer may have died before sending it; a duplicate is claimed once). `known`: runs
        the caller read just before (consistently), not read again — a run seen closed stays
        closed, and one seen running is taken as running, as a read an instant later might."""
        alive: list[JSON] = []
        resend: list[str] = []
        for e in running:
            try:
                run = known.get(e["run_id"]) or self._runs.get(e["run_id"])
                if run is known.get(e["run_id"]) and counts_as_running(run, now):
                    # the caller's page may be eventually consistent: a closed run is closed for
                    # good, but one that looks running is read again before anything waits on it
                    run = self._runs.get(e["run_id"])
            except NotFound:
                if e.get("d") is not None:
                    # Claimed by the ledger write alone: running until its lease ends; then
                    # recorded (as running, its lease over) for the sweep to close as lost. An
                    # arrival that may wait for its place records it first: its close then
                    # finds the record and looks at the ledger (`_closed_last_attempt`).
                    if (may_wait or parse(e["d"]["until"]) <= now) and sched is not None:
                        self.materialize_entry(sched, e)
                    alive.append(e)
                elif parse(e["since"]) > now - UNWRITTEN_GRACE:
                    alive.append(e)  # its worker is between the ledger write and the run's
                continue
            if counts_as_running(run, now):
                alive.append(e)
                if run.status == RunStatus.pending.value and run.doc.get("buffered"):
                    resend.append(run.run_id)
        return alive, resend

    def _skip_waiting(self, run_id: str, reason: str) -> None:
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return  # not written yet: its own worker finds it gone from the ledger
        self._mark_skipped(run, reason)

    def _release(self, run: RunRecord, *, lazy: bool = False) -> None:
        """A run of a schedule closed its last attempt: it no longer counts as running; the
        oldest waiting run may start, and a schedule that deletes itself may be done. The close
        listeners hear of it first (an event run's stream moves on). `lazy`: known to need no
        ledger write (`_closed_last_attempt`), so the ledger is not read either."""
        for listener in self._close_listeners:
            try:
                listener(run)
            except Exception:  # a listener's failure never fails the run's close
                logging.getLogger("gnomon.execute").exception("close listener failed for %s", run.run_id)
        if run.schedule_id is None or lazy:
            return
        _, sched = self._ledger(run.schedule_id, run.doc.get("generation"), release=run.run_id)
        if sched is not None:
            self._complete_if_done(sched)

    def _release_if_closed(self, run_id: str) -> None:
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return
        if not counts_as_running(run, self._clock.now()):
            self._release(run)

    def _settle(self, schedule_id: str, generation: str) -> Handled:
        """The ledger's watchdog (sent by the ticker): verify what counts as running, start what
        may start, and delete a schedule that is done."""
        _, sched = self._ledger(schedule_id, generation, verify=True)
        if sched is not None:
            self._complete_if_done(sched)
        return Handled("settled")

    def _nudge(self, run_id: str) -> Handled:
        """The sweep's look at a buffered run (is its schedule still there? did the ledger start
        it?) or at a closed run still in the active index (a canceled run whose attempt's worker
        is gone): never a start the ledger did not decide."""
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return Handled("gone", run_id)
        if run.status == RunStatus.pending.value:
            if not run.doc.get("buffered"):
                return Handled("duplicate", run_id, run.status)
            return self._admit(run, int(run.doc.get("next_attempt", 1)))
        if run.doc.get("lease") and not counts_as_running(run, self._clock.now()):
            # A canceled run whose attempt's worker is gone: that attempt closes as lost.
            lost = Outcome(status="timed_out", error=dict(LOST_ATTEMPT))
            return self._keep_late_finish(run, lost)
        if not counts_as_running(run, self._clock.now()):
            self._release(run)
        return Handled("settled", run_id, run.status)

    def _stop(self, run_id: str, status: str, reason: str) -> bool:
        """Cancel or terminate a run for the overlap policy (the run API's own cancel and
        terminate); answers whether it still counts as running (a canceled attempt still out)."""
        from gnomon.services import runs as run_api  # it imports this module's users: bind late

        now = self._clock.now()
        stop = run_api.cancel_run if status == RunStatus.canceled.value else run_api.terminate_run
        with contextlib.suppress(AlreadyClosed, Conflict, NotFound):  # closed meanwhile, or gone
            try:
                stop(self._runs, run_id, reason, now, retention_days=self._retention)
            except NotFound:
                # a run claimed by the ledger alone is recorded, then stopped as any other
                if self.materialize(run_id) is None:
                    raise
                stop(self._runs, run_id, reason, now, retention_days=self._retention)
        try:
            return counts_as_running(self._runs.get(run_id), now)
        except NotFound:
            return False

    def _complete_if_done(self, sched: ScheduleRecord) -> None:
        """action_after_completion `delete`: once nothing is left to fire or run, delete."""
        if sched.doc["policies"].get("action_after_completion") != "delete":
            return
        if completion_ready(sched, self._runs, self._clock.now()):
            with contextlib.suppress(NotFound, Conflict):  # changed meanwhile: the ticker looks again
                self._schedules.delete(sched.schedule_id, expected_version=sched.version)

    def _pause_on_failure(self, run: RunRecord) -> None:
        """pause_on_failure: a run of the schedule ended failed or timed_out after its last
        attempt, so the schedule pauses — before its next firing — with a note naming the run."""
        if run.schedule_id is None:
            return
        for _ in range(10):
            try:
                rec = self._schedules.get(run.schedule_id)
            except NotFound:
                return
            state = rec.doc["state"]
            if (
                rec.generation != run.doc.get("generation")
                or not rec.doc["policies"].get("pause_on_failure")
                or state.get("paused")
            ):
                return
            if run.status == RunStatus.timed_out.value:
                note = f"paused due to run timeout: {run.run_id}"
            else:
                message = (run.doc.get("error") or {}).get("message")
                note = f"paused due to run failure: {run.run_id}" + (f": {message}" if message else "")
            now = self._clock.now()
            new_state = {
                **state,
                "paused": True,
                "note": note[:4096],
                "paused_until": None,
                "paused_at": fmt(now),
            }
            doc = {**rec.doc, "state": new_state}
            try:
                self._schedules.update(
                    schedule_record(rec, doc, schedule_cursor(rec)), expected_version=rec.version
                )
            except Conflict:
                continue
            details = {**_failure_details(run), "note": new_state["note"]}
            self._notify_definition(run.definition, "paused_on_failure", details)
            return

    # -- invoking and closing -------------------------------------------------------------------

    def _invoke(
        self,
        run: RunRecord,
        definition: JSON,
        sched_doc: JSON | None,
        *,
        recent: list[RunRecord] | None = None,
        unrecorded: ScheduleRecord | None = None,
    ) -> Handled:
        doc = run.doc
        inv = Invocation(
            run_id=run.run_id,
            attempt=int(doc["attempt"]),
            definition=run.definition,
            schedule_id=run.schedule_id,
            nominal_time=parse(doc["nominal_time"]),
            scheduled_time=parse(doc["scheduled_time"]),
            previous_nominal_time=parse(doc["previous_nominal_time"])
            if doc.get("previous_nominal_time")
            else None,
            last_success_time=self._last_success(run, recent),
            input=doc.get("input"),
            target=definition["target"],
            signing_secret=str(definition.get("signing_secret", "")),
            callback_token=str(doc["callback_token"]),
            timeout_seconds=float(_timeout(definition, sched_doc)),
        )
        if definition["target"].get("type") == "task":
            return self._start_task(run, inv, definition, sched_doc)
        try:
            outcome = self._invoker.invoke(inv)
        except Exception as exc:  # an invoker bug must still close the attempt
            outcome = Outcome(status="failed", error={"code": "internal_error", "message": repr(exc)})
        return self._close(run, outcome, definition, sched_doc, unrecorded=unrecorded)

    def _start_task(
        self, run: RunRecord, inv: Invocation, definition: JSON, sched_doc: JSON | None
    ) -> Handled:
        """A `task` target's attempt: create its task (once: the id derives from the run and the
        attempt) and leave the attempt open — `running` until the task completes or fails
        (`task_closed`) or the attempt's deadline passes. One task attempt per run attempt: the
        run's retry policy makes the next attempt, with a new task."""
        from gnomon.adapters.targets import firing_body  # pure; keeps the SDKs out of this import

        target = definition["target"]
        task_id = task_id_for(run.run_id, inv.attempt)
        try:
            with contextlib.suppress(AlreadyExists):  # a redelivery: created before
                self._task_service().create(
                    str(target["topic"]),
                    data=firing_body(inv),
                    sub_topic=target.get("sub_topic"),
                    max_attempts=1,
                    task_id=task_id,
                    run_id=run.run_id,
                )
        except Exception as exc:  # the task store failed: the attempt fails (and may be retried)
            error = {"code": "internal_error", "message": f"could not create the task: {exc!r}"}
            return self._close(run, Outcome(status="failed", error=error), definition, sched_doc)
        return self._close(run, Outcome(status="accepted"), definition, sched_doc, extra={"task_id": task_id})

    # -- tasks of `task` targets (called by the task use cases) ---------------------------------

    def task_closed(self, task: JSON) -> Handled | None:
        """A task of a `task` target completed or failed: close the run's attempt it belongs to
        (the run's retry policy decides what follows). A task of an attempt already closed, or a
        repeated call, changes nothing; a run canceled or terminated meanwhile keeps its status
        and records the outcome in its history."""
        run_id = task.get("run_id")
        if not run_id or task.get("status") not in ("completed", "failed"):
            return None
        try:
            run = self._runs.get(str(run_id))
        except NotFound:
            return None
        if task.get("task_id") != task_id_for(run.run_id, int(run.doc.get("attempt", 0))):
            return Handled("stale", run.run_id, run.status)
        outcome = _task_outcome(task)
        if run.status == RunStatus.running.value:
            return self.finish(run, outcome)
        if run.status in (RunStatus.canceled.value, RunStatus.terminated.value) and run.doc.get("lease"):
            from gnomon.services.runs import late_finish_recorded

            if not late_finish_recorded(run.doc):
                return self._keep_late_finish(run, outcome)
        return Handled("duplicate", run.run_id, run.status)

    def task_details(self, task: JSON) -> None:
        """A heartbeat of a `task` target's task recorded `details`: they become the run's
        `details` (what `POST /v1/runs/{id}/query` answers) while that attempt is open."""
        run_id = task.get("run_id")
        if not run_id:
            return
        for _ in range(LEDGER_TRIES):
            try:
                run = self._runs.get(str(run_id))
            except NotFound:
                return
            if run.status != RunStatus.running.value or task.get("task_id") != task_id_for(
                run.run_id, int(run.doc.get("attempt", 0))
            ):
                return
            if run.doc.get("details") == task.get("details"):
                return
            doc = {**run.doc, "details": task.get("details")}
            try:
                self._runs.update(_replace(run, doc, run.status, run.active_at), expected_version=run.version)
                return
            except Conflict:
                continue

    def withdraw_task(self, run: RunRecord) -> None:
        """A `task` target's run whose attempt ended otherwise (canceled, terminated, timed
        out): that attempt's task is withdrawn — no longer reservable, its worker refused from
        its next call on; what the worker reports late stays in the run's history only."""
        task_id = run.doc.get("task_id")
        if not task_id:
            return
        with contextlib.suppress(NotFound):
            self._task_service().withdraw(str(task_id), f"the run's attempt ended: {run.status}")

    def signal_task(self, run: RunRecord, signal: JSON) -> None:
        """A signal to a running `task` target's run goes into its task's inbox at once (the
        worker sees it with its next extend-lease answer). A task already closed takes none."""
        task_id = run.doc.get("task_id")
        if not task_id or run.status != RunStatus.running.value:
            return
        if task_id != task_id_for(run.run_id, int(run.doc.get("attempt", 0))):
            return
        with contextlib.suppress(NotFound, AlreadyDone):
            self._task_service().signal(str(task_id), signal)

    def run_inbox(self, run_id: str) -> list[JSON]:
        """The signals of a run (its `inbox`), for the worker of its task; none for a closed or
        unknown run."""
        try:
            run = self._runs.get(run_id)
        except NotFound:
            return []
        if run.status in FINAL:
            return []
        return list(run.doc.get("inbox") or [])

    def _last_success(self, run: RunRecord, first: list[RunRecord] | None = None) -> datetime | None:
        """The nominal time of the schedule's newest completed run but this one (`first`: the
        schedule's newest RECENT_PAGE runs when the caller read them already)."""
        if run.schedule_id is None:
            return None
        # Usually the previous firing's run: a page of 3 (one read unit) before a page of 20.
        for limit in (RECENT_PAGE, 20):
            if first is not None and limit == RECENT_PAGE:
                recent = first
            else:
                recent = self._runs.recent(run.schedule_id, limit=limit)
            for r in recent:
                if r.status == RunStatus.completed.value and r.run_id != run.run_id:
                    return parse(r.doc["nominal_time"])
            if len(recent) < limit:
                return None
        return None

    def _close(
        self,
        run: RunRecord,
        outcome: Outcome,
        definition: JSON,
        sched_doc: JSON | None,
        extra: JSON | None = None,
        *,
        unrecorded: ScheduleRecord | None = None,
    ) -> Handled:
        """Record the attempt's outcome with a write conditioned on the version that holds the
        lease (`extra`: fields the same write adds to the run's document). `unrecorded`: the
        run is not written yet (`_fire_deferred`; the schedule as its claim wrote it): this
        write creates it — unless someone recorded it meanwhile (`materialize`), whose record
        is then updated as usual."""
        retry = _retry(definition, sched_doc)
        overruled: str | None = None  # the reason of a skip this write replaces
        for _ in range(6):
            now = self._clock.now()
            doc = {**run.doc, **(extra or {})}
            attempt = int(doc["attempt"])
            if run.status != RunStatus.running.value or int(doc.get("lease_attempt", attempt)) != attempt:
                return Handled("duplicate", run.run_id, run.status)
            status, active_at, delay = self._next_state(doc, outcome, retry, now)
            _end_attempt(doc, outcome, status, now)
            if status != RunStatus.running.value:
                doc.pop("lease", None)
            new = _replace(run, doc, status, active_at)
            if status in FINAL:
                new = _closed(new, now, _retention_days(definition, self._retention))
            try:
                if unrecorded is not None:
                    saved = self._runs.create(new)
                else:
                    saved = self._runs.update(new, expected_version=run.version)
            except AlreadyExists:
                unrecorded = None
                existing = self._runs.get(run.run_id)
                if existing.status == RunStatus.skipped.value and not existing.doc.get("attempts"):
                    # Another copy of this firing decided on a skip (while an earlier run still
                    # ran) and recorded it after this call had claimed the firing and called its
                    # target: the firing ran, so its record says so — over the skip, whose
                    # counter is taken back.
                    overruled = str(existing.doc.get("reason"))
                    run = replace(run, version=existing.version)
                    continue
                run = existing
                if run.status in (RunStatus.canceled.value, RunStatus.terminated.value):
                    return self._keep_late_finish(run, outcome)
                continue
            except Conflict:
                run = self._runs.get(run.run_id)
                if run.status in (RunStatus.canceled.value, RunStatus.terminated.value):
                    return self._keep_late_finish(run, outcome)
                continue
            if overruled is not None and saved.schedule_id is not None:
                counter = SKIP_COUNTERS.get(overruled, "dropped_stale")
                self._schedules.add_counters(saved.schedule_id, {counter: -1})
            if status == RunStatus.pending.value and delay is not None and delay <= MAX_DELAY:
                self._queue.send([run_message(saved.run_id, attempt + 1, delay)])
                return Handled("retry_scheduled", saved.run_id, status)
            if status in FINAL:
                self._closed_last_attempt(saved, unread=unrecorded is not None and _quiet_claim(unrecorded))
            return Handled("ran", saved.run_id, status)
        raise Conflict(f"could not record the outcome of {run.run_id}", current=None)

    def _next_state(
        self, doc: JSON, outcome: Outcome, retry: JSON, now: datetime
    ) -> tuple[str, datetime | None, float | None]:
        attempt = int(doc["attempt"])
        if outcome.status == "completed":
            return RunStatus.completed.value, None, None
        if outcome.status == "accepted":
            lease = doc.get("lease") or {}
            expires = parse(lease["expires_at"]) if lease else now
            return RunStatus.running.value, expires, None
        delay = next_attempt_delay(outcome, retry, attempt)
        if delay is not None:
            doc["next_attempt"] = attempt + 1
            doc["next_attempt_at"] = fmt(now + timedelta(seconds=delay))
            # The queued message starts it; the sweep only steps in if that message is lost.
            return RunStatus.pending.value, now + timedelta(seconds=delay) + RETRY_GRACE, delay
        return (
            (RunStatus.timed_out.value if outcome.status == "timed_out" else RunStatus.failed.value),
            None,
            None,
        )

    def _keep_late_finish(self, run: RunRecord, outcome: Outcome) -> Handled:
        """A canceled or terminated run keeps its status; the late outcome goes into history.
        A final outcome closes its attempt, so it no longer counts as running (overlap
        cancel_other starts the waiting run here)."""
        from gnomon.services import runs as run_api  # it imports this module's users: bind late

        for _ in range(5):
            doc = run_api.record_late_finish(
                run.doc, outcome.status, self._clock.now(), result=outcome.result, error=outcome.error
            )
            active_at = run.active_at if doc.get("lease") else None
            try:
                run = self._runs.update(
                    _replace(run, doc, run.status, active_at), expected_version=run.version
                )
                break
            except Conflict:
                run = self._runs.get(run.run_id)
        self._release_if_closed(run.run_id)
        return Handled("ran", run.run_id, run.status)

    def _close_now(self, run: RunRecord, status: str, error: JSON) -> Handled:
        now = self._clock.now()
        doc = {**run.doc, "error": error}
        doc.pop("buffered", None)
        new = _closed(_replace(run, doc, status, None), now, self._retention)
        try:
            saved = self._runs.update(new, expected_version=run.version)
        except Conflict:
            return Handled("duplicate", run.run_id)
        self._closed_last_attempt(saved)
        return Handled("ran", run.run_id, status)

    def _closed_last_attempt(self, run: RunRecord, *, unread: bool = False) -> None:
        """After a run's last attempt closed: pause_on_failure first (so a buffered firing the
        release would start meets a paused schedule), then leave the overlap ledger. `unread`:
        a firing claimed by its ledger write alone whose record nobody asked for before this
        close wrote it, and whose claim left the ledger as `_quiet_claim` says — nothing can
        wait for its place (whoever would wait behind it records it first), so it stays in the
        ledger without a look at it (a read unit), as a lazy release leaves it."""
        failed = run.status in (RunStatus.failed.value, RunStatus.timed_out.value)
        if failed:
            self._notify_definition(run.definition, "failed", _failure_details(run))
            self._pause_on_failure(run)
        self._release(run, lazy=unread and not failed)


# -- run document helpers ---------------------------------------------------------------------


def _failure_details(run: RunRecord) -> JSON:
    """What a `failed` or `paused_on_failure` notification says about the run."""
    return {
        "run_id": run.run_id,
        "schedule_id": run.schedule_id,
        "status": run.status,
        "attempt": run.doc.get("attempt"),
        "nominal_time": run.doc.get("nominal_time"),
        "error": run.doc.get("error"),
    }


def _timeout(definition: JSON, sched_doc: JSON | None) -> int:
    override = (sched_doc or {}).get("policies", {}).get("timeout_seconds")
    value = override or definition.get("timeout_seconds")
    if (definition.get("target") or {}).get("type") == "task":
        return min(int(value or TASK_TIMEOUT_MAX), TASK_TIMEOUT_MAX)
    return int(value or 60)


def _task_outcome(task: JSON) -> Outcome:
    """The attempt outcome a closed task stands for: its result, or its error as a run error
    (`{"code", "message", "details"}`; an error of another shape becomes the details)."""
    if task.get("status") == "completed":
        return Outcome(status="completed", result=task.get("result"))
    raw = task.get("error")
    if isinstance(raw, dict) and isinstance(raw.get("code"), str):
        error = {"code": raw["code"], "message": str(raw.get("message") or ""), "details": raw.get("details")}
    else:
        error = {"code": "task_failed", "message": "the task failed", "details": raw}
    return Outcome(status="failed", error=error)


def _retry(definition: JSON, sched_doc: JSON | None) -> JSON:
    override = (sched_doc or {}).get("policies", {}).get("retry")
    return dict(override or definition.get("retry") or {})


def history_off(definition: JSON) -> bool:
    """Whether a definition's firings are delivered without a per-firing record."""
    return bool((definition.get("history") or {}).get("mode") == "off")


def _retention_days(definition: JSON, default: int) -> int:
    return int((definition.get("history") or {}).get("retention_days", default))


def _begin_attempt(
    doc: JSON,
    attempt: int,
    owner: str,
    now: datetime,
    timeout: int,
    *,
    token: str | None = None,
    expires: str | None = None,
) -> None:
    if doc["status"] != RunStatus.running.value:
        check_transition(doc["status"], RunStatus.running.value)
    doc["status"] = RunStatus.running.value
    doc["attempt"] = attempt
    doc["lease_attempt"] = attempt
    doc.pop("next_attempt", None)
    doc.pop("next_attempt_at", None)
    doc["started_at"] = doc.get("started_at") or fmt(now)
    doc["callback_token"] = token or secrets.token_urlsafe(24)
    doc["lease"] = {
        "owner": owner,
        "expires_at": expires or fmt(now + timedelta(seconds=timeout) + LEASE_GRACE),
    }
    doc["attempts"] = [
        *doc.get("attempts", []),
        {
            "attempt": attempt,
            "status": RunStatus.running.value,
            "started_at": fmt(now),
            "closed_at": None,
            "duration_ms": None,
            "result": None,
            "error": None,
        },
    ]
    doc["events"] = [
        *doc.get("events", []),
        {"time": fmt(now), "type": "attempt_started", "details": {"attempt": attempt}},
    ]


def _end_attempt(doc: JSON, outcome: Outcome, status: str, now: datetime) -> None:
    attempts = [dict(a) for a in doc.get("attempts", [])]
    current = attempts[-1] if attempts else {"attempt": doc["attempt"], "started_at": fmt(now)}
    result, result_cut = cap_json(outcome.result)
    error, error_cut = cap_json(outcome.error) if outcome.error is not None else (None, False)
    if outcome.status != "accepted":
        started = parse(current["started_at"])
        current.update(
            status=outcome.status if outcome.status in ("completed", "failed", "timed_out") else "failed",
            closed_at=fmt(now),
            duration_ms=int((now - started).total_seconds() * 1000),
            result=result,
            error=cap_json(outcome.error, HISTORY_ERROR_LIMIT)[0] if outcome.error is not None else None,
        )
    if attempts:
        attempts[-1] = current
    doc["attempts"] = attempts
    doc["result"], doc["result_truncated"] = result, result_cut
    doc["error"], doc["error_truncated"] = error, error_cut
    doc["events"] = [
        *doc.get("events", []),
        {
            "time": fmt(now),
            "type": f"attempt_{outcome.status}",
            "details": _summary(outcome) | {"attempt": doc["attempt"]},
        },
    ]
    if status != RunStatus.running.value:
        check_transition(RunStatus.running.value, status)


def _summary(outcome: Outcome) -> JSON:
    err = outcome.error or {}
    return {"status": outcome.status, "error_code": err.get("code")}


def _replace(run: RunRecord, doc: JSON, status: str, active_at: datetime | None) -> RunRecord:
    doc = {**doc, "status": status}
    return RunRecord(
        run_id=run.run_id,
        doc=doc,
        schedule_id=run.schedule_id,
        definition=run.definition,
        nominal_time=run.nominal_time,
        status=status,
        active_at=active_at,
        expires_at=run.expires_at,
        version=run.version,
    )


def _closed(run: RunRecord, now: datetime, retention_days: int) -> RunRecord:
    doc = dict(run.doc)
    doc["closed_at"] = fmt(now)
    if doc.get("started_at"):
        doc["duration_ms"] = int((now - parse(doc["started_at"])).total_seconds() * 1000)
    doc.pop("lease", None)
    return RunRecord(
        run_id=run.run_id,
        doc=doc,
        schedule_id=run.schedule_id,
        definition=run.definition,
        nominal_time=run.nominal_time,
        status=run.status,
        active_at=None,
        expires_at=now + timedelta(days=retention_days),
        version=run.version,
    )


def _deletes_itself(doc: JSON) -> bool:
    return bool(doc["policies"].get("action_after_completion") == "delete")


def _deferral(definition: CatalogRecord, body: JSON, owner: str, lease_until: datetime) -> JSON | None:
    """What a firing's ledger entry keeps when its ledger write alone claims it (`_ledger`'s
    `deferred`): enough to write its record as it was at the claim (`deferred_run`). Not for a
    `task` target (its attempt is a task that needs the run) nor a message without its
    scheduled time."""
    if definition.doc["target"].get("type") == "task" or not body.get("scheduled_time"):
        return None
    return {
        "n": body["nominal_time"],
        "sch": body["scheduled_time"],
        "prev": body.get("previous_nominal_time"),
        "v": definition.version,
        "own": owner,
        "tok": secrets.token_urlsafe(24),
        "until": fmt(lease_until),
    }


def _stops(sched: ScheduleRecord, body: JSON) -> bool:
    """Whether a schedule as read stops its firing `body`: reconfigured since it was planned,
    or paused."""
    return bool(
        sched.doc.get("config_version", 1) != body.get("config_version", 1)
        or sched.doc["state"].get("paused")
    )


def _quiet_claim(rec: ScheduleRecord) -> bool:
    """Whether the ledger, as a deferred firing's claim wrote it, lets its close skip the
    ledger (`_closed_last_attempt`): a release of it would be lazy (`_lazy_release`)."""
    flight = rec.doc.get("flight") or {}
    return _lazy_release(rec, list(flight.get("buffer", [])), flight)


def _running_entry(rec: ScheduleRecord | None, run_id: str) -> JSON | None:
    if rec is None:
        return None
    for e in (rec.doc.get("flight") or {}).get("running", []):
        if e.get("run_id") == run_id:
            return dict(e)
    return None


def deferred_run(sched: ScheduleRecord, entry: JSON) -> RunRecord:
    """The record of a firing claimed by its ledger write alone, as it was at the claim: its
    first attempt running under the entry's lease, with the callback token its target got."""
    d = entry["d"]
    parsed = parse_scheduled_run_id(entry["run_id"])
    assert parsed is not None
    sid, gen, nominal = parsed
    since = parse(entry["since"])
    doc = new_run_doc(
        run_id=entry["run_id"],
        definition=sched.definition,
        definition_version=d.get("v"),
        schedule_id=sid,
        generation=gen,
        nominal=nominal,
        scheduled=parse(d["sch"]),
        trigger="schedule",
        input_=sched.doc.get("input"),
        memo=sched.doc.get("memo", {}),
    )
    doc["previous_nominal_time"] = d.get("prev")
    doc["events"].append({"time": fmt(since), "type": "scheduled", "details": {"actual_time": fmt(since)}})
    _begin_attempt(doc, 1, str(d.get("own", "worker")), since, 0, token=d.get("tok"), expires=d["until"])
    return RunRecord(
        run_id=entry["run_id"],
        doc=doc,
        schedule_id=sid,
        definition=sched.definition,
        nominal_time=nominal,
        status=RunStatus.running.value,
        active_at=None,
    )


def _lazy_release(rec: ScheduleRecord, waiting: list[JSON], flight: JSON) -> bool:
    """Whether a closed run may stay in the ledger's `running` list instead of a write to take
    it out (one write unit per firing, the ledger's second): only when nothing waits for its
    place, no watchdog is set, the schedule does not delete itself and still has firings to
    come. The next arrival that finds the ledger full looks at the runs it holds (`_verify`)
    and drops the closed ones in its own write; describe shows only those still running."""
    return (
        not waiting
        and not flight.get("check_at")
        and not _deletes_itself(rec.doc)
        and schedule_cursor(rec) is not None
    )


def _verdict(decision: Admission, run_id: str) -> str:
    if any(e["run_id"] == run_id for e in decision.start):
        return "start"
    if any(e["run_id"] == run_id for e in decision.buffer):
        return "buffer"
    return next(reason for e, reason in decision.skipped if e["run_id"] == run_id)


def _count_started(info: JSON, backfill_id: str) -> JSON:
    """`info` with one more run of backfill `backfill_id` started (never beyond its total)."""
    records = [dict(b) for b in info.get("backfills", [])]
    for b in records:
        if b.get("backfill_id") == backfill_id and int(b["started"]) < int(b["total"]):
            b["started"] = int(b["started"]) + 1
    return {**info, "backfills": records}
