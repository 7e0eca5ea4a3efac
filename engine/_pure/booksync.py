"""Venue sequence-sync state machines: the pure-Python twin of ``engine._ext.booksync``.

Same public API, rules and result codes as the compiled kernel (see ``ext/booksync.pyx``). ``on_bytes``
decodes with ``orjson`` and then follows the same logic.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from engine._pure.book import OrderBook

__all__ = ["APPLIED", "BUFFERED", "GAP", "STALE", "BinanceBookSync", "BybitBookSync"]

APPLIED = 0
STALE = 1
GAP = 2
BUFFERED = 3

_AWAITING = 0
_SYNCING = 1
_LIVE = 2
_STATES = ("awaiting_snapshot", "syncing", "live")

Level = tuple[int, int]
_Event = tuple[int, int, int, list[Level], list[Level]]


def _id(value: object, name: str) -> int:
    if type(value) is not int or not (-(2**63) <= value <= 2**63 - 1):
        raise ValueError(f"{name} {value!r} is not an int64 integer")
    return value


def _decode(raw: object) -> dict[str, Any]:
    if not isinstance(raw, (bytes, bytearray, str)):
        raise TypeError(f"frame must be bytes, bytearray or str, not {type(raw).__name__}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("frame is not a JSON object")
    return obj


def _frame_id(payload: dict[str, Any], name: str) -> int:
    if name not in payload:
        raise ValueError(f"frame {name} is missing")
    value = payload[name]
    if type(value) is not int or not (-(2**63) <= value <= 2**63 - 1):
        raise ValueError(f"frame {name} is not an int64 integer")
    return value


class _SyncBase:
    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self._state = _AWAITING
        self._last = 0
        self._have_last = False
        self.applied = 0
        self.stale = 0
        self.gaps = 0
        self.buffer_dropped = 0
        self.last_result = 0  # the result code of the last ``on_bytes_touch``

    @property
    def state(self) -> str:
        return _STATES[self._state]

    @property
    def last_update_id(self) -> int | None:
        return self._last if self._have_last else None

    def _on_content_error(self) -> None:
        pass

    def on_bytes(self, raw: bytes | bytearray | str) -> int:
        raise NotImplementedError  # each venue's machine scans its own frame shape

    def on_bytes_touch(self, raw: bytes | bytearray | str) -> tuple[int, int, int, int] | None:
        """``on_bytes`` and the new touch in one call: ``book.touch_ticks()`` when the frame was
        APPLIED, else None; the result code is in ``last_result`` either way."""
        code = self.on_bytes(raw)
        self.last_result = code
        if code == APPLIED:
            return self.book.touch_ticks()
        return None

    def _stage_both(
        self, bids: object, asks: object, names: tuple[str, str]
    ) -> tuple[list[Level], list[Level]]:
        try:
            return self.book._stage(bids, names[0]), self.book._stage(asks, names[1])
        except ValueError:
            if self._state == _LIVE:
                self._state = _AWAITING
                self._on_content_error()
            raise

    def _reset_common(self) -> None:
        self._state = _AWAITING
        self._have_last = False
        self._last = 0
        self.applied = self.stale = self.gaps = self.buffer_dropped = 0
        self.book.clear()


class BinanceBookSync(_SyncBase):
    """Binance USD-M diff-depth sync (protocol notes 1.7)."""

    def __init__(self, book: OrderBook, *, buffer_size: int = 4096) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size {buffer_size!r} must be >= 1")
        super().__init__(book)
        self.buffer_size = buffer_size
        self._buffer: deque[_Event] = deque()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Back to awaiting a snapshot: buffer emptied, counters zeroed, book cleared."""
        self._buffer.clear()
        self._reset_common()

    def _apply(self, bids: list[Level], asks: list[Level]) -> None:
        try:
            self.book._apply_staged(bids, asks, False)
        except ValueError:
            self._state = _AWAITING
            raise

    def _event(self, ev: _Event, from_buffer: bool) -> int:
        U, u, pu, bids, asks = ev
        result = BUFFERED
        if self._state == _LIVE:
            if pu == self._last:
                self._apply(bids, asks)
                self._last = u
                self.applied += 1
                return APPLIED
            if u <= self._last:
                self.stale += 1
                return STALE
            self.gaps += 1
            self._state = _AWAITING
            result = GAP
        elif self._state == _SYNCING:
            if u < self._last:
                self.stale += 1
                return STALE
            if self._last >= U:
                self._apply(bids, asks)
                self._last = u
                self._state = _LIVE
                self.applied += 1
                return APPLIED
            self.gaps += 1
            self._state = _AWAITING
            result = GAP
        if from_buffer:
            self._buffer.appendleft(ev)
            return result
        if len(self._buffer) >= self.buffer_size:
            self._buffer.popleft()
            self.buffer_dropped += 1
        self._buffer.append(ev)
        return result

    def on_event(self, U: int, u: int, pu: int, bids: object, asks: object) -> int:
        """One diff-depth event (decoded): APPLIED, STALE, GAP or BUFFERED."""
        ids = _id(U, "U"), _id(u, "u"), _id(pu, "pu")
        b, a = self._stage_both(bids, asks, ("bids", "asks"))
        return self._event((*ids, b, a), False)

    def on_snapshot(self, last_update_id: int, bids: object, asks: object) -> int:
        """Apply a REST snapshot, then replay the buffer: APPLIED (live), BUFFERED (waiting) or GAP."""
        L = _id(last_update_id, "last_update_id")
        try:
            self.book._apply_staged(self.book._stage(bids, "bids"), self.book._stage(asks, "asks"), True)
        except ValueError:
            self._state = _AWAITING
            raise
        self._last = L
        self._have_last = True
        self._state = _SYNCING
        while self._buffer and self._state != _AWAITING:
            self._event(self._buffer.popleft(), True)
        if self._state == _LIVE:
            return APPLIED
        if self._state == _SYNCING:
            return BUFFERED
        return GAP

    def on_bytes(self, raw: bytes | bytearray | str) -> int:
        """One raw WS frame (bare depthUpdate or combined-stream envelope): as ``on_event``."""
        obj = _decode(raw)
        if "data" in obj:
            obj = obj["data"]
            if not isinstance(obj, dict):
                raise ValueError("frame 'data' is not an object")
        ids = _frame_id(obj, "U"), _frame_id(obj, "u"), _frame_id(obj, "pu")
        for name in ("b", "a"):
            if name not in obj:
                raise ValueError(f"frame {name} is missing")
        b, a = self._stage_both(obj["b"], obj["a"], ("b", "a"))
        return self._event((*ids, b, a), False)


class BybitBookSync(_SyncBase):
    """Bybit v5 orderbook sync (protocol notes 2.7)."""

    def __init__(self, book: OrderBook) -> None:
        super().__init__(book)
        self._gap_reported = False

    def reset(self) -> None:
        """Back to awaiting a snapshot: counters zeroed, book cleared."""
        self._gap_reported = False
        self._reset_common()

    def _on_content_error(self) -> None:
        self._gap_reported = True

    def _apply(self, bids: list[Level], asks: list[Level], snapshot: bool) -> None:
        try:
            self.book._apply_staged(bids, asks, snapshot)
        except ValueError:
            self._state = _AWAITING
            self._gap_reported = True
            raise

    def _message(self, snapshot: bool, u: int, bids: list[Level], asks: list[Level]) -> int:
        if snapshot:
            self._apply(bids, asks, True)
            self._last = u
            self._have_last = True
            self._state = _LIVE
            self._gap_reported = False
            self.applied += 1
            return APPLIED
        if self._state != _LIVE:
            if self._gap_reported:
                self.stale += 1
                return STALE
            self._gap_reported = True
            self.gaps += 1
            return GAP
        if u == self._last + 1:
            self._apply(bids, asks, False)
            self._last = u
            self.applied += 1
            return APPLIED
        self.gaps += 1
        self._state = _AWAITING
        self._gap_reported = True
        return GAP

    def on_message(self, kind: str, u: int, seq: int | None, bids: object, asks: object) -> int:
        """One decoded orderbook message, kind "snapshot" or "delta": APPLIED, STALE or GAP."""
        if kind not in ("snapshot", "delta"):
            raise ValueError(f"type {kind!r} must be 'snapshot' or 'delta'")
        cu = _id(u, "u")
        if seq is not None:
            _id(seq, "seq")
        b, a = self._stage_both(bids, asks, ("bids", "asks"))
        return self._message(kind == "snapshot", cu, b, a)

    def on_bytes(self, raw: bytes | bytearray | str) -> int:
        """One raw WS frame of an ``orderbook.{depth}.{symbol}`` topic: as ``on_message``."""
        obj = _decode(raw)
        if "type" not in obj:
            raise ValueError("frame type is missing")
        kind = obj["type"]
        if kind not in ("snapshot", "delta") or not isinstance(kind, str):
            raise ValueError("frame type must be 'snapshot' or 'delta'")
        data = obj.get("data")
        if not isinstance(data, dict):
            raise ValueError(f"frame data is {'missing' if 'data' not in obj else 'not an object'}")
        u = _frame_id(data, "u")
        if "seq" in data:
            _frame_id(data, "seq")
        for name in ("b", "a"):
            if name not in data:
                raise ValueError(f"frame {name} is missing")
        b, a = self._stage_both(data["b"], data["a"], ("b", "a"))
        return self._message(kind == "snapshot", u, b, a)
