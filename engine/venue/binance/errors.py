"""Binance USD-M error replies: each core :class:`RejectReason` and each front-end failure as the real
``(HTTP status, code, msg)`` triple (protocol notes 1.9).

An error body is ``{"code": <negative int>, "msg": "<text>"}``; the status is 400 for request errors,
401 for key/permission errors, 404 for unknown paths, 429/418 for rate limits and 503 for the
"outcome unknown" faults.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.venue.model import RejectReason, VenueReject

__all__ = [
    "BinanceError",
    "bad_param",
    "error_for_reject",
    "illegal_chars",
    "missing_param",
]


@dataclass(frozen=True)
class BinanceError(Exception):
    """An error reply the Binance front-end sends: raised inside handlers, rendered by the dispatcher."""

    status: int
    code: int
    msg: str

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


# RejectReason -> (status, code, default message). Messages follow Binance's wording where known.
_REJECTS: dict[RejectReason, tuple[int, int, str]] = {
    RejectReason.UNKNOWN_SYMBOL: (400, -1121, "Invalid symbol."),
    RejectReason.INVALID_PARAM: (
        400,
        -1102,
        "A mandatory parameter was not sent, was empty/null, or malformed.",
    ),
    RejectReason.PRICE_OFF_TICK: (400, -4014, "Price not increased by tick size."),
    RejectReason.PRICE_OUT_OF_RANGE: (400, -4016, "Limit price can't be higher than the PERCENT_PRICE band."),
    RejectReason.QTY_OFF_STEP: (400, -4023, "Quantity not increased by step size."),
    RejectReason.QTY_TOO_SMALL: (400, -4004, "Quantity less than min quantity."),
    RejectReason.QTY_TOO_LARGE: (400, -4005, "Quantity greater than max quantity."),
    RejectReason.MIN_NOTIONAL: (
        400,
        -4164,
        "Order's notional must be no smaller than the minimum notional (unless you choose reduce only).",
    ),
    RejectReason.INSUFFICIENT_MARGIN: (400, -2019, "Margin is insufficient."),
    RejectReason.REDUCE_ONLY_INCREASES: (400, -2022, "ReduceOnly Order is rejected."),
    RejectReason.POST_ONLY_WOULD_TAKE: (
        400,
        -5022,
        "Due to the order could not be executed as maker, the Post Only order will be rejected. "
        "The order will not be recorded in the order history",
    ),
    RejectReason.FOK_NOT_FILLED: (
        400,
        -5021,
        "Due to the order could not be filled immediately, the FOK order has been rejected. "
        "The order will not be recorded in the order history",
    ),
    RejectReason.WOULD_TRIGGER_IMMEDIATELY: (400, -2021, "Order would immediately trigger."),
    # Binance has no dedicated futures code for a duplicate client id among open orders; the matching
    # engine answers -4015 ("Client order id is not valid.") for an id it will not accept.
    RejectReason.DUPLICATE_CLIENT_ID: (400, -4015, "Client order id is not valid."),
    RejectReason.UNKNOWN_ORDER: (400, -2013, "Order does not exist."),
    RejectReason.ORDER_CLOSED: (400, -2011, "Unknown order sent."),
    RejectReason.POSITION_SIDE_MISMATCH: (400, -4061, "Order's position side does not match user's setting."),
    RejectReason.LEVERAGE_INVALID: (400, -4028, "Leverage is not valid."),
    RejectReason.NOT_MODIFIED: (400, -4046, "No need to change margin type."),
    RejectReason.MODE_CHANGE_OPEN_ORDERS: (
        400,
        -4067,
        "Position side cannot be changed if there exists open orders.",
    ),
    RejectReason.MODE_CHANGE_POSITION_EXISTS: (
        400,
        -4068,
        "Position side cannot be changed if there exists position.",
    ),
    RejectReason.TOO_MANY_ORDERS: (400, -2025, "Reach max open order limit."),
}


def error_for_reject(reject: VenueReject, *, context: str = "") -> BinanceError:
    """Translate a core rejection. ``context`` picks the variant where one reason has several codes:
    "cancel" (unknown order on cancel is -2011), "query" (-2013), "band_low" (-4024),
    "position_mode" (not modified is -4059), "quantity_zero" (-4003)."""
    status, code, msg = _REJECTS[reject.reason]
    if reject.reason in (RejectReason.UNKNOWN_ORDER, RejectReason.ORDER_CLOSED):
        if context == "cancel":
            return BinanceError(400, -2011, "Unknown order sent.")
        if context == "query":
            return BinanceError(400, -2013, "Order does not exist.")
    if reject.reason is RejectReason.NOT_MODIFIED and context == "position_mode":
        return BinanceError(400, -4059, "No need to change position side.")
    if reject.reason is RejectReason.PRICE_OUT_OF_RANGE and (
        context == "band_low" or any(w in reject.message.lower() for w in ("below", "lower", "under"))
    ):
        return BinanceError(400, -4024, "Limit price can't be lower than the PERCENT_PRICE band.")
    if reject.reason is RejectReason.QTY_TOO_SMALL and context == "quantity_zero":
        return BinanceError(400, -4003, "Quantity less than or equal to zero.")
    return BinanceError(status, code, msg)


def missing_param(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def bad_param(name: str, value: str) -> BinanceError:
    shown = value if len(value) <= 64 else value[:64] + "..."
    return BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; value '{shown}'.")


def illegal_chars(name: str) -> BinanceError:
    return BinanceError(
        400,
        -1100,
        f"Illegal characters found in parameter '{name}'; "
        "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
    )
