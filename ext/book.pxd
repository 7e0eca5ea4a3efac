"""Contract of the L2 order book kernel (``engine._ext.book``), for kernels that cimport it.

Prices are int64 ticks and sizes int64 lots. Inside the book both sides are stored as one sorted C
array of ``Level`` each, ascending by *key*, the touch at the END: the bid key is the price in ticks,
the ask key is the NEGATED price in ticks (so the lowest ask is the largest key).
"""

from libc.stdint cimport int64_t

# Status codes of ``parse_units`` (0 is success).
cdef enum:
    PARSE_OK = 0
    PARSE_EMPTY = 1
    PARSE_NOT_NUMBER = 2
    PARSE_NEGATIVE = 3
    PARSE_EXPONENT = 4
    PARSE_OVERFLOW = 5
    PARSE_OFF_GRID = 6

cdef struct Level:
    int64_t key   # bids: price ticks; asks: -(price ticks)
    int64_t qty   # lots, > 0

cdef struct Side:
    Level* lv
    Py_ssize_t n
    Py_ssize_t cap

cdef struct Undo:
    int64_t key
    int64_t qty   # the quantity before the change; 0 = the level was absent
    int side      # 0 bids, 1 asks

# Parse an ASCII plain decimal (``s``, ``n`` bytes) into units of ``unit * 10**-scale``: a price into
# ticks (scale = decimals of the normalised tick, unit = its mantissa), a size into lots. Exact integer
# arithmetic; never raises: returns a PARSE_* status and writes ``out`` only on PARSE_OK.
cdef int parse_units(const char* s, Py_ssize_t n, int scale, int64_t unit, int64_t* out) noexcept nogil

cdef class OrderBook:
    cdef Side _bid
    cdef Side _ask
    cdef Undo* _undo
    cdef Py_ssize_t _undo_cap
    # staging for the Python-level apply_update / apply_snapshot
    cdef int64_t* _st_bpx
    cdef int64_t* _st_bqty
    cdef int64_t* _st_apx
    cdef int64_t* _st_aqty
    cdef Py_ssize_t _st_bcap
    cdef Py_ssize_t _st_acap
    cdef readonly int px_scale
    cdef readonly int64_t px_unit
    cdef readonly int qty_scale
    cdef readonly int64_t qty_unit
    cdef object _tick
    cdef object _lot
    cdef double _tick_f

    # Apply staged levels (prices in ticks, sizes in lots; size 0 deletes) atomically: on a crossed
    # result (ValueError) or MemoryError the book is exactly unchanged. snapshot=True replaces the book.
    cdef int apply_staged(self, int64_t* bid_px, int64_t* bid_qty, Py_ssize_t nb,
                          int64_t* ask_px, int64_t* ask_qty, Py_ssize_t na, bint snapshot) except -1
    # Best levels in ticks/lots; return False (and leave px/qty alone) when that side is empty.
    cdef bint c_best_bid(self, int64_t* px, int64_t* qty) noexcept
    cdef bint c_best_ask(self, int64_t* px, int64_t* qty) noexcept
    # The ValueError for a failed parse_units of ``value`` (the Python object) in ``field``.
    cdef object parse_error(self, int status, str field, object value, bint is_price)
    # Parse one side's Python levels into this book's staging arrays (_st_bpx/_st_bqty for bid=True,
    # else _st_apx/_st_aqty); returns the count; raises ValueError naming ``name``[i].price/size.
    cdef int _stage(self, object levels, str name, bint bid) except -1
    cdef Side* _side(self, str side) except NULL
