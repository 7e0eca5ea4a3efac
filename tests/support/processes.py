"""Talking to a venue and an engine that run as separate processes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ["admin", "free_port"]


def free_port() -> int:
    """A loopback TCP port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin(sock: Path, cmd: str, args: Mapping[str, object] | None = None, timeout: float = 10) -> Any:
    """One admin-socket request; the reply's ``result`` (AssertionError on ``ok: false``)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(sock), limit=1 << 24), timeout)
    try:
        writer.write(orjson.dumps({"id": 1, "cmd": cmd, "args": dict(args or {})}) + b"\n")
        await writer.drain()
        reply = orjson.loads(await asyncio.wait_for(reader.readline(), timeout))
    finally:
        writer.close()
    if not reply.get("ok"):
        raise AssertionError(f"admin {cmd}: {reply}")
    return reply["result"]
