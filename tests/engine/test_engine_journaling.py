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


async def _resting_buy(h: Any) -> tuple[str, Any]:
    """A 0.05 limit buy sent through the engine 2% under the mark (it rests, inside the venue's 5% price
    band): its client id and the OMS's order."""
    from engine.types import OrderStatus

    price = Decimal(h.core.mark("BTCUSDT").mark_price * D("0.98")).quantize(D("0.1"))
    res = h.engine.submit_signal(
        h.signal(side=Side.BUY, qty=D("0.05"), type=OrderType.LIMIT, limit_price=price)
    )
    assert res.task is not None and await res.task is not None
    cid = res.client_order_id
    assert cid is not None
    tracked = h.engine.oms.order(Venue.BINANCE, cid)
    assert tracked is not None and tracked.status is OrderStatus.NEW
    return cid, tracked.order


def _fill(order: Any, trade_id: str, qty: str) -> Any:
    from engine.types import Fill

    return Fill(
        venue=order.venue,
        symbol=order.symbol,
        client_order_id=order.client_order_id,
        venue_order_id=order.venue_order_id,
        trade_id=trade_id,
        side=order.side,
        position_side=order.position_side,
        price=order.price,
        qty=D(qty),
        fee=D("0.01"),
        fee_asset="USDT",
        is_maker=True,
        realized_pnl=D(0),
        ts_ms=order.ts_ms + 1,
    )


async def test_fill_when_order_known_filled_before_its_trades_then_intent_finished_only_by_the_last(
    tmp_path: Path,
) -> None:
    # the venue's answer (a REST ack, a reconcile) can say FILLED before the stream delivers the trades;
    # journaling the first trade as "filled" would finish the intent, and a kill before the second trade
    # would lose it for good (recovery only revisits unfinished intents)
    import dataclasses

    from engine.types import OrderStatus, OrderUpdate

    journal = Journal(tmp_path / "journal.sqlite")
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}, journal=journal) as h:
        e = h.engine
        cid, order = await _resting_buy(h)
        filled = dataclasses.replace(
            order, status=OrderStatus.FILLED, filled_qty=D("0.05"), ts_ms=order.ts_ms + 5
        )
        e._on_order_update(OrderUpdate(order=filled, fill=None))  # FILLED, no trade seen yet
        e._on_order_update(OrderUpdate(order=filled, fill=_fill(order, "t1", "0.02")))
        await journal.flush()
        assert cid in {i.client_order_id for i in await journal.unfinished_intents()}
        e._on_order_update(OrderUpdate(order=filled, fill=_fill(order, "t2", "0.03")))
        await journal.flush()
        assert cid not in {i.client_order_id for i in await journal.unfinished_intents()}
        statuses = [o.data["status"] for o in await journal.outcomes(cid) if o.kind == "fill"]
        assert statuses == ["partially_filled", "filled"]


async def test_cancel_when_order_ended_with_trades_unseen_then_cancel_journaled_after_the_last(
    tmp_path: Path,
) -> None:
    import dataclasses

    from engine.types import OrderStatus, OrderUpdate

    journal = Journal(tmp_path / "journal.sqlite")
    async with engine_on_venue(tmp_path, risk={"max_order_notional": "50000"}, journal=journal) as h:
        e = h.engine
        cid, order = await _resting_buy(h)
        canceled = dataclasses.replace(
            order, status=OrderStatus.CANCELED, filled_qty=D("0.02"), ts_ms=order.ts_ms + 5
        )
        e._on_order_update(OrderUpdate(order=canceled, fill=None))  # canceled after a trade not yet seen
        await journal.flush()
        assert cid in {i.client_order_id for i in await journal.unfinished_intents()}
        assert "cancel" not in [o.kind for o in await journal.outcomes(cid)]
        e._on_order_update(OrderUpdate(order=canceled, fill=_fill(order, "t1", "0.02")))
        await journal.flush()
        assert cid not in {i.client_order_id for i in await journal.unfinished_intents()}
        assert [o.kind for o in await journal.outcomes(cid)][-2:] == ["fill", "cancel"]
