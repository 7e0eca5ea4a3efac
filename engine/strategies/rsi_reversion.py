"""``rsi_reversion``: RSI mean reversion on time bars.

Per bar, RSI(rsi_period) from ``engine.kernels`` is updated on the close. When the RSI crosses below
``oversold`` (previous bar at or above it) the strategy goes long; when it crosses above ``overbought``
it goes short (closing the other side first). A long is closed when the RSI rises to ``exit_level`` or
above, a short when it falls to ``exit_level`` or below. The first ready bar only records the RSI (a
cross needs a previous value). Entries and exits: see :mod:`engine.strategies.bar_strategy`.

Parameters: ``rsi_period`` (14), ``oversold`` (30), ``overbought`` (70), ``exit_level`` (50; strictly
between the two), and the common ``bar_ms``, ``stop_bps``, ``take_profit_bps``, ``qty``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.strategies.bar_strategy import Action, BarStrategy, Verdict, kernels
from engine.strategies.base import Bar, StrategyParamError, register
from engine.types import Side

__all__ = ["RsiReversion"]


@dataclass(slots=True)
class _State:
    rsi: Any
    prev: float | None = None


@register
class RsiReversion(BarStrategy):
    name = "rsi_reversion"
    PARAMS = ("rsi_period", "oversold", "overbought", "exit_level")

    def configure(self) -> None:
        self.rsi_period = self._int("rsi_period", 14, lo=2, hi=10_000)
        self.oversold = self._float("oversold", 30.0, lo=0.0, hi=100.0)
        self.overbought = self._float("overbought", 70.0, lo=0.0, hi=100.0)
        if self.oversold >= self.overbought:
            raise StrategyParamError("oversold", f"must be below overbought ({self.overbought})")
        self.exit_level = self._float("exit_level", 50.0, lo=0.0, hi=100.0)
        if not self.oversold < self.exit_level < self.overbought:
            raise StrategyParamError(
                "exit_level", f"must be between oversold and overbought, got {self.exit_level}"
            )

    def make_state(self) -> _State:
        return _State(rsi=kernels.RSI(period=self.rsi_period))

    def decide(self, state: Any, bar: Bar, position: Decimal) -> Verdict | None:
        s: _State = state
        rsi = float(s.rsi.update(bar.close))
        if not s.rsi.ready:
            return None
        prev, s.prev = s.prev, rsi
        if position > 0 and rsi >= self.exit_level:
            return Verdict(Action.EXIT, None, f"rsi {rsi:.1f} >= {self.exit_level:g}")
        if position < 0 and rsi <= self.exit_level:
            return Verdict(Action.EXIT, None, f"rsi {rsi:.1f} <= {self.exit_level:g}")
        if prev is None:
            return None
        if prev >= self.oversold > rsi:
            return Verdict(Action.ENTER, Side.BUY, f"rsi {rsi:.1f} < {self.oversold:g}")
        if prev <= self.overbought < rsi:
            return Verdict(Action.ENTER, Side.SELL, f"rsi {rsi:.1f} > {self.overbought:g}")
        return None

    def describe(self, state: Any) -> dict[str, object]:
        s: _State = state
        return {"ready": bool(s.rsi.ready)}
