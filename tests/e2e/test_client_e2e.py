"""The Python client, `gnomon apply` and the worker SDK against the real local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gnomon.apply import parse_config, plan
from gnomon.client import Client
from gnomon.domain import errors as E
from gnomon.worker import TaskContext, Worker
from tests.e2e.conftest import REPO, DevProcess

e2e = pytest.mark.e2e
CRON = {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"}


class Hook:
    """A local HTTP target that answers 200."""

    def __init__(self) -> None:
        self.count = 0

        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.count += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = {"type": "http", "url": f"http://127.0.0.1:{self.server.server_address[1]}/hook"}
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()


@pytest.fixture
def gn(dev_stack: DevProcess) -> Iterator[Client]:
    with Client(dev_stack.base_url, identity="e2e") as client:
        yield client


def gnomon(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gnomon.cli", *args, "--url", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


@e2e
def test_schedule_handle_verbs(gn: Client, hook: Hook) -> None:
    gn.definitions.add(name="handle-job", target=hook.target)
    handle = gn.schedules.create(schedule_id="handle-s", definition="handle-job", spec=CRON)
    described = handle.describe()
    assert len(described["info"]["next_fire_times"]) == 10 and described["info"]["identity"] == "e2e"

    until = datetime.now(UTC) + timedelta(hours=2)
    paused = handle.pause(note="maintenance", until=until, identity="ops", request_id="pause-1")
    assert paused["state"]["paused"] and paused["state"]["note"] == "maintenance"
    assert paused["info"]["identity"] == "ops"
    assert handle.pause(note="maintenance", until=until, identity="ops", request_id="pause-1") == paused
    assert handle.unpause(note="back", catch_up="none")["state"]["paused"] is False

    run = handle.trigger(overlap="allow_all", input={"n": 1}, idempotency_key="e2e-key")
    assert run["trigger"] == "trigger" and run["run_id"].startswith("handle-s-t-")
    assert handle.trigger(idempotency_key="e2e-key")["run_id"] == run["run_id"]
    closed = gn.wait_run(run["run_id"], timeout=30)
    assert closed["status"] == "completed", closed

    calls: list[int] = []

    def retag(description: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:  # another writer slips in between our read and our write
            gn.put("/v1/schedules/handle-s", {"memo": {"by": "other"}})
        return {"tags": ["e2e"]}

    updated = handle.update(retag)
    assert updated["tags"] == ["e2e"] and updated["memo"] == {"by": "other"} and len(calls) == 2

    handle.delete()
    with pytest.raises(E.NotFound):
        handle.describe()
    gn.definitions.delete("handle-job")


@e2e
def test_registry_and_runs(gn: Client, hook: Hook) -> None:
    created = gn.definitions.add(name="reg-b", target=hook.target, tags=["reg"])
    assert created["signing_secret"]
    with pytest.raises(E.AlreadyExists):
        gn.definitions.add(name="reg-b", target=hook.target)
    changes = gn.definitions.register_all(
        [{"name": "reg-a", "target": hook.target, "tags": ["reg"]}, {"name": "reg-b", "target": hook.target}]
    )
    assert [(c.name, c.action, c.fields) for c in changes] == [
        ("reg-a", "create", []),
        ("reg-b", "update", ["tags"]),
    ]
    assert gn.definitions.get("reg-ghost") is None
    with pytest.raises(E.NotFound):
        gn.definitions.must_get("reg-ghost")
    assert gn.definitions.names(tag="reg") == ["reg-a"]
    assert [d["name"] for d in gn.definitions.list() if d["name"].startswith("reg-")] == ["reg-a", "reg-b"]

    run_ids = [gn.execute("reg-a", {"i": i}, run_id=f"reg-run-{i}")["run_id"] for i in range(3)]
    for run_id in run_ids:
        assert gn.wait_run(run_id, timeout=30)["status"] == "completed"
    listed = [r["run_id"] for r in gn.list_runs(definition="reg-a", page_size=1)]
    assert sorted(listed) == run_ids
    history = gn.history(run_ids[0])
    assert history["attempts"][0]["status"] == "completed"
    with pytest.raises(E.Conflict):
        gn.retry(run_ids[0])  # a completed run is not retried


@e2e
def test_apply_plan_apply_unchanged(gn: Client, dev_stack: DevProcess, hook: Hook, tmp_path: Path) -> None:
    config = f"""
definitions:
  - name: apply-job
    target: {json.dumps(hook.target)}
schedules:
  - schedule_id: apply-s
    definition: apply-job
    spec: {{cron: ["0 2 * * *"], timezone: Europe/Riga}}
"""
    assert [c.action for c in plan(gn, parse_config(config)).changes] == ["create", "create"]
    path = tmp_path / "gnomon.yaml"
    path.write_text(config)
    dry = gnomon("apply", "-f", str(path), "--dry-run", url=dev_stack.base_url)
    assert dry.returncode == 0, dry.stderr
    assert "+ create definition apply-job" in dry.stdout and "+ create schedule apply-s" in dry.stdout
    assert gn.definitions.get("apply-job") is None
    applied = gnomon("apply", "-f", str(path), url=dev_stack.base_url)
    assert applied.returncode == 0 and "Applied 2 changes." in applied.stdout, applied.stderr
    again = gnomon("apply", "-f", str(path), "-o", "json", url=dev_stack.base_url)
    assert json.loads(again.stdout)["counts"]["unchanged"] == 2
    path.write_text(config.replace("0 2 * * *", "30 2 * * *"))
    changed = gnomon("apply", "-f", str(path), url=dev_stack.base_url)
    assert "~ update schedule apply-s (spec)" in changed.stdout
    assert gn.schedule("apply-s").describe()["spec"]["cron"] == ["30 2 * * *"]
    gn.schedule("apply-s").delete()
    gn.definitions.delete("apply-job")


@e2e
def test_cli_conveniences(dev_stack: DevProcess) -> None:
    r = gnomon(
        "schedules", "preview", "0 9 * * MON-FRI", "--tz", "Europe/Riga", "-n", "3",
        "--start", "2027-01-01T00:00:00Z", "-o", "json", url=dev_stack.base_url,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["fire_times"][0] == "2027-01-01T07:00:00Z"
    r = gnomon("runs", "watch", "--iterations", "1", url=dev_stack.base_url)
    assert r.returncode == 0, r.stderr
    assert gnomon("schedules", "get", "no-such-schedule", url=dev_stack.base_url).returncode == 3


@e2e
def test_backfill(gn: Client, hook: Hook) -> None:
    gn.definitions.add(name="bf-job", target=hook.target)
    handle = gn.schedules.create(schedule_id="bf-s", definition="bf-job", spec={"cron": ["0 0 * * *"]})
    try:
        dry = handle.backfill("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", dry_run=True)
    except E.NotFound as exc:
        if exc.resource.startswith("route/"):
            pytest.skip("POST /v1/schedules/{id}/backfill is not served yet")
        raise
    assert dry == {
        "fire_times": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
        "runs_created": 0,
    }
    real = handle.backfill("2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", overlap="allow_all")
    assert real["runs_created"] == 3


def _tasks_api_or_skip(gn: Client) -> None:
    try:
        gn.create_task("e2e-probe", {"probe": True})
    except E.NotFound as exc:
        if exc.resource.startswith("route/"):
            pytest.skip("POST /v1/tasks answers 404: the tasks API (CONTRACT.md §8) is not served yet")
        raise


@e2e
def test_worker_sdk_on_the_tasks_api(gn: Client) -> None:
    _tasks_api_or_skip(gn)
    ids = [gn.create_task("e2e-work", {"n": n}, task_id=f"e2e-task-{n}")["task_id"] for n in range(3)]
    gn.create_task("e2e-work", {"n": -1}, task_id="e2e-task-bad", max_attempts=1)

    def handler(task: dict[str, Any], ctx: TaskContext) -> Any:
        n = task["data"]["n"]
        if n < 0:
            raise ValueError("negative")
        ctx.heartbeat({"at": n})
        time.sleep(0.2)
        return {"square": n * n}

    stop = threading.Event()
    worker = Worker(
        "e2e-work", handler, client=gn, concurrency=2, lease_seconds=5, heartbeat_every=0.1,
        stop=stop, install_signal_handlers=False, idle_backoff=(0.05, 0.2),
    )  # fmt: skip
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = [gn.get_task(t)["status"] for t in [*ids, "e2e-task-bad"]]
        if statuses == ["completed"] * 3 + ["failed"]:
            break
        time.sleep(0.2)
    stop.set()
    thread.join(15)
    assert [gn.get_task(t)["result"] for t in ids] == [{"square": 0}, {"square": 1}, {"square": 4}]
    bad = gn.get_task("e2e-task-bad")
    assert bad["status"] == "failed" and bad["error"]["code"] == "ValueError"
    assert worker.stats.completed == 3 and worker.stats.failed == 1
