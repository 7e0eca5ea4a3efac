"""Bybit v5 error replies: the core's :class:`RejectReason` values and the front-end's own failures as
Bybit ``(retCode, retMsg)`` pairs.

Every Bybit REST reply is HTTP 200 with a numeric ``retCode`` (pybit treats any truthy ``retCode`` as an
error, so 0 must be the JSON number 0). Codes and wording follow Bybit's v5 error page; where the page
is silent the message is the one the live venue is known to send.

A handler signals a refusal by raising :class:`BybitError`; the REST layer turns it into the envelope.
"""

from __future__ import annotations

from engine.venue.model import RejectReason

__all__ = [
    "AUTH_FAILED",
    "BAD_API_KEY",
    "BAD_SIGNATURE",
    "BAD_TIMESTAMP",
    "LEVERAGE_NOT_MODIFIED",
    "MARGIN_MODE_NOT_MODIFIED",
    "ORDER_NOT_EXISTS",
    "PARAMS_ERROR",
    "POSITION_MODE_NOT_MODIFIED",
    "RATE_LIMITED",
    "ROUTE_NOT_FOUND",
    "SERVER_ERROR",
    "SERVER_TIMEOUT",
    "BybitError",
    "reject_to_error",
]

PARAMS_ERROR = 10001
BAD_TIMESTAMP = 10002
BAD_API_KEY = 10003
BAD_SIGNATURE = 10004
RATE_LIMITED = 10006
AUTH_FAILED = 10007
SERVER_TIMEOUT = 10000
SERVER_ERROR = 10016
ROUTE_NOT_FOUND = 10017
ORDER_NOT_EXISTS = 110001
LEVERAGE_NOT_MODIFIED = 110043
POSITION_MODE_NOT_MODIFIED = 110025
MARGIN_MODE_NOT_MODIFIED = 110026


class BybitError(Exception):
    """A refusal to send back as ``{"retCode": code, "retMsg": message, "result": result}``."""

    def __init__(self, code: int, message: str, result: dict[str, object] | None = None) -> None:
        self.code = code
        self.message = message
        self.result: dict[str, object] = result if result is not None else {}
        super().__init__(f"{code}: {message}")


# RejectReason -> (retCode, retMsg). Messages are Bybit's; the core's own message is appended in
# brackets by reject_to_error so a client sees which filter failed.
_REJECTS: dict[RejectReason, tuple[int, str]] = {
    RejectReason.UNKNOWN_SYMBOL: (PARAMS_ERROR, "params error: symbol invalid"),
    RejectReason.INVALID_PARAM: (PARAMS_ERROR, "params error"),
    RejectReason.PRICE_OFF_TICK: (PARAMS_ERROR, "params error: price invalid (not a multiple of tickSize)"),
    RejectReason.PRICE_OUT_OF_RANGE: (110003, "Order price is out of permissible range"),
    RejectReason.QTY_OFF_STEP: (PARAMS_ERROR, "params error: qty invalid (not a multiple of qtyStep)"),
    RejectReason.QTY_TOO_SMALL: (
        PARAMS_ERROR,
        "params error: The number of contracts below min limit allowed",
    ),
    RejectReason.QTY_TOO_LARGE: (
        PARAMS_ERROR,
        "params error: The number of contracts exceeds maximum limit allowed",
    ),
    RejectReason.MIN_NOTIONAL: (110094, "Order does not meet minimum order value"),
    RejectReason.INSUFFICIENT_MARGIN: (110007, "Insufficient available balance"),
    RejectReason.REDUCE_ONLY_INCREASES: (110017, "ReduceOnly rule not satisified"),
    # Bybit accepts these and cancels them on the order stream; the REST layer handles them before
    # mapping, the codes below are used only where no order can be shown (e.g. an amend).
    RejectReason.POST_ONLY_WOULD_TAKE: (PARAMS_ERROR, "params error: PostOnly order would take liquidity"),
    RejectReason.FOK_NOT_FILLED: (PARAMS_ERROR, "params error: FOK order cannot be filled in full"),
    RejectReason.WOULD_TRIGGER_IMMEDIATELY: (
        PARAMS_ERROR,
        "params error: expect Rising, but trigger_price is lower than current price",
    ),
    RejectReason.DUPLICATE_CLIENT_ID: (110072, "OrderLinkedID is duplicate"),
    RejectReason.UNKNOWN_ORDER: (ORDER_NOT_EXISTS, "Order does not exist"),
    RejectReason.ORDER_CLOSED: (110008, "Order has been finished or canceled"),
    RejectReason.POSITION_SIDE_MISMATCH: (PARAMS_ERROR, "position idx not match position mode"),
    RejectReason.LEVERAGE_INVALID: (PARAMS_ERROR, "params error: leverage invalid"),
    RejectReason.NOT_MODIFIED: (LEVERAGE_NOT_MODIFIED, "Set leverage not modified"),
    RejectReason.MODE_CHANGE_OPEN_ORDERS: (110028, "Open orders exist, so you cannot change position mode"),
    RejectReason.MODE_CHANGE_POSITION_EXISTS: (
        110024,
        "You have an existing position, so position mode cannot be switched",
    ),
    RejectReason.TOO_MANY_ORDERS: (110020, "Cannot have more than 500 active orders."),
}


def reject_to_error(
    reason: RejectReason, detail: str = "", *, not_modified_code: int | None = None
) -> BybitError:
    """The Bybit error for a core rejection. ``not_modified_code`` picks the endpoint's own "not
    modified" code (110043 leverage, 110025 position mode, 110026 margin mode)."""
    if reason is RejectReason.NOT_MODIFIED and not_modified_code is not None:
        messages = {
            LEVERAGE_NOT_MODIFIED: "Set leverage not modified",
            POSITION_MODE_NOT_MODIFIED: "Position mode is not modified",
            MARGIN_MODE_NOT_MODIFIED: "Cross/isolated margin mode is not modified",
        }
        return BybitError(not_modified_code, messages.get(not_modified_code, "not modified"))
    code, message = _REJECTS[reason]
    if detail and code == PARAMS_ERROR and reason is not RejectReason.UNKNOWN_SYMBOL:
        message = f"{message} [{detail}]"
    return BybitError(code, message)
