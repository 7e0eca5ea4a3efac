"""``UnifiedRiskManager``: the one gate every order passes, plus sizing, circuit breakers and metrics.

The per-order decision runs in the ``RiskGate`` kernel (``ext/risk``, through :mod:`engine.kernels`) on
integers; this module is its ``Decimal`` edge and everything around it:

- **Units.** Quantities become lots (``qty / lot_size``, rounded down: never more than asked), prices
  ticks (a limit price rounded *passively* onto the tick grid: buys down, sells up; stops and targets to
  the nearest tick), money *quote units* of ``10**-quote_decimals`` (the finest of the instruments'
  ``lot_size x tick_size``, at least cents) -- money limits are rounded down onto that grid. All
  instruments' quote assets are treated as one currency.
- **Decisions** are values: :class:`Approved` (the size may be smaller than asked: a reduce-only order
  clipped to the position, or an entry clipped to an exposure limit with ``reduce_to_limit``) or
  :class:`Denied` with a snake_case ``reason`` (the kernel's ``REASONS``, plus ``size_below_minimum``,
  ``sizing_unavailable`` and ``unknown_symbol`` from this layer) and a human ``detail``. Nothing here
  raises for a denial; exceptions (:class:`~engine.errors.RiskLimitError`) are for bad limits or state.
- **Limits** come from :class:`RiskLimits` (``RiskLimits.from_mapping`` for the config's ``[risk]``
  table; :meth:`UnifiedRiskManager.set_limit` at run time). 0 disables a limit. Maxima are inclusive.
- **Engine states** (DESIGN.md's table): running -- everything through the checks; paused -- entries
  denied, reduce-only exits allowed; emergency_stopped -- only orders the engine flags as flattening;
  stopped / starting / stopping -- nothing.
- **State triggers** report a :class:`Trip` for the engine to move to ``emergency_stopped``: the daily
  loss limit (quote, and % of the start-of-day equity; the day rolls at ``day_roll_utc_hour``), the max
  drawdown from the equity high-water mark, and a position that cannot be reconciled. A trip latches
  (reported once) until :meth:`UnifiedRiskManager.clear_trip` (the operator's ``reset``). Consecutive
  losing trades start a cooling-off period (entries denied until it ends).
- **Sizing** for signals without a size: fixed fractional, ATR or Kelly (capped), rounded down to the
  lot step; below the instrument's minimum quantity: ``Denied("size_below_minimum")``.
- **Metrics** on demand: :func:`portfolio_metrics`.

Open orders count against the position and exposure limits as if they all fill. Every ``Approved``
order is booked in the gate at once (open orders + 1, its lots pending): when it is not sent after all,
or leaves the book, call :meth:`~UnifiedRiskManager.on_order_done`. Feed the manager the rest of the
order lifecycle (:meth:`~UnifiedRiskManager.on_fill`, :meth:`~UnifiedRiskManager.on_order_done`) and
reconcile it (:meth:`~UnifiedRiskManager.set_position`, :meth:`~UnifiedRiskManager.set_open_orders`).
The gate holds one net position per symbol (hedge-mode sides are netted). A symbol's book counts as
unhealthy until :meth:`~UnifiedRiskManager.set_book_health` reports it ``LIVE``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final

from engine import kernels as _active_kernels
from engine.errors import RiskLimitError
from engine.types import (
    BookHealth,
    BookUpdate,
    EngineState,
    Fill,
    Instrument,
    Order,
    OrderRequest,
    OrderType,
    Position,
    PositionSide,
    Side,
    Signal,
    Venue,
)

__all__ = [
    "SIZING_MODES",
    "Approved",
    "Decision",
    "Denied",
    "PortfolioMetrics",
    "RiskLimits",
    "Sizing",
    "Trip",
    "UnifiedRiskManager",
    "portfolio_metrics",
]

SIZING_MODES: Final = ("fixed_fractional", "atr", "kelly")

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_ONE = Decimal(1)
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_MAX_INT_LIMIT = 10**9


# ---- limits ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Sizing:
    """How a signal without a size is sized (see :meth:`UnifiedRiskManager.size`)."""

    mode: str = "fixed_fractional"  # fixed_fractional | atr | kelly
    risk_fraction: Decimal = Decimal("0.01")  # of equity, risked per trade (0 < f <= 1)
    atr_multiple: Decimal = Decimal("2")  # the stop distance in ATRs, for mode "atr"
    kelly_cap: Decimal = Decimal("0.25")  # most of the Kelly fraction used (0 < f <= 1)


@dataclass(frozen=True, kw_only=True)
class RiskLimits:
    """Every limit of the risk manager. Money in the quote asset as ``Decimal``; 0 disables a limit."""

    max_order_qty: Decimal = _ZERO  # base asset per order
    max_order_notional: Decimal = _ZERO  # quote per order (at the limit price, else the reference)
    max_position_notional: Decimal = _ZERO  # quote per symbol, at the reference price
    max_total_notional: Decimal = _ZERO  # quote over all symbols
    max_leverage: Decimal = _ZERO  # total exposure / equity (resolution 0.001)
    max_open_orders_per_symbol: int = 0
    max_orders_per_second: int = 0
    max_orders_per_minute: int = 0
    price_band_bps: int = 0  # limit prices further than this from the reference are denied
    min_risk_reward: Decimal = _ZERO  # reward / risk when a stop and a target are given (resolution 0.001)
    cooling_off_losses: int = 0  # consecutive losing trades that start a cooling-off period
    cooling_off_s: int = 0
    daily_loss_limit: Decimal = _ZERO  # quote, from the start-of-day equity
    daily_loss_limit_pct: Decimal = _ZERO  # percent of the start-of-day equity
    max_drawdown_pct: Decimal = _ZERO  # percent below the equity high-water mark
    day_roll_utc_hour: int = 0  # 0..23
    reduce_to_limit: bool = False  # clip an entry to the exposure limits instead of denying it
    sizing: Sizing = field(default_factory=Sizing)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> RiskLimits:
        """Limits from the config's ``[risk]`` table. Money and fractions as decimal strings (or ints);
        floats are refused (inexact). Unknown keys are an error; errors name the key."""
        if not isinstance(data, Mapping):
            raise RiskLimitError(key="risk", reason=f"must be a table, not {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "sizing":
                kwargs["sizing"] = _parse_sizing(value, Sizing())
            elif key in _FIELDS:
                kwargs[key] = _parse_field(key, value)
            else:
                raise RiskLimitError(key=str(key), reason="unknown key")
        return cls(**kwargs)

    def with_value(self, key: str, value: object) -> RiskLimits:
        """A copy with one limit changed (``sizing.<name>`` for the sizing rule), validated."""
        if key.startswith("sizing."):
            sub = key.removeprefix("sizing.")
            return dataclasses.replace(self, sizing=_parse_sizing({sub: value}, self.sizing))
        if key == "sizing":
            return dataclasses.replace(self, sizing=_parse_sizing(value, self.sizing))
        if key not in _FIELDS:
            raise RiskLimitError(key=key, reason="unknown key")
        return dataclasses.replace(self, **{key: _parse_field(key, value)})

    def to_mapping(self) -> dict[str, object]:
        """The limits as the config writes them (decimal strings for money); ``from_mapping`` inverts it."""
        out: dict[str, object] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            out[name] = str(value) if isinstance(value, Decimal) else value
        out["sizing"] = {
            "mode": self.sizing.mode,
            "risk_fraction": str(self.sizing.risk_fraction),
            "atr_multiple": str(self.sizing.atr_multiple),
            "kelly_cap": str(self.sizing.kelly_cap),
        }
        return out


# field name -> kind: "money" (Decimal >= 0), "pct" (0..100), "int" (0..1e9), "hour", "bool"
_FIELDS: Final[dict[str, str]] = {
    "max_order_qty": "money",
    "max_order_notional": "money",
    "max_position_notional": "money",
    "max_total_notional": "money",
    "max_leverage": "money",
    "max_open_orders_per_symbol": "int",
    "max_orders_per_second": "int",
    "max_orders_per_minute": "int",
    "price_band_bps": "int",
    "min_risk_reward": "money",
    "cooling_off_losses": "int",
    "cooling_off_s": "int",
    "daily_loss_limit": "money",
    "daily_loss_limit_pct": "pct",
    "max_drawdown_pct": "pct",
    "day_roll_utc_hour": "hour",
    "reduce_to_limit": "bool",
}


def _to_decimal(key: str, value: object) -> Decimal:
    if isinstance(value, bool):
        raise RiskLimitError(key=key, reason=f"must be a decimal string, not a boolean ({value!r})")
    if isinstance(value, float):
        raise RiskLimitError(
            key=key, reason=f"must be a decimal string, not a float ({value!r}): floats are inexact"
        )
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise RiskLimitError(key=key, reason=f"not a decimal number: {value!r}") from None
    else:
        raise RiskLimitError(key=key, reason=f"must be a decimal string, not {type(value).__name__}")
    if not d.is_finite():
        raise RiskLimitError(key=key, reason=f"must be finite, got {value!r}")
    return d


def _to_int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise RiskLimitError(key=key, reason=f"must be an integer, not a boolean ({value!r})")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise RiskLimitError(key=key, reason=f"must be an integer, got {value!r}")


def _parse_field(key: str, value: object) -> Any:
    kind = _FIELDS[key]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise RiskLimitError(key=key, reason=f"must be true or false, got {value!r}")
    if kind in ("int", "hour"):
        n = _to_int(key, value)
        high = 23 if kind == "hour" else _MAX_INT_LIMIT
        if not 0 <= n <= high:
            raise RiskLimitError(key=key, reason=f"must be in 0..{high}, got {n}")
        return n
    d = _to_decimal(key, value)
    if d < 0:
        raise RiskLimitError(key=key, reason=f"must be >= 0, got {d}")
    if kind == "pct" and d > _HUNDRED:
        raise RiskLimitError(key=key, reason=f"is a percentage: must be in 0..100, got {d}")
    if key in ("max_leverage", "min_risk_reward") and d != 0 and d < Decimal("0.001"):
        raise RiskLimitError(key=key, reason=f"below the resolution 0.001: {d}")
    return d


def _parse_sizing(value: object, base: Sizing) -> Sizing:
    if not isinstance(value, Mapping):
        raise RiskLimitError(key="sizing", reason=f"must be a table, not {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for sub, raw in value.items():
        key = f"sizing.{sub}"
        if sub == "mode":
            if raw not in SIZING_MODES:
                raise RiskLimitError(key=key, reason=f"must be one of {', '.join(SIZING_MODES)}, got {raw!r}")
            kwargs["mode"] = raw
        elif sub in ("risk_fraction", "kelly_cap"):
            d = _to_decimal(key, raw)
            if not _ZERO < d <= 1:
                raise RiskLimitError(key=key, reason=f"is a fraction: must be in (0, 1], got {d}")
            kwargs[sub] = d
        elif sub == "atr_multiple":
            d = _to_decimal(key, raw)
            if d <= 0:
                raise RiskLimitError(key=key, reason=f"must be > 0, got {d}")
            kwargs[sub] = d
        else:
            raise RiskLimitError(key=key, reason="unknown key")
    return dataclasses.replace(base, **kwargs)


# ---- decisions and trips ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Approved:
    """The order may go out with ``qty`` (on the lot grid) at ``price`` (on the tick grid; None: market)."""

    venue: Venue
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal | None
    requested_qty: Decimal
    reduced: bool  # qty < requested_qty (clipped to the position or to a limit)
    sized: bool = False  # the size came from the sizing rule


@dataclass(frozen=True, kw_only=True)
class Denied:
    reason: str  # snake_case, stable (REASONS of the kernel plus this layer's)
    detail: str


Decision = Approved | Denied


@dataclass(frozen=True, kw_only=True)
class Trip:
    """A state trigger fired: the engine moves to ``emergency_stopped``."""

    reason: str  # daily_loss_limit | daily_loss_limit_pct | max_drawdown | unreconciled_position
    detail: str


# ---- portfolio metrics --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PortfolioMetrics:
    """Exposure in quote at the mark price (``Decimal``); ``leverage`` = gross / equity; concentration =
    each symbol's share of the gross exposure (keys ``"venue:SYMBOL"``); ``var_95`` and
    ``expected_shortfall_95`` as *floats*: fractions of equity lost over one step of the equity series
    (positive = a loss; statistics, not money); drawdowns as ``Decimal`` fractions of the peak."""

    gross_exposure: Decimal
    net_exposure: Decimal
    equity: Decimal
    leverage: Decimal
    concentration: dict[str, Decimal]
    var_95: float
    expected_shortfall_95: float
    current_drawdown: Decimal
    max_drawdown: Decimal


def portfolio_metrics(
    positions: Iterable[Position], equity_series: Sequence[Decimal], *, equity: Decimal | None = None
) -> PortfolioMetrics:
    """Metrics of the positions and the equity series (oldest first).

    Historical VaR / ES at 95%: the step returns ``r_i = e_i / e_(i-1) - 1`` sorted ascending, ``k =
    ceil(0.05 x n)`` (at least 1); VaR is ``-r_k`` (the k-th worst return), ES the negated mean of the k
    worst. Fewer than two points: both 0. ``equity`` defaults to the series' last value.
    """
    gross = _ZERO
    net = _ZERO
    by_symbol: dict[str, Decimal] = {}
    for p in positions:
        notional = p.qty * p.mark_price
        gross += abs(notional)
        net += notional
        key = f"{p.venue.value}:{p.symbol}"
        by_symbol[key] = by_symbol.get(key, _ZERO) + abs(notional)
    if equity is None:
        equity = equity_series[-1] if equity_series else _ZERO
    leverage = gross / equity if equity > 0 else _ZERO
    concentration = {k: (v / gross if gross > 0 else _ZERO) for k, v in sorted(by_symbol.items())}

    returns = sorted(
        float(cur / prev - 1) for prev, cur in itertools.pairwise(equity_series) if prev > 0
    )
    if returns:
        k = max(1, math.ceil(0.05 * len(returns) - 1e-12))
        var_95 = -returns[k - 1]
        es_95 = -math.fsum(returns[:k]) / k
    else:
        var_95 = es_95 = 0.0

    peak = _ZERO
    max_dd = _ZERO
    current_dd = _ZERO
    for e in equity_series:
        peak = max(peak, e)
        current_dd = (peak - e) / peak if peak > 0 else _ZERO
        max_dd = max(max_dd, current_dd)
    return PortfolioMetrics(
        gross_exposure=gross,
        net_exposure=net,
        equity=equity,
        leverage=leverage,
        concentration=concentration,
        var_95=var_95,
        expected_shortfall_95=es_95,
        current_drawdown=current_dd,
        max_drawdown=max_dd,
    )


# ---- the manager ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Symbol:
    sid: int
    instrument: Instrument
    mult: int  # quote units per lot per tick
    min_lots: int
    hedge_parts: dict[PositionSide, int] = field(default_factory=dict)


_GATE_STATE_NAMES: Final = {
    EngineState.RUNNING: "GATE_RUNNING",
    EngineState.PAUSED: "GATE_PAUSED",
    EngineState.EMERGENCY_STOPPED: "GATE_EMERGENCY",
    EngineState.STOPPED: "GATE_STOPPED",
    EngineState.STARTING: "GATE_STOPPED",
    EngineState.STOPPING: "GATE_STOPPED",
}

_STATE_KEYS: Final = (
    "start_of_day_equity",
    "day_start_ms",
    "high_water_mark",
    "consecutive_losses",
    "cooling_off_until_ms",
    "trip_reason",
    "trip_detail",
    "wins",
    "losses",
    "sum_wins",
    "sum_losses",
)


def _decimals(d: Decimal) -> int:
    exponent = d.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


class UnifiedRiskManager:
    """The one gate every order passes; see the module docstring.

    ``UnifiedRiskManager(instruments=[...], limits=RiskLimits(...))``. ``impl`` picks the kernel
    implementation (a namespace like ``engine.kernels.load("pure")``; default: the active one).
    """

    def __init__(
        self,
        *,
        instruments: Iterable[Instrument],
        limits: RiskLimits,
        state: EngineState = EngineState.RUNNING,
        impl: Any = None,
    ) -> None:
        self._k: Any = impl if impl is not None else _active_kernels
        insts = list(instruments)
        if not insts:
            raise RiskLimitError(key="instruments", reason="at least one instrument is needed")
        if len(insts) > self._k.MAX_SYMBOLS:
            raise RiskLimitError(key="instruments", reason=f"at most {self._k.MAX_SYMBOLS} instruments")
        self.quote_decimals = max(2, *(_decimals(i.lot_size * i.tick_size) for i in insts))
        self._unit = Decimal(1).scaleb(-self.quote_decimals)
        self._symbols: dict[tuple[Venue, str], _Symbol] = {}
        for sid, inst in enumerate(insts):
            key = (inst.venue, inst.symbol)
            if key in self._symbols:
                raise RiskLimitError(key="instruments", reason=f"{inst.venue}:{inst.symbol} listed twice")
            mult = int((inst.lot_size * inst.tick_size) / self._unit)
            min_lots = max(1, int((inst.min_qty / inst.lot_size).to_integral_value(rounding=ROUND_CEILING)))
            self._symbols[key] = _Symbol(sid=sid, instrument=inst, mult=mult, min_lots=min_lots)
        self._gate: Any = self._k.RiskGate(max_symbols=len(insts))
        self._reasons: dict[int, str] = dict(self._k.REASONS)
        self._limits = limits
        self._apply_limits(limits)
        self._engine_state = state
        self.set_engine_state(state)
        self._equity: Decimal | None = None
        self._sod_equity: Decimal | None = None
        self._day_start_ms: int | None = None
        self._hwm: Decimal | None = None
        self._trip: Trip | None = None
        self._wins = 0
        self._losses = 0
        self._sum_wins = _ZERO
        self._sum_losses = _ZERO

    # ---- units ------------------------------------------------------------------------------------

    def _units(self, money: Decimal, key: str) -> int:
        """Money -> quote units, rounded down; a positive limit that rounds to 0 is an error."""
        units = int((money / self._unit).to_integral_value(rounding=ROUND_FLOOR))
        if money > 0 and units == 0:
            raise RiskLimitError(key=key, reason=f"{money} is below the resolution {self._unit}")
        return units

    def _sym(self, venue: Venue, symbol: str) -> _Symbol | None:
        return self._symbols.get((venue, symbol))

    def _lots(self, s: _Symbol, qty: Decimal) -> int:
        return int((qty / s.instrument.lot_size).to_integral_value(rounding=ROUND_FLOOR))

    @staticmethod
    def _ticks(s: _Symbol, price: Decimal) -> int:
        """Nearest tick (half-even)."""
        return int((price / s.instrument.tick_size).to_integral_value())

    def _qty(self, s: _Symbol, lots: int) -> Decimal:
        return (lots * s.instrument.lot_size).quantize(s.instrument.lot_size)

    # ---- limits -----------------------------------------------------------------------------------

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def set_limit(self, key: str, value: object) -> RiskLimits:
        """Change one limit at run time (``sizing.<name>`` for the sizing rule); a bad key or value
        raises :class:`~engine.errors.RiskLimitError` (a ValueError) naming the key and the limits stay
        as they were. Returns the new limits."""
        new = self._limits.with_value(key, value)
        self._apply_limits(new)
        self._limits = new
        return new

    def set_limits(self, limits: RiskLimits) -> None:
        self._apply_limits(limits)
        self._limits = limits

    def _apply_limits(self, lim: RiskLimits) -> None:
        # compute everything first, so a bad value leaves the gate unchanged
        per_symbol: list[tuple[_Symbol, dict[str, int]]] = []
        max_position = self._units(lim.max_position_notional, "max_position_notional")
        for s in self._symbols.values():
            max_lots = self._lots(s, lim.max_order_qty)
            if lim.max_order_qty > 0 and max_lots == 0:
                raise RiskLimitError(
                    key="max_order_qty",
                    reason=(
                        f"{lim.max_order_qty} is below {s.instrument.symbol}'s lot size "
                        f"{s.instrument.lot_size}"
                    ),
                )
            per_symbol.append(
                (
                    s,
                    {
                        "notional_mult": s.mult,
                        "max_qty": max_lots,
                        "min_qty": s.min_lots,
                        "max_position_notional": max_position,
                        "max_open_orders": lim.max_open_orders_per_symbol,
                    },
                )
            )
        global_limits = {
            "max_order_notional": self._units(lim.max_order_notional, "max_order_notional"),
            "max_total_notional": self._units(lim.max_total_notional, "max_total_notional"),
            "max_leverage_milli": int((lim.max_leverage * 1000).to_integral_value(rounding=ROUND_FLOOR)),
            "max_orders_per_second": lim.max_orders_per_second,
            "max_orders_per_minute": lim.max_orders_per_minute,
            "price_band_bps": lim.price_band_bps,
            "min_rr_milli": int((lim.min_risk_reward * 1000).to_integral_value(rounding=ROUND_CEILING)),
            "cooling_off_losses": lim.cooling_off_losses,
            "cooling_off_ms": lim.cooling_off_s * 1000,
            "reduce_to_limit": lim.reduce_to_limit,
        }
        for s, kw in per_symbol:
            self._gate.configure_symbol(s.sid, **kw)
        self._gate.set_limits(**global_limits)

    # ---- engine and market state ----------------------------------------------------------------------

    @property
    def engine_state(self) -> EngineState:
        return self._engine_state

    def set_engine_state(self, state: EngineState) -> None:
        self._gate.set_state(getattr(self._k, _GATE_STATE_NAMES[state]))
        self._engine_state = state

    def set_book_health(self, venue: Venue, symbol: str, health: BookHealth) -> None:
        """Only a ``LIVE`` book accepts entries."""
        s = self._require(venue, symbol)
        self._gate.set_book_healthy(s.sid, health is BookHealth.LIVE)

    def set_reference(self, venue: Venue, symbol: str, price: Decimal) -> None:
        """The reference price (mid or mark) the band, notional and exposure are measured at."""
        s = self._require(venue, symbol)
        self._gate.set_reference(s.sid, max(0, self._ticks(s, price)))

    def on_book(self, update: BookUpdate) -> None:
        """The mid of a book update (in ticks) as the reference; a one-sided book leaves it unchanged."""
        s = self._symbols.get((update.venue, update.symbol))
        if s is not None and update.best_bid_ticks > 0 and update.best_ask_ticks > 0:
            self._gate.set_reference(s.sid, (update.best_bid_ticks + update.best_ask_ticks) // 2)

    # ---- order lifecycle and reconciliation ---------------------------------------------------------------

    def on_fill(self, fill: Fill) -> None:
        s = self._require(fill.venue, fill.symbol)
        self._gate.on_fill(s.sid, fill.side.sign, self._lots(s, fill.qty))

    def on_order_done(self, venue: Venue, symbol: str, side: Side, remaining_qty: Decimal) -> None:
        """An approved order left the book (filled, cancelled, rejected, expired) with this much unfilled."""
        s = self._require(venue, symbol)
        self._gate.on_order_done(s.sid, side.sign, self._lots(s, remaining_qty))

    def set_position(self, position: Position) -> None:
        """The venue's position (hedge-mode sides are netted)."""
        s = self._require(position.venue, position.symbol)
        lots = int((position.qty / s.instrument.lot_size).to_integral_value())
        if position.side is PositionSide.BOTH:
            s.hedge_parts.clear()
            self._gate.set_position(s.sid, lots)
        else:
            s.hedge_parts[position.side] = lots
            self._gate.set_position(s.sid, sum(s.hedge_parts.values()))

    def set_open_orders(self, venue: Venue, symbol: str, orders: Iterable[Order]) -> None:
        """The venue's open orders of one symbol (reconciliation)."""
        s = self._require(venue, symbol)
        count = buys = sells = 0
        for o in orders:
            if not o.status.is_open:
                continue
            count += 1
            rest = self._lots(s, o.qty - o.filled_qty)
            if o.side is Side.BUY:
                buys += rest
            else:
                sells += rest
        self._gate.set_open_orders(s.sid, count, buys, sells)

    # ---- the gate ---------------------------------------------------------------------------------------

    def check_order(
        self,
        request: OrderRequest,
        *,
        now_ms: int,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        flatten: bool = False,
    ) -> Decision:
        """Decide an order the engine is about to send. ``flatten`` marks the engine's own flattening
        orders (the only ones that pass in ``emergency_stopped``). A limit order's price is held to the
        band; stop and take-profit orders carry no limit price."""
        s = self._sym(request.venue, request.symbol)
        if s is None:
            return _unknown(request.venue, request.symbol)
        price = request.price if request.type is OrderType.LIMIT else None
        if request.type is OrderType.LIMIT and price is None:
            return Denied(reason="invalid_order", detail=f"{request.symbol}: a limit order without a price")
        flags = 0
        if request.reduce_only or request.close_position:
            flags |= self._k.FLAG_REDUCE_ONLY
        if flatten:
            flags |= self._k.FLAG_FLATTEN
        return self._decide(
            s, request.side, request.qty, price, stop_loss, take_profit, flags, now_ms, sized=False
        )

    def check_signal(
        self,
        signal: Signal,
        *,
        now_ms: int,
        atr: Decimal | None = None,
        allocation: Decimal = _ONE,
    ) -> Decision:
        """Decide a strategy's signal; one without ``qty`` is sized by the configured rule first (``atr``
        for the ATR rule; ``allocation``: the signal's strategy's fraction of equity, see :meth:`size`)."""
        s = self._sym(signal.venue, signal.symbol)
        if s is None:
            return _unknown(signal.venue, signal.symbol)
        price = signal.limit_price if signal.type is OrderType.LIMIT else None
        if signal.type is OrderType.LIMIT and price is None:
            return Denied(reason="invalid_order", detail=f"{signal.symbol}: a limit signal without a price")
        qty = signal.qty
        sized = qty is None
        if qty is None:
            sized_qty = self.size(
                signal.venue,
                signal.symbol,
                entry=price,
                stop=signal.stop_loss,
                atr=atr,
                allocation=allocation,
            )
            if isinstance(sized_qty, Denied):
                return sized_qty
            qty = sized_qty
        flags = self._k.FLAG_REDUCE_ONLY if signal.reduce_only else 0
        return self._decide(
            s, signal.side, qty, price, signal.stop_loss, signal.take_profit, flags, now_ms, sized=sized
        )

    def _decide(
        self,
        s: _Symbol,
        side: Side,
        qty: Decimal,
        price: Decimal | None,
        stop: Decimal | None,
        target: Decimal | None,
        flags: int,
        now_ms: int,
        *,
        sized: bool,
    ) -> Decision:
        inst = s.instrument
        lots = self._lots(s, qty)
        if lots <= 0:
            return Denied(
                reason="size_below_minimum",
                detail=f"{inst.symbol}: {qty} is less than one lot ({inst.lot_size})",
            )
        if price is not None:
            if price <= 0:
                return Denied(reason="invalid_order", detail=f"{inst.symbol}: limit price {price} <= 0")
            price = inst.round_price(price, side)
        price_ticks = self._ticks(s, price) if price is not None else 0
        stop_ticks = self._ticks(s, stop) if stop is not None and stop > 0 else 0
        target_ticks = self._ticks(s, target) if target is not None and target > 0 else 0
        code = self._gate.check(s.sid, side.sign, lots, price_ticks, stop_ticks, target_ticks, flags, now_ms)
        if code != 0:
            return Denied(reason=self._reasons[code], detail=self._detail(code, s, side, qty, price, now_ms))
        approved = self._qty(s, self._gate.approved_qty)
        return Approved(
            venue=inst.venue,
            symbol=inst.symbol,
            side=side,
            qty=approved,
            price=price,
            requested_qty=qty,
            reduced=approved < qty,
            sized=sized,
        )

    def _detail(
        self, code: int, s: _Symbol, side: Side, qty: Decimal, price: Decimal | None, now_ms: int
    ) -> str:
        inst, lim, k = s.instrument, self._limits, self._k
        ref = self._gate.reference(s.sid) * inst.tick_size
        what = f"{inst.venue}:{inst.symbol} {side} {qty} @ {price if price is not None else 'market'}"
        limit_text: dict[int, str] = {
            k.DENY_STOPPED: f"engine is {self._engine_state}",
            k.DENY_EMERGENCY: "emergency stop: only flattening orders",
            k.DENY_PAUSED: "paused: only reduce-only exits",
            k.DENY_REDUCE_ONLY: f"reduce-only needs an opposite position (lots {self._gate.position(s.sid)})",
            k.DENY_BOOK_UNHEALTHY: "the book is not live",
            k.DENY_COOLING_OFF: f"cooling off for {max(0, self._gate.cooling_until_ms - now_ms)} ms more",
            k.DENY_NO_REFERENCE: "no reference price yet",
            k.DENY_MIN_QTY: f"min qty {inst.min_qty}",
            k.DENY_MAX_QTY: f"max_order_qty {lim.max_order_qty}",
            k.DENY_MAX_NOTIONAL: f"max_order_notional {lim.max_order_notional}",
            k.DENY_PRICE_BAND: f"more than {lim.price_band_bps} bps from the reference {ref}",
            k.DENY_RISK_REWARD: f"min_risk_reward {lim.min_risk_reward}",
            k.DENY_OPEN_ORDERS: f"max_open_orders_per_symbol {lim.max_open_orders_per_symbol}",
            k.DENY_POSITION_LIMIT: f"max_position_notional {lim.max_position_notional} at {ref}",
            k.DENY_TOTAL_EXPOSURE: f"max_total_notional {lim.max_total_notional}",
            k.DENY_LEVERAGE: f"max_leverage {lim.max_leverage} on equity {self._equity}",
            k.DENY_RATE_SECOND: f"max_orders_per_second {lim.max_orders_per_second}",
            k.DENY_RATE_MINUTE: f"max_orders_per_minute {lim.max_orders_per_minute}",
        }
        return f"{what}: {limit_text.get(code, self._reasons[code])}"

    # ---- sizing -----------------------------------------------------------------------------------------

    def size(
        self,
        venue: Venue,
        symbol: str,
        *,
        entry: Decimal | None = None,
        stop: Decimal | None = None,
        atr: Decimal | None = None,
        win_rate: Decimal | None = None,
        payoff: Decimal | None = None,
        allocation: Decimal = _ONE,
    ) -> Decimal | Denied:
        """A position size by the configured rule, rounded down to the lot step.

        ``allocation`` (in (0, 1]) is the share of equity the signal's strategy owns (a portfolio
        entry's): every rule sizes against ``equity x allocation`` instead of the whole equity.

        - ``fixed_fractional``: risk ``risk_fraction x equity``; with a stop, qty = that / |entry - stop|;
          without one, it is the notional (qty = that / entry).
        - ``atr``: the stop is ``atr_multiple x ATR`` away: qty = risk_fraction x equity / (N x ATR).
        - ``kelly``: f = W - (1 - W) / R (W the win rate, R the average win / average loss; from the
          closed trades seen unless given), capped at ``kelly_cap``, then used as the fraction above.

        ``entry`` defaults to the reference price. Below the instrument's min qty:
        ``Denied("size_below_minimum")``; missing inputs: ``Denied("sizing_unavailable")``.
        """
        if not _ZERO < allocation <= _ONE:
            raise ValueError(f"allocation must be in (0, 1], got {allocation}")
        s = self._sym(venue, symbol)
        if s is None:
            return _unknown(venue, symbol)
        inst, rule = s.instrument, self._limits.sizing
        equity = self._equity
        if equity is None or equity <= 0:
            return Denied(reason="sizing_unavailable", detail="no positive equity reported yet")
        if entry is None:
            ref = self._gate.reference(s.sid)
            if ref <= 0:
                return Denied(reason="sizing_unavailable", detail=f"{symbol}: no reference price yet")
            entry = ref * inst.tick_size
        fraction = rule.risk_fraction
        if rule.mode == "kelly":
            f = self._kelly(win_rate, payoff)
            if isinstance(f, Denied):
                return f
            fraction = min(f, rule.kelly_cap)
        budget = equity * allocation * fraction
        if rule.mode == "atr":
            if atr is None or atr <= 0:
                return Denied(reason="sizing_unavailable", detail="ATR sizing needs a positive ATR")
            raw = budget / (rule.atr_multiple * atr)
        elif stop is not None and stop > 0 and stop != entry:
            raw = budget / abs(entry - stop)
        else:
            raw = budget / entry
        qty = inst.round_qty(raw)
        if qty < inst.min_qty or qty <= 0:
            return Denied(
                reason="size_below_minimum",
                detail=f"{symbol}: sized {raw:.8f} -> {qty}, below the minimum {inst.min_qty}",
            )
        return qty

    def _kelly(self, win_rate: Decimal | None, payoff: Decimal | None) -> Decimal | Denied:
        if win_rate is None or payoff is None:
            if self._wins == 0 or self._losses == 0:
                return Denied(reason="sizing_unavailable", detail="Kelly needs closed wins and losses")
            w = Decimal(self._wins) / Decimal(self._wins + self._losses)
            r = (self._sum_wins / self._wins) / (self._sum_losses / self._losses)
            win_rate = w if win_rate is None else win_rate
            payoff = r if payoff is None else payoff
        if payoff <= 0:
            return Denied(reason="sizing_unavailable", detail=f"Kelly payoff ratio {payoff} is not positive")
        f = win_rate - (1 - win_rate) / payoff
        if f <= 0:
            return Denied(reason="sizing_unavailable", detail=f"Kelly fraction {f:.4f} <= 0: no edge")
        return f

    # ---- state triggers ---------------------------------------------------------------------------------

    @property
    def equity(self) -> Decimal | None:
        return self._equity

    @property
    def daily_pnl(self) -> Decimal:
        if self._equity is None or self._sod_equity is None:
            return _ZERO
        return self._equity - self._sod_equity

    @property
    def trip(self) -> Trip | None:
        return self._trip

    @property
    def baseline(self) -> tuple[int | None, Decimal | None, Decimal | None]:
        """(day start ms, start-of-day equity, high-water mark): what the loss limits measure from."""
        return self._day_start_ms, self._sod_equity, self._hwm

    def _day_start(self, now_ms: int) -> int:
        offset = self._limits.day_roll_utc_hour * _HOUR_MS
        return (now_ms - offset) // _DAY_MS * _DAY_MS + offset

    def on_equity(self, equity: Decimal, now_ms: int) -> Trip | None:
        """A new account equity (quote). Rolls the day, moves the high-water mark, and returns a
        :class:`Trip` the first time a loss limit is reached (the loss at or beyond the limit)."""
        self._equity = equity
        self._gate.set_equity(max(0, int((equity / self._unit).to_integral_value(rounding=ROUND_FLOOR))))
        day = self._day_start(now_ms)
        if self._day_start_ms is None or day > self._day_start_ms:
            self._day_start_ms = day
            self._sod_equity = equity
        if self._hwm is None or equity > self._hwm:
            self._hwm = equity
        if self._trip is not None:
            return None
        trip = self._loss_trip(equity)
        if trip is not None:
            self._trip = trip
        return trip

    def _loss_trip(self, equity: Decimal) -> Trip | None:
        lim = self._limits
        sod = self._sod_equity if self._sod_equity is not None else equity
        loss = sod - equity
        if lim.daily_loss_limit > 0 and loss >= lim.daily_loss_limit:
            return Trip(
                reason="daily_loss_limit",
                detail=f"daily loss {loss} >= {lim.daily_loss_limit} (start of day {sod}, equity {equity})",
            )
        if lim.daily_loss_limit_pct > 0 and sod > 0 and loss * _HUNDRED >= sod * lim.daily_loss_limit_pct:
            return Trip(
                reason="daily_loss_limit_pct",
                detail=f"daily loss {loss} >= {lim.daily_loss_limit_pct}% of start-of-day equity {sod}",
            )
        hwm = self._hwm
        if lim.max_drawdown_pct > 0 and hwm is not None and hwm > 0:
            drawdown = hwm - equity
            if drawdown * _HUNDRED >= hwm * lim.max_drawdown_pct:
                return Trip(
                    reason="max_drawdown",
                    detail=f"drawdown {drawdown} >= {lim.max_drawdown_pct}% of high-water mark {hwm}",
                )
        return None

    def report_unreconciled(self, venue: Venue, symbol: str, detail: str) -> Trip:
        """A position that cannot be reconciled with the venue: always a trip (latched)."""
        trip = Trip(reason="unreconciled_position", detail=f"{venue}:{symbol}: {detail}")
        self._trip = trip
        return trip

    def clear_trip(self) -> None:
        """The operator's reset: the next breach reports a trip again."""
        self._trip = None

    def on_trade_closed(self, pnl: Decimal, now_ms: int) -> int | None:
        """A closed trade's net pnl. Returns the cooling-off end (epoch ms) when this loss starts one."""
        if pnl > 0:
            self._wins += 1
            self._sum_wins += pnl
        elif pnl < 0:
            self._losses += 1
            self._sum_losses += -pnl
        sign = 1 if pnl > 0 else -1 if pnl < 0 else 0
        if self._gate.record_trade(sign, now_ms):
            return int(self._gate.cooling_until_ms)
        return None

    @property
    def consecutive_losses(self) -> int:
        return int(self._gate.consecutive_losses)

    @property
    def cooling_off_until_ms(self) -> int:
        return int(self._gate.cooling_until_ms)

    # ---- persistence ----------------------------------------------------------------------------------

    def state(self) -> dict[str, str]:
        """The risk state that must survive a restart, as strings (the journal stores it)."""

        def opt(v: object) -> str:
            return "" if v is None else str(v)

        return {
            "start_of_day_equity": opt(self._sod_equity),
            "day_start_ms": opt(self._day_start_ms),
            "high_water_mark": opt(self._hwm),
            "consecutive_losses": str(self._gate.consecutive_losses),
            "cooling_off_until_ms": str(self._gate.cooling_until_ms),
            "trip_reason": self._trip.reason if self._trip else "",
            "trip_detail": self._trip.detail if self._trip else "",
            "wins": str(self._wins),
            "losses": str(self._losses),
            "sum_wins": str(self._sum_wins),
            "sum_losses": str(self._sum_losses),
        }

    def restore(self, saved: Mapping[str, str]) -> None:
        """Restore :meth:`state` (all keys required; a bad one raises ``RiskLimitError`` naming it and
        nothing changes)."""
        missing = [k for k in _STATE_KEYS if k not in saved]
        if missing:
            raise RiskLimitError(key=missing[0], reason="missing", path="risk state")
        unknown = sorted(set(saved) - set(_STATE_KEYS))
        if unknown:
            raise RiskLimitError(key=unknown[0], reason="unknown key", path="risk state")

        def dec(key: str, *, optional: bool) -> Decimal | None:
            raw = saved[key]
            if raw == "" and optional:
                return None
            d = _to_decimal_state(key, raw)
            if d < 0 and key != "start_of_day_equity" and key != "high_water_mark":
                raise RiskLimitError(key=key, reason=f"must be >= 0, got {raw!r}", path="risk state")
            return d

        def integer(key: str, *, optional: bool) -> int | None:
            raw = saved[key]
            if raw == "" and optional:
                return None
            try:
                value = int(raw)
            except ValueError:
                raise RiskLimitError(key=key, reason=f"not an integer: {raw!r}", path="risk state") from None
            if value < 0:
                raise RiskLimitError(key=key, reason=f"must be >= 0, got {raw!r}", path="risk state")
            return value

        sod = dec("start_of_day_equity", optional=True)
        day_start = integer("day_start_ms", optional=True)
        hwm = dec("high_water_mark", optional=True)
        losses_in_row = integer("consecutive_losses", optional=False)
        cooling = integer("cooling_off_until_ms", optional=False)
        wins = integer("wins", optional=False)
        losses = integer("losses", optional=False)
        sum_wins = dec("sum_wins", optional=False)
        sum_losses = dec("sum_losses", optional=False)
        assert losses_in_row is not None and cooling is not None and wins is not None and losses is not None
        assert sum_wins is not None and sum_losses is not None
        self._sod_equity, self._day_start_ms, self._hwm = sod, day_start, hwm
        self._gate.set_cooling(losses_in_row, cooling)
        self._wins, self._losses, self._sum_wins, self._sum_losses = wins, losses, sum_wins, sum_losses
        reason = saved["trip_reason"]
        self._trip = Trip(reason=reason, detail=saved["trip_detail"]) if reason else None

    # ---- reads ------------------------------------------------------------------------------------------

    def portfolio_metrics(
        self, positions: Iterable[Position], equity_series: Sequence[Decimal]
    ) -> PortfolioMetrics:
        """:func:`portfolio_metrics` with this account's current equity (else the series' last value)."""
        return portfolio_metrics(positions, equity_series, equity=self._equity)

    def exposure(self) -> Decimal:
        """The gate's worst-case total exposure (open orders as if filled), in quote."""
        return Decimal(self._gate.total_exposure) * self._unit

    def status(self) -> dict[str, object]:
        """The risk state for the admin socket's ``risk`` command (money as decimal strings)."""
        trip = self._trip
        return {
            "engine_state": self._engine_state.value,
            "equity": "" if self._equity is None else str(self._equity),
            "start_of_day_equity": "" if self._sod_equity is None else str(self._sod_equity),
            "daily_pnl": str(self.daily_pnl),
            "high_water_mark": "" if self._hwm is None else str(self._hwm),
            "exposure": str(self.exposure()),
            "consecutive_losses": self.consecutive_losses,
            "cooling_off_until_ms": self.cooling_off_until_ms,
            "trip": None if trip is None else {"reason": trip.reason, "detail": trip.detail},
            "symbols": {
                f"{v.value}:{sym}": {
                    "position_lots": self._gate.position(s.sid),
                    "open_orders": self._gate.open_orders(s.sid),
                    "book_live": bool(self._gate.book_healthy(s.sid)),
                    "exposure": str(Decimal(self._gate.exposure(s.sid)) * self._unit),
                }
                for (v, sym), s in self._symbols.items()
            },
            "limits": self._limits.to_mapping(),
        }

    def _require(self, venue: Venue, symbol: str) -> _Symbol:
        s = self._symbols.get((venue, symbol))
        if s is None:
            raise KeyError(f"{venue}:{symbol} is not a configured instrument")
        return s


def _unknown(venue: Venue, symbol: str) -> Denied:
    return Denied(reason="unknown_symbol", detail=f"{venue}:{symbol} is not configured")


def _to_decimal_state(key: str, raw: str) -> Decimal:
    try:
        d = Decimal(raw)
    except InvalidOperation:
        raise RiskLimitError(key=key, reason=f"not a decimal number: {raw!r}", path="risk state") from None
    if not d.is_finite():
        raise RiskLimitError(key=key, reason=f"must be finite, got {raw!r}", path="risk state")
    return d
