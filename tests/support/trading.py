"""The signals of the test strategies that trade all the time (a flip between buy and sell, now and then
a resting limit buy under the market)."""

from __future__ import annotations

from decimal import Decimal

from engine.types import OrderType, Side, Signal, TradeTick

__all__ = ["flip", "rest"]


def flip(trade: TradeTick, n: int, qty: Decimal, strategy: str) -> Signal:
    """A market order on ``trade``'s symbol: a buy when ``n`` is even, else a sell."""
    return Signal(
        venue=trade.venue,
        symbol=trade.symbol,
        side=Side.BUY if n % 2 == 0 else Side.SELL,
        type=OrderType.MARKET,
        qty=qty,
        strategy=strategy,
        reason="flip",
    )


def rest(trade: TradeTick, price: Decimal, qty: Decimal, strategy: str) -> Signal:
    """A resting limit buy at ``price`` on ``trade``'s symbol."""
    return Signal(
        venue=trade.venue,
        symbol=trade.symbol,
        side=Side.BUY,
        type=OrderType.LIMIT,
        qty=qty,
        limit_price=price,
        strategy=strategy,
        reason="rest",
    )
