"""ensemble: the weighted-vote arithmetic, stances held until reversed, threshold, member parameter
errors named with their path, and members never see the ensemble's fills."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.strategies import Ensemble, StrategyParamError, create
from engine.strategies.ensemble import vote_score
from engine.types import Side

from .helpers import BTC, fill, trade
from .scripted import Scripted


def member(script: dict[str, str], weight: float, confidence: float = 1.0) -> dict[str, Any]:
    return {"name": "test_scripted", "weight": weight, "params": {"script": script, "confidence": confidence}}


def test_vote_score_is_weighted_mean_of_stances_times_confidence() -> None:
    assert vote_score([2.0, 1.0, 1.0], [1, -1, 0], [1.0, 1.0, 1.0]) == pytest.approx(0.25)
    assert vote_score([1.0, 3.0], [1, 1], [0.5, 1.0]) == pytest.approx((0.5 + 3.0) / 4.0)
    assert vote_score([1.0], [-1], [1.0]) == -1.0


@given(
    st.lists(
        st.tuples(st.floats(0.01, 100), st.sampled_from([-1, 0, 1]), st.floats(0, 1)), min_size=1, max_size=8
    )
)
def test_vote_score_always_in_unit_interval(votes: list[tuple[float, int, float]]) -> None:
    w, s, c = zip(*votes, strict=True)
    assert -1.0 - 1e-12 <= vote_score(list(w), list(s), list(c)) <= 1.0 + 1e-12


def test_when_score_reaches_threshold_then_entry_with_score_as_confidence() -> None:
    e = Ensemble(
        params={
            "threshold": 0.5,
            "members": [member({"1": "buy"}, 2), member({"2": "buy"}, 1), member({}, 1)],
        },
        symbols=[BTC],
    )
    (sig,) = e.on_timer(1)  # 2/4 = 0.5 >= 0.5
    assert sig.side is Side.BUY and sig.confidence == pytest.approx(0.5) and sig.strategy == "ensemble"
    assert e.on_timer(2) == []  # 3/4: still long; that side was already entered (fill pending)
    e.on_fill(fill(Side.BUY, "1"))
    e.on_fill(fill(Side.SELL, "1"))  # stopped out: flat again, the side re-arms
    e2 = e.on_timer(1)
    assert [x.side for x in e2] == [Side.BUY] and e.score(*BTC) == pytest.approx(0.75)


def test_when_score_below_threshold_then_nothing() -> None:
    e = Ensemble(
        params={"threshold": 0.6, "members": [member({"1": "buy"}, 1), member({"1": "sell"}, 1)]},
        symbols=[BTC],
    )
    assert e.on_timer(1) == []
    assert e.score(*BTC) == 0.0


def test_when_votes_reverse_and_long_then_close_then_short() -> None:
    e = Ensemble(params={"threshold": 0.5, "members": [member({"1": "buy", "5": "sell"}, 1)]}, symbols=[BTC])
    assert [s.side for s in e.on_timer(1)] == [Side.BUY]
    e.on_fill(fill(Side.BUY, "2"))
    out = e.on_timer(5)
    assert [(s.side, s.reduce_only, s.qty) for s in out] == [
        (Side.SELL, True, Decimal(2)),
        (Side.SELL, False, None),
    ]


def test_when_member_signals_reduce_only_then_stance_unchanged() -> None:
    e = Ensemble(params={"threshold": 0.5, "members": [member({"1": "buy", "2": "close"}, 1)]}, symbols=[BTC])
    e.on_timer(1)
    assert e.on_timer(2) == []
    assert e.score(*BTC) == 1.0


def test_when_trade_seen_then_entry_carries_stop_and_target_from_it() -> None:
    e = Ensemble(
        params={
            "threshold": 0.5,
            "stop_bps": 100,
            "take_profit_bps": 300,
            "members": [member({"9": "sell"}, 1)],
        },
        symbols=[BTC],
    )
    e.on_trade(trade("200.0", 1))
    (sig,) = e.on_timer(9)
    assert sig.stop_loss == Decimal("202.0") and sig.take_profit == Decimal("194.0")


def test_members_never_see_the_ensembles_fills() -> None:
    e = Ensemble(params={"members": [member({}, 1)]}, symbols=[BTC])
    e.on_fill(fill(Side.BUY, "1"))
    m = e.members[0].strategy
    assert isinstance(m, Scripted) and m.seen == []


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({}, "members"),
        ({"members": []}, "members"),
        ({"members": [{"name": "nope"}]}, "members[0].name"),
        ({"members": [{"name": "ensemble"}]}, "members[0].name"),
        ({"members": [{"name": "supertrend", "weight": 0}]}, "members[0].weight"),
        ({"members": [{"name": "supertrend", "wieght": 1}]}, "members[0].wieght"),
        (
            {"members": [{"name": "supertrend"}, {"name": "macd_rsi", "params": {"fast": 40}}]},
            "members[1].params.fast",
        ),
        ({"members": [{"name": "supertrend"}], "threshold": 0}, "threshold"),
    ],
)
def test_when_bad_params_then_error_names_path(params: dict[str, Any], bad: str) -> None:
    with pytest.raises(StrategyParamError) as info:
        create("ensemble", params=params, symbols=[BTC])
    assert info.value.param == bad


def test_when_member_needs_books_then_ensemble_does_and_binds_them() -> None:
    e = Ensemble(params={"members": [{"name": "imbalance_scalper"}, {"name": "supertrend"}]}, symbols=[BTC])
    assert e.requires_books
    e.bind_books(lambda v, s: None)
    with pytest.raises(LookupError):
        e.members[0].strategy.book(*BTC)
