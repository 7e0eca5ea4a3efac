"""The ``orderbook.{depth}`` window rules (protocol notes 2.6, 2.7): exactly N levels a side, deletes
only of held prices, contiguous ``u``, snapshot-only level 1; checked against a subscriber that applies
the messages the way pybit does (and would crash the way pybit does on a delete of an absent price)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pytest

from engine.venue.bybit.bookwindow import BookWindow, MirrorBook, WindowUpdate
from engine.venue.bybit.wire import InstrumentFormat
from engine.venue.instruments import default_instruments

D = Decimal
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"


class StrictSubscriber:
    """Applies window messages by Bybit's procedure; a delete of a price it does not hold fails."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.u = 0

    def apply(self, update: WindowUpdate) -> None:
        if update.snapshot:
            self.bids, self.asks = dict(update.bids), dict(update.asks)
        else:
            assert update.u == self.u + 1, f"u gap: {self.u} -> {update.u}"
            for side, levels in ((self.bids, update.bids), (self.asks, update.asks)):
                for price, qty in levels:
                    if qty == 0:
                        assert price in side, f"delete of absent price {price}"
                        del side[price]
                    else:
                        side[price] = qty
        self.u = update.u


def _book(levels: int = 10) -> MirrorBook:
    book = MirrorBook("BTCUSDT")
    bids = [(D("100") - k, D("1")) for k in range(levels)]
    asks = [(D("101") + k, D("1")) for k in range(levels)]
    book.load(50, bids, asks)
    return book


def _change(
    book: MirrorBook, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]
) -> tuple[list[Decimal], list[Decimal]]:
    return book.apply(book.last_id + len(bids) + len(asks), bids, asks)


def test_window_when_loaded_then_snapshot_holds_best_n_levels_sorted() -> None:
    book = _book()
    window = BookWindow(3)
    snap = window.reset(book)
    assert snap.snapshot and snap.u == 1 and snap.seq == 50
    assert [p for p, _ in snap.bids] == [D("100"), D("99"), D("98")]
    assert [p for p, _ in snap.asks] == [D("101"), D("102"), D("103")]


def test_window_when_level_inside_deleted_then_next_level_inserted() -> None:
    book = _book()
    window = BookWindow(3)
    window.reset(book)
    changed = _change(book, [(D("99"), D("0"))], [])
    update = window.update(book, *changed)
    assert update is not None and not update.snapshot and update.u == 2
    assert update.bids == [(D("99"), D("0")), (D("97"), D("1"))]
    assert update.asks == []


def test_window_when_better_level_inserted_then_worst_level_deleted() -> None:
    book = _book()
    window = BookWindow(3)
    window.reset(book)
    update = window.update(book, *_change(book, [], [(D("100.5"), D("2"))]))
    assert update is not None
    assert update.asks == [(D("100.5"), D("2")), (D("103"), D("0"))]


def test_window_when_change_beyond_full_window_then_no_message() -> None:
    book = _book()
    window = BookWindow(3)
    window.reset(book)
    assert window.update(book, *_change(book, [(D("95"), D("7"))], [(D("108"), D("0"))])) is None
    assert window.u == 1


def test_window_when_book_thinner_than_depth_then_every_change_published() -> None:
    book = _book(levels=2)
    window = BookWindow(50)
    window.reset(book)
    update = window.update(book, *_change(book, [(D("90"), D("1"))], [(D("101"), D("0"))]))
    assert update is not None
    assert update.bids == [(D("90"), D("1"))] and update.asks == [(D("101"), D("0"))]


def test_window_depth_one_when_touch_changes_then_snapshot_with_next_u() -> None:
    book = _book()
    window = BookWindow(1)
    window.reset(book)
    update = window.update(book, *_change(book, [(D("100"), D("0"))], []))
    assert update is not None and update.snapshot and update.u == 2
    assert update.bids == [(D("99"), D("1"))] and update.asks == [(D("101"), D("1"))]
    assert window.update(book, *_change(book, [(D("90"), D("3"))], [])) is None


def test_window_when_skip_then_next_u_leaves_a_gap() -> None:
    book = _book()
    window = BookWindow(3)
    window.reset(book)
    window.skip(1)
    update = window.update(book, *_change(book, [(D("100"), D("5"))], []))
    assert update is not None and update.u == 3


@pytest.mark.parametrize("depth", [1, 3, 50])
def test_window_when_random_walk_then_subscriber_book_equals_top_n_and_never_deletes_absent(
    depth: int,
) -> None:
    rng = random.Random(depth)
    book = _book(levels=30)
    window = BookWindow(depth)
    sub = StrictSubscriber()
    sub.apply(window.reset(book))
    mid = 100
    for _ in range(3000):
        mid += rng.choice((-1, 0, 1))
        bids, asks = [], []
        for _ in range(rng.randint(1, 6)):
            offset = rng.randint(0, 40)
            qty = D(rng.choice([0, 0, 1, 2, 3, 5]))
            if rng.random() < 0.5:
                price = D(mid - offset)
                if price in book.asks:
                    continue
                bids.append((price, qty))
            else:
                price = D(mid + 1 + offset)
                if price in book.bids:
                    continue
                asks.append((price, qty))
        update = window.update(book, *_change(book, bids, asks))
        if update is not None:
            sub.apply(update)
        assert sub.bids == dict(book.bids.top(depth))
        assert sub.asks == dict(book.asks.top(depth))
        held_bids, held_asks = window.held()
        assert held_bids == sub.bids and held_asks == sub.asks


def test_real_capture_when_replayed_with_the_same_rules_then_book_stays_at_n_levels() -> None:
    """The live XRPUSDT orderbook.500 capture obeys the rules the window implements: contiguous u,
    deletes only of held prices, and exactly 500 levels a side throughout."""
    lines = (FIXTURES / "ws_orderbook500_XRPUSDT_capture.jsonl").read_text().splitlines()
    messages = [json.loads(line) for line in lines if line.strip()]
    first = messages[0]
    assert first["type"] == "snapshot"
    bids = {p: q for p, q in first["data"]["b"]}
    asks = {p: q for p, q in first["data"]["a"]}
    u = first["data"]["u"]
    for msg in messages[1:]:
        assert msg["type"] == "delta" and msg["data"]["u"] == u + 1
        u = msg["data"]["u"]
        assert msg["cts"] <= msg["ts"]
        for side, levels in ((bids, msg["data"]["b"]), (asks, msg["data"]["a"])):
            for price, qty in levels:
                if qty == "0":
                    assert price in side
                    del side[price]
                else:
                    side[price] = qty
        assert len(bids) == len(asks) == 500


def test_price_strings_when_same_value_with_different_exponents_then_identical() -> None:
    fmt = InstrumentFormat(default_instruments()["BTCUSDT"])
    assert fmt.price(D("65000.1")) == fmt.price(D("65000.10")) == fmt.price(D("6500010E-2")) == "65000.10"
    assert fmt.qty(D("1")) == "1.000"
    assert fmt.price(D("65000.123")) == "65000.123"  # finer than the grid: exact, never rounded


def _full_window(book: MirrorBook, depth: int) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return dict(book.bids.top(depth)), dict(book.asks.top(depth))


def test_dormant_window_when_book_changes_then_no_message_and_nothing_held() -> None:
    book = _book()
    window = BookWindow(3)
    assert not window.active
    assert window.update(book, *_change(book, [(D("100"), D("0"))], [])) is None
    assert window.held() == ({}, {})
    assert window.u == 0


def test_dormant_window_when_synced_twice_without_change_then_same_u_and_activation_keeps_it() -> None:
    book = _book()
    window = BookWindow(3)
    assert window.sync(book) == (1, 50)
    assert window.sync(book) == (1, 50)
    snap = window.activate(book)
    assert window.active and snap.snapshot and (snap.u, snap.seq) == (1, 50)
    assert (dict(snap.bids), dict(snap.asks)) == _full_window(book, 3) == window.held()


def test_dormant_window_when_book_changed_since_last_snapshot_then_activation_numbers_a_new_one() -> None:
    book = _book()
    window = BookWindow(3)
    window.activate(book)
    window.deactivate()
    assert not window.active and window.held() == ({}, {})
    _change(book, [(D("100"), D("0")), (D("100.5"), D("4"))], [])
    snap = window.activate(book)
    assert snap.u == 2 and snap.seq == book.last_id
    assert [p for p, _ in snap.bids] == [D("100.5"), D("99"), D("98")]
    assert window.held() == _full_window(book, 3)


def test_window_when_a_side_empties_and_refills_then_deltas_track_the_book() -> None:
    book = _book(levels=5)
    window = BookWindow(3)
    sub = StrictSubscriber()
    sub.apply(window.activate(book))
    gone = [(D("100") - k, D("0")) for k in range(5)]
    update = window.update(book, *_change(book, gone, []))
    assert update is not None
    sub.apply(update)
    assert sub.bids == {} and len(book.bids) == 0
    refill = [(D("97") - k, D("2")) for k in range(6)]
    update = window.update(book, *_change(book, refill, []))
    assert update is not None
    sub.apply(update)
    assert (sub.bids, sub.asks) == _full_window(book, 3)


@pytest.mark.parametrize("depth", [2, 7, 1000])
def test_incremental_window_when_bursts_cross_its_edge_then_equals_a_full_recompute(depth: int) -> None:
    """Bursts of inserts and deletes near the edge move it both ways by several levels at once; the
    incremental delta must leave the subscriber with exactly the best ``depth`` levels every time."""
    rng = random.Random(1000 + depth)
    book = _book(levels=12)
    window = BookWindow(depth)
    sub = StrictSubscriber()
    sub.apply(window.activate(book))
    for _ in range(2000):
        bids: list[tuple[Decimal, Decimal]] = []
        asks: list[tuple[Decimal, Decimal]] = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.5:
                price = D(rng.randint(60, 100))
                if price not in book.asks:
                    bids.append((price, D(rng.choice([0, 0, 1, 4]))))
            else:
                price = D(rng.randint(101, 141))
                if price not in book.bids:
                    asks.append((price, D(rng.choice([0, 0, 1, 4]))))
        update = window.update(book, *_change(book, bids, asks))
        if update is not None:
            sub.apply(update)
        assert (sub.bids, sub.asks) == _full_window(book, depth) == window.held()
