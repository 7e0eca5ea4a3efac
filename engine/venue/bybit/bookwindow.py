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

Prices are ``Decimal`` here; the wire layer formats them canonically (the same string every time).
"""

from __future__ import annotations

from bisect import bisect_left, insort
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


class BookWindow:
    """The published view of one ``orderbook.{depth}.{symbol}`` topic."""

    __slots__ = ("_asks", "_bids", "depth", "seq", "u")

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self.u = 0
        self.seq = 0
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}

    def reset(self, book: MirrorBook) -> WindowUpdate:
        """(Re)load the window from the book; the result is the snapshot every subscriber must take."""
        self.u += 1
        self.seq = book.last_id
        bids = book.bids.top(self.depth)
        asks = book.asks.top(self.depth)
        self._bids = dict(bids)
        self._asks = dict(asks)
        return WindowUpdate(u=self.u, seq=self.seq, bids=bids, asks=asks, snapshot=True)

    def snapshot(self, book: MirrorBook) -> WindowUpdate:
        """The current published state (what a new subscriber starts from), at the current ``u``."""
        bids = book.bids.top(self.depth)
        asks = book.asks.top(self.depth)
        return WindowUpdate(u=self.u, seq=self.seq, bids=bids, asks=asks, snapshot=True)

    def held(self) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """Copies of the levels a subscriber holds after the last published message."""
        return dict(self._bids), dict(self._asks)

    def skip(self, n: int = 1) -> None:
        """Leave a gap of ``n`` update ids before the next message (the ws_skip_seq fault)."""
        self.u += n

    def update(
        self, book: MirrorBook, changed_bids: Sequence[Decimal], changed_asks: Sequence[Decimal]
    ) -> WindowUpdate | None:
        """The message this change of ``book`` publishes, or None when the window did not change."""
        bid_delta = _side_delta(self._bids, book.bids, changed_bids, self.depth)
        ask_delta = _side_delta(self._asks, book.asks, changed_asks, self.depth)
        if not bid_delta and not ask_delta:
            return None
        self.u += 1
        self.seq = book.last_id
        if self.depth == 1:
            bids, asks = list(self._bids.items()), list(self._asks.items())
            return WindowUpdate(u=self.u, seq=self.seq, bids=bids, asks=asks, snapshot=True)
        return WindowUpdate(u=self.u, seq=self.seq, bids=bid_delta, asks=ask_delta, snapshot=False)


def _side_delta(
    held: dict[Decimal, Decimal], side: SideLevels, changed: Sequence[Decimal], depth: int
) -> list[Level]:
    """Bring ``held`` (the window's levels of one side) in line with the book; return the delta."""
    if not changed:
        return []
    boundary = None
    if len(held) >= depth:
        worst = max(held, key=side.key)
        boundary = side.key(worst)
        if all(side.key(p) > boundary for p in changed):
            return []  # every change lies beyond a full window: nothing a subscriber holds moved
    new = dict(side.top(depth))
    delta: list[Level] = []
    for price in held:
        if price not in new:
            delta.append((price, _ZERO))
    for price, qty in new.items():
        if held.get(price) != qty:
            delta.append((price, qty))
    held.clear()
    held.update(new)
    delta.sort(key=lambda level: side.key(level[0]))
    return delta
