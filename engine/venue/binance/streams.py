"""Binance USD-M WebSocket streams of the local venue (protocol notes 1.6, 1.8, 3.4).

Routes: ``/public/ws/<streams>``, ``/market/ws/<streams>``, ``/public/stream?streams=a/b``,
``/market/stream?streams=...``, the classic ``/ws/<stream>`` and ``/stream?streams=`` (public streams
only, as on the real venue), and the user stream at ``/private/ws/<listenKey>`` or
``/private/ws?listenKey=<key>``. Combined connections get ``{"stream": name, "data": payload}``
frames. ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` work live. A stream subscribed on the
wrong route is accepted and delivers nothing, as on Binance.

Payloads are built once per event and stream and shared by every subscriber. Each connection has a
bounded outgoing queue drained by its own writer task; a consumer that falls ``queue_limit`` messages
behind is disconnected and counted (``binance.ws.slow_consumer_disconnected``), never buffered
without bound. Faults from ``ctx.faults`` apply here: skipped sequence ids, swapped depth messages,
delays, stalls, truncated JSON, listenKey expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import orjson
from aiohttp import WSMsgType, web

from engine.venue import faults
from engine.venue.binance import wire
from engine.venue.binance.errors import BinanceError
from engine.venue.context import VenueContext
from engine.venue.model import (
    AccountState,
    BalanceEvent,
    DepthEvent,
    FundingEvent,
    MarkPriceEvent,
    OrderEvent,
    OrderStatus,
    Position,
    PositionEvent,
    TradeEvent,
    VenueEvent,
    VenueOrder,
)

__all__ = ["BinanceStreams", "ListenKeyStore", "parse_stream_name"]

log = logging.getLogger("engine.venue.binance.streams")

Route = Literal["public", "market", "classic", "private"]

LISTEN_KEY_VALIDITY_MS = 60 * 60 * 1000

_DEPTH = re.compile(r"^([a-z0-9]+)@depth(5|10|20)?(@(?:100|250|500)ms)?$")


def parse_stream_name(name: str) -> tuple[str, str] | None:
    """(channel key, category) for a stream name, None if it is not a stream this venue serves.

    Keys: ``"BTCUSDT|depth"``, ``"BTCUSDT|depth10"``, ``"BTCUSDT|bookTicker"``, ``"*|bookTicker"``,
    ``"BTCUSDT|aggTrade"``, ``"BTCUSDT|markPrice"``, ``"*|markPrice"``. Category ``public`` (book data)
    or ``market`` (everything else public).
    """
    low = name.lower()
    m = _DEPTH.match(low)
    if m:
        return f"{m.group(1).upper()}|depth{m.group(2) or ''}", "public"
    if low == "!bookticker":
        return "*|bookTicker", "public"
    if low in ("!markprice@arr", "!markprice@arr@1s"):
        return "*|markPrice", "market"
    sym, _, rest = low.partition("@")
    if not sym or not sym.isalnum():
        return None
    if rest == "bookticker":
        return f"{sym.upper()}|bookTicker", "public"
    if rest == "aggtrade":
        return f"{sym.upper()}|aggTrade", "market"
    if rest in ("markprice", "markprice@1s"):
        return f"{sym.upper()}|markPrice", "market"
    return None


# ---- listen keys ------------------------------------------------------------------------------------


@dataclass
class _ListenKey:
    key: str
    account: str
    expires_ms: int


class ListenKeyStore:
    """One active listenKey per account, valid ``validity_ms`` (60 min), extended by keepalive."""

    def __init__(self, *, validity_ms: int = LISTEN_KEY_VALIDITY_MS) -> None:
        self.validity_ms = validity_ms
        self._keys: dict[str, _ListenKey] = {}
        self._by_account: dict[str, str] = {}

    def create(self, account: str, now_ms: int) -> str:
        """The account's active key (extended), or a new one."""
        key = self._by_account.get(account)
        if key is not None and key in self._keys:
            self._keys[key].expires_ms = now_ms + self.validity_ms
            return key
        key = secrets.token_urlsafe(48).replace("-", "a").replace("_", "b")[:64]
        self._keys[key] = _ListenKey(key=key, account=account, expires_ms=now_ms + self.validity_ms)
        self._by_account[account] = key
        return key

    def keepalive(self, account: str, key: str | None, now_ms: int) -> str:
        active = self._by_account.get(account)
        if active is None or (key and key != active):
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        self._keys[active].expires_ms = now_ms + self.validity_ms
        return active

    def close(self, account: str, key: str | None) -> str:
        active = self._by_account.get(account)
        if active is None or (key and key != active):
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        del self._keys[active]
        del self._by_account[account]
        return active

    def account_for(self, key: str) -> str | None:
        entry = self._keys.get(key)
        return entry.account if entry is not None else None

    def expires_ms(self, key: str) -> int | None:
        entry = self._keys.get(key)
        return entry.expires_ms if entry is not None else None

    def expire_due(self, now_ms: int, *, all_keys: bool = False) -> list[str]:
        """Remove and return the keys whose validity ended (every key with ``all_keys``)."""
        gone = [k for k, e in self._keys.items() if all_keys or e.expires_ms <= now_ms]
        for key in gone:
            entry = self._keys.pop(key)
            if self._by_account.get(entry.account) == key:
                del self._by_account[entry.account]
        return gone


# ---- connections -----------------------------------------------------------------------------------


class _Conn:
    __slots__ = (
        "account",
        "closed",
        "combined",
        "delivering",
        "listen_key",
        "queue",
        "queue_limit",
        "route",
        "subs",
        "wake",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, route: Route, *, combined: bool, queue_limit: int) -> None:
        self.ws = ws
        self.route: Route = route
        self.combined = combined
        self.subs: dict[str, str] = {}  # channel key -> the name the client used (for "stream")
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queue_limit = queue_limit
        self.wake = asyncio.Event()
        self.closed = False
        self.listen_key: str | None = None
        self.account: str | None = None
        self.delivering = True  # private: False once the listenKey expired


class BinanceStreams:
    """The Binance stream hub: a core listener, the WebSocket handlers and the listenKey timers."""

    def __init__(self, ctx: VenueContext, listen_keys: ListenKeyStore, *, queue_limit: int = 10_000) -> None:
        self.ctx = ctx
        self.listen_keys = listen_keys
        self.queue_limit = queue_limit
        self._channels: dict[str, dict[_Conn, str]] = {}  # channel key -> {conn: name}
        self._private: dict[str, set[_Conn]] = {}  # account -> connections
        self._conns: set[_Conn] = set()
        self._held_depth: dict[str, tuple[str, bytes]] = {}  # symbol -> held diff (reorder fault)
        self._order_seen: dict[int, tuple[Decimal, Decimal | None]] = {}  # order id -> (qty, price)
        self._triggered: set[int] = set()  # conditional orders fired and still executing
        self._pending_accounts: dict[str, _AccountBatch] = {}
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- core events --------------------------------------------------------------------------

    def on_event(self, ev: VenueEvent) -> None:
        """The core listener: translate one event and queue it to the subscribed connections."""
        if isinstance(ev, DepthEvent):
            self._on_depth(ev)
        elif isinstance(ev, TradeEvent):
            key = f"{ev.symbol}|aggTrade"
            if key in self._channels:
                spec = self.ctx.core.instruments[ev.symbol]
                self._publish(key, orjson.dumps(wire.agg_trade_event(spec, ev)))
        elif isinstance(ev, MarkPriceEvent):
            payload = wire.mark_price_event(ev)
            if f"{ev.symbol}|markPrice" in self._channels:
                self._publish(f"{ev.symbol}|markPrice", orjson.dumps(payload))
            if "*|markPrice" in self._channels:
                self._publish("*|markPrice", orjson.dumps([payload]))
        elif isinstance(ev, OrderEvent):
            self._on_order(ev)
        elif isinstance(ev, PositionEvent):
            self._batch(ev.position.account, ev.ts_ms).positions[
                (ev.position.symbol, ev.position.position_side.value)
            ] = ev.position
        elif isinstance(ev, BalanceEvent):
            batch = self._batch(ev.state.account, ev.ts_ms)
            batch.reasons[ev.reason] = ev.state  # the latest state per reason
            batch.ts_ms = ev.ts_ms
        elif isinstance(ev, FundingEvent):
            batch = self._batch(ev.account, ev.ts_ms)
            batch.funding += ev.amount

    def _on_depth(self, ev: DepthEvent) -> None:
        symbol = ev.symbol
        channels = self._channels
        diff_key = f"{symbol}|depth"
        core = self.ctx.core
        spec = core.instruments[symbol]
        if diff_key in channels:
            if faults.take_ws_skip(self.ctx):
                pass  # this diff is never sent: the next one's pu no longer equals the last u seen
            else:
                payload = orjson.dumps(wire.depth_event(spec, ev))
                held = self._held_depth.pop(symbol, None)
                if held is None and faults.take_ws_reorder(self.ctx):
                    self._held_depth[symbol] = (diff_key, payload)
                else:
                    self._publish(diff_key, payload)
                    if held is not None:
                        self._publish(held[0], held[1])
        for n in (5, 10, 20):
            key = f"{symbol}|depth{n}"
            if key in channels:
                _, bids, asks = core.depth(symbol, n)
                self._publish(key, orjson.dumps(wire.partial_depth_event(spec, ev, bids, asks)))
        if f"{symbol}|bookTicker" in channels or "*|bookTicker" in channels:
            last_id, bids, asks = core.depth(symbol, 1)
            payload = orjson.dumps(
                wire.book_ticker_event(
                    spec, last_id, bids[0] if bids else None, asks[0] if asks else None, ev.ts_ms
                )
            )
            if f"{symbol}|bookTicker" in channels:
                self._publish(f"{symbol}|bookTicker", payload)
            if "*|bookTicker" in channels:
                self._publish("*|bookTicker", payload)

    def _publish(self, key: str, payload: bytes) -> None:
        subscribers = self._channels.get(key)
        if not subscribers:
            return
        ctx = self.ctx
        if ctx.faults.ws_stall:
            ctx.count("binance.ws.stalled_messages")
            return
        if ctx.faults.ws_garbage > 0 and faults.take_ws_garbage(ctx):
            payload = payload[: max(1, len(payload) // 2)]
        now = time.monotonic()
        for conn, name in list(subscribers.items()):
            if conn.combined:
                frame = b'{"stream":"' + name.encode() + b'","data":' + payload + b"}"
            else:
                frame = payload
            self._push(conn, frame, now)

    def _push(self, conn: _Conn, frame: bytes, now: float) -> None:
        if conn.closed:
            return
        if len(conn.queue) >= conn.queue_limit:
            self.ctx.count("binance.ws.slow_consumer_disconnected")
            log.warning(
                "binance_ws_slow_consumer_disconnected route=%s queued=%d", conn.route, len(conn.queue)
            )
            self._detach(conn)
            conn.queue.clear()
            conn.closed = True
            conn.wake.set()
            return
        conn.queue.append((now, frame))
        conn.wake.set()

    # ---- private events -----------------------------------------------------------------------

    def _private_send(self, account: str, payload: dict[str, object]) -> None:
        conns = self._private.get(account)
        if not conns:
            return
        frame = orjson.dumps(payload)
        now = time.monotonic()
        for conn in list(conns):
            if conn.delivering:
                self._push(conn, frame, now)

    def _on_order(self, ev: OrderEvent) -> None:
        order = ev.order
        account = order.account
        if order.type in wire.CONDITIONAL_TYPES:
            self._on_conditional(ev)
            return
        exec_type = self._exec_type(order, ev)
        if account in self._private:
            spec = self.ctx.core.instruments[order.symbol]
            self._private_send(
                account,
                wire.order_trade_update_event(spec, order, ev.fill, exec_type=exec_type, ts_ms=ev.ts_ms),
            )

    def _on_conditional(self, ev: OrderEvent) -> None:
        """A conditional order: ALGO_UPDATE for its own lifecycle; once triggered, its market execution
        shows as ORDER_TRADE_UPDATE frames (o=MARKET, ot=STOP_MARKET / TAKE_PROFIT_MARKET)."""
        order = ev.order
        account = order.account
        oid = order.order_id
        subscribed = account in self._private
        spec = self.ctx.core.instruments[order.symbol]
        if order.status is OrderStatus.TRIGGERED:
            self._triggered.add(oid)
            if subscribed:
                self._private_send(account, wire.algo_update_event(spec, order, ts_ms=ev.ts_ms))
                self._private_send(
                    account, wire.order_trade_update_event(spec, order, None, exec_type="NEW", ts_ms=ev.ts_ms)
                )
            return
        if oid not in self._triggered:
            if subscribed:
                self._private_send(account, wire.algo_update_event(spec, order, ts_ms=ev.ts_ms))
            return
        if not order.is_open:
            self._triggered.discard(oid)
        if subscribed:
            exec_type = "TRADE" if ev.fill is not None else order.status.value if not order.is_open else "NEW"
            self._private_send(
                account,
                wire.order_trade_update_event(spec, order, ev.fill, exec_type=exec_type, ts_ms=ev.ts_ms),
            )
            if not order.is_open:
                self._private_send(account, wire.algo_update_event(spec, order, ts_ms=ev.ts_ms))

    def _exec_type(self, order: VenueOrder, ev: OrderEvent) -> str:
        seen = self._order_seen.get(order.order_id)
        if order.is_open:
            self._order_seen[order.order_id] = (order.qty, order.price)
        else:
            self._order_seen.pop(order.order_id, None)
        if ev.fill is not None:
            return "TRADE"
        if order.status is OrderStatus.CANCELED:
            return "CANCELED"
        if order.status is OrderStatus.EXPIRED:
            return "EXPIRED"
        if seen is not None and seen != (order.qty, order.price):
            return "AMENDMENT"
        return "NEW"

    def _batch(self, account: str, ts_ms: int) -> _AccountBatch:
        batch = self._pending_accounts.get(account)
        if batch is None:
            batch = self._pending_accounts[account] = _AccountBatch(ts_ms=ts_ms)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._flush_accounts)
        return batch

    def _flush_accounts(self) -> None:
        """One ACCOUNT_UPDATE per account and reason for everything a core call changed."""
        self._flush_scheduled = False
        pending, self._pending_accounts = self._pending_accounts, {}
        core = self.ctx.core
        for account, batch in pending.items():
            if account not in self._private or not batch.reasons:
                continue
            positions = [(core.instruments[p.symbol], p) for p in batch.positions.values()]
            isolated = _isolated_margin(core.positions(account))
            for index, (reason, state) in enumerate(batch.reasons.items()):
                if reason == "FUNDING_FEE":
                    change = batch.funding
                    shown = [(s, p) for s, p in positions if p.margin_mode.value == "ISOLATED"]
                elif reason == "DEPOSIT":
                    change, shown = state.deposits, []
                else:
                    change, shown = Decimal(0), positions
                if index > 0 and reason != "FUNDING_FEE":
                    shown = []
                self._private_send(
                    account,
                    wire.account_update_event(
                        reason,
                        state,
                        shown,
                        balance_change=change,
                        isolated_margin=isolated,
                        ts_ms=batch.ts_ms,
                    ),
                )

    # ---- timers -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire listenKeys whose hour ran out (or all of them on the fault), telling their streams."""
        now = self.ctx.core.now_ms()
        all_keys = self.ctx.faults.expire_listen_keys
        if all_keys:
            self.ctx.faults.expire_listen_keys = False
            self.ctx.count("faults.expire_listen_keys")
        for key in self.listen_keys.expire_due(now, all_keys=all_keys):
            self.ctx.count("binance.listen_key_expired")
            log.info("binance_listen_key_expired")
            frame = orjson.dumps({"e": "listenKeyExpired", "E": now, "listenKey": key})
            for conns in self._private.values():
                for conn in list(conns):
                    if conn.listen_key == key and conn.delivering:
                        self._push(conn, frame, time.monotonic())
                        conn.delivering = False

    # ---- handlers -----------------------------------------------------------------------------

    async def handle_stream(self, request: web.Request) -> web.StreamResponse:
        """Public/market streams: raw ``.../ws/<names>`` and combined ``.../stream?streams=``."""
        route_name = request.match_info.get("route", "")
        route: Route = (
            "public" if route_name == "public" else "market" if route_name == "market" else "classic"
        )
        combined = request.match_info.get("form") == "stream"
        if combined:
            names = [n for n in request.rel_url.query.get("streams", "").split("/") if n]
        else:
            names = [n for n in request.match_info.get("names", "").split("/") if n]
        if len(names) > 1024:
            return web.json_response({"code": -1, "msg": "Too many streams (max 1024)."}, status=400)
        ws = web.WebSocketResponse(compress=False, heartbeat=180.0)
        await ws.prepare(request)
        conn = _Conn(ws, route, combined=combined, queue_limit=self.queue_limit)
        for name in names:
            self._subscribe(conn, name)
        return await self._serve(conn)

    async def handle_private(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info.get("key") or request.rel_url.query.get("listenKey", "")
        account = self.listen_keys.account_for(key) if key else None
        if account is None:
            self.ctx.count("binance.ws.bad_listen_key")
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        ws = web.WebSocketResponse(compress=False, heartbeat=180.0)
        await ws.prepare(request)
        conn = _Conn(ws, "private", combined=False, queue_limit=self.queue_limit)
        conn.listen_key = key
        conn.account = account
        self._private.setdefault(account, set()).add(conn)
        return await self._serve(conn)

    async def _serve(self, conn: _Conn) -> web.StreamResponse:
        ws = conn.ws
        self._conns.add(conn)
        self.ctx.count("binance.ws.connections")
        registry = faults.ws_registry(self.ctx)

        async def close() -> None:
            self._detach(conn)
            conn.closed = True
            conn.wake.set()
            await ws.close()

        handle = registry.register(close)
        self._loop = asyncio.get_running_loop()
        writer = asyncio.create_task(self._writer(conn))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_client_message(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._reply(
                        conn, {"code": 3, "msg": "Invalid JSON: binary frames are not accepted", "id": None}
                    )
                if conn.closed:
                    break
        finally:
            registry.unregister(handle)
            self._detach(conn)
            conn.closed = True
            conn.wake.set()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if not ws.closed:
                await ws.close()
        return ws

    async def _writer(self, conn: _Conn) -> None:
        ws = conn.ws
        queue = conn.queue
        try:
            while not conn.closed:
                await conn.wake.wait()
                conn.wake.clear()
                while queue and not conn.closed:
                    enqueued, frame = queue.popleft()
                    delay = self.ctx.faults.ws_delay_ms
                    if delay > 0:
                        wait = enqueued + delay / 1000.0 - time.monotonic()
                        if wait > 0:
                            await asyncio.sleep(wait)
                    await ws.send_frame(frame, WSMsgType.TEXT)
            if conn.closed and not ws.closed:
                await ws.close()
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:
            self.ctx.count("binance.ws.send_failed")
            log.info("binance_ws_send_failed route=%s error=%s", conn.route, type(exc).__name__)
            conn.closed = True
            self._detach(conn)
            await ws.close()

    def _detach(self, conn: _Conn) -> None:
        for key in list(conn.subs):
            subscribers = self._channels.get(key)
            if subscribers is not None:
                subscribers.pop(conn, None)
                if not subscribers:
                    self._drop_channel(key)
        if conn.account is not None:
            conns = self._private.get(conn.account)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._private[conn.account]
        self._conns.discard(conn)

    def _subscribe(self, conn: _Conn, name: str) -> None:
        parsed = parse_stream_name(name)
        conn.subs.setdefault(parsed[0] if parsed else f"?{name}", name)
        if parsed is None:
            return
        key, category = parsed
        symbol = key.partition("|")[0]
        if symbol != "*" and symbol not in self.ctx.core.instruments:
            return
        allowed = category == "public" if conn.route in ("public", "classic") else category == "market"
        if not allowed:
            return  # the real venue accepts it and never delivers on the wrong route
        self._channels.setdefault(key, {})[conn] = name

    def _unsubscribe(self, conn: _Conn, name: str) -> None:
        parsed = parse_stream_name(name)
        key = parsed[0] if parsed else f"?{name}"
        conn.subs.pop(key, None)
        subscribers = self._channels.get(key)
        if subscribers is not None:
            subscribers.pop(conn, None)
            if not subscribers:
                self._drop_channel(key)

    def _drop_channel(self, key: str) -> None:
        """The channel's last subscriber left: forget it, and any diff the reorder fault held back for
        it (a later subscriber must never get a stale diff out of nowhere)."""
        del self._channels[key]
        symbol, _, kind = key.partition("|")
        if kind == "depth":
            self._held_depth.pop(symbol, None)

    def _reply(self, conn: _Conn, body: dict[str, object]) -> None:
        self._push(conn, orjson.dumps(body), time.monotonic())

    def _on_client_message(self, conn: _Conn, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.ctx.count("binance.ws.bad_client_message")
            self._reply(conn, {"code": 3, "msg": "Invalid JSON: expected a JSON object", "id": None})
            return
        if not isinstance(request, dict):
            self._reply(conn, {"code": 3, "msg": "Invalid JSON: expected a JSON object", "id": None})
            return
        req_id = request.get("id")
        if req_id is not None and not isinstance(req_id, int | str):
            self._reply(
                conn,
                {
                    "code": 1,
                    "msg": "Invalid value type: expected id to be an integer or a string",
                    "id": None,
                },
            )
            return
        method = request.get("method")
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if conn.route == "private":
                self._reply(
                    conn,
                    {
                        "code": 2,
                        "msg": "Invalid request: user data streams take no subscriptions",
                        "id": req_id,
                    },
                )
                return
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._reply(
                    conn,
                    {
                        "code": 1,
                        "msg": "Invalid value type: expected params to be a list of strings",
                        "id": req_id,
                    },
                )
                return
            if method == "SUBSCRIBE" and len(conn.subs) + len(params) > 1024:
                self._reply(
                    conn,
                    {"code": 2, "msg": "Invalid request: at most 1024 streams per connection", "id": req_id},
                )
                return
            for name in params:
                if method == "SUBSCRIBE":
                    self._subscribe(conn, name)
                else:
                    self._unsubscribe(conn, name)
            self._reply(conn, {"result": None, "id": req_id})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": list(conn.subs.values()), "id": req_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            self._reply(conn, {"result": None if method == "SET_PROPERTY" else False, "id": req_id})
        else:
            self.ctx.count("binance.ws.bad_client_message")
            self._reply(
                conn,
                {"code": 2, "msg": f"Invalid request: unknown method {str(method)[:32]!r}", "id": req_id},
            )

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def queued_messages(self) -> int:
        """Frames waiting in every connection's outgoing queue (for throughput runs)."""
        return sum(len(conn.queue) for conn in self._conns)

    def channel_keys(self) -> Iterable[str]:
        return self._channels.keys()


class _AccountBatch:
    """What one synchronous core call changed on one account, flushed as ACCOUNT_UPDATE frames."""

    __slots__ = ("funding", "positions", "reasons", "ts_ms")

    def __init__(self, *, ts_ms: int) -> None:
        self.ts_ms = ts_ms
        self.positions: dict[tuple[str, str], Position] = {}
        self.reasons: dict[str, AccountState] = {}
        self.funding = Decimal(0)


def _isolated_margin(positions: Iterable[Position]) -> Decimal:
    total = Decimal(0)
    for p in positions:
        if p.margin_mode.value == "ISOLATED":
            total += p.isolated_margin
    return total
