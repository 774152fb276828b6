"""Ports of the strategy sandbox: where uploaded Python runs, and where its runs are recorded."""

from __future__ import annotations

from typing import Protocol

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.sandbox import ProgramInfo, SandboxProgram, SandboxResult, SandboxRun


class StrategySandbox(Protocol):
    """Runs uploaded strategies outside the server process, under limits.

    Both calls raise ``SandboxError`` (``limit`` names what stopped the program) when the
    program fails, breaks a limit or answers something the platform refuses, and
    ``TemporaryError`` when no worker could be had in time.
    """

    def load(self, program: SandboxProgram) -> ProgramInfo:
        """Load the program in a worker (module body and constructor run) and describe it."""
        ...

    def evaluate(self, program: SandboxProgram, universe: BarUniverse) -> SandboxResult:
        """The program's evaluation of ``universe``, checked against it."""
        ...

    def close(self) -> None:
        """Stop every worker process."""
        ...


class SandboxRunRepository(Protocol):
    """Every call into the sandbox, succeeded or not (the audit trail of uploaded code)."""

    def add(self, run: SandboxRun) -> int:
        """Store one run; returns its id."""
        ...

    def recent(self, tenant_id: int, *, strategy_version_id: int | None = None,
               limit: int = 100) -> list[tuple[int, SandboxRun]]:
        """The tenant's runs, newest first, with their ids."""
        ...
