"""The tags of the IAM principal behind a SigV4-signed request (per-group authorization).

API Gateway's IAM authorizer hands the API only the caller's ARN, so its `gnomon:groups` tag is
read here: `iam:ListUserTags` for a user, `iam:ListRoleTags` for the role behind an assumed-role
session (`arn:aws:sts::<account>:assumed-role/<role>/<session>`). Other principals (the account
root, federated users) have no such tags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

_USER = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:user/(?:.*/)?(?P<name>[^/]+)$")
_SESSION = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/(?P<name>[^/]+)/[^/]+$")
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:.*/)?(?P<name>[^/]+)$")


def principal_kind(arn: str) -> tuple[str, str] | None:
    """("user" | "role", name) of a caller ARN; None for principals without tags."""
    if m := _USER.match(arn):
        return "user", m["name"]
    if m := _SESSION.match(arn) or _ROLE.match(arn):
        return "role", m["name"]
    return None


class IamPrincipalTags:
    """`tags(arn)` → {key: value} read from IAM (every page)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    def __call__(self, arn: str) -> Mapping[str, str] | None:
        kind = principal_kind(arn)
        if kind is None:
            return None
        if self._client is None:
            import boto3

            self._client = boto3.client("iam")
        what, name = kind
        call = self._client.list_user_tags if what == "user" else self._client.list_role_tags
        key = "UserName" if what == "user" else "RoleName"
        tags: dict[str, str] = {}
        marker: str | None = None
        while True:
            try:
                page = call(**{key: name}, **({"Marker": marker} if marker else {}))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
                    return None  # deleted since it signed the request: no tags
                raise
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("IsTruncated"):
                return tags
            marker = page["Marker"]
