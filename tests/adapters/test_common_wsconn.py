"""WsConnection against a real ``websockets`` server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.server import ServerConnection, serve

from engine.adapters.common.wsconn import WsConnection
from engine.types import MarketEvent, Venue, VenueStatus


@dataclass
class Server:
    port: int = 0
    conns: list[ServerConnection] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    talk: bool = True


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()

    async def handler(ws: ServerConnection) -> None:
        state.conns.append(ws)
        n = 0

        async def reader() -> None:
            async for msg in ws:
                state.received.append(msg)

        task = asyncio.create_task(reader())
        try:
            while True:
                if state.talk:
                    n += 1
                    await ws.send(f'{{"n":{n}}}')
                await asyncio.sleep(0.01)
        except Exception:  # the client went away: end this handler
            task.cancel()

    async with serve(handler, "127.0.0.1", 0) as srv:
        state.port = next(iter(srv.sockets)).getsockname()[1]
        yield state


def make(server: Server, **kw: object) -> tuple[WsConnection, list[bytes], list[MarketEvent], list[bool]]:
    frames: list[bytes] = []
    statuses: list[MarketEvent] = []
    opens: list[bool] = []

    async def on_open(conn: WsConnection, reconnected: bool) -> None:
        opens.append(reconnected)

    conn = WsConnection(
        venue=Venue.BINANCE,
        stream="public",
        url=f"ws://127.0.0.1:{server.port}/x",
        on_message=lambda raw, ns: frames.append(raw),
        on_status=statuses.append,
        now_ms=lambda: int(time.time() * 1000),
        on_open=on_open,
        base_delay_s=0.01,
        **kw,  # type: ignore[arg-type]
    )
    return conn, frames, statuses, opens


async def wait_for(cond: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_when_server_drops_connection_then_reconnects_and_reopens(server: Server) -> None:
    conn, frames, statuses, opens = make(server)
    conn.start()
    try:
        await wait_for(lambda: len(frames) > 3)
        assert isinstance(frames[0], bytes)
        await server.conns[0].close()
        await wait_for(lambda: conn.reconnects == 1 and conn.connected)
        count = len(frames)
        await wait_for(lambda: len(frames) > count + 2)
        assert opens == [False, True]
        kinds = [e.status for e in statuses if isinstance(e, VenueStatus)]
        assert kinds == ["connected", "disconnected", "connected"]
    finally:
        await conn.stop()
    assert not conn.connected


async def test_when_stream_goes_silent_then_stall_detected_and_reconnected(server: Server) -> None:
    conn, frames, statuses, _opens = make(server, stall_after_s=0.2)
    conn.start()
    try:
        await wait_for(lambda: len(frames) > 2)
        server.talk = False
        await wait_for(lambda: conn.stalls >= 1)
        server.talk = True
        await wait_for(lambda: conn.reconnects >= 1 and conn.connected)
        assert any(isinstance(e, VenueStatus) and e.detail == "stalled" for e in statuses)
    finally:
        await conn.stop()


async def test_when_app_ping_configured_then_sent_periodically(server: Server) -> None:
    conn, _frames, _statuses, _opens = make(server, app_ping='{"op":"ping"}', app_ping_interval_s=0.05)
    conn.start()
    try:
        await wait_for(lambda: sum(1 for m in server.received if m == '{"op":"ping"}') >= 2)
    finally:
        await conn.stop()


async def test_when_server_unreachable_then_backoff_retries_counted() -> None:
    conn, _frames, _statuses, opens = make(Server(port=1))
    conn.start()
    try:
        await wait_for(lambda: conn.connect_failures >= 3)
        assert not conn.connected and opens == []
    finally:
        await conn.stop()


async def test_when_callback_raises_then_logged_counted_and_stream_continues(server: Server) -> None:
    seen: list[bytes] = []

    def bad(raw: bytes, ns: int) -> None:
        seen.append(raw)
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    conn = WsConnection(
        venue=Venue.BYBIT,
        stream="public",
        url=f"ws://127.0.0.1:{server.port}/",
        on_message=bad,
        on_status=lambda e: None,
        now_ms=lambda: 0,
    )
    conn.start()
    try:
        await wait_for(lambda: len(seen) > 3)
        assert conn.callback_errors == 1
    finally:
        await conn.stop()
