"""What the engine writes to its journal through the local venue: the risk baseline from start-up on,
exact order requests as intents, fill outcomes that finish their orders."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.journal import Journal
from engine.risk import Approved
from engine.types import Balance, OrderType, Side, Venue
from tests.engine import BALANCE, engine_on_venue, until

D = Decimal


def _saved_risk_states(path: Path) -> list[dict[str, Any]]:
    """Every risk state committed so far (a read-only connection beside the running engine)."""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in con.execute("SELECT state FROM risk_state ORDER BY id")]
    finally:
        con.close()


async def test_start_when_returned_then_start_of_day_equity_already_committed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with engine_on_venue(tmp_path, journal=Journal(path)) as h:
        # no await since start() returned: nothing but start() itself can have written this
        saved = _saved_risk_states(path)
        assert saved, "no risk state committed by the end of start()"
        assert D(saved[-1]["start_of_day_equity"]) == BALANCE
        assert D(saved[-1]["high_water_mark"]) == BALANCE
        assert h.engine.state.value == "running"


async def test_equity_when_new_high_water_mark_then_risk_state_saved_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    async with engine_on_venue(tmp_path, journal=journal) as h:
        e = h.engine
        e._last_timer_ms = 2**62  # keep the once-a-second housekeeping save out of this test
        before = len(_saved_risk_states(path))
        higher = BALANCE + D("250")
        e.oms.on_balance(
            Balance(
                venue=Venue.BINANCE,
                asset="USDT",
                wallet_balance=higher,
                available_balance=higher,
                unrealized_pnl=D(0),
                ts_ms=e.now_ms(),
            )
        )
        e._check_equity()
        await journal.flush()
        saved = _saved_risk_states(path)
        assert len(saved) == before + 1
        assert D(saved[-1]["high_water_mark"]) == higher
        assert D(saved[-1]["start_of_day_equity"]) == BALANCE  # the day's start is unchanged
        e._check_equity()  # the same equity again: no new baseline, nothing written
        await journal.flush()
        assert len(_saved_risk_states(path)) == before + 1


async def test_equity_when_risk_state_not_yet_restored_then_neither_fed_to_risk_nor_journaled(
    tmp_path: Path,
) -> None:
    # during start-up a balance can reach the engine before recovery restored the journal's risk state;
    # feeding it then would set a fresh start-of-day equity and journal it, and a kill at that moment
    # would reset the PnL baseline on the next start (seen once in the 50-kill crash test)
    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    async with engine_on_venue(tmp_path, journal=journal) as h:
        e = h.engine
        e._last_timer_ms = 2**62  # keep the once-a-second housekeeping save out of this test
        e._risk_restored = False  # as before _recover() has restored the journal's risk state
        baseline = e.risk_manager.baseline
        before = len(_saved_risk_states(path))
        higher = BALANCE + D("250")
        e.oms.on_balance(
            Balance(
                venue=Venue.BINANCE,
                asset="USDT",
                wallet_balance=higher,
                available_balance=higher,
                unrealized_pnl=D(0),
                ts_ms=e.now_ms(),
            )
        )
        e._check_equity()
        await journal.flush()
        assert e.risk_manager.baseline == baseline
        assert len(_saved_risk_states(path)) == before
        e._risk_restored = True  # once restored, the same equity moves the high-water mark
        e._check_equity()
        await journal.flush()
        assert D(_saved_risk_states(path)[-1]["high_water_mark"]) == higher


async def test_stop_loss_when_placed_then_intent_holds_the_exact_request(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}, journal=journal) as h:
        res = h.engine.submit_signal(
            h.signal(side=Side.BUY, qty=D("0.05"), stop_loss=D("59000"), take_profit=D("61000"))
        )
        assert isinstance(res.decision, Approved)
        await until(lambda: len(h.core.open_orders(h.account, "BTCUSDT")) == 2, what="venue stop and target")
        await journal.flush()
        intents = {i.type: i for i in await journal.intents()}
    stop = intents[OrderType.STOP_MARKET]
    assert stop.trigger_price == D("59000") and stop.price is None  # not the trigger as a limit price
    assert stop.reduce_only and stop.side is Side.SELL and stop.qty == D("0.05")
    assert stop.request().trigger_price == D("59000")
    target = intents[OrderType.TAKE_PROFIT_MARKET]
    assert target.trigger_price == D("61000") and target.price is None and target.reduce_only
    entry = intents[OrderType.MARKET]
    assert entry.price is None and entry.trigger_price is None and not entry.reduce_only


async def test_fill_when_order_filled_then_outcome_has_status_and_intent_finished(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}, journal=journal) as h:
        e = h.engine
        res = e.submit_signal(h.signal(side=Side.BUY, qty=D("0.05")))
        assert res.task is not None and await res.task is not None
        cid = res.client_order_id
        assert cid is not None
        await until(lambda: e.oms.position(Venue.BINANCE, "BTCUSDT").qty == D("0.05"), what="filled")
        await journal.flush()
        fills = [o for o in await journal.outcomes(cid) if o.kind == "fill"]
        assert fills and fills[-1].data["status"] == "filled"
        assert cid not in {i.client_order_id for i in await journal.unfinished_intents()}
