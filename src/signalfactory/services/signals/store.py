"""Storing new signals: the one path every producer (live evaluation, ``signals run``,
scans) takes, so that each stored signal gets its delivery rows in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from signalfactory.domain.signals import InsertedSignal, NewSignal
from signalfactory.domain.strategies.stored import StoredStrategy
from signalfactory.domain.streaming import SignalEvent, iso_utc
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork


@dataclass(frozen=True)
class StoredSignals:
    """What an insert stored: the new rows (with their batch index) and, in id order, the
    same signals as events (their payload is an item of ``GET /api/v1/signals``)."""

    inserted: list[InsertedSignal]
    events: list[SignalEvent]
    delivery_ids: list[str]


def signal_event(inserted: InsertedSignal, stored: StoredStrategy, signal: NewSignal,
                 arrival_ns: int | None = None) -> SignalEvent:
    payload = {"id": inserted.id, "bar_ts": iso_utc(signal.bar_ts), "symbol": signal.symbol,
               "side": signal.side, "strategy": stored.name,
               "strategy_version": stored.version, "code_hash": stored.code_hash,
               "timeframe": signal.timeframe,
               "score": signal.score, "price": signal.price, "values": dict(signal.values),
               "created_at": iso_utc(inserted.created_at)}
    return SignalEvent(payload, tenant_id=stored.tenant_id, builtin=stored.builtin,
                       arrival_ns=arrival_ns)


def store_signals(platform: Platform, uow: UnitOfWork,
                  batch: Sequence[tuple[StoredStrategy, NewSignal]], *,
                  arrival_ns: int | None = None) -> StoredSignals:
    """Insert the signals not stored yet and, in the same unit of work, the delivery rows
    of the new ones."""
    inserted = uow.signals.insert_new([signal for _s, signal in batch])
    events = sorted((signal_event(i, *batch[i.index], arrival_ns) for i in inserted),
                    key=lambda e: e.id)
    # imported here: a scan of an ad-hoc rule stores no signals, and delivery's modules
    # were a noticeable part of a one-shot command's start-up
    from signalfactory.services.delivery.outbox import enqueue_for_signals

    return StoredSignals(inserted, events, enqueue_for_signals(platform, uow, events))
