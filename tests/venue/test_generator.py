"""The seeded market generator: determinism, book invariants, wire shapes, and a rebuild from the
snapshot plus every diff with a plain dict oracle."""

from __future__ import annotations

import math
import random
import re
import statistics
from decimal import Decimal
from typing import Any

import orjson
import pytest

from engine.venue.generator import MarketGenerator, decimals_of

DEPTH_KEYS = ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
TRADE_KEYS = ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"]


def run(gen: MarketGenerator, steps: int, start_ms: int = 1_700_000_000_000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(steps):
        out.extend(gen.step(start_ms + i // 7))
    return out


class OracleBook:
    """A plain local book: Decimal price -> qty string, fed by the snapshot and the diffs."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.last_u: int = snapshot["lastUpdateId"]
        self.bids = {Decimal(p): q for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): q for p, q in snapshot["asks"]}

    def apply(self, event: dict[str, Any]) -> None:
        assert event["pu"] == self.last_u
        for levels, side in ((event["b"], self.bids), (event["a"], self.asks)):
            for p, q in levels:
                price = Decimal(p)
                if Decimal(q) == 0:
                    assert price in side, f"delete of a level the book did not hold: {p}"
                    del side[price]
                else:
                    assert side.get(price) != q, f"no-op change for {p}"
                    side[price] = q
        self.last_u = event["u"]

    def as_snapshot_lists(self) -> tuple[list[list[str]], list[list[str]]]:
        fmt = lambda side, rev: [[_fmt(p), q] for p, q in sorted(side.items(), reverse=rev)]  # noqa: E731
        return fmt(self.bids, True), fmt(self.asks, False)


def _fmt(price: Decimal) -> str:
    return f"{price:.2f}"


def test_step_when_same_seed_then_identical_events_and_bytes() -> None:
    a, b = MarketGenerator(seed=11), MarketGenerator(seed=11)
    ev_a, ev_b = run(a, 3000), run(b, 3000)
    assert ev_a == ev_b
    assert [orjson.dumps(e) for e in ev_a] == [orjson.dumps(e) for e in ev_b]
    assert orjson.dumps(a.snapshot()) == orjson.dumps(b.snapshot())
    assert run(MarketGenerator(seed=12), 3000) != ev_a


@pytest.mark.parametrize("levels", [50, 100])
def test_step_when_run_long_then_never_crossed_and_depth_kept(levels: int) -> None:
    gen = MarketGenerator(seed=3, levels=levels)
    moved = set()
    for i in range(6000):
        gen.step(i)
        _, bids, asks = gen.book()
        assert bids[0][0] < asks[0][0]
        assert len(bids) >= levels
        assert len(asks) >= levels
        assert all(q > 0 for _, q in bids + asks)
        moved.add(bids[0][0])
    assert len(moved) > 20  # the market did move


def test_step_when_rebuilt_from_snapshot_and_diffs_then_equals_generator_book() -> None:
    gen = MarketGenerator(seed=5)
    oracle = OracleBook(gen.snapshot())
    late: OracleBook | None = None
    checkpoints = set(random.Random(1).sample(range(1, 5000), 25))
    for i in range(5000):
        for event in gen.step(i):
            if event["e"] == "depthUpdate":
                oracle.apply(event)
                if late is not None:
                    late.apply(event)
        if i in checkpoints:
            snap = gen.snapshot()
            assert oracle.last_u == snap["lastUpdateId"]
            assert oracle.as_snapshot_lists() == (snap["bids"], snap["asks"])
            if late is None:
                late = OracleBook(snap)  # a client that joins mid-stream
            else:
                assert late.as_snapshot_lists() == (snap["bids"], snap["asks"])


def test_step_when_depth_events_then_id_chain_valid_and_wire_shape_exact() -> None:
    gen = MarketGenerator(seed=9)
    prev_u = gen.last_update_id
    changes = []
    for event in run(gen, 4000):
        if event["e"] == "depthUpdate":
            assert list(event) == DEPTH_KEYS
            assert event["s"] == "BTCUSDT"
            assert event["pu"] == prev_u
            assert event["U"] == prev_u + 1
            assert event["u"] - event["U"] + 1 == len(event["b"]) + len(event["a"])
            assert event["T"] <= event["E"]
            bid_prices = [Decimal(p) for p, _ in event["b"]]
            ask_prices = [Decimal(p) for p, _ in event["a"]]
            assert bid_prices == sorted(bid_prices, reverse=True)
            assert ask_prices == sorted(ask_prices)
            changes.append(len(event["b"]) + len(event["a"]))
            prev_u = event["u"]
        else:
            assert list(event) == TRADE_KEYS
            assert event["e"] == "aggTrade"
            assert event["T"] <= event["E"]
            assert event["f"] <= event["l"]
            assert isinstance(event["m"], bool)
    assert gen.last_update_id == prev_u == gen.snapshot()["lastUpdateId"]
    assert 3 <= statistics.mean(changes) <= 10


def test_step_when_trades_then_at_the_touch_and_ids_increase() -> None:
    gen = MarketGenerator(seed=21)
    snap = gen.snapshot()
    bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}
    last_a, last_l, trades = 0, 0, 0
    for i in range(4000):
        events = gen.step(i)
        # trades come first and consume the book as it was after the previous step
        shadow_b, shadow_a = dict(bids), dict(asks)
        for event in events:
            if event["e"] == "aggTrade":
                trades += 1
                assert event["a"] == last_a + 1
                assert event["f"] == last_l + 1
                last_a, last_l = event["a"], event["l"]
                side = shadow_b if event["m"] else shadow_a  # buyer is maker: a sell hit the bid
                touch = max(side) if event["m"] else min(side)
                price, qty = Decimal(event["p"]), Decimal(event["q"])
                assert price == touch
                assert 0 < qty <= side[price]
                side[price] -= qty
                if side[price] == 0:
                    del side[price]
            else:
                for levels, book in ((event["b"], bids), (event["a"], asks)):
                    for p, q in levels:
                        if Decimal(q) == 0:
                            del book[Decimal(p)]
                        else:
                            book[Decimal(p)] = Decimal(q)
    assert trades > 1000


def test_snapshot_when_called_twice_then_identical_strings_on_the_grid() -> None:
    gen = MarketGenerator(seed=2)
    run(gen, 500)
    snap = gen.snapshot()
    assert orjson.dumps(snap) == orjson.dumps(gen.snapshot())
    assert next(iter(snap)) == "lastUpdateId"
    price_re, qty_re = re.compile(r"^\d+\.\d{2}$"), re.compile(r"^\d+\.\d{3}$")
    for p, q in snap["bids"] + snap["asks"]:
        assert price_re.match(p), p
        assert qty_re.match(q), q
        assert Decimal(p) % Decimal("0.10") == 0
        assert Decimal(q) > 0
    bids = [Decimal(p) for p, _ in snap["bids"]]
    asks = [Decimal(p) for p, _ in snap["asks"]]
    assert bids == sorted(bids, reverse=True)
    assert asks == sorted(asks)
    assert bids[0] < asks[0]
    top = gen.snapshot(limit=5)
    assert top["bids"] == snap["bids"][:5]
    assert top["asks"] == snap["asks"][:5]


def test_snapshot_when_other_grid_then_formatted_with_its_places() -> None:
    gen = MarketGenerator(symbol="ETHUSDT", tick_size="0.01", lot_size="1", start_price="3500.00", seed=4)
    events = run(gen, 200)
    snap = gen.snapshot()
    assert re.match(r"^3\d{3}\.\d{2}$", snap["bids"][0][0])
    assert all(re.match(r"^\d+$", q) for _, q in snap["asks"])
    assert {e["s"] for e in events} == {"ETHUSDT"}
    assert gen.format_price(350_001) == "3500.01"
    assert gen.format_qty(12) == "12"


def test_format_when_tick_has_trailing_zero_then_places_kept() -> None:
    gen = MarketGenerator(tick_size="0.50", lot_size="0.010", start_price="100.00", levels=50)
    assert gen.format_price(201) == "100.50"
    assert gen.format_qty(3) == "0.030"
    assert decimals_of(Decimal("1")) == 0
    assert decimals_of(Decimal("0.10")) == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start_price": "65000.05"}, "start_price"),
        ({"start_price": "-1"}, "start_price"),
        ({"tick_size": "0"}, "tick_size"),
        ({"levels": 0}, "levels"),
        ({"garch_alpha": 0.5, "garch_beta": 0.6}, "garch_alpha"),
        ({"trade_prob": 1.5}, "trade_prob"),
    ],
)
def test_init_when_parameter_invalid_then_value_error_names_it(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MarketGenerator(**kwargs)


def test_step_when_time_goes_back_then_event_times_never_decrease() -> None:
    gen = MarketGenerator(seed=1)
    gen.step(5_000)
    events = gen.step(4_000)
    assert all(e["E"] >= 5_000 and e["T"] >= 5_000 for e in events)


def test_step_when_run_long_then_volatility_clusters() -> None:
    """Realized variance over consecutive blocks is autocorrelated (GARCH): a fixed seed, long run."""
    gen = MarketGenerator(seed=7)
    prev, acc, rv = gen.mid_ticks, 0.0, []
    for i in range(40_000):
        gen.step(i)
        if (i + 1) % 5 == 0:
            mid = gen.mid_ticks
            acc += (mid - prev) ** 2
            prev = mid
            if (i + 1) % 30 == 0:
                rv.append(acc)
                acc = 0.0
    mu = statistics.mean(rv)
    den = sum((x - mu) ** 2 for x in rv)
    lag1 = sum((rv[i] - mu) * (rv[i + 1] - mu) for i in range(len(rv) - 1)) / den
    assert lag1 > 0.05
    assert math.isfinite(gen.variance) and gen.variance > 0


@pytest.mark.parametrize("is_buy", [True, False])
def test_take_when_outside_order_then_fills_from_touch_and_stream_stays_consistent(is_buy: bool) -> None:
    gen = MarketGenerator(seed=8)
    run(gen, 200)
    oracle = OracleBook(gen.snapshot())
    _, bids, asks = gen.book()
    side = asks if is_buy else bids
    want = side[0][1] + side[1][1] + 1  # sweeps two levels and part of the third
    fills, events = gen.take(is_buy=is_buy, lots=want, now_ms=5_000)
    assert fills == [side[0], side[1], (side[2][0], 1)]
    trades = [e for e in events if e["e"] == "aggTrade"]
    assert [(gen.format_price(p), gen.format_qty(q)) for p, q in fills] == [(t["p"], t["q"]) for t in trades]
    assert all(t["m"] is (not is_buy) for t in trades)
    for event in events + run(gen, 300, start_ms=6_000):
        if event["e"] == "depthUpdate":
            oracle.apply(event)
    snap = gen.snapshot()
    assert oracle.as_snapshot_lists() == (snap["bids"], snap["asks"])
    _, bids, asks = gen.book()
    assert len(bids) >= 100 and len(asks) >= 100 and bids[0][0] < asks[0][0]


def test_take_when_limit_price_then_stops_there() -> None:
    gen = MarketGenerator(seed=8)
    _, _, asks = gen.book()
    fills, _ = gen.take(is_buy=True, lots=10**9, now_ms=1, limit_ticks=asks[1][0])
    assert fills == asks[:2]
    assert gen.best_ask_ticks == asks[2][0]
