"""The local venue's exchange core: matching, accounts, conditional orders, mark price, funding and
liquidation, all in memory, synchronous and deterministic given a seed and a clock.

:class:`Exchange` implements :class:`~engine.venue.model.ExchangeCore`. Prices and sizes are integer
ticks and lots inside the book (:mod:`engine.venue.matching`); money is exact ``Decimal`` quantized
to 1e-8 USDT (:mod:`engine.venue.accounts`). Every state change is reported to the listeners as a
:data:`~engine.venue.model.VenueEvent`, in causal order; each order action and each market step ends
with at most one :class:`~engine.venue.model.DepthEvent` per symbol, so ``depth()`` is always
consistent with the last DepthEvent's ``last_id``.

Market time moves only in :meth:`Exchange.advance`: the crowd (:mod:`engine.venue.market`) steps
every ``step_ms`` of venue time; after each step come conditional-order triggers, funding at each
interval boundary crossed, and liquidations. A call that skips more than ``max_catchup_steps``
steps (a test advancing hours) settles the skipped funding boundaries at the current mark and only
runs the last ``max_catchup_steps`` market steps.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from engine.venue.accounts import MONEY, Account, Ledger, PositionState, money
from engine.venue.generator import MarketGenerator
from engine.venue.instruments import load_instruments, load_start_prices
from engine.venue.market import CrowdSource, GeneratorSource, MarkState
from engine.venue.matching import Entry, Execution, OrderBook
from engine.venue.model import (
    AccountState,
    BalanceEvent,
    Fill,
    FundingEvent,
    InstrumentSpec,
    Level,
    Listener,
    MarginMode,
    MarkPriceEvent,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    PositionEvent,
    PositionSide,
    RejectReason,
    Side,
    TimeInForce,
    TradeEvent,
    TriggerBy,
    VenueEvent,
    VenueOrder,
    VenueReject,
)

__all__ = ["Exchange"]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)
_CONDITIONAL = frozenset({OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})
_RECENT_CLOSED = 1000
_FILLS_KEPT = 2000
_TRADES_KEPT = 1000
_CID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/")


class _Order:
    """The core's record of one order: the public :class:`VenueOrder` plus integer state."""

    __slots__ = (
        "client",
        "entry",
        "filled",
        "is_buy",
        "lots",
        "open_lots",
        "price_t",
        "reducing",
        "reserved",
        "sym",
        "trigger_t",
        "vo",
    )

    def __init__(self, *, vo: VenueOrder, client: _Client, sym: _Symbol, lots: int, price_t: int) -> None:
        self.vo = vo
        self.client = client
        self.sym = sym
        self.is_buy = vo.side is Side.BUY
        self.lots = lots
        self.filled = 0
        self.price_t = price_t
        self.entry: Entry | None = None
        self.open_lots = lots
        self.reserved = _ZERO
        self.reducing = False
        self.trigger_t = 0

    @property
    def leaves(self) -> int:
        return self.lots - self.filled


class _Client:
    """An account with its orders and fills."""

    __slots__ = ("account", "by_cid", "fills", "open", "orders", "recent")

    def __init__(self, account: Account) -> None:
        self.account = account
        self.orders: dict[int, _Order] = {}  # open and recently closed, by order id
        self.by_cid: dict[str, _Order] = {}  # latest order per client id
        self.open: dict[str, dict[int, _Order]] = {}  # symbol -> open orders
        self.recent: deque[int] = deque()  # closed order ids, oldest first
        self.fills: deque[Fill] = deque(maxlen=_FILLS_KEPT)


class _Symbol:
    __slots__ = (
        "book",
        "conditionals",
        "funding_interval",
        "mark",
        "next_funding_ms",
        "next_mark_ms",
        "source",
        "spec",
        "trade_id",
        "trades",
    )

    def __init__(
        self, *, spec: InstrumentSpec, source: CrowdSource, mark: MarkState, funding_interval: int
    ) -> None:
        self.spec = spec
        self.source = source
        self.mark = mark
        self.book = OrderBook(symbol=spec.symbol, tick_size=spec.tick_size, lot_size=spec.lot_size)
        self.conditionals: dict[int, _Order] = {}
        self.trade_id = 0
        self.trades: deque[TradeEvent] = deque(maxlen=_TRADES_KEPT)
        self.funding_interval = funding_interval
        self.next_funding_ms = 0
        self.next_mark_ms = 0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Exchange:
    """The in-memory exchange core behind both wire front-ends (see the module docstring)."""

    def __init__(
        self,
        *,
        instruments: dict[str, InstrumentSpec] | None = None,
        seed: int = 7,
        clock: Callable[[], int] | None = None,
        config: Mapping[str, Any] | None = None,
        start_prices: Mapping[str, Decimal] | None = None,
        sources: Mapping[str, CrowdSource] | None = None,
        step_ms: int = 100,
        funding_interval_ms: int | None = None,
        mark_interval_ms: int = 1000,
        max_open_orders: int = 200,
        max_catchup_steps: int = 600,
        premium_weight: Decimal = Decimal("0.05"),
        levels: int = 100,
    ) -> None:
        if step_ms <= 0:
            raise ValueError(f"step_ms: must be > 0, got {step_ms}")
        if funding_interval_ms is not None and funding_interval_ms <= 0:
            raise ValueError(f"funding_interval_ms: must be > 0, got {funding_interval_ms}")
        if max_catchup_steps < 1:
            raise ValueError(f"max_catchup_steps: must be >= 1, got {max_catchup_steps}")
        self.instruments: dict[str, InstrumentSpec] = (
            dict(instruments) if instruments is not None else load_instruments(config)
        )
        prices = dict(start_prices) if start_prices is not None else {}
        missing = {s: spec for s, spec in self.instruments.items() if s not in prices}
        if missing:
            prices.update(load_start_prices(config, missing))
        self._clock: Callable[[], int] = clock if clock is not None else _wall_ms
        self._listeners: list[Listener] = []
        self._clients: dict[str, _Client] = {}
        self._step_ms = step_ms
        self._mark_interval = mark_interval_ms
        self._max_open = max_open_orders
        self._max_catchup = max_catchup_steps
        self._order_seq = 0
        self._marks: dict[str, Decimal] = {}
        self._syms: dict[str, _Symbol] = {}
        now = self._clock()
        for i, (symbol, spec) in enumerate(sorted(self.instruments.items())):
            source: CrowdSource
            if sources is not None and symbol in sources:
                source = sources[symbol]
            else:
                gen = MarketGenerator(
                    symbol=symbol,
                    tick_size=str(spec.tick_size),
                    lot_size=str(spec.lot_size),
                    start_price=str(prices[symbol]),
                    seed=seed * 1000 + i,
                    levels=levels,
                    start_ms=now,
                )
                source = GeneratorSource(gen)
            interval = funding_interval_ms if funding_interval_ms is not None else spec.funding_interval_ms
            sym = _Symbol(
                spec=spec,
                source=source,
                mark=MarkState(
                    tick_size=spec.tick_size, start_price=prices[symbol], premium_weight=premium_weight
                ),
                funding_interval=interval,
            )
            sym.next_funding_ms = (now // interval + 1) * interval
            sym.next_mark_ms = now
            bids, asks = source.book()
            for p, q in bids:
                sym.book.add(True, p, Entry(None, q))
            for p, q in asks:
                sym.book.add(False, p, Entry(None, q))
            sym.book.flush(now)  # the initial book consumes the first update ids; nobody listens yet
            sym.mark.update(source.touch())
            self._marks[symbol] = sym.mark.mark_price
            self._syms[symbol] = sym
        self._next_step_ms = now + step_ms

    # ---- plumbing -------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self._clock()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: VenueEvent) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("venue_listener_failed")

    def _client(self, account: str) -> _Client:
        c = self._clients.get(account)
        if c is None:
            raise VenueReject(RejectReason.INVALID_PARAM, f"unknown account {account!r}")
        return c

    def _sym(self, symbol: str) -> _Symbol:
        s = self._syms.get(symbol)
        if s is None:
            raise VenueReject(RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        return s

    def source(self, symbol: str) -> CrowdSource:
        """The crowd source driving ``symbol`` (tests script a ManualSource through it)."""
        return self._sym(symbol).source

    # ---- accounts -------------------------------------------------------------------------------

    def add_account(self, *, api_key: str, api_secret: str, deposit: Decimal) -> None:
        if not api_key or not api_secret:
            raise ValueError("api_key and api_secret must be non-empty")
        if deposit < 0:
            raise ValueError(f"deposit must be >= 0, got {deposit}")
        now = self._clock()
        client = self._clients.get(api_key)
        if client is None:
            client = _Client(Account(api_key=api_key, api_secret=api_secret))
            self._clients[api_key] = client
        elif client.account.api_secret != api_secret:
            raise ValueError(f"account {api_key!r} exists with another secret")
        if deposit:
            client.account.deposit(deposit)
            client.account.updated_ms = now
            self._balance_event(client.account, "DEPOSIT", now)

    def deposit(self, account: str, amount: Decimal) -> None:
        """Credit ``amount`` USDT to an existing account (a deposit term of the ledger)."""
        if amount <= 0:
            raise VenueReject(RejectReason.INVALID_PARAM, "deposit must be > 0")
        acct = self._client(account).account
        now = self._clock()
        acct.deposit(amount)
        acct.updated_ms = now
        self._balance_event(acct, "DEPOSIT", now)

    def accounts(self) -> list[str]:
        return list(self._clients)

    def secret_for(self, api_key: str) -> str | None:
        c = self._clients.get(api_key)
        return None if c is None else c.account.api_secret

    def account_state(self, account: str) -> AccountState:
        return self._client(account).account.state(self._marks, self.instruments, self._clock())

    def positions(self, account: str, symbol: str | None = None) -> list[Position]:
        """The account's open (non-zero) positions, optionally of one symbol."""
        acct = self._client(account).account
        if symbol is not None:
            self._sym(symbol)
        now = self._clock()
        return [
            acct.public_position(p, self._marks, self.instruments, now)
            for p in acct.positions.values()
            if p.qty and (symbol is None or p.symbol == symbol)
        ]

    def ledger(self, account: str) -> Ledger:
        return self._client(account).account.ledger()

    def leverage(self, account: str, symbol: str) -> int:
        return self._client(account).account.leverage(symbol, self._sym(symbol).spec)

    def set_leverage(self, account: str, symbol: str, leverage: int) -> None:
        client = self._client(account)
        spec = self._sym(symbol).spec
        acct = client.account
        if (
            isinstance(leverage, bool)
            or not isinstance(leverage, int)
            or not 1 <= leverage <= spec.max_leverage
        ):
            raise VenueReject(
                RejectReason.LEVERAGE_INVALID, f"leverage must be 1..{spec.max_leverage}, got {leverage!r}"
            )
        if acct.leverage(symbol, spec) == leverage:
            raise VenueReject(RejectReason.NOT_MODIFIED, f"leverage already {leverage}")
        old = acct.leverages.get(symbol)
        acct.leverages[symbol] = leverage
        if self._margin_breached_by_settings(acct):
            if old is None:
                del acct.leverages[symbol]
            else:
                acct.leverages[symbol] = old
            raise VenueReject(RejectReason.INSUFFICIENT_MARGIN, "not enough margin for this leverage")
        for order in client.open.get(symbol, {}).values():
            self._reserve(order)
        now = self._clock()
        for pos in acct.positions.values():
            if pos.symbol == symbol and pos.qty:
                if acct.margin_mode(symbol) is MarginMode.ISOLATED:
                    continue  # isolated margin stays as allocated
                self._position_event(acct, pos, now)

    def _margin_breached_by_settings(self, acct: Account) -> bool:
        _, cross_upnl, cross_im, _, iso = acct.cross_terms(self._marks, self.instruments)
        return acct.wallet + min(cross_upnl, _ZERO) - cross_im - iso < 0 and acct.has_position()

    def margin_mode(self, account: str, symbol: str) -> MarginMode:
        self._sym(symbol)
        return self._client(account).account.margin_mode(symbol)

    def set_margin_mode(self, account: str, symbol: str, mode: MarginMode) -> None:
        client = self._client(account)
        self._sym(symbol)
        acct = client.account
        if acct.margin_mode(symbol) is mode:
            raise VenueReject(RejectReason.NOT_MODIFIED, f"margin mode already {mode.value}")
        if client.open.get(symbol):
            raise VenueReject(RejectReason.MODE_CHANGE_OPEN_ORDERS, "open orders exist on this symbol")
        if acct.has_position(symbol):
            raise VenueReject(RejectReason.MODE_CHANGE_POSITION_EXISTS, "a position exists on this symbol")
        acct.margin_modes[symbol] = mode

    def set_position_mode(self, account: str, *, hedge: bool) -> None:
        client = self._client(account)
        acct = client.account
        if acct.hedge_mode == hedge:
            raise VenueReject(
                RejectReason.NOT_MODIFIED, f"position mode already {'hedge' if hedge else 'one-way'}"
            )
        if any(client.open.values()):
            raise VenueReject(RejectReason.MODE_CHANGE_OPEN_ORDERS, "open orders exist")
        if acct.has_position():
            raise VenueReject(RejectReason.MODE_CHANGE_POSITION_EXISTS, "a position exists")
        acct.hedge_mode = hedge
        acct.positions = {k: p for k, p in acct.positions.items() if p.qty}

    # ---- events ---------------------------------------------------------------------------------

    def _balance_event(self, acct: Account, reason: str, now: int) -> None:
        if self._listeners:
            self._emit(
                BalanceEvent(state=acct.state(self._marks, self.instruments, now), reason=reason, ts_ms=now)
            )

    def _position_event(self, acct: Account, pos: PositionState, now: int) -> None:
        if self._listeners:
            self._emit(
                PositionEvent(
                    position=acct.public_position(pos, self._marks, self.instruments, now), ts_ms=now
                )
            )

    def _order_event(self, order: _Order, fill: Fill | None, now: int) -> None:
        if self._listeners:
            self._emit(OrderEvent(order=order.vo.snapshot(), fill=fill, ts_ms=now))

    def _flush(self, sym: _Symbol, now: int) -> None:
        ev = sym.book.flush(now)
        if ev is not None and self._listeners:
            self._emit(ev)

    # ---- order bookkeeping ----------------------------------------------------------------------

    def _find(
        self, client: _Client, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> _Order:
        if order_id is None and client_order_id is None:
            raise VenueReject(RejectReason.INVALID_PARAM, "order_id or client_order_id is required")
        order: _Order | None
        if order_id is not None:
            order = client.orders.get(order_id)
            if (
                order is not None
                and client_order_id is not None
                and order.vo.client_order_id != client_order_id
            ):
                order = None
        else:
            assert client_order_id is not None
            order = client.by_cid.get(client_order_id)
        if order is None or order.vo.symbol != symbol:
            raise VenueReject(RejectReason.UNKNOWN_ORDER, "order does not exist")
        return order

    def _close(self, order: _Order) -> None:
        """Move an order that just reached a final status out of the open set."""
        client = order.client
        open_orders = client.open.get(order.vo.symbol)
        if open_orders is not None:
            open_orders.pop(order.vo.order_id, None)
        order.sym.conditionals.pop(order.vo.order_id, None)
        if order.reserved:
            client.account.order_margin -= order.reserved
            order.reserved = _ZERO
        client.recent.append(order.vo.order_id)
        while len(client.recent) > _RECENT_CLOSED:
            old = client.orders.pop(client.recent.popleft(), None)
            if old is not None and client.by_cid.get(old.vo.client_order_id) is old:
                del client.by_cid[old.vo.client_order_id]

    def _reserve(self, order: _Order) -> None:
        """Initial margin held by a resting order for the part of it that opens a position."""
        if order.entry is None or order.reducing:
            want = _ZERO
        else:
            acct = order.client.account
            spec = order.sym.spec
            lots = min(order.open_lots, order.leaves)
            want = money(
                spec.lot_size * lots * spec.tick_size * order.price_t / acct.leverage(spec.symbol, spec)
            )
        if want != order.reserved:
            order.client.account.order_margin += want - order.reserved
            order.reserved = want

    # ---- validation -----------------------------------------------------------------------------

    def _ticks(self, spec: InstrumentSpec, price: Decimal, what: str) -> int:
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise VenueReject(RejectReason.INVALID_PARAM, f"{what} must be a positive decimal")
        t = price / spec.tick_size
        if t != t.to_integral_value():
            raise VenueReject(
                RejectReason.PRICE_OFF_TICK, f"{what} {price} is not a multiple of {spec.tick_size}"
            )
        if price < spec.min_price or price > spec.max_price:
            raise VenueReject(
                RejectReason.PRICE_OUT_OF_RANGE,
                f"{what} {price} outside [{spec.min_price}, {spec.max_price}]",
            )
        return int(t)

    def _lots(self, spec: InstrumentSpec, qty: Decimal, *, market: bool) -> int:
        if not isinstance(qty, Decimal) or not qty.is_finite():
            raise VenueReject(RejectReason.INVALID_PARAM, "qty must be a decimal")
        if qty <= 0:
            raise VenueReject(RejectReason.QTY_TOO_SMALL, f"qty {qty} must be > 0")
        n = qty / spec.lot_size
        if n != n.to_integral_value():
            raise VenueReject(RejectReason.QTY_OFF_STEP, f"qty {qty} is not a multiple of {spec.lot_size}")
        if qty < spec.min_qty:
            raise VenueReject(RejectReason.QTY_TOO_SMALL, f"qty {qty} below min {spec.min_qty}")
        cap = spec.max_market_qty if market else spec.max_qty
        if qty > cap:
            raise VenueReject(RejectReason.QTY_TOO_LARGE, f"qty {qty} above max {cap}")
        return int(n)

    def _position_qty(self, acct: Account, symbol: str, pside: PositionSide) -> Decimal:
        pos = acct.positions.get((symbol, pside))
        return _ZERO if pos is None else pos.qty

    def _closable_lots(self, acct: Account, sym: _Symbol, pside: PositionSide, is_buy: bool) -> int:
        """Lots of an order on this side that would reduce the current position."""
        q = self._position_qty(acct, sym.spec.symbol, pside)
        if not q or (q > 0) == is_buy:
            return 0
        return int(abs(q) / sym.spec.lot_size)

    # ---- orders ---------------------------------------------------------------------------------

    def place_order(self, account: str, request: OrderRequest) -> VenueOrder:
        client = self._client(account)
        acct = client.account
        sym = self._sym(request.symbol)
        spec = sym.spec
        req = request
        now = self._clock()
        otype = req.type
        conditional = otype in _CONDITIONAL
        is_buy = req.side is Side.BUY
        pside = req.position_side
        if acct.hedge_mode:
            if pside is PositionSide.BOTH:
                raise VenueReject(RejectReason.POSITION_SIDE_MISMATCH, "hedge mode needs LONG or SHORT")
            hedge_close = (pside is PositionSide.LONG) != is_buy
        else:
            if pside is not PositionSide.BOTH:
                raise VenueReject(RejectReason.POSITION_SIDE_MISMATCH, "one-way mode needs BOTH")
            hedge_close = False
        if acct.hedge_mode and req.reduce_only and not hedge_close:
            raise VenueReject(RejectReason.REDUCE_ONLY_INCREASES, "reduce-only would open a position")
        if req.close_position and not conditional:
            raise VenueReject(
                RejectReason.INVALID_PARAM, "close_position needs STOP_MARKET or TAKE_PROFIT_MARKET"
            )
        reducing = req.reduce_only or req.close_position or hedge_close

        # price, trigger, quantity filters
        price_t = 0
        trigger_t = 0
        if otype is OrderType.LIMIT:
            if req.price is None:
                raise VenueReject(RejectReason.INVALID_PARAM, "LIMIT needs a price")
            price_t = self._ticks(spec, req.price, "price")
            mark = sym.mark.mark_price
            if req.price > mark * spec.percent_price_up or req.price < mark * spec.percent_price_down:
                raise VenueReject(
                    RejectReason.PRICE_OUT_OF_RANGE, f"price {req.price} outside the band around mark {mark}"
                )
        elif req.price is not None:
            raise VenueReject(RejectReason.INVALID_PARAM, f"{otype.value} takes no price")
        if conditional:
            if req.trigger_price is None:
                raise VenueReject(RejectReason.INVALID_PARAM, f"{otype.value} needs a trigger price")
            trigger_t = self._ticks(spec, req.trigger_price, "trigger price")
        elif req.trigger_price is not None:
            raise VenueReject(RejectReason.INVALID_PARAM, f"{otype.value} takes no trigger price")
        if req.close_position:
            if req.qty is not None:
                raise VenueReject(RejectReason.INVALID_PARAM, "close_position takes no qty")
            lots = 0
        else:
            if req.qty is None:
                raise VenueReject(RejectReason.INVALID_PARAM, "qty is required")
            lots = self._lots(spec, req.qty, market=otype is not OrderType.LIMIT)

        # client order id
        cid = req.client_order_id
        if cid is not None:
            if not 1 <= len(cid) <= 36 or not set(cid) <= _CID_OK:
                raise VenueReject(RejectReason.INVALID_PARAM, f"client order id {cid!r} is malformed")
            prev = client.by_cid.get(cid)
            if prev is not None and prev.vo.is_open:
                raise VenueReject(RejectReason.DUPLICATE_CLIENT_ID, f"client order id {cid!r} is in use")
        open_orders = client.open.get(req.symbol)
        if open_orders is not None and len(open_orders) >= self._max_open:
            raise VenueReject(
                RejectReason.TOO_MANY_ORDERS, f"at most {self._max_open} open orders per symbol"
            )

        if conditional:
            ref = spec.tick_size * trigger_t
            cur = sym.mark.mark_price if req.trigger_by is TriggerBy.MARK else sym.mark.last_price
            if self._triggered(otype, is_buy, trigger_t, cur, spec):
                raise VenueReject(
                    RejectReason.WOULD_TRIGGER_IMMEDIATELY,
                    f"trigger {ref} vs current {cur} would trigger now",
                )
            if lots and not reducing and ref * spec.lot_size * lots < spec.min_notional:
                raise VenueReject(RejectReason.MIN_NOTIONAL, f"notional below {spec.min_notional}")
        else:
            if reducing:
                closable = self._closable_lots(acct, sym, pside, is_buy)
                if closable == 0:
                    raise VenueReject(
                        RejectReason.REDUCE_ONLY_INCREASES, "no position to reduce on this side"
                    )
                lots = min(lots, closable)
                open_lots = 0
            else:
                open_lots = lots - self._closable_lots(acct, sym, pside, is_buy)
                if open_lots < 0:
                    open_lots = 0
            if otype is OrderType.LIMIT:
                ref = spec.tick_size * price_t
            else:
                best = sym.book.best_ask() if is_buy else sym.book.best_bid()
                ref = spec.tick_size * best if best is not None else sym.mark.mark_price
            notional = ref * spec.lot_size * lots
            if not reducing and notional < spec.min_notional:
                raise VenueReject(RejectReason.MIN_NOTIONAL, f"notional {notional} below {spec.min_notional}")
            if open_lots:
                open_notional = ref * spec.lot_size * open_lots
                need = money(open_notional / acct.leverage(req.symbol, spec) + open_notional * spec.taker_fee)
                avail = acct.available(self._marks, self.instruments)
                if need > avail:
                    raise VenueReject(RejectReason.INSUFFICIENT_MARGIN, f"needs {need}, available {avail}")
            if otype is OrderType.LIMIT:
                if req.tif is TimeInForce.POST_ONLY and sym.book.would_cross(is_buy, price_t):
                    raise VenueReject(
                        RejectReason.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity"
                    )
                if req.tif is TimeInForce.FOK and sym.book.available(is_buy, price_t, lots) < lots:
                    raise VenueReject(RejectReason.FOK_NOT_FILLED, "FOK order cannot be filled in full")

        # accepted
        self._order_seq += 1
        oid = self._order_seq
        vo = VenueOrder(
            order_id=oid,
            client_order_id=cid if cid is not None else f"auto-{oid}",
            account=account,
            symbol=req.symbol,
            side=req.side,
            type=otype,
            tif=req.tif
            if otype is OrderType.LIMIT
            else TimeInForce.IOC
            if not conditional
            else TimeInForce.GTC,
            qty=spec.lot_size * lots,
            price=spec.tick_size * price_t if price_t else None,
            trigger_price=spec.tick_size * trigger_t if trigger_t else None,
            trigger_by=req.trigger_by,
            reduce_only=req.reduce_only,
            close_position=req.close_position,
            position_side=pside,
            status=OrderStatus.UNTRIGGERED if conditional else OrderStatus.NEW,
            created_ms=now,
            updated_ms=now,
        )
        order = _Order(vo=vo, client=client, sym=sym, lots=lots, price_t=price_t)
        order.reducing = reducing
        order.trigger_t = trigger_t
        client.orders[oid] = order
        client.by_cid[vo.client_order_id] = order
        client.open.setdefault(req.symbol, {})[oid] = order
        if conditional:
            sym.conditionals[oid] = order
            self._order_event(order, None, now)
            return vo.snapshot()
        order.open_lots = open_lots
        self._order_event(order, None, now)
        self._execute(order, now)
        self._after_action(sym, now)
        return vo.snapshot()

    @staticmethod
    def _triggered(
        otype: OrderType, is_buy: bool, trigger_t: int, cur: Decimal, spec: InstrumentSpec
    ) -> bool:
        trig = spec.tick_size * trigger_t
        if otype is OrderType.STOP_MARKET:
            return cur >= trig if is_buy else cur <= trig
        return cur <= trig if is_buy else cur >= trig

    def _execute(self, order: _Order, now: int) -> None:
        """Match a new (or re-priced) order as taker; rest or expire the remainder."""
        sym = order.sym
        vo = order.vo
        is_limit = vo.type is OrderType.LIMIT
        left, execs = sym.book.match(order.is_buy, order.price_t if is_limit else None, order.leaves)
        self._settle(sym, order, order.is_buy, execs, now)
        if not vo.is_open:
            return
        if left and is_limit and vo.tif in (TimeInForce.GTC, TimeInForce.POST_ONLY):
            entry = Entry(order, order.leaves)
            order.entry = entry
            sym.book.add(order.is_buy, order.price_t, entry)
            self._reserve(order)
            return
        if order.leaves:
            vo.status = OrderStatus.EXPIRED
            vo.expire_reason = vo.tif.value if is_limit else "MARKET"
            vo.updated_ms = now
            self._close(order)
            self._order_event(order, None, now)

    def _settle(
        self, sym: _Symbol, taker: _Order | None, taker_is_buy: bool, execs: list[Execution], now: int
    ) -> None:
        """Book executions: public trades, maker fills, taker fills."""
        spec = sym.spec
        touched: set[tuple[_Client, PositionSide]] = set()
        for price_t, n, maker in execs:
            sym.trade_id += 1
            price = spec.tick_size * price_t
            sym.mark.set_last(price)
            ev = TradeEvent(
                symbol=spec.symbol,
                trade_id=sym.trade_id,
                price=price,
                qty=spec.lot_size * n,
                aggressor=Side.BUY if taker_is_buy else Side.SELL,
                ts_ms=now,
            )
            sym.trades.append(ev)
            if self._listeners:
                self._emit(ev)
            if maker is not None:
                self._fill(maker, price_t, n, True, sym.trade_id, now)
                touched.add((maker.client, maker.vo.position_side))
            if taker is not None:
                self._fill(taker, price_t, n, False, sym.trade_id, now)
                touched.add((taker.client, taker.vo.position_side))
        for client, pside in touched:
            self._trim_reduce_only(client, sym, pside, now)

    def _fill(self, order: _Order, price_t: int, n: int, is_maker: bool, trade_id: int, now: int) -> None:
        client = order.client
        acct = client.account
        sym = order.sym
        spec = sym.spec
        vo = order.vo
        price = spec.tick_size * price_t
        qty = spec.lot_size * n
        notional = price * qty
        fee = money(notional * (spec.maker_fee if is_maker else spec.taker_fee))
        pos = acct.position(spec.symbol, vo.position_side)
        old_size = abs(pos.qty)
        pnl, closed = pos.apply(qty if order.is_buy else -qty, price)
        pos.updated_ms = now
        if acct.margin_mode(spec.symbol) is MarginMode.ISOLATED:
            if closed:
                release = (
                    pos.isolated_margin
                    if closed == old_size
                    else money(pos.isolated_margin * closed / old_size)
                )
                pos.isolated_margin -= release
            opened = qty - closed
            if opened:
                pos.isolated_margin += money(opened * price / acct.leverage(spec.symbol, spec))
        acct.book_fill(pnl, fee)
        acct.updated_ms = now
        order.filled += n
        vo.filled_qty = spec.lot_size * order.filled
        vo.cum_quote += notional
        vo.avg_price = (vo.cum_quote / vo.filled_qty).quantize(MONEY, rounding=ROUND_HALF_EVEN)
        vo.fees += fee
        vo.updated_ms = now
        if order.filled >= order.lots:
            vo.status = OrderStatus.FILLED
            order.entry = None
            self._close(order)
        else:
            vo.status = OrderStatus.PARTIALLY_FILLED
            self._reserve(order)
        fill = Fill(
            trade_id=trade_id,
            order_id=vo.order_id,
            client_order_id=vo.client_order_id,
            account=acct.api_key,
            symbol=spec.symbol,
            side=vo.side,
            position_side=vo.position_side,
            price=price,
            qty=qty,
            fee=fee,
            is_maker=is_maker,
            realized_pnl=pnl,
            ts_ms=now,
        )
        client.fills.append(fill)
        if self._listeners:
            self._order_event(order, fill, now)
            self._position_event(acct, pos, now)
            self._balance_event(acct, "ORDER", now)

    def _trim_reduce_only(self, client: _Client, sym: _Symbol, pside: PositionSide, now: int) -> None:
        """Resting reduce-only orders never exceed the position they reduce: trim (keeping queue
        place) or cancel them when the position shrank or flipped."""
        open_orders = client.open.get(sym.spec.symbol)
        if not open_orders:
            return
        for order in list(open_orders.values()):
            if not order.reducing or order.entry is None or order.vo.position_side is not pside:
                continue
            closable = self._closable_lots(client.account, sym, pside, order.is_buy)
            if closable >= order.leaves:
                continue
            if closable == 0:
                self._cancel(order, now, reason="REDUCE_ONLY")
                continue
            new_lots = order.filled + closable
            sym.book.reduce(order.is_buy, order.price_t, order.entry, closable)
            order.lots = new_lots
            order.vo.qty = sym.spec.lot_size * new_lots
            order.vo.updated_ms = now
            self._order_event(order, None, now)

    def _cancel(
        self, order: _Order, now: int, *, reason: str = "", status: OrderStatus = OrderStatus.CANCELED
    ) -> None:
        if order.entry is not None:
            order.sym.book.remove(order.is_buy, order.price_t, order.entry)
            order.entry = None
        vo = order.vo
        vo.status = status
        vo.expire_reason = reason
        vo.updated_ms = now
        self._close(order)
        self._order_event(order, None, now)

    def _after_action(self, sym: _Symbol, now: int) -> None:
        self._flush(sym, now)
        self._check_triggers(sym, now)

    def cancel_order(
        self, account: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> VenueOrder:
        client = self._client(account)
        sym = self._sym(symbol)
        order = self._find(client, symbol, order_id, client_order_id)
        if not order.vo.is_open:
            raise VenueReject(RejectReason.ORDER_CLOSED, f"order is {order.vo.status.value}")
        now = self._clock()
        self._cancel(order, now)
        self._flush(sym, now)
        return order.vo.snapshot()

    def cancel_all(self, account: str, symbol: str | None = None) -> list[VenueOrder]:
        client = self._client(account)
        symbols = [symbol] if symbol is not None else sorted(client.open)
        if symbol is not None:
            self._sym(symbol)
        now = self._clock()
        out: list[VenueOrder] = []
        for s in symbols:
            orders = list(client.open.get(s, {}).values())
            for order in orders:
                self._cancel(order, now)
                out.append(order.vo.snapshot())
            self._flush(self._syms[s], now)
        return out

    def amend_order(
        self,
        account: str,
        symbol: str,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
        qty: Decimal | None = None,
        price: Decimal | None = None,
    ) -> VenueOrder:
        client = self._client(account)
        sym = self._sym(symbol)
        spec = sym.spec
        order = self._find(client, symbol, order_id, client_order_id)
        vo = order.vo
        if not vo.is_open:
            raise VenueReject(RejectReason.ORDER_CLOSED, f"order is {vo.status.value}")
        if qty is None and price is None:
            raise VenueReject(RejectReason.INVALID_PARAM, "nothing to amend")
        now = self._clock()
        if vo.type is not OrderType.LIMIT:
            if price is not None:
                raise VenueReject(RejectReason.INVALID_PARAM, "only LIMIT orders have a price")
            assert qty is not None
            if vo.close_position:
                raise VenueReject(RejectReason.INVALID_PARAM, "close_position orders have no qty")
            order.lots = self._lots(spec, qty, market=True)
            vo.qty = spec.lot_size * order.lots
            vo.updated_ms = now
            self._order_event(order, None, now)
            return vo.snapshot()
        new_price_t = order.price_t if price is None else self._ticks(spec, price, "price")
        if price is not None:
            mark = sym.mark.mark_price
            if price > mark * spec.percent_price_up or price < mark * spec.percent_price_down:
                raise VenueReject(
                    RejectReason.PRICE_OUT_OF_RANGE, f"price {price} outside the band around mark"
                )
        new_lots = order.lots if qty is None else self._lots(spec, qty, market=False)
        if new_lots <= order.filled:
            raise VenueReject(RejectReason.INVALID_PARAM, "qty must exceed the filled quantity")
        if order.reducing:
            closable = self._closable_lots(client.account, sym, vo.position_side, order.is_buy)
            if new_lots - order.filled > closable:
                raise VenueReject(RejectReason.REDUCE_ONLY_INCREASES, "reduce-only qty exceeds the position")
        elif spec.tick_size * new_price_t * spec.lot_size * new_lots < spec.min_notional:
            raise VenueReject(RejectReason.MIN_NOTIONAL, f"notional below {spec.min_notional}")
        reprice = new_price_t != order.price_t
        if reprice and vo.tif is TimeInForce.POST_ONLY and sym.book.would_cross(order.is_buy, new_price_t):
            # its own entry is on the same side, so it cannot be what it would cross
            raise VenueReject(RejectReason.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity")
        if not order.reducing:
            lev = client.account.leverage(symbol, spec)
            new_reserve = money(
                spec.lot_size
                * min(order.open_lots, new_lots - order.filled)
                * spec.tick_size
                * new_price_t
                / lev
            )
            extra = new_reserve - order.reserved
            if extra > 0 and extra > client.account.available(self._marks, self.instruments):
                raise VenueReject(RejectReason.INSUFFICIENT_MARGIN, "not enough margin for the amended order")
        entry = order.entry
        assert entry is not None
        grows = new_lots > order.lots
        order.lots = new_lots
        vo.qty = spec.lot_size * new_lots
        vo.updated_ms = now
        if reprice or grows:
            sym.book.remove(order.is_buy, order.price_t, entry)
            order.entry = None
            order.price_t = new_price_t
            vo.price = spec.tick_size * new_price_t
            self._order_event(order, None, now)
            self._execute(order, now)
        else:
            sym.book.reduce(order.is_buy, order.price_t, entry, order.leaves)
            self._reserve(order)
            self._order_event(order, None, now)
        self._after_action(sym, now)
        return vo.snapshot()

    def get_order(
        self, account: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> VenueOrder:
        client = self._client(account)
        self._sym(symbol)
        return self._find(client, symbol, order_id, client_order_id).vo.snapshot()

    def open_orders(self, account: str, symbol: str | None = None) -> list[VenueOrder]:
        client = self._client(account)
        if symbol is not None:
            self._sym(symbol)
            return [o.vo.snapshot() for o in client.open.get(symbol, {}).values()]
        return [o.vo.snapshot() for s in sorted(client.open) for o in client.open[s].values()]

    def fills(self, account: str, symbol: str | None = None, limit: int = 500) -> list[Fill]:
        client = self._client(account)
        if symbol is not None:
            self._sym(symbol)
        out = [f for f in client.fills if symbol is None or f.symbol == symbol]
        return out[-limit:] if limit > 0 else []

    # ---- market data ----------------------------------------------------------------------------

    def depth(self, symbol: str, limit: int) -> tuple[int, list[Level], list[Level]]:
        sym = self._sym(symbol)
        if sym.book.has_changes():  # never the case between calls, but keep ids and levels in step
            self._flush(sym, self._clock())
        return sym.book.depth(limit)

    def mark(self, symbol: str) -> MarkPriceEvent:
        sym = self._sym(symbol)
        return self._mark_event(sym, self._clock())

    def _mark_event(self, sym: _Symbol, now: int) -> MarkPriceEvent:
        m = sym.mark
        return MarkPriceEvent(
            symbol=sym.spec.symbol,
            mark_price=m.mark_price,
            index_price=m.index_price,
            last_price=m.last_price,
            funding_rate=m.rate,
            next_funding_ms=sym.next_funding_ms,
            ts_ms=now,
        )

    def recent_trades(self, symbol: str, limit: int) -> list[TradeEvent]:
        trades = self._sym(symbol).trades
        if limit <= 0:
            return []
        return list(trades)[-limit:]

    # ---- time -----------------------------------------------------------------------------------

    def advance(self, now_ms: int) -> None:
        step = self._step_ms
        if now_ms < self._next_step_ms:
            return
        n = (now_ms - self._next_step_ms) // step + 1
        if n > self._max_catchup:
            skip_to = self._next_step_ms + (n - self._max_catchup) * step
            for sym in self._syms.values():
                while sym.next_funding_ms < skip_to:
                    self._funding(sym, sym.next_funding_ms)
            self._next_step_ms = skip_to
        while self._next_step_ms <= now_ms:
            t = self._next_step_ms
            for sym in self._syms.values():
                self._market_step(sym, t)
            for sym in self._syms.values():
                while sym.next_funding_ms <= t:
                    self._funding(sym, sym.next_funding_ms)
                if t >= sym.next_mark_ms:
                    sym.next_mark_ms = t + self._mark_interval
                    if self._listeners:
                        self._emit(self._mark_event(sym, t))
            self._liquidations(t)
            self._next_step_ms = t + step

    def _market_step(self, sym: _Symbol, t: int) -> None:
        book = sym.book
        cs = sym.source.step(t)
        for price_t, lots, is_buy in cs.trades:
            _, execs = book.match(is_buy, price_t, lots)
            if execs:
                self._settle(sym, None, is_buy, execs, t)
        ups: list[tuple[bool, int, int]] = []
        for is_bid, changes in ((True, cs.bids), (False, cs.asks)):
            for price_t, target in changes:
                have = book.crowd_qty(is_bid, price_t)
                if target < have:
                    book.set_crowd(is_bid, price_t, target)
                elif target > have:
                    ups.append((is_bid, price_t, target - have))
        for is_bid, price_t, add in ups:
            if book.would_cross(is_bid, price_t):
                add, execs = book.match(is_bid, price_t, add)
                self._settle(sym, None, is_bid, execs, t)
            if add:
                book.add(is_bid, price_t, Entry(None, add))
        sym.mark.update(sym.source.touch())
        self._marks[sym.spec.symbol] = sym.mark.mark_price
        self._flush(sym, t)
        self._check_triggers(sym, t)

    def _check_triggers(self, sym: _Symbol, now: int) -> None:
        if not sym.conditionals:
            return
        spec = sym.spec
        mark, last = sym.mark.mark_price, sym.mark.last_price
        fired = [
            o
            for o in sym.conditionals.values()
            if self._triggered(
                o.vo.type, o.is_buy, o.trigger_t, mark if o.vo.trigger_by is TriggerBy.MARK else last, spec
            )
        ]
        for order in fired:
            if order.vo.is_open:
                self._fire(order, now)
        if fired:
            self._flush(sym, now)

    def _fire(self, order: _Order, now: int) -> None:
        """A conditional order's trigger was crossed: it becomes a market order."""
        sym = order.sym
        spec = sym.spec
        vo = order.vo
        acct = order.client.account
        sym.conditionals.pop(vo.order_id, None)
        vo.status = OrderStatus.TRIGGERED
        vo.updated_ms = now
        vo.triggered_ms = now
        self._order_event(order, None, now)
        closable = self._closable_lots(acct, sym, vo.position_side, order.is_buy)
        if vo.close_position:
            order.lots = closable
            vo.qty = spec.lot_size * closable
        elif order.reducing:
            order.lots = min(order.lots, closable)
            vo.qty = spec.lot_size * order.lots
        if order.lots == 0:
            self._cancel(order, now, reason="REDUCE_ONLY", status=OrderStatus.EXPIRED)
            return
        order.open_lots = 0 if order.reducing else max(0, order.lots - closable)
        if order.open_lots:
            best = sym.book.best_ask() if order.is_buy else sym.book.best_bid()
            ref = spec.tick_size * best if best is not None else sym.mark.mark_price
            open_notional = ref * spec.lot_size * order.open_lots
            need = money(open_notional / acct.leverage(spec.symbol, spec) + open_notional * spec.taker_fee)
            if need > acct.available(self._marks, self.instruments):
                self._cancel(order, now, reason="MARGIN", status=OrderStatus.EXPIRED)
                return
        vo.status = OrderStatus.NEW
        self._execute(order, now)

    # ---- funding and liquidation ----------------------------------------------------------------

    def _funding(self, sym: _Symbol, at_ms: int) -> None:
        """Settle funding on every position of ``sym`` at the boundary ``at_ms``."""
        symbol = sym.spec.symbol
        rate = sym.mark.rate
        mark = sym.mark.mark_price
        sym.next_funding_ms = at_ms + sym.funding_interval
        for client in self._clients.values():
            acct = client.account
            paid = False
            for pos in acct.positions.values():
                if pos.symbol != symbol or not pos.qty:
                    continue
                amount = money(-pos.qty * mark * rate)
                acct.book_funding(amount)
                acct.updated_ms = at_ms
                paid = True
                if self._listeners:
                    self._emit(
                        FundingEvent(
                            account=acct.api_key,
                            symbol=symbol,
                            position_side=pos.side,
                            rate=rate,
                            amount=amount,
                            ts_ms=at_ms,
                        )
                    )
            if paid:
                self._balance_event(acct, "FUNDING_FEE", at_ms)

    def _liquidations(self, now: int) -> None:
        marks, specs = self._marks, self.instruments
        for client in list(self._clients.values()):
            acct = client.account
            if not acct.has_position():
                continue
            _, cross_upnl, _, cross_mm, iso = acct.cross_terms(marks, specs)
            has_cross = any(
                p.qty and acct.margin_mode(p.symbol) is MarginMode.CROSS for p in acct.positions.values()
            )
            if has_cross and acct.wallet - iso + cross_upnl < cross_mm:
                self._liquidate(client, None, now)
            for pos in list(acct.positions.values()):
                if not pos.qty or acct.margin_mode(pos.symbol) is not MarginMode.ISOLATED:
                    continue
                spec = specs[pos.symbol]
                mark = marks[pos.symbol]
                if pos.isolated_margin + pos.upnl(mark) < money(abs(pos.qty) * mark * spec.maint_margin_rate):
                    self._liquidate(client, pos, now)

    def _liquidate(self, client: _Client, isolated: PositionState | None, now: int) -> None:
        """Close the breaching position(s) with venue market orders (``autoclose-`` ids); any loss
        beyond the margin is covered by the insurance fund."""
        acct = client.account
        if isolated is None:
            targets = [
                p for p in acct.positions.values() if p.qty and acct.margin_mode(p.symbol) is MarginMode.CROSS
            ]
            symbols = sorted({p.symbol for p in targets})
            for s in symbols:
                for order in list(client.open.get(s, {}).values()):
                    self._cancel(order, now, reason="LIQUIDATION")
                self._flush(self._syms[s], now)
            equity0 = _ZERO
        else:
            targets = [isolated]
            for order in list(client.open.get(isolated.symbol, {}).values()):
                if order.vo.position_side is isolated.side:
                    self._cancel(order, now, reason="LIQUIDATION")
            equity0 = isolated.isolated_margin
        wallet0 = acct.wallet
        for pos in targets:
            self._autoclose(client, pos, now, isolated is not None)
        cover = _ZERO
        if isolated is not None:
            loss = wallet0 - acct.wallet
            cover = max(loss - equity0, _ZERO)
        if acct.wallet + cover < 0:
            cover = -acct.wallet
        if cover:
            acct.book_insurance(cover)
        acct.updated_ms = now
        log.info(
            "venue_liquidation",
            extra={"account": acct.api_key, "isolated": isolated is not None, "insurance": str(cover)},
        )
        self._balance_event(acct, "LIQUIDATION", now)

    def _autoclose(self, client: _Client, pos: PositionState, now: int, isolated: bool) -> None:
        sym = self._syms[pos.symbol]
        spec = sym.spec
        is_buy = pos.qty < 0
        lots = int(abs(pos.qty) / spec.lot_size)
        self._order_seq += 1
        oid = self._order_seq
        vo = VenueOrder(
            order_id=oid,
            client_order_id=f"autoclose-{oid}",
            account=client.account.api_key,
            symbol=pos.symbol,
            side=Side.BUY if is_buy else Side.SELL,
            type=OrderType.MARKET,
            tif=TimeInForce.IOC,
            qty=spec.lot_size * lots,
            price=None,
            trigger_price=None,
            trigger_by=TriggerBy.MARK,
            reduce_only=pos.side is PositionSide.BOTH,
            close_position=False,
            position_side=pos.side,
            status=OrderStatus.NEW,
            created_ms=now,
            updated_ms=now,
        )
        order = _Order(vo=vo, client=client, sym=sym, lots=lots, price_t=0)
        order.reducing = True
        order.open_lots = 0
        client.orders[oid] = order
        client.by_cid[vo.client_order_id] = order
        client.open.setdefault(pos.symbol, {})[oid] = order
        self._order_event(order, None, now)
        left, execs = sym.book.match(is_buy, None, lots)
        self._settle(sym, order, is_buy, execs, now)
        if left:
            # the book could not absorb it: the insurance fund takes the rest at the bankruptcy price
            acct = client.account
            size = abs(pos.qty)
            rest = spec.lot_size * left
            cost_part = pos.cost * rest / size
            equity = pos.isolated_margin * rest / size if isolated else max(acct.wallet, _ZERO)
            bankrupt = (cost_part - equity) / rest if pos.qty > 0 else (cost_part + equity) / rest
            bp_t = max(int((bankrupt / spec.tick_size).to_integral_value(rounding=ROUND_HALF_EVEN)), 1)
            sym.trade_id += 1
            self._fill(order, bp_t, left, False, sym.trade_id, now)
        self._flush(sym, now)

    # ---- invariants -----------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AssertionError with details if any ledger, book or order-margin invariant fails."""
        for client in self._clients.values():
            client.account.check()
            reserved = sum((o.reserved for s in client.open.values() for o in s.values()), _ZERO)
            assert reserved == client.account.order_margin, (
                f"account {client.account.api_key}: order margin {client.account.order_margin}"
                f" != sum of reserves {reserved}"
            )
            for symbol, orders in client.open.items():
                for order in orders.values():
                    assert order.vo.is_open, f"closed order {order.vo.order_id} in the open set"
                    if order.entry is not None:
                        assert order.entry.qty == order.leaves, f"order {order.vo.order_id} entry out of step"
                    assert order.vo.symbol == symbol
        for sym in self._syms.values():
            sym.book.check()
            assert not sym.book.has_changes(), f"{sym.spec.symbol}: unflushed book changes"
            for side in (sym.book.bids, sym.book.asks):
                for q in side.levels.values():
                    for e in q:
                        if e.owner is not None:
                            o: _Order = e.owner
                            assert o.vo.is_open and o.entry is e, f"stale entry of order {o.vo.order_id}"
