"""The exchange core: orders against crowd liquidity, queue priority, conditional orders, funding,
liquidation, modes and every reject reason; the accounting invariant is checked after every test
(conftest) and after every step of a property test."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.venue.exchange import Exchange
from engine.venue.market import ManualSource
from engine.venue.model import (
    BalanceEvent,
    DepthEvent,
    FundingEvent,
    MarginMode,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    OrderType,
    PositionSide,
    RejectReason,
    Side,
    TimeInForce,
    TradeEvent,
    TriggerBy,
    VenueEvent,
    VenueReject,
)
from tests.venue.conftest import START_MS, ManualClock

D = Decimal
BTC = "BTCUSDT"
BUY, SELL = Side.BUY, Side.SELL


def limit(side: Side, price: str, qty: str, **kw: object) -> OrderRequest:
    return OrderRequest(symbol=BTC, side=side, type=OrderType.LIMIT, price=D(price), qty=D(qty), **kw)  # type: ignore[arg-type]


def market(side: Side, qty: str, **kw: object) -> OrderRequest:
    return OrderRequest(symbol=BTC, side=side, type=OrderType.MARKET, qty=D(qty), **kw)  # type: ignore[arg-type]


def src(ex: Exchange, symbol: str = BTC) -> ManualSource:
    s = ex.source(symbol)
    assert isinstance(s, ManualSource)
    return s


def step(ex: Exchange, clock: ManualClock, ms: int = 100) -> None:
    ex.advance(clock.tick(ms))


def level(ex: Exchange, is_bid: bool, price: str) -> Decimal:
    _, bids, asks = ex.depth(BTC, 1000)
    return dict(bids if is_bid else asks).get(D(price), D(0))


def rejects(reason: RejectReason, fn: Callable[[], object]) -> None:
    with pytest.raises(VenueReject) as info:
        fn()
    assert info.value.reason is reason, info.value


def pos_qty(ex: Exchange, account: str, side: PositionSide = PositionSide.BOTH) -> Decimal:
    for p in ex.positions(account, BTC):
        if p.position_side is side:
            return p.qty
    return D(0)


# ---- taker orders ------------------------------------------------------------------------------


def test_market_buy_when_crowd_asks_then_fills_at_best_ask_as_taker(
    scripted: Exchange, events: list[VenueEvent]
) -> None:
    o = scripted.place_order("alice", market(BUY, "0.010"))
    assert o.status is OrderStatus.FILLED
    assert o.avg_price == D("60000.0") and o.fees == D("0.3")
    (fill,) = scripted.fills("alice")
    assert not fill.is_maker and fill.price == D("60000.0") and fill.fee == D("0.30000000")
    assert pos_qty(scripted, "alice") == D("0.010")
    state = scripted.account_state("alice")
    assert state.wallet_balance == D("99999.7") and state.fees_paid == D("0.3")
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "OrderEvent" and "TradeEvent" in kinds and kinds[-1] == "DepthEvent"
    assert level(scripted, False, "60000.0") == D("0.990")


def test_market_order_when_it_sweeps_levels_then_avg_price_is_volume_weighted(scripted: Exchange) -> None:
    o = scripted.place_order("alice", market(BUY, "1.500"))
    assert o.status is OrderStatus.FILLED
    assert o.cum_quote == D("60000.0") + D("30000.05")
    assert [f.price for f in scripted.fills("alice")] == [D("60000.0"), D("60000.1")]


def test_market_order_when_book_exhausted_then_remainder_expires(scripted: Exchange) -> None:
    scripted.deposit("alice", D("10000000"))
    o = scripted.place_order("alice", market(BUY, "12.000"))
    assert o.status is OrderStatus.EXPIRED and o.filled_qty == D("10.000")
    assert o.expire_reason == "MARKET"
    assert scripted.depth(BTC, 5)[2] == []


def test_limit_when_crossing_then_partially_fills_and_rests_remainder(scripted: Exchange) -> None:
    o = scripted.place_order("alice", limit(BUY, "60000.1", "2.500"))
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.filled_qty == D("2.000")
    _, bids, asks = scripted.depth(BTC, 1)
    assert bids[0] == (D("60000.1"), D("0.500")) and asks[0][0] == D("60000.2")
    assert scripted.open_orders("alice")[0].order_id == o.order_id


def test_ioc_when_partially_fillable_then_remainder_expires(scripted: Exchange) -> None:
    o = scripted.place_order("alice", limit(BUY, "60000.0", "1.500", tif=TimeInForce.IOC))
    assert o.status is OrderStatus.EXPIRED and o.filled_qty == D("1.000") and o.expire_reason == "IOC"
    assert scripted.open_orders("alice") == []


def test_fok_when_not_fully_fillable_then_rejected_and_book_untouched(scripted: Exchange) -> None:
    before = scripted.depth(BTC, 20)
    rejects(
        RejectReason.FOK_NOT_FILLED,
        lambda: scripted.place_order("alice", limit(BUY, "60000.0", "1.001", tif=TimeInForce.FOK)),
    )
    assert scripted.depth(BTC, 20) == before
    o = scripted.place_order("alice", limit(BUY, "60000.1", "2.000", tif=TimeInForce.FOK))
    assert o.status is OrderStatus.FILLED


def test_post_only_when_crossing_then_rejected_else_rests(scripted: Exchange) -> None:
    rejects(
        RejectReason.POST_ONLY_WOULD_TAKE,
        lambda: scripted.place_order("alice", limit(BUY, "60000.0", "0.1", tif=TimeInForce.POST_ONLY)),
    )
    o = scripted.place_order("alice", limit(BUY, "59999.9", "0.1", tif=TimeInForce.POST_ONLY))
    assert o.status is OrderStatus.NEW and level(scripted, True, "59999.9") == D("1.100")


# ---- maker fills and queue priority ----------------------------------------------------------


def test_resting_bid_when_crowd_trades_through_its_queue_position_then_filled_as_maker(
    scripted: Exchange, clock: ManualClock
) -> None:
    o = scripted.place_order("alice", limit(BUY, "59999.9", "0.200"))
    src(scripted).trade(D("59999.9"), D("0.500"), aggressor_is_buy=False)
    step(scripted, clock)
    assert scripted.get_order("alice", BTC, order_id=o.order_id).filled_qty == 0  # crowd ahead of it
    src(scripted).trade(D("59999.9"), D("0.700"), aggressor_is_buy=False)
    step(scripted, clock)
    got = scripted.get_order("alice", BTC, order_id=o.order_id)
    assert got.status is OrderStatus.FILLED
    (fill,) = scripted.fills("alice")
    assert fill.is_maker and fill.fee == D("59999.9") * D("0.2") * D("0.0002")


def test_crowd_size_when_added_then_joins_behind_account_order(
    scripted: Exchange, clock: ManualClock
) -> None:
    o = scripted.place_order("alice", limit(BUY, "59999.9", "0.200"))
    src(scripted).set_level(True, D("59999.9"), D("3.000"))
    step(scripted, clock)
    assert level(scripted, True, "59999.9") == D("3.200")
    src(scripted).trade(D("59999.9"), D("1.100"), aggressor_is_buy=False)
    step(scripted, clock)
    assert scripted.get_order("alice", BTC, order_id=o.order_id).filled_qty == D("0.100")


def test_crowd_size_when_removed_then_comes_off_the_back(scripted: Exchange, clock: ManualClock) -> None:
    o = scripted.place_order("alice", limit(BUY, "59999.9", "0.200"))
    src(scripted).set_level(True, D("59999.9"), D("3.000"))
    step(scripted, clock)
    src(scripted).set_level(True, D("59999.9"), D("0.500"))
    step(scripted, clock)
    assert level(scripted, True, "59999.9") == D("0.700")
    src(scripted).trade(D("59999.9"), D("0.600"), aggressor_is_buy=False)
    step(scripted, clock)
    assert scripted.get_order("alice", BTC, order_id=o.order_id).filled_qty == D("0.100")


def test_crowd_liquidity_when_it_would_cross_an_account_order_then_executes_against_it(
    scripted: Exchange, clock: ManualClock
) -> None:
    o = scripted.place_order("alice", limit(BUY, "60000.0", "0.500"))  # takes 0.5 of the ask
    assert o.status is OrderStatus.FILLED
    o2 = scripted.place_order("alice", limit(BUY, "60000.1", "1.500"))  # lifts 0.5 + 1.0, nothing rests
    assert o2.status is OrderStatus.FILLED
    o3 = scripted.place_order("alice", limit(BUY, "60000.2", "0.300"))  # takes 0.3 of 60000.2
    assert o3.status is OrderStatus.FILLED
    bid = scripted.place_order("bob", limit(BUY, "60000.2", "2.000"))  # 0.7 fills, 1.3 rests at 60000.2
    assert bid.filled_qty == D("0.700")
    src(scripted).set_level(False, D("60000.2"), D("1.000"))  # the crowd re-offers at 60000.2
    step(scripted, clock)
    got = scripted.get_order("bob", BTC, order_id=bid.order_id)
    assert got.filled_qty == D("1.700") and scripted.fills("bob")[-1].is_maker
    _, bids, asks = scripted.depth(BTC, 1)
    assert bids[0] == (D("60000.2"), D("0.300")) and asks[0][0] > bids[0][0]


def test_amend_when_qty_decreases_then_keeps_priority_and_when_price_changes_then_loses_it(
    scripted: Exchange, clock: ManualClock
) -> None:
    a = scripted.place_order("alice", limit(BUY, "59999.9", "0.500"))
    b = scripted.place_order("bob", limit(BUY, "59999.9", "0.500"))
    scripted.amend_order("alice", BTC, order_id=a.order_id, qty=D("0.400"))
    assert level(scripted, True, "59999.9") == D("1.900")
    src(scripted).trade(D("59999.9"), D("1.100"), aggressor_is_buy=False)
    step(scripted, clock)
    assert scripted.get_order("alice", BTC, order_id=a.order_id).filled_qty == D("0.100")
    assert scripted.get_order("bob", BTC, order_id=b.order_id).filled_qty == 0
    scripted.amend_order("alice", BTC, order_id=a.order_id, price=D("59999.8"))
    scripted.amend_order("alice", BTC, order_id=a.order_id, price=D("59999.9"))
    src(scripted).trade(D("59999.9"), D("0.500"), aggressor_is_buy=False)
    step(scripted, clock)
    assert scripted.get_order("bob", BTC, order_id=b.order_id).status is OrderStatus.FILLED
    assert scripted.get_order("alice", BTC, order_id=a.order_id).filled_qty == D("0.100")


def test_amend_when_price_crosses_then_executes_as_taker(scripted: Exchange) -> None:
    a = scripted.place_order("alice", limit(BUY, "59999.9", "0.500"))
    got = scripted.amend_order("alice", BTC, order_id=a.order_id, price=D("60000.0"))
    assert got.status is OrderStatus.FILLED and got.price == D("60000.0")


def test_cancel_when_resting_then_level_restored_and_depth_event_emitted(
    scripted: Exchange, events: list[VenueEvent]
) -> None:
    o = scripted.place_order("alice", limit(BUY, "59999.5", "0.300"))
    assert level(scripted, True, "59999.5") == D("1.300")
    got = scripted.cancel_order("alice", BTC, client_order_id=o.client_order_id)
    assert got.status is OrderStatus.CANCELED
    assert level(scripted, True, "59999.5") == D("1.000")
    depth = [e for e in events if isinstance(e, DepthEvent)]
    assert depth[-1].bids == ((D("59999.5"), D("1.000")),)
    rejects(RejectReason.ORDER_CLOSED, lambda: scripted.cancel_order("alice", BTC, order_id=o.order_id))
    rejects(RejectReason.UNKNOWN_ORDER, lambda: scripted.cancel_order("alice", BTC, order_id=999))
    assert scripted.get_order("alice", BTC, order_id=o.order_id).status is OrderStatus.CANCELED


def test_cancel_all_when_orders_on_symbols_then_all_cancelled(scripted: Exchange) -> None:
    scripted.place_order("alice", limit(BUY, "59999.0", "0.010"))
    scripted.place_order("alice", limit(SELL, "60001.0", "0.010"))
    scripted.place_order(
        "alice",
        OrderRequest(symbol="ETHUSDT", side=BUY, type=OrderType.LIMIT, price=D("2999.00"), qty=D("0.1")),
    )
    assert len(scripted.cancel_all("alice", BTC)) == 2
    assert len(scripted.open_orders("alice")) == 1
    assert len(scripted.cancel_all("alice")) == 1 and scripted.open_orders("alice") == []


# ---- reduce-only -------------------------------------------------------------------------------


def test_reduce_only_when_no_position_or_same_side_then_rejected(scripted: Exchange) -> None:
    rejects(
        RejectReason.REDUCE_ONLY_INCREASES,
        lambda: scripted.place_order("alice", market(SELL, "0.1", reduce_only=True)),
    )
    scripted.place_order("alice", market(BUY, "0.1"))
    rejects(
        RejectReason.REDUCE_ONLY_INCREASES,
        lambda: scripted.place_order("alice", market(BUY, "0.1", reduce_only=True)),
    )
    o = scripted.place_order("alice", market(SELL, "0.5", reduce_only=True))  # trimmed to the position
    assert o.filled_qty == D("0.100") and pos_qty(scripted, "alice") == 0


def test_resting_reduce_only_when_position_shrinks_then_trimmed_then_cancelled(scripted: Exchange) -> None:
    scripted.place_order("alice", market(BUY, "1.000"))
    ro = scripted.place_order("alice", limit(SELL, "60005.0", "0.800", reduce_only=True))
    scripted.place_order("alice", market(SELL, "0.500"))
    got = scripted.get_order("alice", BTC, order_id=ro.order_id)
    assert got.status is OrderStatus.NEW and got.qty == D("0.500")
    assert level(scripted, False, "60005.0") == D("0.500")
    scripted.place_order("alice", market(SELL, "0.500"))
    got = scripted.get_order("alice", BTC, order_id=ro.order_id)
    assert got.status is OrderStatus.CANCELED and got.expire_reason == "REDUCE_ONLY"


def test_reduce_only_when_below_min_notional_then_accepted(scripted: Exchange) -> None:
    scripted.place_order("alice", market(BUY, "0.002"))
    rejects(RejectReason.MIN_NOTIONAL, lambda: scripted.place_order("alice", market(SELL, "0.001")))
    assert scripted.place_order("alice", market(SELL, "0.001", reduce_only=True)).status is OrderStatus.FILLED


# ---- conditional orders ------------------------------------------------------------------------


def shift_book(ex: Exchange, best_ask: str, qty: str = "1.000") -> None:
    ask = D(best_ask)
    tick = D("0.1")
    src(ex).set_book(
        [(ask - tick * k, D(qty)) for k in range(1, 11)], [(ask + tick * k, D(qty)) for k in range(10)]
    )


def test_stop_market_on_mark_when_mark_falls_through_trigger_then_fires_and_closes(
    scripted: Exchange, clock: ManualClock, events: list[VenueEvent]
) -> None:
    scripted.place_order("alice", market(BUY, "0.300"))
    rejects(
        RejectReason.WOULD_TRIGGER_IMMEDIATELY,
        lambda: scripted.place_order(
            "alice",
            OrderRequest(
                symbol=BTC,
                side=SELL,
                type=OrderType.STOP_MARKET,
                trigger_price=D("60010.0"),
                close_position=True,
            ),
        ),
    )
    stop = scripted.place_order(
        "alice",
        OrderRequest(
            symbol=BTC, side=SELL, type=OrderType.STOP_MARKET, trigger_price=D("59990.0"), close_position=True
        ),
    )
    assert stop.status is OrderStatus.UNTRIGGERED
    step(scripted, clock)
    assert scripted.get_order("alice", BTC, order_id=stop.order_id).status is OrderStatus.UNTRIGGERED
    shift_book(scripted, "59990.0")
    step(scripted, clock)
    assert scripted.mark(BTC).mark_price <= D("59990.0")
    got = scripted.get_order("alice", BTC, order_id=stop.order_id)
    assert got.status is OrderStatus.FILLED and got.filled_qty == D("0.300")
    assert pos_qty(scripted, "alice") == 0
    statuses = [
        e.order.status for e in events if isinstance(e, OrderEvent) and e.order.order_id == stop.order_id
    ]
    assert statuses == [OrderStatus.UNTRIGGERED, OrderStatus.TRIGGERED, OrderStatus.FILLED]


def test_take_profit_on_last_when_a_trade_prints_at_trigger_then_fires_although_mark_did_not(
    scripted: Exchange, clock: ManualClock
) -> None:
    scripted.place_order("alice", market(SELL, "0.100"))
    tp = scripted.place_order(
        "alice",
        OrderRequest(
            symbol=BTC,
            side=BUY,
            type=OrderType.TAKE_PROFIT_MARKET,
            qty=D("0.100"),
            trigger_price=D("59999.8"),
            trigger_by=TriggerBy.LAST,
            reduce_only=True,
        ),
    )
    mark_tp = scripted.place_order(
        "bob",
        OrderRequest(
            symbol=BTC,
            side=BUY,
            type=OrderType.TAKE_PROFIT_MARKET,
            qty=D("0.010"),
            trigger_price=D("59999.8"),
        ),
    )
    src(scripted).trade(D("59999.8"), D("1.500"), aggressor_is_buy=False)
    src(scripted).set_book(*_same_book())
    step(scripted, clock)
    assert any(t.price == D("59999.8") for t in scripted.recent_trades(BTC, 10))
    assert scripted.get_order("alice", BTC, order_id=tp.order_id).status is OrderStatus.FILLED
    assert pos_qty(scripted, "alice") == 0
    assert scripted.get_order("bob", BTC, order_id=mark_tp.order_id).status is OrderStatus.UNTRIGGERED


def _same_book() -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    tick = D("0.1")
    ask = D("60000.0")
    return [(ask - tick * k, D("1.000")) for k in range(1, 11)], [
        (ask + tick * k, D("1.000")) for k in range(10)
    ]


def test_stop_when_fired_without_position_then_reduce_only_expires(
    scripted: Exchange, clock: ManualClock
) -> None:
    stop = scripted.place_order(
        "alice",
        OrderRequest(
            symbol=BTC, side=SELL, type=OrderType.STOP_MARKET, trigger_price=D("59990.0"), close_position=True
        ),
    )
    shift_book(scripted, "59980.0")
    step(scripted, clock)
    got = scripted.get_order("alice", BTC, order_id=stop.order_id)
    assert got.status is OrderStatus.EXPIRED and got.filled_qty == 0


def test_stop_buy_when_it_fires_without_position_then_opens_one(
    scripted: Exchange, clock: ManualClock
) -> None:
    stop = scripted.place_order(
        "alice",
        OrderRequest(
            symbol=BTC, side=BUY, type=OrderType.STOP_MARKET, qty=D("0.050"), trigger_price=D("60010.0")
        ),
    )
    shift_book(scripted, "60020.0")
    step(scripted, clock)
    assert scripted.get_order("alice", BTC, order_id=stop.order_id).status is OrderStatus.FILLED
    assert pos_qty(scripted, "alice") == D("0.050")


# ---- funding -----------------------------------------------------------------------------------


def test_funding_when_boundary_crossed_then_longs_pay_shorts_receive_exactly(
    scripted: Exchange, clock: ManualClock, events: list[VenueEvent]
) -> None:
    scripted.place_order("alice", market(BUY, "1.000"))
    scripted.place_order("bob", market(SELL, "0.500"))
    before_a = scripted.account_state("alice").wallet_balance
    before_b = scripted.account_state("bob").wallet_balance
    boundary = (START_MS // 60_000 + 1) * 60_000
    scripted.advance(boundary - 1)
    assert not [e for e in events if isinstance(e, FundingEvent)]
    m = scripted.mark(BTC)
    rate, mark = m.funding_rate, m.mark_price
    assert rate == D("0.0001")
    scripted.advance(boundary)
    funding = [e for e in events if isinstance(e, FundingEvent)]
    assert {(f.account, f.amount) for f in funding} == {
        ("alice", -(D("1.000") * mark * rate)),
        ("bob", D("0.500") * mark * rate),
    }
    assert scripted.account_state("alice").wallet_balance == before_a - mark * rate
    assert scripted.account_state("bob").wallet_balance == before_b + D("0.5") * mark * rate
    assert any(isinstance(e, BalanceEvent) and e.reason == "FUNDING_FEE" for e in events)
    assert scripted.mark(BTC).next_funding_ms == boundary + 60_000


def test_advance_when_skipping_hours_then_funding_fires_at_every_boundary(
    make_exchange: Callable[..., Exchange], clock: ManualClock
) -> None:
    ex = make_exchange(funding_interval_ms=3_600_000)
    ex.add_account(api_key="a", api_secret="s", deposit=D("100000"))
    ex.place_order("a", OrderRequest(symbol=BTC, side=BUY, type=OrderType.MARKET, qty=D("0.010")))
    got: list[VenueEvent] = []
    ex.add_listener(got.append)
    ex.advance(clock.tick(5 * 3_600_000))
    assert len([e for e in got if isinstance(e, FundingEvent)]) == 5
    assert ex.account_state("a").funding < 0


# ---- liquidation -------------------------------------------------------------------------------


def test_cross_liquidation_when_maintenance_breached_then_autoclosed_and_insurance_covers(
    scripted: Exchange, clock: ManualClock, events: list[VenueEvent]
) -> None:
    scripted.add_account(api_key="carol", api_secret="c", deposit=D("400"))
    scripted.set_leverage("carol", BTC, 125)
    scripted.place_order("carol", market(BUY, "0.500"))
    shift_book(scripted, "59800.0")
    step(scripted, clock)
    assert pos_qty(scripted, "carol") == D("0.500")  # still above maintenance
    shift_book(scripted, "58000.0")
    step(scripted, clock)
    assert pos_qty(scripted, "carol") == 0
    closes = [
        e for e in events if isinstance(e, OrderEvent) and e.order.client_order_id.startswith("autoclose-")
    ]
    assert closes and closes[-1].order.status is OrderStatus.FILLED
    led = scripted.ledger("carol")
    assert led.wallet_balance == 0 and led.insurance > 0 and led.balanced
    assert any(isinstance(e, BalanceEvent) and e.reason == "LIQUIDATION" for e in events)


def test_liquidation_when_book_too_thin_then_rest_closes_at_bankruptcy_price(
    scripted: Exchange, clock: ManualClock
) -> None:
    scripted.add_account(api_key="carol", api_secret="c", deposit=D("400"))
    scripted.set_leverage("carol", BTC, 125)
    scripted.place_order("carol", market(BUY, "0.500"))
    shift_book(scripted, "59400.0", qty="0.010")
    step(scripted, clock)
    assert pos_qty(scripted, "carol") == 0
    fills = scripted.fills("carol")
    assert sum((f.qty for f in fills if f.side is SELL), D(0)) == D("0.500")
    assert scripted.ledger("carol").balanced and scripted.account_state("carol").wallet_balance >= 0


def test_isolated_liquidation_when_its_margin_is_breached_then_only_that_position_closes(
    scripted: Exchange, clock: ManualClock
) -> None:
    scripted.add_account(api_key="dave", api_secret="d", deposit=D("5000"))
    scripted.set_margin_mode("dave", BTC, MarginMode.ISOLATED)
    scripted.set_leverage("dave", BTC, 100)
    scripted.place_order("dave", market(BUY, "0.500"))
    (p,) = scripted.positions("dave", BTC)
    assert p.isolated_margin == D("300") and p.margin_mode is MarginMode.ISOLATED
    shift_book(scripted, "59000.0")
    step(scripted, clock)
    assert pos_qty(scripted, "dave") == 0
    led = scripted.ledger("dave")
    assert led.balanced and led.wallet_balance > D(
        "4000"
    )  # the loss stays within the isolated margin + cover
    assert led.insurance > 0


# ---- modes, leverage, margin -------------------------------------------------------------------


def test_hedge_mode_when_long_and_short_on_one_symbol_then_two_positions(scripted: Exchange) -> None:
    scripted.set_position_mode("alice", hedge=True)
    rejects(RejectReason.POSITION_SIDE_MISMATCH, lambda: scripted.place_order("alice", market(BUY, "0.1")))
    scripted.place_order("alice", market(BUY, "0.200", position_side=PositionSide.LONG))
    scripted.place_order("alice", market(SELL, "0.100", position_side=PositionSide.SHORT))
    assert pos_qty(scripted, "alice", PositionSide.LONG) == D("0.200")
    assert pos_qty(scripted, "alice", PositionSide.SHORT) == D("0.100")
    rejects(
        RejectReason.REDUCE_ONLY_INCREASES,
        lambda: scripted.place_order(
            "alice", market(BUY, "0.1", position_side=PositionSide.LONG, reduce_only=True)
        ),
    )
    scripted.place_order("alice", market(SELL, "0.200", position_side=PositionSide.LONG))
    assert pos_qty(scripted, "alice", PositionSide.LONG) == 0
    assert pos_qty(scripted, "alice", PositionSide.SHORT) == D("0.100")
    rejects(
        RejectReason.POSITION_SIDE_MISMATCH,
        lambda: scripted.place_order("bob", market(BUY, "0.1", position_side=PositionSide.LONG)),
    )


def test_position_mode_change_rules(scripted: Exchange) -> None:
    rejects(RejectReason.NOT_MODIFIED, lambda: scripted.set_position_mode("alice", hedge=False))
    o = scripted.place_order("alice", limit(BUY, "59990.0", "0.010"))
    rejects(RejectReason.MODE_CHANGE_OPEN_ORDERS, lambda: scripted.set_position_mode("alice", hedge=True))
    scripted.cancel_order("alice", BTC, order_id=o.order_id)
    scripted.place_order("alice", market(BUY, "0.010"))
    rejects(RejectReason.MODE_CHANGE_POSITION_EXISTS, lambda: scripted.set_position_mode("alice", hedge=True))
    scripted.place_order("alice", market(SELL, "0.010"))
    scripted.set_position_mode("alice", hedge=True)
    assert scripted.account_state("alice").hedge_mode


def test_leverage_and_margin_mode_rules(scripted: Exchange) -> None:
    assert scripted.leverage("alice", BTC) == 20
    rejects(RejectReason.LEVERAGE_INVALID, lambda: scripted.set_leverage("alice", BTC, 0))
    rejects(RejectReason.LEVERAGE_INVALID, lambda: scripted.set_leverage("alice", BTC, 126))
    rejects(RejectReason.NOT_MODIFIED, lambda: scripted.set_leverage("alice", BTC, 20))
    scripted.set_leverage("alice", BTC, 125)
    assert scripted.leverage("alice", BTC) == 125
    rejects(RejectReason.LEVERAGE_INVALID, lambda: scripted.set_leverage("alice", "SOLUSDT", 51))
    rejects(RejectReason.NOT_MODIFIED, lambda: scripted.set_margin_mode("alice", BTC, MarginMode.CROSS))
    scripted.place_order("alice", market(BUY, "0.010"))
    rejects(
        RejectReason.MODE_CHANGE_POSITION_EXISTS,
        lambda: scripted.set_margin_mode("alice", BTC, MarginMode.ISOLATED),
    )
    scripted.set_margin_mode("alice", "ETHUSDT", MarginMode.ISOLATED)
    assert scripted.margin_mode("alice", "ETHUSDT") is MarginMode.ISOLATED


def test_resting_order_when_placed_then_reserves_initial_margin(scripted: Exchange) -> None:
    scripted.place_order("alice", limit(BUY, "59000.0", "1.000"))
    state = scripted.account_state("alice")
    assert state.open_order_initial_margin == D("59000.0") / 20
    scripted.cancel_all("alice")
    assert scripted.account_state("alice").open_order_initial_margin == 0


# ---- rejects -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (limit(BUY, "60000.05", "0.010"), RejectReason.PRICE_OFF_TICK),
        (limit(BUY, "59000.0", "0.0105"), RejectReason.QTY_OFF_STEP),
        (limit(BUY, "59000.0", "0"), RejectReason.QTY_TOO_SMALL),
        (limit(BUY, "59000.0", "1001"), RejectReason.QTY_TOO_LARGE),
        (market(BUY, "121"), RejectReason.QTY_TOO_LARGE),
        (limit(BUY, "59000.0", "0.001"), RejectReason.MIN_NOTIONAL),
        (limit(BUY, "50000.0", "0.010"), RejectReason.PRICE_OUT_OF_RANGE),
        (limit(SELL, "70000.0", "0.010"), RejectReason.PRICE_OUT_OF_RANGE),
        (
            OrderRequest(symbol="XYZUSDT", side=BUY, type=OrderType.MARKET, qty=D("1")),
            RejectReason.UNKNOWN_SYMBOL,
        ),
        (OrderRequest(symbol=BTC, side=BUY, type=OrderType.LIMIT, qty=D("0.01")), RejectReason.INVALID_PARAM),
        (
            OrderRequest(symbol=BTC, side=BUY, type=OrderType.STOP_MARKET, qty=D("0.01")),
            RejectReason.INVALID_PARAM,
        ),
        (
            OrderRequest(symbol=BTC, side=BUY, type=OrderType.MARKET, close_position=True),
            RejectReason.INVALID_PARAM,
        ),
        (limit(BUY, "59000.0", "0.010", client_order_id="bad id!"), RejectReason.INVALID_PARAM),
        (
            limit(BUY, "59000.0", "0.010", position_side=PositionSide.LONG),
            RejectReason.POSITION_SIDE_MISMATCH,
        ),
        (limit(BUY, "59000.0", "100.000"), RejectReason.INSUFFICIENT_MARGIN),
    ],
)
def test_place_order_when_request_breaks_a_rule_then_rejected_with_reason(
    scripted: Exchange, request_: OrderRequest, reason: RejectReason
) -> None:
    rejects(reason, lambda: scripted.place_order("alice", request_))
    assert scripted.open_orders("alice") == []


def test_duplicate_client_id_when_open_then_rejected_and_when_closed_then_reusable(
    scripted: Exchange,
) -> None:
    o = scripted.place_order("alice", limit(BUY, "59990.0", "0.010", client_order_id="abc-1"))
    rejects(
        RejectReason.DUPLICATE_CLIENT_ID,
        lambda: scripted.place_order("alice", limit(BUY, "59990.0", "0.010", client_order_id="abc-1")),
    )
    assert (
        scripted.place_order("bob", limit(BUY, "59990.0", "0.010", client_order_id="abc-1")).status
        is OrderStatus.NEW
    )
    scripted.cancel_order("alice", BTC, order_id=o.order_id)
    again = scripted.place_order("alice", limit(BUY, "59990.0", "0.010", client_order_id="abc-1"))
    assert scripted.get_order("alice", BTC, client_order_id="abc-1").order_id == again.order_id


def test_open_order_count_when_at_limit_then_too_many_orders(make_exchange: Callable[..., Exchange]) -> None:
    ex = make_exchange(scripted=True, max_open_orders=3)
    ex.add_account(api_key="a", api_secret="s", deposit=D("100000"))
    for _ in range(3):
        ex.place_order("a", limit(BUY, "59990.0", "0.010"))
    rejects(RejectReason.TOO_MANY_ORDERS, lambda: ex.place_order("a", limit(BUY, "59990.0", "0.010")))


def test_generated_client_ids_when_none_given_then_unique(scripted: Exchange) -> None:
    a = scripted.place_order("alice", limit(BUY, "59990.0", "0.010"))
    b = scripted.place_order("alice", limit(BUY, "59990.0", "0.010"))
    assert a.client_order_id != b.client_order_id and a.client_order_id


# ---- public book, depth sequence, properties ---------------------------------------------------


def apply_depth(book: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]], ev: DepthEvent) -> None:
    for side, changes in ((book[0], ev.bids), (book[1], ev.asks)):
        for price, qty in changes:
            if qty == 0:
                assert price in side, f"deletion of a price the book did not hold: {price}"
                del side[price]
            else:
                side[price] = qty


def test_depth_events_when_market_runs_with_orders_then_chain_and_rebuild_the_book(
    exchange: Exchange, clock: ManualClock
) -> None:
    import random

    rng = random.Random(3)
    exchange.add_account(api_key="a", api_secret="s", deposit=D("1000000"))
    got: list[VenueEvent] = []
    last_id, bids, asks = exchange.depth(BTC, 10_000)
    book = (dict(bids), dict(asks))
    exchange.add_listener(got.append)
    seen = 0
    prev = last_id
    for i in range(400):
        r = rng.random()
        _, b, a = exchange.depth(BTC, 1)
        if r < 0.2:
            px = b[0][0] - D("0.1") * rng.randint(0, 5)
            exchange.place_order("a", limit(BUY, str(px), "0.010"))
        elif r < 0.4:
            px = a[0][0] + D("0.1") * rng.randint(0, 5)
            exchange.place_order("a", limit(SELL, str(px), "0.010"))
        elif r < 0.5:
            exchange.place_order("a", market(rng.choice([BUY, SELL]), "0.020"))
        elif r < 0.6 and exchange.open_orders("a", BTC):
            o = rng.choice(exchange.open_orders("a", BTC))
            exchange.cancel_order("a", BTC, order_id=o.order_id)
        else:
            step(exchange, clock)
        for ev in got[seen:]:
            if isinstance(ev, DepthEvent) and ev.symbol == BTC:
                assert ev.prev_last_id == prev and ev.first_id == prev + 1 and ev.last_id >= ev.first_id
                prev = ev.last_id
                apply_depth(book, ev)
        seen = len(got)
        if i % 37 == 0:
            lid, bids, asks = exchange.depth(BTC, 10_000)
            assert lid == prev
            assert book == (dict(bids), dict(asks))
            assert bids[0][0] < asks[0][0]
    exchange.check_invariants()


def test_trade_events_when_crowd_and_accounts_trade_then_ids_increase(
    exchange: Exchange, clock: ManualClock
) -> None:
    got: list[VenueEvent] = []
    exchange.add_listener(got.append)
    for _ in range(50):
        step(exchange, clock)
    trades = [e for e in got if isinstance(e, TradeEvent) and e.symbol == BTC]
    assert trades
    ids = [t.trade_id for t in trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert exchange.recent_trades(BTC, 5) == trades[-5:]


_ops = st.lists(
    st.tuples(
        st.sampled_from(["limit", "market", "cancel", "amend", "advance", "ioc", "reduce", "stop"]),
        st.booleans(),
        st.integers(min_value=-8, max_value=8),
        st.integers(min_value=1, max_value=40),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_property_when_random_orders_cancels_and_steps_then_invariants_hold(
    make_exchange: Callable[..., Exchange], ops: list[tuple[str, bool, int, int]]
) -> None:
    clock = ManualClock()
    ex = Exchange(clock=clock, funding_interval_ms=1_000, levels=30)
    ex.add_account(api_key="a", api_secret="s", deposit=D("20000"))
    ex.add_account(api_key="b", api_secret="s", deposit=D("20000"))
    for i, (op, buy, off, n) in enumerate(ops):
        acct = "a" if i % 2 else "b"
        side = BUY if buy else SELL
        _, bids, asks = ex.depth(BTC, 1)
        ref = bids[0][0] if buy else asks[0][0]
        px = str(ref + D("0.1") * off)
        qty = str(D("0.005") * n)
        try:
            if op == "limit":
                ex.place_order(acct, limit(side, px, qty))
            elif op == "ioc":
                ex.place_order(acct, limit(side, px, qty, tif=TimeInForce.IOC))
            elif op == "market":
                ex.place_order(acct, market(side, qty))
            elif op == "reduce":
                ex.place_order(acct, limit(side, px, qty, reduce_only=True))
            elif op == "stop":
                trig = str(ref + D("0.1") * (abs(off) + 1) * (1 if buy else -1))
                ex.place_order(
                    acct,
                    OrderRequest(
                        symbol=BTC, side=side, type=OrderType.STOP_MARKET, qty=D(qty), trigger_price=D(trig)
                    ),
                )
            elif op in ("cancel", "amend"):
                orders = ex.open_orders(acct, BTC)
                if orders:
                    o = orders[n % len(orders)]
                    if op == "cancel":
                        ex.cancel_order(acct, BTC, order_id=o.order_id)
                    else:
                        ex.amend_order(
                            acct,
                            BTC,
                            order_id=o.order_id,
                            price=D(px) if o.type is OrderType.LIMIT else None,
                            qty=o.qty,
                        )
            else:
                ex.advance(clock.tick(100 * n))
        except VenueReject:
            pass
        ex.check_invariants()
