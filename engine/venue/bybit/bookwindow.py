"""The Bybit ``orderbook.{depth}.{symbol}`` window logic, without I/O.

:class:`MirrorBook` mirrors one symbol's full public book from the core's depth events.
:class:`BookWindow` is what one topic publishes: exactly the best ``depth`` levels per side. Each
change of the full book becomes at most one delta for the window, in Bybit's rules:

- a level that falls out of the window is deleted (size 0), a level that comes into it is inserted;
- a delete is only ever sent for a price the window held (pybit raises inside its socket thread on a
  delete of a price it does not hold, and never reconnects);
- ``u`` is per topic and contiguous: every published delta is the previous ``u`` + 1 (a fault may
  skip one on purpose); ``seq`` is the core's update id of the change;
- depth 1 is snapshot-only: every change of the touch is published as a new snapshot.

A window costs nothing until it is activated (the first subscriber of its topic): a dormant window
holds no levels and only numbers its snapshots (``sync``), so the REST order book's ``u`` still
matches the snapshot a subscriber would get. An active window is kept in step incrementally: a change
of the book costs O(changed levels + levels crossing the window's edge + log N), never a re-read of
the whole window.

Prices are ``Decimal`` here; the wire layer formats them canonically (the same string every time).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "BOOK_DEPTHS",
    "BookWindow",
    "MirrorBook",
    "SideLevels",
    "WindowUpdate",
]

BOOK_DEPTHS: tuple[int, ...] = (1, 50, 200, 1000)

Level = tuple[Decimal, Decimal]
_ZERO = Decimal(0)


class SideLevels:
    """One side of a book: price -> size, iterable best first (bids high to low, asks low to high)."""

    __slots__ = ("_keys", "_qty", "_sign")

    def __init__(self, *, bids: bool) -> None:
        self._sign = -1 if bids else 1
        self._qty: dict[Decimal, Decimal] = {}
        self._keys: list[Decimal] = []  # sign * price, ascending: index 0 is the best level

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, price: Decimal) -> bool:
        return price in self._qty

    def get(self, price: Decimal) -> Decimal | None:
        return self._qty.get(price)

    def key(self, price: Decimal) -> Decimal:
        """Rank key: smaller is better."""
        return price * self._sign

    def set(self, price: Decimal, qty: Decimal) -> None:
        """Absolute size at ``price``; 0 removes the level (a no-op when absent)."""
        if qty == _ZERO:
            if self._qty.pop(price, None) is not None:
                key = price * self._sign
                del self._keys[bisect_left(self._keys, key)]
            return
        if price not in self._qty:
            insort(self._keys, price * self._sign)
        self._qty[price] = qty

    def clear(self) -> None:
        self._qty.clear()
        self._keys.clear()

    def top(self, n: int) -> list[Level]:
        sign = self._sign
        qty = self._qty
        out: list[Level] = []
        for key in self._keys[:n]:
            price = key * sign
            out.append((price, qty[price]))
        return out

    def worst_key(self, n: int) -> Decimal | None:
        """The rank key of the n-th best level, or None when the side has fewer than n levels."""
        if len(self._keys) < n:
            return None
        return self._keys[n - 1]

    def edge_key(self, n: int) -> Decimal | None:
        """The rank key of the worst of the best ``n`` levels (of every level when the side holds
        fewer), None when the side is empty."""
        keys = self._keys
        if not keys:
            return None
        return keys[n - 1] if len(keys) >= n else keys[-1]

    def prices_between(self, low_key: Decimal | None, high_key: Decimal) -> list[Decimal]:
        """Prices of the levels whose rank key lies in ``(low_key, high_key]`` (from the best level
        when ``low_key`` is None), best first."""
        keys = self._keys
        lo = 0 if low_key is None else bisect_right(keys, low_key)
        hi = bisect_right(keys, high_key)
        sign = self._sign
        return [key * sign for key in keys[lo:hi]]


class MirrorBook:
    """The full public book of one symbol, kept in step with the core's update ids."""

    __slots__ = ("asks", "bids", "last_id", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids = SideLevels(bids=True)
        self.asks = SideLevels(bids=False)
        self.last_id = 0

    def load(self, last_id: int, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.bids.clear()
        self.asks.clear()
        for price, qty in bids:
            self.bids.set(price, qty)
        for price, qty in asks:
            self.asks.set(price, qty)
        self.last_id = last_id

    def apply(
        self, last_id: int, bids: Sequence[Level], asks: Sequence[Level]
    ) -> tuple[list[Decimal], list[Decimal]]:
        """Apply absolute level changes; return the prices touched on each side."""
        for price, qty in bids:
            self.bids.set(price, qty)
        for price, qty in asks:
            self.asks.set(price, qty)
        self.last_id = last_id
        return [p for p, _ in bids], [p for p, _ in asks]


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    """One message for the topic: a delta (``snapshot`` False) or, for depth 1, a snapshot."""

    u: int
    seq: int
    bids: list[Level]  # best first; size 0 deletes a price the window held
    asks: list[Level]
    snapshot: bool


class _HeldSide:
    """The levels of one side a subscriber holds, and the rank key of the worst of them."""

    __slots__ = ("edge", "levels")

    def __init__(self) -> None:
        self.levels: dict[Decimal, Decimal] = {}
        self.edge: Decimal | None = None  # rank key of the worst held level; None when none is held

    def load(self, side: SideLevels, depth: int) -> list[Level]:
        top = side.top(depth)
        self.levels = dict(top)
        self.edge = side.edge_key(depth)
        return top

    def clear(self) -> None:
        self.levels = {}
        self.edge = None


class BookWindow:
    """The published view of one ``orderbook.{depth}.{symbol}`` topic.

    Dormant until :meth:`activate` (or :meth:`reset`); :meth:`update` keeps an active window in step
    with the book and is a no-op on a dormant one; :meth:`deactivate` drops the held levels."""

    __slots__ = ("_asks", "_bids", "active", "depth", "seq", "u")

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self.u = 0
        self.seq = 0
        self.active = False
        self._bids = _HeldSide()
        self._asks = _HeldSide()

    def reset(self, book: MirrorBook) -> WindowUpdate:
        """(Re)load the window from the book with the next ``u``: the snapshot every subscriber must
        take. Activates the window."""
        self.u += 1
        self.seq = book.last_id
        return self._load(book)

    def sync(self, book: MirrorBook) -> tuple[int, int]:
        """``(u, seq)`` of the window's current state. A dormant window numbers a new snapshot when
        the book changed since its last one; an active window is always current."""
        if not self.active and (self.u == 0 or self.seq != book.last_id):
            self.u += 1
            self.seq = book.last_id
        return self.u, self.seq

    def activate(self, book: MirrorBook) -> WindowUpdate:
        """Start maintaining the window (its first subscriber arrived); returns its snapshot."""
        if self.active:
            return self.snapshot(book)
        self.sync(book)
        return self._load(book)

    def deactivate(self) -> None:
        """Stop maintaining the window (its last subscriber left): nothing held, no work per change."""
        self.active = False
        self._bids.clear()
        self._asks.clear()

    def _load(self, book: MirrorBook) -> WindowUpdate:
        self.active = True
        bids = self._bids.load(book.bids, self.depth)
        asks = self._asks.load(book.asks, self.depth)
        return WindowUpdate(u=self.u, seq=self.seq, bids=bids, asks=asks, snapshot=True)

    def snapshot(self, book: MirrorBook) -> WindowUpdate:
        """The current published state (what a new subscriber starts from), at the current ``u``."""
        self.sync(book)
        bids = book.bids.top(self.depth)
        asks = book.asks.top(self.depth)
        return WindowUpdate(u=self.u, seq=self.seq, bids=bids, asks=asks, snapshot=True)

    def held(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """Copies of the levels a subscriber holds after the last published message."""
        return dict(self._bids.levels), dict(self._asks.levels)

    def skip(self, n: int = 1) -> None:
        """Leave a gap of ``n`` update ids before the next message (the ws_skip_seq fault)."""
        self.u += n

    def update(
        self, book: MirrorBook, changed_bids: Sequence[Decimal], changed_asks: Sequence[Decimal]
    ) -> WindowUpdate | None:
        """The message this change of ``book`` publishes, or None when the window did not change
        (always None for a dormant window)."""
        if not self.active:
            return None
        bid_delta = _side_delta(self._bids, book.bids, changed_bids, self.depth)
        ask_delta = _side_delta(self._asks, book.asks, changed_asks, self.depth)
        if not bid_delta and not ask_delta:
            return None
        self.u += 1
        self.seq = book.last_id
        if self.depth == 1:
            bids, asks = list(self._bids.levels.items()), list(self._asks.levels.items())
            return WindowUpdate(u=self.u, seq=self.seq, bids=bids, asks=asks, snapshot=True)
        return WindowUpdate(u=self.u, seq=self.seq, bids=bid_delta, asks=ask_delta, snapshot=False)


def _side_delta(held: _HeldSide, side: SideLevels, changed: Sequence[Decimal], depth: int) -> list[Level]:
    """Bring ``held`` (the best ``depth`` levels of one side before the change) in line with ``side``
    (the book after it); return the delta, best first.

    A level's membership of the window is "present and ranked at or before the window's edge". An
    unchanged level can only enter or leave the window when the edge moved past it, so the levels to
    look at are the changed prices plus the book's levels between the old and the new edge."""
    if not changed:
        return []
    old_edge = held.edge
    new_edge = side.edge_key(depth)
    candidates: list[Decimal] = list(changed)
    if new_edge != old_edge:
        if old_edge is None:
            assert new_edge is not None
            candidates.extend(side.prices_between(None, new_edge))
        elif new_edge is None:
            pass  # the side is empty now: every held level was deleted, so every one is a changed price
        elif new_edge > old_edge:
            candidates.extend(side.prices_between(old_edge, new_edge))
        else:
            candidates.extend(side.prices_between(new_edge, old_edge))
    levels = held.levels
    delta: list[Level] = []
    seen: set[Decimal] = set()
    for price in candidates:
        if price in seen:
            continue
        seen.add(price)
        was = levels.get(price)
        qty = side.get(price)
        inside = qty is not None and new_edge is not None and side.key(price) <= new_edge
        if inside:
            assert qty is not None
            if was != qty:
                levels[price] = qty
                delta.append((price, qty))
        elif was is not None:
            del levels[price]
            delta.append((price, _ZERO))
    held.edge = new_edge
    if len(delta) > 1:
        delta.sort(key=lambda level: side.key(level[0]))
    return delta
