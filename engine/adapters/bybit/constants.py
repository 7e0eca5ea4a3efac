"""Bybit v5 (category ``linear``) wire constants: paths, topics, enums and retCodes (protocol notes 2).

Everything here is data; the mapping of a retCode to an engine error lives in
:func:`engine.adapters.bybit.rest.error_for` and uses the tables below.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from engine.types import OrderStatus, PositionSide, Side, TimeInForce, TriggerBy

__all__ = [
    "AUTH_CODES",
    "BOOK_DEPTH",
    "CATEGORY",
    "CLOCK_SKEW",
    "CLOSED_ORDER_CODES",
    "DUPLICATE_LINK_ID",
    "ENDPOINT_LIMITS",
    "IDX_OF_SIDE",
    "INSUFFICIENT_MARGIN_CODES",
    "IP_BAN_S",
    "MARGIN_MODE_OUT",
    "NOT_MODIFIED_CODES",
    "ORDER_REJECT_REASONS",
    "PARAMS_ERROR",
    "PATHS",
    "PRIVATE_TOPICS",
    "RATE_LIMITED",
    "SIDE_IN",
    "SIDE_OF_IDX",
    "SIDE_OUT",
    "STATUS_IN",
    "TIF_IN",
    "TIF_OUT",
    "TRIGGER_BY_IN",
    "TRIGGER_BY_OUT",
    "UNKNOWN_OUTCOME_CODES",
    "VENUE_NAME",
    "WS_REJECT_REASONS",
    "book_topic",
    "ticker_topic",
    "trade_topic",
]

VENUE_NAME: Final = "bybit"
CATEGORY: Final = "linear"
#: Linear orderbook depths are 1, 50, 200 and 1000; 50 (20 ms) is the engine's default.
BOOK_DEPTH: Final = 50

# REST paths (for the limiter's per-endpoint buckets and for logs; pybit builds the URLs itself).
PATHS: Final = MappingProxyType(
    {
        "server_time": "/v5/market/time",
        "instruments": "/v5/market/instruments-info",
        "orderbook": "/v5/market/orderbook",
        "tickers": "/v5/market/tickers",
        "place_order": "/v5/order/create",
        "amend_order": "/v5/order/amend",
        "cancel_order": "/v5/order/cancel",
        "cancel_all": "/v5/order/cancel-all",
        "open_orders": "/v5/order/realtime",
        "order_history": "/v5/order/history",
        "executions": "/v5/execution/list",
        "positions": "/v5/position/list",
        "wallet": "/v5/account/wallet-balance",
        "set_leverage": "/v5/position/set-leverage",
        "switch_mode": "/v5/position/switch-mode",
        "set_margin_mode": "/v5/account/set-margin-mode",
    }
)

#: Per-UID, per-endpoint requests per rolling second (protocol notes 2.2); public paths have only the IP
#: limit (600 requests per 5 s per IP, 2.5).
ENDPOINT_LIMITS: Final = MappingProxyType(
    {
        "/v5/order/create": 10,
        "/v5/order/amend": 10,
        "/v5/order/cancel": 10,
        "/v5/order/cancel-all": 10,
        "/v5/order/realtime": 50,
        "/v5/order/history": 50,
        "/v5/execution/list": 50,
        "/v5/position/list": 50,
        "/v5/account/wallet-balance": 50,
        "/v5/position/set-leverage": 10,
        "/v5/position/switch-mode": 10,
        "/v5/account/set-margin-mode": 5,
    }
)

#: Private stream topics (all-in-one form; cannot be mixed with ``order.linear`` etc.).
PRIVATE_TOPICS: Final = ("order", "execution", "position", "wallet")


def book_topic(symbol: str, depth: int = BOOK_DEPTH) -> str:
    return f"orderbook.{depth}.{symbol}"


def trade_topic(symbol: str) -> str:
    return f"publicTrade.{symbol}"


def ticker_topic(symbol: str) -> str:
    return f"tickers.{symbol}"


# ---- enums ----------------------------------------------------------------------------------------------

SIDE_OUT: Final = MappingProxyType({Side.BUY: "Buy", Side.SELL: "Sell"})
SIDE_IN: Final = MappingProxyType({"Buy": Side.BUY, "Sell": Side.SELL})
TIF_OUT: Final = MappingProxyType(
    {
        TimeInForce.GTC: "GTC",
        TimeInForce.IOC: "IOC",
        TimeInForce.FOK: "FOK",
        TimeInForce.POST_ONLY: "PostOnly",
    }
)
#: ``RPI`` (retail price improvement) orders are maker-only: the engine sees them as post-only.
TIF_IN: Final = MappingProxyType(
    {
        "GTC": TimeInForce.GTC,
        "IOC": TimeInForce.IOC,
        "FOK": TimeInForce.FOK,
        "PostOnly": TimeInForce.POST_ONLY,
        "RPI": TimeInForce.POST_ONLY,
    }
)
TRIGGER_BY_OUT: Final = MappingProxyType({TriggerBy.MARK: "MarkPrice", TriggerBy.LAST: "LastPrice"})
TRIGGER_BY_IN: Final = MappingProxyType(
    {"MarkPrice": TriggerBy.MARK, "LastPrice": TriggerBy.LAST, "IndexPrice": TriggerBy.MARK}
)
#: positionIdx: 0 one-way, 1 hedge buy side, 2 hedge sell side.
IDX_OF_SIDE: Final = MappingProxyType({PositionSide.BOTH: 0, PositionSide.LONG: 1, PositionSide.SHORT: 2})
SIDE_OF_IDX: Final = MappingProxyType({0: PositionSide.BOTH, 1: PositionSide.LONG, 2: PositionSide.SHORT})
#: orderStatus -> engine status. ``Cancelled`` is refined by ``rejectReason`` (see parsing), ``Triggered``
#: is the transient step between ``Untriggered`` and ``New``; ``PartiallyFilledCanceled`` is spot only.
STATUS_IN: Final = MappingProxyType(
    {
        "Created": OrderStatus.PENDING,
        "New": OrderStatus.NEW,
        "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
        "Untriggered": OrderStatus.UNTRIGGERED,
        "Triggered": OrderStatus.NEW,
        "Filled": OrderStatus.FILLED,
        "Cancelled": OrderStatus.CANCELED,
        "PartiallyFilledCanceled": OrderStatus.CANCELED,
        "Deactivated": OrderStatus.CANCELED,
        "Rejected": OrderStatus.REJECTED,
    }
)
MARGIN_MODE_OUT: Final = MappingProxyType({"cross": "REGULAR_MARGIN", "isolated": "ISOLATED_MARGIN"})

#: ``rejectReason`` values on the order stream that mean the venue refused or expired the order for its
#: time in force: (engine status, engine reject reason).
WS_REJECT_REASONS: Final = MappingProxyType(
    {
        "EC_PostOnlyWillTakeLiquidity": (OrderStatus.REJECTED, "post_only"),
        "EC_NoImmediateQtyToFill": (OrderStatus.EXPIRED, "fok_unfilled"),
        "EC_CancelForNoFullFill": (OrderStatus.EXPIRED, "fok_unfilled"),
        "EC_CancelByMatchValueZero": (OrderStatus.EXPIRED, "other"),
        "EC_ReduceOnlyWouldIncrease": (OrderStatus.REJECTED, "reduce_only"),
    }
)

# ---- retCodes (protocol notes 2.9) -------------------------------------------------------------------

PARAMS_ERROR: Final = 10001
CLOCK_SKEW: Final = 10002
RATE_LIMITED: Final = 10006
DUPLICATE_LINK_ID: Final = 110072
#: Bad key, signature, permission, IP whitelist, or the private stream's auth.
AUTH_CODES: Final = frozenset({10003, 10004, 10005, 10007, 10009, 10010})
#: Server time-out, server error, duplicate request, order still processing: the outcome is unknown.
UNKNOWN_OUTCOME_CODES: Final = frozenset({10000, 10016, 10014, 110079})
#: The order is unknown, finished or cancelled.
CLOSED_ORDER_CODES: Final = frozenset({110001, 110008, 110010})
INSUFFICIENT_MARGIN_CODES: Final = frozenset({110004, 110006, 110007, 110012, 110045})
#: "Not modified" answers that are a success for the engine (leverage, position mode, margin mode).
NOT_MODIFIED_CODES: Final = frozenset({110043, 110025, 110026})
#: retCode -> engine reject reason, for codes that name one.
ORDER_REJECT_REASONS: Final = MappingProxyType(
    {
        110003: "price_out_of_range",
        110017: "reduce_only",
        110020: "other",  # more than 500 active orders
        110024: "invalid",  # position mode switch refused: a position exists
        110028: "invalid",  # position mode switch refused: open orders exist
        110072: "duplicate_client_id",
        110092: "would_trigger_immediately",
        110093: "would_trigger_immediately",
        110094: "min_notional",
        10017: "invalid",
        10029: "invalid",
    }
)
#: After an HTTP 403 Bybit wants at least ten minutes of silence (protocol notes 2.5).
IP_BAN_S: Final = 600.0
