"""The venue's control API under ``/_venue/``, for tests and operators (loopback like the rest).

- ``GET  /_venue/state``: counters, fault plan, accounts (balances, never secrets), venue time,
  open WebSocket connections.
- ``POST /_venue/faults``: a JSON object merged into ``ctx.faults`` (names and types validated; 400
  with the offending name otherwise). ``ws_drop`` drops every open WebSocket connection at once.
- ``POST /_venue/reset-faults``: every fault back to its default.
- ``POST /_venue/accounts``: ``{"key"?: str, "secret"?: str, "usdt": "1000"}`` creates an account; a
  generated secret is returned once in the reply (a given one is never echoed).
- ``POST /_venue/advance``: ``{"ms": N, "steps": K?}`` moves the market clock forward by N ms now,
  in K equal steps (a burst mode for throughput runs and for tests that need market time to pass).

Replies are JSON; errors are ``{"error": "<message>"}`` with HTTP 400.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import orjson
from aiohttp import web

from engine.venue import faults
from engine.venue.context import VenueContext
from engine.venue.model import FaultPlan

__all__ = ["ACCOUNTS_KEY", "SHIFT_CLOCK_KEY", "setup"]

log = logging.getLogger("engine.venue.control")

#: API keys of the accounts the venue created (the state report lists them)
ACCOUNTS_KEY = web.AppKey("venue_accounts", list[str])
#: moves the venue's market clock forward by N ms (set by the server that owns the clock)
SHIFT_CLOCK_KEY: web.AppKey[Callable[[int], None]] = web.AppKey("venue_shift_clock")

_MAX_ADVANCE_MS = 7 * 24 * 3600 * 1000
_MAX_STEPS = 1_000_000


def _error(message: str, status: int = 400) -> web.Response:
    return web.Response(body=orjson.dumps({"error": message}), status=status, content_type="application/json")


def _ok(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _json_object(request: web.Request) -> dict[str, object] | web.Response:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _error(f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error("body must be a JSON object")
    return body


def setup(app: web.Application, ctx: VenueContext) -> None:
    """Register the control routes on ``app``."""
    if ACCOUNTS_KEY not in app:
        app[ACCOUNTS_KEY] = []

    async def state(request: web.Request) -> web.Response:
        core = ctx.core
        accounts = []
        for key in app[ACCOUNTS_KEY]:
            st = core.account_state(key)
            accounts.append(
                {
                    "key": key,
                    "deposits": str(st.deposits),
                    "wallet_balance": str(st.wallet_balance),
                    "available_balance": str(st.available_balance),
                    "realized_pnl": str(st.realized_pnl),
                    "fees_paid": str(st.fees_paid),
                    "funding": str(st.funding),
                    "hedge_mode": st.hedge_mode,
                }
            )
        return _ok(
            {
                "time_ms": ctx.now_ms(),
                "core_time_ms": core.now_ms(),
                "counters": dict(sorted(ctx.counters.items())),
                "faults": faults.fault_plan_json(ctx.faults),
                "accounts": accounts,
                "ws_connections": len(faults.ws_registry(ctx)),
                "symbols": sorted(core.instruments),
            }
        )

    async def set_faults(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        try:
            applied = faults.apply_fault_update(ctx.faults, body)
        except faults.FaultUpdateError as exc:
            return _error(str(exc))
        dropped = 0
        while ctx.faults.ws_drop > 0:
            ctx.faults.ws_drop -= 1
            ctx.count("faults.ws_drop")
            dropped += await faults.ws_registry(ctx).drop_all()
        log.info("venue_faults_set names=%s", ",".join(sorted(applied)))
        return _ok(
            {"applied": applied, "dropped_connections": dropped, "faults": faults.fault_plan_json(ctx.faults)}
        )

    async def reset_faults(request: web.Request) -> web.Response:
        fresh = FaultPlan()
        for name, value in faults.fault_plan_json(fresh).items():
            setattr(ctx.faults, name, value)
        log.info("venue_faults_reset")
        return _ok({"faults": faults.fault_plan_json(ctx.faults)})

    async def create_account(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        unknown = set(body) - {"key", "secret", "usdt"}
        if unknown:
            return _error(f"unknown field {sorted(unknown)[0]!r}; fields: key, secret, usdt")
        key = body.get("key", secrets.token_hex(16))
        given_secret = "secret" in body
        secret = body.get("secret", secrets.token_hex(32))
        usdt_raw = body.get("usdt", "0")
        if not isinstance(key, str) or not key or len(key) > 128 or not key.isprintable():
            return _error("key must be a non-empty printable string of at most 128 characters")
        if not isinstance(secret, str) or not secret or len(secret) > 256:
            return _error("secret must be a non-empty string of at most 256 characters")
        if not isinstance(usdt_raw, str | int) or isinstance(usdt_raw, bool):
            return _error("usdt must be a decimal string or an integer (never a float)")
        try:
            usdt = Decimal(str(usdt_raw))
        except InvalidOperation:
            return _error(f"usdt is not a decimal number: {usdt_raw!r}")
        if not usdt.is_finite() or usdt < 0:
            return _error("usdt must be a finite number >= 0")
        existing = ctx.core.secret_for(key)
        if existing is not None:
            return _error(f"account {key!r} already exists")
        ctx.core.add_account(api_key=key, api_secret=secret, deposit=usdt)
        app[ACCOUNTS_KEY].append(key)
        log.info("venue_account_created key=%s", key)
        reply: dict[str, object] = {"key": key, "usdt": str(usdt)}
        if not given_secret:
            reply["secret"] = secret  # generated here: the caller's only chance to learn it
        return _ok(reply)

    async def advance(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        ms = body.get("ms")
        steps = body.get("steps", 1)
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= _MAX_ADVANCE_MS:
            return _error(f"ms must be an integer within 0..{_MAX_ADVANCE_MS}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= _MAX_STEPS:
            return _error(f"steps must be an integer within 1..{_MAX_STEPS}")
        shift = app.get(SHIFT_CLOCK_KEY)
        core = ctx.core
        done = 0
        base, extra = divmod(ms, steps)
        for i in range(steps):
            part = base + (1 if i < extra else 0)
            if shift is not None:
                shift(part)
                core.advance(core.now_ms())
            else:
                done += part
                core.advance(core.now_ms() + done)
        return _ok({"time_ms": ctx.now_ms(), "core_time_ms": core.now_ms(), "steps": steps})

    app.router.add_get("/_venue/state", state)
    app.router.add_post("/_venue/faults", set_faults)
    app.router.add_post("/_venue/reset-faults", reset_faults)
    app.router.add_post("/_venue/accounts", create_account)
    app.router.add_post("/_venue/advance", advance)
