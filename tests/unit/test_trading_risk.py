"""The risk engine: pre-trade rules, states confirmed on marks, the two-step kill switch."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from signalfactory.domain.errors import BadInputError, ConflictError
from signalfactory.domain.trading.bots import (
    ACTIVE,
    BOT,
    GLOBAL,
    HALTED,
    REDUCING,
    TENANT,
    KillSwitch,
    RiskLimits,
)
from signalfactory.domain.trading.exchange import Market
from signalfactory.domain.trading.orders import OrderIntent, Side
from signalfactory.domain.trading.risk import (
    EVENT_DAILY_LOSS_WARNING,
    EVENT_KILL_SWITCH_ENGAGED,
    EVENT_STATE_CHANGED,
    EffectiveState,
    Exposure,
    KillSwitchStepError,
    LossMonitor,
    LossPolicy,
    RiskRefusedError,
    check_order,
    effective_state,
    engage_kill_switch,
    mark,
    rearm_kill_switch,
    resume_kill_switch,
    resume_state,
    worst,
)

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
NOW_NS = 1_700_000_000 * 10**9
MARKET = Market(symbol="BTC/USDT", base="BTC", quote="USDT", amount_step=0.001,
                price_step=0.01, min_amount=0.001, min_notional=10.0, max_amount=100.0)


def intent(side: Side = "buy", qty: float = 1.0, price: float = 100.0, symbol: str = "BTC/USDT",
           limit: float | None = None) -> OrderIntent:
    return OrderIntent(tenant_id=1, bot_id=7, account_id=3, symbol=symbol, side=side,
                       quantity=qty, type="market" if limit is None else "limit",
                       limit_price=limit, bar_ns=NOW_NS, reason="entry", reference_price=price)


# -- pre-trade checks --------------------------------------------------------------------------

def test_no_limits_accepts_a_sane_order() -> None:
    decision = check_order(intent(), limits=RiskLimits())
    assert decision.accepted and decision.rule is None
    decision.raise_if_refused()


@pytest.mark.parametrize(("order", "rule"), [
    (intent(qty=0.0), "order"),
    (intent(qty=-1.0), "order"),
    (intent(qty=math.nan), "order"),
    (intent(price=0.0), "order"),
])
def test_malformed_orders_are_refused(order: OrderIntent, rule: str) -> None:
    assert check_order(order, limits=RiskLimits()).rule == rule


@pytest.mark.parametrize(("order", "rule"), [
    (intent(qty=0.0015), "precision"),
    (intent(qty=1.0, limit=100.005), "precision"),
    (intent(qty=0.0, price=100.0), "order"),
    (intent(qty=0.05, price=100.0), "min-notional"),  # 5 USDT < 10
    (intent(qty=101.0, price=1.0), "max-amount"),
    (intent(qty=0.3, price=100.0), None),  # 0.3 is on the 0.001 grid despite float noise
])
def test_market_rules_are_checked_before_sending(order: OrderIntent, rule: str | None) -> None:
    decision = check_order(order, limits=RiskLimits(), market=MARKET)
    assert decision.rule == rule, decision.message


def test_min_amount_refusal() -> None:
    market = Market(symbol="X/USDT", base="X", quote="USDT", amount_step=0.0, price_step=0.0,
                    min_amount=2.0, min_notional=0.0)
    assert check_order(intent(qty=1.5, symbol="X/USDT"), limits=RiskLimits(),
                       market=market).rule == "min-amount"


def test_size_limits_refuse_new_risk_with_their_rule() -> None:
    limits = RiskLimits(max_order_notional=500.0, max_symbol_notional=800.0,
                        max_open_positions=2)
    assert check_order(intent(qty=6), limits=limits).rule == "max-order-notional"
    held = Exposure(positions={"BTC/USDT": 4.0}, prices={"BTC/USDT": 100.0})
    assert check_order(intent(qty=5), limits=limits, exposure=held).rule == \
        "max-symbol-notional"
    assert check_order(intent(qty=4), limits=limits, exposure=held).accepted  # 800: at it
    # working orders count as held
    working = Exposure(working={"BTC/USDT": 5.0})
    assert check_order(intent(qty=4), limits=limits, exposure=working).rule == \
        "max-symbol-notional"
    two = Exposure(positions={"A": 1.0, "B": -2.0, "C": 0.0}, prices={"A": 1.0, "B": 1.0})
    assert check_order(intent(symbol="D"), limits=limits, exposure=two).rule == \
        "max-open-positions"
    # adding to a held symbol does not open a position
    assert check_order(intent(symbol="A"), limits=limits, exposure=two).accepted


def test_exits_are_never_refused_by_size_limits() -> None:
    limits = RiskLimits(max_order_notional=10.0, max_symbol_notional=10.0, max_open_positions=0)
    held = Exposure(positions={"BTC/USDT": 50.0})
    assert check_order(intent("sell", qty=50), limits=limits, exposure=held).accepted
    # selling more than held flips the position: that is new risk
    assert check_order(intent("sell", qty=51), limits=limits, exposure=held).rule == \
        "max-order-notional"


def test_order_rate_counts_the_last_minute() -> None:
    limits = RiskLimits(max_orders_per_minute=3)
    sec = 10**9
    recent = [NOW_NS - 61 * sec, NOW_NS - 59 * sec, NOW_NS - 30 * sec]
    assert check_order(intent(), limits=limits, recent_orders_ns=recent, now_ns=NOW_NS).accepted
    recent.append(NOW_NS - sec)
    decision = check_order(intent(), limits=limits, recent_orders_ns=recent, now_ns=NOW_NS)
    assert decision.rule == "max-order-rate"
    with pytest.raises(RiskRefusedError) as err:
        decision.raise_if_refused()
    assert err.value.rule == "max-order-rate" and "3" in str(err.value)


def test_states_halted_and_reducing() -> None:
    held = Exposure(positions={"BTC/USDT": 2.0})
    halted = EffectiveState(HALTED, "state-halted", TENANT, 1)
    reducing = EffectiveState(REDUCING, "state-reducing", BOT, 7)
    assert check_order(intent("sell", 2), limits=RiskLimits(), state=halted,
                       exposure=held).rule == "state-halted"
    assert check_order(intent("buy", 1), limits=RiskLimits(), state=reducing,
                       exposure=held).rule == "state-reducing"
    assert check_order(intent("sell", 3), limits=RiskLimits(), state=reducing,
                       exposure=held).rule == "state-reducing"
    assert check_order(intent("sell", 2), limits=RiskLimits(), state=reducing,
                       exposure=held).accepted
    short = Exposure(positions={"BTC/USDT": -2.0})
    assert check_order(intent("buy", 1), limits=RiskLimits(), state=reducing,
                       exposure=short).accepted


def test_effective_state_is_the_worst_and_a_kill_switch_names_itself() -> None:
    assert effective_state(tenant_id=1, bot_id=7).state == ACTIVE
    s = effective_state(tenant_id=1, bot_id=7, global_state=REDUCING, bot_state=HALTED)
    assert (s.state, s.rule, s.scope, s.scope_id) == (HALTED, "state-halted", BOT, 7)
    s = effective_state(tenant_id=1, bot_id=7, tenant_state=REDUCING)
    assert (s.state, s.rule, s.scope) == (REDUCING, "state-reducing", TENANT)
    other = KillSwitch(TENANT, 2, True, False, T0, "admin", "other tenant")
    mine = KillSwitch(BOT, 7, True, True, T0, "admin", "re-armed, not resumed")
    assert effective_state(tenant_id=1, bot_id=7, kill_switches=[other]).state == ACTIVE
    s = effective_state(tenant_id=1, bot_id=7, kill_switches=[other, mine])
    assert (s.state, s.rule, s.scope) == (HALTED, "kill-switch", BOT)
    decision = check_order(intent("sell"), limits=RiskLimits(), state=s,
                           exposure=Exposure(positions={"BTC/USDT": 1.0}))
    assert decision.rule == "kill-switch" and "re-arms" in decision.message
    released = KillSwitch(GLOBAL, 0, False, False, T0, "admin", "resumed")
    assert effective_state(tenant_id=1, bot_id=7, kill_switches=[released]).state == ACTIVE
    with pytest.raises(BadInputError):
        worst("paused")


# -- loss limits on marks ----------------------------------------------------------------------

def marks(monitor: LossMonitor, equities: list[float], limits: RiskLimits, state: str = ACTIVE,
          start: datetime = T0, step: timedelta = timedelta(minutes=1),
          policy: LossPolicy | None = None) -> tuple[LossMonitor, str, list[list[str]]]:
    """Feed marks; returns the monitor, the final state and each mark's event kinds/targets."""
    seen: list[list[str]] = []
    for i, equity in enumerate(equities):
        kwargs = {} if policy is None else {"policy": policy}
        result = mark(monitor, equity, start + i * step, limits=limits, state=state, **kwargs)
        monitor, state = result.monitor, result.state
        seen.append([f"{e.kind}:{e.to_state}:{e.rule}" for e in result.events])
    return monitor, state, seen


def test_one_bad_tick_does_not_halt_but_confirmed_marks_do() -> None:
    limits = RiskLimits(daily_loss_limit=100.0, confirm_marks=3)
    monitor = LossMonitor(BOT, 7)
    # a spike down on one mark, then recovery: warning only, no state change
    monitor, state, seen = marks(monitor, [1000, 850, 1000, 1000], limits)
    assert state == ACTIVE
    assert seen[1] == [f"{EVENT_DAILY_LOSS_WARNING}:active:daily-loss-limit"]
    assert monitor.daily_breaches == 0
    # two breaching marks then one fine: counter resets
    monitor, state, _ = marks(monitor, [890, 880, 950], limits)
    assert state == ACTIVE and monitor.daily_breaches == 0
    # three in a row: halted on the third, and once only
    monitor, state, seen = marks(monitor, [899, 880, 870, 860], limits)
    assert state == HALTED
    assert seen[2] == [f"{EVENT_STATE_CHANGED}:halted:daily-loss-limit"] and seen[3] == []
    assert seen[0] == []  # the warning fired once today already


def test_warning_at_80_percent_once_per_day_with_its_gauge() -> None:
    limits = RiskLimits(daily_loss_limit=100.0)
    first = mark(LossMonitor(TENANT, 1), 1000.0, T0, limits=limits, state=ACTIVE)
    assert first.daily_loss == 0.0 and first.daily_loss_ratio == 0.0
    r = mark(first.monitor, 921.0, T0 + timedelta(minutes=1), limits=limits, state=ACTIVE)
    assert r.events == () and r.daily_loss_ratio == pytest.approx(0.79)
    r = mark(r.monitor, 920.0, T0 + timedelta(minutes=2), limits=limits, state=ACTIVE)
    assert [e.kind for e in r.events] == [EVENT_DAILY_LOSS_WARNING]
    assert r.events[0].value == pytest.approx(80.0) and r.state == ACTIVE
    r = mark(r.monitor, 915.0, T0 + timedelta(minutes=3), limits=limits, state=ACTIVE)
    assert r.events == ()
    # a new UTC day measures from the last equity of yesterday and may warn again
    next_day = T0.replace(hour=0) + timedelta(days=1, minutes=5)
    r = mark(r.monitor, 910.0, next_day, limits=limits, state=ACTIVE)
    assert r.daily_loss == pytest.approx(5.0) and r.events == ()
    r = mark(r.monitor, 830.0, next_day + timedelta(minutes=1), limits=limits, state=ACTIVE)
    assert [e.kind for e in r.events] == [EVENT_DAILY_LOSS_WARNING]


def test_drawdown_moves_to_reducing_and_daily_loss_then_halts() -> None:
    limits = RiskLimits(daily_loss_limit=300.0, max_drawdown=0.1, confirm_marks=2)
    day = timedelta(days=1)
    monitor, state, seen = marks(LossMonitor(BOT, 7), [1000, 1200, 1070, 1060, 1050], limits,
                                 step=day)  # one mark a day: the daily loss stays small
    assert state == REDUCING
    assert seen[3] == [f"{EVENT_STATE_CHANGED}:reducing:max-drawdown"]
    assert monitor.peak_equity == 1200
    monitor, state, seen = marks(monitor, [700, 690], limits, state=state,
                                 start=T0 + 10 * day)
    assert state == HALTED
    assert f"{EVENT_STATE_CHANGED}:halted:daily-loss-limit" in seen[1]


def test_policy_can_send_both_breaches_elsewhere() -> None:
    limits = RiskLimits(daily_loss_limit=50.0, max_drawdown=0.5, confirm_marks=1)
    policy = LossPolicy(daily_loss_state=REDUCING, drawdown_state=HALTED)
    _, state, _ = marks(LossMonitor(GLOBAL, 0), [1000, 940], limits, policy=policy)
    assert state == REDUCING
    _, state, _ = marks(LossMonitor(GLOBAL, 0), [1000, 400], limits, policy=policy)
    assert state == HALTED


def test_states_never_lift_themselves_and_resume_rebases() -> None:
    limits = RiskLimits(daily_loss_limit=100.0, confirm_marks=1)
    monitor, state, _ = marks(LossMonitor(BOT, 7), [1000, 800, 1500], limits)
    assert state == HALTED  # the market came back; the halt stays
    event = resume_state(state, scope=BOT, scope_id=7, by="alice", at=T0)
    assert (event.from_state, event.to_state, event.by) == (HALTED, ACTIVE, "alice")
    with pytest.raises(ConflictError):
        resume_state(ACTIVE, scope=BOT, scope_id=7, by="alice", at=T0)
    engaged = KillSwitch(BOT, 7, True, False, T0, "admin", "x")
    with pytest.raises(KillSwitchStepError):
        resume_state(HALTED, scope=BOT, scope_id=7, by="alice", at=T0, kill_switch=engaged)
    # without a rebase the day's loss from 1000 is still below the limit after the rally;
    # a rebase takes today's baseline and the peak from the equity the person accepted
    rebased = monitor.rebased(700.0)
    r = mark(rebased, 690.0, T0 + timedelta(minutes=9), limits=limits, state=ACTIVE)
    assert r.state == ACTIVE and r.daily_loss == pytest.approx(10.0)


def test_mark_rejects_bad_input() -> None:
    with pytest.raises(BadInputError):
        mark(LossMonitor(BOT, 1), math.nan, T0, limits=RiskLimits(), state=ACTIVE)
    with pytest.raises(BadInputError):
        mark(LossMonitor(BOT, 1), 1.0, T0.replace(tzinfo=None), limits=RiskLimits(),
             state=ACTIVE)
    with pytest.raises(BadInputError):
        LossMonitor("planet", 1)
    with pytest.raises(BadInputError):
        LossMonitor(GLOBAL, 5)


# -- kill switch -------------------------------------------------------------------------------

def test_kill_switch_two_step_release() -> None:
    change = engage_kill_switch(None, scope=TENANT, scope_id=1, by="root", at=T0,
                                reason="runaway bot", flatten=True)
    switch = change.switch
    assert switch.engaged and not switch.rearmed and switch.flatten
    assert change.event is not None and change.event.kind == EVENT_KILL_SWITCH_ENGAGED
    assert (change.event.from_state, change.event.to_state) == (ACTIVE, HALTED)
    with pytest.raises(KillSwitchStepError, match="re-arm"):
        resume_kill_switch(switch, by="root", at=T0)
    switch = rearm_kill_switch(switch, by="root", at=T0).switch
    assert switch.engaged and switch.rearmed
    # re-armed still halts
    assert effective_state(tenant_id=1, bot_id=2, kill_switches=[switch]).state == HALTED
    with pytest.raises(KillSwitchStepError, match="already re-armed"):
        rearm_kill_switch(switch, by="root", at=T0)
    change = resume_kill_switch(switch, by="root", at=T0 + timedelta(seconds=5))
    assert not change.switch.engaged and not change.switch.rearmed
    assert change.event is not None and change.event.to_state == ACTIVE
    assert effective_state(tenant_id=1, bot_id=2, kill_switches=[change.switch]).state == ACTIVE
    with pytest.raises(KillSwitchStepError, match="not engaged"):
        rearm_kill_switch(change.switch, by="root", at=T0)
    with pytest.raises(KillSwitchStepError, match="not engaged"):
        resume_kill_switch(None, by="root", at=T0)


def test_engaging_again_is_idempotent_and_undoes_a_rearm() -> None:
    first = engage_kill_switch(None, scope=GLOBAL, scope_id=0, by="a", at=T0, reason="x").switch
    again = engage_kill_switch(first, scope=GLOBAL, scope_id=0, by="b", at=T0, reason="y")
    assert again.event is None and again.switch is first
    rearmed = rearm_kill_switch(first, by="a", at=T0).switch
    back = engage_kill_switch(rearmed, scope=GLOBAL, scope_id=0, by="b", at=T0, reason="z")
    assert back.event is not None and back.switch.engaged and not back.switch.rearmed
    with pytest.raises(KillSwitchStepError):
        resume_kill_switch(back.switch, by="a", at=T0)
    with pytest.raises(BadInputError):
        engage_kill_switch(first, scope=TENANT, scope_id=3, by="a", at=T0, reason="x")
