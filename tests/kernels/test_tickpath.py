"""The fused tick-to-decision path, compiled and twin: same decisions, the rule, the risk gate's say."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from benchmarks.bench_tick_to_decision import _decisions


def _path(impl: SimpleNamespace, *, max_qty: int = 1000, period: int = 3) -> Any:
    sync = impl.BinanceBookSync(impl.OrderBook(tick_size="0.10", lot_size="0.001"))
    sync.on_snapshot(101, [["100.0", "1.000"]], [["100.2", "1.000"]])
    gate = impl.RiskGate(max_symbols=2)
    gate.configure_symbol(0, notional_mult=10, max_qty=max_qty)
    gate.set_book_healthy(0, True)
    return impl.TickPath(
        sync=sync, gate=gate, ema_period=period, threshold_ticks=0.25, imbalance_milli=200, qty_lots=5
    )


def _diff(u: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return orjson.dumps(
        {
            "e": "depthUpdate",
            "E": 1,
            "T": 1,
            "s": "BTCUSDT",
            "U": u,
            "u": u,
            "pu": u - 1,
            "b": bids,
            "a": asks,
        }
    )


def test_generated_stream_when_run_through_both_then_identical_intents() -> None:
    compiled = _decisions("compiled")
    assert compiled == _decisions("pure")
    assert {code for _, code, *_ in compiled} >= {1, 2}


def test_bid_heavy_rise_when_ema_ready_then_buy_at_bid(impl: SimpleNamespace) -> None:
    tp = _path(impl)
    for u in (101, 102, 103):  # balanced: the EMA fills, no decision
        assert tp.on_depth(_diff(u, [["100.0", "1.000"]], [["100.2", "1.000"]])) == impl.TP_NONE
    # the bid grows: microprice moves towards the ask, the bid side outweighs
    code = tp.on_depth(_diff(104, [["100.1", "9.000"]], []))
    assert code == impl.TP_BUY
    assert (tp.side, tp.qty, tp.price, tp.reason) == (1, 5, 1001, 0)
    # the same regime again: no second intent
    assert tp.on_depth(_diff(105, [["100.1", "9.500"]], [])) == impl.TP_NONE
    assert (tp.decisions, tp.intents, tp.denials) == (1, 1, 0)


def test_decision_when_gate_denies_then_denied_with_reason(impl: SimpleNamespace) -> None:
    tp = _path(impl, max_qty=4)
    for u in (101, 102, 103):
        tp.on_depth(_diff(u, [["100.0", "1.000"]], [["100.2", "1.000"]]))
    assert tp.on_depth(_diff(104, [], [["100.1", "9.000"]])) == impl.TP_DENIED
    assert (tp.side, tp.qty, tp.reason) == (-1, 0, impl.DENY_MAX_QTY)


def test_stale_or_malformed_frame_when_fed_then_no_decision_and_error(impl: SimpleNamespace) -> None:
    tp = _path(impl)
    assert tp.on_depth(_diff(50, [], [])) == impl.TP_NONE
    assert tp.sync_code in (impl.STALE, impl.BUFFERED)
    with pytest.raises(ValueError):
        tp.on_depth(b'{"e":"depthUpdate","U":"x"}')
    with pytest.raises(ValueError):
        tp.on_depth(b"[1,2]")
