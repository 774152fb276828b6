"""Which adapter serves which source kind: the ``Platform.source_factories`` bootstrap wires.

Each factory builds its adapter from the source's parameters and timeframe, checking both
(BadInputError saying what to fix) without making a request. A library is imported only when
its kind is first used; ccxt is an optional extra (``signalfactory[exchanges]``), and without
it the ``ccxt`` kind answers with what to install.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe

if TYPE_CHECKING:
    # the pages' module is a sizeable import that only a collector run needs
    from signalfactory.domain.sources import FetchedPage


class _Adapter(Protocol):
    continuous: bool

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int) -> FetchedPage: ...

    def close(self) -> None: ...


Factory = Callable[[dict[str, Any], Timeframe], _Adapter]


def _ccxt(params: dict[str, Any], timeframe: Timeframe) -> _Adapter:
    try:
        from signalfactory.adapters.sources.ccxt_ohlcv import CcxtOhlcvSource
    except ImportError as exc:
        raise BadInputError("the ccxt source needs ccxt: pip install "
                            "'signalfactory[exchanges]'", rule="source-kind") from exc
    source = CcxtOhlcvSource(params)
    offered = source.exchange.timeframes or {}
    if offered and timeframe.name not in offered:
        source.close()
        raise BadInputError(f"{source.exchange.id} serves {', '.join(offered)} candles, not "
                            f"{timeframe.name}", rule="source-timeframe")
    return source


def _yfinance(cache_dir: Path | None) -> Factory:
    def build(params: dict[str, Any], timeframe: Timeframe) -> _Adapter:
        from signalfactory.adapters.sources.yfinance_source import (
            YFinanceSource,
            check_params,
            check_timeframe,
        )

        try:
            import yfinance  # noqa: F401 - present only with the extra
        except ImportError as exc:
            raise BadInputError("the yfinance source needs yfinance: pip install "
                                "'signalfactory[yahoo]'", rule="source-kind") from exc
        check_params(params)
        check_timeframe(timeframe)
        return YFinanceSource(params, cache_dir=cache_dir)

    return build


def _http(params: dict[str, Any], timeframe: Timeframe) -> _Adapter:
    from signalfactory.adapters.sources.http_source import HttpSource

    return HttpSource(params)


def _synthetic(params: dict[str, Any], timeframe: Timeframe) -> _Adapter:
    from signalfactory.adapters.sources.builtin import SyntheticSource
    from signalfactory.domain.synthetic import DEFAULT_START_NS

    unknown = sorted(set(params) - {"n_bars", "seed", "start_ms"})
    n_bars, seed = params.get("n_bars", 10_000), params.get("seed", 42)
    start_ms = params.get("start_ms", DEFAULT_START_NS // 1_000_000)
    if unknown or not all(isinstance(v, int) and not isinstance(v, bool)
                          for v in (n_bars, seed, start_ms)) or not 1 <= n_bars <= 10_000_000:
        raise BadInputError("synthetic source params: n_bars (1..10^7), seed, start_ms "
                            "(integers)", rule="source-params")
    return SyntheticSource([], n_bars=n_bars, seed=seed, start_ns=start_ms * 1_000_000)


def source_factories(cache_dir: Path | None = None) -> dict[str, Factory]:
    """Every kind this installation can fetch (``cache_dir``: yfinance's time-zone cache)."""
    return {"ccxt": _ccxt, "yfinance": _yfinance(cache_dir), "http": _http,
            "synthetic": _synthetic}
