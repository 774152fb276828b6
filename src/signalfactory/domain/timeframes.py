"""Bar timeframes from one minute to one week, and which ones resample into which."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from signalfactory.domain.errors import BadInputError

_UNIT_SECONDS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN: Final = re.compile(r"^(\d+)([mhdw])$")
NS_PER_SECOND: Final = 1_000_000_000


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar length such as ``1m``, ``5m``, ``1h``, ``1d`` or ``1w``."""

    seconds: int
    name: str

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        match = _PATTERN.match(text.strip().lower())
        if not match:
            raise BadInputError(
                f"timeframe {text!r} is not valid; use a number and a unit m, h, d or w "
                "(for example 1m, 5m, 1h, 1d, 1w)", rule="timeframe")
        count, unit = int(match.group(1)), match.group(2)
        seconds = count * _UNIT_SECONDS[unit]
        if count <= 0 or seconds < 60 or seconds > 7 * 86400:
            raise BadInputError(
                f"timeframe {text!r} is outside the supported range 1m..1w", rule="timeframe")
        return cls(seconds=seconds, name=f"{count}{unit}")

    @property
    def nanoseconds(self) -> int:
        return self.seconds * NS_PER_SECOND

    def divides(self, higher: Timeframe) -> bool:
        """Whether bars of this timeframe aggregate exactly into ``higher`` bars."""
        if higher.seconds <= self.seconds:
            return False
        if higher.name.endswith("w"):
            return self.seconds <= 86400 and 86400 % self.seconds == 0
        return higher.seconds % self.seconds == 0

    def __str__(self) -> str:
        return self.name


def infer_timeframe(step_seconds: int) -> Timeframe | None:
    """The timeframe whose length is the typical gap between bars, if it is a standard one."""
    for name in ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"):
        tf = Timeframe.parse(name)
        if tf.seconds == step_seconds:
            return tf
    return None
