"""The local venue's instruments: linear USDT perpetuals with their trading rules.

``default_instruments()`` gives BTCUSDT, ETHUSDT and SOLUSDT with realistic filters, fees and
maintenance margin rates. ``load_instruments(config)`` applies the venue config's ``instruments``
table on top (overriding fields of a known symbol, or defining a new symbol in full); every value is
validated and a bad one raises ``ValueError`` naming the offending key. Numbers in the config are
decimal strings or ints (a float is refused: money is never parsed from a float).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.venue.model import InstrumentSpec

__all__ = [
    "DEFAULT_START_PRICES",
    "default_instruments",
    "load_instruments",
    "load_start_prices",
]

_D = Decimal

DEFAULT_START_PRICES: dict[str, Decimal] = {
    "BTCUSDT": _D("60000.0"),
    "ETHUSDT": _D("3000.00"),
    "SOLUSDT": _D("150.00"),
}


def default_instruments() -> dict[str, InstrumentSpec]:
    """BTCUSDT, ETHUSDT, SOLUSDT with Binance-like rules (fees: maker 0.02%, taker 0.05%)."""
    return {
        "BTCUSDT": InstrumentSpec(
            symbol="BTCUSDT",
            base_asset="BTC",
            tick_size=_D("0.10"),
            lot_size=_D("0.001"),
            min_qty=_D("0.001"),
            max_qty=_D("1000"),
            max_market_qty=_D("120"),
            min_notional=_D("100"),
            min_price=_D("556.80"),
            max_price=_D("4529764"),
            max_leverage=125,
            maint_margin_rate=_D("0.004"),
            maker_fee=_D("0.0002"),
            taker_fee=_D("0.0005"),
            price_precision=2,
            qty_precision=3,
        ),
        "ETHUSDT": InstrumentSpec(
            symbol="ETHUSDT",
            base_asset="ETH",
            tick_size=_D("0.01"),
            lot_size=_D("0.001"),
            min_qty=_D("0.001"),
            max_qty=_D("10000"),
            max_market_qty=_D("2000"),
            min_notional=_D("20"),
            min_price=_D("39.86"),
            max_price=_D("306177"),
            max_leverage=100,
            maint_margin_rate=_D("0.005"),
            maker_fee=_D("0.0002"),
            taker_fee=_D("0.0005"),
            price_precision=2,
            qty_precision=3,
        ),
        "SOLUSDT": InstrumentSpec(
            symbol="SOLUSDT",
            base_asset="SOL",
            tick_size=_D("0.010"),
            lot_size=_D("0.1"),
            min_qty=_D("0.1"),
            max_qty=_D("100000"),
            max_market_qty=_D("10000"),
            min_notional=_D("5"),
            min_price=_D("0.420"),
            max_price=_D("6857"),
            max_leverage=50,
            maint_margin_rate=_D("0.01"),
            maker_fee=_D("0.0002"),
            taker_fee=_D("0.0005"),
            price_precision=3,
            qty_precision=1,
        ),
    }


_SPEC_FIELDS = {f.name: f for f in fields(InstrumentSpec)}
_INT_FIELDS = frozenset({"max_leverage", "funding_interval_ms", "price_precision", "qty_precision"})
_STR_FIELDS = frozenset({"symbol", "base_asset", "quote_asset"})
_POSITIVE_FIELDS = frozenset(
    {"tick_size", "lot_size", "min_qty", "max_qty", "max_market_qty", "max_price", "percent_price_up"}
)
_EXTRA_KEYS = frozenset({"start_price"})


def _decimal(key: str, value: object) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"{key}: must be a decimal string or an int, not {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{key}: not a decimal number: {value!r}") from None
    else:
        raise ValueError(f"{key}: must be a decimal string or an int, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{key}: not a finite number: {value!r}")
    return result


def _int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: must be an int, not {type(value).__name__}")
    return value


def _validate(prefix: str, spec: InstrumentSpec) -> None:
    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{prefix}.{key}: {why}")

    for name in _POSITIVE_FIELDS:
        if getattr(spec, name) <= 0:
            raise bad(name, "must be > 0")
    for name in ("min_notional", "min_price", "maker_fee", "percent_price_down"):
        if getattr(spec, name) < 0:
            raise bad(name, "must be >= 0")
    if spec.min_qty <= 0 or spec.min_qty % spec.lot_size != 0:
        raise bad("min_qty", "must be > 0 and a multiple of lot_size")
    if spec.max_qty < spec.min_qty:
        raise bad("max_qty", "must be >= min_qty")
    if spec.max_market_qty < spec.min_qty:
        raise bad("max_market_qty", "must be >= min_qty")
    if spec.max_price <= spec.min_price:
        raise bad("max_price", "must be > min_price")
    if spec.max_leverage < 1:
        raise bad("max_leverage", "must be >= 1")
    if not _D(0) < spec.maint_margin_rate < _D(1) / spec.max_leverage:
        raise bad("maint_margin_rate", "must be > 0 and below the initial margin rate at max leverage")
    if spec.taker_fee < 0 or spec.taker_fee >= _D("0.01"):
        raise bad("taker_fee", "must be in [0, 0.01)")
    if spec.maker_fee >= _D("0.01"):
        raise bad("maker_fee", "must be below 0.01")
    if spec.percent_price_up <= 1:
        raise bad("percent_price_up", "must be > 1")
    if not spec.percent_price_down < 1:
        raise bad("percent_price_down", "must be < 1")
    if spec.funding_interval_ms <= 0:
        raise bad("funding_interval_ms", "must be > 0")
    if spec.quote_asset != "USDT":
        raise bad("quote_asset", "only USDT-margined perpetuals are supported")


def _overrides(prefix: str, table: Mapping[str, Any]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in table.items():
        if key in _EXTRA_KEYS:
            continue
        if key not in _SPEC_FIELDS:
            raise ValueError(f"{prefix}.{key}: unknown instrument key")
        full = f"{prefix}.{key}"
        if key in _INT_FIELDS:
            out[key] = _int(full, value)
        elif key in _STR_FIELDS:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{full}: must be a non-empty string")
            out[key] = value
        else:
            out[key] = _decimal(full, value)
    return out


def load_instruments(config: Mapping[str, Any] | None = None) -> dict[str, InstrumentSpec]:
    """The default instruments with the config's ``instruments`` table applied.

    ``config`` is the venue config (``{"instruments": {"BTCUSDT": {"tick_size": "0.1", ...}}}``) or
    ``None``. A known symbol takes per-field overrides; a new symbol must give every required field.
    ``{"instruments": {"only": ["BTCUSDT"]}}`` restricts the set to the symbols listed.
    """
    specs = default_instruments()
    if config is None:
        return specs
    table = config.get("instruments", {})
    if not isinstance(table, Mapping):
        raise ValueError("instruments: must be a table keyed by symbol")
    only: list[str] | None = None
    for symbol, body in table.items():
        if symbol == "only":
            if not isinstance(body, list) or not all(isinstance(s, str) for s in body):
                raise ValueError("instruments.only: must be a list of symbols")
            only = list(body)
            continue
        prefix = f"instruments.{symbol}"
        if not isinstance(body, Mapping):
            raise ValueError(f"{prefix}: must be a table")
        values = _overrides(prefix, body)
        if values.get("symbol", symbol) != symbol:
            raise ValueError(f"{prefix}.symbol: must equal the table key {symbol!r}")
        values["symbol"] = symbol
        if symbol in specs:
            spec = replace(specs[symbol], **values)  # type: ignore[arg-type]
        else:
            if "base_asset" not in values and symbol.endswith("USDT"):
                values["base_asset"] = symbol[: -len("USDT")]
            missing = [
                name
                for name, f in _SPEC_FIELDS.items()
                if name not in values and f.default is MISSING and f.default_factory is MISSING
            ]
            if missing:
                raise ValueError(f"{prefix}.{missing[0]}: required for a new instrument")
            spec = InstrumentSpec(**values)  # type: ignore[arg-type]
        _validate(prefix, spec)
        specs[symbol] = spec
    if only is not None:
        unknown = [s for s in only if s not in specs]
        if unknown:
            raise ValueError(f"instruments.only: unknown symbol {unknown[0]!r}")
        specs = {s: specs[s] for s in only}
    return specs


def load_start_prices(
    config: Mapping[str, Any] | None, instruments: Mapping[str, InstrumentSpec]
) -> dict[str, Decimal]:
    """Each instrument's starting price: the config's ``instruments.<SYMBOL>.start_price`` or the
    default; on the instrument's tick grid and inside its price limits."""
    table: Mapping[str, Any] = {}
    if config is not None:
        raw = config.get("instruments", {})
        if isinstance(raw, Mapping):
            table = raw
    out: dict[str, Decimal] = {}
    for symbol, spec in instruments.items():
        body = table.get(symbol, {})
        key = f"instruments.{symbol}.start_price"
        if isinstance(body, Mapping) and "start_price" in body:
            price = _decimal(key, body["start_price"])
        elif symbol in DEFAULT_START_PRICES:
            price = DEFAULT_START_PRICES[symbol]
        else:
            raise ValueError(f"{key}: required for a new instrument")
        if price % spec.tick_size != 0:
            raise ValueError(f"{key}: not on the tick grid ({spec.tick_size})")
        if not spec.min_price < price < spec.max_price:
            raise ValueError(f"{key}: outside [min_price, max_price]")
        out[symbol] = price
    return out
