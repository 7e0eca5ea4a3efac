"""Parameter sweeps: grid or random search over a strategy's parameters, with walk-forward splits, on
local processes or a Ray cluster (``engine sweep``).

The machinery is independent of what is evaluated: an *objective* is any picklable callable
``objective(params, data, seed) -> {metric: float}`` where ``params`` are the strategy's parameters (the
config's ``[strategy] params`` overridden by the sweep's point), ``data`` a :class:`DataSlice` (a
half-open range ``[start, stop)`` of event indices of a :class:`DataSource`) and ``seed`` the run's seed.
``engine sweep`` uses :class:`BacktestObjective` (``engine.backtest.run_backtest`` on the slice, the
books as of the slice's start prepended as snapshots; the unit is a data message).

Points:

- ``--grid "fast=8,12,16;slow=26,34"``: the cartesian product, the first key varying slowest.
- ``--random N --space "fast=5..20;slow=20..60;k=1.5..3.0;mode=a,b"``: N points drawn with
  ``random.Random(seed)``: ``lo..hi`` of integers uniform over the integers (inclusive), of decimals
  uniform over the reals (rounded to 6 decimals), ``a,b,c`` a choice. Duplicate points are drawn again
  (up to a bound), so a small space yields fewer than N points rather than repeats.

Values are typed like TOML scalars: ``12`` an integer, ``2.5`` a float, ``true``/``false`` booleans,
anything else a string. A point the strategy rejects (``StrategyParamError``, e.g. ``fast >= slow``) is
not run; it is listed under ``skipped`` with the reason.

Walk-forward (``--walk-forward K --train-frac F``): :func:`walk_forward_splits` cuts the events into K
folds of one window length W, each ``train = floor(W * F)`` events followed by ``test = W - train``
events, the windows advancing by ``test`` so the test ranges tile the data's tail without overlap; W is
the largest for which K windows fit (``W + (K - 1) * test <= N``). In each fold every point is evaluated
in-sample (train), the best by the metric is chosen (ties: the earlier point), and that one is evaluated
out-of-sample (test). Without walk-forward each point is evaluated once on all the data (phase
``full``).

Results: one row per evaluation (fold, phase, range, the swept parameters, every metric), sorted by the
metric (best first; ``max_drawdown`` and ``fees`` are lower-is-better, everything else higher; NaN last)
within each (phase, fold); printed as a table and written to ``DIR/sweep.csv`` and ``DIR/sweep.json``.
The same inputs and seed give the same files, whatever the number of workers or the runner.

Runners: :class:`LocalRunner` (``concurrent.futures.ProcessPoolExecutor`` on a ``forkserver`` context;
``workers=0`` evaluates in this process) and :class:`RayRunner` (``ray.init(address=...)``; ``"local"``
starts a local instance for this sweep and shuts it down after).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import io
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "LOWER_IS_BETTER",
    "BacktestObjective",
    "DataSlice",
    "DataSource",
    "Evaluation",
    "Fold",
    "LocalRunner",
    "Objective",
    "ObjectiveFactory",
    "Prepared",
    "RayRunner",
    "Runner",
    "SweepError",
    "SweepResult",
    "Task",
    "add_sweep_parser",
    "grid_points",
    "parse_grid",
    "parse_space",
    "prepare_backtest",
    "random_points",
    "run_sweep",
    "run_sweep_command",
    "slice_market_data",
    "walk_forward_splits",
]

#: Metrics where a smaller value is better; every other metric is maximised.
LOWER_IS_BETTER: frozenset[str] = frozenset({"max_drawdown", "max_drawdown_duration_ms", "fees"})

Scalar = int | float | bool | str
Point = dict[str, Scalar]


class SweepError(ValueError):
    """A sweep specification is invalid (the message says which part and why)."""


# ---- data -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where the events come from: a recording/data file, or the venue's seeded generator."""

    path: str | None = None
    synthetic_seed: int | None = None
    events: int | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.synthetic_seed is None):
            raise SweepError("give either a data path or a synthetic seed")
        if self.events is not None and self.events < 1:
            raise SweepError(f"events must be >= 1, got {self.events}")


@dataclass(frozen=True, kw_only=True)
class DataSlice:
    """Events ``[start, stop)`` (indices into the source's event sequence) of ``source``."""

    source: DataSource
    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise SweepError(f"empty or negative slice [{self.start}, {self.stop})")


class Objective(Protocol):
    def __call__(self, params: Mapping[str, Any], data: DataSlice, seed: int) -> Mapping[str, float]: ...


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """What ``engine sweep`` needs from a config and a data source to run a sweep."""

    objective: Objective
    base_params: Mapping[str, Any]  # the config's strategy params (the sweep's points override them)
    n_events: int  # events in the source (the walk-forward unit)
    validate: Callable[[Mapping[str, Any]], str | None] | None = None


#: ``factory(config_path=..., source=...) -> Prepared``
ObjectiveFactory = Callable[..., Prepared]


# ---- points ---------------------------------------------------------------------------------------------

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")


def _scalar(text: str) -> Scalar:
    t = text.strip()
    if _INT.match(t):
        return int(t)
    if _FLOAT.match(t):
        return float(t)
    if t in ("true", "false"):
        return t == "true"
    if not t:
        raise SweepError("empty value")
    return t


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        key, eq, values = part.partition("=")
        key = key.strip()
        if not eq or not _KEY.match(key):
            raise SweepError(f"{what}: {part.strip()!r} is not name=values")
        if key in (k for k, _ in out):
            raise SweepError(f"{what}: {key!r} is given twice")
        out.append((key, values.strip()))
    if not out:
        raise SweepError(f"{what}: no parameters")
    return out


def parse_grid(text: str) -> dict[str, list[Scalar]]:
    """``"fast=8,12,16;slow=26,34"`` -> ``{"fast": [8, 12, 16], "slow": [26, 34]}`` (key order kept)."""
    grid: dict[str, list[Scalar]] = {}
    for key, values in _pairs(text, "grid"):
        try:
            vals = [_scalar(v) for v in values.split(",")]
        except SweepError as exc:
            raise SweepError(f"grid: {key}: {exc}") from None
        if len(set(map(repr, vals))) != len(vals):
            raise SweepError(f"grid: {key}: a value is repeated")
        grid[key] = vals
    return grid


def grid_points(grid: Mapping[str, Sequence[Scalar]]) -> list[Point]:
    """Every combination, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass(frozen=True, slots=True)
class _Dim:
    lo: int | float | None = None
    hi: int | float | None = None
    choices: tuple[Scalar, ...] = ()

    def draw(self, rng: random.Random) -> Scalar:
        if self.choices:
            return self.choices[rng.randrange(len(self.choices))]
        assert self.lo is not None and self.hi is not None
        if isinstance(self.lo, int) and isinstance(self.hi, int):
            return rng.randint(self.lo, self.hi)
        return round(rng.uniform(float(self.lo), float(self.hi)), 6)


def parse_space(text: str) -> dict[str, _Dim]:
    """``"fast=5..20;k=1.5..3.0;mode=a,b"``: integer or real ranges (inclusive) and choices."""
    space: dict[str, _Dim] = {}
    for key, values in _pairs(text, "space"):
        if ".." in values:
            lo_t, _, hi_t = values.partition("..")
            lo, hi = _scalar(lo_t), _scalar(hi_t)
            if isinstance(lo, bool | str) or isinstance(hi, bool | str):
                raise SweepError(f"space: {key}: {values!r} is not a numeric range lo..hi")
            if lo > hi:
                raise SweepError(f"space: {key}: lo {lo} > hi {hi}")
            space[key] = _Dim(lo=lo, hi=hi)
        else:
            choices = tuple(_scalar(v) for v in values.split(","))
            space[key] = _Dim(choices=choices)
    return space


def random_points(space: Mapping[str, _Dim], n: int, seed: int) -> list[Point]:
    """``n`` distinct points drawn with ``random.Random(seed)`` (fewer when the space is smaller)."""
    if n < 1:
        raise SweepError(f"random: N must be >= 1, got {n}")
    rng = random.Random(seed)
    out: list[Point] = []
    seen: set[tuple[Scalar, ...]] = set()
    attempts = 0
    while len(out) < n and attempts < 50 * n:
        attempts += 1
        point = {k: d.draw(rng) for k, d in space.items()}
        ident = tuple(point.values())
        if ident in seen:
            continue
        seen.add(ident)
        out.append(point)
    return out


# ---- walk-forward ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fold:
    index: int
    train: tuple[int, int]  # [start, stop)
    test: tuple[int, int]


def walk_forward_splits(n: int, k: int, train_frac: float | str | Fraction) -> list[Fold]:
    """K rolling windows over ``n`` events (see the module docstring); exact integer arithmetic."""
    if k < 1:
        raise SweepError(f"walk-forward: K must be >= 1, got {k}")
    f = Fraction(str(train_frac)) if not isinstance(train_frac, Fraction) else train_frac
    if not 0 < f < 1:
        raise SweepError(f"walk-forward: train fraction must be in (0, 1), got {train_frac}")

    def fits(w: int) -> tuple[int, int] | None:
        train = math.floor(w * f)
        test = w - train
        if train < 1 or test < 1 or w + (k - 1) * test > n:
            return None
        return train, test

    # the largest W with K windows fitting; W + (K-1)*test is non-decreasing in W, so scan down from the
    # real-valued bound n / (1 + (K-1)(1-F)) (+ 1 for the floors)
    w = math.floor(n / (1 + (k - 1) * (1 - f))) + 1
    while w >= 2 and fits(w) is None:
        w -= 1
    got = fits(w) if w >= 2 else None
    if got is None:
        raise SweepError(f"walk-forward: {n} events are too few for {k} folds at train fraction {train_frac}")
    train, test = got
    return [
        Fold(index=i, train=(i * test, i * test + train), test=(i * test + train, i * test + w))
        for i in range(k)
    ]


# ---- running --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Task:
    """One evaluation: what a worker runs."""

    objective: Objective
    params: Mapping[str, Any]
    data: DataSlice
    seed: int


def evaluate_task(task: Task) -> dict[str, float]:
    """Run one task (module-level, so process pools and Ray can ship it)."""
    result = task.objective(task.params, task.data, task.seed)
    out: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"objective returned {key}={value!r}: metrics must be numbers")
        out[str(key)] = float(value)
    return out


class Runner(Protocol):
    def run(self, tasks: Sequence[Task]) -> list[dict[str, float]]:
        """Results in the order of ``tasks``."""
        ...


class LocalRunner:
    """Local processes (``workers`` of them; default: the CPU count); ``workers=0``: in this process."""

    def __init__(self, *, workers: int | None = None) -> None:
        if workers is not None and workers < 0:
            raise SweepError(f"workers must be >= 0, got {workers}")
        self.workers = (os.cpu_count() or 1) if workers is None else workers

    def run(self, tasks: Sequence[Task]) -> list[dict[str, float]]:
        if not tasks:
            return []
        if self.workers == 0:
            return [evaluate_task(t) for t in tasks]
        ctx = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)), mp_context=ctx
        ) as pool:
            return list(pool.map(evaluate_task, tasks))


class RayRunner:
    """A Ray cluster at ``address`` (``ray.init(address=...)``); ``"local"`` starts a local instance with
    ``workers`` CPUs (default: all) and no dashboard, shut down after each :meth:`run`. An already
    initialised Ray (``ray.is_initialized()``) is used as it is and left running."""

    def __init__(self, *, address: str, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers

    def run(self, tasks: Sequence[Task]) -> list[dict[str, float]]:
        try:
            import ray
        except ImportError:
            raise SweepError("--ray needs the 'ray' package: pip install 'engine[ray]'") from None
        started = False
        if not ray.is_initialized():
            if self.address == "local":
                ray.init(num_cpus=self.workers or None, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
            started = True
        try:
            remote = ray.remote(evaluate_task)
            refs = [remote.remote(t) for t in tasks]
            results: list[dict[str, float]] = ray.get(refs)
            return results
        finally:
            if started:
                ray.shutdown()


# ---- the sweep ------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    phase: str  # "full" | "in_sample" | "out_of_sample"
    fold: int | None
    start: int
    stop: int
    point: Point
    metrics: dict[str, float]

    def row(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "fold": "" if self.fold is None else self.fold,
            "start": self.start,
            "stop": self.stop,
            **self.point,
            **self.metrics,
        }


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    metric: str
    seed: int
    keys: tuple[str, ...]  # the swept parameter names
    evaluations: tuple[Evaluation, ...]  # sorted: phase, fold, metric (best first)
    folds: tuple[dict[str, object], ...]
    skipped: tuple[dict[str, object], ...]
    metric_names: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        oos = [e.metrics.get(self.metric, math.nan) for e in self.evaluations if e.phase == "out_of_sample"]
        finite = [v for v in oos if math.isfinite(v)]
        return {
            "metric": self.metric,
            "direction": "min" if self.metric in LOWER_IS_BETTER else "max",
            "seed": self.seed,
            "parameters": list(self.keys),
            "folds": list(self.folds),
            "out_of_sample_mean": (sum(finite) / len(finite)) if finite else None,
            "skipped": list(self.skipped),
            "results": [_json_safe(e.row()) for e in self.evaluations],
        }

    def columns(self) -> list[str]:
        return ["phase", "fold", "start", "stop", *self.keys, *self.metric_names]

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        w.writeheader()
        for e in self.evaluations:
            w.writerow({k: _fmt(v) for k, v in e.row().items()})
        return buf.getvalue()

    def table(self, *, limit: int = 20) -> str:
        """A readable table: per (phase, fold), the first ``limit`` rows (best first)."""
        cols = self.columns()
        lines: list[str] = []
        for (phase, fold), group in itertools.groupby(self.evaluations, key=lambda e: (e.phase, e.fold)):
            rows = list(group)
            title = phase if fold is None else f"{phase} fold {fold}"
            lines.append(f"{title} ({len(rows)} rows, by {self.metric}, best first)")
            cells = [cols] + [[_fmt(e.row().get(c, "")) for c in cols] for e in rows[:limit]]
            widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
            for r in cells:
                lines.append("  ".join(c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
            if len(rows) > limit:
                lines.append(f"... {len(rows) - limit} more in sweep.csv")
            lines.append("")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} invalid point(s): see sweep.json")
        return "\n".join(lines).rstrip() + "\n"

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "sweep.csv").write_text(self.to_csv(), encoding="utf-8")
        (out_dir / "sweep.json").write_text(
            json.dumps(self.to_json(), indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8"
        )


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _json_safe(row: Mapping[str, object]) -> dict[str, object]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _rank_key(metric: str) -> Callable[[Evaluation], tuple[int, float]]:
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0

    def key(e: Evaluation) -> tuple[int, float]:
        v = e.metrics.get(metric, math.nan)
        return (1, 0.0) if math.isnan(v) else (0, sign * v)

    return key


def run_sweep(
    *,
    objective: Objective,
    points: Sequence[Point],
    base_params: Mapping[str, Any],
    source: DataSource,
    n_events: int,
    seed: int,
    metric: str,
    runner: Runner,
    walk_forward: int | None = None,
    train_frac: float | str = 0.7,
    validate: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> SweepResult:
    """Evaluate ``points`` (each merged over ``base_params``) with ``objective`` through ``runner``.
    ``validate(params)`` returns a reason to skip a point, or None."""
    if not points:
        raise SweepError("no points to evaluate")
    keys = tuple(dict.fromkeys(k for p in points for k in p))
    valid: list[Point] = []
    skipped: list[dict[str, object]] = []
    for p in points:
        why = validate({**base_params, **p}) if validate is not None else None
        if why is None:
            valid.append(p)
        else:
            skipped.append({"params": dict(p), "reason": why})
    if not valid:
        raise SweepError(f"every point is invalid (first: {skipped[0]['reason']})")
    rank = _rank_key(metric)

    def tasks_for(slice_: DataSlice, pts: Sequence[Point]) -> list[Task]:
        return [Task(objective=objective, params={**base_params, **p}, data=slice_, seed=seed) for p in pts]

    evaluations: list[Evaluation] = []
    folds_out: list[dict[str, object]] = []
    if walk_forward is None:
        whole = DataSlice(source=source, start=0, stop=n_events)
        results = runner.run(tasks_for(whole, valid))
        evaluations = [
            Evaluation(phase="full", fold=None, start=0, stop=n_events, point=p, metrics=m)
            for p, m in zip(valid, results, strict=True)
        ]
        evaluations.sort(key=rank)  # stable: ties keep the point order
    else:
        folds = walk_forward_splits(n_events, walk_forward, train_frac)
        tasks: list[Task] = []
        for fold in folds:
            tasks.extend(tasks_for(DataSlice(source=source, start=fold.train[0], stop=fold.train[1]), valid))
        results = runner.run(tasks)
        best: list[Point] = []
        for fold in folds:
            chunk = results[fold.index * len(valid) : (fold.index + 1) * len(valid)]
            ins = [
                Evaluation(
                    phase="in_sample",
                    fold=fold.index,
                    start=fold.train[0],
                    stop=fold.train[1],
                    point=p,
                    metrics=m,
                )
                for p, m in zip(valid, chunk, strict=True)
            ]
            ins.sort(key=rank)
            evaluations.extend(ins)
            best.append(ins[0].point)
        oos_tasks = [
            Task(
                objective=objective,
                params={**base_params, **best[f.index]},
                data=DataSlice(source=source, start=f.test[0], stop=f.test[1]),
                seed=seed,
            )
            for f in folds
        ]
        oos = runner.run(oos_tasks)
        for f, m in zip(folds, oos, strict=True):
            evaluations.append(
                Evaluation(
                    phase="out_of_sample",
                    fold=f.index,
                    start=f.test[0],
                    stop=f.test[1],
                    point=best[f.index],
                    metrics=m,
                )
            )
            in_best = next(e for e in evaluations if e.phase == "in_sample" and e.fold == f.index)
            folds_out.append(
                {
                    "fold": f.index,
                    "train": list(f.train),
                    "test": list(f.test),
                    "best_params": dict(best[f.index]),
                    "in_sample": _json_safe(in_best.metrics),
                    "out_of_sample": _json_safe(m),
                }
            )
        order = {"in_sample": 0, "out_of_sample": 1}
        evaluations.sort(key=lambda e: (order[e.phase], e.fold if e.fold is not None else -1))  # stable
    metric_names = tuple(dict.fromkeys(k for e in evaluations for k in e.metrics))
    if metric not in metric_names:
        raise SweepError(
            f"metric {metric!r} is not among the objective's results ({', '.join(metric_names)})"
        )
    return SweepResult(
        metric=metric,
        seed=seed,
        keys=keys,
        evaluations=tuple(evaluations),
        folds=tuple(folds_out),
        skipped=tuple(skipped),
        metric_names=metric_names,
    )


# ---- the command ----------------------------------------------------------------------------------------


def add_sweep_parser(commands: Any) -> None:
    """Add ``engine sweep`` to the ``engine`` command's subparsers."""
    p: argparse.ArgumentParser = commands.add_parser(
        "sweep",
        help="grid or random search over strategy parameters (walk-forward; local processes or Ray)",
        description=(
            "Backtest the config's strategy over a grid or a random sample of its parameters, optionally "
            "with walk-forward splits (optimise in-sample, evaluate the best out-of-sample per fold), on "
            "local processes or a Ray cluster. Prints the results sorted by the metric and writes "
            "DIR/sweep.csv and DIR/sweep.json."
        ),
    )
    p.add_argument("--config", required=True, metavar="PATH", help="engine config ([strategy] form)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="PATH", help="recorded data to replay")
    src.add_argument("--synthetic", action="store_true", help="the local venue's seeded generator")
    p.add_argument(
        "--seed", type=int, default=7, help="generator, backtest and random-search seed (default 7)"
    )
    p.add_argument(
        "--events", type=int, metavar="N", help="events to generate (--synthetic) or to use (--data)"
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--grid", metavar="SPEC", help='e.g. "fast=8,12,16;slow=26,34"')
    how.add_argument("--random", type=int, metavar="N", help="N random points of --space")
    p.add_argument("--space", metavar="SPEC", help='with --random, e.g. "fast=5..20;slow=20..60"')
    p.add_argument("--walk-forward", type=int, metavar="K", help="K walk-forward folds")
    p.add_argument("--train-frac", default="0.7", metavar="F", help="in-sample share of a fold (default 0.7)")
    p.add_argument("--metric", default="sharpe", help="the metric to rank by (default sharpe)")
    p.add_argument("--ray", metavar="ADDRESS", help='run on a Ray cluster ("local": start a local instance)')
    p.add_argument("--workers", type=int, metavar="N", help="local processes / local Ray CPUs (default: all)")
    p.add_argument("--out", required=True, metavar="DIR", help="where sweep.csv and sweep.json go")


def run_sweep_command(args: argparse.Namespace, *, objective_factory: ObjectiveFactory | None = None) -> int:
    """``engine sweep``: 0 on success, 2 on a bad config or specification (message on stderr)."""
    from engine.errors import ConfigError

    try:
        points = _points_from_args(args)
        if args.synthetic and args.events is None:
            raise SweepError("--synthetic needs --events N")
        source = (
            DataSource(synthetic_seed=args.seed, events=args.events)
            if args.synthetic
            else DataSource(path=args.data, events=args.events)
        )
        factory = objective_factory or _backtest_objective_factory()
        prep = factory(config_path=args.config, source=source)
        runner: Runner = (
            RayRunner(address=args.ray, workers=args.workers)
            if args.ray
            else LocalRunner(workers=args.workers)
        )
        result = run_sweep(
            objective=prep.objective,
            points=points,
            base_params=prep.base_params,
            source=source,
            n_events=prep.n_events,
            seed=args.seed,
            metric=args.metric,
            runner=runner,
            walk_forward=args.walk_forward,
            train_frac=args.train_frac,
            validate=prep.validate,
        )
    except (SweepError, ConfigError) as exc:
        print(f"engine sweep: {exc}", file=sys.stderr)
        return 2
    result.write(Path(args.out))
    sys.stdout.write(result.table())
    print(f"wrote {Path(args.out) / 'sweep.csv'} and {Path(args.out) / 'sweep.json'}")
    return 0


def _points_from_args(args: argparse.Namespace) -> list[Point]:
    if args.grid is not None:
        if args.space is not None:
            raise SweepError("--space goes with --random, not --grid")
        return grid_points(parse_grid(args.grid))
    if args.space is None:
        raise SweepError("--random needs --space")
    return random_points(parse_space(args.space), args.random, args.seed)


def _backtest_objective_factory() -> ObjectiveFactory:
    return prepare_backtest


def _market_data(config: Any, source: DataSource) -> Any:
    from engine.backtest import recorded_source, synthetic_source

    if source.synthetic_seed is not None:
        if source.events is None:
            raise SweepError("--synthetic needs --events N")
        return synthetic_source(config, seed=source.synthetic_seed, events=source.events)
    assert source.path is not None
    return recorded_source([source.path])


def slice_market_data(md: Any, start: int, stop: int) -> Any:
    """Messages ``[start, stop)`` of a ``MarketData``, each symbol's book as of ``start`` prepended as a
    snapshot (so a slice replays from the book the whole run would have had there)."""
    from decimal import Decimal

    from engine.backtest.sources import DEPTH, SNAPSHOT, MarketData

    books: dict[int, tuple[dict[str, str], dict[str, str]]] = {}
    for _t, kind, sym, payload in md.messages[:start]:
        if kind not in (DEPTH, SNAPSHOT):
            continue
        bids, asks = books.setdefault(sym, ({}, {}))
        if kind == SNAPSHOT:
            bids.clear()
            asks.clear()
        for side, levels in ((bids, payload[0]), (asks, payload[1])):
            for px, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(px, None)
                else:
                    side[px] = qty
    body = md.messages[start:stop]
    t0 = body[0][0]
    head = [
        (
            t0,
            SNAPSHOT,
            sym,
            (
                sorted(bids.items(), key=lambda lv: Decimal(lv[0]), reverse=True),
                sorted(asks.items(), key=lambda lv: Decimal(lv[0])),
            ),
        )
        for sym, (bids, asks) in sorted(books.items())
        if start > 0
    ]
    return MarketData(
        symbols=md.symbols,
        specs=md.specs,
        messages=head + body,
        description=f"{md.description} [{start}:{stop}]",
        gaps=md.gaps,
        start_prices=md.start_prices,
    )


#: Summary fields that describe the run rather than score it.
_NOT_METRICS = frozenset({"events_per_s", "seed", "start_ms", "end_ms", "equity_interval_ms"})


@dataclass(frozen=True, kw_only=True)
class BacktestObjective:
    """``engine.backtest.run_backtest`` of the config with ``params`` on messages ``[start, stop)`` of the
    data (the walk-forward unit is a data message: one depth update, snapshot or trade); every numeric
    summary field is a metric."""

    config_path: str

    def __call__(self, params: Mapping[str, Any], data: DataSlice, seed: int) -> dict[str, float]:
        import dataclasses
        from types import MappingProxyType

        from engine.backtest import run_backtest
        from engine.config import StrategySection, load_config

        cfg = load_config(self.config_path)
        cfg = dataclasses.replace(
            cfg, strategy=StrategySection(name=cfg.strategy.name, params=MappingProxyType(dict(params)))
        )
        md = slice_market_data(_market_data(cfg, data.source), data.start, data.stop)
        summary = run_backtest(cfg, md, out_dir=None, seed=seed)
        return {
            k: float(v)
            for k, v in summary.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in _NOT_METRICS
        }


def prepare_backtest(*, config_path: str, source: DataSource) -> Prepared:
    """The config's single ``[strategy]`` swept through the backtester."""
    from engine.config import load_config
    from engine.strategies import StrategyParamError, UnknownStrategy, create

    cfg = load_config(config_path)
    if cfg.strategies:
        raise SweepError("sweeps take the single-strategy [strategy] form, not [[strategies]]")
    md = _market_data(cfg, source)
    symbols = [(ex.name, sym) for ex in cfg.exchanges for sym in ex.symbols]

    def validate(params: Mapping[str, Any]) -> str | None:
        try:
            create(cfg.strategy.name, params=params, symbols=symbols)
        except StrategyParamError as exc:
            return f"{exc.param}: {exc.reason}"
        except UnknownStrategy as exc:
            return str(exc)
        return None

    return Prepared(
        objective=BacktestObjective(config_path=str(cfg.path)),
        base_params=dict(cfg.strategy.params),
        n_events=len(md.messages),
        validate=validate,
    )
