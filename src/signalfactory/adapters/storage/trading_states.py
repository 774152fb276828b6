"""Trading states and kill switches per scope in SQL (``TradingStateRepository``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.jobs import dialect_insert
from signalfactory.adapters.storage.tables_trading import kill_switches, trading_states
from signalfactory.adapters.storage.trading_accounts import utc
from signalfactory.domain.trading.bots import KillSwitch
from signalfactory.domain.trading.records import TradingState
from signalfactory.domain.trading.risk import LossMonitor


def monitor_to_json(monitor: LossMonitor | None) -> dict[str, Any] | None:
    """NaN (no equity seen yet) is stored as null: JSON has no NaN."""
    if monitor is None:
        return None
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dataclasses.asdict(monitor).items()}


def monitor_from_json(value: Mapping[str, Any] | None) -> LossMonitor | None:
    if value is None:
        return None
    known = {f.name: f for f in dataclasses.fields(LossMonitor)}
    values = {k: v for k, v in value.items() if k in known}
    for name in ("day_start_equity", "peak_equity", "last_equity"):
        if values.get(name) is None:
            values[name] = math.nan
    return LossMonitor(**values)


def _in_scopes(table: sa.Table, scopes: Sequence[tuple[str, int]]) -> sa.ColumnElement[bool]:
    return sa.or_(*(sa.and_(table.c.scope == scope, table.c.scope_id == scope_id)
                    for scope, scope_id in scopes))


def _three_scopes(table: sa.Table) -> sa.ColumnElement[bool]:
    """The scopes a bot trades under, with bound values: what the order path reads."""
    c = table.c
    return sa.or_(sa.and_(c.scope == sa.bindparam("s1"), c.scope_id == sa.bindparam("i1")),
                  sa.and_(c.scope == sa.bindparam("s2"), c.scope_id == sa.bindparam("i2")),
                  sa.and_(c.scope == sa.bindparam("s3"), c.scope_id == sa.bindparam("i3")))


_STATES3 = (sa.select(trading_states).where(_three_scopes(trading_states))
            .order_by(trading_states.c.scope, trading_states.c.scope_id))
_SWITCHES3 = (sa.select(kill_switches).where(_three_scopes(kill_switches))
              .order_by(kill_switches.c.scope, kill_switches.c.scope_id))


def _bound(scopes: Sequence[tuple[str, int]]) -> dict[str, object]:
    values: dict[str, object] = {}
    for k, (scope, scope_id) in enumerate(scopes, start=1):
        values[f"s{k}"], values[f"i{k}"] = scope, scope_id
    return values


def _state(row: sa.RowMapping) -> TradingState:
    return TradingState(scope=row["scope"], scope_id=int(row["scope_id"]), state=row["state"],
                        reason=row["reason"], changed_at=utc(row["changed_at"]),
                        changed_by=row["changed_by"],
                        monitor=monitor_from_json(row["monitor"]))


def _switch(row: sa.RowMapping) -> KillSwitch:
    return KillSwitch(scope=row["scope"], scope_id=int(row["scope_id"]),
                      engaged=bool(row["engaged"]), rearmed=bool(row["rearmed"]),
                      changed_at=utc(row["changed_at"]), changed_by=row["changed_by"],
                      reason=row["reason"], flatten=bool(row["flatten"]))


class SqlTradingStateRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def states(self, scopes: Sequence[tuple[str, int]]) -> list[TradingState]:
        if not scopes:
            return []
        if len(scopes) == 3:
            return [_state(r) for r in self.conn.execute(_STATES3, _bound(scopes)).mappings()]
        rows = self.conn.execute(sa.select(trading_states)
                                 .where(_in_scopes(trading_states, scopes))
                                 .order_by(trading_states.c.scope, trading_states.c.scope_id))
        return [_state(r) for r in rows.mappings()]

    def put_state(self, state: TradingState) -> None:
        values = {"scope": state.scope, "scope_id": state.scope_id, "state": state.state,
                  "reason": state.reason, "monitor": monitor_to_json(state.monitor),
                  "changed_at": state.changed_at, "changed_by": state.changed_by}
        stmt = dialect_insert(self.conn, trading_states).values(**values)
        self.conn.execute(stmt.on_conflict_do_update(
            index_elements=["scope", "scope_id"],
            set_={k: v for k, v in values.items() if k not in ("scope", "scope_id")}))

    def kill_switches(self, scopes: Sequence[tuple[str, int]] | None = None
                      ) -> list[KillSwitch]:
        query = sa.select(kill_switches).order_by(kill_switches.c.scope,
                                                  kill_switches.c.scope_id)
        if scopes is not None:
            if not scopes:
                return []
            if len(scopes) == 3:
                rows = self.conn.execute(_SWITCHES3, _bound(scopes)).mappings()
                return [_switch(r) for r in rows]
            query = query.where(_in_scopes(kill_switches, scopes))
        return [_switch(r) for r in self.conn.execute(query).mappings()]

    def put_kill_switch(self, switch: KillSwitch) -> None:
        values = {"scope": switch.scope, "scope_id": switch.scope_id,
                  "engaged": switch.engaged, "rearmed": switch.rearmed,
                  "flatten": switch.flatten, "reason": switch.reason,
                  "changed_at": switch.changed_at, "changed_by": switch.changed_by}
        stmt = dialect_insert(self.conn, kill_switches).values(**values)
        self.conn.execute(stmt.on_conflict_do_update(
            index_elements=["scope", "scope_id"],
            set_={k: v for k, v in values.items() if k not in ("scope", "scope_id")}))
