"""Fixtures of the adapter tests: the local venue on a free port and connected adapters.

``adapter_factory(venue_name)`` builds and connects an adapter for ``Venue.BINANCE`` (or "binance")
against the running ``venue``; every adapter it made is closed when the test ends. Other venues plug
in through ``MAKERS``: a function ``make(venue_server, sink, **overrides) -> ExchangeAdapter`` (not yet
connected) registered under its ``Venue`` (the Bybit worker adds ``MAKERS[Venue.BYBIT]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from engine.adapters.base import AdapterSettings, ExchangeAdapter
from engine.types import MarketEvent, UserEvent, Venue
from engine.venue.server import AccountSpec, VenueServer

__all__ = ["KEY", "MAKERS", "SECRET", "Events", "settings_for"]

KEY = "adapter-test-key"
SECRET = "adapter-test-secret"
SYMBOLS = ("BTCUSDT", "ETHUSDT")


class Events(list[MarketEvent | UserEvent]):
    """Every event an adapter delivered, in order (the test sink)."""

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self if isinstance(e, kind)]


def settings_for(venue: VenueServer, name: Venue, **overrides: Any) -> AdapterSettings:
    if name is Venue.BINANCE:
        urls = {"rest_url": venue.base_url, "ws_public_url": venue.ws_url, "ws_private_url": venue.ws_url}
    else:
        urls = {
            "rest_url": venue.base_url,
            "ws_public_url": venue.ws_url + "/v5/public/linear",
            "ws_private_url": venue.ws_url + "/v5/private",
        }
    values: dict[str, Any] = {
        "venue": name,
        "api_key": KEY,
        "api_secret": SECRET,
        "symbols": SYMBOLS,
        "stale_after_s": 1.0,
        "clock_resync_s": 60.0,
        "request_timeout_s": 2.0,
        "ws_ping_interval_s": 5.0,
        "reconnect_max_delay_s": 0.5,
        **urls,
    }
    values.update(overrides)
    return AdapterSettings(**values)


def make_binance(venue: VenueServer, sink: Callable[[Any], None], **overrides: Any) -> ExchangeAdapter:
    from engine.adapters.binance import BinanceAdapter

    adapter_kwargs = {k: overrides.pop(k) for k in list(overrides) if k in _BINANCE_ADAPTER_KWARGS}
    return BinanceAdapter(settings_for(venue, Venue.BINANCE, **overrides), sink, **adapter_kwargs)


_BINANCE_ADAPTER_KWARGS = {
    "listen_key_keepalive_s",
    "stall_after_s",
    "place_retries",
    "retry_delay_s",
    "rate_rules",
    "reconnect_base_delay_s",
}


def make_bybit(venue: VenueServer, sink: Callable[[Any], None], **overrides: Any) -> ExchangeAdapter:
    from engine.adapters.bybit import BybitAdapter

    adapter_kwargs = {k: overrides.pop(k) for k in list(overrides) if k in _BYBIT_ADAPTER_KWARGS}
    return BybitAdapter(settings_for(venue, Venue.BYBIT, **overrides), sink, **adapter_kwargs)


_BYBIT_ADAPTER_KWARGS = {
    "book_depth",
    "stall_after_s",
    "rest_workers",
    "place_retries",
    "retry_delay_s",
    "post_only_wait_s",
}

#: venue -> adapter maker
MAKERS: dict[Venue, Callable[..., ExchangeAdapter]] = {Venue.BINANCE: make_binance, Venue.BYBIT: make_bybit}


@pytest.fixture
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[VenueServer]:
    """The local venue on a free loopback port, one account (``KEY``) with 100,000 USDT.

    Indirect parameters: ``tick_ms`` (market step, default 20), ``config`` (a ``VenueConfig``)."""
    opts: dict[str, Any] = dict(getattr(request, "param", {}) or {})
    kwargs: dict[str, Any] = {"tick_ms": int(opts.get("tick_ms", 20))}
    if "config" in opts:
        kwargs["config"] = opts["config"]
    server = VenueServer(accounts=[AccountSpec(key=KEY, secret=SECRET, usdt=Decimal("100000"))], **kwargs)
    async with server:
        yield server
        check = getattr(server.core, "check_invariants", None)
        if check is not None:
            check()


AdapterFactory = Callable[..., Awaitable[tuple[Any, Events]]]


@pytest.fixture
async def adapter_factory(venue: VenueServer) -> AsyncIterator[AdapterFactory]:
    """``await adapter_factory(Venue.BINANCE, **overrides)`` -> (connected adapter, its events)."""
    made: list[ExchangeAdapter] = []

    async def factory(name: Venue | str, **overrides: Any) -> tuple[Any, Events]:
        events = Events()
        adapter = MAKERS[Venue(name)](venue, events.append, **overrides)
        made.append(adapter)
        await adapter.connect()
        return adapter, events

    yield factory
    for adapter in made:
        await adapter.close()
