"""Amounts and prices on an exchange's grid (``Market.amount_step`` / ``price_step``).

Floats cannot hold most decimal steps exactly (0.001 * 3 is 0.0030000000000000005), so grid
arithmetic counts steps with a small relative tolerance and rounds the result to 12 decimals.
A step of 0 means the market has no grid for that quantity.
"""

from __future__ import annotations

import math

#: relative slack when deciding whether a value sits on the grid (float noise, not a rule)
GRID_TOLERANCE = 1e-9
_DECIMALS = 12


def floor_to_step(value: float, step: float) -> float:
    """The largest multiple of ``step`` not above ``value`` (``value`` when there is no grid)."""
    if step <= 0:
        return value
    steps = math.floor(value / step * (1 + GRID_TOLERANCE))
    return round(steps * step, _DECIMALS)


def on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is a whole number of ``step`` (always, when there is no grid)."""
    if step <= 0:
        return True
    steps = value / step
    return abs(steps - round(steps)) <= GRID_TOLERANCE * max(1.0, abs(steps))
