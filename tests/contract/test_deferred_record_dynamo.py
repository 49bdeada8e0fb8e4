"""The scenarios of `tests/unit/test_deferred_record.py` — a firing claimed by its ledger write
alone, written once at its attempt's end or recorded earlier for whoever asks — again on the
pynamodb stores over moto (runs listed through the batch pages and the time index)."""

from __future__ import annotations

import pytest

from tests.unit import test_deferred_record as scenarios
from tests.unit.pipeline import Pipeline


@pytest.fixture
def p(aws: None) -> Pipeline:
    pipe = Pipeline(backend="dynamo")
    pipe.definition()
    return pipe


# Collect every scenario again here, with the dynamo-backed `p` above.
globals().update({name: fn for name, fn in vars(scenarios).items() if name.startswith("test_")})
