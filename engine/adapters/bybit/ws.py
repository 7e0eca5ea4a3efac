"""Bybit v5 streams on the ``websockets`` library (through the shared :class:`WsConnection`).

Public stream (``settings.ws_public_url``, ``.../v5/public/linear``): ``orderbook.{depth}.{S}``,
``publicTrade.{S}`` and ``tickers.{S}`` per symbol. Order-book frames go undecoded to the symbol's
:class:`BookManager` (``BybitBookSync.on_bytes``); on a gap the manager asks for a resync and the stream
unsubscribes and resubscribes that one topic, which makes Bybit send a fresh snapshot (protocol notes
2.7). Trade and ticker frames are decoded with orjson and handed to ``on_public``.

Private stream (``settings.ws_private_url``, ``.../v5/private``): ``{"op":"auth","args":[key, expires,
sig]}`` (``sig`` = hex HMAC-SHA256(secret, "GET/realtime" + expires), ``expires`` in the venue's clock),
then ``order``, ``execution``, ``position`` and ``wallet``. Bybit handles a connection's requests in
order, so the subscribe is sent right after the auth; the replies are checked as they arrive. Once the
subscription is acknowledged ``on_private_ready(reconnected)`` runs (the adapter reconciles over REST
after a reconnect, so nothing that happened while the stream was down is missed).

Both send ``{"op":"ping"}`` every ``settings.ws_ping_interval_s`` (20 s by default); a public stream
silent for ``stall_after_s`` is reconnected (and every book resyncs on the fresh snapshots).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from engine.adapters.bybit.constants import PRIVATE_TOPICS, book_topic, ticker_topic, trade_topic
from engine.adapters.bybit.parsing import parse_op_reply
from engine.adapters.common.books import BookManager
from engine.adapters.common.wsconn import WsConnection
from engine.errors import AuthFailed, MalformedMessage
from engine.types import Venue, VenueStatus

__all__ = [
    "PING",
    "BybitPrivateStream",
    "BybitPublicStream",
    "auth_message",
    "auth_signature",
    "op_message",
    "topic_of",
]

log = logging.getLogger("engine.adapters.bybit.ws")

PING = '{"op":"ping"}'  # sent as a text frame, as Bybit expects
_TOPIC_KEY = b'"topic":"'


def auth_signature(secret: str, expires_ms: int) -> str:
    """hex HMAC-SHA256(secret, "GET/realtime" + expires)."""
    return hmac.new(secret.encode(), f"GET/realtime{expires_ms}".encode(), hashlib.sha256).hexdigest()


def auth_message(api_key: str, secret: str, expires_ms: int) -> str:
    """The private stream's auth request (a text frame)."""
    args = [api_key, expires_ms, auth_signature(secret, expires_ms)]
    return orjson.dumps({"op": "auth", "args": args}).decode()


def op_message(op: str, topics: list[str], req_id: str) -> str:
    """A subscribe/unsubscribe request (a text frame)."""
    return orjson.dumps({"op": op, "req_id": req_id, "args": topics}).decode()


def topic_of(raw: bytes) -> str | None:
    """The ``topic`` of a frame without decoding it (the first ``"topic":"...`` key), or None."""
    i = raw.find(_TOPIC_KEY)
    if i < 0:
        return None
    start = i + len(_TOPIC_KEY)
    end = raw.find(b'"', start)
    if end < 0:
        return None
    try:
        return raw[start:end].decode("ascii")
    except UnicodeDecodeError:
        return None


class BybitPublicStream:
    """The public stream of one adapter: book frames to the book managers, the rest to ``on_public``."""

    def __init__(
        self,
        *,
        url: str,
        venue: Venue,
        books: Mapping[str, BookManager],
        depth: int,
        on_public: Callable[[str, dict[str, Any], int], None],
        on_status: Callable[[VenueStatus], None],
        now_ms: Callable[[], int],
        ping_interval_s: float,
        stall_after_s: float | None,
        max_delay_s: float,
    ) -> None:
        self._books = books
        self._depth = depth
        self._on_public = on_public
        self._book_topics = {book_topic(s, depth): s for s in books}
        self.topics: list[str] = []
        for symbol in books:
            self.topics += [book_topic(symbol, depth), trade_topic(symbol), ticker_topic(symbol)]
        self._req_ids = itertools.count(1)
        self._resyncing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.malformed = 0
        self.subscribe_failures = 0
        self.resubscribes = 0
        self.conn = WsConnection(
            venue=venue,
            stream="public",
            url=url,
            on_message=self._on_frame,
            on_status=on_status,
            now_ms=now_ms,
            on_open=self._on_open,
            app_ping=PING,
            app_ping_interval_s=ping_interval_s,
            stall_after_s=stall_after_s,
            max_delay_s=max_delay_s,
        )

    def start(self) -> None:
        self.conn.start()

    async def stop(self) -> None:
        await self.conn.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _on_open(self, conn: WsConnection, reconnected: bool) -> None:
        self._resyncing.clear()
        if reconnected:
            for manager in self._books.values():
                manager.reset("stream reconnected")
        await conn.send(op_message("subscribe", self.topics, f"pub-{next(self._req_ids)}"))

    # ---- resync ------------------------------------------------------------------------------------
    def request_resync(self, symbol: str) -> None:
        """A gap on ``symbol``'s book: resubscribe its orderbook topic (schedules; never blocks)."""
        if symbol in self._resyncing or not self.conn.connected:
            return  # already on its way, or the reconnect will resubscribe everything
        self._resyncing.add(symbol)
        task = asyncio.get_running_loop().create_task(
            self._resubscribe(symbol), name=f"bybit-resync-{symbol}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resubscribe(self, symbol: str) -> None:
        topic = book_topic(symbol, self._depth)
        self.resubscribes += 1
        log.info("bybit_book_resubscribe symbol=%s topic=%s", symbol, topic)
        try:
            await self.conn.send(op_message("unsubscribe", [topic], f"unsub-{next(self._req_ids)}"))
            await self.conn.send(op_message("subscribe", [topic], f"resub-{next(self._req_ids)}"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection went away: its reconnect resubscribes every topic
            log.warning("bybit_book_resubscribe_failed symbol=%s error=%s", symbol, type(exc).__name__)
        finally:
            self._resyncing.discard(symbol)

    # ---- frames ------------------------------------------------------------------------------------
    def _on_frame(self, raw: bytes, recv_ns: int) -> None:
        topic = topic_of(raw)
        if topic is not None:
            symbol = self._book_topics.get(topic)
            if symbol is not None:
                self._books[symbol].on_bytes(raw, recv_ns)
                return
        try:
            message = orjson.loads(raw)
            if not isinstance(message, dict):
                raise MalformedMessage("bybit: public frame is not an object")
            if "topic" in message:
                self._on_public(str(message["topic"]), message, recv_ns)
                return
            reply = parse_op_reply(message)
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            self.malformed += 1
            log.warning("bybit_public_malformed error=%r", str(exc)[:200])
            return
        if reply is not None and not reply.success and reply.op in ("subscribe", "unsubscribe"):
            self.subscribe_failures += 1
            log.warning("bybit_subscribe_failed op=%s message=%r", reply.op, reply.message[:200])

    def stats(self) -> dict[str, int]:
        out = self.conn.stats()
        out["public_malformed"] = self.malformed
        out["public_subscribe_failures"] = self.subscribe_failures
        out["book_resubscribes"] = self.resubscribes
        return out


class BybitPrivateStream:
    """The private stream: auth, the four account topics, decoded messages to ``on_private``."""

    def __init__(
        self,
        *,
        url: str,
        venue: Venue,
        api_key: str,
        api_secret: str,
        on_private: Callable[[str, dict[str, Any]], None],
        on_ready: Callable[[bool], Awaitable[None]],
        on_status: Callable[[VenueStatus], None],
        now_ms: Callable[[], int],
        ping_interval_s: float,
        max_delay_s: float,
    ) -> None:
        self._api_key = api_key
        self._secret = api_secret
        self._on_private = on_private
        self._on_ready = on_ready
        self._now_ms = now_ms
        self._req_ids = itertools.count(1)
        self._reconnected = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        self.auth_error: AuthFailed | None = None
        self.malformed = 0
        self.conn = WsConnection(
            venue=venue,
            stream="private",
            url=url,
            on_message=self._on_frame,
            on_status=on_status,
            now_ms=now_ms,
            on_open=self._on_open,
            on_close=self._on_close,
            app_ping=PING,
            app_ping_interval_s=ping_interval_s,
            stall_after_s=None,  # the private stream may be silent for long: pings keep it alive
            max_delay_s=max_delay_s,
        )

    def start(self) -> None:
        self.conn.start()

    async def stop(self) -> None:
        await self.conn.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _on_open(self, conn: WsConnection, reconnected: bool) -> None:
        self._reconnected = reconnected
        expires = self._now_ms() + 10_000
        await conn.send(auth_message(self._api_key, self._secret, expires))
        await conn.send(op_message("subscribe", list(PRIVATE_TOPICS), f"priv-{next(self._req_ids)}"))

    def _on_close(self, reason: str) -> None:
        self.ready.clear()

    def _on_frame(self, raw: bytes, recv_ns: int) -> None:
        try:
            message = orjson.loads(raw)
            if not isinstance(message, dict):
                raise MalformedMessage("bybit: private frame is not an object")
            topic = message.get("topic")
            if isinstance(topic, str):
                self._on_private(topic, message)
                return
            reply = parse_op_reply(message)
        except (orjson.JSONDecodeError, MalformedMessage) as exc:
            self.malformed += 1
            log.warning("bybit_private_malformed error=%r", str(exc)[:200])
            return
        if reply is None or reply.op == "pong":
            return
        if reply.op == "auth":
            if not reply.success:
                self.auth_error = AuthFailed(
                    venue="bybit", code=reply.code or 10003, message=f"private stream auth: {reply.message}"
                )
                log.error("bybit_private_auth_failed message=%r", reply.message[:200])
                self._spawn(self.conn.stop())
            return
        if reply.op == "subscribe":
            if not reply.success:
                log.error("bybit_private_subscribe_failed message=%r", reply.message[:200])
                self._spawn(self.conn.reconnect("private subscribe failed"))
                return
            self._spawn(self._ready(self._reconnected))

    async def _ready(self, reconnected: bool) -> None:
        await self._on_ready(reconnected)
        self.ready.set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name="bybit-private-task")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bybit_private_task_failed error=%r", str(task.exception())[:200])

    def stats(self) -> dict[str, int]:
        out = self.conn.stats()
        out["private_malformed"] = self.malformed
        return out
