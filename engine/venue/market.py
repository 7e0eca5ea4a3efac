"""The market driver: where crowd liquidity, other participants' trades, index/mark price and funding
rates come from.

A :class:`CrowdSource` describes, per market step, (1) other participants' trades as crowd taker
orders and (2) the crowd's *target* quantity at each changed price level (absolute, in lots). The
exchange executes the trades against its real book first (so an account order at the front of a
queue gets filled as maker when the crowd trades through it) and then moves the crowd quantity at
each changed level to the target (added size joins the back of the queue, removed size comes off
the back). Two sources exist:

- :class:`GeneratorSource` wraps the seeded :class:`~engine.venue.generator.MarketGenerator`
  (Binance-shaped events, parsed to integer ticks and lots).
- :class:`ManualSource` is a book and trades set by hand (tests, scripted scenarios, replays).

:class:`MarkState` turns the index (the crowd mid) and the last trade price into the mark price (the
index plus a smoothed, clamped premium) and the funding rate (Binance's formula: premium plus
``clamp(interest - premium, ±0.05%)``, clamped to ±0.75%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from engine.venue.generator import MarketGenerator

__all__ = [
    "CrowdSource",
    "CrowdStep",
    "GeneratorSource",
    "ManualSource",
    "MarkState",
]

_ZERO = Decimal(0)
_RATE = Decimal("0.00000001")


@dataclass(slots=True)
class CrowdStep:
    """One market step: trades ``(price ticks, lots, aggressor is buy)`` and absolute level targets
    ``(price ticks, lots)`` per side (0 = the crowd leaves that price)."""

    trades: list[tuple[int, int, bool]] = field(default_factory=list)
    bids: list[tuple[int, int]] = field(default_factory=list)
    asks: list[tuple[int, int]] = field(default_factory=list)


class CrowdSource(Protocol):
    def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The crowd's current levels (bids best first, asks best first), (ticks, lots)."""
        ...

    def step(self, now_ms: int) -> CrowdStep: ...

    def touch(self) -> tuple[int, int] | None:
        """(best bid, best ask) of the crowd's own book in ticks, None if a side is empty."""
        ...


class _Units:
    """Parses the generator's fixed-places decimal strings into integer steps without Decimal."""

    __slots__ = ("_mantissa", "_places")

    def __init__(self, step: Decimal) -> None:
        exponent = step.as_tuple().exponent
        assert isinstance(exponent, int)
        self._places = max(0, -exponent)
        self._mantissa = int(step * 10**self._places)

    def __call__(self, text: str) -> int:
        if self._places:
            whole, _, frac = text.partition(".")
            units = int(whole + frac.ljust(self._places, "0")[: self._places])
        else:
            units = int(text)
        steps, rest = divmod(units, self._mantissa)
        if rest:
            raise ValueError(f"{text!r} is off the grid")
        return steps


class GeneratorSource:
    """The seeded market generator as a crowd source."""

    def __init__(self, generator: MarketGenerator) -> None:
        self.generator = generator
        self._price = _Units(generator.tick_size)
        self._qty = _Units(generator.lot_size)

    def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        _, bids, asks = self.generator.book()
        return bids, asks

    def touch(self) -> tuple[int, int] | None:
        g = self.generator
        return g.best_bid_ticks, g.best_ask_ticks

    def step(self, now_ms: int) -> CrowdStep:
        out = CrowdStep()
        price, qty = self._price, self._qty
        for ev in self.generator.step(now_ms):
            kind = ev.get("e")
            if kind == "aggTrade":
                out.trades.append((price(ev["p"]), qty(ev["q"]), not ev["m"]))
            elif kind == "depthUpdate":
                out.bids.extend((price(p), qty(q)) for p, q in ev["b"])
                out.asks.extend((price(p), qty(q)) for p, q in ev["a"])
        return out


class ManualSource:
    """A crowd whose book and trades are set by hand, in Decimal prices and sizes.

    Changes queue up and are delivered at the next market step, trades first.
    """

    def __init__(
        self,
        *,
        tick_size: Decimal,
        lot_size: Decimal,
        bids: list[tuple[Decimal, Decimal]] | None = None,
        asks: list[tuple[Decimal, Decimal]] | None = None,
    ) -> None:
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._pending = CrowdStep()
        for p, q in bids or []:
            self._bids[self._ticks(p)] = self._lots(q)
        for p, q in asks or []:
            self._asks[self._ticks(p)] = self._lots(q)

    def _ticks(self, price: Decimal) -> int:
        t = price / self.tick_size
        if t != t.to_integral_value():
            raise ValueError(f"price {price} is off the tick grid {self.tick_size}")
        return int(t)

    def _lots(self, qty: Decimal) -> int:
        n = qty / self.lot_size
        if n != n.to_integral_value() or n < 0:
            raise ValueError(f"qty {qty} is off the lot grid {self.lot_size}")
        return int(n)

    def set_level(self, is_bid: bool, price: Decimal, qty: Decimal) -> None:
        """Set the crowd's size at ``price`` (0 removes the level) from the next step on."""
        t, n = self._ticks(price), self._lots(qty)
        side = self._bids if is_bid else self._asks
        if n:
            side[t] = n
        else:
            side.pop(t, None)
        (self._pending.bids if is_bid else self._pending.asks).append((t, n))

    def set_book(self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]) -> None:
        """Replace the whole crowd book (levels not listed are removed) from the next step on."""
        new_bids = {self._ticks(p): self._lots(q) for p, q in bids}
        new_asks = {self._ticks(p): self._lots(q) for p, q in asks}
        for t in self._bids.keys() - new_bids.keys():
            self._pending.bids.append((t, 0))
        for t in self._asks.keys() - new_asks.keys():
            self._pending.asks.append((t, 0))
        self._pending.bids.extend(new_bids.items())
        self._pending.asks.extend(new_asks.items())
        self._bids, self._asks = new_bids, new_asks

    def trade(self, price: Decimal, qty: Decimal, *, aggressor_is_buy: bool) -> None:
        """Another participant takes ``qty`` at prices up to ``price`` at the next step."""
        self._pending.trades.append((self._ticks(price), self._lots(qty), aggressor_is_buy))

    def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sorted(self._bids.items(), reverse=True), sorted(self._asks.items())

    def touch(self) -> tuple[int, int] | None:
        if not self._bids or not self._asks:
            return None
        return max(self._bids), min(self._asks)

    def step(self, now_ms: int) -> CrowdStep:
        out, self._pending = self._pending, CrowdStep()
        # removals before additions, so that a book moving through a price never crosses itself
        out.bids.sort(key=lambda x: x[1] != 0)
        out.asks.sort(key=lambda x: x[1] != 0)
        return out


class MarkState:
    """Index, mark, last price and funding rate of one symbol."""

    __slots__ = (
        "index_price",
        "interest",
        "last_price",
        "mark_price",
        "premium",
        "premium_cap",
        "premium_weight",
        "rate",
        "rate_cap",
        "tick",
    )

    def __init__(
        self,
        *,
        tick_size: Decimal,
        start_price: Decimal,
        premium_weight: Decimal = Decimal("0.05"),
        premium_cap: Decimal = Decimal("0.005"),
        interest: Decimal = Decimal("0.0001"),
        rate_cap: Decimal = Decimal("0.0075"),
    ) -> None:
        self.tick = tick_size
        self.index_price = start_price
        self.mark_price = start_price
        self.last_price = start_price
        self.premium = _ZERO
        self.premium_weight = premium_weight
        self.premium_cap = premium_cap
        self.interest = interest
        self.rate_cap = rate_cap
        self.rate = self._funding_rate()

    def _to_tick(self, price: Decimal) -> Decimal:
        return (price / self.tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * self.tick

    def _funding_rate(self) -> Decimal:
        p = self.premium
        spread = min(max(self.interest - p, Decimal("-0.0005")), Decimal("0.0005"))
        return min(max(p + spread, -self.rate_cap), self.rate_cap).quantize(_RATE)

    def update(self, touch: tuple[int, int] | None) -> None:
        """New index from the crowd's touch (ticks); the premium follows the last trade price."""
        if touch is not None:
            self.index_price = self.tick * (touch[0] + touch[1]) / 2
        index = self.index_price
        if self.premium_weight and index > 0:
            raw = (self.last_price - index) / index
            raw = min(max(raw, -self.premium_cap), self.premium_cap)
            self.premium = (self.premium + self.premium_weight * (raw - self.premium)).quantize(_RATE)
        self.mark_price = self._to_tick(index * (1 + self.premium))
        if self.mark_price <= 0:
            self.mark_price = self.tick
        self.rate = self._funding_rate()

    def set_last(self, price: Decimal) -> None:
        self.last_price = price

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index_price,
            "mark": self.mark_price,
            "last": self.last_price,
            "premium": self.premium,
            "rate": self.rate,
        }
