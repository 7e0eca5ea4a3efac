"""Bybit v5 authentication rules (protocol notes 2.4, 2.8), checked against pybit's own signing."""

from __future__ import annotations

import json

import pytest
from pybit._http_manager import generate_signature

from engine.venue.bybit.auth import rest_signature, verify_rest, verify_ws_auth, ws_signature
from engine.venue.bybit.errors import BybitError

KEY = "alice"
SECRET = "alice-secret"
NOW = 1_700_000_000_000


def _secret_for(key: str) -> str | None:
    return SECRET if key == KEY else None


def _headers(
    payload: str, *, ts: int = NOW, window: str = "5000", key: str = KEY, secret: str = SECRET
) -> dict[str, str]:
    sign = generate_signature(False, secret, f"{ts}{key}{window}{payload}")
    return {
        "X-BAPI-API-KEY": key,
        "X-BAPI-TIMESTAMP": str(ts),
        "X-BAPI-RECV-WINDOW": window,
        "X-BAPI-SIGN": sign,
        "X-BAPI-SIGN-TYPE": "2",
    }


def _code(exc: pytest.ExceptionInfo[BybitError]) -> int:
    return exc.value.code


def test_rest_signature_when_built_like_pybit_then_equal() -> None:
    body = json.dumps({"category": "linear", "symbol": "BTCUSDT", "qty": "0.01"})
    ours = rest_signature(SECRET, timestamp=str(NOW), api_key=KEY, recv_window="5000", payload=body.encode())
    assert ours == generate_signature(False, SECRET, f"{NOW}{KEY}5000{body}")


def test_verify_rest_when_post_body_signed_then_account_returned() -> None:
    body = json.dumps({"category": "linear", "symbol": "BTCUSDT"})
    creds = verify_rest(headers=_headers(body), payload=body.encode(), secret_for=_secret_for, now_ms=NOW)
    assert creds.api_key == KEY
    assert creds.recv_window_ms == 5000


def test_verify_rest_when_body_reserialised_differently_then_10004() -> None:
    signed = json.dumps({"category": "linear", "symbol": "BTCUSDT"})
    received = json.dumps({"category": "linear", "symbol": "BTCUSDT"}, separators=(",", ":"))
    with pytest.raises(BybitError) as exc:
        verify_rest(headers=_headers(signed), payload=received.encode(), secret_for=_secret_for, now_ms=NOW)
    assert _code(exc) == 10004


def test_verify_rest_when_wrong_secret_then_10004_and_secret_not_in_message() -> None:
    query = "category=linear&symbol=BTCUSDT"
    with pytest.raises(BybitError) as exc:
        verify_rest(
            headers=_headers(query, secret="other-secret"),
            payload=query.encode(),
            secret_for=_secret_for,
            now_ms=NOW,
        )
    assert _code(exc) == 10004
    assert SECRET not in exc.value.message and "other-secret" not in exc.value.message


def test_verify_rest_when_query_percent_encoded_on_the_wire_then_decoded_form_accepted() -> None:
    signed = "category=linear&orderLinkId=a b"
    wire = "category=linear&orderLinkId=a%20b"
    creds = verify_rest(headers=_headers(signed), payload=wire.encode(), secret_for=_secret_for, now_ms=NOW)
    assert creds.api_key == KEY


@pytest.mark.parametrize(
    ("ts", "window", "ok"),
    [
        (NOW - 5000, "5000", True),  # exactly at the window's start
        (NOW - 5001, "5000", False),  # older than the window
        (NOW + 999, "5000", True),  # less than 1 s ahead
        (NOW + 1000, "5000", False),  # 1 s ahead
        (NOW - 7000, "7500", True),  # pybit's retry widens the window by 2500
    ],
)
def test_verify_rest_when_timestamp_at_window_edges_then_10002_outside(
    ts: int, window: str, ok: bool
) -> None:
    query = "accountType=UNIFIED"
    headers = _headers(query, ts=ts, window=window)
    if ok:
        assert (
            verify_rest(headers=headers, payload=query.encode(), secret_for=_secret_for, now_ms=NOW).api_key
            == KEY
        )
    else:
        with pytest.raises(BybitError) as exc:
            verify_rest(headers=headers, payload=query.encode(), secret_for=_secret_for, now_ms=NOW)
        assert _code(exc) == 10002


def test_verify_rest_when_key_unknown_or_missing_then_10003() -> None:
    query = "accountType=UNIFIED"
    with pytest.raises(BybitError) as exc:
        verify_rest(
            headers=_headers(query, key="mallory"), payload=query.encode(), secret_for=_secret_for, now_ms=NOW
        )
    assert _code(exc) == 10003
    headers = _headers(query)
    del headers["X-BAPI-API-KEY"]
    with pytest.raises(BybitError) as exc:
        verify_rest(headers=headers, payload=query.encode(), secret_for=_secret_for, now_ms=NOW)
    assert _code(exc) == 10003


def test_verify_rest_when_timestamp_not_a_number_then_10002_and_bad_window_10001() -> None:
    query = "accountType=UNIFIED"
    headers = _headers(query)
    headers["X-BAPI-TIMESTAMP"] = "soon"
    with pytest.raises(BybitError) as exc:
        verify_rest(headers=headers, payload=query.encode(), secret_for=_secret_for, now_ms=NOW)
    assert _code(exc) == 10002
    headers = _headers(query, window="-5")
    with pytest.raises(BybitError) as exc:
        verify_rest(headers=headers, payload=query.encode(), secret_for=_secret_for, now_ms=NOW)
    assert _code(exc) == 10001


def test_verify_rest_when_header_names_lowercase_then_accepted() -> None:
    query = "accountType=UNIFIED"
    headers = {k.lower(): v for k, v in _headers(query).items()}
    assert (
        verify_rest(headers=headers, payload=query.encode(), secret_for=_secret_for, now_ms=NOW).api_key
        == KEY
    )


def test_ws_auth_when_signed_like_pybit_then_account() -> None:
    expires = NOW + 1000
    signature = generate_signature(False, SECRET, f"GET/realtime{expires}")
    assert ws_signature(SECRET, expires) == signature
    assert verify_ws_auth([KEY, expires, signature], secret_for=_secret_for, now_ms=NOW) == KEY


def test_ws_auth_when_expired_then_10002() -> None:
    expires = NOW - 1
    with pytest.raises(BybitError) as exc:
        verify_ws_auth([KEY, expires, ws_signature(SECRET, expires)], secret_for=_secret_for, now_ms=NOW)
    assert _code(exc) == 10002


def test_ws_auth_when_bad_signature_or_key_or_shape_then_refused() -> None:
    expires = NOW + 1000
    with pytest.raises(BybitError) as exc:
        verify_ws_auth([KEY, expires, ws_signature("nope", expires)], secret_for=_secret_for, now_ms=NOW)
    assert _code(exc) == 10004
    with pytest.raises(BybitError) as exc:
        verify_ws_auth(
            ["mallory", expires, ws_signature(SECRET, expires)], secret_for=_secret_for, now_ms=NOW
        )
    assert _code(exc) == 10003
    for bad in (None, [KEY, expires], [KEY, "later", "x"], [KEY, True, "x"], "args"):
        with pytest.raises(BybitError) as exc:
            verify_ws_auth(bad, secret_for=_secret_for, now_ms=NOW)
        assert _code(exc) == 10001
