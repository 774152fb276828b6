"""Subscriptions: a tenant's named stream filters (strategies, symbols, minimum score).

An empty strategy list means every strategy the tenant can see (its own and the built-ins);
an empty symbol list means every symbol. Strategy names must exist for the tenant when the
subscription is made (a typo would otherwise stream nothing, silently); symbols may name
instruments that have no bars yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.tables import strategies, subscriptions
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.domain.strategies import BUILTIN_TEMPLATES
from signalfactory.services.strategies.catalog import check_name, ensure_builtins
from signalfactory.services.streaming.events import StreamFilter, iso_utc

MAX_STRATEGIES = 100
MAX_SYMBOLS = 1000


def count_subscriptions(conn: Connection, tenant_id: int) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(subscriptions)
                            .where(subscriptions.c.tenant_id == tenant_id)).scalar_one())


def _as_dict(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "name": m["name"], "strategies": list(m["strategies"] or []),
            "symbols": list(m["symbols"] or []), "min_score": m["min_score"],
            "created_at": iso_utc(m["created_at"])}


def clean_strategies(conn: Connection, tenant_id: int, names: Sequence[str]) -> list[str]:
    """Normalised, de-duplicated names, each a built-in or one of the tenant's own
    (NotFoundError otherwise: another tenant's strategy is as unknown as a typo)."""
    cleaned = sorted({check_name(n) for n in names})
    if len(cleaned) > MAX_STRATEGIES:
        raise BadInputError(f"a subscription follows at most {MAX_STRATEGIES} strategies")
    own = [n for n in cleaned if n not in BUILTIN_TEMPLATES]
    if own:
        known = {r[0] for r in conn.execute(sa.select(strategies.c.name).where(
            strategies.c.name.in_(own),
            sa.or_(strategies.c.tenant_id == tenant_id, strategies.c.builtin.is_(sa.true()))))}
        unknown = [n for n in own if n not in known]
        if unknown:
            raise NotFoundError(f"no strategy {', '.join(map(repr, unknown))}; list them with "
                                "GET /api/v1/strategies")
    return cleaned


def _printable(text: str) -> bool:
    # Control characters (NUL above all, which PostgreSQL text refuses) are never meant.
    return all(ch >= " " and ch != "\x7f" for ch in text)


def clean_symbols(symbols: Sequence[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in symbols})
    if len(cleaned) > MAX_SYMBOLS:
        raise BadInputError(f"a subscription follows at most {MAX_SYMBOLS} symbols")
    bad = [s for s in cleaned if not s or len(s) > 64 or not _printable(s)]
    if bad:
        raise BadInputError("symbols must be 1..64 printable characters")
    return cleaned


def check_min_score(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadInputError("min_score must be a finite number")
    return value


def create_subscription(conn: Connection, tenant_id: int, name: str, *,
                        strategies_: Sequence[str] = (), symbols: Sequence[str] = (),
                        min_score: float | None = None) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 100 or not _printable(name):
        raise BadInputError("subscription name must be 1..100 printable characters")
    if strategies_:
        # live evaluation watches the stored built-ins a subscription names
        # TRANSITIONAL: until this service takes a unit of work, wrap its connection in one.
        from signalfactory.adapters.storage.unit_of_work import SqlUnitOfWork
        ensure_builtins(SqlUnitOfWork(conn, None))  # type: ignore[arg-type]
    values = {"tenant_id": tenant_id, "name": name,
              "strategies": clean_strategies(conn, tenant_id, strategies_),
              "symbols": clean_symbols(symbols), "min_score": check_min_score(min_score)}
    try:
        with conn.begin_nested():
            inserted = conn.execute(subscriptions.insert().values(**values))
            new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
    except IntegrityError:
        raise ConflictError(f"a subscription named {name!r} exists; choose another name or "
                            "delete it first") from None
    return get_subscription(conn, tenant_id, new_id)


def list_subscriptions(conn: Connection, tenant_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(subscriptions).where(subscriptions.c.tenant_id == tenant_id)
                        .order_by(subscriptions.c.id))
    return [_as_dict(r) for r in rows]


def get_subscription(conn: Connection, tenant_id: int, subscription_id: int) -> dict[str, Any]:
    # Another tenant's id answers exactly like a missing one: no hint that it exists.
    row = conn.execute(sa.select(subscriptions).where(
        subscriptions.c.id == subscription_id,
        subscriptions.c.tenant_id == tenant_id)).first()
    if row is None:
        raise NotFoundError(f"no subscription {subscription_id}; list yours with "
                            "GET /api/v1/subscriptions")
    return _as_dict(row)


def delete_subscription(conn: Connection, tenant_id: int, subscription_id: int) -> None:
    deleted = conn.execute(subscriptions.delete().where(
        subscriptions.c.id == subscription_id, subscriptions.c.tenant_id == tenant_id))
    if deleted.rowcount == 0:
        raise NotFoundError(f"no subscription {subscription_id}; list yours with "
                            "GET /api/v1/subscriptions")


def stream_filter(conn: Connection, tenant_id: int, *, subscription_id: int | None = None,
                  strategies_: Sequence[str] = (), symbols: Sequence[str] = (),
                  min_score: float | None = None) -> StreamFilter:
    """The filter of a stream connection: a stored subscription, or ad-hoc filters."""
    if subscription_id is not None:
        if strategies_ or symbols or min_score is not None:
            raise BadInputError("give either subscription or ad-hoc filters (strategies, "
                                "symbols, min_score), not both")
        sub = get_subscription(conn, tenant_id, subscription_id)
        strategies_, symbols, min_score = sub["strategies"], sub["symbols"], sub["min_score"]
    else:
        strategies_ = clean_strategies(conn, tenant_id, strategies_)
        symbols = clean_symbols(symbols)
        check_min_score(min_score)
    return StreamFilter(tenant_id=tenant_id,
                        strategies=frozenset(strategies_) if strategies_ else None,
                        symbols=frozenset(symbols) if symbols else None,
                        min_score=min_score, subscription_id=subscription_id)
