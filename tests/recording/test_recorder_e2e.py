"""Recording from the local venue and replaying the files: the rebuilt books equal the venue's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import RecordingCorrupt
from engine.recorder import Recorder, RecorderConfig, RecorderStats
from engine.recording import read_events, rebuild_books, verify
from engine.venue import faults
from engine.venue.server import VenueServer

SYMBOLS = ("BTCUSDT", "ETHUSDT")
COMPARE_LEVELS = 20


async def _wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def _record(
    venue: str,
    out: Path,
    *,
    steps: int = 120,
    skip_at: int | None = None,
    garbage_at: int | None = None,
    drop_at: int | None = None,
    rotate_s: float = 3600.0,
) -> tuple[RecorderStats, dict[str, tuple[int, list[tuple[object, object]], list[tuple[object, object]]]]]:
    """Record both symbols while the venue's market makes ``steps`` 100 ms steps (10x real time), then
    stop the market, let the recorder drain, stop it; returns its stats and the venue's final books."""
    async with VenueServer(tick_ms=600_000) as server:  # the market moves only when this test says so
        assert server.clock is not None
        ws = server.ws_url if venue == "binance" else f"{server.ws_url}/v5/public/linear"
        config = RecorderConfig(
            venue="binance" if venue == "binance" else "bybit",
            symbols=SYMBOLS,
            out_dir=out,
            rest_url=server.base_url,
            ws_url=ws,
            flush_s=0.2,
            rotate_s=rotate_s,
        )
        recorder = Recorder(config)
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        core = server.core

        def step() -> None:
            server.clock.shift(100)  # type: ignore[union-attr]
            core.advance(core.now_ms())

        if venue == "binance":  # a snapshot per symbol needs a first diff: move the market until then
            while recorder.stats.snapshots < len(SYMBOLS):
                step()
                await asyncio.sleep(0.02)
        else:
            await _wait_for(lambda: recorder.stats.messages.get("depth", 0) >= len(SYMBOLS), 10, "snapshots")
        for i in range(steps):
            if skip_at is not None and i == skip_at:
                server.ctx.faults.ws_skip_seq = 1
            if garbage_at is not None and i == garbage_at:
                server.ctx.faults.ws_garbage = 1
            if drop_at is not None and i == drop_at:
                assert await faults.ws_registry(server.ctx).drop_all() >= 1
                for _ in range(5):  # the market moves on while the recorder is away
                    step()
                await _wait_for(lambda: recorder.stats.reconnects >= 1, 10, "the reconnect")
            step()
            await asyncio.sleep(0.01)
        # the market has stopped: drain until the recorder has seen nothing new for 0.3 s
        seen = -1
        while seen != recorder.writer.lines:
            seen = recorder.writer.lines
            await asyncio.sleep(0.3)
        final = {s: core.depth(s, COMPARE_LEVELS) for s in SYMBOLS}
        stop.set()
        stats = await asyncio.wait_for(task, 10)
    return stats, final  # type: ignore[return-value]


def _assert_books_equal(
    out: Path, final: dict[str, tuple[int, list[tuple[object, object]], list[tuple[object, object]]]]
) -> None:
    books = rebuild_books([out])
    assert set(books) == set(SYMBOLS)
    for symbol, (_, bids, asks) in final.items():
        assert len(bids) == COMPARE_LEVELS and len(asks) == COMPARE_LEVELS
        assert books[symbol].levels("bid", COMPARE_LEVELS) == bids, symbol
        assert books[symbol].levels("ask", COMPARE_LEVELS) == asks, symbol


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_record_when_market_moves_then_rebuilt_book_equals_venue_book(
    venue: str, tmp_path: Path
) -> None:
    stats, final = await _record(venue, tmp_path)
    assert stats.messages["depth"] > 100 and stats.messages["trade"] > 0 and stats.messages["mark"] > 0
    report = verify([tmp_path])
    assert report.ok, report.to_json()
    assert all(s.applied > 50 for s in report.symbols.values())
    if venue == "binance":  # the replayed stream ends on the venue's own last update id
        assert {s: r.last_update_id for s, r in report.symbols.items()} == {s: f[0] for s, f in final.items()}
    _assert_books_equal(tmp_path, final)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_record_when_venue_skips_a_sequence_id_then_verify_reports_the_gap_and_book_heals(
    venue: str, tmp_path: Path
) -> None:
    stats, final = await _record(venue, tmp_path, steps=60, skip_at=20)
    assert stats.gaps >= 1
    report = verify([tmp_path])
    assert report.gap_count >= 1 and not report.ok
    gapped = [s for s in report.symbols.values() if s.gaps]
    assert gapped and all(g.got != g.expected for s in gapped for g in s.gaps)
    assert all(any(r.reason == "sequence" for r in s.recorded_gaps) for s in gapped)
    assert all(s.rebuilt for s in report.symbols.values())  # the recorder resynced after the gap
    _assert_books_equal(tmp_path, final)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_record_when_rotating_then_every_file_rebuilds_its_books_alone(
    venue: str, tmp_path: Path
) -> None:
    stats, final = await _record(venue, tmp_path, steps=80, rotate_s=0.4)
    assert len(stats.files) >= 3
    # every rotated file starts from its own snapshots (the last one may have been opened as the
    # recorder stopped, before its snapshots came: it is left out)
    for path in stats.files[1:-1]:
        report = verify([path])
        assert set(report.symbols) == set(SYMBOLS)
        assert all(s.rebuilt and s.snapshots >= 1 for s in report.symbols.values()), (path, report.to_json())
    _assert_books_equal(tmp_path, final)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_record_when_connection_dropped_then_gap_line_reconnect_and_book_heals(
    venue: str, tmp_path: Path
) -> None:
    stats, final = await _record(venue, tmp_path, steps=40, drop_at=10)
    assert stats.reconnects >= 1
    report = verify([tmp_path])
    for sym in report.symbols.values():
        assert "reconnect" in [g.reason for g in sym.recorded_gaps]
        assert sym.rebuilt
    _assert_books_equal(tmp_path, final)


@pytest.mark.parametrize("venue", ["binance", "bybit"])
async def test_record_when_venue_sends_a_truncated_frame_then_gap_line_and_book_heals(
    venue: str, tmp_path: Path
) -> None:
    stats, final = await _record(venue, tmp_path, steps=40, garbage_at=10)
    assert stats.bad_frames == 1
    report = verify([tmp_path])
    for sym in report.symbols.values():
        assert [g.reason for g in sym.recorded_gaps] == ["bad_frame"]
        assert sym.rebuilt and not sym.errors
    _assert_books_equal(tmp_path, final)


def _engine(*args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "record", "--local", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _wait_recorded(
    out: Path, proc: subprocess.Popen[bytes], depth: int, *, snapshot: bool = True, timeout_s: float = 20
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            kinds = [e.kind for e in read_events([out], tolerate_truncated_tail=True)]
        except (RecordingCorrupt, FileNotFoundError):
            kinds = []
        if kinds.count("depth") >= depth and (not snapshot or "snapshot" in kinds):
            return
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the recorder wrote too little in {timeout_s} s: {proc.communicate()}")


def test_record_when_killed_with_sigkill_then_data_up_to_last_flush_is_readable(tmp_path: Path) -> None:
    proc = _engine("--venue", "binance", "--symbols", "BTCUSDT", "--out", str(tmp_path), "--flush-s", "0.2")
    try:
        _wait_recorded(tmp_path, proc, depth=10)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    events = list(read_events([tmp_path], tolerate_truncated_tail=True))
    assert sum(e.kind == "depth" for e in events) >= 10
    report = verify([tmp_path])
    assert report.symbols["BTCUSDT"].rebuilt and report.gap_count == 0
    try:  # strict reading: either every frame is whole, or the torn one is named
        strict = list(read_events([tmp_path]))
        assert len(strict) == len(events)
    except RecordingCorrupt as exc:
        assert "truncated" in exc.reason and report.truncated_files


def test_record_when_sigint_then_exit_0_and_files_complete(tmp_path: Path) -> None:
    proc = _engine(
        "--venue", "bybit", "--symbols", "BTCUSDT,ETHUSDT", "--out", str(tmp_path), "--flush-s", "0.5"
    )
    try:
        _wait_recorded(tmp_path, proc, depth=4, snapshot=False)  # Bybit: the topic snapshots are depth lines
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert b"record: stopped;" in out
    events = list(read_events([tmp_path]))  # strict: the last frame was flushed and closed whole
    assert {e.symbol for e in events if e.kind == "depth"} == {"BTCUSDT", "ETHUSDT"}
    assert verify([tmp_path]).ok


def test_record_when_bad_arguments_then_exit_2(tmp_path: Path) -> None:
    proc = _engine("--venue", "binance", "--symbols", "NOPEUSDT", "--out", str(tmp_path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and b"NOPEUSDT" in err
