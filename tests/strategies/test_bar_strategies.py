"""The bar-driven built-ins: each emits exactly the signals its rule predicts from the indicator values
(a reference computed with the kernels' batch functions), none otherwise; parameters are validated."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import kernels as _kernels
from engine.strategies import (
    BollingerBreakout,
    MacdRsi,
    RsiReversion,
    StrategyParamError,
    SupertrendStrategy,
    create,
)
from engine.types import OrderType, Side

from .helpers import BTC, bar, bars_from_closes, feed, fill, trade

kernels: Any = _kernels

walks = st.lists(st.floats(min_value=-3.0, max_value=3.0, allow_nan=False), min_size=30, max_size=160).map(
    lambda steps: [100.0 + float(x) for x in np.cumsum(steps)]
)


def sides(got: dict[int, list[Any]]) -> dict[int, Side]:
    out = {}
    for i, sigs in got.items():
        assert len(sigs) == 1 and not sigs[0].reduce_only  # flat all along: entries only
        out[i] = sigs[0].side
    return out


# ---- reference models --------------------------------------------------------------------------------


def ref_macd_rsi(closes: list[float], p: dict[str, Any]) -> dict[int, Side]:
    _m, _s, hist = kernels.macd_batch(closes, p["fast"], p["slow"], p["signal"])
    rsi = kernels.rsi_batch(closes, p["rsi_period"])
    out: dict[int, Side] = {}
    prev = None
    for i in range(len(closes)):
        if math.isnan(hist[i]) or math.isnan(rsi[i]):
            continue
        if prev is not None:
            if prev <= 0.0 < hist[i] and rsi[i] < p["rsi_overbought"]:
                out[i] = Side.BUY
            elif prev >= 0.0 > hist[i] and rsi[i] > p["rsi_oversold"]:
                out[i] = Side.SELL
        prev = hist[i]
    return out


def ref_supertrend(bars: list[Any], period: int, k: float) -> dict[int, Side]:
    _line, direction = kernels.supertrend_batch(
        [b.high for b in bars], [b.low for b in bars], [b.close for b in bars], period, k
    )
    out: dict[int, Side] = {}
    prev = 0.0
    for i, d in enumerate(direction):
        if math.isnan(d):
            continue
        if prev != 0.0 and d != prev:
            out[i] = Side.BUY if d > 0 else Side.SELL
        prev = d
    return out


def ref_rsi_reversion(closes: list[float], period: int, lo: float, hi: float) -> dict[int, Side]:
    rsi = kernels.rsi_batch(closes, period)
    out: dict[int, Side] = {}
    prev = None
    for i, r in enumerate(rsi):
        if math.isnan(r):
            continue
        if prev is not None:
            if prev >= lo > r:
                out[i] = Side.BUY
            elif prev <= hi < r:
                out[i] = Side.SELL
        prev = r
    return out


def ref_bollinger(closes: list[float], period: int, k: float) -> dict[int, Side]:
    up, _mid, lo = kernels.bollinger_batch(closes, period, k)
    out: dict[int, Side] = {}
    for i in range(1, len(closes)):
        if math.isnan(up[i]) or math.isnan(up[i - 1]):
            continue
        if closes[i - 1] <= up[i - 1] and closes[i] > up[i]:
            out[i] = Side.BUY
        elif closes[i - 1] >= lo[i - 1] and closes[i] < lo[i]:
            out[i] = Side.SELL
    return out


# ---- signals equal the rule, none otherwise -------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(walks)
def test_macd_rsi_when_random_walk_then_signals_exactly_at_filtered_histogram_crosses(
    closes: list[float],
) -> None:
    p = {"fast": 5, "slow": 13, "signal": 4, "rsi_period": 6, "rsi_overbought": 80.0, "rsi_oversold": 20.0}
    s = MacdRsi(params=p, symbols=[BTC])
    assert sides(feed(s, bars_from_closes(closes))) == ref_macd_rsi(closes, p)


@settings(max_examples=40, deadline=None)
@given(walks)
def test_supertrend_when_random_walk_then_signals_exactly_at_direction_flips(closes: list[float]) -> None:
    bars = bars_from_closes(closes)
    s = SupertrendStrategy(params={"period": 5, "multiplier": 1.5}, symbols=[BTC])
    assert sides(feed(s, bars)) == ref_supertrend(bars, 5, 1.5)


@settings(max_examples=40, deadline=None)
@given(walks)
def test_rsi_reversion_when_flat_then_entries_exactly_where_rsi_enters_a_zone(closes: list[float]) -> None:
    s = RsiReversion(params={"rsi_period": 5, "oversold": 35, "overbought": 65}, symbols=[BTC])
    assert sides(feed(s, bars_from_closes(closes))) == ref_rsi_reversion(closes, 5, 35.0, 65.0)


@settings(max_examples=40, deadline=None)
@given(walks)
def test_bollinger_when_flat_then_entries_exactly_at_band_breakouts(closes: list[float]) -> None:
    s = BollingerBreakout(params={"period": 8, "k": 1.5}, symbols=[BTC])
    assert sides(feed(s, bars_from_closes(closes))) == ref_bollinger(closes, 8, 1.5)


# ---- crafted sequences ------------------------------------------------------------------------------------


def test_supertrend_when_fall_then_rise_then_one_buy_and_nothing_before() -> None:
    closes = [100.0 - i for i in range(20)] + [81.0 + 2 * i for i in range(20)]
    s = SupertrendStrategy(params={"period": 5, "multiplier": 2.0}, symbols=[BTC])
    got = feed(s, bars_from_closes(closes))
    assert [(i, sig.side) for i, sigs in got.items() for sig in sigs] == [(min(got), Side.BUY)]
    assert min(got) > 20


def test_macd_rsi_when_prices_constant_then_no_signal() -> None:
    s = MacdRsi(params={}, symbols=[BTC])
    assert feed(s, bars_from_closes([100.0] * 200)) == {}


def test_rsi_reversion_when_long_and_rsi_recovers_then_reduce_only_exit() -> None:
    s = RsiReversion(
        params={"rsi_period": 3, "oversold": 30, "overbought": 70, "exit_level": 50}, symbols=[BTC]
    )
    closes = [100.0, 101.0, 102.0, 103.0, 104.0, 90.0]
    got = feed(s, bars_from_closes(closes))
    assert [sig.side for sig in got[5]] == [Side.BUY]
    s.on_fill(fill(Side.BUY, "2"))
    out = s.on_bar(*BTC, bar(6, 110.0))
    assert len(out) == 1 and out[0].reduce_only and out[0].side is Side.SELL and out[0].qty == Decimal("2")


def test_bar_strategy_when_holding_opposite_side_then_close_first_then_entry() -> None:
    closes = [100.0 - i for i in range(20)] + [81.0 + 2 * i for i in range(20)]
    s = SupertrendStrategy(params={"period": 5, "multiplier": 2.0}, symbols=[BTC])
    s.on_fill(fill(Side.SELL, "3"))
    got = feed(s, bars_from_closes(closes))
    (sigs,) = got.values()
    assert [(x.side, x.reduce_only, x.qty) for x in sigs] == [
        (Side.BUY, True, Decimal(3)),
        (Side.BUY, False, None),
    ]


def test_bar_strategy_when_already_long_then_buy_verdict_is_silent() -> None:
    closes = [100.0 - i for i in range(20)] + [81.0 + 2 * i for i in range(20)]
    s = SupertrendStrategy(params={"period": 5, "multiplier": 2.0}, symbols=[BTC])
    s.on_fill(fill(Side.BUY, "1"))
    assert feed(s, bars_from_closes(closes)) == {}


def test_bar_strategy_when_fed_trades_then_entry_has_decimal_stop_and_target_from_last_trade() -> None:
    s = SupertrendStrategy(
        params={"period": 3, "multiplier": 1.0, "stop_bps": 100, "take_profit_bps": 200, "qty": "0.5"},
        symbols=[BTC],
    )
    prices = [f"{100 - i}.1" for i in range(8)] + [f"{93 + 3 * i}.1" for i in range(8)] + ["200.1"]
    entry = None
    for i, p in enumerate(prices):
        out = s.on_trade(trade(p, i * 1000 + 10, tid=i))
        if out:
            entry, px = out[-1], Decimal(p)  # the trade that opened the next bar closed the deciding one
            break
    assert entry is not None and not entry.reduce_only
    assert entry.side is Side.BUY and entry.type is OrderType.MARKET and entry.qty == Decimal("0.5")
    assert entry.stop_loss == px - px * 100 / Decimal(10_000)
    assert entry.take_profit == px + px * 200 / Decimal(10_000)


def test_bar_strategy_when_symbol_not_configured_then_ignored() -> None:
    s = SupertrendStrategy(params={}, symbols=[BTC])
    assert s.on_bar(BTC[0], "XRPUSDT", bar(0, 1.0)) == []


# ---- parameters --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "bad"),
    [
        ("macd_rsi", {"fast": 26, "slow": 12}, "fast"),
        ("macd_rsi", {"signal": 0}, "signal"),
        ("macd_rsi", {"rsi_oversold": 80, "rsi_overbought": 70}, "rsi_oversold"),
        ("macd_rsi", {"fast": "12"}, "fast"),
        ("supertrend", {"multiplier": 0}, "multiplier"),
        ("supertrend", {"period": True}, "period"),
        ("rsi_reversion", {"exit_level": 80}, "exit_level"),
        ("rsi_reversion", {"oversold": 70, "overbought": 30}, "oversold"),
        ("bollinger_breakout", {"k": -1.0}, "k"),
        ("bollinger_breakout", {"exit_at_middle": "yes"}, "exit_at_middle"),
        ("bollinger_breakout", {"period": 1}, "period"),
        ("supertrend", {"qty": 0.1}, "qty"),
        ("supertrend", {"bar_ms": 10}, "bar_ms"),
        ("supertrend", {"perod": 10}, "perod"),
    ],
)
def test_params_when_invalid_then_error_names_the_param(name: str, params: dict[str, Any], bad: str) -> None:
    with pytest.raises(StrategyParamError) as info:
        create(name, params=params, symbols=[BTC])
    assert info.value.param == bad
