"""Binance USD-M wire shapes: core values -> the exact JSON objects the real venue sends.

Pure functions, no I/O. Numbers that are money or sizes go out as strings formatted on the
instrument's grid (never through float); ids and times go out as JSON numbers. Shapes follow the
recorded payloads in ``tests/fixtures/binance/`` and the protocol notes (1.2, 1.6, 1.8).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

from engine.venue.model import (
    AccountState,
    DepthEvent,
    Fill,
    InstrumentSpec,
    Level,
    MarginMode,
    MarkPriceEvent,
    OrderStatus,
    OrderType,
    Position,
    PositionSide,
    TimeInForce,
    TradeEvent,
    TriggerBy,
    VenueOrder,
)

__all__ = [
    "CONDITIONAL_TYPES",
    "account_json",
    "account_update_event",
    "actual_order_id",
    "agg_trade_event",
    "agg_trade_json",
    "algo_order_json",
    "algo_update_event",
    "balance_json",
    "book_ticker_event",
    "book_ticker_json",
    "decimals_of",
    "depth_event",
    "depth_snapshot_json",
    "exchange_info_json",
    "fmt_dp",
    "leverage_bracket_json",
    "mark_price_event",
    "money",
    "order_json",
    "order_trade_update_event",
    "parse_decimal",
    "position_risk_v2_json",
    "position_risk_v3_json",
    "premium_index_json",
    "price_str",
    "qty_str",
    "user_trade_json",
]

CONDITIONAL_TYPES = frozenset({OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET})

# Binance's legal number shape for prices and quantities: '^([0-9]{1,20})(\.[0-9]{1,20})?$'.
_NUMBER = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")

_ZERO = Decimal(0)

_EXPIRE_REASON_CODE = {
    "": 0,
    "STP": 1,
    "IOC": 2,
    "REDUCE_ONLY": 4,
    "LIQUIDATION": 5,
    "GTE": 6,
    "MARKET": 9,
    "FOK": 10,
    "POST_ONLY": 11,
}


def parse_decimal(text: str) -> Decimal | None:
    """A price/quantity string in Binance's legal shape as an exact Decimal; None if it is not one."""
    if not _NUMBER.match(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # unreachable for the regex above; kept explicit, never silent
        return None


def decimals_of(step: Decimal) -> int:
    """Number of decimal places of a grid step (0.10 -> 2, 0.001 -> 3, 1 -> 0)."""
    exponent = step.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def fmt_dp(value: Decimal, dp: int) -> str:
    """Exact decimal string with at least ``dp`` decimals: pads, never rounds (extra digits are kept,
    trailing zeros beyond ``dp`` are dropped)."""
    text = format(value, "f")
    if text.startswith("-") and value == 0:
        text = text[1:]
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) < dp:
        frac = frac + "0" * (dp - len(frac))
    return f"{whole}.{frac}" if frac else whole


def _plain(value: Decimal) -> str:
    """The configured representation of a rule value (``0.10`` stays ``0.10``), never exponent form."""
    return format(value, "f")


@functools.lru_cache(maxsize=256)
def _grid_dp(spec: InstrumentSpec) -> tuple[int, int]:
    """(price decimals, quantity decimals) of an instrument, computed once per spec."""
    return (
        max(spec.price_precision, decimals_of(spec.tick_size)),
        max(spec.qty_precision, decimals_of(spec.lot_size)),
    )


def price_str(spec: InstrumentSpec, value: Decimal | None) -> str:
    return fmt_dp(value if value is not None else _ZERO, _grid_dp(spec)[0])


def qty_str(spec: InstrumentSpec, value: Decimal) -> str:
    return fmt_dp(value, _grid_dp(spec)[1])


def money(value: Decimal) -> str:
    """Balances, PnL, fees: 8 decimals as Binance sends them (more if the exact value has more)."""
    return fmt_dp(value, 8)


def _levels(spec: InstrumentSpec, levels: Iterable[Level]) -> list[list[str]]:
    return [[price_str(spec, p), qty_str(spec, q)] for p, q in levels]


def _tif(tif: TimeInForce, order_type: OrderType = OrderType.LIMIT) -> str:
    """Binance reports GTC for market and conditional orders (the core keeps IOC for market)."""
    if order_type is not OrderType.LIMIT:
        return "GTC"
    return "GTX" if tif is TimeInForce.POST_ONLY else tif.value


def _working_type(trigger_by: TriggerBy) -> str:
    return "MARK_PRICE" if trigger_by is TriggerBy.MARK else "CONTRACT_PRICE"


def _order_status(status: OrderStatus) -> str:
    if status in (OrderStatus.UNTRIGGERED,):
        return "NEW"
    if status is OrderStatus.TRIGGERED:
        return "NEW"
    return status.value


def _algo_status(status: OrderStatus) -> str:
    return {
        OrderStatus.UNTRIGGERED: "NEW",
        OrderStatus.NEW: "NEW",
        OrderStatus.TRIGGERED: "TRIGGERED",
        OrderStatus.PARTIALLY_FILLED: "TRIGGERED",
        OrderStatus.FILLED: "FINISHED",
        OrderStatus.CANCELED: "CANCELED",
        OrderStatus.EXPIRED: "EXPIRED",
    }[status]


def _signed_amt(position: Position) -> Decimal:
    if position.position_side is PositionSide.SHORT and position.qty > 0:
        return -position.qty
    return position.qty


# ---- REST ---------------------------------------------------------------------------------------


def order_json(
    order: VenueOrder, spec: InstrumentSpec, *, ack: bool = False, with_time: bool = False
) -> dict[str, object]:
    """The order object of POST/GET/DELETE/PUT /fapi/v1/order. ``ack`` gives the state at acceptance
    (newOrderRespType=ACK: status NEW, nothing executed yet)."""
    if ack:
        status, executed, avg, cum_quote = "NEW", _ZERO, _ZERO, _ZERO
    else:
        status = _order_status(order.status)
        executed, avg, cum_quote = order.filled_qty, order.avg_price, order.cum_quote
    body: dict[str, object] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": status,
        "clientOrderId": order.client_order_id,
        "price": price_str(spec, order.price if order.type is OrderType.LIMIT else _ZERO),
        "avgPrice": price_str(spec, avg),
        "origQty": qty_str(spec, order.qty),
        "executedQty": qty_str(spec, executed),
        "cumQty": qty_str(spec, executed),
        "cumQuote": money(cum_quote),
        "timeInForce": _tif(order.tif, order.type),
        "type": order.type.value,
        "reduceOnly": order.reduce_only,
        "closePosition": order.close_position,
        "side": order.side.value,
        "positionSide": order.position_side.value,
        "stopPrice": price_str(spec, order.trigger_price),
        "workingType": _working_type(order.trigger_by),
        "priceProtect": False,
        "origType": order.type.value,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
    }
    if with_time:
        body["time"] = order.created_ms
    body["updateTime"] = order.created_ms if ack else order.updated_ms
    return body


def algo_order_json(order: VenueOrder, spec: InstrumentSpec) -> dict[str, object]:
    """A conditional (algo) order as POST/GET/DELETE /fapi/v1/algoOrder and openAlgoOrders return it.
    ``actualOrderId`` is the order its trigger created ("" before): see :func:`actual_order_id`."""
    return {
        "algoId": order.order_id,
        "clientAlgoId": order.client_order_id,
        "algoType": "CONDITIONAL",
        "orderType": order.type.value,
        "symbol": order.symbol,
        "side": order.side.value,
        "positionSide": order.position_side.value,
        "timeInForce": _tif(order.tif, order.type),
        "quantity": qty_str(spec, order.qty),
        "algoStatus": _algo_status(order.status),
        "triggerPrice": price_str(spec, order.trigger_price),
        "price": price_str(spec, _ZERO),
        "icebergQuantity": None,
        "selfTradePreventionMode": "NONE",
        "workingType": _working_type(order.trigger_by),
        "priceMatch": "NONE",
        "closePosition": order.close_position,
        "priceProtect": False,
        "reduceOnly": order.reduce_only,
        "activatePrice": "",
        "callbackRate": "",
        "createTime": order.created_ms,
        "updateTime": order.updated_ms,
        "triggerTime": order.triggered_ms,
        "goodTillDate": 0,
        "actualOrderId": actual_order_id(order),
        "executedQty": qty_str(spec, order.filled_qty),
        "avgPrice": price_str(spec, order.avg_price),
    }


def actual_order_id(order: VenueOrder) -> str:
    """The matching-engine order a conditional order's trigger created, as Binance names it
    (``actualOrderId`` of /fapi/v1/algoOrder, ``ai`` of ALGO_UPDATE; a string, "" before the trigger).
    This venue executes the triggered order under the algo order's own id: its ORDER_TRADE_UPDATE frames
    (``i``) and its ``userTrades`` rows (``orderId``) carry ``order.order_id``."""
    return str(order.order_id) if order.triggered_ms else ""


def exchange_info_json(
    instruments: Sequence[InstrumentSpec], *, server_time: int, rate_limits: list[dict[str, object]]
) -> dict[str, object]:
    symbols: list[dict[str, object]] = []
    for spec in instruments:
        symbols.append(
            {
                "symbol": spec.symbol,
                "pair": spec.symbol,
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "status": "TRADING",
                "maintMarginPercent": fmt_dp(spec.maint_margin_rate * 100, 4),
                "requiredMarginPercent": fmt_dp(Decimal(100) / spec.max_leverage, 4),
                "baseAsset": spec.base_asset,
                "quoteAsset": spec.quote_asset,
                "marginAsset": spec.quote_asset,
                "pricePrecision": spec.price_precision,
                "quantityPrecision": spec.qty_precision,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "underlyingSubType": [],
                "settlePlan": 0,
                "triggerProtect": "0.0500",
                "liquidationFee": "0.012500",
                "marketTakeBound": "0.05",
                "maxMoveOrderLimit": 10000,
                "filters": [
                    {
                        "minPrice": _plain(spec.min_price),
                        "maxPrice": _plain(spec.max_price),
                        "filterType": "PRICE_FILTER",
                        "tickSize": _plain(spec.tick_size),
                    },
                    {
                        "stepSize": _plain(spec.lot_size),
                        "filterType": "LOT_SIZE",
                        "maxQty": _plain(spec.max_qty),
                        "minQty": _plain(spec.min_qty),
                    },
                    {
                        "stepSize": _plain(spec.lot_size),
                        "filterType": "MARKET_LOT_SIZE",
                        "maxQty": _plain(spec.max_market_qty),
                        "minQty": _plain(spec.min_qty),
                    },
                    {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
                    {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
                    {"notional": _plain(spec.min_notional), "filterType": "MIN_NOTIONAL"},
                    {
                        "multiplierDown": fmt_dp(spec.percent_price_down, 4),
                        "multiplierUp": fmt_dp(spec.percent_price_up, 4),
                        "multiplierDecimal": "4",
                        "filterType": "PERCENT_PRICE",
                    },
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            }
        )
    return {
        "timezone": "UTC",
        "serverTime": server_time,
        "futuresType": "U_MARGINED",
        "rateLimits": rate_limits,
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": symbols,
    }


def depth_snapshot_json(
    spec: InstrumentSpec, last_id: int, bids: Sequence[Level], asks: Sequence[Level], *, now_ms: int
) -> dict[str, object]:
    return {
        "lastUpdateId": last_id,
        "E": now_ms,
        "T": now_ms,
        "bids": _levels(spec, bids),
        "asks": _levels(spec, asks),
    }


def book_ticker_json(
    spec: InstrumentSpec, bid: Level | None, ask: Level | None, *, now_ms: int, last_id: int
) -> dict[str, object]:
    return {
        "symbol": spec.symbol,
        "bidPrice": price_str(spec, bid[0] if bid else _ZERO),
        "bidQty": qty_str(spec, bid[1] if bid else _ZERO),
        "askPrice": price_str(spec, ask[0] if ask else _ZERO),
        "askQty": qty_str(spec, ask[1] if ask else _ZERO),
        "time": now_ms,
        "lastUpdateId": last_id,
    }


def premium_index_json(spec: InstrumentSpec, mark: MarkPriceEvent) -> dict[str, object]:
    return {
        "symbol": spec.symbol,
        "markPrice": fmt_dp(mark.mark_price, 8),
        "indexPrice": fmt_dp(mark.index_price, 8),
        "estimatedSettlePrice": fmt_dp(mark.index_price, 8),
        "lastFundingRate": fmt_dp(mark.funding_rate, 8),
        "interestRate": "0.00010000",
        "nextFundingTime": mark.next_funding_ms,
        "time": mark.ts_ms,
    }


def agg_trade_json(spec: InstrumentSpec, trade: TradeEvent) -> dict[str, object]:
    return {
        "a": trade.trade_id,
        "p": price_str(spec, trade.price),
        "q": qty_str(spec, trade.qty),
        "f": trade.trade_id,
        "l": trade.trade_id,
        "T": trade.ts_ms,
        "m": trade.aggressor.value == "SELL",
    }


def user_trade_json(spec: InstrumentSpec, fill: Fill) -> dict[str, object]:
    return {
        "buyer": fill.side.value == "BUY",
        "commission": money(fill.fee),
        "commissionAsset": spec.quote_asset,
        "id": fill.trade_id,
        "maker": fill.is_maker,
        "orderId": fill.order_id,
        "price": price_str(spec, fill.price),
        "qty": qty_str(spec, fill.qty),
        "quoteQty": money(fill.price * fill.qty),
        "realizedPnl": money(fill.realized_pnl),
        "side": fill.side.value,
        "positionSide": fill.position_side.value,
        "symbol": fill.symbol,
        "time": fill.ts_ms,
    }


def _margin_type(mode: MarginMode) -> str:
    return "isolated" if mode is MarginMode.ISOLATED else "cross"


def position_risk_v3_json(spec: InstrumentSpec, p: Position) -> dict[str, object]:
    amt = _signed_amt(p)
    return {
        "symbol": p.symbol,
        "positionSide": p.position_side.value,
        "positionAmt": qty_str(spec, amt),
        "entryPrice": fmt_dp(p.entry_price, 8),
        "breakEvenPrice": fmt_dp(p.entry_price, 8),
        "markPrice": fmt_dp(p.mark_price, 8),
        "unRealizedProfit": money(p.unrealized_pnl),
        "liquidationPrice": fmt_dp(p.liquidation_price, 8),
        "isolatedMargin": money(p.isolated_margin),
        "notional": money(p.notional if p.position_side is not PositionSide.SHORT else -abs(p.notional)),
        "marginAsset": spec.quote_asset,
        "isolatedWallet": money(p.isolated_margin),
        "initialMargin": money(p.initial_margin),
        "maintMargin": money(p.maint_margin),
        "positionInitialMargin": money(p.initial_margin),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": p.updated_ms,
    }


def position_risk_v2_json(spec: InstrumentSpec, p: Position, *, max_notional: Decimal) -> dict[str, object]:
    amt = _signed_amt(p)
    return {
        "symbol": p.symbol,
        "positionAmt": qty_str(spec, amt),
        "entryPrice": fmt_dp(p.entry_price, 8),
        "breakEvenPrice": fmt_dp(p.entry_price, 8),
        "markPrice": fmt_dp(p.mark_price, 8),
        "unRealizedProfit": money(p.unrealized_pnl),
        "liquidationPrice": fmt_dp(p.liquidation_price, 8),
        "leverage": str(p.leverage),
        "maxNotionalValue": fmt_dp(max_notional, 0),
        "marginType": _margin_type(p.margin_mode),
        "isolatedMargin": money(p.isolated_margin),
        "isAutoAddMargin": "false",
        "positionSide": p.position_side.value,
        "notional": money(p.notional if p.position_side is not PositionSide.SHORT else -abs(p.notional)),
        "isolatedWallet": money(p.isolated_margin),
        "updateTime": p.updated_ms,
    }


def balance_json(state: AccountState, *, isolated_margin: Decimal, alias: str) -> list[dict[str, object]]:
    cross_wallet = state.wallet_balance - isolated_margin
    return [
        {
            "accountAlias": alias,
            "asset": state.asset,
            "balance": money(state.wallet_balance),
            "crossWalletBalance": money(cross_wallet),
            "crossUnPnl": money(state.unrealized_pnl),
            "availableBalance": money(state.available_balance),
            "maxWithdrawAmount": money(max(_ZERO, state.available_balance)),
            "marginAvailable": True,
            "updateTime": state.updated_ms,
        }
    ]


def account_json(
    state: AccountState,
    positions: Sequence[tuple[InstrumentSpec, Position]],
    *,
    isolated_margin: Decimal,
) -> dict[str, object]:
    cross_wallet = state.wallet_balance - isolated_margin
    total_initial = state.position_initial_margin + state.open_order_initial_margin
    asset = {
        "asset": state.asset,
        "walletBalance": money(state.wallet_balance),
        "unrealizedProfit": money(state.unrealized_pnl),
        "marginBalance": money(state.margin_balance),
        "maintMargin": money(state.maint_margin),
        "initialMargin": money(total_initial),
        "positionInitialMargin": money(state.position_initial_margin),
        "openOrderInitialMargin": money(state.open_order_initial_margin),
        "crossWalletBalance": money(cross_wallet),
        "crossUnPnl": money(state.unrealized_pnl),
        "availableBalance": money(state.available_balance),
        "maxWithdrawAmount": money(max(_ZERO, state.available_balance)),
        "marginAvailable": True,
        "updateTime": state.updated_ms,
    }
    pos_list: list[dict[str, object]] = []
    for spec, p in positions:
        pos_list.append(
            {
                "symbol": p.symbol,
                "initialMargin": money(p.initial_margin),
                "maintMargin": money(p.maint_margin),
                "unrealizedProfit": money(p.unrealized_pnl),
                "positionInitialMargin": money(p.initial_margin),
                "openOrderInitialMargin": "0",
                "leverage": str(p.leverage),
                "isolated": p.margin_mode is MarginMode.ISOLATED,
                "entryPrice": fmt_dp(p.entry_price, 8),
                "breakEvenPrice": fmt_dp(p.entry_price, 8),
                "maxNotional": fmt_dp(_max_notional(spec, p.leverage), 0),
                "bidNotional": "0",
                "askNotional": "0",
                "positionSide": p.position_side.value,
                "positionAmt": qty_str(spec, _signed_amt(p)),
                "updateTime": p.updated_ms,
            }
        )
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
        "totalInitialMargin": money(total_initial),
        "totalMaintMargin": money(state.maint_margin),
        "totalWalletBalance": money(state.wallet_balance),
        "totalUnrealizedProfit": money(state.unrealized_pnl),
        "totalMarginBalance": money(state.margin_balance),
        "totalPositionInitialMargin": money(state.position_initial_margin),
        "totalOpenOrderInitialMargin": money(state.open_order_initial_margin),
        "totalCrossWalletBalance": money(cross_wallet),
        "totalCrossUnPnl": money(state.unrealized_pnl),
        "availableBalance": money(state.available_balance),
        "maxWithdrawAmount": money(max(_ZERO, state.available_balance)),
        "assets": [asset],
        "positions": pos_list,
    }


_BRACKET_NOTIONAL_CAP = 50_000_000  # the venue's one leverage bracket: notional 0 .. 50M at any leverage


def _max_notional(spec: InstrumentSpec, leverage: int) -> Decimal:
    """Notional cap at this leverage: the venue has one bracket, so the cap does not depend on it."""
    del spec, leverage
    return Decimal(_BRACKET_NOTIONAL_CAP)


def leverage_bracket_json(spec: InstrumentSpec) -> dict[str, object]:
    return {
        "symbol": spec.symbol,
        "notionalCoef": 1.0,
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": spec.max_leverage,
                "notionalCap": _BRACKET_NOTIONAL_CAP,
                "notionalFloor": 0,
                # a ratio, sent as a JSON number on the real wire (not money); exact for the configured rates
                "maintMarginRatio": float(spec.maint_margin_rate),
                "cum": 0.0,
            }
        ],
    }


# ---- streams ------------------------------------------------------------------------------------


def depth_event(spec: InstrumentSpec, ev: DepthEvent) -> dict[str, object]:
    return {
        "e": "depthUpdate",
        "E": ev.ts_ms,
        "T": ev.ts_ms,
        "s": ev.symbol,
        "U": ev.first_id,
        "u": ev.last_id,
        "pu": ev.prev_last_id,
        "b": _levels(spec, ev.bids),
        "a": _levels(spec, ev.asks),
    }


def partial_depth_event(
    spec: InstrumentSpec, ev: DepthEvent, bids: Sequence[Level], asks: Sequence[Level]
) -> dict[str, object]:
    return {
        "e": "depthUpdate",
        "E": ev.ts_ms,
        "T": ev.ts_ms,
        "s": ev.symbol,
        "U": ev.first_id,
        "u": ev.last_id,
        "pu": ev.prev_last_id,
        "b": _levels(spec, bids),
        "a": _levels(spec, asks),
    }


def book_ticker_event(
    spec: InstrumentSpec, last_id: int, bid: Level | None, ask: Level | None, ts_ms: int
) -> dict[str, object]:
    return {
        "e": "bookTicker",
        "u": last_id,
        "E": ts_ms,
        "T": ts_ms,
        "s": spec.symbol,
        "b": price_str(spec, bid[0] if bid else _ZERO),
        "B": qty_str(spec, bid[1] if bid else _ZERO),
        "a": price_str(spec, ask[0] if ask else _ZERO),
        "A": qty_str(spec, ask[1] if ask else _ZERO),
    }


def agg_trade_event(spec: InstrumentSpec, trade: TradeEvent) -> dict[str, object]:
    qty = qty_str(spec, trade.qty)
    return {
        "e": "aggTrade",
        "E": trade.ts_ms,
        "a": trade.trade_id,
        "s": trade.symbol,
        "p": price_str(spec, trade.price),
        "q": qty,
        "nq": qty,
        "f": trade.trade_id,
        "l": trade.trade_id,
        "T": trade.ts_ms,
        "m": trade.aggressor.value == "SELL",
    }


def mark_price_event(mark: MarkPriceEvent) -> dict[str, object]:
    return {
        "e": "markPriceUpdate",
        "E": mark.ts_ms,
        "s": mark.symbol,
        "p": fmt_dp(mark.mark_price, 8),
        "ap": fmt_dp(mark.mark_price, 8),
        "P": fmt_dp(mark.index_price, 8),
        "i": fmt_dp(mark.index_price, 8),
        "r": fmt_dp(mark.funding_rate, 8),
        "T": mark.next_funding_ms,
    }


def order_trade_update_event(
    spec: InstrumentSpec, order: VenueOrder, fill: Fill | None, *, exec_type: str, ts_ms: int
) -> dict[str, object]:
    """ORDER_TRADE_UPDATE for a plain (or triggered child) order; ``exec_type`` is the ``x`` field."""
    status = _order_status(order.status)
    is_conditional = order.type in CONDITIONAL_TYPES
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": ts_ms,
        "T": fill.ts_ms if fill else ts_ms,
        "o": {
            "s": order.symbol,
            "c": order.client_order_id,
            "S": order.side.value,
            "o": "MARKET" if is_conditional else order.type.value,
            "f": _tif(order.tif, order.type),
            "q": qty_str(spec, order.qty),
            "p": price_str(spec, order.price if order.type is OrderType.LIMIT else _ZERO),
            "ap": price_str(spec, order.avg_price),
            "sp": price_str(spec, order.trigger_price),
            "x": exec_type,
            "X": status,
            "i": order.order_id,
            "l": qty_str(spec, fill.qty if fill else _ZERO),
            "z": qty_str(spec, order.filled_qty),
            "L": price_str(spec, fill.price if fill else _ZERO),
            "N": spec.quote_asset,
            "n": money(fill.fee if fill else _ZERO),
            "T": fill.ts_ms if fill else order.updated_ms,
            "t": fill.trade_id if fill else 0,
            "b": "0",
            "a": "0",
            "m": fill.is_maker if fill else False,
            "R": order.reduce_only,
            "wt": _working_type(order.trigger_by),
            "ot": order.type.value,
            "ps": order.position_side.value,
            "cp": order.close_position,
            "AP": "0",
            "cr": "0",
            "rp": money(fill.realized_pnl if fill else _ZERO),
            "pP": False,
            "si": 0,
            "ss": 0,
            "V": "NONE",
            "pm": "NONE",
            "gtd": 0,
            "er": str(_EXPIRE_REASON_CODE.get(order.expire_reason, 0)),
        },
    }


def algo_update_event(spec: InstrumentSpec, order: VenueOrder, *, ts_ms: int) -> dict[str, object]:
    """ALGO_UPDATE: the conditional order's own lifecycle (NEW, TRIGGERED, FINISHED, CANCELED...)."""
    return {
        "e": "ALGO_UPDATE",
        "T": order.updated_ms,
        "E": ts_ms,
        "o": {
            "caid": order.client_order_id,
            "aid": order.order_id,
            "at": "CONDITIONAL",
            "o": order.type.value,
            "s": order.symbol,
            "S": order.side.value,
            "ps": order.position_side.value,
            "f": _tif(order.tif, order.type),
            "q": qty_str(spec, order.qty),
            "X": _algo_status(order.status),
            "ai": actual_order_id(order),
            "ap": price_str(spec, order.avg_price),
            "aq": qty_str(spec, order.filled_qty),
            "act": "MARKET",
            "tp": price_str(spec, order.trigger_price),
            "p": price_str(spec, _ZERO),
            "V": "NONE",
            "wt": _working_type(order.trigger_by),
            "pm": "NONE",
            "cp": order.close_position,
            "pP": False,
            "R": order.reduce_only,
            "tt": order.triggered_ms,
            "gtd": 0,
        },
    }


def account_update_event(
    reason: str,
    state: AccountState,
    positions: Sequence[tuple[InstrumentSpec, Position]],
    *,
    balance_change: Decimal,
    isolated_margin: Decimal,
    ts_ms: int,
) -> dict[str, object]:
    return {
        "e": "ACCOUNT_UPDATE",
        "E": ts_ms,
        "T": ts_ms,
        "a": {
            "m": reason,
            "B": [
                {
                    "a": state.asset,
                    "wb": money(state.wallet_balance),
                    "cw": money(state.wallet_balance - isolated_margin),
                    "bc": money(balance_change),
                }
            ],
            "P": [
                {
                    "s": p.symbol,
                    "pa": qty_str(spec, _signed_amt(p)),
                    "ep": fmt_dp(p.entry_price, 8),
                    "bep": fmt_dp(p.entry_price, 8),
                    "cr": money(p.realized_pnl),
                    "up": money(p.unrealized_pnl),
                    "mt": _margin_type(p.margin_mode),
                    "iw": money(p.isolated_margin),
                    "ps": p.position_side.value,
                }
                for spec, p in positions
            ],
        },
    }
