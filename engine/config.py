"""TOML config -> validated, frozen settings; secrets from the environment (or a 0600 file).

:func:`load_config` reads one TOML file and returns an :class:`EngineConfig` of frozen dataclasses, or
raises :class:`~engine.errors.ConfigError` naming the file, the dotted key (``exchanges[1].rest_url``)
and the reason. Nothing is sent to a venue before this returns. Unknown keys are an error, never
ignored (a typo such as ``daily_los_limit`` must not silently disable a limit).

The keys (DESIGN.md, "Config", is the contract; the extra ones are marked +)::

    [engine]
    mode = "paper"                 # required: "paper" (embedded local venue) or "live"
    admin_socket = "var/engine.sock"
    state_dir = "var"
    log_level = "info"             # + debug | info | warning | error
    cancel_on_stop = true          # + cancel resting orders on a graceful stop
    flatten_on_emergency = false   # + emergency stop also closes every position
    stale_after_s = 5.0            # + a book with no update for this long is STALE

    [[exchanges]]                  # at least one; each venue at most once
    name = "binance"               # "binance" | "bybit"
    symbols = ["BTCUSDT"]          # non-empty, upper-cased, no duplicates
    rest_url = "https://fapi.binance.com"      # http(s); live mode: required
    ws_public_url = "wss://fstream.binance.com"  # ws(s); live mode: required
    ws_private_url = "wss://fstream.binance.com" # ws(s); live mode: required
    api_key_env = "BINANCE_API_KEY"            # live mode: required, the variable must be set
    api_secret_env = "BINANCE_API_SECRET"      # live mode: this or api_secret_file
    api_secret_file = "secrets/binance"        # + a file of mode 0600 (or 0400) holding the secret
    hedge_mode = false             # + hedge (long/short) position mode on the venue

    [strategy]
    name = "ema_cross"             # required, unless [[strategies]] is given instead
    params = { fast = 12, slow = 26 }

    [[strategies]]                 # + several strategies and symbols, each with its own allocation
    name = "ema_cross"             #   (instead of [strategy]; both at once is an error)
    params = { fast = 8 }
    symbols = ["BTCUSDT"]          # required: "SYMBOL" (every venue listing it) or "venue:SYMBOL";
                                   # each symbol belongs to at most one entry
    allocation = "0.5"             # required: a decimal fraction of equity in (0, 1]; sum <= 1

    [risk]                         # validated by engine.risk.RiskLimits.from_mapping

    [metrics]
    bind = "127.0.0.1:9108"        # host:port ([::1]:9108 for IPv6); port 0: a free port (printed at start)
    enabled = true                 # +

    [alerts]                       # + every key optional; no webhook and no Telegram: no alerts are sent
    webhook_url = "https://hooks.example.com/engine"   # http(s): a JSON POST per alert
    telegram_token_env = "ENGINE_TELEGRAM_TOKEN"       # the NAME of the variable holding the bot token
    telegram_chat_id = "-100123"                       # a string or an integer; needed with the token
    telegram_base_url = "https://api.telegram.org"     # http(s)
    disconnect_threshold_s = 30.0                      # alert when a stream stays down this long

Live mode refuses plaintext ``http``/``ws`` URLs to anything but a loopback host: signed requests and
the listen key would cross the network unencrypted.

Secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value; only
:meth:`Secret.reveal` does. An error about a secret names the key and the environment variable's NAME,
never its value. ``api_secret_file`` is resolved relative to the config file's directory; ``admin_socket``
and ``state_dir`` are kept as written (relative paths are relative to the working directory).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from engine.adapters.base import AdapterSettings
from engine.errors import ConfigError
from engine.types import Venue

__all__ = [
    "DEFAULT_CONFIG",
    "AlertsSection",
    "EngineConfig",
    "EngineSection",
    "ExchangeSection",
    "MetricsSection",
    "Mode",
    "Secret",
    "StrategyEntry",
    "StrategySection",
    "VenueEndpoints",
    "load_config",
    "resolve_config_path",
    "to_adapter_settings",
]

#: The config ``engine run`` uses when none is given (relative to the working directory, else the repo).
DEFAULT_CONFIG: Final = Path("config") / "paper.toml"
_REPO_ROOT: Final = Path(__file__).resolve().parent.parent
_FILE_KEY: Final = "(file)"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SYMBOL = re.compile(r"[A-Z0-9]{2,40}\Z")
_STRATEGY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z")
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")


class Mode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class Secret:
    """A secret value that never shows itself in a repr, str, format or log line; ``reveal()`` does."""

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        self.__value = value

    def reveal(self) -> str:
        return self.__value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __format__(self, spec: str) -> str:
        return "********"

    def __bool__(self) -> bool:
        return bool(self.__value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.__value == self.__value

    def __hash__(self) -> int:
        return hash(self.__value)


@dataclass(frozen=True, kw_only=True)
class EngineSection:
    mode: Mode
    admin_socket: Path = Path("var/engine.sock")
    state_dir: Path = Path("var")
    log_level: str = "info"
    cancel_on_stop: bool = True
    flatten_on_emergency: bool = False
    stale_after_s: float = 5.0


@dataclass(frozen=True, kw_only=True)
class ExchangeSection:
    name: Venue
    symbols: tuple[str, ...]
    rest_url: str | None = None
    ws_public_url: str | None = None
    ws_private_url: str | None = None
    api_key_env: str | None = None
    api_secret_env: str | None = None
    api_secret_file: Path | None = None
    hedge_mode: bool = False
    # Read from the environment / file in live mode only; never printed.
    api_key: Secret | None = field(default=None, compare=False)
    api_secret: Secret | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True)
class StrategySection:
    name: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class StrategyEntry:
    """One ``[[strategies]]`` entry; ``symbols`` resolved to (venue, symbol) pairs of the exchanges."""

    name: str
    params: Mapping[str, Any]
    symbols: tuple[tuple[Venue, str], ...]
    allocation: Decimal


@dataclass(frozen=True, kw_only=True)
class MetricsSection:
    bind: str = "127.0.0.1:9108"
    enabled: bool = True

    @property
    def host(self) -> str:
        return _split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return _split_bind(self.bind)[1]


@dataclass(frozen=True, kw_only=True)
class AlertsSection:
    """Where alerts go (``engine.alerts.Alerter``); the Telegram token is read from the environment."""

    webhook_url: str | None = None
    telegram_base_url: str = "https://api.telegram.org"
    telegram_token_env: str | None = None
    telegram_chat_id: str | None = None
    disconnect_threshold_s: float = 30.0
    # Read from ``telegram_token_env`` at load time; never printed.
    telegram_token: Secret | None = field(default=None, compare=False)

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None or self.telegram_token is not None


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    engine: EngineSection
    exchanges: tuple[ExchangeSection, ...]
    #: With ``[[strategies]]``: ``name = "portfolio"`` and ``params = {"strategies": (...)}``, each entry
    #: ``{name, params, symbols: ("venue:SYMBOL", ...), allocation: "0.5"}`` (what
    #: ``engine.strategies.portfolio.StrategyPortfolio`` takes), so one strategy object drives them all.
    strategy: StrategySection
    #: The ``[risk]`` table as written (read-only). ``risk_limits`` is what
    #: ``engine.risk.RiskLimits.from_mapping`` made of it, or None when that class is not available (then
    #: the table was checked for types only: scalar values, finite numbers).
    risk: Mapping[str, Any]
    metrics: MetricsSection
    path: Path
    risk_limits: Any = field(default=None, compare=False)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    #: The ``[[strategies]]`` entries as written (empty with the single-strategy ``[strategy]`` form).
    strategies: tuple[StrategyEntry, ...] = ()

    @property
    def mode(self) -> Mode:
        return self.engine.mode

    def secrets(self) -> tuple[str, ...]:
        """Every secret value this config holds, revealed (API keys and secrets, the Telegram token):
        what the logs and the admin socket must redact."""
        held = [s for ex in self.exchanges for s in (ex.api_key, ex.api_secret)]
        held.append(self.alerts.telegram_token)
        return tuple(s.reveal() for s in held if s is not None and s)

    def exchange(self, venue: Venue | str) -> ExchangeSection:
        v = Venue(venue)
        for ex in self.exchanges:
            if ex.name is v:
                return ex
        raise KeyError(str(v))


@dataclass(frozen=True, kw_only=True)
class VenueEndpoints:
    """URLs (and, for the paper account, keys) of a venue the engine starts itself."""

    rest_url: str
    ws_public_url: str
    ws_private_url: str
    api_key: str = ""
    api_secret: str = field(default="", repr=False)


# ---- loading ------------------------------------------------------------------------------------------


def resolve_config_path(path: str | Path | None) -> Path:
    """The file to read: ``path`` (default ``config/paper.toml``) relative to the working directory,
    else relative to the repository root. Raises ConfigError when neither exists."""
    p = DEFAULT_CONFIG if path is None else Path(path)
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p, _REPO_ROOT / p]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(path=str(p), key=_FILE_KEY, reason="config file not found")


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> EngineConfig:
    """Read and validate a config file. ``env`` defaults to ``os.environ`` (live-mode secrets)."""
    file = resolve_config_path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ConfigError(path=str(file), key=_FILE_KEY, reason=f"cannot read: {exc.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path=str(file), key=_FILE_KEY, reason="not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path=str(file), key=_FILE_KEY, reason=f"invalid TOML: {exc}") from None
    return _Parser(file, os.environ if env is None else env).config(doc)


class _Parser:
    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env

    def err(self, key: str, reason: str) -> ConfigError:
        return ConfigError(path=str(self.path), key=key, reason=reason)

    # -- generic checks --
    def table(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.err(key, f"must be a table, not {_tname(value)}")
        return value

    def no_unknown(self, tbl: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
        for k in tbl:
            if k not in allowed:
                raise self.err(_join(prefix, k), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, tbl: Mapping[str, Any], k: str, prefix: str, *, required: bool = False) -> str | None:
        key = _join(prefix, k)
        if k not in tbl:
            if required:
                raise self.err(key, "missing required key")
            return None
        v = tbl[k]
        if not isinstance(v, str):
            raise self.err(key, f"must be a string, not {_tname(v)}")
        if not v.strip():
            raise self.err(key, "must not be empty")
        return v

    def boolean(self, tbl: Mapping[str, Any], k: str, prefix: str, default: bool) -> bool:
        if k not in tbl:
            return default
        v = tbl[k]
        if not isinstance(v, bool):
            raise self.err(_join(prefix, k), f"must be true or false, not {_tname(v)}")
        return v

    def positive(self, tbl: Mapping[str, Any], k: str, prefix: str, default: float) -> float:
        if k not in tbl:
            return default
        v = tbl[k]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.err(_join(prefix, k), f"must be a number, not {_tname(v)}")
        if not math.isfinite(v) or v <= 0:
            raise self.err(_join(prefix, k), f"must be a finite number > 0, got {v!r}")
        return float(v)

    # -- sections --
    def config(self, doc: dict[str, Any]) -> EngineConfig:
        self.no_unknown(
            doc, ("engine", "exchanges", "strategy", "strategies", "risk", "metrics", "alerts"), ""
        )
        if "engine" not in doc:
            raise self.err("engine", "missing required table [engine]")
        engine = self.engine(self.table(doc["engine"], "engine"))
        if "exchanges" not in doc:
            raise self.err("exchanges", "missing required [[exchanges]] (at least one venue)")
        exchanges = self.exchanges(doc["exchanges"], engine.mode)
        entries: tuple[StrategyEntry, ...] = ()
        if "strategy" in doc and "strategies" in doc:
            raise self.err("strategies", "give either [strategy] or [[strategies]], not both")
        if "strategies" in doc:
            entries = self.strategies(doc["strategies"], exchanges)
            strategy = _portfolio_section(entries)
        elif "strategy" in doc:
            strategy = self.strategy(self.table(doc["strategy"], "strategy"))
        else:
            raise self.err("strategy", "missing required table [strategy] (or [[strategies]])")
        risk_raw = self.table(doc.get("risk", {}), "risk")
        risk, limits = self.risk(risk_raw)
        metrics = self.metrics(self.table(doc.get("metrics", {}), "metrics"))
        alerts = self.alerts(self.table(doc.get("alerts", {}), "alerts"))
        return EngineConfig(
            engine=engine,
            exchanges=exchanges,
            strategy=strategy,
            risk=risk,
            metrics=metrics,
            path=self.path,
            risk_limits=limits,
            alerts=alerts,
            strategies=entries,
        )

    def engine(self, tbl: dict[str, Any]) -> EngineSection:
        p = "engine"
        self.no_unknown(
            tbl,
            (
                "mode",
                "admin_socket",
                "state_dir",
                "log_level",
                "cancel_on_stop",
                "flatten_on_emergency",
                "stale_after_s",
            ),
            p,
        )
        mode_s = self.string(tbl, "mode", p, required=True) or ""
        try:
            mode = Mode(mode_s)
        except ValueError:
            raise self.err("engine.mode", f'must be "paper" or "live", not {mode_s!r}') from None
        admin = self.string(tbl, "admin_socket", p)
        state_dir = self.string(tbl, "state_dir", p)
        level = self.string(tbl, "log_level", p) or "info"
        if level.lower() not in _LOG_LEVELS:
            raise self.err("engine.log_level", f"must be one of {', '.join(_LOG_LEVELS)}, not {level!r}")
        return EngineSection(
            mode=mode,
            admin_socket=Path(admin) if admin else Path("var/engine.sock"),
            state_dir=Path(state_dir) if state_dir else Path("var"),
            log_level=level.lower(),
            cancel_on_stop=self.boolean(tbl, "cancel_on_stop", p, True),
            flatten_on_emergency=self.boolean(tbl, "flatten_on_emergency", p, False),
            stale_after_s=self.positive(tbl, "stale_after_s", p, 5.0),
        )

    def exchanges(self, value: object, mode: Mode) -> tuple[ExchangeSection, ...]:
        if not isinstance(value, list):
            raise self.err("exchanges", f"must be an array of tables ([[exchanges]]), not {_tname(value)}")
        if not value:
            raise self.err("exchanges", "at least one exchange is required")
        out: list[ExchangeSection] = []
        seen: dict[Venue, int] = {}
        for i, item in enumerate(value):
            p = f"exchanges[{i}]"
            ex = self.exchange(self.table(item, p), p, mode)
            if ex.name in seen:
                raise self.err(
                    f"{p}.name", f"duplicate exchange {ex.name.value!r} (also exchanges[{seen[ex.name]}])"
                )
            seen[ex.name] = i
            out.append(ex)
        return tuple(out)

    def exchange(self, tbl: dict[str, Any], p: str, mode: Mode) -> ExchangeSection:
        self.no_unknown(
            tbl,
            (
                "name",
                "symbols",
                "rest_url",
                "ws_public_url",
                "ws_private_url",
                "api_key_env",
                "api_secret_env",
                "api_secret_file",
                "hedge_mode",
            ),
            p,
        )
        name_s = self.string(tbl, "name", p, required=True) or ""
        try:
            name = Venue(name_s)
        except ValueError:
            raise self.err(f"{p}.name", f'must be "binance" or "bybit", not {name_s!r}') from None
        symbols = self.symbols(tbl, p)
        live = mode is Mode.LIVE
        rest = self.url(tbl, "rest_url", p, ("http", "https"), live)
        ws_pub = self.url(tbl, "ws_public_url", p, ("ws", "wss"), live)
        ws_priv = self.url(tbl, "ws_private_url", p, ("ws", "wss"), live)
        key_env = self.env_name(tbl, "api_key_env", p)
        secret_env = self.env_name(tbl, "api_secret_env", p)
        secret_file_s = self.string(tbl, "api_secret_file", p)
        if secret_env is not None and secret_file_s is not None:
            raise self.err(f"{p}.api_secret_file", "give api_secret_env or api_secret_file, not both")
        secret_file = None
        if secret_file_s is not None:
            secret_file = Path(secret_file_s).expanduser()
            if not secret_file.is_absolute():
                secret_file = self.path.parent / secret_file
        api_key: Secret | None = None
        api_secret: Secret | None = None
        if live:
            if key_env is None:
                raise self.err(f"{p}.api_key_env", "required in live mode (the NAME of the variable)")
            api_key = self.from_env(f"{p}.api_key_env", key_env)
            if secret_env is not None:
                api_secret = self.from_env(f"{p}.api_secret_env", secret_env)
            elif secret_file is not None:
                api_secret = self.from_file(f"{p}.api_secret_file", secret_file)
            else:
                raise self.err(f"{p}.api_secret_env", "required in live mode (or api_secret_file)")
        return ExchangeSection(
            name=name,
            symbols=symbols,
            rest_url=rest,
            ws_public_url=ws_pub,
            ws_private_url=ws_priv,
            api_key_env=key_env,
            api_secret_env=secret_env,
            api_secret_file=secret_file,
            hedge_mode=self.boolean(tbl, "hedge_mode", p, False),
            api_key=api_key,
            api_secret=api_secret,
        )

    def symbols(self, tbl: Mapping[str, Any], p: str) -> tuple[str, ...]:
        key = f"{p}.symbols"
        if "symbols" not in tbl:
            raise self.err(key, "missing required key")
        v = tbl["symbols"]
        if not isinstance(v, list):
            raise self.err(key, f"must be an array of strings, not {_tname(v)}")
        if not v:
            raise self.err(key, "must name at least one symbol")
        out: list[str] = []
        for j, s in enumerate(v):
            if not isinstance(s, str):
                raise self.err(f"{key}[{j}]", f"must be a string, not {_tname(s)}")
            sym = s.strip().upper()
            if not _SYMBOL.match(sym):
                raise self.err(f"{key}[{j}]", f"not a symbol: {s!r} (letters and digits, e.g. BTCUSDT)")
            if sym in out:
                raise self.err(f"{key}[{j}]", f"duplicate symbol {sym!r}")
            out.append(sym)
        return tuple(out)

    def url(self, tbl: Mapping[str, Any], k: str, p: str, schemes: tuple[str, str], live: bool) -> str | None:
        key = f"{p}.{k}"
        if k not in tbl:
            if live:
                raise self.err(key, "required in live mode")
            return None
        v = self.string(tbl, k, p)
        assert v is not None
        reason = _url_problem(v, schemes, live)
        if reason:
            raise self.err(key, reason)
        return v.rstrip("/")

    def env_name(self, tbl: Mapping[str, Any], k: str, p: str) -> str | None:
        v = self.string(tbl, k, p)
        if v is not None and not _ENV_NAME.match(v):
            raise self.err(f"{p}.{k}", f"not an environment variable name: {v!r}")
        return v

    def from_env(self, key: str, name: str) -> Secret:
        value = self.env.get(name)
        if value is None:
            raise self.err(key, f"environment variable {name} is not set")
        if not value.strip():
            raise self.err(key, f"environment variable {name} is empty")
        return Secret(value.strip())

    def from_file(self, key: str, file: Path) -> Secret:
        try:
            st = file.stat()
        except OSError as exc:
            raise self.err(key, f"cannot read secret file {file}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise self.err(key, f"secret file {file} is not a regular file")
        perms = stat.S_IMODE(st.st_mode)
        if perms & 0o077:
            raise self.err(
                key, f"secret file {file} has mode {perms:04o}; it must be 0600 (readable by its owner only)"
            )
        try:
            text = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise self.err(key, f"cannot read secret file {file}: {type(exc).__name__}") from None
        if not text:
            raise self.err(key, f"secret file {file} is empty")
        return Secret(text)

    def strategy(self, tbl: dict[str, Any]) -> StrategySection:
        p = "strategy"
        self.no_unknown(tbl, ("name", "params"), p)
        name = self.string(tbl, "name", p, required=True)
        assert name is not None
        if not _STRATEGY_NAME.match(name):
            raise self.err("strategy.name", f"not a strategy name: {name!r}")
        params = self.table(tbl.get("params", {}), "strategy.params")
        return StrategySection(name=name, params=_freeze(params))

    def strategies(self, raw: object, exchanges: Sequence[ExchangeSection]) -> tuple[StrategyEntry, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.err("strategies", "must be a non-empty array of tables [[strategies]]")
        available = [(ex.name, sym) for ex in exchanges for sym in ex.symbols]
        owner: dict[tuple[Venue, str], int] = {}
        total = Decimal(0)
        out: list[StrategyEntry] = []
        for i, item in enumerate(raw):
            p = f"strategies[{i}]"
            tbl = self.table(item, p)
            self.no_unknown(tbl, ("name", "params", "symbols", "allocation"), p)
            name = self.string(tbl, "name", p, required=True)
            assert name is not None
            if not _STRATEGY_NAME.match(name) or name == "portfolio":
                raise self.err(f"{p}.name", f"not a strategy name: {name!r}")
            params = self.table(tbl.get("params", {}), f"{p}.params")
            if "symbols" not in tbl:
                raise self.err(f"{p}.symbols", "missing required key")
            syms = tbl["symbols"]
            if not isinstance(syms, list) or not syms:
                raise self.err(f"{p}.symbols", 'must be a non-empty array of "SYMBOL" or "venue:SYMBOL"')
            pairs: list[tuple[Venue, str]] = []
            for j, sym in enumerate(syms):
                key = f"{p}.symbols[{j}]"
                if not isinstance(sym, str):
                    raise self.err(key, f"must be a string, not {_tname(sym)}")
                venue_name, colon, bare = sym.rpartition(":")
                if colon and venue_name not in {v.value for v in Venue}:
                    raise self.err(key, f"unknown venue {venue_name!r} in {sym!r}")
                found = [
                    (v, s) for v, s in available if s == bare.upper() and (not colon or v.value == venue_name)
                ]
                if not found:
                    raise self.err(key, f"{sym!r} is not a symbol of any [[exchanges]] entry")
                for pair in found:
                    if pair in pairs:
                        raise self.err(key, f"{pair[0].value}:{pair[1]} is listed twice")
                    if pair in owner:
                        raise self.err(
                            key,
                            f"{pair[0].value}:{pair[1]} already belongs to strategies[{owner[pair]}] "
                            "(a symbol's position is one-way: one strategy per symbol)",
                        )
                    owner[pair] = i
                    pairs.append(pair)
            if "allocation" not in tbl:
                raise self.err(f"{p}.allocation", "missing required key (a decimal fraction of equity)")
            alloc_raw = tbl["allocation"]
            if isinstance(alloc_raw, bool) or not isinstance(alloc_raw, str | int | float):
                raise self.err(
                    f"{p}.allocation", f'must be a decimal string such as "0.5", not {_tname(alloc_raw)}'
                )
            try:
                alloc = Decimal(repr(alloc_raw) if isinstance(alloc_raw, float) else alloc_raw)
            except InvalidOperation:
                raise self.err(f"{p}.allocation", f"not a decimal number: {alloc_raw!r}") from None
            if not alloc.is_finite() or not 0 < alloc <= 1:
                raise self.err(f"{p}.allocation", f"must be in (0, 1], got {alloc_raw!r}")
            total += alloc
            if total > 1:
                raise self.err(f"{p}.allocation", f"the allocations add up to {total}, more than 1")
            out.append(
                StrategyEntry(name=name, params=_freeze(params), symbols=tuple(pairs), allocation=alloc)
            )
        return tuple(out)

    def risk(self, tbl: dict[str, Any]) -> tuple[Mapping[str, Any], Any]:
        for k, v in tbl.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise self.err(f"risk.{k}", f"must be finite, got {v!r}")
        frozen = _freeze(tbl)
        from_mapping = _risk_from_mapping()
        if from_mapping is None:
            # engine.risk is not there: check types only (scalars), and let the engine validate later.
            for k, v in tbl.items():
                if not isinstance(v, str | int | float):
                    raise self.err(f"risk.{k}", f"must be a string or a number, not {_tname(v)}")
            return frozen, None
        try:
            limits = from_mapping(dict(tbl))
        except ConfigError as exc:
            key = exc.key if exc.key.startswith("risk") else _join("risk", exc.key)
            raise self.err(key, exc.reason) from None
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            raise self.err("risk", str(exc) or type(exc).__name__) from None
        return frozen, limits

    def metrics(self, tbl: dict[str, Any]) -> MetricsSection:
        p = "metrics"
        self.no_unknown(tbl, ("bind", "enabled"), p)
        bind = self.string(tbl, "bind", p) or "127.0.0.1:9108"
        try:
            _split_bind(bind)
        except ValueError as exc:
            raise self.err("metrics.bind", str(exc)) from None
        return MetricsSection(bind=bind, enabled=self.boolean(tbl, "enabled", p, True))

    def alerts(self, tbl: dict[str, Any]) -> AlertsSection:
        p = "alerts"
        self.no_unknown(
            tbl,
            (
                "webhook_url",
                "telegram_base_url",
                "telegram_token_env",
                "telegram_chat_id",
                "disconnect_threshold_s",
            ),
            p,
        )
        webhook = self.url(tbl, "webhook_url", p, ("http", "https"), False)
        base = self.url(tbl, "telegram_base_url", p, ("http", "https"), False)
        token_env = self.env_name(tbl, "telegram_token_env", p)
        chat_id: str | None = None
        if "telegram_chat_id" in tbl:
            raw = tbl["telegram_chat_id"]
            if isinstance(raw, bool) or not isinstance(raw, str | int):
                raise self.err(
                    "alerts.telegram_chat_id", f"must be a string or an integer, not {_tname(raw)}"
                )
            chat_id = str(raw).strip()
            if not chat_id:
                raise self.err("alerts.telegram_chat_id", "must not be empty")
        if (token_env is None) != (chat_id is None):
            missing = "telegram_chat_id" if chat_id is None else "telegram_token_env"
            raise self.err(f"alerts.{missing}", "Telegram needs both telegram_token_env and telegram_chat_id")
        token = self.from_env("alerts.telegram_token_env", token_env) if token_env is not None else None
        return AlertsSection(
            webhook_url=webhook,
            telegram_base_url=base or "https://api.telegram.org",
            telegram_token_env=token_env,
            telegram_chat_id=chat_id,
            disconnect_threshold_s=self.positive(tbl, "disconnect_threshold_s", p, 30.0),
            telegram_token=token,
        )


def _risk_from_mapping() -> Any:
    """``engine.risk.RiskLimits.from_mapping``, imported lazily, or None when it does not exist yet."""
    try:
        import importlib

        mod = importlib.import_module("engine.risk")
    except ModuleNotFoundError as exc:
        if exc.name in ("engine.risk",):
            return None
        raise
    limits = getattr(mod, "RiskLimits", None)
    return getattr(limits, "from_mapping", None)


# ---- helpers ------------------------------------------------------------------------------------------


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _tname(v: object) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _portfolio_section(entries: Sequence[StrategyEntry]) -> StrategySection:
    """``[[strategies]]`` as the single strategy ``portfolio`` (``engine.strategies.portfolio``)."""
    return StrategySection(
        name="portfolio",
        params=_freeze(
            {
                "strategies": [
                    {
                        "name": e.name,
                        "params": e.params,
                        "symbols": [f"{v.value}:{s}" for v, s in e.symbols],
                        "allocation": str(e.allocation),
                    }
                    for e in entries
                ]
            }
        ),
    )


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def _url_problem(url: str, schemes: tuple[str, str], live: bool) -> str:
    """Why ``url`` is not acceptable, or "" when it is."""
    want = " or ".join(f"{s}://" for s in schemes)
    if any(c.isspace() for c in url):
        return f"malformed URL {url!r}: contains whitespace"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"malformed URL {url!r}: {exc}"
    if parts.scheme not in schemes:
        return f"malformed URL {url!r}: the scheme must be {want}"
    host = parts.hostname or ""
    if not host or not _valid_host(host):
        return f"malformed URL {url!r}: no valid host"
    if parts.username is not None or parts.password is not None:
        return "credentials in a URL are not allowed (use api_key_env / api_secret_env)"
    if parts.query or parts.fragment:
        return f"malformed URL {url!r}: no query string or fragment allowed"
    if port == 0:
        return f"malformed URL {url!r}: port 0"
    if live and parts.scheme in ("http", "ws") and not _is_loopback(host):
        return (
            f"plaintext {parts.scheme}:// to a non-loopback host in live mode would send signed requests "
            f"unencrypted; use {schemes[1]}://"
        )
    return ""


def _split_bind(bind: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port). Raises ValueError saying why."""
    if bind.startswith("["):
        end = bind.find("]")
        if end < 0 or bind[end + 1 : end + 2] != ":":
            raise ValueError(f"bad bind {bind!r}: expected [ipv6]:port")
        host, port_s = bind[1:end], bind[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad bind {bind!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_s = bind.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad bind {bind!r}: expected host:port, e.g. 127.0.0.1:9108")
        if not _valid_host(host):
            raise ValueError(f"bad bind {bind!r}: {host!r} is not a host")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad bind {bind!r}: port must be 0..65535")
    return host, int(port_s)


# ---- adapter settings ---------------------------------------------------------------------------------


def to_adapter_settings(
    cfg: EngineConfig,
    venue_urls: Mapping[Venue, VenueEndpoints | Mapping[str, str]]
    | Mapping[str, VenueEndpoints | Mapping[str, str]]
    | None = None,
) -> list[AdapterSettings]:
    """One :class:`AdapterSettings` per configured exchange.

    URLs written in the config win; a URL left out (paper mode only) comes from ``venue_urls`` (the
    embedded venue's endpoints, keyed by venue, as :class:`VenueEndpoints` or a mapping with the same
    keys). In paper mode the keys also come from ``venue_urls`` (the paper account); in live mode from the
    environment, as validated by :func:`load_config`. Raises ConfigError when a URL is known nowhere.
    """
    urls: dict[Venue, VenueEndpoints] = {}
    for k, v in (venue_urls or {}).items():
        urls[Venue(k)] = v if isinstance(v, VenueEndpoints) else VenueEndpoints(**dict(v))
    out: list[AdapterSettings] = []
    for i, ex in enumerate(cfg.exchanges):
        fallback = urls.get(ex.name)
        resolved: dict[str, str] = {}
        for k in ("rest_url", "ws_public_url", "ws_private_url"):
            value = getattr(ex, k) or (getattr(fallback, k) if fallback is not None else None)
            if not value:
                raise ConfigError(
                    path=str(cfg.path),
                    key=f"exchanges[{i}].{k}",
                    reason="no URL: not in the config and no embedded venue URL was given",
                )
            resolved[k] = value
        if cfg.mode is Mode.LIVE:
            assert ex.api_key is not None and ex.api_secret is not None  # load_config checked
            key, secret = ex.api_key.reveal(), ex.api_secret.reveal()
        else:
            key = fallback.api_key if fallback is not None else ""
            secret = fallback.api_secret if fallback is not None else ""
        out.append(
            AdapterSettings(
                venue=ex.name,
                rest_url=resolved["rest_url"],
                ws_public_url=resolved["ws_public_url"],
                ws_private_url=resolved["ws_private_url"],
                api_key=key,
                api_secret=secret,
                symbols=ex.symbols,
                stale_after_s=cfg.engine.stale_after_s,
            )
        )
    return out
