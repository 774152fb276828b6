"""Strategies: built-in rule templates, Python strategies, loading, code hash, signal records."""

from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path

import numpy as np
import pytest

from signalfactory.adapters.strategies.loading import (
    ENTRY_POINT_GROUP,
    available_strategies,
    load_strategy,
)
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import Evaluation, evaluate
from signalfactory.domain.strategies import (
    BUILTIN_TEMPLATES,
    RuleStrategy,
    Strategy,
    builtin_strategy,
    code_hash,
    signal_records,
)


def make_bars(n: int, seed: int, symbol: str = "X") -> BarSeries:
    rng = np.random.default_rng(seed)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = close * (1.0 + rng.normal(0.0, 0.01, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.02, n))
    return BarSeries(symbol, 10_000 + 100 * np.arange(n, dtype=np.int64), open_, high, low,
                     close, rng.uniform(1e3, 1e5, n).round())


def universe(lengths: list[int]) -> BarUniverse:
    return BarUniverse.from_series([make_bars(n, seed=i, symbol=f"S{i}")
                                    for i, n in enumerate(lengths)])


PY_STRATEGY = '''
import numpy as np
from signalfactory.domain.rules import Evaluation


class Momentum:
    name = "momentum"
    version = "2"

    def __init__(self, lookback: int = 5) -> None:
        self.lookback = lookback

    @property
    def parameters(self):
        return {"lookback": self.lookback}

    @property
    def required_lookback(self) -> int:
        return self.lookback

    def evaluate(self, universe):
        c = universe.close
        past = np.full_like(c, np.nan)
        past[self.lookback:] = c[:-self.lookback]
        for start in universe.offsets[:-1]:
            past[start:start + self.lookback] = np.nan
        with np.errstate(invalid="ignore"):
            return Evaluation.from_arrays(universe, entry=c > past, exit=c < past,
                                          values={"past": past}, lookback=self.lookback)


class Other(Momentum):
    name = "other"


NOT_A_STRATEGY = 42
'''


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtins_check_and_signal(name: str) -> None:
    strategy = builtin_strategy(name)
    assert isinstance(strategy, Strategy)
    assert strategy.parameters == BUILTIN_TEMPLATES[name].defaults
    u = universe([600, 400])
    ev = strategy.evaluate(u)
    assert ev.entry.any() and ev.exit.any()
    assert not ev.entry[:strategy.required_lookback].any()


def test_builtin_parameters_are_substituted_as_numbers() -> None:
    s = builtin_strategy("sma_cross", fast=5, slow=20)
    assert s.text == ("entry: crosses_above(sma(close, 5), sma(close, 20))\n"
                      "exit: crosses_below(sma(close, 5), sma(close, 20))")
    assert s.required_lookback == 20
    assert builtin_strategy("bollinger_breakout", width=1.5).text.count("1.5") == 4
    manual = evaluate("entry: crosses_above(sma(close, 5), sma(close, 20))", make_bars(300, 1))
    np.testing.assert_array_equal(s.evaluate(make_bars(300, 1)).entry, manual.entry)


@pytest.mark.parametrize(("name", "params", "fragment"), [
    ("sma_cross", {"fast": 30, "slow": 10}, "fast (30) must be less than slow (10)"),
    ("sma_cross", {"fsat": 3}, "no parameter 'fsat'"),
    ("sma_cross", {"fast": "10); exit: close > 0 #"}, "must be a number"),
    ("sma_cross", {"fast": 2.5}, "whole number"),
    ("rsi_mean_reversion", {"oversold": 120}, "at most 100"),
    ("donchian_breakout", {"entry_period": 0}, "at least 1"),
    ("nope", {}, "unknown built-in strategy 'nope'"),
])
def test_bad_builtin_parameters(name: str, params: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        builtin_strategy(name, **params)


def test_rule_code_hash_is_insensitive_to_layout_but_not_to_meaning() -> None:
    a = RuleStrategy.from_text("a", "entry: rsi(close,14)<30 # buy dips\nexit: rsi(close,14)>70")
    b = RuleStrategy.from_text("b", "EXIT:  RSI(close, 14) > 70 ; entry: rsi(close, 14) < 30")
    c = RuleStrategy.from_text("c", "entry: rsi(close, 14) < 31; exit: rsi(close, 14) > 70")
    assert code_hash(a) == code_hash(b)
    assert code_hash(a) != code_hash(c)
    assert len(code_hash(a)) == 64
    assert code_hash(builtin_strategy("sma_cross")) != code_hash(builtin_strategy("sma_cross",
                                                                                  fast=9))


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_load_python_strategy_from_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mom.py", PY_STRATEGY)
    strategy = load_strategy(f"{path}:Momentum", {"lookback": 3})
    assert isinstance(strategy, Strategy)
    assert (strategy.name, strategy.version, strategy.required_lookback) == ("momentum", "2", 3)
    u = universe([30, 20])
    ev = strategy.evaluate(u)
    assert isinstance(ev, Evaluation)
    assert not ev.entry[u.offsets[1]:u.offsets[1] + 3].any()
    records = signal_records(ev)
    assert records and all(r.values.keys() <= {"past"} for r in records)
    # same file, same module: loading twice gives the same class and the same hash
    again = load_strategy(f"{path}:Momentum")
    assert type(again) is type(strategy)
    assert code_hash(again) == code_hash(strategy)
    other = load_strategy(f"{path}:Other")
    assert code_hash(other) != code_hash(strategy)


def test_python_code_hash_follows_the_source(tmp_path: Path) -> None:
    one = load_strategy(f"{write(tmp_path, 'one.py', PY_STRATEGY)}:Momentum")
    two = load_strategy(f"{write(tmp_path, 'two.py', PY_STRATEGY + '# changed')}:Momentum")
    same = load_strategy(f"{write(tmp_path, 'three.py', PY_STRATEGY)}:Momentum")
    assert code_hash(one) == code_hash(same)
    assert code_hash(one) != code_hash(two)


def test_load_from_module_path_and_entry_point(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "sf_test_plugin.py", PY_STRATEGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_strategy("sf_test_plugin:Momentum").name == "momentum"
    fake = importlib.metadata.EntryPoint(name="mom", value="sf_test_plugin:Momentum",
                                         group=ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints([fake])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert available_strategies()["mom"] == "sf_test_plugin:Momentum"
    assert available_strategies()["sma_cross"] == "builtin"
    assert load_strategy("mom", {"lookback": 7}).required_lookback == 7
    assert load_strategy("sma_cross").name == "sma_cross"


@pytest.mark.parametrize(("ref", "fragment"), [
    ("no_such_strategy", "unknown strategy 'no_such_strategy'"),
    ("{tmp}/missing.py:X", "does not exist"),
    ("{tmp}/mom.py:Missing", "defines no 'Missing'"),
    ("{tmp}/mom.py:NOT_A_STRATEGY", "neither a strategy nor a class"),
    ("{tmp}/broken.py:X", "failed to import: SyntaxError"),
    ("no_such_module_xyz:X", "not found"),
    ("{tmp}/mom.py:Momentum", "rejected its parameters"),
])
def test_load_errors_are_bad_input(tmp_path: Path, ref: str, fragment: str) -> None:
    write(tmp_path, "mom.py", PY_STRATEGY)
    write(tmp_path, "broken.py", "def (:\n")
    params = {"bogus": 1} if ref.endswith("Momentum") else None
    with pytest.raises(BadInputError, match=fragment):
        load_strategy(ref.format(tmp=tmp_path), params)


def test_signal_records() -> None:
    u = universe([40, 0, 30])
    rule = ("entry: close > close[1] and close[1] > close[2]\n"
            "exit: close < close[1]\nshort_entry: close < close[1] and close[1] < close[2]")
    ev = evaluate(rule, u)
    records = signal_records(ev)
    assert [r.row for r in records] == sorted(r.row for r in records)
    sides = {"long": ev.entry, "short": ev.short_entry, "exit": ev.exit}
    assert len(records) == sum(int(v.sum()) for v in sides.values())
    for r in records:
        assert sides[r.side][r.row]
        assert r.symbol == u.symbols[r.instrument] and r.instrument in (0, 2)
        assert r.row == int(u.offsets[r.instrument]) + r.bar
        assert r.ts == int(u.ts[r.row]) and r.price == float(u.close[r.row])
        # undefined values (close[2] on an instrument's second bar) are left out
        assert set(r.values) == ({"close[1]", "close[2]"} if r.bar >= 2 else {"close[1]"})
        assert r.values["close[1]"] == float(u.close[r.row - 1])
        if r.side == "exit" and not (ev.entry[r.row] or ev.short_entry[r.row]):
            assert r.score is None  # the default score ranks entries; a bar's score is shared
        else:
            assert r.score is not None and 0 <= r.score <= 1
    short_and_exit = [r for r in records if r.side == "short"]
    assert short_and_exit and all(ev.exit[r.row] for r in short_and_exit)


def test_signal_records_since_and_last_bar() -> None:
    u = universe([40, 30, 0])
    ev = evaluate("entry: close > 0; exit: close > 0", u)
    last = signal_records(ev, last_bar_only=True)
    assert [(r.instrument, r.bar, r.side) for r in last] == [
        (0, 39, "long"), (0, 39, "exit"), (1, 29, "long"), (1, 29, "exit")]
    since = int(u.ts[u.offsets[0] + 35])
    recent = signal_records(ev, since_ts=since)
    assert {r.bar for r in recent if r.instrument == 0} == set(range(35, 40))
    assert all(r.ts >= since for r in recent)
    assert signal_records(evaluate("entry: close < 0", u)) == []
