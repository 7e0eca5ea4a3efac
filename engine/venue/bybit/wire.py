"""Bybit v5 (category ``linear``) wire formats, without I/O: parsing request values, formatting exact
decimals, and building the payloads of REST replies and stream messages from the core's values.

Money is exact: every number goes out as a string made from a ``Decimal``. Prices and sizes are
formatted on the instrument's grid with at least ``price_precision`` / ``qty_precision`` decimals and
never rounded (a value finer than the grid keeps its digits), so the same price is always the same
string. Ids are strings: order ids are UUIDs made from the core's integer ids (the form Bybit uses for
linear orders), so they can be turned back into the core's ids.
"""

from __future__ import annotations

import uuid
from decimal import Context, Decimal, InvalidOperation, localcontext

from engine.venue.bybit.errors import ORDER_NOT_EXISTS, PARAMS_ERROR, BybitError
from engine.venue.model import (
    AccountState,
    Fill,
    InstrumentSpec,
    MarginMode,
    MarkPriceEvent,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    Side,
    TimeInForce,
    TradeEvent,
    TriggerBy,
    VenueOrder,
)

__all__ = [
    "FRONTEND_ID_BASE",
    "PRICE_CACHE_SIZE",
    "InstrumentFormat",
    "envelope",
    "exec_id",
    "execution_entry",
    "fmt_amount",
    "fmt_decimal",
    "fmt_ratio",
    "funding_entry",
    "instrument_entry",
    "link_id",
    "order_entry",
    "order_id_str",
    "order_quote",
    "parse_bool",
    "parse_decimal",
    "parse_int",
    "parse_order_id",
    "parse_side",
    "position_entry",
    "position_idx",
    "position_side_from_idx",
    "public_trade_entry",
    "ticker_fields",
    "trigger_direction",
    "wallet_entry",
]

_WIDE = Context(prec=80)
_ZERO = Decimal(0)
# Orders the front-end itself shows (accepted by Bybit's rules, refused by the core: a PostOnly that
# would take) get ids above this mark, so they never collide with the core's.
FRONTEND_ID_BASE = 0xB7B7 << 112

_SIDE_OUT = {Side.BUY: "Buy", Side.SELL: "Sell"}
_SIDE_IN = {"Buy": Side.BUY, "Sell": Side.SELL}
_IDX = {PositionSide.BOTH: 0, PositionSide.LONG: 1, PositionSide.SHORT: 2}
_IDX_IN = {0: PositionSide.BOTH, 1: PositionSide.LONG, 2: PositionSide.SHORT}
_TIF_OUT = {
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
    TimeInForce.POST_ONLY: "PostOnly",
}
_TRIGGER_BY_OUT = {TriggerBy.MARK: "MarkPrice", TriggerBy.LAST: "LastPrice"}
_STATUS_OUT = {
    OrderStatus.NEW: "New",
    OrderStatus.PARTIALLY_FILLED: "PartiallyFilled",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELED: "Cancelled",
    OrderStatus.EXPIRED: "Cancelled",
    OrderStatus.UNTRIGGERED: "Untriggered",
    OrderStatus.TRIGGERED: "Triggered",
}


# ---- numbers --------------------------------------------------------------------------------------


def fmt_decimal(value: Decimal, places: int) -> str:
    """``value`` in plain notation with at least ``places`` decimals and never fewer than it needs."""
    if not value.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    with localcontext(_WIDE):
        if value == _ZERO:
            value = _ZERO  # no "-0"
        normal = value.normalize()
        exponent = normal.as_tuple().exponent
        assert isinstance(exponent, int)
        decimals = max(places, -exponent, 0)
        return format(normal.quantize(Decimal(1).scaleb(-decimals)), "f")


def fmt_amount(value: Decimal) -> str:
    """A money amount (fee, PnL, balance) exactly, without trailing zeros: ``"0"``, ``"12.5"``."""
    return fmt_decimal(value, 0)


def fmt_ratio(numerator: Decimal, denominator: Decimal) -> str:
    """A rate such as accountIMRate, to 4 decimals (the venue's display); "0" when undefined."""
    if denominator <= _ZERO:
        return "0"
    with localcontext(_WIDE):
        return fmt_decimal((numerator / denominator).quantize(Decimal("0.0001")), 0)


#: entries of an instrument's price-string cache before it is emptied (book prices repeat step to step)
PRICE_CACHE_SIZE = 8192


class InstrumentFormat:
    """Canonical price and size strings of one instrument.

    Book prices recur from one market step to the next, so their strings are cached (by value: equal
    decimals format to the same canonical string whatever their exponent), in a bounded dict emptied
    when it reaches :data:`PRICE_CACHE_SIZE` entries."""

    __slots__ = ("_prices", "price_places", "qty_places", "spec")

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        tick_exp = spec.tick_size.normalize().as_tuple().exponent
        lot_exp = spec.lot_size.normalize().as_tuple().exponent
        assert isinstance(tick_exp, int) and isinstance(lot_exp, int)
        self.price_places = max(spec.price_precision, -tick_exp, 0)
        self.qty_places = max(spec.qty_precision, -lot_exp, 0)
        self._prices: dict[Decimal, str] = {}

    def price(self, value: Decimal) -> str:
        if not value.is_finite():  # never a cache key (a signalling NaN cannot even be hashed)
            raise ValueError(f"not a finite decimal: {value!r}")
        text = self._prices.get(value)
        if text is None:
            text = fmt_decimal(value, self.price_places)
            if len(self._prices) >= PRICE_CACHE_SIZE:
                self._prices.clear()
            self._prices[value] = text
        return text

    def qty(self, value: Decimal) -> str:
        return fmt_decimal(value, self.qty_places)

    def level(self, price: Decimal, qty: Decimal) -> list[str]:
        """A book level; a deletion's size is ``"0"`` exactly, as Bybit sends it."""
        size = "0" if qty == _ZERO else fmt_decimal(qty, self.qty_places)
        return [self.price(price), size]


# ---- request values -------------------------------------------------------------------------------


def parse_decimal(raw: object, name: str, *, positive: bool = True, allow_zero: bool = False) -> Decimal:
    """A decimal request value (string or JSON number, never a float bit pattern: it is read from its
    text). Raises 10001 naming the parameter when it is malformed, absurd or not positive."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")
    text = raw if isinstance(raw, str) else repr(raw)
    if not text or len(text) > 64:
        raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise BybitError(PARAMS_ERROR, f"params error: {name} invalid") from None
    if not value.is_finite() or abs(value.adjusted()) > 30:
        if value.is_finite() and value == _ZERO and allow_zero:
            return _ZERO
        raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")
    if positive and (value < _ZERO or (value == _ZERO and not allow_zero)):
        raise BybitError(PARAMS_ERROR, f"params error: {name} must be greater than 0")
    return value


def parse_int(raw: object, name: str, *, low: int, high: int) -> int:
    if isinstance(raw, bool):
        raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit() and len(raw) < 20:
        value = int(raw)
    else:
        raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")
    if not low <= value <= high:
        raise BybitError(PARAMS_ERROR, f"params error: {name} must be within [{low}, {high}]")
    return value


def parse_bool(raw: object, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if raw in ("true", "True", "1", 1):
        return True
    if raw in ("false", "False", "0", 0):
        return False
    raise BybitError(PARAMS_ERROR, f"params error: {name} invalid")


def parse_side(raw: object) -> Side:
    if not isinstance(raw, str) or raw not in _SIDE_IN:
        raise BybitError(PARAMS_ERROR, "params error: side invalid")
    return _SIDE_IN[raw]


def position_idx(side: PositionSide) -> int:
    return _IDX[side]


def position_side_from_idx(raw: object) -> PositionSide:
    idx = parse_int(raw, "positionIdx", low=0, high=2)
    return _IDX_IN[idx]


def link_id(client_order_id: str, order_id: int) -> str:
    """The ``orderLinkId`` shown for an order: "" when the client gave none (the core's own id)."""
    return "" if client_order_id == f"auto-{order_id}" else client_order_id


def order_id_str(order_id: int) -> str:
    return str(uuid.UUID(int=order_id))


def parse_order_id(raw: object) -> int:
    """The core's id of a wire ``orderId``; a string that cannot be one of ours is 110001."""
    if not isinstance(raw, str) or not raw:
        raise BybitError(PARAMS_ERROR, "params error: orderId invalid")
    try:
        return uuid.UUID(raw).int
    except ValueError:
        raise BybitError(ORDER_NOT_EXISTS, "Order does not exist") from None


def exec_id(trade_id: int, order_id: int) -> str:
    """An execution id unique per (trade, order): two accounts' sides of one match differ."""
    return str(uuid.UUID(int=((trade_id & 0xFFFFFFFFFFFFFFFF) << 64) | (order_id & 0xFFFFFFFFFFFFFFFF)))


def trigger_direction(order: VenueOrder) -> int:
    """Bybit's triggerDirection (1 rises to the trigger, 2 falls to it) of a conditional order; 0 else."""
    if order.type is OrderType.STOP_MARKET:
        return 1 if order.side is Side.BUY else 2
    if order.type is OrderType.TAKE_PROFIT_MARKET:
        return 2 if order.side is Side.BUY else 1
    return 0


# ---- payloads -------------------------------------------------------------------------------------


def envelope(result: object, *, time_ms: int, code: int = 0, message: str = "OK") -> dict[str, object]:
    """Bybit's REST reply. ``retCode`` is a JSON number (pybit treats a string "0" as an error)."""
    return {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": time_ms}


def instrument_entry(spec: InstrumentSpec, fmt: InstrumentFormat, *, launch_ms: int) -> dict[str, object]:
    """One ``instruments-info`` list entry for a linear perpetual, in the real field set."""
    return {
        "symbol": spec.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": spec.base_asset,
        "quoteCoin": spec.quote_asset,
        "launchTime": str(launch_ms),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(fmt.price_places),
        "leverageFilter": {
            "minLeverage": "1",
            "maxLeverage": fmt_decimal(Decimal(spec.max_leverage), 2),
            "leverageStep": "1",  # the venue keeps integer leverage
        },
        "priceFilter": {
            "minPrice": fmt.price(spec.min_price),
            "maxPrice": fmt.price(spec.max_price),
            "tickSize": fmt.price(spec.tick_size),
        },
        "lotSizeFilter": {
            "maxOrderQty": fmt.qty(spec.max_qty),
            "minOrderQty": fmt.qty(spec.min_qty),
            "qtyStep": fmt.qty(spec.lot_size),
            "postOnlyMaxOrderQty": fmt.qty(spec.max_qty),
            "maxMktOrderQty": fmt.qty(spec.max_market_qty),
            "minNotionalValue": fmt_amount(spec.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": spec.funding_interval_ms // 60_000,
        "settleCoin": spec.quote_asset,
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {
            "priceLimitRatioX": fmt_amount(spec.percent_price_up - 1),
            "priceLimitRatioY": fmt_amount(1 - spec.percent_price_down),
        },
        "symbolType": "",
    }


def _cancel_fields(order: VenueOrder) -> tuple[str, str]:
    """(cancelType, rejectReason) of an order as Bybit shows them."""
    if order.status is OrderStatus.CANCELED:
        reason = order.expire_reason.upper()
        if "REDUCE" in reason:
            return "CancelByReduceOnly", "EC_NoError"
        if "LIQ" in reason:
            return "CancelByLiq", "EC_NoError"
        return "CancelByUser", "EC_NoError"
    if order.status is OrderStatus.EXPIRED:
        reason = order.expire_reason.upper()
        if "POST" in reason:
            return "UNKNOWN", "EC_PostOnlyWillTakeLiquidity"
        if "REDUCE" in reason:
            return "CancelByReduceOnly", "EC_NoError"
        if order.filled_qty == _ZERO:
            return "UNKNOWN", "EC_NoImmediateQtyToFill"
        return "UNKNOWN", "EC_CancelForNoFullFill"
    return "UNKNOWN", "EC_NoError"


def order_entry(order: VenueOrder, fmt: InstrumentFormat, *, ws: bool) -> dict[str, object]:
    """An order as ``/v5/order/realtime`` lists it (``ws`` False) or the ``order`` topic pushes it."""
    conditional = order.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
    is_market = order.type is not OrderType.LIMIT
    cancel_type, reject_reason = _cancel_fields(order)
    status = _STATUS_OUT[order.status]
    if conditional and order.status is OrderStatus.CANCELED and order.filled_qty == _ZERO:
        status = "Deactivated"
    leaves = order.leaves_qty if order.is_open else _ZERO
    if order.status is OrderStatus.UNTRIGGERED:
        leaves = order.qty
    price = order.price if order.price is not None else _ZERO
    entry: dict[str, object] = {
        "orderId": order_id_str(order.order_id),
        "orderLinkId": link_id(order.client_order_id, order.order_id),
        "blockTradeId": "",
        "symbol": order.symbol,
        "price": fmt.price(price),
        "qty": fmt.qty(order.qty),
        "side": _SIDE_OUT[order.side],
        "isLeverage": "",
        "positionIdx": _IDX[order.position_side],
        "orderStatus": status,
        "createType": "CreateByUser",
        "cancelType": cancel_type,
        "rejectReason": reject_reason,
        "avgPrice": fmt_amount(order.avg_price) if order.filled_qty > _ZERO else "",
        "leavesQty": fmt.qty(leaves),
        "leavesValue": fmt_amount(leaves * price),
        "cumExecQty": fmt.qty(order.filled_qty),
        "cumExecValue": fmt_amount(order.cum_quote),
        "cumExecFee": fmt_amount(order.fees),
        "cumFeeDetail": {order_quote(fmt): fmt_amount(order.fees)} if order.fees else {},
        "timeInForce": "IOC" if is_market else _TIF_OUT[order.tif],
        "orderType": "Market" if is_market else "Limit",
        "stopOrderType": "Stop" if conditional else "",
        "orderIv": "",
        "marketUnit": "",
        "triggerPrice": fmt.price(order.trigger_price) if order.trigger_price is not None else "0",
        "takeProfit": "0",
        "stopLoss": "0",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": trigger_direction(order),
        "triggerBy": _TRIGGER_BY_OUT[order.trigger_by] if conditional else "",
        "lastPriceOnCreated": "",
        "reduceOnly": order.reduce_only,
        "closeOnTrigger": order.close_position,
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "tpslMode": "",
        "tpLimitPrice": "0",
        "slLimitPrice": "0",
        "placeType": "",
        "slippageToleranceType": "UNKNOWN",
        "slippageTolerance": "",
        "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
    }
    if ws:
        entry["category"] = "linear"
        entry["feeCurrency"] = order_quote(fmt)
    return entry


def order_quote(fmt: InstrumentFormat) -> str:
    return fmt.spec.quote_asset


def execution_entry(
    fill: Fill,
    order: VenueOrder | None,
    fmt: InstrumentFormat,
    *,
    mark_price: Decimal | None,
    index_price: Decimal | None,
    ws: bool,
) -> dict[str, object]:
    """One trade execution (``/v5/execution/list`` or the ``execution`` topic).

    ``closedSize`` is the fill's size when it realised PnL (it closed position) and 0 otherwise: the
    core's fills do not say how much of a flip closed the old side.
    """
    spec = fmt.spec
    fee_rate = spec.maker_fee if fill.is_maker else spec.taker_fee
    value = fill.price * fill.qty
    entry: dict[str, object] = {
        "category": "linear",
        "symbol": fill.symbol,
        "orderId": order_id_str(fill.order_id),
        "orderLinkId": link_id(fill.client_order_id, fill.order_id),
        "side": _SIDE_OUT[fill.side],
        "orderPrice": fmt.price(order.price) if order is not None and order.price is not None else "0",
        "orderQty": fmt.qty(order.qty) if order is not None else fmt.qty(fill.qty),
        "leavesQty": fmt.qty(order.leaves_qty) if order is not None else "0",
        "createType": "CreateByUser",
        "orderType": "Limit" if order is not None and order.type is OrderType.LIMIT else "Market",
        "stopOrderType": (
            "Stop"
            if order is not None and order.type in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)
            else "UNKNOWN"
        ),
        "execFee": fmt_amount(fill.fee),
        "execId": exec_id(fill.trade_id, fill.order_id),
        "execPrice": fmt.price(fill.price),
        "execQty": fmt.qty(fill.qty),
        "execType": "Trade",
        "execValue": fmt_amount(value),
        "execTime": str(fill.ts_ms),
        "feeCurrency": spec.quote_asset,
        "isMaker": fill.is_maker,
        "feeRate": fmt_amount(fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": fmt.price(mark_price) if mark_price is not None else "",
        "indexPrice": fmt.price(index_price) if index_price is not None else "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": fmt.qty(fill.qty) if fill.realized_pnl != _ZERO else fmt.qty(_ZERO),
        "execPnl": fmt_amount(fill.realized_pnl),
        "seq": fill.trade_id,
    }
    if ws:
        entry["isLeverage"] = "0"
    return entry


def funding_entry(
    *,
    symbol: str,
    side: Side,
    size: Decimal,
    mark_price: Decimal,
    rate: Decimal,
    amount: Decimal,
    ts_ms: int,
    seq: int,
    fmt: InstrumentFormat,
) -> dict[str, object]:
    """A funding settlement as an execution (``execType`` Funding). ``execFee`` is what the position
    paid: positive when paying, negative when receiving (``amount`` is positive when received)."""
    return {
        "category": "linear",
        "symbol": symbol,
        "orderId": "",
        "orderLinkId": "",
        "side": _SIDE_OUT[side],
        "orderPrice": "0",
        "orderQty": "0",
        "leavesQty": "0",
        "createType": "",
        "orderType": "UNKNOWN",
        "stopOrderType": "UNKNOWN",
        "execFee": fmt_amount(-amount),
        "execId": str(uuid.UUID(int=(0xF0 << 120) | seq)),
        "execPrice": fmt.price(mark_price),
        "execQty": fmt.qty(size),
        "execType": "Funding",
        "execValue": fmt_amount(size * mark_price),
        "execTime": str(ts_ms),
        "feeCurrency": fmt.spec.quote_asset,
        "isMaker": False,
        "feeRate": fmt_amount(rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": fmt.price(mark_price),
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": "0",
        "execPnl": "0",
        "seq": seq,
    }


def position_entry(
    position: Position, fmt: InstrumentFormat, *, ws: bool, seq: int, created_ms: int = 0
) -> dict[str, object]:
    """A position as ``/v5/position/list`` lists it (``ws`` False) or the ``position`` topic pushes it."""
    size = abs(position.qty)
    if size == _ZERO:
        side = ""
    elif position.position_side is PositionSide.LONG:
        side = "Buy"
    elif position.position_side is PositionSide.SHORT:
        side = "Sell"
    else:
        side = "Buy" if position.qty > _ZERO else "Sell"
    entry_price = position.entry_price if size > _ZERO else _ZERO
    isolated = position.margin_mode is MarginMode.ISOLATED
    entry: dict[str, object] = {
        "positionIdx": _IDX[position.position_side],
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": position.symbol,
        "side": side,
        "size": fmt.qty(size),
        "avgPrice": fmt_amount(entry_price),
        "positionValue": fmt_amount(size * entry_price),
        "tradeMode": 1 if isolated else 0,
        "positionStatus": "Normal",
        "autoAddMargin": 0,
        "adlRankIndicator": 2 if size > _ZERO else 0,
        "leverage": str(position.leverage),
        "positionBalance": fmt_amount(position.isolated_margin if isolated else position.initial_margin),
        "markPrice": fmt.price(position.mark_price) if position.mark_price > _ZERO else "0",
        "liqPrice": fmt_amount(position.liquidation_price) if position.liquidation_price > _ZERO else "",
        "bustPrice": "",
        "positionMM": fmt_amount(position.maint_margin),
        "positionIM": fmt_amount(position.initial_margin),
        "tpslMode": "Full",
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "unrealisedPnl": fmt_amount(position.unrealized_pnl),
        "curRealisedPnl": fmt_amount(position.realized_pnl),
        "cumRealisedPnl": fmt_amount(position.realized_pnl),
        "seq": seq,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "createdTime": str(created_ms or position.updated_ms),
        "updatedTime": str(position.updated_ms),
    }
    if ws:
        entry["entryPrice"] = entry.pop("avgPrice")
        entry["sessionAvgPrice"] = ""
        entry["positionIMByMp"] = entry["positionIM"]
        entry["positionMMByMp"] = entry["positionMM"]
        entry["category"] = "linear"
    return entry


def wallet_entry(state: AccountState) -> dict[str, object]:
    """The UNIFIED account as ``/v5/account/wallet-balance`` lists it and the ``wallet`` topic pushes it
    (the USDT coin only: the venue settles every linear contract in USDT)."""
    total_im = state.position_initial_margin + state.open_order_initial_margin
    coin = {
        "coin": state.asset,
        "equity": fmt_amount(state.margin_balance),
        "usdValue": fmt_amount(state.margin_balance),
        "walletBalance": fmt_amount(state.wallet_balance),
        "free": "",
        "locked": "0",
        "spotHedgingQty": "0",
        "borrowAmount": "0",
        "availableToWithdraw": "",
        "availableToBorrow": "",
        "accruedInterest": "0",
        "totalOrderIM": fmt_amount(state.open_order_initial_margin),
        "totalPositionIM": fmt_amount(state.position_initial_margin),
        "totalPositionMM": fmt_amount(state.maint_margin),
        "unrealisedPnl": fmt_amount(state.unrealized_pnl),
        "cumRealisedPnl": fmt_amount(state.realized_pnl),
        "bonus": "0",
        "marginCollateral": True,
        "collateralSwitch": True,
        "spotBorrow": "0",
    }
    return {
        "accountType": "UNIFIED",
        "accountIMRate": fmt_ratio(total_im, state.margin_balance),
        "accountMMRate": fmt_ratio(state.maint_margin, state.margin_balance),
        "accountLTV": "0",
        "totalEquity": fmt_amount(state.margin_balance),
        "totalWalletBalance": fmt_amount(state.wallet_balance),
        "totalMarginBalance": fmt_amount(state.margin_balance),
        "totalAvailableBalance": fmt_amount(state.available_balance),
        "totalPerpUPL": fmt_amount(state.unrealized_pnl),
        "totalInitialMargin": fmt_amount(total_im),
        "totalMaintenanceMargin": fmt_amount(state.maint_margin),
        "coin": [coin],
    }


def public_trade_entry(trade: TradeEvent, fmt: InstrumentFormat, *, tick_direction: str) -> dict[str, object]:
    """One ``publicTrade`` data entry (the docs' shape: T, s, S, v, p, L, i, BT, RPI, seq)."""
    return {
        "T": trade.ts_ms,
        "s": trade.symbol,
        "S": _SIDE_OUT[trade.aggressor],
        "v": fmt.qty(trade.qty),
        "p": fmt.price(trade.price),
        "L": tick_direction,
        "i": str(uuid.UUID(int=(0x7A << 120) | trade.trade_id)),
        "BT": False,
        "RPI": False,
        "seq": trade.trade_id,
    }


def ticker_fields(
    mark: MarkPriceEvent,
    fmt: InstrumentFormat,
    *,
    bid: tuple[Decimal, Decimal] | None,
    ask: tuple[Decimal, Decimal] | None,
    tick_direction: str,
    stats: dict[str, str],
) -> dict[str, str]:
    """The ticker's fields (all strings) for the ``tickers`` topic and ``/v5/market/tickers``."""
    hours = fmt.spec.funding_interval_ms // 3_600_000
    fields: dict[str, str] = {
        "symbol": mark.symbol,
        "tickDirection": tick_direction,
        "lastPrice": fmt.price(mark.last_price),
        "markPrice": fmt.price(mark.mark_price),
        "indexPrice": fmt.price(mark.index_price),
        "nextFundingTime": str(mark.next_funding_ms),
        "fundingRate": fmt_amount(mark.funding_rate),
        "fundingIntervalHour": str(hours),
        "bid1Price": fmt.price(bid[0]) if bid else "",
        "bid1Size": fmt.qty(bid[1]) if bid else "",
        "ask1Price": fmt.price(ask[0]) if ask else "",
        "ask1Size": fmt.qty(ask[1]) if ask else "",
    }
    fields.update(stats)
    return fields
