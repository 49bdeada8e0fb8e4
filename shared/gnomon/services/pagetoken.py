"""Opaque, tamper-proof page tokens: the store's continuation key, bound to the list's filters
and signed with HMAC-SHA256. A forged token, or one reused with other filters → 400."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from gnomon.domain.errors import InvalidPageToken


class PageTokens:
    """Encode and verify page tokens with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, last_key: str | None, scope: str, filters: Mapping[str, Any]) -> str | None:
        """The token for the page after `last_key` (None when there is none)."""
        if last_key is None:
            return None
        payload = json.dumps({"k": last_key, "f": _fingerprint(scope, filters)}, separators=(",", ":"))
        raw = payload.encode()
        sig = hmac.new(self._key, raw, hashlib.sha256).digest()[:16]
        return _b64(raw) + "." + _b64(sig)

    def decode(self, token: str | None, scope: str, filters: Mapping[str, Any]) -> str | None:
        """The continuation key inside `token`; `InvalidPageToken` when it was not made by
        `encode` for this scope and these filters."""
        if token is None:
            return None
        try:
            body, sig = token.split(".", 1)
            raw = _unb64(body)
            expected = hmac.new(self._key, raw, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(expected, _unb64(sig)):
                raise ValueError("signature")
            data = json.loads(raw)
            if data["f"] != _fingerprint(scope, filters):
                raise InvalidPageToken("page_token was issued for other filters")
            key = data["k"]
            if not isinstance(key, str):
                raise ValueError("key")
            return key
        except InvalidPageToken:
            raise
        except (ValueError, KeyError, TypeError):
            raise InvalidPageToken("page_token is not valid") from None


def _fingerprint(scope: str, filters: Mapping[str, Any]) -> str:
    canon = json.dumps([scope, sorted((k, v) for k, v in filters.items() if v is not None)], default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
