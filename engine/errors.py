"""The engine's one exception hierarchy.

Exceptions are for faults. A risk denial is a value with a reason, never an exception.

    EngineError
    ├── ConfigError            a config file or value is invalid (names the file, key and reason)
    │   └── RiskLimitError     a risk limit (or saved risk state) value is invalid; also a ValueError
    ├── JournalError           the journal cannot record (a write failed, it is closed, or not started)
    │   └── JournalCorrupt     the journal file is corrupt, truncated or missing: start-up stops
    ├── InvalidTransition      an engine state change the state machine does not allow (from, to)
    ├── KernelUnavailable      the compiled kernels are not built and ENGINE_PUREPYTHON is not set
    ├── MarketDataError        market data that cannot be applied
    │   ├── MalformedMessage   an exchange message that cannot be parsed (counted and dropped)
    │   └── RecordingCorrupt   a recording file is truncated or corrupt (path, byte offset, reason)
    └── VenueError             a venue refused or failed a request (venue, code, message)
        ├── RateLimited        429 / Bybit 10006: back off until ``retry_after_s``
        │   └── Banned         418 / Bybit 403: no requests until ``until_ms``
        ├── AuthFailed         bad key, signature or permission (-1022, -2014, -2015 / 10003, 10004, 10005)
        ├── ClockSkew          timestamp outside the receive window (-1021 / 10002)
        ├── VenueUnavailable   5xx, time-out, disconnect: the outcome of a write is UNKNOWN
        └── OrderRejected      the venue refused an order or cancel; ``reason`` is one of REJECT_REASONS
            └── InsufficientMargin

Kernels in ``ext/`` import nothing of ``engine`` (see DESIGN.md), so they signal bad input with the
built-in ``ValueError`` (naming the field and the value); the adapter edge turns that into
``MalformedMessage`` when it counts and drops the message.
"""

from __future__ import annotations

__all__ = [
    "REJECT_REASONS",
    "AuthFailed",
    "Banned",
    "ClockSkew",
    "ConfigError",
    "EngineError",
    "InsufficientMargin",
    "InvalidTransition",
    "JournalCorrupt",
    "JournalError",
    "KernelUnavailable",
    "MalformedMessage",
    "MarketDataError",
    "OrderRejected",
    "RateLimited",
    "RecordingCorrupt",
    "RiskLimitError",
    "VenueError",
    "VenueUnavailable",
]

#: Venue-agnostic reasons an order request is refused (``OrderRejected.reason``).
REJECT_REASONS = frozenset(
    {
        "precision",  # price off tick, qty off step, too many decimals
        "min_notional",
        "qty_out_of_range",
        "price_out_of_range",
        "reduce_only",  # would increase the position, or nothing to reduce
        "post_only",  # post-only would take liquidity
        "fok_unfilled",
        "would_trigger_immediately",
        "insufficient_margin",
        "unknown_order",  # cancel/query of an order the venue does not know (or already closed)
        "duplicate_client_id",
        "position_side",  # positionSide/positionIdx does not match the account's position mode
        "invalid",  # any other parameter error
        "other",
    }
)


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """A config file or value is invalid."""

    def __init__(self, *, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(f"{path}: {key}: {reason}")


class RiskLimitError(ConfigError, ValueError):
    """A risk limit is invalid: from the config's ``[risk]`` table, ``limits set`` at run time, or a saved
    risk state being restored. A fault, never a denial (denials are values)."""

    def __init__(self, *, key: str, reason: str, path: str = "[risk]") -> None:
        super().__init__(path=path, key=key, reason=reason)


class JournalError(EngineError):
    """The journal cannot record: a write failed (disk full, read-only, I/O error), or it is closed."""


class JournalCorrupt(JournalError):
    """The journal file is corrupt, truncated, not a journal, or missing while backups of it exist.
    Start-up stops; the file is never silently recreated. ``backup`` is the newest backup, if any."""

    def __init__(self, *, path: str, reason: str, backup: str | None) -> None:
        self.path = path
        self.reason = reason
        self.backup = backup
        hint = (
            f"; the newest backup is {backup} (inspect it, then copy it over the journal to restore)"
            if backup
            else "; no backup exists"
        )
        super().__init__(f"journal {path} is unusable: {reason}{hint}")


class InvalidTransition(EngineError):
    """The engine's state machine refused a transition (DESIGN.md, "Engine states"). The states are the
    ``EngineState`` values as strings (this module imports nothing of the engine)."""

    def __init__(self, *, from_state: str, to_state: str, cause: str = "") -> None:
        self.from_state = str(from_state)
        self.to_state = str(to_state)
        self.cause = cause
        msg = f"illegal transition {self.from_state} -> {self.to_state}"
        super().__init__(f"{msg} ({cause})" if cause else msg)


class KernelUnavailable(EngineError):
    """The compiled kernels cannot be imported."""


class MarketDataError(EngineError):
    """Market data that cannot be applied to local state."""


class MalformedMessage(MarketDataError):
    """An exchange message that cannot be parsed; it is counted and dropped."""


class RecordingCorrupt(MarketDataError):
    """A market-data recording file is truncated or corrupt (names the file, byte offset and reason)."""

    def __init__(self, *, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: corrupt recording at byte {offset}: {reason}")


class VenueError(EngineError):
    """A venue refused or failed a request. ``code`` is the venue's own code (e.g. -2019, 110007)."""

    def __init__(self, *, venue: str, code: int | None, message: str) -> None:
        self.venue = venue
        self.code = code
        self.message = message
        super().__init__(f"{venue}: {message}" + (f" (code {code})" if code is not None else ""))


class RateLimited(VenueError):
    def __init__(self, *, venue: str, code: int | None, message: str, retry_after_s: float) -> None:
        super().__init__(venue=venue, code=code, message=message)
        self.retry_after_s = retry_after_s


class Banned(RateLimited):
    def __init__(
        self, *, venue: str, code: int | None, message: str, until_ms: int, retry_after_s: float
    ) -> None:
        super().__init__(venue=venue, code=code, message=message, retry_after_s=retry_after_s)
        self.until_ms = until_ms


class AuthFailed(VenueError):
    pass


class ClockSkew(VenueError):
    pass


class VenueUnavailable(VenueError):
    """5xx, time-out or disconnect. For a write, the outcome is unknown: reconcile before retrying."""


class OrderRejected(VenueError):
    def __init__(self, *, venue: str, code: int | None, message: str, reason: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(venue=venue, code=code, message=message)
        self.reason = reason


class InsufficientMargin(OrderRejected):
    def __init__(self, *, venue: str, code: int | None, message: str) -> None:
        super().__init__(venue=venue, code=code, message=message, reason="insufficient_margin")
