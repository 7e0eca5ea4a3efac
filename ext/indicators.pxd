# Contract of the streaming indicators kernel (ext/indicators.pyx); cimport as
# ``from engine._ext.indicators cimport EMA, RSI, ...``. Each class's ``push`` is its update without
# the Python call: a C call, usable without the GIL; the public fields are readable from C directly.

cimport cython


cdef struct MonoDeque:
    double* val
    long long* idx
    int n
    int head
    int size


@cython.final
cdef class SMA:
    cdef readonly int period
    cdef readonly double value
    cdef readonly bint ready
    cdef double* _buf
    cdef int _idx
    cdef long long _count
    cdef double _sum

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class EMA:
    cdef readonly int period
    cdef readonly double value
    cdef readonly bint ready
    cdef double _k
    cdef long long _count
    cdef double _sum

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class WMA:
    cdef readonly int period
    cdef readonly double value
    cdef readonly bint ready
    cdef double _divider
    cdef double* _buf
    cdef int _idx
    cdef long long _count
    cdef double _sub
    cdef double _wsum
    cdef double _trailing

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class StdDev:
    cdef readonly int period
    cdef readonly double value
    cdef readonly bint ready
    cdef double* _buf
    cdef int _idx
    cdef long long _count
    cdef double _anchor
    cdef double _s1
    cdef double _s2

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class RSI:
    cdef readonly int period
    cdef readonly double value
    cdef readonly bint ready
    cdef long long _count
    cdef double _prev
    cdef double _gain
    cdef double _loss

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class ATR:
    cdef readonly int period
    cdef readonly double value
    cdef readonly bint ready
    cdef long long _count
    cdef double _prev_close
    cdef double _sum

    cdef double push(self, double high, double low, double close) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class MACD:
    cdef readonly int fast
    cdef readonly int slow
    cdef readonly int signal_period
    cdef readonly double macd
    cdef readonly double signal
    cdef readonly double hist
    cdef readonly double value
    cdef readonly bint ready
    cdef double _kf
    cdef double _ks
    cdef double _ksig
    cdef double* _fast_buf
    cdef long long _count
    cdef double _slow_sum
    cdef double _fast_ema
    cdef double _slow_ema
    cdef double _sig_sum
    cdef int _nsig

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class Bollinger:
    cdef readonly int period
    cdef readonly double k
    cdef readonly double upper
    cdef readonly double middle
    cdef readonly double lower
    cdef readonly double percent_b
    cdef readonly double bandwidth
    cdef readonly double value
    cdef readonly bint ready
    cdef SMA _sma
    cdef StdDev _sd

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class VWAP:
    cdef readonly long long session_ms
    cdef readonly double value
    cdef readonly bint ready
    cdef bint _has_session
    cdef long long _session
    cdef double _pv
    cdef double _vol

    cdef double push(self, double price, double volume) noexcept nogil
    cdef double push_ts(self, double price, double volume, long long ts_ms) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class Supertrend:
    cdef readonly int period
    cdef readonly double k
    cdef readonly double atr
    cdef readonly double upper
    cdef readonly double lower
    cdef readonly int direction
    cdef readonly double value
    cdef readonly bint ready
    cdef double _rma_a
    cdef double _rma_b
    cdef long long _count
    cdef double _prev_close
    cdef double _tr_sum

    cdef double push(self, double high, double low, double close) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class Donchian:
    cdef readonly int period
    cdef readonly double upper
    cdef readonly double lower
    cdef readonly double middle
    cdef readonly double value
    cdef readonly bint ready
    cdef long long _count
    cdef MonoDeque _max
    cdef MonoDeque _min

    cdef double push(self, double high, double low) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class OBV:
    cdef readonly double value
    cdef readonly bint ready
    cdef double _prev

    cdef double push(self, double close, double volume) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class WaveTrend:
    cdef readonly int channel
    cdef readonly int average
    cdef readonly int signal
    cdef readonly double wt1
    cdef readonly double wt2
    cdef readonly double value
    cdef readonly bint ready
    cdef double _a1
    cdef double _b1
    cdef double _a2
    cdef double _b2
    cdef long long _count
    cdef double _esa
    cdef double _d
    cdef double _wt1
    cdef SMA _sma

    cdef double push(self, double x) noexcept nogil
    cdef void clear(self) noexcept nogil


@cython.final
cdef class IndicatorSet:
    cdef readonly double ema
    cdef readonly double rsi
    cdef readonly double atr
    cdef readonly double macd
    cdef readonly double macd_signal
    cdef readonly double macd_hist
    cdef readonly double bb_upper
    cdef readonly double bb_middle
    cdef readonly double bb_lower
    cdef readonly bint ready
    cdef EMA _ema
    cdef RSI _rsi
    cdef ATR _atr
    cdef MACD _macd
    cdef Bollinger _bb

    cdef bint push(self, double high, double low, double close) noexcept nogil
    cdef void clear(self) noexcept nogil
