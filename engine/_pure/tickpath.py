"""The fused tick-to-decision path: the pure-Python twin of the compiled ``engine._ext.tickpath``.

Same constructor, attributes, result codes and decisions (the float operations are the kernel's, in the
same order: ``float(num) / float(den)`` for the microprice, the indicators twin's EMA). The rule is
documented once, in ``ext/tickpath.pyx``: depth frame -> book sync -> touch -> microprice EMA ->
microprice-vs-EMA with a book-imbalance filter, one decision per regime flip -> risk gate -> intent.
"""

from __future__ import annotations

import math

from engine._pure.booksync import APPLIED, BinanceBookSync
from engine._pure.indicators import EMA
from engine._pure.risk import RiskGate

__all__ = ["TP_BUY", "TP_DENIED", "TP_NONE", "TP_SELL", "TickPath"]

TP_NONE = 0
TP_BUY = 1
TP_SELL = 2
TP_DENIED = 3


class TickPath:
    """See ``ext/tickpath.pyx``."""

    def __init__(
        self,
        *,
        sync: BinanceBookSync,
        gate: RiskGate,
        sid: int = 0,
        ema_period: int = 50,
        threshold_ticks: float = 0.5,
        imbalance_milli: int = 200,
        qty_lots: int = 1,
    ) -> None:
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
        self.threshold_ticks = float(threshold_ticks)
        self.imbalance_milli = imbalance_milli
        self.qty_lots = qty_lots
        self.now_ms = 0
        self._ema = EMA(period=ema_period)
        self.reset()

    def reset(self) -> None:
        """Forget the indicator, the regime and the counters (the book and the gate are the caller's)."""
        self._ema.reset()
        self.regime = 0
        self.side = 0
        self.qty = 0
        self.price = 0
        self.reason = 0
        self.sync_code = -1
        self.messages = self.decisions = self.intents = self.denials = 0

    @property
    def ema(self) -> float:
        value = self._ema.value
        return value if self._ema.ready or not math.isnan(value) else math.nan

    def on_depth(self, raw: bytes | bytearray | str) -> int:
        """One raw depth frame -> ``TP_NONE``, ``TP_BUY``, ``TP_SELL`` or ``TP_DENIED``."""
        self.messages += 1
        code = self.sync.on_bytes(raw)
        self.sync_code = code
        if code != APPLIED:
            return TP_NONE
        bid = self.book.best_bid_ticks()
        ask = self.book.best_ask_ticks()
        if bid is None or ask is None:
            return TP_NONE
        b, bq = bid
        a, aq = ask
        den = bq + aq
        micro = float(b * aq + a * bq) / float(den)
        ema = self._ema.update(micro)
        if not self._ema.ready:
            return TP_NONE
        dev = micro - ema
        side = 0
        if dev > self.threshold_ticks and (bq - aq) * 1000 > self.imbalance_milli * den:
            side = 1
        elif dev < -self.threshold_ticks and (aq - bq) * 1000 > self.imbalance_milli * den:
            side = -1
        if side == 0 or side == self.regime:
            return TP_NONE
        self.regime = side
        self.decisions += 1
        px = b if side > 0 else a
        self.side = side
        self.price = px
        self.gate.set_reference(self.sid, (b + a) // 2)
        rc = self.gate.check(self.sid, side, self.qty_lots, px, 0, 0, 0, self.now_ms)
        self.reason = rc
        if rc != 0:
            self.qty = 0
            self.denials += 1
            return TP_DENIED
        self.qty = self.gate.approved_qty
        self.intents += 1
        return TP_BUY if side > 0 else TP_SELL
