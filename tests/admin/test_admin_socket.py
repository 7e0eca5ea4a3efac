"""The admin socket against a deterministic EngineControl: shapes, errors, modes, ordering, streaming."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvloop

from engine.admin import AdminServer, AdminSocketError, LineSplitter, Oversized, probe_socket
from engine.control import ControlError
from tests.admin import API_KEY, API_SECRET, FakeControl


class Client:
    """A test client of one admin connection (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.next_id = 1

    @classmethod
    async def open(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 22)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), f"connection closed or partial line: {line!r}"
        doc = json.loads(line)
        assert isinstance(doc, dict)
        return doc

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        req: dict[str, Any] = {"id": rid, "cmd": cmd}
        if args is not None:
            req["args"] = args
        await self.send_raw(json.dumps(req).encode() + b"\n")
        reply = await self.read()
        assert reply["id"] == rid
        return reply

    async def result(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        reply = await self.call(cmd, args)
        assert reply["ok"] is True, reply
        assert set(reply) == {"id", "ok", "result"}
        return reply["result"]

    async def error(self, cmd: str, args: dict[str, Any] | None = None) -> dict[str, str]:
        reply = await self.call(cmd, args)
        assert reply["ok"] is False, reply
        assert set(reply) == {"id", "ok", "error"}
        assert set(reply["error"]) == {"code", "message"}
        return dict(reply["error"])

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "engine.sock"


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def server(sock_path: Path, control: FakeControl) -> AsyncIterator[AdminServer]:
    srv = AdminServer(sock_path, control, secrets=[API_KEY, API_SECRET])
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def client(server: AdminServer) -> AsyncIterator[Client]:
    c = await Client.open(server.path)
    yield c
    await c.close()


def _is_decimal_string(value: object) -> bool:
    from decimal import Decimal, InvalidOperation

    if not isinstance(value, str):
        return False
    try:
        return Decimal(value).is_finite()
    except InvalidOperation:
        return False


# ---- line framing ---------------------------------------------------------------------------------------


def test_splitter_when_lines_split_across_chunks_then_reassembled() -> None:
    s = LineSplitter(100)
    assert list(s.feed(b'{"a"')) == []
    assert s.pending
    assert list(s.feed(b":1}\r\n{}\n{")) == [b'{"a":1}', b"{}"]
    assert list(s.feed(b"}\n")) == [b"{}"]
    assert not s.pending


def test_splitter_when_line_exceeds_limit_then_one_marker_and_rest_discarded() -> None:
    s = LineSplitter(10)
    assert list(s.feed(b"x" * 8)) == []
    assert list(s.feed(b"y" * 8)) == [Oversized(10)]
    assert list(s.feed(b"z" * 1000)) == []
    assert not s.pending
    assert list(s.feed(b"zz\nok\n")) == [b"ok"]


def test_splitter_when_line_exactly_at_limit_then_accepted() -> None:
    s = LineSplitter(4)
    assert list(s.feed(b"abcd\nabcde\nab\n")) == [b"abcd", Oversized(4), b"ab"]


# ---- reply shapes ---------------------------------------------------------------------------------------


async def test_status_when_asked_then_design_shape(client: Client) -> None:
    result = await client.result("status")
    assert result["state"] in {"stopped", "running", "paused", "emergency_stopped"}
    for key in ("mode", "uptime_s", "venues", "equity", "daily_pnl"):
        assert key in result
    assert _is_decimal_string(result["equity"]) and _is_decimal_string(result["daily_pnl"])
    assert result["venues"]["binance"]["connected"] is True


async def test_orders_positions_book_when_asked_then_decimal_strings(client: Client) -> None:
    orders = await client.result("orders")
    assert len(orders) == 2
    for o in orders:
        assert {
            "client_order_id",
            "venue",
            "symbol",
            "side",
            "type",
            "price",
            "qty",
            "filled_qty",
            "status",
        } <= set(o)
        assert all(_is_decimal_string(o[k]) for k in ("price", "qty", "filled_qty"))
    positions = await client.result("positions")
    assert {p["symbol"]: p["qty"] for p in positions} == {"BTCUSDT": "0.020", "ETHUSDT": "-0.40"}
    for p in positions:
        assert {"venue", "symbol", "side", "qty", "entry_price", "unrealized_pnl"} <= set(p)
    book = await client.result("book", {"symbol": "btcusdt", "depth": 5})
    assert book["symbol"] == "BTCUSDT"
    assert len(book["bids"]) == len(book["asks"]) == 5
    from decimal import Decimal

    bids = [Decimal(p) for p, _ in book["bids"]]
    asks = [Decimal(p) for p, _ in book["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert all(_is_decimal_string(x) for level in book["bids"] + book["asks"] for x in level)


async def test_every_other_command_when_asked_then_ok(client: Client, control: FakeControl) -> None:
    assert (await client.result("risk"))["exposure"] == "2700.00"
    assert await client.result("limits") == {"max_order_notional": "5000", "daily_loss_limit": "500"}
    assert await client.result("limits", {"set": {"key": "daily_loss_limit", "value": "400"}}) == {
        "key": "daily_loss_limit",
        "value": "400",
    }
    assert (await client.result("limits"))["daily_loss_limit"] == "400"
    assert await client.result("cancel-all", {"symbol": "ethusdt"}) == {"canceled": 1}
    assert await client.result("cancel-all") == {"canceled": 1}
    assert (await client.result("metrics"))["book_resyncs"] == 1
    assert control.calls[-1] == "metrics"


async def test_state_commands_when_legal_then_follow_the_state_table(
    client: Client, control: FakeControl
) -> None:
    assert (await client.result("pause"))["state"] == "paused"
    assert (await client.result("resume", {"reason": "checked"}))["state"] == "running"
    assert control.state_reason == "checked"
    stopped = await client.result("emergency-stop", {"flatten": True})
    assert (stopped["state"], stopped["canceled"], stopped["flattened"]) == ("emergency_stopped", 2, 2)
    assert await client.result("positions") == []
    assert (await client.result("reset"))["state"] == "paused"
    assert (await client.result("stop"))["state"] == "stopped"


async def test_request_id_when_string_or_missing_then_echoed(client: Client) -> None:
    await client.send_raw(b'{"id": "abc", "cmd": "status"}\n{"cmd": "status"}\n')
    assert (await client.read())["id"] == "abc"
    reply = await client.read()
    assert reply["id"] is None and reply["ok"] is True


# ---- errors ---------------------------------------------------------------------------------------------


async def test_illegal_transition_when_asked_then_control_error_code(client: Client) -> None:
    err = await client.error("resume")
    assert err["code"] == "invalid_transition"
    assert (await client.error("reset"))["code"] == "invalid_transition"
    assert (await client.error("book", {"symbol": "XRPUSDT"}))["code"] == "unknown_symbol"
    assert (await client.error("limits", {"set": {"key": "nope", "value": "1"}}))["code"] == "unknown_limit"
    assert (await client.error("limits", {"set": {"key": "daily_loss_limit", "value": "x"}}))[
        "code"
    ] == "bad_argument"


@pytest.mark.parametrize(
    ("cmd", "args"),
    [
        ("book", {}),
        ("book", {"symbol": 5}),
        ("book", {"symbol": "BTCUSDT", "depth": "5"}),
        ("book", {"symbol": "BTCUSDT", "depth": 0}),
        ("book", {"symbol": "BTCUSDT", "depth": True}),
        ("emergency-stop", {"flatten": "yes"}),
        ("pause", {"reason": 3}),
        ("status", {"verbose": True}),
        ("limits", {"set": {"key": "daily_loss_limit", "value": 400}}),
        ("limits", {"set": {"key": "daily_loss_limit", "value": 400.5}}),
        ("limits", {"set": {"key": "daily_loss_limit"}}),
        ("limits", {"set": ["daily_loss_limit", "400"]}),
        ("limits", {"key": "daily_loss_limit", "value": "400"}),
        ("cancel-all", {"symbol": ["BTCUSDT"]}),
    ],
)
async def test_wrong_argument_when_sent_then_bad_argument_and_nothing_done(
    client: Client, control: FakeControl, cmd: str, args: dict[str, Any]
) -> None:
    err = await client.error(cmd, args)
    assert err["code"] == "bad_argument", err
    assert control.calls == []
    assert control.state == "running"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "bad_json"),
        (b"{", "bad_json"),
        (b"\xff\xfe\x00", "bad_json"),
        (b"[1, 2]", "bad_request"),
        (b'"status"', "bad_request"),
        (b"null", "bad_request"),
        (b'{"id": 1}', "bad_request"),
        (b'{"id": 1, "cmd": 7}', "bad_request"),
        (b'{"id": 1, "cmd": "status", "extra": 1}', "bad_request"),
        (b'{"id": 1, "cmd": "launch-rockets"}', "unknown_command"),
        (b'{"id": 1, "cmd": "status", "args": [1]}', "bad_argument"),
        (b'{"id": {"x": 1}, "cmd": "status"}', "bad_request"),
        (b'{"id": true, "cmd": "status"}', "bad_request"),
    ],
)
async def test_malformed_line_when_sent_then_error_reply_and_connection_usable(
    client: Client, line: bytes, code: str
) -> None:
    await client.send_raw(line + b"\n")
    reply = await client.read()
    assert reply["ok"] is False and reply["error"]["code"] == code
    readable_id = line.startswith(b'{"id": 1')  # the id is echoed whenever it could be read
    assert reply["id"] == (1 if readable_id else None)
    assert (await client.result("status"))["state"] == "running"


async def test_engine_exception_when_raised_then_internal_error_and_server_keeps_serving(
    client: Client, control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    control.fail_with = RuntimeError(f"db exploded while signing with {API_SECRET}")
    err = await client.error("risk")
    assert err["code"] == "internal"
    assert "RuntimeError" in err["message"] and API_SECRET not in err["message"]
    assert any(r.getMessage().startswith("admin_internal_error") for r in caplog.records)
    control.fail_with = None
    assert (await client.result("risk"))["trips"] == []


async def test_control_error_when_raised_by_engine_then_its_code_passes_through(
    client: Client, control: FakeControl
) -> None:
    control.fail_with = ControlError("not_running", "the engine is stopping")
    assert await client.error("risk") == {"code": "not_running", "message": "the engine is stopping"}


async def test_secret_when_in_a_result_then_redacted(client: Client, control: FakeControl) -> None:
    control.leak_secret = True
    await client.send_raw(b'{"id": 1, "cmd": "status"}\n')
    raw = await asyncio.wait_for(client.reader.readline(), 5)
    assert API_KEY.encode() not in raw and API_SECRET.encode() not in raw
    assert json.loads(raw)["result"]["debug"] == "key=*** secret=***"


async def test_oversized_line_when_sent_then_error_and_rest_discarded(client: Client) -> None:
    big = b'{"id": 9, "cmd": "status", "pad": "' + b"x" * 70_000
    await client.send_raw(big[:30_000])
    await client.send_raw(big[30_000:])
    reply = await client.read()
    assert reply == {
        "id": None,
        "ok": False,
        "error": {"code": "line_too_long", "message": reply["error"]["message"]},
    }
    await client.send_raw(b"still the same oversized line" * 1000 + b'"}\n')
    assert (await client.result("status"))["state"] == "running"


async def test_line_just_under_limit_when_sent_then_parsed(client: Client) -> None:
    req = b'{"id": 3, "cmd": "status", "args": {}}'
    line = req + b" " * (65536 - len(req))
    await client.send_raw(line + b"\n")
    assert (await client.read())["ok"] is True


async def test_half_written_line_when_client_ends_stream_then_not_executed(
    server: AdminServer, control: FakeControl
) -> None:
    c = await Client.open(server.path)
    await c.send_raw(b'{"id": 1, "cmd": "pause"}')
    c.writer.write_eof()
    reply = await c.read()
    assert reply["error"]["code"] == "incomplete_line"
    assert await c.reader.read() == b""
    await c.close()
    assert control.state == "running" and control.calls == []


async def test_client_vanishing_after_request_then_command_runs_and_server_lives(
    server: AdminServer, control: FakeControl
) -> None:
    control.delay_s = 0.05
    c = await Client.open(server.path)
    await c.send_raw(b'{"id": 1, "cmd": "pause"}\n')
    c.writer.transport.abort()
    for _ in range(100):
        if control.state == "paused":
            break
        await asyncio.sleep(0.01)
    assert control.state == "paused"
    control.delay_s = 0
    other = await Client.open(server.path)
    assert (await other.result("status"))["state"] == "paused"
    await other.close()


# ---- socket file and directory -------------------------------------------------------------------------


async def test_start_when_directory_missing_then_dir_0700_and_socket_0600(server: AdminServer) -> None:
    assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o700
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


async def test_start_when_directory_too_open_then_tightened_to_0700(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o777)
    async with AdminServer(d / "e.sock", FakeControl()):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


async def test_start_when_directory_sticky_then_refused(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    with pytest.raises(AdminSocketError, match="sticky"):
        await AdminServer(d / "e.sock", FakeControl()).start()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o1777


async def test_start_when_directory_owned_by_another_user_then_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a directory's owner needs root")
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 4242, 4242)
    with pytest.raises(AdminSocketError, match="belongs to uid 4242"):
        await AdminServer(d / "e.sock", FakeControl()).start()


async def test_start_when_path_is_a_regular_file_then_refused_and_file_kept(tmp_path: Path) -> None:
    p = tmp_path / "e.sock"
    p.write_text("precious")
    with pytest.raises(AdminSocketError, match="not a socket"):
        await AdminServer(p, FakeControl()).start()
    assert p.read_text() == "precious"


async def test_start_when_stale_socket_left_by_crash_then_removed_and_serving(tmp_path: Path) -> None:
    p = tmp_path / "run" / "e.sock"
    p.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(p))
    dead.close()  # the file stays, nothing listens: what a crash leaves behind
    assert p.exists()
    async with AdminServer(p, FakeControl()) as srv:
        c = await Client.open(srv.path)
        assert (await c.result("status"))["state"] == "running"
        await c.close()
    assert not p.exists()


async def test_start_when_live_engine_answers_then_refused_and_live_one_untouched(
    server: AdminServer,
) -> None:
    with pytest.raises(AdminSocketError, match=r"another engine is live .*state running"):
        await AdminServer(server.path, FakeControl()).start()
    c = await Client.open(server.path)
    assert (await c.result("status"))["state"] == "running"
    await c.close()
    alive, reply = await probe_socket(server.path)
    assert alive and reply is not None and reply["id"] == "probe"


async def test_close_when_socket_replaced_by_another_then_not_removed(tmp_path: Path) -> None:
    p = tmp_path / "run" / "e.sock"
    srv = AdminServer(p, FakeControl())
    await srv.start()
    os.unlink(p)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(p))
    try:
        await srv.close()
        assert p.exists()
    finally:
        other.close()


# ---- concurrency, ordering, streaming ------------------------------------------------------------------


async def test_many_clients_when_concurrent_then_all_answered(server: AdminServer) -> None:
    clients = [await Client.open(server.path) for _ in range(20)]

    async def five(c: Client) -> list[Any]:
        return [await c.result("status") for _ in range(5)]

    results = [r for rs in await asyncio.gather(*(five(c) for c in clients)) for r in rs]
    assert len(results) == 100 and all(r["state"] == "running" for r in results)
    for c in clients:
        await c.close()


async def test_pipelined_commands_when_one_write_then_executed_and_answered_in_order(
    client: Client, control: FakeControl
) -> None:
    lines = [
        {"id": 1, "cmd": "pause"},
        {"id": 2, "cmd": "status"},
        {"id": 3, "cmd": "resume"},
        {"id": 4, "cmd": "status"},
        {"id": 5, "cmd": "resume"},
    ]
    await client.send_raw(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    replies = [await client.read() for _ in lines]
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert [r["ok"] for r in replies] == [True, True, True, True, False]
    assert replies[1]["result"]["state"] == "paused" and replies[3]["result"]["state"] == "running"
    assert control.calls == ["pause", "status", "resume", "status", "resume"]


async def test_commands_from_two_clients_when_interleaved_then_run_in_arrival_order(
    server: AdminServer, control: FakeControl
) -> None:
    control.delay_s = 0.05
    a, b = await Client.open(server.path), await Client.open(server.path)
    await a.send_raw(b'{"id": 1, "cmd": "pause"}\n')
    await asyncio.sleep(0.01)  # a's pause is running (it takes 50 ms) when b's resume arrives
    await b.send_raw(b'{"id": 1, "cmd": "resume"}\n')
    t0 = time.monotonic()
    ra, rb = await asyncio.gather(a.read(), b.read())
    assert ra["ok"] and rb["ok"], (ra, rb)  # resume ran after pause completed, so it was legal
    assert ra["result"]["state"] == "paused" and rb["result"]["state"] == "running"
    assert control.calls == ["pause", "resume"]
    assert time.monotonic() - t0 >= 0.05  # each reply is sent after its action is done
    await a.close()
    await b.close()


async def test_subscribe_when_state_changes_then_event_streamed_until_disconnect(
    server: AdminServer, control: FakeControl
) -> None:
    sub = await Client.open(server.path)
    assert await sub.result("subscribe") == {"subscribed": True}
    assert control.subscribers == 1
    ops = await Client.open(server.path)
    await ops.result("pause")
    event = await sub.read()
    assert event["event"] == "state" and event["to"] == "paused" and "ts_ms" in event
    control.publish({"event": "fill", "secret_echo": API_KEY})
    assert (await sub.read())["secret_echo"] == "***"
    await sub.send_raw(b'{"id": 5, "cmd": "resume"}\n')  # ignored on a subscribed connection
    await sub.close()
    for _ in range(100):
        if control.subscribers == 0:
            break
        await asyncio.sleep(0.01)
    assert control.subscribers == 0
    assert control.state == "paused"
    assert (await ops.result("status"))["state"] == "paused"
    await ops.close()


async def test_close_when_clients_connected_then_they_are_disconnected(
    sock_path: Path, control: FakeControl
) -> None:
    srv = AdminServer(sock_path, control)
    await srv.start()
    c = await Client.open(sock_path)
    sub = await Client.open(sock_path)
    await sub.result("subscribe")
    await srv.close()
    assert await asyncio.wait_for(c.reader.read(), 5) == b""
    assert await asyncio.wait_for(sub.reader.read(), 5) == b""
    assert not sock_path.exists()
    assert control.subscribers == 0


async def test_too_many_clients_when_connecting_then_refused_with_error(sock_path: Path) -> None:
    async with AdminServer(sock_path, FakeControl(), max_clients=2):
        keep = [await Client.open(sock_path) for _ in range(2)]
        for c in keep:
            await c.result("status")
        extra = await Client.open(sock_path)
        assert (await extra.read())["error"]["code"] == "too_many_clients"
        await extra.close()
        for c in keep:
            await c.close()


# ---- responsiveness ------------------------------------------------------------------------------------

_PROBE_CLIENT = r"""
import json, socket, statistics, sys, time
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
f = s.makefile("rb")
rtts = []
for i in range(n):
    t0 = time.perf_counter_ns()
    s.sendall(b'{"id": %d, "cmd": "status"}\n' % i)
    reply = json.loads(f.readline())
    rtts.append(time.perf_counter_ns() - t0)
    assert reply["ok"] and reply["id"] == i
    time.sleep(0.001)
rtts.sort()
p50, p99 = rtts[n // 2] / 1e3, rtts[int(n * 0.99)] / 1e3
print(json.dumps({"p50_us": p50, "p99_us": p99, "max_us": rtts[-1] / 1e3}))
"""


def _measure(path: Path, flood_batch: int) -> dict[str, float]:
    """Round trips of ``status`` from another process while flood tasks run sync batches."""

    async def main() -> dict[str, float]:
        flooded = {"batches": 0}
        stop = asyncio.Event()

        async def flood() -> None:
            book: dict[int, int] = {}
            while not stop.is_set():
                for i in range(flood_batch):  # a batch of small "market data" updates, no await
                    book[i & 1023] = book.get(i & 1023, 0) + i
                flooded["batches"] += 1
                await asyncio.sleep(0)

        served: list[int] = []
        async with AdminServer(path, FakeControl(), observe=lambda cmd, ns: served.append(ns)):
            tasks = [asyncio.create_task(flood()) for _ in range(4)] if flood_batch else []
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _PROBE_CLIENT, str(path), "400", stdout=subprocess.PIPE
            )
            out, _ = await proc.communicate()
            stop.set()
            await asyncio.gather(*tasks)
        assert proc.returncode == 0
        figures: dict[str, float] = json.loads(out)
        figures["flood_batches"] = flooded["batches"]
        served.sort()
        figures["server_p50_us"] = served[len(served) // 2] / 1e3
        figures["server_p99_us"] = served[int(len(served) * 0.99)] / 1e3
        return figures

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def test_status_when_loop_flooded_then_served_fast(tmp_path: Path) -> None:
    # 4 flooding tasks, each a batch of 200 small dict updates (~20-40 us) between awaits; the round
    # trip includes the other process's scheduling on a shared 2-core machine, so best of three runs
    idle = _measure(tmp_path / "a" / "idle.sock", 0)
    runs = [_measure(tmp_path / f"f{i}" / "flood.sock", 200) for i in range(3)]
    flooded = min(runs, key=lambda r: r["p99_us"])
    print(f"\nadmin status round trip, idle: {idle}\nadmin status round trip, flooded: {runs}")
    assert flooded["flood_batches"] > 1000  # the flood really ran
    assert flooded["p99_us"] < 10_000, runs
    assert flooded["server_p99_us"] < 2_000, runs  # what the server itself adds
    assert idle["p99_us"] < 10_000, idle
