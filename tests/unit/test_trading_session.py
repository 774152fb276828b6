"""The bar-stepping session around refusals, restarts and bad input."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from signalfactory.domain.backtest import BacktestConfig, Signals
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timestamps import ns_to_datetime
from signalfactory.domain.trading.decisions import CLOSE, NONE, OPEN_LONG, BarSignals, BotRef
from signalfactory.domain.trading.orders import Fill, OrderIntent, Position
from signalfactory.domain.trading.paper_session import (
    Bar,
    BarArrays,
    SymbolStep,
    TradingSession,
    run_bars,
    step_at,
)

REF = BotRef(1, 2, 3)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Market:
    """Fills every intent at its reference price, free, unless told to refuse."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.sent: list[OrderIntent] = []

    def __call__(self, intent: OrderIntent) -> Sequence[Fill]:
        self.sent.append(intent)
        if intent.reason in self.refuse:
            return []
        return [Fill(account_id=3, order_id=len(self.sent), trade_id=str(len(self.sent)),
                     symbol=intent.symbol, side=intent.side, quantity=intent.quantity,
                     price=intent.reference_price, fee=0.0, fee_currency="USD",
                     executed_at=ns_to_datetime(intent.bar_ns))]


def bar(ns: int, price: float) -> Bar:
    return Bar(ns, price, price, price, price)


def test_an_exit_that_does_not_fill_blocks_the_entry_of_a_flip() -> None:
    session = TradingSession(REF, BacktestConfig(direction="both", initial_cash=1000))
    market = Market()
    first = session.step("X", bar(1, 10.0), BarSignals(long_entry=True), signal_ns=1,
                         execute=market)
    assert first.actions == (OPEN_LONG,) and session.quantity("X") == 100.0
    market.refuse = {"reverse"}
    flip = session.step("X", bar(2, 11.0), BarSignals(short_entry=True), signal_ns=2,
                        execute=market)
    assert [i.reason for i in flip.intents] == ["reverse"]  # no entry was sent
    assert flip.fills == () and session.quantity("X") == 100.0
    assert flip.equity == pytest.approx(1100.0)


def test_a_refused_entry_leaves_the_bot_flat_and_quiet_bars_only_mark() -> None:
    session = TradingSession(REF, BacktestConfig(initial_cash=1000))
    market = Market(refuse={"entry"})
    r = session.step("X", bar(1, 10.0), BarSignals(long_entry=True), signal_ns=1,
                     execute=market)
    assert len(r.intents) == 1 and session.quantity("X") == 0.0 and r.equity == 1000.0
    quiet = session.step("X", bar(2, 12.0), BarSignals(), signal_ns=2, execute=market)
    assert quiet.actions == (NONE,) and quiet.intents == () and session.marks["X"] == 12.0
    quote = session.quotes("X")
    assert quote is not None and quote.price == 12.0


def test_resume_from_stored_positions_and_client_ids_repeat() -> None:
    config = BacktestConfig(initial_cash=1000)
    stored = [Position(2, "X", 50.0, 10.0, -1.0, T0), Position(2, "Y", 0.0, 0.0, 0.0, T0)]
    session = TradingSession.resume(REF, config, stored, marks={"X": 12.0})
    assert set(session.positions) == {"X"}
    assert session.cash() == pytest.approx(1000 - 1 - 500)
    assert session.equity() == pytest.approx(499 + 600)
    market = Market()
    out = session.step("X", bar(5, 13.0), BarSignals(long_exit=True), signal_ns=5,
                       execute=market)
    assert out.actions == (CLOSE,) and session.quantity("X") == 0.0
    again = TradingSession.resume(REF, config, stored)
    replay = again.step("X", bar(5, 13.0), BarSignals(long_exit=True), signal_ns=5,
                        execute=Market())
    assert replay.intents[0].client_order_id == out.intents[0].client_order_id


def test_step_all_sizes_each_entry_on_the_cash_left() -> None:
    session = TradingSession(REF, BacktestConfig(initial_cash=1000, size_value=0.6))
    steps = [SymbolStep("A", bar(1, 10.0), BarSignals(long_entry=True), 1, score=0.1),
             SymbolStep("B", bar(1, 20.0), BarSignals(long_entry=True), 1, score=0.9)]
    result = session.step_all(steps, execute=Market())
    # B ranks first: 0.6 * 1000 = 600 -> 30 units; A gets the 400 left -> 40 units
    assert [i.symbol for i in result.intents] == ["B", "A"]
    assert (session.quantity("B"), session.quantity("A")) == (30.0, 40.0)
    assert result.actions == (OPEN_LONG, OPEN_LONG)


def test_run_bars_checks_its_inputs() -> None:
    n = 4
    ts = np.arange(n, dtype=np.int64)
    prices = np.full(n, 10.0)
    arrays = BarArrays(ts, prices, prices, prices, prices)
    session = TradingSession(REF, BacktestConfig(fill="next_open"))
    with pytest.raises(BadInputError):
        run_bars(session, "X", arrays, Signals.build(3), execute=Market())
    with pytest.raises(BadInputError):
        run_bars(session, "X", arrays, Signals.build(n), execute=Market(), start=3, end=2)
    first = step_at(session, "X", arrays, Signals.build(n, long_entry=np.ones(n, bool)), 0,
                    execute=Market())
    assert first.intents == () and session.marks["X"] == 10.0
    curve = run_bars(session, "X", arrays, Signals.build(n, long_entry=np.ones(n, bool)),
                     execute=Market(), start=1)
    assert curve.ts.tolist() == [1, 2, 3] and session.quantity("X") == 1000.0
