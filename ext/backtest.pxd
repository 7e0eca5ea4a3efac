# Contract of the backtester's replay loop kernel (ext/backtest.pyx); twin: engine._pure.backtest.
from libc.stdint cimport int8_t, int32_t, int64_t

# One decoded row: engine.backtest.sources.EVENT_DTYPE (packed, 30 bytes, numpy format
# ``T{=q:t:q:px:q:qty:i:sym:b:kind:b:end:}``).
cdef packed struct Row:
    int64_t t
    int64_t px
    int64_t qty
    int32_t sym
    int8_t kind
    int8_t end


cdef class ReplayLoop:
    cdef readonly list books
    cdef readonly object bars
    cdef readonly object handler
    cdef readonly bint want_trades
    cdef readonly bint want_book
    cdef readonly int64_t next_sample
    cdef readonly bint sample_due
    cdef Py_ssize_t _nsym
    cdef list _bars          # the bar builders (None when bars is None)
    cdef object _on_trade    # bound handler methods, looked up once
    cdef object _on_bars
    cdef object _on_book
    cdef object _on_sample
    cdef double* _tick_f
    cdef double* _lot_f
    cdef int64_t* _lo
    cdef int64_t* _hi
    cdef int64_t* _last_t    # per symbol: time and price (ticks) of the last trade of the last run()
    cdef int64_t* _last_px
    cdef bint* _traded
    cdef int64_t* _bpx       # staging of one depth message, bids then asks
    cdef int64_t* _bqty
    cdef int64_t* _apx
    cdef int64_t* _aqty
    cdef Py_ssize_t _bcap
    cdef Py_ssize_t _acap

    cdef int _grow(self, bint bid) except -1
