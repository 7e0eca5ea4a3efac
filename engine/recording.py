"""Market-data recordings: the file format, its writer and its readers.

A recording is a directory of zstandard-compressed JSON-lines files, one per venue and rotation
period, named ``{venue}-{YYYYmmddTHH}{MMSS}Z[.N].jsonl.zst`` (UTC start time; ``.N`` only when a
name is taken). Each line is one object::

    {"t": <local receive time, epoch ms>, "k": "depth|trade|mark|snapshot|gap", "s": "<SYMBOL>",
     "m": <the venue's message, byte for byte as received>}

- ``depth``: Binance ``<s>@depth@100ms`` combined-stream frames (``U``/``u``/``pu``); Bybit
  ``orderbook.{depth}.<S>`` snapshot and delta messages (``u``/``seq``).
- ``trade``: Binance ``aggTrade`` frames; Bybit ``publicTrade.<S>`` messages.
- ``mark``: Binance ``markPrice@1s`` frames; Bybit ``tickers.<S>`` messages.
- ``snapshot``: the REST order-book answer (Binance ``/fapi/v1/depth``, Bybit ``/v5/market/orderbook``).
- ``gap``: written by the recorder, not the venue: ``m`` is ``{"reason": ..., ...}`` (a reconnect,
  a sequence break it saw, a frame that was not JSON).

The writer buffers lines in memory and writes them as one complete zstd frame (with a content
checksum) every ``flush_s`` seconds, at rotation and at close. A file is therefore a concatenation of
complete frames: a recorder killed with SIGKILL leaves every line up to its last flush readable.

Readers: :func:`read_events` (every event of some files, in time order), :func:`verify` (replays the
depth streams through the book-sync kernels from the recorded snapshots and reports sequence gaps,
stale drops and whether each book could be rebuilt) and :func:`rebuild_books` (the final books).
A truncated or corrupt frame raises :class:`~engine.errors.RecordingCorrupt`; with
``tolerate_truncated_tail=True`` a truncated *last* frame (what a crash mid-write leaves) is skipped
with a ``recording_truncated_tail`` warning and reported, never silently.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
import zstandard

from engine import kernels as _kernels_module
from engine.errors import RecordingCorrupt

__all__ = [
    "KINDS",
    "SUFFIX",
    "VENUES",
    "ContinuityReport",
    "RecordedEvent",
    "RecordedGap",
    "RecordingWriter",
    "SequenceGap",
    "SymbolContinuity",
    "file_name",
    "list_files",
    "read_events",
    "read_file",
    "rebuild_books",
    "verify",
]

log = logging.getLogger("engine.recording")

#: the kernel namespace (its names are set at import time, so the type checker sees ``Any``)
kernels: Any = _kernels_module

Kind = Literal["depth", "trade", "mark", "snapshot", "gap"]
KINDS: tuple[str, ...] = ("depth", "trade", "mark", "snapshot", "gap")
VENUES: tuple[str, ...] = ("binance", "bybit")
SUFFIX = ".jsonl.zst"

_READ_CHUNK = 1 << 20
_MAX_BUFFER = 4 << 20
_PENDING_LIMIT = 100_000  # diffs held per symbol while waiting for a snapshot


def file_name(venue: str, start_ms: int) -> str:
    """The file name of a recording of ``venue`` started at ``start_ms`` (UTC)."""
    ts = datetime.fromtimestamp(start_ms / 1000, tz=UTC)
    return f"{venue}-{ts:%Y%m%dT%H%M%S}Z{SUFFIX}"


def _venue_of(path: Path) -> str:
    venue = path.name.partition("-")[0]
    if venue not in VENUES or not path.name.endswith(SUFFIX):
        raise ValueError(f"{path}: not a recording file name ({{venue}}-{{YYYYmmddTHHMMSS}}Z{SUFFIX})")
    return venue


def list_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files to read: each path as given, a directory expanded to its recordings; ordered by start."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(p for p in path.iterdir() if p.name.endswith(SUFFIX))
        else:
            out.append(path)
    for path in out:
        _venue_of(path)
    # the name is venue-start: order by start time, then venue, then the name (the .N suffix)
    return sorted(out, key=lambda p: (p.name.partition("-")[2], p.name))


# ---- writer -----------------------------------------------------------------------------------------


class RecordingWriter:
    """Appends lines to the current file of one venue; rotates every ``rotate_s`` (aligned to the epoch).

    ``on_rotate(path)`` is called after a new file is opened by a rotation (the recorder then fetches
    the snapshots that make the new file self-contained). Not thread-safe: one event loop writes.
    """

    def __init__(
        self,
        *,
        directory: Path,
        venue: str,
        rotate_s: float = 3600.0,
        flush_s: float = 1.0,
        level: int = 3,
        clock_ms: Callable[[], int] | None = None,
        on_rotate: Callable[[Path], None] | None = None,
    ) -> None:
        if venue not in VENUES:
            raise ValueError(f"venue {venue!r} must be one of {', '.join(VENUES)}")
        if rotate_s <= 0 or flush_s <= 0:
            raise ValueError("rotate_s and flush_s must be > 0")
        self.directory = directory
        self.venue = venue
        self.rotate_ms = max(1, int(rotate_s * 1000))
        self.flush_ms = max(1, int(flush_s * 1000))
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._on_rotate = on_rotate
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._buf = bytearray()
        self._fh: Any = None
        self.path: Path | None = None
        self.files: list[Path] = []
        self.lines = 0
        self.frames = 0
        self._last_t = 0
        self._next_rotate_ms = 0
        self._last_flush_ms = 0

    def now_ms(self) -> int:
        """The local clock, never going backwards (the ``t`` of the next line)."""
        t = self._clock()
        if t < self._last_t:
            t = self._last_t
        self._last_t = t
        return t

    def open(self) -> Path:
        now = self.now_ms()
        self._open(now)
        assert self.path is not None
        return self.path

    def _open(self, now: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        base = file_name(self.venue, now)
        path = self.directory / base
        n = 0
        while path.exists():
            n += 1
            path = self.directory / f"{base[: -len(SUFFIX)]}.{n}{SUFFIX}"
        self._fh = open(path, "xb")
        self.path = path
        self.files.append(path)
        self._next_rotate_ms = (now // self.rotate_ms + 1) * self.rotate_ms
        self._last_flush_ms = now
        log.info("recording_file_opened path=%s venue=%s", path, self.venue)

    def write_raw(self, kind: str, symbol: str, raw: bytes, t_ms: int | None = None) -> None:
        """One line whose ``m`` is ``raw``: one JSON value as received (must be valid JSON)."""
        if self._fh is None:
            raise RuntimeError("the writer is not open (call open() first)")
        if b"\n" in raw or b"\r" in raw:  # keep one line per event; the JSON value is unchanged
            raw = orjson.dumps(orjson.loads(raw))
        t = self.now_ms() if t_ms is None else t_ms
        self.maybe_rotate(t)
        self._buf += b'{"t":%d,"k":"%s","s":%s,"m":' % (t, kind.encode(), orjson.dumps(symbol))
        self._buf += raw
        self._buf += b"}\n"
        self.lines += 1
        if t - self._last_flush_ms >= self.flush_ms or len(self._buf) >= _MAX_BUFFER:
            self.flush()

    def write(self, kind: str, symbol: str, message: object, t_ms: int | None = None) -> None:
        """One line whose ``m`` is ``message`` serialised (used for the recorder's own ``gap`` lines)."""
        self.write_raw(kind, symbol, orjson.dumps(message), t_ms)

    def tick(self) -> None:
        """Periodic housekeeping: rotate and flush when due even if no message arrives."""
        if self._fh is None:
            return
        now = self.now_ms()
        self.maybe_rotate(now)
        if now - self._last_flush_ms >= self.flush_ms:
            self.flush()

    def maybe_rotate(self, now: int) -> bool:
        if self._fh is None or now < self._next_rotate_ms:
            return False
        self._close_file()
        self._open(now)
        if self._on_rotate is not None and self.path is not None:
            self._on_rotate(self.path)
        return True

    def flush(self) -> None:
        """Write the buffered lines as one complete, checksummed zstd frame."""
        self._last_flush_ms = self.now_ms()
        if not self._buf or self._fh is None:
            return
        frame = self._compressor.compress(bytes(self._buf))
        self._buf.clear()
        self._fh.write(frame)
        self._fh.flush()
        self.frames += 1

    def _close_file(self) -> None:
        if self._fh is None:
            return
        self.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        log.info("recording_file_closed path=%s", self.path)

    def close(self) -> None:
        """Flush the last frame, fsync and close the file."""
        self._close_file()


# ---- reader -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    t_ms: int
    kind: str
    venue: str
    symbol: str
    message: dict[str, Any]


@dataclass
class _FileRead:
    path: Path
    truncated_at: int | None = None


def _frames(path: Path, read: _FileRead, tolerate_truncated_tail: bool) -> Iterator[tuple[int, bytes]]:
    """(offset, decompressed content) of each complete frame of ``path``."""
    with open(path, "rb") as fh:
        offset = 0  # where the current frame starts
        pending = b""
        out: list[bytes] = []
        dobj = zstandard.ZstdDecompressor().decompressobj()
        while True:
            chunk = fh.read(_READ_CHUNK)
            if not chunk:
                break
            data = pending + chunk
            pending = b""
            while data:
                try:
                    out.append(dobj.decompress(data))
                except zstandard.ZstdError as exc:
                    raise RecordingCorrupt(path=str(path), offset=offset, reason=str(exc)) from None
                if not dobj.eof:
                    break
                unused = dobj.unused_data
                consumed = len(data) - len(unused)
                yield offset, b"".join(out)
                offset += consumed
                out = []
                dobj = zstandard.ZstdDecompressor().decompressobj()
                data = unused
        size = fh.tell()
        if offset < size:
            if not tolerate_truncated_tail:
                raise RecordingCorrupt(
                    path=str(path),
                    offset=offset,
                    reason=f"the last frame is truncated ({size - offset} bytes after the last whole frame)",
                )
            read.truncated_at = offset
            log.warning(
                "recording_truncated_tail path=%s offset=%d bytes_skipped=%d", path, offset, size - offset
            )


def _iter_file(path: Path, read: _FileRead, tolerate_truncated_tail: bool) -> Iterator[RecordedEvent]:
    venue = _venue_of(path)
    for offset, content in _frames(path, read, tolerate_truncated_tail):
        if content and not content.endswith(b"\n"):
            raise RecordingCorrupt(path=str(path), offset=offset, reason="a frame does not end with a line")
        for i, line in enumerate(content.splitlines()):
            try:
                obj = orjson.loads(line)
                t, kind, symbol, message = obj["t"], obj["k"], obj["s"], obj["m"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise RecordingCorrupt(
                    path=str(path), offset=offset, reason=f"line {i + 1} of the frame is not a recording line"
                ) from None
            if type(t) is not int or kind not in KINDS or not isinstance(symbol, str):
                raise RecordingCorrupt(
                    path=str(path), offset=offset, reason=f"line {i + 1} of the frame has a bad t, k or s"
                )
            if not isinstance(message, dict):
                raise RecordingCorrupt(
                    path=str(path), offset=offset, reason=f"line {i + 1} of the frame: m is not an object"
                )
            yield RecordedEvent(t, kind, venue, symbol, message)


def read_file(path: Path | str, *, tolerate_truncated_tail: bool = False) -> Iterator[RecordedEvent]:
    """Every event of one file, in file order."""
    p = Path(path)
    return _iter_file(p, _FileRead(p), tolerate_truncated_tail)


def _read(
    paths: Iterable[Path | str], tolerate_truncated_tail: bool, reads: list[_FileRead]
) -> Iterator[RecordedEvent]:
    iters = []
    for path in list_files(paths):
        read = _FileRead(path)
        reads.append(read)
        iters.append(_iter_file(path, read, tolerate_truncated_tail))
    # each file is in time order; merge is stable (equal times keep file order, files in start order)
    return heapq.merge(*iters, key=lambda e: e.t_ms)


def read_events(
    paths: Iterable[Path | str], *, tolerate_truncated_tail: bool = False
) -> Iterator[RecordedEvent]:
    """Every event of the given files (directories are expanded), in time order.

    Raises :class:`RecordingCorrupt` on a corrupt frame, and on a truncated last frame unless
    ``tolerate_truncated_tail`` (then that file's complete frames are read and a warning logged).
    """
    return _read(paths, tolerate_truncated_tail, [])


# ---- continuity and book rebuilding ----------------------------------------------------------------


@dataclass(frozen=True)
class SequenceGap:
    """A break in a depth stream's sequence found by the book-sync kernel."""

    t_ms: int
    expected: int  # Binance: the pu (or, while syncing, a U <= this); Bybit: the next u
    got: int


@dataclass(frozen=True)
class RecordedGap:
    """A ``gap`` line the recorder wrote (a reconnect, a sequence break it saw, a bad frame)."""

    t_ms: int
    reason: str


@dataclass
class SymbolContinuity:
    venue: str
    symbol: str
    depth_messages: int = 0
    snapshots: int = 0
    applied: int = 0
    stale: int = 0
    before_first_snapshot: int = 0
    buffer_dropped: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[SequenceGap] = field(default_factory=list)
    recorded_gaps: list[RecordedGap] = field(default_factory=list)
    rebuilt: bool = False
    last_update_id: int | None = None

    @property
    def gap_count(self) -> int:
        return len(self.gaps)


@dataclass
class ContinuityReport:
    files: list[str]
    symbols: dict[str, SymbolContinuity]
    truncated_files: list[str]
    events: int

    @property
    def gap_count(self) -> int:
        return sum(s.gap_count for s in self.symbols.values())

    @property
    def ok(self) -> bool:
        """No sequence gap, no truncation, no content error, and every book rebuilt."""
        return (
            not self.truncated_files
            and self.gap_count == 0
            and all(s.rebuilt and not s.errors for s in self.symbols.values())
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "files": self.files,
            "truncated_files": self.truncated_files,
            "events": self.events,
            "gaps": self.gap_count,
            "symbols": {
                name: {
                    "venue": s.venue,
                    "depth_messages": s.depth_messages,
                    "snapshots": s.snapshots,
                    "applied": s.applied,
                    "stale": s.stale,
                    "before_first_snapshot": s.before_first_snapshot,
                    "buffer_dropped": s.buffer_dropped,
                    "rebuilt": s.rebuilt,
                    "last_update_id": s.last_update_id,
                    "errors": s.errors,
                    "gaps": [{"t": g.t_ms, "expected": g.expected, "got": g.got} for g in s.gaps],
                    "recorded_gaps": [{"t": g.t_ms, "reason": g.reason} for g in s.recorded_gaps],
                }
                for name, s in sorted(self.symbols.items())
            },
        }


def _decimals(text: object) -> int:
    if not isinstance(text, str):
        return 0
    _, dot, frac = text.partition(".")
    return len(frac.rstrip("0")) if dot else 0


def _book_levels(ev: RecordedEvent) -> tuple[object, object] | None:
    m = ev.message
    if ev.kind == "depth":
        data = m.get("data", m) if ev.venue == "binance" else m.get("data")
        if isinstance(data, dict):
            return data.get("b"), data.get("a")
    elif ev.kind == "snapshot":
        if ev.venue == "binance":
            return m.get("bids"), m.get("asks")
        result = m.get("result")
        if isinstance(result, dict):
            return result.get("b"), result.get("a")
    return None


def _grids(events: Iterable[RecordedEvent]) -> dict[tuple[str, str], tuple[str, str]]:
    """(tick, lot) per (venue, symbol): the finest decimal step seen in its book messages."""
    digits: dict[tuple[str, str], list[int]] = {}
    for ev in events:
        levels = _book_levels(ev)
        if levels is None:
            continue
        d = digits.setdefault((ev.venue, ev.symbol), [0, 0])
        for side in levels:
            if not isinstance(side, list):
                continue
            for level in side:
                if isinstance(level, list) and len(level) == 2:
                    d[0] = max(d[0], _decimals(level[0]))
                    d[1] = max(d[1], _decimals(level[1]))
    return {key: (str(Decimal(1).scaleb(-p)), str(Decimal(1).scaleb(-q))) for key, (p, q) in digits.items()}


class _Replayer:
    """One symbol's depth stream through the book-sync kernel.

    Binance: diffs that arrive while no snapshot is held wait here (bounded); a snapshot (while the
    book is not live) resets the kernel, applies, and the waiting diffs follow it. A diff whose ``pu``
    is the snapshot's ``lastUpdateId`` follows it exactly (the snapshot was taken between two diffs),
    so it is fed with ``U`` = ``lastUpdateId``, which the straddle rule then accepts.
    """

    def __init__(self, venue: str, symbol: str, tick: str, lot: str) -> None:
        self.book = kernels.OrderBook(tick_size=tick, lot_size=lot)
        self.binance = venue == "binance"
        self.sync: Any = (
            kernels.BinanceBookSync(self.book) if self.binance else kernels.BybitBookSync(self.book)
        )
        self.report = SymbolContinuity(venue=venue, symbol=symbol)
        self.snapshotted = False
        self.pending: deque[tuple[int, dict[str, Any]]] = deque()
        self.applied = 0
        self.stale = 0

    def on_event(self, ev: RecordedEvent) -> None:
        rep = self.report
        m = ev.message
        try:
            if ev.kind == "gap":
                rep.recorded_gaps.append(RecordedGap(ev.t_ms, str(m.get("reason", "unknown"))))
            elif ev.kind == "snapshot":
                rep.snapshots += 1
                if self.binance and self.sync.state != "live":
                    # a snapshot while live is redundant; otherwise it (re)starts the sync
                    self.sync.reset()
                    self.sync.on_snapshot(m["lastUpdateId"], m["bids"], m["asks"])
                    self.snapshotted = True
                    items = list(self.pending)
                    self.pending.clear()
                    for i, (t, d) in enumerate(items):
                        self._binance_feed(t, d)
                        if self.sync.state == "awaiting_snapshot":
                            self.pending.extend(items[i + 1 :])
                            break
                # Bybit: the REST answer's u is numbered apart from the topic's; the topic's own
                # snapshot messages are the sync points, so a REST snapshot is recorded, not applied
            elif ev.kind == "depth":
                rep.depth_messages += 1
                if self.binance:
                    self._binance_feed(ev.t_ms, m.get("data", m))
                else:
                    self._bybit_depth(ev)
        except (KeyError, TypeError, ValueError) as exc:
            rep.errors.append(f"t={ev.t_ms} {ev.kind}: {type(exc).__name__}: {exc}")

    def _binance_feed(self, t_ms: int, d: dict[str, Any]) -> None:
        sync = self.sync
        state = sync.state
        if state == "awaiting_snapshot":
            if not self.snapshotted:
                self.report.before_first_snapshot += 1
            if len(self.pending) >= _PENDING_LIMIT:
                self.pending.popleft()
                self.report.buffer_dropped += 1
            self.pending.append((t_ms, d))
            return
        last = sync.last_update_id
        first_id, pu = d["U"], d["pu"]
        if state == "syncing" and pu == last and type(first_id) is int and first_id > pu:
            first_id = pu
        r = sync.on_event(first_id, d["u"], pu, d["b"], d["a"])
        if r == kernels.APPLIED:
            self.applied += 1
        elif r == kernels.STALE:
            self.stale += 1
        else:  # GAP (the kernel is awaiting a snapshot and holds this diff): keep it here instead
            got = pu if state == "live" else d["U"]
            self.report.gaps.append(SequenceGap(t_ms, last if last is not None else -1, got))
            sync.reset()
            self.pending.append((t_ms, d))

    def _bybit_depth(self, ev: RecordedEvent) -> None:
        m = ev.message
        kind = m["type"]
        d = m["data"]
        if kind == "delta" and not self.snapshotted:
            self.report.before_first_snapshot += 1
            return
        last = self.sync.last_update_id
        was_live = self.sync.state == "live"
        r = self.sync.on_message(kind, d["u"], d.get("seq"), d["b"], d["a"])
        if kind == "snapshot":
            self.snapshotted = True
        if r == kernels.GAP:
            expected = last + 1 if (was_live and last is not None) else -1
            self.report.gaps.append(SequenceGap(ev.t_ms, expected, d["u"]))

    @property
    def rebuilt(self) -> bool:
        """Bybit: live. Binance: live, or holding a snapshot no diff has yet followed (never a gap)."""
        state = self.sync.state
        return state == "live" or (self.binance and state == "syncing")

    def finish(self) -> SymbolContinuity:
        rep = self.report
        if self.binance:
            rep.applied = self.applied
            rep.stale = self.stale
        else:
            rep.applied = int(self.sync.applied)
            rep.stale = int(self.sync.stale)
        rep.rebuilt = self.rebuilt
        rep.last_update_id = self.sync.last_update_id
        return rep


def _replay(
    paths: Iterable[Path | str],
    grids: Mapping[str, tuple[str, str]] | None,
    tolerate_truncated_tail: bool,
) -> tuple[dict[tuple[str, str], _Replayer], list[_FileRead], int, list[Path]]:
    files = list_files(paths)
    found = _grids(_read(files, tolerate_truncated_tail, []))
    reads: list[_FileRead] = []
    replayers: dict[tuple[str, str], _Replayer] = {}
    n = 0
    for ev in _read(files, tolerate_truncated_tail, reads):
        n += 1
        key = (ev.venue, ev.symbol)
        rp = replayers.get(key)
        if rp is None:
            if ev.kind not in ("depth", "snapshot", "gap"):
                continue
            given = grids.get(ev.symbol) if grids is not None else None
            tick, lot = given if given is not None else found.get(key, ("1", "1"))
            rp = replayers[key] = _Replayer(ev.venue, ev.symbol, tick, lot)
        rp.on_event(ev)
    return replayers, reads, n, files


def _by_symbol(items: dict[tuple[str, str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    venues = {venue for venue, _ in items}
    for (venue, symbol), value in items.items():
        out[symbol if len(venues) <= 1 else f"{venue}:{symbol}"] = value
    return out


def verify(
    paths: Iterable[Path | str],
    *,
    grids: Mapping[str, tuple[str, str]] | None = None,
    tolerate_truncated_tail: bool = True,
) -> ContinuityReport:
    """Replay the depth streams through the book-sync kernels and report continuity per symbol.

    ``grids`` maps a symbol to its (tick size, lot size); by default the finest decimal step seen in
    its book messages is used (exact for the rebuild: every recorded price lies on it). Symbols are
    keyed by name, or ``venue:symbol`` when the files hold more than one venue.
    """
    replayers, reads, n, files = _replay(paths, grids, tolerate_truncated_tail)
    report = ContinuityReport(
        files=[str(p) for p in files],
        symbols=_by_symbol({key: rp.finish() for key, rp in replayers.items()}),
        truncated_files=[str(r.path) for r in reads if r.truncated_at is not None],
        events=n,
    )
    log.info(
        "recording_verified files=%d events=%d gaps=%d truncated=%d ok=%s",
        len(files),
        n,
        report.gap_count,
        len(report.truncated_files),
        report.ok,
    )
    return report


def rebuild_books(
    paths: Iterable[Path | str],
    *,
    grids: Mapping[str, tuple[str, str]] | None = None,
    tolerate_truncated_tail: bool = True,
) -> dict[str, Any]:
    """The order book of every recorded symbol after the last event (``kernels.OrderBook``).

    A symbol whose book could not be rebuilt (no usable snapshot, or a gap not healed by a later
    snapshot) is left out; :func:`verify` says why.
    """
    replayers, _, _, _ = _replay(paths, grids, tolerate_truncated_tail)
    return _by_symbol({key: rp.book for key, rp in replayers.items() if rp.rebuilt})
