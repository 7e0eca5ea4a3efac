"""The offset between the local clock and a venue's server time.

:class:`VenueClock` measures ``server_ms - local_ms`` as the midpoint of a request's round trip, at
start and every ``resync_s`` (a background task), keeps the measurement with the shortest round trip
among a few samples, and gives ``now_ms()`` = local time + offset. ``retry_on_skew`` runs a signed
request and, on :class:`~engine.errors.ClockSkew` (Binance -1021 / Bybit 10002), resyncs once and
retries once; a second skew propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.adapters.common import cancel_task
from engine.errors import ClockSkew, EngineError

__all__ = ["VenueClock"]

log = logging.getLogger("engine.adapters.clock")

T = TypeVar("T")


class VenueClock:
    """Offset to one venue's clock. ``fetch_server_ms`` is an unsigned server-time request."""

    def __init__(
        self,
        *,
        venue: str,
        fetch_server_ms: Callable[[], Awaitable[int]],
        resync_s: float,
        samples: int = 3,
        on_sync: Callable[[int], None] | None = None,
    ) -> None:
        self.venue = venue
        self._fetch = fetch_server_ms
        self.resync_s = resync_s
        self.samples = max(1, samples)
        self._on_sync = on_sync
        self.offset_ms = 0
        self.rtt_ms = 0.0
        self.syncs = 0
        self.skew_retries = 0
        self._task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    def now_ms(self) -> int:
        """The venue's time now, as measured (epoch ms)."""
        return time.time_ns() // 1_000_000 + self.offset_ms

    async def sync(self) -> int:
        """Measure the offset now (best of ``samples`` round trips); returns it in ms."""
        async with self._sync_lock:
            best: tuple[float, int] | None = None
            for _ in range(self.samples):
                t0 = time.time_ns()
                server_ms = await self._fetch()
                t1 = time.time_ns()
                rtt_ms = (t1 - t0) / 1e6
                offset = server_ms - (t0 + t1) // 2_000_000
                if best is None or rtt_ms < best[0]:
                    best = (rtt_ms, offset)
            assert best is not None
            self.rtt_ms, self.offset_ms = best
            self.syncs += 1
            log.info(
                "clock_synced venue=%s offset_ms=%d rtt_ms=%.2f", self.venue, self.offset_ms, self.rtt_ms
            )
            if self._on_sync is not None:
                self._on_sync(self.offset_ms)
            return self.offset_ms

    async def retry_on_skew(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; on ClockSkew resync once and retry once."""
        try:
            return await call()
        except ClockSkew as exc:
            self.skew_retries += 1
            log.warning("clock_skew_retry venue=%s code=%s", self.venue, exc.code)
            await self.sync()
            return await call()

    # ---- background resync ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"{self.venue}-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except EngineError as exc:  # the next period tries again; the old offset stays in use
                log.warning("clock_sync_failed venue=%s error=%r", self.venue, str(exc))
