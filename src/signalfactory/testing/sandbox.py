"""The sandbox's run log in memory. (There is no in-process fake of the sandbox itself, on
purpose: uploaded code runs in worker processes, in tests too; ``memory_platform()`` has a
real ``ProcessSandbox``, started on first use.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from signalfactory.domain.sandbox import SandboxRun
from signalfactory.testing.memory import MemoryState


@dataclass
class SandboxRunStore:
    runs: dict[int, SandboxRun] = field(default_factory=dict)


def sandbox_run_store(state: MemoryState) -> SandboxRunStore:
    return state.store("sandbox_runs", SandboxRunStore)


class MemorySandboxRunRepository:
    def __init__(self, state: MemoryState) -> None:
        self.store = sandbox_run_store(state)

    def add(self, run: SandboxRun) -> int:
        new_id = len(self.store.runs) + 1
        self.store.runs[new_id] = run
        return new_id

    def recent(self, tenant_id: int, *, strategy_version_id: int | None = None,
               limit: int = 100) -> list[tuple[int, SandboxRun]]:
        found = [(i, r) for i, r in self.store.runs.items() if r.tenant_id == tenant_id
                 and (strategy_version_id is None
                      or r.strategy_version_id == strategy_version_id)]
        return sorted(found, key=lambda item: -item[0])[:limit]
