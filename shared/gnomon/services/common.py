"""Small values the use cases share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gnomon.domain.errors import BadRequest

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Caller:
    """Who makes a change: the authenticated principal, and the optional `identity` they state."""

    principal: str
    identity: str | None = None

    def stamp(self) -> dict[str, Any]:
        """The authorship fields recorded on a changed resource."""
        return {"updated_by": self.principal, "identity": self.identity}


def page_size(raw: str | None) -> int:
    """Parse `?page_size=` (default 100, 1–1000); anything else → 400 bad_request."""
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise BadRequest(
            "page_size must be an integer from 1 to 1000", {"field": "query.page_size"}
        ) from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest("page_size must be from 1 to 1000", {"field": "query.page_size"})
    return size
