"""Stored strategies: every change is a new version; built-ins ship with the platform.

A strategy belongs to a tenant. Built-ins are stored once (owned by the default tenant,
flagged ``builtin``) and every tenant can read and run them; a tenant's own strategy of the
same name takes precedence for that tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import (
    DEFAULT_TENANT_ID,
    strategies,
    strategy_versions,
)
from signalfactory.adapters.strategies.loading import load_strategy
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.strategies import (
    BUILTIN_TEMPLATES,
    RuleStrategy,
    Strategy,
    builtin_strategy,
    code_hash,
)
from signalfactory.domain.timeframes import Timeframe

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


@dataclass(frozen=True)
class StoredStrategy:
    id: int
    version_id: int
    tenant_id: int
    name: str
    kind: str
    version: int
    rule_text: str | None
    class_path: str | None
    parameters: Mapping[str, Any]
    timeframe: str
    code_hash: str
    created_by: str
    created_at: datetime | None
    builtin: bool
    description: str = ""
    versions: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "version": self.version,
                "rule_text": self.rule_text, "class_path": self.class_path,
                "parameters": dict(self.parameters), "timeframe": self.timeframe,
                "code_hash": self.code_hash, "created_by": self.created_by,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "builtin": self.builtin, "description": self.description,
                "versions": self.versions}

    def instantiate(self) -> Strategy:
        """The domain object that evaluates this version."""
        if self.rule_text is not None:
            return RuleStrategy.from_text(self.name, self.rule_text, version=str(self.version),
                                          parameters=dict(self.parameters))
        assert self.class_path is not None
        return load_strategy(self.class_path, dict(self.parameters))


def check_name(name: str) -> str:
    cleaned = name.strip().lower()
    if not cleaned or len(cleaned) > 100 or not set(cleaned) <= _NAME_CHARS:
        raise BadInputError(f"strategy name {name!r} must be 1..100 characters of a-z, 0-9, "
                            "'_', '-' or '.'")
    return cleaned


def ensure_builtins(conn: Connection) -> None:
    """Store the shipped strategies once (idempotent; new defaults become new versions)."""
    for name, template in BUILTIN_TEMPLATES.items():
        strategy = template.render()
        _store(conn, DEFAULT_TENANT_ID, name, strategy, created_by="builtin", builtin=True,
               description=template.description, timeframe="1d")


def _store(conn: Connection, tenant_id: int, name: str, strategy: Strategy | RuleStrategy, *,
           created_by: str, builtin: bool = False, description: str = "",
           timeframe: str = "1d", class_path: str | None = None) -> tuple[int, int, bool]:
    digest = code_hash(strategy)
    row = conn.execute(sa.select(strategies.c.id).where(
        strategies.c.tenant_id == tenant_id, strategies.c.name == name)).first()
    if row is None:
        strategy_id = conn.execute(strategies.insert().values(
            tenant_id=tenant_id, name=name,
            kind="rule" if isinstance(strategy, RuleStrategy) else "python",
            description=description, builtin=builtin)).inserted_primary_key[0]
        latest = None
    else:
        strategy_id = row.id
        latest = conn.execute(
            sa.select(strategy_versions.c.id, strategy_versions.c.version,
                      strategy_versions.c.code_hash, strategy_versions.c.timeframe)
            .where(strategy_versions.c.strategy_id == strategy_id)
            .order_by(strategy_versions.c.version.desc()).limit(1)).first()
    if latest is not None and latest.code_hash == digest and latest.timeframe == timeframe:
        return strategy_id, latest.id, False
    version = 1 if latest is None else latest.version + 1
    version_id = conn.execute(strategy_versions.insert().values(
        strategy_id=strategy_id, version=version,
        rule_text=strategy.text if isinstance(strategy, RuleStrategy) else None,
        class_path=class_path, parameters=dict(strategy.parameters), timeframe=timeframe,
        code_hash=digest, created_by=created_by)).inserted_primary_key[0]
    return strategy_id, version_id, True


def add_strategy(conn: Connection, tenant_id: int, name: str, *, rule_text: str | None = None,
                 class_path: str | None = None, parameters: Mapping[str, Any] | None = None,
                 timeframe: str = "1d", created_by: str = "cli",
                 description: str = "") -> tuple[StoredStrategy, bool]:
    """Add a strategy or a new version of it; the same code again changes nothing."""
    name = check_name(name)
    Timeframe.parse(timeframe)
    if (rule_text is None) == (class_path is None):
        raise BadInputError("give exactly one of a rule text or a Python class path")
    if name in BUILTIN_TEMPLATES and tenant_id == DEFAULT_TENANT_ID:
        raise BadInputError(f"{name!r} is a built-in strategy; choose another name")
    if rule_text is not None:
        if parameters:
            raise BadInputError("rule strategies take their numbers inside the rule text; "
                                "drop the parameters")
        strategy: Strategy | RuleStrategy = RuleStrategy.from_text(name, rule_text)
    else:
        assert class_path is not None
        strategy = load_strategy(class_path, dict(parameters or {}))
    _id, _version_id, created = _store(conn, tenant_id, name, strategy, created_by=created_by,
                                       description=description, timeframe=timeframe,
                                       class_path=class_path)
    return get_strategy(conn, tenant_id, name), created


def _select() -> sa.Select[Any]:
    counted = strategy_versions.alias("counted")
    versions = (sa.select(sa.func.count()).select_from(counted)
                .where(counted.c.strategy_id == strategies.c.id)
                .correlate(strategies).scalar_subquery())
    return (sa.select(strategies.c.id, strategies.c.tenant_id, strategies.c.name,
                      strategies.c.kind, strategies.c.builtin, strategies.c.description,
                      strategy_versions.c.id.label("version_id"), strategy_versions.c.version,
                      strategy_versions.c.rule_text, strategy_versions.c.class_path,
                      strategy_versions.c.parameters, strategy_versions.c.timeframe,
                      strategy_versions.c.code_hash, strategy_versions.c.created_by,
                      strategy_versions.c.created_at, versions.label("versions"))
            .join(strategy_versions, strategy_versions.c.strategy_id == strategies.c.id))


def _row(row: Any) -> StoredStrategy:
    return StoredStrategy(
        id=row.id, version_id=row.version_id, tenant_id=row.tenant_id, name=row.name,
        kind=row.kind, version=row.version, rule_text=row.rule_text,
        class_path=row.class_path, parameters=row.parameters or {}, timeframe=row.timeframe,
        code_hash=row.code_hash, created_by=row.created_by, created_at=row.created_at,
        builtin=bool(row.builtin), description=row.description or "", versions=row.versions)


def _visible(tenant_id: int) -> sa.ColumnElement[bool]:
    return sa.or_(strategies.c.tenant_id == tenant_id, strategies.c.builtin.is_(sa.true()))


def get_strategy(conn: Connection, tenant_id: int, name: str,
                 version: int | None = None) -> StoredStrategy:
    query = _select().where(_visible(tenant_id), strategies.c.name == name.strip().lower())
    if version is not None:
        query = query.where(strategy_versions.c.version == version)
    # The tenant's own strategy wins over a built-in of the same name; newest version first.
    rows = conn.execute(query.order_by(strategies.c.builtin.asc(),
                                       strategy_versions.c.version.desc()).limit(1)).first()
    if rows is None:
        what = f"{name!r}" + (f" version {version}" if version is not None else "")
        raise NotFoundError(f"no strategy {what}; list them with `signalfactory strategies "
                            "list` or GET /api/v1/strategies")
    return _row(rows)


def get_version(conn: Connection, version_id: int) -> StoredStrategy:
    row = conn.execute(_select().where(strategy_versions.c.id == version_id)).first()
    if row is None:
        raise NotFoundError(f"no strategy version {version_id}")
    return _row(row)


def list_strategies(conn: Connection, tenant_id: int) -> list[StoredStrategy]:
    latest = (sa.select(strategy_versions.c.strategy_id,
                        sa.func.max(strategy_versions.c.version).label("v"))
              .group_by(strategy_versions.c.strategy_id).subquery())
    query = (_select().join(latest, sa.and_(latest.c.strategy_id == strategies.c.id,
                                            latest.c.v == strategy_versions.c.version))
             .where(_visible(tenant_id)).order_by(strategies.c.name, strategies.c.builtin))
    out: dict[str, StoredStrategy] = {}
    for row in conn.execute(query):
        item = _row(row)
        if item.name not in out or not item.builtin:
            out.setdefault(item.name, item)
    return list(out.values())


def list_versions(conn: Connection, tenant_id: int, name: str) -> list[StoredStrategy]:
    head = get_strategy(conn, tenant_id, name)
    rows = conn.execute(_select().where(strategies.c.id == head.id)
                        .order_by(strategy_versions.c.version))
    return [_row(r) for r in rows]


def resolve(conn: Connection, tenant_id: int, name: str | None, rule: str | None,
            parameters: Mapping[str, Any] | None = None) -> tuple[Strategy, StoredStrategy | None]:
    """The strategy to run: a stored one by name (built-in parameters may be overridden,
    which runs an unstored variant), or an ad-hoc rule."""
    if (name is None) == (rule is None):
        raise BadInputError("give exactly one of --strategy NAME or --rule TEXT")
    if rule is not None:
        return RuleStrategy.from_text("adhoc", rule), None
    assert name is not None
    stored = get_strategy(conn, tenant_id, name)
    if parameters:
        if not stored.builtin:
            raise BadInputError("only built-in strategies take parameter overrides; add a "
                                "new version of your strategy instead")
        return builtin_strategy(stored.name, **dict(parameters)), None
    return stored.instantiate(), stored
