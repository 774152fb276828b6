"""Running a stored source once, as a collector job does: the breaker around the run, the
outcome recorded on the source, errors classified for the job runtime.

Outcomes and what the job becomes:

- stored what was new: the job succeeds with the run's report;
- the breaker is open: no call is made, the job succeeds with ``outcome: skipped`` (the run
  that opened it is in the dead letter already; the breaker gauge and alert show the rest);
- a request failed every attempt, the source refused (4xx), or sent bad bars: the job goes
  to the dead letter at once with the error (``OperationalError``); the next scheduled run
  starts from the cursors again;
- anything else (the database unreachable) is retried by the job runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pybreaker

from signalfactory.domain.errors import BadInputError, OperationalError
from signalfactory.domain.sources import RunState
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.logging import get_logger
from signalfactory.services.platform import Platform
from signalfactory.services.sources.collector import CollectorRun, RunCancelled, RunReport
from signalfactory.services.sources.options import split_params
from signalfactory.services.sources.records import get_source
from signalfactory.services.sources.resilience import source_breaker

log = get_logger("signalfactory.sources")


class RunSkipped(Exception):  # noqa: N818 - an outcome, not a failure
    """The source's circuit breaker is open: the run made no call."""


def _record(platform: Platform, name: str, run: RunState) -> None:
    try:
        with platform.database.write() as uow:
            uow.sources.record_run(name, run)
    except Exception as exc:  # the outcome is in the job and the log anyway
        log.warning("could not record the run on the source", source=name,
                    error=f"{type(exc).__name__}: {exc}")


def _count(name: str, report: RunReport | None, outcome: str) -> None:
    from signalfactory.observability.metrics import (
        COLLECTOR_BACKFILLED,
        COLLECTOR_BARS,
        COLLECTOR_NO_TRADE_GAPS,
        COLLECTOR_RETRIES,
        COLLECTOR_RUNS,
    )

    COLLECTOR_RUNS.labels(name, outcome).inc()
    if report is not None:
        COLLECTOR_BARS.labels(name).inc(report.rows)
        COLLECTOR_RETRIES.labels(name).inc(report.retries)
        COLLECTOR_BACKFILLED.labels(name).inc(report.backfilled)
        COLLECTOR_NO_TRADE_GAPS.labels(name).inc(report.no_trade_gaps)


def run_source(platform: Platform, name: str, *, job_id: str | None = None,
               progress: Callable[[float], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> RunReport:
    """Collect ``name`` once. Raises :class:`RunSkipped`, :class:`RunCancelled`,
    ``OperationalError`` (dead letter) or what a retry may fix."""
    source = get_source(platform, name)
    options, adapter_params = split_params(source.params)
    factory = platform.source_factories.get(source.kind)
    if factory is None:
        raise OperationalError(f"source {name!r} is of kind {source.kind!r}, which this "
                               "installation cannot fetch (install its extra, e.g. "
                               "signalfactory[exchanges] for ccxt)")
    timeframe = Timeframe.parse(source.timeframe)
    breaker = source_breaker(platform, name, fail_max=options.breaker_failures,
                             reset_seconds=options.breaker_reset_seconds)
    breaker.add_excluded_exception(RunCancelled)  # stopping on request is no failure
    started = platform.clock.now()

    def attempt() -> RunReport:
        adapter = factory(adapter_params, timeframe)
        try:
            return CollectorRun(platform, source, options, adapter, progress=progress,
                                cancelled=cancelled).run()
        finally:
            adapter.close()

    def failed(error: str) -> None:
        _record(platform, name, RunState(last_run_at=started, last_outcome="failed",
                                         last_error=error[:4000], last_job_id=job_id))
        _count(name, None, "failed")
        log.error("collector run failed", source=name, error=error)

    try:
        report: Any = breaker.call(attempt)
    except pybreaker.CircuitBreakerError as exc:
        with platform.database.read(primary=True) as uow:
            opened = uow.sources.breaker(name).opened_at
        reason = (f"circuit breaker open since {opened.isoformat() if opened else '?'} after "
                  f"{options.breaker_failures} failed runs; a probe run is let through "
                  f"{options.breaker_reset_seconds:g} s after it opened ({exc})")
        _record(platform, name, RunState(last_run_at=started, last_outcome="skipped",
                                         last_error=reason, last_job_id=job_id))
        _count(name, None, "skipped")
        log.warning("collector run skipped", source=name, reason=reason)
        raise RunSkipped(reason) from None
    except RunCancelled:
        raise
    except BadInputError as exc:
        message = (f"source {name!r} sent bars that fail validation ({exc}); nothing of that "
                   "symbol's window was stored. Check the source, then retry the job")
        failed(message)
        raise OperationalError(message) from exc
    except OperationalError as exc:
        failed(str(exc))
        raise
    except Exception as exc:
        failed(f"{type(exc).__name__}: {exc}")
        raise
    _record(platform, name, RunState(last_run_at=started, last_success_at=platform.clock.now(),
                                     last_outcome="succeeded", last_error=None,
                                     last_job_id=job_id, last_rows=report.rows))
    _count(name, report, "succeeded")
    log.info("collector run finished", **report.as_dict())
    result: RunReport = report
    return result
