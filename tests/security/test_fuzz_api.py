"""API fuzzing with schemathesis against `/v1/openapi.json` on the real local stack (`gnomon dev`).

Every operation of the document gets generated requests — valid and invalid bodies, query strings
and path parameters — and a stateful run chains them through the links schemathesis infers
(create, then get/update/delete what was created). Two checks must hold for every answer: no 5xx,
and the body matches the schema the document declares for that status (errors included).
The budget is bounded so the module takes well under a minute on two cores.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.conftest import DevProcess, start_dev

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, response_schema_conformance]
EXAMPLES = 4  # per operation, to stay under a minute; `st run -n 40` (all phases) found nothing more
SEEDED = {"name": "fuzz-def", "schedule_id": "fuzz-sched", "group": "fuzz"}


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[DevProcess]:
    dev = start_dev(tick_seconds="1")
    try:
        _seed(dev.base_url)
        yield dev
    finally:
        assert dev.stop() == 0, dev.stderr_tail()


def _seed(base: str) -> None:
    """A definition, a schedule and a run, so that generated paths sometimes name real resources."""
    with httpx.Client(base_url=base, timeout=10) as http:
        target = {"type": "http", "url": "http://127.0.0.1:9/hook"}
        assert (
            http.post("/v1/definitions", json={"name": SEEDED["name"], "target": target}).status_code == 201
        )
        schedule = {
            "schedule_id": SEEDED["schedule_id"],
            "group": SEEDED["group"],
            "definition": SEEDED["name"],
            "spec": {"cron": ["0 0 1 1 *"]},
        }
        assert http.post("/v1/schedules", json=schedule).status_code == 201
        run = http.post(f"/v1/definitions/{SEEDED['name']}/execute", json={"run_id": "fuzz-run"})
        assert run.status_code == 201, run.text


@pytest.fixture(scope="module")
def api_schema(fuzz_stack: DevProcess) -> Any:
    schema = schemathesis.openapi.from_url(f"{fuzz_stack.base_url}/v1/openapi.json")
    schema.hook(map_path_parameters)
    return schema


_REAL = {**SEEDED, "run_id": "fuzz-run"}
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the report names the failing case
)


def map_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Half of the generated paths name the seeded resources instead of random (missing) ones."""
    if path_parameters:
        for key, real in _REAL.items():
            if key in path_parameters and zlib.crc32(str(path_parameters[key]).encode()) % 2:
                path_parameters[key] = real
    return path_parameters


def test_no_5xx_and_answers_match_the_schema(api_schema: Any) -> None:
    # One hypothesis run per operation, driven here rather than through schemathesis' pytest
    # plugin (its `from_fixture` does not run under pytest 9); every failing operation is listed.
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:

        @SETTINGS
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_stateful_sequences(api_schema: Any) -> None:
    """Create → read → update → delete chains through the links inferred from the document."""
    machine = api_schema.as_state_machine()
    machine.TestCase.settings = settings(
        SETTINGS, max_examples=8, stateful_step_count=8, phases=[Phase.generate]
    )

    def validate_response(self: Any, response: Any, case: Any, **kwargs: Any) -> None:
        case.validate_response(response, checks=CHECKS)

    machine.validate_response = validate_response
    machine.TestCase().runTest()


# Boundary values for every parameter, as schemathesis' (slow) coverage phase would send them:
# `st run` with --phases coverage found the empty-filter 500s this catches.
EDGE_QUERY = ["", " ", "%", "..", "a" * 300, "-1", "1e309", "é", "\u0000", "true,false"]
EDGE_PATH = ["..", "%2F", "a" * 300, "é", "%00", "-", "preview"]
EDGE_BODY: list[Any] = [{}, [], {"unknown": 1}, {"name": ""}, {"request_id": ""}]


def _check_answer(method: str, url: str, resp: httpx.Response) -> str | None:
    if resp.status_code >= 500:
        return f"{method} {url} -> {resp.status_code} {resp.text[:200]}"
    if resp.status_code >= 400:
        err = resp.json().get("error")
        if not (isinstance(err, dict) and {"code", "message", "details"} <= set(err)):
            return f"{method} {url} -> {resp.status_code} not the contract's error shape: {resp.text[:200]}"
    return None


def test_edge_values_of_every_parameter(fuzz_stack: DevProcess) -> None:
    base = fuzz_stack.base_url
    problems: list[str] = []
    with httpx.Client(base_url=base, timeout=10) as http:
        doc = http.get("/v1/openapi.json").json()
        for path, operations in doc["paths"].items():
            for method, op in operations.items():
                params = op.get("parameters", [])
                real_path = path
                for p in params:
                    if p["in"] == "path":
                        real_path = real_path.replace("{" + p["name"] + "}", _REAL.get(p["name"], "x"))
                requests: list[tuple[str, dict[str, str], Any]] = []
                for p in params:
                    if p["in"] == "query":
                        requests += [(real_path, {p["name"]: v}, None) for v in EDGE_QUERY]
                    if p["in"] == "path":
                        for v in EDGE_PATH:
                            requests.append((path.replace("{" + p["name"] + "}", v), {}, None))
                if method in ("post", "put"):
                    requests += [(real_path, {}, body) for body in EDGE_BODY]
                for url, query, body in requests:
                    if method == "delete" and url == real_path:
                        continue  # keep the seeded resources
                    resp = http.request(method.upper(), url, params=query, json=body)
                    if problem := _check_answer(method.upper(), f"{url}?{query}", resp):
                        problems.append(problem)
    assert not problems, "\n".join(problems)


def test_openapi_declares_the_contract_error_shape(fuzz_stack: DevProcess) -> None:
    doc = httpx.get(f"{fuzz_stack.base_url}/v1/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status in ("400", "403", "404", "422"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }, (method, path, status)
            if method == "delete":
                assert "204" in op["responses"] and "200" not in op["responses"], path
