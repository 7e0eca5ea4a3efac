"""L2 order book on integer ticks and lots: the pure-Python twin of ``engine._ext.book``.

Same public API and behaviour as the compiled kernel (see ``ext/book.pyx`` for the rules): exact
decimal-string parsing to int ticks/lots, absolute sizes (0 deletes), atomic messages, crossed results
rejected, ``Decimal`` reads, documented float ``microprice``/``imbalance``. ``fill_price``'s average is
the exact quotient rounded half-even to 8 decimal places beyond the (normalised) tick.

Storage mirrors the kernel: per side an ascending list of keys (bids: ticks; asks: -ticks), touch at
the end, plus a dict key -> lots.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

__all__ = ["OrderBook"]

INT64_MAX = 2**63 - 1

PARSE_OK = 0
PARSE_EMPTY = 1
PARSE_NOT_NUMBER = 2
PARSE_NEGATIVE = 3
PARSE_EXPONENT = 4
PARSE_OVERFLOW = 5
PARSE_OFF_GRID = 6

_PLAIN = re.compile(r"[0-9]*\.?[0-9]*")

Level = tuple[int, int]
_Levels = Sequence[Sequence[str | bytes]]


def parse_units(text: str, scale: int, unit: int) -> tuple[int, int]:
    """(status, value): the kernel's ``parse_units`` on a str (bytes decoded as latin-1)."""
    if not text:
        return PARSE_EMPTY, 0
    if text[0] == "-":
        return PARSE_NEGATIVE, 0
    if _PLAIN.fullmatch(text) is None:
        dot = False
        for c in text:
            if "0" <= c <= "9":
                continue
            if c == "." and not dot:
                dot = True
                continue
            return (PARSE_EXPONENT if c in "eE" else PARSE_NOT_NUMBER), 0
        return PARSE_NOT_NUMBER, 0  # pragma: no cover - the regex accepts everything the loop does
    whole, _, frac = text.partition(".")
    if not whole and not frac:
        return PARSE_NOT_NUMBER, 0
    digits = (whole + frac[:scale].ljust(scale, "0")).lstrip("0")
    if len(digits) > 19 or (digits and int(digits) > INT64_MAX):
        return PARSE_OVERFLOW, 0
    if frac[scale:].strip("0"):
        return PARSE_OFF_GRID, 0
    value = int(digits) if digits else 0
    if value % unit:
        return PARSE_OFF_GRID, 0
    return PARSE_OK, value // unit


def _grid(value: object, name: str) -> tuple[Decimal, int, int]:
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        try:
            dec = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} {value!r} is not a decimal number") from None
    else:
        raise ValueError(f"{name} {value!r} must be a decimal string or Decimal")
    if not dec.is_finite() or dec <= 0:
        raise ValueError(f"{name} {value!r} must be a finite decimal > 0")
    _sign, digits, exp = dec.normalize().as_tuple()
    assert isinstance(exp, int)
    mant = int("".join(map(str, digits)))
    if exp >= 0:
        scale, unit = 0, mant * 10**exp
    else:
        scale, unit = -exp, mant
    if scale > 18 or unit > INT64_MAX:
        raise ValueError(f"{name} {value!r} is out of range")
    return dec, scale, unit


def _average(notional: int, lots: int, scale: int, unit: int) -> Decimal:
    q, r = divmod(notional * unit * 10**8, lots)
    if 2 * r > lots or (2 * r == lots and q % 2 == 1):
        q += 1
    return Decimal(f"{q}E-{scale + 8}")


class _Side:
    __slots__ = ("keys", "qty")

    def __init__(self) -> None:
        self.keys: list[int] = []  # ascending, touch at the end
        self.qty: dict[int, int] = {}

    def set(self, key: int, qty: int) -> int:
        """Set a level (qty 0 deletes); returns the previous qty (0 if absent)."""
        old = self.qty.get(key, 0)
        if old:
            if qty == 0:
                keys = self.keys
                if keys[-1] == key:
                    keys.pop()
                else:
                    del keys[bisect_left(keys, key)]
                del self.qty[key]
            else:
                self.qty[key] = qty
        elif qty:
            keys = self.keys
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                keys.insert(bisect_left(keys, key), key)
            self.qty[key] = qty
        return old


class OrderBook:
    """An L2 book of one symbol; see the module docstring for the rules."""

    def __init__(self, tick_size: str | Decimal = "0.10", lot_size: str | Decimal = "0.001") -> None:
        self._tick, self.px_scale, self.px_unit = _grid(tick_size, "tick_size")
        self._lot, self.qty_scale, self.qty_unit = _grid(lot_size, "lot_size")
        self._tick_f = float(self._tick)
        self._bid = _Side()
        self._ask = _Side()

    # ---------------------------------------------------------------- internals shared with booksync

    def _parse_error(self, status: int, field: str, value: object, is_price: bool) -> ValueError:
        if status == PARSE_EMPTY:
            why = "is empty"
        elif status == PARSE_NEGATIVE:
            why = "is negative"
        elif status == PARSE_EXPONENT:
            why = "uses exponent notation"
        elif status == PARSE_OVERFLOW:
            why = f"overflows int64 {'ticks' if is_price else 'lots'}"
        elif status == PARSE_OFF_GRID:
            unit = f"tick {self._tick}" if is_price else f"lot {self._lot}"
            why = f"is not a multiple of {unit}"
        else:
            why = "is not a plain decimal number"
        return ValueError(f"{field} {value!r} {why}")

    def _parse_field(self, value: object, field: str, is_price: bool) -> int:
        if isinstance(value, str):
            text = value
        elif isinstance(value, bytes):
            text = value.decode("latin-1")
        else:
            raise ValueError(f"{field} {value!r} is not a string")
        if is_price:
            status, units = parse_units(text, self.px_scale, self.px_unit)
        else:
            status, units = parse_units(text, self.qty_scale, self.qty_unit)
        if status != PARSE_OK:
            raise self._parse_error(status, field, value, is_price)
        return units

    def _stage(self, levels: object, name: str) -> list[Level]:
        """Parse one side's levels to (ticks, lots); raises ValueError on bad input."""
        if not isinstance(levels, (list, tuple)):
            raise ValueError(f"{name} {type(levels).__name__} is not a list of [price, size] levels")
        out: list[Level] = []
        for i, level in enumerate(levels):
            if not isinstance(level, (list, tuple)) or len(level) != 2:
                raise ValueError(f"{name}[{i}] {level!r} is not a [price, size] pair")
            out.append(
                (
                    self._parse_field(level[0], f"{name}[{i}].price", True),
                    self._parse_field(level[1], f"{name}[{i}].size", False),
                )
            )
        return out

    def _apply_staged(self, bids: Sequence[Level], asks: Sequence[Level], snapshot: bool) -> None:
        if snapshot:
            nbid, nask = _Side(), _Side()
            for px, qty in bids:
                nbid.set(px, qty)
            for px, qty in asks:
                nask.set(-px, qty)
            if nbid.keys and nask.keys and nbid.keys[-1] >= -nask.keys[-1]:
                raise ValueError(
                    f"snapshot is crossed: best bid {self._tick * nbid.keys[-1]} >= "
                    f"best ask {self._tick * -nask.keys[-1]}"
                )
            self._bid, self._ask = nbid, nask
            return
        undo: list[tuple[_Side, int, int]] = []
        bid, ask = self._bid, self._ask
        for px, qty in bids:
            old = bid.set(px, qty)
            if old != qty:
                undo.append((bid, px, old))
        for px, qty in asks:
            old = ask.set(-px, qty)
            if old != qty:
                undo.append((ask, -px, old))
        if bid.keys and ask.keys and bid.keys[-1] >= -ask.keys[-1]:
            msg = (
                f"update would cross the book: best bid {self._tick * bid.keys[-1]} >= "
                f"best ask {self._tick * -ask.keys[-1]}"
            )
            for side, key, old in reversed(undo):
                side.set(key, old)
            raise ValueError(msg)

    # ---------------------------------------------------------------- Python API

    def apply_snapshot(self, bids: _Levels, asks: _Levels) -> None:
        """Replace the whole book (atomic; a crossed snapshot is rejected)."""
        self._apply_staged(self._stage(bids, "bids"), self._stage(asks, "asks"), True)

    def apply_update(self, bids: _Levels, asks: _Levels) -> None:
        """Apply absolute levels (size 0 deletes); atomic: all or nothing."""
        self._apply_staged(self._stage(bids, "bids"), self._stage(asks, "asks"), False)

    def clear(self) -> None:
        self._bid = _Side()
        self._ask = _Side()

    @property
    def tick_size(self) -> Decimal:
        return self._tick

    @property
    def lot_size(self) -> Decimal:
        return self._lot

    @property
    def bid_count(self) -> int:
        return len(self._bid.keys)

    @property
    def ask_count(self) -> int:
        return len(self._ask.keys)

    def price_to_ticks(self, price: str | bytes) -> int:
        """Exact ticks of a price string (ValueError if not a plain decimal on the tick grid)."""
        if not isinstance(price, (str, bytes)):
            raise ValueError(f"price {price!r} is not a string")
        return self._parse_field(price, "price", True)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return Decimal(ticks) * self._tick

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        keys = self._bid.keys
        if not keys:
            return None
        return Decimal(keys[-1]) * self._tick, Decimal(self._bid.qty[keys[-1]]) * self._lot

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        keys = self._ask.keys
        if not keys:
            return None
        return Decimal(-keys[-1]) * self._tick, Decimal(self._ask.qty[keys[-1]]) * self._lot

    def best_bid_ticks(self) -> tuple[int, int] | None:
        keys = self._bid.keys
        if not keys:
            return None
        return keys[-1], self._bid.qty[keys[-1]]

    def best_ask_ticks(self) -> tuple[int, int] | None:
        keys = self._ask.keys
        if not keys:
            return None
        return -keys[-1], self._ask.qty[keys[-1]]

    def touch_ticks(self) -> tuple[int, int, int, int]:
        """Both sides of the touch in one read: ``(bid_ticks, bid_lots, ask_ticks, ask_lots)``; an empty
        side reads as ``(0, 0)``."""
        bid = self.best_bid_ticks() or (0, 0)
        ask = self.best_ask_ticks() or (0, 0)
        return bid[0], bid[1], ask[0], ask[1]

    def mid(self) -> Decimal | None:
        if not self._bid.keys or not self._ask.keys:
            return None
        return Decimal(self._bid.keys[-1] - self._ask.keys[-1]) * self._tick / 2

    def spread_ticks(self) -> int | None:
        if not self._bid.keys or not self._ask.keys:
            return None
        return -self._ask.keys[-1] - self._bid.keys[-1]

    def microprice(self) -> float | None:
        """(bid * ask_size + ask * bid_size) / (bid_size + ask_size), as a float in price units."""
        if not self._bid.keys or not self._ask.keys:
            return None
        b = float(self._bid.keys[-1])
        bq = float(self._bid.qty[self._bid.keys[-1]])
        a = float(-self._ask.keys[-1])
        aq = float(self._ask.qty[self._ask.keys[-1]])
        return (b * aq + a * bq) / (bq + aq) * self._tick_f

    def _side(self, side: str) -> tuple[_Side, int]:
        if side == "bid":
            return self._bid, 1
        if side == "ask":
            return self._ask, -1
        raise ValueError(f"side {side!r} must be 'bid' or 'ask'")

    def levels_ticks(self, side: str, n: int) -> list[tuple[int, int]]:
        """Up to n levels of one side from the touch outwards, as (ticks, lots)."""
        sd, sign = self._side(side)
        if n < 0:
            raise ValueError(f"n {n!r} must be >= 0")
        keys = sd.keys
        qty = sd.qty
        return [(sign * k, qty[k]) for k in keys[-n:][::-1]] if n else []

    def levels(self, side: str, n: int) -> list[tuple[Decimal, Decimal]]:
        """Up to n levels of one side from the touch outwards, as (Decimal price, Decimal size)."""
        tick, lot = self._tick, self._lot
        return [(Decimal(p) * tick, Decimal(q) * lot) for p, q in self.levels_ticks(side, n)]

    def depth_within(self, side: str, n_ticks: int) -> Decimal:
        """Total size of the levels within n_ticks of that side's touch (inclusive)."""
        sd, _sign = self._side(side)
        if n_ticks < 0:
            raise ValueError(f"n_ticks {n_ticks!r} must be >= 0")
        total = 0
        keys = sd.keys
        if keys:
            limit = keys[-1] - n_ticks
            for k in reversed(keys[bisect_left(keys, limit) :]):
                total += sd.qty[k]
        return Decimal(total) * self._lot

    def imbalance(self, n: int) -> float | None:
        """(bid size - ask size) / (bid size + ask size) over the top n levels of each side."""
        if n < 0:
            raise ValueError(f"n {n!r} must be >= 0")
        bv = sum(q for _p, q in self.levels_ticks("bid", n))
        av = sum(q for _p, q in self.levels_ticks("ask", n))
        if bv + av == 0:
            return None
        return float(bv - av) / float(bv + av)

    def fill_price(self, side: str, size: Decimal | str) -> tuple[Decimal, Decimal] | None:
        """(average, worst) price for taking ``size`` from ``side``; None if the book can't fill it."""
        sd, sign = self._side(side)
        text = format(size, "f") if isinstance(size, Decimal) else size
        if not isinstance(text, (str, bytes)):
            raise ValueError(f"size {size!r} must be a Decimal or a decimal string")
        raw = text.decode("latin-1") if isinstance(text, bytes) else text
        status, want = parse_units(raw, self.qty_scale, self.qty_unit)
        if status != PARSE_OK:
            raise self._parse_error(status, "size", size, False)
        if want == 0:
            raise ValueError(f"size {size!r} must be > 0")
        left, notional, worst = want, 0, 0
        for key in reversed(sd.keys):
            if left <= 0:
                break
            take = min(left, sd.qty[key])
            worst = sign * key
            notional += worst * take
            left -= take
        if left > 0:
            return None
        return _average(notional, want, self.px_scale, self.px_unit), Decimal(worst) * self._tick
