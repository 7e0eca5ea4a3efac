"""The chaos and soak harness: a local venue and ``engine run`` as separate processes, and the checks.

- :class:`VenueProc` runs the local venue in its own process (:func:`venue_main`: ``VenueServer`` with a
  configurable market step, tick, funding interval and rate limits), so a scenario can SIGKILL it and
  start a fresh one on the same port (the venue keeps its state in memory: a restart loses it).
- :class:`EngineProc` runs ``engine run`` (live mode, loopback URLs) with :class:`ChaosTrader`
  registered (:func:`child_main`); its output goes to a file, never to a pipe that could fill.
- :func:`admin` talks to the engine's admin socket; :func:`control` to the venue's control API.
- :func:`check_state` pauses the engine, then asserts: the engine answers ``status``; its open orders
  and positions equal the venue's (read through fresh adapters); no client order id twice on the venue;
  every book equals the venue's REST depth.

Every wait here is bounded in time; every loop in count or time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from engine.strategies.base import Strategy, register
from engine.types import Signal, TradeTick, Venue
from tests.support import trading
from tests.support.processes import admin, free_port

__all__ = [
    "ACCOUNTS",
    "ROOT",
    "ChaosTrader",
    "EngineProc",
    "VenueProc",
    "admin",
    "binance_signed",
    "book_diff",
    "bybit_headers",
    "check_state",
    "child_main",
    "control",
    "eventually",
    "free_port",
    "metrics_of",
    "venue_main",
]

ROOT = Path(__file__).resolve().parents[2]
D = Decimal

#: venue -> (key, secret): one account per venue so the two adapters never see each other's fills.
ACCOUNTS: Mapping[Venue, tuple[str, str]] = {
    Venue.BINANCE: ("chaos-binance-key", "chaos-binance-secret"),
    Venue.BYBIT: ("chaos-bybit-key", "chaos-bybit-secret"),
}
_ENV = {Venue.BINANCE: ("CHAOS_BN_KEY", "CHAOS_BN_SECRET"), Venue.BYBIT: ("CHAOS_BY_KEY", "CHAOS_BY_SECRET")}


# ==================================================================== the strategy


@register
class ChaosTrader(Strategy):
    """Trades all the time on BTCUSDT of every venue: every ``every_ms`` of market time a market order
    alternating buy/sell (``qty``; the position stays within one ``qty``), and every ``rest_every``-th
    time a resting limit buy 2% under the last trade, at most ``max_resting`` of them per venue (open
    orders to reconcile)."""

    name = "chaos_trader"

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self.every_ms = self._int("every_ms", 200, lo=1, hi=3_600_000)
        self.rest_every = self._int("rest_every", 5, lo=1, hi=1_000_000)
        self.max_resting = self._int("max_resting", 5, lo=0, hi=100)
        qty = self._decimal("qty", D("0.005"))
        assert qty is not None
        self.qty = qty
        self._last: dict[Venue, int] = {}
        self._n: dict[Venue, itertools.count[int]] = {}
        self._resting: dict[Venue, int] = {}

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        if trade.symbol != "BTCUSDT":
            return []
        if trade.ts_ms - self._last.get(trade.venue, 0) < self.every_ms:
            return []
        self._last[trade.venue] = trade.ts_ms
        n = next(self._n.setdefault(trade.venue, itertools.count()))
        if (
            n % self.rest_every == self.rest_every - 1
            and self._resting.get(trade.venue, 0) < self.max_resting
        ):
            self._resting[trade.venue] = self._resting.get(trade.venue, 0) + 1
            price = (trade.price * D("0.98")).quantize(D("0.1"))
            return [trading.rest(trade, price, self.qty, self.name)]
        return [trading.flip(trade, n, self.qty, self.name)]

    def state(self) -> dict[str, object]:
        return {"name": self.name, "resting": {v.value: n for v, n in self._resting.items()}}


def child_main(argv: Sequence[str]) -> int:
    """The engine process: ``engine`` with :class:`ChaosTrader` registered."""
    from engine.cli import main

    return main(list(argv))


# ==================================================================== the venue process


def venue_main(argv: Sequence[str]) -> int:
    """``python -c 'import tests.chaos.support as s; s.venue_main(ARGS)'``: the local venue with a market
    step of ``--step-ms`` venue ms (1 = 100x the default 100 ms: an accelerated market without moving the
    venue's clock, which signed requests check), ``--tick-ms``, ``--funding-s``, ``--orders-per-10s``,
    ``--bybit-create-per-s`` and ``--account KEY:SECRET:USDT`` (repeatable). Serves until SIGTERM."""
    import argparse

    import uvloop

    from engine.venue.exchange import Exchange
    from engine.venue.ratelimit import BinanceLimits, BybitIpLimits
    from engine.venue.server import ShiftableClock, VenueConfig, VenueServer, parse_account

    p = argparse.ArgumentParser(prog="chaos-venue")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--step-ms", type=int, default=100)
    p.add_argument("--tick-ms", type=int, default=50)
    p.add_argument("--funding-s", type=int, default=None)
    p.add_argument("--orders-per-10s", type=int, default=300)
    p.add_argument("--bybit-create-per-s", type=int, default=10)
    p.add_argument("--account", action="append", default=[])
    a = p.parse_args(list(argv))
    accounts = [parse_account(x) for x in a.account]
    limits = BinanceLimits(
        weight_per_minute=1_000_000, orders_per_10s=a.orders_per_10s, violations_before_ban=1_000_000
    )
    config = VenueConfig(
        port=a.port,
        tick_ms=a.tick_ms,
        rate_limits=limits,
        bybit_rate_limits={"/v5/order/create": a.bybit_create_per_s},
        # like Binance's IP weight above: the 429 burst (up to ~150 Bybit requests/s for 3 * SCALE s)
        # is about the per-UID order budget, not Bybit's 600 / 5 s IP window and its 403 ban
        bybit_ip_limits=BybitIpLimits(requests_per_window=1_000_000),
    )

    async def main() -> None:
        clock = ShiftableClock()
        core = Exchange(
            seed=a.seed,
            clock=clock,
            step_ms=a.step_ms,
            funding_interval_ms=a.funding_s * 1000 if a.funding_s else None,
            max_catchup_steps=10_000,
        )
        server = VenueServer(
            port=a.port, core=core, clock=clock, tick_ms=a.tick_ms, config=config, accounts=accounts
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            print(f"chaos-venue: listening {server.base_url} accounts={len(accounts)}", flush=True)
            await stop.wait()
        print("chaos-venue: stopped", flush=True)

    uvloop.run(main())
    return 0


async def _wait_file(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"{path.name}: exited {proc.returncode}:\n{_tail(path)}")
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path.name}: {needle!r} not seen within {timeout}s:\n{_tail(path)}")


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no output)"


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, wait_s: float) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


@dataclass
class VenueProc:
    """The venue as its own process on a fixed port; ``restart`` keeps the port and the accounts."""

    workdir: Path
    port: int = field(default_factory=free_port)
    step_ms: int = 100
    tick_ms: int = 50
    funding_s: int | None = None
    orders_per_10s: int = 300
    bybit_create_per_s: int = 10
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.starts += 1
        log = self.workdir / f"venue-{self.starts}.log"
        args = [
            "--port",
            str(self.port),
            "--step-ms",
            str(self.step_ms),
            "--tick-ms",
            str(self.tick_ms),
            "--orders-per-10s",
            str(self.orders_per_10s),
            "--bybit-create-per-s",
            str(self.bybit_create_per_s),
        ]
        if self.funding_s:
            args += ["--funding-s", str(self.funding_s)]
        for key, secret in ACCOUNTS.values():
            args += ["--account", f"{key}:{secret}:100000"]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys, tests.chaos.support as s; sys.exit(s.venue_main(sys.argv[1:]))",
                    *args,
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        await _wait_file(log, "chaos-venue: listening", self.proc, 30)

    def kill(self) -> None:
        _stop(self.proc, signal.SIGKILL, 10)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, 10)

    async def restart(self) -> None:
        """SIGKILL, then a fresh venue (empty state) on the same port."""
        self.kill()
        deadline = time.monotonic() + 10
        while True:  # the port is free once the killed process is reaped (reuse_address on the listener)
            try:
                await self.start()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


@dataclass
class EngineProc:
    """``engine run`` (live mode, both venues on the loopback venue) trading with :class:`ChaosTrader`."""

    workdir: Path
    venue_port: int
    venues: tuple[Venue, ...] = (Venue.BINANCE, Venue.BYBIT)
    params: Mapping[str, object] = field(default_factory=lambda: {"every_ms": 200, "qty": "0.005"})
    stale_after_s: float = 0.5
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def sock(self) -> Path:
        return self.workdir / "adm" / "engine.sock"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def config(self) -> Path:
        port = self.venue_port
        urls = {
            Venue.BINANCE: (f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"),
            Venue.BYBIT: (f"ws://127.0.0.1:{port}/v5/public/linear", f"ws://127.0.0.1:{port}/v5/private"),
        }
        exchanges = "".join(
            f"""
[[exchanges]]
name = "{v.value}"
symbols = ["BTCUSDT", "ETHUSDT"]
rest_url = "http://127.0.0.1:{port}"
ws_public_url = "{urls[v][0]}"
ws_private_url = "{urls[v][1]}"
api_key_env = "{_ENV[v][0]}"
api_secret_env = "{_ENV[v][1]}"
"""
            for v in self.venues
        )
        params = ", ".join(f"{k} = {orjson.dumps(v).decode()}" for k, v in self.params.items())
        cfg = self.workdir / "engine.toml"
        cfg.write_text(
            f"""
[engine]
mode = "live"
admin_socket = "{self.sock}"
state_dir = "{self.workdir}/state"
log_level = "warning"
cancel_on_stop = false
stale_after_s = {self.stale_after_s}
{exchanges}
[strategy]
name = "chaos_trader"
params = {{ {params} }}

[risk]
max_order_notional = "1000000"

[metrics]
bind = "127.0.0.1:0"
"""
        )
        return cfg

    async def start(self) -> None:
        cfg = self.config()
        self.log = self.workdir / "engine.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for v in self.venues:
            env[_ENV[v][0]], env[_ENV[v][1]] = ACCOUNTS[v]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys, tests.chaos.support as s; sys.exit(s.child_main(sys.argv[1:]))",
                    "run",
                    "--config",
                    str(cfg),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        await _wait_file(self.log, "admin socket:", self.proc, 60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        return _tail(self.log) if self.log is not None else "(not started)"

    def rss_kb(self) -> int:
        """VmRSS of the engine process (kB), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line in /proc/PID/status")

    async def stop(self) -> int | None:
        """``stop`` through the admin socket (a graceful stop), SIGTERM/SIGKILL if that fails."""
        if self.alive():
            with contextlib.suppress(OSError, AssertionError, TimeoutError):
                await admin(self.sock, "stop")
            deadline = time.monotonic() + 20
            while self.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        return _stop(self.proc, signal.SIGTERM, 10)


# ==================================================================== talking to them


async def metrics_of(engine: EngineProc) -> dict[str, Any]:
    result: dict[str, Any] = await admin(engine.sock, "metrics")
    return result


async def control(port: int, path: str, body: Mapping[str, object] | None = None) -> dict[str, Any]:
    """The venue's control API: POST ``body`` (or GET when None) to ``/_venue/<path>``."""
    url = f"http://127.0.0.1:{port}/_venue/{path}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        if body is None:
            async with s.get(url) as r:
                data: dict[str, Any] = await r.json()
        else:
            async with s.post(url, data=orjson.dumps(dict(body))) as r:
                data = await r.json()
                if r.status != 200:
                    raise AssertionError(f"venue control {path}: {r.status} {data}")
    return data


Levels = list[tuple[Decimal, Decimal]]


async def venue_depth(port: int, venue: Venue, symbol: str, n: int) -> tuple[Levels, Levels]:
    """The venue's book through its public REST depth endpoint (bids, asks; touch first)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        if venue is Venue.BINANCE:
            async with s.get(
                f"http://127.0.0.1:{port}/fapi/v1/depth", params={"symbol": symbol, "limit": "1000"}
            ) as r:
                data = await r.json()
            bids, asks = data["bids"], data["asks"]
        else:
            async with s.get(
                f"http://127.0.0.1:{port}/v5/market/orderbook",
                params={"category": "linear", "symbol": symbol, "limit": "500"},
            ) as r:
                data = await r.json()
            bids, asks = data["result"]["b"], data["result"]["a"]
    return ([(D(p), D(q)) for p, q in bids[:n]], [(D(p), D(q)) for p, q in asks[:n]])


async def engine_book(engine: EngineProc, venue: Venue, symbol: str, n: int) -> tuple[Levels, Levels]:
    book = await admin(engine.sock, "book", {"symbol": symbol, "depth": n, "venue": venue.value})
    return ([(D(p), D(q)) for p, q in book["bids"]], [(D(p), D(q)) for p, q in book["asks"]])


async def book_diff(engine: EngineProc, port: int, venue: Venue, symbol: str, n: int = 10) -> str | None:
    """None once the engine's top ``n`` levels equal the venue's between two identical venue reads (no
    market step in between) -- tried for up to 10 s (the market keeps moving); else the last difference."""
    deadline = time.monotonic() + 10
    last = "not compared"
    while time.monotonic() < deadline:
        before = await venue_depth(port, venue, symbol, n)
        mine = await engine_book(engine, venue, symbol, n)
        after = await venue_depth(port, venue, symbol, n)
        if before == after == mine:
            return None
        if before == after:
            last = (
                f"{venue.value} {symbol}: engine {mine[0][:3]}/{mine[1][:3]} "
                f"venue {before[0][:3]}/{before[1][:3]}"
            )
        await asyncio.sleep(0.02)
    return last


def binance_signed(secret: str, params: Mapping[str, str]) -> str:
    """A signed Binance query string (HMAC-SHA256 of the query, as python-binance sends it)."""
    query = urllib.parse.urlencode(dict(params))
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={sig}"


def bybit_headers(key: str, secret: str, payload: bytes) -> dict[str, str]:
    """Bybit v5 signed-request headers for ``payload`` (the query string of a GET, the body of a POST)."""
    from engine.venue.bybit.auth import rest_signature

    ts = str(time.time_ns() // 1_000_000)
    sign = rest_signature(secret, timestamp=ts, api_key=key, recv_window="5000", payload=payload)
    return {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": sign,
        "Content-Type": "application/json",
    }


async def venue_orders_positions(port: int, venue: Venue) -> tuple[list[str], set[tuple[str, Decimal]]]:
    """The venue's open client order ids (with repeats) and non-zero positions (symbol, signed qty) of
    the venue's account, through signed REST reads only (a full adapter would open, then close, the
    account's one listen key -- the engine's)."""
    key, secret = ACCOUNTS[venue]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        if venue is Venue.BINANCE:
            hdr = {"X-MBX-APIKEY": key}

            def q() -> str:
                return binance_signed(secret, {"timestamp": str(time.time_ns() // 1_000_000)})

            async with s.get(f"{base}/fapi/v1/openOrders?{q()}", headers=hdr) as r:
                orders = [o["clientOrderId"] for o in await r.json()]
            async with s.get(f"{base}/fapi/v2/positionRisk?{q()}", headers=hdr) as r:
                positions = {
                    (p["symbol"], D(p["positionAmt"])) for p in await r.json() if D(p["positionAmt"])
                }
            return orders, positions
        query = "category=linear&settleCoin=USDT&limit=50"
        async with s.get(
            f"{base}/v5/order/realtime?{query}", headers=bybit_headers(key, secret, query.encode())
        ) as r:
            orders = [o["orderLinkId"] for o in (await r.json())["result"]["list"]]
        query = "category=linear&settleCoin=USDT"
        async with s.get(
            f"{base}/v5/position/list?{query}", headers=bybit_headers(key, secret, query.encode())
        ) as r:
            positions = set()
            for p in (await r.json())["result"]["list"]:
                size = D(p["size"])
                if size:
                    positions.add((p["symbol"], size if p["side"] == "Buy" else -size))
        return orders, positions


async def eventually(cond: Any, timeout: float, what: str) -> None:
    """Await ``cond()`` (sync or async) until truthy, at most ``timeout`` seconds, polling every 0.1 s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.1)


@dataclass
class CheckReport:
    state: str
    engine_open_orders: int
    positions: dict[str, list[tuple[str, str]]]


async def check_state(
    engine: EngineProc, port: int, venues: Sequence[Venue], *, resume: bool = True
) -> CheckReport:
    """Pause the engine (entries stop), let in-flight orders finish, then assert the engine answers
    ``status``, its open orders and positions equal the venue's per venue, no client id is open twice
    on the venue, and every book equals the venue's. Resumes afterwards when it was running."""
    assert engine.alive(), f"the engine died:\n{engine.tail()}"
    status = await admin(engine.sock, "status")
    was = status["state"]
    if was == "running":
        await admin(engine.sock, "pause", {"reason": "chaos check"})

    async def settled() -> bool:
        m = await metrics_of(engine)
        return bool(m["queues"]["inflight_orders"] == 0 and m["queues"]["user"] == 0)

    try:
        return await _compare(engine, port, venues, settled)
    finally:
        if was == "running" and resume:
            await admin(engine.sock, "resume", {"reason": "chaos check done"})


async def _compare(engine: EngineProc, port: int, venues: Sequence[Venue], settled: Any) -> CheckReport:
    await eventually(settled, 15, "in-flight orders done")
    await asyncio.sleep(0.5)  # the last fills' stream events
    eng_orders = await admin(engine.sock, "orders")
    eng_positions = await admin(engine.sock, "positions")
    report = CheckReport(
        state=(await admin(engine.sock, "status"))["state"], engine_open_orders=0, positions={}
    )
    for venue in venues:
        venue_ids, venue_pos = await venue_orders_positions(port, venue)
        assert len(venue_ids) == len(set(venue_ids)), f"{venue.value}: a client order id twice: {venue_ids}"
        eng_open = {
            o["client_order_id"]
            for o in eng_orders
            if o["venue"] == venue.value and o["status"] in ("new", "partially_filled", "untriggered")
        }
        assert eng_open == set(venue_ids), (
            f"{venue.value} open orders: engine only {sorted(eng_open - set(venue_ids))}, "
            f"venue only {sorted(set(venue_ids) - eng_open)}"
        )
        eng_pos = {
            (p["symbol"], D(p["qty"])) for p in eng_positions if p["venue"] == venue.value and D(p["qty"])
        }
        assert eng_pos == venue_pos, f"{venue.value} positions: engine {eng_pos} venue {venue_pos}"
        report.engine_open_orders += len(eng_open)
        report.positions[venue.value] = sorted((s, str(q)) for s, q in eng_pos)
        for symbol in ("BTCUSDT", "ETHUSDT"):
            diff = await book_diff(engine, port, venue, symbol)
            assert diff is None, f"book differs from the venue's: {diff}"
    return report
