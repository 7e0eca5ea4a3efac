"""Soak run: ``engine run`` (live mode, Binance and Bybit on a loopback venue process) trading for a long
time against an accelerated market, sampled every second.

The venue's market steps every ``100 / speed`` ms instead of 100 ms (``--speed 100``: one market second
per 10 ms; the venue's clock is not moved, so signed requests stay valid) and funding comes every
``8 h / speed``. 24 h of trading at 100x is 864 s: ``python -m tools.soak --duration-s 864``.

Each second: the engine's RSS (``/proc/PID/status`` VmRSS), threads and open fds, and from its admin
socket ``metrics`` (queue sizes, in-flight orders, events/s, per-adapter counters) and ``status``
(streams connected). At the end: ``DIR/soak.json`` (summary and verdict), ``DIR/samples.csv`` and
``DIR/soak.png`` (RSS and event rate over time). Exit 0 when the verdict passes:

- RSS growth after warm-up (median of the last 10% of samples over the median of the first 10% after
  warm-up) under ``--max-rss-growth`` (5%);
- no growth in queue sizes (the last third's 90th percentile at most the first post-warm-up third's plus
  a small slack: a sampled queue depth spikes for a second under load, a backlog lifts the whole
  distribution), nor in in-flight orders, asyncio tasks (the engine's own and the loop's, from
  ``metrics`` ``tasks``), threads or open fds (their maximum, the same way);
- every stream connected at the end, the engine alive and answering.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.types import Venue  # noqa: E402
from tests.chaos.support import EngineProc, VenueProc, admin, control, metrics_of  # noqa: E402

__all__ = ["Sample", "SoakResult", "main", "run_soak"]


@dataclass
class Sample:
    t_s: float
    rss_kb: int
    threads: int
    fds: int
    events_per_s: float
    market_events: int  # book + trade + mark events the engine handled, cumulative
    user_queue: int
    market_queue: int
    inflight: int
    engine_tasks: int  # the engine's own tasks (metrics ``tasks.engine``)
    loop_tasks: int  # every asyncio task on the engine's loop (metrics ``tasks.loop``)
    connected: bool


@dataclass
class SoakResult:
    duration_s: float
    speed: int
    market_hours: float
    samples: int
    warmup_s: float
    rss_start_kb: int
    rss_end_kb: int
    rss_growth_pct: float
    rss_max_kb: int
    events_per_s_mean: float
    book_updates: int
    acceleration_achieved: float  # depth updates/s over the real-time market's 10/s per book
    orders_sent: int
    fills: int
    reconnects: int
    max_queues: dict[str, int]
    growth: dict[str, list[int]]  # name -> [first third max, last third max]
    disconnected_at_end: list[str]
    failures: list[str] = field(default_factory=list)
    venue_counters: dict[str, int] = field(default_factory=dict)  # slow-consumer drops, faults

    @property
    def ok(self) -> bool:
        return not self.failures


def _proc_counts(pid: int) -> tuple[int, int, int]:
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))


async def _sample(engine: EngineProc, t0: float) -> tuple[Sample, dict[str, Any], dict[str, Any]]:
    rss, threads, fds = _proc_counts(engine.pid)
    m = await metrics_of(engine)
    st = await admin(engine.sock, "status")
    c = m["counters"]
    q = m["queues"]
    return (
        Sample(
            t_s=round(time.monotonic() - t0, 2),
            rss_kb=rss,
            threads=threads,
            fds=fds,
            events_per_s=float(m["events_per_s"]),
            market_events=int(c.get("md_book", 0) + c.get("md_trade", 0) + c.get("md_mark", 0)),
            user_queue=int(q["user"]),
            market_queue=int(q["market"]),
            inflight=int(q["inflight_orders"]),
            engine_tasks=int(m["tasks"]["engine"]),
            loop_tasks=int(m["tasks"]["loop"]),
            connected=all(v["connected"] for v in st["venues"].values()),
        ),
        m,
        st,
    )


async def run_soak(
    *,
    duration_s: float,
    speed: int,
    out: Path,
    venues: tuple[Venue, ...] = (Venue.BINANCE,),
    warmup_frac: float = 0.3,
    max_rss_growth_pct: float = 5.0,
) -> SoakResult:
    """Run the soak for ``duration_s`` wall seconds at ``speed`` x market speed; write the outputs."""
    if not 1 <= speed <= 100 or 100 % speed:
        raise ValueError("speed must divide 100 (the market step is 100/speed ms)")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    venue = VenueProc(work, step_ms=100 // speed, tick_ms=20, funding_s=max(1, 28_800 // speed))
    await venue.start()
    engine = EngineProc(
        work,
        venue.port,
        venues=venues,
        stale_after_s=5.0,
        params={"every_ms": 250, "qty": "0.005", "max_resting": 6},
    )
    samples: list[Sample] = []
    last_m: dict[str, Any] = {}
    last_st: dict[str, Any] = {}
    try:
        await engine.start()
        t0 = time.monotonic()
        n = int(duration_s)
        for i in range(n):  # one sample a second, bounded by the duration
            if not engine.alive():
                break
            s, last_m, last_st = await _sample(engine, t0)
            samples.append(s)
            await asyncio.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
        alive = engine.alive()
        venue_counters = (await control(venue.port, "state"))["counters"]
    finally:
        rc = await engine.stop()
        venue.stop()
    result = _verdict(samples, last_m, last_st, duration_s, speed, warmup_frac, max_rss_growth_pct)
    result.venue_counters = {k: v for k, v in venue_counters.items() if "slow" in k or "fault" in k}
    if not alive:
        result.failures.append(f"the engine died (exit {rc}): {engine.tail()[-800:]}")
    _write(out, samples, result)
    return result


_DEPTHS = frozenset({"user_queue", "market_queue"})  # in-flight orders are a count: a stuck one is a leak


def _p90(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def _verdict(
    samples: list[Sample],
    m: dict[str, Any],
    st: dict[str, Any],
    duration_s: float,
    speed: int,
    warmup_frac: float,
    max_growth: float,
) -> SoakResult:
    failures: list[str] = []
    if len(samples) < 10:
        raise RuntimeError(f"only {len(samples)} samples: the soak did not run")
    post = [s for s in samples if s.t_s >= warmup_frac * samples[-1].t_s]
    k = max(3, len(post) // 10)
    rss_start = int(statistics.median(s.rss_kb for s in post[:k]))
    rss_end = int(statistics.median(s.rss_kb for s in post[-k:]))
    growth_pct = 100.0 * (rss_end - rss_start) / rss_start
    if growth_pct >= max_growth:
        failures.append(f"RSS grew {growth_pct:.2f}% after warm-up (limit {max_growth}%)")
    third = max(1, len(post) // 3)
    growth: dict[str, list[int]] = {}
    slack = {
        "user_queue": 64,
        "market_queue": 64,
        "inflight": 8,
        "engine_tasks": 8,
        "loop_tasks": 8,
        "threads": 2,
        "fds": 8,
    }
    for name, allow in slack.items():
        # queue depths are sampled instants of a queue that drains in bursts: a momentary spike (a busy
        # second on a shared machine) is not growth, a backlog that builds up lifts the 90th percentile;
        # counts of tasks, threads and fds must not rise at all beyond the slack: their maximum
        stat, label = (_p90, "p90") if name in _DEPTHS else (max, "max")
        first = stat([int(getattr(s, name)) for s in post[:third]])
        last = stat([int(getattr(s, name)) for s in post[-third:]])
        growth[name] = [first, last]
        if last > first + allow:
            failures.append(f"{name} grew: {label} {first} early, {last} late (slack {allow})")
    disconnected = [
        f"{v}:{stream}"
        for v, info in st.get("venues", {}).items()
        for stream, status in info.get("streams", {}).items()
        if status != "connected"
    ]
    if disconnected or not samples[-1].connected:
        failures.append(f"streams not connected at the end: {disconnected}")
    adapters = m.get("adapters", {})
    book_updates = sum(int(a.get("book_updates", 0)) for a in adapters.values())
    books = sum(len(info.get("books", {})) for info in st.get("venues", {}).values()) or 1
    elapsed = samples[-1].t_s or 1.0
    achieved = book_updates / elapsed / (10.0 * books)
    c = m.get("counters", {})
    return SoakResult(
        duration_s=round(elapsed, 1),
        speed=speed,
        market_hours=round(elapsed * speed / 3600, 2),
        samples=len(samples),
        warmup_s=round(post[0].t_s, 1),
        rss_start_kb=rss_start,
        rss_end_kb=rss_end,
        rss_growth_pct=round(growth_pct, 3),
        rss_max_kb=max(s.rss_kb for s in samples),
        events_per_s_mean=round(statistics.fmean(s.events_per_s for s in post), 1),
        book_updates=book_updates,
        acceleration_achieved=round(achieved, 1),
        orders_sent=int(c.get("orders_sent", 0)),
        fills=int(c.get("fills", 0)),
        reconnects=int(c.get("reconnects", 0)),
        max_queues={
            "user": max(s.user_queue for s in samples),
            "market": max(s.market_queue for s in samples),
            "inflight": max(s.inflight for s in samples),
        },
        growth=growth,
        disconnected_at_end=disconnected,
        failures=failures,
    )


def _write(out: Path, samples: list[Sample], result: SoakResult) -> None:
    import orjson

    (out / "soak.json").write_bytes(
        orjson.dumps({**asdict(result), "ok": result.ok}, option=orjson.OPT_INDENT_2)
    )
    with open(out / "samples.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(asdict(samples[0])))
        w.writeheader()
        for s in samples:
            w.writerow(asdict(s))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s for s in samples]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax1.plot(t, [s.rss_kb / 1024 for s in samples], color="tab:blue")
    ax1.axvline(result.warmup_s, color="grey", linestyle="--", label="end of warm-up")
    ax1.set_ylabel("engine RSS (MiB)")
    ax1.set_title(
        f"soak {result.duration_s:.0f} s at {result.speed}x ({result.market_hours} market h): "
        f"RSS growth {result.rss_growth_pct:+.2f}% after warm-up"
    )
    ax1.legend()
    ax2.plot(t, [s.events_per_s for s in samples], color="tab:green")
    ax2.set_ylabel("engine events/s")
    ax2.set_xlabel("wall time (s)")
    fig.tight_layout()
    fig.savefig(out / "soak.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=float(os.environ.get("ENGINE_SOAK_S", "864")))
    p.add_argument("--speed", type=int, default=100, help="market speed-up, a divisor of 100 (default 100)")
    p.add_argument("--out", type=Path, default=Path("var/soak"), help="output directory (default var/soak)")
    p.add_argument(
        "--venues", default="binance", help="comma-separated venues the engine trades (default binance)"
    )
    p.add_argument("--max-rss-growth", type=float, default=5.0, help="percent (default 5)")
    a = p.parse_args(argv)
    result = asyncio.run(
        run_soak(
            duration_s=a.duration_s,
            speed=a.speed,
            out=a.out,
            venues=tuple(Venue(v.strip()) for v in a.venues.split(",")),
            max_rss_growth_pct=a.max_rss_growth,
        )
    )
    print(
        f"soak: {result.duration_s} s at {result.speed}x = {result.market_hours} market hours; "
        f"RSS {result.rss_start_kb} -> {result.rss_end_kb} kB ({result.rss_growth_pct:+.2f}%), "
        f"{result.events_per_s_mean} events/s, acceleration achieved {result.acceleration_achieved}x, "
        f"orders {result.orders_sent}, fills {result.fills}, reconnects {result.reconnects}, "
        f"queues max {result.max_queues}, growth {result.growth}, venue {result.venue_counters}; "
        f"outputs in {a.out}"
    )
    for f in result.failures:
        print(f"soak: FAIL {f}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
