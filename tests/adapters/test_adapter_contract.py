"""The venue-agnostic adapter contract, run against the local venue through the real client libraries.

Parametrised over venues: written for Binance; the Bybit worker adds ``Venue.BYBIT`` to ``VENUES``
once its adapter is registered in ``conftest.MAKERS``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from engine.adapters.base import UNKNOWN_TO_VENUE
from engine.errors import OrderRejected
from engine.types import (
    BalanceUpdate,
    BookHealth,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    TimeInForce,
    Venue,
    VenueStatus,
)
from engine.venue.server import AccountSpec, VenueServer
from tests.adapters.conftest import KEY, SECRET, AdapterFactory

VENUES = [Venue.BINANCE, Venue.BYBIT]

D = Decimal
_ids = itertools.count()


@pytest.fixture(params=VENUES)
def venue_name(request: pytest.FixtureRequest) -> Venue:
    return Venue(request.param)


def cid() -> str:
    return f"t{time.time_ns() // 1000 % 10**12}x{next(_ids)}"


async def eventually(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.02)


async def book_equals_venue(adapter: Any, venue: VenueServer, symbol: str, n: int = 5) -> None:
    def same() -> bool:
        _, bids, asks = venue.core.depth(symbol, n)
        book = adapter.book(symbol)
        return [(D(p), D(q)) for p, q in book.levels("bid", n)] == [(D(p), D(q)) for p, q in bids] and [
            (D(p), D(q)) for p, q in book.levels("ask", n)
        ] == [(D(p), D(q)) for p, q in asks]

    await eventually(same, 5.0, f"{symbol} book equal to the venue's")


def request(
    venue_name: Venue, side: Side, qty: str, *, type: OrderType = OrderType.MARKET, **kw: Any
) -> OrderRequest:
    return OrderRequest(
        venue=venue_name, symbol="BTCUSDT", side=side, type=type, qty=D(qty), client_order_id=cid(), **kw
    )


def venue_open_orders(venue: VenueServer) -> list[Any]:
    return list(venue.core.open_orders(KEY))


async def test_connect_when_started_then_instruments_loaded_and_books_live_and_equal_to_venue(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, events = await adapter_factory(venue_name)
    instruments = await adapter.instruments()
    btc = instruments["BTCUSDT"]
    assert btc.tick_size > 0 and btc.lot_size > 0 and btc.min_notional > 0 and btc.max_leverage >= 1
    assert adapter.book_health("BTCUSDT") is BookHealth.LIVE
    await book_equals_venue(adapter, venue, "BTCUSDT")
    await book_equals_venue(adapter, venue, "ETHUSDT")
    assert any(
        isinstance(e, VenueStatus) and e.stream == "book:BTCUSDT" and e.status == "live" for e in events
    )


async def test_limit_order_when_placed_and_cancelled_then_listed_and_events_delivered(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, events = await adapter_factory(venue_name)
    bid = adapter.book("BTCUSDT").best_bid()[0]
    req = request(venue_name, Side.BUY, "0.0105", type=OrderType.LIMIT, price=bid * D("0.98") + D("0.0333"))
    order = await adapter.place_order(req)
    assert order.status is OrderStatus.NEW and order.qty == D("0.010")  # rounded down to the lot
    assert order.price is not None and order.price <= bid * D("0.98") + D("0.0333")
    assert [o.client_order_id for o in await adapter.open_orders("BTCUSDT")] == [req.client_order_id]
    assert (await adapter.get_order("BTCUSDT", client_order_id=req.client_order_id)).status is OrderStatus.NEW
    cancelled = await adapter.cancel_order("BTCUSDT", client_order_id=req.client_order_id)
    assert cancelled.status is OrderStatus.CANCELED
    assert venue_open_orders(venue) == []
    await eventually(
        lambda: any(
            isinstance(e, OrderUpdate)
            and e.order.client_order_id == req.client_order_id
            and e.order.status is OrderStatus.CANCELED
            for e in events
        ),
        what="cancel event",
    )
    assert await adapter.get_order("BTCUSDT", client_order_id="never-sent-1") is None


async def test_market_order_when_filled_then_fill_event_position_and_close(
    adapter_factory: AdapterFactory, venue_name: Venue
) -> None:
    adapter, events = await adapter_factory(venue_name)
    req = request(venue_name, Side.BUY, "0.020")
    await adapter.place_order(req)

    def filled() -> list[OrderUpdate]:
        return [
            e for e in events.of(OrderUpdate) if e.order.client_order_id == req.client_order_id and e.fill
        ]

    await eventually(lambda: sum(u.fill.qty for u in filled()) == D("0.020"), what="fills")
    assert filled()[-1].order.status is OrderStatus.FILLED
    assert all(u.fill.fee >= 0 and u.fill.price > 0 for u in filled())
    positions = await adapter.positions()
    btc = [p for p in positions if p.symbol == "BTCUSDT"]
    assert len(btc) == 1 and btc[0].qty == D("0.020") and btc[0].entry_price > 0
    balances = await adapter.balances()
    assert any(b.asset == "USDT" and b.wallet_balance > 0 for b in balances)
    close = request(venue_name, Side.SELL, "0.020", reduce_only=True)
    await adapter.place_order(close)
    await eventually(
        lambda: any(
            e.order.client_order_id == close.client_order_id and e.order.status is OrderStatus.FILLED
            for e in events.of(OrderUpdate)
        ),
        what="close filled",
    )
    assert [p for p in await adapter.positions() if p.symbol == "BTCUSDT"] == []


async def test_rejects_when_min_notional_reduce_only_post_only_then_mapped_reasons(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, _ = await adapter_factory(venue_name)
    sent_before = adapter.stats().get("rest_requests", 0)
    with pytest.raises(OrderRejected) as small:
        await adapter.place_order(
            request(venue_name, Side.BUY, "0.001", type=OrderType.LIMIT, price=D("1000"))
        )
    assert small.value.reason == "min_notional" and "minimum" in small.value.message
    assert adapter.stats().get("rest_requests", 0) == sent_before  # nothing sent
    with pytest.raises(OrderRejected) as ro:
        await adapter.place_order(request(venue_name, Side.SELL, "0.010", reduce_only=True))
    assert ro.value.reason == "reduce_only"
    ask = adapter.book("BTCUSDT").best_ask()[0]
    with pytest.raises(OrderRejected) as po:
        await adapter.place_order(
            request(
                venue_name,
                Side.BUY,
                "0.010",
                type=OrderType.LIMIT,
                price=ask * D("1.001"),
                tif=TimeInForce.POST_ONLY,
            )
        )
    assert po.value.reason == "post_only"
    assert venue_open_orders(venue) == []


async def test_place_when_5xx_or_5xx_after_apply_then_exactly_one_order_on_venue(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, _ = await adapter_factory(venue_name, retry_delay_s=0.01)
    bid = adapter.book("BTCUSDT").best_bid()[0]
    venue.ctx.faults.http_5xx = 1
    first = await adapter.place_order(
        request(venue_name, Side.BUY, "0.010", type=OrderType.LIMIT, price=bid * D("0.97"))
    )
    venue.ctx.faults.http_5xx_after_apply = 1
    second = await adapter.place_order(
        request(venue_name, Side.BUY, "0.010", type=OrderType.LIMIT, price=bid * D("0.96"))
    )
    ids = sorted(o.client_order_id for o in venue_open_orders(venue))
    assert ids == sorted([first.client_order_id, second.client_order_id])
    assert adapter.stats()["orders_adopted"] >= 1 and adapter.stats()["place_retries"] >= 2
    await adapter.cancel_all("BTCUSDT")
    assert venue_open_orders(venue) == []


async def test_place_when_request_times_out_then_looked_up_and_sent_once(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, _ = await adapter_factory(venue_name, request_timeout_s=0.5, retry_delay_s=0.01)
    bid = adapter.book("BTCUSDT").best_bid()[0]
    venue.ctx.faults.timeout_s = 1.0
    venue.ctx.faults.http_timeout = 1
    order = await adapter.place_order(
        request(venue_name, Side.BUY, "0.010", type=OrderType.LIMIT, price=bid * D("0.97"))
    )
    assert [o.client_order_id for o in venue_open_orders(venue)] == [order.client_order_id]
    await adapter.cancel_all()


async def test_ws_drop_when_fill_during_outage_then_reconnected_resynced_and_fill_delivered_once(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, events = await adapter_factory(venue_name)
    reconnects = adapter.stats()["reconnects"]
    # every stream of the adapter (Binance has three, Bybit two) reports ws_<stream>_connects
    streams = sum(1 for key in adapter.stats() if key.startswith("ws_") and key.endswith("_connects"))
    assert streams >= 2
    venue.ctx.faults.ws_drop = 1
    req = request(venue_name, Side.BUY, "0.010")
    await adapter.place_order(req)
    await eventually(
        lambda: adapter.stats()["reconnects"] >= reconnects + streams, what="all streams reconnected"
    )
    await eventually(lambda: adapter.book_health("BTCUSDT") is BookHealth.LIVE, what="book live again")
    await book_equals_venue(adapter, venue, "BTCUSDT")

    def fills() -> list[OrderUpdate]:
        return [
            e for e in events.of(OrderUpdate) if e.order.client_order_id == req.client_order_id and e.fill
        ]

    await eventually(lambda: sum(u.fill.qty for u in fills()) == D("0.010"), what="fill delivered")
    await asyncio.sleep(0.3)
    assert len({u.fill.trade_id for u in fills()}) == len(fills())  # none twice
    assert any(isinstance(e, VenueStatus) and e.status == "disconnected" for e in events)


async def test_sequence_gap_when_injected_then_resyncing_seen_counted_and_book_equal_again(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, events = await adapter_factory(venue_name)
    resyncs = adapter.stats()["resyncs"]
    venue.ctx.faults.ws_skip_seq = 1
    await eventually(lambda: adapter.stats()["resyncs"] > resyncs, what="resync counted")
    assert any(
        isinstance(e, VenueStatus) and e.stream.startswith("book:") and e.status == "resyncing"
        for e in events
    )
    await eventually(lambda: adapter.book_health("BTCUSDT") is BookHealth.LIVE, what="live again")
    await book_equals_venue(adapter, venue, "BTCUSDT")


async def test_stalled_stream_when_venue_goes_silent_then_detected_and_reconnected(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, _events = await adapter_factory(venue_name, stale_after_s=0.3, stall_after_s=0.6)
    venue.ctx.faults.ws_stall = True
    await eventually(lambda: adapter.book_health("BTCUSDT") is BookHealth.STALE, what="stale")
    await eventually(
        lambda: sum(v for k, v in adapter.stats().items() if k.endswith("_stalls")) >= 1, what="stall"
    )
    venue.ctx.faults.ws_stall = False
    await eventually(lambda: adapter.book_health("BTCUSDT") is BookHealth.LIVE, what="live after stall")
    assert adapter.stats()["reconnects"] >= 1


async def test_clock_when_venue_shifted_then_skew_resynced_and_request_retried(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, _ = await adapter_factory(venue_name)
    venue.ctx.faults.clock_offset_ms = 40_000
    balances = await adapter.balances()
    assert balances and adapter.stats()["clock_skew_retries"] == 1


async def test_order_fills_when_orders_traded_then_each_orders_venue_trades_by_either_id(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    adapter, events = await adapter_factory(venue_name)
    buy, sell = request(venue_name, Side.BUY, "0.020"), request(venue_name, Side.SELL, "0.010")
    placed = {}
    for req in (buy, sell):
        placed[req.client_order_id] = await adapter.place_order(req)
    await eventually(
        lambda: (
            sum(1 for u in events.of(OrderUpdate) if u.fill and u.order.status is OrderStatus.FILLED) >= 2
        ),
        what="both filled",
    )
    # a restarted engine's adapter (it never saw these orders) asks the venue's trade history
    fresh, _ = await adapter_factory(venue_name)
    for req in (buy, sell):
        venue_trades = [
            f for f in venue.core.fills(KEY, "BTCUSDT") if f.client_order_id == req.client_order_id
        ]
        assert venue_trades
        by_cid = await fresh.order_fills("BTCUSDT", client_order_id=req.client_order_id)
        assert sorted((f.price, f.qty) for f in by_cid) == sorted((t.price, t.qty) for t in venue_trades)
        assert len({f.trade_id for f in by_cid}) == len(venue_trades)
        assert sum(f.qty for f in by_cid) == req.qty
        assert sum(f.fee for f in by_cid) == sum(t.fee for t in venue_trades)
        assert all(f.client_order_id == req.client_order_id and f.side is req.side for f in by_cid)
        assert [f.ts_ms for f in by_cid] == sorted(f.ts_ms for f in by_cid)
        vid = placed[req.client_order_id].venue_order_id
        by_vid = await fresh.order_fills("BTCUSDT", venue_order_id=vid)
        assert sorted(f.trade_id for f in by_vid) == sorted(f.trade_id for f in by_cid)
        assert all(f.venue_order_id == vid for f in by_vid)
    assert await fresh.order_fills("BTCUSDT", client_order_id="never-sent-2") == []
    with pytest.raises(ValueError):
        await fresh.order_fills("BTCUSDT")


async def test_venue_restart_when_order_unknown_after_reconnect_then_closed_out_position_flat_book_resynced(
    adapter_factory: AdapterFactory, venue: VenueServer, venue_name: Venue
) -> None:
    """The venue restarts with an empty memory (same port): the resting order it no longer knows is closed
    out (CANCELED, reason ``unknown_to_venue``), the vanished position is emitted flat, the balance is the
    new venue's and the book resyncs to the new venue's (whose update ids start again)."""
    adapter, events = await adapter_factory(venue_name)
    bid = adapter.book("BTCUSDT").best_bid()[0]
    resting = request(venue_name, Side.BUY, "0.010", type=OrderType.LIMIT, price=bid * D("0.98"))
    assert (await adapter.place_order(resting)).status is OrderStatus.NEW
    await adapter.place_order(request(venue_name, Side.BUY, "0.010"))
    await eventually(
        lambda: any(e.position.qty == D("0.010") for e in events.of(PositionUpdate)), what="position opened"
    )
    port = venue.port
    await venue.stop()
    seen = len(events)
    reborn = VenueServer(
        port=port, tick_ms=20, accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=D("100000"))]
    )
    await reborn.start()
    try:

        def closed_out() -> list[OrderUpdate]:
            return [
                e
                for e in events[seen:]
                if isinstance(e, OrderUpdate) and e.order.client_order_id == resting.client_order_id
            ]

        await eventually(lambda: closed_out(), 15.0, "the lost order closed out")
        update = closed_out()[-1]
        assert update.order.status is OrderStatus.CANCELED and update.order.reason == UNKNOWN_TO_VENUE
        assert update.fill is None
        await eventually(
            lambda: any(
                isinstance(e, PositionUpdate) and e.position.symbol == "BTCUSDT" and e.position.qty == 0
                for e in events[seen:]
            ),
            what="the vanished position emitted flat",
        )
        await eventually(
            lambda: any(
                isinstance(e, BalanceUpdate) and e.balance.wallet_balance == D("100000")
                for e in events[seen:]
            ),
            what="the new venue's balance",
        )
        assert not [o for o in await adapter.open_orders() if o.client_order_id == resting.client_order_id]
        await eventually(lambda: adapter.book_health("BTCUSDT") is BookHealth.LIVE, 10.0, "book live again")
        await book_equals_venue(adapter, reborn, "BTCUSDT")
    finally:
        await adapter.close()
        await reborn.stop()
