"""Binance USD-M stream URLs and frame routing (no I/O; the connections are ``common.wsconn``).

Routes (protocol notes 1.6): depth on ``/public``, trades and mark price on ``/market``, the user stream
on ``/private/ws/<listenKey>``; combined streams wrap each payload as ``{"stream": ..., "data": ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["depth_stream_url", "market_stream_url", "private_stream_url", "stream_symbol"]

_STREAM_KEY = b'"stream":"'


def depth_stream_url(base: str, symbols: Sequence[str], speed_ms: int = 100) -> str:
    names = "/".join(f"{s.lower()}@depth@{speed_ms}ms" for s in symbols)
    return f"{base.rstrip('/')}/public/stream?streams={names}"


def market_stream_url(base: str, symbols: Sequence[str]) -> str:
    names = "/".join(f"{s.lower()}@aggTrade/{s.lower()}@markPrice@1s" for s in symbols)
    return f"{base.rstrip('/')}/market/stream?streams={names}"


def private_stream_url(base: str, listen_key: str) -> str:
    return f"{base.rstrip('/')}/private/ws/{listen_key}"


def stream_symbol(raw: bytes) -> str | None:
    """The upper-case symbol of a combined-stream frame, read from its ``stream`` name without
    decoding the frame (the book path hands the bytes to the kernel); None when absent."""
    start = raw.find(_STREAM_KEY)
    if start < 0:
        return None
    start += len(_STREAM_KEY)
    end = raw.find(b"@", start, start + 64)
    if end < 0:
        return None
    return raw[start:end].decode("ascii", "replace").upper()
