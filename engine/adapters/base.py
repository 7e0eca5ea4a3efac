"""The exchange-agnostic adapter interface.

Everything that touches a venue goes through an :class:`ExchangeAdapter`; nothing above it sees a
venue's field names. An adapter:

- keeps a local L2 book per subscribed symbol in the ``OrderBook`` kernel, synchronised with the
  venue's sequence rule (the ``BinanceBookSync`` / ``BybitBookSync`` kernels), resyncing on a gap and
  reporting each symbol's :class:`~engine.types.BookHealth`;
- delivers market events (:data:`~engine.types.MarketEvent`) and user events
  (:data:`~engine.types.UserEvent`) to the sink it was given, on the event loop, in the venue's order;
- raises the errors of ``engine.errors`` (``OrderRejected`` with a reason, ``RateLimited``, ``Banned``,
  ``AuthFailed``, ``ClockSkew``, ``VenueUnavailable``...), never a client library's exception;
- sends prices and quantities on the instrument's grid, as decimal strings, and never duplicates an
  order: the engine's client order id makes every placement idempotent (after a time-out or a 5xx it
  asks the venue by client order id before sending again);
- after any gap in its private stream (reconnect, listenKey expiry, a restarted venue) emits the venue's
  true state: every order it knew as open that the venue no longer knows at all (a query by client id
  finds nothing) is closed out as ``OrderUpdate`` with status ``CANCELED`` and reason
  :data:`UNKNOWN_TO_VENUE`; every position it knew that the venue no longer lists is emitted as a
  ``PositionUpdate`` with qty 0; balances that changed are emitted as ``BalanceUpdate``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.types import (
    Balance,
    BookHealth,
    Fill,
    Instrument,
    MarginMode,
    MarketEvent,
    Order,
    OrderRequest,
    Position,
    UserEvent,
    Venue,
)

__all__ = ["UNKNOWN_TO_VENUE", "AdapterSettings", "EventSink", "ExchangeAdapter"]

#: The reason of the CANCELED update an adapter emits for an order the venue no longer knows (a venue
#: restart or a purge lost it): it cannot fill any more, so the engine stops counting it as open.
UNKNOWN_TO_VENUE = "unknown_to_venue"

#: Called on the event loop for every event, in order. It must not block; the engine's sink puts the
#: event on a bounded queue and decides what happens when that queue is full.
EventSink = Callable[[MarketEvent | UserEvent], None]


@dataclass(frozen=True, kw_only=True)
class AdapterSettings:
    """Everything an adapter needs to reach one venue. URLs come from config (mainnet, testnet, local)."""

    venue: Venue
    rest_url: str
    ws_public_url: str
    ws_private_url: str
    api_key: str = field(repr=False)  # identifies the account; kept out of reprs and logs too
    api_secret: str = field(repr=False)  # never in a repr, a log line or an error
    symbols: tuple[str, ...]
    stale_after_s: float = 5.0  # a book with no update for this long is STALE
    clock_resync_s: float = 300.0  # re-measure the offset to the venue's clock this often
    request_timeout_s: float = 10.0
    ws_ping_interval_s: float = 20.0
    reconnect_max_delay_s: float = 30.0


class ExchangeAdapter(ABC):
    """One venue account. Methods are coroutines unless noted; all run on the engine's event loop."""

    venue: Venue

    # ---- lifecycle --------------------------------------------------------------------------------------
    @abstractmethod
    async def connect(self) -> None:
        """Load instruments, measure the clock offset, open the market and user streams, sync books."""

    @abstractmethod
    async def close(self) -> None:
        """Close every stream and session. Idempotent."""

    # ---- reference data ---------------------------------------------------------------------------------
    @abstractmethod
    async def instruments(self) -> dict[str, Instrument]: ...

    # ---- orders -----------------------------------------------------------------------------------------
    @abstractmethod
    async def place_order(self, request: OrderRequest) -> Order: ...

    @abstractmethod
    async def cancel_order(self, symbol: str, *, client_order_id: str) -> Order: ...

    @abstractmethod
    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        """Cancel every open order (of one symbol, or of every subscribed symbol)."""

    @abstractmethod
    async def amend_order(
        self, symbol: str, *, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> Order: ...

    @abstractmethod
    async def get_order(self, symbol: str, *, client_order_id: str) -> Order | None:
        """The venue's view of one order, or None when the venue does not know it."""

    @abstractmethod
    async def open_orders(self, symbol: str | None = None) -> list[Order]: ...

    @abstractmethod
    async def order_fills(
        self, symbol: str, *, client_order_id: str | None = None, venue_order_id: str | None = None
    ) -> list[Fill]:
        """Every execution of one order (by client or venue order id; at least one is required), oldest
        first, from the venue's trade history: recovery journals the fills of the orders that traded
        while no engine was running. A REST query; it delivers nothing to the sink."""

    # ---- account ----------------------------------------------------------------------------------------
    @abstractmethod
    async def positions(self) -> list[Position]: ...

    @abstractmethod
    async def balances(self) -> list[Balance]: ...

    @abstractmethod
    async def set_leverage(self, symbol: str, leverage: int) -> None: ...

    @abstractmethod
    async def set_margin_mode(self, symbol: str, mode: MarginMode) -> None: ...

    @abstractmethod
    async def set_position_mode(self, *, hedge: bool) -> None: ...

    # ---- market data (synchronous reads of local state) ------------------------------------------------
    @abstractmethod
    def book(self, symbol: str) -> Any:
        """The symbol's local ``OrderBook`` kernel (read-only for callers)."""

    @abstractmethod
    def book_health(self, symbol: str) -> BookHealth: ...

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: messages, malformed (dropped), resyncs, reconnects, rate-limit waits, retries..."""

    # ---- helpers shared by every adapter ---------------------------------------------------------------
    @staticmethod
    def symbols_of(symbols: Sequence[str]) -> tuple[str, ...]:
        """Upper-cased, de-duplicated, order kept."""
        return tuple(dict.fromkeys(s.upper() for s in symbols))
