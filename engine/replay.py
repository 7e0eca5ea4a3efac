"""``engine run`` until the trading engine lands: a generated market replayed live through the kernels.

One ``uvloop`` event loop, three tasks:

- the *venue* task steps the seeded :class:`~engine.venue.generator.MarketGenerator` at ``rate`` events
  per second (paced in batches against the loop clock) and serializes each event to wire bytes with
  orjson, as a WebSocket would deliver them;
- the *market data* task takes those batches from a bounded queue (``QUEUE_BATCHES`` batches; when it is
  full the venue task waits, so nothing is dropped and the measured rate shows the backpressure), feeds
  each ``depthUpdate`` to ``BinanceBookSync.on_bytes`` (after ``on_snapshot`` from the generator's REST
  snapshot; a gap triggers a resync from a fresh snapshot), each ``aggTrade`` to a 1 s ``BarBuilder``,
  and each completed bar to EMA(20), RSI(14), ATR(14) and MACD(12, 26, 9);
- the *status* task prints one status line a second (rewritten in place with ``\\r`` on a terminal,
  one line each otherwise).

SIGINT (Ctrl-C) and SIGTERM stop it cleanly: the tasks are cancelled and awaited, a summary line is
printed, and the exit status is 0. ``duration_s`` stops it after that many seconds.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
import uvloop

from engine.errors import KernelUnavailable
from engine.venue.generator import MarketGenerator

__all__ = ["QUEUE_BATCHES", "Replay", "run_replay"]

#: Bound of the venue -> market data queue, in batches; a full queue makes the venue task wait.
QUEUE_BATCHES = 32
#: Pacing: the venue task wakes this often and produces the events due since its last wake-up.
PACE_S = 0.01
#: At most this many events per batch (keeps the loop responsive when the pipeline lags).
MAX_BATCH = 2_000

# BinanceBookSync result codes (engine._ext.booksync)
APPLIED, STALE, GAP, BUFFERED = 0, 1, 2, 3


@dataclass
class Counters:
    events: int = 0
    depth: int = 0
    trades: int = 0
    applied: int = 0
    stale: int = 0
    buffered: int = 0
    resyncs: int = 0
    bars: int = 0
    bad_trades: int = 0


class Replay:
    """The synchronous pipeline (no I/O, no clock): generator wire bytes in, kernel state out."""

    def __init__(self, *, kernels: Any, implementation: str, seed: int, symbol: str = "BTCUSDT") -> None:
        self.kernels = kernels
        self.implementation = implementation
        self.symbol = symbol
        self.gen = MarketGenerator(symbol=symbol, seed=seed)
        self.book = kernels.OrderBook(tick_size=str(self.gen.tick_size), lot_size=str(self.gen.lot_size))
        self.sync = kernels.BinanceBookSync(self.book)
        self.bars = kernels.BarBuilder(interval_ms=1_000)
        self.ema = kernels.EMA(period=20)
        self.rsi = kernels.RSI(period=14)
        self.atr = kernels.ATR(period=14)
        self.macd = kernels.MACD(fast=12, slow=26, signal=9)
        self.counters = Counters()
        self._last_depth: bytes | None = None  # the last depthUpdate produced (wire bytes)

    # -- the venue side ---------------------------------------------------------------------------

    def produce(self, now_ms: int, n: int) -> list[bytes]:
        """At least ``n`` events (whole generator steps) as wire bytes."""
        out: list[bytes] = []
        dumps, step = orjson.dumps, self.gen.step
        while len(out) < n:
            for event in step(now_ms):
                raw = dumps(event)
                if event["e"] == "depthUpdate":
                    self._last_depth = raw
                out.append(raw)
        return out

    def start(self, now_ms: int) -> list[bytes]:
        """Begin as a real client does: the stream first, then the REST snapshot.

        Returns the events produced before the snapshot, to be fed first: the last of them is the
        bridging event (its ``u`` is the snapshot's ``lastUpdateId``, so ``U <= lastUpdateId <= u``).
        """
        first: list[bytes] = []
        while self._last_depth is None:
            first += self.produce(now_ms, 1)
        snap = self.gen.snapshot()
        self.sync.on_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
        self.counters.resyncs += 1
        return first

    def resync(self) -> None:
        """After a GAP: a fresh snapshot, then the bridging event (the generator's last depth event).

        Events still queued behind it are STALE (``u <= lastUpdateId``) and the live chain resumes.
        """
        snap = self.gen.snapshot()
        self.counters.resyncs += 1
        self.sync.on_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
        if self._last_depth is not None:
            self.sync.on_bytes(self._last_depth)

    # -- the market data side ---------------------------------------------------------------------

    def consume(self, batch: list[bytes]) -> None:
        c = self.counters
        on_bytes = self.sync.on_bytes
        for raw in batch:
            c.events += 1
            if raw[6:17] == b"depthUpdate":  # b'{"e":"depthUpdate",...': orjson writes keys in order
                c.depth += 1
                code = on_bytes(raw)
                if code == APPLIED:
                    c.applied += 1
                elif code == STALE:
                    c.stale += 1
                elif code == BUFFERED:
                    c.buffered += 1
                elif code == GAP:
                    self.resync()
            else:
                c.trades += 1
                self._on_trade(orjson.loads(raw))

    def _on_trade(self, msg: dict[str, Any]) -> None:
        before = self.bars.rejected_invalid + self.bars.rejected_out_of_order
        for bar in self.bars.update(msg["T"], float(msg["p"]), float(msg["q"])):
            self.counters.bars += 1
            self.ema.update(bar.close)
            self.rsi.update(bar.close)
            self.atr.update(bar.high, bar.low, bar.close)
            self.macd.update(bar.close)
        self.counters.bad_trades += self.bars.rejected_invalid + self.bars.rejected_out_of_order - before

    # -- reporting --------------------------------------------------------------------------------

    def status_line(self, events_per_s: float) -> str:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        bid_s = f"bid {bid[0]} x {bid[1]}" if bid else "bid -"
        ask_s = f"ask {ask[0]} x {ask[1]}" if ask else "ask -"
        spread = self.book.spread_ticks()
        parts = [
            f"{self.symbol} {bid_s}",
            ask_s,
            f"spread {spread}t" if spread is not None else "spread -",
            f"EMA20 {_ind(self.ema, '.1f')} RSI14 {_ind(self.rsi, '.1f')} ATR14 {_ind(self.atr, '.2f')} "
            f"MACD {_ind(self.macd, '.2f')}",
            f"bars {self.counters.bars:,}",
            f"{events_per_s:,.0f} ev/s",
            f"gaps {self.sync.gaps}",
            self.implementation,
        ]
        return " | ".join(parts)

    def summary_line(self, elapsed_s: float) -> str:
        c = self.counters
        rate = c.events / elapsed_s if elapsed_s > 0 else 0.0
        bid, ask = self.book.best_bid(), self.book.best_ask()
        return (
            f"summary: {c.events:,} events in {elapsed_s:.1f} s ({rate:,.0f} ev/s) | depth {c.depth:,} "
            f"(applied {c.applied:,}, stale {c.stale:,}) | trades {c.trades:,} | bars {c.bars:,} | "
            f"gaps {self.sync.gaps} resyncs {c.resyncs} | "
            f"last bid {bid[0] if bid else '-'} ask {ask[0] if ask else '-'} | {self.implementation}"
        )


def _ind(indicator: Any, spec: str) -> str:
    value = indicator.value
    if not indicator.ready or value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _venue(replay: Replay, queue: asyncio.Queue[list[bytes]], rate: int) -> None:
    """Produce ``rate`` events per second, in batches, into the bounded queue (waits when it is full)."""
    loop = asyncio.get_running_loop()
    await queue.put(replay.start(_now_ms()))
    t0 = loop.time()
    produced = 0
    while True:
        due = int((loop.time() - t0) * rate) - produced
        if due <= 0:
            await asyncio.sleep(PACE_S)
            continue
        batch = replay.produce(_now_ms(), min(due, MAX_BATCH))
        produced += len(batch)
        await queue.put(batch)  # backpressure: waits while the market data task is behind
        await asyncio.sleep(0)


async def _market_data(replay: Replay, queue: asyncio.Queue[list[bytes]]) -> None:
    while True:
        batch = await queue.get()
        try:
            replay.consume(batch)
        finally:
            queue.task_done()


async def _status(replay: Replay, out: TextIO, tty: bool) -> None:
    loop = asyncio.get_running_loop()
    last_t, last_events = loop.time(), 0
    while True:
        await asyncio.sleep(1.0)
        now = loop.time()
        events = replay.counters.events
        line = replay.status_line((events - last_events) / (now - last_t))
        last_t, last_events = now, events
        out.write(f"\r{line}\x1b[K" if tty else f"{line}\n")
        out.flush()


async def _main(*, seed: int, duration_s: float | None, rate: int, kernels: Any, impl: str) -> int:
    out = sys.stdout
    tty = out.isatty()
    loop = asyncio.get_running_loop()
    replay = Replay(kernels=kernels, implementation=impl, seed=seed)
    stop = asyncio.Event()
    stop_reason = ["duration"]

    def _on_signal(name: str) -> Callable[[], None]:
        def handler() -> None:
            stop_reason[0] = name
            stop.set()

        return handler

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal(sig.name))

    out.write(
        f"engine run: paper replay of {replay.symbol} (seed {seed}, {rate:,} ev/s target, {impl} kernels); "
        "Ctrl-C stops\n"
    )
    out.flush()
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue(maxsize=QUEUE_BATCHES)
    started = loop.time()
    tasks = [
        asyncio.create_task(_venue(replay, queue, rate), name="venue"),
        asyncio.create_task(_market_data(replay, queue), name="market-data"),
        asyncio.create_task(_status(replay, out, tty), name="status"),
    ]
    stopper = asyncio.create_task(stop.wait(), name="stop")
    status = 0
    try:
        done, _ = await asyncio.wait(
            [stopper, *tasks], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                stop_reason[0] = f"{task.get_name()} failed: {exc!r}"
                status = 1
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    elapsed = loop.time() - started
    if tty:
        out.write("\n")
    out.write(f"{replay.summary_line(elapsed)} | stopped by {stop_reason[0]}\n")
    out.flush()
    return status


def run_replay(*, seed: int = 7, duration_s: float | None = None, rate: int = 20_000) -> int:
    """``engine run``: replay the seeded market through the kernels until ``duration_s`` or a signal."""
    if rate <= 0:
        print(f"engine run: --rate must be > 0, got {rate}", file=sys.stderr)
        return 2
    if duration_s is not None and duration_s < 0:
        print(f"engine run: --duration must be >= 0, got {duration_s}", file=sys.stderr)
        return 2
    try:
        from engine import kernels
    except KernelUnavailable as exc:
        print(f"engine run: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(
            _main(seed=seed, duration_s=duration_s, rate=rate, kernels=kernels, impl=kernels.IMPLEMENTATION)
        )
