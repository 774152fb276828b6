"""A fill applied to a bot's position, so that ``capital.bot_cash`` (allocation + realised PnL
- cost of what is held) is the cash the bot has.

- A fill that opens or adds moves the average price to the cost per unit held.
- A fill that reduces realises ``(price - average) * quantity`` (signed for shorts); one that
  crosses zero closes the old position and opens the rest at the fill price.
- Fees: in the quote currency they are realised as a loss; in the base currency (spot
  exchanges take a buy's fee from what it bought) they shrink the quantity received and the
  cost stays, so the average price carries them. A fee in a third currency (a discount token)
  changes neither: its value is not known here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signalfactory.domain.trading.orders import Fill, Position

#: below this a quantity is float noise, i.e. flat
QUANTITY_EPSILON = 1e-12


@dataclass(frozen=True)
class Currencies:
    base: str
    quote: str


def split_symbol(symbol: str) -> Currencies:
    """``BTC/USDT`` (ccxt's unified form) → BTC, USDT; ``BTC/USDT:USDT`` keeps the quote."""
    base, _, rest = symbol.partition("/")
    return Currencies(base, rest.split(":")[0] if rest else "")


def apply_fill(position: Position | None, fill: Fill, *, bot_id: int,
               at: datetime) -> Position:
    """The bot's position in ``fill.symbol`` after ``fill``."""
    q = position.quantity if position is not None else 0.0
    avg = position.average_price if position is not None else 0.0
    realised = position.realised_pnl if position is not None else 0.0
    currencies = split_symbol(fill.symbol)
    signed = fill.quantity if fill.side == "buy" else -fill.quantity
    base_fee = fill.fee if fill.fee_currency == currencies.base else 0.0
    if fill.fee_currency == currencies.quote:
        realised -= fill.fee
    if q == 0.0 or (q > 0) == (signed > 0):
        # opening or adding: the cost is what was paid; the fee in base shrinks what is held
        cost = abs(q) * avg + abs(signed) * fill.price
        q += signed
        q -= base_fee if q > 0 else -base_fee
        avg = cost / abs(q) if abs(q) > QUANTITY_EPSILON else 0.0
    else:
        closing = min(abs(signed), abs(q))
        direction = 1.0 if q > 0 else -1.0
        realised += (fill.price - avg) * closing * direction
        q += signed
        if abs(q) <= QUANTITY_EPSILON:
            q, avg = 0.0, 0.0
        elif (q > 0) != (direction > 0):
            avg = fill.price  # crossed zero: the rest opened at the fill price
        if base_fee:
            # the base fee left the holdings: at cost, it is a realised loss
            held = q - (base_fee if q > 0 else -base_fee) if q else 0.0
            realised -= base_fee * (avg if q else fill.price)
            q = held if abs(held) > QUANTITY_EPSILON else 0.0
    if abs(q) <= QUANTITY_EPSILON:
        q, avg = 0.0, 0.0
    return Position(bot_id=bot_id, symbol=fill.symbol, quantity=q, average_price=avg,
                    realised_pnl=realised, updated_at=at)
