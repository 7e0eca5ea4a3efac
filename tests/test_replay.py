"""``engine replay``: the generated market replayed live through the kernels, as a real subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATUS = re.compile(
    r"^BTCUSDT bid (?P<bid>[\d.]+) x [\d.]+ \| ask (?P<ask>[\d.]+) x [\d.]+ \| spread (?P<spread>\d+)t \| "
    r"EMA20 \S+ RSI14 \S+ ATR14 \S+ MACD \S+ \| bars [\d,]+ \| "
    r"(?P<rate>[\d,]+) ev/s \| gaps (?P<gaps>\d+) \| "
    r"(?P<impl>compiled|pure)$"
)
SUMMARY = re.compile(r"^summary: (?P<events>[\d,]+) events in [\d.]+ s .* \| stopped by (?P<reason>\S+)$")


@pytest.mark.parametrize("kind", ["compiled", "pure"])
def test_replay_when_events_consumed_then_kernel_book_equals_generator_book(kind: str) -> None:
    from engine.kernels import load
    from engine.replay import Replay

    replay = Replay(kernels=load(kind), implementation=kind, seed=3)
    t0 = 1_700_000_000_000
    replay.consume(replay.start(t0))
    for i in range(1, 41):
        replay.consume(replay.produce(t0 + i * 250, 400))
        _, bids, asks = replay.gen.book()
        assert replay.book.levels_ticks("bid", len(bids) + 5) == bids
        assert replay.book.levels_ticks("ask", len(asks) + 5) == asks
    c = replay.counters
    assert replay.sync.gaps == 0
    assert c.resyncs == 1
    assert c.applied + c.stale == c.depth
    assert c.depth + c.trades == c.events
    assert c.bars >= 8  # 10 s of market time in 1 s bars
    assert c.bad_trades == 0
    line = replay.status_line(1234.0)
    assert STATUS.match(line), line


@pytest.mark.parametrize("kind", ["compiled", "pure"])
def test_replay_when_depth_event_lost_then_gap_resync_and_book_matches_again(kind: str) -> None:
    from engine.kernels import load
    from engine.replay import Replay

    replay = Replay(kernels=load(kind), implementation=kind, seed=4)
    t0 = 1_700_000_000_000
    replay.consume(replay.start(t0))
    batch = replay.produce(t0 + 250, 400)
    depth = [i for i, raw in enumerate(batch) if raw.startswith(b'{"e":"depthUpdate"')]
    del batch[depth[10]]  # a lost message
    replay.consume(batch)
    assert replay.sync.gaps == 1
    assert replay.counters.resyncs == 2
    replay.consume(replay.produce(t0 + 500, 400))
    _, bids, asks = replay.gen.book()
    assert replay.book.levels_ticks("bid", len(bids) + 5) == bids
    assert replay.book.levels_ticks("ask", len(asks) + 5) == asks
    assert replay.sync.gaps == 1


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", "replay", "--rate", "5000", *args]


def _status_lines(stdout: str) -> list[re.Match[str]]:
    return [m for line in stdout.splitlines() if (m := STATUS.match(line))]


@pytest.mark.parametrize("impl", ["compiled", "pure"])
def test_run_when_duration_then_status_lines_and_exit_zero(impl: str) -> None:
    env = dict(os.environ, ENGINE_PUREPYTHON="1" if impl == "pure" else "0")
    result = subprocess.run(
        _cmd("--duration", "3"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = _status_lines(result.stdout)
    assert len(lines) >= 2, result.stdout
    for m in lines:
        assert Decimal(m["bid"]) < Decimal(m["ask"])
        assert int(m["spread"]) >= 1
        assert int(m["rate"].replace(",", "")) > 0
        assert m["gaps"] == "0"
        assert m["impl"] == impl
    summary = SUMMARY.match(result.stdout.splitlines()[-1])
    assert summary is not None, result.stdout
    assert summary["reason"] == "duration"
    assert int(summary["events"].replace(",", "")) > 1000


def test_run_when_sigint_then_clean_stop_with_summary() -> None:
    proc = subprocess.Popen(_cmd(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.2)
        assert proc.poll() is None, "exited before the signal"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = SUMMARY.match(stdout.splitlines()[-1])
    assert summary is not None, stdout
    assert summary["reason"] == "SIGINT"
    assert int(summary["events"].replace(",", "")) > 0


def test_run_when_sigterm_then_clean_stop_with_summary() -> None:
    proc = subprocess.Popen(_cmd(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    summary = SUMMARY.match(stdout.splitlines()[-1])
    assert summary is not None, stdout
    assert summary["reason"] == "SIGTERM"
