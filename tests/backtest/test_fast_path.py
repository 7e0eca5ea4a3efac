"""The fast path's compiled ReplayLoop end to end: compiled fast == pure fast == slow, for a trade-driven
strategy (ema_cross), a bar-only strategy (trades go to the loop's bar builders, no Python per trade) and
a book-driven one (imbalance_scalper, limit orders: engaged steps run on the slow path)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine import kernels as _kernels_module
from engine.backtest import run_backtest, synthetic_source
from engine.config import load_config
from engine.strategies import Strategy, register
from engine.strategies.base import Bar
from engine.types import Fill, OrderType, Side, Signal, Venue

kernels: Any = _kernels_module

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


@register
class _BarCross(Strategy):
    """Bar-only (so the runner feeds it from the loop's bar builders): EMA(3)/EMA(8) cross on 1 s bars,
    market entries of 0.01 with a stop 0.2% behind the touch (read from the bound book, in Decimal)."""

    name = "bt_test_bar_cross"
    requires_books = True
    bar_ms = 1000

    def __init__(self, *, params: Any, symbols: Any) -> None:
        super().__init__(params=params, symbols=symbols)
        self.fast = kernels.EMA(period=3)
        self.slow = kernels.EMA(period=8)
        self.prev: float | None = None
        self.pos = Decimal(0)

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        diff = self.fast.update(bar.close) - self.slow.update(bar.close)
        prev, self.prev = self.prev, diff
        if prev is None or diff != diff or prev != prev:
            return []
        bid = self.book(venue, symbol).best_bid()
        ask = self.book(venue, symbol).best_ask()
        if bid is None or ask is None:
            return []
        if prev <= 0.0 < diff and self.pos <= 0:
            return [Signal(venue=venue, symbol=symbol, side=Side.BUY, type=OrderType.MARKET,
                           qty=Decimal("0.01") - self.pos, stop_loss=bid[0] * Decimal("0.998"))]  # fmt: skip
        if prev >= 0.0 > diff and self.pos >= 0:
            return [Signal(venue=venue, symbol=symbol, side=Side.SELL, type=OrderType.MARKET,
                           qty=Decimal("0.01") + self.pos, stop_loss=ask[0] * Decimal("1.002"))]  # fmt: skip
        return []

    def on_fill(self, fill: Fill) -> list[Signal]:
        self.pos += fill.qty * fill.side.sign
        return []


EMA = '{ fast = 3, slow = 8, rsi_period = 5, bar_ms = 1000, qty = "0.01" }'
STRATEGIES = [
    pytest.param("ema_cross", EMA, id="ema"),
    pytest.param("bt_test_bar_cross", "{}", id="bars"),
    pytest.param("imbalance_scalper", '{ qty = "0.01", cooldown_ms = 2000 }', id="book"),
]


@pytest.mark.parametrize(("name", "params"), STRATEGIES)
def test_when_compiled_fast_pure_fast_and_slow_replay_the_same_data_then_reports_are_identical(
    tmp_path: Path, name: str, params: str
) -> None:
    p = tmp_path / "bt.toml"
    p.write_text(CONFIG.format(name=name, params=params))
    cfg = load_config(p)
    src = synthetic_source(cfg, seed=3, events=12000)
    runs = {
        label: run_backtest(
            cfg,
            src,
            out_dir=tmp_path / label,
            seed=3,
            fast=fast,
            funding_interval_ms=60_000,
            impl=kernels.load(kind),
        )
        for label, fast, kind in (("cf", True, "compiled"), ("pf", True, "pure"), ("cs", False, "compiled"))
    }
    assert runs["cf"].result.path == "fast" and runs["cf"].result.syncs > 0
    assert runs["cs"].result.path == "slow"
    assert runs["cf"].result.trades, "the strategy traded (else the comparison proves little)"
    for label in ("pf", "cs"):
        assert (tmp_path / label / "trades.csv").read_bytes() == (tmp_path / "cf" / "trades.csv").read_bytes()
        assert (tmp_path / label / "equity.csv").read_bytes() == (tmp_path / "cf" / "equity.csv").read_bytes()
        assert runs[label].result.equity == runs["cf"].result.equity
        assert runs[label].metrics["final_equity"] == runs["cf"].metrics["final_equity"]
