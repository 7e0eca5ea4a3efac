"""Bybit v5 request authentication, without I/O.

REST: headers ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``, ``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN``, the
lowercase hex HMAC-SHA256 (keyed by the secret) of ``timestamp + apiKey + recvWindow + X`` where X is the
raw query string of a GET or the raw body of a POST, checked over the bytes as received (never a
re-serialised body). The request is fresh when ``server - recvWindow <= timestamp < server + 1000``.

Private WS: ``{"op": "auth", "args": [apiKey, expires, signature]}`` with ``signature`` the hex HMAC of
``"GET/realtime" + str(expires)`` and ``expires`` (ms) in the future.

Failures raise :class:`~engine.venue.bybit.errors.BybitError` with the venue's codes: 10003 unknown or
missing key, 10002 stale or malformed timestamp, 10004 bad signature. Neither the secret nor the
expected signature ever appears in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from engine.venue.bybit.errors import (
    BAD_API_KEY,
    BAD_SIGNATURE,
    BAD_TIMESTAMP,
    PARAMS_ERROR,
    BybitError,
)

__all__ = [
    "DEFAULT_RECV_WINDOW",
    "FUTURE_TOLERANCE_MS",
    "RestCredentials",
    "hmac_hex",
    "rest_signature",
    "verify_rest",
    "verify_ws_auth",
    "ws_signature",
]

DEFAULT_RECV_WINDOW = 5000
FUTURE_TOLERANCE_MS = 1000  # a timestamp may be at most this far ahead of the server clock

SecretLookup = Callable[[str], "str | None"]


@dataclass(frozen=True, kw_only=True)
class RestCredentials:
    """What a verified REST request proved: whose key signed it, and the timing it claimed."""

    api_key: str
    timestamp_ms: int
    recv_window_ms: int


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def rest_signature(secret: str, *, timestamp: str, api_key: str, recv_window: str, payload: bytes) -> str:
    """The ``X-BAPI-SIGN`` a client computes for this request (what pybit sends)."""
    return hmac_hex(secret, (timestamp + api_key + recv_window).encode() + payload)


def ws_signature(secret: str, expires: int | str) -> str:
    """The private-stream auth signature: HMAC of ``"GET/realtime" + expires``."""
    return hmac_hex(secret, f"GET/realtime{expires}".encode())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Plain dicts in callers' hands are case-sensitive; aiohttp's are not.
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


def _parse_int(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        return None
    return int(text)


def verify_rest(
    *,
    headers: Mapping[str, str],
    payload: bytes,
    secret_for: SecretLookup,
    now_ms: int,
) -> RestCredentials:
    """Check a private REST request; return its credentials or raise :class:`BybitError`.

    ``payload`` is the raw query string (GET) or the raw body (POST) as received. The signature is
    checked over it first and, only if that fails, over its percent-decoded form (a client that
    signed unencoded values while its HTTP library encoded a few characters on the wire).
    """
    api_key = _header(headers, "X-BAPI-API-KEY")
    if not api_key:
        raise BybitError(BAD_API_KEY, "API key is invalid.")
    secret = secret_for(api_key)
    if secret is None:
        raise BybitError(BAD_API_KEY, "API key is invalid.")

    raw_ts = _header(headers, "X-BAPI-TIMESTAMP")
    timestamp = _parse_int(raw_ts)
    if raw_ts is None or timestamp is None:
        raise BybitError(BAD_TIMESTAMP, "invalid request, please check your timestamp and recv_window param")
    raw_window = _header(headers, "X-BAPI-RECV-WINDOW")
    recv_window = DEFAULT_RECV_WINDOW if raw_window is None else _parse_int(raw_window)
    if recv_window is None or recv_window <= 0:
        raise BybitError(PARAMS_ERROR, "params error: recv_window invalid")
    if not (now_ms - recv_window <= timestamp < now_ms + FUTURE_TOLERANCE_MS):
        raise BybitError(
            BAD_TIMESTAMP,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{timestamp}],server_timestamp[{now_ms}],recv_window[{recv_window}]",
        )

    sign = _header(headers, "X-BAPI-SIGN")
    if not sign:
        raise BybitError(BAD_SIGNATURE, "error sign! the X-BAPI-SIGN header is missing")
    prefix = (raw_ts + api_key + (raw_window if raw_window is not None else "")).encode()
    given = sign.strip().lower().encode()
    expected = hmac_hex(secret, prefix + payload).encode()
    if not hmac.compare_digest(given, expected):
        decoded = unquote_to_bytes(payload)
        if decoded == payload or not hmac.compare_digest(given, hmac_hex(secret, prefix + decoded).encode()):
            raise BybitError(
                BAD_SIGNATURE,
                "error sign! sign = hex(HMAC_SHA256(secret, timestamp + api_key + recv_window + payload))",
            )
    return RestCredentials(api_key=api_key, timestamp_ms=timestamp, recv_window_ms=recv_window)


def verify_ws_auth(args: object, *, secret_for: SecretLookup, now_ms: int) -> str:
    """Check the ``args`` of a private-stream ``auth`` op; return the API key or raise."""
    if not isinstance(args, list) or len(args) != 3:
        raise BybitError(PARAMS_ERROR, "Params Error: args must be [apiKey, expires, signature]")
    api_key, expires_raw, signature = args
    if not isinstance(api_key, str) or not api_key:
        raise BybitError(BAD_API_KEY, "Invalid apikey")
    secret = secret_for(api_key)
    if secret is None:
        raise BybitError(BAD_API_KEY, "Invalid apikey")
    if isinstance(expires_raw, bool) or not isinstance(expires_raw, int | str):
        raise BybitError(PARAMS_ERROR, "Params Error: expires must be an integer in ms")
    expires = expires_raw if isinstance(expires_raw, int) else _parse_int(expires_raw)
    if expires is None:
        raise BybitError(PARAMS_ERROR, "Params Error: expires must be an integer in ms")
    if expires <= now_ms:
        raise BybitError(BAD_TIMESTAMP, f"Request expired: expires[{expires}] <= server_timestamp[{now_ms}]")
    if not isinstance(signature, str) or not hmac.compare_digest(
        signature.strip().lower().encode(), ws_signature(secret, expires_raw).encode()
    ):
        raise BybitError(BAD_SIGNATURE, "Signature verification failed")
    return api_key
