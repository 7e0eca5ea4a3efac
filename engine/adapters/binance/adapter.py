"""The Binance USD-M adapter: ``ExchangeAdapter`` over python-binance REST and ``websockets`` streams.

- REST: :class:`~engine.adapters.binance.rest.BinanceRest` (limiter, clock, error mapping).
- Books: one ``/public`` combined depth stream for every symbol; each frame's bytes go straight to the
  symbol's :class:`BookManager` (``BinanceBookSync.on_bytes``); snapshots come from ``GET depth`` when
  the stream (re)connects or a gap is seen, one fetch in flight per symbol.
- Market: ``/market`` combined stream (``aggTrade``, ``markPrice@1s``) -> TradeTick / MarkPrice.
- User stream: ``/private/ws/<listenKey>``; the key is created over REST at every connect, kept alive
  every ``listen_key_keepalive_s``, recreated on ``listenKeyExpired`` / -1125; after any gap (reconnect,
  expiry) open orders, fills (``userTrades``), positions and balances are reconciled over REST and the
  differences delivered as events, so no fill is missed. Fills are de-duplicated by trade id.
- Conditional orders (STOP_MARKET / TAKE_PROFIT_MARKET) go through the algo service (``/fapi/v1/algoOrder``);
  once triggered, their executions belong to the order the trigger created (``actualOrderId``, ALGO_UPDATE
  ``ai``): kept per client id, so reconciliation backfills a triggered order's missed fills from
  ``userTrades`` under that id.
- Orders: rounded to the instrument grid, min notional checked locally, client id = the request's;
  after a time-out or 5xx the order is looked up by client id before anything is sent again.

Queues: none of its own. Frames are handled synchronously as they are read (the library's receive
queue is bounded, see ``wsconn``); events go to the sink synchronously; the trade-id set and the order
cache are bounded (oldest closed entries evicted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson

from engine.adapters.base import UNKNOWN_TO_VENUE, AdapterSettings, EventSink, ExchangeAdapter
from engine.adapters.binance import parsing
from engine.adapters.binance.constants import (
    NOT_MODIFIED_CODES,
    ORDER_TYPE_WIRE,
    POSITION_SIDE,
    POSITION_SIDE_WIRE,
    SIDE_WIRE,
    TIF_WIRE,
    rate_limits,
)
from engine.adapters.binance.rest import BinanceRest
from engine.adapters.binance.ws import (
    depth_stream_url,
    market_stream_url,
    private_stream_url,
    stream_symbol,
)
from engine.adapters.common import cancel_task
from engine.adapters.common.books import BookManager, BookWatchdog
from engine.adapters.common.clock import VenueClock
from engine.adapters.common.ratelimit import RateLimiter, RateLimitRules
from engine.adapters.common.wsconn import WsConnection
from engine.bounded import SeenKeys
from engine.errors import (
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
    Instrument,
    MarginMode,
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
    TriggerBy,
    Venue,
    VenueStatus,
)

__all__ = ["BinanceAdapter"]

log = logging.getLogger("engine.adapters.binance")

_CONDITIONAL = frozenset({OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})
_ZERO = Decimal(0)
_MAX_ORDERS = 1_000  # order cache bound: the oldest closed, fully delivered orders are evicted first
_MAX_TRADES = 50_000  # de-duplication window of trade ids (fingerprints, about 80 bytes each)


class BinanceAdapter(ExchangeAdapter):
    """One Binance USD-M account (see the module docstring)."""

    venue = Venue.BINANCE

    def __init__(
        self,
        settings: AdapterSettings,
        sink: EventSink,
        *,
        listen_key_keepalive_s: float = 1800.0,
        stall_after_s: float | None = None,
        place_retries: int = 3,
        retry_delay_s: float = 0.2,
        rate_rules: RateLimitRules | None = None,
        reconnect_base_delay_s: float = 0.1,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self.symbols = self.symbols_of(settings.symbols)
        self.listen_key_keepalive_s = listen_key_keepalive_s
        self.stall_after_s = (
            stall_after_s if stall_after_s is not None else max(2 * settings.stale_after_s, 1.0)
        )
        self.place_retries = place_retries
        self.retry_delay_s = retry_delay_s
        self.reconnect_base_delay_s = reconnect_base_delay_s
        self.limiter = RateLimiter(rate_rules or rate_limits(), on_alert=self._on_limiter_alert)
        self.rest = BinanceRest(settings, self.limiter)
        self.clock = VenueClock(
            venue="binance",
            fetch_server_ms=self.rest.server_time_ms,
            resync_s=settings.clock_resync_s,
            on_sync=self.rest.set_offset,
        )
        self.rest.clock = self.clock
        self._instruments: dict[str, Instrument] = {}
        self._info: dict[str, Any] | None = None  # the last exchangeInfo
        self._books: dict[str, BookManager] = {}
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._orders: OrderedDict[str, Order] = OrderedDict()
        self._trades = SeenKeys(_MAX_TRADES)  # (symbol, trade id) of every fill delivered
        self._fill_qty: dict[str, Decimal] = {}  # client id -> quantity delivered as Fill events
        # client id of a cached, triggered conditional order -> the order its trigger created (its fills'
        # order id); bounded with the order cache (an entry leaves with its order)
        self._actual_ids: dict[str, str] = {}
        self._positions: dict[tuple[str, PositionSide], Position] = {}
        self._balances: dict[str, Balance] = {}
        self._marks: dict[str, Decimal] = {}
        self._hedge = False
        self._listen_key: str | None = None
        self._reconcile_lock = asyncio.Lock()
        self._depth_ws: WsConnection | None = None
        self._market_ws: WsConnection | None = None
        self._private_ws: WsConnection | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._watchdog = BookWatchdog(lambda: self._books.values(), max(settings.stale_after_s / 4, 0.05))
        self._closed = True
        self.counters: dict[str, int] = {
            "malformed": 0,
            "place_retries": 0,
            "orders_adopted": 0,
            "orders_closed_out": 0,
            "reconciles": 0,
            "reconciled_fills": 0,
            "duplicate_fills": 0,
            "listen_keys": 0,
            "listen_key_expired": 0,
            "keepalives": 0,
            "snapshot_failures": 0,
        }

    # ---- lifecycle --------------------------------------------------------------------------------------
    async def connect(self) -> None:
        self._closed = False
        await self.rest.open()
        # exchangeInfo first (unsigned, needs no clock): its rateLimits replace the limiter's defaults
        # before anything else is spent, so the clock sync below already runs on the venue's budget (a
        # usage header counting earlier start-ups would otherwise stall it under the default 2400/min)
        await self._exchange_info()
        await self.clock.sync()
        self.clock.start()
        await self.instruments()
        mode = await self.rest.call(
            "GET /fapi/v1/positionSide/dual", self.rest.client.futures_get_position_mode
        )
        self._hedge = parsing.position_mode(mode)
        for symbol in self.symbols:
            inst = self._instrument(symbol)
            self._books[symbol] = BookManager(
                venue=self.venue,
                symbol=symbol,
                tick_size=inst.tick_size,
                lot_size=inst.lot_size,
                kind="binance",
                sink=self._sink,
                request_resync=self._request_snapshot,
                now_ms=self.clock.now_ms,
                stale_after_s=self.settings.stale_after_s,
            )
        await self._reconcile("connect", emit=True)
        common: dict[str, Any] = {
            "venue": self.venue,
            "on_status": self._sink,
            "now_ms": self.clock.now_ms,
            "ping_interval_s": self.settings.ws_ping_interval_s,
            "ping_timeout_s": self.settings.ws_ping_interval_s,
            "base_delay_s": self.reconnect_base_delay_s,
            "max_delay_s": self.settings.reconnect_max_delay_s,
            "open_timeout_s": self.settings.request_timeout_s,
        }
        self._private_ws = WsConnection(
            stream="private",
            url=self._private_url,
            on_message=self._on_private,
            on_open=self._on_private_open,
            **common,
        )
        self._private_ws.start()
        if self.symbols:
            self._depth_ws = WsConnection(
                stream="public",
                url=depth_stream_url(self.settings.ws_public_url, self.symbols),
                on_message=self._on_depth,
                on_open=self._on_depth_open,
                stall_after_s=self.stall_after_s,
                max_queue=4096,
                **common,
            )
            self._market_ws = WsConnection(
                stream="market",
                url=market_stream_url(self.settings.ws_public_url, self.symbols),
                on_message=self._on_market,
                stall_after_s=self.stall_after_s,
                **common,
            )
            self._depth_ws.start()
            self._market_ws.start()
        self._keepalive_task = asyncio.create_task(self._keepalive_loop(), name="binance-listenkey-keepalive")
        self._watchdog.start()
        await self._wait_ready(self.settings.request_timeout_s)

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            private_ok = self._private_ws is not None and self._private_ws.connected
            if private_ok and all(b.health is BookHealth.LIVE for b in self._books.values()):
                return
            await asyncio.sleep(0.02)
        log.warning(
            "binance_connect_not_ready books=%s",
            ",".join(f"{s}:{b.health}" for s, b in self._books.items()),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._watchdog.stop()
        await cancel_task(self._keepalive_task)
        for conn in (self._depth_ws, self._market_ws, self._private_ws):
            if conn is not None:
                await conn.stop()
        for task in [*self._snapshot_tasks.values(), *self._tasks]:
            await cancel_task(task)
        await self.clock.stop()
        if self._listen_key is not None and self.limiter.blocked_for_s > 0:
            # the key lapses within the hour by itself
            log.info("binance_listen_key_close_skipped reason=rate_limit_backoff")
        elif self._listen_key is not None:
            try:
                await self.rest.call(
                    "DELETE /fapi/v1/listenKey",
                    self.rest.client.futures_stream_close,
                    listenKey=self._listen_key,
                )
            except VenueError as exc:  # the key lapses by itself within the hour
                log.info("binance_listen_key_close_failed error=%r", str(exc))
            self._listen_key = None
        await self.rest.close()

    # ---- reference data ---------------------------------------------------------------------------------
    async def instruments(self) -> dict[str, Instrument]:
        if self._instruments:
            return dict(self._instruments)
        info = self._info if self._info is not None else await self._exchange_info()
        brackets = await self.rest.call(
            "GET /fapi/v1/leverageBracket", self.rest.client.futures_leverage_bracket
        )
        if isinstance(brackets, dict):
            brackets = [brackets]
        self._instruments = parsing.instruments(info, parsing.max_leverages(brackets))
        return dict(self._instruments)

    async def _exchange_info(self) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo`` (unsigned); its ``rateLimits`` are applied to the limiter."""
        info: dict[str, Any] = await self.rest.call(
            "GET /fapi/v1/exchangeInfo", self.rest.client.futures_exchange_info
        )
        self._apply_rate_limits(info.get("rateLimits") or [])
        self._info = info
        return info

    def _apply_rate_limits(self, limits: Iterable[dict[str, Any]]) -> None:
        seconds = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
        for entry in limits:
            window_s = seconds.get(str(entry.get("interval")), 0) * int(entry.get("intervalNum", 1))
            kind = entry.get("rateLimitType")
            name = None
            if kind == "REQUEST_WEIGHT" and window_s == 60:
                name = "weight"
            elif kind == "ORDERS" and window_s == 10:
                name = "orders_10s"
            elif kind == "ORDERS" and window_s == 60:
                name = "orders_1m"
            if name is not None:
                self.limiter.set_limit(name, int(entry["limit"]))

    def _instrument(self, symbol: str) -> Instrument:
        inst = self._instruments.get(symbol)
        if inst is None:
            raise OrderRejected(
                venue="binance", code=None, message=f"unknown symbol {symbol}", reason="invalid"
            )
        return inst

    # ---- orders -----------------------------------------------------------------------------------------
    def _reference_price(self, symbol: str) -> Decimal | None:
        mark = self._marks.get(symbol)
        if mark is not None:
            return mark
        book = self._books.get(symbol)
        if book is not None and book.health is BookHealth.LIVE:
            mid: Decimal | None = book.book.mid()
            return mid
        return None

    def _order_params(self, request: OrderRequest, inst: Instrument) -> dict[str, Any]:
        qty = inst.round_qty(request.qty)
        if not request.close_position and (qty <= 0 or qty < inst.min_qty or qty > inst.max_qty):
            raise OrderRejected(
                venue="binance",
                code=None,
                message=f"quantity {qty} (from {request.qty}) outside [{inst.min_qty}, {inst.max_qty}]",
                reason="qty_out_of_range",
            )
        params: dict[str, Any] = {
            "symbol": request.symbol,
            "side": SIDE_WIRE[request.side],
            "type": ORDER_TYPE_WIRE[request.type],
        }
        price: Decimal | None = None
        if request.type is OrderType.LIMIT:
            if request.price is None:
                raise OrderRejected(
                    venue="binance", code=None, message="a limit order needs a price", reason="invalid"
                )
            price = inst.round_price(request.price, request.side)
            if price <= 0:
                raise OrderRejected(
                    venue="binance",
                    code=None,
                    message=f"price {price} is not positive",
                    reason="price_out_of_range",
                )
            params["price"] = str(price)
            params["timeInForce"] = TIF_WIRE[request.tif]
        elif request.type is OrderType.MARKET:
            price = self._reference_price(request.symbol)
        else:
            if request.trigger_price is None:
                raise OrderRejected(
                    venue="binance",
                    code=None,
                    message="a conditional order needs a trigger price",
                    reason="invalid",
                )
            trigger = inst.round_price(request.trigger_price)
            params["triggerPrice"] = str(trigger)
            params["workingType"] = "MARK_PRICE" if request.trigger_by is TriggerBy.MARK else "CONTRACT_PRICE"
            price = trigger
        if request.close_position:
            params["closePosition"] = "true"
        else:
            params["quantity"] = str(qty)
        if not request.reduce_only and not request.close_position and price is not None:
            notional = price * qty
            if notional < inst.min_notional:
                raise OrderRejected(
                    venue="binance",
                    code=None,
                    message=(
                        f"notional {notional} ({qty} x {price}) is below the minimum {inst.min_notional} "
                        f"of {request.symbol}; not sent"
                    ),
                    reason="min_notional",
                )
        if self._hedge:
            side = request.position_side
            if side is PositionSide.BOTH:
                opening_long = (request.side is Side.BUY) != request.reduce_only
                side = PositionSide.LONG if opening_long else PositionSide.SHORT
            params["positionSide"] = POSITION_SIDE_WIRE[side]
        elif request.reduce_only and not request.close_position:
            params["reduceOnly"] = "true"
        if request.type in _CONDITIONAL:
            params["clientAlgoId"] = request.client_order_id
        else:
            params["newClientOrderId"] = request.client_order_id
            params["newOrderRespType"] = "RESULT"
        return params

    async def place_order(self, request: OrderRequest) -> Order:
        inst = self._instrument(request.symbol)
        params = self._order_params(request, inst)
        conditional = request.type in _CONDITIONAL
        endpoint = "POST /fapi/v1/algoOrder" if conditional else "POST /fapi/v1/order"
        cid = request.client_order_id
        attempt = 0
        while True:
            try:
                result = await self.rest.call(endpoint, self.rest.client.futures_create_order, **dict(params))
                break
            except VenueUnavailable as exc:
                attempt += 1
                self.counters["place_retries"] += 1
                log.warning(
                    "binance_place_unknown_outcome cid=%s attempt=%d error=%r", cid, attempt, str(exc)[:200]
                )
                existing = await self._lookup_after_unknown(request.symbol, cid)
                if existing is not None:
                    self.counters["orders_adopted"] += 1
                    log.info("binance_place_adopted cid=%s status=%s", cid, existing.status)
                    self._remember(existing)
                    return existing
                if attempt > self.place_retries:
                    raise
                await asyncio.sleep(self.retry_delay_s * attempt)
            except OrderRejected as exc:
                if exc.reason != "duplicate_client_id":
                    raise
                existing = await self._lookup_after_unknown(request.symbol, cid)
                if existing is None:
                    raise
                self.counters["orders_adopted"] += 1
                return existing
        if conditional:
            return self._remember_algo(result)
        return self._remember(parsing.order(result))

    async def _lookup_after_unknown(self, symbol: str, client_order_id: str) -> Order | None:
        """Ask the venue for an order whose placement outcome is unknown; retried until it answers."""
        for attempt in range(1, self.place_retries + 3):
            try:
                return await self.get_order(symbol, client_order_id=client_order_id)
            except VenueUnavailable as exc:
                log.warning(
                    "binance_lookup_failed cid=%s attempt=%d error=%r", client_order_id, attempt, str(exc)
                )
                await asyncio.sleep(self.retry_delay_s * attempt)
        raise VenueUnavailable(
            venue="binance",
            code=None,
            message=f"order {client_order_id}: outcome unknown, venue not answering",
        )

    def _is_conditional(self, client_order_id: str) -> bool | None:
        known = self._orders.get(client_order_id)
        return None if known is None else known.type in _CONDITIONAL

    async def get_order(self, symbol: str, *, client_order_id: str) -> Order | None:
        conditional = self._is_conditional(client_order_id)
        if conditional is not True:
            try:
                data = await self.rest.call(
                    "GET /fapi/v1/order",
                    self.rest.client.futures_get_order,
                    symbol=symbol,
                    origClientOrderId=client_order_id,
                )
                return self._remember(parsing.order(data))
            except OrderRejected as exc:
                if exc.reason != "unknown_order":
                    raise
        if conditional is not False:
            try:
                data = await self.rest.call(
                    "GET /fapi/v1/algoOrder",
                    self.rest.client.futures_get_order,
                    symbol=symbol,
                    clientAlgoId=client_order_id,
                )
                return self._remember_algo(data)
            except OrderRejected as exc:
                if exc.reason != "unknown_order":
                    raise
        return None

    async def cancel_order(self, symbol: str, *, client_order_id: str) -> Order:
        conditional = self._is_conditional(client_order_id)
        if conditional is not True:
            try:
                data = await self.rest.call(
                    "DELETE /fapi/v1/order",
                    self.rest.client.futures_cancel_order,
                    symbol=symbol,
                    origClientOrderId=client_order_id,
                )
                return self._remember(parsing.order(data))
            except OrderRejected as exc:
                if exc.reason != "unknown_order" or conditional is False:
                    raise
        await self.rest.call(
            "DELETE /fapi/v1/algoOrder",
            self.rest.client.futures_cancel_order,
            symbol=symbol,
            clientAlgoId=client_order_id,
        )
        order = await self.get_order(symbol, client_order_id=client_order_id)
        if order is None:
            raise OrderRejected(
                venue="binance", code=None, message=f"order {client_order_id} unknown", reason="unknown_order"
            )
        return order

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        symbols = [symbol] if symbol is not None else list(self.symbols)
        cancelled: list[Order] = []
        for sym in symbols:
            open_now = await self.open_orders(sym)
            await self.rest.call(
                "DELETE /fapi/v1/allOpenOrders", self.rest.client.futures_cancel_all_open_orders, symbol=sym
            )
            if any(o.type in _CONDITIONAL for o in open_now):
                await self.rest.call(
                    "DELETE /fapi/v1/algoOpenOrders",
                    self.rest.client.futures_cancel_all_open_orders,
                    symbol=sym,
                    conditional=True,
                )
            for o in open_now:
                cancelled.append(self._remember(dataclasses.replace(o, status=OrderStatus.CANCELED)))
        return cancelled

    async def amend_order(
        self, symbol: str, *, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> Order:
        inst = self._instrument(symbol)
        current = self._orders.get(client_order_id)
        if current is None or (qty is None or price is None):
            current = await self.get_order(symbol, client_order_id=client_order_id)
        if current is None:
            raise OrderRejected(
                venue="binance", code=None, message=f"order {client_order_id} unknown", reason="unknown_order"
            )
        new_qty = inst.round_qty(qty if qty is not None else current.qty)
        new_price = inst.round_price(
            price if price is not None else (current.price or Decimal(0)), current.side
        )
        data = await self.rest.call(
            "PUT /fapi/v1/order",
            self.rest.client.futures_modify_order,
            symbol=symbol,
            origClientOrderId=client_order_id,
            side=SIDE_WIRE[current.side],
            quantity=str(new_qty),
            price=str(new_price),
        )
        return self._remember(parsing.order(data))

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        kwargs: dict[str, Any] = {"symbol": symbol} if symbol is not None else {}
        rows = await self.rest.call(
            "GET /fapi/v1/openOrders", self.rest.client.futures_get_open_orders, **kwargs
        )
        algos = await self.rest.call(
            "GET /fapi/v1/openAlgoOrders",
            self.rest.client.futures_get_open_orders,
            conditional=True,
            **kwargs,
        )
        orders = [parsing.order(r) for r in rows]
        conditional = [(parsing.algo_order(r), parsing.actual_order_id(r)) for r in algos]
        return [self._remember(o) for o in orders] + [
            self._remember(o, actual_order_id=actual) for o, actual in conditional
        ]

    async def order_fills(
        self, symbol: str, *, client_order_id: str | None = None, venue_order_id: str | None = None
    ) -> list[Fill]:
        """``GET /fapi/v1/userTrades?symbol=&orderId=``. The trades name the venue order id only: with just
        a client id the order is looked up first (unknown -> no fills); with just a venue id the fills'
        client id is "" (the OMS names such fills by the venue id). A conditional (algo) order's trades
        belong to the order its trigger created (``actualOrderId``), not to its algo id: for one known as
        conditional (or found so by the look-up) they are asked under that id, none while it never
        triggered; a given venue id is taken as an order id, never as an algo id."""
        if client_order_id is not None:
            conditional = self._is_conditional(client_order_id)
            actual = self._actual_ids.get(client_order_id) if conditional else None
            if actual is not None:
                venue_order_id = actual
            elif conditional or venue_order_id is None:
                order = await self.get_order(symbol, client_order_id=client_order_id)
                fills_id = self._fills_order_id(order) if order is not None else None
                if fills_id is None:
                    return []  # unknown, or a conditional order that did not trigger
                venue_order_id = fills_id
        if venue_order_id is None:
            raise ValueError("order_fills needs a client_order_id or a venue_order_id")
        return await self._trades_of(symbol, venue_order_id, client_order_id=client_order_id or "")

    async def _trades_of(self, symbol: str, venue_order_id: str, *, client_order_id: str) -> list[Fill]:
        """The trades of one venue order (``userTrades`` by ``orderId``), oldest first, named
        ``client_order_id``."""
        if not venue_order_id.isdigit():
            raise ValueError(f"not a Binance order id: {venue_order_id!r}")
        rows = await self.rest.call(
            "GET /fapi/v1/userTrades",
            self.rest.client.futures_account_trades,
            symbol=symbol,
            orderId=int(venue_order_id),
            limit=1000,
        )
        fills = [
            parsing.user_trade(row, client_order_id=client_order_id)
            for row in rows
            if str(row.get("orderId")) == venue_order_id  # the venue's answer, checked
        ]
        fills.sort(key=lambda f: (f.ts_ms, f.trade_id))
        return fills

    def _remember_algo(self, data: dict[str, Any]) -> Order:
        """Cache a conditional order of an algo-order answer, with the order its trigger created."""
        return self._remember(parsing.algo_order(data), actual_order_id=parsing.actual_order_id(data))

    def _remember(self, order: Order, *, actual_order_id: str = "") -> Order:
        """Cache ``order`` (most recent last), and for a triggered conditional order the order its
        trigger created (``actual_order_id``, whose trades are its fills). Beyond ``_MAX_ORDERS`` the
        oldest closed orders are evicted, those whose fills were all delivered first (a closed order with
        fills still owed, e.g. filled in a REST answer, or a triggered stop whose fills the stream missed,
        waits for them or for reconciliation's backfill, unless only such orders are left; a conditional
        order without a known actual order id cannot be backfilled and counts as settled), and with each
        its delivered fill quantity (``_fill_qty``) and actual order id: a late event for an evicted order
        is still de-duplicated by its trade id (``_trades``). Open orders stay."""
        cid = order.client_order_id
        self._orders[cid] = order
        self._orders.move_to_end(cid)
        if actual_order_id:
            self._actual_ids[cid] = actual_order_id
        excess = len(self._orders) - _MAX_ORDERS
        if excess > 0:
            victims: list[str] = []
            owed: list[str] = []
            for c, o in self._orders.items():  # oldest first; stops at the first ``excess`` settled ones
                if o.status.is_open:
                    continue
                if o.filled_qty <= self._fill_qty.get(c, _ZERO) or self._fills_order_id(o) is None:
                    victims.append(c)
                    if len(victims) == excess:
                        break
                else:
                    owed.append(c)
            else:
                victims += owed[: excess - len(victims)]
            for c in victims:
                del self._orders[c]
                self._fill_qty.pop(c, None)
                self._actual_ids.pop(c, None)
        return order

    def _fills_order_id(self, order: Order) -> str | None:
        """The venue order id whose trades are ``order``'s fills: its own, or for a conditional order the
        order its trigger created (None while that is unknown: not triggered, or never told)."""
        if order.type in _CONDITIONAL:
            return self._actual_ids.get(order.client_order_id)
        return order.venue_order_id

    # ---- account ----------------------------------------------------------------------------------------
    async def _all_positions(self) -> list[Position]:
        rows = await self.rest.call(
            "GET /fapi/v3/positionRisk", self.rest.client.futures_position_information
        )
        out = []
        for r in rows:
            side = POSITION_SIDE.get(str(r.get("positionSide", "BOTH")), PositionSide.BOTH)
            prev = self._positions.get((str(r.get("symbol")), side))
            out.append(parsing.position(r, default_leverage=prev.leverage if prev is not None else 0))
        return out

    async def positions(self) -> list[Position]:
        current = await self._all_positions()
        for p in current:
            self._positions[(p.symbol, p.side)] = p
        return [p for p in current if p.qty != 0]

    async def balances(self) -> list[Balance]:
        rows = await self.rest.call("GET /fapi/v3/balance", self.rest.client.futures_account_balance)
        out = [parsing.balance(r) for r in rows]
        for b in out:
            self._balances[b.asset] = b
        return out

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        await self.rest.call(
            "POST /fapi/v1/leverage",
            self.rest.client.futures_change_leverage,
            symbol=symbol,
            leverage=leverage,
        )

    async def set_margin_mode(self, symbol: str, mode: MarginMode) -> None:
        try:
            await self.rest.call(
                "POST /fapi/v1/marginType",
                self.rest.client.futures_change_margin_type,
                symbol=symbol,
                marginType="ISOLATED" if mode is MarginMode.ISOLATED else "CROSSED",
            )
        except OrderRejected as exc:
            if exc.code not in NOT_MODIFIED_CODES:
                raise

    async def set_position_mode(self, *, hedge: bool) -> None:
        try:
            await self.rest.call(
                "POST /fapi/v1/positionSide/dual",
                self.rest.client.futures_change_position_mode,
                dualSidePosition="true" if hedge else "false",
            )
        except OrderRejected as exc:
            if exc.code not in NOT_MODIFIED_CODES:
                raise
        self._hedge = hedge

    # ---- market data ------------------------------------------------------------------------------------
    def book(self, symbol: str) -> Any:
        return self._books[symbol.upper()].book

    def book_health(self, symbol: str) -> BookHealth:
        return self._books[symbol.upper()].health

    def book_manager(self, symbol: str) -> BookManager:
        return self._books[symbol.upper()]

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["resyncs"] = sum(b.resyncs for b in self._books.values())
        out["malformed"] += sum(b.malformed for b in self._books.values())
        out["book_updates"] = sum(b.updates for b in self._books.values())
        out["stale_marks"] = sum(b.stale_marks for b in self._books.values())
        out.update(self.limiter.stats())
        out["rest_requests"] = self.rest.requests
        out["rest_errors"] = self.rest.errors
        out["rest_timeouts"] = self.rest.timeouts
        out["clock_syncs"] = self.clock.syncs
        out["clock_skew_retries"] = self.clock.skew_retries
        out["reconnects"] = 0
        out["messages"] = 0
        for conn in (self._depth_ws, self._market_ws, self._private_ws):
            if conn is not None:
                out.update(conn.stats())
                out["reconnects"] += conn.reconnects
                out["messages"] += conn.messages
        return out

    def _on_limiter_alert(self, kind: str, detail: str) -> None:
        self._sink(
            VenueStatus(
                venue=self.venue, stream="rest", status=kind, detail=detail, ts_ms=self.clock.now_ms()
            )
        )

    # ---- depth ------------------------------------------------------------------------------------------
    async def _on_depth_open(self, conn: WsConnection, reconnected: bool) -> None:
        for manager in self._books.values():
            if reconnected:
                manager.reset("depth stream reconnected")
            self._request_snapshot(manager.symbol)

    def _on_depth(self, raw: bytes, recv_ns: int) -> None:
        symbol = stream_symbol(raw)
        manager = self._books.get(symbol) if symbol is not None else None
        if manager is None:
            self.counters["malformed"] += 1
            log.warning("binance_depth_unroutable head=%r", raw[:80])
            return
        manager.on_bytes(raw, recv_ns)

    def _request_snapshot(self, symbol: str) -> None:
        task = self._snapshot_tasks.get(symbol)
        if task is not None and not task.done():
            return
        if self._closed:
            return
        self._snapshot_tasks[symbol] = asyncio.create_task(
            self._snapshot(symbol), name=f"binance-snapshot-{symbol}"
        )

    async def _snapshot(self, symbol: str) -> None:
        manager = self._books[symbol]
        attempt = 0
        while manager.awaiting_snapshot:
            attempt += 1
            try:
                data = await self.rest.call(
                    "GET /fapi/v1/depth", self.rest.client.futures_order_book, symbol=symbol, limit=1000
                )
                snap = parsing.depth_snapshot(data)
            except (VenueError, MalformedMessage) as exc:
                self.counters["snapshot_failures"] += 1
                log.warning(
                    "binance_snapshot_failed symbol=%s attempt=%d error=%r", symbol, attempt, str(exc)
                )
                await asyncio.sleep(min(self.settings.reconnect_max_delay_s, 0.1 * 2 ** min(attempt, 8)))
                continue
            code = manager.on_snapshot(snap.last_update_id, snap.bids, snap.asks)
            if manager.awaiting_snapshot:
                # the snapshot was older than the buffered stream (GAP): fetch again shortly
                log.info("binance_snapshot_retry symbol=%s code=%s attempt=%d", symbol, code, attempt)
                await asyncio.sleep(min(1.0, 0.05 * attempt))

    # ---- market -----------------------------------------------------------------------------------------
    def _on_market(self, raw: bytes, recv_ns: int) -> None:
        try:
            data = parsing.unwrap(orjson.loads(raw))
            kind = data.get("e")
            if kind == "aggTrade":
                self._sink(parsing.agg_trade(data))
            elif kind == "markPriceUpdate":
                mark: MarkPrice = parsing.mark_price(data)
                self._marks[mark.symbol] = mark.mark_price
                self._sink(mark)
            elif kind == "trade":
                self._sink(parsing.trade(data))
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            self.counters["malformed"] += 1
            log.warning("binance_market_malformed error=%r", str(exc)[:200])

    # ---- user stream ------------------------------------------------------------------------------------
    async def _private_url(self) -> str:
        data = await self.rest.call("POST /fapi/v1/listenKey", self.rest.client.futures_stream_get_listen_key)
        key = str(data)
        if key != self._listen_key:
            self.counters["listen_keys"] += 1
            log.info("binance_listen_key_created")
        self._listen_key = key
        return private_stream_url(self.settings.ws_private_url, key)

    async def _on_private_open(self, conn: WsConnection, reconnected: bool) -> None:
        if reconnected:
            self._spawn(self._reconcile("private stream reconnected", emit=True))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("binance_task_failed error=%r", str(task.exception()))

    def _on_private(self, raw: bytes, recv_ns: int) -> None:
        try:
            data = parsing.unwrap(orjson.loads(raw))
            kind = data.get("e")
            if kind == "ORDER_TRADE_UPDATE":
                order_update = parsing.order_trade_update(data)
                # a triggered conditional order's execution: its order id is the trigger's actual order
                state = order_update.order
                actual = state.venue_order_id if state.type in _CONDITIONAL else ""
                self._deliver_order_update(order_update, actual_order_id=actual)
            elif kind == "ALGO_UPDATE":
                order_update = parsing.algo_update(data)
                actual = parsing.actual_order_id(data["o"], "ai")
                self._deliver_order_update(order_update, actual_order_id=actual)
            elif kind == "ACCOUNT_UPDATE":
                update = parsing.account_update(
                    data, known_positions=self._positions, known_balances=self._balances
                )
                for b in update.balances:
                    self._balances[b.balance.asset] = b.balance
                    self._sink(b)
                for p in update.positions:
                    self._positions[(p.position.symbol, p.position.side)] = p.position
                    self._sink(p)
                for f in update.funding:
                    self._sink(f)
            elif kind == "listenKeyExpired":
                self.counters["listen_key_expired"] += 1
                log.warning("binance_listen_key_expired")
                self._listen_key = None
                if self._private_ws is not None:
                    self._spawn(self._private_ws.reconnect("listenKeyExpired"))
            elif kind == "TRADE_LITE":
                parsing.trade_lite(data)  # fills are taken from ORDER_TRADE_UPDATE (with fees)
            else:
                log.info("binance_user_event_ignored kind=%s", kind)
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            self.counters["malformed"] += 1
            log.warning("binance_private_malformed error=%r", str(exc)[:200])

    def _deliver_order_update(self, update: OrderUpdate, *, actual_order_id: str = "") -> None:
        if update.fill is not None:
            key = (update.fill.symbol, update.fill.trade_id)
            if key in self._trades:
                self.counters["duplicate_fills"] += 1
                return
            self._see_trade(key)
            cid = update.order.client_order_id
            self._fill_qty[cid] = self._fill_qty.get(cid, Decimal(0)) + update.fill.qty
        # after _fill_qty: an eviction it causes also drops that entry
        self._remember(update.order, actual_order_id=actual_order_id)
        self._sink(update)

    def _see_trade(self, key: tuple[str, str]) -> None:
        self._trades.add(key)

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.listen_key_keepalive_s)
            key = self._listen_key
            if key is None:
                continue
            try:
                await self.rest.call(
                    "PUT /fapi/v1/listenKey", self.rest.client.futures_stream_keepalive, listenKey=key
                )
                self.counters["keepalives"] += 1
            except OrderRejected as exc:
                if exc.code == -1125:
                    log.warning("binance_listen_key_missing")
                    self._listen_key = None
                    if self._private_ws is not None:
                        await self._private_ws.reconnect("listenKey does not exist")
                else:
                    log.warning("binance_keepalive_failed error=%r", str(exc))
            except VenueError as exc:
                log.warning("binance_keepalive_failed error=%r", str(exc))

    # ---- reconciliation ---------------------------------------------------------------------------------
    async def _reconcile(self, reason: str, *, emit: bool) -> None:
        """Bring orders, fills, positions and balances in line with the venue; emit the differences."""
        async with self._reconcile_lock:
            self.counters["reconciles"] += 1
            log.info("binance_reconcile_start reason=%r", reason)
            # open orders, and orders whose fills were not all delivered (e.g. filled in a REST answer)
            known_open = {
                cid: o
                for cid, o in self._orders.items()
                if o.status.is_open or o.filled_qty > self._fill_qty.get(cid, Decimal(0))
            }
            before = {cid: (o.status, o.filled_qty) for cid, o in self._orders.items()}
            open_now = {o.client_order_id: o for o in await self.open_orders()}
            current: dict[str, Order] = dict(open_now)
            for cid, old in known_open.items():
                if cid not in current and old.status.is_open:
                    found = await self.get_order(old.symbol, client_order_id=cid)
                    if found is None:
                        # the venue does not know it (restarted, purged): it cannot fill any more
                        found = self._closed_out(old)
                    current[cid] = found
                elif cid not in current:
                    current[cid] = old
            for cid, order in current.items():
                prev = before.get(cid)
                delivered = self._fill_qty.get(cid, Decimal(0))
                fills_sent = 0
                # a conditional order's fills are the trades of the order its trigger created: backfilled
                # once that id is known (the algo order answers name it)
                fills_id = self._fills_order_id(order)
                if order.filled_qty > delivered and fills_id is not None:
                    fills_sent = await self._reconcile_fills(order, fills_id, emit=emit)
                elif prev is not None and prev == (order.status, order.filled_qty):
                    continue
                if emit and fills_sent == 0:
                    self._sink(OrderUpdate(order=order, fill=None))
            listed: set[tuple[str, PositionSide]] = set()
            for p in await self._all_positions():
                key = (p.symbol, p.side)
                listed.add(key)
                old_p = self._positions.get(key)
                if old_p is not None and p.ts_ms == 0:
                    # a row with no update time (a restarted venue's): still the venue's latest word
                    p = dataclasses.replace(p, ts_ms=old_p.ts_ms)
                self._positions[key] = p
                if emit and (
                    (old_p is None and p.qty != 0)
                    or (old_p is not None and (old_p.qty, old_p.entry_price) != (p.qty, p.entry_price))
                ):
                    self._sink(PositionUpdate(position=p))
            for key, old_p in list(self._positions.items()):
                if key not in listed and old_p.qty != 0:
                    # no longer listed by the venue (positionRisk omits flat symbols): flat now. Its time
                    # stays the last one the venue gave (the flat is inferred from its absence), as Bybit
                    flat = dataclasses.replace(
                        old_p, qty=Decimal(0), entry_price=Decimal(0), unrealized_pnl=Decimal(0)
                    )
                    self._positions[key] = flat
                    if emit:
                        self._sink(PositionUpdate(position=flat))
            for b in await self.balances_raw():
                old_b = self._balances.get(b.asset)
                self._balances[b.asset] = b
                if emit and (old_b is None or old_b.wallet_balance != b.wallet_balance):
                    self._sink(BalanceUpdate(balance=b, reason="reconcile"))
            log.info("binance_reconcile_done reason=%r orders=%d", reason, len(current))

    def _closed_out(self, order: Order) -> Order:
        """``order`` as CANCELED with reason ``unknown_to_venue``: a query by its client id found nothing
        (a restarted venue, a purge). Its fills so far stay counted; it cannot fill any more."""
        self.counters["orders_closed_out"] += 1
        log.warning("binance_order_unknown_to_venue cid=%s symbol=%s", order.client_order_id, order.symbol)
        return self._remember(
            dataclasses.replace(
                order, status=OrderStatus.CANCELED, reason=UNKNOWN_TO_VENUE, ts_ms=self.clock.now_ms()
            )
        )

    async def balances_raw(self) -> list[Balance]:
        rows = await self.rest.call("GET /fapi/v3/balance", self.rest.client.futures_account_balance)
        return [parsing.balance(r) for r in rows]

    async def _reconcile_fills(self, order: Order, venue_order_id: str, *, emit: bool) -> int:
        """Deliver the trades of ``venue_order_id`` (``order``'s own id, or for a triggered conditional
        order its actual order's) not delivered yet (trade id), each with ``order``; returns how many."""
        fills = await self._trades_of(order.symbol, venue_order_id, client_order_id=order.client_order_id)
        sent = 0
        for fill in fills:
            key = (fill.symbol, fill.trade_id)
            if key in self._trades:
                continue
            self._see_trade(key)
            self._fill_qty[order.client_order_id] = (
                self._fill_qty.get(order.client_order_id, Decimal(0)) + fill.qty
            )
            self.counters["reconciled_fills"] += 1
            if emit:
                self._sink(OrderUpdate(order=order, fill=fill))
                sent += 1
        # every trade the venue lists for it has been delivered, now or before (a trade known by id was,
        # even if this order left the cache since and its count restarted): settled, so the next
        # reconciliation does not ask for its trades again
        cid = order.client_order_id
        self._fill_qty[cid] = max(self._fill_qty.get(cid, _ZERO), sum((f.qty for f in fills), _ZERO))
        return sent
