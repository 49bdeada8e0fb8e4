"""`gnomon export` and the apply file's JSON Schema: what is exported applies as a no-op, and
validates against the schema generated from the API's models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gnomon.apply import Config, apply_plan, config_json_schema, export_config, parse_config, plan
from gnomon.client import Client
from tests.unit.test_cli import Cli

HOOK = {"type": "http", "url": "https://example.com/hook"}
FILE: dict[str, Any] = {
    "definitions": [
        {"name": "report", "target": HOOK, "tags": ["reports"], "retry": {"max_attempts": 5}},
        {
            "name": "cleanup",
            "description": "Nightly cleanup",
            "target": {"type": "python", "function": "jobs.cleanup:run"},
            "timeout_seconds": 120,
            "notifications": [{"on": ["failed"], "webhook_url": "https://example.com/alert"}],
        },
        {"name": "unused", "target": HOOK},
    ],
    "schedules": [
        {
            "schedule_id": "nightly",
            "group": "reports",
            "definition": "report",
            "spec": {"cron": ["0 2 * * *"], "timezone": "Europe/Riga"},
            "policies": {"overlap": "buffer_one", "catchup_window_seconds": 3600},
            "input": {"format": "pdf"},
            "memo": {"owner": "finance"},
        },
        {
            "schedule_id": "hourly",
            "definition": "cleanup",
            "spec": {"intervals": [{"every_seconds": 3600}]},
            "tags": ["ops"],
        },
        {
            "schedule_id": "paused",
            "group": "reports",
            "definition": "report",
            "spec": {"cron": ["0 9 * * MON"]},
            "state": {"paused": True, "note": "until Q3"},
        },
    ],
}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    from gnomon import wiring
    from gnomon.api.app import lambda_handler
    from gnomon.client import HandlerTransport

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    yield Cli(monkeypatch, HandlerTransport(lambda_handler))
    wiring.services.cache_clear()


@pytest.fixture
def client(cli: Cli) -> Iterator[Client]:
    with Client("http://gnomon.test", transport=cli.transport, retries=0) as c:
        yield c


def config(doc: dict[str, Any]) -> Config:
    return parse_config(json.dumps(doc), source="test.json", json_only=True)


def apply(client: Client, doc: dict[str, Any], *, prune: bool = False) -> list[str]:
    the_plan = plan(client, config(doc), prune=prune)
    apply_plan(client, the_plan)
    return [c.line() for c in the_plan.changes if c.action != "unchanged"]


def test_applying_a_file_twice_changes_nothing_the_second_time(client: Client) -> None:
    first = apply(client, FILE)
    assert len(first) == 6 and all(line.startswith("+ create") for line in first)
    second = plan(client, config(FILE), prune=True)
    assert not second.has_changes
    assert second.counts() == {"create": 0, "update": 0, "unchanged": 6, "delete": 0}


def test_export_then_apply_is_a_no_op(client: Client) -> None:
    apply(client, FILE)
    exported = export_config(client)
    assert [d["name"] for d in exported["definitions"]] == ["cleanup", "report", "unused"]
    assert [s["schedule_id"] for s in exported["schedules"]] == ["hourly", "nightly", "paused"]
    again = plan(client, config(exported), prune=True)
    assert not again.has_changes, again.lines()
    assert again.counts()["unchanged"] == 6


def test_export_keeps_only_what_a_file_declares(client: Client) -> None:
    apply(client, FILE)
    exported = export_config(client)
    server_fields = {
        "version",
        "conflict_token",
        "info",
        "generation",
        "signing_secret",
        "created_at",
        "updated_at",
        "updated_by",
        "identity",
        "request_id",
    }
    for item in exported["definitions"] + exported["schedules"]:
        assert not server_fields & set(item), item
    report = next(d for d in exported["definitions"] if d["name"] == "report")
    # defaults are left out (a missing field means the default, as with a PUT)
    assert report == {"name": "report", "tags": ["reports"], "target": HOOK, "retry": {"max_attempts": 5}}
    by_id = {s["schedule_id"]: s for s in exported["schedules"]}
    assert "state" not in by_id["nightly"] and "state" not in by_id["hourly"]
    assert by_id["paused"]["state"] == {"paused": True, "note": "until Q3"}
    assert by_id["nightly"]["policies"] == {"overlap": "buffer_one", "catchup_window_seconds": 3600}


def test_export_recreates_the_deployment_elsewhere(client: Client, cli: Cli) -> None:
    """Export, delete everything, apply the export: the same resources, paused state included."""
    apply(client, FILE)
    before = {s: client.schedules.get(s) for s in ("nightly", "hourly", "paused")}
    exported = export_config(client)
    assert [line[0] for line in apply(client, {}, prune=True)] == ["-"] * 6
    assert [line[0] for line in apply(client, exported)] == ["+"] * 6
    for sid, old in before.items():
        new = client.schedules.get(sid)
        assert old is not None and new is not None
        for key in ("spec", "policies", "input", "tags", "memo", "group", "definition"):
            assert new[key] == old[key], (sid, key)
        assert new["state"]["paused"] == old["state"]["paused"]
    assert not plan(client, config(FILE), prune=True).has_changes


def test_export_with_a_group_filters(client: Client) -> None:
    apply(client, FILE)
    reports = export_config(client, group="reports")
    assert [s["schedule_id"] for s in reports["schedules"]] == ["nightly", "paused"]
    assert [d["name"] for d in reports["definitions"]] == ["report"]  # only what they use
    default = export_config(client, group="default")
    assert [s["schedule_id"] for s in default["schedules"]] == ["hourly"]
    assert [d["name"] for d in default["definitions"]] == ["cleanup"]
    assert export_config(client, group="nobody") == {"definitions": [], "schedules": []}
    # a group's export applies as a no-op too (without prune: the rest is not in it)
    assert not plan(client, config(reports)).has_changes


def test_an_export_validates_against_the_json_schema(client: Client) -> None:
    schema = config_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    apply(client, FILE)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(export_config(client))) == []
    assert list(validator.iter_errors(FILE)) == []
    assert list(validator.iter_errors({})) == []


def test_the_json_schema_refuses_what_apply_refuses() -> None:
    validator = jsonschema.Draft202012Validator(config_json_schema())
    bad: list[Any] = [
        {"definitionz": []},
        {"definitions": [{"name": "x", "target": HOOK, "oops": 1}]},
        {"definitions": [{"name": "x"}]},  # no target
        {"definitions": [{"name": "x", "target": HOOK, "version": 3}]},  # a server field
        {"schedules": [{"schedule_id": "s", "definition": "x", "spec": {}, "conflict_token": "1"}]},
        {"schedules": [{"schedule_id": "s", "spec": {"cron": ["0 0 * * *"]}}]},  # no definition
        {"schedules": [{"schedule_id": "s", "definition": "x", "spec": {}, "request_id": "r"}]},
        {"definitions": "not a list"},
    ]
    for doc in bad:
        assert list(validator.iter_errors(doc)), doc


# --- the commands --------------------------------------------------------------------------------


def test_export_command_round_trips_through_apply(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "gnomon.yaml"
    source.write_text(yaml.safe_dump(FILE))
    assert cli.run("apply", "-f", str(source)).exit_code == 0
    stdout = cli.run("export")
    assert stdout.exit_code == 0, stdout.stderr
    assert [d["name"] for d in yaml.safe_load(stdout.stdout)["definitions"]] == [
        "cleanup",
        "report",
        "unused",
    ]
    out = tmp_path / "exported.yaml"
    written = cli.run("export", "-o", str(out))
    assert written.exit_code == 0 and "3 definition(s) and 3 schedule(s)" in written.stderr
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(stdout.stdout)
    again = cli.json("apply", "-f", str(out), "--prune")
    assert again["applied"] is False
    assert again["counts"] == {"create": 0, "update": 0, "unchanged": 6, "delete": 0}


def test_export_command_json_format_and_group(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "gnomon.json"
    source.write_text(json.dumps(FILE))
    assert cli.run("apply", "-f", str(source)).exit_code == 0
    as_json = cli.run("export", "--format", "json", "--group", "reports")
    assert as_json.exit_code == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert [s["schedule_id"] for s in doc["schedules"]] == ["nightly", "paused"]
    out = tmp_path / "reports.json"  # the format follows the file's suffix
    assert cli.run("export", "-o", str(out), "--group", "reports").exit_code == 0
    assert json.loads(out.read_text()) == doc
    jsonschema.validate(doc, config_json_schema())
    assert cli.run("export", "--format", "toml").exit_code == 2


def test_apply_schema_prints_the_schema_without_calling_the_api(cli: Cli) -> None:
    result = cli.run("apply", "--schema")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == config_json_schema()
    assert cli.connections == []
    assert cli.run("apply").exit_code == 2  # neither a file nor --schema
