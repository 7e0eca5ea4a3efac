"""Bybit v5 REST through pybit's ``HTTP``, off the event loop, with the engine's errors.

pybit is blocking (``requests``; it even sleeps inside a request on 10002/10006), so every call runs in
a small dedicated thread pool (one pybit session per thread) and the loop never stalls. pybit is pointed
at ``settings.rest_url`` by setting ``.endpoint`` (protocol notes 3.1); its own retries are switched off
(``retry_codes`` empty, one attempt) so the engine's limiter and clock decide: on 10006 the limiter backs
off until ``X-Bapi-Limit-Reset-Timestamp`` and the call is retried once; on 10002 the clock resyncs and
the call is retried once (:meth:`VenueClock.retry_on_skew`). Requests are signed with the venue's time
as the clock measures it (local time + offset), not the raw local clock. The "not modified" codes
110043/110025/110026 are ``ignore_codes``: success for the engine.

Every failure becomes an ``engine.errors`` exception (:func:`error_for`); a pybit or ``requests``
exception never leaves this module. The API secret is never logged: log lines name the endpoint only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

from engine.adapters.base import AdapterSettings
from engine.adapters.bybit.constants import (
    AUTH_CODES,
    CLOCK_SKEW,
    CLOSED_ORDER_CODES,
    ENDPOINT_LIMITS,
    INSUFFICIENT_MARGIN_CODES,
    IP_BAN_S,
    NOT_MODIFIED_CODES,
    ORDER_REJECT_REASONS,
    PARAMS_ERROR,
    PATHS,
    RATE_LIMITED,
    UNKNOWN_OUTCOME_CODES,
    VENUE_NAME,
)
from engine.adapters.common.clock import VenueClock
from engine.adapters.common.ratelimit import RateLimiter, RateLimitRules, RateWindow
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

__all__ = ["BybitRest", "bybit_rate_rules", "error_for", "reject_reason_for_params_error"]

log = logging.getLogger("engine.adapters.bybit.rest")

JSON = dict[str, Any]


def bybit_rate_rules() -> RateLimitRules:
    """Bybit's limits as data: the IP window (600 requests / 5 s over every path) and each private
    endpoint's per-UID one-second budget (protocol notes 2.2, 2.5); the venue's ``X-Bapi-Limit*``
    headers refine the per-endpoint budgets."""
    windows = [RateWindow(name="ip", limit=600, window_s=5.0)]
    endpoints: dict[str, dict[str, int]] = {}
    for path, limit in ENDPOINT_LIMITS.items():
        windows.append(RateWindow(name=path, limit=limit, window_s=1.0))
        endpoints[path] = {"ip": 1, path: 1}
    return RateLimitRules(
        venue=VENUE_NAME,
        windows=tuple(windows),
        endpoints=endpoints,
        default_cost={"ip": 1},
        headroom=0.8,
        bybit_headers=True,
    )


def reject_reason_for_params_error(message: str) -> str:
    """Bybit uses 10001 for most validation failures; its message names the filter."""
    m = message.lower()
    if "ticksize" in m or "price invalid" in m or "qtystep" in m or "qty invalid" in m or "precision" in m:
        return "precision"
    if "min limit" in m or "maximum limit" in m or "max limit" in m or ("qty" in m and "exceed" in m):
        return "qty_out_of_range"
    if "position idx" in m or "positionidx" in m:
        return "position_side"
    if "postonly" in m or "post only" in m:
        return "post_only"
    if "fok" in m:
        return "fok_unfilled"
    if "rising" in m or "falling" in m:
        return "would_trigger_immediately"
    if "reduceonly" in m or "reduce-only" in m or "reduce only" in m:
        return "reduce_only"
    return "invalid"


def error_for(code: int, message: str, *, order: bool, retry_after_s: float = 2.0) -> VenueError:
    """The engine error for a Bybit retCode (protocol notes 2.9). ``order`` marks an order action
    (create, amend, cancel): its refusals are :class:`OrderRejected` with a reason."""
    v = VENUE_NAME
    if code == CLOCK_SKEW:
        return ClockSkew(venue=v, code=code, message=message)
    if code in AUTH_CODES:
        return AuthFailed(venue=v, code=code, message=message)
    if code == RATE_LIMITED:
        return RateLimited(venue=v, code=code, message=message, retry_after_s=retry_after_s)
    if code in UNKNOWN_OUTCOME_CODES:
        return VenueUnavailable(venue=v, code=code, message=message)
    if code in INSUFFICIENT_MARGIN_CODES:
        return InsufficientMargin(venue=v, code=code, message=message)
    if code in CLOSED_ORDER_CODES:
        return OrderRejected(venue=v, code=code, message=message, reason="unknown_order")
    if code == PARAMS_ERROR:
        return OrderRejected(
            venue=v, code=code, message=message, reason=reject_reason_for_params_error(message)
        )
    if code in ORDER_REJECT_REASONS:
        return OrderRejected(venue=v, code=code, message=message, reason=ORDER_REJECT_REASONS[code])
    if order:
        return OrderRejected(venue=v, code=code, message=message, reason="other")
    return VenueError(venue=v, code=code, message=message)


class _PybitHTTP(HTTP):  # type: ignore[misc]  # pybit ships no type information
    """pybit's ``HTTP`` pointed at ``endpoint``, with no retries of its own, signing with ``now_ms``."""

    def __init__(self, *, endpoint: str, now_ms: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint.rstrip("/")
        self.retry_codes: set[int] = set()  # an empty set after __post_init__: pybit retries nothing
        self._now_ms = now_ms

    def _prepare_headers(
        self, payload: str, recv_window: int, content_type: str = "application/json"
    ) -> dict[str, str]:
        # pybit's own version reads the raw local clock; the engine signs with the venue's clock
        timestamp = self._now_ms()
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": signature,
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


class BybitRest:
    """Async Bybit REST: ``await rest.call("place_order", {...}, order=True)`` -> the ``result`` object.

    ``limiter`` and ``clock`` are the adapter's (one per venue). ``workers`` threads run pybit."""

    def __init__(
        self,
        settings: AdapterSettings,
        *,
        limiter: RateLimiter,
        clock: VenueClock | None = None,
        workers: int = 4,
        recv_window_ms: int = 5000,
    ) -> None:
        self._settings = settings
        self.limiter = limiter
        self.clock = clock
        self._recv_window_ms = recv_window_ms
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bybit-rest")
        self._local = threading.local()
        self._closed = False
        self.requests = 0
        self.failures = 0
        self.rate_limited = 0

    def _now_ms(self) -> int:
        clock = self.clock
        return clock.now_ms() if clock is not None else time.time_ns() // 1_000_000

    def _session(self) -> _PybitHTTP:
        session: _PybitHTTP | None = getattr(self._local, "session", None)
        if session is None:
            s = self._settings
            session = _PybitHTTP(
                endpoint=s.rest_url,
                now_ms=self._now_ms,
                testnet=False,
                api_key=s.api_key or None,
                api_secret=s.api_secret or None,
                timeout=s.request_timeout_s,
                recv_window=self._recv_window_ms,
                max_retries=1,
                ignore_codes=set(NOT_MODIFIED_CODES),
                return_response_headers=True,
                logging_level=logging.WARNING,
            )
            self._local.session = session
        return session

    def _invoke(self, method: str, params: Mapping[str, Any]) -> tuple[JSON, Mapping[str, str]]:
        """On a pool thread: one pybit call. Returns (body, headers)."""
        fn = getattr(self._session(), method)
        body, _elapsed, headers = fn(**params) if params else fn()
        return body, headers

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, partial(self._executor.shutdown, wait=True))

    # ---- calls ---------------------------------------------------------------------------------------

    async def call(
        self, name: str, params: Mapping[str, Any] | None = None, *, order: bool = False, signed: bool = True
    ) -> JSON:
        """Call endpoint ``name`` (a key of ``PATHS``, e.g. "place_order") and return its ``result``.

        Signed calls are retried once after a clock resync on 10002, and once after the limiter's
        back-off on 10006. ``order`` maps refusals to :class:`OrderRejected` reasons."""
        method = _METHODS[name]
        path = PATHS[name]
        args = dict(params or {})

        async def limited() -> JSON:
            try:
                return await self._once(method, path, args, order=order)
            except RateLimited as exc:
                if isinstance(exc, Banned):
                    raise
                log.warning("bybit_rate_limited_retry endpoint=%s backoff_s=%.3f", path, exc.retry_after_s)
                return await self._once(method, path, args, order=order)

        if signed and self.clock is not None:
            return await self.clock.retry_on_skew(limited)
        return await limited()

    async def _once(self, method: str, path: str, params: JSON, *, order: bool) -> JSON:
        if self._closed:
            raise VenueUnavailable(venue=VENUE_NAME, code=None, message="the REST client is closed")
        await self.limiter.acquire(path)
        self.requests += 1
        loop = asyncio.get_running_loop()
        try:
            body, headers = await loop.run_in_executor(self._executor, partial(self._invoke, method, params))
        except InvalidRequestError as exc:
            self.failures += 1
            raise self._invalid(exc, path, order=order) from None
        except FailedRequestError as exc:
            self.failures += 1
            raise self._failed(exc, path) from None
        except requests.exceptions.Timeout:
            self.failures += 1
            log.warning("bybit_rest_timeout endpoint=%s", path)
            raise VenueUnavailable(
                venue=VENUE_NAME, code=None, message=f"{path}: request timed out"
            ) from None
        except requests.exceptions.RequestException as exc:
            self.failures += 1
            log.warning("bybit_rest_network_error endpoint=%s error=%s", path, type(exc).__name__)
            raise VenueUnavailable(
                venue=VENUE_NAME, code=None, message=f"{path}: {type(exc).__name__}"
            ) from None
        except ValueError as exc:  # a body that is not JSON (requests' JSONDecodeError is a ValueError)
            self.failures += 1
            raise VenueUnavailable(venue=VENUE_NAME, code=None, message=f"{path}: bad body: {exc}") from None
        self.limiter.on_response(path, 200, headers)
        if not isinstance(body, dict):
            raise VenueUnavailable(venue=VENUE_NAME, code=None, message=f"{path}: reply is not an object")
        code = body.get("retCode", 0)
        if code:
            # only the "not modified" ignore_codes come back this way: a success for the engine
            log.info("bybit_rest_not_modified endpoint=%s code=%s", path, code)
        result = body.get("result")
        return result if isinstance(result, dict) else {}

    def _invalid(self, exc: InvalidRequestError, path: str, *, order: bool) -> VenueError:
        code = int(exc.status_code)
        message = f"{path}: {exc.message}"
        headers: Mapping[str, str] = exc.resp_headers or {}
        self.limiter.on_response(path, 200, headers)
        if code == RATE_LIMITED:
            self.rate_limited += 1
            reset_raw = {k.lower(): v for k, v in headers.items()}.get("x-bapi-limit-reset-timestamp")
            reset_at = int(reset_raw) / 1000.0 if reset_raw and str(reset_raw).isdigit() else None
            backoff = self.limiter.on_rate_limited(None, reset_at=reset_at)
            return error_for(code, message, order=order, retry_after_s=backoff)
        log.info("bybit_rest_error endpoint=%s code=%d", path, code)
        return error_for(code, message, order=order)

    def _failed(self, exc: FailedRequestError, path: str) -> VenueError:
        status = int(exc.status_code) if isinstance(exc.status_code, int) else 0
        headers: Mapping[str, str] = exc.resp_headers or {}
        message = f"{path}: HTTP {status}: {exc.message}"
        log.warning("bybit_rest_http_error endpoint=%s status=%d", path, status)
        if status == 403:
            until_ms = int(time.time() * 1000 + IP_BAN_S * 1000)
            length = self.limiter.on_banned(until_ms, None)
            return Banned(
                venue=VENUE_NAME, code=403, message=message, until_ms=until_ms, retry_after_s=length
            )
        if status == 429:
            self.rate_limited += 1
            backoff = self.limiter.on_rate_limited(None)
            return RateLimited(venue=VENUE_NAME, code=429, message=message, retry_after_s=backoff)
        if status == 401:
            return AuthFailed(venue=VENUE_NAME, code=401, message=message)
        if status >= 500 or status == 409 or (status == 400 and "retries" in str(exc.message).lower()):
            self.limiter.on_response(path, status, headers)
            return VenueUnavailable(venue=VENUE_NAME, code=status, message=message)
        return VenueError(venue=VENUE_NAME, code=status, message=message)


#: endpoint name -> pybit method
_METHODS: Mapping[str, str] = {
    "server_time": "get_server_time",
    "instruments": "get_instruments_info",
    "orderbook": "get_orderbook",
    "tickers": "get_tickers",
    "place_order": "place_order",
    "amend_order": "amend_order",
    "cancel_order": "cancel_order",
    "cancel_all": "cancel_all_orders",
    "open_orders": "get_open_orders",
    "order_history": "get_order_history",
    "executions": "get_executions",
    "positions": "get_positions",
    "wallet": "get_wallet_balance",
    "set_leverage": "set_leverage",
    "switch_mode": "switch_position_mode",
    "set_margin_mode": "set_margin_mode",
}
