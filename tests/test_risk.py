"""UnifiedRiskManager: the Decimal edge, engine states, sizing, state triggers, limits, persistence,
portfolio metrics. Runs on both kernel implementations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from engine.errors import ConfigError, RiskLimitError
from engine.kernels import load
from engine.risk import Approved, Denied, RiskLimits, Sizing, Trip, UnifiedRiskManager, portfolio_metrics
from engine.types import (
    BookHealth,
    BookUpdate,
    EngineState,
    Fill,
    Instrument,
    MarginMode,
    OrderRequest,
    OrderType,
    Position,
    PositionSide,
    Side,
    Signal,
    Venue,
)

D = Decimal
BTC = Instrument(
    venue=Venue.BINANCE,
    symbol="BTCUSDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=D("0.1"),
    lot_size=D("0.001"),
    min_qty=D("0.001"),
    max_qty=D("1000"),
    min_notional=D("5"),
    max_leverage=125,
)
ETH = Instrument(
    venue=Venue.BYBIT,
    symbol="ETHUSDT",
    base_asset="ETH",
    quote_asset="USDT",
    tick_size=D("0.01"),
    lot_size=D("0.01"),
    min_qty=D("0.05"),
    max_qty=D("5000"),
    min_notional=D("5"),
    max_leverage=100,
)
NOW = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(params=["compiled", "pure"])
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    return load(request.param)


def manager(impl: SimpleNamespace, *, equity: str = "10000", **limits: Any) -> UnifiedRiskManager:
    m = UnifiedRiskManager(instruments=[BTC, ETH], limits=RiskLimits(**limits), impl=impl)
    for inst, ref in ((BTC, "65000"), (ETH, "3000")):
        m.set_book_health(inst.venue, inst.symbol, BookHealth.LIVE)
        m.set_reference(inst.venue, inst.symbol, D(ref))
    m.on_equity(D(equity), NOW)
    return m


def buy(qty: str | None = "0.01", **kw: Any) -> Signal:
    return Signal(
        venue=Venue.BINANCE, symbol="BTCUSDT", side=Side.BUY, qty=None if qty is None else D(qty), **kw
    )


def order(side: Side, qty: str, *, reduce_only: bool = False, price: str | None = None) -> OrderRequest:
    return OrderRequest(
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        side=side,
        type=OrderType.LIMIT if price else OrderType.MARKET,
        qty=D(qty),
        price=D(price) if price else None,
        client_order_id="c1",
        reduce_only=reduce_only,
    )


def position(qty: str, *, inst: Instrument = BTC, mark: str = "65000") -> Position:
    return Position(
        venue=inst.venue,
        symbol=inst.symbol,
        side=PositionSide.BOTH,
        qty=D(qty),
        entry_price=D(mark),
        mark_price=D(mark),
        unrealized_pnl=D(0),
        leverage=10,
        margin_mode=MarginMode.CROSS,
        liquidation_price=D(0),
        ts_ms=NOW,
    )


def denied(decision: object, reason: str) -> None:
    assert isinstance(decision, Denied), decision
    assert decision.reason == reason, decision


# ---- the Decimal edge ----------------------------------------------------------------------------------


def test_signal_when_qty_off_lot_grid_then_rounded_down_and_marked_reduced(impl: SimpleNamespace) -> None:
    d = manager(impl).check_signal(buy("0.0159"), now_ms=NOW)
    assert d == Approved(
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        side=Side.BUY,
        qty=D("0.015"),
        price=None,
        requested_qty=D("0.0159"),
        reduced=True,
    )


def test_signal_when_limit_price_off_tick_then_rounded_passively(impl: SimpleNamespace) -> None:
    m = manager(impl)
    d = m.check_signal(buy(type=OrderType.LIMIT, limit_price=D("64999.97")), now_ms=NOW)
    assert isinstance(d, Approved) and d.price == D("64999.9")
    sell = Signal(
        venue=Venue.BINANCE,
        symbol="BTCUSDT",
        side=Side.SELL,
        qty=D("0.01"),
        type=OrderType.LIMIT,
        limit_price=D("65000.01"),
    )
    d = m.check_signal(sell, now_ms=NOW)
    assert isinstance(d, Approved) and d.price == D("65000.1")


def test_signal_when_less_than_one_lot_then_size_below_minimum(impl: SimpleNamespace) -> None:
    denied(manager(impl).check_signal(buy("0.0009"), now_ms=NOW), "size_below_minimum")


def test_max_order_notional_when_decimal_boundary_then_exact(impl: SimpleNamespace) -> None:
    m = manager(impl, max_order_notional=D("650"))  # 0.01 BTC at 65000
    denied(m.check_signal(buy("0.011"), now_ms=NOW), "max_order_notional")
    assert isinstance(m.check_signal(buy("0.010"), now_ms=NOW), Approved)


def test_max_order_qty_when_above_then_denied_with_detail_naming_the_limit(impl: SimpleNamespace) -> None:
    d = manager(impl, max_order_qty=D("0.5")).check_signal(buy("0.501"), now_ms=NOW)
    denied(d, "max_order_qty")
    assert isinstance(d, Denied) and "max_order_qty 0.5" in d.detail and "BTCUSDT" in d.detail


def test_position_limit_when_fills_accumulate_then_next_entry_denied(impl: SimpleNamespace) -> None:
    m = manager(impl, max_position_notional=D("6500"))  # 0.1 BTC
    assert isinstance(m.check_signal(buy("0.1"), now_ms=NOW), Approved)
    m.on_fill(
        Fill(
            venue=Venue.BINANCE,
            symbol="BTCUSDT",
            client_order_id="c1",
            venue_order_id="1",
            trade_id="t",
            side=Side.BUY,
            position_side=PositionSide.BOTH,
            price=D("65000"),
            qty=D("0.1"),
            fee=D(0),
            fee_asset="USDT",
            is_maker=False,
            realized_pnl=D(0),
            ts_ms=NOW,
        )
    )
    m.on_order_done(Venue.BINANCE, "BTCUSDT", Side.BUY, D(0))
    denied(m.check_signal(buy("0.001"), now_ms=NOW), "position_limit")
    assert m.exposure() == D("6500")
    # the exit passes the limit
    assert isinstance(m.check_order(order(Side.SELL, "0.1", reduce_only=True), now_ms=NOW), Approved)


def test_reduce_to_limit_when_entry_too_big_then_approved_smaller(impl: SimpleNamespace) -> None:
    m = manager(impl, max_position_notional=D("6500"), reduce_to_limit=True)
    m.set_position(position("0.06"))
    d = m.check_signal(buy("0.1"), now_ms=NOW)
    assert isinstance(d, Approved) and d.qty == D("0.040") and d.reduced


def test_price_band_when_limit_beyond_bps_then_denied(impl: SimpleNamespace) -> None:
    m = manager(impl, price_band_bps=10)  # 65 USDT around 65000
    ok = m.check_signal(buy(type=OrderType.LIMIT, limit_price=D("65065")), now_ms=NOW)
    assert isinstance(ok, Approved)
    denied(m.check_signal(buy(type=OrderType.LIMIT, limit_price=D("65065.1")), now_ms=NOW), "price_band")
    denied(m.check_signal(buy(type=OrderType.LIMIT, limit_price=D("64934.9")), now_ms=NOW), "price_band")


def test_risk_reward_when_bracket_too_tight_then_denied(impl: SimpleNamespace) -> None:
    m = manager(impl, min_risk_reward=D("1.5"))
    ok = m.check_signal(buy(stop_loss=D("64000"), take_profit=D("66500")), now_ms=NOW)
    assert isinstance(ok, Approved)
    denied(m.check_signal(buy(stop_loss=D("64000"), take_profit=D("66499.9")), now_ms=NOW), "risk_reward")


def test_book_when_not_live_then_entries_denied_until_live(impl: SimpleNamespace) -> None:
    m = manager(impl)
    m.set_book_health(Venue.BINANCE, "BTCUSDT", BookHealth.RESYNCING)
    denied(m.check_signal(buy(), now_ms=NOW), "book_unhealthy")
    m.set_book_health(Venue.BINANCE, "BTCUSDT", BookHealth.LIVE)
    assert isinstance(m.check_signal(buy(), now_ms=NOW), Approved)


def test_on_book_when_update_then_mid_is_the_reference(impl: SimpleNamespace) -> None:
    m = manager(impl, price_band_bps=10)
    m.on_book(
        BookUpdate(
            venue=Venue.BINANCE,
            symbol="BTCUSDT",
            best_bid_ticks=700_000,
            best_ask_ticks=700_002,
            ts_ms=NOW,
            recv_ns=0,
        )
    )  # mid 70000.1
    assert isinstance(m.check_signal(buy(type=OrderType.LIMIT, limit_price=D("70070")), now_ms=NOW), Approved)
    denied(m.check_signal(buy(type=OrderType.LIMIT, limit_price=D("65000")), now_ms=NOW), "price_band")


def test_unknown_symbol_when_checked_then_denied_not_raised(impl: SimpleNamespace) -> None:
    s = Signal(venue=Venue.BYBIT, symbol="BTCUSDT", side=Side.BUY, qty=D("1"))
    denied(manager(impl).check_signal(s, now_ms=NOW), "unknown_symbol")


# ---- engine states ---------------------------------------------------------------------------------------


def test_paused_when_entry_then_denied_and_reduce_only_exit_approved(impl: SimpleNamespace) -> None:
    m = manager(impl)
    m.set_position(position("0.2"))
    m.set_engine_state(EngineState.PAUSED)
    denied(m.check_signal(buy(), now_ms=NOW), "paused")
    d = m.check_order(order(Side.SELL, "0.5", reduce_only=True), now_ms=NOW)
    assert isinstance(d, Approved) and d.qty == D("0.200") and d.reduced


def test_emergency_when_not_flattening_then_denied(impl: SimpleNamespace) -> None:
    m = manager(impl)
    m.set_position(position("-0.2"))
    m.set_engine_state(EngineState.EMERGENCY_STOPPED)
    denied(m.check_signal(buy(), now_ms=NOW), "emergency_stopped")
    denied(m.check_order(order(Side.BUY, "0.2", reduce_only=True), now_ms=NOW), "emergency_stopped")
    assert isinstance(
        m.check_order(order(Side.BUY, "0.2", reduce_only=True), now_ms=NOW, flatten=True), Approved
    )


def test_stopped_when_any_order_then_denied(impl: SimpleNamespace) -> None:
    m = manager(impl)
    m.set_engine_state(EngineState.STOPPING)
    denied(m.check_signal(buy(), now_ms=NOW), "engine_stopped")


# ---- sizing ------------------------------------------------------------------------------------------------


def test_size_when_fixed_fractional_with_stop_then_risk_over_stop_distance(impl: SimpleNamespace) -> None:
    m = manager(impl, sizing=Sizing(mode="fixed_fractional", risk_fraction=D("0.01")))
    # 1% of 10000 = 100 USDT at risk over a 1000 USDT stop: 0.1 BTC
    assert m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000")) == D("0.100")
    # without a stop the budget is the notional: 100 / 65000 = 0.00153.. -> 0.001
    assert m.size(Venue.BINANCE, "BTCUSDT") == D("0.001")
    d = m.check_signal(buy(None, stop_loss=D("64300")), now_ms=NOW)  # 100 / 700 = 0.142857..
    assert isinstance(d, Approved) and d.qty == D("0.142") and d.sized


def test_size_when_atr_then_risk_over_n_atr_rounded_down(impl: SimpleNamespace) -> None:
    m = manager(impl, sizing=Sizing(mode="atr", risk_fraction=D("0.01"), atr_multiple=D("2")))
    assert m.size(Venue.BINANCE, "BTCUSDT", atr=D("500")) == D("0.100")
    assert m.size(Venue.BINANCE, "BTCUSDT", atr=D("333")) == D("0.150")  # 100 / 666 = 0.15015
    assert m.size(Venue.BYBIT, "ETHUSDT", atr=D("7")) == D("7.14")  # 100 / 14 = 7.1428 on a 0.01 lot
    denied(m.size(Venue.BINANCE, "BTCUSDT"), "sizing_unavailable")


def test_size_when_kelly_then_capped_fraction(impl: SimpleNamespace) -> None:
    m = manager(impl, sizing=Sizing(mode="kelly", kelly_cap=D("0.25")))
    # f = 0.6 - 0.4 / 2 = 0.4, capped at 0.25: 2500 at risk over a 1000 stop
    assert m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000"), win_rate=D("0.6"), payoff=D("2")) == D("2.500")
    m.set_limit("sizing.kelly_cap", "0.5")
    assert m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000"), win_rate=D("0.6"), payoff=D("2")) == D("4.000")
    denied(m.size(Venue.BINANCE, "BTCUSDT", win_rate=D("0.3"), payoff=D("1")), "sizing_unavailable")


def test_size_when_kelly_from_closed_trades_then_uses_their_stats(impl: SimpleNamespace) -> None:
    m = manager(impl, sizing=Sizing(mode="kelly", kelly_cap=D("1")))
    denied(m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000")), "sizing_unavailable")
    for pnl in ("200", "200", "200", "-100", "-100"):  # W 0.6, R 2 -> f 0.4
        m.on_trade_closed(D(pnl), NOW)
    assert m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000")) == D("4.000")


def test_size_when_allocation_given_then_budget_is_that_share_of_equity(impl: SimpleNamespace) -> None:
    m = manager(impl, sizing=Sizing(mode="fixed_fractional", risk_fraction=D("0.01")))
    # 1% of (10000 x 0.25) = 25 USDT at risk over a 1000 USDT stop: 0.025 BTC (0.1 with the whole equity)
    assert m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000"), allocation=D("0.25")) == D("0.025")
    assert m.size(Venue.BINANCE, "BTCUSDT", stop=D("64000"), allocation=D("1")) == D("0.100")
    atr = manager(impl, sizing=Sizing(mode="atr", risk_fraction=D("0.01"), atr_multiple=D("2")))
    assert atr.size(Venue.BINANCE, "BTCUSDT", atr=D("500"), allocation=D("0.5")) == D("0.050")
    kelly = manager(impl, sizing=Sizing(mode="kelly", kelly_cap=D("0.25")))
    assert kelly.size(
        Venue.BINANCE, "BTCUSDT", stop=D("64000"), win_rate=D("0.6"), payoff=D("2"), allocation=D("0.4")
    ) == D("1.000")
    d = m.check_signal(buy(None, stop_loss=D("64300")), now_ms=NOW, allocation=D("0.5"))  # 50 / 700
    assert isinstance(d, Approved) and d.qty == D("0.071") and d.sized
    fixed = m.check_signal(buy("0.01"), now_ms=NOW, allocation=D("0.5"))  # a given qty is not resized
    assert isinstance(fixed, Approved) and fixed.qty == D("0.01")


def test_size_when_allocation_outside_zero_one_then_value_error(impl: SimpleNamespace) -> None:
    m = manager(impl)
    for bad in ("0", "-0.1", "1.5"):
        with pytest.raises(ValueError, match="allocation"):
            m.size(Venue.BINANCE, "BTCUSDT", allocation=D(bad))


def test_size_when_below_min_qty_then_size_below_minimum(impl: SimpleNamespace) -> None:
    m = manager(impl, equity="100", sizing=Sizing(risk_fraction=D("0.01")))
    assert m.size(Venue.BYBIT, "ETHUSDT", stop=D("2990")) == D("0.10")  # 1 USDT over 10
    denied(m.size(Venue.BYBIT, "ETHUSDT", stop=D("2970")), "size_below_minimum")  # 1 / 30 = 0.033 < 0.05
    denied(m.check_signal(buy(None), now_ms=NOW), "size_below_minimum")  # 1 / 65000 BTC


# ---- state triggers --------------------------------------------------------------------------------------


def test_daily_loss_when_exactly_at_limit_then_trips_once(impl: SimpleNamespace) -> None:
    m = manager(impl, daily_loss_limit=D("500"))
    assert m.on_equity(D("9500.01"), NOW + 1) is None
    trip = m.on_equity(D("9500"), NOW + 2)
    assert isinstance(trip, Trip) and trip.reason == "daily_loss_limit"
    assert m.on_equity(D("9400"), NOW + 3) is None  # latched
    m.clear_trip()
    assert isinstance(m.on_equity(D("9400"), NOW + 4), Trip)


def test_daily_loss_pct_when_exactly_at_percent_then_trips(impl: SimpleNamespace) -> None:
    m = manager(impl, daily_loss_limit_pct=D("5"))
    assert m.on_equity(D("9500.01"), NOW + 1) is None
    trip = m.on_equity(D("9500"), NOW + 2)
    assert trip is not None and trip.reason == "daily_loss_limit_pct"


def test_drawdown_when_exactly_at_percent_of_high_water_mark_then_trips(impl: SimpleNamespace) -> None:
    m = manager(impl, max_drawdown_pct=D("10"))
    assert m.on_equity(D("12000"), NOW + 1) is None
    assert m.on_equity(D("10800.01"), NOW + 2) is None
    trip = m.on_equity(D("10800"), NOW + 3)
    assert trip is not None and trip.reason == "max_drawdown"


def test_day_roll_when_configured_hour_passes_then_start_of_day_resets(impl: SimpleNamespace) -> None:
    m = UnifiedRiskManager(
        instruments=[BTC], limits=RiskLimits(daily_loss_limit=D("500"), day_roll_utc_hour=8), impl=impl
    )
    assert m.on_equity(D("10000"), ms("2024-01-01T07:00:00")) is None  # day started 2023-12-31 08:00
    assert m.on_equity(D("9600"), ms("2024-01-01T07:59:59.999")) is None
    assert m.on_equity(D("9600"), ms("2024-01-01T08:00:00")) is None  # new day: start 9600
    assert m.state()["start_of_day_equity"] == "9600"
    assert m.state()["day_start_ms"] == str(ms("2024-01-01T08:00:00"))
    assert m.on_equity(D("9100.01"), ms("2024-01-02T07:59:00")) is None
    trip = m.on_equity(D("9100"), ms("2024-01-02T07:59:30"))
    assert trip is not None and trip.reason == "daily_loss_limit"


def test_unreconciled_position_when_reported_then_trip(impl: SimpleNamespace) -> None:
    m = manager(impl)
    trip = m.report_unreconciled(Venue.BYBIT, "ETHUSDT", "venue says 1.5, journal says 1.0")
    assert trip.reason == "unreconciled_position" and "ETHUSDT" in trip.detail
    assert m.trip == trip


def test_cooling_off_when_consecutive_losses_then_entries_denied_until_it_ends(impl: SimpleNamespace) -> None:
    m = manager(impl, cooling_off_losses=2, cooling_off_s=60)
    assert m.on_trade_closed(D("-10"), NOW) is None
    until = m.on_trade_closed(D("-10"), NOW + 1_000)
    assert until == NOW + 61_000
    denied(m.check_signal(buy(), now_ms=NOW + 60_999), "cooling_off")
    assert isinstance(m.check_signal(buy(), now_ms=NOW + 61_000), Approved)


def test_leverage_when_equity_falls_then_same_order_denied(impl: SimpleNamespace) -> None:
    m = manager(impl, max_leverage=D("2"), equity="3250")  # 6500 USDT: 0.1 BTC
    denied(m.check_signal(buy("0.101"), now_ms=NOW), "max_leverage")
    assert isinstance(m.check_signal(buy("0.1"), now_ms=NOW), Approved)


# ---- limits: validation, run-time changes ------------------------------------------------------------------


def test_set_limit_when_valid_then_applies_at_once(impl: SimpleNamespace) -> None:
    m = manager(impl)
    assert isinstance(m.check_signal(buy("0.02"), now_ms=NOW), Approved)
    m.set_limit("max_order_qty", "0.01")
    denied(m.check_signal(buy("0.02"), now_ms=NOW), "max_order_qty")
    assert m.limits.max_order_qty == D("0.01")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("max_order_qty", "-1", ">= 0"),
        ("max_order_qty", 0.5, "float"),
        ("max_order_qty", "abc", "not a decimal"),
        ("max_order_qty", "0.0001", "lot size"),
        ("daily_loss_limit_pct", "101", "0..100"),
        ("day_roll_utc_hour", 24, "0..23"),
        ("max_orders_per_second", "x", "integer"),
        ("reduce_to_limit", "maybe", "true or false"),
        ("sizing.mode", "martingale", "one of"),
        ("sizing.risk_fraction", "1.5", "(0, 1]"),
        ("no_such_limit", "1", "unknown key"),
    ],
)
def test_set_limit_when_bad_value_then_error_names_key_and_nothing_changes(
    impl: SimpleNamespace, key: str, value: object, fragment: str
) -> None:
    m = manager(impl, max_order_qty=D("1"))
    with pytest.raises(RiskLimitError) as info:
        m.set_limit(key, value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)
    assert info.value.key == key and fragment in info.value.reason
    assert m.limits.max_order_qty == D("1")
    denied(m.check_signal(buy("1.001"), now_ms=NOW), "max_order_qty")


def test_from_mapping_when_config_table_then_typed_limits_and_round_trip() -> None:
    limits = RiskLimits.from_mapping(
        {
            "max_order_notional": "5000",
            "daily_loss_limit": "500",
            "max_leverage": 3,
            "max_orders_per_second": 10,
            "reduce_to_limit": True,
            "sizing": {"mode": "atr", "atr_multiple": "1.5"},
        }
    )
    assert limits.max_order_notional == D("5000") and limits.max_leverage == D(3)
    assert limits.sizing == Sizing(mode="atr", atr_multiple=D("1.5"))
    assert RiskLimits.from_mapping(limits.to_mapping()) == limits


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"max_order_notional": 5000.0}, "max_order_notional"),
        ({"typo_limit": "1"}, "typo_limit"),
        ({"sizing": {"mode": "kelly", "kelly": "0.2"}}, "sizing.kelly"),
        ({"sizing": "kelly"}, "sizing"),
        ({"max_open_orders_per_symbol": True}, "max_open_orders_per_symbol"),
    ],
)
def test_from_mapping_when_bad_table_then_error_names_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(RiskLimitError) as info:
        RiskLimits.from_mapping(table)
    assert info.value.key == key


# ---- persistence ----------------------------------------------------------------------------------------


def test_state_when_restored_into_new_manager_then_same_state_and_behaviour(impl: SimpleNamespace) -> None:
    limits = {"daily_loss_limit": D("500"), "cooling_off_losses": 2, "cooling_off_s": 60}
    m = manager(impl, **limits)
    m.on_equity(D("12000"), NOW + 1)
    m.on_trade_closed(D("30"), NOW)
    m.on_trade_closed(D("-10"), NOW)
    m.on_trade_closed(D("-10"), NOW)  # cooling-off until NOW + 60_000
    m.on_equity(D("9000"), NOW + 2)  # trips (loss 1000 from 10000)
    saved = m.state()
    assert all(isinstance(v, str) for v in saved.values())

    m2 = manager(impl, equity="10000", **limits)
    m2.restore(saved)
    assert m2.state() == saved
    assert m2.trip is not None and m2.trip.reason == "daily_loss_limit"
    assert m2.on_equity(D("8000"), NOW + 3) is None  # still latched: not reported twice
    denied(m2.check_signal(buy(), now_ms=NOW + 59_000), "cooling_off")


def test_restore_when_bad_value_then_error_names_key_and_state_unchanged(impl: SimpleNamespace) -> None:
    m = manager(impl)
    before = m.state()
    bad = dict(before, high_water_mark="lots")
    with pytest.raises(RiskLimitError) as info:
        m.restore(bad)
    assert info.value.key == "high_water_mark"
    with pytest.raises(RiskLimitError) as info:
        m.restore({k: v for k, v in before.items() if k != "day_start_ms"})
    assert info.value.key == "day_start_ms"
    assert m.state() == before


# ---- portfolio metrics ----------------------------------------------------------------------------------


def test_portfolio_metrics_when_positions_then_exposure_leverage_concentration() -> None:
    positions = [position("0.5", mark="60000"), position("-10", inst=ETH, mark="3000")]
    got = portfolio_metrics(positions, [D("20000")])
    assert got.gross_exposure == D("60000") and got.net_exposure == D("0")
    assert got.leverage == D("3")
    assert got.concentration == {"binance:BTCUSDT": D("0.5"), "bybit:ETHUSDT": D("0.5")}


def test_portfolio_metrics_when_known_series_then_var_es_and_drawdowns() -> None:
    returns = [D("-0.05"), D("0.01"), D("-0.03")] + [D("0.01")] * 37  # 40 returns: k = 2
    series = [D(100)]
    for r in returns:
        series.append(series[-1] * (1 + r))
    got = portfolio_metrics([], series)
    assert got.var_95 == pytest.approx(0.03, abs=1e-12)  # the 2nd worst
    assert got.expected_shortfall_95 == pytest.approx(0.04, abs=1e-12)  # mean of the 2 worst

    got = portfolio_metrics([], [D(100), D(120), D(90), D(110)])
    assert got.max_drawdown == D("0.25")
    assert got.current_drawdown == D(10) / D(120)
    assert got.var_95 == pytest.approx(0.25)  # n = 3: the worst return, -25%
    empty = portfolio_metrics([], [])
    assert (empty.var_95, empty.max_drawdown, empty.leverage) == (0.0, D(0), D(0))


def test_limit_signal_when_no_price_then_invalid_order(impl: SimpleNamespace) -> None:
    denied(manager(impl).check_signal(buy(type=OrderType.LIMIT), now_ms=NOW), "invalid_order")


def test_open_orders_when_reconciled_then_count_and_lots_follow_the_venue(impl: SimpleNamespace) -> None:
    from engine.types import Order, OrderStatus, TimeInForce

    def venue_order(status: OrderStatus, side: Side, qty: str, filled: str) -> Order:
        return Order(
            venue=Venue.BINANCE,
            symbol="BTCUSDT",
            client_order_id="x",
            venue_order_id="1",
            side=side,
            type=OrderType.LIMIT,
            tif=TimeInForce.GTC,
            qty=D(qty),
            price=D("64000"),
            filled_qty=D(filled),
            avg_price=D(0),
            status=status,
            reduce_only=False,
            position_side=PositionSide.BOTH,
            trigger_price=None,
            ts_ms=NOW,
        )

    m = manager(impl, max_open_orders_per_symbol=2, max_position_notional=D("6500"))
    m.set_open_orders(
        Venue.BINANCE,
        "BTCUSDT",
        [
            venue_order(OrderStatus.NEW, Side.BUY, "0.05", "0"),
            venue_order(OrderStatus.PARTIALLY_FILLED, Side.BUY, "0.04", "0.01"),
            venue_order(OrderStatus.FILLED, Side.BUY, "1", "1"),
        ],
    )
    denied(m.check_signal(buy("0.001"), now_ms=NOW), "max_open_orders")
    status = m.status()
    assert status["symbols"]["binance:BTCUSDT"]["open_orders"] == 2  # type: ignore[index]
    assert D(str(status["exposure"])) == D("0.080") * D("65000")
    m.on_order_done(Venue.BINANCE, "BTCUSDT", Side.BUY, D("0.05"))
    denied(m.check_signal(buy("0.071"), now_ms=NOW), "position_limit")  # 0.03 + 0.071 > 0.1
    assert isinstance(m.check_signal(buy("0.07"), now_ms=NOW), Approved)
