"""``engine ctl`` as a real subprocess against an AdminServer running on a loop in a test thread."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.admin import AdminServer
from engine.ctl import EXIT_NO_ENGINE, EXIT_REFUSED, EXIT_USAGE, AdminClient, CtlError, default_socket_path
from tests.admin import API_KEY, API_SECRET, FakeControl


class ServerThread:
    """An AdminServer over a FakeControl on its own event loop in a daemon thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.control = FakeControl()
        self.loop = asyncio.new_event_loop()
        self.server = AdminServer(path, self.control, secrets=[API_KEY, API_SECRET])
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="admin-server", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._started.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._started.wait(10), "admin server did not start"
        return self

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server's loop (thread-safe access to the control)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path / "run" / "engine.sock").start()
    yield srv
    srv.stop()


def ctl(sock: Path | None, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    socket_args = ["--socket", str(sock)] if sock is not None else []
    return subprocess.run(
        [sys.executable, "-m", "engine", "ctl", *socket_args, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def test_status_when_json_then_prints_the_result_object(engine: ServerThread) -> None:
    r = ctl(engine.path, "status", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "running" and result["equity"] == "10060.00"
    assert {"mode", "uptime_s", "venues", "daily_pnl"} <= set(result)


def test_status_when_table_then_human_readable(engine: ServerThread) -> None:
    r = ctl(engine.path, "status")
    assert r.returncode == 0, r.stderr
    assert "state" in r.stdout and "running" in r.stdout and "10060.00" in r.stdout
    assert "BTCUSDT live" in r.stdout and "ETHUSDT resyncing" in r.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.stdout)


def test_orders_positions_book_when_tables_then_columns_and_values_shown(engine: ServerThread) -> None:
    orders = ctl(engine.path, "orders")
    assert orders.returncode == 0, orders.stderr
    for text in ("client_order_id", "filled_qty", "e-1", "64000.10", "partially_filled"):
        assert text in orders.stdout
    positions = ctl(engine.path, "positions")
    assert "-0.40" in positions.stdout and "unrealized_pnl" in positions.stdout
    book = ctl(engine.path, "book", "BTCUSDT", "--depth", "3")
    assert book.returncode == 0, book.stderr
    assert "63999.9" in book.stdout and "64000.1" in book.stdout and "64000.4" not in book.stdout


def test_book_when_json_then_depth_levels_of_decimal_strings(engine: ServerThread) -> None:
    r = ctl(engine.path, "--json", "book", "ethusdt", "--depth", "2")
    assert r.returncode == 0, r.stderr
    book = json.loads(r.stdout)
    assert book["bids"] == [["3499.99", "0.5"], ["3499.98", "1.5"]]
    assert book["asks"] == [["3500.01", "0.4"], ["3500.02", "1.4"]]


def test_state_commands_when_run_in_sequence_then_state_follows(engine: ServerThread) -> None:
    assert json.loads(ctl(engine.path, "pause", "--json").stdout)["state"] == "paused"
    assert ctl(engine.path, "resume").returncode == 0
    r = ctl(engine.path, "emergency-stop", "--flatten", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["flattened"] == 2
    assert json.loads(ctl(engine.path, "positions", "--json").stdout) == []
    assert json.loads(ctl(engine.path, "reset", "--json").stdout)["state"] == "paused"
    assert json.loads(ctl(engine.path, "stop", "--json").stdout)["state"] == "stopped"
    assert engine.call(lambda: engine.control.calls[-1]) == "stop"


def test_limits_set_when_valid_then_changed_and_shown(engine: ServerThread) -> None:
    r = ctl(engine.path, "limits", "set", "daily_loss_limit", "450", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"key": "daily_loss_limit", "value": "450"}
    shown = ctl(engine.path, "limits")
    assert "daily_loss_limit" in shown.stdout and "450" in shown.stdout


def test_cancel_all_risk_metrics_when_asked_then_exit_zero(engine: ServerThread) -> None:
    assert json.loads(ctl(engine.path, "cancel-all", "btcusdt", "--json").stdout) == {"canceled": 1}
    assert ctl(engine.path, "risk").returncode == 0
    metrics = ctl(engine.path, "metrics")
    assert metrics.returncode == 0 and "events.depth" in metrics.stdout


def test_refused_command_when_run_then_exit_one_with_code_on_stderr(engine: ServerThread) -> None:
    r = ctl(engine.path, "resume")
    assert r.returncode == EXIT_REFUSED
    assert r.stdout == ""
    assert r.stderr.startswith("error: invalid_transition: cannot resume when running")
    r = ctl(engine.path, "limits", "set", "nope", "1")
    assert r.returncode == EXIT_REFUSED and "unknown_limit" in r.stderr
    r = ctl(engine.path, "book", "XRPUSDT")
    assert r.returncode == EXIT_REFUSED and "unknown_symbol" in r.stderr


def test_usage_error_when_limits_set_incomplete_then_exit_two(engine: ServerThread) -> None:
    r = ctl(engine.path, "limits", "set", "daily_loss_limit")
    assert r.returncode == EXIT_USAGE and "limits set KEY VALUE" in r.stderr
    assert ctl(engine.path, "book").returncode == EXIT_USAGE
    assert ctl(engine.path, "frobnicate").returncode == EXIT_USAGE


def test_no_engine_when_socket_missing_then_exit_three_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.sock"
    r = ctl(path, "status")
    assert r.returncode == EXIT_NO_ENGINE
    assert str(path) in r.stderr and "no engine answers" in r.stderr


def test_no_engine_when_stale_socket_then_exit_three(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    r = ctl(path, "status", "--json")
    assert r.returncode == EXIT_NO_ENGINE and "connection refused" in r.stderr and r.stdout == ""


def test_socket_default_when_no_flag_then_from_config_admin_socket(
    tmp_path: Path, engine: ServerThread
) -> None:
    cfg = tmp_path / "cfg.toml"
    paper = (Path(__file__).resolve().parents[2] / "config" / "paper.toml").read_text()
    cfg.write_text(paper.replace('admin_socket = "var/engine.sock"', f'admin_socket = "{engine.path}"'))
    assert default_socket_path(str(cfg)) == engine.path
    r = ctl(None, "--config", str(cfg), "status", "--json")
    assert r.returncode == 0, r.stderr
    # no --socket, no --config: the default config's var/engine.sock, relative to the working directory
    r = ctl(None, "status", cwd=tmp_path)
    assert r.returncode == EXIT_NO_ENGINE and "var/engine.sock" in r.stderr


def test_subscribe_when_events_published_then_printed_as_json_lines(engine: ServerThread) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "ctl", "--socket", str(engine.path), "subscribe"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            if engine.call(lambda: engine.control.subscribers) == 1:
                break
            threading.Event().wait(0.02)
        assert engine.call(lambda: engine.control.subscribers) == 1
        with AdminClient(engine.path) as client:
            client.request("pause")
        assert proc.stdout is not None
        event = json.loads(proc.stdout.readline())
        assert event["event"] == "state" and event["to"] == "paused"
    finally:
        proc.terminate()
        proc.wait(10)


def test_watch_when_frames_limited_then_renders_state_books_and_exits_zero(engine: ServerThread) -> None:
    r = ctl(engine.path, "watch", "--frames", "2", "--refresh", "0.05")
    assert r.returncode == 0, r.stderr
    for text in ("running", "BTCUSDT", "open orders (2)", "positions (2)", "recent events", "64000.1"):
        assert text in r.stdout


def test_client_when_engine_refuses_then_ctl_error_with_code(engine: ServerThread) -> None:
    with AdminClient(engine.path) as client:
        assert client.request("status")["state"] == "running"
        with pytest.raises(CtlError) as exc:
            client.request("reset")
        assert exc.value.code == "invalid_transition"
        assert client.request("pause")["state"] == "paused"
