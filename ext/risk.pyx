# cython: boundscheck=False, wraparound=False, cdivision=True
"""The synchronous pre-trade risk gate (compiled kernel); twin: ``engine._pure.risk``.

``RiskGate.check`` decides one order on integers only: quantities in lots, prices in ticks, money in
*quote units* (a power of ten of the quote asset, chosen by the caller so that every symbol's
``notional_mult`` = lot_size * tick_size / unit is an integer), times in epoch milliseconds. No float,
no ``Decimal`` and no Python object is touched per check. It returns ``APPROVED`` (0) or a reason code
(``REASONS`` names them); it never raises for a denial. ``approved_qty`` holds the approved size (lots),
which can be smaller than asked (a reduce-only order clipped to the position, or an entry clipped to
an exposure limit when ``reduce_to_limit`` is set), and 0 after a denial.

Limits: a limit of 0 means "no limit" everywhere. Maxima are inclusive (an order exactly at
``max_qty`` passes, one lot more is denied); the price band denies a limit price *more than*
``price_band_bps`` from the reference; the risk/reward minimum is inclusive.

Order of the checks (the first failing one is the reason):

1. ``DENY_UNKNOWN_SYMBOL`` (id out of range or not configured), ``DENY_INVALID`` (qty <= 0, side not
   +1/-1, a negative price/stop/target or time), ``DENY_STOPPED`` (gate stopped: nothing passes),
   ``DENY_EMERGENCY`` (gate in emergency: only orders flagged ``FLAG_FLATTEN`` pass).
2. Exits -- ``FLAG_REDUCE_ONLY`` (``FLAG_FLATTEN`` implies it): must be opposite to a non-zero position
   (else ``DENY_REDUCE_ONLY``) and are clipped to its size. They pass paused, book health, cooling-off,
   qty/notional, open-order, position, exposure, leverage and rate limits (a protective exit is never
   throttled; it still takes a token when one is there). A limit price on a non-flattening exit is held
   to the price band (``DENY_NO_REFERENCE`` without a reference when a band is set).
3. Entries, in this order: ``DENY_PAUSED``, ``DENY_BOOK_UNHEALTHY``, ``DENY_COOLING_OFF`` (now_ms <
   cooling_until_ms), ``DENY_NO_REFERENCE``, ``DENY_MIN_QTY``, ``DENY_MAX_QTY``, ``DENY_MAX_NOTIONAL``
   (qty x (limit price, else reference) x mult), ``DENY_PRICE_BAND`` (|price - ref| x 10000 >
   band_bps x ref), ``DENY_RISK_REWARD`` (when a stop and a target are given and a minimum is set:
   reward x 1000 < min_rr_milli x risk, or a stop/target on the wrong side of the entry),
   ``DENY_OPEN_ORDERS``, ``DENY_POSITION_LIMIT``, ``DENY_TOTAL_EXPOSURE``, ``DENY_LEVERAGE`` (see
   below), ``DENY_RATE_SECOND``, ``DENY_RATE_MINUTE``.

Exposure. The gate counts open orders as if they all fill: per symbol, the worst-case position is
``max(pos + pending_buy, pending_sell - pos)`` lots, valued at the reference price (mid or mark); the
symbol's exposure is that times ``ref x mult`` (clamped to ``EXPOSURE_CAP``), and the total is the sum
over symbols. An entry that raises its symbol's worst case must keep it within the position limit, the
total within ``max_total_notional`` and the total within ``max_leverage_milli / 1000 x equity``; an
order that does not raise the worst case (it shrinks the position) passes them all. With
``reduce_to_limit`` such an entry is clipped to the largest size that fits (denied if that is below the
symbol's ``min_qty``). Approval books the order: open orders + 1, pending lots on its side + qty.
``on_fill``, ``on_order_done``, ``set_position`` and ``set_open_orders`` keep that state true.

Rate: two token buckets (per second, per minute), shared by every symbol of the gate (the account's
order rate). Full at start; refilled continuously (``rate`` tokens per window, in integer
milli-tokens: tokens are scaled by the window length in ms, refill ``rate`` per ms, an order costs
``window``). Only approved orders take a token.

Cooling-off: ``record_trade(sign, now_ms)`` counts consecutive losing trades (sign < 0; a win resets,
a zero result changes nothing); at ``cooling_off_losses`` losses entries are denied until
``now_ms + cooling_off_ms`` and the count restarts.

Arithmetic that could overflow int64 saturates (products) -- never wraps.
"""

cimport cython
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t
from libc.stdlib cimport calloc, free

cdef extern from *:
    """
    static inline int64_t risk_sat_mul(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_mul_overflow(a, b, &r)) return ((a < 0) != (b < 0)) ? INT64_MIN : INT64_MAX;
        return r;
    }
    static inline int64_t risk_sat_add(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_add_overflow(a, b, &r)) return (a < 0) ? INT64_MIN : INT64_MAX;
        return r;
    }
    """
    int64_t risk_sat_mul(int64_t a, int64_t b) noexcept nogil
    int64_t risk_sat_add(int64_t a, int64_t b) noexcept nogil

__all__ = [
    "APPROVED",
    "DENY_BOOK_UNHEALTHY",
    "DENY_COOLING_OFF",
    "DENY_EMERGENCY",
    "DENY_INVALID",
    "DENY_LEVERAGE",
    "DENY_MAX_NOTIONAL",
    "DENY_MAX_QTY",
    "DENY_MIN_QTY",
    "DENY_NO_REFERENCE",
    "DENY_OPEN_ORDERS",
    "DENY_PAUSED",
    "DENY_POSITION_LIMIT",
    "DENY_PRICE_BAND",
    "DENY_RATE_MINUTE",
    "DENY_RATE_SECOND",
    "DENY_REDUCE_ONLY",
    "DENY_RISK_REWARD",
    "DENY_STOPPED",
    "DENY_TOTAL_EXPOSURE",
    "DENY_UNKNOWN_SYMBOL",
    "EXPOSURE_CAP",
    "FLAG_FLATTEN",
    "FLAG_REDUCE_ONLY",
    "GATE_EMERGENCY",
    "GATE_PAUSED",
    "GATE_RUNNING",
    "GATE_STOPPED",
    "MAX_RATE",
    "MAX_SYMBOLS",
    "REASONS",
    "RiskGate",
]

APPROVED = RISK_APPROVED
DENY_INVALID = RISK_DENY_INVALID
DENY_UNKNOWN_SYMBOL = RISK_DENY_UNKNOWN_SYMBOL
DENY_STOPPED = RISK_DENY_STOPPED
DENY_EMERGENCY = RISK_DENY_EMERGENCY
DENY_REDUCE_ONLY = RISK_DENY_REDUCE_ONLY
DENY_PAUSED = RISK_DENY_PAUSED
DENY_BOOK_UNHEALTHY = RISK_DENY_BOOK_UNHEALTHY
DENY_COOLING_OFF = RISK_DENY_COOLING_OFF
DENY_NO_REFERENCE = RISK_DENY_NO_REFERENCE
DENY_MIN_QTY = RISK_DENY_MIN_QTY
DENY_MAX_QTY = RISK_DENY_MAX_QTY
DENY_MAX_NOTIONAL = RISK_DENY_MAX_NOTIONAL
DENY_PRICE_BAND = RISK_DENY_PRICE_BAND
DENY_RISK_REWARD = RISK_DENY_RISK_REWARD
DENY_OPEN_ORDERS = RISK_DENY_OPEN_ORDERS
DENY_POSITION_LIMIT = RISK_DENY_POSITION_LIMIT
DENY_TOTAL_EXPOSURE = RISK_DENY_TOTAL_EXPOSURE
DENY_LEVERAGE = RISK_DENY_LEVERAGE
DENY_RATE_SECOND = RISK_DENY_RATE_SECOND
DENY_RATE_MINUTE = RISK_DENY_RATE_MINUTE

GATE_RUNNING = RISK_GATE_RUNNING
GATE_PAUSED = RISK_GATE_PAUSED
GATE_EMERGENCY = RISK_GATE_EMERGENCY
GATE_STOPPED = RISK_GATE_STOPPED

FLAG_REDUCE_ONLY = RISK_FLAG_REDUCE_ONLY
FLAG_FLATTEN = RISK_FLAG_FLATTEN

#: Reason code -> snake_case name (the ``Denied.reason`` the manager reports).
REASONS = {
    RISK_APPROVED: "approved",
    RISK_DENY_INVALID: "invalid_order",
    RISK_DENY_UNKNOWN_SYMBOL: "unknown_symbol",
    RISK_DENY_STOPPED: "engine_stopped",
    RISK_DENY_EMERGENCY: "emergency_stopped",
    RISK_DENY_REDUCE_ONLY: "reduce_only_invalid",
    RISK_DENY_PAUSED: "paused",
    RISK_DENY_BOOK_UNHEALTHY: "book_unhealthy",
    RISK_DENY_COOLING_OFF: "cooling_off",
    RISK_DENY_NO_REFERENCE: "no_reference_price",
    RISK_DENY_MIN_QTY: "size_below_minimum",
    RISK_DENY_MAX_QTY: "max_order_qty",
    RISK_DENY_MAX_NOTIONAL: "max_order_notional",
    RISK_DENY_PRICE_BAND: "price_band",
    RISK_DENY_RISK_REWARD: "risk_reward",
    RISK_DENY_OPEN_ORDERS: "max_open_orders",
    RISK_DENY_POSITION_LIMIT: "position_limit",
    RISK_DENY_TOTAL_EXPOSURE: "total_exposure",
    RISK_DENY_LEVERAGE: "max_leverage",
    RISK_DENY_RATE_SECOND: "rate_limit_second",
    RISK_DENY_RATE_MINUTE: "rate_limit_minute",
}

#: Most symbols one gate holds.
MAX_SYMBOLS = 256
#: A symbol's exposure is clamped here (quote units), so the sum over MAX_SYMBOLS cannot overflow.
EXPOSURE_CAP = 1 << 54
#: Most orders per window a token bucket accepts as its rate.
MAX_RATE = 1_000_000_000

cdef int64_t _EXPOSURE_CAP = (<int64_t>1) << 54
cdef int64_t _SEC_MS = 1000
cdef int64_t _MIN_MS = 60000


cdef inline int64_t _lim(int64_t value) noexcept nogil:
    """A configured maximum: 0 (no limit) becomes INT64_MAX."""
    return INT64_MAX if value == 0 else value


cdef inline int64_t _cap_div(int64_t limit, int64_t k) noexcept nogil:
    """Most lots worth at most ``limit`` at ``k`` quote units per lot (k >= 1); INT64_MAX is no limit;
    a negative limit (already over) gives -1."""
    if limit == INT64_MAX:
        return INT64_MAX
    if limit < 0:
        return -1
    return limit // k


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a >= b else b


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a <= b else b


cdef inline bint _nonneg(str name, int64_t value) except False:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return True


@cython.final
cdef class RiskGate:
    """Per-symbol limits and state plus the account-wide ones; see the module docstring.

    ``RiskGate(max_symbols=64)``; symbols are ids ``0 <= sid < max_symbols`` and must be configured with
    :meth:`configure_symbol` before use. A new gate is running, with every book unhealthy until
    :meth:`set_book_healthy`, no reference prices, zero equity and no limits.
    """

    def __cinit__(self, *, int max_symbols=64):
        if max_symbols < 1 or max_symbols > MAX_SYMBOLS:
            raise ValueError(f"max_symbols must be in 1..{MAX_SYMBOLS}, got {max_symbols}")
        self._sym = <SymbolRisk*>calloc(max_symbols, sizeof(SymbolRisk))
        if self._sym == NULL:
            raise MemoryError()
        self.max_symbols = max_symbols
        self.state = RISK_GATE_RUNNING
        self._max_order_notional = INT64_MAX
        self._max_total = INT64_MAX
        self._leverage_cap = INT64_MAX

    def __dealloc__(self):
        free(self._sym)

    cdef SymbolRisk* _get(self, int sid) except NULL:
        if sid < 0 or sid >= self.max_symbols:
            raise IndexError(f"symbol id {sid} out of range 0..{self.max_symbols - 1}")
        return &self._sym[sid]

    # ---- configuration -------------------------------------------------------------------------

    def configure_symbol(self, int sid, *, int64_t notional_mult, int64_t max_qty=0, int64_t min_qty=1,
                         int64_t max_position_notional=0, int64_t max_open_orders=0):
        """Set a symbol's limits (0 = no limit); its state (position, orders, reference) is kept."""
        cdef SymbolRisk* s = self._get(sid)
        if notional_mult < 1:
            raise ValueError(f"notional_mult must be >= 1, got {notional_mult}")
        if min_qty < 1:
            raise ValueError(f"min_qty must be >= 1 lot, got {min_qty}")
        _nonneg("max_qty", max_qty)
        _nonneg("max_position_notional", max_position_notional)
        _nonneg("max_open_orders", max_open_orders)
        s.mult = notional_mult
        s.max_qty = _lim(max_qty)
        s.min_qty = min_qty
        s.max_pos_notional = _lim(max_position_notional)
        s.max_open = _lim(max_open_orders)
        s.k = risk_sat_mul(s.ref, s.mult) if s.ref > 0 else 0
        self._refresh(s)

    def set_limits(self, *, int64_t max_order_notional=0, int64_t max_total_notional=0,
                   int64_t max_leverage_milli=0, int64_t max_orders_per_second=0,
                   int64_t max_orders_per_minute=0, int64_t price_band_bps=0, int64_t min_rr_milli=0,
                   int64_t cooling_off_losses=0, int64_t cooling_off_ms=0, bint reduce_to_limit=False):
        """Set the account-wide limits (0 = no limit). A bucket whose rate changes keeps its tokens up
        to the new capacity; a bucket that was off starts full."""
        _nonneg("max_order_notional", max_order_notional)
        _nonneg("max_total_notional", max_total_notional)
        _nonneg("max_leverage_milli", max_leverage_milli)
        _nonneg("price_band_bps", price_band_bps)
        _nonneg("min_rr_milli", min_rr_milli)
        _nonneg("cooling_off_losses", cooling_off_losses)
        _nonneg("cooling_off_ms", cooling_off_ms)
        for name, rate in (("max_orders_per_second", max_orders_per_second),
                           ("max_orders_per_minute", max_orders_per_minute)):
            if rate < 0 or rate > MAX_RATE:
                raise ValueError(f"{name} must be in 0..{MAX_RATE}, got {rate}")
        self._max_order_notional = _lim(max_order_notional)
        self._max_total = _lim(max_total_notional)
        self._max_leverage_milli = max_leverage_milli
        self._price_band_bps = price_band_bps
        self._min_rr_milli = min_rr_milli
        self._cooling_losses = cooling_off_losses
        self._cooling_ms = cooling_off_ms
        self._reduce_to_limit = reduce_to_limit
        if max_orders_per_second != self._rate_sec:
            self._tok_sec = (_min(self._tok_sec, max_orders_per_second * _SEC_MS) if self._rate_sec > 0
                             else max_orders_per_second * _SEC_MS)
            self._rate_sec = max_orders_per_second
        if max_orders_per_minute != self._rate_min:
            self._tok_min = (_min(self._tok_min, max_orders_per_minute * _MIN_MS) if self._rate_min > 0
                             else max_orders_per_minute * _MIN_MS)
            self._rate_min = max_orders_per_minute
        self._update_leverage_cap()

    cdef void _update_leverage_cap(self) noexcept nogil:
        if self._max_leverage_milli == 0:
            self._leverage_cap = INT64_MAX
        elif self.equity <= 0:
            self._leverage_cap = 0
        else:
            self._leverage_cap = risk_sat_mul(self._max_leverage_milli, self.equity) // 1000

    def set_state(self, int state):
        """``GATE_RUNNING``, ``GATE_PAUSED``, ``GATE_EMERGENCY`` or ``GATE_STOPPED``."""
        if state < RISK_GATE_RUNNING or state > RISK_GATE_STOPPED:
            raise ValueError(f"unknown gate state {state}")
        self.state = state

    # ---- market and account state -----------------------------------------------------------------

    def set_reference(self, int sid, int64_t ticks):
        """The reference price (mid or mark) in ticks; 0 = unknown (entries are denied)."""
        cdef SymbolRisk* s = self._get(sid)
        _nonneg("reference", ticks)
        s.ref = ticks
        s.k = risk_sat_mul(ticks, s.mult) if ticks > 0 else 0
        self._refresh(s)

    def set_book_healthy(self, int sid, bint healthy):
        self._get(sid).healthy = healthy

    def set_equity(self, int64_t equity):
        """Account equity in quote units (the leverage limit is exposure / equity)."""
        self.equity = equity
        self._update_leverage_cap()

    def set_position(self, int sid, int64_t lots):
        """The signed position (reconciled with the venue)."""
        cdef SymbolRisk* s = self._get(sid)
        s.pos = lots
        self._refresh(s)

    def set_open_orders(self, int sid, int64_t count, int64_t buy_lots, int64_t sell_lots):
        """The open orders (count, unfilled lots per side), reconciled with the venue."""
        cdef SymbolRisk* s = self._get(sid)
        _nonneg("count", count)
        _nonneg("buy_lots", buy_lots)
        _nonneg("sell_lots", sell_lots)
        s.open_count = count
        s.pend_buy = buy_lots
        s.pend_sell = sell_lots
        self._refresh(s)

    def on_fill(self, int sid, int side, int64_t lots):
        """An approved order filled ``lots`` (side +1 buy, -1 sell): the position moves, its pending lots
        shrink. The order stays open until :meth:`on_order_done`."""
        cdef SymbolRisk* s = self._get(sid)
        if side != 1 and side != -1:
            raise ValueError(f"side must be +1 or -1, got {side}")
        _nonneg("lots", lots)
        if side > 0:
            s.pos = risk_sat_add(s.pos, lots)
            s.pend_buy = _max(0, s.pend_buy - lots)
        else:
            s.pos = risk_sat_add(s.pos, -lots)
            s.pend_sell = _max(0, s.pend_sell - lots)
        self._refresh(s)

    def on_order_done(self, int sid, int side, int64_t remaining_lots):
        """An order left the book (filled, cancelled, rejected, expired) with ``remaining_lots`` unfilled."""
        cdef SymbolRisk* s = self._get(sid)
        if side != 1 and side != -1:
            raise ValueError(f"side must be +1 or -1, got {side}")
        _nonneg("remaining_lots", remaining_lots)
        s.open_count = _max(0, s.open_count - 1)
        if side > 0:
            s.pend_buy = _max(0, s.pend_buy - remaining_lots)
        else:
            s.pend_sell = _max(0, s.pend_sell - remaining_lots)
        self._refresh(s)

    def record_trade(self, int pnl_sign, int64_t now_ms):
        """A closed trade's result sign; returns True when it starts a cooling-off period."""
        if pnl_sign > 0:
            self.consecutive_losses = 0
        elif pnl_sign < 0:
            self.consecutive_losses += 1
            if self._cooling_losses > 0 and self.consecutive_losses >= self._cooling_losses:
                self.cooling_until_ms = risk_sat_add(now_ms, self._cooling_ms)
                self.consecutive_losses = 0
                return True
        return False

    def set_cooling(self, int64_t consecutive_losses, int64_t cooling_until_ms):
        """Restore the cooling-off state (after a restart)."""
        _nonneg("consecutive_losses", consecutive_losses)
        self.consecutive_losses = consecutive_losses
        self.cooling_until_ms = cooling_until_ms

    # ---- reads ---------------------------------------------------------------------------------------

    def position(self, int sid):
        return self._get(sid).pos

    def pending(self, int sid):
        """(open buy lots, open sell lots)."""
        cdef SymbolRisk* s = self._get(sid)
        return (s.pend_buy, s.pend_sell)

    def open_orders(self, int sid):
        return self._get(sid).open_count

    def exposure(self, int sid):
        """Worst-case exposure of the symbol in quote units."""
        return self._get(sid).exposure

    def reference(self, int sid):
        return self._get(sid).ref

    def book_healthy(self, int sid):
        return self._get(sid).healthy

    def configured(self, int sid):
        return self._get(sid).mult != 0

    def tokens(self):
        """(per-second, per-minute) bucket contents scaled by the window, as of the last check:
        ``tokens()[0] // 1000`` and ``tokens()[1] // 60000`` orders are available."""
        return (self._tok_sec, self._tok_min)

    # ---- the hot path ------------------------------------------------------------------------------

    cdef void _refresh(self, SymbolRisk* s) noexcept nogil:
        cdef int64_t w = _max(risk_sat_add(s.pos, s.pend_buy), risk_sat_add(s.pend_sell, -s.pos))
        cdef int64_t e = _min(risk_sat_mul(w, s.k), _EXPOSURE_CAP)
        self.total_exposure += e - s.exposure
        s.exposure = e

    cdef void _refill(self, int64_t now_ms) noexcept nogil:
        cdef int64_t dt
        if not self._clock_set:
            self._clock_set = True
            self._last_ms = now_ms
            return
        dt = now_ms - self._last_ms
        if dt <= 0:
            return
        self._last_ms = now_ms
        if self._rate_sec > 0:
            if dt >= _SEC_MS:
                self._tok_sec = self._rate_sec * _SEC_MS
            else:
                self._tok_sec = _min(self._rate_sec * _SEC_MS, self._tok_sec + dt * self._rate_sec)
        if self._rate_min > 0:
            if dt >= _MIN_MS:
                self._tok_min = self._rate_min * _MIN_MS
            else:
                self._tok_min = _min(self._rate_min * _MIN_MS, self._tok_min + dt * self._rate_min)

    cdef void _take_tokens(self) noexcept nogil:
        if self._rate_sec > 0 and self._tok_sec >= _SEC_MS:
            self._tok_sec -= _SEC_MS
        if self._rate_min > 0 and self._tok_min >= _MIN_MS:
            self._tok_min -= _MIN_MS

    cdef void _commit(self, SymbolRisk* s, int side, int64_t qty) noexcept nogil:
        s.open_count += 1
        if side > 0:
            s.pend_buy = risk_sat_add(s.pend_buy, qty)
        else:
            s.pend_sell = risk_sat_add(s.pend_sell, qty)
        self._refresh(s)
        self.approved_qty = qty

    cdef int c_check(self, int sid, int side, int64_t qty, int64_t price, int64_t stop, int64_t target,
                     int flags, int64_t now_ms) noexcept nogil:
        cdef SymbolRisk* s
        cdef int64_t size, px, diff, entry, risk, reward
        cdef int64_t base, other, cur, new_w, others, cap_sym, cap_tot, cap_lev, allowed
        cdef int reason
        self.approved_qty = 0
        if sid < 0 or sid >= self.max_symbols:
            return RISK_DENY_UNKNOWN_SYMBOL
        s = &self._sym[sid]
        if s.mult == 0:
            return RISK_DENY_UNKNOWN_SYMBOL
        if (qty <= 0 or (side != 1 and side != -1) or price < 0 or stop < 0 or target < 0
                or now_ms < 0):
            return RISK_DENY_INVALID
        if self.state == RISK_GATE_STOPPED:
            return RISK_DENY_STOPPED
        if flags & RISK_FLAG_FLATTEN:
            flags |= RISK_FLAG_REDUCE_ONLY
        elif self.state == RISK_GATE_EMERGENCY:
            return RISK_DENY_EMERGENCY

        if flags & RISK_FLAG_REDUCE_ONLY:
            # an exit: opposite to the position, never beyond flat
            if (side > 0 and s.pos >= 0) or (side < 0 and s.pos <= 0):
                return RISK_DENY_REDUCE_ONLY
            size = -s.pos if s.pos < 0 else s.pos
            if qty > size:
                qty = size
            if price > 0 and self._price_band_bps > 0 and not (flags & RISK_FLAG_FLATTEN):
                if s.ref <= 0:
                    return RISK_DENY_NO_REFERENCE
                diff = price - s.ref if price >= s.ref else s.ref - price
                if risk_sat_mul(diff, 10000) > risk_sat_mul(self._price_band_bps, s.ref):
                    return RISK_DENY_PRICE_BAND
            self._refill(now_ms)
            self._take_tokens()
            self._commit(s, side, qty)
            return RISK_APPROVED

        # an entry
        if self.state == RISK_GATE_PAUSED:
            return RISK_DENY_PAUSED
        if not s.healthy:
            return RISK_DENY_BOOK_UNHEALTHY
        if now_ms < self.cooling_until_ms:
            return RISK_DENY_COOLING_OFF
        if s.ref <= 0:
            return RISK_DENY_NO_REFERENCE
        if qty < s.min_qty:
            return RISK_DENY_MIN_QTY
        if qty > s.max_qty:
            return RISK_DENY_MAX_QTY
        px = price if price > 0 else s.ref
        if self._max_order_notional != INT64_MAX:
            if qty > self._max_order_notional // risk_sat_mul(px, s.mult):
                return RISK_DENY_MAX_NOTIONAL
        if price > 0 and self._price_band_bps > 0:
            diff = price - s.ref if price >= s.ref else s.ref - price
            if risk_sat_mul(diff, 10000) > risk_sat_mul(self._price_band_bps, s.ref):
                return RISK_DENY_PRICE_BAND
        if self._min_rr_milli > 0 and stop > 0 and target > 0:
            entry = px
            if side > 0:
                risk = entry - stop
                reward = target - entry
            else:
                risk = stop - entry
                reward = entry - target
            if risk <= 0 or reward <= 0:
                return RISK_DENY_RISK_REWARD
            if risk_sat_mul(reward, 1000) < risk_sat_mul(self._min_rr_milli, risk):
                return RISK_DENY_RISK_REWARD
        if s.open_count >= s.max_open:
            return RISK_DENY_OPEN_ORDERS

        # exposure: worst-case lots along the order's side (base), and against it (other)
        if side > 0:
            base = risk_sat_add(s.pos, s.pend_buy)
            other = risk_sat_add(s.pend_sell, -s.pos)
        else:
            base = risk_sat_add(s.pend_sell, -s.pos)
            other = risk_sat_add(s.pos, s.pend_buy)
        cur = _max(base, other)
        new_w = risk_sat_add(base, qty)
        if new_w > cur:
            others = self.total_exposure - s.exposure
            cap_sym = _cap_div(s.max_pos_notional, s.k)
            cap_tot = INT64_MAX if self._max_total == INT64_MAX else _cap_div(self._max_total - others, s.k)
            cap_lev = (INT64_MAX if self._leverage_cap == INT64_MAX
                       else _cap_div(self._leverage_cap - others, s.k))
            reason = RISK_APPROVED
            if new_w > _max(cur, cap_sym):
                reason = RISK_DENY_POSITION_LIMIT
            elif new_w > _max(cur, cap_tot):
                reason = RISK_DENY_TOTAL_EXPOSURE
            elif new_w > _max(cur, cap_lev):
                reason = RISK_DENY_LEVERAGE
            if reason != RISK_APPROVED:
                if not self._reduce_to_limit:
                    return reason
                allowed = _max(cur, _min(cap_sym, _min(cap_tot, cap_lev)))
                qty = allowed - base
                if qty < s.min_qty:
                    return reason

        self._refill(now_ms)
        if self._rate_sec > 0 and self._tok_sec < _SEC_MS:
            return RISK_DENY_RATE_SECOND
        if self._rate_min > 0 and self._tok_min < _MIN_MS:
            return RISK_DENY_RATE_MINUTE
        self._take_tokens()
        self._commit(s, side, qty)
        return RISK_APPROVED

    cpdef int check(self, int sid, int side, int64_t qty, int64_t price, int64_t stop, int64_t target,
                    int flags, int64_t now_ms) noexcept:
        """Decide one order: ``sid``, ``side`` (+1 buy, -1 sell), ``qty`` lots, ``price`` ticks (0 =
        market), ``stop``/``target`` ticks (0 = none), ``flags`` (``FLAG_REDUCE_ONLY``,
        ``FLAG_FLATTEN``), ``now_ms``. Returns ``APPROVED`` (``approved_qty`` set, the order booked) or
        a reason code. Never raises for a denial."""
        return self.c_check(sid, side, qty, price, stop, target, flags, now_ms)
