"""Property: random signal sequences and random prices through the engine and the local venue; after
each step no position is above its limit, no order on the venue lies outside the price band, and in
emergency_stopped no order reaches the venue except the engine's flattening ones."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.types import EngineState, OrderType, Side
from tests.engine import BOOKS, Harness, engine_on_venue, until

D = Decimal
MAX_POSITION = D("3000")  # quote per symbol
BAND_BPS = 50

step = st.one_of(
    st.tuples(
        st.just("signal"),
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.sampled_from(["0.001", "0.01", "0.03", "0.2", "1"]),
        st.integers(min_value=-120, max_value=120),  # limit offset in bps from the ask; 0: market
        st.booleans(),  # reduce-only
    ),
    st.tuples(
        st.just("move"), st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.integers(min_value=-40, max_value=40)
    ),
    st.tuples(st.just("emergency"), st.booleans()),
    st.tuples(st.just("reset")),
)


def _check(h: Harness, emergency_orders_before: set[str]) -> None:
    e = h.engine
    for symbol in BOOKS:
        qty = h.venue_position(symbol)
        mark = h.core.mark(symbol).mark_price
        assert abs(qty) * mark <= MAX_POSITION * D("1.02"), (symbol, qty, mark)  # 2%: the mark moved since
        for o in h.core.open_orders(h.account, symbol):
            if o.price is not None:
                mid = mark
                assert abs(o.price - mid) / mid * 10_000 <= BAND_BPS + 20, (o.price, mid)
    if e.state is EngineState.EMERGENCY_STOPPED:
        new = {f.client_order_id for f in h.core.fills(h.account)} - emergency_orders_before
        flatten = {cid for (_, cid) in e._flatten_ids}
        assert new <= flatten, new - flatten


async def _scenario(steps: list[tuple[object, ...]]) -> None:
    with TemporaryDirectory() as tmp:
        async with engine_on_venue(
            Path(tmp),
            risk={"max_position_notional": str(MAX_POSITION), "price_band_bps": BAND_BPS},
        ) as h:
            e = h.engine
            asks = {s: a for s, (a, _) in BOOKS.items()}
            before: set[str] = set()
            for s in steps:
                if s[0] == "signal":
                    _, symbol, side, qty, off, reduce = s
                    assert isinstance(symbol, str) and isinstance(side, Side) and isinstance(off, int)
                    tick = h.core.instruments[symbol].tick_size
                    kw: dict[str, object] = {"qty": D(str(qty)), "reduce_only": bool(reduce)}
                    if off:
                        price = (asks[symbol] * (1 + D(off) / 10_000)).quantize(tick)
                        kw.update(type=OrderType.LIMIT, limit_price=price)
                    res = e.submit_signal(h.signal(symbol, side=side, **kw))  # type: ignore[arg-type]
                    if res.task is not None:
                        await res.task
                elif s[0] == "move":
                    _, symbol, ticks = s
                    assert isinstance(symbol, str) and isinstance(ticks, int)
                    asks[symbol] += h.core.instruments[symbol].tick_size * ticks
                    h.move(symbol, asks[symbol])
                    await asyncio.sleep(0.05)
                elif s[0] == "emergency":
                    if e.state is not EngineState.EMERGENCY_STOPPED:
                        before = {f.client_order_id for f in h.core.fills(h.account)}
                    await e.emergency_stop(flatten=bool(s[1]))
                    assert not h.core.open_orders(h.account)
                elif s[0] == "reset" and e.state is EngineState.EMERGENCY_STOPPED:
                    await e.reset()
                    await e.resume()
                await until(lambda: not e._inflight, what="orders settled")
                await asyncio.sleep(0.03)
                _check(h, before)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=3, max_size=12))
def test_engine_when_random_signals_and_prices_then_invariants_hold(steps: list[tuple[object, ...]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_scenario(steps))
