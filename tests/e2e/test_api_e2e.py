"""The management API on the real local stack, as a user's script drives it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import REPO, DevProcess

e2e = pytest.mark.e2e
HOOK = {"type": "http", "url": "http://127.0.0.1:9/hook"}


def _api(dev: DevProcess) -> httpx.Client:
    return httpx.Client(base_url=dev.base_url, timeout=30)


@e2e
def test_definitions_and_schedules_round_trip(dev_stack: DevProcess) -> None:
    with _api(dev_stack) as api:
        r = api.post("/v1/definitions", json={"name": "e2e-job", "target": HOOK, "tags": ["e2e"]})
        assert r.status_code == 201, r.text
        assert r.json()["signing_secret"]
        r = api.post(
            "/v1/schedules",
            json={
                "schedule_id": "e2e-sched",
                "definition": "e2e-job",
                "spec": {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"},
                "memo": {"owner": "e2e"},
            },
        )
        assert r.status_code == 201, r.text
        described = api.get("/v1/schedules/e2e-sched").json()
        assert len(described["info"]["next_fire_times"]) == 10
        assert all(t.endswith(("T07:00:00Z", "T06:00:00Z")) for t in described["info"]["next_fire_times"])
        # the describe body goes back as a PUT
        described["tags"] = ["changed"]
        r = api.put("/v1/schedules/e2e-sched", json=described)
        assert r.status_code == 200, r.text
        assert r.json()["tags"] == ["changed"] and r.json()["memo"] == {"owner": "e2e"}
        listed = api.get("/v1/schedules", params={"definition": "e2e-job"}).json()["items"]
        assert [s["schedule_id"] for s in listed] == ["e2e-sched"]
        r = api.delete("/v1/definitions/e2e-job")
        assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
        assert api.delete("/v1/schedules/e2e-sched").status_code == 204
        assert api.delete("/v1/definitions/e2e-job").status_code == 204
        versions = api.get("/v1/definitions/e2e-job/versions").json()["items"]
        assert [v["version"] for v in versions] == [1]


@e2e
def test_concurrent_conflicting_updates_exactly_one_wins(dev_stack: DevProcess) -> None:
    with _api(dev_stack) as api:
        api.post("/v1/definitions", json={"name": "race-job", "target": HOOK})
        r = api.post(
            "/v1/schedules",
            json={
                "schedule_id": "race",
                "definition": "race-job",
                "spec": {"intervals": [{"every_seconds": 60}]},
            },
        )
        token = r.json()["conflict_token"]
    results: list[int] = []
    barrier = threading.Barrier(8)

    def update(i: int) -> None:
        with _api(dev_stack) as api:
            barrier.wait()
            r = api.put("/v1/schedules/race", json={"tags": [f"t{i}"], "conflict_token": token})
            results.append(r.status_code)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * 7


@e2e
def test_bad_input_is_4xx_in_the_contract_shape(dev_stack: DevProcess) -> None:
    with _api(dev_stack) as api:
        cases: list[tuple[Any, int, str]] = [
            (
                api.post("/v1/definitions", content=b"{nope", headers={"content-type": "application/json"}),
                400,
                "bad_request",
            ),
            (
                api.post("/v1/definitions", content=b"{}", headers={"content-type": "text/plain"}),
                415,
                "unsupported_media_type",
            ),
            (
                api.post("/v1/definitions", json={"name": "x", "target": HOOK, "oops": 1}),
                422,
                "invalid_argument",
            ),
            (
                api.post(
                    "/v1/definitions",
                    content=b"x" * (300 * 1024),
                    headers={"content-type": "application/json"},
                ),
                413,
                "payload_too_large",
            ),
            (api.get("/v1/definitions", params={"page_token": "forged"}), 400, "invalid_page_token"),
            (api.get("/v1/schedules/nope"), 404, "not_found"),
            (api.request("PATCH", "/v1/schedules"), 405, "method_not_allowed"),
        ]
        for r, status, code in cases:
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code


@e2e
def test_cli_drives_the_api(dev_stack: DevProcess) -> None:
    env_url = ["--url", dev_stack.base_url]

    def gnomon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gnomon.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=60
        )

    body = json.dumps({"name": "cli-job", "target": HOOK})
    r = gnomon("definitions", "create", "--data", body, "--output", "json", *env_url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == 1
    r = gnomon("definitions", "get", "cli-job", "--output", "json", *env_url)
    assert json.loads(r.stdout)["name"] == "cli-job"
    r = gnomon("definitions", "get", "ghost", *env_url)
    assert r.returncode == 3
    r = gnomon("definitions", "create", "--data", body, *env_url)
    assert r.returncode == 4
    r = gnomon(
        "schedules",
        "preview",
        "--output",
        "json",
        *env_url,
        "--data",
        json.dumps({"spec": {"cron": ["0 0 1 * *"]}, "start": "2027-01-01T00:00:00Z", "count": 2}),
    )
    assert json.loads(r.stdout)["fire_times"] == ["2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"]


@e2e
def test_definitions_and_schedules_survive_a_restart(dev_factory: Any, tmp_path: Any) -> None:
    state = str(tmp_path / "state")
    dev = dev_factory("--state-dir", state)
    with _api(dev) as api:
        api.post("/v1/definitions", json={"name": "kept", "target": HOOK})
        api.post(
            "/v1/schedules",
            json={"schedule_id": "kept", "definition": "kept", "spec": {"cron": ["*/5 * * * *"]}},
        )
        api.put("/v1/definitions/kept", json={"name": "kept", "target": HOOK, "description": "v2"})
        token = api.get("/v1/definitions?page_size=1").json()["next_page_token"]
    assert dev.stop() == 0
    dev = dev_factory("--state-dir", state)
    with _api(dev) as api:
        assert api.get("/v1/definitions/kept").json()["version"] == 2
        assert api.get("/v1/schedules/kept").json()["spec"]["cron"] == ["*/5 * * * *"]
        assert [v["version"] for v in api.get("/v1/definitions/kept/versions").json()["items"]] == [2, 1]
        assert (
            token is None
            or api.get("/v1/definitions", params={"page_token": token, "page_size": 1}).status_code == 200
        )
