"""The phase-index scenarios of `tests/unit/test_phase_index.py` that hinge on conditional
writes and index reads — an entry shown late, a ticker dying before its watermark moves, two
tickers in one window, a schedule handed back, a pause, an update — again on the pynamodb
stores over moto."""

from __future__ import annotations

import pytest

from tests.unit import test_phase_index as scenarios
from tests.unit.pipeline import Pipeline


@pytest.fixture
def p(aws: None) -> Pipeline:
    pipe = Pipeline(horizon=900.0, backend="dynamo")
    pipe.definition()
    return pipe


test_an_entry_the_phase_index_shows_late_loses_no_firing = (
    scenarios.test_an_entry_the_phase_index_shows_late_loses_no_firing
)
test_a_ticker_dying_before_its_watermark_moves_and_two_tickers_racing_run_each_firing_once = (
    scenarios.test_a_ticker_dying_before_its_watermark_moves_and_two_tickers_racing_run_each_firing_once
)
test_two_tickers_in_the_same_window_conflict_on_the_watermark_and_each_firing_runs_once = (
    scenarios.test_two_tickers_in_the_same_window_conflict_on_the_watermark_and_each_firing_runs_once
)
test_a_schedule_a_window_cannot_plan_goes_back_to_the_due_index_and_the_others_move_on = (
    scenarios.test_a_schedule_a_window_cannot_plan_goes_back_to_the_due_index_and_the_others_move_on
)
test_pausing_a_phased_schedule_keeps_the_cursor_at_its_watermark = (
    scenarios.test_pausing_a_phased_schedule_keeps_the_cursor_at_its_watermark
)
test_an_update_moves_the_schedule_to_its_new_phase_and_drops_the_old_firings = (
    scenarios.test_an_update_moves_the_schedule_to_its_new_phase_and_drops_the_old_firings
)
