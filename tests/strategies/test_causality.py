"""No look-ahead and determinism, for every built-in: a strategy's signals up to an event depend only on
the events delivered so far (changing everything after a cut changes nothing before it), and the same
events give the same signals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.strategies import create

from .helpers import BTC, trade

BUILTINS: dict[str, dict[str, Any]] = {
    "ema_cross": {"fast": 3, "slow": 8, "rsi_period": 4, "rsi_overbought": 95, "rsi_oversold": 5},
    "macd_rsi": {"fast": 3, "slow": 8, "signal": 3, "rsi_period": 4, "rsi_overbought": 95, "rsi_oversold": 5},
    "supertrend": {"period": 4, "multiplier": 1.0},
    "rsi_reversion": {"rsi_period": 4, "oversold": 40, "overbought": 60},
    "bollinger_breakout": {"period": 6, "k": 1.0},
    "ensemble": {
        "threshold": 0.5,
        "members": [
            {"name": "supertrend", "params": {"period": 4, "multiplier": 1.0}},
            {
                "name": "macd_rsi",
                "params": {"fast": 3, "slow": 8, "signal": 3, "rsi_overbought": 95, "rsi_oversold": 5},
            },
        ],
    },
}


def run(name: str, prices: list[float]) -> list[tuple[int, str, str, bool, str]]:
    s = create(name, params=BUILTINS[name], symbols=[BTC])
    out = []
    for i, p in enumerate(prices):
        for sig in s.on_trade(trade(f"{p:.1f}", i * 1000 + 1, tid=i)):
            out.append((i, sig.side.value, str(sig.qty), sig.reduce_only, str(sig.stop_loss)))
    return out


steps = st.lists(st.integers(-30, 30), min_size=40, max_size=120)


@pytest.mark.parametrize("name", sorted(BUILTINS))
@settings(max_examples=15, deadline=None)
@given(head=steps, tail_a=steps, tail_b=steps)
def test_when_future_events_differ_then_signals_before_the_cut_are_identical(
    name: str, head: list[int], tail_a: list[int], tail_b: list[int]
) -> None:
    def path(s: list[int]) -> list[float]:
        return [max(1.0, 1000.0 + x / 10.0) for x in np.cumsum(s).tolist()]

    a = path(head + tail_a)
    b = path(head + tail_b)
    cut = len(head)
    # the bar ending at the cut is completed by the first trade after it: compare strictly before
    before_a = [x for x in run(name, a) if x[0] < cut]
    before_b = [x for x in run(name, b) if x[0] < cut]
    assert before_a == before_b == [x for x in run(name, a[:cut]) if x[0] < cut]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_when_same_events_then_same_signals(name: str) -> None:
    rng = np.random.default_rng(7)
    prices = (1000.0 + np.cumsum(rng.normal(0, 3, 400))).round(1).tolist()
    first = run(name, prices)
    assert first == run(name, prices)
    assert first, f"{name} produced no signal on 400 noisy bars; the test would prove nothing"
