"""The backtester: ``run_backtest(config, source, *, out_dir, seed)`` and the ``engine backtest`` command.

``source`` is a :class:`~engine.backtest.sources.MarketData` (:func:`synthetic_source` for the seeded
venue generator, :func:`~engine.backtest.sources.recorded` for ``engine record`` files). The replay runs
the config's strategy (from the registry), the ``UnifiedRiskManager`` built from ``[risk]`` and the local
venue's exchange core (see :mod:`engine.backtest.runner`). With ``out_dir`` the report directory is
written (:mod:`engine.backtest.report`). The same inputs and seed give byte-identical ``summary.json``
(less ``events_per_s``) and ``trades.csv``; the fast and the slow path give the same results.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.backtest.metrics import compute
from engine.backtest.report import write_report
from engine.backtest.runner import BacktestError, Replay, ReplayResult
from engine.backtest.sources import DataError, MarketData, recorded, synthetic
from engine.config import EngineConfig
from engine.risk import RiskLimits
from engine.venue.instruments import load_instruments, load_start_prices

__all__ = [
    "DEFAULT_DEPOSIT",
    "BacktestError",
    "DataError",
    "MarketData",
    "Summary",
    "recorded",
    "recorded_source",
    "run_backtest",
    "synthetic_source",
]

DEFAULT_DEPOSIT = Decimal("10000")


@dataclass(frozen=True)
class Summary:
    """``metrics`` is exactly what ``summary.json`` holds; ``result`` the trades and equity curve."""

    metrics: dict[str, Any]
    result: ReplayResult


def _symbols(config: EngineConfig) -> tuple[Any, list[str]]:
    if len(config.exchanges) != 1:
        raise BacktestError(f"a backtest runs on one venue; the config lists {len(config.exchanges)}")
    ex = config.exchanges[0]
    return ex.name, list(ex.symbols)


def synthetic_source(config: EngineConfig, *, seed: int, events: int, step_ms: int = 100) -> MarketData:
    """The local venue's seeded generator for the config's symbols (default instruments and prices)."""
    _, symbols = _symbols(config)
    specs = load_instruments()
    missing = [s for s in symbols if s not in specs]
    if missing:
        raise BacktestError(
            f"no instrument spec for {', '.join(missing)} (known: {', '.join(sorted(specs))})"
        )
    chosen = [specs[s] for s in symbols]
    prices = load_start_prices(None, {s.symbol: s for s in chosen})
    return synthetic(chosen, seed=seed, events=events, start_prices=prices, step_ms=step_ms)


def recorded_source(paths: list[Path | str]) -> MarketData:
    """``engine record`` files (Binance USD-M), instruments from the venue's defaults."""
    return recorded(paths, load_instruments())


def run_backtest(
    config: EngineConfig,
    source: MarketData,
    *,
    out_dir: Path | str | None,
    seed: int,
    fast: bool = True,
    deposit: Decimal = DEFAULT_DEPOSIT,
    funding_interval_ms: int | None = None,
    equity_interval_ms: int = 1000,
    impl: Any = None,
) -> Summary:
    """Replay ``source`` through the config's strategy and risk limits; write the report to ``out_dir``
    (None: no files, e.g. in a sweep). ``seed`` is recorded in the summary (the data's own seed made it).
    Raises :class:`BacktestError` / :class:`DataError` with a message naming the bad input."""
    venue, symbols = _symbols(config)
    unknown = [s for s in source.symbols if s not in symbols]
    if unknown:
        raise BacktestError(f"the data holds {', '.join(unknown)}, not in the config's symbols {symbols}")
    limits = (
        config.risk_limits
        if isinstance(config.risk_limits, RiskLimits)
        else RiskLimits.from_mapping(config.risk)
    )
    replay = Replay(
        data=source,
        venue=venue,
        strategy_name=config.strategy.name,
        strategy_params=dict(config.strategy.params),
        risk_limits=limits,
        deposit=deposit,
        fast=fast,
        funding_interval_ms=funding_interval_ms,
        equity_interval_ms=equity_interval_ms,
        impl=impl,
    )
    res = replay.run()
    metrics = compute(res, equity_interval_ms=equity_interval_ms)
    metrics["seed"] = seed
    metrics["strategy"] = config.strategy.name
    metrics["symbols"] = list(source.symbols)
    metrics["data"] = source.description
    if out_dir is not None:
        write_report(Path(out_dir), res, metrics, title=f"{config.strategy.name} on {source.description}")
    return Summary(metrics=metrics, result=res)
