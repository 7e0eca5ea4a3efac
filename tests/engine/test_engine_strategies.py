"""The engine driving built-in strategies through the local venue: book-reading strategies get the
adapters' books, portfolio allocations size their signals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from engine.risk import Approved
from engine.strategies import create
from engine.strategies.portfolio import AllocatedSignal
from engine.types import Side, Venue
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


async def test_allocated_signal_without_qty_when_submitted_then_sized_on_its_share_of_equity(
    tmp_path: Path,
) -> None:
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}) as h:
        e = h.engine
        whole = e.risk_manager.size(Venue.BINANCE, "BTCUSDT")
        half = e.risk_manager.size(Venue.BINANCE, "BTCUSDT", allocation=D("0.5"))
        assert isinstance(whole, Decimal) and isinstance(half, Decimal) and half < whole
        sig = AllocatedSignal(venue=Venue.BINANCE, symbol="BTCUSDT", side=Side.BUY, allocation=D("0.5"))
        res = e.submit_signal(sig)
        assert isinstance(res.decision, Approved) and res.decision.sized
        assert res.decision.qty == half
        assert res.task is not None and await res.task is not None
        await until(lambda: h.venue_position("BTCUSDT") == half, what="the allocated size on the venue")
        plain = e.submit_signal(h.signal(side=Side.SELL))  # a plain Signal: the whole equity
        assert isinstance(plain.decision, Approved) and plain.decision.qty == whole
