"""Rate limits as data, for both front-ends of the local venue.

- :class:`WindowCounter`: a fixed-window weight counter per key (an IP, an account, a (uid, endpoint)
  pair), on the venue's clock. Windows are aligned to multiples of their length, like Binance's
  ``X-MBX-USED-WEIGHT-1M`` minute.
- :class:`BinanceLimiter`: the IP request-weight budget (429 with ``-1003`` on excess, then 418 bans
  of growing length for a client that keeps sending while limited) and the per-account order
  counters (``X-MBX-ORDER-COUNT-10S`` / ``-1M``, 429 with ``-1015``).
- :class:`PerSecondLimiter`: Bybit's per-UID, per-endpoint one-second budget (retCode 10006 with
  ``X-Bapi-Limit``, ``X-Bapi-Limit-Status``, ``X-Bapi-Limit-Reset-Timestamp``).
- :class:`BybitIpLimiter`: Bybit's per-IP request window over every REST path (600 requests in any
  rolling 5 s by default); the request that breaks it bans the IP (HTTP 403 "access too frequent")
  for ``ban_ms`` (10 minutes by default).

Decisions are values (:class:`Decision`), never exceptions; the front-end renders them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "BinanceLimiter",
    "BinanceLimits",
    "BybitIpLimiter",
    "BybitIpLimits",
    "Decision",
    "IpDecision",
    "PerSecondLimiter",
    "SecondDecision",
    "WindowCounter",
]


class WindowCounter:
    """Fixed windows of ``window_ms``: ``add`` returns the key's usage in the current window."""

    __slots__ = ("_used", "window_ms")

    def __init__(self, window_ms: int) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive, got {window_ms}")
        self.window_ms = window_ms
        self._used: dict[str, tuple[int, int]] = {}  # key -> (window start, used)

    def _start(self, now_ms: int) -> int:
        return now_ms - now_ms % self.window_ms

    def used(self, key: str, now_ms: int) -> int:
        start = self._start(now_ms)
        entry = self._used.get(key)
        return entry[1] if entry is not None and entry[0] == start else 0

    def add(self, key: str, weight: int, now_ms: int) -> int:
        start = self._start(now_ms)
        entry = self._used.get(key)
        used = (entry[1] if entry is not None and entry[0] == start else 0) + weight
        self._used[key] = (start, used)
        if len(self._used) > 100_000:  # bounded: forget keys from past windows
            self._used = {k: v for k, v in self._used.items() if v[0] == start}
        return used

    def reset_at(self, now_ms: int) -> int:
        return self._start(now_ms) + self.window_ms


@dataclass(frozen=True, kw_only=True)
class BinanceLimits:
    weight_per_minute: int = 2400
    orders_per_10s: int = 300
    orders_per_minute: int = 1200
    ban_base_ms: int = 120_000  # first ban: 2 minutes
    ban_max_ms: int = 3 * 24 * 3600 * 1000  # bans grow up to 3 days
    violations_before_ban: int = 3  # requests sent while limited before the IP is banned


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The outcome of one request: ``status`` 0 = allowed, else 429 or 418 with a Binance code."""

    status: int
    code: int = 0
    msg: str = ""
    retry_after_s: int = 0
    used_weight: int = 0
    order_count_10s: int | None = None
    order_count_1m: int | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 0


@dataclass
class _IpState:
    banned_until_ms: int = 0
    violations: int = 0  # requests sent while limited in the current limited stretch
    bans: int = 0  # bans so far (each doubles the next)


class BinanceLimiter:
    """Binance's IP weight and per-account order limits, with 429 then growing 418 bans."""

    def __init__(self, limits: BinanceLimits | None = None) -> None:
        self.limits = limits or BinanceLimits()
        self._weight = WindowCounter(60_000)
        self._orders_10s = WindowCounter(10_000)
        self._orders_1m = WindowCounter(60_000)
        self._ips: dict[str, _IpState] = {}

    def rate_limits_json(self) -> list[dict[str, object]]:
        """The ``rateLimits`` array of exchangeInfo: the authoritative numbers for clients."""
        lim = self.limits
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": lim.weight_per_minute,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": lim.orders_per_minute,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": lim.orders_per_10s},
        ]

    def _ban(self, ip: str, state: _IpState, now_ms: int) -> Decision:
        duration = min(self.limits.ban_max_ms, self.limits.ban_base_ms * (2**state.bans))
        state.bans += 1
        state.violations = 0
        state.banned_until_ms = now_ms + duration
        return self._banned(ip, state, now_ms)

    def _banned(self, ip: str, state: _IpState, now_ms: int) -> Decision:
        retry = max(1, -(-(state.banned_until_ms - now_ms) // 1000))
        return Decision(
            status=418,
            code=-1003,
            msg=f"Way too many requests; IP({ip}) banned until {state.banned_until_ms}. "
            "Please use the websocket for live updates to avoid bans.",
            retry_after_s=retry,
            used_weight=self._weight.used(ip, now_ms),
        )

    def check_request(self, ip: str, weight: int, now_ms: int) -> Decision:
        """Charge ``weight`` to ``ip``. Allowed, 429 (over budget) or 418 (banned)."""
        state = self._ips.get(ip)
        if state is None:
            state = self._ips[ip] = _IpState()
        if state.banned_until_ms > now_ms:
            return self._banned(ip, state, now_ms)
        used = self._weight.add(ip, weight, now_ms)
        if used > self.limits.weight_per_minute:
            state.violations += 1
            if state.violations > self.limits.violations_before_ban:
                return self._ban(ip, state, now_ms)
            retry = max(1, -(-(self._weight.reset_at(now_ms) - now_ms) // 1000))
            return Decision(
                status=429,
                code=-1003,
                msg=f"Too many requests; current limit of IP({ip}) is {self.limits.weight_per_minute} "
                "requests per minute. Please use the websocket for live updates to avoid polling the API.",
                retry_after_s=retry,
                used_weight=used,
            )
        state.violations = 0
        return Decision(status=0, used_weight=used)

    def check_orders(self, account: str, count_10s: int, count_1m: int, now_ms: int) -> Decision:
        """Charge new orders to ``account``: 429 with -1015 when over either order window."""
        c10 = self._orders_10s.add(account, count_10s, now_ms)
        c1m = self._orders_1m.add(account, count_1m, now_ms)
        if c10 > self.limits.orders_per_10s or c1m > self.limits.orders_per_minute:
            if c10 > self.limits.orders_per_10s:
                window, limit, reset = (
                    "10 seconds",
                    self.limits.orders_per_10s,
                    self._orders_10s.reset_at(now_ms),
                )
            else:
                window, limit, reset = (
                    "1 minute",
                    self.limits.orders_per_minute,
                    self._orders_1m.reset_at(now_ms),
                )
            return Decision(
                status=429,
                code=-1015,
                msg=f"Too many new orders; current limit is {limit} orders per {window}.",
                retry_after_s=max(1, -(-(reset - now_ms) // 1000)),
                order_count_10s=c10,
                order_count_1m=c1m,
            )
        return Decision(status=0, order_count_10s=c10, order_count_1m=c1m)

    def used_weight(self, ip: str, now_ms: int) -> int:
        return self._weight.used(ip, now_ms)

    def order_counts(self, account: str, now_ms: int) -> tuple[int, int]:
        return self._orders_10s.used(account, now_ms), self._orders_1m.used(account, now_ms)


@dataclass(frozen=True, kw_only=True)
class SecondDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # when the current one-second window ends (X-Bapi-Limit-Reset-Timestamp)

    def headers(self) -> dict[str, str]:
        return {
            "X-Bapi-Limit": str(self.limit),
            "X-Bapi-Limit-Status": str(self.remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(self.reset_ms),
        }


@dataclass
class PerSecondLimiter:
    """A per-key (e.g. ``f"{uid}:{endpoint}"``), per-endpoint budget over one-second windows.

    ``limits`` maps an endpoint name to its per-second budget; unknown endpoints get ``default``.
    """

    limits: dict[str, int] = field(default_factory=dict)
    default: int = 10
    _counter: WindowCounter = field(default_factory=lambda: WindowCounter(1000))

    def check(self, uid: str, endpoint: str, now_ms: int) -> SecondDecision:
        limit = self.limits.get(endpoint, self.default)
        key = f"{uid}\x00{endpoint}"
        used = self._counter.add(key, 1, now_ms)
        allowed = used <= limit
        return SecondDecision(
            allowed=allowed,
            limit=limit,
            remaining=max(0, limit - used),
            reset_ms=self._counter.reset_at(now_ms) if not allowed else now_ms,
        )


@dataclass(frozen=True, kw_only=True)
class BybitIpLimits:
    """Bybit's HTTP IP limit: more than ``requests_per_window`` requests within any rolling
    ``window_ms`` bans the IP for ``ban_ms`` (production: 600 in 5 s, then at least 10 minutes)."""

    requests_per_window: int = 600
    window_ms: int = 5_000
    ban_ms: int = 600_000

    def __post_init__(self) -> None:
        for name in ("requests_per_window", "window_ms", "ban_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BybitIpLimits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class IpDecision:
    allowed: bool
    used: int  # requests of the IP in the current rolling window (0 while banned)
    banned_until_ms: int = 0  # when the IP's ban ends (venue epoch ms), 0 if not banned
    ban_started: bool = False  # this request broke the limit and started the ban


class BybitIpLimiter:
    """Requests per IP over a rolling window; the first request over the limit starts a ban of
    ``ban_ms``, during which every request is refused and none is counted. The window starts empty
    again when a ban ends."""

    _MAX_IPS = 100_000

    def __init__(self, limits: BybitIpLimits | None = None) -> None:
        self.limits = limits or BybitIpLimits()
        self._seen: dict[str, deque[int]] = {}  # ip -> arrival times (ms) within the window
        self._banned: dict[str, int] = {}  # ip -> ban end (ms)

    def banned_until(self, ip: str, now_ms: int) -> int:
        """When ``ip``'s ban ends, or 0 if it is not banned at ``now_ms``."""
        until = self._banned.get(ip, 0)
        if until and until <= now_ms:
            del self._banned[ip]
            return 0
        return until

    def check(self, ip: str, now_ms: int) -> IpDecision:
        """Count one request of ``ip`` at ``now_ms``: allowed, or refused (banned)."""
        until = self.banned_until(ip, now_ms)
        if until:
            return IpDecision(allowed=False, used=0, banned_until_ms=until)
        lim = self.limits
        seen = self._seen.get(ip)
        if seen is None:
            if len(self._seen) >= self._MAX_IPS:
                self._forget(now_ms)
            seen = self._seen[ip] = deque()
        horizon = now_ms - lim.window_ms
        while seen and seen[0] <= horizon:
            seen.popleft()
        seen.append(now_ms)
        if len(seen) > lim.requests_per_window:
            del self._seen[ip]
            until = self._banned[ip] = now_ms + lim.ban_ms
            return IpDecision(allowed=False, used=0, banned_until_ms=until, ban_started=True)
        return IpDecision(allowed=True, used=len(seen))

    def used(self, ip: str, now_ms: int) -> int:
        seen = self._seen.get(ip)
        if seen is None:
            return 0
        horizon = now_ms - self.limits.window_ms
        return sum(1 for t in seen if t > horizon)

    def _forget(self, now_ms: int) -> None:
        """Bounded memory: drop the IPs with nothing left in their window and the expired bans."""
        horizon = now_ms - self.limits.window_ms
        self._seen = {ip: s for ip, s in self._seen.items() if s and s[-1] > horizon}
        self._banned = {ip: t for ip, t in self._banned.items() if t > now_ms}
