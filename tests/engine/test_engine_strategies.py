"""The engine driving built-in strategies through the local venue: book-reading strategies get the
adapters' books, portfolio allocations size their signals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.strategies import create
from engine.types import Venue
from tests.engine import engine_on_venue, until

D = Decimal
SYMBOLS = ((Venue.BINANCE, "BTCUSDT"), (Venue.BINANCE, "ETHUSDT"))


async def test_imbalance_scalper_when_run_by_engine_then_reads_the_adapters_books(tmp_path: Path) -> None:
    strategy = create("imbalance_scalper", params={"qty": "0.001"}, symbols=SYMBOLS)
    async with engine_on_venue(tmp_path, strategy=strategy) as h:
        e = h.engine
        await until(lambda: e.counters["md_book"] >= 10, what="book updates reach the strategy")
        state = e.strategy.state()["symbols"]
        assert isinstance(state, dict)
        assert state["binance:BTCUSDT"]["imbalance"] is not None  # it read the local book
        assert state["binance:ETHUSDT"]["imbalance"] is not None
        assert e.counters["handler_errors"] == 0
        assert e.strategy.book(Venue.BINANCE, "BTCUSDT") is e.adapters[Venue.BINANCE].book("BTCUSDT")
