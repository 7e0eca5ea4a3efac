"""The ``engine`` command line: version, help, unknown commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine import __version__
from engine.cli import build_parser, main


def _engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_version_when_asked_then_prints_version_and_exits_zero() -> None:
    result = _engine("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"engine {__version__}"


def test_help_when_asked_then_lists_run_command() -> None:
    result = _engine("--help")
    assert result.returncode == 0
    assert "run" in result.stdout.split("COMMAND", 1)[1]
    assert "start the engine" in result.stdout


def test_unknown_command_when_given_then_exits_nonzero_with_usage() -> None:
    result = _engine("frobnicate")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_no_command_when_given_then_exits_nonzero() -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code != 0


def test_run_when_parsed_then_config_socket_seed_duration() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.config, args.admin_socket, args.duration) == (None, None, None)
    args = build_parser().parse_args(
        ["run", "--config", "c.toml", "--admin-socket", "s.sock", "--duration", "3", "--seed", "9"]
    )
    assert (args.config, args.admin_socket, args.seed, args.duration) == ("c.toml", "s.sock", 9, 3.0)


def test_replay_when_parsed_then_defaults_for_seed_rate_duration() -> None:
    args = build_parser().parse_args(["replay"])
    assert (args.seed, args.rate, args.duration) == (7, 20_000, None)
    args = build_parser().parse_args(["replay", "--duration", "3", "--seed", "9", "--rate", "500"])
    assert (args.seed, args.rate, args.duration) == (9, 500, 3.0)
