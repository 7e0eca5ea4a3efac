"""The kernel tests run against both implementations: the compiled kernels and their pure-Python twins."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.kernels import load


@pytest.fixture(params=["compiled", "pure"], ids=["compiled", "pure"])
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    """Every public kernel name of one implementation (``engine.kernels.load``)."""
    return load(request.param)
