"""Fixtures of the Bybit front-end tests: a scripted exchange core on a clock that follows the wall
clock (pybit signs with the real time), the Bybit front-end mounted on an aiohttp app on a free
loopback port, and pybit clients pointed at it (protocol notes 3.1, 3.2).

Import the fixtures into a test module (``from tests.venue.bybit_fixtures import clock, venue``):
the module's ``clock`` then replaces the conftest's manual one, so ``make_exchange`` builds the core
on it and the conftest's autouse invariant check covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import pybit.unified_trading as pybit_ut
import pytest
from aiohttp import web
from pybit.unified_trading import HTTP, WebSocket

from engine.venue.bybit import BYBIT_HUB_KEY, setup
from engine.venue.bybit.streams import BybitHub
from engine.venue.context import VenueContext
from engine.venue.exchange import Exchange
from engine.venue.ratelimit import BybitIpLimits
from tests.venue.conftest import ManualClock

__all__ = [
    "KEY",
    "SECRET",
    "BybitVenue",
    "Collector",
    "WallClock",
    "clock",
    "local_websocket",
    "market_venue",
    "serve",
    "venue",
    "wait_for",
]

KEY = "alice"
SECRET = "alice-secret"
D = Decimal


class WallClock(ManualClock):
    """The wall clock plus a shift the test moves by hand (``tick``)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.shift = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.shift

    def tick(self, ms: int) -> int:
        self.shift += ms
        return self()


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


class Collector:
    """Thread-safe list of messages (pybit calls back on its socket thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(message)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)


async def wait_for(predicate: Callable[[], bool], *, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def local_websocket(port: int) -> type[WebSocket]:
    """pybit's WebSocket redirected to the local venue by overriding ``_connect`` (notes 3.2).

    It also closes a race in pybit (5.x): ``subscribe`` records the request's ``req_id`` only after
    sending it, and its reader thread looks that id up in the answer. Over the internet the answer takes
    milliseconds; from a loopback venue it can arrive first, the lookup raises KeyError in the reader and
    websocket-client closes the socket for good (1 run in ~20 hung in ``subscribe``). The reader waits (up
    to 2 s) for the id to be recorded before pybit handles the answer."""

    class LocalWebSocket(WebSocket):
        def _connect(self, url: str) -> None:
            tail = url.split("/v5/", 1)[1]
            super()._connect(f"ws://127.0.0.1:{port}/v5/{tail}")

        def _process_subscription_message(self, message: dict[str, Any]) -> None:
            req_id = message.get("req_id")
            deadline = time.monotonic() + 2.0
            while req_id and req_id not in self.subscriptions and time.monotonic() < deadline:
                time.sleep(0.001)
            super()._process_subscription_message(message)

    return LocalWebSocket


@dataclass
class BybitVenue:
    core: Exchange
    ctx: VenueContext
    clock: WallClock
    port: int
    hub: BybitHub
    sockets: list[WebSocket] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def http(self, *, key: str = KEY, secret: str = SECRET, **kwargs: Any) -> HTTP:
        kwargs.setdefault("retry_delay", 0)
        session = HTTP(testnet=False, api_key=key, api_secret=secret, **kwargs)
        session.endpoint = self.base_url
        return session

    def websocket(self, channel_type: str, **kwargs: Any) -> WebSocket:
        ws = local_websocket(self.port)(testnet=False, channel_type=channel_type, **kwargs)
        self.sockets.append(ws)
        return ws

    def advance(self, ms: int = 0) -> None:
        """Move the venue clock by ``ms`` and run the market up to it (on the event loop thread)."""
        if ms:
            self.clock.tick(ms)
        self.core.advance(self.clock())


@contextlib.asynccontextmanager
async def serve(
    core: Exchange, clock: WallClock, *, ip_limits: BybitIpLimits | None = None
) -> AsyncIterator[BybitVenue]:
    """The Bybit front-end over ``core`` on a free loopback port, for the duration of the block
    (``ip_limits``: the per-IP request window and ban, Bybit's 600 / 5 s and 10 minutes if None)."""
    ctx = VenueContext(core=core)
    app = web.Application()
    setup(app, ctx, rate_limits={"/v5/order/create": 50}, ip_limits=ip_limits)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    state = BybitVenue(core=core, ctx=ctx, clock=clock, port=port, hub=app[BYBIT_HUB_KEY])
    try:
        yield state
    finally:
        for ws in state.sockets:
            await asyncio.to_thread(ws.exit)
        await runner.cleanup()


def _accounts(core: Exchange) -> None:
    core.add_account(api_key="alice", api_secret="alice-secret", deposit=D("100000"))
    core.add_account(api_key="bob", api_secret="bob-secret", deposit=D("100000"))


@pytest.fixture
async def venue(make_exchange: Callable[..., Exchange], clock: WallClock) -> AsyncIterator[BybitVenue]:
    """The scripted core (accounts ``alice`` and ``bob``, 100,000 USDT each; BTCUSDT crowd book
    59999.9 / 60000.0 with 1 BTC a level, ten levels a side; funding every 60 s) behind the Bybit
    front-end. The market only moves when the test scripts it."""
    core = make_exchange(scripted=True)
    _accounts(core)
    async with serve(core, clock) as state:
        yield state


@pytest.fixture
async def market_venue(make_exchange: Callable[..., Exchange], clock: WallClock) -> AsyncIterator[BybitVenue]:
    """The seeded generator market (seed 7, 100 levels a side) behind the Bybit front-end: every
    ``advance(100)`` is one market step with book changes and trades."""
    core = make_exchange()
    _accounts(core)
    async with serve(core, clock) as state:
        yield state


def dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


# pybit keeps module-level URL constants; the tests redirect through ``_connect`` instead, but keep a
# reference so an accidental real-network URL is easy to spot in a failure.
REAL_PUBLIC_WSS = pybit_ut.PUBLIC_WSS
