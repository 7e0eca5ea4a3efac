"""Bybit's HTTP IP limit on the local venue: more than N requests from one IP within a rolling window
answers HTTP 403 ("access too frequent", no JSON envelope) and keeps the IP banned for the ban's
length (production: 600 requests / 5 s, then at least 10 minutes; shortened here). Driven over
loopback by raw HTTP and by the real pybit client; the venue clock is moved by hand
(``WallClock.tick``) to let windows roll and bans expire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from pybit.exceptions import FailedRequestError

from engine.venue.bybit.auth import rest_signature
from engine.venue.exchange import Exchange
from engine.venue.ratelimit import BybitIpLimiter, BybitIpLimits
from engine.venue.server import VenueConfig
from tests.venue.bybit_fixtures import KEY, SECRET, BybitVenue, WallClock, clock, serve

__all__ = ["clock"]

LIMIT = 5
WINDOW_MS = 60_000  # long enough that the wall time a test takes never rolls it by itself
BAN_MS = 30_000
IP_LIMITS = BybitIpLimits(requests_per_window=LIMIT, window_ms=WINDOW_MS, ban_ms=BAN_MS)
T0 = 1_700_000_000_000


@pytest.fixture
async def venue(make_exchange: Callable[..., Exchange], clock: WallClock) -> AsyncIterator[BybitVenue]:
    """The scripted core behind the Bybit front-end with a small IP window (5 requests a minute,
    30 s ban); one account (``alice``)."""
    core = make_exchange(scripted=True)
    core.add_account(api_key=KEY, api_secret=SECRET, deposit=Decimal("100000"))
    async with serve(core, clock, ip_limits=IP_LIMITS) as state:
        yield state


async def get(venue: BybitVenue, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """One raw GET: (HTTP status, content type, body text)."""
    async with aiohttp.ClientSession() as http, http.get(venue.base_url + path, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.text()


def signed_headers(venue: BybitVenue, payload: str, *, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time() * 1000) + venue.ctx.faults.clock_offset_ms)
    return {
        "X-BAPI-API-KEY": KEY,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": rest_signature(
            secret, timestamp=ts, api_key=KEY, recv_window="5000", payload=payload.encode()
        ),
    }


def assert_ip_banned(reply: tuple[int, str, str]) -> None:
    status, content_type, text = reply
    assert status == 403, reply
    assert content_type == "text/html" and "access too frequent" in text
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)  # the edge's page, not the {"retCode": ...} envelope


async def call(fn: Any, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = await asyncio.to_thread(fn, **kwargs)
    return result


# ---- the limiter as data ------------------------------------------------------------------------------


def test_ip_limits_when_defaults_then_bybit_production_numbers() -> None:
    lim = BybitIpLimits()
    assert (lim.requests_per_window, lim.window_ms, lim.ban_ms) == (600, 5_000, 600_000)
    assert VenueConfig().bybit_ip_limits == lim
    with pytest.raises(ValueError, match="ban_ms"):
        BybitIpLimits(ban_ms=0)


def test_ip_limiter_when_over_the_rolling_window_then_banned_for_ban_ms_and_other_ips_unaffected() -> None:
    lim = BybitIpLimiter(BybitIpLimits(requests_per_window=3, window_ms=5_000, ban_ms=10_000))
    assert [lim.check("a", T0 + i).used for i in range(3)] == [1, 2, 3]
    over = lim.check("a", T0 + 4_999)  # the fourth within 5 s
    assert (over.allowed, over.ban_started, over.banned_until_ms) == (False, True, T0 + 4_999 + 10_000)
    assert lim.check("b", T0 + 5_000).allowed  # per IP
    during = lim.check("a", T0 + 14_998)
    assert (during.allowed, during.ban_started, during.banned_until_ms) == (False, False, T0 + 14_999)
    assert lim.banned_until("a", T0 + 14_998) == T0 + 14_999
    # the ban ends on time, and neither the breaking request nor the ones during the ban count after it
    assert lim.banned_until("a", T0 + 14_999) == 0
    assert [lim.check("a", T0 + 14_999).allowed for _ in range(3)] == [True, True, True]
    assert not lim.check("a", T0 + 15_000).allowed


def test_ip_limiter_when_requests_age_out_then_the_window_rolls_not_resets() -> None:
    lim = BybitIpLimiter(BybitIpLimits(requests_per_window=3, window_ms=5_000, ban_ms=10_000))
    assert lim.check("a", T0).allowed and lim.check("a", T0).allowed
    assert lim.check("a", T0 + 4_000).allowed  # 3 within 5 s
    assert lim.check("a", T0 + 5_000).allowed  # the two at T0 are out of (T0, T0 + 5000]: 2 in the window
    assert lim.used("a", T0 + 5_000) == 2
    assert lim.check("a", T0 + 5_001).allowed  # 3
    assert not lim.check("a", T0 + 8_999).allowed  # 4 within (T0 + 3999, T0 + 8999]


# ---- over the wire ---------------------------------------------------------------------------------------


async def test_ip_limit_when_window_exceeded_then_403_for_every_request_until_the_ban_ends(
    venue: BybitVenue, clock: WallClock
) -> None:
    # within the limit: public, signed and even unknown paths are served, and all of them count
    for _ in range(3):
        status, _, text = await get(venue, "/v5/market/time")
        assert status == 200 and orjson.loads(text)["retCode"] == 0
    status, _, text = await get(venue, "/v5/user/query-api", signed_headers(venue, ""))
    assert status == 200 and orjson.loads(text)["retCode"] == 0
    assert (await get(venue, "/v5/market/no-such-path"))[0] == 404
    served = venue.ctx.counters["bybit.rest.requests"]
    assert served == 4 and "bybit.rest.ip_bans" not in venue.ctx.counters

    # the sixth request in the window breaks the limit: 403, and the IP is banned
    assert_ip_banned(await get(venue, "/v5/market/tickers?category=linear&symbol=BTCUSDT"))
    assert venue.ctx.counters["bybit.rest.ip_bans"] == 1

    # a banned IP is refused before anything else: authentication (a wrong signature would be 10004),
    # the per-UID limits, routing
    assert_ip_banned(await get(venue, "/v5/market/time"))
    assert_ip_banned(await get(venue, "/v5/user/query-api", signed_headers(venue, "")))
    assert_ip_banned(await get(venue, "/v5/user/query-api", signed_headers(venue, "", secret="wrong")))
    assert_ip_banned(await get(venue, "/v5/market/no-such-path"))
    clock.tick(BAN_MS - 1_000)
    assert_ip_banned(await get(venue, "/v5/market/time"))
    assert venue.ctx.counters["bybit.rest.requests"] == served  # nothing reached a handler
    assert venue.ctx.counters["bybit.rest.http_403"] == 6
    assert venue.ctx.counters["bybit.rest.ip_bans"] == 1  # one ban, not extended by the requests in it

    # after the ban the IP starts over with an empty window: LIMIT more, then banned again
    clock.tick(1_001)
    for _ in range(LIMIT):
        assert (await get(venue, "/v5/market/time"))[0] == 200
    assert_ip_banned(await get(venue, "/v5/market/time"))
    assert venue.ctx.counters["bybit.rest.ip_bans"] == 2


async def test_ip_limit_when_old_requests_leave_the_rolling_window_then_they_stop_counting(
    venue: BybitVenue, clock: WallClock
) -> None:
    for _ in range(3):
        assert (await get(venue, "/v5/market/time"))[0] == 200
    clock.tick(WINDOW_MS // 2)
    for _ in range(2):
        assert (await get(venue, "/v5/market/time"))[0] == 200
    clock.tick(WINDOW_MS // 2 + 1)  # the first three are out of the window, the last two are not
    for _ in range(3):
        assert (await get(venue, "/v5/market/time"))[0] == 200
    assert_ip_banned(await get(venue, "/v5/market/time"))


async def test_ip_limit_when_banned_then_pybit_raises_failed_request_error_403(venue: BybitVenue) -> None:
    http = venue.http()
    for _ in range(LIMIT - 1):
        assert (await call(http.get_server_time))["retCode"] == 0
    assert (await call(http.get_api_key_information))["retCode"] == 0
    with pytest.raises(FailedRequestError) as exc:
        await call(http.get_server_time)
    assert exc.value.status_code == 403
    assert "IP rate limit" in exc.value.message  # pybit's reading of an HTTP 403
    # signed calls too, and pybit does not retry into the ban
    before = venue.ctx.counters["bybit.rest.http_403"]
    with pytest.raises(FailedRequestError) as signed_exc:
        await call(
            http.place_order, category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.01"
        )
    assert signed_exc.value.status_code == 403
    assert venue.ctx.counters["bybit.rest.http_403"] == before + 1
    assert venue.ctx.counters["bybit.rest.requests"] == LIMIT
    assert list(venue.hub.remembered(KEY)) == []  # the order never reached the exchange
