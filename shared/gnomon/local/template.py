"""Read `template.yaml` and build its tables, queues and secret locally (moto), so the local stack
and the tests run on exactly the resources and function environments SAM deploys.

The template is the single source of truth: nothing here names a table, an index or a variable.

- `load_template()` reads the template with cfn-lint's decoder (short-form intrinsics become
  `{"Fn::Sub": ...}` dicts) into plain dicts, lists and strings.
- `create_resources()` creates every `AWS::DynamoDB::Table`, `AWS::SQS::Queue` and
  `AWS::SecretsManager::Secret` (idempotently: existing ones are reused and reconciled) against an
  endpoint (a moto server) or, with `endpoint_url=None`, the default boto3 clients — which must
  then be under an active `moto.mock_aws()`.
- `function_environment()` gives a function the environment the template gives it in AWS, with
  every `Ref`/`Fn::GetAtt`/`Fn::Sub`/... resolved to the local names.

Local naming: a resource without an explicit name is called `<prefix><LogicalId>`
(`gnomon-SchedulesTable`, `gnomon-FiringQueue`, `gnomon-PageTokenSecret`).

Secrets: each `AWS::SecretsManager::Secret` is created in the local Secrets Manager (moto) with a
value generated as its `GenerateSecretString` asks, and reused on the next run. A `Ref` to it gives
the local ARN, as in AWS. In addition, for every environment variable `X_ARN` whose value is a
secret's ARN, `function_environment` also sets `X` to the secret's value (so the page-token key
arrives as both `GNOMON_PAGE_TOKEN_SECRET_ARN` and `GNOMON_PAGE_TOKEN_SECRET`); handlers may use
`X` when it is set and call GetSecretValue on `X_ARN` otherwise (in AWS only the ARN is set).

This module imports boto3 but never moto, and cfn-lint only when a template is loaded.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import json
import os
import re
import secrets as _secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "LOCAL_ACCOUNT_ID",
    "LocalResources",
    "create_resources",
    "default_template_path",
    "function_environment",
    "functions",
    "load_template",
    "resolve_parameters",
    "resolve_value",
    "resources",
]

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
SECRET = "AWS::SecretsManager::Secret"  # nosec B105 # a resource type, not a password
FUNCTION = "AWS::Serverless::Function"

LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account

# ------------------------------------------------------------------------------------ loading


def default_template_path() -> Path:
    """`$GNOMON_TEMPLATE`, else the first `template.yaml` found walking up from the gnomon
    package (the repository root in a checkout), else walking up from the working directory."""
    env = os.environ.get("GNOMON_TEMPLATE")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    cwd = Path.cwd().resolve()
    for start in (here, cwd):
        for directory in (start, *start.parents):
            candidate = directory / "template.yaml"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        "template.yaml not found above the gnomon package or the working directory; set GNOMON_TEMPLATE"
    )


def _plain(node: Any) -> Any:
    """cfn-lint's node types (dict_node, str_node, ...) -> plain Python values."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def load_template(path: str | Path | None = None) -> dict[str, Any]:
    """The template as plain dicts (intrinsics as `{"Ref": ...}` / `{"Fn::...": ...}`).

    `path` None: `default_template_path()`. Raises ValueError if the file does not parse."""
    from cfnlint.decode import decode  # heavy import: only when a template is read

    p = Path(path) if path is not None else default_template_path()
    if not p.is_file():
        raise FileNotFoundError(f"no template at {p}")
    template, matches = decode(str(p))
    if matches or template is None:
        problems = "; ".join(str(m) for m in matches) or "empty template"
        raise ValueError(f"cannot read {p}: {problems}")
    out = _plain(template)
    if not isinstance(out, dict):
        raise ValueError(f"cannot read {p}: not a mapping")
    return out


def resources(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of `type_` (whatever its Condition)."""
    return {
        lid: res
        for lid, res in (template.get("Resources") or {}).items()
        if isinstance(res, dict) and res.get("Type") == type_
    }


# ------------------------------------------------------------------------------------ parameters


def _param_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_param_str(v) for v in value)
    return str(value)


def resolve_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Every parameter's value as a string: its override, else its Default (CommaDelimitedList
    values comma-joined). Checks AllowedValues, MinValue/MaxValue, MinLength/MaxLength and
    AllowedPattern as CloudFormation would; unknown overrides and missing values -> ValueError."""
    params: dict[str, Any] = template.get("Parameters") or {}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(f"unknown template parameters: {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in params.items():
        if name in overrides:
            value = _param_str(overrides[name])
        elif "Default" in spec:
            value = _param_str(spec["Default"])
        else:
            raise ValueError(f"parameter {name} has no Default: pass it in parameter_overrides")
        ptype = str(spec.get("Type", "String"))
        items = value.split(",") if ptype.startswith("List<") or ptype == "CommaDelimitedList" else [value]
        for item in items:
            _check_parameter(name, spec, ptype, item.strip() if ptype != "String" else item)
        values[name] = value
    return values


def _check_parameter(name: str, spec: Mapping[str, Any], ptype: str, value: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in {_param_str(a) for a in allowed}:
        raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
    if ptype in ("Number", "List<Number>"):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"parameter {name}={value!r} is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise ValueError(f"parameter {name}={value} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise ValueError(f"parameter {name}={value} is above MaxValue {spec['MaxValue']}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise ValueError(f"parameter {name} is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise ValueError(f"parameter {name} is longer than MaxLength {spec['MaxLength']}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        raise ValueError(f"parameter {name}={value!r} does not match {pattern}")


# ------------------------------------------------------------------------------------ local state


@dataclass
class LocalResources:
    """What `create_resources` made (or found), by logical id."""

    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    queue_arns: dict[str, str] = field(default_factory=dict)  # logical id -> queue ARN
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> secret ARN (local)
    secret_values: dict[str, str] = field(default_factory=dict)  # logical id -> secret string
    parameters: dict[str, str] = field(default_factory=dict)  # parameter -> value (resolved)
    region: str = "us-east-1"
    account_id: str = LOCAL_ACCOUNT_ID
    endpoint_url: str | None = None
    prefix: str = "gnomon-"

    def table_arn(self, logical_id: str) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{self.tables[logical_id]}"


# ------------------------------------------------------------------------------------ intrinsics

_NO_VALUE: Any = object()  # AWS::NoValue: the enclosing key or list item disappears
_INTRINSICS = frozenset(
    {
        "Ref",
        "Fn::GetAtt",
        "Fn::Sub",
        "Fn::Join",
        "Fn::If",
        "Fn::Select",
        "Fn::Split",
        "Fn::FindInMap",
        "Fn::Base64",
        "Fn::GetAZs",
        "Fn::Equals",
        "Fn::Not",
        "Fn::And",
        "Fn::Or",
        "Condition",
    }
)
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    """Evaluates CloudFormation intrinsics against local values.

    `ref(logical_id)` and `getatt(logical_id, attribute)` give resources' local values; a resource
    they do not know (a function, the HTTP API, the layer) gets a stable stand-in string."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        *,
        region: str,
        account_id: str,
        prefix: str,
        ref: Callable[[str], Any | None] = lambda _lid: None,
        getatt: Callable[[str, str], Any | None] = lambda _lid, _attr: None,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.region = region
        self.account_id = account_id
        self.prefix = prefix
        self._ref = ref
        self._getatt = getatt
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    # ---- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            defs = self.template.get("Conditions") or {}
            if name not in defs:
                raise KeyError(f"unknown condition {name}")
            if name in self._evaluating:
                raise ValueError(f"condition {name} refers to itself")
            self._evaluating.add(name)
            try:
                self._conditions[name] = bool(self.resolve(defs[name]))
            finally:
                self._evaluating.discard(name)
        return self._conditions[name]

    def enabled(self, resource: Mapping[str, Any]) -> bool:
        cond = resource.get("Condition")
        return True if cond is None else self.condition(str(cond))

    # ---- values
    def parameter(self, name: str) -> Any:
        value = self.parameters[name]
        ptype = str((self.template.get("Parameters") or {}).get(name, {}).get("Type", "String"))
        if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
            return [v.strip() for v in value.split(",")]
        return value

    def pseudo(self, name: str) -> Any:
        stack = self.prefix.rstrip("-_") or "gnomon"
        table: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{stack}/local",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        if name not in table:
            raise KeyError(f"unknown pseudo parameter {name}")
        return table[name]

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameter(name)
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name not in (self.template.get("Resources") or {}):
            raise KeyError(f"Ref to unknown name {name}")
        value = self._ref(name)
        return f"{self.prefix}{name}" if value is None else value

    def getatt(self, lid: str, attr: str) -> Any:
        if lid not in (self.template.get("Resources") or {}):
            raise KeyError(f"Fn::GetAtt on unknown resource {lid}")
        value = self._getatt(lid, attr)
        if value is None:
            return f"arn:aws:local:{self.region}:{self.account_id}:{self.prefix}{lid}/{attr}"
        return value

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(v) for v in node]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key in _INTRINSICS:
                return self._intrinsic(key, arg)
        out = {}
        for k, v in node.items():
            value = self.resolve(v)
            if value is not _NO_VALUE:
                out[k] = value
        return out

    def _intrinsic(self, fn: str, arg: Any) -> Any:
        if fn == "Ref":
            return self.ref(str(arg))
        if fn == "Condition":
            return self.condition(str(arg))
        if fn == "Fn::GetAtt":
            lid, attr = arg.split(".", 1) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return self.getatt(str(lid), str(attr))
        if fn == "Fn::Sub":
            return self._sub(arg)
        if fn == "Fn::Join":
            delimiter, items = arg
            items = self.resolve(items)
            return str(delimiter).join(_scalar(v) for v in items)
        if fn == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(str(cond)) else no)
        if fn == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if fn == "Fn::Split":
            delimiter, text = self.resolve(arg)
            return str(text).split(str(delimiter))
        if fn == "Fn::FindInMap":
            name, top, second = (self.resolve(a) for a in arg[:3])
            mapping = (self.template.get("Mappings") or {}).get(str(name))
            if mapping is None:
                raise KeyError(f"unknown mapping {name}")
            try:
                return mapping[_scalar(top)][_scalar(second)]
            except KeyError:
                raise KeyError(f"mapping {name} has no {top}/{second}") from None
        if fn == "Fn::Base64":
            return base64.b64encode(_scalar(self.resolve(arg)).encode()).decode()
        if fn == "Fn::GetAZs":
            return [f"{self.region}{z}" for z in "abc"]
        if fn == "Fn::Equals":
            a, b = (self.resolve(v) for v in arg)
            return _scalar(a) == _scalar(b)
        if fn == "Fn::Not":
            return not self.resolve(arg[0])
        if fn == "Fn::And":
            return all(self.resolve(v) for v in arg)
        if fn == "Fn::Or":
            return any(self.resolve(v) for v in arg)
        raise ValueError(f"unsupported intrinsic {fn}")  # pragma: no cover

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in (arg[1] or {}).items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar(variables[name])
            if "." in name and not name.startswith("AWS::"):
                lid, attr = name.split(".", 1)
                return _scalar(self.getatt(lid, attr))
            return _scalar(self.ref(name))

        return _SUB_VAR.sub(replace, str(text))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar(v) for v in value)
    if value is _NO_VALUE:
        return ""
    return str(value)


def _resolver(template: Mapping[str, Any], res: LocalResources) -> _Resolver:
    def ref(lid: str) -> Any | None:
        if lid in res.tables:
            return res.tables[lid]
        if lid in res.queues:
            return res.queues[lid]
        if lid in res.secrets:
            return res.secrets[lid]
        return None

    def getatt(lid: str, attr: str) -> Any | None:
        if lid in res.tables:
            if attr == "Arn":
                return res.table_arn(lid)
            if attr == "StreamArn":
                return f"{res.table_arn(lid)}/stream/local"
        if lid in res.queues:
            if attr == "Arn":
                return res.queue_arns[lid]
            if attr == "QueueUrl":
                return res.queues[lid]
            if attr == "QueueName":
                return res.queues[lid].rstrip("/").rsplit("/", 1)[-1]
        if lid in res.secrets and attr == "Id":
            return res.secrets[lid]
        return None

    return _Resolver(
        template,
        res.parameters,
        region=res.region,
        account_id=res.account_id,
        prefix=res.prefix,
        ref=ref,
        getatt=getatt,
    )


def resolve_value(template: Mapping[str, Any], value: Any, res: LocalResources) -> Any:
    """Any template value with its intrinsics resolved against the local resources
    (`AWS::NoValue` items are dropped)."""
    out = _resolver(template, res).resolve(copy.deepcopy(value))
    return None if out is _NO_VALUE else out


# ------------------------------------------------------------------------------------ creation


@functools.cache
def _session() -> Any:
    # One session per process: a new one reloads botocore's service models (~0.1 s a client).
    return boto3.session.Session()


def _client(service: str, *, endpoint_url: str | None, region: str) -> Any:
    kwargs: dict[str, Any] = {"region_name": region}
    session = _session()
    if endpoint_url is not None:
        kwargs["endpoint_url"] = endpoint_url
        if session.get_credentials() is None:  # a local endpoint takes any credentials
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")  # nosec B106 # moto
    return session.client(service, **kwargs)


def create_resources(
    template: Mapping[str, Any],
    *,
    endpoint_url: str | None,
    region: str = "us-east-1",
    prefix: str = "gnomon-",
    parameter_overrides: Mapping[str, Any] | None = None,
) -> LocalResources:
    """Create (or reuse) every table, queue and secret the template declares.

    Tables: AttributeDefinitions, KeySchema, GlobalSecondaryIndexes, BillingMode, streams and SSE
    as declared; TTL via UpdateTimeToLive, point-in-time recovery via UpdateContinuousBackups;
    deletion protection is not applied locally. An existing table is reused, and indexes the
    template has gained since are added; a table whose key schema differs raises RuntimeError.
    Queues: dead-letter queues first, attributes as declared (RedrivePolicy pointing at the local
    DLQ ARN); an existing queue gets the declared attributes again. Secrets: see the module doc.
    `endpoint_url` None uses the default boto3 clients (run it under `moto.mock_aws()`)."""
    params = resolve_parameters(template, parameter_overrides)
    res = LocalResources(parameters=params, region=region, endpoint_url=endpoint_url, prefix=prefix)
    resolver = _resolver(template, res)

    ddb = _client("dynamodb", endpoint_url=endpoint_url, region=region)
    for lid, resource in resources(template, TABLE).items():
        if not resolver.enabled(resource):
            continue
        props = resolver.resolve(copy.deepcopy(resource.get("Properties") or {}))
        name = str(props.get("TableName") or f"{prefix}{lid}")
        _ensure_table(ddb, name, props)
        res.tables[lid] = name

    sqs = _client("sqs", endpoint_url=endpoint_url, region=region)
    queues = {lid: r for lid, r in resources(template, QUEUE).items() if resolver.enabled(r)}
    for lid in _dependency_order(queues):
        props = resolver.resolve(copy.deepcopy(queues[lid].get("Properties") or {}))
        name = str(props.get("QueueName") or f"{prefix}{lid}")
        if props.get("FifoQueue") in (True, "true") and not name.endswith(".fifo"):
            name += ".fifo"
        url, arn = _ensure_queue(sqs, name, props)
        res.queues[lid] = url
        res.queue_arns[lid] = arn

    declared = {lid: r for lid, r in resources(template, SECRET).items() if resolver.enabled(r)}
    if declared:
        sm = _client("secretsmanager", endpoint_url=endpoint_url, region=region)
        for lid, resource in declared.items():
            props = resolver.resolve(copy.deepcopy(resource.get("Properties") or {}))
            name = str(props.get("Name") or f"{prefix}{lid}")
            arn, value = _ensure_secret(sm, name, props, region=region, account_id=res.account_id)
            res.secrets[lid] = arn
            res.secret_values[lid] = value
    return res


_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")


def _table_request(name: str, props: Mapping[str, Any]) -> dict[str, Any]:
    req: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in props:
        req["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(kind):
            req[kind] = [{k: v for k, v in index.items() if k in _GSI_KEYS} for index in props[kind]]
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        req["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    sse = props.get("SSESpecification")
    if sse and sse.get("SSEEnabled") in (True, "true"):
        req["SSESpecification"] = {"Enabled": True}
    if props.get("Tags"):
        req["Tags"] = props["Tags"]
    if props.get("TableClass"):
        req["TableClass"] = props["TableClass"]
    return req


def _ensure_table(ddb: Any, name: str, props: Mapping[str, Any]) -> None:
    req = _table_request(name, props)
    try:
        current = ddb.describe_table(TableName=name)["Table"]
    except ddb.exceptions.ResourceNotFoundException:
        with contextlib.suppress(ddb.exceptions.ResourceInUseException):  # created meanwhile
            ddb.create_table(**req)
        current = None
    _wait_table(ddb, name)
    if current is not None:
        _reconcile_table(ddb, name, req, current)

    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") in (True, "true"):
        status = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if status.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled") in (True, "true"):
        with contextlib.suppress(ClientError):  # an emulator without backups: nothing to recover
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )


def _reconcile_table(ddb: Any, name: str, req: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    if _keys(current["KeySchema"]) != _keys(req["KeySchema"]):
        raise RuntimeError(
            f"table {name} exists with key schema {current['KeySchema']}, the template says "
            f"{req['KeySchema']}: delete the local state to rebuild it"
        )
    existing = {i["IndexName"]: i for i in current.get("GlobalSecondaryIndexes") or []}
    for index in req.get("GlobalSecondaryIndexes") or []:
        have = existing.get(index["IndexName"])
        if have is None:  # one index per UpdateTable, as DynamoDB requires
            ddb.update_table(
                TableName=name,
                AttributeDefinitions=req["AttributeDefinitions"],
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )
            _wait_table(ddb, name)
        elif _keys(have["KeySchema"]) != _keys(index["KeySchema"]):
            raise RuntimeError(
                f"index {name}.{index['IndexName']} exists with keys {have['KeySchema']}, the template "
                f"says {index['KeySchema']}: delete the local state to rebuild it"
            )


def _keys(schema: list[Mapping[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def _wait_table(ddb: Any, name: str) -> None:
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _queue_attributes(props: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in _QUEUE_ATTRIBUTES:
        if key not in props:
            continue
        value = props[key]
        out[key] = json.dumps(value) if isinstance(value, dict) else _scalar(value)
    return out


def _dependency_order(queues: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Queues another queue refers to (its DLQ) come before it."""
    deps = {lid: _references(q.get("Properties") or {}) & set(queues) - {lid} for lid, q in queues.items()}
    order: list[str] = []

    def visit(lid: str, path: tuple[str, ...]) -> None:
        if lid in order:
            return
        if lid in path:
            raise ValueError(f"queues refer to each other: {' -> '.join((*path, lid))}")
        for dep in sorted(deps[lid]):
            visit(dep, (*path, lid))
        order.append(lid)

    for lid in queues:
        visit(lid, ())
    return order


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for v in node:
            found |= _references(v)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v.split(".", 1)[0] if isinstance(v, str) else str(v[0]))
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                found |= {m.split(".", 1)[0] for m in _SUB_VAR.findall(str(text))}
                if isinstance(v, list):
                    found |= _references(v[1:])
            else:
                found |= _references(v)
    return found


def _ensure_queue(sqs: Any, name: str, props: Mapping[str, Any]) -> tuple[str, str]:
    attributes = _queue_attributes(props)
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        tags = {t["Key"]: t["Value"] for t in props.get("Tags") or []}
        url = sqs.create_queue(QueueName=name, Attributes=attributes, **({"tags": tags} if tags else {}))[
            "QueueUrl"
        ]
    else:
        mutable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
        if mutable:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _generate_secret(spec: Mapping[str, Any]) -> str:
    """A value as Secrets Manager's GenerateSecretString would make it."""
    length = int(spec.get("PasswordLength", 32))
    alphabet = ""
    if spec.get("ExcludeLowercase") not in (True, "true"):
        alphabet += string.ascii_lowercase
    if spec.get("ExcludeUppercase") not in (True, "true"):
        alphabet += string.ascii_uppercase
    if spec.get("ExcludeNumbers") not in (True, "true"):
        alphabet += string.digits
    if spec.get("ExcludePunctuation") not in (True, "true"):
        alphabet += "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    if spec.get("IncludeSpace") in (True, "true"):
        alphabet += " "
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(c for c in alphabet if c not in excluded) or string.ascii_letters
    password = "".join(_secrets.choice(alphabet) for _ in range(length))
    template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
    if template and key:
        return json.dumps({**json.loads(template), key: password})
    return password


def _ensure_secret(
    sm: Any, name: str, props: Mapping[str, Any], *, region: str, account_id: str
) -> tuple[str, str]:
    """(ARN, value) of the local secret, created on first use. Without a Secrets Manager at the
    endpoint: a stand-in ARN and a fresh value (page tokens then do not survive a restart)."""
    try:
        try:
            arn = sm.describe_secret(SecretId=name)["ARN"]
            value = sm.get_secret_value(SecretId=arn)["SecretString"]
            return arn, value
        except sm.exceptions.ResourceNotFoundException:
            pass
        value = props.get("SecretString")
        if value is None:
            value = _generate_secret(props.get("GenerateSecretString") or {})
        arn = sm.create_secret(Name=name, SecretString=str(value))["ARN"]
        return arn, str(value)
    except (ClientError, BotoCoreError):
        value = props.get("SecretString") or _generate_secret(props.get("GenerateSecretString") or {})
        return f"arn:aws:secretsmanager:{region}:{account_id}:secret:{name}-local", str(value)


# ------------------------------------------------------------------------------------ functions


def _function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    funcs = resources(template, FUNCTION)
    if logical_id not in funcs:
        raise KeyError(f"no AWS::Serverless::Function {logical_id} in the template")
    globals_ = ((template.get("Globals") or {}).get("Function")) or {}
    props = funcs[logical_id].get("Properties") or {}
    merged = {**copy.deepcopy(globals_), **copy.deepcopy(props)}
    g_vars = ((globals_.get("Environment") or {}).get("Variables")) or {}
    f_vars = ((props.get("Environment") or {}).get("Variables")) or {}
    merged["Environment"] = {"Variables": {**copy.deepcopy(g_vars), **copy.deepcopy(f_vars)}}
    return merged


def function_environment(template: Mapping[str, Any], logical_id: str, res: LocalResources) -> dict[str, str]:
    """The function's environment as the template gives it in AWS (Globals merged with its own,
    the function's winning), resolved against the local resources: tables -> table names,
    queues -> URLs, parameters -> their local values, secrets -> local ARNs. For every `X_ARN`
    variable that names a secret, `X` carries the secret's value too (see the module doc)."""
    variables = _function_properties(template, logical_id)["Environment"]["Variables"]
    resolved = _resolver(template, res).resolve(variables)
    env = {str(k): _scalar(v) for k, v in resolved.items()}
    by_arn = {arn: lid for lid, arn in res.secrets.items()}
    for key, value in list(env.items()):
        if key.endswith("_ARN") and value in by_arn:
            env.setdefault(key[: -len("_ARN")], res.secret_values[by_arn[value]])
    return env


def functions(template: Mapping[str, Any], res: LocalResources | None = None) -> dict[str, dict[str, Any]]:
    """Logical id -> {"handler", "code_uri", "timeout" (s), "memory_size" (MB), "events"}.

    Globals apply. Timeout and memory are resolved with `res.parameters` (default: the template's
    defaults). `events` is the function's `Events` as declared ({name: {"Type", "Properties"}});
    with `res` its intrinsics are resolved to local values (an SQS event's `Queue` becomes the
    local queue ARN: look it up in `res.queue_arns`), without `res` they stay as written (so
    `{"Fn::GetAtt": ["FiringQueue", "Arn"]}` names the queue's logical id)."""
    if res is None:
        resolver = _Resolver(
            template, resolve_parameters(template), region="us-east-1", account_id=LOCAL_ACCOUNT_ID, prefix=""
        )
    else:
        resolver = _resolver(template, res)
    out: dict[str, dict[str, Any]] = {}
    for lid in resources(template, FUNCTION):
        props = _function_properties(template, lid)
        events = props.get("Events") or {}
        out[lid] = {
            "handler": resolver.resolve(props.get("Handler")),
            "code_uri": resolver.resolve(props.get("CodeUri")),
            "timeout": int(resolver.resolve(props.get("Timeout", 3))),
            "memory_size": int(resolver.resolve(props.get("MemorySize", 128))),
            "events": resolver.resolve(events) if res is not None else copy.deepcopy(events),
        }
    return out
