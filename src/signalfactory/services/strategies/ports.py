"""Ports of the strategy catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from signalfactory.domain.strategies.stored import (
    BuiltinInterest,
    NewStrategy,
    NewStrategyVersion,
    StoredStrategy,
    StrategyRun,
)


class StrategyRepository(Protocol):
    """Stored strategies, their versions and their evaluation runs.

    "Visible to a tenant" means the tenant's own strategies and the built-ins; where both
    have a name, the tenant's own wins.
    """

    def strategy_id(self, tenant_id: int, name: str) -> int | None:
        """The id of the tenant's own strategy ``name`` (built-ins of other owners aside)."""
        ...

    def create(self, strategy: NewStrategy) -> int:
        """Store a new strategy row (no version yet); returns its id."""
        ...

    def add_version(self, version: NewStrategyVersion) -> int:
        """Store a new version of an existing strategy; returns the version id."""
        ...

    def newest(self, strategy_id: int) -> StoredStrategy | None:
        """The strategy's highest version, None before it has one."""
        ...

    def version(self, version_id: int) -> StoredStrategy | None:
        """One version by its id (what a bot trades), None when there is none."""
        ...

    def find(self, tenant_id: int, name: str,
             version: int | None = None) -> StoredStrategy | None:
        """A visible strategy by name: its newest version, or ``version``."""
        ...

    def visible(self, tenant_id: int) -> list[StoredStrategy]:
        """Newest version of each strategy visible to the tenant, by name."""
        ...

    def history(self, strategy_id: int) -> list[StoredStrategy]:
        """Every version of a strategy, oldest first."""
        ...

    def watched(self, timeframe: str, builtins: BuiltinInterest) -> list[StoredStrategy]:
        """Newest versions on ``timeframe`` of every tenant's own strategies and of the
        built-ins ``builtins`` asks for, in version id order (live evaluation)."""
        ...

    def record_run(self, run: StrategyRun) -> int:
        """Store one evaluation of a version; returns the run id."""
        ...

    def record_runs(self, runs: Sequence[StrategyRun]) -> None:
        """Store several evaluations at once (live evaluation's, one per watched version)."""
        ...

    def versions_stamp(self) -> tuple[int, int]:
        """How many strategy versions are stored and the highest id (0, 0: none).

        Strategies and versions are only ever added, and a strategy counts (``visible``,
        ``watched``) from its first version on, so the stamp changes with every change to
        what ``watched`` returns for the same ``builtins``. The count covers a lower id that
        commits after a higher one (PostgreSQL sequences)."""
        ...
