"""portfolio: events routed to the entry owning the symbol, signals tagged with the entry and its
allocation, config [[strategies]] -> one portfolio strategy; invalid entries named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.strategies import AllocatedSignal, StrategyParamError, StrategyPortfolio, create
from engine.types import Side, Venue

from .helpers import BTC, ETH, bar, book_update, fill, trade
from .scripted import Scripted

BYBIT_BTC = (Venue.BYBIT, "BTCUSDT")
ALL = [BTC, ETH, BYBIT_BTC]


def entries(*items: dict[str, Any]) -> dict[str, Any]:
    return {"strategies": list(items)}


def scripted(symbols: list[str], allocation: str, script: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": "test_scripted",
        "params": {"script": script or {}},
        "symbols": symbols,
        "allocation": allocation,
    }


def test_when_events_arrive_then_only_the_owning_entry_sees_them() -> None:
    p = StrategyPortfolio(
        params=entries(scripted(["binance:BTCUSDT"], "0.5"), scripted(["ETHUSDT"], "0.3")), symbols=ALL
    )
    a, b = (e.strategy for e in p.entries)
    assert isinstance(a, Scripted) and isinstance(b, Scripted)
    p.on_trade(trade("1", 1, key=BTC))
    p.on_book(book_update(1, 2, 2, key=ETH))
    p.on_bar(*BTC, bar(0, 1.0))
    p.on_fill(fill(Side.BUY, "1", key=ETH))
    p.on_trade(trade("1", 3, key=BYBIT_BTC))  # nobody owns bybit:BTCUSDT
    assert [type(x).__name__ for x in a.seen] == ["TradeTick", "tuple"]
    assert [type(x).__name__ for x in b.seen] == ["BookUpdate", "Fill"]


def test_when_entry_signals_then_tagged_with_entry_and_allocation() -> None:
    p = StrategyPortfolio(
        params=entries(
            scripted(["BTCUSDT"], "0.6", {"5": "buy"}), scripted(["ETHUSDT"], "0.4", {"5": "sell"})
        ),
        symbols=[BTC, ETH],
    )
    out = p.on_timer(5)
    assert all(isinstance(s, AllocatedSignal) for s in out)
    assert [(s.symbol, s.side, s.strategy, s.allocation) for s in out] == [
        ("BTCUSDT", Side.BUY, "test_scripted#0", Decimal("0.6")),
        ("ETHUSDT", Side.SELL, "test_scripted#1", Decimal("0.4")),
    ]
    assert p.allocation_of("test_scripted#1") == Decimal("0.4")


def test_when_bare_symbol_then_every_venue_listing_it() -> None:
    p = StrategyPortfolio(params=entries(scripted(["BTCUSDT"], "1")), symbols=ALL)
    assert p.entries[0].symbols == (BTC, BYBIT_BTC) and p.entries[0].tag == "test_scripted"


@pytest.mark.parametrize(
    ("items", "bad"),
    [
        ([], "strategies"),
        ([scripted(["BTCUSDT"], "0.7"), scripted(["ETHUSDT"], "0.4")], "strategies[1].allocation"),
        ([scripted(["BTCUSDT"], "0")], "strategies[0].allocation"),
        ([scripted(["BTCUSDT"], "abc")], "strategies[0].allocation"),
        ([scripted(["binance:BTCUSDT"], "0.5"), scripted(["BTCUSDT"], "0.5")], "strategies[1].symbols"),
        ([scripted(["XRPUSDT"], "0.5")], "strategies[0].symbols[0]"),
        (
            [{"name": "supertrend", "symbols": ["BTCUSDT"], "allocation": "0.5", "params": {"period": 0}}],
            "strategies[0].params.period",
        ),
        ([{"name": "nope", "symbols": ["BTCUSDT"], "allocation": "0.5"}], "strategies[0].name"),
        (
            [{"name": "supertrend", "symbols": ["BTCUSDT"], "allocation": "0.5", "weight": 1}],
            "strategies[0].weight",
        ),
    ],
)
def test_when_invalid_entries_then_error_names_path(items: list[dict[str, Any]], bad: str) -> None:
    with pytest.raises(StrategyParamError) as info:
        create("portfolio", params=entries(*items), symbols=ALL)
    assert info.value.param == bad


HEAD = """
[engine]
mode = "paper"

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT", "ETHUSDT"]
"""


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(HEAD + body)
    return p


def test_config_when_strategies_array_then_portfolio_section_builds_it(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
[[strategies]]
name = "ema_cross"
params = { fast = 8, slow = 21 }
symbols = ["BTCUSDT"]
allocation = "0.6"

[[strategies]]
name = "supertrend"
symbols = ["binance:ETHUSDT"]
allocation = 0.4
""",
        )
    )
    assert cfg.strategy.name == "portfolio"
    assert [(e.name, e.symbols, e.allocation) for e in cfg.strategies] == [
        ("ema_cross", (BTC,), Decimal("0.6")),
        ("supertrend", (ETH,), Decimal("0.4")),
    ]
    p = create(cfg.strategy.name, params=cfg.strategy.params, symbols=[BTC, ETH])
    assert isinstance(p, StrategyPortfolio)
    assert [(e.tag, e.allocation, e.strategy.params) for e in p.entries] == [
        ("ema_cross", Decimal("0.6"), {"fast": 8, "slow": 21}),
        ("supertrend", Decimal("0.4"), {}),
    ]


def test_config_when_single_strategy_form_then_unchanged(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[strategy]\nname = "ema_cross"\n'))
    assert cfg.strategy.name == "ema_cross" and cfg.strategies == ()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            '[strategy]\nname = "ema_cross"\n'
            '[[strategies]]\nname = "x"\nsymbols = ["BTCUSDT"]\nallocation = "1"\n',
            "strategies",
        ),
        ("", "strategy"),
        ('[[strategies]]\nname = "ema_cross"\nallocation = "1"\n', "strategies[0].symbols"),
        ('[[strategies]]\nname = "ema_cross"\nsymbols = ["BTCUSDT"]\n', "strategies[0].allocation"),
        (
            '[[strategies]]\nname = "ema_cross"\nsymbols = ["BTCUSDT"]\nallocation = "1.5"\n',
            "strategies[0].allocation",
        ),
        (
            '[[strategies]]\nname = "ema_cross"\nsymbols = ["BTCUSDT"]\nallocation = "1"\nweight = 2\n',
            "strategies[0].weight",
        ),
        (
            '[[strategies]]\nname = "ema_cross"\nsymbols = ["SOLUSDT"]\nallocation = "1"\n',
            "strategies[0].symbols[0]",
        ),
        (
            '[[strategies]]\nname = "ema_cross"\nsymbols = ["bitmex:BTCUSDT"]\nallocation = "1"\n',
            "strategies[0].symbols[0]",
        ),
        (
            '[[strategies]]\nname = "a"\nsymbols = ["BTCUSDT"]\nallocation = "0.6"\n'
            '[[strategies]]\nname = "b"\nsymbols = ["ETHUSDT"]\nallocation = "0.6"\n',
            "strategies[1].allocation",
        ),
        (
            '[[strategies]]\nname = "a"\nsymbols = ["BTCUSDT"]\nallocation = "0.5"\n'
            '[[strategies]]\nname = "b"\nsymbols = ["BTCUSDT"]\nallocation = "0.5"\n',
            "strategies[1].symbols[0]",
        ),
    ],
)
def test_config_when_strategies_invalid_then_config_error_names_key(
    tmp_path: Path, body: str, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, body))
    assert info.value.key == key
