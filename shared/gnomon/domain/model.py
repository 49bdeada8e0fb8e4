"""Resource models of the management API: definitions and schedules.

The same pydantic models validate requests (unknown fields → 422), document the OpenAPI schema
and are shared with the Python client, so the two cannot drift. Server-owned fields in a request
are dropped here (`version` and `conflict_token` survive as preconditions) so a GET body can be
sent back as a PUT.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gnomon.domain.netpolicy import check_url_literal
from gnomon.domain.spec import Spec
from gnomon.domain.timefmt import Instant

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
MAX_DOC_BYTES = 64 * 1024
PUSH_TIMEOUT_MAX = 840
TASK_TIMEOUT_MAX = 7 * 24 * 3600

Name = Annotated[str, Field(pattern=NAME_RE, description="`^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$`")]
Id = Annotated[str, Field(pattern=ID_RE, description="`^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$`")]

# Fields the server owns: never stored from a request. Preconditions are kept by the models that
# take them (`version`, `conflict_token`, `record_version`).
SERVER_OWNED = frozenset(
    {
        "version",
        "conflict_token",
        "record_version",
        "status",
        "counters",
        "info",
        "generation",
        "signing_secret",
        "created_at",
        "updated_at",
        "updated_by",
    }
)


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (what the size limits measure)."""
    import json

    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _limit_64k(value: Any) -> Any:
    if json_size(value) > MAX_DOC_BYTES:
        raise ValueError("larger than 64 KB")
    return value


Doc64 = Annotated[Any, AfterValidator(_limit_64k)]
Map64 = Annotated[dict[str, Any], AfterValidator(_limit_64k)]


class Strict(BaseModel):
    """A request model: unknown fields are errors; server-owned ones are dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_server_owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            keep = set(cls.model_fields)
            return {k: v for k, v in data.items() if k not in SERVER_OWNED or k in keep}
        return data


class Mutation(Strict):
    """Fields every mutating request may carry (CONTRACT.md §3)."""

    request_id: Id | None = Field(
        None, description="Idempotency: a replay within 24 h answers the first call."
    )
    identity: str | None = Field(None, max_length=256, description="Recorded beside the caller's principal.")


# --- definitions -------------------------------------------------------------------------------


class SecretRef(Strict):
    """A header value resolved from AWS Secrets Manager at call time."""

    secret: str = Field(pattern=r"^arn:aws[a-z-]*:secretsmanager:")


def _check_headers(headers: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
    for name, value in headers.items():
        if not HEADER_NAME_RE.match(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            raise ValueError(f"header {name!r} contains CR or LF")
    return headers


class HttpTarget(Strict):
    """POST/PUT a signed JSON body to a webhook; 2xx = success, 202 = finished later by callback."""

    type: Literal["http"]
    url: Annotated[str, AfterValidator(check_url_literal)] = Field(max_length=2048)
    method: Literal["POST", "PUT"] = "POST"
    headers: Annotated[dict[str, str | SecretRef], AfterValidator(_check_headers)] = Field(
        default_factory=dict
    )
    role_arn: None = None


class _AwsTarget(Strict):
    role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/")


class LambdaTarget(_AwsTarget):
    """Invoke a Lambda function asynchronously with the firing as its event."""

    type: Literal["lambda"]
    function_arn: str = Field(pattern=r"^arn:aws[a-z-]*:lambda:")


class SqsTarget(_AwsTarget):
    """Send the firing as a message to an SQS queue."""

    type: Literal["sqs"]
    queue_url: str = Field(pattern=r"^https://")
    message_group_id: str | None = None


class SnsTarget(_AwsTarget):
    """Publish the firing to an SNS topic."""

    type: Literal["sns"]
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")


class EventBridgeTarget(_AwsTarget):
    """Put the firing on an EventBridge bus."""

    type: Literal["eventbridge"]
    event_bus_arn: str = Field(pattern=r"^arn:aws[a-z-]*:events:")
    source: str = "gnomon"
    detail_type: str = "gnomon.firing"


class StepFunctionsTarget(_AwsTarget):
    """Start a Step Functions execution named after the run."""

    type: Literal["stepfunctions"]
    state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:")


class PythonTarget(Strict):
    """Call `module:function` in-process (only modules the deployment allows)."""

    type: Literal["python"]
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class TaskTarget(Strict):
    """Each firing becomes a leased task that external workers reserve (CONTRACT.md §8)."""

    type: Literal["task"]
    topic: Name
    sub_topic: str | None = None


Target = Annotated[
    HttpTarget
    | LambdaTarget
    | SqsTarget
    | SnsTarget
    | EventBridgeTarget
    | StepFunctionsTarget
    | PythonTarget
    | TaskTarget,
    Field(discriminator="type"),
]


class RetryPolicy(Strict):
    """Attempt n+1 starts min(initial × coefficient^(n−1), maximum) seconds after attempt n fails."""

    max_attempts: int = Field(3, ge=1, le=100)
    # int | float keeps whole numbers whole in answers (1, not 1.0), as the contract writes them
    initial_interval_seconds: int | float = Field(1, gt=0, le=3600)
    backoff_coefficient: float = Field(2.0, ge=1, le=100)
    maximum_interval_seconds: int | float = Field(300, gt=0, le=3600)
    non_retryable_errors: list[str] = Field(default_factory=list)


class HistoryMode(StrEnum):
    """Whether each firing of a definition is kept as a run. `on` (default): every firing is
    recorded as a run, exactly once. `off`: no per-firing record — the target is invoked with
    `Idempotency-Key` = the firing's run id, at least once (receivers dedupe by the key); runs,
    stats, overlap policies and `last_success_time` do not cover these firings."""

    on = "on"
    """Every firing is recorded as a run — exactly once, however often SQS delivers it — with its
    attempts, result and error, and the overlap policy applies."""
    off = "off"
    """No per-firing record (the cheapest mode): the worker checks the firing against its
    schedule (stale, paused and deleted firings are still dropped and counted), then invokes the
    target with `Idempotency-Key` = the run id it would have had, and writes nothing else.
    At-least-once: a redelivered message invokes the target again with the same key, so
    receivers dedupe by it. Runs, `recent_actions`, `/v1/stats`, the lateness metric, the
    `actions` counter and `last_success_time` know nothing of these firings; overlap policies
    and 202 callbacks do not apply (a 202 counts as done). Retries follow the retry policy
    (re-sent messages, at most 900 s apart)."""


class History(Strict):
    retention_days: int = Field(30, ge=1, le=3650)
    mode: HistoryMode = Field(
        HistoryMode.on,
        description="`on`: every firing recorded as a run, exactly once. `off`: no per-firing "
        "record, at-least-once delivery with an `Idempotency-Key` (see HistoryMode).",
    )


class NotificationEvent(StrEnum):
    failed = "failed"
    """A run ended failed or timed_out after its last attempt."""
    missed = "missed"
    """Firings fell outside the catch-up window."""
    paused_on_failure = "paused_on_failure"
    """A schedule paused itself after a failure."""
    halted = "halted"
    """An event-triggered key halted after too many failures."""


class Notification(Strict):
    on: list[NotificationEvent] = Field(min_length=1)
    sns_topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:")
    webhook_url: Annotated[str, AfterValidator(check_url_literal)] | None = None

    @model_validator(mode="after")
    def _one_destination(self) -> Notification:
        if (self.sns_topic_arn is None) == (self.webhook_url is None):
            raise ValueError("give exactly one of sns_topic_arn or webhook_url")
        return self


class Trigger(Strict):
    event_type: str = Field(min_length=1, max_length=256)


def _check_json_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is not None:
        import fastjsonschema

        try:
            fastjsonschema.compile(schema)
        except Exception as exc:  # fastjsonschema raises several types for bad schemas
            raise ValueError(f"not a valid JSON Schema: {exc}") from None
    return schema


class DefinitionBody(Mutation):
    """What a job does: its target, retry, timeout and notification settings."""

    name: Name
    description: str = Field("", max_length=4096)
    tags: list[Name] = Field(default_factory=list, max_length=50)
    target: Target
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_seconds: int | None = Field(
        None,
        ge=1,
        le=TASK_TIMEOUT_MAX,
        validate_default=True,
        description="Per attempt: 1–840 for push targets (default 60); task targets up to 7 days (the default).",
    )
    input_schema: Annotated[dict[str, Any] | None, AfterValidator(_check_json_schema)] = None
    history: History = Field(default_factory=History)
    notifications: list[Notification] = Field(default_factory=list, max_length=20)
    triggers: list[Trigger] = Field(default_factory=list, max_length=20)
    max_consecutive_failures: int = Field(5, ge=1, le=1000)

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout_for_target(cls, value: int | None, info: ValidationInfo) -> int:
        # Push targets run inside a worker Lambda (15 min at most); longer work is a task target,
        # which external workers hold for as long as its lease is extended.
        target = info.data.get("target")
        if isinstance(target, TaskTarget):
            return TASK_TIMEOUT_MAX if value is None else value
        if value is not None and value > PUSH_TIMEOUT_MAX:
            raise ValueError(
                f"at most {PUSH_TIMEOUT_MAX} s for push targets (longer work uses a task target)"
            )
        return 60 if value is None else value


class DefinitionReplace(DefinitionBody):
    """PUT body: the definition whole, optionally with the `version` it replaces."""

    version: int | None = Field(None, ge=1, description="Precondition: mismatch → 409 conflict.")


# --- schedules ---------------------------------------------------------------------------------


class OverlapPolicy(StrEnum):
    """What a firing does while an earlier run of the schedule is still running."""

    skip = "skip"
    """The firing is skipped (reason `overlap`)."""
    buffer_one = "buffer_one"
    """The first such firing waits for the running one; later ones are skipped."""
    buffer_all = "buffer_all"
    """All wait, in order, up to 1 000; beyond, reason `buffer_full`."""
    cancel_other = "cancel_other"
    """The running run is canceled; the new one starts when its attempt closes."""
    terminate_other = "terminate_other"
    """The running run is terminated at once and the new one starts at once."""
    allow_all = "allow_all"
    """Every firing starts (up to `max_concurrency`)."""


class Policies(Strict):
    overlap: OverlapPolicy = OverlapPolicy.skip
    catchup_window_seconds: int = Field(31_536_000, ge=0, le=10 * 31_536_000)
    pause_on_failure: bool = False
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    action_after_completion: Literal["none", "delete"] = "none"
    backfill_rate: int = Field(10, ge=1, le=1000, description="Backfilled runs started per second, at most.")
    retry: RetryPolicy | None = None
    timeout_seconds: int | None = Field(None, ge=1, le=TASK_TIMEOUT_MAX, description="Push targets: ≤ 840.")


class ScheduleState(Strict):
    paused: bool = False
    note: str = Field("", max_length=4096)
    paused_until: Instant | None = None
    remaining_actions: int | None = Field(None, ge=0)


class BackfillRequest(Strict):
    start: Instant
    end: Instant
    overlap: OverlapPolicy | None = None


def _not_reserved(value: str) -> str:
    if value in ("preview", "bulk"):
        raise ValueError(f"{value!r} is a reserved name")
    return value


ScheduleId = Annotated[Name, AfterValidator(_not_reserved)]


class ScheduleCreate(Mutation):
    """A schedule: spec (when) + action (definition, input) + policies + state."""

    schedule_id: ScheduleId
    group: Name = "default"
    definition: Name
    tags: list[Name] = Field(default_factory=list, max_length=50)
    memo: Map64 = Field(default_factory=dict)
    search_attributes: Map64 = Field(default_factory=dict)
    spec: Spec
    policies: Policies = Field(default_factory=Policies)
    state: ScheduleState = Field(default_factory=ScheduleState)
    input: Doc64 = Field(default_factory=dict)
    trigger_immediately: bool = False
    initial_backfill: list[BackfillRequest] = Field(default_factory=list, max_length=100)


class ScheduleUpdate(Mutation):
    """PUT: each top-level field given replaces the stored value whole; omitted ones stay."""

    schedule_id: ScheduleId | None = None
    group: Name | None = None
    definition: Name | None = None
    tags: list[Name] | None = Field(None, max_length=50)
    memo: Map64 | None = None
    search_attributes: Map64 | None = None
    spec: Spec | None = None
    policies: Policies | None = None
    state: dict[str, Any] | None = Field(None, description="Only `remaining_actions` is taken.")
    input: Doc64 = None
    conflict_token: str | None = Field(None, description="Precondition: mismatch → 409 conflict.")


class PreviewRequest(Strict):
    spec: Spec
    start: Instant
    count: int = Field(ge=1, le=1000)
    end: Instant | None = None
