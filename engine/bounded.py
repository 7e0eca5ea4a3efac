"""Bounded de-duplication memory for a process that runs for weeks: :class:`SeenKeys`.

The OMS (fill ids, forgotten orders) and the adapters (venue trade and execution ids) must recognise an
event they have already counted, for as long as a duplicate can plausibly arrive (a WebSocket replay, a
REST backfill after a reconnect), without holding every id forever. A :class:`SeenKeys` keeps the last
``capacity`` keys in a preallocated ring; its memory is fixed when it is made except for the lookup set,
and it stores a 64-bit fingerprint per key (the key's ``hash()``), not the key: about 80 bytes an entry
instead of about 250 for a tuple of strings in an ``OrderedDict``. A soak's RSS therefore stays flat once
the ring is full and grows by that little per event before.

Fingerprints: ``hash()`` of a ``str`` is SipHash with a per-process random key (of an ``int``, the value),
so a collision between two different ids needs about 2**32 ids in one memory; with the default capacities
(tens of thousands) the chance of a new id being mistaken for a remembered one is below 1e-9 for the
life of the process. Keys must be hashable and stable for the process's life (strings, ints, enums and
tuples of them).

Forgetting: each key is added with the event time it belongs to; ``floor_ms`` is the latest event time
among the keys pushed out of the ring. An event at or before ``floor_ms`` whose key is not remembered may
be one that was forgotten: :meth:`forgotten` says so, and callers treat it as already seen (stale), never
as new (the venue's positions, reconciled, stay the truth).
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable

__all__ = ["SeenKeys"]

_TS_MIN, _TS_MAX = -(2**63), 2**63 - 1  # the ring's event times are int64


class SeenKeys:
    """The last ``capacity`` keys seen (as fingerprints) with their event times; O(1) add and lookup."""

    __slots__ = ("_fps", "_head", "_set", "_size", "_ts", "capacity", "evicted", "floor_ms")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._fps = array("q", bytes(8 * capacity))  # ring of fingerprints, oldest at _head once full
        self._ts = array("q", bytes(8 * capacity))  # the event time (ms) of each ring slot
        self._set: set[int] = set()
        self._head = 0
        self._size = 0
        self.floor_ms = -1  # the latest event time of a forgotten key; -1: nothing forgotten yet
        self.evicted = 0

    def __contains__(self, key: Hashable) -> bool:
        return hash(key) in self._set

    def __len__(self) -> int:
        return self._size

    def add(self, key: Hashable, ts_ms: int = 0) -> bool:
        """Remember ``key`` (of event time ``ts_ms``); False when it was already remembered (nothing
        changes). A full ring forgets its oldest key and raises ``floor_ms`` to that key's time."""
        fp = hash(key)
        if fp in self._set:
            return False
        ts_ms = min(max(ts_ms, _TS_MIN), _TS_MAX)  # a nonsense time must not fail half-way through
        head = self._head
        if self._size == self.capacity:
            self._set.discard(self._fps[head])
            old_ts = self._ts[head]
            if old_ts > self.floor_ms:
                self.floor_ms = old_ts
            self.evicted += 1
        else:
            self._size += 1
        self._fps[head] = fp
        self._ts[head] = ts_ms
        self._head = head + 1 if head + 1 < self.capacity else 0
        self._set.add(fp)
        return True

    def forgotten(self, key: Hashable, ts_ms: int) -> bool:
        """``key`` (of event time ``ts_ms``) is not remembered but may have been, before it was pushed
        out: its time is at or before the latest forgotten one."""
        return ts_ms <= self.floor_ms and hash(key) not in self._set
