"""The report directory: ``summary.json``, ``trades.csv``, ``equity.csv``, ``equity.png``, ``report.html``.

``summary.json``: keys sorted, money as decimal strings (exact), ratios as floats (or null when undefined,
e.g. ``profit_factor`` with no losing trade). ``trades.csv``: one round trip per row; ``pnl`` is net of
its fees and funding; a position open at the end is closed at the last trade price (``closed_at_end``).
Times are epoch milliseconds.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from engine.backtest.runner import ReplayResult

__all__ = ["TRADE_FIELDS", "write_report"]

TRADE_FIELDS = (
    "symbol", "side", "qty", "entry_time", "exit_time", "entry_price", "exit_price", "fees", "funding",
    "pnl", "closed_at_end",
)  # fmt: skip


def write_report(out_dir: Path, res: ReplayResult, summary: dict[str, Any], *, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    with (out_dir / "trades.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(TRADE_FIELDS)
        for t in res.trades:
            w.writerow(
                [t.symbol, t.side.value, t.qty, t.entry_time, t.exit_time, t.entry_price, t.exit_price,
                 t.fees, t.funding, t.pnl, int(t.closed_at_end)]
            )  # fmt: skip
    with (out_dir / "equity.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("time", "equity"))
        for t_ms, e in res.equity:
            w.writerow((t_ms, e))
    _plot(out_dir / "equity.png", res)
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
        for k, v in sorted(summary.items())
    )
    (out_dir / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Backtest report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>Backtest report</h1><p>{html.escape(title)}</p>"
        f"<img src='equity.png' alt='equity and drawdown'><h2>Summary</h2><table>{rows}</table>"
        f"<p>{len(res.trades)} trades: see <a href='trades.csv'>trades.csv</a>; equity curve: "
        "<a href='equity.csv'>equity.csv</a>.</p></body></html>\n"
    )


def _plot(path: Path, res: ReplayResult) -> None:
    ts = [(t - res.start_ms) / 60_000 for t, _ in res.equity]
    eq = [float(e) for _, e in res.equity]
    peak = float("-inf")
    dd = []
    for e in eq:
        peak = max(peak, e)
        dd.append((e / peak - 1) * 100 if peak > 0 else 0.0)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a1.plot(ts, eq, color="tab:blue")
    a1.set_ylabel("equity (USDT)")
    a1.set_title("Equity")
    a2.fill_between(ts, dd, 0, color="tab:red", alpha=0.4)
    a2.set_ylabel("drawdown (%)")
    a2.set_xlabel("minutes from start")
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
