"""Bybit payloads -> engine types, on every recorded Bybit fixture (tests/fixtures/bybit/)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine import kernels
from engine.adapters.bybit import parsing
from engine.adapters.bybit.rest import error_for
from engine.adapters.bybit.ws import auth_signature, topic_of
from engine.errors import (
    AuthFailed,
    ClockSkew,
    InsufficientMargin,
    MalformedMessage,
    OrderRejected,
    RateLimited,
    VenueError,
    VenueUnavailable,
)
from engine.types import (
    FundingPayment,
    MarginMode,
    OrderStatus,
    OrderType,
    PositionSide,
    Side,
    TimeInForce,
    TriggerBy,
    Venue,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bybit"
D = Decimal


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


#: every fixture file and the test that parses it (a new fixture without a test fails below)
COVERED = {
    "rest_cancel_all_response_docs.json": "test_cancel_all_when_docs_response_then_ids",
    "rest_execution_list.json": "test_execution_list_when_trades_then_fills",
    "rest_instruments_info_linear_docs.json": "test_instruments_when_docs_then_filters_as_decimals",
    "rest_instruments_info_linear_nautilus.json": "test_instruments_when_nautilus_then_two_symbols",
    "rest_kline_linear.json": "test_kline_rest_when_rows_then_oldest_first",
    "rest_order_realtime.json": "test_open_orders_when_realtime_then_new_limits",
    "rest_orderbook_docs.json": "test_orderbook_rest_when_docs_then_levels",
    "rest_place_order_response_docs.json": "test_ack_when_place_response_then_ids",
    "rest_position_list.json": "test_positions_when_list_then_signed_qty",
    "rest_server_time_docs.json": "test_server_time_when_docs_then_ms",
    "rest_set_leverage_response_docs.json": "test_set_leverage_when_docs_then_empty_result",
    "rest_wallet_balance.json": "test_wallet_rest_when_uta_then_usdt_balance",
    "ws_auth_failure.json": "test_op_reply_when_auth_failure_then_not_success",
    "ws_auth_success.json": "test_op_reply_when_auth_success_then_success",
    "ws_kline.json": "test_kline_ws_when_open_bar_then_not_closed",
    "ws_orderbook500_XRPUSDT_capture.jsonl": "test_book_when_live_capture_then_sync_applies_all",
    "ws_orderbook500_delta.json": "test_book_message_when_delta_then_levels",
    "ws_orderbook500_snapshot.json": "test_book_message_when_snapshot_then_sorted_levels",
    "ws_private_execution.json": "test_execution_ws_when_market_sell_then_fill",
    "ws_private_order_cancelled.json": "test_order_ws_when_cancelled_by_user_then_canceled",
    "ws_private_order_filled.json": "test_order_ws_when_filled_then_filled",
    "ws_private_position.json": "test_position_ws_when_short_then_negative_qty",
    "ws_private_wallet.json": "test_wallet_ws_when_message_then_balances",
    "ws_public_trade_docs.json": "test_trades_when_docs_then_ticks",
    "ws_subscribe_ack.json": "test_op_reply_when_subscribe_ack_then_success",
    "ws_subscribe_failure.json": "test_op_reply_when_subscribe_failure_then_reason",
    "ws_tickers_linear.json": "test_ticker_when_snapshot_then_mark_price",
}


def test_every_fixture_when_listed_then_has_a_parsing_test() -> None:
    files = {p.name for p in FIXTURES.iterdir()}
    assert files == set(COVERED)
    for test_name in COVERED.values():
        assert test_name in globals(), test_name


# ---- REST ----------------------------------------------------------------------------------------------


def test_instruments_when_docs_then_filters_as_decimals() -> None:
    out = parsing.parse_instruments(load("rest_instruments_info_linear_docs.json")["result"])
    inst = out["BTCUSDT"]
    assert inst.venue is Venue.BYBIT
    assert (inst.base_asset, inst.quote_asset) == ("BTC", "USDT")
    assert inst.tick_size == D("0.10") and str(inst.tick_size) == "0.10"
    assert inst.lot_size == D("0.001")
    assert inst.min_qty == D("0.001")
    assert inst.max_qty == D("1190.000")
    assert inst.min_notional == D("5")
    assert inst.max_leverage == 100
    assert inst.round_price(D("65000.17"), Side.BUY) == D("65000.10")


def test_instruments_when_nautilus_then_two_symbols() -> None:
    out = parsing.parse_instruments(load("rest_instruments_info_linear_nautilus.json")["result"])
    assert sorted(out) == ["BTCUSDT", "ETHUSDT"]
    assert out["BTCUSDT"].tick_size == D("0.5")
    assert out["ETHUSDT"].tick_size == D("0.05")
    assert out["ETHUSDT"].lot_size == D("0.01")


def test_instruments_when_not_trading_then_skipped() -> None:
    result = load("rest_instruments_info_linear_docs.json")["result"]
    result["list"][0]["status"] = "PreLaunch"
    assert parsing.parse_instruments(result) == {}


def test_instrument_when_tick_missing_then_malformed() -> None:
    entry = load("rest_instruments_info_linear_docs.json")["result"]["list"][0]
    del entry["priceFilter"]["tickSize"]
    with pytest.raises(MalformedMessage, match="tickSize"):
        parsing.parse_instrument(entry)


def test_server_time_when_docs_then_ms() -> None:
    assert parsing.parse_server_time(load("rest_server_time_docs.json")["result"]) == 1688639403423


def test_orderbook_rest_when_docs_then_levels() -> None:
    book = parsing.parse_orderbook_rest(load("rest_orderbook_docs.json")["result"])
    assert book.symbol == "BTCUSDT" and book.kind == "snapshot"
    assert book.update_id == 230704 and book.seq == 1432604333
    assert book.bids == [(D("65485.47"), D("47.081829"))]
    assert book.asks == [(D("65557.7"), D("16.606555"))]


def test_ack_when_place_response_then_ids() -> None:
    body = load("rest_place_order_response_docs.json")
    assert parsing.parse_ack(body["result"]) == ("1321003749386327552", "spot-test-postonly")


def test_cancel_all_when_docs_response_then_ids() -> None:
    ids = parsing.parse_cancel_all(load("rest_cancel_all_response_docs.json")["result"])
    assert ids == [
        ("1616024329462743808", "1616024329462743809"),
        ("1616024287544869632", "1616024287544869633"),
    ]


def test_set_leverage_when_docs_then_empty_result() -> None:
    body = load("rest_set_leverage_response_docs.json")
    assert body["retCode"] == 0 and body["result"] == {}


def test_open_orders_when_realtime_then_new_limits() -> None:
    orders = [parsing.parse_order(e) for e in load("rest_order_realtime.json")["result"]["list"]]
    first, second = orders
    assert first.client_order_id == "client-open-1" and first.venue_order_id == "open-order-1"
    assert (first.side, second.side) == (Side.BUY, Side.SELL)
    assert first.type is OrderType.LIMIT and first.tif is TimeInForce.GTC
    assert first.status is OrderStatus.NEW
    assert first.price == D("3930.41") and first.qty == D("0.010")
    assert first.filled_qty == 0 and first.avg_price == 0  # avgPrice null
    assert first.trigger_price is None and first.position_side is PositionSide.BOTH
    assert first.ts_ms == 1761355905606


def test_execution_list_when_trades_then_fills() -> None:
    fills = [parsing.parse_execution(e) for e in load("rest_execution_list.json")["result"]["list"]]
    buy, sell = fills
    assert not isinstance(buy, FundingPayment) and buy is not None
    assert not isinstance(sell, FundingPayment) and sell is not None
    assert buy.side is Side.BUY and buy.is_maker and buy.price == D("50000.00") and buy.qty == D("0.100")
    assert buy.fee == D("0.0150") and buy.fee_asset == "USDT"
    assert buy.trade_id == "e0cbe81d-0f18-5866-9415-cf319b5dab3b" and buy.client_order_id == "test-order-001"
    assert sell.side is Side.SELL and not sell.is_maker and sell.ts_ms == 1672282822529
    assert buy.realized_pnl == 0  # no execPnl in this payload


def test_execution_when_funding_then_payment_with_sign() -> None:
    entry = load("rest_execution_list.json")["result"]["list"][0]
    entry.update(execType="Funding", execFee="-1.25")
    payment = parsing.parse_execution(entry)
    assert isinstance(payment, FundingPayment) and payment.amount == D("1.25")


def test_execution_when_other_type_then_none() -> None:
    entry = load("rest_execution_list.json")["result"]["list"][0]
    entry["execType"] = "MovePosition"
    assert parsing.parse_execution(entry) is None


def test_positions_when_list_then_signed_qty() -> None:
    positions = [parsing.parse_position(e) for e in load("rest_position_list.json")["result"]["list"]]
    btc, eth, sol = positions
    assert btc.qty == D("0.5") and btc.entry_price == D("50000.00") and btc.leverage == 10
    assert btc.side is PositionSide.BOTH and btc.margin_mode is MarginMode.CROSS
    assert btc.liquidation_price == D("45000.00") and btc.unrealized_pnl == D("250.00")
    assert eth.qty == D("-5.0")
    assert sol.qty == 0 and sol.entry_price == 0 and sol.liquidation_price == 0  # liqPrice ""


def test_position_when_hedge_short_then_negative_and_short_side() -> None:
    entry = load("rest_position_list.json")["result"]["list"][0]
    entry.update(positionIdx=2, side="Sell")
    position = parsing.parse_position(entry, margin_mode=MarginMode.ISOLATED)
    assert position.side is PositionSide.SHORT and position.qty == D("-0.5")
    assert position.margin_mode is MarginMode.ISOLATED


def test_wallet_rest_when_uta_then_usdt_balance() -> None:
    account = load("rest_wallet_balance.json")["result"]["list"][0]
    balances = {b.asset: b for b in parsing.parse_balances(account, ts_ms=1)}
    assert set(balances) == {"BTC", "USDT", "ETH"}
    usdt = balances["USDT"]
    assert usdt.wallet_balance == D("1000.50") and usdt.available_balance == D("1000.50")
    only = parsing.parse_balances(account, ts_ms=1, assets=["USDT"])
    assert [b.asset for b in only] == ["USDT"]


def test_wallet_when_available_deprecated_then_account_available() -> None:
    account = load("rest_wallet_balance.json")["result"]["list"][0]
    for coin in account["coin"]:
        coin["availableToWithdraw"] = ""
    usdt = next(b for b in parsing.parse_balances(account, ts_ms=1) if b.asset == "USDT")
    assert usdt.available_balance == D("3.00326056")


def test_kline_rest_when_rows_then_oldest_first() -> None:
    bars = parsing.parse_kline_rest(load("rest_kline_linear.json")["result"], interval="1")
    assert len(bars) == 1
    bar = bars[0]
    assert bar.start_ms == 1709891679000 and bar.close == D("27455") and bar.turnover == D("3390000")
    assert not bar.closed  # the newest row is the open bar


# ---- public stream -------------------------------------------------------------------------------------


def test_book_message_when_snapshot_then_sorted_levels() -> None:
    book = parsing.parse_book_message(load("ws_orderbook500_snapshot.json"))
    assert book.kind == "snapshot" and book.symbol == "XRPUSDT" and book.update_id > 0
    assert len(book.bids) == 500 and len(book.asks) == 500
    assert book.bids == sorted(book.bids, reverse=True)
    assert book.asks == sorted(book.asks)
    assert book.bids[0][0] < book.asks[0][0]


def test_book_message_when_delta_then_levels() -> None:
    book = parsing.parse_book_message(load("ws_orderbook500_delta.json"))
    assert book.kind == "delta" and book.update_id == 20254870 and book.seq == 130020239261
    assert book.bids[0] == (D("1.9531"), D("6198"))


def test_book_when_live_capture_then_sync_applies_all() -> None:
    """The raw frames through the same kernel path the adapter uses (``BybitBookSync.on_bytes``)."""
    lines = (FIXTURES / "ws_orderbook500_XRPUSDT_capture.jsonl").read_bytes().splitlines()
    book = kernels.OrderBook(tick_size="0.0001", lot_size="1")
    sync = kernels.BybitBookSync(book)
    codes = [sync.on_bytes(line) for line in lines if line.strip()]
    assert codes == [kernels.APPLIED] * 50
    assert sync.state == "live"
    last = parsing.parse_book_message(json.loads(lines[-1]))
    assert sync.last_update_id == last.update_id
    assert topic_of(lines[0]) == "orderbook.500.XRPUSDT"


def test_trades_when_docs_then_ticks() -> None:
    (tick,) = parsing.parse_trades(load("ws_public_trade_docs.json"))
    assert tick.symbol == "BTCUSDT" and tick.aggressor is Side.BUY
    assert tick.price == D("16578.50") and tick.qty == D("0.001") and tick.ts_ms == 1672304486865
    assert tick.trade_id == "20f43950-d8dd-5b31-9112-a178eb6023af"


def test_ticker_when_snapshot_then_mark_price() -> None:
    state = parsing.TickerState("BTCUSDT")
    mark = state.apply(load("ws_tickers_linear.json"))
    assert mark is not None
    assert mark.mark_price == D("17217.33") and mark.index_price == D("17227.36")
    assert mark.funding_rate == D("-0.000212") and mark.next_funding_ms == 1673280000000
    assert mark.ts_ms == 1673272861686


def test_ticker_when_delta_then_merged_state() -> None:
    state = parsing.TickerState("BTCUSDT")
    state.apply(load("ws_tickers_linear.json"))
    volume_only = {"topic": "tickers.BTCUSDT", "type": "delta", "ts": 2, "data": {"volume24h": "1"}}
    assert state.apply(volume_only) is None
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "ts": 3, "data": {"markPrice": "17300.00"}}
    mark = state.apply(delta)
    assert mark is not None and mark.mark_price == D("17300.00") and mark.index_price == D("17227.36")


def test_ticker_when_delta_before_snapshot_then_malformed() -> None:
    state = parsing.TickerState("BTCUSDT")
    with pytest.raises(MalformedMessage):
        state.apply({"type": "delta", "data": {"markPrice": "1"}})


def test_kline_ws_when_open_bar_then_not_closed() -> None:
    (bar,) = parsing.parse_kline_ws(load("ws_kline.json"))
    assert bar.symbol == "BTCUSDT" and bar.interval == "5" and not bar.closed
    assert bar.open == D("16649.5") and bar.high == D("16677")


def test_op_reply_when_subscribe_ack_then_success() -> None:
    reply = parsing.parse_op_reply(load("ws_subscribe_ack.json"))
    assert reply is not None and reply.op == "subscribe" and reply.success
    assert reply.req_id == "sub-orderbook-1"


def test_op_reply_when_subscribe_failure_then_reason() -> None:
    reply = parsing.parse_op_reply(load("ws_subscribe_failure.json"))
    assert reply is not None and not reply.success and "invalid.topic" in reply.message


def test_op_reply_when_auth_success_then_success() -> None:
    reply = parsing.parse_op_reply(load("ws_auth_success.json"))
    assert reply is not None and reply.op == "auth" and reply.success


def test_op_reply_when_auth_failure_then_not_success() -> None:
    reply = parsing.parse_op_reply(load("ws_auth_failure.json"))
    assert reply is not None and not reply.success and reply.code == 10003
    assert reply.message == "Invalid apikey"


def test_op_reply_when_pongs_then_pong() -> None:
    public = {"success": True, "ret_msg": "pong", "conn_id": "x", "req_id": "", "op": "ping"}
    private = {"req_id": "1", "op": "pong", "args": ["1"], "conn_id": "x"}
    for message in (public, private):
        reply = parsing.parse_op_reply(message)
        assert reply is not None and reply.op == "pong"
    assert parsing.parse_op_reply(load("ws_tickers_linear.json")) is None


# ---- private stream ------------------------------------------------------------------------------------


def test_order_ws_when_cancelled_by_user_then_canceled() -> None:
    (entry,) = load("ws_private_order_cancelled.json")["data"]
    order = parsing.parse_order(entry)
    assert order.status is OrderStatus.CANCELED and order.reason == ""
    assert order.client_order_id == "client-1" and order.qty == D("0.010") and order.price == D("30000")
    assert order.ts_ms == 1700000005000


def test_order_ws_when_filled_then_filled() -> None:
    (entry,) = load("ws_private_order_filled.json")["data"]
    order = parsing.parse_order(entry)
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == D("0.100") and order.avg_price == D("30000.50")
    assert order.type is OrderType.LIMIT and order.trigger_price == D("29500.00")  # a conditional limit


def test_order_when_post_only_would_take_then_rejected_post_only() -> None:
    (entry,) = load("ws_private_order_cancelled.json")["data"]
    entry.update(cancelType="UNKNOWN", rejectReason="EC_PostOnlyWillTakeLiquidity", timeInForce="PostOnly")
    order = parsing.parse_order(entry)
    assert order.status is OrderStatus.REJECTED and order.reason == "post_only"
    assert order.tif is TimeInForce.POST_ONLY


def test_order_when_ioc_nothing_to_fill_then_expired() -> None:
    (entry,) = load("ws_private_order_cancelled.json")["data"]
    entry.update(cancelType="UNKNOWN", rejectReason="EC_NoImmediateQtyToFill", timeInForce="IOC")
    assert parsing.parse_order(entry).status is OrderStatus.EXPIRED


def test_order_when_cancel_races_fill_then_filled() -> None:
    (entry,) = load("ws_private_order_filled.json")["data"]
    entry.update(cancelType="CancelByUser", rejectReason="EC_OrigClOrdIDDoesNotExist")
    assert parsing.parse_order(entry).status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("side", "direction", "expected"),
    [
        ("Buy", 1, OrderType.STOP_MARKET),
        ("Sell", 2, OrderType.STOP_MARKET),
        ("Buy", 2, OrderType.TAKE_PROFIT_MARKET),
        ("Sell", 1, OrderType.TAKE_PROFIT_MARKET),
    ],
)
def test_order_when_conditional_market_then_type_from_direction(
    side: str, direction: int, expected: OrderType
) -> None:
    (entry,) = load("ws_private_order_cancelled.json")["data"]
    entry.update(
        orderType="Market",
        side=side,
        triggerDirection=direction,
        triggerPrice="31000",
        orderStatus="Untriggered",
        cancelType="UNKNOWN",
    )
    order = parsing.parse_order(entry)
    assert order.type is expected and order.status is OrderStatus.UNTRIGGERED
    assert order.trigger_price == D("31000") and order.price is None


def test_order_when_unknown_status_then_malformed() -> None:
    (entry,) = load("ws_private_order_cancelled.json")["data"]
    entry["orderStatus"] = "Exploded"
    with pytest.raises(MalformedMessage, match="orderStatus"):
        parsing.parse_order(entry)


def test_execution_ws_when_market_sell_then_fill() -> None:
    (entry,) = load("ws_private_execution.json")["data"]
    fill = parsing.parse_execution(entry, position_side=PositionSide.LONG)
    assert fill is not None and not isinstance(fill, FundingPayment)
    assert fill.side is Side.SELL and fill.position_side is PositionSide.LONG
    assert fill.price == D("95900.1") and fill.qty == D("0.5") and fill.fee == D("26.3725275")
    assert fill.client_order_id == "test-order-link-001" and fill.ts_ms == 1746270400353


def test_position_ws_when_short_then_negative_qty() -> None:
    (entry,) = load("ws_private_position.json")["data"]
    position = parsing.parse_position(entry)
    assert position.symbol == "ETHUSDT" and position.qty == D("-0.01")
    assert position.entry_price == D("3641.075") and position.leverage == 30
    assert position.liquidation_price == D("51764.83003276") and position.ts_ms == 1762199125472


def test_wallet_ws_when_message_then_balances() -> None:
    message = load("ws_private_wallet.json")
    (account,) = message["data"]
    balances = {b.asset: b for b in parsing.parse_balances(account, ts_ms=message["creationTime"])}
    usdt = balances["USDT"]
    assert usdt.wallet_balance == D("9647.75537647") and usdt.available_balance == D("9519.89806037")
    assert usdt.unrealized_pnl == 0 and usdt.ts_ms == 1700034722104


def test_decimal_when_float_then_malformed() -> None:
    with pytest.raises(MalformedMessage, match="decimal"):
        parsing.dec({"price": 1.5}, "price")


# ---- errors and auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "order", "kind", "reason"),
    [
        (10002, "timestamp", False, ClockSkew, None),
        (10003, "Invalid apikey", False, AuthFailed, None),
        (10004, "sign", False, AuthFailed, None),
        (10006, "Too many visits!", True, RateLimited, None),
        (10016, "Internal System Error.", True, VenueUnavailable, None),
        (110007, "Insufficient available balance", True, InsufficientMargin, "insufficient_margin"),
        (110001, "Order does not exist", True, OrderRejected, "unknown_order"),
        (110017, "ReduceOnly rule not satisified", True, OrderRejected, "reduce_only"),
        (110072, "OrderLinkedID is duplicate", True, OrderRejected, "duplicate_client_id"),
        (110094, "Order does not meet minimum order value", True, OrderRejected, "min_notional"),
        (110003, "Order price is out of permissible range", True, OrderRejected, "price_out_of_range"),
        (110092, "expect Rising", True, OrderRejected, "would_trigger_immediately"),
        (10001, "params error: price invalid (not a multiple of tickSize)", True, OrderRejected, "precision"),
        (10001, "params error: position idx not match position mode", True, OrderRejected, "position_side"),
        (10001, "The number of contracts below min limit allowed", True, OrderRejected, "qty_out_of_range"),
        (999999, "something new", True, OrderRejected, "other"),
        (999999, "something new", False, VenueError, None),
    ],
)
def test_error_for_when_retcode_then_engine_error(
    code: int, message: str, order: bool, kind: type[VenueError], reason: str | None
) -> None:
    err = error_for(code, message, order=order)
    assert type(err) is kind and err.code == code and err.venue == "bybit"
    if reason is not None:
        assert isinstance(err, OrderRejected) and err.reason == reason


def test_auth_signature_when_known_vector_then_hex_hmac() -> None:
    # hmac.new(b"secret", b"GET/realtime1700000000000", sha256).hexdigest()
    import hashlib
    import hmac

    expected = hmac.new(b"secret", b"GET/realtime1700000000000", hashlib.sha256).hexdigest()
    assert auth_signature("secret", 1700000000000) == expected
    assert len(expected) == 64


def test_trigger_by_when_mapped_then_engine_values() -> None:
    from engine.adapters.bybit.constants import TRIGGER_BY_IN, TRIGGER_BY_OUT

    for by in TriggerBy:
        assert TRIGGER_BY_IN[TRIGGER_BY_OUT[by]] is by
