"""The local exchange: a seeded market generator, matching, accounts, and the Binance and Bybit wire
front-ends. :mod:`engine.venue.generator` is pure (no I/O); the front-ends wrap it."""

from __future__ import annotations

__all__: list[str] = []
