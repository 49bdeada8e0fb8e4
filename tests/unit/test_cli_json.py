"""Every list verb of the CLI prints valid JSON with `--output json`, against the real API
handler in-process (with something to list, so items are rendered too)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.clicommands import COLLECTIONS
from tests.unit.test_cli import Cli

HOOK = {"type": "http", "url": "https://example.com/hook"}
LIST_COLLECTIONS = sorted(c for c, (verbs, _) in COLLECTIONS.items() if "list" in verbs)
# Query parameters a list needs (`-p k=v`).
REQUIRED_PARAMS: dict[str, list[str]] = {"upcoming": ["from={from}", "to={to}"]}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    from gnomon import wiring
    from gnomon.api.app import lambda_handler
    from gnomon.client import HandlerTransport

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    cli = Cli(monkeypatch, HandlerTransport(lambda_handler))
    seed(cli)
    yield cli
    wiring.services.cache_clear()


def now_params() -> dict[str, str]:
    start = datetime.now(UTC).replace(microsecond=0)
    return {"from": start.isoformat(), "to": (start + timedelta(hours=24)).isoformat()}


def seed(cli: Cli) -> None:
    """A definition, a schedule and a run, so lists have items."""
    cli.json("definitions", "create", "-d", json.dumps({"name": "job", "target": HOOK, "tags": ["t"]}))
    schedule = {"schedule_id": "hourly", "definition": "job", "spec": {"cron": ["0 * * * *"]}}
    cli.json("schedules", "create", "-d", json.dumps(schedule))
    cli.json("definitions", "execute", "job", "-d", json.dumps({"input": {"x": 1}}))


def run_json(cli: Cli, *args: str) -> Any:
    result = cli.run(*args, "--output", "json")
    if result.exit_code == 3:
        error = json.loads(result.stderr)["error"]
        if error.get("code") == "not_found" and "route" in json.dumps(error).lower():
            pytest.skip(f"`gnomon {' '.join(args)}`: the API has no such route here (404: {error})")
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_every_list_collection_is_covered() -> None:
    assert {"definitions", "schedules", "runs", "stats"} <= set(LIST_COLLECTIONS)


@pytest.mark.parametrize("collection", LIST_COLLECTIONS)
def test_list_prints_json(cli: Cli, collection: str) -> None:
    params = [arg for p in REQUIRED_PARAMS.get(collection, []) for arg in ("-p", p.format(**now_params()))]
    answer = run_json(cli, collection, "list", *params)
    assert isinstance(answer, dict | list)
    if isinstance(answer, dict) and isinstance(answer.get("items"), list):
        assert all(isinstance(item, dict) for item in answer["items"])
    if collection in ("definitions", "schedules", "runs", "upcoming"):
        assert answer["items"], answer


def test_schedules_preview_prints_json(cli: Cli) -> None:
    answer = run_json(cli, "schedules", "preview", "0 9 * * MON-FRI", "--tz", "Europe/Riga", "-n", "3")
    assert len(answer["fire_times"]) == 3


def test_stats_prints_json(cli: Cli) -> None:
    answer = run_json(cli, "stats", "list")
    assert isinstance(answer, dict)
