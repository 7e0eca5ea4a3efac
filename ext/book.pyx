# cython: boundscheck=False, wraparound=False, cdivision=True
"""L2 order book on integer ticks and lots (compiled kernel); twin: ``engine._pure.book``.

Rules (the twin follows them exactly):

- ``OrderBook(tick_size=, lot_size=)`` take decimal strings or ``Decimal``. Prices are held as int64
  ticks, sizes as int64 lots.
- Levels are sequences (list/tuple) of ``[price, size]`` with ``str`` or ``bytes`` fields, as a JSON
  decoder gives them. A field is a plain decimal (``[0-9]*`` with at most one ``.``, at least one
  digit), parsed exactly, never through float or Decimal. Empty, negative, exponent notation, junk, a
  value overflowing int64 units, or a value off the tick/lot grid raise ``ValueError`` naming the field.
- Sizes are absolute: size 0 deletes the level (deleting an absent price is ignored).
- Every message is atomic: on any error the book is exactly unchanged. A result with best bid >= best
  ask is rejected (``ValueError``), for updates and snapshots alike.
- ``fill_price``'s average is the exact quotient rounded half-even to 8 decimal places beyond the tick
  (quantum ``tick_exponent - 8``); ``worst`` is the last level touched.
- ``microprice`` and ``imbalance`` are floats (documented): the same double operations in both twins.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.list cimport PyList_CheckExact, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport INT64_MAX, int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

from decimal import Decimal, InvalidOperation

__all__ = ["OrderBook"]


cdef extern from "Python.h":
    ctypedef struct PyObject
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size)
    void PyErr_Clear()
    bint PyUnicode_IS_COMPACT_ASCII(PyObject* o) nogil
    bint PyUnicode_CheckExact_p "PyUnicode_CheckExact"(PyObject* o) nogil
    bint PyList_CheckExact_p "PyList_CheckExact"(PyObject* o) nogil
    void* PyUnicode_DATA(PyObject* o) nogil
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject* o) nogil
    PyObject* PyList_GET_ITEM_p "PyList_GET_ITEM"(PyObject* o, Py_ssize_t i) nogil
    Py_ssize_t PyList_GET_SIZE_p "PyList_GET_SIZE"(PyObject* o) nogil


cdef int parse_units(const char* s, Py_ssize_t n, int scale, int64_t unit, int64_t* out) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t v = 0
    cdef int frac = -1          # -1: no dot yet; else fractional digits taken into v
    cdef bint digits = False
    cdef bint overflow = False
    cdef bint offgrid = False
    cdef unsigned char c
    cdef int d
    if n == 0:
        return PARSE_EMPTY
    if s[0] == b'-':
        return PARSE_NEGATIVE
    for i in range(n):
        c = <unsigned char>s[i]
        d = <int>c - 48
        if 0 <= d <= 9:
            digits = True
            if frac < scale:
                if v < 922337203685477579LL:  # (INT64_MAX - 9) // 10: no overflow possible
                    v = v * 10 + d
                elif v > (INT64_MAX - d) // 10:
                    overflow = True
                else:
                    v = v * 10 + d
                if frac >= 0:
                    frac += 1
            elif d != 0:
                offgrid = True
        elif c == b'.':
            if frac >= 0:
                return PARSE_NOT_NUMBER
            frac = 0
        elif c == b'e' or c == b'E':
            return PARSE_EXPONENT
        else:
            return PARSE_NOT_NUMBER
    if not digits:
        return PARSE_NOT_NUMBER
    if overflow:
        return PARSE_OVERFLOW
    if frac < 0:
        frac = 0
    while frac < scale:
        if v > INT64_MAX // 10:
            return PARSE_OVERFLOW
        v *= 10
        frac += 1
    if offgrid:
        return PARSE_OFF_GRID
    if unit != 1:
        if v % unit != 0:
            return PARSE_OFF_GRID
        v = v // unit
    out[0] = v
    return PARSE_OK


cdef inline int _text(object o, const char** s, Py_ssize_t* n) noexcept:
    """Point s/n at the UTF-8 of a str or the bytes of a bytes; 1 if o is neither, 2 if not encodable."""
    if PyUnicode_Check(o):
        s[0] = PyUnicode_AsUTF8AndSize(o, n)
        if s[0] == NULL:
            PyErr_Clear()
            return 2
        return 0
    if PyBytes_Check(o):
        s[0] = PyBytes_AS_STRING(o)
        n[0] = PyBytes_GET_SIZE(o)
        return 0
    return 1


def _grid(value: object, name: str) -> tuple:
    """(Decimal as given, scale, unit) of a tick or lot size; the same rule as the twin's."""
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        try:
            dec = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} {value!r} is not a decimal number") from None
    else:
        raise ValueError(f"{name} {value!r} must be a decimal string or Decimal")
    if not dec.is_finite() or dec <= 0:
        raise ValueError(f"{name} {value!r} must be a finite decimal > 0")
    sign, digits, exp = dec.normalize().as_tuple()
    mant = int("".join(map(str, digits)))
    if exp >= 0:
        scale, unit = 0, mant * 10 ** exp
    else:
        scale, unit = -exp, mant
    if scale > 18 or unit > INT64_MAX:
        raise ValueError(f"{name} {value!r} is out of range")
    return dec, scale, unit


cdef inline Py_ssize_t _lower_bound(const Level* lv, Py_ssize_t n, int64_t key) noexcept nogil:
    """First index whose key >= ``key``; galloping from the end (the touch), where most updates land."""
    cdef Py_ssize_t lo, hi, mid, step = 1
    if n == 0 or lv[n - 1].key < key:
        return n
    # lv[n - 1].key >= key. Most updates land within a few levels of the touch: among the last 8 keys
    # (ascending), the count of those >= key is the distance of the answer from the end -- counted
    # without branches, so no misprediction per level
    cdef int c = 0, j
    if n >= 8:
        for j in range(1, 9):
            c += lv[n - j].key >= key
        if c < 8:
            return n - c
        hi = n - 8
    else:
        hi = n - 1
        while hi > 0:
            if lv[hi - 1].key < key:
                return hi
            hi -= 1
        return 0
    # lv[hi].key >= key: find lo with lv[lo].key < key (or lo = -1), hi with lv[hi].key >= key
    while True:
        lo = hi - step
        if lo < 0:
            lo = -1
            break
        if lv[lo].key < key:
            break
        hi = lo
        step <<= 1
    # invariant: lv[lo].key < key (or lo == -1), lv[hi].key >= key
    while hi - lo > 1:
        mid = lo + ((hi - lo) >> 1)
        if lv[mid].key < key:
            lo = mid
        else:
            hi = mid
    return hi


cdef int _reserve(Side* side, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap
    cdef Level* lv
    if need <= side.cap:
        return 0
    cap = side.cap * 2 if side.cap else 64
    while cap < need:
        cap *= 2
    lv = <Level*>realloc(side.lv, cap * sizeof(Level))
    if lv == NULL:
        raise MemoryError()
    side.lv = lv
    side.cap = cap
    return 0


cdef inline int64_t _set(Side* side, int64_t key, int64_t qty) noexcept nogil:
    """Set one level (qty 0 deletes); capacity must already allow an insert. Returns the old qty."""
    cdef Level* lv = side.lv
    cdef Py_ssize_t n = side.n
    cdef Py_ssize_t i = _lower_bound(lv, n, key)
    cdef int64_t old
    if i < n and lv[i].key == key:
        old = lv[i].qty
        if qty == 0:
            if i + 1 < n:
                memmove(&lv[i], &lv[i + 1], (n - i - 1) * sizeof(Level))
            side.n = n - 1
        else:
            lv[i].qty = qty
        return old
    if qty != 0:
        if i < n:
            memmove(&lv[i + 1], &lv[i], (n - i) * sizeof(Level))
        lv[i].key = key
        lv[i].qty = qty
        side.n = n + 1
    return 0


cdef inline bint _crossed(const Side* bid, const Side* ask) noexcept nogil:
    # best bid px = bid.lv[n-1].key; best ask px = -ask.lv[n-1].key
    return bid.n > 0 and ask.n > 0 and bid.lv[bid.n - 1].key >= -ask.lv[ask.n - 1].key


cdef int _fill_side(Side* side, int64_t* px, int64_t* qty, Py_ssize_t n, int64_t sign) except -1:
    """Build a fresh side from snapshot levels (side must be empty with capacity >= n)."""
    cdef Py_ssize_t i, m = 0
    cdef bint ordered = True
    cdef int64_t prev = 0
    # fast path: the wire order (touch first) gives strictly descending keys
    for i in range(n):
        if i > 0 and sign * px[i] >= prev:
            ordered = False
            break
        prev = sign * px[i]
    if ordered:
        for i in range(n - 1, -1, -1):
            if qty[i] != 0:
                side.lv[m].key = sign * px[i]
                side.lv[m].qty = qty[i]
                m += 1
        side.n = m
    else:
        for i in range(n):
            _set(side, sign * px[i], qty[i])
    return 0


cdef class OrderBook:
    """An L2 book of one symbol; see the module docstring for the rules."""

    def __cinit__(self, *args: object, **kwargs: object) -> None:
        self._bid.lv = NULL
        self._bid.n = 0
        self._bid.cap = 0
        self._ask.lv = NULL
        self._ask.n = 0
        self._ask.cap = 0
        self._undo = NULL
        self._undo_cap = 0
        self._st_bpx = self._st_bqty = self._st_apx = self._st_aqty = NULL
        self._st_bcap = self._st_acap = 0

    def __init__(self, tick_size: object = "0.10", lot_size: object = "0.001") -> None:
        self._tick, self.px_scale, self.px_unit = _grid(tick_size, "tick_size")
        self._lot, self.qty_scale, self.qty_unit = _grid(lot_size, "lot_size")
        self._tick_f = float(self._tick)
        _reserve(&self._bid, 64)
        _reserve(&self._ask, 64)

    def __dealloc__(self) -> None:
        free(self._bid.lv)
        free(self._ask.lv)
        free(self._undo)
        free(self._st_bpx)
        free(self._st_bqty)
        free(self._st_apx)
        free(self._st_aqty)

    # ---------------------------------------------------------------- C-level API (book.pxd)

    cdef bint c_best_bid(self, int64_t* px, int64_t* qty) noexcept:
        if self._bid.n == 0:
            return False
        px[0] = self._bid.lv[self._bid.n - 1].key
        qty[0] = self._bid.lv[self._bid.n - 1].qty
        return True

    cdef bint c_best_ask(self, int64_t* px, int64_t* qty) noexcept:
        if self._ask.n == 0:
            return False
        px[0] = -self._ask.lv[self._ask.n - 1].key
        qty[0] = self._ask.lv[self._ask.n - 1].qty
        return True

    cdef object parse_error(self, int status, str field, object value, bint is_price):
        if status == PARSE_EMPTY:
            why = "is empty"
        elif status == PARSE_NEGATIVE:
            why = "is negative"
        elif status == PARSE_EXPONENT:
            why = "uses exponent notation"
        elif status == PARSE_OVERFLOW:
            why = f"overflows int64 {'ticks' if is_price else 'lots'}"
        elif status == PARSE_OFF_GRID:
            why = f"is not a multiple of tick {self._tick}" if is_price else f"is not a multiple of lot {self._lot}"
        else:
            why = "is not a plain decimal number"
        return ValueError(f"{field} {value!r} {why}")

    cdef int apply_staged(self, int64_t* bid_px, int64_t* bid_qty, Py_ssize_t nb,
                          int64_t* ask_px, int64_t* ask_qty, Py_ssize_t na, bint snapshot) except -1:
        cdef Side nbid, nask
        cdef Py_ssize_t i, k = 0
        cdef Undo* u
        cdef int64_t old
        if snapshot:
            nbid.lv = NULL
            nbid.n = nbid.cap = 0
            nask.lv = NULL
            nask.n = nask.cap = 0
            try:
                _reserve(&nbid, nb if nb > 64 else 64)
                _reserve(&nask, na if na > 64 else 64)
                _fill_side(&nbid, bid_px, bid_qty, nb, 1)
                _fill_side(&nask, ask_px, ask_qty, na, -1)
                if _crossed(&nbid, &nask):
                    raise ValueError(
                        f"snapshot is crossed: best bid {self._tick * nbid.lv[nbid.n - 1].key} >= "
                        f"best ask {self._tick * -nask.lv[nask.n - 1].key}"
                    )
            except BaseException:
                free(nbid.lv)
                free(nask.lv)
                raise
            free(self._bid.lv)
            free(self._ask.lv)
            self._bid = nbid
            self._ask = nask
            return 0
        # update: make room first (so nothing below can fail), then apply with an undo log
        _reserve(&self._bid, self._bid.n + nb)
        _reserve(&self._ask, self._ask.n + na)
        if nb + na > self._undo_cap:
            u = <Undo*>realloc(self._undo, (nb + na) * sizeof(Undo))
            if u == NULL:
                raise MemoryError()
            self._undo = u
            self._undo_cap = nb + na
        u = self._undo
        for i in range(nb):
            old = _set(&self._bid, bid_px[i], bid_qty[i])
            if old != bid_qty[i]:
                u[k].key = bid_px[i]
                u[k].qty = old
                u[k].side = 0
                k += 1
        for i in range(na):
            old = _set(&self._ask, -ask_px[i], ask_qty[i])
            if old != ask_qty[i]:
                u[k].key = -ask_px[i]
                u[k].qty = old
                u[k].side = 1
                k += 1
        if _crossed(&self._bid, &self._ask):
            msg = (f"update would cross the book: best bid {self._tick * self._bid.lv[self._bid.n - 1].key} >= "
                   f"best ask {self._tick * -self._ask.lv[self._ask.n - 1].key}")
            while k > 0:
                k -= 1
                _set(&self._ask if u[k].side else &self._bid, u[k].key, u[k].qty)
            raise ValueError(msg)
        return 0

    cdef int _stage(self, object levels, str name, bint bid) except -1:
        """Parse one side's levels into the staging arrays; returns the count. Raises on bad input."""
        cdef Py_ssize_t n, i, cap
        cdef object seq, level, p, q
        cdef const char* s
        cdef Py_ssize_t ln
        cdef int st
        cdef int64_t* px
        cdef int64_t* qty
        if PyList_CheckExact(levels) or PyTuple_CheckExact(levels):
            seq = levels
        elif isinstance(levels, (list, tuple)):
            seq = list(levels)
        else:
            raise ValueError(f"{name} {type(levels).__name__} is not a list of [price, size] levels")
        n = PyList_GET_SIZE(seq) if PyList_CheckExact(seq) else PyTuple_GET_SIZE(seq)
        cap = self._st_bcap if bid else self._st_acap
        if n > cap:
            cap = n if n > 64 else 64
            if bid:
                px = <int64_t*>realloc(self._st_bpx, cap * sizeof(int64_t))
                if px != NULL:
                    self._st_bpx = px
                qty = <int64_t*>realloc(self._st_bqty, cap * sizeof(int64_t))
                if qty != NULL:
                    self._st_bqty = qty
                if px == NULL or qty == NULL:
                    raise MemoryError()
                self._st_bcap = cap
            else:
                px = <int64_t*>realloc(self._st_apx, cap * sizeof(int64_t))
                if px != NULL:
                    self._st_apx = px
                qty = <int64_t*>realloc(self._st_aqty, cap * sizeof(int64_t))
                if qty != NULL:
                    self._st_aqty = qty
                if px == NULL or qty == NULL:
                    raise MemoryError()
                self._st_acap = cap
        if bid:
            px = self._st_bpx
            qty = self._st_bqty
        else:
            px = self._st_apx
            qty = self._st_aqty
        cdef PyObject* lp
        cdef PyObject* pp
        cdef PyObject* qp
        cdef const unsigned char* us
        cdef const unsigned char* ue
        cdef int ps = self.px_scale
        cdef int qs = self.qty_scale
        cdef int64_t pu = self.px_unit
        cdef int64_t qu = self.qty_unit
        i = 0
        if PyList_CheckExact(seq):
            # fast path: exact lists of [str, str] pairs of compact ASCII plain decimals (borrowed
            # references, no UTF-8 cache); anything else drops to the general loop below at that level
            while i < n:
                lp = PyList_GET_ITEM_p(<PyObject*>seq, i)
                if not PyList_CheckExact_p(lp) or PyList_GET_SIZE_p(lp) != 2:
                    break
                pp = PyList_GET_ITEM_p(lp, 0)
                qp = PyList_GET_ITEM_p(lp, 1)
                if not (PyUnicode_CheckExact_p(pp) and PyUnicode_IS_COMPACT_ASCII(pp)
                        and PyUnicode_CheckExact_p(qp) and PyUnicode_IS_COMPACT_ASCII(qp)):
                    break
                us = <const unsigned char*>PyUnicode_DATA(pp)
                ue = us + PyUnicode_GET_LENGTH(pp)
                if scan_units(us, ue, ps, pu, &px[i]) != ue:
                    break
                us = <const unsigned char*>PyUnicode_DATA(qp)
                ue = us + PyUnicode_GET_LENGTH(qp)
                if scan_units(us, ue, qs, qu, &qty[i]) != ue:
                    break
                i += 1
        while i < n:
            if PyList_CheckExact(seq):
                level = <object>PyList_GET_ITEM(seq, i)
            else:
                level = <object>PyTuple_GET_ITEM(seq, i)
            if PyList_CheckExact(level) and PyList_GET_SIZE(level) == 2:
                p = <object>PyList_GET_ITEM(level, 0)
                q = <object>PyList_GET_ITEM(level, 1)
            elif PyTuple_CheckExact(level) and PyTuple_GET_SIZE(level) == 2:
                p = <object>PyTuple_GET_ITEM(level, 0)
                q = <object>PyTuple_GET_ITEM(level, 1)
            elif isinstance(level, (list, tuple)) and len(level) == 2:
                p = level[0]
                q = level[1]
            else:
                raise ValueError(f"{name}[{i}] {level!r} is not a [price, size] pair")
            st = _text(p, &s, &ln)
            if st == 1:
                raise ValueError(f"{name}[{i}].price {p!r} is not a string")
            if st == 0:
                st = parse_units(s, ln, self.px_scale, self.px_unit, &px[i])
            else:
                st = PARSE_NOT_NUMBER
            if st != PARSE_OK:
                raise self.parse_error(st, f"{name}[{i}].price", p, True)
            st = _text(q, &s, &ln)
            if st == 1:
                raise ValueError(f"{name}[{i}].size {q!r} is not a string")
            if st == 0:
                st = parse_units(s, ln, self.qty_scale, self.qty_unit, &qty[i])
            else:
                st = PARSE_NOT_NUMBER
            if st != PARSE_OK:
                raise self.parse_error(st, f"{name}[{i}].size", q, False)
            i += 1
        return <int>n

    # ---------------------------------------------------------------- Python API

    def apply_snapshot(self, bids: object, asks: object) -> None:
        """Replace the whole book (atomic; a crossed snapshot is rejected)."""
        cdef Py_ssize_t nb = self._stage(bids, "bids", True)
        cdef Py_ssize_t na = self._stage(asks, "asks", False)
        self.apply_staged(self._st_bpx, self._st_bqty, nb, self._st_apx, self._st_aqty, na, True)

    def apply_update(self, bids: object, asks: object) -> None:
        """Apply absolute levels (size 0 deletes); atomic: all or nothing."""
        cdef Py_ssize_t nb = self._stage(bids, "bids", True)
        cdef Py_ssize_t na = self._stage(asks, "asks", False)
        self.apply_staged(self._st_bpx, self._st_bqty, nb, self._st_apx, self._st_aqty, na, False)

    def clear(self) -> None:
        self._bid.n = 0
        self._ask.n = 0

    @property
    def tick_size(self) -> Decimal:
        return self._tick

    @property
    def lot_size(self) -> Decimal:
        return self._lot

    @property
    def bid_count(self) -> int:
        return self._bid.n

    @property
    def ask_count(self) -> int:
        return self._ask.n

    def price_to_ticks(self, price: object) -> int:
        """Exact ticks of a price string (ValueError if not a plain decimal on the tick grid)."""
        cdef const char* s
        cdef Py_ssize_t ln
        cdef int64_t v = 0
        cdef int st = _text(price, &s, &ln)
        if st == 1:
            raise ValueError(f"price {price!r} is not a string")
        if st == 0:
            st = parse_units(s, ln, self.px_scale, self.px_unit, &v)
        else:
            st = PARSE_NOT_NUMBER
        if st != PARSE_OK:
            raise self.parse_error(st, "price", price, True)
        return v

    def ticks_to_price(self, ticks: int) -> Decimal:
        return Decimal(ticks) * self._tick

    def best_bid(self) -> tuple | None:
        if self._bid.n == 0:
            return None
        cdef Level* lv = &self._bid.lv[self._bid.n - 1]
        return (Decimal(lv.key) * self._tick, Decimal(lv.qty) * self._lot)

    def best_ask(self) -> tuple | None:
        if self._ask.n == 0:
            return None
        cdef Level* lv = &self._ask.lv[self._ask.n - 1]
        return (Decimal(-lv.key) * self._tick, Decimal(lv.qty) * self._lot)

    def best_bid_ticks(self) -> tuple | None:
        if self._bid.n == 0:
            return None
        cdef Level* lv = &self._bid.lv[self._bid.n - 1]
        # the touch changes less often than it is read: reuse the last (immutable) tuple while it holds
        if self._bid_top is None or lv.key != self._bid_top_key or lv.qty != self._bid_top_qty:
            self._bid_top = (lv.key, lv.qty)
            self._bid_top_key = lv.key
            self._bid_top_qty = lv.qty
        return self._bid_top

    def best_ask_ticks(self) -> tuple | None:
        if self._ask.n == 0:
            return None
        cdef Level* lv = &self._ask.lv[self._ask.n - 1]
        # the touch changes less often than it is read: reuse the last (immutable) tuple while it holds
        if self._ask_top is None or lv.key != self._ask_top_key or lv.qty != self._ask_top_qty:
            self._ask_top = (-lv.key, lv.qty)
            self._ask_top_key = lv.key
            self._ask_top_qty = lv.qty
        return self._ask_top

    def touch_ticks(self) -> tuple:
        """Both sides of the touch in one read: ``(bid_ticks, bid_lots, ask_ticks, ask_lots)``.

        An empty side reads as ``(0, 0)``. The hot path's one call per message for the top of book
        (the same tuple object comes back while the touch is unchanged)."""
        return self.c_touch()

    cdef object c_touch(self):
        cdef int64_t b = 0, bq = 0, a = 0, aq = 0
        if self._bid.n:
            b = self._bid.lv[self._bid.n - 1].key
            bq = self._bid.lv[self._bid.n - 1].qty
        if self._ask.n:
            a = -self._ask.lv[self._ask.n - 1].key
            aq = self._ask.lv[self._ask.n - 1].qty
        if self._touch is None or b != self._touch_b or bq != self._touch_bq or a != self._touch_a or aq != self._touch_aq:
            self._touch = (b, bq, a, aq)
            self._touch_b = b
            self._touch_bq = bq
            self._touch_a = a
            self._touch_aq = aq
        return self._touch

    def mid(self) -> Decimal | None:
        if self._bid.n == 0 or self._ask.n == 0:
            return None
        cdef int64_t b = self._bid.lv[self._bid.n - 1].key
        cdef int64_t a = -self._ask.lv[self._ask.n - 1].key
        return Decimal(int(b) + int(a)) * self._tick / 2

    def spread_ticks(self) -> int | None:
        if self._bid.n == 0 or self._ask.n == 0:
            return None
        return -self._ask.lv[self._ask.n - 1].key - self._bid.lv[self._bid.n - 1].key

    def microprice(self) -> float | None:
        """(bid * ask_size + ask * bid_size) / (bid_size + ask_size), as a float in price units."""
        if self._bid.n == 0 or self._ask.n == 0:
            return None
        cdef double b = <double>self._bid.lv[self._bid.n - 1].key
        cdef double bq = <double>self._bid.lv[self._bid.n - 1].qty
        cdef double a = <double>(-self._ask.lv[self._ask.n - 1].key)
        cdef double aq = <double>self._ask.lv[self._ask.n - 1].qty
        return (b * aq + a * bq) / (bq + aq) * self._tick_f

    cdef Side* _side(self, str side) except NULL:
        if side == "bid":
            return &self._bid
        if side == "ask":
            return &self._ask
        raise ValueError(f"side {side!r} must be 'bid' or 'ask'")

    def levels_ticks(self, side: str, n: int) -> list:
        """Up to n levels of one side from the touch outwards, as (ticks, lots)."""
        cdef Side* sd = self._side(side)
        cdef int64_t sign = 1 if sd == &self._bid else -1
        cdef Py_ssize_t i, m
        if n < 0:
            raise ValueError(f"n {n!r} must be >= 0")
        m = min(<Py_ssize_t>n, sd.n)
        return [(sign * sd.lv[sd.n - 1 - i].key, sd.lv[sd.n - 1 - i].qty) for i in range(m)]

    def levels(self, side: str, n: int) -> list:
        """Up to n levels of one side from the touch outwards, as (Decimal price, Decimal size)."""
        tick = self._tick
        lot = self._lot
        return [(Decimal(p) * tick, Decimal(q) * lot) for p, q in self.levels_ticks(side, n)]

    def depth_within(self, side: str, n_ticks: int) -> Decimal:
        """Total size of the levels within n_ticks of that side's touch (inclusive)."""
        cdef Side* sd = self._side(side)
        cdef Py_ssize_t i
        cdef object total = 0
        cdef int64_t limit
        if n_ticks < 0:
            raise ValueError(f"n_ticks {n_ticks!r} must be >= 0")
        if sd.n:
            # keys ascend towards the touch on both sides; within n ticks <=> key >= touch key - n
            limit = sd.lv[sd.n - 1].key - n_ticks
            i = sd.n - 1
            while i >= 0 and sd.lv[i].key >= limit:
                total += sd.lv[i].qty
                i -= 1
        return Decimal(total) * self._lot

    def imbalance(self, n: int) -> float | None:
        """(bid size - ask size) / (bid size + ask size) over the top n levels of each side."""
        cdef Py_ssize_t i
        cdef object bv = 0
        cdef object av = 0
        if n < 0:
            raise ValueError(f"n {n!r} must be >= 0")
        for i in range(min(<Py_ssize_t>n, self._bid.n)):
            bv += self._bid.lv[self._bid.n - 1 - i].qty
        for i in range(min(<Py_ssize_t>n, self._ask.n)):
            av += self._ask.lv[self._ask.n - 1 - i].qty
        if bv + av == 0:
            return None
        return float(bv - av) / float(bv + av)

    def fill_price(self, side: str, size: object) -> tuple | None:
        """(average, worst) price for taking ``size`` from ``side``; None if the book can't fill it."""
        cdef Side* sd = self._side(side)
        cdef int64_t sign = 1 if sd == &self._bid else -1
        cdef Py_ssize_t i
        cdef int64_t want = 0
        cdef const char* s
        cdef Py_ssize_t ln
        text = format(size, "f") if isinstance(size, Decimal) else size
        cdef int st = _text(text, &s, &ln)
        if st == 1:
            raise ValueError(f"size {size!r} must be a Decimal or a decimal string")
        if st == 0:
            st = parse_units(s, ln, self.qty_scale, self.qty_unit, &want)
        else:
            st = PARSE_NOT_NUMBER
        if st != PARSE_OK:
            raise self.parse_error(st, "size", size, False)
        if want == 0:
            raise ValueError(f"size {size!r} must be > 0")
        left = want
        notional = 0
        worst = 0
        i = sd.n - 1
        while left > 0 and i >= 0:
            take = min(left, sd.lv[i].qty)
            worst = sign * sd.lv[i].key
            notional += worst * take
            left -= take
            i -= 1
        if left > 0:
            return None
        return _average(notional, want, self._tick, self.px_scale, self.px_unit), Decimal(worst) * self._tick


def _average(notional: int, lots: int, tick: Decimal, scale: int, unit: int) -> Decimal:
    """notional/lots ticks as a price, rounded half-even to 8 decimals beyond the tick (exact ints)."""
    num = notional * unit * 10 ** 8
    q, r = divmod(num, lots)
    if 2 * r > lots or (2 * r == lots and q % 2 == 1):
        q += 1
    return Decimal(f"{q}E-{scale + 8}")
