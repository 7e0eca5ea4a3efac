"""Field helpers both venues' parsing modules share: decimals straight from the wire's strings.

A decimal field is a JSON string (a JSON integer is accepted, a float or a bool never: ``Decimal`` from a
float would carry its binary error). A value that is not a finite decimal raises
:class:`~engine.errors.MalformedMessage` naming the field; ``where`` starts that message and names the
venue (``"binance field"``, ``"bybit: field"``), so each venue keeps its own wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.errors import MalformedMessage

__all__ = ["decimal_field", "optional_decimal_field"]

_ZERO = Decimal(0)


def decimal_field(value: object, field: str, where: str) -> Decimal:
    """``value`` (the field ``field``) as a finite Decimal."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedMessage(f"{where} {field!r} is not a decimal string: {value!r}")
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise MalformedMessage(f"{where} {field!r} is not a decimal: {value!r}") from None
    if not out.is_finite():
        raise MalformedMessage(f"{where} {field!r} is not finite: {value!r}")
    return out


def optional_decimal_field(obj: Mapping[str, Any], key: str, where: str, default: Decimal = _ZERO) -> Decimal:
    """The decimal field ``key`` of ``obj``; missing, null or ``""`` give ``default``."""
    value = obj.get(key)
    if value is None or value == "":
        return default
    return decimal_field(value, key, where)
