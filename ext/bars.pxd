# Contract of the bar builder kernel (ext/bars.pyx); cimport as ``from engine._ext.bars cimport BarBuilder``.
from libc.stdint cimport int64_t


cdef class Bar:
    cdef readonly int64_t open_time_ms
    cdef readonly int64_t close_time_ms
    cdef readonly double open
    cdef readonly double high
    cdef readonly double low
    cdef readonly double close
    cdef readonly double volume
    cdef readonly int64_t trades
    cdef readonly double vwap
    cdef readonly double quote_volume

    cdef tuple _key(self)


cdef class BarBuilder:
    cdef readonly int64_t interval_ms
    cdef readonly int64_t count
    cdef readonly int64_t rejected_out_of_order
    cdef readonly int64_t rejected_invalid
    cdef readonly int64_t skipped_gaps
    cdef int64_t _max_fill
    cdef bint _has_bar
    cdef bint _has_prev
    cdef double _prev_close
    cdef int64_t _next_start
    cdef int64_t _start
    cdef double _open
    cdef double _high
    cdef double _low
    cdef double _close
    cdef double _volume
    cdef double _quote
    cdef int64_t _trades

    cdef Bar _make_bar(self)
    cdef int _emit_current(self, list out) except -1
    cpdef list update(self, int64_t ts_ms, double price, double size)
