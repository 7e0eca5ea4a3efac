"""Pure functions from Binance USD-M payloads (decoded JSON) to the engine's types.

No I/O. Every function raises :class:`~engine.errors.MalformedMessage` (naming the field) when a
payload lacks a field or carries a value it cannot parse; numbers that Binance sends as strings are
parsed with ``Decimal(str)`` (never from a float). ``unwrap`` takes the ``data`` out of a combined
stream's ``{"stream", "data"}`` envelope (and of the fixtures' ``_wrapped`` test envelope).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.adapters.binance.constants import (
    ALGO_STATUS,
    ORDER_STATUS,
    ORDER_TYPE,
    POSITION_SIDE,
    SIDE,
    TIF,
)
from engine.adapters.common.parsing import decimal_field, optional_decimal_field
from engine.errors import MalformedMessage
from engine.types import (
    Balance,
    BalanceUpdate,
    Fill,
    FundingPayment,
    Instrument,
    MarginMode,
    MarkPrice,
    Order,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionSide,
    PositionUpdate,
    Side,
    TimeInForce,
    TradeTick,
    Venue,
)

__all__ = [
    "AccountUpdate",
    "BookTicker",
    "DepthSnapshot",
    "Kline",
    "account_update",
    "actual_order_id",
    "agg_trade",
    "algo_order",
    "algo_update",
    "balance",
    "batch_orders",
    "book_ticker",
    "dec",
    "depth_snapshot",
    "instruments",
    "kline",
    "klines",
    "mark_price",
    "max_leverages",
    "order",
    "order_trade_update",
    "position",
    "position_mode",
    "premium_index",
    "server_time",
    "trade",
    "trade_lite",
    "unwrap",
    "user_trade",
]

V = Venue.BINANCE
log = logging.getLogger("engine.adapters.binance")
_ZERO = Decimal(0)
_WHERE = "binance field"  # how a malformed field's message starts


# ---- field helpers ---------------------------------------------------------------------------------


def _get(d: Mapping[str, Any], key: str) -> Any:
    try:
        return d[key]
    except (KeyError, TypeError):
        raise MalformedMessage(f"binance payload lacks {key!r}") from None


def dec(value: object, field: str = "value") -> Decimal:
    """A Decimal from a string (or an int); floats and garbage are malformed."""
    return decimal_field(value, field, _WHERE)


def _d(d: Mapping[str, Any], key: str) -> Decimal:
    return dec(_get(d, key), key)


def _d_opt(d: Mapping[str, Any], key: str) -> Decimal:
    return optional_decimal_field(d, key, _WHERE)


def _int(d: Mapping[str, Any], key: str) -> int:
    value = _get(d, key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedMessage(f"binance field {key!r} is not an integer: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise MalformedMessage(f"binance field {key!r} is not an integer: {value!r}") from None


def _enum(table: Mapping[str, Any], value: object, field: str) -> Any:
    try:
        return table[value]  # type: ignore[index]
    except (KeyError, TypeError):
        raise MalformedMessage(f"binance field {field!r} has unknown value {value!r}") from None


def _bool(value: object) -> bool:
    return value is True or value == "true"


def unwrap(message: Any) -> dict[str, Any]:
    """The payload of a message, out of a ``{"stream", "data"}`` envelope if it has one."""
    if not isinstance(message, dict):
        raise MalformedMessage(f"binance message is not an object: {type(message).__name__}")
    data = message.get("data")
    if "stream" in message and isinstance(data, dict):
        return data
    return message


# ---- reference data ---------------------------------------------------------------------------------


def max_leverages(brackets: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``/fapi/v1/leverageBracket`` -> symbol: the first bracket's ``initialLeverage``."""
    out: dict[str, int] = {}
    for entry in brackets:
        rows = _get(entry, "brackets")
        if not rows:
            raise MalformedMessage(f"binance leverage bracket of {entry.get('symbol')!r} is empty")
        out[str(_get(entry, "symbol"))] = max(_int(r, "initialLeverage") for r in rows)
    return out


def instruments(info: Mapping[str, Any], leverage: Mapping[str, int]) -> dict[str, Instrument]:
    """``exchangeInfo`` -> the trading, perpetual symbols' rules (filters; leverage from brackets)."""
    out: dict[str, Instrument] = {}
    for s in _get(info, "symbols"):
        if s.get("contractType", "PERPETUAL") != "PERPETUAL" or s.get("status", "TRADING") != "TRADING":
            continue
        filters = {f["filterType"]: f for f in _get(s, "filters")}
        price = _get(filters, "PRICE_FILTER")
        lot = _get(filters, "LOT_SIZE")
        notional = filters.get("MIN_NOTIONAL")
        symbol = str(_get(s, "symbol"))
        out[symbol] = Instrument(
            venue=V,
            symbol=symbol,
            base_asset=str(_get(s, "baseAsset")),
            quote_asset=str(_get(s, "quoteAsset")),
            tick_size=_d(price, "tickSize").normalize(),
            lot_size=_d(lot, "stepSize").normalize(),
            min_qty=_d(lot, "minQty"),
            max_qty=_d(lot, "maxQty"),
            min_notional=_d(notional, "notional") if notional is not None else _ZERO,
            max_leverage=leverage.get(symbol, 0),
        )
    return out


def server_time(d: Mapping[str, Any]) -> int:
    return _int(d, "serverTime")


def position_mode(d: Mapping[str, Any]) -> bool:
    """``GET /fapi/v1/positionSide/dual`` -> True in hedge mode."""
    return _bool(_get(d, "dualSidePosition"))


# ---- market data ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DepthSnapshot:
    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]
    ts_ms: int


def depth_snapshot(d: Mapping[str, Any]) -> DepthSnapshot:
    bids, asks = _get(d, "bids"), _get(d, "asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise MalformedMessage("binance depth snapshot bids/asks are not lists")
    return DepthSnapshot(
        last_update_id=_int(d, "lastUpdateId"), bids=bids, asks=asks, ts_ms=int(d.get("T") or d.get("E") or 0)
    )


def _trade_tick(d: Mapping[str, Any], id_key: str) -> TradeTick:
    """A trade event whose id is ``d[id_key]``: ``m`` true means the buyer was the maker, so the
    aggressor sold."""
    return TradeTick(
        venue=V,
        symbol=str(_get(d, "s")),
        trade_id=str(_get(d, id_key)),
        price=_d(d, "p"),
        qty=_d(d, "q"),
        aggressor=Side.SELL if _bool(_get(d, "m")) else Side.BUY,
        ts_ms=_int(d, "T"),
    )


def agg_trade(d: Mapping[str, Any]) -> TradeTick:
    """``aggTrade`` (id ``a``)."""
    return _trade_tick(d, "a")


def trade(d: Mapping[str, Any]) -> TradeTick:
    """``trade`` (not an official USD-M stream; id ``t``, same aggressor rule)."""
    return _trade_tick(d, "t")


def mark_price(d: Mapping[str, Any]) -> MarkPrice:
    """``markPriceUpdate``."""
    return MarkPrice(
        venue=V,
        symbol=str(_get(d, "s")),
        mark_price=_d(d, "p"),
        index_price=_d(d, "i"),
        funding_rate=_d_opt(d, "r"),
        next_funding_ms=_int(d, "T"),
        ts_ms=_int(d, "E"),
    )


def premium_index(d: Mapping[str, Any]) -> MarkPrice:
    """``GET /fapi/v1/premiumIndex`` (one symbol)."""
    return MarkPrice(
        venue=V,
        symbol=str(_get(d, "symbol")),
        mark_price=_d(d, "markPrice"),
        index_price=_d(d, "indexPrice"),
        funding_rate=_d_opt(d, "lastFundingRate"),
        next_funding_ms=_int(d, "nextFundingTime"),
        ts_ms=_int(d, "time"),
    )


@dataclass(frozen=True, kw_only=True)
class BookTicker:
    symbol: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_ms: int


def book_ticker(d: Mapping[str, Any]) -> BookTicker:
    """The ``bookTicker`` stream or ``GET /fapi/v1/ticker/bookTicker``."""
    if "bidPrice" in d:
        return BookTicker(
            symbol=str(_get(d, "symbol")),
            bid=_d(d, "bidPrice"),
            bid_qty=_d(d, "bidQty"),
            ask=_d(d, "askPrice"),
            ask_qty=_d(d, "askQty"),
            ts_ms=_int(d, "time"),
        )
    return BookTicker(
        symbol=str(_get(d, "s")),
        bid=_d(d, "b"),
        bid_qty=_d(d, "B"),
        ask=_d(d, "a"),
        ask_qty=_d(d, "A"),
        ts_ms=_int(d, "T") if "T" in d else _int(d, "E"),
    )


@dataclass(frozen=True, kw_only=True)
class Kline:
    symbol: str
    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool


def kline(d: Mapping[str, Any]) -> Kline:
    """The ``kline`` stream event."""
    k = _get(d, "k")
    return Kline(
        symbol=str(_get(d, "s")),
        open_ms=_int(k, "t"),
        close_ms=_int(k, "T"),
        open=_d(k, "o"),
        high=_d(k, "h"),
        low=_d(k, "l"),
        close=_d(k, "c"),
        volume=_d(k, "v"),
        closed=_bool(_get(k, "x")),
    )


def klines(symbol: str, rows: Sequence[Sequence[Any]]) -> list[Kline]:
    """``GET /fapi/v1/klines`` rows (arrays)."""
    out = []
    for row in rows:
        if not isinstance(row, list | tuple) or len(row) < 7:
            raise MalformedMessage(f"binance kline row is not an array of 7+: {row!r}")
        out.append(
            Kline(
                symbol=symbol,
                open_ms=int(row[0]),
                close_ms=int(row[6]),
                open=dec(row[1], "open"),
                high=dec(row[2], "high"),
                low=dec(row[3], "low"),
                close=dec(row[4], "close"),
                volume=dec(row[5], "volume"),
                closed=True,
            )
        )
    return out


# ---- orders -----------------------------------------------------------------------------------------


def _price_or_none(d: Mapping[str, Any], key: str) -> Decimal | None:
    value = d.get(key)
    if value is None or value == "":
        return None
    out = dec(value, key)
    return out if out != 0 else None


def order(d: Mapping[str, Any]) -> Order:
    """An order object of ``/fapi/v1/order`` (place, query, cancel, amend) and ``openOrders``."""
    wire_type = d.get("origType") or _get(d, "type")
    otype = ORDER_TYPE.get(str(wire_type))
    if otype is None:  # types the engine never sends (STOP, TRAILING_STOP_MARKET...) read as stop-market
        otype = OrderType.STOP_MARKET if "STOP" in str(wire_type) else OrderType.TAKE_PROFIT_MARKET
    filled = _d_opt(d, "executedQty")
    return Order(
        venue=V,
        symbol=str(_get(d, "symbol")),
        client_order_id=str(_get(d, "clientOrderId")),
        venue_order_id=str(_get(d, "orderId")),
        side=_enum(SIDE, _get(d, "side"), "side"),
        type=otype,
        tif=TIF.get(str(d.get("timeInForce", "GTC")), TimeInForce.GTC),
        qty=_d(d, "origQty"),
        price=_price_or_none(d, "price") if otype is OrderType.LIMIT else None,
        filled_qty=filled,
        avg_price=_d_opt(d, "avgPrice"),
        status=_enum(ORDER_STATUS, _get(d, "status"), "status"),
        reduce_only=_bool(d.get("reduceOnly")),
        position_side=_enum(POSITION_SIDE, d.get("positionSide", "BOTH"), "positionSide"),
        trigger_price=_price_or_none(d, "stopPrice"),
        ts_ms=int(d.get("updateTime") or d.get("time") or 0),
    )


def algo_order(d: Mapping[str, Any]) -> Order:
    """A conditional order of ``/fapi/v1/algoOrder`` and ``openAlgoOrders``."""
    status = _enum(ALGO_STATUS, _get(d, "algoStatus"), "algoStatus")
    filled = _d_opt(d, "executedQty")
    if status is OrderStatus.FILLED and filled == 0:
        status = OrderStatus.EXPIRED  # finished without a fill
    return Order(
        venue=V,
        symbol=str(_get(d, "symbol")),
        client_order_id=str(_get(d, "clientAlgoId")),
        venue_order_id=str(_get(d, "algoId")),
        side=_enum(SIDE, _get(d, "side"), "side"),
        type=_enum(ORDER_TYPE, _get(d, "orderType"), "orderType"),
        tif=TIF.get(str(d.get("timeInForce", "GTC")), TimeInForce.GTC),
        qty=_d_opt(d, "quantity"),
        price=None,
        filled_qty=filled,
        avg_price=_d_opt(d, "avgPrice"),
        status=status,
        reduce_only=_bool(d.get("reduceOnly")),
        position_side=_enum(POSITION_SIDE, d.get("positionSide", "BOTH"), "positionSide"),
        trigger_price=_price_or_none(d, "triggerPrice"),
        ts_ms=int(d.get("updateTime") or d.get("createTime") or 0),
    )


def actual_order_id(d: Mapping[str, Any], key: str = "actualOrderId") -> str:
    """The matching-engine order a triggered conditional order created: ``actualOrderId`` of an algo
    order (``/fapi/v1/algoOrder``, ``openAlgoOrders``), ``ai`` of an ALGO_UPDATE's ``o``. Its executions
    (ORDER_TRADE_UPDATE, ``userTrades``) carry this order id, not the algo id. "" before the trigger, or
    when the payload lacks it. A value that is not an order id is logged and taken as unknown (""): it only
    costs a backfill of that order's trades, where refusing the payload would drop the whole update (its
    status included) or stop a recovery."""
    value = d.get(key)
    if value is None or isinstance(value, bool) or value in ("", 0, "0"):
        return ""
    text = str(value)
    if not isinstance(value, int | str) or not text.isdigit():
        log.warning("binance_actual_order_id_invalid field=%s value=%r", key, str(value)[:64])
        return ""
    return text


def batch_orders(rows: Sequence[Mapping[str, Any]]) -> list[Order | tuple[int, str]]:
    """``POST /fapi/v1/batchOrders``: an order, or ``(code, msg)`` for an element that failed."""
    return [(_int(r, "code"), str(r.get("msg", ""))) if "code" in r else order(r) for r in rows]


def order_trade_update(event: Mapping[str, Any]) -> OrderUpdate:
    """``ORDER_TRADE_UPDATE`` -> the order's state, plus the fill when ``x`` is TRADE/CALCULATED."""
    o = _get(event, "o")
    wire_type = str(o.get("ot") or _get(o, "o"))
    otype = ORDER_TYPE.get(wire_type) or ORDER_TYPE.get(str(_get(o, "o")), OrderType.MARKET)
    symbol = str(_get(o, "s"))
    cid = str(_get(o, "c"))
    oid = str(_get(o, "i"))
    side: Side = _enum(SIDE, _get(o, "S"), "S")
    pside: PositionSide = _enum(POSITION_SIDE, o.get("ps", "BOTH"), "ps")
    ts = _int(event, "T") if "T" in event else _int(event, "E")
    status: OrderStatus = _enum(ORDER_STATUS, _get(o, "X"), "X")
    reason = ""
    if o.get("er") not in (None, "0", 0):
        reason = f"expiry reason {o.get('er')}"
    state = Order(
        venue=V,
        symbol=symbol,
        client_order_id=cid,
        venue_order_id=oid,
        side=side,
        type=otype,
        tif=TIF.get(str(o.get("f", "GTC")), TimeInForce.GTC),
        qty=_d(o, "q"),
        price=_price_or_none(o, "p") if otype is OrderType.LIMIT else None,
        filled_qty=_d(o, "z"),
        avg_price=_d_opt(o, "ap"),
        status=status,
        reduce_only=_bool(o.get("R")),
        position_side=pside,
        trigger_price=_price_or_none(o, "sp"),
        ts_ms=ts,
        reason=reason,
    )
    fill = None
    if _get(o, "x") in ("TRADE", "CALCULATED"):
        fill = Fill(
            venue=V,
            symbol=symbol,
            client_order_id=cid,
            venue_order_id=oid,
            trade_id=str(_get(o, "t")),
            side=side,
            position_side=pside,
            price=_d(o, "L"),
            qty=_d(o, "l"),
            fee=_d_opt(o, "n"),
            fee_asset=str(o.get("N") or ""),
            is_maker=_bool(o.get("m")),
            realized_pnl=_d_opt(o, "rp"),
            ts_ms=_int(o, "T") if "T" in o else ts,
        )
    return OrderUpdate(order=state, fill=fill)


def algo_update(event: Mapping[str, Any]) -> OrderUpdate:
    """``ALGO_UPDATE``: a conditional order's lifecycle (its fills arrive as ORDER_TRADE_UPDATE)."""
    o = _get(event, "o")
    status: OrderStatus = _enum(ALGO_STATUS, _get(o, "X"), "X")
    filled = _d_opt(o, "aq")
    if status is OrderStatus.FILLED and filled == 0:
        status = OrderStatus.EXPIRED
    return OrderUpdate(
        order=Order(
            venue=V,
            symbol=str(_get(o, "s")),
            client_order_id=str(_get(o, "caid")),
            venue_order_id=str(_get(o, "aid")),
            side=_enum(SIDE, _get(o, "S"), "S"),
            type=_enum(ORDER_TYPE, _get(o, "o"), "o"),
            tif=TIF.get(str(o.get("f", "GTC")), TimeInForce.GTC),
            qty=_d_opt(o, "q"),
            price=None,
            filled_qty=filled,
            avg_price=_d_opt(o, "ap"),
            status=status,
            reduce_only=_bool(o.get("R")),
            position_side=_enum(POSITION_SIDE, o.get("ps", "BOTH"), "ps"),
            trigger_price=_price_or_none(o, "tp"),
            ts_ms=_int(event, "T") if "T" in event else _int(event, "E"),
        ),
        fill=None,
    )


def trade_lite(event: Mapping[str, Any]) -> tuple[str, str, Decimal, Decimal]:
    """``TRADE_LITE``: (client id, trade id, price, qty). The engine takes fills (with their fees) from
    ORDER_TRADE_UPDATE; this is parsed only to be validated and logged."""
    return str(_get(event, "c")), str(_get(event, "t")), _d(event, "L"), _d(event, "l")


# ---- account ----------------------------------------------------------------------------------------


def position(d: Mapping[str, Any], *, default_leverage: int = 0) -> Position:
    """A ``positionRisk`` entry (v2 or v3; v3 may lack leverage and margin type)."""
    margin = str(d.get("marginType", "cross")).lower()
    lev = d.get("leverage")
    return Position(
        venue=V,
        symbol=str(_get(d, "symbol")),
        side=_enum(POSITION_SIDE, d.get("positionSide", "BOTH"), "positionSide"),
        qty=_d(d, "positionAmt"),
        entry_price=_d(d, "entryPrice"),
        mark_price=_d_opt(d, "markPrice"),
        unrealized_pnl=_d_opt(d, "unRealizedProfit"),
        leverage=int(lev) if lev not in (None, "") else default_leverage,
        margin_mode=MarginMode.ISOLATED if margin == "isolated" else MarginMode.CROSS,
        liquidation_price=_d_opt(d, "liquidationPrice"),
        ts_ms=int(d.get("updateTime") or 0),
    )


def balance(d: Mapping[str, Any]) -> Balance:
    """A ``/fapi/v3/balance`` (or v2) entry."""
    return Balance(
        venue=V,
        asset=str(_get(d, "asset")),
        wallet_balance=_d(d, "balance"),
        available_balance=_d(d, "availableBalance"),
        unrealized_pnl=_d_opt(d, "crossUnPnl"),
        ts_ms=int(d.get("updateTime") or 0),
    )


@dataclass(frozen=True, kw_only=True)
class AccountUpdate:
    reason: str  # the venue's ``m``, lower-cased ("order", "funding_fee", ...)
    balances: list[BalanceUpdate]
    positions: list[PositionUpdate]
    funding: list[FundingPayment]


def account_update(
    event: Mapping[str, Any],
    *,
    known_positions: Mapping[tuple[str, PositionSide], Position] | None = None,
    known_balances: Mapping[str, Balance] | None = None,
) -> AccountUpdate:
    """``ACCOUNT_UPDATE``. The event lacks mark price, leverage and liquidation price (and the available
    balance): they are carried over from ``known_*`` (the adapter's last view), else zero."""
    a = _get(event, "a")
    ts = _int(event, "T") if "T" in event else _int(event, "E")
    reason = str(_get(a, "m"))
    known_positions = known_positions or {}
    known_balances = known_balances or {}
    balances: list[BalanceUpdate] = []
    funding: list[FundingPayment] = []
    for b in a.get("B") or []:
        asset = str(_get(b, "a"))
        prev = known_balances.get(asset)
        wallet = _d(b, "wb")
        balances.append(
            BalanceUpdate(
                balance=Balance(
                    venue=V,
                    asset=asset,
                    wallet_balance=wallet,
                    available_balance=prev.available_balance if prev is not None else _d_opt(b, "cw"),
                    unrealized_pnl=prev.unrealized_pnl if prev is not None else _ZERO,
                    ts_ms=ts,
                ),
                reason=reason.lower(),
            )
        )
    positions: list[PositionUpdate] = []
    for p in a.get("P") or []:
        symbol = str(_get(p, "s"))
        pside: PositionSide = _enum(POSITION_SIDE, p.get("ps", "BOTH"), "ps")
        prev_pos = known_positions.get((symbol, pside))
        positions.append(
            PositionUpdate(
                position=Position(
                    venue=V,
                    symbol=symbol,
                    side=pside,
                    qty=_d(p, "pa"),
                    entry_price=_d(p, "ep"),
                    mark_price=prev_pos.mark_price if prev_pos is not None else _ZERO,
                    unrealized_pnl=_d_opt(p, "up"),
                    leverage=prev_pos.leverage if prev_pos is not None else 0,
                    margin_mode=MarginMode.ISOLATED
                    if str(p.get("mt", "cross")).lower() == "isolated"
                    else MarginMode.CROSS,
                    liquidation_price=prev_pos.liquidation_price if prev_pos is not None else _ZERO,
                    ts_ms=ts,
                )
            )
        )
    if reason == "FUNDING_FEE":
        # a cross position's payment names no symbol (B only); an isolated one comes with its position
        symbol_paid = positions[0].position.symbol if len(positions) == 1 else ""
        for b in a.get("B") or []:
            funding.append(FundingPayment(venue=V, symbol=symbol_paid, amount=_d_opt(b, "bc"), ts_ms=ts))
    return AccountUpdate(reason=reason, balances=balances, positions=positions, funding=funding)


def user_trade(d: Mapping[str, Any], *, client_order_id: str) -> Fill:
    """A ``GET /fapi/v1/userTrades`` entry (it names the venue order id, not the client id)."""
    return Fill(
        venue=V,
        symbol=str(_get(d, "symbol")),
        client_order_id=client_order_id,
        venue_order_id=str(_get(d, "orderId")),
        trade_id=str(_get(d, "id")),
        side=_enum(SIDE, _get(d, "side"), "side"),
        position_side=_enum(POSITION_SIDE, d.get("positionSide", "BOTH"), "positionSide"),
        price=_d(d, "price"),
        qty=_d(d, "qty"),
        fee=_d_opt(d, "commission"),
        fee_asset=str(d.get("commissionAsset") or ""),
        is_maker=_bool(d.get("maker")),
        realized_pnl=_d_opt(d, "realizedPnl"),
        ts_ms=_int(d, "time"),
    )
