"""The `gnomon` command line."""

from __future__ import annotations

import ipaddress
import math
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def gnomon(
    url: Annotated[str | None, typer.Option("--url", help="The API's base URL [env: GNOMON_URL].")] = None,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack", help="Use the ApiUrl output of this CloudFormation stack [env: GNOMON_STACK]."
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="AWS profile: sign requests with SigV4.")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="AWS region: sign requests with SigV4.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Send `Authorization: Bearer TOKEN` [env: GNOMON_TOKEN].")
    ] = None,
) -> None:
    """gnomon: a serverless job scheduler on DynamoDB, SQS and Lambda.

    `gnomon dev` runs the whole stack locally (moto, the API, the ticker and the worker).
    `gnomon <collection> <verb> [X]` calls the API (`gnomon schedules pause nightly`); the
    connection options may come before the command or after it.
    """


def _positive_seconds(value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter("must be a number of seconds > 0")
    return value


def _networks(values: list[str] | None) -> list[str]:
    out = []
    for v in values or []:
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise typer.BadParameter(f"{v!r} is not a CIDR network (e.g. 10.0.0.0/8)") from None
    return out


def _log_level(value: str) -> str:
    if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("one of debug, info, warning, error")
    return value.upper()


@app.command()
def dev(
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP API port (0 picks a free one).")] = 8080,
    tick_seconds: Annotated[
        float, typer.Option(callback=_positive_seconds, help="Seconds between ticker invocations (> 0).")
    ] = 1.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            resolve_path=True,
            metavar="PATH",
            help="Keep tables and queues here across restarts.",
        ),
    ] = None,
    allow_target: Annotated[
        list[str] | None,
        typer.Option(
            callback=_networks, metavar="CIDR", help="A network http targets may reach (repeatable)."
        ),
    ] = None,
    allow_python_module: Annotated[
        list[str] | None,
        typer.Option(metavar="PREFIX", help="A module prefix python targets may use (repeatable)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address the HTTP API listens on.")] = "127.0.0.1",
    pollers: Annotated[int, typer.Option(min=1, max=64, help="SQS pollers feeding the worker.")] = 2,
    worker_concurrency: Annotated[
        int,
        typer.Option(
            min=1, max=256, help="Worker batches that may run at once (the function's concurrency)."
        ),
    ] = 10,
    exit_with_parent: Annotated[
        bool,
        typer.Option(
            "--exit-with-parent", help="Stop when the process that started this one goes away (tests)."
        ),
    ] = False,
    template: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, metavar="PATH", help="The SAM template (default: the repo's)."
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(callback=_log_level, help="debug, info, warning or error (debug logs each request)."),
    ] = "info",
) -> None:
    """Run the embedded local stack: moto, the HTTP API, the ticker and the worker."""
    from gnomon.local.devserver import DevConfig, run

    code = run(
        DevConfig(
            port=port,
            host=host,
            tick_seconds=tick_seconds,
            state_dir=state_dir,
            allow_targets=allow_target or [],
            allow_python_modules=allow_python_module or [],
            pollers=pollers,
            worker_concurrency=worker_concurrency,
            exit_with_parent=exit_with_parent,
            template=template,
            log_level=log_level,
        )
    )
    # The stack stopped in order; a target call still in flight on a worker thread (an HTTP
    # target that never answers) must not hold the exit: concurrent.futures joins its threads
    # at interpreter exit. Flush and leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


from gnomon.clicommands import register  # noqa: E402 - the API verbs, after `dev`

register(app)


def main() -> None:
    """The `gnomon` console script."""
    app()


if __name__ == "__main__":
    main()
