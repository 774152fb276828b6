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
    """A signal generator: a rule, an operator's installed Python plug-in (trusted, run
    in-process), or uploaded Python run in the sandbox (``services.sandbox.strategies``).

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


class PythonStrategy:
    """A convenient base for Python strategies (installed plug-ins and uploaded ones alike).

    Subclasses set ``name``, ``version``, ``defaults`` (the parameters and their default
    values) and ``required_lookback`` (an int, or a property computed from the parameters),
    and implement ``evaluate(universe)`` returning an ``Evaluation``::

        class SmaCross(PythonStrategy):
            name = "sma_cross_py"
            defaults = {"fast": 10, "slow": 30}

            @property
            def required_lookback(self) -> int:
                return int(self.parameters["slow"])

            def evaluate(self, universe):
                ...
                return Evaluation.from_arrays(universe, entry=..., exit=...)

    The constructor takes the parameters as keyword arguments; unknown names are a
    ``TypeError`` (so a stored version with a misspelt parameter is refused at upload).
    """

    name: str = "python"
    version: str = "1"
    defaults: Mapping[str, StrategyParam] = {}
    required_lookback: int = 0

    def __init__(self, **parameters: StrategyParam) -> None:
        unknown = sorted(set(parameters) - set(self.defaults))
        if unknown:
            raise TypeError(f"unknown parameter(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(self.defaults)) or 'none'}")
        self.parameters: Mapping[str, StrategyParam] = {**self.defaults, **parameters}

    def evaluate(self, universe: BarUniverse) -> Evaluation:
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate(universe)")


@runtime_checkable
class SourceHashed(Protocol):
    """A strategy that knows the hash of its source (an uploaded one, run in the sandbox)."""

    @property
    def source_sha256(self) -> str: ...


def code_hash(strategy: Strategy) -> str:
    """sha256 (hex) of what the strategy runs.

    An uploaded Python strategy hashes its source as uploaded (``SourceHashed``), so the hash
    is the one ``sha256sum`` prints for the file.

    A rule strategy hashes its canonical rule text, so whitespace, comments and letter case do
    not change it but any parameter value does. A Python strategy hashes the source of the
    module defining its class (read through the module's importlib loader) plus the class
    name; if the source is not available, the bytecode of the class's functions.
    """
    if isinstance(strategy, RuleStrategy):
        return _sha256("rule\n" + strategy.text)
    if isinstance(strategy, SourceHashed):
        return strategy.source_sha256
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
