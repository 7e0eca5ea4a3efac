"""Fuzz the admin socket: thousands of random lines, then ``status`` still answers."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from engine.admin import COMMANDS, AdminServer
from tests.admin import FakeControl

_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    10**30,
    1.5,
    float("1e308"),
    "",
    "BTCUSDT",
    "x" * 300,
    "\u2603\u00e9",
    [],
    [1, "a"],
    {},
    {"key": "daily_loss_limit", "value": "1"},
    {"key": 1, "value": None},
]
_ARG_NAMES = ["symbol", "depth", "flatten", "reason", "set", "venue", "key", "value", "junk"]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.1:
        return {rng.choice(_ARG_NAMES): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 2 and roll < 0.15:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.3:
        return rng.randint(-(10**6), 10**6)
    if roll < 0.4:
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 12)))
    return rng.choice(_VALUES)


def _random_line(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.15:  # random bytes, possibly with newlines inside
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    if kind < 0.25:  # a JSON value that is not a request
        return json.dumps(_random_value(rng)).encode()
    if kind < 0.28:  # huge line
        return b'{"cmd": "status", "pad": "' + b"z" * rng.randint(65_000, 140_000) + b'"}'
    if kind < 0.35:  # truncated JSON
        good = json.dumps({"id": 1, "cmd": rng.choice(list(COMMANDS))}).encode()
        return good[: rng.randint(0, len(good) - 1)]
    req: dict[str, Any] = {}
    if rng.random() < 0.9:
        req["id"] = rng.choice([rng.randint(0, 10**9), "id-" + str(rng.random()), None, 1.5, [1], True])
    if rng.random() < 0.95:
        # subscribe turns the connection into an event stream, so it is rare
        cmds = [c for c in COMMANDS if c != "subscribe"]
        req["cmd"] = (
            "subscribe" if rng.random() < 0.003 else rng.choice([*cmds, "STATUS", "", "shutdown", 42])
        )
    if rng.random() < 0.8:
        req["args"] = (
            {rng.choice(_ARG_NAMES): _random_value(rng) for _ in range(rng.randint(0, 3))}
            if rng.random() < 0.85
            else _random_value(rng)
        )
    if rng.random() < 0.05:
        req["extra"] = 1
    return json.dumps(req).encode()


async def _drain(reader: asyncio.StreamReader, replies: list[bytes]) -> None:
    while line := await reader.readline():
        replies.append(line)


async def _session(path: Path, rng: random.Random, lines: int, replies: list[bytes], sent: list[int]) -> None:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
    drain = asyncio.create_task(_drain(reader, replies))
    try:
        for _ in range(lines):
            data = _random_line(rng)
            roll = rng.random()
            sent[0] += 1
            if roll < 0.002:  # vanish mid-line
                writer.write(data[: len(data) // 2])
                writer.transport.abort()
                return
            if roll < 0.04:  # a line written in pieces
                cut = rng.randint(0, len(data))
                writer.write(data[:cut])
                await writer.drain()
                await asyncio.sleep(0)
                writer.write(data[cut:] + b"\n")
            else:
                writer.write(data + b"\n")
            await writer.drain()
        if rng.random() < 0.3:
            writer.write(b'{"id": 1, "cmd": "pau')  # half a line, then end of stream
        writer.write_eof()
        await asyncio.wait_for(asyncio.shield(drain), 20)
    finally:
        drain.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def test_random_lines_when_thousands_sent_then_server_answers_status(tmp_path: Path) -> None:
    control = FakeControl()
    path = tmp_path / "run" / "fuzz.sock"
    rng = random.Random(20240601)
    async with AdminServer(path, control) as server:
        replies: list[bytes] = []
        sent = [0]
        for round_ in range(5):
            await asyncio.gather(
                *(_session(path, random.Random(rng.random()), 100, replies, sent) for _ in range(8)),
            )
            assert server.clients == 0, f"round {round_}: connections left open"
        print(f"fuzz: {sent[0]} lines sent, {len(replies)} replies, {server.errors_replied} errors")
        assert sent[0] > 3000
        assert len(replies) > 2000
        for raw in replies:
            doc = json.loads(raw)
            assert isinstance(doc, dict)
            assert "event" in doc or (doc["ok"] in (True, False) and "id" in doc)
        assert server.internal_errors == 0  # every bad input was refused before reaching the engine
        assert server.errors_replied > 1000
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"id": "after", "cmd": "status"}\n')
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply["id"] == "after" and reply["ok"] is True
        assert reply["result"]["state"] in {"running", "paused", "emergency_stopped", "stopped"}
        writer.close()
        await writer.wait_closed()
