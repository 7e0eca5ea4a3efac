"""A futures trading engine for Binance USD-M and Bybit v5 linear perpetuals."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
