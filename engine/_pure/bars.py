"""Time bars from trades: the pure-Python twin of the compiled ``engine._ext.bars`` kernel.

Same public API and the same behaviour, to the bit: the compiled kernel does the same float
operations in the same order, so both produce identical bars for the same trades.

Bars are *float* kernels: prices and sizes are ``float`` (an indicator input, not money). Order book
prices and quantities stay integer ticks and lots elsewhere; nothing here is ever turned into a
``Decimal``.

Rules:

- A bar covers ``[open_time_ms, close_time_ms)``; bars are aligned to multiples of ``interval_ms``
  since the Unix epoch (UTC), so 1 m bars open at whole minutes.
- :meth:`BarBuilder.update` returns the bars *completed* by a trade: usually none; the current bar
  when the trade opens a later interval; plus one flat bar per empty interval in between (open = high =
  low = close = vwap = previous close, volume 0, trades 0). When an interval would need more than
  ``max_fill_bars`` flat bars (a clock jump), none are emitted for that gap and ``skipped_gaps`` counts it.
- A trade older than the current bar's start (or, with no bar open, older than the end of the last
  bar emitted) is rejected: nothing changes, ``rejected_out_of_order`` counts it. A trade inside the
  current interval but earlier than the previous trade is *accepted*: it belongs to the same bar
  (venues stamp trades per match, and the bar only needs the interval right).
- A trade with a non-finite or negative price or size, or a negative timestamp, is rejected and counted
  in ``rejected_invalid``. Zero sizes are accepted (they count as trades, add no volume).
- ``vwap`` is ``quote_volume / volume``, or ``close`` when the bar has no volume.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

__all__ = ["Bar", "BarBuilder"]

MIN_INTERVAL_MS = 1_000
MAX_INTERVAL_MS = 86_400_000
_INT64_MAX = 2**63 - 1
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Bar:
    """One completed (or, from :attr:`BarBuilder.current`, partial) time bar."""

    open_time_ms: int
    close_time_ms: int  # exclusive end
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    vwap: float
    quote_volume: float


class BarBuilder:
    """Build ``interval_ms`` bars from a stream of trades (see the module docstring for the rules)."""

    __slots__ = (
        "_close",
        "_has_bar",
        "_has_prev",
        "_high",
        "_low",
        "_max_fill",
        "_next_start",
        "_open",
        "_prev_close",
        "_quote",
        "_start",
        "_trades",
        "_volume",
        "count",
        "interval_ms",
        "rejected_invalid",
        "rejected_out_of_order",
        "skipped_gaps",
    )

    def __init__(self, interval_ms: int = 60_000, *, max_fill_bars: int = 100_000) -> None:
        interval_ms = operator.index(interval_ms)
        max_fill_bars = operator.index(max_fill_bars)
        if not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
            raise ValueError(
                f"interval_ms must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}, got {interval_ms}"
            )
        if max_fill_bars < 0:
            raise ValueError(f"max_fill_bars must be >= 0, got {max_fill_bars}")
        self.interval_ms: int = interval_ms
        self._max_fill: int = max_fill_bars
        self.count: int = 0
        self.rejected_out_of_order: int = 0
        self.rejected_invalid: int = 0
        self.skipped_gaps: int = 0
        self._has_bar = False
        self._has_prev = False
        self._prev_close = 0.0
        self._next_start = 0
        self._start = 0
        self._open = 0.0
        self._high = 0.0
        self._low = 0.0
        self._close = 0.0
        self._volume = 0.0
        self._quote = 0.0
        self._trades = 0

    @property
    def max_fill_bars(self) -> int:
        return self._max_fill

    def _make_bar(self) -> Bar:
        volume = self._volume
        vwap = self._quote / volume if volume > 0.0 else self._close
        return Bar(
            self._start,
            self._start + self.interval_ms,
            self._open,
            self._high,
            self._low,
            self._close,
            volume,
            self._trades,
            vwap,
            self._quote,
        )

    def _emit_current(self, out: list[Bar]) -> None:
        out.append(self._make_bar())
        self.count += 1
        self._has_bar = False
        self._has_prev = True
        self._prev_close = self._close
        self._next_start = self._start + self.interval_ms

    def update(self, ts_ms: int, price: float, size: float) -> list[Bar]:
        """Add one trade; return the bars it completes (oldest first)."""
        ts_ms = operator.index(ts_ms)
        if not -_INT64_MAX - 1 <= ts_ms <= _INT64_MAX:
            raise OverflowError(f"ts_ms out of int64 range: {ts_ms}")
        price = float(price)
        size = float(size)
        if ts_ms < 0 or not (0.0 <= price < _INF) or not (0.0 <= size < _INF):
            self.rejected_invalid += 1
            return []
        interval = self.interval_ms
        start = ts_ms - ts_ms % interval
        out: list[Bar] = []
        if self._has_bar:
            if start == self._start:
                if price > self._high:
                    self._high = price
                if price < self._low:
                    self._low = price
                self._close = price
                self._volume += size
                self._quote += price * size
                self._trades += 1
                return out
            if start < self._start:
                self.rejected_out_of_order += 1
                return out
            self._emit_current(out)
        elif self._has_prev and start < self._next_start:
            self.rejected_out_of_order += 1
            return out
        if self._has_prev and start > self._next_start:
            gap = (start - self._next_start) // interval
            if gap > self._max_fill:
                self.skipped_gaps += 1
            else:
                flat = self._prev_close
                t = self._next_start
                while t < start:
                    out.append(Bar(t, t + interval, flat, flat, flat, flat, 0.0, 0, flat, 0.0))
                    t += interval
                self.count += gap
        self._has_bar = True
        self._start = start
        self._open = price
        self._high = price
        self._low = price
        self._close = price
        self._volume = size
        self._quote = price * size
        self._trades = 1
        return out

    def flush(self) -> Bar | None:
        """The current partial bar, or None; the bar stays open."""
        return self._make_bar() if self._has_bar else None

    @property
    def current(self) -> Bar | None:
        """The current partial bar, or None (same as :meth:`flush`)."""
        return self._make_bar() if self._has_bar else None

    def close_current(self) -> Bar | None:
        """Emit the current bar now (e.g. on a timer at the interval's end) and return it, or None.

        Later trades must then be at or after its ``close_time_ms``; an empty interval between it and
        the next trade is filled as usual.
        """
        if not self._has_bar:
            return None
        out: list[Bar] = []
        self._emit_current(out)
        return out[0]

    def __repr__(self) -> str:
        return (
            f"BarBuilder(interval_ms={self.interval_ms}, count={self.count}, "
            f"rejected_out_of_order={self.rejected_out_of_order}, rejected_invalid={self.rejected_invalid})"
        )
