"""In-memory market-data sources (the ``SourceRepository`` port)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from signalfactory.domain.errors import ConflictError, NotFoundError
from signalfactory.domain.sources import (
    BreakerCounter,
    BreakerState,
    NewSource,
    RunState,
    Source,
    SourceGap,
)
from signalfactory.testing.memory import MemoryState


@dataclass
class SourceStore:
    rows: dict[str, Source] = field(default_factory=dict)
    next_id: int = 1
    gaps: dict[tuple[str, str, str, int], SourceGap] = field(default_factory=dict)


class MemorySourceRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = state.store("sources", SourceStore)

    def _found(self, name: str) -> Source:
        found = self.data.rows.get(name)
        if found is None:
            raise NotFoundError(f"no source {name!r}")
        return found

    def add(self, new: NewSource, now: datetime) -> Source:
        if new.name in self.data.rows:
            raise ConflictError(f"a source named {new.name!r} exists; choose another name "
                                "or remove it first")
        row = Source(id=self.data.next_id, created_at=now, updated_at=now,
                     **dataclasses.asdict(new))
        self.data.rows[new.name] = row
        self.data.next_id += 1
        return row

    def get(self, name: str) -> Source | None:
        return self.data.rows.get(name)

    def all(self) -> list[Source]:
        return [self.data.rows[n] for n in sorted(self.data.rows)]

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        found = self.data.rows.get(name)
        if found is None:
            return False
        self.data.rows[name] = dataclasses.replace(found, paused=paused, updated_at=now)
        return True

    def delete(self, name: str) -> bool:
        self.data.gaps = {k: v for k, v in self.data.gaps.items() if k[0] != name}
        return self.data.rows.pop(name, None) is not None

    def record_run(self, name: str, run: RunState) -> None:
        found = self.data.rows.get(name)
        if found is None:
            return
        kept = {key: value for key, value in dataclasses.asdict(run).items()
                if value is not None or key == "last_error"}
        self.data.rows[name] = dataclasses.replace(
            found, run=dataclasses.replace(found.run, **kept))

    def breaker(self, name: str) -> BreakerState:
        return self._found(name).breaker

    def _set(self, name: str, **changes: object) -> None:
        found = self._found(name)
        self.data.rows[name] = dataclasses.replace(
            found, breaker=dataclasses.replace(found.breaker, **changes))  # type: ignore[arg-type]

    def set_breaker_state(self, name: str, state: str, *, expect: str | None = None,
                          opened_at: datetime | None = None) -> bool:
        found = self.data.rows.get(name)
        if found is None or (expect is not None and found.breaker.state != expect):
            return False
        changes: dict[str, object] = {"state": state}
        if opened_at is not None:
            changes["opened_at"] = opened_at
        self._set(name, **changes)
        return True

    def bump_breaker(self, name: str, counter: BreakerCounter) -> None:
        self._set(name, **{counter: getattr(self._found(name).breaker, counter) + 1})

    def reset_breaker(self, name: str, counter: BreakerCounter) -> None:
        self._set(name, **{counter: 0})

    def add_gaps(self, name: str, gaps: Sequence[SourceGap], now: datetime) -> int:
        self._found(name)
        added = 0
        for gap in gaps:
            key = (name, gap.symbol, gap.timeframe, gap.start_ns)
            if key not in self.data.gaps:
                self.data.gaps[key] = gap
                added += 1
        return added

    def gaps(self, name: str, *, symbol: str | None = None,
             timeframe: str | None = None) -> list[SourceGap]:
        return [g for k, g in sorted(self.data.gaps.items())
                if k[0] == name and (symbol is None or g.symbol == symbol)
                and (timeframe is None or g.timeframe == timeframe)]
