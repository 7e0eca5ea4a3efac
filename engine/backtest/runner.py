"""The backtest replay: market data through the same strategy, the same ``UnifiedRiskManager`` and the
local venue's exchange core (matching with queue positions, fees, funding, liquidation) in-process.

Time and steps. Messages with the same time form a *market step*. Within a step the data is applied
message by message to the symbol's kernel ``OrderBook`` (what the strategy reads) and the strategy sees
each message (``on_book`` per depth message, ``on_trade`` per trade, or -- for a strategy that only
overrides ``on_bar`` and has an integer ``bar_ms`` -- ``on_bar`` from a kernel ``BarBuilder``). At the end
of the step the venue core moves one market step to the data (its crowd book is set to the data's levels,
the step's trades execute against it first, so an account order at the front of a queue fills as maker),
then funding at any interval boundary reached, then liquidations; only then are the strategy's signals of
that step passed through the risk manager and sent. So an order always executes against a book that
includes every event up to the end of the step it was decided in, never an earlier one, and a strategy
can never see an event before it happens (no look-ahead).

The mark price is the data book's mid rounded half-even to the tick (``premium_weight = 0``): a pure
function of the book, so the fast path can watch it in C. The funding rate is the venue's interest term
(0.01% per interval). Entries with a stop-loss / take-profit get venue ``close_position`` stop and
take-profit orders (triggered by the mark) after their first fill, as in paper trading.

Two paths give the same results (tests compare them):

- the *slow path* (``fast=False``) runs every step as above in Python;
- the *fast path* (``fast=True``) runs steps in the ``ReplayLoop`` kernel (``ext/backtest.pyx``): rows of
  integers applied to the kernel books, trades into the strategy (or the bar builders), and returns to
  Python only when something needs the venue: a signal, a funding boundary, a timer, or the mark leaving
  the band in which no stop/take-profit triggers and no liquidation is near. While the account has resting
  limit orders (queue position matters) steps run on the slow path. The venue core then moves one step to
  the data's full book.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine import kernels as _kernels_module
from engine.backtest.sources import SNAPSHOT, TRADE, MarketData, Units
from engine.errors import EngineError
from engine.risk import Approved, RiskLimits, UnifiedRiskManager
from engine.strategies import Strategy, create
from engine.types import (
    BookHealth,
    BookUpdate,
    EngineState,
    Instrument,
    OrderType,
    Side,
    Signal,
    TradeTick,
    Venue,
)
from engine.types import Fill as EngineFill
from engine.types import PositionSide as EnginePositionSide
from engine.venue.exchange import Exchange
from engine.venue.market import CrowdStep
from engine.venue.model import (
    FundingEvent,
    InstrumentSpec,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    PositionEvent,
    TriggerBy,
    VenueReject,
)
from engine.venue.model import OrderType as VOrderType
from engine.venue.model import Side as VSide

__all__ = ["ACCOUNT", "BacktestError", "Replay", "ReplayResult", "TradeRecord"]

log = logging.getLogger(__name__)

kernels: Any = _kernels_module

ACCOUNT = "backtest"
_MONEY = Decimal("0.00000001")
_ZERO = Decimal(0)
_TIMER_MS = 1000
_MAX_CHAIN = 10_000
#: the fast path leaves the loop when the mark comes within this fraction of a liquidation price
_LIQ_GUARD = Decimal("0.02")
_BIG = 2**62


class BacktestError(EngineError):
    """The backtest cannot run (bad inputs) or broke an invariant (a bug, reported, never hidden)."""


@dataclass
class TradeRecord:
    """One round trip (flat -> flat, or to the end of the data)."""

    symbol: str
    side: Side
    entry_time: int
    qty: Decimal = _ZERO  # largest absolute size held
    open_qty: Decimal = _ZERO
    entry_qty: Decimal = _ZERO
    entry_notional: Decimal = _ZERO
    exit_qty: Decimal = _ZERO
    exit_notional: Decimal = _ZERO
    exit_time: int = 0
    fees: Decimal = _ZERO
    funding: Decimal = _ZERO
    realized: Decimal = _ZERO  # price PnL (and insurance terms), before fees and funding
    fills: int = 0
    closed_at_end: bool = False

    @property
    def pnl(self) -> Decimal:
        return self.realized - self.fees + self.funding

    @property
    def entry_price(self) -> Decimal:
        return (self.entry_notional / self.entry_qty).quantize(_MONEY) if self.entry_qty else _ZERO

    @property
    def exit_price(self) -> Decimal:
        return (self.exit_notional / self.exit_qty).quantize(_MONEY) if self.exit_qty else _ZERO


@dataclass
class ReplayResult:
    initial_equity: Decimal
    final_equity: Decimal
    trades: list[TradeRecord]
    equity: list[tuple[int, Decimal]]
    events: int
    steps: int
    elapsed_s: float
    start_ms: int
    end_ms: int
    denied: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    fills: int = 0
    syncs: int = 0
    gaps: int = 0
    path: str = "slow"


class _ReplayExchange(Exchange):
    """The venue core with one market step per data step (no fixed step grid, no catch-up)."""

    def advance(self, now_ms: int) -> None:
        for sym in self._syms.values():
            self._market_step(sym, now_ms)
        for sym in self._syms.values():
            while sym.next_funding_ms <= now_ms:
                self._funding(sym, sym.next_funding_ms)
        self._liquidations(now_ms)

    def crowd(self, symbol: str, is_bid: bool) -> dict[int, int]:
        book = self._syms[symbol].book
        return (book.bids if is_bid else book.asks).crowd

    def next_funding_ms(self) -> int:
        return min(s.next_funding_ms for s in self._syms.values())


class _DataSource:
    """The venue's crowd for one symbol: the data's book. Slow path: the levels the step changed (and
    the levels the step's trades or the account's fills touched) go to their data size. Full sync (the
    fast path): every level whose crowd size differs from the data's."""

    def __init__(self, book: Any, symbol: str) -> None:
        self.book = book
        self.symbol = symbol
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.trades: list[tuple[int, int, bool]] = []
        self.dirty_b: set[int] = set()
        self.dirty_a: set[int] = set()
        self.full = True
        self.exchange: _ReplayExchange | None = None

    # CrowdSource protocol
    def book_levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())

    def touch(self) -> tuple[int, int] | None:
        bb, _, ba, _ = self.book.touch_ticks()
        return (bb, ba) if bb and ba else None

    def reload(self) -> None:
        b = self.book
        self.bids = dict(b.levels_ticks("bid", b.bid_count))
        self.asks = dict(b.levels_ticks("ask", b.ask_count))

    def step(self, now_ms: int) -> CrowdStep:
        out = CrowdStep()
        if self.full:
            assert self.exchange is not None
            self.full = False
            self.reload()
            self.trades.clear()
            self.dirty_b.clear()
            self.dirty_a.clear()
            for data, is_bid, targets in ((self.bids, True, out.bids), (self.asks, False, out.asks)):
                crowd = self.exchange.crowd(self.symbol, is_bid)
                for p in sorted(crowd.keys() - data.keys()):
                    targets.append((p, 0))
                for p in sorted(data):
                    if crowd.get(p, 0) != data[p]:
                        targets.append((p, data[p]))
            return out
        out.trades, self.trades = self.trades, []
        for dirty, side, targets in (
            (self.dirty_b, self.bids, out.bids),
            (self.dirty_a, self.asks, out.asks),
        ):
            if dirty:
                pairs = sorted((p, side.get(p, 0)) for p in dirty)
                targets.extend(x for x in pairs if x[1] == 0)
                targets.extend(x for x in pairs if x[1] != 0)
                dirty.clear()
        return out


class _BookAdapter:
    """``CrowdSource.book()`` under its protocol name (``_DataSource.book`` is the kernel book)."""

    def __init__(self, src: _DataSource) -> None:
        self.src = src

    def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self.src.book_levels()

    def touch(self) -> tuple[int, int] | None:
        return self.src.touch()

    def step(self, now_ms: int) -> CrowdStep:
        return self.src.step(now_ms)


def _mark_ticks(bb: int, ba: int) -> int:
    s = bb + ba
    m = s >> 1
    if s & 1 and m & 1:
        m += 1
    return m


class Replay:
    """One backtest run over ``data`` (see the module docstring); ``run()`` gives a :class:`ReplayResult`."""

    def __init__(
        self,
        *,
        data: MarketData,
        venue: Venue,
        strategy_name: str,
        strategy_params: dict[str, Any],
        risk_limits: RiskLimits,
        deposit: Decimal,
        fast: bool,
        funding_interval_ms: int | None = None,
        equity_interval_ms: int = 1000,
        impl: Any = None,
    ) -> None:
        if deposit <= 0:
            raise BacktestError(f"deposit must be > 0, got {deposit}")
        if equity_interval_ms < 1:
            raise BacktestError(f"equity_interval_ms must be >= 1, got {equity_interval_ms}")
        if funding_interval_ms is not None and funding_interval_ms < 1:
            raise BacktestError(f"funding_interval_ms must be >= 1, got {funding_interval_ms}")
        self.k: Any = impl if impl is not None else kernels
        self.data = data
        self.venue = venue
        self.fast = fast
        self.deposit = deposit
        self.funding_interval_ms = funding_interval_ms
        self.equity_interval_ms = equity_interval_ms
        self.symbols = data.symbols
        self.specs: list[InstrumentSpec] = [data.specs[s] for s in self.symbols]
        self.books = [
            self.k.OrderBook(tick_size=str(s.tick_size), lot_size=str(s.lot_size)) for s in self.specs
        ]
        self.sources = [_DataSource(b, s) for b, s in zip(self.books, self.symbols, strict=True)]
        self.price_units = [Units(s.tick_size) for s in self.specs]
        self.qty_units = [Units(s.lot_size) for s in self.specs]
        self.instruments = [
            Instrument(
                venue=venue,
                symbol=s.symbol,
                base_asset=s.base_asset,
                quote_asset=s.quote_asset,
                tick_size=s.tick_size,
                lot_size=s.lot_size,
                min_qty=s.min_qty,
                max_qty=s.max_qty,
                min_notional=s.min_notional,
                max_leverage=s.max_leverage,
            )
            for s in self.specs
        ]
        self.risk = UnifiedRiskManager(instruments=self.instruments, limits=risk_limits)
        for s in self.symbols:
            self.risk.set_book_health(venue, s, BookHealth.LIVE)
        self.strategy: Strategy = create(
            strategy_name, params=strategy_params, symbols=[(venue, s) for s in self.symbols]
        )
        index = {s: i for i, s in enumerate(self.symbols)}
        if getattr(self.strategy, "requires_books", False):
            self.strategy.bind_books(lambda v, s: self.books[index[s]] if v is venue and s in index else None)
        cls = type(self.strategy)
        self.wants_trade = cls.on_trade is not Strategy.on_trade
        self.wants_book = cls.on_book is not Strategy.on_book
        self.wants_timer = cls.on_timer is not Strategy.on_timer
        bar_ms = getattr(self.strategy, "bar_ms", None)
        self.bar_mode = (
            not self.wants_trade
            and cls.on_bar is not Strategy.on_bar
            and isinstance(bar_ms, int)
            and bar_ms > 0
        )
        self.bars = [self.k.BarBuilder(interval_ms=bar_ms) for _ in self.symbols] if self.bar_mode else []
        self.tick_dec = [s.tick_size for s in self.specs]
        self.lot_dec = [s.lot_size for s in self.specs]
        self.tick_f = [float(s.tick_size) for s in self.specs]
        self.lot_f = [float(s.lot_size) for s in self.specs]
        self._px_cache: list[dict[int, Decimal]] = [{} for _ in self.symbols]
        self.exchange: _ReplayExchange | None = None
        self.now = 0
        self.signals: list[Signal] = []
        self.actions: list[Callable[[], None]] = []
        self.next_timer = 0
        self.next_sample = 0
        self.samples: list[tuple[int, tuple[int, ...]]] = []
        self.states: list[tuple[int, Decimal, tuple[tuple[Decimal, Decimal], ...]]] = []
        self.state_dirty = True
        self.last_trade_t = [0] * len(self.symbols)
        self.last_trade_px = [0] * len(self.symbols)
        self.pos = [_ZERO] * len(self.symbols)
        self.open_trade: list[TradeRecord | None] = [None] * len(self.symbols)
        self.trades: list[TradeRecord] = []
        self.last_touched: TradeRecord | None = None
        self.exits_for: dict[str, Signal] = {}
        self.protective: dict[str, list[str]] = {s: [] for s in self.symbols}
        self.risk_orders: dict[str, Side] = {}
        self.denied: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.orders = 0
        self.fills = 0
        self._last_fill_key: tuple[str, Decimal] | None = None
        self.syncs = 0
        self.insurance = _ZERO
        self.order_seq = 0
        self.lo = [-_BIG] * len(self.symbols)
        self.hi = [_BIG] * len(self.symbols)
        self.engaged = True

    # ---- conversions ----------------------------------------------------------------------------

    def _price(self, sym: int, ticks: int) -> Decimal:
        cache = self._px_cache[sym]
        p = cache.get(ticks)
        if p is None:
            p = self.tick_dec[sym] * ticks
            if len(cache) < 100_000:
                cache[ticks] = p
        return p

    # ---- strategy callbacks (both paths) ----------------------------------------------------------

    def on_trade_event(self, sym: int, t: int, px: int, lots: int, is_buy: bool) -> bool:
        self.last_trade_t[sym] = t
        self.last_trade_px[sym] = px
        if self.wants_trade:
            got = self.strategy.on_trade(
                TradeTick(
                    venue=self.venue,
                    symbol=self.symbols[sym],
                    trade_id="",
                    price=self._price(sym, px),
                    qty=self.lot_dec[sym] * lots,
                    aggressor=Side.BUY if is_buy else Side.SELL,
                    ts_ms=t,
                )
            )
            if got:
                self.signals.extend(got)
        return bool(self.signals)

    def on_bars(self, sym: int, bars: list[Any]) -> bool:
        for bar in bars:
            got = self.strategy.on_bar(self.venue, self.symbols[sym], bar)
            if got:
                self.signals.extend(got)
        return bool(self.signals)

    def on_book_event(self, sym: int, t: int) -> bool:
        bb, _, ba, _ = self.books[sym].touch_ticks()
        got = self.strategy.on_book(BookUpdate(self.venue, self.symbols[sym], bb, ba, t, 0))
        if got:
            self.signals.extend(got)
        return bool(self.signals)

    def on_sample(self, t: int) -> int:
        """Record the marks for the equity curve; returns the next sample time."""
        marks = []
        for b in self.books:
            bb, _, ba, _ = b.touch_ticks()
            marks.append(_mark_ticks(bb, ba) if bb and ba else 0)
        self.samples.append((t, tuple(marks)))
        return (t // self.equity_interval_ms + 1) * self.equity_interval_ms

    # ---- the slow path: one step, message by message ----------------------------------------------

    def slow_step(self, lo: int, hi: int) -> None:
        msgs = self.data.messages
        for i in range(lo, hi):
            t, kind, sym, payload = msgs[i]
            src = self.sources[sym]
            if kind == TRADE:
                px, lots, is_buy = payload
                src.trades.append((px, lots, is_buy))
                (src.dirty_a if is_buy else src.dirty_b).add(px)
                self.on_trade_event(sym, t, px, lots, is_buy)
                if self.bar_mode:
                    bars = self.bars[sym].update(t, self.tick_f[sym] * px, self.lot_f[sym] * lots)
                    if bars:
                        self.on_bars(sym, bars)
                continue
            bids, asks = payload
            book = self.books[sym]
            pu, qu = self.price_units[sym], self.qty_units[sym]
            if kind == SNAPSHOT:
                book.apply_snapshot(bids, asks)
                src.full = self.exchange is not None
                src.reload()
            else:
                book.apply_update(bids, asks)
                for p, q in bids:
                    pt = pu(p)
                    src.bids[pt] = qu(q)
                    src.dirty_b.add(pt)
                for p, q in asks:
                    pt = pu(p)
                    src.asks[pt] = qu(q)
                    src.dirty_a.add(pt)
                for d in (src.bids, src.asks):
                    for pt in [k for k, v in d.items() if v == 0]:
                        del d[pt]
            if self.wants_book:
                self.on_book_event(sym, t)

    # ---- end of a step: the venue moves, then the signals go out ----------------------------------

    def end_step(self, t: int, *, full: bool) -> None:
        self.now = t
        if self.exchange is None:
            if not all(b.bid_count and b.ask_count for b in self.books):
                if self.signals:
                    self._count(self.denied, "no_book", len(self.signals))
                    self.signals.clear()
                return
            self._build_exchange(t)
        else:
            if full:
                for src in self.sources:
                    src.full = True
            assert self.exchange is not None
            self.exchange.advance(t)
        if self.wants_timer and t >= self.next_timer:
            self.next_timer = (t // _TIMER_MS + 1) * _TIMER_MS
            got = self.strategy.on_timer(t)
            if got:
                self.signals.extend(got)
        self._drain(t)
        self._watch()

    def _build_exchange(self, t: int) -> None:
        starts = {}
        for i, b in enumerate(self.books):
            bb, _, ba, _ = b.touch_ticks()
            starts[self.symbols[i]] = self.tick_dec[i] * _mark_ticks(bb, ba)
        for src in self.sources:
            src.reload()
            src.full = False
        ex = _ReplayExchange(
            instruments={s.symbol: s for s in self.specs},
            clock=lambda: self.now,
            start_prices=starts,
            sources={src.symbol: _BookAdapter(src) for src in self.sources},
            funding_interval_ms=self.funding_interval_ms,
            premium_weight=_ZERO,
        )
        for src in self.sources:
            src.exchange = ex
        ex.add_account(api_key=ACCOUNT, api_secret="backtest", deposit=self.deposit)
        ex.add_listener(self._on_venue)
        self.exchange = ex
        self.next_sample = t
        self.next_timer = t

    def _count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n

    # ---- signals -> risk -> venue ------------------------------------------------------------------

    def _drain(self, t: int) -> None:
        ex = self.exchange
        assert ex is not None
        chain = 0
        while self.signals or self.actions:
            chain += 1
            if chain > _MAX_CHAIN:
                raise BacktestError(f"more than {_MAX_CHAIN} signals/actions in one step at {t}: a loop")
            if self.actions:
                self.actions.pop(0)()
                continue
            sig = self.signals.pop(0)
            self._signal(sig, t)
        ins = ex.ledger(ACCOUNT).insurance
        if ins != self.insurance:
            if self.last_touched is None:
                raise BacktestError("an insurance term with no trade to book it on")
            self.last_touched.realized += ins - self.insurance
            self.insurance = ins
        if self.state_dirty:
            self.state_dirty = False
            self._snapshot_state(t)

    def _equity(self) -> Decimal:
        ex = self.exchange
        assert ex is not None
        return ex.account_state(ACCOUNT).wallet_balance + sum(
            (p.unrealized_pnl for p in ex.positions(ACCOUNT)), _ZERO
        )

    def _signal(self, sig: Signal, t: int) -> None:
        ex = self.exchange
        assert ex is not None
        if sig.symbol not in self.protective or sig.venue is not self.venue:
            self._count(self.denied, "unknown_symbol")
            log.info("backtest_denied reason=unknown_symbol symbol=%s", sig.symbol)
            return
        trip = self.risk.on_equity(self._equity(), t)
        if trip is not None:
            self.risk.set_engine_state(EngineState.EMERGENCY_STOPPED)
            log.warning("backtest_risk_trip t=%s trip=%s", t, trip)
        sym = self.symbols.index(sig.symbol)
        bb, _, ba, _ = self.books[sym].touch_ticks()
        self.risk.on_book(BookUpdate(self.venue, sig.symbol, bb, ba, t, 0))
        decision = self.risk.check_signal(sig, now_ms=t)
        if not isinstance(decision, Approved):
            self._count(self.denied, decision.reason)
            log.info(
                "backtest_denied t=%s symbol=%s reason=%s detail=%s",
                t,
                sig.symbol,
                decision.reason,
                decision.detail,
            )
            return
        self.order_seq += 1
        cid = f"bt-{self.order_seq}"
        limit = sig.type is OrderType.LIMIT
        req = OrderRequest(
            symbol=sig.symbol,
            side=VSide.BUY if decision.side is Side.BUY else VSide.SELL,
            type=VOrderType.LIMIT if limit else VOrderType.MARKET,
            qty=decision.qty,
            price=decision.price if limit else None,
            reduce_only=sig.reduce_only,
            client_order_id=cid,
        )
        self.risk_orders[cid] = decision.side
        if not sig.reduce_only and (sig.stop_loss is not None or sig.take_profit is not None):
            self.exits_for[cid] = sig
        self.orders += 1
        try:
            ex.place_order(ACCOUNT, req)
        except VenueReject as exc:
            self._count(self.rejected, exc.reason.value if hasattr(exc.reason, "value") else str(exc.reason))
            log.info("backtest_rejected t=%s cid=%s reason=%s", t, cid, exc)
            self.risk_orders.pop(cid, None)
            self.exits_for.pop(cid, None)
            self.risk.on_order_done(self.venue, sig.symbol, decision.side, decision.qty)

    def _place_exits(self, symbol: str, sig: Signal) -> None:
        ex = self.exchange
        assert ex is not None
        self._cancel_exits(symbol)
        inst = self.instruments[self.symbols.index(symbol)]
        side = VSide.SELL if sig.side is Side.BUY else VSide.BUY
        for otype, price in (
            (VOrderType.STOP_MARKET, sig.stop_loss),
            (VOrderType.TAKE_PROFIT_MARKET, sig.take_profit),
        ):
            if price is None:
                continue
            self.order_seq += 1
            cid = f"bt-{self.order_seq}"
            self.orders += 1
            try:
                ex.place_order(
                    ACCOUNT,
                    OrderRequest(
                        symbol=symbol,
                        side=side,
                        type=otype,
                        close_position=True,
                        trigger_price=inst.round_price(price),
                        trigger_by=TriggerBy.MARK,
                        client_order_id=cid,
                    ),
                )
                self.protective[symbol].append(cid)
            except VenueReject as exc:
                self._count(self.rejected, f"protective_{exc.reason.value}")
                log.info("backtest_rejected t=%s cid=%s reason=%s", self.now, cid, exc)

    def _cancel_exits(self, symbol: str) -> None:
        ex = self.exchange
        assert ex is not None
        cids, self.protective[symbol] = self.protective[symbol], []
        for cid in cids:
            try:
                ex.cancel_order(ACCOUNT, symbol, client_order_id=cid)
            except VenueReject:
                log.debug("backtest_exit_already_closed cid=%s", cid)

    # ---- venue events ----------------------------------------------------------------------------

    def _on_venue(self, ev: Any) -> None:
        if isinstance(ev, OrderEvent):
            if ev.order.account != ACCOUNT:
                return
            self._on_order(ev)
        elif isinstance(ev, FundingEvent):
            if ev.account != ACCOUNT:
                return
            sym = self.symbols.index(ev.symbol)
            tr = self.open_trade[sym]
            if tr is None:
                raise BacktestError(f"funding on {ev.symbol} with no open trade")
            tr.funding += ev.amount
            self.last_touched = tr
            self.state_dirty = True
        elif isinstance(ev, PositionEvent):
            if ev.position.account != ACCOUNT:
                return
            self.state_dirty = True
            if ev.position.qty == 0 and self.protective[ev.position.symbol]:
                symbol = ev.position.symbol
                self.actions.append(lambda: self._cancel_exits(symbol))

    def _on_order(self, ev: OrderEvent) -> None:
        o = ev.order
        f = ev.fill
        side = Side.BUY if o.side is VSide.BUY else Side.SELL
        if f is not None:
            key = (o.client_order_id, f.price)
            if key != self._last_fill_key:  # executions at one price of one order count once (queue pieces)
                self.fills += 1
                self._last_fill_key = key
            self._book_fill(o.symbol, side, f.qty, f.price, f.fee, f.realized_pnl, f.ts_ms)
            efill = EngineFill(
                venue=self.venue,
                symbol=o.symbol,
                client_order_id=o.client_order_id,
                venue_order_id=str(o.order_id),
                trade_id=str(f.trade_id),
                side=side,
                position_side=EnginePositionSide.BOTH,
                price=f.price,
                qty=f.qty,
                fee=f.fee,
                fee_asset="USDT",
                is_maker=f.is_maker,
                realized_pnl=f.realized_pnl,
                ts_ms=f.ts_ms,
            )
            self.risk.on_fill(efill)
            got = self.strategy.on_fill(efill)
            if got:
                self.signals.extend(got)
            sig = self.exits_for.pop(o.client_order_id, None)
            if sig is not None:
                symbol = o.symbol
                self.actions.append(lambda: self._place_exits(symbol, sig))
        if o.status not in (
            OrderStatus.NEW,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.UNTRIGGERED,
            OrderStatus.TRIGGERED,
        ):
            s = self.risk_orders.pop(o.client_order_id, None)
            if s is not None:
                self.risk.on_order_done(self.venue, o.symbol, s, o.qty - o.filled_qty)
                self.exits_for.pop(o.client_order_id, None)

    def _book_fill(
        self, symbol: str, side: Side, qty: Decimal, price: Decimal, fee: Decimal, realized: Decimal, t: int
    ) -> None:
        sym = self.symbols.index(symbol)
        pos = self.pos[sym]
        signed = qty * side.sign
        tr = self.open_trade[sym]
        if tr is not None and pos * signed < 0:
            close = min(qty, abs(pos))
            fee_close = fee if close == qty else (fee * close / qty).quantize(_MONEY)
            tr.exit_qty += close
            tr.exit_notional += price * close
            tr.fees += fee_close
            tr.realized += realized
            tr.open_qty -= close
            tr.exit_time = t
            self.last_touched = tr
            pos += close * side.sign
            qty -= close
            fee -= fee_close
            if pos == 0:
                self.trades.append(tr)
                self.open_trade[sym] = None
                tr = None
        if qty > 0:
            if tr is None:
                tr = TradeRecord(symbol=symbol, side=side, entry_time=t)
                self.open_trade[sym] = tr
                if pos != 0:
                    raise BacktestError(f"{symbol}: position {pos} with no open trade")
            elif realized and pos * signed > 0:
                tr.realized += realized
            tr.entry_qty += qty
            tr.entry_notional += price * qty
            tr.fees += fee
            tr.open_qty += qty
            tr.qty = max(tr.qty, tr.open_qty)
            pos += qty * side.sign
            self.last_touched = tr
        self.pos[sym] = pos
        self.state_dirty = True

    def _snapshot_state(self, t: int) -> None:
        ex = self.exchange
        assert ex is not None
        wallet = ex.account_state(ACCOUNT).wallet_balance
        held: dict[str, tuple[Decimal, Decimal]] = {
            p.symbol: (p.qty, p.entry_price) for p in ex.positions(ACCOUNT)
        }
        self.states.append((t, wallet, tuple(held.get(s, (_ZERO, _ZERO)) for s in self.symbols)))

    # ---- the fast path's watch: when must the loop come back? -------------------------------------

    def _watch(self) -> None:
        ex = self.exchange
        assert ex is not None
        n = len(self.symbols)
        lo = [-_BIG] * n
        hi = [_BIG] * n
        engaged = False
        for o in ex.open_orders(ACCOUNT):
            sym = self.symbols.index(o.symbol)
            if o.type is VOrderType.LIMIT:
                engaged = True
                continue
            if o.trigger_price is None:
                continue
            trig = int(o.trigger_price / self.tick_dec[sym])
            is_buy = o.side is VSide.BUY
            fires_above = (o.type is VOrderType.STOP_MARKET) == is_buy
            if fires_above:
                hi[sym] = min(hi[sym], trig - 1)
            else:
                lo[sym] = max(lo[sym], trig + 1)
        for p in ex.positions(ACCOUNT):
            if p.liquidation_price > 0:
                sym = self.symbols.index(p.symbol)
                guard = p.liquidation_price * _LIQ_GUARD
                if p.qty > 0:
                    lo[sym] = max(lo[sym], int((p.liquidation_price + guard) / self.tick_dec[sym]) + 1)
                else:
                    hi[sym] = min(hi[sym], int((p.liquidation_price - guard) / self.tick_dec[sym]) - 1)
        self.lo, self.hi, self.engaged = lo, hi, engaged

    def next_time(self) -> int:
        ex = self.exchange
        assert ex is not None
        t = ex.next_funding_ms()
        if self.wants_timer:
            t = min(t, self.next_timer)
        return t

    # ---- the run ---------------------------------------------------------------------------------

    def run(self) -> ReplayResult:
        bounds = self.data.step_bounds()
        msgs = self.data.messages
        nsteps = len(bounds) - 1
        started = time.perf_counter()
        if self.fast:
            self._run_fast(bounds)
        else:
            for k in range(nsteps):
                lo, hi = bounds[k], bounds[k + 1]
                t = msgs[lo][0]
                self.slow_step(lo, hi)
                self.end_step(t, full=False)
                if self.exchange is not None and t >= self.next_sample:
                    self.next_sample = self.on_sample(t)
        elapsed = time.perf_counter() - started
        return self._finish(msgs[0][0], msgs[-1][0], nsteps, elapsed)

    def _run_fast(self, bounds: list[int]) -> None:
        msgs = self.data.messages
        nsteps = len(bounds) - 1
        rows, step_rows = self.data.decode()
        loop_cls: Any = self.k.ReplayLoop
        loop = loop_cls(
            books=self.books,
            bars=self.bars if self.bar_mode else None,
            handler=self,
            want_trades=self.wants_trade,
            want_book=self.wants_book,
        )
        k = 0
        while k < nsteps:
            if self.exchange is None or self.engaged:
                lo, hi = bounds[k], bounds[k + 1]
                t = msgs[lo][0]
                self.slow_step(lo, hi)
                self.end_step(t, full=False)
                if self.exchange is not None and t >= self.next_sample:
                    self.next_sample = self.on_sample(t)
                k += 1
                continue
            k = loop.run(rows, step_rows, k, nsteps, self.lo, self.hi, self.next_time(), self.next_sample)
            self.next_sample = loop.next_sample
            for sym, last in enumerate(loop.last_trades()):
                if last is not None:
                    self.last_trade_t[sym], self.last_trade_px[sym] = last
            t = int(rows["t"][step_rows[k - 1]])
            self.syncs += 1
            self.end_step(t, full=True)
            if loop.sample_due:
                self.next_sample = self.on_sample(t)

    def _finish(self, start_ms: int, end_ms: int, nsteps: int, elapsed: float) -> ReplayResult:
        ex = self.exchange
        if ex is None:
            raise BacktestError("the data never gave every symbol a two-sided book")
        wallet = ex.account_state(ACCOUNT).wallet_balance
        final = wallet
        held = {p.symbol: p for p in ex.positions(ACCOUNT)}
        for sym, symbol in enumerate(self.symbols):
            p = held.get(symbol)
            tr = self.open_trade[sym]
            if p is None:
                if tr is not None:
                    raise BacktestError(f"{symbol}: an open trade with no position")
                continue
            if tr is None or tr.open_qty * tr.side.sign != p.qty:
                raise BacktestError(
                    f"{symbol}: the trade ledger ({tr}) disagrees with the venue position {p.qty}"
                )
            if self.last_trade_px[sym]:
                last = self._price(sym, self.last_trade_px[sym])
            else:
                bb, _, ba, _ = self.books[sym].touch_ticks()
                last = self.tick_dec[sym] * _mark_ticks(bb, ba)
            upnl = ((last - p.entry_price) * p.qty).quantize(_MONEY)
            final += upnl
            tr.realized += upnl
            tr.exit_qty += abs(p.qty)
            tr.exit_notional += last * abs(p.qty)
            tr.exit_time = end_ms
            tr.open_qty = _ZERO
            tr.closed_at_end = True
            self.trades.append(tr)
            self.open_trade[sym] = None
        initial = self.deposit
        total = sum((tr.pnl for tr in self.trades), _ZERO)
        if total != final - initial:
            raise BacktestError(f"accounting: trades' pnl {total} != equity change {final - initial}")
        equity = self._equity_curve()
        if not equity or equity[-1][0] != end_ms:
            equity.append((end_ms, final))
        else:
            equity[-1] = (end_ms, final)
        self.trades.sort(key=lambda tr: (tr.entry_time, tr.exit_time, tr.symbol))
        return ReplayResult(
            initial_equity=initial,
            final_equity=final,
            trades=self.trades,
            equity=equity,
            events=self.data.events,
            steps=nsteps,
            elapsed_s=elapsed,
            start_ms=start_ms,
            end_ms=end_ms,
            denied=dict(sorted(self.denied.items())),
            rejected=dict(sorted(self.rejected.items())),
            orders=self.orders,
            fills=self.fills,
            syncs=self.syncs,
            gaps=self.data.gaps,
            path="fast" if self.fast else "slow",
        )

    def _equity_curve(self) -> list[tuple[int, Decimal]]:
        out: list[tuple[int, Decimal]] = []
        states = self.states
        j = -1
        for t, marks in self.samples:
            while j + 1 < len(states) and states[j + 1][0] <= t:
                j += 1
            if j < 0:
                out.append((t, self.deposit))
                continue
            _, wallet, held = states[j]
            eq = wallet
            for sym, (qty, entry) in enumerate(held):
                if qty:
                    eq += ((self.tick_dec[sym] * marks[sym] - entry) * qty).quantize(_MONEY)
            out.append((t, eq))
        return out
