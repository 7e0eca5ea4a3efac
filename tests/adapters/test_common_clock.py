"""The venue clock offset and the resync-once-retry-once rule."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.adapters.common.clock import VenueClock
from engine.errors import ClockSkew


async def test_sync_when_server_ahead_then_offset_measured_at_round_trip_midpoint() -> None:
    async def server_ms() -> int:
        return time.time_ns() // 1_000_000 + 5_000

    synced: list[int] = []
    clock = VenueClock(venue="x", fetch_server_ms=server_ms, resync_s=60, on_sync=synced.append)
    offset = await clock.sync()
    assert abs(offset - 5_000) <= 2 and synced == [offset]
    assert abs(clock.now_ms() - (time.time_ns() // 1_000_000 + 5_000)) <= 3


async def test_retry_on_skew_when_first_call_skewed_then_resyncs_and_retries_once() -> None:
    shift = {"ms": 0}

    async def server_ms() -> int:
        return time.time_ns() // 1_000_000 + shift["ms"]

    clock = VenueClock(venue="x", fetch_server_ms=server_ms, resync_s=60)
    await clock.sync()
    shift["ms"] = 3_000
    calls: list[int] = []

    async def signed() -> str:
        calls.append(clock.offset_ms)
        if abs(clock.offset_ms - shift["ms"]) > 100:
            raise ClockSkew(venue="x", code=-1021, message="outside recvWindow")
        return "ok"

    assert await clock.retry_on_skew(signed) == "ok"
    assert len(calls) == 2 and clock.skew_retries == 1


async def test_retry_on_skew_when_still_skewed_then_second_error_propagates() -> None:
    async def server_ms() -> int:
        return time.time_ns() // 1_000_000

    clock = VenueClock(venue="x", fetch_server_ms=server_ms, resync_s=60)

    async def always() -> None:
        raise ClockSkew(venue="x", code=-1021, message="skew")

    with pytest.raises(ClockSkew):
        await clock.retry_on_skew(always)


async def test_background_resync_when_started_then_runs_every_period_until_stopped() -> None:
    async def server_ms() -> int:
        return time.time_ns() // 1_000_000

    clock = VenueClock(venue="x", fetch_server_ms=server_ms, resync_s=0.02, samples=1)
    clock.start()
    await asyncio.sleep(0.15)
    await clock.stop()
    assert clock.syncs >= 3
