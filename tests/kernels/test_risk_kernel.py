"""RiskGate (ext/risk and its twin): every limit at its boundary, token buckets, price band, exits,
engine-state semantics; compiled and pure agree on random streams; invariants under random sequences."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.kernels import load

IMPLS = {"compiled": load("compiled"), "pure": load("pure")}

REF = 10_000  # reference price, ticks
MULT = 10  # quote units per lot per tick: one lot at REF is worth 100_000 units
LOT_VALUE = REF * MULT
BUY, SELL = 1, -1
NOW = 1_700_000_000_000


def make_gate(
    impl: SimpleNamespace,
    *,
    symbol: dict[str, int] | None = None,
    limits: dict[str, Any] | None = None,
    equity: int = 10**15,
    healthy: bool = True,
    n_symbols: int = 1,
) -> Any:
    gate = impl.RiskGate(max_symbols=8)
    for sid in range(n_symbols):
        gate.configure_symbol(sid, notional_mult=MULT, **(symbol or {}))
        gate.set_reference(sid, REF)
        gate.set_book_healthy(sid, healthy)
    gate.set_limits(**(limits or {}))
    gate.set_equity(equity)
    return gate


def entry(gate: Any, side: int = BUY, qty: int = 1, *, price: int = 0, stop: int = 0, target: int = 0,
          sid: int = 0, now: int = NOW) -> int:
    return int(gate.check(sid, side, qty, price, stop, target, 0, now))


# ---- every limit at its boundary -----------------------------------------------------------------------


def test_max_qty_when_at_limit_then_approved_and_one_lot_above_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_qty": 10})
    assert entry(gate, qty=11) == impl.DENY_MAX_QTY
    assert gate.approved_qty == 0
    assert entry(gate, qty=10) == impl.APPROVED
    assert gate.approved_qty == 10


def test_min_qty_when_below_then_denied_size_below_minimum(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"min_qty": 5})
    assert entry(gate, qty=4) == impl.DENY_MIN_QTY
    assert impl.REASONS[impl.DENY_MIN_QTY] == "size_below_minimum"
    assert entry(gate, qty=5) == impl.APPROVED


def test_max_notional_when_at_limit_then_approved_and_above_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"max_order_notional": 10 * LOT_VALUE})
    assert entry(gate, qty=11) == impl.DENY_MAX_NOTIONAL
    assert entry(gate, qty=10) == impl.APPROVED
    # valued at the limit price when there is one: 10 lots at REF + 1 tick is over
    assert entry(gate, qty=10, price=REF + 1) == impl.DENY_MAX_NOTIONAL
    assert entry(gate, qty=10, price=REF - 1) == impl.APPROVED


def test_position_limit_when_existing_position_then_headroom_is_the_rest(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_position_notional": 10 * LOT_VALUE})
    gate.set_position(0, 6)
    assert entry(gate, qty=5) == impl.DENY_POSITION_LIMIT
    assert entry(gate, qty=4) == impl.APPROVED
    assert entry(gate, qty=1) == impl.DENY_POSITION_LIMIT  # the open 4 count as if filled
    # the short side has its own headroom: from +6 (+4 pending) down to -10
    assert entry(gate, SELL, qty=17) == impl.DENY_POSITION_LIMIT
    assert entry(gate, SELL, qty=16) == impl.APPROVED


def test_position_limit_when_order_fills_then_pending_becomes_position(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_position_notional": 10 * LOT_VALUE})
    assert entry(gate, qty=10) == impl.APPROVED
    gate.on_fill(0, BUY, 10)
    gate.on_order_done(0, BUY, 0)
    assert gate.position(0) == 10
    assert gate.pending(0) == (0, 0)
    assert gate.open_orders(0) == 0
    assert gate.exposure(0) == 10 * LOT_VALUE
    assert entry(gate, qty=1) == impl.DENY_POSITION_LIMIT


def test_position_limit_when_cancelled_then_headroom_returns(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_position_notional": 10 * LOT_VALUE})
    assert entry(gate, qty=10) == impl.APPROVED
    gate.on_order_done(0, BUY, 10)
    assert entry(gate, qty=10) == impl.APPROVED


def test_position_limit_when_price_rises_then_fewer_lots_fit(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_position_notional": 10 * LOT_VALUE})
    gate.set_reference(0, 2 * REF)
    assert entry(gate, qty=6) == impl.DENY_POSITION_LIMIT
    assert entry(gate, qty=5) == impl.APPROVED


def test_total_exposure_when_other_symbol_holds_exposure_then_sum_limited(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"max_total_notional": 10 * LOT_VALUE}, n_symbols=2)
    gate.set_position(1, -7)
    assert gate.total_exposure == 7 * LOT_VALUE
    assert entry(gate, qty=4) == impl.DENY_TOTAL_EXPOSURE
    assert entry(gate, qty=3) == impl.APPROVED
    assert gate.total_exposure == 10 * LOT_VALUE


def test_leverage_when_exposure_reaches_equity_multiple_then_denied(impl: SimpleNamespace) -> None:
    # 2x on 10 lots' worth of equity: 20 lots
    gate = make_gate(impl, limits={"max_leverage_milli": 2000}, equity=10 * LOT_VALUE)
    assert entry(gate, qty=21) == impl.DENY_LEVERAGE
    assert entry(gate, qty=20) == impl.APPROVED
    gate.set_equity(0)
    assert entry(gate, SELL, qty=1) == impl.APPROVED  # shrinks the worst case: passes
    gate2 = make_gate(impl, limits={"max_leverage_milli": 2000}, equity=0)
    assert entry(gate2, qty=1) == impl.DENY_LEVERAGE


def test_open_orders_when_at_max_then_denied_until_one_is_done(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_open_orders": 3})
    assert [entry(gate) for _ in range(3)] == [impl.APPROVED] * 3
    assert entry(gate) == impl.DENY_OPEN_ORDERS
    gate.on_order_done(0, BUY, 1)
    assert entry(gate) == impl.APPROVED


def test_rate_second_when_bucket_empty_then_denied_until_refilled(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"max_orders_per_second": 5})
    assert [entry(gate, now=NOW) for _ in range(5)] == [impl.APPROVED] * 5
    assert entry(gate, now=NOW) == impl.DENY_RATE_SECOND
    assert entry(gate, now=NOW + 199) == impl.DENY_RATE_SECOND  # 0.995 of a token
    assert entry(gate, now=NOW + 200) == impl.APPROVED  # 1 token: 5 per 1000 ms
    assert entry(gate, now=NOW + 200) == impl.DENY_RATE_SECOND
    assert entry(gate, now=NOW + 5_000) == impl.APPROVED
    assert gate.tokens()[0] // 1000 == 4  # refilled to full (5), one taken


def test_rate_minute_when_bucket_empty_then_denied_until_refilled(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"max_orders_per_second": 100, "max_orders_per_minute": 3})
    assert [entry(gate, now=NOW + i) for i in range(3)] == [impl.APPROVED] * 3
    assert entry(gate, now=NOW + 3) == impl.DENY_RATE_MINUTE
    assert entry(gate, now=NOW + 19_999) == impl.DENY_RATE_MINUTE  # 3 per 60 s: one per 20 s
    assert entry(gate, now=NOW + 20_000) == impl.APPROVED


def test_rate_when_denied_by_another_limit_then_no_token_taken(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_qty": 1}, limits={"max_orders_per_second": 1})
    assert entry(gate, qty=2) == impl.DENY_MAX_QTY
    assert entry(gate, qty=1) == impl.APPROVED
    assert entry(gate, qty=1) == impl.DENY_RATE_SECOND


def test_price_band_when_buy_or_sell_then_both_sides_held_to_band(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"price_band_bps": 100})  # 1% of 10_000 ticks = 100 ticks
    for side in (BUY, SELL):
        assert entry(gate, side, price=REF + 100) == impl.APPROVED
        assert entry(gate, side, price=REF + 101) == impl.DENY_PRICE_BAND
        assert entry(gate, side, price=REF - 100) == impl.APPROVED
        assert entry(gate, side, price=REF - 101) == impl.DENY_PRICE_BAND
    assert entry(gate, price=0) == impl.APPROVED  # a market order has no price to hold


def test_price_band_when_reduce_only_limit_then_also_held(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"price_band_bps": 100})
    gate.set_position(0, 5)
    assert gate.check(0, SELL, 1, REF - 101, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.DENY_PRICE_BAND
    assert gate.check(0, SELL, 1, REF - 100, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.APPROVED


def test_risk_reward_when_at_minimum_then_approved_below_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"min_rr_milli": 2000})
    assert entry(gate, BUY, stop=REF - 100, target=REF + 200) == impl.APPROVED
    assert entry(gate, BUY, stop=REF - 100, target=REF + 199) == impl.DENY_RISK_REWARD
    assert entry(gate, SELL, stop=REF + 100, target=REF - 200) == impl.APPROVED
    assert entry(gate, SELL, stop=REF + 100, target=REF - 199) == impl.DENY_RISK_REWARD
    # measured from the limit price when there is one
    assert entry(gate, BUY, price=REF - 50, stop=REF - 150, target=REF + 150) == impl.APPROVED
    # a stop on the wrong side of the entry is no bracket
    assert entry(gate, BUY, stop=REF + 10, target=REF + 500) == impl.DENY_RISK_REWARD
    # without both legs there is nothing to hold
    assert entry(gate, BUY, stop=REF - 100) == impl.APPROVED


def test_cooling_off_when_n_consecutive_losses_then_entries_denied_until_time(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"cooling_off_losses": 3, "cooling_off_ms": 60_000})
    assert gate.record_trade(-1, NOW) is False
    assert gate.record_trade(-1, NOW) is False
    assert gate.consecutive_losses == 2
    assert entry(gate) == impl.APPROVED
    assert gate.record_trade(-1, NOW) is True
    assert gate.cooling_until_ms == NOW + 60_000
    assert entry(gate, now=NOW + 59_999) == impl.DENY_COOLING_OFF
    assert entry(gate, now=NOW + 60_000) == impl.APPROVED


def test_cooling_off_when_win_between_losses_then_count_resets(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, limits={"cooling_off_losses": 2, "cooling_off_ms": 60_000})
    gate.record_trade(-1, NOW)
    gate.record_trade(1, NOW)
    gate.record_trade(0, NOW)  # break-even changes nothing
    assert gate.consecutive_losses == 0
    assert gate.record_trade(-1, NOW) is False
    assert entry(gate) == impl.APPROVED


def test_book_unhealthy_when_entry_then_denied_and_exit_allowed(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, healthy=False)
    gate.set_position(0, 3)
    assert entry(gate) == impl.DENY_BOOK_UNHEALTHY
    assert gate.check(0, SELL, 3, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.APPROVED
    gate.set_book_healthy(0, True)
    assert entry(gate) == impl.APPROVED


def test_new_gate_when_book_never_reported_then_entries_denied(impl: SimpleNamespace) -> None:
    gate = impl.RiskGate()
    gate.configure_symbol(0, notional_mult=MULT)
    gate.set_reference(0, REF)
    assert entry(gate) == impl.DENY_BOOK_UNHEALTHY


def test_no_reference_when_entry_then_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    gate.set_reference(0, 0)
    assert entry(gate) == impl.DENY_NO_REFERENCE


# ---- exits ------------------------------------------------------------------------------------------


def test_exit_when_position_over_limit_then_reduce_only_passes(impl: SimpleNamespace) -> None:
    gate = make_gate(
        impl,
        symbol={"max_position_notional": 5 * LOT_VALUE, "max_qty": 1, "max_open_orders": 1},
        limits={"max_total_notional": LOT_VALUE, "max_leverage_milli": 1, "max_orders_per_second": 1},
    )
    gate.set_position(0, 10)  # far over every limit
    gate.set_open_orders(0, 1, 0, 0)
    assert entry(gate) == impl.DENY_OPEN_ORDERS
    assert gate.check(0, SELL, 4, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.APPROVED
    assert gate.approved_qty == 4
    # exits are never throttled by the order rate either
    assert gate.check(0, SELL, 6, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.APPROVED


def test_exit_when_larger_than_position_then_clipped_to_position(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    gate.set_position(0, -3)
    assert gate.check(0, BUY, 10, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.APPROVED
    assert gate.approved_qty == 3


def test_reduce_only_when_same_side_or_flat_then_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    assert gate.check(0, SELL, 1, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.DENY_REDUCE_ONLY
    gate.set_position(0, 2)
    assert gate.check(0, BUY, 1, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.DENY_REDUCE_ONLY


def test_shrinking_entry_when_position_over_limit_then_passes_exposure_limits(impl: SimpleNamespace) -> None:
    gate = make_gate(impl, symbol={"max_position_notional": 5 * LOT_VALUE})
    gate.set_position(0, 10)
    assert entry(gate, SELL, qty=10) == impl.APPROVED  # down to flat: never above where it was
    assert entry(gate, BUY, qty=1) == impl.DENY_POSITION_LIMIT


def test_reduce_to_limit_when_over_then_clipped_to_headroom(impl: SimpleNamespace) -> None:
    gate = make_gate(
        impl, symbol={"max_position_notional": 10 * LOT_VALUE, "min_qty": 2}, limits={"reduce_to_limit": True}
    )
    gate.set_position(0, 6)
    assert entry(gate, qty=10) == impl.APPROVED
    assert gate.approved_qty == 4
    gate.set_position(0, 9)
    gate.set_open_orders(0, 0, 0, 0)
    assert entry(gate, qty=10) == impl.DENY_POSITION_LIMIT  # 1 lot of headroom < min_qty 2


# ---- engine states (DESIGN.md's table) -----------------------------------------------------------------


def test_paused_when_entry_then_denied_and_protective_exit_allowed(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    gate.set_position(0, 5)
    gate.set_state(impl.GATE_PAUSED)
    assert entry(gate) == impl.DENY_PAUSED
    assert entry(gate, SELL) == impl.DENY_PAUSED  # not flagged reduce-only: a strategy entry
    assert gate.check(0, SELL, 5, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.APPROVED
    gate.set_state(impl.GATE_RUNNING)
    assert entry(gate) == impl.APPROVED


def test_emergency_when_anything_but_flattening_then_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    gate.set_position(0, 5)
    gate.set_state(impl.GATE_EMERGENCY)
    assert entry(gate) == impl.DENY_EMERGENCY
    assert gate.check(0, SELL, 5, 0, 0, 0, impl.FLAG_REDUCE_ONLY, NOW) == impl.DENY_EMERGENCY
    assert gate.check(0, SELL, 5, 0, 0, 0, impl.FLAG_FLATTEN, NOW) == impl.APPROVED
    assert gate.approved_qty == 5
    # a flattening order must flatten: nothing to reduce on the other symbol side
    assert gate.check(0, BUY, 5, 0, 0, 0, impl.FLAG_FLATTEN, NOW) == impl.DENY_REDUCE_ONLY


def test_stopped_when_any_order_then_denied(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    gate.set_position(0, 5)
    gate.set_state(impl.GATE_STOPPED)
    assert entry(gate) == impl.DENY_STOPPED
    assert gate.check(0, SELL, 5, 0, 0, 0, impl.FLAG_FLATTEN, NOW) == impl.DENY_STOPPED


# ---- input faults and the reason table -------------------------------------------------------------------


def test_check_when_invalid_input_then_denied_never_raises(impl: SimpleNamespace) -> None:
    gate = make_gate(impl)
    assert entry(gate, qty=0) == impl.DENY_INVALID
    assert gate.check(0, 0, 1, 0, 0, 0, 0, NOW) == impl.DENY_INVALID
    assert entry(gate, price=-1) == impl.DENY_INVALID
    assert entry(gate, now=-1) == impl.DENY_INVALID
    assert entry(gate, sid=7) == impl.DENY_UNKNOWN_SYMBOL  # in range, never configured
    assert entry(gate, sid=99) == impl.DENY_UNKNOWN_SYMBOL
    assert entry(gate, sid=-1) == impl.DENY_UNKNOWN_SYMBOL


def test_configuration_when_bad_values_then_value_error(impl: SimpleNamespace) -> None:
    gate = impl.RiskGate(max_symbols=2)
    with pytest.raises(ValueError, match="notional_mult"):
        gate.configure_symbol(0, notional_mult=0)
    with pytest.raises(ValueError, match="max_qty"):
        gate.configure_symbol(0, notional_mult=1, max_qty=-1)
    with pytest.raises(ValueError, match="price_band_bps"):
        gate.set_limits(price_band_bps=-5)
    with pytest.raises(ValueError, match="max_orders_per_second"):
        gate.set_limits(max_orders_per_second=impl.MAX_RATE + 1)
    with pytest.raises(IndexError):
        gate.set_reference(2, 1)
    with pytest.raises(ValueError):
        gate.set_state(9)
    with pytest.raises(ValueError):
        impl.RiskGate(max_symbols=0)


def test_reasons_when_listed_then_every_code_has_a_unique_snake_case_name(impl: SimpleNamespace) -> None:
    codes = {name: getattr(impl, name) for name in dir(impl) if name.startswith("DENY_")} | {
        "APPROVED": impl.APPROVED
    }
    assert set(impl.REASONS) == set(codes.values())
    assert len(set(impl.REASONS.values())) == len(impl.REASONS)
    assert all(re.fullmatch(r"[a-z][a-z_]*", name) for name in impl.REASONS.values())
    assert impl.REASONS == IMPLS["pure"].REASONS


# ---- compiled and pure agree on random limits and streams -----------------------------------------------

limit_sets = st.fixed_dictionaries(
    {
        "max_order_notional": st.one_of(st.just(0), st.integers(LOT_VALUE, 400 * LOT_VALUE)),
        "max_total_notional": st.one_of(st.just(0), st.integers(0, 800 * LOT_VALUE)),
        "max_leverage_milli": st.one_of(st.just(0), st.integers(1, 50_000)),
        "max_orders_per_second": st.integers(0, 6),
        "max_orders_per_minute": st.integers(0, 30),
        "price_band_bps": st.integers(0, 300),
        "min_rr_milli": st.integers(0, 3000),
        "cooling_off_losses": st.integers(0, 4),
        "cooling_off_ms": st.integers(0, 5_000),
        "reduce_to_limit": st.booleans(),
    }
)
symbol_sets = st.fixed_dictionaries(
    {
        "notional_mult": st.integers(1, 20),
        "max_qty": st.integers(0, 30),
        "min_qty": st.integers(1, 3),
        "max_position_notional": st.one_of(st.just(0), st.integers(0, 600 * LOT_VALUE)),
        "max_open_orders": st.integers(0, 6),
    }
)
prices = st.one_of(st.just(0), st.integers(REF - 400, REF + 400), st.integers(0, 3 * REF))
check_op = st.tuples(
    st.just("check"),
    st.sampled_from([0, 0, 0, 1, 1, 2, -1]),  # sid: two symbols configured, the rest unknown
    st.sampled_from([BUY, SELL]),
    st.one_of(st.integers(1, 8), st.integers(-1, 40)),
    prices,
    st.one_of(st.just(0), prices),  # stop
    st.one_of(st.just(0), prices),  # target
    st.sampled_from([0, 0, 0, 0, 0, 1, 2, 3]),  # flags
)
op = st.one_of(
    check_op,
    check_op,
    check_op,
    st.tuples(st.just("fill"), st.integers(0, 1), st.sampled_from([BUY, SELL]), st.integers(0, 10)),
    st.tuples(st.just("done"), st.integers(0, 1), st.sampled_from([BUY, SELL]), st.integers(0, 10)),
    st.tuples(st.just("ref"), st.integers(0, 1), st.integers(0, 2 * REF)),
    st.tuples(st.just("pos"), st.integers(0, 1), st.integers(-30, 30)),
    st.tuples(st.just("health"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("state"), st.sampled_from([0, 0, 0, 1, 2, 3])),
    st.tuples(st.just("trade"), st.integers(-1, 1)),
    st.tuples(st.just("equity"), st.integers(-LOT_VALUE, 50 * LOT_VALUE)),
    st.tuples(st.just("time"), st.one_of(st.integers(0, 1_500), st.integers(0, 90_000))),
)


def _apply(gate: Any, item: tuple[Any, ...], now: int) -> object:
    kind = item[0]
    if kind == "check":
        _, sid, side, qty, price, stop, target, flags = item
        return (gate.check(sid, side, qty, price, stop, target, flags, now), gate.approved_qty)
    if kind == "fill":
        return gate.on_fill(item[1], item[2], item[3])
    if kind == "done":
        return gate.on_order_done(item[1], item[2], item[3])
    if kind == "ref":
        return gate.set_reference(item[1], item[2])
    if kind == "pos":
        return gate.set_position(item[1], item[2])
    if kind == "health":
        return gate.set_book_healthy(item[1], item[2])
    if kind == "state":
        return gate.set_state(item[1])
    if kind == "trade":
        return gate.record_trade(item[1], now)
    if kind == "equity":
        return gate.set_equity(item[1])
    return None


def _snapshot(gate: Any) -> tuple[Any, ...]:
    per_symbol = tuple(
        (gate.position(s), gate.pending(s), gate.open_orders(s), gate.exposure(s), gate.reference(s))
        for s in range(2)
    )
    return (
        per_symbol,
        gate.total_exposure,
        gate.tokens(),
        gate.consecutive_losses,
        gate.cooling_until_ms,
        gate.state,
        gate.equity,
    )


@settings(max_examples=300, deadline=None)
@given(
    limits=limit_sets,
    symbols=st.lists(symbol_sets, min_size=2, max_size=2),
    ops=st.lists(op, min_size=10, max_size=80),
)
def test_twins_when_random_limits_and_streams_then_identical_results(
    limits: dict[str, Any], symbols: list[dict[str, int]], ops: list[tuple[Any, ...]]
) -> None:
    gates = []
    for impl in IMPLS.values():
        gate = impl.RiskGate(max_symbols=2)
        for sid, sym in enumerate(symbols):
            gate.configure_symbol(sid, **sym)
            gate.set_reference(sid, REF)
            gate.set_book_healthy(sid, True)
        gate.set_limits(**limits)
        gate.set_equity(20 * LOT_VALUE)
        gates.append(gate)
    now = NOW
    for item in ops:
        if item[0] == "time":
            now += item[1]
            continue
        results = [_apply(gate, item, now) for gate in gates]
        assert results[0] == results[1], item
        assert _snapshot(gates[0]) == _snapshot(gates[1]), item


# ---- invariants under random sequences (order, fill, price move) -----------------------------------------

BAND_BPS = 150
MAX_POS = 10 * LOT_VALUE

inv_op = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 12),
        st.integers(-300, 300),  # limit price offset from the reference (ticks); below -250: market
        st.sampled_from([0, 0, 0, 1, 2]),  # flags
    ),
    st.tuples(st.just("fill"), st.integers(0, 50), st.integers(1, 12)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("move"), st.integers(-800, 800)),
    st.tuples(st.just("state"), st.sampled_from([0, 0, 1, 2])),
    st.tuples(st.just("tick"), st.integers(0, 3_000)),
)


def _worst(pos: int, open_orders: list[list[int]]) -> int:
    """The largest |position| the open orders can reach if they all fill (lots)."""
    buys = sum(q for s, q in open_orders if s > 0)
    sells = sum(q for s, q in open_orders if s < 0)
    return max(pos + buys, sells - pos)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(inv_op, min_size=30, max_size=150), reduce_to_limit=st.booleans())
def test_invariants_when_random_orders_fills_and_prices_then_limits_hold(
    impl: SimpleNamespace, ops: list[tuple[Any, ...]], reduce_to_limit: bool
) -> None:
    gate = make_gate(
        impl,
        symbol={"max_position_notional": MAX_POS, "max_open_orders": 8},
        limits={
            "price_band_bps": BAND_BPS,
            "max_orders_per_second": 20,
            "max_total_notional": 30 * LOT_VALUE,
            "reduce_to_limit": reduce_to_limit,
        },
    )
    ref, pos, now = REF, 0, NOW
    open_orders: list[list[int]] = []  # [side, remaining lots]
    for item in ops:
        kind = item[0]
        if kind == "order":
            _, side, qty, offset, flags = item
            price = 0 if offset < -250 else ref + offset
            before = _worst(pos, open_orders)
            code = gate.check(0, side, qty, price, 0, 0, flags, now)
            if code != impl.APPROVED:
                continue
            approved = gate.approved_qty
            assert 0 < approved <= qty
            if gate.state == impl.GATE_EMERGENCY:
                assert flags & impl.FLAG_FLATTEN, "only flattening orders pass in emergency"
            if gate.state == impl.GATE_PAUSED:
                assert flags, "paused: only exits"
            if price and not flags & impl.FLAG_FLATTEN:
                assert abs(price - ref) * 10_000 <= BAND_BPS * ref, "limit price outside the band"
            open_orders.append([side, approved])
            after = _worst(pos, open_orders)
            if after > before and not flags:
                assert after * ref * MULT <= MAX_POS, "approved order can take the position above its limit"
            if flags:
                assert side == (1 if pos < 0 else -1) and approved <= abs(pos)
        elif kind == "fill" and open_orders:
            order = open_orders[item[1] % len(open_orders)]
            lots = min(item[2], order[1])
            pos += order[0] * lots
            order[1] -= lots
            gate.on_fill(0, order[0], lots)
            if order[1] == 0:
                open_orders.remove(order)
                gate.on_order_done(0, order[0], 0)
        elif kind == "cancel" and open_orders:
            order = open_orders.pop(item[1] % len(open_orders))
            gate.on_order_done(0, order[0], order[1])
        elif kind == "move":
            ref = max(1, ref + item[1])
            gate.set_reference(0, ref)
        elif kind == "state":
            gate.set_state(item[1])
        elif kind == "tick":
            now += item[1]
        assert gate.position(0) == pos
        assert gate.open_orders(0) == len(open_orders)
        assert gate.pending(0) == (
            sum(q for s, q in open_orders if s > 0),
            sum(q for s, q in open_orders if s < 0),
        )


def test_benchmark_stream_when_decided_then_approvals_and_every_limit_denial_appear() -> None:
    from benchmarks.bench_risk import compiled, pure, reason_mix

    mix = reason_mix(compiled)
    assert mix == reason_mix(pure)
    never_in_stream = {
        "invalid_order",
        "unknown_symbol",
        "engine_stopped",
        "no_reference_price",
        "size_below_minimum",
    }
    wanted = set(compiled.REASONS.values()) - never_in_stream
    assert wanted <= set(mix), wanted - set(mix)
    assert 0.2 < mix["approved"] / sum(mix.values()) < 0.6
