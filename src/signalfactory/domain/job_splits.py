"""A job split into chunks: each chunk is a child job of its own, and the parent's counter row
says how many chunks are done (``job_splits``, ``job_split_chunks``; migration 0016).

A chunk's result is counted once, in the transaction that stores it and finishes the chunk's
job under its lease, so a chunk whose worker was killed and that ran again is never counted
twice; ``executions`` records every start, so a redone chunk can be seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class ChunkState:
    index: int
    job_id: str
    executions: int  # how many times a worker started it
    finished: bool
    seconds: float | None  # how long its finishing execution computed


@dataclass(frozen=True)
class SplitState:
    parent_job_id: str
    kind: str  # the chunks' job kind
    total: int
    done: int
    chunks: tuple[ChunkState, ...]  # by index

    @property
    def complete(self) -> bool:
        return self.done >= self.total


class Completion(NamedTuple):
    """The counter after a chunk's result was offered."""

    done: int
    total: int
    counted: bool  # this call counted the chunk (False: counted before, or no such chunk)
