"""``TradingEngine``: the state machine, the event loop's pipeline, the bounded queues and the wiring.

Data flow (DESIGN.md)::

    adapters --sink--> [user queue]   --> OMS --> risk triggers (equity, unreconciled positions)
                   \\-> [market queue] --> risk references / book health --> strategies --> signals
    signals --> UnifiedRiskManager (Approved | Denied(reason)) --> journal intent (committed)
            --> adapter.place_order --> journal outcome --> OMS

**States** (DESIGN.md's table; :data:`TRANSITIONS` is the whole machine): ``stopped -> starting ->
running | paused | emergency_stopped``; ``running <-> paused``; ``running | paused ->
emergency_stopped``; ``emergency_stopped -> paused`` (``reset`` only); ``* -> stopping -> stopped``.
Anything else raises :class:`~engine.errors.InvalidTransition`. Every transition is logged with its cause
(``operator: ...``, ``risk: ...``, ``fault: ...``, ``start: ...``), journaled, and published to
subscribers. The risk gate's state follows the engine's, so the gate itself enforces the table:
paused denies entries and passes reduce-only exits, emergency passes only the engine's flattening
orders. The send path checks the state once more right before the wire (an order approved just before
an emergency stop is not sent).

**Queues** (every one bounded, and each says what happens when full):

- *market queue*: an ordered map keyed by ``(kind, venue, symbol)`` for book updates and mark prices:
  a newer event replaces the pending one of its symbol (coalesced, counted in ``md_coalesced``), so its
  size is bounded by the number of symbols. Trades are queued individually up to ``market_queue_size``;
  beyond that the oldest pending trade is dropped and counted (``trades_dropped``; bars then miss a
  print, which is visible on the admin socket). Book updates never need replay: the adapter's book is
  the state, the event is only a wake-up.
- *user queue* (orders, fills, positions, balances, funding, venue status): never dropped. It is bounded
  by ``user_queue_size`` as a *pause threshold*: reaching it pauses entries (cause ``fault:
  user_queue_full``) and publishes an alert; the event is still queued (losing a fill is worse than a
  pause), and with entries stopped the queue drains. ``user_queue_high`` shows the high-water mark.
- *subscriber queues* (admin ``subscribe``): ``SUBSCRIBER_QUEUE`` events each; a slow subscriber loses
  its oldest events, counted, and receives a ``lagged`` event saying how many.

**The loop** is one task (``_pump``): user events first, then market events; it yields to the event
loop every ``batch`` events, so the admin socket is served while market data floods in. Orders are
sent from their own tasks (the journal intent is awaited, committed, before the adapter is called).

**Recovery** on start happens in :meth:`TradingEngine._recover`, the single call site before any strategy
sees a market event: :func:`engine.recovery.recover` (journal intents queried by client id first, then
the venues reconciled); incomplete -> ``paused`` with the reason as ``state_reason``; the journal's
emergency latch -> ``emergency_stopped``.

**Observability**: ``metrics`` (:class:`engine.metrics.Metrics`) is fed at the state machine, the sink
(events per stream, flushed by housekeeping), the book (receive -> applied latency), the send path
(signal -> sent, sent -> ack, orders by outcome), risk denials, ``VenueStatus`` (resyncs, reconnects) and
housekeeping (equity, PnL, exposure, rate-limit use); :meth:`TradingEngine.ready_reasons` is ``/ready``.
``alerter`` (:class:`engine.alerts.Alerter`) gets state changes, risk trips, bans, disconnects and the
engine's own alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal as signal_mod
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NamedTuple, TextIO, TypeAlias

from engine.adapters.base import AdapterSettings, EventSink, ExchangeAdapter
from engine.adapters.common.ids import ClientIdGenerator
from engine.adapters.common.ratelimit import RateLimiter
from engine.admin import AdminServer
from engine.alerts import Alerter
from engine.config import EngineConfig, Mode, to_adapter_settings
from engine.control import JSON, ControlError
from engine.errors import (
    EngineError,
    InvalidTransition,
    OrderRejected,
    RiskLimitError,
    VenueError,
    VenueUnavailable,
)
from engine.journal import Journal
from engine.logs import configure_logging
from engine.metrics import Metrics, MetricsServer
from engine.oms import ExitKind, ExitTrigger, OrderManager, Severity, dec_str, money_str
from engine.paper import PaperVenue
from engine.recovery import RecoveryReport, recover
from engine.risk import Approved, Denied, RiskLimits, Trip, UnifiedRiskManager
from engine.strategies import Strategy, create
from engine.types import (
    BalanceUpdate,
    BookHealth,
    BookUpdate,
    EngineState,
    Fill,
    FundingPayment,
    Instrument,
    MarginMode,
    MarketEvent,
    MarkPrice,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionSide,
    PositionUpdate,
    Side,
    Signal,
    TradeTick,
    UserEvent,
    Venue,
    VenueStatus,
)

__all__ = [
    "SUBSCRIBER_QUEUE",
    "TRANSITIONS",
    "AdapterFactory",
    "JournalPort",
    "SendResult",
    "TradingEngine",
    "default_adapter_factory",
    "resolve_admin_socket",
    "run_engine",
    "serve",
]

log = logging.getLogger("engine.engine")

S = EngineState
#: from-state -> the states it may move to. Nothing else is legal.
TRANSITIONS: Final[Mapping[EngineState, frozenset[EngineState]]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.PAUSED, S.EMERGENCY_STOPPED, S.STOPPING}),
    S.RUNNING: frozenset({S.PAUSED, S.EMERGENCY_STOPPED, S.STOPPING}),
    S.PAUSED: frozenset({S.RUNNING, S.EMERGENCY_STOPPED, S.STOPPING}),
    S.EMERGENCY_STOPPED: frozenset({S.PAUSED, S.STOPPING}),
    S.STOPPING: frozenset({S.STOPPED}),
}

#: Events a slow admin subscriber may have pending before it loses the oldest.
SUBSCRIBER_QUEUE: Final = 1_000
_HOUSEKEEPING_S: Final = 0.25
_PENDING_QUERY_AFTER_MS: Final = 3_000
_FLATTEN_IDS_KEPT = 1_000  # ids of the engine's flattening orders remembered (for audits and tests)
_FINAL_OWED_KEPT = 1_000  # ended orders waiting for their last trades before their outcome is journaled
_LATENCY_SAMPLES: Final = 4_096
#: A signal repeated within this many seconds is the same delivery (group + parent), not a second ask.
_DUPLICATE_SIGNAL_S: Final = 0.5
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)

AdapterFactory = Callable[[AdapterSettings, EventSink], ExchangeAdapter]


#: The engine's journal: ``engine.journal.Journal`` (recovery reads its intents, outcomes and latch).
JournalPort: TypeAlias = Journal


def default_adapter_factory(settings: AdapterSettings, sink: EventSink) -> ExchangeAdapter:
    """The real adapter for ``settings.venue``."""
    if settings.venue is Venue.BINANCE:
        from engine.adapters.binance import BinanceAdapter

        return BinanceAdapter(settings, sink)
    from engine.adapters.bybit import BybitAdapter

    return BybitAdapter(settings, sink)


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """What became of one signal: ``decision`` from risk; ``task`` sends the order when approved."""

    decision: Approved | Denied
    client_order_id: str | None = None
    task: asyncio.Task[Order | None] | None = None


@dataclass(frozen=True, kw_only=True)
class _ExitPlan:
    venue: Venue
    symbol: str
    entry_side: Side
    position_side: PositionSide
    stop_loss: Decimal | None
    take_profit: Decimal | None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _busiest_window(limiter: RateLimiter) -> tuple[int, int]:
    """(used, limit) of the limiter's window with the highest use ratio ((0, 0) when it has none)."""
    best = (0, 0)
    for w in limiter.rules.windows:
        used = limiter.used(w.name)
        if w.limit > 0 and (best[1] == 0 or used * best[1] > best[0] * w.limit):
            best = (used, w.limit)
    return best


def _pct(samples: Iterable[int], q: float) -> float | None:
    data = sorted(samples)
    if not data:
        return None
    idx = min(len(data) - 1, max(0, round(q * (len(data) - 1))))
    return data[idx] / 1000.0  # ns -> us


class _Owed(NamedTuple):
    """An ended order's outcome waiting for the trades not seen yet (``qty`` of them)."""

    qty: Decimal
    kind: str  # the journal outcome: "fill" (the order FILLED), "cancel", "expire" or "reject"
    data: dict[str, Any]


def _signal_dict(sig: Signal) -> dict[str, Any]:
    return {
        "venue": sig.venue.value,
        "symbol": sig.symbol,
        "side": sig.side.value,
        "type": sig.type.value,
        "qty": None if sig.qty is None else str(sig.qty),
        "limit_price": None if sig.limit_price is None else str(sig.limit_price),
        "stop_loss": None if sig.stop_loss is None else str(sig.stop_loss),
        "take_profit": None if sig.take_profit is None else str(sig.take_profit),
        "reduce_only": sig.reduce_only,
        "reason": sig.reason,
        "strategy": sig.strategy,
    }


def _decision_dict(decision: Approved | Denied) -> dict[str, Any]:
    if isinstance(decision, Denied):
        return {"result": "denied", "reason": decision.reason, "detail": decision.detail}
    return {
        "result": "approved",
        "qty": str(decision.qty),
        "price": None if decision.price is None else str(decision.price),
        "requested_qty": str(decision.requested_qty),
        "reduced": decision.reduced,
        "sized": decision.sized,
    }


class TradingEngine:
    """One account's engine on one event loop; implements :class:`engine.control.EngineControl`.

    ``TradingEngine(config=cfg, settings=to_adapter_settings(cfg, urls))``; ``await start()``; the
    engine runs until ``await stop()`` (or ``wait_stopped()`` after a stop command).
    """

    def __init__(
        self,
        *,
        config: EngineConfig,
        settings: Sequence[AdapterSettings],
        strategy: Strategy | None = None,
        journal: JournalPort | None = None,
        adapter_factory: AdapterFactory | None = None,
        limits: RiskLimits | None = None,
        market_queue_size: int = 10_000,
        user_queue_size: int = 10_000,
        batch: int = 64,
        clock: Callable[[], int] = _now_ms,
        id_prefix: str = "e",
        metrics: Metrics | None = None,
        alerter: Alerter | None = None,
    ) -> None:
        if market_queue_size < 1 or user_queue_size < 1 or batch < 1:
            raise ValueError("market_queue_size, user_queue_size and batch must be >= 1")
        self.config = config
        self.settings = tuple(settings)
        self.symbols: tuple[tuple[Venue, str], ...] = tuple(
            (s.venue, sym) for s in self.settings for sym in ExchangeAdapter.symbols_of(s.symbols)
        )
        self.strategy = strategy or create(
            config.strategy.name, params=config.strategy.params, symbols=self.symbols
        )
        if self.strategy.requires_books:
            # the adapters exist once start() made them; a read before that finds no book (None)
            self.strategy.bind_books(self._book_for)
        self.journal = journal
        #: Prometheus metrics fed by the engine (``MetricsServer`` serves them), and operator alerts.
        self.prom = metrics
        self.alerter = alerter
        #: what the last start's recovery did (None without a journal, or before start)
        self.recovery: RecoveryReport | None = None
        self._factory = adapter_factory or default_adapter_factory
        if limits is not None:
            self._limits = limits
        elif isinstance(config.risk_limits, RiskLimits):
            self._limits = config.risk_limits
        else:
            self._limits = RiskLimits.from_mapping(dict(config.risk))
        self.market_queue_size = market_queue_size
        self.user_queue_size = user_queue_size
        self.batch = batch
        self.now_ms = clock
        self.ids = ClientIdGenerator(id_prefix)
        self.oms = OrderManager()
        self._risk: UnifiedRiskManager | None = None
        self.adapters: dict[Venue, ExchangeAdapter] = {}
        self.instruments: dict[tuple[Venue, str], Instrument] = {}

        self._state = EngineState.STOPPED
        self._state_reason = "not started"
        self._state_since_ms = clock()
        self._started_mono: float | None = None
        self._stopped = asyncio.Event()
        self._emergency_lock = asyncio.Lock()

        # queues
        self._user: deque[UserEvent | VenueStatus] = deque()
        self._market: OrderedDict[tuple[object, ...], MarketEvent] = OrderedDict()
        self._trade_seq = 0
        self._trades_pending = 0
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight: set[asyncio.Task[Order | None]] = set()

        self._strategies_live = False
        self._risk_live = False
        # set by _recover once the journal's risk state is restored: equity reaches the risk manager only
        # after that, or a balance arriving during start-up would set a fresh start-of-day equity (and
        # journal it) before the restore, and a kill at that moment would reset the PnL baseline
        self._risk_restored = False
        self._jopen = False  # the journal is started and not closed: records go to it
        self._booked: dict[tuple[Venue, str], Side] = {}
        # orders that ended (filled, canceled, expired, rejected) with trades not yet seen: their terminal
        # outcome is journaled with the last one, so a crash before it leaves the intent unfinished and
        # recovery backfills the trades (at most _FINAL_OWED_KEPT)
        self._final_owed: dict[tuple[Venue, str], _Owed] = {}
        # the engine's own flattening orders, most recent last (at most _FLATTEN_IDS_KEPT; rare orders)
        self._flatten_ids: OrderedDict[tuple[Venue, str], None] = OrderedDict()
        self._exit_plans: dict[tuple[Venue, str], _ExitPlan] = {}
        self._trade_open: dict[tuple[Venue, str], Decimal] = {}  # realized - fees when opened
        self._streams: dict[tuple[Venue, str], str] = {}
        self._books: dict[tuple[Venue, str], BookHealth] = {}
        self._subscribers: list[asyncio.Queue[JSON]] = []
        self._last_timer_ms = 0
        self._equity_series: deque[Decimal] = deque(maxlen=10_000)
        self._last_equity_sample_ms = 0

        self.counters: Counter[str] = Counter()
        # events received per (venue, stream kind) since the last flush to ``prom`` (housekeeping)
        self._events_unflushed: Counter[tuple[Venue, str]] = Counter()
        self.denials: Counter[str] = Counter()
        self.orders_by_outcome: Counter[str] = Counter()
        self._lat_signal_to_send: deque[int] = deque(maxlen=_LATENCY_SAMPLES)
        self._lat_send_to_ack: deque[int] = deque(maxlen=_LATENCY_SAMPLES)
        self.user_queue_high = 0
        self._rate_t = time.monotonic()
        self._rate_events = 0
        self.events_per_s = 0.0

    def _book_for(self, venue: Venue, symbol: str) -> Any:
        """The strategies' book source: the venue adapter's local book, None without that adapter."""
        adapter = self.adapters.get(venue)
        return adapter.book(symbol) if adapter is not None else None

    # ================================================================ state machine

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def state_reason(self) -> str:
        return self._state_reason

    @property
    def _j(self) -> JournalPort | None:
        """The journal while it is open (records go to it), else None."""
        return self.journal if self._jopen else None

    @property
    def risk_manager(self) -> UnifiedRiskManager:
        if self._risk is None:
            raise EngineError("the risk manager exists once the engine has started (instruments loaded)")
        return self._risk

    def transition(self, to: EngineState, cause: str) -> None:
        """Move to ``to`` or raise :class:`InvalidTransition`; logs, journals and publishes it."""
        frm = self._state
        if to not in TRANSITIONS[frm]:
            raise InvalidTransition(from_state=frm.value, to_state=to.value, cause=cause)
        self._state = to
        self._state_reason = cause
        self._state_since_ms = self.now_ms()
        if self._risk is not None:
            self._risk.set_engine_state(to)
        log.warning("engine_transition from=%s to=%s cause=%r", frm.value, to.value, cause)
        if (j := self._j) is not None:
            j.transition(frm.value, to.value, cause)
        if self.prom is not None:
            self.prom.set_state(to.value)
        if self.alerter is not None:
            self.alerter.state_changed(frm.value, to.value, cause=cause)
        self.counters[f"transitions_to_{to.value}"] += 1
        self.publish({"event": "state", "from": frm.value, "to": to.value, "cause": cause})

    def _control_transition(self, to: EngineState, cause: str) -> None:
        try:
            self.transition(to, cause)
        except InvalidTransition as exc:
            raise ControlError("invalid_transition", str(exc)) from exc

    # ================================================================ lifecycle

    async def start(self) -> None:
        """Connect the venues, load instruments, recover, and go running (or paused / emergency)."""
        if self._state is not EngineState.STOPPED:
            raise InvalidTransition(from_state=self._state.value, to_state=EngineState.STARTING.value)
        if self.journal is not None:
            await self.journal.start()
            self._jopen = True
        self.transition(EngineState.STARTING, "start")
        self._started_mono = time.monotonic()
        try:
            for s in self.settings:
                self.adapters[s.venue] = self._factory(s, self._sink)
            for adapter in self.adapters.values():
                await adapter.connect()
            await self._load_instruments()
            self._pump_task = asyncio.create_task(self._pump(), name="engine-pump")
            incomplete, latched = await self._recover()
            # the restored (or first) start-of-day equity and high-water mark, durable before anything
            # trades: a kill right after start-up cannot reset the PnL baseline on the next start
            if (j := self._j) is not None:
                j.save_risk_state(self.risk_manager.state())
                await j.flush()
        except BaseException as exc:
            log.error("engine_start_failed error=%r", str(exc))
            await self._teardown(f"fault: start failed: {exc!r}")
            raise
        self._risk_live = True
        self._strategies_live = True
        trip = self.risk_manager.trip
        if self.state is EngineState.EMERGENCY_STOPPED:
            pass  # a risk trigger fired during recovery (_on_trip moved the engine already)
        elif latched is not None:
            await self._restart_emergency(f"start: emergency stop latched (restored): {latched}")
        elif trip is not None:
            await self._restart_emergency(f"risk: {trip.reason} (restored): {trip.detail}")
        elif incomplete:
            self.transition(EngineState.PAUSED, f"start: recovery incomplete: {incomplete}")
        else:
            self.transition(EngineState.RUNNING, "start: recovered")
        self._housekeeping_task = asyncio.create_task(self._housekeeping(), name="engine-housekeeping")

    async def _restart_emergency(self, cause: str) -> None:
        """Start back in emergency_stopped and make sure of it on the venues (an order may have been left
        resting or placed before the crash): cancel everything, flatten only when configured."""
        self.transition(EngineState.EMERGENCY_STOPPED, cause)
        done = await self._emergency_actions(self.config.engine.flatten_on_emergency)
        log.warning("engine_start_emergency_enforced canceled=%s errors=%s", done["canceled"], done["errors"])

    async def _load_instruments(self) -> None:
        insts: list[Instrument] = []
        for venue, adapter in self.adapters.items():
            known = await adapter.instruments()
            for v, sym in self.symbols:
                if v is not venue:
                    continue
                inst = known.get(sym)
                if inst is None:
                    raise EngineError(f"{venue}: symbol {sym} is not listed by the venue")
                self.instruments[(v, sym)] = inst
                insts.append(inst)
        self._risk = UnifiedRiskManager(instruments=insts, limits=self._limits, state=self._state)
        for v, sym in self.symbols:
            adapter = self.adapters[v]
            health = adapter.book_health(sym)
            self._books[(v, sym)] = health
            self._risk.set_book_health(v, sym, health)
            mid = adapter.book(sym).mid()
            if mid is not None:
                self._risk.set_reference(v, sym, mid)

    async def _recover(self) -> tuple[str, str | None]:
        """THE recovery call site: runs after the venues are connected and before any strategy sees a
        market event. Returns (why recovery is incomplete, "" when complete; the cause of a latched
        emergency stop, None when not latched).

        With a journal: :func:`engine.recovery.recover` restores the risk state, re-tracks unfinished
        intents, queries the intents with no outcome by client order id first, then reconciles the
        venues' open orders, positions and balances (the venue is the truth); the journal's emergency
        latch is read back (``journal.emergency_latched()``). Without a journal: the venues' snapshot is
        reconciled into the OMS and orders with an unknown outcome are queried."""
        problems: list[str] = []
        latched: str | None = None
        if (j := self._j) is not None:
            report = await recover(j, self.adapters, self.oms, self.risk_manager, now_ms=self.now_ms())
            self.recovery = report
            if not report.completed:
                problems.append(report.reason)
            if report.irreconcilable:
                problems.append(f"{len(report.irreconcilable)} irreconcilable differences")
            if await j.emergency_latched():
                latched = report.emergency_cause or "emergency stop before the restart"
        else:
            for venue, adapter in self.adapters.items():
                ts = self.now_ms()
                orders = await adapter.open_orders()
                positions = await adapter.positions()
                balances = await adapter.balances()
                rec = self.oms.reconcile(venue, orders, positions, balances, ts_ms=ts)
                for d in rec.differences:
                    log.info(
                        "engine_reconcile_difference %s",
                        " ".join(f"{k}={v!r}" for k, v in d.as_dict().items()),
                    )
                for symbol, cid in rec.needs_query:
                    answer = await adapter.get_order(symbol, client_order_id=cid)
                    self.oms.on_query_result(venue, cid, answer, ts_ms=self.now_ms())
                if rec.irreconcilable:
                    problems.append(f"{venue.value}: {len(rec.irreconcilable)} irreconcilable differences")
        self._sync_risk_from_oms()
        self._risk_restored = True
        self._check_equity()
        return "; ".join(problems), latched

    async def stop(self, *, reason: str = "operator") -> JSON:
        """Graceful stop: no new signals, resting orders cancelled (``cancel_on_stop``), journal flushed,
        streams closed. A second call while stopping waits for the first."""
        if self._state is EngineState.STOPPING:
            await self._stopped.wait()
            return {"state": self._state.value, "canceled": 0}
        self._control_transition(EngineState.STOPPING, f"operator: stop: {reason}")
        self._strategies_live = False
        canceled = 0
        await self._drain_inflight()
        if self.config.engine.cancel_on_stop:
            for adapter in self.adapters.values():
                try:
                    done = await adapter.cancel_all()
                except VenueError as exc:
                    log.error("engine_stop_cancel_failed venue=%s error=%r", adapter.venue, str(exc))
                    continue
                canceled += len(done)
                for o in done:
                    self._apply_order(o)
        await self._teardown(f"operator: stop: {reason}")
        return {"state": self._state.value, "canceled": canceled}

    async def _teardown(self, cause: str) -> None:
        """Stop the tasks, drain the user queue, save the risk state, close adapters and journal."""
        self._strategies_live = False
        if self._state is not EngineState.STOPPING and EngineState.STOPPING in TRANSITIONS[self._state]:
            self.transition(EngineState.STOPPING, cause)
        for task in (self._housekeeping_task, self._pump_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._housekeeping_task = self._pump_task = None
        await self._drain_inflight()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for adapter in self.adapters.values():
            await adapter.close()
        self._process_pending_user()
        if self._state is EngineState.STOPPING:
            self.transition(EngineState.STOPPED, cause)
        if self.journal is not None and self._jopen:
            if self._risk is not None:
                self.journal.save_risk_state(self._risk.state())
            self._jopen = False
            await self.journal.close()
        self._stopped.set()
        for q in self._subscribers:
            self._offer(q, {"event": "end", "ts_ms": self.now_ms()})

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # ================================================================ the sink and the pump

    def _sink(self, event: MarketEvent | UserEvent) -> None:
        """Called by the adapters on the loop for every event; never blocks (see the module docstring)."""
        if isinstance(event, BookUpdate):
            self._events_unflushed[(event.venue, "book")] += 1
            key: tuple[object, ...] = ("b", event.venue, event.symbol)
            if key in self._market:
                self.counters["md_coalesced"] += 1
            self._market[key] = event
        elif isinstance(event, MarkPrice):
            self._events_unflushed[(event.venue, "mark")] += 1
            key = ("m", event.venue, event.symbol)
            if key in self._market:
                self.counters["md_coalesced"] += 1
            self._market[key] = event
        elif isinstance(event, TradeTick):
            self._events_unflushed[(event.venue, "trade")] += 1
            if self._trades_pending >= self.market_queue_size:
                for k in self._market:
                    if k[0] == "t":
                        del self._market[k]
                        self._trades_pending -= 1
                        self.counters["trades_dropped"] += 1
                        break
            self._trade_seq += 1
            self._market[("t", self._trade_seq)] = event
            self._trades_pending += 1
        else:
            self._user.append(event)
            n = len(self._user)
            if n > self.user_queue_high:
                self.user_queue_high = n
            if n == self.user_queue_size:
                self.counters["user_queue_full"] += 1
                log.error("engine_user_queue_full size=%d", n)
                self.alert("user_queue_full", f"{n} user events pending: entries paused")
                if self._state is EngineState.RUNNING:
                    self.transition(EngineState.PAUSED, f"fault: user_queue_full ({n} events pending)")
        self._wake.set()

    async def _pump(self) -> None:
        """The one consumer of both queues: user events first; yields every ``batch`` events."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            n = 0
            while self._user or self._market:
                if self._user:
                    self._guarded(self._on_user, self._user.popleft())
                else:
                    key, ev = self._market.popitem(last=False)
                    if key[0] == "t":
                        self._trades_pending -= 1
                    self._guarded(self._on_market, ev)
                n += 1
                if n >= self.batch:
                    n = 0
                    await asyncio.sleep(0)

    def _guarded(self, fn: Callable[[Any], None], event: Any) -> None:
        self._rate_events += 1
        try:
            fn(event)
        except Exception as exc:  # a bug handling one event must not stop the engine: logged + alerted
            self.counters["handler_errors"] += 1
            log.exception("engine_event_failed kind=%s", type(event).__name__)
            self.alert("handler_error", f"{type(event).__name__}: {exc!r}")

    def _process_pending_user(self) -> None:
        while self._user:
            self._guarded(self._on_user, self._user.popleft())

    # ================================================================ user events

    def _on_user(self, ev: UserEvent | VenueStatus) -> None:
        self.counters["user_events"] += 1
        if isinstance(ev, VenueStatus):
            self._events_unflushed[(ev.venue, "status")] += 1
            self._on_status(ev)
            return
        if isinstance(ev, OrderUpdate):
            self._events_unflushed[(ev.order.venue, "user")] += 1
            self._on_order_update(ev)
        elif isinstance(ev, PositionUpdate):
            self._events_unflushed[(ev.position.venue, "user")] += 1
            self.oms.on_position_update(ev)
        elif isinstance(ev, BalanceUpdate):
            self._events_unflushed[(ev.balance.venue, "user")] += 1
            self.oms.on_balance(ev.balance)
            self._check_equity()
        elif isinstance(ev, FundingPayment):
            self._events_unflushed[(ev.venue, "user")] += 1
            self.oms.on_funding(ev)
            self.publish(
                {"event": "funding", "venue": ev.venue.value, "symbol": ev.symbol, "amount": str(ev.amount)}
            )

    def _on_order_update(self, ev: OrderUpdate) -> None:
        o = ev.order
        fill = ev.fill
        key = (o.venue, o.client_order_id)
        before = self.oms.position(fill.venue, fill.symbol, fill.position_side).qty if fill else _ZERO
        self.oms.on_order(o)
        if fill is not None and self.oms.on_fill(fill):
            tracked = self.oms.order(*key)
            status = tracked.status if tracked is not None else o.status
            owed = self._final_owed.get(key)
            if owed is not None:  # the order ended before this trade: one fewer owed
                if owed.qty > fill.qty:
                    self._final_owed[key] = owed._replace(qty=owed.qty - fill.qty)
                else:
                    del self._final_owed[key]
                if owed.kind == "fill":
                    status = OrderStatus.PARTIALLY_FILLED if key in self._final_owed else OrderStatus.FILLED
            elif status is OrderStatus.FILLED and tracked is not None and tracked.fills_owed:
                # filled on the venue (e.g. per the REST answer) but not every trade seen yet: the journal
                # keeps the intent unfinished until the last one, so a crash before it is recovered by
                # backfilling the trades instead of losing them
                self._owe(key, _Owed(tracked.fills_owed, "fill", {"status": "filled"}))
                status = OrderStatus.PARTIALLY_FILLED
            self._on_new_fill(fill, before, status)
            if owed is not None and key not in self._final_owed and owed.kind != "fill":
                if (j := self._j) is not None:
                    j.outcome(o.client_order_id, owed.kind, owed.data)  # the last owed trade: now it ended
        self._after_order(key)

    def _on_new_fill(self, fill: Fill, before: Decimal, status: OrderStatus) -> None:
        """A fill seen for the first time; ``status`` is its order's state after it (journaled with the
        fill outcome: a ``filled`` one finishes the order in the journal)."""
        self.counters["fills"] += 1
        if self._risk_live:
            self.risk_manager.on_fill(fill)
        if (j := self._j) is not None:
            j.fill(fill)
            j.outcome(
                fill.client_order_id,
                "fill",
                {
                    "trade_id": fill.trade_id,
                    "price": str(fill.price),
                    "qty": str(fill.qty),
                    "fee": str(fill.fee),
                    "status": status.value,
                },
            )
        self.publish(
            {
                "event": "fill",
                "venue": fill.venue.value,
                "symbol": fill.symbol,
                "client_order_id": fill.client_order_id,
                "side": fill.side.value,
                "price": str(fill.price),
                "qty": str(fill.qty),
                "fee": str(fill.fee),
            }
        )
        self._track_trade(fill, before)
        plan = self._exit_plans.pop((fill.venue, fill.client_order_id), None)
        if plan is not None and self._state in (EngineState.RUNNING, EngineState.PAUSED):
            self._spawn(self._place_exits(plan), "engine-exits")
        if self._strategies_live:
            self._on_signals(self.strategy.on_fill(fill))

    def _track_trade(self, fill: Fill, before: Decimal) -> None:
        """A round trip closes when the position goes flat (or flips): feed risk its net pnl."""
        pos = self.oms.position(fill.venue, fill.symbol, fill.position_side)
        key = (fill.venue, fill.symbol)
        net = pos.realized_pnl - pos.fees
        if not before and pos.qty:
            self._trade_open[key] = net
        elif before and (not pos.qty or (pos.qty > 0) != (before > 0)):
            opened = self._trade_open.pop(key, _ZERO)
            if self._risk_live:
                until = self.risk_manager.on_trade_closed(net - opened, self.now_ms())
                if until is not None:
                    self.alert("cooling_off", f"consecutive losses: entries denied until {until}")
            if pos.qty:
                self._trade_open[key] = net

    def _owe(self, key: tuple[Venue, str], owed: _Owed) -> None:
        """``key`` ended with ``owed.qty`` of trades not seen yet: its terminal outcome waits for them
        (counted here, not through the OMS, which may forget a closed order first). Beyond
        ``_FINAL_OWED_KEPT`` such orders the oldest is journaled as ended with its trades unseen."""
        self._final_owed[key] = owed
        if len(self._final_owed) > _FINAL_OWED_KEPT:
            old_key, old = next(iter(self._final_owed.items()))
            del self._final_owed[old_key]
            log.warning("engine_outcome_without_all_trades cid=%s kind=%s", old_key[1], old.kind)
            if (j := self._j) is not None:
                j.outcome(old_key[1], old.kind, {**old.data, "final": True, "trades_unseen": True})

    def _after_order(self, key: tuple[Venue, str]) -> None:
        tracked = self.oms.order(*key)
        if tracked is None:
            return
        o = tracked.order
        if not o.status.is_open and key in self._booked:
            side = self._booked.pop(key)
            if self._risk_live:
                self.risk_manager.on_order_done(o.venue, o.symbol, side, max(o.qty - o.filled_qty, _ZERO))
            self._outcome(o.status.value)
            if o.status is not OrderStatus.FILLED:
                kind = {"canceled": "cancel", "expired": "expire", "rejected": "reject"}[o.status.value]
                data = {"status": o.status.value, "reason": o.reason}
                if tracked.fills_owed:  # ended with trades not seen yet: journaled after the last one
                    self._owe(key, _Owed(tracked.fills_owed, kind, data))
                elif (j := self._j) is not None:
                    j.outcome(o.client_order_id, kind, data)
            if not o.filled_qty:
                self._exit_plans.pop(key, None)  # never filled: no position to protect
        self.publish({"event": "order", **{k: v for k, v in tracked.as_dict().items() if v is not None}})

    def _outcome(self, outcome: str) -> None:
        self.orders_by_outcome[outcome] += 1
        if self.prom is not None:
            self.prom.inc_orders(outcome)

    def _apply_order(self, order: Order) -> None:
        self.oms.on_order(order)
        self._after_order((order.venue, order.client_order_id))

    def _on_status(self, ev: VenueStatus) -> None:
        previous = self._streams.get((ev.venue, ev.stream))
        self._streams[(ev.venue, ev.stream)] = ev.status
        if ev.stream.startswith("book:"):
            symbol = ev.stream.removeprefix("book:")
            try:
                health = BookHealth(ev.status)
            except ValueError:
                health = None
            if health is not None and (ev.venue, symbol) in self._books:
                self._books[(ev.venue, symbol)] = health
                if self._risk is not None:
                    self._risk.set_book_health(ev.venue, symbol, health)
                if health is not BookHealth.LIVE:
                    self.counters["book_unhealthy_events"] += 1
            if health in (BookHealth.RESYNCING, BookHealth.CROSSED) and self.prom is not None:
                self.prom.inc_book_resync(ev.venue.value, symbol)
        elif ev.status == "banned":
            self.counters["bans"] += 1
            log.error("engine_venue_banned venue=%s detail=%r", ev.venue.value, ev.detail)
            if self.alerter is not None:
                self.alerter.banned(ev.venue.value)
        elif ev.status == "disconnected":
            self.counters["disconnects"] += 1
            if self.alerter is not None:
                self.alerter.disconnected(ev.venue.value, ev.stream)
        elif ev.status == "connected":
            if previous == "disconnected":  # it had been up and went down: this is a reconnect
                self.counters["reconnects"] += 1
                if self.prom is not None:
                    self.prom.inc_ws_reconnect(ev.venue.value, ev.stream)
            if self.alerter is not None:
                self.alerter.connected(ev.venue.value, ev.stream)
        self.publish(
            {
                "event": "venue",
                "venue": ev.venue.value,
                "stream": ev.stream,
                "status": ev.status,
                "detail": ev.detail,
            }
        )

    # ================================================================ market events

    def _on_market(self, ev: MarketEvent) -> None:
        if isinstance(ev, BookUpdate):
            self.counters["md_book"] += 1
            if self._risk is not None:
                self._risk.on_book(ev)
            if self.prom is not None:
                self.prom.observe_book_latency(time.perf_counter_ns() - ev.recv_ns)
            if self._strategies_live and self._state in (EngineState.RUNNING, EngineState.PAUSED):
                self._on_signals(self.strategy.on_book(ev))
        elif isinstance(ev, TradeTick):
            self.counters["md_trade"] += 1
            self._exits(self.oms.check_exits(ev.symbol, ev.price, venue=ev.venue))
            if self._strategies_live and self._state in (EngineState.RUNNING, EngineState.PAUSED):
                self._on_signals(self.strategy.on_trade(ev))
        elif isinstance(ev, MarkPrice):
            self.counters["md_mark"] += 1
            self.oms.on_mark(ev)
            self._exits(self.oms.check_exits(ev.symbol, ev.mark_price, venue=ev.venue))
            self._check_equity()
        else:
            self._on_status(ev)

    # ================================================================ equity and risk triggers

    def _check_equity(self) -> None:
        if self._risk is None or not self._risk_restored or not self._balances_complete():
            # equity is unknown until every configured venue's balances arrived: a start-of-day equity
            # or high-water mark taken on one venue's balance would count the others' as a day's PnL
            return
        now = self.now_ms()
        equity = self.oms.equity()
        baseline = self._risk.baseline
        trip = self._risk.on_equity(equity, now)
        if self._risk.baseline != baseline and (j := self._j) is not None:
            j.save_risk_state(self._risk.state())  # a new day's start equity or high-water mark
        if now - self._last_equity_sample_ms >= 1_000:
            self._last_equity_sample_ms = now
            self._equity_series.append(equity)
        if trip is not None:
            self._on_trip(trip)

    def _balances_complete(self) -> bool:
        """Whether every configured venue has reported its balances to the OMS."""
        reported = {b.venue for b in self.oms.balances()}
        return bool(reported) and all(s.venue in reported for s in self.settings)

    def _on_trip(self, trip: Trip) -> None:
        self.counters[f"trip_{trip.reason}"] += 1
        self.alert("risk_trip", f"{trip.reason}: {trip.detail}", external=False)
        if self.alerter is not None:
            self.alerter.risk_tripped(trip.reason, trip.detail)
        if self._state in (EngineState.RUNNING, EngineState.PAUSED, EngineState.STARTING):
            self.transition(EngineState.EMERGENCY_STOPPED, f"risk: {trip.reason}: {trip.detail}")
            self._spawn(self._emergency_actions(self.config.engine.flatten_on_emergency), "engine-emergency")

    def _sync_risk_from_oms(self) -> None:
        """Set the gate's positions and open orders from the OMS (after reconcile; periodically)."""
        if self._risk is None:
            return
        for v, sym in self.symbols:
            for side in PositionSide:
                pv = self.oms.position(v, sym, side)
                if side is not PositionSide.BOTH and not pv.qty:
                    continue
                self._risk.set_position(
                    Position(
                        venue=v,
                        symbol=sym,
                        side=side,
                        qty=pv.qty,
                        entry_price=pv.entry_price,
                        mark_price=pv.mark_price or pv.entry_price,
                        unrealized_pnl=pv.unrealized_pnl,
                        leverage=1,
                        margin_mode=MarginMode.CROSS,
                        liquidation_price=_ZERO,
                        ts_ms=pv.ts_ms,
                    )
                )
            self._risk.set_open_orders(v, sym, [t.order for t in self.oms.open_orders(v, sym)])

    # ================================================================ signals -> risk -> orders

    def _on_signals(self, signals: list[Signal]) -> None:
        for sig in signals:
            self.submit_signal(sig)

    def submit_signal(self, sig: Signal) -> SendResult:
        """One signal through risk; when approved the order is sent from its own task (returned)."""
        t0 = time.perf_counter_ns()
        self.counters["signals"] += 1
        now = self.now_ms()
        if self._state not in (EngineState.RUNNING, EngineState.PAUSED, EngineState.EMERGENCY_STOPPED):
            decision: Approved | Denied = Denied(reason="engine_stopped", detail=f"engine is {self._state}")
        elif (j := self._j) is not None and not j.healthy and not sig.reduce_only:
            decision = Denied(reason="journal_unhealthy", detail="the journal cannot record: entries paused")
        else:
            # a portfolio entry's signal (AllocatedSignal) is sized against its share of the equity
            allocation = getattr(sig, "allocation", _ONE)
            decision = self.risk_manager.check_signal(sig, now_ms=now, allocation=allocation)
        if isinstance(decision, Denied):
            self._denied(decision, _signal_dict(sig))
            return SendResult(decision=decision)
        inst = self.instruments[(sig.venue, sig.symbol)]
        request = OrderRequest(
            venue=sig.venue,
            symbol=sig.symbol,
            side=sig.side,
            type=sig.type,
            qty=decision.qty,
            client_order_id=self.ids.next(now),
            price=decision.price,
            reduce_only=sig.reduce_only,
        )
        if not sig.reduce_only and (sig.stop_loss is not None or sig.take_profit is not None):
            stop = inst.round_price(sig.stop_loss) if sig.stop_loss is not None else None
            target = inst.round_price(sig.take_profit) if sig.take_profit is not None else None
            try:
                self.oms.set_exits(
                    sig.venue,
                    sig.symbol,
                    entry_side=sig.side,
                    stop_loss=stop,
                    take_profit=target,
                    trailing_stop_bps=sig.trailing_stop_bps,
                )
            except ValueError as exc:
                self.risk_manager.on_order_done(sig.venue, sig.symbol, sig.side, decision.qty)
                denied = Denied(reason="invalid_exits", detail=str(exc))
                self._denied(denied, _signal_dict(sig))
                return SendResult(decision=denied)
            self._exit_plans[(sig.venue, request.client_order_id)] = _ExitPlan(
                venue=sig.venue,
                symbol=sig.symbol,
                entry_side=sig.side,
                position_side=PositionSide.BOTH,
                stop_loss=stop,
                take_profit=target,
            )
        record = {"signal": _signal_dict(sig), "decision": _decision_dict(decision)}
        task = self._submit(request, record=record, flatten=False, t0_ns=t0)
        return SendResult(decision=decision, client_order_id=request.client_order_id, task=task)

    def _denied(self, decision: Denied, signal: dict[str, Any]) -> None:
        self.denials[decision.reason] += 1
        if self.prom is not None:
            self.prom.inc_risk_denial(decision.reason)
        log.info("engine_risk_denied reason=%s detail=%r", decision.reason, decision.detail)
        if (j := self._j) is not None:
            j.decision({"signal": signal, "decision": _decision_dict(decision), "action": "none"})
        self.publish(
            {"event": "risk_denied", "reason": decision.reason, "detail": decision.detail, "signal": signal}
        )

    def _submit(
        self, request: OrderRequest, *, record: dict[str, Any], flatten: bool, t0_ns: int
    ) -> asyncio.Task[Order | None]:
        """Book an approved order in the OMS (PENDING) and send it from a task."""
        key = (request.venue, request.client_order_id)
        self.oms.on_submit(request, ts_ms=self.now_ms())
        self._booked[key] = request.side
        if flatten:
            self._flatten_ids[key] = None
            while len(self._flatten_ids) > _FLATTEN_IDS_KEPT:
                self._flatten_ids.popitem(last=False)
        task = asyncio.create_task(
            self._send(request, record, flatten, t0_ns), name=f"send-{request.client_order_id}"
        )
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def _may_send(self, request: OrderRequest, flatten: bool) -> bool:
        st = self._state
        if st is EngineState.RUNNING:
            return True
        if st is EngineState.PAUSED:
            return request.reduce_only or request.close_position
        if st is EngineState.EMERGENCY_STOPPED:
            return flatten
        return False

    def _not_sent(self, request: OrderRequest, reason: str) -> None:
        self.counters["not_sent"] += 1
        self.oms.on_submit_rejected(
            request.venue, request.client_order_id, reason=reason, ts_ms=self.now_ms()
        )
        self._after_order((request.venue, request.client_order_id))

    async def _send(
        self, request: OrderRequest, record: dict[str, Any], flatten: bool, t0_ns: int
    ) -> Order | None:
        cid = request.client_order_id
        if not self._may_send(request, flatten):
            self._not_sent(request, f"engine_{self._state.value}")
            return None
        if (j := self._j) is not None:
            try:
                # the whole request (price, trigger, tif, reduce-only, position side): recovery rebuilds it
                await j.intent_request(
                    request, signal=record.get("signal", {}), decision=record.get("decision", {})
                )
            except EngineError as exc:  # the intent is not committed: the order is not sent
                log.error("engine_intent_failed cid=%s error=%r", cid, str(exc))
                self._not_sent(request, "journal_failed")
                self.alert("journal", f"intent not committed, order not sent: {exc}")
                if self._state is EngineState.RUNNING:
                    self.transition(EngineState.PAUSED, f"fault: journal: {exc}")
                return None
            if not self._may_send(request, flatten):
                self._not_sent(request, f"engine_{self._state.value}")
                return None
        adapter = self.adapters[request.venue]
        t_send = time.perf_counter_ns()
        self._lat_signal_to_send.append(t_send - t0_ns)
        self.counters["orders_sent"] += 1
        if self.prom is not None:
            self.prom.observe_signal_latency(t_send - t0_ns)
            self.prom.inc_orders("sent")
        try:
            order = await adapter.place_order(request)
        except OrderRejected as exc:
            self._outcome(f"rejected_{exc.reason}")
            log.warning("engine_order_rejected cid=%s reason=%s message=%r", cid, exc.reason, exc.message)
            self._not_sent(request, exc.reason)
            self.oms.rearm_exits(request.venue, request.symbol, position_side=request.position_side)
            return None
        except VenueUnavailable as exc:
            self.counters["orders_unknown"] += 1
            log.error("engine_order_outcome_unknown cid=%s error=%r", cid, str(exc))
            self.alert("order_unknown", f"{cid}: outcome unknown ({exc}); the venue will be asked")
            return None
        except VenueError as exc:  # rate limited, banned, auth, clock: refused before it was placed
            self._outcome(f"refused_{type(exc).__name__}")
            log.error("engine_order_refused cid=%s error=%r", cid, str(exc))
            self._not_sent(request, type(exc).__name__)
            return None
        ack_ns = time.perf_counter_ns() - t_send
        self._lat_send_to_ack.append(ack_ns)
        if self.prom is not None:
            self.prom.observe_ack_latency(ack_ns)
        if (j := self._j) is not None:
            j.outcome(cid, "ack", {"status": order.status.value, "venue_order_id": order.venue_order_id})
        self._apply_order(order)
        return order

    async def _drain_inflight(self) -> None:
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # ================================================================ protective exits

    async def _place_exits(self, plan: _ExitPlan) -> None:
        """The entry filled: place the venue-side reduce-only stop-loss / take-profit (close position)."""
        pos = self.oms.position(plan.venue, plan.symbol, plan.position_side)
        if not pos.qty:
            return
        close_side = plan.entry_side.opposite
        for kind, level, otype in (
            (ExitKind.STOP_LOSS, plan.stop_loss, OrderType.STOP_MARKET),
            (ExitKind.TAKE_PROFIT, plan.take_profit, OrderType.TAKE_PROFIT_MARKET),
        ):
            if level is None:
                continue
            request = OrderRequest(
                venue=plan.venue,
                symbol=plan.symbol,
                side=close_side,
                type=otype,
                qty=abs(pos.qty),
                client_order_id=self.ids.next(),
                reduce_only=True,
                close_position=True,
                trigger_price=level,
                position_side=plan.position_side,
            )
            decision = self.risk_manager.check_order(request, now_ms=self.now_ms())
            if isinstance(decision, Denied):
                self._denied(decision, {"exit": kind.value, "symbol": plan.symbol, "level": str(level)})
                continue
            task = self._submit(
                request,
                record={
                    "signal": {"exit": kind.value, "level": str(level)},
                    "decision": _decision_dict(decision),
                },
                flatten=False,
                t0_ns=time.perf_counter_ns(),
            )
            self.oms.attach_exit_order(
                plan.venue, plan.symbol, kind, request.client_order_id, position_side=plan.position_side
            )
            await task

    def _exits(self, triggers: list[ExitTrigger]) -> None:
        """The local watcher fired: when the venue-side order is not working, close with a market order."""
        for t in triggers:
            self.publish(
                {
                    "event": "exit_triggered",
                    "venue": t.venue.value,
                    "symbol": t.symbol,
                    "kind": t.kind.value,
                    "level": str(t.level),
                    "price": str(t.price),
                    "backup": t.backup,
                }
            )
            if not t.backup:
                continue
            self.counters["exit_backup_orders"] += 1
            request = OrderRequest(
                venue=t.venue,
                symbol=t.symbol,
                side=t.close_side,
                type=OrderType.MARKET,
                qty=t.qty,
                client_order_id=self.ids.next(),
                reduce_only=True,
                position_side=t.position_side,
            )
            flatten = self._state is EngineState.EMERGENCY_STOPPED
            decision = self.risk_manager.check_order(request, now_ms=self.now_ms(), flatten=flatten)
            if isinstance(decision, Denied):
                self._denied(decision, {"exit": t.kind.value, "symbol": t.symbol})
                self.oms.rearm_exits(t.venue, t.symbol, position_side=t.position_side)
                continue
            request = dataclasses.replace(request, qty=decision.qty)
            log.warning(
                "engine_exit_backup symbol=%s kind=%s level=%s price=%s", t.symbol, t.kind, t.level, t.price
            )
            self._submit(
                request,
                record={
                    "signal": {"exit": t.kind.value, "backup": True},
                    "decision": _decision_dict(decision),
                },
                flatten=flatten,
                t0_ns=time.perf_counter_ns(),
            )

    # ================================================================ emergency stop

    async def _emergency_actions(self, flatten: bool) -> JSON:
        """Cancel every open order on every venue (confirmed), then flatten when asked."""
        async with self._emergency_lock:
            await self._drain_inflight()
            canceled = 0
            errors: list[str] = []
            for adapter in self.adapters.values():
                try:
                    done = await adapter.cancel_all()
                    canceled += len(done)
                    for o in done:
                        self._apply_order(o)
                    for o in await adapter.open_orders():  # confirm; cancel stragglers one by one
                        try:
                            self._apply_order(
                                await adapter.cancel_order(o.symbol, client_order_id=o.client_order_id)
                            )
                            canceled += 1
                        except OrderRejected as exc:
                            if exc.reason != "unknown_order":
                                raise
                except VenueError as exc:
                    errors.append(f"{adapter.venue.value}: cancel: {exc}")
                    log.error("engine_emergency_cancel_failed venue=%s error=%r", adapter.venue, str(exc))
            flattened: list[JSON] = []
            if flatten:
                flattened, errs = await self._flatten_all()
                errors.extend(errs)
            result: JSON = {
                "state": self._state.value,
                "canceled": canceled,
                "flattened": flattened,
                "errors": errors,
            }
            log.warning(
                "engine_emergency_done canceled=%d flattened=%d errors=%d",
                canceled,
                len(flattened),
                len(errors),
            )
            self.publish({"event": "emergency", **result})
            if errors:
                self.alert("emergency_incomplete", "; ".join(errors))
            return result

    async def _flatten_all(self) -> tuple[list[JSON], list[str]]:
        out: list[JSON] = []
        errors: list[str] = []
        for adapter in self.adapters.values():
            try:
                positions = [p for p in await adapter.positions() if p.qty]
            except VenueError as exc:
                errors.append(f"{adapter.venue.value}: positions: {exc}")
                continue
            tasks: list[asyncio.Task[Order | None]] = []
            for p in positions:
                if (p.venue, p.symbol) not in self.instruments:
                    errors.append(f"{p.venue.value}:{p.symbol}: not a configured symbol, not flattened")
                    continue
                self.risk_manager.set_position(p)
                request = OrderRequest(
                    venue=p.venue,
                    symbol=p.symbol,
                    side=Side.SELL if p.qty > 0 else Side.BUY,
                    type=OrderType.MARKET,
                    qty=abs(p.qty),
                    client_order_id=self.ids.next(),
                    reduce_only=True,
                    position_side=p.side,
                )
                decision = self.risk_manager.check_order(request, now_ms=self.now_ms(), flatten=True)
                if isinstance(decision, Denied):
                    errors.append(f"{p.symbol}: flatten denied: {decision.reason}: {decision.detail}")
                    continue
                request = dataclasses.replace(request, qty=decision.qty)
                tasks.append(
                    self._submit(
                        request,
                        record={"signal": {"flatten": True}, "decision": _decision_dict(decision)},
                        flatten=True,
                        t0_ns=time.perf_counter_ns(),
                    )
                )
                out.append({"venue": p.venue.value, "symbol": p.symbol, "qty": dec_str(-p.qty)})
            for task in tasks:
                order = await task
                if order is None:
                    errors.append("a flattening order was not placed (see the log)")
        return out, errors

    # ================================================================ housekeeping

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_S)
            try:
                await self._housekeep_once()
            except VenueError as exc:
                log.warning("engine_housekeeping_venue_error error=%r", str(exc))

    async def _housekeep_once(self) -> None:
        now = self.now_ms()
        mono = time.monotonic()
        if mono - self._rate_t >= 1.0:
            self.events_per_s = self._rate_events / (mono - self._rate_t)
            self._rate_t, self._rate_events = mono, 0
        self._update_metrics()
        diffs = self.oms.check_positions(now)
        for d in diffs:
            log.error("engine_position_difference %s", " ".join(f"{k}={v!r}" for k, v in d.as_dict().items()))
            if d.severity is Severity.IRRECONCILABLE and self._risk is not None:
                self._on_trip(
                    self._risk.report_unreconciled(
                        d.venue, d.symbol, f"{d.field} local {d.local} venue {d.remote}"
                    )
                )
        self._sync_risk_from_oms()
        if (j := self._j) is not None and not j.healthy and self._state is EngineState.RUNNING:
            self.alert("journal", "the journal cannot record: entries paused")
            self.transition(EngineState.PAUSED, "fault: journal unhealthy")
        for venue, symbol, cid in self.oms.take_stale_exit_orders():
            tracked = self.oms.order(venue, cid)
            if tracked is not None and tracked.is_open:
                try:
                    self._apply_order(await self.adapters[venue].cancel_order(symbol, client_order_id=cid))
                except OrderRejected as exc:
                    log.info("engine_stale_exit_cancel_refused cid=%s reason=%s", cid, exc.reason)
        for tracked in self.oms.pending_orders():
            key = (tracked.venue, tracked.client_order_id)
            inflight = any(t.get_name() == f"send-{tracked.client_order_id}" for t in self._inflight)
            if not inflight and now - tracked.order.ts_ms >= _PENDING_QUERY_AFTER_MS:
                answer = await self.adapters[tracked.venue].get_order(tracked.symbol, client_order_id=key[1])
                self.oms.on_query_result(tracked.venue, key[1], answer, ts_ms=now)
                self._after_order(key)
        for tracked in self.oms.needs_query():
            if tracked.venue in self.adapters:
                answer = await self.adapters[tracked.venue].get_order(
                    tracked.symbol, client_order_id=tracked.client_order_id
                )
                self.oms.on_query_result(tracked.venue, tracked.client_order_id, answer, ts_ms=now)
                self._after_order(tracked.key)
        if now - self._last_timer_ms >= 1_000:
            self._last_timer_ms = now
            if (j := self._j) is not None and self._risk is not None:
                j.save_risk_state(self._risk.state())
            if self._strategies_live and self._state in (EngineState.RUNNING, EngineState.PAUSED):
                self._on_signals(self.strategy.on_timer(now))

    # ================================================================ metrics and readiness

    def _update_metrics(self) -> None:
        """Flush the per-stream event counts and set the gauges (equity, PnL, exposure, rate-limit use).
        Called from housekeeping and by ``metrics()``; the hot path only bumps local counters."""
        prom = self.prom
        if prom is None:
            return
        for (venue, kind), n in self._events_unflushed.items():
            prom.inc_events(f"{venue.value}.{kind}", n)
        self._events_unflushed.clear()
        totals = self.oms.totals()
        equity = self._risk.equity if self._risk is not None else None
        if equity is not None or self.oms.balances():
            prom.set_equity(equity if equity is not None else totals.equity)
        prom.set_pnl(
            daily=self._risk.daily_pnl if self._risk is not None else _ZERO,
            realized=totals.realized_pnl,
            unrealized=totals.unrealized_pnl,
        )
        exposure: dict[Venue, Decimal] = dict.fromkeys(self.adapters, _ZERO)
        for p in self.oms.positions():
            exposure[p.venue] = exposure.get(p.venue, _ZERO) + abs(p.qty) * (p.mark_price or p.entry_price)
        for venue, notional in exposure.items():
            prom.set_exposure(venue.value, notional)
        for venue, adapter in self.adapters.items():
            limiter = getattr(adapter, "limiter", None)
            if not isinstance(limiter, RateLimiter):
                continue
            used, limit = _busiest_window(limiter)
            prom.set_rate_limit_usage(venue.value, used=used, limit=limit)

    def ready_reasons(self) -> list[str]:
        """Why the engine is NOT ready (``/ready``): empty when it runs (running, paused or emergency
        stopped) with every stream of every venue connected and every book LIVE."""
        reasons: list[str] = []
        if self._state not in (EngineState.RUNNING, EngineState.PAUSED, EngineState.EMERGENCY_STOPPED):
            reasons.append(f"engine is {self._state.value}")
        for s in self.settings:
            venue = s.venue
            adapter = self.adapters.get(venue)
            streams = {
                name: st
                for (v, name), st in self._streams.items()
                if v is venue and name != "rest" and not name.startswith("book:")
            }
            if adapter is None or not streams:
                reasons.append(f"{venue.value}: streams not connected yet")
            for name, st in sorted(streams.items()):
                if st != "connected":
                    reasons.append(f"{venue.value} {name} stream {st}")
            for v, sym in self.symbols:
                if v is not venue:
                    continue
                health = self._books.get((v, sym))  # the engine's view: what the risk gate uses
                if adapter is None or health is None:
                    reasons.append(f"{venue.value} {sym} book not synced yet")
                elif health is not BookHealth.LIVE:
                    reasons.append(f"{venue.value} {sym} book {health.value}")
        return reasons

    # ================================================================ subscribers and alerts

    def publish(self, event: JSON) -> None:
        if not self._subscribers:
            return
        event.setdefault("ts_ms", self.now_ms())
        for q in self._subscribers:
            self._offer(q, event)

    def _offer(self, q: asyncio.Queue[JSON], event: JSON) -> None:
        if q.full():
            q.get_nowait()
            self.counters["subscriber_dropped"] += 1
            with contextlib.suppress(asyncio.QueueFull):  # one slot was just freed above
                q.put_nowait({"event": "lagged", "ts_ms": self.now_ms(), "dropped": 1})
            if q.full():
                q.get_nowait()
        q.put_nowait(event)

    def alert(self, kind: str, message: str, *, external: bool = True) -> None:
        """An operator alert: counted, logged, published to subscribers and (``external``) sent through
        the :class:`~engine.alerts.Alerter` when one is configured."""
        self.counters[f"alert_{kind}"] += 1
        log.warning("engine_alert kind=%s message=%r", kind, message)
        self.publish({"event": "alert", "kind": kind, "message": message})
        if external and self.alerter is not None:
            self.alerter.alert(kind, message, severity="warning")

    async def subscribe(self) -> AsyncIterator[JSON]:
        q: asyncio.Queue[JSON] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.append(q)
        try:
            yield {"event": "subscribed", "ts_ms": self.now_ms(), "state": self._state.value}
            while True:
                ev = await q.get()
                yield ev
                if ev.get("event") == "end":
                    return
        finally:
            self._subscribers.remove(q)

    # ================================================================ EngineControl

    async def status(self) -> JSON:
        totals = self.oms.totals()
        equity = self._risk.equity if self._risk is not None else None
        return {
            "state": self._state.value,
            "state_reason": self._state_reason,
            "state_since_ms": self._state_since_ms,
            "mode": self.config.mode.value,
            "uptime_s": 0.0
            if self._started_mono is None
            else round(time.monotonic() - self._started_mono, 3),
            "venues": self._venues(),
            "equity": money_str(equity if equity is not None else totals.equity),
            "daily_pnl": money_str(self._risk.daily_pnl if self._risk is not None else _ZERO),
            "realized_pnl": money_str(totals.realized_pnl),
            "unrealized_pnl": money_str(totals.unrealized_pnl),
            "positions": len(self.oms.positions()),
            "open_orders": len(self.oms.open_orders()),
            "risk": self._risk_summary(),
            "events_per_s": round(self.events_per_s, 1),
            "strategy": self.strategy.state(),
        }

    def _risk_summary(self) -> JSON:
        if self._risk is None:
            return {}
        trip = self._risk.trip
        lim = self._risk.limits
        return {
            "exposure": money_str(self._risk.exposure()),
            "daily_loss_limit": str(lim.daily_loss_limit),
            "max_drawdown_pct": str(lim.max_drawdown_pct),
            "trip": None if trip is None else {"reason": trip.reason, "detail": trip.detail},
            "denials": dict(self.denials),
        }

    def _venues(self) -> JSON:
        out: JSON = {}
        for venue, adapter in self.adapters.items():
            streams = {
                s: st for (v, s), st in self._streams.items() if v is venue and not s.startswith("book:")
            }
            books: JSON = {}
            for v, sym in self.symbols:
                if v is not venue:
                    continue
                book = adapter.book(sym)
                bb, ba = book.best_bid(), book.best_ask()
                books[sym] = {
                    "health": adapter.book_health(sym).value,
                    "best_bid": None if bb is None else dec_str(bb[0]),
                    "best_ask": None if ba is None else dec_str(ba[0]),
                }
            out[venue.value] = {
                "connected": bool(streams) and all(st == "connected" for st in streams.values()),
                "streams": streams,
                "books": books,
            }
        return out

    async def pause(self, *, reason: str = "operator") -> JSON:
        self._control_transition(EngineState.PAUSED, f"operator: pause: {reason}")
        return {"state": self._state.value}

    async def resume(self, *, reason: str = "operator") -> JSON:
        if (j := self._j) is not None and not j.healthy:
            raise ControlError("journal_unhealthy", "the journal cannot record; fix it before resuming")
        self._control_transition(EngineState.RUNNING, f"operator: resume: {reason}")
        return {"state": self._state.value}

    async def emergency_stop(self, *, flatten: bool = False, reason: str = "operator") -> JSON:
        """Latch emergency_stopped, cancel everything (confirmed by the venues), flatten when asked or
        configured. In emergency_stopped already, the actions run again (no transition)."""
        if self._state is not EngineState.EMERGENCY_STOPPED:
            self._control_transition(EngineState.EMERGENCY_STOPPED, f"operator: emergency_stop: {reason}")
        return await self._emergency_actions(flatten or self.config.engine.flatten_on_emergency)

    async def reset(self, *, reason: str = "operator") -> JSON:
        if self._state is not EngineState.EMERGENCY_STOPPED:
            raise ControlError(
                "invalid_transition",
                f"reset leaves emergency_stopped only; the engine is {self._state.value}",
            )
        self._control_transition(EngineState.PAUSED, f"operator: reset: {reason}")
        self.risk_manager.clear_trip()
        return {"state": self._state.value}

    async def positions(self) -> list[JSON]:
        return [dict(p.as_dict()) for p in self.oms.positions()]

    async def orders(self) -> list[JSON]:
        return [dict(t.as_dict()) for t in self.oms.open_orders()]

    async def book(self, symbol: str, *, depth: int = 10, venue: str | None = None) -> JSON:
        if depth < 1 or depth > 1000:
            raise ControlError("bad_argument", f"depth must be in 1..1000, got {depth}")
        sym = symbol.upper()
        matches = [(v, s) for (v, s) in self.symbols if s == sym and (venue is None or v.value == venue)]
        if not matches or matches[0][0] not in self.adapters:
            raise ControlError("unknown_symbol", f"{symbol} is not a subscribed symbol")
        v, s = matches[0]
        adapter = self.adapters[v]
        book = adapter.book(s)
        return {
            "venue": v.value,
            "symbol": s,
            "health": adapter.book_health(s).value,
            "bids": [[dec_str(p), dec_str(q)] for p, q in book.levels("bid", depth)],
            "asks": [[dec_str(p), dec_str(q)] for p, q in book.levels("ask", depth)],
        }

    async def risk(self) -> JSON:
        if self._risk is None:
            raise ControlError("not_running", "the engine has not started")
        out = dict(self._risk.status())
        m = self._risk.portfolio_metrics(
            [
                Position(
                    venue=p.venue,
                    symbol=p.symbol,
                    side=p.position_side,
                    qty=p.qty,
                    entry_price=p.entry_price,
                    mark_price=p.mark_price or p.entry_price,
                    unrealized_pnl=p.unrealized_pnl,
                    leverage=1,
                    margin_mode=MarginMode.CROSS,
                    liquidation_price=_ZERO,
                    ts_ms=p.ts_ms,
                )
                for p in self.oms.positions()
            ],
            list(self._equity_series),
        )
        out["portfolio"] = {
            "gross_exposure": money_str(m.gross_exposure),
            "net_exposure": money_str(m.net_exposure),
            "leverage": str(m.leverage.quantize(Decimal("0.0001"))),
            "concentration": {k: str(v.quantize(Decimal("0.0001"))) for k, v in m.concentration.items()},
            "var_95": m.var_95,
            "expected_shortfall_95": m.expected_shortfall_95,
            "current_drawdown": str(m.current_drawdown.quantize(Decimal("0.000001"))),
            "max_drawdown": str(m.max_drawdown.quantize(Decimal("0.000001"))),
        }
        out["denials"] = dict(self.denials)
        return out

    async def limits(self) -> JSON:
        return dict(self._limits_now().to_mapping())

    def _limits_now(self) -> RiskLimits:
        return self._risk.limits if self._risk is not None else self._limits

    async def set_limit(self, key: str, value: str) -> JSON:
        if self._risk is None:
            raise ControlError("not_running", "the engine has not started")
        try:
            new = self._risk.set_limit(key, value)
        except RiskLimitError as exc:
            code = "unknown_limit" if exc.reason == "unknown key" else "bad_argument"
            raise ControlError(code, str(exc)) from exc
        self._limits = new
        log.warning("engine_limit_set key=%s value=%r", key, value)
        self.publish({"event": "limit_set", "key": key, "value": value})
        return {"key": key, "value": value, "limits": new.to_mapping()}

    async def cancel_all(self, symbol: str | None = None) -> JSON:
        targets: list[tuple[ExchangeAdapter, str | None]] = []
        if symbol is None:
            targets = [(a, None) for a in self.adapters.values()]
        else:
            sym = symbol.upper()
            targets = [(self.adapters[v], sym) for (v, s) in self.symbols if s == sym and v in self.adapters]
            if not targets:
                raise ControlError("unknown_symbol", f"{symbol} is not a subscribed symbol")
        canceled = 0
        for adapter, sym_ in targets:
            try:
                done = await adapter.cancel_all(sym_)
            except VenueError as exc:
                raise ControlError("venue_error", f"{adapter.venue.value}: {exc}") from exc
            canceled += len(done)
            for o in done:
                self._apply_order(o)
        return {"canceled": canceled}

    async def metrics(self) -> JSON:
        """The Prometheus metrics' snapshot (when metrics are on) merged with the engine's own counters;
        on a shared key the engine's exact integers win."""
        out: JSON = {}
        if self.prom is not None:
            self._update_metrics()
            out.update(self.prom.snapshot())
        out.update(self._engine_metrics())
        return out

    def _engine_metrics(self) -> JSON:
        return {
            "counters": dict(self.counters),
            "risk_denials": dict(self.denials),
            "orders_by_outcome": dict(self.orders_by_outcome),
            "queues": {
                "user": len(self._user),
                "user_high": self.user_queue_high,
                "user_limit": self.user_queue_size,
                "market": len(self._market),
                "market_trades": self._trades_pending,
                "market_limit": self.market_queue_size,
                "inflight_orders": len(self._inflight),
                "subscribers": len(self._subscribers),
            },
            # the engine's own background tasks and every task on the loop (adapters', streams'...)
            "tasks": {
                "engine": len(self._tasks)
                + len(self._inflight)
                + sum(
                    1 for t in (self._pump_task, self._housekeeping_task) if t is not None and not t.done()
                ),
                "loop": len(asyncio.all_tasks()),
            },
            "latency_us": {
                "signal_to_send_p50": _pct(self._lat_signal_to_send, 0.5),
                "signal_to_send_p99": _pct(self._lat_signal_to_send, 0.99),
                "send_to_ack_p50": _pct(self._lat_send_to_ack, 0.5),
                "send_to_ack_p99": _pct(self._lat_send_to_ack, 0.99),
            },
            "events_per_s": round(self.events_per_s, 1),
            "oms": self.oms.stats(),
            "adapters": {v.value: a.stats() for v, a in self.adapters.items()},
        }

    # ================================================================ the status line

    def status_line(self) -> str:
        """One line for the terminal: state, venues and books, touch per symbol, equity, PnL, counts."""
        parts = [self._state.value]
        for venue, adapter in self.adapters.items():
            streams = [st for (v, s), st in self._streams.items() if v is venue and not s.startswith("book:")]
            conn = "up" if streams and all(st == "connected" for st in streams) else "down"
            books = ",".join(f"{s}:{adapter.book_health(s).value}" for (v, s) in self.symbols if v is venue)
            parts.append(f"{venue.value} {conn} [{books}]")
        for v, s in self.symbols:
            book = self.adapters[v].book(s)
            bb, ba = book.best_bid(), book.best_ask()
            parts.append(f"{s} {dec_str(bb[0]) if bb else '-'}/{dec_str(ba[0]) if ba else '-'}")
        equity = self._risk.equity if self._risk is not None else None
        daily = self._risk.daily_pnl if self._risk is not None else _ZERO
        parts.append(f"equity {'-' if equity is None else money_str(equity)}")
        parts.append(f"daily_pnl {money_str(daily)}")
        parts.append(f"orders {len(self.oms.open_orders())}")
        parts.append(f"positions {len(self.oms.positions())}")
        parts.append(f"{self.events_per_s:,.0f} ev/s")
        return " | ".join(parts)

    # ================================================================ helpers

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.counters["task_errors"] += 1
            log.error("engine_task_failed task=%s error=%r", task.get_name(), exc, exc_info=exc)
            self.alert("task_failed", f"{task.get_name()}: {exc!r}")


# ==================================================================== engine run


def resolve_admin_socket(cli_path: str | None, cfg: EngineConfig) -> Path:
    """``--admin-socket``, else the config's ``[engine] admin_socket`` (default ``var/engine.sock``),
    relative to the working directory."""
    return Path(cli_path if cli_path else cfg.engine.admin_socket).expanduser().absolute()


def _open_journal(cfg: EngineConfig) -> Journal:
    """The journal under ``state_dir`` (``journal.sqlite``)."""
    state_dir = Path(cfg.engine.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    return Journal(state_dir / "journal.sqlite")


def make_alerter(cfg: EngineConfig) -> Alerter | None:
    """The configured ``[alerts]`` sinks, or None when none is configured."""
    a = cfg.alerts
    if not a.enabled:
        return None
    return Alerter(
        webhook_url=a.webhook_url,
        telegram_token=a.telegram_token,
        telegram_chat_id=a.telegram_chat_id if a.telegram_token is not None else None,
        telegram_base_url=a.telegram_base_url,
        source=f"engine:{cfg.mode.value}",
        disconnect_after_s=a.disconnect_threshold_s,
    )


def run_secrets(cfg: EngineConfig, paper: PaperVenue | None) -> tuple[str, ...]:
    """What logs and the admin socket redact: the config's secrets plus the paper account's key/secret."""
    extra = (paper.account.key, paper.account.secret) if paper is not None else ()
    return cfg.secrets() + extra


async def serve(
    cfg: EngineConfig,
    *,
    admin_socket: Path,
    strategy: Strategy,
    out: TextIO = sys.stdout,
    duration_s: float | None = None,
    seed: int = 7,
    configure_logs: bool = False,
) -> int:
    """``engine run``: the embedded venue (paper mode), the metrics endpoint, the alerter, the engine, the
    admin socket and the status line, until SIGINT/SIGTERM, ``stop`` on the admin socket, or
    ``duration_s``. A second signal forces exit (the same signal again within 0.5 s is one delivery
    reaching the process twice, e.g. from the process group and from ``make``/``timeout``).
    ``configure_logs``: JSON-lines logging to ``state_dir/engine.log`` redacting every secret
    (``run_engine`` sets it; in-process tests leave the logging alone)."""
    loop = asyncio.get_running_loop()
    paper = PaperVenue(seed=seed) if cfg.mode is Mode.PAPER else None
    secrets = run_secrets(cfg, paper)
    if configure_logs:  # to the file only: stdout carries the status line, stderr the start errors
        configure_logging(
            cfg.engine.log_level, Path(cfg.engine.state_dir) / "engine.log", secrets, stderr=False
        )
    signals_seen: list[str] = []
    first_signal_at = [0.0]
    stoppers: list[asyncio.Future[JSON]] = []
    engine: TradingEngine | None = None

    def on_signal(name: str) -> None:
        now = time.monotonic()
        if signals_seen and signals_seen[0] == name and now - first_signal_at[0] < _DUPLICATE_SIGNAL_S:
            # the same signal again at once: one delivery through two paths (the process group and a
            # parent such as make or timeout passing it on), not an operator asking twice
            log.warning("engine_signal_duplicate name=%s", name)
            return
        signals_seen.append(name)
        if len(signals_seen) == 1:
            first_signal_at[0] = now
        if len(signals_seen) > 1:
            out.write(f"\nengine run: second {name}: forced exit\n")
            out.flush()
            os._exit(1)
        log.warning("engine_signal name=%s", name)
        if engine is not None and engine.state not in (EngineState.STOPPING, EngineState.STOPPED):
            stoppers.append(asyncio.ensure_future(engine.stop(reason=name)))

    for sig in (signal_mod.SIGINT, signal_mod.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    admin: AdminServer | None = None
    metrics_server: MetricsServer | None = None
    alerter = make_alerter(cfg)
    prom = Metrics() if cfg.metrics.enabled else None
    status_task: asyncio.Task[None] | None = None
    try:
        if alerter is not None:
            await alerter.start()
        if paper is not None:
            await paper.start()
            out.write(f"engine run: paper mode, embedded venue at {paper.server.base_url}\n")
        settings = to_adapter_settings(cfg, paper.endpoints() if paper is not None else None)
        engine = TradingEngine(
            config=cfg,
            settings=settings,
            strategy=strategy,
            journal=_open_journal(cfg),
            metrics=prom,
            alerter=alerter,
        )
        if prom is not None:
            metrics_server = MetricsServer(
                prom, host=cfg.metrics.host, port=cfg.metrics.port, ready=engine.ready_reasons
            )
            try:
                await metrics_server.start()
            except OSError as exc:  # monitoring must not stop trading: said on stdout, logged, alerted
                metrics_server = None
                log.error("engine_metrics_unavailable error=%r", str(exc))
                engine.alert("metrics_unavailable", str(exc))
                out.write(f"metrics: not served: {exc}\n")
            else:
                out.write(f"metrics: {metrics_server.url}/metrics (health: /health, readiness: /ready)\n")
            out.flush()
        await engine.start()
        if signals_seen:
            await engine.stop(reason=signals_seen[0])
        admin = AdminServer(
            admin_socket,
            engine,
            secrets=secrets,
            observe=prom.observe_admin_latency if prom is not None else None,
        )
        await admin.start()
        out.write(f"admin socket: {admin_socket}\n")
        out.flush()
        status_task = asyncio.create_task(_status_lines(engine, out), name="engine-status")
        if duration_s is not None:
            try:
                await asyncio.wait_for(engine.wait_stopped(), timeout=duration_s)
            except TimeoutError:
                await engine.stop(reason="duration")
        await engine.wait_stopped()
        out.write(f"\nengine run: stopped ({engine.state_reason})\n")
        return 0
    except (EngineError, OSError) as exc:
        out.flush()
        print(f"engine run: {exc}", file=sys.stderr)
        return 1
    finally:
        if status_task is not None:
            status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status_task
        if admin is not None:
            await admin.close()
        if engine is not None and engine.state is not EngineState.STOPPED and not engine._stopped.is_set():
            await engine._teardown("fault: serve exiting")
        if metrics_server is not None:
            await metrics_server.close()
        if alerter is not None:
            await alerter.close()
        if paper is not None:
            await paper.close()
        for sig in (signal_mod.SIGINT, signal_mod.SIGTERM):
            loop.remove_signal_handler(sig)
        out.flush()


async def _status_lines(engine: TradingEngine, out: TextIO) -> None:
    tty = out.isatty()
    while True:
        await asyncio.sleep(1.0)
        line = engine.status_line()
        out.write(f"\r{line}\x1b[K" if tty else f"{line}\n")
        out.flush()


def run_engine(
    *,
    config_path: str | None = None,
    admin_socket: str | None = None,
    seed: int = 7,
    duration_s: float | None = None,
) -> int:
    """``engine run``: 0 after a graceful stop, 2 for a bad config (nothing sent), 1 for a start fault."""
    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.strategies import StrategyParamError, UnknownStrategy

    if duration_s is not None and duration_s < 0:
        print(f"engine run: --duration must be >= 0, got {duration_s}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(config_path)
        symbols = tuple((ex.name, sym) for ex in cfg.exchanges for sym in ex.symbols)
        try:
            strategy = create(cfg.strategy.name, params=cfg.strategy.params, symbols=symbols)
        except UnknownStrategy as exc:
            raise ConfigError(path=str(cfg.path), key="strategy.name", reason=str(exc)) from None
        except StrategyParamError as exc:
            raise ConfigError(
                path=str(cfg.path), key=f"strategy.params.{exc.param}", reason=exc.reason
            ) from None
    except ConfigError as exc:
        print(f"engine run: {exc}", file=sys.stderr)
        return 2
    sock = resolve_admin_socket(admin_socket, cfg)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(
            serve(
                cfg,
                admin_socket=sock,
                strategy=strategy,
                duration_s=duration_s,
                seed=seed,
                configure_logs=True,
            )
        )
