# cython: cdivision=True
# Contract of the streaming indicators kernel (ext/indicators.pyx); cimport as
# ``from engine._ext.indicators cimport EMAState, ema_init, ema_push, EMA, ...``.
#
# Each indicator's state is a plain C struct (``<Name>State``) and its step is one ``cdef inline``
# function over a pointer to it (``<name>_push``), defined here so that every module that cimports this
# file compiles the step into its own loops. That function is the ONE implementation of the indicator's
# math: the cdef classes hold the struct and call it (``update`` -> ``push`` -> ``<name>_push``), and the
# batch functions copy the struct to a local variable, run the step over the local (so the C compiler
# keeps the state in registers instead of reloading/storing object fields every bar) and write it back.
# The float operations are the pure twin's (``engine._pure.indicators``), in the same order.
#
# Structs holding ring buffers (SMA, WMA, StdDev, MACD, Bollinger, Donchian, WaveTrend, IndicatorSet)
# are set up by ``<name>_init`` (allocates; raises MemoryError) and released by ``<name>_free``; the
# rest by ``<name>_init`` alone. ``<name>_clear`` is ``reset()``. Periods are validated by the classes'
# constructors, not by ``_init``: callers from C pass periods >= 1.

cimport cython
from libc.math cimport NAN, fabs, sqrt


# ----------------------------------------------------------------------------------------------- SMA

ctypedef struct SMAState:
    double* buf
    long long count
    double sum
    double value
    int period
    int idx
    bint ready

cdef int sma_init(SMAState* s, int period) except -1
cdef void sma_free(SMAState* s) noexcept


cdef inline void sma_clear(SMAState* s) noexcept nogil:
    cdef int i
    for i in range(s.period):
        s.buf[i] = 0.0
    s.idx = 0
    s.count = 0
    s.sum = 0.0
    s.value = NAN
    s.ready = False


cdef inline double sma_push(SMAState* s, double x) noexcept nogil:
    cdef double t
    cdef int idx = s.idx
    s.buf[idx] = x
    idx += 1
    if idx == s.period:
        idx = 0
    s.idx = idx
    s.count += 1
    t = s.sum + x
    if s.count >= s.period:
        s.value = t / s.period
        s.ready = True
        s.sum = t - s.buf[idx]
    else:
        s.sum = t
    return s.value


# ----------------------------------------------------------------------------------------------- EMA

ctypedef struct EMAState:
    double k
    double value
    double sum
    long long count
    int period
    bint ready


cdef inline void ema_clear(EMAState* s) noexcept nogil:
    s.count = 0
    s.sum = 0.0
    s.value = NAN
    s.ready = False


cdef inline void ema_init(EMAState* s, int period) noexcept nogil:
    s.period = period
    s.k = 2.0 / (period + 1)
    ema_clear(s)


cdef inline double ema_push(EMAState* s, double x) noexcept nogil:
    if s.ready:
        s.value = (x - s.value) * s.k + s.value
        return s.value
    s.count += 1
    s.sum += x
    if s.count == s.period:
        s.value = s.sum / s.period
        s.ready = True
    return s.value


# ----------------------------------------------------------------------------------------------- WMA

ctypedef struct WMAState:
    double* buf
    double divider
    long long count
    double sub
    double wsum
    double trailing
    double value
    int period
    int idx
    bint ready

cdef int wma_init(WMAState* s, int period) except -1
cdef void wma_free(WMAState* s) noexcept


cdef inline void wma_clear(WMAState* s) noexcept nogil:
    cdef int i
    for i in range(s.period):
        s.buf[i] = 0.0
    s.idx = 0
    s.count = 0
    s.sub = 0.0
    s.wsum = 0.0
    s.trailing = 0.0
    s.value = NAN
    s.ready = False


cdef inline double wma_push(WMAState* s, double x) noexcept nogil:
    cdef int idx = s.idx
    s.buf[idx] = x
    idx += 1
    if idx == s.period:
        idx = 0
    s.idx = idx
    s.count += 1
    if s.count < s.period:
        s.sub += x
        s.wsum += x * <double>s.count
        return s.value
    s.sub += x
    s.sub -= s.trailing
    s.wsum += x * <double>s.period
    s.trailing = s.buf[idx]
    s.value = s.wsum / s.divider
    s.ready = True
    s.wsum -= s.sub
    return s.value


# -------------------------------------------------------------------------------------------- StdDev

ctypedef struct StdDevState:
    double* buf
    long long count
    double anchor
    double s1
    double s2
    double value
    int period
    int idx
    bint ready

cdef int stddev_init(StdDevState* s, int period) except -1
cdef void stddev_free(StdDevState* s) noexcept


cdef inline void stddev_clear(StdDevState* s) noexcept nogil:
    cdef int i
    for i in range(s.period):
        s.buf[i] = 0.0
    s.idx = 0
    s.count = 0
    s.anchor = 0.0
    s.s1 = 0.0
    s.s2 = 0.0
    s.value = NAN
    s.ready = False


cdef inline double stddev_push(StdDevState* s, double x) noexcept nogil:
    cdef int n = s.period
    cdef double* buf = s.buf
    cdef int idx = s.idx
    cdef int i
    cdef double d, old, a, s1, s2, e, m1, m2, var
    if s.count == 0:
        s.anchor = x
    d = x - s.anchor
    if s.count >= n:
        old = buf[idx] - s.anchor
        s.s1 += d - old
        s.s2 += d * d - old * old
    else:
        s.s1 += d
        s.s2 += d * d
    buf[idx] = x
    idx += 1
    s.count += 1
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
        s.anchor = a
        s.s1 = s1
        s.s2 = s2
    s.idx = idx
    if s.count >= n:
        m1 = s.s1 / n
        m2 = s.s2 / n
        var = m2 - m1 * m1
        # 64 * DBL_EPSILON: below this relative variance the sums are rounding noise
        s.value = sqrt(var) if var > m2 * (64.0 * 2.220446049250313e-16) else 0.0
        s.ready = True
    return s.value


# ----------------------------------------------------------------------------------------------- RSI

ctypedef struct RSIState:
    long long count
    double prev
    double gain
    double loss
    double value
    int period
    bint ready


cdef inline double rsi_of(double gain, double loss) noexcept nogil:
    cdef double total = gain + loss
    return 100.0 * (gain / total) if total != 0.0 else 0.0


cdef inline void rsi_clear(RSIState* s) noexcept nogil:
    s.count = 0
    s.prev = 0.0
    s.gain = 0.0
    s.loss = 0.0
    s.value = NAN
    s.ready = False


cdef inline void rsi_init(RSIState* s, int period) noexcept nogil:
    s.period = period
    rsi_clear(s)


cdef inline double rsi_push(RSIState* s, double x) noexcept nogil:
    cdef double diff = x - s.prev
    cdef int n = s.period
    s.prev = x
    s.count += 1
    if s.ready:
        s.loss *= (n - 1)
        s.gain *= (n - 1)
        if diff < 0.0:
            s.loss -= diff
        else:
            s.gain += diff
        s.loss /= n
        s.gain /= n
        s.value = rsi_of(s.gain, s.loss)
        return s.value
    if s.count == 1:
        return s.value
    if diff < 0.0:
        s.loss -= diff
    else:
        s.gain += diff
    if s.count == n + 1:
        s.loss /= n
        s.gain /= n
        s.ready = True
        s.value = rsi_of(s.gain, s.loss)
    return s.value


# ----------------------------------------------------------------------------------------------- ATR

ctypedef struct ATRState:
    long long count
    double prev_close
    double sum
    double value
    int period
    bint ready


cdef inline void atr_clear(ATRState* s) noexcept nogil:
    s.count = 0
    s.prev_close = 0.0
    s.sum = 0.0
    s.value = NAN
    s.ready = False


cdef inline void atr_init(ATRState* s, int period) noexcept nogil:
    s.period = period
    atr_clear(s)


cdef inline double atr_push(ATRState* s, double high, double low, double close) noexcept nogil:
    cdef double pc = s.prev_close
    cdef double tr, v
    cdef int n = s.period
    s.prev_close = close
    s.count += 1
    if s.count == 1:
        return s.value
    tr = high - low
    v = fabs(low - pc)
    if v > tr:
        tr = v
    v = fabs(high - pc)
    if v > tr:
        tr = v
    if s.ready:
        s.value = (s.value * (n - 1) + tr) / n
        return s.value
    s.sum += tr
    if s.count == n + 1:
        s.value = s.sum / n
        s.ready = True
    return s.value


# ---------------------------------------------------------------------------------------------- MACD

ctypedef struct MACDState:
    double kf
    double ks
    double ksig
    double fast_ema
    double slow_ema
    double macd
    double signal
    double hist
    double value
    double* fast_buf
    long long count
    double slow_sum
    double sig_sum
    int fast
    int slow
    int signal_period
    int nsig
    bint ready

cdef int macd_init(MACDState* s, int fast, int slow, int signal) except -1
cdef void macd_free(MACDState* s) noexcept


cdef inline void macd_clear(MACDState* s) noexcept nogil:
    cdef int i
    for i in range(s.fast):
        s.fast_buf[i] = 0.0
    s.count = 0
    s.slow_sum = 0.0
    s.fast_ema = 0.0
    s.slow_ema = 0.0
    s.sig_sum = 0.0
    s.nsig = 0
    s.macd = NAN
    s.signal = NAN
    s.hist = NAN
    s.value = NAN
    s.ready = False


cdef inline double macd_push(MACDState* s, double x) noexcept nogil:
    cdef double m, sg, t
    cdef long long count
    cdef int start, i, nf = s.fast
    if s.ready:
        s.fast_ema = (x - s.fast_ema) * s.kf + s.fast_ema
        s.slow_ema = (x - s.slow_ema) * s.ks + s.slow_ema
        m = s.fast_ema - s.slow_ema
        sg = (m - s.signal) * s.ksig + s.signal
        s.macd = m
        s.signal = sg
        s.hist = m - sg
        s.value = m
        return m
    count = s.count
    s.count = count + 1
    if count < s.slow:
        s.fast_buf[count % nf] = x
        s.slow_sum += x
        if count < s.slow - 1:
            return NAN
        # index slow - 1: seed both EMAs; the fast one from the `fast` values ending here
        s.slow_ema = s.slow_sum / s.slow
        start = (count + 1) % nf
        t = s.fast_buf[start]
        for i in range(1, nf):
            t += s.fast_buf[(start + i) % nf]
        s.fast_ema = t / nf
    else:
        s.fast_ema = (x - s.fast_ema) * s.kf + s.fast_ema
        s.slow_ema = (x - s.slow_ema) * s.ks + s.slow_ema
    m = s.fast_ema - s.slow_ema
    s.sig_sum += m
    s.nsig += 1
    if s.nsig == s.signal_period:
        sg = s.sig_sum / s.signal_period
        s.macd = m
        s.signal = sg
        s.hist = m - sg
        s.value = m
        s.ready = True
        return m
    return NAN


# ----------------------------------------------------------------------------------------- Bollinger
# ``percent_b`` and ``bandwidth`` are derived on read (bollinger_percent_b / bollinger_bandwidth) from the
# last input and the stored bands, with the same operations as computing them in the step: the step
# (and so every batch loop) does not pay two divisions per bar for values it does not output.

ctypedef struct BollingerState:
    SMAState sma
    StdDevState sd
    double k
    double upper
    double middle
    double lower
    double last
    double value
    bint ready

cdef int bollinger_init(BollingerState* s, int period, double k) except -1
cdef void bollinger_free(BollingerState* s) noexcept


cdef inline void bollinger_clear(BollingerState* s) noexcept nogil:
    sma_clear(&s.sma)
    stddev_clear(&s.sd)
    s.upper = NAN
    s.middle = NAN
    s.lower = NAN
    s.last = NAN
    s.value = NAN
    s.ready = False


cdef inline double bollinger_push(BollingerState* s, double x) noexcept nogil:
    cdef double mid = sma_push(&s.sma, x)
    cdef double sd = stddev_push(&s.sd, x)
    cdef double dev
    if not s.sma.ready:
        return NAN
    dev = s.k * sd
    s.upper = mid + dev
    s.lower = mid - dev
    s.middle = mid
    s.last = x
    s.value = mid
    s.ready = True
    return mid


cdef inline double bollinger_percent_b(const BollingerState* s) noexcept nogil:
    cdef double width
    if not s.ready:
        return NAN
    width = s.upper - s.lower
    return (s.last - s.lower) / width if width != 0.0 else 0.5


cdef inline double bollinger_bandwidth(const BollingerState* s) noexcept nogil:
    if not s.ready:
        return NAN
    return (s.upper - s.lower) / s.middle if s.middle != 0.0 else NAN


# ---------------------------------------------------------------------------------------------- VWAP

ctypedef struct VWAPState:
    long long session_ms
    long long session
    double pv
    double vol
    double value
    bint has_session
    bint ready


cdef inline void vwap_clear(VWAPState* s) noexcept nogil:
    # a new session: the session tracking itself is kept
    s.pv = 0.0
    s.vol = 0.0
    s.value = NAN
    s.ready = False


cdef inline void vwap_init(VWAPState* s, long long session_ms) noexcept nogil:
    s.session_ms = session_ms
    s.has_session = False
    s.session = 0
    vwap_clear(s)


cdef inline double vwap_push(VWAPState* s, double price, double volume) noexcept nogil:
    s.pv += price * volume
    s.vol += volume
    if s.vol > 0.0:
        s.value = s.pv / s.vol
        s.ready = True
    return s.value


cdef inline double vwap_push_ts(VWAPState* s, double price, double volume, long long ts_ms) noexcept nogil:
    cdef long long session = ts_ms // s.session_ms
    if not s.has_session:
        s.has_session = True
        s.session = session
    elif session > s.session:
        s.session = session
        vwap_clear(s)
    return vwap_push(s, price, volume)


# ---------------------------------------------------------------------------------------- Supertrend

ctypedef struct SupertrendState:
    double k
    double rma_a
    double rma_b
    long long count
    double prev_close
    double tr_sum
    double atr
    double upper
    double lower
    double value
    int period
    int direction
    bint ready


cdef inline void supertrend_clear(SupertrendState* s) noexcept nogil:
    s.count = 0
    s.prev_close = 0.0
    s.tr_sum = 0.0
    s.atr = NAN
    s.upper = NAN
    s.lower = NAN
    s.direction = 0
    s.value = NAN
    s.ready = False


cdef inline void supertrend_init(SupertrendState* s, int period, double k) noexcept nogil:
    s.period = period
    s.k = k
    s.rma_a = 1.0 / period
    s.rma_b = 1.0 - s.rma_a
    supertrend_clear(s)


cdef inline double supertrend_push(SupertrendState* s, double high, double low, double close) noexcept nogil:
    cdef double pc = s.prev_close
    cdef double tr = high - low
    cdef double v, atr, src, up, lo, prev_up, prev_lo
    cdef int n = s.period
    cdef int direction
    s.prev_close = close
    if s.count > 0:
        v = fabs(high - pc)
        if v > tr:
            tr = v
        v = fabs(low - pc)
        if v > tr:
            tr = v
    s.count += 1
    if s.count < n:
        s.tr_sum += tr
        return NAN
    if s.count == n:
        s.tr_sum += tr
        atr = s.tr_sum / n
    else:
        atr = s.rma_a * tr + s.rma_b * s.atr
    s.atr = atr
    src = (high + low) / 2.0
    up = src + s.k * atr
    lo = src - s.k * atr
    if s.count == n:
        direction = -1
    else:
        prev_up = s.upper
        prev_lo = s.lower
        if not (lo > prev_lo or pc < prev_lo):
            lo = prev_lo
        if not (up < prev_up or pc > prev_up):
            up = prev_up
        if s.value == prev_up:
            direction = 1 if close > up else -1
        else:
            direction = -1 if close < lo else 1
    s.upper = up
    s.lower = lo
    s.direction = direction
    s.value = lo if direction == 1 else up
    s.ready = True
    return s.value


# ------------------------------------------------------------------------------------------ Donchian

cdef struct MonoDeque:
    double* val
    long long* idx
    int n
    int head
    int size


cdef inline double mono_push(MonoDeque* q, long long i, double x, bint is_max) noexcept nogil:
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


ctypedef struct DonchianState:
    MonoDeque max
    MonoDeque min
    long long count
    double upper
    double lower
    double middle
    double value
    int period
    bint ready

cdef int donchian_init(DonchianState* s, int period) except -1
cdef void donchian_free(DonchianState* s) noexcept


cdef inline void donchian_clear(DonchianState* s) noexcept nogil:
    s.max.head = 0
    s.max.size = 0
    s.min.head = 0
    s.min.size = 0
    s.count = 0
    s.upper = NAN
    s.lower = NAN
    s.middle = NAN
    s.value = NAN
    s.ready = False


cdef inline double donchian_push(DonchianState* s, double high, double low) noexcept nogil:
    cdef long long i = s.count
    cdef double up, lo
    s.count = i + 1
    up = mono_push(&s.max, i, high, True)
    lo = mono_push(&s.min, i, low, False)
    if s.count < s.period:
        return NAN
    s.upper = up
    s.lower = lo
    s.middle = (up + lo) / 2.0
    s.value = s.middle
    s.ready = True
    return s.middle


# ----------------------------------------------------------------------------------------------- OBV

ctypedef struct OBVState:
    double prev
    double value
    bint ready


cdef inline void obv_clear(OBVState* s) noexcept nogil:
    s.prev = 0.0
    s.value = NAN
    s.ready = False


cdef inline double obv_push(OBVState* s, double close, double volume) noexcept nogil:
    if not s.ready:
        s.value = volume
        s.ready = True
    elif close > s.prev:
        s.value += volume
    elif close < s.prev:
        s.value -= volume
    s.prev = close
    return s.value


# ----------------------------------------------------------------------------------------- WaveTrend

ctypedef struct WaveTrendState:
    SMAState sma
    double a1
    double b1
    double a2
    double b2
    long long count
    double esa
    double d
    double wt1_raw
    double wt1
    double wt2
    double value
    int channel
    int average
    int signal
    bint ready

cdef int wavetrend_init(WaveTrendState* s, int channel, int average, int signal) except -1
cdef void wavetrend_free(WaveTrendState* s) noexcept


cdef inline void wavetrend_clear(WaveTrendState* s) noexcept nogil:
    sma_clear(&s.sma)
    s.count = 0
    s.esa = 0.0
    s.d = 0.0
    s.wt1_raw = 0.0
    s.wt1 = NAN
    s.wt2 = NAN
    s.value = NAN
    s.ready = False


cdef inline double wavetrend_push(WaveTrendState* s, double x) noexcept nogil:
    cdef double esa, d, ci, wt1, wt2
    if s.count == 0:
        esa = x
        d = 0.0
    else:
        esa = s.a1 * x + s.b1 * s.esa
        d = s.a1 * fabs(x - esa) + s.b1 * s.d
    s.esa = esa
    s.d = d
    ci = (x - esa) / (0.015 * d) if d != 0.0 else 0.0
    wt1 = ci if s.count == 0 else s.a2 * ci + s.b2 * s.wt1_raw
    s.wt1_raw = wt1
    s.count += 1
    wt2 = sma_push(&s.sma, wt1)
    if s.sma.ready:
        s.wt1 = wt1
        s.wt2 = wt2
        s.value = wt1
        s.ready = True
    return s.value


# -------------------------------------------------------------------------------------- IndicatorSet

ctypedef struct IndicatorSetState:
    EMAState ema
    RSIState rsi
    ATRState atr
    MACDState macd
    BollingerState bb
    bint ready

cdef int indicator_set_init(IndicatorSetState* s, int ema, int rsi, int atr, int macd_fast, int macd_slow,
                            int macd_signal, int bb_period, double bb_k) except -1
cdef void indicator_set_free(IndicatorSetState* s) noexcept


cdef inline void indicator_set_clear(IndicatorSetState* s) noexcept nogil:
    ema_clear(&s.ema)
    rsi_clear(&s.rsi)
    atr_clear(&s.atr)
    macd_clear(&s.macd)
    bollinger_clear(&s.bb)
    s.ready = False


cdef inline bint indicator_set_push(IndicatorSetState* s, double high, double low, double close) noexcept nogil:
    ema_push(&s.ema, close)
    rsi_push(&s.rsi, close)
    atr_push(&s.atr, high, low, close)
    macd_push(&s.macd, close)
    bollinger_push(&s.bb, close)
    s.ready = s.ema.ready and s.rsi.ready and s.atr.ready and s.macd.ready and s.bb.ready
    return s.ready


# ------------------------------------------------------------------------------------------- classes
# Python-facing wrappers: each holds its state struct ``st`` (readable from C directly) and exposes the
# public values as read-only properties. ``push``/``clear`` are ``update``/``reset`` without the Python
# call.

@cython.final
cdef class SMA:
    cdef SMAState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class EMA:
    cdef EMAState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class WMA:
    cdef WMAState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class StdDev:
    cdef StdDevState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class RSI:
    cdef RSIState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class ATR:
    cdef ATRState st
    cdef double push(self, double high, double low, double close) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class MACD:
    cdef MACDState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class Bollinger:
    cdef BollingerState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class VWAP:
    cdef VWAPState st
    cdef double push(self, double price, double volume) noexcept nogil
    cdef double push_ts(self, double price, double volume, long long ts_ms) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class Supertrend:
    cdef SupertrendState st
    cdef double push(self, double high, double low, double close) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class Donchian:
    cdef DonchianState st
    cdef double push(self, double high, double low) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class OBV:
    cdef OBVState st
    cdef double push(self, double close, double volume) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class WaveTrend:
    cdef WaveTrendState st
    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class IndicatorSet:
    cdef IndicatorSetState st
    cdef bint push(self, double high, double low, double close) noexcept nogil
    cdef void clear(self) noexcept nogil
