"""Strategies: the :class:`Strategy` interface, the registry by name, and the built-ins.

Importing this package registers the built-in strategies (``ema_cross``).
"""

from __future__ import annotations

from engine.strategies.base import (
    STRATEGIES,
    Bar,
    Strategy,
    StrategyParamError,
    UnknownStrategy,
    create,
    register,
)
from engine.strategies.ema_cross import EmaCross

__all__ = [
    "STRATEGIES",
    "Bar",
    "EmaCross",
    "Strategy",
    "StrategyParamError",
    "UnknownStrategy",
    "create",
    "register",
]
