"""Admin endpoints on the real local stack (DynamoDB under moto): a named holiday calendar
excluded by a schedule, a change of it, groups, upcoming, and bulk pause / delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevProcess

e2e = pytest.mark.e2e
HOOK = {"type": "http", "url": "http://127.0.0.1:9/hook"}
GROUP = "e2e-admin"


def fmt(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def holiday(name: str, day: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "description": "a day off",
        "calendars": [
            {
                "year": day.year,
                "month": day.month,
                "day_of_month": day.day,
                "hour": "*",
                "minute": "*",
                "second": "*",
            }
        ],
    }


@e2e
def test_holiday_calendar_groups_upcoming_and_bulk(dev_stack: DevProcess) -> None:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30) as api:
        probe = api.get("/v1/calendars")
        if probe.status_code == 404 and probe.json()["error"]["details"].get("resource", "").startswith(
            "route/"
        ):
            pytest.skip(
                "the admin router is not wired into gnomon.api.app yet (GET /v1/calendars → 404 route)"
            )
        assert probe.status_code == 200, probe.text

        now = datetime.now(UTC)
        hour = (now.hour + 6) % 24  # the first firing is 5–6 h away: nothing is planned yet
        first = now.replace(hour=hour, minute=0, second=0, microsecond=0)
        if first <= now:
            first += timedelta(days=1)
        day2 = first + timedelta(days=1)

        assert api.post("/v1/definitions", json={"name": "e2e-admin-job", "target": HOOK}).status_code == 201
        r = api.post("/v1/calendars", json=holiday("e2e-holidays", first))
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1
        spec = {"cron": [f"0 {hour} * * *"], "exclude_calendar_refs": ["e2e-holidays"]}
        r = api.post(
            "/v1/schedules",
            json={"schedule_id": "e2e-daily", "definition": "e2e-admin-job", "group": GROUP, "spec": spec},
        )
        assert r.status_code == 201, r.text
        assert r.json()["info"]["next_fire_times"][0] == fmt(day2)  # the holiday is skipped

        window = {
            "from": fmt(first - timedelta(hours=1)),
            "to": fmt(day2 - timedelta(hours=1)),
            "group": GROUP,
        }
        assert api.get("/v1/upcoming", params=window).json() == {"items": [], "next_page_token": None}
        window = {
            "from": fmt(first + timedelta(hours=1)),
            "to": fmt(day2 + timedelta(hours=1)),
            "group": GROUP,
        }
        items = api.get("/v1/upcoming", params=window).json()["items"]
        assert items == [
            {
                "schedule_id": "e2e-daily",
                "definition": "e2e-admin-job",
                "group": GROUP,
                "nominal_time": fmt(day2),
                "scheduled_time": fmt(day2),
            }
        ]

        # moving the holiday re-plans the schedule at once
        current = api.get("/v1/calendars/e2e-holidays").json()
        r = api.put("/v1/calendars/e2e-holidays", json={**holiday("e2e-holidays", day2), "version": 1})
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        stale = api.put("/v1/calendars/e2e-holidays", json=current)
        assert stale.status_code == 409 and stale.json()["error"]["details"]["current"]["version"] == 2
        times = api.get("/v1/schedules/e2e-daily").json()["info"]["next_fire_times"]
        assert times[:2] == [fmt(first), fmt(day2 + timedelta(days=1))]

        r = api.post(
            "/v1/schedules",
            json={
                "schedule_id": "e2e-hourly",
                "definition": "e2e-admin-job",
                "group": GROUP,
                "spec": {"cron": ["@hourly"]},
            },
        )
        assert r.status_code == 201, r.text
        r = api.put(f"/v1/groups/{GROUP}", json={"max_schedules": 10, "max_firings_per_second": 5})
        assert r.status_code == 200, r.text
        assert r.json()["schedules"] == 2 and r.json()["max_schedules"] == 10
        listed = {g["group"]: g for g in api.get("/v1/groups").json()["items"]}
        assert listed[GROUP]["schedules"] == 2

        pause = {"action": "pause", "filter": {"group": GROUP}, "note": "e2e freeze"}
        r = api.post("/v1/schedules/bulk", json=pause)
        assert r.status_code == 200, r.text
        assert r.json() == {"matched": 2, "changed": 2, "next_page_token": None}
        summaries = api.get("/v1/schedules", params={"group": GROUP}).json()["items"]
        assert {(s["schedule_id"], s["paused"], s["note"]) for s in summaries} == {
            ("e2e-daily", True, "e2e freeze"),
            ("e2e-hourly", True, "e2e freeze"),
        }
        assert api.post("/v1/schedules/bulk", json=pause).json()["matched"] == 2
        assert api.get("/v1/upcoming", params=window).json()["items"] == []  # paused: nothing due

        r = api.delete("/v1/calendars/e2e-holidays")
        assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
        assert r.json()["error"]["details"]["schedules"] == ["e2e-daily"]
        r = api.post("/v1/schedules/bulk", json={"action": "delete", "filter": {"group": GROUP}})
        assert r.json() == {"matched": 2, "changed": 2, "next_page_token": None}
        assert api.delete("/v1/calendars/e2e-holidays").status_code == 204
        assert api.delete("/v1/definitions/e2e-admin-job").status_code == 204
