"""Streaming indicators: against TA-Lib, against plain-Python oracles (Supertrend, WaveTrend, Donchian,
VWAP), hand cases, edge cases; compiled and pure against each other; batch against streaming."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.kernels import load

Arr = npt.NDArray[np.float64]
SEEDS = (1, 7, 42)
NAN = math.nan


# --- helpers ----------------------------------------------------------------------------------------


def walk(seed: int, n: int = 400, start: float = 100.0) -> tuple[Arr, Arr, Arr, Arr]:
    """A random-walk OHLC series: (high, low, close, volume)."""
    rng = np.random.default_rng(seed)
    close = start + np.cumsum(rng.normal(0.0, 1.0, n))
    high = close + rng.random(n) * 2.0
    low = close - rng.random(n) * 2.0
    volume = rng.random(n) * 10.0 + 0.1
    return high, low, close, volume


def assert_same(got: Any, want: Any, rtol: float = 1e-9) -> None:
    """Equal within ``rtol`` relative (absolute floor: rtol * the series scale), NaNs at the same places."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    assert g.shape == w.shape
    assert np.array_equal(np.isnan(g), np.isnan(w)), (
        np.flatnonzero(np.isnan(g)),
        np.flatnonzero(np.isnan(w)),
    )
    finite = ~np.isnan(w)
    scale = float(np.max(np.abs(w[finite]), initial=1.0))
    np.testing.assert_allclose(g[finite], w[finite], rtol=rtol, atol=rtol * scale)


def stream(ind: Any, *columns: Any, attrs: tuple[str, ...] = ("value",)) -> list[Arr]:
    """Feed ``ind`` row by row; return one array per attribute (NaN where the attribute is NaN)."""
    outs: list[list[float]] = [[] for _ in attrs]
    for row in zip(*columns, strict=True):
        ind.update(*(float(v) for v in row))
        for out, name in zip(outs, attrs, strict=True):
            out.append(float(getattr(ind, name)))
    return [np.array(o) for o in outs]


@pytest.fixture(scope="module")
def compiled() -> SimpleNamespace:
    return load("compiled")


@pytest.fixture(scope="module")
def pure() -> SimpleNamespace:
    return load("pure")


# --- against TA-Lib ---------------------------------------------------------------------------------

SINGLE = [
    ("SMA", "sma_batch", talib.SMA, 1),
    ("SMA", "sma_batch", talib.SMA, 20),
    ("EMA", "ema_batch", talib.EMA, 2),
    ("EMA", "ema_batch", talib.EMA, 20),
    ("WMA", "wma_batch", talib.WMA, 2),
    ("WMA", "wma_batch", talib.WMA, 10),
    ("StdDev", "stddev_batch", lambda x, p: talib.STDDEV(x, p, 1.0), 2),
    ("StdDev", "stddev_batch", lambda x, p: talib.STDDEV(x, p, 1.0), 20),
    ("RSI", "rsi_batch", talib.RSI, 2),
    ("RSI", "rsi_batch", talib.RSI, 14),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("cls", "batch", "ref", "period"), SINGLE, ids=[f"{c}{p}" for c, _, _, p in SINGLE])
def test_single_input_when_random_walk_then_equals_talib(
    impl: SimpleNamespace, seed: int, cls: str, batch: str, ref: Any, period: int
) -> None:
    _, _, close, _ = walk(seed)
    want = ref(close, period)
    ind = getattr(impl, cls)(period=period)
    (got,) = stream(ind, close)
    assert_same(got, want)
    assert_same(getattr(impl, batch)(close, period), want)
    first = int(np.argmax(~np.isnan(want)))
    assert ind.ready
    fresh = getattr(impl, cls)(period=period)
    for i, x in enumerate(close[: first + 1]):
        fresh.update(float(x))
        assert fresh.ready == (i >= first)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 2, 14])
def test_atr_when_random_walk_then_equals_talib(impl: SimpleNamespace, seed: int, period: int) -> None:
    high, low, close, _ = walk(seed)
    want = talib.ATR(high, low, close, period)
    (got,) = stream(impl.ATR(period=period), high, low, close)
    assert_same(got, want)
    assert_same(impl.atr_batch(high, low, close, period), want)
    assert np.isnan(got[period - 1]) and not np.isnan(got[period])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (3, 10, 4), (2, 3, 1), (5, 6, 2)])
def test_macd_when_random_walk_then_equals_talib_seeding(
    impl: SimpleNamespace, seed: int, fast: int, slow: int, signal: int
) -> None:
    _, _, close, _ = walk(seed)
    want = talib.MACD(close, fast, slow, signal)
    got = stream(impl.MACD(fast=fast, slow=slow, signal=signal), close, attrs=("macd", "signal", "hist"))
    batch = impl.macd_batch(close, fast, slow, signal)
    for g, b, w in zip(got, batch, want, strict=True):
        assert_same(g, w)
        assert_same(b, w)
    assert int(np.argmax(~np.isnan(want[0]))) == slow + signal - 2


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("period", "k"), [(20, 2.0), (5, 1.5), (2, 3.0)])
def test_bollinger_when_random_walk_then_equals_talib_bbands(
    impl: SimpleNamespace, seed: int, period: int, k: float
) -> None:
    _, _, close, _ = walk(seed)
    want = talib.BBANDS(close, period, k, k, 0)
    ind = impl.Bollinger(period=period, k=k)
    got = stream(ind, close, attrs=("upper", "middle", "lower", "percent_b", "bandwidth"))
    for g, b, w in zip(got[:3], impl.bollinger_batch(close, period, k), want, strict=True):
        assert_same(g, w)
        assert_same(b, w)
    up, mid, lo = want
    assert_same(got[3], (close - lo) / (up - lo))
    assert_same(got[4], (up - lo) / mid)


@pytest.mark.parametrize("seed", SEEDS)
def test_obv_when_random_walk_then_equals_talib(impl: SimpleNamespace, seed: int) -> None:
    _, _, close, volume = walk(seed)
    close = np.round(close)  # some unchanged closes
    want = talib.OBV(close, volume)
    (got,) = stream(impl.OBV(), close, volume)
    assert_same(got, want)
    assert_same(impl.obv_batch(close, volume), want)
    assert got[0] == volume[0]


# --- plain-Python oracles for the indicators TA-Lib does not have -----------------------------------


def supertrend_oracle(
    high: Arr, low: Arr, close: Arr, period: int, k: float
) -> tuple[list[float], list[float]]:
    """TradingView's ta.supertrend, transcribed (TV direction -1 = up; flipped to +1 = up here)."""
    n = len(close)
    tr = [high[0] - low[0]] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])) for i in range(1, n)
    ]
    atr: list[float] = [NAN] * n
    for i in range(period - 1, n):
        atr[i] = (
            sum(tr[:period]) / period
            if i == period - 1
            else (1 / period) * tr[i] + (1 - 1 / period) * atr[i - 1]
        )
    line: list[float] = [NAN] * n
    direction: list[float] = [NAN] * n
    upper_prev = lower_prev = st_prev = NAN
    for i in range(period - 1, n):
        src = (high[i] + low[i]) / 2
        up, lo = src + k * atr[i], src - k * atr[i]
        if i == period - 1:
            tv_dir = 1
        else:
            lo = lo if (lo > lower_prev or close[i - 1] < lower_prev) else lower_prev
            up = up if (up < upper_prev or close[i - 1] > upper_prev) else upper_prev
            if st_prev == upper_prev:
                tv_dir = -1 if close[i] > up else 1
            else:
                tv_dir = 1 if close[i] < lo else -1
        st_prev = lo if tv_dir == -1 else up
        upper_prev, lower_prev = up, lo
        line[i] = st_prev
        direction[i] = -float(tv_dir)
    return line, direction


def wavetrend_oracle(x: Arr, channel: int, average: int, signal: int) -> tuple[list[float], list[float]]:
    def pine_ema(src: list[float], length: int) -> list[float]:
        alpha = 2 / (length + 1)
        out: list[float] = []
        for v in src:
            out.append(v if not out else alpha * v + (1 - alpha) * out[-1])
        return out

    xs = [float(v) for v in x]
    esa = pine_ema(xs, channel)
    d = pine_ema([abs(a - b) for a, b in zip(xs, esa, strict=True)], channel)
    ci = [(a - b) / (0.015 * dd) if dd != 0 else 0.0 for a, b, dd in zip(xs, esa, d, strict=True)]
    wt1 = pine_ema(ci, average)
    wt2 = [NAN if i < signal - 1 else sum(wt1[i - signal + 1 : i + 1]) / signal for i in range(len(xs))]
    return [NAN if i < signal - 1 else v for i, v in enumerate(wt1)], wt2


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("period", "k"), [(10, 3.0), (1, 1.0), (3, 0.5)])
def test_supertrend_when_random_walk_then_equals_tradingview_oracle(
    impl: SimpleNamespace, seed: int, period: int, k: float
) -> None:
    high, low, close, _ = walk(seed, n=300)
    want_line, want_dir = supertrend_oracle(high, low, close, period, k)
    got_line, got_dir = stream(
        impl.Supertrend(period=period, k=k), high, low, close, attrs=("value", "direction")
    )
    assert_same(got_line, want_line)
    assert list(got_dir[period - 1 :]) == want_dir[period - 1 :]
    b_line, b_dir = impl.supertrend_batch(high, low, close, period, k)
    assert_same(b_line, want_line)
    assert_same(b_dir, want_dir)


def test_supertrend_when_trend_turns_then_direction_flips_and_line_switches_band(
    impl: SimpleNamespace,
) -> None:
    close = 100.0 + 20.0 * np.sin(np.arange(200) / 15.0)
    high, low = close + 0.5, close - 0.5
    _, want_dir = supertrend_oracle(high, low, close, 10, 3.0)
    s = impl.Supertrend(period=10, k=3.0)
    dirs = []
    for h, lo, c in zip(high.tolist(), low.tolist(), close.tolist(), strict=True):
        line = s.update(h, lo, c)
        if s.ready:
            dirs.append(s.direction)
            assert line == (s.lower if s.direction == 1 else s.upper)
    assert dirs == want_dir[9:]
    flips = sum(1 for a, b in itertools.pairwise(dirs) if a != b)
    assert flips >= 3
    assert dirs[0] == -1


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("channel", "average", "signal"), [(9, 12, 3), (2, 3, 1), (10, 21, 4)])
def test_wavetrend_when_random_walk_then_equals_lazybear_oracle(
    impl: SimpleNamespace, seed: int, channel: int, average: int, signal: int
) -> None:
    high, low, close, _ = walk(seed, n=300)
    hlc3 = (high + low + close) / 3
    want1, want2 = wavetrend_oracle(hlc3, channel, average, signal)
    got1, got2 = stream(
        impl.WaveTrend(channel=channel, average=average, signal=signal), hlc3, attrs=("wt1", "wt2")
    )
    b1, b2 = impl.wavetrend_batch(hlc3, channel, average, signal)
    for g, w in ((got1, want1), (got2, want2), (b1, want1), (b2, want2)):
        assert_same(g, w)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("period", [1, 3, 20])
def test_donchian_when_random_walk_then_equals_rolling_max_min(
    impl: SimpleNamespace, seed: int, period: int
) -> None:
    high, low, _, _ = walk(seed, n=300)
    up = np.array([NAN if i < period - 1 else high[i - period + 1 : i + 1].max() for i in range(len(high))])
    lo = np.array([NAN if i < period - 1 else low[i - period + 1 : i + 1].min() for i in range(len(low))])
    got = stream(impl.Donchian(period=period), high, low, attrs=("upper", "middle", "lower"))
    batch = impl.donchian_batch(high, low, period)
    for g, b, w in zip(got, batch, (up, (up + lo) / 2, lo), strict=True):
        assert np.array_equal(g, w, equal_nan=True)
        assert np.array_equal(b, w, equal_nan=True)


def test_donchian_when_monotonic_series_then_window_slides(impl: SimpleNamespace) -> None:
    d = impl.Donchian(period=3)
    highs = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 1.0]
    uppers = []
    for h in highs:
        d.update(h, h - 10.0)
        uppers.append(d.upper)
    assert all(math.isnan(u) for u in uppers[:2])
    assert uppers[2:] == [3.0, 4.0, 4.0, 4.0, 3.0, 2.0]
    assert d.lower == -9.0 and d.middle == (2.0 - 9.0) / 2


# --- hand cases -------------------------------------------------------------------------------------


def test_sma_when_five_values_then_window_means(impl: SimpleNamespace) -> None:
    s = impl.SMA(period=3)
    out = [s.update(v) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    assert math.isnan(out[0]) and math.isnan(out[1])
    assert out[2:] == [2.0, 3.0, 4.0]
    assert s.value == 4.0 and s.ready


def test_ema_when_seeded_then_sma_then_smoothed(impl: SimpleNamespace) -> None:
    e = impl.EMA(period=3)
    assert math.isnan(e.update(1.0)) and math.isnan(e.update(2.0)) and not e.ready
    assert e.update(3.0) == 2.0 and e.ready
    assert e.update(6.0) == 4.0  # (6 - 2) * 0.5 + 2


def test_wma_when_three_values_then_weighted(impl: SimpleNamespace) -> None:
    w = impl.WMA(period=3)
    w.update(1.0)
    w.update(2.0)
    assert w.update(3.0) == pytest.approx((1 + 4 + 9) / 6)
    assert w.update(6.0) == pytest.approx((2 + 6 + 18) / 6)


def test_rsi_when_no_losses_then_100(impl: SimpleNamespace) -> None:
    r = impl.RSI(period=3)
    out = [r.update(v) for v in (1.0, 2.0, 3.0, 4.0, 5.0, 5.0)]
    assert all(math.isnan(v) for v in out[:3])
    assert out[3:] == [100.0, 100.0, 100.0]
    assert talib.RSI(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 5.0]), 3)[3] == 100.0


def test_rsi_when_no_gains_then_0_and_when_flat_then_0_like_talib(impl: SimpleNamespace) -> None:
    r = impl.RSI(period=2)
    assert [r.update(v) for v in (5.0, 4.0, 3.0)][2] == 0.0
    flat = np.full(20, 7.0)
    assert_same(impl.rsi_batch(flat, 14), talib.RSI(flat, 14))
    assert impl.rsi_batch(flat, 14)[14] == 0.0


def test_atr_when_first_bar_then_no_true_range_yet(impl: SimpleNamespace) -> None:
    a = impl.ATR(period=2)
    assert math.isnan(a.update(10.0, 8.0, 9.0))
    assert math.isnan(a.update(12.0, 9.0, 11.0))  # TR 3
    assert a.update(11.0, 10.0, 10.5) == 2.0  # TR 1 -> mean(3, 1)
    assert a.update(15.0, 14.0, 14.5) == (2.0 + 4.5) / 2  # TR |15 - 10.5| = 4.5


def test_obv_when_up_down_flat_then_adds_subtracts_keeps(impl: SimpleNamespace) -> None:
    o = impl.OBV()
    assert not o.ready and math.isnan(o.value)
    assert [o.update(c, v) for c, v in ((10, 5), (11, 2), (10, 3), (10, 7))] == [5.0, 7.0, 4.0, 4.0]


def test_vwap_when_session_crossed_then_restarts(impl: SimpleNamespace) -> None:
    v = impl.VWAP(session_ms=1_000)
    assert math.isnan(v.value) and not v.ready
    assert v.update(10.0, 1.0, 100) == 10.0
    assert v.update(20.0, 3.0, 999) == 17.5
    assert v.update(30.0, 1.0, 1_000) == 30.0
    assert v.update(40.0, 1.0) == 35.0
    v.reset()
    assert math.isnan(v.value) and not v.ready
    assert v.update(5.0, 2.0, 1_500) == 5.0


def test_vwap_when_zero_volume_then_not_ready(impl: SimpleNamespace) -> None:
    v = impl.VWAP()
    assert math.isnan(v.update(10.0, 0.0)) and not v.ready
    assert v.update(12.0, 2.0) == 12.0


def test_vwap_batch_when_timestamps_then_equals_streaming_sessions(impl: SimpleNamespace) -> None:
    _, _, close, volume = walk(3, n=200)
    ts = np.arange(200, dtype=np.int64) * 3_600_000 // 5
    v = impl.VWAP(session_ms=3_600_000)
    want = [v.update(float(p), float(q), int(t)) for p, q, t in zip(close, volume, ts, strict=True)]
    assert_same(impl.vwap_batch(close, volume, ts, session_ms=3_600_000), want)
    cum = np.cumsum(close * volume) / np.cumsum(volume)
    assert_same(impl.vwap_batch(close, volume), cum)
    assert_same(want[:5], cum[:5])
    assert want[5] == close[5]  # first trade of the second session


# --- edge cases -------------------------------------------------------------------------------------


def test_bollinger_when_constant_then_zero_width_and_percent_b_half(impl: SimpleNamespace) -> None:
    b = impl.Bollinger(period=5, k=2.0)
    for _ in range(12):
        b.update(100.1)
    assert b.upper == b.middle == b.lower == pytest.approx(100.1)
    assert b.upper == b.lower
    assert b.percent_b == 0.5
    assert b.bandwidth == 0.0
    assert impl.stddev_batch(np.full(12, 100.1), 5)[4:].tolist() == [0.0] * 8


def test_wavetrend_when_constant_then_zero(impl: SimpleNamespace) -> None:
    w = impl.WaveTrend()
    out = [w.update(42.5) for _ in range(30)]
    assert all(math.isnan(v) for v in out[:2])
    assert out[2:] == [0.0] * 28 and w.wt2 == 0.0


def test_stddev_when_tiny_prices_then_not_zeroed(impl: SimpleNamespace) -> None:
    x = np.array([1e-5, 1.1e-5] * 10)
    got = impl.stddev_batch(x, 4)
    assert_same(got, talib.STDDEV(x, 4, 1.0), rtol=1e-6)
    assert got[-1] == pytest.approx(0.05e-5, rel=1e-9)


INVALID = [
    ("SMA", {"period": 0}),
    ("EMA", {"period": 0}),
    ("WMA", {"period": -1}),
    ("StdDev", {"period": 0}),
    ("RSI", {"period": 0}),
    ("ATR", {"period": 0}),
    ("MACD", {"fast": 0}),
    ("MACD", {"slow": 0}),
    ("MACD", {"signal": 0}),
    ("MACD", {"fast": 26, "slow": 12}),
    ("Bollinger", {"period": 0}),
    ("Bollinger", {"k": 0.0}),
    ("Bollinger", {"k": math.nan}),
    ("VWAP", {"session_ms": 0}),
    ("Supertrend", {"period": 0}),
    ("Supertrend", {"k": -1.0}),
    ("Donchian", {"period": 0}),
    ("WaveTrend", {"channel": 0}),
    ("WaveTrend", {"average": 0}),
    ("WaveTrend", {"signal": 0}),
    ("IndicatorSet", {"ema": 0}),
    ("IndicatorSet", {"bb_k": -2.0}),
]


@pytest.mark.parametrize(("cls", "kwargs"), INVALID, ids=[f"{c}-{k}" for c, k in INVALID])
def test_constructor_when_invalid_parameter_then_value_error_names_it(
    impl: SimpleNamespace, cls: str, kwargs: dict[str, Any]
) -> None:
    field = next(iter(kwargs)) if cls != "IndicatorSet" else ("period" if "ema" in kwargs else "k")
    with pytest.raises(ValueError, match=field):
        getattr(impl, cls)(**kwargs)


def test_constructor_when_period_positional_or_float_then_type_error(impl: SimpleNamespace) -> None:
    with pytest.raises(TypeError):
        impl.SMA(5)
    with pytest.raises(TypeError):
        impl.EMA(period=2.5)


def test_batch_when_lengths_differ_then_value_error(impl: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="same length"):
        impl.atr_batch(np.ones(3), np.ones(3), np.ones(2), 2)
    with pytest.raises(ValueError, match="1-dimensional"):
        impl.sma_batch(np.ones((2, 2)), 2)


def test_vwap_when_negative_volume_or_timestamp_then_value_error(impl: SimpleNamespace) -> None:
    v = impl.VWAP()
    with pytest.raises(ValueError, match="volume"):
        v.update(1.0, -1.0)
    with pytest.raises(ValueError, match="ts_ms"):
        v.update(1.0, 1.0, -5)


def test_batch_when_read_only_or_int_input_then_accepted(impl: SimpleNamespace) -> None:
    x = np.arange(10.0)
    x.setflags(write=False)
    assert impl.sma_batch(x, 2)[-1] == 8.5
    assert impl.ema_batch(list(range(10)), 10)[-1] == 4.5


# --- IndicatorSet ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {
            "ema": 5,
            "rsi": 3,
            "atr": 4,
            "macd_fast": 2,
            "macd_slow": 5,
            "macd_signal": 2,
            "bb_period": 6,
            "bb_k": 1.5,
        },
    ],
)
def test_indicator_set_when_fed_then_equals_separate_classes(
    impl: SimpleNamespace, params: dict[str, Any]
) -> None:
    p = {
        "ema": 20,
        "rsi": 14,
        "atr": 14,
        "macd_fast": 12,
        "macd_slow": 26,
        "macd_signal": 9,
        "bb_period": 20,
        "bb_k": 2.0,
    } | params
    s = impl.IndicatorSet(**params)
    ema, rsi, atr = impl.EMA(period=p["ema"]), impl.RSI(period=p["rsi"]), impl.ATR(period=p["atr"])
    macd = impl.MACD(fast=p["macd_fast"], slow=p["macd_slow"], signal=p["macd_signal"])
    bb = impl.Bollinger(period=p["bb_period"], k=p["bb_k"])
    high, low, close, _ = walk(11, n=120)
    seen_ready = False
    for h, lo, c in zip(high.tolist(), low.tolist(), close.tolist(), strict=True):
        ready = s.update(h, lo, c)
        want = [ema.update(c), rsi.update(c), atr.update(h, lo, c)]
        macd.update(c)
        bb.update(c)
        want += [macd.macd, macd.signal, macd.hist, bb.upper, bb.middle, bb.lower]
        got = [s.ema, s.rsi, s.atr, s.macd, s.macd_signal, s.macd_hist, s.bb_upper, s.bb_middle, s.bb_lower]
        assert np.array_equal(got, want, equal_nan=True)
        all_ready = ema.ready and rsi.ready and atr.ready and macd.ready and bb.ready
        assert bool(ready) == s.ready == all_ready
        seen_ready |= all_ready
    assert seen_ready
    s.reset()
    assert not s.ready and math.isnan(s.ema) and math.isnan(s.bb_upper)


def test_indicator_set_values_when_fed_then_attributes_in_documented_order(impl: SimpleNamespace) -> None:
    s = impl.IndicatorSet()
    names = ("ema", "rsi", "atr", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower")
    high, low, close, _ = walk(13, n=60)
    for h, lo, c in zip(high.tolist(), low.tolist(), close.tolist(), strict=True):
        s.update(h, lo, c)
        values = s.values()
        assert isinstance(values, tuple)
        assert np.array_equal(values, [getattr(s, name) for name in names], equal_nan=True)
    assert s.ready
    s.reset()
    assert all(math.isnan(v) for v in s.values())


# --- reset -----------------------------------------------------------------------------------------

FACTORIES: dict[str, tuple[dict[str, Any], int]] = {
    # class name -> (constructor kwargs, number of inputs per update)
    "SMA": ({"period": 4}, 1),
    "EMA": ({"period": 4}, 1),
    "WMA": ({"period": 4}, 1),
    "StdDev": ({"period": 4}, 1),
    "RSI": ({"period": 4}, 1),
    "ATR": ({"period": 4}, 3),
    "MACD": ({"fast": 2, "slow": 4, "signal": 3}, 1),
    "Bollinger": ({"period": 4, "k": 2.0}, 1),
    "VWAP": ({}, 2),
    "Supertrend": ({"period": 4, "k": 2.0}, 3),
    "Donchian": ({"period": 4}, 2),
    "OBV": ({}, 2),
    "WaveTrend": ({"channel": 3, "average": 4, "signal": 2}, 1),
}


def rows(series: list[float], arity: int) -> list[tuple[float, ...]]:
    """Inputs per update built from one series (high >= close >= low; volume positive)."""
    if arity == 1:
        return [(x,) for x in series]
    if arity == 2:
        return [(x, abs(x) % 7 + 0.5) for x in series]
    return [(x + 1.0, x - 1.0, x) for x in series]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_reset_when_reused_then_same_as_fresh(impl: SimpleNamespace, name: str) -> None:
    kwargs, arity = FACTORIES[name]
    _, _, close, _ = walk(5, n=40)
    data = rows(close.tolist(), arity)
    ind = getattr(impl, name)(**kwargs)
    first = [ind.update(*r) for r in data]
    assert ind.ready
    ind.reset()
    assert not ind.ready and math.isnan(ind.value)
    again = [ind.update(*r) for r in data]
    assert np.array_equal(first, again, equal_nan=True)


# --- properties: compiled == pure, batch == streaming ----------------------------------------------

prices = st.lists(
    st.floats(min_value=1.0, max_value=1000.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=80
)
small = st.integers(min_value=1, max_value=12)


def _ns_stream(
    ns: SimpleNamespace,
    name: str,
    kwargs: dict[str, Any],
    data: list[tuple[float, ...]],
    attrs: tuple[str, ...],
) -> list[Arr]:
    ind = getattr(ns, name)(**kwargs)
    return stream(ind, *zip(*data, strict=True), attrs=attrs) if data else []


ATTRS: dict[str, tuple[str, ...]] = {
    "MACD": ("macd", "signal", "hist", "value"),
    "Bollinger": ("upper", "middle", "lower", "percent_b", "bandwidth", "value"),
    "Supertrend": ("value", "direction", "upper", "lower"),
    "Donchian": ("upper", "middle", "lower", "value"),
    "WaveTrend": ("wt1", "wt2", "value"),
}


@settings(max_examples=40, deadline=None)
@given(series=prices, p1=small, p2=small, p3=small)
def test_property_compiled_equals_pure_for_every_indicator(
    compiled: SimpleNamespace, pure: SimpleNamespace, series: list[float], p1: int, p2: int, p3: int
) -> None:
    configs: dict[str, dict[str, Any]] = {
        "SMA": {"period": p1},
        "EMA": {"period": p1},
        "WMA": {"period": p1},
        "StdDev": {"period": p1},
        "RSI": {"period": p1},
        "ATR": {"period": p1},
        "MACD": {"fast": p1, "slow": p1 + p2, "signal": p3},
        "Bollinger": {"period": p1, "k": 1.0 + p2 / 4},
        "VWAP": {},
        "Supertrend": {"period": p1, "k": p2 / 3},
        "Donchian": {"period": p1},
        "OBV": {},
        "WaveTrend": {"channel": p1, "average": p2, "signal": p3},
    }
    for name, kwargs in configs.items():
        data = rows(series, FACTORIES[name][1])
        attrs = ATTRS.get(name, ("value",))
        for g, w in zip(
            _ns_stream(compiled, name, kwargs, data, attrs),
            _ns_stream(pure, name, kwargs, data, attrs),
            strict=True,
        ):
            assert_same(g, w)
        assert getattr(compiled, name)(**kwargs).ready is False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(series=prices, p1=small, p2=small, p3=small)
def test_property_batch_equals_streaming(
    impl: SimpleNamespace, series: list[float], p1: int, p2: int, p3: int
) -> None:
    x = np.array(series)
    h, lo = x + 1.0, x - 1.0
    v = np.abs(x) % 7 + 0.5

    def s(name: str, kwargs: dict[str, Any], *cols: Arr, attrs: tuple[str, ...] = ("value",)) -> list[Arr]:
        return stream(getattr(impl, name)(**kwargs), *cols, attrs=attrs)

    checks: list[tuple[Any, list[Arr]]] = [
        (impl.sma_batch(x, p1), s("SMA", {"period": p1}, x)),
        (impl.ema_batch(x, p1), s("EMA", {"period": p1}, x)),
        (impl.wma_batch(x, p1), s("WMA", {"period": p1}, x)),
        (impl.stddev_batch(x, p1), s("StdDev", {"period": p1}, x)),
        (impl.rsi_batch(x, p1), s("RSI", {"period": p1}, x)),
        (impl.atr_batch(h, lo, x, p1), s("ATR", {"period": p1}, h, lo, x)),
        (
            impl.macd_batch(x, p1, p1 + p2, p3),
            s("MACD", {"fast": p1, "slow": p1 + p2, "signal": p3}, x, attrs=("macd", "signal", "hist")),
        ),
        (
            impl.bollinger_batch(x, p1, 1.5),
            s("Bollinger", {"period": p1, "k": 1.5}, x, attrs=("upper", "middle", "lower")),
        ),
        (impl.obv_batch(x, v), s("OBV", {}, x, v)),
        (impl.vwap_batch(x, v), s("VWAP", {}, x, v)),
        (
            impl.donchian_batch(h, lo, p1),
            s("Donchian", {"period": p1}, h, lo, attrs=("upper", "middle", "lower")),
        ),
        (
            impl.wavetrend_batch(x, p1, p2, p3),
            s("WaveTrend", {"channel": p1, "average": p2, "signal": p3}, x, attrs=("wt1", "wt2")),
        ),
    ]
    st_line, st_dir = impl.supertrend_batch(h, lo, x, p1, 2.0)
    line, direction = s("Supertrend", {"period": p1, "k": 2.0}, h, lo, x, attrs=("value", "direction"))
    direction[np.isnan(line)] = NAN
    checks.append(((st_line, st_dir), [line, direction]))
    for batch, streamed in checks:
        outs = batch if isinstance(batch, tuple) else (batch,)
        for b, w in zip(outs, streamed, strict=True):
            assert np.array_equal(b, w, equal_nan=True)
