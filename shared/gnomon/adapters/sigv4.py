"""SigV4 request signing for the client: the API behind API Gateway's AWS_IAM authorizer.

`SigV4Auth` is an `httpx.Auth`: it signs each request (service `execute-api`) with the caller's
AWS credentials, found the way boto3 finds them (environment, profile, SSO, instance role). The
credentials are read again for every request, so refreshed temporary credentials are picked up.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx

SERVICE = "execute-api"
# Only these are signed: a proxy or httpx itself may add or change the others (Connection,
# Accept-Encoding, User-Agent...) and a signed header that changes on the way breaks the signature.
_SIGNED = ("host", "content-type")


class SigV4Auth(httpx.Auth):
    """Sign requests with AWS Signature Version 4 for API Gateway (service `execute-api`).

    `region` defaults to the region in an `*.execute-api.<region>.amazonaws.com` URL (the API's
    own region: a signature for any other is refused), then to the profile's / environment's
    region (custom domains). `session` (a boto3 Session) may be given instead
    of `profile`.
    """

    requires_request_body = True

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        *,
        session: Any = None,
        service: str = SERVICE,
    ) -> None:
        import boto3

        self._session = session or boto3.Session(profile_name=profile)
        self.explicit_region = region
        self.region = region or self._session.region_name
        self.profile = profile
        self.service = service

    def credentials(self) -> Any:
        """Frozen credentials for one request (raises when there are none)."""
        creds = self._session.get_credentials()
        if creds is None:
            raise RuntimeError(
                "no AWS credentials found (set AWS_PROFILE / --profile, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY)"
            )
        return creds.get_frozen_credentials()

    def region_for(self, url: httpx.URL) -> str:
        if self.explicit_region:
            return self.explicit_region
        parts = url.host.split(".")
        if len(parts) >= 4 and parts[1] == "execute-api":
            return parts[2]
        if self.region:
            return self.region
        raise RuntimeError("no AWS region: pass --region (or region=) or set AWS_REGION")

    def sign(self, request: httpx.Request) -> None:
        """Add `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token`) to `request`."""
        from botocore.auth import SigV4Auth as BotoSigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {k: request.headers[k] for k in _SIGNED if k in request.headers}
        aws_request = AWSRequest(
            method=request.method, url=str(request.url), data=request.content or None, headers=headers
        )
        BotoSigV4Auth(self.credentials(), self.service, self.region_for(request.url)).add_auth(aws_request)
        for name, value in aws_request.headers.items():
            if name.lower() not in _SIGNED:
                request.headers[name] = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request
