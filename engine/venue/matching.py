"""Price-time priority matching for one symbol, on integer ticks and lots.

Each price level is a FIFO queue of :class:`Entry` values: account orders (``owner`` is the
exchange's order record) and crowd liquidity (``owner is None``: other participants, driven by the
market generator). The public L2 level total is crowd + account quantity. Every change to a level
total is recorded and :meth:`OrderBook.flush` turns the changes since the last flush into one
:class:`~engine.venue.model.DepthEvent` on the symbol's single, strictly increasing update-id
sequence. A level that appeared and vanished inside one batch is not reported (a deletion is only
ever reported for a price the public book held), and a level whose total came back to its
published value is not reported either.

The book never knows about accounts, money or fees: :meth:`OrderBook.match` returns the executions
as ``(price, qty, owner)`` tuples and the caller settles them.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from engine.venue.model import DepthEvent

__all__ = ["BookSide", "Entry", "Execution", "OrderBook"]

Execution = tuple[int, int, Any]  # (price ticks, qty lots, maker owner or None for crowd)


class Entry:
    """One resting queue entry: ``qty`` lots, owned by an account order or the crowd (None)."""

    __slots__ = ("owner", "qty")

    def __init__(self, owner: Any, qty: int) -> None:
        self.owner = owner
        self.qty = qty

    def __repr__(self) -> str:
        return f"Entry({'crowd' if self.owner is None else 'order'}, {self.qty})"


class BookSide:
    """One side: levels keyed by price tick, a sorted key list whose last element is the best price.

    Keys are the price for bids and the negated price for asks, so the best level is always
    ``keys[-1]`` for both sides.
    """

    __slots__ = ("crowd", "is_bid", "keys", "levels", "totals")

    def __init__(self, *, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, deque[Entry]] = {}
        self.totals: dict[int, int] = {}
        self.crowd: dict[int, int] = {}
        self.keys: list[int] = []

    def best(self) -> int | None:
        if not self.keys:
            return None
        k = self.keys[-1]
        return k if self.is_bid else -k

    def prices(self) -> Iterator[int]:
        """Prices from the touch outwards."""
        sign = 1 if self.is_bid else -1
        for k in reversed(self.keys):
            yield sign * k

    def total(self, price: int) -> int:
        return self.totals.get(price, 0)


class OrderBook:
    """The matching book of one symbol with its public depth sequence."""

    __slots__ = ("_dirty_asks", "_dirty_bids", "asks", "bids", "last_update_id", "lot", "symbol", "tick")

    def __init__(self, *, symbol: str, tick_size: Decimal, lot_size: Decimal, first_update_id: int = 0):
        self.symbol = symbol
        self.tick = tick_size
        self.lot = lot_size
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.last_update_id = first_update_id
        self._dirty_bids: dict[int, int] = {}  # price -> published total before this batch
        self._dirty_asks: dict[int, int] = {}

    # ---- level bookkeeping --------------------------------------------------------------------

    def side(self, is_bid: bool) -> BookSide:
        return self.bids if is_bid else self.asks

    def _touch(self, side: BookSide, price: int) -> None:
        dirty = self._dirty_bids if side.is_bid else self._dirty_asks
        if price not in dirty:
            dirty[price] = side.totals.get(price, 0)

    def _queue(self, side: BookSide, price: int) -> deque[Entry]:
        q = side.levels.get(price)
        if q is None:
            q = deque()
            side.levels[price] = q
            side.totals[price] = 0
            insort(side.keys, price if side.is_bid else -price)
        return q

    def _drop_level(self, side: BookSide, price: int) -> None:
        del side.levels[price]
        del side.totals[price]
        side.crowd.pop(price, None)
        key = price if side.is_bid else -price
        keys = side.keys
        if keys and keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]

    def add(self, is_bid: bool, price: int, entry: Entry) -> None:
        """Append ``entry`` at the back of the queue at ``price`` (no crossing check: the caller
        matches first)."""
        side = self.bids if is_bid else self.asks
        self._touch(side, price)
        self._queue(side, price).append(entry)
        side.totals[price] += entry.qty
        if entry.owner is None:
            side.crowd[price] = side.crowd.get(price, 0) + entry.qty

    def remove(self, is_bid: bool, price: int, entry: Entry) -> None:
        """Take ``entry`` out of its queue (a cancel)."""
        side = self.bids if is_bid else self.asks
        q = side.levels[price]
        self._touch(side, price)
        q.remove(entry)
        side.totals[price] -= entry.qty
        if entry.owner is None:
            side.crowd[price] -= entry.qty
        entry.qty = 0
        if not q:
            self._drop_level(side, price)

    def reduce(self, is_bid: bool, price: int, entry: Entry, new_qty: int) -> None:
        """Shrink ``entry`` in place to ``new_qty`` > 0 lots, keeping its queue position."""
        side = self.bids if is_bid else self.asks
        self._touch(side, price)
        side.totals[price] -= entry.qty - new_qty
        if entry.owner is None:
            side.crowd[price] -= entry.qty - new_qty
        entry.qty = new_qty

    def crowd_qty(self, is_bid: bool, price: int) -> int:
        return (self.bids if is_bid else self.asks).crowd.get(price, 0)

    def set_crowd(self, is_bid: bool, price: int, target: int) -> None:
        """Move the crowd quantity at ``price`` to ``target`` lots: added size joins the back of the
        queue, removed size comes off the back (account entries keep their places). Does not cross:
        the caller executes crossing crowd liquidity first (:meth:`match`)."""
        side = self.bids if is_bid else self.asks
        have = side.crowd.get(price, 0)
        if target > have:
            self.add(is_bid, price, Entry(None, target - have))
            return
        if target == have:
            return
        excess = have - target
        q = side.levels[price]
        self._touch(side, price)
        side.totals[price] -= excess
        side.crowd[price] = target
        i = len(q) - 1
        while excess > 0:
            e = q[i]
            if e.owner is None:
                if e.qty <= excess:
                    excess -= e.qty
                    e.qty = 0
                    del q[i]
                else:
                    e.qty -= excess
                    excess = 0
            i -= 1
        if not q:
            self._drop_level(side, price)

    # ---- matching ---------------------------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self.bids.best()

    def best_ask(self) -> int | None:
        return self.asks.best()

    def would_cross(self, is_buy: bool, price: int) -> bool:
        best = self.asks.best() if is_buy else self.bids.best()
        if best is None:
            return False
        return price >= best if is_buy else price <= best

    def available(self, is_buy: bool, limit: int | None, up_to: int) -> int:
        """Lots a taker could fill up to ``up_to`` at prices no worse than ``limit`` (None: any)."""
        side = self.asks if is_buy else self.bids
        got = 0
        for k in reversed(side.keys):
            price = -k if is_buy else k
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            got += side.totals[price]
            if got >= up_to:
                return up_to
        return got

    def match(
        self, is_buy: bool, limit: int | None, qty: int, *, skip_owner: Any = None
    ) -> tuple[int, list[Execution]]:
        """Execute a taker for ``qty`` lots against the opposite side, best price first, FIFO in a
        level, no worse than ``limit`` (None: a market order). Returns (lots left, executions)."""
        side = self.asks if is_buy else self.bids
        keys = side.keys
        out: list[Execution] = []
        dirty = self._dirty_asks if is_buy else self._dirty_bids
        while qty > 0 and keys:
            k = keys[-1]
            price = -k if is_buy else k
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            if price not in dirty:
                dirty[price] = side.totals[price]
            q = side.levels[price]
            taken = 0
            while qty > 0 and q:
                e = q[0]
                n = e.qty if e.qty <= qty else qty
                qty -= n
                taken += n
                e.qty -= n
                if e.owner is None:
                    side.crowd[price] -= n
                out.append((price, n, e.owner))
                if e.qty == 0:
                    q.popleft()
            side.totals[price] -= taken
            if not q:
                self._drop_level(side, price)
        return qty, out

    # ---- public depth -----------------------------------------------------------------------------

    def has_changes(self) -> bool:
        return bool(self._dirty_bids or self._dirty_asks)

    def _changes(self, side: BookSide, dirty: dict[int, int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        totals = side.totals
        for price, old in dirty.items():
            new = totals.get(price, 0)
            if new != old:
                out.append((price, new))
        dirty.clear()
        out.sort(reverse=side.is_bid)
        return out

    def flush(self, ts_ms: int) -> DepthEvent | None:
        """The level changes since the last flush as one DepthEvent (None when nothing changed)."""
        if not self._dirty_bids and not self._dirty_asks:
            return None
        bids = self._changes(self.bids, self._dirty_bids)
        asks = self._changes(self.asks, self._dirty_asks)
        n = len(bids) + len(asks)
        if n == 0:
            return None
        prev = self.last_update_id
        self.last_update_id = prev + n
        tick, lot = self.tick, self.lot
        return DepthEvent(
            symbol=self.symbol,
            first_id=prev + 1,
            last_id=prev + n,
            prev_last_id=prev,
            bids=tuple((tick * p, lot * q) for p, q in bids),
            asks=tuple((tick * p, lot * q) for p, q in asks),
            ts_ms=ts_ms,
        )

    def levels(self, is_bid: bool, limit: int) -> list[tuple[int, int]]:
        """The current (unflushed changes included) levels from the touch, as (ticks, lots)."""
        side = self.bids if is_bid else self.asks
        out: list[tuple[int, int]] = []
        for price in side.prices():
            if len(out) >= limit:
                break
            out.append((price, side.totals[price]))
        return out

    def depth(self, limit: int) -> tuple[int, list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(last update id, bids, asks) in Decimal. Call after :meth:`flush` so that the levels are
        exactly the ones the DepthEvents up to ``last_update_id`` describe."""
        tick, lot = self.tick, self.lot
        bids = [(tick * p, lot * q) for p, q in self.levels(True, limit)]
        asks = [(tick * p, lot * q) for p, q in self.levels(False, limit)]
        return self.last_update_id, bids, asks

    def is_crossed(self) -> bool:
        bb, ba = self.bids.best(), self.asks.best()
        return bb is not None and ba is not None and bb >= ba

    def check(self) -> None:
        """Internal consistency (tests): totals and crowd sums match the queues, keys sorted,
        no empty level, no zero entry, not crossed."""
        for side in (self.bids, self.asks):
            assert side.keys == sorted(side.keys), "keys unsorted"
            assert len(side.keys) == len(side.levels) == len(side.totals), "level maps out of step"
            for price, q in side.levels.items():
                assert q, f"empty level {price}"
                assert all(e.qty > 0 for e in q), f"zero entry at {price}"
                assert side.totals[price] == sum(e.qty for e in q), f"total mismatch at {price}"
                crowd = sum(e.qty for e in q if e.owner is None)
                assert side.crowd.get(price, 0) == crowd, f"crowd mismatch at {price}"
        assert not self.is_crossed(), f"crossed book {self.bids.best()} >= {self.asks.best()}"
