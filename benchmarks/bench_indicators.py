"""Indicators: the compiled kernel beside its pure-Python twin (and TA-Lib for the batch functions).

Cases, all over the same seeded random-walk bars (precomputed Python floats / float64 arrays):

- ``indicators.five_updates``: per bar, the standard set as five separate objects (EMA 20, RSI 14,
  ATR 14, MACD 12/26/9, Bollinger 20/2), with their values read.
- ``indicators.set``: per bar, one fused ``IndicatorSet.update(h, l, c)``, its return value (``ready``)
  used. The issue's target: at most 100 ns per bar.
- ``indicators.set_read``: per bar, the fused update and then all nine values read, through one
  ``values()`` tuple (measured cheaper than nine attribute reads, each of which allocates a float behind
  a descriptor call: update + nine reads ~260 ns per bar against ~170 ns with ``values()``).
- ``indicators.batch``: the five batch functions over the arrays (ops = bars); TA-Lib's EMA, RSI, ATR,
  MACD and BBANDS as the peer. The twin runs on fewer bars (it is slow), with ``ops`` to match.
- ``indicators.<Class>``: one ``update`` per bar of each single indicator class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import talib

from benchmarks.harness import measure
from engine.kernels import load

compiled = load("compiled")
pure = load("pure")

N_BARS = 5_000
N_TWIN_BATCH = 1_000
N_SINGLE = 2_000


def _bars(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 65_000.0 + np.cumsum(rng.normal(0.0, 40.0, n))
    high = close + rng.random(n) * 60.0
    low = close - rng.random(n) * 60.0
    volume = rng.lognormal(0.0, 1.0, n)
    return high, low, close, volume


H, L, C, V = _bars(N_BARS)
ROWS: list[tuple[float, float, float]] = list(zip(H.tolist(), L.tolist(), C.tolist(), strict=True))
TS: list[int] = [1_700_000_000_000 + 60_000 * i for i in range(N_BARS)]


def _module(role: str) -> Any:
    return compiled if role == "kernel" else pure


def _kernel_only(role: str, **kwargs: Any) -> dict[str, Any]:
    return kwargs if role == "kernel" else {}


@pytest.mark.parametrize("role", ["kernel", "twin"])
def test_indicators_five_updates(benchmark: Any, role: str) -> None:
    m = _module(role)
    state: dict[str, Any] = {}

    def setup() -> None:
        state["objs"] = (
            m.EMA(period=20),
            m.RSI(period=14),
            m.ATR(period=14),
            m.MACD(fast=12, slow=26, signal=9),
            m.Bollinger(period=20, k=2.0),
        )

    def run() -> None:
        ema, rsi, atr, macd, bb = state["objs"]
        eu, ru, au, mu, bu = ema.update, rsi.update, atr.update, macd.update, bb.update
        for h, lo, c in ROWS:
            eu(c)
            ru(c)
            au(h, lo, c)
            mu(c)
            macd.signal  # noqa: B018  (reading the values is part of the work)
            macd.hist  # noqa: B018
            bu(c)
            bb.upper  # noqa: B018
            bb.lower  # noqa: B018

    setup()
    measure(
        benchmark,
        case="indicators.five_updates",
        role=role,
        ops=N_BARS,
        fn=run,
        setup=setup,
        **_kernel_only(role, min_ratio=3.0, targets={"max_ns": 300.0}),
    )


@pytest.mark.parametrize("role", ["kernel", "twin"])
def test_indicators_set(benchmark: Any, role: str) -> None:
    m = _module(role)
    state: dict[str, Any] = {}

    def setup() -> None:
        state["s"] = m.IndicatorSet()

    def run() -> int:
        update = state["s"].update
        ready = 0
        for h, lo, c in ROWS:
            if update(h, lo, c):
                ready += 1
        return ready

    setup()
    measure(
        benchmark,
        case="indicators.set",
        role=role,
        ops=N_BARS,
        fn=run,
        setup=setup,
        **_kernel_only(role, min_ratio=5.0, targets={"max_ns": 100.0}),
    )


@pytest.mark.parametrize("role", ["kernel", "twin"])
def test_indicators_set_read(benchmark: Any, role: str) -> None:
    m = _module(role)
    state: dict[str, Any] = {}

    def setup() -> None:
        state["s"] = m.IndicatorSet()

    def run() -> float:
        s = state["s"]
        update, values = s.update, s.values
        acc = 0.0
        for h, lo, c in ROWS:
            update(h, lo, c)
            # all nine unpacked into locals: the same work as reading the nine attributes
            ema, _rsi, _atr, _macd, _signal, _hist, _upper, _middle, _lower = values()
            acc = ema
        return acc

    setup()
    measure(
        benchmark,
        case="indicators.set_read",
        role=role,
        ops=N_BARS,
        fn=run,
        setup=setup,
        **_kernel_only(role, min_ratio=3.0),
    )


@pytest.mark.parametrize("role", ["kernel", "twin", "peer:talib"])
def test_indicators_batch(benchmark: Any, role: str) -> None:
    n = N_TWIN_BATCH if role == "twin" else N_BARS
    h, lo, c = H[:n].copy(), L[:n].copy(), C[:n].copy()
    if role == "peer:talib":

        def run() -> None:
            talib.EMA(c, 20)
            talib.RSI(c, 14)
            talib.ATR(h, lo, c, 14)
            talib.MACD(c, 12, 26, 9)
            talib.BBANDS(c, 20, 2.0, 2.0, 0)

    else:
        m = _module(role)

        def run() -> None:
            m.ema_batch(c, 20)
            m.rsi_batch(c, 14)
            m.atr_batch(h, lo, c, 14)
            m.macd_batch(c, 12, 26, 9)
            m.bollinger_batch(c, 20, 2.0)

    measure(
        benchmark,
        case="indicators.batch",
        role=role,
        ops=n,
        fn=run,
        **_kernel_only(role, min_ratio=3.0, targets={"talib": 0.5}),
    )


# class name -> (constructor kwargs, which inputs per bar)
SINGLE: dict[str, tuple[dict[str, Any], str]] = {
    "SMA": ({"period": 20}, "c"),
    "EMA": ({"period": 20}, "c"),
    "WMA": ({"period": 20}, "c"),
    "StdDev": ({"period": 20}, "c"),
    "RSI": ({"period": 14}, "c"),
    "ATR": ({"period": 14}, "hlc"),
    "MACD": ({}, "c"),
    "Bollinger": ({}, "c"),
    "VWAP": ({}, "cvt"),
    "Supertrend": ({}, "hlc"),
    "Donchian": ({}, "hl"),
    "OBV": ({}, "cv"),
    "WaveTrend": ({}, "c"),
}

# EMA and OBV do so little per update that both rows are mostly the Python call itself (~30 ns for the
# kernel); their measured ratio sits at 3.0-3.1x, so the CI bar is 2x there to keep CI from flaking.
LOW_BAR: dict[str, float] = {"EMA": 2.0, "OBV": 2.0}

_COLUMNS: dict[str, list[Any]] = {
    "h": H[:N_SINGLE].tolist(),
    "l": L[:N_SINGLE].tolist(),
    "c": C[:N_SINGLE].tolist(),
    "v": V[:N_SINGLE].tolist(),
    "t": TS[:N_SINGLE],
}


@pytest.mark.parametrize("role", ["kernel", "twin"])
@pytest.mark.parametrize("name", sorted(SINGLE))
def test_indicators_single(benchmark: Any, name: str, role: str) -> None:
    kwargs, inputs = SINGLE[name]
    cls = getattr(_module(role), name)
    state: dict[str, Any] = {}

    def setup() -> None:
        state["ind"] = cls(**kwargs)

    if len(inputs) == 1:
        xs = _COLUMNS[inputs]

        def run() -> None:
            update = state["ind"].update
            for x in xs:
                update(x)

    else:
        rows = list(zip(*(_COLUMNS[k] for k in inputs), strict=True))

        def run() -> None:
            update = state["ind"].update
            for row in rows:
                update(*row)

    setup()
    measure(
        benchmark,
        case=f"indicators.{name}",
        role=role,
        ops=N_SINGLE,
        fn=run,
        setup=setup,
        **_kernel_only(role, min_ratio=LOW_BAR.get(name, 3.0)),
    )
