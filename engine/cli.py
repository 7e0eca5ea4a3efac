"""The ``engine`` command: ``engine run`` and, as later issues add them, ``ctl``, ``venue``,
``backtest`` and ``record``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="engine",
        description="Futures trading engine for Binance USD-M and Bybit v5 linear perpetuals.",
    )
    parser.add_argument("--version", action="version", version=f"engine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="start the engine (paper mode by default: the embedded local venue, no keys)",
        description=(
            "Start the trading engine. With no --config it uses config/paper.toml: paper mode against the "
            "embedded local venue (BTCUSDT and ETHUSDT on Binance, the built-in ema_cross strategy). It "
            "prints the admin socket path and a status line once a second. SIGINT/SIGTERM stop it "
            "gracefully (exit 0); a second signal forces exit. A bad config exits 2 before anything is "
            "sent to a venue."
        ),
    )
    run.add_argument("--config", metavar="PATH", help="config file (default: config/paper.toml)")
    run.add_argument("--admin-socket", metavar="PATH", help="admin socket path (default: the config's)")
    run.add_argument("--seed", type=int, default=7, help="paper mode: the embedded venue's market seed")
    run.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop gracefully after this long (default: run until a signal or the stop command)",
    )

    replay = commands.add_parser(
        "replay",
        help="replay a seeded generated market through the book and indicator kernels",
        description=(
            "Replay a generated market (seeded depth diffs and trades) through the order book and "
            "indicator kernels and print a live status line once a second. Ctrl-C stops it cleanly."
        ),
    )
    replay.add_argument("--seed", type=int, default=7, help="market generator seed (default 7)")
    replay.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C)",
    )
    replay.add_argument(
        "--rate", type=int, default=20_000, metavar="EVENTS_PER_S", help="market events per second to replay"
    )

    venue = commands.add_parser(
        "venue",
        help="run the local venue (Binance USD-M and Bybit v5 protocols on loopback) on its own",
        description=(
            "Run the local exchange: the real Binance USD-M and Bybit v5 (linear) REST and WebSocket "
            "protocols on one port, with a matching engine and a seeded market behind them."
        ),
    )
    venue.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    venue.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    venue.add_argument("--config", metavar="PATH", help="venue config file (TOML)")
    venue.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="KEY:SECRET:USDT_BALANCE",
        help="an account to create (repeatable); with none, one paper account is created",
    )
    venue.add_argument("--seed", type=int, default=7, help="market generator seed (default 7)")

    record = commands.add_parser(
        "record",
        help="record a venue's public market data (depth, trades, mark) to rotated zstd JSON-lines files",
        description=(
            "Record the public streams (depth diffs with their sequence ids, trades, mark price/tickers) "
            "of some symbols, plus the REST snapshots that rebuild the books, to "
            "DIR/{venue}-{YYYYmmddTHHMMSS}Z.jsonl.zst files rotated every --rotate-s seconds. "
            "SIGINT/SIGTERM stop it cleanly (the last frame is flushed)."
        ),
    )
    record.add_argument("--venue", required=True, choices=("binance", "bybit"))
    record.add_argument("--symbols", required=True, metavar="SYM,SYM", help="e.g. BTCUSDT,ETHUSDT")
    record.add_argument("--out", required=True, metavar="DIR", help="output directory")
    record.add_argument("--rest-url", metavar="URL", help="REST base URL (default: the real venue)")
    record.add_argument(
        "--ws-url",
        metavar="URL",
        help="WebSocket URL (Binance: the host, wss://fstream.binance.com; Bybit: the public linear URL)",
    )
    record.add_argument("--local", action="store_true", help="record from an embedded local venue")
    record.add_argument("--seed", type=int, default=7, help="--local: the venue's market seed")
    record.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    record.add_argument("--rotate-s", type=float, default=3600.0, metavar="S", help="rotate files every S s")
    record.add_argument(
        "--flush-s", type=float, default=1.0, metavar="S", help="write a complete zstd frame every S s"
    )

    backtest = commands.add_parser(
        "backtest",
        help="replay market data through the strategy, the risk manager and the local venue's matching",
        description=(
            "Replay recorded data (--data) or the seeded venue generator (--synthetic --seed N --events N) "
            "through the config's strategy, risk limits and the local venue's matching engine, and write "
            "DIR/summary.json, trades.csv, equity.csv, equity.png and report.html. Bad inputs exit 2."
        ),
    )
    backtest.add_argument("--config", required=True, metavar="PATH", help="engine config (TOML)")
    backtest.add_argument("--data", nargs="+", metavar="PATH", help="engine record files or directories")
    backtest.add_argument("--synthetic", action="store_true", help="use the seeded venue generator")
    backtest.add_argument("--seed", type=int, default=7, help="--synthetic: generator seed (default 7)")
    backtest.add_argument("--events", type=int, default=100_000, help="--synthetic: events to generate")
    backtest.add_argument("--out", required=True, metavar="DIR", help="report directory")
    backtest.add_argument("--slow", action="store_true", help="run the pure-Python reference path")
    backtest.add_argument("--funding-interval-ms", type=int, default=None, help="override the venue's 8 h")
    backtest.add_argument("--equity-interval-ms", type=int, default=1000, help="equity sample spacing")

    from engine.ctl import add_ctl_parser

    add_ctl_parser(commands)

    from engine.sweep import add_sweep_parser

    add_sweep_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from engine.engine import run_engine

        return run_engine(
            config_path=args.config, admin_socket=args.admin_socket, seed=args.seed, duration_s=args.duration
        )
    if args.command == "replay":
        from engine.replay import run_replay

        return run_replay(seed=args.seed, duration_s=args.duration, rate=args.rate)
    if args.command == "venue":
        from engine.venue.server import run_venue

        return run_venue(
            host=args.host, port=args.port, config_path=args.config, accounts=args.account, seed=args.seed
        )
    if args.command == "record":
        from engine.recorder import run_record

        return run_record(
            venue=args.venue,
            symbols=args.symbols,
            out=args.out,
            rest_url=args.rest_url,
            ws_url=args.ws_url,
            duration_s=args.duration,
            rotate_s=args.rotate_s,
            flush_s=args.flush_s,
            local=args.local,
            seed=args.seed,
        )
    if args.command == "backtest":
        from engine.backtest.cli import run_backtest_command

        return run_backtest_command(args)
    if args.command == "sweep":
        from engine.sweep import run_sweep_command

        return run_sweep_command(args)
    if args.command == "ctl":
        from engine.ctl import run_ctl

        return run_ctl(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
