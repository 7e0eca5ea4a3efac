# cython: boundscheck=False, wraparound=False, cdivision=True
"""Venue sequence-sync state machines over an ``OrderBook`` (compiled kernel); twin: ``engine._pure.booksync``.

Pure state machines, no I/O. Every call answers one of the result codes ``APPLIED`` (the book changed
and is live), ``STALE`` (old or duplicate, dropped), ``GAP`` (a message is missing: fetch a snapshot /
resubscribe) or ``BUFFERED`` (kept until a snapshot arrives).

Binance USD-M (``BinanceBookSync``; protocol notes 1.7):

- states ``awaiting_snapshot`` -> (``on_snapshot``) ``syncing`` -> (first straddling event) ``live``.
- ``awaiting_snapshot``: events are BUFFERED in a bounded buffer (``buffer_size``, default 4096); when
  full the oldest is dropped and counted in ``buffer_dropped`` (the straddle/pu checks keep it correct).
- ``on_snapshot(L, bids, asks)`` applies the snapshot, then replays the buffer: ``u < L`` is STALE; the
  first applied event must have ``U <= L <= u`` (else GAP); after it, ``pu`` must equal the previous
  ``u``. Returns APPLIED (live), BUFFERED (still waiting for the straddling event) or GAP.
- ``live``: ``pu == last u`` -> APPLIED; ``u <= last u`` -> STALE; otherwise GAP.
- On GAP the machine returns to ``awaiting_snapshot`` and keeps the event (and everything after it) in
  the buffer for the next snapshot.

Bybit v5 (``BybitBookSync``; protocol notes 2.7): a snapshot (at any time; ``u == 1`` is a restart
snapshot, same handling) replaces the book -> APPLIED, ``live``. A delta with ``u == last u + 1`` ->
APPLIED; any other ``u`` -> GAP and ``awaiting_snapshot``. While awaiting a snapshot the first delta is a
GAP (also before any snapshot), later ones STALE.

Errors (both machines): every message's levels are parsed and validated on arrival, before the sequence
logic. Malformed frames (invalid JSON, not an object, ``data`` not an object, missing or non-int64
``U``/``u``/``pu``/``type``, missing ``b``/``a``, unknown ``type``) raise ``ValueError`` and change
nothing. Bad level data (not a list, not a pair, not a string, off grid, ...) or a crossed result raise
``ValueError``, the book unchanged; if the machine was ``live`` it goes back to ``awaiting_snapshot``.

``on_bytes(raw)`` takes the WS frame (``bytes``, ``bytearray`` or ``str``), strictly validated as JSON
(RFC 8259, UTF-8, as orjson does), in any key order, unknown keys skipped. Binance frames may be bare or
in a combined-stream envelope (``{"stream": ..., "data": {...}}``): if the top-level object has a
``data`` key, its value is the payload and the other top-level keys are ignored.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Check, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_Check
from libc.math cimport isinf
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.stdlib cimport free, realloc, strtod
from libc.string cimport memcpy

from engine._ext.book cimport PARSE_OK, OrderBook, parse_units, scan_units

import json
from collections import deque

__all__ = ["APPLIED", "BUFFERED", "GAP", "STALE", "BinanceBookSync", "BybitBookSync"]

APPLIED = 0
STALE = 1
GAP = 2
BUFFERED = 3

cdef enum:
    R_APPLIED = 0
    R_STALE = 1
    R_GAP = 2
    R_BUFFERED = 3
    S_AWAITING = 0
    S_SYNCING = 1
    S_LIVE = 2
    MAX_DEPTH = 1024

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size)
    void PyErr_Clear()

_STATES = ("awaiting_snapshot", "syncing", "live")


# ------------------------------------------------------------------ JSON scanning (leaf helpers)

cdef inline cptr _ws(cptr p, cptr e) noexcept nogil:
    while p < e and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p


cdef unsigned char _PLAIN[256]
cdef int _i
for _i in range(256):
    _PLAIN[_i] = 1 if (0x20 <= _i < 0x80 and _i != 34 and _i != 92) else 0


cdef inline int _hex4(cptr p, cptr e) noexcept nogil:
    cdef int v = 0, i, c
    if e - p < 4:
        return -1
    for i in range(4):
        c = p[i]
        if 48 <= c <= 57:
            v = v * 16 + c - 48
        elif 97 <= c <= 102:
            v = v * 16 + c - 87
        elif 65 <= c <= 70:
            v = v * 16 + c - 55
        else:
            return -1
    return v


cdef cptr _string(cptr p, cptr e, bint* esc) noexcept nogil:
    """p at the opening quote; validates (escapes, control characters, UTF-8); returns past the close."""
    cdef unsigned int c, c1
    cdef int cp, lo
    p += 1
    esc[0] = False
    while p < e:
        while p < e and _PLAIN[p[0]]:   # the common bytes, one table load each
            p += 1
        if p >= e:
            return NULL
        c = p[0]
        if c == 34:
            return p + 1
        if c == 92:
            esc[0] = True
            if p + 1 >= e:
                return NULL
            c = p[1]
            if c == 117:  # u
                cp = _hex4(p + 2, e)
                if cp < 0:
                    return NULL
                p += 6
                if 0xD800 <= cp <= 0xDBFF:
                    if e - p < 6 or p[0] != 92 or p[1] != 117:
                        return NULL
                    lo = _hex4(p + 2, e)
                    if lo < 0xDC00 or lo > 0xDFFF:
                        return NULL
                    p += 6
                elif 0xDC00 <= cp <= 0xDFFF:
                    return NULL
            elif c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110 or c == 114 or c == 116:
                p += 2
            else:
                return NULL
        elif c < 0x20:
            return NULL
        elif c < 0x80:
            p += 1
        elif 0xC2 <= c <= 0xDF:
            if e - p < 2 or (p[1] & 0xC0) != 0x80:
                return NULL
            p += 2
        elif 0xE0 <= c <= 0xEF:
            if e - p < 3 or (p[1] & 0xC0) != 0x80 or (p[2] & 0xC0) != 0x80:
                return NULL
            c1 = p[1]
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 > 0x9F):
                return NULL
            p += 3
        elif 0xF0 <= c <= 0xF4:
            if e - p < 4 or (p[1] & 0xC0) != 0x80 or (p[2] & 0xC0) != 0x80 or (p[3] & 0xC0) != 0x80:
                return NULL
            c1 = p[1]
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 > 0x8F):
                return NULL
            p += 4
        else:
            return NULL
    return NULL


cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil


cdef inline int _ndigits8(uint64_t w) noexcept nogil:
    """How many of the 8 bytes of ``w`` (first byte lowest) are ASCII digits before the first non-digit."""
    cdef uint64_t t = (((w & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                       | (((w + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL))
    if t == 0:
        return 8
    return __builtin_ctzll(t) >> 3


cdef inline cptr _str(cptr p, cptr e, bint* esc) noexcept nogil:
    """``_string`` with its common case inline: printable ASCII without escapes up to the close."""
    cdef cptr q = p + 1
    while q < e and _PLAIN[q[0]]:
        q += 1
    if q < e and q[0] == 34:
        esc[0] = False
        return q + 1
    return _string(p, e, esc)


cdef Py_ssize_t _unescape(cptr s, Py_ssize_t n, unsigned char* out) noexcept nogil:
    """Decode the (validated) content of a JSON string to UTF-8 in ``out`` (never longer than n)."""
    cdef Py_ssize_t i = 0, m = 0
    cdef unsigned int c
    cdef int cp
    while i < n:
        c = s[i]
        if c != 92:
            out[m] = <unsigned char>c
            m += 1
            i += 1
            continue
        c = s[i + 1]
        i += 2
        if c == 117:
            cp = _hex4(s + i, s + n)
            i += 4
            if 0xD800 <= cp <= 0xDBFF:
                cp = 0x10000 + ((cp - 0xD800) << 10) + (_hex4(s + i + 2, s + n) - 0xDC00)
                i += 6
            if cp < 0x80:
                out[m] = <unsigned char>cp
                m += 1
            elif cp < 0x800:
                out[m] = <unsigned char>(0xC0 | (cp >> 6))
                out[m + 1] = <unsigned char>(0x80 | (cp & 0x3F))
                m += 2
            elif cp < 0x10000:
                out[m] = <unsigned char>(0xE0 | (cp >> 12))
                out[m + 1] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
                out[m + 2] = <unsigned char>(0x80 | (cp & 0x3F))
                m += 3
            else:
                out[m] = <unsigned char>(0xF0 | (cp >> 18))
                out[m + 1] = <unsigned char>(0x80 | ((cp >> 12) & 0x3F))
                out[m + 2] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
                out[m + 3] = <unsigned char>(0x80 | (cp & 0x3F))
                m += 4
        elif c == 98:
            out[m] = 8
            m += 1
        elif c == 102:
            out[m] = 12
            m += 1
        elif c == 110:
            out[m] = 10
            m += 1
        elif c == 114:
            out[m] = 13
            m += 1
        elif c == 116:
            out[m] = 9
            m += 1
        else:
            out[m] = <unsigned char>c
            m += 1
    return m


cdef cptr _number(cptr p, cptr e, bint* is_int, unsigned char* scratch) noexcept nogil:
    """Validate a JSON number at p; like orjson, reject one that is infinite as a double."""
    cdef cptr start = p
    cdef bint big = False
    cdef double d
    is_int[0] = True
    if p < e and p[0] == 45:
        p += 1
    if p >= e:
        return NULL
    if p[0] == 48:
        p += 1
    elif 49 <= p[0] <= 57:
        while p < e and 48 <= p[0] <= 57:
            p += 1
    else:
        return NULL
    if p - start > 300:
        big = True
    if p < e and p[0] == 46:
        is_int[0] = False
        p += 1
        if p >= e or not (48 <= p[0] <= 57):
            return NULL
        while p < e and 48 <= p[0] <= 57:
            p += 1
    if p < e and (p[0] == 101 or p[0] == 69):
        is_int[0] = False
        big = True
        p += 1
        if p < e and (p[0] == 43 or p[0] == 45):
            p += 1
        if p >= e or not (48 <= p[0] <= 57):
            return NULL
        while p < e and 48 <= p[0] <= 57:
            p += 1
    if big:
        memcpy(scratch, start, p - start)
        scratch[p - start] = 0
        d = strtod(<const char*>scratch, NULL)
        if isinf(d):
            return NULL
    return p


cdef cptr _skip(cptr p, cptr e, int depth, unsigned char* scratch) noexcept nogil:
    """Validate and skip one JSON value at p (p at its first byte); NULL if malformed."""
    cdef bint flag
    cdef unsigned int c
    cdef cptr q
    cdef uint64_t w
    cdef int k
    if p >= e:
        return NULL
    c = p[0]
    if c == 34:
        return _str(p, e, &flag)
    if c == 123 or c == 91:
        if depth >= MAX_DEPTH:
            return NULL
        p = _ws(p + 1, e)
        if p < e and p[0] == c + 2:   # '}' is '{' + 2, ']' is '[' + 2
            return p + 1
        while True:
            if c == 123:
                if p >= e or p[0] != 34:
                    return NULL
                p = _string(p, e, &flag)
                if p == NULL:
                    return NULL
                p = _ws(p, e)
                if p >= e or p[0] != 58:
                    return NULL
                p = _ws(p + 1, e)
            p = _skip(p, e, depth + 1, scratch)
            if p == NULL:
                return NULL
            p = _ws(p, e)
            if p >= e:
                return NULL
            if p[0] == 44:
                p = _ws(p + 1, e)
                continue
            if p[0] == c + 2:
                return p + 1
            return NULL
    if c == 116:
        if e - p >= 4 and p[1] == 114 and p[2] == 117 and p[3] == 101:
            return p + 4
        return NULL
    if c == 102:
        if e - p >= 5 and p[1] == 97 and p[2] == 108 and p[3] == 115 and p[4] == 101:
            return p + 5
        return NULL
    if c == 110:
        if e - p >= 4 and p[1] == 117 and p[2] == 108 and p[3] == 108:
            return p + 4
        return NULL
    if 49 <= c <= 57:
        # fast path: up to 300 digits not followed by a fraction or exponent is a valid finite integer
        q = p + 1
        while e - q >= 8:   # eight digits at a time (timestamps are 13)
            memcpy(&w, q, 8)
            k = _ndigits8(w)
            q += k
            if k < 8:
                break
        while q < e and 48 <= q[0] <= 57:
            q += 1
        if q - p <= 300 and (q >= e or (q[0] != 46 and q[0] != 101 and q[0] != 69)):
            return q
        return _number(p, e, &flag, scratch)
    if c == 45 or 48 <= c <= 57:
        return _number(p, e, &flag, scratch)
    return NULL


cdef cptr _int_field(cptr p, cptr e, int64_t* out, int* flag, unsigned char* scratch) noexcept nogil:
    """A JSON value that should be an int64 integer: flag 1 and out set if so, else flag 2."""
    cdef bint is_int
    cdef cptr q
    cdef cptr end
    cdef bint neg = False
    cdef unsigned long long v = 0
    cdef unsigned long long lim = 9223372036854775807ULL
    cdef unsigned int d
    flag[0] = 2
    if p < e and 49 <= p[0] <= 57:
        # fast path: 1..18 digits not followed by a fraction or exponent (fits int64, no checks needed)
        q = p
        while q < e and 48 <= q[0] <= 57:
            v = v * 10 + (q[0] - 48)
            q += 1
        if q - p <= 18 and (q >= e or (q[0] != 46 and q[0] != 101 and q[0] != 69)):
            out[0] = <int64_t>v
            flag[0] = 1
            return q
        v = 0
    if p < e and (p[0] == 45 or 48 <= p[0] <= 57):
        end = _number(p, e, &is_int, scratch)
        if end == NULL or not is_int:
            return end
        q = p
        if q[0] == 45:
            neg = True
            lim += 1
            q += 1
        while q < end:
            d = q[0] - 48
            if v > (lim - d) // 10:
                return end
            v = v * 10 + d
            q += 1
        if neg and v > 0:
            out[0] = -<int64_t>(v - 1) - 1
        else:
            out[0] = <int64_t>v
        flag[0] = 1
        return end
    return _skip(p, e, 1, scratch)


cdef inline cptr _key(cptr p, cptr e, cptr* ks, Py_ssize_t* kl, unsigned char* scratch) noexcept nogil:
    """p at a key's opening quote; returns past the ':' (and whitespace); ks/kl the decoded key."""
    cdef bint esc
    cdef cptr q
    if p >= e or p[0] != 34:
        return NULL
    q = _str(p, e, &esc)
    if q == NULL:
        return NULL
    if esc:
        kl[0] = _unescape(p + 1, q - p - 2, scratch)
        ks[0] = scratch
    else:
        ks[0] = p + 1
        kl[0] = q - p - 2
    q = _ws(q, e)
    if q >= e or q[0] != 58:
        return NULL
    return _ws(q + 1, e)


cdef inline cptr _after_member(cptr p, cptr e, bint* done) noexcept nogil:
    """After a member's value: past ',' (done False) or '}' (done True); NULL otherwise."""
    p = _ws(p, e)
    if p >= e:
        return NULL
    if p[0] == 44:
        done[0] = False
        return _ws(p + 1, e)
    if p[0] == 125:
        done[0] = True
        return p + 1
    return NULL


cdef inline bint memcmp_(cptr a, const char* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if a[i] != <unsigned char>b[i]:
            return False
    return True


cdef inline cptr _fast_level(cptr p, cptr e, int ps, int64_t pu, int qs, int64_t qu,
                             int64_t* px, int64_t* qty) noexcept nogil:
    """p at a level's '[': the common ``["<decimal>","<decimal>"]`` shape parsed in one pass (plain ASCII
    digits, no escapes); returns past the ']', or NULL to let the general scanner decide (same result)."""
    p = _ws(p + 1, e)
    if p >= e or p[0] != 34:
        return NULL
    p = scan_units(p + 1, e, ps, pu, px)
    if p == NULL or p >= e or p[0] != 34:
        return NULL
    p = _ws(p + 1, e)
    if p >= e or p[0] != 44:
        return NULL
    p = _ws(p + 1, e)
    if p >= e or p[0] != 34:
        return NULL
    p = scan_units(p + 1, e, qs, qu, qty)
    if p == NULL or p >= e or p[0] != 34:
        return NULL
    p = _ws(p + 1, e)
    if p >= e or p[0] != 93:
        return NULL
    return p + 1


cdef class _SyncBase:
    """Staging buffers and the frame scanner shared by both machines."""

    def __cinit__(self, *args: object, **kwargs: object) -> None:
        self._bpx = self._bqty = self._apx = self._aqty = NULL
        self._bcap = self._acap = 0
        self._scratch = NULL
        self._scratch_cap = 0
        self._have_last = False
        self._last = 0

    def __dealloc__(self) -> None:
        free(self._bpx)
        free(self._bqty)
        free(self._apx)
        free(self._aqty)
        free(self._scratch)

    cdef int _grow(self, bint bid) except -1:
        cdef Py_ssize_t cap = (self._bcap if bid else self._acap) * 2
        cdef int64_t* a
        cdef int64_t* b
        if cap < 64:
            cap = 64
        if bid:
            a = <int64_t*>realloc(self._bpx, cap * sizeof(int64_t))
            if a != NULL:
                self._bpx = a
            b = <int64_t*>realloc(self._bqty, cap * sizeof(int64_t))
            if b != NULL:
                self._bqty = b
            if a == NULL or b == NULL:
                raise MemoryError()
            self._bcap = cap
        else:
            a = <int64_t*>realloc(self._apx, cap * sizeof(int64_t))
            if a != NULL:
                self._apx = a
            b = <int64_t*>realloc(self._aqty, cap * sizeof(int64_t))
            if b != NULL:
                self._aqty = b
            if a == NULL or b == NULL:
                raise MemoryError()
            self._acap = cap
        return 0

    cdef int _reset_payload(self) noexcept:
        self._fU = self._fu = self._fpu = self._fseq = 0
        self._hb = self._ha = False
        self._nb = self._na = 0
        self._eb.code = 0
        self._ea.code = 0
        return 0

    cdef int _frame(self, object raw, cptr* p, cptr* e) except -1:
        """Point p/e at the frame's bytes; make sure scratch can hold the whole frame."""
        cdef const char* s
        cdef Py_ssize_t n
        cdef unsigned char* buf
        if PyBytes_Check(raw):
            s = PyBytes_AS_STRING(raw)
            n = PyBytes_GET_SIZE(raw)
        elif PyUnicode_Check(raw):
            s = PyUnicode_AsUTF8AndSize(raw, &n)
            if s == NULL:
                PyErr_Clear()
                raise ValueError("frame is not valid UTF-8 (lone surrogate)")
        elif PyByteArray_Check(raw):
            s = PyByteArray_AS_STRING(raw)
            n = PyByteArray_GET_SIZE(raw)
        else:
            raise TypeError(f"frame must be bytes, bytearray or str, not {type(raw).__name__}")
        if n + 1 > self._scratch_cap:
            buf = <unsigned char*>realloc(self._scratch, n + 64)
            if buf == NULL:
                raise MemoryError()
            self._scratch = buf
            self._scratch_cap = n + 64
        p[0] = <cptr>s
        e[0] = <cptr>s + n
        return 0

    cdef cptr _levels(self, cptr p, cptr e, bint bid, int depth) except? NULL:
        """Scan a side's value at p into staging; level problems are recorded, not raised."""
        cdef LevelErr* err = &self._eb if bid else &self._ea
        cdef Py_ssize_t n = 0, idx = 0, count
        cdef cptr start
        cdef cptr q
        cdef cptr s0
        cdef cptr s1
        cdef Py_ssize_t l0 = 0, l1 = 0
        cdef cptr v0
        cdef cptr v0e
        cdef cptr v1
        cdef cptr v1e
        cdef bint str0, str1, esc0, esc1
        cdef int st
        cdef int64_t px, qty
        cdef unsigned char* scratch = self._scratch
        err.code = 0
        if bid:
            self._nb = 0
            self._hb = True
        else:
            self._na = 0
            self._ha = True
        if p >= e:
            return NULL
        if p[0] != 91:
            start = p
            p = _skip(p, e, depth, scratch)
            if p != NULL:
                err.code = 1
                err.ptr = start
                err.len = p - start
            return p
        if depth >= MAX_DEPTH:
            return NULL
        p = _ws(p + 1, e)
        if p < e and p[0] == 93:
            return p + 1
        cdef int ps = self.book.px_scale
        cdef int qs = self.book.qty_scale
        cdef int64_t pu = self.book.px_unit
        cdef int64_t qu = self.book.qty_unit
        while True:
            if p >= e:
                return NULL
            start = p
            if err.code == 0 and p[0] == 91 and depth + 1 < MAX_DEPTH:
                q = _fast_level(p, e, ps, pu, qs, qu, &px, &qty)
                if q != NULL:
                    if bid:
                        if n >= self._bcap:
                            self._grow(True)
                        self._bpx[n] = px
                        self._bqty[n] = qty
                    else:
                        if n >= self._acap:
                            self._grow(False)
                        self._apx[n] = px
                        self._aqty[n] = qty
                    n += 1
                    idx += 1
                    p = _ws(q, e)
                    if p >= e:
                        return NULL
                    if p[0] == 44:
                        p = _ws(p + 1, e)
                        continue
                    if p[0] == 93:
                        if bid:
                            self._nb = n
                        else:
                            self._na = n
                        return p + 1
                    return NULL
            if p[0] != 91 or depth + 1 >= MAX_DEPTH:
                p = _skip(p, e, depth + 1, self._scratch)
                if p == NULL:
                    return NULL
                if err.code == 0:
                    err.code = 2
                    err.idx = idx
                    err.ptr = start
                    err.len = p - start
            else:
                # a list: count its elements, remember the first two
                count = 0
                str0 = str1 = esc0 = esc1 = False
                v0 = v0e = v1 = v1e = NULL
                p = _ws(p + 1, e)
                if p < e and p[0] == 93:
                    p += 1
                else:
                    while True:
                        if p >= e:
                            return NULL
                        if p[0] == 34 and count < 2:
                            if count == 0:
                                v0 = p
                                p = _string(p, e, &esc0)
                                v0e = p
                                str0 = True
                            else:
                                v1 = p
                                p = _string(p, e, &esc1)
                                v1e = p
                                str1 = True
                        else:
                            q = p
                            p = _skip(p, e, depth + 2, self._scratch)
                            if count == 0:
                                v0 = q
                                v0e = p
                            elif count == 1:
                                v1 = q
                                v1e = p
                        if p == NULL:
                            return NULL
                        count += 1
                        p = _ws(p, e)
                        if p >= e:
                            return NULL
                        if p[0] == 44:
                            p = _ws(p + 1, e)
                            continue
                        if p[0] == 93:
                            p += 1
                            break
                        return NULL
                if err.code == 0:
                    if count != 2:
                        err.code = 2
                    elif not str0:
                        err.code = 3
                    else:
                        if esc0:
                            l0 = _unescape(v0 + 1, v0e - v0 - 2, scratch)
                            st = parse_units(<const char*>scratch, l0, self.book.px_scale, self.book.px_unit, &px)
                        else:
                            st = parse_units(<const char*>(v0 + 1), v0e - v0 - 2, self.book.px_scale,
                                             self.book.px_unit, &px)
                        if st != PARSE_OK:
                            err.code = 10 + st
                        elif not str1:
                            err.code = 4
                        else:
                            if esc1:
                                l1 = _unescape(v1 + 1, v1e - v1 - 2, scratch)
                                st = parse_units(<const char*>scratch, l1, self.book.qty_scale,
                                                 self.book.qty_unit, &qty)
                            else:
                                st = parse_units(<const char*>(v1 + 1), v1e - v1 - 2, self.book.qty_scale,
                                                 self.book.qty_unit, &qty)
                            if st != PARSE_OK:
                                err.code = 20 + st
                            else:
                                if bid:
                                    if n >= self._bcap:
                                        self._grow(True)
                                    self._bpx[n] = px
                                    self._bqty[n] = qty
                                else:
                                    if n >= self._acap:
                                        self._grow(False)
                                    self._apx[n] = px
                                    self._aqty[n] = qty
                                n += 1
                    if err.code != 0:
                        err.idx = idx
                        if err.code == 2:
                            err.ptr = start
                            err.len = p - start
                        elif err.code == 3 or 10 < err.code < 20:
                            err.ptr = v0
                            err.len = v0e - v0
                        else:
                            err.ptr = v1
                            err.len = v1e - v1
            idx += 1
            p = _ws(p, e)
            if p >= e:
                return NULL
            if p[0] == 44:
                p = _ws(p + 1, e)
                continue
            if p[0] == 93:
                if bid:
                    self._nb = n
                else:
                    self._na = n
                return p + 1
            return NULL

    cdef object _level_error(self, LevelErr* err, str name):
        value = json.loads(PyBytes_FromStringAndSize(<const char*>err.ptr, err.len))
        if err.code == 1:
            return ValueError(f"{name} {type(value).__name__} is not a list of [price, size] levels")
        if err.code == 2:
            return ValueError(f"{name}[{err.idx}] {value!r} is not a [price, size] pair")
        if err.code == 3:
            return ValueError(f"{name}[{err.idx}].price {value!r} is not a string")
        if err.code == 4:
            return ValueError(f"{name}[{err.idx}].size {value!r} is not a string")
        if err.code < 20:
            return self.book.parse_error(err.code - 10, f"{name}[{err.idx}].price", value, True)
        return self.book.parse_error(err.code - 20, f"{name}[{err.idx}].size", value, False)

    cdef int _raise_content(self) except -1:
        """Raise the first level error (b before a), after marking a live machine as needing a resync."""
        cdef LevelErr* err = &self._eb if self._eb.code else &self._ea
        exc = self._level_error(err, "b" if err == &self._eb else "a")
        if self._state == S_LIVE:
            self._state = S_AWAITING
            self._on_content_error()
        raise exc

    def _on_content_error(self) -> None:
        pass

    cdef int _from_bytes(self, object raw) except -1:
        raise NotImplementedError  # each venue's machine scans its own frame shape

    def on_bytes(self, raw: object) -> int:
        """One raw WS frame, scanned without a Python object per level: Binance a bare depthUpdate or a
        combined-stream envelope (as ``on_event``), Bybit an ``orderbook.{depth}.{symbol}`` message (as
        ``on_message``). Returns APPLIED, STALE, GAP or BUFFERED."""
        return self._from_bytes(raw)

    def on_bytes_touch(self, raw: object) -> tuple | None:
        """``on_bytes`` and the new touch in one call: the hot path's single call per frame.

        Returns ``book.touch_ticks()`` (``(bid_ticks, bid_lots, ask_ticks, ask_lots)``, the same cached
        tuple while the touch is unchanged) when the frame was APPLIED, else None; the result code
        (APPLIED, STALE, GAP or BUFFERED) is in ``last_result`` either way. Errors raise as ``on_bytes``.
        """
        cdef int code = self._from_bytes(raw)
        self.last_result = code
        if code == R_APPLIED:
            return self.book.c_touch()
        return None

    @property
    def state(self) -> str:
        return _STATES[self._state]

    @property
    def last_update_id(self) -> int | None:
        return self._last if self._have_last else None


cdef int64_t _id(object value, str name) except? -1:
    if type(value) is not int or not (-(2 ** 63) <= value <= 2 ** 63 - 1):
        raise ValueError(f"{name} {value!r} is not an int64 integer")
    return value


cdef class BinanceBookSync(_SyncBase):
    """Binance USD-M diff-depth sync (protocol notes 1.7); see the module docstring."""

    def __init__(self, book: OrderBook, *, buffer_size: int = 4096) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size {buffer_size!r} must be >= 1")
        self.book = book
        self.buffer_size = buffer_size
        self._buffer = deque()
        self._state = S_AWAITING
        self.applied = self.stale = self.gaps = self.buffer_dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Back to awaiting a snapshot: buffer emptied, counters zeroed, book cleared."""
        self._buffer.clear()
        self._state = S_AWAITING
        self._have_last = False
        self._last = 0
        self.applied = self.stale = self.gaps = self.buffer_dropped = 0
        self.book.clear()

    cdef int _event(self, int64_t U, int64_t u, int64_t pu, int64_t* bpx, int64_t* bqty, Py_ssize_t nb,
                    int64_t* apx, int64_t* aqty, Py_ssize_t na, bint from_buffer) except -1:
        cdef bytes blob
        cdef char* w
        cdef int r = R_BUFFERED
        if self._state == S_LIVE:
            if pu == self._last:
                try:
                    self.book.apply_staged(bpx, bqty, nb, apx, aqty, na, False)
                except ValueError:
                    self._state = S_AWAITING
                    raise
                self._last = u
                self.applied += 1
                return R_APPLIED
            if u <= self._last:
                self.stale += 1
                return R_STALE
            self.gaps += 1
            self._state = S_AWAITING
            r = R_GAP
        elif self._state == S_SYNCING:
            if u < self._last:
                self.stale += 1
                return R_STALE
            if U <= self._last:
                try:
                    self.book.apply_staged(bpx, bqty, nb, apx, aqty, na, False)
                except ValueError:
                    self._state = S_AWAITING
                    raise
                self._last = u
                self._state = S_LIVE
                self.applied += 1
                return R_APPLIED
            self.gaps += 1
            self._state = S_AWAITING
            r = R_GAP
        # keep the event for the next snapshot
        blob = PyBytes_FromStringAndSize(NULL, (nb + na) * 2 * sizeof(int64_t))
        w = PyBytes_AS_STRING(blob)
        memcpy(w, bpx, nb * sizeof(int64_t))
        memcpy(w + nb * sizeof(int64_t), bqty, nb * sizeof(int64_t))
        memcpy(w + 2 * nb * sizeof(int64_t), apx, na * sizeof(int64_t))
        memcpy(w + (2 * nb + na) * sizeof(int64_t), aqty, na * sizeof(int64_t))
        entry = (U, u, pu, nb, na, blob)
        if from_buffer:
            self._buffer.appendleft(entry)
            return r
        if len(self._buffer) >= self.buffer_size:
            self._buffer.popleft()
            self.buffer_dropped += 1
        self._buffer.append(entry)
        return r

    def on_event(self, U: object, u: object, pu: object, bids: object, asks: object) -> int:
        """One diff-depth event (decoded): APPLIED, STALE, GAP or BUFFERED."""
        cdef int64_t cU = _id(U, "U")
        cdef int64_t cu = _id(u, "u")
        cdef int64_t cpu = _id(pu, "pu")
        cdef Py_ssize_t nb, na
        cdef OrderBook book = self.book
        try:
            nb = book._stage(bids, "bids", True)
            na = book._stage(asks, "asks", False)
        except ValueError:
            if self._state == S_LIVE:
                self._state = S_AWAITING
            raise
        return self._event(cU, cu, cpu, book._st_bpx, book._st_bqty, nb, book._st_apx, book._st_aqty, na, False)

    def on_snapshot(self, last_update_id: object, bids: object, asks: object) -> int:
        """Apply a REST snapshot, then replay the buffer: APPLIED (live), BUFFERED (waiting) or GAP."""
        cdef int64_t L = _id(last_update_id, "last_update_id")
        cdef OrderBook book = self.book
        cdef Py_ssize_t nb, na
        cdef int64_t* base
        cdef bytes blob
        try:
            nb = book._stage(bids, "bids", True)
            na = book._stage(asks, "asks", False)
            book.apply_staged(book._st_bpx, book._st_bqty, nb, book._st_apx, book._st_aqty, na, True)
        except ValueError:
            self._state = S_AWAITING
            raise
        self._last = L
        self._have_last = True
        self._state = S_SYNCING
        buf = self._buffer
        while buf and self._state != S_AWAITING:
            U, u, pu, nb, na, blob = buf.popleft()
            base = <int64_t*>PyBytes_AS_STRING(blob)
            self._event(U, u, pu, base, base + nb, nb, base + 2 * nb, base + 2 * nb + na, na, True)
        if self._state == S_LIVE:
            return R_APPLIED
        if self._state == S_SYNCING:
            return R_BUFFERED
        return R_GAP

    cdef cptr _binance_obj(self, cptr p, cptr e, bint top, int depth) except? NULL:
        """p just past '{' (and whitespace): scan the members of a Binance payload or envelope."""
        cdef cptr ks
        cdef Py_ssize_t kl
        cdef bint done = False
        cdef unsigned char* scratch = self._scratch
        cdef unsigned char k0
        if p < e and p[0] == 125:
            return p + 1
        while True:
            p = _key(p, e, &ks, &kl, scratch)
            if p == NULL or p >= e:
                return NULL
            k0 = ks[0] if kl > 0 else 0
            if top and kl == 4 and k0 == 100 and ks[1] == 97 and ks[2] == 116 and ks[3] == 97:  # data
                self._reset_payload()
                if p[0] == 123:
                    if depth + 1 >= MAX_DEPTH:
                        return NULL
                    self._data = 1
                    p = self._binance_obj(_ws(p + 1, e), e, False, depth + 1)
                else:
                    self._data = 2
                    p = _skip(p, e, depth + 1, scratch)
            elif top and self._data != 0:
                p = _skip(p, e, depth + 1, scratch)
            elif kl == 1 and k0 == 85:  # U
                p = _int_field(p, e, &self._sU, &self._fU, scratch)
            elif kl == 1 and k0 == 117:  # u
                p = _int_field(p, e, &self._su, &self._fu, scratch)
            elif kl == 2 and k0 == 112 and ks[1] == 117:  # pu
                p = _int_field(p, e, &self._spu, &self._fpu, scratch)
            elif kl == 1 and k0 == 98:  # b
                p = self._levels(p, e, True, depth + 1)
            elif kl == 1 and k0 == 97:  # a
                p = self._levels(p, e, False, depth + 1)
            else:
                p = _skip(p, e, depth + 1, scratch)
            if p == NULL:
                return NULL
            p = _after_member(p, e, &done)
            if p == NULL or done:
                return p

    cdef int _from_bytes(self, object raw) except -1:
        cdef cptr p
        cdef cptr e
        self._frame(raw, &p, &e)
        self._reset_payload()
        self._data = 0
        p = _ws(p, e)
        if p >= e or p[0] != 123:
            raise ValueError("frame is not a JSON object")
        p = self._binance_obj(_ws(p + 1, e), e, True, 1)
        if p == NULL or _ws(p, e) != e:
            raise ValueError("frame is not valid JSON")
        if self._data == 2:
            raise ValueError("frame 'data' is not an object")
        if self._fU != 1 or self._fu != 1 or self._fpu != 1:
            for name, f in (("U", self._fU), ("u", self._fu), ("pu", self._fpu)):
                if f != 1:
                    raise ValueError(f"frame {name} is {'missing' if f == 0 else 'not an int64 integer'}")
        if not self._hb or not self._ha:
            raise ValueError(f"frame {'b' if not self._hb else 'a'} is missing")
        if self._eb.code or self._ea.code:
            self._raise_content()
        return self._event(self._sU, self._su, self._spu, self._bpx, self._bqty, self._nb,
                           self._apx, self._aqty, self._na, False)


cdef class BybitBookSync(_SyncBase):
    """Bybit v5 orderbook sync (protocol notes 2.7); see the module docstring."""

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self._state = S_AWAITING
        self._gap_reported = False
        self.applied = self.stale = self.gaps = self.buffer_dropped = 0

    def reset(self) -> None:
        """Back to awaiting a snapshot: counters zeroed, book cleared."""
        self._state = S_AWAITING
        self._gap_reported = False
        self._have_last = False
        self._last = 0
        self.applied = self.stale = self.gaps = self.buffer_dropped = 0
        self.book.clear()

    def _on_content_error(self) -> None:
        self._gap_reported = True

    cdef int _message(self, bint snapshot, int64_t u, int64_t* bpx, int64_t* bqty, Py_ssize_t nb,
                      int64_t* apx, int64_t* aqty, Py_ssize_t na) except -1:
        if snapshot:
            try:
                self.book.apply_staged(bpx, bqty, nb, apx, aqty, na, True)
            except ValueError:
                self._state = S_AWAITING
                self._gap_reported = True
                raise
            self._last = u
            self._have_last = True
            self._state = S_LIVE
            self._gap_reported = False
            self.applied += 1
            return R_APPLIED
        if self._state != S_LIVE:
            if self._gap_reported:
                self.stale += 1
                return R_STALE
            self._gap_reported = True
            self.gaps += 1
            return R_GAP
        if self._last != INT64_MAX and u == self._last + 1:
            try:
                self.book.apply_staged(bpx, bqty, nb, apx, aqty, na, False)
            except ValueError:
                self._state = S_AWAITING
                self._gap_reported = True
                raise
            self._last = u
            self.applied += 1
            return R_APPLIED
        self.gaps += 1
        self._state = S_AWAITING
        self._gap_reported = True
        return R_GAP

    def on_message(self, kind: str, u: object, seq: object, bids: object, asks: object) -> int:
        """One decoded orderbook message, kind "snapshot" or "delta": APPLIED, STALE or GAP."""
        cdef bint snapshot
        cdef int64_t cu
        cdef Py_ssize_t nb, na
        cdef OrderBook book = self.book
        if kind == "snapshot":
            snapshot = True
        elif kind == "delta":
            snapshot = False
        else:
            raise ValueError(f"type {kind!r} must be 'snapshot' or 'delta'")
        cu = _id(u, "u")
        if seq is not None:
            _id(seq, "seq")
        try:
            nb = book._stage(bids, "bids", True)
            na = book._stage(asks, "asks", False)
        except ValueError:
            if self._state == S_LIVE:
                self._state = S_AWAITING
                self._gap_reported = True
            raise
        return self._message(snapshot, cu, book._st_bpx, book._st_bqty, nb, book._st_apx, book._st_aqty, na)

    cdef cptr _bybit_data(self, cptr p, cptr e, int depth) except? NULL:
        """p just past the data object's '{' (and whitespace)."""
        cdef cptr ks
        cdef Py_ssize_t kl
        cdef bint done = False
        cdef unsigned char* scratch = self._scratch
        cdef unsigned char k0
        if p < e and p[0] == 125:
            return p + 1
        while True:
            p = _key(p, e, &ks, &kl, scratch)
            if p == NULL or p >= e:
                return NULL
            k0 = ks[0] if kl > 0 else 0
            if kl == 1 and k0 == 117:  # u
                p = _int_field(p, e, &self._su, &self._fu, scratch)
            elif kl == 3 and k0 == 115 and ks[1] == 101 and ks[2] == 113:  # seq
                p = _int_field(p, e, &self._sseq, &self._fseq, scratch)
            elif kl == 1 and k0 == 98:  # b
                p = self._levels(p, e, True, depth + 1)
            elif kl == 1 and k0 == 97:  # a
                p = self._levels(p, e, False, depth + 1)
            else:
                p = _skip(p, e, depth + 1, scratch)
            if p == NULL:
                return NULL
            p = _after_member(p, e, &done)
            if p == NULL or done:
                return p

    cdef int _from_bytes(self, object raw) except -1:
        cdef cptr p
        cdef cptr e
        cdef cptr ks
        cdef cptr q
        cdef Py_ssize_t kl
        cdef bint done = False, esc
        cdef unsigned char* scratch
        self._frame(raw, &p, &e)
        scratch = self._scratch
        self._reset_payload()
        self._data = 0
        self._kind = 0
        p = _ws(p, e)
        if p >= e or p[0] != 123:
            raise ValueError("frame is not a JSON object")
        p = _ws(p + 1, e)
        if p < e and p[0] == 125:
            p += 1
        else:
            while True:
                p = _key(p, e, &ks, &kl, scratch)
                if p == NULL or p >= e:
                    break
                if kl == 4 and ks[0] == 116 and ks[1] == 121 and ks[2] == 112 and ks[3] == 101:  # type
                    if p[0] == 34:
                        q = _string(p, e, &esc)
                        if q == NULL:
                            p = NULL
                            break
                        if esc:
                            kl = _unescape(p + 1, q - p - 2, scratch)
                            ks = scratch
                        else:
                            ks = p + 1
                            kl = q - p - 2
                        if kl == 8 and memcmp_(ks, b"snapshot", 8):
                            self._kind = 1
                        elif kl == 5 and memcmp_(ks, b"delta", 5):
                            self._kind = 2
                        else:
                            self._kind = 3
                        p = q
                    else:
                        self._kind = 4
                        p = _skip(p, e, 2, scratch)
                elif kl == 4 and ks[0] == 100 and ks[1] == 97 and ks[2] == 116 and ks[3] == 97:  # data
                    self._reset_payload()
                    if p[0] == 123:
                        self._data = 1
                        p = self._bybit_data(_ws(p + 1, e), e, 2)
                    else:
                        self._data = 2
                        p = _skip(p, e, 2, scratch)
                else:
                    p = _skip(p, e, 2, scratch)
                if p == NULL:
                    break
                p = _after_member(p, e, &done)
                if p == NULL or done:
                    break
        if p == NULL or _ws(p, e) != e:
            raise ValueError("frame is not valid JSON")
        if self._kind == 0:
            raise ValueError("frame type is missing")
        if self._kind != 1 and self._kind != 2:
            raise ValueError("frame type must be 'snapshot' or 'delta'")
        if self._data != 1:
            raise ValueError(f"frame data is {'missing' if self._data == 0 else 'not an object'}")
        if self._fu != 1:
            raise ValueError(f"frame u is {'missing' if self._fu == 0 else 'not an int64 integer'}")
        if self._fseq == 2:
            raise ValueError("frame seq is not an int64 integer")
        if not self._hb or not self._ha:
            raise ValueError(f"frame {'b' if not self._hb else 'a'} is missing")
        if self._eb.code or self._ea.code:
            self._raise_content()
        return self._message(self._kind == 1, self._su, self._bpx, self._bqty, self._nb,
                             self._apx, self._aqty, self._na)
