"""Config loading: the default paper config, every bad-config case, secrets, adapter settings."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import engine.config as config_mod
from engine.config import (
    EngineConfig,
    Mode,
    Secret,
    VenueEndpoints,
    load_config,
    to_adapter_settings,
)
from engine.errors import ConfigError
from engine.types import Venue

PAPER = """
[engine]
mode = "paper"

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT"]

[strategy]
name = "ema_cross"
"""

LIVE = """
[engine]
mode = "live"

[[exchanges]]
name = "bybit"
symbols = ["BTCUSDT", "ethusdt"]
rest_url = "https://api.bybit.com"
ws_public_url = "wss://stream.bybit.com/v5/public/linear"
ws_private_url = "wss://stream.bybit.com/v5/private"
api_key_env = "BYBIT_KEY"
api_secret_env = "BYBIT_SECRET"

[strategy]
name = "ema_cross"
"""

LIVE_ENV = {"BYBIT_KEY": "key-VALUE-1234", "BYBIT_SECRET": "secret-VALUE-5678"}


def _sym(replacement: str) -> str:
    return PAPER.replace('symbols = ["BTCUSDT"]', replacement)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def _write(text: str, name: str = "engine.toml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture(autouse=True)
def no_risk_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config validation of [risk] is tested here with the type-only fallback unless a test installs a
    from_mapping; the real RiskLimits is covered by the paper-config test and the risk tests."""
    monkeypatch.setattr(config_mod, "_risk_from_mapping", lambda: None)


def error_of(path: Path, env: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value


# ---- the default config ------------------------------------------------------------------------------


def test_default_when_no_path_then_paper_toml_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real engine.risk, if it is there
    cfg = load_config(None, env={})
    assert cfg.path.name == "paper.toml" and cfg.mode is Mode.PAPER
    assert [(ex.name, ex.symbols) for ex in cfg.exchanges] == [(Venue.BINANCE, ("BTCUSDT", "ETHUSDT"))]
    assert cfg.exchanges[0].rest_url is None and cfg.exchanges[0].api_key is None
    assert cfg.strategy.name == "ema_cross" and dict(cfg.strategy.params) == {"fast": 12, "slow": 26}
    assert cfg.risk["max_order_notional"] == "5000" and cfg.risk["daily_loss_limit"] == "500"
    assert (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9108)
    assert cfg.engine.admin_socket == Path("var/engine.sock") and cfg.engine.state_dir == Path("var")


def test_relative_path_when_absent_in_cwd_then_repo_root_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    repo_cfg = load_config("config/paper.toml", env={})
    assert repo_cfg.path == Path(config_mod.__file__).resolve().parent.parent / "config" / "paper.toml"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "paper.toml").write_text(PAPER.replace("BTCUSDT", "SOLUSDT"))
    local = load_config("config/paper.toml", env={})
    assert local.path == tmp_path / "config" / "paper.toml" and local.exchanges[0].symbols == ("SOLUSDT",)


def test_minimal_paper_when_loaded_then_defaults_filled(write: Callable[[str], Path]) -> None:
    cfg = load_config(write(PAPER), env={})
    assert cfg.engine.cancel_on_stop is True and cfg.engine.flatten_on_emergency is False
    assert cfg.engine.log_level == "info" and cfg.engine.stale_after_s == 5.0
    assert cfg.metrics.bind == "127.0.0.1:9108" and dict(cfg.risk) == {}
    assert cfg.risk_limits is None


def test_config_when_loaded_then_frozen(write: Callable[[str], Path]) -> None:
    cfg = load_config(write(PAPER + "params = { fast = 3, lists = [1, 2] }\n"), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.engine.mode = Mode.LIVE  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.strategy.params["fast"] = 4  # type: ignore[index]
    assert cfg.strategy.params["lists"] == (1, 2)


# ---- every bad config stops with the file, the key and the reason --------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (PAPER + "\n[extra]\n", "extra", "unknown key"),
        (PAPER.replace('mode = "paper"', 'mode = "paper"\nmod = 1'), "engine.mod", "unknown key"),
        (_sym('symbols = ["BTCUSDT"]\nsymbol = "X"'), "exchanges[0].symbol", "unknown key"),
        (PAPER + 'nmae = "x"\n', "strategy.nmae", "unknown key"),
        (PAPER + '[metrics]\nbnid = "127.0.0.1:1"\n', "metrics.bnid", "unknown key"),
        (PAPER.replace('mode = "paper"', 'mode = "demo"'), "engine.mode", 'must be "paper" or "live"'),
        (PAPER.replace('mode = "paper"', "mode = 1"), "engine.mode", "must be a string, not an integer"),
        (PAPER.replace('mode = "paper"', ""), "engine.mode", "missing required key"),
        (PAPER.replace('mode = "paper"', 'mode = "paper"\ncancel_on_stop = "yes"'), "engine.cancel_on_stop",
         "must be true or false"),
        (PAPER.replace('mode = "paper"', 'mode = "paper"\nstale_after_s = -1'), "engine.stale_after_s",
         "> 0"),
        (PAPER.replace('mode = "paper"', 'mode = "paper"\nstale_after_s = true'), "engine.stale_after_s",
         "must be a number"),
        (PAPER.replace('mode = "paper"', 'mode = "paper"\nlog_level = "loud"'), "engine.log_level",
         "must be one of"),
        (PAPER.replace('name = "binance"', 'name = "kraken"'), "exchanges[0].name", '"binance" or "bybit"'),
        (PAPER.replace('symbols = ["BTCUSDT"]', "symbols = []"), "exchanges[0].symbols", "at least one"),
        (PAPER.replace('symbols = ["BTCUSDT"]', 'symbols = "BTCUSDT"'), "exchanges[0].symbols",
         "must be an array"),
        (_sym('symbols = ["BTCUSDT", "btcusdt"]'), "exchanges[0].symbols[1]", "duplicate symbol"),
        (PAPER.replace('symbols = ["BTCUSDT"]', 'symbols = ["BTC/USDT"]'), "exchanges[0].symbols[0]",
         "not a symbol"),
        (PAPER.replace('symbols = ["BTCUSDT"]', ""), "exchanges[0].symbols", "missing required key"),
        (PAPER + '\n[[exchanges]]\nname = "binance"\nsymbols = ["ETHUSDT"]\n', "exchanges[1].name",
         "duplicate exchange"),
        (PAPER.split("[[exchanges]]")[0] + '[strategy]\nname = "x"\n', "exchanges", "missing required"),
        (PAPER.replace('name = "ema_cross"', 'name = ""'), "strategy.name", "must not be empty"),
        (PAPER.replace('name = "ema_cross"', ""), "strategy.name", "missing required key"),
        (PAPER + "params = 3\n", "strategy.params", "must be a table"),
        (PAPER + '[metrics]\nbind = "127.0.0.1"\n', "metrics.bind", "expected host:port"),
        (PAPER + '[metrics]\nbind = "127.0.0.1:70000"\n', "metrics.bind", "port must be"),
        (PAPER + '[metrics]\nbind = "[::1:9108"\n', "metrics.bind", "expected [ipv6]:port"),
        (PAPER + '[metrics]\nbind = "bad host:9108"\n', "metrics.bind", "is not a host"),
        (PAPER + "[risk]\nlimits = { a = 1 }\n", "risk.limits", "must be a string or a number"),
        (PAPER + "[risk]\nmax_leverage = nan\n", "risk.max_leverage", "finite"),
        ("[engine\n", "(file)", "invalid TOML"),
    ],
)  # fmt: skip
def test_bad_config_when_loaded_then_config_error_names_key_and_reason(
    write: Callable[[str], Path], text: str, key: str, reason: str
) -> None:
    path = write(text)
    err = error_of(path)
    assert err.path == str(path)
    assert err.key == key
    assert reason in err.reason
    assert str(err) == f"{path}: {key}: {err.reason}"


@pytest.mark.parametrize(
    ("field", "url", "reason"),
    [
        ("rest_url", "ftp://fapi.binance.com", "scheme must be http:// or https://"),
        ("rest_url", "wss://fapi.binance.com", "scheme must be http:// or https://"),
        ("rest_url", "fapi.binance.com", "scheme must be"),
        ("rest_url", "https://", "no valid host"),
        ("rest_url", "https://bad_host", "no valid host"),
        ("rest_url", "https://fapi.binance.com:99999", "Port"),
        ("rest_url", "https://u:p@fapi.binance.com", "credentials in a URL"),
        ("rest_url", "https://fapi.binance.com/?x=1", "no query string"),
        ("rest_url", "https://fapi .binance.com", "whitespace"),
        ("ws_public_url", "https://stream.bybit.com", "scheme must be ws:// or wss://"),
        ("ws_private_url", "", "must not be empty"),
    ],
)
def test_bad_url_when_loaded_then_config_error_on_that_url(
    write: Callable[[str], Path], field: str, url: str, reason: str
) -> None:
    text = PAPER.replace('symbols = ["BTCUSDT"]', f'symbols = ["BTCUSDT"]\n{field} = "{url}"')
    err = error_of(write(text))
    assert err.key == f"exchanges[0].{field}"
    assert reason.lower() in err.reason.lower()


def test_missing_file_when_loaded_then_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", env={})
    assert (info.value.key, info.value.reason) == ("(file)", "config file not found")


def test_paper_when_urls_given_then_kept_without_trailing_slash(write: Callable[[str], Path]) -> None:
    text = PAPER.replace(
        'symbols = ["BTCUSDT"]', 'symbols = ["BTCUSDT"]\nrest_url = "http://127.0.0.1:8765/"'
    )
    assert load_config(write(text), env={}).exchanges[0].rest_url == "http://127.0.0.1:8765"


# ---- live mode and secrets -----------------------------------------------------------------------------


def test_live_when_env_set_then_secrets_loaded_and_never_shown(write: Callable[[str], Path]) -> None:
    cfg = load_config(write(LIVE), env=LIVE_ENV)
    ex = cfg.exchange("bybit")
    assert ex.symbols == ("BTCUSDT", "ETHUSDT")
    assert ex.api_key is not None and ex.api_key.reveal() == "key-VALUE-1234"
    assert ex.api_secret is not None and ex.api_secret.reveal() == "secret-VALUE-5678"
    for text in (repr(cfg), str(cfg), repr(ex), str(ex.api_secret), f"{ex.api_secret}", f"{ex.api_key!r}"):
        assert "VALUE" not in text
    [settings] = to_adapter_settings(cfg)
    assert settings.api_secret == "secret-VALUE-5678" and "secret-VALUE" not in repr(settings)


@pytest.mark.parametrize("missing", ["rest_url", "ws_public_url", "ws_private_url"])
def test_live_when_url_missing_then_config_error(write: Callable[[str], Path], missing: str) -> None:
    text = "\n".join(line for line in LIVE.splitlines() if not line.startswith(missing))
    err = error_of(write(text), LIVE_ENV)
    assert (err.key, err.reason) == (f"exchanges[0].{missing}", "required in live mode")


def test_live_when_key_env_not_named_then_config_error(write: Callable[[str], Path]) -> None:
    err = error_of(write(LIVE.replace('api_key_env = "BYBIT_KEY"\n', "")), LIVE_ENV)
    assert err.key == "exchanges[0].api_key_env" and "required in live mode" in err.reason


def test_live_when_secret_env_unset_then_error_names_variable_not_value(write: Callable[[str], Path]) -> None:
    err = error_of(write(LIVE), {"BYBIT_KEY": "key-VALUE-1234"})
    assert err.key == "exchanges[0].api_secret_env"
    assert err.reason == "environment variable BYBIT_SECRET is not set"
    err = error_of(write(LIVE), {"BYBIT_KEY": "key-VALUE-1234", "BYBIT_SECRET": "  "})
    assert err.reason == "environment variable BYBIT_SECRET is empty"
    err = error_of(write(LIVE), {"BYBIT_SECRET": "secret-VALUE-5678"})
    assert err.key == "exchanges[0].api_key_env" and "BYBIT_KEY" in err.reason
    assert "VALUE" not in str(err)


def test_live_when_plaintext_to_remote_host_then_refused_but_loopback_allowed(
    write: Callable[[str], Path],
) -> None:
    err = error_of(write(LIVE.replace("https://api.bybit.com", "http://api.bybit.com")), LIVE_ENV)
    assert err.key == "exchanges[0].rest_url" and "plaintext" in err.reason
    local = LIVE.replace("https://api.bybit.com", "http://127.0.0.1:8765").replace(
        "wss://stream.bybit.com", "ws://localhost:8765"
    )
    assert load_config(write(local), env=LIVE_ENV).exchanges[0].rest_url == "http://127.0.0.1:8765"


def test_live_when_bad_env_name_then_config_error(write: Callable[[str], Path]) -> None:
    err = error_of(write(LIVE.replace('"BYBIT_SECRET"', '"BYBIT SECRET"')), LIVE_ENV)
    assert err.key == "exchanges[0].api_secret_env" and "not an environment variable name" in err.reason


def _with_secret_file(tmp_path: Path, mode: int) -> str:
    secret = tmp_path / "bybit.secret"
    secret.write_text("file-VALUE-9999\n")
    os.chmod(secret, mode)
    return LIVE.replace('api_secret_env = "BYBIT_SECRET"', 'api_secret_file = "bybit.secret"')


def test_secret_file_when_mode_0644_then_rejected(tmp_path: Path, write: Callable[[str], Path]) -> None:
    err = error_of(write(_with_secret_file(tmp_path, 0o644)), LIVE_ENV)
    assert err.key == "exchanges[0].api_secret_file"
    assert "mode 0644" in err.reason and "0600" in err.reason and "VALUE" not in str(err)


def test_secret_file_when_mode_0600_then_read_relative_to_config(
    tmp_path: Path, write: Callable[[str], Path]
) -> None:
    cfg = load_config(write(_with_secret_file(tmp_path, 0o600)), env={"BYBIT_KEY": "k"})
    ex = cfg.exchanges[0]
    assert ex.api_secret_file == tmp_path / "bybit.secret"
    assert ex.api_secret is not None and ex.api_secret.reveal() == "file-VALUE-9999"
    assert "VALUE" not in repr(cfg)


def test_secret_file_when_missing_or_empty_then_rejected(
    tmp_path: Path, write: Callable[[str], Path]
) -> None:
    text = LIVE.replace('api_secret_env = "BYBIT_SECRET"', 'api_secret_file = "absent.secret"')
    err = error_of(write(text), LIVE_ENV)
    assert err.key == "exchanges[0].api_secret_file" and "cannot read secret file" in err.reason
    text = _with_secret_file(tmp_path, 0o600)
    (tmp_path / "bybit.secret").write_text("\n")
    assert "is empty" in error_of(write(text), LIVE_ENV).reason


def test_secret_when_env_and_file_both_given_then_config_error(write: Callable[[str], Path]) -> None:
    text = LIVE.replace('api_secret_env = "BYBIT_SECRET"', 'api_secret_env = "X"\napi_secret_file = "f"')
    err = error_of(write(text), LIVE_ENV)
    assert err.key == "exchanges[0].api_secret_file" and "not both" in err.reason


def test_paper_when_secret_vars_named_then_not_read(write: Callable[[str], Path]) -> None:
    text = PAPER.replace('symbols = ["BTCUSDT"]', 'symbols = ["BTCUSDT"]\napi_key_env = "NOT_SET_ANYWHERE"')
    ex = load_config(write(text), env={}).exchanges[0]
    assert ex.api_key_env == "NOT_SET_ANYWHERE" and ex.api_key is None


def test_secret_when_compared_or_formatted_then_value_hidden() -> None:
    s = Secret("hunter2")
    assert s == Secret("hunter2") and s != Secret("x") and bool(s) and not Secret("")
    assert "hunter2" not in repr(s) + str(s) + f"{s}" + f"{s:>20}" + "{}".format(s)  # noqa: UP032


# ---- [risk] through RiskLimits.from_mapping ------------------------------------------------------------


class _FakeLimits:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> _FakeLimits:
        if "bogus" in m:
            raise ConfigError(path="<risk>", key="bogus", reason="unknown risk limit")
        if m.get("max_leverage") == 0:
            raise ValueError("max_leverage must be >= 1")
        return cls(dict(m))


def test_risk_when_risk_limits_available_then_validated_through_it(
    write: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_mod, "_risk_from_mapping", lambda: _FakeLimits.from_mapping)
    cfg = load_config(write(PAPER + '[risk]\nmax_order_notional = "5000"\n'), env={})
    assert isinstance(cfg.risk_limits, _FakeLimits)
    assert cfg.risk_limits.values == {"max_order_notional": "5000"}
    err = error_of(write(PAPER + '[risk]\nbogus = "1"\n'))
    assert (err.key, err.reason) == ("risk.bogus", "unknown risk limit")
    err = error_of(write(PAPER + "[risk]\nmax_leverage = 0\n"))
    assert (err.key, err.reason) == ("risk", "max_leverage must be >= 1")


def test_risk_module_lookup_when_absent_then_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    fn = config_mod._risk_from_mapping()
    if importlib.util.find_spec("engine.risk") is None:
        assert fn is None
    else:
        assert fn is None or callable(fn)


# ---- adapter settings ----------------------------------------------------------------------------------


def test_adapter_settings_when_paper_then_embedded_venue_urls_and_keys(write: Callable[[str], Path]) -> None:
    cfg = load_config(write(PAPER), env={})
    urls = {
        "binance": VenueEndpoints(
            rest_url="http://127.0.0.1:8765",
            ws_public_url="ws://127.0.0.1:8765",
            ws_private_url="ws://127.0.0.1:8765",
            api_key="paperkey",
            api_secret="papersecret",
        )
    }
    [s] = to_adapter_settings(cfg, urls)
    assert (s.venue, s.rest_url, s.ws_public_url, s.api_key, s.api_secret, s.symbols) == (
        Venue.BINANCE,
        "http://127.0.0.1:8765",
        "ws://127.0.0.1:8765",
        "paperkey",
        "papersecret",
        ("BTCUSDT",),
    )
    assert s.stale_after_s == cfg.engine.stale_after_s


def test_adapter_settings_when_paper_without_urls_then_config_error(write: Callable[[str], Path]) -> None:
    cfg = load_config(write(PAPER), env={})
    with pytest.raises(ConfigError) as info:
        to_adapter_settings(cfg, None)
    assert info.value.key == "exchanges[0].rest_url"


def test_adapter_settings_when_config_has_url_then_it_wins(write: Callable[[str], Path]) -> None:
    text = PAPER.replace('symbols = ["BTCUSDT"]', 'symbols = ["BTCUSDT"]\nrest_url = "http://127.0.0.1:9000"')
    cfg: EngineConfig = load_config(write(text), env={})
    urls = {
        Venue.BINANCE: {"rest_url": "http://x:1", "ws_public_url": "ws://x:1", "ws_private_url": "ws://x:1"}
    }
    [s] = to_adapter_settings(cfg, urls)
    assert (s.rest_url, s.ws_public_url) == ("http://127.0.0.1:9000", "ws://x:1")
