"""The daily PnL baseline with two venues: the start-of-day equity and the high-water mark are taken only
once every configured venue (Binance and Bybit on the embedded venue) has reported its balances."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.config import load_config, to_adapter_settings
from engine.engine import TradingEngine
from engine.paper import PaperVenue
from engine.types import EngineState, Venue
from tests.engine import Quiet, until

D = Decimal


def _two_venue_config(tmp_path: Path) -> Path:
    path = tmp_path / "two.toml"
    path.write_text(
        f"""
[engine]
mode = "paper"
state_dir = "{tmp_path / "var"}"
admin_socket = "{tmp_path / "adm" / "engine.sock"}"

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT"]

[[exchanges]]
name = "bybit"
symbols = ["BTCUSDT"]

[strategy]
name = "ema_cross"

[metrics]
bind = "127.0.0.1:0"
"""
    )
    return path


async def test_baseline_when_two_venues_then_start_of_day_equity_counts_both_and_daily_pnl_near_zero(
    tmp_path: Path,
) -> None:
    cfg = load_config(_two_venue_config(tmp_path))
    async with PaperVenue(tick_ms=20) as paper:
        settings = to_adapter_settings(cfg, paper.endpoints())
        assert {s.venue for s in settings} == {Venue.BINANCE, Venue.BYBIT}
        e = TradingEngine(
            config=cfg,
            settings=settings,
            strategy=Quiet(params={}, symbols=((Venue.BINANCE, "BTCUSDT"), (Venue.BYBIT, "BTCUSDT"))),
        )
        await e.start()
        try:
            assert e.state is EngineState.RUNNING, e.state_reason
            risk = e.risk_manager
            await until(lambda: risk.baseline[1] is not None, 10, what="a start-of-day equity")
            _, sod, hwm = risk.baseline
            venues = {b.venue for b in e.oms.balances()}
            assert venues == {Venue.BINANCE, Venue.BYBIT}
            both = sum(b.wallet_balance for b in e.oms.balances() if b.asset == "USDT")
            assert sod is not None and hwm is not None and risk.equity is not None
            assert abs(sod - both) < D("100"), (sod, both)  # both venues' money, not one
            assert abs(risk.daily_pnl) < D("100"), risk.daily_pnl
        finally:
            await e.stop(reason="test done")


async def test_metrics_when_running_then_task_counts_and_queue_sizes_reported(tmp_path: Path) -> None:
    cfg = load_config(_two_venue_config(tmp_path))
    async with PaperVenue(tick_ms=20) as paper:
        e = TradingEngine(
            config=cfg,
            settings=to_adapter_settings(cfg, paper.endpoints()),
            strategy=Quiet(params={}, symbols=((Venue.BINANCE, "BTCUSDT"), (Venue.BYBIT, "BTCUSDT"))),
        )
        await e.start()
        try:
            m = await e.metrics()
            tasks = m["tasks"]
            assert isinstance(tasks, dict) and tasks["loop"] >= tasks["engine"] >= 1
            assert {"user", "market", "inflight_orders"} <= set(m["queues"])
        finally:
            await e.stop(reason="test done")
