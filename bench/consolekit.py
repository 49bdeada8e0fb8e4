"""What the console's browser tests, `make screenshots` and `bench/console.py` share: a headless
Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium), a tiny webhook receiver
for http targets, and seeding the local stack over its HTTP API.

Chromium is looked up at /usr/bin/chromium and /usr/bin/chromedriver (or `GNOMON_CHROMIUM`,
`GNOMON_CHROMEDRIVER`); `browser_missing()` says why a browser cannot run here, or None.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = os.environ.get("GNOMON_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GNOMON_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def browser_missing() -> str | None:
    """Why no headless browser can run here (None when it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found: apt-get install -y chromium chromium-driver ({package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def chromium(width: int = 1366, height: int = 900) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile, quit (and the profile removed) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gnomon-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """Severe messages of the browser console since the last call (JS errors, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until `predicate` answers something truthy (answered) or `timeout` passes (its last
    answer); exceptions count as falsy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class Receiver:
    """An http target: 200 to every POST/PUT, except 500 on a path containing `/fail`; a path
    containing `/slow` answers after 0.2–1.5 s (for varied durations)."""

    def __init__(self) -> None:
        self.count = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _ok(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.count += 1
                if "/slow" in self.path:
                    time.sleep(0.2 + (outer.count * 0.37) % 1.3)
                self.send_response(500 if "/fail" in self.path else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_PUT = _ok

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def api(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=60, trust_env=False)


def create_definition(client: httpx.Client, name: str, url: str, **extra: Any) -> dict[str, Any]:
    resp = client.post(
        "/v1/definitions", json={"name": name, "target": {"type": "http", "url": url}, **extra}
    )
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


def screenshot(driver: Any, path: Path) -> None:
    """A PNG of the whole page (the window grown to the document's height, up to 3 000 px)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight") or 900)
    width = int(driver.execute_script("return window.innerWidth") or 1366)
    driver.set_window_size(width, min(max(height + 120, 700), 3000))
    time.sleep(0.3)  # let Chart.js re-layout at the new size
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
