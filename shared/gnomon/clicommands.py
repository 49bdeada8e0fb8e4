"""The API verbs of the CLI: `METHOD /v1/<collection>[/{x}[/<action>]]` is
`gnomon <collection> <verb> [X]` (CONTRACT.md §1).

list → GET /v1/c · get → GET /v1/c/X · create → POST /v1/c · update → PUT /v1/c/X ·
delete → DELETE /v1/c/X · any other verb → POST /v1/c/X/verb (or POST /v1/c/verb without X).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gnomon.domain import errors as E

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

EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT = 1, 2, 3, 4


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


def _read_data(data: str | None) -> Any:
    if data is None:
        return None
    if data == "-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        text = Path(data[1:]).read_text()
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


def _print(answer: Any, output: str) -> None:
    if answer is None:
        return
    if output == "json":
        typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    items = answer.get("items") if isinstance(answer, dict) else None
    if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
        cols = [k for k in items[0] if not isinstance(items[0][k], dict | list) or k == "tags"]
        table = Table(*cols)
        for item in items:
            table.add_row(*(_cell(item.get(c)) for c in cols))
        console.print(table)
        if answer.get("next_page_token"):
            console.print(f"next page: --param page_token={answer['next_page_token']}")
    else:
        console.print_json(json.dumps(answer, ensure_ascii=False))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def _make_command(collection: str, verb: str) -> Any:
    def command(
        x: Annotated[str | None, typer.Argument(metavar="[X]", help="The id or name.")] = None,
        data: Annotated[
            str | None, typer.Option("--data", "-d", help="JSON body, @file or - for stdin.")
        ] = None,
        param: Annotated[
            list[str] | None, typer.Option("--param", "-p", help="Query parameter key=value (repeatable).")
        ] = None,
        output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
        url: Annotated[str | None, typer.Option(envvar="GNOMON_URL", help="The API's base URL.")] = None,
    ) -> None:
        from gnomon.client import Client

        if output not in ("table", "json"):
            raise typer.BadParameter("--output is table or json")
        method, path = route(collection, verb, x)
        body = _read_data(data)
        if body is None and method in ("POST", "PUT"):
            body = {}
        try:
            with Client(url) as client:
                answer = client.request(method, path, json=body, params=_params(param))
        except E.NotFound as exc:
            typer.echo(json.dumps(exc.body()), err=True)
            raise typer.Exit(EXIT_NOT_FOUND) from None
        except E.GnomonError as exc:
            typer.echo(json.dumps(exc.body()), err=True)
            raise typer.Exit(EXIT_CONFLICT if exc.status == 409 else EXIT_ERROR) from None
        except Exception as exc:  # connection refused, timeouts
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        _print(answer, output)

    command.__doc__ = f"{verb.upper() if verb in ('list', 'get') else verb} {collection}"
    return command


def register(app: typer.Typer) -> None:
    """Add `gnomon <collection> <verb> [X]` for every collection of the API."""
    for collection, (verbs, help_text) in COLLECTIONS.items():
        sub = typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)
        for verb in verbs:
            takes_x = verb not in ("list", "create") and (collection, verb) not in _COLLECTION_ACTIONS
            method_path = route(collection, verb, "X" if takes_x else None)
            sub.command(verb, help=f"{method_path[0]} {method_path[1]}")(_make_command(collection, verb))
        app.add_typer(sub, name=collection)
