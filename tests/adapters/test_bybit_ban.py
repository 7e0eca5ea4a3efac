"""Bybit's IP-limit ban (HTTP 403) through the adapter's REST layer: real pybit over real sockets.

The local venue (``engine.venue``) implements Bybit's per-UID, per-endpoint budgets (retCode 10006) but
not the IP limit (600 requests / 5 s answered with HTTP 403), so these tests run the adapter against a
tiny aiohttp server that plays Bybit's REST paths and bans the IP on demand: every request while the
ban lasts gets ``403``. The server counts and stamps every request it receives, which is how the tests
prove that nothing reached the venue during the ban. The adapter's ban length (``IP_BAN_S``, 10 min in
production) is shortened to ``BAN_S`` for the tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.adapters.base import AdapterSettings
from engine.adapters.bybit import BybitAdapter
from engine.errors import Banned
from engine.types import MarketEvent, UserEvent, Venue, VenueStatus

BAN_S = 1.0
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bybit"
INSTRUMENTS = json.loads((FIXTURES / "rest_instruments_info_linear_docs.json").read_text())


@dataclass
class FakeBybit:
    """Bybit's REST paths on a free loopback port; ``ban(seconds)`` makes every request a 403."""

    banned_until: float = 0.0
    requests: list[tuple[float, str, int]] = field(default_factory=list)  # (wall time, path, status)
    url: str = ""

    def ban(self, seconds: float) -> None:
        self.banned_until = time.time() + seconds

    def during(self, start: float, end: float) -> list[tuple[float, str, int]]:
        return [r for r in self.requests if start <= r[0] < end]

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        if now < self.banned_until:
            self.requests.append((now, request.path, 403))
            # what Bybit's edge answers when the IP limit is broken: no JSON envelope
            return web.Response(status=403, text="403 Forbidden: access too frequent")
        self.requests.append((now, request.path, 200))
        if request.path == "/v5/market/instruments-info":
            return web.json_response(INSTRUMENTS)
        if request.path == "/v5/order/realtime":
            result: dict[str, object] = {"category": "linear", "list": [], "nextPageCursor": ""}
            return web.json_response(
                {"retCode": 0, "retMsg": "OK", "result": result, "time": int(now * 1000)}
            )
        return web.json_response({"retCode": 10001, "retMsg": f"unexpected path {request.path}"})


@pytest.fixture
async def fake_bybit() -> AsyncIterator[FakeBybit]:
    fake = FakeBybit()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def adapter(
    fake_bybit: FakeBybit, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[BybitAdapter, list[MarketEvent | UserEvent]]]:
    monkeypatch.setattr("engine.adapters.bybit.rest.IP_BAN_S", BAN_S)
    events: list[MarketEvent | UserEvent] = []
    settings = AdapterSettings(
        venue=Venue.BYBIT,
        rest_url=fake_bybit.url,
        ws_public_url="ws://127.0.0.1:9/v5/public/linear",  # never opened: REST only
        ws_private_url="ws://127.0.0.1:9/v5/private",
        api_key="ban-test-key",
        api_secret="ban-test-secret",
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


async def test_ip_limit_when_venue_answers_403_then_banned_raised_and_alert_emitted(
    fake_bybit: FakeBybit, adapter: tuple[BybitAdapter, list[Any]]
) -> None:
    bybit, events = adapter
    fake_bybit.ban(BAN_S)
    before_ms = int(time.time() * 1000)

    with pytest.raises(Banned) as raised:
        await bybit.instruments()

    assert raised.value.code == 403
    assert raised.value.venue == "bybit"
    assert before_ms + BAN_S * 1000 * 0.9 <= raised.value.until_ms <= before_ms + BAN_S * 1000 + 500
    assert 0 < raised.value.retry_after_s <= BAN_S
    assert [r[2] for r in fake_bybit.requests] == [403]  # one request, not retried into the ban
    alerts = _banned_alerts(events)
    assert len(alerts) == 1
    assert alerts[0].venue is Venue.BYBIT and alerts[0].stream == "rest"
    stats = bybit.stats()
    assert stats["ratelimit_bans"] == 1
    assert bybit.limiter.banned


async def test_ip_limit_when_banned_then_no_request_sent_until_ban_ends_then_resumes(
    fake_bybit: FakeBybit, adapter: tuple[BybitAdapter, list[Any]]
) -> None:
    bybit, events = adapter
    fake_bybit.ban(BAN_S)
    with pytest.raises(Banned) as raised:
        await bybit.instruments()
    ban_ends = raised.value.until_ms / 1000.0
    banned_at = fake_bybit.requests[0][0]

    # during the ban: a public and a signed call both wait in the limiter, nothing reaches the venue
    instruments = asyncio.create_task(bybit.instruments())
    orders = asyncio.create_task(bybit.open_orders("BTCUSDT"))
    while time.time() < ban_ends - 0.15:
        await asyncio.sleep(0.05)
        assert not instruments.done() and not orders.done()
        assert len(fake_bybit.requests) == 1, fake_bybit.requests
    assert bybit.limiter.banned

    # after it: both calls go out once each and succeed
    async with asyncio.timeout(5.0):
        got_instruments, got_orders = await asyncio.gather(instruments, orders)
    assert "BTCUSDT" in got_instruments
    assert got_orders == []
    assert fake_bybit.during(banned_at + 1e-6, ban_ends) == []
    after = fake_bybit.requests[1:]
    assert sorted(path for _, path, _ in after) == ["/v5/market/instruments-info", "/v5/order/realtime"]
    assert all(status == 200 and at >= ban_ends for at, _, status in after)
    assert len(_banned_alerts(events)) == 1  # one ban, one alert
    assert not bybit.limiter.banned
