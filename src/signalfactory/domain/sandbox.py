"""Uploaded Python strategies run in a sandbox: what goes in, what comes out, what is recorded.

The sandbox itself (worker processes under limits) is ``signalfactory.adapters.sandbox``;
its port is ``signalfactory.services.sandbox.ports.StrategySandbox``. These are the values
that cross it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from signalfactory.domain.errors import SignalFactoryError
from signalfactory.domain.strategies.base import StrategyParam

if TYPE_CHECKING:
    # the rules package loads the indicators (TA-Lib); the composition root imports this
    # module for SandboxLimits and must not pay for them
    from signalfactory.domain.rules import Evaluation

#: the limits a run can break, as named in errors and in ``sandbox_runs.limit_hit``
LIMITS = ("cpu", "memory", "wall", "output", "recursion", "refused", "crash", "files")


class SandboxError(SignalFactoryError):
    """An uploaded strategy failed in the sandbox: its own exception, a limit it broke
    (``limit`` names it: cpu, memory, wall, output, recursion, refused, crash), or a result
    the platform refused. The platform itself is fine; the strategy must be fixed."""

    code = "sandbox"

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.detail = message


def source_sha256(source: str) -> str:
    """The code hash of an uploaded strategy: sha256 of its UTF-8 source, as ``sha256sum``
    prints it for the file."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SandboxLimits:
    """What one call may use. ``memory_mb`` is address space on top of the worker's own
    (numpy, pandas and TA-Lib preloaded); ``cpu_seconds`` and ``wall_seconds`` are per call."""

    cpu_seconds: float = 10.0
    memory_mb: int = 1024
    wall_seconds: float = 30.0
    open_files: int = 64

    def describe(self, limit: str) -> str:
        """The limit's name and value, as errors quote them."""
        return {"cpu": f"CPU time limit ({self.cpu_seconds:g} s)",
                "memory": f"memory limit ({self.memory_mb} MB)",
                "wall": f"wall-clock limit ({self.wall_seconds:g} s)",
                "files": f"open files limit ({self.open_files})"}.get(limit, limit)


@dataclass(frozen=True)
class SandboxProgram:
    """An uploaded strategy as the sandbox runs it: its source, the class to instantiate
    with ``parameters``, and the source's sha256 (the identity workers are pooled by)."""

    source: str
    class_name: str
    parameters: Mapping[str, StrategyParam] = field(default_factory=dict)
    code_hash: str = ""

    def __post_init__(self) -> None:
        if not self.code_hash:
            object.__setattr__(self, "code_hash", source_sha256(self.source))

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, StrategyParam], ...]]:
        """Workers are reused for exactly this: the same code, class and parameters."""
        return (self.code_hash, self.class_name, tuple(sorted(self.parameters.items())))


@dataclass(frozen=True)
class ProgramInfo:
    """What a worker learned loading a program (checked by the parent)."""

    name: str
    version: str
    required_lookback: int
    parameters: Mapping[str, StrategyParam]


@dataclass(frozen=True)
class SandboxResult:
    """A sandboxed evaluation: the checked ``Evaluation`` (values kept at the signal rows
    only), what the worker said about the program, whether the worker was started for this
    call, and how long the call took end to end."""

    evaluation: Evaluation
    info: ProgramInfo
    fresh_worker: bool
    seconds: float


@dataclass(frozen=True)
class SandboxRun:
    """One call into the sandbox, as ``sandbox_runs`` records it."""

    strategy_version_id: int | None
    tenant_id: int
    code_hash: str
    purpose: str
    instruments: int
    bars: int
    first_bar: datetime | None
    last_bar: datetime | None
    started_at: datetime
    duration_ms: float
    outcome: str  # succeeded | failed
    limit_hit: str | None = None
    error: str | None = None
    signals: int = 0
    fresh_worker: bool = False
