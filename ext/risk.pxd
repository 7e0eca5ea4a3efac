# Contract of the pre-trade risk gate (ext/risk.pyx); cimport as ``from engine._ext.risk cimport RiskGate``.
#
# Everything is an int64: quantities in lots, prices in ticks, money in *quote units* (a power of ten
# of the quote asset chosen by the caller, e.g. 1e-8 USDT), times in epoch milliseconds. A symbol's
# ``notional_mult`` is the value of one lot at one tick in quote units (lot_size * tick_size / unit).
# No float and no Python object is touched by ``check``.
cimport cython
from libc.stdint cimport int64_t

# Result codes of ``RiskGate.check`` (0 approves); the Python names drop the ``RISK_`` prefix.
cdef enum:
    RISK_APPROVED = 0
    RISK_DENY_INVALID = 1
    RISK_DENY_UNKNOWN_SYMBOL = 2
    RISK_DENY_STOPPED = 3
    RISK_DENY_EMERGENCY = 4
    RISK_DENY_REDUCE_ONLY = 5
    RISK_DENY_PAUSED = 6
    RISK_DENY_BOOK_UNHEALTHY = 7
    RISK_DENY_COOLING_OFF = 8
    RISK_DENY_NO_REFERENCE = 9
    RISK_DENY_MIN_QTY = 10
    RISK_DENY_MAX_QTY = 11
    RISK_DENY_MAX_NOTIONAL = 12
    RISK_DENY_PRICE_BAND = 13
    RISK_DENY_RISK_REWARD = 14
    RISK_DENY_OPEN_ORDERS = 15
    RISK_DENY_POSITION_LIMIT = 16
    RISK_DENY_TOTAL_EXPOSURE = 17
    RISK_DENY_LEVERAGE = 18
    RISK_DENY_RATE_SECOND = 19
    RISK_DENY_RATE_MINUTE = 20

# Engine-state flags of the gate.
cdef enum:
    RISK_GATE_RUNNING = 0
    RISK_GATE_PAUSED = 1
    RISK_GATE_EMERGENCY = 2
    RISK_GATE_STOPPED = 3

# ``flags`` bits of ``check``.
cdef enum:
    RISK_FLAG_REDUCE_ONLY = 1
    RISK_FLAG_FLATTEN = 2       # an engine flattening order (implies reduce-only)

cdef struct SymbolRisk:
    int64_t mult              # quote units per lot per tick; 0 = symbol not configured
    int64_t max_qty           # lots (INT64_MAX = no limit)
    int64_t min_qty           # lots, for entries
    int64_t max_pos_notional  # quote units (INT64_MAX = no limit)
    int64_t max_open          # open orders (INT64_MAX = no limit)
    int64_t ref               # reference price (mid or mark) in ticks; 0 = unknown
    int64_t k                 # ref * mult, saturated: quote units per lot at the reference price
    int64_t pos               # signed position, lots
    int64_t pend_buy          # lots of open buy orders
    int64_t pend_sell         # lots of open sell orders
    int64_t open_count        # open orders
    int64_t exposure          # worst-case |position| * k, clamped to EXPOSURE_CAP
    bint healthy              # the book accepts entries


@cython.final
cdef class RiskGate:
    cdef SymbolRisk* _sym
    cdef readonly int max_symbols
    cdef readonly int state
    cdef readonly int64_t approved_qty
    cdef readonly int64_t equity
    cdef readonly int64_t total_exposure
    cdef readonly int64_t consecutive_losses
    cdef readonly int64_t cooling_until_ms
    # global limits (INT64_MAX = no limit unless noted)
    cdef int64_t _max_order_notional
    cdef int64_t _max_total
    cdef int64_t _max_leverage_milli   # 0 = no limit
    cdef int64_t _leverage_cap         # max_leverage_milli * equity / 1000, in quote units
    cdef int64_t _price_band_bps       # 0 = no band
    cdef int64_t _min_rr_milli         # 0 = no minimum
    cdef int64_t _cooling_losses       # 0 = no cooling-off
    cdef int64_t _cooling_ms
    cdef bint _reduce_to_limit
    # token buckets: tokens scaled by the window (ms), refilled by ``rate`` per ms, an order costs ``window``
    cdef int64_t _rate_sec
    cdef int64_t _tok_sec
    cdef int64_t _rate_min
    cdef int64_t _tok_min
    cdef int64_t _last_ms
    cdef bint _clock_set

    cdef SymbolRisk* _get(self, int sid) except NULL
    cdef void _update_leverage_cap(self) noexcept nogil
    cdef void _refresh(self, SymbolRisk* s) noexcept nogil
    cdef void _refill(self, int64_t now_ms) noexcept nogil
    cdef void _take_tokens(self) noexcept nogil
    cdef void _commit(self, SymbolRisk* s, int side, int64_t qty) noexcept nogil
    cdef int c_check(self, int sid, int side, int64_t qty, int64_t price, int64_t stop, int64_t target,
                     int flags, int64_t now_ms) noexcept nogil
    cpdef int check(self, int sid, int side, int64_t qty, int64_t price, int64_t stop, int64_t target,
                    int flags, int64_t now_ms) noexcept
