"""Pure-Python twin of ``ext/backtest.pyx``: the fast path's replay loop over decoded rows.

``ReplayLoop(books=, bars=, handler=, want_trades=, want_book=)``; ``run(rows, step_rows, k, nsteps, lo,
hi, next_time, next_sample)`` applies whole market steps from step ``k`` (rows of
``engine.backtest.sources.EVENT_DTYPE``) to the books, feeds trades to the handler
(``on_trade_event(sym, t, px, lots, is_buy) -> bool``) when ``want_trades`` and/or to the bar builders
(``on_bars(sym, bars)`` when a bar completes), depth messages to ``on_book_event(sym, t)`` when
``want_book``, and returns the index of the step after the one that ended with a reason to come back: a
handler asked (signals pending), ``t >= next_time``, or a symbol's mark (the mid, rounded half-even, in
ticks) outside ``[lo[s], hi[s]]``. ``sample_due`` tells whether the last step crossed ``next_sample``
(then the caller records the sample); ``next_sample`` is advanced past every sample the loop recorded
itself through ``handler.on_sample(t)``. ``last_trades()`` gives, per symbol, ``(t, px)`` of the last
trade the last ``run()`` applied, or None. ``rows`` and ``step_rows`` must not change between calls
(their columns are read once per array).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReplayLoop"]


class ReplayLoop:
    def __init__(self, *, books: list[Any], bars: list[Any] | None, handler: Any, want_trades: bool,
                 want_book: bool) -> None:  # fmt: skip
        if bars is not None and len(bars) != len(books):
            raise ValueError(f"bars: {len(bars)} builders for {len(books)} books")
        self.books = list(books)
        self.bars = bars
        self.handler = handler
        self.want_trades = want_trades
        self.want_book = want_book
        self.next_sample = 0
        self.sample_due = False
        self._tick_f = [float(b.tick_size) for b in books]
        self._lot_f = [float(b.lot_size) for b in books]
        self._last: list[tuple[int, int] | None] = [None] * len(books)
        self._rows: Any = None
        self._cols: tuple[list[Any], ...] = ()
        self._step_src: Any = None
        self._srows: list[int] = []

    def last_trades(self) -> list[tuple[int, int] | None]:
        """Per symbol, ``(t, px_ticks)`` of the last trade the last ``run()`` applied, or None."""
        return list(self._last)

    def run(self, rows: Any, step_rows: Any, k: int, nsteps: int, lo: list[int], hi: list[int],
            next_time: int, next_sample: int) -> int:  # fmt: skip
        h = self.handler
        books = self.books
        bars = self.bars
        nsym = len(books)
        tick_f = self._tick_f
        lot_f = self._lot_f
        if rows is not self._rows:  # columns as lists once per array, not once per call
            self._cols = tuple(rows[f].tolist() for f in ("t", "px", "qty", "sym", "kind", "end"))
            self._rows = rows
        if step_rows is not self._step_src:
            self._srows = step_rows.tolist()
            self._step_src = step_rows
        ts, pxs, qtys, syms, kinds, ends = self._cols
        srows = self._srows
        nrows = len(ts)
        if nsteps < 0 or nsteps + 1 > len(srows) or k < 0:
            raise ValueError(f"steps: k={k}, nsteps={nsteps} for {len(srows)} step bounds")
        if nsteps > 0 and srows[nsteps] > nrows:
            raise ValueError(f"step_rows[{nsteps}]={srows[nsteps]} is past the {nrows} rows")
        if len(lo) != nsym or len(hi) != nsym:
            raise ValueError(f"lo/hi need {nsym} entries, got {len(lo)}/{len(hi)}")
        last = self._last = [None] * nsym
        on_trade = h.on_trade_event if self.want_trades else None
        self.sample_due = False
        while k < nsteps:
            a, b = srows[k], srows[k + 1]
            if a < 0 or b < a or b > nrows:
                raise ValueError(f"step {k}: rows [{a}, {b}) outside [0, {nrows}]")
            k += 1
            if a == b:
                raise ValueError(f"step {k - 1} has no rows")
            t = ts[a]
            back = False
            sb: list[tuple[int, int]] = []
            sa: list[tuple[int, int]] = []
            for i in range(a, b):
                kind = kinds[i]
                s = syms[i]
                if s < 0 or s >= nsym:
                    raise ValueError(f"row {i}: symbol index {s} outside [0, {nsym})")
                if kind == 2 or kind == 3:
                    last[s] = (t, pxs[i])
                    if on_trade is not None and on_trade(s, t, pxs[i], qtys[i], kind == 2):
                        back = True
                    if bars is not None:
                        got = bars[s].update(t, tick_f[s] * pxs[i], lot_f[s] * qtys[i])
                        if got and h.on_bars(s, got):
                            back = True
                    continue
                if kind == 0 or kind == 4:
                    sb.append((pxs[i], qtys[i]))
                elif kind == 1 or kind == 5:
                    sa.append((pxs[i], qtys[i]))
                else:
                    raise ValueError(f"row {i}: unknown kind {kind}")
                if ends[i]:
                    books[s]._apply_staged(sb, sa, kind >= 4)
                    sb, sa = [], []
                    if self.want_book and h.on_book_event(s, t):
                        back = True
            if t >= next_sample:
                if back or t >= next_time:
                    self.sample_due = True
                    self.next_sample = next_sample
                    return k
                next_sample = h.on_sample(t)
            self.next_sample = next_sample
            if back or t >= next_time:
                return k
            for s, book in enumerate(books):
                bb, _, ba, _ = book.touch_ticks()
                if bb and ba:
                    m = bb + ba
                    mk = m >> 1
                    if m & 1 and mk & 1:
                        mk += 1
                    if mk < lo[s] or mk > hi[s]:
                        return k
        return k
