"""Binance request authentication (protocol notes 1.4): API key header, HMAC-SHA256 signature,
timestamp and recvWindow against the venue clock.

Pure functions over the raw request strings; the REST dispatcher calls :func:`authenticate` and turns
a :class:`BinanceError` into the reply. The signature is checked over the raw received
``query + body`` (with the ``signature`` pair removed) first, then over its URL-decoded forms:
python-binance signs raw client ids while the form body carries ``:`` and ``/`` percent-encoded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from urllib.parse import unquote, unquote_plus

from engine.venue.binance.errors import BinanceError, missing_param

__all__ = [
    "DEFAULT_RECV_WINDOW",
    "MAX_RECV_WINDOW",
    "authenticate",
    "check_timestamp",
    "require_api_key",
    "sign",
    "signature_payload",
    "verify_signature",
]

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """Remove the ``signature=...`` pair from a raw query/body; return (rest, signature value)."""
    if "signature=" not in raw:
        return raw, None
    kept: list[str] = []
    found: str | None = None
    for pair in raw.split("&"):
        if pair.startswith("signature="):
            found = pair[len("signature=") :]
        else:
            kept.append(pair)
    return "&".join(kept), found


def signature_payload(raw_query: str, raw_body: str) -> tuple[str, str | None]:
    """``totalParams`` (query then body, nothing between, signature removed) and the signature sent."""
    query, sig_q = _strip_signature(raw_query)
    body, sig_b = _strip_signature(raw_body)
    return query + body, sig_q if sig_q is not None else sig_b


def verify_signature(secret: str, raw_query: str, raw_body: str) -> bool:
    """True if the signature matches the raw payload, or failing that its URL-decoded forms."""
    payload, signature = signature_payload(raw_query, raw_body)
    if not signature:
        return False
    signature = unquote(signature).lower()
    key = secret.encode()
    candidates = [payload]
    decoded = unquote(payload)
    if decoded != payload:
        candidates.append(decoded)
    decoded_plus = unquote_plus(payload)
    if decoded_plus not in candidates:
        candidates.append(decoded_plus)
    for candidate in candidates:
        expected = hmac.new(key, candidate.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return True
    return False


def require_api_key(headers: Mapping[str, str], secret_for: Callable[[str], str | None]) -> tuple[str, str]:
    """The account's (api key, secret) from ``X-MBX-APIKEY``; -2015 (HTTP 401) when missing or unknown."""
    api_key = headers.get("X-MBX-APIKEY", "")
    if not api_key:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    secret = secret_for(api_key)
    if secret is None:
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    return api_key, secret


def check_timestamp(params: Mapping[str, str], now_ms: int) -> None:
    """``timestamp < now + 1000`` and ``now - timestamp <= recvWindow`` (default 5000, max 60000)."""
    raw_ts = params.get("timestamp")
    if raw_ts is None or raw_ts == "":
        raise missing_param("timestamp")
    if not raw_ts.isdigit() or len(raw_ts) > 15:
        raise BinanceError(
            400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
        )
    timestamp = int(raw_ts)
    raw_window = params.get("recvWindow")
    window = DEFAULT_RECV_WINDOW
    if raw_window is not None:
        if not raw_window.isdigit() or len(raw_window) > 9:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'recvWindow'.")
        window = int(raw_window)
        if window > MAX_RECV_WINDOW or window <= 0:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
    if timestamp >= now_ms + 1000:
        raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - timestamp > window:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def authenticate(
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    raw_query: str,
    raw_body: str,
    now_ms: int,
    secret_for: Callable[[str], str | None],
) -> str:
    """Check a signed (TRADE / USER_DATA) request; return the account's API key.

    Order of checks: API key (-2015), signature present (-1102), timestamp present and well formed
    (-1102), signature (-1022), timestamp window (-1021).
    """
    api_key, secret = require_api_key(headers, secret_for)
    if not params.get("signature"):
        raise missing_param("signature")
    if not params.get("timestamp"):
        raise missing_param("timestamp")
    if not verify_signature(secret, raw_query, raw_body):
        raise BinanceError(400, -1022, "Signature for this request is not valid.")
    check_timestamp(params, now_ms)
    return api_key
