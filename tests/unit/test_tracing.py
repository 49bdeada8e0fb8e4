"""SDK tracing is opt-in: without GNOMON_TRACE_SDK=true no handler imports aws_xray_sdk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gnomon import tracing

REPO = Path(__file__).resolve().parents[2]


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"echo": event}


def test_off_by_default_the_handler_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.TRACE_SDK_ENV, raising=False)
    assert tracing.capture_lambda_handler(_handler) is _handler
    monkeypatch.setenv(tracing.TRACE_SDK_ENV, "false")
    assert tracing.capture_lambda_handler(_handler) is _handler


def test_on_the_handler_runs_under_powertools_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tracing.TRACE_SDK_ENV, "True")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
    wrapped = tracing.capture_lambda_handler(_handler)
    assert wrapped is not _handler
    assert wrapped({"a": 1}, None) == {"echo": {"a": 1}}


@pytest.mark.parametrize("name", ["api", "ticker", "worker"])
def test_importing_a_handler_loads_no_xray_sdk(name: str) -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('h', {str(REPO / 'functions' / name / 'app.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(sorted({k.split('.')[0] for k in sys.modules} & {'aws_xray_sdk', 'botocore', 'boto3'}))\n"
    )
    env = {"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "shared")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "aws_xray_sdk" not in out.stdout
