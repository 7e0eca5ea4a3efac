"""Operator alerts: a webhook (JSON POST) and optionally Telegram, never blocking the engine.

``Alerter(webhook_url=..., telegram_token=..., telegram_chat_id=...)``; ``await start()`` runs one
background task; ``await close()`` delivers what is queued (up to a time-out) and stops it.

The engine calls (all synchronous, O(1), never raising on delivery problems)::

    alerter.state_changed("running", "emergency_stopped", cause="daily loss limit")
    alerter.risk_tripped("max_drawdown", "drawdown 12% > 10%")
    alerter.banned("binance", until_ms=...)
    alerter.disconnected("binance", "public")   # alerts only if still down after ``disconnect_after_s``
    alerter.connected("binance", "public")      # cancels that, or reports recovery if it had alerted
    alerter.alert("custom_kind", "message", severity="warning", **fields)

Delivery: alerts go into a bounded queue (``queue_size``); when it is full the OLDEST alert is dropped
and counted (``dropped``). The task sends each alert to every sink in order; a failed attempt (network
error, time-out, HTTP 429 or 5xx) is retried with exponential backoff (``backoff_s`` doubling up to
``backoff_max_s``) up to ``max_attempts``; other 4xx answers are permanent failures (retrying a bad chat
id does not help). Counters: ``sent``, ``failed``, ``retries``, ``dropped``.

Wire formats::

    webhook:  POST <webhook_url>  {"kind", "severity", "message", "ts_ms", "source", "fields": {...}}
    telegram: POST <telegram_base_url>/bot<token>/sendMessage  {"chat_id": ..., "text": "..."}

``telegram_base_url`` defaults to ``https://api.telegram.org`` (tests point it at a local receiver).
The bot token is a secret: it is never logged (log lines name the sink, not the URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

__all__ = ["SEVERITIES", "Alert", "Alerter"]

log = logging.getLogger("engine.alerts")

SEVERITIES: Final = ("info", "warning", "critical")


@dataclass(frozen=True, kw_only=True)
class Alert:
    kind: str
    message: str
    severity: str = "warning"
    ts_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    fields: Mapping[str, Any] = field(default_factory=dict)

    def payload(self, source: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "ts_ms": self.ts_ms,
            "source": source,
            "fields": dict(self.fields),
        }

    def text(self, source: str) -> str:
        return f"[{self.severity.upper()}] {source}: {self.kind}: {self.message}"


class _Permanent(Exception):
    pass


class Alerter:
    """Bounded, retrying, non-blocking alert delivery (see the module docstring)."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        telegram_token: object | None = None,
        telegram_chat_id: str | int | None = None,
        telegram_base_url: str = "https://api.telegram.org",
        source: str = "engine",
        queue_size: int = 256,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 5.0,
        disconnect_after_s: float = 30.0,
    ) -> None:
        if queue_size < 1 or max_attempts < 1:
            raise ValueError("queue_size and max_attempts must be at least 1")
        if (telegram_token is None) != (telegram_chat_id is None):
            raise ValueError("telegram needs both a bot token and a chat id")
        self.webhook_url = webhook_url
        reveal = getattr(telegram_token, "reveal", None)
        self._telegram_token: str | None = (
            str(reveal()) if callable(reveal) else None if telegram_token is None else str(telegram_token)
        )
        self.telegram_chat_id = telegram_chat_id
        self.telegram_base_url = telegram_base_url.rstrip("/")
        self.source = source
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.disconnect_after_s = disconnect_after_s
        self._queue: deque[Alert] = deque(maxlen=queue_size)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._down: dict[tuple[str, str], asyncio.TimerHandle | None] = {}
        self._alerted_down: set[tuple[str, str]] = set()
        self._busy = False
        self.sent = 0
        self.failed = 0
        self.retries = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None or self._telegram_token is not None

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- producer side (sync, never blocks) ---------------------------------------------------------

    def alert(self, kind: str, message: str, *, severity: str = "warning", **fields: Any) -> None:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        if not self.enabled:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            log.warning("alert_dropped kind=%s", self._queue[0].kind, extra={"dropped": self.dropped})
        self._queue.append(Alert(kind=kind, message=message, severity=severity, fields=fields))
        self._wake.set()

    def state_changed(self, old: str, new: str, *, cause: str) -> None:
        severity = "critical" if new == "emergency_stopped" else "warning" if new != "running" else "info"
        self.alert(
            "state_changed", f"{old} -> {new}: {cause}", severity=severity, old=old, new=new, cause=cause
        )

    def risk_tripped(self, reason: str, detail: str) -> None:
        self.alert("risk_tripped", f"{reason}: {detail}", severity="critical", reason=reason)

    def banned(self, venue: str, *, until_ms: int | None = None) -> None:
        until = "" if until_ms is None else f" until {until_ms}"
        self.alert(
            "banned",
            f"{venue} banned this client{until}",
            severity="critical",
            venue=venue,
            until_ms=until_ms,
        )

    def disconnected(self, venue: str, stream: str) -> None:
        """A stream went down: alert if it is still down after ``disconnect_after_s``."""
        key = (str(venue), stream)
        if key in self._down:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._down[key] = None
            return
        self._down[key] = loop.call_later(self.disconnect_after_s, self._still_down, key, time.time())

    def connected(self, venue: str, stream: str) -> None:
        key = (str(venue), stream)
        handle = self._down.pop(key, None)
        if handle is not None:
            handle.cancel()
        if key in self._alerted_down:
            self._alerted_down.discard(key)
            self.alert(
                "reconnected",
                f"{key[0]} {stream} stream is back",
                severity="info",
                venue=key[0],
                stream=stream,
            )

    def _still_down(self, key: tuple[str, str], since: float) -> None:
        self._down[key] = None
        self._alerted_down.add(key)
        self.alert(
            "disconnected",
            f"{key[0]} {key[1]} stream down for {time.time() - since:.0f} s",
            severity="critical",
            venue=key[0],
            stream=key[1],
        )

    # -- delivery -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._task = asyncio.create_task(self._run(), name="alerter")

    async def close(self, *, drain_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``drain_s``), then stop; what is left is counted as dropped."""
        for handle in self._down.values():
            if handle is not None:
                handle.cancel()
        self._down.clear()
        task, self._task = self._task, None
        if task is not None:
            deadline = time.monotonic() + drain_s
            while (self._queue or self._busy) and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._queue:
            self.dropped += len(self._queue)
            log.warning("alerts_undelivered count=%d", len(self._queue), extra={"count": len(self._queue)})
            self._queue.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            alert = self._queue.popleft()
            self._busy = True
            try:
                await self._deliver(alert)
            except asyncio.CancelledError:
                self.dropped += 1  # cut off by close(): undelivered, counted
                raise
            finally:
                self._busy = False

    async def _deliver(self, alert: Alert) -> None:
        if self.webhook_url is not None:
            await self._with_retries("webhook", alert, self.webhook_url, alert.payload(self.source))
        if self._telegram_token is not None:
            url = f"{self.telegram_base_url}/bot{self._telegram_token}/sendMessage"
            body = {"chat_id": self.telegram_chat_id, "text": alert.text(self.source)}
            await self._with_retries("telegram", alert, url, body)

    async def _with_retries(self, sink: str, alert: Alert, url: str, body: dict[str, Any]) -> None:
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._post(url, body)
            except _Permanent as exc:
                self.failed += 1
                log.error(
                    "alert_failed sink=%s kind=%s reason=%s", sink, alert.kind, exc, extra={"sink": sink}
                )
                return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt == self.max_attempts:
                    self.failed += 1
                    log.error(
                        "alert_failed sink=%s kind=%s attempts=%d reason=%s",
                        sink,
                        alert.kind,
                        attempt,
                        type(exc).__name__,
                        extra={"sink": sink},
                    )
                    return
                self.retries += 1
                log.info(
                    "alert_retry sink=%s attempt=%d delay_s=%.2f", sink, attempt, delay, extra={"sink": sink}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
            else:
                self.sent += 1
                return

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        assert self._session is not None
        async with self._session.post(url, json=body) as resp:
            if resp.status == 429 or resp.status >= 500:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=f"HTTP {resp.status}"
                )
            if resp.status >= 400:
                raise _Permanent(f"HTTP {resp.status}")
            await resp.read()
