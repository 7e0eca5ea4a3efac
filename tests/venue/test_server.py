"""The venue server: rate limits, faults, control API, config and the ``engine venue`` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from engine.errors import ConfigError
from engine.venue.bybit import BYBIT_HUB_KEY
from engine.venue.bybit.auth import rest_signature
from engine.venue.faults import FaultUpdateError, apply_fault_update, take_http_fault, take_ws_skip
from engine.venue.model import FaultPlan
from engine.venue.ratelimit import (
    BinanceLimiter,
    BinanceLimits,
    BybitIpLimits,
    PerSecondLimiter,
    WindowCounter,
)
from engine.venue.server import VenueServer, load_venue_config, parse_account
from tests.venue.conftest import VENUE_KEY, VENUE_SECRET

MINUTE = 60_000
T0 = 1_700_000_040_000  # a minute boundary


# ---- rate limits as data ----------------------------------------------------------------------------


def test_window_counter_when_window_rolls_then_usage_restarts() -> None:
    c = WindowCounter(MINUTE)
    assert c.add("ip", 5, T0) == 5
    assert c.add("ip", 5, T0 + MINUTE - 1) == 10
    assert c.add("ip", 1, T0 + MINUTE) == 1
    assert c.reset_at(T0 + 10) == T0 + MINUTE


def test_binance_limiter_when_over_budget_then_429_then_growing_418_bans() -> None:
    lim = BinanceLimiter(BinanceLimits(weight_per_minute=3, violations_before_ban=1, ban_base_ms=1000))
    assert [lim.check_request("ip", 1, T0).status for _ in range(3)] == [0, 0, 0]
    first = lim.check_request("ip", 1, T0)
    assert (first.status, first.code, first.retry_after_s) == (429, -1003, 60)
    ban = lim.check_request("ip", 1, T0 + 1)
    assert ban.status == 418 and f"banned until {T0 + 1 + 1000}" in ban.msg
    assert lim.check_request("ip", 1, T0 + 500).status == 418
    assert lim.check_request("other-ip", 1, T0 + 500).status == 0
    # after the ban, a repeat offender is banned for twice as long
    assert lim.check_request("ip", 1, T0 + 1002).status == 429
    second = lim.check_request("ip", 1, T0 + 1003)
    assert second.status == 418 and f"banned until {T0 + 1003 + 2000}" in second.msg


def test_binance_order_counter_when_over_10s_limit_then_minus_1015() -> None:
    lim = BinanceLimiter(BinanceLimits(orders_per_10s=2))
    assert lim.check_orders("acct", 1, 1, T0).order_count_10s == 1
    assert lim.check_orders("acct", 1, 1, T0).allowed
    over = lim.check_orders("acct", 1, 1, T0)
    assert (over.status, over.code) == (429, -1015)
    assert lim.check_orders("acct", 1, 1, T0 + 10_000).allowed


def test_per_second_limiter_when_bybit_endpoint_over_budget_then_refused_with_reset_headers() -> None:
    lim = PerSecondLimiter(limits={"order/create": 2})
    assert lim.check("uid", "order/create", T0).headers()["X-Bapi-Limit-Status"] == "1"
    assert lim.check("uid", "order/create", T0 + 10).allowed
    refused = lim.check("uid", "order/create", T0 + 20)
    assert not refused.allowed
    assert refused.headers() == {
        "X-Bapi-Limit": "2",
        "X-Bapi-Limit-Status": "0",
        "X-Bapi-Limit-Reset-Timestamp": str(T0 + 1000),
    }
    assert lim.check("uid", "order/cancel", T0 + 20).allowed  # per endpoint
    assert lim.check("uid", "order/create", T0 + 1000).allowed


# ---- faults --------------------------------------------------------------------------------------------


def test_fault_update_when_names_or_types_are_wrong_then_refused_whole() -> None:
    plan = FaultPlan()
    with pytest.raises(FaultUpdateError, match="unknown fault 'http_500'"):
        apply_fault_update(plan, {"http_5xx": 1, "http_500": 1})
    assert plan.http_5xx == 0  # all or nothing
    for bad in ({"ws_stall": 1}, {"http_5xx": -1}, {"http_5xx": True}, {"timeout_s": "1"}):
        with pytest.raises(FaultUpdateError):
            apply_fault_update(plan, bad)
    apply_fault_update(plan, {"clock_offset_ms": -5000, "ws_stall": True, "timeout_s": 2})
    assert (plan.clock_offset_ms, plan.ws_stall, plan.timeout_s) == (-5000, True, 2.0)


def test_fault_counters_when_taken_then_consumed_in_order(venue_ctx: Any) -> None:
    ctx = venue_ctx
    apply_fault_update(ctx.faults, {"http_5xx": 1, "http_timeout": 1, "ws_skip_seq": 1})
    assert [take_http_fault(ctx) for _ in range(3)] == ["5xx", "timeout", None]
    assert [take_ws_skip(ctx), take_ws_skip(ctx)] == [True, False]
    assert ctx.counters["faults.http_5xx"] == 1


@pytest.fixture
def venue_ctx() -> Any:
    from engine.venue.context import VenueContext
    from engine.venue.exchange import Exchange

    return VenueContext(core=Exchange())


# ---- over the wire ------------------------------------------------------------------------------------


async def make_client(v: VenueServer) -> AsyncClient:
    cls = type(
        "LocalAsyncClient",
        (AsyncClient,),
        {"API_URL": v.base_url + "/api", "FUTURES_URL": v.base_url + "/fapi"},
    )
    return await cls.create(api_key=VENUE_KEY, api_secret=VENUE_SECRET)


@pytest.mark.parametrize(
    "venue", [{"limits": BinanceLimits(weight_per_minute=40, violations_before_ban=2)}], indirect=True
)
async def test_client_when_it_keeps_polling_past_the_limit_then_429_then_418_ban(venue: VenueServer) -> None:
    client = await make_client(venue)  # ping + time: 2 weight
    statuses: list[int] = []
    try:
        for _ in range(60):
            try:
                await client.futures_time()
                statuses.append(200)
            except BinanceAPIException as exc:
                statuses.append(exc.status_code)
                assert exc.code == -1003
                if exc.status_code == 418:
                    assert "banned until" in exc.message
                    break
    finally:
        await client.close_connection()
    assert statuses.count(200) == 38 and statuses[38:] == [429, 429, 418]
    async with aiohttp.ClientSession() as http, http.get(venue.base_url + "/fapi/v1/ping") as resp:
        assert resp.status == 418 and int(resp.headers["Retry-After"]) >= 1


async def test_every_response_when_served_then_carries_weight_and_order_count_headers(
    venue: VenueServer,
) -> None:
    client = await make_client(venue)
    try:
        await client.futures_time()
        headers = client.response.headers
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 3
        await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
        headers = client.response.headers
        assert headers["X-MBX-ORDER-COUNT-10S"] == "1" and headers["X-MBX-ORDER-COUNT-1M"] == "1"
    finally:
        await client.close_connection()


async def test_rest_faults_when_set_then_503_timeout_and_applied_but_unknown_outcome(
    venue: VenueServer,
) -> None:
    client = await make_client(venue)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                venue.base_url + "/_venue/faults", json={"http_5xx": 1, "http_5xx_after_apply": 1}
            ) as resp:
                assert resp.status == 200
            with pytest.raises(BinanceAPIException) as info:
                await client.futures_time()
            assert (info.value.status_code, info.value.code) == (503, -1001)
            with pytest.raises(BinanceAPIException) as info:
                await client.futures_create_order(
                    symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="maybe"
                )
            assert info.value.status_code == 503
            applied = await client.futures_get_order(symbol="BTCUSDT", origClientOrderId="maybe")
            assert applied["status"] == "FILLED"  # the order was placed: reconcile, never assume
            async with http.post(
                venue.base_url + "/_venue/faults", json={"http_timeout": 1, "timeout_s": 0.2}
            ) as resp:
                assert resp.status == 200
            # a raw connection: aiohttp's client would silently retry an idempotent GET
            reader, writer = await asyncio.open_connection("127.0.0.1", venue.port)
            writer.write(b"GET /fapi/v1/time HTTP/1.1\r\nHost: venue\r\n\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(1000), 5) == b""  # hung, then dropped unanswered
            writer.close()
            async with http.get(venue.base_url + "/fapi/v1/time") as resp:
                assert resp.status == 200
    finally:
        await client.close_connection()


async def test_control_api_when_driven_then_state_accounts_faults_and_advance(venue: VenueServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(venue.base_url + "/_venue/accounts", json={"usdt": "2500"}) as resp:
            created = await resp.json()
        assert resp.status == 200 and created["usdt"] == "2500" and len(created["secret"]) == 64
        async with http.post(
            venue.base_url + "/_venue/accounts", json={"key": "k2", "secret": "s2", "usdt": 1}
        ) as resp:
            assert "secret" not in await resp.json()  # a given secret is never echoed
        async with http.post(venue.base_url + "/_venue/accounts", json={"usdt": 1.5}) as resp:
            assert resp.status == 400 and "float" in (await resp.json())["error"]
        async with http.post(venue.base_url + "/_venue/faults", json={"no_such_fault": 1}) as resp:
            assert resp.status == 400 and "no_such_fault" in (await resp.json())["error"]
        async with http.post(venue.base_url + "/_venue/faults", data=b"[1, 2") as resp:
            assert resp.status == 400
        async with http.post(venue.base_url + "/_venue/faults", json={"ws_stall": True}) as resp:
            assert (await resp.json())["faults"]["ws_stall"] is True
        async with http.post(venue.base_url + "/_venue/reset-faults") as resp:
            assert (await resp.json())["faults"]["ws_stall"] is False
        before = venue.core.now_ms()
        async with http.post(venue.base_url + "/_venue/advance", json={"ms": 2000, "steps": 4}) as resp:
            assert resp.status == 200
        assert venue.core.now_ms() - before >= 2000
        async with http.post(venue.base_url + "/_venue/advance", json={"ms": -1}) as resp:
            assert resp.status == 400
        async with http.get(venue.base_url + "/_venue/state") as resp:
            state = await resp.json()
    keys = [a["key"] for a in state["accounts"]]
    assert keys == [VENUE_KEY, created["key"], "k2"]
    assert "secret" not in json.dumps(state["accounts"]) and VENUE_SECRET not in json.dumps(state)
    assert state["counters"]["faults.ws_drop"] if "faults.ws_drop" in state["counters"] else True


async def test_ws_drop_when_requested_then_every_connection_closes(venue: VenueServer) -> None:
    async with (
        websockets.connect(venue.ws_url + "/public/ws/btcusdt@depth") as a,
        websockets.connect(venue.ws_url + "/market/ws/btcusdt@aggTrade") as b,
    ):
        async with aiohttp.ClientSession() as http:
            async with http.post(venue.base_url + "/_venue/faults", json={"ws_drop": 1}) as resp:
                assert (await resp.json())["dropped_connections"] == 2
        for ws in (a, b):
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(1000):
                    await asyncio.wait_for(ws.recv(), 5)


async def _bybit_signed_post(venue: VenueServer, path: str, body: dict[str, object]) -> dict[str, Any]:
    payload = json.dumps(body)
    ts = str(venue.ctx.now_ms())
    headers = {
        "X-BAPI-API-KEY": VENUE_KEY,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": rest_signature(
            VENUE_SECRET, timestamp=ts, api_key=VENUE_KEY, recv_window="5000", payload=payload.encode()
        ),
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(venue.base_url + path, data=payload.encode(), headers=headers) as resp,
    ):
        reply: dict[str, Any] = await resp.json()
        reply["_limit"] = resp.headers.get("X-Bapi-Limit")
        return reply


@pytest.mark.parametrize("venue", [{"bybit_rate_limits": {"/v5/order/create": 2}}], indirect=True)
async def test_configured_bybit_limit_when_exceeded_through_the_server_then_retcode_10006(
    venue: VenueServer,
) -> None:
    mark = venue.core.mark("BTCUSDT").mark_price
    price = (mark * Decimal("0.98")).quantize(Decimal("0.1"))
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
             "qty": "0.010", "price": str(price)}  # fmt: skip
    for _attempt in range(3):  # the four calls must land in one one-second window: start at its top
        await asyncio.sleep((1000 - venue.ctx.now_ms() % 1000) / 1000 + 0.005)
        replies = [await _bybit_signed_post(venue, "/v5/order/create", order) for _ in range(4)]
        codes = [r["retCode"] for r in replies]
        if codes == [0, 0, 10006, 10006]:
            break
    assert codes == [0, 0, 10006, 10006], replies
    limited = next(r for r in replies if r["retCode"] == 10006)
    assert limited["retMsg"] == "Too many visits!" and limited["_limit"] == "2"
    # an endpoint the config does not name keeps its default budget (10/s), not the override's
    cancel = await _bybit_signed_post(
        venue, "/v5/order/cancel-all", {"category": "linear", "symbol": "BTCUSDT"}
    )
    assert cancel["retCode"] == 0 and cancel["_limit"] == "10"


@pytest.mark.parametrize(
    "venue",
    [{"bybit_ip_limits": BybitIpLimits(requests_per_window=3, window_ms=60_000, ban_ms=60_000)}],
    indirect=True,
)
async def test_configured_bybit_ip_limit_when_exceeded_through_the_server_then_403_binance_unaffected(
    venue: VenueServer,
) -> None:
    async def status(http: aiohttp.ClientSession, path: str) -> int:
        async with http.get(venue.base_url + path) as resp:
            await resp.read()
            return resp.status

    async with aiohttp.ClientSession() as http:
        # Binance traffic is not Bybit's: it never counts against the Bybit IP window
        assert [await status(http, "/fapi/v1/time") for _ in range(10)] == [200] * 10
        codes = [await status(http, "/v5/market/time") for _ in range(4)]
        assert codes == [200, 200, 200, 403]
        assert await status(http, "/v5/market/time") == 403
        assert await status(http, "/fapi/v1/time") == 200  # nor does a Bybit ban touch Binance
        async with http.get(venue.base_url + "/_venue/state") as resp:
            counters = (await resp.json())["counters"]
        assert counters["bybit.rest.ip_bans"] == 1 and counters["bybit.rest.http_403"] == 2
        # the ban lasts ban_ms of venue time: the control API's clock ends it
        async with http.post(venue.base_url + "/_venue/advance", json={"ms": 59_000}) as resp:
            assert resp.status == 200
        assert await status(http, "/v5/market/time") == 403
        async with http.post(venue.base_url + "/_venue/advance", json={"ms": 1_000}) as resp:
            assert resp.status == 200
        assert await status(http, "/v5/market/time") == 200


@pytest.mark.parametrize("venue", [{"ws_queue_limit": 37}], indirect=True)
async def test_configured_ws_queue_limit_when_server_built_then_bybit_streams_use_it(
    venue: VenueServer,
) -> None:
    assert venue.app[BYBIT_HUB_KEY].queue_limit == 37


# ---- config and command -------------------------------------------------------------------------------


def test_parse_account_when_well_formed_then_parsed_else_clear_error() -> None:
    acct = parse_account("key:sec:ret:1000.5")
    assert (acct.key, acct.secret, str(acct.usdt)) == ("key", "sec:ret", "1000.5")
    assert "sec:ret" not in repr(acct)
    for bad in ("key:1000", "key::100", ":s:1", "k:s:lots", "k:s:-1"):
        with pytest.raises(ValueError, match="--account"):
            parse_account(bad)


def test_venue_config_when_valid_then_loaded_and_errors_name_the_key(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("VENUE_TEST_SECRET", "from-env")
    good = tmp_path / "venue.toml"
    good.write_text(
        "[venue]\nport = 0\nseed = 3\ntick_ms = 25\nfunding_interval_s = 60\n"
        '[[venue.accounts]]\nkey = "a"\nsecret_env = "VENUE_TEST_SECRET"\nusdt = "500"\n'
        "[venue.faults]\nhttp_5xx = 2\n[venue.rate_limits]\nweight_per_minute = 100\n"
        '[venue.bybit_rate_limits]\n"/v5/order/create" = 3\n'
        "[venue.bybit_ip_limits]\nrequests_per_window = 50\nban_ms = 2000\n"
        '[venue.instruments.BTCUSDT]\nmin_notional = "5"\n'
    )
    cfg = load_venue_config(str(good))
    assert (cfg.port, cfg.seed, cfg.tick_ms, cfg.funding_interval_s) == (0, 3, 25, 60)
    assert cfg.accounts[0].secret == "from-env" and str(cfg.accounts[0].usdt) == "500"
    assert cfg.faults == {"http_5xx": 2} and cfg.rate_limits.weight_per_minute == 100
    assert cfg.bybit_rate_limits == {"/v5/order/create": 3}
    assert cfg.bybit_ip_limits == BybitIpLimits(requests_per_window=50, window_ms=5_000, ban_ms=2_000)
    cases = {
        "[venue]\nbogus = 1\n": "venue.bogus",
        "[venue]\nport = 70000\n": "venue.port",
        '[[venue.accounts]]\nkey = "a"\nusdt = "1"\n': "venue.accounts[0].secret_env",
        '[[venue.accounts]]\nkey = "a"\nsecret = "s"\nusdt = 1.5\n': "venue.accounts[0].usdt",
        "[venue.faults]\nhttp_500 = 1\n": "venue.faults",
        "[venue.rate_limits]\nfoo = 1\n": "venue.rate_limits.foo",
        '[venue.bybit_rate_limits]\n"/v5/nope" = 1\n': "venue.bybit_rate_limits./v5/nope",
        '[venue.bybit_rate_limits]\n"/v5/order/create" = 0\n': "venue.bybit_rate_limits./v5/order/create",
        "[venue.bybit_ip_limits]\nban_s = 1\n": "venue.bybit_ip_limits.ban_s",
        "[venue.bybit_ip_limits]\nwindow_ms = 0\n": "venue.bybit_ip_limits.window_ms",
        "[venue]\nbybit_ip_limits = 600\n": "venue.bybit_ip_limits",
        '[venue.instruments.BTCUSDT]\ntick_size = "abc"\n': "venue.instruments.BTCUSDT.tick_size",
        "not toml [": "-",
    }
    for text, key in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_venue_config(str(bad))
        assert info.value.key == key, (text, info.value)


async def test_engine_venue_when_started_without_accounts_then_paper_account_file_and_clean_exit(
    tmp_path: Path,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "venue", "--port", "0",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("venue: accounts") for line in lines):
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, f"venue exited early: {lines}"
        lines.append(line)
    account_file = tmp_path / "var" / "venue-account.json"
    assert any(str(account_file) in line for line in lines)
    assert stat.S_IMODE(account_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(account_file.parent.stat().st_mode) == 0o700
    secret = json.loads(account_file.read_text())["api_secret"]
    assert all(secret not in line for line in lines)
    url = next(line.split()[3] for line in lines if line.startswith("venue: Binance REST"))
    async with aiohttp.ClientSession() as http, http.get(url + "/v1/ping") as resp:
        assert resp.status == 200
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_engine_venue_when_account_argument_is_malformed_then_exit_2_with_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine", "venue", "--account", "only-a-key",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2 and b"KEY:SECRET:USDT_BALANCE" in err
