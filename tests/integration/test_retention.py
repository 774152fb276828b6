"""Retention per table and timeframe: `data prune --dry-run` counts and deletes nothing; the
real prune deletes exactly what it announced, on both backends and both bar stores."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.ops.retention import DEFAULT_RETENTION, apply_retention, retention_config
from signalfactory.services.marketdata.bars import SymbolBars, load_universe, write_bars
from signalfactory.services.platform import Platform
from signalfactory.settings import load_settings
from tests.helpers import cli, engine_of, fingerprint
from tests.integration.backup_fixtures import add_signals, parse_json

NOW = datetime.now(UTC).replace(microsecond=0)


def _bars(symbol: str, start: datetime, n: int, step: timedelta) -> SymbolBars:
    ts = np.array([int((start + i * step).timestamp()) * 1_000_000_000 for i in range(n)],
                  dtype=np.int64)
    close = 100 + np.arange(n, dtype=np.float64)
    return SymbolBars(InstrumentSpec(symbol), ts, close, close + 1, close - 1, close,
                      np.ones(n))


def _populate(platform: Platform) -> None:
    minute = timedelta(minutes=1)
    write_bars(platform, Timeframe.parse("1m"), [
        _bars("AAA", NOW - timedelta(days=200), 30, minute),   # past 90 days: goes
        _bars("BBB", NOW - timedelta(days=200), 20, minute),   # goes
        _bars("AAA", NOW - timedelta(days=2), 40, minute),     # stays
    ], source="test")
    write_bars(platform, Timeframe.parse("1d"), [
        _bars("AAA", NOW - timedelta(days=365 * 12), 15, timedelta(days=1)),  # past 10 years
        _bars("AAA", NOW - timedelta(days=60), 25, timedelta(days=1)),
    ], source="test")
    add_signals(platform, [NOW - timedelta(days=365 * 4 + d) for d in range(3)]
                + [NOW - timedelta(days=3), NOW - timedelta(days=6)])


def _planned(items: list[dict[str, object]]) -> dict[tuple[str, str], int]:
    return {(str(i["table"]), str(i["timeframe"])): int(i["rows"]) for i in items}  # type: ignore[call-overload]


def test_dry_run_then_prune(platform: Platform) -> None:
    _populate(platform)
    before = fingerprint()
    dry = cli("data", "prune", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    expected = {("bars", "1m"): 50, ("bars", "1d"): 15, ("signals", "1d"): 3}
    assert _planned(parse_json(dry.stdout)["items"]) == expected
    assert fingerprint() == before, "a dry run deleted something"

    human = cli("data", "prune", "--dry-run")
    assert "would delete" in human.stdout and "signals" in human.stdout

    done = cli("data", "prune", "--json")
    assert done.exit_code == 0, done.output
    report = parse_json(done.stdout)
    assert _planned(report["planned"]) == expected and report["rows"] == 68
    if not platform.settings.is_sqlite:  # the whole 12-years-old yearly partition went
        assert any(report["items"][i]["partitions"] for i in range(len(report["items"])))

    minute = load_universe(platform, Timeframe.parse("1m"))
    assert minute.n_bars == 40 and set(minute.symbols) >= {"AAA"}
    daily = load_universe(platform, Timeframe.parse("1d"))
    assert daily.n_bars == 25
    assert daily.ts.min() >= int((NOW - timedelta(days=61)).timestamp()) * 1_000_000_000
    with engine_of(platform).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM signals").scalar() == 2
    again = parse_json(cli("data", "prune", "--dry-run", "--json").stdout)
    assert again["items"] == []  # nothing left to prune


@pytest.mark.parametrize("backend", ["sqlite"])
def test_configured_limits_override_defaults(platform: Platform,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _populate(platform)
    monkeypatch.setenv("SIGNALFACTORY_RETENTION",
                       '{"bars": {"1m": 1, "1d": null}, "signals": {"1d": 5}}')
    # The limits are a setting: a platform built from the changed environment sees them.
    platform = dataclasses.replace(platform, settings=load_settings())
    report = apply_retention(platform, dry_run=True)
    counts = {(i.table, i.timeframe): i.rows for i in report.items}
    # 1m: everything older than one day (the 40 recent bars are two days old);
    # 1d bars kept forever; signals older than 5 days: 3 old + the 6-day-old one.
    assert counts == {("bars", "1m"): 90, ("signals", "1d"): 4}
    assert retention_config(platform.settings)["bars"]["5m"] == DEFAULT_RETENTION["bars"]["5m"]


@pytest.mark.parametrize("raw, words", [
    ("{not json", "not valid JSON"),
    ('{"bars": {"1m": 0}}', "whole number of days"),
    ('{"bars": {"7x": 3}}', "timeframe"),
    ('{"nosuchtable": {"*": 3}}', "does not exist"),
])
def test_bad_retention_settings_are_refused(raw: str, words: str,
                                            monkeypatch: pytest.MonkeyPatch,
                                            sf_env: dict[str, str]) -> None:
    monkeypatch.setenv("SIGNALFACTORY_RETENTION", raw)
    result = cli("data", "prune", "--dry-run")
    assert result.exit_code == 2 and words in result.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_prune_is_one_transaction(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure half-way (after the bars, before the signals) deletes nothing at all."""
    from signalfactory.ops import retention

    _populate(platform)
    before = fingerprint()

    def broken(*_args: object, **_kwargs: object) -> list[object]:
        raise sa.exc.OperationalError("DELETE", {}, Exception("disk I/O error"))

    monkeypatch.setattr(retention, "_plain_table", broken)
    with pytest.raises(sa.exc.OperationalError):
        apply_retention(platform)
    assert fingerprint() == before
