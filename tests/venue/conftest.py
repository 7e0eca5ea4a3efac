"""Shared fixtures of the venue tests: a manual clock, exchange cores (seeded generator market or a
scripted crowd book), and an autouse check of the core's accounting and book invariants after every
test that built a core through these fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal

import pytest

from engine.venue.exchange import Exchange
from engine.venue.instruments import default_instruments
from engine.venue.market import CrowdSource, ManualSource
from engine.venue.model import VenueEvent
from engine.venue.server import AccountSpec, ShiftableClock, VenueConfig, VenueServer

__all__ = ["START_MS", "VENUE_KEY", "VENUE_SECRET", "ManualClock", "crowd_book"]

#: one second after an 8-hour funding boundary
START_MS = (1_700_000_000_000 // 28_800_000) * 28_800_000 + 1_000

D = Decimal


class ManualClock:
    """A clock the test moves by hand (epoch ms)."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def tick(self, ms: int) -> int:
        self.now += ms
        return self.now


def crowd_book(
    best_ask: Decimal, tick: Decimal, qty: Decimal, levels: int = 10
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """A crowd book around ``best_ask``: bids at ``best_ask - k*tick`` (k = 1..levels) and asks at
    ``best_ask + k*tick`` (k = 0..levels-1), ``qty`` at each level."""
    bids = [(best_ask - tick * k, qty) for k in range(1, levels + 1)]
    asks = [(best_ask + tick * k, qty) for k in range(levels)]
    return bids, asks


_BOOKS = {
    # symbol: (best ask, qty per level); the best bid is one tick below
    "BTCUSDT": (D("60000.0"), D("1.000")),
    "ETHUSDT": (D("3000.00"), D("10.000")),
    "SOLUSDT": (D("150.00"), D("100.0")),
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def _venue_registry() -> Iterator[list[Exchange]]:
    made: list[Exchange] = []
    yield made
    for ex in made:
        ex.check_invariants()


@pytest.fixture(autouse=True)
def _check_venue_invariants(_venue_registry: list[Exchange]) -> Iterator[None]:
    """Every core built through these fixtures passes ``check_invariants()`` at the end of the test."""
    yield


@pytest.fixture
def make_exchange(clock: ManualClock, _venue_registry: list[Exchange]) -> Callable[..., Exchange]:
    """Build a core on the manual clock; ``scripted=True`` replaces the generator by a
    :class:`ManualSource` crowd book per symbol (static unless the test changes it), no mark
    premium, and funding every 60 s. Extra keyword arguments go to :class:`Exchange`."""

    def make(*, scripted: bool = False, **kwargs: object) -> Exchange:
        if scripted:
            sources: dict[str, CrowdSource] = {}
            specs = default_instruments()
            for symbol, (ask, qty) in _BOOKS.items():
                tick = specs[symbol].tick_size
                bids, asks = crowd_book(ask, tick, qty)
                sources[symbol] = ManualSource(
                    tick_size=tick, lot_size=specs[symbol].lot_size, bids=bids, asks=asks
                )
            kwargs.setdefault("sources", sources)
            kwargs.setdefault("premium_weight", D(0))
            kwargs.setdefault("funding_interval_ms", 60_000)
            kwargs.setdefault("start_prices", {s: a for s, (a, _) in _BOOKS.items()})
        ex = Exchange(clock=clock, **kwargs)  # type: ignore[arg-type]
        _venue_registry.append(ex)
        return ex

    return make


@pytest.fixture
def exchange(make_exchange: Callable[..., Exchange]) -> Exchange:
    """A core with the seeded generator market (seed 7) on the manual clock, no accounts."""
    return make_exchange()


@pytest.fixture
def scripted(make_exchange: Callable[..., Exchange]) -> Exchange:
    """A core with static scripted crowd books (BTCUSDT 59999.9 / 60000.0, 1 BTC a level) and
    two accounts: ``alice`` and ``bob`` with 100,000 USDT each."""
    ex = make_exchange(scripted=True)
    ex.add_account(api_key="alice", api_secret="alice-secret", deposit=D("100000"))
    ex.add_account(api_key="bob", api_secret="bob-secret", deposit=D("100000"))
    return ex


@pytest.fixture
def events(scripted: Exchange) -> list[VenueEvent]:
    """Every event the ``scripted`` core emits from now on."""
    got: list[VenueEvent] = []
    scripted.add_listener(got.append)
    return got


# ---- the whole venue on a free loopback port (Binance front-end tests) ------------------------------

VENUE_KEY = "venue-test-key"
VENUE_SECRET = "venue-test-secret"


@pytest.fixture
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[VenueServer]:
    """A running venue on a free loopback port with one account (``VENUE_KEY``, 100,000 USDT).

    Options by indirect parametrisation (``@pytest.mark.parametrize("venue", [{...}], indirect=True)``):
    ``scripted`` (static crowd books as in ``scripted``, BTCUSDT 59999.9 / 60000.0, 1 BTC a level,
    instead of the seeded generator), ``funding_interval_s``, ``limits`` (``BinanceLimits``),
    ``listen_key_validity_ms``, ``ws_queue_limit``, ``bybit_rate_limits`` (endpoint -> requests per
    second), ``bybit_ip_limits`` (``BybitIpLimits``), ``tick_ms``. The core's invariants are checked
    when the test ends.
    """
    opts: dict[str, object] = dict(getattr(request, "param", {}) or {})
    config_kwargs: dict[str, object] = {}
    for name in (
        "funding_interval_s",
        "listen_key_validity_ms",
        "ws_queue_limit",
        "bybit_rate_limits",
        "bybit_ip_limits",
    ):
        if name in opts:
            config_kwargs[name] = opts[name]
    if "limits" in opts:
        config_kwargs["rate_limits"] = opts["limits"]
    config = VenueConfig(**config_kwargs)  # type: ignore[arg-type]
    core = None
    clock = None
    if opts.get("scripted"):
        clock = ShiftableClock()
        specs = default_instruments()
        sources: dict[str, CrowdSource] = {}
        for symbol, (ask, qty) in _BOOKS.items():
            tick = specs[symbol].tick_size
            bids, asks = crowd_book(ask, tick, qty)
            sources[symbol] = ManualSource(
                tick_size=tick, lot_size=specs[symbol].lot_size, bids=bids, asks=asks
            )
        funding = opts.get("funding_interval_s")
        core = Exchange(
            clock=clock,
            sources=sources,
            premium_weight=D(0),
            start_prices={s: a for s, (a, _) in _BOOKS.items()},
            funding_interval_ms=int(funding) * 1000 if isinstance(funding, int) else None,
        )
    server = VenueServer(
        accounts=[AccountSpec(key=VENUE_KEY, secret=VENUE_SECRET, usdt=D("100000"))],
        tick_ms=int(opts.get("tick_ms", 20)),  # type: ignore[call-overload]
        config=config,
        core=core,
        clock=clock,
    )
    async with server:
        yield server
        check = getattr(server.core, "check_invariants", None)
        if check is not None:
            check()
