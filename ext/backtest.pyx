# cython: boundscheck=False, wraparound=False, cdivision=True
"""The backtester's fast-path replay loop (compiled kernel); twin: ``engine._pure.backtest``.

``ReplayLoop(books=, bars=, handler=, want_trades=, want_book=)``; ``run(rows, step_rows, k, nsteps,
lo, hi, next_time, next_sample)`` applies whole market steps from step ``k`` (rows of
``engine.backtest.sources.EVENT_DTYPE``, read through a typed memoryview of the packed ``Row`` struct)
to the kernel books (``OrderBook.apply_staged``), feeds trades to the handler
(``on_trade_event(sym, t, px, lots, is_buy) -> bool``) when ``want_trades`` and/or to the bar builders
(``on_bars(sym, bars)`` when a bar completes), depth messages to ``on_book_event(sym, t)`` when
``want_book``, and returns the index of the step after the one that ended with a reason to come back: a
handler asked (signals pending), ``t >= next_time``, or a symbol's mark (the mid, rounded half-even, in
ticks) outside ``[lo[s], hi[s]]``. ``sample_due`` tells whether the last step crossed ``next_sample``
(then the caller records the sample); ``next_sample`` is advanced past every sample the loop recorded
itself through ``handler.on_sample(t)``. ``last_trades()`` gives, per symbol, ``(t, px)`` of the last
trade the last ``run()`` applied, or None.

Nothing Python is touched per row unless a handler is called: depth rows are staged into C arrays, a
trade inside the open bar updates the ``BarBuilder``'s fields in place (the same statements as
``BarBuilder.update``'s same-interval branch, which is the only branch that returns no bars without
side counters); any other trade goes through ``BarBuilder.update``. The index math is covered by the
kernel tests (tests/kernels/test_backtest_kernel.py), which compare every stop point, book, bar and
handler call with the twin.
"""

from libc.math cimport INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc

from engine._ext.bars cimport BarBuilder
from engine._ext.book cimport OrderBook

__all__ = ["ReplayLoop"]

DEF_CAP = 64


cdef class ReplayLoop:
    def __cinit__(self) -> None:
        self._tick_f = NULL
        self._lot_f = NULL
        self._lo = NULL
        self._hi = NULL
        self._last_t = NULL
        self._last_px = NULL
        self._traded = NULL
        self._bpx = NULL
        self._bqty = NULL
        self._apx = NULL
        self._aqty = NULL
        self._bcap = 0
        self._acap = 0

    def __init__(self, *, books: list, bars: object, handler: object, want_trades: bool,
                 want_book: bool) -> None:
        cdef Py_ssize_t n = len(books), s
        for b in books:
            if not isinstance(b, OrderBook):
                raise TypeError(f"ReplayLoop needs compiled OrderBook books, got {type(b).__name__}")
        if bars is not None:
            if len(bars) != n:
                raise ValueError(f"bars: {len(bars)} builders for {n} books")
            for bb in bars:
                if not isinstance(bb, BarBuilder):
                    raise TypeError(f"ReplayLoop needs compiled BarBuilder bars, got {type(bb).__name__}")
        self.books = list(books)
        self.bars = bars
        self._bars = list(bars) if bars is not None else None
        self.handler = handler
        self.want_trades = want_trades
        self.want_book = want_book
        self.next_sample = 0
        self.sample_due = False
        self._nsym = n
        self._on_trade = handler.on_trade_event if want_trades else None
        self._on_bars = handler.on_bars if bars is not None else None
        self._on_book = handler.on_book_event if want_book else None
        self._on_sample = handler.on_sample
        m = n if n > 0 else 1
        self._tick_f = <double*>malloc(m * sizeof(double))
        self._lot_f = <double*>malloc(m * sizeof(double))
        self._lo = <int64_t*>malloc(m * sizeof(int64_t))
        self._hi = <int64_t*>malloc(m * sizeof(int64_t))
        self._last_t = <int64_t*>malloc(m * sizeof(int64_t))
        self._last_px = <int64_t*>malloc(m * sizeof(int64_t))
        self._traded = <bint*>malloc(m * sizeof(bint))
        self._bpx = <int64_t*>malloc(DEF_CAP * sizeof(int64_t))
        self._bqty = <int64_t*>malloc(DEF_CAP * sizeof(int64_t))
        self._apx = <int64_t*>malloc(DEF_CAP * sizeof(int64_t))
        self._aqty = <int64_t*>malloc(DEF_CAP * sizeof(int64_t))
        if (self._tick_f == NULL or self._lot_f == NULL or self._lo == NULL or self._hi == NULL
                or self._last_t == NULL or self._last_px == NULL or self._traded == NULL
                or self._bpx == NULL or self._bqty == NULL or self._apx == NULL or self._aqty == NULL):
            raise MemoryError()
        self._bcap = DEF_CAP
        self._acap = DEF_CAP
        for s in range(n):
            self._tick_f[s] = float(books[s].tick_size)
            self._lot_f[s] = float(books[s].lot_size)
            self._last_t[s] = 0
            self._last_px[s] = 0
            self._traded[s] = False

    def __dealloc__(self) -> None:
        free(self._tick_f)
        free(self._lot_f)
        free(self._lo)
        free(self._hi)
        free(self._last_t)
        free(self._last_px)
        free(self._traded)
        free(self._bpx)
        free(self._bqty)
        free(self._apx)
        free(self._aqty)

    cdef int _grow(self, bint bid) except -1:
        cdef Py_ssize_t cap = (self._bcap if bid else self._acap) * 2
        cdef int64_t* px
        cdef int64_t* qty
        if bid:
            px = <int64_t*>realloc(self._bpx, cap * sizeof(int64_t))
            if px == NULL:
                raise MemoryError()
            self._bpx = px
            qty = <int64_t*>realloc(self._bqty, cap * sizeof(int64_t))
            if qty == NULL:
                raise MemoryError()
            self._bqty = qty
            self._bcap = cap
        else:
            px = <int64_t*>realloc(self._apx, cap * sizeof(int64_t))
            if px == NULL:
                raise MemoryError()
            self._apx = px
            qty = <int64_t*>realloc(self._aqty, cap * sizeof(int64_t))
            if qty == NULL:
                raise MemoryError()
            self._aqty = qty
            self._acap = cap
        return 0

    def last_trades(self) -> list:
        """Per symbol, ``(t, px_ticks)`` of the last trade the last ``run()`` applied, or None."""
        return [(self._last_t[s], self._last_px[s]) if self._traded[s] else None
                for s in range(self._nsym)]

    def run(self, const Row[::1] rows, const int64_t[::1] step_rows, Py_ssize_t k, Py_ssize_t nsteps,
            list lo, list hi, int64_t next_time, int64_t next_sample) -> int:
        cdef Py_ssize_t nsym = self._nsym, s, i, a, b, nb = 0, na = 0
        cdef Py_ssize_t nrows = rows.shape[0]
        cdef int64_t t, px, qty, m, mk, bb, bq, ba, aq, start
        cdef int kind
        cdef bint back, is_buy, want_trades = self.want_trades, want_book = self.want_book
        cdef bint has_bars = self._bars is not None
        cdef double price, size
        cdef const Row* r
        cdef OrderBook book
        cdef BarBuilder bar
        cdef object got
        if nsteps < 0 or nsteps + 1 > step_rows.shape[0] or k < 0:
            raise ValueError(f"steps: k={k}, nsteps={nsteps} for {step_rows.shape[0]} step bounds")
        if nsteps > 0 and step_rows[nsteps] > nrows:
            raise ValueError(f"step_rows[{nsteps}]={step_rows[nsteps]} is past the {nrows} rows")
        if len(lo) != nsym or len(hi) != nsym:
            raise ValueError(f"lo/hi need {nsym} entries, got {len(lo)}/{len(hi)}")
        for s in range(nsym):
            self._lo[s] = lo[s]
            self._hi[s] = hi[s]
            self._traded[s] = False
        self.sample_due = False
        while k < nsteps:
            a = step_rows[k]
            b = step_rows[k + 1]
            if a < 0 or b < a or b > nrows:
                raise ValueError(f"step {k}: rows [{a}, {b}) outside [0, {nrows}]")
            k += 1
            if a == b:
                raise ValueError(f"step {k - 1} has no rows")
            t = rows[a].t
            back = False
            nb = 0
            na = 0
            for i in range(a, b):
                r = &rows[i]
                kind = r.kind
                s = r.sym
                if s < 0 or s >= nsym:
                    raise ValueError(f"row {i}: symbol index {s} outside [0, {nsym})")
                if kind == 2 or kind == 3:
                    is_buy = kind == 2
                    px = r.px
                    qty = r.qty
                    self._last_t[s] = t
                    self._last_px[s] = px
                    self._traded[s] = True
                    if want_trades and self._on_trade(s, t, px, qty, is_buy):
                        back = True
                    if has_bars:
                        bar = <BarBuilder>self._bars[s]
                        price = self._tick_f[s] * <double>px
                        size = self._lot_f[s] * <double>qty
                        if (bar._has_bar and t >= 0 and price >= 0.0 and price < INFINITY
                                and size >= 0.0 and size < INFINITY):
                            start = t - t % bar.interval_ms
                            if start == bar._start:
                                if price > bar._high:
                                    bar._high = price
                                if price < bar._low:
                                    bar._low = price
                                bar._close = price
                                bar._volume += size
                                bar._quote += price * size
                                bar._trades += 1
                                continue
                        got = bar.update(t, price, size)
                        if got and self._on_bars(s, got):
                            back = True
                    continue
                if kind == 0 or kind == 4:
                    if nb == self._bcap:
                        self._grow(True)
                    self._bpx[nb] = r.px
                    self._bqty[nb] = r.qty
                    nb += 1
                elif kind == 1 or kind == 5:
                    if na == self._acap:
                        self._grow(False)
                    self._apx[na] = r.px
                    self._aqty[na] = r.qty
                    na += 1
                else:
                    raise ValueError(f"row {i}: unknown kind {kind}")
                if r.end:
                    book = <OrderBook>self.books[s]
                    book.apply_staged(self._bpx, self._bqty, nb, self._apx, self._aqty, na, kind >= 4)
                    nb = 0
                    na = 0
                    if want_book and self._on_book(s, t):
                        back = True
            if t >= next_sample:
                if back or t >= next_time:
                    self.sample_due = True
                    self.next_sample = next_sample
                    return k
                next_sample = self._on_sample(t)
            self.next_sample = next_sample
            if back or t >= next_time:
                return k
            for s in range(nsym):
                book = <OrderBook>self.books[s]
                if book.c_best_bid(&bb, &bq) and book.c_best_ask(&ba, &aq) and bb and ba:
                    m = bb + ba
                    mk = m >> 1
                    if m & 1 and mk & 1:
                        mk += 1
                    if mk < self._lo[s] or mk > self._hi[s]:
                        return k
        return k
