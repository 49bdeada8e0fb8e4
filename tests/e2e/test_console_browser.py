"""The web console in a real browser (headless Chromium from Debian, driven by Selenium) against
the real local stack: create a schedule, see it fire, pause it from the console, open a run —
and every other page with its empty and error states.

Where Chromium or chromedriver is absent these tests skip, saying why (see `pytest -ra`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bench.consolekit import Receiver, browser_missing, chromium, console_errors, wait_for
from tests.e2e.conftest import DevProcess

MISSING = browser_missing()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING is not None, reason=f"console browser tests skipped: {MISSING}"),
]
if MISSING is not None:  # also say it where a plain `pytest -q` shows it
    print(f"\n*** console browser tests skipped: {MISSING} ***")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def http(dev_stack: DevProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dev_stack.base_url, timeout=30, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def schedule(http: httpx.Client, receiver: Receiver) -> str:
    """A definition and a schedule firing every second at the receiver (created over the API)."""
    r = http.post(
        "/v1/definitions", json={"name": "console-report", "target": {"type": "http", "url": receiver.url}}
    )
    assert r.status_code == 201, r.text
    r = http.post(
        "/v1/schedules",
        json={
            "schedule_id": "console-every-second",
            "definition": "console-report",
            "spec": {"intervals": [{"every_seconds": 1}], "timezone": "Europe/Riga"},
            "input": {"from": "browser-test"},
        },
    )
    assert r.status_code == 201, r.text
    return "console-every-second"


def open_page(browser: Any, dev: DevProcess, fragment: str) -> None:
    console_errors(browser)  # drain what earlier pages logged
    browser.get(f"{dev.base_url}/console/#{fragment}")


def css(browser: Any, selector: str) -> list[Any]:
    return list(browser.find_elements("css selector", selector))


def text_of(browser: Any, selector: str) -> str:
    found = css(browser, selector)
    return str(found[0].text) if found else ""


def heading(browser: Any) -> str:
    return text_of(browser, "h1#page-title")


def wait_text(browser: Any, selector: str, needle: str, timeout: float = 20.0) -> str:
    got = wait_for(lambda: needle in text_of(browser, selector) and text_of(browser, selector), timeout)
    assert got, f"{selector!r} never showed {needle!r}; it shows {text_of(browser, selector)!r}"
    return str(got)


def severe_errors(browser: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    return [e for e in console_errors(browser) if not any(a in e for a in allowed)]


def test_create_a_schedule_see_it_fire_pause_it_from_the_console_and_open_a_run(
    dev_stack: DevProcess, browser: Any, http: httpx.Client, schedule: str
) -> None:
    # The schedules page lists it, with its next fire time.
    open_page(browser, dev_stack, "/schedules")
    link = wait_for(lambda: browser.find_element("link text", schedule))
    assert link, f"{schedule} not listed: {text_of(browser, 'main')}"
    row = text_of(browser, "#schedules-table tbody")
    assert "console-report" in row and "active" in row

    # Its page says the spec in words and shows the next ten times.
    link.click()
    wait_text(browser, "h1#page-title", f"Schedule {schedule}")
    words = wait_text(browser, "#spec-words", "every second")
    assert "Europe/Riga" not in words or "every second" in words
    assert len(css(browser, "ol.mono li")) == 10

    # See it fire: recent actions fill in as the ticker and worker run it.
    def fired() -> bool:
        if "completed" in text_of(browser, "#recent-actions"):
            return True
        css(browser, "#refresh-button")[0].click()
        return False

    assert wait_for(fired, timeout=30, interval=0.5), text_of(browser, "main")

    # Pause it from the console, with a note.
    css(browser, "#pause-note")[0].send_keys("paused from the browser")
    css(browser, "#pause-button")[0].click()
    wait_text(browser, "#schedule-note", "paused from the browser")
    assert css(browser, "#unpause-button"), "the form did not turn into Unpause"
    state = http.get(f"/v1/schedules/{schedule}").json()["state"]
    assert state["paused"] is True and state["note"] == "paused from the browser"

    # Open a completed run from the recent actions (firings already enqueued when it paused
    # become `skipped` runs with reason `paused`: the newest rows may be those).
    rows = css(browser, "#recent-actions tbody tr")
    run_link = next(r for r in rows if "completed" in r.text).find_element("css selector", "a")
    run_id = run_link.text
    run_link.click()
    wait_text(browser, "h1#page-title", f"Run {run_id}")
    status = wait_text(browser, "#run-status", "completed")
    assert status.strip() == "completed"
    wait_for(lambda: css(browser, "#attempts tbody tr"))
    attempts = text_of(browser, "#attempts tbody")
    assert attempts.startswith("1") and "completed" in attempts
    assert json.loads(text_of(browser, "#run-input")) == {"from": "browser-test"}
    assert http.get(f"/v1/runs/{run_id}").json()["status"] == "completed"
    assert severe_errors(browser) == []


def test_trigger_with_input_and_a_backfill_previewed_before_it_is_confirmed(
    dev_stack: DevProcess, browser: Any, http: httpx.Client, schedule: str
) -> None:
    open_page(browser, dev_stack, f"/schedules/{schedule}")
    wait_text(browser, "h1#page-title", schedule)
    wait_for(lambda: css(browser, "#trigger-button"))
    css(browser, "textarea[name=input]")[0].send_keys('{"adhoc": true}')
    css(browser, "#trigger-button")[0].click()
    msg = wait_text(browser, "form[aria-label='Trigger now'] .success", "Triggered")
    run_id = re.search(r"Triggered: (\S+) ", msg)
    assert run_id, msg
    assert http.get(f"/v1/runs/{run_id.group(1)}").json()["input"] == {"adhoc": True}

    # A backfill before the schedule existed: ten fire times, nothing created by the dry run.
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    end = start + timedelta(seconds=9)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    css(browser, "input[name=start]")[0].send_keys(start.strftime(fmt))
    css(browser, "input[name=end]")[0].send_keys(end.strftime(fmt))
    css(browser, "#backfill-preview")[0].click()
    wait_text(browser, "#backfill-dry-run", "10 fire times")

    def backfilled() -> int:
        q = {
            "schedule": schedule,
            "from": start.strftime(fmt),
            "to": (end + timedelta(seconds=1)).strftime(fmt),
        }
        return len(http.get("/v1/runs", params=q).json()["items"])

    assert backfilled() == 0
    css(browser, "#backfill-confirm")[0].click()
    wait_text(browser, "form[aria-label='Backfill'] .success", "10 runs created")
    assert backfilled() == 10


def test_a_bad_backfill_shows_the_api_error_and_changes_nothing(
    dev_stack: DevProcess, browser: Any, schedule: str
) -> None:
    open_page(browser, dev_stack, f"/schedules/{schedule}")
    wait_for(lambda: css(browser, "#backfill-preview"))
    css(browser, "input[name=start]")[0].send_keys("yesterday")
    css(browser, "input[name=end]")[0].send_keys("2026-01-01T00:00:00Z")
    css(browser, "#backfill-preview")[0].click()
    alert = wait_text(browser, "form[aria-label='Backfill'] [role=alert]", "invalid_argument")
    assert "start" in alert
    assert not css(browser, "#backfill-confirm")


def test_overview_draws_its_charts(
    dev_stack: DevProcess, browser: Any, http: httpx.Client, schedule: str
) -> None:
    # A completed run first: the page loads its charts once (run alone, or first on its xdist
    # worker, this test would otherwise meet a schedule that has not fired yet).
    completed = {"schedule": schedule, "status": "completed", "page_size": 1}
    assert wait_for(lambda: http.get("/v1/runs", params=completed).json()["items"])
    browser.get("about:blank")  # a fresh document: its resource timings are this page's calls only
    open_page(browser, dev_stack, "/overview")
    wait_text(browser, "h1#page-title", "Overview")
    assert wait_for(lambda: len(css(browser, "canvas")) >= 3), text_of(browser, "main")
    labels = [c.get_attribute("aria-label") for c in css(browser, "canvas")]
    assert any("lateness" in (label or "").lower() for label in labels)
    assert any("heatmap" in (label or "").lower() for label in labels)
    assert any("duration" in (label or "").lower() for label in labels)
    # Chart.js drew them (a chart instance is bound to each canvas)
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('canvas')].map(c => !!Chart.getChart(c)).filter(Boolean).length"
    )
    assert drawn >= 3
    main = text_of(browser, "main")
    assert "Firings by day and hour, last hour" in main and "Run durations, last hour" in main
    assert re.search(r"\d+ runs by day of week and hour of their nominal time \(UTC\)", main), main
    assert re.search(r"\d+ closed runs; median", main), main
    # the heatmap and the histogram come with the lateness, not from whole runs
    calls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/v1/'))"
    )
    assert not [c for c in calls if "/v1/runs" in c], calls
    assert [c for c in calls if "/v1/metrics/lateness" in c and "include=firings%2Cdurations" in c], calls
    # another window: all three charts follow it
    from selenium.webdriver.support.ui import Select

    Select(css(browser, "main select")[0]).select_by_visible_text("last 6 hours")
    wait_text(browser, "main", "Firings by day and hour, last 6 hours")
    assert browser.current_url.endswith("#/overview?window=6")  # a link to this window
    assert wait_for(lambda: len(css(browser, "canvas")) >= 3), text_of(browser, "main")
    assert "Run durations, last 6 hours" in text_of(browser, "main")
    assert severe_errors(browser) == []


def test_runs_filter_by_status_chip(dev_stack: DevProcess, browser: Any, schedule: str) -> None:
    open_page(browser, dev_stack, f"/runs?schedule={schedule}")
    wait_for(lambda: css(browser, "#runs-table tbody tr"))
    chip = next(b for b in css(browser, "button.chip-toggle") if b.text == "completed")
    assert chip.get_attribute("aria-pressed") == "false"
    chip.click()
    assert wait_for(lambda: "status=completed" in browser.current_url)

    def shown() -> set[str]:  # the statuses of the rows on screen now (none while it reloads)
        return {r.find_element("css selector", ".chip").text for r in css(browser, "#runs-table tbody tr")}

    # The rows shown before the click may still be there, or none while the filtered list loads:
    # wait for the filtered rows (a stale row raises, which wait_for counts as not yet).
    wait_for(lambda: shown() == {"completed"})
    assert shown() == {"completed"}
    open_page(browser, dev_stack, "/runs?schedule=no-such-schedule")
    wait_text(browser, "main", "No runs match these filters.")


def test_definition_versions_as_a_diff(
    dev_stack: DevProcess, browser: Any, http: httpx.Client, receiver: Receiver
) -> None:
    target = {"type": "http", "url": receiver.url}
    assert http.post("/v1/definitions", json={"name": "console-diff", "target": target}).status_code == 201
    r = http.put(
        "/v1/definitions/console-diff", json={"name": "console-diff", "target": target, "timeout_seconds": 42}
    )
    assert r.status_code == 200, r.text
    open_page(browser, dev_stack, "/definitions/console-diff")
    diff = wait_text(browser, "#version-diff", "42")
    assert css(browser, "#version-diff ins") and css(browser, "#version-diff del")
    assert re.search(r'^\+\s+"timeout_seconds": 42', diff, re.M), diff
    assert re.search(r'^-\s+"timeout_seconds": 60', diff, re.M), diff
    assert "unchanged lines" in diff  # long unchanged stretches fold, as in a unified diff
    # the older version is one click away
    next(b for b in css(browser, "#versions-table button") if b.text == "v1").click()
    wait_text(browser, "main", "v1 is the first version")


def test_tasks_and_leases(dev_stack: DevProcess, browser: Any, http: httpx.Client) -> None:
    assert http.post("/v1/tasks", json={"topic": "console-topic", "task_id": "console-t1"}).status_code == 201
    r = http.post("/v1/topics/console-topic/reserve", json={"worker_id": "worker-7", "lease_seconds": 600})
    assert r.status_code == 200, r.text
    open_page(browser, dev_stack, "/tasks?topic=console-topic")
    leases = wait_text(browser, "#leases-table", "worker-7")
    assert "console-t1" in leases and "leased" in leases
    assert "worker-7" in wait_text(browser, "#tasks-table", "console-t1")
    open_page(browser, dev_stack, "/tasks?topic=nobody-here")
    wait_text(browser, "main", "No task is leased or snoozed on topic nobody-here")


def test_operators_page_answers_either_way(dev_stack: DevProcess, browser: Any, http: httpx.Client) -> None:
    answer = http.get("/v1/operators")
    open_page(browser, dev_stack, "/operators")
    if answer.status_code == 404:
        wait_text(browser, "#operators-unavailable", "answered 404")
    else:
        assert answer.status_code == 200
        wait_for(lambda: css(browser, "#operators-table") or "No event-triggered" in text_of(browser, "main"))
        assert css(browser, "#operators-table") or "No event-triggered" in text_of(browser, "main")


def test_empty_and_error_states(dev_stack: DevProcess, browser: Any) -> None:
    open_page(browser, dev_stack, "/schedules/does-not-exist")
    alert = wait_text(browser, "[role=alert]", "not_found")
    assert "HTTP 404" in alert
    open_page(browser, dev_stack, "/schedules?group=no-such-group")
    wait_text(browser, "main", "No schedules match these filters.")
    open_page(browser, dev_stack, "/dlq")
    wait_text(browser, "main", "The dead-letter queue is empty.")
    open_page(browser, dev_stack, "/nowhere")
    wait_text(browser, "h1#page-title", "Page not found")


def test_keyboard_and_labels(dev_stack: DevProcess, browser: Any, schedule: str) -> None:
    open_page(browser, dev_stack, "/runs")
    wait_text(browser, "h1#page-title", "Runs")
    # every form control has a label; the current section is marked for screen readers
    unlabeled = browser.execute_script(
        "return [...document.querySelectorAll('main input, main select, main textarea')]"
        ".filter(e => !e.closest('label') && !e.getAttribute('aria-label')).length"
    )
    assert unlabeled == 0
    assert text_of(browser, "nav a[aria-current=page]") == "Runs"
    # the skip link is the first stop of the keyboard
    from selenium.webdriver.common.keys import Keys

    browser.find_element("tag name", "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "skip-link"
