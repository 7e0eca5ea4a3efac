"""``ensemble``: combine strategies by a weighted vote.

Members are ordinary registered strategies built with their own parameters on the ensemble's symbols.
Every market event (``on_book``, ``on_trade``, ``on_bar``, ``on_timer``) goes to every member; members
are *voters*: their signals are never sent, and they do not see the ensemble's fills (so each votes as
if flat, and its view does not depend on what the others made the ensemble do).

Votes: a member's entry signal on a symbol sets its *stance* there to +1 (buy) or -1 (sell), held until
it signals the other way; its reduce-only signals do not change the stance. After each event, for each
symbol where a stance changed, the score is

    score = sum(weight_i * stance_i * confidence_i) / sum(weight_i)        (in [-1, 1])

(``confidence_i`` is the confidence of the member's last entry signal). Score >= ``threshold``: the
ensemble goes long; score <= -``threshold``: it goes short (closing the other side first with a
reduce-only market order; nothing when it already holds that side or already entered it and is waiting
for the fill; a fill that leaves it flat, a stop-loss say, re-arms that side); in between: nothing.
The entry's
confidence is ``|score|``; its stop-loss and take-profit are ``stop_bps`` / ``take_profit_bps`` from the
last trade price (``Decimal``), none before the first trade.

Parameters::

    params = { threshold = 0.5, members = [
        { name = "ema_cross", weight = 2.0, params = { fast = 8, slow = 21 } },
        { name = "supertrend", weight = 1.0 },
    ] }

``members`` (required, at least one; ``name`` required, ``weight`` > 0 default 1, ``params`` default
empty), ``threshold`` (0.5, in (0, 1]), ``stop_bps`` (250), ``take_profit_bps`` (500), ``qty`` (a decimal
string; default none: the risk manager sizes entries). A member's bad parameter is reported as
``members[i].params.<name>``. Ensembles may not nest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.strategies.base import (
    Bar,
    BookSource,
    Strategy,
    StrategyParamError,
    UnknownStrategy,
    create,
    register,
)
from engine.types import BookUpdate, Fill, Side, Signal, TradeTick, Venue

__all__ = ["Ensemble", "Member", "vote_score"]

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    weight: float
    strategy: Strategy


def vote_score(weights: Sequence[float], stances: Sequence[int], confidences: Sequence[float]) -> float:
    """The weighted vote in [-1, 1]: ``sum(w * s * c) / sum(w)`` (stances are -1, 0 or +1)."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("the weights must add up to more than 0")
    return sum(w * s * c for w, s, c in zip(weights, stances, confidences, strict=True)) / total


@dataclass(slots=True)
class _Sym:
    stances: list[int]
    confidences: list[float]
    last_price: Decimal | None = None
    position: Decimal = _ZERO
    score: float = 0.0
    direction: int = 0  # the side last entered (+1/-1), until the position is flat again


@register
class Ensemble(Strategy):
    name = "ensemble"

    _KNOWN = ("members", "threshold", "stop_bps", "take_profit_bps", "qty")

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self._check_known(self._KNOWN)
        self.threshold = self._float("threshold", 0.5, lo=1e-9, hi=1.0)
        self._bracket_params()
        self.members: tuple[Member, ...] = self._members(self.params.get("members"))
        self.weights = [m.weight for m in self.members]
        self.requires_books = any(m.strategy.requires_books for m in self.members)
        n = len(self.members)
        self._syms: dict[tuple[Venue, str], _Sym] = {
            key: _Sym(stances=[0] * n, confidences=[0.0] * n) for key in self.symbols
        }

    def _members(self, raw: object) -> tuple[Member, ...]:
        if raw is None:
            raise StrategyParamError("members", "required: a list of { name, weight, params } tables")
        if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence) or not raw:
            raise StrategyParamError("members", "must be a non-empty list of { name, weight, params } tables")
        out: list[Member] = []
        for i, item in enumerate(raw):
            key = f"members[{i}]"
            if not isinstance(item, Mapping):
                raise StrategyParamError(key, f"must be a table, got {item!r}")
            for k in item:
                if k not in ("name", "weight", "params"):
                    raise StrategyParamError(f"{key}.{k}", "unknown key (allowed: name, params, weight)")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise StrategyParamError(f"{key}.name", f"must be a strategy name, got {name!r}")
            if name == self.name:
                raise StrategyParamError(f"{key}.name", "ensembles may not nest")
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < 1e9:
                raise StrategyParamError(f"{key}.weight", f"must be a number > 0, got {weight!r}")
            params = item.get("params", {})
            if not isinstance(params, Mapping):
                raise StrategyParamError(f"{key}.params", f"must be a table, got {params!r}")
            try:
                strategy = create(name, params=params, symbols=self.symbols)
            except UnknownStrategy as exc:
                raise StrategyParamError(f"{key}.name", str(exc)) from None
            except StrategyParamError as exc:
                raise StrategyParamError(f"{key}.params.{exc.param}", exc.reason) from None
            out.append(Member(name=name, weight=float(weight), strategy=strategy))
        return tuple(out)

    def bind_books(self, source: BookSource) -> None:
        super().bind_books(source)
        for m in self.members:
            m.strategy.bind_books(source)

    # ---- hooks ------------------------------------------------------------------------------------------

    def on_book(self, update: BookUpdate) -> list[Signal]:
        return self._tally([m.strategy.on_book(update) for m in self.members])

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        st = self._syms.get((trade.venue, trade.symbol))
        if st is not None:
            st.last_price = trade.price
        return self._tally([m.strategy.on_trade(trade) for m in self.members])

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        return self._tally([m.strategy.on_bar(venue, symbol, bar) for m in self.members])

    def on_timer(self, now_ms: int) -> list[Signal]:
        return self._tally([m.strategy.on_timer(now_ms) for m in self.members])

    def on_fill(self, fill: Fill) -> list[Signal]:
        st = self._syms.get((fill.venue, fill.symbol))
        if st is not None:
            st.position += fill.qty * fill.side.sign
            if st.position == 0:
                st.direction = 0
        return []

    def score(self, venue: Venue, symbol: str) -> float:
        """The current vote on ``symbol`` (0 before any member voted)."""
        st = self._syms.get((venue, symbol))
        return 0.0 if st is None else st.score

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "members": [
                {"name": m.name, "weight": m.weight, "state": m.strategy.state()} for m in self.members
            ],
            "symbols": {
                f"{v.value}:{s}": {
                    "position": str(st.position),
                    "score": st.score,
                    "stances": list(st.stances),
                }
                for (v, s), st in self._syms.items()
            },
        }

    # ---- internals --------------------------------------------------------------------------------------

    def _tally(self, per_member: list[list[Signal]]) -> list[Signal]:
        changed: list[tuple[Venue, str]] = []
        for i, signals in enumerate(per_member):
            for sig in signals:
                if sig.reduce_only:
                    continue
                key = (sig.venue, sig.symbol)
                st = self._syms.get(key)
                if st is None:
                    continue
                st.stances[i] = sig.side.sign
                st.confidences[i] = max(0.0, min(1.0, float(sig.confidence)))
                if key not in changed:
                    changed.append(key)
        out: list[Signal] = []
        for key in changed:
            st = self._syms[key]
            st.score = vote_score(self.weights, st.stances, st.confidences)
            if st.score >= self.threshold:
                out.extend(self._go(key, st, Side.BUY))
            elif st.score <= -self.threshold:
                out.extend(self._go(key, st, Side.SELL))
        return out

    def _go(self, key: tuple[Venue, str], st: _Sym, side: Side) -> list[Signal]:
        venue, symbol = key
        if st.position * side.sign > 0 or st.direction == side.sign:
            return []
        st.direction = side.sign
        why = f"vote {st.score:+.3f} (threshold {self.threshold:g})"
        return self._reverse_into(
            venue, symbol, side, st.position, st.last_price, why, confidence=abs(st.score)
        )
