"""The soak run, short: ``tools.soak.run_soak`` for ``ENGINE_SOAK_S`` seconds (CI default 30) at 100x
market speed. ``make soak`` runs the full 864 s (24 market hours) through ``python -m tools.soak``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tools.soak import Sample, _verdict, run_soak


async def test_soak_when_market_runs_100x_then_rss_flat_queues_bounded_streams_connected(
    tmp_path: Path,
) -> None:
    duration = float(os.environ.get("ENGINE_SOAK_S", "30"))
    result = await run_soak(duration_s=duration, speed=100, out=tmp_path)
    print(
        f"\nsoak: {result.duration_s} s = {result.market_hours} market h; RSS {result.rss_growth_pct:+.2f}%; "
        f"{result.events_per_s_mean} ev/s; acceleration {result.acceleration_achieved}x; "
        f"queues {result.max_queues}; growth {result.growth}"
    )
    assert result.ok, result.failures
    assert result.rss_growth_pct < 5.0
    assert result.orders_sent > 0 and result.fills > 0, "the strategy did not trade"
    assert result.acceleration_achieved >= 50, f"market ran at {result.acceleration_achieved}x only"
    assert (tmp_path / "soak.png").stat().st_size > 0 and (tmp_path / "soak.json").exists()


def _samples(n: int, **series: Any) -> list[Sample]:
    """``n`` one-second samples, flat unless ``series`` gives a per-index function for a field."""
    base: dict[str, Any] = {
        "rss_kb": lambda i: 100_000,
        "threads": lambda i: 6,
        "fds": lambda i: 25,
        "events_per_s": lambda i: 2000.0,
        "market_events": lambda i: 2000 * i,
        "user_queue": lambda i: 0,
        "market_queue": lambda i: 0,
        "inflight": lambda i: 1,
        "engine_tasks": lambda i: 3,
        "loop_tasks": lambda i: 16,
    }
    base.update(series)
    return [
        Sample(t_s=float(i), connected=True, **{name: f(i) for name, f in base.items()}) for i in range(n)
    ]


def _verdict_of(samples: list[Sample]) -> list[str]:
    return _verdict(samples, {}, {"venues": {}}, len(samples), 100, 0.3, 5.0).failures


def test_verdict_when_queue_spikes_for_a_second_late_then_not_growth_but_a_backlog_is() -> None:
    assert _verdict_of(_samples(300)) == []
    spike = _samples(300, market_queue=lambda i: 240 if i == 280 else (i % 7))
    assert _verdict_of(spike) == []
    backlog = _samples(300, market_queue=lambda i: max(0, i - 150))  # builds up: the p90 rises
    assert any(f.startswith("market_queue grew: p90") for f in _verdict_of(backlog))


def test_verdict_when_tasks_threads_or_rss_grow_then_failures_name_them() -> None:
    tasks = _samples(300, loop_tasks=lambda i: 16 + (i > 250) * 9)  # nine more tasks, late, at any moment
    assert any(f.startswith("loop_tasks grew: max 16 early, 25 late") for f in _verdict_of(tasks))
    rss = _samples(300, rss_kb=lambda i: 100_000 + 40 * i)  # +~8% after warm-up
    assert any(f.startswith("RSS grew") for f in _verdict_of(rss))
