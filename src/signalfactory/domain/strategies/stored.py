"""Stored strategies as the catalog keeps them: a strategy, its versions, its evaluation runs.

Every change of a strategy's code is a new version; a version never changes, so a version id
names exactly one piece of code (evaluations, signals and scans point at it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from signalfactory.domain.strategies.base import StrategyParam


@dataclass(frozen=True)
class StoredStrategy:
    """One version of a stored strategy, with what its strategy row says about it.

    A rule strategy has ``rule_text``. A Python strategy has ``class_path``: with ``source``
    set it was uploaded, ``class_path`` names the class in that source, ``code_hash`` is the
    source's sha256 and it only ever runs in the sandbox; without ``source`` it is an
    operator's installed plug-in (an entry point or module path) imported in-process.
    ``versions`` counts the strategy's versions where the reader counted them (a listing);
    elsewhere it is 1.
    """

    id: int
    version_id: int
    tenant_id: int
    name: str
    kind: str
    version: int
    rule_text: str | None
    class_path: str | None
    parameters: Mapping[str, StrategyParam]
    timeframe: str
    code_hash: str
    created_by: str
    created_at: datetime | None
    builtin: bool
    description: str = ""
    versions: int = 1
    source: str | None = None

    @property
    def sandboxed(self) -> bool:
        """Uploaded source: runs in the sandbox only."""
        return self.source is not None


@dataclass(frozen=True)
class NewStrategy:
    """A strategy row to create (its first version follows as a ``NewStrategyVersion``)."""

    tenant_id: int
    name: str
    kind: str
    description: str = ""
    builtin: bool = False


@dataclass(frozen=True)
class NewStrategyVersion:
    strategy_id: int
    version: int
    rule_text: str | None
    class_path: str | None
    parameters: Mapping[str, StrategyParam]
    timeframe: str
    code_hash: str
    created_by: str
    source: str | None = None


@dataclass(frozen=True)
class StrategyRun:
    """One evaluation of a strategy version: succeeded, or failed with its error."""

    strategy_version_id: int
    timeframe: str
    status: str
    error: str | None
    instruments: int
    signals_written: int
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class BuiltinInterest:
    """Which built-in strategies some subscription wants evaluated live.

    ``every``: a subscription names no strategy (meaning everything it can see), so every
    built-in is wanted; otherwise the built-ins named in ``names``.
    """

    every: bool = False
    names: frozenset[str] = field(default_factory=frozenset)
