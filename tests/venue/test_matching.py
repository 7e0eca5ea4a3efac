"""The matching book: price-time priority on integer ticks/lots, crowd queue semantics, and the
public depth batches (ids, no phantom deletions)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venue.matching import Entry, OrderBook

D = Decimal


def new_book() -> OrderBook:
    return OrderBook(symbol="BTCUSDT", tick_size=D("0.1"), lot_size=D("0.001"))


def test_match_when_several_levels_then_best_price_first_and_fifo_within_level() -> None:
    book = new_book()
    a, b = Entry("a", 5), Entry("b", 5)
    book.add(False, 101, a)
    book.add(False, 100, Entry(None, 3))
    book.add(False, 100, b)
    left, execs = book.match(True, 101, 12)
    assert left == 0
    assert execs == [(100, 3, None), (100, 5, "b"), (101, 4, "a")]
    assert a.qty == 1 and b.qty == 0
    assert book.best_ask() == 101 and book.asks.total(101) == 1
    book.check()


def test_match_when_limit_not_reached_then_stops_and_returns_leftover() -> None:
    book = new_book()
    book.add(True, 99, Entry(None, 4))
    book.add(True, 98, Entry(None, 4))
    left, execs = book.match(False, 99, 10)
    assert left == 6 and execs == [(99, 4, None)]
    assert book.best_bid() == 98


def test_market_match_when_book_exhausted_then_leftover() -> None:
    book = new_book()
    book.add(True, 99, Entry(None, 4))
    left, execs = book.match(False, None, 10)
    assert left == 6 and book.best_bid() is None and len(execs) == 1


def test_set_crowd_when_growing_then_joins_back_and_when_shrinking_then_removed_from_back() -> None:
    book = new_book()
    book.set_crowd(True, 99, 5)
    mine = Entry("me", 2)
    book.add(True, 99, mine)
    book.set_crowd(True, 99, 9)  # +4 behind "me"
    assert [e.qty for e in book.bids.levels[99]] == [5, 2, 4]
    book.set_crowd(True, 99, 3)  # -6: the 4 at the back, then 2 of the front 5
    assert [(e.owner, e.qty) for e in book.bids.levels[99]] == [(None, 3), ("me", 2)]
    assert book.bids.total(99) == 5 and book.crowd_qty(True, 99) == 3
    book.set_crowd(True, 99, 0)
    assert [e.owner for e in book.bids.levels[99]] == ["me"]
    book.check()


def test_remove_and_reduce_when_account_entry_then_totals_follow() -> None:
    book = new_book()
    e = Entry("x", 7)
    book.add(False, 105, Entry(None, 1))
    book.add(False, 105, e)
    book.reduce(False, 105, e, 3)
    assert book.asks.total(105) == 4
    book.remove(False, 105, e)
    assert book.asks.total(105) == 1
    book.set_crowd(False, 105, 0)
    assert book.best_ask() is None
    book.check()


def test_flush_when_level_appears_and_vanishes_in_one_batch_then_not_reported() -> None:
    book = new_book()
    book.add(True, 99, Entry(None, 1))
    first = book.flush(0)
    assert first is not None and first.first_id == 1 and first.last_id == 1 and first.prev_last_id == 0
    e = Entry("x", 2)
    book.add(True, 98, e)
    book.remove(True, 98, e)
    book.set_crowd(True, 99, 3)
    book.set_crowd(True, 99, 1)
    assert book.flush(1) is None
    assert book.last_update_id == 1


def test_flush_when_changes_then_absolute_levels_sorted_and_ids_chain() -> None:
    book = new_book()
    book.set_crowd(True, 99, 1)
    book.set_crowd(True, 97, 1)
    book.set_crowd(False, 101, 2)
    ev = book.flush(5)
    assert ev is not None
    assert ev.bids == ((D("9.9"), D("0.001")), (D("9.7"), D("0.001")))
    assert ev.asks == ((D("10.1"), D("0.002")),)
    assert (ev.first_id, ev.last_id) == (1, 3)
    book.match(True, 101, 2)
    ev2 = book.flush(6)
    assert ev2 is not None and ev2.prev_last_id == 3 and ev2.first_id == 4
    assert ev2.asks == ((D("10.1"), D(0)),)
    assert book.depth(10) == (4, [(D("9.9"), D("0.001")), (D("9.7"), D("0.001"))], [])


def test_available_when_limit_then_counts_only_reachable_levels() -> None:
    book = new_book()
    book.add(False, 100, Entry(None, 3))
    book.add(False, 102, Entry(None, 3))
    assert book.available(True, 101, 10) == 3
    assert book.available(True, None, 10) == 6
    assert book.available(True, None, 4) == 4
    assert book.would_cross(True, 100) and not book.would_cross(True, 99)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["crowd", "add", "match", "cancel", "flush"]),
            st.booleans(),
            st.integers(min_value=90, max_value=110),
            st.integers(min_value=0, max_value=20),
        ),
        max_size=80,
    )
)
def test_property_when_random_book_ops_then_public_book_rebuilt_from_events_equals_depth(
    ops: list[tuple[str, bool, int, int]],
) -> None:
    book = new_book()
    mine: list[tuple[bool, int, Entry]] = []
    public: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
    last = 0
    for op, is_bid, price, n in ops:
        if op == "crowd":
            if not book.would_cross(is_bid, price):
                book.set_crowd(is_bid, price, n)
        elif op == "add" and n:
            left, _ = book.match(is_bid, price, n)
            if left:
                e = Entry("acct", left)
                book.add(is_bid, price, e)
                mine.append((is_bid, price, e))
        elif op == "match" and n:
            book.match(is_bid, price, n)
        elif op == "cancel" and mine:
            b, p, e = mine.pop(n % len(mine))
            if e.qty:
                book.remove(b, p, e)
        ev = book.flush(0) if op == "flush" or n % 3 == 0 else None
        if ev is not None:
            assert ev.prev_last_id == last and ev.first_id == last + 1
            last = ev.last_id
            for side, changes in ((public[0], ev.bids), (public[1], ev.asks)):
                for p, q in changes:
                    if q == 0:
                        assert p in side
                        del side[p]
                    else:
                        side[p] = q
        book.check()
        mine = [m for m in mine if m[2].qty]
    ev = book.flush(0)
    if ev is not None:
        for side, changes in ((public[0], ev.bids), (public[1], ev.asks)):
            for p, q in changes:
                if q == 0:
                    del side[p]
                else:
                    side[p] = q
    _, bids, asks = book.depth(1000)
    assert public == (dict(bids), dict(asks))
