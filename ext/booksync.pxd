"""Contract of the venue sequence-sync state machines (``engine._ext.booksync``)."""

from libc.stdint cimport int64_t

from engine._ext.book cimport OrderBook

ctypedef const unsigned char* cptr

# A level error found while scanning a frame; reported only if that side's value is the one used.
cdef struct LevelErr:
    int code              # 0 none; 1 not a list; 2 not a pair; 3/4 price/size not a string;
                          # 10 + status: price parse failed; 20 + status: size parse failed
    Py_ssize_t idx
    cptr ptr              # the offending JSON value (valid JSON)
    Py_ssize_t len

cdef class _SyncBase:
    cdef readonly OrderBook book
    cdef int _state
    cdef int64_t _last
    cdef bint _have_last
    cdef readonly int64_t applied
    cdef readonly int64_t stale
    cdef readonly int64_t gaps
    cdef readonly int64_t buffer_dropped
    # staging of the bytes path
    cdef int64_t* _bpx
    cdef int64_t* _bqty
    cdef int64_t* _apx
    cdef int64_t* _aqty
    cdef Py_ssize_t _bcap
    cdef Py_ssize_t _acap
    cdef Py_ssize_t _nb
    cdef Py_ssize_t _na
    cdef unsigned char* _scratch
    cdef Py_ssize_t _scratch_cap
    # scanner results
    cdef int64_t _sU
    cdef int64_t _su
    cdef int64_t _spu
    cdef int64_t _sseq
    cdef int _fU           # per id field: 0 missing, 1 ok, 2 present but not an int64 integer
    cdef int _fu
    cdef int _fpu
    cdef int _fseq
    cdef bint _hb
    cdef bint _ha
    cdef int _kind         # bybit: 0 missing, 1 snapshot, 2 delta, 3 other string, 4 not a string
    cdef int _data         # 0 absent, 1 object, 2 not an object
    cdef LevelErr _eb
    cdef LevelErr _ea

    cdef int _grow(self, bint bid) except -1
    cdef cptr _levels(self, cptr p, cptr e, bint bid, int depth) except? NULL
    cdef int _reset_payload(self) noexcept
    cdef int _frame(self, object raw, cptr* p, cptr* e) except -1
    cdef object _level_error(self, LevelErr* err, str name)
    cdef int _raise_content(self) except -1
    cdef readonly int last_result
    cdef int _from_bytes(self, object raw) except -1

cdef class BinanceBookSync(_SyncBase):
    cdef object _buffer
    cdef readonly Py_ssize_t buffer_size
    cdef cptr _binance_obj(self, cptr p, cptr e, bint top, int depth) except? NULL
    cdef int _event(self, int64_t U, int64_t u, int64_t pu, int64_t* bpx, int64_t* bqty, Py_ssize_t nb,
                    int64_t* apx, int64_t* aqty, Py_ssize_t na, bint from_buffer) except -1

cdef class BybitBookSync(_SyncBase):
    cdef bint _gap_reported
    cdef cptr _bybit_data(self, cptr p, cptr e, int depth) except? NULL
    cdef int _message(self, bint snapshot, int64_t u, int64_t* bpx, int64_t* bqty, Py_ssize_t nb,
                      int64_t* apx, int64_t* aqty, Py_ssize_t na) except -1
