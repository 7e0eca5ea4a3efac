"""The one way benchmarks record a measurement, so that ``benchmarks.report`` can pair them.

A *case* is one operation (``book.apply_update``, ``indicators.set``...). Each case has one ``kernel``
row (the compiled kernel), one ``twin`` row (its pure-Python twin, the reference) and any number of
``peer:<name>`` rows (other libraries doing the same work). Every row measures a batch of ``ops``
operations per round, so the per-operation time excludes the harness's own call overhead; the report
divides by ``ops``.

``min_ratio`` on the kernel row is the bar CI enforces: twin median / kernel median must be at least that.
``targets`` are the issue's further goals (ratios against peers, ``max_ns`` per operation); the report
prints whether each is met but never fails on them, because absolute times on shared machines are noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["ROUNDS", "measure"]

#: Rounds per row: few in CI's short mode (``ENGINE_BENCH_SHORT=1``), more for ``make bench``.
ROUNDS: int = 7 if os.environ.get("ENGINE_BENCH_SHORT") == "1" else 60


def measure(
    benchmark: Any,
    *,
    case: str,
    role: str,
    ops: int,
    fn: Callable[[], object],
    setup: Callable[[], object] | None = None,
    min_ratio: float | None = None,
    targets: dict[str, float] | None = None,
    rounds: int | None = None,
) -> None:
    """Time ``fn`` (one batch of ``ops`` operations) for ``rounds`` rounds, after ``setup`` each round."""
    if role != "kernel" and (min_ratio is not None or targets):
        raise ValueError("min_ratio and targets belong on the kernel row")
    if not (role in ("kernel", "twin") or role.startswith("peer:")):
        raise ValueError(f"role must be kernel, twin or peer:<name>, not {role!r}")
    benchmark.group = case
    benchmark.extra_info.update(case=case, role=role, ops=ops)
    if min_ratio is not None:
        benchmark.extra_info["min_ratio"] = min_ratio
    if targets:
        benchmark.extra_info["targets"] = dict(targets)
    fn()  # warm-up outside the timed rounds (also proves the batch runs)

    def _setup() -> None:
        if setup is not None:
            setup()

    benchmark.pedantic(fn, setup=_setup, rounds=rounds or ROUNDS, iterations=1, warmup_rounds=1)
