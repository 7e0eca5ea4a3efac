"""Binance USD-M constants: rate limits as data, stream names, enum maps and error-code reasons."""

from __future__ import annotations

from typing import Final

from engine.adapters.common.ratelimit import RateLimitRules, RateWindow
from engine.types import OrderStatus, OrderType, PositionSide, Side, TimeInForce

__all__ = [
    "ALGO_STATUS",
    "AUTH_CODES",
    "CLOCK_CODES",
    "NOT_MODIFIED_CODES",
    "ORDER_STATUS",
    "ORDER_TYPE",
    "ORDER_TYPE_WIRE",
    "POSITION_SIDE",
    "POSITION_SIDE_WIRE",
    "RATE_LIMITS",
    "REJECT_CODES",
    "SIDE",
    "SIDE_WIRE",
    "TIF",
    "TIF_WIRE",
    "UNAVAILABLE_CODES",
    "rate_limits",
]

SIDE: Final = {"BUY": Side.BUY, "SELL": Side.SELL}
SIDE_WIRE: Final = {v: k for k, v in SIDE.items()}
POSITION_SIDE: Final = {"BOTH": PositionSide.BOTH, "LONG": PositionSide.LONG, "SHORT": PositionSide.SHORT}
POSITION_SIDE_WIRE: Final = {v: k for k, v in POSITION_SIDE.items()}
TIF: Final = {
    "GTC": TimeInForce.GTC,
    "IOC": TimeInForce.IOC,
    "FOK": TimeInForce.FOK,
    "GTX": TimeInForce.POST_ONLY,
    "GTD": TimeInForce.GTC,
}
TIF_WIRE: Final = {
    TimeInForce.GTC: "GTC",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
    TimeInForce.POST_ONLY: "GTX",
}
ORDER_TYPE: Final = {
    "LIMIT": OrderType.LIMIT,
    "MARKET": OrderType.MARKET,
    "STOP_MARKET": OrderType.STOP_MARKET,
    "TAKE_PROFIT_MARKET": OrderType.TAKE_PROFIT_MARKET,
    "LIQUIDATION": OrderType.MARKET,
}
ORDER_TYPE_WIRE: Final = {
    OrderType.LIMIT: "LIMIT",
    OrderType.MARKET: "MARKET",
    OrderType.STOP_MARKET: "STOP_MARKET",
    OrderType.TAKE_PROFIT_MARKET: "TAKE_PROFIT_MARKET",
}
ORDER_STATUS: Final = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
#: conditional (algo) order statuses: NEW waits for its trigger; TRIGGERED is working as a market order
ALGO_STATUS: Final = {
    "NEW": OrderStatus.UNTRIGGERED,
    "TRIGGERING": OrderStatus.NEW,
    "TRIGGERED": OrderStatus.NEW,
    "FINISHED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}

#: venue code -> engine reject reason (protocol notes 1.9)
REJECT_CODES: Final[dict[int, str]] = {
    -1111: "precision",
    -4014: "precision",
    -4023: "precision",
    -4164: "min_notional",
    -4003: "qty_out_of_range",
    -4004: "qty_out_of_range",
    -4005: "qty_out_of_range",
    -4013: "price_out_of_range",
    -4016: "price_out_of_range",
    -4024: "price_out_of_range",
    -4131: "price_out_of_range",
    -2022: "reduce_only",
    -5022: "post_only",
    -5021: "fok_unfilled",
    -2021: "would_trigger_immediately",
    -2019: "insufficient_margin",
    -2011: "unknown_order",
    -2013: "unknown_order",
    -4116: "duplicate_client_id",
    -4015: "duplicate_client_id",  # "client order id is not valid": engine ids are always valid
    -4061: "position_side",
    -1100: "invalid",
    -1102: "invalid",
    -1106: "invalid",
    -1116: "invalid",
    -1121: "invalid",
    -1130: "invalid",
    -4028: "invalid",
    -4067: "invalid",
    -4068: "invalid",
    -2025: "other",
    -2010: "other",
}
CLOCK_CODES: Final = frozenset({-1021, -5028})
AUTH_CODES: Final = frozenset({-1022, -2014, -2015})
UNAVAILABLE_CODES: Final = frozenset({-1000, -1001, -1006, -1007})
#: "no need to change" answers that mean the setting already holds
NOT_MODIFIED_CODES: Final = frozenset({-4046, -4059})

#: request weights per endpoint (protocol notes 1.2); orders also count toward the order windows
_W = "weight"
_O10 = "orders_10s"
_O60 = "orders_1m"
_ORDER = {_W: 0, _O10: 1, _O60: 1}
_ENDPOINT_COSTS: Final[dict[str, dict[str, int]]] = {
    "GET /fapi/v1/time": {_W: 1},
    "GET /fapi/v1/exchangeInfo": {_W: 1},
    "GET /fapi/v1/depth": {_W: 20},  # limit=1000
    "GET /fapi/v1/premiumIndex": {_W: 1},
    "POST /fapi/v1/order": _ORDER,
    "POST /fapi/v1/algoOrder": _ORDER,
    "PUT /fapi/v1/order": _ORDER,
    "DELETE /fapi/v1/order": {_W: 1},
    "DELETE /fapi/v1/algoOrder": {_W: 1},
    "DELETE /fapi/v1/allOpenOrders": {_W: 1},
    "DELETE /fapi/v1/algoOpenOrders": {_W: 1},
    "GET /fapi/v1/order": {_W: 1},
    "GET /fapi/v1/algoOrder": {_W: 1},
    "GET /fapi/v1/openOrders": {_W: 40},
    "GET /fapi/v1/openAlgoOrders": {_W: 40},
    "GET /fapi/v3/positionRisk": {_W: 5},
    "GET /fapi/v3/balance": {_W: 5},
    "POST /fapi/v1/leverage": {_W: 1},
    "POST /fapi/v1/marginType": {_W: 1},
    "POST /fapi/v1/positionSide/dual": {_W: 1},
    "GET /fapi/v1/positionSide/dual": {_W: 30},
    "GET /fapi/v1/leverageBracket": {_W: 1},
    "GET /fapi/v1/userTrades": {_W: 5},
    "POST /fapi/v1/listenKey": {_W: 1},
    "PUT /fapi/v1/listenKey": {_W: 1},
    "DELETE /fapi/v1/listenKey": {_W: 1},
}


def rate_limits(
    *, weight_per_minute: int = 2400, orders_per_10s: int = 300, orders_per_minute: int = 1200
) -> RateLimitRules:
    """The limiter's rules; the numbers come from ``exchangeInfo.rateLimits`` once it is loaded."""
    return RateLimitRules(
        venue="binance",
        windows=(
            RateWindow(name=_W, limit=weight_per_minute, window_s=60.0, header="X-MBX-USED-WEIGHT-1M"),
            RateWindow(name=_O10, limit=orders_per_10s, window_s=10.0, header="X-MBX-ORDER-COUNT-10S"),
            RateWindow(name=_O60, limit=orders_per_minute, window_s=60.0, header="X-MBX-ORDER-COUNT-1M"),
        ),
        endpoints=_ENDPOINT_COSTS,
        default_cost={_W: 1},
        headroom=0.8,
    )


RATE_LIMITS: Final = rate_limits()
