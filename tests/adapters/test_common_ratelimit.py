"""The header-aware rate limiter."""

from __future__ import annotations

import asyncio
import time

from engine.adapters.common.ratelimit import RateLimiter, RateLimitRules, RateWindow


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def rules(**kw: object) -> RateLimitRules:
    base: dict[str, object] = {
        "venue": "binance",
        "windows": (RateWindow(name="weight", limit=100, window_s=0.2, header="X-MBX-USED-WEIGHT-1M"),),
        "endpoints": {"GET /depth": {"weight": 20}},
        "default_cost": {"weight": 1},
        "headroom": 0.5,
    }
    base.update(kw)
    return RateLimitRules(**base)  # type: ignore[arg-type]


async def test_acquire_when_near_headroom_then_waits_for_next_window_before_the_limit() -> None:
    limiter = RateLimiter(rules())
    started = time.monotonic()
    for _ in range(4):  # 4 x 20 = 80 > 50 (headroom): the third request waits for the next window
        await limiter.acquire("GET /depth")
    assert limiter.waits >= 1
    assert time.monotonic() - started < 1.0
    assert limiter.used("weight") <= 50


async def test_on_response_when_venue_reports_more_weight_then_limiter_adopts_it_and_slows() -> None:
    clock = FakeClock(start=1000.05)
    limiter = RateLimiter(rules(), clock=clock)
    limiter.on_response("GET /x", 200, {"x-mbx-used-weight-1m": "50"})
    assert limiter.used("weight") == 50
    limiter.on_response("GET /x", 200, {"X-MBX-USED-WEIGHT-1M": "10"})
    assert limiter.used("weight") == 50  # never lowers its view within a window
    assert limiter._delay_for("GET /x", {"weight": 1}) > 0


async def test_on_rate_limited_when_retry_after_then_no_request_until_it_passed() -> None:
    limiter = RateLimiter(rules())
    backoff = limiter.on_rate_limited(0.15)
    assert backoff == 0.15 and limiter.backoffs == 1
    started = time.monotonic()
    await limiter.acquire("GET /x")
    assert time.monotonic() - started >= 0.13


async def test_on_banned_when_418_then_alerts_and_blocks_until_the_ban_ends() -> None:
    alerts: list[tuple[str, str]] = []
    limiter = RateLimiter(rules(), on_alert=lambda kind, detail: alerts.append((kind, detail)))
    limiter.on_banned(int(time.time() * 1000) + 150, None)
    assert limiter.banned and alerts and alerts[0][0] == "banned"
    task = asyncio.create_task(limiter.acquire("GET /x"))
    await asyncio.sleep(0.05)
    assert not task.done()
    await asyncio.wait_for(task, 1.0)
    assert not limiter.banned


async def test_bybit_headers_when_remaining_low_then_waits_for_reset_timestamp() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        RateLimitRules(venue="bybit", windows=(), bybit_headers=True, headroom=0.8), clock=clock
    )
    reset_ms = int((clock.now + 0.5) * 1000)
    limiter.on_response(
        "POST /v5/order/create",
        200,
        {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "1", "X-Bapi-Limit-Reset-Timestamp": str(reset_ms)},
    )
    assert limiter._delay_for("POST /v5/order/create", {}) > 0.4
    assert limiter._delay_for("GET /v5/other", {}) == 0
    limiter.on_rate_limited(None, reset_at=clock.now + 0.3)
    assert 0.29 < limiter.blocked_for_s < 0.31
