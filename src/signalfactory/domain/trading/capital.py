"""Capital: how much an entry buys, and who may spend which cash.

**Sizing** (`size_entry`) is the backtest's, computed by the engine's own kernel
(`domain.backtest._core.units_nb`): ``fraction`` of equity, ``cash``, ``units`` or ``risk``
(ATR distance), never more than the cash available, fees included
(``units = (budget - fee_fixed) / (price * (1 + fee_pct))`` at the slipped price), whole units
when asked; then the exchange's grid: rounded down to the market's amount step, capped at its
maximum, and nothing (0) when below its minimum amount or notional.

**A bot's cash** is its allocation plus its realised PnL (net of fees) minus the cost of what
it holds (``|quantity| * average price``; a short sets its entry value aside as collateral, as
in the backtest). Its equity adds the value of its positions at their marks.

**The ledger** (`CashLedger`, a pure in-memory object) keeps two bots from spending the same
money. An order reserves its cash when it is placed (`reserve`), and the reservation is
settled on fills (`settle_open` / `settle_close`) and released on cancel or rejection
(`release`). A reservation is refused, with the rule, when it exceeds:
``bot-budget`` (the bot's cash less its other reservations), ``account-cash`` (the exchange
account's free cash less every reservation on it, whichever bot made them) or
``tenant-exposure`` (the tenant's positions at cost plus reservations, against its limit).
The ledger is rebuilt from stored state (`BotBook.of`, open orders' `reservation_amount`) and
must be used under the caller's lock or transaction when several processes share an account.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from signalfactory.domain.backtest._core import units_nb
from signalfactory.domain.backtest.config import BacktestConfig
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.exchange import Market
from signalfactory.domain.trading.orders import Fill, Position, Side
from signalfactory.domain.trading.precision import floor_to_step

RULE_BOT_BUDGET = "bot-budget"
RULE_ACCOUNT_CASH = "account-cash"
RULE_TENANT_EXPOSURE = "tenant-exposure"
#: relative slack for float noise when comparing money (a fee computed two ways)
MONEY_TOLERANCE = 1e-9


class CapitalRefusedError(BadInputError):
    """A reservation the ledger refused; ``rule`` says which budget it exceeds."""


# -- sizing ------------------------------------------------------------------------------------

def size_entry(*, equity: float, cash: float, price: float, side: Side, config: BacktestConfig,
               atr: float = math.nan, market: Market | None = None) -> float:
    """Units an entry of ``side`` at market ``price`` (before slippage) should trade; 0 when
    nothing can or should be bought. ``config`` carries sizing, fees, slippage, whole units."""
    if not (math.isfinite(price) and price > 0):
        raise BadInputError(f"sizing needs a positive price, got {price}")
    px = CostModel.of(config).fill_price(price, side)
    fp, ip = config.kernel_params()
    units = float(units_nb(equity, cash, px, atr, fp, ip))
    if market is None or units <= 0.0:
        return units
    if market.max_amount is not None:
        units = min(units, market.max_amount)
    units = floor_to_step(units, market.amount_step)
    if units < market.min_amount or units * px < market.min_notional or units <= 0.0:
        return 0.0
    return units


def position_value(position: Position, mark: float) -> float:
    """What a position is worth at ``mark``: ``|q| * avg + q * (mark - avg)`` (a short is its
    collateral plus its gain), the engine's valuation."""
    q = position.quantity
    return abs(q) * position.average_price + q * (mark - position.average_price)


def bot_cash(allocation: float, positions: Iterable[Position]) -> float:
    """A bot's free cash (see the module docstring)."""
    cash = allocation
    for p in positions:
        cash += p.realised_pnl - abs(p.quantity) * p.average_price
    return cash


def bot_equity(allocation: float, positions: Iterable[Position],
               marks: Mapping[str, float]) -> float:
    """Cash plus positions at their marks (a position without a mark counts at cost)."""
    held = list(positions)
    value = sum(position_value(p, marks.get(p.symbol, p.average_price)) for p in held)
    return bot_cash(allocation, held) + value


def cost_basis(positions: Iterable[Position]) -> float:
    return sum(abs(p.quantity) * p.average_price for p in positions)


def reservation_amount(quantity: float, price: float, costs: CostModel) -> float:
    """Cash an opening order of ``quantity`` at ``price`` ties up, its fees included."""
    return abs(quantity) * price + costs.fee(quantity, price)


# -- the ledger --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BotBook:
    """What the ledger knows of one bot: where it trades, its free cash, its exposure at cost."""

    bot_id: int
    tenant_id: int
    account_id: int
    allocation: float
    cash: float
    exposure: float = 0.0

    @classmethod
    def of(cls, *, bot_id: int, tenant_id: int, account_id: int, allocation: float,
           positions: Iterable[Position] = ()) -> BotBook:
        held = list(positions)
        return cls(bot_id, tenant_id, account_id, allocation, bot_cash(allocation, held),
                   cost_basis(held))


@dataclass(frozen=True)
class Reservation:
    client_order_id: str
    bot_id: int
    #: cash still reserved (falls as fills settle)
    amount: float


@dataclass(frozen=True)
class LedgerRefusal:
    rule: str
    message: str


def _over(amount: float, room: float) -> bool:
    return amount > room + MONEY_TOLERANCE * max(1.0, abs(room))


class CashLedger:
    """Reservations over bots, accounts and tenants; see the module docstring.

    ``account_cash``: free cash per exchange account (its quote currency);
    ``tenant_limits``: the most a tenant may hold at cost plus reserve (missing: no limit).
    """

    def __init__(self, *, bots: Iterable[BotBook], account_cash: Mapping[int, float],
                 tenant_limits: Mapping[int, float] | None = None,
                 reservations: Iterable[Reservation] = ()) -> None:
        self._bots = {b.bot_id: b for b in bots}
        self._accounts = dict(account_cash)
        self._tenant_limits = dict(tenant_limits or {})
        self._reservations: dict[str, Reservation] = {}
        for b in self._bots.values():
            if b.account_id not in self._accounts:
                raise BadInputError(f"bot {b.bot_id} trades on account {b.account_id}, which "
                                    "the ledger was not given")
        for r in reservations:
            self._bot(r.bot_id)
            self._reservations[r.client_order_id] = r

    # -- reading
    def _bot(self, bot_id: int) -> BotBook:
        try:
            return self._bots[bot_id]
        except KeyError:
            raise BadInputError(f"bot {bot_id} is not in the ledger") from None

    def book(self, bot_id: int) -> BotBook:
        return self._bot(bot_id)

    def reservation(self, client_order_id: str) -> Reservation | None:
        return self._reservations.get(client_order_id)

    def reserved(self, *, bot_id: int | None = None, account_id: int | None = None,
                 tenant_id: int | None = None) -> float:
        total = 0.0
        for r in self._reservations.values():
            b = self._bots[r.bot_id]
            if ((bot_id is None or b.bot_id == bot_id)
                    and (account_id is None or b.account_id == account_id)
                    and (tenant_id is None or b.tenant_id == tenant_id)):
                total += r.amount
        return total

    def available(self, bot_id: int) -> float:
        """What the bot can still reserve: the least of its own cash and its account's
        (each less reservations) and its tenant's room."""
        b = self._bot(bot_id)
        room = min(b.cash - self.reserved(bot_id=bot_id),
                   self._accounts[b.account_id] - self.reserved(account_id=b.account_id))
        limit = self._tenant_limits.get(b.tenant_id)
        if limit is not None:
            room = min(room, limit - self.tenant_exposure(b.tenant_id))
        return max(room, 0.0)

    def account_cash(self, account_id: int) -> float:
        return self._accounts[account_id]

    def tenant_exposure(self, tenant_id: int) -> float:
        held = sum(b.exposure for b in self._bots.values() if b.tenant_id == tenant_id)
        return held + self.reserved(tenant_id=tenant_id)

    # -- changing
    def check(self, bot_id: int, amount: float) -> LedgerRefusal | None:
        """Why reserving ``amount`` for the bot would be refused, or None."""
        b = self._bot(bot_id)
        own = b.cash - self.reserved(bot_id=bot_id)
        if _over(amount, own):
            return LedgerRefusal(RULE_BOT_BUDGET, f"bot {bot_id} has {own:.2f} left of its "
                                                  f"budget; the order needs {amount:.2f}")
        account = self._accounts[b.account_id] - self.reserved(account_id=b.account_id)
        if _over(amount, account):
            return LedgerRefusal(RULE_ACCOUNT_CASH,
                                 f"account {b.account_id} has {account:.2f} free once other "
                                 f"orders' reservations are counted; the order needs "
                                 f"{amount:.2f}")
        limit = self._tenant_limits.get(b.tenant_id)
        if limit is not None:
            exposure = self.tenant_exposure(b.tenant_id)
            if _over(exposure + amount, limit):
                return LedgerRefusal(RULE_TENANT_EXPOSURE,
                                     f"tenant {b.tenant_id} holds and reserves {exposure:.2f}; "
                                     f"with {amount:.2f} more it passes its exposure limit "
                                     f"of {limit:.2f}")
        return None

    def reserve(self, client_order_id: str, bot_id: int, amount: float) -> Reservation:
        """Set ``amount`` aside for the order; the same order id again returns the reservation
        it already has (a retry), and a refusal raises `CapitalRefusedError` with the rule."""
        if not (math.isfinite(amount) and amount >= 0):
            raise BadInputError(f"a reservation must be a positive amount, got {amount}")
        existing = self._reservations.get(client_order_id)
        if existing is not None:
            if existing.bot_id != bot_id:
                raise BadInputError(f"order {client_order_id} is reserved by another bot")
            return existing
        refusal = self.check(bot_id, amount)
        if refusal is not None:
            raise CapitalRefusedError(refusal.message, rule=refusal.rule)
        reservation = Reservation(client_order_id, bot_id, amount)
        self._reservations[client_order_id] = reservation
        return reservation

    def release(self, client_order_id: str) -> float:
        """Free what is left of the order's reservation (cancelled, rejected, or done)."""
        r = self._reservations.pop(client_order_id, None)
        return 0.0 if r is None else r.amount

    def settle_open(self, client_order_id: str | None, bot_id: int, *, cash_out: float,
                    exposure: float, done: bool) -> None:
        """A fill that opens or adds to a position: ``cash_out`` (cost and fee) leaves the
        bot's and the account's cash, ``exposure`` (quantity x price) is now held; the
        reservation shrinks by the cash used, and goes when the order is ``done``."""
        self._move(bot_id, -cash_out, exposure)
        if client_order_id is not None:
            r = self._reservations.get(client_order_id)
            if r is not None:
                left = max(r.amount - cash_out, 0.0)
                self._reservations[client_order_id] = replace(r, amount=left)
            if done:
                self.release(client_order_id)

    def settle_close(self, client_order_id: str | None, bot_id: int, *, cash_in: float,
                     exposure: float, done: bool = True) -> None:
        """A fill that reduces a position: ``cash_in`` (proceeds less fee; for a short, the
        collateral back plus its gain) returns, ``exposure`` (the cost of what was sold)
        is no longer held."""
        self._move(bot_id, cash_in, -exposure)
        if client_order_id is not None and done:
            self.release(client_order_id)

    def settle(self, client_order_id: str | None, bot_id: int, before: Position | None,
               fill: Fill, *, done: bool) -> None:
        """Settle one fill against the position it met (``before``, None: flat): the part
        that reduces the position returns its cost and gain (`settle_close`), the part that
        opens or adds spends (`settle_open`); the fee is shared by quantity. Fees are taken
        in the quote currency here (a base-currency fee is corrected when the ledger is next
        rebuilt from positions)."""
        q0 = 0.0 if before is None else before.quantity
        avg = 0.0 if before is None else before.average_price
        delta = fill.quantity if fill.side == "buy" else -fill.quantity
        closing = min(abs(delta), abs(q0)) if q0 * delta < 0 else 0.0
        opening = abs(delta) - closing
        if closing > 0:
            fee = fill.fee * closing / abs(delta)
            gain = math.copysign(closing, q0) * (fill.price - avg)
            self.settle_close(client_order_id, bot_id, cash_in=closing * avg + gain - fee,
                              exposure=closing * avg, done=done and opening == 0)
        if opening > 0:
            fee = fill.fee * opening / abs(delta)
            self.settle_open(client_order_id, bot_id, cash_out=opening * fill.price + fee,
                             exposure=opening * fill.price, done=done)

    def _move(self, bot_id: int, cash: float, exposure: float) -> None:
        b = self._bot(bot_id)
        self._bots[bot_id] = replace(b, cash=b.cash + cash,
                                     exposure=max(b.exposure + exposure, 0.0))
        self._accounts[b.account_id] += cash
