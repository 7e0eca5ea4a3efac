"""Orders, fills, positions, PnL, fees and funding, and reconciliation with the venue.

The :class:`OrderManager` is synchronous and does no I/O: the engine feeds it the adapters' user events
(:meth:`OrderManager.on_event`) and its own intents (:meth:`OrderManager.on_submit`), and reads its
state for risk, the admin socket and the journal. Its whole state can be rebuilt from venue snapshots
(:meth:`OrderManager.reconcile`) plus events replayed in any order, because every input is idempotent:

- Orders are keyed by ``(venue, client_order_id)`` (``venue:<venue order id>`` for an order placed
  without one, e.g. on the venue's web UI). A status only moves forward
  (``pending < untriggered < new < partially_filled < terminal``; the filled quantity never decreases);
  a late, duplicate or out-of-order update is ignored and counted, never applied backwards. An update or
  a fill for a client id the OMS never sent is recorded as an *external* order.
- Fills are deduplicated by ``(venue, symbol, trade_id, side)`` (Binance trade ids are unique per symbol
  only, and a self-trade has one trade id for two fills of ours). A fill is applied to its position even
  when its order update is stale: fills are facts, statuses are snapshots.
- Positions are kept per ``(venue, symbol, position side)`` (hedge mode included) as a signed quantity
  and a cost basis (``|qty| x entry``), in ``Decimal`` with a 60-digit context; the cost released by a
  partial reduce is rounded to 1e-18, so ``realized + unrealized == cash flow + qty x mark`` holds
  *exactly* for any fill sequence (the property test checks it against a brute-force oracle).
- A venue :class:`~engine.types.PositionUpdate` is the source of truth for quantity and entry. Venues do
  not order position and fill messages (Binance sends ``ACCOUNT_UPDATE`` *before* the fill's
  ``ORDER_TRADE_UPDATE``), so a differing venue position is held as *pending* for ``position_grace_ms``:
  a fill that brings the local position to the venue's resolves it; :meth:`OrderManager.check_positions`
  corrects the positions still different after the grace and reports each as an ``irreconcilable``
  :class:`Difference` (the OMS's fills do not explain the venue's position: risk trips on it).

Money is rendered as decimal strings only at the edge (the ``as_dict()`` helpers), quantized to 1e-8.

Fees are accounted in ``settle_asset`` (USDT); a fee charged in another asset (e.g. BNB) is kept per
asset in :meth:`OrderManager.fees_by_asset` and not converted into PnL. Funding payments carry no id on
either venue, so they are not deduplicated: the engine must feed each one once. A payment whose symbol
the venue does not name (Binance cross margin with several positions) is booked to the totals under
the symbol ``""``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from typing import Final

from engine.bounded import SeenKeys
from engine.types import (
    Balance,
    BalanceUpdate,
    Fill,
    FundingPayment,
    MarkPrice,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionSide,
    PositionUpdate,
    Side,
    TimeInForce,
    UserEvent,
    Venue,
)

__all__ = [
    "DiffKind",
    "Difference",
    "ExitKind",
    "ExitTrigger",
    "Exposure",
    "OrderManager",
    "PnlTotals",
    "PositionView",
    "ProtectiveExits",
    "ReconcileReport",
    "Severity",
    "TrackedOrder",
    "UpdateResult",
    "dec_str",
    "money_str",
]

_ZERO: Final = Decimal(0)
_BPS: Final = Decimal(10_000)
MONEY: Final = Decimal("0.00000001")
_COST_Q: Final = Decimal("1e-18")
_CTX: Final = Context(prec=60)

_RANK: Final = {
    OrderStatus.PENDING: 0,
    OrderStatus.UNTRIGGERED: 1,
    OrderStatus.NEW: 2,
    OrderStatus.PARTIALLY_FILLED: 3,
    OrderStatus.FILLED: 4,
    OrderStatus.CANCELED: 4,
    OrderStatus.REJECTED: 4,
    OrderStatus.EXPIRED: 4,
}
_TERMINAL: Final = 4

OrderKey = tuple[Venue, str]  # (venue, client_order_id)
PosKey = tuple[Venue, str, PositionSide]  # (venue, symbol, position side)


def dec_str(x: Decimal) -> str:
    """A Decimal as a plain decimal string: no exponent, no trailing zeros, no negative zero."""
    if not x:
        return "0"
    return format(x.normalize(), "f")


def money_str(x: Decimal) -> str:
    """A money amount as a decimal string, rounded half-even to 1e-8."""
    return dec_str(x.quantize(MONEY, rounding=ROUND_HALF_EVEN, context=_CTX))


def _opt(x: Decimal | None) -> str | None:
    return None if x is None else dec_str(x)


# ---- orders -------------------------------------------------------------------------------------------


class UpdateResult(StrEnum):
    """What the OMS did with an order update."""

    APPLIED = "applied"
    ADOPTED = "adopted"  # an order the OMS did not send (external)
    STALE = "stale"  # would move the order backwards: ignored and counted
    DUPLICATE = "duplicate"  # same state again: ignored and counted


@dataclass(frozen=True, kw_only=True)
class TrackedOrder:
    """An order as the OMS knows it: the last accepted venue state plus the OMS's own bookkeeping."""

    order: Order
    external: bool = False  # not sent by this engine (or not known to it when it arrived)
    closed_out: bool = False  # the venue no longer lists it and its outcome is not known: query it
    fees: Decimal = _ZERO  # in the settle asset, from the fills seen
    fill_qty: Decimal = _ZERO  # the sum of the fills seen (the venue's filled_qty may be ahead)
    created_ms: int = 0

    @property
    def key(self) -> OrderKey:
        return (self.order.venue, self.order.client_order_id)

    @property
    def client_order_id(self) -> str:
        return self.order.client_order_id

    @property
    def venue(self) -> Venue:
        return self.order.venue

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def status(self) -> OrderStatus:
        return self.order.status

    @property
    def is_open(self) -> bool:
        """Working on the venue as far as the OMS knows (PENDING included; closed-out orders excluded)."""
        return self.order.status.is_open and not self.closed_out

    @property
    def remaining_qty(self) -> Decimal:
        return max(self.order.qty - self.order.filled_qty, _ZERO)

    @property
    def fills_owed(self) -> Decimal:
        """How far the venue's filled quantity is ahead of the fills seen (trades not delivered yet)."""
        return max(self.order.filled_qty - self.fill_qty, _ZERO)

    def as_dict(self) -> dict[str, str | bool | None]:
        o = self.order
        return {
            "client_order_id": o.client_order_id,
            "venue": o.venue.value,
            "symbol": o.symbol,
            "side": o.side.value,
            "type": o.type.value,
            "price": _opt(o.price),
            "qty": dec_str(o.qty),
            "filled_qty": dec_str(o.filled_qty),
            "status": o.status.value,
            "venue_order_id": o.venue_order_id,
            "tif": o.tif.value,
            "avg_price": dec_str(o.avg_price),
            "trigger_price": _opt(o.trigger_price),
            "reduce_only": o.reduce_only,
            "position_side": o.position_side.value,
            "fees": money_str(self.fees),
            "external": self.external,
            "closed_out": self.closed_out,
            "reason": o.reason,
        }


# ---- positions ----------------------------------------------------------------------------------------


class _Pos:
    """One position's mutable state. Arithmetic runs in the 60-digit context."""

    __slots__ = (
        "cost",
        "external",
        "fees",
        "funding",
        "key",
        "mark",
        "pending",
        "pending_since_ms",
        "qty",
        "realized",
        "ts_ms",
        "venue_ts_ms",
    )

    def __init__(self, key: PosKey) -> None:
        self.key = key
        self.qty = _ZERO  # signed: > 0 long, < 0 short
        self.cost = _ZERO  # |qty| x average entry
        self.realized = _ZERO
        self.fees = _ZERO
        self.funding = _ZERO
        self.mark: Decimal | None = None
        self.external = False
        self.ts_ms = 0
        self.venue_ts_ms = -1  # ts of the last venue position applied (stale ones are ignored)
        self.pending: Position | None = None  # a venue position that differs, within the grace
        self.pending_since_ms = 0

    @property
    def entry(self) -> Decimal:
        if not self.qty:
            return _ZERO
        with localcontext(_CTX):
            return self.cost / abs(self.qty)

    def unrealized(self) -> Decimal:
        if not self.qty or self.mark is None:
            return _ZERO
        with localcontext(_CTX):
            return self.qty * self.mark - (self.cost if self.qty > 0 else -self.cost)

    def apply(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Apply a fill (buy > 0) at ``price``; return the realized PnL of its reducing part."""
        with localcontext(_CTX):
            q = self.qty
            if not q or (q > 0) == (signed_qty > 0):
                self.cost += abs(signed_qty) * price
                self.qty = q + signed_qty
                return _ZERO
            size = abs(q)
            closed = min(abs(signed_qty), size)
            if closed == size:
                released = self.cost
            else:
                released = (self.cost * closed / size).quantize(_COST_Q, rounding=ROUND_HALF_EVEN)
            gross = price * closed - released
            pnl = gross if q > 0 else -gross
            self.cost -= released
            self.qty = q + signed_qty
            rest = abs(signed_qty) - closed
            if rest:  # flipped through zero: the rest opens the other way at this price
                self.cost = rest * price
            self.realized += pnl
            return pnl

    def set_from_venue(self, qty: Decimal, entry: Decimal) -> None:
        with localcontext(_CTX):
            self.qty = qty
            self.cost = (abs(qty) * entry).quantize(_COST_Q, rounding=ROUND_HALF_EVEN) if qty else _ZERO


@dataclass(frozen=True, kw_only=True)
class PositionView:
    venue: Venue
    symbol: str
    position_side: PositionSide  # BOTH in one-way mode, LONG/SHORT in hedge mode
    qty: Decimal  # signed: negative is short
    entry_price: Decimal
    mark_price: Decimal | None
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    funding: Decimal
    external: bool
    ts_ms: int

    @property
    def direction(self) -> str:
        return "long" if self.qty > 0 else "short" if self.qty < 0 else "flat"

    @property
    def notional(self) -> Decimal:
        """|qty| x mark (x entry when no mark is known yet)."""
        price = self.mark_price if self.mark_price is not None else self.entry_price
        return abs(self.qty) * price

    def as_dict(self) -> dict[str, str | bool | None]:
        return {
            "venue": self.venue.value,
            "symbol": self.symbol,
            "side": self.direction,
            "position_side": self.position_side.value,
            "qty": dec_str(self.qty),
            "entry_price": money_str(self.entry_price),
            "mark_price": None if self.mark_price is None else dec_str(self.mark_price),
            "unrealized_pnl": money_str(self.unrealized_pnl),
            "realized_pnl": money_str(self.realized_pnl),
            "fees": money_str(self.fees),
            "funding": money_str(self.funding),
            "notional": money_str(self.notional),
            "external": self.external,
        }


@dataclass(frozen=True, kw_only=True)
class PnlTotals:
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal  # paid, in the settle asset (positive = paid)
    funding: Decimal  # positive = received
    net_pnl: Decimal  # realized + unrealized - fees + funding
    wallet_balance: Decimal  # the venues' settle-asset wallets, as last reported
    equity: Decimal  # wallet_balance + unrealized_pnl (at the OMS's marks)
    daily_pnl: Decimal  # net_pnl since the last reset_day (plus what was carried over)
    day_start_ms: int

    def as_dict(self) -> dict[str, str | int]:
        return {
            "realized_pnl": money_str(self.realized_pnl),
            "unrealized_pnl": money_str(self.unrealized_pnl),
            "fees": money_str(self.fees),
            "funding": money_str(self.funding),
            "net_pnl": money_str(self.net_pnl),
            "wallet_balance": money_str(self.wallet_balance),
            "equity": money_str(self.equity),
            "daily_pnl": money_str(self.daily_pnl),
            "day_start_ms": self.day_start_ms,
        }


@dataclass(frozen=True, kw_only=True)
class Exposure:
    """One symbol's exposure on one venue, for the risk manager."""

    venue: Venue
    symbol: str
    net_qty: Decimal  # sum of signed position quantities (hedge long + hedge short + one-way)
    long_qty: Decimal
    short_qty: Decimal  # positive
    price: Decimal  # the mark (or the entry when no mark is known)
    gross_notional: Decimal  # (long + short) x price
    net_notional: Decimal  # net_qty x price (signed)
    open_orders: int  # open orders incl. pending and conditional
    open_buy_qty: Decimal  # remaining qty of open non-reduce-only buy orders
    open_sell_qty: Decimal

    def as_dict(self) -> dict[str, str | int]:
        return {
            "venue": self.venue.value,
            "symbol": self.symbol,
            "net_qty": dec_str(self.net_qty),
            "long_qty": dec_str(self.long_qty),
            "short_qty": dec_str(self.short_qty),
            "price": dec_str(self.price),
            "gross_notional": money_str(self.gross_notional),
            "net_notional": money_str(self.net_notional),
            "open_orders": self.open_orders,
            "open_buy_qty": dec_str(self.open_buy_qty),
            "open_sell_qty": dec_str(self.open_sell_qty),
        }


# ---- reconciliation -----------------------------------------------------------------------------------


class DiffKind(StrEnum):
    ORDER_ADOPTED = "order_adopted"  # the venue has an open order the OMS lacks (now external)
    ORDER_CLOSED_OUT = "order_closed_out"  # the OMS has an open order the venue lacks: query it
    ORDER_UPDATED = "order_updated"  # the venue's state is ahead of the OMS's: taken
    ORDER_CONFLICT = "order_conflict"  # the venue's state contradicts the OMS's: not taken
    POSITION_ADOPTED = "position_adopted"  # the venue has a position the OMS lacks (now external)
    POSITION_CORRECTED = "position_corrected"  # qty or entry differed: set to the venue's
    POSITION_CLOSED = "position_closed"  # the OMS has a position the venue does not: set flat
    POSITION_CONFLICT = "position_conflict"  # the venue's positions contradict themselves
    BALANCE_ADOPTED = "balance_adopted"
    BALANCE_CORRECTED = "balance_corrected"


class Severity(StrEnum):
    INFO = "info"  # expected after a restart or a reconnect
    WARNING = "warning"  # the OMS was wrong and has been corrected
    IRRECONCILABLE = "irreconcilable"  # the OMS cannot explain the venue's state: risk should trip


@dataclass(frozen=True, kw_only=True)
class Difference:
    """One field on which the OMS and the venue disagreed."""

    kind: DiffKind
    severity: Severity
    venue: Venue
    symbol: str  # "" for a balance
    ref: str  # the client order id, the position side, or the asset
    field: str  # "status", "filled_qty", "qty", "entry_price", "wallet_balance", ...
    local: str
    remote: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "venue": self.venue.value,
            "symbol": self.symbol,
            "ref": self.ref,
            "field": self.field,
            "local": self.local,
            "remote": self.remote,
            "detail": self.detail,
        }


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    venue: Venue
    ts_ms: int
    differences: tuple[Difference, ...]
    #: Orders closed out because the venue no longer lists them: ask the venue for each
    #: (``adapter.get_order``) and feed the answer to :meth:`OrderManager.on_query_result`.
    needs_query: tuple[tuple[str, str], ...]  # (symbol, client_order_id)

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def irreconcilable(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.severity is Severity.IRRECONCILABLE)

    def as_dict(self) -> dict[str, object]:
        return {
            "venue": self.venue.value,
            "ts_ms": self.ts_ms,
            "ok": self.ok,
            "irreconcilable": len(self.irreconcilable),
            "differences": [d.as_dict() for d in self.differences],
            "needs_query": [{"symbol": s, "client_order_id": c} for s, c in self.needs_query],
        }


# ---- protective exits ---------------------------------------------------------------------------------


class ExitKind(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"


_EXIT_PRIORITY: Final = (ExitKind.STOP_LOSS, ExitKind.TRAILING_STOP, ExitKind.TAKE_PROFIT)


@dataclass(frozen=True, kw_only=True)
class ProtectiveExits:
    """A position's exit levels and the venue-side reduce-only orders placed for them."""

    venue: Venue
    symbol: str
    position_side: PositionSide
    long: bool  # the direction of the position they protect
    stop_loss: Decimal | None
    take_profit: Decimal | None
    trailing_bps: int | None
    trailing_anchor: Decimal | None  # best price seen since set (highest for a long, lowest for a short)
    orders: tuple[tuple[ExitKind, str], ...]  # (kind, client order id of the venue's conditional order)
    armed: bool  # the position exists; exits are disarmed when it goes flat or flips
    fired: frozenset[ExitKind]

    @property
    def trailing_level(self) -> Decimal | None:
        if self.trailing_bps is None or self.trailing_anchor is None:
            return None
        return _trail_level(self.trailing_anchor, self.trailing_bps, self.long)

    def order_id(self, kind: ExitKind) -> str | None:
        return dict(self.orders).get(kind)

    def as_dict(self) -> dict[str, object]:
        lvl = self.trailing_level
        return {
            "venue": self.venue.value,
            "symbol": self.symbol,
            "position_side": self.position_side.value,
            "direction": "long" if self.long else "short",
            "stop_loss": _opt(self.stop_loss),
            "take_profit": _opt(self.take_profit),
            "trailing_bps": self.trailing_bps,
            "trailing_level": None if lvl is None else dec_str(lvl),
            "orders": {k.value: v for k, v in self.orders},
            "armed": self.armed,
            "fired": sorted(k.value for k in self.fired),
        }


@dataclass(frozen=True, kw_only=True)
class ExitTrigger:
    """The local watcher saw ``price`` cross an exit level: close ``qty`` with a reduce-only ``close_side``
    order. ``backup`` is True when the venue-side order for this exit is not open (missing, rejected,
    cancelled): then the engine must act; otherwise the venue's order should fire on its own."""

    venue: Venue
    symbol: str
    position_side: PositionSide
    kind: ExitKind
    level: Decimal
    price: Decimal
    close_side: Side
    qty: Decimal
    venue_order_client_id: str | None
    backup: bool


def _trail_level(anchor: Decimal, bps: int, long: bool) -> Decimal:
    with localcontext(_CTX):
        off = anchor * Decimal(bps) / _BPS
        return anchor - off if long else anchor + off


class _Exits:
    __slots__ = ("anchor", "armed", "fired", "long", "orders", "stop_loss", "take_profit", "trailing_bps")

    def __init__(self, long: bool) -> None:
        self.long = long
        self.stop_loss: Decimal | None = None
        self.take_profit: Decimal | None = None
        self.trailing_bps: int | None = None
        self.anchor: Decimal | None = None
        self.orders: dict[ExitKind, str] = {}
        self.armed = False
        self.fired: set[ExitKind] = set()


# ---- the manager --------------------------------------------------------------------------------------


class OrderManager:
    """Order, fill, position and PnL state of one engine (every venue). Not thread-safe; one loop."""

    def __init__(
        self,
        *,
        settle_asset: str = "USDT",
        position_grace_ms: int = 3_000,
        entry_tolerance: Decimal = Decimal("0.00001"),
        max_closed_orders: int = 1_000,
        dedup_memory: int = 100_000,
        retired_memory: int = 50_000,
    ) -> None:
        """Memory bounds (a process runs for weeks; the journal keeps the full history): the last
        ``max_closed_orders`` terminal orders are kept whole (queries, the admin socket); beyond it the
        oldest is forgotten and only its key's fingerprint is remembered, in a ring of ``retired_memory``
        (:class:`engine.bounded.SeenKeys`, about 80 bytes a key); ``dedup_memory`` fill ids (the same) guard
        against double counting. Past those bounds an event older than the newest forgotten entry is
        treated as stale (``orders_beyond_memory`` / ``fills_beyond_memory``), never as new: the venue's
        positions, reconciled, stay the truth. The whole-order cache fills within minutes at a busy
        strategy's rate; after that memory grows by about 80 bytes a fill and a retired order until the
        rings are full (about 12 MB at the defaults); ``make soak`` checks the line stays flat."""
        if position_grace_ms < 0 or max_closed_orders < 0 or dedup_memory < 1 or retired_memory < 1:
            raise ValueError(
                "position_grace_ms and max_closed_orders must be >= 0, dedup_memory and retired_memory >= 1"
            )
        self.settle_asset = settle_asset
        self.position_grace_ms = position_grace_ms
        self.entry_tolerance = entry_tolerance  # relative; a venue rounds its entry price
        self._max_closed = max_closed_orders
        self._orders: dict[OrderKey, TrackedOrder] = {}
        self._open: dict[tuple[Venue, str], dict[str, None]] = {}  # (venue, symbol) -> open client ids
        self._closed_fifo: OrderedDict[OrderKey, None] = OrderedDict()  # terminal orders, oldest first
        self._retired = SeenKeys(retired_memory)  # terminal orders forgotten: late events are stale
        self._fills_seen = SeenKeys(dedup_memory)
        self._positions: dict[PosKey, _Pos] = {}
        self._marks: dict[tuple[Venue, str], Decimal] = {}
        self._balances: dict[tuple[Venue, str], Balance] = {}
        self._exits: dict[PosKey, _Exits] = {}
        self._stale_exit_orders: list[tuple[Venue, str, str]] = []
        self._realized = _ZERO
        self._fees = _ZERO
        self._fees_other: dict[str, Decimal] = {}
        self._funding = _ZERO
        self._funding_by_symbol: dict[tuple[Venue, str], Decimal] = {}
        self._venue_realized = _ZERO
        self._snapshot_ms: dict[Venue, int] = {}  # per venue: the last reconcile's snapshot time
        self._day_baseline = _ZERO
        self._day_start_ms = 0
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "orders_applied",
                "orders_adopted",
                "orders_stale",
                "orders_duplicate",
                "orders_beyond_memory",
                "fills",
                "fills_duplicate",
                "fills_beyond_memory",
                "fills_external",
                "fills_in_snapshot",
                "positions_stale",
                "positions_pending",
                "positions_resolved",
                "positions_corrected",
                "funding_payments",
            ),
            0,
        )

    # ---- events ------------------------------------------------------------------------------------------

    def on_event(self, event: UserEvent) -> list[Difference]:
        """Apply one user event from an adapter. Returns differences only for position corrections made
        immediately (``position_grace_ms == 0``); otherwise see :meth:`check_positions`."""
        if isinstance(event, OrderUpdate):
            self.on_order_update(event)
            return []
        if isinstance(event, PositionUpdate):
            return self.on_position_update(event)
        if isinstance(event, BalanceUpdate):
            self.on_balance(event.balance)
            return []
        self.on_funding(event)
        return []

    def on_submit(self, request: OrderRequest, *, ts_ms: int) -> TrackedOrder:
        """Record an intent before it is sent: the order is PENDING until the venue answers."""
        key = (request.venue, request.client_order_id)
        if key in self._orders or key in self._retired:
            raise ValueError(f"duplicate client order id {request.client_order_id!r} on {request.venue}")
        order = Order(
            venue=request.venue,
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            venue_order_id="",
            side=request.side,
            type=request.type,
            tif=request.tif,
            qty=request.qty,
            price=request.price,
            filled_qty=_ZERO,
            avg_price=_ZERO,
            status=OrderStatus.PENDING,
            reduce_only=request.reduce_only or request.close_position,
            position_side=request.position_side,
            trigger_price=request.trigger_price,
            ts_ms=ts_ms,
        )
        tracked = TrackedOrder(order=order, created_ms=ts_ms)
        self._store(tracked)
        return tracked

    def on_submit_rejected(self, venue: Venue, client_order_id: str, *, reason: str, ts_ms: int) -> None:
        """The venue refused the placement (``OrderRejected``): the order is REJECTED with the reason.
        Do NOT call this after a time-out or a 5xx (``VenueUnavailable``): the outcome is unknown, the
        order stays PENDING until the venue is asked."""
        tracked = self._orders.get((venue, client_order_id))
        if tracked is None or tracked.status is not OrderStatus.PENDING:
            return
        order = replace(tracked.order, status=OrderStatus.REJECTED, reason=reason, ts_ms=ts_ms)
        self._store(replace(tracked, order=order))

    def on_order_update(self, update: OrderUpdate) -> UpdateResult:
        """The order's state first (an unknown order is adopted from it), then its fill, if any: the fill
        is applied even when the state is stale (fills are facts, states are snapshots)."""
        result = self.on_order(update.order)
        if update.fill is not None:
            self.on_fill(update.fill)
        return result

    def on_order(self, order: Order) -> UpdateResult:
        """Apply the venue's view of an order (a stream update, a placement's answer, a query result)."""
        order = _named(order)
        key = (order.venue, order.client_order_id)
        cur = self._orders.get(key)
        if cur is None:
            if key in self._retired:
                self._stats["orders_stale"] += 1
                return UpdateResult.STALE
            if self._retired.forgotten(key, order.ts_ms):
                # older than the newest order forgotten: a late event of an order long retired
                self._stats["orders_beyond_memory"] += 1
                self._stats["orders_stale"] += 1
                return UpdateResult.STALE
            self._store(TrackedOrder(order=order, external=True, created_ms=order.ts_ms))
            self._stats["orders_adopted"] += 1
            return UpdateResult.ADOPTED
        verdict = _judge(cur, order)
        if verdict is not UpdateResult.APPLIED:
            self._stats["orders_stale" if verdict is UpdateResult.STALE else "orders_duplicate"] += 1
            return verdict
        self._store(replace(cur, order=_merge(cur.order, order), closed_out=False))
        self._stats["orders_applied"] += 1
        return UpdateResult.APPLIED

    def on_fill(self, fill: Fill) -> bool:
        """Apply one execution. Returns False (and changes nothing) for a duplicate."""
        dedup = (fill.venue, fill.symbol, fill.trade_id, fill.side)
        if dedup in self._fills_seen:
            self._stats["fills_duplicate"] += 1
            return False
        if self._fills_seen.forgotten(dedup, fill.ts_ms):
            # older than the newest fill id forgotten: possibly seen already; counting it twice would be
            # worse than missing it (the venue's positions are reconciled)
            self._stats["fills_beyond_memory"] += 1
            self._stats["fills_duplicate"] += 1
            return False
        self._fills_seen.add(dedup, fill.ts_ms)
        self._stats["fills"] += 1
        if not fill.client_order_id:
            fill = replace(fill, client_order_id=_synthetic_id(fill.venue_order_id))
        in_settle = fill.fee_asset in ("", self.settle_asset)
        fee = fill.fee if in_settle else _ZERO
        if not in_settle:
            self._fees_other[fill.fee_asset] = self._fees_other.get(fill.fee_asset, _ZERO) + fill.fee

        key = (fill.venue, fill.client_order_id)
        tracked = self._orders.get(key)
        if tracked is None and key not in self._retired:
            # A fill of an order the OMS never saw: adopted as external, its outcome unknown until the
            # venue's order state arrives (closed out: listed by needs_query()).
            tracked = TrackedOrder(
                order=_order_from_fill(fill, _ZERO), external=True, closed_out=True, created_ms=fill.ts_ms
            )
            self._stats["orders_adopted"] += 1
        if tracked is not None:
            if tracked.external:
                self._stats["fills_external"] += 1
            with localcontext(_CTX):
                tracked = replace(tracked, fees=tracked.fees + fee, fill_qty=tracked.fill_qty + fill.qty)
                o = tracked.order
                if tracked.closed_out and tracked.external and tracked.fill_qty > o.filled_qty:
                    grown = _order_from_fill(fill, tracked.fill_qty)
                    qty = max(o.qty, grown.qty)
                    tracked = replace(tracked, order=replace(o, filled_qty=grown.filled_qty, qty=qty))
            self._store(tracked)

        pkey = (fill.venue, fill.symbol, fill.position_side)
        pos = self._position(pkey)
        before = pos.qty
        with localcontext(_CTX):
            if fill.ts_ms <= self._snapshot_ms.get(fill.venue, -1):
                # Already inside the venue position the last reconcile took: the position is not moved
                # again; its realized PnL is the venue's own for this fill.
                self._stats["fills_in_snapshot"] += 1
                pnl = fill.realized_pnl
                pos.realized += pnl
            else:
                pnl = pos.apply(fill.qty * fill.side.sign, fill.price)
            pos.fees += fee
            self._realized += pnl
            self._fees += fee
            self._venue_realized += fill.realized_pnl
        pos.ts_ms = max(pos.ts_ms, fill.ts_ms)
        if pos.mark is None:
            pos.mark = self._marks.get((fill.venue, fill.symbol))
        self._after_qty_change(pos, before)
        if pos.pending is not None and self._matches(pos, pos.pending):
            pos.pending = None
            self._stats["positions_resolved"] += 1
        return True

    def on_position_update(self, update: PositionUpdate) -> list[Difference]:
        """The venue's position (the truth for qty and entry). A difference is held for the grace period
        (its fill may still be on its way) and resolved by a fill or corrected by check_positions."""
        p = update.position
        key = (p.venue, p.symbol, p.side)
        pos = self._positions.get(key)
        if pos is None:
            if not p.qty:
                return []
            pos = self._position(key)
        if p.ts_ms < pos.venue_ts_ms:
            self._stats["positions_stale"] += 1
            return []
        pos.venue_ts_ms = p.ts_ms
        if p.mark_price and (p.venue, p.symbol) not in self._marks:
            pos.mark = p.mark_price
        if self._matches(pos, p):
            if pos.pending is not None:
                self._stats["positions_resolved"] += 1
            pos.pending = None
            return []
        if pos.pending is None:
            pos.pending_since_ms = p.ts_ms
            self._stats["positions_pending"] += 1
        pos.pending = p
        if self.position_grace_ms == 0:
            return self.check_positions(p.ts_ms)
        return []

    def check_positions(self, now_ms: int) -> list[Difference]:
        """Correct every position whose venue state has differed for ``position_grace_ms`` or more, and
        report each field as an irreconcilable difference (a quantity) or a warning (an entry only).
        Call it periodically (the engine's housekeeping tick, epoch ms)."""
        out: list[Difference] = []
        for pos in list(self._positions.values()):
            p = pos.pending
            if p is None or now_ms - pos.pending_since_ms < self.position_grace_ms:
                continue
            pos.pending = None
            out.extend(
                self._correct(pos, p, kind=DiffKind.POSITION_CORRECTED, qty_severity=Severity.IRRECONCILABLE)
            )
        return out

    def on_balance(self, balance: Balance) -> None:
        cur = self._balances.get((balance.venue, balance.asset))
        if cur is not None and balance.ts_ms < cur.ts_ms:
            return
        self._balances[(balance.venue, balance.asset)] = balance

    def on_funding(self, payment: FundingPayment) -> None:
        """A funding payment (positive = received): booked to the symbol, and to its position when one
        position side of the symbol is open (in hedge mode with both sides open, to the symbol only)."""
        self._stats["funding_payments"] += 1
        with localcontext(_CTX):
            self._funding += payment.amount
            k = (payment.venue, payment.symbol)
            self._funding_by_symbol[k] = self._funding_by_symbol.get(k, _ZERO) + payment.amount
            open_sides = [
                pos
                for (v, s, _), pos in self._positions.items()
                if v is payment.venue and s == payment.symbol and pos.qty
            ]
            if len(open_sides) == 1:
                open_sides[0].funding += payment.amount

    def on_mark(self, mark: MarkPrice) -> None:
        """The venue's mark price: unrealized PnL and exposure use it from now on."""
        self._marks[(mark.venue, mark.symbol)] = mark.mark_price
        for side in PositionSide:
            pos = self._positions.get((mark.venue, mark.symbol, side))
            if pos is not None:
                pos.mark = mark.mark_price

    # ---- reconciliation ----------------------------------------------------------------------------------

    def reconcile(
        self,
        venue: Venue,
        open_orders: Iterable[Order],
        positions: Iterable[Position],
        balances: Iterable[Balance],
        *,
        ts_ms: int = 0,
    ) -> ReconcileReport:
        """Make the OMS's view of ``venue`` equal to the venue's snapshots and report every difference.

        - a venue open order the OMS lacks is adopted (external); one whose state is ahead of the OMS's is
          taken; one that contradicts the OMS (another symbol/side, or open on the venue but terminal in
          the OMS) is reported as a conflict and the order is listed in ``needs_query``;
        - an OMS open order the venue does not list is closed out (no longer open; outcome unknown) and
          listed in ``needs_query``;
        - positions are set to the venue's (adopted as external, corrected, or closed);
        - balances are set to the venue's.

        Positions are corrected without a grace period. ``ts_ms`` is when the snapshots were taken, in the
        venue's clock (epoch ms); when given, a fill of ``venue`` arriving later with ``fill.ts_ms <=
        ts_ms`` (a journal replay, or the adapter's catch-up after a stream outage) is taken to be inside
        the snapshot already: it updates its order and the fees and books the venue's realized PnL, but
        does not move the position a second time.
        """
        if ts_ms:
            self._snapshot_ms[venue] = max(self._snapshot_ms.get(venue, 0), ts_ms)
        diffs: list[Difference] = []
        needs: list[tuple[str, str]] = []
        seen: set[str] = set()
        for o in map(_named, open_orders):
            if o.venue is not venue:
                raise ValueError(f"order {o.client_order_id} is on {o.venue}, not {venue}")
            seen.add(o.client_order_id)
            self._reconcile_order(o, diffs, needs)
        for tracked in list(self._orders.values()):
            if tracked.venue is venue and tracked.is_open and tracked.client_order_id not in seen:
                self._store(replace(tracked, closed_out=True))
                needs.append((tracked.symbol, tracked.client_order_id))
                diffs.append(
                    Difference(
                        kind=DiffKind.ORDER_CLOSED_OUT,
                        severity=Severity.INFO,
                        venue=venue,
                        symbol=tracked.symbol,
                        ref=tracked.client_order_id,
                        field="status",
                        local=tracked.status.value,
                        remote="absent",
                        detail="not open on the venue; outcome to be queried",
                    )
                )
        self._reconcile_positions(venue, list(positions), diffs)
        for b in balances:
            if b.venue is not venue:
                raise ValueError(f"balance {b.asset} is on {b.venue}, not {venue}")
            cur = self._balances.get((venue, b.asset))
            if cur is None:
                diffs.append(
                    Difference(
                        kind=DiffKind.BALANCE_ADOPTED,
                        severity=Severity.INFO,
                        venue=venue,
                        symbol="",
                        ref=b.asset,
                        field="wallet_balance",
                        local="absent",
                        remote=money_str(b.wallet_balance),
                    )
                )
            elif cur.wallet_balance != b.wallet_balance:
                diffs.append(
                    Difference(
                        kind=DiffKind.BALANCE_CORRECTED,
                        severity=Severity.INFO,
                        venue=venue,
                        symbol="",
                        ref=b.asset,
                        field="wallet_balance",
                        local=money_str(cur.wallet_balance),
                        remote=money_str(b.wallet_balance),
                    )
                )
            self._balances[(venue, b.asset)] = b
        return ReconcileReport(venue=venue, ts_ms=ts_ms, differences=tuple(diffs), needs_query=tuple(needs))

    def on_query_result(
        self, venue: Venue, client_order_id: str, order: Order | None, *, ts_ms: int
    ) -> TrackedOrder | None:
        """The venue's answer to a query for a closed-out or pending order. ``None`` means the venue does
        not know the order: a PENDING one never reached it (REJECTED, reason ``not_found``); any other is
        taken as CANCELED with reason ``not_found`` (its fills, if any, show up in the positions)."""
        if order is not None:
            self.on_order(order)
            return self._orders.get((venue, client_order_id))
        tracked = self._orders.get((venue, client_order_id))
        if tracked is None:
            return None
        if tracked.status.is_open:
            status = OrderStatus.REJECTED if tracked.status is OrderStatus.PENDING else OrderStatus.CANCELED
            o = replace(tracked.order, status=status, reason="not_found", ts_ms=ts_ms)
            tracked = replace(tracked, order=o, closed_out=False)
            self._store(tracked)
        return tracked

    def needs_query(self) -> list[TrackedOrder]:
        """Orders whose outcome is unknown (closed out, or adopted from a bare fill): ask the venue."""
        return [t for t in self._orders.values() if t.closed_out]

    def pending_orders(self, venue: Venue | None = None) -> list[TrackedOrder]:
        """Intents with no answer from the venue (after a restart: query each by client order id)."""
        return [
            t
            for t in self._orders.values()
            if t.status is OrderStatus.PENDING and (venue is None or t.venue is venue)
        ]

    # ---- reads -------------------------------------------------------------------------------------------

    def order(self, venue: Venue, client_order_id: str) -> TrackedOrder | None:
        return self._orders.get((venue, client_order_id))

    def orders(self) -> list[TrackedOrder]:
        """Every order the OMS still holds (open, and the most recent terminal ones)."""
        return list(self._orders.values())

    def open_orders(self, venue: Venue | None = None, symbol: str | None = None) -> list[TrackedOrder]:
        """Open orders (PENDING and conditional ones included), oldest first per symbol."""
        return [
            self._orders[(v, cid)]
            for (v, s), cids in self._open.items()
            if (venue is None or v is venue) and (symbol is None or s == symbol)
            for cid in cids
        ]

    def open_order_count(self, venue: Venue, symbol: str) -> int:
        """Open orders of one symbol (PENDING included): O(1), for the pre-trade check."""
        return len(self._open.get((venue, symbol), ()))

    def position(self, venue: Venue, symbol: str, side: PositionSide = PositionSide.BOTH) -> PositionView:
        pos = self._positions.get((venue, symbol, side))
        return self._view(pos if pos is not None else _Pos((venue, symbol, side)))

    def positions(self, *, include_flat: bool = False) -> list[PositionView]:
        return [self._view(p) for p in self._positions.values() if include_flat or p.qty]

    def balances(self) -> list[Balance]:
        return list(self._balances.values())

    def mark(self, venue: Venue, symbol: str) -> Decimal | None:
        return self._marks.get((venue, symbol))

    def fees_by_asset(self) -> dict[str, Decimal]:
        out = {self.settle_asset: self._fees}
        out.update(self._fees_other)
        return out

    def funding_by_symbol(self) -> dict[tuple[Venue, str], Decimal]:
        return dict(self._funding_by_symbol)

    @property
    def venue_realized_pnl(self) -> Decimal:
        """The sum of the realized PnL the venues reported on the fills (for comparison)."""
        return self._venue_realized

    def totals(self) -> PnlTotals:
        with localcontext(_CTX):
            unrealized = sum((p.unrealized() for p in self._positions.values()), _ZERO)
            net = self._realized + unrealized - self._fees + self._funding
            wallet = sum(
                (b.wallet_balance for (_, a), b in self._balances.items() if a == self.settle_asset), _ZERO
            )
            return PnlTotals(
                realized_pnl=self._realized,
                unrealized_pnl=unrealized,
                fees=self._fees,
                funding=self._funding,
                net_pnl=net,
                wallet_balance=wallet,
                equity=wallet + unrealized,
                daily_pnl=net - self._day_baseline,
                day_start_ms=self._day_start_ms,
            )

    def equity(self) -> Decimal:
        return self.totals().equity

    def daily_pnl(self) -> Decimal:
        return self.totals().daily_pnl

    def reset_day(self, ts_ms: int, *, carried: Decimal = _ZERO) -> None:
        """Start a new PnL day now. ``carried`` is PnL already made this day before a restart (restored
        from the journal), so a restart does not reset the daily loss."""
        with localcontext(_CTX):
            self._day_baseline = self.totals().net_pnl - carried
        self._day_start_ms = ts_ms

    def exposure(self, venue: Venue | None = None) -> list[Exposure]:
        """Per (venue, symbol) with a position or an open order: quantities and notionals at mark."""
        keys: dict[tuple[Venue, str], None] = {}
        for v, s, _ in self._positions:
            keys[(v, s)] = None
        for k in self._open:
            keys[k] = None
        out: list[Exposure] = []
        with localcontext(_CTX):
            for v, s in keys:
                if venue is not None and v is not venue:
                    continue
                sides = [self._positions.get((v, s, ps)) for ps in PositionSide]
                pos = [p for p in sides if p is not None and p.qty]
                long_q = sum((p.qty for p in pos if p.qty > 0), _ZERO)
                short_q = -sum((p.qty for p in pos if p.qty < 0), _ZERO)
                price = self._marks.get((v, s))
                if price is None:
                    price = pos[0].entry if pos else _ZERO
                orders = self.open_orders(v, s)
                buy = sum(
                    (t.remaining_qty for t in orders if t.order.side is Side.BUY and not t.order.reduce_only),
                    _ZERO,
                )
                sell = sum(
                    (
                        t.remaining_qty
                        for t in orders
                        if t.order.side is Side.SELL and not t.order.reduce_only
                    ),
                    _ZERO,
                )
                if not pos and not orders:
                    continue
                out.append(
                    Exposure(
                        venue=v,
                        symbol=s,
                        net_qty=long_q - short_q,
                        long_qty=long_q,
                        short_qty=short_q,
                        price=price,
                        gross_notional=(long_q + short_q) * price,
                        net_notional=(long_q - short_q) * price,
                        open_orders=len(orders),
                        open_buy_qty=buy,
                        open_sell_qty=sell,
                    )
                )
        return out

    def gross_notional(self) -> Decimal:
        return sum((e.gross_notional for e in self.exposure()), _ZERO)

    def net_notional(self) -> Decimal:
        return sum((e.net_notional for e in self.exposure()), _ZERO)

    def stats(self) -> dict[str, int]:
        out = dict(self._stats)
        out["orders_open"] = sum(len(c) for c in self._open.values())
        out["orders_held"] = len(self._orders)
        out["orders_retired_remembered"] = len(self._retired)
        out["fills_remembered"] = len(self._fills_seen)
        out["positions_open"] = sum(1 for p in self._positions.values() if p.qty)
        return out

    # ---- protective exits --------------------------------------------------------------------------------

    def set_exits(
        self,
        venue: Venue,
        symbol: str,
        *,
        entry_side: Side,
        position_side: PositionSide = PositionSide.BOTH,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        trailing_stop_bps: int | None = None,
        reference_price: Decimal | None = None,
    ) -> ProtectiveExits:
        """Set (replace) the exit levels of the position opened by ``entry_side`` orders. May be called
        before the entry fills; the exits arm when the position exists and disarm when it goes flat or
        flips (their venue orders are then listed by :meth:`take_stale_exit_orders`). A trailing stop's
        anchor starts at ``reference_price`` (else the mark, else the entry, else the first checked
        price) and follows the price in the position's favour."""
        long = entry_side is Side.BUY
        if position_side is (PositionSide.SHORT if long else PositionSide.LONG):
            raise ValueError(f"{entry_side} entries do not open a {position_side} position")
        for name, lvl in (("stop_loss", stop_loss), ("take_profit", take_profit)):
            if lvl is not None and lvl <= 0:
                raise ValueError(f"{name} must be > 0, got {lvl}")
        if stop_loss is not None and take_profit is not None:
            if not (stop_loss < take_profit if long else take_profit < stop_loss):
                raise ValueError(
                    f"stop_loss {stop_loss} and take_profit {take_profit} are on the wrong sides for a "
                    f"{'long' if long else 'short'}"
                )
        if trailing_stop_bps is not None and not 0 < trailing_stop_bps < 10_000:
            raise ValueError(f"trailing_stop_bps must be in 1..9999, got {trailing_stop_bps}")
        key = (venue, symbol, position_side)
        ex = self._exits.get(key)
        if ex is None or ex.long != long:
            if ex is not None:
                self._stale_exit_orders.extend((venue, symbol, cid) for cid in ex.orders.values())
            ex = _Exits(long)
            self._exits[key] = ex
        ex.stop_loss = stop_loss
        ex.take_profit = take_profit
        ex.trailing_bps = trailing_stop_bps
        ex.fired.clear()
        ex.anchor = None
        pos = self._positions.get(key)
        if trailing_stop_bps is not None:
            ex.anchor = reference_price or self._marks.get((venue, symbol))
            if ex.anchor is None and pos is not None and pos.qty:
                ex.anchor = pos.entry
        ex.armed = pos is not None and pos.qty != 0 and (pos.qty > 0) == long
        return self._exit_view(key, ex)

    def attach_exit_order(
        self,
        venue: Venue,
        symbol: str,
        kind: ExitKind,
        client_order_id: str,
        *,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> None:
        """Record the venue-side reduce-only conditional order placed for an exit."""
        ex = self._exits.get((venue, symbol, position_side))
        if ex is None:
            raise KeyError(f"no exits set for {venue} {symbol} {position_side}")
        old = ex.orders.get(kind)
        if old is not None and old != client_order_id:
            self._stale_exit_orders.append((venue, symbol, old))
        ex.orders[kind] = client_order_id

    def clear_exits(
        self, venue: Venue, symbol: str, *, position_side: PositionSide = PositionSide.BOTH
    ) -> list[str]:
        """Forget a position's exits; returns the client ids of their venue orders (cancel the open ones)."""
        ex = self._exits.pop((venue, symbol, position_side), None)
        return [] if ex is None else list(ex.orders.values())

    def rearm_exits(
        self, venue: Venue, symbol: str, *, position_side: PositionSide = PositionSide.BOTH
    ) -> None:
        """Let fired exits trigger again (e.g. the engine's closing order was rejected)."""
        ex = self._exits.get((venue, symbol, position_side))
        if ex is not None:
            ex.fired.clear()

    def exits(self, venue: Venue | None = None) -> list[ProtectiveExits]:
        return [self._exit_view(k, ex) for k, ex in self._exits.items() if venue is None or k[0] is venue]

    def exit_levels(
        self, venue: Venue, symbol: str, *, position_side: PositionSide = PositionSide.BOTH
    ) -> ProtectiveExits | None:
        ex = self._exits.get((venue, symbol, position_side))
        return None if ex is None else self._exit_view((venue, symbol, position_side), ex)

    def take_stale_exit_orders(self) -> list[tuple[Venue, str, str]]:
        """(venue, symbol, client order id) of exit orders whose position went flat, flipped or whose
        exits were replaced: cancel those still open. Each is returned once."""
        out, self._stale_exit_orders = self._stale_exit_orders, []
        return out

    def check_exits(self, symbol: str, price: Decimal, *, venue: Venue | None = None) -> list[ExitTrigger]:
        """The local exit watcher (the backup of the venue-side orders): feed it the mark or last price.
        Moves trailing anchors in the position's favour, then returns at most one trigger per position
        (stop-loss before trailing stop before take-profit). An exit that fired does not fire again until
        :meth:`rearm_exits` or :meth:`set_exits`."""
        out: list[ExitTrigger] = []
        for key, ex in self._exits.items():
            v, s, ps = key
            if s != symbol or (venue is not None and v is not venue) or not ex.armed:
                continue
            pos = self._positions.get(key)
            if pos is None or not pos.qty:
                continue
            long = ex.long
            if ex.trailing_bps is not None:
                if ex.anchor is None or (price > ex.anchor if long else price < ex.anchor):
                    ex.anchor = price
            crossed: list[tuple[ExitKind, Decimal]] = []
            for kind in _EXIT_PRIORITY:
                level = self._level(ex, kind)
                if level is None or kind in ex.fired:
                    continue
                if kind is ExitKind.TAKE_PROFIT:
                    hit = price >= level if long else price <= level
                else:
                    hit = price <= level if long else price >= level
                if hit:
                    crossed.append((kind, level))
            if not crossed:
                continue
            kind, level = crossed[0]
            ex.fired.update(k for k, _ in crossed)
            cid = ex.orders.get(kind)
            tracked = self._orders.get((v, cid)) if cid is not None else None
            out.append(
                ExitTrigger(
                    venue=v,
                    symbol=s,
                    position_side=ps,
                    kind=kind,
                    level=level,
                    price=price,
                    close_side=Side.SELL if long else Side.BUY,
                    qty=abs(pos.qty),
                    venue_order_client_id=cid,
                    backup=tracked is None or not tracked.is_open,
                )
            )
        return out

    # ---- internals ---------------------------------------------------------------------------------------

    @staticmethod
    def _level(ex: _Exits, kind: ExitKind) -> Decimal | None:
        if kind is ExitKind.STOP_LOSS:
            return ex.stop_loss
        if kind is ExitKind.TAKE_PROFIT:
            return ex.take_profit
        if ex.trailing_bps is None or ex.anchor is None:
            return None
        return _trail_level(ex.anchor, ex.trailing_bps, ex.long)

    def _exit_view(self, key: PosKey, ex: _Exits) -> ProtectiveExits:
        return ProtectiveExits(
            venue=key[0],
            symbol=key[1],
            position_side=key[2],
            long=ex.long,
            stop_loss=ex.stop_loss,
            take_profit=ex.take_profit,
            trailing_bps=ex.trailing_bps,
            trailing_anchor=ex.anchor,
            orders=tuple(ex.orders.items()),
            armed=ex.armed,
            fired=frozenset(ex.fired),
        )

    def _after_qty_change(self, pos: _Pos, before: Decimal) -> None:
        """Arm exits when their position appears; disarm them when it goes flat or flips."""
        ex = self._exits.get(pos.key)
        if ex is None:
            return
        now = pos.qty
        if now and (now > 0) == ex.long:
            if not ex.armed:
                ex.armed = True
                if ex.trailing_bps is not None and ex.anchor is None:
                    ex.anchor = pos.mark if pos.mark is not None else pos.entry
            return
        if before and (before > 0) == ex.long:  # was protecting this position; it is gone now
            venue, symbol, _ = pos.key
            self._stale_exit_orders.extend((venue, symbol, cid) for cid in ex.orders.values())
            del self._exits[pos.key]

    def _position(self, key: PosKey) -> _Pos:
        pos = self._positions.get(key)
        if pos is None:
            pos = _Pos(key)
            pos.mark = self._marks.get((key[0], key[1]))
            self._positions[key] = pos
        return pos

    def _view(self, pos: _Pos) -> PositionView:
        return PositionView(
            venue=pos.key[0],
            symbol=pos.key[1],
            position_side=pos.key[2],
            qty=pos.qty,
            entry_price=pos.entry,
            mark_price=pos.mark,
            unrealized_pnl=pos.unrealized(),
            realized_pnl=pos.realized,
            fees=pos.fees,
            funding=pos.funding,
            external=pos.external,
            ts_ms=pos.ts_ms,
        )

    def _matches(self, pos: _Pos, p: Position) -> bool:
        if pos.qty != p.qty:
            return False
        if not p.qty:
            return True
        return self._entry_close(pos.entry, p.entry_price)

    def _entry_close(self, local: Decimal, remote: Decimal) -> bool:
        with localcontext(_CTX):
            return abs(local - remote) <= abs(remote) * self.entry_tolerance

    def _correct(self, pos: _Pos, p: Position, *, kind: DiffKind, qty_severity: Severity) -> list[Difference]:
        venue, symbol, side = pos.key
        out: list[Difference] = []
        if pos.qty != p.qty:
            out.append(
                Difference(
                    kind=kind,
                    severity=qty_severity,
                    venue=venue,
                    symbol=symbol,
                    ref=side.value,
                    field="qty",
                    local=dec_str(pos.qty),
                    remote=dec_str(p.qty),
                )
            )
        if p.qty and pos.qty and not self._entry_close(pos.entry, p.entry_price):
            out.append(
                Difference(
                    kind=kind,
                    severity=Severity.WARNING,
                    venue=venue,
                    symbol=symbol,
                    ref=side.value,
                    field="entry_price",
                    local=money_str(pos.entry),
                    remote=money_str(p.entry_price),
                )
            )
        if out:
            self._stats["positions_corrected"] += 1
            before = pos.qty
            pos.set_from_venue(p.qty, p.entry_price)
            pos.ts_ms = max(pos.ts_ms, p.ts_ms)
            self._after_qty_change(pos, before)
        return out

    def _reconcile_order(self, o: Order, diffs: list[Difference], needs: list[tuple[str, str]]) -> None:
        key = (o.venue, o.client_order_id)
        cur = self._orders.get(key)

        def diff(kind: DiffKind, sev: Severity, fld: str, local: str, remote: str, detail: str = "") -> None:
            diffs.append(
                Difference(
                    kind=kind,
                    severity=sev,
                    venue=o.venue,
                    symbol=o.symbol,
                    ref=o.client_order_id,
                    field=fld,
                    local=local,
                    remote=remote,
                    detail=detail,
                )
            )

        if cur is None:
            self._store(TrackedOrder(order=o, external=True, created_ms=o.ts_ms))
            self._stats["orders_adopted"] += 1
            detail = "terminal in the OMS's memory; open on the venue" if key in self._retired else ""
            diff(DiffKind.ORDER_ADOPTED, Severity.INFO, "status", "absent", o.status.value, detail)
            return
        c = cur.order
        identity = ("symbol", "side", "position_side", "reduce_only")
        for f in identity:
            if getattr(c, f) != getattr(o, f):
                diff(
                    DiffKind.ORDER_CONFLICT,
                    Severity.IRRECONCILABLE,
                    f,
                    str(getattr(c, f)),
                    str(getattr(o, f)),
                )
                needs.append((c.symbol, c.client_order_id))
                return
        if _RANK[c.status] == _TERMINAL and not cur.closed_out:
            diff(
                DiffKind.ORDER_CONFLICT,
                Severity.WARNING,
                "status",
                c.status.value,
                o.status.value,
                "terminal in the OMS, open on the venue: query it",
            )
            needs.append((c.symbol, c.client_order_id))
            return
        if o.filled_qty < c.filled_qty:
            diff(
                DiffKind.ORDER_CONFLICT,
                Severity.WARNING,
                "filled_qty",
                dec_str(c.filled_qty),
                dec_str(o.filled_qty),
                "the venue reports less filled than the OMS saw: query it",
            )
            needs.append((c.symbol, c.client_order_id))
            return
        changed = [
            (f, getattr(c, f), getattr(o, f))
            for f in ("status", "filled_qty", "qty", "price", "trigger_price")
            if getattr(c, f) != getattr(o, f)
        ]
        if cur.closed_out:
            changed.insert(0, ("closed_out", True, False))
        for f, lv, rv in changed:
            diff(DiffKind.ORDER_UPDATED, Severity.INFO, f, _s(lv), _s(rv))
        if changed:
            self._store(replace(cur, order=_merge(c, o), closed_out=False))

    def _reconcile_positions(self, venue: Venue, positions: list[Position], diffs: list[Difference]) -> None:
        by_key: dict[PosKey, Position] = {}
        modes: dict[str, set[PositionSide]] = {}
        for p in positions:
            if p.venue is not venue:
                raise ValueError(f"position {p.symbol} is on {p.venue}, not {venue}")
            bad_sign = (p.side is PositionSide.LONG and p.qty < 0) or (
                p.side is PositionSide.SHORT and p.qty > 0
            )
            if bad_sign:
                diffs.append(
                    Difference(
                        kind=DiffKind.POSITION_CONFLICT,
                        severity=Severity.IRRECONCILABLE,
                        venue=venue,
                        symbol=p.symbol,
                        ref=p.side.value,
                        field="qty",
                        local="",
                        remote=dec_str(p.qty),
                        detail=f"a {p.side.value} position with the wrong sign",
                    )
                )
                continue
            if p.qty:
                by_key[(venue, p.symbol, p.side)] = p
                modes.setdefault(p.symbol, set()).add(p.side)
        for symbol, sides in modes.items():
            if PositionSide.BOTH in sides and len(sides) > 1:
                diffs.append(
                    Difference(
                        kind=DiffKind.POSITION_CONFLICT,
                        severity=Severity.IRRECONCILABLE,
                        venue=venue,
                        symbol=symbol,
                        ref="both",
                        field="position_side",
                        local="",
                        remote=",".join(sorted(s.value for s in sides)),
                        detail="one-way and hedge-mode positions at once",
                    )
                )
        for key, p in by_key.items():
            pos = self._positions.get(key)
            adopted = pos is None or not pos.qty
            pos = self._position(key)
            pos.pending = None
            pos.venue_ts_ms = max(pos.venue_ts_ms, p.ts_ms)
            if pos.mark is None and p.mark_price:
                pos.mark = p.mark_price
            if adopted:
                pos.external = True
                self._stats["positions_corrected"] += 1
                diffs.append(
                    Difference(
                        kind=DiffKind.POSITION_ADOPTED,
                        severity=Severity.WARNING,
                        venue=venue,
                        symbol=p.symbol,
                        ref=p.side.value,
                        field="qty",
                        local="0",
                        remote=dec_str(p.qty),
                        detail=f"entry {money_str(p.entry_price)}",
                    )
                )
                before = pos.qty
                pos.set_from_venue(p.qty, p.entry_price)
                pos.ts_ms = max(pos.ts_ms, p.ts_ms)
                self._after_qty_change(pos, before)
            else:
                diffs.extend(
                    self._correct(pos, p, kind=DiffKind.POSITION_CORRECTED, qty_severity=Severity.WARNING)
                )
        for key, pos in list(self._positions.items()):
            if key[0] is not venue or key in by_key:
                continue
            pos.pending = None
            if pos.qty:
                diffs.append(
                    Difference(
                        kind=DiffKind.POSITION_CLOSED,
                        severity=Severity.WARNING,
                        venue=venue,
                        symbol=key[1],
                        ref=key[2].value,
                        field="qty",
                        local=dec_str(pos.qty),
                        remote="0",
                    )
                )
                self._stats["positions_corrected"] += 1
                before = pos.qty
                pos.set_from_venue(_ZERO, _ZERO)
                self._after_qty_change(pos, before)

    def _store(self, tracked: TrackedOrder) -> None:
        key = tracked.key
        self._orders[key] = tracked
        sym = (tracked.venue, tracked.symbol)
        if tracked.is_open:
            self._open.setdefault(sym, {})[tracked.client_order_id] = None
        elif sym in self._open:
            self._open[sym].pop(tracked.client_order_id, None)
            if not self._open[sym]:
                del self._open[sym]
        if _RANK[tracked.status] == _TERMINAL and not tracked.closed_out:
            self._closed_fifo[key] = None
            while len(self._closed_fifo) > self._max_closed:
                old, _ = self._closed_fifo.popitem(last=False)
                gone = self._orders.pop(old, None)
                self._retired.add(old, gone.order.ts_ms if gone is not None else 0)
        else:
            self._closed_fifo.pop(key, None)


def _s(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return dec_str(v)
    if isinstance(v, StrEnum):
        return v.value
    return str(v).lower() if isinstance(v, bool) else str(v)


def _judge(cur: TrackedOrder, new: Order) -> UpdateResult:
    """Whether ``new`` moves ``cur`` forward (APPLIED), repeats it (DUPLICATE) or is behind it (STALE)."""
    o = cur.order
    same = (
        o.status is new.status
        and o.filled_qty == new.filled_qty
        and o.qty == new.qty
        and o.price == new.price
        and o.trigger_price == new.trigger_price
    )
    if cur.closed_out:
        # The OMS lost track of it; the venue's word wins (the filled quantity is merged with max()).
        return UpdateResult.APPLIED
    if same:
        return UpdateResult.DUPLICATE
    rc, rn = _RANK[o.status], _RANK[new.status]
    if rc == _TERMINAL:
        return UpdateResult.STALE
    if rn < rc:
        return UpdateResult.STALE
    if new.filled_qty < o.filled_qty and rn < _TERMINAL:
        return UpdateResult.STALE
    if rn == rc and new.ts_ms < o.ts_ms:
        return UpdateResult.STALE
    return UpdateResult.APPLIED


def _merge(cur: Order, new: Order) -> Order:
    """``new`` with the filled quantity never going backwards (and the ids the OMS already knows)."""
    filled, avg = (new.filled_qty, new.avg_price)
    if cur.filled_qty > new.filled_qty:
        filled, avg = cur.filled_qty, cur.avg_price
    return replace(
        new,
        filled_qty=filled,
        avg_price=avg,
        venue_order_id=new.venue_order_id or cur.venue_order_id,
        reason=new.reason or cur.reason,
    )


def _synthetic_id(venue_order_id: str) -> str:
    return f"venue:{venue_order_id}"


def _named(order: Order) -> Order:
    """An order placed without a client id (web UI, another tool) is keyed ``venue:<venue order id>``."""
    if order.client_order_id:
        return order
    return replace(order, client_order_id=_synthetic_id(order.venue_order_id))


def _order_from_fill(fill: Fill, filled: Decimal) -> Order:
    """An external order as far as its fills tell (``filled`` = the sum of its fills so far)."""
    filled = filled or fill.qty
    return Order(
        venue=fill.venue,
        symbol=fill.symbol,
        client_order_id=fill.client_order_id,
        venue_order_id=fill.venue_order_id,
        side=fill.side,
        type=OrderType.MARKET,
        tif=TimeInForce.GTC,
        qty=filled,
        price=None,
        filled_qty=filled,
        avg_price=fill.price,
        status=OrderStatus.PARTIALLY_FILLED,
        reduce_only=False,
        position_side=fill.position_side,
        trigger_price=None,
        ts_ms=fill.ts_ms,
        reason="adopted from a fill",
    )
