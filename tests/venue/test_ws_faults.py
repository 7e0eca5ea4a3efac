"""Stream faults over the wire, for both venues on one server, with plain ``websockets`` clients and
the control API: ``ws_stall`` (public streams go quiet without closing and resume when it is lifted;
Bybit order-book topics restart from a fresh snapshot), ``ws_delay_ms`` (every message arrives at
least that much later, without being serialised), ``ws_reorder`` (two depth messages swapped: a
client following the venue's sequencing rule notices, and nothing is lost).

The market only moves when a test calls ``/_venue/advance`` (the ticker's period is a minute), so
"nothing arrives" and "everything arrived" are decided after the server's queues are empty."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from websockets.protocol import State

from engine.venue.binance import FRONT_END_KEY
from engine.venue.bybit import BYBIT_HUB_KEY
from engine.venue.server import VenueServer

MANUAL_MARKET = {"tick_ms": 60_000}
DELAY_MS = 300


async def post(venue: VenueServer, path: str, body: dict[str, object]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(venue.base_url + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        reply: dict[str, Any] = await resp.json()
        return reply


async def advance(venue: VenueServer, ms: int = 1000, steps: int = 10) -> None:
    await post(venue, "/_venue/advance", {"ms": ms, "steps": steps})


async def counters(venue: VenueServer) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(venue.base_url + "/_venue/state") as resp:
        state: dict[str, Any] = await resp.json()
        result: dict[str, int] = state["counters"]
        return result


def queued(venue: VenueServer) -> int:
    return venue.app[FRONT_END_KEY].streams.queued_messages() + venue.app[BYBIT_HUB_KEY].queued_messages()


async def settle(venue: VenueServer, ws: Any, quiet: float = 0.1, timeout: float = 10.0) -> list[Any]:
    """Wait until the server has handed every queued message to its socket, then read what arrives
    until nothing came for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    while queued(venue):
        assert time.monotonic() < deadline, "the server's stream queues never emptied"
        await asyncio.sleep(0.01)
    out: list[Any] = []
    while True:
        try:
            out.append(orjson.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            return out


def book_messages(frames: list[Any], topic: str) -> list[Any]:
    return [f for f in frames if f.get("topic") == topic]


def bybit_levels(venue: VenueServer, symbol: str, depth: int) -> tuple[dict[str, str], dict[str, str]]:
    fmt = venue.app[BYBIT_HUB_KEY].formats[symbol]
    _, bids, asks = venue.core.depth(symbol, depth)
    return {fmt.price(p): fmt.qty(q) for p, q in bids}, {fmt.price(p): fmt.qty(q) for p, q in asks}


class BybitBook:
    """Snapshot then deltas with contiguous ``u`` (the Bybit rule); a gap raises."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.u = -1

    def apply(self, message: dict[str, Any]) -> None:
        data = message["data"]
        if message["type"] == "snapshot":
            self.bids = dict(data["b"])
            self.asks = dict(data["a"])
        else:
            assert data["u"] == self.u + 1, f"gap: {self.u} -> {data['u']}"
            for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
                for price, qty in levels:
                    if qty == "0":
                        del side[price]
                    else:
                        side[price] = qty
        self.u = data["u"]


# ---- ws_stall ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", [MANUAL_MARKET], indirect=True)
async def test_binance_stall_when_set_then_depth_goes_quiet_open_and_resumes_with_a_pu_gap(
    venue: VenueServer,
) -> None:
    async with websockets.connect(venue.ws_url + "/public/ws/btcusdt@depth") as ws:
        await advance(venue)
        before = await settle(venue, ws)
        assert before and all(b["pu"] == a["u"] for a, b in pairwise(before))
        last_u = before[-1]["u"]
        stalled_before = (await counters(venue)).get("binance.ws.stalled_messages", 0)
        await post(venue, "/_venue/faults", {"ws_stall": True})
        await advance(venue)
        assert await settle(venue, ws, quiet=0.3) == []
        assert ws.state is State.OPEN
        assert (await counters(venue))["binance.ws.stalled_messages"] > stalled_before
        await post(venue, "/_venue/faults", {"ws_stall": False})
        await advance(venue)
        resumed = await settle(venue, ws)
    assert resumed, "the stream never resumed"
    assert resumed[0]["pu"] != last_u  # diffs were withheld: a client following the rule resyncs
    assert all(b["pu"] == a["u"] for a, b in pairwise(resumed))


@pytest.mark.parametrize("venue", [MANUAL_MARKET], indirect=True)
async def test_bybit_stall_when_lifted_then_book_restarts_from_a_fresh_snapshot_equal_to_the_venue(
    venue: VenueServer,
) -> None:
    topic = "orderbook.50.BTCUSDT"
    async with websockets.connect(venue.ws_url + "/v5/public/linear") as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "args": [topic, "tickers.BTCUSDT"]}).decode())
        await advance(venue)
        book = BybitBook()
        for message in book_messages(await settle(venue, ws), topic):
            book.apply(message)
        assert book.u > 0
        await post(venue, "/_venue/faults", {"ws_stall": True})
        await advance(venue)
        assert await settle(venue, ws, quiet=0.3) == []
        assert ws.state is State.OPEN
        assert (await counters(venue))["bybit.ws.stalled_messages"] > 0
        await post(venue, "/_venue/faults", {"ws_stall": False})
        await advance(venue)
        resumed = await settle(venue, ws)
        books = book_messages(resumed, topic)
        assert books and books[0]["type"] == "snapshot"
        assert books[0]["data"]["u"] > book.u + 1  # the window moved on while the stream was stalled
        for message in books:
            book.apply(message)
        assert (book.bids, book.asks) == bybit_levels(venue, "BTCUSDT", 50)
        assert any(f.get("topic") == "tickers.BTCUSDT" for f in resumed)  # other topics resume too


# ---- ws_delay_ms ------------------------------------------------------------------------------------


async def _arrivals(ws: Any, start: float, expect_at_least: int, wanted: Any) -> list[float]:
    """Arrival times (since ``start``) of the frames ``wanted`` accepts, until 1 s of silence."""
    times: list[float] = []
    while True:
        try:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 1.0 + DELAY_MS / 1000))
        except TimeoutError:
            assert len(times) >= expect_at_least, times
            return times
        if wanted(frame):
            times.append(time.monotonic() - start)


@pytest.mark.parametrize("venue", [MANUAL_MARKET], indirect=True)
async def test_binance_delay_when_set_then_each_diff_arrives_at_least_that_late_and_not_serialised(
    venue: VenueServer,
) -> None:
    async with websockets.connect(venue.ws_url + "/public/ws/btcusdt@depth") as ws:
        await advance(venue)
        await settle(venue, ws)
        await post(venue, "/_venue/faults", {"ws_delay_ms": DELAY_MS})
        start = time.monotonic()
        await advance(venue)
        times = await _arrivals(ws, start, 8, lambda f: f.get("e") == "depthUpdate")
    assert min(times) >= DELAY_MS / 1000
    # queued together, they leave together: one delay, not one per message
    assert max(times) < DELAY_MS / 1000 * len(times) / 2


@pytest.mark.parametrize("venue", [MANUAL_MARKET], indirect=True)
async def test_bybit_delay_when_set_then_each_message_arrives_at_least_that_late_and_not_serialised(
    venue: VenueServer,
) -> None:
    topic = "orderbook.200.BTCUSDT"
    async with websockets.connect(venue.ws_url + "/v5/public/linear") as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "args": [topic]}).decode())
        await advance(venue)
        await settle(venue, ws)
        await post(venue, "/_venue/faults", {"ws_delay_ms": DELAY_MS})
        start = time.monotonic()
        await advance(venue)
        times = await _arrivals(ws, start, 8, lambda f: f.get("topic") == topic)
    assert min(times) >= DELAY_MS / 1000
    assert max(times) < DELAY_MS / 1000 * len(times) / 2


# ---- ws_reorder -------------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", [MANUAL_MARKET], indirect=True)
async def test_binance_reorder_when_set_then_client_sees_pu_break_and_the_pair_is_swapped_not_lost(
    venue: VenueServer,
) -> None:
    async with websockets.connect(venue.ws_url + "/public/ws/btcusdt@depth") as ws:
        await advance(venue)
        last_u = (await settle(venue, ws))[-1]["u"]
        await post(venue, "/_venue/faults", {"ws_reorder": 1})
        await advance(venue)
        frames = await settle(venue, ws)
    assert len(frames) >= 3
    assert frames[0]["pu"] != last_u  # the Binance rule: pu must equal the previous u
    in_order = sorted(frames, key=lambda f: f["u"])
    assert frames == [in_order[1], in_order[0], *in_order[2:]]  # exactly the first pair swapped
    chain = [last_u] + [f["u"] for f in in_order]
    assert [f["pu"] for f in in_order] == chain[:-1]  # nothing lost
    assert (await counters(venue))["faults.ws_reorder"] == 1


@pytest.mark.parametrize("venue", [MANUAL_MARKET], indirect=True)
async def test_bybit_reorder_when_set_then_client_sees_u_break_and_the_pair_is_swapped_not_lost(
    venue: VenueServer,
) -> None:
    topic = "orderbook.200.BTCUSDT"
    async with websockets.connect(venue.ws_url + "/v5/public/linear") as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "args": [topic]}).decode())
        await advance(venue)
        book = BybitBook()
        for message in book_messages(await settle(venue, ws), topic):
            book.apply(message)
        last_u = book.u
        await post(venue, "/_venue/faults", {"ws_reorder": 1})
        await advance(venue)
        frames = book_messages(await settle(venue, ws), topic)
    us = [f["data"]["u"] for f in frames]
    assert len(us) >= 3 and all(f["type"] == "delta" for f in frames)
    assert us[0] != last_u + 1  # the Bybit rule: every delta's u is the previous u + 1
    assert us == [last_u + 2, last_u + 1, *range(last_u + 3, last_u + len(us) + 1)]
    for message in sorted(frames, key=lambda f: f["data"]["u"]):
        book.apply(message)  # put back in order, the deltas rebuild the venue's book: nothing lost
    assert (book.bids, book.asks) == bybit_levels(venue, "BTCUSDT", 200)
    assert (await counters(venue))["faults.ws_reorder"] == 1
