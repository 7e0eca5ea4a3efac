"""``tick_to_decision``: depth message bytes -> book -> indicator -> built-in strategy -> risk check ->
order intent, in process, no network (issue 9).

Rows (per message, median over rounds of the whole stream):

- ``kernel``: ``engine._ext.tickpath.TickPath.on_depth`` -- ONE Python-to-Cython call per message;
- ``twin``: ``engine._pure.tickpath.TickPath`` (pure-Python booksync on orjson, book, EMA, risk gate);
- ``peer:msgspec+orderbook+python``: the peer stack -- a ``msgspec`` Struct typed decode of the
  ``depthUpdate`` message, the Binance sequence rule (``pu`` equals the previous ``u``), the C
  ``order-book`` package (float keys/sizes, size 0 deletes), its top of book, and the same rule in plain
  Python (microprice EMA, imbalance filter, regime flip) with a plain-Python pre-trade check (state,
  book health, quantity, notional, position limit, per-second rate).

The peer's top-of-book read is ``side.index(0)``: the package's only positional read. Its C source keeps
the sorted keys as a cache rebuilt on the first ordered read after any change (``PyDict_Keys`` +
``PyList_Sort`` + a tuple copy of the side), and every ordered read goes through it (see
``bench_book.py``); ``index(0)`` on each side once per message is its cheapest honest read.

The stream is ``bench_book``'s (BTCUSDT, 1000-level snapshot, 2000 diffs of ~5.5 levels). The kernel and
twin decisions are asserted equal before timing. The bar CI enforces (``min_ratio``) is against the twin;
the issue's goals -- 4x the peer and at most 1 us median -- are reported as targets.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from order_book import OrderBook as PeerBook

from benchmarks.bench_book import LAST_ID, LOT, RAW, SNAP_A, SNAP_B, TICK
from benchmarks.harness import measure
from engine.kernels import load

__all__ = ["DepthUpdate", "PeerTickPath", "kernel_path"]

OPS = len(RAW)
EMA_PERIOD = 20
THRESHOLD_TICKS = 0.5
IMBALANCE_MILLI = 200
QTY_LOTS = 5
TICK_F = 0.1
LOT_F = 0.001


class DepthUpdate(msgspec.Struct, frozen=True):
    """Binance USD-M ``depthUpdate`` (the fields the path reads; others are ignored by msgspec)."""

    e: str
    E: int
    s: str
    U: int
    u: int
    pu: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]


class PeerTickPath:
    """The peer stack (see the module docstring); decisions follow the kernel's rule on float prices."""

    def __init__(self) -> None:
        self.decoder = msgspec.json.Decoder(DepthUpdate)
        self.ob = PeerBook()
        self.last_u = 0
        self.k = 2.0 / (EMA_PERIOD + 1)
        self.ema_n = 0
        self.ema_sum = 0.0
        self.ema = 0.0
        self.regime = 0
        self.side = 0
        self.price = 0.0
        self.qty = 0.0
        # plain-Python risk state
        self.max_qty = 1.0
        self.max_notional = 1e9
        self.max_position = 1e9
        self.position = 0.0
        self.pending = 0.0
        self.rate_per_s = 1_000_000
        self.window_s = -1
        self.in_window = 0
        self.healthy = True
        self.running = True
        self.intents = 0

    def snapshot(self) -> None:
        ob = PeerBook()
        for p, q in SNAP_B:
            ob.bids[float(p)] = float(q)
        for p, q in SNAP_A:
            ob.asks[float(p)] = float(q)
        self.ob = ob
        self.last_u = LAST_ID - 1
        self.ema_n = 0
        self.ema_sum = 0.0
        self.regime = 0
        self.intents = 0

    def risk_check(self, side: int, qty: float, price: float, now_s: int) -> bool:
        if not self.running or not self.healthy or qty <= 0.0 or qty > self.max_qty:
            return False
        if qty * price > self.max_notional:
            return False
        if abs(self.position + self.pending + side * qty) * price > self.max_position:
            return False
        if now_s != self.window_s:
            self.window_s = now_s
            self.in_window = 0
        if self.in_window >= self.rate_per_s:
            return False
        self.in_window += 1
        self.pending += side * qty
        return True

    def on_depth(self, raw: bytes, now_s: int) -> int:
        m = self.decoder.decode(raw)
        if m.pu != self.last_u and self.last_u >= LAST_ID:
            raise ValueError("sequence gap")
        self.last_u = m.u
        bids, asks = self.ob.bids, self.ob.asks
        for p, q in m.b:
            fp = float(p)
            fq = float(q)
            if fq:
                bids[fp] = fq
            elif fp in bids:
                del bids[fp]
        for p, q in m.a:
            fp = float(p)
            fq = float(q)
            if fq:
                asks[fp] = fq
            elif fp in asks:
                del asks[fp]
        b, bq = bids.index(0)
        a, aq = asks.index(0)
        micro = (b * aq + a * bq) / (bq + aq)
        if self.ema_n < EMA_PERIOD:
            self.ema_n += 1
            self.ema_sum += micro
            if self.ema_n < EMA_PERIOD:
                return 0
            self.ema = self.ema_sum / EMA_PERIOD
        else:
            self.ema = (micro - self.ema) * self.k + self.ema
        dev = (micro - self.ema) / TICK_F
        imb = (bq - aq) / (bq + aq)
        side = 0
        if dev > THRESHOLD_TICKS and imb > IMBALANCE_MILLI / 1000:
            side = 1
        elif dev < -THRESHOLD_TICKS and -imb > IMBALANCE_MILLI / 1000:
            side = -1
        if side == 0 or side == self.regime:
            return 0
        self.regime = side
        price = b if side > 0 else a
        qty = QTY_LOTS * LOT_F
        if not self.risk_check(side, qty, price, now_s):
            return 3
        self.side, self.price, self.qty = side, price, qty
        self.intents += 1
        return 1 if side > 0 else 2


def kernel_path(kind: str) -> Any:
    """A fresh ``TickPath`` of one implementation, its book synced to the stream's snapshot."""
    ns = load(kind)  # type: ignore[arg-type]
    sync = ns.BinanceBookSync(ns.OrderBook(tick_size=TICK, lot_size=LOT))
    assert sync.on_snapshot(LAST_ID, SNAP_B, SNAP_A) == ns.BUFFERED
    gate = ns.RiskGate(max_symbols=4)
    gate.configure_symbol(0, notional_mult=10, max_qty=1000)
    gate.set_book_healthy(0, True)
    return ns.TickPath(
        sync=sync,
        gate=gate,
        ema_period=EMA_PERIOD,
        threshold_ticks=THRESHOLD_TICKS,
        imbalance_milli=IMBALANCE_MILLI,
        qty_lots=QTY_LOTS,
    )


def _decisions(kind: str) -> list[tuple[int, int, int, int, int, int]]:
    tp = kernel_path(kind)
    out: list[tuple[int, int, int, int, int, int]] = []
    for i, raw in enumerate(RAW):
        tp.now_ms = 1_717_200_000_000 + i * 100
        code = tp.on_depth(raw)
        if code:
            out.append((i, code, tp.side, tp.qty, tp.price, tp.reason))
    return out


def test_stream_when_run_through_kernel_and_twin_then_same_intents() -> None:
    """Guard: the timed rows make the same decisions, and make some."""
    kernel = _decisions("compiled")
    assert kernel == _decisions("pure")
    assert len(kernel) > 50


def test_stream_when_run_through_peer_then_it_decides_too() -> None:
    peer = PeerTickPath()
    peer.snapshot()
    codes = [peer.on_depth(raw, i // 10) for i, raw in enumerate(RAW)]
    assert sum(1 for c in codes if c) > 50


@pytest.mark.parametrize("role", ["kernel", "twin", "peer:msgspec+orderbook+python"])
def test_tick_to_decision(benchmark: Any, role: str) -> None:
    if role.startswith("peer:"):
        peer = PeerTickPath()

        def setup() -> None:
            peer.snapshot()

        def run() -> None:
            on_depth = peer.on_depth
            for i, raw in enumerate(RAW):
                on_depth(raw, i // 10)

    else:
        state: dict[str, Any] = {}

        def setup() -> None:
            state["tp"] = kernel_path("compiled" if role == "kernel" else "pure")

        def run() -> None:
            on_depth = state["tp"].on_depth
            for raw in RAW:
                on_depth(raw)

    setup()
    extra: dict[str, Any] = (
        {"min_ratio": 6, "targets": {"msgspec+orderbook+python": 4, "max_ns": 1000}}
        if role == "kernel"
        else {}
    )
    measure(benchmark, case="tick_to_decision", role=role, ops=OPS, fn=run, setup=setup, **extra)
