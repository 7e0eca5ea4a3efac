"""The Bybit v5 (category ``linear``) adapter: :class:`BybitAdapter`.

REST goes through pybit in a thread pool (:mod:`engine.adapters.bybit.rest`), streams through the
shared reconnecting connection (:mod:`engine.adapters.bybit.ws`), books through the shared
:class:`BookManager` on ``BybitBookSync``; payloads become engine types in
:mod:`engine.adapters.bybit.parsing`.

Orders. Prices and quantities are rounded to the instrument's grid (buys down, sells up; quantities
down) and sent as plain decimal strings; the min quantity and min notional are checked locally (no
request is sent). ``orderLinkId`` is the engine's client order id. Bybit acknowledges a create with the
ids only and reports the outcome on the order stream, so :meth:`place_order` returns the order as
``NEW`` (or the state the stream has already reported). After a time-out, a 5xx or an unknown-outcome
retCode (10000/10016), the order is looked up by its link id before anything is sent again; a 110072
(duplicate link id) on a resend means the first one landed, and it is adopted. An order is never sent
twice without such a lookup in between.

User stream. ``order`` -> :class:`OrderUpdate`; ``execution`` -> :class:`OrderUpdate` with its
:class:`Fill` (de-duplicated by ``execId``) or a :class:`FundingPayment`; ``position`` ->
:class:`PositionUpdate` and ``wallet`` -> :class:`BalanceUpdate`, each only when something changed
(Bybit pushes positions on every order action). After every private reconnect the adapter reconciles
over REST: executions since the last one seen, the orders it knew as open and the open orders now,
positions and balances; differences are emitted, so a fill that happened while the stream was down
still reaches the engine.

Bounded state: the order table keeps its open orders and at most ``max_tracked_orders`` in all (closed
ones are evicted, oldest first; open ones never: the venue caps how many there can be); the execution-id
memory keeps the last ``max_seen_executions`` ids (oldest evicted; an execution older than that cannot
come back, reconciliation only looks back to the last one seen).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any

from engine.adapters.base import UNKNOWN_TO_VENUE, AdapterSettings, EventSink, ExchangeAdapter
from engine.adapters.bybit.constants import (
    BOOK_DEPTH,
    CATEGORY,
    DUPLICATE_LINK_ID,
    IDX_OF_SIDE,
    MARGIN_MODE_OUT,
    SIDE_OUT,
    TIF_OUT,
    TRIGGER_BY_OUT,
    VENUE_NAME,
)
from engine.adapters.bybit.parsing import (
    TickerState,
    opt_dec,
    parse_ack,
    parse_balances,
    parse_cancel_all,
    parse_execution,
    parse_instruments,
    parse_order,
    parse_position,
    parse_server_time,
    parse_trades,
)
from engine.adapters.bybit.rest import BybitRest, bybit_rate_rules
from engine.adapters.bybit.ws import BybitPrivateStream, BybitPublicStream
from engine.adapters.common.books import BookManager, BookWatchdog
from engine.adapters.common.clock import VenueClock
from engine.adapters.common.ratelimit import RateLimiter
from engine.bounded import SeenKeys
from engine.errors import (
    EngineError,
    MalformedMessage,
    OrderRejected,
    VenueError,
    VenueUnavailable,
)
from engine.types import (
    Balance,
    BalanceUpdate,
    BookHealth,
    Fill,
    FundingPayment,
    Instrument,
    MarginMode,
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
    Venue,
    VenueStatus,
)

__all__ = ["BybitAdapter"]

log = logging.getLogger("engine.adapters.bybit")

_ZERO = Decimal(0)
_CONDITIONAL = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)


def _fmt(value: Decimal) -> str:
    """A decimal already on its grid as a plain string (never exponent notation)."""
    return format(value, "f")


def _rejected(reason: str, message: str) -> OrderRejected:
    return OrderRejected(venue=VENUE_NAME, code=None, message=message, reason=reason)


class BybitAdapter(ExchangeAdapter):
    """One Bybit UNIFIED account, category ``linear`` (see the module docstring)."""

    venue = Venue.BYBIT

    def __init__(
        self,
        settings: AdapterSettings,
        sink: EventSink,
        *,
        book_depth: int = BOOK_DEPTH,
        stall_after_s: float | None = None,
        rest_workers: int = 4,
        max_tracked_orders: int = 1_000,
        max_seen_executions: int = 50_000,
        place_retries: int = 2,
        retry_delay_s: float = 0.05,
        post_only_wait_s: float | None = None,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._symbols = self.symbols_of(settings.symbols)
        self._depth = book_depth
        self._stall_after_s = stall_after_s if stall_after_s is not None else 2.0 * settings.stale_after_s
        self.limiter = RateLimiter(bybit_rate_rules(), on_alert=self._on_limiter_alert)
        self.clock = VenueClock(
            venue=VENUE_NAME, fetch_server_ms=self._server_ms, resync_s=settings.clock_resync_s
        )
        self.rest = BybitRest(settings, limiter=self.limiter, clock=self.clock, workers=rest_workers)
        self._instruments: dict[str, Instrument] = {}
        self._books: dict[str, BookManager] = {}
        self._tickers: dict[str, TickerState] = {s: TickerState(s) for s in self._symbols}
        self._orders: OrderedDict[str, Order] = OrderedDict()
        self._max_orders = max_tracked_orders
        self._seen_exec = SeenKeys(max_seen_executions)  # execution ids (fingerprints, ~80 bytes each)
        self._last_exec_ms = 0
        self._exec_floor_ms = 0  # set when the private stream first comes up
        self._positions: dict[tuple[str, PositionSide], Position] = {}
        self._balances: dict[str, Balance] = {}
        self._hedge: bool | None = None
        self._margin_mode: MarginMode | None = None
        self._lookup_attempts = max(1, place_retries + 1)
        self._retry_delay_s = retry_delay_s
        # how long place_order waits for the stream's verdict on a PostOnly order
        self._post_only_wait_s = (
            post_only_wait_s if post_only_wait_s is not None else settings.request_timeout_s
        )
        self._verdicts: dict[str, asyncio.Future[Order]] = {}
        self._public: BybitPublicStream | None = None
        self._private: BybitPrivateStream | None = None
        self._watchdog: BookWatchdog | None = None
        self._connected = False
        self._closed = False
        self._counters: dict[str, int] = {
            "messages_private": 0,
            "malformed": 0,
            "fills": 0,
            "duplicate_fills": 0,
            "reconciles": 0,
            "reconcile_failures": 0,
            "order_lookups": 0,
            "place_retries": 0,
            "orders_adopted": 0,
            "orders_closed_out": 0,
            "local_rejects": 0,
        }

    # ---- lifecycle --------------------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._connected:
            return
        if self._closed:
            raise VenueUnavailable(venue=VENUE_NAME, code=None, message="the adapter is closed")
        s = self.settings
        await self.clock.sync()
        instruments = await self.instruments()
        missing = [sym for sym in self._symbols if sym not in instruments]
        if missing:
            raise VenueError(venue=VENUE_NAME, code=None, message=f"unknown symbols: {', '.join(missing)}")
        for sym in self._symbols:
            inst = instruments[sym]
            self._books[sym] = BookManager(
                venue=self.venue,
                symbol=sym,
                tick_size=inst.tick_size,
                lot_size=inst.lot_size,
                kind="bybit",
                sink=self._sink,
                request_resync=self._request_resync,
                now_ms=self.clock.now_ms,
                stale_after_s=s.stale_after_s,
            )
        self._public = BybitPublicStream(
            url=s.ws_public_url,
            venue=self.venue,
            books=self._books,
            depth=self._depth,
            on_public=self._on_public,
            on_status=self._sink,
            now_ms=self.clock.now_ms,
            ping_interval_s=s.ws_ping_interval_s,
            stall_after_s=self._stall_after_s,
            max_delay_s=s.reconnect_max_delay_s,
        )
        self._public.start()
        if s.api_key:
            self._private = BybitPrivateStream(
                url=s.ws_private_url,
                venue=self.venue,
                api_key=s.api_key,
                api_secret=s.api_secret,
                on_private=self._on_private,
                on_ready=self._on_private_ready,
                on_status=self._sink,
                now_ms=self.clock.now_ms,
                ping_interval_s=s.ws_ping_interval_s,
                max_delay_s=s.reconnect_max_delay_s,
            )
            self._private.start()
        self._watchdog = BookWatchdog(lambda: self._books.values(), interval_s=min(1.0, s.stale_after_s / 2))
        self._watchdog.start()
        self.clock.start()
        self._connected = True
        try:
            await self._wait_ready(s.request_timeout_s)
        except BaseException:
            await self.close()
            raise
        log.info("bybit_connected symbols=%s", ",".join(self._symbols))

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + max(timeout_s, 1.0)
        private = self._private
        while private is not None and not private.ready.is_set():
            if private.auth_error is not None:
                raise private.auth_error
            if time.monotonic() > deadline:
                raise VenueUnavailable(
                    venue=VENUE_NAME, code=None, message="private stream not ready (auth/subscribe)"
                )
            await asyncio.sleep(0.02)
        while any(m.health is not BookHealth.LIVE for m in self._books.values()):
            if time.monotonic() > deadline:
                log.warning(
                    "bybit_books_not_live symbols=%s",
                    ",".join(s for s, m in self._books.items() if m.health is not BookHealth.LIVE),
                )
                return
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected = False
        if self._watchdog is not None:
            await self._watchdog.stop()
        if self._public is not None:
            await self._public.stop()
        if self._private is not None:
            await self._private.stop()
        await self.clock.stop()
        await self.rest.close()
        log.info("bybit_closed")

    # ---- reference data ---------------------------------------------------------------------------------
    async def _server_ms(self) -> int:
        return parse_server_time(await self.rest.call("server_time", signed=False))

    async def instruments(self) -> dict[str, Instrument]:
        out: dict[str, Instrument] = {}
        cursor = ""
        while True:
            params: dict[str, Any] = {"category": CATEGORY, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            result = await self.rest.call("instruments", params, signed=False)
            out.update(self._parsed(parse_instruments, result))
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                break
        self._instruments = out
        return dict(out)

    def _instrument(self, symbol: str) -> Instrument:
        inst = self._instruments.get(symbol)
        if inst is None:
            raise _rejected("invalid", f"unknown symbol {symbol!r} (instruments not loaded?)")
        return inst

    # ---- orders -----------------------------------------------------------------------------------------
    def _position_idx(self, request: OrderRequest) -> int:
        side = request.position_side
        if side is PositionSide.BOTH and self._hedge:
            opening_long = (request.side is Side.BUY) != (request.reduce_only or request.close_position)
            side = PositionSide.LONG if opening_long else PositionSide.SHORT
        return IDX_OF_SIDE[side]

    def _reference_price(self, symbol: str, side: Side) -> Decimal | None:
        manager = self._books.get(symbol)
        if manager is not None and manager.health is BookHealth.LIVE:
            touch = manager.book.best_ask() if side is Side.BUY else manager.book.best_bid()
            if touch is not None:
                return Decimal(touch[0])
        fields = self._tickers.get(symbol)
        if fields is not None and fields.fields.get("markPrice"):
            return Decimal(str(fields.fields["markPrice"]))
        return None

    def _order_params(self, request: OrderRequest) -> tuple[dict[str, Any], Decimal, Decimal | None]:
        """The create parameters, on the grid and checked locally: (params, qty, price)."""
        inst = self._instrument(request.symbol)
        conditional = request.type in _CONDITIONAL
        if request.close_position and not conditional:
            raise _rejected("invalid", "close_position needs a STOP_MARKET or TAKE_PROFIT_MARKET order")
        qty = _ZERO if request.close_position else inst.round_qty(request.qty)
        if not request.close_position:
            if qty < inst.min_qty or qty <= 0:
                raise _rejected("qty_out_of_range", f"qty {request.qty} below the minimum {inst.min_qty}")
            if qty > inst.max_qty:
                raise _rejected("qty_out_of_range", f"qty {request.qty} above the maximum {inst.max_qty}")
        params: dict[str, Any] = {
            "category": CATEGORY,
            "symbol": inst.symbol,
            "side": SIDE_OUT[request.side],
            "qty": _fmt(qty),
            "orderLinkId": request.client_order_id,
            "positionIdx": self._position_idx(request),
        }
        price: Decimal | None = None
        reference: Decimal | None
        if request.type is OrderType.LIMIT:
            if request.price is None or request.price <= 0:
                raise _rejected("invalid", "a LIMIT order needs a positive price")
            price = inst.round_price(request.price, request.side)
            if price <= 0:
                raise _rejected("price_out_of_range", f"price {request.price} rounds to {price}")
            params.update(orderType="Limit", price=_fmt(price), timeInForce=TIF_OUT[request.tif])
            reference = price
        elif request.type is OrderType.MARKET:
            params["orderType"] = "Market"
            reference = self._reference_price(inst.symbol, request.side)
        else:
            if request.trigger_price is None or request.trigger_price <= 0:
                raise _rejected("invalid", f"a {request.type} order needs a positive trigger price")
            trigger = inst.round_price(request.trigger_price)
            stop = request.type is OrderType.STOP_MARKET
            # a buy stop fires on a rise, a sell stop on a fall; take-profits the other way round
            rises = (request.side is Side.BUY) == stop
            params.update(
                orderType="Market",
                triggerPrice=_fmt(trigger),
                triggerDirection=1 if rises else 2,
                triggerBy=TRIGGER_BY_OUT[request.trigger_by],
            )
            reference = trigger
        if request.reduce_only or request.close_position:
            params["reduceOnly"] = True
        if request.close_position:
            params["closeOnTrigger"] = True
        exempt = request.reduce_only or request.close_position
        if not exempt and reference is not None and qty * reference < inst.min_notional:
            raise _rejected(
                "min_notional",
                f"notional {qty * reference} ({qty} x {reference}) below the minimum {inst.min_notional}",
            )
        return params, qty, price

    async def place_order(self, request: OrderRequest) -> Order:
        try:
            params, qty, price = self._order_params(request)
        except OrderRejected:
            self._counters["local_rejects"] += 1
            raise
        link = request.client_order_id
        symbol = request.symbol
        provisional = Order(
            venue=self.venue,
            symbol=symbol,
            client_order_id=link,
            venue_order_id="",
            side=request.side,
            type=request.type,
            tif=request.tif if request.type is OrderType.LIMIT else TimeInForce.IOC,
            qty=qty,
            price=price,
            filled_qty=_ZERO,
            avg_price=_ZERO,
            status=OrderStatus.PENDING,
            reduce_only=request.reduce_only or request.close_position,
            position_side=PositionSide(
                {0: PositionSide.BOTH, 1: PositionSide.LONG, 2: PositionSide.SHORT}[params["positionIdx"]]
            ),
            trigger_price=Decimal(params["triggerPrice"]) if "triggerPrice" in params else None,
            ts_ms=self.clock.now_ms(),
        )
        self._orders.setdefault(link, provisional)
        last_error: VenueError | None = None
        for attempt in range(self._lookup_attempts):
            if attempt:
                log.warning("bybit_place_retry link=%s attempt=%d", link, attempt + 1)
                await asyncio.sleep(self._retry_delay_s * attempt)
            try:
                result = await self.rest.call("place_order", params, order=True)
            except VenueUnavailable as exc:
                self._counters["place_retries"] += 1
                last_error = exc
                found = await self._lookup(symbol, link)
                if found is not None:
                    self._counters["orders_adopted"] += 1
                    log.info("bybit_place_adopted link=%s status=%s", link, found.status)
                    return found
                continue
            except OrderRejected as exc:
                if exc.code == DUPLICATE_LINK_ID and attempt > 0:
                    found = await self._lookup(symbol, link)
                    if found is not None:
                        self._counters["orders_adopted"] += 1
                        return found
                self._forget_provisional(link)
                raise
            except EngineError:
                self._forget_provisional(link)
                raise
            order_id, _ = self._parsed(parse_ack, result)
            acked = dataclasses.replace(
                provisional, venue_order_id=order_id, status=self._ack_status(request)
            )
            known = self._orders.get(link)
            if known is not None and known.status is OrderStatus.PENDING:
                # the table keeps PENDING until the order stream (or a REST read) confirms the state,
                # so that confirmation is emitted as an OrderUpdate
                self._orders[link] = dataclasses.replace(known, venue_order_id=order_id)
            if request.type is OrderType.LIMIT and request.tif is TimeInForce.POST_ONLY:
                return await self._post_only_verdict(acked)
            if known is not None and known.status is not OrderStatus.PENDING:
                return known
            return acked
        assert last_error is not None
        raise last_error

    async def _post_only_verdict(self, acked: Order) -> Order:
        """Bybit accepts a PostOnly that would take and cancels it on the order stream
        (``EC_PostOnlyWillTakeLiquidity``). Like the other venues' synchronous refusal, that becomes an
        :class:`OrderRejected` ("post_only") here; the stream's OrderUpdate is emitted as well. Without a
        verdict within ``post_only_wait_s`` the acknowledged order is returned."""
        link = acked.client_order_id
        known = self._orders.get(link)
        if known is None or known.status is OrderStatus.PENDING:
            future: asyncio.Future[Order] = asyncio.get_running_loop().create_future()
            self._verdicts[link] = future
            try:
                known = await asyncio.wait_for(future, self._post_only_wait_s)
            except TimeoutError:
                log.warning("bybit_post_only_no_verdict link=%s", link)
                return acked
            finally:
                self._verdicts.pop(link, None)
        if known.status is OrderStatus.REJECTED and known.reason == "post_only":
            raise OrderRejected(
                venue=VENUE_NAME,
                code=None,
                message=f"post-only order {link} would take liquidity (EC_PostOnlyWillTakeLiquidity)",
                reason="post_only",
            )
        return known

    @staticmethod
    def _ack_status(request: OrderRequest) -> OrderStatus:
        return OrderStatus.UNTRIGGERED if request.type in _CONDITIONAL else OrderStatus.NEW

    def _forget_provisional(self, link: str) -> None:
        known = self._orders.get(link)
        if known is not None and known.status is OrderStatus.PENDING:
            del self._orders[link]

    async def _lookup(self, symbol: str, link: str) -> Order | None:
        """After an unknown outcome: the venue's view of ``link``, asking again on transient failures.
        Raises VenueUnavailable when the venue cannot tell (then nothing may be resent)."""
        last: VenueError | None = None
        for attempt in range(self._lookup_attempts + 1):
            self._counters["order_lookups"] += 1
            try:
                return await self.get_order(symbol, client_order_id=link)
            except VenueUnavailable as exc:
                last = exc
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        assert last is not None
        raise last

    async def cancel_order(self, symbol: str, *, client_order_id: str) -> Order:
        params = {"category": CATEGORY, "symbol": symbol, "orderLinkId": client_order_id}
        for attempt in range(self._lookup_attempts):
            try:
                await self.rest.call("cancel_order", params, order=True)
                break
            except VenueUnavailable:
                found = await self._lookup(symbol, client_order_id)
                if found is None:
                    raise _rejected("unknown_order", f"order {client_order_id} is unknown") from None
                if not found.status.is_open:
                    return found
                if attempt + 1 == self._lookup_attempts:
                    raise
        known = self._orders.get(client_order_id)
        if known is None or known.status is OrderStatus.PENDING:
            known = await self.get_order(symbol, client_order_id=client_order_id)
            if known is None:
                raise _rejected("unknown_order", f"order {client_order_id} is unknown")
        if known.status.is_open:
            known = dataclasses.replace(known, status=OrderStatus.CANCELED, ts_ms=self.clock.now_ms())
        return known

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        symbols = [symbol] if symbol is not None else list(self._symbols)
        out: list[Order] = []
        for sym in symbols:
            before = {o.venue_order_id: o for o in await self.open_orders(sym)}
            result = await self.rest.call("cancel_all", {"category": CATEGORY, "symbol": sym}, order=True)
            now = self.clock.now_ms()
            for order_id, _link in self._parsed(parse_cancel_all, result):
                order = before.get(order_id)
                if order is None:
                    log.info("bybit_cancel_all_unlisted symbol=%s order_id=%s", sym, order_id)
                    continue
                out.append(dataclasses.replace(order, status=OrderStatus.CANCELED, ts_ms=now))
        return out

    async def amend_order(
        self, symbol: str, *, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> Order:
        if qty is None and price is None:
            raise _rejected("invalid", "amend needs a new qty or price")
        inst = self._instrument(symbol)
        known = self._orders.get(client_order_id)
        params: dict[str, Any] = {"category": CATEGORY, "symbol": symbol, "orderLinkId": client_order_id}
        new_qty = inst.round_qty(qty) if qty is not None else None
        new_price: Decimal | None = None
        if new_qty is not None:
            if new_qty < inst.min_qty or new_qty <= 0:
                raise _rejected("qty_out_of_range", f"qty {qty} below the minimum {inst.min_qty}")
            params["qty"] = _fmt(new_qty)
        if price is not None:
            new_price = inst.round_price(price, known.side if known is not None else None)
            params["price"] = _fmt(new_price)
        await self.rest.call("amend_order", params, order=True)
        current = self._orders.get(client_order_id)
        if current is None or current.status is OrderStatus.PENDING:
            fetched = await self.get_order(symbol, client_order_id=client_order_id)
            if fetched is None:
                raise _rejected("unknown_order", f"order {client_order_id} is unknown")
            current = fetched
        changes: dict[str, Any] = {"ts_ms": self.clock.now_ms()}
        if new_qty is not None:
            changes["qty"] = new_qty
        if new_price is not None:
            changes["price"] = new_price
        return dataclasses.replace(current, **changes)

    async def get_order(self, symbol: str, *, client_order_id: str, store: bool = True) -> Order | None:
        params = {"category": CATEGORY, "symbol": symbol, "orderLinkId": client_order_id}
        for name in ("open_orders", "order_history"):
            result = await self.rest.call(name, params)
            entries = result.get("list") or []
            if entries:
                order: Order = self._parsed(parse_order, entries[0])
                if store:
                    self._apply_order(order, emit=False)
                return order
        return None

    async def order_fills(
        self, symbol: str, *, client_order_id: str | None = None, venue_order_id: str | None = None
    ) -> list[Fill]:
        """``/v5/execution/list?orderLinkId=`` (or ``orderId=``), trades only, every page, oldest first."""
        if client_order_id is None and venue_order_id is None:
            raise ValueError("order_fills needs a client_order_id or a venue_order_id")
        base: dict[str, Any] = {"category": CATEGORY, "symbol": symbol, "limit": 100, "execType": "Trade"}
        if client_order_id is not None:
            base["orderLinkId"] = client_order_id
        else:
            base["orderId"] = venue_order_id
        known = self._orders.get(client_order_id or f"id:{venue_order_id}")
        position_side = known.position_side if known is not None else PositionSide.BOTH
        fills: list[Fill] = []
        async for entry in self._pages("executions", base):
            if client_order_id is not None and str(entry.get("orderLinkId") or "") != client_order_id:
                continue  # the venue's answer, checked
            if venue_order_id is not None and str(entry.get("orderId") or "") != venue_order_id:
                continue
            parsed = self._parsed(parse_execution, entry, position_side=position_side)
            if isinstance(parsed, Fill):
                fills.append(parsed)
        fills.sort(key=lambda f: (f.ts_ms, f.trade_id))
        return fills

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        base: dict[str, Any] = {"category": CATEGORY, "limit": 50}
        if symbol is not None:
            base["symbol"] = symbol
        else:
            base["settleCoin"] = "USDT"
        out: list[Order] = []
        async for entry in self._pages("open_orders", base):
            order = self._parsed(parse_order, entry)
            if symbol is None and order.symbol not in self._symbols and self._symbols:
                continue
            out.append(order)
        return out

    async def _pages(
        self, name: str, base: dict[str, Any], max_pages: int = 100
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = ""
        for _ in range(max_pages):
            params = dict(base)
            if cursor:
                params["cursor"] = cursor
            result = await self.rest.call(name, params)
            for entry in result.get("list") or []:
                yield entry
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                return
        log.warning("bybit_pages_truncated endpoint=%s pages=%d", name, max_pages)

    # ---- account ----------------------------------------------------------------------------------------
    async def positions(self) -> list[Position]:
        out: list[Position] = []
        async for entry in self._pages(
            "positions", {"category": CATEGORY, "settleCoin": "USDT", "limit": 200}
        ):
            position = self._parsed(parse_position, entry, margin_mode=self._margin_mode)
            if position.side is not PositionSide.BOTH:
                self._hedge = True
            if position.qty != 0:
                out.append(position)
        return out

    async def balances(self) -> list[Balance]:
        result = await self.rest.call("wallet", {"accountType": "UNIFIED", "coin": "USDT"})
        now = self.clock.now_ms()
        out: list[Balance] = []
        for account in result.get("list") or []:
            out.extend(self._parsed(parse_balances, account, ts_ms=now))
        return out

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        inst = self._instrument(symbol)
        if not 1 <= leverage <= inst.max_leverage:
            raise _rejected("invalid", f"leverage {leverage} outside 1..{inst.max_leverage}")
        value = str(leverage)
        await self.rest.call(
            "set_leverage",
            {"category": CATEGORY, "symbol": symbol, "buyLeverage": value, "sellLeverage": value},
        )

    async def set_margin_mode(self, symbol: str, mode: MarginMode) -> None:
        """A UNIFIED account has one margin mode for every symbol: this sets it account-wide
        (``/v5/account/set-margin-mode``); ``symbol`` only names the caller's intent in the log."""
        result = await self.rest.call("set_margin_mode", {"setMarginMode": MARGIN_MODE_OUT[str(mode)]})
        reasons = result.get("reasons") or []
        if reasons:
            raise VenueError(venue=VENUE_NAME, code=None, message=f"set margin mode refused: {reasons}")
        self._margin_mode = mode
        log.info("bybit_margin_mode symbol=%s mode=%s scope=account", symbol, mode)

    async def set_position_mode(self, *, hedge: bool) -> None:
        await self.rest.call("switch_mode", {"category": CATEGORY, "coin": "USDT", "mode": 3 if hedge else 0})
        self._hedge = hedge

    # ---- market data reads ------------------------------------------------------------------------------
    def book(self, symbol: str) -> Any:
        return self._books[symbol].book

    def book_health(self, symbol: str) -> BookHealth:
        manager = self._books.get(symbol)
        return manager.health if manager is not None else BookHealth.SYNCING

    def stats(self) -> dict[str, int]:
        out = dict(self._counters)
        out.update(self.limiter.stats())
        out["rest_requests"] = self.rest.requests
        out["rest_failures"] = self.rest.failures
        out["rest_rate_limited"] = self.rest.rate_limited
        out["clock_syncs"] = self.clock.syncs
        out["clock_skew_retries"] = self.clock.skew_retries
        if self._public is not None:
            out.update(self._public.stats())
            out["malformed"] += self._public.malformed
        if self._private is not None:
            out.update(self._private.stats())
            out["malformed"] += self._private.malformed
        for key in ("updates", "resyncs", "malformed", "stale", "snapshots"):
            total = sum(m.stats()[key] for m in self._books.values())
            out[f"book_{key}"] = total
        out["malformed"] += out["book_malformed"]
        out["resyncs"] = out["book_resyncs"]
        out["reconnects"] = sum(s.conn.reconnects for s in (self._public, self._private) if s is not None)
        return out

    # ---- stream handlers ----------------------------------------------------------------------------
    def _request_resync(self, symbol: str) -> None:
        if self._public is not None:
            self._public.request_resync(symbol)

    def _on_limiter_alert(self, status: str, detail: str) -> None:
        self._sink(
            VenueStatus(
                venue=self.venue, stream="rest", status=status, detail=detail, ts_ms=self.clock.now_ms()
            )
        )

    def _parsed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a parser; a MalformedMessage is counted and re-raised (REST) or dropped (streams)."""
        try:
            return fn(*args, **kwargs)
        except MalformedMessage:
            self._counters["malformed"] += 1
            raise

    def _on_public(self, topic: str, message: dict[str, Any], recv_ns: int) -> None:
        kind, _, symbol = topic.partition(".")
        try:
            if kind == "publicTrade":
                for tick in parse_trades(message):
                    self._sink(tick)
            elif kind == "tickers":
                state = self._tickers.get(symbol)
                if state is None:
                    return
                if message.get("type") == "snapshot" or state.fields:
                    mark = state.apply(message)
                    if mark is not None:
                        self._sink(mark)
        except MalformedMessage as exc:
            self._counters["malformed"] += 1
            log.warning("bybit_public_message_dropped topic=%s error=%r", topic, str(exc)[:200])

    def _on_private(self, topic: str, message: dict[str, Any]) -> None:
        self._counters["messages_private"] += 1
        data = message.get("data")
        if not isinstance(data, list):
            self._counters["malformed"] += 1
            log.warning("bybit_private_message_dropped topic=%s error='data is not a list'", topic)
            return
        kind = topic.partition(".")[0]
        ts = message.get("creationTime")
        ts_ms = ts if isinstance(ts, int) else self.clock.now_ms()
        for entry in data:
            try:
                if kind == "order":
                    self._apply_order(parse_order(entry))
                elif kind == "execution":
                    self._apply_execution(entry)
                elif kind == "position":
                    self._apply_position(parse_position(entry, margin_mode=self._margin_mode))
                elif kind == "wallet":
                    for balance in parse_balances(entry, ts_ms=ts_ms):
                        self._apply_balance(balance, "order")
            except MalformedMessage as exc:
                self._counters["malformed"] += 1
                log.warning("bybit_private_message_dropped topic=%s error=%r", topic, str(exc)[:200])

    # ---- user state ---------------------------------------------------------------------------------
    def _store(self, order: Order) -> None:
        orders = self._orders
        orders[order.client_order_id or f"id:{order.venue_order_id}"] = order
        if len(orders) > self._max_orders:  # the oldest closed order goes; open ones are never evicted
            victim = next((k for k, o in orders.items() if not o.status.is_open), None)
            if victim is not None:
                del orders[victim]

    def _apply_order(self, order: Order, *, emit: bool = True) -> None:
        key = order.client_order_id or f"id:{order.venue_order_id}"
        known = self._orders.get(key)
        if known is not None and known.status is not OrderStatus.PENDING:
            if not known.status.is_open and order.status.is_open:
                return  # an older message after the final one
            if order.filled_qty < known.filled_qty:
                return
            same = (
                known.status is order.status
                and known.filled_qty == order.filled_qty
                and known.qty == order.qty
                and known.price == order.price
                and known.trigger_price == order.trigger_price
            )
            if same:
                if order.avg_price != known.avg_price or order.reason != known.reason:
                    self._store(order)
                return
        self._store(order)
        if emit:
            self._sink(OrderUpdate(order=order, fill=None))
        waiter = self._verdicts.get(order.client_order_id)
        if waiter is not None and not waiter.done() and order.status is not OrderStatus.PENDING:
            waiter.set_result(order)

    def _apply_execution(self, entry: dict[str, Any]) -> None:
        link = str(entry.get("orderLinkId") or "")
        key = link or f"id:{entry.get('orderId', '')}"
        known = self._orders.get(key)
        position_side = known.position_side if known is not None else PositionSide.BOTH
        parsed = parse_execution(entry, position_side=position_side)
        if parsed is None:
            return
        if isinstance(parsed, FundingPayment):
            self._sink(parsed)
            return
        fill: Fill = parsed
        if fill.trade_id in self._seen_exec:
            self._counters["duplicate_fills"] += 1
            return
        self._seen_exec.add(fill.trade_id, fill.ts_ms)
        self._last_exec_ms = max(self._last_exec_ms, fill.ts_ms)
        self._counters["fills"] += 1
        order = self._order_after_fill(known, fill, entry)
        self._store(order)
        self._sink(OrderUpdate(order=order, fill=fill))

    def _order_after_fill(self, known: Order | None, fill: Fill, entry: dict[str, Any]) -> Order:
        """The order's state after ``fill``. An order message that already counted this execution
        (``cumExecQty`` >= ``orderQty - leavesQty``) is kept as it is."""
        order_qty = opt_dec(entry, "orderQty")
        venue_filled = order_qty - opt_dec(entry, "leavesQty") if order_qty > 0 else _ZERO
        if known is None:
            limit = entry.get("orderType") == "Limit"
            base = Order(
                venue=self.venue,
                symbol=fill.symbol,
                client_order_id=fill.client_order_id,
                venue_order_id=fill.venue_order_id,
                side=fill.side,
                type=OrderType.LIMIT if limit else OrderType.MARKET,
                tif=TimeInForce.GTC if limit else TimeInForce.IOC,
                qty=order_qty if order_qty > 0 else fill.qty,
                price=opt_dec(entry, "orderPrice") if limit else None,
                filled_qty=_ZERO,
                avg_price=_ZERO,
                status=OrderStatus.NEW,
                reduce_only=False,
                position_side=fill.position_side,
                trigger_price=None,
                ts_ms=fill.ts_ms,
            )
        else:
            base = known
        prior = base.filled_qty
        if venue_filled > 0 and prior >= venue_filled:
            return base
        filled = max(prior + fill.qty, venue_filled)
        if base.qty > 0:
            filled = min(filled, base.qty)
        avg = (base.avg_price * prior + fill.price * fill.qty) / (prior + fill.qty)
        status = base.status
        if status.is_open:
            status = OrderStatus.FILLED if filled >= base.qty else OrderStatus.PARTIALLY_FILLED
        return dataclasses.replace(
            base,
            venue_order_id=fill.venue_order_id or base.venue_order_id,
            filled_qty=filled,
            avg_price=avg,
            status=status,
            ts_ms=fill.ts_ms,
        )

    def _apply_position(self, position: Position, *, emit: bool = True) -> None:
        if position.side is not PositionSide.BOTH:
            self._hedge = True
        key = (position.symbol, position.side)
        known = self._positions.get(key)
        if known is not None and dataclasses.replace(known, ts_ms=position.ts_ms) == position:
            return
        self._positions[key] = position
        if emit:
            self._sink(PositionUpdate(position=position))

    def _apply_balance(self, balance: Balance, reason: str, *, emit: bool = True) -> None:
        known = self._balances.get(balance.asset)
        if known is not None and dataclasses.replace(known, ts_ms=balance.ts_ms) == balance:
            return
        self._balances[balance.asset] = balance
        if emit:
            self._sink(BalanceUpdate(balance=balance, reason=reason))

    # ---- reconciliation ---------------------------------------------------------------------------------
    async def _on_private_ready(self, reconnected: bool) -> None:
        """The private stream is subscribed: seed the state (first time) or reconcile (after a gap)."""
        attempts = 3
        for attempt in range(attempts):
            try:
                await self._reconcile(emit=reconnected)
                return
            except asyncio.CancelledError:
                raise
            except EngineError as exc:
                self._counters["reconcile_failures"] += 1
                log.warning("bybit_reconcile_failed attempt=%d error=%r", attempt + 1, str(exc)[:200])
                await asyncio.sleep(0.2 * 2**attempt)
        # still failing: reconnect, which reconciles again once the stream is back
        if self._private is not None:
            await self._private.conn.reconnect("reconcile failed")

    async def _reconcile(self, *, emit: bool) -> None:
        if not self._exec_floor_ms:
            self._exec_floor_ms = self.clock.now_ms() - 5_000
        self._counters["reconciles"] += emit
        if emit:
            log.info("bybit_reconcile_start last_exec_ms=%d", self._last_exec_ms)
            await self._reconcile_executions()
        open_now = await self.open_orders()
        open_keys = set()
        for order in open_now:
            open_keys.add(order.client_order_id or f"id:{order.venue_order_id}")
            self._apply_order(order, emit=emit)
        if emit:
            vanished = [
                o
                for k, o in list(self._orders.items())
                if o.status.is_open and o.status is not OrderStatus.PENDING and k not in open_keys
            ]
            for order in vanished:
                if not order.client_order_id:
                    continue
                found = await self.get_order(order.symbol, client_order_id=order.client_order_id, store=False)
                if found is None:
                    # the venue does not know it (restarted, purged): it cannot fill any more
                    self._counters["orders_closed_out"] += 1
                    log.warning(
                        "bybit_order_unknown_to_venue link=%s symbol=%s", order.client_order_id, order.symbol
                    )
                    found = dataclasses.replace(
                        order, status=OrderStatus.CANCELED, reason=UNKNOWN_TO_VENUE, ts_ms=self.clock.now_ms()
                    )
                self._apply_order(found)
        seen_positions = set()
        for position in await self._all_positions():
            seen_positions.add((position.symbol, position.side))
            self._apply_position(position, emit=emit)
        for key, known in list(self._positions.items()):
            if key not in seen_positions and known.qty != 0:
                self._apply_position(dataclasses.replace(known, qty=_ZERO, unrealized_pnl=_ZERO), emit=emit)
        for balance in await self.balances():
            self._apply_balance(balance, "reconcile", emit=emit)
        if emit:
            log.info("bybit_reconcile_done")

    async def _all_positions(self) -> list[Position]:
        out: list[Position] = []
        async for entry in self._pages(
            "positions", {"category": CATEGORY, "settleCoin": "USDT", "limit": 200}
        ):
            out.append(self._parsed(parse_position, entry, margin_mode=self._margin_mode))
        return out

    async def _reconcile_executions(self) -> None:
        # from a little before the last execution seen, or from when the stream first came up
        start = max(self._exec_floor_ms, self._last_exec_ms - 5_000)
        entries: list[dict[str, Any]] = []
        for sym in self._symbols:
            base = {"category": CATEGORY, "symbol": sym, "startTime": start, "limit": 100}
            entries.extend([e async for e in self._pages("executions", base)])
        entries.sort(key=lambda e: int(str(e.get("execTime") or 0)))
        for entry in entries:
            try:
                self._apply_execution(entry)
            except MalformedMessage as exc:
                self._counters["malformed"] += 1
                log.warning("bybit_reconcile_execution_dropped error=%r", str(exc)[:200])

    # ---- helpers for tests and the engine -------------------------------------------------------------
    def known_orders(self) -> Iterable[Order]:
        """The orders the adapter tracks (latest state each)."""
        return list(self._orders.values())
