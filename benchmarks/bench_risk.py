"""``risk.check``: one pre-trade check in the compiled ``RiskGate`` beside its pure-Python twin.

The stream (``ops`` = checks per round, seeded) is a realistic mix over five gates in the states an
account goes through, each built fresh before every round so every round decides the same orders:

- ``run``: a running gate with four symbols. Symbol 0 takes most of the flow: market and in-band limit
  entries, some with a stop and target (good or bad risk/reward), fat-finger prices (price band),
  oversized orders (max qty, max notional), reduce-only exits; symbol 1's book is resyncing; symbol 2 is
  at its open-order limit; symbol 3 sits at its position limit. The order-rate buckets (per second and
  per minute) run dry in bursts, so rate denials come from real token-bucket state.
- ``tot``: a small total-exposure limit.
- ``lev``: a thin account, where the leverage limit binds.
- ``paused``: entries denied, reduce-only exits approved.
- ``emergency``: everything denied except the engine's flattening orders.
- ``cooling``: in a cooling-off period after consecutive losses.

The batch calls the gate's ``check`` as the risk manager does, one call per order with eight integers.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from benchmarks.harness import measure
from engine.kernels import load

compiled = load("compiled")
pure = load("pure")

N_CHECKS = 4_000
REF = 650_000  # 65_000.0 with a 0.1 tick
MULT = 10  # a 0.001 lot at a 0.1 tick in 1e-5 quote units
LOT = REF * MULT  # quote units per lot at the reference (65 USDT)
T0 = 1_700_000_000_000

#: gate name, sid, side, qty, price, stop, target, flags, now_ms
Order = tuple[str, int, int, int, int, int, int, int, int]


def _gates(m: Any) -> dict[str, Any]:
    def gate(*, tot: bool = False) -> Any:
        g = m.RiskGate(max_symbols=8)
        for sid in range(4):
            g.configure_symbol(
                sid,
                notional_mult=MULT,
                max_qty=500,
                max_position_notional=(20 if sid == 3 else 100_000) * LOT,
                max_open_orders=1 if sid == 2 else 100_000,
            )
            g.set_reference(sid, REF)
            g.set_book_healthy(sid, sid != 1)
        g.set_limits(
            max_order_notional=400 * LOT,
            max_total_notional=(100 if tot else 100_000) * LOT,
            max_leverage_milli=5_000,
            max_orders_per_second=100,
            max_orders_per_minute=1_200,
            price_band_bps=50,
            min_rr_milli=1_500,
            cooling_off_losses=3,
            cooling_off_ms=600_000,
        )
        g.set_equity(10**12 * LOT)
        g.set_position(0, 40)
        g.set_position(3, 20)
        g.set_open_orders(2, 1, 1, 0)
        return g

    gates = {name: gate() for name in ("run", "lev", "paused", "emergency", "cooling")}
    gates["tot"] = gate(tot=True)
    gates["lev"].set_equity(50 * LOT)
    gates["paused"].set_state(m.GATE_PAUSED)
    gates["emergency"].set_state(m.GATE_EMERGENCY)
    for _ in range(3):
        gates["cooling"].record_trade(-1, T0)
    return gates


def _stream(seed: int = 11) -> list[Order]:
    rng = random.Random(seed)
    out: list[Order] = []
    now = T0
    for _ in range(N_CHECKS):
        now += rng.choice((0, 0, 1, 2, 5, 20))
        side = rng.choice((1, -1))
        r = rng.random()
        px = REF + rng.randint(-300, 300)  # inside the 50 bps band (3250 ticks)
        if r < 0.45:  # plain entries, market or limit
            out.append(("run", 0, side, rng.randint(1, 5), rng.choice((0, px)), 0, 0, 0, now))
        elif r < 0.52:  # bracketed entries, good or bad risk/reward
            risk = rng.randint(100, 2_000)
            reward = risk * rng.choice((1, 2, 3))
            stop, target = (REF - side * risk, REF + side * reward)
            out.append(("run", 0, side, 2, 0, stop, target, 0, now))
        elif r < 0.56:  # fat finger
            far = REF + rng.choice((-1, 1)) * rng.randint(3_300, 60_000)
            out.append(("run", 0, side, 1, far, 0, 0, 0, now))
        elif r < 0.59:  # oversized
            out.append(("run", 0, side, rng.choice((450, 600)), 0, 0, 0, 0, now))
        elif r < 0.63:  # protective exits on the long
            out.append(("run", 0, -1, rng.randint(1, 5), 0, 0, 0, 1, now))
        elif r < 0.67:
            out.append(("run", 1, side, 1, 0, 0, 0, 0, now))  # book resyncing
        elif r < 0.71:
            out.append(("run", 2, side, 1, 0, 0, 0, 0, now))  # open orders full
        elif r < 0.75:
            out.append(("run", 3, 1, 2, 0, 0, 0, 0, now))  # at the position limit
        elif r < 0.78:
            out.append(("tot", 0, side, rng.randint(1, 60), 0, 0, 0, 0, now))  # total exposure
        elif r < 0.83:
            out.append(("lev", 0, side, rng.randint(1, 150), 0, 0, 0, 0, now))
        elif r < 0.89:
            out.append(("paused", 0, side, 1, 0, 0, 0, rng.choice((0, 0, 1)), now))
        elif r < 0.95:
            out.append(("emergency", 0, -1, 40, 0, 0, 0, rng.choice((0, 1, 2)), now))
        else:
            out.append(("cooling", 0, side, 1, 0, 0, 0, 0, now))
    return out


STREAM = _stream()


def _bound(m: Any) -> list[tuple[Any, int, int, int, int, int, int, int, int]]:
    gates = _gates(m)
    return [(gates[g].check, *rest) for g, *rest in STREAM]


def reason_mix(m: Any) -> Counter[str]:
    """How the stream is decided (checked in tests: approvals and every denial kind)."""
    return Counter(m.REASONS[check(*args)] for check, *args in _bound(m))


@pytest.mark.parametrize("role", ["kernel", "twin"])
def test_risk_check(benchmark: Any, role: str) -> None:
    m = compiled if role == "kernel" else pure
    state: dict[str, Any] = {}

    def setup() -> None:
        state["orders"] = _bound(m)

    def run() -> None:
        for check, sid, side, qty, price, stop, target, flags, now in state["orders"]:
            check(sid, side, qty, price, stop, target, flags, now)

    setup()
    measure(
        benchmark,
        case="risk.check",
        role=role,
        ops=N_CHECKS,
        fn=run,
        setup=setup,
        # CI bar: a regression guard with headroom for a loaded 2-core machine (one busy run measured 10.5x);
        # the 10x goal is a reported target.
        min_ratio=5.0 if role == "kernel" else None,
        targets={"max_ns": 1000.0, "twin": 10.0} if role == "kernel" else None,
    )
