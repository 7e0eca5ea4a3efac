"""The recording file format: writer, reader, rotation, corruption, continuity replay (no network)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import RecordingCorrupt
from engine.recording import (
    RecordingWriter,
    file_name,
    read_events,
    read_file,
    rebuild_books,
    verify,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class FakeClock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def _writer(tmp_path: Path, clock: FakeClock, **kw: Any) -> RecordingWriter:
    w = RecordingWriter(directory=tmp_path, venue=kw.pop("venue", "binance"), clock_ms=clock, **kw)
    w.open()
    return w


def _bdiff(U: int, u: int, pu: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
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


def _bsnap(last: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return orjson.dumps({"lastUpdateId": last, "E": 1, "T": 1, "bids": bids, "asks": asks})


def test_write_then_read_when_closed_then_lines_come_back_unmodified_in_time_order(tmp_path: Path) -> None:
    clock = FakeClock()
    w = _writer(tmp_path, clock, flush_s=0.5)
    raw = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","p":"60000.10","q":"0.001"}}'
    w.write_raw("trade", "BTCUSDT", raw)
    clock.t += 600  # past flush_s: the first frame is written
    w.write_raw("depth", "BTCUSDT", _bdiff(1, 2, 0, [["1.0", "2"]], []))
    w.write("gap", "ETHUSDT", {"reason": "reconnect"})
    w.close()
    assert w.frames == 2
    events = list(read_events([tmp_path]))
    assert [(e.t_ms, e.kind, e.venue, e.symbol) for e in events] == [
        (T0, "trade", "binance", "BTCUSDT"),
        (T0 + 600, "depth", "binance", "BTCUSDT"),
        (T0 + 600, "gap", "binance", "ETHUSDT"),
    ]
    assert events[0].message == orjson.loads(raw)
    assert events[2].message == {"reason": "reconnect"}
    assert (
        w.path is not None and w.path.name == file_name("binance", T0) == "binance-20260101T000000Z.jsonl.zst"
    )


def test_write_when_raw_frame_has_newlines_then_one_line_with_the_same_json(tmp_path: Path) -> None:
    w = _writer(tmp_path, FakeClock())
    w.write_raw("mark", "BTCUSDT", b'{\n "stream": "btcusdt@markPrice@1s",\n "data": {"p": "1.5"}\n}')
    w.close()
    (ev,) = read_events([tmp_path])
    assert ev.message == {"stream": "btcusdt@markPrice@1s", "data": {"p": "1.5"}}


def test_rotation_when_rotate_s_elapses_then_new_file_and_callback(tmp_path: Path) -> None:
    clock = FakeClock()
    rotated: list[Path] = []
    w = _writer(tmp_path, clock, rotate_s=2, flush_s=10, on_rotate=rotated.append)
    for i in range(7):  # one line per second for 7 s: boundaries at +2, +4, +6
        w.write("trade", "BTCUSDT", {"i": i})
        clock.t += 1000
    w.close()
    assert len(w.files) == 4
    assert rotated == w.files[1:]
    per_file = [[e.message["i"] for e in read_file(p)] for p in w.files]
    assert per_file == [[0, 1], [2, 3], [4, 5], [6]]
    assert [e.message["i"] for e in read_events(reversed(w.files))] == list(range(7))


def test_rotation_when_hourly_then_files_named_by_hour(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 3_599_000)
    w = _writer(tmp_path, clock)
    w.write("trade", "BTCUSDT", {"i": 0})
    clock.t += 2000
    w.write("trade", "BTCUSDT", {"i": 1})
    w.close()
    assert [p.name for p in w.files] == [
        "binance-20260101T005959Z.jsonl.zst",
        "binance-20260101T010001Z.jsonl.zst",
    ]


def test_rotation_when_name_taken_then_suffixed(tmp_path: Path) -> None:
    clock = FakeClock()
    for _ in range(2):
        w = _writer(tmp_path, clock)
        w.write("trade", "BTCUSDT", {})
        w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "binance-20260101T000000Z.1.jsonl.zst",
        "binance-20260101T000000Z.jsonl.zst",
    ]


def _three_frames(tmp_path: Path) -> Path:
    clock = FakeClock()
    w = _writer(tmp_path, clock, flush_s=1)
    for i in range(3):
        w.write("trade", "BTCUSDT", {"i": i, "pad": "x" * 200})
        w.flush()
    w.close()
    assert w.frames == 3 and w.path is not None
    return w.path


def test_read_when_last_frame_truncated_then_error_names_file_and_offset(tmp_path: Path) -> None:
    path = _three_frames(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(RecordingCorrupt) as err:
        list(read_events([path]))
    assert err.value.path == str(path) and err.value.offset > 0 and "truncated" in err.value.reason


def test_read_when_truncated_tail_tolerated_then_whole_frames_read_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _three_frames(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])
    with caplog.at_level(logging.WARNING, logger="engine.recording"):
        events = list(read_events([path], tolerate_truncated_tail=True))
    assert [e.message["i"] for e in events] == [0, 1]
    assert any(r.getMessage().startswith("recording_truncated_tail ") for r in caplog.records)
    report = verify([path])
    assert report.truncated_files == [str(path)] and not report.ok


def test_read_when_last_frame_bytes_flipped_then_error_even_when_tolerating(tmp_path: Path) -> None:
    path = _three_frames(tmp_path)
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # inside the last frame's content or checksum
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingCorrupt):
        list(read_events([path], tolerate_truncated_tail=True))


def test_read_when_not_a_recording_name_then_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "foo.jsonl.zst"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="not a recording file name"):
        list(read_events([bad]))


def _binance_recording(tmp_path: Path, lines: list[tuple[str, bytes]]) -> Path:
    clock = FakeClock()
    w = _writer(tmp_path, clock)
    for kind, raw in lines:
        w.write_raw(kind, "BTCUSDT", raw)
        clock.t += 100
    w.close()
    assert w.path is not None
    return w.path


def test_verify_when_binance_stream_continuous_then_book_rebuilt_no_gaps(tmp_path: Path) -> None:
    path = _binance_recording(
        tmp_path,
        [
            ("depth", _bdiff(90, 95, 89, [["100.0", "1"]], [])),  # before the snapshot: stale after it
            ("depth", _bdiff(96, 101, 95, [["100.1", "2"]], [])),  # straddles lastUpdateId 100
            ("snapshot", _bsnap(100, [["100.0", "5"], ["99.9", "1"]], [["100.5", "3"]])),
            ("depth", _bdiff(102, 104, 101, [["99.9", "0"]], [["100.4", "1.5"]])),
        ],
    )
    report = verify([path])
    sym = report.symbols["BTCUSDT"]
    assert report.ok and sym.rebuilt and sym.gaps == [] and sym.applied == 2 and sym.stale == 1
    assert sym.last_update_id == 104
    book = rebuild_books([path])["BTCUSDT"]
    assert book.levels("bid", 5) == [(D("100.1"), D("2")), (D("100.0"), D("5"))]
    assert book.levels("ask", 5) == [(D("100.4"), D("1.5")), (D("100.5"), D("3"))]


def test_verify_when_snapshot_taken_between_two_diffs_then_next_diff_follows_it(tmp_path: Path) -> None:
    path = _binance_recording(
        tmp_path,
        [
            ("snapshot", _bsnap(100, [["100.0", "5"]], [["100.5", "3"]])),
            ("depth", _bdiff(101, 103, 100, [["100.1", "2"]], [])),
        ],
    )
    report = verify([path])
    assert report.ok and report.symbols["BTCUSDT"].applied == 1


def test_verify_when_diff_missing_then_gap_reported_and_healed_by_next_snapshot(tmp_path: Path) -> None:
    path = _binance_recording(
        tmp_path,
        [
            ("snapshot", _bsnap(100, [["100.0", "5"]], [["100.5", "3"]])),
            ("depth", _bdiff(101, 103, 100, [["100.1", "2"]], [])),
            ("depth", _bdiff(107, 109, 106, [["100.2", "2"]], [])),  # 104..106 never arrived
            ("gap", orjson.dumps({"reason": "sequence", "expected_pu": 103, "pu": 106})),
            ("depth", _bdiff(110, 111, 109, [["100.3", "1"]], [])),
            ("snapshot", _bsnap(109, [["100.2", "2"], ["100.0", "5"]], [["100.5", "3"]])),
        ],
    )
    report = verify([path])
    sym = report.symbols["BTCUSDT"]
    assert report.gap_count == 1 and not report.ok
    assert (sym.gaps[0].expected, sym.gaps[0].got) == (103, 106)
    assert [g.reason for g in sym.recorded_gaps] == ["sequence"]
    assert sym.rebuilt and sym.last_update_id == 111
    book = rebuild_books([path])["BTCUSDT"]
    assert [p for p, _ in book.levels("bid", 5)] == [D("100.3"), D("100.2"), D("100.0")]


def test_verify_when_no_snapshot_then_book_not_rebuilt(tmp_path: Path) -> None:
    path = _binance_recording(tmp_path, [("depth", _bdiff(1, 2, 0, [["1.0", "1"]], []))])
    report = verify([path])
    assert not report.symbols["BTCUSDT"].rebuilt and not report.ok
    assert rebuild_books([path]) == {}


def _bybit(kind: str, u: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return orjson.dumps(
        {
            "topic": "orderbook.200.BTCUSDT",
            "type": kind,
            "ts": 1,
            "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": u * 10},
            "cts": 1,
        }
    )


@pytest.mark.parametrize(
    ("us", "gaps"),
    [((1, 2, 3, 4), 0), ((1, 2, 4, 5), 1)],
)
def test_verify_when_bybit_deltas_then_gaps_counted(tmp_path: Path, us: tuple[int, ...], gaps: int) -> None:
    clock = FakeClock()
    w = _writer(tmp_path, clock, venue="bybit")
    w.write_raw("depth", "BTCUSDT", _bybit("delta", 0, [["1", "1"]], []))  # before any snapshot: ignored
    w.write_raw("depth", "BTCUSDT", _bybit("snapshot", us[0], [["100.0", "1"]], [["100.5", "1"]]))
    for u in us[1:]:
        w.write_raw("depth", "BTCUSDT", _bybit("delta", u, [[f"99.{u}", "1"]], []))
    w.close()
    report = verify([tmp_path])
    sym = report.symbols["BTCUSDT"]
    assert sym.gap_count == gaps and sym.before_first_snapshot == 1
    assert sym.rebuilt == (gaps == 0)


def test_rebuild_when_grid_given_then_it_is_used(tmp_path: Path) -> None:
    path = _binance_recording(tmp_path, [("snapshot", _bsnap(1, [["100.0", "5"]], [["100.5", "3"]]))])
    book = rebuild_books([path], grids={"BTCUSDT": ("0.5", "1")})["BTCUSDT"]
    assert str(book.tick_size) == "0.5"
    bad: Callable[[], object] = lambda: rebuild_books([path], grids={"BTCUSDT": ("0.3", "1")})  # noqa: E731
    assert verify([path], grids={"BTCUSDT": ("0.3", "1")}).symbols["BTCUSDT"].errors
    assert bad() == {}
