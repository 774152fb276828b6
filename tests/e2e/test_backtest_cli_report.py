"""`signalfactory backtest` as a user runs it: JSON output, the same id and numbers on a second
run, bad options exit 2 with the store unchanged, and the --report page renders its charts in
headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.chromium import dump_dom, screenshot
from tests.helpers import cli, fingerprint

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


def _json(*args: str) -> dict[str, Any]:
    result = cli("backtest", *args, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _assert_chart_drawn(png: Path) -> None:
    """Same pixel checks as the renderer's own test: candles drawn in the price chart."""
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    region = image[90:470, 30:1150]
    inked = np.count_nonzero(np.abs(region - 255).sum(axis=2) > 120)
    greenish = np.count_nonzero(region[:, :, 1] > region[:, :, 0] + 40)
    reddish = np.count_nonzero(region[:, :, 0] > region[:, :, 1] + 60)
    assert inked > 5000, inked
    assert greenish > 300 and reddish > 300, (greenish, reddish)


def test_json_output_is_deterministic_and_bad_options_change_nothing(
        sf_env: dict[str, str]) -> None:
    assert cli("sample", "--symbols", "5", "--bars", "300").exit_code == 0
    args = ("--strategy", "sma_cross", "--symbol", "SAAC", "--fees", "0.001", "--slippage",
            "3", "--size", "cash:5000", "--units", "fractional", "--fill", "next_open")
    first = _json(*args)
    assert {"id", "metrics", "final_equity", "trades", "per_symbol", "data_range",
            "config"} <= set(first)
    assert first["reused"] is False and first["trades"]
    assert first["config"]["sizing"] == "cash" and first["config"]["whole_units"] is False
    trade = first["trades"][0]
    assert {"entry_ts", "exit_ts", "size", "entry_price", "exit_price", "pnl", "return",
            "exit_reason"} <= set(trade)
    assert trade["size"] != round(trade["size"]), "fractional units"
    before = fingerprint()
    second = _json(*args)
    assert second["reused"] is True and second["id"] == first["id"]
    assert {k: v for k, v in second.items() if k != "reused"} == \
        {k: v for k, v in first.items() if k != "reused"}
    assert fingerprint() == before, "the second run stored nothing"

    for bad in (["--size", "lots"], ["--fees", "-0.001"], ["--from", "2016-01-01", "--to",
                                                           "2015-01-01"],
                ["--symbol", "NOPE"], ["--from", "2031-01-01"], ["--direction", "up"]):
        result = cli("backtest", "--strategy", "sma_cross", "--symbol", "SAAC", *bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "error:" in result.stderr, bad
    bad_rule = cli("backtest", "--rule", "entry: close >", "--symbol", "SAAC")
    assert bad_rule.exit_code == 2 and "position" in bad_rule.stderr
    no_target = cli("backtest", "--strategy", "sma_cross")
    assert no_target.exit_code == 2 and "--universe" in no_target.stderr
    assert fingerprint() == before

    table = cli("backtest", *args)
    assert table.exit_code == 0 and "stored result reused" in table.stdout
    assert "final equity" in table.stdout


def test_report_renders_in_chromium(sf_env: dict[str, str], tmp_path: Path) -> None:
    assert cli("sample", "--symbols", "5", "--bars", "300").exit_code == 0
    single = tmp_path / "single.html"
    result = _json("--strategy", "sma_cross", "--symbol", "SAAA", "--direction", "both",
                   "--report", str(single))
    assert result["report"] == str(single)
    text = single.read_text()
    assert "<script src=" not in text and "sma_cross v1 on SAAA" in text
    dom = dump_dom(single.as_uri(), tmp_path)
    assert 'data-rendered="yes"' in dom, "the chart script did not run to the end"
    assert dom.count("<canvas") >= 3
    _assert_chart_drawn(screenshot(single.as_uri(), tmp_path / "single.png", tmp_path))

    universe = tmp_path / "out" / "universe.html"
    ran = cli("backtest", "--rule", "entry: close > sma(close, 10)\nexit: close < "
              "sma(close, 10)", "--universe", "universe=sample", "--report", str(universe))
    assert ran.exit_code == 0, ran.output
    assert "best symbols" in ran.stdout
    page = universe.read_text()
    assert "best of 5 symbols by total return" in page
    _assert_chart_drawn(screenshot(universe.as_uri(), tmp_path / "universe.png", tmp_path))
