"""The indicator registry: every TA-Lib function plus the hand-written ones, by lower-case name.

Hand-written indicators own their names. Where the installed TA-Lib has a function of the same
name (TA-Lib 0.6+ ships ``vwap``, ``supertrend``, ``donchian``, ``percentrank`` with other
definitions or parameters), the TA-Lib one stays reachable as ``talib_<name>``, so a rule
means the same thing whichever TA-Lib version is installed.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators.builtin_channels import DONCHIAN, KELTNER
from signalfactory.domain.indicators.builtin_stats import PERCENTRANK, ZSCORE
from signalfactory.domain.indicators.builtin_trend import ICHIMOKU, SUPERTREND
from signalfactory.domain.indicators.builtin_volume import CUM_VWAP, VWAP
from signalfactory.domain.indicators.spec import FloatArray, Indicator, IntArray, ParamValue
from signalfactory.domain.indicators.talib_backed import talib_function_names, talib_indicator

BUILTINS: tuple[Indicator, ...] = (VWAP, CUM_VWAP, SUPERTREND, ICHIMOKU, DONCHIAN, KELTNER,
                                   ZSCORE, PERCENTRANK)


class IndicatorRegistry(Mapping[str, Indicator]):
    """Read-only mapping of lower-case name to ``Indicator``.

    ``on_demand`` entries are built when first looked up: describing one TA-Lib function
    (its metadata and default warm-up) is cheap, describing all ~160 of them was a sizeable
    part of a one-shot command's start-up, and a rule uses a handful. Names, order and
    length are known without building anything; one object per name (compare by identity).
    """

    def __init__(self, indicators: Iterable[Indicator] = (), *,
                 on_demand: Iterable[tuple[str, Callable[[], Indicator]]] = ()) -> None:
        self._by_name: dict[str, Indicator] = {}
        self._builders: dict[str, Callable[[], Indicator]] = {}
        self._order: list[str] = []
        for ind in indicators:
            self._claim(ind.name)
            self._by_name[ind.name] = ind
        for name, build in on_demand:
            self._claim(name)
            self._builders[name] = build

    def _claim(self, name: str) -> None:
        if name in self._by_name or name in self._builders:
            raise ValueError(f"indicator {name!r} registered twice")
        self._order.append(name)

    def __getitem__(self, name: str) -> Indicator:
        found = self._by_name.get(name)
        if found is None:
            built = self._builders[name]()  # KeyError for an unknown name, as a dict
            # setdefault: threads racing on a first lookup all get the same object
            found = self._by_name.setdefault(name, built)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def get_or_raise(self, name: str) -> Indicator:
        """The indicator, or BadInputError naming the closest known names."""
        lower = name.lower()
        if lower not in self:
            raise BadInputError(f"unknown indicator {name!r}{self.suggestion(name)}")
        return self[lower]

    def suggestion(self, name: str, extra: Iterable[str] = ()) -> str:
        """"; did you mean 'x'?" for the closest known name, or an empty string."""
        close = difflib.get_close_matches(name.lower(), [*self._order, *extra], n=1)
        return f"; did you mean {close[0]!r}?" if close else ""


def build_registry() -> IndicatorRegistry:
    builtin_names = {b.name for b in BUILTINS}
    talib_entries: list[tuple[str, Callable[[], Indicator]]] = []
    for ta_name in talib_function_names():
        lower = ta_name.lower()
        name = f"talib_{lower}" if lower in builtin_names else lower
        talib_entries.append((name, functools.partial(talib_indicator, ta_name,
                                                      registry_name=name)))
    return IndicatorRegistry(BUILTINS, on_demand=talib_entries)


registry: IndicatorRegistry = build_registry()


def compute(name: str, bars: BarSeries | BarUniverse, *series: FloatArray,
            **params: ParamValue) -> dict[str, FloatArray]:
    """Compute indicator ``name`` over ``bars``; output name -> array aligned to the bars.

    Series inputs (e.g. the ``real`` of ``sma``) are taken from ``series`` in order, or
    default to TA-Lib's default price field (``close`` for most). For a universe, each
    instrument is computed on its own slice. Parameters are checked; BadInputError says why.
    """
    indicator = registry.get_or_raise(name)
    bound = indicator.bind((), params)
    series_inputs = indicator.series_inputs
    if len(series) > len(series_inputs):
        raise BadInputError(f"{indicator.name} takes {len(series_inputs)} series, "
                            f"got {len(series)}")
    offsets: IntArray
    if isinstance(bars, BarUniverse):
        offsets = bars.offsets
    else:
        offsets = np.array([0, len(bars)], dtype=np.int64)
    given = iter(series)
    inputs: list[FloatArray] = []
    for inp in indicator.inputs:
        if inp.field is not None:
            inputs.append(bars.column(inp.field))
            continue
        arr = next(given, None)
        if arr is None:
            if inp.default not in ("open", "high", "low", "close", "volume"):
                raise BadInputError(f"{indicator.name} needs the series '{inp.name}'")
            arr = bars.column(inp.default)
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if arr.shape != (int(offsets[-1]),):
            raise BadInputError(f"series for {indicator.name} has {arr.shape[0]} rows, "
                                f"the bars have {int(offsets[-1])}")
        inputs.append(arr)
    outputs = indicator.compute_block(inputs, offsets, bound)
    return dict(zip(indicator.outputs, outputs, strict=True))
