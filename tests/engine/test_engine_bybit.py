"""The engine with a Bybit v5 linear exchange config against the embedded venue (paper mode's URLs and
account): connect, books LIVE, signal -> order -> fill -> position, emergency stop with flatten leaves
nothing on the venue's core; and ``engine run`` (``serve``) in paper mode with ``name = "bybit"``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from decimal import Decimal
from pathlib import Path

from engine.config import load_config, to_adapter_settings
from engine.engine import TradingEngine, serve
from engine.journal import Journal
from engine.paper import PaperVenue
from engine.risk import Approved
from engine.types import BookHealth, EngineState, OrderType, Side, Signal, Venue
from tests.engine import Quiet, until

D = Decimal
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _bybit_config(tmp_path: Path) -> Path:
    path = tmp_path / "bybit.toml"
    path.write_text(
        f"""
[engine]
mode = "paper"
state_dir = "{tmp_path / "var"}"
admin_socket = "{tmp_path / "adm" / "engine.sock"}"

[[exchanges]]
name = "bybit"
symbols = ["BTCUSDT", "ETHUSDT"]

[strategy]
name = "ema_cross"

[risk]
max_order_notional = "50000"

[metrics]
bind = "127.0.0.1:0"
"""
    )
    return path


async def test_bybit_when_signal_then_order_fill_position_and_emergency_flatten_leaves_venue_empty(
    tmp_path: Path,
) -> None:
    cfg = load_config(_bybit_config(tmp_path))
    async with PaperVenue(tick_ms=20) as paper:
        [settings] = to_adapter_settings(cfg, paper.endpoints())
        assert settings.venue is Venue.BYBIT
        assert settings.ws_public_url.endswith("/v5/public/linear")
        assert settings.ws_private_url.endswith("/v5/private")
        core, account = paper.server.core, paper.account.key
        e = TradingEngine(
            config=cfg,
            settings=[settings],
            strategy=Quiet(params={}, symbols=tuple((Venue.BYBIT, s) for s in SYMBOLS)),
            journal=Journal(tmp_path / "var" / "journal.sqlite"),
        )
        await e.start()
        try:
            assert e.state is EngineState.RUNNING, e.state_reason
            assert set(e.adapters) == {Venue.BYBIT}
            for sym in SYMBOLS:
                await until(lambda s=sym: e.adapters[Venue.BYBIT].book_health(s) is BookHealth.LIVE, 10)
            await until(lambda: not e.ready_reasons(), 10, what="streams connected and books live")
            status = await e.status()
            assert status["venues"]["bybit"]["connected"] is True

            res = e.submit_signal(Signal(venue=Venue.BYBIT, symbol="BTCUSDT", side=Side.BUY, qty=D("0.01")))
            assert isinstance(res.decision, Approved) and res.task is not None
            order = await res.task
            assert order is not None and order.venue is Venue.BYBIT
            await until(lambda: e.oms.position(Venue.BYBIT, "BTCUSDT").qty == D("0.01"), what="position")
            venue_qty = sum((p.qty for p in core.positions(account, "BTCUSDT")), D(0))
            assert venue_qty == D("0.01")
            [pos] = await e.positions()
            assert pos["venue"] == "bybit" and pos["symbol"] == "BTCUSDT" and pos["qty"] == "0.01"
            await until(lambda: e.oms.stats()["fills"] >= 1, what="the fill")

            book = e.adapters[Venue.BYBIT].book("ETHUSDT")
            bid = book.best_bid()
            assert bid is not None
            resting = e.submit_signal(
                Signal(
                    venue=Venue.BYBIT,
                    symbol="ETHUSDT",
                    side=Side.BUY,
                    qty=D("0.1"),
                    type=OrderType.LIMIT,
                    limit_price=bid[0] * D("0.995"),
                )
            )
            assert isinstance(resting.decision, Approved) and resting.task is not None
            assert await resting.task is not None
            assert len(core.open_orders(account)) == 1

            result = await e.emergency_stop(flatten=True, reason="bybit drill")
            assert not result["errors"], result
            assert result["canceled"] >= 1
            assert [f["symbol"] for f in result["flattened"]] == ["BTCUSDT"]
            assert core.open_orders(account) == []
            await until(
                lambda: all(not p.qty for p in core.positions(account)), what="venue flat after flatten"
            )
            await until(lambda: not e.oms.positions(), what="engine flat")
            assert e.state is EngineState.EMERGENCY_STOPPED
        finally:
            await e.stop(reason="test over")


class _Out(io.StringIO):
    def isatty(self) -> bool:
        return False


async def test_serve_when_paper_bybit_config_then_running_with_bybit_books_live(tmp_path: Path) -> None:
    cfg = load_config(_bybit_config(tmp_path))
    sock = tmp_path / "adm" / "engine.sock"
    out = _Out()
    strategy = Quiet(params={}, symbols=tuple((Venue.BYBIT, s) for s in SYMBOLS))
    run = asyncio.create_task(serve(cfg, admin_socket=sock, strategy=strategy, out=out, duration_s=2.5))
    try:
        deadline = time.monotonic() + 15
        pattern = re.compile(r"^running \| bybit up \[BTCUSDT:live,ETHUSDT:live\]", re.MULTILINE)
        while not pattern.search(out.getvalue()):
            assert time.monotonic() < deadline and not run.done(), out.getvalue()
            await asyncio.sleep(0.05)
        assert await asyncio.wait_for(run, 20) == 0
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    text = out.getvalue()
    assert f"admin socket: {sock}" in text and "engine run: stopped (operator: stop: duration)" in text
