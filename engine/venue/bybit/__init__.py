"""The Bybit v5 (category ``linear``) front-end of the local venue.

``setup(app, ctx)`` mounts the REST routes under ``/v5/`` and the streams at ``/v5/public/linear``
and ``/v5/private`` on the venue's aiohttp application, all backed by ``ctx.core``:

- :mod:`engine.venue.bybit.auth`: HMAC signatures of REST requests and of the private stream's auth;
- :mod:`engine.venue.bybit.wire`: exact decimal formatting and the payload shapes;
- :mod:`engine.venue.bybit.errors`: the core's rejections as Bybit retCodes;
- :mod:`engine.venue.bybit.bookwindow`: the ``orderbook.{1,50,200,1000}`` windows;
- :mod:`engine.venue.bybit.streams`: the core listener and stream fan-out (shared with REST);
- :mod:`engine.venue.bybit.rest`: the REST handlers.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from engine.venue.bybit.rest import BybitRest
from engine.venue.bybit.streams import QUEUE_LIMIT, BybitHub
from engine.venue.context import VenueContext
from engine.venue.ratelimit import BybitIpLimits

__all__ = ["BYBIT_HUB_KEY", "BYBIT_REST_KEY", "setup"]

BYBIT_HUB_KEY: web.AppKey[BybitHub] = web.AppKey("bybit_hub", BybitHub)
BYBIT_REST_KEY: web.AppKey[BybitRest] = web.AppKey("bybit_rest", BybitRest)


def setup(
    app: web.Application,
    ctx: VenueContext,
    *,
    rate_limits: Mapping[str, int] | None = None,
    ip_limits: BybitIpLimits | None = None,
    queue_limit: int = QUEUE_LIMIT,
) -> None:
    """Mount the Bybit front-end on ``app``. ``rate_limits`` overrides entries of the per-UID,
    per-endpoint requests per second (``engine.venue.bybit.rest.ENDPOINT_LIMITS``; the endpoints it
    does not name keep their defaults); ``ip_limits`` is the per-IP request window and ban (HTTP 403;
    600 requests in 5 s and a 10-minute ban by default), checked by a middleware ahead of every handler
    so that it counts every ``/v5/...`` REST request, unknown paths included; ``queue_limit`` is how many
    messages a stream consumer may fall behind before it is disconnected."""
    hub = BybitHub(ctx, queue_limit=queue_limit)
    rest = BybitRest(ctx, hub, limits=rate_limits, ip_limits=ip_limits)
    rest.register(app)

    @web.middleware
    async def _ip_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = rest.check_ip(request)
        return refused if refused is not None else await handler(request)

    app.middlewares.append(_ip_limit)
    app.router.add_get("/v5/public/linear", hub.handle_public)
    app.router.add_get("/v5/private", hub.handle_private)
    app[BYBIT_HUB_KEY] = hub
    app[BYBIT_REST_KEY] = rest

    async def _shutdown(_app: web.Application) -> None:
        await hub.close_all()

    async def _cleanup(_app: web.Application) -> None:
        hub.close()

    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
