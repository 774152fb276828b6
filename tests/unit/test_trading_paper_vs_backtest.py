"""The proof: a bot paper-trading a stored strategy over some bars makes the same trades and
marks the same equity as the backtest of that strategy over the same bars.

The paper side goes the whole way a bot goes: the strategy's signals (the same code and the
same conversion as the backtest service) -> the decision step -> the risk engine (no limits)
-> a cash reservation -> `PaperExchange` -> fills -> positions, one bar at a time; fees and
slippage are not zero; both fill models, all three directions, several sizings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from signalfactory.adapters.exchanges.paper import PaperExchange
from signalfactory.domain.backtest import Signals, run_backtest, run_portfolio
from signalfactory.domain.backtest.engine import BacktestResult
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.strategies import RuleStrategy, builtin_strategy
from signalfactory.domain.synthetic import business_days, generate_symbol
from signalfactory.domain.trading.bots import ACTIVE, Bot, RiskLimits
from signalfactory.domain.trading.capital import (
    BotBook,
    CashLedger,
    reservation_amount,
)
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.decisions import (
    BotRef,
    backtest_config,
    mirrors_short,
    strategy_signals,
)
from signalfactory.domain.trading.exchange import OrderRequest
from signalfactory.domain.trading.orders import Fill, OrderIntent
from signalfactory.domain.trading.paper_session import (
    BarArrays,
    TradingSession,
    run_bars,
    run_universe_bars,
    step_at,
)
from signalfactory.domain.trading.portfolio import EquityCurve, round_trips
from signalfactory.domain.trading.risk import Exposure, check_order, effective_state
from signalfactory.services.trading.ports import Exchange

SYMBOL = "SYN/USDT"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def market_bars(n: int, seed: int) -> BarSeries:
    ts = business_days(1_600_000_000 * 10**9, n)
    raw = generate_symbol(np.random.default_rng(seed), SYMBOL, ts)
    high = np.maximum(raw.high, np.maximum(raw.open, raw.close))
    low = np.minimum(raw.low, np.minimum(raw.open, raw.close))
    return BarSeries(SYMBOL, raw.ts, raw.open, high, low, raw.close, raw.volume)


def make_bot(**settings: object) -> Bot:
    base: dict[str, object] = dict(
        id=5, tenant_id=2, name="paper", strategy_version_id=1, account_id=8,
        symbols=(SYMBOL,), timeframe="1d", allocation=10_000.0, sizing="fraction",
        size_value=1.0, limits=RiskLimits(), status="running", state=ACTIVE, created_at=T0,
        updated_at=T0, fee_pct=0.001, fee_fixed=1.0, slippage_bps=5.0)
    base.update(settings)
    return Bot(**base)


@dataclass
class OrderPath:
    """What the bot runner does with an intent, with no limits: risk check, cash
    reservation, the exchange, fills back, reservation settled."""

    bot: Bot
    exchange: Exchange
    ledger: CashLedger
    costs: CostModel
    session: TradingSession | None = None
    fills: list[Fill] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __call__(self, intent: OrderIntent) -> Sequence[Fill]:
        assert self.session is not None
        held = {s: p.quantity for s, p in self.session.positions.items()}
        state = effective_state(tenant_id=self.bot.tenant_id, bot_id=self.bot.id)
        decision = check_order(intent, limits=self.bot.limits, state=state,
                               exposure=Exposure(positions=held))
        if not decision.accepted:
            self.refused.append(str(decision.rule))
            return []
        cid = intent.client_order_id
        if intent.reason == "entry":
            px = self.costs.fill_price(intent.reference_price, intent.side)
            self.ledger.reserve(cid, self.bot.id, reservation_amount(intent.quantity, px,
                                                                     self.costs))
        order = self.exchange.create_order(OrderRequest(
            symbol=intent.symbol, side=intent.side, type="market", amount=intent.quantity,
            client_order_id=cid))
        assert order.status == "filled"
        trades = [t for t in self.exchange.fetch_my_trades(intent.symbol)
                  if t.client_order_id == cid]
        fills = [Fill(account_id=self.bot.account_id, order_id=len(self.fills) + k,
                      trade_id=t.trade_id, symbol=t.symbol, side=t.side, quantity=t.amount,
                      price=t.price, fee=t.fee, fee_currency=t.fee_currency,
                      executed_at=t.executed_at) for k, t in enumerate(trades)]
        for f in fills:
            self.ledger.settle(cid, self.bot.id, self.session.positions.get(f.symbol), f,
                               done=True)
        self.fills.extend(fills)
        return fills


def paper_run(bot: Bot, bars: BarSeries, signals: Signals,
              atr: np.ndarray | None = None) -> tuple[EquityCurve, OrderPath, PaperExchange,
                                                      TradingSession]:
    config = backtest_config(bot)
    session = TradingSession(BotRef.of(bot), config)
    costs = CostModel.of(config)
    exchange = PaperExchange(balances={"USDT": bot.allocation}, prices=session.quotes,
                             costs=costs, allow_short=bot.direction != "long")
    ledger = CashLedger(bots=[BotBook(bot.id, bot.tenant_id, bot.account_id, bot.allocation,
                                      bot.allocation)],
                        account_cash={bot.account_id: bot.allocation})
    path = OrderPath(bot, exchange, ledger, costs, session)
    arrays = BarArrays(bars.ts, bars.open, bars.high, bars.low, bars.close)
    curve = run_bars(session, SYMBOL, arrays, signals, execute=path, atr=atr)
    return curve, path, exchange, session


def assert_same(result: BacktestResult, bars: BarSeries, curve: EquityCurve,
                fills: list[Fill]) -> None:
    np.testing.assert_allclose(curve.equity, result.equity, rtol=1e-11, atol=0)
    assert np.array_equal(curve.ts, bars.ts)
    trips = round_trips(fills, marks={SYMBOL: float(bars.close[-1])})
    trades = result.trades
    assert len(trips) == len(trades)
    for trip, k in zip(trips, range(len(trades)), strict=True):
        assert trip.entry_ns == bars.ts[trades.entry_idx[k]]
        assert trip.is_open == bool(trades.is_open[k])
        if not trip.is_open:
            assert trip.exit_ns == bars.ts[trades.exit_idx[k]]
        assert trip.size == pytest.approx(trades.size[k], rel=1e-12)
        assert trip.entry_price == trades.entry_price[k]
        assert trip.exit_price == pytest.approx(trades.exit_price[k], rel=1e-15)
        assert trip.fees == pytest.approx(trades.fees[k], rel=1e-11)
        assert trip.pnl == pytest.approx(trades.pnl[k], rel=1e-9, abs=1e-9)


CASES = [
    # direction, fill, sizing, size_value, whole_units
    ("long", "close", "fraction", 1.0, True),
    ("long", "next_open", "fraction", 1.0, False),
    ("both", "close", "fraction", 0.5, True),
    ("both", "next_open", "cash", 3_000.0, False),
    ("short", "close", "units", 20.0, True),
    ("short", "next_open", "fraction", 0.8, True),
]


@pytest.mark.parametrize(("direction", "fill", "sizing", "size_value", "whole"), CASES)
def test_paper_run_equals_backtest(direction: str, fill: str, sizing: str, size_value: float,
                                   whole: bool) -> None:
    bars = market_bars(600, seed=CASES.index((direction, fill, sizing, size_value, whole)))
    bot = make_bot(direction=direction, fill=fill, sizing=sizing, size_value=size_value,
                   whole_units=whole)
    strategy = builtin_strategy("sma_cross", fast=5, slow=20)
    evaluation = strategy.evaluate(bars)
    signals = strategy_signals(evaluation, mirror=mirrors_short(strategy, direction))
    result = run_backtest(bars.open, bars.high, bars.low, bars.close, signals,
                          backtest_config(bot))
    assert len(result.trades) >= 10  # enough trades to mean something
    curve, path, exchange, session = paper_run(bot, bars, signals)
    assert path.refused == []
    assert_same(result, bars, curve, path.fills)
    # every order went to the exchange once; the ledger holds nothing back
    assert len(exchange.orders()) == len(path.fills)
    assert path.ledger.reserved() == 0.0
    assert path.ledger.book(bot.id).cash == pytest.approx(session.cash(), rel=1e-9, abs=1e-6)
    if direction == "long":  # spot: the account's balances are the bot's cash and position
        balances = exchange.balances()
        assert balances["USDT"] == pytest.approx(session.cash(), rel=1e-9, abs=1e-6)
        assert balances.get("SYN", 0.0) == pytest.approx(session.quantity(SYMBOL), abs=1e-9)


def test_risk_sizing_with_atr_matches_too() -> None:
    import talib

    bars = market_bars(400, seed=7)
    bot = make_bot(sizing="risk", size_value=0.02, atr_multiple=2.0, fill="next_open")
    atr = talib.ATR(bars.high, bars.low, bars.close, 14)
    strategy = builtin_strategy("sma_cross", fast=8, slow=21)
    signals = strategy_signals(strategy.evaluate(bars), mirror=False)
    result = run_backtest(bars.open, bars.high, bars.low, bars.close, signals,
                          backtest_config(bot), atr=atr)
    curve, path, _, _ = paper_run(bot, bars, signals, atr=atr)
    assert len(result.trades) >= 5
    assert_same(result, bars, curve, path.fills)


def test_step_by_step_on_growing_history_is_the_same_run() -> None:
    """Live, a bot evaluates its strategy on the history up to the newest bar only: the
    stored strategy's rule text, evaluated afresh at every bar, gives the same run."""
    bars = market_bars(160, seed=3)
    stored_rule = builtin_strategy("sma_cross", fast=4, slow=12).text
    strategy = RuleStrategy.from_text("stored", stored_rule)
    bot = make_bot(direction="both", fill="next_open", fee_fixed=0.5)
    full = strategy_signals(strategy.evaluate(bars), mirror=mirrors_short(strategy, "both"))
    result = run_backtest(bars.open, bars.high, bars.low, bars.close, full,
                          backtest_config(bot))
    config = backtest_config(bot)
    session = TradingSession(BotRef.of(bot), config)
    costs = CostModel.of(config)
    exchange = PaperExchange(balances={"USDT": bot.allocation}, prices=session.quotes,
                             costs=costs, allow_short=True)
    ledger = CashLedger(bots=[BotBook(bot.id, bot.tenant_id, bot.account_id, bot.allocation,
                                      bot.allocation)],
                        account_cash={bot.account_id: bot.allocation})
    path = OrderPath(bot, exchange, ledger, costs, session)
    equity = np.empty(len(bars))
    for t in range(len(bars)):
        upto = BarSeries(SYMBOL, bars.ts[:t + 1], bars.open[:t + 1], bars.high[:t + 1],
                         bars.low[:t + 1], bars.close[:t + 1], bars.volume[:t + 1])
        signals = strategy_signals(strategy.evaluate(upto), mirror=True)
        arrays = BarArrays(upto.ts, upto.open, upto.high, upto.low, upto.close)
        equity[t] = step_at(session, SYMBOL, arrays, signals, t, execute=path).equity
        # a restarted runner rebuilds its session from the stored positions and goes on
        if t == 80:
            session = TradingSession.resume(BotRef.of(bot), config,
                                            session.positions.values(), marks=session.marks,
                                            quotes=session.quotes)
            path.session = session
    assert len(result.trades) >= 5
    assert_same(result, bars, EquityCurve(bars.ts, equity, bot.allocation), path.fills)


@pytest.mark.parametrize(("direction", "fill"), [("long", "close"), ("both", "next_open")])
def test_a_bot_over_several_symbols_trades_as_the_portfolio_backtest(direction: str,
                                                                       fill: str) -> None:
    """Shared cash, all exits before the entries, entries ranked by the strategy's score:
    the paper run equals `run_portfolio` with one slot per symbol."""
    full = [market_bars(420, seed=s) for s in (11, 12, 13)]
    names = ("AAA/USDT", "BBB/USDT", "CCC/USDT")
    cuts = [(0, 420), (60, 420), (0, 350)]  # one starts late, one ends early
    series = [BarSeries(name, b.ts[a:z], b.open[a:z], b.high[a:z], b.low[a:z], b.close[a:z],
                        b.volume[a:z]) for name, b, (a, z) in zip(names, full, cuts, strict=True)]
    universe = BarUniverse.from_series(series)
    strategy = builtin_strategy("sma_cross", fast=5, slow=15)
    evaluation = strategy.evaluate(universe)
    signals = strategy_signals(evaluation, mirror=mirrors_short(strategy, direction))
    bot = make_bot(direction=direction, fill=fill, symbols=names, size_value=0.45,
                   whole_units=False)
    config = backtest_config(bot)
    result = run_portfolio(universe, signals, config, max_positions=3, score=evaluation.score)

    session = TradingSession(BotRef.of(bot), config)
    costs = CostModel.of(config)
    exchange = PaperExchange(balances={"USDT": bot.allocation}, prices=session.quotes,
                             costs=costs, allow_short=direction != "long")
    ledger = CashLedger(bots=[BotBook(bot.id, bot.tenant_id, bot.account_id, bot.allocation,
                                      bot.allocation)],
                        account_cash={bot.account_id: bot.allocation})
    path = OrderPath(bot, exchange, ledger, costs, session)
    curve = run_universe_bars(session, universe, signals, execute=path, score=evaluation.score)

    assert path.refused == []
    assert np.array_equal(curve.ts, result.times)
    np.testing.assert_allclose(curve.equity, result.equity, rtol=1e-11, atol=0)
    last_close = {s.symbol: float(s.close[-1]) for s in series}
    trips = round_trips(path.fills, marks=last_close)
    trades = result.trades
    assert len(trips) == len(trades) >= 20
    expected = sorted(
        (int(series[i].ts[trades.entry_idx[k]]), names[i], float(trades.size[k]),
         float(trades.entry_price[k]), float(trades.pnl[k]))
        for k, i in enumerate(result.instrument))
    got = sorted((t.entry_ns, t.symbol, t.size, t.entry_price, t.pnl) for t in trips)
    for (e_ts, e_sym, e_size, e_px, e_pnl), (g_ts, g_sym, g_size, g_px, g_pnl) in zip(
            expected, got, strict=True):
        assert (g_ts, g_sym, g_px) == (e_ts, e_sym, e_px)
        assert g_size == pytest.approx(e_size, rel=1e-11)
        assert g_pnl == pytest.approx(e_pnl, rel=1e-9, abs=1e-9)
