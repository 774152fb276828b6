"""Engine semantics on small hand-computed cases: fills, costs, sizing, stops, flips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signalfactory.domain.backtest import BacktestConfig, ExitReason, Signals, run_backtest
from signalfactory.domain.errors import BadInputError


def bars(close: list[float], open_: list[float] | None = None, high: list[float] | None = None,
         low: list[float] | None = None) -> tuple[np.ndarray, ...]:
    c = np.array(close, dtype=float)
    o = np.array(open_ if open_ is not None else close, dtype=float)
    h = np.array(high, dtype=float) if high is not None else np.maximum(o, c)
    lo = np.array(low, dtype=float) if low is not None else np.minimum(o, c)
    return o, h, lo, c


def flags(n: int, *idx: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[list(idx)] = True
    return out


def run(prices: tuple[np.ndarray, ...], config: BacktestConfig, **sig: np.ndarray):
    n = prices[3].shape[0]
    return run_backtest(*prices, Signals.build(n, **sig), config)


def test_fill_on_close_buys_all_in_whole_units_and_marks_to_market() -> None:
    p = bars([10, 11, 12, 9, 8])
    r = run(p, BacktestConfig(initial_cash=1000), long_entry=flags(5, 1), long_exit=flags(5, 3))
    # 1000 // 11 = 90 units at 11 -> 10 cash left; sold at 9 -> 10 + 810 = 820
    assert r.trades.size.tolist() == [90.0]
    assert (r.trades.entry_idx[0], r.trades.exit_idx[0]) == (1, 3)
    assert r.equity.tolist() == [1000, 1000, 10 + 90 * 12, 820, 820]
    assert r.final_equity == 820
    assert r.trades.reason[0] == ExitReason.SIGNAL


def test_fill_next_open_uses_the_following_open_and_never_fills_a_last_bar_signal() -> None:
    p = bars([10, 11, 12, 9, 8], open_=[10, 10.5, 12.5, 9.5, 7])
    r = run(p, BacktestConfig(initial_cash=1000, fill="next_open"),
            long_entry=flags(5, 0, 4), long_exit=flags(5, 2))
    # signal at 0 fills at open[1] = 10.5 -> 95 units; exit at 2 fills at open[3] = 9.5
    assert len(r.trades) == 1
    assert r.trades.entry_price[0] == 10.5 and r.trades.exit_price[0] == 9.5
    assert (r.trades.entry_idx[0], r.trades.exit_idx[0]) == (1, 3)
    cash_after = 1000 - 95 * 10.5
    assert r.final_equity == pytest.approx(cash_after + 95 * 9.5)  # the last signal never fills


def test_percent_and_fixed_fees_are_charged_per_order_and_reduce_size() -> None:
    p = bars([100, 100, 110])
    cfg = BacktestConfig(initial_cash=1000, fee_pct=0.01, fee_fixed=5)
    r = run(p, cfg, long_entry=flags(3, 0), long_exit=flags(3, 2))
    units = math.floor((1000 - 5) / 1.01 / 100)  # 9
    entry_fee = units * 100 * 0.01 + 5
    exit_fee = units * 110 * 0.01 + 5
    assert r.trades.size[0] == units
    assert r.trades.fees[0] == pytest.approx(entry_fee + exit_fee)
    assert r.trades.pnl[0] == pytest.approx(units * 10 - entry_fee - exit_fee)
    assert r.final_equity == pytest.approx(1000 + units * 10 - entry_fee - exit_fee)
    assert r.trades.ret[0] == pytest.approx(r.trades.pnl[0] / (units * 100))


def test_slippage_moves_both_fills_against_the_trader() -> None:
    p = bars([100, 100, 100])
    r = run(p, BacktestConfig(initial_cash=1000, slippage_bps=50, whole_units=False),
            long_entry=flags(3, 0), long_exit=flags(3, 2))
    assert r.trades.entry_price[0] == pytest.approx(100.5)
    assert r.trades.exit_price[0] == pytest.approx(99.5)
    assert r.final_equity == pytest.approx(1000 / 100.5 * 99.5)


@pytest.mark.parametrize(("sizing", "value", "expected_units"), [
    ("fraction", 0.5, 50.0),  # half of 10,000 at 100
    ("cash", 2500.0, 25.0),
    ("units", 7.0, 7.0),
    ("units", 1e6, 100.0),  # capped at what the cash affords
    ("risk", 0.01, 20.0),  # 1 % of 10,000 / (ATR 2.5 x 2)
])
def test_sizing_modes(sizing: str, value: float, expected_units: float) -> None:
    p = bars([100, 100, 100])
    cfg = BacktestConfig(sizing=sizing, size_value=value, atr_multiple=2.0)  # type: ignore[arg-type]
    r = run_backtest(*p, Signals.build(3, long_entry=flags(3, 0)), cfg, atr=np.full(3, 2.5))
    assert r.trades.size[0] == expected_units


def test_fractional_units_spend_everything() -> None:
    p = bars([3, 3, 6])
    r = run(p, BacktestConfig(initial_cash=1000, whole_units=False), long_entry=flags(3, 0))
    assert r.trades.size[0] == pytest.approx(1000 / 3)
    assert r.final_equity == pytest.approx(2000)
    assert r.trades.reason[0] == ExitReason.OPEN


def test_risk_sizing_without_atr_is_refused() -> None:
    p = bars([1, 2, 3])
    with pytest.raises(BadInputError, match="ATR"):
        run(p, BacktestConfig(sizing="risk", size_value=0.01), long_entry=flags(3, 0))


def test_risk_sizing_skips_entries_where_atr_is_undefined() -> None:
    p = bars([100, 100, 100])
    r = run_backtest(*p, Signals.build(3, long_entry=flags(3, 0)),
                     BacktestConfig(sizing="risk", size_value=0.01), atr=np.full(3, np.nan))
    assert len(r.trades) == 0


def test_stop_loss_fills_at_the_level_inside_the_bar() -> None:
    p = bars([100, 99, 98], high=[100, 101, 99], low=[100, 94, 97])
    r = run(p, BacktestConfig(initial_cash=1000, stop_loss=0.05), long_entry=flags(3, 0))
    assert r.trades.reason[0] == ExitReason.STOP_LOSS
    assert (r.trades.exit_idx[0], r.trades.exit_price[0]) == (1, pytest.approx(95.0))


def test_gap_through_a_stop_fills_at_the_open() -> None:
    p = bars([100, 90], open_=[100, 91], high=[100, 92], low=[100, 89])
    r = run(p, BacktestConfig(stop_loss=0.05), long_entry=flags(2, 0))
    assert r.trades.exit_price[0] == 91.0


def test_take_profit_and_gap_beyond_it_fill_at_level_and_open() -> None:
    p = bars([100, 105, 130], open_=[100, 101, 125], high=[100, 111, 131], low=[100, 100, 124])
    cfg = BacktestConfig(take_profit=0.10)
    r = run(p, cfg, long_entry=flags(3, 0, 1))
    assert r.trades.reason[0] == ExitReason.TAKE_PROFIT
    assert r.trades.exit_price[0] == pytest.approx(110.0)
    # re-entered at the close of bar 1 (105); bar 2 opens at 125 > 115.5: fills at the open
    assert r.trades.exit_price[1] == 125.0


def test_when_stop_and_target_are_both_touched_the_loss_is_assumed() -> None:
    p = bars([100, 100], high=[100, 115], low=[100, 90])
    r = run(p, BacktestConfig(stop_loss=0.05, take_profit=0.10), long_entry=flags(2, 0))
    assert r.trades.reason[0] == ExitReason.STOP_LOSS
    assert r.trades.exit_price[0] == pytest.approx(95.0)


def test_short_stops_mirror_long_ones() -> None:
    p = bars([100, 100], high=[100, 106], low=[100, 85])
    r = run(p, BacktestConfig(direction="short", stop_loss=0.05, take_profit=0.10),
            short_entry=flags(2, 0))
    assert r.trades.size[0] < 0
    assert r.trades.reason[0] == ExitReason.STOP_LOSS
    assert r.trades.exit_price[0] == pytest.approx(105.0)


def test_trailing_stop_trails_the_previous_bars_high() -> None:
    # entry 100; bar 1 high 120 -> trail level from bar 2 on is 108 (10 %)
    p = bars([100, 118, 115, 100], open_=[100, 118, 115, 112], high=[100, 120, 116, 112],
             low=[100, 101, 109, 99])
    r = run(p, BacktestConfig(trailing_stop=0.10), long_entry=flags(4, 0))
    assert r.trades.reason[0] == ExitReason.TRAILING_STOP
    assert r.trades.exit_idx[0] == 3
    assert r.trades.exit_price[0] == pytest.approx(108.0)


def test_trailing_stop_is_not_raised_by_the_same_bars_high() -> None:
    # bar 1: high 130 and low 110; the old level (90) holds, the new one (117) waits a bar
    p = bars([100, 120, 120], high=[100, 130, 121], low=[100, 110, 118])
    r = run(p, BacktestConfig(trailing_stop=0.10), long_entry=flags(3, 0))
    assert r.trades.reason[0] == ExitReason.OPEN
    p2 = bars([100, 120, 120], high=[100, 130, 121], low=[100, 110, 116])
    r2 = run(p2, BacktestConfig(trailing_stop=0.10), long_entry=flags(3, 0))
    assert r2.trades.exit_price[0] == pytest.approx(117.0)


def test_stops_are_checked_on_the_entry_bar_only_after_an_open_fill() -> None:
    p = bars([100, 100, 100], open_=[100, 100, 100], high=[100, 100, 100], low=[80, 80, 100])
    at_close = run(p, BacktestConfig(stop_loss=0.05), long_entry=flags(3, 0))
    assert at_close.trades.exit_idx[0] == 1  # bar 0's low happened before the close fill
    next_open = run(p, BacktestConfig(stop_loss=0.05, fill="next_open"),
                    long_entry=flags(3, 0))
    assert next_open.trades.entry_idx[0] == 1 and next_open.trades.exit_idx[0] == 1


def test_flip_closes_the_long_and_opens_a_short_on_the_same_fill() -> None:
    p = bars([10, 10, 8, 9])
    cfg = BacktestConfig(initial_cash=100, direction="both")
    r = run(p, cfg, long_entry=flags(4, 0), short_entry=flags(4, 2))
    assert r.trades.size.tolist() == [10.0, -10.0]  # 100 -> 80 after the long, 80 // 8 = 10
    assert r.trades.reason[0] == ExitReason.REVERSED
    assert r.trades.entry_idx[1] == r.trades.exit_idx[0] == 2
    # short of 10 at 8 (80 collateral), marked at 9: 80 - 10 = 70
    assert r.final_equity == pytest.approx(70.0)


def test_long_only_ignores_short_signals_and_short_only_ignores_long() -> None:
    p = bars([10, 10, 8, 9])
    long_only = run(p, BacktestConfig(), short_entry=flags(4, 1))
    assert len(long_only.trades) == 0
    short_only = run(p, BacktestConfig(direction="short"), long_entry=flags(4, 1))
    assert len(short_only.trades) == 0


def test_conflicting_signals_on_one_bar() -> None:
    p = bars([10, 10, 10])
    both = BacktestConfig(direction="both")
    assert len(run(p, both, long_entry=flags(3, 0), short_entry=flags(3, 0)).trades) == 0
    assert len(run(p, BacktestConfig(), long_entry=flags(3, 0), long_exit=flags(3, 0)).trades) == 0
    r = run(p, BacktestConfig(), long_entry=flags(3, 0, 1), long_exit=flags(3, 1))
    assert r.trades.exit_idx.tolist() == [1]  # the exit wins over a same-side entry


def test_close_at_end_closes_with_fees_otherwise_the_trade_stays_open() -> None:
    p = bars([10, 10, 12])
    opened = run(p, BacktestConfig(initial_cash=100, fee_pct=0.01), long_entry=flags(3, 0))
    closed = run(p, BacktestConfig(initial_cash=100, fee_pct=0.01, close_at_end=True),
                 long_entry=flags(3, 0))
    assert opened.trades.reason[0] == ExitReason.OPEN
    assert closed.trades.reason[0] == ExitReason.END
    units = opened.trades.size[0]
    assert opened.final_equity - closed.final_equity == pytest.approx(units * 12 * 0.01)
    assert closed.equity[-1] == closed.final_equity


def test_equity_never_below_zero_is_traded_on() -> None:
    p = bars([10, 10, 30, 10, 10])
    r = run(p, BacktestConfig(initial_cash=100, direction="short"),
            short_entry=flags(5, 0, 3))
    assert r.trades.reason[0] == ExitReason.LIQUIDATED
    assert len(r.trades) == 1  # no new entry after liquidation


def test_window_start_end_and_float32_equity() -> None:
    p = bars([10, 11, 12, 13, 14])
    sig = Signals.build(5, long_entry=flags(5, 0, 2))
    r = run_backtest(*p, sig, BacktestConfig(initial_cash=100), start=2, end=4,
                     equity_dtype=np.float32)
    assert r.equity.dtype == np.float32 and r.equity.shape == (2,)
    assert r.trades.entry_idx.tolist() == [2]


@pytest.mark.parametrize("kwargs", [
    {"direction": "sideways"}, {"fill": "vwap"}, {"fee_pct": 0.5}, {"initial_cash": 0},
    {"slippage_bps": -1}, {"sizing": "fraction", "size_value": 2.0},
    {"stop_loss": 1.5}, {"sizing": "magic"},
])
def test_invalid_configs_say_what_to_change(kwargs: dict[str, object]) -> None:
    with pytest.raises(BadInputError):
        BacktestConfig(**kwargs)  # type: ignore[arg-type]


def test_inputs_are_validated() -> None:
    o, h, lo, c = bars([1, 2, 3])
    with pytest.raises(BadInputError):
        run_backtest(o, h, lo, c, Signals.build(2), BacktestConfig())
    with pytest.raises(BadInputError):
        run_backtest(o, h, lo, np.array([1, np.nan, 3]), Signals.build(3), BacktestConfig())
    with pytest.raises(BadInputError):
        run_backtest(o, h, lo, c, Signals.build(3), BacktestConfig(), start=2, end=1)
