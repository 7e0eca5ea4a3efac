"""Binance request authentication: the pure checks, then the real error codes through python-binance."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from engine.venue.binance.auth import authenticate, check_timestamp, sign, verify_signature
from engine.venue.binance.errors import BinanceError
from engine.venue.server import VenueServer
from tests.venue.conftest import VENUE_KEY, VENUE_SECRET

NOW = 1_700_000_000_000


def secrets_of(table: dict[str, str]) -> Callable[[str], str | None]:
    return table.get


def test_signature_when_client_id_arrives_percent_encoded_then_decoded_form_verifies() -> None:
    signed = "newClientOrderId=a:b/c&quantity=1&timestamp=1"
    body = "newClientOrderId=a%3Ab%2Fc&quantity=1&timestamp=1&signature=" + sign("s", signed)
    assert verify_signature("s", "", body)


def test_signature_when_raw_matches_then_verifies_and_tampering_fails() -> None:
    query = "symbol=BTCUSDT&timestamp=5"
    raw = f"{query}&signature={sign('s', query)}"
    assert verify_signature("s", raw, "")
    assert not verify_signature("other", raw, "")
    assert not verify_signature("s", raw.replace("BTC", "ETH"), "")
    assert not verify_signature("s", query, "")  # no signature at all


def test_signature_when_params_split_over_query_and_body_then_concatenated_without_separator() -> None:
    query, body = "symbol=BTCUSDT&side=BUY", "quantity=1&timestamp=5"
    sig = sign("s", query + body)
    assert verify_signature("s", query, f"{body}&signature={sig}")


@pytest.mark.parametrize(
    ("timestamp", "window", "ok"),
    [
        (NOW - 4999, None, True),
        (NOW - 5001, None, False),  # default recvWindow 5000
        (NOW - 59_000, "60000", True),
        (NOW + 999, None, True),
        (NOW + 1000, None, False),  # 1000 ms ahead of the server
    ],
)
def test_timestamp_when_checked_against_the_window_then_minus_1021_outside(
    timestamp: int, window: str | None, ok: bool
) -> None:
    params = {"timestamp": str(timestamp)} | ({"recvWindow": window} if window else {})
    if ok:
        check_timestamp(params, NOW)
    else:
        with pytest.raises(BinanceError) as info:
            check_timestamp(params, NOW)
        assert info.value.code == -1021


def test_recv_window_when_above_60000_then_rejected() -> None:
    with pytest.raises(BinanceError) as info:
        check_timestamp({"timestamp": str(NOW), "recvWindow": "60001"}, NOW)
    assert info.value.code == -1131


def test_authenticate_when_key_missing_or_unknown_then_minus_2015_with_401() -> None:
    for headers in ({}, {"X-MBX-APIKEY": "nobody"}):
        with pytest.raises(BinanceError) as info:
            authenticate(
                headers=headers,
                params={},
                raw_query="",
                raw_body="",
                now_ms=NOW,
                secret_for=secrets_of({"k": "s"}),
            )
        assert (info.value.status, info.value.code) == (401, -2015)


def test_authenticate_when_signature_missing_then_minus_1102() -> None:
    with pytest.raises(BinanceError) as info:
        authenticate(
            headers={"X-MBX-APIKEY": "k"},
            params={"timestamp": str(NOW)},
            raw_query=f"timestamp={NOW}",
            raw_body="",
            now_ms=NOW,
            secret_for=secrets_of({"k": "s"}),
        )
    assert info.value.code == -1102


async def make_client(v: VenueServer, key: str = VENUE_KEY, secret: str = VENUE_SECRET) -> AsyncClient:
    cls = type(
        "LocalAsyncClient",
        (AsyncClient,),
        {"API_URL": v.base_url + "/api", "FUTURES_URL": v.base_url + "/fapi"},
    )
    return await cls.create(api_key=key, api_secret=secret)


async def test_wrong_secret_when_signing_then_minus_1022(venue: VenueServer) -> None:
    client = await make_client(venue, secret="not-the-secret")
    try:
        with pytest.raises(BinanceAPIException) as info:
            await client.futures_account_balance()
        assert (info.value.status_code, info.value.code) == (400, -1022)
    finally:
        await client.close_connection()


async def test_unknown_key_when_calling_signed_endpoint_then_minus_2015(venue: VenueServer) -> None:
    client = await make_client(venue, key="who-is-this")
    try:
        with pytest.raises(BinanceAPIException) as info:
            await client.futures_account_balance()
        assert (info.value.status_code, info.value.code) == (401, -2015)
        with pytest.raises(BinanceAPIException) as info:
            await client.futures_stream_get_listen_key()
        assert info.value.code == -2015
    finally:
        await client.close_connection()


async def test_clock_shift_when_venue_clock_moves_then_minus_1021_until_the_client_resyncs(
    venue: VenueServer,
) -> None:
    client = await make_client(venue)
    try:
        assert await client.futures_account_balance()
        async with aiohttp.ClientSession() as http:
            async with http.post(venue.base_url + "/_venue/faults", json={"clock_offset_ms": 30_000}) as resp:
                assert resp.status == 200
            with pytest.raises(BinanceAPIException) as info:
                await client.futures_account_balance()  # python-binance sends recvWindow=10000
            assert info.value.code == -1021
            async with http.post(venue.base_url + "/_venue/faults", json={"clock_offset_ms": -5_000}) as resp:
                assert resp.status == 200
            with pytest.raises(BinanceAPIException) as info:
                await client.futures_account_balance()  # now 5 s ahead of the venue
            assert info.value.code == -1021
        served = (await client.futures_time())["serverTime"]
        client.timestamp_offset = served - int(time.time() * 1000)
        assert await client.futures_account_balance()
    finally:
        await client.close_connection()
