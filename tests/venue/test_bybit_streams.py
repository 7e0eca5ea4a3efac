"""The Bybit v5 streams of the local venue, through a plain ``websockets`` client and pybit's own
WebSocket (protocol notes 2.6 to 2.8, 3.2)."""

from __future__ import annotations

import asyncio
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import websockets

from engine.venue import faults
from engine.venue.bybit.auth import ws_signature
from tests.venue.bybit_fixtures import (
    KEY,
    SECRET,
    BybitVenue,
    Collector,
    clock,
    market_venue,
    venue,
    wait_for,
)

__all__ = ["clock", "market_venue", "venue"]

D = Decimal
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _keys_cover(ours: dict[str, Any], real: dict[str, Any], ignore: frozenset[str] = frozenset()) -> None:
    missing = set(real) - set(ours) - ignore
    assert not missing, f"fields of the real payload missing: {sorted(missing)}"


async def recv(ws: Any, timeout: float = 2.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def recv_topic(ws: Any, prefix: str, timeout: float = 2.0) -> dict[str, Any]:
    while True:
        message = await recv(ws, timeout)
        if str(message.get("topic", "")).startswith(prefix):
            return message


async def drain(ws: Any, quiet: float = 0.05) -> list[dict[str, Any]]:
    """Every message that arrives until none came for ``quiet`` seconds (at least 5 ms)."""
    quiet = max(quiet, 0.005)
    out: list[dict[str, Any]] = []
    while True:
        try:
            out.append(await recv(ws, quiet))
        except TimeoutError:
            return out


class Rebuilt:
    """A book rebuilt by the project's rule: snapshot, then deltas with contiguous ``u``."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.u = -1

    def apply(self, message: dict[str, Any]) -> None:
        data = message["data"]
        if message["type"] == "snapshot":
            self.bids = {p: q for p, q in data["b"]}
            self.asks = {p: q for p, q in data["a"]}
        else:
            assert data["u"] == self.u + 1, f"gap: {self.u} -> {data['u']}"
            for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
                for price, qty in levels:
                    if qty == "0":
                        assert price in side, f"delete of a price not held: {price}"
                        del side[price]
                    else:
                        side[price] = qty
        self.u = data["u"]


def _venue_levels(venue: BybitVenue, symbol: str, depth: int) -> tuple[dict[str, str], dict[str, str]]:
    fmt = venue.hub.formats[symbol]
    _, bids, asks = venue.core.depth(symbol, depth)
    return (
        {fmt.price(p): fmt.qty(q) for p, q in bids},
        {fmt.price(p): fmt.qty(q) for p, q in asks},
    )


# ---- public --------------------------------------------------------------------------------------


async def test_orderbook_when_rebuilt_from_snapshot_and_deltas_then_equals_venue_book(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    rng = random.Random(3)
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "subscribe", "req_id": "s1", "args": ["orderbook.50.BTCUSDT"]}))
        ack = await recv(ws)
        _keys_cover(ack, _fixture("ws_subscribe_ack.json"))
        assert (ack["success"], ack["req_id"], ack["op"]) == (True, "s1", "subscribe")
        book = Rebuilt()
        first = await recv_topic(ws, "orderbook.50.BTCUSDT")
        assert first["type"] == "snapshot"
        book.apply(first)
        deltas = 0
        for step in range(200):
            venue.advance(100)
            for message in await drain(ws, 0.0 if rng.random() < 0.8 else 0.02):
                assert message["topic"] == "orderbook.50.BTCUSDT"
                assert message["cts"] <= message["ts"]
                assert message["data"]["seq"] <= venue.hub.books["BTCUSDT"].last_id
                deltas += message["type"] == "delta"
                book.apply(message)
            if step % 37 == 0:
                for message in await drain(ws):
                    book.apply(message)
                assert (book.bids, book.asks) == _venue_levels(venue, "BTCUSDT", 50)
        for message in await drain(ws):
            book.apply(message)
        assert (book.bids, book.asks) == _venue_levels(venue, "BTCUSDT", 50)
        assert len(book.bids) == len(book.asks) == 50
        assert deltas > 100


async def test_orderbook_windows_when_unsubscribed_then_dormant_and_resubscribe_rebuilds_venue_book(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    hub = venue.hub
    for _ in range(5):
        venue.advance(100)
    assert not any(w.active for windows in hub.windows.values() for w in windows.values())
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.200.BTCUSDT"]}))
        await recv(ws)
        first = await recv_topic(ws, "orderbook.200.BTCUSDT")
        assert [d for d, w in hub.windows["BTCUSDT"].items() if w.active] == [200]
        await ws.send(json.dumps({"op": "unsubscribe", "args": ["orderbook.200.BTCUSDT"]}))
        await drain(ws)
        assert not hub.windows["BTCUSDT"][200].active
        for _ in range(20):
            venue.advance(100)
        assert await drain(ws) == []
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.200.BTCUSDT"]}))
        await recv(ws)
        book = Rebuilt()
        snapshot = await recv_topic(ws, "orderbook.200.BTCUSDT")
        assert snapshot["type"] == "snapshot" and snapshot["data"]["u"] > first["data"]["u"]
        book.apply(snapshot)
        assert (book.bids, book.asks) == _venue_levels(venue, "BTCUSDT", 200)
        for _ in range(30):
            venue.advance(100)
            for message in await drain(ws, 0.0):
                book.apply(message)
        for message in await drain(ws):
            book.apply(message)
        assert (book.bids, book.asks) == _venue_levels(venue, "BTCUSDT", 200)
    await wait_for(lambda: hub.connection_count() == 0, what="connection closed")
    assert not hub.windows["BTCUSDT"][200].active


async def test_rest_orderbook_when_fetched_then_u_matches_the_1000_level_stream(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    for _ in range(5):
        venue.advance(100)
    venue.ctx.faults.clock_offset_ms = -venue.clock.shift
    http = venue.http()
    rest = await asyncio.to_thread(http.get_orderbook, category="linear", symbol="ETHUSDT", limit=1000)
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.1000.ETHUSDT"]}))
        await recv(ws)
        snapshot = await recv_topic(ws, "orderbook.1000.ETHUSDT")
    assert snapshot["data"]["u"] == rest["result"]["u"]
    assert snapshot["data"]["seq"] == rest["result"]["seq"]
    assert snapshot["data"]["b"] == rest["result"]["b"] and snapshot["data"]["a"] == rest["result"]["a"]


async def test_pybit_orderbook_when_long_run_of_deltas_then_socket_survives_and_book_matches(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    got = Collector()
    ws = await asyncio.to_thread(venue.websocket, "linear")
    for depth in (1, 50, 200):
        await asyncio.to_thread(ws.orderbook_stream, depth, "BTCUSDT", got)
    await wait_for(lambda: len(got.items()) >= 3, what="three snapshots")
    for _ in range(300):
        venue.advance(100)
        await asyncio.sleep(0)
    await asyncio.sleep(0.3)
    await wait_for(lambda: all(not c.queue.qsize() for c in venue.hub._connections), what="queues drained")
    await asyncio.sleep(0.2)
    assert ws.is_connected()
    for depth in (1, 50, 200):
        topic = f"orderbook.{depth}.BTCUSDT"
        held = ws.data[topic]
        bids, asks = _venue_levels(venue, "BTCUSDT", depth)
        assert {p: q for p, q in held["b"]} == bids
        assert {p: q for p, q in held["a"]} == asks
    assert venue.ctx.counters.get("bybit.ws.event_errors", 0) == 0


async def test_trades_and_tickers_when_market_moves_then_real_shapes_and_ticker_deltas_carry_changes_only(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "req_id": "t", "args": ["publicTrade.BTCUSDT", "tickers.BTCUSDT"]})
        )
        assert (await recv(ws))["success"] is True
        snapshot = await recv_topic(ws, "tickers.BTCUSDT")
        assert snapshot["type"] == "snapshot"
        real = _fixture("ws_tickers_linear.json")
        _keys_cover(snapshot, real)
        _keys_cover(snapshot["data"], real["data"], frozenset({"openInterest", "openInterestValue"}))
        trade = ticker_delta = None
        for _ in range(100):
            venue.advance(100)
            for message in await drain(ws, 0.0):
                if message["topic"].startswith("publicTrade") and trade is None:
                    trade = message
                if (
                    message["topic"].startswith("tickers")
                    and message["type"] == "delta"
                    and ticker_delta is None
                ):
                    ticker_delta = message
            if trade is not None and ticker_delta is not None:
                break
        assert trade is not None and ticker_delta is not None
        real_trade = _fixture("ws_public_trade_docs.json")
        _keys_cover(trade, real_trade)
        _keys_cover(trade["data"][0], real_trade["data"][0])
        assert trade["data"][0]["S"] in ("Buy", "Sell")
        assert ticker_delta["data"]["symbol"] == "BTCUSDT"
        assert len(ticker_delta["data"]) < len(snapshot["data"])


async def test_public_requests_when_ping_bad_topic_or_garbage_then_answered_and_connection_kept(
    venue: BybitVenue,
) -> None:
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "ping", "req_id": "p1"}))
        pong = await recv(ws)
        assert pong["success"] is True and pong["ret_msg"] == "pong" and pong["op"] == "ping"
        assert pong["req_id"] == "p1" and pong["conn_id"]
        await ws.send(json.dumps({"op": "subscribe", "req_id": "b", "args": ["orderbook.7.BTCUSDT"]}))
        failed = await recv(ws)
        _keys_cover(failed, _fixture("ws_subscribe_failure.json"))
        assert failed["success"] is False and "orderbook.7.BTCUSDT" in failed["ret_msg"]
        await ws.send("{not json")
        assert (await recv(ws))["success"] is False
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.1.SOLUSDT"]}))
        assert (await recv(ws))["success"] is True
        assert (await recv_topic(ws, "orderbook.1.SOLUSDT"))["type"] == "snapshot"


async def test_skip_seq_fault_when_set_then_subscriber_sees_a_gap_in_u(market_venue: BybitVenue) -> None:
    venue = market_venue
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.200.BTCUSDT"]}))
        await recv(ws)
        last = (await recv_topic(ws, "orderbook.200"))["data"]["u"]
        venue.ctx.faults.ws_skip_seq = 1
        gaps = 0
        for _ in range(20):
            venue.advance(100)
            for message in await drain(ws, 0.0):
                gaps += message["data"]["u"] != last + 1
                last = message["data"]["u"]
        await asyncio.sleep(0.05)
        for message in await drain(ws):
            gaps += message["data"]["u"] != last + 1
            last = message["data"]["u"]
    assert gaps == 1 and venue.ctx.counters["faults.ws_skip_seq"] == 1


async def test_stall_fault_when_lifted_then_book_topic_restarts_from_a_snapshot(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        await recv(ws)
        await recv_topic(ws, "orderbook.50")
        venue.ctx.faults.ws_stall = True
        for _ in range(10):
            venue.advance(100)
        assert await drain(ws, 0.1) == []
        venue.ctx.faults.ws_stall = False
        resumed: list[dict[str, Any]] = []
        for _ in range(30):
            venue.advance(100)
            resumed.extend(await drain(ws, 0.0))
            if resumed:
                break
        assert resumed and resumed[0]["type"] == "snapshot"
        book = Rebuilt()
        for message in resumed + await drain(ws):
            book.apply(message)
        assert (book.bids, book.asks) == _venue_levels(venue, "BTCUSDT", 50)


async def test_slow_consumer_when_queue_overflows_then_disconnected_and_counted(
    market_venue: BybitVenue,
) -> None:
    venue = market_venue
    venue.hub.queue_limit = 4
    venue.ctx.faults.ws_delay_ms = 500  # the writer crawls, so the queue fills
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(
            json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"]})
        )
        await asyncio.sleep(0.05)
        for _ in range(30):
            venue.advance(100)
        venue.ctx.faults.ws_delay_ms = 0
        await asyncio.wait_for(ws.wait_closed(), 3)
    assert venue.ctx.counters["bybit.ws.slow_consumer_disconnected"] == 1
    assert venue.hub.connection_count() == 0


async def test_ws_drop_fault_when_fired_then_connection_closed(venue: BybitVenue) -> None:
    async with websockets.connect(f"{venue.ws_url}/v5/public/linear") as ws:
        await ws.send(json.dumps({"op": "ping"}))
        await recv(ws)
        assert await faults.ws_registry(venue.ctx).drop_all() == 1
        await asyncio.wait_for(ws.wait_closed(), 3)


# ---- private -------------------------------------------------------------------------------------


async def _auth(ws: Any, venue: BybitVenue, *, secret: str = SECRET) -> dict[str, Any]:
    expires = venue.ctx.now_ms() + 5000
    await ws.send(json.dumps({"op": "auth", "args": [KEY, expires, ws_signature(secret, expires)]}))
    return await recv(ws)


async def test_private_auth_when_bad_signature_then_refused_and_subscribe_needs_auth(
    venue: BybitVenue,
) -> None:
    async with websockets.connect(f"{venue.ws_url}/v5/private") as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": ["order"]}))
        assert (await recv(ws))["success"] is False
        refused = await _auth(ws, venue, secret="wrong")
        assert refused["success"] is False and refused["op"] == "auth"
        accepted = await _auth(ws, venue)
        assert accepted == {"success": True, "ret_msg": "", "op": "auth", "conn_id": accepted["conn_id"]}
        await ws.send(json.dumps({"op": "ping", "req_id": "x"}))
        pong = await recv(ws)
        assert pong["op"] == "pong" and pong["req_id"] == "x" and pong["args"][0].isdigit()


async def test_private_topics_when_order_fills_then_order_execution_position_wallet_in_real_shapes(
    venue: BybitVenue,
) -> None:
    async with websockets.connect(f"{venue.ws_url}/v5/private") as ws:
        assert (await _auth(ws, venue))["success"] is True
        await ws.send(
            json.dumps(
                {"op": "subscribe", "req_id": "p", "args": ["order", "execution", "position", "wallet"]}
            )
        )
        assert (await recv(ws))["success"] is True
        http = venue.http()
        await asyncio.to_thread(
            http.place_order, category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.5"
        )
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < 4:
            message = await recv(ws)
            seen.setdefault(message["topic"], message)
        for message in seen.values():
            assert set(message) == {"id", "topic", "creationTime", "data"}
        order = seen["order"]["data"][0]
        _keys_cover(order, _fixture("ws_private_order_filled.json")["data"][0])
        execution = seen["execution"]["data"][0]
        _keys_cover(execution, _fixture("ws_private_execution.json")["data"][0])
        assert (execution["execQty"], execution["execPrice"], execution["execType"]) == (
            "0.500",
            "60000.00",
            "Trade",
        )
        position = seen["position"]["data"][0]
        _keys_cover(position, _fixture("ws_private_position.json")["data"][0])
        wallet = seen["wallet"]["data"][0]
        _keys_cover(wallet, _fixture("ws_private_wallet.json")["data"][0], frozenset({"totalPerpUpl"}))
        assert D(wallet["totalWalletBalance"]) == venue.core.account_state(KEY).wallet_balance

        await asyncio.to_thread(
            http.place_order, category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit",
            qty="0.01", price="59000",
        )  # fmt: skip
        topics = [(await recv(ws))["topic"] for _ in range(2)]
        assert topics == ["order", "position"]  # a position push on every order create


async def test_pybit_private_stream_when_authenticated_then_receives_orders(venue: BybitVenue) -> None:
    got = Collector()
    ws = await asyncio.to_thread(venue.websocket, "private", api_key=KEY, api_secret=SECRET)
    await asyncio.to_thread(ws.order_stream, got)
    await wait_for(
        lambda: any("order" in c.topics for c in venue.hub._private.get(KEY, ())), what="subscribed"
    )
    http = venue.http()
    await asyncio.to_thread(
        http.place_order, category="linear", symbol="ETHUSDT", side="Sell", orderType="Limit", qty="0.1",
        price="3100", orderLinkId="eth-1",
    )  # fmt: skip
    await wait_for(lambda: bool(got.items()), what="order message")
    order = got.items()[0]["data"][0]
    assert (order["orderLinkId"], order["orderStatus"], order["price"]) == ("eth-1", "New", "3100.00")
