"""Builders shared by the strategy tests: bars, trades, fills, book updates."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from engine import kernels as _kernels
from engine.types import BookUpdate, Fill, PositionSide, Side, Signal, TradeTick, Venue

__all__ = ["BTC", "ETH", "bar", "bars_from_closes", "book_update", "feed", "fill", "trade"]

kernels: Any = _kernels
BTC = (Venue.BINANCE, "BTCUSDT")
ETH = (Venue.BINANCE, "ETHUSDT")


def bar(i: int, close: float, *, high: float | None = None, low: float | None = None) -> Any:
    hi = close + 0.5 if high is None else high
    lo = close - 0.5 if low is None else low
    return kernels.Bar(i * 1000, (i + 1) * 1000, close, hi, lo, close, 1.0, 1, close, close)


def bars_from_closes(closes: Sequence[float]) -> list[Any]:
    return [bar(i, c) for i, c in enumerate(closes)]


def feed(strategy: Any, bars: Sequence[Any], key: tuple[Venue, str] = BTC) -> dict[int, list[Signal]]:
    """Bar index -> the signals on_bar returned there (only non-empty ones)."""
    out: dict[int, list[Signal]] = {}
    for i, b in enumerate(bars):
        got = strategy.on_bar(key[0], key[1], b)
        if got:
            out[i] = got
    return out


def trade(price: str, ts_ms: int, *, qty: str = "1", key: tuple[Venue, str] = BTC, tid: int = 0) -> TradeTick:
    return TradeTick(
        venue=key[0],
        symbol=key[1],
        trade_id=str(tid),
        price=Decimal(price),
        qty=Decimal(qty),
        aggressor=Side.BUY,
        ts_ms=ts_ms,
    )


def fill(side: Side, qty: str, *, key: tuple[Venue, str] = BTC, price: str = "100") -> Fill:
    return Fill(
        venue=key[0],
        symbol=key[1],
        client_order_id="c1",
        venue_order_id="v1",
        trade_id="t1",
        side=side,
        position_side=PositionSide.BOTH,
        price=Decimal(price),
        qty=Decimal(qty),
        fee=Decimal(0),
        fee_asset="USDT",
        is_maker=False,
        realized_pnl=Decimal(0),
        ts_ms=0,
    )


def book_update(bid_ticks: int, ask_ticks: int, ts_ms: int, key: tuple[Venue, str] = BTC) -> BookUpdate:
    return BookUpdate(key[0], key[1], bid_ticks, ask_ticks, ts_ms, 0)
