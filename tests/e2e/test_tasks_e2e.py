"""Leased tasks on the real local stack, as an external worker drives them over HTTP.

Skipped until app.py includes the task router: while `POST /v1/tasks` answers the API's own
"no route" 404, there is nothing to drive; once it is wired these run by themselves.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevProcess

e2e = pytest.mark.e2e


def _api(dev: DevProcess) -> httpx.Client:
    return httpx.Client(base_url=dev.base_url, timeout=30)


def _topic() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def _create(api: httpx.Client, topic: str, **body: Any) -> dict[str, Any]:
    r = api.post("/v1/tasks", json={"topic": topic, **body})
    if r.status_code == 404 and r.json()["error"]["details"].get("resource", "").startswith("route/"):
        pytest.skip("the task routes are not wired into gnomon.api.app yet (POST /v1/tasks has no route)")
    assert r.status_code == 201, r.text
    return dict(r.json())


@e2e
def test_create_reserve_extend_complete(dev_stack: DevProcess) -> None:
    topic = _topic()
    with _api(dev_stack) as api:
        created = _create(api, topic, data={"report": "q3"}, task_group_id="batch-1")
        task_id = created["task_id"]
        assert created["status"] == "ready" and created["record_version"] == 1

        r = api.post(f"/v1/topics/{topic}/reserve", json={"worker_id": "w1", "lease_seconds": 30})
        assert r.status_code == 200, r.text
        leased = r.json()
        assert leased["task_id"] == task_id and leased["status"] == "leased"
        assert leased["lease"]["owner"] == "w1" and leased["data"] == {"report": "q3"}
        token = leased["lease"]["token"]

        r = api.post(
            f"/v1/tasks/{task_id}/extend-lease",
            json={"worker_id": "w1", "lease_seconds": 60, "details": {"pct": 50}, "lease_token": token},
        )
        assert r.status_code == 200, r.text
        extended = r.json()
        assert extended["lease"]["token"] == token and extended["inbox"] == []
        assert extended["lease"]["expires_at"] > leased["lease"]["expires_at"]
        assert extended["details"] == {"pct": 50} and extended["record_version"] == 3

        info = api.get(f"/v1/topics/{topic}").json()
        assert (info["ready"], info["leased"], info["snoozed"]) == (0, 1, 0)
        assert [w["worker_id"] for w in info["workers"]] == ["w1"]
        leases = api.get("/v1/leases", params={"topic": topic}).json()["items"]
        assert [t["task_id"] for t in leases] == [task_id]

        r = api.post(f"/v1/tasks/{task_id}/complete", json={"worker_id": "w2", "result": 1})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "wrong_owner")
        r = api.post(f"/v1/tasks/{task_id}/complete", json={"worker_id": "w1", "result": {"rows": 42}})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed" and r.json()["lease"] is None

        got = api.get(f"/v1/tasks/{task_id}").json()
        assert got["status"] == "completed" and got["result"] == {"rows": 42} and got["record_version"] == 4
        assert (
            api.post(f"/v1/topics/{topic}/reserve", json={"worker_id": "w1", "lease_seconds": 30}).status_code
            == 204
        )
        listed = api.get("/v1/tasks", params={"task_group_id": "batch-1"}).json()["items"]
        assert [t["task_id"] for t in listed] == [task_id] and "data" not in listed[0]


@e2e
def test_concurrent_workers_get_different_tasks(dev_stack: DevProcess) -> None:
    topic = _topic()
    n = 6
    with _api(dev_stack) as api:
        ids = {_create(api, topic, task_id=f"{topic}-{i}")["task_id"] for i in range(n)}
    barrier = threading.Barrier(n + 2)
    answers: list[tuple[int, dict[str, Any] | None]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with _api(dev_stack) as api:
            barrier.wait()
            r = api.post(f"/v1/topics/{topic}/reserve", json={"worker_id": f"w{i}", "lease_seconds": 60})
            with lock:
                answers.append((r.status_code, r.json() if r.status_code == 200 else None))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n + 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    won = [body for status, body in answers if status == 200 and body is not None]
    assert len(answers) == n + 2 and sorted(s for s, _ in answers) == [200] * n + [204] * 2, answers
    assert {t["task_id"] for t in won} == ids  # every task once: never one task to two workers
    with _api(dev_stack) as api:
        for t in won:
            assert api.get(f"/v1/tasks/{t['task_id']}").json()["lease"]["owner"] == t["lease"]["owner"]
