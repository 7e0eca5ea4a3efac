"""Binance and Bybit book sync state machines, decoded and bytes paths, on both implementations."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels import load

FIXTURES = Path(__file__).parent.parent / "fixtures"
APPLIED, STALE, GAP, BUFFERED = 0, 1, 2, 3


def _state(book: Any) -> tuple[list[Any], list[Any]]:
    return book.levels_ticks("bid", 10**6), book.levels_ticks("ask", 10**6)


def test_result_codes_when_imported_then_documented_values(impl: SimpleNamespace) -> None:
    assert (impl.APPLIED, impl.STALE, impl.GAP, impl.BUFFERED) == (APPLIED, STALE, GAP, BUFFERED)


# ------------------------------------------------------------------ Binance


def _bn(impl: SimpleNamespace, **kw: Any) -> Any:
    return impl.BinanceBookSync(impl.OrderBook(tick_size="0.10", lot_size="0.001"), **kw)


def _ev(U: int, u: int, pu: int, bids: Any = (), asks: Any = (), *, wrap: bool = False) -> bytes:
    payload = {
        "e": "depthUpdate",
        "E": 1,
        "T": 1,
        "s": "BTCUSDT",
        "U": U,
        "u": u,
        "pu": pu,
        "b": [list(x) for x in bids],
        "a": [list(x) for x in asks],
    }
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": payload} if wrap else payload)


SNAP_B = [["100.0", "1"], ["99.0", "2"]]
SNAP_A = [["101.0", "1"], ["102.0", "2"]]


def test_on_bytes_touch_when_applied_then_touch_else_none_and_code(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    assert s.on_bytes_touch(_ev(1, 2, 0, [("100.0", "1")])) is None and s.last_result == impl.BUFFERED
    assert s.on_snapshot(5, SNAP_B, SNAP_A) == impl.BUFFERED
    touch = s.on_bytes_touch(_ev(4, 6, 3, [("100.5", "3")]))
    assert s.last_result == impl.APPLIED
    assert touch == s.book.touch_ticks() == (1005, 3000, 1010, 1000)
    assert s.on_bytes_touch(_ev(5, 6, 5)) is None and s.last_result == impl.STALE
    assert s.on_bytes_touch(_ev(9, 9, 8)) is None and s.last_result == impl.GAP
    before = _state(s.book)
    with pytest.raises(ValueError):
        s.on_bytes_touch(b'{"e":"depthUpdate"')
    assert _state(s.book) == before


@pytest.mark.parametrize("path", ["event", "bytes"])
def test_binance_when_buffered_then_snapshot_replays_straddle_and_goes_live(
    impl: SimpleNamespace, path: str
) -> None:
    s = _bn(impl)
    events = [
        (90, 95, 80, [("99.5", "1")], []),
        (96, 105, 95, [("100.0", "3")], []),
        (106, 110, 105, [], [("101.0", "0")]),
        (111, 111, 110, [("99.0", "0")], []),
    ]

    def send(U: int, u: int, pu: int, b: Any, a: Any) -> int:
        return (
            s.on_event(U, u, pu, [list(x) for x in b], [list(x) for x in a])
            if path == "event"
            else s.on_bytes(_ev(U, u, pu, b, a))
        )

    assert s.state == "awaiting_snapshot" and s.last_update_id is None
    assert [send(*e) for e in events[:3]] == [BUFFERED] * 3
    assert s.buffered == 3
    assert s.on_snapshot(100, SNAP_B, SNAP_A) == APPLIED
    assert (s.state, s.last_update_id, s.stale, s.applied, s.buffered) == ("live", 110, 1, 2, 0)
    assert s.book.levels_ticks("bid", 5) == [(1000, 3000), (990, 2000)]
    assert s.book.levels_ticks("ask", 5) == [(1020, 2000)]
    assert send(*events[3]) == APPLIED
    assert send(106, 110, 105, [], []) == STALE  # duplicate
    assert send(200, 210, 150, [], []) == GAP  # pu != last u
    assert (s.state, s.gaps, s.stale, s.applied) == ("awaiting_snapshot", 1, 2, 3)
    assert send(211, 215, 210, [], []) == BUFFERED
    assert s.on_snapshot(205, SNAP_B, SNAP_A) == APPLIED  # gap event (U=200..210) straddles 205
    assert (s.state, s.last_update_id) == ("live", 215)


def test_binance_when_first_event_after_snapshot_starts_above_L_then_gap(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    assert s.on_bytes(_ev(120, 130, 110)) == BUFFERED
    assert s.on_snapshot(100, SNAP_B, SNAP_A) == GAP
    assert (s.state, s.gaps, s.buffered) == ("awaiting_snapshot", 1, 1)
    # a newer snapshot fixes it; the kept event straddles
    assert s.on_snapshot(125, SNAP_B, SNAP_A) == APPLIED
    assert s.last_update_id == 130


def test_binance_when_snapshot_before_any_straddle_then_syncing_then_live(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    assert s.on_snapshot(100, SNAP_B, SNAP_A) == BUFFERED
    assert s.state == "syncing"
    assert s.on_bytes(_ev(90, 99, 80)) == STALE
    assert s.on_bytes(_ev(95, 101, 99, [("100.0", "5")])) == APPLIED
    assert s.state == "live" and s.book.best_bid_ticks() == (1000, 5000)


def test_binance_when_syncing_and_event_starts_above_L_then_gap_and_kept(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    assert s.on_bytes(_ev(102, 104, 101)) == GAP
    assert (s.state, s.buffered) == ("awaiting_snapshot", 1)


def test_binance_when_buffer_overflows_then_oldest_dropped_and_counted(impl: SimpleNamespace) -> None:
    s = _bn(impl, buffer_size=3)
    for i in range(5):
        assert s.on_bytes(_ev(10 * i + 1, 10 * i + 10, 10 * i)) == BUFFERED
    assert (s.buffered, s.buffer_dropped) == (3, 2)
    # the kept ones are 21..50: snapshot at 25 straddles the third event
    assert s.on_snapshot(25, SNAP_B, SNAP_A) == APPLIED
    assert s.last_update_id == 50 and s.applied == 3
    # a snapshot older than the kept buffer: the first kept event (U=21) starts above L
    s.reset()
    for i in range(5):
        s.on_bytes(_ev(10 * i + 1, 10 * i + 10, 10 * i))
    assert s.on_snapshot(5, SNAP_B, SNAP_A) == GAP


def test_binance_when_combined_stream_envelope_then_payload_used(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    assert s.on_bytes(_ev(95, 105, 90, [("100.5", "1")], wrap=True)) == APPLIED
    raw = b'{"data":{"U":106,"u":107,"pu":105,"b":[],"a":[["101.0","7"]]},"stream":"x","u":1,"b":5}'
    assert s.on_bytes(raw) == APPLIED
    assert s.book.best_ask_ticks() == (1010, 7000)
    assert s.on_bytes(raw.decode()) == STALE  # str frames too


def test_binance_when_unknown_keys_any_types_any_order_then_skipped(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    raw = (
        b' { "a" : [ [ "101.0" , "4" ] ] , "x":{"y":[1,-2.5e3,true,false,null,{"z":"q\\"\\\\\\u00e9}"}]},'
        b'"st":1,"ps":"BTCUSDT","E":1.5,"s":"\xc3\xa9\\ud83d\\ude00","pu":90,"u":101,"U":99,'
        b'"b":[["100.0","2"]] } \n'
    )
    assert s.on_bytes(raw) == APPLIED
    assert s.book.best_bid_ticks() == (1000, 2000) and s.book.best_ask_ticks() == (1010, 4000)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[]',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[]}x',
        b'{"u":2,"pu":0,"b":[],"a":[]}',
        b'{"U":1,"pu":0,"b":[],"a":[]}',
        b'{"U":1,"u":2,"b":[],"a":[]}',
        b'{"U":1,"u":2,"pu":0,"a":[]}',
        b'{"U":1,"u":2,"pu":0,"b":[]}',
        b'{"U":1.0,"u":2,"pu":0,"b":[],"a":[]}',
        b'{"U":"1","u":2,"pu":0,"b":[],"a":[]}',
        b'{"U":true,"u":2,"pu":0,"b":[],"a":[]}',
        b'{"U":9223372036854775808,"u":2,"pu":0,"b":[],"a":[]}',
        b'{"stream":"x","data":[1]}',
        b'{"stream":"x","data":{"U":1}}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],"E":01}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],"E":1e999}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],"s":"\\x"}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],"s":"\xff"}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],"s":"\\udc00"}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],"s":"a\x01"}',
        b'{"U":1,"u":2,"pu":0,"b":[],"a":[],}',
        b'{"U":1,"u":2,"pu":0,"b":[["1","1"],],"a":[]}',
    ],
)
def test_binance_on_bytes_when_malformed_then_value_error_and_nothing_changes(
    impl: SimpleNamespace, raw: bytes
) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    s.on_bytes(_ev(95, 105, 90))
    before = (_state(s.book), s.state, s.last_update_id, s.applied, s.stale, s.gaps)
    with pytest.raises(ValueError):
        s.on_bytes(raw)
    assert (_state(s.book), s.state, s.last_update_id, s.applied, s.stale, s.gaps) == before


@pytest.mark.parametrize(
    ("levels", "match"),
    [
        (b'"b":[["100.05","1"]],"a":[]', r"b\[0\]\.price '100.05' is not a multiple of tick"),
        (b'"b":[],"a":[["101.0","1"],["102","1","3"]]', r"a\[1\] .* is not a \[price, size\] pair"),
        (b'"b":[[100,"1"]],"a":[]', r"b\[0\]\.price 100 is not a string"),
        (b'"b":{},"a":[]', r"b dict is not a list"),
        (b'"b":[["100.0","1e1"]],"a":[]', r"b\[0\]\.size '1e1' uses exponent"),
        (b'"b":[["\\u0031\\u0030\\u0031.0","1"]],"a":[]', r"cross"),
    ],
)
def test_binance_when_bad_level_data_live_then_raises_book_unchanged_and_needs_resync(
    impl: SimpleNamespace, levels: bytes, match: str
) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    s.on_bytes(_ev(95, 105, 90))
    before = _state(s.book)
    with pytest.raises(ValueError, match=match):
        s.on_bytes(b'{"U":106,"u":107,"pu":105,' + levels + b"}")
    assert _state(s.book) == before
    assert s.state == "awaiting_snapshot"


def test_binance_on_event_when_crossed_then_resync_and_reraise(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    s.on_event(95, 105, 90, [], [])
    with pytest.raises(ValueError, match="cross"):
        s.on_event(106, 107, 105, [["101.0", "1"]], [])
    assert s.state == "awaiting_snapshot"
    with pytest.raises(ValueError, match="U"):
        s.on_event("1", 2, 3, [], [])


def test_binance_when_snapshot_bad_then_raises_and_awaiting(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    s.on_bytes(_ev(95, 105, 90))
    with pytest.raises(ValueError, match="crossed"):
        s.on_snapshot(100, [["101.0", "1"]], [["101.0", "1"]])
    assert (s.state, s.buffered) == ("awaiting_snapshot", 1)


def test_binance_reset_when_called_then_fresh(impl: SimpleNamespace) -> None:
    s = _bn(impl)
    s.on_snapshot(100, SNAP_B, SNAP_A)
    s.on_bytes(_ev(95, 105, 90))
    s.reset()
    assert (s.state, s.last_update_id, s.applied, s.stale, s.gaps, s.buffer_dropped) == (
        "awaiting_snapshot",
        None,
        0,
        0,
        0,
        0,
    )
    assert s.book.bid_count == 0


def test_binance_fixtures_when_replayed_around_snapshot_then_applied(impl: SimpleNamespace) -> None:
    snap = json.loads((FIXTURES / "binance/rest_depth_snapshot.json").read_text())
    diff = (FIXTURES / "binance/ws_depth_diff_update.json").read_bytes()
    partial = (FIXTURES / "binance/ws_depth_partial_book_update.json").read_bytes()
    # the fixtures come from different sources (prices 0.0024.., 4.0000.., 7403..): one book each
    s = impl.BinanceBookSync(impl.OrderBook(tick_size="0.0000001", lot_size="0.00000001"))
    assert s.on_bytes(diff) == BUFFERED  # U=157 u=160 pu=149
    assert s.on_snapshot(158, [["0.0020", "5"]], [["0.0030", "5"]]) == APPLIED
    assert s.book.best_bid_ticks() == (24000, 1000000000) and s.book.best_ask_ticks() == (26000, 10000000000)
    s2 = impl.BinanceBookSync(impl.OrderBook(tick_size="0.0000001", lot_size="0.00000001"))
    assert s2.on_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"]) == BUFFERED
    assert s2.book.best_ask() is not None and str(s2.book.best_ask()[0]) == "4.0000020"
    s3 = impl.BinanceBookSync(impl.OrderBook(tick_size="0.01", lot_size="0.001"))
    assert s3.on_bytes(partial) == BUFFERED  # U=390497796 u=390497878
    assert s3.on_snapshot(390497800, [["7400.00", "1"]], [["7410.00", "1"]]) == APPLIED
    assert s3.book.best_bid_ticks() == (740543, 2562) and s3.book.best_ask_ticks() == (740596, 3340)
    assert s3.book.bid_count == 6 and s3.book.ask_count == 6
    wrapped = b'{"stream":"btcusdt@depth@100ms","data":' + diff + b"}"
    assert s.on_bytes(wrapped) == STALE  # same event again, now in a combined-stream envelope
    assert s.stale == 1


# ------------------------------------------------------------------ Bybit

CAPTURE = FIXTURES / "bybit/ws_orderbook500_XRPUSDT_capture.jsonl"


def _by(impl: SimpleNamespace) -> Any:
    return impl.BybitBookSync(impl.OrderBook(tick_size="0.0001", lot_size="1"))


def _oracle_replay(lines: list[bytes]) -> tuple[dict[str, int], dict[str, int]]:
    bids: dict[str, int] = {}
    asks: dict[str, int] = {}
    for line in lines:
        msg = json.loads(line)
        if msg["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, levels in ((bids, msg["data"]["b"]), (asks, msg["data"]["a"])):
            for p, q in levels:
                if q == "0":
                    side.pop(p, None)
                else:
                    side[p] = int(q)
    return bids, asks


@pytest.mark.parametrize("path", ["bytes", "message"])
def test_bybit_capture_when_replayed_then_all_applied_and_matches_oracle(
    impl: SimpleNamespace, path: str
) -> None:
    lines = CAPTURE.read_bytes().splitlines()
    assert len(lines) == 50
    s = _by(impl)
    if path == "bytes":
        results = [s.on_bytes(line) for line in lines]
    else:
        results = []
        for line in lines:
            m = orjson.loads(line)
            results.append(
                s.on_message(m["type"], m["data"]["u"], m["data"]["seq"], m["data"]["b"], m["data"]["a"])
            )
    assert results == [APPLIED] * 50
    bids, asks = _oracle_replay(lines)
    best_bid = max(bids, key=float)
    best_ask = min(asks, key=float)
    assert s.book.best_bid_ticks() == (s.book.price_to_ticks(best_bid), bids[best_bid])
    assert s.book.best_ask_ticks() == (s.book.price_to_ticks(best_ask), asks[best_ask])
    assert (s.book.bid_count, s.book.ask_count) == (len(bids), len(asks))
    assert s.book.levels_ticks("bid", 1000) == sorted(
        ((s.book.price_to_ticks(p), q) for p, q in bids.items()), reverse=True
    )
    assert s.last_update_id == orjson.loads(lines[-1])["data"]["u"]
    assert (s.state, s.applied, s.gaps, s.stale) == ("live", 50, 0, 0)


def _bymsg(kind: str, u: int, b: Any = (), a: Any = (), seq: int = 7) -> bytes:
    return orjson.dumps(
        {
            "topic": "orderbook.50.XRPUSDT",
            "type": kind,
            "ts": 1,
            "data": {
                "s": "XRPUSDT",
                "b": [list(x) for x in b],
                "a": [list(x) for x in a],
                "u": u,
                "seq": seq,
            },
            "cts": 1,
        }
    )


def test_bybit_when_delta_before_snapshot_then_gap_once_then_stale(impl: SimpleNamespace) -> None:
    s = _by(impl)
    assert s.on_bytes(_bymsg("delta", 5)) == GAP
    assert s.on_bytes(_bymsg("delta", 6)) == STALE
    assert s.on_message("delta", 7, None, [], []) == STALE
    assert (s.state, s.gaps, s.stale) == ("awaiting_snapshot", 1, 2)
    assert s.on_bytes(_bymsg("snapshot", 10, [("1.0", "5")], [("1.1", "5")])) == APPLIED
    assert s.on_bytes(_bymsg("delta", 11, [("1.0", "0")])) == APPLIED
    assert s.book.bid_count == 0 and s.state == "live"


def test_bybit_when_u_jumps_then_gap_then_snapshot_recovers(impl: SimpleNamespace) -> None:
    s = _by(impl)
    s.on_bytes(_bymsg("snapshot", 10, [("1.0", "5")], [("1.1", "5")]))
    assert s.on_bytes(_bymsg("delta", 12)) == GAP
    assert s.state == "awaiting_snapshot"
    assert s.on_bytes(_bymsg("delta", 13)) == STALE
    assert s.on_bytes(_bymsg("snapshot", 20, [("1.05", "1")], [])) == APPLIED
    assert s.on_bytes(_bymsg("delta", 20)) == GAP  # duplicate u is not u + 1
    assert s.gaps == 2


def test_bybit_when_restart_snapshot_u1_then_book_replaced(impl: SimpleNamespace) -> None:
    s = _by(impl)
    s.on_bytes(_bymsg("snapshot", 500, [("1.0", "5")], [("1.1", "5")]))
    s.on_bytes(_bymsg("delta", 501, [("0.9", "5")]))
    assert s.on_bytes(_bymsg("snapshot", 1, [("2.0", "1")], [("2.1", "1")])) == APPLIED
    assert s.book.levels_ticks("bid", 10) == [(20000, 1)]
    assert s.last_update_id == 1
    assert s.on_bytes(_bymsg("delta", 2, [], [("2.1", "0")])) == APPLIED


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"delta","data":{"b":[],"a":[]}}',
        b'{"type":"delta","data":{"u":1.5,"b":[],"a":[]}}',
        b'{"type":"delta","data":{"u":2,"seq":"x","b":[],"a":[]}}',
        b'{"type":"other","data":{"u":2,"b":[],"a":[]}}',
        b'{"type":1,"data":{"u":2,"b":[],"a":[]}}',
        b'{"data":{"u":2,"b":[],"a":[]}}',
        b'{"type":"delta"}',
        b'{"type":"delta","data":[]}',
        b'{"type":"delta","data":{"u":2,"a":[]}}',
        b'{"success":true,"ret_msg":"","op":"subscribe"}',
        b'{"type":"delta","data":{"u":2,"b":[],"a":[]}',
    ],
)
def test_bybit_on_bytes_when_malformed_then_value_error_and_nothing_changes(
    impl: SimpleNamespace, raw: bytes
) -> None:
    s = _by(impl)
    s.on_bytes(_bymsg("snapshot", 1, [("1.0", "5")], [("1.1", "5")]))
    before = (_state(s.book), s.state, s.last_update_id, s.applied, s.stale, s.gaps)
    with pytest.raises(ValueError):
        s.on_bytes(raw)
    assert (_state(s.book), s.state, s.last_update_id, s.applied, s.stale, s.gaps) == before


def test_bybit_when_bad_level_or_crossed_then_raises_unchanged_and_awaiting(impl: SimpleNamespace) -> None:
    s = _by(impl)
    s.on_bytes(_bymsg("snapshot", 1, [("1.0", "5")], [("1.1", "5")]))
    before = _state(s.book)
    with pytest.raises(ValueError, match=r"b\[0\]\.price '1.00001'"):
        s.on_bytes(_bymsg("delta", 2, [("1.00001", "5")]))
    assert _state(s.book) == before and s.state == "awaiting_snapshot"
    assert s.on_bytes(_bymsg("delta", 3)) == STALE
    s.on_bytes(_bymsg("snapshot", 5, [("1.0", "5")], [("1.1", "5")]))
    with pytest.raises(ValueError, match="cross"):
        s.on_message("delta", 6, 1, [["1.1", "1"]], [])
    assert _state(s.book) == before and s.state == "awaiting_snapshot"
    with pytest.raises(ValueError, match="type"):
        s.on_message("partial", 6, 1, [], [])


def test_bybit_reset_when_called_then_fresh(impl: SimpleNamespace) -> None:
    s = _by(impl)
    s.on_bytes(_bymsg("snapshot", 1, [("1.0", "5")], []))
    s.reset()
    assert (s.state, s.last_update_id, s.applied, s.book.bid_count) == ("awaiting_snapshot", None, 0, 0)
    assert s.on_bytes(_bymsg("delta", 2)) == GAP


# ------------------------------------------------------------------ fuzz: both twins agree, nothing crashes

_BASE_BN = _ev(106, 107, 105, [("100.0", "1.5"), ("99.5", "0")], [("101.5", "2")], wrap=False)
_BASE_BY = CAPTURE.read_bytes().splitlines()[1]


def _run(kind: str, which: str, raw: bytes) -> tuple[Any, ...]:
    ns = load(kind)
    if which == "binance":
        s = ns.BinanceBookSync(ns.OrderBook(tick_size="0.10", lot_size="0.001"))
        s.on_snapshot(100, SNAP_B, SNAP_A)
        s.on_bytes(_ev(95, 105, 90))
    else:
        s = ns.BybitBookSync(ns.OrderBook(tick_size="0.0001", lot_size="1"))
        s.on_bytes(CAPTURE.read_bytes().splitlines()[0])
    before = _state(s.book)
    try:
        result: Any = s.on_bytes(raw)
    except ValueError:
        result = "error"
        assert _state(s.book) == before
    return result, _state(s.book), s.state, s.applied, s.stale, s.gaps


_mutation = st.tuples(
    st.integers(min_value=0, max_value=10**6), st.sampled_from(list(b' "[]{},:0159.-eEtrufalsn\\u'))
)


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(["binance", "bybit"]),
    st.lists(_mutation, max_size=3),
    st.integers(min_value=0, max_value=10**6),
)
def test_on_bytes_when_mutated_or_truncated_then_twins_agree(which: str, muts: list[Any], cut: int) -> None:
    raw = bytearray(_BASE_BN if which == "binance" else _BASE_BY)
    for pos, ch in muts:
        raw[pos % len(raw)] = ch
    if cut % 3 == 0:
        raw = raw[: cut % len(raw)]
    data = bytes(raw)
    assert _run("compiled", which, data) == _run("pure", which, data)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200))
def test_on_bytes_when_random_bytes_then_value_error_and_book_unchanged(raw: bytes) -> None:
    for kind in ("compiled", "pure"):
        for which in ("binance", "bybit"):
            result = _run(kind, which, raw)
            assert result[0] == "error"
