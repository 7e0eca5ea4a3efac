"""Issue 7's crash test: ``engine run`` trading actively against the local venue (its own process, so it
outlives the engine), killed with SIGKILL again and again -- at random moments, and by the journal's
crash injection right after an intent commits (before the send) and right before an ack is journaled
(after the venue acknowledged) -- restarted each time, and checked after each restart:

- no order on the venue that the journal never saw (no unjournaled or duplicated sends);
- the engine's open orders and positions equal the venue's (paused for the comparison);
- every journal intent closed as ``never_sent`` is absent from the venue.

``ENGINE_CRASH_KILLS`` sets the number of kills (default 50, the CI run); ``ENGINE_CRASH_LONG=1`` runs 300.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.adapters.base import AdapterSettings
from engine.strategies.base import Strategy, register
from engine.types import OrderType, Side, Signal, TradeTick, Venue

ROOT = Path(__file__).resolve().parents[2]
KEY = "crash-test-key"
SECRET = "crash-test-secret"
D = Decimal


@register
class CrashFlipper(Strategy):
    """Trades all the time: every ``every_ms`` a market order alternating buy/sell (``qty``), and every
    third time a resting limit buy 5% under the last trade (open orders to reconcile)."""

    name = "crash_flipper"

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self.every_ms = int(params.get("every_ms", 200))
        self.qty = D(str(params.get("qty", "0.005")))
        self._last: dict[str, int] = {}
        self._n = itertools.count()

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        if trade.symbol != "BTCUSDT":
            return []
        last = self._last.get(trade.symbol, 0)
        if trade.ts_ms - last < self.every_ms:
            return []
        self._last[trade.symbol] = trade.ts_ms
        n = next(self._n)
        if n % 3 == 2:
            price = (trade.price * D("0.95")).quantize(D("0.1"))
            return [
                Signal(
                    venue=trade.venue,
                    symbol=trade.symbol,
                    side=Side.BUY,
                    type=OrderType.LIMIT,
                    qty=self.qty,
                    limit_price=price,
                    strategy=self.name,
                    reason="rest",
                )
            ]
        side = Side.BUY if n % 2 == 0 else Side.SELL
        return [
            Signal(
                venue=trade.venue,
                symbol=trade.symbol,
                side=side,
                type=OrderType.MARKET,
                qty=self.qty,
                strategy=self.name,
                reason="flip",
            )
        ]


def child_main(argv: Sequence[str]) -> int:
    """The engine process: ``engine`` with this module's strategy registered."""
    from engine.cli import main

    return main(list(argv))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, port: int) -> Path:
    cfg = tmp / "crash.toml"
    cfg.write_text(
        f"""
[engine]
mode = "live"
admin_socket = "{tmp}/adm/engine.sock"
state_dir = "{tmp}/state"
log_level = "info"
cancel_on_stop = false

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT"]
rest_url = "http://127.0.0.1:{port}"
ws_public_url = "ws://127.0.0.1:{port}"
ws_private_url = "ws://127.0.0.1:{port}"
api_key_env = "CRASH_KEY"
api_secret_env = "CRASH_SECRET"

[strategy]
name = "crash_flipper"
params = {{ every_ms = 150, qty = "0.005" }}

[risk]
max_order_notional = "1000000"
""",
    )
    return cfg


async def _admin(sock: Path, cmd: str) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    try:
        writer.write(orjson.dumps({"id": 1, "cmd": cmd, "args": {}}) + b"\n")
        await writer.drain()
        reply = orjson.loads(await asyncio.wait_for(reader.readline(), 10))
    finally:
        writer.close()
    if not reply.get("ok"):
        raise AssertionError(f"admin {cmd}: {reply}")
    return reply["result"]


async def _wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str | None:
    """The first stdout line matching ``pattern``, or None when the process exits/times out first."""
    assert proc.stdout is not None
    stdout = proc.stdout
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:  # on a time-out the caller kills the process, which ends the blocked readline
            line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), left)
        except TimeoutError:
            return None
        if not line:
            return None
        if re.search(pattern, line):
            return line
    return None


@pytest.fixture
def crash_kills() -> int:
    if os.environ.get("ENGINE_CRASH_LONG"):
        return 300
    return int(os.environ.get("ENGINE_CRASH_KILLS", "50"))


async def test_engine_when_killed_9_repeatedly_then_no_duplicates_and_state_equals_venue(
    tmp_path: Path, crash_kills: int
) -> None:
    from engine.adapters.binance import BinanceAdapter
    from engine.journal import Journal

    port = _free_port()
    venue = subprocess.Popen(
        [sys.executable, "-m", "engine", "venue", "--port", str(port), "--account", f"{KEY}:{SECRET}:100000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cfg = _config(tmp_path, port)
    env = {**os.environ, "CRASH_KEY": KEY, "CRASH_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    env["ENGINE_JOURNAL_CRASH"] = "after_intent=0.05,before_ack=0.05"
    rng = random.Random(int(os.environ.get("ENGINE_CRASH_SEED", "7")))
    started = time.monotonic()
    kills = injected = checks = 0
    events: list[Any] = []
    adapter: BinanceAdapter | None = None
    try:
        assert await _wait_line(venue, r"venue: accounts", 30) is not None, "the venue did not start"
        settings = AdapterSettings(
            venue=Venue.BINANCE,
            rest_url=f"http://127.0.0.1:{port}",
            ws_public_url=f"ws://127.0.0.1:{port}",
            ws_private_url=f"ws://127.0.0.1:{port}",
            api_key=KEY,
            api_secret=SECRET,
            symbols=("BTCUSDT",),
        )
        adapter = BinanceAdapter(settings, events.append)
        await adapter.connect()
        sock = tmp_path / "adm" / "engine.sock"
        while kills < crash_kills:
            engine = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys, tests.journal.test_crash as t; sys.exit(t.child_main(sys.argv[1:]))",
                    "run",
                    "--config",
                    str(cfg),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                ready = await _wait_line(engine, r"admin socket:", 30)
                if ready is not None and kills % 2 == 0 and engine.poll() is None:
                    # after the restart (recovery done): trade a little, pause, compare with the venue
                    await asyncio.sleep(rng.uniform(0.1, 0.6))
                    with contextlib.suppress(OSError, AssertionError, TimeoutError):
                        await _admin(sock, "pause")
                        await asyncio.sleep(0.4)
                        if engine.poll() is None:
                            await _check(sock, adapter)
                            checks += 1
                            await _admin(sock, "resume")
                await asyncio.sleep(rng.uniform(0.0, 0.6))
            finally:
                if engine.poll() is None:
                    engine.send_signal(signal.SIGKILL)
                else:
                    injected += 1  # it killed itself at an injected crash point (or died: see below)
                rc = engine.wait()
                kills += 1
            if rc not in (-signal.SIGKILL,):
                out = engine.stdout.read() if engine.stdout else ""
                raise AssertionError(f"the engine exited with {rc}, not by SIGKILL:\n{out[-3000:]}")
        # one last clean start: recovery, then compare everything
        engine = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, tests.journal.test_crash as t; sys.exit(t.child_main(sys.argv[1:]))",
                "run",
                "--config",
                str(cfg),
            ],
            cwd=ROOT,
            env={k: v for k, v in env.items() if k != "ENGINE_JOURNAL_CRASH"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert await _wait_line(engine, r"admin socket:", 30) is not None
        await _admin(sock, "pause")
        await asyncio.sleep(0.5)
        await _check(sock, adapter)
        checks += 1
        await _admin(sock, "stop")
        assert engine.wait(30) == 0
        journal = Journal(tmp_path / "state" / "journal.sqlite")
        await journal.start()
        try:
            intents = {i.client_order_id for i in await journal.intents()}
            never_sent = {
                o.client_order_id
                for o in await journal.outcomes()
                if o.kind == "closed" and o.data.get("reason") == "never_sent"
            }
        finally:
            await journal.close()
        venue_cids = {
            str(t["orderId"]): t for t in await adapter.rest.client.futures_account_trades(symbol="BTCUSDT")
        }
        open_cids = {o.client_order_id for o in await adapter.open_orders()}
        assert open_cids <= intents, f"open venue orders the journal never saw: {open_cids - intents}"
        assert not (never_sent & open_cids)
        elapsed = time.monotonic() - started
        print(
            f"\ncrash test: kills={kills} injected={injected} checks={checks} intents={len(intents)} "
            f"never_sent={len(never_sent)} venue_trades={len(venue_cids)} elapsed_s={elapsed:.1f}"
        )
    finally:
        if adapter is not None:
            await adapter.close()
        venue.send_signal(signal.SIGTERM)
        try:
            venue.wait(10)
        except subprocess.TimeoutExpired:
            venue.kill()
            venue.wait()


async def _check(sock: Path, adapter: Any) -> None:
    """The engine's open orders and positions equal the venue's; every venue open order is journaled
    (checked at the end) and appears once."""
    eng_orders = await _admin(sock, "orders")
    eng_positions = await _admin(sock, "positions")
    venue_orders = await adapter.open_orders()
    venue_positions = [p for p in await adapter.positions() if p.qty]
    venue_ids = [o.client_order_id for o in venue_orders]
    assert len(venue_ids) == len(set(venue_ids)), "a client order id twice on the venue"
    eng_open = {
        o["client_order_id"] for o in eng_orders if o["status"] in ("new", "partially_filled", "untriggered")
    }
    assert eng_open == set(venue_ids), (sorted(eng_open - set(venue_ids)), sorted(set(venue_ids) - eng_open))
    eng_pos = {(p["symbol"], D(p["qty"])) for p in eng_positions if D(p["qty"])}
    ven_pos = {(p.symbol, p.qty) for p in venue_positions}
    assert eng_pos == ven_pos, (eng_pos, ven_pos)
