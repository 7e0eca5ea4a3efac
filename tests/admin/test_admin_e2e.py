"""End to end: ``engine run`` as a subprocess, steered by ``engine ctl`` subprocesses over its socket.

Paper mode (embedded venue) for the operator sequence; live mode against an ``engine venue`` subprocess
on loopback with a known key and secret, so every log line of the run can be grepped for them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-admin-key-5b8f0c2d9a7e4f61"
SECRET = "e2e-admin-secret-9c1d3e5f7a9b2c4d6e8f0a1b3c5d7e9f"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "E2E_ADMIN_KEY": KEY, "E2E_ADMIN_SECRET": SECRET}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, *, live_port: int | None) -> Path:
    if live_port is None:
        mode, urls = "paper", ""
    else:
        mode = "live"
        urls = f"""rest_url = "http://127.0.0.1:{live_port}"
ws_public_url = "ws://127.0.0.1:{live_port}"
ws_private_url = "ws://127.0.0.1:{live_port}"
api_key_env = "E2E_ADMIN_KEY"
api_secret_env = "E2E_ADMIN_SECRET"
"""
    cfg = tmp / "engine.toml"
    cfg.write_text(
        f"""
[engine]
mode = "{mode}"
admin_socket = "{tmp}/adm/engine.sock"
state_dir = "{tmp}/state"
log_level = "debug"

[[exchanges]]
name = "binance"
symbols = ["BTCUSDT", "ETHUSDT"]
{urls}
[strategy]
name = "ema_cross"
params = {{ fast = 12, slow = 26 }}

[risk]
max_order_notional = "5000"
daily_loss_limit = "500"

[metrics]
bind = "127.0.0.1:{_free_port()}"
"""
    )
    return cfg


def ctl(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "ctl", "--socket", str(sock), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
        cwd=ROOT,
    )


def ok_json(sock: Path, *args: str) -> Any:
    r = ctl(sock, *args, "--json")
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return json.loads(r.stdout)


class Run:
    def __init__(self, tmp: Path, cfg: Path) -> None:
        self.sock = tmp / "adm" / "engine.sock"
        self.out = tmp / "engine.stdout"
        self.err = tmp / "engine.stderr"
        self.state_dir = tmp / "state"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "run", "--config", str(cfg)],
                cwd=ROOT,
                env=ENV,
                stdout=out,
                stderr=err,
                text=True,
            )

    def wait_running(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"engine exited {self.proc.returncode}: {self.err.read_text()}"
            r = ctl(self.sock, "status", "--json")
            if r.returncode == 0:
                status: dict[str, Any] = json.loads(r.stdout)
                if status["state"] == "running":
                    return status
                last = status["state"]
            time.sleep(0.2)
        raise AssertionError(f"engine not running after {timeout} s (last state {last!r})")

    def log_text(self) -> str:
        parts = [self.out.read_text(), self.err.read_text()]
        parts += [p.read_text(errors="replace") for p in self.state_dir.rglob("*.log*") if p.is_file()]
        return "\n".join(parts)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def paper_run(tmp_path: Path) -> Iterator[Run]:
    run = Run(tmp_path, _config(tmp_path, live_port=None))
    yield run
    run.kill()


def test_paper_engine_when_steered_by_ctl_then_follows_state_table_and_stops_cleanly(paper_run: Run) -> None:
    status = paper_run.wait_running()
    assert status["mode"] == "paper"
    assert {"uptime_s", "venues", "equity", "daily_pnl"} <= set(status)
    Decimal(status["equity"])
    assert ok_json(paper_run.sock, "pause")["state"] == "paused"
    assert ok_json(paper_run.sock, "status")["state"] == "paused"
    refused = ctl(paper_run.sock, "pause")
    assert refused.returncode == 1 and "invalid_transition" in refused.stderr
    ok_json(paper_run.sock, "resume")
    assert ok_json(paper_run.sock, "status")["state"] == "running"
    ok_json(paper_run.sock, "emergency-stop", "--flatten")
    assert ok_json(paper_run.sock, "status")["state"] == "emergency_stopped"
    assert ok_json(paper_run.sock, "orders") == []  # every open order canceled
    ok_json(paper_run.sock, "reset")
    assert ok_json(paper_run.sock, "status")["state"] == "paused"
    positions = ok_json(paper_run.sock, "positions")
    assert isinstance(positions, list)
    for p in positions:
        Decimal(p["qty"])
    book = ok_json(paper_run.sock, "book", "BTCUSDT", "--depth", "5")
    assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
    assert Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
    for level in book["bids"] + book["asks"]:
        assert all(isinstance(x, str) for x in level)
        Decimal(level[0])
        Decimal(level[1])
    assert ctl(paper_run.sock, "status").returncode == 0  # the table form too
    assert ctl(paper_run.sock, "stop").returncode == 0
    assert paper_run.proc.wait(60) == 0, paper_run.err.read_text()
    assert not paper_run.sock.exists()
    gone = ctl(paper_run.sock, "status")
    assert gone.returncode == 3 and str(paper_run.sock) in gone.stderr


def test_live_engine_when_run_then_no_log_line_contains_key_or_secret(tmp_path: Path) -> None:
    port = _free_port()
    venue_log = tmp_path / "venue.log"
    with venue_log.open("w") as vout:
        venue = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine",
                "venue",
                "--port",
                str(port),
                "--account",
                f"{KEY}:{SECRET}:100000",
            ],
            cwd=ROOT,
            env=ENV,
            stdout=vout,
            stderr=subprocess.STDOUT,
        )
    run: Run | None = None
    try:
        deadline = time.monotonic() + 30
        while "venue: accounts" not in venue_log.read_text():
            assert venue.poll() is None and time.monotonic() < deadline, venue_log.read_text()
            time.sleep(0.1)
        run = Run(tmp_path, _config(tmp_path, live_port=port))
        status = run.wait_running()
        assert status["mode"] == "live"
        for cmd in (["pause"], ["resume"], ["orders"], ["positions"], ["risk"], ["limits"], ["metrics"]):
            assert ctl(run.sock, *cmd).returncode == 0, cmd
        replies = "".join(ctl(run.sock, c, "--json").stdout for c in ("status", "risk", "limits", "metrics"))
        assert KEY not in replies and SECRET not in replies
        assert ctl(run.sock, "stop").returncode == 0
        assert run.proc.wait(60) == 0, run.err.read_text()
        text = run.log_text()
        assert text.strip(), "the run wrote no log lines"
        leaks = [line for line in text.splitlines() if KEY in line or SECRET in line]
        assert leaks == []
    finally:
        if run is not None:
            run.kill()
        venue.terminate()
        venue.wait(10)
