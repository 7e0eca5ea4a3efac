"""``macd_rsi``: MACD line crossing its signal line on time bars, filtered by RSI.

Per bar, MACD(fast, slow, signal) and RSI(rsi_period) from ``engine.kernels`` are updated on the close.
When the histogram (MACD - signal) turns from <= 0 to > 0 and the RSI is below ``rsi_overbought`` the
strategy goes long; when it turns from >= 0 to < 0 and the RSI is above ``rsi_oversold`` it goes short
(closing the other side first). Nothing before both indicators are ready, and nothing on the first ready
bar (a cross needs a previous histogram). Entries and exits: see :mod:`engine.strategies.bar_strategy`.

Parameters: ``fast`` (12), ``slow`` (26), ``signal`` (9), ``rsi_period`` (14), ``rsi_overbought`` (70),
``rsi_oversold`` (30), and the common ``bar_ms``, ``stop_bps``, ``take_profit_bps``, ``qty``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.strategies.bar_strategy import Action, BarStrategy, Verdict, kernels
from engine.strategies.base import Bar, StrategyParamError, register
from engine.types import Side

__all__ = ["MacdRsi"]


@dataclass(slots=True)
class _State:
    macd: Any
    rsi: Any
    prev_hist: float | None = None


@register
class MacdRsi(BarStrategy):
    name = "macd_rsi"
    PARAMS = ("fast", "slow", "signal", "rsi_period", "rsi_overbought", "rsi_oversold")

    def configure(self) -> None:
        self.fast = self._int("fast", 12, lo=1, hi=10_000)
        self.slow = self._int("slow", 26, lo=2, hi=10_000)
        if self.fast >= self.slow:
            raise StrategyParamError("fast", f"must be below slow ({self.slow}), got {self.fast}")
        self.signal = self._int("signal", 9, lo=1, hi=10_000)
        self.rsi_period = self._int("rsi_period", 14, lo=2, hi=10_000)
        self.rsi_overbought = self._float("rsi_overbought", 70.0, lo=0.0, hi=100.0)
        self.rsi_oversold = self._float("rsi_oversold", 30.0, lo=0.0, hi=100.0)
        if self.rsi_oversold >= self.rsi_overbought:
            raise StrategyParamError("rsi_oversold", "must be below rsi_overbought")

    def make_state(self) -> _State:
        return _State(
            macd=kernels.MACD(fast=self.fast, slow=self.slow, signal=self.signal),
            rsi=kernels.RSI(period=self.rsi_period),
        )

    def decide(self, state: Any, bar: Bar, position: Decimal) -> Verdict | None:
        st: _State = state
        st.macd.update(bar.close)
        rsi = st.rsi.update(bar.close)
        if not (st.macd.ready and st.rsi.ready):
            return None
        hist = float(st.macd.hist)
        prev, st.prev_hist = st.prev_hist, hist
        if prev is None:
            return None
        if prev <= 0.0 < hist and rsi < self.rsi_overbought:
            return Verdict(Action.ENTER, Side.BUY, f"macd>signal hist {hist:.6g} rsi {rsi:.1f}")
        if prev >= 0.0 > hist and rsi > self.rsi_oversold:
            return Verdict(Action.ENTER, Side.SELL, f"macd<signal hist {hist:.6g} rsi {rsi:.1f}")
        return None

    def describe(self, state: Any) -> dict[str, object]:
        st: _State = state
        return {"ready": bool(st.macd.ready and st.rsi.ready)}
