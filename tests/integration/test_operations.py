"""The operations kit in template.yaml: alarms, the dashboard, the console's switch — and that
every gnomon metric they read is one the functions emit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gnomon.local.template import LocalResources, function_environment, load_template, resources

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ALARMS = {
    "DeadLetterAlarm": "dlq-depth",
    "LatenessAlarm": "lateness-p99",
    "TickerErrorsAlarm": "ticker-errors",
    "TickerStoppedAlarm": "ticker-errors",
    "WorkerThrottlesAlarm": "worker-throttles",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _emitted_metrics() -> set[str]:
    """Metric names the ticker and worker pass to Powertools' add_metric (literal or mapped)."""
    names: set[str] = set()
    for fn in ("ticker", "worker"):
        src = (ROOT / "functions" / fn / "app.py").read_text()
        names |= set(re.findall(r'add_metric\(\s*"(\w+)"', src))
        names |= set(re.findall(r'"(Runs\w+)"', src))
        if 'f"Firings{handled.outcome.capitalize()}"' in src:
            names |= {"FiringsDuplicate", "FiringsStale"}
    return names


def _dashboard(template: dict[str, Any]) -> dict[str, Any]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return dict(json.loads(re.sub(r"\$\{[^}]+\}", "1", body)))


def _gnomon_metrics_of_dashboard(dash: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for w in dash["widgets"]:
        ns = None
        for row in w.get("properties", {}).get("metrics", []):
            parts = [p for p in row if isinstance(p, str)]
            if parts and parts[0] == "...":
                continue  # repeats the row above
            ns = parts[0] if parts[0] != "." else ns
            if ns == "gnomon":
                out.add(parts[1])
    return out


def test_every_alarm_notifies_the_optional_topic_and_names_its_runbook_section(
    template: dict[str, Any],
) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) == set(ALARMS)
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for lid, anchor in ALARMS.items():
        props = alarms[lid]["Properties"]
        for key in ("AlarmActions", "OKActions"):
            assert props[key] == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }
        assert f"docs/operations.md#{anchor}" in props["AlarmDescription"], lid
        assert f'<a id="{anchor}"></a>' in runbook, f"runbook has no section {anchor}"
        assert lid in runbook, f"runbook does not name {lid}"
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }


def test_alarm_thresholds(template: dict[str, Any]) -> None:
    alarms = {k: v["Properties"] for k, v in resources(template, "AWS::CloudWatch::Alarm").items()}
    dlq = alarms["DeadLetterAlarm"]
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["FiringDeadLetterQueue", "QueueName"]}
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    lat = alarms["LatenessAlarm"]
    assert (lat["ExtendedStatistic"], lat["Threshold"]) == ("p99", {"Ref": "LatenessP99AlarmMs"})
    thr = alarms["WorkerThrottlesAlarm"]
    assert (thr["MetricName"], thr["Dimensions"][0]["Value"]) == ("Throttles", {"Ref": "WorkerFunction"})


def test_every_gnomon_metric_read_is_emitted(template: dict[str, Any]) -> None:
    emitted = _emitted_metrics()
    assert {"StartLateness", "FiringsEnqueued", "DueItemsRead", "TickErrors", "RunsRetried"} <= emitted
    read = _gnomon_metrics_of_dashboard(_dashboard(template))
    for props in (v["Properties"] for v in resources(template, "AWS::CloudWatch::Alarm").values()):
        if props.get("Namespace") == "gnomon":
            read.add(props["MetricName"])
        for m in props.get("Metrics", []):
            metric = m.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == "gnomon":
                read.add(metric["MetricName"])
    assert read, "the dashboard reads no gnomon metric"
    assert read <= emitted, f"read but never emitted: {sorted(read - emitted)}"


def test_dashboard_shows_what_on_call_needs(template: dict[str, Any]) -> None:
    dash = _dashboard(template)
    titles = " ".join(w["properties"].get("title", "") for w in dash["widgets"]).lower()
    for what in (
        "firings",
        "lateness",
        "runs by status",
        "retries",
        "queues",
        "ticker",
        "throttles",
        "alarms",
    ):
        assert what in titles, what
    text = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert "p99" in text and "p50" in text and "ApproximateNumberOfMessagesVisible" in text


@pytest.mark.parametrize(("issuer", "expected"), [("", "off"), ("https://issuer.example/pool", "on")])
def test_the_console_is_on_in_aws_only_with_a_jwt_issuer(
    template: dict[str, Any], issuer: str, expected: str
) -> None:
    params = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    params |= {"JwtIssuer": issuer, "JwtAudience": "client-1", "AllowedTargetArns": "none"}
    res = LocalResources(
        tables={t: t for t in resources(template, "AWS::DynamoDB::Table")},
        queues={q: q for q in resources(template, "AWS::SQS::Queue")},
        queue_arns={q: q for q in resources(template, "AWS::SQS::Queue")},
        secrets={"PageTokenSecret": "arn:secret"},
        secret_values={"PageTokenSecret": "s"},
        parameters=params,
    )
    env = function_environment(template, "ApiFunction", res)
    assert env["GNOMON_CONSOLE"] == expected
    assert env["GNOMON_CONSOLE_ISSUER"] == issuer
    assert env["GNOMON_CONSOLE_CLIENT_ID"] == "client-1"


def test_console_routes_need_no_authorizer(template: dict[str, Any]) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    for key in ("ANY /console/{proxy+}", "GET /console"):  # the handler answers 405 beyond GET/HEAD
        assert routes[key]["AuthorizationType"] == "NONE", key
    assert routes["ANY /v1/{proxy+}"]["AuthorizationType"] == {"Fn::If": ["UseJwt", "JWT", "AWS_IAM"]}
    env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["GNOMON_CONSOLE"] == {"Fn::If": ["UseJwt", "on", "off"]}
    assert template["Conditions"]["UseJwt"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]}
    for p in ("JwtIssuer", "JwtAudience"):
        assert template["Parameters"][p] == {"Type": "String", "Default": ""}
