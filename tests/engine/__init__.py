"""Helpers of the engine tests: a scripted local venue (static crowd books that tests move by hand) and
a started :class:`TradingEngine` with real Binance adapters connected to it.

``async with engine_on_venue(risk={...}) as h:`` gives ``h.engine``, ``h.venue`` (the VenueServer),
``h.core`` (its exchange core), ``h.account`` and ``h.move(symbol, ask)`` to move a symbol's market.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.adapters.base import AdapterSettings
from engine.alerts import Alerter
from engine.config import load_config
from engine.engine import TradingEngine
from engine.metrics import Metrics
from engine.strategies import Strategy
from engine.types import Signal, Venue
from engine.venue.exchange import Exchange
from engine.venue.instruments import default_instruments
from engine.venue.market import ManualSource
from engine.venue.server import AccountSpec, ShiftableClock, VenueServer

__all__ = ["KEY", "Harness", "Quiet", "engine_on_venue", "until"]

KEY = "engine-test-key"
SECRET = "engine-test-secret"
D = Decimal
BALANCE = D("100000")
#: symbol -> (best ask, crowd qty per level)
BOOKS: dict[str, tuple[Decimal, Decimal]] = {
    "BTCUSDT": (D("60000.0"), D("5")),
    "ETHUSDT": (D("3000.00"), D("50")),
}


#: the current best ask of each symbol's scripted crowd (``Harness.move`` changes it)
ASKS: dict[str, Decimal] = {}


async def _heartbeat(core: Exchange) -> None:
    """Keep depth updates flowing on a static market (a far bid level's size flips every 40 ms), so the
    adapters' books sync and stay live."""
    n = 0
    while True:
        await asyncio.sleep(0.04)
        n += 1
        for symbol, (_, qty) in BOOKS.items():
            spec = core.instruments[symbol]
            src = core.source(symbol)
            assert isinstance(src, ManualSource)
            src.set_level(True, ASKS[symbol] - spec.tick_size * 15, qty + (n % 2))


class Quiet(Strategy):
    """A strategy that never signals (tests submit signals themselves)."""

    name = "quiet_test"


def crowd(ask: Decimal, tick: Decimal, qty: Decimal, levels: int = 20) -> tuple[list[Any], list[Any]]:
    bids = [(ask - tick * (i + 1), qty) for i in range(levels)]
    asks = [(ask + tick * i, qty) for i in range(levels)]
    return bids, asks


@dataclass
class Harness:
    engine: TradingEngine
    venue: VenueServer
    core: Exchange
    account: str

    def move(self, symbol: str, ask: Decimal) -> None:
        spec = self.core.instruments[symbol]
        src = self.core.source(symbol)
        assert isinstance(src, ManualSource)
        bids, asks = crowd(ask, spec.tick_size, BOOKS[symbol][1])
        src.set_book(bids, asks)
        ASKS[symbol] = ask

    def venue_position(self, symbol: str) -> Decimal:
        return sum((p.qty for p in self.core.positions(self.account, symbol)), Decimal(0))

    def signal(self, symbol: str = "BTCUSDT", **kw: Any) -> Signal:
        return Signal(venue=Venue.BINANCE, symbol=symbol, **kw)


async def until(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return f'"{v}"'


def write_config(
    path: Path, *, risk: dict[str, object], engine: dict[str, object] | None = None, state_dir: Path
) -> Path:
    eng = {"mode": "paper", "state_dir": str(state_dir), "admin_socket": str(state_dir / "engine.sock")}
    eng.update(engine or {})
    lines = ["[engine]", *(f"{k} = {_toml_value(v)}" for k, v in eng.items())]
    lines += ["", "[[exchanges]]", 'name = "binance"', 'symbols = ["BTCUSDT", "ETHUSDT"]', ""]
    lines += ["[strategy]", 'name = "ema_cross"', "", "[risk]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in risk.items()]
    lines += ["", "[metrics]", 'bind = "127.0.0.1:0"']  # a free port: engines in parallel never collide
    path.write_text("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def engine_on_venue(
    tmp_path: Path,
    *,
    risk: dict[str, object] | None = None,
    engine: dict[str, object] | None = None,
    strategy: Strategy | None = None,
    journal: Any = None,
    usdt: Decimal = BALANCE,
    metrics: Metrics | None = None,
    alerter: Alerter | None = None,
) -> AsyncIterator[Harness]:
    clock = ShiftableClock()
    specs = default_instruments()
    sources = {}
    for symbol, (ask, qty) in BOOKS.items():
        bids, asks = crowd(ask, specs[symbol].tick_size, qty)
        sources[symbol] = ManualSource(
            tick_size=specs[symbol].tick_size, lot_size=specs[symbol].lot_size, bids=bids, asks=asks
        )
    core = Exchange(
        clock=clock,
        sources=sources,
        premium_weight=D(0),
        start_prices={s: a for s, (a, _) in BOOKS.items()},
        mark_interval_ms=100,
        step_ms=20,
    )
    server = VenueServer(
        core=core, clock=clock, tick_ms=20, accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=usdt)]
    )
    cfg = load_config(
        write_config(
            tmp_path / "engine.toml", risk=dict(risk or {}), engine=engine, state_dir=tmp_path / "var"
        )
    )
    ASKS.update({s: a for s, (a, _) in BOOKS.items()})
    async with server:
        beat = asyncio.create_task(_heartbeat(core))
        settings = AdapterSettings(
            venue=Venue.BINANCE,
            rest_url=server.base_url,
            ws_public_url=server.ws_url,
            ws_private_url=server.ws_url,
            api_key=KEY,
            api_secret=SECRET,
            symbols=("BTCUSDT", "ETHUSDT"),
            stale_after_s=30.0,
            request_timeout_s=3.0,
            reconnect_max_delay_s=0.5,
        )
        symbols = ((Venue.BINANCE, "BTCUSDT"), (Venue.BINANCE, "ETHUSDT"))
        eng = TradingEngine(
            config=cfg,
            settings=[settings],
            strategy=strategy or Quiet(params={}, symbols=symbols),
            journal=journal,
            metrics=metrics,
            alerter=alerter,
        )
        await eng.start()
        try:
            yield Harness(engine=eng, venue=server, core=core, account=KEY)
        finally:
            if not eng._stopped.is_set():
                await eng.stop(reason="test over")
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
