"""The soak run, short: ``tools.soak.run_soak`` for ``ENGINE_SOAK_S`` seconds (CI default 30) at 100x
market speed. ``make soak`` runs the full 864 s (24 market hours) through ``python -m tools.soak``."""

from __future__ import annotations

import os
from pathlib import Path

from tools.soak import run_soak


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
