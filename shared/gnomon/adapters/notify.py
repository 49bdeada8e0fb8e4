"""Where notifications and lifecycle events go: SNS (boto3 `publish`), signed webhooks (the
`http` target's signing, address policy and pinning: `HttpInvoker.post_signed`) and an
EventBridge bus (`put_events`)."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from gnomon.ports import JSON

SOURCE = "gnomon"


@functools.cache
def _client(service: str) -> Any:
    import boto3

    return boto3.client(service)


class AwsNotificationSender:
    """`NotificationSender` over boto3 and the http target's webhook code."""

    def __init__(self, sns: Any = None, http: Any = None, *, timeout: float = 10.0) -> None:
        self._sns = sns
        self._http = http
        self._timeout = timeout

    def publish_sns(self, topic_arn: str, subject: str, message: JSON) -> None:
        client = self._sns or _client("sns")
        client.publish(
            TopicArn=topic_arn,
            Subject=subject,
            Message=json.dumps(message, separators=(",", ":"), ensure_ascii=False),
            MessageAttributes={
                "notification": {"DataType": "String", "StringValue": str(message.get("notification", ""))},
                "definition": {"DataType": "String", "StringValue": str(message.get("definition", ""))},
            },
        )

    def post_webhook(self, url: str, body: bytes, signing_secret: str) -> None:
        if self._http is None:
            from gnomon.adapters.targets import HttpInvoker, SecretCache

            self._http = HttpInvoker(SecretCache(lambda service, role: _client(service)))
        outcome = self._http.post_signed(url, body, signing_secret, timeout=self._timeout)
        if outcome.status != "completed":
            raise RuntimeError(f"the webhook answered {outcome.status}: {outcome.error}")


class EventBridgeBus:
    """`LifecycleBus` on one EventBridge bus (entries in batches of 10, as PutEvents takes)."""

    def __init__(self, bus_name: str, client: Any = None) -> None:
        self.bus_name = bus_name
        self._client = client

    def put(self, entries: list[tuple[str, JSON]]) -> None:
        client = self._client or _client("events")
        for i in range(0, len(entries), 10):
            chunk = entries[i : i + 10]
            answer = client.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": detail_type,
                        "Detail": json.dumps(detail, separators=(",", ":"), ensure_ascii=False),
                        "EventBusName": self.bus_name,
                    }
                    for detail_type, detail in chunk
                ]
            )
            if answer.get("FailedEntryCount"):
                raise RuntimeError(f"EventBridge refused {answer['FailedEntryCount']} entries")


def bus_from_env() -> EventBridgeBus | None:
    """The lifecycle bus named by `GNOMON_EVENT_BUS_NAME` (the template's `EventBusName`), or
    None when it is empty."""
    name = os.environ.get("GNOMON_EVENT_BUS_NAME", "").strip()
    return EventBridgeBus(name) if name else None
