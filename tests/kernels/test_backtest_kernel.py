"""ReplayLoop (the backtester's fast-path loop): each implementation against the pure twin, same arrays.

The oracle is ``engine._pure.backtest.ReplayLoop`` over pure books and bar builders; the implementation
under test runs over its own books and bars. Every stop point (the returned step index, ``sample_due``,
``next_sample``, ``last_trades()``), every handler call, every bar and the full books after each stop
must be equal.
"""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engine.backtest.sources import EVENT_DTYPE, K_ASK, K_BID, K_SNAP_ASK, K_SNAP_BID, MarketData, synthetic
from engine.kernels import load
from engine.venue.instruments import load_instruments, load_start_prices

BIG = 2**62


def _data() -> MarketData:
    specs = load_instruments()
    chosen = [specs["BTCUSDT"], specs["ETHUSDT"]]
    prices = load_start_prices(None, {s.symbol: s for s in chosen})
    return synthetic(chosen, seed=5, events=6000, start_prices=prices)


_DATA = _data()
_ROWS, _STEPS = _DATA.decode()


class _Recorder:
    """Records every call; asks to come back on every ``every``-th trade / bar batch / book message."""

    def __init__(self, books: list[Any], *, every: int) -> None:
        self.books = books
        self.every = every
        self.calls: list[tuple[Any, ...]] = []
        self.n = 0

    def _ask(self) -> bool:
        self.n += 1
        return self.n % self.every == 0

    def on_trade_event(self, sym: int, t: int, px: int, lots: int, is_buy: bool) -> bool:
        self.calls.append(("trade", sym, t, px, lots, is_buy))
        return self._ask()

    def on_bars(self, sym: int, bars: list[Any]) -> bool:
        for b in bars:
            self.calls.append(
                ("bar", sym, b.open_time_ms, b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap)
            )
        return self._ask()

    def on_book_event(self, sym: int, t: int) -> bool:
        self.calls.append(("book", sym, t, self.books[sym].touch_ticks()))
        return self._ask()

    def on_sample(self, t: int) -> int:
        self.calls.append(("sample", t))
        return (t // 1000 + 1) * 1000


def _book_state(book: Any) -> tuple[Any, ...]:
    return (book.levels_ticks("bid", book.bid_count), book.levels_ticks("ask", book.ask_count))


def _replay(
    ns: SimpleNamespace, *, bars: bool, want_trades: bool, want_book: bool, band: int, every: int
) -> list[tuple[Any, ...]]:
    """Run the loop to the end, re-entering at each stop as the runner does; the log of everything."""
    specs = [_DATA.specs[s] for s in _DATA.symbols]
    books = [ns.OrderBook(tick_size=str(s.tick_size), lot_size=str(s.lot_size)) for s in specs]
    builders = [ns.BarBuilder(interval_ms=1000) for _ in specs] if bars else None
    h = _Recorder(books, every=every)
    loop = ns.ReplayLoop(books=books, bars=builders, handler=h, want_trades=want_trades, want_book=want_book)
    nsteps = len(_STEPS) - 1
    lo, hi = [-BIG] * len(books), [BIG] * len(books)
    k, next_time, next_sample = 0, int(_ROWS["t"][0]) + 2500, 0
    log: list[tuple[Any, ...]] = []
    while k < nsteps:
        k = loop.run(_ROWS, _STEPS, k, nsteps, lo, hi, next_time, next_sample)
        t = int(_ROWS["t"][_STEPS[k - 1]])
        next_sample = loop.next_sample
        if loop.sample_due:
            next_sample = h.on_sample(t)
        if t >= next_time:
            next_time = t + 2500
        log.append((k, loop.sample_due, next_sample, loop.last_trades(), [_book_state(b) for b in books]))
        for s, b in enumerate(books):  # a band of +-band ticks around the current mark
            bb, _, ba, _ = b.touch_ticks()
            mk = (bb + ba) // 2
            lo[s], hi[s] = mk - band, mk + band
    log.append(("calls", h.calls))
    if builders is not None:
        log.append(("bar_counts", [b.count for b in builders]))
    return log


CASES = [
    pytest.param({"bars": False, "want_trades": True, "want_book": False}, id="trades"),
    pytest.param({"bars": True, "want_trades": False, "want_book": False}, id="bars"),
    pytest.param({"bars": False, "want_trades": False, "want_book": True}, id="book"),
    pytest.param({"bars": True, "want_trades": True, "want_book": True}, id="all"),
]


@pytest.mark.parametrize("mode", CASES)
@pytest.mark.parametrize(("band", "every"), [(3, 7), (40, 1000), (BIG // 4, 10**9)])
def test_when_replayed_then_stop_points_books_bars_and_calls_equal_the_twin(
    impl: SimpleNamespace, mode: dict[str, bool], band: int, every: int
) -> None:
    got = _replay(impl, band=band, every=every, **mode)
    want = _replay(load("pure"), band=band, every=every, **mode)
    assert len(got) > 2  # it stopped on bands, times, samples and asks, not only at the end
    assert got == want


def test_when_bars_mode_without_want_trades_then_handler_never_sees_trades_but_last_trades_do(
    impl: SimpleNamespace,
) -> None:
    log = _replay(impl, bars=True, want_trades=False, want_book=False, band=BIG // 4, every=10**9)
    calls = next(x[1] for x in log if x[0] == "calls")
    assert not [c for c in calls if c[0] == "trade"]
    assert [c for c in calls if c[0] == "bar"]
    stops = [x for x in log if isinstance(x[0], int)]
    seen = [lt for x in stops for lt in x[3] if lt is not None]
    trade_rows = _ROWS[(_ROWS["kind"] == 2) | (_ROWS["kind"] == 3)]
    assert seen and seen[-1][0] <= int(trade_rows["t"][-1])
    assert (int(trade_rows["t"][-1]), int(trade_rows["px"][-1])) in stops[-1][3]


Arrays = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


def _rows(spec: list[tuple[int, int, int, int, int, int]]) -> Arrays:
    rows = np.array(spec, dtype=[(n, "<i8") for n in ("t", "px", "qty", "sym", "kind", "end")]).astype(
        EVENT_DTYPE
    )
    bounds = [0] + [i for i in range(1, len(spec)) if spec[i][0] != spec[i - 1][0]] + [len(spec)]
    return rows, np.asarray(bounds, dtype=np.int64)


def _loop(ns: SimpleNamespace, nbooks: int = 1) -> tuple[Any, list[Any], _Recorder]:
    books = [ns.OrderBook(tick_size="0.1", lot_size="0.001") for _ in range(nbooks)]
    h = _Recorder(books, every=10**9)
    return ns.ReplayLoop(books=books, bars=None, handler=h, want_trades=True, want_book=True), books, h


def test_when_a_message_would_cross_the_book_then_value_error_and_that_message_is_not_applied(
    impl: SimpleNamespace,
) -> None:
    rows, steps = _rows(
        [
            (1000, 100, 5, 0, K_SNAP_BID, 0),
            (1000, 101, 5, 0, K_SNAP_ASK, 1),
            (1100, 99, 7, 0, K_BID, 0),
            (1100, 100, 1, 0, K_ASK, 1),  # ask 100 <= bid 100: crossed
        ]
    )
    loop, books, _ = _loop(impl)
    with pytest.raises(ValueError, match="cross"):
        loop.run(rows, steps, 0, len(steps) - 1, [-BIG], [BIG], BIG, BIG)
    assert books[0].levels_ticks("bid", 5) == [(100, 5)]
    assert books[0].levels_ticks("ask", 5) == [(101, 5)]


def test_when_a_message_has_more_levels_than_the_staging_then_it_grows_and_applies_whole(
    impl: SimpleNamespace,
) -> None:
    n = 300
    spec = [(1000, 1000 - i, i + 1, 0, K_SNAP_BID, 0) for i in range(n)]
    spec += [(1000, 1001 + i, i + 1, 0, K_SNAP_ASK, 0) for i in range(n)]
    spec[-1] = (*spec[-1][:5], 1)
    rows, steps = _rows(spec)
    loop, books, _ = _loop(impl)
    assert loop.run(rows, steps, 0, 1, [-BIG], [BIG], BIG, BIG) == 1
    assert books[0].bid_count == n and books[0].ask_count == n
    assert books[0].touch_ticks() == (1000, 1, 1001, 1)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sym": 3}, "symbol index 3"),
        ({"kind": 9}, "unknown kind 9"),
    ],
)
def test_when_a_row_is_malformed_then_value_error_names_it(
    impl: SimpleNamespace, change: dict[str, int], needle: str
) -> None:
    rows, steps = _rows([(1000, 100, 5, 0, K_SNAP_BID, 0), (1000, 101, 5, 0, K_SNAP_ASK, 1)])
    for field, value in change.items():
        rows[field][1] = value
    loop, _, _ = _loop(impl)
    with pytest.raises(ValueError, match=needle):
        loop.run(rows, steps, 0, 1, [-BIG], [BIG], BIG, BIG)


def test_when_steps_or_bands_do_not_fit_then_value_error(impl: SimpleNamespace) -> None:
    rows, steps = _rows([(1000, 100, 5, 0, K_SNAP_BID, 0), (1000, 101, 5, 0, K_SNAP_ASK, 1)])
    loop, _, _ = _loop(impl)
    with pytest.raises(ValueError, match="lo/hi"):
        loop.run(rows, steps, 0, 1, [-BIG, 0], [BIG], BIG, BIG)
    with pytest.raises(ValueError, match="steps"):
        loop.run(rows, steps, 0, 5, [-BIG], [BIG], BIG, BIG)
    with pytest.raises(ValueError, match="past the"):
        loop.run(rows[:1], steps, 0, 1, [-BIG], [BIG], BIG, BIG)


def test_when_compiled_loop_gets_pure_books_then_type_error() -> None:
    pure_book = load("pure").OrderBook(tick_size=Decimal("0.1"), lot_size="0.001")
    with pytest.raises(TypeError, match="compiled OrderBook"):
        load("compiled").ReplayLoop(books=[pure_book], bars=None, handler=None, want_trades=False,
                                    want_book=False)  # fmt: skip
