"""X-Ray subsegments for each handler's AWS calls, when the deployment asks for them.

Lambda's active tracing (template `Tracing: Active`) records every invocation without any SDK in
the function. Powertools' Tracer adds a subsegment per AWS call and per handler — and costs
~150–190 ms of cold start to import and patch `aws_xray_sdk` (bench/coldstart.py), more than half
the 300 ms budget. So the handlers load it only when `GNOMON_TRACE_SDK` is `true` (the template's
`TraceAwsCalls` parameter).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

TRACE_SDK_ENV = "GNOMON_TRACE_SDK"


def enabled() -> bool:
    return os.environ.get(TRACE_SDK_ENV, "").strip().lower() == "true"


def capture_lambda_handler(handler: F) -> F:
    """`handler` under Powertools' Tracer when SDK tracing is on; `handler` itself otherwise."""
    if not enabled():
        return handler
    from aws_lambda_powertools import Tracer  # imports and patches aws_xray_sdk

    wrapped: F = Tracer(service="gnomon").capture_lambda_handler(handler)
    return wrapped
