"""The engine's state machine: exactly the transitions of DESIGN.md's table; anything else raises
InvalidTransition (and ControlError("invalid_transition") on the control interface)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from engine.config import load_config
from engine.control import ControlError
from engine.engine import TRANSITIONS, TradingEngine
from engine.errors import EngineError, InvalidTransition
from engine.types import EngineState, Venue
from tests.engine import Quiet, write_config

S = EngineState


def _engine(tmp_path: Path) -> TradingEngine:
    cfg = load_config(write_config(tmp_path / "e.toml", risk={}, state_dir=tmp_path / "var"))
    symbols = ((Venue.BINANCE, "BTCUSDT"),)
    return TradingEngine(config=cfg, settings=[], strategy=Quiet(params={}, symbols=symbols))


def _force(e: TradingEngine, state: EngineState) -> None:
    e._state = state


def test_transitions_when_table_read_then_exactly_the_design() -> None:
    assert TRANSITIONS[S.STOPPED] == {S.STARTING}
    assert TRANSITIONS[S.RUNNING] == {S.PAUSED, S.EMERGENCY_STOPPED, S.STOPPING}
    assert TRANSITIONS[S.PAUSED] == {S.RUNNING, S.EMERGENCY_STOPPED, S.STOPPING}
    assert TRANSITIONS[S.EMERGENCY_STOPPED] == {S.PAUSED, S.STOPPING}  # reset lands in paused only
    assert TRANSITIONS[S.STOPPING] == {S.STOPPED}


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(list(S), list(S))))
def test_transition_when_not_in_table_then_invalid_transition(tmp_path: Path, frm: S, to: S) -> None:
    e = _engine(tmp_path)
    _force(e, frm)
    events: list[dict[str, object]] = []
    e._subscribers.append(_Collect(events))  # type: ignore[arg-type]
    if to in TRANSITIONS[frm]:
        e.transition(to, "test")
        assert e.state is to and e.state_reason == "test"
        assert e.counters[f"transitions_to_{to.value}"] == 1
    else:
        with pytest.raises(InvalidTransition) as exc:
            e.transition(to, "test")
        assert isinstance(exc.value, EngineError)
        assert (exc.value.from_state, exc.value.to_state) == (frm.value, to.value)
        assert e.state is frm


class _Collect:
    """Stands in for a subscriber queue."""

    def __init__(self, out: list[dict[str, object]]) -> None:
        self.out = out

    def full(self) -> bool:
        return False

    def put_nowait(self, item: dict[str, object]) -> None:
        self.out.append(item)


async def test_control_when_illegal_then_control_error_invalid_transition(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    for call in (e.pause(), e.resume(), e.reset(), e.emergency_stop()):
        with pytest.raises(ControlError) as exc:
            await call
        assert exc.value.code == "invalid_transition"
    _force(e, S.RUNNING)
    with pytest.raises(ControlError):
        await e.resume()
    with pytest.raises(ControlError):
        await e.reset()
    assert (await e.pause())["state"] == "paused"
    with pytest.raises(ControlError):
        await e.pause()
    assert (await e.resume())["state"] == "running"


async def test_transition_when_made_then_published_with_cause(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    _force(e, S.RUNNING)
    events: list[dict[str, object]] = []
    e._subscribers.append(_Collect(events))  # type: ignore[arg-type]
    e.transition(S.PAUSED, "operator: test")
    assert events[0]["event"] == "state"
    assert (events[0]["from"], events[0]["to"], events[0]["cause"]) == ("running", "paused", "operator: test")
