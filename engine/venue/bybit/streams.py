"""Bybit v5 WebSocket streams of the local venue: public ``/v5/public/linear`` and private ``/v5/private``
(protocol notes 2.6 to 2.8, 3.2).

:class:`BybitHub` listens to the exchange core. It mirrors every symbol's public book and has one
:class:`~engine.venue.bybit.bookwindow.BookWindow` per ``orderbook.{1,50,200,1000}`` topic, maintained
only while the topic has subscribers (the first subscriber activates it from the mirror and gets its
snapshot; the last one to leave deactivates it), so a market step costs nothing per depth nobody
watches. The REST order book numbers its answer from the 1000-level window (its ``u`` matches the
snapshot a 1000-level subscriber gets), the ticker
state, one-minute bars for klines and 24 h statistics, and each account's recent orders, funding
executions and the orders the front-end itself cancelled (a PostOnly that would take liquidity is
accepted and then cancelled, as on Bybit). Every event becomes one message built and serialised once
and offered to every subscribed connection.

Each connection has a bounded outgoing queue drained by its own writer task; a consumer that falls
``queue_limit`` messages behind is disconnected and counted (``bybit.ws.slow_consumer_disconnected``),
never buffered without bound. Faults from ``ctx.faults``: ``ws_skip_seq`` leaves a gap in an order-book
topic's ``u`` (the content stays complete, so a client that ignores the gap still holds a true book;
pybit never sees a delete of a price it does not hold), ``ws_reorder`` swaps two order-book messages,
``ws_delay_ms`` delays every message (each leaves that long after it was queued), ``ws_stall``
withholds public messages without closing (when it ends, each held order-book topic restarts from a
fresh snapshot), ``ws_garbage`` truncates public messages, ``ws_drop`` closes connections (through the
shared registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal

import orjson
from aiohttp import WSMsgType, web

from engine.venue import faults
from engine.venue.bybit import wire
from engine.venue.bybit.auth import verify_ws_auth
from engine.venue.bybit.bookwindow import BOOK_DEPTHS, BookWindow, MirrorBook, WindowUpdate
from engine.venue.bybit.errors import BybitError
from engine.venue.context import VenueContext
from engine.venue.model import (
    BalanceEvent,
    DepthEvent,
    FundingEvent,
    MarkPriceEvent,
    OrderEvent,
    Position,
    PositionEvent,
    PositionSide,
    Side,
    TradeEvent,
    VenueEvent,
    VenueOrder,
)

__all__ = [
    "KLINE_INTERVALS",
    "BybitHub",
    "Connection",
    "KlineRow",
    "MinuteBars",
    "parse_public_topic",
]

log = logging.getLogger("engine.venue.bybit.streams")

QUEUE_LIMIT = 4096
MIRROR_DEPTH = 100_000  # levels loaded from the core: the whole book
RECENT_CLOSED_ORDERS = 500  # per account, as Bybit keeps for openOnly=1
FUNDING_RECORDS = 1000  # per account
MINUTE_BARS_KEPT = 7 * 24 * 60
PRIVATE_TOPICS = frozenset(
    {
        "order",
        "order.linear",
        "execution",
        "execution.linear",
        "position",
        "position.linear",
        "wallet",
    }
)
KLINE_INTERVALS: dict[str, int] = {
    "1": 1,
    "3": 3,
    "5": 5,
    "15": 15,
    "30": 30,
    "60": 60,
    "120": 120,
    "240": 240,
    "360": 360,
    "720": 720,
    "D": 1440,
    "W": 10080,
}
_TOPIC = re.compile(r"^(?:orderbook\.(1|50|200|1000)|publicTrade|tickers)\.([A-Z0-9]{2,30})$")
_ZERO = Decimal(0)
Level = tuple[Decimal, Decimal]
KlineRow = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]
_MINUTE = 60_000


def parse_public_topic(topic: str) -> tuple[str, int, str] | None:
    """(kind, depth, symbol) of a public linear topic this venue serves, None otherwise.

    Kinds: ``orderbook`` (depth 1, 50, 200 or 1000), ``publicTrade``, ``tickers`` (depth 0)."""
    m = _TOPIC.match(topic)
    if m is None:
        return None
    if m.group(1) is not None:
        return "orderbook", int(m.group(1)), m.group(2)
    return topic.split(".", 1)[0], 0, m.group(2)


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


# ---- market statistics ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Bar:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    turnover: Decimal


class MinuteBars:
    """One-minute OHLCV bars of one symbol's public trades (the source of klines and 24 h stats)."""

    def __init__(self, *, keep: int = MINUTE_BARS_KEPT) -> None:
        self._bars: OrderedDict[int, _Bar] = OrderedDict()
        self._keep = keep
        self.last_price: Decimal | None = None
        self.tick_direction = "ZeroPlusTick"

    def add(self, price: Decimal, qty: Decimal, ts_ms: int) -> None:
        if self.last_price is not None:
            if price > self.last_price:
                self.tick_direction = "PlusTick"
            elif price < self.last_price:
                self.tick_direction = "MinusTick"
            else:
                self.tick_direction = (
                    "ZeroPlusTick" if self.tick_direction.endswith("PlusTick") else "ZeroMinusTick"
                )
        self.last_price = price
        start = ts_ms - ts_ms % _MINUTE
        bar = self._bars.get(start)
        if bar is None:
            self._bars[start] = _Bar(price, price, price, price, qty, price * qty)
            while len(self._bars) > self._keep:
                self._bars.popitem(last=False)
            return
        bar.high = max(bar.high, price)
        bar.low = min(bar.low, price)
        bar.close = price
        bar.volume += qty
        bar.turnover += price * qty

    def klines(self, minutes: int, *, start: int | None, end: int | None, limit: int) -> list[KlineRow]:
        """Bars of ``minutes`` aligned to epoch multiples, newest first: (start, o, h, l, c, v, turnover)."""
        span = minutes * _MINUTE
        grouped: dict[int, _Bar] = {}
        for t, bar in self._bars.items():
            key = t - t % span
            if start is not None and key + span <= start:
                continue
            if end is not None and key > end:
                continue
            g = grouped.get(key)
            if g is None:
                grouped[key] = _Bar(bar.open, bar.high, bar.low, bar.close, bar.volume, bar.turnover)
            else:
                g.high = max(g.high, bar.high)
                g.low = min(g.low, bar.low)
                g.close = bar.close
                g.volume += bar.volume
                g.turnover += bar.turnover
        rows: list[KlineRow] = []
        for k in sorted(grouped, reverse=True)[:limit]:
            g = grouped[k]
            rows.append((k, g.open, g.high, g.low, g.close, g.volume, g.turnover))
        return rows

    def stats(self, now_ms: int) -> dict[str, Decimal | None]:
        """24 h and 1 h statistics of the ticker (None where no trade happened in the window)."""
        day_from = now_ms - 24 * 3600 * 1000
        hour_from = now_ms - 3600 * 1000
        high = low = prev24 = prev1h = None
        volume = turnover = _ZERO
        for t, bar in self._bars.items():
            if t + _MINUTE <= day_from:
                continue
            if prev24 is None:
                prev24 = bar.open
            if prev1h is None and t + _MINUTE > hour_from:
                prev1h = bar.open
            high = bar.high if high is None else max(high, bar.high)
            low = bar.low if low is None else min(low, bar.low)
            volume += bar.volume
            turnover += bar.turnover
        return {
            "high": high,
            "low": low,
            "prev24": prev24,
            "prev1h": prev1h,
            "volume": volume,
            "turnover": turnover,
        }


# ---- connections ------------------------------------------------------------------------------------


@dataclass(eq=False)
class Connection:
    """One client connection: its subscriptions and its bounded outgoing queue."""

    ws: web.WebSocketResponse
    private: bool
    conn_id: str = field(default_factory=lambda: secrets.token_hex(10))
    # (time.monotonic() when queued, message): ws_delay_ms holds each message until queued + delay
    queue: asyncio.Queue[tuple[float, str]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    topics: set[str] = field(default_factory=set)
    account: str | None = None
    closed: bool = False
    stalled_topics: set[str] = field(default_factory=set)  # order-book topics that missed messages
    tickers: dict[str, dict[str, str]] = field(default_factory=dict)  # symbol -> ticker fields held


class _OrderBookkeeping:
    """One account's open orders and its most recent closed ones (bounded), by id and by link id."""

    __slots__ = ("by_link", "closed", "open")

    def __init__(self) -> None:
        self.open: dict[int, VenueOrder] = {}
        self.closed: OrderedDict[int, VenueOrder] = OrderedDict()
        self.by_link: OrderedDict[str, int] = OrderedDict()

    def remember(self, order: VenueOrder) -> None:
        oid = order.order_id
        if order.client_order_id:
            self.by_link[order.client_order_id] = oid
            self.by_link.move_to_end(order.client_order_id)
        if order.is_open:
            self.open[oid] = order
            return
        self.open.pop(oid, None)
        self.closed[oid] = order
        self.closed.move_to_end(oid)
        while len(self.closed) > RECENT_CLOSED_ORDERS:
            self.closed.popitem(last=False)
        while len(self.by_link) > RECENT_CLOSED_ORDERS + len(self.open) + 1000:
            self.by_link.popitem(last=False)


class BybitHub:
    """Core listener and stream fan-out of the Bybit front-end (shared with its REST handlers)."""

    def __init__(self, ctx: VenueContext, *, queue_limit: int = QUEUE_LIMIT) -> None:
        self.ctx = ctx
        self.core = ctx.core
        self.queue_limit = queue_limit
        self.formats = {s: wire.InstrumentFormat(spec) for s, spec in self.core.instruments.items()}
        self.books: dict[str, MirrorBook] = {}
        self.windows: dict[str, dict[int, BookWindow]] = {}
        self._active: dict[str, list[BookWindow]] = {}  # symbol -> windows with subscribers
        self.bars: dict[str, MinuteBars] = {s: MinuteBars() for s in self.core.instruments}
        self.marks: dict[str, MarkPriceEvent] = {}
        self.book_cts: dict[str, int] = {}  # symbol -> time of the last book change
        self._ticker_cs = itertools.count(1)
        self._position_seq = itertools.count(1)
        self._funding_seq = itertools.count(1)
        self._held: dict[str, str] = {}  # order-book topic -> message held back by ws_reorder
        # topic -> connections; private: account -> connections
        self._public: dict[str, set[Connection]] = {}
        self._private: dict[str, set[Connection]] = {}
        self._connections: set[Connection] = set()
        # per account: open and recent orders (latest snapshot), funding executions
        self.orders: dict[str, _OrderBookkeeping] = {}
        self.fundings: dict[str, deque[dict[str, object]]] = {}
        self._fabricated = itertools.count(1)
        for symbol in self.core.instruments:
            self._load_book(symbol)
        self.core.add_listener(self.on_event)

    def close(self) -> None:
        self.core.remove_listener(self.on_event)

    # ---- books ------------------------------------------------------------------------------------

    def _load_book(self, symbol: str) -> list[tuple[BookWindow, WindowUpdate]]:
        """(Re)load the symbol's mirror from the core; every active window restarts from a snapshot
        (returned with it); dormant windows stay dormant."""
        last_id, bids, asks = self.core.depth(symbol, MIRROR_DEPTH)
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = MirrorBook(symbol)
        book.load(last_id, bids, asks)
        self.windows.setdefault(symbol, {d: BookWindow(d) for d in BOOK_DEPTHS})
        self._active.setdefault(symbol, [])
        return [(w, w.reset(book)) for w in self._active[symbol]]

    def _window_for(self, topic: str) -> tuple[str, BookWindow] | None:
        parsed = parse_public_topic(topic)
        if parsed is None or parsed[0] != "orderbook":
            return None
        _, depth, symbol = parsed
        windows = self.windows.get(symbol)
        if windows is None:
            return None
        return symbol, windows[depth]

    def _activate(self, symbol: str, window: BookWindow) -> None:
        if not window.active:
            window.activate(self.books[symbol])
            self._active[symbol].append(window)

    def _release_topic(self, topic: str) -> None:
        """A subscriber left ``topic``: with none left, its order-book window stops being maintained."""
        if self._public.get(topic):
            return
        found = self._window_for(topic)
        if found is None:
            return
        symbol, window = found
        if window.active:
            window.deactivate()
            self._active[symbol].remove(window)
        self._held.pop(topic, None)  # a reorder-held message of a topic nobody follows any more

    def book_snapshot(self, symbol: str, limit: int) -> tuple[int, int, list[Level], list[Level]]:
        """(u of the 1000-level topic, seq, bids, asks) for the REST order book."""
        book = self.books[symbol]
        u, seq = self.windows[symbol][1000].sync(book)
        return u, seq, book.bids.top(limit), book.asks.top(limit)

    def touch(self, symbol: str) -> tuple[tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None]:
        book = self.books[symbol]
        bids, asks = book.bids.top(1), book.asks.top(1)
        return (bids[0] if bids else None), (asks[0] if asks else None)

    # ---- events -----------------------------------------------------------------------------------

    def on_event(self, event: VenueEvent) -> None:
        """The core's listener. Never raises into the core: a failure is logged and counted."""
        try:
            if isinstance(event, DepthEvent):
                self._on_depth(event)
            elif isinstance(event, TradeEvent):
                self._on_trade(event)
            elif isinstance(event, MarkPriceEvent):
                self._on_mark(event)
            elif isinstance(event, OrderEvent):
                self._on_order(event)
            elif isinstance(event, PositionEvent):
                self._push_position(event.position)
            elif isinstance(event, BalanceEvent):
                self._push_private(event.state.account, "wallet", [wire.wallet_entry(event.state)])
            elif isinstance(event, FundingEvent):
                self._on_funding(event)
        except Exception:
            self.ctx.count("bybit.ws.event_errors")
            log.exception("bybit.ws.event_failed event=%s", type(event).__name__)

    def _on_depth(self, event: DepthEvent) -> None:
        book = self.books.get(event.symbol)
        if book is None:
            return
        if event.prev_last_id != book.last_id:
            # Out of step with the core (should not happen): reload and restart every topic from a
            # snapshot, as Bybit does after an internal problem.
            self.ctx.count("bybit.book.resync")
            log.warning(
                "bybit.book.resync symbol=%s expected_prev=%d got_prev=%d",
                event.symbol,
                book.last_id,
                event.prev_last_id,
            )
            for window, update in self._load_book(event.symbol):
                self._publish_book(event.symbol, window, update, event.ts_ms)
            return
        changed_bids, changed_asks = book.apply(event.last_id, event.bids, event.asks)
        self.book_cts[event.symbol] = event.ts_ms
        active = self._active[event.symbol]
        if not active:
            return
        for window in list(active):  # a slow consumer dropped while publishing may deactivate one
            if not window.active:
                continue
            if faults.take_ws_skip(self.ctx):
                window.skip(1)
            delta = window.update(book, changed_bids, changed_asks)
            if delta is not None:
                self._publish_book(event.symbol, window, delta, event.ts_ms)

    def _book_message(self, symbol: str, window: BookWindow, update: WindowUpdate, cts: int) -> str:
        fmt = self.formats[symbol]
        return _dumps(
            {
                "topic": f"orderbook.{window.depth}.{symbol}",
                "type": "snapshot" if update.snapshot else "delta",
                "ts": max(self.ctx.now_ms(), cts),
                "data": {
                    "s": symbol,
                    "b": [fmt.level(p, q) for p, q in update.bids],
                    "a": [fmt.level(p, q) for p, q in update.asks],
                    "u": update.u,
                    "seq": update.seq,
                },
                "cts": cts,
            }
        )

    def _publish_book(self, symbol: str, window: BookWindow, update: WindowUpdate, cts: int) -> None:
        topic = f"orderbook.{window.depth}.{symbol}"
        message = self._book_message(symbol, window, update, cts)
        held = self._held.pop(topic, None)
        if held is None and faults.take_ws_reorder(self.ctx):
            self._held[topic] = message
            return
        self._fanout(topic, message, book_topic=True)
        if held is not None:
            self._fanout(topic, held, book_topic=True)

    def _on_trade(self, event: TradeEvent) -> None:
        bars = self.bars.get(event.symbol)
        if bars is None:
            return
        bars.add(event.price, event.qty, event.ts_ms)
        topic = f"publicTrade.{event.symbol}"
        if not self._public.get(topic):
            return
        entry = wire.public_trade_entry(event, self.formats[event.symbol], tick_direction=bars.tick_direction)
        self._fanout(
            topic,
            _dumps(
                {
                    "topic": topic,
                    "type": "snapshot",
                    "ts": max(self.ctx.now_ms(), event.ts_ms),
                    "data": [entry],
                }
            ),
        )

    def ticker(self, symbol: str) -> dict[str, str]:
        """The full ticker of ``symbol`` now (REST tickers and the topic's snapshot)."""
        mark = self.marks.get(symbol) or self.core.mark(symbol)
        self.marks[symbol] = mark
        bid, ask = self.touch(symbol)
        bars = self.bars[symbol]
        stats = bars.stats(self.ctx.now_ms())
        fmt = self.formats[symbol]
        last = bars.last_price if bars.last_price is not None else mark.last_price
        prev24 = stats["prev24"] or last
        prev1h = stats["prev1h"] or last
        extra = {
            "prevPrice24h": fmt.price(prev24),
            "price24hPcnt": wire.fmt_ratio(last - prev24, prev24) if prev24 else "0",
            "highPrice24h": fmt.price(stats["high"] or last),
            "lowPrice24h": fmt.price(stats["low"] or last),
            "prevPrice1h": fmt.price(prev1h),
            "volume24h": fmt.qty(stats["volume"] or _ZERO),
            "turnover24h": wire.fmt_amount(stats["turnover"] or _ZERO),
        }
        fields = wire.ticker_fields(
            mark, fmt, bid=bid, ask=ask, tick_direction=bars.tick_direction, stats=extra
        )
        if bars.last_price is not None:
            fields["lastPrice"] = fmt.price(bars.last_price)
        return fields

    def _on_mark(self, event: MarkPriceEvent) -> None:
        if event.symbol not in self.formats:
            return
        self.marks[event.symbol] = event
        topic = f"tickers.{event.symbol}"
        conns = self._public.get(topic)
        if not conns:
            return
        if faults.ws_stalled(self.ctx):
            self.ctx.count("bybit.ws.stalled_messages")
            return
        fields = self.ticker(event.symbol)
        ts = max(self.ctx.now_ms(), event.ts_ms)
        # Deltas carry only the fields that changed for what each connection holds.
        for conn in list(conns):
            held = conn.tickers.get(event.symbol, {})
            data = {k: v for k, v in fields.items() if held.get(k) != v}
            if not data:
                continue
            data["symbol"] = event.symbol
            conn.tickers[event.symbol] = fields
            message = {"topic": topic, "type": "delta", "data": data, "cs": next(self._ticker_cs), "ts": ts}
            self._offer(conn, _dumps(message))

    # ---- private events ---------------------------------------------------------------------------

    def _remember(self, order: VenueOrder) -> None:
        book = self.orders.get(order.account)
        if book is None:
            book = self.orders[order.account] = _OrderBookkeeping()
        book.remember(order)

    def remembered(self, account: str) -> list[VenueOrder]:
        """The account's open orders, then its recent closed ones (oldest update first in each)."""
        book = self.orders.get(account)
        return [] if book is None else [*book.open.values(), *book.closed.values()]

    def find_order(self, account: str, order_id: int | None, link_id: str | None) -> VenueOrder | None:
        book = self.orders.get(account)
        if book is None:
            return None
        if order_id is None and link_id is not None:
            order_id = book.by_link.get(link_id)
        if order_id is None:
            return None
        return book.open.get(order_id) or book.closed.get(order_id)

    def fabricate_cancelled(self, order: VenueOrder) -> VenueOrder:
        """Record and publish an order Bybit accepts and then cancels at once (a PostOnly that would
        take liquidity, a FOK that cannot fill): the REST ack carries its id, the order stream its end."""
        order.order_id = wire.FRONTEND_ID_BASE + next(self._fabricated)
        self._on_order(OrderEvent(order=order, fill=None, ts_ms=order.updated_ms))
        return order

    def _on_order(self, event: OrderEvent) -> None:
        order = event.order
        self._remember(order)
        fmt = self.formats.get(order.symbol)
        if fmt is None or not self._private.get(order.account):
            return
        self._push_private(order.account, "order", [wire.order_entry(order, fmt, ws=True)])
        if event.fill is not None:
            mark = self.marks.get(order.symbol)
            entry = wire.execution_entry(
                event.fill,
                order,
                fmt,
                mark_price=mark.mark_price if mark else None,
                index_price=mark.index_price if mark else None,
                ws=True,
            )
            self._push_private(order.account, "execution", [entry])
        else:
            # Bybit pushes the position on every order create, amend or cancel, changed or not.
            for position in self._positions(order.account, order.symbol, order.position_side):
                self._push_position(position)

    def _positions(self, account: str, symbol: str, side: PositionSide | None) -> list[Position]:
        return [
            p
            for p in self.core.positions(account, symbol)
            if p.symbol == symbol and (side is None or p.position_side is side)
        ]

    def _push_position(self, position: Position) -> None:
        fmt = self.formats.get(position.symbol)
        if fmt is None or not self._private.get(position.account):
            return
        entry = wire.position_entry(position, fmt, ws=True, seq=next(self._position_seq))
        self._push_private(position.account, "position", [entry])

    def _on_funding(self, event: FundingEvent) -> None:
        fmt = self.formats.get(event.symbol)
        if fmt is None:
            return
        positions = self._positions(event.account, event.symbol, event.position_side)
        size = abs(positions[0].qty) if positions else _ZERO
        if event.position_side is PositionSide.SHORT or (positions and positions[0].qty < _ZERO):
            side = Side.SELL
        else:
            side = Side.BUY
        mark = self.marks.get(event.symbol) or self.core.mark(event.symbol)
        entry = wire.funding_entry(
            symbol=event.symbol,
            side=side,
            size=size,
            mark_price=mark.mark_price,
            rate=event.rate,
            amount=event.amount,
            ts_ms=event.ts_ms,
            seq=next(self._funding_seq),
            fmt=fmt,
        )
        records = self.fundings.setdefault(event.account, deque(maxlen=FUNDING_RECORDS))
        records.append(entry)
        self._push_private(event.account, "execution", [entry])

    def _push_private(self, account: str, kind: str, data: list[dict[str, object]]) -> None:
        conns = self._private.get(account)
        if not conns:
            return
        now = self.ctx.now_ms()
        by_topic: dict[str, str] = {}
        for conn in list(conns):
            for topic in (kind, f"{kind}.linear"):
                if topic in conn.topics:
                    message = by_topic.get(topic)
                    if message is None:
                        message = by_topic[topic] = _dumps(
                            {"id": secrets.token_hex(16), "topic": topic, "creationTime": now, "data": data}
                        )
                    self._offer(conn, message)

    # ---- fan-out ----------------------------------------------------------------------------------

    def _fanout(self, topic: str, message: str, *, book_topic: bool = False) -> None:
        conns = self._public.get(topic)
        if not conns:
            return
        if faults.ws_stalled(self.ctx):
            self.ctx.count("bybit.ws.stalled_messages")
            if book_topic:
                for conn in conns:
                    conn.stalled_topics.add(topic)
            return
        if faults.take_ws_garbage(self.ctx):
            message = message[: max(1, len(message) // 2)]
        for conn in list(conns):
            if book_topic and topic in conn.stalled_topics:
                conn.stalled_topics.discard(topic)
                self._send_book_snapshot(conn, topic)
                continue
            self._offer(conn, message)

    def _offer(self, conn: Connection, message: str) -> None:
        if conn.closed:
            return
        try:
            conn.queue.put_nowait((time.monotonic(), message))
        except asyncio.QueueFull:
            self.ctx.count("bybit.ws.slow_consumer_disconnected")
            log.warning(
                "bybit.ws.slow_consumer_disconnected conn_id=%s queued=%d", conn.conn_id, conn.queue.qsize()
            )
            self._detach(conn)
            asyncio.get_running_loop().create_task(conn.ws.close(code=1008, message=b"slow consumer"))

    def _send_book_snapshot(self, conn: Connection, topic: str) -> None:
        found = self._window_for(topic)
        assert found is not None, topic
        symbol, window = found
        self._activate(symbol, window)
        update = window.snapshot(self.books[symbol])
        self._offer(conn, self._book_message(symbol, window, update, self.ctx.now_ms()))

    # ---- connections ------------------------------------------------------------------------------

    def _attach(self, conn: Connection) -> None:
        self._connections.add(conn)

    def _detach(self, conn: Connection) -> None:
        conn.closed = True
        self._connections.discard(conn)
        for topic in conn.topics:
            subs = self._public.get(topic)
            if subs is not None:
                subs.discard(conn)
                self._release_topic(topic)
        if conn.account is not None:
            subs = self._private.get(conn.account)
            if subs is not None:
                subs.discard(conn)

    def connection_count(self) -> int:
        return len(self._connections)

    def queued_messages(self) -> int:
        """Messages waiting in every connection's outgoing queue (for tests and throughput runs)."""
        return sum(conn.queue.qsize() for conn in self._connections)

    async def close_all(self) -> None:
        for conn in list(self._connections):
            self._detach(conn)
            await conn.ws.close(code=1001, message=b"venue shutting down")

    async def handle_public(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=False)

    async def handle_private(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=True)

    async def _serve(self, request: web.Request, *, private: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws=ws, private=private)
        conn.queue = asyncio.Queue(self.queue_limit)
        self._attach(conn)
        registry = faults.ws_registry(self.ctx)
        handle = registry.register(lambda: ws.close(code=1006, message=b"dropped by fault"))
        self.ctx.count("bybit.ws.connections")
        writer = asyncio.get_running_loop().create_task(self._writer(conn))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self._on_client_message(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._on_client_message(conn, msg.data.decode("utf-8", "replace"))
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            registry.unregister(handle)
            self._detach(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _writer(self, conn: Connection) -> None:
        ws = conn.ws
        try:
            while True:
                queued_at, message = await conn.queue.get()
                delay = faults.ws_delay_s(self.ctx)
                if delay:
                    # each message leaves ``delay`` after it was queued: a latency, not a throttle
                    wait = queued_at + delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if ws.closed:
                    return
                await ws.send_str(message)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:
            # The peer went away mid-send: the reader loop ends and detaches the connection.
            log.info("bybit.ws.send_failed conn_id=%s error=%s", conn.conn_id, type(exc).__name__)

    # ---- client requests --------------------------------------------------------------------------

    def _reply(self, conn: Connection, payload: dict[str, object]) -> None:
        self._offer(conn, _dumps(payload))

    def _on_client_message(self, conn: Connection, text: str) -> None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self.ctx.count("bybit.ws.malformed_requests")
            self._reply(
                conn,
                {
                    "success": False,
                    "ret_msg": "error:request must be a JSON object",
                    "conn_id": conn.conn_id,
                    "op": "",
                },
            )
            return
        op = request.get("op")
        req_id = request.get("req_id", "")
        if not isinstance(req_id, str):
            req_id = str(req_id)
        if op == "ping":
            if conn.private:
                self._reply(
                    conn,
                    {
                        "req_id": req_id,
                        "op": "pong",
                        "args": [str(self.ctx.now_ms())],
                        "conn_id": conn.conn_id,
                    },
                )
            else:
                self._reply(
                    conn,
                    {
                        "success": True,
                        "ret_msg": "pong",
                        "conn_id": conn.conn_id,
                        "req_id": req_id,
                        "op": "ping",
                    },
                )
        elif op == "auth" and conn.private:
            self._auth(conn, request.get("args"), req_id)
        elif op in ("subscribe", "unsubscribe"):
            self._subscribe(conn, op, request.get("args"), req_id)
        else:
            self.ctx.count("bybit.ws.malformed_requests")
            self._reply(
                conn,
                {
                    "success": False,
                    "ret_msg": f"error:unknown op {op!r}"[:200],
                    "conn_id": conn.conn_id,
                    "req_id": req_id,
                    "op": op if isinstance(op, str) else "",
                },
            )

    def _auth(self, conn: Connection, args: object, req_id: str) -> None:
        reply: dict[str, object] = {"success": True, "ret_msg": "", "op": "auth", "conn_id": conn.conn_id}
        if req_id:
            reply["req_id"] = req_id
        if conn.account is not None:
            reply.update(success=False, ret_msg="Repeat auth")
            self._reply(conn, reply)
            return
        try:
            account = verify_ws_auth(args, secret_for=self.core.secret_for, now_ms=self.ctx.now_ms())
        except BybitError as exc:
            self.ctx.count("bybit.ws.auth_failures")
            reply.update(success=False, ret_msg=exc.message)
            self._reply(conn, reply)
            return
        conn.account = account
        self._private.setdefault(account, set()).add(conn)
        self._reply(conn, reply)

    def _subscribe(self, conn: Connection, op: str, args: object, req_id: str) -> None:
        reply: dict[str, object] = {
            "success": True,
            "ret_msg": "",
            "conn_id": conn.conn_id,
            "req_id": req_id,
            "op": op,
        }
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            reply.update(success=False, ret_msg="error:args must be a non-empty list of topics")
            self._reply(conn, reply)
            return
        topics: list[str] = list(args)
        if len(_dumps(topics)) >= 21000:
            reply.update(success=False, ret_msg="error:args too long")
            self._reply(conn, reply)
            return
        if conn.private:
            if conn.account is None:
                reply.update(success=False, ret_msg="Request not authorized")
                self._reply(conn, reply)
                return
            bad = [t for t in topics if t not in PRIVATE_TOPICS]
        else:
            bad = [t for t in topics if not self._serves(t)]
        if bad:
            reply.update(success=False, ret_msg=f"Invalid topic: {bad[0][:100]}")
            self._reply(conn, reply)
            return
        if op == "unsubscribe":
            for topic in topics:
                conn.topics.discard(topic)
                subs = self._public.get(topic)
                if subs is not None:
                    subs.discard(conn)
                    self._release_topic(topic)
            self._reply(conn, reply)
            return
        already = [t for t in topics if t in conn.topics]
        if already:
            reply.update(success=False, ret_msg=f"error:already subscribed,topic:{already[0]}")
            self._reply(conn, reply)
            return
        self._reply(conn, reply)
        for topic in topics:
            conn.topics.add(topic)
            if conn.private:
                continue
            self._public.setdefault(topic, set()).add(conn)
            self._send_initial(conn, topic)

    def _serves(self, topic: str) -> bool:
        parsed = parse_public_topic(topic)
        return parsed is not None and parsed[2] in self.formats

    def _send_initial(self, conn: Connection, topic: str) -> None:
        parsed = parse_public_topic(topic)
        assert parsed is not None
        kind, _, symbol = parsed
        if kind == "orderbook":
            self._send_book_snapshot(conn, topic)
        elif kind == "tickers":
            fields = self.ticker(symbol)
            conn.tickers[symbol] = fields
            message = {
                "topic": topic,
                "type": "snapshot",
                "data": fields,
                "cs": next(self._ticker_cs),
                "ts": self.ctx.now_ms(),
            }
            self._offer(conn, _dumps(message))
