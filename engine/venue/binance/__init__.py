"""The Binance USD-M front-end of the local venue: REST under ``/fapi/`` (plus the spot ``/api/v3``
ping and time), market streams under ``/public``, ``/market`` and the classic ``/ws`` / ``/stream``,
and the listenKey user stream under ``/private``.

``setup(app, ctx)`` registers everything on the venue's one aiohttp application. Optional settings
come from the application: ``app[LIMITS_KEY]`` (a :class:`~engine.venue.ratelimit.BinanceLimits`),
``app[LISTEN_KEY_VALIDITY_KEY]`` (ms) and ``app[QUEUE_LIMIT_KEY]`` (per-connection outgoing queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from engine.venue.binance.rest import BinanceRest
from engine.venue.binance.streams import LISTEN_KEY_VALIDITY_MS, BinanceStreams, ListenKeyStore
from engine.venue.context import VenueContext
from engine.venue.ratelimit import BinanceLimiter, BinanceLimits

__all__ = [
    "FRONT_END_KEY",
    "LIMITS_KEY",
    "LISTEN_KEY_VALIDITY_KEY",
    "QUEUE_LIMIT_KEY",
    "BinanceFrontEnd",
    "setup",
]

log = logging.getLogger("engine.venue.binance")

LIMITS_KEY = web.AppKey("binance_limits", BinanceLimits)
LISTEN_KEY_VALIDITY_KEY = web.AppKey("binance_listen_key_validity_ms", int)
QUEUE_LIMIT_KEY = web.AppKey("binance_ws_queue_limit", int)


class BinanceFrontEnd:
    """The REST dispatcher, the stream hub and their shared listenKey store."""

    def __init__(
        self,
        ctx: VenueContext,
        *,
        limits: BinanceLimits | None = None,
        listen_key_validity_ms: int = LISTEN_KEY_VALIDITY_MS,
        queue_limit: int = 10_000,
    ) -> None:
        self.ctx = ctx
        self.limiter = BinanceLimiter(limits)
        self.listen_keys = ListenKeyStore(validity_ms=listen_key_validity_ms)
        self.rest = BinanceRest(ctx, limiter=self.limiter, listen_keys=self.listen_keys)
        self.streams = BinanceStreams(ctx, self.listen_keys, queue_limit=queue_limit)


FRONT_END_KEY = web.AppKey("binance_front_end", BinanceFrontEnd)


def setup(app: web.Application, ctx: VenueContext) -> None:
    """Register the Binance routes, the core listener and the listenKey timer on ``app``."""
    front = BinanceFrontEnd(
        ctx,
        limits=app.get(LIMITS_KEY),
        listen_key_validity_ms=app.get(LISTEN_KEY_VALIDITY_KEY, LISTEN_KEY_VALIDITY_MS),
        queue_limit=app.get(QUEUE_LIMIT_KEY, 10_000),
    )
    app[FRONT_END_KEY] = front
    streams = front.streams
    router = app.router
    router.add_route("*", "/fapi/{tail:.*}", front.rest.dispatch)
    router.add_route("*", "/api/{tail:.*}", front.rest.dispatch)
    router.add_get("/{route:public|market}/{form:ws}/{names:.+}", streams.handle_stream)
    router.add_get("/{route:public|market}/{form:ws}", streams.handle_stream)
    router.add_get("/{route:public|market}/{form:stream}", streams.handle_stream)
    router.add_get("/{form:ws}/{names:.+}", streams.handle_stream)
    router.add_get("/{form:ws}", streams.handle_stream)
    router.add_get("/{form:stream}", streams.handle_stream)
    router.add_get("/private/ws/{key}", streams.handle_private)
    router.add_get("/private/ws", streams.handle_private)
    ctx.core.add_listener(streams.on_event)

    async def listen_key_timer(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(0.05)
                try:
                    streams.tick()
                except Exception:  # counted and logged; the timer keeps running
                    ctx.count("binance.timer_errors")
                    log.exception("binance_listen_key_timer_error")

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ctx.core.remove_listener(streams.on_event)

    app.cleanup_ctx.append(listen_key_timer)
