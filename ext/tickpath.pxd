# Contract of the fused tick-to-decision kernel (ext/tickpath.pyx); cimport as
# ``from engine._ext.tickpath cimport TickPath``. Twin: ``engine._pure.tickpath``.
cimport cython
from libc.stdint cimport int64_t

from engine._ext.booksync cimport BinanceBookSync
from engine._ext.book cimport OrderBook
from engine._ext.indicators cimport EMAState
from engine._ext.risk cimport RiskGate

# Result codes of ``TickPath.on_depth`` (Python names: ``TP_NONE``, ``TP_BUY``, ``TP_SELL``, ``TP_DENIED``).
cdef enum:
    TICKPATH_NONE = 0        # no decision on this message
    TICKPATH_BUY = 1         # a buy intent, approved by the risk gate
    TICKPATH_SELL = 2        # a sell intent, approved by the risk gate
    TICKPATH_DENIED = 3      # a decision the risk gate denied (``reason`` says why)


@cython.final
cdef class TickPath:
    cdef readonly BinanceBookSync sync
    cdef readonly OrderBook book
    cdef readonly RiskGate gate
    cdef EMAState _ema
    cdef readonly int sid
    cdef readonly int ema_period
    cdef readonly double threshold_ticks
    cdef readonly int64_t imbalance_milli
    cdef readonly int64_t qty_lots
    cdef public int64_t now_ms
    # the last decision
    cdef readonly int regime         # +1 long wanted, -1 short wanted, 0 none yet
    cdef readonly int side           # +1 buy, -1 sell (last intent or denial)
    cdef readonly int64_t qty        # lots approved (0 on a denial)
    cdef readonly int64_t price      # ticks
    cdef readonly int reason         # the risk gate's code of the last decision (0 approved)
    cdef readonly int sync_code      # the book sync's code of the last message
    cdef readonly int64_t messages
    cdef readonly int64_t decisions
    cdef readonly int64_t intents
    cdef readonly int64_t denials

    cdef int c_on_depth(self, object raw) except -1
    cdef int _slow(self, object raw) except -1
    cdef int _decide(self, int code) except -1
