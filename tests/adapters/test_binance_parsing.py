"""Binance parsing on every recorded payload in tests/fixtures/binance."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.adapters.binance import parsing
from engine.errors import MalformedMessage
from engine.types import MarginMode, OrderStatus, OrderType, PositionSide, Side, TimeInForce

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
D = Decimal


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def parse_any(name: str, payload: Any) -> object:
    """The parser for each fixture (every file must have one)."""
    if name.startswith(("ws_", "user_")):
        payload = parsing.unwrap(payload)
    table = {
        "rest_account_v2.json": lambda p: [parsing.position(x) for x in p["positions"]],
        "rest_balance.json": lambda p: [parsing.balance(x) for x in p],
        "rest_batch_orders_response_ccxt.json": parsing.batch_orders,
        "rest_book_ticker.json": parsing.book_ticker,
        "rest_depth_snapshot.json": parsing.depth_snapshot,
        "rest_exchange_info_trimmed.json": lambda p: parsing.instruments(p, {"BTCUSDT": 125}),
        "rest_klines.json": lambda p: parsing.klines("BTCUSDT", p),
        "rest_open_orders.json": lambda p: [parsing.order(x) for x in p],
        "rest_order_response.json": parsing.order,
        "rest_position_risk_hedge.json": lambda p: [parsing.position(x) for x in p],
        "rest_position_risk_one_way.json": lambda p: [parsing.position(x) for x in p],
        "rest_position_risk_v3.json": lambda p: [parsing.position(x) for x in p],
        "rest_position_side_dual.json": parsing.position_mode,
        "rest_premium_index.json": parsing.premium_index,
        "rest_server_time.json": parsing.server_time,
        "user_account_update.json": parsing.account_update,
        "user_algo_update_triggered_wrapped.json": parsing.algo_update,
        "user_order_trade_update_liquidation_wrapped.json": parsing.order_trade_update,
        "user_order_trade_update_new.json": parsing.order_trade_update,
        "user_order_trade_update_trade.json": parsing.order_trade_update,
        "user_trade_lite.json": parsing.trade_lite,
        "ws_agg_trade.json": parsing.agg_trade,
        "ws_book_ticker.json": parsing.book_ticker,
        "ws_depth_diff_update.json": lambda p: (p["U"], p["u"], p["pu"]),
        "ws_depth_partial_book_update.json": lambda p: (p["U"], p["u"], p["pu"]),
        "ws_kline_closed.json": parsing.kline,
        "ws_mark_price.json": parsing.mark_price,
        "ws_trade.json": parsing.trade,
    }
    return table[name](payload)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_when_parsed_then_no_error(name: str) -> None:
    assert parse_any(name, load(name)) is not None


def test_exchange_info_when_parsed_then_filters_not_precision_fields() -> None:
    btc = parsing.instruments(load("rest_exchange_info_trimmed.json"), {"BTCUSDT": 125})["BTCUSDT"]
    assert (btc.tick_size, btc.lot_size, btc.min_qty, btc.min_notional) == (
        D("0.1"),
        D("0.001"),
        D("0.001"),
        D(10),
    )
    assert btc.max_leverage == 125 and btc.quote_asset == "USDT"


def test_order_trade_update_when_trade_then_fill_with_fee_and_realized_pnl() -> None:
    update = parsing.order_trade_update(load("user_order_trade_update_trade.json"))
    assert (
        update.order.status is OrderStatus.PARTIALLY_FILLED
        and update.order.position_side is PositionSide.LONG
    )
    fill = update.fill
    assert fill is not None and fill.trade_id == "12345678" and fill.price == D("7100.50")
    assert (
        fill.fee == D("0.01") and fill.is_maker and fill.realized_pnl == D("12.34") and fill.side is Side.BUY
    )


def test_order_trade_update_when_new_then_no_fill() -> None:
    update = parsing.order_trade_update(load("user_order_trade_update_new.json"))
    assert update.fill is None and update.order.status is OrderStatus.NEW


def test_liquidation_when_wrapped_then_unwrapped_and_calculated_is_a_fill() -> None:
    update = parsing.order_trade_update(
        parsing.unwrap(load("user_order_trade_update_liquidation_wrapped.json"))
    )
    assert update.order.client_order_id.startswith("autoclose-") and update.fill is not None
    assert update.order.type is OrderType.MARKET


def test_algo_update_when_triggered_then_working_order() -> None:
    event = parsing.unwrap(load("user_algo_update_triggered_wrapped.json"))
    update = parsing.algo_update(event)
    assert update.order.type is OrderType.STOP_MARKET and update.order.status is OrderStatus.NEW
    assert update.order.trigger_price == D("0.13855")
    assert parsing.actual_order_id(event["o"], "ai") == "88937381063"  # the order the trigger created


def test_actual_order_id_when_absent_empty_or_garbage_then_empty() -> None:
    assert parsing.actual_order_id({}) == ""
    assert parsing.actual_order_id({"actualOrderId": ""}) == ""
    assert parsing.actual_order_id({"actualOrderId": 0}) == ""
    assert parsing.actual_order_id({"actualOrderId": 123}) == "123"
    assert parsing.actual_order_id({"actualOrderId": "12a"}) == ""  # logged; the update itself is kept


def test_account_update_when_hedge_positions_then_signed_and_carried_fields() -> None:
    update = parsing.account_update(load("user_account_update.json"))
    assert update.balances[0].balance.wallet_balance == D("122624.12345678")
    sides = {p.position.side: p.position for p in update.positions}
    assert (
        sides[PositionSide.SHORT].qty == D(-10)
        and sides[PositionSide.LONG].margin_mode is MarginMode.ISOLATED
    )


def test_agg_trade_when_buyer_is_maker_then_aggressor_sold() -> None:
    assert parsing.agg_trade(load("ws_agg_trade.json")).aggressor is Side.SELL


def test_mark_price_and_premium_index_when_parsed_then_decimals() -> None:
    mark = parsing.mark_price(load("ws_mark_price.json"))
    assert mark.mark_price == D("11794.15000000") and mark.funding_rate == D("0.00038167")
    assert parsing.premium_index(load("rest_premium_index.json")).next_funding_ms == 1597392000000


def test_open_orders_when_trailing_stop_then_read_as_conditional() -> None:
    order = parsing.order(load("rest_open_orders.json")[0])
    assert (
        order.type is OrderType.STOP_MARKET
        and order.trigger_price == D("9300")
        and order.tif is TimeInForce.GTC
    )


def test_malformed_when_float_or_missing_field_then_malformed_message() -> None:
    bad = dict(load("ws_agg_trade.json"), p=0.1)
    with pytest.raises(MalformedMessage):
        parsing.agg_trade(bad)
    with pytest.raises(MalformedMessage):
        parsing.mark_price({"e": "markPriceUpdate"})
    with pytest.raises(MalformedMessage):
        parsing.unwrap([1, 2])
