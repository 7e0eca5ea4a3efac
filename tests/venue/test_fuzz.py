"""A few thousand random requests (paths, methods, params, bodies, signatures) against the venue:
every one gets an answer that is not a server error, and the venue still serves a ping and a valid
order afterwards."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from urllib.parse import quote

import aiohttp
import pytest

from engine.venue.ratelimit import BinanceLimits
from engine.venue.server import VenueServer
from tests.venue.conftest import VENUE_KEY, VENUE_SECRET

PATHS = [
    "/fapi/v1/order",
    "/fapi/v1/algoOrder",
    "/fapi/v1/batchOrders",
    "/fapi/v1/depth",
    "/fapi/v1/klines",
    "/fapi/v1/leverage",
    "/fapi/v1/marginType",
    "/fapi/v1/positionSide/dual",
    "/fapi/v1/listenKey",
    "/fapi/v1/allOpenOrders",
    "/fapi/v1/openOrders",
    "/fapi/v2/account",
    "/fapi/v3/positionRisk",
    "/fapi/v1/exchangeInfo",
    "/fapi/v1/premiumIndex",
    "/fapi/v1/nowhere",
    "/api/v3/ping",
    "/fapi/v1/userTrades",
]
KEYS = [
    "symbol", "side", "type", "quantity", "price", "timeInForce", "reduceOnly", "positionSide",
    "newClientOrderId", "orderId", "origClientOrderId", "limit", "interval", "leverage", "marginType",
    "dualSidePosition", "batchOrders", "algoType", "triggerPrice", "workingType", "closePosition",
    "newOrderRespType", "listenKey", "recvWindow", "algoId", "startTime",
]  # fmt: skip
VALUES = [
    "BTCUSDT", "ethusdt", "NOPE", "BUY", "SELL", "LIMIT", "MARKET", "STOP_MARKET", "GTC", "GTX", "FOK",
    "true", "false", "LONG", "SHORT", "BOTH", "0", "-1", "0.001", "0.0105", "1e9", "NaN", "Infinity",
    "60000.0", "59999.95", "99999999999999999999999", "", " ", "%00", "\u00e9", "[1,2", '[{"symbol":1}]',
    '[{"symbol":"BTCUSDT","side":"BUY","type":"MARKET","quantity":"0.01"}]', "1m", "7", "1000", "x" * 300,
    "CONDITIONAL", "MARK_PRICE", "ISOLATED", "CROSSED", "RESULT",
]  # fmt: skip


def sign(query: str) -> str:
    return hmac.new(VENUE_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()


def random_request(rng: random.Random) -> tuple[str, str, str, bytes, dict[str, str]]:
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
    path = rng.choice(PATHS) if rng.random() < 0.9 else "/" + "".join(rng.choice("abc/%.") for _ in range(8))
    params = [(rng.choice(KEYS), rng.choice(VALUES)) for _ in range(rng.randint(0, 8))]
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
    roll = rng.random()
    if roll < 0.4:  # properly signed
        query = (
            f"{query}&timestamp={int(time.time() * 1000)}"
            if query
            else f"timestamp={int(time.time() * 1000)}"
        )
        query += "&signature=" + sign(query)
    elif roll < 0.6:  # wrong or junk signature
        query += "&timestamp=" + rng.choice(["1", "abc", str(int(time.time() * 1000))])
        query += "&signature=" + rng.choice(["00", "zz", sign("other")])
    headers = {}
    if rng.random() < 0.8:
        headers["X-MBX-APIKEY"] = (
            VENUE_KEY if rng.random() < 0.8 else rng.choice(["", "nobody", "\u00e9"[0:0] + "k"])
        )
    body = b""
    if method != "GET" and rng.random() < 0.5:
        body = rng.choice([query.encode(), rng.randbytes(rng.randint(1, 64)), b"{}", b"a=%ZZ&b=\xff"])
        if rng.random() < 0.5:
            query = ""
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return method, path, query, body, headers


# limits high enough that the fuzzer is not simply banned (bans are tested in test_server.py)
@pytest.mark.parametrize(
    "venue",
    [{"limits": BinanceLimits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_minute=10**9)}],
    indirect=True,
)
async def test_random_requests_when_thrown_at_the_venue_then_it_answers_each_and_keeps_serving(
    venue: VenueServer,
) -> None:
    rng = random.Random(20240601)
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(3000):
            method, path, query, body, headers = random_request(rng)
            url = venue.base_url + path + ("?" + query if query else "")
            async with http.request(
                method, aiohttp.client.URL(url, encoded=True), data=body, headers=headers
            ) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
        assert not any(s >= 500 for s in statuses), statuses
        assert venue.ctx.counters.get("binance.rest.internal_error", 0) == 0
        async with http.get(venue.base_url + "/fapi/v1/ping") as resp:
            assert resp.status == 200
        ts = int(time.time() * 1000)
        form = f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.010&timestamp={ts}"
        async with http.post(
            venue.base_url + "/fapi/v1/order",
            data=f"{form}&signature={sign(form)}",
            headers={"X-MBX-APIKEY": VENUE_KEY, "Content-Type": "application/x-www-form-urlencoded"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["status"] == "NEW"
