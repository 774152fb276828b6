"""Indicators: TA-Lib behind one registry, plus a few hand-written ones TA-Lib lacks.

>>> from signalfactory.domain.indicators import registry, compute
>>> registry["macd"].outputs
('macd', 'macdsignal', 'macdhist')
>>> registry["bbands"].output_index("upper")
0

Outputs are aligned to the bars (row k of an output belongs to bar k) and NaN over the
warm-up; ``registry[name].lookback(params)`` gives the warm-up length and
``registry[name].warmup`` / ``.doc`` describe it.
"""

from signalfactory.domain.indicators.registry import (
    IndicatorRegistry,
    build_registry,
    compute,
    registry,
)
from signalfactory.domain.indicators.spec import Indicator, Input, Param, ParamValue

__all__ = ["Indicator", "IndicatorRegistry", "Input", "Param", "ParamValue", "build_registry",
           "compute", "registry"]
