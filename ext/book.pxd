"""Contract of the L2 order book kernel (``engine._ext.book``), for kernels that cimport it.

Prices are int64 ticks and sizes int64 lots. Inside the book both sides are stored as one sorted C
array of ``Level`` each, ascending by *key*, the touch at the END: the bid key is the price in ticks,
the ask key is the NEGATED price in ticks (so the lowest ask is the largest key).
"""

from libc.stdint cimport int64_t, uint64_t

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

# Fast path of ``parse_units`` for the common shape ``[0-9]+(\.[0-9]*)?`` or ``\.[0-9]+`` with at most 18
# digits (so no overflow is possible): scans from ``s`` (not past ``e``) to the first byte that is not a
# digit or (the first) dot, and returns a pointer to that byte with ``out`` set, exactly as
# ``parse_units`` would set it for the bytes scanned. Returns NULL ("not sure") for anything else --
# no digits, a second dot, too many digits, off grid... -- and the caller then runs ``parse_units`` (or
# its full scanner), which gives the verdict. So it never changes a result, only skips work.
cdef inline const unsigned char* scan_units(const unsigned char* s, const unsigned char* e, int scale,
                                            int64_t unit, int64_t* out) noexcept nogil:
    cdef const unsigned char* p = s
    cdef const unsigned char* f
    cdef uint64_t v = 0
    cdef unsigned int d
    cdef int frac = 0
    cdef Py_ssize_t nd
    while p < e:
        d = <unsigned int>p[0] - 48u
        if d > 9u:
            break
        v = v * 10u + d
        p += 1
    nd = p - s
    if nd + scale > 18:
        return NULL
    if p < e and p[0] == 46:
        p += 1
        f = p
        while p < e:
            d = <unsigned int>p[0] - 48u
            if d > 9u:
                break
            if frac < scale:
                v = v * 10u + d
                frac += 1
            elif d != 0u:
                return NULL
            p += 1
        if nd == 0 and p == f:
            return NULL
    elif nd == 0:
        return NULL
    while frac < scale:
        v *= 10u
        frac += 1
    if unit != 1:
        if v % <uint64_t>unit != 0u:
            return NULL
        v = v // <uint64_t>unit
    out[0] = <int64_t>v
    return p

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
    # the last tuples returned by best_bid_ticks / best_ask_ticks, and the level they describe
    cdef object _bid_top
    cdef int64_t _bid_top_key
    cdef int64_t _bid_top_qty
    cdef object _ask_top
    cdef int64_t _ask_top_key
    cdef int64_t _ask_top_qty
    cdef object _touch
    cdef int64_t _touch_b
    cdef int64_t _touch_bq
    cdef int64_t _touch_a
    cdef int64_t _touch_aq

    # Apply staged levels (prices in ticks, sizes in lots; size 0 deletes) atomically: on a crossed
    # result (ValueError) or MemoryError the book is exactly unchanged. snapshot=True replaces the book.
    cdef object c_touch(self)
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
