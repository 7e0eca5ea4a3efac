"""Engine client order ids."""

from __future__ import annotations

import pytest

from engine.adapters.common.ids import ClientIdGenerator, is_valid_client_id


def test_next_when_many_generated_then_unique_valid_and_sorted_by_time() -> None:
    gen = ClientIdGenerator("strat_1")
    ids = [gen.next(now_ms=1_700_000_000_000 + i // 100) for i in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(is_valid_client_id(i) and len(i) <= 36 and ":" not in i and "/" not in i for i in ids)
    times = [i[len("strat_1") : len("strat_1") + 9] for i in ids]
    assert times == sorted(times)


def test_prefix_when_invalid_or_too_long_then_refused() -> None:
    with pytest.raises(ValueError):
        ClientIdGenerator("a:b")
    with pytest.raises(ValueError):
        ClientIdGenerator("x" * 20)


def test_two_generators_when_same_millisecond_then_still_distinct() -> None:
    a, b = ClientIdGenerator(), ClientIdGenerator()
    assert {a.next(now_ms=5) for _ in range(50)}.isdisjoint({b.next(now_ms=5) for _ in range(50)})
