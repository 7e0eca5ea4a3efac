# cython: boundscheck=False, wraparound=False, cdivision=True
"""Streaming technical indicators (compiled kernel); twin: ``engine._pure.indicators``.

Same public API and the same behaviour as the twin: the float operations are the twin's, in the same
order, so both give the same values. Conventions (TA-Lib seeding, TradingView Supertrend, Pine EMAs in
WaveTrend, the StdDev anchoring) are documented in the twin's module docstring.

Indicators are *float* kernels: inputs and outputs are C doubles, never ``Decimal``; they feed signals,
not money. Every indicator is O(1) per update (``StdDev``/``Bollinger`` amortized: their sums are
recomputed exactly from the ring every ``period`` updates); ring buffers are allocated at construction,
Donchian keeps monotonic deques.

Each indicator's state is a C struct and its step one ``cdef inline`` function, both in
``indicators.pxd`` (see there): the classes hold the struct and ``update`` calls the step; the batch
functions run the same step in ``nogil`` loops over a local copy of the struct, so the compiler keeps the
state in registers. Streaming and batch share one implementation of the math.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport NAN

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


# ------------------------------------------------------------------------- allocating state set-up


cdef int sma_init(SMAState* s, int period) except -1:
    s.period = period
    s.buf = _alloc(period)
    sma_clear(s)
    return 0


cdef void sma_free(SMAState* s) noexcept:
    PyMem_Free(s.buf)
    s.buf = NULL


cdef int wma_init(WMAState* s, int period) except -1:
    s.period = period
    s.divider = (<double>period * (period + 1)) / 2.0
    s.buf = _alloc(period)
    wma_clear(s)
    return 0


cdef void wma_free(WMAState* s) noexcept:
    PyMem_Free(s.buf)
    s.buf = NULL


cdef int stddev_init(StdDevState* s, int period) except -1:
    s.period = period
    s.buf = _alloc(period)
    stddev_clear(s)
    return 0


cdef void stddev_free(StdDevState* s) noexcept:
    PyMem_Free(s.buf)
    s.buf = NULL


cdef int macd_init(MACDState* s, int fast, int slow, int signal) except -1:
    s.fast = fast
    s.slow = slow
    s.signal_period = signal
    s.kf = 2.0 / (fast + 1)
    s.ks = 2.0 / (slow + 1)
    s.ksig = 2.0 / (signal + 1)
    s.fast_buf = _alloc(fast)
    macd_clear(s)
    return 0


cdef void macd_free(MACDState* s) noexcept:
    PyMem_Free(s.fast_buf)
    s.fast_buf = NULL


cdef int bollinger_init(BollingerState* s, int period, double k) except -1:
    s.k = k
    sma_init(&s.sma, period)
    stddev_init(&s.sd, period)
    bollinger_clear(s)
    return 0


cdef void bollinger_free(BollingerState* s) noexcept:
    sma_free(&s.sma)
    stddev_free(&s.sd)


cdef int _mono_init(MonoDeque* q, int n) except -1:
    q.n = n
    q.head = 0
    q.size = 0
    q.val = _alloc(n)
    q.idx = <long long*>PyMem_Malloc(n * sizeof(long long))
    if q.idx == NULL:
        raise MemoryError()
    return 0


cdef int donchian_init(DonchianState* s, int period) except -1:
    s.period = period
    _mono_init(&s.max, period)
    _mono_init(&s.min, period)
    donchian_clear(s)
    return 0


cdef void donchian_free(DonchianState* s) noexcept:
    PyMem_Free(s.max.val)
    PyMem_Free(s.max.idx)
    PyMem_Free(s.min.val)
    PyMem_Free(s.min.idx)
    s.max.val = NULL
    s.max.idx = NULL
    s.min.val = NULL
    s.min.idx = NULL


cdef int wavetrend_init(WaveTrendState* s, int channel, int average, int signal) except -1:
    s.channel = channel
    s.average = average
    s.signal = signal
    s.a1 = 2.0 / (channel + 1)
    s.b1 = 1.0 - s.a1
    s.a2 = 2.0 / (average + 1)
    s.b2 = 1.0 - s.a2
    sma_init(&s.sma, signal)
    wavetrend_clear(s)
    return 0


cdef void wavetrend_free(WaveTrendState* s) noexcept:
    sma_free(&s.sma)


cdef int indicator_set_init(IndicatorSetState* s, int ema, int rsi, int atr, int macd_fast, int macd_slow,
                            int macd_signal, int bb_period, double bb_k) except -1:
    ema_init(&s.ema, ema)
    rsi_init(&s.rsi, rsi)
    atr_init(&s.atr, atr)
    macd_init(&s.macd, macd_fast, macd_slow, macd_signal)
    bollinger_init(&s.bb, bb_period, bb_k)
    indicator_set_clear(s)
    return 0


cdef void indicator_set_free(IndicatorSetState* s) noexcept:
    macd_free(&s.macd)
    bollinger_free(&s.bb)


# ---------------------------------------------------------------------------------------------- classes


@cython.final
cdef class SMA:
    """Simple moving average over the last ``period`` values."""

    def __cinit__(self, *, period):
        sma_init(&self.st, _period("period", period))

    def __dealloc__(self):
        sma_free(&self.st)

    cdef void clear(self) noexcept nogil:
        sma_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return sma_push(&self.st, x)

    def update(self, double x):
        return sma_push(&self.st, x)

    def reset(self):
        sma_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class EMA:
    """Exponential moving average, k = 2 / (period + 1), seeded with the SMA of the first values."""

    def __cinit__(self, *, period):
        ema_init(&self.st, _period("period", period))

    cdef void clear(self) noexcept nogil:
        ema_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return ema_push(&self.st, x)

    def update(self, double x):
        return ema_push(&self.st, x)

    def reset(self):
        ema_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class WMA:
    """Linearly weighted moving average (weights 1..period, newest heaviest)."""

    def __cinit__(self, *, period):
        wma_init(&self.st, _period("period", period))

    def __dealloc__(self):
        wma_free(&self.st)

    cdef void clear(self) noexcept nogil:
        wma_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return wma_push(&self.st, x)

    def update(self, double x):
        return wma_push(&self.st, x)

    def reset(self):
        wma_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class StdDev:
    """Population standard deviation over the last ``period`` values (TA-Lib STDDEV, nbdev=1)."""

    def __cinit__(self, *, period):
        stddev_init(&self.st, _period("period", period))

    def __dealloc__(self):
        stddev_free(&self.st)

    cdef void clear(self) noexcept nogil:
        stddev_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return stddev_push(&self.st, x)

    def update(self, double x):
        return stddev_push(&self.st, x)

    def reset(self):
        stddev_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class RSI:
    """Relative strength index with Wilder smoothing (TA-Lib RSI)."""

    def __cinit__(self, *, period=14):
        rsi_init(&self.st, _period("period", period))

    cdef void clear(self) noexcept nogil:
        rsi_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return rsi_push(&self.st, x)

    def update(self, double x):
        return rsi_push(&self.st, x)

    def reset(self):
        rsi_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class ATR:
    """Average true range with Wilder smoothing (TA-Lib ATR)."""

    def __cinit__(self, *, period=14):
        atr_init(&self.st, _period("period", period))

    cdef void clear(self) noexcept nogil:
        atr_clear(&self.st)

    cdef double push(self, double high, double low, double close) noexcept nogil:
        return atr_push(&self.st, high, low, close)

    def update(self, double high, double low, double close):
        return atr_push(&self.st, high, low, close)

    def reset(self):
        atr_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


cdef int _macd_periods(object fast, object slow, object signal, int* out) except -1:
    out[0] = _period("fast", fast)
    out[1] = _period("slow", slow)
    out[2] = _period("signal", signal)
    if out[0] >= out[1]:
        raise ValueError(f"fast must be < slow, got fast={out[0]} slow={out[1]}")
    return 0


@cython.final
cdef class MACD:
    """MACD line, signal and histogram with TA-Lib's seeding (both EMAs aligned at ``slow - 1``)."""

    def __cinit__(self, *, fast=12, slow=26, signal=9):
        cdef int p[3]
        _macd_periods(fast, slow, signal, p)
        macd_init(&self.st, p[0], p[1], p[2])

    def __dealloc__(self):
        macd_free(&self.st)

    cdef void clear(self) noexcept nogil:
        macd_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return macd_push(&self.st, x)

    def update(self, double x):
        return macd_push(&self.st, x)

    def reset(self):
        macd_clear(&self.st)

    @property
    def fast(self):
        return self.st.fast

    @property
    def slow(self):
        return self.st.slow

    @property
    def signal_period(self):
        return self.st.signal_period

    @property
    def macd(self):
        return self.st.macd

    @property
    def signal(self):
        return self.st.signal

    @property
    def hist(self):
        return self.st.hist

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class Bollinger:
    """Bollinger bands: SMA middle, bands at +/- k population standard deviations."""

    def __cinit__(self, *, period=20, k=2.0):
        cdef int p = _period("period", period)
        bollinger_init(&self.st, p, _positive("k", k))

    def __dealloc__(self):
        bollinger_free(&self.st)

    cdef void clear(self) noexcept nogil:
        bollinger_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return bollinger_push(&self.st, x)

    def update(self, double x):
        return bollinger_push(&self.st, x)

    def reset(self):
        bollinger_clear(&self.st)

    @property
    def period(self):
        return self.st.sma.period

    @property
    def k(self):
        return self.st.k

    @property
    def upper(self):
        return self.st.upper

    @property
    def middle(self):
        return self.st.middle

    @property
    def lower(self):
        return self.st.lower

    @property
    def percent_b(self):
        return bollinger_percent_b(&self.st)

    @property
    def bandwidth(self):
        return bollinger_bandwidth(&self.st)

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class VWAP:
    """Session volume-weighted average price; a ``ts_ms`` in a later session restarts the session."""

    def __cinit__(self, *, session_ms=86_400_000):
        session_ms = operator.index(session_ms)
        if session_ms < 1:
            raise ValueError(f"session_ms must be >= 1, got {session_ms}")
        vwap_init(&self.st, session_ms)

    cdef void clear(self) noexcept nogil:
        vwap_clear(&self.st)

    cdef double push(self, double price, double volume) noexcept nogil:
        return vwap_push(&self.st, price, volume)

    cdef double push_ts(self, double price, double volume, long long ts_ms) noexcept nogil:
        return vwap_push_ts(&self.st, price, volume, ts_ms)

    def update(self, double price, double volume, ts_ms=None):
        cdef long long ts
        if not (volume >= 0.0):
            raise ValueError(f"volume must be >= 0, got {volume}")
        if ts_ms is None:
            return vwap_push(&self.st, price, volume)
        if not isinstance(ts_ms, int):
            ts_ms = operator.index(ts_ms)
        ts = ts_ms
        if ts < 0:
            raise ValueError(f"ts_ms must be >= 0, got {ts}")
        return vwap_push_ts(&self.st, price, volume, ts)

    def reset(self):
        """Start a new session."""
        vwap_clear(&self.st)

    @property
    def session_ms(self):
        return self.st.session_ms

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class Supertrend:
    """TradingView Supertrend (RMA ATR, final-band carry); ``direction`` +1 up / -1 down."""

    def __cinit__(self, *, period=10, k=3.0):
        cdef int p = _period("period", period)
        supertrend_init(&self.st, p, _positive("k", k))

    cdef void clear(self) noexcept nogil:
        supertrend_clear(&self.st)

    cdef double push(self, double high, double low, double close) noexcept nogil:
        return supertrend_push(&self.st, high, low, close)

    def update(self, double high, double low, double close):
        return supertrend_push(&self.st, high, low, close)

    def reset(self):
        supertrend_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def k(self):
        return self.st.k

    @property
    def atr(self):
        return self.st.atr

    @property
    def upper(self):
        return self.st.upper

    @property
    def lower(self):
        return self.st.lower

    @property
    def direction(self):
        return self.st.direction

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class Donchian:
    """Donchian channel: highest high and lowest low of the last ``period`` bars, and their mean."""

    def __cinit__(self, *, period=20):
        donchian_init(&self.st, _period("period", period))

    def __dealloc__(self):
        donchian_free(&self.st)

    cdef void clear(self) noexcept nogil:
        donchian_clear(&self.st)

    cdef double push(self, double high, double low) noexcept nogil:
        return donchian_push(&self.st, high, low)

    def update(self, double high, double low):
        return donchian_push(&self.st, high, low)

    def reset(self):
        donchian_clear(&self.st)

    @property
    def period(self):
        return self.st.period

    @property
    def upper(self):
        return self.st.upper

    @property
    def lower(self):
        return self.st.lower

    @property
    def middle(self):
        return self.st.middle

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class OBV:
    """On-balance volume (TA-Lib OBV: the first value is the first volume)."""

    def __cinit__(self):
        obv_clear(&self.st)

    cdef void clear(self) noexcept nogil:
        obv_clear(&self.st)

    cdef double push(self, double close, double volume) noexcept nogil:
        return obv_push(&self.st, close, volume)

    def update(self, double close, double volume):
        return obv_push(&self.st, close, volume)

    def reset(self):
        obv_clear(&self.st)

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class WaveTrend:
    """LazyBear's WaveTrend oscillator (VuManChu Cipher B defaults) with Pine-style EMAs."""

    def __cinit__(self, *, channel=9, average=12, signal=3):
        cdef int c = _period("channel", channel)
        cdef int a = _period("average", average)
        wavetrend_init(&self.st, c, a, _period("signal", signal))

    def __dealloc__(self):
        wavetrend_free(&self.st)

    cdef void clear(self) noexcept nogil:
        wavetrend_clear(&self.st)

    cdef double push(self, double x) noexcept nogil:
        return wavetrend_push(&self.st, x)

    def update(self, double x):
        return wavetrend_push(&self.st, x)

    def reset(self):
        wavetrend_clear(&self.st)

    @property
    def channel(self):
        return self.st.channel

    @property
    def average(self):
        return self.st.average

    @property
    def signal(self):
        return self.st.signal

    @property
    def wt1(self):
        return self.st.wt1

    @property
    def wt2(self):
        return self.st.wt2

    @property
    def value(self):
        return self.st.value

    @property
    def ready(self):
        return self.st.ready


@cython.final
cdef class IndicatorSet:
    """EMA, RSI, ATR, MACD and Bollinger updated together by one ``update(high, low, close)``.

    ``values()`` returns the nine outputs in one tuple, in this order: ``(ema, rsi, atr, macd,
    macd_signal, macd_hist, bb_upper, bb_middle, bb_lower)``; cheaper than reading the nine attributes.
    """

    def __cinit__(self, *, ema=20, rsi=14, atr=14, macd_fast=12, macd_slow=26, macd_signal=9,
                  bb_period=20, bb_k=2.0):
        cdef int e = _period("period", ema)
        cdef int r = _period("period", rsi)
        cdef int a = _period("period", atr)
        cdef int m[3]
        _macd_periods(macd_fast, macd_slow, macd_signal, m)
        cdef int bp = _period("period", bb_period)
        cdef double bk = _positive("k", bb_k)
        indicator_set_init(&self.st, e, r, a, m[0], m[1], m[2], bp, bk)

    def __dealloc__(self):
        indicator_set_free(&self.st)

    cdef void clear(self) noexcept nogil:
        indicator_set_clear(&self.st)

    cdef bint push(self, double high, double low, double close) noexcept nogil:
        return indicator_set_push(&self.st, high, low, close)

    def update(self, double high, double low, double close):
        """Update all five on one bar; returns ``ready`` (all five ready)."""
        return indicator_set_push(&self.st, high, low, close)

    def values(self):
        """``(ema, rsi, atr, macd, macd_signal, macd_hist, bb_upper, bb_middle, bb_lower)``."""
        cdef IndicatorSetState* s = &self.st
        return (s.ema.value, s.rsi.value, s.atr.value, s.macd.macd, s.macd.signal, s.macd.hist,
                s.bb.upper, s.bb.middle, s.bb.lower)

    def reset(self):
        indicator_set_clear(&self.st)

    @property
    def ema(self):
        return self.st.ema.value

    @property
    def rsi(self):
        return self.st.rsi.value

    @property
    def atr(self):
        return self.st.atr.value

    @property
    def macd(self):
        return self.st.macd.macd

    @property
    def macd_signal(self):
        return self.st.macd.signal

    @property
    def macd_hist(self):
        return self.st.macd.hist

    @property
    def bb_upper(self):
        return self.st.bb.upper

    @property
    def bb_middle(self):
        return self.st.bb.middle

    @property
    def bb_lower(self):
        return self.st.bb.lower

    @property
    def ready(self):
        return self.st.ready


# ---------------------------------------------------------------------------------------------- batch
# Each batch function owns its state through an indicator object (allocation and release), copies the
# state struct to a local, steps the local in a nogil loop and writes it back.


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
    cdef SMAState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = sma_push(&s, a[i])
    ind.st = s
    return out


def ema_batch(x, period):
    cdef EMA ind = EMA(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    cdef EMAState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = ema_push(&s, a[i])
    ind.st = s
    return out


def wma_batch(x, period):
    cdef WMA ind = WMA(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    cdef WMAState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = wma_push(&s, a[i])
    ind.st = s
    return out


def stddev_batch(x, period):
    cdef StdDev ind = StdDev(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    cdef StdDevState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = stddev_push(&s, a[i])
    ind.st = s
    return out


def rsi_batch(x, period=14):
    cdef RSI ind = RSI(period=period)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    out = np.empty(n)
    cdef double[::1] o = out
    cdef RSIState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = rsi_push(&s, a[i])
    ind.st = s
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
    cdef ATRState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = atr_push(&s, h[i], lo[i], c[i])
    ind.st = s
    return out


def macd_batch(x, fast=12, slow=26, signal=9):
    cdef MACD ind = MACD(fast=fast, slow=slow, signal=signal)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    m_, s_, h_ = np.empty(n), np.empty(n), np.empty(n)
    cdef double[::1] m = m_
    cdef double[::1] sg = s_
    cdef double[::1] h = h_
    cdef MACDState s = ind.st
    with nogil:
        for i in range(n):
            macd_push(&s, a[i])
            m[i] = s.macd
            sg[i] = s.signal
            h[i] = s.hist
    ind.st = s
    return m_, s_, h_


def bollinger_batch(x, period=20, k=2.0):
    cdef Bollinger ind = Bollinger(period=period, k=k)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    u_, m_, l_ = np.empty(n), np.empty(n), np.empty(n)
    cdef double[::1] up = u_
    cdef double[::1] mid = m_
    cdef double[::1] lo = l_
    cdef BollingerState s = ind.st
    with nogil:
        for i in range(n):
            bollinger_push(&s, a[i])
            up[i] = s.upper
            mid[i] = s.middle
            lo[i] = s.lower
    ind.st = s
    return u_, m_, l_


def obv_batch(close, volume):
    cdef OBV ind = OBV()
    c_, v_ = _arr("close", close), _arr("volume", volume)
    cdef Py_ssize_t i, n = _same_len(close=c_, volume=v_)
    cdef const double[::1] c = c_
    cdef const double[::1] v = v_
    out = np.empty(n)
    cdef double[::1] o = out
    cdef OBVState s = ind.st
    with nogil:
        for i in range(n):
            o[i] = obv_push(&s, c[i], v[i])
    ind.st = s
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
    cdef VWAPState s = ind.st
    for i in range(n):
        if not (v[i] >= 0.0):
            raise ValueError(f"volume must be >= 0, got {v[i]}")
    if ts_ms is None:
        with nogil:
            for i in range(n):
                o[i] = vwap_push(&s, p[i], v[i])
        ind.st = s
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
            o[i] = vwap_push_ts(&s, p[i], v[i], t[i])
    ind.st = s
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
    cdef SupertrendState s = ind.st
    with nogil:
        for i in range(n):
            line[i] = supertrend_push(&s, h[i], lo[i], c[i])
            d[i] = <double>s.direction if s.ready else NAN
    ind.st = s
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
    cdef DonchianState s = ind.st
    with nogil:
        for i in range(n):
            donchian_push(&s, h[i], lo[i])
            up[i] = s.upper
            mid[i] = s.middle
            low_out[i] = s.lower
    ind.st = s
    return u_, m_, lw_


def wavetrend_batch(x, channel=9, average=12, signal=3):
    cdef WaveTrend ind = WaveTrend(channel=channel, average=average, signal=signal)
    cdef const double[::1] a = _arr("x", x)
    cdef Py_ssize_t i, n = a.shape[0]
    w1_, w2_ = np.empty(n), np.empty(n)
    cdef double[::1] w1 = w1_
    cdef double[::1] w2 = w2_
    cdef WaveTrendState s = ind.st
    with nogil:
        for i in range(n):
            wavetrend_push(&s, a[i])
            w1[i] = s.wt1
            w2[i] = s.wt2
    ind.st = s
    return w1_, w2_
