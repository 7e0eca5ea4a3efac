"""What the operator can ask of a running engine: the interface between ``admin`` and ``engine``.

``engine.admin`` (the Unix-socket JSON-lines server) talks only to an :class:`EngineControl`; the
``TradingEngine`` implements it. Every method acts in the order called and returns after the action is
done (``emergency_stop`` after the venues confirmed the cancels). Results are plain JSON-ready values:
money and sizes as decimal strings, never floats, and the shapes below are the contract of DESIGN.md
("Result shapes on the socket").

Refusals are exceptions of :class:`ControlError` with a stable ``code`` (the admin socket's error code):
``invalid_transition``, ``bad_argument``, ``unknown_symbol``, ``unknown_limit``, ``not_running``...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from engine.errors import EngineError

__all__ = ["JSON", "ControlError", "EngineControl"]

JSON = dict[str, Any]


class ControlError(EngineError):
    """An operator request the engine refuses; ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class EngineControl(Protocol):
    async def status(self) -> JSON:
        """At least: ``state`` (stopped | running | paused | emergency_stopped), ``mode``, ``uptime_s``,
        ``venues`` (each with ``connected`` and per-symbol book ``health``), ``equity``, ``daily_pnl``,
        ``positions`` (count), ``open_orders`` (count), ``risk`` (usage summary), ``state_reason``."""
        ...

    async def pause(self, *, reason: str = "operator") -> JSON: ...

    async def resume(self, *, reason: str = "operator") -> JSON: ...

    async def emergency_stop(self, *, flatten: bool = False, reason: str = "operator") -> JSON:
        """Cancel every open order on every venue (and flatten when asked or configured); latches."""
        ...

    async def reset(self, *, reason: str = "operator") -> JSON:
        """Leave emergency_stopped; lands in paused, never straight in running."""
        ...

    async def stop(self, *, reason: str = "operator") -> JSON:
        """Graceful stop: no new signals, optional cancels, journal flushed, streams closed."""
        ...

    async def positions(self) -> list[JSON]:
        """Each: ``venue``, ``symbol``, ``side``, ``qty`` (signed decimal string), ``entry_price``,
        ``unrealized_pnl``."""
        ...

    async def orders(self) -> list[JSON]:
        """Open orders, each: ``client_order_id``, ``venue``, ``symbol``, ``side``, ``type``, ``price``,
        ``qty``, ``filled_qty``, ``status``."""
        ...

    async def book(self, symbol: str, *, depth: int = 10, venue: str | None = None) -> JSON:
        """``bids`` and ``asks`` as lists of ``[price, qty]`` decimal strings from the touch outwards,
        plus ``venue``, ``symbol``, ``health``."""
        ...

    async def risk(self) -> JSON:
        """Risk usage and state: limits in use, exposure, leverage, drawdown, daily PnL vs limit, trips."""
        ...

    async def limits(self) -> JSON:
        """Every risk limit and its current value (decimal strings for money)."""
        ...

    async def set_limit(self, key: str, value: str) -> JSON:
        """Change one limit at run time, validated (``unknown_limit`` / ``bad_argument``)."""
        ...

    async def cancel_all(self, symbol: str | None = None) -> JSON:
        """Cancel every open order (of one symbol); returns ``{"canceled": N}``."""
        ...

    async def metrics(self) -> JSON:
        """Counters and gauges: events per stream, resyncs, reconnects, latencies, orders by outcome,
        risk denials by reason, rate-limit usage..."""
        ...

    def subscribe(self) -> AsyncIterator[JSON]:
        """A stream of events for ``subscribe`` clients: state changes, orders, fills, risk denials,
        alerts; each ``{"event": <name>, "ts_ms": ..., ...}``."""
        ...
