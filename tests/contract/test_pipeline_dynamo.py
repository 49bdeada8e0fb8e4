"""The firing-pipeline scenarios of `tests/unit/test_pipeline.py` — duplicates, racing tickers,
a ticker dying before its advance, a worker dying after its claim, retries — and of
`tests/unit/test_deferred_record.py` (a firing claimed by its ledger write alone) again on the
pynamodb stores over moto, so exactly-once holds on the real conditional writes too."""

from __future__ import annotations

import pytest

from tests.unit import test_deferred_record, test_pipeline
from tests.unit.pipeline import Pipeline


@pytest.fixture
def p(aws: None) -> Pipeline:
    pipe = Pipeline(backend="dynamo")
    pipe.definition()
    return pipe


# Collect every scenario again here, with the dynamo-backed `p` above.
for scenarios in (test_pipeline, test_deferred_record):
    globals().update({name: fn for name, fn in vars(scenarios).items() if name.startswith("test_")})
