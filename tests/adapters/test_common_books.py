"""BookManager: health, resync requests, malformed frames and staleness on the real kernels."""

from __future__ import annotations

import time
from decimal import Decimal

import orjson

from engine.adapters.common.books import MAX_STALE_RUN, BookManager
from engine.types import BookHealth, BookUpdate, MarketEvent, Venue, VenueStatus


def frame(U: int, u: int, pu: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    data = {
        "e": "depthUpdate",
        "E": 1,
        "T": 1,
        "s": "BTCUSDT",
        "U": U,
        "u": u,
        "pu": pu,
        "b": bids,
        "a": asks,
    }
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})


def manager(stale_after_s: float = 5.0) -> tuple[BookManager, list[MarketEvent], list[str]]:
    events: list[MarketEvent] = []
    resyncs: list[str] = []
    m = BookManager(
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        tick_size=Decimal("0.1"),
        lot_size=Decimal("0.001"),
        kind="binance",
        sink=events.append,
        request_resync=resyncs.append,
        now_ms=lambda: 1,
        stale_after_s=stale_after_s,
    )
    return m, events, resyncs


def health_changes(events: list[MarketEvent]) -> list[str]:
    return [e.status for e in events if isinstance(e, VenueStatus)]


def test_binance_when_diffs_buffered_then_snapshot_then_live_with_book_updates() -> None:
    m, events, resyncs = manager()
    assert m.on_bytes(frame(9, 11, 8, [["100.0", "1"]], []), 5) == 3  # buffered
    assert m.health is BookHealth.SYNCING
    code = m.on_snapshot(10, [["99.9", "2"]], [["100.5", "1"]])
    assert code == 0 and m.health is BookHealth.LIVE
    assert m.book.best_bid() == (Decimal("100.0"), Decimal("1"))
    assert m.on_bytes(frame(12, 12, 11, [], [["100.4", "3"]]), 77) == 0
    updates = [e for e in events if isinstance(e, BookUpdate)]
    assert updates[-1].best_ask_ticks == 1004 and updates[-1].recv_ns == 77
    assert health_changes(events) == ["live"] and resyncs == []


def test_binance_when_gap_then_resyncing_counted_and_snapshot_requested() -> None:
    m, events, resyncs = manager()
    m.on_snapshot(10, [["99.9", "2"]], [["100.5", "1"]])
    m.on_bytes(frame(9, 11, 8, [], []), 1)
    assert m.on_bytes(frame(15, 15, 13, [], []), 2) == 2
    assert m.health is BookHealth.RESYNCING and m.resyncs == 1 and resyncs == ["BTCUSDT"]
    m.on_snapshot(15, [["99.9", "2"]], [["100.5", "1"]])
    assert m.health is BookHealth.LIVE
    assert health_changes(events) == ["live", "resyncing", "live"]


def test_malformed_frame_when_received_then_counted_dropped_and_stream_survives() -> None:
    m, _events, _resyncs = manager()
    m.on_snapshot(10, [["99.9", "2"]], [["100.5", "1"]])
    m.on_bytes(frame(9, 11, 8, [], []), 1)
    assert m.on_bytes(b'{"stream":"x","data":{"e":"depthUpd', 2) is None
    assert m.malformed == 1 and m.health is BookHealth.LIVE
    assert m.on_bytes(frame(12, 12, 11, [["100.1", "1"]], []), 3) == 0


def test_crossing_update_when_live_then_crossed_and_resync_requested() -> None:
    m, _events, resyncs = manager()
    m.on_snapshot(10, [["99.9", "2"]], [["100.5", "1"]])
    m.on_bytes(frame(9, 11, 8, [], []), 1)
    assert m.on_bytes(frame(12, 12, 11, [["101.0", "1"]], []), 2) is None
    assert m.health is BookHealth.CROSSED and resyncs == ["BTCUSDT"]


def test_check_stale_when_silent_then_stale_and_live_again_on_update() -> None:
    m, _events, _resyncs = manager(stale_after_s=0.5)
    m.on_snapshot(10, [["99.9", "2"]], [["100.5", "1"]])
    m.on_bytes(frame(9, 11, 8, [], []), 1)
    m.check_stale(time.monotonic() + 1.0)
    assert m.health is BookHealth.STALE and m.stale_marks == 1
    m.on_bytes(frame(12, 12, 11, [], []), 2)
    assert m.health is BookHealth.LIVE


def test_bybit_when_snapshot_then_delta_gap_then_resync_requested() -> None:
    events: list[MarketEvent] = []
    resyncs: list[str] = []
    m = BookManager(
        venue=Venue.BYBIT,
        symbol="BTCUSDT",
        tick_size=Decimal("0.1"),
        lot_size=Decimal("0.001"),
        kind="bybit",
        sink=events.append,
        request_resync=resyncs.append,
        now_ms=lambda: 1,
        stale_after_s=5,
    )
    assert m.on_message("snapshot", 1, 1, [["99.9", "1"]], [["100.0", "1"]], 1) == 0
    assert m.on_message("delta", 2, 2, [["99.8", "1"]], [], 2) == 0
    assert m.on_message("delta", 4, 4, [], [], 3) == 2
    assert m.health is BookHealth.RESYNCING and resyncs == ["BTCUSDT"]


def test_binance_when_update_ids_restart_lower_then_reset_resync_requested_and_new_snapshot_live() -> None:
    """A restarted venue numbers its updates from a low value again: the live machine answers STALE to
    each; a run of MAX_STALE_RUN of them resets the book and asks for a snapshot of the new venue."""
    m, _, resyncs = manager()
    assert m.on_bytes(frame(999, 1001, 998, [["100.0", "1"]], []), 1) == 3  # buffered
    assert m.on_snapshot(1000, [["99.9", "2"]], [["100.5", "1"]]) == 0
    assert m.health is BookHealth.LIVE
    for i in range(1, MAX_STALE_RUN):
        m.on_bytes(frame(i, i, i - 1, [["98.0", "1"]], []), 1)
    assert m.health is BookHealth.LIVE and resyncs == []  # a few stale frames are only stale
    m.on_bytes(frame(MAX_STALE_RUN, MAX_STALE_RUN, MAX_STALE_RUN - 1, [["98.0", "1"]], []), 1)
    assert m.health is BookHealth.RESYNCING and resyncs == ["BTCUSDT"] and m.stats()["id_restarts"] == 1
    assert m.awaiting_snapshot
    # the new venue's snapshot (ids far below the old ones) and its next diff make the book live again
    assert m.on_bytes(frame(29, 31, 28, [["97.0", "4"]], []), 1) == 3  # buffered
    assert m.on_snapshot(30, [["96.9", "2"]], [["97.5", "1"]]) == 0
    assert m.health is BookHealth.LIVE and m.book.best_bid() == (Decimal("97.0"), Decimal("4"))


def test_binance_when_stale_frames_interleave_with_applied_then_no_reset() -> None:
    m, _, resyncs = manager()
    m.on_bytes(frame(9, 11, 8, [], []), 1)
    assert m.on_snapshot(10, [["99.9", "2"]], [["100.5", "1"]]) == 0
    last = 11
    for _ in range(3 * MAX_STALE_RUN):
        m.on_bytes(frame(last + 1, last + 1, last, [], []), 1)  # applied
        m.on_bytes(frame(last, last, last - 1, [], []), 1)  # a replayed duplicate: stale
        last += 1
    assert m.health is BookHealth.LIVE and resyncs == [] and m.stats()["id_restarts"] == 0


def test_bybit_when_venue_restarts_with_u1_snapshot_then_applied_and_live() -> None:
    events: list[MarketEvent] = []
    m = BookManager(
        venue=Venue.BYBIT,
        symbol="BTCUSDT",
        tick_size=Decimal("0.1"),
        lot_size=Decimal("0.001"),
        kind="bybit",
        sink=events.append,
        request_resync=lambda s: None,
        now_ms=lambda: 1,
        stale_after_s=5.0,
    )
    assert m.on_message("snapshot", 5000, 1, [["99.9", "2"]], [["100.5", "1"]], 1) == 0
    assert m.on_message("delta", 5001, 2, [["99.8", "1"]], [], 1) == 0
    assert m.on_message("snapshot", 1, 1, [["50.0", "3"]], [["50.5", "1"]], 1) == 0
    assert m.health is BookHealth.LIVE and m.book.best_bid() == (Decimal("50.0"), Decimal("3"))
    assert m.on_message("delta", 2, 2, [["50.1", "1"]], [], 1) == 0
    assert m.book.best_bid() == (Decimal("50.1"), Decimal("1"))
