"""``bars.update``: the compiled BarBuilder beside its pure-Python twin over ~50k seeded trades.

Trades are 1 s apart on average (about a hundred per 1 s bar with bursts, and a few empty seconds),
so the batch covers the common path (same bar), bar completion and gap fill.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from benchmarks.harness import measure
from engine.kernels import load

compiled = load("compiled")
pure = load("pure")

N_TRADES = 50_000


def _trades(seed: int = 7) -> list[tuple[int, float, float]]:
    rng = random.Random(seed)
    ts, price = 1_700_000_000_000, 65_000.0
    out: list[tuple[int, float, float]] = []
    for _ in range(N_TRADES):
        ts += int(rng.expovariate(1 / 12)) if rng.random() < 0.999 else rng.randint(1_000, 5_000)
        price = round(price + rng.gauss(0.0, 0.5), 1)
        out.append((ts, price, round(rng.lognormvariate(-2.0, 1.0), 3)))
    return out


TRADES = _trades()


@pytest.mark.parametrize("role", ["kernel", "twin"])
def test_bars_update(benchmark: Any, role: str) -> None:
    module = compiled if role == "kernel" else pure
    state: dict[str, Any] = {}

    def setup() -> None:
        state["b"] = module.BarBuilder(interval_ms=1_000)

    def run() -> None:
        update = state["b"].update
        for ts, price, size in TRADES:
            update(ts, price, size)

    setup()
    measure(
        benchmark,
        case="bars.update",
        role=role,
        ops=N_TRADES,
        fn=run,
        setup=setup,
        min_ratio=3.0 if role == "kernel" else None,
        targets={"max_ns": 150.0} if role == "kernel" else None,
    )
