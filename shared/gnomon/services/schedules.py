"""Use cases for schedules: create, describe, update, delete, list, pause, unpause, preview.

A schedule is spec (when) + action (definition, input) + policies + state. The stored document
keeps those four apart; describe adds `info`. `next_fire_at` — where the schedule sits in the
ticker's due index — is derived here from the spec and state on every write.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gnomon.domain.errors import Conflict, InvalidArgument, NotFound
from gnomon.domain.model import PreviewRequest, ScheduleCreate, ScheduleState, ScheduleUpdate
from gnomon.domain.spec import Calendar, CompiledSpec, Spec, compile_spec
from gnomon.domain.timefmt import fmt, parse
from gnomon.ports import JSON, Clock, RunStore, ScheduleRecord, ScheduleStore
from gnomon.services.catalog import Calendars, Definitions
from gnomon.services.common import Caller
from gnomon.services.pagetoken import PageTokens

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
MAX_COUNTED_MISSED = 100_000  # firings missed while paused that unpause looks at
# Stored beside the resource but not answered at its top level (in `info`, or internal).
_NOT_TOP_LEVEL = frozenset(
    {"info", "state", "created_at", "updated_at", "updated_by", "identity", "config_version", "last_nominal"}
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
    ) -> None:
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
        items = []
        for rec in page.items:
            state = rec.doc["state"]
            if paused is not None and state["paused"] != paused:
                continue
            if tag is not None and tag not in rec.doc.get("tags", []):
                continue
            items.append(self._summary(rec))
        return {"items": items, "next_page_token": self._tokens.encode(page.last_key, "schedules", filters)}

    def preview(self, req: PreviewRequest) -> JSON:
        """Nominal times strictly after `start`, at most `count`, none after `end`."""
        compiled = self._compile(req.spec)
        return {"fire_times": [fmt(t) for t in compiled.times(req.start, req.count, req.end)]}

    # -- writes -------------------------------------------------------------------------------

    def create(self, body: ScheduleCreate, caller: Caller) -> JSON:
        """Store a new schedule (a new `generation`) and answer its describe body."""
        if body.trigger_immediately or body.initial_backfill:
            # Runs are recorded by the firing pipeline; refusing is honest until it lands.
            field = "trigger_immediately" if body.trigger_immediately else "initial_backfill"
            raise InvalidArgument(field, "not supported yet by this deployment")
        self._check_definition(body.definition, body.input)
        compiled = self._compile(body.spec)
        now = self._clock.now()
        state = body.state
        if state.paused_until is not None and state.paused_until <= now:
            raise InvalidArgument("state.paused_until", "must be in the future")
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
        rec = ScheduleRecord(
            schedule_id=body.schedule_id,
            doc=doc,
            generation=_new_generation(now),
            definition=body.definition,
            group=body.group,
            next_fire_at=_next_fire_at(compiled, doc["state"], now),
        )
        self._store.create(rec)
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
            self._check_definition(doc["definition"], doc["input"])
            compiled = self._compile(Spec.model_validate(doc["spec"]))
            now = self._clock.now()
            # Firings enqueued under the old configuration are dropped (counted dropped_stale).
            doc["config_version"] = int(doc.get("config_version", 1)) + 1
            doc.update(updated_at=fmt(now), **caller.stamp())
            new = ScheduleRecord(
                schedule_id=schedule_id,
                doc=doc,
                generation=rec.generation,
                definition=doc["definition"],
                group=doc["group"],
                next_fire_at=_next_fire_at(compiled, doc["state"], now),
                version=rec.version,
            )
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
        """Delete; firings already enqueued are dropped by the worker, running runs go on."""
        self._store.delete(schedule_id)

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
            paused_at = parse(state["paused_at"]) if state.get("paused_at") else now
            window = timedelta(seconds=int(rec.doc["policies"]["catchup_window_seconds"]))
            missed = compiled.times(paused_at, MAX_COUNTED_MISSED, now)
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
            try:
                self._store.update(_record(rec, doc, cursor), expected_version=rec.version)
            except Conflict:
                continue
            if len(missed) > caught:
                self._store.add_counters(schedule_id, {"skipped_paused": len(missed) - caught})
            return self._after_change(schedule_id)
        raise Conflict("the schedule kept changing; try again", current=self.describe(schedule_id))

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
            compiled = self._compile(Spec.model_validate(doc["spec"]))
            try:
                return self._describe(
                    self._store.update(
                        _record(rec, doc, _next_fire_at(compiled, state, now)), expected_version=rec.version
                    )
                )
            except Conflict:
                continue

    def _compile(self, spec: Spec) -> CompiledSpec:
        named = self._calendars.resolve(spec.exclude_calendar_refs, "spec.exclude_calendar_refs")
        return compile_spec(spec, named_exclusions=[Calendar.model_validate(c) for c in named])

    def _check_definition(self, name: str, input_: Any) -> None:
        try:
            definition = self._definitions.record(name)
        except NotFound:
            raise InvalidArgument("definition", f"unknown definition {name!r}") from None
        check_input(definition.doc, input_)

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
            "running_runs": [r.run_id for r in recent if r.status == "running"],
            "last_fire_time": recent[0].doc["nominal_time"] if recent else info.get("last_fire_time"),
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
            "last_fire_time": doc.get("info", {}).get("last_fire_time"),
        }


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


def _record(rec: ScheduleRecord, doc: JSON, next_fire_at: datetime | None) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=rec.schedule_id,
        doc=doc,
        generation=rec.generation,
        definition=doc["definition"],
        group=doc["group"],
        next_fire_at=next_fire_at,
        version=rec.version,
    )


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


def _next_fire_at(compiled: CompiledSpec, state: JSON, now: datetime) -> datetime | None:
    """Where the schedule sits in the due index: its next firing, or its `paused_until`."""
    if state.get("paused"):
        until: str | None = state.get("paused_until")
        return parse(until) if until else None
    if state.get("remaining_actions") == 0:
        return None
    return compiled.next_after(now)
