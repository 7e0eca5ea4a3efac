"""Metrics on a private registry, and the /metrics, /health, /ready endpoint over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import Metrics, MetricsServer


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_two_metrics_when_built_then_separate_registries_not_the_global_one() -> None:
    a, b = Metrics(), Metrics()
    a.inc_events("binance.depth", 5)
    assert a.registry is not b.registry and a.registry is not REGISTRY
    assert _samples(a)[("engine_events_total", (("stream", "binance.depth"),))] == 5
    assert ("engine_events_total", (("stream", "binance.depth"),)) not in _samples(b)


def test_every_api_call_when_made_then_exported_with_its_labels() -> None:
    m = Metrics()
    m.set_state("paused")
    m.inc_events("binance.trade")
    m.inc_events("binance.trade", 2)
    m.inc_book_resync("binance", "BTCUSDT")
    m.inc_ws_reconnect("bybit", "public")
    m.observe_book_latency(40_000)
    m.observe_signal_latency(120_000)
    m.observe_ack_latency(3_000_000)
    m.observe_admin_latency("status", 50_000)
    m.inc_orders("filled")
    m.inc_orders("rejected")
    m.inc_risk_denial("max_order_notional")
    m.set_equity(Decimal("10060.50"))
    m.set_pnl(daily=Decimal("-12.5"), realized=3, unrealized=1.5)
    m.set_exposure("binance", Decimal("2700"))
    m.set_rate_limit_usage("binance", used=600, limit=2400)
    s = _samples(m)
    assert s[("engine_state", (("engine_state", "paused"),))] == 1
    assert s[("engine_state", (("engine_state", "running"),))] == 0
    assert s[("engine_events_total", (("stream", "binance.trade"),))] == 3
    assert s[("engine_book_resyncs_total", (("symbol", "BTCUSDT"), ("venue", "binance")))] == 1
    assert s[("engine_ws_reconnects_total", (("stream", "public"), ("venue", "bybit")))] == 1
    assert s[("engine_book_update_latency_seconds_count", ())] == 1
    assert s[("engine_book_update_latency_seconds_bucket", (("le", "5e-05"),))] == 1
    assert s[("engine_book_update_latency_seconds_bucket", (("le", "2.5e-05"),))] == 0
    assert s[("engine_signal_to_order_latency_seconds_sum", ())] == pytest.approx(0.00012)
    assert s[("engine_order_ack_latency_seconds_count", ())] == 1
    assert s[("engine_admin_command_latency_seconds_count", (("cmd", "status"),))] == 1
    assert s[("engine_orders_total", (("outcome", "filled"),))] == 1
    assert s[("engine_risk_denials_total", (("reason", "max_order_notional"),))] == 1
    assert s[("engine_equity", ())] == 10060.5
    assert s[("engine_pnl", (("kind", "daily"),))] == -12.5
    assert s[("engine_exposure", (("venue", "binance"),))] == 2700
    assert s[("engine_rate_limit_usage_ratio", (("venue", "binance"),))] == 0.25
    snap = m.snapshot()
    assert snap["state"] == "paused"
    assert snap["events"] == {"binance.trade": 3.0}
    assert snap["orders"] == {"filled": 1.0, "rejected": 1.0}
    assert snap["equity"] == 10060.5
    assert snap["latency"]["book"] == {"count": 1, "mean_us": 40.0}


def test_set_state_when_unknown_then_value_error() -> None:
    with pytest.raises(ValueError, match="unknown engine state"):
        Metrics().set_state("dancing")


class Ready:
    def __init__(self) -> None:
        self.reasons: list[str] = ["binance public stream disconnected", "binance BTCUSDT book resyncing"]
        self.live = True

    def __call__(self) -> list[str]:
        return list(self.reasons)


@pytest.fixture
async def served() -> AsyncIterator[tuple[MetricsServer, Ready]]:
    m = Metrics()
    m.set_state("running")
    m.inc_orders("filled")
    ready = Ready()
    server = MetricsServer(m, host="127.0.0.1", port=0, ready=ready, live=lambda: ready.live)
    await server.start()
    yield server, ready
    await server.close()


async def test_metrics_endpoint_when_scraped_then_text_format(served: tuple[MetricsServer, Ready]) -> None:
    server, _ = served
    assert server.port != 0
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'engine_orders_total{outcome="filled"} 1.0' in text
    assert 'engine_state{engine_state="running"} 1.0' in text


async def test_health_when_live_then_200_else_503(served: tuple[MetricsServer, Ready]) -> None:
    server, ready = served
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "live"
        ready.live = False
        async with http.get(server.url + "/health") as resp:
            assert resp.status == 503


async def test_ready_when_streams_down_then_503_with_reasons_and_200_once_healthy(
    served: tuple[MetricsServer, Ready],
) -> None:
    server, ready = served
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/ready") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["status"] == "not_ready"
            assert body["reasons"] == ["binance public stream disconnected", "binance BTCUSDT book resyncing"]
        ready.reasons = []
        async with http.get(server.url + "/ready") as resp:
            assert resp.status == 200 and (await resp.json()) == {"status": "ready"}


async def test_ready_when_callback_raises_then_503_naming_the_failure() -> None:
    def broken() -> list[str]:
        raise RuntimeError("engine not wired")

    server = MetricsServer(Metrics(), port=0, ready=broken)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/ready") as resp:
            assert resp.status == 503
            assert "engine not wired" in (await resp.json())["reasons"][0]
    finally:
        await server.close()


async def test_start_when_port_taken_then_os_error_naming_the_bind(
    served: tuple[MetricsServer, Ready],
) -> None:
    server, _ = served
    other = MetricsServer(Metrics(), host="127.0.0.1", port=server.port)
    with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{server.port}"):
        await other.start()
