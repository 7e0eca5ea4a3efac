"""Issue 7's crash test: ``engine run`` trading actively against the local venue (its own process, so it
outlives the engine), killed with SIGKILL again and again and restarted each time.

Kill moments, in a fixed rotation (so every kind is covered in every run, whatever the seed):

- ``startup``: an external SIGKILL at a random moment of the start-up (connect, instruments, recovery);
- ``random``: an external SIGKILL at a random moment while it trades;
- ``after_intent``: the journal's crash injection right after an intent commits, before the send;
- ``before_ack``: the injection right after the venue acknowledged an order, before the ack is journaled
  (it also fires when recovery journals an adopted order's ack: a crash in the middle of recovery).

After each restart (as soon as recovery is done and the admin socket is up) the engine is paused and
checked against the venue (:func:`_check`): its open orders and positions (quantity and entry price)
equal the venue's, no client order id is open twice on the venue, and its PnL baseline (the restored
start-of-day equity) has not been reset. A check the engine dies in the middle of (an injected crash of
an order sent before the pause) is not counted; any other failed check fails the test.

At the end a last clean start (a quiet strategy: recovery only) and the whole history is compared
(:func:`_ledger`):

- no duplicates / no unknown orders: every trade in the venue's account history belongs to an order the
  journal has an intent for (the journal names its venue order id), every intent maps to at most one
  venue order, and every intent the journal closed as ``never_sent`` is unknown to the venue;
- every intent's final state in the journal equals the venue's: open or finished, and the filled quantity;
- PnL: the venue's account history (per-trade ``realizedPnl`` and ``commission`` from ``userTrades``)
  adds up to the venue account's realized PnL and fees; the engine's PnL after recovery (its wallet,
  ``equity - unrealized``, against its restored start-of-day equity) equals that history's
  ``realized - fees + funding`` exactly; and every fill the journal holds equals the venue's trade with
  that id (price, quantity, fee, realized PnL); and every venue trade is in the journal's fills, those
  that happened while no engine was running (inside a kill window) too: recovery fetches the trades of
  every order that traded and journals them (no gap).

The venue runs with a config raising its Binance rate limits (the engine's limiter follows the limits the
venue announces in exchangeInfo): 50 start-ups a minute need more than the production default of 2400
weight a minute. Production defaults are unchanged.

``ENGINE_CRASH_KILLS`` sets the number of kills (default 50, the CI run); ``ENGINE_CRASH_LONG=1`` runs 300.
``ENGINE_CRASH_SEED`` seeds the kill times (default 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.adapters.base import AdapterSettings
from engine.strategies.base import Strategy, register
from engine.types import Signal, TradeTick, Venue
from tests.support import trading
from tests.support.processes import admin, free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "crash-test-key"
SECRET = "crash-test-secret"
DEPOSIT = Decimal("100000")
MONEY = Decimal("0.00000001")  # the venue's money grid
D = Decimal
MODES = ("startup", "random", "after_intent", "before_ack")


@register
class CrashFlipper(Strategy):
    """Trades all the time: every ``every_ms`` a market order alternating buy/sell (``qty``), and every
    third time a resting limit buy 5% under the last trade (open orders to reconcile). ``quiet = true``
    sends nothing (the final start: recovery only)."""

    name = "crash_flipper"

    def __init__(self, *, params: Mapping[str, Any], symbols: Sequence[tuple[Venue, str]]) -> None:
        super().__init__(params=params, symbols=symbols)
        self.every_ms = int(params.get("every_ms", 200))
        self.qty = D(str(params.get("qty", "0.005")))
        self.quiet = bool(params.get("quiet", False))
        self._last: dict[str, int] = {}
        self._n = itertools.count()

    def on_trade(self, trade: TradeTick) -> list[Signal]:
        if self.quiet or trade.symbol != "BTCUSDT":
            return []
        last = self._last.get(trade.symbol, 0)
        if trade.ts_ms - last < self.every_ms:
            return []
        self._last[trade.symbol] = trade.ts_ms
        n = next(self._n)
        if n % 3 == 2:
            price = (trade.price * D("0.95")).quantize(D("0.1"))
            return [trading.rest(trade, price, self.qty, self.name)]
        return [trading.flip(trade, n, self.qty, self.name)]


#: The test venue's Binance limits (its ``[venue.rate_limits]``, announced in its exchangeInfo).
VENUE_LIMITS: Mapping[str, int] = {
    "weight_per_minute": 1_000_000,
    "orders_per_10s": 100_000,
    "orders_per_minute": 1_000_000,
}


def child_main(argv: Sequence[str]) -> int:
    """The engine process: ``engine`` with this module's strategy registered. The Binance adapter reads
    exchangeInfo (unsigned) before anything else and runs on the limits this test's venue announces
    (``VENUE_LIMITS``) from its first request on."""
    from engine.cli import main

    return main(list(argv))


def _venue_config(tmp: Path, port: int) -> Path:
    """The venue: one account, and Binance limits high enough for 50+ engine start-ups a minute (each
    start-up costs ~60 weight: exchangeInfo, leverageBracket, position mode, snapshot, reconcile...)."""
    cfg = tmp / "venue.toml"
    cfg.write_text(
        f"""
[venue]
port = {port}
seed = 11

[[venue.accounts]]
key = "{KEY}"
secret = "{SECRET}"
usdt = "{DEPOSIT}"

[venue.rate_limits]
"""
        + "".join(f"{k} = {v}\n" for k, v in VENUE_LIMITS.items()),
    )
    return cfg


def _config(tmp: Path, port: int, *, quiet: bool = False) -> Path:
    cfg = tmp / ("crash-quiet.toml" if quiet else "crash.toml")
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
params = {{ every_ms = 100, qty = "0.005", quiet = {"true" if quiet else "false"} }}

[risk]
max_order_notional = "1000000"
""",
    )
    return cfg


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


async def _wait_exit(proc: subprocess.Popen[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return proc.poll() is not None


def _spawn(cfg: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, tests.journal.test_crash as t; sys.exit(t.child_main(sys.argv[1:]))",
            "run",
            "--config",
            str(cfg),
        ],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@dataclass
class _Stats:
    kills: Counter[str] = field(default_factory=Counter)  # by how: startup/random/after_intent/...
    checks: int = 0
    checks_cut: int = 0  # the engine died (an injected crash) in the middle of a check
    start_s: list[float] = field(default_factory=list)
    baseline: str | None = None  # the first start-of-day equity the engine reported


@pytest.fixture
def crash_kills() -> int:
    if os.environ.get("ENGINE_CRASH_LONG"):
        return 300
    return int(os.environ.get("ENGINE_CRASH_KILLS", "50"))


async def test_engine_when_killed_9_repeatedly_then_no_duplicates_and_state_equals_venue(
    tmp_path: Path, crash_kills: int
) -> None:
    from engine.adapters.binance import BinanceAdapter

    port = free_port()
    venue = subprocess.Popen(
        [sys.executable, "-m", "engine", "venue", "--config", str(_venue_config(tmp_path, port))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cfg = _config(tmp_path, port)
    base_env = {**os.environ, "CRASH_KEY": KEY, "CRASH_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    base_env.pop("ENGINE_JOURNAL_CRASH", None)
    rng = random.Random(int(os.environ.get("ENGINE_CRASH_SEED", "7")))
    started = time.monotonic()
    stats = _Stats()
    log_path = tmp_path / "state" / "engine.log"
    events: list[Any] = []
    adapter: BinanceAdapter | None = None
    http: aiohttp.ClientSession | None = None
    sock = tmp_path / "adm" / "engine.sock"
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
        http = aiohttp.ClientSession()
        startup_s = 1.0  # refined from the measured start-ups
        kills = 0
        while kills < crash_kills:
            mode = MODES[kills % len(MODES)]
            env = dict(base_env)
            if mode in ("after_intent", "before_ack"):
                env["ENGINE_JOURNAL_CRASH"] = f"{mode}=0.3"
            log_at = log_path.stat().st_size if log_path.exists() else 0
            t0 = time.monotonic()
            engine = _spawn(cfg, env)
            try:
                if mode == "startup":
                    await asyncio.sleep(rng.uniform(0.3, 1.0) * startup_s)
                else:
                    ready = await _wait_line(engine, r"admin socket:", 30)
                    if ready is not None and engine.poll() is None:
                        stats.start_s.append(time.monotonic() - t0)
                        startup_s = statistics.median(stats.start_s)
                        await _checked(sock, adapter, http, port, engine, stats)
                    if mode == "random":
                        await asyncio.sleep(rng.uniform(0.05, 0.6))
                    else:  # trade until the injected crash fires (or give up and kill it)
                        await _wait_exit(engine, 3.0)
            finally:
                self_killed = engine.poll() is not None
                if not self_killed:
                    engine.send_signal(signal.SIGKILL)
                rc = engine.wait()
                kills += 1
            if rc != -signal.SIGKILL:
                out = engine.stdout.read() if engine.stdout else ""
                raise AssertionError(f"the engine exited with {rc}, not by SIGKILL ({mode}):\n{out[-3000:]}")
            if self_killed:
                points = re.findall(r"journal_crash_injected point=(\w+)", _log_since(log_path, log_at))
                assert points, f"the engine died by SIGKILL with no injected crash logged ({mode})"
                stats.kills[f"injected_{points[-1]}"] += 1
            else:
                stats.kills[f"external_{mode}"] += 1
        loop_s = time.monotonic() - started

        # one last clean start (a quiet strategy: recovery only), then the whole history
        engine = _spawn(_config(tmp_path, port, quiet=True), base_env)
        assert await _wait_line(engine, r"admin socket:", 30) is not None, "the final start failed"
        await _checked(sock, adapter, http, port, engine, stats)
        status = await admin(sock, "status")
        risk = await admin(sock, "risk")
        positions = await admin(sock, "positions")
        await admin(sock, "stop")
        assert await asyncio.to_thread(engine.wait, 30) == 0
        summary = await _ledger(tmp_path, adapter, http, port, status, risk, positions)
        elapsed = time.monotonic() - started
        print(
            f"\ncrash test: kills={kills} ({', '.join(f'{k}={v}' for k, v in sorted(stats.kills.items()))}) "
            f"checks={stats.checks} checks_cut_by_crash={stats.checks_cut} "
            f"start_s median={statistics.median(stats.start_s):.2f} max={max(stats.start_s):.2f} "
            f"loop_s={loop_s:.1f} elapsed_s={elapsed:.1f}\n"
            f"crash test ledger: {summary}"
        )
        assert stats.kills["injected_after_intent"] >= 1, stats.kills
        assert stats.kills["injected_before_ack"] >= 1, stats.kills
        assert stats.checks >= kills // 2, f"too few checks: {stats.checks} of {kills} restarts"
    finally:
        if http is not None:
            await http.close()
        if adapter is not None:
            await adapter.close()
        venue.send_signal(signal.SIGTERM)
        try:
            venue.wait(10)
        except subprocess.TimeoutExpired:
            venue.kill()
            venue.wait()


def _log_since(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def _venue_account(http: aiohttp.ClientSession, port: int) -> dict[str, str]:
    async with http.get(f"http://127.0.0.1:{port}/_venue/state") as r:
        body = await r.json()
    (acct,) = [a for a in body["accounts"] if a["key"] == KEY]
    return dict(acct)


async def _checked(
    sock: Path,
    adapter: Any,
    http: aiohttp.ClientSession,
    port: int,
    engine: subprocess.Popen[str],
    stats: Any,
) -> None:
    """Pause, compare with the venue, resume. A check the engine dies in (an injected crash of an order
    sent before the pause) is not counted; any other failure fails the test."""
    try:
        await admin(sock, "pause")
        await _check(sock, adapter, http, port, stats)
    except (AssertionError, OSError, TimeoutError, aiohttp.ClientError):
        if await _wait_exit(engine, 0.3):
            stats.checks_cut += 1
            return
        raise
    stats.checks += 1
    with contextlib.suppress(OSError, AssertionError, TimeoutError):
        await admin(sock, "resume")


async def _check(sock: Path, adapter: Any, http: aiohttp.ClientSession, port: int, stats: Any) -> None:
    """Paused: the engine's open orders and positions equal the venue's (orders sent before the pause
    settle within a moment: compared until equal, at most 3 s), no client order id twice on the venue,
    and the engine's PnL baseline is the one it had at its first start."""
    deadline = time.monotonic() + 3.0
    while True:
        eng_orders = await admin(sock, "orders")
        eng_positions = await admin(sock, "positions")
        venue_orders = await adapter.open_orders("BTCUSDT")
        venue_positions = [p for p in await adapter.positions() if p.qty]
        venue_ids = [o.client_order_id for o in venue_orders]
        eng_open = {
            o["client_order_id"]
            for o in eng_orders
            if o["status"] in ("new", "partially_filled", "untriggered")
        }
        eng_pos = {(p["symbol"], D(p["qty"]), D(p["entry_price"])) for p in eng_positions if D(p["qty"])}
        ven_pos = {(p.symbol, p.qty, p.entry_price) for p in venue_positions}
        same = eng_open == set(venue_ids) and eng_pos == ven_pos
        if same or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(venue_ids) == len(set(venue_ids)), f"a client order id twice on the venue: {venue_ids}"
    assert eng_open == set(venue_ids), (
        "open orders differ (engine only, venue only)",
        sorted(eng_open - set(venue_ids)),
        sorted(set(venue_ids) - eng_open),
    )
    assert eng_pos == ven_pos, ("positions differ (engine, venue)", eng_pos, ven_pos)
    risk = await admin(sock, "risk")
    sod = risk.get("start_of_day_equity") or None
    if stats.baseline is None:
        stats.baseline = sod
    elif time.gmtime().tm_hour != 0 or time.gmtime().tm_min != 0:  # not across a UTC day change
        assert sod == stats.baseline, f"start-of-day equity reset by a restart: {stats.baseline} -> {sod}"


def _known_fills(outcomes: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per client order id, what the journal knows: whether it finished, the filled quantity (the last
    cumulative ``filled_qty`` recovery took from the venue plus the live fills journaled after it), the
    venue order ids it names, and whether it was closed as never sent."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"filled": D(0), "final": False, "never_sent": False, "venue_ids": set(), "trades": set()}
    )
    for o in outcomes:
        k = out[o.client_order_id]
        data = o.data
        if data.get("venue_order_id"):
            k["venue_ids"].add(str(data["venue_order_id"]))
        if "filled_qty" in data:  # recovery: the venue's cumulative view
            k["filled"] = D(data["filled_qty"])
            k["trades"] = set()
        elif o.kind == "fill" and "trade_id" in data and data["trade_id"] not in k["trades"]:
            k["trades"].add(data["trade_id"])
            k["filled"] += D(data["qty"])
        if o.kind in ("reject", "cancel", "expire", "closed") or (
            o.kind == "fill" and (data.get("final") or data.get("status") == "filled")
        ):
            k["final"] = True
        if o.kind == "closed" and data.get("reason") == "never_sent":
            k["never_sent"] = True
    return out


async def _ledger(
    tmp: Path,
    adapter: Any,
    http: aiohttp.ClientSession,
    port: int,
    status: Mapping[str, Any],
    risk: Mapping[str, Any],
    positions: Sequence[Mapping[str, Any]],
) -> str:
    """The whole history, journal against venue (see the module docstring). Returns a summary line."""
    from engine.journal import Journal

    journal = Journal(tmp / "state" / "journal.sqlite")
    await journal.start()
    try:
        intents = await journal.intents()
        outcomes = await journal.outcomes()
        fills = await journal.fills()
    finally:
        await journal.close()
    known = _known_fills(outcomes)
    trades = await adapter.rest.client.futures_account_trades(symbol="BTCUSDT", limit=1000)
    assert len(trades) < 1000, "more venue trades than one userTrades page: the history would be partial"

    # every intent against the venue's order with that client id
    venue_order_of: dict[str, Any] = {}
    never_sent = 0
    for intent in intents:
        cid = intent.client_order_id
        order = await adapter.get_order(intent.symbol, client_order_id=cid)
        k = known[cid]
        if order is None:
            assert k["final"] and not k["venue_ids"], f"{cid}: not on the venue, journal: {k}"
            never_sent += k["never_sent"]
            continue
        assert not k["never_sent"], f"{cid}: closed as never_sent but the venue has it: {order}"
        venue_order_of[order.venue_order_id] = (cid, order)
        assert k["venue_ids"] <= {order.venue_order_id}, f"{cid}: more than one venue order: {k}"
        assert k["final"] == (not order.status.is_open), f"{cid}: journal final={k['final']}, venue {order}"
        assert k["filled"] == order.filled_qty, f"{cid}: journal filled {k['filled']}, venue {order}"

    # every trade in the venue's history belongs to a journaled order; its quantities add up
    by_order: dict[str, D] = defaultdict(D)
    for t in trades:
        oid = str(t["orderId"])
        assert oid in venue_order_of, f"a venue trade of an order the journal never saw: {t}"
        by_order[oid] += D(t["qty"])
    for oid, (cid, order) in venue_order_of.items():
        assert by_order.get(oid, D(0)) == order.filled_qty, f"{cid}: trades {by_order.get(oid)} vs {order}"

    # PnL: the venue's account history, its trades, the engine's view after recovery, the journal's fills
    acct = await _venue_account(http, port)
    realized = sum((D(t["realizedPnl"]) for t in trades), D(0))
    fees = sum((D(t["commission"]) for t in trades), D(0))
    assert realized == D(acct["realized_pnl"]), (realized, acct)
    assert fees == D(acct["fees_paid"]), (fees, acct)
    venue_net = D(acct["realized_pnl"]) - D(acct["fees_paid"]) + D(acct["funding"])
    assert D(acct["wallet_balance"]) == D(acct["deposits"]) + venue_net, acct
    # the engine's wallet: its equity less its unrealized PnL, on the venue's money grid (8 decimals; the
    # engine's unrealized PnL strings carry more digits than the venue's wallet)
    eng_unrealized = sum((D(p["unrealized_pnl"]) for p in positions), D(0))
    eng_wallet = (D(risk["equity"]) - eng_unrealized).quantize(MONEY)
    sod = D(risk["start_of_day_equity"])
    assert eng_wallet == D(acct["wallet_balance"]), ("engine wallet vs venue", eng_wallet, acct, status)
    assert sod == D(acct["deposits"]), ("the engine's PnL baseline is not the first start's", sod, acct)
    assert eng_wallet - sod == venue_net, ("engine PnL vs the venue's account history", eng_wallet - sod)

    by_trade = {str(t["id"]): t for t in trades}
    for f in fills:
        t = by_trade.get(f.trade_id)
        assert t is not None, f"a journaled fill the venue does not have: {f}"
        assert (D(t["price"]), D(t["qty"]), D(t["commission"]), D(t["realizedPnl"])) == (
            f.price,
            f.qty,
            f.fee,
            f.realized_pnl,
        ), (t, f)
    journaled = {f.trade_id for f in fills}
    missing = [t for t in trades if str(t["id"]) not in journaled]
    assert not missing, f"{len(missing)} venue trades not in the journal's fills: {missing[:3]}"
    j_net = sum((f.realized_pnl - f.fee for f in fills), D(0))
    assert j_net == realized - fees, ("journal fills vs the venue's trade history", j_net, realized - fees)
    return (
        f"intents={len(intents)} venue_orders={len(venue_order_of)} never_sent={never_sent} "
        f"venue_trades={len(trades)} journaled_fills={len(fills)} trades_not_in_journal={len(missing)} "
        f"venue realized={acct['realized_pnl']} fees={acct['fees_paid']} funding={acct['funding']} "
        f"net={venue_net} engine_net={eng_wallet - sod} journal_fills_net={j_net}"
    )
