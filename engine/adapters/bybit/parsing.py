"""Pure functions from Bybit v5 (linear) payloads to the engine's types; no I/O, no state but what the
caller passes in.

Every number arrives as a string and becomes a ``Decimal`` straight from that string (never through a
float). A payload that cannot be parsed raises :class:`~engine.errors.MalformedMessage`, naming the
field; the caller counts and drops it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from engine.adapters.bybit.constants import (
    SIDE_IN,
    SIDE_OF_IDX,
    STATUS_IN,
    TIF_IN,
    WS_REJECT_REASONS,
)
from engine.adapters.common.parsing import decimal_field, optional_decimal_field
from engine.errors import MalformedMessage
from engine.types import (
    Balance,
    Fill,
    FundingPayment,
    Instrument,
    MarginMode,
    MarkPrice,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Side,
    TimeInForce,
    TradeTick,
    Venue,
)

__all__ = [
    "BookLevels",
    "Kline",
    "OpReply",
    "TickerState",
    "dec",
    "opt_dec",
    "order_type_of",
    "parse_ack",
    "parse_balances",
    "parse_book_message",
    "parse_cancel_all",
    "parse_execution",
    "parse_instrument",
    "parse_instruments",
    "parse_kline_rest",
    "parse_kline_ws",
    "parse_op_reply",
    "parse_order",
    "parse_orderbook_rest",
    "parse_position",
    "parse_server_time",
    "parse_trades",
    "status_of",
]

VENUE = Venue.BYBIT
_ZERO = Decimal(0)
_WHERE = "bybit: field"  # how a malformed field's message starts

JSON = Mapping[str, Any]


# ---- field helpers ------------------------------------------------------------------------------------


def _field(obj: JSON, key: str) -> Any:
    try:
        return obj[key]
    except (KeyError, TypeError):
        raise MalformedMessage(f"bybit: field {key!r} is missing") from None


def _str(obj: JSON, key: str) -> str:
    value = _field(obj, key)
    if not isinstance(value, str):
        raise MalformedMessage(f"bybit: field {key!r} is not a string: {value!r}")
    return value


def dec(obj: JSON, key: str) -> Decimal:
    """A required decimal field (a JSON string; a JSON integer is accepted, a float never)."""
    value = _field(obj, key)
    return _to_dec(value, key)


def opt_dec(obj: JSON, key: str, default: Decimal = _ZERO) -> Decimal:
    """An optional decimal field: missing, null or "" give ``default``."""
    return optional_decimal_field(obj, key, _WHERE, default)


def _to_dec(value: object, key: str) -> Decimal:
    return decimal_field(value, key, _WHERE)


def _int(obj: JSON, key: str, default: int | None = None) -> int:
    """An integer field sent as a JSON number or a decimal string (ms timestamps, ids)."""
    value = obj.get(key) if default is not None else _field(obj, key)
    if value is None or value == "":
        if default is None:
            raise MalformedMessage(f"bybit: field {key!r} is empty")
        return default
    if isinstance(value, bool):
        raise MalformedMessage(f"bybit: field {key!r} is not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise MalformedMessage(f"bybit: field {key!r} is not an integer: {value!r}")


def _side(obj: JSON, key: str = "side") -> Side:
    raw = _field(obj, key)
    side = SIDE_IN.get(raw) if isinstance(raw, str) else None
    if side is None:
        raise MalformedMessage(f"bybit: field {key!r} is not Buy/Sell: {raw!r}")
    return side


def _bool(obj: JSON, key: str, default: bool = False) -> bool:
    value = obj.get(key, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "1", 1):
        return True
    if value in ("false", "0", 0, "", None):
        return False
    raise MalformedMessage(f"bybit: field {key!r} is not a boolean: {value!r}")


def _position_side(obj: JSON) -> PositionSide:
    idx = _int(obj, "positionIdx", default=0)
    side = SIDE_OF_IDX.get(idx)
    if side is None:
        raise MalformedMessage(f"bybit: positionIdx {idx!r} is not 0, 1 or 2")
    return side


def _leverage(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _list(obj: JSON, key: str) -> list[Any]:
    value = _field(obj, key)
    if not isinstance(value, list):
        raise MalformedMessage(f"bybit: field {key!r} is not a list")
    return value


def _obj(value: object, what: str) -> JSON:
    if not isinstance(value, Mapping):
        raise MalformedMessage(f"bybit: {what} is not an object")
    return value


# ---- reference data -----------------------------------------------------------------------------------


def parse_instrument(entry: JSON) -> Instrument:
    """One ``instruments-info`` list entry (priceFilter, lotSizeFilter, leverageFilter)."""
    price_filter = _obj(_field(entry, "priceFilter"), "priceFilter")
    lot_filter = _obj(_field(entry, "lotSizeFilter"), "lotSizeFilter")
    lev_filter = _obj(_field(entry, "leverageFilter"), "leverageFilter")
    tick = dec(price_filter, "tickSize")
    step = dec(lot_filter, "qtyStep")
    if tick <= 0 or step <= 0:
        raise MalformedMessage(f"bybit: tickSize {tick} / qtyStep {step} must be positive")
    return Instrument(
        venue=VENUE,
        symbol=_str(entry, "symbol"),
        base_asset=_str(entry, "baseCoin"),
        quote_asset=str(entry.get("settleCoin") or _str(entry, "quoteCoin")),
        tick_size=tick,
        lot_size=step,
        min_qty=dec(lot_filter, "minOrderQty"),
        max_qty=dec(lot_filter, "maxOrderQty"),
        min_notional=opt_dec(lot_filter, "minNotionalValue"),
        max_leverage=_leverage(dec(lev_filter, "maxLeverage")),
    )


def parse_instruments(result: JSON, *, trading_only: bool = True) -> dict[str, Instrument]:
    """The ``result`` of ``instruments-info``: linear perpetuals (status ``Trading`` unless told)."""
    out: dict[str, Instrument] = {}
    for raw in _list(result, "list"):
        entry = _obj(raw, "instrument")
        if trading_only and entry.get("status", "Trading") != "Trading":
            continue
        contract = entry.get("contractType", "LinearPerpetual")
        if contract != "LinearPerpetual":
            continue
        inst = parse_instrument(entry)
        out[inst.symbol] = inst
    return out


def parse_server_time(result: JSON) -> int:
    """``/v5/market/time`` ``result`` -> epoch ms (from ``timeNano``, else ``timeSecond``)."""
    nano = result.get("timeNano")
    if nano:
        return _int(result, "timeNano") // 1_000_000
    return _int(result, "timeSecond") * 1000


# ---- orders -------------------------------------------------------------------------------------------


def _trigger_price(entry: JSON) -> Decimal | None:
    trigger = opt_dec(entry, "triggerPrice")
    return trigger if trigger > 0 else None


def order_type_of(entry: JSON) -> OrderType:
    """The engine's type of an order: Limit, Market, or a conditional market order whose kind follows
    from ``triggerDirection`` and the side (a buy that fires on a rise is a stop, on a fall a
    take-profit), or from ``stopOrderType`` when the direction is not given."""
    raw = _str(entry, "orderType")
    if raw == "Limit":
        return OrderType.LIMIT
    if raw != "Market":
        raise MalformedMessage(f"bybit: orderType {raw!r} is not Limit/Market")
    if _trigger_price(entry) is None:
        return OrderType.MARKET
    side = _side(entry)
    direction = _int(entry, "triggerDirection", default=0)
    if direction in (1, 2):
        rises = direction == 1
        return OrderType.STOP_MARKET if rises == (side is Side.BUY) else OrderType.TAKE_PROFIT_MARKET
    kind = str(entry.get("stopOrderType") or "")
    return OrderType.TAKE_PROFIT_MARKET if "TakeProfit" in kind else OrderType.STOP_MARKET


def status_of(entry: JSON) -> tuple[OrderStatus, str]:
    """(engine status, reason) of an order: ``Cancelled`` becomes REJECTED/EXPIRED when the venue did it
    for the time in force (``EC_PostOnlyWillTakeLiquidity``, ``EC_NoImmediateQtyToFill``...)."""
    raw = _str(entry, "orderStatus")
    status = STATUS_IN.get(raw)
    if status is None:
        raise MalformedMessage(f"bybit: orderStatus {raw!r} is unknown")
    reject = str(entry.get("rejectReason") or "")
    cancel_type = str(entry.get("cancelType") or "")
    if status is OrderStatus.CANCELED:
        if reject in WS_REJECT_REASONS:
            return WS_REJECT_REASONS[reject]
        if cancel_type == "CancelByReduceOnly":
            return OrderStatus.CANCELED, "reduce_only"
        if raw == "Deactivated":
            return OrderStatus.CANCELED, "deactivated"
        if cancel_type not in ("", "UNKNOWN", "CancelByUser"):
            return OrderStatus.CANCELED, cancel_type
        return OrderStatus.CANCELED, ""
    if status is OrderStatus.REJECTED:
        return status, reject if reject not in ("", "EC_NoError") else "other"
    return status, ""


def parse_order(entry: JSON) -> Order:
    """One order of ``/v5/order/realtime``, ``/v5/order/history`` or the ``order`` topic."""
    order_type = order_type_of(entry)
    status, reason = status_of(entry)
    tif_raw = _str(entry, "timeInForce")
    tif = TIF_IN.get(tif_raw)
    if tif is None:
        raise MalformedMessage(f"bybit: timeInForce {tif_raw!r} is unknown")
    if order_type is not OrderType.LIMIT:
        tif = TimeInForce.IOC if order_type is OrderType.MARKET else TimeInForce.GTC
    updated = _int(entry, "updatedTime", default=0) or _int(entry, "createdTime", default=0)
    return Order(
        venue=VENUE,
        symbol=_str(entry, "symbol"),
        client_order_id=str(entry.get("orderLinkId") or ""),
        venue_order_id=_str(entry, "orderId"),
        side=_side(entry),
        type=order_type,
        tif=tif,
        qty=dec(entry, "qty"),
        price=dec(entry, "price") if order_type is OrderType.LIMIT else None,
        filled_qty=opt_dec(entry, "cumExecQty"),
        avg_price=opt_dec(entry, "avgPrice"),
        status=status,
        reduce_only=_bool(entry, "reduceOnly") or _bool(entry, "closeOnTrigger"),
        position_side=_position_side(entry),
        trigger_price=_trigger_price(entry),
        ts_ms=updated,
        reason=reason,
    )


def parse_ack(result: JSON) -> tuple[str, str]:
    """(orderId, orderLinkId) of a create / amend / cancel answer."""
    return _str(result, "orderId"), str(result.get("orderLinkId") or "")


def parse_cancel_all(result: JSON) -> list[tuple[str, str]]:
    """(orderId, orderLinkId) of every order ``cancel-all`` cancelled."""
    return [parse_ack(_obj(e, "cancel-all entry")) for e in _list(result, "list")]


# ---- executions, positions, wallet --------------------------------------------------------------------

#: execType values that are trades of the account's orders (fills).
_TRADE_EXEC_TYPES = frozenset({"Trade", "AdlTrade", "BustTrade", "BlockTrade", "Delivery", "Settle"})


def parse_execution(
    entry: JSON, *, position_side: PositionSide = PositionSide.BOTH
) -> Fill | FundingPayment | None:
    """One execution (``/v5/execution/list`` or the ``execution`` topic): a trade -> ``Fill``, a funding
    settlement -> ``FundingPayment`` (``execFee`` is what was paid, so the amount is its negation), other
    kinds -> None. The execution carries no ``positionIdx``: the caller passes the order's side."""
    exec_type = _str(entry, "execType")
    ts = _int(entry, "execTime")
    symbol = _str(entry, "symbol")
    if exec_type == "Funding":
        return FundingPayment(venue=VENUE, symbol=symbol, amount=-dec(entry, "execFee"), ts_ms=ts)
    if exec_type not in _TRADE_EXEC_TYPES:
        return None
    return Fill(
        venue=VENUE,
        symbol=symbol,
        client_order_id=str(entry.get("orderLinkId") or ""),
        venue_order_id=_str(entry, "orderId"),
        trade_id=_str(entry, "execId"),
        side=_side(entry),
        position_side=position_side,
        price=dec(entry, "execPrice"),
        qty=dec(entry, "execQty"),
        fee=opt_dec(entry, "execFee"),
        fee_asset=str(entry.get("feeCurrency") or "USDT"),
        is_maker=_bool(entry, "isMaker"),
        realized_pnl=opt_dec(entry, "execPnl"),
        ts_ms=ts,
    )


def parse_position(entry: JSON, *, margin_mode: MarginMode | None = None) -> Position:
    """One position (``/v5/position/list`` or the ``position`` topic). ``size`` is always positive on the
    wire; the engine's qty is signed (short negative, hedge-mode SHORT too). ``tradeMode`` (0 cross,
    1 isolated) gives the margin mode unless the caller knows the account's (a UTA sets it per account)."""
    side = _position_side(entry)
    size = dec(entry, "size")
    wire_side = str(entry.get("side") or "")
    if side is PositionSide.SHORT or (side is PositionSide.BOTH and wire_side == "Sell"):
        qty = -size
    else:
        qty = size
    if margin_mode is None:
        margin_mode = MarginMode.ISOLATED if _int(entry, "tradeMode", default=0) == 1 else MarginMode.CROSS
    entry_price = opt_dec(entry, "entryPrice") if "entryPrice" in entry else opt_dec(entry, "avgPrice")
    return Position(
        venue=VENUE,
        symbol=_str(entry, "symbol"),
        side=side,
        qty=qty,
        entry_price=entry_price if size != 0 else _ZERO,
        mark_price=opt_dec(entry, "markPrice"),
        unrealized_pnl=opt_dec(entry, "unrealisedPnl"),
        leverage=_leverage(opt_dec(entry, "leverage", Decimal(1))),
        margin_mode=margin_mode,
        liquidation_price=opt_dec(entry, "liqPrice"),
        ts_ms=_int(entry, "updatedTime", default=0),
    )


def parse_balances(account: JSON, *, ts_ms: int, assets: Sequence[str] | None = None) -> list[Balance]:
    """The coins of one UNIFIED account entry (``wallet-balance`` ``result.list[i]`` or a ``wallet``
    message's ``data[i]``). The available balance is the coin's ``availableToWithdraw`` when Bybit
    fills it; for a UTA it is deprecated (empty), and then the account's ``totalAvailableBalance`` (in
    USD) stands for the USDT coin and ``walletBalance - totalPositionIM - totalOrderIM`` for others."""
    out: list[Balance] = []
    total_available = opt_dec(account, "totalAvailableBalance", Decimal(-1))
    for raw in _list(account, "coin"):
        coin = _obj(raw, "coin entry")
        asset = _str(coin, "coin")
        if assets is not None and asset not in assets:
            continue
        wallet = dec(coin, "walletBalance")
        available_raw = coin.get("availableToWithdraw")
        if available_raw not in (None, ""):
            available = opt_dec(coin, "availableToWithdraw")
        elif asset == "USDT" and total_available >= 0:
            available = total_available
        else:
            available = wallet - opt_dec(coin, "totalPositionIM") - opt_dec(coin, "totalOrderIM")
        out.append(
            Balance(
                venue=VENUE,
                asset=asset,
                wallet_balance=wallet,
                available_balance=available,
                unrealized_pnl=opt_dec(coin, "unrealisedPnl"),
                ts_ms=ts_ms,
            )
        )
    return out


# ---- public market data -------------------------------------------------------------------------------


def parse_trades(message: JSON) -> list[TradeTick]:
    """A ``publicTrade.{symbol}`` message -> trade ticks, in the venue's (ascending time) order."""
    out: list[TradeTick] = []
    for raw in _list(message, "data"):
        t = _obj(raw, "trade")
        out.append(
            TradeTick(
                venue=VENUE,
                symbol=_str(t, "s"),
                trade_id=_str(t, "i"),
                price=dec(t, "p"),
                qty=dec(t, "v"),
                aggressor=_side(t, "S"),
                ts_ms=_int(t, "T"),
            )
        )
    return out


class TickerState:
    """The merged ``tickers.{symbol}`` state: a snapshot, then deltas carrying only changed fields.

    ``apply`` returns a :class:`MarkPrice` once mark price, index price, funding rate and next funding
    time are all known, and only when one of them changed (a delta of, say, volume alone gives None).
    """

    _KEYS = ("markPrice", "indexPrice", "fundingRate", "nextFundingTime")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.fields: dict[str, Any] = {}

    def apply(self, message: JSON) -> MarkPrice | None:
        kind = message.get("type")
        data = _obj(_field(message, "data"), "ticker data")
        if kind == "snapshot":
            self.fields = dict(data)
        elif kind == "delta":
            if not self.fields:
                # a delta before any snapshot cannot be merged into a full state
                raise MalformedMessage(f"bybit: ticker delta for {self.symbol} before its snapshot")
            self.fields.update(data)
        else:
            raise MalformedMessage(f"bybit: ticker type {kind!r} is not snapshot/delta")
        if not any(k in data for k in self._KEYS) or not all(self.fields.get(k) for k in self._KEYS):
            return None
        return MarkPrice(
            venue=VENUE,
            symbol=self.symbol,
            mark_price=dec(self.fields, "markPrice"),
            index_price=dec(self.fields, "indexPrice"),
            funding_rate=dec(self.fields, "fundingRate"),
            next_funding_ms=_int(self.fields, "nextFundingTime"),
            ts_ms=_int(message, "ts", default=0),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class BookLevels:
    """A decoded orderbook message (the adapter's hot path feeds raw frames to the sync kernel instead;
    this is for tests, REST snapshots and diagnostics)."""

    symbol: str
    kind: str  # "snapshot" or "delta"
    update_id: int
    seq: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    ts_ms: int


def _levels(raw: object, name: str) -> list[tuple[Decimal, Decimal]]:
    if not isinstance(raw, list):
        raise MalformedMessage(f"bybit: book side {name!r} is not a list")
    out: list[tuple[Decimal, Decimal]] = []
    for level in raw:
        if not isinstance(level, list) or len(level) != 2:
            raise MalformedMessage(f"bybit: book level {level!r} is not a [price, size] pair")
        out.append((_to_dec(level[0], name), _to_dec(level[1], name)))
    return out


def parse_book_message(message: JSON) -> BookLevels:
    """An ``orderbook.{depth}.{symbol}`` message."""
    kind = _str(message, "type")
    if kind not in ("snapshot", "delta"):
        raise MalformedMessage(f"bybit: orderbook type {kind!r} is not snapshot/delta")
    data = _obj(_field(message, "data"), "orderbook data")
    return _book_levels(data, kind, stamped=message)


def parse_orderbook_rest(result: JSON) -> BookLevels:
    """``/v5/market/orderbook`` ``result`` (bids descending, asks ascending)."""
    return _book_levels(result, "snapshot", stamped=result)


def _book_levels(data: JSON, kind: str, *, stamped: JSON) -> BookLevels:
    """The levels of a book message's ``data`` (or a REST ``result``: same fields); ``stamped`` carries
    the ``ts``."""
    return BookLevels(
        symbol=_str(data, "s"),
        kind=kind,
        update_id=_int(data, "u"),
        seq=_int(data, "seq", default=0),
        bids=_levels(_field(data, "b"), "b"),
        asks=_levels(_field(data, "a"), "a"),
        ts_ms=_int(stamped, "ts", default=0),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Kline:
    symbol: str
    interval: str
    start_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    turnover: Decimal
    closed: bool


def parse_kline_ws(message: JSON) -> list[Kline]:
    """A ``kline.{interval}.{symbol}`` message (``confirm`` true when the bar is closed)."""
    topic = _str(message, "topic")
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != "kline":
        raise MalformedMessage(f"bybit: topic {topic!r} is not kline.<interval>.<symbol>")
    out: list[Kline] = []
    for raw in _list(message, "data"):
        k = _obj(raw, "kline")
        out.append(
            Kline(
                symbol=parts[2],
                interval=_str(k, "interval"),
                start_ms=_int(k, "start"),
                open=dec(k, "open"),
                high=dec(k, "high"),
                low=dec(k, "low"),
                close=dec(k, "close"),
                volume=dec(k, "volume"),
                turnover=dec(k, "turnover"),
                closed=_bool(k, "confirm"),
            )
        )
    return out


def parse_kline_rest(result: JSON, *, interval: str) -> list[Kline]:
    """``/v5/market/kline`` ``result`` (newest first on the wire) -> bars oldest first. The REST rows
    carry no ``confirm``: every row but the newest is closed."""
    symbol = _str(result, "symbol")
    rows = _list(result, "list")
    out: list[Kline] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 7:
            raise MalformedMessage(f"bybit: kline row {row!r} has fewer than 7 fields")
        start = row[0]
        if not isinstance(start, str) or not start.isdigit():
            raise MalformedMessage(f"bybit: kline start {start!r} is not an ms timestamp")
        out.append(
            Kline(
                symbol=symbol,
                interval=interval,
                start_ms=int(start),
                open=_to_dec(row[1], "open"),
                high=_to_dec(row[2], "high"),
                low=_to_dec(row[3], "low"),
                close=_to_dec(row[4], "close"),
                volume=_to_dec(row[5], "volume"),
                turnover=_to_dec(row[6], "turnover"),
                closed=i != 0,
            )
        )
    out.reverse()
    return out


# ---- stream control replies ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class OpReply:
    """A reply to one of our ``op`` requests (subscribe, unsubscribe, auth, ping)."""

    op: str
    success: bool
    message: str
    req_id: str
    code: int


def parse_op_reply(message: JSON) -> OpReply | None:
    """The reply to an ``op`` request, or None when ``message`` is a data message (has ``topic``).

    Public pongs are ``{"op":"ping","ret_msg":"pong",...}``, private ones ``{"op":"pong",...}``; both
    become ``op="pong"``. Auth replies may carry ``retCode``/``retMsg`` besides ``success``."""
    if "topic" in message:
        return None
    op = message.get("op")
    if not isinstance(op, str):
        raise MalformedMessage("bybit: stream message has neither topic nor op")
    msg = message.get("ret_msg", message.get("retMsg", ""))
    msg = msg if isinstance(msg, str) else str(msg)
    if op == "pong" or (op == "ping" and msg == "pong"):
        return OpReply(
            op="pong", success=True, message="pong", req_id=str(message.get("req_id") or ""), code=0
        )
    success = message.get("success")
    code = message.get("retCode", 0)
    return OpReply(
        op=op,
        success=success is True,
        message=msg,
        req_id=str(message.get("req_id") or ""),
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
    )
