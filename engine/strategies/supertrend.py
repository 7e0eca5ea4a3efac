"""``supertrend``: trade the Supertrend's direction flips on time bars.

Per bar, ``Supertrend(period, multiplier)`` from ``engine.kernels`` is updated with the bar's high, low
and close. When its direction turns from down (-1) to up (+1) the strategy goes long; from up to down it
goes short (closing the other side first). The first ready bar only sets the direction (a flip needs a
previous one). Entries and exits: see :mod:`engine.strategies.bar_strategy`.

Parameters: ``period`` (10), ``multiplier`` (3.0), and the common ``bar_ms``, ``stop_bps``,
``take_profit_bps``, ``qty``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.strategies.bar_strategy import Action, BarStrategy, Verdict, kernels
from engine.strategies.base import Bar, register
from engine.types import Side

__all__ = ["SupertrendStrategy"]


@dataclass(slots=True)
class _State:
    st: Any
    prev_dir: int = 0


@register
class SupertrendStrategy(BarStrategy):
    name = "supertrend"
    PARAMS = ("period", "multiplier")

    def configure(self) -> None:
        self.period = self._int("period", 10, lo=1, hi=10_000)
        self.multiplier = self._float("multiplier", 3.0, lo=0.01, hi=100.0)

    def make_state(self) -> _State:
        return _State(st=kernels.Supertrend(period=self.period, k=self.multiplier))

    def decide(self, state: Any, bar: Bar, position: Decimal) -> Verdict | None:
        s: _State = state
        s.st.update(bar.high, bar.low, bar.close)
        if not s.st.ready:
            return None
        direction = int(s.st.direction)
        prev, s.prev_dir = s.prev_dir, direction
        if prev == 0 or prev == direction:
            return None
        line = float(s.st.value)
        if direction == 1:
            return Verdict(Action.ENTER, Side.BUY, f"supertrend up, line {line:.6g}")
        return Verdict(Action.ENTER, Side.SELL, f"supertrend down, line {line:.6g}")

    def describe(self, state: Any) -> dict[str, object]:
        s: _State = state
        return {"ready": bool(s.st.ready), "direction": s.prev_dir}
