"""Use cases on stored sources: add, list, show, pause, resume, remove, run now.

Every input is checked before anything is written (name, kind, symbols, timeframe, cron,
the adapter's own parameters by building the adapter once), and a source is stored in one
unit of work: bad input leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.jobs import Job
from signalfactory.domain.sources import (
    NewSource,
    Source,
    SourceGap,
    check_name,
    check_symbols,
)
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.domain.timeframes import Timeframe
from signalfactory.observability.logging import get_logger
from signalfactory.services.platform import Platform
from signalfactory.services.sources.options import split_params

log = get_logger("signalfactory.sources")

COLLECT_SOURCE = "collect_source"
MAX_PARAMS_CHARS = 20_000


def check_cron(cron: str | None) -> str | None:
    if cron is None or not cron.strip():
        return None
    from croniter import croniter

    value = " ".join(cron.split())
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise BadInputError(f"{value!r} is not a 5-field cron expression (minute hour "
                            "day-of-month month day-of-week), e.g. '*/5 * * * *'",
                            rule="source-cron")
    return value


def check_source(platform: Platform, name: str, kind: str, params: dict[str, Any],
                 symbols: Sequence[str], timeframe: str, cron: str | None) -> NewSource:
    """A source ready to store, or BadInputError saying what to fix (nothing is written)."""
    import json

    check_name(name)
    if kind not in platform.source_factories:
        known = ", ".join(sorted(platform.source_factories)) or "none"
        raise BadInputError(f"unknown source kind {kind!r}; this installation has {known}",
                            rule="source-kind")
    if not isinstance(params, dict):
        raise BadInputError("params must be an object", rule="source-params")
    try:
        size = len(json.dumps(params))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"params must be JSON: {exc}", rule="source-params") from None
    if size > MAX_PARAMS_CHARS:
        raise BadInputError(f"params are {size} characters of JSON; at most "
                            f"{MAX_PARAMS_CHARS}", rule="source-params")
    tf = Timeframe.parse(timeframe)
    _options, adapter_params = split_params(params)
    # Building the adapter checks its parameters and the timeframe; no request is made.
    platform.source_factories[kind](adapter_params, tf).close()
    return NewSource(name=name, kind=kind, params=dict(params),
                     symbols=check_symbols(list(symbols)), timeframe=tf.name,
                     cron=check_cron(cron))


def add_source(platform: Platform, name: str, kind: str, params: dict[str, Any],
               symbols: Sequence[str], timeframe: str, cron: str | None = None,
               paused: bool = False) -> Source:
    new = check_source(platform, name, kind, params, symbols, timeframe, cron)
    if paused:
        new = NewSource(**{**new.__dict__, "paused": True})
    with platform.database.write() as uow:
        stored = uow.sources.add(new, platform.clock.now())
    log.info("source added", source=name, kind=kind, symbols=len(new.symbols),
             timeframe=new.timeframe, cron=new.cron)
    return stored


def list_sources(platform: Platform) -> list[Source]:
    with platform.database.read(primary=True) as uow:
        return uow.sources.all()


def get_source(platform: Platform, name: str) -> Source:
    with platform.database.read(primary=True) as uow:
        found = uow.sources.get(name)
    if found is None:
        raise NotFoundError(f"no source {name!r}; list them with `signalfactory sources list`")
    return found


def set_paused(platform: Platform, name: str, paused: bool) -> Source:
    """Pause (the scheduler skips it; ``run`` still works) or resume a source."""
    with platform.database.write() as uow:
        if not uow.sources.set_paused(name, paused, platform.clock.now()):
            raise NotFoundError(f"no source {name!r}; list them with "
                                "`signalfactory sources list`")
    log.info("source paused" if paused else "source resumed", source=name)
    return get_source(platform, name)


def remove_source(platform: Platform, name: str) -> None:
    """Forget a source and its recorded gaps; the bars it collected stay."""
    with platform.database.write() as uow:
        if not uow.sources.delete(name):
            raise NotFoundError(f"no source {name!r}")
    log.info("source removed", source=name)


def submit_run(platform: Platform, name: str) -> Job:
    """Queue a collector run of ``name`` now (a worker runs it, or the caller with
    ``execute_by_id``)."""
    from signalfactory.services.jobs.registry import submit

    get_source(platform, name)
    return submit(platform, COLLECT_SOURCE, {"source": name}, tenant_id=DEFAULT_TENANT_ID)


def source_gaps(platform: Platform, name: str, symbol: str | None = None) -> list[SourceGap]:
    get_source(platform, name)
    with platform.database.read(primary=True) as uow:
        return uow.sources.gaps(name, symbol=symbol)
