"""`/v1/upcoming` on the real local stack lists firings the ticker already handed to the queue:
a one-off `at` firing ~20 s ahead (enqueued by the create) and a daily cron firing ~40 s ahead
(enqueued by a tick), both of which have left the due index by then — a one-off has no next
firing, the daily's next one is tomorrow — so only the plan log (items in the runs table)
can list them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gnomon.adapters.planlog import decode
from gnomon.domain.timefmt import fmt, parse
from tests.e2e.conftest import DevProcess, wait_for

pytestmark = pytest.mark.e2e

RUNS_TABLE = "gnomon-RunsTable"
SCHEDULES_TABLE = "gnomon-SchedulesTable"
GROUP = "e2e-upcoming"


def _planned(dev: DevProcess) -> list[Any]:
    """Every firing recorded in the plan log, with its item's TTL (epoch seconds)."""
    ddb = dev.client("dynamodb")
    out = []
    pages = ddb.get_paginator("scan").paginate(
        TableName=RUNS_TABLE,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": "plan#"}},
    )
    for page in pages:
        for item in page["Items"]:
            expires = int(item["expires_at"]["N"])
            out += [(f, expires) for f in decode(bytes(item["planz"]["B"]))]
    return out


def test_upcoming_lists_firings_already_enqueued(dev_factory: Callable[..., DevProcess]) -> None:
    # ticks every 10 s with a 30 s horizon: the `at` firing is inside it at create, the daily
    # one enters it at a later tick
    dev = dev_factory(tick_seconds="10")
    with httpx.Client(base_url=dev.base_url, timeout=30) as api:
        r = api.post(
            "/v1/definitions",
            json={"name": "e2e-up", "target": {"type": "http", "url": "http://127.0.0.1:9/h"}},
        )
        assert r.status_code == 201, r.text
        t0 = datetime.now(UTC).replace(microsecond=0)
        at, daily = t0 + timedelta(seconds=20), t0 + timedelta(seconds=40)
        for sid, spec in (
            ("e2e-once", {"at": [fmt(at)]}),
            ("e2e-daily", {"cron": [f"{daily.second} {daily.minute} {daily.hour} * * *"]}),
        ):
            body = {"schedule_id": sid, "definition": "e2e-up", "group": GROUP, "spec": spec}
            r = api.post("/v1/schedules", json=body)
            assert r.status_code == 201, r.text

        def enqueued() -> set[str]:
            return {f.schedule_id for f, _ in _planned(dev) if f.schedule_id.startswith("e2e-")}

        assert wait_for(lambda: enqueued() == {"e2e-once", "e2e-daily"}, timeout=60, interval=1)
        for f, expires in _planned(dev):  # TTL: an hour after the item's last firing
            assert f.scheduled_time.timestamp() < expires <= f.scheduled_time.timestamp() + 3600 + 900
        # neither is in the due index within the window any more (a ledger watchdog, should a
        # run have started meanwhile, would sit 150 s after its tick: past the window too)
        end = t0 + timedelta(minutes=2)
        for sid in ("e2e-once", "e2e-daily"):
            item = dev.client("dynamodb").get_item(TableName=SCHEDULES_TABLE, Key={"schedule_id": {"S": sid}})
            due = item["Item"].get("due_key", {}).get("S")
            assert due is None or parse(due.split("#")[0]) > end, (sid, due)

        window = {"from": fmt(t0), "to": fmt(end), "group": GROUP}
        r = api.get("/v1/upcoming", params=window)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "items": [
                {
                    "schedule_id": sid,
                    "definition": "e2e-up",
                    "group": GROUP,
                    "nominal_time": fmt(t),
                    "scheduled_time": fmt(t),
                }
                for sid, t in (("e2e-once", at), ("e2e-daily", daily))
            ],
            "next_page_token": None,
        }
        # paused: its enqueued firing would be skipped, so it is not listed
        assert api.post("/v1/schedules/e2e-daily/pause", json={}).status_code == 200
        items = api.get("/v1/upcoming", params=window).json()["items"]
        assert [i["schedule_id"] for i in items] == ["e2e-once"]
        for sid in ("e2e-once", "e2e-daily"):
            assert api.delete(f"/v1/schedules/{sid}").status_code == 204
        assert api.get("/v1/upcoming", params=window).json()["items"] == []
