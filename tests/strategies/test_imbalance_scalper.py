"""imbalance_scalper: entries on strong depth imbalance with the microprice leaning the same way, exits
when the imbalance turns, cooldown, exact Decimal prices; needs a bound book source."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import kernels as _kernels
from engine.strategies import ImbalanceScalper, StrategyParamError
from engine.types import OrderType, Side

from .helpers import BTC, book_update, fill

kernels: Any = _kernels


class Books:
    def __init__(self) -> None:
        self.book = kernels.OrderBook(tick_size="0.1", lot_size="0.001")

    def __call__(self, venue: Any, symbol: str) -> Any:
        return self.book if (venue, symbol) == BTC else None

    def set(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]], ts: int) -> Any:
        self.book.apply_snapshot([list(b) for b in bids], [list(a) for a in asks])
        bid, _bq, ask, _aq = self.book.touch_ticks()
        return book_update(bid, ask, ts)


def scalper(**params: Any) -> tuple[ImbalanceScalper, Books]:
    s = ImbalanceScalper(
        params={"levels": 2, "entry_imbalance": 0.5, "cooldown_ms": 500, **params}, symbols=[BTC]
    )
    books = Books()
    s.bind_books(books)
    return s, books


BID_HEAVY = ([("100.0", "9"), ("99.9", "9")], [("100.1", "1"), ("100.2", "1")])
ASK_HEAVY = ([("100.0", "1"), ("99.9", "1")], [("100.1", "9"), ("100.2", "9")])
BALANCED = ([("100.0", "5"), ("99.9", "5")], [("100.1", "5"), ("100.2", "5")])


def test_when_bid_heavy_book_then_limit_buy_at_bid_with_tick_stops() -> None:
    s, books = scalper(stop_ticks=20, take_profit_ticks=10, qty="0.01")
    (sig,) = s.on_book(books.set(*BID_HEAVY, ts=1))
    assert (sig.side, sig.type, sig.limit_price, sig.qty) == (
        Side.BUY,
        OrderType.LIMIT,
        Decimal("100.0"),
        Decimal("0.01"),
    )
    assert sig.stop_loss == Decimal("98.0") and sig.take_profit == Decimal("101.0")


def test_when_ask_heavy_book_then_sell_at_ask() -> None:
    s, books = scalper(order_type="market")
    (sig,) = s.on_book(books.set(*ASK_HEAVY, ts=1))
    assert (sig.side, sig.type, sig.limit_price) == (Side.SELL, OrderType.MARKET, None)
    assert sig.stop_loss == Decimal("100.1") + Decimal("2.0")


def test_when_balanced_book_then_nothing() -> None:
    s, books = scalper()
    assert s.on_book(books.set(*BALANCED, ts=1)) == []


def test_when_signal_sent_then_quiet_for_cooldown() -> None:
    s, books = scalper()
    assert len(s.on_book(books.set(*BID_HEAVY, ts=1000))) == 1
    assert s.on_book(books.set(*BID_HEAVY, ts=1499)) == []
    assert len(s.on_book(books.set(*BID_HEAVY, ts=1500))) == 1


def test_when_long_and_imbalance_turns_then_reduce_only_close() -> None:
    s, books = scalper(exit_imbalance=0.0)
    s.on_fill(fill(Side.BUY, "0.25"))
    assert s.on_book(books.set(*BID_HEAVY, ts=1)) == []  # holding: no second entry
    (sig,) = s.on_book(books.set(*ASK_HEAVY, ts=2))
    assert (sig.side, sig.reduce_only, sig.qty, sig.type) == (
        Side.SELL,
        True,
        Decimal("0.25"),
        OrderType.MARKET,
    )


def test_when_microprice_edge_required_and_absent_then_nothing() -> None:
    # deep levels bid-heavy, but the touch sizes equal: the microprice sits at the mid
    s, books = scalper(micro_edge_ticks=0.1)
    upd = books.set([("100.0", "1"), ("99.9", "20")], [("100.1", "1"), ("100.2", "1")], ts=1)
    assert s.on_book(upd) == []


def test_when_no_book_source_bound_then_runtime_error() -> None:
    s = ImbalanceScalper(params={}, symbols=[BTC])
    assert s.requires_books
    with pytest.raises(RuntimeError, match="no book source"):
        s.on_book(book_update(1000, 1001, 1))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=2, max_size=2),
    st.lists(st.integers(1, 50), min_size=2, max_size=2),
)
def test_when_any_book_then_signal_iff_rule_holds(bq: list[int], aq: list[int]) -> None:
    s, books = scalper(entry_imbalance=0.4)
    upd = books.set(
        [("100.0", str(bq[0])), ("99.9", str(bq[1]))], [("100.1", str(aq[0])), ("100.2", str(aq[1]))], 1
    )
    imb = (sum(bq) - sum(aq)) / (sum(bq) + sum(aq))
    micro_edge = (100.0 * aq[0] + 100.1 * bq[0]) / (aq[0] + bq[0]) - 100.05
    want = (
        Side.BUY
        if imb >= 0.4 and round(micro_edge, 6) >= 0
        else Side.SELL
        if imb <= -0.4 and round(micro_edge, 6) <= 0
        else None
    )
    got = s.on_book(upd)
    assert [x.side for x in got] == ([] if want is None else [want])


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"levels": 0}, "levels"),
        ({"entry_imbalance": 1.5}, "entry_imbalance"),
        ({"entry_imbalance": 0.3, "exit_imbalance": 0.5}, "exit_imbalance"),
        ({"order_type": "stop"}, "order_type"),
        ({"stop_ticks": 0}, "stop_ticks"),
        ({"levls": 3}, "levls"),
    ],
)
def test_when_bad_params_then_error_names_param(params: dict[str, Any], bad: str) -> None:
    with pytest.raises(StrategyParamError) as info:
        ImbalanceScalper(params=params, symbols=[BTC])
    assert info.value.param == bad
