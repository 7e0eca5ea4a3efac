"""Applying the venue's :class:`FaultPlan` consistently in every front-end.

Counters in ``ctx.faults`` are consumed as the faults fire (``take_*`` return whether this request or
message is the one to fail). WebSocket connections of every front-end register a close callback here
so that ``ws_drop`` can close them all at once, whichever venue they speak.

``validate_fault_update`` checks a JSON object of fault changes (from the control API or the venue
config) against the plan's fields and types before anything is merged.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from engine.venue.context import VenueContext
from engine.venue.model import FaultPlan

__all__ = [
    "FaultUpdateError",
    "HttpFault",
    "WsRegistry",
    "apply_fault_update",
    "fault_plan_json",
    "take_http_5xx_after_apply",
    "take_http_fault",
    "take_ws_garbage",
    "take_ws_reorder",
    "take_ws_skip",
    "validate_fault_update",
    "ws_delay_s",
    "ws_registry",
    "ws_stalled",
]

HttpFault = Literal["5xx", "timeout"]


def take_http_fault(ctx: VenueContext) -> HttpFault | None:
    """Whether this REST request fails before it is applied: "5xx", "timeout" or None."""
    faults = ctx.faults
    if faults.http_5xx > 0:
        faults.http_5xx -= 1
        ctx.count("faults.http_5xx")
        return "5xx"
    if faults.http_timeout > 0:
        faults.http_timeout -= 1
        ctx.count("faults.http_timeout")
        return "timeout"
    return None


def take_http_5xx_after_apply(ctx: VenueContext) -> bool:
    """Whether this order placement, already applied, answers 503 (outcome unknown to the client)."""
    if ctx.faults.http_5xx_after_apply > 0:
        ctx.faults.http_5xx_after_apply -= 1
        ctx.count("faults.http_5xx_after_apply")
        return True
    return False


def take_ws_skip(ctx: VenueContext) -> bool:
    """Whether this depth message is skipped (the next one's previous-id no longer chains)."""
    if ctx.faults.ws_skip_seq > 0:
        ctx.faults.ws_skip_seq -= 1
        ctx.count("faults.ws_skip_seq")
        return True
    return False


def take_ws_reorder(ctx: VenueContext) -> bool:
    """Whether this depth message is held back and sent after the next one (a swapped pair)."""
    if ctx.faults.ws_reorder > 0:
        ctx.faults.ws_reorder -= 1
        ctx.count("faults.ws_reorder")
        return True
    return False


def take_ws_garbage(ctx: VenueContext) -> bool:
    """Whether this public message goes out malformed (truncated JSON)."""
    if ctx.faults.ws_garbage > 0:
        ctx.faults.ws_garbage -= 1
        ctx.count("faults.ws_garbage")
        return True
    return False


def ws_stalled(ctx: VenueContext) -> bool:
    return ctx.faults.ws_stall


def ws_delay_s(ctx: VenueContext) -> float:
    return ctx.faults.ws_delay_ms / 1000.0 if ctx.faults.ws_delay_ms > 0 else 0.0


# ---- WebSocket registry (for ws_drop) ---------------------------------------------------------------

Closer = Callable[[], Awaitable[object]]


class WsRegistry:
    """Open WebSocket connections of every front-end, each as an async close callback."""

    def __init__(self) -> None:
        self._closers: dict[int, Closer] = {}
        self._next = 0

    def register(self, closer: Closer) -> int:
        self._next += 1
        self._closers[self._next] = closer
        return self._next

    def unregister(self, handle: int) -> None:
        self._closers.pop(handle, None)

    def __len__(self) -> int:
        return len(self._closers)

    async def drop_all(self) -> int:
        """Close every registered connection; returns how many were closed."""
        closers = list(self._closers.values())
        self._closers.clear()
        for close in closers:
            await close()
        return len(closers)


_REGISTRIES: dict[int, tuple[weakref.ref[VenueContext], WsRegistry]] = {}


def ws_registry(ctx: VenueContext) -> WsRegistry:
    """The connection registry of this venue context (one per running venue)."""
    entry = _REGISTRIES.get(id(ctx))
    if entry is not None and entry[0]() is ctx:
        return entry[1]
    registry = WsRegistry()
    key = id(ctx)
    _REGISTRIES[key] = (weakref.ref(ctx, lambda _ref: _REGISTRIES.pop(key, None)), registry)
    return registry


# ---- fault plan updates ---------------------------------------------------------------------------


class FaultUpdateError(ValueError):
    """A fault update names an unknown fault or gives a value of the wrong type or range."""


_FIELD_TYPES: dict[str, type] = {
    "http_5xx": int,
    "http_timeout": int,
    "timeout_s": float,
    "http_5xx_after_apply": int,
    "clock_offset_ms": int,
    "ws_drop": int,
    "ws_skip_seq": int,
    "ws_delay_ms": int,
    "ws_reorder": int,
    "ws_stall": bool,
    "ws_garbage": int,
    "expire_listen_keys": bool,
    "extra": dict,
}
_SIGNED = frozenset({"clock_offset_ms"})


def validate_fault_update(update: Mapping[str, object]) -> dict[str, object]:
    """Check names, types and ranges; return the normalised values. Raises :class:`FaultUpdateError`."""
    names = {f.name for f in dataclasses.fields(FaultPlan)}
    assert names == set(_FIELD_TYPES), "FaultPlan fields changed: update faults._FIELD_TYPES"
    out: dict[str, object] = {}
    for name, value in update.items():
        expected = _FIELD_TYPES.get(name)
        if expected is None:
            raise FaultUpdateError(f"unknown fault {name!r}; known: {', '.join(sorted(_FIELD_TYPES))}")
        if expected is bool:
            if not isinstance(value, bool):
                raise FaultUpdateError(f"fault {name!r} must be true or false, got {value!r}")
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultUpdateError(f"fault {name!r} must be an integer, got {value!r}")
            if name not in _SIGNED and value < 0:
                raise FaultUpdateError(f"fault {name!r} must be >= 0, got {value}")
            if abs(value) > 10**12:
                raise FaultUpdateError(f"fault {name!r} is out of range: {value}")
        elif expected is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultUpdateError(f"fault {name!r} must be a number, got {value!r}")
            if not 0 <= value <= 3600:
                raise FaultUpdateError(f"fault {name!r} must be within 0..3600 seconds, got {value}")
            value = float(value)
        elif expected is dict and not isinstance(value, dict):
            raise FaultUpdateError(f"fault {name!r} must be an object, got {value!r}")
        out[name] = value
    return out


def apply_fault_update(plan: FaultPlan, update: Mapping[str, object]) -> dict[str, object]:
    """Validate then merge ``update`` into ``plan`` (all or nothing); returns the applied values."""
    values = validate_fault_update(update)
    for name, value in values.items():
        if name == "extra":
            assert isinstance(value, dict)
            plan.extra.update(value)
        else:
            setattr(plan, name, value)
    return values


def fault_plan_json(plan: FaultPlan) -> dict[str, object]:
    return dataclasses.asdict(plan)
