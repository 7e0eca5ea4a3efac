"""OrderManager: order lifecycle, fills, positions and PnL, funding, reconciliation, protective exits."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.oms import (
    DiffKind,
    ExitKind,
    OrderManager,
    Severity,
    UpdateResult,
    dec_str,
    money_str,
)
from engine.types import (
    Balance,
    BalanceUpdate,
    Fill,
    FundingPayment,
    MarginMode,
    MarkPrice,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionSide,
    PositionUpdate,
    Side,
    TimeInForce,
    Venue,
)

D = Decimal
BN = Venue.BINANCE
BY = Venue.BYBIT
_trade_ids = itertools.count(1)


def request(
    cid: str = "c1",
    *,
    side: Side = Side.BUY,
    qty: str = "2",
    price: str | None = "100",
    symbol: str = "BTCUSDT",
    venue: Venue = BN,
    type: OrderType = OrderType.LIMIT,
    position_side: PositionSide = PositionSide.BOTH,
    reduce_only: bool = False,
) -> OrderRequest:
    return OrderRequest(
        venue=venue,
        symbol=symbol,
        side=side,
        type=type,
        qty=D(qty),
        client_order_id=cid,
        price=None if price is None else D(price),
        position_side=position_side,
        reduce_only=reduce_only,
    )


def order(
    cid: str = "c1",
    status: OrderStatus = OrderStatus.NEW,
    *,
    filled: str = "0",
    qty: str = "2",
    side: Side = Side.BUY,
    price: str | None = "100",
    ts: int = 1,
    symbol: str = "BTCUSDT",
    venue: Venue = BN,
    position_side: PositionSide = PositionSide.BOTH,
    avg: str = "0",
    reduce_only: bool = False,
    type: OrderType = OrderType.LIMIT,
    trigger: str | None = None,
) -> Order:
    return Order(
        venue=venue,
        symbol=symbol,
        client_order_id=cid,
        venue_order_id="v-" + cid,
        side=side,
        type=type,
        tif=TimeInForce.GTC,
        qty=D(qty),
        price=None if price is None else D(price),
        filled_qty=D(filled),
        avg_price=D(avg),
        status=status,
        reduce_only=reduce_only,
        position_side=position_side,
        trigger_price=None if trigger is None else D(trigger),
        ts_ms=ts,
    )


def fill(
    cid: str = "c1",
    side: Side = Side.BUY,
    qty: str = "1",
    price: str = "100",
    *,
    fee: str = "0",
    trade_id: str | None = None,
    symbol: str = "BTCUSDT",
    venue: Venue = BN,
    position_side: PositionSide = PositionSide.BOTH,
    fee_asset: str = "USDT",
    ts: int = 2,
) -> Fill:
    return Fill(
        venue=venue,
        symbol=symbol,
        client_order_id=cid,
        venue_order_id="v-" + cid,
        trade_id=trade_id or f"t{next(_trade_ids)}",
        side=side,
        position_side=position_side,
        price=D(price),
        qty=D(qty),
        fee=D(fee),
        fee_asset=fee_asset,
        is_maker=False,
        realized_pnl=D(0),
        ts_ms=ts,
    )


def venue_position(
    qty: str,
    entry: str,
    *,
    symbol: str = "BTCUSDT",
    side: PositionSide = PositionSide.BOTH,
    venue: Venue = BN,
    ts: int = 10,
    mark: str = "0",
) -> Position:
    return Position(
        venue=venue,
        symbol=symbol,
        side=side,
        qty=D(qty),
        entry_price=D(entry),
        mark_price=D(mark),
        unrealized_pnl=D(0),
        leverage=10,
        margin_mode=MarginMode.CROSS,
        liquidation_price=D(0),
        ts_ms=ts,
    )


def balance(wallet: str, *, venue: Venue = BN, asset: str = "USDT", ts: int = 1) -> Balance:
    return Balance(
        venue=venue,
        asset=asset,
        wallet_balance=D(wallet),
        available_balance=D(wallet),
        unrealized_pnl=D(0),
        ts_ms=ts,
    )


def mark(price: str, *, symbol: str = "BTCUSDT", venue: Venue = BN) -> MarkPrice:
    return MarkPrice(
        venue=venue,
        symbol=symbol,
        mark_price=D(price),
        index_price=D(price),
        funding_rate=D(0),
        next_funding_ms=0,
        ts_ms=1,
    )


def trade(
    oms: OrderManager,
    side: Side,
    qty: str,
    price: str,
    *,
    fee: str = "0",
    symbol: str = "BTCUSDT",
    position_side: PositionSide = PositionSide.BOTH,
    venue: Venue = BN,
) -> None:
    """A market order sent and filled at once."""
    cid = f"m{next(_trade_ids)}"
    oms.on_submit(
        request(
            cid,
            side=side,
            qty=qty,
            price=None,
            symbol=symbol,
            venue=venue,
            type=OrderType.MARKET,
            position_side=position_side,
        ),
        ts_ms=1,
    )
    oms.on_order_update(
        OrderUpdate(
            order=order(
                cid,
                OrderStatus.FILLED,
                filled=qty,
                qty=qty,
                side=side,
                price=None,
                avg=price,
                symbol=symbol,
                venue=venue,
                position_side=position_side,
                type=OrderType.MARKET,
            ),
            fill=fill(
                cid, side, qty, price, fee=fee, symbol=symbol, venue=venue, position_side=position_side
            ),
        )
    )


# ---- order lifecycle -----------------------------------------------------------------------------------


def test_submit_when_sent_then_pending_and_counted_open() -> None:
    oms = OrderManager()
    tracked = oms.on_submit(request("c1"), ts_ms=5)
    assert tracked.status is OrderStatus.PENDING
    assert [t.client_order_id for t in oms.open_orders()] == ["c1"]
    assert oms.open_order_count(BN, "BTCUSDT") == 1
    assert oms.pending_orders() == [tracked]


def test_submit_when_client_id_reused_then_value_error() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    with pytest.raises(ValueError, match="duplicate client order id"):
        oms.on_submit(request("c1"), ts_ms=2)


def test_lifecycle_when_partial_fills_then_filled_and_fees_accumulated() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1", qty="2"), ts_ms=1)
    assert oms.on_order(order("c1", OrderStatus.NEW, ts=2)) is UpdateResult.APPLIED
    oms.on_order_update(
        OrderUpdate(
            order=order("c1", OrderStatus.PARTIALLY_FILLED, filled="0.5", ts=3),
            fill=fill("c1", qty="0.5", price="100", fee="0.02"),
        )
    )
    t = oms.order(BN, "c1")
    assert t is not None and t.status is OrderStatus.PARTIALLY_FILLED and t.order.filled_qty == D("0.5")
    assert t.is_open and t.remaining_qty == D("1.5")
    oms.on_order_update(
        OrderUpdate(
            order=order("c1", OrderStatus.FILLED, filled="2", ts=4),
            fill=fill("c1", qty="1.5", price="100", fee="0.06"),
        )
    )
    t = oms.order(BN, "c1")
    assert t is not None and t.status is OrderStatus.FILLED and not t.is_open
    assert t.fees == D("0.08") and t.fill_qty == D("2")
    assert oms.open_orders() == []
    assert oms.totals().fees == D("0.08")
    assert oms.position(BN, "BTCUSDT").qty == D("2")


def test_update_when_new_arrives_after_filled_then_ignored_and_counted_stale() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.FILLED, filled="2", ts=5))
    assert oms.on_order(order("c1", OrderStatus.NEW, ts=3)) is UpdateResult.STALE
    assert oms.on_order(order("c1", OrderStatus.PARTIALLY_FILLED, filled="1", ts=4)) is UpdateResult.STALE
    assert oms.on_order(order("c1", OrderStatus.CANCELED, filled="2", ts=6)) is UpdateResult.STALE
    t = oms.order(BN, "c1")
    assert t is not None and t.status is OrderStatus.FILLED and t.order.filled_qty == D("2")
    assert oms.stats()["orders_stale"] == 3


def test_update_when_partial_fill_goes_backwards_then_stale() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.PARTIALLY_FILLED, filled="1.5", ts=5))
    assert oms.on_order(order("c1", OrderStatus.PARTIALLY_FILLED, filled="0.5", ts=4)) is UpdateResult.STALE
    assert oms.on_order(order("c1", OrderStatus.NEW, ts=6)) is UpdateResult.STALE
    t = oms.order(BN, "c1")
    assert t is not None and t.order.filled_qty == D("1.5")


def test_update_when_same_state_repeated_then_duplicate() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    assert oms.on_order(order("c1", OrderStatus.NEW, ts=2)) is UpdateResult.APPLIED
    assert oms.on_order(order("c1", OrderStatus.NEW, ts=2)) is UpdateResult.DUPLICATE
    assert oms.stats()["orders_duplicate"] == 1


def test_update_when_amended_price_then_applied() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.NEW, ts=2))
    assert oms.on_order(order("c1", OrderStatus.NEW, price="101", ts=3)) is UpdateResult.APPLIED
    t = oms.order(BN, "c1")
    assert t is not None and t.order.price == D("101")


def test_fill_when_delivered_twice_then_applied_once() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    f = fill("c1", qty="1", price="100", fee="0.04", trade_id="T1")
    assert oms.on_fill(f) is True
    assert oms.on_fill(f) is False
    assert oms.position(BN, "BTCUSDT").qty == D("1")
    assert oms.totals().fees == D("0.04")
    assert oms.stats()["fills_duplicate"] == 1


def test_fill_when_same_trade_id_other_side_then_both_applied() -> None:
    """A self-trade: one Binance trade id, two fills of ours (buy and sell)."""
    oms = OrderManager()
    oms.on_fill(fill("a", Side.BUY, "1", "100", trade_id="T9"))
    oms.on_fill(fill("b", Side.SELL, "1", "100", trade_id="T9"))
    assert oms.stats()["fills"] == 2
    assert oms.position(BN, "BTCUSDT").qty == 0


def test_fill_when_arrives_with_stale_status_then_fill_still_applied() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.FILLED, filled="2", ts=5))
    result = oms.on_order_update(
        OrderUpdate(
            order=order("c1", OrderStatus.PARTIALLY_FILLED, filled="1", ts=3),
            fill=fill("c1", qty="1", price="100"),
        )
    )
    assert result is UpdateResult.STALE
    assert oms.position(BN, "BTCUSDT").qty == D("1")


def test_fill_when_client_id_unknown_then_external_order_recorded_and_queried() -> None:
    oms = OrderManager()
    oms.on_fill(fill("web-123", Side.SELL, "0.3", "200", fee="0.01"))
    t = oms.order(BN, "web-123")
    assert t is not None and t.external and t.closed_out
    assert t.order.filled_qty == D("0.3") and t.fees == D("0.01")
    assert oms.needs_query() == [t]
    assert oms.position(BN, "BTCUSDT").qty == D("-0.3")
    assert oms.stats()["fills_external"] == 1
    # The venue's answer arrives: the order is known from then on.
    oms.on_query_result(
        BN, "web-123", order("web-123", OrderStatus.FILLED, filled="0.3", qty="0.3", side=Side.SELL), ts_ms=9
    )
    t = oms.order(BN, "web-123")
    assert t is not None and t.status is OrderStatus.FILLED and not t.closed_out and t.external


def test_update_when_client_id_unknown_then_adopted_as_external() -> None:
    oms = OrderManager()
    assert oms.on_order(order("manual", OrderStatus.NEW)) is UpdateResult.ADOPTED
    t = oms.order(BN, "manual")
    assert t is not None and t.external and t.is_open


def test_submit_rejected_when_venue_refuses_then_rejected_with_reason() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_submit_rejected(BN, "c1", reason="post_only", ts_ms=2)
    t = oms.order(BN, "c1")
    assert t is not None and t.status is OrderStatus.REJECTED and t.order.reason == "post_only"
    assert oms.open_orders() == []


def test_conditional_when_untriggered_then_triggers_forward_only() -> None:
    oms = OrderManager()
    oms.on_submit(
        request("sl", side=Side.SELL, type=OrderType.STOP_MARKET, price=None, reduce_only=True), ts_ms=1
    )
    oms.on_order(order("sl", OrderStatus.UNTRIGGERED, side=Side.SELL, price=None, trigger="90", ts=2))
    assert (
        oms.on_order(order("sl", OrderStatus.NEW, side=Side.SELL, price=None, trigger="90", ts=3))
        is UpdateResult.APPLIED
    )
    assert (
        oms.on_order(order("sl", OrderStatus.UNTRIGGERED, side=Side.SELL, price=None, trigger="90", ts=4))
        is UpdateResult.STALE
    )


def test_closed_orders_when_over_memory_then_forgotten_and_late_events_stale() -> None:
    oms = OrderManager(max_closed_orders=2)
    for i in range(4):
        oms.on_submit(request(f"c{i}"), ts_ms=1)
        oms.on_order(order(f"c{i}", OrderStatus.CANCELED, ts=2))
    assert [t.client_order_id for t in oms.orders()] == ["c2", "c3"]
    assert oms.on_order(order("c0", OrderStatus.NEW, ts=1)) is UpdateResult.STALE
    assert oms.order(BN, "c0") is None


def test_retired_keys_when_over_retired_memory_then_bounded_and_late_events_still_stale() -> None:
    oms = OrderManager(max_closed_orders=2, retired_memory=3)
    for i in range(20):
        oms.on_submit(request(f"c{i}"), ts_ms=10 * i)
        oms.on_order(order(f"c{i}", OrderStatus.FILLED, filled="2", ts=10 * i + 1))
    stats = oms.stats()
    assert stats["orders_held"] == 2 and stats["orders_retired_remembered"] == 3
    # c0 was forgotten entirely (neither held nor remembered): its late NEW is still stale, not adopted
    assert oms.on_order(order("c0", OrderStatus.NEW, ts=1)) is UpdateResult.STALE
    assert oms.order(BN, "c0") is None and oms.open_orders() == []
    assert oms.stats()["orders_beyond_memory"] == 1
    # a remembered retired key: stale as before; a new external order (newer than any forgotten): adopted
    assert oms.on_order(order("c16", OrderStatus.NEW, ts=161)) is UpdateResult.STALE
    assert oms.on_order(order("web-1", OrderStatus.NEW, ts=1000)) is UpdateResult.ADOPTED


def test_fill_ids_when_over_dedup_memory_then_bounded_and_replayed_old_fill_not_counted_twice() -> None:
    oms = OrderManager(dedup_memory=3)
    oms.on_submit(request("c1", qty="10"), ts_ms=1)
    fills = [fill("c1", qty="1", ts=100 + i) for i in range(8)]
    for f in fills:
        assert oms.on_fill(f)
    assert oms.stats()["fills_remembered"] == 3
    assert oms.position(BN, "BTCUSDT").qty == D("8")
    assert not oms.on_fill(fills[0])  # forgotten id, older than the newest forgotten: not counted again
    assert not oms.on_fill(fills[-1])  # remembered id: a plain duplicate
    assert oms.position(BN, "BTCUSDT").qty == D("8")
    assert oms.stats()["fills_beyond_memory"] == 1
    assert oms.on_fill(fill("c1", qty="1", ts=200))  # a new fill is applied
    assert oms.position(BN, "BTCUSDT").qty == D("9")


def test_as_dict_when_rendered_then_contract_keys_as_strings() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1", qty="0.010", price="65000.50"), ts_ms=1)
    d = oms.open_orders()[0].as_dict()
    assert {
        k: d[k]
        for k in (
            "client_order_id",
            "venue",
            "symbol",
            "side",
            "type",
            "price",
            "qty",
            "filled_qty",
            "status",
        )
    } == {
        "client_order_id": "c1",
        "venue": "binance",
        "symbol": "BTCUSDT",
        "side": "buy",
        "type": "limit",
        "price": "65000.5",
        "qty": "0.01",
        "filled_qty": "0",
        "status": "pending",
    }


# ---- positions and PnL ---------------------------------------------------------------------------------


def test_long_when_opened_added_reduced_closed_then_pnl_exact() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100", fee="0.04")
    trade(oms, Side.BUY, "1", "110", fee="0.044")
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("2") and p.entry_price == D("105")
    oms.on_mark(mark("120"))
    assert oms.position(BN, "BTCUSDT").unrealized_pnl == D("30")
    trade(oms, Side.SELL, "0.5", "120", fee="0.024")  # realizes 0.5 x (120 - 105) = 7.5
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("1.5") and p.entry_price == D("105") and p.realized_pnl == D("7.5")
    assert p.unrealized_pnl == D("22.5")
    trade(oms, Side.SELL, "1.5", "100", fee="0.06")  # realizes 1.5 x (100 - 105) = -7.5
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == 0 and p.realized_pnl == D("0") and p.unrealized_pnl == 0
    t = oms.totals()
    assert t.realized_pnl == D("0") and t.fees == D("0.168") and t.net_pnl == D("-0.168")
    assert p.fees == D("0.168")


def test_short_when_opened_and_covered_then_pnl_exact() -> None:
    oms = OrderManager()
    trade(oms, Side.SELL, "3", "2000.10")
    oms.on_mark(mark("1990.05"))
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("-3") and p.entry_price == D("2000.10")
    assert p.unrealized_pnl == D("30.15")  # 3 x (2000.10 - 1990.05)
    assert p.as_dict()["side"] == "short" and p.as_dict()["qty"] == "-3"
    trade(oms, Side.BUY, "1", "1980.00")  # 1 x (2000.10 - 1980.00) = 20.10
    assert oms.position(BN, "BTCUSDT").realized_pnl == D("20.10")
    assert oms.position(BN, "BTCUSDT").unrealized_pnl == D("20.10")  # 2 x 10.05


def test_position_when_flipped_through_zero_then_rest_opens_at_fill_price() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100")
    trade(oms, Side.SELL, "3", "90")  # closes 1 at -10, opens 2 short at 90
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("-2") and p.entry_price == D("90") and p.realized_pnl == D("-10")
    trade(oms, Side.BUY, "2", "85")  # +10
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == 0 and p.realized_pnl == D("0")
    assert oms.totals().realized_pnl == D("0")


def test_partial_reduce_when_entry_repeats_then_pnl_to_the_cent() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100")
    trade(oms, Side.BUY, "2", "101")  # entry 302/3 = 100.666...
    trade(oms, Side.SELL, "1", "102")  # realized 102 - 100.666... = 1.333...
    p = oms.position(BN, "BTCUSDT")
    assert money_str(p.realized_pnl) == "1.33333333"
    trade(oms, Side.SELL, "2", "102")  # closes: total realized = 306 - 302 = 4 exactly
    assert oms.totals().realized_pnl == D("4")


def test_hedge_mode_when_long_and_short_then_independent_positions() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100", position_side=PositionSide.LONG)
    trade(oms, Side.SELL, "2", "101", position_side=PositionSide.SHORT)
    oms.on_mark(mark("105"))
    long = oms.position(BN, "BTCUSDT", PositionSide.LONG)
    short = oms.position(BN, "BTCUSDT", PositionSide.SHORT)
    assert long.qty == D("1") and long.unrealized_pnl == D("5")
    assert short.qty == D("-2") and short.unrealized_pnl == D("-8")
    trade(oms, Side.SELL, "1", "106", position_side=PositionSide.LONG)  # closes the long: +6
    assert oms.position(BN, "BTCUSDT", PositionSide.LONG).qty == 0
    assert oms.position(BN, "BTCUSDT", PositionSide.SHORT).qty == D("-2")
    assert oms.totals().realized_pnl == D("6")
    [e] = oms.exposure()
    assert (e.long_qty, e.short_qty, e.net_qty) == (D(0), D(2), D(-2))


def test_funding_when_paid_and_received_then_booked_to_symbol_and_position() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100")
    oms.on_event(FundingPayment(venue=BN, symbol="BTCUSDT", amount=D("-0.0125"), ts_ms=10))
    oms.on_event(FundingPayment(venue=BN, symbol="BTCUSDT", amount=D("0.005"), ts_ms=20))
    assert oms.position(BN, "BTCUSDT").funding == D("-0.0075")
    t = oms.totals()
    assert t.funding == D("-0.0075") and t.net_pnl == D("-0.0075")
    assert oms.funding_by_symbol() == {(BN, "BTCUSDT"): D("-0.0075")}


def test_fee_when_in_other_asset_then_kept_apart_from_pnl() -> None:
    oms = OrderManager()
    oms.on_fill(fill("a", Side.BUY, "1", "100", fee="0.0001", fee_asset="BNB"))
    assert oms.totals().fees == 0
    assert oms.fees_by_asset() == {"USDT": D(0), "BNB": D("0.0001")}


def test_totals_when_balances_and_marks_then_equity_and_daily_pnl() -> None:
    oms = OrderManager()
    oms.on_event(BalanceUpdate(balance=balance("10000"), reason="reconcile"))
    oms.on_event(BalanceUpdate(balance=balance("5", asset="BNB"), reason="reconcile"))
    oms.reset_day(1_000)
    trade(oms, Side.BUY, "2", "100", fee="0.08")
    oms.on_mark(mark("99.5"))
    t = oms.totals()
    assert t.unrealized_pnl == D("-1") and t.wallet_balance == D("10000") and t.equity == D("9999")
    assert t.daily_pnl == D("-1.08") and t.day_start_ms == 1_000
    oms.reset_day(2_000, carried=D("-1.08"))  # e.g. after a restart within the same day
    assert oms.daily_pnl() == D("-1.08")
    assert t.as_dict()["equity"] == "9999" and t.as_dict()["daily_pnl"] == "-1.08"


def test_exposure_when_positions_and_orders_then_notional_at_mark() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "2", "100")
    trade(oms, Side.SELL, "10", "50", symbol="ETHUSDT")
    oms.on_submit(request("o1", side=Side.BUY, qty="0.5"), ts_ms=1)
    oms.on_submit(request("o2", side=Side.SELL, qty="1", reduce_only=True), ts_ms=1)
    oms.on_mark(mark("110"))
    by = {e.symbol: e for e in oms.exposure()}
    assert by["BTCUSDT"].gross_notional == D("220") and by["BTCUSDT"].net_notional == D("220")
    assert by["BTCUSDT"].open_orders == 2 and by["BTCUSDT"].open_buy_qty == D("0.5")
    assert by["BTCUSDT"].open_sell_qty == 0  # reduce-only does not add exposure
    assert by["ETHUSDT"].gross_notional == D("500") and by["ETHUSDT"].net_notional == D("-500")
    assert oms.gross_notional() == D("720") and oms.net_notional() == D("-280")


def test_positions_as_dict_when_rendered_then_contract_shape() -> None:
    oms = OrderManager()
    trade(oms, Side.SELL, "0.010", "65000.1")
    oms.on_mark(mark("64000"))
    [d] = [p.as_dict() for p in oms.positions()]
    assert (d["venue"], d["symbol"], d["side"], d["qty"], d["entry_price"], d["unrealized_pnl"]) == (
        "binance",
        "BTCUSDT",
        "short",
        "-0.01",
        "65000.1",
        "10.001",
    )


# ---- venue position updates ----------------------------------------------------------------------------


def test_position_update_when_before_its_fill_then_resolved_by_the_fill() -> None:
    """Binance sends ACCOUNT_UPDATE before the fill's ORDER_TRADE_UPDATE: no correction, no double count."""
    oms = OrderManager(position_grace_ms=3_000)
    assert oms.on_event(PositionUpdate(position=venue_position("1", "100", ts=10))) == []
    trade(oms, Side.BUY, "1", "100")
    assert oms.position(BN, "BTCUSDT").qty == D("1")
    assert oms.check_positions(now_ms=100_000) == []
    assert oms.stats()["positions_resolved"] == 1


def test_position_update_when_difference_persists_then_corrected_and_irreconcilable() -> None:
    oms = OrderManager(position_grace_ms=3_000)
    trade(oms, Side.BUY, "1", "100")
    oms.on_event(PositionUpdate(position=venue_position("1.5", "102", ts=10_000)))
    assert oms.check_positions(now_ms=12_999) == []
    assert oms.position(BN, "BTCUSDT").qty == D("1")
    diffs = oms.check_positions(now_ms=13_000)
    assert [(d.kind, d.severity, d.field, d.local, d.remote) for d in diffs] == [
        (DiffKind.POSITION_CORRECTED, Severity.IRRECONCILABLE, "qty", "1", "1.5"),
        (DiffKind.POSITION_CORRECTED, Severity.WARNING, "entry_price", "100", "102"),
    ]
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("1.5") and p.entry_price == D("102")
    assert oms.check_positions(now_ms=20_000) == []


def test_position_update_when_stale_then_ignored() -> None:
    oms = OrderManager(position_grace_ms=0)
    trade(oms, Side.BUY, "1", "100")
    oms.on_event(PositionUpdate(position=venue_position("1", "100", ts=10)))
    assert oms.on_event(PositionUpdate(position=venue_position("5", "100", ts=9))) == []
    assert oms.position(BN, "BTCUSDT").qty == D("1") and oms.stats()["positions_stale"] == 1


def test_position_update_when_entry_rounded_by_venue_then_in_sync() -> None:
    oms = OrderManager(position_grace_ms=0)
    trade(oms, Side.BUY, "1", "100")
    trade(oms, Side.BUY, "2", "101")  # entry 100.6666...
    assert oms.on_event(PositionUpdate(position=venue_position("3", "100.66666667", ts=10))) == []


# ---- reconciliation ------------------------------------------------------------------------------------


def test_reconcile_when_venue_has_unknown_order_and_position_then_adopted_as_external() -> None:
    oms = OrderManager()
    report = oms.reconcile(
        BN,
        [order("ext", OrderStatus.NEW, qty="1", price="90")],
        [venue_position("-0.5", "95")],
        [balance("1000")],
        ts_ms=7,
    )
    assert [(d.kind, d.severity, d.ref, d.field, d.local, d.remote) for d in report.differences] == [
        (DiffKind.ORDER_ADOPTED, Severity.INFO, "ext", "status", "absent", "new"),
        (DiffKind.POSITION_ADOPTED, Severity.WARNING, "both", "qty", "0", "-0.5"),
        (DiffKind.BALANCE_ADOPTED, Severity.INFO, "USDT", "wallet_balance", "absent", "1000"),
    ]
    assert report.irreconcilable == () and not report.ok
    t = oms.order(BN, "ext")
    assert t is not None and t.external and t.is_open
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("-0.5") and p.entry_price == D("95") and p.external
    assert oms.totals().wallet_balance == D("1000")


def test_reconcile_when_local_order_missing_on_venue_then_closed_out_and_queried() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.NEW, ts=2))
    oms.on_submit(request("c2"), ts_ms=3)  # an intent with no answer
    report = oms.reconcile(BN, [], [], [])
    assert [(d.kind, d.ref, d.local, d.remote) for d in report.differences] == [
        (DiffKind.ORDER_CLOSED_OUT, "c1", "new", "absent"),
        (DiffKind.ORDER_CLOSED_OUT, "c2", "pending", "absent"),
    ]
    assert report.needs_query == (("BTCUSDT", "c1"), ("BTCUSDT", "c2"))
    assert oms.open_orders() == [] and len(oms.needs_query()) == 2
    # The query results: c1 was filled meanwhile, the venue never saw c2.
    oms.on_query_result(BN, "c1", order("c1", OrderStatus.FILLED, filled="2", ts=9), ts_ms=9)
    oms.on_query_result(BN, "c2", None, ts_ms=9)
    c1, c2 = oms.order(BN, "c1"), oms.order(BN, "c2")
    assert c1 is not None and c1.status is OrderStatus.FILLED and not c1.closed_out
    assert c2 is not None and c2.status is OrderStatus.REJECTED and c2.order.reason == "not_found"
    assert oms.needs_query() == []


def test_reconcile_when_positions_differ_then_corrected_with_exact_differences() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "2", "100")
    trade(oms, Side.SELL, "1", "50", symbol="ETHUSDT")
    report = oms.reconcile(BN, [], [venue_position("1.25", "100.5")], [])
    assert [(d.kind, d.severity, d.symbol, d.field, d.local, d.remote) for d in report.differences] == [
        (DiffKind.POSITION_CORRECTED, Severity.WARNING, "BTCUSDT", "qty", "2", "1.25"),
        (DiffKind.POSITION_CORRECTED, Severity.WARNING, "BTCUSDT", "entry_price", "100", "100.5"),
        (DiffKind.POSITION_CLOSED, Severity.WARNING, "ETHUSDT", "qty", "-1", "0"),
    ]
    assert oms.position(BN, "BTCUSDT").qty == D("1.25")
    assert oms.position(BN, "BTCUSDT").entry_price == D("100.5")
    assert oms.position(BN, "ETHUSDT").qty == 0
    assert oms.reconcile(BN, [], [venue_position("1.25", "100.5")], []).ok


def test_reconcile_when_venue_order_ahead_then_taken_and_reported() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.NEW, ts=2))
    report = oms.reconcile(BN, [order("c1", OrderStatus.PARTIALLY_FILLED, filled="0.5", ts=3)], [], [])
    assert [(d.kind, d.field, d.local, d.remote) for d in report.differences] == [
        (DiffKind.ORDER_UPDATED, "status", "new", "partially_filled"),
        (DiffKind.ORDER_UPDATED, "filled_qty", "0", "0.5"),
    ]
    t = oms.order(BN, "c1")
    assert t is not None and t.order.filled_qty == D("0.5")


def test_reconcile_when_client_id_collides_then_irreconcilable() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1", side=Side.BUY), ts_ms=1)
    report = oms.reconcile(BN, [order("c1", OrderStatus.NEW, side=Side.SELL)], [], [])
    [d] = report.irreconcilable
    assert (d.kind, d.field, d.local, d.remote) == (DiffKind.ORDER_CONFLICT, "side", "buy", "sell")
    assert report.needs_query == (("BTCUSDT", "c1"),)


def test_reconcile_when_order_terminal_locally_but_open_on_venue_then_conflict_and_query() -> None:
    oms = OrderManager()
    oms.on_submit(request("c1"), ts_ms=1)
    oms.on_order(order("c1", OrderStatus.CANCELED, ts=2))
    report = oms.reconcile(BN, [order("c1", OrderStatus.NEW, ts=1)], [], [])
    [d] = report.differences
    assert (d.kind, d.severity, d.local, d.remote) == (
        DiffKind.ORDER_CONFLICT,
        Severity.WARNING,
        "canceled",
        "new",
    )
    t = oms.order(BN, "c1")
    assert t is not None and t.status is OrderStatus.CANCELED


def test_reconcile_when_one_way_and_hedge_positions_together_then_irreconcilable() -> None:
    oms = OrderManager()
    report = oms.reconcile(
        BN, [], [venue_position("1", "100"), venue_position("2", "100", side=PositionSide.LONG)], []
    )
    assert [d.kind for d in report.irreconcilable] == [DiffKind.POSITION_CONFLICT]


def test_reconcile_when_other_venue_then_untouched() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100", venue=BY)
    oms.on_submit(request("c1", venue=BY), ts_ms=1)
    assert oms.reconcile(BN, [], [], []).ok
    assert oms.position(BY, "BTCUSDT").qty == D("1") and len(oms.open_orders(BY)) == 1


def test_reconcile_when_balance_differs_then_corrected() -> None:
    oms = OrderManager()
    oms.on_balance(balance("100"))
    report = oms.reconcile(BN, [], [], [balance("99.5", ts=5)])
    [d] = report.differences
    assert (d.kind, d.local, d.remote) == (DiffKind.BALANCE_CORRECTED, "100", "99.5")
    assert report.as_dict()["differences"] == [d.as_dict()]


# ---- protective exits ----------------------------------------------------------------------------------


def test_exits_when_long_crosses_stop_then_one_trigger_with_backup_flag() -> None:
    oms = OrderManager()
    oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, stop_loss=D("95"), take_profit=D("110"))
    assert oms.check_exits("BTCUSDT", D("90")) == []  # not armed: no position yet
    trade(oms, Side.BUY, "2", "100")
    oms.on_submit(
        request("sl1", side=Side.SELL, type=OrderType.STOP_MARKET, price=None, reduce_only=True), ts_ms=1
    )
    oms.attach_exit_order(BN, "BTCUSDT", ExitKind.STOP_LOSS, "sl1")
    assert oms.check_exits("BTCUSDT", D("96")) == []
    [t] = oms.check_exits("BTCUSDT", D("95"))
    assert (t.kind, t.level, t.close_side, t.qty, t.venue_order_client_id, t.backup) == (
        ExitKind.STOP_LOSS,
        D("95"),
        Side.SELL,
        D("2"),
        "sl1",
        False,
    )
    assert oms.check_exits("BTCUSDT", D("94")) == []  # fired once
    oms.rearm_exits(BN, "BTCUSDT")
    oms.on_order(order("sl1", OrderStatus.CANCELED, side=Side.SELL, price=None, reduce_only=True, ts=9))
    [t] = oms.check_exits("BTCUSDT", D("94"))
    assert t.backup is True  # the venue order is gone: the engine must close locally


def test_exits_when_short_reaches_target_then_take_profit() -> None:
    oms = OrderManager()
    trade(oms, Side.SELL, "1", "100")
    oms.set_exits(BN, "BTCUSDT", entry_side=Side.SELL, stop_loss=D("105"), take_profit=D("90"))
    assert oms.check_exits("BTCUSDT", D("91")) == []
    [t] = oms.check_exits("BTCUSDT", D("90"))
    assert (t.kind, t.close_side, t.backup) == (ExitKind.TAKE_PROFIT, Side.BUY, True)


def test_trailing_when_price_rises_then_level_follows_and_triggers_on_pullback() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100")
    ex = oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, trailing_stop_bps=100, reference_price=D("100"))
    assert ex.trailing_level == D("99")
    assert oms.check_exits("BTCUSDT", D("110")) == []
    lv = oms.exit_levels(BN, "BTCUSDT")
    assert lv is not None and lv.trailing_anchor == D("110") and lv.trailing_level == D("108.9")
    assert oms.check_exits("BTCUSDT", D("109")) == []  # above the level; the anchor stays at 110
    lv = oms.exit_levels(BN, "BTCUSDT")
    assert lv is not None and lv.trailing_anchor == D("110")
    [t] = oms.check_exits("BTCUSDT", D("108.9"))
    assert (t.kind, t.level, t.price) == (ExitKind.TRAILING_STOP, D("108.9"), D("108.9"))


def test_trailing_when_short_then_level_follows_down() -> None:
    oms = OrderManager()
    trade(oms, Side.SELL, "1", "100")
    oms.set_exits(BN, "BTCUSDT", entry_side=Side.SELL, trailing_stop_bps=200)  # anchor: entry 100
    assert oms.check_exits("BTCUSDT", D("90")) == []  # anchor 90, level 91.8
    assert oms.check_exits("BTCUSDT", D("91.7")) == []
    [t] = oms.check_exits("BTCUSDT", D("91.8"))
    assert (t.kind, t.level, t.close_side) == (ExitKind.TRAILING_STOP, D("91.8"), Side.BUY)


def test_exits_when_stop_and_trailing_cross_together_then_stop_loss_first() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100")
    oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, stop_loss=D("97"), trailing_stop_bps=100)
    [t] = oms.check_exits("BTCUSDT", D("96"))
    assert t.kind is ExitKind.STOP_LOSS
    assert oms.check_exits("BTCUSDT", D("95")) == []


def test_exits_when_position_closes_then_disarmed_and_orders_listed_for_cancel() -> None:
    oms = OrderManager()
    trade(oms, Side.BUY, "1", "100")
    oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, stop_loss=D("95"), take_profit=D("110"))
    oms.attach_exit_order(BN, "BTCUSDT", ExitKind.STOP_LOSS, "sl1")
    oms.attach_exit_order(BN, "BTCUSDT", ExitKind.TAKE_PROFIT, "tp1")
    trade(oms, Side.SELL, "1", "105")
    assert oms.exit_levels(BN, "BTCUSDT") is None
    assert oms.take_stale_exit_orders() == [(BN, "BTCUSDT", "sl1"), (BN, "BTCUSDT", "tp1")]
    assert oms.take_stale_exit_orders() == []
    trade(oms, Side.BUY, "1", "80")
    assert oms.check_exits("BTCUSDT", D("80")) == []


def test_exits_when_levels_on_wrong_side_then_value_error() -> None:
    oms = OrderManager()
    with pytest.raises(ValueError, match="wrong sides"):
        oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, stop_loss=D("110"), take_profit=D("95"))
    with pytest.raises(ValueError, match="do not open"):
        oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, position_side=PositionSide.SHORT)
    with pytest.raises(ValueError, match="trailing_stop_bps"):
        oms.set_exits(BN, "BTCUSDT", entry_side=Side.BUY, trailing_stop_bps=0)


# ---- formatting ----------------------------------------------------------------------------------------


def test_dec_str_when_exponent_or_negative_zero_then_plain() -> None:
    assert dec_str(D("1E+3")) == "1000"
    assert dec_str(D("-0.000")) == "0"
    assert dec_str(D("0.0100")) == "0.01"
    assert money_str(D("1.000000005")) == "1"
    assert money_str(D("1.000000015")) == "1.00000002"


# ---- property: PnL equals a brute-force mark-to-market oracle -----------------------------------------

_qty = st.decimals(min_value=D("0.001"), max_value=D("5"), places=3)
_price = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)


@settings(max_examples=300, deadline=None)
@given(
    fills=st.lists(
        st.tuples(
            st.sampled_from([Side.BUY, Side.SELL]), _qty, _price, st.sampled_from(["BTCUSDT", "ETHUSDT"])
        ),
        min_size=1,
        max_size=40,
    ),
    marks=st.tuples(_price, _price),
)
def test_property_when_random_fills_then_realized_plus_unrealized_equals_oracle(
    fills: list[tuple[Side, Decimal, Decimal, str]], marks: tuple[Decimal, Decimal]
) -> None:
    oms = OrderManager()
    cash: dict[str, Decimal] = {"BTCUSDT": D(0), "ETHUSDT": D(0)}
    qty: dict[str, Decimal] = {"BTCUSDT": D(0), "ETHUSDT": D(0)}
    for i, (side, q, p, sym) in enumerate(fills):
        oms.on_fill(fill(f"p{i}", side, str(q), str(p), symbol=sym, trade_id=f"prop{i}"))
        cash[sym] -= side.sign * q * p
        qty[sym] += side.sign * q
    mark_by = dict(zip(("BTCUSDT", "ETHUSDT"), marks, strict=True))
    for sym, m in mark_by.items():
        oms.on_mark(mark(str(m), symbol=sym))
    oracle = sum((cash[s] + qty[s] * mark_by[s] for s in cash), D(0))
    t = oms.totals()
    assert t.realized_pnl + t.unrealized_pnl == oracle
    for sym in cash:
        pv = oms.position(BN, sym)
        assert pv.qty == qty[sym]
        assert pv.realized_pnl + pv.unrealized_pnl == cash[sym] + qty[sym] * mark_by[sym]
        if pv.qty:
            assert pv.entry_price > 0


_STATUSES = list(OrderStatus)
_RANKS = {
    OrderStatus.PENDING: 0,
    OrderStatus.UNTRIGGERED: 1,
    OrderStatus.NEW: 2,
    OrderStatus.PARTIALLY_FILLED: 3,
}


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([s for s in _STATUSES if s is not OrderStatus.PENDING]),
            st.integers(min_value=0, max_value=4),
            st.integers(min_value=0, max_value=20),
        ),
        max_size=40,
    )
)
def test_property_when_random_order_updates_then_never_backwards_and_open_index_exact(
    events: list[tuple[str, OrderStatus, int, int]],
) -> None:
    oms = OrderManager(max_closed_orders=1)
    for cid in ("a", "b"):
        oms.on_submit(request(cid, qty="4"), ts_ms=0)
    for cid, status, filled, ts in events:
        before = oms.order(BN, cid)
        oms.on_order(order(cid, status, filled=str(filled), qty="4", ts=ts))
        after = oms.order(BN, cid)
        if before is not None and after is not None:
            assert after.order.filled_qty >= before.order.filled_qty
            if not before.status.is_open:
                assert after.status is before.status  # terminal stays terminal
            else:
                assert _RANKS.get(after.status, 4) >= _RANKS[before.status]
        brute = [t for t in oms.orders() if t.is_open]
        assert oms.open_order_count(BN, "BTCUSDT") == len(brute)
        assert sorted(t.client_order_id for t in oms.open_orders()) == sorted(
            t.client_order_id for t in brute
        )


def test_order_when_placed_without_client_id_then_keyed_by_venue_order_id() -> None:
    oms = OrderManager()
    o = replace(order("", OrderStatus.NEW), venue_order_id="778")
    assert oms.on_order(o) is UpdateResult.ADOPTED
    oms.on_fill(replace(fill("", Side.BUY, "1", "100"), venue_order_id="778"))
    t = oms.order(BN, "venue:778")
    assert t is not None and t.external and t.fill_qty == D("1")
    assert oms.stats()["orders_adopted"] == 1


def test_fill_when_older_than_reconcile_snapshot_then_position_not_moved_twice() -> None:
    """After a restart: the venue's position already holds a fill the adapter delivers afterwards."""
    oms = OrderManager()
    oms.reconcile(BN, [], [venue_position("1", "100", ts=900)], [], ts_ms=1_000)
    f = replace(fill("x1", Side.SELL, "1", "110", fee="0.05", ts=999), realized_pnl=D("10"))
    oms.on_fill(fill("x0", Side.BUY, "2", "100", ts=500))  # opened 2, then sold 1 (x1)
    oms.on_fill(f)
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == D("1") and p.entry_price == D("100")
    assert p.realized_pnl == D("10") and oms.totals().fees == D("0.05")
    assert oms.stats()["fills_in_snapshot"] == 2
    oms.on_fill(fill("x2", Side.SELL, "1", "120", ts=1_001))  # after the snapshot: applied
    p = oms.position(BN, "BTCUSDT")
    assert p.qty == 0 and p.realized_pnl == D("30")
