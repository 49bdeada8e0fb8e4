"""Per-group authorization: which schedule groups an authenticated caller may touch (SECURITY.md).

A caller is *restricted* when its JWT carries a `gnomon:groups` (or `groups`) claim, or when its
IAM principal — the user, or the role behind an assumed-role session — carries a `gnomon:groups`
tag. The value lists group names separated by spaces or commas (IAM tag values cannot hold
commas; API Gateway hands a JWT array claim over as the string `"[a b]"`). A caller with neither
is unrestricted: the authorizer (IAM or JWT) already decided it may use gnomon at all.

API Gateway's IAM authorizer passes the caller's ARN but not its tags (`requestContext.authorizer
.iam` holds accessKey, accountId, callerId, principalOrgId, userArn, userId), so tags are read
from IAM by the API function (`iam:ListUserTags` / `iam:ListRoleTags`) and cached; session tags
are not visible that way and do not count.

What a restricted caller may do:

| resource | rule |
| --- | --- |
| a schedule (describe, update, delete, pause, unpause, trigger, backfill) | its group is listed; an update may move it only to a listed group |
| schedule create | the body's `group` (default `default`) is listed |
| a run of a schedule (get, history, cancel, terminate, retry, signal, query, complete, fail) | the schedule's group is listed; a run whose schedule is gone is refused; runs without a schedule (execute, events) are not group-scoped |
| lists (schedules, runs, upcoming, groups) | `?group=` / `?schedule=` must be listed; without them, items of other groups are left out (pages may be short) |
| bulk | `filter.group` must be given and listed |
| group quotas (`PUT /v1/groups/{group}`), definition and calendar changes, execute, purge, DLQ, operators, events | refused: they act across groups (reads of definitions and calendars are allowed) |
| tasks, topics, leases, stats, health, preview | not group-scoped |

Refusals are 403 `forbidden` in the contract's error shape, before the use case runs.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from gnomon.domain.errors import Forbidden, NotFound

GROUPS_CLAIMS = ("gnomon:groups", "groups")
GROUPS_TAG = "gnomon:groups"
TAG_CACHE_SECONDS = 300.0

TagSource = Callable[[str], Mapping[str, str] | None]
"""The tags of an IAM principal ARN (None: not an IAM user or role, or unknown)."""

_SPLIT = re.compile(r"[\s,]+")


def parse_groups(raw: Any) -> frozenset[str]:
    """Group names from a claim or tag value: a list, `"a b"`, `"a,b"` or API Gateway's `"[a b]"`."""
    if isinstance(raw, list | tuple | set | frozenset):
        items: Iterable[Any] = raw
    else:
        text = str(raw).strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
            if text.lstrip().startswith('"'):  # a JSON array
                try:
                    items = json.loads("[" + text + "]")
                except ValueError:
                    items = _SPLIT.split(text)
            else:
                items = _SPLIT.split(text)
        else:
            items = _SPLIT.split(text)
    return frozenset(str(g).strip().strip('"') for g in items if str(g).strip().strip('"'))


def _default_tags() -> TagSource | None:
    """IAM itself inside a Lambda function in AWS; nowhere in the dev stack and the tests (their
    fixed local principal has no tags)."""
    in_aws = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and not os.environ.get("GNOMON_DEV_AWS_ENDPOINT")
    if not in_aws or os.environ.get("GNOMON_STORE") == "memory":
        return None
    from gnomon.adapters.iam_tags import IamPrincipalTags

    return IamPrincipalTags()


class CallerScope:
    """Resolves the groups a request's caller is restricted to (None = unrestricted)."""

    def __init__(self, tags: TagSource | None = None, *, ttl: float = TAG_CACHE_SECONDS) -> None:
        self.tags = tags if tags is not None else _default_tags()
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str] | None]] = {}
        self._lock = threading.Lock()

    def groups(self, event: Mapping[str, Any]) -> frozenset[str] | None:
        auth = (event.get("requestContext") or {}).get("authorizer") or {}
        claims = (auth.get("jwt") or {}).get("claims")
        if isinstance(claims, Mapping):
            for name in GROUPS_CLAIMS:
                if name in claims:
                    return parse_groups(claims[name])
            return None
        arn = (auth.get("iam") or {}).get("userArn")
        if not arn or self.tags is None:
            return None
        return self._tag_groups(arn)

    def _tag_groups(self, arn: str) -> frozenset[str] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(arn)
        if hit is not None and hit[0] > now:
            return hit[1]
        assert self.tags is not None
        try:
            tags = self.tags(arn)
        except Exception:
            # Fail closed: a caller whose tags cannot be read may be a restricted one.
            raise Forbidden("the caller's group tags could not be read") from None
        value = (tags or {}).get(GROUPS_TAG)
        groups = parse_groups(value) if value is not None else None
        with self._lock:
            self._cache[arn] = (now + self._ttl, groups)
        return groups


_scope: CallerScope | None = None


def current() -> CallerScope:
    """The process-wide scope resolver, built on first use."""
    global _scope
    if _scope is None:
        _scope = CallerScope()
    return _scope


def configure(tags: TagSource | None) -> None:
    """Set where IAM principal tags come from (tests; None = back to the default)."""
    global _scope
    _scope = CallerScope(tags)


# --- enforcement ---------------------------------------------------------------------------------

# Routes that act across groups: unrestricted callers only (reads of the catalog stay open).
_CROSS_GROUP = (
    ("POST", "/v1/definitions"),
    ("PUT", "/v1/definitions/<name>"),
    ("DELETE", "/v1/definitions/<name>"),
    ("POST", "/v1/definitions/<name>/execute"),
    ("DELETE", "/v1/definitions/<name>/runs"),
    ("POST", "/v1/calendars"),
    ("PUT", "/v1/calendars/<name>"),
    ("DELETE", "/v1/calendars/<name>"),
    ("PUT", "/v1/groups/<group>"),
    ("GET", "/v1/dlq"),
    ("POST", "/v1/dlq/redrive"),
    ("POST", "/v1/events"),
    ("POST", "/v1/operators/<definition>/restart"),
)
_FILTERED_LISTS = {"/v1/schedules", "/v1/runs", "/v1/upcoming", "/v1/groups"}


def _require(allowed: frozenset[str], group: Any, what: str) -> None:
    if not isinstance(group, str) or group not in allowed:
        raise Forbidden(
            f"{what} belongs to group {group!r}, which this caller may not touch",
            {"group": group, "allowed_groups": sorted(allowed)},
        )


class _Groups:
    """Group lookups for one request (each schedule read at most once)."""

    def __init__(self) -> None:
        self._schedules: dict[str, str | None] = {}

    def of_schedule(self, schedule_id: str) -> str | None:
        """The schedule's group; None when it does not exist."""
        if schedule_id not in self._schedules:
            from gnomon.wiring import services

            try:
                rec = services().schedule_store.get(schedule_id)
                self._schedules[schedule_id] = rec.group
            except NotFound:
                self._schedules[schedule_id] = None
        return self._schedules[schedule_id]

    def of_run(self, run_id: str) -> tuple[bool, str | None]:
        """(exists, group of its schedule); a run without a schedule has group None."""
        from gnomon.wiring import services

        try:
            doc = services().run_store.get(run_id).doc
        except NotFound:
            return False, None
        schedule_id = doc.get("schedule_id")
        if not schedule_id:
            return True, None
        group = self.of_schedule(str(schedule_id))
        if group is None:
            raise Forbidden(f"run {run_id!r} belongs to a deleted schedule", {"schedule_id": schedule_id})
        return True, group


def enforce_groups(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """Powertools middleware: refuse what a restricted caller may not touch, and leave other
    groups' items out of the lists it reads (see the module's table)."""
    allowed = current().groups(app.current_event.raw_event)
    route = app.context.get("_route")
    if allowed is None or route is None:
        return next_middleware(app)
    method, path = route.method.upper(), route.path
    if (method, path) in _CROSS_GROUP:
        raise Forbidden(f"{method} {path} acts across groups: only callers without a group restriction may")
    # `_route_args` holds every handler argument (query ones too): keep the path's.
    args = {k: v for k, v in (app.context.get("_route_args") or {}).items() if f"<{k}>" in path}
    query = app.current_event.query_string_parameters or {}
    lookups = _Groups()

    if "group" in query:
        _require(allowed, query["group"], "the filter")
    if "group" in args:
        _require(allowed, args["group"], "the group")
    if "schedule" in query and (group := lookups.of_schedule(query["schedule"])) is not None:
        _require(allowed, group, f"schedule {query['schedule']!r}")
    schedule_id = args.get("schedule_id")
    if schedule_id is not None and (group := lookups.of_schedule(schedule_id)) is not None:
        _require(allowed, group, f"schedule {schedule_id!r}")
    if (run_id := args.get("run_id")) is not None:
        exists, group = lookups.of_run(run_id)
        if exists and group is not None:
            _require(allowed, group, f"run {run_id!r}")

    body = app.current_event.json_body if method in ("POST", "PUT") and app.current_event.body else {}
    body = body if isinstance(body, dict) else {}
    if (method, path) == ("POST", "/v1/schedules"):
        _require(allowed, body.get("group") or "default", "the new schedule")
    if (method, path) == ("PUT", "/v1/schedules/<schedule_id>") and body.get("group") is not None:
        _require(allowed, body["group"], "the schedule's new group")
    if (method, path) == ("POST", "/v1/schedules/bulk"):
        _require(allowed, (body.get("filter") or {}).get("group"), "a bulk action's filter")

    response = next_middleware(app)
    if method == "GET" and path in _FILTERED_LISTS and response.status_code == 200:
        response = _filter_items(response, path, allowed, lookups)
    return response


def _filter_items(response: Response, path: str, allowed: frozenset[str], lookups: _Groups) -> Response:
    try:
        answer = json.loads(response.body)
    except (TypeError, ValueError):
        return response
    items = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return response

    def visible(item: dict[str, Any]) -> bool:
        if path == "/v1/runs":
            sid = item.get("schedule_id")
            return not sid or lookups.of_schedule(str(sid)) in allowed
        return item.get("group") in allowed

    answer["items"] = [item for item in items if isinstance(item, dict) and visible(item)]
    response.body = json.dumps(answer, separators=(",", ":"), ensure_ascii=False)
    return response
