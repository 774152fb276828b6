"""Job kinds of trading, and what queues them.

- ``trading.tick`` runs one tick of a bot (``runner.run_tick``). Ticks are queued by
  ``start_bot`` (reconcile first), by new bars of a running bot's symbols and timeframe (the
  bar subscriber), by each tick for the next period (``trading_tick_seconds``: reconciliation
  when due, marks, and a bot that resumes by itself after a restart), by a tick that found
  the bot busy, and by ``resume_bots`` when a trading worker starts or the database returns.
  Dedupe keys keep one tick per bot and slot.
- ``trading.kill_sweep`` cancels what a kill switch's scope still has working a moment after
  the engage (orders a runner had in flight).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from signalfactory.domain.jobs import JsonObject, NewJob
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.bots import RUNNING, SCOPES, Bot
from signalfactory.observability.logging import get_logger
from signalfactory.services.jobs.payloads import parse_payload
from signalfactory.services.jobs.registry import TaskContext, dispatch, register_task
from signalfactory.services.marketdata.bars import BarsWritten
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

log = get_logger("signalfactory.trading.tasks")

TICK_KIND = "trading.tick"
SWEEP_KIND = "trading.kill_sweep"
#: a busy bot (another tick holds it) is looked at again this much later
BUSY_RETRY_SECONDS = 1.0
TICK_ATTEMPTS = 5


class TickPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_id: int = Field(ge=1)
    reconcile: bool = False
    reason: str = Field(default="tick", max_length=32)


class SweepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str
    scope_id: int = Field(ge=0)


def _slot(at: datetime, seconds: float) -> int:
    return math.floor(datetime_to_ns(at) / (seconds * 1e9))


def queue_tick(platform: Platform, uow: UnitOfWork, bot: Bot, *, reason: str,
               reconcile: bool = False, delay: float = 0.0, key: str | None = None) -> str:
    """Write a tick job for the bot in ``uow`` (call ``dispatch`` after the commit).
    Returns its id; a tick of the same key already queued is reused."""
    now = platform.clock.now()
    run_after = now + timedelta(seconds=delay)
    dedupe = key or f"tick:{bot.id}:{reason}:{_slot(run_after, max(delay, 1.0))}"
    job, _created = uow.jobs.insert(NewJob(
        kind=TICK_KIND, payload={"bot_id": bot.id, "reconcile": reconcile, "reason": reason},
        tenant_id=bot.tenant_id, max_attempts=TICK_ATTEMPTS, dedupe_key=dedupe[:200],
        run_after=run_after if delay else None), now)
    return job.id


def _queue(platform: Platform, bot: Bot, *, reason: str, reconcile: bool = False,
           delay: float = 0.0, key: str | None = None) -> None:
    with platform.database.write() as uow:
        job_id = queue_tick(platform, uow, bot, reason=reason, reconcile=reconcile,
                            delay=delay, key=key)
    dispatch(platform, job_id)


def tick_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.services.trading.runner import BUSY, STOPPED_OUTCOME, run_tick

    args = parse_payload(TickPayload, payload, TICK_KIND)
    platform = ctx.platform
    report = run_tick(platform, args.bot_id, reconcile_now=args.reconcile)
    with platform.database.read(primary=True) as uow:
        bot = uow.bots.get(None, args.bot_id)
    if bot is not None and bot.status == RUNNING and report.outcome != STOPPED_OUTCOME:
        if report.outcome == BUSY:
            _queue(platform, bot, reason="busy", delay=BUSY_RETRY_SECONDS,
                   reconcile=args.reconcile)
        else:
            _queue(platform, bot, reason="period", delay=platform.settings.trading_tick_seconds)
    return {"bot_id": report.bot_id, "outcome": report.outcome, "bars": report.bars,
            "orders": report.orders, "reconciled": report.reconciled}


def sweep_task(ctx: TaskContext, payload: JsonObject) -> JsonObject:
    from signalfactory.services.trading.killswitch import sweep_scope

    args = parse_payload(SweepPayload, payload, SWEEP_KIND)
    if args.scope not in SCOPES:
        return {"skipped": f"unknown scope {args.scope}"}
    with ctx.platform.database.read(primary=True) as uow:
        switch = uow.trading_states.kill_switches([(args.scope, args.scope_id)])
    if not switch or not switch[0].engaged:
        return {"skipped": "the kill switch is no longer engaged"}
    report = sweep_scope(ctx.platform, args.scope, args.scope_id)
    return {"cancelled": report.cancelled, "not_found": report.not_found,
            "errors": len(report.errors)}


def on_bars_written(platform: Platform, written: BarsWritten) -> None:
    """The bar subscriber: a tick for every running bot trading a written symbol on the
    written timeframe. Never raises: the bars are committed already."""
    try:
        with platform.database.read(primary=True) as uow:
            bots = [b for b in uow.bots.find(status=RUNNING)
                    if b.timeframe == written.timeframe.name]
            if not bots:
                return
            written_symbols = set(uow.instruments.symbols(written.first_new).values())
        newest = max(written.first_new.values())
        for bot in bots:
            if written_symbols.intersection(bot.symbols):
                _queue(platform, bot, reason="bars", key=f"tick:{bot.id}:bars:{newest}")
    except Exception as exc:  # logged; the write itself succeeded
        log.error("could not queue bot ticks for new bars",
                  error=f"{type(exc).__name__}: {exc}")


def resume_bots(platform: Platform, *, reason: str = "resume") -> int:
    """Queue a reconciling tick for every running bot (a worker starting, the database back).
    Returns how many."""
    with platform.database.read(primary=True) as uow:
        bots = uow.bots.find(status=RUNNING)
    now_ns = datetime_to_ns(platform.clock.now())
    for bot in bots:
        _queue(platform, bot, reason=reason, reconcile=True,
               key=f"tick:{bot.id}:{reason}:{platform.trading.owner}:{now_ns}")
    return len(bots)


register_task(TICK_KIND, tick_task, max_attempts=TICK_ATTEMPTS)
register_task(SWEEP_KIND, sweep_task, max_attempts=5)
