"""The backtest report opens in headless Chromium and its charts have content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from signalfactory.adapters.reports.backtest_html import render_backtest_report
from signalfactory.domain.backtest.stored import TradeRecord
from signalfactory.domain.synthetic import generate_universe
from tests.chromium import dump_dom, screenshot


def _report(tmp_path: Path) -> Path:
    bars = generate_universe(1, 300, seed=3)[0].bars
    equity = 10_000 * bars.close / bars.close[0]
    trades = [TradeRecord(symbol="SAAA", entry_ts=int(bars.ts[20]), exit_ts=int(bars.ts[60]),
                          size=10.0, entry_price=float(bars.close[20]),
                          exit_price=float(bars.close[60]), pnl=12.5, return_=0.01, fees=0.0,
                          exit_reason="signal"),
              TradeRecord(symbol="SAAA", entry_ts=int(bars.ts[100]), exit_ts=int(bars.ts[-1]),
                          size=-5.0, entry_price=float(bars.close[100]),
                          exit_price=float(bars.close[-1]), pnl=-3.0, return_=-0.002,
                          fees=0.0, exit_reason="open")]
    path = tmp_path / "report.html"
    path.write_text(render_backtest_report(
        title="SMA cross on SAAA", subtitle="1d, 300 bars",
        ts=bars.ts, open_=bars.open, high=bars.high, low=bars.low, close=bars.close,
        equity=equity, metrics={"total_return": 0.12, "sharpe": 1.3, "trades": 2},
        trades=trades), encoding="utf-8")
    return path


def test_report_is_self_contained(tmp_path: Path) -> None:
    text = _report(tmp_path).read_text()
    assert "<script src=" not in text and "http://" not in text.split("<script>")[0]
    assert "SMA cross on SAAA" in text and "total return" in text


def test_report_renders_charts_in_chromium(tmp_path: Path) -> None:
    path = _report(tmp_path)
    dom = dump_dom(path.as_uri(), tmp_path)
    assert 'data-rendered="yes"' in dom, "the chart script did not run to the end"
    assert dom.count("<canvas") >= 3
    png = screenshot(path.as_uri(), tmp_path / "shot.png", tmp_path)
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    # The price chart sits below the title; its area must hold drawn candles, i.e. plenty of
    # pixels that are neither white nor the grid's light grey.
    region = image[90:470, 30:1150]
    inked = np.count_nonzero(np.abs(region - 255).sum(axis=2) > 120)
    greenish = np.count_nonzero(region[:, :, 1] > region[:, :, 0] + 40)
    reddish = np.count_nonzero(region[:, :, 0] > region[:, :, 1] + 60)
    assert inked > 5000, inked
    assert greenish > 300 and reddish > 300, (greenish, reddish)
