"""`make screenshots`: PNGs of the console's main pages, for the README (docs/screenshots/).

Starts a fresh local stack, fills it with a small, varied example (definitions with a version
history, schedules by cron, calendar and interval, one failing, one paused; a backfill over the
last four weeks; tasks with a lease), lets it fire for a while, then saves each page from
headless Chromium. Needs Debian's chromium and chromium-driver (see bench/consolekit.py).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import httpx

from bench import REPO, line_buffered, say
from bench.consolekit import Receiver, browser_missing, chromium, screenshot, wait_for
from bench.lateness import Stack

OUT = REPO / "docs" / "screenshots"
FIRE_SECONDS = 25


def seed(c: httpx.Client, rec: Receiver) -> str:
    def ok(resp: httpx.Response) -> dict:
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    base = rec.url.rsplit("/", 1)[0]
    report = {
        "name": "nightly-report",
        "description": "Builds the sales report",
        "tags": ["reports"],
        "target": {"type": "http", "url": f"{base}/slow/report"},
    }
    ok(c.post("/v1/definitions", json=report))
    ok(
        c.put(
            "/v1/definitions/nightly-report",
            json={**report, "timeout_seconds": 120, "retry": {"max_attempts": 5}},
        )
    )
    ok(
        c.post(
            "/v1/definitions",
            json={"name": "sync-crm", "tags": ["crm"], "target": {"type": "http", "url": f"{base}/sync"}},
        )
    )
    ok(
        c.post(
            "/v1/definitions",
            json={
                "name": "flaky-export",
                "target": {"type": "http", "url": f"{base}/fail"},
                "retry": {"max_attempts": 2, "initial_interval_seconds": 1},
            },
        )
    )
    ok(
        c.post(
            "/v1/schedules",
            json={
                "schedule_id": "sales-report-weekdays",
                "definition": "nightly-report",
                "group": "finance",
                "tags": ["reports"],
                "spec": {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"},
            },
        )
    )
    ok(
        c.post(
            "/v1/schedules",
            json={
                "schedule_id": "crm-sync",
                "definition": "sync-crm",
                "group": "sales",
                "spec": {"intervals": [{"every_seconds": 3}]},
                "policies": {"overlap": "buffer_one"},
            },
        )
    )
    ok(
        c.post(
            "/v1/schedules",
            json={
                "schedule_id": "report-preview",
                "definition": "nightly-report",
                "spec": {"cron": ["*/5 * * * * *"]},
            },
        )
    )
    ok(
        c.post(
            "/v1/schedules",
            json={
                "schedule_id": "month-end-close",
                "definition": "nightly-report",
                "group": "finance",
                "spec": {
                    "calendars": [{"hour": 18, "day_of_month": "L", "comment": "last day of the month"}],
                    "timezone": "America/New_York",
                },
            },
        )
    )
    ok(
        c.post(
            "/v1/schedules",
            json={
                "schedule_id": "export-partners",
                "definition": "flaky-export",
                "spec": {"intervals": [{"every_seconds": 10}]},
            },
        )
    )
    ok(
        c.post(
            "/v1/schedules",
            json={
                "schedule_id": "legacy-cleanup",
                "definition": "sync-crm",
                "group": "ops",
                "spec": {"cron": ["@daily"]},
                "state": {"paused": True, "note": "waiting for the migration"},
            },
        )
    )
    now = datetime.now(UTC).replace(microsecond=0)
    ok(
        c.post(
            "/v1/schedules/sales-report-weekdays/backfill",
            json={
                "start": (now - timedelta(days=28)).isoformat(),
                "end": (now - timedelta(hours=1)).isoformat(),
            },
        )
    )
    for i in range(6):
        ok(
            c.post(
                "/v1/tasks", json={"topic": "invoices", "task_group_id": "batch-7", "data": {"invoice": i}}
            )
        )
    ok(c.post("/v1/topics/invoices/reserve", json={"worker_id": "worker-eu-1", "lease_seconds": 600}))
    ok(c.post("/v1/topics/invoices/reserve", json={"worker_id": "worker-eu-2", "lease_seconds": 300}))
    say(f"  seeded; letting it fire for {FIRE_SECONDS} s")
    time.sleep(FIRE_SECONDS)
    ok(c.post("/v1/schedules/report-preview/pause", json={"note": "enough previews for today"}))
    runs = ok(c.get("/v1/runs", params={"schedule": "crm-sync", "status": "completed"}))["items"]
    return str(runs[0]["run_id"])


def main() -> int:
    line_buffered()
    missing = browser_missing()
    if missing:
        print(f"make screenshots needs a browser: {missing}", file=sys.stderr)
        return 1
    stack = Stack.start(tick_seconds=1.0)
    try:
        with Receiver() as rec, httpx.Client(base_url=stack.base_url, timeout=60, trust_env=False) as c:
            run_id = seed(c, rec)
            pages = [
                ("overview", "/overview?window=168"),  # the last 7 days: the backfill's firings too
                ("schedules", "/schedules"),
                ("schedule-detail", "/schedules/report-preview"),
                ("runs", "/runs"),
                ("run-detail", f"/runs/{run_id}"),
                ("definition-diff", "/definitions/nightly-report"),
                ("tasks", "/tasks?topic=invoices"),
                ("operators", "/operators"),
            ]
            OUT.mkdir(parents=True, exist_ok=True)
            with chromium(1366, 900) as driver:
                for name, fragment in pages:
                    driver.set_window_size(1366, 900)
                    driver.get(f"{stack.base_url}/console/#{fragment}")
                    wait_for(
                        lambda: driver.execute_script(
                            "return !!document.querySelector('h1#page-title') && window.gnomonInflight === 0"
                            " && !document.querySelector('main .loading')"
                        ),
                        timeout=60,
                    )
                    time.sleep(0.5)
                    path = OUT / f"{name}.png"
                    screenshot(driver, path)
                    say(f"  {path.relative_to(REPO)}")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
