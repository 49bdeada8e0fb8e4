"""Hostile input at the API edge, through the real handler over in-memory stores: SSRF literals,
size limits, names and ids, page-token tampering, mass assignment, and the signing secret."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from gnomon.domain import netpolicy
from tests.security.conftest import HOOK
from tests.unit.apiclient import ApiClient


@pytest.fixture(autouse=True)
def aws_network_policy() -> Iterator[None]:
    """As deployed in AWS: no extra networks (loopback refused too)."""
    saved = list(netpolicy.current().allowed)
    netpolicy.configure([])
    yield
    netpolicy.current().allowed = saved


def http_def(url: str, name: str = "d") -> dict[str, Any]:
    return {"name": name, "target": {"type": "http", "url": url}}


def invalid(answer: Any, field: str) -> bool:
    if answer.status != 422 or answer.body["error"]["code"] != "invalid_argument":
        return False
    return field in {d["field"] for d in answer.body["error"]["details"]}


# --- SSRF: literal addresses are refused at create (422) -----------------------------------------

METADATA_SPELLINGS = [
    "169.254.169.254",
    "169.254.169.254.",  # trailing dot (fully qualified)
    "2852039166",  # decimal
    "0251.0376.0251.0376",  # octal
    "0xa9.0xfe.0xa9.0xfe",  # hex per byte
    "0xa9fea9fe",  # hex
    "0XA9FEA9FE",
    "0x00a9.254.169.254",  # zero-padded hex
    "169.254.43518",  # a.b.c with a 16-bit last part
    "0251.254.43518",  # mixed
    "[::ffff:169.254.169.254]",  # IPv4-mapped
    "[::ffff:a9fe:a9fe]",  # IPv4-mapped, hex
    "[64:ff9b::a9fe:a9fe]",  # NAT64
    "[64:ff9b::169.254.169.254]",
    "[2002:a9fe:a9fe::]",  # 6to4
    "[fd00:ec2::254]",  # the IPv6 metadata endpoint
    "[fe80::1]",  # link-local
    "[fe80::1%25eth0]",  # with a zone
    "169.254.0.1",
    "0.0.0.0",
    "0",
    "[::]",
    "224.0.0.1",
    "255.255.255.255",
]
LOOPBACK_AND_PRIVATE = [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "017700000001",
    "2130706433",
    "127.0.0.1.",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "10.0.0.1",
    "012.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "[fd12:3456::1]",
    "100.64.0.1",  # carrier-grade NAT
]


@pytest.mark.parametrize("host", METADATA_SPELLINGS + LOOPBACK_AND_PRIVATE)
@pytest.mark.parametrize("port", ["", ":80", ":8080"])
def test_refused_literal_addresses_in_every_spelling(admin: ApiClient, host: str, port: str) -> None:
    answer = admin.post("/v1/definitions", http_def(f"http://{host}{port}/latest/meta-data/"))
    assert invalid(answer, "target.url"), (host, answer.status, answer.body)


@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_metadata_is_refused_even_when_every_network_is_allowed(admin: ApiClient, host: str) -> None:
    netpolicy.configure(["0.0.0.0/0", "::/0"])
    answer = admin.post("/v1/definitions", http_def(f"https://{host}/"))
    assert invalid(answer, "target.url"), (host, answer.body)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/_x",
        "dict://example.com:11211/",
        "javascript:alert(1)",
        "http:///no-host",
        "http://user:pw@example.com/",  # credentials belong in (secret) headers
        "http://example.com:99999/",
        "//example.com/",
        "example.com/hook",
        "",
    ],
)
def test_only_http_and_https_urls_with_a_host(admin: ApiClient, url: str) -> None:
    assert invalid(admin.post("/v1/definitions", http_def(url)), "target.url"), url


def test_public_names_and_addresses_are_accepted(admin: ApiClient) -> None:
    assert admin.post("/v1/definitions", http_def("https://example.com/hook", "a")).status == 201
    assert admin.post("/v1/definitions", http_def("http://93.184.215.14:8080/x", "b")).status == 201
    assert (
        admin.post(
            "/v1/definitions", http_def("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", "c")
        ).status
        == 201
    )


def test_a_replace_is_checked_like_a_create(admin: ApiClient) -> None:
    assert admin.post("/v1/definitions", http_def("https://example.com/hook")).status == 201
    answer = admin.put("/v1/definitions/d", http_def("http://0xa9fea9fe/"))
    assert invalid(answer, "target.url")
    assert admin.get("/v1/definitions/d").body["target"]["url"] == "https://example.com/hook"


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "a\r\nX-Injected: 1"}, {"X-A": "a\nb"}, {"Bad Name": "x"}, {"X-A:": "x"}, {"": "x"}],
)
def test_header_injection_is_refused(admin: ApiClient, headers: dict[str, str]) -> None:
    body = {"name": "d", "target": {**HOOK, "headers": headers}}
    assert admin.post("/v1/definitions", body).status == 422


# --- request size limits ---------------------------------------------------------------------------


def test_body_over_256_kb_is_413_and_stores_nothing(admin: ApiClient) -> None:
    body = {"name": "big", "target": HOOK, "description": "x" * (256 * 1024)}
    answer = admin.post("/v1/definitions", body)
    assert answer.status == 413 and answer.body["error"]["code"] == "payload_too_large"
    assert admin.get("/v1/definitions/big").status == 404


@pytest.mark.parametrize("field", ["input", "memo"])
def test_documents_over_64_kb_are_422(admin: ApiClient, field: str) -> None:
    assert admin.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    value = {"blob": "x" * (64 * 1024)}
    answer = admin.post("/v1/definitions/job/execute", {field: value})
    assert invalid(answer, field), answer.body
    just_under = {"blob": "x" * (64 * 1024 - 20)}
    assert admin.post("/v1/definitions/job/execute", {field: just_under}).status == 201


def test_task_data_over_64_kb_is_422(admin: ApiClient) -> None:
    answer = admin.post("/v1/tasks", {"topic": "t", "data": {"blob": "x" * (64 * 1024)}})
    assert invalid(answer, "data"), answer.body


# --- names and ids ---------------------------------------------------------------------------------

BAD_NAMES = ["", "-a", ".a", "_a", "a b", "a/b", "a\\b", "é", "a\n", "a" * 81, "a:b", "a%2Fb", "../x"]
BAD_IDS = ["", "-a", "a b", "a/b", "é", "a" * 201, "a\x00", "a#b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_422(admin: ApiClient, name: str) -> None:
    assert invalid(admin.post("/v1/definitions", {"name": name, "target": HOOK}), "name"), name
    sched = {"schedule_id": name, "definition": "job", "spec": {"cron": ["* * * * *"]}}
    assert invalid(admin.post("/v1/schedules", sched), "schedule_id"), name


@pytest.mark.parametrize("name", ["a", "A9", "a.b_c-d", "a" * 80])
def test_good_names_are_accepted(admin: ApiClient, name: str) -> None:
    assert admin.post("/v1/definitions", {"name": name, "target": HOOK}).status == 201


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_bad_ids_are_422(admin: ApiClient, run_id: str) -> None:
    assert admin.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    assert invalid(admin.post("/v1/definitions/job/execute", {"run_id": run_id}), "run_id"), run_id
    assert invalid(admin.post("/v1/tasks", {"topic": "t", "task_id": run_id}), "task_id"), run_id


def test_ids_may_hold_colons_and_200_characters(admin: ApiClient) -> None:
    assert admin.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    run_id = "a:" + "b" * 198
    assert admin.post("/v1/definitions/job/execute", {"run_id": run_id}).status == 201


@pytest.mark.parametrize("sid", ["preview", "bulk"])
def test_reserved_schedule_ids_are_422(admin: ApiClient, sid: str) -> None:
    assert admin.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    sched = {"schedule_id": sid, "definition": "job", "spec": {"cron": ["* * * * *"]}}
    assert invalid(admin.post("/v1/schedules", sched), "schedule_id")


# --- page tokens -----------------------------------------------------------------------------------


@pytest.fixture
def token(admin: ApiClient) -> str:
    for i in range(3):
        assert admin.post("/v1/definitions", {"name": f"d{i}", "target": HOOK, "tags": ["t"]}).status == 201
    page = admin.get("/v1/definitions?page_size=1&tag=t").body
    assert page["next_page_token"]
    return str(page["next_page_token"])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tampered(token: str) -> list[str]:
    body, sig = token.split(".", 1)
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = _b64(json.dumps({**payload, "k": "zzz"}, separators=(",", ":")).encode())
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    return [
        f"{body}.{flipped}",  # signature changed
        f"{forged}.{sig}",  # payload changed, old signature
        body,  # signature dropped
        f"{body}.",
        token[:-3],
        token + "AAAA",
        ".",
        "garbage",
        "%00",
        "é" * 10,
        "A" * 10_000,
        _b64(b'{"k":"d1","f":"x"}') + "." + _b64(b"\x00" * 16),
    ]


def test_tampered_page_tokens_are_400_never_500(admin: ApiClient, token: str) -> None:
    for bad in tampered(token):
        answer = admin.get(f"/v1/definitions?page_size=1&tag=t&page_token={bad}")
        assert answer.status == 400, (bad, answer.status, answer.body)
        assert answer.body["error"]["code"] == "invalid_page_token"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/definitions?page_size=1",  # other filters
        "/v1/definitions?page_size=1&tag=u",
        "/v1/calendars?page_size=1",  # another list
        "/v1/schedules?page_size=1",
        "/v1/runs?page_size=1",
        "/v1/groups?page_size=1",
        "/v1/tasks?page_size=1",
    ],
)
def test_a_token_reused_elsewhere_is_400(admin: ApiClient, token: str, path: str) -> None:
    answer = admin.get(f"{path}&page_token={token}")
    assert answer.status == 400 and answer.body["error"]["code"] == "invalid_page_token", (path, answer.body)


# --- mass assignment -------------------------------------------------------------------------------

OWNED = {
    "version": 99,
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
    "updated_by": "arn:aws:iam::999999999999:root",
    "signing_secret": "chosen-by-the-caller",
    "status": "completed",
    "counters": {"actions": 1000},
    "info": {"last_fire_time": "2000-01-01T00:00:00Z"},
    "generation": "forged",
}


def test_server_owned_fields_of_a_definition_are_never_stored(admin: ApiClient) -> None:
    created = admin.post("/v1/definitions", {"name": "job", "target": HOOK, **OWNED})
    assert created.status == 201, created.body
    assert created.body["version"] == 1
    assert created.body["signing_secret"] != "chosen-by-the-caller"
    got = admin.get("/v1/definitions/job").body
    for field in ("created_at", "updated_at"):
        assert got[field] != "2000-01-01T00:00:00Z"
    assert got["updated_by"] != OWNED["updated_by"]
    assert "status" not in got and "counters" not in got and "generation" not in got
    # on a replace, `version` is a precondition, the rest is ignored
    stale = admin.put("/v1/definitions/job", {"name": "job", "target": HOOK, **OWNED})
    assert stale.status == 409 and stale.body["error"]["code"] == "conflict"
    fresh = admin.put("/v1/definitions/job", {"name": "job", "target": HOOK, **{**OWNED, "version": 1}})
    assert fresh.status == 200 and fresh.body["version"] == 2
    assert fresh.body["updated_by"] != OWNED["updated_by"]


def test_server_owned_fields_of_a_schedule_are_never_stored(admin: ApiClient) -> None:
    assert admin.post("/v1/definitions", {"name": "job", "target": HOOK}).status == 201
    sched = {"schedule_id": "s", "definition": "job", "spec": {"cron": ["0 0 1 1 *"]}, **OWNED}
    sched.pop("version")
    created = admin.post("/v1/schedules", {**sched, "conflict_token": "forged"})
    assert created.status == 201, created.body
    info = admin.get("/v1/schedules/s").body["info"]
    assert info["counters"]["actions"] == 0
    assert info["last_fire_time"] is None
    assert info["updated_by"] != OWNED["updated_by"] and info["created_at"] != OWNED["created_at"]
    updated = admin.put("/v1/schedules/s", {k: v for k, v in sched.items() if k != "signing_secret"})
    assert updated.status == 200, updated.body
    assert admin.get("/v1/schedules/s").body["info"]["counters"]["actions"] == 0


def test_server_owned_fields_of_a_task_are_never_stored(admin: ApiClient) -> None:
    forged = {"topic": "t", "task_id": "t1", "status": "completed", "record_version": 7}
    created = admin.post("/v1/tasks", forged)
    assert created.status == 201, created.body
    assert created.body["status"] == "ready"
    assert created.body["record_version"] != 7
    for extra in ({"lease": {"owner": "me", "token": "x"}}, {"attempts": 0}, {"result": {"done": True}}):
        answer = admin.post("/v1/tasks", {"topic": "t", "task_id": "t2", **extra})
        assert answer.status == 422, (extra, answer.body)
    assert admin.get("/v1/tasks/t2").status == 404


# --- the signing secret is answered once ---------------------------------------------------------


def test_signing_secret_only_in_the_create_answer(admin: ApiClient) -> None:
    created = admin.post("/v1/definitions", {"name": "job", "target": HOOK})
    secret = created.body["signing_secret"]
    assert len(secret) >= 32
    assert (
        admin.post(
            "/v1/schedules", {"schedule_id": "s", "definition": "job", "spec": {"cron": ["* * * * *"]}}
        ).status
        == 201
    )
    run = admin.post("/v1/definitions/job/execute", {"run_id": "r1"})
    replaced = admin.put("/v1/definitions/job", {"name": "job", "target": HOOK})
    answers = [
        replaced,
        run,
        admin.get("/v1/definitions/job"),
        admin.get("/v1/definitions"),
        admin.get("/v1/definitions/job/versions"),
        admin.get("/v1/schedules/s"),
        admin.get("/v1/schedules"),
        admin.get("/v1/runs/r1"),
        admin.get("/v1/runs/r1/history"),
        admin.get("/v1/runs"),
        admin.get("/v1/openapi.json"),
    ]
    for answer in answers:
        assert secret not in json.dumps(answer.body), answer.body
    assert "signing_secret" not in admin.get("/v1/definitions/job").body
    assert "signing_secret" not in replaced.body


# --- times and query filters (found by fuzzing) ----------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        "0171-08-16T21:40:50-18:12",  # was a 500: a 3-digit year written back unparseable
        "0001-01-01T00:00:00+18:00",  # before year 1 in UTC: overflow
        "9999-12-31T23:59:59-18:00",  # after 9999 in UTC: overflow
        "1969-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
    ],
)
def test_times_out_of_range_are_422(admin: ApiClient, when: str) -> None:
    assert invalid(admin.post("/v1/tasks", {"topic": "t", "not_before": when}), "not_before"), when
    spec = {"cron": ["0 0 1 1 *"], "start_at": when}
    assert invalid(admin.post("/v1/schedules/preview", {"spec": spec, "start": when, "count": 1}), "start")
    answer = admin.get(f"/v1/runs?from={when.replace('+', '%2B')}")
    assert invalid(answer, "query.from"), answer.body


def test_times_are_written_with_four_digit_years() -> None:
    from datetime import UTC, datetime

    from gnomon.domain.timefmt import fmt, parse

    t = datetime(171, 8, 17, 15, 52, 50, tzinfo=UTC)
    assert fmt(t) == "0171-08-17T15:52:50Z"
    assert parse(fmt(t)) == t


@pytest.mark.parametrize(
    "query",
    [
        "/v1/tasks?topic=",
        "/v1/leases?topic=",
        "/v1/schedules?group=",
        "/v1/schedules?definition=",
        "/v1/runs?schedule=",
        "/v1/tasks?task_group_id=",
        "/v1/schedules?tag=a%20b",
        "/v1/stats?definition=%2F",
    ],
)
def test_empty_or_malformed_name_filters_are_422(admin: ApiClient, query: str) -> None:
    name = query.split("?")[1].split("=")[0]
    answer = admin.get(query)
    assert invalid(answer, f"query.{name}"), (query, answer.status, answer.body)
