"""Accounts, positions and instruments of the venue core: exact position math, the ledger identity,
instrument config validation, mark/funding-rate rules and the crowd sources' parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venue.accounts import Account, PositionState, money
from engine.venue.generator import MarketGenerator
from engine.venue.instruments import default_instruments, load_instruments, load_start_prices
from engine.venue.market import GeneratorSource, ManualSource, MarkState
from engine.venue.model import MarginMode, PositionSide

D = Decimal


def test_position_when_opened_added_and_partly_closed_then_realized_pnl_uses_average_entry() -> None:
    p = PositionState("BTCUSDT", PositionSide.BOTH)
    assert p.apply(D("1"), D("100")) == (D(0), D(0))
    p.apply(D("1"), D("110"))
    assert p.entry_price == D("105")
    pnl, closed = p.apply(D("-0.5"), D("120"))
    assert (pnl, closed) == (D("7.5"), D("0.5"))
    assert p.qty == D("1.5") and p.entry_price == D("105")
    assert p.upnl(D("100")) == D("-7.5")


def test_position_when_flipped_then_remainder_opens_at_fill_price() -> None:
    p = PositionState("BTCUSDT", PositionSide.BOTH)
    p.apply(D("-2"), D("50"))
    pnl, closed = p.apply(D("3"), D("40"))
    assert pnl == D("20") and closed == D("2")
    assert p.qty == D("1") and p.entry_price == D("40")


def test_account_when_fills_fees_funding_insurance_then_ledger_balances_exactly() -> None:
    a = Account(api_key="k", api_secret="s")
    a.deposit(D("1000"))
    a.book_fill(D("12.34567891"), D("0.3"))
    a.book_funding(D("-0.0006"))
    a.book_insurance(D("5"))
    led = a.ledger()
    assert led.balanced and led.wallet_balance == D("1017.04507891")
    a.wallet += D("0.00000001")
    with pytest.raises(AssertionError, match="wallet"):
        a.check()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=-50, max_value=50), st.integers(min_value=1, max_value=10_000)),
        min_size=1,
        max_size=30,
    )
)
def test_property_when_random_fills_then_realized_plus_open_value_conserves_cash(
    fills: list[tuple[int, int]],
) -> None:
    p = PositionState("BTCUSDT", PositionSide.BOTH)
    cash = D(0)
    realized = D(0)
    for lots, ticks in fills:
        if lots == 0:
            continue
        qty, price = D(lots) / 10, D(ticks) / 10
        pnl, _ = p.apply(qty, price)
        realized += pnl
        cash -= qty * price
    # closing everything at price X: cash + qty*X == realized + upnl(X) (up to 1e-8 rounding per fill)
    x = D("123.4")
    assert abs((cash + p.qty * x) - (realized + p.upnl(x))) <= D("0.00000001") * (len(fills) + 1)


def test_money_rounds_half_even_to_1e8() -> None:
    assert money(D("0.000000005")) == D("0") and money(D("0.000000015")) == D("0.00000002")


def test_default_instruments_have_the_rules_asked() -> None:
    s = default_instruments()
    assert set(s) >= {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    btc = s["BTCUSDT"]
    assert (btc.tick_size, btc.lot_size, btc.min_notional, btc.max_leverage) == (
        D("0.10"),
        D("0.001"),
        D("100"),
        125,
    )
    assert s["ETHUSDT"].max_leverage == 100 and s["SOLUSDT"].max_leverage == 50
    assert all(x.maker_fee == D("0.0002") and x.taker_fee == D("0.0005") for x in s.values())


def test_load_instruments_when_overriding_and_adding_then_applied() -> None:
    cfg = {
        "instruments": {
            "BTCUSDT": {"min_notional": "50", "funding_interval_ms": 1000},
            "DOGEUSDT": {
                "tick_size": "0.00001",
                "lot_size": "1",
                "min_qty": "1",
                "max_qty": "1000000",
                "max_market_qty": "100000",
                "min_notional": "5",
                "min_price": "0.001",
                "max_price": "30",
                "max_leverage": 50,
                "maint_margin_rate": "0.01",
                "maker_fee": "0.0002",
                "taker_fee": "0.0005",
                "start_price": "0.15000",
            },
        }
    }
    specs = load_instruments(cfg)
    assert specs["BTCUSDT"].min_notional == D("50") and specs["BTCUSDT"].funding_interval_ms == 1000
    assert specs["DOGEUSDT"].base_asset == "DOGE"
    assert load_start_prices(cfg, specs)["DOGEUSDT"] == D("0.15")
    assert set(load_instruments({"instruments": {"only": ["ETHUSDT"]}})) == {"ETHUSDT"}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"BTCUSDT": {"tick_size": 0.1}}, "instruments.BTCUSDT.tick_size"),
        ({"BTCUSDT": {"tick_size": "-1"}}, "instruments.BTCUSDT.tick_size"),
        ({"BTCUSDT": {"bogus": "1"}}, "instruments.BTCUSDT.bogus"),
        ({"BTCUSDT": {"max_leverage": "10"}}, "instruments.BTCUSDT.max_leverage"),
        ({"BTCUSDT": {"min_qty": "0.0015"}}, "instruments.BTCUSDT.min_qty"),
        ({"BTCUSDT": {"maint_margin_rate": "0.5"}}, "instruments.BTCUSDT.maint_margin_rate"),
        ({"XUSDT": {"tick_size": "0.1"}}, "instruments.XUSDT."),
        ({"only": ["NOPE"]}, "instruments.only"),
    ],
)
def test_load_instruments_when_value_bad_then_value_error_names_the_key(
    table: dict[str, object], key: str
) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_instruments({"instruments": table})


def test_start_price_when_off_tick_then_value_error() -> None:
    specs = default_instruments()
    with pytest.raises(ValueError, match=r"instruments\.BTCUSDT\.start_price"):
        load_start_prices({"instruments": {"BTCUSDT": {"start_price": "60000.05"}}}, specs)


def test_mark_when_no_premium_then_index_rounded_and_rate_is_interest() -> None:
    m = MarkState(tick_size=D("0.1"), start_price=D("100.0"), premium_weight=D(0))
    m.update((999, 1000))
    assert m.index_price == D("99.95") and m.mark_price == D("100.0") and m.rate == D("0.0001")


def test_mark_when_last_far_above_index_then_premium_capped_and_rate_clamped() -> None:
    m = MarkState(tick_size=D("0.1"), start_price=D("100.0"), premium_weight=D(1), premium_cap=D("0.01"))
    m.set_last(D("200"))
    m.update((999, 1001))
    assert m.premium == D("0.01") and m.mark_price == D("101.0")
    assert m.rate == D("0.0075")


def test_generator_source_when_stepped_then_trades_and_levels_in_ticks_match_the_generator() -> None:
    gen = MarketGenerator(
        symbol="BTCUSDT", tick_size="0.10", lot_size="0.001", start_price="60000", seed=3, levels=20
    )
    src = GeneratorSource(gen)
    bids, asks = src.book()
    mirror = (dict(bids), dict(asks))
    for t in range(1, 200):
        cs = src.step(t * 100)
        for p, q in cs.bids:
            mirror[0].pop(p, None) if q == 0 else mirror[0].__setitem__(p, q)
        for p, q in cs.asks:
            mirror[1].pop(p, None) if q == 0 else mirror[1].__setitem__(p, q)
        for p, q, _ in cs.trades:
            assert p > 0 and q > 0
    _, gb, ga = gen.book()
    assert mirror == (dict(gb), dict(ga))
    assert src.touch() == (gb[0][0], ga[0][0])


def test_manual_source_when_off_grid_then_value_error() -> None:
    s = ManualSource(tick_size=D("0.1"), lot_size=D("0.001"))
    with pytest.raises(ValueError, match="tick"):
        s.set_level(True, D("1.05"), D("1"))
    s.set_level(True, D("1.0"), D("1"))
    assert s.touch() is None
    s.set_level(False, D("1.1"), D("1"))
    assert s.touch() == (10, 11)


def test_margin_mode_default_is_cross() -> None:
    assert Account(api_key="k", api_secret="s").margin_mode("BTCUSDT") is MarginMode.CROSS
