"""Bots: a tenant's stored strategy version trading some symbols on one exchange account with
an allocation and risk limits. Create, start, stop, status.

Starting a bot marks it ``running`` and queues its first tick (a job: reconcile with the
exchange, then trade the bars that arrive); stopping marks it ``stopped`` and its runner
lets go at its next tick. Positions and open orders stay as they are: flattening is the kill
switch's job. Another tenant's bot answers exactly like a missing one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import cast

from signalfactory.domain.backtest.config import (
    BacktestConfig,
    DirectionName,
    FillName,
    SizingName,
)
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.trading.bots import (
    BOT,
    GLOBAL,
    RUNNING,
    STOPPED,
    TENANT,
    Bot,
    KillSwitch,
    RiskLimits,
)
from signalfactory.domain.trading.orders import OPEN, PARTIALLY_FILLED, PENDING, Position
from signalfactory.domain.trading.records import BotMark, BotRuntime, NewBot
from signalfactory.domain.trading.risk import EffectiveState, effective_state
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.trading import events
from signalfactory.services.trading.accounts import account_in

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}")
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9/:._-]{0,63}")
MAX_SYMBOLS = 1000
WORKING_STATUSES = (PENDING, OPEN, PARTIALLY_FILLED)


@dataclass(frozen=True)
class BotStatus:
    """A bot as its owner sees it: definition, run status, the state it trades under (and
    what imposes it), its runner, positions, working orders and latest equity mark."""

    bot: Bot
    runtime: BotRuntime
    effective: EffectiveState
    positions: list[Position]
    working_orders: int
    last_mark: BotMark | None


def _check_limits(limits: RiskLimits) -> RiskLimits:
    for name in ("max_order_notional", "max_symbol_notional", "daily_loss_limit"):
        value = getattr(limits, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise BadInputError(f"{name} must be a positive amount (or unset)", rule=name)
    for name in ("max_open_positions", "max_orders_per_minute"):
        value = getattr(limits, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise BadInputError(f"{name} must be a whole number of at least 1 (or unset)",
                                rule=name)
    if limits.max_drawdown is not None and not 0 < limits.max_drawdown < 1:
        raise BadInputError("max_drawdown is a fraction of equity, e.g. 0.2 for 20 %",
                            rule="max_drawdown")
    if not isinstance(limits.confirm_marks, int) or not 1 <= limits.confirm_marks <= 100:
        raise BadInputError("confirm_marks must be between 1 and 100", rule="confirm_marks")
    return limits


def _check_symbols(symbols: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(s.strip() for s in symbols))
    if not 1 <= len(cleaned) <= MAX_SYMBOLS:
        raise BadInputError(f"a bot trades 1 to {MAX_SYMBOLS} symbols", rule="symbols")
    bad = [s for s in cleaned if not _SYMBOL.fullmatch(s)]
    if bad:
        raise BadInputError(f"symbol {bad[0]!r} is not valid (letters, digits, / : . _ -)",
                            rule="symbols")
    return cleaned


def backtest_config(bot: NewBot) -> BacktestConfig:
    """A new bot's settings as the backtest spells them (the backtest's own validation;
    ``decisions.backtest_config`` maps a stored bot the same way)."""
    return BacktestConfig(direction=cast(DirectionName, bot.direction),
                          fill=cast(FillName, bot.fill), initial_cash=bot.allocation,
                          fee_pct=bot.fee_pct, fee_fixed=bot.fee_fixed,
                          slippage_bps=bot.slippage_bps, sizing=cast(SizingName, bot.sizing),
                          size_value=bot.size_value, atr_multiple=bot.atr_multiple,
                          whole_units=bot.whole_units)


def create_bot(platform: Platform, tenant_id: int, *, name: str, strategy: str,
               account_id: int, symbols: list[str] | tuple[str, ...], allocation: float,
               version: int | None = None, timeframe: str | None = None,
               sizing: str = "fraction", size_value: float = 1.0,
               limits: RiskLimits | None = None, fee_pct: float = 0.0,
               slippage_bps: float = 0.0, direction: str = "long", fill: str = "close",
               fee_fixed: float = 0.0, whole_units: bool = True, atr_period: int = 14,
               atr_multiple: float = 1.0, actor: str = "system") -> Bot:
    """Check everything, then store the bot stopped (``start_bot`` runs it)."""
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise BadInputError("bot name must be 1..100 of letters, digits, space, '_', '.' or "
                            "'-', starting with a letter or digit", rule="name")
    if not (math.isfinite(allocation) and allocation > 0):
        raise BadInputError("allocation must be a positive amount of the account's quote "
                            "currency", rule="allocation")
    checked_limits = _check_limits(limits or RiskLimits())
    checked_symbols = _check_symbols(symbols)
    with platform.database.write() as uow:
        account = account_in(uow, tenant_id, account_id)
        stored = uow.strategies.find(tenant_id, strategy.strip().lower(), version)
        if stored is None:
            which = f"{strategy!r}" + (f" version {version}" if version is not None else "")
            raise NotFoundError(f"no strategy {which}; list them with `signalfactory "
                                "strategies list`")
        tf = Timeframe.parse(timeframe or stored.timeframe)
        if account.kind == "ccxt" and direction != "long":
            raise BadInputError("spot exchange accounts trade long only; use direction long",
                                rule="direction")
        new = NewBot(tenant_id=tenant_id, name=name, strategy_version_id=stored.version_id,
                     account_id=account.id, symbols=checked_symbols, timeframe=tf.name,
                     allocation=float(allocation), sizing=sizing,
                     size_value=float(size_value), limits=checked_limits,
                     fee_pct=float(fee_pct), slippage_bps=float(slippage_bps),
                     direction=direction, fill=fill, fee_fixed=float(fee_fixed),
                     whole_units=bool(whole_units), atr_period=int(atr_period),
                     atr_multiple=float(atr_multiple))
        backtest_config(new)  # sizing, fees, fill, direction: the backtest's own checks
        if not 1 <= new.atr_period <= 1000:
            raise BadInputError("atr_period must be between 1 and 1000 bars", rule="size")
        bot = uow.bots.add(new, platform.clock.now())
        events.record(platform, uow, actor=actor, action=events.BOT_CREATED,
                      subject=f"bot:{bot.id}", tenant_id=tenant_id,
                      details={"name": name, "strategy": stored.name,
                               "strategy_version": stored.version, "account_id": account.id,
                               "symbols": len(checked_symbols), "allocation": allocation})
    return bot


def bot_in(uow: UnitOfWork, tenant_id: int | None, bot_id: int) -> Bot:
    found = uow.bots.get(tenant_id, bot_id)
    if found is None:
        raise NotFoundError(f"no bot {bot_id}")
    return found


def get_bot(platform: Platform, tenant_id: int | None, bot_id: int) -> Bot:
    with platform.database.read(primary=True) as uow:
        return bot_in(uow, tenant_id, bot_id)


def list_bots(platform: Platform, tenant_id: int | None, *,
              status: str | None = None) -> list[Bot]:
    if status is not None and status not in (RUNNING, STOPPED):
        raise BadInputError("status must be running or stopped", rule="status")
    with platform.database.read() as uow:
        return uow.bots.find(tenant_id=tenant_id, status=status)


def start_bot(platform: Platform, tenant_id: int, bot_id: int, *,
              actor: str = "system") -> Bot:
    """Mark the bot running and queue its first tick (reconciliation comes first)."""
    from signalfactory.services.trading.tasks import queue_tick

    with platform.database.write() as uow:
        bot = bot_in(uow, tenant_id, bot_id)
        if bot.status == RUNNING:
            raise ConflictError(f"bot {bot_id} is already running", rule="status")
        account = account_in(uow, tenant_id, bot.account_id)
        if account.kind == "ccxt" and not any(
                c.status == "active" for c in uow.exchange_accounts.credentials(account.id)):
            raise BadInputError(f"exchange account {account.id} has no active API key: add "
                                "one before starting a bot on it", rule="credentials")
        uow.bots.set_status(bot_id, RUNNING, platform.clock.now())
        job_id = queue_tick(platform, uow, bot, reason="start")
        events.record(platform, uow, actor=actor, action=events.BOT_STARTED,
                      subject=f"bot:{bot_id}", tenant_id=tenant_id, details={})
    from signalfactory.services.jobs.registry import dispatch

    dispatch(platform, job_id)
    return get_bot(platform, tenant_id, bot_id)


def stop_bot(platform: Platform, tenant_id: int, bot_id: int, *,
             actor: str = "system") -> Bot:
    """Mark the bot stopped; its runner lets go at its next tick."""
    with platform.database.write() as uow:
        bot = bot_in(uow, tenant_id, bot_id)
        if bot.status == STOPPED:
            raise ConflictError(f"bot {bot_id} is already stopped", rule="status")
        uow.bots.set_status(bot_id, STOPPED, platform.clock.now())
        events.record(platform, uow, actor=actor, action=events.BOT_STOPPED,
                      subject=f"bot:{bot_id}", tenant_id=tenant_id, details={})
    platform.trading.wake_all()
    return get_bot(platform, tenant_id, bot_id)


def bot_scopes(bot: Bot) -> list[tuple[str, int]]:
    return [(GLOBAL, 0), (TENANT, bot.tenant_id), (BOT, bot.id)]


def state_of(uow: UnitOfWork, bot: Bot) -> tuple[EffectiveState, list[KillSwitch]]:
    """The state the bot trades under now, read in ``uow`` (and the switches that apply)."""
    scopes = bot_scopes(bot)
    stored = {(s.scope, s.scope_id): s.state for s in uow.trading_states.states(scopes)}
    switches = uow.trading_states.kill_switches(scopes)
    state = effective_state(
        tenant_id=bot.tenant_id, bot_id=bot.id,
        global_state=stored.get((GLOBAL, 0), "active"),
        tenant_state=stored.get((TENANT, bot.tenant_id), "active"),
        bot_state=stored.get((BOT, bot.id), "active"), kill_switches=switches)
    return state, switches


def bot_status(platform: Platform, tenant_id: int | None, bot_id: int) -> BotStatus:
    with platform.database.read(primary=True) as uow:
        bot = bot_in(uow, tenant_id, bot_id)
        runtime = uow.bots.runtime(bot_id)
        if runtime is None:  # the row was just read in this transaction
            raise NotFoundError(f"no bot {bot_id}")
        state, _ = state_of(uow, bot)
        working = uow.orders.find(bot_id=bot_id, statuses=WORKING_STATUSES, limit=10_000)
        return BotStatus(bot=bot, runtime=runtime, effective=state,
                         positions=uow.positions.find(bot_id=bot_id, open_only=True),
                         working_orders=len(working), last_mark=uow.bot_marks.latest(bot_id))
