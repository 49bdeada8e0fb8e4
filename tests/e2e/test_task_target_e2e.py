"""A definition with a `task` target on the real local stack: the worker turns the run's attempt
into a leased task, an external worker reserves and completes it over HTTP, the run completes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevProcess, wait_for

e2e = pytest.mark.e2e


@e2e
def test_task_target_run_completes_through_its_task(dev_stack: DevProcess) -> None:
    topic = f"e2e-tt-{uuid.uuid4().hex[:10]}"
    name = f"tt-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={"name": name, "target": {"type": "task", "topic": topic}, "timeout_seconds": 600},
        )
        assert r.status_code == 201, r.text
        r = api.post(f"/v1/definitions/{name}/execute", json={"input": {"report": "q3"}})
        assert r.status_code in (200, 201), r.text
        run_id = r.json()["run_id"]

        def reserve() -> dict[str, Any] | None:
            r = api.post(f"/v1/topics/{topic}/reserve", json={"worker_id": "w1", "lease_seconds": 60})
            assert r.status_code in (200, 204), r.text
            return dict(r.json()) if r.status_code == 200 else None

        task = wait_for(reserve)
        assert task, "the worker never created the run's task"
        assert task["run_id"] == run_id and task["data"]["run_id"] == run_id
        assert task["data"]["input"] == {"report": "q3"} and task["data"]["attempt"] == 1
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "running"

        r = api.post(
            f"/v1/tasks/{task['task_id']}/extend-lease",
            json={"worker_id": "w1", "lease_seconds": 60, "details": {"pct": 50}},
        )
        assert r.status_code == 200, r.text
        r = api.post(f"/v1/runs/{run_id}/query", json={"name": "progress"})
        assert (r.status_code, r.json()) == (200, {"details": {"pct": 50}})

        r = api.post(f"/v1/tasks/{task['task_id']}/complete", json={"worker_id": "w1", "result": {"rows": 3}})
        assert r.status_code == 200, r.text
        run = wait_for(
            lambda: (lambda x: x if x["status"] == "completed" else None)(
                api.get(f"/v1/runs/{run_id}").json()
            )
        )
        assert run and run["status"] == "completed" and run["result"] == {"rows": 3}, run
