# cython: boundscheck=False, wraparound=False, cdivision=True
"""The fused in-process tick-to-decision path (compiled kernel); twin: ``engine._pure.tickpath``.

One Python-to-Cython call per depth message: ``TickPath.on_depth(raw)`` takes a raw Binance
``depthUpdate`` frame (bare or combined-stream envelope) and runs, without leaving C on the happy path:

1. the book sync's bytes scanner and sequence rules (``BinanceBookSync``; its cdef scanner, the same
   code ``on_bytes`` runs) -> the L2 book (``OrderBook.apply_staged``);
2. the touch: best bid ``b`` (``bq`` lots) and best ask ``a`` (``aq`` lots), in ticks;
3. the indicator: the size-weighted microprice ``micro = (b*aq + a*bq) / (bq + aq)`` (ticks, a double:
   the int64 numerator and denominator each converted to double, then divided) fed to an EMA
   (``ema_push``: the indicators kernel's step, seeded with the SMA of the first ``ema_period`` values);
4. the built-in decision (once the EMA is ready): with ``dev = micro - ema`` and the integer book
   imbalance test ``(bq - aq) * 1000 > imbalance_milli * (bq + aq)``, a *buy* when ``dev >
   threshold_ticks`` and the bid side outweighs, a *sell* when ``dev < -threshold_ticks`` and the ask
   side outweighs; a decision is made only when it flips the wanted ``regime`` (+1/-1), so a steady
   signal gives one intent, not one per message. The intent joins the own side of the touch: a buy at
   ``b``, a sell at ``a``, for ``qty_lots``;
5. the pre-trade risk gate: ``set_reference(sid, (b + a) // 2)`` then ``RiskGate.c_check(sid, side,
   qty, price, 0, 0, 0, now_ms)`` (``now_ms`` is the caller's clock attribute);
6. the result: ``BUY`` / ``SELL`` (approved; ``side``, ``qty`` = the gate's ``approved_qty``, ``price``
   readable as attributes), ``DENIED`` (``reason`` = the gate's code) or ``NONE``.

Frames the scanner does not accept on the fast path (malformed, wrong types) are handed to the sync's
own ``on_bytes``, which raises exactly the error it always raises; the book is unchanged then. Messages
that are not applied (STALE, BUFFERED, GAP; ``sync_code`` says which) make no decision.
"""

from libc.stdint cimport int64_t

from engine._ext.book cimport OrderBook
from engine._ext.booksync cimport BinanceBookSync, cptr
from engine._ext.indicators cimport ema_init, ema_push
from engine._ext.risk cimport RiskGate
from engine._ext.tickpath cimport TICKPATH_BUY, TICKPATH_DENIED, TICKPATH_SELL

__all__ = ["TP_BUY", "TP_DENIED", "TP_NONE", "TP_SELL", "TickPath"]

TP_NONE = 0
TP_BUY = 1
TP_SELL = 2
TP_DENIED = 3

cdef int _APPLIED = 0


cdef inline cptr _ws(cptr p, cptr e) noexcept nogil:
    while p < e and (p[0] == 32 or p[0] == 9 or p[0] == 10 or p[0] == 13):
        p += 1
    return p


cdef class TickPath:
    """``TickPath(sync=BinanceBookSync, gate=RiskGate, sid=0, ema_period=50, threshold_ticks=0.5,
    imbalance_milli=200, qty_lots=1)``; see the module docstring for the rule."""

    def __init__(self, *, sync: BinanceBookSync, gate: RiskGate, sid: int = 0, ema_period: int = 50,
                 threshold_ticks: float = 0.5, imbalance_milli: int = 200, qty_lots: int = 1) -> None:
        if ema_period < 1:
            raise ValueError(f"ema_period must be >= 1, got {ema_period}")
        if threshold_ticks < 0.0:
            raise ValueError(f"threshold_ticks must be >= 0, got {threshold_ticks}")
        if imbalance_milli < 0 or imbalance_milli > 1000:
            raise ValueError(f"imbalance_milli must be in 0..1000, got {imbalance_milli}")
        if qty_lots < 1:
            raise ValueError(f"qty_lots must be >= 1, got {qty_lots}")
        if sid < 0 or sid >= gate.max_symbols:
            raise ValueError(f"sid {sid} is out of the gate's range 0..{gate.max_symbols - 1}")
        self.sync = sync
        self.book = sync.book
        self.gate = gate
        self.sid = sid
        self.ema_period = ema_period
        self.threshold_ticks = threshold_ticks
        self.imbalance_milli = imbalance_milli
        self.qty_lots = qty_lots
        self.now_ms = 0
        self.reset()

    def reset(self) -> None:
        """Forget the indicator, the regime and the counters (the book and the gate are the caller's)."""
        ema_init(&self._ema, self.ema_period)
        self.regime = 0
        self.side = 0
        self.qty = 0
        self.price = 0
        self.reason = 0
        self.sync_code = -1
        self.messages = self.decisions = self.intents = self.denials = 0

    @property
    def ema(self) -> float:
        """The EMA of the microprice, in ticks (NaN until ``ema_period`` messages were applied)."""
        return self._ema.value

    def on_depth(self, raw: object) -> int:
        """One raw depth frame -> ``NONE``, ``BUY``, ``SELL`` or ``DENIED`` (see the module docstring)."""
        return self.c_on_depth(raw)

    cdef int c_on_depth(self, object raw) except -1:
        cdef BinanceBookSync s = self.sync
        cdef cptr p
        cdef cptr e
        cdef int code
        self.messages += 1
        # -- 1. the sync's scanner (as BinanceBookSync.on_bytes); anything unusual -> on_bytes itself
        s._frame(raw, &p, &e)
        s._reset_payload()
        s._data = 0
        p = _ws(p, e)
        if p >= e or p[0] != 123:
            return self._slow(raw)
        p = s._binance_obj(_ws(p + 1, e), e, True, 1)
        if (p == NULL or _ws(p, e) != e or s._data == 2 or s._fU != 1 or s._fu != 1 or s._fpu != 1
                or not s._hb or not s._ha or s._eb.code or s._ea.code):
            return self._slow(raw)
        code = s._event(s._sU, s._su, s._spu, s._bpx, s._bqty, s._nb, s._apx, s._aqty, s._na, False)
        return self._decide(code)

    cdef int _slow(self, object raw) except -1:
        return self._decide(self.sync.on_bytes(raw))

    cdef int _decide(self, int code) except -1:
        cdef int side, rc
        cdef int64_t b = 0, bq = 0, a = 0, aq = 0, num, den, px
        cdef double micro, ema, dev
        self.sync_code = code
        if code != _APPLIED:
            return 0
        # -- 2. the touch
        if not self.book.c_best_bid(&b, &bq) or not self.book.c_best_ask(&a, &aq):
            return 0
        # -- 3. microprice -> EMA
        num = b * aq + a * bq
        den = bq + aq
        micro = <double>num / <double>den
        ema = ema_push(&self._ema, micro)
        if not self._ema.ready:
            return 0
        # -- 4. the decision
        dev = micro - ema
        side = 0
        if dev > self.threshold_ticks and (bq - aq) * 1000 > self.imbalance_milli * den:
            side = 1
        elif dev < -self.threshold_ticks and (aq - bq) * 1000 > self.imbalance_milli * den:
            side = -1
        if side == 0 or side == self.regime:
            return 0
        self.regime = side
        self.decisions += 1
        px = b if side > 0 else a
        self.side = side
        self.price = px
        # -- 5. the risk gate
        self.gate.set_reference(self.sid, (b + a) // 2)
        rc = self.gate.c_check(self.sid, side, self.qty_lots, px, 0, 0, 0, self.now_ms)
        self.reason = rc
        if rc != 0:
            self.qty = 0
            self.denials += 1
            return TICKPATH_DENIED
        self.qty = self.gate.approved_qty
        self.intents += 1
        return TICKPATH_BUY if side > 0 else TICKPATH_SELL
