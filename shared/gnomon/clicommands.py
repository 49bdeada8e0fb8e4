"""The API verbs of the CLI: `METHOD /v1/<collection>[/{x}[/<action>]]` is
`gnomon <collection> <verb> [X]` (CONTRACT.md §1).

list → GET /v1/c · get → GET /v1/c/X · create → POST /v1/c · update → PUT /v1/c/X ·
delete → DELETE /v1/c/X · any other verb → POST /v1/c/X/verb (or POST /v1/c/verb without X).

Besides those: `schedules preview CRON…` (a positional cron), `schedules backfill ID --start
--end` (with a progress bar), `runs watch` (a live table), `apply -f FILE` (declarative
configuration, `gnomon.apply`; `apply --schema` prints the file's JSON Schema) and `export`
(the deployment as such a file). Every command prints a readable table by default and the API's
JSON with `--output json`; it reaches the API at `--url` / `$GNOMON_URL`, or at the `ApiUrl`
output of a CloudFormation stack (`--stack`), signing with SigV4 for a deployed stack
(`--profile`, `--region`) or sending a bearer `--token`.

Exit codes: 0 ok · 1 error · 2 usage (or an invalid file) · 3 not found · 4 conflict (any 409).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gnomon.domain import errors as E

if TYPE_CHECKING:
    import httpx
    from rich.console import Console, RenderableType

    from gnomon.client import Client

# collection → (its verbs, help)
COLLECTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "definitions": (("list", "get", "create", "update", "delete", "versions", "execute"), "Job definitions."),
    "schedules": (
        (
            "list",
            "get",
            "create",
            "update",
            "delete",
            "pause",
            "unpause",
            "trigger",
            "backfill",
            "preview",
            "bulk",
        ),
        "Schedules: spec + action + policies + state.",
    ),
    "calendars": (("list", "get", "create", "update", "delete"), "Named reusable calendars."),
    "groups": (("list", "get", "update"), "Schedule groups and their quotas."),
    "runs": (
        ("list", "get", "history", "cancel", "terminate", "retry", "signal", "query", "complete", "fail"),
        "Runs of definitions.",
    ),
    "tasks": (
        ("list", "get", "create", "extend-lease", "complete", "fail", "snooze", "release", "revoke-lease"),
        "Leased tasks for external workers.",
    ),
    "topics": (("get", "reserve"), "Task topics."),
    "leases": (("list",), "Tasks leased or snoozed now."),
    "events": (("create",), "Events for event-triggered definitions."),
    "operators": (("list", "get", "restart"), "Event-triggered definitions."),
    "dlq": (("list", "redrive"), "Dead-lettered firings."),
    "upcoming": (("list",), "Firings due in a window across all schedules."),
    "stats": (("list",), "Running, pending, completed and failed today."),
}
# `GET` actions (everything else is POST), and actions on the collection itself (no X)
_GET_ACTIONS = {("definitions", "versions"), ("runs", "history")}
_COLLECTION_ACTIONS = {("schedules", "preview"), ("schedules", "bulk"), ("dlq", "redrive")}
# Verbs with a command of their own below (which still takes --data).
_CUSTOM = {("schedules", "preview"), ("schedules", "backfill")}

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 0, 1, 2, 3, 4

# Columns of list tables per collection (dotted paths reach into items); others show every scalar.
LIST_COLUMNS: dict[str, tuple[str, ...]] = {
    "definitions": ("name", "target.type", "version", "tags", "updated_at", "description"),
    "schedules": ("schedule_id", "group", "definition", "paused", "next_fire_time", "last_fire_time", "note"),
    "runs": (
        "run_id",
        "status",
        "trigger",
        "definition",
        "schedule_id",
        "nominal_time",
        "duration_ms",
        "attempt",
    ),
    "tasks": ("task_id", "topic", "status", "attempts", "lease.owner", "lease.expires_at", "created_at"),
    "leases": ("task_id", "topic", "status", "lease.owner", "lease.expires_at", "not_before"),
}
STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "pending": "yellow",
    "failed": "red",
    "timed_out": "red",
    "canceled": "magenta",
    "terminated": "magenta",
    "skipped": "dim",
}


def route(collection: str, verb: str, x: str | None) -> tuple[str, str]:
    """The (method, path) of a CLI verb."""
    base = f"/v1/{collection}"
    if verb == "list":
        return "GET", base
    if verb == "create":
        return "POST", base
    if verb in ("get", "update", "delete"):
        if x is None:
            if verb == "get" and collection in ("stats",):
                return "GET", base
            raise typer.BadParameter(f"`{verb}` needs the id or name")
        return {"get": "GET", "update": "PUT", "delete": "DELETE"}[verb], f"{base}/{x}"
    method = "GET" if (collection, verb) in _GET_ACTIONS else "POST"
    return method, f"{base}/{x}/{verb}" if x is not None else f"{base}/{verb}"


# --- connection -----------------------------------------------------------------------------------

UrlOpt = Annotated[str | None, typer.Option("--url", help="The API's base URL [env: GNOMON_URL].")]
StackOpt = Annotated[
    str | None,
    typer.Option("--stack", help="Use the ApiUrl output of this CloudFormation stack [env: GNOMON_STACK]."),
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="AWS profile: sign requests with SigV4.")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region: sign requests with SigV4.")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Send `Authorization: Bearer TOKEN` [env: GNOMON_TOKEN].")
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table or json.")]
DataOpt = Annotated[str | None, typer.Option("--data", "-d", help="JSON body, @file or - for stdin.")]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Query parameter key=value (repeatable).")
]


@dataclass
class Connection:
    """Where the API is and how to authenticate, resolved from flags and the environment."""

    url: str | None
    auth: str | httpx.Auth | None = None
    stack: str | None = None


def resolve_connection(
    ctx: typer.Context | None,
    url: str | None = None,
    stack: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    token: str | None = None,
) -> Connection:
    """A command's flags, else the same flags given before the command (`gnomon --stack prod
    runs list`), else `$GNOMON_URL` / `$GNOMON_STACK` / `$GNOMON_TOKEN`. A stack's API and an
    explicit profile or region mean SigV4."""
    root = ctx.find_root().params if ctx is not None else {}
    if not (url or stack):  # the command's choice of API wins over the root's as a whole
        url, stack = root.get("url"), root.get("stack")
    profile = profile or root.get("profile")
    region = region or root.get("region")
    token = token or root.get("token") or os.environ.get("GNOMON_TOKEN") or None
    if url and stack:
        raise typer.BadParameter("give --url or --stack, not both")
    if not url and not stack:
        url = os.environ.get("GNOMON_URL") or None
        stack = None if url else (os.environ.get("GNOMON_STACK") or None)
    if stack:
        from gnomon.adapters.cloudformation import api_url

        url = api_url(stack, region=region, profile=profile)
    sigv4 = bool(stack or profile or region)
    if sigv4 and token:
        raise typer.BadParameter("give --token or SigV4 (--profile/--region/--stack), not both")
    auth: str | httpx.Auth | None = token
    if sigv4:
        from gnomon.adapters.sigv4 import SigV4Auth

        auth = SigV4Auth(region=region, profile=profile)
    return Connection(url=url, auth=auth, stack=stack)


def open_client(conn: Connection) -> Client:
    """The client a command talks through (tests swap in an in-process transport here)."""
    from gnomon.client import Client

    return Client(conn.url, conn.auth)


@contextmanager
def connected(
    ctx: typer.Context | None,
    output: str,
    url: str | None = None,
    stack: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    token: str | None = None,
) -> Iterator[Client]:
    """A client for the command; API and connection errors become messages and exit codes."""
    if output not in ("table", "json"):
        raise typer.BadParameter("--output is table or json")
    from gnomon.adapters.cloudformation import StackOutputMissing
    from gnomon.apply import ApplyError, ConfigError

    try:
        conn = resolve_connection(ctx, url, stack, profile, region, token)
        with open_client(conn) as client:
            yield client
    except ConfigError as exc:
        _fail(output, {"error": {"code": "invalid_config", "message": str(exc), "details": exc.errors}})
        raise typer.Exit(EXIT_USAGE) from None
    except ApplyError as exc:
        cause = exc.cause
        if isinstance(cause, E.GnomonError):
            _fail(output, cause.body(), prefix=f"{exc.change.line()}: ")
            raise typer.Exit(_exit_code(cause)) from None
        _fail(output, _plain_error(cause), prefix=f"{exc.change.line()}: ")
        raise typer.Exit(EXIT_ERROR) from None
    except E.GnomonError as exc:
        _fail(output, exc.body())
        raise typer.Exit(_exit_code(exc)) from None
    except StackOutputMissing as exc:
        _fail(output, {"error": {"code": "stack", "message": str(exc), "details": {}}})
        raise typer.Exit(EXIT_ERROR) from None
    except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
        raise
    except Exception as exc:  # connection refused, timeouts, missing credentials
        if type(exc).__module__.startswith(("httpx", "httpcore", "botocore")) or isinstance(
            exc, OSError | RuntimeError
        ):
            _fail(output, _plain_error(exc))
            raise typer.Exit(EXIT_ERROR) from None
        raise


def _exit_code(exc: E.GnomonError) -> int:
    from gnomon.client import http_status

    if isinstance(exc, E.NotFound):
        return EXIT_NOT_FOUND
    return EXIT_CONFLICT if http_status(exc) == 409 else EXIT_ERROR


def _plain_error(exc: BaseException) -> dict[str, Any]:
    return {"error": {"code": "client", "message": f"{type(exc).__name__}: {exc}", "details": {}}}


def _fail(output: str, body: dict[str, Any], prefix: str = "") -> None:
    """An error on stderr: the API's error JSON with --output json, a readable line otherwise."""
    if output == "json":
        typer.echo(json.dumps(body, ensure_ascii=False), err=True)
        return
    err = body.get("error", {})
    typer.echo(f"error: {prefix}{err.get('code')}: {err.get('message')}", err=True)
    details = err.get("details")
    if isinstance(details, list):
        for d in details:
            if isinstance(d, dict) and "field" in d:
                typer.echo(f"  {d['field']}: {d.get('message')}", err=True)
    elif isinstance(details, dict) and err.get("code") != "not_found":
        extra = {k: v for k, v in details.items() if k not in ("current",) and v not in (None, {}, [])}
        if extra:
            typer.echo(f"  {json.dumps(extra, ensure_ascii=False)}", err=True)


# --- input ----------------------------------------------------------------------------------------


def _read_data(data: str | None) -> Any:
    if data is None:
        return None
    if data == "-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as exc:
            raise typer.BadParameter(f"--data {data}: {exc.strerror}") from None
    else:
        text = data
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--data is not JSON: {exc}") from None


def _params(values: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for v in values or []:
        if "=" not in v:
            raise typer.BadParameter(f"--param {v!r}: expected key=value")
        k, _, val = v.partition("=")
        out.append((k, val))
    return out


def cli_time(value: str | None, name: str) -> str | None:
    """A time flag: RFC 3339 with an offset, `now`, or a bare date (midnight UTC)."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() == "now":
        return _utc(datetime.now(UTC).replace(microsecond=0))
    try:
        if "T" not in text.upper():
            return _utc(datetime.fromisoformat(text).replace(tzinfo=UTC))
        from gnomon.domain.timefmt import parse

        return _utc(parse(text))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{name} {value!r}: {exc} (RFC 3339 with an offset, or YYYY-MM-DD)"
        ) from None


def _utc(t: datetime) -> str:
    from gnomon.domain.timefmt import fmt

    out = fmt(t)
    assert out is not None
    return out


# --- output ---------------------------------------------------------------------------------------


def console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=False)


def print_answer(answer: Any, output: str, collection: str | None = None) -> None:
    """The API's answer: JSON, or a table (lists), a time list (fire_times) or a field table."""
    if answer is None:
        return
    if output == "json":
        typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    out = console()
    if isinstance(answer, dict) and isinstance(answer.get("items"), list):
        out.print(items_table(answer["items"], collection))
        if answer.get("next_page_token"):
            out.print(f"next page: --param page_token={answer['next_page_token']}", soft_wrap=True)
    elif isinstance(answer, dict) and isinstance(answer.get("fire_times"), list) and len(answer) <= 2:
        out.print(times_table(answer["fire_times"]))
        if "runs_created" in answer:
            out.print(f"runs created: {answer['runs_created']}")
    elif isinstance(answer, dict):
        out.print(fields_table(answer))
    else:
        out.print_json(json.dumps(answer, ensure_ascii=False))


def dig(item: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list) and all(not isinstance(x, dict | list) for x in v):
        return ", ".join(map(str, v))
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return str(v)


def items_table(items: list[Any], collection: str | None, title: str | None = None) -> RenderableType:
    from rich import box
    from rich.table import Table

    if not items:
        empty = f"[dim]no {collection or 'items'}[/dim]"
        return empty if title is None else f"{_escape(title)}\n{empty}"
    cols = LIST_COLUMNS.get(collection or "")
    if cols is None:
        first = items[0] if isinstance(items[0], dict) else {}
        cols = tuple(k for k in first if not isinstance(first[k], dict) or k == "tags") or ("value",)
    table = Table(
        title=_escape(title) if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for i, c in enumerate(cols):
        # ids (what one copies from a table) and times are never cut short; the rest may be
        whole = i == 0 or c.endswith(("_time", "_at")) or c == "status"
        table.add_column(c, no_wrap=whole, min_width=len(c) if whole else None)
    for item in items:
        row = []
        for c in cols:
            value = dig(item, c) if isinstance(item, dict) else item
            text = cell(value)
            style = STATUS_STYLES.get(text) if c == "status" else None
            row.append(f"[{style}]{text}[/{style}]" if style else _escape(text))
        table.add_row(*row)
    return table


def fields_table(doc: dict[str, Any]) -> RenderableType:
    """One resource as `field  value` rows, nested objects flattened to dotted names."""
    from rich.table import Table

    table = Table("field", "value", show_header=False, box=None, pad_edge=False)
    for key, value in _flatten(doc):
        table.add_row(f"[bold]{key}[/bold]", _escape(cell(value)))
    return table


def _flatten(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def times_table(times: list[str], tz: str | None = None) -> RenderableType:
    from rich.table import Table

    if not times:
        return "[dim]no fire times[/dim]"
    zone = _zone(tz)
    table = Table("#", "UTC", *([f"{tz}"] if zone else []), title_justify="left")
    for i, t in enumerate(times, 1):
        row = [str(i), t]
        if zone:
            local = datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(zone)
            row.append(local.strftime("%a %Y-%m-%d %H:%M:%S %Z"))
        table.add_row(*row)
    return table


def _zone(tz: str | None) -> Any:
    if not tz or tz.upper() == "UTC":
        return None
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(tz)
    except Exception:  # an unknown zone: the API says so in its 422
        return None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# --- the generic verbs ----------------------------------------------------------------------------


def _make_command(collection: str, verb: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        x: Annotated[str | None, typer.Argument(metavar="[X]", help="The id or name.")] = None,
        data: DataOpt = None,
        param: ParamOpt = None,
        output: OutputOpt = "table",
        url: UrlOpt = None,
        stack: StackOpt = None,
        profile: ProfileOpt = None,
        region: RegionOpt = None,
        token: TokenOpt = None,
    ) -> None:
        method, path = route(collection, verb, x)
        body = _read_data(data)
        if body is None and method in ("POST", "PUT"):
            body = {}
        with connected(ctx, output, url, stack, profile, region, token) as client:
            answer = client.request(method, path, json=body, params=_params(param))
        print_answer(answer, output, collection)

    command.__doc__ = f"{verb.upper() if verb in ('list', 'get') else verb} {collection}"
    return command


def register(app: typer.Typer) -> None:
    """Add `gnomon <collection> <verb> [X]` for every collection of the API, the convenience
    commands, and `gnomon apply`."""
    subs: dict[str, typer.Typer] = {}
    for collection, (verbs, help_text) in COLLECTIONS.items():
        sub = typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)
        for verb in verbs:
            if (collection, verb) in _CUSTOM:
                continue
            takes_x = verb not in ("list", "create") and (collection, verb) not in _COLLECTION_ACTIONS
            method_path = route(collection, verb, "X" if takes_x else None)
            sub.command(verb, help=f"{method_path[0]} {method_path[1]}")(_make_command(collection, verb))
        subs[collection] = sub
        app.add_typer(sub, name=collection)
    subs["schedules"].command("preview")(schedules_preview)
    subs["schedules"].command("backfill")(schedules_backfill)
    subs["runs"].command("watch")(runs_watch)
    app.command("apply")(apply_command)
    app.command("export")(export_command)


# --- schedules preview ----------------------------------------------------------------------------


def schedules_preview(
    ctx: typer.Context,
    cron: Annotated[
        list[str] | None,
        typer.Argument(metavar="[CRON]...", help='Cron expressions, each quoted: "0 9 * * MON-FRI".'),
    ] = None,
    tz: Annotated[str, typer.Option("--tz", "--timezone", help="The spec's time zone.")] = "UTC",
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000, help="How many times.")] = 10,
    start: Annotated[str | None, typer.Option(help="After this time (default now).")] = None,
    end: Annotated[str | None, typer.Option(help="None after this time (inclusive).")] = None,
    data: DataOpt = None,
    output: OutputOpt = "table",
    url: UrlOpt = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    token: TokenOpt = None,
) -> None:
    """POST /v1/schedules/preview — the next fire times of a cron (or of the spec in --data)."""
    if cron and data is not None:
        raise typer.BadParameter("give cron expressions or --data, not both")
    if data is not None:
        body = _read_data(data)
        shown_tz = (body.get("spec") or {}).get("timezone") if isinstance(body, dict) else None
    elif cron:
        body = {
            "spec": {"cron": list(cron), "timezone": tz},
            "start": cli_time(start, "--start") or cli_time("now", "--start"),
            "count": count,
        }
        if end is not None:
            body["end"] = cli_time(end, "--end")
        shown_tz = tz
    else:
        raise typer.BadParameter('give a cron expression ("0 9 * * MON-FRI") or --data')
    with connected(ctx, output, url, stack, profile, region, token) as client:
        answer = client.request("POST", "/v1/schedules/preview", json=body)
    if output == "json":
        print_answer(answer, output)
    else:
        console().print(times_table(answer.get("fire_times", []), shown_tz))


# --- schedules backfill ---------------------------------------------------------------------------


def schedules_backfill(
    ctx: typer.Context,
    schedule_id: Annotated[str, typer.Argument(metavar="ID", help="The schedule.")],
    start: Annotated[str | None, typer.Option(help="First nominal time (RFC 3339, or YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option(help="Last nominal time, inclusive.")] = None,
    overlap: Annotated[str | None, typer.Option(help="Overlap policy for these runs.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the times; create nothing.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Show a progress bar until every run has started.")
    ] = True,
    data: DataOpt = None,
    output: OutputOpt = "table",
    url: UrlOpt = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    token: TokenOpt = None,
) -> None:
    """POST /v1/schedules/X/backfill — runs for the spec's times in [--start, --end]."""
    body = _read_data(data) or {}
    if not isinstance(body, dict):
        raise typer.BadParameter("--data must be a JSON object")
    if start is not None:
        body["start"] = cli_time(start, "--start")
    if end is not None:
        body["end"] = cli_time(end, "--end")
    if overlap is not None:
        body["overlap"] = overlap
    if dry_run:
        body["dry_run"] = True
    if "start" not in body or "end" not in body:
        raise typer.BadParameter("give --start and --end (or both in --data)")
    with connected(ctx, output, url, stack, profile, region, token) as client:
        answer = client.request("POST", f"/v1/schedules/{schedule_id}/backfill", json=body)
        if output == "json":
            print_answer(answer, output)
            return
        times = answer.get("fire_times", [])
        created = int(answer.get("runs_created", 0))
        verb = "would fire" if body.get("dry_run") else "fire times"
        console().print(f"{schedule_id}: {len(times)} {verb} in [{body['start']}, {body['end']}]")
        if body.get("dry_run"):
            console().print(times_table(times))
            return
        console().print(f"runs created: {created}")
        if wait and created:
            _backfill_progress(client, schedule_id, body["start"], body["end"], created)


def _backfill_progress(client: Client, schedule_id: str, start: str, end: str, total: int) -> None:
    """A progress bar until every backfilled run has started (they start at the schedule's
    `backfill_rate`); Ctrl-C stops watching, not the backfill."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(),
    ) as bar:
        job = bar.add_task(f"backfill {schedule_id}", total=total)
        try:
            while True:
                started = min(backfill_started(client, schedule_id, start, end), total)
                bar.update(job, completed=started)
                if started >= total:
                    return
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            bar.stop()
            console().print("stopped watching; the backfill goes on")


def backfill_started(client: Client, schedule_id: str, start: str, end: str) -> int:
    """How many runs of the backfill of [start, end] have started: from the schedule's
    `info.backfills` progress when it lists this backfill, else by counting its runs."""
    info = client.schedule(schedule_id).describe().get("info") or {}
    mine = [
        b
        for b in info.get("backfills") or []
        if isinstance(b, dict) and b.get("start") == start and b.get("end") == end
    ]
    if mine and isinstance(mine[-1].get("started"), int):
        return int(mine[-1]["started"])
    from gnomon.domain.timefmt import parse

    until = _utc(parse(end) + timedelta(seconds=1))  # the API's `to` is exclusive
    return sum(
        1
        for r in client.list_runs(schedule=schedule_id, start=start, end=until)
        if r.get("trigger") == "backfill" and r.get("status") != "pending"
    )


POLL_SECONDS = 1.0


# --- runs watch -----------------------------------------------------------------------------------


def runs_watch(
    ctx: typer.Context,
    schedule: Annotated[str | None, typer.Option(help="Only this schedule's runs.")] = None,
    definition: Annotated[str | None, typer.Option(help="Only this definition's runs.")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Only runs in this status (repeatable).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="Rows shown.")] = 20,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 2.0,
    iterations: Annotated[int | None, typer.Option(hidden=True, help="Stop after N refreshes.")] = None,
    output: OutputOpt = "table",
    url: UrlOpt = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    token: TokenOpt = None,
) -> None:
    """A live table of the newest runs, refreshed every 2 s until Ctrl-C (json: one line per refresh)."""
    with connected(ctx, output, url, stack, profile, region, token) as client:

        def fetch() -> list[dict[str, Any]]:
            return list(
                client.list_runs(
                    schedule=schedule, definition=definition, status=status, page_size=limit, limit=limit
                )
            )

        filters = [
            f"schedule={schedule}" if schedule else "",
            f"definition={definition}" if definition else "",
        ]
        filters.append(f"status={','.join(status)}" if status else "")
        title = "runs" + (f" ({', '.join(f for f in filters if f)})" if any(filters) else "")

        def frame() -> RenderableType:
            stamp = datetime.now().strftime("%H:%M:%S")
            try:
                rows = fetch()
            except (E.GnomonError, OSError) as exc:
                return f"{title} — {stamp}\n[red]{_escape(str(exc))}[/red]"
            except Exception as exc:  # e.g. a dropped connection: keep watching
                return f"{title} — {stamp}\n[red]{_escape(type(exc).__name__)}: {_escape(str(exc))}[/red]"
            return items_table(rows, "runs", title=f"{title} — {stamp} (Ctrl-C to stop)")

        n = 0
        try:
            if output == "json":
                while iterations is None or n < iterations:
                    if n:
                        time.sleep(interval)
                    typer.echo(json.dumps({"items": fetch()}, ensure_ascii=False))
                    n += 1
                return
            from rich.live import Live

            with Live(frame(), console=console(), auto_refresh=False) as live:
                n = 1
                while iterations is None or n < iterations:
                    time.sleep(interval)
                    live.update(frame(), refresh=True)
                    n += 1
        except KeyboardInterrupt:
            return


# --- apply ----------------------------------------------------------------------------------------


def apply_command(
    ctx: typer.Context,
    file: Annotated[
        list[str] | None,
        typer.Option("--file", "-f", metavar="FILE", help="gnomon.yaml / .json (repeatable; - = stdin)."),
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete schedules and definitions not in the file(s).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the JSON Schema of the file and exit (no API call).")
    ] = False,
    identity: Annotated[str | None, typer.Option(help="Recorded as the author of the changes.")] = None,
    output: OutputOpt = "table",
    url: UrlOpt = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make the deployment match a file of definitions and schedules: + create, ~ update, = unchanged, - delete."""
    from gnomon.apply import Config, apply_plan, config_json_schema, load_config, plan

    if schema:
        typer.echo(json.dumps(config_json_schema(), indent=2))
        return
    if not file:
        raise typer.BadParameter("give the file(s) to apply: -f gnomon.yaml (or --schema)")
    with connected(ctx, output, url, stack, profile, region, token) as client:
        config = Config.merge([load_config(f) for f in file])
        the_plan = plan(client, config, prune=prune)
        if output == "table":
            out = console()
            for change in the_plan.changes:
                style = {"create": "green", "update": "yellow", "delete": "red"}.get(change.action, "dim")
                out.print(f"[{style}]{_escape(change.line())}[/{style}]")
            out.print(f"Plan: {the_plan.summary()}.")
        if dry_run or not the_plan.has_changes:
            if output == "json":
                typer.echo(json.dumps({**the_plan.to_json(), "applied": False}, indent=2))
            return
        done = apply_plan(client, the_plan, identity=identity)
        if output == "json":
            typer.echo(json.dumps({**the_plan.to_json(), "applied": True}, indent=2))
        else:
            changed = sum(1 for c in done if c.action != "unchanged")
            console().print(f"Applied {changed} change{'s' if changed != 1 else ''}.")


# --- export ---------------------------------------------------------------------------------------


def export_command(
    ctx: typer.Context,
    out_file: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write the file here (default: stdout)."),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Only this group's schedules and their definitions.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="yaml or json (default: from FILE, else yaml).")
    ] = None,
    url: UrlOpt = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write the deployment's definitions and schedules as a file for `gnomon apply -f`."""
    from gnomon.apply import dump_config, export_config

    if fmt is None:
        fmt = "json" if out_file is not None and out_file.lower().endswith(".json") else "yaml"
    if fmt not in ("yaml", "json"):
        raise typer.BadParameter("--format is yaml or json")
    with connected(ctx, "table", url, stack, profile, region, token) as client:
        doc = export_config(client, group=group)
    text = dump_config(doc, "json" if fmt == "json" else "yaml")
    if out_file is None or out_file == "-":
        typer.echo(text, nl=False)
        return
    try:
        Path(out_file).write_text(text)
    except OSError as exc:
        raise typer.BadParameter(f"cannot write {out_file}: {exc.strerror}") from None
    n_def, n_sched = len(doc["definitions"]), len(doc["schedules"])
    typer.echo(f"Wrote {n_def} definition(s) and {n_sched} schedule(s) to {out_file}.", err=True)
