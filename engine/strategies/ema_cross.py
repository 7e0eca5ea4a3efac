"""``ema_cross``: the built-in trend follower. EMA(fast) crossing EMA(slow) on time bars, filtered by RSI.

Per symbol, trades feed a ``BarBuilder`` (``bar_ms``); each completed bar updates EMA(fast), EMA(slow)
and RSI(rsi_period) from ``engine.kernels``. When the fast EMA crosses above the slow one and the RSI is
below ``rsi_overbought``, the strategy goes long (closing a short first with a reduce-only order); when
it crosses below and the RSI is above ``rsi_oversold``, it goes short. Entries carry a stop-loss and a
take-profit ``stop_bps`` / ``take_profit_bps`` away from the last trade price (computed in ``Decimal``
from the venue's price, never from the float indicator values), so the risk manager can size them
(fixed fractional of equity risked to the stop) and the engine places the protective exits.

Parameters (``[strategy] params``): ``fast`` (12), ``slow`` (26), ``rsi_period`` (14),
``rsi_overbought`` (70), ``rsi_oversold`` (30), ``bar_ms`` (1000), ``stop_bps`` (250),
``take_profit_bps`` (500), ``qty`` (a decimal string; default none: the risk manager sizes entries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine import kernels as _kernels_module
from engine.strategies.base import Bar, Strategy, StrategyParamError, register
from engine.types import Fill, Side, Signal, TradeTick, Venue

__all__ = ["EmaCross"]

#: the kernel namespace (its names are set at import time, so the type checker sees ``Any``)
kernels: Any = _kernels_module

_ZERO = Decimal(0)


@dataclass
class _SymbolState:
    bars: Any
    fast: Any
    slow: Any
    rsi: Any
    last_price: Decimal | None = None
    position: Decimal = _ZERO
    prev_diff: float | None = None
    crosses: int = 0
    history: list[str] = field(default_factory=list)


@register
class EmaCross(Strategy):
    name = "ema_cross"

    _KNOWN = (
        "fast",
        "slow",
        "rsi_period",
        "rsi_overbought",
        "rsi_oversold",
        "bar_ms",
        "stop_bps",
        "take_profit_bps",
        "qty",
    )

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self._check_known(self._KNOWN)
        self.fast = self._int("fast", 12, lo=1, hi=10_000)
        self.slow = self._int("slow", 26, lo=2, hi=10_000)
        if self.fast >= self.slow:
            raise StrategyParamError("fast", f"must be below slow ({self.slow}), got {self.fast}")
        self.rsi_period = self._int("rsi_period", 14, lo=2, hi=10_000)
        self.rsi_overbought = self._float("rsi_overbought", 70.0, lo=0.0, hi=100.0)
        self.rsi_oversold = self._float("rsi_oversold", 30.0, lo=0.0, hi=100.0)
        if self.rsi_oversold >= self.rsi_overbought:
            raise StrategyParamError("rsi_oversold", "must be below rsi_overbought")
        self.bar_ms = self._int("bar_ms", 1_000, lo=1_000, hi=86_400_000)
        self._bracket_params()
        self._state: dict[tuple[Venue, str], _SymbolState] = {
            key: _SymbolState(
                bars=kernels.BarBuilder(interval_ms=self.bar_ms),
                fast=kernels.EMA(period=self.fast),
                slow=kernels.EMA(period=self.slow),
                rsi=kernels.RSI(period=self.rsi_period),
            )
            for key in self.symbols
        }

    # ---- hooks ------------------------------------------------------------------------------------------

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        st = self._state.get((trade.venue, trade.symbol))
        if st is None:
            return []
        st.last_price = trade.price
        out: list[Signal] = []
        for bar in st.bars.update(trade.ts_ms, float(trade.price), float(trade.qty)):
            out.extend(self.on_bar(trade.venue, trade.symbol, bar))
        return out

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        st = self._state.get((venue, symbol))
        if st is None:
            return []
        fast = st.fast.update(bar.close)
        slow = st.slow.update(bar.close)
        rsi = st.rsi.update(bar.close)
        if not (st.fast.ready and st.slow.ready and st.rsi.ready):
            return []
        diff = fast - slow
        prev, st.prev_diff = st.prev_diff, diff
        if prev is None or st.last_price is None:
            return []
        if prev <= 0.0 < diff and rsi < self.rsi_overbought:
            st.crosses += 1
            return self._go(venue, symbol, st, Side.BUY, f"ema{self.fast}>ema{self.slow} rsi {rsi:.1f}")
        if prev >= 0.0 > diff and rsi > self.rsi_oversold:
            st.crosses += 1
            return self._go(venue, symbol, st, Side.SELL, f"ema{self.fast}<ema{self.slow} rsi {rsi:.1f}")
        return []

    def on_fill(self, fill: Fill) -> list[Signal]:
        st = self._state.get((fill.venue, fill.symbol))
        if st is not None:
            st.position += fill.qty * fill.side.sign
        return []

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "symbols": {
                f"{v.value}:{s}": {
                    "position": str(st.position),
                    "crosses": st.crosses,
                    "ready": bool(st.fast.ready and st.slow.ready and st.rsi.ready),
                }
                for (v, s), st in self._state.items()
            },
        }

    # ---- internals --------------------------------------------------------------------------------------

    def _go(self, venue: Venue, symbol: str, st: _SymbolState, side: Side, why: str) -> list[Signal]:
        price = st.last_price
        assert price is not None
        if st.position * side.sign > 0:  # already in this direction
            return []
        return self._reverse_into(venue, symbol, side, st.position, price, why)
