"""Print the kernel-versus-twin table from a pytest-benchmark JSON file, and check the CI bars.

    python -m benchmarks.report bench-results/bench.json [--check] [--markdown]

For each case: the kernel's median per operation, the twin's, their ratio, each peer's ratio, and the
case's further targets (met or not). With ``--check`` the exit status is 1 when a kernel is slower than
its ``min_ratio`` bar against its twin.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "load_cases", "main", "render"]


@dataclass
class Case:
    name: str
    kernel_ns: float | None = None
    twin_ns: float | None = None
    peers_ns: dict[str, float] = field(default_factory=dict)
    min_ratio: float | None = None
    targets: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.kernel_ns is None or self.twin_ns is None:
            return None
        return self.twin_ns / self.kernel_ns

    def peer_ratio(self, peer: str) -> float | None:
        if self.kernel_ns is None or peer not in self.peers_ns:
            return None
        return self.peers_ns[peer] / self.kernel_ns

    def target_results(self) -> list[tuple[str, float, float | None, bool]]:
        """(target name, wanted, measured, met) for each further target."""
        out: list[tuple[str, float, float | None, bool]] = []
        for name, wanted in sorted(self.targets.items()):
            if name == "max_ns":
                got = self.kernel_ns
                out.append((name, wanted, got, got is not None and got <= wanted))
            else:
                got = self.ratio if name == "twin" else self.peer_ratio(name)
                out.append((f"x vs {name}", wanted, got, got is not None and got >= wanted))
        return out


def load_cases(path: Path) -> tuple[dict[str, Case], dict[str, object]]:
    data = json.loads(path.read_text())
    cases: dict[str, Case] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "case" not in info:
            continue
        case = cases.setdefault(info["case"], Case(name=info["case"]))
        per_op_ns = bench["stats"]["median"] / info["ops"] * 1e9
        role = info["role"]
        if role == "kernel":
            case.kernel_ns = per_op_ns
            case.min_ratio = info.get("min_ratio")
            case.targets = dict(info.get("targets", {}))
        elif role == "twin":
            case.twin_ns = per_op_ns
        else:
            case.peers_ns[role.removeprefix("peer:")] = per_op_ns
    return cases, data.get("machine_info", {})


def _fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1000:.3f} us" if ns >= 1000 else f"{ns:.1f} ns"


def _fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def render(cases: dict[str, Case], *, markdown: bool) -> str:
    header = [
        "case",
        "kernel (median/op)",
        "twin (median/op)",
        "twin/kernel",
        "bar",
        "peers (peer/kernel)",
        "targets",
    ]
    rows: list[list[str]] = []
    for case in sorted(cases.values(), key=lambda c: c.name):
        peers = ", ".join(
            f"{name} {_fmt_ns(ns)} ({_fmt_x(case.peer_ratio(name))})"
            for name, ns in sorted(case.peers_ns.items())
        )
        targets = ", ".join(
            f"{name} {wanted:g}{' ns' if name == 'max_ns' else 'x'}: "
            f"{(_fmt_ns(got) if name == 'max_ns' else _fmt_x(got))} {'met' if met else 'MISSED'}"
            for name, wanted, got, met in case.target_results()
        )
        bar = "-" if case.min_ratio is None else f">= {case.min_ratio:g}x"
        rows.append(
            [
                case.name,
                _fmt_ns(case.kernel_ns),
                _fmt_ns(case.twin_ns),
                _fmt_x(case.ratio),
                bar,
                peers or "-",
                targets or "-",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
    )


def failures(cases: dict[str, Case]) -> list[str]:
    out: list[str] = []
    for case in cases.values():
        if case.min_ratio is None:
            continue
        if case.ratio is None:
            out.append(f"{case.name}: kernel or twin row missing")
        elif case.ratio < case.min_ratio:
            out.append(
                f"{case.name}: kernel only {case.ratio:.2f}x faster than its twin (bar {case.min_ratio:g}x)"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when a kernel misses its bar")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    cases, machine = load_cases(args.json)
    if not cases:
        print("no benchmark cases found", file=sys.stderr)
        return 1
    cpu = machine.get("cpu", {})
    brand = cpu.get("brand_raw", "?") if isinstance(cpu, dict) else "?"
    print(f"machine: {brand}, {platform.python_implementation()} {machine.get('python_version', '?')}")
    print(render(cases, markdown=args.markdown))
    bad = failures(cases)
    if args.check:
        for line in bad:
            print(f"BENCH FAIL {line}", file=sys.stderr)
        print(f"benchmark bars: {len(cases) - len(bad)} passed, {len(bad)} failed")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
