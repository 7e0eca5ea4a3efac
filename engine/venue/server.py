"""The local venue's server: one aiohttp application on one port serving both venues.

``VenueServer`` (an async context manager) builds the exchange core on a shiftable wall clock,
registers the Binance front-end (``/fapi``, ``/api/v3``, ``/public``, ``/market``, ``/private``,
``/ws``, ``/stream``), the Bybit front-end (``/v5/...``) and the control API (``/_venue/...``), and
runs the market: a background task calls ``core.advance(now)`` every ``tick_ms``.

``run_venue`` is what ``engine venue`` runs: accounts from ``--account KEY:SECRET:USDT`` or the venue
config (TOML), else one paper account whose key and secret go to a 0600 file; it serves on uvloop
until SIGINT/SIGTERM.

Venue config::

    [venue]
    host = "127.0.0.1"
    port = 8765
    seed = 7
    tick_ms = 50
    funding_interval_s = 28800

    [[venue.accounts]]
    key = "paper"
    secret_env = "VENUE_SECRET"       # or: secret = "..."
    usdt = "10000"

    [venue.faults]                    # FaultPlan fields
    http_5xx = 0

    [venue.rate_limits]               # Binance limits (BinanceLimits fields)
    weight_per_minute = 2400

    [venue.bybit_rate_limits]         # Bybit per-UID requests per second, by endpoint (overrides
    "/v5/order/create" = 10           # engine.venue.bybit.rest.ENDPOINT_LIMITS entry by entry)

    [venue.bybit_ip_limits]           # Bybit per-IP window (BybitIpLimits fields): more than
    requests_per_window = 600         # requests_per_window in a rolling window_ms answers HTTP 403
    window_ms = 5000                  # and bans the IP for ban_ms
    ban_ms = 600000

    [venue.instruments.BTCUSDT]       # instrument overrides (engine.venue.instruments)
    min_notional = "5"
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from engine.errors import ConfigError
from engine.venue import control, faults
from engine.venue.binance import LIMITS_KEY, LISTEN_KEY_VALIDITY_KEY, QUEUE_LIMIT_KEY
from engine.venue.binance import setup as binance_setup
from engine.venue.bybit import setup as bybit_setup
from engine.venue.bybit.rest import ENDPOINT_LIMITS as BYBIT_ENDPOINT_LIMITS
from engine.venue.context import VenueContext
from engine.venue.model import ExchangeCore, FaultPlan
from engine.venue.ratelimit import BinanceLimits, BybitIpLimits

__all__ = [
    "AccountSpec",
    "ShiftableClock",
    "VenueConfig",
    "VenueServer",
    "load_venue_config",
    "parse_account",
    "run_venue",
]

log = logging.getLogger("engine.venue.server")


class ShiftableClock:
    """Wall-clock epoch ms plus an offset that only grows (``/_venue/advance`` moves it forward)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def shift(self, ms: int) -> None:
        if ms < 0:
            raise ValueError(f"the venue clock only moves forward, got {ms} ms")
        self.offset_ms += ms


@dataclass(frozen=True)
class AccountSpec:
    key: str
    secret: str = field(repr=False)
    usdt: Decimal


@dataclass(frozen=True, kw_only=True)
class VenueConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 7
    tick_ms: int = 50
    funding_interval_s: int | None = None
    accounts: tuple[AccountSpec, ...] = ()
    faults: Mapping[str, object] = field(default_factory=dict)
    rate_limits: BinanceLimits = field(default_factory=BinanceLimits)
    bybit_rate_limits: Mapping[str, int] = field(default_factory=dict)
    bybit_ip_limits: BybitIpLimits = field(default_factory=BybitIpLimits)
    instruments: Mapping[str, Any] = field(default_factory=dict)
    listen_key_validity_ms: int = 60 * 60 * 1000
    ws_queue_limit: int = 10_000


def parse_account(text: str) -> AccountSpec:
    """``KEY:SECRET:USDT_BALANCE`` (the secret may itself contain ':'). Raises ValueError."""
    head, sep, balance = text.rpartition(":")
    key, sep2, secret = head.partition(":")
    if not sep or not sep2 or not key or not secret or not balance:
        raise ValueError("--account must be KEY:SECRET:USDT_BALANCE, e.g. mykey:mysecret:10000")
    if not key.isprintable() or " " in key:
        raise ValueError("--account: KEY must be printable with no spaces")
    try:
        usdt = Decimal(balance)
    except InvalidOperation:
        raise ValueError(f"--account: USDT_BALANCE {balance!r} is not a decimal number") from None
    if not usdt.is_finite() or usdt < 0:
        raise ValueError(f"--account: USDT_BALANCE must be >= 0, got {balance!r}")
    return AccountSpec(key=key, secret=secret, usdt=usdt)


_VENUE_KEYS = {
    "host",
    "port",
    "seed",
    "tick_ms",
    "funding_interval_s",
    "accounts",
    "faults",
    "rate_limits",
    "bybit_rate_limits",
    "bybit_ip_limits",
    "instruments",
    "listen_key_validity_s",
    "ws_queue_limit",
}


_L = TypeVar("_L", BinanceLimits, BybitIpLimits)


def _limits_table(path: str, venue: dict[str, Any], key: str, cls: type[_L]) -> _L:
    """``[venue.<key>]``: a table of ``cls``'s integer fields (each 1..10**12); unknown keys refused."""
    table = venue.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(path=path, key=f"venue.{key}", reason="must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    for name, value in table.items():
        if name not in known:
            raise ConfigError(
                path=path, key=f"venue.{key}.{name}", reason=f"unknown key; known: {', '.join(sorted(known))}"
            )
        _int(path, f"venue.{key}.{name}", value, lo=1, hi=10**12)
    return cls(**table)


def _int(path: str, key: str, value: object, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path=path, key=key, reason=f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(path=path, key=key, reason=f"must be within {lo}..{hi}, got {value}")
    return value


def load_venue_config(path: str) -> VenueConfig:
    """Read and validate a venue config file; every error names the file and the key."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path=path, key="-", reason=f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path=path, key="-", reason=f"not valid TOML: {exc}") from None
    unknown_top = set(data) - {"venue"}
    if unknown_top:
        raise ConfigError(path=path, key=sorted(unknown_top)[0], reason="unknown key (expected [venue])")
    venue = data.get("venue", {})
    if not isinstance(venue, dict):
        raise ConfigError(path=path, key="venue", reason="must be a table")
    unknown = set(venue) - _VENUE_KEYS
    if unknown:
        raise ConfigError(path=path, key=f"venue.{sorted(unknown)[0]}", reason="unknown key")
    kwargs: dict[str, Any] = {}
    if "host" in venue:
        if not isinstance(venue["host"], str) or not venue["host"]:
            raise ConfigError(path=path, key="venue.host", reason="must be a non-empty string")
        kwargs["host"] = venue["host"]
    if "port" in venue:
        kwargs["port"] = _int(path, "venue.port", venue["port"], lo=0, hi=65535)
    if "seed" in venue:
        kwargs["seed"] = _int(path, "venue.seed", venue["seed"], lo=0, hi=2**31)
    if "tick_ms" in venue:
        kwargs["tick_ms"] = _int(path, "venue.tick_ms", venue["tick_ms"], lo=1, hi=60_000)
    if "funding_interval_s" in venue:
        kwargs["funding_interval_s"] = _int(
            path, "venue.funding_interval_s", venue["funding_interval_s"], lo=1, hi=7 * 86400
        )
    if "listen_key_validity_s" in venue:
        kwargs["listen_key_validity_ms"] = 1000 * _int(
            path, "venue.listen_key_validity_s", venue["listen_key_validity_s"], lo=1, hi=86400
        )
    if "ws_queue_limit" in venue:
        kwargs["ws_queue_limit"] = _int(
            path, "venue.ws_queue_limit", venue["ws_queue_limit"], lo=10, hi=10_000_000
        )
    accounts: list[AccountSpec] = []
    raw_accounts = venue.get("accounts", [])
    if not isinstance(raw_accounts, list):
        raise ConfigError(
            path=path, key="venue.accounts", reason="must be an array of tables ([[venue.accounts]])"
        )
    for i, acct in enumerate(raw_accounts):
        prefix = f"venue.accounts[{i}]"
        if not isinstance(acct, dict):
            raise ConfigError(path=path, key=prefix, reason="must be a table")
        extra = set(acct) - {"key", "secret", "secret_env", "usdt"}
        if extra:
            raise ConfigError(path=path, key=f"{prefix}.{sorted(extra)[0]}", reason="unknown key")
        key = acct.get("key")
        if not isinstance(key, str) or not key:
            raise ConfigError(path=path, key=f"{prefix}.key", reason="must be a non-empty string")
        if ("secret" in acct) == ("secret_env" in acct):
            raise ConfigError(
                path=path, key=f"{prefix}.secret_env", reason="give exactly one of secret, secret_env"
            )
        if "secret_env" in acct:
            env = acct["secret_env"]
            if not isinstance(env, str) or not env:
                raise ConfigError(
                    path=path, key=f"{prefix}.secret_env", reason="must name an environment variable"
                )
            secret = os.environ.get(env, "")
            if not secret:
                raise ConfigError(
                    path=path, key=f"{prefix}.secret_env", reason=f"environment variable {env} is not set"
                )
        else:
            secret = acct["secret"]
            if not isinstance(secret, str) or not secret:
                raise ConfigError(path=path, key=f"{prefix}.secret", reason="must be a non-empty string")
        usdt_raw = acct.get("usdt", "0")
        if isinstance(usdt_raw, bool) or not isinstance(usdt_raw, str | int):
            raise ConfigError(
                path=path, key=f"{prefix}.usdt", reason="must be a decimal string or an integer"
            )
        try:
            usdt = Decimal(str(usdt_raw))
        except InvalidOperation:
            raise ConfigError(
                path=path, key=f"{prefix}.usdt", reason=f"not a decimal number: {usdt_raw!r}"
            ) from None
        if not usdt.is_finite() or usdt < 0:
            raise ConfigError(path=path, key=f"{prefix}.usdt", reason="must be >= 0")
        accounts.append(AccountSpec(key=key, secret=secret, usdt=usdt))
    kwargs["accounts"] = tuple(accounts)
    fault_table = venue.get("faults", {})
    if not isinstance(fault_table, dict):
        raise ConfigError(path=path, key="venue.faults", reason="must be a table")
    try:
        kwargs["faults"] = faults.validate_fault_update(fault_table)
    except faults.FaultUpdateError as exc:
        raise ConfigError(path=path, key="venue.faults", reason=str(exc)) from None
    kwargs["rate_limits"] = _limits_table(path, venue, "rate_limits", BinanceLimits)
    bybit_table = venue.get("bybit_rate_limits", {})
    if not isinstance(bybit_table, dict):
        raise ConfigError(
            path=path,
            key="venue.bybit_rate_limits",
            reason="must be a table of endpoint = requests per second",
        )
    for name, value in bybit_table.items():
        if name not in BYBIT_ENDPOINT_LIMITS:
            raise ConfigError(
                path=path,
                key=f"venue.bybit_rate_limits.{name}",
                reason=f"unknown endpoint; known: {', '.join(sorted(BYBIT_ENDPOINT_LIMITS))}",
            )
        _int(path, f"venue.bybit_rate_limits.{name}", value, lo=1, hi=1_000_000)
    kwargs["bybit_rate_limits"] = dict(bybit_table)
    kwargs["bybit_ip_limits"] = _limits_table(path, venue, "bybit_ip_limits", BybitIpLimits)
    instruments = venue.get("instruments", {})
    if not isinstance(instruments, dict):
        raise ConfigError(path=path, key="venue.instruments", reason="must be a table keyed by symbol")
    from engine.venue.instruments import load_instruments, load_start_prices

    try:
        specs = load_instruments({"instruments": instruments})
        load_start_prices({"instruments": instruments}, specs)
    except ValueError as exc:
        raise ConfigError(path=path, key=f"venue.{exc}".split(":")[0], reason=str(exc)) from None
    kwargs["instruments"] = instruments
    return VenueConfig(**kwargs)


class VenueServer:
    """The venue on one port: ``async with VenueServer(...) as v`` serves until the block exits."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        core: ExchangeCore | None = None,
        accounts: Sequence[AccountSpec] = (),
        seed: int = 7,
        tick_ms: int = 50,
        config: VenueConfig | None = None,
        fault_plan: FaultPlan | None = None,
        clock: ShiftableClock | None = None,
    ) -> None:
        self.config = config or VenueConfig()
        self.host = host
        self._port = port
        self.tick_ms = tick_ms
        self.clock: ShiftableClock | None = clock  # the given core's clock, if it is shiftable
        if core is None:
            from engine.venue.exchange import Exchange

            self.clock = ShiftableClock()
            funding = self.config.funding_interval_s
            core = Exchange(
                seed=seed,
                clock=self.clock,
                config={"instruments": dict(self.config.instruments)} if self.config.instruments else None,
                funding_interval_ms=funding * 1000 if funding is not None else None,
            )
        self.core: ExchangeCore = core
        self.ctx = VenueContext(core=core, faults=fault_plan or FaultPlan())
        if self.config.faults:
            faults.apply_fault_update(self.ctx.faults, self.config.faults)
        self.accounts: list[AccountSpec] = list(accounts) or list(self.config.accounts)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app[LIMITS_KEY] = self.config.rate_limits
        app[LISTEN_KEY_VALIDITY_KEY] = self.config.listen_key_validity_ms
        app[QUEUE_LIMIT_KEY] = self.config.ws_queue_limit
        app[control.ACCOUNTS_KEY] = []
        if self.clock is not None:
            app[control.SHIFT_CLOCK_KEY] = self.clock.shift
        binance_setup(app, self.ctx)
        bybit_setup(
            app,
            self.ctx,
            rate_limits=self.config.bybit_rate_limits,
            ip_limits=self.config.bybit_ip_limits,
            queue_limit=self.config.ws_queue_limit,
        )
        control.setup(app, self.ctx)
        return app

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self._port}"

    @property
    def _url_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def account(self) -> AccountSpec:
        """The first account (the paper account when the venue created one)."""
        return self.accounts[0]

    async def start(self) -> None:
        for acct in self.accounts:
            self.add_account(acct)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None)  # asyncio and uvloop servers both have them
        if not sockets:
            await runner.cleanup()
            raise OSError(f"the venue could not bind {self.host}:{self._port}")
        self._port = int(sockets[0].getsockname()[1])
        self._ticker = asyncio.create_task(self._tick_loop(), name="venue-ticker")
        log.info("venue_started host=%s port=%d accounts=%d", self.host, self._port, len(self.accounts))

    def add_account(self, acct: AccountSpec) -> None:
        if self.core.secret_for(acct.key) is None:
            self.core.add_account(api_key=acct.key, api_secret=acct.secret, deposit=acct.usdt)
        if acct.key not in self.app[control.ACCOUNTS_KEY]:
            self.app[control.ACCOUNTS_KEY].append(acct.key)
        if acct not in self.accounts:
            self.accounts.append(acct)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await faults.ws_registry(self.ctx).drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("venue_stopped port=%d", self._port)

    async def __aenter__(self) -> VenueServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _tick_loop(self) -> None:
        period = self.tick_ms / 1000.0
        ctx = self.ctx
        while True:
            await asyncio.sleep(period)
            try:
                self.core.advance(self.core.now_ms())
                while ctx.faults.ws_drop > 0:
                    ctx.faults.ws_drop -= 1
                    ctx.count("faults.ws_drop")
                    await faults.ws_registry(ctx).drop_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # counted and logged; the market keeps running
                ctx.count("venue.tick_errors")
                log.exception("venue_tick_failed")


# ---- engine venue ---------------------------------------------------------------------------------


def _write_paper_account(acct: AccountSpec, path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"api_key": acct.key, "api_secret": acct.secret, "usdt": str(acct.usdt)}, fh)
        fh.write("\n")
    os.chmod(path, 0o600)


def run_venue(
    *,
    host: str,
    port: int,
    config_path: str | None,
    accounts: Sequence[str],
    seed: int,
    account_file: str = "var/venue-account.json",
) -> int:
    """``engine venue``: serve until SIGINT/SIGTERM; 0 on a clean stop, 2 on a bad argument/config."""
    try:
        config = (
            load_venue_config(config_path) if config_path else VenueConfig(host=host, port=port, seed=seed)
        )
        parsed = [parse_account(a) for a in accounts]
    except (ConfigError, ValueError) as exc:
        print(f"engine venue: {exc}", file=sys.stderr)
        return 2
    if config_path:
        # explicit command-line values win over the file's
        if host != "127.0.0.1":
            config = dataclasses.replace(config, host=host)
        if port != 8765:
            config = dataclasses.replace(config, port=port)
        if seed != 7:
            config = dataclasses.replace(config, seed=seed)
    account_list = parsed or list(config.accounts)
    paper_path: Path | None = None
    if not account_list:
        paper = AccountSpec(key=secrets.token_hex(16), secret=secrets.token_hex(32), usdt=Decimal("10000"))
        paper_path = Path(account_file).resolve()
        _write_paper_account(paper, paper_path)
        account_list = [paper]

    import uvloop

    async def main() -> None:
        server = VenueServer(
            host=config.host,
            port=config.port,
            seed=config.seed,
            tick_ms=config.tick_ms,
            config=config,
            accounts=account_list,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            print(
                f"venue: Binance REST  {server.base_url}/fapi  (spot ping/time under {server.base_url}/api)"
            )
            print(
                f"venue: Binance WS    {server.ws_url}/public  {server.ws_url}/market  "
                f"{server.ws_url}/private"
            )
            print(
                f"venue: Bybit REST    {server.base_url}/v5   "
                f"WS {server.ws_url}/v5/public/linear  {server.ws_url}/v5/private"
            )
            print(f"venue: control       {server.base_url}/_venue/state")
            if paper_path is not None:
                print(f"venue: paper account key and secret written to {paper_path}")
            print(f"venue: accounts {', '.join(a.key for a in server.accounts)}", flush=True)
            await stop.wait()
        print("venue: stopped", flush=True)

    try:
        uvloop.run(main())
    except OSError as exc:
        print(f"engine venue: cannot serve on {config.host}:{config.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
