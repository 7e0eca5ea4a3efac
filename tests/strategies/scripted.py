"""A scripted test strategy: on ``on_timer(t)`` it returns the signals scripted for ``t`` (params
``script = {"<t>": "buy" | "sell" | "close", ...}``, ``confidence``); it records every event it sees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.strategies import Bar, Strategy, register
from engine.strategies.base import STRATEGIES
from engine.types import BookUpdate, Fill, Side, Signal, TradeTick, Venue

__all__ = ["Scripted"]


class Scripted(Strategy):
    name = "test_scripted"

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self._check_known(("script", "confidence"))
        self.script: Mapping[str, str] = self.params.get("script", {})
        self.confidence = self._float("confidence", 1.0, lo=0.0, hi=1.0)
        self.seen: list[object] = []

    def on_timer(self, now_ms: int) -> list[Signal]:
        self.seen.append(("timer", now_ms))
        what = self.script.get(str(now_ms))
        if what is None:
            return []
        out = []
        for venue, symbol in self.symbols:
            side = Side.SELL if what == "sell" else Side.BUY
            out.append(
                Signal(
                    venue=venue,
                    symbol=symbol,
                    side=side,
                    reduce_only=what == "close",
                    confidence=self.confidence,
                    strategy=self.name,
                )
            )
        return out

    def on_book(self, update: BookUpdate) -> list[Signal]:
        self.seen.append(update)
        return []

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        self.seen.append(trade)
        return []

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        self.seen.append((venue, symbol, bar))
        return []

    def on_fill(self, fill: Fill) -> list[Signal]:
        self.seen.append(fill)
        return []


if Scripted.name not in STRATEGIES:
    register(Scripted)
