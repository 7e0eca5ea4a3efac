"""The engine's one exception hierarchy.

Exceptions are for faults. A risk denial is a value with a reason, never an exception.

    EngineError
    ├── ConfigError            a config file or value is invalid (names the file, key and reason)
    ├── KernelUnavailable      the compiled kernels are not built and ENGINE_PUREPYTHON is not set
    └── MarketDataError        market data that cannot be applied
        └── MalformedMessage   an exchange message that cannot be parsed (counted and dropped)

Kernels in ``ext/`` import nothing of ``engine`` (see DESIGN.md), so they signal bad input with the
built-in ``ValueError`` (naming the field and the value); the adapter edge turns that into
``MalformedMessage`` when it counts and drops the message.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EngineError",
    "KernelUnavailable",
    "MalformedMessage",
    "MarketDataError",
]


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """A config file or value is invalid."""

    def __init__(self, *, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(f"{path}: {key}: {reason}")


class KernelUnavailable(EngineError):
    """The compiled kernels cannot be imported."""


class MarketDataError(EngineError):
    """Market data that cannot be applied to local state."""


class MalformedMessage(MarketDataError):
    """An exchange message that cannot be parsed; it is counted and dropped."""
