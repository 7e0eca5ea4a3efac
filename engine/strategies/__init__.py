"""Strategies: the :class:`Strategy` interface, the registry by name, and the built-ins.

Importing this package registers the built-in strategies: ``ema_cross``, ``macd_rsi``, ``supertrend``,
``rsi_reversion``, ``bollinger_breakout``, ``imbalance_scalper``, ``ensemble`` (a weighted vote of
others) and ``portfolio`` (several strategies and symbols, each with its own allocation; what the
config's ``[[strategies]]`` array becomes).
"""

from __future__ import annotations

from engine.strategies.bar_strategy import BarStrategy
from engine.strategies.base import (
    STRATEGIES,
    Bar,
    BookSource,
    Strategy,
    StrategyParamError,
    UnknownStrategy,
    create,
    register,
)
from engine.strategies.bollinger_breakout import BollingerBreakout
from engine.strategies.ema_cross import EmaCross
from engine.strategies.ensemble import Ensemble
from engine.strategies.imbalance_scalper import ImbalanceScalper
from engine.strategies.macd_rsi import MacdRsi
from engine.strategies.portfolio import AllocatedSignal, StrategyPortfolio
from engine.strategies.rsi_reversion import RsiReversion
from engine.strategies.supertrend import SupertrendStrategy

__all__ = [
    "STRATEGIES",
    "AllocatedSignal",
    "Bar",
    "BarStrategy",
    "BollingerBreakout",
    "BookSource",
    "EmaCross",
    "Ensemble",
    "ImbalanceScalper",
    "MacdRsi",
    "RsiReversion",
    "Strategy",
    "StrategyParamError",
    "StrategyPortfolio",
    "SupertrendStrategy",
    "UnknownStrategy",
    "create",
    "register",
]
