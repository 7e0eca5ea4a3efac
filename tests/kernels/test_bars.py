"""BarBuilder: hand cases, gap fill, rejections, interval bounds; compiled and pure against each other
and against a plain-Python oracle."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels import load

FIELDS = (
    "open_time_ms",
    "close_time_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "vwap",
    "quote_volume",
)

IMPLS = {"compiled": load("compiled"), "pure": load("pure")}


def fields(bar: Any) -> tuple[Any, ...]:
    return tuple(getattr(bar, name) for name in FIELDS)


def all_fields(bars: list[Any]) -> list[tuple[Any, ...]]:
    return [fields(bar) for bar in bars]


def feed(builder: Any, trades: list[tuple[int, float, float]]) -> list[Any]:
    out: list[Any] = []
    for ts, price, size in trades:
        out.extend(builder.update(ts, price, size))
    return out


# --- hand cases -------------------------------------------------------------------------------------


def test_update_when_trades_in_one_interval_then_no_bar_and_current_aggregates(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    assert b.update(1_000, 100.0, 1.0) == []
    assert b.update(1_400, 102.0, 2.0) == []
    assert b.update(1_999, 99.0, 1.0) == []
    cur = b.current
    assert fields(cur) == (1000, 2000, 100.0, 102.0, 99.0, 99.0, 4.0, 3, 403.0 / 4.0, 403.0)
    assert b.count == 0


def test_update_when_next_interval_then_previous_bar_emitted(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    b.update(1_000, 100.0, 1.0)
    b.update(1_500, 101.0, 3.0)
    out = b.update(2_000, 105.0, 1.0)
    assert all_fields(out) == [(1000, 2000, 100.0, 101.0, 100.0, 101.0, 4.0, 2, 403.0 / 4.0, 403.0)]
    assert b.count == 1
    assert fields(b.current) == (2000, 3000, 105.0, 105.0, 105.0, 105.0, 1.0, 1, 105.0, 105.0)


def test_update_when_bars_then_aligned_to_epoch_multiples(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=60_000)
    b.update(1_700_000_052_345, 10.0, 1.0)
    assert b.current.open_time_ms == 1_700_000_040_000
    assert b.current.close_time_ms == 1_700_000_100_000
    day = impl.BarBuilder(interval_ms=86_400_000)
    day.update(1_700_000_052_345, 10.0, 1.0)
    assert day.current.open_time_ms == 1_699_920_000_000  # 2023-11-14T00:00:00Z


def test_update_when_trade_jumps_intervals_then_flat_bars_fill_gap(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    b.update(500, 10.0, 1.0)
    b.update(900, 12.0, 1.0)
    out = b.update(3_100, 20.0, 1.0)
    assert all_fields(out) == [
        (0, 1000, 10.0, 12.0, 10.0, 12.0, 2.0, 2, 11.0, 22.0),
        (1000, 2000, 12.0, 12.0, 12.0, 12.0, 0.0, 0, 12.0, 0.0),
        (2000, 3000, 12.0, 12.0, 12.0, 12.0, 0.0, 0, 12.0, 0.0),
    ]
    assert b.count == 3
    assert b.current.open_time_ms == 3000


def test_update_when_trade_out_of_order_then_rejected_and_counted(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    b.update(5_200, 10.0, 1.0)
    before = fields(b.current)
    assert b.update(4_999, 50.0, 9.0) == []
    assert b.rejected_out_of_order == 1
    assert fields(b.current) == before
    assert b.count == 0


def test_update_when_earlier_trade_within_current_interval_then_accepted(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    b.update(5_800, 10.0, 1.0)
    assert b.update(5_100, 8.0, 1.0) == []
    assert b.rejected_out_of_order == 0
    assert fields(b.current) == (5000, 6000, 10.0, 10.0, 8.0, 8.0, 2.0, 2, 9.0, 18.0)


@pytest.mark.parametrize(
    ("ts", "price", "size"),
    [
        (1_000, math.nan, 1.0),
        (1_000, math.inf, 1.0),
        (1_000, -1.0, 1.0),
        (1_000, 10.0, math.nan),
        (1_000, 10.0, -math.inf),
        (1_000, 10.0, -0.5),
        (-1, 10.0, 1.0),
    ],
)
def test_update_when_trade_invalid_then_rejected_and_counted(
    impl: SimpleNamespace, ts: int, price: float, size: float
) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    b.update(1_000, 10.0, 1.0)
    before = fields(b.current)
    assert b.update(ts, price, size) == []
    assert b.rejected_invalid == 1
    assert b.rejected_out_of_order == 0
    assert fields(b.current) == before


def test_update_when_zero_size_only_then_vwap_is_close(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    b.update(0, 10.0, 0.0)
    b.update(10, 11.0, 0.0)
    assert fields(b.current) == (0, 1000, 10.0, 11.0, 10.0, 11.0, 0.0, 2, 11.0, 0.0)


@pytest.mark.parametrize("interval", [999, 0, -1000, 86_400_001])
def test_init_when_interval_out_of_bounds_then_value_error_names_field(
    impl: SimpleNamespace, interval: int
) -> None:
    with pytest.raises(ValueError, match=rf"interval_ms.*{interval}"):
        impl.BarBuilder(interval_ms=interval)


@pytest.mark.parametrize("interval", [1000, 60_000, 86_400_000])
def test_init_when_interval_in_bounds_then_accepted(impl: SimpleNamespace, interval: int) -> None:
    assert impl.BarBuilder(interval_ms=interval).interval_ms == interval
    assert impl.BarBuilder().interval_ms == 60_000


def test_flush_when_bar_open_then_returned_without_closing(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    assert b.flush() is None
    assert b.current is None
    b.update(100, 10.0, 1.0)
    first = b.flush()
    assert fields(first) == fields(b.current)
    b.update(200, 11.0, 1.0)
    assert b.count == 0
    assert fields(b.flush()) == (0, 1000, 10.0, 11.0, 10.0, 11.0, 2.0, 2, 10.5, 21.0)
    assert first.close == 10.0  # the earlier snapshot did not change


def test_close_current_when_bar_open_then_emitted_and_later_gap_filled(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000)
    assert b.close_current() is None
    b.update(100, 10.0, 1.0)
    closed = b.close_current()
    assert fields(closed) == (0, 1000, 10.0, 10.0, 10.0, 10.0, 1.0, 1, 10.0, 10.0)
    assert b.count == 1
    assert b.current is None
    assert b.close_current() is None
    # a trade in the closed interval is now out of order
    assert b.update(900, 11.0, 1.0) == []
    assert b.rejected_out_of_order == 1
    out = b.update(2_500, 12.0, 1.0)
    assert all_fields(out) == [(1000, 2000, 10.0, 10.0, 10.0, 10.0, 0.0, 0, 10.0, 0.0)]
    assert b.count == 2


def test_update_when_gap_exceeds_max_fill_bars_then_no_flat_bars_and_counted(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=1000, max_fill_bars=2)
    b.update(0, 10.0, 1.0)
    assert len(b.update(3_000, 11.0, 1.0)) == 3  # bar + 2 flat: exactly the limit
    out = b.update(7_000, 12.0, 1.0)  # would need 3 flat bars
    assert all_fields(out) == [(3000, 4000, 11.0, 11.0, 11.0, 11.0, 1.0, 1, 11.0, 11.0)]
    assert b.skipped_gaps == 1
    assert b.count == 4
    assert b.current.open_time_ms == 7000


def test_init_when_max_fill_bars_negative_then_value_error(impl: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="max_fill_bars"):
        impl.BarBuilder(interval_ms=1000, max_fill_bars=-1)


def test_bar_when_compared_then_equal_by_fields_hashable_and_immutable(impl: SimpleNamespace) -> None:
    args = (0, 1000, 1.0, 2.0, 0.5, 1.5, 3.0, 4, 1.25, 3.75)
    a, b = impl.Bar(*args), impl.Bar(*args)
    assert a == b
    assert hash(a) == hash(b)
    assert a != impl.Bar(*args[:-1], 3.5)
    assert "Bar(open_time_ms=0, close_time_ms=1000, open=1.0" in repr(a)
    with pytest.raises(AttributeError):
        a.close = 9.0  # type: ignore[misc]


def test_repr_when_builder_then_shows_interval_and_counters(impl: SimpleNamespace) -> None:
    b = impl.BarBuilder(interval_ms=5000)
    b.update(1, 1.0, 1.0)
    b.update(-5, 1.0, 1.0)
    assert repr(b) == "BarBuilder(interval_ms=5000, count=0, rejected_out_of_order=0, rejected_invalid=1)"


# --- property tests ---------------------------------------------------------------------------------


@dataclass
class _OBar:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote: float
    trades: int


def oracle(trades: list[tuple[int, float, float]], interval: int) -> tuple[list[tuple[Any, ...]], Any, int]:
    """Plain grouping by ts // interval (arrival order within a bar), rejecting trades whose interval is
    before the latest accepted one, and filling empty intervals with flat bars."""
    groups: dict[int, _OBar] = {}
    latest = -1
    rejected = 0
    for ts, price, size in trades:
        start = ts // interval * interval
        if start < latest:
            rejected += 1
            continue
        latest = start
        g = groups.get(start)
        if g is None:
            groups[start] = _OBar(start, price, price, price, price, size, price * size, 1)
        else:
            g.high = max(g.high, price)
            g.low = min(g.low, price)
            g.close = price
            g.volume += size
            g.quote += price * size
            g.trades += 1
    bars: list[tuple[Any, ...]] = []
    starts = sorted(groups)
    for i, start in enumerate(starts):
        g = groups[start]
        vwap = g.quote / g.volume if g.volume > 0 else g.close
        bars.append(
            (start, start + interval, g.open, g.high, g.low, g.close, g.volume, g.trades, vwap, g.quote)
        )
        if i + 1 < len(starts):
            t = start + interval
            while t < starts[i + 1]:
                c = g.close
                bars.append((t, t + interval, c, c, c, c, 0.0, 0, c, 0.0))
                t += interval
    current = bars.pop() if bars else None
    return bars, current, rejected


prices = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
sizes = st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False)
trade_lists = st.lists(st.tuples(st.integers(min_value=0, max_value=40_000), prices, sizes), max_size=120)
intervals = st.sampled_from([1000, 2000, 5000, 60_000])


def _run(ns: SimpleNamespace, interval: int, trades: list[tuple[int, float, float]]) -> tuple[Any, ...]:
    b = ns.BarBuilder(interval_ms=interval)
    out = all_fields(feed(b, trades))
    cur = b.current
    return out, None if cur is None else fields(cur), b.count, b.rejected_out_of_order, b.rejected_invalid


@settings(max_examples=150, deadline=None)
@given(trades=trade_lists, interval=intervals, shuffle_seed=st.integers(0, 2**32), shuffled=st.booleans())
def test_update_when_random_trades_then_compiled_pure_and_oracle_agree(
    trades: list[tuple[int, float, float]], interval: int, shuffle_seed: int, shuffled: bool
) -> None:
    if shuffled:
        random.Random(shuffle_seed).shuffle(trades)
    else:
        trades.sort(key=lambda t: t[0])
    compiled = _run(IMPLS["compiled"], interval, trades)
    pure = _run(IMPLS["pure"], interval, trades)
    assert compiled == pure
    bars, current, rejected = oracle(trades, interval)
    out, cur, count, rej_ooo, rej_invalid = compiled
    assert out == bars
    assert cur == current
    assert count == len(bars)
    assert rej_ooo == rejected
    assert rej_invalid == 0
    if not shuffled:
        assert rej_ooo == 0


@settings(max_examples=60, deadline=None)
@given(
    trades=st.lists(
        st.tuples(
            st.integers(min_value=-10, max_value=20_000),
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.floats(allow_nan=True, allow_infinity=True, width=64),
        ),
        max_size=60,
    )
)
def test_update_when_arbitrary_floats_then_compiled_and_pure_agree(
    trades: list[tuple[int, float, float]],
) -> None:
    compiled = _run(IMPLS["compiled"], 1000, trades)
    pure = _run(IMPLS["pure"], 1000, trades)
    assert repr(compiled) == repr(pure)  # repr: huge price * size overflows to inf and vwap to NaN
