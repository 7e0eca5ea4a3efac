"""The synchronous pre-trade risk gate: the pure-Python twin of the compiled ``engine._ext.risk``.

Same public API and the same results for the same calls (the kernel tests run both and a property test
compares them). The rules, units and the order of the checks are documented once, in the kernel's
module docstring (``ext/risk.pyx``); in short:

- Everything is an integer: quantities in lots, prices in ticks, money in *quote units* (a power of ten
  of the quote asset; a symbol's ``notional_mult`` is the value of one lot at one tick in those units),
  times in epoch milliseconds. No float anywhere.
- ``RiskGate.check(sid, side, qty, price, stop, target, flags, now_ms)`` returns ``APPROVED`` (0) or a
  reason code (``REASONS`` names it) and never raises for a denial; ``approved_qty`` is the approved
  size, possibly clipped.
- A limit of 0 means "no limit"; maxima are inclusive; products that would overflow int64 saturate, as
  in C (inputs must fit an int64, as the compiled signature enforces).
"""

from __future__ import annotations

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

APPROVED = 0
DENY_INVALID = 1
DENY_UNKNOWN_SYMBOL = 2
DENY_STOPPED = 3
DENY_EMERGENCY = 4
DENY_REDUCE_ONLY = 5
DENY_PAUSED = 6
DENY_BOOK_UNHEALTHY = 7
DENY_COOLING_OFF = 8
DENY_NO_REFERENCE = 9
DENY_MIN_QTY = 10
DENY_MAX_QTY = 11
DENY_MAX_NOTIONAL = 12
DENY_PRICE_BAND = 13
DENY_RISK_REWARD = 14
DENY_OPEN_ORDERS = 15
DENY_POSITION_LIMIT = 16
DENY_TOTAL_EXPOSURE = 17
DENY_LEVERAGE = 18
DENY_RATE_SECOND = 19
DENY_RATE_MINUTE = 20

GATE_RUNNING = 0
GATE_PAUSED = 1
GATE_EMERGENCY = 2
GATE_STOPPED = 3

FLAG_REDUCE_ONLY = 1
FLAG_FLATTEN = 2

#: Reason code -> snake_case name (the ``Denied.reason`` the manager reports).
REASONS: dict[int, str] = {
    APPROVED: "approved",
    DENY_INVALID: "invalid_order",
    DENY_UNKNOWN_SYMBOL: "unknown_symbol",
    DENY_STOPPED: "engine_stopped",
    DENY_EMERGENCY: "emergency_stopped",
    DENY_REDUCE_ONLY: "reduce_only_invalid",
    DENY_PAUSED: "paused",
    DENY_BOOK_UNHEALTHY: "book_unhealthy",
    DENY_COOLING_OFF: "cooling_off",
    DENY_NO_REFERENCE: "no_reference_price",
    DENY_MIN_QTY: "size_below_minimum",
    DENY_MAX_QTY: "max_order_qty",
    DENY_MAX_NOTIONAL: "max_order_notional",
    DENY_PRICE_BAND: "price_band",
    DENY_RISK_REWARD: "risk_reward",
    DENY_OPEN_ORDERS: "max_open_orders",
    DENY_POSITION_LIMIT: "position_limit",
    DENY_TOTAL_EXPOSURE: "total_exposure",
    DENY_LEVERAGE: "max_leverage",
    DENY_RATE_SECOND: "rate_limit_second",
    DENY_RATE_MINUTE: "rate_limit_minute",
}

#: Most symbols one gate holds.
MAX_SYMBOLS = 256
#: A symbol's exposure is clamped here (quote units), so the sum over MAX_SYMBOLS cannot overflow.
EXPOSURE_CAP = 1 << 54
#: Most orders per window a token bucket accepts as its rate.
MAX_RATE = 1_000_000_000

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_SEC_MS = 1000
_MIN_MS = 60000


def _sat(value: int) -> int:
    """Clamp to int64, as the kernel's saturating arithmetic does."""
    if value > _INT64_MAX:
        return _INT64_MAX
    if value < _INT64_MIN:
        return _INT64_MIN
    return value


def _lim(value: int) -> int:
    """A configured maximum: 0 (no limit) becomes INT64_MAX."""
    return _INT64_MAX if value == 0 else value


def _cap_div(limit: int, k: int) -> int:
    """Most lots worth at most ``limit`` at ``k`` quote units per lot (k >= 1); INT64_MAX is no limit;
    a negative limit (already over) gives -1."""
    if limit == _INT64_MAX:
        return _INT64_MAX
    if limit < 0:
        return -1
    return limit // k


def _nonneg(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


class _Symbol:
    __slots__ = (
        "exposure",
        "healthy",
        "k",
        "max_open",
        "max_pos_notional",
        "max_qty",
        "min_qty",
        "mult",
        "open_count",
        "pend_buy",
        "pend_sell",
        "pos",
        "ref",
    )

    def __init__(self) -> None:
        self.mult = 0
        self.max_qty = 0
        self.min_qty = 0
        self.max_pos_notional = 0
        self.max_open = 0
        self.ref = 0
        self.k = 0
        self.pos = 0
        self.pend_buy = 0
        self.pend_sell = 0
        self.open_count = 0
        self.exposure = 0
        self.healthy = False


class RiskGate:
    """Per-symbol limits and state plus the account-wide ones; see ``ext/risk.pyx``.

    ``RiskGate(max_symbols=64)``; symbols are ids ``0 <= sid < max_symbols`` and must be configured with
    :meth:`configure_symbol` before use. A new gate is running, with every book unhealthy until
    :meth:`set_book_healthy`, no reference prices, zero equity and no limits.
    """

    __slots__ = (
        "_clock_set",
        "_cooling_losses",
        "_cooling_ms",
        "_last_ms",
        "_leverage_cap",
        "_max_leverage_milli",
        "_max_order_notional",
        "_max_total",
        "_min_rr_milli",
        "_price_band_bps",
        "_rate_min",
        "_rate_sec",
        "_reduce_to_limit",
        "_sym",
        "_tok_min",
        "_tok_sec",
        "approved_qty",
        "consecutive_losses",
        "cooling_until_ms",
        "equity",
        "max_symbols",
        "state",
        "total_exposure",
    )

    def __init__(self, *, max_symbols: int = 64) -> None:
        if max_symbols < 1 or max_symbols > MAX_SYMBOLS:
            raise ValueError(f"max_symbols must be in 1..{MAX_SYMBOLS}, got {max_symbols}")
        self._sym = [_Symbol() for _ in range(max_symbols)]
        self.max_symbols = max_symbols
        self.state = GATE_RUNNING
        self.approved_qty = 0
        self.equity = 0
        self.total_exposure = 0
        self.consecutive_losses = 0
        self.cooling_until_ms = 0
        self._max_order_notional = _INT64_MAX
        self._max_total = _INT64_MAX
        self._max_leverage_milli = 0
        self._leverage_cap = _INT64_MAX
        self._price_band_bps = 0
        self._min_rr_milli = 0
        self._cooling_losses = 0
        self._cooling_ms = 0
        self._reduce_to_limit = False
        self._rate_sec = 0
        self._tok_sec = 0
        self._rate_min = 0
        self._tok_min = 0
        self._last_ms = 0
        self._clock_set = False

    def _get(self, sid: int) -> _Symbol:
        if sid < 0 or sid >= self.max_symbols:
            raise IndexError(f"symbol id {sid} out of range 0..{self.max_symbols - 1}")
        return self._sym[sid]

    # ---- configuration -------------------------------------------------------------------------

    def configure_symbol(
        self,
        sid: int,
        *,
        notional_mult: int,
        max_qty: int = 0,
        min_qty: int = 1,
        max_position_notional: int = 0,
        max_open_orders: int = 0,
    ) -> None:
        """Set a symbol's limits (0 = no limit); its state (position, orders, reference) is kept."""
        s = self._get(sid)
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
        s.k = _sat(s.ref * s.mult) if s.ref > 0 else 0
        self._refresh(s)

    def set_limits(
        self,
        *,
        max_order_notional: int = 0,
        max_total_notional: int = 0,
        max_leverage_milli: int = 0,
        max_orders_per_second: int = 0,
        max_orders_per_minute: int = 0,
        price_band_bps: int = 0,
        min_rr_milli: int = 0,
        cooling_off_losses: int = 0,
        cooling_off_ms: int = 0,
        reduce_to_limit: bool = False,
    ) -> None:
        """Set the account-wide limits (0 = no limit). A bucket whose rate changes keeps its tokens up
        to the new capacity; a bucket that was off starts full."""
        _nonneg("max_order_notional", max_order_notional)
        _nonneg("max_total_notional", max_total_notional)
        _nonneg("max_leverage_milli", max_leverage_milli)
        _nonneg("price_band_bps", price_band_bps)
        _nonneg("min_rr_milli", min_rr_milli)
        _nonneg("cooling_off_losses", cooling_off_losses)
        _nonneg("cooling_off_ms", cooling_off_ms)
        for name, rate in (
            ("max_orders_per_second", max_orders_per_second),
            ("max_orders_per_minute", max_orders_per_minute),
        ):
            if rate < 0 or rate > MAX_RATE:
                raise ValueError(f"{name} must be in 0..{MAX_RATE}, got {rate}")
        self._max_order_notional = _lim(max_order_notional)
        self._max_total = _lim(max_total_notional)
        self._max_leverage_milli = max_leverage_milli
        self._price_band_bps = price_band_bps
        self._min_rr_milli = min_rr_milli
        self._cooling_losses = cooling_off_losses
        self._cooling_ms = cooling_off_ms
        self._reduce_to_limit = bool(reduce_to_limit)
        if max_orders_per_second != self._rate_sec:
            cap = max_orders_per_second * _SEC_MS
            self._tok_sec = min(self._tok_sec, cap) if self._rate_sec > 0 else cap
            self._rate_sec = max_orders_per_second
        if max_orders_per_minute != self._rate_min:
            cap = max_orders_per_minute * _MIN_MS
            self._tok_min = min(self._tok_min, cap) if self._rate_min > 0 else cap
            self._rate_min = max_orders_per_minute
        self._update_leverage_cap()

    def _update_leverage_cap(self) -> None:
        if self._max_leverage_milli == 0:
            self._leverage_cap = _INT64_MAX
        elif self.equity <= 0:
            self._leverage_cap = 0
        else:
            self._leverage_cap = _sat(self._max_leverage_milli * self.equity) // 1000

    def set_state(self, state: int) -> None:
        """``GATE_RUNNING``, ``GATE_PAUSED``, ``GATE_EMERGENCY`` or ``GATE_STOPPED``."""
        if state < GATE_RUNNING or state > GATE_STOPPED:
            raise ValueError(f"unknown gate state {state}")
        self.state = state

    # ---- market and account state -----------------------------------------------------------------

    def set_reference(self, sid: int, ticks: int) -> None:
        """The reference price (mid or mark) in ticks; 0 = unknown (entries are denied)."""
        s = self._get(sid)
        _nonneg("reference", ticks)
        s.ref = ticks
        s.k = _sat(ticks * s.mult) if ticks > 0 else 0
        self._refresh(s)

    def set_book_healthy(self, sid: int, healthy: bool) -> None:
        self._get(sid).healthy = bool(healthy)

    def set_equity(self, equity: int) -> None:
        """Account equity in quote units (the leverage limit is exposure / equity)."""
        self.equity = equity
        self._update_leverage_cap()

    def set_position(self, sid: int, lots: int) -> None:
        """The signed position (reconciled with the venue)."""
        s = self._get(sid)
        s.pos = lots
        self._refresh(s)

    def set_open_orders(self, sid: int, count: int, buy_lots: int, sell_lots: int) -> None:
        """The open orders (count, unfilled lots per side), reconciled with the venue."""
        s = self._get(sid)
        _nonneg("count", count)
        _nonneg("buy_lots", buy_lots)
        _nonneg("sell_lots", sell_lots)
        s.open_count = count
        s.pend_buy = buy_lots
        s.pend_sell = sell_lots
        self._refresh(s)

    def on_fill(self, sid: int, side: int, lots: int) -> None:
        """An approved order filled ``lots`` (side +1 buy, -1 sell): the position moves, its pending lots
        shrink. The order stays open until :meth:`on_order_done`."""
        s = self._get(sid)
        if side not in (1, -1):
            raise ValueError(f"side must be +1 or -1, got {side}")
        _nonneg("lots", lots)
        if side > 0:
            s.pos = _sat(s.pos + lots)
            s.pend_buy = max(0, s.pend_buy - lots)
        else:
            s.pos = _sat(s.pos - lots)
            s.pend_sell = max(0, s.pend_sell - lots)
        self._refresh(s)

    def on_order_done(self, sid: int, side: int, remaining_lots: int) -> None:
        """An order left the book (filled, cancelled, rejected, expired) with ``remaining_lots`` unfilled."""
        s = self._get(sid)
        if side not in (1, -1):
            raise ValueError(f"side must be +1 or -1, got {side}")
        _nonneg("remaining_lots", remaining_lots)
        s.open_count = max(0, s.open_count - 1)
        if side > 0:
            s.pend_buy = max(0, s.pend_buy - remaining_lots)
        else:
            s.pend_sell = max(0, s.pend_sell - remaining_lots)
        self._refresh(s)

    def record_trade(self, pnl_sign: int, now_ms: int) -> bool:
        """A closed trade's result sign; returns True when it starts a cooling-off period."""
        if pnl_sign > 0:
            self.consecutive_losses = 0
        elif pnl_sign < 0:
            self.consecutive_losses += 1
            if self._cooling_losses > 0 and self.consecutive_losses >= self._cooling_losses:
                self.cooling_until_ms = _sat(now_ms + self._cooling_ms)
                self.consecutive_losses = 0
                return True
        return False

    def set_cooling(self, consecutive_losses: int, cooling_until_ms: int) -> None:
        """Restore the cooling-off state (after a restart)."""
        _nonneg("consecutive_losses", consecutive_losses)
        self.consecutive_losses = consecutive_losses
        self.cooling_until_ms = cooling_until_ms

    # ---- reads ---------------------------------------------------------------------------------------

    def position(self, sid: int) -> int:
        return self._get(sid).pos

    def pending(self, sid: int) -> tuple[int, int]:
        """(open buy lots, open sell lots)."""
        s = self._get(sid)
        return (s.pend_buy, s.pend_sell)

    def open_orders(self, sid: int) -> int:
        return self._get(sid).open_count

    def exposure(self, sid: int) -> int:
        """Worst-case exposure of the symbol in quote units."""
        return self._get(sid).exposure

    def reference(self, sid: int) -> int:
        return self._get(sid).ref

    def book_healthy(self, sid: int) -> bool:
        return self._get(sid).healthy

    def configured(self, sid: int) -> bool:
        return self._get(sid).mult != 0

    def tokens(self) -> tuple[int, int]:
        """(per-second, per-minute) bucket contents scaled by the window, as of the last check:
        ``tokens()[0] // 1000`` and ``tokens()[1] // 60000`` orders are available."""
        return (self._tok_sec, self._tok_min)

    # ---- the hot path ------------------------------------------------------------------------------

    def _refresh(self, s: _Symbol) -> None:
        w = max(_sat(s.pos + s.pend_buy), _sat(s.pend_sell - s.pos))
        e = min(_sat(w * s.k), EXPOSURE_CAP)
        self.total_exposure += e - s.exposure
        s.exposure = e

    def _refill(self, now_ms: int) -> None:
        if not self._clock_set:
            self._clock_set = True
            self._last_ms = now_ms
            return
        dt = now_ms - self._last_ms
        if dt <= 0:
            return
        self._last_ms = now_ms
        if self._rate_sec > 0:
            cap = self._rate_sec * _SEC_MS
            self._tok_sec = cap if dt >= _SEC_MS else min(cap, self._tok_sec + dt * self._rate_sec)
        if self._rate_min > 0:
            cap = self._rate_min * _MIN_MS
            self._tok_min = cap if dt >= _MIN_MS else min(cap, self._tok_min + dt * self._rate_min)

    def _take_tokens(self) -> None:
        if self._rate_sec > 0 and self._tok_sec >= _SEC_MS:
            self._tok_sec -= _SEC_MS
        if self._rate_min > 0 and self._tok_min >= _MIN_MS:
            self._tok_min -= _MIN_MS

    def _commit(self, s: _Symbol, side: int, qty: int) -> None:
        s.open_count += 1
        if side > 0:
            s.pend_buy = _sat(s.pend_buy + qty)
        else:
            s.pend_sell = _sat(s.pend_sell + qty)
        self._refresh(s)
        self.approved_qty = qty

    def check(
        self, sid: int, side: int, qty: int, price: int, stop: int, target: int, flags: int, now_ms: int
    ) -> int:
        """Decide one order: ``sid``, ``side`` (+1 buy, -1 sell), ``qty`` lots, ``price`` ticks (0 =
        market), ``stop``/``target`` ticks (0 = none), ``flags`` (``FLAG_REDUCE_ONLY``,
        ``FLAG_FLATTEN``), ``now_ms``. Returns ``APPROVED`` (``approved_qty`` set, the order booked) or
        a reason code. Never raises for a denial."""
        self.approved_qty = 0
        if sid < 0 or sid >= self.max_symbols:
            return DENY_UNKNOWN_SYMBOL
        s = self._sym[sid]
        if s.mult == 0:
            return DENY_UNKNOWN_SYMBOL
        if qty <= 0 or (side != 1 and side != -1) or price < 0 or stop < 0 or target < 0 or now_ms < 0:
            return DENY_INVALID
        if self.state == GATE_STOPPED:
            return DENY_STOPPED
        if flags & FLAG_FLATTEN:
            flags |= FLAG_REDUCE_ONLY
        elif self.state == GATE_EMERGENCY:
            return DENY_EMERGENCY

        if flags & FLAG_REDUCE_ONLY:
            # an exit: opposite to the position, never beyond flat
            if (side > 0 and s.pos >= 0) or (side < 0 and s.pos <= 0):
                return DENY_REDUCE_ONLY
            size = -s.pos if s.pos < 0 else s.pos
            if qty > size:
                qty = size
            if price > 0 and self._price_band_bps > 0 and not (flags & FLAG_FLATTEN):
                if s.ref <= 0:
                    return DENY_NO_REFERENCE
                diff = price - s.ref if price >= s.ref else s.ref - price
                if _sat(diff * 10000) > _sat(self._price_band_bps * s.ref):
                    return DENY_PRICE_BAND
            self._refill(now_ms)
            self._take_tokens()
            self._commit(s, side, qty)
            return APPROVED

        # an entry
        if self.state == GATE_PAUSED:
            return DENY_PAUSED
        if not s.healthy:
            return DENY_BOOK_UNHEALTHY
        if now_ms < self.cooling_until_ms:
            return DENY_COOLING_OFF
        if s.ref <= 0:
            return DENY_NO_REFERENCE
        if qty < s.min_qty:
            return DENY_MIN_QTY
        if qty > s.max_qty:
            return DENY_MAX_QTY
        px = price if price > 0 else s.ref
        if self._max_order_notional != _INT64_MAX and qty > self._max_order_notional // _sat(px * s.mult):
            return DENY_MAX_NOTIONAL
        if price > 0 and self._price_band_bps > 0:
            diff = price - s.ref if price >= s.ref else s.ref - price
            if _sat(diff * 10000) > _sat(self._price_band_bps * s.ref):
                return DENY_PRICE_BAND
        if self._min_rr_milli > 0 and stop > 0 and target > 0:
            if side > 0:
                risk = px - stop
                reward = target - px
            else:
                risk = stop - px
                reward = px - target
            if risk <= 0 or reward <= 0:
                return DENY_RISK_REWARD
            if _sat(reward * 1000) < _sat(self._min_rr_milli * risk):
                return DENY_RISK_REWARD
        if s.open_count >= s.max_open:
            return DENY_OPEN_ORDERS

        # exposure: worst-case lots along the order's side (base), and against it (other)
        if side > 0:
            base = _sat(s.pos + s.pend_buy)
            other = _sat(s.pend_sell - s.pos)
        else:
            base = _sat(s.pend_sell - s.pos)
            other = _sat(s.pos + s.pend_buy)
        cur = max(base, other)
        new_w = _sat(base + qty)
        if new_w > cur:
            others = self.total_exposure - s.exposure
            cap_sym = _cap_div(s.max_pos_notional, s.k)
            cap_tot = _INT64_MAX if self._max_total == _INT64_MAX else _cap_div(self._max_total - others, s.k)
            cap_lev = (
                _INT64_MAX
                if self._leverage_cap == _INT64_MAX
                else _cap_div(self._leverage_cap - others, s.k)
            )
            reason = APPROVED
            if new_w > max(cur, cap_sym):
                reason = DENY_POSITION_LIMIT
            elif new_w > max(cur, cap_tot):
                reason = DENY_TOTAL_EXPOSURE
            elif new_w > max(cur, cap_lev):
                reason = DENY_LEVERAGE
            if reason != APPROVED:
                if not self._reduce_to_limit:
                    return reason
                allowed = max(cur, min(cap_sym, cap_tot, cap_lev))
                qty = allowed - base
                if qty < s.min_qty:
                    return reason

        self._refill(now_ms)
        if self._rate_sec > 0 and self._tok_sec < _SEC_MS:
            return DENY_RATE_SECOND
        if self._rate_min > 0 and self._tok_min < _MIN_MS:
            return DENY_RATE_MINUTE
        self._take_tokens()
        self._commit(s, side, qty)
        return APPROVED
