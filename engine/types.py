"""The engine's own vocabulary: enums, instruments, orders, fills, positions, balances and events.

Everything above the adapters speaks only these types; no venue field name crosses the adapter edge.
Prices, sizes and money are ``Decimal`` (parsed from the venue's strings at the adapter edge, never from
floats); times are epoch milliseconds; all values are frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "Balance",
    "BalanceUpdate",
    "BookHealth",
    "BookUpdate",
    "EngineState",
    "Fill",
    "FundingPayment",
    "Instrument",
    "MarginMode",
    "MarkPrice",
    "MarketEvent",
    "Order",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Position",
    "PositionSide",
    "PositionUpdate",
    "Side",
    "Signal",
    "TimeInForce",
    "TradeTick",
    "TriggerBy",
    "UserEvent",
    "Venue",
    "VenueStatus",
]


class Venue(StrEnum):
    BINANCE = "binance"  # USD-M futures
    BYBIT = "bybit"  # v5, category linear


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"
    STOP_MARKET = "stop_market"
    TAKE_PROFIT_MARKET = "take_profit_market"


class TimeInForce(StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    POST_ONLY = "post_only"


class TriggerBy(StrEnum):
    MARK = "mark"
    LAST = "last"


class OrderStatus(StrEnum):
    PENDING = "pending"  # sent, not yet acknowledged by the venue
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNTRIGGERED = "untriggered"  # a conditional order waiting for its trigger

    @property
    def is_open(self) -> bool:
        return self in _OPEN


_OPEN = frozenset(
    {OrderStatus.PENDING, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED}
)


class PositionSide(StrEnum):
    BOTH = "both"  # one-way mode
    LONG = "long"  # hedge mode
    SHORT = "short"


class MarginMode(StrEnum):
    CROSS = "cross"
    ISOLATED = "isolated"


class EngineState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    EMERGENCY_STOPPED = "emergency_stopped"
    STOPPING = "stopping"


class BookHealth(StrEnum):
    """A symbol's local book, as the risk manager sees it: only ``LIVE`` accepts new entries."""

    SYNCING = "syncing"  # waiting for the first snapshot
    LIVE = "live"
    RESYNCING = "resyncing"  # a gap was seen; a new snapshot is on its way
    STALE = "stale"  # no update within the configured time
    CROSSED = "crossed"  # the venue sent data that would cross the book; resyncing


@dataclass(frozen=True, kw_only=True)
class Instrument:
    """A linear perpetual's trading rules on one venue."""

    venue: Venue
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal  # quantity step
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_leverage: int

    def round_price(self, price: Decimal, side: Side | None = None) -> Decimal:
        """The price on the tick grid: towards the passive side for a side (buys down, sells up),
        to the nearest tick otherwise (half-even)."""
        steps = price / self.tick_size
        if side is Side.BUY:
            steps = steps.to_integral_value(rounding=ROUND_FLOOR)
        elif side is Side.SELL:
            steps = steps.to_integral_value(rounding=ROUND_CEILING)
        else:
            steps = steps.to_integral_value()
        return (steps * self.tick_size).quantize(self.tick_size)

    def round_qty(self, qty: Decimal) -> Decimal:
        """The quantity on the lot grid, rounded down (never more than asked)."""
        steps = (qty / self.lot_size).to_integral_value(rounding=ROUND_DOWN)
        return (steps * self.lot_size).quantize(self.lot_size)


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    """What the engine asks an adapter to send. ``client_order_id`` is always the engine's own."""

    venue: Venue
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    client_order_id: str
    price: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH
    trigger_price: Decimal | None = None
    trigger_by: TriggerBy = TriggerBy.MARK
    close_position: bool = False


@dataclass(frozen=True, kw_only=True)
class Order:
    """An order's state as last reported by the venue."""

    venue: Venue
    symbol: str
    client_order_id: str
    venue_order_id: str
    side: Side
    type: OrderType
    tif: TimeInForce
    qty: Decimal
    price: Decimal | None
    filled_qty: Decimal
    avg_price: Decimal
    status: OrderStatus
    reduce_only: bool
    position_side: PositionSide
    trigger_price: Decimal | None
    ts_ms: int
    reason: str = ""  # the venue's reject/expire/cancel reason, when it gave one


@dataclass(frozen=True, kw_only=True)
class Fill:
    venue: Venue
    symbol: str
    client_order_id: str
    venue_order_id: str
    trade_id: str
    side: Side
    position_side: PositionSide
    price: Decimal
    qty: Decimal
    fee: Decimal  # positive = paid
    fee_asset: str
    is_maker: bool
    realized_pnl: Decimal  # as the venue reports it for this fill
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class Position:
    venue: Venue
    symbol: str
    side: PositionSide
    qty: Decimal  # signed: negative is short (hedge-mode SHORT positions are negative too)
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    leverage: int
    margin_mode: MarginMode
    liquidation_price: Decimal
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class Balance:
    venue: Venue
    asset: str
    wallet_balance: Decimal
    available_balance: Decimal
    unrealized_pnl: Decimal
    ts_ms: int


# ---- events an adapter delivers ------------------------------------------------------------------------


class BookUpdate(NamedTuple):
    """The local book of ``symbol`` changed (read it from the adapter's book); carries the touch.

    A ``NamedTuple`` rather than a frozen dataclass: one is built per depth message on the hot path, and
    positional tuple construction costs a quarter of a frozen dataclass's ``__init__``. Still immutable;
    fields by name as everywhere else.
    """

    venue: Venue
    symbol: str
    best_bid_ticks: int  # 0 when the side is empty
    best_ask_ticks: int
    ts_ms: int  # venue event time
    recv_ns: int  # local monotonic receive time (time.perf_counter_ns), for latency measurement


@dataclass(frozen=True, kw_only=True)
class TradeTick:
    venue: Venue
    symbol: str
    trade_id: str
    price: Decimal
    qty: Decimal
    aggressor: Side
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class MarkPrice:
    venue: Venue
    symbol: str
    mark_price: Decimal
    index_price: Decimal
    funding_rate: Decimal
    next_funding_ms: int
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class VenueStatus:
    """A change in a venue connection or a book's health (disconnect, reconnect, resync, stale...)."""

    venue: Venue
    stream: str  # "public", "private", or "book:<SYMBOL>"
    status: str  # "connected", "disconnected", or a BookHealth value
    detail: str
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class OrderUpdate:
    order: Order
    fill: Fill | None  # set when this update is an execution


@dataclass(frozen=True, kw_only=True)
class PositionUpdate:
    position: Position


@dataclass(frozen=True, kw_only=True)
class BalanceUpdate:
    balance: Balance
    reason: str  # "order", "funding", "deposit", "liquidation", "reconcile", ...


@dataclass(frozen=True, kw_only=True)
class FundingPayment:
    venue: Venue
    symbol: str
    amount: Decimal  # positive = received
    ts_ms: int


MarketEvent = BookUpdate | TradeTick | MarkPrice | VenueStatus
UserEvent = OrderUpdate | PositionUpdate | BalanceUpdate | FundingPayment


@dataclass(frozen=True, kw_only=True)
class Signal:
    """A strategy's intent. Without ``qty`` the risk manager sizes it by the configured rule."""

    venue: Venue
    symbol: str
    side: Side
    type: OrderType = OrderType.MARKET
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop_bps: int | None = None
    reduce_only: bool = False
    confidence: float = 1.0
    reason: str = ""
    strategy: str = ""
