"""The console's files, through the real API handler: gated by GNOMON_CONSOLE, every asset
served by gnomon (none from a CDN), each vendored file pinned and licensed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gnomon import console
from tests.unit.apiclient import v2_event

STATIC = Path(console.__file__).parent / "static"


def call(method: str, path: str) -> dict[str, Any]:
    from gnomon.api.app import lambda_handler

    return lambda_handler(v2_event(method, path, None, {}), None)


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GNOMON_CONSOLE", "on")
    monkeypatch.delenv("GNOMON_CONSOLE_ISSUER", raising=False)
    monkeypatch.delenv("GNOMON_CONSOLE_CLIENT_ID", raising=False)


@pytest.mark.parametrize("value", [None, "off", "", "yes"])
def test_off_unless_on_answers_404_in_the_error_shape(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("GNOMON_CONSOLE", raising=False)
    else:
        monkeypatch.setenv("GNOMON_CONSOLE", value)
    for path in ("/console", "/console/", "/console/app.js", "/console/config.json"):
        resp = call("GET", path)
        assert resp["statusCode"] == 404, path
        err = json.loads(resp["body"])["error"]
        assert err["code"] == "not_found" and err["details"] == {"resource": "console"}


@pytest.mark.usefixtures("on")
@pytest.mark.parametrize("path", ["/console", "/console/", "/console/index.html"])
def test_the_page_is_served_with_a_strict_content_security_policy(path: str) -> None:
    resp = call("GET", path)
    assert resp["statusCode"] == 200
    headers = resp["headers"]
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert '<base href="/console/">' in resp["body"]


@pytest.mark.usefixtures("on")
def test_every_asset_the_page_loads_is_served_by_gnomon_itself() -> None:
    index = (STATIC / "index.html").read_text()
    app_js = (STATIC / "app.js").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', index) + re.findall(r"from '\./([^']+)'", app_js)
    refs = [r for r in refs if not r.startswith(("data:", "/console/"))]
    assert len(refs) >= 6, refs
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"{ref} would load from another origin"
        resp = call("GET", f"/console/{ref}")
        assert resp["statusCode"] == 200, ref
        assert resp["headers"]["Content-Type"].split(";")[0] in ("text/javascript", "text/css"), ref
    # and nothing in the app's own code reaches for another origin
    assert not re.search(r"https?://(?!\$\{)", app_js.replace("https://www.", "")), (
        "app.js names a remote URL"
    )


@pytest.mark.usefixtures("on")
def test_vendored_files_are_pinned_listed_and_licensed() -> None:
    vendor = STATIC / "vendor"
    manifest = (vendor / "README.md").read_text()
    files = sorted(p.name for p in vendor.iterdir() if p.suffix in (".js", ".mjs"))
    assert files, "no vendored files"
    for name in files:
        assert re.search(r"-\d+\.\d+\.\d+", name), f"{name}: the version belongs in the file name"
        assert f"| {name} |" in manifest, f"{name} is not listed in vendor/README.md"
        resp = call("GET", f"/console/vendor/{name}")
        assert resp["statusCode"] == 200
        assert "immutable" in resp["headers"]["Cache-Control"]
    licenses = {p.name.split("-LICENSE")[0] for p in (vendor / "licenses").iterdir()}
    assert {"htm", "preact", "chart.js", "chartjs-chart-matrix", "cronstrue", "diff"} <= licenses


@pytest.mark.usefixtures("on")
@pytest.mark.parametrize(
    "path", ["/console/nope.js", "/console/../app.py", "/console/vendor/../../__init__.py", "/console/static"]
)
def test_unknown_files_and_traversal_are_404(path: str) -> None:
    resp = call("GET", path)
    assert resp["statusCode"] == 404
    assert json.loads(resp["body"])["error"]["code"] == "not_found"


@pytest.mark.usefixtures("on")
def test_only_get_and_head() -> None:
    resp = call("POST", "/console/app.js")
    assert resp["statusCode"] == 405
    assert json.loads(resp["body"])["error"]["details"] == {"allowed": ["GET", "HEAD"]}
    head = call("HEAD", "/console/app.js")
    assert head["statusCode"] == 200 and head["body"] == ""


@pytest.mark.usefixtures("on")
def test_config_says_open_without_an_issuer_and_oidc_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads(call("GET", "/console/config.json")["body"]) == {"auth": {"mode": "none"}}
    monkeypatch.setenv("GNOMON_CONSOLE_ISSUER", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/")
    monkeypatch.setenv("GNOMON_CONSOLE_CLIENT_ID", "client123")
    cfg = json.loads(call("GET", "/console/config.json")["body"])
    assert cfg == {
        "auth": {
            "mode": "oidc",
            "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
            "client_id": "client123",
            "scopes": "openid",
        }
    }
    # the page may then talk to the issuer (discovery, token endpoint) and to nothing else
    csp = call("GET", "/console/")["headers"]["Content-Security-Policy"]
    assert "connect-src 'self' https://cognito-idp.eu-west-1.amazonaws.com;" in csp


@pytest.mark.usefixtures("on")
def test_the_api_itself_is_untouched_by_the_console(api: Any) -> None:
    assert api.get("/v1/health").status == 200
    assert api.get("/v1/consoles").status == 404
    assert "/console" not in json.dumps(api.get("/v1/openapi.json").body["paths"])
