"""A seeded, deterministic market generator: one symbol's L2 book and trades, in Binance USD-M wire shapes.

Pure and synchronous, no I/O, no clock: the caller passes the time (``step(now_ms)``) and the same seed
with the same sequence of times gives the same events, byte for byte once serialized.

Model, per :meth:`MarketGenerator.step`:

1. A latent mid (float, in ticks) takes a log-return ``r = sigma_t * z``, with a GARCH(1,1) variance
   ``sigma2 <- omega + alpha * r_prev**2 + beta * sigma2`` (volatility clusters) and, rarely, a jump.
2. The touch follows the mid: the book's levels on the wrong side of the new mid are *consumed by
   trades* (a sweep; aggressive buys lift asks below it, aggressive sells hit bids above it).
3. Another participant may send a market order that takes liquidity at the touch (one ``aggTrade``
   per price level it consumes).
4. Makers add, resize and cancel a few levels near the touch; the touch is refilled towards the mid;
   the far end keeps each side between ``levels`` and ``levels + 20`` levels.

Everything in the book is integers: prices in ticks, sizes in lots. Prices and sizes are formatted with
the tick's and the lot's decimal places (``tick_size="0.10"`` gives ``"65000.10"``), the same string for
the same value every time. The book is never crossed, each side always holds at least ``levels`` levels,
and the depth stream is gap-free: every ``depthUpdate`` has ``U == previous u + 1`` and ``pu == previous
u``, ``u - U + 1`` is the number of levels it changes, and its ``b``/``a`` carry the *absolute* size of
each changed level (``"0"`` deletes a level the book held). :meth:`MarketGenerator.snapshot` carries
``lastUpdateId`` = the last event's ``u``, so snapshot + every later event rebuilds the book exactly
(and, as on Binance, the event whose ``u`` equals the snapshot's id satisfies ``U <= lastUpdateId <= u``).
"""

from __future__ import annotations

import bisect
import math
import random
from decimal import Decimal
from typing import Any, Literal

__all__ = ["MarketGenerator", "decimals_of"]

Side = Literal["bid", "ask"]

#: The far end of each side is trimmed above ``levels + _DEPTH_SLACK`` levels.
_DEPTH_SLACK = 20
#: At most this many levels are swept by trades in one step; a larger jump cancels the rest.
_MAX_SWEEP = 8


def decimals_of(step: Decimal) -> int:
    """Decimal places of a positive tick or lot size (``Decimal("0.10")`` -> 2, ``Decimal("1")`` -> 0)."""
    exponent = step.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _grid(name: str, value: str, step: Decimal) -> int:
    """``value`` as an integer number of ``step``; ValueError naming the field if off the grid."""
    d = Decimal(value)
    if not d.is_finite() or d <= 0:
        raise ValueError(f"{name} must be a positive decimal, got {value!r}")
    units = d / step
    if units != units.to_integral_value():
        raise ValueError(f"{name} {value!r} is not a multiple of {step}")
    return int(units)


class _Formatter:
    """Integer steps -> exact decimal strings with a fixed number of places."""

    __slots__ = ("_cache", "_mantissa", "_places", "_scale")

    def __init__(self, step: Decimal) -> None:
        self._places = decimals_of(step)
        self._scale = 10**self._places
        self._mantissa = int(step * self._scale)
        self._cache: dict[int, str] = {}

    def __call__(self, steps: int) -> str:
        s = self._cache.get(steps)
        if s is None:
            units = steps * self._mantissa
            if self._places:
                whole, frac = divmod(units, self._scale)
                s = f"{whole}.{frac:0{self._places}d}"
            else:
                s = str(units)
            if len(self._cache) < 100_000:
                self._cache[steps] = s
        return s


class _Side:
    """One side of the book: price (ticks) -> size (lots), plus the prices sorted ascending."""

    __slots__ = ("is_bid", "prices", "qty")

    def __init__(self, *, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.qty: dict[int, int] = {}
        self.prices: list[int] = []  # ascending

    def __len__(self) -> int:
        return len(self.prices)

    @property
    def best(self) -> int:
        return self.prices[-1] if self.is_bid else self.prices[0]

    @property
    def far(self) -> int:
        return self.prices[0] if self.is_bid else self.prices[-1]

    def set(self, price: int, lots: int) -> None:
        if price not in self.qty:
            bisect.insort(self.prices, price)
        self.qty[price] = lots

    def delete(self, price: int) -> None:
        del self.qty[price]
        del self.prices[bisect.bisect_left(self.prices, price)]

    def top(self, limit: int | None) -> list[tuple[int, int]]:
        """(price, lots) from the touch outwards."""
        prices = reversed(self.prices) if self.is_bid else iter(self.prices)
        out = [(p, self.qty[p]) for p in prices]
        return out if limit is None else out[:limit]


class MarketGenerator:
    """One symbol's seeded market: an L2 book and trades, emitted as Binance USD-M stream events."""

    def __init__(
        self,
        *,
        symbol: str = "BTCUSDT",
        tick_size: str = "0.10",
        lot_size: str = "0.001",
        start_price: str = "65000",
        seed: int = 7,
        levels: int = 100,
        step_vol_ticks: float = 1.0,
        garch_alpha: float = 0.12,
        garch_beta: float = 0.86,
        jump_prob: float = 2e-4,
        jump_ticks: float = 20.0,
        trade_prob: float = 0.3,
        level_qty_lots: int = 300,
        first_update_id: int = 1_000_000,
        start_ms: int = 0,
    ) -> None:
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if not (garch_alpha >= 0 and garch_beta >= 0 and garch_alpha + garch_beta < 1):
            raise ValueError(
                f"garch_alpha + garch_beta must be < 1 (both >= 0), got {garch_alpha} + {garch_beta}"
            )
        if not step_vol_ticks > 0:
            raise ValueError(f"step_vol_ticks must be > 0, got {step_vol_ticks}")
        if not 0 <= trade_prob <= 1:
            raise ValueError(f"trade_prob must be in [0, 1], got {trade_prob}")
        if not 0 <= jump_prob <= 1:
            raise ValueError(f"jump_prob must be in [0, 1], got {jump_prob}")
        if level_qty_lots < 1:
            raise ValueError(f"level_qty_lots must be >= 1, got {level_qty_lots}")
        self.symbol = symbol
        self.tick_size = Decimal(tick_size)
        self.lot_size = Decimal(lot_size)
        if not (self.tick_size.is_finite() and self.tick_size > 0):
            raise ValueError(f"tick_size must be a positive decimal, got {tick_size!r}")
        if not (self.lot_size.is_finite() and self.lot_size > 0):
            raise ValueError(f"lot_size must be a positive decimal, got {lot_size!r}")
        start_ticks = _grid("start_price", start_price, self.tick_size)
        self.levels = levels
        self.seed = seed
        self._min_ticks = levels + _DEPTH_SLACK + 10  # keeps every bid price positive
        if start_ticks < 2 * self._min_ticks:
            raise ValueError(f"start_price {start_price!r} is too low for {levels} levels of {tick_size}")
        self._rng = random.Random(seed)
        self._fmt_price = _Formatter(self.tick_size)
        self._fmt_qty = _Formatter(self.lot_size)
        self.price_decimals = decimals_of(self.tick_size)
        self.qty_decimals = decimals_of(self.lot_size)

        # volatility: log-returns, long-run per-step sd = step_vol_ticks / start_ticks
        self._sigma_bar = step_vol_ticks / start_ticks
        self._alpha = garch_alpha
        self._beta = garch_beta
        self._omega = self._sigma_bar**2 * (1.0 - garch_alpha - garch_beta)
        self._sigma2 = self._sigma_bar**2
        self._last_r = 0.0
        self._jump_prob = jump_prob
        self._jump_sigma = jump_ticks / start_ticks
        self._trade_prob = trade_prob
        self._qty_mu = math.log(level_qty_lots)

        self._mid = float(start_ticks) + 0.5  # latent mid in ticks; the touch sits around it
        self._bids = _Side(is_bid=True)
        self._asks = _Side(is_bid=False)
        self._last_u = first_update_id
        self._agg_id = 0
        self._trade_id = 0
        self._last_ms = start_ms
        self._last_trade_ticks: int | None = None
        self._touched: dict[tuple[bool, int], int] = {}
        self._steps = 0

        best_bid = start_ticks
        for i in range(levels + _DEPTH_SLACK // 2):
            self._bids.set(best_bid - i, self._level_qty())
            self._asks.set(best_bid + 1 + i, self._level_qty())

    # -- read-only views -------------------------------------------------------------------------

    @property
    def last_update_id(self) -> int:
        """The ``u`` of the last depth event (the snapshot's ``lastUpdateId``)."""
        return self._last_u

    @property
    def best_bid_ticks(self) -> int:
        return self._bids.best

    @property
    def best_ask_ticks(self) -> int:
        return self._asks.best

    @property
    def mid_ticks(self) -> float:
        """The book's mid in ticks (half-integer when the spread is odd)."""
        return (self._bids.best + self._asks.best) / 2

    @property
    def last_trade_ticks(self) -> int | None:
        return self._last_trade_ticks

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def variance(self) -> float:
        """The current GARCH per-step variance of the latent mid's log-returns."""
        return self._sigma2

    def book(self, limit: int | None = None) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """(last update id, bids best first, asks best first) as (price ticks, size lots)."""
        return self._last_u, self._bids.top(limit), self._asks.top(limit)

    def format_price(self, ticks: int) -> str:
        return self._fmt_price(ticks)

    def format_qty(self, lots: int) -> str:
        return self._fmt_qty(lots)

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        """The REST depth snapshot (Binance ``GET /fapi/v1/depth`` shape), consistent with the stream ids."""
        fp, fq = self._fmt_price, self._fmt_qty
        return {
            "lastUpdateId": self._last_u,
            "E": self._last_ms,
            "T": self._last_ms,
            "bids": [[fp(p), fq(q)] for p, q in self._bids.top(limit)],
            "asks": [[fp(p), fq(q)] for p, q in self._asks.top(limit)],
        }

    # -- the market ------------------------------------------------------------------------------

    def step(self, now_ms: int) -> list[dict[str, Any]]:
        """Advance the market by one step at ``now_ms``; return its events (aggTrades, then a depthUpdate).

        ``now_ms`` earlier than a previous call's is treated as that time (event times never go back).
        """
        rng = self._rng
        now_ms = max(int(now_ms), self._last_ms)
        self._last_ms = now_ms
        self._steps += 1
        events: list[dict[str, Any]] = []
        self._touched = {}

        # 1. latent mid: GARCH(1,1) log-return, rare jumps
        self._sigma2 = self._omega + self._alpha * self._last_r**2 + self._beta * self._sigma2
        r = math.sqrt(self._sigma2) * rng.gauss(0.0, 1.0)
        self._last_r = r
        if rng.random() < self._jump_prob:
            r += rng.gauss(0.0, self._jump_sigma)
        self._mid = max(self._mid * math.exp(r), float(self._min_ticks))
        target_bid = math.floor(self._mid - 0.5)
        target_ask = target_bid + 1

        # 2. the touch follows the mid: levels on the wrong side are swept by trades
        asks, bids = self._asks, self._bids
        swept = 0
        while asks.prices and asks.best <= target_bid:
            price = asks.best
            if swept < _MAX_SWEEP:
                events.append(self._trade(now_ms, price, asks.qty[price], buyer_is_maker=False))
            self._set(asks, price, 0)
            swept += 1
        swept = 0
        while bids.prices and bids.best >= target_ask:
            price = bids.best
            if swept < _MAX_SWEEP:
                events.append(self._trade(now_ms, price, bids.qty[price], buyer_is_maker=True))
            self._set(bids, price, 0)
            swept += 1

        # 3. another participant's market order at the touch
        if rng.random() < self._trade_prob:
            is_buy = rng.random() < 0.5
            side = asks if is_buy else bids
            want = max(1, int(rng.lognormvariate(self._qty_mu - 1.0, 1.0)))
            levels_hit = 0
            while want > 0 and len(side) > 1 and levels_hit < 3:
                price = side.best
                avail = side.qty[price]
                take = min(want, avail)
                events.append(self._trade(now_ms, price, take, buyer_is_maker=not is_buy))
                self._set(side, price, avail - take)
                want -= take
                levels_hit += 1

        # 4. makers: a few adds / resizes / cancels near the touch
        for _ in range(rng.randint(1, 4)):
            side = bids if rng.random() < 0.5 else asks
            if not side.prices:
                continue
            dist = min(int(rng.expovariate(0.15)), self.levels - 1)
            price = side.best - dist if side.is_bid else side.best + dist
            action = rng.random()
            if price in side.qty and action < 0.35 and len(side) > self.levels:
                self._set(side, price, 0)
            else:
                self._set(side, price, self._level_qty())

        # ... the touch is refilled towards the mid (never crossing the other side)
        if not bids.prices or (bids.best < target_bid and rng.random() < 0.6):
            price = target_bid if not asks.prices else min(target_bid, asks.best - 1)
            self._set(bids, price, self._level_qty())
        if not asks.prices or (asks.best > target_ask and rng.random() < 0.6):
            price = target_ask if not bids.prices else max(target_ask, bids.best + 1)
            self._set(asks, price, self._level_qty())

        # ... and the far end keeps the depth
        for side in (bids, asks):
            while len(side) < self.levels:
                gap = 1 + (rng.random() < 0.15)
                price = side.far - gap if side.is_bid else side.far + gap
                self._set(side, price, self._level_qty())
            while len(side) > self.levels + _DEPTH_SLACK:
                self._set(side, side.far, 0)

        depth = self._depth_event(now_ms)
        if depth is not None:
            events.append(depth)
        return events

    def take(
        self, *, is_buy: bool, lots: int, now_ms: int, limit_ticks: int | None = None
    ) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
        """An outside taker order (e.g. the venue's matching of a client's market or marketable limit
        order) against the generated book: consume from the touch, up to ``limit_ticks`` if given.

        Returns the fills as (price ticks, lots) from the touch outwards, and the events (one
        ``aggTrade`` per level, then one ``depthUpdate``, with the far end refilled to keep the depth).
        The last level of a side is never taken (the book stays two-sided); the rest of the order is
        simply not filled.
        """
        if lots < 0:
            raise ValueError(f"lots must be >= 0, got {lots}")
        now_ms = max(int(now_ms), self._last_ms)
        self._last_ms = now_ms
        self._touched = {}
        side = self._asks if is_buy else self._bids
        fills: list[tuple[int, int]] = []
        events: list[dict[str, Any]] = []
        while lots > 0 and len(side) > 1:
            price = side.best
            if limit_ticks is not None and (price > limit_ticks if is_buy else price < limit_ticks):
                break
            avail = side.qty[price]
            fill = min(lots, avail)
            fills.append((price, fill))
            events.append(self._trade(now_ms, price, fill, buyer_is_maker=not is_buy))
            self._set(side, price, avail - fill)
            lots -= fill
        while len(side) < self.levels:
            gap = 1 + (self._rng.random() < 0.15)
            self._set(side, side.far - gap if side.is_bid else side.far + gap, self._level_qty())
        depth = self._depth_event(now_ms)
        if depth is not None:
            events.append(depth)
        return fills, events

    # -- internals -------------------------------------------------------------------------------

    def _level_qty(self) -> int:
        return max(1, int(self._rng.lognormvariate(self._qty_mu, 0.9)))

    def _set(self, side: _Side, price: int, lots: int) -> None:
        """Set one level's size (0 deletes), remembering its size before this step."""
        key = (side.is_bid, price)
        if key not in self._touched:
            self._touched[key] = side.qty.get(price, 0)
        if lots > 0:
            side.set(price, lots)
        elif price in side.qty:
            side.delete(price)

    def _trade(self, now_ms: int, price: int, lots: int, *, buyer_is_maker: bool) -> dict[str, Any]:
        self._agg_id += 1
        first = self._trade_id + 1
        self._trade_id += 1 + min(lots - 1, int(self._rng.expovariate(1.0)))
        self._last_trade_ticks = price
        return {
            "e": "aggTrade",
            "E": now_ms,
            "a": self._agg_id,
            "s": self.symbol,
            "p": self._fmt_price(price),
            "q": self._fmt_qty(lots),
            "f": first,
            "l": self._trade_id,
            "T": now_ms,
            "m": buyer_is_maker,
        }

    def _depth_event(self, now_ms: int) -> dict[str, Any] | None:
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for (is_bid, price), before in self._touched.items():
            side = self._bids if is_bid else self._asks
            after = side.qty.get(price, 0)
            if after != before:
                (bids if is_bid else asks).append((price, after))
        self._touched = {}
        n = len(bids) + len(asks)
        if n == 0:
            return None
        bids.sort(reverse=True)
        asks.sort()
        pu = self._last_u
        first = pu + 1
        self._last_u = pu + n
        fp, fq = self._fmt_price, self._fmt_qty
        return {
            "e": "depthUpdate",
            "E": now_ms,
            "T": now_ms,
            "s": self.symbol,
            "U": first,
            "u": self._last_u,
            "pu": pu,
            "b": [[fp(p), fq(q)] for p, q in bids],
            "a": [[fp(p), fq(q)] for p, q in asks],
        }
