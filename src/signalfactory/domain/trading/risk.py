"""The risk engine, pure: pre-trade checks, loss limits confirmed on marks, the kill switch.

**Effective state.** A bot trades under the worst of four things: the global state, its
tenant's state, its own state, and any engaged kill switch at those three scopes
(`effective_state`). ``active``: anything the limits allow; ``reducing``: only orders that
shrink a position without flipping it; ``halted``: nothing.

**Pre-trade checks** (`check_order`), in this order; the first that fails names the rule:
``order`` (quantity or price not a positive number), ``kill-switch``, ``state-halted``,
``state-reducing``, ``precision`` (amount or limit price off the market's grid),
``min-amount``, ``max-amount``, ``min-notional`` (the market's own rules, as the exchange
would refuse them), ``max-order-notional``, ``max-symbol-notional``, ``max-open-positions``,
``max-order-rate`` (orders sent in the last 60 s). Size limits bound *new* risk: an order that
only reduces a position (an exit) is never refused by ``max-order-notional``,
``max-symbol-notional`` or ``max-open-positions``, so a bot can always get out.

**Loss limits on marks** (`mark`). Every equity update of a scope (bot, tenant, everything) is
a mark. Two breaches are watched: the day's loss (equity at the start of the UTC day minus
equity now, realised and unrealised) reaching ``daily_loss_limit``, and the fall from the
peak reaching ``max_drawdown``. A breach changes the state only once it has been seen on
``confirm_marks`` consecutive marks (one bad tick does not halt). By default a daily loss
breach moves the scope to ``halted`` and a drawdown breach to ``reducing``
(`LossPolicy` changes that). States only get worse by themselves: a loss-driven state is lifted
by a person (`resume_state`), never by the market coming back. When the day's loss first
reaches 80 % of the limit on a day, a ``daily-loss-warning`` event is emitted, and every mark
reports the ratio loss / limit for the alert's gauge.

**Kill switch** (`engage_kill_switch`, `rearm_kill_switch`, `resume_kill_switch`): engaged
halts its scope; it stays engaged until an admin re-arms it, and a re-armed switch still halts
until it is resumed: two deliberate steps. A step out of order raises `KillSwitchStepError`
saying which step comes next. Every change returns a `RiskEvent` to persist, audit and alert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from signalfactory.domain.errors import BadInputError, ConflictError
from signalfactory.domain.trading.bots import (
    ACTIVE,
    BOT,
    GLOBAL,
    HALTED,
    REDUCING,
    SCOPES,
    STATE_RANK,
    TENANT,
    KillSwitch,
    RiskLimits,
)
from signalfactory.domain.trading.exchange import Market
from signalfactory.domain.trading.orders import OrderIntent
from signalfactory.domain.trading.precision import on_grid

# Rule ids (what refused an order, or what moved a state)
RULE_ORDER = "order"
RULE_KILL_SWITCH = "kill-switch"
RULE_HALTED = "state-halted"
RULE_REDUCING = "state-reducing"
RULE_PRECISION = "precision"
RULE_MIN_AMOUNT = "min-amount"
RULE_MAX_AMOUNT = "max-amount"
RULE_MIN_NOTIONAL = "min-notional"
RULE_ORDER_NOTIONAL = "max-order-notional"
RULE_SYMBOL_NOTIONAL = "max-symbol-notional"
RULE_OPEN_POSITIONS = "max-open-positions"
RULE_ORDER_RATE = "max-order-rate"
RULE_DAILY_LOSS = "daily-loss-limit"
RULE_DRAWDOWN = "max-drawdown"
RULE_RESUMED = "resumed"

# Kinds of risk events
EVENT_STATE_CHANGED = "state-changed"
EVENT_DAILY_LOSS_WARNING = "daily-loss-warning"
EVENT_KILL_SWITCH_ENGAGED = "kill-switch-engaged"
EVENT_KILL_SWITCH_REARMED = "kill-switch-rearmed"
EVENT_KILL_SWITCH_RESUMED = "kill-switch-resumed"

#: share of the daily loss limit at which the warning fires
DAILY_LOSS_WARNING_RATIO = 0.8
#: the window of ``max_orders_per_minute``
RATE_WINDOW_NS = 60 * 1_000_000_000
_DAY_NS = 86_400 * 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RiskRefusedError(BadInputError):
    """An order the risk engine refused; ``rule`` names the rule. Nothing was sent."""


class KillSwitchStepError(ConflictError):
    """A kill switch step out of order (re-arm before engage, resume before re-arm)."""


def worst(*states: str) -> str:
    """The worst of some trading states (``active`` < ``reducing`` < ``halted``)."""
    for state in states:
        if state not in STATE_RANK:
            raise BadInputError(f"trading state {state!r} is not one of {', '.join(STATE_RANK)}")
    return max(states, key=STATE_RANK.__getitem__, default=ACTIVE)


def _check_scope(scope: str, scope_id: int) -> None:
    if scope not in SCOPES:
        raise BadInputError(f"scope {scope!r} is not valid; use global, tenant or bot",
                            rule="scope")
    if scope == GLOBAL and scope_id != 0:
        raise BadInputError("the global scope has id 0", rule="scope")


# -- effective state ---------------------------------------------------------------------------

@dataclass(frozen=True)
class EffectiveState:
    """The state a bot trades under and what imposes it (``rule`` None when active)."""

    state: str
    rule: str | None = None
    scope: str | None = None
    scope_id: int | None = None

    @property
    def message(self) -> str:
        if self.rule == RULE_KILL_SWITCH:
            return (f"the {self.scope} kill switch is engaged: no orders until an admin "
                    "re-arms and resumes it")
        if self.state == HALTED:
            return f"trading is halted at {self.scope} level: no orders"
        if self.state == REDUCING:
            return f"trading is reducing at {self.scope} level: only exits are allowed"
        return "trading is active"


ACTIVE_STATE = EffectiveState(ACTIVE)


def effective_state(*, tenant_id: int, bot_id: int, global_state: str = ACTIVE,
                    tenant_state: str = ACTIVE, bot_state: str = ACTIVE,
                    kill_switches: Iterable[KillSwitch] = ()) -> EffectiveState:
    """The worst of the global, tenant and bot states and of the kill switches that cover
    this bot (switches of other tenants or bots are ignored). An engaged switch wins the
    report: its rule is ``kill-switch``."""
    for switch in kill_switches:
        covers = (switch.scope == GLOBAL
                  or (switch.scope == TENANT and switch.scope_id == tenant_id)
                  or (switch.scope == BOT and switch.scope_id == bot_id))
        if covers and switch.engaged:
            return EffectiveState(HALTED, RULE_KILL_SWITCH, switch.scope, switch.scope_id)
    candidates = ((global_state, GLOBAL, 0), (tenant_state, TENANT, tenant_id),
                  (bot_state, BOT, bot_id))
    state = worst(*(c[0] for c in candidates))
    if state == ACTIVE:
        return ACTIVE_STATE
    scope, scope_id = next((s, i) for st, s, i in candidates if st == state)
    rule = RULE_HALTED if state == HALTED else RULE_REDUCING
    return EffectiveState(state, rule, scope, scope_id)


# -- pre-trade checks --------------------------------------------------------------------------

@dataclass(frozen=True)
class Exposure:
    """What the bot holds and has working when an order is checked.

    ``positions``: signed quantity per symbol; ``working``: signed quantity of its orders sent
    but not yet filled, per symbol; ``prices``: the latest price per symbol (the order's own
    reference price is used for its symbol when missing here).
    """

    positions: Mapping[str, float] = field(default_factory=dict)
    working: Mapping[str, float] = field(default_factory=dict)
    prices: Mapping[str, float] = field(default_factory=dict)

    def held(self, symbol: str) -> float:
        """Signed quantity once the working orders fill."""
        return self.positions.get(symbol, 0.0) + self.working.get(symbol, 0.0)

    def open_symbols(self) -> set[str]:
        return {s for s in set(self.positions) | set(self.working) if self.held(s) != 0.0}


NO_EXPOSURE = Exposure()


@dataclass(frozen=True)
class RiskDecision:
    accepted: bool
    rule: str | None = None
    message: str = ""

    def raise_if_refused(self) -> None:
        if not self.accepted:
            raise RiskRefusedError(self.message, rule=self.rule)


ACCEPTED = RiskDecision(True)


def _refuse(rule: str, message: str) -> RiskDecision:
    return RiskDecision(False, rule, message)


def signed_quantity(intent: OrderIntent) -> float:
    return intent.quantity if intent.side == "buy" else -intent.quantity


def reduces_only(intent: OrderIntent, exposure: Exposure) -> bool:
    """Whether the order shrinks the symbol's position towards zero without crossing it."""
    held = exposure.held(intent.symbol)
    after = held + signed_quantity(intent)
    return held != 0.0 and abs(after) <= abs(held) * (1 + 1e-12) and after * held >= 0.0


def check_order(intent: OrderIntent, *, limits: RiskLimits, state: EffectiveState = ACTIVE_STATE,
                exposure: Exposure = NO_EXPOSURE, recent_orders_ns: Sequence[int] = (),
                now_ns: int = 0, market: Market | None = None) -> RiskDecision:
    """Accept the order or refuse it with the rule that refused it (see the module docstring).

    ``recent_orders_ns``: times (ns) the bot's earlier orders were sent; ``now_ns``: now.
    """
    price = intent.limit_price if intent.limit_price is not None else intent.reference_price
    if not (math.isfinite(intent.quantity) and intent.quantity > 0):
        return _refuse(RULE_ORDER, f"order quantity must be a positive number, got "
                                   f"{intent.quantity}")
    if not (math.isfinite(price) and price > 0):
        return _refuse(RULE_ORDER, "the order has no positive price to check it with "
                                   "(limit price or reference price)")
    exiting = reduces_only(intent, exposure)
    if state.state == HALTED:
        return _refuse(state.rule or RULE_HALTED, state.message)
    if state.state == REDUCING and not exiting:
        return _refuse(RULE_REDUCING, state.message)
    if market is not None:
        refusal = check_market_rules(intent.quantity, price, intent.limit_price, market)
        if refusal is not None:
            return refusal
    notional = intent.quantity * price
    if not exiting:
        if limits.max_order_notional is not None and notional > limits.max_order_notional:
            return _refuse(RULE_ORDER_NOTIONAL,
                           f"order notional {notional:.2f} is above the bot's limit of "
                           f"{limits.max_order_notional:.2f} per order")
        held = exposure.held(intent.symbol)
        if limits.max_symbol_notional is not None:
            mark = exposure.prices.get(intent.symbol, price)
            after = abs(held + signed_quantity(intent)) * mark
            if after > limits.max_symbol_notional:
                return _refuse(RULE_SYMBOL_NOTIONAL,
                               f"{intent.symbol} would hold {after:.2f}, above the bot's "
                               f"limit of {limits.max_symbol_notional:.2f} per symbol")
        if limits.max_open_positions is not None and held == 0.0:
            open_now = len(exposure.open_symbols())
            if open_now >= limits.max_open_positions:
                return _refuse(RULE_OPEN_POSITIONS,
                               f"the bot holds {open_now} positions, its limit is "
                               f"{limits.max_open_positions}")
    if limits.max_orders_per_minute is not None:
        sent = sum(1 for t in recent_orders_ns if now_ns - RATE_WINDOW_NS < t <= now_ns)
        if sent >= limits.max_orders_per_minute:
            return _refuse(RULE_ORDER_RATE,
                           f"{sent} orders in the last minute, the bot's limit is "
                           f"{limits.max_orders_per_minute}")
    return ACCEPTED


def check_market_rules(amount: float, price: float, limit_price: float | None,
                       market: Market) -> RiskDecision | None:
    """The refusal the exchange would give for this amount and price, or None."""
    if not on_grid(amount, market.amount_step):
        return _refuse(RULE_PRECISION, f"amount {amount} is not a multiple of {market.symbol}'s "
                                       f"amount step {market.amount_step}")
    if limit_price is not None and not on_grid(limit_price, market.price_step):
        return _refuse(RULE_PRECISION, f"price {limit_price} is not a multiple of "
                                       f"{market.symbol}'s price step {market.price_step}")
    if amount < market.min_amount:
        return _refuse(RULE_MIN_AMOUNT, f"amount {amount} is below {market.symbol}'s minimum "
                                        f"of {market.min_amount}")
    if market.max_amount is not None and amount > market.max_amount:
        return _refuse(RULE_MAX_AMOUNT, f"amount {amount} is above {market.symbol}'s maximum "
                                        f"of {market.max_amount}")
    if amount * price < market.min_notional:
        return _refuse(RULE_MIN_NOTIONAL, f"order notional {amount * price:.8g} is below "
                                          f"{market.symbol}'s minimum of {market.min_notional}")
    return None


# -- events ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RiskEvent:
    """A change to persist, audit and alert: a state moved, a kill switch step, a warning."""

    kind: str
    scope: str
    scope_id: int
    from_state: str
    to_state: str
    rule: str
    message: str
    at: datetime
    by: str = "risk-engine"
    #: the measured value behind it (loss, drawdown fraction), when there is one
    value: float | None = None


# -- loss limits on marks ----------------------------------------------------------------------

@dataclass(frozen=True)
class LossPolicy:
    """Which state a confirmed breach moves a scope to."""

    daily_loss_state: str = HALTED
    drawdown_state: str = REDUCING


DEFAULT_LOSS_POLICY = LossPolicy()


@dataclass(frozen=True)
class LossMonitor:
    """What the loss limits remember between marks of one scope (persist it with the state).

    ``day``: UTC day number of the last mark; ``day_start_equity``: equity the day's loss is
    measured from (the last mark before the day began, or the day's first mark);
    ``*_breaches``: consecutive marks the breach has been seen on; ``warned_day``: the day
    the 80 % warning last fired.
    """

    scope: str
    scope_id: int
    day: int | None = None
    day_start_equity: float = math.nan
    peak_equity: float = math.nan
    last_equity: float = math.nan
    daily_breaches: int = 0
    drawdown_breaches: int = 0
    warned_day: int | None = None

    def __post_init__(self) -> None:
        _check_scope(self.scope, self.scope_id)

    def rebased(self, equity: float) -> LossMonitor:
        """Start afresh from ``equity`` (peak and today's start): what a person resuming a
        scope after a loss halt accepts as the new baseline."""
        return replace(self, day_start_equity=equity, peak_equity=equity, last_equity=equity,
                       daily_breaches=0, drawdown_breaches=0)


@dataclass(frozen=True)
class MarkResult:
    monitor: LossMonitor
    #: state changes and warnings, in the order they happened
    events: tuple[RiskEvent, ...]
    #: the scope's state after this mark
    state: str
    daily_loss: float
    #: daily loss / limit (NaN without a limit): the gauge of the 80 % alert
    daily_loss_ratio: float
    drawdown: float


def utc_day(at: datetime) -> int:
    if at.tzinfo is None:
        raise BadInputError("mark times must be timezone-aware")
    return (at - _EPOCH).days


def mark(monitor: LossMonitor, equity: float, at: datetime, *, limits: RiskLimits, state: str,
         policy: LossPolicy = DEFAULT_LOSS_POLICY) -> MarkResult:
    """One equity update of ``monitor``'s scope, whose stored state is ``state``."""
    if not math.isfinite(equity):
        raise BadInputError(f"equity must be a finite number, got {equity}")
    worst(state)
    day = utc_day(at)
    if monitor.day is None:
        start, peak = equity, equity
    elif day != monitor.day:
        start = monitor.last_equity
        peak = max(monitor.peak_equity, equity)
    else:
        start = monitor.day_start_equity
        peak = max(monitor.peak_equity, equity)
    daily_loss = max(start - equity, 0.0)
    drawdown = 1.0 - equity / peak if peak > 0 else 0.0
    confirm = max(int(limits.confirm_marks), 1)
    limit = limits.daily_loss_limit
    daily_hit = limit is not None and daily_loss >= limit
    dd_hit = limits.max_drawdown is not None and drawdown >= limits.max_drawdown
    daily_n = monitor.daily_breaches + 1 if daily_hit else 0
    dd_n = monitor.drawdown_breaches + 1 if dd_hit else 0
    events: list[RiskEvent] = []
    ratio = math.nan
    warned = monitor.warned_day
    if limit is not None:
        ratio = daily_loss / limit if limit > 0 else (math.inf if daily_loss > 0 else 0.0)
        if ratio >= DAILY_LOSS_WARNING_RATIO and warned != day:
            warned = day
            events.append(RiskEvent(
                EVENT_DAILY_LOSS_WARNING, monitor.scope, monitor.scope_id, state, state,
                RULE_DAILY_LOSS, f"today's loss {daily_loss:.2f} has reached "
                f"{ratio:.0%} of the daily loss limit {limit:.2f}", at, value=daily_loss))
    now = state
    breaches = ((daily_n, policy.daily_loss_state, RULE_DAILY_LOSS,
                 f"today's loss {daily_loss:.2f} reached the daily loss limit {limit} on "
                 f"{daily_n} consecutive marks", daily_loss),
                (dd_n, policy.drawdown_state, RULE_DRAWDOWN,
                 f"drawdown {drawdown:.2%} reached the limit {limits.max_drawdown} on "
                 f"{dd_n} consecutive marks", drawdown))
    for count, target, rule, message, value in breaches:
        if count >= confirm and STATE_RANK[worst(target)] > STATE_RANK[now]:
            events.append(RiskEvent(EVENT_STATE_CHANGED, monitor.scope, monitor.scope_id, now,
                                    target, rule, message, at, value=value))
            now = target
    updated = replace(monitor, day=day, day_start_equity=start, peak_equity=peak,
                      last_equity=equity, daily_breaches=daily_n, drawdown_breaches=dd_n,
                      warned_day=warned)
    return MarkResult(updated, tuple(events), now, daily_loss, ratio, drawdown)


def resume_state(state: str, *, scope: str, scope_id: int, by: str, at: datetime,
                 kill_switch: KillSwitch | None = None, reason: str = "") -> RiskEvent:
    """A person lifts a ``reducing`` or ``halted`` state of a scope back to ``active``.

    Refused while the scope's kill switch is engaged (that takes re-arm and resume of the
    switch) and when the state is already active.
    """
    _check_scope(scope, scope_id)
    if kill_switch is not None and kill_switch.engaged:
        raise KillSwitchStepError(f"the {scope} kill switch is engaged: re-arm and resume it "
                                  "instead", rule=RULE_KILL_SWITCH)
    if worst(state) == ACTIVE:
        raise ConflictError(f"the {scope} is already active; nothing to resume",
                            rule=RULE_RESUMED)
    return RiskEvent(EVENT_STATE_CHANGED, scope, scope_id, state, ACTIVE, RULE_RESUMED,
                     reason or f"resumed by {by}", at, by=by)


# -- kill switch -------------------------------------------------------------------------------

@dataclass(frozen=True)
class KillSwitchChange:
    switch: KillSwitch
    #: None when nothing changed (engaging an engaged switch)
    event: RiskEvent | None


def engage_kill_switch(current: KillSwitch | None, *, scope: str, scope_id: int, by: str,
                       at: datetime, reason: str, flatten: bool = False) -> KillSwitchChange:
    """Engage (halts the scope). Engaging an engaged switch changes nothing, except that a
    re-armed one is engaged again (its re-arm is undone) and ``flatten`` can be added."""
    _check_scope(scope, scope_id)
    if current is not None and (current.scope, current.scope_id) != (scope, scope_id):
        raise BadInputError("that switch belongs to another scope", rule="scope")
    if current is not None and current.engaged and not current.rearmed and (
            current.flatten or not flatten):
        return KillSwitchChange(current, None)
    switch = KillSwitch(scope=scope, scope_id=scope_id, engaged=True, rearmed=False,
                        changed_at=at, changed_by=by, reason=reason,
                        flatten=flatten or (current is not None and current.engaged
                                            and current.flatten))
    was = HALTED if current is not None and current.engaged else ACTIVE
    return KillSwitchChange(switch, RiskEvent(
        EVENT_KILL_SWITCH_ENGAGED, scope, scope_id, was, HALTED, RULE_KILL_SWITCH,
        reason or f"kill switch engaged by {by}", at, by=by))


def rearm_kill_switch(current: KillSwitch | None, *, by: str, at: datetime,
                      reason: str = "") -> KillSwitchChange:
    """Step one of two: an engaged switch is re-armed; trading stays halted until resumed."""
    if current is None or not current.engaged:
        raise KillSwitchStepError("the kill switch is not engaged: there is nothing to re-arm",
                                  rule=RULE_KILL_SWITCH)
    if current.rearmed:
        raise KillSwitchStepError("the kill switch is already re-armed: resume it next",
                                  rule=RULE_KILL_SWITCH)
    switch = replace(current, rearmed=True, changed_at=at, changed_by=by,
                     reason=reason or current.reason)
    return KillSwitchChange(switch, RiskEvent(
        EVENT_KILL_SWITCH_REARMED, current.scope, current.scope_id, HALTED, HALTED,
        RULE_KILL_SWITCH, reason or f"kill switch re-armed by {by}; resume to trade", at,
        by=by))


def resume_kill_switch(current: KillSwitch | None, *, by: str, at: datetime,
                       reason: str = "") -> KillSwitchChange:
    """Step two of two: a re-armed switch is released and its scope may trade again."""
    if current is None or not current.engaged:
        raise KillSwitchStepError("the kill switch is not engaged: there is nothing to resume",
                                  rule=RULE_KILL_SWITCH)
    if not current.rearmed:
        raise KillSwitchStepError("re-arm the kill switch first, then resume it",
                                  rule=RULE_KILL_SWITCH)
    switch = replace(current, engaged=False, rearmed=False, changed_at=at, changed_by=by,
                     reason=reason or current.reason, flatten=False)
    return KillSwitchChange(switch, RiskEvent(
        EVENT_KILL_SWITCH_RESUMED, current.scope, current.scope_id, HALTED, ACTIVE,
        RULE_KILL_SWITCH, reason or f"kill switch resumed by {by}", at, by=by))
