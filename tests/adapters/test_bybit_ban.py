"""Bybit's IP-limit ban (HTTP 403) through the adapter's REST layer: real pybit over real sockets,
against the local venue's own IP limit (``engine.venue.ratelimit.BybitIpLimiter``).

The venue runs with a small IP window (``LIMIT`` requests a minute) and a short ban (``BAN_S``); the
adapter's ban length (``IP_BAN_S``, 10 min in production) is shortened to the same ``BAN_S``. The
adapter itself breaks the venue's limit, so the 403 it handles is the venue's. An outermost
middleware records every request that reaches the venue (wall time, path, status), which is how the
tests prove that nothing reached the venue during the ban.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from engine.adapters.bybit import BybitAdapter
from engine.errors import Banned
from engine.types import MarketEvent, UserEvent, Venue, VenueStatus
from engine.venue.ratelimit import BybitIpLimits
from engine.venue.server import AccountSpec, VenueConfig, VenueServer
from tests.adapters.conftest import KEY, SECRET, settings_for

BAN_S = 1.0
LIMIT = 3
IP_LIMITS = BybitIpLimits(requests_per_window=LIMIT, window_ms=60_000, ban_ms=int(BAN_S * 1000))


@dataclass
class Recorder:
    """Every request that reached the venue: (wall time, path, HTTP status)."""

    requests: list[tuple[float, str, int]] = field(default_factory=list)

    def during(self, start: float, end: float) -> list[tuple[float, str, int]]:
        return [r for r in self.requests if start <= r[0] < end]

    def bybit(self) -> list[tuple[float, str, int]]:
        return [r for r in self.requests if r[1].startswith("/v5/")]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        at = time.time()
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.requests.append((at, request.path, exc.status))
            raise
        self.requests.append((at, request.path, response.status))
        return response


@pytest.fixture
async def venue() -> AsyncIterator[tuple[VenueServer, Recorder]]:
    """The local venue with a small Bybit IP window and a ``BAN_S`` ban; one account (``KEY``)."""
    server = VenueServer(
        accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=Decimal("100000"))],
        config=VenueConfig(bybit_ip_limits=IP_LIMITS),
    )
    recorder = Recorder()
    server.app.middlewares.insert(0, recorder.middleware)  # outermost: sees the venue's 403s too
    async with server:
        yield server, recorder


@pytest.fixture
async def adapter(
    venue: tuple[VenueServer, Recorder], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[BybitAdapter, list[MarketEvent | UserEvent]]]:
    monkeypatch.setattr("engine.adapters.bybit.rest.IP_BAN_S", BAN_S)
    events: list[MarketEvent | UserEvent] = []
    settings = settings_for(
        venue[0],
        Venue.BYBIT,
        ws_public_url="ws://127.0.0.1:9/v5/public/linear",  # never opened: REST only
        ws_private_url="ws://127.0.0.1:9/v5/private",
        symbols=("BTCUSDT",),
        request_timeout_s=3.0,
    )
    bybit = BybitAdapter(settings, events.append)
    try:
        yield bybit, events
    finally:
        await bybit.close()


def _banned_alerts(events: list[Any]) -> list[VenueStatus]:
    return [e for e in events if isinstance(e, VenueStatus) and e.status == "banned"]


async def _spend_window(bybit: BybitAdapter, recorder: Recorder) -> None:
    """The adapter's own calls use up the venue's IP window (each one served)."""
    for _ in range(LIMIT):
        assert "BTCUSDT" in await bybit.instruments()
    assert [r[2] for r in recorder.bybit()] == [200] * LIMIT


async def test_ip_limit_when_venue_answers_403_then_banned_raised_and_alert_emitted(
    venue: tuple[VenueServer, Recorder], adapter: tuple[BybitAdapter, list[Any]]
) -> None:
    server, recorder = venue
    bybit, events = adapter
    await _spend_window(bybit, recorder)
    before_ms = int(time.time() * 1000)

    with pytest.raises(Banned) as raised:
        await bybit.instruments()

    assert raised.value.code == 403
    assert raised.value.venue == "bybit"
    assert before_ms + BAN_S * 1000 * 0.9 <= raised.value.until_ms <= before_ms + BAN_S * 1000 + 500
    assert 0 < raised.value.retry_after_s <= BAN_S
    # one request over the limit, answered 403 by the venue and not retried into the ban
    assert [r[2] for r in recorder.bybit()] == [200] * LIMIT + [403]
    assert server.ctx.counters["bybit.rest.ip_bans"] == 1
    alerts = _banned_alerts(events)
    assert len(alerts) == 1
    assert alerts[0].venue is Venue.BYBIT and alerts[0].stream == "rest"
    stats = bybit.stats()
    assert stats["ratelimit_bans"] == 1
    assert bybit.limiter.banned


async def test_ip_limit_when_banned_then_no_request_sent_until_ban_ends_then_resumes(
    venue: tuple[VenueServer, Recorder], adapter: tuple[BybitAdapter, list[Any]]
) -> None:
    server, recorder = venue
    bybit, events = adapter
    await _spend_window(bybit, recorder)
    with pytest.raises(Banned) as raised:
        await bybit.instruments()
    ban_ends = raised.value.until_ms / 1000.0
    banned_at = recorder.bybit()[-1][0]
    assert recorder.bybit()[-1][2] == 403

    # during the ban: a public and a signed call both wait in the limiter, nothing reaches the venue
    seen = len(recorder.requests)
    instruments = asyncio.create_task(bybit.instruments())
    orders = asyncio.create_task(bybit.open_orders("BTCUSDT"))
    while time.time() < ban_ends - 0.15:
        await asyncio.sleep(0.05)
        assert not instruments.done() and not orders.done()
        assert len(recorder.requests) == seen, recorder.requests
    assert bybit.limiter.banned

    # after it: both calls go out once each and the venue, its own ban over, serves them
    async with asyncio.timeout(5.0):
        got_instruments, got_orders = await asyncio.gather(instruments, orders)
    assert "BTCUSDT" in got_instruments
    assert got_orders == []
    assert recorder.during(banned_at + 1e-6, ban_ends) == []
    after = recorder.bybit()[LIMIT + 1 :]
    assert sorted(path for _, path, _ in after) == ["/v5/market/instruments-info", "/v5/order/realtime"]
    assert all(status == 200 and at >= ban_ends for at, _, status in after)
    assert server.ctx.counters["bybit.rest.ip_bans"] == 1
    assert len(_banned_alerts(events)) == 1  # one ban, one alert
    assert not bybit.limiter.banned
