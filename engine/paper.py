"""Paper mode: the embedded local venue, run in-process on the engine's own event loop.

:class:`PaperVenue` starts a :class:`~engine.venue.server.VenueServer` on a free loopback port with one
paper account (a random key and secret, ``usdt`` of USDT) and gives the engine what
:func:`engine.config.to_adapter_settings` needs: per venue, the REST and WebSocket URLs and the paper
account's key and secret (:class:`~engine.config.VenueEndpoints`). Both venues (Binance USD-M and Bybit
v5 linear) are served on the same port.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from types import TracebackType

from engine.config import VenueEndpoints
from engine.types import Venue
from engine.venue.server import AccountSpec, VenueServer

__all__ = ["PAPER_USDT", "PaperVenue"]

#: The paper account's starting balance.
PAPER_USDT = Decimal("10000")


class PaperVenue:
    """``async with PaperVenue() as paper: paper.endpoints()`` -> URLs and keys per venue."""

    def __init__(
        self,
        *,
        seed: int = 7,
        tick_ms: int = 50,
        usdt: Decimal = PAPER_USDT,
        server: VenueServer | None = None,
    ) -> None:
        self.account = AccountSpec(key=secrets.token_hex(16), secret=secrets.token_hex(32), usdt=usdt)
        self.server = server or VenueServer(host="127.0.0.1", port=0, seed=seed, tick_ms=tick_ms)
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        await self.server.start()
        self.server.add_account(self.account)
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.server.stop()

    async def __aenter__(self) -> PaperVenue:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def endpoints(self) -> dict[Venue, VenueEndpoints]:
        """The embedded venue's URLs and the paper account's key and secret, per venue."""
        s = self.server
        key, secret = self.account.key, self.account.secret
        return {
            Venue.BINANCE: VenueEndpoints(
                rest_url=s.base_url,
                ws_public_url=s.ws_url,
                ws_private_url=s.ws_url,
                api_key=key,
                api_secret=secret,
            ),
            Venue.BYBIT: VenueEndpoints(
                rest_url=s.base_url,
                ws_public_url=s.ws_url + "/v5/public/linear",
                ws_private_url=s.ws_url + "/v5/private",
                api_key=key,
                api_secret=secret,
            ),
        }
