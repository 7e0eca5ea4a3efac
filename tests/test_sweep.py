"""engine.sweep: grid enumeration, seeded random sampling, exact walk-forward splits, local processes
and a local Ray instance give the same results as in-process, files and CLI."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.sweep import (
    DataSlice,
    DataSource,
    Fold,
    LocalRunner,
    Prepared,
    RayRunner,
    SweepError,
    grid_points,
    parse_grid,
    parse_space,
    random_points,
    run_sweep,
    run_sweep_command,
    walk_forward_splits,
)

SRC = DataSource(synthetic_seed=7, events=1000)


def toy_objective(params: Mapping[str, Any], data: DataSlice, seed: int) -> dict[str, float]:
    """A deterministic objective: best at fast=12, slow=30; depends on the slice and the seed."""
    fast, slow = float(params["fast"]), float(params["slow"])
    score = -((fast - 12.0) ** 2) - (slow - 30.0) ** 2 / 10.0 + data.start / 1000.0 + seed / 1e6
    return {
        "sharpe": score,
        "max_drawdown": abs(fast - slow) / 100.0,
        "trades": float(data.stop - data.start),
    }


def validate(params: Mapping[str, Any]) -> str | None:
    return None if params["fast"] < params["slow"] else f"fast ({params['fast']}) must be below slow"


# ---- points ---------------------------------------------------------------------------------------------


def test_grid_when_two_keys_then_cartesian_product_first_key_slowest() -> None:
    assert parse_grid("fast=8,12,16;slow=26,34") == {"fast": [8, 12, 16], "slow": [26, 34]}
    assert grid_points(parse_grid("fast=8,12,16;slow=26,34")) == [
        {"fast": 8, "slow": 26},
        {"fast": 8, "slow": 34},
        {"fast": 12, "slow": 26},
        {"fast": 12, "slow": 34},
        {"fast": 16, "slow": 26},
        {"fast": 16, "slow": 34},
    ]


def test_grid_when_values_typed_then_toml_like_scalars() -> None:
    assert parse_grid("k=1.5,2;on=true,false;mode=limit") == {
        "k": [1.5, 2],
        "on": [True, False],
        "mode": ["limit"],
    }


@pytest.mark.parametrize("spec", ["", "fast", "fast=8;fast=9", "1x=2", "fast=8,8", "fast=8,"])
def test_grid_when_malformed_then_sweep_error(spec: str) -> None:
    with pytest.raises(SweepError):
        parse_grid(spec)


def test_random_when_same_seed_then_same_points_and_within_bounds() -> None:
    space = parse_space("fast=5..20;slow=20..60;k=1.5..3.0;mode=a,b")
    a = random_points(space, 25, seed=3)
    assert a == random_points(space, 25, seed=3)
    assert a != random_points(space, 25, seed=4)
    assert len(a) == 25 and len({tuple(p.values()) for p in a}) == 25
    for p in a:
        assert isinstance(p["fast"], int) and 5 <= p["fast"] <= 20
        assert isinstance(p["slow"], int) and 20 <= p["slow"] <= 60
        assert isinstance(p["k"], float) and 1.5 <= p["k"] <= 3.0
        assert p["mode"] in ("a", "b")


def test_random_when_space_smaller_than_n_then_every_point_once() -> None:
    pts = random_points(parse_space("fast=1..3"), 10, seed=1)
    assert sorted(p["fast"] for p in pts) == [1, 2, 3]


@pytest.mark.parametrize("spec", ["fast=9..5", "fast=a..b", "fast=1..x"])
def test_space_when_malformed_then_sweep_error(spec: str) -> None:
    with pytest.raises(SweepError):
        parse_space(spec)


# ---- walk-forward ---------------------------------------------------------------------------------------


def test_walk_forward_when_1000_events_4_folds_then_exact_windows() -> None:
    # W = floor(1000 / (1 + 3 * 0.3)) = 526: train 368, test 158; 526 + 3 * 158 = 1000
    assert walk_forward_splits(1000, 4, 0.7) == [
        Fold(0, (0, 368), (368, 526)),
        Fold(1, (158, 526), (526, 684)),
        Fold(2, (316, 684), (684, 842)),
        Fold(3, (474, 842), (842, 1000)),
    ]


def test_walk_forward_when_one_fold_then_train_then_test() -> None:
    assert walk_forward_splits(10, 1, "0.7") == [Fold(0, (0, 7), (7, 10))]


@given(st.integers(2, 5000), st.integers(1, 12), st.sampled_from(["0.5", "0.6", "0.7", "0.8", "0.9", "0.75"]))
def test_walk_forward_invariants(n: int, k: int, frac: str) -> None:
    try:
        folds = walk_forward_splits(n, k, frac)
    except SweepError:
        return
    assert len(folds) == k
    w = folds[0].test[1]
    for f in folds:
        assert f.train[1] == f.test[0]  # test right after train
        assert f.test[1] - f.train[0] == w  # one window length
        assert f.train[1] - f.train[0] >= 1 and f.test[1] - f.test[0] >= 1
        assert f.test[1] <= n
    for a, b in itertools.pairwise(folds):
        assert b.test[0] == a.test[1]  # the test ranges tile, no overlap
    # the window is the longest that fits: one event longer and the K windows overrun the data
    assert w + 1 + (k - 1) * (w + 1 - math.floor((w + 1) * Fraction(frac))) > n


def test_walk_forward_when_too_few_events_then_error() -> None:
    with pytest.raises(SweepError, match="too few"):
        walk_forward_splits(3, 5, 0.7)


# ---- running --------------------------------------------------------------------------------------------

GRID = grid_points(parse_grid("fast=8,12,16,40;slow=26,30,34"))


def sweep(runner: Any, **kw: Any) -> Any:
    return run_sweep(
        objective=toy_objective,
        points=GRID,
        base_params={"rsi_period": 14},
        source=SRC,
        n_events=1000,
        seed=5,
        metric=kw.pop("metric", "sharpe"),
        runner=runner,
        validate=validate,
        **kw,
    )


def test_sweep_when_in_process_then_sorted_by_metric_and_invalid_points_skipped() -> None:
    r = sweep(LocalRunner(workers=0))
    # ties (-1.6 twice) keep the grid order
    assert [e.point for e in r.evaluations][:3] == [
        {"fast": 12, "slow": 30},
        {"fast": 12, "slow": 26},
        {"fast": 12, "slow": 34},
    ]
    values = [e.metrics["sharpe"] for e in r.evaluations]
    assert values == sorted(values, reverse=True) and len(values) == 9
    assert [s["params"] for s in r.skipped] == [
        {"fast": 40, "slow": 26},
        {"fast": 40, "slow": 30},
        {"fast": 40, "slow": 34},
    ]


def test_sweep_when_lower_is_better_metric_then_ascending() -> None:
    r = sweep(LocalRunner(workers=0), metric="max_drawdown")
    values = [e.metrics["max_drawdown"] for e in r.evaluations]
    assert values == sorted(values)


def test_sweep_when_walk_forward_then_best_in_sample_evaluated_out_of_sample_per_fold() -> None:
    r = sweep(LocalRunner(workers=0), walk_forward=3, train_frac=0.75)
    folds = walk_forward_splits(1000, 3, 0.75)
    oos = [e for e in r.evaluations if e.phase == "out_of_sample"]
    assert [(e.fold, e.start, e.stop, e.point) for e in oos] == [
        (f.index, f.test[0], f.test[1], {"fast": 12, "slow": 30}) for f in folds
    ]
    assert oos[1].metrics == toy_objective(
        {"fast": 12, "slow": 30}, DataSlice(source=SRC, start=folds[1].test[0], stop=folds[1].test[1]), 5
    )
    ins = [e for e in r.evaluations if e.phase == "in_sample" and e.fold == 2]
    assert len(ins) == 9 and all((e.start, e.stop) == folds[2].train for e in ins)
    assert r.to_json()["folds"][0]["best_params"] == {"fast": 12, "slow": 30}


def test_sweep_when_local_processes_then_same_result_as_in_process(tmp_path: Path) -> None:
    a = sweep(LocalRunner(workers=2), walk_forward=2)
    b = sweep(LocalRunner(workers=0), walk_forward=2)
    assert a.to_json() == b.to_json() and a.to_csv() == b.to_csv()


def test_sweep_when_ray_local_then_same_result_as_in_process() -> None:
    pytest.importorskip("ray")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(__import__(__name__))
    try:
        a = sweep(RayRunner(address="local", workers=2), walk_forward=2)
    finally:
        cloudpickle.unregister_pickle_by_value(__import__(__name__))
    assert a.to_json() == sweep(LocalRunner(workers=0), walk_forward=2).to_json()


def test_sweep_when_metric_unknown_then_error() -> None:
    with pytest.raises(SweepError, match="calmar"):
        sweep(LocalRunner(workers=0), metric="calmar")


# ---- files and command ----------------------------------------------------------------------------------


def toy_factory(*, config_path: str, source: DataSource) -> Prepared:
    assert source == DataSource(synthetic_seed=5, events=1000)
    return Prepared(objective=toy_objective, base_params={}, n_events=1000, validate=validate)


def test_command_when_grid_then_table_printed_and_files_written(tmp_path: Path, capsys: Any) -> None:
    import argparse

    from engine.cli import build_parser

    args = build_parser().parse_args(
        [
            "sweep",
            "--config",
            "x.toml",
            "--synthetic",
            "--seed",
            "5",
            "--events",
            "1000",
            "--grid",
            "fast=8,12,40;slow=26,30",
            "--walk-forward",
            "2",
            "--workers",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert isinstance(args, argparse.Namespace)
    assert run_sweep_command(args, objective_factory=toy_factory) == 0
    out = capsys.readouterr().out
    assert "out_of_sample fold 1" in out and "in_sample fold 0" in out
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["metric"] == "sharpe" and data["direction"] == "max" and len(data["folds"]) == 2
    assert [s["params"] for s in data["skipped"]] == [{"fast": 40, "slow": 26}, {"fast": 40, "slow": 30}]
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert lines[0] == "phase,fold,start,stop,fast,slow,sharpe,max_drawdown,trades"
    assert len(lines) == 1 + 2 * 4 + 2


def test_command_when_random_without_space_then_exit_2(tmp_path: Path, capsys: Any) -> None:
    from engine.cli import build_parser

    args = build_parser().parse_args(
        [
            "sweep",
            "--config",
            "x.toml",
            "--synthetic",
            "--events",
            "10",
            "--random",
            "3",
            "--out",
            str(tmp_path),
        ]
    )
    assert run_sweep_command(args, objective_factory=toy_factory) == 2
    assert "--random needs --space" in capsys.readouterr().err


def test_command_when_real_backtest_then_walk_forward_runs_end_to_end(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[engine]\nmode = "paper"\n[[exchanges]]\nname = "binance"\nsymbols = ["BTCUSDT"]\n'
        '[strategy]\nname = "ema_cross"\nparams = { fast = 12, slow = 26 }\n'
    )
    from engine.cli import main

    out = tmp_path / "out"
    argv = [
        "sweep",
        "--config",
        str(cfg),
        "--synthetic",
        "--seed",
        "3",
        "--events",
        "4000",
        "--grid",
        "fast=5,30;slow=13",
        "--walk-forward",
        "2",
        "--workers",
        "0",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads((out / "sweep.json").read_text())
    assert data["skipped"] == [
        {"params": {"fast": 30, "slow": 13}, "reason": "fast: must be below slow (13), got 30"}
    ]
    assert [f["best_params"] for f in data["folds"]] == [{"fast": 5, "slow": 13}] * 2
    assert [r["phase"] for r in data["results"]] == ["in_sample"] * 2 + ["out_of_sample"] * 2
