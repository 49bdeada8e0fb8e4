"""The event-stream scenarios of `tests/unit/test_events.py` — order per key, event-id dedup,
halt after N failed runs, restart, repair, the sweep — again on the pynamodb stores over moto
(events, runs, schedules, catalog), so they hold on the real conditional writes too."""

from __future__ import annotations

import inspect

import pytest

from tests.unit import test_events as scenarios
from tests.unit.pipeline import Pipeline


@pytest.fixture
def p(aws: None) -> Pipeline:
    pipe = scenarios.event_pipeline("dynamo")
    from gnomon.adapters.events_dynamo import DynamoEventStore

    assert isinstance(pipe.s.events.store, DynamoEventStore)
    return pipe


# Collect every scenario that runs on a pipeline again here, with the dynamo-backed `p` above.
globals().update(
    {
        name: fn
        for name, fn in vars(scenarios).items()
        if name.startswith("test_") and "p" in inspect.signature(fn).parameters
    }
)
