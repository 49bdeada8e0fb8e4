"""The ticker: find due schedules through the sharded due index, enqueue their firings within
the look-ahead horizon (each with the delay that lands it on its second), advance each schedule
past the horizon with one version-conditioned write, and sweep runs whose lease expired.

Why duplicates are harmless here: every firing's run id is deterministic and the worker claims
it with a conditional write. Two tickers racing, or a ticker dying between enqueue and advance,
only enqueue a firing twice; it still runs once.

Where a schedule sits in the due index (`next_fire_at`) is the earliest instant the ticker has
work for it (`due_at`): its next firing — the planning cursor, kept in the document as `cursor`
so that a pause does not lose it — or the end of a `pause … until`, runs to start at once
(`kick`: trigger_immediately, the head of a backfill), the overlap ledger's watchdog
(`flight.check_at`, see `gnomon.services.execute`) and the completion check of a schedule
that deletes itself (`finish_at`).

A schedule firing once every period that divides a day, at a fixed phase, is planned from the
phase index instead, once the ticker confirmed it `phased` (see "the phase index" below): its
entry there never moves and carries what planning it needs, so planning it writes and reads
nothing; its due-index entry then holds only those other instants.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gnomon.domain.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from gnomon.domain.runs import RunStatus, scheduled_run_id
from gnomon.domain.spec import CompiledSpec, Spec, compile_spec
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import (
    JSON,
    Clock,
    DueEntry,
    FiringQueue,
    OutgoingMessage,
    PhaseEntry,
    PlanLog,
    PlannedFiring,
    RunRecord,
    RunStore,
    ScheduleRecord,
    ScheduleStore,
    shard_of,
)

MAX_DELAY = 900
MAX_FIRINGS_PER_SCHEDULE = (
    1000  # per tick; the rest follow next tick (the cursor only moves past what was planned)
)
MAX_SKIPPED_RECORDED = 1000
MAX_MISSED_COUNTED = 1_000_000
MAX_PAUSED_COUNTED = 100_000  # firings missed while paused that are looked at (and counted)
PAGE = 100
SWEEP_PAGES = 20  # pages of due runs per shard and tick (each page moves what it handled out of reach)
RETRY_GRACE = timedelta(seconds=60)
# A backfilled run enters the sweep's reach this long before it is due to start; the sweep then
# enqueues it with the delay that lands it on its start (SQS delays reach 900 s).
BACKFILL_LEAD = timedelta(seconds=60)
BUFFER_WATCHDOG = timedelta(hours=1)  # how often the sweep asks after a buffered run (deleted schedules)
SETTLE_AFTER = timedelta(seconds=120)  # the overlap ledger's watchdog period (beyond the horizon)
FINISH_RECHECK = timedelta(seconds=60)  # a self-deleting schedule not yet done looks again this late
LAST_FIRING_GRACE = timedelta(seconds=MAX_DELAY + 60)  # how long a last firing may still be on its way
# A tick re-plans the schedules due within this many tick periods (or horizon / 3, if more):
# two, so a schedule is planned a whole period ahead even when one tick comes late.
REFILL_TICKS = 2
TICK_SECONDS = 60.0  # the ticker's period in AWS (template: rate(1 minute))
# A phase window reaches at most this far past its watermark (a ticker that was down catches up
# over several ticks; a window never holds more firings of one schedule than a tick plans).
PHASE_CATCHUP_SPAN = timedelta(hours=6)


@dataclass
class _Prepared:
    """A schedule's planning, between preparing it and writing it."""

    rec: ScheduleRecord
    record: ScheduleRecord
    messages: list[OutgoingMessage]
    missed: int
    missed_runs: list[RunRecord]
    skipped_paused: int


@dataclass
class _Window:
    """A phase window: the firings of one family's shard in (start, end]; `mark` the watermark
    it moves on from (None: none yet)."""

    period: int
    shard: int
    mark: datetime | None
    start: datetime
    end: datetime
    ok: bool = True


@dataclass
class TickReport:
    """What one tick did (logged, returned by the handler, read by benchmarks)."""

    due_read: int = 0
    schedules_advanced: int = 0
    firings_enqueued: int = 0
    missed: int = 0
    conflicts: int = 0
    runs_swept: int = 0
    holds_swept: int = 0  # expired worker-batch holds looked at (a worker died or a message failed)
    schedules_completed: int = 0
    complete: bool = True
    errors: list[str] = field(default_factory=list)


class Ticker:
    """Plans firings. `compile` turns a stored spec into a `CompiledSpec` (named calendars resolved)."""

    def __init__(
        self,
        schedules: ScheduleStore,
        runs: RunStore,
        queue: FiringQueue,
        clock: Clock,
        compile: Callable[[JSON], CompiledSpec],
        *,
        horizon_seconds: float = 60.0,
        tick_seconds: float = TICK_SECONDS,
        firing_quota: Callable[[str], float | None] | None = None,
        plan_log: PlanLog | None = None,
        pack_firings: bool = False,
    ) -> None:
        self._plan_log = plan_log  # what was enqueued, for /v1/upcoming (None: not recorded)
        self._pack = pack_firings  # several firings a message (the worker handler unpacks them)
        self._firing_quota = firing_quota  # a group's max_firings_per_second (None = unlimited)
        self._taken: dict[str, dict[int, int]] = {}  # per group: firings placed per epoch second
        self._quota_cache: dict[str, tuple[datetime, float | None]] = {}
        self._schedules = schedules
        self._runs = runs
        self._queue = queue
        self._clock = clock
        self._compile = compile
        self.horizon = timedelta(seconds=min(max(horizon_seconds, 1.0), MAX_DELAY))
        # A tick takes the schedules due within `lead` and plans each up to the horizon: a
        # schedule is written (and moved in the due index) once per horizon − lead of its
        # firings, not once per tick. `lead` must cover the time to the next tick (60 s in AWS,
        # `--tick-seconds` in `gnomon dev`) so nothing is planned late: two tick periods.
        # (`gnomon dev`: tick 1 s, horizon 5 s → lead 2 s, each schedule re-planned every 3–4 s
        # rather than on every tick — those bursts of schedule writes were the 20/s lateness
        # tail.)
        self.lead = min(
            self.horizon, max(timedelta(seconds=REFILL_TICKS * max(tick_seconds, 0.0)), self.horizon / 3)
        )
        self._notify: Callable[[str, str, JSON], Any] | None = None
        self._periods: set[int] = set()  # the phase index's periods known registered

    def attach_notifier(self, notify: Callable[[str, str, JSON], Any]) -> None:
        """`notify(definition, event, details)`: the `missed` notifications of a definition
        (firings that fell outside a schedule's catch-up window); it never raises."""
        self._notify = notify

    def tick(self, time_left: Callable[[], float] = lambda: math.inf, *, reserve: float = 5.0) -> TickReport:
        """One pass over every shard of the due index and the active-run index, stopping early
        (report.complete False) when fewer than `reserve` seconds are left."""
        report = TickReport()
        now = self._clock.now()
        until = now + self.lead
        # The phase windows first: an entering schedule they confirm is planned there in one
        # write, and the due index then has nothing for it.
        if not self._plan_phases(now, report, time_left, reserve):
            report.complete = False
            return report
        waiting: list[DueEntry] = []  # due entries of several shards planned as one page
        for shard in range(self._schedules.shards):
            after: DueEntry | None = None
            while True:
                if time_left() < reserve:
                    self._plan_page(waiting, now, now + self.horizon, report)
                    report.complete = False
                    return report
                entries = self._schedules.due(shard, until, limit=PAGE, after=after)
                report.due_read += len(entries)
                waiting += entries
                if len(waiting) >= PAGE:
                    self._plan_page(waiting, now, now + self.horizon, report)
                    waiting = []
                if len(entries) < PAGE:
                    break
                after = entries[-1]
        self._plan_page(waiting, now, now + self.horizon, report)
        self.sweep(now, report, time_left, reserve)
        return report

    # -- the phase index ---------------------------------------------------------------------
    #
    # A schedule firing once every period P (dividing a day) at a fixed phase — every minute,
    # hourly, daily in a zone without DST, every 90 s... — is found by its phase instead of its
    # next firing: its entry in the phase index (P and shard; phase, id) never moves, so
    # planning it writes nothing. The ticker keeps one watermark per (P, shard): every firing
    # of a `phased` schedule of that family at or before it was enqueued. Each window from the
    # watermark to now + horizon reads the entries whose phase falls in it (all of them once
    # the window spans a period), plans their firings in the window, then moves the watermark
    # with a conditional write — a window a ticker could not finish is read again (its
    # firings enqueued twice: claims make that harmless).
    #
    # A schedule enters by being written with a phase (create, update, unpause...): it is then
    # in both indexes, and the due index plans it as before (from its cursor) until a window
    # reads its phase entry; that window plans it from its cursor and marks it `phased` (one
    # write; its due-index entry goes). So an entry that becomes visible late (GSIs are
    # eventually consistent) loses nothing. A change of configuration, a pause or
    # `remaining_actions` takes it out (`schedule_record`).

    def _plan_phases(
        self, now: datetime, report: TickReport, time_left: Callable[[], float], reserve: float
    ) -> bool:
        """Plan every phase window that needs it, the entries of several windows a page at a
        time (one `send`, one plan-log write per page); then move the watermark of each window
        planned whole. False when time ran out."""
        periods = sorted(self._schedules.phase_periods())
        self._periods = set(periods)
        if not periods:
            return True
        shards = range(self._schedules.shards)
        marks = self._schedules.phase_marks(periods)
        windows: list[_Window] = []
        waiting: list[tuple[PhaseEntry, _Window]] = []
        finished = True
        for period in periods:
            span = max(self.horizon, min(PHASE_CATCHUP_SPAN, timedelta(seconds=500 * period)))
            for shard in shards:
                mark = marks.get((period, shard))
                # No watermark yet: no schedule of this family was ever confirmed `phased`.
                start = mark if mark is not None else now
                if start >= now + self.lead:
                    continue
                window = _Window(period, shard, mark, start, min(now + self.horizon, start + span))
                for low, high in phase_ranges(period, window.start, window.end):
                    after: PhaseEntry | None = None
                    while finished:
                        if time_left() < reserve:
                            finished = False
                            break
                        entries = self._schedules.phased(period, shard, low, high, limit=PAGE, after=after)
                        report.due_read += len(entries)
                        waiting += [(e, window) for e in entries]
                        if len(waiting) >= PAGE:
                            self._plan_phased_page(waiting, now, report)
                            waiting = []
                        if len(entries) < PAGE:
                            break
                        after = entries[-1]
                if not finished:
                    break
                windows.append(window)
            if not finished:
                break
        self._plan_phased_page(waiting, now, report)
        for period in periods:
            moves = {w.shard: (w.mark, w.end) for w in windows if w.period == period and w.ok}
            if moves and not self._schedules.advance_phase_marks(period, moves):
                report.conflicts += 1  # another ticker moved them: it planned the same windows
        return finished

    def _plan_phased_page(
        self, entries: list[tuple[PhaseEntry, _Window]], now: datetime, report: TickReport
    ) -> None:
        """As `_plan_page`, for a page of phase-index entries: one `send` for the page's
        firings, then the writes some schedules need. A window with a schedule whose firings
        could not be planned nor handed back to the due index is not `ok`: it is read again."""
        prepared: list[tuple[_Prepared, bool, _Window]] = []
        # A `phased` schedule is planned from its entry's plan, unread. The others (entering)
        # are read eventually consistent, in one request a page. Nothing is written on what
        # either says unconditionally: a write is conditional on the version read strongly
        # first, and the worker checks each firing against the schedule as it is then (an
        # entry or a read a second old may precede a change).
        planned_from = {e.schedule_id: r for e, w in entries if (r := _planned_record(e, w.period))}
        unread = [e.schedule_id for e, _ in entries if e.schedule_id not in planned_from]
        records = {**planned_from, **(self._schedules.get_many(unread, consistent=False) if unread else {})}
        for entry, w in entries:
            rec = records.get(entry.schedule_id)
            if rec is None:
                continue  # deleted (or not yet readable: its due-index entry plans it meanwhile)
            try:
                planned = self._prepare_phased(rec, w, now)
                if planned is not None and rec.version < 0 and (planned[1] or planned[0].missed):
                    # A write, or skipped runs to record (with the schedule's input): read it.
                    planned = self._prepare_phased(self._schedules.get(entry.schedule_id), w, now)
            except NotFound:
                continue
            except Exception as exc:  # one bad schedule must not stop the others
                report.errors.append(f"{entry.schedule_id}: {exc!r}")
                w.ok &= self._hand_back(entry.schedule_id, w.mark)
                continue
            if planned is not None:
                prepared.append((*planned, w))
        messages = [m for p, _, _ in prepared for m in p.messages]
        if messages:
            self._send_firings(messages)
            self._record_plan([p for p, _, _ in prepared], now, report)
        for prep, write, w in prepared:
            sid = prep.rec.schedule_id
            try:
                sent = self._commit(prep, report, write=write)
            except NotFound:
                continue
            except Conflict:
                report.conflicts += 1
                w.ok &= self._plan_phased_alone(sid, w, now, report)
                continue
            except Exception as exc:
                report.errors.append(f"{sid}: {exc!r}")
                w.ok &= self._hand_back(sid, w.mark)
                continue
            if write:
                report.schedules_advanced += 1
            report.firings_enqueued += sent

    def _plan_phased_alone(self, schedule_id: str, w: _Window, now: datetime, report: TickReport) -> bool:
        """A schedule whose write met a change: read and plan it again on its own."""
        for _ in range(5):
            try:
                rec = self._schedules.get(schedule_id)
                p = self._prepare_phased(rec, w, now)
                if p is None:
                    return True
                if p[0].messages:
                    self._send_firings(p[0].messages)
                    self._record_plan([p[0]], now, report)
                report.firings_enqueued += self._commit(p[0], report, write=p[1])
                return True
            except NotFound:
                return True
            except Conflict:
                report.conflicts += 1
            except Exception as exc:
                report.errors.append(f"{schedule_id}: {exc!r}")
                break
        return self._hand_back(schedule_id, w.mark)

    def _hand_back(self, schedule_id: str, mark: datetime | None) -> bool:
        """A `phased` schedule the window could not plan goes back to the due index, from the
        first firing after the watermark (what this family's windows planned before), so the
        watermark may move on without it. False if even that failed."""
        for _ in range(3):
            try:
                rec = self._schedules.get(schedule_id)
                if not is_phased(rec.doc):
                    return True  # the due index plans it from its cursor already
                doc = dict(rec.doc)
                doc.pop("phased")
                cursor = effective_cursor(rec, self._compile(doc["spec"]), mark)
                self._schedules.update(schedule_record(rec, doc, cursor), expected_version=rec.version)
                return True
            except NotFound:
                return True
            except Conflict:
                continue
            except Exception:
                logging.getLogger("gnomon.tick").warning("could not hand %s back", schedule_id, exc_info=True)
                return False
        return False

    def _prepare_phased(
        self, rec: ScheduleRecord, w: _Window, now: datetime
    ) -> tuple[_Prepared, bool] | None:
        """What a phase window means for one schedule: its firings in the window (a `phased`
        one's from the window's start, an entering one's from its cursor), and whether its
        document must be written — to confirm it `phased`, or to hand it back to the due index
        when it has no firing left or more than one tick plans. None: not this family's (any
        more)."""
        period, end = w.period, w.end
        doc = dict(rec.doc)
        cursor = schedule_cursor(rec)
        phase = phase_of(doc, cursor)
        if phase is None or phase[0] != period or rec.phase != phase or cursor is None:
            return None
        compiled = self._compile(doc["spec"])
        phased = is_phased(doc)
        first: datetime | None = cursor
        if phased:  # (without a watermark, from its cursor: a window that confirmed it set it)
            first = effective_cursor(rec, compiled, w.mark)
            if first is not None and first > cursor:
                doc["last_nominal"] = fmt(first - timedelta(seconds=period))  # the firing before, planned
        missed, missed_runs, firings = 0, list[RunRecord](), list[OutgoingMessage]()
        nxt = first
        if first is not None and first <= end:
            nxt, missed, missed_runs, firings = self._plan_firings(rec, doc, compiled, first, now, end)
        if nxt is not None and nxt <= end:
            doc.pop("phased", None)  # more than a tick plans: the due index goes on from `nxt`
            write = True
        elif nxt is None:
            note_finish(doc, None, now)  # no firing left: out of the phase index
            write = True
        else:
            doc["phased"] = phase_signature(doc, phase)
            write = not phased
        return _Prepared(rec, schedule_record(rec, doc, nxt), firings, missed, missed_runs, 0), write

    def _ensure_period(self, period: int) -> None:
        """Register a period the ticker must scan (once per container, unless it is known)."""
        if period in self._periods:
            return
        self._periods = self._schedules.phase_periods()
        if period not in self._periods:
            self._schedules.add_phase_period(period)
            self._periods.add(period)

    def plan(
        self,
        schedule_id: str,
        *,
        now: datetime | None = None,
        report: TickReport | None = None,
        finishing: bool = False,
    ) -> int:
        """Enqueue the firings of one schedule up to now + horizon (and the runs it was asked to
        start at once) and advance its cursor. Used by the tick and, right after a create,
        update, unpause or backfill, by the API. Only the tick (`finishing`) deletes a schedule
        whose `action_after_completion` is `delete`, so a create never answers a deleted
        schedule. Answers the number of firings enqueued."""
        now = now or self._clock.now()
        report = report or TickReport()
        until = now + self.horizon
        for _ in range(5):
            try:
                rec = self._schedules.get(schedule_id)
            except NotFound:
                return 0
            if rec.phase is not None and not is_phased(rec.doc):
                self._ensure_period(rec.phase[0])  # entering: the windows that confirm it are read
            if rec.next_fire_at is None or rec.next_fire_at > until:
                return 0
            try:
                sent = self._plan_record(rec, now, until, report, finishing)
            except Conflict:
                report.conflicts += 1
                continue  # a user change, a worker or another ticker moved it: re-read and plan again
            report.schedules_advanced += 1
            report.firings_enqueued += sent
            return sent
        return 0

    def _plan_record(
        self, rec: ScheduleRecord, now: datetime, until: datetime, report: TickReport, finishing: bool
    ) -> int:
        prepared = self._prepare(rec, now, until, report, finishing)
        if prepared is None:
            return 0
        # Enqueue first, then advance: dying in between only enqueues twice (deduplicated by run id).
        if prepared.messages:
            self._send_firings(prepared.messages)
            self._record_plan([prepared], now, report)
        return self._commit(prepared, report)

    def _send_firings(self, messages: list[OutgoingMessage]) -> None:
        """Send firing messages, each delayed to become visible within the second before its
        scheduled time (SQS delays are whole seconds; the worker waits out the rest). The delay
        is counted from the send, not from the tick's start: a tick's later pages (and slow
        sends) would otherwise deliver late by the time the tick had spent. With packing on, the
        firings that become visible in the same second share messages (`pack_firings`)."""
        now = self._clock.now()
        timed = [_timed(m, now) for m in messages]
        self._queue.send(pack_firings(timed) if self._pack else timed)

    def _plan_page(self, entries: list[DueEntry], now: datetime, until: datetime, report: TickReport) -> None:
        """Plan a page of due schedules with one `send` for all their messages (SendMessageBatch
        takes 10 a call: firings of different schedules share calls), then advance each. A
        schedule whose advance meets a change is planned again on its own."""
        prepared: list[_Prepared] = []
        for entry in entries:
            try:
                rec = self._schedules.get(entry.schedule_id)
                if rec.next_fire_at is None or rec.next_fire_at > until:
                    continue
                p = self._prepare(rec, now, until, report, True)
            except NotFound:
                continue
            except Exception as exc:  # one bad schedule must not stop the others
                report.errors.append(f"{entry.schedule_id}: {exc!r}")
                continue
            if p is not None:
                prepared.append(p)
        messages = [m for p in prepared for m in p.messages]
        if messages:
            self._send_firings(messages)
            self._record_plan(prepared, now, report)
        for p in prepared:
            try:
                sent = self._commit(p, report)
            except NotFound:
                continue  # deleted since it was read: its enqueued firings are dropped by the worker
            except Conflict:
                report.conflicts += 1
                with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to plan
                    self.plan(p.rec.schedule_id, now=now, report=report, finishing=True)
                continue
            except Exception as exc:
                report.errors.append(f"{p.rec.schedule_id}: {exc!r}")
                continue
            report.schedules_advanced += 1
            report.firings_enqueued += sent

    def _record_plan(self, prepared: list[_Prepared], now: datetime, report: TickReport) -> None:
        """Record the firings just sent in the plan log (one write for the page, a few items
        for large ones), before the advances: what is recorded was sent. A firing whose advance
        then fails stays recorded; readers drop it when the schedule's generation or
        config_version no longer match (as the worker does), and a re-plan records it again."""
        if self._plan_log is None:
            return
        firings = [
            PlannedFiring(
                schedule_id=p.rec.schedule_id,
                generation=str(m.body["generation"]),
                config_version=int(m.body["config_version"]),
                nominal_time=parse(m.body["nominal_time"]),
                scheduled_time=parse(m.body["scheduled_time"]),
                group=p.record.group,
                definition=p.record.definition,
            )
            for p in prepared
            for m in p.messages
            if m.body.get("kind") == "firing"
        ]
        if not firings:
            return
        try:
            self._plan_log.record(firings, now=now)
        except Exception as exc:  # the firings are on their way: only /v1/upcoming misses them
            logging.getLogger("gnomon.tick").warning("plan log not written: %r", exc)
            report.errors.append(f"plan log: {exc!r}")

    def _commit(self, p: _Prepared, report: TickReport, *, write: bool = True) -> int:
        """Advance a prepared schedule (its messages were sent) and record what it missed
        (`write` False: a `phased` schedule, whose document planning does not change)."""
        rec = p.rec
        if write:
            self._schedules.update(p.record, expected_version=rec.version)
        if p.missed:
            for run in p.missed_runs:
                with contextlib.suppress(AlreadyExists):  # recorded by an earlier tick
                    self._runs.create(run)
            self._schedules.add_counters(rec.schedule_id, {"missed_catchup_window": p.missed})
            report.missed += p.missed
            if self._notify is not None:
                details = {
                    "schedule_id": rec.schedule_id,
                    "missed": p.missed,
                    "nominal_times": [r.doc["nominal_time"] for r in p.missed_runs[:100]],
                }
                with contextlib.suppress(Exception):  # a notification never fails the tick
                    self._notify(rec.definition, "missed", details)
        if p.skipped_paused:
            self._schedules.add_counters(rec.schedule_id, {"skipped_paused": p.skipped_paused})
        return sum(1 for m in p.messages if m.body.get("kind") == "firing")

    def _prepare(
        self, rec: ScheduleRecord, now: datetime, until: datetime, report: TickReport, finishing: bool
    ) -> _Prepared | None:
        """What planning `rec` means — messages to send, the advanced record, what it missed —
        or None when nothing changes (or a finished self-deleting schedule was deleted)."""
        doc = dict(rec.doc)
        state = dict(doc["state"])
        cursor = schedule_cursor(rec)
        messages: list[OutgoingMessage] = []
        changed = False
        # Runs recorded by the API that should start at once (their run message claims them).
        kick = doc.pop("kick", None)
        if kick:
            messages += [_start_message(k["run_id"], parse(k["at"]), now) for k in kick]
            changed = True
        # The overlap ledger's watchdog: a worker verifies what counts as running and starts
        # what waits (a closer that died before starting the next buffered run is repaired so).
        flight = doc.get("flight")
        if flight and flight.get("check_at") and parse(flight["check_at"]) <= until:
            messages.append(
                OutgoingMessage(
                    body={"kind": "settle", "schedule_id": rec.schedule_id, "generation": rec.generation}
                )
            )
            doc["flight"] = {**flight, "check_at": fmt(now + self.horizon + SETTLE_AFTER)}
            changed = True
        skipped_paused = 0
        if state.get("paused"):
            until_s = state.get("paused_until")
            if until_s and parse(until_s) <= now:
                # `pause … until` reached: unpause by itself with catch_up none; the firings that
                # fell while paused are counted, as an unpause counts them.
                compiled = self._compile(doc["spec"])
                skipped_paused = len(missed_while_paused(compiled, state, cursor, now))
                state.update(paused=False, paused_until=None, note="unpaused (until reached)")
                state.pop("paused_at", None)
                doc["state"] = state
                cursor = compiled.next_after(now)
                changed = True
        missed = 0
        missed_runs: list[RunRecord] = []
        if (phase := phase_of(doc, cursor)) is not None and not is_phased(doc):
            self._ensure_period(phase[0])  # entering the phase index: its windows must be read
        if (
            not state.get("paused")
            and state.get("remaining_actions") != 0
            and cursor is not None
            and cursor <= until
            and not is_phased(doc)  # the phase index plans those
        ):
            compiled = self._compile(doc["spec"])
            cursor, missed, missed_runs, firings = self._plan_firings(rec, doc, compiled, cursor, now, until)
            messages += firings
            changed = True
        # A schedule that deletes itself once no future firing remains.
        if cursor is None and doc["policies"].get("action_after_completion") == "delete":
            if not finishing:
                if not doc.get("finish_at"):
                    doc["finish_at"] = fmt(now)  # the next tick looks
                    changed = True
            elif not changed and completion_ready(rec, self._runs, now):
                with contextlib.suppress(NotFound, Conflict):  # changed meanwhile: next tick looks again
                    self._schedules.delete(rec.schedule_id, expected_version=rec.version)
                    report.schedules_completed += 1
                return None
            elif not doc.get("finish_at") or parse(doc["finish_at"]) <= until:
                doc["finish_at"] = fmt(now + self.horizon + FINISH_RECHECK)
                changed = True
        elif doc.pop("finish_at", None) is not None:
            changed = True
        if not changed:
            return None
        return _Prepared(
            rec, schedule_record(rec, doc, cursor), messages, missed, missed_runs, skipped_paused
        )

    def _plan_firings(
        self,
        rec: ScheduleRecord,
        doc: JSON,
        compiled: CompiledSpec,
        cursor: datetime | None,
        now: datetime,
        until: datetime,
    ) -> tuple[datetime | None, int, list[RunRecord], list[OutgoingMessage]]:
        """The firings from `cursor` up to `until` (catch-up applied); updates `doc`'s
        `last_nominal` and `planned`. Answers the new cursor, the missed count, the missed runs
        to record and the firing messages."""
        window = timedelta(seconds=int(doc["policies"]["catchup_window_seconds"]))
        previous = doc.get("last_nominal")
        missed_runs: list[RunRecord] = []
        missed = 0
        # Firings older than the catch-up window are skipped (recorded up to a bound, then counted).
        while cursor is not None and cursor < now - window and missed < MAX_MISSED_COUNTED:
            if len(missed_runs) < MAX_SKIPPED_RECORDED:
                missed_runs.append(self._skipped_run(rec, cursor, "missed_catchup_window"))
            missed += 1
            previous = fmt(cursor)
            cursor = compiled.next_after(cursor)
        if missed >= MAX_MISSED_COUNTED and cursor is not None:
            cursor = compiled.next_after(now - window - timedelta(milliseconds=1))
        messages: list[OutgoingMessage] = []
        remaining = doc["state"].get("remaining_actions")
        # A schedule with remaining_actions never has more firings in flight than it may still
        # run: `planned` lists the nominal times enqueued and not yet consumed by the worker
        # (entries older than any message could still be waiting are forgotten).
        planned: list[str] = [
            t
            for t in doc.get("planned", [])
            if parse(t) > now - timedelta(seconds=MAX_DELAY) - 2 * self.horizon
        ]
        budget = (
            MAX_FIRINGS_PER_SCHEDULE
            if remaining is None
            else min(MAX_FIRINGS_PER_SCHEDULE, remaining - len(planned))
        )
        while cursor is not None and cursor <= until and len(messages) < budget:
            scheduled = compiled.scheduled_time(rec.schedule_id, cursor)
            messages.append(
                OutgoingMessage(
                    body={
                        "kind": "firing",
                        "schedule_id": rec.schedule_id,
                        "definition": rec.definition,  # the worker reads a history-off one's schedule cheaper
                        "generation": rec.generation,
                        "config_version": doc.get("config_version", 1),
                        "nominal_time": fmt(cursor),
                        "scheduled_time": fmt(scheduled),
                        "previous_nominal_time": previous,
                    },  # its delay is set when it is sent (`_send_firings`)
                )
            )
            previous = fmt(cursor)
            cursor = compiled.next_after(cursor)
        doc["last_nominal"] = previous
        if remaining is not None:
            doc["planned"] = planned + [m.body["nominal_time"] for m in messages]
        self._apply_firing_quota(rec, messages, now)
        return cursor, missed, missed_runs, messages

    def _quota_of(self, group: str, now: datetime) -> float | None:
        """The group's firing quota, read at most every 30 s per group (not once per schedule)."""
        if self._firing_quota is None:
            return None
        cached = self._quota_cache.get(group)
        if cached is None or cached[0] <= now:
            cached = (now + timedelta(seconds=30), self._firing_quota(group))
            self._quota_cache[group] = cached
        return cached[1]

    def _apply_firing_quota(
        self, rec: ScheduleRecord, messages: list[OutgoingMessage], now: datetime
    ) -> None:
        """Delay firings beyond the group's `max_firings_per_second` to later seconds (never drop
        them) and count them as `quota_delayed`. The seconds already taken are remembered per
        group by this ticker (a Lambda container keeps them across ticks)."""
        rate = self._quota_of(rec.group, now) if messages else None
        if not rate:
            return
        from gnomon.services.admin import spread_for_quota  # admin imports this module

        taken = self._taken.setdefault(rec.group, {})
        for second in [s for s in taken if s < int(now.timestamp())]:
            del taken[second]
        times = [parse(m.body["scheduled_time"]) for m in messages]
        placed = spread_for_quota(times, rate, taken=taken)
        delayed = 0
        for i, (old, new) in enumerate(zip(times, placed, strict=True)):
            if new != old:
                delayed += 1
                messages[i] = replace(messages[i], body={**messages[i].body, "scheduled_time": fmt(new)})
        if delayed:
            self._schedules.add_counters(rec.schedule_id, {"quota_delayed": delayed})

    def _skipped_run(self, rec: ScheduleRecord, nominal: datetime, reason: str) -> RunRecord:
        return skipped_run(rec, nominal, reason, self._clock.now())

    def sweep(
        self, now: datetime, report: TickReport, time_left: Callable[[], float], reserve: float
    ) -> None:
        """Re-enqueue runs whose attempt is due but has no message in flight (long backoffs,
        lost messages), runs whose worker died holding the lease, and backfilled runs whose
        start comes within reach."""
        self.sweep_holds(now, report, time_left, reserve)
        for shard in range(self._runs.shards):
            for _ in range(SWEEP_PAGES):
                if time_left() < reserve:
                    report.complete = False
                    return
                page = self._runs.active(shard, now, limit=PAGE)
                moved = 0
                for run in page:
                    try:
                        if self._sweep_one(run, now):
                            report.runs_swept += 1
                        moved += 1
                    except Conflict:
                        report.conflicts += 1
                # Each handled run left the page's reach (its active_at moved past now).
                if len(page) < PAGE or not moved:
                    break

    def sweep_holds(
        self, now: datetime, report: TickReport, time_left: Callable[[], float], reserve: float
    ) -> None:
        """Look at the runs of worker batches whose hold expired unreleased (the worker died, or
        a message failed, or the batch still runs): a run still running without a lease entry
        of its own gets one — at its lease's end, or now when that passed (then the lost
        attempt is handled as any expired lease) —; then the hold goes."""
        for _ in range(SWEEP_PAGES):
            if time_left() < reserve:
                report.complete = False
                return
            holds = self._runs.expired_holds(now, limit=PAGE)
            released = 0
            for hold in holds:
                settled = True
                for run_id in hold.run_ids:
                    try:
                        run = self._runs.get(run_id)
                        if run.status != RunStatus.running or run.active_at is not None:
                            continue  # closed, waiting for its next attempt, or with its own entry
                        lease = run.doc.get("lease") or {}
                        ends = parse(lease["expires_at"]) if lease.get("expires_at") else now
                        if ends > now:  # still within its lease: give it its own entry
                            self._runs.update(
                                _run_with(run, dict(run.doc), active_at=ends), expected_version=run.version
                            )
                        elif self._sweep_one(run, now):
                            report.runs_swept += 1
                    except NotFound:
                        continue
                    except Conflict:
                        report.conflicts += 1
                        settled = False  # changed meanwhile: look again at the next tick
                if settled:
                    self._runs.release(hold.hold_id)
                    report.holds_swept += 1
                    released += 1
            if len(holds) < PAGE or not released:  # a page of unsettled holds: the next tick
                return

    def _sweep_one(self, run: RunRecord, now: datetime) -> bool:
        doc = dict(run.doc)
        if run.status == RunStatus.pending and doc.get("buffered"):
            # A buffered run waits for the overlap ledger to start it: never start it from
            # here. Its watchdog only asks a worker to look (a deleted schedule cancels it).
            self._runs.update(
                _run_with(run, doc, active_at=now + BUFFER_WATCHDOG), expected_version=run.version
            )
            self._queue.send([OutgoingMessage(body={"kind": "nudge", "run_id": run.run_id})])
            return True
        if run.status == RunStatus.pending:
            attempt = int(doc.get("next_attempt", doc.get("attempt", 0) + 1))
            start = now
            if doc.get("not_before") and int(doc.get("attempt", 0)) == 0:
                start = max(now, parse(doc["not_before"]))  # a backfilled run: land on its start
            updated = self._runs.update(
                _run_with(run, doc, active_at=start + RETRY_GRACE), expected_version=run.version
            )
            self._queue.send([_start_message(updated.run_id, start, now, attempt)])
            return True
        if run.status == RunStatus.running:
            # The lease expired: the worker holding it is gone. That attempt failed; the
            # worker's retry rules decide about the next (a "lease_expired" message does it).
            self._runs.update(_run_with(run, doc, active_at=now + RETRY_GRACE), expected_version=run.version)
            self._queue.send([OutgoingMessage(body={"kind": "lease_expired", "run_id": run.run_id})])
            return True
        # Closed runs should not be active; drop them from the index. A canceled run stays in it
        # until its attempt's lease ends: if that attempt's worker is gone, nobody else would
        # tell the overlap ledger that the run no longer counts as running.
        self._runs.update(_run_with(run, doc, active_at=None), expected_version=run.version)
        if run.schedule_id is not None:
            self._queue.send([OutgoingMessage(body={"kind": "nudge", "run_id": run.run_id})])
        return False


def schedule_cursor(rec: ScheduleRecord) -> datetime | None:
    """The planning cursor: the first nominal time not yet enqueued (None: nothing left).
    Documents written before the cursor was kept in them answer their due-index position
    (which was the cursor, unless paused)."""
    if "cursor" in rec.doc:
        raw = rec.doc["cursor"]
        return parse(raw) if raw else None
    return None if rec.doc["state"].get("paused") else rec.next_fire_at


def schedule_record(rec: ScheduleRecord, doc: JSON, cursor: datetime | None) -> ScheduleRecord:
    """`rec` carrying `doc` (with its planning cursor) at its places in the due and phase
    indexes. A document stays `phased` (its firings planned from the phase index) only while
    its phase and configuration are those the ticker confirmed."""
    doc = {**doc, "cursor": fmt(cursor)}
    phase = phase_of(doc, cursor)
    if phase is None or doc.get("phased") != phase_signature(doc, phase):
        doc.pop("phased", None)
    return ScheduleRecord(
        schedule_id=rec.schedule_id,
        doc=doc,
        generation=rec.generation,
        definition=str(doc.get("definition", rec.definition)),
        group=str(doc.get("group", rec.group)),
        next_fire_at=due_at(doc, cursor),
        version=rec.version,
        phase=phase,
        phase_plan=None if phase is None else phase_plan(doc),
    )


@functools.lru_cache(maxsize=512)
def _spec_phase(spec_json: str) -> tuple[int, int] | None:
    try:
        spec = Spec.model_validate_json(spec_json)
        if spec.exclude_calendar_refs:
            return None  # named calendars change on their own: never a fixed phase
        return compile_spec(spec).fixed_period()
    except (ValueError, InvalidArgument):
        return None


def phase_of(doc: JSON, cursor: datetime | None) -> tuple[int, int] | None:
    """(period, phase) of a schedule whose firings the ticker may plan from the phase index:
    one firing every period (dividing a day) at a fixed phase, not paused, without
    `remaining_actions` (which counts firings in flight in the document), with firings left."""
    state = doc["state"]
    if state.get("paused") or state.get("remaining_actions") is not None or cursor is None:
        return None
    return _spec_phase(json.dumps(doc["spec"], sort_keys=True))


def phase_plan(doc: JSON) -> list[Any] | None:
    """What the phase index carries for the ticker beside the generation, definition and
    group: all a window needs to plan a `phased` schedule's firings unread (`_planned_record`)
    — [cursor, last nominal time, config_version, catch-up window, jitter, start_at, end_at],
    instants in epoch ms, ~60 bytes (the schedule item stays under 1 KB: a write unit). None
    until the ticker confirmed it `phased`. None of it changes when a firing runs: those
    writes cost the index nothing."""
    if not is_phased(doc):
        return None
    spec = doc["spec"]

    def ms(value: Any) -> int | None:
        return None if not value else int(parse(str(value)).timestamp() * 1000)

    return [
        ms(doc.get("cursor")),
        ms(doc.get("last_nominal")),
        int(doc.get("config_version", 1)),
        int(doc["policies"]["catchup_window_seconds"]),
        int(spec.get("jitter_seconds") or 0),
        ms(spec.get("start_at")),
        ms(spec.get("end_at")),
    ]


def _planned_record(entry: PhaseEntry, period: int) -> ScheduleRecord | None:
    """A `phased` schedule as its phase-index entry tells it (version -1: not read). Its spec
    is the interval with the same firings — one every period at the phase, between start_at
    and end_at."""
    plan = entry.plan
    if not plan or entry.generation is None or entry.definition is None or entry.group is None:
        return None
    cursor, last, config_version, catchup, jitter, start, end = plan

    def iso(value: int | None) -> str | None:
        return None if value is None else fmt(datetime.fromtimestamp(value / 1000, tz=UTC))

    spec: JSON = {
        "intervals": [{"every_seconds": period, "offset_seconds": entry.phase}],
        "jitter_seconds": jitter,
    }
    if start is not None:
        spec["start_at"] = iso(start)
    if end is not None:
        spec["end_at"] = iso(end)
    phase = (period, entry.phase)
    doc: JSON = {
        "spec": spec,
        "state": {},
        "cursor": iso(cursor),
        "config_version": config_version,
        "policies": {"catchup_window_seconds": catchup},
        "last_nominal": iso(last),
    }
    doc["phased"] = phase_signature(doc, phase)
    return ScheduleRecord(
        schedule_id=entry.schedule_id,
        doc=doc,
        generation=entry.generation,
        definition=entry.definition,
        group=entry.group,
        next_fire_at=None,
        version=-1,
        phase=phase,
        phase_plan=plan,
    )


def phase_signature(doc: JSON, phase: tuple[int, int]) -> str:
    """What the ticker confirmed when it took a schedule's planning over to the phase index."""
    return f"{phase[0]}/{phase[1]}/{doc.get('config_version', 1)}"


def is_phased(doc: JSON) -> bool:
    """Whether the ticker plans this document's firings from the phase index (its `cursor`
    then only says where the planning stood when it took over; see `effective_cursor`)."""
    return bool(doc.get("phased"))


def effective_cursor(rec: ScheduleRecord, compiled: CompiledSpec, mark: datetime | None) -> datetime | None:
    """The planning cursor of a `phased` schedule whose family's watermark is `mark`: its
    firings up to the watermark were enqueued by the phase windows (from its stored cursor on)."""
    cursor = schedule_cursor(rec)
    if not is_phased(rec.doc) or cursor is None or mark is None:
        return cursor
    after = compiled.next_after(mark)
    return None if after is None else max(cursor, after)


def phase_mark(store: ScheduleStore, rec: ScheduleRecord) -> datetime | None:
    """The watermark of the phase family a record belongs to (None: none, or not phased)."""
    if rec.phase is None or not is_phased(rec.doc):
        return None
    key = (rec.phase[0], shard_of(rec.schedule_id, store.shards))
    return store.phase_marks([key[0]]).get(key)


def phase_ranges(period: int, start: datetime, end: datetime) -> list[tuple[int, int]]:
    """The phases (inclusive ranges, seconds) of the whole-second instants in (start, end]."""
    a = math.floor(start.timestamp()) + 1
    b = math.floor(end.timestamp())
    if b < a:
        return []
    if b - a + 1 >= period:
        return [(0, period - 1)]
    low, high = a % period, b % period
    return [(low, high)] if low <= high else [(low, period - 1), (0, high)]


def due_at(doc: JSON, cursor: datetime | None) -> datetime | None:
    """Where a schedule sits in the due index: the earliest instant the ticker has work for it
    (None: none, it is left out of the index). A phased schedule's firings are not in it."""
    state = doc["state"]
    times: list[datetime] = []
    if state.get("paused"):
        if state.get("paused_until"):
            times.append(parse(state["paused_until"]))
    elif cursor is not None and state.get("remaining_actions") != 0 and not is_phased(doc):
        times.append(cursor)
    times += [parse(k["at"]) for k in doc.get("kick") or []]
    check_at = (doc.get("flight") or {}).get("check_at")
    if check_at:
        times.append(parse(check_at))
    if doc.get("finish_at"):
        times.append(parse(doc["finish_at"]))
    return min(times, default=None)


def note_finish(doc: JSON, cursor: datetime | None, now: datetime) -> None:
    """Ask the ticker to check soon whether a schedule that deletes itself is done (its cursor
    ran out), or forget that question once a change gave it future firings again."""
    if cursor is None and doc["policies"].get("action_after_completion") == "delete":
        doc.setdefault("finish_at", fmt(now))
    else:
        doc.pop("finish_at", None)


def missed_while_paused(
    compiled: CompiledSpec, state: JSON, cursor: datetime | None, now: datetime
) -> list[datetime]:
    """The nominal times that fell while paused and were never enqueued, up to `now`. Times
    before the cursor were enqueued before the pause: the worker records and counts those as
    they are delivered (skipped `paused`), so they are left out here."""
    start = parse(state["paused_at"]) if state.get("paused_at") else now
    if cursor is not None:
        start = max(start, cursor - timedelta(milliseconds=1))
    return compiled.times(start, MAX_PAUSED_COUNTED, now)


def counted_by_unpause(doc: JSON, nominal: datetime) -> bool:
    """Whether the unpause of this paused schedule will count the firing at `nominal` as
    skipped_paused (`missed_while_paused`): a firing at or after the cursor that reaches the
    worker while paused — enqueued from a read just before the pause — is recorded as skipped
    by the worker but counted once, by the unpause."""
    state = doc["state"]
    if not state.get("paused") or not state.get("paused_at") or not doc.get("cursor"):
        return False
    start = max(parse(state["paused_at"]), parse(doc["cursor"]) - timedelta(milliseconds=1))
    return nominal > start


def completion_ready(rec: ScheduleRecord, runs: RunStore, now: datetime) -> bool:
    """Whether a schedule has nothing left to do: no future firing, nothing queued or waiting in
    its overlap ledger, its backfills all started, its last firing delivered, and none of its
    runs still pending or running."""
    doc = rec.doc
    if doc["state"].get("paused") or schedule_cursor(rec) is not None or doc.get("kick"):
        return False
    flight = doc.get("flight") or {}
    if flight.get("running") or flight.get("buffer"):
        return False
    for b in (doc.get("info") or {}).get("backfills", []):
        # A backfill is done once all its runs had their turn (or, should some never get it —
        # canceled before their start —, once it is long past the time its last one was due).
        if int(b["started"]) < int(b["total"]) and (not b.get("finish_by") or now < parse(b["finish_by"])):
            return False
    last = doc.get("last_nominal")
    jitter = timedelta(seconds=float(doc["spec"].get("jitter_seconds") or 0))
    if last is not None and now < parse(last) + jitter + LAST_FIRING_GRACE:
        try:  # the last firing's run is recorded once the worker took it
            runs.get(scheduled_run_id(rec.schedule_id, rec.generation, parse(last)))
        except NotFound:
            return False
    return not any(
        r.status in (RunStatus.pending.value, RunStatus.running.value)
        and r.doc.get("generation") == rec.generation
        for r in runs.recent(rec.schedule_id, limit=20)
    )


def _start_message(run_id: str, start: datetime, now: datetime, attempt: int = 1) -> OutgoingMessage:
    """The run message that lands on `start` (whole seconds early at most: the worker waits the
    rest, as it does for firings)."""
    return run_message(run_id, attempt, math.floor(max(0.0, (start - now).total_seconds())))


def _timed(message: OutgoingMessage, now: datetime) -> OutgoingMessage:
    scheduled = message.body.get("scheduled_time")
    if message.body.get("kind") != "firing" or not scheduled:
        return message
    ahead = (parse(str(scheduled)) - now).total_seconds()
    return replace(message, delay_seconds=max(0, min(MAX_DELAY, math.floor(ahead))))


FIRINGS_PER_MESSAGE = 10  # a packed message's firings (≈ 4 KB: one 64 KB SQS chunk)


def pack_firings(messages: list[OutgoingMessage]) -> list[OutgoingMessage]:
    """The firing messages that share a delay (they become visible in the same second: a cron
    fleet's firings) packed `FIRINGS_PER_MESSAGE` a message, `{"kind": "firings", "firings":
    [body, …]}`: one SQS send, receive and delete for ten firings. Other messages, and a
    firing alone in its second, go as they are."""
    out: list[OutgoingMessage] = []
    by_delay: dict[int, list[OutgoingMessage]] = {}
    for m in messages:
        if m.body.get("kind") == "firing":
            by_delay.setdefault(m.delay_seconds, []).append(m)
        else:
            out.append(m)
    for delay, group in by_delay.items():
        for i in range(0, len(group), FIRINGS_PER_MESSAGE):
            chunk = group[i : i + FIRINGS_PER_MESSAGE]
            if len(chunk) == 1:
                out.append(chunk[0])
            else:
                body = {"kind": "firings", "firings": [m.body for m in chunk]}
                out.append(OutgoingMessage(body=body, delay_seconds=delay))
    return out


def unpack_firings(body: JSON) -> list[JSON] | None:
    """The firings of a packed message (None: not packed)."""
    if body.get("kind") != "firings":
        return None
    firings = body.get("firings")
    if not isinstance(firings, list) or not firings or not all(isinstance(f, dict) for f in firings):
        raise ValueError("a packed message must list its firings as JSON objects")
    return firings


def run_message(run_id: str, attempt: int, delay: float = 0) -> OutgoingMessage:
    """The message that starts attempt `attempt` of an existing pending run."""
    return OutgoingMessage(
        body={"kind": "run", "run_id": run_id, "attempt": attempt},
        delay_seconds=max(0, min(MAX_DELAY, math.ceil(delay))),
    )


def skipped_run(rec: ScheduleRecord, nominal: datetime, reason: str, now: datetime) -> RunRecord:
    """A `skipped` run of a schedule's firing, with its reason."""
    run_id = scheduled_run_id(rec.schedule_id, rec.generation, nominal)
    doc = new_run_doc(
        run_id=run_id,
        definition=rec.definition,
        definition_version=None,
        schedule_id=rec.schedule_id,
        generation=rec.generation,
        nominal=nominal,
        scheduled=nominal,
        trigger="schedule",
        input_=rec.doc.get("input"),
        memo=rec.doc.get("memo", {}),
    )
    doc.update(status=RunStatus.skipped.value, reason=reason, closed_at=fmt(now))
    doc["events"].append({"time": fmt(now), "type": "skipped", "details": {"reason": reason}})
    return RunRecord(
        run_id=run_id,
        doc=doc,
        schedule_id=rec.schedule_id,
        definition=rec.definition,
        nominal_time=nominal,
        status=RunStatus.skipped.value,
    )


def new_run_doc(
    *,
    run_id: str,
    definition: str,
    definition_version: int | None,
    schedule_id: str | None,
    generation: str | None,
    nominal: datetime,
    scheduled: datetime,
    trigger: str,
    input_: Any,
    memo: Any,
) -> JSON:
    """A run document with every contract field at its initial value."""
    return {
        "run_id": run_id,
        "definition": definition,
        "definition_version": definition_version,
        "schedule_id": schedule_id,
        "generation": generation,
        "nominal_time": fmt(nominal),
        "scheduled_time": fmt(scheduled),
        "started_at": None,
        "closed_at": None,
        "duration_ms": None,
        "status": RunStatus.pending.value,
        "attempt": 0,
        "input": input_,
        "memo": memo,
        "result": None,
        "result_truncated": False,
        "error": None,
        "error_truncated": False,
        "reason": None,
        "trigger": trigger,
        "inbox": [],
        "details": None,
        "attempts": [],
        "events": [],
    }


def _run_with(run: RunRecord, doc: JSON, *, active_at: datetime | None) -> RunRecord:
    return RunRecord(
        run_id=run.run_id,
        doc=doc,
        schedule_id=run.schedule_id,
        definition=run.definition,
        nominal_time=run.nominal_time,
        status=doc["status"],
        active_at=active_at,
        expires_at=run.expires_at,
        version=run.version,
    )
