"""The strategy interface and the registry of strategies by name.

A :class:`Strategy` is synchronous and does no I/O: the engine calls its hooks on the event loop with
market events, completed bars and its own fills, and every hook returns a (possibly empty) list of
:class:`~engine.types.Signal`. A signal is an *intent*; the engine passes each through the unified risk
manager, which sizes it (when it has no ``qty``), clips or denies it. Strategies never see the adapters,
the OMS or the journal; what they need to know about their position they learn from ``on_fill``.

Strategies that read the local order book beyond the touch (depth imbalance, microprice) set
``requires_books = True``; whoever drives them (the engine, the backtester) must call
:meth:`Strategy.bind_books` with a lookup ``(venue, symbol) -> OrderBook`` before the first event. The
lookup gives read access to the same book the ``BookUpdate`` describes, as of that update.

Parameters come from the config's ``[strategy] params`` table; a strategy validates them in its
constructor and raises :class:`StrategyParamError` naming the parameter (the engine turns that into a
``ConfigError`` naming ``strategy.params.<name>``).

The registry maps a name (the config's ``[strategy] name``) to a class: :func:`register` adds one,
:func:`create` builds one from the config.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

from engine.types import BookUpdate, Fill, OrderType, Side, Signal, TradeTick, Venue

__all__ = [
    "STRATEGIES",
    "Bar",
    "BookSource",
    "Strategy",
    "StrategyParamError",
    "UnknownStrategy",
    "create",
    "protective_prices",
    "register",
]

_BPS = Decimal(10_000)

#: A completed bar, as ``engine.kernels.BarBuilder`` makes them (fields: open_time_ms, close_time_ms,
#: open, high, low, close, volume, trades, vwap, quote_volume; prices as floats: indicator inputs).
Bar = Any

#: ``(venue, symbol) -> the driver's local OrderBook`` of that symbol (``engine.kernels.OrderBook`` API:
#: ``imbalance(n)``, ``microprice()``, ``tick_size``, ``ticks_to_price``...), or None when it has none.
BookSource = Callable[[Venue, str], Any]


def protective_prices(
    side: Side, price: Decimal, stop_off: Decimal, target_off: Decimal
) -> tuple[Decimal, Decimal]:
    """(stop-loss, take-profit) of an entry on ``side`` at ``price``: ``stop_off`` against it, ``target_off``
    in its favour."""
    if side is Side.BUY:
        return price - stop_off, price + target_off
    return price + stop_off, price - target_off


class StrategyParamError(ValueError):
    """A strategy parameter is invalid: ``param`` names it, ``reason`` says why."""

    def __init__(self, param: str, reason: str) -> None:
        self.param = param
        self.reason = reason
        super().__init__(f"{param}: {reason}")


class UnknownStrategy(KeyError):
    """No strategy is registered under this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        known = ", ".join(sorted(STRATEGIES)) or "none"
        return f"unknown strategy {self.name!r} (known: {known})"


class Strategy(ABC):  # noqa: B024 - every hook is optional; the ABC marks the interface
    """Base class of every strategy. Override the hooks you need; each returns a list of signals."""

    #: The registry name (the config's ``[strategy] name``).
    name: ClassVar[str] = ""
    #: True when the strategy reads the books through :meth:`book` (the driver must call :meth:`bind_books`).
    requires_books: bool = False

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        self.params = dict(params)
        self.symbols: tuple[tuple[Venue, str], ...] = tuple(symbols)
        self._book_source: BookSource | None = None

    def bind_books(self, source: BookSource) -> None:
        """Give the strategy read access to the driver's local books (see the module docstring)."""
        self._book_source = source

    def book(self, venue: Venue, symbol: str) -> Any:
        """The local book of ``symbol``; raises RuntimeError when no book source was bound (a wiring
        fault of the driver, not a market condition) and LookupError when the source has no such book."""
        if self._book_source is None:
            raise RuntimeError(f"strategy {self.name!r} reads order books but no book source was bound")
        book = self._book_source(venue, symbol)
        if book is None:
            raise LookupError(f"no local book for {venue.value}:{symbol}")
        return book

    def on_book(self, update: BookUpdate) -> list[Signal]:
        """The local book of ``update.symbol`` changed (the touch is on the update)."""
        return []

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        """A public trade."""
        return []

    def on_bar(self, venue: Venue, symbol: str, bar: Bar) -> list[Signal]:
        """A completed time bar (strategies that build bars call this themselves from ``on_trade``)."""
        return []

    def on_fill(self, fill: Fill) -> list[Signal]:
        """One of the account's fills (the engine's orders, protective exits and external ones)."""
        return []

    def on_timer(self, now_ms: int) -> list[Signal]:
        """Called by the engine about once a second (epoch ms)."""
        return []

    def state(self) -> dict[str, object]:
        """What the strategy wants shown on the admin socket (JSON-ready values)."""
        return {"name": self.name}

    # ---- parameter helpers ----------------------------------------------------------------------------

    def _int(self, key: str, default: int, *, lo: int = 1, hi: int = 1_000_000) -> int:
        value = self.params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise StrategyParamError(key, f"must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise StrategyParamError(key, f"must be in {lo}..{hi}, got {value}")
        return value

    def _float(self, key: str, default: float, *, lo: float, hi: float) -> float:
        value = self.params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise StrategyParamError(key, f"must be a number, got {value!r}")
        if not lo <= float(value) <= hi:
            raise StrategyParamError(key, f"must be in {lo}..{hi}, got {value}")
        return float(value)

    def _decimal(self, key: str, default: Decimal | None) -> Decimal | None:
        """A decimal parameter (money/size): a decimal string or an integer, never a float."""
        value = self.params.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or isinstance(value, float):
            raise StrategyParamError(key, f"must be a decimal string (floats are inexact), got {value!r}")
        try:
            d = Decimal(value) if isinstance(value, int | str) else None
        except InvalidOperation:
            d = None
        if d is None or not d.is_finite() or d <= 0:
            raise StrategyParamError(key, f"must be a positive decimal string, got {value!r}")
        return d

    def _check_known(self, known: Sequence[str]) -> None:
        for key in self.params:
            if key not in known:
                raise StrategyParamError(key, f"unknown parameter (known: {', '.join(sorted(known))})")

    def _bracket_params(self) -> None:
        """Read ``stop_bps`` (250), ``take_profit_bps`` (500) and ``qty`` (a decimal string; default none:
        the risk manager sizes entries), the parameters of :meth:`_bps_entry`."""
        self.stop_bps = self._int("stop_bps", 250, lo=1, hi=5_000)
        self.take_profit_bps = self._int("take_profit_bps", 500, lo=1, hi=50_000)
        self.qty = self._decimal("qty", None)

    # ---- signal helpers -------------------------------------------------------------------------------

    def _close_signal(self, venue: Venue, symbol: str, position: Decimal, why: str) -> Signal:
        """A reduce-only market order closing the signed ``position``."""
        return Signal(
            venue=venue,
            symbol=symbol,
            side=Side.SELL if position > 0 else Side.BUY,
            type=OrderType.MARKET,
            qty=abs(position),
            reduce_only=True,
            reason=f"close: {why}",
            strategy=self.name,
        )

    def _bps_entry(
        self,
        venue: Venue,
        symbol: str,
        side: Side,
        price: Decimal | None,
        why: str,
        *,
        confidence: float = 1.0,
    ) -> Signal:
        """A market entry of ``qty`` whose stop-loss and take-profit are ``stop_bps`` / ``take_profit_bps``
        from ``price`` (none when no price is known); needs :meth:`_bracket_params`."""
        stop: Decimal | None = None
        target: Decimal | None = None
        if price is not None:
            stop_off = price * self.stop_bps / _BPS
            target_off = price * self.take_profit_bps / _BPS
            stop, target = protective_prices(side, price, stop_off, target_off)
        return Signal(
            venue=venue,
            symbol=symbol,
            side=side,
            type=OrderType.MARKET,
            qty=self.qty,
            stop_loss=stop,
            take_profit=target,
            confidence=confidence,
            reason=f"entry: {why}",
            strategy=self.name,
        )

    def _reverse_into(
        self,
        venue: Venue,
        symbol: str,
        side: Side,
        position: Decimal,
        price: Decimal | None,
        why: str,
        *,
        confidence: float = 1.0,
    ) -> list[Signal]:
        """Enter ``side`` (:meth:`_bps_entry`), closing ``position`` first when it is the other way."""
        out: list[Signal] = []
        if position * side.sign < 0:
            out.append(self._close_signal(venue, symbol, position, why))
        out.append(self._bps_entry(venue, symbol, side, price, why, confidence=confidence))
        return out


#: name -> strategy class
STRATEGIES: dict[str, type[Strategy]] = {}

_S = TypeVar("_S", bound=type[Strategy])


def register(cls: _S) -> _S:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is taken by {STRATEGIES[cls.name].__qualname__}")
    STRATEGIES[cls.name] = cls
    return cls


def create(name: str, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> Strategy:
    """Build the strategy registered as ``name``; raises :class:`UnknownStrategy` or
    :class:`StrategyParamError`."""
    factory: Callable[..., Strategy] | None = STRATEGIES.get(name)
    if factory is None:
        raise UnknownStrategy(name)
    return factory(params=params, symbols=symbols)
