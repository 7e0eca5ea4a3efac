"""The engine's wiring: metrics (fed by the engine, served over HTTP with readiness), alerts (to a local
receiver), recovery through ``engine.recovery`` (emergency latch and incomplete reconciliation across a
restart on the same state_dir), all in process against the local venue."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from engine.adapters.base import AdapterSettings, EventSink, ExchangeAdapter
from engine.alerts import Alerter
from engine.config import load_config, to_adapter_settings
from engine.engine import TradingEngine, default_adapter_factory, serve
from engine.errors import VenueUnavailable
from engine.journal import Journal
from engine.metrics import Metrics, MetricsServer
from engine.paper import PaperVenue
from engine.risk import Approved
from engine.strategies import create
from engine.types import EngineState, OrderType, Side, Signal, Venue, VenueStatus
from tests.engine import Quiet, engine_on_venue, until, write_config

D = Decimal


class _Out(io.StringIO):
    """``serve``'s stdout, read while it runs."""

    def isatty(self) -> bool:
        return False


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the exposition text (0.0 when it is not there)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # the exposition sorts labels
    pattern = rf"^{re.escape(name)}{re.escape('{' + want + '}') if want else ''} (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def _admin(sock: Path, cmd: str, args: dict[str, Any] | None = None) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    try:
        writer.write(orjson.dumps({"id": 1, "cmd": cmd, "args": args or {}}) + b"\n")
        await writer.drain()
        reply = orjson.loads(await asyncio.wait_for(reader.readline(), 10))
    finally:
        writer.close()
    assert reply["ok"], reply
    return reply["result"]


# ---- metrics ------------------------------------------------------------------------------------------


async def test_paper_run_when_scraped_then_ready_503_until_books_live_then_200_with_events_and_state(
    tmp_path: Path,
) -> None:
    cfg_path = write_config(tmp_path / "paper.toml", risk={}, state_dir=tmp_path / "var")
    cfg = load_config(cfg_path)
    assert cfg.metrics.port == 0
    sock = tmp_path / "adm" / "e.sock"
    out = _Out()
    strategy = create(
        "ema_cross", params={}, symbols=((Venue.BINANCE, "BTCUSDT"), (Venue.BINANCE, "ETHUSDT"))
    )
    run = asyncio.create_task(serve(cfg, admin_socket=sock, strategy=strategy, out=out))
    ready_codes: list[int] = []
    reasons_seen: list[str] = []
    try:
        deadline = time.monotonic() + 15
        while (m := re.search(r"^metrics: (http://\S+)/metrics", out.getvalue(), re.MULTILINE)) is None:
            assert time.monotonic() < deadline and not run.done(), out.getvalue()
            await asyncio.sleep(0.001)
        base = m.group(1)
        async with aiohttp.ClientSession() as session:
            while True:  # /ready from the moment the endpoint is up until the engine is ready
                code, body = await _get(session, f"{base}/ready")
                ready_codes.append(code)
                if code == 200:
                    break
                reasons_seen += orjson.loads(body)["reasons"]
                assert time.monotonic() < deadline, (ready_codes[-5:], reasons_seen[-5:])
                await asyncio.sleep(0.002)
            assert ready_codes[0] == 503 and ready_codes[-1] == 200
            assert any(r.startswith("engine is ") or "book" in r for r in reasons_seen), reasons_seen
            status = await _admin(sock, "status")
            assert all(b["health"] == "live" for b in status["venues"]["binance"]["books"].values())
            await asyncio.sleep(0.6)  # housekeeping flushes the per-stream counts
            code, text = await _get(session, f"{base}/metrics")
            assert code == 200
            assert _sample(text, "engine_events_total", stream="binance.book") > 0
            assert _sample(text, "engine_events_total", stream="binance.user") > 0
            assert _sample(text, "engine_state", engine_state="running") == 1.0
            assert _sample(text, "engine_state", engine_state="starting") == 0.0
            assert _sample(text, "engine_equity") > 0
            assert _sample(text, "engine_book_update_latency_seconds_count") > 0
            assert _sample(text, "engine_admin_command_latency_seconds_count", cmd="status") >= 1
            code, body = await _get(session, f"{base}/health")
            assert code == 200 and orjson.loads(body)["state"] == "running"
            snap = await _admin(sock, "metrics")
            assert snap["state"] == "running" and snap["events"]["binance.book"] > 0
            assert "queues" in snap and "counters" in snap  # the engine's own counters, merged
        await _admin(sock, "stop")
        assert await asyncio.wait_for(run, 20) == 0
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    assert f"admin socket: {sock}" in out.getvalue()


async def test_engine_when_orders_denials_and_resyncs_then_metrics_count_them(tmp_path: Path) -> None:
    prom = Metrics()
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}, metrics=prom) as h:
        e = h.engine
        server = MetricsServer(prom, host="127.0.0.1", port=0, ready=e.ready_reasons)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                await until(lambda: not e.ready_reasons(), what="ready")
                assert (await _get(session, f"{server.url}/ready"))[0] == 200
                e._sink(
                    VenueStatus(
                        venue=Venue.BINANCE, stream="book:BTCUSDT", status="resyncing", detail="t", ts_ms=1
                    )
                )
                await until(lambda: e.ready_reasons() == ["binance BTCUSDT book resyncing"], what="not ready")
                code, body = await _get(session, f"{server.url}/ready")
                assert code == 503 and orjson.loads(body)["reasons"] == ["binance BTCUSDT book resyncing"]
                e._sink(
                    VenueStatus(
                        venue=Venue.BINANCE, stream="book:BTCUSDT", status="live", detail="t", ts_ms=2
                    )
                )
                await until(lambda: not e.ready_reasons(), what="ready again")
                assert (await _get(session, f"{server.url}/ready"))[0] == 200

                res = e.submit_signal(h.signal(side=Side.BUY, qty=D("0.05")))
                assert isinstance(res.decision, Approved) and res.task is not None
                assert await res.task is not None
                await until(lambda: e.oms.position(Venue.BINANCE, "BTCUSDT").qty == D("0.05"), what="filled")
                too_big = e.submit_signal(h.signal(side=Side.BUY, qty=D("1")))
                assert not isinstance(too_big.decision, Approved)
                h.venue.ctx.faults.ws_skip_seq = 1
                h.move("BTCUSDT", D("60010.0"))
                await until(lambda: e.counters["book_unhealthy_events"] >= 2, what="a real resync")
                await until(lambda: e.orders_by_outcome["filled"] >= 1, what="outcome")
                snap = await e.metrics()
                _, text = await _get(session, f"{server.url}/metrics")
        finally:
            await server.close()
    assert _sample(text, "engine_orders_total", outcome="sent") == 1.0
    assert _sample(text, "engine_orders_total", outcome="filled") == 1.0
    assert _sample(text, "engine_risk_denials_total", reason="max_order_notional") == 1.0
    assert _sample(text, "engine_book_resyncs_total", venue="binance", symbol="BTCUSDT") >= 2.0
    assert _sample(text, "engine_signal_to_order_latency_seconds_count") == 1.0
    assert _sample(text, "engine_order_ack_latency_seconds_count") == 1.0
    assert _sample(text, "engine_exposure", venue="binance") > 0
    assert _sample(text, "engine_pnl", kind="realized") <= 0  # fees only, nothing closed
    assert 0 < _sample(text, "engine_rate_limit_usage_ratio", venue="binance") < 1
    assert snap["orders"]["sent"] == 1.0 and snap["risk_denials"] == {"max_order_notional": 1}
    assert snap["latency"]["ack"]["count"] == 1


# ---- alerts -------------------------------------------------------------------------------------------


class _Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        return web.json_response({"ok": True})


@contextlib.asynccontextmanager
async def _receiver() -> AsyncIterator[_Receiver]:
    r = _Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    r.runner = web.AppRunner(app, access_log=None)
    await r.runner.setup()
    site = web.TCPSite(r.runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    r.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield r
    finally:
        await r.runner.cleanup()


async def test_emergency_stop_when_webhook_configured_then_alert_posted_with_state_and_cause(
    tmp_path: Path,
) -> None:
    async with _receiver() as rx:
        cfg_path = write_config(tmp_path / "a.toml", risk={}, state_dir=tmp_path / "var")
        cfg_path.write_text(
            cfg_path.read_text() + f'\n[alerts]\nwebhook_url = "{rx.url}"\ndisconnect_threshold_s = 0.2\n'
        )
        cfg = load_config(cfg_path)
        assert cfg.alerts.webhook_url == rx.url and cfg.alerts.disconnect_threshold_s == 0.2
        alerter = Alerter(
            webhook_url=cfg.alerts.webhook_url, disconnect_after_s=cfg.alerts.disconnect_threshold_s
        )
        await alerter.start()
        try:
            async with engine_on_venue(tmp_path, alerter=alerter) as h:
                await h.engine.emergency_stop(reason="drill")
                await until(
                    lambda: any(p["fields"].get("new") == "emergency_stopped" for p in rx.posts),
                    what="the emergency alert",
                )
                e = h.engine
                e._sink(VenueStatus(venue=Venue.BINANCE, stream="rest", status="banned", detail="x", ts_ms=1))
                e._sink(
                    VenueStatus(
                        venue=Venue.BINANCE, stream="public", status="disconnected", detail="t", ts_ms=1
                    )
                )
                await until(
                    lambda: any(p["kind"] == "disconnected" for p in rx.posts), what="disconnect alert"
                )
                await until(lambda: any(p["kind"] == "banned" for p in rx.posts), what="ban alert")
        finally:
            await alerter.close()
    alert = next(p for p in rx.posts if p["fields"].get("new") == "emergency_stopped")
    assert alert["kind"] == "state_changed" and alert["severity"] == "critical"
    assert alert["fields"]["old"] == "running"
    assert alert["fields"]["cause"] == "operator: emergency_stop: drill"
    assert "running -> emergency_stopped: operator: emergency_stop: drill" in alert["message"]
    ban = next(p for p in rx.posts if p["kind"] == "banned")
    assert ban["fields"]["venue"] == "binance"
    down = next(p for p in rx.posts if p["kind"] == "disconnected")
    assert down["fields"] == {"venue": "binance", "stream": "public"}


# ---- recovery -----------------------------------------------------------------------------------------


async def _paper_engine(
    tmp_path: Path, paper: PaperVenue, *, factory: Any = None, engine: dict[str, object] | None = None
) -> TradingEngine:
    cfg = load_config(write_config(tmp_path / "r.toml", risk={}, engine=engine, state_dir=tmp_path / "var"))
    symbols = ((Venue.BINANCE, "BTCUSDT"), (Venue.BINANCE, "ETHUSDT"))
    e = TradingEngine(
        config=cfg,
        settings=to_adapter_settings(cfg, paper.endpoints()),
        strategy=Quiet(params={}, symbols=symbols),
        journal=Journal(tmp_path / "var" / "journal.sqlite"),
        adapter_factory=factory,
    )
    await e.start()
    return e


async def test_restart_when_emergency_stop_latched_then_starts_emergency_stopped_until_reset(
    tmp_path: Path,
) -> None:
    async with PaperVenue(tick_ms=20) as paper:
        e = await _paper_engine(tmp_path, paper)
        assert e.state is EngineState.RUNNING and e.recovery is not None and e.recovery.completed
        res = e.submit_signal(Signal(venue=Venue.BINANCE, symbol="BTCUSDT", side=Side.BUY, qty=D("0.01")))
        assert res.task is not None and await res.task is not None
        await e.emergency_stop(flatten=True, reason="drill")
        await e.stop(reason="test restart")

        e2 = await _paper_engine(tmp_path, paper)
        try:
            assert e2.state is EngineState.EMERGENCY_STOPPED
            status = await e2.status()
            assert status["state"] == "emergency_stopped"
            assert "latched" in status["state_reason"] and "drill" in status["state_reason"]
            denied = e2.submit_signal(
                Signal(venue=Venue.BINANCE, symbol="BTCUSDT", side=Side.BUY, qty=D("0.01"))
            )
            assert not isinstance(denied.decision, Approved)
            assert (await e2.reset(reason="operator checked"))["state"] == "paused"
        finally:
            await e2.stop(reason="test restart 2")

        e3 = await _paper_engine(tmp_path, paper)  # reset unlatched it: a restart recovers normally
        try:
            assert e3.state is EngineState.RUNNING
        finally:
            await e3.stop(reason="test over")


async def test_restart_when_emergency_latched_and_orders_resting_then_venue_left_with_none(
    tmp_path: Path,
) -> None:
    async with PaperVenue(tick_ms=20) as paper:
        e = await _paper_engine(tmp_path, paper, engine={"cancel_on_stop": False})
        book = e.adapters[Venue.BINANCE].book("BTCUSDT")
        await until(lambda: book.mid() is not None, what="a BTCUSDT mid")
        long = e.submit_signal(Signal(venue=Venue.BINANCE, symbol="BTCUSDT", side=Side.BUY, qty=D("0.01")))
        assert long.task is not None and await long.task is not None
        bid = e.instruments[(Venue.BINANCE, "BTCUSDT")].round_price(book.mid() * D("0.995"))
        res = e.submit_signal(
            Signal(
                venue=Venue.BINANCE,
                symbol="BTCUSDT",
                side=Side.BUY,
                type=OrderType.LIMIT,
                qty=D("0.01"),
                limit_price=bid,
            )
        )
        assert res.task is not None and await res.task is not None
        # latched (journaled) while that order still rests (as after a crash before the cancels ran)
        e.transition(EngineState.EMERGENCY_STOPPED, "test: latched, cancels never ran")
        await e.stop(reason="test restart")  # cancel_on_stop = false: the order stays on the venue
        probe = default_adapter_factory(e.settings[0], lambda _ev: None)
        await probe.connect()
        try:
            assert [o.client_order_id for o in await probe.open_orders("BTCUSDT")] == [res.client_order_id]

            e2 = await _paper_engine(tmp_path, paper, engine={"cancel_on_stop": False})
            try:
                assert e2.state is EngineState.EMERGENCY_STOPPED
                assert await probe.open_orders() == []  # cancelled by the start, measured on the venue
                # flatten_on_emergency = false: the position is kept
                assert sum(p.qty for p in await probe.positions() if p.symbol == "BTCUSDT") == D("0.01")
            finally:
                await e2.stop(reason="test over")
        finally:
            await probe.close()


async def test_restart_when_venue_unavailable_during_recovery_then_paused_with_reason(tmp_path: Path) -> None:
    # the first engine's venue becomes unavailable right after connect: recovery's snapshot fails once
    plan = {"fail_once": True, "armed": False}

    def flaky(settings: AdapterSettings, sink: EventSink) -> ExchangeAdapter:
        adapter = default_adapter_factory(settings, sink)
        real_connect, real_open_orders = adapter.connect, adapter.open_orders

        async def connect() -> None:
            await real_connect()
            plan["armed"] = plan["fail_once"]

        async def open_orders(symbol: str | None = None) -> list[Any]:
            if plan["armed"]:
                plan["armed"] = plan["fail_once"] = False
                raise VenueUnavailable(venue="binance", code=None, message="venue answered 503 (test)")
            return await real_open_orders(symbol)

        adapter.connect = connect  # type: ignore[method-assign]
        adapter.open_orders = open_orders  # type: ignore[method-assign]
        return adapter

    async with PaperVenue(tick_ms=20) as paper:
        e = await _paper_engine(tmp_path, paper, factory=flaky)
        try:
            assert e.state is EngineState.PAUSED
            status = await e.status()
            assert status["state"] == "paused"
            assert status["state_reason"].startswith("start: recovery incomplete: binance: reconciliation")
            assert "503 (test)" in status["state_reason"]
            assert e.recovery is not None and not e.recovery.completed
        finally:
            await e.stop(reason="test over")
        e2 = await _paper_engine(tmp_path, paper, factory=flaky)
        try:
            assert e2.state is EngineState.RUNNING and e2.state_reason == "start: recovered"
        finally:
            await e2.stop(reason="test over")
