"""`gnomon.local.motolock`: the lock the contract suite (and the dev stack) put around moto."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from moto.dynamodb.responses import DynamoHandler

from gnomon.local import motolock


@pytest.fixture
def fake_call_action(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Replace moto's `call_action` by a probe that records whether another thread could take
    the lock while it ran; monkeypatch restores moto's own afterwards, whatever the test did."""
    seen: list[bool] = []

    def probe(self: Any) -> str:
        free: list[bool] = []

        def try_lock() -> None:
            got = motolock._LOCK.acquire(blocking=False)
            if got:
                motolock._LOCK.release()
            free.append(got)

        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
        seen.append(free[0])
        return "answer"

    monkeypatch.setattr(DynamoHandler, "call_action", probe)
    yield seen
    motolock.undo()


def test_serialise_wraps_once_and_holds_the_lock(fake_call_action: list[bool]) -> None:
    probe = DynamoHandler.__dict__["call_action"]
    motolock.serialise_moto_dynamodb()
    wrapper = DynamoHandler.__dict__["call_action"]
    motolock.serialise_moto_dynamodb()
    assert DynamoHandler.__dict__["call_action"] is wrapper
    assert wrapper.__wrapped__ is probe
    assert DynamoHandler.call_action(None) == "answer"
    assert fake_call_action == [False]  # another thread could not take the lock meanwhile
    motolock.undo()
    assert DynamoHandler.__dict__["call_action"] is probe
    motolock.undo()  # no-op
    assert DynamoHandler.__dict__["call_action"] is probe
    DynamoHandler.call_action(None)
    assert fake_call_action == [False, True]


def test_serialise_again_after_a_restore(fake_call_action: list[bool]) -> None:
    probe = DynamoHandler.__dict__["call_action"]
    motolock.serialise_moto_dynamodb()
    DynamoHandler.call_action = probe  # type: ignore[method-assign]  # e.g. a test framework's restore
    motolock.serialise_moto_dynamodb()
    assert DynamoHandler.__dict__["call_action"].__wrapped__ is probe


def test_context_manager_restores_only_its_own_patch(fake_call_action: list[bool]) -> None:
    probe = DynamoHandler.__dict__["call_action"]
    with motolock.serialised_moto_dynamodb():
        wrapper = DynamoHandler.__dict__["call_action"]
        assert wrapper.__wrapped__ is probe
        with motolock.serialised_moto_dynamodb():
            assert DynamoHandler.__dict__["call_action"] is wrapper
        assert DynamoHandler.__dict__["call_action"] is wrapper
    assert DynamoHandler.__dict__["call_action"] is probe
    motolock.serialise_moto_dynamodb()
    with motolock.serialised_moto_dynamodb():
        pass
    assert DynamoHandler.__dict__["call_action"].__wrapped__ is probe
