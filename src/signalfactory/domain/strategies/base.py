"""What a strategy is (a Protocol), the rule-backed strategy, and a strategy's code hash."""

from __future__ import annotations

import hashlib
import marshal
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.rules import Evaluation, RuleSet, check_rule, evaluate
from signalfactory.domain.rules.evaluator import ValuesMode

StrategyParam = int | float | str | bool


@runtime_checkable
class Strategy(Protocol):
    """A signal generator. Python strategies are trusted code an operator installed.

    ``evaluate`` returns the same ``Evaluation`` a rule does (build one with
    ``Evaluation.from_arrays``), aligned to the universe's rows.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, StrategyParam]: ...

    @property
    def required_lookback(self) -> int:
        """Bars of history needed before the first bar a signal can be trusted on."""
        ...

    def evaluate(self, universe: BarUniverse) -> Evaluation: ...


@dataclass(frozen=True, eq=False)
class RuleStrategy:
    """A strategy defined by a rule text (see ``signalfactory.domain.rules``)."""

    name: str
    rule: RuleSet
    version: str = "1"
    parameters: Mapping[str, StrategyParam] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_text(cls, name: str, text: str, *, version: str = "1",
                  parameters: Mapping[str, StrategyParam] | None = None,
                  description: str = "") -> RuleStrategy:
        """Check ``text`` (BadInputError with position if it is wrong) and wrap it."""
        return cls(name=name, rule=check_rule(text), version=version,
                   parameters=dict(parameters or {}), description=description)

    @property
    def text(self) -> str:
        """The rule in canonical form."""
        return self.rule.canonical_text

    @property
    def required_lookback(self) -> int:
        return self.rule.lookback

    def evaluate(self, universe: BarUniverse | BarSeries, *,
                 values: ValuesMode = "signals") -> Evaluation:
        return evaluate(self.rule, universe, values=values)


def code_hash(strategy: Strategy) -> str:
    """sha256 (hex) of what the strategy runs.

    A rule strategy hashes its canonical rule text, so whitespace, comments and letter case do
    not change it but any parameter value does. A Python strategy hashes the source of the
    module defining its class (read through the module's importlib loader) plus the class
    name; if the source is not available, the bytecode of the class's functions.
    """
    if isinstance(strategy, RuleStrategy):
        return _sha256("rule\n" + strategy.text)
    cls = type(strategy)
    module = sys.modules.get(cls.__module__)
    source = _module_source(module)
    if source is not None:
        return _sha256(f"python\n{cls.__qualname__}\n{source}")
    codes = [marshal.dumps(v.__code__) for _, v in sorted(vars(cls).items())
             if hasattr(v, "__code__")]
    return hashlib.sha256(b"python-bytecode\n" + cls.__qualname__.encode()
                          + b"".join(codes)).hexdigest()


def _module_source(module: types.ModuleType | None) -> str | None:
    if module is None:
        return None
    loader = getattr(module, "__loader__", None)
    get_source = getattr(loader, "get_source", None)
    if get_source is None:
        return None
    try:
        source = get_source(module.__name__)
    except (ImportError, OSError):
        return None
    return source if isinstance(source, str) else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
