"""``engine record``: record a venue's public market data to rotated zstd JSON-lines files.

The :class:`Recorder` connects to the venue's public WebSocket streams with ``websockets`` and
writes every frame, unmodified, through a :class:`~engine.recording.RecordingWriter`:

- Binance USD-M: ``{ws}/public/stream?streams=<s>@depth@100ms/...`` (diffs with ``U``/``u``/``pu``)
  and ``{ws}/market/stream?streams=<s>@aggTrade/<s>@markPrice@1s/...``; REST snapshots from
  ``{rest}/fapi/v1/depth?limit=1000`` after the first diff of each (re)connection, after every
  rotation (so each file rebuilds its books by itself) and after a sequence break (``pu`` not the
  previous ``u``).
- Bybit v5 linear: one connection to the public linear URL subscribing ``orderbook.200.<S>``,
  ``publicTrade.<S>`` and ``tickers.<S>``; the topic's snapshot messages are the sync points. At a
  rotation it records a REST snapshot (``/v5/market/orderbook``) and re-subscribes the order-book
  topics, so the new file starts from a fresh topic snapshot; after a break in ``u`` it
  re-subscribes too.

Every reconnect, sequence break or non-JSON frame is written as a ``gap`` line, and a fresh book
snapshot follows every ``gap`` line (Binance: after the first diff of a new depth connection). Connections are
re-opened with exponential backoff (0.5 s doubling to 10 s). ``run(stop)`` returns when ``stop`` is
set; it then flushes and closes the current file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from engine.recording import VENUES, RecordingWriter

__all__ = [
    "BINANCE_REST",
    "BINANCE_WS",
    "BYBIT_REST",
    "BYBIT_WS",
    "Recorder",
    "RecorderConfig",
    "RecorderStats",
    "run_record",
]

log = logging.getLogger("engine.recorder")

BINANCE_REST = "https://fapi.binance.com"
BINANCE_WS = "wss://fstream.binance.com"
BYBIT_REST = "https://api.bybit.com"
BYBIT_WS = "wss://stream.bybit.com/v5/public/linear"

BYBIT_DEPTH = 200
BINANCE_SNAPSHOT_LIMIT = 1000
_BACKOFF_MAX_S = 10.0
_PING_S = 20.0
_BYBIT_ARGS_PER_REQUEST = 10


@dataclass(frozen=True, kw_only=True)
class RecorderConfig:
    venue: Literal["binance", "bybit"]
    symbols: tuple[str, ...]
    out_dir: Path
    rest_url: str
    ws_url: str  # Binance: the host (the recorder adds /public, /market); Bybit: the public linear URL
    rotate_s: float = 3600.0
    flush_s: float = 1.0

    def __post_init__(self) -> None:
        if self.venue not in VENUES:
            raise ValueError(f"venue {self.venue!r} must be one of {', '.join(VENUES)}")
        if not self.symbols or not all(s.isalnum() and s.isupper() for s in self.symbols):
            raise ValueError(f"symbols must be upper-case alphanumeric names, got {list(self.symbols)}")
        if self.rotate_s <= 0 or self.flush_s <= 0:
            raise ValueError("rotate_s and flush_s must be > 0")


@dataclass
class RecorderStats:
    messages: dict[str, int] = field(default_factory=dict)  # per kind
    reconnects: int = 0
    gaps: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    bad_frames: int = 0
    files: list[Path] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.messages[kind] = self.messages.get(kind, 0) + 1


class Recorder:
    """Records one venue's public streams of some symbols until ``run``'s stop event is set."""

    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self.stats = RecorderStats()
        self.writer = RecordingWriter(
            directory=config.out_dir,
            venue=config.venue,
            rotate_s=config.rotate_s,
            flush_s=config.flush_s,
            on_rotate=self._on_rotate,
        )
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._need_snapshot: set[str] = set()  # Binance: fetch after the next diff of these symbols
        self._last_u: dict[str, int] = {}  # Binance: last diff u; Bybit: last order-book u
        self._bybit_ws: ClientConnection | None = None
        self._resubscribing: set[str] = set()
        self.last_message_t = 0

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> RecorderStats:
        cfg = self.config
        self.writer.open()
        log.info(
            "recorder_started venue=%s symbols=%s out=%s rotate_s=%s",
            cfg.venue,
            ",".join(cfg.symbols),
            cfg.out_dir,
            cfg.rotate_s,
        )
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            if cfg.venue == "binance":
                self._spawn(self._binance_conn("depth"), "rec-binance-depth")
                self._spawn(self._binance_conn("market"), "rec-binance-market")
            else:
                self._spawn(self._bybit_conn(), "rec-bybit")
            ticker = asyncio.create_task(self._ticker(), name="rec-ticker")
            await stop.wait()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._session.close()
            self.writer.close()
            self.stats.files = list(self.writer.files)
            log.info(
                "recorder_stopped venue=%s lines=%d files=%d reconnects=%d gaps=%d",
                cfg.venue,
                self.writer.lines,
                len(self.writer.files),
                self.stats.reconnects,
                self.stats.gaps,
            )
        return self.stats

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recorder_task_failed task=%s error=%r", task.get_name(), task.exception())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(min(0.2, self.config.flush_s / 2))
            self.writer.tick()

    def _on_rotate(self, path: Path) -> None:
        log.info("recorder_rotated path=%s", path)
        for symbol in self.config.symbols:
            if self.config.venue == "binance":
                self._spawn(self._binance_snapshot(symbol), f"rec-snapshot-{symbol}")
            else:
                self._spawn(self._bybit_rest_snapshot(symbol), f"rec-snapshot-{symbol}")
                self._spawn(self._bybit_resubscribe(symbol), f"rec-resubscribe-{symbol}")

    def _gap(self, symbol: str, reason: str, **extra: object) -> None:
        self.stats.gaps += 1
        self.writer.write("gap", symbol, {"reason": reason, **extra})
        log.warning("recorder_gap symbol=%s reason=%s %s", symbol, reason, extra)

    # ---- Binance ------------------------------------------------------------------------------

    def _binance_url(self, which: Literal["depth", "market"]) -> str:
        syms = [s.lower() for s in self.config.symbols]
        base = self.config.ws_url.rstrip("/")
        if which == "depth":
            return f"{base}/public/stream?streams=" + "/".join(f"{s}@depth@100ms" for s in syms)
        names = [n for s in syms for n in (f"{s}@aggTrade", f"{s}@markPrice@1s")]
        return f"{base}/market/stream?streams=" + "/".join(names)

    async def _binance_conn(self, which: Literal["depth", "market"]) -> None:
        url = self._binance_url(which)
        backoff = 0.5
        first = True
        while True:
            error = ""
            try:
                async with connect(url, max_size=1 << 24, ping_interval=_PING_S) as ws:
                    log.info("recorder_connected venue=binance stream=%s", which)
                    backoff = 0.5
                    if not first:
                        self.stats.reconnects += 1
                        for symbol in self.config.symbols:
                            self._gap(symbol, "reconnect", stream=which)
                            if which == "market":  # every gap line is followed by a snapshot
                                self._resync(symbol)
                    first = False
                    if which == "depth":
                        self._last_u.clear()
                        self._need_snapshot.update(self.config.symbols)
                    async for frame in ws:
                        self._binance_frame(frame if isinstance(frame, bytes) else frame.encode(), which)
                    error = f"closed code={ws.close_code}"
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            log.warning("recorder_disconnected venue=binance stream=%s error=%s", which, error)
            if first:  # never connected: keep trying, the gap is recorded once it connects
                first = False
            await asyncio.sleep(backoff)
            backoff = min(_BACKOFF_MAX_S, backoff * 2)

    def _binance_frame(self, raw: bytes, which: str) -> None:
        try:
            obj = orjson.loads(raw)
            stream = obj["stream"]
            data = obj["data"]
            symbol = stream.partition("@")[0].upper()
            kind_part = stream.partition("@")[2]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            self._bad_frame(raw, which)
            return
        if symbol not in self.config.symbols:
            self._bad_frame(raw, which)
            return
        if kind_part.startswith("depth"):
            kind = "depth"
            u, pu = data.get("u"), data.get("pu")
            last = self._last_u.get(symbol)
            if last is not None and pu != last and isinstance(u, int) and u > last:
                self._gap(symbol, "sequence", expected_pu=last, pu=pu)  # the gap line, then the diff
                self._resync(symbol)
            self.writer.write_raw(kind, symbol, raw)
            if isinstance(u, int) and (last is None or u > last):
                self._last_u[symbol] = u
            if symbol in self._need_snapshot:
                self._need_snapshot.discard(symbol)
                self._spawn(self._binance_snapshot(symbol), f"rec-snapshot-{symbol}")
        elif kind_part.startswith("aggTrade"):
            kind = "trade"
            self.writer.write_raw(kind, symbol, raw)
        elif kind_part.startswith("markPrice"):
            kind = "mark"
            self.writer.write_raw(kind, symbol, raw)
        else:
            self._bad_frame(raw, which)
            return
        self.stats.count(kind)
        self.last_message_t = self.writer.now_ms()

    def _bad_frame(self, raw: bytes, stream: str) -> None:
        self.stats.bad_frames += 1
        text = raw[:200].decode("utf-8", "replace")
        for symbol in self.config.symbols:
            self._gap(symbol, "bad_frame", stream=stream, frame=text)
            self._resync(symbol)

    def _resync(self, symbol: str) -> None:
        """After a gap line: a fresh book snapshot (Binance: REST; Bybit: re-subscribe the topic)."""
        if self.config.venue == "binance":
            self._spawn(self._binance_snapshot(symbol), f"rec-snapshot-{symbol}")
        else:
            self._spawn(self._bybit_resubscribe(symbol), f"rec-resubscribe-{symbol}")

    async def _get_json(self, url: str, params: dict[str, str]) -> bytes:
        assert self._session is not None
        backoff = 0.5
        while True:
            try:
                async with self._session.get(url, params=params) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        obj = orjson.loads(body)
                        if isinstance(obj, dict):
                            return body
                    error = f"HTTP {resp.status}: {body[:200]!r}"
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.stats.snapshot_failures += 1
            log.warning("recorder_snapshot_failed url=%s error=%s retry_s=%s", url, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(_BACKOFF_MAX_S, backoff * 2)

    async def _binance_snapshot(self, symbol: str) -> None:
        url = f"{self.config.rest_url.rstrip('/')}/fapi/v1/depth"
        body = await self._get_json(url, {"symbol": symbol, "limit": str(BINANCE_SNAPSHOT_LIMIT)})
        self.writer.write_raw("snapshot", symbol, body)
        self.stats.snapshots += 1
        log.info("recorder_snapshot venue=binance symbol=%s", symbol)

    # ---- Bybit --------------------------------------------------------------------------------

    def _bybit_topics(self) -> list[str]:
        return [
            t
            for s in self.config.symbols
            for t in (f"orderbook.{BYBIT_DEPTH}.{s}", f"publicTrade.{s}", f"tickers.{s}")
        ]

    async def _bybit_send(self, ws: ClientConnection, op: str, topics: Sequence[str]) -> None:
        for i in range(0, len(topics), _BYBIT_ARGS_PER_REQUEST):
            chunk = list(topics[i : i + _BYBIT_ARGS_PER_REQUEST])
            await ws.send(orjson.dumps({"op": op, "args": chunk, "req_id": f"rec-{op}-{i}"}).decode())

    async def _bybit_conn(self) -> None:
        url = self.config.ws_url
        backoff = 0.5
        first = True
        while True:
            error = ""
            pinger: asyncio.Task[None] | None = None
            try:
                async with connect(url, max_size=1 << 24, ping_interval=None) as ws:
                    log.info("recorder_connected venue=bybit url=%s", url)
                    backoff = 0.5
                    if not first:
                        self.stats.reconnects += 1
                        for symbol in self.config.symbols:
                            self._gap(symbol, "reconnect", stream="public")
                    first = False
                    self._last_u.clear()
                    self._bybit_ws = ws
                    await self._bybit_send(ws, "subscribe", self._bybit_topics())
                    pinger = asyncio.create_task(self._bybit_ping(ws), name="rec-bybit-ping")
                    async for frame in ws:
                        self._bybit_frame(frame if isinstance(frame, bytes) else frame.encode())
                    error = f"closed code={ws.close_code}"
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self._bybit_ws = None
                if pinger is not None:
                    pinger.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pinger
            log.warning("recorder_disconnected venue=bybit error=%s", error)
            first = False
            await asyncio.sleep(backoff)
            backoff = min(_BACKOFF_MAX_S, backoff * 2)

    async def _bybit_ping(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(_PING_S)
            await ws.send('{"op":"ping"}')

    def _bybit_frame(self, raw: bytes) -> None:
        try:
            obj = orjson.loads(raw)
            if not isinstance(obj, dict):
                raise TypeError("not an object")
        except (orjson.JSONDecodeError, TypeError):
            self._bad_frame(raw, "public")
            return
        topic = obj.get("topic")
        if not isinstance(topic, str):
            op = obj.get("op")
            if op in ("subscribe", "unsubscribe") and obj.get("success") is False:
                reply = raw[:300].decode("utf-8", "replace")
                log.error("recorder_subscribe_failed op=%s reply=%s", op, reply)
            return  # op replies and pongs are not market data
        head, _, symbol = topic.rpartition(".")
        if symbol not in self.config.symbols:
            self._bad_frame(raw, "public")
            return
        if head.startswith("orderbook."):
            kind = "depth"
            data = obj.get("data")
            u = data.get("u") if isinstance(data, dict) else None
            self.writer.write_raw(kind, symbol, raw)
            if obj.get("type") == "snapshot":
                self._resubscribing.discard(symbol)
                if isinstance(u, int):
                    self._last_u[symbol] = u
            elif isinstance(u, int):
                last = self._last_u.get(symbol)
                if last is not None and u != last + 1 and symbol not in self._resubscribing:
                    self._gap(symbol, "sequence", expected_u=last + 1, u=u)
                    self._resync(symbol)
                self._last_u[symbol] = u
        elif head == "publicTrade":
            kind = "trade"
            self.writer.write_raw(kind, symbol, raw)
        elif head == "tickers":
            kind = "mark"
            self.writer.write_raw(kind, symbol, raw)
        else:
            self._bad_frame(raw, "public")
            return
        self.stats.count(kind)
        self.last_message_t = self.writer.now_ms()

    async def _bybit_resubscribe(self, symbol: str) -> None:
        """Unsubscribe and subscribe the symbol's order-book topic: the venue sends a fresh snapshot."""
        ws = self._bybit_ws
        if ws is None:
            return  # not connected: the reconnect subscribes and gets a snapshot anyway
        self._resubscribing.add(symbol)
        topic = [f"orderbook.{BYBIT_DEPTH}.{symbol}"]
        try:
            await self._bybit_send(ws, "unsubscribe", topic)
            await self._bybit_send(ws, "subscribe", topic)
        except WebSocketException as exc:
            log.warning("recorder_resubscribe_failed symbol=%s error=%s", symbol, exc)

    async def _bybit_rest_snapshot(self, symbol: str) -> None:
        url = f"{self.config.rest_url.rstrip('/')}/v5/market/orderbook"
        body = await self._get_json(url, {"category": "linear", "symbol": symbol, "limit": str(BYBIT_DEPTH)})
        self.writer.write_raw("snapshot", symbol, body)
        self.stats.snapshots += 1
        log.info("recorder_snapshot venue=bybit symbol=%s", symbol)


# ---- engine record ----------------------------------------------------------------------------------


def run_record(
    *,
    venue: str,
    symbols: str,
    out: str,
    rest_url: str | None,
    ws_url: str | None,
    duration_s: float | None,
    rotate_s: float,
    flush_s: float,
    local: bool,
    seed: int = 7,
) -> int:
    """``engine record``: 0 on a clean stop (signal or --duration), 2 on a bad argument."""
    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    if venue not in VENUES:
        print(f"engine record: --venue must be one of {', '.join(VENUES)}", file=sys.stderr)
        return 2
    if local and (rest_url or ws_url):
        print("engine record: --local and --rest-url/--ws-url exclude each other", file=sys.stderr)
        return 2

    import uvloop

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            if local:
                from engine.venue.server import VenueServer

                server = await stack.enter_async_context(VenueServer(seed=seed))
                unknown = sorted(set(names) - set(server.core.instruments))
                if unknown:
                    print(f"engine record: the local venue has no symbol {unknown[0]}", file=sys.stderr)
                    return 2
                rest = server.base_url
                ws = server.ws_url if venue == "binance" else f"{server.ws_url}/v5/public/linear"
            elif venue == "binance":
                rest, ws = rest_url or BINANCE_REST, ws_url or BINANCE_WS
            else:
                rest, ws = rest_url or BYBIT_REST, ws_url or BYBIT_WS
            try:
                config = RecorderConfig(
                    venue="binance" if venue == "binance" else "bybit",
                    symbols=names,
                    out_dir=Path(out),
                    rest_url=rest,
                    ws_url=ws,
                    rotate_s=rotate_s,
                    flush_s=flush_s,
                )
            except ValueError as exc:
                print(f"engine record: {exc}", file=sys.stderr)
                return 2
            recorder = Recorder(config)
            if duration_s is not None:
                loop.call_later(duration_s, stop.set)
            print(f"record: {venue} {','.join(names)} -> {out} (rest {rest}, ws {ws})", flush=True)
            stats = await recorder.run(stop)
            total = sum(stats.messages.values())
            print(
                f"record: stopped; {total} messages, {stats.snapshots} snapshots, {stats.gaps} gaps, "
                f"{stats.reconnects} reconnects in {len(stats.files)} file(s)",
                flush=True,
            )
        return 0

    return uvloop.run(main())
