"""Backtester throughput: the fast path's ``ReplayLoop`` against its twin, and one end-to-end run.

The stream is the backtester's own synthetic data (``synthetic_source``: the local venue's seeded
generator, BTCUSDT, a 100-level snapshot then 100 ms steps of depth diffs and aggTrades; about 19% of the
rows are trades, 81% book level changes), generated and decoded once per session. An *event* is one row:
a book level change or a trade (what ``events_per_s`` counts).

- ``backtest.replay`` (CI bar): ``ReplayLoop.run`` over every row: each depth message applied to the L2
  book, each trade into a 1 s ``BarBuilder``, each completed bar through the indicators (EMA 12, EMA 26,
  RSI 14: ``engine.kernels`` classes of the same implementation) and a simple strategy, ema_cross's rule
  (fast EMA crossing the slow one, RSI filter); a cross is a signal, so the loop returns to Python and is
  re-entered, as the runner does. The mark band check runs at every step. This is the runner's bar mode
  (a strategy that only overrides ``on_bar``), without the venue. Kernel: compiled loop, books, bars and
  indicators; twin: the pure ones, on the first steps only (fewer rows, same per-row work).
- ``backtest.e2e`` (report only): ``run_backtest(..., fast=True)`` with the compiled kernels and the
  built-in ``ema_cross`` (which overrides ``on_trade``: one Python ``TradeTick`` per trade), through the
  risk manager and the venue's matching, wall time of the whole call (the integer decode included).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from benchmarks.harness import measure
from engine.backtest import run_backtest, synthetic_source
from engine.backtest.sources import MarketData
from engine.config import EngineConfig, load_config
from engine.kernels import load

SHORT = os.environ.get("ENGINE_BENCH_SHORT") == "1"
EVENTS = 200_000
TWIN_EVENTS = 20_000 if SHORT else 60_000
E2E_EVENTS = 20_000 if SHORT else 100_000
BIG = 2**62

CONFIG = """
[engine]
mode = "paper"

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT"]

[strategy]
name = "ema_cross"
params = { fast = 12, slow = 26, rsi_period = 14, bar_ms = 1000, qty = "0.01" }

[risk]
max_order_notional = "50000"
"""


class _Strategy:
    """The loop's handler: ema_cross's rule on the loop's bars; marks sampled once a second."""

    def __init__(self, ns: SimpleNamespace, books: list[Any]) -> None:
        self.books = books
        self.fast = ns.EMA(period=12)
        self.slow = ns.EMA(period=26)
        self.rsi = ns.RSI(period=14)
        self.prev: float | None = None
        self.signals = 0
        self.marks: list[tuple[int, int]] = []

    def on_trade_event(self, sym: int, t: int, px: int, lots: int, is_buy: bool) -> bool:
        raise AssertionError("bar mode: the loop feeds trades to its bar builders")

    def on_book_event(self, sym: int, t: int) -> bool:
        raise AssertionError("the strategy reads bars only")

    def on_bars(self, sym: int, bars: list[Any]) -> bool:
        out = False
        for bar in bars:
            fast = self.fast.update(bar.close)
            slow = self.slow.update(bar.close)
            rsi = self.rsi.update(bar.close)
            if not (self.fast.ready and self.slow.ready and self.rsi.ready):
                continue
            diff = fast - slow
            prev, self.prev = self.prev, diff
            if prev is not None and (
                (prev <= 0.0 < diff and rsi < 70.0) or (prev >= 0.0 > diff and rsi > 30.0)
            ):
                self.signals += 1
                out = True
        return out

    def on_sample(self, t: int) -> int:
        bb, _, ba, _ = self.books[0].touch_ticks()
        self.marks.append((t, bb + ba))
        return (t // 1000 + 1) * 1000


class _Replay:
    def __init__(self, ns: SimpleNamespace, data: MarketData, rows: Any, steps: Any, nsteps: int) -> None:
        self.ns, self.data, self.rows, self.steps, self.nsteps = ns, data, rows, steps, nsteps
        self.loop: Any = None
        self.strategy: _Strategy | None = None
        self.reset()

    def reset(self) -> None:
        specs = [self.data.specs[s] for s in self.data.symbols]
        books = [self.ns.OrderBook(tick_size=str(s.tick_size), lot_size=str(s.lot_size)) for s in specs]
        bars = [self.ns.BarBuilder(interval_ms=1000) for _ in specs]
        self.strategy = _Strategy(self.ns, books)
        self.loop = self.ns.ReplayLoop(
            books=books, bars=bars, handler=self.strategy, want_trades=False, want_book=False
        )

    def run(self) -> int:
        k, n, loop = 0, self.nsteps, self.loop
        lo, hi = [-BIG], [BIG]
        stops = 0
        while k < n:
            k = loop.run(self.rows, self.steps, k, n, lo, hi, BIG, loop.next_sample)
            stops += 1
        return stops


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> EngineConfig:
    p: Path = tmp_path_factory.mktemp("btf-bench") / "bt.toml"
    p.write_text(CONFIG)
    return load_config(p)


@pytest.fixture(scope="module")
def stream(cfg: EngineConfig) -> tuple[MarketData, Any, Any]:
    data = synthetic_source(cfg, seed=1, events=EVENTS)
    rows, steps = data.decode()
    return data, rows, steps


def _steps_for(steps: Any, events: int) -> int:
    """The number of whole steps covering at least ``events`` rows."""
    return min(int(np.searchsorted(steps, events)), len(steps) - 1)


def test_replay_kernel(benchmark: Any, stream: tuple[MarketData, Any, Any]) -> None:
    data, rows, steps = stream
    nsteps = len(steps) - 1
    r = _Replay(load("compiled"), data, rows, steps, nsteps)
    ops = int(steps[nsteps])
    measure(benchmark, case="backtest.replay", role="kernel", ops=ops, fn=r.run, setup=r.reset,
            min_ratio=5.0, targets={"max_ns": 1000})  # fmt: skip
    assert r.strategy is not None and r.strategy.signals > 0 and r.strategy.marks


def test_replay_twin(benchmark: Any, stream: tuple[MarketData, Any, Any]) -> None:
    data, rows, steps = stream
    nsteps = _steps_for(steps, TWIN_EVENTS)
    r = _Replay(load("pure"), data, rows, steps, nsteps)
    ops = int(steps[nsteps])
    measure(benchmark, case="backtest.replay", role="twin", ops=ops, fn=r.run, setup=r.reset,
            rounds=3 if SHORT else 10)  # fmt: skip
    assert r.strategy is not None and r.strategy.marks


def test_e2e_fast_compiled(benchmark: Any, cfg: EngineConfig) -> None:
    data = synthetic_source(cfg, seed=2, events=E2E_EVENTS)
    events = data.events
    impl = load("compiled")

    def run() -> None:
        s = run_backtest(cfg, data, out_dir=None, seed=2, fast=True, impl=impl)
        assert s.result.path == "fast"

    measure(benchmark, case="backtest.e2e", role="kernel", ops=events, fn=run, rounds=3 if SHORT else 10)
