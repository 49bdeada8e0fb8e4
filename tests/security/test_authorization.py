"""Per-group authorization (gnomon.api.access) and who is recorded as the author of a change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gnomon.api import access
from gnomon.api.access import parse_groups
from tests.security.conftest import HOOK, Caller
from tests.unit.apiclient import TESTER, Answer, ApiClient


def schedule(sid: str, group: str, **extra: Any) -> dict[str, Any]:
    return {"schedule_id": sid, "group": group, "definition": "job", "spec": {"cron": ["0 0 1 1 *"]}, **extra}


@pytest.fixture
def world(admin: ApiClient) -> dict[str, str]:
    """A definition, one schedule in team-a and one in team-b, each with a triggered run."""
    assert admin.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    runs = {}
    for sid, group in (("sa", "team-a"), ("sb", "team-b")):
        assert admin.post("/v1/schedules", schedule(sid, group)).status == 201
        run = admin.post(f"/v1/schedules/{sid}/trigger", {})
        assert run.status == 201, run.body
        runs[sid] = run.body["run_id"]
    ex = admin.post("/v1/definitions/job/execute", {"run_id": "adhoc-1"})
    assert ex.status == 201, ex.body
    return {"run_a": runs["sa"], "run_b": runs["sb"]}


def forbidden(answer: Answer) -> bool:
    return (
        answer.status == 403
        and answer.body["error"]["code"] == "forbidden"
        and "message" in answer.body["error"]
    )


@pytest.mark.parametrize(
    ("raw", "groups"),
    [
        ("[team-a team-b]", {"team-a", "team-b"}),  # API Gateway's rendering of a JWT array claim
        ('["team-a","team-b"]', {"team-a", "team-b"}),
        ("team-a,team-b", {"team-a", "team-b"}),
        ("team-a  team-b", {"team-a", "team-b"}),
        (["team-a"], {"team-a"}),
        ("", set()),
        ("[]", set()),
    ],
)
def test_parse_groups(raw: Any, groups: set[str]) -> None:
    assert parse_groups(raw) == groups


# (method, path template, body) a team-a caller must not be able to do to team-b's things.
OTHER_GROUP = [
    ("GET", "/v1/schedules/sb", None),
    ("PUT", "/v1/schedules/sb", {"tags": ["x"]}),
    ("DELETE", "/v1/schedules/sb", None),
    ("POST", "/v1/schedules/sb/pause", {}),
    ("POST", "/v1/schedules/sb/unpause", {}),
    ("POST", "/v1/schedules/sb/trigger", {}),
    ("POST", "/v1/schedules/sb/backfill", {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}),
    ("POST", "/v1/schedules", schedule("new-b", "team-b")),
    ("POST", "/v1/schedules", {k: v for k, v in schedule("new-default", "x").items() if k != "group"}),
    ("PUT", "/v1/schedules/sa", {"group": "team-b"}),
    ("GET", "/v1/schedules?group=team-b", None),
    ("GET", "/v1/runs?schedule=sb", None),
    ("GET", "/v1/upcoming?from=2026-01-01T00:00:00Z&to=2026-01-01T12:00:00Z&group=team-b", None),
    ("POST", "/v1/schedules/bulk", {"action": "pause", "filter": {}}),
    ("POST", "/v1/schedules/bulk", {"action": "pause", "filter": {"group": "team-b"}}),
    ("GET", "/v1/groups/team-b", None),
    ("PUT", "/v1/groups/team-a", {"max_schedules": 1000}),  # quotas are an administrator's
    ("POST", "/v1/definitions", {"name": "mine", "target": HOOK}),
    ("PUT", "/v1/definitions/job", {"name": "job", "target": HOOK}),
    ("DELETE", "/v1/definitions/job", None),
    ("POST", "/v1/definitions/job/execute", {}),
    ("POST", "/v1/calendars", {"name": "hol", "calendars": [{"month": 12, "day_of_month": 25}]}),
    ("POST", "/v1/dlq/redrive", {}),
]
RUN_ACTIONS = [
    ("GET", "", None),
    ("GET", "/history", None),
    ("POST", "/cancel", {}),
    ("POST", "/terminate", {}),
    ("POST", "/retry", {}),
    ("POST", "/signal", {"name": "s", "payload": {}}),
    ("POST", "/query", {"name": "q"}),
    ("POST", "/complete", {"callback_token": "x"}),
    ("POST", "/fail", {"callback_token": "x", "error": {"code": "e"}}),
]


def _call(client: ApiClient, method: str, path: str, body: Any) -> Answer:
    return client.request(method, path, body)


@pytest.mark.parametrize(("method", "path", "body"), OTHER_GROUP)
def test_restricted_jwt_caller_is_refused_outside_its_groups(
    world: dict[str, str], jwt_caller: Caller, admin: ApiClient, method: str, path: str, body: Any
) -> None:
    before = admin.get("/v1/schedules/sb").body
    answer = _call(jwt_caller(sub="alice", gnomon_groups="[team-a]"), method, path, body)
    assert forbidden(answer), (answer.status, answer.body)
    after = admin.get("/v1/schedules/sb").body
    assert after["conflict_token"] == before["conflict_token"]  # nothing changed


@pytest.mark.parametrize(("method", "suffix", "body"), RUN_ACTIONS)
def test_runs_of_another_groups_schedule_are_refused(
    world: dict[str, str], jwt_caller: Caller, method: str, suffix: str, body: Any
) -> None:
    alice = jwt_caller(sub="alice", groups="team-a")
    assert forbidden(_call(alice, method, f"/v1/runs/{world['run_b']}{suffix}", body))
    # the same action on team-a's run is not refused by authorization (it may fail otherwise)
    own = _call(alice, method, f"/v1/runs/{world['run_a']}{suffix}", body)
    assert own.status != 403, own.body


def test_restricted_caller_works_inside_its_groups(world: dict[str, str], jwt_caller: Caller) -> None:
    alice = jwt_caller(sub="alice", gnomon_groups="[team-a team-c]")
    assert alice.post("/v1/schedules", schedule("new-c", "team-c")).status == 201
    assert alice.put("/v1/schedules/sa", {"group": "team-c", "tags": ["moved"]}).status == 200
    assert alice.post("/v1/schedules/sa/pause", {"note": "mine"}).status == 200
    assert alice.get(f"/v1/runs/{world['run_a']}").status == 200
    assert alice.get("/v1/runs/adhoc-1").status == 200  # runs without a schedule are not group-scoped
    assert alice.get("/v1/definitions/job").status == 200  # catalog reads stay open
    bulk = alice.post("/v1/schedules/bulk", {"action": "unpause", "filter": {"group": "team-c"}})
    assert bulk.status == 200 and bulk.body["matched"] == 2
    assert alice.delete("/v1/schedules/new-c").status == 204


def test_lists_leave_out_other_groups(world: dict[str, str], jwt_caller: Caller, admin: ApiClient) -> None:
    alice = jwt_caller(sub="alice", gnomon_groups="team-a")
    assert {s["schedule_id"] for s in admin.get("/v1/schedules").body["items"]} == {"sa", "sb"}
    assert [s["schedule_id"] for s in alice.get("/v1/schedules").body["items"]] == ["sa"]
    runs = {r["run_id"] for r in alice.get("/v1/runs").body["items"]}
    assert world["run_a"] in runs and "adhoc-1" in runs and world["run_b"] not in runs
    assert {g["group"] for g in alice.get("/v1/groups").body["items"]} <= {"team-a"}


def test_a_caller_without_a_groups_claim_is_unrestricted(world: dict[str, str], jwt_caller: Caller) -> None:
    bob = jwt_caller(sub="bob", scope="read")
    assert bob.get("/v1/schedules/sb").status == 200
    assert bob.post("/v1/schedules/sb/pause", {}).status == 200
    assert len(bob.get("/v1/schedules").body["items"]) == 2


def test_an_empty_groups_claim_touches_no_group(world: dict[str, str], jwt_caller: Caller) -> None:
    nobody = jwt_caller(sub="nobody", groups="[]")
    assert forbidden(nobody.get("/v1/schedules/sa"))
    assert nobody.get("/v1/schedules").body["items"] == []


def test_iam_principal_tag_restricts(world: dict[str, str], iam_caller: Callable[[str], ApiClient]) -> None:
    seen: list[str] = []
    role_session = "arn:aws:sts::111122223333:assumed-role/team-a-ops/alice"

    def tags(arn: str) -> dict[str, str] | None:
        seen.append(arn)
        return {"gnomon:groups": "team-a"} if arn == role_session else {"other": "x"}

    access.configure(tags)
    ops = iam_caller(role_session)
    assert forbidden(ops.get("/v1/schedules/sb"))
    assert ops.get("/v1/schedules/sa").status == 200
    assert [s["schedule_id"] for s in ops.get("/v1/schedules").body["items"]] == ["sa"]
    assert seen == [role_session]  # read once, then cached
    untagged = iam_caller("arn:aws:iam::111122223333:user/admin")
    assert untagged.get("/v1/schedules/sb").status == 200


def test_unreadable_tags_fail_closed(world: dict[str, str], iam_caller: Callable[[str], ApiClient]) -> None:
    def broken(arn: str) -> dict[str, str]:
        raise RuntimeError("AccessDenied")

    access.configure(broken)
    answer = iam_caller("arn:aws:iam::111122223333:user/someone").get("/v1/schedules/sa")
    assert forbidden(answer)


# --- who is recorded as the author ---------------------------------------------------------------


def test_updated_by_is_the_authenticated_caller_never_the_body(admin: ApiClient, jwt_caller: Caller) -> None:
    body = {"name": "job", "target": HOOK, "identity": "ops-bot", "updated_by": "mallory"}
    created = admin.post("/v1/definitions", body)
    assert created.status == 201
    assert admin.get("/v1/definitions/job").body["updated_by"] == TESTER
    alice = jwt_caller(sub="alice")
    sched = schedule("s1", "default", identity="claims-to-be-root", updated_by="root")
    made = alice.post("/v1/schedules", sched)
    assert made.status == 201, made.body
    described = alice.get("/v1/schedules/s1").body
    assert described["info"]["updated_by"] == "alice"
    assert described["info"].get("identity") == "claims-to-be-root"
    paused = alice.post("/v1/schedules/s1/pause", {"identity": "someone-else", "updated_by": "x"})
    assert paused.status == 200, paused.body
    after = admin.get("/v1/schedules/s1").body["info"]
    assert after["updated_by"] == "alice"
    assert after["identity"] == "someone-else"
    versions = admin.get("/v1/definitions/job/versions").body["items"]
    assert {v["updated_by"] for v in versions} == {TESTER}
