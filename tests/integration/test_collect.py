"""Collectors page through a source and resume where they stopped, keeping what they fetched."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from signalfactory.adapters.sources.builtin import SyntheticSource
from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import TemporaryError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.marketdata.collect import collect, cursor
from signalfactory.services.marketdata.ports import MarketDataSource
from signalfactory.services.platform import Platform

H1 = Timeframe.parse("1h")


def test_synthetic_source_fits_the_port() -> None:
    assert isinstance(SyntheticSource(["A"], 10), MarketDataSource)


def test_collect_resumes_without_duplicates(platform: Platform) -> None:
    source = SyntheticSource(["AAA", "BBB"], n_bars=2500)
    first = collect(platform, source, H1, ["AAA"], page_size=500, max_pages=2)
    assert first.rows == 1000
    assert load_universe(platform, H1).n_bars == 1000
    rest = collect(platform, source, H1, page_size=500)
    assert rest.rows == 1500 + 2500
    uni = load_universe(platform, H1)
    assert uni.n_bars == 5000
    assert all(np.all(np.diff(s.ts) == H1.nanoseconds) for s in uni)
    assert collect(platform, source, H1, page_size=500).rows == 0


class _FlakySource(SyntheticSource):
    """Fails after a number of pages, like an exchange that starts refusing requests."""

    def __init__(self, fail_after: int) -> None:
        super().__init__(["FLK"], n_bars=1000)
        self.fail_after = fail_after

    def fetch(self, symbol: str, timeframe: Timeframe, since_ns: int | None,
              page_size: int = 1000) -> Iterator[BarSeries]:
        for i, page in enumerate(super().fetch(symbol, timeframe, since_ns, page_size)):
            if i >= self.fail_after:
                raise TemporaryError("rate limited")
            yield page


def test_failure_keeps_pages_already_fetched(platform: Platform) -> None:
    with pytest.raises(TemporaryError):
        collect(platform, _FlakySource(fail_after=3), H1, page_size=100)
    assert load_universe(platform, H1).n_bars == 300
    last = cursor(platform, "synthetic", "FLK", H1)
    assert last == int(load_universe(platform, H1).ts[-1])
    report = collect(platform, _FlakySource(fail_after=100), H1, page_size=100)
    assert report.rows == 700
    assert load_universe(platform, H1).n_bars == 1000
