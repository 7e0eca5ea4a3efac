# cython: boundscheck=False, wraparound=False, cdivision=True
"""Streaming technical indicators (compiled kernel); twin: ``engine._pure.indicators``.

Same public API and the same behaviour as the twin: the float operations are the twin's, in the same
order, so both give the same values. Conventions (TA-Lib seeding, TradingView Supertrend, Pine EMAs in
WaveTrend, the StdDev anchoring) are documented in the twin's module docstring.

Indicators are *float* kernels: inputs and outputs are C doubles, never ``Decimal``; they feed signals,
not money. Every indicator is O(1) per update (``StdDev``/``Bollinger`` amortized: their sums are
recomputed exactly from the ring every ``period`` updates); ring buffers are allocated at construction,
Donchian keeps monotonic deques. Each class's ``update`` is a thin wrapper over ``cdef push`` (declared
in ``indicators.pxd``, callable without the GIL); the batch functions run ``push`` in ``nogil`` loops.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport NAN, fabs, sqrt

import operator

import numpy as np

__all__ = [
    "ATR",
    "EMA",
    "MACD",
    "OBV",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "Bollinger",
    "Donchian",
    "IndicatorSet",
    "StdDev",
    "Supertrend",
    "WaveTrend",
    "atr_batch",
    "bollinger_batch",
    "donchian_batch",
    "ema_batch",
    "macd_batch",
    "obv_batch",
    "rsi_batch",
    "sma_batch",
    "stddev_batch",
    "supertrend_batch",
    "vwap_batch",
    "wavetrend_batch",
    "wma_batch",
]

cdef double _VAR_NOISE = 64.0 * 2.220446049250313e-16


cdef int _period(str name, object value) except -1:
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > 2147483647:
        raise ValueError(f"{name} must be < 2**31, got {value}")
    return value


cdef double _positive(str name, object value) except -1.0:
    cdef double v = float(value)
    if not (0.0 < v < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {v}")
    return v


cdef double* _alloc(int n) except NULL:
    cdef double* p = <double*>PyMem_Malloc(n * sizeof(double))
    if p == NULL:
        raise MemoryError()
    cdef int i
    for i in range(n):
        p[i] = 0.0
    return p


@cython.final
cdef class SMA:
    """Simple moving average over the last ``period`` values."""

    def __cinit__(self, *, period):
        self.period = _period("period", period)
        self._buf = _alloc(self.period)
        self.clear()

    def __dealloc__(self):
        PyMem_Free(self._buf)

    cdef void clear(self) noexcept nogil:
        cdef int i
        for i in range(self.period):
            self._buf[i] = 0.0
        self._idx = 0
        self._count = 0
        self._sum = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef double t
        cdef int idx = self._idx
        self._buf[idx] = x
        idx += 1
        if idx == self.period:
            idx = 0
        self._idx = idx
        self._count += 1
        t = self._sum + x
        if self._count >= self.period:
            self.value = t / self.period
            self.ready = True
            self._sum = t - self._buf[idx]
        else:
            self._sum = t
        return self.value

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class EMA:
    """Exponential moving average, k = 2 / (period + 1), seeded with the SMA of the first values."""

    def __cinit__(self, *, period):
        self.period = _period("period", period)
        self._k = 2.0 / (self.period + 1)
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._count = 0
        self._sum = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        if self.ready:
            self.value = (x - self.value) * self._k + self.value
            return self.value
        self._count += 1
        self._sum += x
        if self._count == self.period:
            self.value = self._sum / self.period
            self.ready = True
        return self.value

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class WMA:
    """Linearly weighted moving average (weights 1..period, newest heaviest)."""

    def __cinit__(self, *, period):
        self.period = _period("period", period)
        self._divider = (<double>self.period * (self.period + 1)) / 2.0
        self._buf = _alloc(self.period)
        self.clear()

    def __dealloc__(self):
        PyMem_Free(self._buf)

    cdef void clear(self) noexcept nogil:
        cdef int i
        for i in range(self.period):
            self._buf[i] = 0.0
        self._idx = 0
        self._count = 0
        self._sub = 0.0
        self._wsum = 0.0
        self._trailing = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef int idx = self._idx
        self._buf[idx] = x
        idx += 1
        if idx == self.period:
            idx = 0
        self._idx = idx
        self._count += 1
        if self._count < self.period:
            self._sub += x
            self._wsum += x * <double>self._count
            return self.value
        self._sub += x
        self._sub -= self._trailing
        self._wsum += x * <double>self.period
        self._trailing = self._buf[idx]
        self.value = self._wsum / self._divider
        self.ready = True
        self._wsum -= self._sub
        return self.value

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class StdDev:
    """Population standard deviation over the last ``period`` values (TA-Lib STDDEV, nbdev=1)."""

    def __cinit__(self, *, period):
        self.period = _period("period", period)
        self._buf = _alloc(self.period)
        self.clear()

    def __dealloc__(self):
        PyMem_Free(self._buf)

    cdef void clear(self) noexcept nogil:
        cdef int i
        for i in range(self.period):
            self._buf[i] = 0.0
        self._idx = 0
        self._count = 0
        self._anchor = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef int n = self.period
        cdef double* buf = self._buf
        cdef int idx = self._idx
        cdef int i
        cdef double d, old, a, s1, s2, e, m1, m2, var
        if self._count == 0:
            self._anchor = x
        d = x - self._anchor
        if self._count >= n:
            old = buf[idx] - self._anchor
            self._s1 += d - old
            self._s2 += d * d - old * old
        else:
            self._s1 += d
            self._s2 += d * d
        buf[idx] = x
        idx += 1
        self._count += 1
        if idx == n:
            idx = 0
            # re-anchor on the newest value and recompute the sums exactly (amortized O(1))
            a = x
            s1 = 0.0
            s2 = 0.0
            for i in range(n):
                e = buf[i] - a
                s1 += e
                s2 += e * e
            self._anchor = a
            self._s1 = s1
            self._s2 = s2
        self._idx = idx
        if self._count >= n:
            m1 = self._s1 / n
            m2 = self._s2 / n
            var = m2 - m1 * m1
            self.value = sqrt(var) if var > m2 * _VAR_NOISE else 0.0
            self.ready = True
        return self.value

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


cdef inline double _rsi(double gain, double loss) noexcept nogil:
    cdef double total = gain + loss
    return 100.0 * (gain / total) if total != 0.0 else 0.0


@cython.final
cdef class RSI:
    """Relative strength index with Wilder smoothing (TA-Lib RSI)."""

    def __cinit__(self, *, period=14):
        self.period = _period("period", period)
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._count = 0
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef double diff = x - self._prev
        cdef int n = self.period
        self._prev = x
        self._count += 1
        if self.ready:
            self._loss *= (n - 1)
            self._gain *= (n - 1)
            if diff < 0.0:
                self._loss -= diff
            else:
                self._gain += diff
            self._loss /= n
            self._gain /= n
            self.value = _rsi(self._gain, self._loss)
            return self.value
        if self._count == 1:
            return self.value
        if diff < 0.0:
            self._loss -= diff
        else:
            self._gain += diff
        if self._count == n + 1:
            self._loss /= n
            self._gain /= n
            self.ready = True
            self.value = _rsi(self._gain, self._loss)
        return self.value

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class ATR:
    """Average true range with Wilder smoothing (TA-Lib ATR)."""

    def __cinit__(self, *, period=14):
        self.period = _period("period", period)
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._count = 0
        self._prev_close = 0.0
        self._sum = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double high, double low, double close) noexcept nogil:
        cdef double pc = self._prev_close
        cdef double tr, v
        cdef int n = self.period
        self._prev_close = close
        self._count += 1
        if self._count == 1:
            return self.value
        tr = high - low
        v = fabs(low - pc)
        if v > tr:
            tr = v
        v = fabs(high - pc)
        if v > tr:
            tr = v
        if self.ready:
            self.value = (self.value * (n - 1) + tr) / n
            return self.value
        self._sum += tr
        if self._count == n + 1:
            self.value = self._sum / n
            self.ready = True
        return self.value

    def update(self, double high, double low, double close):
        return self.push(high, low, close)

    def reset(self):
        self.clear()


@cython.final
cdef class MACD:
    """MACD line, signal and histogram with TA-Lib's seeding (both EMAs aligned at ``slow - 1``)."""

    def __cinit__(self, *, fast=12, slow=26, signal=9):
        self.fast = _period("fast", fast)
        self.slow = _period("slow", slow)
        self.signal_period = _period("signal", signal)
        if self.fast >= self.slow:
            raise ValueError(f"fast must be < slow, got fast={self.fast} slow={self.slow}")
        self._kf = 2.0 / (self.fast + 1)
        self._ks = 2.0 / (self.slow + 1)
        self._ksig = 2.0 / (self.signal_period + 1)
        self._fast_buf = _alloc(self.fast)
        self.clear()

    def __dealloc__(self):
        PyMem_Free(self._fast_buf)

    cdef void clear(self) noexcept nogil:
        cdef int i
        for i in range(self.fast):
            self._fast_buf[i] = 0.0
        self._count = 0
        self._slow_sum = 0.0
        self._fast_ema = 0.0
        self._slow_ema = 0.0
        self._sig_sum = 0.0
        self._nsig = 0
        self.macd = NAN
        self.signal = NAN
        self.hist = NAN
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef double m, s, t
        cdef long long count
        cdef int start, i, nf = self.fast
        if self.ready:
            self._fast_ema = (x - self._fast_ema) * self._kf + self._fast_ema
            self._slow_ema = (x - self._slow_ema) * self._ks + self._slow_ema
            m = self._fast_ema - self._slow_ema
            s = (m - self.signal) * self._ksig + self.signal
            self.macd = m
            self.signal = s
            self.hist = m - s
            self.value = m
            return m
        count = self._count
        self._count = count + 1
        if count < self.slow:
            self._fast_buf[count % nf] = x
            self._slow_sum += x
            if count < self.slow - 1:
                return NAN
            # index slow - 1: seed both EMAs; the fast one from the `fast` values ending here
            self._slow_ema = self._slow_sum / self.slow
            start = (count + 1) % nf
            t = self._fast_buf[start]
            for i in range(1, nf):
                t += self._fast_buf[(start + i) % nf]
            self._fast_ema = t / nf
        else:
            self._fast_ema = (x - self._fast_ema) * self._kf + self._fast_ema
            self._slow_ema = (x - self._slow_ema) * self._ks + self._slow_ema
        m = self._fast_ema - self._slow_ema
        self._sig_sum += m
        self._nsig += 1
        if self._nsig == self.signal_period:
            s = self._sig_sum / self.signal_period
            self.macd = m
            self.signal = s
            self.hist = m - s
            self.value = m
            self.ready = True
            return m
        return NAN

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class Bollinger:
    """Bollinger bands: SMA middle, bands at +/- k population standard deviations."""

    def __cinit__(self, *, period=20, k=2.0):
        self.period = _period("period", period)
        self.k = _positive("k", k)
        self._sma = SMA(period=self.period)
        self._sd = StdDev(period=self.period)
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._sma.clear()
        self._sd.clear()
        self.upper = NAN
        self.middle = NAN
        self.lower = NAN
        self.percent_b = NAN
        self.bandwidth = NAN
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef double mid = self._sma.push(x)
        cdef double sd = self._sd.push(x)
        cdef double dev, up, lo, width
        if not self._sma.ready:
            return NAN
        dev = self.k * sd
        up = mid + dev
        lo = mid - dev
        width = up - lo
        self.upper = up
        self.middle = mid
        self.lower = lo
        self.percent_b = (x - lo) / width if width != 0.0 else 0.5
        self.bandwidth = width / mid if mid != 0.0 else NAN
        self.value = mid
        self.ready = True
        return mid

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class VWAP:
    """Session volume-weighted average price; a ``ts_ms`` in a later session restarts the session."""

    def __cinit__(self, *, session_ms=86_400_000):
        session_ms = operator.index(session_ms)
        if session_ms < 1:
            raise ValueError(f"session_ms must be >= 1, got {session_ms}")
        self.session_ms = session_ms
        self._has_session = False
        self._session = 0
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._pv = 0.0
        self._vol = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double price, double volume) noexcept nogil:
        self._pv += price * volume
        self._vol += volume
        if self._vol > 0.0:
            self.value = self._pv / self._vol
            self.ready = True
        return self.value

    cdef double push_ts(self, double price, double volume, long long ts_ms) noexcept nogil:
        cdef long long session = ts_ms // self.session_ms
        if not self._has_session:
            self._has_session = True
            self._session = session
        elif session > self._session:
            self._session = session
            self.clear()
        return self.push(price, volume)

    def update(self, double price, double volume, ts_ms=None):
        cdef long long ts
        if not (volume >= 0.0):
            raise ValueError(f"volume must be >= 0, got {volume}")
        if ts_ms is None:
            return self.push(price, volume)
        if not isinstance(ts_ms, int):
            ts_ms = operator.index(ts_ms)
        ts = ts_ms
        if ts < 0:
            raise ValueError(f"ts_ms must be >= 0, got {ts}")
        return self.push_ts(price, volume, ts)

    def reset(self):
        """Start a new session."""
        self.clear()


@cython.final
cdef class Supertrend:
    """TradingView Supertrend (RMA ATR, final-band carry); ``direction`` +1 up / -1 down."""

    def __cinit__(self, *, period=10, k=3.0):
        self.period = _period("period", period)
        self.k = _positive("k", k)
        self._rma_a = 1.0 / self.period
        self._rma_b = 1.0 - self._rma_a
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._count = 0
        self._prev_close = 0.0
        self._tr_sum = 0.0
        self.atr = NAN
        self.upper = NAN
        self.lower = NAN
        self.direction = 0
        self.value = NAN
        self.ready = False

    cdef double push(self, double high, double low, double close) noexcept nogil:
        cdef double pc = self._prev_close
        cdef double tr = high - low
        cdef double v, atr, src, up, lo, prev_up, prev_lo
        cdef int n = self.period
        cdef int direction
        self._prev_close = close
        if self._count > 0:
            v = fabs(high - pc)
            if v > tr:
                tr = v
            v = fabs(low - pc)
            if v > tr:
                tr = v
        self._count += 1
        if self._count < n:
            self._tr_sum += tr
            return NAN
        if self._count == n:
            self._tr_sum += tr
            atr = self._tr_sum / n
        else:
            atr = self._rma_a * tr + self._rma_b * self.atr
        self.atr = atr
        src = (high + low) / 2.0
        up = src + self.k * atr
        lo = src - self.k * atr
        if self._count == n:
            direction = -1
        else:
            prev_up = self.upper
            prev_lo = self.lower
            if not (lo > prev_lo or pc < prev_lo):
                lo = prev_lo
            if not (up < prev_up or pc > prev_up):
                up = prev_up
            if self.value == prev_up:
                direction = 1 if close > up else -1
            else:
                direction = -1 if close < lo else 1
        self.upper = up
        self.lower = lo
        self.direction = direction
        self.value = lo if direction == 1 else up
        self.ready = True
        return self.value

    def update(self, double high, double low, double close):
        return self.push(high, low, close)

    def reset(self):
        self.clear()


cdef inline double _mono_push(MonoDeque* q, long long i, double x, bint is_max) noexcept nogil:
    cdef int n = q.n
    cdef int back, pos
    # drop the front when it left the window
    if q.size and q.idx[q.head] <= i - n:
        q.head += 1
        if q.head == n:
            q.head = 0
        q.size -= 1
    # drop from the back everything the new value dominates
    while q.size:
        back = q.head + q.size - 1
        if back >= n:
            back -= n
        if (q.val[back] <= x) if is_max else (q.val[back] >= x):
            q.size -= 1
        else:
            break
    pos = q.head + q.size
    if pos >= n:
        pos -= n
    q.val[pos] = x
    q.idx[pos] = i
    q.size += 1
    return q.val[q.head]


cdef int _mono_init(MonoDeque* q, int n) except -1:
    q.n = n
    q.head = 0
    q.size = 0
    q.val = _alloc(n)
    q.idx = <long long*>PyMem_Malloc(n * sizeof(long long))
    if q.idx == NULL:
        raise MemoryError()
    return 0


@cython.final
cdef class Donchian:
    """Donchian channel: highest high and lowest low of the last ``period`` bars, and their mean."""

    def __cinit__(self, *, period=20):
        self.period = _period("period", period)
        _mono_init(&self._max, self.period)
        _mono_init(&self._min, self.period)
        self.clear()

    def __dealloc__(self):
        PyMem_Free(self._max.val)
        PyMem_Free(self._max.idx)
        PyMem_Free(self._min.val)
        PyMem_Free(self._min.idx)

    cdef void clear(self) noexcept nogil:
        self._max.head = 0
        self._max.size = 0
        self._min.head = 0
        self._min.size = 0
        self._count = 0
        self.upper = NAN
        self.lower = NAN
        self.middle = NAN
        self.value = NAN
        self.ready = False

    cdef double push(self, double high, double low) noexcept nogil:
        cdef long long i = self._count
        cdef double up, lo
        self._count = i + 1
        up = _mono_push(&self._max, i, high, True)
        lo = _mono_push(&self._min, i, low, False)
        if self._count < self.period:
            return NAN
        self.upper = up
        self.lower = lo
        self.middle = (up + lo) / 2.0
        self.value = self.middle
        self.ready = True
        return self.middle

    def update(self, double high, double low):
        return self.push(high, low)

    def reset(self):
        self.clear()


@cython.final
cdef class OBV:
    """On-balance volume (TA-Lib OBV: the first value is the first volume)."""

    def __cinit__(self):
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._prev = 0.0
        self.value = NAN
        self.ready = False

    cdef double push(self, double close, double volume) noexcept nogil:
        if not self.ready:
            self.value = volume
            self.ready = True
        elif close > self._prev:
            self.value += volume
        elif close < self._prev:
            self.value -= volume
        self._prev = close
        return self.value

    def update(self, double close, double volume):
        return self.push(close, volume)

    def reset(self):
        self.clear()


@cython.final
cdef class WaveTrend:
    """LazyBear's WaveTrend oscillator (VuManChu Cipher B defaults) with Pine-style EMAs."""

    def __cinit__(self, *, channel=9, average=12, signal=3):
        self.channel = _period("channel", channel)
        self.average = _period("average", average)
        self.signal = _period("signal", signal)
        self._a1 = 2.0 / (self.channel + 1)
        self._b1 = 1.0 - self._a1
        self._a2 = 2.0 / (self.average + 1)
        self._b2 = 1.0 - self._a2
        self._sma = SMA(period=self.signal)
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._sma.clear()
        self._count = 0
        self._esa = 0.0
        self._d = 0.0
        self._wt1 = 0.0
        self.wt1 = NAN
        self.wt2 = NAN
        self.value = NAN
        self.ready = False

    cdef double push(self, double x) noexcept nogil:
        cdef double esa, d, ci, wt1, wt2
        if self._count == 0:
            esa = x
            d = 0.0
        else:
            esa = self._a1 * x + self._b1 * self._esa
            d = self._a1 * fabs(x - esa) + self._b1 * self._d
        self._esa = esa
        self._d = d
        ci = (x - esa) / (0.015 * d) if d != 0.0 else 0.0
        wt1 = ci if self._count == 0 else self._a2 * ci + self._b2 * self._wt1
        self._wt1 = wt1
        self._count += 1
        wt2 = self._sma.push(wt1)
        if self._sma.ready:
            self.wt1 = wt1
            self.wt2 = wt2
            self.value = wt1
            self.ready = True
        return self.value

    def update(self, double x):
        return self.push(x)

    def reset(self):
        self.clear()


@cython.final
cdef class IndicatorSet:
    """EMA, RSI, ATR, MACD and Bollinger updated together by one ``update(high, low, close)``."""

    def __cinit__(self, *, ema=20, rsi=14, atr=14, macd_fast=12, macd_slow=26, macd_signal=9,
                  bb_period=20, bb_k=2.0):
        self._ema = EMA(period=ema)
        self._rsi = RSI(period=rsi)
        self._atr = ATR(period=atr)
        self._macd = MACD(fast=macd_fast, slow=macd_slow, signal=macd_signal)
        self._bb = Bollinger(period=bb_period, k=bb_k)
        self.clear()

    cdef void clear(self) noexcept nogil:
        self._ema.clear()
        self._rsi.clear()
        self._atr.clear()
        self._macd.clear()
        self._bb.clear()
        self.ema = NAN
        self.rsi = NAN
        self.atr = NAN
        self.macd = NAN
        self.macd_signal = NAN
        self.macd_hist = NAN
        self.bb_upper = NAN
        self.bb_middle = NAN
        self.bb_lower = NAN
        self.ready = False

    cdef bint push(self, double high, double low, double close) noexcept nogil:
        self.ema = self._ema.push(close)
        self.rsi = self._rsi.push(close)
        self.atr = self._atr.push(high, low, close)
        self._macd.push(close)
        self.macd = self._macd.macd
        self.macd_signal = self._macd.signal
        self.macd_hist = self._macd.hist
        self._bb.push(close)
        self.bb_upper = self._bb.upper
        self.bb_middle = self._bb.middle
        self.bb_lower = self._bb.lower
        self.ready = (self._ema.ready and self._rsi.ready and self._atr.ready and self._macd.ready
                      and self._bb.ready)
        return self.ready

    def update(self, double high, double low, double close):
        """Update all five on one bar; returns ``ready`` (all five ready)."""
        return self.push(high, low, close)

    def reset(self):
        self.clear()


# ---------------------------------------------------------------------------------------------- batch


def _arr(str name, object x):
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {a.shape}")
    return a


def _same_len(**arrays):
    lengths = {name: len(a) for name, a in arrays.items()}
    n = next(iter(lengths.values()))
    if any(m != n for m in lengths.values()):
        raise ValueError(f"arrays must have the same length, got {lengths}")
    return n


def sma_batch(x, period):
    cdef SMA ind = SMA(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(a[i])
    return out


def ema_batch(x, period):
    cdef EMA ind = EMA(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(a[i])
    return out


def wma_batch(x, period):
    cdef WMA ind = WMA(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(a[i])
    return out


def stddev_batch(x, period):
    cdef StdDev ind = StdDev(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(a[i])
    return out


def rsi_batch(x, period=14):
    cdef RSI ind = RSI(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(a[i])
    return out


def atr_batch(high, low, close, period=14):
    cdef ATR ind = ATR(period=period)
    h_, l_, c_ = _arr("high", high), _arr("low", low), _arr("close", close)
    cdef Py_ssize_t i, n = _same_len(high=h_, low=l_, close=c_)
    cdef const double[::1] h = h_
    cdef const double[::1] lo = l_
    cdef const double[::1] c = c_
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(h[i], lo[i], c[i])
    return out


def macd_batch(x, fast=12, slow=26, signal=9):
    cdef MACD ind = MACD(fast=fast, slow=slow, signal=signal)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    m_, s_, h_ = np.empty(n), np.empty(n), np.empty(n)
    cdef double[::1] m = m_
    cdef double[::1] s = s_
    cdef double[::1] h = h_
    with nogil:
        for i in range(n):
            ind.push(a[i])
            m[i] = ind.macd
            s[i] = ind.signal
            h[i] = ind.hist
    return m_, s_, h_


def bollinger_batch(x, period=20, k=2.0):
    cdef Bollinger ind = Bollinger(period=period, k=k)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    u_, m_, l_ = np.empty(n), np.empty(n), np.empty(n)
    cdef double[::1] up = u_
    cdef double[::1] mid = m_
    cdef double[::1] lo = l_
    with nogil:
        for i in range(n):
            ind.push(a[i])
            up[i] = ind.upper
            mid[i] = ind.middle
            lo[i] = ind.lower
    return u_, m_, l_


def obv_batch(close, volume):
    cdef OBV ind = OBV()
    c_, v_ = _arr("close", close), _arr("volume", volume)
    cdef Py_ssize_t i, n = _same_len(close=c_, volume=v_)
    cdef const double[::1] c = c_
    cdef const double[::1] v = v_
    out = np.empty(n)
    cdef double[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ind.push(c[i], v[i])
    return out


def vwap_batch(price, volume, ts_ms=None, *, session_ms=86_400_000):
    """Cumulative VWAP; with ``ts_ms`` (int64 milliseconds), restarted at each session boundary."""
    cdef VWAP ind = VWAP(session_ms=session_ms)
    p_, v_ = _arr("price", price), _arr("volume", volume)
    cdef Py_ssize_t i, n = _same_len(price=p_, volume=v_)
    cdef const double[::1] p = p_
    cdef const double[::1] v = v_
    cdef const long long[::1] t
    out = np.empty(n)
    cdef double[::1] o = out
    for i in range(n):
        if not (v[i] >= 0.0):
            raise ValueError(f"volume must be >= 0, got {v[i]}")
    if ts_ms is None:
        with nogil:
            for i in range(n):
                o[i] = ind.push(p[i], v[i])
        return out
    t_ = np.ascontiguousarray(ts_ms, dtype=np.int64)
    if len(t_) != n:
        raise ValueError(f"ts_ms must have the same length as price, got {len(t_)} and {n}")
    t = t_
    for i in range(n):
        if t[i] < 0:
            raise ValueError(f"ts_ms must be >= 0, got {t[i]}")
    with nogil:
        for i in range(n):
            o[i] = ind.push_ts(p[i], v[i], t[i])
    return out


def supertrend_batch(high, low, close, period=10, k=3.0):
    """(line, direction); direction is +1.0 / -1.0, NaN before ready."""
    cdef Supertrend ind = Supertrend(period=period, k=k)
    h_, l_, c_ = _arr("high", high), _arr("low", low), _arr("close", close)
    cdef Py_ssize_t i, n = _same_len(high=h_, low=l_, close=c_)
    cdef const double[::1] h = h_
    cdef const double[::1] lo = l_
    cdef const double[::1] c = c_
    line_, dir_ = np.empty(n), np.empty(n)
    cdef double[::1] line = line_
    cdef double[::1] d = dir_
    with nogil:
        for i in range(n):
            line[i] = ind.push(h[i], lo[i], c[i])
            d[i] = <double>ind.direction if ind.ready else NAN
    return line_, dir_


def donchian_batch(high, low, period=20):
    cdef Donchian ind = Donchian(period=period)
    h_, l_ = _arr("high", high), _arr("low", low)
    cdef Py_ssize_t i, n = _same_len(high=h_, low=l_)
    cdef const double[::1] h = h_
    cdef const double[::1] lo = l_
    u_, m_, lw_ = np.empty(n), np.empty(n), np.empty(n)
    cdef double[::1] up = u_
    cdef double[::1] mid = m_
    cdef double[::1] low_out = lw_
    with nogil:
        for i in range(n):
            ind.push(h[i], lo[i])
            up[i] = ind.upper
            mid[i] = ind.middle
            low_out[i] = ind.lower
    return u_, m_, lw_


def wavetrend_batch(x, channel=9, average=12, signal=3):
    cdef WaveTrend ind = WaveTrend(channel=channel, average=average, signal=signal)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    w1_, w2_ = np.empty(n), np.empty(n)
    cdef double[::1] w1 = w1_
    cdef double[::1] w2 = w2_
    with nogil:
        for i in range(n):
            ind.push(a[i])
            w1[i] = ind.wt1
            w2[i] = ind.wt2
    return w1_, w2_
