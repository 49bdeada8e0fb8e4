"""The CLI through typer's CliRunner, against the real API handler in-process.

`open_client` (the one place commands get their client) is replaced by a client over
`HandlerTransport`, so every command meets real server behaviour; the connection it was asked
for is recorded, so URL / stack / auth resolution is checked too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from gnomon import clicommands
from gnomon.cli import app
from gnomon.client import BearerAuth, Client, HandlerTransport

HOOK = {"type": "http", "url": "https://example.com/hook"}
runner = CliRunner()


class Cli:
    """`run(*args)` invokes `gnomon …`; `connections` holds what each command connected to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, transport: httpx.BaseTransport) -> None:
        self.connections: list[clicommands.Connection] = []
        self.transport = transport
        monkeypatch.setattr(clicommands, "open_client", self._open)
        monkeypatch.setattr(clicommands, "POLL_SECONDS", 0.0)
        for var in ("GNOMON_URL", "GNOMON_STACK", "GNOMON_TOKEN"):
            monkeypatch.delenv(var, raising=False)

    def _open(self, conn: clicommands.Connection) -> Client:
        self.connections.append(conn)
        return Client("http://gnomon.test", transport=self.transport, retries=0)

    def run(self, *args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env={"COLUMNS": "200"})

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--output", "json")
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    from gnomon import wiring
    from gnomon.api.app import lambda_handler

    monkeypatch.setenv("GNOMON_STORE", "memory")
    monkeypatch.setenv("GNOMON_PAGE_TOKEN_SECRET", "test-secret")
    wiring.services.cache_clear()
    yield Cli(monkeypatch, HandlerTransport(lambda_handler))
    wiring.services.cache_clear()


def fake_cli(
    monkeypatch: pytest.MonkeyPatch, answer: Callable[[httpx.Request], httpx.Response]
) -> tuple[Cli, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return Cli(monkeypatch, httpx.MockTransport(handler)), seen


# --- the generic verbs ----------------------------------------------------------------------------


def test_generic_verbs_and_exit_codes(cli: Cli) -> None:
    body = json.dumps({"name": "job", "target": HOOK})
    assert cli.json("definitions", "create", "--data", body)["version"] == 1
    assert cli.json("definitions", "get", "job")["name"] == "job"
    ghost = cli.run("definitions", "get", "ghost")
    assert ghost.exit_code == 3 and "not_found" in ghost.stderr
    again = cli.run("definitions", "create", "-d", body)
    assert again.exit_code == 4 and "already_exists" in again.stderr
    invalid = cli.run("definitions", "create", "-d", json.dumps({"name": "x", "target": HOOK, "oops": 1}))
    assert invalid.exit_code == 1 and "oops" in invalid.stderr
    assert cli.run("definitions", "create", "-d", "{nope").exit_code == 2
    assert cli.run("definitions", "list", "--output", "yaml").exit_code == 2
    assert cli.run("definitions", "get").exit_code == 2  # needs X
    assert cli.run("definitions", "nonsense").exit_code == 2


def test_schedule_actions_and_query_parameters(cli: Cli) -> None:
    cli.json("definitions", "create", "-d", json.dumps({"name": "job", "target": HOOK}))
    spec = {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"}
    for sid, group in (("a", "g"), ("b", "h")):
        cli.json(
            "schedules",
            "create",
            "-d",
            json.dumps({"schedule_id": sid, "definition": "job", "spec": spec, "group": group}),
        )
    paused = cli.json("schedules", "pause", "a", "-d", '{"note": "maintenance"}')
    assert paused["state"]["note"] == "maintenance"
    assert cli.json("schedules", "unpause", "a")["state"]["paused"] is False  # an empty body is {}
    listed = cli.json("schedules", "list", "-p", "group=g")
    assert [s["schedule_id"] for s in listed["items"]] == ["a"]
    assert cli.json("schedules", "trigger", "a", "-d", '{"idempotency_key": "k"}')["trigger"] == "trigger"
    deleted = cli.run("schedules", "delete", "b")
    assert deleted.exit_code == 0 and deleted.stdout == ""
    assert cli.run("schedules", "get", "b").exit_code == 3


def test_data_from_a_file_and_stdin(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "def.json"
    path.write_text(json.dumps({"name": "from-file", "target": HOOK}))
    assert cli.json("definitions", "create", "--data", f"@{path}")["name"] == "from-file"
    result = cli.run(
        "definitions", "create", "-d", "-", "-o", "json", input=json.dumps({"name": "piped", "target": HOOK})
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "piped"
    assert cli.run("definitions", "create", "-d", f"@{tmp_path / 'missing.json'}").exit_code == 2


def test_readable_tables_by_default(cli: Cli) -> None:
    cli.json(
        "definitions",
        "create",
        "-d",
        json.dumps({"name": "nightly-report", "target": HOOK, "tags": ["reports"]}),
    )
    listed = cli.run("definitions", "list")
    assert listed.exit_code == 0
    assert "nightly-report" in listed.stdout and "http" in listed.stdout and "{" not in listed.stdout
    got = cli.run("definitions", "get", "nightly-report")
    assert got.exit_code == 0
    assert (
        "target.url" in got.stdout
        and "https://example.com/hook" in got.stdout
        and "retry.max_attempts" in got.stdout
    )
    empty = cli.run("schedules", "list")
    assert empty.exit_code == 0 and "no schedules" in empty.stdout


def test_errors_are_json_on_stderr_with_output_json(cli: Cli) -> None:
    result = cli.run("schedules", "get", "ghost", "-o", "json")
    assert result.exit_code == 3
    assert json.loads(result.stderr)["error"]["details"]["resource"] == "schedule/ghost"
    table = cli.run(
        "schedules", "create", "-d", json.dumps({"schedule_id": "s", "definition": "nope", "spec": {}})
    )
    assert table.exit_code == 1 and table.stderr.startswith("error: invalid_argument")
    assert "  definition: " in table.stderr


def test_unreachable_api_is_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    cli, _ = fake_cli(monkeypatch, refuse)
    result = cli.run("schedules", "list")
    assert result.exit_code == 1 and "connection refused" in result.stderr


# --- connection: url, stack, auth -----------------------------------------------------------------


def test_url_from_the_command_the_root_or_the_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.run("definitions", "list", "--url", "http://cmd:1")
    cli.run("--url", "http://root:1", "definitions", "list")
    cli.run("--url", "http://root:1", "definitions", "list", "--url", "http://cmd:1")
    monkeypatch.setenv("GNOMON_URL", "http://env:1")
    cli.run("definitions", "list")
    cli.run("--url", "http://root:1", "definitions", "list")
    assert [c.url for c in cli.connections] == [
        "http://cmd:1",
        "http://root:1",
        "http://cmd:1",
        "http://env:1",
        "http://root:1",
    ]
    assert all(c.auth is None for c in cli.connections)


def test_token_and_sigv4(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from gnomon.adapters.sigv4 import SigV4Auth

    cli.run("definitions", "list", "--token", "t0k")
    monkeypatch.setenv("GNOMON_TOKEN", "env-token")
    cli.run("definitions", "list")
    monkeypatch.delenv("GNOMON_TOKEN")
    cli.run("definitions", "list", "--region", "eu-west-1")
    first, second, third = cli.connections
    assert first.auth == "t0k" and second.auth == "env-token"
    assert isinstance(third.auth, SigV4Auth) and third.auth.region == "eu-west-1"
    assert cli.run("definitions", "list", "--token", "x", "--region", "eu-west-1").exit_code == 2
    assert isinstance(Client("http://x", "tok")._http.auth, BearerAuth)


def test_stack_reads_the_api_url_output_and_signs(cli: Cli) -> None:
    boto3 = pytest.importorskip("boto3")
    from moto import mock_aws

    from gnomon.adapters.sigv4 import SigV4Auth

    template = {
        "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"ApiUrl": {"Value": "https://abc123.execute-api.us-east-1.amazonaws.com"}},
    }
    with mock_aws():
        cf = boto3.client("cloudformation", region_name="us-east-1")
        cf.create_stack(StackName="gnomon-prod", TemplateBody=json.dumps(template))
        cf.create_stack(StackName="other", TemplateBody=json.dumps({"Resources": template["Resources"]}))
        assert (
            cli.run("definitions", "list", "--stack", "gnomon-prod", "--region", "us-east-1").exit_code == 0
        )
        assert cli.run("--stack", "gnomon-prod", "definitions", "list").exit_code == 0
        missing = cli.run("definitions", "list", "--stack", "other")
        assert missing.exit_code == 1 and "no ApiUrl output" in missing.stderr
        absent = cli.run("definitions", "list", "--stack", "ghost")
        assert absent.exit_code == 1 and "ghost" in absent.stderr
        assert cli.run("definitions", "list", "--stack", "gnomon-prod", "--url", "http://x").exit_code == 2
    first, second = cli.connections
    assert first.url == second.url == "https://abc123.execute-api.us-east-1.amazonaws.com"
    assert isinstance(first.auth, SigV4Auth) and first.auth.region == "us-east-1"


# --- schedules preview ----------------------------------------------------------------------------


def test_preview_takes_a_positional_cron(cli: Cli) -> None:
    answer = cli.json(
        "schedules",
        "preview",
        "0 9 * * MON-FRI",
        "--tz",
        "Europe/Riga",
        "-n",
        "3",
        "--start",
        "2027-01-01T00:00:00Z",
    )
    assert answer == {"fire_times": ["2027-01-01T07:00:00Z", "2027-01-04T07:00:00Z", "2027-01-05T07:00:00Z"]}
    table = cli.run(
        "schedules", "preview", "0 9 * * MON-FRI", "--tz", "Europe/Riga", "-n", "2", "--start", "2027-01-01"
    )
    assert table.exit_code == 0
    assert "2027-01-01T07:00:00Z" in table.stdout and "Fri 2027-01-01 09:00:00 EET" in table.stdout
    ended = cli.json(
        "schedules", "preview", "0 0 * * *", "--start", "2027-01-01T00:00:00Z", "--end", "2027-01-02"
    )
    assert ended["fire_times"] == ["2027-01-02T00:00:00Z"]
    now = cli.json("schedules", "preview", "*/5 * * * *", "-n", "1")
    assert len(now["fire_times"]) == 1


def test_preview_keeps_data_and_checks_usage(cli: Cli) -> None:
    body = {"spec": {"cron": ["0 0 1 * *"]}, "start": "2027-01-01T00:00:00Z", "count": 2}
    assert cli.json("schedules", "preview", "--data", json.dumps(body))["fire_times"] == [
        "2027-02-01T00:00:00Z",
        "2027-03-01T00:00:00Z",
    ]
    assert cli.run("schedules", "preview").exit_code == 2
    assert cli.run("schedules", "preview", "0 0 * * *", "--data", json.dumps(body)).exit_code == 2
    assert cli.run("schedules", "preview", "0 0 * * *", "--start", "tomorrow").exit_code == 2
    bad = cli.run("schedules", "preview", "61 * * * *")
    assert bad.exit_code == 1 and "spec.cron[0]" in bad.stderr


# --- schedules backfill ---------------------------------------------------------------------------


def backfill_api(request: httpx.Request, statuses: Iterator[list[str]]) -> httpx.Response:
    if request.url.path == "/v1/schedules/s/backfill":
        body = json.loads(request.content)
        times = ["2026-01-01T09:00:00Z", "2026-01-02T09:00:00Z", "2026-01-03T09:00:00Z"]
        if body.get("dry_run"):
            return httpx.Response(200, json={"fire_times": times, "runs_created": 0})
        return httpx.Response(201, json={"fire_times": times, "runs_created": 3})
    if request.url.path == "/v1/schedules/s":  # a describe without backfill progress
        return httpx.Response(200, json={"schedule_id": "s", "info": {"backfills": []}})
    if request.url.path == "/v1/runs":
        runs = [{"run_id": f"r{i}", "trigger": "backfill", "status": s} for i, s in enumerate(next(statuses))]
        return httpx.Response(200, json={"items": runs, "next_page_token": None})
    return httpx.Response(
        404, json={"error": {"code": "not_found", "message": "", "details": {"resource": "x"}}}
    )


def test_backfill_shows_progress_until_every_run_started(monkeypatch: pytest.MonkeyPatch) -> None:
    statuses = iter([["pending"] * 3, ["running", "pending", "pending"], ["completed", "running", "running"]])
    cli, seen = fake_cli(monkeypatch, lambda r: backfill_api(r, statuses))
    result = cli.run(
        "schedules", "backfill", "s", "--start", "2026-01-01", "--end", "2026-01-03T23:59:59+00:00"
    )
    assert result.exit_code == 0, result.stderr
    assert "runs created: 3" in result.stdout and "3/3" in result.stdout
    first = seen[0]
    assert json.loads(first.content) == {"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T23:59:59Z"}
    runs_query = seen[2].url.params
    assert runs_query["schedule"] == "s" and runs_query["to"] == "2026-01-04T00:00:00Z"
    assert len([r for r in seen if r.url.path == "/v1/runs"]) == 3


def test_backfill_dry_run_json_and_data(monkeypatch: pytest.MonkeyPatch) -> None:
    cli, seen = fake_cli(monkeypatch, lambda r: backfill_api(r, iter([])))
    dry = cli.run("schedules", "backfill", "s", "--start", "2026-01-01", "--end", "2026-01-04", "--dry-run")
    assert dry.exit_code == 0 and "would fire" in dry.stdout and "2026-01-02T09:00:00Z" in dry.stdout
    answer = cli.json(
        "schedules",
        "backfill",
        "s",
        "-d",
        '{"start": "2026-01-01T00:00:00Z", "end": "2026-01-04T00:00:00Z"}',
        "--overlap",
        "allow_all",
    )
    assert answer["runs_created"] == 3
    assert json.loads(seen[-1].content)["overlap"] == "allow_all"
    no_wait = cli.run(
        "schedules", "backfill", "s", "--start", "2026-01-01", "--end", "2026-01-04", "--no-wait"
    )
    assert no_wait.exit_code == 0 and all(r.url.path != "/v1/runs" for r in seen)
    assert cli.run("schedules", "backfill", "s", "--start", "2026-01-01").exit_code == 2


def test_backfill_on_the_real_server_reads_its_progress(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.json("definitions", "create", "-d", json.dumps({"name": "job", "target": HOOK}))
    spec = {"cron": ["0 0 * * *"]}
    cli.json("schedules", "create", "-d", json.dumps({"schedule_id": "s", "definition": "job", "spec": spec}))
    dry = cli.json("schedules", "backfill", "s", "--start", "2026-01-01", "--end", "2026-01-03", "--dry-run")
    if dry.get("error"):
        pytest.skip("backfill is not served yet")
    assert dry == {
        "fire_times": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"],
        "runs_created": 0,
    }
    real_progress = clicommands.backfill_started
    # no ticker runs in-process: pretend two runs have started, then all three
    progress = iter([2, 3])
    monkeypatch.setattr(clicommands, "backfill_started", lambda *a: next(progress))
    result = cli.run("schedules", "backfill", "s", "--start", "2026-01-01", "--end", "2026-01-03")
    assert result.exit_code == 0 and "runs created: 3" in result.stdout and "3/3" in result.stdout
    with Client("http://gnomon.test", transport=cli.transport) as client:  # the describe's progress
        assert real_progress(client, "s", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z") == 0


def test_backfill_on_a_missing_schedule_is_exit_3(cli: Cli) -> None:
    assert (
        cli.run("schedules", "backfill", "ghost", "--start", "2026-01-01", "--end", "2026-01-02").exit_code
        == 3
    )


# --- runs watch -----------------------------------------------------------------------------------


def test_runs_watch_refreshes_a_table(cli: Cli) -> None:
    cli.json("definitions", "create", "-d", json.dumps({"name": "job", "target": HOOK}))
    cli.json("definitions", "execute", "job", "-d", '{"run_id": "run-1"}')
    result = cli.run("runs", "watch", "--definition", "job", "--interval", "0.1", "--iterations", "2")
    assert result.exit_code == 0, result.stderr
    assert "run-1" in result.stdout and "pending" in result.stdout and "definition=job" in result.stdout
    lines = cli.run(
        "runs", "watch", "--interval", "0.1", "--iterations", "2", "-o", "json"
    ).stdout.splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["items"][0]["run_id"] == "run-1"
    quiet = cli.run("runs", "watch", "--schedule", "none", "--iterations", "1")
    assert quiet.exit_code == 0 and "no runs" in quiet.stdout


# --- apply ----------------------------------------------------------------------------------------

CONFIG = """
definitions:
  - name: report
    target: {type: http, url: "https://example.com/hook"}
schedules:
  - schedule_id: nightly
    definition: report
    spec: {cron: ["0 2 * * *"], timezone: Europe/Riga}
"""


def test_apply_plans_applies_and_then_has_nothing_to_do(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "gnomon.yaml"
    config.write_text(CONFIG)
    dry = cli.run("apply", "-f", str(config), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "+ create definition report" in dry.stdout and "+ create schedule nightly" in dry.stdout
    assert cli.json("definitions", "list")["items"] == []
    applied = cli.run("apply", "-f", str(config), "--identity", "ci")
    assert applied.exit_code == 0 and "Applied 2 changes." in applied.stdout
    assert cli.json("schedules", "get", "nightly")["info"]["identity"] == "ci"
    again = cli.json("apply", "-f", str(config))
    assert (
        again["counts"] == {"create": 0, "update": 0, "unchanged": 2, "delete": 0}
        and again["applied"] is False
    )

    config.write_text(CONFIG.replace("0 2 * * *", "0 3 * * *"))
    changed = cli.run("apply", "-f", str(config))
    assert (
        "~ update schedule nightly (spec)" in changed.stdout
        and "= unchanged definition report" in changed.stdout
    )


def test_apply_prune_and_json(cli: Cli, tmp_path: Path) -> None:
    cli.json("definitions", "create", "-d", json.dumps({"name": "stray", "target": HOOK}))
    config = tmp_path / "gnomon.json"
    config.write_text(json.dumps({"definitions": [{"name": "kept", "target": HOOK}]}))
    answer = cli.json("apply", "-f", str(config), "--prune")
    assert answer["applied"] is True
    assert [(c["action"], c["name"]) for c in answer["changes"]] == [("create", "kept"), ("delete", "stray")]
    assert [d["name"] for d in cli.json("definitions", "list")["items"]] == ["kept"]


def test_apply_reports_bad_files_and_server_refusals(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "definitions:\n  - name: a\n    target: {type: http, url: 'https://x'}\n    retry: {max_attempts: 0}\n"
    )
    result = cli.run("apply", "-f", str(bad))
    assert result.exit_code == 2 and "definitions[0].retry.max_attempts" in result.stderr
    assert cli.run("apply", "-f", str(tmp_path / "missing.yaml")).exit_code == 2
    assert cli.run("apply").exit_code == 2
    refused = tmp_path / "refused.yaml"
    refused.write_text("schedules:\n  - {schedule_id: s, definition: ghost, spec: {cron: ['0 0 * * *']}}\n")
    result = cli.run("apply", "-f", str(refused))
    assert result.exit_code == 1 and "+ create schedule s: invalid_argument" in result.stderr


def test_apply_merges_several_files(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "definitions:\n  - {name: a, target: {type: http, url: 'https://example.com'}}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "schedules:\n  - {schedule_id: s, definition: a, spec: {cron: ['0 0 * * *']}}\n"
    )
    result = cli.run("apply", "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "b.yaml"))
    assert result.exit_code == 0 and "Applied 2 changes." in result.stdout
    dup = cli.run("apply", "-f", str(tmp_path / "a.yaml"), "-f", str(tmp_path / "a.yaml"))
    assert dup.exit_code == 2 and "repeats" in dup.stderr


# --- `gnomon dev` is untouched --------------------------------------------------------------------


def test_dev_keeps_its_options() -> None:
    help_text = runner.invoke(app, ["dev", "--help"]).stdout
    for option in ("--port", "--tick-seconds", "--state-dir", "--allow-target", "--allow-python-module"):
        assert option in help_text
    assert runner.invoke(app, ["dev", "--tick-seconds", "0"]).exit_code == 2
    assert runner.invoke(app, ["dev", "--allow-target", "not-a-cidr"]).exit_code == 2
