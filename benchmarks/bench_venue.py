"""The local venue's throughput targets (issue 3), recorded through the report harness.

- ``venue.depth_delivery``: depth frames delivered to one WebSocket subscriber (15 book streams of
  three symbols), target >= 20,000 messages/s, i.e. ``max_ns`` 50,000 per message;
- ``venue.order_requests``: signed Binance order requests answered over 16 keep-alive connections,
  target >= 2,000 orders/s, i.e. ``max_ns`` 500,000 per order.

These are not kernel-versus-twin cases: each is one ``kernel`` row without ``min_ratio`` (reported,
never a CI bar: absolute times on a shared machine are noise). The venue serves on its own thread's
event loop; each client runs in its own process (``tests.venue.throughput``). For depth, each round's
setup runs a market burst on the venue's loop and then holds the loop, so no frame leaves before the
timed round starts; the round is the delivery of every frame of the burst (at least ``ops``; per
message figures are therefore conservative). For orders, the setup signs them in the client; the
round sends them all and waits for every answer.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

import pytest
import uvloop

from benchmarks.harness import measure
from engine.venue.binance import FRONT_END_KEY
from engine.venue.ratelimit import BinanceLimits
from engine.venue.server import AccountSpec, VenueConfig, VenueServer
from tests.venue.throughput import DepthSubscriber, OrderSender, depth_stream_url

SHORT = os.environ.get("ENGINE_BENCH_SHORT") == "1"
DEPTH_FRAMES = 5_000 if SHORT else 20_000
ORDERS = 1_000 if SHORT else 4_000
ROUNDS = 5 if SHORT else 15
KEY, SECRET = "bench-key", "bench-secret"
HOLD_TIMEOUT_S = 60.0


class ThreadedVenue:
    """A :class:`VenueServer` on its own thread's uvloop (the benchmark's own thread stays free)."""

    def __init__(self, config: VenueConfig) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-venue", daemon=True)
        self._thread.start()
        self.server: VenueServer = self.call(self._start, config)

    @staticmethod
    async def _start(config: VenueConfig) -> VenueServer:
        server = VenueServer(
            config=config,
            tick_ms=60_000,  # the market moves only when the benchmark bursts it
            accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=Decimal("1000000"))],
        )
        await server.start()
        return server

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run the coroutine function ``fn(*args)`` on the venue's loop and return its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        return future.result(timeout=120)

    def close(self) -> None:
        self.call(self.server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def threaded_venue() -> Iterator[ThreadedVenue]:
    limits = BinanceLimits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_minute=10**9)
    venue = ThreadedVenue(VenueConfig(ws_queue_limit=10_000_000, rate_limits=limits))
    yield venue
    venue.close()


def test_venue_depth_delivery(benchmark: Any, threaded_venue: ThreadedVenue) -> None:
    venue = threaded_venue
    server = venue.server
    streams = server.app[FRONT_END_KEY].streams
    clock = server.clock
    assert clock is not None
    burst_done = threading.Event()
    release = threading.Event()
    held: list[Future[int]] = []

    async def burst_and_hold() -> int:
        """Queue at least DEPTH_FRAMES frames, then block the venue's loop (without ever yielding to
        it, so no writer sends a frame) until the round starts."""
        while streams.queued_messages() < DEPTH_FRAMES:
            clock.shift(100)
            server.core.advance(server.core.now_ms())
        frames = streams.queued_messages()
        burst_done.set()
        if not release.wait(HOLD_TIMEOUT_S):
            raise TimeoutError("the benchmark round never started")
        return frames

    def setup() -> None:
        burst_done.clear()
        release.clear()
        held.append(asyncio.run_coroutine_threadsafe(burst_and_hold(), venue.loop))
        if not burst_done.wait(HOLD_TIMEOUT_S):
            raise TimeoutError("the market burst did not finish")

    with DepthSubscriber(depth_stream_url(server.ws_url)) as subscriber:
        assert isinstance(subscriber, DepthSubscriber)

        def run() -> None:
            if not held or held[-1].done():  # the harness's warm-up call comes without a setup
                setup()
            release.set()
            frames = held[-1].result(timeout=HOLD_TIMEOUT_S)
            subscriber.start_reading(frames)
            subscriber.wait_done(60)

        measure(
            benchmark,
            case="venue.depth_delivery",
            role="kernel",
            ops=DEPTH_FRAMES,
            fn=run,
            setup=setup,
            targets={"max_ns": 50_000.0},
            rounds=ROUNDS,
        )
    assert held and all(f.result() >= DEPTH_FRAMES for f in held)


def test_venue_order_requests(benchmark: Any, threaded_venue: ThreadedVenue) -> None:
    server = threaded_venue.server
    _, bids, _ = server.core.depth("BTCUSDT", 1)
    spec = server.core.instruments["BTCUSDT"]
    # an IOC buy well below the touch, inside the price band: accepted, then expired, never filled
    price = (bids[0][0] * Decimal("0.99")).quantize(spec.tick_size)
    with OrderSender(server.base_url, KEY, SECRET, symbol="BTCUSDT", price=str(price)) as sender:
        assert isinstance(sender, OrderSender)
        answered: list[int] = []

        def run() -> None:
            ok, _elapsed = sender.go()
            answered.append(ok)

        sender.prepare(ORDERS)
        measure(
            benchmark,
            case="venue.order_requests",
            role="kernel",
            ops=ORDERS,
            fn=run,
            setup=lambda: sender.prepare(ORDERS),
            targets={"max_ns": 500_000.0},
            rounds=ROUNDS,
        )
    assert answered and all(ok == ORDERS for ok in answered), answered
