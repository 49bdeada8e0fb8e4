"""Counter items in DynamoDB: `StatsStore` (gnomon.services.stats) on the requests table.

The items live beside the `request_id` claims in `GNOMON_REQUESTS_TABLE` (hash key `pk`, TTL
attribute `expires_at`), under keys `stats#…` that no claim can take (a claim's key starts with
its HTTP method). Each counter is a top-level number attribute changed with `ADD`, which
creates the item and the attribute when missing and is atomic per item, so concurrent workers
never lose an increment. Reads are strongly consistent `BatchGetItem`s.

boto3's low-level client, not pynamodb: the counter names (`c37`, `running`) are data, which
pynamodb's declared attributes cannot express.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from gnomon.adapters.memory import epoch_seconds

REQUESTS_TABLE_ENV = "GNOMON_REQUESTS_TABLE"
_RESERVED = frozenset({"pk", "expires_at", "write_token"})
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_ADD_TRIES = 6  # calls of one add (each with the SDK's own retries) while DynamoDB throttles it


class DynamoStatsStore:
    def __init__(self, table_name: str | None = None, client: Any = None) -> None:
        name = table_name or os.environ.get(REQUESTS_TABLE_ENV)
        if not name:
            raise RuntimeError(f"no table name given and {REQUESTS_TABLE_ENV} is not set")
        self.table_name = name
        self._client = client

    @property
    def _ddb(self) -> Any:
        if self._client is None:  # built on first use, with the environment's endpoint and region
            endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            self._client = boto3.client("dynamodb", endpoint_url=endpoint or None, region_name=region)
        return self._client

    def add(self, key: str, deltas: Mapping[str, int], *, expires_at: datetime | None = None) -> None:
        deltas = {k: int(v) for k, v in deltas.items() if int(v)}
        if not deltas:
            return
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds = []
        for i, (name, delta) in enumerate(sorted(deltas.items())):
            if name in _RESERVED:
                raise ValueError(f"{name!r} is not a counter name")
            names[f"#c{i}"] = name
            values[f":c{i}"] = {"N": str(delta)}
            adds.append(f"#c{i} :c{i}")
        # A token per call, so the SDK's retry of an add whose answer was lost is not added twice:
        # the retry finds its own token and fails the condition.
        names["#wt"] = "write_token"
        token = uuid.uuid4().hex
        values[":wt"] = {"S": token}
        expression = "ADD " + ", ".join(adds) + " SET #wt = :wt"
        if expires_at is not None:
            names["#ttl"] = "expires_at"
            values[":ttl"] = {"N": str(epoch_seconds(expires_at))}
            expression += ", #ttl = :ttl"
        for attempt in range(_ADD_TRIES):
            try:
                self._ddb.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": key}},
                    UpdateExpression=expression,
                    ConditionExpression="attribute_not_exists(#wt) OR #wt <> :wt",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
                return
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code == "ConditionalCheckFailedException":
                    return  # only our own first try could have left this token: it was applied
                if code in _THROTTLED and attempt + 1 < _ADD_TRIES:
                    # Refused, so not applied: the same add again (the SDK's own retries are spent).
                    time.sleep(min(1.0, 0.05 * 2**attempt))
                    continue
                self._own_or_raise(key, token, e)
                return
            except Exception as e:  # e.g. a read timeout: the add may have happened
                self._own_or_raise(key, token, e)
                return

    def _own_or_raise(self, key: str, token: str, error: Exception) -> None:
        item = self._ddb.get_item(TableName=self.table_name, Key={"pk": {"S": key}}, ConsistentRead=True)
        if item.get("Item", {}).get("write_token", {}).get("S") != token:
            raise error

    def get_many(self, keys: list[str]) -> dict[str, dict[str, int]]:
        if len(keys) > 100:
            raise ValueError("at most 100 keys")
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, int]] = {}
        request: dict[str, Any] = {
            self.table_name: {"Keys": [{"pk": {"S": k}} for k in wanted], "ConsistentRead": True}
        }
        for attempt in range(10):
            if not wanted:
                break
            if attempt:
                time.sleep(min(0.2, 0.01 * 2**attempt))  # unprocessed keys: throttled, back off
            resp = self._ddb.batch_get_item(RequestItems=request)
            for item in resp.get("Responses", {}).get(self.table_name, []):
                found[item["pk"]["S"]] = {
                    name: int(value["N"])
                    for name, value in item.items()
                    if name not in _RESERVED and "N" in value
                }
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise RuntimeError("BatchGetItem kept leaving keys unprocessed")
        return found
