"""Subscriptions: a tenant's named stream filters (strategies, symbols, minimum score).

An empty strategy list means every strategy the tenant can see (its own and the built-ins);
an empty symbol list means every symbol. Strategy names must exist for the tenant when the
subscription is made (a typo would otherwise stream nothing, silently); symbols may name
instruments that have no bars yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from signalfactory.domain.accounts import Principal
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.strategies import BUILTIN_TEMPLATES
from signalfactory.domain.streaming import NewSubscription, StreamFilter, Subscription
from signalfactory.domain.symbols import check_symbol
from signalfactory.services.accounts.quotas import enforce_quota
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.strategies.catalog import check_name, store_builtins_once

MAX_STRATEGIES = 100
MAX_SYMBOLS = 1000


def clean_strategies(uow: UnitOfWork, tenant_id: int, names: Sequence[str]) -> list[str]:
    """Normalised, de-duplicated names, each a built-in or one of the tenant's own
    (NotFoundError otherwise: another tenant's strategy is as unknown as a typo)."""
    cleaned = sorted({check_name(n) for n in names})
    if len(cleaned) > MAX_STRATEGIES:
        raise BadInputError(f"a subscription follows at most {MAX_STRATEGIES} strategies")
    own = [n for n in cleaned if n not in BUILTIN_TEMPLATES]
    if own:
        unknown = [n for n in own if uow.strategies.strategy_id(tenant_id, n) is None]
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
    for symbol in cleaned:
        check_symbol(symbol)
    return cleaned


def check_min_score(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadInputError("min_score must be a finite number")
    return value


def add_subscription(uow: UnitOfWork, tenant_id: int, name: str, *,
                     strategies_: Sequence[str] = (), symbols: Sequence[str] = (),
                     min_score: float | None = None) -> Subscription:
    """Check and store a subscription in the caller's unit of work."""
    name = name.strip()
    if not name or len(name) > 100 or not _printable(name):
        raise BadInputError("subscription name must be 1..100 printable characters")
    return uow.subscriptions.add(NewSubscription(
        tenant_id=tenant_id, name=name,
        strategies=tuple(clean_strategies(uow, tenant_id, strategies_)),
        symbols=tuple(clean_symbols(symbols)), min_score=check_min_score(min_score)))


def create_subscription(platform: Platform, tenant_id: int, name: str, *,
                        strategies_: Sequence[str] = (), symbols: Sequence[str] = (),
                        min_score: float | None = None,
                        quota: Principal | None = None) -> Subscription:
    """Store a subscription; with ``quota`` (the API's caller) it counts against that
    principal's tier quota, checked in the same transaction."""
    if strategies_:
        store_builtins_once(platform)  # live evaluation watches the built-ins it names
    with platform.database.write() as uow:
        if quota is not None:
            enforce_quota(uow, quota, "subscriptions")
        return add_subscription(uow, tenant_id, name, strategies_=strategies_,
                                symbols=symbols, min_score=min_score)


def list_subscriptions(uow: UnitOfWork, tenant_id: int) -> list[Subscription]:
    return uow.subscriptions.for_tenant(tenant_id)


def get_subscription(uow: UnitOfWork, tenant_id: int, subscription_id: int) -> Subscription:
    # Another tenant's id answers exactly like a missing one: no hint that it exists.
    found = uow.subscriptions.get(tenant_id, subscription_id)
    if found is None:
        raise NotFoundError(f"no subscription {subscription_id}; list yours with "
                            "GET /api/v1/subscriptions")
    return found


def delete_subscription(uow: UnitOfWork, tenant_id: int, subscription_id: int) -> None:
    if not uow.subscriptions.delete(tenant_id, subscription_id):
        raise NotFoundError(f"no subscription {subscription_id}; list yours with "
                            "GET /api/v1/subscriptions")


def stream_filter(uow: UnitOfWork, tenant_id: int, *, subscription_id: int | None = None,
                  strategies_: Sequence[str] = (), symbols: Sequence[str] = (),
                  min_score: float | None = None) -> StreamFilter:
    """The filter of a stream connection: a stored subscription, or ad-hoc filters."""
    if subscription_id is not None:
        if strategies_ or symbols or min_score is not None:
            raise BadInputError("give either subscription or ad-hoc filters (strategies, "
                                "symbols, min_score), not both")
        sub = get_subscription(uow, tenant_id, subscription_id)
        strategies_, symbols, min_score = sub.strategies, sub.symbols, sub.min_score
    else:
        strategies_ = clean_strategies(uow, tenant_id, strategies_)
        symbols = clean_symbols(symbols)
        check_min_score(min_score)
    return StreamFilter(tenant_id=tenant_id,
                        strategies=frozenset(strategies_) if strategies_ else None,
                        symbols=frozenset(symbols) if symbols else None,
                        min_score=min_score, subscription_id=subscription_id)
