"""BybitAdapter against the local venue: real pybit (REST) and websockets (streams) over real sockets.

The "static" venue never advances its market by itself (the crowd book stays put), so books, fills
and positions are deterministic; the "live" venue ticks every 50 ms for stream faults.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP

from engine.adapters.base import AdapterSettings
from engine.adapters.bybit import BybitAdapter
from engine.adapters.bybit.parsing import parse_orderbook_rest
from engine.errors import InsufficientMargin, OrderRejected
from engine.types import (
    BookHealth,
    FundingPayment,
    MarketEvent,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionSide,
    PositionUpdate,
    Side,
    TimeInForce,
    UserEvent,
    Venue,
    VenueStatus,
)
from engine.venue import faults
from engine.venue import model as vm
from engine.venue.server import AccountSpec, VenueServer

D = Decimal
KEY, SECRET = "bybit-test-key", "bybit-test-secret"
SYMBOL = "BTCUSDT"

Events = list[MarketEvent | UserEvent]
Factory = Callable[..., Awaitable[tuple[BybitAdapter, Events]]]


async def wait_for(pred: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def static_venue() -> AsyncIterator[VenueServer]:
    async with VenueServer(
        accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=D("100000"))], tick_ms=3_600_000
    ) as venue:
        yield venue


@pytest.fixture
async def live_venue() -> AsyncIterator[VenueServer]:
    async with VenueServer(
        accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=D("100000"))], tick_ms=50
    ) as venue:
        yield venue


def settings_for(venue: VenueServer, **overrides: Any) -> AdapterSettings:
    values: dict[str, Any] = {
        "venue": Venue.BYBIT,
        "rest_url": venue.base_url,
        "ws_public_url": f"{venue.ws_url}/v5/public/linear",
        "ws_private_url": f"{venue.ws_url}/v5/private",
        "api_key": KEY,
        "api_secret": SECRET,
        "symbols": (SYMBOL,),
        "request_timeout_s": 3.0,
    }
    values.update(overrides)
    return AdapterSettings(**values)


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    made: list[BybitAdapter] = []

    async def factory(venue: VenueServer, **overrides: Any) -> tuple[BybitAdapter, Events]:
        events: Events = []
        adapter = BybitAdapter(settings_for(venue, **overrides), events.append)
        made.append(adapter)
        await adapter.connect()
        return adapter, events

    yield factory
    for adapter in made:
        await adapter.close()


def updates(events: Events, link: str) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate) and e.order.client_order_id == link]


def request(
    link: str,
    side: Side,
    qty: str,
    *,
    type: OrderType = OrderType.LIMIT,
    price: Decimal | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    **kw: Any,
) -> OrderRequest:
    return OrderRequest(
        venue=Venue.BYBIT,
        symbol=SYMBOL,
        side=side,
        type=type,
        qty=D(qty),
        price=price,
        tif=tif,
        client_order_id=link,
        **kw,
    )


def touch(adapter: BybitAdapter) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    book = adapter.book(SYMBOL)
    (bid, bid_qty), (ask, ask_qty) = book.best_bid(), book.best_ask()
    return Decimal(bid), Decimal(bid_qty), Decimal(ask), Decimal(ask_qty)


async def venue_book(adapter: BybitAdapter, depth: int = 50) -> tuple[list[Any], list[Any]]:
    result = await adapter.rest.call("orderbook", {"category": "linear", "symbol": SYMBOL, "limit": depth})
    book = parse_orderbook_rest(result)
    return book.bids, book.asks


def local_book(adapter: BybitAdapter, depth: int = 50) -> tuple[list[Any], list[Any]]:
    book = adapter.book(SYMBOL)
    return book.levels("bid", depth), book.levels("ask", depth)


def venue_open_orders(venue: VenueServer) -> list[vm.VenueOrder]:
    return list(venue.core.open_orders(KEY, SYMBOL))


# ---- connect, reference data, books ---------------------------------------------------------------------


async def test_connect_when_static_market_then_instruments_and_book_equal_venue(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    instruments = await adapter.instruments()
    inst = instruments[SYMBOL]
    assert inst.tick_size > 0 and inst.lot_size > 0 and inst.min_notional > 0 and inst.max_leverage >= 1
    assert adapter.book_health(SYMBOL) is BookHealth.LIVE
    assert local_book(adapter) == await venue_book(adapter)
    statuses = [e for e in events if isinstance(e, VenueStatus)]
    assert {(s.stream, s.status) for s in statuses} >= {
        ("public", "connected"),
        ("private", "connected"),
        (f"book:{SYMBOL}", "live"),
    }
    assert any(type(e).__name__ == "MarkPrice" for e in events)


async def test_book_when_market_moves_then_equal_to_venue_after_deltas(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    for _ in range(20):  # move the market by hand: deltas on the stream
        static_venue.core.advance(static_venue.core.now_ms())
        await asyncio.sleep(0.02)
    want: list[Any] = []

    async def equal() -> bool:
        want[:] = [await venue_book(adapter)]
        return local_book(adapter) == want[0]

    deadline = time.monotonic() + 5.0
    while not await equal():
        assert time.monotonic() < deadline, "the local book never matched the venue's"
        await asyncio.sleep(0.02)
    assert adapter.stats()["book_updates"] > 1
    assert sum(1 for e in events if type(e).__name__ == "BookUpdate") > 1
    assert adapter.stats()["malformed"] == 0 and adapter.stats()["book_resyncs"] == 0


# ---- orders -------------------------------------------------------------------------------------------


async def test_limit_when_resting_then_new_then_amended_then_canceled(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    bid, _, _, _ = touch(adapter)
    price = bid - D(100) + D("0.04")  # off the 0.1 grid: rounded down for a buy
    order = await adapter.place_order(request("rest-1", Side.BUY, "0.0104", price=price))
    assert order.status is OrderStatus.NEW and order.qty == D("0.010") and order.price == bid - D(100)
    await wait_for(lambda: updates(events, "rest-1"), what="order stream NEW")
    assert updates(events, "rest-1")[0].order.status is OrderStatus.NEW
    (venue_order,) = venue_open_orders(static_venue)
    assert venue_order.price == bid - D(100) and venue_order.qty == D("0.010")

    amended = await adapter.amend_order(SYMBOL, client_order_id="rest-1", qty=D("0.02"), price=bid - D(50))
    assert amended.qty == D("0.020") and amended.price == bid - D(50)
    await wait_for(lambda: updates(events, "rest-1")[-1].order.qty == D("0.020"), what="amend on stream")
    got = await adapter.get_order(SYMBOL, client_order_id="rest-1")
    assert got is not None and got.price == bid - D(50) and got.status is OrderStatus.NEW
    assert [o.client_order_id for o in await adapter.open_orders(SYMBOL)] == ["rest-1"]

    canceled = await adapter.cancel_order(SYMBOL, client_order_id="rest-1")
    assert canceled.status is OrderStatus.CANCELED
    await wait_for(lambda: updates(events, "rest-1")[-1].order.status is OrderStatus.CANCELED)
    assert venue_open_orders(static_venue) == []
    assert await adapter.open_orders() == []


async def test_market_when_filled_then_fill_event_position_and_balance(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    _, _, ask, _ = touch(adapter)
    order = await adapter.place_order(request("mkt-1", Side.BUY, "0.01", type=OrderType.MARKET))
    assert order.status in (OrderStatus.NEW, OrderStatus.FILLED)
    await wait_for(lambda: any(u.fill for u in updates(events, "mkt-1")), what="fill")
    fill_update = next(u for u in updates(events, "mkt-1") if u.fill is not None)
    assert fill_update.fill is not None
    assert fill_update.fill.price == ask and fill_update.fill.qty == D("0.010") and fill_update.fill.fee > 0
    assert fill_update.order.status is OrderStatus.FILLED
    await wait_for(lambda: any(isinstance(e, PositionUpdate) for e in events), what="position")
    (position,) = await adapter.positions()
    assert position.qty == D("0.010") and position.side is PositionSide.BOTH and position.entry_price == ask
    (balance,) = await adapter.balances()
    assert balance.asset == "USDT" and balance.wallet_balance < D("100000")
    assert any(type(e).__name__ == "BalanceUpdate" for e in events)


async def test_limit_when_crossing_more_than_touch_then_partially_filled(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    _, _, ask, ask_qty = touch(adapter)
    qty = ask_qty + D("0.005")
    await adapter.place_order(request("part-1", Side.BUY, str(qty), price=ask))
    await wait_for(
        lambda: any(u.order.status is OrderStatus.PARTIALLY_FILLED for u in updates(events, "part-1")),
        what="partial fill",
    )
    fills = [u.fill for u in updates(events, "part-1") if u.fill is not None]
    assert sum(f.qty for f in fills) == ask_qty
    got = await adapter.get_order(SYMBOL, client_order_id="part-1")
    assert got is not None and got.status is OrderStatus.PARTIALLY_FILLED and got.filled_qty == ask_qty
    await adapter.cancel_order(SYMBOL, client_order_id="part-1")
    await wait_for(lambda: updates(events, "part-1")[-1].order.status is OrderStatus.CANCELED)
    assert updates(events, "part-1")[-1].order.filled_qty == ask_qty


async def test_cancel_all_when_two_open_then_both_canceled(static_venue: VenueServer, make: Factory) -> None:
    adapter, _ = await make(static_venue)
    bid, _, _, _ = touch(adapter)
    for i in range(2):
        await adapter.place_order(request(f"ca-{i}", Side.BUY, "0.01", price=bid - D(200 + i)))
    canceled = await adapter.cancel_all(SYMBOL)
    assert sorted(o.client_order_id for o in canceled) == ["ca-0", "ca-1"]
    assert all(o.status is OrderStatus.CANCELED for o in canceled)
    assert venue_open_orders(static_venue) == []


async def test_stop_market_when_placed_then_untriggered_with_direction(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    _, _, ask, _ = touch(adapter)
    order = await adapter.place_order(
        request("stop-1", Side.BUY, "0.01", type=OrderType.STOP_MARKET, trigger_price=ask + D(500))
    )
    assert order.status is OrderStatus.UNTRIGGERED and order.trigger_price == ask + D(500)
    await wait_for(lambda: updates(events, "stop-1"), what="stop on stream")
    streamed = updates(events, "stop-1")[-1].order
    assert streamed.type is OrderType.STOP_MARKET and streamed.status is OrderStatus.UNTRIGGERED
    with pytest.raises(OrderRejected) as info:  # a buy stop below the market fires at once
        await adapter.place_order(
            request("stop-2", Side.BUY, "0.01", type=OrderType.STOP_MARKET, trigger_price=ask - D(500))
        )
    assert info.value.reason == "would_trigger_immediately"


# ---- rejects ------------------------------------------------------------------------------------------


async def test_place_when_below_min_notional_then_local_reject_without_request(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, _ = await make(static_venue)
    inst = (await adapter.instruments())[SYMBOL]
    bid, _, _, _ = touch(adapter)
    before = adapter.rest.requests
    with pytest.raises(OrderRejected) as info:
        await adapter.place_order(request("tiny-1", Side.BUY, str(inst.min_qty), price=bid))
    assert info.value.reason == "min_notional" and info.value.code is None
    with pytest.raises(OrderRejected) as info:
        await adapter.place_order(request("tiny-2", Side.BUY, str(inst.lot_size / 2), price=bid))
    assert info.value.reason == "qty_out_of_range"
    assert adapter.rest.requests == before


async def test_post_only_when_would_take_then_rejected_on_stream(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    _, _, ask, _ = touch(adapter)
    with pytest.raises(OrderRejected) as info:  # Bybit cancels it on the stream; the adapter waits for that
        await adapter.place_order(request("po-1", Side.BUY, "0.01", price=ask, tif=TimeInForce.POST_ONLY))
    assert info.value.reason == "post_only"
    await wait_for(lambda: any(not u.order.status.is_open for u in updates(events, "po-1")))
    final = updates(events, "po-1")[-1].order
    assert final.status is OrderStatus.REJECTED and final.reason == "post_only"
    assert venue_open_orders(static_venue) == []


async def test_venue_rejects_when_mapped_then_engine_reasons(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, _ = await make(static_venue)
    bid, _, _, _ = touch(adapter)
    with pytest.raises(InsufficientMargin):
        await adapter.place_order(request("big-1", Side.BUY, "500", price=bid))
    with pytest.raises(OrderRejected) as info:
        await adapter.place_order(request("ro-1", Side.SELL, "0.01", type=OrderType.MARKET, reduce_only=True))
    assert info.value.reason == "reduce_only"
    with pytest.raises(OrderRejected) as info:
        await adapter.cancel_order(SYMBOL, client_order_id="never-placed")
    assert info.value.reason == "unknown_order"
    assert await adapter.get_order(SYMBOL, client_order_id="never-placed") is None
    await adapter.place_order(request("dup-1", Side.BUY, "0.01", price=bid - D(300)))
    with pytest.raises(OrderRejected) as info:
        await adapter.place_order(request("dup-1", Side.BUY, "0.01", price=bid - D(300)))
    assert info.value.reason == "duplicate_client_id"


async def test_account_settings_when_set_then_not_modified_is_success(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, _ = await make(static_venue)
    await adapter.set_leverage(SYMBOL, 10)
    await adapter.set_leverage(SYMBOL, 10)  # 110043 not modified: success
    from engine.types import MarginMode

    await adapter.set_margin_mode(SYMBOL, MarginMode.ISOLATED)
    await adapter.set_margin_mode(SYMBOL, MarginMode.ISOLATED)
    await adapter.set_position_mode(hedge=False)  # 110025 not modified: success
    assert static_venue.core.leverage(KEY, SYMBOL) == 10


async def test_hedge_mode_when_long_and_short_then_two_positions_and_close(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    await adapter.set_position_mode(hedge=True)
    await adapter.place_order(request("h-long", Side.BUY, "0.02", type=OrderType.MARKET))
    await adapter.place_order(request("h-short", Side.SELL, "0.01", type=OrderType.MARKET))
    await wait_for(lambda: len([e for e in events if isinstance(e, OrderUpdate) and e.fill]) >= 2)
    positions = {p.side: p for p in await adapter.positions()}
    assert positions[PositionSide.LONG].qty == D("0.020")
    assert positions[PositionSide.SHORT].qty == D("-0.010")
    fills = [e.fill for e in events if isinstance(e, OrderUpdate) and e.fill is not None]
    assert {f.position_side for f in fills} == {PositionSide.LONG, PositionSide.SHORT}
    # a reduce-only sell closes the long (positionIdx 1 inferred from the mode)
    await adapter.place_order(request("h-close", Side.SELL, "0.02", type=OrderType.MARKET, reduce_only=True))
    await wait_for(lambda: any(u.fill for u in updates(events, "h-close")))
    positions = {p.side: p for p in await adapter.positions()}
    assert PositionSide.LONG not in positions and positions[PositionSide.SHORT].qty == D("-0.010")


# ---- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["http_5xx", "http_5xx_after_apply", "http_timeout"])
async def test_place_when_unknown_outcome_then_exactly_one_order(
    static_venue: VenueServer, make: Factory, fault: str
) -> None:
    adapter, _ = await make(static_venue, request_timeout_s=0.5)
    bid, _, _, _ = touch(adapter)
    static_venue.ctx.faults.timeout_s = 1.0
    setattr(static_venue.ctx.faults, fault, 1)
    order = await adapter.place_order(request(f"once-{fault}", Side.BUY, "0.01", price=bid - D(100)))
    assert order.client_order_id == f"once-{fault}" and order.status is OrderStatus.NEW
    assert [o.client_order_id for o in venue_open_orders(static_venue)] == [f"once-{fault}"]
    stats = adapter.stats()
    assert stats["order_lookups"] >= 1
    assert stats["place_retries"] == 1  # one unknown outcome, then the lookup
    assert stats["orders_adopted"] == (1 if fault == "http_5xx_after_apply" else 0)


async def test_rate_limit_when_10006_then_back_off_and_retry(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, _ = await make(static_venue)
    bid, _, _, _ = touch(adapter)
    other = HTTP(testnet=False, api_key=KEY, api_secret=SECRET, max_retries=1, retry_codes={-1})
    other.endpoint = static_venue.base_url

    def burn() -> None:
        """Another client of the same account uses up the create budget (10/s) until it is refused."""
        for _ in range(50):
            try:
                other.place_order(
                    category="linear", symbol=SYMBOL, side="Buy", orderType="Limit", qty="0.0001", price="1"
                )
            except InvalidRequestError as exc:
                if exc.status_code == 10006:
                    return

    placed: list[str] = []
    for attempt in range(5):  # the venue's window may roll over between the burst and our order
        await asyncio.get_running_loop().run_in_executor(None, burn)
        link = f"rl-{attempt}"
        order = await adapter.place_order(request(link, Side.BUY, "0.01", price=bid - D(100 + attempt)))
        placed.append(link)
        assert order.status is OrderStatus.NEW
        if adapter.stats()["rest_rate_limited"]:
            break
    stats = adapter.stats()
    assert stats["rest_rate_limited"] >= 1 and stats["ratelimit_backoffs"] >= 1
    assert stats["ratelimit_bans"] == 0
    assert sorted(o.client_order_id for o in venue_open_orders(static_venue)) == placed


async def test_clock_when_venue_shifted_then_10002_resync_and_retry(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, _ = await make(static_venue)
    static_venue.ctx.faults.clock_offset_ms = 30_000
    balances = await adapter.balances()
    assert balances and adapter.stats()["clock_skew_retries"] == 1
    assert 29_000 < adapter.clock.offset_ms < 31_000


async def test_gap_when_sequence_skipped_then_resubscribe_and_equal_book(
    live_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(live_venue)
    live_venue.ctx.faults.ws_skip_seq = 1
    await wait_for(lambda: adapter.stats()["book_resyncs"] >= 1, what="resync")
    await wait_for(lambda: adapter.book_health(SYMBOL) is BookHealth.LIVE, what="live again")
    health = [e.status for e in events if isinstance(e, VenueStatus) and e.stream == f"book:{SYMBOL}"]
    assert health[-2:] == ["resyncing", "live"]
    assert adapter.stats()["book_resubscribes"] >= 1


async def test_stream_when_stalled_then_stale_then_reconnect_and_live(
    live_venue: VenueServer, make: Factory
) -> None:
    adapter, _ = await make(live_venue, stale_after_s=0.3)
    live_venue.ctx.faults.ws_stall = True
    await wait_for(lambda: adapter.book_health(SYMBOL) is BookHealth.STALE, what="stale")
    await wait_for(lambda: adapter.stats()["ws_public_stalls"] >= 1, what="stall detected")
    live_venue.ctx.faults.ws_stall = False
    await wait_for(lambda: adapter.book_health(SYMBOL) is BookHealth.LIVE, what="live again")
    assert adapter.stats()["ws_public_reconnects"] >= 1


async def test_ws_drop_when_fill_during_outage_then_reconciled_fill(
    static_venue: VenueServer, make: Factory
) -> None:
    adapter, events = await make(static_venue)
    bid, _, ask, _ = touch(adapter)
    await adapter.place_order(request("gap-1", Side.SELL, "0.01", price=ask + D(1000)))
    await wait_for(lambda: updates(events, "gap-1"))
    await faults.ws_registry(static_venue.ctx).drop_all()
    # while the private stream is down the resting sell is moved onto the bid, where it fills
    (resting,) = venue_open_orders(static_venue)
    static_venue.core.amend_order(KEY, SYMBOL, order_id=resting.order_id, qty=None, price=bid)
    assert venue_open_orders(static_venue) == []
    await wait_for(lambda: adapter.stats()["reconciles"] >= 1, what="reconcile")
    await wait_for(lambda: any(u.fill for u in updates(events, "gap-1")), what="fill after reconnect")
    final = updates(events, "gap-1")[-1].order
    assert final.status is OrderStatus.FILLED and final.filled_qty == D("0.010")
    assert adapter.stats()["duplicate_fills"] == 0
    assert not any(isinstance(e, FundingPayment) for e in events)


def test_order_table_when_over_bound_then_closed_orders_evicted_oldest_first_and_open_ones_never(
    venue: VenueServer,
) -> None:
    import dataclasses

    adapter = BybitAdapter(settings_for(venue), [].append, max_tracked_orders=3)
    base = Order(
        venue=Venue.BYBIT,
        symbol=SYMBOL,
        client_order_id="o0",
        venue_order_id="v0",
        side=Side.BUY,
        type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        qty=Decimal("0.010"),
        price=Decimal("60000"),
        filled_qty=Decimal(0),
        avg_price=None,
        status=OrderStatus.NEW,
        reduce_only=False,
        position_side=PositionSide.BOTH,
        trigger_price=None,
        ts_ms=1,
    )
    for i in range(5):  # five open orders: more than the bound, all kept
        adapter._store(dataclasses.replace(base, client_order_id=f"o{i}"))
    adapter._store(dataclasses.replace(base, client_order_id="c0", status=OrderStatus.CANCELED))
    assert list(adapter._orders) == ["o0", "o1", "o2", "o3", "o4"]  # the closed one made room for itself
    adapter._store(dataclasses.replace(base, client_order_id="o1", status=OrderStatus.CANCELED))
    adapter._store(dataclasses.replace(base, client_order_id="o5"))
    assert list(adapter._orders) == ["o0", "o2", "o3", "o4", "o5"]  # the oldest closed one went
