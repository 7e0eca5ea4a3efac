"""Alerts against a local aiohttp receiver (real sockets): webhook, Telegram format, retries, drops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from engine.alerts import Alerter

TOKEN = "123456:bot-token-secret"


class Receiver:
    """A local HTTP server recording JSON POSTs; fails the first ``fail_first`` with ``fail_status``."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.attempts: list[tuple[str, dict[str, Any]]] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts.append((request.path, body))
        if len(self.attempts) <= self.fail_first:
            return web.json_response({"ok": False}, status=self.fail_status)
        self.received.append((request.path, body))
        return web.json_response({"ok": True})

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.close()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_state_change_when_alerted_then_webhook_and_telegram_receive_it(receiver: Receiver) -> None:
    alerter = Alerter(
        webhook_url=receiver.url + "/hook",
        telegram_token=TOKEN,
        telegram_chat_id=-1001,
        telegram_base_url=receiver.url,
        source="paper-1",
    )
    await alerter.start()
    alerter.state_changed("running", "emergency_stopped", cause="daily loss limit")
    await _until(lambda: len(receiver.received) == 2)
    await alerter.close()
    (hook_path, hook), (tg_path, tg) = receiver.received
    assert hook_path == "/hook"
    assert hook["kind"] == "state_changed" and hook["severity"] == "critical" and hook["source"] == "paper-1"
    assert hook["fields"] == {"old": "running", "new": "emergency_stopped", "cause": "daily loss limit"}
    assert isinstance(hook["ts_ms"], int)
    assert tg_path == f"/bot{TOKEN}/sendMessage"
    assert tg == {
        "chat_id": -1001,
        "text": "[CRITICAL] paper-1: state_changed: running -> emergency_stopped: daily loss limit",
    }
    assert (alerter.sent, alerter.failed, alerter.dropped) == (2, 0, 0)


async def test_receiver_when_failing_first_attempts_then_retried_with_backoff_and_delivered() -> None:
    receiver = await Receiver(fail_first=3).start()
    try:
        alerter = Alerter(
            webhook_url=receiver.url + "/hook", backoff_s=0.02, backoff_max_s=0.05, max_attempts=5
        )
        await alerter.start()
        alerter.risk_tripped("max_drawdown", "drawdown 12% > 10%")
        await _until(lambda: len(receiver.received) == 1)
        await alerter.close()
        assert len(receiver.attempts) == 4
        assert (alerter.sent, alerter.retries, alerter.failed) == (1, 3, 0)
        assert receiver.received[0][1]["kind"] == "risk_tripped"
    finally:
        await receiver.close()


async def test_receiver_when_always_failing_then_gives_up_after_max_attempts_and_moves_on() -> None:
    receiver = await Receiver(fail_first=3).start()
    try:
        alerter = Alerter(webhook_url=receiver.url + "/hook", backoff_s=0.01, max_attempts=2)
        await alerter.start()
        alerter.alert("first", "lost")  # attempts 1 and 2 fail: given up
        alerter.alert("second", "delivered")  # attempt 3 fails, 4 succeeds
        await _until(lambda: len(receiver.received) == 1)
        await alerter.close()
        assert (alerter.failed, alerter.sent) == (1, 1)
        assert receiver.received[0][1]["kind"] == "second"
    finally:
        await receiver.close()


async def test_client_error_when_4xx_then_not_retried() -> None:
    receiver = await Receiver(fail_first=1, fail_status=400).start()
    try:
        alerter = Alerter(webhook_url=receiver.url + "/hook", backoff_s=0.01)
        await alerter.start()
        alerter.alert("bad", "refused")
        await _until(lambda: alerter.failed == 1)
        await alerter.close()
        assert len(receiver.attempts) == 1 and alerter.retries == 0
    finally:
        await receiver.close()


async def test_receiver_down_when_alerting_then_caller_never_blocks_and_oldest_dropped() -> None:
    alerter = Alerter(
        webhook_url="http://127.0.0.1:9/unreachable", queue_size=3, backoff_s=0.05, max_attempts=3
    )
    await alerter.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(10):
        alerter.alert("burst", f"alert {i}")
    assert loop.time() - t0 < 0.01  # synchronous and O(1): never waits for delivery
    assert alerter.pending <= 3 and alerter.dropped >= 6
    await alerter.close(drain_s=0.05)
    assert alerter.dropped + alerter.failed + alerter.sent == 10


async def test_disconnect_when_longer_than_threshold_then_alert_and_recovery_alert(
    receiver: Receiver,
) -> None:
    alerter = Alerter(webhook_url=receiver.url + "/hook", disconnect_after_s=0.1)
    await alerter.start()
    alerter.disconnected("bybit", "private")
    alerter.disconnected("binance", "public")
    await asyncio.sleep(0.02)
    alerter.connected("bybit", "private")  # back within the threshold: no alert
    await _until(lambda: len(receiver.received) == 1)
    assert receiver.received[0][1]["kind"] == "disconnected"
    assert receiver.received[0][1]["fields"] == {"venue": "binance", "stream": "public"}
    alerter.connected("binance", "public")
    await _until(lambda: len(receiver.received) == 2)
    await alerter.close()
    assert receiver.received[1][1]["kind"] == "reconnected"


async def test_no_sink_when_configured_then_alerts_ignored_and_bad_settings_refused() -> None:
    alerter = Alerter()
    alerter.banned("binance", until_ms=1)
    assert alerter.pending == 0 and not alerter.enabled
    with pytest.raises(ValueError, match="both a bot token and a chat id"):
        Alerter(telegram_token=TOKEN)
    with pytest.raises(ValueError, match="severity"):
        Alerter(webhook_url="http://x").alert("k", "m", severity="meh")


async def test_token_when_delivery_fails_then_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter(
        telegram_token=TOKEN,
        telegram_chat_id=1,
        telegram_base_url="http://127.0.0.1:9",
        backoff_s=0.01,
        max_attempts=2,
    )
    await alerter.start()
    alerter.alert("x", "y")
    await _until(lambda: alerter.failed == 1)
    await alerter.close()
    assert caplog.records and all(TOKEN not in r.getMessage() for r in caplog.records)
