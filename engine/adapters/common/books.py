"""A local L2 book per symbol on the kernels, with its health as the risk manager sees it.

:class:`BookManager` wraps an ``OrderBook`` and the venue's sync machine (``BinanceBookSync`` or
``BybitBookSync``, from ``engine.kernels``) and turns their result codes into events:

- ``on_bytes(raw, recv_ns)`` feeds a raw WS frame to the machine's ``on_bytes``. ``APPLIED`` emits a
  :class:`~engine.types.BookUpdate` (with the touch and ``recv_ns``) and makes the book ``LIVE``;
  ``GAP`` counts a resync, marks the symbol ``RESYNCING`` and calls ``request_resync(symbol)`` (the
  adapter fetches a snapshot or resubscribes); ``STALE`` / ``BUFFERED`` change nothing visible.
- A frame the kernel refuses (``ValueError``) is counted as malformed and dropped; when it made a live
  machine fall back to awaiting a snapshot (bad level data, a crossed result) the book is marked
  ``CROSSED`` (crossed data) or ``RESYNCING`` and a resync is requested.
- ``on_snapshot(...)`` (Binance) applies a REST snapshot and replays the kernel's buffer.
- ``check_stale(now)`` marks a book ``STALE`` after ``stale_after_s`` without an update (the adapter
  runs :class:`BookWatchdog`); the next applied update makes it ``LIVE`` again.
- ``reset(reason)`` (a reconnect of the book stream) clears the book and marks it ``RESYNCING``.
- Update ids going backwards: a live machine answers ``STALE`` to every frame whose id is not above the
  last one applied. A restarted venue starts its ids again from a low value (Binance; Bybit's sequence
  restarts with a ``u == 1`` snapshot, which the machine applies anyway); without a reconnect the book
  would stay frozen. ``MAX_STALE_RUN`` stale frames in a row on a live book reset it and request a
  resync (a replayed duplicate now and then stays far below that).

Each health change emits a :class:`~engine.types.VenueStatus` on stream ``book:<SYMBOL>``. Everything
here is synchronous and runs on the loop; ``request_resync`` must only schedule work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Literal

from engine import kernels as _kernels_module
from engine.adapters.common import cancel_task
from engine.errors import MalformedMessage
from engine.types import BookHealth, BookUpdate, MarketEvent, Venue, VenueStatus

__all__ = ["MAX_STALE_RUN", "BookManager", "BookWatchdog"]

log = logging.getLogger("engine.adapters.books")

#: the kernel namespace (its names are set at import time, so the type checker sees ``Any``)
kernels: Any = _kernels_module

APPLIED: int = kernels.APPLIED
STALE: int = kernels.STALE
GAP: int = kernels.GAP
BUFFERED: int = kernels.BUFFERED

#: stale frames in a row on a live book after which its update ids are taken to have restarted
MAX_STALE_RUN = 20


class BookManager:
    """One symbol's book, sync machine and health (see the module docstring)."""

    def __init__(
        self,
        *,
        venue: Venue,
        symbol: str,
        tick_size: Decimal,
        lot_size: Decimal,
        kind: Literal["binance", "bybit"],
        sink: Callable[[MarketEvent], None],
        request_resync: Callable[[str], None],
        now_ms: Callable[[], int],
        stale_after_s: float,
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.book: Any = kernels.OrderBook(tick_size=tick_size, lot_size=lot_size)
        self.sync: Any = (
            kernels.BinanceBookSync(self.book) if kind == "binance" else kernels.BybitBookSync(self.book)
        )
        self._sink = sink
        self._request_resync = request_resync
        self._now_ms = now_ms
        self.stale_after_s = stale_after_s
        self.health = BookHealth.SYNCING
        self.last_update_mono = time.monotonic()
        self.updates = 0
        self.resyncs = 0
        self.malformed = 0
        self.stale_marks = 0
        self.snapshots = 0
        self.id_restarts = 0
        self._stale_run = 0  # STALE frames in a row while live
        # whether the sync machine is live, tracked from its results (APPLIED: live; GAP/BUFFERED/error:
        # not; STALE: unchanged) so the per-frame path does not read its ``state`` property
        self._sync_live = False
        self._stream = f"book:{symbol}"

    # ---- health -----------------------------------------------------------------------------------------
    def _set_health(self, health: BookHealth, detail: str) -> None:
        if health is self.health:
            return
        previous, self.health = self.health, health
        log.info(
            "book_health venue=%s symbol=%s from=%s to=%s detail=%r",
            self.venue,
            self.symbol,
            previous,
            health,
            detail,
        )
        self._sink(
            VenueStatus(
                venue=self.venue, stream=self._stream, status=str(health), detail=detail, ts_ms=self._now_ms()
            )
        )

    def _resync(self, health: BookHealth, detail: str) -> None:
        if self.health is BookHealth.SYNCING and health is BookHealth.RESYNCING:
            # still on the first sync (e.g. a snapshot older than the stream): not a resync
            self._request_resync(self.symbol)
            return
        self.resyncs += 1
        self._set_health(health, detail)
        self._request_resync(self.symbol)

    # ---- input ------------------------------------------------------------------------------------------
    def on_bytes(self, raw: bytes | bytearray | str, recv_ns: int) -> int | None:
        """Feed one WS frame; returns the kernel's code, or None when the frame was dropped.

        The hot path: one kernel call (``on_bytes_touch``) applies the frame and returns the new touch."""
        try:
            touch = self.sync.on_bytes_touch(raw)
        except ValueError as exc:
            self._malformed(exc, self._sync_live)
            return None
        if touch is not None:
            self._applied(touch, recv_ns)
            return APPLIED
        code: int = self.sync.last_result
        self._after(code, recv_ns)
        return code

    def on_message(
        self, kind: str, u: int, seq: int | None, bids: object, asks: object, recv_ns: int
    ) -> int | None:
        """Bybit: feed one already decoded message."""
        was_live = self.sync.state == "live"
        try:
            code: int = self.sync.on_message(kind, u, seq, bids, asks)
        except ValueError as exc:
            self._malformed(exc, was_live)
            return None
        self._after(code, recv_ns)
        return code

    def on_snapshot(self, last_update_id: int, bids: Iterable[Any], asks: Iterable[Any]) -> int | None:
        """Binance: a REST snapshot. Returns the kernel's code (GAP asks for another snapshot)."""
        self.snapshots += 1
        try:
            code: int = self.sync.on_snapshot(last_update_id, list(bids), list(asks))
        except ValueError as exc:
            self.malformed += 1
            log.warning(
                "book_snapshot_malformed venue=%s symbol=%s error=%r", self.venue, self.symbol, str(exc)
            )
            self._resync(BookHealth.RESYNCING, f"bad snapshot: {exc}")
            return None
        if code == APPLIED:
            self._after(code, time.perf_counter_ns())
        elif code == GAP:
            self._resync(BookHealth.RESYNCING, "snapshot older than the stream")
        return code

    def _malformed(self, exc: ValueError, was_live: bool) -> None:
        self.malformed += 1
        self._sync_live = self.sync.state == "live"
        error = MalformedMessage(f"{self.venue} {self.symbol} book frame dropped: {exc}")
        log.warning("book_message_malformed venue=%s symbol=%s error=%r", self.venue, self.symbol, str(error))
        if was_live and self.sync.state != "live":
            crossed = "cross" in str(exc).lower()
            self._resync(BookHealth.CROSSED if crossed else BookHealth.RESYNCING, str(exc)[:200])

    def _applied(self, touch: tuple[int, int, int, int], recv_ns: int) -> None:
        """A frame applied; ``touch`` is (bid, bid lots, ask, ask lots), an empty side reading 0."""
        self._sync_live = True
        self.updates += 1
        self.last_update_mono = time.monotonic()
        if self.health is not BookHealth.LIVE:
            self._set_health(BookHealth.LIVE, "synced")
        # positional: this runs once per depth message (field order: venue, symbol, best_bid_ticks,
        # best_ask_ticks, ts_ms, recv_ns)
        self._sink(BookUpdate(self.venue, self.symbol, touch[0], touch[2], self._now_ms(), recv_ns))
        self._stale_run = 0

    def _after(self, code: int, recv_ns: int) -> None:
        if code == APPLIED:
            self._applied(self.book.touch_ticks(), recv_ns)
            return
        if code != STALE:
            self._sync_live = False  # GAP or BUFFERED
        if code == GAP:
            self._stale_run = 0
            self._resync(BookHealth.RESYNCING, "sequence gap")
        elif code == STALE and self.sync.state == "live":
            self._stale_run += 1
            if self._stale_run >= MAX_STALE_RUN:
                self._stale_run = 0
                self.id_restarts += 1
                log.warning(
                    "book_ids_restarted venue=%s symbol=%s last=%s",
                    self.venue,
                    self.symbol,
                    self.sync.last_update_id,
                )
                self.reset(f"{MAX_STALE_RUN} stale updates in a row: update ids restarted")
                self._request_resync(self.symbol)

    # ---- maintenance ------------------------------------------------------------------------------------
    def check_stale(self, now_mono: float) -> None:
        if self.health is BookHealth.LIVE and now_mono - self.last_update_mono > self.stale_after_s:
            self.stale_marks += 1
            self._set_health(BookHealth.STALE, f"no update for {self.stale_after_s:g}s")

    def reset(self, reason: str) -> None:
        """The book stream was (re)connected: drop the book and wait for a new snapshot."""
        self.sync.reset()
        self._sync_live = False
        self._stale_run = 0
        if self.health is not BookHealth.SYNCING:
            self.resyncs += 1
            self._set_health(BookHealth.RESYNCING, reason)
        self.last_update_mono = time.monotonic()

    @property
    def awaiting_snapshot(self) -> bool:
        return bool(self.sync.state == "awaiting_snapshot")

    def stats(self) -> dict[str, int]:
        return {
            "updates": self.updates,
            "resyncs": self.resyncs,
            "malformed": self.malformed,
            "stale": self.stale_marks,
            "snapshots": self.snapshots,
            "id_restarts": self.id_restarts,
        }


class BookWatchdog:
    """Checks every book for staleness every ``interval_s`` (a background task)."""

    def __init__(self, books: Callable[[], Iterable[BookManager]], interval_s: float) -> None:
        self._books = books
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="book-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            for manager in self._books():
                manager.check_stale(now)
