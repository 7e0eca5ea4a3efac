"""Binance USD-M futures adapter: constants, rest, ws, parsing, adapter (``BinanceAdapter``)."""

from __future__ import annotations

from engine.adapters.binance.adapter import BinanceAdapter

__all__ = ["BinanceAdapter"]
