"""``engine.signal_to_wire``: a strategy signal into the engine until the order is on the wire at the
local venue (report-only; no twin, no CI bar).

The venue runs in-process on the same uvloop loop with static scripted books (``tests.engine``'s
harness); the engine uses the real Binance adapter over loopback HTTP. One operation: ``submit_signal``
(risk check, client id, OMS intent) -> the send task (no journal, so the number is the engine's own
path, not SQLite's fsync) -> python-binance signs and posts -> the venue's core accepts the order, seen
by a core listener (``time.perf_counter_ns`` on both sides: same process). Market orders alternate buy
and sell, so the position stays flat. p50 and p99 of every operation over the rounds go to
``extra_info`` (``p50_us``, ``p99_us``) and are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvloop

from benchmarks.harness import measure
from engine.types import Side
from engine.venue.model import OrderEvent, VenueEvent
from tests.engine import Harness, engine_on_venue

OPS = 20  # signals per round


class _Bench:
    def __init__(self) -> None:
        self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        self.tmp = tempfile.TemporaryDirectory()
        self._cm: contextlib.AbstractAsyncContextManager[Harness] | None = None
        self.h: Harness | None = None
        self.seen: dict[str, int] = {}
        self.samples: list[int] = []
        self.side = Side.BUY

    def _on_venue(self, ev: VenueEvent) -> None:
        if isinstance(ev, OrderEvent) and ev.order.client_order_id not in self.seen:
            self.seen[ev.order.client_order_id] = time.perf_counter_ns()

    async def open(self) -> None:
        self._cm = engine_on_venue(Path(self.tmp.name), risk={"max_order_notional": "100000"})
        self.h = await self._cm.__aenter__()
        self.h.core.add_listener(self._on_venue)

    async def batch(self) -> None:
        h = self.h
        assert h is not None
        for _ in range(OPS):
            t0 = time.perf_counter_ns()
            res = h.engine.submit_signal(h.signal(side=self.side, qty=Decimal("0.002")))
            self.side = self.side.opposite
            assert res.task is not None and res.client_order_id is not None, res.decision
            await res.task
            self.samples.append(self.seen[res.client_order_id] - t0)

    async def close(self) -> None:
        if self._cm is not None:
            await self._cm.__aexit__(None, None, None)


@pytest.fixture(scope="module")
def bench() -> Iterator[_Bench]:
    b = _Bench()
    b.runner.run(b.open())
    yield b
    b.runner.run(b.close())
    b.runner.close()
    b.tmp.cleanup()


def _pct(data: list[int], q: float) -> float:
    s = sorted(data)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] / 1000.0


def test_signal_to_wire(benchmark: Any, bench: _Bench) -> None:
    measure(
        benchmark,
        case="engine.signal_to_wire",
        role="kernel",
        ops=OPS,
        fn=lambda: bench.runner.run(bench.batch()),
    )
    p50, p99 = _pct(bench.samples, 0.5), _pct(bench.samples, 0.99)
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, samples=len(bench.samples))
    print(f"\nengine.signal_to_wire: p50 {p50:.0f} us, p99 {p99:.0f} us over {len(bench.samples)} signals")
