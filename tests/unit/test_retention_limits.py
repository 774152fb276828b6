"""Retention limits: SIGNALFACTORY_RETENTION validated by the settings object, merged over the
defaults by ``ops.retention``, and turned into per-timeframe cutoffs (no database needed)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalfactory.domain.errors import BadInputError
from signalfactory.ops.retention import DEFAULT_RETENTION, cutoffs, days_for, retention_config
from signalfactory.settings import Settings, load_settings

NOW = datetime(2024, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_unset_means_no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNALFACTORY_RETENTION", raising=False)
    settings = load_settings()
    assert settings.retention == {}
    assert retention_config(settings) == DEFAULT_RETENTION


def test_env_json_is_parsed_into_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_RETENTION",
                       '{"bars": {"1m": 30, "1d": null}, "signals": {"*": 365}}')
    assert load_settings().retention == {"bars": {"1m": 30, "1d": None},
                                         "signals": {"*": 365}}


def test_config_file_table_is_accepted(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNALFACTORY_RETENTION", raising=False)
    cfg = tmp_path / "sf.toml"
    cfg.write_text('[signalfactory.retention.bars]\n"5m" = 20\n')
    assert load_settings(config_file=cfg).retention == {"bars": {"5m": 20}}


@pytest.mark.parametrize("raw, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"bars": 30}', "must map timeframes to days"),
    ('{"bars": {"7x": 3}}', "timeframe '7x' is not valid"),
    ('{"bars": {"1m": 0}}', "whole number of days >= 1"),
    ('{"bars": {"1m": -5}}', "whole number of days >= 1"),
    ('{"bars": {"1m": 1.5}}', "got 1.5"),
    ('{"bars": {"1m": true}}', "got True"),
    ('{"bars": {"1m": "30"}}', "got '30'"),
])
def test_bad_values_are_refused_when_settings_load(raw: str, words: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALFACTORY_RETENTION", raw)
    with pytest.raises(BadInputError) as info:
        load_settings()
    assert "SIGNALFACTORY_RETENTION" in str(info.value) or "timeframe" in str(info.value)
    assert words in str(info.value)


def test_overrides_merge_over_the_defaults_without_changing_them() -> None:
    before = copy.deepcopy(DEFAULT_RETENTION)
    settings = Settings(retention={"bars": {"1m": 7}, "signals": {"1d": None}})
    config = retention_config(settings)
    assert config["bars"]["1m"] == 7
    assert config["bars"]["5m"] == DEFAULT_RETENTION["bars"]["5m"] == 180
    assert config["signals"] == {"*": 1095, "1d": None}
    assert before == DEFAULT_RETENTION  # not mutated by the merge


def test_another_existing_table_can_get_a_limit() -> None:
    config = retention_config(Settings(retention={"ingests": {"*": 30}}))
    assert config["ingests"] == {"*": 30}


def test_an_unknown_table_is_refused_naming_it() -> None:
    with pytest.raises(BadInputError, match="'nosuchtable', which does not exist"):
        retention_config(Settings(retention={"nosuchtable": {"*": 3}}))


def test_days_for_prefers_the_timeframe_then_the_wildcard() -> None:
    rules: dict[str, int | None] = {"1m": 30, "1w": None, "*": 100}
    assert days_for(rules, "1m") == 30
    assert days_for(rules, "1w") is None  # listed as keep-forever: the wildcard does not apply
    assert days_for(rules, "1h") == 100
    assert days_for({"1m": 30}, "1h") is None


def test_cutoffs_cover_only_timeframes_with_a_limit() -> None:
    rules = DEFAULT_RETENTION["bars"]
    found = cutoffs(rules, ["1m", "1d", "1w"], NOW)
    assert found == {"1m": (90, NOW - timedelta(days=90)),
                     "1d": (3650, NOW - timedelta(days=3650))}
    assert cutoffs(rules, [], NOW) == {}
    assert cutoffs({"*": 1}, ["3m"], NOW) == {"3m": (1, NOW - timedelta(days=1))}
