"""Performance metrics of a backtest from its equity curve and its trades.

Money is ``Decimal`` and reported as decimal strings; ratios are floats rounded to 10 decimals (the same
inputs give the same bytes). Returns are per equity sample (``equity_interval_ms`` apart); Sharpe and
Sortino are annualised with ``sqrt(samples per year)`` (365 days) and a zero risk-free rate. CAGR (and so
Calmar) is null when the data spans less than a day (annualising minutes of data is meaningless).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from engine.backtest.runner import ReplayResult

__all__ = ["compute"]

_YEAR_MS = 365 * 86_400_000
_DAY_MS = 86_400_000


def _r(x: float | None) -> float | None:
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return round(x, 10)


def _drawdown(equity: Sequence[tuple[int, Decimal]]) -> tuple[float, int]:
    peak = equity[0][1]
    peak_t = equity[0][0]
    worst = 0.0
    longest = 0
    for t, e in equity:
        if e >= peak:
            peak, peak_t = e, t
        else:
            longest = max(longest, t - peak_t)
            if peak > 0:
                worst = max(worst, float((peak - e) / peak))
    return worst, longest


def compute(res: ReplayResult, *, equity_interval_ms: int) -> dict[str, Any]:
    initial, final = res.initial_equity, res.final_equity
    eq = res.equity if res.equity else [(res.start_ms, initial), (res.end_ms, final)]
    rets = [float(b[1] / a[1] - 1) for a, b in itertools.pairwise(eq) if a[1] > 0]
    per_year = _YEAR_MS / equity_interval_ms
    sharpe = sortino = None
    if len(rets) > 1:
        mean = sum(rets) / len(rets)
        var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
        if var > 0:
            sharpe = mean / math.sqrt(var) * math.sqrt(per_year)
        down = [min(0.0, r) ** 2 for r in rets]
        dd = math.sqrt(sum(down) / len(rets))
        if dd > 0:
            sortino = mean / dd * math.sqrt(per_year)
    mdd, mdd_ms = _drawdown(eq)
    span = res.end_ms - res.start_ms
    cagr = None
    if span >= _DAY_MS and initial > 0 and final > 0:
        expo = math.log(float(final / initial)) * _YEAR_MS / span
        if expo < 700:
            cagr = math.exp(expo) - 1
    calmar = cagr / mdd if cagr is not None and mdd > 0 else None
    pnls = [t.pnl for t in res.trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_win = sum(wins, Decimal(0))
    gross_loss = -sum(losses, Decimal(0))
    exposure_ms = 0
    intervals = sorted((t.entry_time, t.exit_time) for t in res.trades)
    cur_s = cur_e = None
    for s, e in intervals:
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                exposure_ms += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        exposure_ms += cur_e - cur_s
    fees = sum((t.fees for t in res.trades), Decimal(0))
    funding = sum((t.funding for t in res.trades), Decimal(0))
    return {
        "initial_equity": str(initial),
        "final_equity": str(final),
        "net_pnl": str(final - initial),
        "total_return": _r(float(final / initial - 1)),
        "cagr": _r(cagr),
        "sharpe": _r(sharpe),
        "sortino": _r(sortino),
        "calmar": _r(calmar),
        "max_drawdown": _r(mdd),
        "max_drawdown_duration_ms": mdd_ms,
        "win_rate": _r(len(wins) / len(pnls)) if pnls else None,
        "profit_factor": _r(float(gross_win / gross_loss)) if gross_loss > 0 else None,
        "expectancy": str((sum(pnls, Decimal(0)) / len(pnls)).quantize(Decimal("0.00000001")))
        if pnls
        else "0",
        "exposure": _r(exposure_ms / span) if span > 0 else 0.0,
        "trades": len(res.trades),
        "fees": str(fees),
        "funding": str(funding),
        "events": res.events,
        "steps": res.steps,
        "orders": res.orders,
        "fills": res.fills,
        "denied": res.denied,
        "rejected": res.rejected,
        "gaps": res.gaps,
        "start_ms": res.start_ms,
        "end_ms": res.end_ms,
        "equity_interval_ms": equity_interval_ms,
        "events_per_s": _r(res.events / res.elapsed_s) if res.elapsed_s > 0 else None,
    }
