"""Uploaded Python strategies: checked and probed at upload, run only in the sandbox, every
run recorded.

``SandboxedStrategy`` is the ``Strategy`` every evaluation path gets for a stored version
with uploaded source (signals, live evaluation on bar writes, scans, backtests): the same
code in the same sandbox whichever path runs it. Its ``evaluate`` sends the bars to the
platform's ``StrategySandbox`` and records the call in ``sandbox_runs`` (strategy version,
code hash, input range, duration, outcome, the limit that stopped it), in its own short
transaction, whether the call succeeded or not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import BadInputError, TemporaryError
from signalfactory.domain.rules import Evaluation
from signalfactory.domain.sandbox import (
    ProgramInfo,
    SandboxError,
    SandboxProgram,
    SandboxRun,
    source_sha256,
)
from signalfactory.domain.strategies.base import StrategyParam
from signalfactory.domain.strategies.source_check import CheckedSource, check_source
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.timestamps import ns_to_datetime
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import SANDBOX_RUN_SECONDS, SANDBOX_RUNS
from signalfactory.services.platform import Platform
from signalfactory.services.sandbox.ports import StrategySandbox

log = get_logger("signalfactory.sandbox")

PURPOSES = ("signals", "live", "scan", "backtest")


def sandbox_of(platform: Platform) -> StrategySandbox:
    if platform.sandbox is None:
        raise TemporaryError("this process has no strategy sandbox, so uploaded Python "
                             "strategies cannot run here")
    return platform.sandbox


@dataclass(frozen=True)
class UploadedSource:
    """An upload that passed the static check and loaded in the sandbox."""

    program: SandboxProgram
    checked: CheckedSource
    info: ProgramInfo


def check_upload(platform: Platform, source: str, class_name: str | None,
                 parameters: Mapping[str, StrategyParam] | None) -> UploadedSource:
    """Refuse what must not be stored: the static check (line and rule named), then a load
    in the sandbox (module body and constructor run under the limits). Nothing is stored
    here and no run is recorded."""
    if not isinstance(source, str) or not source.strip():
        raise BadInputError("the Python source is empty", rule="syntax")
    checked = check_source(source, class_name)
    params = dict(parameters or {})
    for key, value in params.items():
        if not isinstance(value, bool | int | float | str):
            raise BadInputError(f"parameter {key!r} must be a number, a string or a boolean",
                                rule="parameters")
    program = SandboxProgram(source=source, class_name=checked.class_name, parameters=params,
                             code_hash=source_sha256(source))
    try:
        info = sandbox_of(platform).load(program)
    except SandboxError as exc:
        what = f" ({exc.limit})" if exc.limit else ""
        raise BadInputError(f"the strategy failed to load in the sandbox{what}: "
                            f"{exc.detail}", rule="sandbox-load") from exc
    return UploadedSource(program=program, checked=checked, info=info)


@dataclass(eq=False)
class SandboxedStrategy:
    """A stored uploaded strategy version, evaluated in the sandbox (see module docstring)."""

    platform: Platform
    stored: StoredStrategy
    purpose: str = "signals"
    _info: ProgramInfo | None = field(default=None, repr=False)

    @property
    def program(self) -> SandboxProgram:
        if self.stored.source is None or self.stored.class_path is None:
            raise BadInputError(f"strategy {self.stored.name!r} v{self.stored.version} has no "
                                "uploaded source")
        return SandboxProgram(source=self.stored.source, class_name=self.stored.class_path,
                              parameters=dict(self.stored.parameters),
                              code_hash=self.stored.code_hash)

    def _loaded(self) -> ProgramInfo:
        if self._info is None:
            self._info = sandbox_of(self.platform).load(self.program)
        return self._info

    @property
    def name(self) -> str:
        return self.stored.name

    @property
    def version(self) -> str:
        return str(self.stored.version)

    @property
    def parameters(self) -> Mapping[str, StrategyParam]:
        return dict(self.stored.parameters)

    @property
    def required_lookback(self) -> int:
        return self._loaded().required_lookback

    @property
    def source_sha256(self) -> str:
        return self.stored.code_hash

    def for_purpose(self, purpose: str) -> SandboxedStrategy:
        return SandboxedStrategy(self.platform, self.stored, purpose, self._info)

    def evaluate(self, universe: BarUniverse) -> Evaluation:
        started_at = self.platform.clock.now()
        started = time.perf_counter()
        try:
            result = sandbox_of(self.platform).evaluate(self.program, universe)
        except SandboxError as exc:
            self._record(universe, started_at, time.perf_counter() - started, "failed",
                         limit=exc.limit, error=exc.detail)
            raise
        except TemporaryError as exc:
            self._record(universe, started_at, time.perf_counter() - started, "failed",
                         limit=None, error=str(exc))
            raise
        self._info = result.info
        ev = result.evaluation
        fired = int(np.count_nonzero(ev.entry | ev.exit | ev.short_entry | ev.short_exit))
        self._record(universe, started_at, result.seconds, "succeeded", signals=fired,
                     fresh=result.fresh_worker)
        return ev

    def _record(self, universe: BarUniverse, started_at: datetime, seconds: float,
                outcome: str, *, limit: str | None = None, error: str | None = None,
                signals: int = 0, fresh: bool = False) -> None:
        n = universe.n_bars
        run = SandboxRun(
            strategy_version_id=self.stored.version_id, tenant_id=self.stored.tenant_id,
            code_hash=self.stored.code_hash, purpose=self.purpose,
            instruments=universe.n_instruments, bars=n,
            first_bar=ns_to_datetime(int(universe.ts.min())) if n else None,
            last_bar=ns_to_datetime(int(universe.ts.max())) if n else None,
            started_at=started_at,
            duration_ms=seconds * 1000.0, outcome=outcome, limit_hit=limit,
            error=None if error is None else error[:4000], signals=signals,
            fresh_worker=fresh)
        SANDBOX_RUNS.labels(outcome, limit or "").inc()
        SANDBOX_RUN_SECONDS.observe(seconds)
        # Its own short transaction: no caller evaluates inside a write transaction, and a
        # run that cannot be recorded fails (every run of uploaded code is on record).
        with self.platform.database.write() as uow:
            uow.sandbox_runs.add(run)
        if outcome != "succeeded":
            log.warning("sandboxed strategy run failed", strategy=self.stored.name,
                        version=self.stored.version, limit=limit, error=error)
