"""The Bybit v5 REST front-end driven by the real pybit client over loopback (protocol notes 2, 3.1)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pybit.exceptions import FailedRequestError, InvalidRequestError

from engine.venue.bybit.auth import rest_signature
from engine.venue.model import OrderStatus
from tests.venue.bybit_fixtures import KEY, SECRET, BybitVenue, Collector, clock, venue, wait_for

__all__ = ["clock", "venue"]

D = Decimal
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"
BTC = {"category": "linear", "symbol": "BTCUSDT"}


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


async def call(fn: Any, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = await asyncio.to_thread(fn, **kwargs)
    return result


async def signed(
    venue: BybitVenue, method: str, path: str, payload: str, *, key: str = KEY, secret: str = SECRET
) -> tuple[int, dict[str, Any], Any]:
    """A hand-signed request with an arbitrary raw query string or body."""
    ts = str(int(time.time() * 1000) + venue.ctx.faults.clock_offset_ms)
    headers = {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": rest_signature(
            secret, timestamp=ts, api_key=key, recv_window="5000", payload=payload.encode()
        ),
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as session:
        if method == "GET":
            url = f"{venue.base_url}{path}?{payload}"
            async with session.get(url, headers=headers) as resp:
                return resp.status, await resp.json(), resp.headers
        async with session.post(f"{venue.base_url}{path}", data=payload.encode(), headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers


def _keys_cover(ours: dict[str, Any], real: dict[str, Any], ignore: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    missing = set(real) - set(ours) - ignore
    assert not missing, f"fields of the real payload missing: {sorted(missing)}"


# ---- market data --------------------------------------------------------------------------------


async def test_market_endpoints_when_called_by_pybit_then_real_shapes_and_number_retcode(
    venue: BybitVenue,
) -> None:
    http = venue.http()
    server_time = await call(http.get_server_time)
    assert server_time["retCode"] == 0 and isinstance(server_time["retCode"], int)
    _keys_cover(server_time["result"], _fixture("rest_server_time_docs.json")["result"])
    assert abs(int(server_time["result"]["timeSecond"]) * 1000 - server_time["time"]) < 1000

    info = await call(http.get_instruments_info, category="linear", symbol="BTCUSDT")
    entry = info["result"]["list"][0]
    real = _fixture("rest_instruments_info_linear_docs.json")["result"]["list"][0]
    _keys_cover(entry, real, ignore={"symbolId"})
    for nested in ("priceFilter", "lotSizeFilter", "leverageFilter"):
        _keys_cover(entry[nested], real[nested])
    assert entry["priceFilter"]["tickSize"] == "0.10"
    assert entry["lotSizeFilter"]["minNotionalValue"] == "100"
    assert entry["fundingInterval"] == 480  # minutes

    book = await call(http.get_orderbook, category="linear", symbol="BTCUSDT", limit=3)
    _keys_cover(book["result"], _fixture("rest_orderbook_docs.json")["result"])
    assert book["result"]["b"] == [["59999.90", "1.000"], ["59999.80", "1.000"], ["59999.70", "1.000"]]
    assert book["result"]["a"][0] == ["60000.00", "1.000"]

    tickers = await call(http.get_tickers, category="linear", symbol="BTCUSDT")
    ticker = tickers["result"]["list"][0]
    assert ticker["bid1Price"] == "59999.90" and ticker["ask1Price"] == "60000.00"
    for name in ("markPrice", "indexPrice", "fundingRate", "nextFundingTime", "lastPrice"):
        assert isinstance(ticker[name], str) and ticker[name]

    other = await call(http.get_instruments_info, category="spot")
    assert other["result"]["list"] == []


async def test_kline_and_recent_trades_when_trades_happened_then_served_newest_first(
    venue: BybitVenue,
) -> None:
    http = venue.http()
    await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.2")
    await call(http.place_order, **BTC, side="Sell", orderType="Market", qty="0.2")
    trades = await call(http.get_public_trade_history, **BTC, limit=5)
    assert [t["side"] for t in trades["result"]["list"]] == ["Sell", "Buy"]
    assert trades["result"]["list"][1]["price"] == "60000.00"
    kline = await call(http.get_kline, **BTC, interval="1", limit=10)
    rows = kline["result"]["list"]
    assert len(rows) == 1 and rows[0][5] == "0.400"
    assert rows[0][2] == "60000.00" and rows[0][3] == "59999.90"
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.get_kline, **BTC, interval="7")
    assert exc.value.status_code == 10001


# ---- orders -------------------------------------------------------------------------------------


async def test_limit_order_when_placed_then_open_and_when_cancelled_then_closed(venue: BybitVenue) -> None:
    http = venue.http()
    ack = await call(
        http.place_order, **BTC, side="Buy", orderType="Limit", qty="0.01", price="59000", orderLinkId="l-1"
    )
    _keys_cover(ack["result"], _fixture("rest_place_order_response_docs.json")["result"])
    assert ack["result"]["orderLinkId"] == "l-1"
    opened = await call(http.get_open_orders, **BTC)
    order = opened["result"]["list"][0]
    real = _fixture("rest_order_realtime.json")["result"]["list"][0]
    _keys_cover(order, real)
    assert order["orderStatus"] == "New" and order["price"] == "59000.00" and order["qty"] == "0.010"
    assert order["leavesQty"] == "0.010" and order["leavesValue"] == "590"

    await call(http.cancel_order, **BTC, orderLinkId="l-1")
    assert (await call(http.get_open_orders, **BTC))["result"]["list"] == []
    closed = await call(http.get_open_orders, **BTC, openOnly=1)
    assert closed["result"]["list"][0]["orderStatus"] == "Cancelled"
    assert closed["result"]["list"][0]["cancelType"] == "CancelByUser"
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.cancel_order, **BTC, orderId=ack["result"]["orderId"])
    assert exc.value.status_code == 110001


async def test_market_order_when_filled_then_position_execution_and_wallet_exact(venue: BybitVenue) -> None:
    http = venue.http()
    await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.5")
    positions = await call(http.get_positions, **BTC)
    pos = positions["result"]["list"][0]
    _keys_cover(pos, _fixture("rest_position_list.json")["result"]["list"][0])
    assert (pos["side"], pos["size"], pos["avgPrice"], pos["positionIdx"]) == ("Buy", "0.500", "60000", 0)
    executions = await call(http.get_executions, **BTC)
    ex = executions["result"]["list"][0]
    _keys_cover(ex, _fixture("rest_execution_list.json")["result"]["list"][0])
    assert (ex["execQty"], ex["execPrice"], ex["execFee"], ex["isMaker"]) == (
        "0.500",
        "60000.00",
        "15",
        False,
    )
    wallet = await call(http.get_wallet_balance, accountType="UNIFIED")
    account = wallet["result"]["list"][0]
    _keys_cover(account, _fixture("rest_wallet_balance.json")["result"]["list"][0])
    assert account["totalWalletBalance"] == "99985"  # 100000 - 15 taker fee (0.05% of 30000)
    assert D(account["totalWalletBalance"]) == venue.core.account_state(KEY).wallet_balance


async def test_limit_order_when_partly_crossing_then_partially_filled_and_rests(venue: BybitVenue) -> None:
    http = venue.http()
    ack = await call(http.place_order, **BTC, side="Buy", orderType="Limit", qty="1.5", price="60000.0")
    order = (await call(http.get_open_orders, **BTC, orderId=ack["result"]["orderId"]))["result"]["list"][0]
    assert order["orderStatus"] == "PartiallyFilled"
    assert (order["cumExecQty"], order["leavesQty"], order["avgPrice"]) == ("1.000", "0.500", "60000")
    book = await call(http.get_orderbook, **BTC, limit=1)
    assert book["result"]["b"][0] == ["60000.00", "0.500"]  # the remainder rests at the top


async def test_amend_when_price_and_qty_changed_then_order_updated_and_unchanged_amend_refused(
    venue: BybitVenue,
) -> None:
    http = venue.http()
    ack = await call(http.place_order, **BTC, side="Sell", orderType="Limit", qty="0.01", price="61000")
    await call(http.amend_order, **BTC, orderId=ack["result"]["orderId"], price="61500.5", qty="0.02")
    order = (await call(http.get_open_orders, **BTC))["result"]["list"][0]
    assert (order["price"], order["qty"]) == ("61500.50", "0.020")
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.amend_order, **BTC, orderId=ack["result"]["orderId"], price="61500.5")
    assert exc.value.status_code == 10001


async def test_reduce_only_when_no_position_then_110017(venue: BybitVenue) -> None:
    http = venue.http()
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.place_order, **BTC, side="Sell", orderType="Market", qty="0.1", reduceOnly=True)
    assert exc.value.status_code == 110017


async def test_duplicate_link_id_when_reused_then_110072(venue: BybitVenue) -> None:
    http = venue.http()
    await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.01", orderLinkId="dup")
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.01", orderLinkId="dup")
    assert exc.value.status_code == 110072


async def test_min_notional_and_price_band_when_violated_then_110094_and_110003(venue: BybitVenue) -> None:
    http = venue.http()
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.place_order, **BTC, side="Buy", orderType="Limit", qty="0.001", price="59000")
    assert exc.value.status_code == 110094
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.place_order, **BTC, side="Buy", orderType="Limit", qty="0.01", price="10000")
    assert exc.value.status_code == 110003


async def test_post_only_when_it_would_take_then_accepted_and_cancelled_on_the_order_stream(
    venue: BybitVenue,
) -> None:
    got = Collector()
    ws = await asyncio.to_thread(venue.websocket, "private", api_key=KEY, api_secret=SECRET)
    await asyncio.to_thread(ws.order_stream, got)
    await wait_for(
        lambda: any("order" in c.topics for c in venue.hub._private.get(KEY, ())), what="order topic"
    )
    http = venue.http()
    ack = await call(
        http.place_order, **BTC, side="Buy", orderType="Limit", qty="0.01", price="60000.0",
        timeInForce="PostOnly", orderLinkId="po-1",
    )  # fmt: skip
    assert ack["retCode"] == 0
    await wait_for(lambda: any(m["data"][0]["orderLinkId"] == "po-1" for m in got.items()), what="order msg")
    pushed = next(m for m in got.items() if m["data"][0]["orderLinkId"] == "po-1")["data"][0]
    assert pushed["orderStatus"] == "Cancelled"
    assert pushed["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    assert pushed["orderId"] == ack["result"]["orderId"]
    history = await call(http.get_order_history, **BTC, orderLinkId="po-1")
    assert history["result"]["list"][0]["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    assert venue.core.open_orders(KEY) == []


async def test_ioc_when_nothing_to_fill_then_cancelled_with_no_immediate_qty(venue: BybitVenue) -> None:
    http = venue.http()
    ack = await call(
        http.place_order, **BTC, side="Buy", orderType="Limit", qty="0.01", price="59500", timeInForce="IOC"
    )
    order = (await call(http.get_open_orders, **BTC, orderId=ack["result"]["orderId"]))["result"]["list"][0]
    assert (order["orderStatus"], order["rejectReason"]) == ("Cancelled", "EC_NoImmediateQtyToFill")


async def test_stop_when_last_price_falls_through_trigger_then_triggered_and_filled(
    venue: BybitVenue,
) -> None:
    http = venue.http()
    await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.5")
    with pytest.raises(InvalidRequestError) as exc:  # a falling trigger above the price fires at once
        await call(
            http.place_order, **BTC, side="Sell", orderType="Market", qty="0.5", triggerPrice="60100",
            triggerDirection=2, triggerBy="LastPrice", reduceOnly=True,
        )  # fmt: skip
    assert exc.value.status_code == 110093
    ack = await call(
        http.place_order, **BTC, side="Sell", orderType="Market", qty="0.5", triggerPrice="59999.5",
        triggerDirection=2, triggerBy="LastPrice", reduceOnly=True, closeOnTrigger=True,
    )  # fmt: skip
    stop = (await call(http.get_open_orders, **BTC, orderFilter="StopOrder"))["result"]["list"][0]
    assert (stop["orderStatus"], stop["stopOrderType"], stop["triggerDirection"]) == (
        "Untriggered",
        "Stop",
        2,
    )
    assert stop["triggerPrice"] == "59999.50"
    venue.core.source("BTCUSDT").trade(D("59999.5"), D("5"), aggressor_is_buy=False)  # type: ignore[attr-defined]
    venue.advance(100)
    order = (await call(http.get_open_orders, **BTC, orderId=ack["result"]["orderId"]))["result"]["list"][0]
    assert order["orderStatus"] == "Filled" and order["cumExecQty"] == "0.500"
    assert venue.core.positions(KEY, "BTCUSDT") == []


async def test_funding_when_interval_passes_then_execution_funding_and_wallet_change(
    venue: BybitVenue,
) -> None:
    http = venue.http()
    await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="1")
    before = venue.core.account_state(KEY).wallet_balance
    venue.advance(61_000)  # the scripted core settles funding every 60 s
    venue.ctx.faults.clock_offset_ms = -61_000  # the clients' clock did not jump: keep signatures fresh
    executions = await call(http.get_executions, **BTC, execType="Funding")
    funding = executions["result"]["list"]
    assert funding and funding[0]["execType"] == "Funding" and funding[0]["side"] == "Buy"
    after = venue.core.account_state(KEY).wallet_balance
    assert after - before == -D(funding[0]["execFee"])
    wallet = await call(http.get_wallet_balance, accountType="UNIFIED", coin="USDT")
    assert D(wallet["result"]["list"][0]["totalWalletBalance"]) == after


# ---- positions and account ----------------------------------------------------------------------


async def test_hedge_mode_when_both_sides_opened_then_position_idx_1_and_2(venue: BybitVenue) -> None:
    http = venue.http()
    await call(http.switch_position_mode, **BTC, mode=3)
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.switch_position_mode, **BTC, mode=3)
    assert exc.value.status_code == 110025
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.1", positionIdx=0)
    assert exc.value.status_code == 10001
    await call(http.place_order, **BTC, side="Buy", orderType="Market", qty="0.2", positionIdx=1)
    await call(http.place_order, **BTC, side="Sell", orderType="Market", qty="0.1", positionIdx=2)
    listed = (await call(http.get_positions, **BTC))["result"]["list"]
    assert [(p["positionIdx"], p["side"], p["size"]) for p in listed] == [
        (1, "Buy", "0.200"),
        (2, "Sell", "0.100"),
    ]
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.switch_position_mode, **BTC, mode=0)
    assert exc.value.status_code == 110024
    await call(
        http.place_order, **BTC, side="Sell", orderType="Market", qty="0.2", positionIdx=1, reduceOnly=True
    )
    listed = (await call(http.get_positions, **BTC))["result"]["list"]
    assert [(p["positionIdx"], p["size"]) for p in listed] == [(1, "0.000"), (2, "0.100")]


async def test_leverage_and_margin_mode_when_unchanged_then_not_modified_codes(venue: BybitVenue) -> None:
    http = venue.http()
    await call(http.set_leverage, **BTC, buyLeverage="10", sellLeverage="10")
    assert venue.core.leverage(KEY, "BTCUSDT") == 10
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.set_leverage, **BTC, buyLeverage="10", sellLeverage="10")
    assert exc.value.status_code == 110043
    await call(http.set_margin_mode, setMarginMode="ISOLATED_MARGIN")
    assert {venue.core.margin_mode(KEY, s).value for s in venue.core.instruments} == {"ISOLATED"}
    info = await call(http.get_account_info)
    assert info["result"]["marginMode"] == "ISOLATED_MARGIN"
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.switch_margin_mode, **BTC, tradeMode=1, buyLeverage="10", sellLeverage="10")
    assert exc.value.status_code == 110026
    api = await call(http.get_api_key_information)
    assert api["result"]["apiKey"] == KEY and SECRET not in json.dumps(api)


# ---- auth, timing, limits, faults, malformed input ----------------------------------------------


async def test_wrong_secret_when_signing_then_10004(venue: BybitVenue) -> None:
    http = venue.http(secret="not-the-secret")
    with pytest.raises(InvalidRequestError) as exc:
        await call(http.get_wallet_balance, accountType="UNIFIED")
    assert exc.value.status_code == 10004


async def test_clock_shift_when_venue_ahead_then_10002_and_pybit_retry_with_wider_window_succeeds(
    venue: BybitVenue,
) -> None:
    venue.ctx.faults.clock_offset_ms = 6000  # the client's timestamp is 6 s old: outside 5000
    http = venue.http()
    result = await call(http.get_wallet_balance, accountType="UNIFIED")
    assert result["retCode"] == 0
    assert venue.ctx.counters["bybit.rest.rejected"] == 1  # one 10002, then pybit's 7500 window passed


async def test_clock_shift_when_venue_behind_then_10002_until_pybit_gives_up(venue: BybitVenue) -> None:
    venue.ctx.faults.clock_offset_ms = -5000  # the client's timestamp is 5 s in the future
    http = venue.http()
    with pytest.raises(FailedRequestError) as exc:
        await call(http.get_wallet_balance, accountType="UNIFIED")
    assert "Retries exceeded" in exc.value.message
    assert venue.ctx.counters["bybit.rest.rejected"] == 3


async def test_rate_limit_when_exceeded_then_10006_with_headers_and_pybit_recovers(venue: BybitVenue) -> None:
    replies = [await signed(venue, "GET", "/v5/user/query-api", "") for _ in range(25)]
    limited = [(s, b, h) for s, b, h in replies if b["retCode"] == 10006]
    assert limited, "25 calls of a 10/s endpoint within about a second must hit the limit"
    status, body, headers = limited[0]
    assert status == 200 and body["retMsg"] == "Too many visits!"
    assert headers["X-Bapi-Limit"] == "10" and headers["X-Bapi-Limit-Status"] == "0"
    reset = int(headers["X-Bapi-Limit-Reset-Timestamp"])
    assert 0 < reset - body["time"] <= 1000
    ok = [h for _, b, h in replies if b["retCode"] == 0]
    assert all("X-Bapi-Limit-Status" in h for h in ok)
    http = venue.http()
    assert (await call(http.get_api_key_information))["retCode"] == 0


async def test_5xx_fault_when_set_then_http_503_and_next_request_served(venue: BybitVenue) -> None:
    venue.ctx.faults.http_5xx = 1
    http = venue.http()
    with pytest.raises(FailedRequestError) as exc:
        await call(http.get_server_time)
    assert exc.value.status_code == 503
    assert (await call(http.get_server_time))["retCode"] == 0


def _order(**fields: object) -> str:
    return json.dumps(
        {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", **fields}
    )


@pytest.mark.parametrize(
    ("method", "path", "payload", "code"),
    [
        ("POST", "/v5/order/create", "{not json", 10001),
        ("POST", "/v5/order/create", "[1, 2]", 10001),
        ("POST", "/v5/order/create", '{"category": "linear"}', 10001),
        ("POST", "/v5/order/create", _order(symbol="DOGEUSDT", qty="1"), 10001),
        ("POST", "/v5/order/create", _order(qty="1e400"), 10001),
        ("POST", "/v5/order/create", _order(qty="-1"), 10001),
        ("POST", "/v5/order/create", _order(qty="abc"), 10001),
        ("POST", "/v5/order/create", _order(qty="99999999"), 10001),
        ("POST", "/v5/order/create", _order(qty="1", side="Up"), 10001),
        (
            "POST",
            "/v5/order/create",
            _order(qty="0.01", orderType="Limit", price="59000", orderLinkId="bad id!"),
            10001,
        ),
        ("POST", "/v5/order/create", _order(qty="0.01", orderType="Limit", price="5.9e4.1"), 10001),
        (
            "POST",
            "/v5/order/cancel",
            '{"category": "linear", "symbol": "BTCUSDT", "orderId": "nope"}',
            110001,
        ),
        ("GET", "/v5/position/list", "category=linear", 10001),
        ("GET", "/v5/order/realtime", "category=inverse&symbol=BTCUSDT", 10001),
        ("GET", "/v5/account/wallet-balance", "accountType=CONTRACT", 10001),
    ],
)
async def test_malformed_request_when_sent_then_retcode_error_and_http_200(
    venue: BybitVenue, method: str, path: str, payload: str, code: int
) -> None:
    status, body, _ = await signed(venue, method, path, payload)
    assert status == 200
    assert body["retCode"] == code and isinstance(body["retCode"], int)
    assert body["result"] == {} and body["retExtInfo"] == {}
    assert venue.ctx.counters.get("bybit.rest.internal_error", 0) == 0


async def test_cancel_all_when_orders_open_then_all_listed_and_cancelled(venue: BybitVenue) -> None:
    http = venue.http()
    for price in ("59000", "59100"):
        await call(http.place_order, **BTC, side="Buy", orderType="Limit", qty="0.01", price=price)
    result = await call(http.cancel_all_orders, **BTC)
    _keys_cover(result["result"], _fixture("rest_cancel_all_response_docs.json")["result"])
    assert len(result["result"]["list"]) == 2 and result["result"]["success"] == "1"
    assert all(o.status is OrderStatus.CANCELED for o in venue.hub.remembered(KEY))
