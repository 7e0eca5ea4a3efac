"""Tests of the admin socket, ``engine ctl``, metrics, logs and alerts.

:class:`FakeControl` is a small deterministic :class:`~engine.control.EngineControl`: it honours the
state table of DESIGN.md (running / paused / emergency_stopped / stopped, ``reset`` lands in paused,
illegal transitions refused with ``invalid_transition``), holds two open orders and two positions, one
book per symbol, validated limits, and publishes ``state`` events to subscribers. ``calls`` records every
call in the order it ran; ``delay_s`` makes state-changing calls slow (ordering tests); ``fail_with``
makes ``risk`` raise (internal-error tests). ``API_KEY``/``API_SECRET`` are secrets it holds and never
returns, except through ``leak_secret`` (redaction tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation

from engine.control import JSON, ControlError

__all__ = ["API_KEY", "API_SECRET", "FakeControl"]

API_KEY = "fake-api-key-7f3a9c"
API_SECRET = "fake-api-secret-d41d8cd98f00b204"

_TRANSITIONS = {
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "reset": ({"emergency_stopped"}, "paused"),
    "emergency_stop": ({"running", "paused", "emergency_stopped"}, "emergency_stopped"),
    "stop": ({"running", "paused", "emergency_stopped"}, "stopped"),
}


class FakeControl:
    """A real (deterministic, in-memory) engine control for the admin socket tests."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.state = "running"
        self.state_reason = "start"
        self.started = time.monotonic()
        self.delay_s = delay_s
        self.fail_with: BaseException | None = None
        self.leak_secret = False
        self.calls: list[str] = []
        self._subscribers: list[asyncio.Queue[JSON]] = []
        self._api_key = API_KEY
        self._api_secret = API_SECRET
        self._orders: list[JSON] = [
            {
                "client_order_id": "e-1",
                "venue": "binance",
                "symbol": "BTCUSDT",
                "side": "buy",
                "type": "limit",
                "price": "64000.10",
                "qty": "0.010",
                "filled_qty": "0.000",
                "status": "new",
            },
            {
                "client_order_id": "e-2",
                "venue": "binance",
                "symbol": "ETHUSDT",
                "side": "sell",
                "type": "limit",
                "price": "3500.00",
                "qty": "0.50",
                "filled_qty": "0.10",
                "status": "partially_filled",
            },
        ]
        self._positions: list[JSON] = [
            {
                "venue": "binance",
                "symbol": "BTCUSDT",
                "side": "long",
                "qty": "0.020",
                "entry_price": "63000.00",
                "unrealized_pnl": "20.00",
            },
            {
                "venue": "binance",
                "symbol": "ETHUSDT",
                "side": "short",
                "qty": "-0.40",
                "entry_price": "3600.00",
                "unrealized_pnl": "40.00",
            },
        ]
        self._limits: dict[str, str] = {"max_order_notional": "5000", "daily_loss_limit": "500"}

    # -- helpers ------------------------------------------------------------------------------------

    def _publish(self, event: JSON) -> None:
        event = {**event, "ts_ms": int(time.time() * 1000)}
        for q in self._subscribers:
            q.put_nowait(event)

    async def _transition(self, name: str, reason: str) -> JSON:
        self.calls.append(name)
        allowed, target = _TRANSITIONS[name]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.state not in allowed:
            raise ControlError("invalid_transition", f"cannot {name} when {self.state}")
        old, self.state, self.state_reason = self.state, target, reason
        self._publish({"event": "state", "from": old, "to": target, "reason": reason})
        return {"state": self.state, "previous": old}

    # -- EngineControl ------------------------------------------------------------------------------

    async def status(self) -> JSON:
        self.calls.append("status")
        out: JSON = {
            "state": self.state,
            "state_reason": self.state_reason,
            "mode": "paper",
            "uptime_s": round(time.monotonic() - self.started, 3),
            "venues": {
                "binance": {"connected": True, "books": {"BTCUSDT": "live", "ETHUSDT": "resyncing"}},
            },
            "equity": "10060.00",
            "daily_pnl": "60.00",
            "positions": len(self._positions),
            "open_orders": len(self._orders),
            "risk": {"exposure": "2700.00"},
        }
        if self.leak_secret:
            out["debug"] = f"key={self._api_key} secret={self._api_secret}"
        return out

    async def pause(self, *, reason: str = "operator") -> JSON:
        return await self._transition("pause", reason)

    async def resume(self, *, reason: str = "operator") -> JSON:
        return await self._transition("resume", reason)

    async def emergency_stop(self, *, flatten: bool = False, reason: str = "operator") -> JSON:
        result = await self._transition("emergency_stop", reason)
        canceled = len(self._orders)
        self._orders.clear()
        flattened = len(self._positions) if flatten else 0
        if flatten:
            self._positions.clear()
        return {**result, "canceled": canceled, "flattened": flattened}

    async def reset(self, *, reason: str = "operator") -> JSON:
        return await self._transition("reset", reason)

    async def stop(self, *, reason: str = "operator") -> JSON:
        return await self._transition("stop", reason)

    async def positions(self) -> list[JSON]:
        self.calls.append("positions")
        return [dict(p) for p in self._positions]

    async def orders(self) -> list[JSON]:
        self.calls.append("orders")
        return [dict(o) for o in self._orders]

    async def book(self, symbol: str, *, depth: int = 10, venue: str | None = None) -> JSON:
        self.calls.append(f"book {symbol} {depth}")
        mids = {"BTCUSDT": Decimal("64000.0"), "ETHUSDT": Decimal("3500.00")}
        if symbol not in mids or venue not in (None, "binance"):
            raise ControlError("unknown_symbol", f"no book for {symbol} on {venue or 'any venue'}")
        mid = mids[symbol]
        tick = Decimal("0.1") if symbol == "BTCUSDT" else Decimal("0.01")
        n = min(depth, 20)
        bids = [[str(mid - tick * (i + 1)), str(Decimal("0.5") + i)] for i in range(n)]
        asks = [[str(mid + tick * (i + 1)), str(Decimal("0.4") + i)] for i in range(n)]
        return {"venue": "binance", "symbol": symbol, "health": "live", "bids": bids, "asks": asks}

    async def risk(self) -> JSON:
        self.calls.append("risk")
        if self.fail_with is not None:
            raise self.fail_with
        return {"exposure": "2700.00", "daily_pnl": "60.00", "daily_loss_limit": "500", "trips": []}

    async def limits(self) -> JSON:
        self.calls.append("limits")
        return dict(self._limits)

    async def set_limit(self, key: str, value: str) -> JSON:
        self.calls.append(f"set_limit {key}")
        if key not in self._limits:
            raise ControlError("unknown_limit", f"no limit named {key!r}")
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            raise ControlError("bad_argument", f"{key} must be a decimal string, not {value!r}") from None
        if not parsed.is_finite() or parsed <= 0:
            raise ControlError("bad_argument", f"{key} must be positive")
        self._limits[key] = value
        return {"key": key, "value": value}

    async def cancel_all(self, symbol: str | None = None) -> JSON:
        self.calls.append(f"cancel_all {symbol}")
        keep = [o for o in self._orders if symbol is not None and o["symbol"] != symbol]
        canceled = len(self._orders) - len(keep)
        self._orders = keep
        return {"canceled": canceled}

    async def metrics(self) -> JSON:
        self.calls.append("metrics")
        return {"events": {"depth": 1200, "trade": 300}, "book_resyncs": 1, "ws_reconnects": 0}

    async def subscribe(self) -> AsyncIterator[JSON]:
        q: asyncio.Queue[JSON] = asyncio.Queue(maxsize=1000)
        self._subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.remove(q)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: JSON) -> None:
        self._publish(event)
