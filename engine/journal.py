"""The journal: an SQLite file (WAL) holding what the engine must never forget.

Tables: ``intents`` (one per order the engine decided to send, written *before* the send), ``outcomes``
(ack, reject, fill, cancel, expire, closed -- *after*), ``decisions`` (the append-only audit trail:
each signal, the indicators it saw, the risk result, the action), ``fills``, ``position_snapshots``,
``transitions`` (engine state changes with their cause) and ``risk_state`` (the risk manager's
:meth:`~engine.risk.UnifiedRiskManager.state`, newest row wins). ``Decimal`` is stored as TEXT (exact),
times as integer epoch milliseconds, free-form records as JSON text (decimals inside as strings).

Durability
----------
The file is in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL has been
``fsync``-ed. ``NORMAL`` would survive a ``kill -9`` too (a commit's WAL frames are in the kernel's page
cache before ``COMMIT`` returns, and a killed process does not take the page cache with it), but not a
power cut or a kernel panic, which can roll back the last commits -- and on a colocated server an intent
lost that way is an order on the venue the engine does not know it sent. The cost of ``FULL`` is one
``fsync`` per *transaction*, not per record: the writer commits everything queued in one transaction
(group commit), so a burst of N records costs one ``fsync``. :meth:`Journal.intent` returns only after
the transaction holding the intent has committed: once it returns, the intent survives ``kill -9`` and
power loss; if it raises (``JournalError``), nothing may be sent.

Never blocking the loop
-----------------------
Every write is executed by one writer *thread* with its own connection; the event loop only enqueues.
The writer's queue is bounded (``queue_size``). ``outcome``/``decision``/``fill``/``positions_snapshot``/
``transition``/``save_risk_state`` never block and never drop: when the writer's queue is full the record
goes to an in-order *backlog* on the loop side, the journal turns unhealthy (reason ``queue_full``,
``on_unhealthy`` is called once) so the engine pauses entries -- which stops new intents and most new
records -- and the backlog is moved into the queue as the writer frees room. The backlog is therefore
bounded by what the engine produces while paused (outcomes of orders already open, exits, the audit
lines of denied signals), not by a constant; every record in it is written in order, none is dropped.
When the backlog is empty again and the queue is below half full, the journal is healthy again and
``on_healthy`` is called. ``intent()`` goes through the same path (a full queue delays it; it is never
refused for that).

Write failures
--------------
A failed transaction (disk full, read-only file or file system, I/O error) is rolled back. The journal
turns unhealthy (reason ``write_failed: ...``) and calls ``on_unhealthy``; the engine pauses entries and
alerts; nothing raises on the loop. The intents of the failed transaction fail: their ``intent()`` raises
``JournalError`` (so the order is never sent unjournaled). Every other record of it is kept, in order, in
the writer and retried every ``retry_s`` together with what arrives later; when a retry commits, the
journal is healthy again. Records still unwritten at :meth:`Journal.close` are counted in an error log
line (``journal_close_unwritten``).

Corruption
----------
:meth:`Journal.start` refuses (``JournalCorrupt``, naming the file and the newest backup) a file that is
empty, is not an SQLite database, fails ``PRAGMA quick_check``, has no ``schema_version`` table, has a
schema newer than this code, or is missing while backups of it exist. It never recreates a file.

Backups
-------
The SQLite online-backup API copies the journal into ``<journal dir>/backups/<stem>-<UTC time>.db``
every ``backup_interval_s`` (by the writer, between transactions), before a migration, and on a clean
:meth:`Journal.close`; the newest ``backup_keep`` are kept.

Schema
------
``schema_version`` holds one row. :data:`MIGRATIONS` is the ordered list of migrations; migration *i*
takes the file from version *i* to *i + 1*, all in one transaction.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import random
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from engine.errors import JournalCorrupt, JournalError
from engine.oms import PositionView
from engine.types import (
    EngineState,
    Fill,
    OrderRequest,
    OrderType,
    Position,
    PositionSide,
    Side,
    TimeInForce,
    Venue,
)

__all__ = [
    "CRASH_ENV",
    "MIGRATIONS",
    "OUTCOME_KINDS",
    "SCHEMA_VERSION",
    "TERMINAL_KINDS",
    "Intent",
    "Journal",
    "Outcome",
    "Transition",
    "newest_backup",
]

log = logging.getLogger("engine.journal")

T = TypeVar("T")

#: Outcome kinds. ``closed`` is written by recovery for an intent the venue never received.
OUTCOME_KINDS: Final = frozenset({"ack", "reject", "fill", "cancel", "expire", "closed"})
#: Outcomes after which an order is finished (a ``fill`` is terminal when its data says ``final``).
TERMINAL_KINDS: Final = frozenset({"reject", "cancel", "expire", "closed"})

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"

_V1: Final = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE intents (
    client_order_id TEXT PRIMARY KEY,
    venue TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    type TEXT NOT NULL,
    qty TEXT NOT NULL,
    price TEXT,
    signal TEXT NOT NULL,
    decision TEXT NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    venue TEXT NOT NULL,
    symbol TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    side TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    venue_order_id TEXT NOT NULL,
    position_side TEXT NOT NULL,
    price TEXT NOT NULL,
    qty TEXT NOT NULL,
    fee TEXT NOT NULL,
    fee_asset TEXT NOT NULL,
    is_maker INTEGER NOT NULL,
    realized_pnl TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    UNIQUE (venue, symbol, trade_id, side)
);
CREATE TABLE position_snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    snapshot_ms INTEGER NOT NULL,
    venue TEXT NOT NULL,
    symbol TEXT NOT NULL,
    position_side TEXT NOT NULL,
    qty TEXT NOT NULL,
    entry_price TEXT NOT NULL
);
CREATE TABLE transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    cause TEXT NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE TABLE risk_state (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    ts_ms INTEGER NOT NULL
);
INSERT INTO schema_version (version) VALUES (0);
"""

# v2: the rest of the order request on the intent (so recovery can rebuild it exactly), and the indexes
# recovery's queries need.
_V2: Final = """
ALTER TABLE intents ADD COLUMN tif TEXT NOT NULL DEFAULT 'gtc';
ALTER TABLE intents ADD COLUMN reduce_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE intents ADD COLUMN position_side TEXT NOT NULL DEFAULT 'both';
ALTER TABLE intents ADD COLUMN trigger_price TEXT;
CREATE INDEX outcomes_by_order ON outcomes (client_order_id, kind);
CREATE INDEX position_snapshots_by_time ON position_snapshots (snapshot_ms);
"""

#: Ordered migrations: ``MIGRATIONS[i]`` takes a file from schema version ``i`` to ``i + 1``.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2)
SCHEMA_VERSION: Final = len(MIGRATIONS)


@dataclass(frozen=True, kw_only=True)
class Intent:
    """An order the engine decided to send, as journaled before the send."""

    client_order_id: str
    venue: Venue
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    signal: dict[str, Any]
    decision: dict[str, Any]
    ts_ms: int
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH
    trigger_price: Decimal | None = None

    def request(self) -> OrderRequest:
        """The order request this intent was for."""
        return OrderRequest(
            venue=self.venue,
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            qty=self.qty,
            client_order_id=self.client_order_id,
            price=self.price,
            tif=self.tif,
            reduce_only=self.reduce_only,
            position_side=self.position_side,
            trigger_price=self.trigger_price,
        )


@dataclass(frozen=True, kw_only=True)
class Outcome:
    client_order_id: str
    kind: str
    data: dict[str, Any]
    ts_ms: int


@dataclass(frozen=True, kw_only=True)
class Transition:
    from_state: str
    to_state: str
    cause: str
    ts_ms: int


#: Test-only crash injection: ``"after_intent=0.05,before_ack=0.05"`` makes the process SIGKILL itself
#: with that probability right after an intent is committed (before the send) or when an ``ack`` outcome
#: is about to be journaled (after the venue acknowledged). Never set it in production.
CRASH_ENV: Final = "ENGINE_JOURNAL_CRASH"
_CRASH_POINTS: Final = frozenset({"after_intent", "before_ack"})


def _crash_faults(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in _CRASH_POINTS:
            raise ValueError(f"{CRASH_ENV}: unknown point {name!r}; one of {sorted(_CRASH_POINTS)}")
        prob = float(value)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"{CRASH_ENV}: {name} probability {value!r} is not in [0, 1]")
        out[name] = prob
    return out


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot journal a {type(value).__name__}: {value!r}")


def _dumps(value: object) -> str:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def backup_dir_of(path: Path) -> Path:
    return path.parent / "backups"


def newest_backup(path: Path) -> Path | None:
    """The newest backup of the journal at ``path``, if any."""
    backups = _backups_of(path)
    return backups[-1] if backups else None


def _backups_of(path: Path) -> list[Path]:
    directory = backup_dir_of(path)
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"{path.stem}-*.db"))


# ---- writer-side operations --------------------------------------------------------------------------

_WRITE: Final = 0
_CALL: Final = 1
_STOP: Final = 2


@dataclass(slots=True)
class _Op:
    """One item of the writer's queue. A write carries SQL and its parameters; an intent's write also
    carries the future its ``intent()`` awaits. A call runs a function on the writer's connection."""

    what: int
    sql: str = ""
    params: Any = ()
    many: bool = False
    future: asyncio.Future[Any] | None = None
    fn: Callable[[sqlite3.Connection], object] | None = None


class Journal:
    """See the module docstring. ``Journal(path)``; ``await start()``; ``await close()``.

    ``on_unhealthy(reason)`` / ``on_healthy()`` are called on the event loop when the health changes
    (assign them, or pass them to the constructor). ``max_pages`` caps the file at that many pages (a
    hard size limit; a write past it fails like a full disk).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue_size: int = 10_000,
        max_batch: int = 1_000,
        backup_interval_s: float = 600.0,
        backup_keep: int = 5,
        retry_s: float = 1.0,
        max_pages: int | None = None,
        on_unhealthy: Callable[[str], None] | None = None,
        on_healthy: Callable[[], None] | None = None,
    ) -> None:
        if queue_size < 2 or max_batch < 1 or backup_keep < 1 or retry_s <= 0 or backup_interval_s <= 0:
            raise ValueError(
                "queue_size >= 2, max_batch >= 1, backup_keep >= 1, retry_s > 0, backup_interval_s > 0"
            )
        self.path = Path(path)
        self.queue_size = queue_size
        self.max_batch = max_batch
        self.backup_interval_s = backup_interval_s
        self.backup_keep = backup_keep
        self.retry_s = retry_s
        self.max_pages = max_pages
        self.on_unhealthy = on_unhealthy
        self.on_healthy = on_healthy
        self._queue: queue.Queue[_Op] = queue.Queue(maxsize=queue_size)
        self._backlog: deque[_Op] = deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._closed = False
        self._queue_full = False
        self._write_error: str | None = None
        self._reported_unhealthy: str | None = None
        self._retained = 0  # records the writer holds after a failed transaction (writer thread only)
        self._last_error = ""  # writer thread only
        self._faults = _crash_faults(os.environ.get(CRASH_ENV, ""))
        self._rng = random.Random()
        self._lock_fd: int | None = None
        self._dead: str | None = None  # set when the writer thread died of an unexpected error
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "intents",
                "records",
                "commits",
                "write_failures",
                "intents_failed",
                "backlog_max",
                "backups",
            ),
            0,
        )

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open (or create) the file, check it, migrate it, and start the writer thread."""
        if self._started:
            raise JournalError("journal already started")
        self._loop = asyncio.get_running_loop()
        self._lock()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="journal-writer", daemon=True)
        self._thread.start()
        try:
            await ready
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._unlock()
            raise
        self._started = True
        log.info("journal_started path=%s schema_version=%d", self.path, SCHEMA_VERSION)

    async def close(self) -> None:
        """Write everything queued, take a backup, stop the writer. Idempotent."""
        if not self._started or self._closed:
            return
        self._closed = True
        loop = self._loop
        assert loop is not None and self._thread is not None
        while self._backlog:
            await asyncio.to_thread(self._queue.put, self._backlog.popleft())
        done: asyncio.Future[None] = loop.create_future()
        await asyncio.to_thread(self._queue.put, _Op(_STOP, future=done))
        await done
        await asyncio.to_thread(self._thread.join)
        self._unlock()
        log.info("journal_closed path=%s", self.path)

    def _lock(self) -> None:
        """One process per journal: an exclusive ``flock`` on ``<journal>.lock`` (released by the kernel
        when the process dies, so a ``kill -9`` leaves no stale lock). Not taken on a read-only file
        system, where nothing can be written anyway."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error("journal_lock_unavailable path=%s error=%r", lock_path, str(exc))
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"journal {self.path} is in use by another process ({lock_path})") from exc
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _maybe_crash(self, point: str) -> None:
        """Test-only fault injection (``ENGINE_JOURNAL_CRASH``): SIGKILL this process at ``point``."""
        p = self._faults.get(point, 0.0)
        if p and self._rng.random() < p:
            log.critical("journal_crash_injected point=%s", point)
            os.kill(os.getpid(), signal.SIGKILL)

    # ---- health ------------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while the writer's queue overflows or after a failed write that has not been retried
        successfully: the engine pauses entries."""
        return self._write_error is None and not self._queue_full

    @property
    def unhealthy_reason(self) -> str:
        if self._write_error is not None:
            return f"write_failed: {self._write_error}"
        return "queue_full" if self._queue_full else ""

    def stats(self) -> dict[str, int]:
        out = dict(self._stats)
        out["queued"] = self._queue.qsize()
        out["backlog"] = len(self._backlog)
        return out

    def _health_changed(self) -> None:
        """On the loop: call the hooks when health moves (once per change)."""
        reason = self.unhealthy_reason
        if reason and self._reported_unhealthy != reason:
            self._reported_unhealthy = reason
            log.error("journal_unhealthy path=%s reason=%r", self.path, reason)
            if self.on_unhealthy is not None:
                self.on_unhealthy(reason)
        elif not reason and self._reported_unhealthy is not None:
            self._reported_unhealthy = None
            log.info("journal_healthy path=%s", self.path)
            if self.on_healthy is not None:
                self.on_healthy()

    # ---- writes (loop side) ------------------------------------------------------------------------

    async def intent(
        self,
        *,
        client_order_id: str,
        venue: Venue,
        symbol: str,
        side: Side,
        type: OrderType,
        qty: Decimal,
        price: Decimal | None,
        signal: Mapping[str, Any],
        decision: Mapping[str, Any],
        tif: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False,
        position_side: PositionSide = PositionSide.BOTH,
        trigger_price: Decimal | None = None,
        ts_ms: int | None = None,
    ) -> None:
        """Journal an intent; returns once it is committed (fsync-ed). Raises ``JournalError`` when it
        could not be written: the order must not be sent. A duplicate client order id is a fault
        (``JournalError``) too."""
        loop = self._require_open()
        future: asyncio.Future[None] = loop.create_future()
        params = (
            client_order_id,
            Venue(venue).value,
            symbol,
            Side(side).value,
            OrderType(type).value,
            str(qty),
            _dec(price),
            _dumps(dict(signal)),
            _dumps(dict(decision)),
            _now_ms() if ts_ms is None else ts_ms,
            TimeInForce(tif).value,
            int(reduce_only),
            PositionSide(position_side).value,
            _dec(trigger_price),
        )
        self._submit(
            _Op(
                _WRITE,
                sql="INSERT INTO intents (client_order_id, venue, symbol, side, type, qty, price, signal, "
                "decision, ts_ms, tif, reduce_only, position_side, trigger_price) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params=params,
                future=future,
            )
        )
        self._stats["intents"] += 1
        await future
        self._maybe_crash("after_intent")  # committed, not yet sent

    def intent_request(
        self, request: OrderRequest, *, signal: Mapping[str, Any], decision: Mapping[str, Any]
    ) -> asyncio.Future[None]:
        """:meth:`intent` for a whole ``OrderRequest`` (every field kept); await the result."""
        return asyncio.ensure_future(
            self.intent(
                client_order_id=request.client_order_id,
                venue=request.venue,
                symbol=request.symbol,
                side=request.side,
                type=request.type,
                qty=request.qty,
                price=request.price,
                signal=signal,
                decision=decision,
                tif=request.tif,
                reduce_only=request.reduce_only or request.close_position,
                position_side=request.position_side,
                trigger_price=request.trigger_price,
            )
        )

    def outcome(
        self, client_order_id: str, kind: str, data: Mapping[str, Any], *, ts_ms: int | None = None
    ) -> None:
        """Enqueue an intent's outcome (``ack``, ``reject``, ``fill``, ``cancel``, ``expire``, ``closed``).
        A ``fill`` with ``data["final"]`` true (or ``data["status"] == "filled"``) ends the order."""
        if kind not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome kind {kind!r}; one of {sorted(OUTCOME_KINDS)}")
        if kind == "ack":
            self._maybe_crash("before_ack")  # sent and acknowledged, the outcome not yet journaled
        self._write(
            "INSERT INTO outcomes (client_order_id, kind, data, ts_ms) VALUES (?, ?, ?, ?)",
            (client_order_id, kind, _dumps(dict(data)), _now_ms() if ts_ms is None else ts_ms),
        )

    def decision(self, record: Mapping[str, Any], *, ts_ms: int | None = None) -> None:
        """Append one audit record (signal, indicators, risk result, action)."""
        self._write(
            "INSERT INTO decisions (ts_ms, record) VALUES (?, ?)",
            (_now_ms() if ts_ms is None else ts_ms, _dumps(dict(record))),
        )

    def fill(self, fill: Fill) -> None:
        """Enqueue a fill (a duplicate of one already journaled is ignored by the unique key)."""
        self._write(
            "INSERT OR IGNORE INTO fills (venue, symbol, trade_id, side, client_order_id, venue_order_id, "
            "position_side, price, qty, fee, fee_asset, is_maker, realized_pnl, ts_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fill.venue.value,
                fill.symbol,
                fill.trade_id,
                fill.side.value,
                fill.client_order_id,
                fill.venue_order_id,
                fill.position_side.value,
                str(fill.price),
                str(fill.qty),
                str(fill.fee),
                fill.fee_asset,
                int(fill.is_maker),
                str(fill.realized_pnl),
                fill.ts_ms,
            ),
        )

    def positions_snapshot(
        self, positions: Iterable[Position | PositionView], *, ts_ms: int | None = None
    ) -> None:
        """Enqueue a snapshot of positions (``Position`` or the OMS's ``PositionView``). An empty
        snapshot is recorded as one flat marker row, so "flat" and "never snapshotted" differ."""
        self._require_open()
        snap = _now_ms() if ts_ms is None else ts_ms
        rows: list[tuple[object, ...]] = []
        for p in positions:
            side = p.side if isinstance(p, Position) else p.position_side
            rows.append((snap, p.venue.value, p.symbol, side.value, str(p.qty), str(p.entry_price)))
        if not rows:
            rows.append((snap, "", "", "", "0", "0"))
        self._submit(
            _Op(
                _WRITE,
                sql="INSERT INTO position_snapshots (snapshot_ms, venue, symbol, position_side, qty, "
                "entry_price) VALUES (?, ?, ?, ?, ?, ?)",
                params=rows,
                many=True,
            )
        )

    def transition(
        self,
        from_state: EngineState | str,
        to_state: EngineState | str,
        cause: str,
        *,
        ts_ms: int | None = None,
    ) -> None:
        self._write(
            "INSERT INTO transitions (from_state, to_state, cause, ts_ms) VALUES (?, ?, ?, ?)",
            (str(from_state), str(to_state), cause, _now_ms() if ts_ms is None else ts_ms),
        )

    def save_risk_state(self, state: Mapping[str, Any], *, ts_ms: int | None = None) -> None:
        self._write(
            "INSERT INTO risk_state (state, ts_ms) VALUES (?, ?)",
            (_dumps(dict(state)), _now_ms() if ts_ms is None else ts_ms),
        )

    async def flush(self) -> None:
        """Wait until everything enqueued so far is committed (or has failed)."""
        await self._call(lambda _con: None)

    async def backup(self) -> Path:
        """Take a backup now (after everything enqueued so far); returns its path."""
        return await self._call(self._backup)

    # ---- reads (through the writer, so they see every record enqueued before them) ----------------

    async def load_risk_state(self) -> dict[str, Any] | None:
        def read(con: sqlite3.Connection) -> dict[str, Any] | None:
            row = con.execute("SELECT state FROM risk_state ORDER BY id DESC LIMIT 1").fetchone()
            if row is None:
                return None
            value = orjson.loads(row[0])
            if not isinstance(value, dict):
                raise JournalError(f"journal {self.path}: the saved risk state is not an object")
            return value

        return await self._call(read)

    async def pending_intents(self) -> list[Intent]:
        """Intents with no outcome at all: their order may or may not have reached the venue."""
        sql = (
            f"SELECT {_INTENT_COLUMNS} FROM intents i WHERE NOT EXISTS "
            "(SELECT 1 FROM outcomes o WHERE o.client_order_id = i.client_order_id) ORDER BY i.rowid"
        )
        return await self._call(lambda con: [_intent(r) for r in con.execute(sql)])

    async def unfinished_intents(self) -> list[Intent]:
        """Intents whose order has no terminal outcome (pending ones included): recovery tracks each
        until the venue says how it ended."""
        terminal = ", ".join(f"'{k}'" for k in sorted(TERMINAL_KINDS))
        sql = (
            f"SELECT {_INTENT_COLUMNS} FROM intents i WHERE NOT EXISTS "
            "(SELECT 1 FROM outcomes o WHERE o.client_order_id = i.client_order_id AND "
            f"(o.kind IN ({terminal}) OR (o.kind = 'fill' AND "
            "(json_extract(o.data, '$.final') = 1 OR json_extract(o.data, '$.status') = 'filled')))) "
            "ORDER BY i.rowid"
        )
        return await self._call(lambda con: [_intent(r) for r in con.execute(sql)])

    async def intents(self) -> list[Intent]:
        sql = f"SELECT {_INTENT_COLUMNS} FROM intents i ORDER BY i.rowid"
        return await self._call(lambda con: [_intent(r) for r in con.execute(sql)])

    async def outcomes(self, client_order_id: str | None = None) -> list[Outcome]:
        def read(con: sqlite3.Connection) -> list[Outcome]:
            if client_order_id is None:
                rows = con.execute("SELECT client_order_id, kind, data, ts_ms FROM outcomes ORDER BY id")
            else:
                rows = con.execute(
                    "SELECT client_order_id, kind, data, ts_ms FROM outcomes WHERE client_order_id = ? "
                    "ORDER BY id",
                    (client_order_id,),
                )
            return [Outcome(client_order_id=c, kind=k, data=orjson.loads(d), ts_ms=t) for c, k, d, t in rows]

        return await self._call(read)

    async def decisions(self, limit: int = 1000) -> list[dict[str, Any]]:
        def read(con: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = con.execute("SELECT record FROM decisions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return [orjson.loads(r[0]) for r in reversed(rows)]

        return await self._call(read)

    async def fills(self) -> list[Fill]:
        def read(con: sqlite3.Connection) -> list[Fill]:
            rows = con.execute(
                "SELECT venue, symbol, client_order_id, venue_order_id, trade_id, side, position_side, "
                "price, qty, fee, fee_asset, is_maker, realized_pnl, ts_ms FROM fills ORDER BY id"
            )
            return [
                Fill(
                    venue=Venue(v),
                    symbol=s,
                    client_order_id=c,
                    venue_order_id=vo,
                    trade_id=t,
                    side=Side(sd),
                    position_side=PositionSide(ps),
                    price=Decimal(p),
                    qty=Decimal(q),
                    fee=Decimal(f),
                    fee_asset=fa,
                    is_maker=bool(m),
                    realized_pnl=Decimal(r),
                    ts_ms=ts,
                )
                for v, s, c, vo, t, sd, ps, p, q, f, fa, m, r, ts in rows
            ]

        return await self._call(read)

    async def last_positions(self) -> list[tuple[Venue, str, PositionSide, Decimal, Decimal]]:
        """The newest positions snapshot: (venue, symbol, position side, signed qty, entry price)."""

        def read(con: sqlite3.Connection) -> list[tuple[Venue, str, PositionSide, Decimal, Decimal]]:
            rows = con.execute(
                "SELECT venue, symbol, position_side, qty, entry_price FROM position_snapshots "
                "WHERE snapshot_ms = (SELECT snapshot_ms FROM position_snapshots ORDER BY id DESC LIMIT 1) "
                "AND venue != '' ORDER BY id"
            )
            return [(Venue(v), s, PositionSide(ps), Decimal(q), Decimal(e)) for v, s, ps, q, e in rows]

        return await self._call(read)

    async def transitions(self) -> list[Transition]:
        def read(con: sqlite3.Connection) -> list[Transition]:
            rows = con.execute("SELECT from_state, to_state, cause, ts_ms FROM transitions ORDER BY id")
            return [Transition(from_state=f, to_state=t, cause=c, ts_ms=ts) for f, t, c, ts in rows]

        return await self._call(read)

    async def emergency_latch(self) -> Transition | None:
        """The transition into ``emergency_stopped`` that still latches, if any: the newest one, unless an
        operator ``reset`` (a transition from ``emergency_stopped`` to ``paused`` or ``running``) came
        after it. Shutdowns and restarts (``stopping``, ``stopped``, ``starting``) do not unlatch."""
        es = EngineState.EMERGENCY_STOPPED.value
        resets = (EngineState.PAUSED.value, EngineState.RUNNING.value)

        def read(con: sqlite3.Connection) -> Transition | None:
            row = con.execute(
                "SELECT id, from_state, to_state, cause, ts_ms FROM transitions WHERE to_state = ? "
                "ORDER BY id DESC LIMIT 1",
                (es,),
            ).fetchone()
            if row is None:
                return None
            reset = con.execute(
                "SELECT 1 FROM transitions WHERE id > ? AND from_state = ? AND to_state IN (?, ?) LIMIT 1",
                (row[0], es, *resets),
            ).fetchone()
            if reset is not None:
                return None
            return Transition(from_state=row[1], to_state=row[2], cause=row[3], ts_ms=row[4])

        return await self._call(read)

    async def emergency_latched(self) -> bool:
        return await self.emergency_latch() is not None

    # ---- loop-side plumbing ------------------------------------------------------------------------

    def _require_open(self) -> asyncio.AbstractEventLoop:
        if not self._started or self._loop is None:
            raise JournalError(f"journal {self.path} is not started")
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")
        if self._dead is not None:
            raise JournalError(f"journal {self.path}: writer crashed: {self._dead}")
        return self._loop

    def _write(self, sql: str, params: Sequence[object]) -> None:
        self._require_open()
        self._submit(_Op(_WRITE, sql=sql, params=params))

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = self._require_open()
        future: asyncio.Future[T] = loop.create_future()
        self._submit(_Op(_CALL, fn=fn, future=future))
        return await future

    def _submit(self, op: _Op) -> None:
        """Never blocks: into the writer's queue, or (queue full, or a backlog already waiting: order is
        kept) into the backlog, which turns the journal unhealthy until it drains."""
        if op.what == _WRITE:
            self._stats["records"] += 1
        if not self._backlog:
            try:
                self._queue.put_nowait(op)
                return
            except queue.Full:
                pass
        self._backlog.append(op)
        self._stats["backlog_max"] = max(self._stats["backlog_max"], len(self._backlog))
        if not self._queue_full:
            self._queue_full = True
            self._health_changed()

    def _drain(self) -> None:
        """On the loop, when the writer has taken a batch: move the backlog into the queue."""
        self._drain_scheduled = False
        while self._backlog:
            try:
                self._queue.put_nowait(self._backlog[0])
            except queue.Full:
                return
            self._backlog.popleft()
        if self._queue_full and self._queue.qsize() <= self.queue_size // 2:
            self._queue_full = False
            self._health_changed()

    def _from_writer(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:
            return  # the loop closed between the check and the call: nobody is left to tell

    def _notify_taken(self) -> None:
        """Writer thread: a batch left the queue; let the loop refill it from the backlog."""
        if self._queue_full and not self._drain_scheduled:
            self._drain_scheduled = True
            self._from_writer(self._drain)

    def _set_write_error(self, error: str | None) -> None:
        def apply() -> None:
            self._write_error = error
            self._health_changed()

        self._from_writer(apply)

    # ---- the writer thread -------------------------------------------------------------------------

    def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            con = self._open()
        except BaseException as exc:  # reported to start(), which re-raises it
            self._resolve(ready, exc=exc)
            return
        self._resolve(ready, value=None)
        try:
            self._serve(con)
        except Exception as exc:
            # a bug, not a disk problem (those are handled in _commit): say so loudly, fail every waiter
            log.exception("journal_writer_crashed path=%s", self.path)
            self._dead = f"{type(exc).__name__}: {exc}"
            self._set_write_error(f"writer crashed: {self._dead}")
            self._fail_queued()
        finally:
            con.close()

    def _fail_queued(self) -> None:
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return
            self._resolve(op.future, exc=JournalError(f"journal {self.path}: writer crashed: {self._dead}"))

    def _serve(self, con: sqlite3.Connection) -> None:
        retained: list[_Op] = []
        next_backup = time.monotonic() + self.backup_interval_s
        while True:
            timeout = self.retry_s if retained else max(0.0, next_backup - time.monotonic())
            try:
                first: _Op | None = self._queue.get(timeout=timeout)
            except queue.Empty:
                first = None
            batch: list[_Op] = [] if first is None else [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self._notify_taken()
            stop: _Op | None = None
            writes: list[_Op] = retained
            retained = []
            for op in batch:
                if op.what == _WRITE:
                    writes.append(op)
                    continue
                retained = self._commit(con, writes)
                writes = retained
                if op.what == _STOP:
                    stop = op
                    break
                self._run_call(con, op)
            if stop is None:
                retained = self._commit(con, writes)
            if stop is not None:
                if retained:
                    log.error(
                        "journal_close_unwritten path=%s records=%d error=%r",
                        self.path,
                        len(retained),
                        self._last_error,
                    )
                else:
                    self._try_backup(con, "close")
                self._resolve(stop.future, value=None)
                return
            if time.monotonic() >= next_backup:
                next_backup = time.monotonic() + self.backup_interval_s
                if not retained:
                    self._try_backup(con, "interval")

    def _commit(self, con: sqlite3.Connection, writes: list[_Op]) -> list[_Op]:
        """One transaction for ``writes``. Returns the records to retry (empty on success)."""
        if not writes:
            return []
        had_error = self._retained > 0
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                for op in writes:
                    if not op.sql:
                        continue  # an intent refused as a duplicate in an earlier attempt
                    if op.many:
                        con.executemany(op.sql, op.params)
                    elif op.future is not None:
                        self._insert_intent(con, op)
                    else:
                        con.execute(op.sql, op.params)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # SQLITE_FULL and some I/O errors roll back by themselves
                    con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            return self._failed(writes, exc)
        self._stats["commits"] += 1
        self._retained = 0
        for op in writes:
            self._resolve(op.future, value=None)
        if had_error or self._last_error:
            self._last_error = ""
            log.info("journal_write_recovered path=%s records=%d", self.path, len(writes))
            self._set_write_error(None)
        return []

    def _insert_intent(self, con: sqlite3.Connection, op: _Op) -> None:
        try:
            con.execute(op.sql, op.params)
        except sqlite3.IntegrityError:
            # a duplicate client order id: this intent fails alone, the rest of the batch is written
            assert op.future is not None
            cid = op.params[0]
            self._resolve(op.future, exc=JournalError(f"duplicate intent for client order id {cid!r}"))
            op.future = None  # answered: the rest of the batch is committed without it
            op.sql = ""

    def _failed(self, writes: list[_Op], exc: sqlite3.Error) -> list[_Op]:
        error = f"{type(exc).__name__}: {exc}"
        self._stats["write_failures"] += 1
        self._set_write_error(error)  # first: the loop is unhealthy before any intent() raises
        keep: list[_Op] = []
        failed_intents = 0
        for op in writes:
            if op.future is not None:
                failed_intents += 1
                self._resolve(
                    op.future, exc=JournalError(f"journal {self.path}: intent not written: {error}")
                )
            else:
                keep.append(op)
        self._stats["intents_failed"] += failed_intents
        self._retained = len(keep)
        if error != self._last_error:
            log.error(
                "journal_write_failed path=%s error=%r intents_failed=%d records_retained=%d",
                self.path,
                error,
                failed_intents,
                len(keep),
            )
        self._last_error = error
        return keep

    def _run_call(self, con: sqlite3.Connection, op: _Op) -> None:
        assert op.fn is not None and op.future is not None
        try:
            value = op.fn(con)
        except (sqlite3.Error, JournalError, OSError, ValueError) as exc:
            err = exc if isinstance(exc, JournalError) else JournalError(f"journal {self.path}: {exc}")
            self._resolve(op.future, exc=err)
            return
        self._resolve(op.future, value=value)

    def _resolve(
        self, future: asyncio.Future[Any] | None, *, value: object = None, exc: BaseException | None = None
    ) -> None:
        if future is None:
            return

        def apply() -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(value)

        self._from_writer(apply)

    # ---- opening, checking, migrating --------------------------------------------------------------

    def _corrupt(self, reason: str) -> JournalCorrupt:
        backup = newest_backup(self.path)
        log.error("journal_corrupt path=%s reason=%r backup=%s", self.path, reason, backup)
        return JournalCorrupt(path=str(self.path), reason=reason, backup=str(backup) if backup else None)

    def _open(self) -> sqlite3.Connection:
        path = self.path
        existed = path.exists()
        if existed:
            self._check_header(path)
        elif _backups_of(path):
            raise self._corrupt("the file is missing but backups of it exist (restore one, or move them)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"journal {path}: cannot create its directory: {exc}") from exc
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        try:
            self._configure(con)
        except sqlite3.OperationalError as exc:
            con.close()
            if not existed:
                raise JournalError(f"journal {path} cannot be created: {exc}") from exc
            if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
                raise JournalError(f"journal {path} cannot be opened: {exc}") from exc
            # A read-only file system (or file) cannot hold WAL's shared-memory file: open the journal
            # read-only so recovery can read it; every write then fails and the journal is unhealthy.
            log.error("journal_read_only path=%s error=%r", path, str(exc))
            con = sqlite3.connect(
                f"{path.resolve().as_uri()}?immutable=1",
                uri=True,
                isolation_level=None,
                check_same_thread=True,
            )
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._corrupt(f"{type(exc).__name__}: {exc}") from exc
        try:
            if existed:
                self._check_integrity(con)
            self._migrate(con)
        except BaseException:
            con.close()
            raise
        return con

    def _check_header(self, path: Path) -> None:
        try:
            with path.open("rb") as f:
                head = f.read(100)
        except OSError as exc:
            raise JournalError(f"journal {path} cannot be read: {exc}") from exc
        if not head:
            raise self._corrupt("the file is empty (truncated)")
        if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
            raise self._corrupt("not an SQLite database (bad header: overwritten or truncated)")
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return  # a checkpoint may have been cut short: SQLite finishes it from the WAL on open
        page_size = int.from_bytes(head[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        size = path.stat().st_size
        if page_size < 512 or size % page_size:
            raise self._corrupt(f"the size {size} is not a multiple of the page size {page_size} (truncated)")
        pages = int.from_bytes(head[28:32], "big")
        size_valid = head[24:28] == head[92:96]  # the in-header size counts only when these agree
        if size_valid and pages and size < pages * page_size:
            raise self._corrupt(f"the header says {pages} pages but the file holds {size // page_size}")

    def _configure(self, con: sqlite3.Connection) -> None:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=5000")
        if self.max_pages is not None:
            con.execute(f"PRAGMA max_page_count={int(self.max_pages)}")
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL (journal mode {mode})")

    def _unreadable(self, exc: sqlite3.DatabaseError) -> JournalError:
        """SQLite's corruption errors (``DatabaseError``: not a database, malformed) are ``JournalCorrupt``;
        an ``OperationalError`` (cannot open, I/O, locked) is a plain ``JournalError``."""
        if isinstance(exc, sqlite3.OperationalError):
            return JournalError(f"journal {self.path} cannot be read: {exc}")
        return self._corrupt(f"{type(exc).__name__}: {exc}")

    def _check_integrity(self, con: sqlite3.Connection) -> None:
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        problems = [r[0] for r in rows if r[0] != "ok"]
        if problems:
            raise self._corrupt("integrity check failed: " + "; ".join(problems[:3]))

    def _version(self, con: sqlite3.Connection) -> int:
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return 0
            if "schema_version" not in tables:
                raise self._corrupt("no schema_version table: not a journal")
            row = con.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from exc
        if row is None or not isinstance(row[0], int):
            raise self._corrupt("schema_version holds no version")
        return int(row[0])

    def _migrate(self, con: sqlite3.Connection) -> None:
        version = self._version(con)
        if version > SCHEMA_VERSION:
            raise self._corrupt(f"schema version {version} is newer than this engine's {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION:
            return
        if version > 0:
            self._try_backup(con, f"pre-migrate-v{version}")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            script = MIGRATIONS[target - 1]
            try:
                con.execute("BEGIN IMMEDIATE")
                for statement in _statements(script):
                    con.execute(statement)
                con.execute("UPDATE schema_version SET version = ?", (target,))
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise JournalError(f"journal {self.path}: migration to v{target} failed: {exc}") from exc
            log.info("journal_migrated path=%s from=%d to=%d", self.path, target - 1, target)

    # ---- backups -----------------------------------------------------------------------------------

    def _backup(self, con: sqlite3.Connection) -> Path:
        directory = backup_dir_of(self.path)
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = directory / f"{self.path.stem}-{stamp}.db"
        tmp = target.with_suffix(".tmp")
        dst = sqlite3.connect(tmp)
        try:
            con.backup(dst)
        finally:
            dst.close()
        os.replace(tmp, target)
        backups = _backups_of(self.path)
        for old in backups[: max(0, len(backups) - self.backup_keep)]:
            old.unlink()
        self._stats["backups"] += 1
        kept = min(len(backups), self.backup_keep)
        log.info("journal_backup path=%s backup=%s kept=%d", self.path, target, kept)
        return target

    def _try_backup(self, con: sqlite3.Connection, why: str) -> None:
        try:
            self._backup(con)
        except (sqlite3.Error, OSError) as exc:
            log.error("journal_backup_failed path=%s why=%s error=%r", self.path, why, str(exc))


_INTENT_COLUMNS: Final = (
    "i.client_order_id, i.venue, i.symbol, i.side, i.type, i.qty, i.price, i.signal, i.decision, i.ts_ms, "
    "i.tif, i.reduce_only, i.position_side, i.trigger_price"
)


def _intent(row: Sequence[Any]) -> Intent:
    cid, venue, symbol, side, type_, qty, price, signal, decision, ts, tif, ro, ps, trigger = row
    return Intent(
        client_order_id=cid,
        venue=Venue(venue),
        symbol=symbol,
        side=Side(side),
        type=OrderType(type_),
        qty=Decimal(qty),
        price=None if price is None else Decimal(price),
        signal=orjson.loads(signal),
        decision=orjson.loads(decision),
        ts_ms=ts,
        tif=TimeInForce(tif),
        reduce_only=bool(ro),
        position_side=PositionSide(ps),
        trigger_price=None if trigger is None else Decimal(trigger),
    )


def _statements(script: str) -> list[str]:
    """The statements of a migration script (none of ours has a ';' inside a literal)."""
    return [s.strip() for s in script.split(";") if s.strip()]
