"""``portfolio``: several strategies and symbols in one engine, each with its own allocation.

A :class:`StrategyPortfolio` is itself a :class:`~engine.strategies.base.Strategy` (registered as
``portfolio``), so whatever drives one strategy drives a portfolio unchanged. It holds entries of
(strategy, symbols, allocation) and

- routes each market event of a symbol (``on_book``, ``on_trade``, ``on_bar``) and each fill to the one
  entry that owns the symbol; ``on_timer`` goes to every entry, in config order;
- tags every signal an entry returns with the entry's ``tag`` (``Signal.strategy``) and its allocation:
  the signals are :class:`AllocatedSignal`, a ``Signal`` with an ``allocation`` field (a ``Decimal``
  fraction of equity; a sizer uses ``allocation x equity`` as the entry's equity).

A symbol belongs to at most one entry: positions are one-way per symbol on both venues, so two
strategies on one symbol would net each other's orders and neither could know its own position from the
fills. The allocations are each in (0, 1] and add up to at most 1.

Config (``engine.config`` turns ``[[strategies]]`` into ``[strategy] name = "portfolio"`` with these
params; ``symbols`` are ``"venue:SYMBOL"``, or a bare ``"SYMBOL"`` for every venue that lists it)::

    [[strategies]]
    name = "ema_cross"
    params = { fast = 8, slow = 21 }
    symbols = ["BTCUSDT"]
    allocation = "0.6"

    [[strategies]]
    name = "supertrend"
    symbols = ["binance:ETHUSDT"]
    allocation = "0.4"

Entry tags are the strategy names, suffixed ``#<index>`` when a name appears more than once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
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
from engine.types import BookUpdate, Fill, Signal, TradeTick, Venue

__all__ = ["AllocatedSignal", "PortfolioEntry", "StrategyPortfolio", "parse_allocation", "resolve_symbols"]

_ONE = Decimal(1)
_ZERO = Decimal(0)
_SIGNAL_FIELDS = tuple(f.name for f in fields(Signal))


@dataclass(frozen=True, kw_only=True)
class AllocatedSignal(Signal):
    """A signal from a portfolio entry: ``strategy`` is the entry's tag, ``allocation`` its fraction of
    equity."""

    allocation: Decimal = _ONE


@dataclass(frozen=True, slots=True)
class PortfolioEntry:
    tag: str
    strategy: Strategy
    symbols: tuple[tuple[Venue, str], ...]
    allocation: Decimal


def parse_allocation(value: object, key: str) -> Decimal:
    """An allocation: a decimal string, an integer or a float (read through its shortest repr), in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise StrategyParamError(key, f'must be a decimal fraction of equity such as "0.5", got {value!r}')
    try:
        d = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise StrategyParamError(key, f"must be a decimal fraction of equity, got {value!r}") from None
    if not d.is_finite() or not _ZERO < d <= _ONE:
        raise StrategyParamError(key, f"must be in (0, 1], got {value!r}")
    return d


def resolve_symbols(
    raw: object, available: Sequence[tuple[Venue, str]], key: str
) -> tuple[tuple[Venue, str], ...]:
    """``["venue:SYMBOL" | "SYMBOL", ...]`` -> (venue, symbol) pairs among ``available`` (a bare symbol
    means every venue that lists it)."""
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or not raw:
        raise StrategyParamError(key, 'must be a non-empty list of "SYMBOL" or "venue:SYMBOL" strings')
    out: list[tuple[Venue, str]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            raise StrategyParamError(f"{key}[{i}]", f"must be a symbol string, got {item!r}")
        if ":" in item:
            venue_name, _, symbol = item.partition(":")
            try:
                venue = Venue(venue_name.lower())
            except ValueError:
                raise StrategyParamError(f"{key}[{i}]", f"unknown venue {venue_name!r}") from None
            matches = [(venue, symbol.upper())] if (venue, symbol.upper()) in available else []
        else:
            matches = [(v, s) for v, s in available if s == item.upper()]
        if not matches:
            known = ", ".join(f"{v.value}:{s}" for v, s in available) or "none"
            raise StrategyParamError(
                f"{key}[{i}]", f"{item!r} is not a configured symbol (configured: {known})"
            )
        for m in matches:
            if m in out:
                raise StrategyParamError(f"{key}[{i}]", f"{m[0].value}:{m[1]} is listed twice")
            out.append(m)
    return tuple(out)


@register
class StrategyPortfolio(Strategy):
    name = "portfolio"

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self._check_known(("strategies",))
        self.entries: tuple[PortfolioEntry, ...] = self._entries(self.params.get("strategies"))
        self._owner: dict[tuple[Venue, str], PortfolioEntry] = {
            key: entry for entry in self.entries for key in entry.symbols
        }
        self._by_tag = {e.tag: e for e in self.entries}
        self.requires_books = any(e.strategy.requires_books for e in self.entries)

    def _entries(self, raw: object) -> tuple[PortfolioEntry, ...]:
        if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence) or not raw:
            raise StrategyParamError(
                "strategies", "must be a non-empty list of { name, params, symbols, allocation }"
            )
        names = [item.get("name") if isinstance(item, Mapping) else None for item in raw]
        owned: dict[tuple[Venue, str], str] = {}
        total = _ZERO
        out: list[PortfolioEntry] = []
        for i, item in enumerate(raw):
            key = f"strategies[{i}]"
            if not isinstance(item, Mapping):
                raise StrategyParamError(key, f"must be a table, got {item!r}")
            for k in item:
                if k not in ("name", "params", "symbols", "allocation"):
                    raise StrategyParamError(
                        f"{key}.{k}", "unknown key (allowed: allocation, name, params, symbols)"
                    )
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise StrategyParamError(f"{key}.name", f"must be a strategy name, got {name!r}")
            if name == self.name:
                raise StrategyParamError(f"{key}.name", "portfolios may not nest")
            if "allocation" not in item:
                raise StrategyParamError(f"{key}.allocation", "missing: a decimal fraction of equity")
            allocation = parse_allocation(item["allocation"], f"{key}.allocation")
            total += allocation
            if total > _ONE:
                raise StrategyParamError(
                    f"{key}.allocation", f"the allocations add up to {total}, more than 1"
                )
            syms = resolve_symbols(item.get("symbols"), self.symbols, f"{key}.symbols")
            tag = name if names.count(name) == 1 else f"{name}#{i}"
            for s in syms:
                if s in owned:
                    raise StrategyParamError(
                        f"{key}.symbols",
                        f"{s[0].value}:{s[1]} already belongs to {owned[s]} (one entry per symbol)",
                    )
                owned[s] = tag
            params = item.get("params", {})
            if not isinstance(params, Mapping):
                raise StrategyParamError(f"{key}.params", f"must be a table, got {params!r}")
            try:
                strategy = create(name, params=params, symbols=syms)
            except UnknownStrategy as exc:
                raise StrategyParamError(f"{key}.name", str(exc)) from None
            except StrategyParamError as exc:
                raise StrategyParamError(f"{key}.params.{exc.param}", exc.reason) from None
            out.append(PortfolioEntry(tag=tag, strategy=strategy, symbols=syms, allocation=allocation))
        return tuple(out)

    # ---- queries ----------------------------------------------------------------------------------------

    def allocation_of(self, tag: str) -> Decimal:
        """The allocation of the entry tagged ``tag`` (KeyError if none)."""
        return self._by_tag[tag].allocation

    def owner(self, venue: Venue, symbol: str) -> PortfolioEntry | None:
        return self._owner.get((venue, symbol))

    def bind_books(self, source: BookSource) -> None:
        super().bind_books(source)
        for e in self.entries:
            e.strategy.bind_books(source)

    # ---- hooks ------------------------------------------------------------------------------------------

    def on_book(self, update: BookUpdate) -> list[Signal]:
        entry = self._owner.get((update.venue, update.symbol))
        return [] if entry is None else _tag(entry, entry.strategy.on_book(update))

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        entry = self._owner.get((trade.venue, trade.symbol))
        return [] if entry is None else _tag(entry, entry.strategy.on_trade(trade))

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        entry = self._owner.get((venue, symbol))
        return [] if entry is None else _tag(entry, entry.strategy.on_bar(venue, symbol, bar))

    def on_fill(self, fill: Fill) -> list[Signal]:
        entry = self._owner.get((fill.venue, fill.symbol))
        return [] if entry is None else _tag(entry, entry.strategy.on_fill(fill))

    def on_timer(self, now_ms: int) -> list[Signal]:
        out: list[Signal] = []
        for e in self.entries:
            out.extend(_tag(e, e.strategy.on_timer(now_ms)))
        return out

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "entries": [
                {
                    "tag": e.tag,
                    "allocation": str(e.allocation),
                    "symbols": [f"{v.value}:{s}" for v, s in e.symbols],
                    "state": e.strategy.state(),
                }
                for e in self.entries
            ],
        }


def _tag(entry: PortfolioEntry, signals: list[Signal]) -> list[Signal]:
    out: list[Signal] = []
    for sig in signals:
        if (sig.venue, sig.symbol) not in entry.symbols:
            raise RuntimeError(
                f"strategy {entry.tag!r} signalled {sig.venue.value}:{sig.symbol}, which it does not own"
            )
        values = {name: getattr(sig, name) for name in _SIGNAL_FIELDS}
        values["strategy"] = entry.tag
        out.append(AllocatedSignal(**values, allocation=entry.allocation))
    return out
