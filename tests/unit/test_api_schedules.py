"""The management API for schedules, through the real handler over in-memory stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gnomon.domain.timefmt import fmt, parse
from tests.unit.apiclient import ApiClient

HOOK = {"type": "http", "url": "https://example.com/hook"}


@pytest.fixture
def api_with_def(api: ApiClient) -> ApiClient:
    assert api.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    return api


def schedule(sid: str = "every-5", **extra: Any) -> dict[str, Any]:
    return {"schedule_id": sid, "definition": "job", "spec": {"cron": ["*/5 * * * *"]}, **extra}


def test_create_answers_the_describe_body_with_defaults(api_with_def: ApiClient) -> None:
    r = api_with_def.post("/v1/schedules", schedule())
    assert r.status == 201, r.body
    b = r.body
    assert b["group"] == "default" and b["tags"] == [] and b["memo"] == {} and b["input"] == {}
    assert b["policies"] == {
        "overlap": "skip",
        "catchup_window_seconds": 31536000,
        "pause_on_failure": False,
        "max_concurrency": None,
        "action_after_completion": "none",
        "backfill_rate": 10,
        "retry": None,
        "timeout_seconds": None,
    }
    assert b["state"] == {"paused": False, "note": "", "paused_until": None, "remaining_actions": None}
    spec = b["spec"]
    assert spec["timezone"] == "UTC" and spec["dst"] is None and spec["jitter_seconds"] == 0
    info = b["info"]
    times = [parse(t) for t in info["next_fire_times"]]
    assert len(times) == 10 and all(t.minute % 5 == 0 and t.second == 0 for t in times)
    assert times == sorted(times) and times[0] > datetime.now(UTC) - timedelta(seconds=1)
    assert info["next_scheduled_times"] == info["next_fire_times"]
    assert info["counters"]["actions"] == 0 and set(info["counters"]) >= {
        "skipped_overlap",
        "missed_catchup_window",
        "buffer_dropped",
        "skipped_paused",
        "dropped_stale",
        "quota_delayed",
    }
    assert info["recent_actions"] == [] and info["running_runs"] == [] and info["completed"] is False
    assert info["updated_by"].startswith("arn:aws:iam::")
    assert b["conflict_token"]
    assert api_with_def.get("/v1/schedules/every-5").body == b


def test_duplicate_id_is_already_exists(api_with_def: ApiClient) -> None:
    api_with_def.post("/v1/schedules", schedule())
    r = api_with_def.post("/v1/schedules", schedule())
    assert (r.status, r.body["error"]["code"]) == (409, "already_exists")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"definition": "ghost"}, "definition"),
        ({"spec": {"cron": ["not a cron"]}}, "spec.cron[0]"),
        ({"spec": {"cron": ["0 0 31 2 *"]}}, "spec.cron[0]"),
        ({"spec": {"cron": ["* * * * *"], "timezone": "Mars/Olympus"}}, "spec.timezone"),
        ({"spec": {}}, "spec"),
        ({"spec": {"intervals": [{"every_seconds": 0}]}}, "spec.intervals[0].every_seconds"),
        ({"spec": {"at": ["2026-12-01T10:00:00"]}}, "spec.at[0]"),
        (
            {"spec": {"cron": ["* * * * *"], "exclude_calendar_refs": ["nope"]}},
            "spec.exclude_calendar_refs[0]",
        ),
        ({"schedule_id": "preview"}, "schedule_id"),
        ({"schedule_id": "bulk"}, "schedule_id"),
        ({"schedule_id": "has space"}, "schedule_id"),
        ({"policies": {"overlap": "sometimes"}}, "policies.overlap"),
        ({"colour": "red"}, "colour"),
        ({"memo": {"x": "a" * (65 * 1024)}}, "memo"),
        ({"input": {"x": "a" * (65 * 1024)}}, "input"),
    ],
)
def test_bad_schedules_are_422_naming_the_field(
    api_with_def: ApiClient, change: dict[str, Any], field: str
) -> None:
    r = api_with_def.post("/v1/schedules", {**schedule(), **change})
    assert r.status == 422, r.body
    assert r.body["error"]["details"][0]["field"] == field, r.body
    assert api_with_def.get("/v1/schedules").body["items"] == []


def test_input_is_checked_against_the_definition_schema(api: ApiClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    api.post("/v1/definitions", {"name": "job", "target": HOOK, "input_schema": schema})
    r = api.post("/v1/schedules", schedule(input={"n": "three"}))
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "input")
    assert api.post("/v1/schedules", schedule(input={"n": 3})).status == 201


def test_update_replaces_given_fields_keeps_omitted_and_clears_memo_with_empty(
    api_with_def: ApiClient,
) -> None:
    api_with_def.post(
        "/v1/schedules", schedule(memo={"owner": "data"}, search_attributes={"team": "x"}, tags=["a"])
    )
    r = api_with_def.put("/v1/schedules/every-5", {"tags": ["b"], "policies": {"overlap": "allow_all"}})
    assert r.status == 200, r.body
    assert r.body["tags"] == ["b"] and r.body["memo"] == {"owner": "data"}
    assert r.body["policies"]["overlap"] == "allow_all" and r.body["policies"]["backfill_rate"] == 10
    r = api_with_def.put("/v1/schedules/every-5", {"memo": None})
    assert r.body["memo"] == {"owner": "data"}
    r = api_with_def.put("/v1/schedules/every-5", {"memo": {}, "search_attributes": {}})
    assert r.body["memo"] == {} and r.body["search_attributes"] == {}


def test_update_with_a_stale_conflict_token_is_409_with_the_current(api_with_def: ApiClient) -> None:
    token = api_with_def.post("/v1/schedules", schedule()).body["conflict_token"]
    first = api_with_def.put("/v1/schedules/every-5", {"tags": ["x"], "conflict_token": token})
    assert first.status == 200
    r = api_with_def.put("/v1/schedules/every-5", {"tags": ["y"], "conflict_token": token})
    assert (r.status, r.body["error"]["code"]) == (409, "conflict")
    assert r.body["error"]["details"]["current"]["tags"] == ["x"]


def test_a_describe_body_can_be_put_back(api_with_def: ApiClient) -> None:
    body = api_with_def.post("/v1/schedules", schedule()).body
    body["spec"]["cron"] = ["0 9 * * MON-FRI"]
    r = api_with_def.put("/v1/schedules/every-5", body)
    assert r.status == 200, r.body
    assert r.body["spec"]["cron"] == ["0 9 * * MON-FRI"]
    assert int(r.body["conflict_token"]) > int(body["conflict_token"])


def test_update_checks_path_id_and_existence(api_with_def: ApiClient) -> None:
    r = api_with_def.put("/v1/schedules/ghost", {"tags": []})
    assert (r.status, r.body["error"]["details"]["resource"]) == (404, "schedule/ghost")
    api_with_def.post("/v1/schedules", schedule())
    r = api_with_def.put("/v1/schedules/every-5", {"schedule_id": "other"})
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "schedule_id")


def test_list_filters_and_summaries(api_with_def: ApiClient) -> None:
    api_with_def.post("/v1/definitions", {"name": "other", "target": HOOK})
    api_with_def.post("/v1/schedules", schedule("c", group="ops", tags=["t"]))
    api_with_def.post("/v1/schedules", schedule("a"))
    api_with_def.post(
        "/v1/schedules", schedule("b", definition="other", state={"paused": True, "note": "hold"})
    )
    items = api_with_def.get("/v1/schedules").body["items"]
    assert [i["schedule_id"] for i in items] == ["a", "b", "c"]
    assert set(items[0]) == {
        "schedule_id",
        "group",
        "definition",
        "tags",
        "paused",
        "note",
        "next_fire_time",
        "last_fire_time",
    }
    ids = lambda q: [i["schedule_id"] for i in api_with_def.get("/v1/schedules" + q).body["items"]]  # noqa: E731
    assert ids("?group=ops") == ["c"]
    assert ids("?definition=other") == ["b"]
    assert ids("?paused=true") == ["b"] and ids("?paused=false") == ["a", "c"]
    assert ids("?tag=t") == ["c"]
    r = api_with_def.get("/v1/schedules?paused=maybe")
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "query.paused")


def test_deleting_a_definition_in_use_is_409_listing_the_schedules(api_with_def: ApiClient) -> None:
    api_with_def.post("/v1/schedules", schedule())
    r = api_with_def.delete("/v1/definitions/job")
    assert (r.status, r.body["error"]["code"]) == (409, "in_use")
    assert r.body["error"]["details"]["schedules"] == ["every-5"]
    assert api_with_def.delete("/v1/schedules/every-5").status == 204
    assert api_with_def.get("/v1/schedules/every-5").status == 404
    assert api_with_def.delete("/v1/definitions/job").status == 204


def test_pause_and_unpause(api_with_def: ApiClient) -> None:
    api_with_def.post("/v1/schedules", schedule())
    r = api_with_def.post("/v1/schedules/every-5/pause", {"note": "maintenance"})
    assert r.status == 200 and r.body["state"]["paused"] is True and r.body["state"]["note"] == "maintenance"
    r = api_with_def.post("/v1/schedules/every-5/pause")
    assert r.body["state"]["note"] == "paused"
    past = fmt(datetime.now(UTC) - timedelta(minutes=1))
    r = api_with_def.post("/v1/schedules/every-5/pause", {"until": past})
    assert (r.status, r.body["error"]["details"][0]["field"]) == (422, "until")
    r = api_with_def.post("/v1/schedules/every-5/unpause")
    assert r.body["state"] == {
        "paused": False,
        "note": "unpaused",
        "paused_until": None,
        "remaining_actions": None,
    }
    again = api_with_def.post("/v1/schedules/every-5/unpause", {"note": "again"})
    assert again.status == 200 and again.body["state"]["note"] == "unpaused"
    r = api_with_def.post("/v1/schedules/every-5/unpause", {"catch_up": "sometimes"})
    assert r.status == 422


def test_preview(api: ApiClient) -> None:
    r = api.post(
        "/v1/schedules/preview",
        {
            "spec": {"cron": ["0 9 * * MON-FRI"], "timezone": "Europe/Riga"},
            "start": "2026-12-04T00:00:00Z",
            "count": 3,
        },
    )
    assert r.status == 200, r.body
    assert r.body["fire_times"] == ["2026-12-04T07:00:00Z", "2026-12-07T07:00:00Z", "2026-12-08T07:00:00Z"]
    r = api.post(
        "/v1/schedules/preview",
        {
            "spec": {"intervals": [{"every_seconds": 3600}]},
            "start": "2026-12-04T00:00:00Z",
            "count": 100,
            "end": "2026-12-04T02:00:00Z",
        },
    )
    assert r.body["fire_times"] == ["2026-12-04T01:00:00Z", "2026-12-04T02:00:00Z"]
    for bad, field in (
        ({"count": 0}, "count"),
        ({"count": 1001}, "count"),
        ({"start": "2026-12-04T00:00:00"}, "start"),
    ):
        body = {"spec": {"cron": ["* * * * *"]}, "start": "2026-12-04T00:00:00Z", "count": 1, **bad}
        r = api.post("/v1/schedules/preview", body)
        assert (r.status, r.body["error"]["details"][0]["field"]) == (422, field)


def test_past_at_times_are_accepted_and_describe_shows_completed(api_with_def: ApiClient) -> None:
    r = api_with_def.post("/v1/schedules", schedule("once", spec={"at": ["2020-01-01T00:00:00Z"]}))
    assert r.status == 201
    assert r.body["info"]["next_fire_times"] == [] and r.body["info"]["completed"] is True
