"""Use cases for schedules: create, describe, update, delete, list, pause, unpause, preview,
backfill.

A schedule is spec (when) + action (definition, input) + policies + state. The stored document
keeps those four apart; describe adds `info`. Every write sets the planning cursor (`cursor`,
the first nominal time not yet enqueued) and derives `next_fire_at` — where the schedule sits
in the ticker's due index — from it and the state (`gnomon.services.tick.due_at`).

Runs this module records (a trigger_immediately run, backfilled runs) are `pending` and not yet
admitted: the worker applies the overlap policy when each one's turn to start comes.
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gnomon.domain.errors import AlreadyClosed, AlreadyExists, Conflict, InvalidArgument, NotFound
from gnomon.domain.model import (
    PUSH_TIMEOUT_MAX,
    PreviewRequest,
    ScheduleCreate,
    ScheduleState,
    ScheduleUpdate,
)
from gnomon.domain.runs import RunStatus, scheduled_run_id
from gnomon.domain.spec import Calendar, CompiledSpec, Spec, compile_spec
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import JSON, Clock, RunRecord, RunStore, ScheduleRecord, ScheduleStore
from gnomon.services.catalog import Calendars, Definitions
from gnomon.services.common import Caller
from gnomon.services.execute import DELETED_REASON, counts_as_running
from gnomon.services.pagetoken import PageTokens
from gnomon.services.tick import (
    BACKFILL_LEAD,
    LAST_FIRING_GRACE,
    RETRY_GRACE,
    effective_cursor,
    is_phased,
    missed_while_paused,
    new_run_doc,
    note_finish,
    phase_mark,
    schedule_cursor,
    schedule_record,
)

COUNTERS = (
    "actions",
    "skipped_overlap",
    "missed_catchup_window",
    "buffer_dropped",
    "skipped_paused",
    "dropped_stale",
    "quota_delayed",
)
NEXT_TIMES = 10
SUMMARY_READS = 8  # a schedule list's newest-run reads in flight at once
MAX_BACKFILL = 10_000  # fire times per backfill request
KICK_MAX = 100  # backfilled runs the API has the ticker enqueue at once (the sweep takes the rest)
BACKFILLS_SHOWN = 20  # progress records kept in `info.backfills` (finished ones go first)
# Stored beside the resource but not answered at its top level (in `info`, or internal).
_NOT_TOP_LEVEL = frozenset(
    {
        "info",
        "state",
        "created_at",
        "updated_at",
        "updated_by",
        "identity",
        "config_version",
        "last_nominal",
        "planned",
        "cursor",
        "phased",
        "flight",
        "kick",
        "finish_at",
        "backfill_next_at",
    }
)
_UPDATABLE = ("group", "definition", "tags", "memo", "search_attributes", "spec", "policies", "input")
_OMIT_WHEN_NULL = ("memo", "search_attributes")  # Temporal: omitted or null = unchanged, {} = cleared


class Schedules:
    """The schedule use cases over a `ScheduleStore`."""

    def __init__(
        self,
        store: ScheduleStore,
        definitions: Definitions,
        calendars: Calendars,
        clock: Clock,
        tokens: PageTokens,
        runs: RunStore | None = None,
        planner: Callable[[str], object] | None = None,
        quota_check: Callable[[str], None] | None = None,
    ) -> None:
        self._quota_check = quota_check  # a group's max_schedules (422 beyond)
        self._runs = runs
        self._planner = planner  # enqueues the firings already inside the horizon after a change
        self._store = store
        self._definitions = definitions
        self._calendars = calendars
        self._clock = clock
        self._tokens = tokens

    # -- reads --------------------------------------------------------------------------------

    def describe(self, schedule_id: str) -> JSON:
        """The schedule with `info` and its `conflict_token`."""
        return self._describe(self._store.get(schedule_id))

    def list(
        self,
        *,
        group: str | None,
        definition: str | None,
        paused: bool | None,
        tag: str | None,
        page_token: str | None,
        page_size: int,
    ) -> JSON:
        """Summaries sorted by schedule_id; paused and tag filter the stored page (pages may be short)."""
        filters = {"group": group, "definition": definition, "paused": paused, "tag": tag}
        after = self._tokens.decode(page_token, "schedules", filters)
        page = self._store.list(after=after, limit=page_size, group=group, definition=definition)
        shown = [
            rec
            for rec in page.items
            if (paused is None or rec.doc["state"]["paused"] == paused)
            and (tag is None or tag in rec.doc.get("tags", []))
        ]
        # Each summary reads its schedule's newest run: the reads go out together, not one
        # after another (a page of 25 costs about one read's latency, not 25).
        if len(shown) > 1 and self._runs is not None:
            with ThreadPoolExecutor(max_workers=min(SUMMARY_READS, len(shown))) as pool:
                items = list(pool.map(self._summary, shown))
        else:
            items = [self._summary(rec) for rec in shown]
        return {"items": items, "next_page_token": self._tokens.encode(page.last_key, "schedules", filters)}

    def preview(self, req: PreviewRequest) -> JSON:
        """Nominal times strictly after `start`, at most `count`, none after `end`."""
        compiled = self._compile(req.spec)
        return {"fire_times": [fmt(t) for t in compiled.times(req.start, req.count, req.end)]}

    # -- writes -------------------------------------------------------------------------------

    def create(self, body: ScheduleCreate, caller: Caller) -> JSON:
        """Store a new schedule (a new `generation`) and answer its describe body.
        `trigger_immediately` runs its action now (as a trigger without a key would);
        `initial_backfill` backfills each range given (as the backfill action would)."""
        self._check_definition(body.definition, body.input, body.policies.timeout_seconds)
        if self._quota_check is not None:
            self._quota_check(body.group)
        compiled = self._compile(body.spec)
        now = self._clock.now()
        state = body.state
        if state.paused_until is not None and state.paused_until <= now:
            raise InvalidArgument("state.paused_until", "must be in the future")
        # Every backfill range is checked before anything is stored.
        backfills = [
            (b, _backfill_times(compiled, b.start, b.end, f"initial_backfill[{i}]."))
            for i, b in enumerate(body.initial_backfill)
        ]
        doc: JSON = {
            "schedule_id": body.schedule_id,
            "group": body.group,
            "definition": body.definition,
            "tags": body.tags,
            "memo": body.memo,
            "search_attributes": body.search_attributes,
            "spec": body.spec.model_dump(mode="json"),
            "policies": body.policies.model_dump(mode="json"),
            "state": _state_doc(state),
            "input": body.input,
            "config_version": 1,
            "created_at": fmt(now),
            "updated_at": fmt(now),
            **caller.stamp(),
        }
        cursor = compiled.next_after(now)
        note_finish(doc, cursor, now)
        rec = ScheduleRecord(
            schedule_id=body.schedule_id,
            doc=doc,
            generation=_new_generation(now),
            definition=body.definition,
            group=body.group,
            next_fire_at=None,
        )
        rec = self._store.create(schedule_record(rec, doc, cursor))
        if body.trigger_immediately:
            self._trigger_now(rec)
        for request, times in backfills:
            overlap = request.overlap.value if request.overlap is not None else None
            self._record_backfill(rec.schedule_id, request.start, request.end, times, overlap)
        return self._after_change(body.schedule_id)

    def update(self, schedule_id: str, body: ScheduleUpdate, caller: Caller) -> JSON:
        """Replace each given top-level field whole; `conflict_token` (when given) must match."""
        if body.schedule_id is not None and body.schedule_id != schedule_id:
            raise InvalidArgument("schedule_id", "must equal the schedule id in the path")
        expected = _parse_token(body.conflict_token)
        given = body.model_fields_set
        while True:
            rec = self._store.get(schedule_id)
            if expected is not None and expected != rec.version:
                raise Conflict(
                    "conflict_token does not match the current schedule", current=self._describe(rec)
                )
            doc = dict(rec.doc)
            for name in _UPDATABLE:
                if name not in given:
                    continue
                value = getattr(body, name)
                if value is None and name in _OMIT_WHEN_NULL:
                    continue
                if value is None and name != "input":
                    raise InvalidArgument(name, "may not be null")
                doc[name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            if "state" in given and body.state is not None and "remaining_actions" in body.state:
                doc["state"] = {
                    **doc["state"],
                    "remaining_actions": _remaining(body.state["remaining_actions"]),
                }
            self._check_definition(doc["definition"], doc["input"], doc["policies"].get("timeout_seconds"))
            if self._quota_check is not None and doc["group"] != rec.group:
                self._quota_check(doc["group"])  # moving into a group is a create there
            compiled = self._compile(Spec.model_validate(doc["spec"]))
            now = self._clock.now()
            # Firings enqueued under the old configuration are dropped (counted dropped_stale),
            # so planning starts again from now. While paused, the old cursor is kept when it is
            # earlier: the unpause counts the firings that fell while paused from there.
            doc["config_version"] = int(doc.get("config_version", 1)) + 1
            doc.update(updated_at=fmt(now), **caller.stamp())
            cursor = compiled.next_after(now)
            old = schedule_cursor(rec)
            if doc["state"].get("paused") and old is not None and (cursor is None or old < cursor):
                cursor = old
            note_finish(doc, cursor, now)
            new = schedule_record(rec, doc, cursor)
            try:
                self._store.update(new, expected_version=rec.version)
                return self._after_change(schedule_id)
            except Conflict:
                if expected is not None:
                    raise Conflict(
                        "conflict_token does not match the current schedule",
                        current=self.describe(schedule_id),
                    ) from None
                # Unconditional update raced another writer: re-read and apply again.

    def delete(self, schedule_id: str) -> None:
        """Delete; firings already enqueued are dropped by the worker, running runs go on, and
        runs waiting in the overlap buffer are canceled (a backfilled run not yet started is
        canceled by the worker when its turn comes)."""
        while True:
            rec = self._store.get(schedule_id)
            try:
                self._store.delete(schedule_id, expected_version=rec.version)
                break
            except Conflict:
                continue  # changed meanwhile: read the buffer again
        if self._runs is None:
            return
        from gnomon.services.runs import cancel_run  # it imports this module: bind late

        now = self._clock.now()
        for entry in (rec.doc.get("flight") or {}).get("buffer", []):
            try:
                cancel_run(self._runs, entry["run_id"], DELETED_REASON, now)
            except (NotFound, AlreadyClosed, Conflict):
                continue  # not written yet (its worker finds the schedule gone), or closed

    def pause(self, schedule_id: str, note: str | None, until: datetime | None, caller: Caller) -> JSON:
        """Pause (again: replaces note and until). With `until`, it unpauses by itself then."""
        now = self._clock.now()
        if until is not None and until <= now:
            raise InvalidArgument("until", "must be in the future")
        state = {"paused": True, "note": "paused" if note is None else note, "paused_until": fmt(until)}
        return self._set_state(schedule_id, state, caller)

    def unpause(self, schedule_id: str, note: str | None, catch_up: str, caller: Caller) -> JSON:
        """Unpause; `catch_up` says which firings missed while paused run: `none`, `latest` (the
        last one) or `all` (those within the catch-up window). The others count as skipped_paused."""
        for _ in range(10):
            rec = self._store.get(schedule_id)
            state = rec.doc["state"]
            if not state["paused"]:
                return self._describe(rec)
            now = self._clock.now()
            compiled = self._compile(Spec.model_validate(rec.doc["spec"]))
            window = timedelta(seconds=int(rec.doc["policies"]["catchup_window_seconds"]))
            missed = missed_while_paused(compiled, state, schedule_cursor(rec), now)
            if catch_up == "latest" and missed:
                cursor: datetime | None = missed[-1]
            elif catch_up == "all":
                cursor = next((t for t in missed if t >= now - window), compiled.next_after(now))
            else:
                cursor = compiled.next_after(now)
            caught = sum(1 for t in missed if cursor is not None and t >= cursor)
            new_state = {
                **state,
                "paused": False,
                "note": "unpaused" if note is None else note,
                "paused_until": None,
            }
            new_state.pop("paused_at", None)
            if new_state.get("remaining_actions") == 0:
                cursor = None
            doc = {**rec.doc, "state": new_state, "updated_at": fmt(now), **caller.stamp()}
            note_finish(doc, cursor, now)
            try:
                self._store.update(schedule_record(rec, doc, cursor), expected_version=rec.version)
            except Conflict:
                continue
            if len(missed) > caught:
                self._store.add_counters(schedule_id, {"skipped_paused": len(missed) - caught})
            return self._after_change(schedule_id)
        raise Conflict("the schedule kept changing; try again", current=self.describe(schedule_id))

    def backfill(
        self, schedule_id: str, start: datetime, end: datetime, overlap: str | None, *, dry_run: bool
    ) -> tuple[int, JSON]:
        """Backfill `[start, end]`: the current spec's nominal times in it (start_at, end_at and
        exclusions applied, jitter not) are recorded as `pending` runs at once — a time that
        already has a run (the deterministic id its firing would have) is neither re-run nor
        counted — and started progressively, at most `backfill_rate` per second, under
        `overlap` (default the schedule's policy), whatever pause, catch-up window and
        remaining_actions say. A dry run only answers the times (200)."""
        rec = self._store.get(schedule_id)
        times = _backfill_times(self._compile(Spec.model_validate(rec.doc["spec"])), start, end, "")
        fire_times = [fmt(t) for t in times]
        if dry_run:
            return 200, {"fire_times": fire_times, "runs_created": 0}
        created = self._record_backfill(schedule_id, start, end, times, overlap)
        if self._planner is not None:
            self._planner(schedule_id)  # start the head of it now, not at the next tick
        return 201, {"fire_times": fire_times, "runs_created": created}

    def _record_backfill(
        self, schedule_id: str, start: datetime, end: datetime, times: Sequence[datetime], overlap: str | None
    ) -> int:
        """Record the runs of one backfill and its progress (`info.backfills`); answers how many
        runs it created. Start slots are spaced 1/backfill_rate s apart, after those of earlier
        backfills of the schedule; the first runs are handed to the ticker to enqueue at once
        (`kick`), the others enter the sweep's reach BACKFILL_LEAD before their slot."""
        assert self._runs is not None
        runs = self._runs
        now = self._clock.now()
        backfill_id = f"b-{secrets.token_hex(6)}"
        reserved: JSON = {}

        def reserve(doc: JSON) -> None:
            # The progress record comes first, so runs the sweep starts early are counted;
            # `total` is corrected once the runs are written.
            policies = doc["policies"]
            rate = int(policies.get("backfill_rate") or 10)
            after = doc.get("backfill_next_at")
            base = max(now, parse(after)) if after else now
            span = timedelta(milliseconds=len(times) * 1000 // rate)
            doc["backfill_next_at"] = fmt(base + span)
            record = {
                "backfill_id": backfill_id,
                "start": fmt(start),
                "end": fmt(end),
                "total": len(times),
                "started": 0,
                "overlap": overlap or policies["overlap"],
                "created_at": fmt(now),
                "finish_by": fmt(base + span + LAST_FIRING_GRACE),
            }
            info = dict(doc.get("info") or {})
            info["backfills"] = _trim_backfills([*info.get("backfills", []), record])
            doc["info"] = info
            reserved.update(base=base, rate=rate, overlap=record["overlap"], doc=doc)

        rec = self._edit(schedule_id, reserve)
        base, rate, effective = reserved["base"], int(reserved["rate"]), str(reserved["overlap"])
        action: JSON = reserved["doc"]
        definition = self._definitions.record(rec.definition)
        records: builtins.list[RunRecord] = []
        kicked: set[str] = set()
        for i, t in enumerate(times):
            not_before = base + timedelta(milliseconds=i * 1000 // rate)
            run_id = scheduled_run_id(rec.schedule_id, rec.generation, t)
            doc = new_run_doc(
                run_id=run_id,
                definition=rec.definition,
                definition_version=definition.version,
                schedule_id=rec.schedule_id,
                generation=rec.generation,
                nominal=t,
                scheduled=t,
                trigger="backfill",
                input_=action.get("input"),
                memo=action.get("memo", {}),
            )
            doc.update(next_attempt=1, overlap=effective, backfill_id=backfill_id, not_before=fmt(not_before))
            doc["previous_nominal_time"] = fmt(times[i - 1]) if i else None
            doc["events"].append(
                {"time": fmt(now), "type": "backfilled", "details": {"backfill_id": backfill_id}}
            )
            if i < KICK_MAX and not_before <= now + BACKFILL_LEAD:
                kicked.add(run_id)
                active_at = not_before + RETRY_GRACE  # enqueued at once; the sweep only if that is lost
            else:
                active_at = not_before - BACKFILL_LEAD
            records.append(
                RunRecord(
                    run_id=run_id,
                    doc=doc,
                    schedule_id=rec.schedule_id,
                    definition=rec.definition,
                    nominal_time=t,
                    status=RunStatus.pending.value,
                    active_at=active_at,
                )
            )

        def create(run: RunRecord) -> bool:
            try:
                runs.create(run)
            except AlreadyExists:
                return False
            return True

        if len(records) > 50:
            with ThreadPoolExecutor(max_workers=8) as pool:
                made = list(pool.map(create, records))
        else:
            made = [create(r) for r in records]
        created = sum(made)

        def settle(doc: JSON) -> None:
            info = dict(doc.get("info") or {})
            backfills = [dict(b) for b in info.get("backfills", [])]
            for b in backfills:
                if b["backfill_id"] == backfill_id:
                    b["total"] = created
                    b["started"] = min(int(b["started"]), created)
            info["backfills"] = backfills
            doc["info"] = info
            kick = [
                {"run_id": r.run_id, "at": r.doc["not_before"]}
                for r, ok in zip(records, made, strict=True)
                if ok and r.run_id in kicked
            ]
            if kick:
                doc["kick"] = [*(doc.get("kick") or []), *kick]

        self._edit(schedule_id, settle)
        return created

    def _trigger_now(self, rec: ScheduleRecord) -> None:
        """trigger_immediately: a `trigger` run (as POST /trigger without a key records it),
        handed to the ticker to enqueue at once; the overlap policy applies when it starts."""
        assert self._runs is not None
        now = self._clock.now()
        run_id = f"{rec.schedule_id}-t-{uuid.uuid4().hex[:12]}"
        definition = self._definitions.record(rec.definition)
        doc = new_run_doc(
            run_id=run_id,
            definition=rec.definition,
            definition_version=definition.version,
            schedule_id=rec.schedule_id,
            generation=rec.generation,
            nominal=now,
            scheduled=now,
            trigger="trigger",
            input_=rec.doc.get("input"),
            memo=rec.doc.get("memo", {}),
        )
        doc.update(next_attempt=1, overlap=None)
        doc["events"].append({"time": fmt(now), "type": "triggered", "details": {"overlap": None}})
        self._runs.create(
            RunRecord(
                run_id=run_id,
                doc=doc,
                schedule_id=rec.schedule_id,
                definition=rec.definition,
                nominal_time=now,
                status=RunStatus.pending.value,
                active_at=now + RETRY_GRACE,  # the sweep starts it if the ticker's message is lost
            )
        )
        self._edit(
            rec.schedule_id,
            lambda doc: doc.update(kick=[*(doc.get("kick") or []), {"run_id": run_id, "at": fmt(now)}]),
        )

    def _edit(self, schedule_id: str, change: Callable[[JSON], object]) -> ScheduleRecord:
        """Apply `change` to a copy of the stored document and write it conditionally (again on
        a conflict); the cursor stays."""
        while True:
            rec = self._store.get(schedule_id)
            doc = dict(rec.doc)
            change(doc)
            try:
                return self._store.update(
                    schedule_record(rec, doc, schedule_cursor(rec)), expected_version=rec.version
                )
            except Conflict:
                continue

    # -- helpers ------------------------------------------------------------------------------

    def _after_change(self, schedule_id: str) -> JSON:
        """Enqueue what is already inside the horizon (in AWS the ticker runs once a minute),
        then answer the describe body."""
        if self._planner is not None:
            self._planner(schedule_id)
        return self.describe(schedule_id)

    def _set_state(self, schedule_id: str, changes: JSON, caller: Caller) -> JSON:
        while True:
            rec = self._store.get(schedule_id)
            now = self._clock.now()
            state = {**rec.doc["state"], **changes}
            if not rec.doc["state"]["paused"]:
                state["paused_at"] = fmt(now)
            doc = {**rec.doc, "state": state, "updated_at": fmt(now), **caller.stamp()}
            # The cursor stays where planning stopped: the unpause counts from there. A
            # `phased` schedule's planning stopped at its family's watermark.
            cursor = schedule_cursor(rec)
            if is_phased(rec.doc):
                compiled = self._compile(Spec.model_validate(rec.doc["spec"]))
                cursor = effective_cursor(rec, compiled, phase_mark(self._store, rec))
            try:
                return self._describe(
                    self._store.update(schedule_record(rec, doc, cursor), expected_version=rec.version)
                )
            except Conflict:
                continue

    def _compile(self, spec: Spec) -> CompiledSpec:
        named = self._calendars.resolve(spec.exclude_calendar_refs, "spec.exclude_calendar_refs")
        return compile_spec(spec, named_exclusions=[Calendar.model_validate(c) for c in named])

    def _check_definition(self, name: str, input_: Any, timeout: int | None = None) -> None:
        try:
            definition = self._definitions.record(name)
        except NotFound:
            raise InvalidArgument("definition", f"unknown definition {name!r}") from None
        check_input(definition.doc, input_)
        if timeout is not None and timeout > PUSH_TIMEOUT_MAX and definition.doc["target"]["type"] != "task":
            raise InvalidArgument(
                "policies.timeout_seconds", f"at most {PUSH_TIMEOUT_MAX} s for the definition's push target"
            )

    def _describe(self, rec: ScheduleRecord) -> JSON:
        doc = rec.doc
        now = self._clock.now()
        try:
            compiled: CompiledSpec | None = self._compile(Spec.model_validate(doc["spec"]))
        except (InvalidArgument, ValidationError):
            compiled = None  # e.g. a named calendar deleted since: describe still answers
        nexts = compiled.times(now, NEXT_TIMES) if compiled else []
        info = doc.get("info", {})
        recent = self._runs.recent(rec.schedule_id, limit=NEXT_TIMES) if self._runs is not None else []
        recent = [r for r in recent if r.doc.get("generation") == rec.generation]
        state = {k: doc["state"].get(k) for k in ("paused", "note", "paused_until", "remaining_actions")}
        view = {k: v for k, v in doc.items() if k not in _NOT_TOP_LEVEL}
        view["state"] = state
        view["generation"] = rec.generation
        view["info"] = {
            "next_fire_times": [fmt(t) for t in nexts],
            "next_scheduled_times": [fmt(compiled.scheduled_time(rec.schedule_id, t)) for t in nexts]
            if compiled
            else [],
            "recent_actions": [
                {
                    "nominal_time": r.doc["nominal_time"],
                    "scheduled_time": r.doc.get("scheduled_time"),
                    "actual_time": r.doc.get("started_at") or r.doc.get("closed_at"),
                    "run_id": r.run_id,
                    "status": r.status,
                }
                for r in recent
            ],
            "running_runs": _running_runs(doc, recent, now),
            "last_fire_time": recent[0].doc["nominal_time"] if recent else None,
            "counters": {name: int(rec.counters.get(name, 0)) for name in COUNTERS},
            "backfills": info.get("backfills", []),
            "completed": not nexts and compiled is not None,
            "created_at": doc.get("created_at"),
            "updated_at": doc.get("updated_at"),
            "updated_by": doc.get("updated_by"),
            "identity": doc.get("identity"),
        }
        view["conflict_token"] = str(rec.version)
        return view

    def _summary(self, rec: ScheduleRecord) -> JSON:
        doc = rec.doc
        now = self._clock.now()
        try:
            nxt = self._compile(Spec.model_validate(doc["spec"])).next_after(now)
        except (InvalidArgument, ValidationError):
            nxt = None
        return {
            "schedule_id": rec.schedule_id,
            "group": rec.group,
            "definition": rec.definition,
            "tags": doc.get("tags", []),
            "paused": doc["state"]["paused"],
            "note": doc["state"]["note"],
            "next_fire_time": fmt(nxt),
            "last_fire_time": self._last_fire_time(rec),
        }

    def _last_fire_time(self, rec: ScheduleRecord) -> str | None:
        """The nominal time of the schedule's newest run (one key-ordered read, no index)."""
        if self._runs is None:
            return None
        for r in self._runs.recent(rec.schedule_id, limit=1):
            if r.doc.get("generation") == rec.generation:
                return str(r.doc["nominal_time"])
        return None


def check_input(definition: JSON, input_: Any) -> None:
    """422 on `input` unless it matches the definition's `input_schema` (when it has one)."""
    schema = definition.get("input_schema")
    if schema is None:
        return
    import fastjsonschema

    try:
        fastjsonschema.compile(schema)(input_)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidArgument(
            "input", f"does not match the definition's input_schema: {exc.message}"
        ) from None


def _state_doc(state: ScheduleState) -> JSON:
    return {
        "paused": state.paused,
        "note": state.note,
        "paused_until": fmt(state.paused_until),
        "remaining_actions": state.remaining_actions,
    }


def _remaining(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument("state.remaining_actions", "must be null or an integer ≥ 0")
    return value


def _parse_token(token: str | None) -> int | None:
    if token is None:
        return None
    try:
        return int(token)
    except ValueError:
        return -1  # never matches: a mismatch answers 409 with the current schedule


def _new_generation(now: datetime) -> str:
    """Unique per create of an id: creation millisecond + randomness, short and sortable."""
    return f"{int(now.timestamp() * 1000):x}{secrets.token_hex(2)}"


def _backfill_times(compiled: CompiledSpec, start: datetime, end: datetime, prefix: str) -> list[datetime]:
    """The nominal times t with start ≤ t ≤ end (422 when start > end or more than
    MAX_BACKFILL); `prefix` names the request field."""
    if start > end:
        raise InvalidArgument(f"{prefix}end", "must not be before start")
    times = compiled.times(start - timedelta(microseconds=1), MAX_BACKFILL + 1, end)
    if len(times) > MAX_BACKFILL:
        raise InvalidArgument(f"{prefix}end", f"the range holds more than {MAX_BACKFILL} fire times")
    return times


def _trim_backfills(records: list[JSON]) -> list[JSON]:
    """At most BACKFILLS_SHOWN progress records: the oldest finished ones go first."""
    out = list(records)
    while len(out) > BACKFILLS_SHOWN:
        done = [i for i, b in enumerate(out) if int(b["started"]) >= int(b["total"])]
        out.pop(done[0] if done else 0)
    return out


def _running_runs(doc: JSON, recent: list[RunRecord], now: datetime) -> list[str]:
    """The runs that count as running: those the overlap ledger holds — less those seen closed
    (the ledger keeps a closed run until the next arrival needs its place: `_lazy_release`) —,
    then running ones."""
    closed = {r.run_id for r in recent if not counts_as_running(r, now)}
    ids = [e["run_id"] for e in (doc.get("flight") or {}).get("running", []) if e["run_id"] not in closed]
    return ids + [r.run_id for r in recent if r.status == RunStatus.running.value and r.run_id not in ids]
