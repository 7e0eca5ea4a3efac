"""End-to-end latency over loopback (``benchmarks.latency``): writes ``bench-results/latency.json``,
which ``python -m benchmarks.latency --check`` (a step of ``make bench`` / ``make bench-short``) checks.

Short in CI (``ENGINE_BENCH_SHORT=1``), full in ``make bench``. Not a pytest-benchmark row: the figures
are percentiles of timestamps carried inside the messages, not timings of a call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.latency import CONFIGS, render, run_all

OUT = Path(os.environ.get("ENGINE_LATENCY_JSON", "bench-results/latency.json"))


def test_end_to_end_latency_when_measured_then_every_configuration_reported(benchmark: Any) -> None:
    # one pedantic round so ``--benchmark-only`` runs it; the row has no ``case``, so the kernel report
    # ignores it (the figures are in the JSON file)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    short = os.environ.get("ENGINE_BENCH_SHORT") == "1"
    data: dict[str, Any] = benchmark.pedantic(lambda: run_all(OUT, short=short), rounds=1, iterations=1)
    print("\n" + render(data))
    assert set(data["configs"]) == {f"{loop}+{kind}" for loop, kind in CONFIGS}
    for cfg in data["configs"].values():
        assert cfg["depth"]["n"] > 100 and cfg["t2t"]["n"] > 20
