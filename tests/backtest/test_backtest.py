"""Backtester behaviour: CLI end to end, determinism, accounting, fast == slow, no look-ahead, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine import kernels
from engine.backtest import BacktestError, run_backtest, synthetic_source
from engine.config import load_config
from engine.strategies import Strategy, register
from engine.types import BookUpdate, OrderType, Side, Signal, TradeTick

CONFIG = """
[engine]
mode = "paper"

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT"]

[strategy]
name = "{name}"
params = {params}

[risk]
max_order_notional = "50000"
"""

EMA = '{ fast = 3, slow = 8, rsi_period = 5, bar_ms = 1000, qty = "0.01" }'


def _cfg(tmp_path: Path, name: str = "ema_cross", params: str = EMA) -> Path:
    p = tmp_path / "bt.toml"
    p.write_text(CONFIG.format(name=name, params=params))
    return p


@register
class _Peek(Strategy):
    """Records what it sees; buys once at its 50th trade and remembers the touch it decided on."""

    name = "bt_test_peek"
    seen: ClassVar[list[tuple[str, int, int]]] = []
    decided_at: ClassVar[list[int]] = []

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        _Peek.seen.append(("trade", trade.ts_ms, int(trade.price * 10)))
        if len([s for s in _Peek.seen if s[0] == "trade"]) == 50:
            _Peek.decided_at.append(trade.ts_ms)
            return [Signal(venue=trade.venue, symbol=trade.symbol, side=Side.BUY, type=OrderType.MARKET,
                           qty=Decimal("0.01"))]  # fmt: skip
        return []

    def on_book(self, update: BookUpdate) -> list[Signal]:
        _Peek.seen.append(("book", update.ts_ms, update.best_ask_ticks))
        return []


def test_when_cli_backtest_synthetic_then_every_file_has_the_contract_fields(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "backtest", "--config", str(_cfg(tmp_path)), "--synthetic",
         "--seed", "7", "--events", "20000", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    for key in ("initial_equity", "final_equity", "total_return", "max_drawdown", "sharpe", "sortino",
                "win_rate", "profit_factor", "trades", "fees", "funding", "events", "events_per_s", "cagr",
                "calmar", "max_drawdown_duration_ms", "expectancy", "exposure"):  # fmt: skip
        assert key in summary
    assert summary["events"] >= 20000
    header = (out / "trades.csv").read_text().splitlines()[0].split(",")
    for col in ("symbol", "side", "qty", "entry_time", "exit_time", "entry_price", "exit_price", "fees",
                "funding", "pnl"):  # fmt: skip
        assert col in header
    assert (out / "equity.csv").read_text().startswith("time,equity\n")
    assert (out / "equity.png").read_bytes()[:4] == b"\x89PNG"
    assert "equity.png" in (out / "report.html").read_text()


def test_when_same_inputs_and_seed_then_summary_and_trades_are_byte_identical(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path))
    outs = []
    for i in range(2):
        src = synthetic_source(cfg, seed=3, events=8000)
        run_backtest(cfg, src, out_dir=tmp_path / f"o{i}", seed=3, funding_interval_ms=60_000)
        s = json.loads((tmp_path / f"o{i}" / "summary.json").read_text())
        s.pop("events_per_s")
        outs.append((s, (tmp_path / f"o{i}" / "trades.csv").read_bytes()))
    assert outs[0] == outs[1]


def test_when_run_then_trades_pnl_adds_up_to_equity_change_with_fees_and_funding(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path))
    res = run_backtest(cfg, synthetic_source(cfg, seed=7, events=20000), out_dir=tmp_path / "o", seed=7,
                       funding_interval_ms=60_000)  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "o" / "trades.csv").open()))
    total = sum((Decimal(r["pnl"]) for r in rows), Decimal(0))
    assert total == Decimal(res.metrics["final_equity"]) - Decimal(res.metrics["initial_equity"])
    assert rows and all(Decimal(r["fees"]) > 0 for r in rows)
    assert any(Decimal(r["funding"]) != 0 for r in rows)
    for r in rows:
        assert Decimal(r["pnl"]) <= (Decimal(r["exit_price"]) - Decimal(r["entry_price"])) * Decimal(
            r["qty"]
        ) * (1 if r["side"] == "buy" else -1) - Decimal(r["fees"]) + Decimal(r["funding"]) + Decimal("0.01")


def test_when_position_open_at_end_then_closed_at_last_price_as_final_trade(tmp_path: Path) -> None:
    _Peek.seen.clear()
    _Peek.decided_at.clear()
    cfg = load_config(_cfg(tmp_path, "bt_test_peek", "{}"))
    src = synthetic_source(cfg, seed=5, events=3000)
    res = run_backtest(cfg, src, out_dir=None, seed=5).result
    assert len(res.trades) == 1
    tr = res.trades[0]
    assert tr.closed_at_end and tr.exit_time == src.messages[-1][0]
    last_px = [m[3][0] for m in src.messages if m[1] == 2][-1]
    assert tr.exit_price == Decimal("0.1") * last_px
    assert res.final_equity - res.initial_equity == tr.pnl


def test_when_strategy_decides_then_it_never_saw_a_later_event_and_fills_after_its_decision(
    tmp_path: Path,
) -> None:
    _Peek.seen.clear()
    _Peek.decided_at.clear()
    cfg = load_config(_cfg(tmp_path, "bt_test_peek", "{}"))
    src = synthetic_source(cfg, seed=5, events=3000)
    res = run_backtest(cfg, src, out_dir=None, seed=5).result
    decided = _Peek.decided_at[0]
    idx = next(i for i, s in enumerate(_Peek.seen) if s[0] == "trade" and s[1] == decided and
               sum(1 for x in _Peek.seen[: i + 1] if x[0] == "trade") == 50)  # fmt: skip
    assert all(s[1] <= decided for s in _Peek.seen[: idx + 1])
    assert res.trades[0].entry_time >= decided
    # the fill price is an ask of the book as it stood at the end of the decision's step, not before
    asks_after = [s[2] for s in _Peek.seen if s[0] == "book" and s[1] == decided]
    if asks_after:
        assert res.trades[0].entry_price >= Decimal("0.1") * min(asks_after)


def test_when_future_event_is_poisoned_then_earlier_decisions_do_not_change(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path))
    src = synthetic_source(cfg, seed=7, events=20000)
    base = run_backtest(cfg, src, out_dir=None, seed=7).result
    cut = base.trades[3].exit_time
    poisoned = synthetic_source(cfg, seed=7, events=20000)
    poisoned.messages = [
        m if m[0] <= cut or m[1] != 2 else (m[0], m[1], m[2], (m[3][0] + 5000, m[3][1], m[3][2]))
        for m in poisoned.messages
    ]
    other = run_backtest(cfg, poisoned, out_dir=None, seed=7).result
    before = [t for t in base.trades if t.exit_time <= cut and not t.closed_at_end]
    assert before == [t for t in other.trades if t.exit_time <= cut and not t.closed_at_end][: len(before)]


@pytest.mark.skipif(not hasattr(kernels.load("pure"), "OrderBook"), reason="pure kernels unavailable")
def test_when_fast_and_slow_paths_replay_the_same_data_then_trades_are_identical(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path))
    src = synthetic_source(cfg, seed=11, events=15000)
    impl: Any = (
        kernels.load("compiled") if hasattr(kernels.load("compiled"), "ReplayLoop") else kernels.load("pure")
    )
    a = run_backtest(
        cfg, src, out_dir=tmp_path / "s", seed=11, fast=False, funding_interval_ms=60_000, impl=impl
    )
    b = run_backtest(
        cfg, src, out_dir=tmp_path / "f", seed=11, fast=True, funding_interval_ms=60_000, impl=impl
    )
    assert b.result.path == "fast" and b.result.syncs > 0
    assert (tmp_path / "s" / "trades.csv").read_bytes() == (tmp_path / "f" / "trades.csv").read_bytes()
    assert a.metrics["final_equity"] == b.metrics["final_equity"]
    assert a.result.equity == b.result.equity


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--synthetic", "--events", "0"], "--events"),
        (["--synthetic", "--seed", "-1"], "--seed"),
        ([], "exactly one of"),
        (["--data", "/nonexistent/file.jsonl.zst"], "no such file"),
    ],
)
def test_when_bad_inputs_then_exit_2_with_a_clear_error(
    tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    rc = main(["backtest", "--config", str(_cfg(tmp_path)), "--out", str(tmp_path / "o"), *argv])
    assert rc == 2


def test_when_unknown_strategy_then_backtest_error_names_it(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, "no_such_strategy", "{}"))
    with pytest.raises(KeyError, match="no_such_strategy"):
        run_backtest(cfg, synthetic_source(cfg, seed=1, events=100), out_dir=None, seed=1)


def test_when_deposit_not_positive_then_rejected(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path))
    with pytest.raises(BacktestError, match="deposit"):
        run_backtest(cfg, synthetic_source(cfg, seed=1, events=100), out_dir=None, seed=1, deposit=Decimal(0))
