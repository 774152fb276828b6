"""The backtest use case: a strategy or rule over one symbol, a universe, or a portfolio.

Three modes, chosen by the request:

- **single** (one instrument): the engine's single-instrument run; full metrics.
- **universe** (several instruments, no ``max_positions``): every instrument trades its own
  account of ``cash`` (the engine's universe mode, all cores), instruments taken in batches of
  at most `BATCH_BARS` bars so memory stays bounded and progress can be shown. Each symbol gets
  full metrics (``per_symbol``). The top-level ``metrics`` and ``final_equity`` are those of
  the **equal-weighted average of the symbols' accounts** (one account whose cash is split
  equally, each part trading one symbol): its curve is the mean of the symbols' equity curves
  on the union of their timestamps (a symbol's last equity carries forward; before its first
  bar it counts its initial cash). Trade statistics (win rate, expectancy...) are over every
  symbol's trades in that symbol's own account.
- **portfolio** (``max_positions`` given): one account with shared cash over the universe,
  entries ranked by the rule's score (see `signalfactory.domain.backtest.portfolio`).

Honesty: strategies are evaluated on all stored history up to ``--to`` and trading starts at
the first bar at or after ``--from``, so indicators are warmed up on the bars before the
window instead of eating into it. A rule without ``short_entry``/``short_exit`` parts trades
short on its ``exit`` condition and covers on its ``entry`` condition when the direction is
``short`` or ``both`` (so ``both`` flips position on every cross).

Results are stored under a deterministic id (`domain.backtest.stored.backtest_id`): the tenant, the
engine settings, the data range (timeframe, symbols, first and last bar of the window, bar
counts and a sha256 of the bars read) and the strategy's code hash and parameters. Asking
again returns the stored result without computing it again.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from signalfactory.domain.backtest import BacktestConfig, bars_per_year
from signalfactory.domain.backtest.curve_codec import ChunkedRows
from signalfactory.domain.backtest.stored import (
    BacktestResult,
    BacktestSummary,
    DataRange,
    EquityCurve,
    StoredBacktest,
    TradeRecord,
    backtest_id,
    json_scalars,
)
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.rules import check_enough_bars, check_rule
from signalfactory.domain.strategies import RuleStrategy, Strategy, code_hash
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.symbols import check_symbol
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns, ns_to_datetime
from signalfactory.observability.recording import metrics
from signalfactory.services.backtests.modes import MODES, Data, Outcome, Progress, take
from signalfactory.services.backtests.options import BacktestRequest, build_config, window
from signalfactory.services.marketdata.bars import load_universe
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.strategies.catalog import resolve

__all__ = ["Plan", "Progress", "check_data", "check_options", "get_backtest",
           "list_backtests", "prepare", "run_backtest", "store_backtest"]
#: the strategy_name column's width
_NAME_LENGTH = 100


@dataclass(frozen=True)
class Plan:
    """A validated request: everything known before any bar is read."""

    request: BacktestRequest
    config: BacktestConfig
    strategy: Strategy
    stored: StoredStrategy | None
    timeframe: Timeframe
    start: datetime | None
    end: datetime | None
    calendar: str
    bars_per_year: float
    mirror: bool  # a long-only rule traded short on its exit / cover on its entry

    @property
    def strategy_name(self) -> str:
        if self.stored is not None:
            return self.stored.name
        return "adhoc" if self.request.rule is not None else str(self.request.strategy)

    def mode(self, n_instruments: int) -> str:
        if self.request.max_positions is not None:
            return "portfolio"
        return "single" if n_instruments == 1 else "universe"


def check_options(request: BacktestRequest) -> tuple[BacktestConfig, datetime | None,
                                                    datetime | None]:
    """Everything that can be checked without the database: (config, start, end).
    Callers check first and open the database only for a request that passed."""
    config = build_config(request)
    start, end = window(request)
    if not request.symbols and not request.universe:
        raise BadInputError("say what to trade: --symbol S (repeatable) or --universe TAG",
                            rule="symbol")
    if request.symbols and request.universe:
        raise BadInputError("give --symbol or --universe, not both", rule="symbol")
    for symbol in request.symbols:
        check_symbol(symbol)
    if request.parameters and request.strategy is None:
        raise BadInputError("parameters override a built-in strategy's; a rule carries its "
                            "numbers in its text", rule="parameters")
    if (request.strategy is None) == (request.rule is None):
        raise BadInputError("give exactly one of --strategy NAME or --rule TEXT",
                            rule="strategy")
    if request.rule is not None:
        check_rule(request.rule)
    if request.timeframe:
        Timeframe.parse(request.timeframe)
    return config, start, end


def prepare(platform: Platform, request: BacktestRequest) -> Plan:
    """Check everything that can be checked without bars; BadInputError says what to fix."""
    config, start, end = check_options(request)
    if start is not None and start > platform.clock.now():
        raise BadInputError(f"--from {request.start} is in the future: no bars exist there "
                            "yet; give a start in the past", rule="from")
    with platform.database.read(primary=True) as uow:
        strategy, stored = resolve(uow, request.tenant_id, request.strategy, request.rule,
                                   request.parameters, platform=platform, purpose="backtest")
        rows = uow.instruments.find(tag=request.universe,
                                    symbols=list(request.symbols) if request.symbols else None)
    if request.symbols:
        unknown = sorted(set(request.symbols) - {r.symbol for r in rows})
        if unknown:
            raise BadInputError(f"unknown symbol(s): {', '.join(unknown)}; list them with "
                                "`signalfactory instruments`", rule="symbol")
    elif not rows:
        raise BadInputError(f"no instruments are tagged {request.universe!r}; see "
                            "`signalfactory instruments` for the tags", rule="universe")
    timeframe = Timeframe.parse(request.timeframe or (stored.timeframe if stored else "1d"))
    calendar = request.calendar or (
        "crypto" if rows and all(r.asset_class == "crypto" for r in rows) else "stock")
    mirror = (isinstance(strategy, RuleStrategy) and request.direction != "long"
              and not {"short_entry", "short_exit"} & set(strategy.rule.labels))
    return Plan(request=request, config=config, strategy=strategy, stored=stored,
                timeframe=timeframe, start=start, end=end, calendar=calendar,
                bars_per_year=bars_per_year(timeframe.seconds, calendar),  # type: ignore[arg-type]
                mirror=mirror)


def check_data(platform: Platform, plan: Plan) -> None:
    """Refuse now what the run would refuse about the data: a symbol without bars in the
    window, a rule needing more history than is stored. Reads the bars the run will read
    (what it costs the run), so a submitted job does not fail on bad input later."""
    load(platform, plan)


def load(platform: Platform, plan: Plan) -> Data:
    request = plan.request
    bars = load_universe(platform, plan.timeframe,
                         symbols=list(request.symbols) if request.symbols else None,
                         tag=request.universe, end=plan.end)
    start_ns = datetime_to_ns(plan.start) if plan.start is not None else None
    in_window = bars.ts >= start_ns if start_ns is not None else np.ones(bars.n_bars, bool)
    seen = np.zeros(bars.n_bars + 1, dtype=np.int64)
    np.cumsum(in_window, out=seen[1:])
    counts = seen[bars.offsets[1:]] - seen[bars.offsets[:-1]]
    where = f" {plan.timeframe.name} bars" + (f" from {request.start}" if request.start else "") \
        + (f" to {request.end}" if request.end else "")
    if request.symbols:
        missing = sorted(set(request.symbols) - {s for s, c in zip(bars.symbols, counts,
                                                                   strict=True) if c > 0})
        if missing:
            raise BadInputError(f"{', '.join(missing)} ha{'s' if len(missing) == 1 else 've'} "
                                f"no{where}; ingest data, run `signalfactory sample`, or "
                                "change --from/--to/--timeframe", rule="symbol")
    keep = np.flatnonzero(counts > 0)
    if keep.shape[0] == 0:
        raise BadInputError(f"no instruments have{where}; ingest data or change --from/--to/"
                            "--timeframe", rule="universe")
    skipped = sorted(set(bars.symbols) - {bars.symbols[i] for i in keep})
    if keep.shape[0] < bars.n_instruments:
        bars = take(bars, keep)
    if isinstance(plan.strategy, RuleStrategy):
        check_enough_bars(plan.strategy.rule, int(np.diff(bars.offsets).max()))
    digest = hashlib.sha256("\n".join(bars.symbols).encode())
    for arr in (bars.offsets, bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume):
        digest.update(np.ascontiguousarray(arr).data)  # its buffer: no copy of the bars
    win_ts = bars.ts if start_ns is None else bars.ts[bars.ts >= start_ns]
    data_range = DataRange(
        timeframe=plan.timeframe.name, universe=request.universe, symbols=tuple(bars.symbols),
        skipped=tuple(skipped), start=ns_to_datetime(int(win_ts.min())).isoformat(),
        end=ns_to_datetime(int(win_ts.max())).isoformat(), bars=int(win_ts.shape[0]),
        history_bars=int(bars.n_bars), calendar=plan.calendar,
        bars_per_year=plan.bars_per_year, sha256=digest.hexdigest())
    return Data(bars=bars, start_ns=start_ns, data_range=data_range)


# -- the use case ---------------------------------------------------------------------------

def identity(plan: Plan, data_range: DataRange, mode: str) -> dict[str, Any]:
    """What decides the numbers; its canonical JSON's sha256 is the backtest id."""
    cfg = plan.config
    config = {"direction": cfg.direction, "fill": cfg.fill, "cash": cfg.initial_cash,
              "fees": cfg.fee_pct, "fee_fixed": cfg.fee_fixed, "slippage_bps": cfg.slippage_bps,
              "sizing": cfg.sizing, "size": cfg.size_value, "whole_units": cfg.whole_units,
              "stop_loss": cfg.stop_loss, "take_profit": cfg.take_profit,
              "trailing_stop": cfg.trailing_stop, "close_at_end": cfg.close_at_end,
              "max_positions": plan.request.max_positions, "mirror_short": plan.mirror}
    if cfg.needs_atr:
        config.update(atr_period=plan.request.atr_period, atr_multiple=cfg.atr_multiple)
    return {"tenant_id": plan.request.tenant_id, "mode": mode, "config": config,
            "data": data_range.to_json(),
            "strategy": {"code_hash": code_hash(plan.strategy),
                         "parameters": {k: plan.strategy.parameters[k]
                                        for k in sorted(plan.strategy.parameters)}}}


#: how a mode's outcome is computed: (plan, data, mode, progress) -> outcome
Compute = Callable[["Plan", Data, str, Progress | None], Outcome]


@dataclass(frozen=True)
class Resumed:
    """A computation begun by an earlier run (a split job's second run): the data it was
    begun on and how to finish it, so that no bar is read again and bars stored since
    change nothing."""

    data_range: DataRange
    mode: str
    finish: Callable[[], Outcome]


#: the computation under way for a plan, if any (`Resumed`)
Resume = Callable[["Plan"], Resumed | None]


def run_backtest(platform: Platform, request: BacktestRequest,
                 progress: Progress | None = None,
                 compute: Compute | None = None, *,
                 trades_limit: int | None = None,
                 resume: Resume | None = None) -> BacktestResult:
    """Run (or find) the backtest and return the stored result; bad input stores nothing.

    ``progress(done, total)`` counts instruments. The result has ``reused`` True when it was
    found stored under the same id and nothing was computed, and at most ``trades_limit`` of
    its trades (a job names the stored backtest and reads none). ``compute`` replaces the
    in-process computation (a job split into chunks: services/backtests/split.py);
    ``resume`` finds one under way, which is finished on the data it began on, unread.
    """
    plan = prepare(platform, request)
    resumed = resume(plan) if resume is not None else None
    finish: Callable[[], Outcome]
    if resumed is None:
        data = load(platform, plan)
        data_range, mode = data.data_range, plan.mode(data.bars.n_instruments)
        run: Compute = compute or (lambda p, d, m, on: MODES[m](p, d, on))
        finish = functools.partial(run, plan, data, mode, progress)
    else:
        data_range, mode, finish = resumed.data_range, resumed.mode, resumed.finish
    ident = identity(plan, data_range, mode)
    id_ = backtest_id(ident)
    with platform.database.read(primary=True) as uow:
        found = _read(uow, request.tenant_id, id_, trades_limit=trades_limit)
    if found is not None:
        return BacktestResult(found.backtest, found.trades, reused=True)
    started = time.perf_counter()
    outcome = finish()
    duration = time.perf_counter() - started
    if (m := metrics()) is not None:
        m.BACKTEST_DURATION.observe(duration)
    backtest = StoredBacktest(
        id=id_, tenant_id=request.tenant_id, mode=mode, config=json_scalars(ident["config"]),
        data_range=data_range, strategy_name=plan.strategy_name[:_NAME_LENGTH],
        strategy_version=plan.stored.version if plan.stored and not request.parameters
        else None, code_hash=ident["strategy"]["code_hash"],
        metrics=json_scalars(outcome.metrics.as_dict()),
        per_symbol=tuple(outcome.per_symbol), final_equity=float(outcome.final_equity),
        n_trades=outcome.n_trades, created_at=platform.clock.now(),
        duration_seconds=float(duration))
    return store_backtest(platform, backtest, outcome.trades, outcome.curves,
                          chunked=outcome.chunked, trades_limit=trades_limit)


def store_backtest(platform: Platform, backtest: StoredBacktest, trades: Sequence[TradeRecord],
                   curves: Sequence[EquityCurve], *, chunked: ChunkedRows | None = None,
                   trades_limit: int | None = None) -> BacktestResult:
    """Store a computed backtest (unless its id is stored) and return what is stored, with
    at most ``trades_limit`` trades: a run racing on the same id may have stored it first.
    ``chunked``: the trades and the instruments' curves are held by a split backtest's
    chunks (``trades`` is empty, ``curves`` has the aggregate alone)."""
    with platform.database.write() as uow:
        if chunked is None:
            uow.backtests.add(backtest, trades, curves)
        else:
            uow.backtests.add_from_chunks(backtest, curves, chunked)
    with platform.database.read(primary=True) as uow:
        stored = _read(uow, backtest.tenant_id, backtest.id, trades_limit=trades_limit)
    if stored is None:  # deleted in between: its tenant was deleted
        raise NotFoundError(f"no backtest {backtest.id}")
    return stored


def _read(uow: UnitOfWork, tenant_id: int, id_: str, *,
          trades_limit: int | None) -> BacktestResult | None:
    backtest = uow.backtests.get(tenant_id, id_)
    if backtest is None:
        return None
    return BacktestResult(backtest, uow.backtests.trades(id_, limit=trades_limit))


def get_backtest(platform: Platform, tenant_id: int, backtest_id: str, *,
                 trades_limit: int | None = None) -> BacktestResult:
    """The tenant's stored backtest with its trades (at most ``trades_limit``); another
    tenant's id is NotFoundError, exactly like a missing one."""
    with platform.database.read() as uow:
        found = _read(uow, tenant_id, backtest_id, trades_limit=trades_limit)
    if found is None:  # just stored: a read replica may lag behind the primary
        with platform.database.read(primary=True) as uow:
            found = _read(uow, tenant_id, backtest_id, trades_limit=trades_limit)
    if found is None:
        raise NotFoundError(f"no backtest {backtest_id}")
    return found


def list_backtests(platform: Platform, tenant_id: int, *, limit: int = 100,
                   offset: int = 0) -> list[BacktestSummary]:
    """The tenant's backtests, newest first, without trades."""
    with platform.database.read() as uow:
        return uow.backtests.list_recent(tenant_id, limit=limit, offset=offset)
