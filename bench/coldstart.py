"""Cold start: how long importing each Lambda handler module takes in a fresh interpreter.

For `functions/{api,ticker,worker}/app.py`, a new `python -X importtime` process imports the
handler (as the Lambda runtime does, with a Lambda-like environment: the template's variables,
`AWS_LAMBDA_FUNCTION_NAME` set so Powertools' Tracer is on, as `Tracing: Active` makes it) and
reports the wall time of that import; `-X importtime`'s report gives the costliest modules.
Each handler is measured `--repeat` times (the median is shown: the machine is shared). Goal:
< 300 ms per handler. Nothing is invoked and no AWS call is made.

    python -m bench coldstart
    python -m bench coldstart --repeat 7
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from typing import Any

from bench import REPO, line_buffered, machine, say, table, write_result

NAME = "coldstart"
GOAL_MS = 300.0
HANDLERS = ("api", "ticker", "worker")
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
_CHILD = """
import importlib.util, sys, time
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(f"IMPORT_MS {(time.perf_counter() - t) * 1000:.1f}")
"""


def _env(handler: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GNOMON_", "AWS_", "POWERTOOLS_"))}
    env.update(
        AWS_LAMBDA_FUNCTION_NAME=f"gnomon-{handler}",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        GNOMON_CATALOG_TABLE="catalog",
        GNOMON_SCHEDULES_TABLE="schedules",
        GNOMON_RUNS_TABLE="runs",
        GNOMON_TASKS_TABLE="tasks",
        GNOMON_REQUESTS_TABLE="requests",
        GNOMON_FIRING_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/000000000000/firing",
        GNOMON_DLQ_URL="https://sqs.us-east-1.amazonaws.com/000000000000/dlq",
        GNOMON_HORIZON_SECONDS="900",
        POWERTOOLS_SERVICE_NAME="gnomon",
        PYTHONDONTWRITEBYTECODE="",
    )
    return env


def measure(handler: str) -> dict[str, Any]:
    """One fresh interpreter importing `functions/<handler>/app.py`."""
    path = REPO / "functions" / handler / "app.py"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _CHILD, str(path)],
        cwd=path.parent,
        env=_env(handler),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r"IMPORT_MS ([\d.]+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"importing {path} failed: {proc.stderr[-2000:]}")
    modules: list[tuple[str, int, int, int]] = []  # name, depth, self µs, cumulative µs
    for line in proc.stderr.splitlines():
        m = _LINE.match(line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            modules.append((m.group(4), depth, int(m.group(1)), int(m.group(2))))
    return {"import_ms": float(match.group(1)), "modules": modules}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median import time and the costliest top-level packages of the median run."""
    times = [r["import_ms"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["import_ms"])[len(runs) // 2]
    packages: dict[str, int] = {}
    for name, _depth, self_us, _cum in median_run["modules"]:
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0) + self_us
    top = sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:8]
    return {
        "import_ms_median": statistics.median(times),
        "import_ms_all": times,
        "modules_imported": len(median_run["modules"]),
        "top_packages_ms": {k: round(v / 1000, 1) for k, v in top},
        "goal_ms": GOAL_MS,
        "met": statistics.median(times) < GOAL_MS,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=5, help="fresh interpreters per handler (median shown)")
    p.add_argument("--long", action="store_true", help="(no long form)")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/coldstart.json")


def run(args: argparse.Namespace) -> dict[str, Any]:
    meta = machine()
    results = {}
    for handler in HANDLERS:
        say(f"cold start: functions/{handler}/app.py × {args.repeat} …")
        runs = [measure(handler) for _ in range(args.repeat)]
        results[handler] = summarize(runs)
    print("\nCold start: importing each handler module in a fresh interpreter (-X importtime), median")
    rows = [
        [
            f"functions/{h}/app.py",
            r["import_ms_median"],
            min(r["import_ms_all"]),
            max(r["import_ms_all"]),
            r["modules_imported"],
            ", ".join(f"{k} {v:.0f}" for k, v in list(r["top_packages_ms"].items())[:5]),
            "yes" if r["met"] else "no",
        ]
        for h, r in results.items()
    ]
    print(
        table(
            ["handler", "median ms", "min ms", "max ms", "modules", "top packages (self ms)", "< 300 ms"],
            rows,
        )
    )
    payload = {"benchmark": NAME, "meta": meta, "params": {"repeat": args.repeat}, "results": results}
    if not args.no_write:
        say(f"wrote {write_result(NAME, payload)}")
    return payload


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    p = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__)
    add_arguments(p)
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
