"""Trading gauges set from stored state at scrape time, so the process Prometheus scrapes
(the API) shows them whichever worker trades: per bot its state, equity, exposure, open
positions and PnL at its latest mark; per scope its kill switch and daily loss ratio."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from signalfactory.domain.trading.bots import STATE_RANK

if TYPE_CHECKING:
    from signalfactory.services.platform import Platform


class TradingGauges:
    def __init__(self) -> None:
        self.switches_seen: set[tuple[str, str]] = set()

    def refresh(self, platform: Platform) -> None:
        from signalfactory.observability.metrics import (
            TRADING_DAILY_LOSS_RATIO,
            TRADING_EQUITY,
            TRADING_EXPOSURE,
            TRADING_KILL_SWITCH,
            TRADING_PNL,
            TRADING_POSITIONS,
            TRADING_STATE,
        )
        from signalfactory.services.trading.bots import state_of

        with platform.database.read() as uow:
            switches = uow.trading_states.kill_switches()
            bots = uow.bots.find()
            for bot in bots:
                label = str(bot.id)
                state, _ = state_of(uow, bot)
                TRADING_STATE.labels(label).set(STATE_RANK[state.state])
                mark = uow.bot_marks.latest(bot.id)
                if mark is not None:
                    TRADING_EQUITY.labels(label).set(mark.equity)
                    TRADING_EXPOSURE.labels(label).set(mark.exposure)
                    TRADING_PNL.labels(label, "realised").set(mark.realised_pnl)
                    TRADING_PNL.labels(label, "unrealised").set(mark.unrealised_pnl)
                TRADING_POSITIONS.labels(label).set(
                    len(uow.positions.find(bot_id=bot.id, open_only=True)))
            states = uow.trading_states.states([("bot", b.id) for b in bots])
        for stored in states:
            monitor = stored.monitor
            owner = next((b for b in bots if b.id == stored.scope_id), None)
            limit = owner.limits.daily_loss_limit if owner is not None else None
            if monitor is None or not limit or not math.isfinite(monitor.last_equity):
                continue
            loss = max(monitor.day_start_equity - monitor.last_equity, 0.0)
            TRADING_DAILY_LOSS_RATIO.labels(stored.scope, str(stored.scope_id)).set(loss / limit)
        seen = set()
        for switch in switches:
            key = (switch.scope, str(switch.scope_id))
            seen.add(key)
            TRADING_KILL_SWITCH.labels(*key).set(
                0 if not switch.engaged else (2 if switch.rearmed else 1))
        for key in self.switches_seen - seen:
            TRADING_KILL_SWITCH.labels(*key).set(0)
        self.switches_seen |= seen
