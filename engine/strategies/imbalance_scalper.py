"""``imbalance_scalper``: a short-horizon scalper on the order book's depth imbalance and microprice.

On every ``on_book`` of a configured symbol it reads the local book (``requires_books``: the driver binds
them) and computes ``imbalance(levels)`` = (bid size - ask size) / (bid size + ask size) over the top
``levels`` of each side, and the ``microprice()`` against the mid of the update's touch:

- flat, imbalance >= ``entry_imbalance`` and microprice - mid >= ``micro_edge_ticks`` ticks: buy;
  imbalance <= -``entry_imbalance`` and mid - microprice >= ``micro_edge_ticks`` ticks: sell. The entry is
  a limit order joining our side's touch (``order_type = "limit"``, the default) or a market order, with a
  stop-loss ``stop_ticks`` and a take-profit ``take_profit_ticks`` away from that touch price.
- long and imbalance <= ``exit_imbalance`` (the pressure turned), or short and imbalance >=
  ``-exit_imbalance``: a reduce-only market order closes the position.
- after any signal on a symbol, no further signal on it for ``cooldown_ms`` (by the book's event time):
  the order needs time to fill, and the position is learnt only from ``on_fill``.

Nothing on a book with an empty side or a one-sided touch. Prices are exact: the touch's ticks times the
book's ``tick_size`` (``Decimal``); the float imbalance and microprice only decide.

Parameters: ``levels`` (5), ``entry_imbalance`` (0.6), ``exit_imbalance`` (0.0, below
``entry_imbalance``), ``micro_edge_ticks`` (0.0), ``cooldown_ms`` (1000), ``stop_ticks`` (20),
``take_profit_ticks`` (10), ``order_type`` ("limit" | "market"), ``qty`` (a decimal string; default
none: the risk manager sizes entries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.strategies.base import Strategy, StrategyParamError, protective_prices, register
from engine.types import BookUpdate, Fill, OrderType, Side, Signal, Venue

__all__ = ["ImbalanceScalper"]

_ZERO = Decimal(0)


@dataclass(slots=True)
class _Sym:
    position: Decimal = _ZERO
    quiet_until_ms: int = -1
    last_imbalance: float | None = None
    signals: int = 0


@register
class ImbalanceScalper(Strategy):
    name = "imbalance_scalper"
    requires_books = True

    _KNOWN = (
        "levels",
        "entry_imbalance",
        "exit_imbalance",
        "micro_edge_ticks",
        "cooldown_ms",
        "stop_ticks",
        "take_profit_ticks",
        "order_type",
        "qty",
    )

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self._check_known(self._KNOWN)
        self.levels = self._int("levels", 5, lo=1, hi=1_000)
        self.entry_imbalance = self._float("entry_imbalance", 0.6, lo=0.01, hi=1.0)
        self.exit_imbalance = self._float("exit_imbalance", 0.0, lo=-1.0, hi=1.0)
        if self.exit_imbalance >= self.entry_imbalance:
            raise StrategyParamError(
                "exit_imbalance",
                f"must be below entry_imbalance ({self.entry_imbalance}), got {self.exit_imbalance}",
            )
        self.micro_edge_ticks = self._float("micro_edge_ticks", 0.0, lo=0.0, hi=1_000.0)
        self.cooldown_ms = self._int("cooldown_ms", 1_000, lo=0, hi=3_600_000)
        self.stop_ticks = self._int("stop_ticks", 20, lo=1, hi=1_000_000)
        self.take_profit_ticks = self._int("take_profit_ticks", 10, lo=1, hi=1_000_000)
        order_type = self.params.get("order_type", "limit")
        if order_type not in ("limit", "market"):
            raise StrategyParamError("order_type", f"must be 'limit' or 'market', got {order_type!r}")
        self.order_type = OrderType.LIMIT if order_type == "limit" else OrderType.MARKET
        self.qty = self._decimal("qty", None)
        self._syms: dict[tuple[Venue, str], _Sym] = {key: _Sym() for key in self.symbols}

    def on_book(self, update: BookUpdate) -> list[Signal]:
        st = self._syms.get((update.venue, update.symbol))
        if st is None:
            return []
        bid, ask = update.best_bid_ticks, update.best_ask_ticks
        if bid <= 0 or ask <= 0 or bid >= ask:
            return []
        book = self.book(update.venue, update.symbol)
        imbalance = book.imbalance(self.levels)
        micro = book.microprice()
        if imbalance is None or micro is None:
            return []
        imb = float(imbalance)
        st.last_imbalance = imb
        if update.ts_ms < st.quiet_until_ms:
            return []
        tick: Decimal = book.tick_size
        # microprice - mid, in ticks (float: it decides, it never becomes a price)
        # (rounded to 1e-9 tick: a microprice exactly at the mid must read as 0, not as float noise)
        edge = round(float(micro) / float(tick) - (bid + ask) / 2.0, 9)
        out: list[Signal]
        if st.position > 0 and imb <= self.exit_imbalance:
            out = [self._close(update, st, f"imbalance {imb:.3f} <= {self.exit_imbalance:g}")]
        elif st.position < 0 and imb >= -self.exit_imbalance:
            out = [self._close(update, st, f"imbalance {imb:.3f} >= {-self.exit_imbalance:g}")]
        elif st.position == 0 and imb >= self.entry_imbalance and edge >= self.micro_edge_ticks:
            out = [
                self._enter(update, st, Side.BUY, bid * tick, tick, f"imbalance {imb:.3f} edge {edge:.2f}t")
            ]
        elif st.position == 0 and imb <= -self.entry_imbalance and -edge >= self.micro_edge_ticks:
            out = [
                self._enter(update, st, Side.SELL, ask * tick, tick, f"imbalance {imb:.3f} edge {edge:.2f}t")
            ]
        else:
            return []
        st.quiet_until_ms = update.ts_ms + self.cooldown_ms
        st.signals += 1
        return out

    def on_fill(self, fill: Fill) -> list[Signal]:
        st = self._syms.get((fill.venue, fill.symbol))
        if st is not None:
            st.position += fill.qty * fill.side.sign
        return []

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "symbols": {
                f"{v.value}:{s}": {
                    "position": str(st.position),
                    "imbalance": st.last_imbalance,
                    "signals": st.signals,
                }
                for (v, s), st in self._syms.items()
            },
        }

    def _close(self, update: BookUpdate, st: _Sym, why: str) -> Signal:
        return self._close_signal(update.venue, update.symbol, st.position, why)

    def _enter(
        self, update: BookUpdate, st: _Sym, side: Side, price: Decimal, tick: Decimal, why: str
    ) -> Signal:
        stop, target = protective_prices(side, price, tick * self.stop_ticks, tick * self.take_profit_ticks)
        return Signal(
            venue=update.venue,
            symbol=update.symbol,
            side=side,
            type=self.order_type,
            qty=self.qty,
            limit_price=price if self.order_type is OrderType.LIMIT else None,
            stop_loss=stop,
            take_profit=target,
            reason=f"entry: {why}",
            strategy=self.name,
        )
