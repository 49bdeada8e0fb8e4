"""template.yaml: lint-clean, least-privilege, and the local loader builds exactly its resources."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gnomon.local.template import (
    LocalResources,
    create_resources,
    default_template_path,
    function_environment,
    functions,
    load_template,
    resolve_parameters,
    resolve_value,
    resources,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ("TickerFunction", "WorkerFunction", "ApiFunction")
TABLES = ("CatalogTable", "SchedulesTable", "RunsTable", "TasksTable", "RequestsTable", "EventsTable")

# The key design other code depends on: table -> (key schema, {index: (key schema, projection)}).
KEYS: dict[str, tuple[list[tuple[str, str]], dict[str, tuple[list[tuple[str, str]], str]]]] = {
    "CatalogTable": (
        [("pk", "HASH"), ("sk", "RANGE")],
        {"by_kind": ([("kind", "HASH"), ("name", "RANGE")], "ALL")},
    ),
    "SchedulesTable": (
        [("schedule_id", "HASH")],
        {
            "due": ([("due_shard", "HASH"), ("due_key", "RANGE")], "KEYS_ONLY"),
            "phase": ([("phase_shard", "HASH"), ("phase_key", "RANGE")], "INCLUDE"),
            "by_kind": ([("kind", "HASH"), ("schedule_id", "RANGE")], "KEYS_ONLY"),
            "by_definition": ([("definition", "HASH"), ("schedule_id", "RANGE")], "KEYS_ONLY"),
            "by_group": ([("group", "HASH"), ("schedule_id", "RANGE")], "KEYS_ONLY"),
        },
    ),
    "RunsTable": (
        [("pk", "HASH"), ("sk", "RANGE")],
        {
            "active": ([("active_shard", "HASH"), ("active_key", "RANGE")], "KEYS_ONLY"),
            "by_time": ([("time_shard", "HASH"), ("time_key", "RANGE")], "INCLUDE"),
            "failures": ([("failure_shard", "HASH"), ("failure_key", "RANGE")], "INCLUDE"),
            "pages": ([("page_shard", "HASH"), ("page_key", "RANGE")], "INCLUDE"),
        },
    ),
    "TasksTable": (
        [("task_id", "HASH")],
        {
            "ready": ([("ready_topic", "HASH"), ("ready_key", "RANGE")], "KEYS_ONLY"),
            "leased": ([("leased_topic", "HASH"), ("lease_key", "RANGE")], "KEYS_ONLY"),
            "by_group": ([("task_group_id", "HASH"), ("created_key", "RANGE")], "KEYS_ONLY"),
            "by_topic": ([("topic", "HASH"), ("created_key", "RANGE")], "KEYS_ONLY"),
        },
    ),
    "RequestsTable": ([("pk", "HASH")], {}),
    "EventsTable": (
        [("pk", "HASH"), ("sk", "RANGE")],
        {"busy": ([("busy_def", "HASH"), ("busy_key", "RANGE")], "ALL")},
    ),
}
TTL_TABLES = {"RunsTable", "TasksTable", "RequestsTable", "EventsTable"}

ENV_VARS = {
    "GNOMON_CATALOG_TABLE": ("table", "CatalogTable"),
    "GNOMON_SCHEDULES_TABLE": ("table", "SchedulesTable"),
    "GNOMON_RUNS_TABLE": ("table", "RunsTable"),
    "GNOMON_TASKS_TABLE": ("table", "TasksTable"),
    "GNOMON_REQUESTS_TABLE": ("table", "RequestsTable"),
    "GNOMON_EVENTS_TABLE": ("table", "EventsTable"),
    "GNOMON_FIRING_QUEUE_URL": ("queue", "FiringQueue"),
    "GNOMON_DLQ_URL": ("queue", "FiringDeadLetterQueue"),
    "GNOMON_DUE_SHARDS": ("parameter", "DueShards"),
    "GNOMON_HORIZON_SECONDS": ("parameter", "HorizonSeconds"),
    "GNOMON_RUN_RETENTION_DAYS": ("parameter", "RunRetentionDays"),
    "GNOMON_PAGE_TOKEN_SECRET_ARN": ("secret", "PageTokenSecret"),
    "POWERTOOLS_LOG_LEVEL": ("parameter", "LogLevel"),
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """Fake credentials and region first, then moto: no client here can reach AWS."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "GNOMON_TEMPLATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


# ------------------------------------------------------------------------------------ lint


def test_cfn_lint_reports_nothing() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, ManualArgs(include_checks=["I"]))
    assert [str(m) for m in matches] == []


def test_load_template_finds_the_repository_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GNOMON_TEMPLATE", raising=False)
    assert default_template_path().resolve() == TEMPLATE
    monkeypatch.setenv("GNOMON_TEMPLATE", str(TEMPLATE))
    tpl = load_template()
    assert tpl["Transform"] == "AWS::Serverless-2016-10-31"
    # short-form intrinsics arrive as plain dicts
    env = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert env["GNOMON_RUNS_TABLE"] == {"Ref": "RunsTable"}
    assert type(env["POWERTOOLS_SERVICE_NAME"]) is str


# ------------------------------------------------------------------------------------ structure


def test_key_design_is_exact(template: dict[str, Any]) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(KEYS)
    for lid, (key, indexes) in KEYS.items():
        props = tables[lid]["Properties"]
        assert "TableName" not in props, lid
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"] == {"SSEEnabled": True}
        assert _keys(props["KeySchema"]) == key, lid
        got = {
            i["IndexName"]: (_keys(i["KeySchema"]), i["Projection"]["ProjectionType"])
            for i in props.get("GlobalSecondaryIndexes", [])
        }
        assert got == indexes, lid
        used = {a for a, _ in key} | {a for ks, _ in indexes.values() for a, _ in ks}
        assert {(d["AttributeName"], d["AttributeType"]) for d in props["AttributeDefinitions"]} == {
            (a, "S") for a in used
        }
        ttl = props.get("TimeToLiveSpecification")
        if lid in TTL_TABLES:
            assert ttl == {"AttributeName": "expires_at", "Enabled": True}
        else:
            assert ttl is None


def test_queues_and_secret(template: dict[str, Any]) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    assert set(queues) == {"FiringQueue", "FiringDeadLetterQueue", "EventIngestQueue"}
    assert queues["EventIngestQueue"]["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["FiringDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    rule = resources(template, "AWS::Events::Rule")["EventIngestRule"]
    assert rule["Condition"] == "HasEventBus"
    assert rule["Properties"]["Targets"] == [
        {"Id": "ingest", "Arn": {"Fn::GetAtt": ["EventIngestQueue", "Arn"]}}
    ]
    assert all("QueueName" not in q["Properties"] for q in queues.values())
    firing = queues["FiringQueue"]["Properties"]
    assert firing["MessageRetentionPeriod"] == 4 * 86400
    assert firing["SqsManagedSseEnabled"] is True
    assert firing["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["FiringDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert queues["FiringDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    secret = resources(template, "AWS::SecretsManager::Secret")["PageTokenSecret"]["Properties"]
    assert secret["GenerateSecretString"] == {"PasswordLength": 48, "ExcludePunctuation": True}


def test_visibility_is_at_least_six_worker_timeouts(template: dict[str, Any]) -> None:
    allowed = template["Parameters"]["WorkerTimeout"]["AllowedValues"]
    visibility = resources(template, "AWS::SQS::Queue")["FiringQueue"]["Properties"]["VisibilityTimeout"]
    for timeout in allowed:
        res = LocalResources(parameters=resolve_parameters(template, {"WorkerTimeout": timeout}))
        assert int(resolve_value(template, visibility, res)) >= 6 * int(timeout)
        assert functions(template, res)["WorkerFunction"]["timeout"] == int(timeout)
    assert functions(template)["WorkerFunction"]["timeout"] == 900


def _statements(template: dict[str, Any], lid: str) -> list[dict[str, Any]]:
    """Every inline statement of the function, both branches of each Fn::If included."""
    out: list[dict[str, Any]] = []
    policies = template["Resources"][lid]["Properties"]["Policies"]
    for policy in policies:
        assert isinstance(policy, dict) and set(policy) <= {"Version", "Statement"}, (
            f"{lid}: only inline policy documents, no SAM policy templates or managed policies"
        )
        for st in policy["Statement"]:
            if "Fn::If" in st:
                out += [b for b in st["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}]
            else:
                out.append(st)
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


ADMIN = {"CreateTable", "DeleteTable", "UpdateTable", "UpdateTimeToLive", "RestoreTableFromBackup"}


@pytest.mark.parametrize("lid", FUNCTIONS)
def test_least_privilege(template: dict[str, Any], lid: str) -> None:
    statements = _statements(template, lid)
    assert statements
    for st in statements:
        assert st["Effect"] == "Allow"
        actions = _as_list(st["Action"])
        for action in actions:
            service, _, name = action.partition(":")
            assert "*" not in action, f"{lid}: wildcard action {action}"
            if service == "dynamodb":
                assert name not in ADMIN, f"{lid}: table admin {action}"
        for resource in _as_list(st["Resource"]):
            assert resource != "*", f"{lid}: Resource * for {actions}"
            if any(a.startswith("dynamodb:") for a in actions):
                text = str(resource)
                assert any(t in text for t in TABLES), f"{lid}: {actions} on {resource}"
    actions = {a for st in statements for a in _as_list(st["Action"])}
    if lid == "TickerFunction":
        assert "sqs:SendMessage" in actions
        assert "dynamodb:Scan" not in actions
        assert not any(a.startswith(("secretsmanager:", "lambda:", "sts:")) for a in actions)
    if lid == "WorkerFunction":
        assert "dynamodb:Scan" not in actions
        assert {"lambda:InvokeFunction", "states:StartExecution", "sts:AssumeRole"} <= actions
        direct = next(st for st in statements if st.get("Sid") == "DirectTargets")
        assert direct["Resource"] == {"Ref": "AllowedTargetArns"}
        worker_if = [
            st["Fn::If"][0]
            for p in template["Resources"][lid]["Properties"]["Policies"]
            for st in p["Statement"]
            if "Fn::If" in st
        ]
        assert "HasAllowedTargets" in worker_if
    if lid == "ApiFunction":
        secret = next(st for st in statements if "secretsmanager:GetSecretValue" in _as_list(st["Action"]))
        assert secret["Resource"] == {"Ref": "PageTokenSecret"}


def test_functions_events_and_api(template: dict[str, Any]) -> None:
    fns = functions(template)
    assert set(fns) == set(FUNCTIONS)
    for lid, name in zip(FUNCTIONS, ("ticker", "worker", "api"), strict=True):
        assert fns[lid]["handler"] == "app.lambda_handler"
        assert fns[lid]["code_uri"] == f"functions/{name}/"
    assert fns["TickerFunction"]["timeout"] == 60
    assert fns["ApiFunction"]["timeout"] == 29
    assert fns["TickerFunction"]["events"]["Tick"] == {
        "Type": "Schedule",
        "Properties": {"Schedule": "rate(1 minute)"},
    }
    worker_events = fns["WorkerFunction"]["events"]
    assert set(worker_events) == {"Firings", "Events"}
    for sqs_event, queue in zip(worker_events.values(), ("FiringQueue", "EventIngestQueue"), strict=True):
        assert sqs_event["Type"] == "SQS"
        props = sqs_event["Properties"]
        assert props["Queue"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert props["BatchSize"] == 10
        assert props["MaximumBatchingWindowInSeconds"] == 0
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # The API function is reached only through the HttpApi routes below (no SAM events).
    assert "Events" not in template["Resources"]["ApiFunction"]["Properties"]
    layer = resources(template, "AWS::Serverless::LayerVersion")["GnomonLayer"]
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert set(template["Outputs"]) >= {
        "ApiUrl",
        "FiringQueueUrl",
        "FiringDeadLetterQueueUrl",
        *(f"{t}Name" for t in TABLES),
    }


def test_layer_requirements_are_runtime_only() -> None:
    lines = (ROOT / "shared" / "requirements.txt").read_text().splitlines()
    names = {
        line.split(">")[0].split("=")[0].split("[")[0].strip().lower()
        for line in lines
        if line.strip() and not line.startswith("#")
    }
    assert names == {"boto3", "aws-lambda-powertools", "pynamodb", "croniter", "pydantic", "tzdata"}


def test_http_api_routes_need_iam_or_jwt(template: dict[str, Any]) -> None:
    """Every route is authorized: AWS_IAM by default, the JWT authorizer when JwtIssuer is set."""
    params = template["Parameters"]
    assert params["JwtIssuer"] == {"Type": "String", "Default": ""}
    assert params["JwtAudience"] == {"Type": "String", "Default": ""}
    assert template["Conditions"]["UseJwt"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]}
    res = template["Resources"]
    assert res["HttpApi"]["Type"] == "AWS::ApiGatewayV2::Api"
    jwt = res["JwtAuthorizer"]
    assert jwt["Condition"] == "UseJwt"
    assert jwt["Properties"]["AuthorizerType"] == "JWT"
    assert jwt["Properties"]["JwtConfiguration"] == {
        "Issuer": {"Ref": "JwtIssuer"},
        "Audience": [{"Ref": "JwtAudience"}],
    }
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in res.values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {"ANY /v1/{proxy+}", "ANY /console/{proxy+}", "GET /console"}
    for key in ("ANY /console/{proxy+}", "GET /console"):
        # the console's static files: no authorizer (the page sends a bearer token to /v1 itself)
        props = routes.pop(key)
        assert props["AuthorizationType"] == "NONE" and "AuthorizerId" not in props
    for props in routes.values():
        assert props["ApiId"] == {"Ref": "HttpApi"}
        assert props["AuthorizationType"] == {"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}
        assert props["AuthorizerId"] == {
            "Fn::If": ["UseJwt", {"Ref": "JwtAuthorizer"}, {"Ref": "AWS::NoValue"}]
        }
    integration = res["ApiIntegration"]["Properties"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["ApiFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    # per-group authorization reads caller tags in this account only
    tag_reads = [
        st
        for st in _statements(template, "ApiFunction")
        if set(_as_list(st["Action"])) == {"iam:ListRoleTags", "iam:ListUserTags"}
    ]
    assert len(tag_reads) == 1
    assert all("${AWS::AccountId}" in r["Fn::Sub"] for r in tag_reads[0]["Resource"])
    permission = res["ApiInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "ApiFunction"}
    assert "${HttpApi}" in permission["SourceArn"]["Fn::Sub"]


def test_checkov_suppressions_are_justified(template: dict[str, Any]) -> None:
    for lid, res in template["Resources"].items():
        for skip in (res.get("Metadata") or {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV_"), lid
            assert len(skip.get("comment", "")) > 20, f"{lid}: {skip['id']} needs a reason"


def test_parameter_overrides_are_checked(template: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unknown"):
        resolve_parameters(template, {"NoSuchParameter": "1"})
    with pytest.raises(ValueError, match="WorkerTimeout"):
        resolve_parameters(template, {"WorkerTimeout": 45})
    with pytest.raises(ValueError, match="HorizonSeconds"):
        resolve_parameters(template, {"HorizonSeconds": 901})
    assert resolve_parameters(template, {"DueShards": 4})["DueShards"] == "4"


# ------------------------------------------------------------------------------------ moto


def test_create_resources_builds_tables_and_indexes(template: dict[str, Any], aws: None) -> None:
    res = create_resources(template, endpoint_url=None)
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    assert set(res.tables) == set(TABLES)
    assert sorted(ddb.list_tables()["TableNames"]) == sorted(res.tables.values())
    for lid, (key, indexes) in KEYS.items():
        table = ddb.describe_table(TableName=res.tables[lid])["Table"]
        assert table["TableName"] == f"gnomon-{lid}"
        assert _keys(table["KeySchema"]) == key
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        got = {
            i["IndexName"]: (_keys(i["KeySchema"]), i["Projection"]["ProjectionType"])
            for i in table.get("GlobalSecondaryIndexes", [])
        }
        assert got == indexes
        ttl = ddb.describe_time_to_live(TableName=res.tables[lid])["TimeToLiveDescription"]
        if lid in TTL_TABLES:
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
        backups = ddb.describe_continuous_backups(TableName=res.tables[lid])["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    due = ddb.describe_table(TableName=res.tables["SchedulesTable"])["Table"]["GlobalSecondaryIndexes"]
    (due_index,) = [i for i in due if i["IndexName"] == "due"]
    assert _keys(due_index["KeySchema"]) == [("due_shard", "HASH"), ("due_key", "RANGE")]

    # the due index is sparse and sorted: a paused schedule (no due_key) is not in it
    table = res.tables["SchedulesTable"]
    ddb.put_item(
        TableName=table,
        Item={"schedule_id": {"S": "b"}, "due_shard": {"S": "3"}, "due_key": {"S": "2026-01-02T00:00:00Z#b"}},
    )
    ddb.put_item(
        TableName=table,
        Item={"schedule_id": {"S": "a"}, "due_shard": {"S": "3"}, "due_key": {"S": "2026-01-01T00:00:00Z#a"}},
    )
    ddb.put_item(TableName=table, Item={"schedule_id": {"S": "paused"}, "kind": {"S": "schedule"}})
    found = ddb.query(
        TableName=table,
        IndexName="due",
        KeyConditionExpression="due_shard = :s AND due_key <= :t",
        ExpressionAttributeValues={":s": {"S": "3"}, ":t": {"S": "2026-12-31"}},
    )["Items"]
    assert [i["schedule_id"]["S"] for i in found] == ["a", "b"]


def test_create_resources_builds_queues_and_secret(template: dict[str, Any], aws: None) -> None:
    res = create_resources(template, endpoint_url=None, parameter_overrides={"WorkerTimeout": 300})
    sqs = boto3.client("sqs", region_name="us-east-1")
    assert set(res.queues) == {"FiringQueue", "FiringDeadLetterQueue", "EventIngestQueue"}
    attrs = sqs.get_queue_attributes(QueueUrl=res.queues["FiringQueue"], AttributeNames=["All"])["Attributes"]
    assert int(attrs["VisibilityTimeout"]) == 6 * 300
    assert int(attrs["MessageRetentionPeriod"]) == 4 * 86400
    assert attrs["SqsManagedSseEnabled"] == "true"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == res.queue_arns["FiringDeadLetterQueue"]
    assert int(redrive["maxReceiveCount"]) == 5
    dlq = sqs.get_queue_attributes(QueueUrl=res.queues["FiringDeadLetterQueue"], AttributeNames=["All"])
    assert int(dlq["Attributes"]["MessageRetentionPeriod"]) == 14 * 86400

    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = sm.get_secret_value(SecretId=res.secrets["PageTokenSecret"])["SecretString"]
    assert value == res.secret_values["PageTokenSecret"]
    assert len(value) == 48 and value.isalnum()
    assert res.parameters["WorkerTimeout"] == "300"


def test_create_resources_is_idempotent(template: dict[str, Any], aws: None) -> None:
    first = create_resources(template, endpoint_url=None)
    second = create_resources(template, endpoint_url=None)
    assert second == first
    assert len(boto3.client("dynamodb").list_tables()["TableNames"]) == len(TABLES)
    assert len(boto3.client("sqs").list_queues()["QueueUrls"]) == 3
    assert len(boto3.client("secretsmanager").list_secrets()["SecretList"]) == 1
    # a changed parameter is applied to the existing queue
    create_resources(template, endpoint_url=None, parameter_overrides={"WorkerTimeout": 60})
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=first.queues["FiringQueue"], AttributeNames=["VisibilityTimeout"]
    )
    assert attrs["Attributes"]["VisibilityTimeout"] == "360"


def test_create_resources_adds_new_indexes_and_refuses_other_keys(
    template: dict[str, Any], aws: None
) -> None:
    older = copy.deepcopy(template)
    props = older["Resources"]["SchedulesTable"]["Properties"]
    props["GlobalSecondaryIndexes"] = [
        i for i in props["GlobalSecondaryIndexes"] if i["IndexName"] != "by_group"
    ]
    props["AttributeDefinitions"] = [
        d for d in props["AttributeDefinitions"] if d["AttributeName"] != "group"
    ]
    res = create_resources(older, endpoint_url=None)
    create_resources(template, endpoint_url=None)
    ddb = boto3.client("dynamodb")
    table = ddb.describe_table(TableName=res.tables["SchedulesTable"])["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == set(KEYS["SchedulesTable"][1])
    assert _keys(table["KeySchema"]) == [("schedule_id", "HASH")]

    other = copy.deepcopy(template)
    other["Resources"]["RunsTable"]["Properties"]["KeySchema"] = [{"AttributeName": "pk", "KeyType": "HASH"}]
    with pytest.raises(RuntimeError, match="key schema"):
        create_resources(other, endpoint_url=None)


def test_create_resources_through_a_moto_server(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        res = create_resources(template, endpoint_url=endpoint, prefix="srv-")
        again = create_resources(template, endpoint_url=endpoint, prefix="srv-")
        assert again == res
        assert res.endpoint_url == endpoint
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        assert {n for n in ddb.list_tables()["TableNames"] if n.startswith("srv-")} == {
            f"srv-{t}" for t in TABLES
        }
        env = function_environment(template, "WorkerFunction", res)
        assert env["GNOMON_RUNS_TABLE"] == "srv-RunsTable"
    finally:
        server.stop()


# ------------------------------------------------------------------------------------ environment


@pytest.mark.parametrize("lid", FUNCTIONS)
def test_function_environment_is_resolved_to_local_names(
    template: dict[str, Any], aws: None, lid: str
) -> None:
    res = create_resources(template, endpoint_url=None, parameter_overrides={"DueShards": 4})
    env = function_environment(template, lid, res)
    expected_gnomon = {
        k for k in template["Globals"]["Function"]["Environment"]["Variables"] if k.startswith("GNOMON_")
    }
    assert expected_gnomon <= set(env)
    for name, (kind, ref) in ENV_VARS.items():
        value = env[name]
        if kind == "table":
            assert value == res.tables[ref]
        elif kind == "queue":
            assert value == res.queues[ref]
        elif kind == "secret":
            assert value == res.secrets[ref]
        else:
            assert value == res.parameters[ref]
    assert env["GNOMON_DUE_SHARDS"] == "4"
    assert env["POWERTOOLS_SERVICE_NAME"] == "gnomon"
    assert env["GNOMON_PAGE_TOKEN_SECRET"] == res.secret_values["PageTokenSecret"]
    for name, value in env.items():
        assert isinstance(value, str), name
        assert "Fn::" not in value and "{'Ref'" not in value and "${" not in value, name
    # the names are real: a handler's clients find them
    ddb = boto3.client("dynamodb")
    ddb.describe_table(TableName=env["GNOMON_SCHEDULES_TABLE"])
    boto3.client("sqs").get_queue_attributes(
        QueueUrl=env["GNOMON_FIRING_QUEUE_URL"], AttributeNames=["QueueArn"]
    )


def test_functions_with_local_resources_resolve_events(template: dict[str, Any], aws: None) -> None:
    res = create_resources(template, endpoint_url=None)
    fns = functions(template, res)
    event, ingest = fns["WorkerFunction"]["events"].values()
    assert event["Properties"]["Queue"] == res.queue_arns["FiringQueue"]
    assert ingest["Properties"]["Queue"] == res.queue_arns["EventIngestQueue"]
    with pytest.raises(KeyError):
        function_environment(template, "NoSuchFunction", res)


def test_worker_concurrency_is_unlimited_unless_the_parameter_sets_it(template: dict[str, Any]) -> None:
    """`WorkerMaxConcurrency` 0 (the default) leaves the firing queue's event source without a
    ScalingConfig; 2–1000 sets its MaximumConcurrency; 1 is refused by the template's Rules."""

    def firings(overrides: dict[str, Any]) -> dict[str, Any]:
        res = LocalResources(parameters=resolve_parameters(template, overrides))
        return dict(functions(template, res)["WorkerFunction"]["events"]["Firings"]["Properties"])

    assert "ScalingConfig" not in firings({})
    assert firings({"WorkerMaxConcurrency": 25})["ScalingConfig"] == {"MaximumConcurrency": "25"}
    rule = template["Rules"]["WorkerMaxConcurrencyIsNotOne"]["Assertions"][0]["Assert"]
    assert rule == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerMaxConcurrency"}, "1"]}]}
    with pytest.raises(ValueError):
        resolve_parameters(template, {"WorkerMaxConcurrency": 1001})
