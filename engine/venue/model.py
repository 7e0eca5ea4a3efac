"""The local venue's contract: venue-agnostic types and the core exchange interface.

The venue is one process serving the Binance USD-M and Bybit v5 (linear) wire protocols on loopback,
with one exchange core behind both. The core (``engine.venue.exchange.Exchange``) knows nothing of
either wire format: it takes :class:`OrderRequest` values, keeps :class:`VenueOrder`,
:class:`Position` and :class:`AccountState` in exact ``Decimal`` (prices and sizes on the instrument's
tick and lot grid), and reports everything that happens as :data:`VenueEvent` values to its listeners.
The Binance and Bybit front-ends (``engine.venue.binance``, ``engine.venue.bybit``) translate wire
requests into calls on :class:`ExchangeCore`, rejections (:class:`VenueReject` with a
:class:`RejectReason`) into each venue's real error codes, and events into each venue's stream payloads.

Money is exact: every price, size, fee, balance and PnL here is a ``Decimal``; ids and times are ints
(times in epoch milliseconds from the core's clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

__all__ = [
    "AccountState",
    "BalanceEvent",
    "DepthEvent",
    "ExchangeCore",
    "FaultPlan",
    "Fill",
    "FundingEvent",
    "InstrumentSpec",
    "Level",
    "Listener",
    "MarginMode",
    "MarkPriceEvent",
    "OrderEvent",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Position",
    "PositionEvent",
    "PositionSide",
    "RejectReason",
    "Side",
    "TimeInForce",
    "TradeEvent",
    "TriggerBy",
    "VenueEvent",
    "VenueOrder",
    "VenueReject",
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_MARKET = "STOP_MARKET"  # triggers when the trigger price is crossed against the position
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "POST_ONLY"  # Binance GTX, Bybit PostOnly


class TriggerBy(StrEnum):
    MARK = "MARK"  # Binance workingType MARK_PRICE, Bybit triggerBy MarkPrice
    LAST = "LAST"  # Binance CONTRACT_PRICE, Bybit LastPrice


class PositionSide(StrEnum):
    BOTH = "BOTH"  # one-way mode (Bybit positionIdx 0)
    LONG = "LONG"  # hedge mode (Bybit positionIdx 1)
    SHORT = "SHORT"  # hedge mode (Bybit positionIdx 2)


class MarginMode(StrEnum):
    CROSS = "CROSS"
    ISOLATED = "ISOLATED"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"  # IOC/FOK remainder, market remainder, post-only that would take (Bybit style)
    UNTRIGGERED = "UNTRIGGERED"  # conditional order waiting for its trigger
    TRIGGERED = "TRIGGERED"  # conditional order fired (then a market child order executes)


_OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "UNTRIGGERED"})


class RejectReason(StrEnum):
    """Why the core refused a request synchronously. Front-ends map each to the venue's real code."""

    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    INVALID_PARAM = "INVALID_PARAM"  # missing/contradictory parameters (e.g. LIMIT without price)
    PRICE_OFF_TICK = "PRICE_OFF_TICK"
    PRICE_OUT_OF_RANGE = "PRICE_OUT_OF_RANGE"  # outside min/max price or the percent-price band
    QTY_OFF_STEP = "QTY_OFF_STEP"
    QTY_TOO_SMALL = "QTY_TOO_SMALL"
    QTY_TOO_LARGE = "QTY_TOO_LARGE"
    MIN_NOTIONAL = "MIN_NOTIONAL"  # reduce-only is exempt
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    REDUCE_ONLY_INCREASES = "REDUCE_ONLY_INCREASES"  # or no position to reduce
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLED = "FOK_NOT_FILLED"
    WOULD_TRIGGER_IMMEDIATELY = "WOULD_TRIGGER_IMMEDIATELY"
    DUPLICATE_CLIENT_ID = "DUPLICATE_CLIENT_ID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ORDER_CLOSED = "ORDER_CLOSED"  # cancel/amend of an order already filled/cancelled
    POSITION_SIDE_MISMATCH = "POSITION_SIDE_MISMATCH"  # BOTH in hedge mode, LONG/SHORT in one-way mode
    LEVERAGE_INVALID = "LEVERAGE_INVALID"
    NOT_MODIFIED = "NOT_MODIFIED"  # leverage / margin mode / position mode already as asked
    MODE_CHANGE_OPEN_ORDERS = "MODE_CHANGE_OPEN_ORDERS"
    MODE_CHANGE_POSITION_EXISTS = "MODE_CHANGE_POSITION_EXISTS"
    TOO_MANY_ORDERS = "TOO_MANY_ORDERS"  # open-order count limit


class VenueReject(Exception):
    """A synchronous rejection by the venue core: a value for the front-end to translate."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason.value}: {message}")


@dataclass(frozen=True, kw_only=True)
class InstrumentSpec:
    """A linear USDT perpetual. Every number a Decimal, as served in exchangeInfo / instruments-info."""

    symbol: str
    base_asset: str
    quote_asset: str = "USDT"
    tick_size: Decimal
    lot_size: Decimal  # quantity step
    min_qty: Decimal
    max_qty: Decimal
    max_market_qty: Decimal
    min_notional: Decimal
    min_price: Decimal
    max_price: Decimal
    max_leverage: int
    maint_margin_rate: Decimal  # maintenance margin as a fraction of notional
    maker_fee: Decimal  # fraction of notional, e.g. 0.0002
    taker_fee: Decimal  # e.g. 0.0005
    percent_price_up: Decimal = Decimal("1.05")  # limit price band around mark (Binance PERCENT_PRICE)
    percent_price_down: Decimal = Decimal("0.95")
    funding_interval_ms: int = 8 * 3600 * 1000
    price_precision: int = 2
    qty_precision: int = 3


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal | None = None  # None only with close_position
    price: Decimal | None = None  # LIMIT only
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    close_position: bool = False  # conditional only: close the whole position when triggered
    position_side: PositionSide = PositionSide.BOTH
    client_order_id: str | None = None  # generated by the core when None
    trigger_price: Decimal | None = None  # STOP_MARKET / TAKE_PROFIT_MARKET
    trigger_by: TriggerBy = TriggerBy.MARK


@dataclass(kw_only=True)
class VenueOrder:
    """An order as the core holds it; events carry copies (``snapshot()``), never the live object."""

    order_id: int
    client_order_id: str
    account: str  # the account's API key
    symbol: str
    side: Side
    type: OrderType
    tif: TimeInForce
    qty: Decimal
    price: Decimal | None
    trigger_price: Decimal | None
    trigger_by: TriggerBy
    reduce_only: bool
    close_position: bool
    position_side: PositionSide
    status: OrderStatus
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    created_ms: int = 0
    updated_ms: int = 0
    expire_reason: str = ""  # why EXPIRED / CANCELED by the venue (e.g. "IOC", "POST_ONLY", "REDUCE_ONLY")
    triggered_ms: int = 0  # a conditional order: when its trigger fired (0: not triggered)

    def snapshot(self) -> VenueOrder:
        return replace(self)

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN_STATUSES

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.filled_qty


@dataclass(frozen=True, kw_only=True)
class Fill:
    trade_id: int
    order_id: int
    client_order_id: str
    account: str
    symbol: str
    side: Side
    position_side: PositionSide
    price: Decimal
    qty: Decimal
    fee: Decimal  # positive = paid, in the quote asset
    is_maker: bool
    realized_pnl: Decimal  # of this fill, before fees
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class Position:
    account: str
    symbol: str
    position_side: PositionSide
    qty: Decimal  # signed for BOTH (negative = short); positive for LONG and SHORT
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal  # accumulated on this position since it was opened
    leverage: int
    margin_mode: MarginMode
    isolated_margin: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    liquidation_price: Decimal  # 0 when none
    notional: Decimal  # signed like qty, at mark
    updated_ms: int


@dataclass(frozen=True, kw_only=True)
class AccountState:
    account: str
    asset: str  # "USDT"
    deposits: Decimal  # everything ever deposited (the accounting invariant's right-hand side)
    wallet_balance: Decimal  # deposits + realized pnl - fees + funding
    unrealized_pnl: Decimal
    margin_balance: Decimal  # wallet + unrealized
    position_initial_margin: Decimal
    open_order_initial_margin: Decimal
    maint_margin: Decimal
    available_balance: Decimal
    realized_pnl: Decimal  # cumulative
    fees_paid: Decimal  # cumulative, positive = paid
    funding: Decimal  # cumulative, positive = received
    hedge_mode: bool
    updated_ms: int


# ---- events: everything the core reports, in order, to its listeners ---------------------------------


@dataclass(frozen=True, kw_only=True)
class DepthEvent:
    """One batch of absolute level changes on one symbol's public book.

    ``first_id``..``last_id`` is the update-id range this batch consumed from the symbol's single,
    strictly increasing update-id sequence; ``prev_last_id`` is the previous batch's ``last_id``
    (Binance U/u/pu). ``bids``/``asks`` are ``(price, qty)`` with qty 0 meaning the level is gone; a
    deletion is only ever reported for a price that the public book held.
    """

    symbol: str
    first_id: int
    last_id: int
    prev_last_id: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class TradeEvent:
    """A public trade (any participant's). ``aggressor`` is the taker's side."""

    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    aggressor: Side
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class MarkPriceEvent:
    symbol: str
    mark_price: Decimal
    index_price: Decimal
    last_price: Decimal
    funding_rate: Decimal
    next_funding_ms: int
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class OrderEvent:
    """An order changed (new, fill, cancel, expire, trigger, amend). ``fill`` is set on executions."""

    order: VenueOrder  # a snapshot
    fill: Fill | None
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class PositionEvent:
    position: Position
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class BalanceEvent:
    """The account's wallet changed. ``reason``: "ORDER", "FUNDING_FEE", "DEPOSIT", "LIQUIDATION"."""

    state: AccountState
    reason: str
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class FundingEvent:
    """A funding payment on one position. ``amount`` positive = received."""

    account: str
    symbol: str
    position_side: PositionSide
    rate: Decimal
    amount: Decimal
    ts_ms: int


VenueEvent = (
    DepthEvent | TradeEvent | MarkPriceEvent | OrderEvent | PositionEvent | BalanceEvent | FundingEvent
)
Listener = Callable[[VenueEvent], None]
Level = tuple[Decimal, Decimal]


class ExchangeCore(Protocol):
    """What the wire front-ends may call. All calls are synchronous and fast (in-memory); the core is
    single-threaded and driven from the venue's event loop. Each call raises :class:`VenueReject`
    for a request the venue refuses; it never raises anything else for bad client input."""

    instruments: dict[str, InstrumentSpec]

    def now_ms(self) -> int: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...

    # accounts
    def add_account(self, *, api_key: str, api_secret: str, deposit: Decimal) -> None: ...
    def secret_for(self, api_key: str) -> str | None: ...
    def account_state(self, account: str) -> AccountState: ...
    def positions(self, account: str, symbol: str | None = None) -> list[Position]: ...
    def set_leverage(self, account: str, symbol: str, leverage: int) -> None: ...
    def leverage(self, account: str, symbol: str) -> int: ...
    def set_margin_mode(self, account: str, symbol: str, mode: MarginMode) -> None: ...
    def margin_mode(self, account: str, symbol: str) -> MarginMode: ...
    def set_position_mode(self, account: str, *, hedge: bool) -> None: ...

    # orders
    def place_order(self, account: str, request: OrderRequest) -> VenueOrder: ...
    def cancel_order(
        self, account: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> VenueOrder: ...
    def cancel_all(self, account: str, symbol: str | None = None) -> list[VenueOrder]: ...
    def amend_order(
        self,
        account: str,
        symbol: str,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
        qty: Decimal | None = None,
        price: Decimal | None = None,
    ) -> VenueOrder: ...
    def get_order(
        self, account: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> VenueOrder: ...
    def open_orders(self, account: str, symbol: str | None = None) -> list[VenueOrder]: ...
    def fills(self, account: str, symbol: str | None = None, limit: int = 500) -> list[Fill]: ...

    # market data
    def depth(self, symbol: str, limit: int) -> tuple[int, list[Level], list[Level]]:
        """(last update id, bids best first, asks best first), consistent with the DepthEvent ids."""
        ...

    def mark(self, symbol: str) -> MarkPriceEvent: ...
    def recent_trades(self, symbol: str, limit: int) -> list[TradeEvent]: ...

    # time
    def advance(self, now_ms: int) -> None:
        """Run the market up to ``now_ms``: the generator's book changes and trades, resting-order
        fills, conditional triggers, mark price, funding at each interval, liquidations."""
        ...


@dataclass
class FaultPlan:
    """Faults the front-ends apply on demand (set through the venue's control API or its config).

    Counters are consumed as they fire (e.g. ``http_5xx=3`` fails the next three REST requests).
    """

    http_5xx: int = 0  # next N REST requests answer HTTP 503 (Binance -1001 body; Bybit retCode 10016)
    http_timeout: int = 0  # next N REST requests hang for ``timeout_s`` and then get dropped
    timeout_s: float = 15.0
    http_5xx_after_apply: int = 0  # next N order placements ARE applied, then answer 503 (unknown outcome)
    clock_offset_ms: int = 0  # the venue's clock is shifted by this much (provokes -1021 / 10002)
    ws_drop: int = 0  # drop every open WS connection now (counter of drops to perform)
    ws_skip_seq: int = 0  # next N depth messages skip an update id (a gap the client must detect)
    ws_delay_ms: int = 0  # delay each WS message by this much
    ws_reorder: int = 0  # next N pairs of depth messages are sent swapped
    ws_stall: bool = False  # stop sending on public streams without closing them
    ws_garbage: int = 0  # next N public messages are malformed (truncated JSON)
    expire_listen_keys: bool = False  # expire every Binance listenKey now
    extra: dict[str, object] = field(default_factory=dict)
