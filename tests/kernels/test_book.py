"""OrderBook: exact parsing, atomic updates, crossing rejection and every read, on both implementations."""

from __future__ import annotations

import random
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.kernels import load

D = Decimal


def _book(impl: SimpleNamespace, tick: str = "0.10", lot: str = "0.001") -> Any:
    return impl.OrderBook(tick_size=tick, lot_size=lot)


def _state(book: Any) -> tuple[list[Any], list[Any]]:
    return book.levels_ticks("bid", 10**6), book.levels_ticks("ask", 10**6)


@pytest.fixture
def book(impl: SimpleNamespace) -> Any:
    b = _book(impl)
    b.apply_snapshot(
        [["65000.10", "1.500"], ["65000.0", "2"], ["64999.50", "0.25"]],
        [["65000.20", "0.5"], ["65000.30", "1.000"], ["65001", "3"]],
    )
    return b


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "ticks"),
    [
        ("65000.10", 650001),
        ("65000.1", 650001),
        ("65000", 650000),
        ("65000.", 650000),
        ("065000.100000000", 650001),
        ("0", 0),
        ("0.0", 0),
        (".5", 5),
        (b"65000.10", 650001),
        ("922337203685477580.7", 2**63 - 1),
    ],
)
def test_price_to_ticks_when_plain_decimal_then_exact(impl: SimpleNamespace, text: Any, ticks: int) -> None:
    assert _book(impl).price_to_ticks(text) == ticks


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("65000.15", "not a multiple of tick 0.10"),
        ("65000.100001", "not a multiple of tick 0.10"),
        ("", "is empty"),
        ("-1", "is negative"),
        ("1e5", "exponent"),
        ("1E5", "exponent"),
        ("abc", "not a plain decimal"),
        (".", "not a plain decimal"),
        ("1.2.3", "not a plain decimal"),
        (" 1", "not a plain decimal"),
        ("+1", "not a plain decimal"),
        ("\uff11", "not a plain decimal"),
        ("922337203685477580.8", "overflows"),
        ("99999999999999999999999999", "overflows"),
    ],
)
def test_price_to_ticks_when_bad_then_value_error_names_value(
    impl: SimpleNamespace, text: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why) as info:
        _book(impl).price_to_ticks(text)
    assert repr(text) in str(info.value)


def test_sizes_when_trailing_zeros_and_fine_ticks_then_exact(impl: SimpleNamespace) -> None:
    b = _book(impl, tick="0.0000001", lot="0.00000001")
    b.apply_snapshot([["4.00000000", "431.00000000"]], [["4.00000200", "12.00000000"]])
    assert b.best_bid_ticks() == (40000000, 43100000000)
    assert b.best_ask_ticks() == (40000020, 1200000000)
    assert b.best_ask() == (D("4.0000020"), D("12.00000000"))


def test_constructor_when_bad_grid_then_value_error(impl: SimpleNamespace) -> None:
    for tick in ("0", "-0.1", "abc", "NaN"):
        with pytest.raises(ValueError, match="tick_size"):
            impl.OrderBook(tick_size=tick, lot_size="1")
    with pytest.raises(ValueError, match="lot_size"):
        impl.OrderBook(tick_size="0.1", lot_size=0.001)
    b = impl.OrderBook(tick_size=D("0.5"), lot_size=D("10"))
    assert (b.tick_size, b.lot_size) == (D("0.5"), D("10"))
    assert b.price_to_ticks("2.5") == 5
    with pytest.raises(ValueError, match=r"not a multiple of tick 0\.5"):
        b.price_to_ticks("2.2")
    b.apply_snapshot([["1", "20"]], [])
    with pytest.raises(ValueError, match=r"bids\[0\]\.size '15' is not a multiple of lot 10"):
        b.apply_update([["1", "15"]], [])


# ------------------------------------------------------------------ atomicity


@pytest.mark.parametrize(
    ("bids", "asks", "field"),
    [
        (
            [["65000.0", "1"], ["65000.15", "1"]],
            [],
            r"bids\[1\]\.price .65000.15. is not a multiple of tick 0\.10$",
        ),
        ([], [["65000.5", "0.0001"]], r"asks\[0\]\.size '0.0001' is not a multiple of lot 0.001$"),
        ([["65000.0", "1"]], [["65002", "-1"]], r"asks\[0\]\.size '-1' is negative"),
        ([["64990", ""]], [], r"bids\[0\]\.size '' is empty"),
        ([["1e3", "1"]], [], r"bids\[0\]\.price '1e3' uses exponent"),
        ([["64990", "1", "x"]], [], r"bids\[0\] .* is not a \[price, size\] pair"),
        ([["64990"]], [], r"bids\[0\] .* is not a \[price, size\] pair"),
        (["64990"], [], r"bids\[0\] .* is not a \[price, size\] pair"),
        ([[64990, "1"]], [], r"bids\[0\]\.price 64990 is not a string"),
        ([["64990", None]], [], r"bids\[0\]\.size None is not a string"),
        ({"64990": "1"}, [], r"bids dict is not a list"),
        ([["64990", "99999999999999999"]], [], r"bids\[0\]\.size .* overflows int64 lots"),
        ([["65000.20", "1"]], [], r"cross"),
        ([], [["65000.10", "1"]], r"cross"),
        ([["65000.0", "0"], ["65000.1", "0"], ["65000.3", "1"]], [["65000.3", "0"]], r"cross"),
    ],
)
def test_apply_update_when_bad_then_raises_and_book_unchanged(
    book: Any, bids: Any, asks: Any, field: str
) -> None:
    before = _state(book)
    with pytest.raises(ValueError, match=field):
        book.apply_update(bids, asks)
    assert _state(book) == before


def test_apply_update_when_cross_after_earlier_changes_then_all_undone(book: Any) -> None:
    before = _state(book)
    with pytest.raises(ValueError, match="cross"):
        book.apply_update(
            [["65000.1", "0"], ["64999.5", "7"], ["64000", "1"], ["65000.2", "1"]],
            [["65000.3", "0"], ["65000.2", "0"], ["65005", "2"], ["65000.2", "4"]],
        )
    assert _state(book) == before


def test_apply_update_when_cross_removed_later_in_message_then_accepted(book: Any) -> None:
    # crossing is judged on the result: a bid at the old ask is fine when the ask goes away too
    book.apply_update([["65000.2", "1"]], [["65000.2", "0"]])
    assert book.best_bid_ticks() == (650002, 1000)
    assert book.best_ask_ticks() == (650003, 1000)


def test_apply_snapshot_when_crossed_or_bad_then_raises_and_book_unchanged(book: Any) -> None:
    before = _state(book)
    with pytest.raises(ValueError, match="crossed"):
        book.apply_snapshot([["100", "1"]], [["100", "1"]])
    with pytest.raises(ValueError, match=r"asks\[1\]\.price"):
        book.apply_snapshot([["100", "1"]], [["101", "1"], ["x", "1"]])
    assert _state(book) == before


def test_apply_snapshot_when_unsorted_duplicates_and_zeros_then_last_wins(impl: SimpleNamespace) -> None:
    b = _book(impl)
    b.apply_snapshot(
        [["10.0", "1"], ["12.0", "1"], ["11.0", "2"], ["12.0", "3"], ["9.0", "0"]],
        (("20.0", "1"), ("15.0", "2"), ("20.0", "0")),
    )
    assert b.levels_ticks("bid", 10) == [(120, 3000), (110, 2000), (100, 1000)]
    assert b.levels_ticks("ask", 10) == [(150, 2000)]


def test_apply_update_when_delete_missing_price_then_ignored(book: Any) -> None:
    before = _state(book)
    book.apply_update([["60000", "0"]], [["70000", "0.000"]])
    assert _state(book) == before


def test_apply_update_when_insert_replace_delete_then_levels_follow(book: Any) -> None:
    book.apply_update(
        [["65000.0", "0"], ["64999.5", "9"], ["64000", "1"]],
        [["65000.20", "0"], ["65000.4", "1"]],
    )
    assert book.levels("bid", 5) == [
        (D("65000.10"), D("1.500")),
        (D("64999.50"), D("9.000")),
        (D("64000.00"), D("1.000")),
    ]
    assert book.levels("ask", 2) == [(D("65000.30"), D("1.000")), (D("65000.40"), D("1.000"))]
    assert (book.bid_count, book.ask_count) == (3, 3)


# ------------------------------------------------------------------ reads


def test_reads_when_book_has_levels_then_hand_computed_values(book: Any) -> None:
    assert book.best_bid() == (D("65000.10"), D("1.500"))
    assert book.best_ask() == (D("65000.20"), D("0.500"))
    assert book.best_bid_ticks() == (650001, 1500)
    assert book.best_ask_ticks() == (650002, 500)
    assert book.mid() == D("65000.15")
    assert book.spread_ticks() == 1
    # (65000.1 * 0.5 + 65000.2 * 1.5) / 2.0
    assert book.microprice() == pytest.approx(65000.175, abs=1e-9)
    assert book.levels_ticks("ask", 2) == [(650002, 500), (650003, 1000)]
    assert book.levels("bid", 0) == []
    assert book.depth_within("bid", 0) == D("1.500")
    assert book.depth_within("bid", 1) == D("3.500")
    assert book.depth_within("bid", 6) == D("3.750")
    assert book.depth_within("ask", 8) == D("4.500")
    assert book.imbalance(1) == pytest.approx((1.5 - 0.5) / 2.0)
    assert book.imbalance(10) == pytest.approx((3.75 - 4.5) / 8.25)
    assert (book.tick_size, book.lot_size) == (D("0.10"), D("0.001"))
    assert book.ticks_to_price(650001) == D("65000.1")


def test_mid_when_odd_tick_sum_then_exact_half_tick(impl: SimpleNamespace) -> None:
    b = _book(impl)
    b.apply_snapshot([["100.0", "1"]], [["100.3", "1"]])
    assert b.mid() == D("100.15")
    assert b.spread_ticks() == 3


def test_reads_when_empty_then_none(impl: SimpleNamespace) -> None:
    b = _book(impl)
    assert b.best_bid() is None and b.best_ask() is None
    assert b.best_bid_ticks() is None and b.best_ask_ticks() is None
    assert b.mid() is None and b.spread_ticks() is None and b.microprice() is None
    assert b.imbalance(5) is None
    assert b.levels("ask", 3) == []
    assert b.depth_within("bid", 10) == 0
    assert b.fill_price("ask", "1") is None
    b.apply_snapshot([["1", "1"]], [])
    assert b.mid() is None and b.imbalance(5) == 1.0


def test_touch_ticks_when_sides_change_then_matches_per_side_reads(impl: SimpleNamespace) -> None:
    b = _book(impl)
    assert b.touch_ticks() == (0, 0, 0, 0)
    b.apply_snapshot([["100.0", "1"]], [])
    assert b.touch_ticks() == (1000, 1000, 0, 0)
    b.apply_update([["100.1", "0.002"]], [["100.3", "0.005"]])
    assert b.touch_ticks() == (*b.best_bid_ticks(), *b.best_ask_ticks()) == (1001, 2, 1003, 5)
    b.apply_update([["100.1", "0"]], [])
    assert b.touch_ticks() == (1000, 1000, 1003, 5)
    b.apply_update([], [["100.3", "0.007"]])
    assert b.touch_ticks() == (1000, 1000, 1003, 7)


def test_reads_when_bad_side_then_value_error(book: Any) -> None:
    for call in (
        lambda: book.levels("buy", 1),
        lambda: book.levels_ticks("BID", 1),
        lambda: book.depth_within("x", 1),
        lambda: book.fill_price("sell", "1"),
    ):
        with pytest.raises(ValueError, match="side"):
            call()


def test_fill_price_when_exact_then_decimal_average_and_worst(book: Any) -> None:
    # buying 1.2 from asks: 0.5 @ 65000.2 + 0.7 @ 65000.3 = 78000.31 / 1.2 = 65000.2583333...
    assert book.fill_price("ask", "1.2") == (D("65000.258333333"), D("65000.30"))
    assert book.fill_price("ask", D("0.5")) == (D("65000.200000000"), D("65000.20"))
    # selling 3.5 into bids: 1.5 @ 65000.1 + 2 @ 65000.0 = 227500.15 / 3.5 = 65000.042857142857...
    assert book.fill_price("bid", D("3.5")) == (D("65000.042857143"), D("65000.00"))
    assert book.fill_price("bid", "3.75")[1] == D("64999.50")
    assert book.fill_price("bid", "3.751") is None
    assert book.fill_price("ask", D("1E+1")) is None
    with pytest.raises(ValueError, match="size"):
        book.fill_price("ask", "0")
    with pytest.raises(ValueError, match="not a multiple of lot"):
        book.fill_price("ask", "0.0001")


def test_fill_price_when_half_quantum_then_rounds_half_even(impl: SimpleNamespace) -> None:
    b = impl.OrderBook(tick_size="1", lot_size="1")
    b.apply_snapshot([], [["1", "1"], ["2", "1"], ["3", "2"]])
    # (1*1 + 2*1 + 3*1) / 3 = 2 exactly; (1 + 2) / 2 = 1.5 exactly
    assert b.fill_price("ask", "3") == (D("2.00000000"), D("3"))
    assert b.fill_price("ask", "2") == (D("1.50000000"), D("2"))
    b.apply_snapshot([], [["1", "2"], ["2", "1"]])
    # (1*2 + 2*1) / 3 = 1.333... -> 1.33333333
    assert b.fill_price("ask", "3")[0] == D("1.33333333")


def test_clear_when_called_then_empty(book: Any) -> None:
    book.clear()
    assert (book.bid_count, book.ask_count) == (0, 0)
    book.apply_update([["1", "1"]], [["2", "1"]])
    assert book.best_bid_ticks() == (10, 1000)


# ------------------------------------------------------------------ property tests

_levels = st.lists(
    st.tuples(st.integers(min_value=-40, max_value=40), st.integers(min_value=0, max_value=3000)), max_size=8
)


def _fmt_px(ticks: int) -> str:
    return f"{ticks // 10}.{ticks % 10}" if ticks % 3 else f"{ticks // 10}.{ticks % 10}0"


def _fmt_qty(lots: int) -> str:
    """The same size in the several spellings venues use: "1.500", "1.5", "1.50000000", "1"."""
    plain = f"{lots // 1000}.{lots % 1000:03d}"
    if lots % 3 == 0:
        return plain.rstrip("0").rstrip(".") if lots else "0"
    return plain + "00000" if lots % 3 == 1 else plain


class _Oracle:
    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def apply(self, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> bool:
        nb, na = dict(self.bids), dict(self.asks)
        for px, q in bids:
            if q:
                nb[px] = q
            else:
                nb.pop(px, None)
        for px, q in asks:
            if q:
                na[px] = q
            else:
                na.pop(px, None)
        if nb and na and max(nb) >= min(na):
            return False
        self.bids, self.asks = nb, na
        return True

    def levels(self, side: str) -> list[tuple[int, int]]:
        if side == "bid":
            return sorted(self.bids.items(), reverse=True)
        return sorted(self.asks.items())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_levels, _levels), min_size=1, max_size=25))
def test_random_updates_when_applied_then_compiled_pure_and_dict_oracle_agree(steps: list[Any]) -> None:
    books = [load(kind).OrderBook(tick_size="0.1", lot_size="0.001") for kind in ("compiled", "pure")]
    oracle = _Oracle()
    mid = 650000
    for raw_bids, raw_asks in steps:
        bids = [(mid - 1 - abs(d) if d % 5 else mid + d, q) for d, q in raw_bids]
        asks = [(mid + 1 + abs(d) if d % 7 else mid + d, q) for d, q in raw_asks]
        ok = oracle.apply(bids, asks)
        wire_b = [[_fmt_px(p), _fmt_qty(q)] for p, q in bids]
        wire_a = [[_fmt_px(p), _fmt_qty(q)] for p, q in asks]
        for b in books:
            if ok:
                b.apply_update(wire_b, wire_a)
            else:
                with pytest.raises(ValueError, match="cross"):
                    b.apply_update(wire_b, wire_a)
        for b in books:
            assert b.levels_ticks("bid", 1000) == oracle.levels("bid")
            assert b.levels_ticks("ask", 1000) == oracle.levels("ask")
            assert b.bid_count == len(oracle.bids) and b.ask_count == len(oracle.asks)
        c, p = books
        for n in (1, 3):
            assert c.imbalance(n) == p.imbalance(n)
            assert c.depth_within("bid", n) == p.depth_within("bid", n)
            assert c.depth_within("ask", n) == p.depth_within("ask", n)
            assert c.fill_price("ask", "1.5") == p.fill_price("ask", "1.5")
            assert c.fill_price("bid", "2.001") == p.fill_price("bid", "2.001")
        assert c.microprice() == p.microprice()
        assert c.mid() == p.mid()
        assert c.levels("ask", 5) == p.levels("ask", 5)
        if oracle.bids and oracle.asks:
            bb, ba = max(oracle.bids), min(oracle.asks)
            assert c.spread_ticks() == ba - bb
            assert c.mid() == D(bb + ba) * D("0.1") / 2


_chars = st.sampled_from([*"0123456789.-eE+ x\u00e9", "00", "9999999999"])


@settings(max_examples=150, deadline=None)
@given(st.lists(_chars, max_size=8).map("".join), st.sampled_from(["0.1", "0.0001", "5", "0.25"]))
def test_random_strings_when_parsed_then_compiled_and_pure_agree(text: str, tick: str) -> None:
    results = []
    for kind in ("compiled", "pure"):
        b = load(kind).OrderBook(tick_size=tick, lot_size="1")
        try:
            results.append(("ok", b.price_to_ticks(text)))
        except ValueError as exc:
            results.append(("err", str(exc)))
    assert results[0] == results[1]
    if results[0][0] == "ok":
        assert D(results[0][1]) * D(tick) == D(text if not text.startswith(".") else "0" + text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_chars, max_size=8).map("".join),
    st.lists(_chars, max_size=8).map("".join),
    st.sampled_from(["0.1", "0.0001", "5", "0.25"]),
)
def test_random_level_strings_when_applied_then_compiled_and_pure_agree(px: str, qty: str, tick: str) -> None:
    """The compiled fast path for exact lists of ASCII strings gives the twin's result or its error."""
    results = []
    for kind in ("compiled", "pure"):
        b = load(kind).OrderBook(tick_size=tick, lot_size="0.01")
        try:
            b.apply_update([["1", "1"], [px, qty]], [])
            results.append(("ok", b.levels_ticks("bid", 10)))
        except ValueError as exc:
            results.append(("err", str(exc), b.levels_ticks("bid", 10)))
    assert results[0] == results[1]


def test_random_updates_when_book_deep_then_compiled_matches_dict_oracle() -> None:
    """Hundreds of levels per side, updates near and far from the touch (the search's two regimes)."""
    rng = random.Random(7)
    book = load("compiled").OrderBook(tick_size="0.1", lot_size="0.001")
    oracle = _Oracle()
    mid = 650000
    snap_b = [(mid - 1 - i, rng.randint(1, 99)) for i in range(0, 600, rng.choice((1, 2)))]
    snap_a = [(mid + 1 + i, rng.randint(1, 99)) for i in range(0, 600, rng.choice((1, 3)))]
    oracle.apply(snap_b, snap_a)
    book.apply_snapshot(
        [[_fmt_px(p), _fmt_qty(q)] for p, q in snap_b], [[_fmt_px(p), _fmt_qty(q)] for p, q in snap_a]
    )
    for _ in range(3000):
        bb, ba = max(oracle.bids), min(oracle.asks)
        bids = [
            (bb + 2 - min(int(rng.expovariate(0.2)), 700), rng.choice((0, 0, 5, 77)))
            for _ in range(rng.randint(0, 6))
        ]
        asks = [
            (ba - 2 + min(int(rng.expovariate(0.2)), 700), rng.choice((0, 0, 5, 77)))
            for _ in range(rng.randint(0, 6))
        ]
        ok = oracle.apply(bids, asks)
        wire = ([[_fmt_px(p), _fmt_qty(q)] for p, q in bids], [[_fmt_px(p), _fmt_qty(q)] for p, q in asks])
        if ok:
            book.apply_update(*wire)
        else:
            with pytest.raises(ValueError, match="cross"):
                book.apply_update(*wire)
        assert book.best_bid_ticks() == (max(oracle.bids), oracle.bids[max(oracle.bids)])
        assert book.best_ask_ticks() == (min(oracle.asks), oracle.asks[min(oracle.asks)])
    assert book.levels_ticks("bid", 10000) == oracle.levels("bid")
    assert book.levels_ticks("ask", 10000) == oracle.levels("ask")
