"""Use cases for definitions and named calendars: versioned documents with an audit trail."""

from __future__ import annotations

import secrets
from typing import Any

from gnomon.domain.errors import Conflict, InUse, InvalidArgument, NotFound
from gnomon.domain.model import DefinitionBody, DefinitionReplace
from gnomon.domain.timefmt import fmt
from gnomon.ports import JSON, CatalogRecord, CatalogStore, Clock, ScheduleStore
from gnomon.services.common import Caller
from gnomon.services.pagetoken import PageTokens

DEFINITION = "definition"
CALENDAR = "calendar"
_REQUEST_ONLY = {"request_id", "identity", "version"}


class Definitions:
    """Create, read, replace, delete and list job definitions; every version is kept."""

    def __init__(
        self, catalog: CatalogStore, schedules: ScheduleStore, clock: Clock, tokens: PageTokens
    ) -> None:
        self._catalog = catalog
        self._schedules = schedules
        self._clock = clock
        self._tokens = tokens

    def create(self, body: DefinitionBody, caller: Caller) -> JSON:
        """Store version 1 and answer it once with its `signing_secret`."""
        now = fmt(self._clock.now())
        doc = body.model_dump(mode="json", exclude=_REQUEST_ONLY)
        doc.update(created_at=now, updated_at=now, signing_secret=secrets.token_urlsafe(32), **caller.stamp())
        rec = self._catalog.create(DEFINITION, body.name, doc, tags=body.tags)
        view = definition_view(rec)
        view["signing_secret"] = doc["signing_secret"]
        return view

    def get(self, name: str) -> JSON:
        """The current version."""
        return definition_view(self._catalog.get(DEFINITION, name))

    def record(self, name: str) -> CatalogRecord:
        """The stored record (for other use cases)."""
        return self._catalog.get(DEFINITION, name)

    def replace(self, name: str, body: DefinitionReplace, caller: Caller) -> JSON:
        """Replace the definition whole; `version` (when given) must be the current one."""
        if body.name != name:
            raise InvalidArgument("name", "must equal the name in the path")
        current = self._catalog.get(DEFINITION, name)
        doc = body.model_dump(mode="json", exclude=_REQUEST_ONLY)
        doc.update(
            created_at=current.doc.get("created_at"),
            updated_at=fmt(self._clock.now()),
            signing_secret=current.doc.get("signing_secret"),
            **caller.stamp(),
        )
        try:
            rec = self._catalog.replace(DEFINITION, name, doc, expected_version=body.version, tags=body.tags)
        except Conflict:
            raise Conflict("version does not match the current definition", current=self.get(name)) from None
        return definition_view(rec)

    def delete(self, name: str) -> None:
        """Delete it unless schedules use it (409 in_use names them)."""
        self._catalog.get(DEFINITION, name)
        users = self._schedules.ids_using_definition(name, limit=100)
        if users:
            raise InUse(f"definition {name} is used by {len(users)} schedule(s)", {"schedules": users})
        self._catalog.delete(DEFINITION, name)

    def list(self, *, tag: str | None, page_token: str | None, page_size: int) -> JSON:
        """Current definitions sorted by name."""
        filters = {"tag": tag}
        after = self._tokens.decode(page_token, "definitions", filters)
        page = self._catalog.list(DEFINITION, after=after, limit=page_size, tag=tag)
        return {
            "items": [definition_summary(r) for r in page.items],
            "next_page_token": self._tokens.encode(page.last_key, "definitions", filters),
        }

    def versions(self, name: str, *, page_token: str | None, page_size: int) -> JSON:
        """Every version, newest first, with who changed it and when."""
        scope = f"definition-versions/{name}"
        after = self._tokens.decode(page_token, scope, {})
        page = self._catalog.versions(DEFINITION, name, after=after, limit=page_size)
        return {
            "items": [definition_view(r) for r in page.items],
            "next_page_token": self._tokens.encode(page.last_key, scope, {}),
        }


def definition_view(rec: CatalogRecord) -> JSON:
    """A definition as the API answers it: never its signing secret, never secret values."""
    view = {k: v for k, v in rec.doc.items() if k != "signing_secret"}
    view["version"] = rec.version
    return view


def definition_summary(rec: CatalogRecord) -> JSON:
    view = definition_view(rec)
    view.pop("input_schema", None)
    return view


class Calendars:
    """Named reusable calendars (e.g. holidays) referenced by `exclude_calendar_refs`."""

    def __init__(self, catalog: CatalogStore, clock: Clock, tokens: PageTokens) -> None:
        self._catalog = catalog
        self._clock = clock
        self._tokens = tokens

    def resolve(self, names: list[str], field: str) -> list[Any]:
        """The calendars of each named calendar, in order; an unknown name → 422 on `field[i]`."""
        found: list[Any] = []
        for i, name in enumerate(names):
            try:
                found.extend(self._catalog.get(CALENDAR, name).doc.get("calendars", []))
            except NotFound:
                raise InvalidArgument(f"{field}[{i}]", f"unknown calendar {name!r}") from None
        return found
