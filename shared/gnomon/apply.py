"""Declarative configuration: `gnomon apply -f gnomon.yaml`.

A file lists definitions and schedules as the API takes them:

    definitions:
      - name: nightly-report
        target: {type: http, url: "https://example.com/hook"}
    schedules:
      - schedule_id: nightly-report
        definition: nightly-report
        spec: {cron: ["0 2 * * *"], timezone: Europe/Riga}

`plan` compares the file with the deployment: a resource that is missing is created (`+`), one
that differs is replaced (`~`: definitions by PUT with the `version` that was read, schedules by
PUT with the `conflict_token` that was read — so nothing changed between plan and apply is
overwritten), an equal one is left alone (`=`); with `prune`, schedules and definitions that are
not in the file are deleted (`-`). `apply_plan` carries a plan out: definitions first (schedules
refer to them), then schedules, then the deletions, schedules before definitions.

Equality is judged on the effective values: each resource in the file is completed with the
API's defaults by the same pydantic models the server validates with, so leaving a field out of
the file means "the default", exactly as a PUT would store it. A schedule's `state` (paused,
note, remaining actions) is taken on create only: pausing is an operator's act that a later
apply must not undo.

`export_config` goes the other way (`gnomon export`): the deployment as such a file, with only
the fields a file declares and without the defaults, so that applying it is a no-op.
`config_json_schema` is the file's JSON Schema (`gnomon apply --schema`), from the same models.

JSON files always work; YAML needs PyYAML (`import yaml`).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, ValidationError

from gnomon.domain import errors as E
from gnomon.domain.model import DefinitionBody, ScheduleCreate
from gnomon.domain.spec import Spec, compile_spec

if TYPE_CHECKING:
    from gnomon.client import Client

Kind = Literal["definition", "schedule"]
Action = Literal["create", "update", "unchanged", "delete"]
SYMBOLS: dict[str, str] = {"create": "+", "update": "~", "unchanged": "=", "delete": "-"}
# What a schedule PUT takes; `state` is left to pause/unpause (see the module docstring).
SCHEDULE_COMPARED = ("group", "definition", "spec", "policies", "input", "tags", "memo", "search_attributes")
_DEFINITION_REQUEST_ONLY = {"request_id", "identity"}
_SCHEDULE_REQUEST_ONLY = {"request_id", "identity", "trigger_immediately", "initial_backfill"}
# The target network policy is the deployment's business (dev allows loopback, AWS does not); the
# local completion with defaults must not refuse what the server would take.
_PLACEHOLDER_URL = "https://gnomon.invalid/"


class ConfigError(ValueError):
    """The file is not a valid gnomon configuration; `errors` lists `{"field", "message"}`."""

    def __init__(self, errors: list[dict[str, str]], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        lines = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        super().__init__(f"{source}: {lines}")


class ApplyError(Exception):
    """A change failed; `applied` holds the changes made before it, `change` the failed one."""

    def __init__(self, change: Change, cause: Exception, applied: list[Change]) -> None:
        super().__init__(f"{change.line()}: {cause}")
        self.change = change
        self.cause = cause
        self.applied = applied


@dataclass
class Config:
    """The resources a file declares (as given, before defaults)."""

    definitions: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    source: str = "config"

    @classmethod
    def merge(cls, configs: list[Config]) -> Config:
        """Several files as one (names must stay unique across them)."""
        merged = cls(
            definitions=[d for c in configs for d in c.definitions],
            schedules=[s for c in configs for s in c.schedules],
            source=", ".join(c.source for c in configs),
        )
        check_unique(merged)
        return merged


@dataclass
class Change:
    """One line of a plan: what happens to one resource, and why."""

    kind: Kind
    name: str
    action: Action
    fields: list[str] = field(default_factory=list)  # changed top-level fields of an update
    desired: dict[str, Any] | None = None  # the file's resource with the API's defaults
    current: dict[str, Any] | None = None  # as read from the API when planning
    raw: dict[str, Any] | None = None  # the file's resource as written
    result: dict[str, Any] | None = None  # the API's answer once applied

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]

    def line(self) -> str:
        """`~ update schedule nightly (spec, tags)`."""
        text = f"{self.symbol} {self.action} {self.kind} {self.name}"
        return f"{text} ({', '.join(self.fields)})" if self.fields else text

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action, "fields": self.fields}


@dataclass
class Plan:
    """The changes in the order `apply_plan` makes them."""

    changes: list[Change]
    prune: bool = False

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SYMBOLS, 0)
        for c in self.changes:
            counts[c.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def lines(self) -> list[str]:
        return [c.line() for c in self.changes]

    def summary(self) -> str:
        n = self.counts()
        return (
            f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete, "
            f"{n['unchanged']} unchanged"
        )

    def to_json(self) -> dict[str, Any]:
        return {"changes": [c.to_json() for c in self.changes], "counts": self.counts()}


# --- reading files ------------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Read a configuration file (`-` = stdin): JSON, or YAML when PyYAML is installed."""
    if str(path) == "-":
        return parse_config(sys.stdin.read(), source="<stdin>")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([{"field": "", "message": f"cannot read it: {exc.strerror}"}], str(p)) from None
    return parse_config(text, source=str(p), json_only=p.suffix.lower() == ".json")


def parse_config(text: str, *, source: str = "config", json_only: bool = False) -> Config:
    """Parse the text of a configuration file (JSON, or YAML when PyYAML is installed)."""
    doc = _decode(text, source, json_only)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            [{"field": "", "message": "expected a mapping with definitions and schedules"}], source
        )
    errors = [
        {"field": key, "message": "unknown key (expected definitions, schedules)"}
        for key in doc
        if key not in ("definitions", "schedules")
    ]
    lists: dict[str, list[dict[str, Any]]] = {}
    for key in ("definitions", "schedules"):
        items = doc.get(key)
        if items is None:
            items = []
        if not isinstance(items, list):
            errors.append({"field": key, "message": "must be a list"})
            items = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                errors.append({"field": f"{key}[{i}]", "message": "must be a mapping"})
        lists[key] = [item for item in items if isinstance(item, dict)]
    if errors:
        raise ConfigError(errors, source)
    config = Config(definitions=lists["definitions"], schedules=lists["schedules"], source=source)
    check_unique(config)
    return config


def _decode(text: str, source: str, json_only: bool) -> Any:
    if json_only or text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError([{"field": "", "message": f"not valid JSON: {exc}"}], source) from None
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            [{"field": "", "message": "YAML needs PyYAML (pip install pyyaml); or write the file as JSON"}],
            source,
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([{"field": "", "message": f"not valid YAML: {exc}"}], source) from None


def check_unique(config: Config) -> None:
    """ConfigError when a name or schedule id is missing or appears twice."""
    errors = []
    for key, id_field, items in (
        ("definitions", "name", config.definitions),
        ("schedules", "schedule_id", config.schedules),
    ):
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            name = item.get(id_field)
            if not isinstance(name, str):
                errors.append({"field": f"{key}[{i}].{id_field}", "message": "required (a string)"})
            elif name in seen:
                errors.append(
                    {"field": f"{key}[{i}].{id_field}", "message": f"{name!r} repeats {key}[{seen[name]}]"}
                )
            else:
                seen[name] = i
    if errors:
        raise ConfigError(errors, config.source)


# --- completing with defaults -------------------------------------------------------------------


def normalize_definition(doc: Mapping[str, Any], where: str = "definition") -> dict[str, Any]:
    """The definition as the API would store it: every field with its effective value."""
    return _normalize(DefinitionBody, doc, where, _DEFINITION_REQUEST_ONLY)


def normalize_schedule(doc: Mapping[str, Any], where: str = "schedule") -> dict[str, Any]:
    """The schedule's stored fields (spec, action, policies, state) with their effective values.
    The spec is compiled too, so a cron that cannot fire is reported before anything changes."""
    normalized = _normalize(ScheduleCreate, doc, where, _SCHEDULE_REQUEST_ONLY)
    try:
        compile_spec(Spec.model_validate(normalized["spec"]), field_prefix=f"{where}.spec")
    except E.InvalidArgument as exc:
        raise ConfigError(list(exc.details)) from None
    return normalized


def _normalize(
    model: type[BaseModel], doc: Mapping[str, Any], where: str, exclude: set[str]
) -> dict[str, Any]:
    probe, urls = _without_urls(doc)
    try:
        value = model.model_validate(probe)
    except ValidationError as exc:
        raise ConfigError(
            [{"field": _loc(where, e["loc"]), "message": e["msg"]} for e in exc.errors()]
        ) from None
    dumped = value.model_dump(mode="json", exclude=exclude)
    for path, url in urls:
        _set(dumped, path, url)
    return dumped


def _without_urls(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[tuple[Any, ...], str]]]:
    probe = copy.deepcopy(dict(doc))
    urls: list[tuple[tuple[Any, ...], str]] = []
    target = probe.get("target")
    if isinstance(target, dict) and isinstance(target.get("url"), str):
        urls.append((("target", "url"), target["url"]))
        target["url"] = _PLACEHOLDER_URL
    notifications = probe.get("notifications")
    for i, n in enumerate(notifications if isinstance(notifications, list) else []):
        if isinstance(n, dict) and isinstance(n.get("webhook_url"), str):
            urls.append((("notifications", i, "webhook_url"), n["webhook_url"]))
            n["webhook_url"] = _PLACEHOLDER_URL
    return probe, urls


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _loc(where: str, loc: Iterable[Any]) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


# --- planning ------------------------------------------------------------------------------------


def plan(client: Client, config: Config, *, prune: bool = False) -> Plan:
    """Compare the file with the deployment (reads only)."""
    definitions = [normalize_definition(d, f"definitions[{i}]") for i, d in enumerate(config.definitions)]
    schedules = [normalize_schedule(s, f"schedules[{i}]") for i, s in enumerate(config.schedules)]
    def_changes: list[Change] = []
    for raw, desired in zip(config.definitions, definitions, strict=True):
        current = client.definitions.get(desired["name"])
        def_changes.append(_compare("definition", desired["name"], raw, desired, current, list(desired)))
    sched_changes: list[Change] = []
    for raw, desired in zip(config.schedules, schedules, strict=True):
        current = client.schedules.get(desired["schedule_id"])
        sched_changes.append(
            _compare("schedule", desired["schedule_id"], raw, desired, current, SCHEDULE_COMPARED)
        )
    deletions: list[Change] = []
    if prune:
        wanted_schedules = {s["schedule_id"] for s in schedules}
        wanted_definitions = {d["name"] for d in definitions}
        existing_schedules: set[str] = set(client.schedules.ids())
        existing_definitions: set[str] = set(client.definitions.names())
        deletions += [
            Change("schedule", sid, "delete") for sid in sorted(existing_schedules - wanted_schedules)
        ]
        doomed = sorted(existing_definitions - wanted_definitions)
        deletions += [Change("definition", name, "delete") for name in doomed]
        errors = [
            {
                "field": f"schedules[{i}].definition",
                "message": f"{s['definition']!r} is not in the file, so prune would delete it",
            }
            for i, s in enumerate(schedules)
            if s["definition"] in doomed
        ]
        if errors:
            raise ConfigError(errors, config.source)
    return Plan(def_changes + sched_changes + deletions, prune=prune)


def _compare(
    kind: Kind,
    name: str,
    raw: dict[str, Any],
    desired: dict[str, Any],
    current: dict[str, Any] | None,
    compared: Iterable[str],
) -> Change:
    if current is None:
        return Change(kind, name, "create", desired=desired, raw=raw)
    changed = [k for k in compared if k in desired and desired[k] != current.get(k)]
    action: Action = "update" if changed else "unchanged"
    return Change(kind, name, action, fields=changed, desired=desired, current=current, raw=raw)


# --- applying -------------------------------------------------------------------------------------


def apply_plan(
    client: Client,
    plan: Plan,
    *,
    identity: str | None = None,
    on_change: Callable[[Change], None] | None = None,
) -> list[Change]:
    """Carry out a plan; each change gets its `result`. A failing change raises `ApplyError`
    (the changes before it stay made); a resource changed since planning fails with `Conflict`."""
    done: list[Change] = []
    for change in plan.changes:
        try:
            change.result = _apply_one(client, change, identity)
        except (E.GnomonError, httpx.HTTPError) as exc:
            raise ApplyError(change, exc, done) from exc
        done.append(change)
        if on_change is not None:
            on_change(change)
    return done


def _apply_one(client: Client, change: Change, identity: str | None) -> dict[str, Any] | None:
    if change.action == "unchanged":
        return change.current
    if change.kind == "definition":
        if change.action == "delete":
            client.definitions.delete(change.name)
            return None
        assert change.raw is not None
        body = {k: v for k, v in change.raw.items() if k != "version"}
        if change.action == "create":
            return client.definitions.add(body, identity=identity)
        assert change.current is not None
        return client.definitions.replace(
            change.name, body, version=change.current["version"], identity=identity
        )
    handle = client.schedule(change.name)
    if change.action == "delete":
        handle.delete(identity=identity)
        return None
    assert change.raw is not None and change.desired is not None
    if change.action == "create":
        return client.schedules.create(change.raw, identity=identity).last_description
    assert change.current is not None
    update: dict[str, Any] = {k: change.desired[k] for k in SCHEDULE_COMPARED}
    update["conflict_token"] = change.current["conflict_token"]
    answer: dict[str, Any] = client.put(
        f"/v1/schedules/{change.name}", client._mutation(update, identity, None)
    )
    return answer


# --- exporting --------------------------------------------------------------------------------------


def export_config(client: Client, group: str | None = None) -> dict[str, Any]:
    """The deployment's definitions and schedules as an apply file (`{"definitions", "schedules"}`),
    so that applying it changes nothing.

    Only what a file declares is kept — no server fields (version, conflict_token, generation,
    info, signing_secret, timestamps…) — and values equal to the API's defaults are left out. A
    schedule's `state` is kept only when it is not the default one (paused, or with remaining
    actions): apply takes it on create only. With `group`, the schedules of that group and the
    definitions they use."""
    schedules: list[dict[str, Any]] = []
    for summary in client.schedules.list(group=group):
        described = client.schedules.get(summary["schedule_id"])
        if described is not None:
            schedules.append(export_schedule(described))
    schedules.sort(key=lambda s: str(s["schedule_id"]))
    if group is None:
        names = client.definitions.names()
    else:
        names = sorted({str(s["definition"]) for s in schedules})
    definitions: list[dict[str, Any]] = []
    for name in names:
        current = client.definitions.get(name)
        if current is not None:
            definitions.append(export_definition(current))
    return {"definitions": definitions, "schedules": schedules}


def export_definition(current: Mapping[str, Any]) -> dict[str, Any]:
    """A definition as read from the API → its entry in an apply file."""
    fields = set(DefinitionBody.model_fields) - _DEFINITION_REQUEST_ONLY
    doc = {k: v for k, v in current.items() if k in fields}
    return _minimal(DefinitionBody, doc, "definition", _DEFINITION_REQUEST_ONLY, keep={"name", "target"})


def export_schedule(current: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule as described by the API → its entry in an apply file."""
    doc = {k: current[k] for k in ("schedule_id", *SCHEDULE_COMPARED) if k in current}
    state = current.get("state")
    if isinstance(state, dict) and (state.get("paused") or state.get("remaining_actions") is not None):
        doc["state"] = state
    return _minimal(
        ScheduleCreate,
        doc,
        "schedule",
        _SCHEDULE_REQUEST_ONLY,
        keep={"schedule_id", "definition", "spec"},
    )


def _minimal(
    model: type[BaseModel], doc: Mapping[str, Any], where: str, exclude: set[str], keep: set[str]
) -> dict[str, Any]:
    """`doc` without the values that are the model's defaults (at any depth), in field order."""
    probe, urls = _without_urls(doc)
    try:
        value = model.model_validate(probe)
    except ValidationError as exc:
        raise ConfigError(
            [{"field": _loc(where, e["loc"]), "message": e["msg"]} for e in exc.errors()]
        ) from None
    dumped = value.model_dump(mode="json", exclude=exclude, exclude_defaults=True)
    full = value.model_dump(mode="json", exclude=exclude)
    for key in keep:
        if key not in dumped and key in full:
            dumped[key] = full[key]
    # Defaults that depend on other fields (a task target's timeout) are not the field's static
    # default: a field is also left out when the document means the same without it.
    for key in [k for k in dumped if k not in keep and k in probe]:
        try:
            alone = model.model_validate({k: v for k, v in probe.items() if k != key})
        except ValidationError:
            continue
        if alone.model_dump(mode="json", exclude=exclude) == full:
            del dumped[key]
    for path, url in urls:
        _set(dumped, path, url)
    return {k: dumped[k] for k in full if k in dumped}


def dump_config(doc: Mapping[str, Any], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """The text of an apply file: YAML (needs PyYAML) or JSON."""
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    import yaml

    text: str = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


# --- JSON Schema ------------------------------------------------------------------------------------


def config_json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) of the apply file, from the pydantic models the API validates with
    (so editors can complete and check `gnomon.yaml`). It checks the shape; apply still checks
    what a schema cannot say (unique names, crons that can fire, URL policy)."""
    from pydantic.json_schema import models_json_schema

    refs, top = models_json_schema(
        [(DefinitionBody, "validation"), (ScheduleCreate, "validation")], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = top.get("$defs", {})
    # request_id / identity belong to one request (`apply --identity`), not to a file; a
    # schedule's trigger_immediately / initial_backfill are kept: apply passes them on create.
    exclude = {"request_id", "identity"}
    for model in (DefinitionBody, ScheduleCreate):
        schema = defs[model.__name__]
        for name in exclude:
            schema.get("properties", {}).pop(name, None)
        if "required" in schema:
            schema["required"] = [r for r in schema["required"] if r not in exclude]

    def items(model: type[BaseModel]) -> dict[str, Any]:
        return {"anyOf": [{"type": "array", "items": refs[(model, "validation")]}, {"type": "null"}]}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gnomon apply file",
        "description": "Definitions and schedules for `gnomon apply -f FILE`.",
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {"definitions": items(DefinitionBody), "schedules": items(ScheduleCreate)},
        "$defs": defs,
    }
