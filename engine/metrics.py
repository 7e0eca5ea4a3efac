"""Prometheus metrics of one engine, and the ``/metrics``, ``/health``, ``/ready`` HTTP endpoint.

:class:`Metrics` owns its own ``CollectorRegistry`` (never the global default, so tests and several
engines in one process each have theirs). The engine calls (every name below is prefixed ``engine_``)::

    m = Metrics()
    m.set_state("running")                      # engine_state{state=...} 1 for the current state
    m.inc_events("binance.depth", n=1)          # engine_events_total{stream}; rate() = events/s
    m.inc_book_resync("binance", "BTCUSDT")     # engine_book_resyncs_total{venue,symbol}
    m.inc_ws_reconnect("binance", "public")     # engine_ws_reconnects_total{venue,stream}
    m.observe_book_latency(ns)                  # engine_book_update_latency_seconds (WS receive -> book)
    m.observe_signal_latency(ns)                # engine_signal_to_order_latency_seconds
    m.observe_ack_latency(ns)                   # engine_order_ack_latency_seconds (sent -> acknowledged)
    m.observe_admin_latency(cmd, ns)            # engine_admin_command_latency_seconds (AdminServer observe=)
    m.inc_orders("filled")                      # engine_orders_total{outcome}: sent, filled, rejected...
    m.inc_risk_denial("max_order_notional")     # engine_risk_denials_total{reason}
    m.set_equity(Decimal("10060.5"))            # engine_equity
    m.set_pnl(daily=..., realized=..., unrealized=...)  # engine_pnl{kind}
    m.set_exposure("binance", Decimal("2700"))  # engine_exposure{venue}
    m.set_rate_limit_usage("binance", used=120, limit=2400)  # engine_rate_limit_usage_ratio{venue}
    m.snapshot()                                # JSON-ready dict for the admin socket's ``metrics``
    m.render()                                  # the text exposition format (bytes)

Label children are cached, so a hot-path call is a dict lookup plus prometheus-client's own increment.
Money gauges take ``Decimal`` (or int/float) and export floats: Prometheus has no decimals; the admin
socket's ``metrics``/``status`` results keep decimal strings.

:class:`MetricsServer` (aiohttp) serves, on the configured bind (``[metrics] bind``, loopback)::

    GET /metrics  200, text exposition format of the registry
    GET /health   200 {"status": "live"} while the process and its loop answer (``live()`` may say 503)
    GET /ready    200 {"status": "ready"} when ``ready()`` returns no reasons;
                  503 {"status": "not_ready", "reasons": [...]} otherwise (streams down, books unhealthy)

``ready`` is a callback the engine supplies: it returns the reasons the engine is NOT ready (empty =
ready), e.g. ``["binance public stream disconnected", "binance BTCUSDT book resyncing"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import Enum as EnumMetric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["ENGINE_STATES", "LATENCY_BUCKETS", "Metrics", "MetricsServer"]

log = logging.getLogger("engine.metrics")

ENGINE_STATES: Final = ("stopped", "starting", "running", "paused", "emergency_stopped", "stopping")

#: Seconds: 10 us .. 5 s (hot-path latencies sit at the bottom, venue round trips at the top).
LATENCY_BUCKETS: Final = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

Number = Decimal | int | float


class Metrics:
    """The engine's metrics on a registry of its own (see the module docstring for the API)."""

    def __init__(self, *, registry: CollectorRegistry | None = None, namespace: str = "engine") -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        r, ns = self.registry, namespace
        self._state = EnumMetric(
            "state", "Engine state", states=list(ENGINE_STATES), namespace=ns, registry=r
        )
        self._state.state("stopped")
        self._state_name = "stopped"
        self._events = Counter("events", "Events received, per stream", ["stream"], namespace=ns, registry=r)
        self._resyncs = Counter(
            "book_resyncs",
            "Order book resyncs from a snapshot",
            ["venue", "symbol"],
            namespace=ns,
            registry=r,
        )
        self._reconnects = Counter(
            "ws_reconnects", "WebSocket reconnects", ["venue", "stream"], namespace=ns, registry=r
        )
        self._book_latency = Histogram(
            "book_update_latency_seconds",
            "WS receive to book updated",
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._signal_latency = Histogram(
            "signal_to_order_latency_seconds",
            "Strategy signal to order sent",
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._ack_latency = Histogram(
            "order_ack_latency_seconds",
            "Order sent to acknowledged by the venue",
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._admin_latency = Histogram(
            "admin_command_latency_seconds",
            "Admin socket command service time",
            ["cmd"],
            namespace=ns,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._orders = Counter("orders", "Orders by outcome", ["outcome"], namespace=ns, registry=r)
        self._denials = Counter(
            "risk_denials", "Risk denials by reason", ["reason"], namespace=ns, registry=r
        )
        self._equity = Gauge("equity", "Account equity (quote currency)", namespace=ns, registry=r)
        self._pnl = Gauge("pnl", "PnL (quote currency)", ["kind"], namespace=ns, registry=r)
        self._exposure = Gauge("exposure", "Gross notional exposure", ["venue"], namespace=ns, registry=r)
        self._rate_limit = Gauge(
            "rate_limit_usage_ratio", "Rate-limit budget used (0..1)", ["venue"], namespace=ns, registry=r
        )
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._latency_stats: dict[str, list[float]] = {"book": [0, 0.0], "signal": [0, 0.0], "ack": [0, 0.0]}

    def _child(self, metric: Any, name: str, *labels: str) -> Any:
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- state and counters -------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state_name

    def set_state(self, state: str) -> None:
        name = str(state)
        if name not in ENGINE_STATES:
            raise ValueError(f"unknown engine state {name!r} (expected one of {', '.join(ENGINE_STATES)})")
        self._state.state(name)
        self._state_name = name

    def inc_events(self, stream: str, n: int = 1) -> None:
        self._child(self._events, "events", stream).inc(n)

    def inc_book_resync(self, venue: str, symbol: str) -> None:
        self._child(self._resyncs, "resyncs", str(venue), symbol).inc()

    def inc_ws_reconnect(self, venue: str, stream: str) -> None:
        self._child(self._reconnects, "reconnects", str(venue), stream).inc()

    def inc_orders(self, outcome: str) -> None:
        self._child(self._orders, "orders", str(outcome)).inc()

    def inc_risk_denial(self, reason: str) -> None:
        self._child(self._denials, "denials", str(reason)).inc()

    # -- latencies (nanoseconds in, seconds exported) -----------------------------------------------

    def _latency(self, hist: Histogram, kind: str, ns: int) -> None:
        seconds = ns / 1e9
        hist.observe(seconds)
        stats = self._latency_stats[kind]
        stats[0] += 1
        stats[1] += seconds

    def observe_book_latency(self, ns: int) -> None:
        self._latency(self._book_latency, "book", ns)

    def observe_signal_latency(self, ns: int) -> None:
        self._latency(self._signal_latency, "signal", ns)

    def observe_ack_latency(self, ns: int) -> None:
        self._latency(self._ack_latency, "ack", ns)

    def observe_admin_latency(self, cmd: str, ns: int) -> None:
        self._child(self._admin_latency, "admin", cmd).observe(ns / 1e9)

    # -- gauges -------------------------------------------------------------------------------------

    def set_equity(self, equity: Number) -> None:
        self._equity.set(float(equity))

    def set_pnl(
        self, *, daily: Number | None = None, realized: Number | None = None, unrealized: Number | None = None
    ) -> None:
        for kind, value in (("daily", daily), ("realized", realized), ("unrealized", unrealized)):
            if value is not None:
                self._child(self._pnl, "pnl", kind).set(float(value))

    def set_exposure(self, venue: str, notional: Number) -> None:
        self._child(self._exposure, "exposure", str(venue)).set(float(notional))

    def set_rate_limit_usage(self, venue: str, *, used: Number, limit: Number) -> None:
        ratio = float(used) / float(limit) if float(limit) > 0 else 0.0
        self._child(self._rate_limit, "rate_limit", str(venue)).set(ratio)

    # -- read-out -----------------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary: counters by label, gauges, latency counts and means (microseconds)."""
        out: dict[str, Any] = {"state": self._state_name}
        for metric in self.registry.collect():
            name = metric.name.removeprefix("engine_")
            if metric.type in ("counter", "gauge") and name not in ("state",):
                values: dict[str, float] = {}
                for sample in metric.samples:
                    if sample.name.endswith("_created"):
                        continue
                    label = ".".join(str(v) for v in sample.labels.values()) or "value"
                    values[label] = sample.value
                out[name] = values["value"] if set(values) == {"value"} else values
        out["latency"] = {
            kind: {"count": int(c), "mean_us": round(s / c * 1e6, 3) if c else None}
            for kind, (c, s) in self._latency_stats.items()
        }
        return out


class MetricsServer:
    """``/metrics``, ``/health``, ``/ready`` over aiohttp on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
        ready: Callable[[], Sequence[str] | Iterable[str]] | None = None,
        live: Callable[[], bool] | None = None,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._ready = ready
        self._live = live
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._readiness)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"metrics endpoint cannot bind {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("metrics_started url=%s", self.url, extra={"url": self.url})

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        if self._live is not None and not self._live():
            return web.json_response({"status": "not_live"}, status=503)
        return web.json_response({"status": "live", "state": self.metrics.state})

    async def _readiness(self, request: web.Request) -> web.Response:
        try:
            reasons = [] if self._ready is None else [str(r) for r in self._ready()]
        except Exception as exc:
            log.exception("metrics_ready_check_failed")
            reasons = [f"readiness check failed: {type(exc).__name__}: {exc}"]
        if reasons:
            return web.json_response({"status": "not_ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})
