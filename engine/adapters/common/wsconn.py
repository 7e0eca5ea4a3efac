"""A reconnecting WebSocket client connection on the ``websockets`` library (asyncio API).

:class:`WsConnection` keeps one logical stream alive:

- connects to ``url`` (a string, or a coroutine function giving a fresh URL at every connect, e.g. a
  Binance listenKey URL), with jittered exponential backoff between attempts (``base_delay_s`` doubling
  up to ``max_delay_s``, times a random factor in [0.5, 1]);
- calls ``on_open(conn, reconnected)`` after every (re)connect, to subscribe and to trigger book resyncs
  or a REST reconciliation; an :class:`~engine.errors.EngineError` there closes the connection and
  retries;
- hands every frame's raw bytes and its receive time (``time.perf_counter_ns()``) to ``on_message``,
  synchronously, so the book path can feed the kernels' ``on_bytes`` (decoding is the caller's);
- heartbeats: protocol pings every ``ping_interval_s`` (and the venue's pings are answered by the
  library); an optional application ping (Bybit's ``{"op":"ping"}``) every ``app_ping_interval_s``;
- a stream with no message for ``stall_after_s`` is declared stalled and reconnected;
- reports ``connected`` / ``disconnected`` :class:`~engine.types.VenueStatus` events and counts
  messages, connects, reconnects, stalls and callback errors.

Buffers are bounded: ``max_queue`` frames in the library's receive queue (when full, the library stops
reading the socket: TCP back-pressure, nothing dropped), ``max_size`` bytes per frame.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from engine.adapters.common import cancel_task
from engine.errors import EngineError
from engine.types import Venue, VenueStatus

__all__ = ["WsConnection"]

log = logging.getLogger("engine.adapters.wsconn")

UrlSource = str | Callable[[], Awaitable[str]]


class WsConnection:
    """One reconnecting stream (see the module docstring). Keyword-only construction."""

    def __init__(
        self,
        *,
        venue: Venue,
        stream: str,
        url: UrlSource,
        on_message: Callable[[bytes, int], None],
        on_status: Callable[[VenueStatus], None],
        now_ms: Callable[[], int],
        on_open: Callable[[WsConnection, bool], Awaitable[None]] | None = None,
        on_close: Callable[[str], None] | None = None,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 10.0,
        app_ping: str | None = None,
        app_ping_interval_s: float = 20.0,
        stall_after_s: float | None = None,
        base_delay_s: float = 0.1,
        max_delay_s: float = 30.0,
        open_timeout_s: float = 10.0,
        max_queue: int = 1024,
        max_size: int = 1 << 22,
    ) -> None:
        self.venue = venue
        self.stream = stream
        self._url = url
        self._on_message = on_message
        self._on_status = on_status
        self._now_ms = now_ms
        self._on_open = on_open
        self._on_close = on_close
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.app_ping = app_ping
        self.app_ping_interval_s = app_ping_interval_s
        self.stall_after_s = stall_after_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.open_timeout_s = open_timeout_s
        self.max_queue = max_queue
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._connected = asyncio.Event()
        self.messages = 0
        self.connects = 0
        self.reconnects = 0
        self.stalls = 0
        self.callback_errors = 0
        self.connect_failures = 0

    # ---- lifecycle --------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ws is not None and self._connected.is_set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"{self.venue}-ws-{self.stream}")

    async def wait_connected(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            await ws.close()
        await cancel_task(task)

    async def reconnect(self, reason: str) -> None:
        """Close the current connection; the run loop connects again (after the backoff)."""
        ws = self._ws
        if ws is not None:
            log.info("ws_force_reconnect venue=%s stream=%s reason=%s", self.venue, self.stream, reason)
            await ws.close(code=1000, reason=reason[:100])

    async def send(self, data: bytes | str) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionError(f"{self.venue} {self.stream} stream is not connected")
        await ws.send(data)

    def stats(self) -> dict[str, int]:
        p = f"ws_{self.stream}_"
        return {
            p + "messages": self.messages,
            p + "connects": self.connects,
            p + "reconnects": self.reconnects,
            p + "stalls": self.stalls,
            p + "callback_errors": self.callback_errors,
            p + "connect_failures": self.connect_failures,
        }

    # ---- the loop ---------------------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.max_delay_s, self.base_delay_s * float(2 ** min(attempt - 1, 30)))
        jitter: float = random.uniform(0.5, 1.0)
        return delay * jitter

    def _status(self, status: str, detail: str) -> None:
        self._on_status(
            VenueStatus(
                venue=self.venue, stream=self.stream, status=status, detail=detail, ts_ms=self._now_ms()
            )
        )

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            if attempt:
                await asyncio.sleep(self._backoff(attempt))
            try:
                url = self._url if isinstance(self._url, str) else await self._url()
                ws = await connect(
                    url,
                    ping_interval=self.ping_interval_s,
                    ping_timeout=self.ping_timeout_s,
                    open_timeout=self.open_timeout_s,
                    close_timeout=1.0,
                    max_queue=self.max_queue,
                    max_size=self.max_size,
                    compression=None,
                )
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, EngineError) as exc:
                attempt += 1
                self.connect_failures += 1
                log.warning(
                    "ws_connect_failed venue=%s stream=%s attempt=%d error=%r",
                    self.venue,
                    self.stream,
                    attempt,
                    str(exc)[:200],
                )
                continue
            received_before = self.messages
            await self._serve(ws)
            if self.messages > received_before:
                attempt = 0  # the connection worked: start the backoff over
            attempt += 1

    async def _serve(self, ws: ClientConnection) -> str:
        """Run one connection until it ends; returns why it ended."""
        self._ws = ws
        self.connects += 1
        reconnected = self.connects > 1
        if reconnected:
            self.reconnects += 1
        self._connected.set()
        log.info("ws_connected venue=%s stream=%s reconnect=%s", self.venue, self.stream, reconnected)
        self._status("connected", "reconnected" if reconnected else "connected")
        pinger: asyncio.Task[None] | None = None
        reason = "closed"
        try:
            if self._on_open is not None:
                await self._on_open(self, reconnected)
            if self.app_ping is not None:
                pinger = asyncio.create_task(self._app_pings(ws), name=f"{self.venue}-ws-{self.stream}-ping")
            reason = await self._read(ws)
        except asyncio.CancelledError:
            reason = "stopped"
            raise
        except ConnectionClosed as exc:
            reason = f"closed code={exc.rcvd.code if exc.rcvd else 'none'}"
        except EngineError as exc:
            reason = f"open failed: {exc}"
            log.warning("ws_open_failed venue=%s stream=%s error=%r", self.venue, self.stream, str(exc)[:200])
        finally:
            self._connected.clear()
            self._ws = None
            await cancel_task(pinger)
            await ws.close()
            log.info("ws_disconnected venue=%s stream=%s reason=%r", self.venue, self.stream, reason)
            self._status("disconnected", reason)
            if self._on_close is not None:
                self._on_close(reason)
        return reason

    async def _read(self, ws: ClientConnection) -> str:
        on_message = self._on_message
        stall = self.stall_after_s
        while True:
            try:
                if stall is None:
                    raw = await ws.recv(decode=False)
                else:
                    async with asyncio.timeout(stall):
                        raw = await ws.recv(decode=False)
            except TimeoutError:
                self.stalls += 1
                log.warning(
                    "ws_stalled venue=%s stream=%s silent_s=%.1f", self.venue, self.stream, stall or 0.0
                )
                return "stalled"
            except ConnectionClosed as exc:
                return f"closed code={exc.rcvd.code if exc.rcvd else 'none'}"
            recv_ns = time.perf_counter_ns()
            self.messages += 1
            try:
                on_message(raw, recv_ns)
            except Exception:  # a consumer bug must not kill the stream; logged with its traceback
                self.callback_errors += 1
                log.exception("ws_callback_failed venue=%s stream=%s", self.venue, self.stream)

    async def _app_pings(self, ws: ClientConnection) -> None:
        assert self.app_ping is not None
        while True:
            await asyncio.sleep(self.app_ping_interval_s)
            try:
                await ws.send(self.app_ping)
            except ConnectionClosed:
                return
