"""``BarStrategy``: the shared machinery of the bar-driven built-ins (MACD, Supertrend, RSI reversion,
Bollinger breakout).

Per configured symbol, trades feed an ``engine.kernels.BarBuilder`` (``bar_ms``); each completed bar goes
to :meth:`BarStrategy.on_bar`, which updates the subclass's indicators through :meth:`BarStrategy.decide`
and turns its verdict into signals:

- ``Action.ENTER`` with a side: go that way. Already holding that side: nothing. Holding the other side:
  a reduce-only market order closes it first, then the entry follows. Entries carry a stop-loss and a
  take-profit ``stop_bps`` / ``take_profit_bps`` away from the last trade price, computed in ``Decimal``
  from the venue's price (never from the float bar values); with no trade seen yet (bars delivered
  directly) the entry carries no protective prices and the risk manager sizes it by its rule.
- ``Action.EXIT``: close whatever is held with a reduce-only market order (nothing when flat).

The strategy learns its position only from ``on_fill`` (its own orders' fills, as the engine delivers
them), so it never signals a second entry in a direction it already holds. It sees only what the hooks
deliver: no clock, no I/O, no data beyond the current event; the same events give the same signals.

Common parameters: ``bar_ms`` (1000), ``stop_bps`` (250), ``take_profit_bps`` (500), ``qty`` (a decimal
string; default none: the risk manager sizes entries).
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from engine import kernels as _kernels_module
from engine.strategies.base import Bar, Strategy
from engine.types import Fill, Side, Signal, TradeTick, Venue

__all__ = ["Action", "BarStrategy", "Verdict"]

#: the kernel namespace (its names are set at import time, so the type checker sees ``Any``)
kernels: Any = _kernels_module

_ZERO = Decimal(0)


class Action(enum.Enum):
    ENTER = "enter"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :meth:`BarStrategy.decide` concluded from one bar."""

    action: Action
    side: Side | None  # the entry's side; None for EXIT
    reason: str


@dataclass(slots=True)
class _Sym:
    bars: Any
    ind: Any  # the subclass's per-symbol indicator state (whatever ``make_state`` returns)
    last_price: Decimal | None = None
    position: Decimal = _ZERO
    signals: int = 0


class BarStrategy(Strategy):
    """Base of the bar-driven built-ins; subclasses set ``name`` and ``PARAMS`` and implement
    :meth:`configure`, :meth:`make_state` and :meth:`decide`."""

    COMMON_PARAMS: ClassVar[tuple[str, ...]] = ("bar_ms", "stop_bps", "take_profit_bps", "qty")
    #: the subclass's own parameter names
    PARAMS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self._check_known(self.COMMON_PARAMS + self.PARAMS)
        self.bar_ms = self._int("bar_ms", 1_000, lo=1_000, hi=86_400_000)
        self._bracket_params()
        self.configure()
        self._syms: dict[tuple[Venue, str], _Sym] = {
            key: _Sym(bars=kernels.BarBuilder(interval_ms=self.bar_ms), ind=self.make_state())
            for key in self.symbols
        }

    # ---- the subclass's part ----------------------------------------------------------------------------

    @abstractmethod
    def configure(self) -> None:
        """Read and validate the strategy's own parameters (raise ``StrategyParamError``)."""

    @abstractmethod
    def make_state(self) -> Any:
        """A fresh per-symbol indicator state."""

    @abstractmethod
    def decide(self, state: Any, bar: Bar, position: Decimal) -> Verdict | None:
        """Update ``state`` with ``bar`` and return what to do (None: nothing). ``position`` is the
        strategy's signed position in the symbol."""

    def describe(self, state: Any) -> dict[str, object]:
        """Per-symbol values for :meth:`state` (JSON-ready)."""
        return {}

    # ---- hooks ------------------------------------------------------------------------------------------

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        st = self._syms.get((trade.venue, trade.symbol))
        if st is None:
            return []
        st.last_price = trade.price
        out: list[Signal] = []
        for bar in st.bars.update(trade.ts_ms, float(trade.price), float(trade.qty)):
            out.extend(self.on_bar(trade.venue, trade.symbol, bar))
        return out

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        st = self._syms.get((venue, symbol))
        if st is None:
            return []
        verdict = self.decide(st.ind, bar, st.position)
        if verdict is None:
            return []
        out = self._act(venue, symbol, st, verdict)
        st.signals += len(out)
        return out

    def on_fill(self, fill: Fill) -> list[Signal]:
        st = self._syms.get((fill.venue, fill.symbol))
        if st is not None:
            st.position += fill.qty * fill.side.sign
        return []

    def position(self, venue: Venue, symbol: str) -> Decimal:
        """The signed position this strategy holds, as learnt from its fills."""
        st = self._syms.get((venue, symbol))
        return _ZERO if st is None else st.position

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "symbols": {
                f"{v.value}:{s}": {
                    "position": str(st.position),
                    "signals": st.signals,
                    **self.describe(st.ind),
                }
                for (v, s), st in self._syms.items()
            },
        }

    # ---- internals --------------------------------------------------------------------------------------

    def _act(self, venue: Venue, symbol: str, st: _Sym, verdict: Verdict) -> list[Signal]:
        if verdict.action is Action.EXIT:
            if st.position == 0:
                return []
            return [self._close_signal(venue, symbol, st.position, verdict.reason)]
        side = verdict.side
        assert side is not None
        if st.position * side.sign > 0:  # already in this direction
            return []
        return self._reverse_into(venue, symbol, side, st.position, st.last_price, verdict.reason)
