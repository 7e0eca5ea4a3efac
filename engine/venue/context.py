"""What every wire front-end of the local venue receives: the exchange core, the fault plan, the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.venue.model import ExchangeCore, FaultPlan

__all__ = ["VenueContext"]


@dataclass(kw_only=True)
class VenueContext:
    """Shared by the Binance and Bybit front-ends and the control API, on the venue's one event loop.

    ``counters`` holds named counts the front-ends keep (requests, rejects, dropped slow consumers,
    malformed requests...) and the control API reports.
    """

    core: ExchangeCore
    faults: FaultPlan = field(default_factory=FaultPlan)
    counters: dict[str, int] = field(default_factory=dict)

    def now_ms(self) -> int:
        """The venue's clock as clients see it (the core's clock plus any injected clock shift)."""
        return self.core.now_ms() + self.faults.clock_offset_ms

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
