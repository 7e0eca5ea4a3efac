# cython: boundscheck=False, wraparound=False, cdivision=True
"""Time bars from trades (compiled kernel); twin: ``engine._pure.bars``.

Bars are *float* kernels: prices and sizes are C doubles (an indicator input, not money); nothing
here is ever turned into a ``Decimal``. The float operations are the twin's, in the same order, so both
produce identical bars for the same trades.

Rules:

- A bar covers ``[open_time_ms, close_time_ms)``; bars are aligned to multiples of ``interval_ms``
  since the Unix epoch (UTC), so 1 m bars open at whole minutes.
- ``update`` returns the bars *completed* by a trade: usually none; the current bar when the trade
  opens a later interval; plus one flat bar per empty interval in between (open = high = low = close =
  vwap = previous close, volume 0, trades 0). When a gap would need more than ``max_fill_bars`` flat
  bars (a clock jump), none are emitted for it and ``skipped_gaps`` counts it.
- A trade older than the current bar's start (or, with no bar open, older than the end of the last
  bar emitted) is rejected: nothing changes, ``rejected_out_of_order`` counts it. A trade inside the
  current interval but earlier than the previous trade is *accepted*: it belongs to the same bar.
- A trade with a non-finite or negative price or size, or a negative timestamp, is rejected and counted
  in ``rejected_invalid``. Zero sizes are accepted (they count as trades, add no volume).
- ``vwap`` is ``quote_volume / volume``, or ``close`` when the bar has no volume.
"""

from libc.math cimport INFINITY
from libc.stdint cimport int64_t

__all__ = ["Bar", "BarBuilder"]

cdef int64_t MIN_INTERVAL_MS = 1000
cdef int64_t MAX_INTERVAL_MS = 86400000


cdef inline Bar _new_bar(int64_t open_time_ms, int64_t close_time_ms, double open_, double high,
                         double low, double close, double volume, int64_t trades, double vwap,
                         double quote_volume):
    cdef Bar bar = Bar.__new__(Bar)
    bar.open_time_ms = open_time_ms
    bar.close_time_ms = close_time_ms
    bar.open = open_
    bar.high = high
    bar.low = low
    bar.close = close
    bar.volume = volume
    bar.trades = trades
    bar.vwap = vwap
    bar.quote_volume = quote_volume
    return bar


cdef class Bar:
    """One completed (or, from ``BarBuilder.current``, partial) time bar; immutable."""

    def __init__(self, int64_t open_time_ms, int64_t close_time_ms, double open, double high, double low,
                 double close, double volume, int64_t trades, double vwap, double quote_volume):
        self.open_time_ms = open_time_ms
        self.close_time_ms = close_time_ms
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.volume = volume
        self.trades = trades
        self.vwap = vwap
        self.quote_volume = quote_volume

    cdef tuple _key(self):
        return (self.open_time_ms, self.close_time_ms, self.open, self.high, self.low, self.close,
                self.volume, self.trades, self.vwap, self.quote_volume)

    def __eq__(self, other):
        if not isinstance(other, Bar):
            return NotImplemented
        return self._key() == (<Bar>other)._key()

    def __ne__(self, other):
        if not isinstance(other, Bar):
            return NotImplemented
        return self._key() != (<Bar>other)._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        return (Bar, self._key())

    def __repr__(self):
        return (
            f"Bar(open_time_ms={self.open_time_ms!r}, close_time_ms={self.close_time_ms!r}, "
            f"open={self.open!r}, high={self.high!r}, low={self.low!r}, close={self.close!r}, "
            f"volume={self.volume!r}, trades={self.trades!r}, vwap={self.vwap!r}, "
            f"quote_volume={self.quote_volume!r})"
        )


cdef class BarBuilder:
    """Build ``interval_ms`` bars from a stream of trades (see the module docstring for the rules)."""

    def __init__(self, interval_ms=60_000, *, max_fill_bars=100_000):
        cdef int64_t interval = interval_ms
        cdef int64_t max_fill = max_fill_bars
        if interval < MIN_INTERVAL_MS or interval > MAX_INTERVAL_MS:
            raise ValueError(
                f"interval_ms must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}, got {interval_ms}"
            )
        if max_fill < 0:
            raise ValueError(f"max_fill_bars must be >= 0, got {max_fill_bars}")
        self.interval_ms = interval
        self._max_fill = max_fill
        self.count = 0
        self.rejected_out_of_order = 0
        self.rejected_invalid = 0
        self.skipped_gaps = 0
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
    def max_fill_bars(self):
        return self._max_fill

    cdef Bar _make_bar(self):
        cdef double vwap = self._quote / self._volume if self._volume > 0.0 else self._close
        return _new_bar(self._start, self._start + self.interval_ms, self._open, self._high, self._low,
                        self._close, self._volume, self._trades, vwap, self._quote)

    cdef int _emit_current(self, list out) except -1:
        out.append(self._make_bar())
        self.count += 1
        self._has_bar = False
        self._has_prev = True
        self._prev_close = self._close
        self._next_start = self._start + self.interval_ms
        return 0

    cpdef list update(self, int64_t ts_ms, double price, double size):
        """Add one trade; return the bars it completes (oldest first)."""
        cdef int64_t interval = self.interval_ms
        cdef int64_t start, gap, t
        cdef double flat
        cdef list out
        if ts_ms < 0 or not (price >= 0.0 and price < INFINITY) or not (size >= 0.0 and size < INFINITY):
            self.rejected_invalid += 1
            return []
        start = ts_ms - ts_ms % interval
        out = []
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
                    out.append(_new_bar(t, t + interval, flat, flat, flat, flat, 0.0, 0, flat, 0.0))
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

    def flush(self):
        """The current partial bar, or None; the bar stays open."""
        return self._make_bar() if self._has_bar else None

    @property
    def current(self):
        """The current partial bar, or None (same as ``flush()``)."""
        return self._make_bar() if self._has_bar else None

    def close_current(self):
        """Emit the current bar now (e.g. on a timer at the interval's end) and return it, or None.

        Later trades must then be at or after its ``close_time_ms``; an empty interval between it and
        the next trade is filled as usual.
        """
        cdef list out
        if not self._has_bar:
            return None
        out = []
        self._emit_current(out)
        return out[0]

    def __repr__(self):
        return (
            f"BarBuilder(interval_ms={self.interval_ms}, count={self.count}, "
            f"rejected_out_of_order={self.rejected_out_of_order}, rejected_invalid={self.rejected_invalid})"
        )
