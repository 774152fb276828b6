"""A bot's tick: reconcile when due, trade the bars that arrived, mark equity, apply limits.

Ticks are jobs (``trading.tick``, see ``tasks``), so they run in the embedded runner or on
Celery workers alike and survive restarts as rows. A tick holds the bot's lease while it
works (one active runner per bot, across processes) and lets it go when done; a bot's ticks
inside one process also queue on a lock.

Trading a bar follows the backtest engine's order of events with the same code
(``domain.trading.decisions`` and ``paper_session``): the strategy's signals (the same
strategy code as a backtest, evaluated on a window with enough history) are decided against
the positions held; the bar's exits go first, as one batch through the order path; then
the entries, sized as the backtest sizes them on the cash the exits left; then the bar's
close marks equity, which the risk engine's loss limits watch. With ``fill="close"`` a
bar's signals act at its close; with ``next_open`` at the next bar's open.

A bot trades bars that arrive after it started: its first tick only notes the newest bar.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from signalfactory.domain.bars import BarUniverse, FloatArray
from signalfactory.domain.errors import TemporaryError
from signalfactory.domain.strategies import Strategy
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import ns_to_datetime
from signalfactory.domain.trading import risk
from signalfactory.domain.trading.bots import BOT, HALTED, RUNNING, STATE_RANK, Bot
from signalfactory.domain.trading.decisions import (
    QUIET,
    BarSignals,
    BotRef,
    backtest_config,
    decide,
    exit_intent,
    mirrors_short,
    strategy_signals,
)
from signalfactory.domain.trading.orders import Fill, OrderIntent
from signalfactory.domain.trading.paper_session import Bar, SymbolStep, TradingSession
from signalfactory.domain.trading.portfolio import unrealised_pnl
from signalfactory.domain.trading.records import BotMark, TradingState
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import (
    TRADING_DAILY_LOSS_RATIO,
    TRADING_EQUITY,
    TRADING_EXPOSURE,
    TRADING_PNL,
    TRADING_POSITIONS,
    TRADING_STATE,
)
from signalfactory.services.platform import Platform
from signalfactory.services.signals.live import warmup_bars
from signalfactory.services.strategies.catalog import instantiate
from signalfactory.services.trading import events, watchdog
from signalfactory.services.trading.bots import WORKING_STATUSES, bot_in, state_of
from signalfactory.services.trading.execution import (
    OrderResult,
    Session,
    StageTimes,
    base_currency,
    place_orders,
)
from signalfactory.services.trading.killswitch import sweep_scope
from signalfactory.services.trading.market import load_bars, newest_bar_ns
from signalfactory.services.trading.reconcile import needs_reconcile, reconcile
from signalfactory.services.trading.sessions import open_session

log = get_logger("signalfactory.trading.runner")

_STRATEGY_LOCK = threading.Lock()

BUSY = "busy"
STOPPED_OUTCOME = "stopped"
IDLE = "idle"
TRADED = "traded"


@dataclass(frozen=True)
class TickReport:
    bot_id: int
    outcome: str
    bars: int = 0
    orders: int = 0
    reconciled: bool = False


def strategy_of(platform: Platform, bot: Bot) -> Strategy:
    """The bot's strategy version, parsed once per process (a version never changes)."""
    cache = platform.live_strategies
    found = cache.get(bot.strategy_version_id)
    if found is None:
        with platform.database.read(primary=True) as uow:
            stored = uow.strategies.version(bot.strategy_version_id)
        if stored is None:
            raise TemporaryError(f"strategy version {bot.strategy_version_id} of bot {bot.id} "
                                 "is missing")
        with _STRATEGY_LOCK:
            found = cache.setdefault(bot.strategy_version_id, instantiate(stored))
    return found


# -- one time step ----------------------------------------------------------------------------

def tradable(tsession: TradingSession, symbol: str) -> float:
    """The position as the decision sees it: dust below what the market can trade (the part
    of a base-currency fee an exit's amount step leaves behind) counts as flat."""
    held = tsession.quantity(symbol)
    market = tsession.markets.get(symbol)
    if market is not None and abs(held) < max(market.amount_step, market.min_amount):
        return 0.0
    return held


def _acting_price(tsession: TradingSession, step: SymbolStep) -> float:
    return step.bar.close if tsession.config.fill == "close" else step.bar.open


def _apply(tsession: TradingSession, results: list[OrderResult]) -> int:
    placed = 0
    for result in results:
        if result.fills:
            tsession.apply(result.fills)
        if result.order is not None and result.outcome not in ("refused", "duplicate"):
            placed += 1
    return placed


def trade_step(session: Session, tsession: TradingSession, steps: list[SymbolStep]) -> int:
    """One time step of the bot's symbols that have a bar now, in the portfolio backtest's
    order (``TradingSession.step_all``): every exit, then the entries ranked by score, each
    sized on the equity and cash of its moment. Exits go as one batch through the order
    path; the entries are decided on what the exits left, with each one's cost as the cost
    model predicts it counted before sizing the next, and go as a second batch; the
    positions then move by the real fills. Returns the orders placed."""
    ref = BotRef.of(session.bot)
    exits: list[OrderIntent] = []
    for st in steps:
        price = _acting_price(tsession, st)
        tsession.quotes.set(st.symbol, price, st.bar.ts_ns)
        held = tradable(tsession, st.symbol)
        leave = exit_intent(ref, symbol=st.symbol, quantity=held,
                            action=decide(held, st.signals, tsession.config.direction),
                            bar_ns=st.signal_ns, price=price)
        if leave is not None:
            exits.append(leave)
    placed = _apply(tsession, place_orders(session, exits)) if exits else 0
    # entries: only where the symbol is flat now (an exit refused or unfilled keeps it held)
    # (dust counts as flat here; its realised PnL stays: it is part of the bot's cash)
    view = dataclasses.replace(tsession, positions={
        sym: p if tradable(tsession, sym) != 0.0 else dataclasses.replace(p, quantity=0.0)
        for sym, p in tsession.positions.items()})
    entry_steps = [st if tradable(tsession, st.symbol) == 0.0
                   else dataclasses.replace(st, signals=QUIET) for st in steps]
    wanted: list[OrderIntent] = []
    costs = session.costs

    def predicted(intent: OrderIntent) -> list[Fill]:
        wanted.append(intent)
        fill_price = costs.fill_price(intent.reference_price, intent.side)
        return [Fill(account_id=intent.account_id, order_id=0, trade_id="predicted",
                     symbol=intent.symbol, side=intent.side, quantity=intent.quantity,
                     price=fill_price, fee=costs.fee(intent.quantity, fill_price),
                     fee_currency="", executed_at=session.platform.clock.now())]

    view.base_currencies = {}  # predicted fees are in the quote currency
    view.step_all(entry_steps, execute=predicted)
    if wanted:
        placed += _apply(tsession, place_orders(session, wanted))
    return placed


# -- marks and loss limits -------------------------------------------------------------------

def mark_bot(platform: Platform, bot: Bot, tsession: TradingSession, bar_ns: int) -> None:
    """Store the bot's equity at the bar's close and run its loss limits on it."""
    at = ns_to_datetime(bar_ns)
    positions = list(tsession.positions.values())
    equity = tsession.equity()
    realised = sum(p.realised_pnl for p in positions)
    unrealised = unrealised_pnl(positions, tsession.marks)
    exposure = sum(abs(p.quantity) * tsession.marks.get(p.symbol, p.average_price)
                   for p in positions)
    with platform.database.write() as uow:
        uow.bot_marks.add(BotMark(bot.id, at, equity, tsession.cash(), exposure, realised,
                                  unrealised))
        uow.bots.set_progress(bot.id, bar_ns)
        stored = uow.trading_states.states([(BOT, bot.id)])
        current = stored[0] if stored else None
        monitor = current.monitor if current and current.monitor else risk.LossMonitor(BOT,
                                                                                       bot.id)
        state = current.state if current else "active"
        result = risk.mark(monitor, equity, at, limits=bot.limits, state=state)
        reason = current.reason if current else ""
        changed_by = current.changed_by if current else "risk-engine"
        for event in result.events:
            action = (events.DAILY_LOSS_WARNING if event.kind == risk.EVENT_DAILY_LOSS_WARNING
                      else events.STATE_CHANGED)
            if event.kind == risk.EVENT_STATE_CHANGED:
                reason, changed_by = event.message, event.by
            events.record(platform, uow, actor=event.by, action=action, subject=f"bot:{bot.id}",
                          tenant_id=bot.tenant_id,
                          details={"from": event.from_state, "to": event.to_state,
                                   "rule": event.rule, "message": event.message,
                                   "value": event.value if event.value is not None
                                   and math.isfinite(event.value) else None})
        uow.trading_states.put_state(TradingState(
            BOT, bot.id, result.state, reason,
            at if result.state != state or current is None else current.changed_at,
            changed_by, result.monitor))
    label = str(bot.id)
    TRADING_EQUITY.labels(label).set(equity)
    TRADING_EXPOSURE.labels(label).set(exposure)
    TRADING_POSITIONS.labels(label).set(sum(1 for p in positions if p.quantity != 0.0))
    TRADING_PNL.labels(label, "realised").set(realised)
    TRADING_PNL.labels(label, "unrealised").set(unrealised)
    TRADING_PNL.labels(label, "daily").set(-result.daily_loss)
    if math.isfinite(result.daily_loss_ratio):
        TRADING_DAILY_LOSS_RATIO.labels(BOT, label).set(result.daily_loss_ratio)
    TRADING_STATE.labels(label).set(STATE_RANK[result.state])
    if result.state != state:
        log.warning("bot trading state changed", bot_id=bot.id, state=result.state,
                    reason=reason)


# -- the tick --------------------------------------------------------------------------------

def _bar(universe: BarUniverse, t: int) -> Bar:
    return Bar(int(universe.ts[t]), float(universe.open[t]), float(universe.high[t]),
               float(universe.low[t]), float(universe.close[t]))


def _atr(universe: BarUniverse, bot: Bot) -> FloatArray:
    """TA-Lib's ATR per instrument (``risk`` sizing's distance to the invalidation level),
    as the backtest service computes it."""
    import talib

    out = np.full(universe.n_bars, np.nan)
    for k in range(universe.n_instruments):
        a, b = int(universe.offsets[k]), int(universe.offsets[k + 1])
        if b - a > bot.atr_period:
            out[a:b] = talib.ATR(universe.high[a:b], universe.low[a:b], universe.close[a:b],
                                 bot.atr_period)
    return out


def trade_new_bars(platform: Platform, bot: Bot, *, timer: StageTimes | None = None) -> tuple[
        int, int]:
    """Trade every bar newer than the bot's progress; returns (bars, orders placed)."""
    tf = Timeframe.parse(bot.timeframe)
    with platform.database.read(primary=True) as uow:
        runtime = uow.bots.runtime(bot.id)
        last = runtime.last_bar_ns if runtime is not None else 0
        if last == 0:
            newest = newest_bar_ns(uow, tf, bot.symbols)
        positions = uow.positions.find(bot_id=bot.id)
        state, _ = state_of(uow, bot)
    if last == 0:
        # a new bot trades what arrives after it started, not the history before
        if newest:
            with platform.database.write() as uow:
                uow.bots.set_progress(bot.id, newest)
        return 0, 0
    strategy = strategy_of(platform, bot)
    lookback = int(getattr(strategy, "required_lookback", 0) or 0)
    span = (warmup_bars(lookback) * 3 // 2 + 7) * tf.nanoseconds
    with platform.database.read(primary=True) as uow:
        universe = load_bars(uow, tf, bot.symbols, last - span)
    if universe.n_bars == 0 or int(universe.ts.max()) <= last:
        return 0, 0
    config = backtest_config(bot)
    tsession = TradingSession.resume(
        BotRef.of(bot), config, positions,
        base_currencies={s: base for s in bot.symbols if (base := base_currency(s))})
    session = open_session(platform, bot, prices=tsession.quotes, timer=timer)
    tsession.markets = dict(session.markets)
    evaluation = strategy.evaluate(universe)
    signals = strategy_signals(evaluation, mirror=mirrors_short(strategy, bot.direction))
    offsets = universe.offsets
    # marks at the last bar at or before the progress: equity continues from there
    new_rows: dict[int, list[tuple[int, int]]] = {}
    for k, symbol in enumerate(universe.symbols):
        a, b = int(offsets[k]), int(offsets[k + 1])
        if b == a:
            continue
        ts = universe.ts[a:b]
        start = int(np.searchsorted(ts, last, side="right"))
        if start > 0:
            tsession.marks[symbol] = float(universe.close[a + start - 1])
        for t in range(a + start, b):
            new_rows.setdefault(int(universe.ts[t]), []).append((k, t))
    orders = 0
    halted = state.state == HALTED
    atr = _atr(universe, bot) if bot.sizing == "risk" else None
    for bar_ns in sorted(new_rows):
        steps: list[SymbolStep] = []
        for k, t in new_rows[bar_ns]:
            a = int(offsets[k])
            s = t if config.fill == "close" else t - 1
            if s < a:
                continue  # next_open, the instrument's first bar: nothing decided before it
            steps.append(SymbolStep(
                universe.symbols[k], _bar(universe, t), BarSignals.at(signals, s),
                int(universe.ts[s]), atr=float(atr[s]) if atr is not None else math.nan,
                score=float(evaluation.score[s])))
        if steps and not halted:
            orders += trade_step(session, tsession, steps)
        for k, t in new_rows[bar_ns]:
            tsession.close_bar(universe.symbols[k], _bar(universe, t))
        mark_bot(platform, bot, tsession, bar_ns)
        with platform.database.read(primary=True) as uow:
            halted = state_of(uow, bot)[0].state == HALTED
    return len(new_rows), orders


def run_tick(platform: Platform, bot_id: int, *, reconcile_now: bool = False,
             timer: StageTimes | None = None) -> TickReport:
    """One tick of a bot (see the module docstring). Database trouble switches this process
    to read-only (the watchdog switches it back) and is raised for the job to retry."""
    runtime = platform.trading
    owner = runtime.owner
    with runtime.bot_lock(bot_id):
        try:
            return _tick(platform, bot_id, owner, reconcile_now, timer)
        except TemporaryError as exc:
            if "database" in str(exc):
                watchdog.enter(platform, str(exc))
            raise


def _tick(platform: Platform, bot_id: int, owner: str, reconcile_now: bool,
          timer: StageTimes | None) -> TickReport:
    lease = timedelta(seconds=platform.settings.trading_lease_seconds)
    now = platform.clock.now()
    with platform.database.write() as uow:
        bot = bot_in(uow, None, bot_id)
        before = uow.bots.runtime(bot_id)
        if not uow.bots.acquire_lease(bot_id, owner, now + lease, now):
            return TickReport(bot_id, BUSY)
    try:
        if bot.status != RUNNING:
            return TickReport(bot_id, STOPPED_OUTCOME)
        taken_over = before is not None and before.lease_owner not in (None, owner)
        reconciled = False
        if reconcile_now or taken_over or needs_reconcile(platform, bot):
            reconcile(open_session(platform, bot))
            platform.trading.reconciled.add(bot.id)
            reconciled = True
        with platform.database.read(primary=True) as uow:
            state, _ = state_of(uow, bot)
            working = uow.orders.find(bot_id=bot.id, statuses=WORKING_STATUSES, limit=1)
        if state.rule == risk.RULE_KILL_SWITCH and working:
            sweep_scope(platform, BOT, bot.id)  # orders that were in flight at the engage
        bars, orders = trade_new_bars(platform, bot, timer=timer)
        return TickReport(bot_id, TRADED if bars else IDLE, bars, orders, reconciled)
    finally:
        with platform.database.write() as uow:
            uow.bots.release_lease(bot_id, owner)
