"""Run-time defences of the worker's target calls: names that resolve to refused addresses,
redirects, python targets outside the allowed modules, and webhook signatures as a receiver
checks them. (tests/integration/test_targets.py holds the rest: pinning against rebinding,
TLS on a pinned address, secret headers.)"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gnomon.adapters import targets
from gnomon.adapters.iam_tags import IamPrincipalTags, principal_kind
from gnomon.adapters.targets import build_invoker, sign
from gnomon.domain import netpolicy
from tests.integration.test_targets import (  # noqa: F401 - fixtures
    SECRET,
    Receiver,
    Reply,
    http_target,
    loopback_allowed,
    make_inv,
    receiver,
    resolver,
)


@pytest.fixture
def invoker() -> targets.Invoker:
    return build_invoker(allow_python_modules=["tests.integration"])


def forbidden(out: Any) -> bool:
    return out.status == "failed" and out.retryable is False and out.error["code"] == "target_forbidden"


# What a DNS answer may hold that must never be reached, however it is written.
REFUSED_ANSWERS = [
    "169.254.169.254",
    "169.254.170.2",  # ECS task metadata
    "fd00:ec2::254",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::",
    "fe80::1",
    "0.0.0.0",
    "10.1.2.3",
    "172.31.0.1",
    "192.168.0.10",
    "100.100.100.200",  # Alibaba's metadata (carrier-grade NAT range)
    "fd12::1",
]


@pytest.mark.parametrize("answer", REFUSED_ANSWERS)
def test_a_name_resolving_to_a_refused_address_is_never_contacted(
    receiver: Receiver,  # noqa: F811
    invoker: targets.Invoker,
    resolver: dict[str, Any],  # noqa: F811
    answer: str,
) -> None:
    resolver["names"]["evil.example.test"] = [[answer]]
    out = invoker.invoke(make_inv(http_target(receiver.url(host="evil.example.test"))))
    assert forbidden(out), out
    assert receiver.requests == []


def test_loopback_names_are_refused_in_aws(
    receiver: Receiver,  # noqa: F811
    invoker: targets.Invoker,
    resolver: dict[str, Any],  # noqa: F811
) -> None:
    netpolicy.configure([])
    for answer in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.0.2"):
        resolver["names"]["local.example.test"] = [[answer]]
        assert forbidden(invoker.invoke(make_inv(http_target(receiver.url(host="local.example.test")))))
    assert receiver.requests == []


@pytest.mark.parametrize("host", ["169.254.169.254.", "0xa9fea9fe", "[::ffff:a9fe:a9fe]", "2852039166"])
def test_a_stored_literal_is_checked_again_at_call_time(invoker: targets.Invoker, host: str) -> None:
    # e.g. a definition stored before a policy change: the worker does not trust the API's check
    out = invoker.invoke(make_inv(http_target(f"http://{host}/latest/meta-data/")))
    assert forbidden(out), out


def test_a_redirect_to_the_metadata_address_is_not_followed(
    receiver: Receiver,  # noqa: F811
    invoker: targets.Invoker,
) -> None:
    receiver.replies["/hook"] = Reply(307, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
    out = invoker.invoke(make_inv(http_target(receiver.url())))
    assert (out.status, out.retryable, out.error["code"]) == ("failed", False, "redirect_refused")
    assert [r.path for r in receiver.requests] == ["/hook"]


@pytest.mark.parametrize(
    "function",
    [
        "os:system",
        "subprocess:run",
        "builtins:eval",
        "antigravity:fly",  # importing it would open a browser: it must not even be imported
        "tests.integration_evil:x",
        "tests:conftest",
        "tests.integrationX.mod:f",
    ],
)
def test_python_targets_outside_the_allowed_modules_are_refused_unimported(
    invoker: targets.Invoker, function: str
) -> None:
    module = function.split(":")[0]
    was_loaded = module in sys.modules
    out = invoker.invoke(make_inv({"type": "python", "function": function}))
    assert forbidden(out), out
    assert (module in sys.modules) == was_loaded


def test_no_python_module_is_allowed_by_default() -> None:
    out = build_invoker(allow_python_modules=[]).invoke(
        make_inv({"type": "python", "function": "tests.integration.test_targets:py_echo"})
    )
    assert forbidden(out)


# --- webhook signatures, as a receiver verifies them -------------------------------------------


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does (SECURITY.md): HMAC-SHA256 of `t.` + the raw body, compared in
    constant time, with `t` within a tolerance of its own clock (so a captured request cannot be
    replayed later)."""
    m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    if m is None:
        return False
    t = int(m.group(1))
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, m.group(2)) and abs(now - t) <= tolerance


def test_a_delivery_verifies_and_any_change_does_not(
    receiver: Receiver,  # noqa: F811
    invoker: targets.Invoker,
) -> None:
    assert invoker.invoke(make_inv(http_target(receiver.url()))).status == "completed"
    [req] = receiver.requests
    header, body, now = req.headers["Gnomon-Signature"], req.body, time.time()
    assert verify(SECRET, header, body, now=now)
    assert json.loads(body)["run_id"] == req.headers["Idempotency-Key"]
    assert not verify("another-secret", header, body, now=now)
    assert not verify(SECRET, header, body.replace(b"Zo", b"Zx"), now=now)
    assert not verify(SECRET, header, body + b" ", now=now)
    t = int(header.split(",")[0][2:])
    assert not verify(SECRET, header.replace(f"t={t}", f"t={t + 1}"), body, now=now)
    assert not verify(SECRET, header, body, now=now + 3600)  # a replay an hour later
    assert sign(SECRET, t, body) == header


# --- IAM principal tags (per-group authorization) -------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "kind"),
    [
        ("arn:aws:iam::111122223333:user/alice", ("user", "alice")),
        ("arn:aws:iam::111122223333:user/division/team/alice", ("user", "alice")),
        ("arn:aws:sts::111122223333:assumed-role/ops/alice@example.com", ("role", "ops")),
        ("arn:aws-us-gov:sts::111122223333:assumed-role/ops/s", ("role", "ops")),
        ("arn:aws:iam::111122223333:root", None),
        ("arn:aws:sts::111122223333:federated-user/bob", None),
        ("not-an-arn", None),
    ],
)
def test_principal_kind(arn: str, kind: tuple[str, str] | None) -> None:
    assert principal_kind(arn) == kind


def test_iam_tags_of_users_and_role_sessions() -> None:
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="alice", Tags=[{"Key": "gnomon:groups", "Value": "team-a team-b"}])
        iam.create_role(
            RoleName="ops",
            AssumeRolePolicyDocument="{}",
            Tags=[{"Key": "gnomon:groups", "Value": "ops"}, {"Key": "cost", "Value": "x"}],
        )
        tags = IamPrincipalTags(iam)
        account = "123456789012"
        assert tags(f"arn:aws:iam::{account}:user/alice") == {"gnomon:groups": "team-a team-b"}
        session = f"arn:aws:sts::{account}:assumed-role/ops/alice"
        assert tags(session) == {"gnomon:groups": "ops", "cost": "x"}
        assert tags(f"arn:aws:iam::{account}:user/deleted") is None
        assert tags(f"arn:aws:iam::{account}:root") is None
