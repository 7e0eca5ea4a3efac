"""engine.kernels serves the compiled kernels by default and the pure-Python twins on request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine import kernels

PUBLIC_NAMES = (
    "OrderBook BinanceBookSync BybitBookSync SMA EMA WMA RSI ATR MACD Bollinger StdDev VWAP Supertrend "
    "Donchian OBV WaveTrend IndicatorSet BarBuilder"
).split()


def _probe(env_pure: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ENGINE_PUREPYTHON"}
    if env_pure is not None:
        env["ENGINE_PUREPYTHON"] = env_pure
    code = (
        "from engine import kernels; "
        "print(kernels.IMPLEMENTATION, kernels.OrderBook.__module__, kernels.EMA.__module__)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_kernels_when_no_env_then_compiled_modules() -> None:
    assert _probe(None) == "compiled engine._ext.book engine._ext.indicators"


def test_kernels_when_purepython_env_then_twins() -> None:
    assert _probe("1") == "pure engine._pure.book engine._pure.indicators"


@pytest.mark.parametrize("kind", ["compiled", "pure"])
def test_load_when_either_kind_then_every_public_name_present(kind: str) -> None:
    namespace = kernels.load(kind)  # type: ignore[arg-type]
    missing = [name for name in PUBLIC_NAMES if not hasattr(namespace, name)]
    assert missing == []


def test_load_when_both_kinds_then_same_public_names() -> None:
    assert sorted(vars(kernels.load("compiled"))) == sorted(vars(kernels.load("pure")))


def test_module_exports_when_imported_then_active_implementation_names() -> None:
    for name in PUBLIC_NAMES:
        assert name in kernels.__all__
        assert getattr(kernels, name) is getattr(kernels.load(kernels.IMPLEMENTATION), name)
