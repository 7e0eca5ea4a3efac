"""The Bybit v5 (category ``linear``) adapter: constants, rest (pybit in a thread pool), ws (streams on
``websockets``), parsing (payloads -> engine types) and the adapter itself."""

from __future__ import annotations

from engine.adapters.bybit.adapter import BybitAdapter

__all__ = ["BybitAdapter"]
