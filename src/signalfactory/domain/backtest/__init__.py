"""The backtest engine: numba simulation over boolean entry/exit arrays, metrics and sweeps.

- `run_backtest`: one instrument (engine.py; semantics in config.py, event order in _core.py);
- `run_universe`: every instrument of a universe on its own cash, chunked, all cores;
- `run_portfolio`: a universe as one account with shared cash and a position limit;
- `compute_metrics` / `bars_per_year`: performance metrics and annualisation (metrics.py);
  `curve_figures`: the figures of an equity curve alone (trading reports them);
- sweeps.py: grids, random search, ranking, out-of-sample split, walk-forward.

Strategies reach the engine as `Signals` computed from data up to each bar; the engine never
reads a bar beyond the one it is filling.

Names are imported on first use (PEP 562): the numba kernels behind `run_backtest` & co. cost
a fresh process most of a second, and a module that needs only `config` (trading costs, the
paper exchange, every CLI command through the composition root) should not pay it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signalfactory.domain.backtest.config import (
        BacktestConfig,
        Direction,
        ExitReason,
        Fill,
        Sizing,
    )
    from signalfactory.domain.backtest.engine import BacktestResult, Trades, run_backtest
    from signalfactory.domain.backtest.metrics import (
        SUMMARY_FIELDS,
        CurveFigures,
        Metrics,
        bars_per_year,
        compute_metrics,
        curve_figures,
        value_at_risk,
    )
    from signalfactory.domain.backtest.portfolio import PortfolioResult, run_portfolio
    from signalfactory.domain.backtest.signals import Signals, crossings, mask_instrument_starts
    from signalfactory.domain.backtest.sweeps import (
        CrossoverSweeper,
        SignalSweeper,
        SplitResult,
        SweepResult,
        WalkForwardResult,
        grid,
        optimise,
        random_search,
        split_test,
        walk_forward,
    )
    from signalfactory.domain.backtest.universe import UniverseResult, run_universe

_WHERE: dict[str, str] = {
    "BacktestConfig": "config",
    "BacktestResult": "engine",
    "CrossoverSweeper": "sweeps",
    "CurveFigures": "metrics",
    "Direction": "config",
    "ExitReason": "config",
    "Fill": "config",
    "Metrics": "metrics",
    "PortfolioResult": "portfolio",
    "SUMMARY_FIELDS": "metrics",
    "SignalSweeper": "sweeps",
    "Signals": "signals",
    "Sizing": "config",
    "SplitResult": "sweeps",
    "SweepResult": "sweeps",
    "Trades": "engine",
    "UniverseResult": "universe",
    "WalkForwardResult": "sweeps",
    "bars_per_year": "metrics",
    "compute_metrics": "metrics",
    "crossings": "signals",
    "curve_figures": "metrics",
    "grid": "sweeps",
    "mask_instrument_starts": "signals",
    "optimise": "sweeps",
    "random_search": "sweeps",
    "run_backtest": "engine",
    "run_portfolio": "portfolio",
    "run_universe": "universe",
    "split_test": "sweeps",
    "value_at_risk": "metrics",
    "walk_forward": "sweeps",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the named module defines
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "SUMMARY_FIELDS",
    "BacktestConfig",
    "BacktestResult",
    "CrossoverSweeper",
    "CurveFigures",
    "Direction",
    "ExitReason",
    "Fill",
    "Metrics",
    "PortfolioResult",
    "SignalSweeper",
    "Signals",
    "Sizing",
    "SplitResult",
    "SweepResult",
    "Trades",
    "UniverseResult",
    "WalkForwardResult",
    "bars_per_year",
    "compute_metrics",
    "crossings",
    "curve_figures",
    "grid",
    "mask_instrument_starts",
    "optimise",
    "random_search",
    "run_backtest",
    "run_portfolio",
    "run_universe",
    "split_test",
    "value_at_risk",
    "walk_forward",
]
