"""The only module that imports the compiled kernels.

``engine.kernels`` re-exports the public names of every kernel module (book, book sync, indicators,
bars, risk). By default they come from the compiled Cython modules in ``engine._ext``; with
``ENGINE_PUREPYTHON=1`` in the environment they come from the pure-Python twins in ``engine._pure``,
which have the same API. The twins are also the oracle in tests and the reference in benchmarks, which
reach both sides in one process through :func:`load`.

Public names (relied on outside the project): ``OrderBook``, ``BinanceBookSync``, ``BybitBookSync``,
``SMA``, ``EMA``, ``WMA``, ``RSI``, ``ATR``, ``MACD``, ``Bollinger``, ``StdDev``, ``VWAP``,
``Supertrend``, ``Donchian``, ``OBV``, ``WaveTrend``, ``IndicatorSet``, ``BarBuilder``, the batch
functions, and the pre-trade ``RiskGate`` with its ``APPROVED`` / ``DENY_*`` codes, ``REASONS``,
``GATE_*`` states and ``FLAG_*`` bits; see each module's ``__all__``.
"""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace
from typing import Any, Literal

from engine.errors import KernelUnavailable

Kind = Literal["compiled", "pure"]

#: Kernel modules, by name; each exists as ``engine._ext.<name>`` and ``engine._pure.<name>``.
MODULES: tuple[str, ...] = ("book", "booksync", "indicators", "bars", "risk", "tickpath", "backtest")

IMPLEMENTATION: Kind = "pure" if os.environ.get("ENGINE_PUREPYTHON") == "1" else "compiled"

_PACKAGES: dict[Kind, str] = {"compiled": "engine._ext", "pure": "engine._pure"}
_cache: dict[Kind, SimpleNamespace] = {}


def load(kind: Kind) -> SimpleNamespace:
    """Return every public kernel name of one implementation as a namespace."""
    if kind in _cache:
        return _cache[kind]
    names: dict[str, Any] = {}
    for module_name in MODULES:
        qualified = f"{_PACKAGES[kind]}.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ImportError as exc:
            if kind == "compiled":
                raise KernelUnavailable(
                    f"compiled kernel {qualified} is not built ({exc}); run `make build`, "
                    "or set ENGINE_PUREPYTHON=1 to use the pure-Python twins"
                ) from exc
            raise
        for name in module.__all__:
            if name in names:
                raise RuntimeError(f"kernel name {name!r} exported twice (again by {qualified})")
            names[name] = getattr(module, name)
    namespace = SimpleNamespace(**names)
    _cache[kind] = namespace
    return namespace


_active = load(IMPLEMENTATION)
globals().update(vars(_active))
__all__ = ["IMPLEMENTATION", "MODULES", "load", *sorted(vars(_active))]
