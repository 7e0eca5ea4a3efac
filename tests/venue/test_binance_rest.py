"""The venue's Binance USD-M REST front-end, driven by the real python-binance clients over loopback.

The ``scripted`` venue has static crowd books (BTCUSDT bids 59999.9 down, asks 60000.0 up, 1 BTC a
level; the crowd refills what is taken at each market step), so fills are deterministic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from binance import AsyncClient
from binance.client import Client
from binance.exceptions import BinanceAPIException

from engine.venue.market import ManualSource
from engine.venue.ratelimit import BinanceLimits
from engine.venue.server import VenueServer
from tests.venue.conftest import VENUE_KEY, VENUE_SECRET
from tests.venue.throughput import OrderSender

D = Decimal
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
SCRIPTED = pytest.mark.parametrize("venue", [{"scripted": True}], indirect=True)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def make_client(v: VenueServer, key: str = VENUE_KEY, secret: str = VENUE_SECRET) -> AsyncClient:
    cls = type(
        "LocalAsyncClient",
        (AsyncClient,),
        {"API_URL": v.base_url + "/api", "FUTURES_URL": v.base_url + "/fapi"},
    )
    return await cls.create(api_key=key, api_secret=secret)


@pytest.fixture
async def client(venue: VenueServer) -> AsyncIterator[AsyncClient]:
    c = await make_client(venue)
    yield c
    await c.close_connection()


async def api_error(coro: Any) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as info:
        await coro
    return info.value


# ---- orders ---------------------------------------------------------------------------------------


@SCRIPTED
async def test_limit_order_when_resting_then_listed_queried_and_cancelled(client: AsyncClient) -> None:
    placed = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="59990.0"
    )
    assert placed["status"] == "NEW" and placed["price"] == "59990.00" and placed["origQty"] == "0.010"
    assert isinstance(placed["orderId"], int) and isinstance(placed["updateTime"], int)
    opened = await client.futures_get_open_orders(symbol="BTCUSDT")
    assert [o["orderId"] for o in opened] == [placed["orderId"]]
    got = await client.futures_get_order(symbol="BTCUSDT", orderId=placed["orderId"])
    assert got["clientOrderId"] == placed["clientOrderId"] and "time" in got
    cancelled = await client.futures_cancel_order(symbol="BTCUSDT", orderId=placed["orderId"])
    assert cancelled["status"] == "CANCELED"
    assert await client.futures_get_open_orders(symbol="BTCUSDT") == []
    again = await api_error(client.futures_cancel_order(symbol="BTCUSDT", orderId=placed["orderId"]))
    assert (again.status_code, again.code) == (400, -2011)
    missing = await api_error(client.futures_get_order(symbol="BTCUSDT", orderId=987654))
    assert missing.code == -2013


@SCRIPTED
async def test_market_order_when_result_requested_then_filled_at_touch_and_position_opened(
    client: AsyncClient,
) -> None:
    filled = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newOrderRespType="RESULT"
    )
    assert filled["status"] == "FILLED"
    assert (filled["executedQty"], filled["avgPrice"], filled["cumQuote"]) == (
        "0.010",
        "60000.00",
        "600.00000000",
    )
    positions = await client.futures_position_information(symbol="BTCUSDT")
    assert [(p["positionSide"], p["positionAmt"]) for p in positions] == [("BOTH", "0.010")]
    assert D(positions[0]["entryPrice"]) == D("60000.0")
    balance = (await client.futures_account_balance())[0]
    assert D(balance["balance"]) == D("100000") - D("600") * D("0.0005")  # taker fee, exact
    trades = await client.futures_account_trades(symbol="BTCUSDT")
    assert [(t["price"], t["qty"], t["maker"]) for t in trades] == [("60000.00", "0.010", False)]


@SCRIPTED
async def test_market_order_when_ack_requested_then_state_at_acceptance(client: AsyncClient) -> None:
    ack = await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    assert (ack["status"], ack["executedQty"]) == ("NEW", "0.000")
    got = await client.futures_get_order(symbol="BTCUSDT", orderId=ack["orderId"])
    assert got["status"] == "FILLED"


@SCRIPTED
async def test_limit_order_when_larger_than_touch_then_partially_filled(client: AsyncClient) -> None:
    order = await client.futures_create_order(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="1.500",
        price="60000.0",
        newOrderRespType="RESULT",
    )
    assert order["status"] == "PARTIALLY_FILLED"
    assert order["executedQty"] == "1.000" and order["avgPrice"] == "60000.00"


@SCRIPTED
async def test_reduce_only_when_no_position_then_rejected_2022(client: AsyncClient) -> None:
    err = await api_error(
        client.futures_create_order(
            symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010", reduceOnly="true"
        )
    )
    assert (err.status_code, err.code) == (400, -2022)


@SCRIPTED
async def test_post_only_when_it_would_cross_then_rejected_5022(client: AsyncClient) -> None:
    err = await api_error(
        client.futures_create_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX", quantity="0.010", price="60000.0"
        )
    )
    assert err.code == -5022
    assert await client.futures_get_open_orders(symbol="BTCUSDT") == []


@SCRIPTED
async def test_filters_when_violated_then_real_error_codes(client: AsyncClient) -> None:
    async def code(**params: str) -> int:
        base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
        return (await api_error(client.futures_create_order(**{**base, **params}))).code

    assert await code(quantity="0.010", price="59990.05") == -4014  # off tick
    assert await code(quantity="0.0105", price="59990.0") == -4023  # off step
    assert await code(quantity="0.001", price="59990.0") == -4164  # notional 59.99 < 100
    assert await code(quantity="0", price="59990.0") == -4003
    assert await code(quantity="2000", price="59990.0") == -4005
    assert await code(quantity="0.010", price="70000.0") == -4016  # above the PERCENT_PRICE band
    assert await code(quantity="0.010", price="50000.0") == -4024  # below it
    assert await code(quantity="2.000", price="59990.0", timeInForce="FOK") == -5021


@SCRIPTED
async def test_stop_market_when_sent_through_algo_order_then_triggers_on_mark_and_closes(
    venue: VenueServer, client: AsyncClient
) -> None:
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    too_late = await api_error(
        client.futures_create_order(
            symbol="BTCUSDT",
            side="SELL",
            type="STOP_MARKET",
            stopPrice="60100.0",
            quantity="0.010",
            reduceOnly="true",
        )
    )
    assert too_late.code == -2021
    algo = await client.futures_create_order(
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_MARKET",
        stopPrice="59900.0",
        quantity="0.010",
        reduceOnly="true",
        workingType="MARK_PRICE",
    )
    assert (
        algo["algoType"] == "CONDITIONAL"
        and algo["algoStatus"] == "NEW"
        and algo["triggerPrice"] == "59900.00"
    )
    assert (algo["actualOrderId"], algo["triggerTime"]) == ("", 0)  # no order created before the trigger
    listed = await client.futures_get_open_orders(symbol="BTCUSDT", conditional=True)
    assert [a["algoId"] for a in listed] == [algo["algoId"]]
    source = venue.core.source("BTCUSDT")  # type: ignore[attr-defined]
    assert isinstance(source, ManualSource)
    tick = D("0.1")
    source.set_book(
        [(D("59800.0") - tick * k, D("1")) for k in range(1, 11)],
        [(D("59800.0") + tick * k, D("1")) for k in range(10)],
    )
    for _ in range(100):
        got = await client.futures_get_order(symbol="BTCUSDT", algoId=algo["algoId"])
        if got["algoStatus"] == "FINISHED":
            break
        await asyncio.sleep(0.02)
    assert got["algoStatus"] == "FINISHED" and got["executedQty"] == "0.010"
    # the order the trigger created: its trades (and ORDER_TRADE_UPDATE frames) carry this order id
    actual = got["actualOrderId"]
    assert isinstance(actual, str) and actual.isdigit() and got["triggerTime"] > 0
    trades = await client.futures_account_trades(symbol="BTCUSDT", orderId=int(actual))
    assert [(t["orderId"], t["side"], t["qty"]) for t in trades] == [(int(actual), "SELL", "0.010")]
    everything = await client.futures_account_trades(symbol="BTCUSDT")
    assert len(everything) == 2  # the entry's trade too: ``orderId`` selects one order's
    positions = await client.futures_position_information(symbol="BTCUSDT")
    assert positions == []  # v3 lists only symbols with a position or open orders


@SCRIPTED
async def test_hedge_mode_when_enabled_then_long_and_short_positions_coexist(client: AsyncClient) -> None:
    assert (await client.futures_get_position_mode())["dualSidePosition"] is False
    assert (await client.futures_change_position_mode(dualSidePosition="true"))["code"] == 200
    unchanged = await api_error(client.futures_change_position_mode(dualSidePosition="true"))
    assert unchanged.code == -4059
    assert (await client.futures_get_position_mode())["dualSidePosition"] is True
    await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", positionSide="LONG"
    )
    await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.020", positionSide="SHORT"
    )
    positions = await client.futures_position_information(symbol="BTCUSDT")
    assert sorted((p["positionSide"], p["positionAmt"]) for p in positions) == [
        ("LONG", "0.010"),
        ("SHORT", "-0.020"),
    ]
    both = await api_error(
        client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    )
    assert both.code == -4061
    reduce = await api_error(
        client.futures_create_order(
            symbol="BTCUSDT",
            side="SELL",
            type="MARKET",
            quantity="0.010",
            positionSide="LONG",
            reduceOnly="true",
        )
    )
    assert reduce.code == -1106
    switch = await api_error(client.futures_change_position_mode(dualSidePosition="false"))
    assert switch.code == -4068
    # closing a long in hedge mode: SELL on the LONG side, no reduceOnly
    await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010", positionSide="LONG"
    )
    positions = await client.futures_position_information(symbol="BTCUSDT")
    assert [(p["positionSide"], p["positionAmt"]) for p in positions] == [("SHORT", "-0.020")]


@SCRIPTED
async def test_leverage_and_margin_type_when_changed_then_applied_or_real_errors(client: AsyncClient) -> None:
    assert (await client.futures_change_leverage(symbol="BTCUSDT", leverage=10))["leverage"] == 10
    assert (await api_error(client.futures_change_leverage(symbol="BTCUSDT", leverage=500))).code == -4028
    assert (await client.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED"))["code"] == 200
    assert (
        await api_error(client.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED"))
    ).code == -4046
    v2 = await client._request_futures_api("get", "positionRisk", True, version=2, data={"symbol": "BTCUSDT"})
    assert (v2[0]["leverage"], v2[0]["marginType"], v2[0]["positionAmt"]) == ("10", "isolated", "0.000")
    brackets = await client.futures_leverage_bracket(symbol="BTCUSDT")
    assert brackets["brackets"][0]["initialLeverage"] == 125


@SCRIPTED
async def test_batch_orders_when_one_is_bad_then_per_element_results(client: AsyncClient) -> None:
    out = await client.futures_place_batch_order(
        batchOrders=[
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.010",
                "price": "59980.0",
            },
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.010",
                "price": "1000.0",
            },
        ]
    )
    assert out[0]["status"] == "NEW" and out[0]["price"] == "59980.00"
    assert out[1]["code"] == -4024


@SCRIPTED
async def test_modify_and_cancel_all_when_orders_rest_then_amended_and_cleared(client: AsyncClient) -> None:
    a = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="59980.0"
    )
    modified = await client.futures_modify_order(
        symbol="BTCUSDT", orderId=a["orderId"], side="BUY", quantity="0.020", price="59970.0"
    )
    assert (modified["price"], modified["origQty"]) == ("59970.00", "0.020")
    await client.futures_create_order(
        symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.010", price="60050.0"
    )
    done = await client.futures_cancel_all_open_orders(symbol="BTCUSDT")
    assert done["code"] == 200
    assert await client.futures_get_open_orders(symbol="BTCUSDT") == []


async def test_sync_client_when_client_id_has_colon_and_slash_then_signature_accepted(
    venue: VenueServer,
) -> None:
    """python-binance signs the raw id but form-encodes ':' and '/': the venue verifies the decoded form."""

    def run() -> dict[str, Any]:
        cls = type(
            "LocalClient",
            (Client,),
            {"API_URL": venue.base_url + "/api", "FUTURES_URL": venue.base_url + "/fapi"},
        )
        c = cls(api_key=VENUE_KEY, api_secret=VENUE_SECRET)  # pings /api/v3/ping on construction
        book = c.futures_order_book(symbol="BTCUSDT", limit=5)
        price = D(book["bids"][0][0]) - 50
        placed: dict[str, Any] = c.futures_create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.010",
            price=str(price),
            newClientOrderId="grid:1/a",
        )
        c.futures_cancel_order(symbol="BTCUSDT", origClientOrderId="grid:1/a")
        c.close_connection()
        return placed

    placed = await asyncio.to_thread(run)
    assert placed["clientOrderId"] == "grid:1/a" and placed["status"] == "NEW"


# ---- account, listenKey -----------------------------------------------------------------------------


@SCRIPTED
async def test_account_when_fresh_then_shapes_match_the_recorded_payloads(client: AsyncClient) -> None:
    balance = await client.futures_account_balance()
    assert set(balance[0]) == set(fixture("rest_balance.json")[0])
    assert D(balance[0]["balance"]) == D("100000")
    account = await client.futures_account()
    recorded = fixture("rest_account_v2.json")
    assert set(recorded) <= set(account)
    assert set(recorded["assets"][0]) <= set(account["assets"][0])
    assert set(recorded["positions"][0]) <= set(account["positions"][0])
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    v3 = await client.futures_position_information()
    assert set(fixture("rest_position_risk_v3.json")[0]) - {
        "leverage",
        "maxNotionalValue",
        "marginType",
        "isAutoAddMargin",
    } <= set(v3[0])
    order = await client.futures_create_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="59980.0"
    )
    got = await client.futures_get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert set(fixture("rest_order_response.json")) <= set(got)
    assert set(fixture("rest_batch_orders_response_ccxt.json")[0]) <= set(order)


async def test_listen_key_when_created_kept_alive_and_closed_then_lifecycle_holds(
    client: AsyncClient,
) -> None:
    key = await client.futures_stream_get_listen_key()
    assert isinstance(key, str) and len(key) == 64
    assert await client.futures_stream_get_listen_key() == key  # the active key comes back, extended
    assert (await client.futures_stream_keepalive(listenKey=key))["listenKey"] == key
    assert await client.futures_stream_close(listenKey=key) == {}
    gone = await api_error(client.futures_stream_keepalive(listenKey=key))
    assert gone.code == -1125


# ---- market data ------------------------------------------------------------------------------------


async def test_exchange_info_when_fetched_then_real_shape_with_every_filter(client: AsyncClient) -> None:
    info = await client.futures_exchange_info()
    recorded = fixture("rest_exchange_info_trimmed.json")
    assert set(recorded) <= set(info)
    assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert set(recorded["symbols"][0]) <= set(btc)
    kinds = {f["filterType"]: f for f in btc["filters"]}
    assert set(kinds) == {f["filterType"] for f in recorded["symbols"][0]["filters"]}
    assert kinds["PRICE_FILTER"]["tickSize"] == "0.10" and kinds["LOT_SIZE"]["stepSize"] == "0.001"
    assert kinds["MIN_NOTIONAL"]["notional"] == "100"
    assert {r["rateLimitType"] for r in info["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}


@SCRIPTED
async def test_market_data_endpoints_when_called_then_consistent_with_the_book(
    venue: VenueServer, client: AsyncClient
) -> None:
    depth = await client.futures_order_book(symbol="BTCUSDT", limit=5)
    assert depth["bids"][0] == ["59999.90", "1.000"] and depth["asks"][0] == ["60000.00", "1.000"]
    assert depth["lastUpdateId"] == venue.core.depth("BTCUSDT", 5)[0]
    ticker = await client.futures_orderbook_ticker(symbol="BTCUSDT")
    assert (ticker["bidPrice"], ticker["askPrice"]) == ("59999.90", "60000.00")
    premium = await client.futures_mark_price(symbol="BTCUSDT")
    assert set(fixture("rest_premium_index.json")) <= set(premium)
    await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    trades = await client.futures_aggregate_trades(symbol="BTCUSDT", limit=5)
    assert trades[-1]["p"] == "60000.00" and trades[-1]["m"] is False
    klines = await client.futures_klines(symbol="BTCUSDT", interval="1m", limit=5)
    assert len(klines[-1]) == 12 and klines[-1][4] == "60000.00"
    bad = await api_error(client.futures_order_book(symbol="BTCUSDT", limit=7))
    assert bad.code == -1100


# ---- malformed input ---------------------------------------------------------------------------------


async def test_malformed_requests_when_sent_then_error_replies_never_500(
    venue: VenueServer, client: AsyncClient
) -> None:
    async def code(**params: str) -> int:
        return (await api_error(client.futures_create_order(**params))).code

    assert await code(symbol="NOPEUSDT", side="BUY", type="MARKET", quantity="1") == -1121
    assert await code(symbol="BTCUSDT", side="BUY", type="MARKET") == -1102
    assert await code(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="1e3") == -1100
    assert await code(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="99999999999999999999") == -4005
    assert await code(symbol="BTCUSDT", side="UP", type="MARKET", quantity="1") == -1117
    assert await code(symbol="BTCUSDT", side="BUY", type="WHATEVER", quantity="1") == -1116
    assert (
        await code(symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="1", price="1", timeInForce="X")
        == -1115
    )
    async with aiohttp.ClientSession() as http:
        headers = {"X-MBX-APIKEY": VENUE_KEY, "Content-Type": "application/x-www-form-urlencoded"}
        for body in (b"\xff\xfe\x00junk", b"{not json", b"a=" + b"9" * 5000, b"&&&==&"):
            async with http.post(venue.base_url + "/fapi/v1/order", data=body, headers=headers) as resp:
                assert 400 <= resp.status < 500
                assert (await resp.json())["code"] < 0
        async with http.get(venue.base_url + "/fapi/v1/nothing") as resp:
            assert resp.status == 404 and (await resp.json())["code"] == -5000
        async with http.get(venue.base_url + "/fapi/v1/depth?symbol=BTCUSDT&limit=abc") as resp:
            assert resp.status == 400 and (await resp.json())["code"] == -1100
    assert venue.ctx.counters.get("binance.rest.internal_error", 0) == 0


# ---- throughput -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "venue",
    [
        {
            "scripted": True,
            "limits": BinanceLimits(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_minute=10**9),
        }
    ],
    indirect=True,
)
async def test_order_throughput_when_a_keep_alive_client_sends_orders_then_at_least_2000_per_second(
    venue: VenueServer,
) -> None:
    """Signed IOC limit orders below the touch (accepted, then expired: nothing accumulates) from a
    separate process over 16 keep-alive connections."""
    n = 4000
    rates = []
    sender = await asyncio.to_thread(
        OrderSender, venue.base_url, VENUE_KEY, VENUE_SECRET, symbol="BTCUSDT", price="59900.0"
    )
    try:
        for attempt in range(5):  # best of up to five: load from elsewhere on the machine only slows a run
            if attempt:
                await asyncio.sleep(0.5)  # let a burst of other work on the shared cores pass
            await asyncio.to_thread(sender.prepare, n)
            ok, elapsed = await asyncio.to_thread(sender.go)
            assert ok == n
            rates.append(n / elapsed)
            if rates[-1] >= 2000:
                break
    finally:
        await asyncio.to_thread(sender.close)
    print(f"order throughput: {n} orders per run, best {max(rates):,.0f} orders/s (runs: {rates})")
    assert max(rates) >= 2000
