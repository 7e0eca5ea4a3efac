"""SeenKeys: the bounded fingerprint memory the OMS and the adapters de-duplicate with, against an oracle
that keeps the keys themselves in an OrderedDict."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.bounded import SeenKeys
from engine.types import Venue


class _Oracle:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.d: OrderedDict[object, int] = OrderedDict()
        self.floor_ms = -1

    def add(self, key: object, ts_ms: int) -> bool:
        if key in self.d:
            return False
        self.d[key] = ts_ms
        if len(self.d) > self.capacity:
            _, old = self.d.popitem(last=False)
            self.floor_ms = max(self.floor_ms, old)
        return True


@given(
    capacity=st.integers(1, 12),
    ops=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]), st.integers(0, 50)), max_size=200
    ),
)
def test_seen_keys_when_any_sequence_then_same_membership_floor_and_answers_as_the_oracle(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    seen, oracle = SeenKeys(capacity), _Oracle(capacity)
    for key, ts in ops:
        assert seen.add((Venue.BINANCE, key), ts) == oracle.add((Venue.BINANCE, key), ts)
        assert len(seen) == len(oracle.d)
        assert seen.floor_ms == oracle.floor_ms
        for probe in "abcdefgh":
            k = (Venue.BINANCE, probe)
            assert (k in seen) == (k in oracle.d)
            assert seen.forgotten(k, ts) == (k not in oracle.d and ts <= oracle.floor_ms)


def test_seen_keys_when_ring_full_then_memory_flat_and_old_events_reported_forgotten() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        seen = SeenKeys(10_000)
        for i in range(30_000):  # full, and churned: the set's table has reached its working size
            seen.add(("BTCUSDT", str(i)), i)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30_000, 50_000):
            seen.add(("BTCUSDT", str(i)), i)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(seen) == 10_000 and seen.evicted == 40_000 and seen.floor_ms == 39_999
    assert grown < 64 * 1024, f"a full ring grew by {grown} bytes over 20,000 adds"
    assert seen.forgotten(("BTCUSDT", "5"), 5)  # pushed out long ago: may have been seen
    assert not seen.forgotten(("BTCUSDT", "new"), 50_000)  # newer than anything forgotten: new
    assert ("BTCUSDT", "49999") in seen and ("BTCUSDT", "39999") not in seen


def test_seen_keys_when_capacity_below_one_then_value_error() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SeenKeys(0)
