"""The bot's decision step, and how fills move positions: the backtest engine's rules.

**Signals** come from the same strategy code as a backtest: `strategy_signals` turns a
strategy's evaluation into the engine's `Signals` exactly as the backtest service does
(a rule without short parts trades short on its ``exit`` and covers on its ``entry`` when the
direction is ``short`` or ``both``: `mirrors_short`).

**Decisions** are the engine's (`domain.backtest._core.decide_nb`, called as is): exits win
over entries of the same side, a long and a short entry on one bar cancel out, an opposite
entry while in a position flips it (direction ``both`` only). A decision is carried out as the
engine does: first the exit of the whole position (`exit_intent`), and only once that filled,
the entry, sized on the cash the exit left (`entry_intent`, see `capital.size_entry`).

**Positions** (`apply_fill`): a fill in the position's direction adds at the average price;
an opposite fill realises ``quantity * (price - average)`` (signed) and may cross zero, the
rest opening at the fill price. Fees are charged to realised PnL when paid in the quote
currency; a fee paid in the base currency changes the quantity held instead (and is valued at
the fill price), so ``allocation + realised - |q| * average`` is always the bot's cash.
``realised_pnl`` is therefore net of fees, as a backtest trade's ``pnl`` is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from signalfactory.domain.backtest import _core
from signalfactory.domain.backtest.config import BacktestConfig, DirectionName
from signalfactory.domain.backtest.signals import Signals
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules.result import Evaluation
from signalfactory.domain.strategies.base import RuleStrategy, Strategy
from signalfactory.domain.trading.bots import Bot
from signalfactory.domain.trading.capital import size_entry
from signalfactory.domain.trading.exchange import Market
from signalfactory.domain.trading.orders import Fill, OrderIntent, Position, Side

# What the signals of a bar ask for (the engine's action codes)
NONE = _core.A_NONE
CLOSE = _core.A_CLOSE
OPEN_LONG = _core.A_OPEN_LONG
OPEN_SHORT = _core.A_OPEN_SHORT
FLIP_LONG = _core.A_FLIP_LONG
FLIP_SHORT = _core.A_FLIP_SHORT
ACTION_NAMES = {NONE: "none", CLOSE: "close", OPEN_LONG: "open_long", OPEN_SHORT: "open_short",
                FLIP_LONG: "flip_long", FLIP_SHORT: "flip_short"}
_DIRECTIONS = {"long": _core.D_LONG, "short": _core.D_SHORT, "both": 2}

# Intent reasons (part of the client order id)
REASON_ENTRY = "entry"
REASON_EXIT = "exit"
REASON_REVERSE = "reverse"


def backtest_config(bot: Bot, *, initial_cash: float | None = None) -> BacktestConfig:
    """The backtest settings a bot trades by (its allocation as the initial cash)."""
    return BacktestConfig(
        direction=bot.direction,  # type: ignore[arg-type]  # BacktestConfig checks it
        fill=bot.fill,  # type: ignore[arg-type]
        initial_cash=bot.allocation if initial_cash is None else initial_cash,
        fee_pct=bot.fee_pct, fee_fixed=bot.fee_fixed, slippage_bps=bot.slippage_bps,
        sizing=bot.sizing,  # type: ignore[arg-type]
        size_value=bot.size_value, atr_multiple=bot.atr_multiple,
        whole_units=bot.whole_units)


# -- signals -----------------------------------------------------------------------------------

def mirrors_short(strategy: Strategy, direction: str) -> bool:
    """Whether a long-only rule is traded short on its exit and covered on its entry (the
    backtest service's rule for a rule without ``short_entry``/``short_exit`` parts)."""
    return (isinstance(strategy, RuleStrategy) and direction != "long"
            and not {"short_entry", "short_exit"} & set(strategy.rule.labels))


def strategy_signals(evaluation: Evaluation, *, mirror: bool) -> Signals:
    """The engine's signals from a strategy's evaluation, as the backtest builds them."""
    n = evaluation.n_bars
    if mirror:
        return Signals.build(n, long_entry=evaluation.entry, long_exit=evaluation.exit,
                             short_entry=evaluation.exit, short_exit=evaluation.entry)
    return Signals.build(n, long_entry=evaluation.entry, long_exit=evaluation.exit,
                         short_entry=evaluation.short_entry, short_exit=evaluation.short_exit)


@dataclass(frozen=True)
class BarSignals:
    """The four signals of one bar."""

    long_entry: bool = False
    long_exit: bool = False
    short_entry: bool = False
    short_exit: bool = False

    @classmethod
    def at(cls, signals: Signals, t: int) -> BarSignals:
        return cls(bool(signals.long_entry[t]), bool(signals.long_exit[t]),
                   bool(signals.short_entry[t]), bool(signals.short_exit[t]))

    @property
    def any(self) -> bool:
        return self.long_entry or self.long_exit or self.short_entry or self.short_exit


QUIET = BarSignals()


# -- decisions ---------------------------------------------------------------------------------

def decide(quantity: float, signals: BarSignals, direction: DirectionName | str) -> int:
    """The action the bar's signals ask for given the signed position (the engine's own)."""
    try:
        code = _DIRECTIONS[direction]
    except KeyError:
        raise BadInputError(f"direction {direction!r} is not valid; use long, short or both",
                            rule="direction") from None
    if not signals.any:
        return NONE
    return int(_core.decide_nb(float(quantity), signals.long_entry, signals.long_exit,
                               signals.short_entry, signals.short_exit, code))


def exits(action: int) -> bool:
    """Whether the action starts by closing the position held."""
    return action in (CLOSE, FLIP_LONG, FLIP_SHORT)


def entry_side(action: int) -> Side | None:
    """The side of the entry the action ends with, if any."""
    if action in (OPEN_LONG, FLIP_LONG):
        return "buy"
    if action in (OPEN_SHORT, FLIP_SHORT):
        return "sell"
    return None


@dataclass(frozen=True)
class BotRef:
    """Who places the orders (ids that go into every intent)."""

    tenant_id: int
    bot_id: int
    account_id: int

    @classmethod
    def of(cls, bot: Bot) -> BotRef:
        return cls(bot.tenant_id, bot.id, bot.account_id)


def exit_intent(ref: BotRef, *, symbol: str, quantity: float, action: int, bar_ns: int,
                price: float) -> OrderIntent | None:
    """The market order closing the whole signed ``quantity`` held, when ``action`` exits."""
    if not exits(action) or quantity == 0.0:
        return None
    side: Side = "sell" if quantity > 0 else "buy"
    reason = REASON_EXIT if action == CLOSE else REASON_REVERSE
    return OrderIntent(tenant_id=ref.tenant_id, bot_id=ref.bot_id, account_id=ref.account_id,
                       symbol=symbol, side=side, quantity=abs(quantity), bar_ns=bar_ns,
                       reason=reason, reference_price=price)


def entry_intent(ref: BotRef, *, symbol: str, action: int, bar_ns: int, price: float,
                 equity: float, cash: float, config: BacktestConfig, atr: float = math.nan,
                 market: Market | None = None) -> OrderIntent | None:
    """The market order the action's entry asks for, sized as the backtest sizes it at
    ``price`` on ``equity`` and ``cash`` (call it once the exit, if any, has filled); None when
    there is no entry or nothing can be bought."""
    side = entry_side(action)
    if side is None:
        return None
    units = size_entry(equity=equity, cash=cash, price=price, side=side, config=config,
                       atr=atr, market=market)
    if units <= 0.0:
        return None
    return OrderIntent(tenant_id=ref.tenant_id, bot_id=ref.bot_id, account_id=ref.account_id,
                       symbol=symbol, side=side, quantity=units, bar_ns=bar_ns,
                       reason=REASON_ENTRY, reference_price=price)


# -- positions ---------------------------------------------------------------------------------

def flat(bot_id: int, symbol: str, at: datetime) -> Position:
    return Position(bot_id=bot_id, symbol=symbol, quantity=0.0, average_price=0.0,
                    realised_pnl=0.0, updated_at=at)


def apply_execution(position: Position, *, delta: float, price: float, fee: float,
                    at: datetime) -> Position:
    """``position`` after trading the signed ``delta`` at ``price`` and paying ``fee`` (quote
    currency); see the module docstring for the rules."""
    if not (math.isfinite(delta) and math.isfinite(price) and price > 0 and math.isfinite(fee)):
        raise BadInputError(f"a fill needs finite numbers and a positive price: "
                            f"{delta} at {price}, fee {fee}")
    q0, avg0 = position.quantity, position.average_price
    realised = position.realised_pnl - fee
    if delta == 0.0:
        q, avg = q0, avg0
    elif q0 == 0.0:
        q, avg = delta, price
    elif (q0 > 0) == (delta > 0):
        q = q0 + delta
        avg = (abs(q0) * avg0 + abs(delta) * price) / abs(q)
    else:
        closing = min(abs(delta), abs(q0))
        realised += math.copysign(closing, q0) * (price - avg0)
        rest = abs(delta) - closing
        if rest > 0.0:
            q, avg = math.copysign(rest, delta), price
        else:
            q = q0 + delta
            avg = avg0
            # a position closed to float noise is closed
            if abs(q) <= 1e-12 * abs(q0):
                q, avg = 0.0, 0.0
    return Position(bot_id=position.bot_id, symbol=position.symbol, quantity=q,
                    average_price=avg, realised_pnl=realised, updated_at=at)


def apply_fill(position: Position | None, fill: Fill, *, bot_id: int,
               base_currency: str | None = None) -> Position:
    """``position`` (None: flat) after an exchange fill. A fee in the base currency (named by
    ``base_currency``) is taken from the quantity and valued at the fill price; any other fee
    currency is taken as the quote currency."""
    if fill.quantity <= 0:
        raise BadInputError(f"fill {fill.trade_id} has quantity {fill.quantity}")
    current = position if position is not None else flat(bot_id, fill.symbol, fill.executed_at)
    delta = fill.quantity if fill.side == "buy" else -fill.quantity
    fee = fill.fee
    if base_currency is not None and fill.fee_currency == base_currency:
        delta -= fill.fee
        fee = fill.fee * fill.price
    return apply_execution(current, delta=delta, price=fill.price, fee=fee,
                           at=fill.executed_at)
