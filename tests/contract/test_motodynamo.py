"""The moto DynamoDB Query speed-up of the dev stack's moto host answers what moto answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gnomon.local import motodynamo


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        ddb: Any = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gh", "gr", "sh")
            ]
            + [{"AttributeName": "n", "AttributeType": "N"}],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_g",
                    "KeySchema": [
                        {"AttributeName": "gh", "KeyType": "HASH"},
                        {"AttributeName": "gr", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["n"]},
                },
                {  # sparse: only some items carry `sh`
                    "IndexName": "sparse",
                    "KeySchema": [{"AttributeName": "sh", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                },
                {  # a number partition key: left to moto's own comparison
                    "IndexName": "by_n",
                    "KeySchema": [{"AttributeName": "n", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
        )
        ddb.create_table(
            TableName="flat",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        for i in range(300):
            item: dict[str, Any] = {
                "pk": {"S": f"p{i % 7}"},
                "sk": {"S": f"r#{(i * 37) % 1000:04d}#{i}"},
                "gh": {"S": f"g{i % 3}"},
                "gr": {"S": f"{(i * 13) % 500:04d}"},  # repeats: ties are broken by the table's keys
                "n": {"N": str(i % 5)},
            }
            if i % 4 == 0:
                item["sh"] = {"S": "x"}
            ddb.put_item(TableName="t", Item=item)
            ddb.put_item(TableName="flat", Item={"id": {"S": f"i{i}"}})
        yield ddb


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p3"}}},
    {
        "KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":p": {"S": "p1"}, ":a": {"S": "r#0100"}, ":b": {"S": "r#0700"}},
        "ScanIndexForward": False,
        "Limit": 7,
    },
    {
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :a)",
        "FilterExpression": "n > :n",
        "ExpressionAttributeValues": {":p": {"S": "p2"}, ":a": {"S": "r#0"}, ":n": {"N": "1"}},
        "Limit": 5,
    },
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "nothing"}}},
    {
        "IndexName": "by_g",
        "KeyConditionExpression": "gh = :g",
        "ExpressionAttributeValues": {":g": {"S": "g1"}},
        "ScanIndexForward": False,
        "Limit": 9,
    },
    {
        "IndexName": "by_g",
        "KeyConditionExpression": "gh = :g AND gr < :r",
        "FilterExpression": "n = :n",
        "ExpressionAttributeValues": {":g": {"S": "g2"}, ":r": {"S": "0300"}, ":n": {"N": "3"}},
        "Limit": 4,
    },
    {
        "IndexName": "by_g",
        "KeyConditionExpression": "gh = :g AND gr BETWEEN :a AND :b",
        "ExpressionAttributeValues": {":g": {"S": "g0"}, ":a": {"S": "0100"}, ":b": {"S": "0400"}},
        "ScanIndexForward": False,
        "Limit": 6,
    },
    {
        "IndexName": "by_g",
        "KeyConditionExpression": "gh = :g AND begins_with(gr, :a)",
        "ExpressionAttributeValues": {":g": {"S": "g1"}, ":a": {"S": "02"}},
    },
    {
        "IndexName": "sparse",
        "KeyConditionExpression": "sh = :s",
        "ExpressionAttributeValues": {":s": {"S": "x"}},
    },
    {
        "IndexName": "by_n",
        "KeyConditionExpression": "n = :n",
        "ExpressionAttributeValues": {":n": {"N": "2.0"}},  # equal to 2 as a number, not as text
        "Limit": 11,
    },
]


def _all_pages(ddb: Any, table: str, query: dict[str, Any]) -> list[Any]:
    pages: list[Any] = []
    start = None
    while True:
        extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
        out = ddb.query(TableName=table, **query, **extra)
        pages.append((out["Items"], out.get("LastEvaluatedKey"), out["Count"], out["ScannedCount"]))
        start = out.get("LastEvaluatedKey")
        if not start:
            return pages


def test_queries_answer_the_same_items_pages_and_order_once_sped_up(table: Any) -> None:
    motodynamo.undo()
    queries = [("t", q) for q in QUERIES] + [
        ("flat", {"KeyConditionExpression": "id = :i", "ExpressionAttributeValues": {":i": {"S": "i42"}}})
    ]
    plain = [_all_pages(table, name, q) for name, q in queries]
    scan = table.scan(TableName="t")["Items"]
    try:
        assert motodynamo.speed_up_moto_dynamodb_query() is True
        assert motodynamo.speed_up_moto_dynamodb_query() is False  # idempotent
        fast = [_all_pages(table, name, q) for name, q in queries]
        assert table.scan(TableName="t")["Items"] == scan  # Scan is untouched
    finally:
        motodynamo.undo()
    found = [sum(len(p[0]) for p in pages) for pages in plain]
    assert all(found[:3] + found[4:]), found  # the queries do find items (all but "nothing")
    for (name, q), before, after in zip(queries, plain, fast, strict=True):
        assert after == before, (name, q)


RICH = {
    "pk": {"S": "p-rich"},
    "sk": {"S": "r#0001"},
    "s": {"S": 'text ✓ "quoted"'},
    "empty": {"S": ""},
    "n": {"N": "-12.50"},
    "b": {"B": b"\x00\xffbytes"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"\x01"]},
    "m": {
        "M": {
            "inner": {"L": [{"S": "x"}, {"N": "1"}, {"M": {}}, {"L": []}, {"B": b"\x02"}]},
            "t": {"BOOL": True},
        }
    },
    "nul": {"NULL": True},
    "f": {"BOOL": False},
    "l": {"L": []},
}


def test_responses_answer_the_same_once_sped_up(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    motodynamo.undo()
    written: list[Any] = []
    direct = motodynamo._attribute_value

    def spy(b64: Any, value: dict[str, Any]) -> Any:
        written.append(out := direct(b64, value))
        return out

    monkeypatch.setattr(motodynamo, "_attribute_value", spy)
    table.put_item(TableName="t", Item=RICH)
    key = {"pk": RICH["pk"], "sk": RICH["sk"]}
    other = {"pk": {"S": "p1"}, "sk": table.query(**{"TableName": "t", **QUERIES[0]})["Items"][0]["sk"]}

    def calls() -> list[Any]:
        return [
            table.get_item(TableName="t", Key=key)["Item"],
            table.query(
                TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": RICH["pk"]}
            )["Items"],
            table.batch_get_item(
                RequestItems={"t": {"Keys": [key, other, {"pk": {"S": "no"}, "sk": {"S": "no"}}]}}
            )["Responses"],
            table.scan(TableName="t", Limit=20)["Items"],
            table.query(**{"TableName": "t", **QUERIES[4]}),
        ]

    plain = calls()
    try:
        assert motodynamo.speed_up_moto_dynamodb_responses() is True
        assert motodynamo.speed_up_moto_dynamodb_responses() is False  # idempotent
        fast = calls()
    finally:
        motodynamo.undo()
    assert plain[0]["b"] == {"B": b"\x00\xffbytes"} and plain[0]["m"]["M"]["t"] == {"BOOL": True}
    assert len(written) > 50 and None not in written  # every attribute value took the direct way
    for before, after in zip(plain, fast, strict=True):
        if isinstance(before, dict):
            before.pop("ResponseMetadata", None)
            after.pop("ResponseMetadata", None)
        assert after == before


INDEX_QUERIES = [("t", q) for q in QUERIES if q.get("IndexName")]


def _writes(ddb: Any) -> list[Any]:
    """Writes of every kind, each moving items into, out of or within index partitions."""
    item = {
        "pk": {"S": "p1"},
        "sk": {"S": "r#9999#new"},
        "gh": {"S": "g1"},
        "gr": {"S": "0001"},
        "n": {"N": "2"},
    }
    first = ddb.query(TableName="t", **QUERIES[0])["Items"][0]
    key = {"pk": first["pk"], "sk": first["sk"]}
    return [
        lambda: ddb.put_item(TableName="t", Item=item),
        lambda: ddb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET gh = :g, gr = :r, sh = :s",
            ExpressionAttributeValues={":g": {"S": "g2"}, ":r": {"S": "0250"}, ":s": {"S": "x"}},
        ),
        lambda: ddb.update_item(TableName="t", Key=key, UpdateExpression="REMOVE gh"),
        lambda: ddb.delete_item(TableName="t", Key={"pk": item["pk"], "sk": item["sk"]}),
        lambda: ddb.batch_write_item(
            RequestItems={
                "t": [
                    {"PutRequest": {"Item": {**item, "sk": {"S": f"r#8888#{i}"}, "gr": {"S": f"01{i}"}}}}
                    for i in range(3)
                ]
            }
        ),
        lambda: ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": {**item, "sk": {"S": "r#7777#t"}, "gh": {"S": "g0"}}}},
                {"Delete": {"TableName": "t", "Key": {"pk": item["pk"], "sk": {"S": "r#8888#1"}}}},
            ]
        ),
    ]


def test_index_partitions_are_kept_between_queries_and_dropped_by_every_write(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    motodynamo.undo()
    gathered: list[int] = []
    every_item = motodynamo._every_item

    def counting(t: Any) -> list[Any]:
        gathered.append(1)
        return every_item(t)

    monkeypatch.setattr(motodynamo, "_every_item", counting)
    try:
        for write in _writes(table):
            assert motodynamo.speed_up_moto_dynamodb_query() is True
            before = [_all_pages(table, name, q) for name, q in INDEX_QUERIES]
            gathered.clear()
            again = [_all_pages(table, name, q) for name, q in INDEX_QUERIES]
            assert again == before
            # the string-keyed indexes' partitions come from the kept map; only by_n (a number
            # partition key, left to moto) walks the table, once per page
            by_n_pages = len(_all_pages(table, *INDEX_QUERIES[-1]))
            assert len(gathered) == 2 * by_n_pages
            write()
            fast = [_all_pages(table, name, q) for name, q in INDEX_QUERIES]
            motodynamo.undo()
            plain = [_all_pages(table, name, q) for name, q in INDEX_QUERIES]
            assert fast == plain
            assert fast != before  # each write changes what an index query answers
    finally:
        motodynamo.undo()
