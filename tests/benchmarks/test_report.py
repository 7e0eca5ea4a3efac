"""The benchmark report pairs kernel, twin and peer rows and enforces the CI bars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import load_cases, main


def _row(case: str, role: str, median_s: float, ops: int, **extra: object) -> dict[str, object]:
    return {"stats": {"median": median_s}, "extra_info": {"case": case, "role": role, "ops": ops, **extra}}


def _write(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"benchmarks": rows, "machine_info": {"cpu": {"brand_raw": "test"}}}))
    return path


def test_load_cases_when_rows_batched_then_per_op_time_and_ratio(tmp_path: Path) -> None:
    rows = [
        _row("book.x", "kernel", 1e-3, 1000, min_ratio=3, targets={"max_ns": 500, "peer1": 5}),
        _row("book.x", "twin", 8e-3, 1000),
        _row("book.x", "peer:peer1", 4e-3, 1000),
    ]
    cases, _ = load_cases(_write(tmp_path, rows))
    case = cases["book.x"]
    assert case.kernel_ns == pytest.approx(1000.0)
    assert case.ratio == pytest.approx(8.0)
    assert case.peer_ratio("peer1") == pytest.approx(4.0)
    results = {name: met for name, _, _, met in case.target_results()}
    assert results == {"max_ns": False, "x vs peer1": False}


def test_main_check_when_kernel_below_bar_then_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, [_row("a", "kernel", 1.0, 1, min_ratio=3), _row("a", "twin", 2.0, 1)])
    assert main([str(path), "--check"]) == 1
    assert "BENCH FAIL a: kernel only 2.00x" in capsys.readouterr().err


def test_main_check_when_all_bars_met_then_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, [_row("a", "kernel", 1.0, 1, min_ratio=3), _row("a", "twin", 3.5, 1)])
    assert main([str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "3.5x" in out and "1 passed, 0 failed" in out


def test_main_check_when_twin_row_missing_then_exit_1(tmp_path: Path) -> None:
    path = _write(tmp_path, [_row("a", "kernel", 1.0, 1, min_ratio=3)])
    assert main([str(path), "--check"]) == 1


def test_main_when_no_cases_then_exit_1(tmp_path: Path) -> None:
    assert main([str(_write(tmp_path, []))]) == 1
