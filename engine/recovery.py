"""Crash recovery: from the journal and the venues back to a known state, before any strategy runs.

:func:`recover` is called by the engine in its start sequence, after the journal is started and the
adapters are connected, and before the first market event reaches a strategy. The venue is the source
of truth; the journal says what this engine meant to do.

1. **Risk state** is restored from the journal (``risk.restore``): start-of-day equity, high-water mark,
   losses in a row, a latched trip. A restart cannot escape a daily loss limit. A saved state that does
   not restore is *not* replaced by a fresh one: recovery does not complete (the engine starts paused).
2. **The emergency latch** (the last transition into ``emergency_stopped`` not followed by an operator
   reset) is reported: the engine must go straight back to ``emergency_stopped``.
3. **Unfinished intents** (journaled, no terminal outcome) are tracked again in the OMS as PENDING.
4. Per venue, **intents with no outcome at all are queried by client order id first**: found -> the
   venue's state is adopted and journaled as their outcome (``ack``/``fill``/``cancel``/``reject``/
   ``expire``, ``data.source = "recovery"``); not found -> the order never reached the venue: it is
   closed (``closed`` outcome, reason ``never_sent``) and nothing is re-sent. (A request written to the
   socket by the dead process reaches a loopback or colocated venue within milliseconds, long before a
   restart; a venue also refuses a request older than its receive window.)
5. Then the venue's **open orders, positions and balances** are taken and reconciled
   (:meth:`~engine.oms.OrderManager.reconcile`, with the snapshot time): what the venue has and the
   journal lacks is adopted (external), what the journal has and the venue no longer lists is closed
   out and queried (its terminal state is journaled), positions and balances become the venue's.
   Every difference is one structured log line (``recovery_difference``).
6. **Fills** of every order that traded (adopted, open with fills, closed out) are fetched from the
   venue's trade history (``adapter.order_fills``), journaled (the fills table ignores a trade it has)
   and fed to the OMS after the reconcile (the snapshot-time rule: a trade inside the snapshot updates
   its order and fees, not the position), so trades made while no engine ran are in the journal too.
   Such an order's outcome (steps 4 and 5) is journaled after its trades: killed in between, the next
   start still finds the intent unfinished and asks again (a 300-kill crash run lost a trade that way).

A venue that cannot be asked (any ``VenueError``, e.g. ``VenueUnavailable``) leaves recovery incomplete:
:attr:`RecoveryReport.completed` is False and :attr:`RecoveryReport.reason` says why; the engine starts
``paused`` (:attr:`RecoveryReport.start_state`) and shows the reason on the admin socket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from engine.adapters.base import ExchangeAdapter
from engine.errors import EngineError, MalformedMessage, VenueError
from engine.journal import Intent, Journal
from engine.oms import Difference, DiffKind, OrderManager, Severity, TrackedOrder
from engine.types import EngineState, Order, OrderStatus, Venue

__all__ = ["RecoveryReport", "RestorableRisk", "VenueRecovery", "outcome_of", "recover"]

log = logging.getLogger("engine.recovery")


class RestorableRisk(Protocol):
    """What recovery needs of the risk manager (``UnifiedRiskManager`` is one)."""

    def restore(self, saved: Mapping[str, str]) -> None: ...


@dataclass(kw_only=True)
class VenueRecovery:
    """What recovery did on one venue."""

    venue: Venue
    completed: bool = False
    reason: str = ""
    intents_queried: int = 0
    intents_adopted: int = 0  # found on the venue: its state taken
    intents_never_sent: int = 0  # not on the venue: closed, not re-sent
    orders_open: int = 0  # open on the venue at the snapshot
    orders_external: int = 0  # open on the venue, unknown to the journal: adopted as external
    orders_closed_out: int = 0  # unfinished in the journal, no longer open on the venue: queried
    positions: int = 0  # non-flat positions on the venue
    fills_backfilled: int = 0  # venue trades of adopted / closed-out orders, journaled (duplicates ignored)
    trades_missing: int = 0  # orders whose trades the venue's history did not fully give back (logged)
    snapshot_ms: int = 0
    differences: list[Difference] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "venue": self.venue.value,
            "completed": self.completed,
            "reason": self.reason,
            "intents_queried": self.intents_queried,
            "intents_adopted": self.intents_adopted,
            "intents_never_sent": self.intents_never_sent,
            "orders_open": self.orders_open,
            "orders_external": self.orders_external,
            "orders_closed_out": self.orders_closed_out,
            "positions": self.positions,
            "fills_backfilled": self.fills_backfilled,
            "trades_missing": self.trades_missing,
            "snapshot_ms": self.snapshot_ms,
            "differences": [d.as_dict() for d in self.differences],
        }


@dataclass(frozen=True, kw_only=True)
class RecoveryReport:
    completed: bool
    reason: str  # why recovery did not complete ("" when it did)
    risk_restored: bool
    emergency_latched: bool
    emergency_cause: str
    intents_unfinished: int  # tracked again in the OMS
    intents_pending: int  # with no outcome at all: queried by client order id
    venues: tuple[VenueRecovery, ...]
    duration_ms: int

    @property
    def start_state(self) -> EngineState:
        """Where the engine starts: ``emergency_stopped`` when latched, ``paused`` when recovery did not
        complete, ``running`` otherwise."""
        if self.emergency_latched:
            return EngineState.EMERGENCY_STOPPED
        return EngineState.RUNNING if self.completed else EngineState.PAUSED

    @property
    def differences(self) -> tuple[Difference, ...]:
        return tuple(d for v in self.venues for d in v.differences)

    @property
    def irreconcilable(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.severity is Severity.IRRECONCILABLE)

    def count(self, name: str) -> int:
        """The sum over venues of one :class:`VenueRecovery` counter (e.g. ``"intents_never_sent"``)."""
        return sum(int(getattr(v, name)) for v in self.venues)

    def as_dict(self) -> dict[str, object]:
        return {
            "completed": self.completed,
            "reason": self.reason,
            "start_state": self.start_state.value,
            "risk_restored": self.risk_restored,
            "emergency_latched": self.emergency_latched,
            "emergency_cause": self.emergency_cause,
            "intents_unfinished": self.intents_unfinished,
            "intents_pending": self.intents_pending,
            "duration_ms": self.duration_ms,
            "venues": [v.as_dict() for v in self.venues],
        }


_KIND_OF_STATUS: dict[OrderStatus, str] = {
    OrderStatus.PENDING: "ack",
    OrderStatus.UNTRIGGERED: "ack",
    OrderStatus.NEW: "ack",
    OrderStatus.PARTIALLY_FILLED: "fill",
    OrderStatus.FILLED: "fill",
    OrderStatus.CANCELED: "cancel",
    OrderStatus.REJECTED: "reject",
    OrderStatus.EXPIRED: "expire",
}


def outcome_of(order: Order, *, source: str) -> tuple[str, dict[str, Any]]:
    """The journal outcome (kind, data) for the venue's view of an order."""
    data: dict[str, Any] = {
        "source": source,
        "status": order.status.value,
        "venue_order_id": order.venue_order_id,
        "filled_qty": str(order.filled_qty),
        "avg_price": str(order.avg_price),
        "final": not order.status.is_open,
    }
    if order.reason:
        data["reason"] = order.reason
    return _KIND_OF_STATUS[order.status], data


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def recover(
    journal: Journal,
    adapters: Mapping[Venue, ExchangeAdapter],
    oms: OrderManager,
    risk: RestorableRisk | None,
    *,
    now_ms: int,
    clock: Callable[[], int] = _wall_ms,
) -> RecoveryReport:
    """See the module docstring. ``now_ms`` stamps the outcomes recovery journals; ``clock`` (epoch ms,
    the venues' clock) stamps each venue's snapshot just before it is requested."""
    started = time.perf_counter()
    reasons: list[str] = []

    risk_restored = False
    saved = await journal.load_risk_state()
    if saved is not None and risk is not None:
        try:
            risk.restore({str(k): str(v) for k, v in saved.items()})
            risk_restored = True
            log.info("recovery_risk_restored keys=%d", len(saved))
        except (EngineError, ValueError) as exc:
            reasons.append(f"risk state not restored: {exc}")
            log.error("recovery_risk_restore_failed error=%r", str(exc))

    latch = await journal.emergency_latch()
    if latch is not None:
        log.warning("recovery_emergency_latched cause=%r since_ms=%d", latch.cause, latch.ts_ms)

    unfinished = await journal.unfinished_intents()
    pending_ids = {i.client_order_id for i in await journal.pending_intents()}
    journaled: dict[tuple[Venue, str], Intent] = {}
    for intent in unfinished:
        journaled[(intent.venue, intent.client_order_id)] = intent
        if oms.order(intent.venue, intent.client_order_id) is None:
            oms.on_submit(intent.request(), ts_ms=intent.ts_ms)
    unknown_venues = sorted({i.venue.value for i in unfinished} - {v.value for v in adapters})
    if unknown_venues:
        reasons.append(f"unfinished intents on venues with no adapter: {', '.join(unknown_venues)}")

    venues: list[VenueRecovery] = []
    for venue, adapter in adapters.items():
        vr = VenueRecovery(venue=venue)
        venues.append(vr)
        try:
            await _recover_venue(
                journal, adapter, oms, vr, journaled, pending_ids, now_ms=now_ms, clock=clock
            )
        except (VenueError, MalformedMessage) as exc:  # unreachable, or an answer it cannot read: paused
            vr.reason = f"{venue.value}: reconciliation not completed: {exc}"
            reasons.append(vr.reason)
            log.error("recovery_venue_incomplete venue=%s error=%r", venue.value, str(exc))
            continue
        vr.completed = True

    report = RecoveryReport(
        completed=not reasons,
        reason="; ".join(reasons),
        risk_restored=risk_restored,
        emergency_latched=latch is not None,
        emergency_cause=latch.cause if latch is not None else "",
        intents_unfinished=len(unfinished),
        intents_pending=len(pending_ids),
        venues=tuple(venues),
        duration_ms=int((time.perf_counter() - started) * 1000),
    )
    log.info(
        "recovery_done completed=%s start_state=%s intents_pending=%d never_sent=%d adopted=%d "
        "external=%d closed_out=%d differences=%d duration_ms=%d reason=%r",
        report.completed,
        report.start_state.value,
        report.intents_pending,
        report.count("intents_never_sent"),
        report.count("intents_adopted"),
        report.count("orders_external"),
        report.count("orders_closed_out"),
        len(report.differences),
        report.duration_ms,
        report.reason,
    )
    return report


async def _recover_venue(
    journal: Journal,
    adapter: ExchangeAdapter,
    oms: OrderManager,
    vr: VenueRecovery,
    journaled: dict[tuple[Venue, str], Intent],
    pending_ids: set[str],
    *,
    now_ms: int,
    clock: Callable[[], int],
) -> None:
    venue = vr.venue
    traded: dict[str, Order] = {}  # client id -> the venue's order, for the orders that traded
    # the outcome of an order that traded is journaled only after its trades (step 4): a crash in between
    # leaves the intent unfinished, so the next recovery asks again instead of never backfilling them
    finals: dict[str, tuple[str, dict[str, Any]]] = {}
    # 1. intents with no outcome: ask the venue by client order id before anything else
    for (v, cid), intent in journaled.items():
        if v is not venue or cid not in pending_ids:
            continue
        vr.intents_queried += 1
        order = await adapter.get_order(intent.symbol, client_order_id=cid)
        oms.on_query_result(venue, cid, order, ts_ms=now_ms)
        if order is None:
            vr.intents_never_sent += 1
            journal.outcome(cid, "closed", {"source": "recovery", "reason": "never_sent"}, ts_ms=now_ms)
            log.info("recovery_intent_never_sent venue=%s symbol=%s cid=%s", venue.value, intent.symbol, cid)
        else:
            vr.intents_adopted += 1
            kind, data = outcome_of(order, source="recovery")
            if order.filled_qty:
                traded[cid] = order
                finals[cid] = (kind, data)
            else:
                journal.outcome(cid, kind, data, ts_ms=now_ms)
            log.info(
                "recovery_intent_adopted venue=%s symbol=%s cid=%s status=%s filled_qty=%s",
                venue.value,
                intent.symbol,
                cid,
                order.status.value,
                order.filled_qty,
            )

    # 2. the venue's snapshot, reconciled into the OMS
    snapshot_ms = clock()
    open_orders = await adapter.open_orders()
    positions = await adapter.positions()
    balances = await adapter.balances()
    vr.snapshot_ms = snapshot_ms
    vr.orders_open = len(open_orders)
    vr.positions = sum(1 for p in positions if p.qty)
    report = oms.reconcile(venue, open_orders, positions, balances, ts_ms=snapshot_ms)
    traded.update((o.client_order_id, o) for o in open_orders if o.filled_qty)
    vr.differences.extend(report.differences)
    for d in report.differences:
        if d.kind is DiffKind.ORDER_ADOPTED:
            vr.orders_external += 1
        _log_difference(d)

    # 3. what the journal has and the venue no longer lists: its final state, journaled
    for symbol, cid in report.needs_query:
        vr.orders_closed_out += 1
        order = await adapter.get_order(symbol, client_order_id=cid)
        tracked = oms.on_query_result(venue, cid, order, ts_ms=now_ms)
        if order is not None and order.filled_qty:
            traded[cid] = order
        if (venue, cid) not in journaled:
            continue
        if order is not None:
            kind, data = outcome_of(order, source="recovery")
        else:
            kind, data = "closed", {"source": "recovery", "reason": "not_found"}
        if cid in traded:
            finals[cid] = (kind, data)
        else:
            journal.outcome(cid, kind, data, ts_ms=now_ms)
        log.info(
            "recovery_order_closed_out venue=%s symbol=%s cid=%s outcome=%s status=%s",
            venue.value,
            symbol,
            cid,
            kind,
            _status(tracked),
        )
    journal.positions_snapshot(positions, ts_ms=snapshot_ms)

    # 4. the trades of every order that traded (adopted, open or closed out): some happened while no
    # engine ran and never reached the journal's fills. Journaled (a known trade id is ignored) and fed to
    # the OMS after the reconcile: a fill at or before the snapshot does not move the position again.
    for cid, order in traded.items():
        fills = await adapter.order_fills(
            order.symbol, client_order_id=cid, venue_order_id=order.venue_order_id or None
        )
        for fill in fills:
            journal.fill(fill)
            oms.on_fill(fill)
        vr.fills_backfilled += len(fills)
        missing = order.filled_qty - sum((f.qty for f in fills), Decimal(0))
        if missing > 0:  # the venue's history lacks some (its look-back, a page limit)
            vr.trades_missing += 1
            log.warning(
                "recovery_trades_missing venue=%s symbol=%s cid=%s filled_qty=%s missing_qty=%s",
                venue.value,
                order.symbol,
                cid,
                order.filled_qty,
                missing,
            )
        if cid in finals:
            kind, data = finals.pop(cid)
            if missing > 0:
                data = {**data, "trades_missing": str(missing)}
            journal.outcome(cid, kind, data, ts_ms=now_ms)
        log.info(
            "recovery_order_fills venue=%s symbol=%s cid=%s fills=%d filled_qty=%s",
            venue.value,
            order.symbol,
            cid,
            len(fills),
            order.filled_qty,
        )


def _status(tracked: TrackedOrder | None) -> str:
    return "unknown" if tracked is None else tracked.status.value


def _log_difference(d: Difference) -> None:
    level = logging.INFO if d.severity is Severity.INFO else logging.WARNING
    log.log(
        level,
        "recovery_difference venue=%s kind=%s severity=%s symbol=%s ref=%s field=%s local=%s remote=%s "
        "detail=%r",
        d.venue.value,
        d.kind.value,
        d.severity.value,
        d.symbol,
        d.ref,
        d.field,
        d.local,
        d.remote,
        d.detail,
    )
