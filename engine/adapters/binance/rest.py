"""Binance USD-M REST through python-binance's ``AsyncClient``, behind the limiter and the clock.

``BinanceRest.call(endpoint, fn, **params)`` is the one way a request goes out: it reserves the
endpoint's weight from the venue's :class:`RateLimiter`, runs the python-binance coroutine under the
request time-out, lets the limiter read the response's usage headers (every response, error or not,
through a ``_handle_response`` hook, so concurrent calls never mix their headers), and converts every
library or transport error into ``engine.errors``: ``BinanceAPIException`` by HTTP status and venue code
(protocol notes 1.9), aiohttp errors and time-outs into ``VenueUnavailable``. Signed requests that get
``ClockSkew`` are retried once after a clock resync (:meth:`VenueClock.retry_on_skew`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from engine.adapters.base import AdapterSettings
from engine.adapters.binance.constants import (
    AUTH_CODES,
    CLOCK_CODES,
    REJECT_CODES,
    UNAVAILABLE_CODES,
)
from engine.adapters.common.clock import VenueClock
from engine.adapters.common.ratelimit import RateLimiter
from engine.errors import (
    AuthFailed,
    Banned,
    ClockSkew,
    InsufficientMargin,
    OrderRejected,
    RateLimited,
    VenueError,
    VenueUnavailable,
)

__all__ = ["BinanceRest", "error_from_api"]

log = logging.getLogger("engine.adapters.binance.rest")

VENUE = "binance"
_BANNED_UNTIL = re.compile(r"banned until (\d{10,16})")


class _HookedAsyncClient(AsyncClient):  # type: ignore[misc]
    """python-binance's AsyncClient, telling the adapter every response's status and headers."""

    engine_on_response: Callable[[str, int, Mapping[str, str]], None] | None = None

    async def _handle_response(self, response: aiohttp.ClientResponse) -> Any:
        hook = self.engine_on_response
        if hook is not None:
            hook(f"{response.method} {response.url.path}", response.status, response.headers)
        return await super()._handle_response(response)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def error_from_api(
    status: int, code: int | None, message: str, headers: Mapping[str, str] | None = None
) -> VenueError:
    """A venue error from an HTTP status and Binance's ``{code, msg}`` body."""
    retry_after = _retry_after(headers)
    if status == 418:
        match = _BANNED_UNTIL.search(message or "")
        until_ms = int(match.group(1)) if match else 0
        return Banned(
            venue=VENUE, code=code, message=message, until_ms=until_ms, retry_after_s=retry_after or 0.0
        )
    if status == 429 or code in (-1003, -1015):
        return RateLimited(venue=VENUE, code=code, message=message, retry_after_s=retry_after or 0.0)
    if status >= 500 or status == 408 or code in UNAVAILABLE_CODES:
        return VenueUnavailable(venue=VENUE, code=code, message=message or f"HTTP {status}")
    if code in CLOCK_CODES:
        return ClockSkew(venue=VENUE, code=code, message=message)
    if status == 401 or code in AUTH_CODES:
        return AuthFailed(venue=VENUE, code=code, message=message)
    reason = REJECT_CODES.get(code) if code is not None else None
    if reason == "insufficient_margin":
        return InsufficientMargin(venue=VENUE, code=code, message=message)
    return OrderRejected(venue=VENUE, code=code, message=message, reason=reason or "other")


class BinanceRest:
    """The REST session of one Binance account (see the module docstring)."""

    def __init__(self, settings: AdapterSettings, limiter: RateLimiter) -> None:
        self.settings = settings
        self.limiter = limiter
        self.clock: VenueClock | None = None
        self._client: _HookedAsyncClient | None = None
        self.requests = 0
        self.errors = 0
        self.timeouts = 0

    @property
    def client(self) -> _HookedAsyncClient:
        if self._client is None:
            raise VenueUnavailable(venue=VENUE, code=None, message="REST session is not open")
        return self._client

    async def open(self) -> None:
        base = self.settings.rest_url.rstrip("/")
        cls: Any = type(
            "EngineBinanceAsyncClient",
            (_HookedAsyncClient,),
            {"API_URL": base + "/api", "FUTURES_URL": base + "/fapi"},
        )

        async def create() -> _HookedAsyncClient:
            client: _HookedAsyncClient = await cls.create(
                api_key=self.settings.api_key, api_secret=self.settings.api_secret
            )
            return client

        self._client = await self._guard("GET /api/v3/time", create)
        self._client.engine_on_response = self._on_response

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close_connection()

    def set_offset(self, offset_ms: int) -> None:
        """The clock's measured offset becomes python-binance's ``timestamp_offset``."""
        if self._client is not None:
            self._client.timestamp_offset = offset_ms

    def _on_response(self, endpoint: str, status: int, headers: Mapping[str, str]) -> None:
        self.limiter.on_response(endpoint, status, headers)

    async def server_time_ms(self) -> int:
        result = await self.call("GET /fapi/v1/time", self.client.futures_time)
        return int(result["serverTime"])

    async def call(self, endpoint: str, fn: Callable[..., Awaitable[Any]], /, **params: Any) -> Any:
        """One request (``endpoint`` is "METHOD /path", the limiter's key), with a skew retry."""

        async def once() -> Any:
            await self.limiter.acquire(endpoint)
            return await self._guard(endpoint, lambda: fn(**params))

        if self.clock is None:
            return await once()
        return await self.clock.retry_on_skew(once)

    async def _guard(self, endpoint: str, make: Callable[[], Awaitable[Any]]) -> Any:
        self.requests += 1
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await make()
        except BinanceAPIException as exc:
            self.errors += 1
            headers = dict(exc.response.headers) if getattr(exc.response, "headers", None) else {}
            error = error_from_api(int(exc.status_code), exc.code, str(exc.message or ""), headers)
            if isinstance(error, Banned):
                self.limiter.on_banned(error.until_ms or None, error.retry_after_s or None)
            elif isinstance(error, RateLimited):
                self.limiter.on_rate_limited(error.retry_after_s or None)
            log.info(
                "binance_rest_error endpoint=%s status=%d code=%s kind=%s",
                endpoint.replace(" ", "_"),
                exc.status_code,
                exc.code,
                type(error).__name__,
            )
            raise error from None
        except TimeoutError:
            self.errors += 1
            self.timeouts += 1
            log.warning("binance_rest_timeout endpoint=%s", endpoint.replace(" ", "_"))
            raise VenueUnavailable(
                venue=VENUE, code=None, message=f"{endpoint}: no answer in {self.settings.request_timeout_s}s"
            ) from None
        except (aiohttp.ClientError, BinanceRequestException, OSError) as exc:
            self.errors += 1
            log.warning(
                "binance_rest_transport_error endpoint=%s error=%r", endpoint.replace(" ", "_"), str(exc)
            )
            raise VenueUnavailable(
                venue=VENUE, code=None, message=f"{endpoint}: {type(exc).__name__}"
            ) from None
