"""Accounts of the local venue: USDT wallet, positions, leverage, margin modes and the ledger.

Every money amount is an exact ``Decimal`` quantized to :data:`MONEY` (1e-8 USDT) before it touches
the wallet, so the accounting identity

    wallet_balance == deposits + realized_pnl - fees_paid + funding + insurance

holds exactly after every operation (``insurance`` is what the venue's insurance fund paid in to
cover a liquidation loss beyond the account's margin). :meth:`Account.ledger` returns the terms and
:meth:`Account.check` asserts the identity.

Positions are kept with a *signed* quantity internally (a hedge-mode SHORT position is negative) and
a cost basis; the public :class:`~engine.venue.model.Position` carries the venue's sign convention
(signed for BOTH, positive for LONG and SHORT).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from engine.venue.model import AccountState, InstrumentSpec, MarginMode, Position, PositionSide

__all__ = ["MONEY", "Account", "Ledger", "PositionState", "money"]

MONEY = Decimal("0.00000001")
_ZERO = Decimal(0)
DEFAULT_LEVERAGE = 20


def money(x: Decimal) -> Decimal:
    """Round a money amount to 1e-8 USDT (half-even)."""
    return x.quantize(MONEY, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, kw_only=True)
class Ledger:
    """The accounting identity's terms for one account."""

    deposits: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    funding: Decimal
    insurance: Decimal
    wallet_balance: Decimal

    @property
    def expected_wallet(self) -> Decimal:
        return self.deposits + self.realized_pnl - self.fees_paid + self.funding + self.insurance

    @property
    def balanced(self) -> bool:
        return self.wallet_balance == self.expected_wallet


class PositionState:
    """One position: signed quantity, cost basis (sum of |qty| * entry price), realized PnL since
    it was opened, isolated margin allocated to it."""

    __slots__ = ("cost", "isolated_margin", "qty", "realized", "side", "symbol", "updated_ms")

    def __init__(self, symbol: str, side: PositionSide) -> None:
        self.symbol = symbol
        self.side = side
        self.qty = _ZERO  # signed: > 0 long, < 0 short
        self.cost = _ZERO
        self.realized = _ZERO
        self.isolated_margin = _ZERO
        self.updated_ms = 0

    @property
    def entry_price(self) -> Decimal:
        if not self.qty:
            return _ZERO
        return self.cost / abs(self.qty)

    def upnl(self, mark: Decimal) -> Decimal:
        if not self.qty:
            return _ZERO
        return money(mark * self.qty - (self.cost if self.qty > 0 else -self.cost))

    def apply(self, signed_qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """Apply a fill of ``signed_qty`` (buy > 0) at ``price``. Returns (realized pnl of the
        reducing part, quantized; the quantity that reduced the position, unsigned)."""
        q = self.qty
        if not q or (q > 0) == (signed_qty > 0):
            if not q:
                self.realized = _ZERO
            self.cost += abs(signed_qty) * price
            self.qty = q + signed_qty
            return _ZERO, _ZERO
        size = abs(q)
        closed = min(abs(signed_qty), size)
        released = self.cost if closed == size else self.cost * closed / size
        gross = price * closed - released
        pnl = money(gross if q > 0 else -gross)
        self.cost -= released
        self.qty = q + signed_qty
        if closed == size:
            self.cost = _ZERO
            rest = abs(signed_qty) - closed
            if rest:
                self.cost = rest * price
        self.realized += pnl
        return pnl, closed


class Account:
    """One venue account (identified by its API key)."""

    def __init__(self, *, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.deposits = _ZERO
        self.wallet = _ZERO
        self.realized = _ZERO
        self.fees = _ZERO
        self.funding = _ZERO
        self.insurance = _ZERO
        self.hedge_mode = False
        self.positions: dict[tuple[str, PositionSide], PositionState] = {}
        self.leverages: dict[str, int] = {}
        self.margin_modes: dict[str, MarginMode] = {}
        self.order_margin = _ZERO  # initial margin reserved by resting opening orders
        self.updated_ms = 0

    # ---- ledger ---------------------------------------------------------------------------------

    def deposit(self, amount: Decimal) -> None:
        amount = money(amount)
        self.deposits += amount
        self.wallet += amount

    def book_fill(self, pnl: Decimal, fee: Decimal) -> None:
        self.realized += pnl
        self.fees += fee
        self.wallet += pnl - fee

    def book_funding(self, amount: Decimal) -> None:
        self.funding += amount
        self.wallet += amount

    def book_insurance(self, amount: Decimal) -> None:
        self.insurance += amount
        self.wallet += amount

    def ledger(self) -> Ledger:
        return Ledger(
            deposits=self.deposits,
            realized_pnl=self.realized,
            fees_paid=self.fees,
            funding=self.funding,
            insurance=self.insurance,
            wallet_balance=self.wallet,
        )

    def check(self) -> None:
        led = self.ledger()
        assert led.balanced, (
            f"account {self.api_key}: wallet {led.wallet_balance} != deposits {led.deposits}"
            f" + realized {led.realized_pnl} - fees {led.fees_paid} + funding {led.funding}"
            f" + insurance {led.insurance} = {led.expected_wallet}"
        )
        assert self.order_margin >= 0, f"account {self.api_key}: negative order margin {self.order_margin}"

    # ---- settings -------------------------------------------------------------------------------

    def leverage(self, symbol: str, spec: InstrumentSpec) -> int:
        return self.leverages.get(symbol, min(DEFAULT_LEVERAGE, spec.max_leverage))

    def margin_mode(self, symbol: str) -> MarginMode:
        return self.margin_modes.get(symbol, MarginMode.CROSS)

    def position(self, symbol: str, side: PositionSide) -> PositionState:
        key = (symbol, side)
        pos = self.positions.get(key)
        if pos is None:
            pos = PositionState(symbol, side)
            self.positions[key] = pos
        return pos

    def has_position(self, symbol: str | None = None) -> bool:
        return any(p.qty for p in self.positions.values() if symbol is None or p.symbol == symbol)

    # ---- margin ---------------------------------------------------------------------------------

    def cross_terms(
        self, marks: Mapping[str, Decimal], specs: Mapping[str, InstrumentSpec]
    ) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(unrealized pnl all positions, cross upnl, cross initial margin, cross maint margin,
        isolated margin allocated)."""
        upnl = cross_upnl = cross_im = cross_mm = iso = _ZERO
        for pos in self.positions.values():
            if not pos.qty:
                continue
            mark = marks[pos.symbol]
            u = pos.upnl(mark)
            upnl += u
            if self.margin_mode(pos.symbol) is MarginMode.ISOLATED:
                iso += pos.isolated_margin
                continue
            spec = specs[pos.symbol]
            notional = abs(pos.qty) * mark
            cross_upnl += u
            cross_im += money(notional / self.leverage(pos.symbol, spec))
            cross_mm += money(notional * spec.maint_margin_rate)
        return upnl, cross_upnl, cross_im, cross_mm, iso

    def available(self, marks: Mapping[str, Decimal], specs: Mapping[str, InstrumentSpec]) -> Decimal:
        _, cross_upnl, cross_im, _, iso = self.cross_terms(marks, specs)
        return self.wallet + min(cross_upnl, _ZERO) - cross_im - self.order_margin - iso

    def state(
        self, marks: Mapping[str, Decimal], specs: Mapping[str, InstrumentSpec], now_ms: int
    ) -> AccountState:
        upnl, cross_upnl, cross_im, cross_mm, iso = self.cross_terms(marks, specs)
        iso_mm = _ZERO
        for pos in self.positions.values():
            if pos.qty and self.margin_mode(pos.symbol) is MarginMode.ISOLATED:
                iso_mm += money(abs(pos.qty) * marks[pos.symbol] * specs[pos.symbol].maint_margin_rate)
        available = self.wallet + min(cross_upnl, _ZERO) - cross_im - self.order_margin - iso
        return AccountState(
            account=self.api_key,
            asset="USDT",
            deposits=self.deposits,
            wallet_balance=self.wallet,
            unrealized_pnl=upnl,
            margin_balance=self.wallet + upnl,
            position_initial_margin=cross_im + iso,
            open_order_initial_margin=self.order_margin,
            maint_margin=cross_mm + iso_mm,
            available_balance=max(available, _ZERO),
            realized_pnl=self.realized,
            fees_paid=self.fees,
            funding=self.funding,
            hedge_mode=self.hedge_mode,
            updated_ms=self.updated_ms,
        )

    def liquidation_price(
        self, pos: PositionState, marks: Mapping[str, Decimal], specs: Mapping[str, InstrumentSpec]
    ) -> Decimal:
        """The mark price at which this position alone would breach maintenance margin (0: none)."""
        if not pos.qty:
            return _ZERO
        spec = specs[pos.symbol]
        mmr = spec.maint_margin_rate
        size = abs(pos.qty)
        if self.margin_mode(pos.symbol) is MarginMode.ISOLATED:
            equity = pos.isolated_margin
        else:
            _, cross_upnl, _, cross_mm, iso = self.cross_terms(marks, specs)
            mark = marks[pos.symbol]
            own_upnl = pos.upnl(mark)
            own_mm = money(size * mark * mmr)
            equity = self.wallet - iso + (cross_upnl - own_upnl) - (cross_mm - own_mm)
        if pos.qty > 0:
            price = (pos.cost - equity) / (size * (1 - mmr))
        else:
            price = (pos.cost + equity) / (size * (1 + mmr))
        if price <= 0:
            return _ZERO
        return (price / spec.tick_size).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * spec.tick_size

    def public_position(
        self,
        pos: PositionState,
        marks: Mapping[str, Decimal],
        specs: Mapping[str, InstrumentSpec],
        now_ms: int,
    ) -> Position:
        spec = specs[pos.symbol]
        mark = marks[pos.symbol]
        lev = self.leverage(pos.symbol, spec)
        notional = pos.qty * mark
        size = abs(pos.qty)
        shown = pos.qty if pos.side is PositionSide.BOTH else size
        entry = pos.entry_price
        return Position(
            account=self.api_key,
            symbol=pos.symbol,
            position_side=pos.side,
            qty=shown,
            entry_price=entry.quantize(MONEY) if entry else _ZERO,
            mark_price=mark,
            unrealized_pnl=pos.upnl(mark),
            realized_pnl=pos.realized,
            leverage=lev,
            margin_mode=self.margin_mode(pos.symbol),
            isolated_margin=pos.isolated_margin,
            initial_margin=money(size * mark / lev),
            maint_margin=money(size * mark * spec.maint_margin_rate),
            liquidation_price=self.liquidation_price(pos, marks, specs),
            notional=notional,
            updated_ms=pos.updated_ms or now_ms,
        )
