"""Market data for the backtester: the seeded venue generator or recorded streams, normalised into
messages (both paths) and decoded into one integer array (the fast path).

A :class:`MarketData` holds, in time order, messages ``(t_ms, kind, sym, payload)``:

- ``DEPTH``: ``payload = (bids, asks)``, absolute sizes as the venue's decimal strings (``"0"`` deletes);
- ``SNAPSHOT``: the same shape; replaces the symbol's book;
- ``TRADE``: ``payload = (price_ticks, lots, aggressor_is_buy)``.

Messages with the same ``t_ms`` form one *market step*: the unit in which the local venue's matching
engine moves. :meth:`MarketData.decode` turns the messages into a numpy structured array of one row per
level change or trade (``EVENT_DTYPE``): the fast path's input. An *event* (what ``events`` and
``events_per_s`` count) is one such row: a book level change or a trade.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from engine.venue.generator import MarketGenerator
from engine.venue.model import InstrumentSpec

__all__ = [
    "DEPTH",
    "EVENT_DTYPE",
    "K_ASK",
    "K_BID",
    "K_SNAP_ASK",
    "K_SNAP_BID",
    "K_TRADE_BUY",
    "K_TRADE_SELL",
    "SNAPSHOT",
    "TRADE",
    "DataError",
    "MarketData",
    "Units",
    "recorded",
    "synthetic",
]

log = logging.getLogger(__name__)

DEPTH = 0
SNAPSHOT = 1
TRADE = 2

#: Row kinds of the decoded array.
K_BID = 0
K_ASK = 1
K_TRADE_BUY = 2
K_TRADE_SELL = 3
K_SNAP_BID = 4
K_SNAP_ASK = 5

#: One row per level change or trade; ``end`` is 1 on the last row of a message.
EVENT_DTYPE = np.dtype(
    [("t", "<i8"), ("px", "<i8"), ("qty", "<i8"), ("sym", "<i4"), ("kind", "i1"), ("end", "i1")]
)

Levels = list[tuple[str, str]]
Message = tuple[int, int, int, Any]


class DataError(ValueError):
    """The market data cannot be replayed (off-grid prices, unknown symbols, time going backwards...)."""


class Units:
    """Exact decimal string -> integer steps of ``step`` (ticks or lots); no Decimal, no float."""

    __slots__ = ("_cache", "_mantissa", "_places", "step")

    def __init__(self, step: Decimal) -> None:
        exponent = step.as_tuple().exponent
        assert isinstance(exponent, int)
        self.step = step
        self._places = max(0, -exponent)
        self._mantissa = int(step.scaleb(self._places))
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        got = self._cache.get(text)
        if got is not None:
            return got
        whole, _, frac = text.partition(".")
        if frac[self._places :].strip("0"):
            raise DataError(f"{text!r} is off the grid of {self.step}")
        try:
            units = int(whole + frac[: self._places].ljust(self._places, "0")) if self._places else int(whole)
        except ValueError:
            raise DataError(f"{text!r} is not a plain decimal number") from None
        steps, rest = divmod(units, self._mantissa)
        if rest or units < 0:
            raise DataError(f"{text!r} is off the grid of {self.step} (or negative)")
        if len(self._cache) < 1_000_000:
            self._cache[text] = steps
        return steps


@dataclass
class MarketData:
    """Normalised messages of one or more symbols of one venue (see the module docstring)."""

    symbols: tuple[str, ...]
    specs: dict[str, InstrumentSpec]
    messages: list[Message]
    description: str
    gaps: int = 0
    start_prices: dict[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        last = None
        for m in self.messages:
            if last is not None and m[0] < last:
                raise DataError(f"message times go backwards: {m[0]} after {last}")
            last = m[0]
        if not self.messages:
            raise DataError("the data holds no messages")

    @property
    def events(self) -> int:
        """Level changes and trades: what the ``events`` figure counts."""
        n = 0
        for _, kind, _, payload in self.messages:
            n += 1 if kind == TRADE else len(payload[0]) + len(payload[1])
        return n

    def step_bounds(self) -> list[int]:
        """Index of the first message of each market step, plus ``len(messages)`` at the end."""
        out: list[int] = []
        last = None
        for i, m in enumerate(self.messages):
            if m[0] != last:
                out.append(i)
                last = m[0]
        out.append(len(self.messages))
        return out

    def decode(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The rows (``EVENT_DTYPE``) and, per market step, the index of its first row (plus the total)."""
        units = [(Units(self.specs[s].tick_size), Units(self.specs[s].lot_size)) for s in self.symbols]
        t_l: list[int] = []
        px_l: list[int] = []
        qty_l: list[int] = []
        sym_l: list[int] = []
        kind_l: list[int] = []
        end_l: list[int] = []
        step_rows: list[int] = []
        last = None
        for t, kind, sym, payload in self.messages:
            if t != last:
                step_rows.append(len(t_l))
                last = t
            if kind == TRADE:
                px, lots, is_buy = payload
                t_l.append(t)
                px_l.append(px)
                qty_l.append(lots)
                sym_l.append(sym)
                kind_l.append(K_TRADE_BUY if is_buy else K_TRADE_SELL)
                end_l.append(1)
                continue
            price, size = units[sym]
            kb, ka = (K_SNAP_BID, K_SNAP_ASK) if kind == SNAPSHOT else (K_BID, K_ASK)
            for k, levels in ((kb, payload[0]), (ka, payload[1])):
                for p, q in levels:
                    t_l.append(t)
                    px_l.append(price(p))
                    qty_l.append(size(q))
                    sym_l.append(sym)
                    kind_l.append(k)
                    end_l.append(0)
            if end_l:
                end_l[-1] = 1
        step_rows.append(len(t_l))
        rows = np.empty(len(t_l), dtype=EVENT_DTYPE)
        rows["t"] = t_l
        rows["px"] = px_l
        rows["qty"] = qty_l
        rows["sym"] = sym_l
        rows["kind"] = kind_l
        rows["end"] = end_l
        return rows, np.asarray(step_rows, dtype=np.int64)


def synthetic(
    specs: Sequence[InstrumentSpec],
    *,
    seed: int,
    events: int,
    start_prices: dict[str, Decimal],
    step_ms: int = 100,
    start_ms: int = 1_700_000_000_000,
    levels: int = 100,
) -> MarketData:
    """The local venue's seeded generator (one per symbol, seeds ``seed * 1000 + i`` as the venue does):
    a snapshot of each book at ``start_ms``, then market steps every ``step_ms`` until at least
    ``events`` level changes and trades (the snapshots included)."""
    if events < 1:
        raise DataError(f"events must be >= 1, got {events}")
    if seed < 0:
        raise DataError(f"seed must be >= 0, got {seed}")
    if not specs:
        raise DataError("at least one symbol is needed")
    start_ms -= start_ms % step_ms
    gens: list[MarketGenerator] = []
    messages: list[Message] = []
    count = 0
    for i, spec in enumerate(specs):
        gen = MarketGenerator(
            symbol=spec.symbol,
            tick_size=str(spec.tick_size),
            lot_size=str(spec.lot_size),
            start_price=str(start_prices[spec.symbol]),
            seed=seed * 1000 + i,
            levels=levels,
            start_ms=start_ms,
        )
        gens.append(gen)
        snap = gen.snapshot()
        messages.append((start_ms, SNAPSHOT, i, (snap["bids"], snap["asks"])))
        count += len(snap["bids"]) + len(snap["asks"])
    price_units = [Units(s.tick_size) for s in specs]
    qty_units = [Units(s.lot_size) for s in specs]
    t = start_ms
    while count < events:
        t += step_ms
        for i, gen in enumerate(gens):
            for ev in gen.step(t):
                if ev.get("e") == "aggTrade":
                    px = price_units[i](ev["p"])
                    lots = qty_units[i](ev["q"])
                    messages.append((t, TRADE, i, (px, lots, not ev["m"])))
                    count += 1
                elif ev["b"] or ev["a"]:
                    messages.append((t, DEPTH, i, (ev["b"], ev["a"])))
                    count += len(ev["b"]) + len(ev["a"])
    return MarketData(
        symbols=tuple(s.symbol for s in specs),
        specs={s.symbol: s for s in specs},
        messages=messages,
        description=f"synthetic seed={seed} events={events} step_ms={step_ms}",
        start_prices=dict(start_prices),
    )


def recorded(paths: Iterable[Path | str], specs: dict[str, InstrumentSpec]) -> MarketData:
    """Recorded Binance USD-M streams (``engine record``): REST snapshots, ``depthUpdate`` and
    ``aggTrade`` frames. Depth before a symbol's first snapshot is skipped; a broken ``pu``/``u`` chain or
    a recorder ``gap`` counts as a gap and the book waits for the next snapshot. Mark frames are not used
    (the simulated mark is the book's mid)."""
    from engine.recording import read_events

    files = [Path(p) for p in paths]
    for p in files:
        if not p.exists():
            raise DataError(f"--data {p}: no such file or directory")
    messages: list[Message] = []
    index: dict[str, int] = {}
    last_u: dict[str, int | None] = {}
    gaps = 0
    units: dict[str, tuple[Units, Units]] = {}
    for ev in read_events(files):
        sym = ev.symbol
        if ev.kind == "gap":
            gaps += 1
            last_u[sym] = None
            continue
        if ev.venue != "binance":
            raise DataError(f"recorded venue {ev.venue!r} is not supported by the backtester (binance only)")
        if sym not in specs:
            raise DataError(f"recorded symbol {sym!r} has no instrument spec")
        m: dict[str, Any] = ev.message.get("data", ev.message)
        if sym not in index:
            index[sym] = len(index)
            units[sym] = (Units(specs[sym].tick_size), Units(specs[sym].lot_size))
            last_u[sym] = None
        i = index[sym]
        if ev.kind == "snapshot":
            messages.append(
                (ev.t_ms, SNAPSHOT, i, ([tuple(x) for x in m["bids"]], [tuple(x) for x in m["asks"]]))
            )
            last_u[sym] = int(m["lastUpdateId"])
        elif ev.kind == "depth":
            prev = last_u[sym]
            if prev is None:
                continue
            if int(m["u"]) <= prev:
                continue
            if int(m.get("pu", prev)) != prev and not int(m["U"]) <= prev + 1 <= int(m["u"]):
                gaps += 1
                log.warning("backtest_data_gap symbol=%s expected=%s got=%s", sym, prev, m.get("pu"))
                last_u[sym] = None
                continue
            last_u[sym] = int(m["u"])
            if m["b"] or m["a"]:
                messages.append((ev.t_ms, DEPTH, i, ([tuple(x) for x in m["b"]], [tuple(x) for x in m["a"]])))
        elif ev.kind == "trade":
            pu, qu = units[sym]
            messages.append((ev.t_ms, TRADE, i, (pu(m["p"]), qu(m["q"]), not m["m"])))
    symbols = tuple(sorted(index, key=index.__getitem__))
    return MarketData(
        symbols=symbols,
        specs={s: specs[s] for s in symbols},
        messages=messages,
        description=f"recorded {', '.join(str(p) for p in files)}",
        gaps=gaps,
    )
