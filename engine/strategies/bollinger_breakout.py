"""``bollinger_breakout``: trade closes breaking out of the Bollinger bands on time bars.

Per bar, ``Bollinger(period, k)`` from ``engine.kernels`` is updated on the close. When a close ends
above the upper band after the previous close was at or below the previous upper band, the strategy
goes long; when a close ends below the lower band after the previous close was at or above the previous
lower band, it goes short (closing the other side first). With ``exit_at_middle`` (default true) a long
is closed when a close falls below the middle band and a short when one rises above it. The first ready
bar only records the bands. Entries and exits: see :mod:`engine.strategies.bar_strategy`.

Parameters: ``period`` (20), ``k`` (2.0), ``exit_at_middle`` (true), and the common ``bar_ms``,
``stop_bps``, ``take_profit_bps``, ``qty``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.strategies.bar_strategy import Action, BarStrategy, Verdict, kernels
from engine.strategies.base import Bar, StrategyParamError, register
from engine.types import Side

__all__ = ["BollingerBreakout"]


@dataclass(slots=True)
class _State:
    bb: Any
    prev_close: float | None = None
    prev_upper: float = 0.0
    prev_lower: float = 0.0


@register
class BollingerBreakout(BarStrategy):
    name = "bollinger_breakout"
    PARAMS = ("period", "k", "exit_at_middle")

    def configure(self) -> None:
        self.period = self._int("period", 20, lo=2, hi=10_000)
        self.k = self._float("k", 2.0, lo=0.01, hi=100.0)
        exit_at_middle = self.params.get("exit_at_middle", True)
        if not isinstance(exit_at_middle, bool):
            raise StrategyParamError("exit_at_middle", f"must be true or false, got {exit_at_middle!r}")
        self.exit_at_middle = exit_at_middle

    def make_state(self) -> _State:
        return _State(bb=kernels.Bollinger(period=self.period, k=self.k))

    def decide(self, state: Any, bar: Bar, position: Decimal) -> Verdict | None:
        s: _State = state
        s.bb.update(bar.close)
        if not s.bb.ready:
            return None
        close = float(bar.close)
        upper, middle, lower = float(s.bb.upper), float(s.bb.middle), float(s.bb.lower)
        prev, prev_up, prev_lo = s.prev_close, s.prev_upper, s.prev_lower
        s.prev_close, s.prev_upper, s.prev_lower = close, upper, lower
        if prev is None:
            return None
        if prev <= prev_up and close > upper:
            return Verdict(Action.ENTER, Side.BUY, f"close {close:.6g} > upper {upper:.6g}")
        if prev >= prev_lo and close < lower:
            return Verdict(Action.ENTER, Side.SELL, f"close {close:.6g} < lower {lower:.6g}")
        if self.exit_at_middle:
            if position > 0 and close < middle:
                return Verdict(Action.EXIT, None, f"close {close:.6g} < middle {middle:.6g}")
            if position < 0 and close > middle:
                return Verdict(Action.EXIT, None, f"close {close:.6g} > middle {middle:.6g}")
        return None

    def describe(self, state: Any) -> dict[str, object]:
        s: _State = state
        return {"ready": bool(s.bb.ready)}
