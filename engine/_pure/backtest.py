"""Pure-Python twin of ``ext/backtest.pyx``: the fast path's replay loop over decoded rows.

``ReplayLoop(books=, bars=, handler=, want_trades=, want_book=)``; ``run(rows, step_rows, k, nsteps, lo,
hi, next_time, next_sample)`` applies whole market steps from step ``k`` (rows of
``engine.backtest.sources.EVENT_DTYPE``) to the books, feeds trades to the handler
(``on_trade_event(sym, t, px, lots, is_buy) -> bool``) or to the bar builders (``on_bars(sym, bars)``),
depth messages to ``on_book_event(sym, t)`` when ``want_book``, and returns the index of the step after
the one that ended with a reason to come back: a handler asked (signals pending), ``t >= next_time``, or
a symbol's mark (the mid, rounded half-even, in ticks) outside ``[lo[s], hi[s]]``. ``sample_due`` tells
whether the last step crossed ``next_sample`` (then the caller records the sample); ``next_sample`` is
advanced past every sample the loop recorded itself through ``handler.on_sample(t)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReplayLoop"]


class ReplayLoop:
    def __init__(self, *, books: list[Any], bars: list[Any] | None, handler: Any, want_trades: bool,
                 want_book: bool) -> None:  # fmt: skip
        self.books = books
        self.bars = bars
        self.handler = handler
        self.want_trades = want_trades
        self.want_book = want_book
        self.next_sample = 0
        self.sample_due = False

    def run(self, rows: Any, step_rows: Any, k: int, nsteps: int, lo: list[int], hi: list[int],
            next_time: int, next_sample: int) -> int:  # fmt: skip
        h = self.handler
        books = self.books
        bars = self.bars
        tick_f = [float(b.tick_size) for b in books]
        lot_f = [float(b.lot_size) for b in books]
        ts = rows["t"].tolist()
        pxs = rows["px"].tolist()
        qtys = rows["qty"].tolist()
        syms = rows["sym"].tolist()
        kinds = rows["kind"].tolist()
        ends = rows["end"].tolist()
        srows = step_rows.tolist()
        self.sample_due = False
        while k < nsteps:
            a, b = srows[k], srows[k + 1]
            k += 1
            t = ts[a]
            back = False
            sb: list[tuple[int, int]] = []
            sa: list[tuple[int, int]] = []
            for i in range(a, b):
                kind = kinds[i]
                s = syms[i]
                if kind >= 2 and kind <= 3:
                    is_buy = kind == 2
                    if h.on_trade_event(s, t, pxs[i], qtys[i], is_buy):
                        back = True
                    if bars is not None:
                        got = bars[s].update(t, tick_f[s] * pxs[i], lot_f[s] * qtys[i])
                        if got and h.on_bars(s, got):
                            back = True
                    continue
                (sb if kind in (0, 4) else sa).append((pxs[i], qtys[i]))
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
