"""Chart data as the pages embed it (``<script type="application/json">``) for
static/js/charts.js: compact arrays, times in Unix seconds, no NaN (JSON has none)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarUniverse

NS = 1_000_000_000
#: one price point in the JSON: [time, open, high, low, close]
Candle = list[float]


def seconds(ts: npt.NDArray[np.int64]) -> list[int]:
    return (ts // NS).tolist()  # type: ignore[no-any-return]


def candles(bars: BarUniverse) -> list[Candle]:
    return [list(row) for row in zip(seconds(bars.ts), bars.open.tolist(), bars.high.tolist(),
                                     bars.low.tolist(), bars.close.tolist(), strict=True)]


def line(times: Sequence[int], values: Iterable[float]) -> list[list[float]]:
    """[time, value] pairs, leaving out undefined values (an indicator's warm-up)."""
    return [[t, v] for t, v in zip(times, values, strict=True) if math.isfinite(v)]


def intraday(times: Sequence[int]) -> bool:
    return len(times) > 1 and float(np.median(np.diff(np.asarray(times)))) < 86_400


def price_chart(bars: BarUniverse, overlays: Mapping[str, npt.NDArray[np.float64]],
                markers: Iterable[tuple[int, str]]) -> dict[str, Any]:
    """Candles, indicator lines and signal markers (time in seconds, side)."""
    times = seconds(bars.ts)
    known = set(times)
    return {"kind": "price", "intraday": intraday(times), "bars": candles(bars),
            "overlays": [{"name": name, "values": line(times, values.tolist())}
                         for name, values in overlays.items()],
            "markers": sorted(([t, side] for t, side in markers if t in known),
                              key=lambda m: m[0])}


def equity_chart(ts: npt.NDArray[np.int64], equity: npt.NDArray[np.float64],
                 benchmark: npt.NDArray[np.float64] | None = None,
                 label: str = "equity") -> dict[str, Any]:
    times = seconds(ts)
    series = [{"name": label, "values": line(times, equity.tolist())}]
    if benchmark is not None:
        series.append({"name": "buy and hold", "values": line(times, benchmark.tolist())})
    return {"kind": "line", "intraday": intraday(times), "series": series}


def drawdown_chart(ts: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]
                   ) -> dict[str, Any]:
    peak = np.maximum.accumulate(equity)
    drawdown = np.where(peak > 0, equity / peak - 1.0, 0.0)
    times = seconds(ts)
    return {"kind": "area", "intraday": intraday(times),
            "series": [{"name": "drawdown", "values": line(times, drawdown.tolist())}]}


def sparkline(values: Sequence[float], width: int = 120, height: int = 28) -> str:
    """An SVG polyline's points for a small inline chart (no script needed)."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return ""
    lo, hi = min(finite), max(finite)
    span = (hi - lo) or 1.0
    step = width / (len(finite) - 1)
    return " ".join(f"{i * step:.1f},{height - (v - lo) / span * height:.1f}"
                    for i, v in enumerate(finite))
