"""Rate limits as data, and one limiter per venue that also reads the venue's usage headers.

A :class:`RateLimitRules` lists the venue's windows (e.g. Binance's 1-minute IP weight and its 10 s /
1 min order counters) and what each endpoint costs in each window. :class:`RateLimiter`:

- ``acquire(endpoint)`` reserves the endpoint's cost before the request is sent. When a window's use
  would pass ``headroom`` x its limit it *waits* for the window to roll over (it slows down before the
  venue's limit, never after), and counts the wait;
- ``on_response(endpoint, status, headers)`` updates its view from the venue's usage headers
  (Binance ``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S/1M``; Bybit ``X-Bapi-Limit``,
  ``X-Bapi-Limit-Status``, ``X-Bapi-Limit-Reset-Timestamp``): the venue's count wins when higher;
- ``on_rate_limited(retry_after_s)`` (HTTP 429 / Bybit 10006) stops every request until the back-off
  ends, so a burst never turns into a 418 ban;
- ``on_banned(until_ms)`` (HTTP 418 / Bybit 403) stops every request until the ban ends and raises an
  alert through ``on_alert`` (the adapter turns it into a ``VenueStatus`` event).

Windows are fixed and aligned to multiples of their length on the wall clock, as the venues count them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["RateLimitRules", "RateLimiter", "RateWindow"]

log = logging.getLogger("engine.adapters.ratelimit")


@dataclass(frozen=True, kw_only=True)
class RateWindow:
    """One budget: ``limit`` units per fixed window of ``window_s`` seconds.

    ``header`` names the response header carrying the venue's own count of *used* units in this window
    (matched case-insensitively), or is empty when the venue does not report it.
    """

    name: str
    limit: int
    window_s: float
    header: str = ""


@dataclass(frozen=True, kw_only=True)
class RateLimitRules:
    """A venue's limits: windows, the cost of each endpoint per window, and the slow-down point.

    ``endpoints`` maps an endpoint key (e.g. ``"POST /fapi/v1/order"``) to ``{window name: cost}``;
    endpoints not listed cost ``default_cost``. ``headroom`` is the fraction of a window the limiter
    lets requests use before it waits for the next window. ``bybit_headers`` turns on reading Bybit's
    per-endpoint ``X-Bapi-Limit*`` headers.
    """

    venue: str
    windows: tuple[RateWindow, ...]
    endpoints: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    default_cost: Mapping[str, int] = field(default_factory=dict)
    headroom: float = 0.8
    bybit_headers: bool = False
    default_retry_after_s: float = 2.0  # a 429 without Retry-After

    def cost(self, endpoint: str) -> Mapping[str, int]:
        return self.endpoints.get(endpoint, self.default_cost)


class _WindowState:
    __slots__ = ("rule", "start", "used")

    def __init__(self, rule: RateWindow) -> None:
        self.rule = rule
        self.start = 0.0
        self.used = 0

    def roll(self, now: float) -> None:
        start = now - now % self.rule.window_s
        if start != self.start:
            self.start = start
            self.used = 0

    def reset_at(self) -> float:
        return self.start + self.rule.window_s


@dataclass
class _EndpointBudget:
    """Bybit's per-endpoint one-second budget as the venue last reported it."""

    limit: int
    remaining: int
    reset_at: float  # wall-clock seconds


class RateLimiter:
    """One per venue. ``acquire`` before each request, ``on_response`` after it (see module doc)."""

    def __init__(
        self,
        rules: RateLimitRules,
        *,
        on_alert: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self._clock = clock
        self._windows = {w.name: _WindowState(w) for w in rules.windows}
        self._headers = {w.header.lower(): self._windows[w.name] for w in rules.windows if w.header}
        self._endpoint_budgets: dict[str, _EndpointBudget] = {}
        self._blocked_until = 0.0  # back-off (429) or ban (418): no request before this time
        self._banned_until = 0.0
        self._on_alert = on_alert
        self._lock = asyncio.Lock()  # reservations are made one at a time, in arrival order
        self.waits = 0
        self.wait_s = 0.0
        self.backoffs = 0
        self.bans = 0

    def set_limit(self, window: str, limit: int) -> None:
        """Replace a window's limit (e.g. with the numbers of Binance's ``exchangeInfo.rateLimits``)."""
        state = self._windows[window]
        state.rule = RateWindow(
            name=state.rule.name, limit=limit, window_s=state.rule.window_s, header=state.rule.header
        )

    # ---- state ---------------------------------------------------------------------------------------
    def used(self, window: str) -> int:
        state = self._windows[window]
        state.roll(self._clock())
        return state.used

    @property
    def blocked_for_s(self) -> float:
        return max(0.0, self._blocked_until - self._clock())

    @property
    def banned(self) -> bool:
        return self._banned_until > self._clock()

    def stats(self) -> dict[str, int]:
        return {
            "ratelimit_waits": self.waits,
            "ratelimit_wait_ms": int(self.wait_s * 1000),
            "ratelimit_backoffs": self.backoffs,
            "ratelimit_bans": self.bans,
        }

    # ---- before a request ------------------------------------------------------------------------------
    async def acquire(self, endpoint: str) -> None:
        """Reserve ``endpoint``'s cost, waiting while banned, backing off, or near a window's limit."""
        cost = self.rules.cost(endpoint)
        async with self._lock:
            while True:
                delay = self._delay_for(endpoint, cost)
                if delay <= 0:
                    break
                self.waits += 1
                self.wait_s += delay
                log.info(
                    "ratelimit_wait venue=%s endpoint=%s delay_ms=%d",
                    self.rules.venue,
                    endpoint.replace(" ", "_"),
                    int(delay * 1000),
                )
                await asyncio.sleep(delay)
            for name, units in cost.items():
                state = self._windows.get(name)
                if state is not None:
                    state.used += units
            budget = self._endpoint_budgets.get(endpoint)
            if budget is not None and budget.remaining > 0:
                budget.remaining -= 1

    def _delay_for(self, endpoint: str, cost: Mapping[str, int]) -> float:
        now = self._clock()
        if self._blocked_until > now:
            return self._blocked_until - now
        delay = 0.0
        for name, units in cost.items():
            state = self._windows.get(name)
            if state is None or units <= 0:
                continue
            state.roll(now)
            allowed = max(units, int(state.rule.limit * self.rules.headroom))
            if state.used + units > allowed:
                delay = max(delay, state.reset_at() - now + 0.001)
        budget = self._endpoint_budgets.get(endpoint)
        if budget is not None and budget.reset_at > now:
            # keep one request of the venue's per-endpoint budget in reserve
            floor = max(1, round(budget.limit * (1.0 - self.rules.headroom)))
            if budget.remaining < floor:
                delay = max(delay, budget.reset_at - now + 0.001)
        return delay

    # ---- after a response -----------------------------------------------------------------------------
    def on_response(self, endpoint: str, status: int, headers: Mapping[str, str]) -> None:
        """Update the view of every window from the venue's usage headers (any status)."""
        now = self._clock()
        lowered = {k.lower(): v for k, v in headers.items()}
        for header, state in self._headers.items():
            raw = lowered.get(header)
            if raw is None:
                continue
            try:
                used = int(raw)
            except ValueError:
                log.warning("ratelimit_bad_header venue=%s header=%s value=%r", self.rules.venue, header, raw)
                continue
            state.roll(now)
            if used > state.used:
                state.used = used
        if self.rules.bybit_headers:
            self._read_bybit(endpoint, lowered, now)

    def _read_bybit(self, endpoint: str, headers: Mapping[str, str], now: float) -> None:
        limit, remaining, reset = (
            headers.get("x-bapi-limit"),
            headers.get("x-bapi-limit-status"),
            headers.get("x-bapi-limit-reset-timestamp"),
        )
        if limit is None or remaining is None:
            return
        try:
            reset_at = int(reset) / 1000.0 if reset is not None else now + 1.0
            budget = _EndpointBudget(limit=int(limit), remaining=int(remaining), reset_at=reset_at)
        except ValueError:
            log.warning(
                "ratelimit_bad_header venue=%s endpoint=%s", self.rules.venue, endpoint.replace(" ", "_")
            )
            return
        if len(self._endpoint_budgets) > 1024:  # bounded: endpoints are a small fixed set in practice
            self._endpoint_budgets.clear()
        self._endpoint_budgets[endpoint] = budget

    def on_rate_limited(self, retry_after_s: float | None, *, reset_at: float | None = None) -> float:
        """A 429 / 10006: no request until ``retry_after_s`` (or the reset time) has passed.

        Returns the back-off in seconds."""
        now = self._clock()
        if reset_at is not None and reset_at > now:
            backoff = reset_at - now
        elif retry_after_s is not None and retry_after_s > 0:
            backoff = retry_after_s
        else:
            backoff = self.rules.default_retry_after_s
        self._blocked_until = max(self._blocked_until, now + backoff)
        self.backoffs += 1
        log.warning("ratelimit_backoff venue=%s backoff_ms=%d", self.rules.venue, int(backoff * 1000))
        return backoff

    def on_banned(self, until_ms: int | None, retry_after_s: float | None) -> float:
        """A 418 / Bybit 403: stop sending until the ban ends; alert. Returns the ban's length in s."""
        now = self._clock()
        if until_ms is not None and until_ms / 1000.0 > now:
            until = until_ms / 1000.0
        elif retry_after_s is not None and retry_after_s > 0:
            until = now + retry_after_s
        else:
            until = now + 600.0  # Bybit: stop for at least 10 minutes
        self._banned_until = max(self._banned_until, until)
        self._blocked_until = max(self._blocked_until, until)
        self.bans += 1
        length = until - now
        log.error("ratelimit_banned venue=%s ban_s=%.1f", self.rules.venue, length)
        if self._on_alert is not None:
            self._on_alert("banned", f"requests stopped for {length:.1f}s")
        return length
