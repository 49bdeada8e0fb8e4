"""Console page loads on the real local stack holding 1 000 schedules and 10 000 runs.

A fresh `gnomon dev --port 0` is started; a definition and `--schedules` schedules (daily crons,
every tenth paused, so none fires during the measurement) are created over the API. One extra
schedule fires every second a few times to produce a real completed run; its stored record is
the model for `--runs` runs written straight into the local Runs table through gnomon's own
DynamoDB run store (the worker would take minutes to make 10 000): spread over the first ten
schedules, one a minute back from now, 95 % completed and 5 % failed, with varied lateness and
durations. Then each console page is opened once (`first ms`: the first time the local API serves
its calls; not counted) and `--repeat` times more in headless Chromium:

- `ready ms`: from navigation start until the page's main content is shown (its heading is
  there and nothing in <main> is still loading, except the schedules list's per-row extras);
- `complete ms`: until every API call the page made has answered and rendered (the schedules
  list's per-row last status and lateness sparkline included);
- `api calls`: requests the page sent to /v1.

Goal: ready < 1 s per page. Without Chromium the API calls of each page are timed instead
(`--api-only` forces that). Figures only: nothing here asserts a timing.

    python -m bench console                  # 1 000 schedules, 10 000 runs, 5 loads per page
    python -m bench console --schedules 200 --runs 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench import line_buffered, machine, say, table, write_result
from bench.consolekit import Receiver, browser_missing, chromium, wait_for
from bench.lateness import Stack

NAME = "console"
DEFINITION = "bench-console"
HOT = 10  # schedules that carry the runs
GOAL_MS = 1000

READY_JS = """
const main = document.querySelector('main');
if (!main || !document.querySelector('h1#page-title')) return null;
const pending = main.querySelectorAll('.loading:not(.lazy)').length;
const lazy = main.querySelectorAll('.loading.lazy').length;
return {pending, lazy, inflight: window.gnomonInflight,
        t: performance.now(), calls: performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length};
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedules", type=int, default=1000)
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=5, help="loads per page")
    p.add_argument("--api-only", action="store_true", help="time the pages' API calls, no browser")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results/console.json")


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def seed(stack: Stack, receiver: Receiver, n_schedules: int, n_runs: int) -> dict[str, Any]:
    """Definitions, schedules and runs; answers what was made and how long it took."""
    t0 = time.monotonic()
    c = httpx.Client(base_url=stack.base_url, timeout=60, trust_env=False)
    r = c.post("/v1/definitions", json={"name": DEFINITION, "target": {"type": "http", "url": receiver.url}})
    assert r.status_code == 201, r.text
    r = c.put(
        f"/v1/definitions/{DEFINITION}",
        json={"name": DEFINITION, "target": {"type": "http", "url": receiver.url}, "timeout_seconds": 30},
    )
    assert r.status_code == 200, r.text

    def create(i: int) -> None:
        body = {
            "schedule_id": f"bench-{i:05d}",
            "definition": DEFINITION,
            "group": f"team-{i % 7}",
            "tags": ["bench", f"tier-{i % 3}"],
            "spec": {"cron": [f"{i % 60} {3 + i % 4} * * *"], "timezone": "Europe/Riga"},
        }
        if i % 10 == 9:
            body["state"] = {"paused": True, "note": "benchmark"}
        resp = c.post("/v1/schedules", json=body)
        assert resp.status_code == 201, resp.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(n_schedules)))
    say(f"  {n_schedules} schedules in {time.monotonic() - t0:.1f} s")

    # One real run as the model of the seeded ones.
    r = c.post(
        "/v1/schedules",
        json={
            "schedule_id": "bench-model",
            "definition": DEFINITION,
            "spec": {"intervals": [{"every_seconds": 1}]},
        },
    )
    assert r.status_code == 201, r.text
    model_id = wait_for(
        lambda: next(
            (
                x["run_id"]
                for x in c.get("/v1/runs", params={"schedule": "bench-model"}).json()["items"]
                if x["status"] == "completed"
            ),
            None,
        ),
        timeout=60,
    )
    assert model_id, "the model schedule never completed a run"
    c.post("/v1/schedules/bench-model/pause", json={"note": "model taken"})

    made, sample = _write_runs(stack, model_id, n_runs)
    took = time.monotonic() - t0
    say(f"  {made} runs written; seeding took {took:.1f} s")
    return {
        "schedules": n_schedules + 1,
        "runs": made,
        "seed_seconds": round(took, 1),
        "model_run": model_id,
        "sample_run": sample,
    }


def _write_runs(stack: Stack, model_id: str, n_runs: int, first: int = 0) -> tuple[int, str]:
    import os

    from gnomon.domain.runs import scheduled_run_id
    from gnomon.ports import RunRecord

    os.environ["AWS_ENDPOINT_URL"] = stack.aws_endpoint
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GNOMON_RUNS_TABLE": "gnomon-RunsTable",
    }.items():
        os.environ.setdefault(k, v)
    from gnomon.adapters.dynamo import DynamoRunStore

    store = DynamoRunStore()
    model = store.get(model_id)
    rng = random.Random(7 + first)
    now = datetime.now(UTC).replace(second=0, microsecond=0)

    def record(i: int) -> RunRecord:
        schedule = f"bench-{i % HOT:05d}"
        nominal = now - timedelta(minutes=i // HOT + 1)
        late = rng.lognormvariate(4.5, 0.8)  # ~90 ms median, a long tail
        dur = rng.lognormvariate(5.5, 1.2)
        started = nominal + timedelta(milliseconds=late)
        closed = started + timedelta(milliseconds=dur)
        failed = rng.random() < 0.05
        status = "failed" if failed else "completed"
        # A scheduled firing's id gives the item's key: one conditional put each, no pointer item.
        run_id = scheduled_run_id(schedule, str(model.doc["generation"]), nominal)
        doc = copy.deepcopy(model.doc)
        error = {"code": "http_500", "message": "target answered 500", "details": {}} if failed else None
        doc.update(
            run_id=run_id,
            schedule_id=schedule,
            nominal_time=_fmt(nominal),
            scheduled_time=_fmt(nominal),
            started_at=_fmt(started),
            closed_at=_fmt(closed),
            duration_ms=round(dur),
            status=status,
            error=error,
            trigger="schedule",
        )
        for a in doc.get("attempts") or []:
            a.update(
                started_at=_fmt(started),
                closed_at=_fmt(closed),
                duration_ms=round(dur),
                status=status,
                error=error,
            )
        return RunRecord(
            run_id=run_id,
            doc=doc,
            schedule_id=schedule,
            definition=DEFINITION,
            nominal_time=nominal,
            status=status,
            expires_at=now + timedelta(days=30),
        )

    records = [record(i) for i in range(first, first + n_runs)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(store.create, records))
    say(f"  {n_runs} runs in {time.monotonic() - t0:.1f} s")
    return n_runs, records[0].run_id


def pages(run_id: str) -> list[tuple[str, str]]:
    return [
        ("overview", "/overview"),
        ("schedules", "/schedules"),
        ("schedules?paused=true", "/schedules?paused=true"),
        ("schedule detail (1 000 runs)", "/schedules/bench-00000"),
        ("runs", "/runs"),
        ("runs?status=failed", "/runs?status=failed"),
        ("run detail", f"/runs/{run_id}"),
        ("definitions", "/definitions"),
        ("definition + versions", f"/definitions/{DEFINITION}"),
        ("tasks and leases", "/tasks"),
        ("operators", "/operators"),
        ("dead letters", "/dlq"),
    ]


def measure_browser(base_url: str, run_id: str, repeat: int) -> list[dict[str, Any]]:
    out = []
    with chromium() as driver:
        driver.get(f"{base_url}/console/")  # warm: the vendored files into the browser's cache
        wait_for(lambda: driver.execute_script(READY_JS), timeout=30)
        for name, fragment in pages(run_id):
            ready_ms, complete_ms, calls = [], [], []
            # The first load of each page is not counted (its time is shown apart, `first ms`):
            # it is the first time the local API serves those calls.
            for _ in range(repeat + 1):
                driver.get("about:blank")
                driver.get(f"{base_url}/console/#{fragment}")
                ready = wait_for(
                    lambda: (s := driver.execute_script(READY_JS)) and s["pending"] == 0 and s, 60, 0.01
                )
                done = wait_for(
                    lambda: (
                        (s := driver.execute_script(READY_JS))
                        and s["pending"] == s["lazy"] == s["inflight"] == 0
                        and s
                    ),
                    120,
                    0.02,
                )
                ready_ms.append(round(ready["t"]))
                complete_ms.append(round(done["t"]))
                calls.append(done["calls"])
            first, ready_ms, complete_ms = ready_ms[0], ready_ms[1:], complete_ms[1:]
            row = {
                "page": name,
                "first_ms": first,
                "ready_ms_median": round(statistics.median(ready_ms)),
                "ready_ms_max": max(ready_ms),
                "complete_ms_median": round(statistics.median(complete_ms)),
                "complete_ms_max": max(complete_ms),
                "api_calls": max(calls),
                "under_goal": max(ready_ms) < GOAL_MS,
            }
            say(f"  {name}: ready {row['ready_ms_median']} ms, complete {row['complete_ms_median']} ms")
            out.append(row)
    return out


def measure_api(base_url: str, run_id: str, repeat: int) -> list[dict[str, Any]]:
    """Without a browser: the API calls each page makes first, in the order it makes them."""
    to = datetime.now(UTC)
    frm = _fmt(to - timedelta(hours=1))
    calls = {
        "overview": [
            "/v1/stats",
            # the lateness chart, the firings heatmap and the duration histogram: one call
            f"/v1/metrics/lateness?from={frm}&to={_fmt(to)}&bucket_seconds=60&include=firings,durations",
        ],
        "schedules": ["/v1/schedules?page_size=25"],
        # then each row's last status and lateness sparkline (what the browser's "complete" waits for)
        "schedules' rows": [f"/v1/runs?schedule=bench-{i:05d}&page_size=20" for i in range(25)],
        "schedule detail (1 000 runs)": [
            "/v1/schedules/bench-00000",
            "/v1/runs?schedule=bench-00000&page_size=300",
            f"/v1/metrics/lateness?schedule=bench-00000&from={_fmt(to - timedelta(hours=6))}&to={_fmt(to)}&bucket_seconds=300",
        ],
        "runs": ["/v1/runs?page_size=100"],
        "runs?status=failed": ["/v1/runs?status=failed&page_size=100"],
        "run detail": [f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/history"],
        "definitions": ["/v1/definitions?page_size=100"],
        "definition + versions": [
            f"/v1/definitions/{DEFINITION}",
            f"/v1/definitions/{DEFINITION}/versions?page_size=100",
        ],
    }
    out = []
    with httpx.Client(base_url=base_url, timeout=60, trust_env=False) as c:
        for name, paths in calls.items():
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                for p in paths:
                    c.get(p).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            out.append(
                {
                    "page": name,
                    "api_ms_median": round(statistics.median(times)),
                    "api_ms_max": round(max(times)),
                    "api_calls": len(paths),
                    "under_goal": max(times) < GOAL_MS,
                }
            )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    line_buffered()
    missing = None if not args.api_only else "--api-only"
    missing = missing or browser_missing()
    say(f"console bench: {args.schedules} schedules, {args.runs} runs")
    stack = Stack.start(tick_seconds=1.0)
    try:
        with Receiver() as receiver:
            seeded = seed(stack, receiver, args.schedules, args.runs)
            run_id = seeded["sample_run"]
            if missing:
                say(f"  no browser ({missing}): timing the pages' API calls instead")
                results = measure_api(stack.base_url, run_id, args.repeat)
            else:
                results = measure_browser(stack.base_url, run_id, args.repeat)
    finally:
        stack.stop()
    payload = {
        "meta": machine(),
        "seeded": seeded,
        "mode": "api" if missing else "browser",
        "results": results,
    }
    if not args.no_write:
        say(f"results in {write_result(NAME, payload)}")
    print(f"\nConsole page loads ({payload['mode']}), {seeded['schedules']} schedules, {seeded['runs']} runs")
    if missing:
        headers = ["page", "api ms (median)", "api ms (max)", "calls", "< 1 s"]
        keys = ["page", "api_ms_median", "api_ms_max", "api_calls", "under_goal"]
    else:
        headers = [
            "page",
            "first ms",
            "ready ms",
            "ready max",
            "complete ms",
            "complete max",
            "api calls",
            "< 1 s",
        ]
        keys = [
            "page",
            "first_ms",
            "ready_ms_median",
            "ready_ms_max",
            "complete_ms_median",
            "complete_ms_max",
            "api_calls",
            "under_goal",
        ]
    print(table(headers, [[r[k] for k in keys] for r in results]))
    return payload


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench console", description=__doc__)
    add_arguments(p)
    run(p.parse_args())


if __name__ == "__main__":
    main()
