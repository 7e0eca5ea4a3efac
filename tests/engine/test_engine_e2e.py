"""The engine end to end through the local venue with the real Binance adapter: signal -> risk ->
order -> fill -> position -> PnL; pause, protective exits, emergency stop, reset, loss triggers, book
health and every risk limit, measured on the venue's own core."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from engine.control import ControlError
from engine.journal import Journal
from engine.risk import Approved, Denied
from engine.types import EngineState, OrderStatus, OrderType, Side, Venue, VenueStatus
from tests.engine import Harness, engine_on_venue, until, write_config

D = Decimal


async def test_signal_when_approved_then_order_fill_position_and_pnl_match_venue(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}, journal=journal) as h:
        e = h.engine
        assert e.state is EngineState.RUNNING
        res = e.submit_signal(h.signal(side=Side.BUY, qty=D("0.05")))
        assert isinstance(res.decision, Approved) and res.task is not None
        order = await res.task
        assert order is not None
        await until(lambda: e.oms.position(Venue.BINANCE, "BTCUSDT").qty == D("0.05"), what="long position")
        assert h.venue_position("BTCUSDT") == D("0.05")
        h.move("BTCUSDT", D("60100.0"))
        await until(lambda: e.oms.position(Venue.BINANCE, "BTCUSDT").unrealized_pnl > 0, what="mark up")
        res = e.submit_signal(h.signal(side=Side.SELL, qty=D("0.05"), reduce_only=True))
        assert isinstance(res.decision, Approved) and res.task is not None
        await res.task
        await until(lambda: e.oms.position(Venue.BINANCE, "BTCUSDT").qty == 0, what="flat")
        assert h.venue_position("BTCUSDT") == 0
        fills = h.core.fills(h.account, "BTCUSDT")
        await until(lambda: e.oms.stats()["fills"] == len(fills), what="every fill seen")
        venue_realized = sum((f.realized_pnl for f in fills), D(0))
        venue_fees = sum((f.fee for f in fills), D(0))
        t = e.oms.totals()
        assert t.realized_pnl == venue_realized > 0
        assert t.fees == venue_fees
        wallet = h.core.account_state(h.account).wallet_balance
        await until(lambda: e.oms.totals().wallet_balance == wallet, what="wallet")
        status = await e.status()
        assert status["state"] == "running" and status["positions"] == 0
    outcomes = await _read_outcomes(tmp_path / "journal.sqlite")
    assert {"ack", "fill"} <= outcomes


def _mark(h: Harness) -> Decimal:
    return h.engine.oms.mark(Venue.BINANCE, "BTCUSDT") or D(0)


async def _read_outcomes(path: Path) -> set[str]:
    j = Journal(path)
    await j.start()
    try:
        return {o.kind for o in await j.outcomes()}
    finally:
        await j.close()


async def test_pause_when_paused_then_entries_denied_and_stop_loss_still_fires(tmp_path: Path) -> None:
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}) as h:
        e = h.engine
        res = e.submit_signal(
            h.signal(side=Side.BUY, qty=D("0.05"), stop_loss=D("59900"), take_profit=D("60500"))
        )
        assert isinstance(res.decision, Approved)
        await until(
            lambda: sum(1 for o in h.core.open_orders(h.account, "BTCUSDT") if o.reduce_only or True) == 2,
            what="stop-loss and take-profit on the venue",
        )
        kinds = sorted(o.type.value for o in h.core.open_orders(h.account, "BTCUSDT"))
        assert kinds == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
        assert (await e.pause(reason="test"))["state"] == "paused"
        denied = e.submit_signal(h.signal(side=Side.BUY, qty=D("0.01")))
        assert isinstance(denied.decision, Denied) and denied.decision.reason == "paused"
        h.move("BTCUSDT", D("59850.0"))
        await until(lambda: h.venue_position("BTCUSDT") == 0, what="stop-loss fired on the venue")
        await until(lambda: e.oms.position(Venue.BINANCE, "BTCUSDT").qty == 0, what="engine flat")
        await until(lambda: not h.core.open_orders(h.account, "BTCUSDT"), what="take-profit cancelled")
        assert e.state is EngineState.PAUSED


async def test_exit_when_venue_order_missing_then_local_backup_closes_in_paused(tmp_path: Path) -> None:
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}) as h:
        e = h.engine
        e.submit_signal(h.signal(side=Side.BUY, qty=D("0.05"), stop_loss=D("59900")))
        await until(lambda: len(h.core.open_orders(h.account, "BTCUSDT")) == 1, what="venue stop")
        stop = h.core.open_orders(h.account, "BTCUSDT")[0]
        h.core.cancel_order(h.account, "BTCUSDT", client_order_id=stop.client_order_id)
        await until(
            lambda: all(not t.is_open for t in e.oms.open_orders(Venue.BINANCE, "BTCUSDT")),
            what="cancel seen",
        )
        await e.pause()
        h.move("BTCUSDT", D("59850.0"))
        await until(lambda: h.venue_position("BTCUSDT") == 0, what="backup market close")
        assert e.counters["exit_backup_orders"] == 1


async def test_emergency_stop_when_orders_and_positions_on_two_symbols_then_venue_has_none(
    tmp_path: Path,
) -> None:
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}) as h:
        e = h.engine
        for sym, qty, px in (("BTCUSDT", D("0.05"), D("59000")), ("ETHUSDT", D("1"), D("2950"))):
            await e.submit_signal(h.signal(sym, side=Side.BUY, qty=qty)).task  # type: ignore[misc]
            r = e.submit_signal(h.signal(sym, side=Side.BUY, qty=qty, type=OrderType.LIMIT, limit_price=px))
            assert isinstance(r.decision, Approved)
            await r.task  # type: ignore[misc]
        await until(lambda: h.venue_position("BTCUSDT") and h.venue_position("ETHUSDT"), what="positions")
        assert len(h.core.open_orders(h.account)) == 2
        result = await e.emergency_stop(flatten=True, reason="test")
        assert result["canceled"] >= 2 and not result["errors"]
        assert h.core.open_orders(h.account) == []
        await until(
            lambda: h.venue_position("BTCUSDT") == 0 and h.venue_position("ETHUSDT") == 0, what="flat"
        )
        assert e.state is EngineState.EMERGENCY_STOPPED
        denied = e.submit_signal(h.signal(side=Side.BUY, qty=D("0.01")))
        assert isinstance(denied.decision, Denied) and denied.decision.reason == "emergency_stopped"
        with pytest.raises(ControlError) as exc:
            await e.resume()
        assert exc.value.code == "invalid_transition"
        assert (await e.reset(reason="test"))["state"] == "paused"
        assert e.state is EngineState.PAUSED


async def test_daily_loss_when_equity_reaches_limit_then_emergency_with_flatten(tmp_path: Path) -> None:
    async with engine_on_venue(
        tmp_path,
        risk={"max_order_notional": "50000", "daily_loss_limit": "20"},
        engine={"flatten_on_emergency": True},
    ) as h:
        e = h.engine
        await e.submit_signal(h.signal(side=Side.BUY, qty=D("0.1"))).task  # type: ignore[misc]
        await until(lambda: h.venue_position("BTCUSDT") == D("0.1"), what="long")
        sod = D(e.risk_manager.status()["start_of_day_equity"])  # type: ignore[arg-type]
        h.move("BTCUSDT", D("59880.0"))  # mark 59879.95: about -12 - fees 3: above the limit
        await until(lambda: _mark(h) <= D("59880"), what="mark")
        await until(
            lambda: e.risk_manager.equity is not None and e.risk_manager.equity < sod - 10, what="loss"
        )
        assert e.state is EngineState.RUNNING
        h.move("BTCUSDT", D("59800.0"))  # about -20 - fees: at the limit
        await until(lambda: e.state is EngineState.EMERGENCY_STOPPED, what="trip")
        trip = e.risk_manager.trip
        assert trip is not None and trip.reason == "daily_loss_limit"
        assert e.risk_manager.equity is not None and sod - e.risk_manager.equity >= 20
        await until(lambda: h.venue_position("BTCUSDT") == 0, what="flattened")


async def test_drawdown_when_equity_falls_below_hwm_pct_then_emergency(tmp_path: Path) -> None:
    async with engine_on_venue(
        tmp_path, risk={"max_order_notional": "500000", "max_drawdown_pct": "0.05"}, usdt=D("100000")
    ) as h:
        e = h.engine
        await e.submit_signal(h.signal(side=Side.BUY, qty=D("1"))).task  # type: ignore[misc]
        await until(lambda: h.venue_position("BTCUSDT") == 1, what="long")
        h.move("BTCUSDT", D("60030.0"))  # new high-water mark
        await until(lambda: _mark(h) >= D("60029.9"), what="mark up")
        hwm = D(e.risk_manager.status()["high_water_mark"])  # type: ignore[arg-type]
        assert e.state is EngineState.RUNNING
        h.move("BTCUSDT", D("59990.0"))  # -40 from the top: 0.04% < 0.05%
        await until(lambda: _mark(h) <= D("59990"), what="mark down")
        assert e.state is EngineState.RUNNING
        h.move("BTCUSDT", D("59970.0"))  # -60: 0.06% >= 0.05%
        await until(lambda: e.state is EngineState.EMERGENCY_STOPPED, what="drawdown trip")
        trip = e.risk_manager.trip
        assert trip is not None and trip.reason == "max_drawdown"
        assert (hwm - e.risk_manager.equity) * 100 >= hwm * D("0.05")  # type: ignore[operator]
        assert h.venue_position("BTCUSDT") == 1  # not configured to flatten


async def test_book_when_resyncing_then_entries_blocked_until_live(tmp_path: Path) -> None:
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}) as h:
        e = h.engine
        e._sink(
            VenueStatus(venue=Venue.BINANCE, stream="book:BTCUSDT", status="resyncing", detail="t", ts_ms=1)
        )
        await until(lambda: e._books[(Venue.BINANCE, "BTCUSDT")].value == "resyncing", what="health")
        denied = e.submit_signal(h.signal(side=Side.BUY, qty=D("0.01")))
        assert isinstance(denied.decision, Denied) and denied.decision.reason == "book_unhealthy"
        eth = e.submit_signal(h.signal("ETHUSDT", side=Side.BUY, qty=D("0.1")))
        assert isinstance(eth.decision, Approved)
        e._sink(VenueStatus(venue=Venue.BINANCE, stream="book:BTCUSDT", status="live", detail="t", ts_ms=2))
        await until(lambda: e._books[(Venue.BINANCE, "BTCUSDT")].value == "live", what="live")
        assert isinstance(e.submit_signal(h.signal(side=Side.BUY, qty=D("0.01"))).decision, Approved)
        assert e.denials["book_unhealthy"] == 1


async def test_book_when_venue_skips_a_sequence_then_resync_reported_and_live_again(tmp_path: Path) -> None:
    async with engine_on_venue(tmp_path) as h:
        e = h.engine
        h.venue.ctx.faults.ws_skip_seq = 1
        h.move("BTCUSDT", D("60010.0"))
        await until(lambda: e.counters["book_unhealthy_events"] >= 1, what="resync seen")
        await until(lambda: e._books[(Venue.BINANCE, "BTCUSDT")].value == "live", what="live again")


LIMIT_CASES: list[tuple[str, str, dict[str, object], str]] = [
    ("max_order_qty", "0.01", {"qty": D("0.02")}, "max_order_qty"),
    ("max_order_notional", "100", {"qty": D("0.01")}, "max_order_notional"),
    ("max_position_notional", "500", {"qty": D("0.01")}, "position_limit"),
    ("max_total_notional", "500", {"qty": D("0.01")}, "total_exposure"),
    ("max_leverage", "0.001", {"qty": D("0.01")}, "max_leverage"),
    (
        "price_band_bps",
        "10",
        {"qty": D("0.01"), "type": OrderType.LIMIT, "limit_price": D("59000")},
        "price_band",
    ),
    (
        "min_risk_reward",
        "3",
        {"qty": D("0.01"), "stop_loss": D("59900"), "take_profit": D("60100")},
        "risk_reward",
    ),
]


async def test_limits_when_each_set_then_engine_denies_with_its_reason(tmp_path: Path) -> None:
    async with engine_on_venue(tmp_path) as h:
        e = h.engine
        for key, value, kw, reason in LIMIT_CASES:
            await e.set_limit(key, value)
            d = e.submit_signal(h.signal(side=Side.BUY, **kw)).decision  # type: ignore[arg-type]
            assert isinstance(d, Denied) and d.reason == reason, (key, d)
            await e.set_limit(key, "0")
        # open orders per symbol and order rate: the second order is the one denied
        await e.set_limit("max_open_orders_per_symbol", "1")
        ok = e.submit_signal(
            h.signal(side=Side.BUY, qty=D("0.01"), type=OrderType.LIMIT, limit_price=D("59990"))
        )
        assert isinstance(ok.decision, Approved)
        d = e.submit_signal(
            h.signal(side=Side.BUY, qty=D("0.01"), type=OrderType.LIMIT, limit_price=D("59990"))
        )
        assert isinstance(d.decision, Denied) and d.decision.reason == "max_open_orders"
        await e.set_limit("max_open_orders_per_symbol", "0")
        await e.set_limit("max_orders_per_second", "1")
        limit = {"qty": D("0.01"), "type": OrderType.LIMIT, "limit_price": D("59990")}
        assert isinstance(e.submit_signal(h.signal(side=Side.BUY, **limit)).decision, Approved)  # type: ignore[arg-type]
        d = e.submit_signal(h.signal(side=Side.BUY, **limit))  # type: ignore[arg-type]
        assert isinstance(d.decision, Denied) and d.decision.reason == "rate_limit_second"
        await e.set_limit("max_orders_per_second", "0")
        with pytest.raises(ControlError) as bad:
            await e.set_limit("daily_los_limit", "5")
        assert bad.value.code == "unknown_limit"
        with pytest.raises(ControlError) as bad:
            await e.set_limit("max_order_notional", "-1")
        assert bad.value.code == "bad_argument"
        metrics = await e.metrics()
        for _, _, _, reason in LIMIT_CASES:
            assert metrics["risk_denials"][reason] >= 1
        await e.cancel_all()
        await until(lambda: not h.core.open_orders(h.account), what="cancelled")
        assert all(t.status is not OrderStatus.NEW for t in e.oms.open_orders())


ROOT = Path(__file__).resolve().parents[2]
STATUS = re.compile(
    r"^(running|paused) \| binance up \[BTCUSDT:live,ETHUSDT:live\] \| BTCUSDT [\d.]+/[\d.]+ \| "
    r"ETHUSDT [\d.]+/[\d.]+ \| equity [\d.]+ \| daily_pnl -?[\d.]+ \| "
    r"orders \d+ \| positions \d+ \| [\d,]+ ev/s$"
)


def test_run_when_paper_config_then_socket_path_status_lines_and_sigint_exits_zero(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "paper.toml", risk={"max_order_notional": "5000"}, state_dir=tmp_path / "var"
    )
    sock = tmp_path / "admin" / "e.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--config", str(cfg), "--admin-socket", str(sock)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        lines: list[str] = []
        assert proc.stdout is not None
        while time.monotonic() < deadline and sum(1 for ln in lines if STATUS.match(ln)) < 2:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        assert f"admin socket: {sock}" in lines, lines
        assert sum(1 for ln in lines if STATUS.match(ln)) >= 2, lines
        assert sock.exists()
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped (operator: stop: SIGINT)" in rest
    assert not sock.exists()


def test_run_when_config_bad_then_exit_2_with_path_key_reason(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.toml", risk={"daily_los_limit": "5"}, state_dir=tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert f"{cfg}: risk.daily_los_limit: unknown key" in result.stderr
    assert result.stdout == ""  # nothing started: no venue, no socket
    assert not (tmp_path / "var").exists()
