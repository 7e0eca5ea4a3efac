"""``engine backtest``: argument checks, the run, and exit codes (0 ok, 2 bad input)."""

from __future__ import annotations

import argparse
import logging
import sys
from decimal import Decimal

from engine.backtest import BacktestError, DataError, recorded_source, run_backtest, synthetic_source
from engine.config import load_config
from engine.errors import ConfigError, EngineError
from engine.strategies import StrategyParamError, UnknownStrategy

__all__ = ["run_backtest_command"]

log = logging.getLogger(__name__)


def _fail(msg: str) -> int:
    print(f"engine backtest: error: {msg}", file=sys.stderr)
    return 2


def run_backtest_command(args: argparse.Namespace) -> int:
    if bool(args.data) == bool(args.synthetic):
        return _fail("give exactly one of --data PATH... or --synthetic")
    if args.synthetic and args.events < 1:
        return _fail(f"--events must be >= 1, got {args.events}")
    if args.seed < 0:
        return _fail(f"--seed must be >= 0, got {args.seed}")
    try:
        cfg = load_config(args.config)
        source = (
            synthetic_source(cfg, seed=args.seed, events=args.events)
            if args.synthetic
            else recorded_source(args.data)
        )
        summary = run_backtest(
            cfg,
            source,
            out_dir=args.out,
            seed=args.seed,
            fast=not args.slow,
            deposit=Decimal("10000"),
            funding_interval_ms=args.funding_interval_ms,
            equity_interval_ms=args.equity_interval_ms,
        )
    except (ConfigError, BacktestError, DataError, StrategyParamError, UnknownStrategy, ValueError) as exc:
        return _fail(str(exc))
    except EngineError as exc:
        return _fail(f"{type(exc).__name__}: {exc}")
    m = summary.metrics
    print(
        f"backtest_done trades={m['trades']} final_equity={m['final_equity']} "
        f"total_return={m['total_return']} "
        f"events={m['events']} events_per_s={m['events_per_s']} out={args.out}"
    )
    return 0
