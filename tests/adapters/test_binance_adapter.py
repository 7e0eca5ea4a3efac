"""Binance-only adapter behaviour against the local venue (listenKey, rate limits, algo orders)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import aiohttp
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from engine.adapters.binance.constants import rate_limits
from engine.adapters.binance.ws import private_stream_url
from engine.errors import RateLimited
from engine.types import OrderStatus, OrderType, OrderUpdate, Side, TriggerBy, Venue
from engine.venue import model as vm
from engine.venue.ratelimit import BinanceLimits
from engine.venue.server import VenueConfig, VenueServer
from tests.adapters.conftest import KEY, AdapterFactory
from tests.adapters.test_adapter_contract import eventually, request, venue_open_orders

D = Decimal
B = Venue.BINANCE


async def test_listen_key_when_expired_then_recreated_and_fills_during_outage_reconciled(
    adapter_factory: AdapterFactory, venue: VenueServer
) -> None:
    adapter, events = await adapter_factory(B)
    venue.ctx.faults.expire_listen_keys = True
    await eventually(lambda: adapter.stats()["listen_key_expired"] == 1, what="expiry seen")
    req = request(B, Side.BUY, "0.010")
    await adapter.place_order(req)  # filled while the user stream is down
    await eventually(lambda: adapter.stats()["listen_keys"] >= 2, what="new listenKey")

    def fills() -> list[OrderUpdate]:
        return [
            e for e in events.of(OrderUpdate) if e.order.client_order_id == req.client_order_id and e.fill
        ]

    await eventually(lambda: sum(u.fill.qty for u in fills()) == D("0.010"), what="fill reconciled")
    assert adapter.stats()["reconciles"] >= 2


async def test_burst_when_venue_limit_small_then_backs_off_and_never_banned(
    adapter_factory: AdapterFactory, venue: VenueServer
) -> None:
    # the adapter believes a far larger budget than the venue grants: the venue's 429 must stop it
    adapter, _ = await adapter_factory(B, rate_rules=rate_limits(weight_per_minute=10**6))
    adapter.limiter.set_limit("weight", 10**6)
    venue_limiter = venue.app  # the venue's own counters are checked through its state below
    assert venue_limiter is not None
    used = adapter.limiter.used("weight")
    adapter.limiter.on_response("GET /fapi/v1/time", 200, {})
    hit: list[RateLimited] = []

    async def hammer() -> None:
        for _ in range(3000):
            try:
                await adapter.balances()
            except RateLimited as exc:
                hit.append(exc)
                return

    task = asyncio.create_task(hammer())
    await eventually(lambda: bool(hit), 20.0, "a 429")
    assert adapter.limiter.blocked_for_s > 0 and adapter.stats()["ratelimit_backoffs"] == 1
    blocked = asyncio.create_task(adapter.balances())  # waits for the back-off: nothing is sent
    await asyncio.sleep(0.3)
    assert not blocked.done()
    blocked.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await blocked
    await task
    assert adapter.stats()["ratelimit_bans"] == 0 and used >= 0


async def test_stop_market_when_placed_then_algo_order_listed_and_cancelled(
    adapter_factory: AdapterFactory, venue: VenueServer
) -> None:
    adapter, _ = await adapter_factory(B)
    bid = adapter.book("BTCUSDT").best_bid()[0]
    req = request(
        B,
        Side.SELL,
        "0.010",
        type=OrderType.STOP_MARKET,
        trigger_price=bid * D("0.9"),
        trigger_by=TriggerBy.MARK,
        reduce_only=False,
    )
    order = await adapter.place_order(req)
    assert order.status is OrderStatus.UNTRIGGERED and order.type is OrderType.STOP_MARKET
    assert [o.client_order_id for o in await adapter.open_orders("BTCUSDT")] == [req.client_order_id]
    cancelled = await adapter.cancel_order("BTCUSDT", client_order_id=req.client_order_id)
    assert cancelled.status is OrderStatus.CANCELED and venue_open_orders(venue) == []


async def _record(ws: ClientConnection, frames: list[bytes]) -> None:
    async for message in ws:
        frames.append(message if isinstance(message, bytes) else message.encode())


async def test_stop_market_when_triggered_and_filled_while_user_stream_down_then_fill_backfilled_once(
    adapter_factory: AdapterFactory, venue: VenueServer
) -> None:
    """A reduce-only STOP_MARKET triggers and fills while the adapter's user stream is down: on reconnect,
    reconciliation finds the algo order FINISHED and backfills its fill from ``userTrades`` under the
    order its trigger created (``actualOrderId``), with the venue's trade id, qty, price and fee, once.
    The stream's own frames of that execution (recorded on a second connection to the same listenKey)
    replayed afterwards, and another reconciliation, deliver nothing more."""
    adapter, events = await adapter_factory(B)
    entry = request(B, Side.BUY, "0.010")
    await adapter.place_order(entry)
    await eventually(
        lambda: any(
            u.fill for u in events.of(OrderUpdate) if u.order.client_order_id == entry.client_order_id
        ),
        what="entry filled",
    )
    key = adapter._listen_key
    private = adapter._private_ws
    assert key is not None and private is not None
    frames: list[bytes] = []
    async with websockets.connect(private_stream_url(venue.ws_url, key)) as recorder:
        reader = asyncio.create_task(_record(recorder, frames))
        await private.stop()  # the adapter's user stream is down from here
        core = venue.core
        trigger = core.mark("BTCUSDT").last_price - D("5")
        stop = request(
            B,
            Side.SELL,
            "0.010",
            type=OrderType.STOP_MARKET,
            trigger_price=trigger,
            trigger_by=TriggerBy.LAST,
            reduce_only=True,
        )
        assert (await adapter.place_order(stop)).status is OrderStatus.UNTRIGGERED
        # another account sells through the bids to below the trigger: the last price crosses it, the
        # stop fires and its market sell fills, all on the venue
        core.add_account(api_key="mover", api_secret="mover-secret", deposit=D("10000000"))
        core.place_order(
            "mover",
            vm.OrderRequest(
                symbol="BTCUSDT",
                side=vm.Side.SELL,
                type=vm.OrderType.LIMIT,
                tif=vm.TimeInForce.IOC,
                price=trigger - D("2"),
                qty=D("100"),
            ),
        )
        algo = core.get_order(KEY, "BTCUSDT", client_order_id=stop.client_order_id)
        assert algo.status is vm.OrderStatus.FILLED and algo.filled_qty == D("0.010")
        trades = [f for f in core.fills(KEY, "BTCUSDT") if f.client_order_id == stop.client_order_id]
        assert len(trades) == 1 and trades[0].order_id == algo.order_id
        trade = trades[0]
        await eventually(lambda: any(b'"x":"TRADE"' in f for f in frames), what="the stream's frames")
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    def fills() -> list[OrderUpdate]:
        return [
            u for u in events.of(OrderUpdate) if u.order.client_order_id == stop.client_order_id and u.fill
        ]

    assert fills() == []  # nothing reached the adapter while its stream was down
    reconciles = adapter.stats()["reconciles"]
    private.start()  # the stream is back: reconnected, reconciled
    await eventually(lambda: adapter.stats()["reconciles"] > reconciles, what="reconciled")
    await eventually(lambda: bool(fills()), what="stop fill backfilled")
    got = fills()
    assert len(got) == 1
    fill = got[0].fill
    assert fill is not None
    assert (fill.trade_id, fill.qty, fill.price, fill.fee, fill.fee_asset, fill.side) == (
        str(trade.trade_id),
        trade.qty,
        trade.price,
        trade.fee,
        "USDT",
        Side.SELL,
    )
    assert fill.realized_pnl == trade.realized_pnl and fill.venue_order_id == str(trade.order_id)
    assert got[0].order.status is OrderStatus.FILLED and got[0].order.filled_qty == D("0.010")
    assert adapter.stats()["reconciled_fills"] >= 1

    # the venue named the actual order in its ALGO_UPDATE (``ai``) too
    algo_updates = [orjson.loads(f)["o"] for f in frames if b'"e":"ALGO_UPDATE"' in f]
    assert [u["ai"] for u in algo_updates if u["X"] == "TRIGGERED"] == [str(algo.order_id)]
    # replay: the stream's frames of that execution arrive late, then another reconciliation runs
    duplicates = adapter.stats()["duplicate_fills"]
    for frame in frames:
        if b'"e":"ORDER_TRADE_UPDATE"' in frame or b'"e":"ALGO_UPDATE"' in frame:
            adapter._on_private(frame, time.monotonic_ns())
    assert adapter.stats()["duplicate_fills"] == duplicates + 1
    reconciles = adapter.stats()["reconciles"]
    await private.reconnect("test")
    await eventually(lambda: adapter.stats()["reconciles"] > reconciles, what="reconciled again")
    async with adapter._reconcile_lock:  # held while a reconciliation runs: this one is over
        assert len(fills()) == 1
    by_cid = await adapter.order_fills("BTCUSDT", client_order_id=stop.client_order_id)
    assert [f.trade_id for f in by_cid] == [str(trade.trade_id)]


_HIGH_LIMITS = BinanceLimits(weight_per_minute=1_000_000, orders_per_10s=100_000, orders_per_minute=1_000_000)


@pytest.mark.parametrize("venue", [{"config": VenueConfig(rate_limits=_HIGH_LIMITS)}], indirect=True)
async def test_connect_when_venue_weight_already_used_then_exchange_info_limits_first_and_no_stall(
    adapter_factory: AdapterFactory, venue: VenueServer
) -> None:
    # earlier start-ups of the same IP used 2200 weight this minute: past 80% of the default 2400, far
    # below the 1,000,000 this venue announces in exchangeInfo
    # (the venue's weight window is per clock minute, as Binance's: a run that straddles a minute's end
    # starts again from zero, hence "until", not a fixed count)
    used = 0
    async with aiohttp.ClientSession() as http:
        for _ in range(330):
            async with http.get(f"{venue.base_url}/fapi/v1/depth?symbol=BTCUSDT&limit=1000") as resp:
                assert resp.status == 200
                used = int(resp.headers["X-MBX-USED-WEIGHT-1M"])
            if used >= 2_200:
                break
    assert used >= 2_200
    t0 = time.monotonic()
    async with asyncio.timeout(15):
        adapter, _ = await adapter_factory(B)
    assert time.monotonic() - t0 < 10
    assert adapter.limiter.waits == 0  # the clock sync did not wait for the next minute
    assert adapter.limiter.rules.cost("GET /fapi/v1/time")  # (the time requests are rate limited)


def _filled(cid: str, trade_id: str, ts: int) -> OrderUpdate:
    from engine.types import Fill, Order, PositionSide, TimeInForce

    o = Order(
        venue=B,
        symbol="BTCUSDT",
        client_order_id=cid,
        venue_order_id=f"9{ts}",
        side=Side.BUY,
        type=OrderType.MARKET,
        tif=TimeInForce.IOC,
        qty=D("0.010"),
        price=None,
        filled_qty=D("0.010"),
        avg_price=D("60000"),
        status=OrderStatus.FILLED,
        reduce_only=False,
        position_side=PositionSide.BOTH,
        trigger_price=None,
        ts_ms=ts,
    )
    f = Fill(
        venue=B,
        symbol="BTCUSDT",
        client_order_id=cid,
        venue_order_id=o.venue_order_id,
        trade_id=trade_id,
        side=Side.BUY,
        position_side=PositionSide.BOTH,
        price=D("60000"),
        qty=D("0.010"),
        fee=D("0.24"),
        fee_asset="USDT",
        is_maker=False,
        realized_pnl=D(0),
        ts_ms=ts,
    )
    return OrderUpdate(order=o, fill=f)


def test_fill_qty_when_many_orders_filled_then_bounded_with_the_order_cache_and_late_duplicate_dropped(
    venue: VenueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.adapters.binance import BinanceAdapter
    from engine.adapters.binance import adapter as binance_adapter
    from tests.adapters.conftest import settings_for

    monkeypatch.setattr(binance_adapter, "_MAX_ORDERS", 5)
    sent: list[object] = []
    adapter = BinanceAdapter(settings_for(venue, B), sent.append)
    updates = [_filled(f"c{i}", f"T{i}", 1000 + i) for i in range(50)]
    for u in updates:
        adapter._deliver_order_update(u)
    assert len(sent) == 50
    assert len(adapter._orders) == 5 and len(adapter._fill_qty) == 5  # one entry per cached order
    assert set(adapter._fill_qty) == set(adapter._orders) == {f"c{i}" for i in range(45, 50)}
    # a late replay of an evicted order's fill: still a duplicate (trade id), not delivered again
    adapter._deliver_order_update(updates[0])
    assert len(sent) == 50 and adapter.stats()["duplicate_fills"] == 1
    assert len(adapter._fill_qty) <= 5


def test_order_cache_when_over_bound_then_a_closed_order_with_fills_owed_outlives_settled_ones(
    venue: VenueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from engine.adapters.binance import BinanceAdapter
    from engine.adapters.binance import adapter as binance_adapter
    from tests.adapters.conftest import settings_for

    monkeypatch.setattr(binance_adapter, "_MAX_ORDERS", 3)
    adapter = BinanceAdapter(settings_for(venue, B), [].append)
    owed = _filled("owed", "T-owed", 999).order  # FILLED in a REST answer; its stream fill not yet seen
    adapter._remember(owed)
    opened = _filled("open", "T-open", 999).order
    adapter._remember(dataclasses.replace(opened, status=OrderStatus.NEW, filled_qty=D(0)))
    for i in range(6):
        adapter._deliver_order_update(_filled(f"c{i}", f"T{i}", 1000 + i))
    # the settled ones go first, oldest first; the open order and the one with a fill owed stay
    assert list(adapter._orders) == ["owed", "open", "c5"]
    adapter._remember(dataclasses.replace(owed, client_order_id="owed2"))  # c5, settled, goes
    assert list(adapter._orders) == ["owed", "open", "owed2"]
    # only orders with fills owed left to evict: the oldest of them goes (the bound holds)
    adapter._remember(dataclasses.replace(owed, client_order_id="owed3"))
    assert list(adapter._orders) == ["open", "owed2", "owed3"]
