"""Delivery benchmark: signed webhook throughput against a bare httpx loop, real-time lag, and
real-time lag during a 100,000-recipient campaign, side by side in one run.

    .venv/bin/python benchmarks/delivery.py [--database-url URL] [--messages 20000]
        [--lag-seconds 10] [--campaign 100000] [--max-seconds 300]

Loopback only: a raw asyncio receiver in a child process answers 204 and records when each
``webhook-id`` arrived. Delivery runs in this process as ``signalfactory serve`` runs it on one
machine: two ``DeliveryWorker``s (each a real-time thread and a general thread) woken by
``platform.delivery_queue``, campaign chunks on the embedded job runner. Every phase stops at
``--max-seconds`` and says so. Without ``--database-url`` a scratch PostgreSQL database is
used when the server on 127.0.0.1:5432 answers, else SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _delivery_load import (
    Receiver,
    bulk_recipients,
    enqueue_rows,
    payload,
    percentile,
    send_realtime,
    start_receiver,
)

from signalfactory.bootstrap import build_platform
from signalfactory.domain.delivery import NewCampaign
from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.services.delivery.campaigns import start_campaign
from signalfactory.services.delivery.dispatch import canonical_json
from signalfactory.services.platform import Platform
from signalfactory.settings import Settings
from signalfactory.workers.delivery import DeliveryWorker
from signalfactory.workers.runner import EmbeddedRunner

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TENANT = DEFAULT_TENANT_ID


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def scratch_database() -> tuple[str, str | None]:
    """A fresh database URL, and the PostgreSQL database name to drop afterwards."""
    try:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"sf_bench_dlv_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name
    except sa.exc.OperationalError:
        return f"sqlite:///{tempfile.mkdtemp(prefix='sf-bench-dlv-')}/sf.db", None


def drop_database(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_platform(url: str) -> Platform:
    key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="sf-bench-dlv-home-")),
                        database_url=url, delivery_key=key,
                        delivery_allow_private_targets=True, delivery_batch=200)
    return build_platform(settings, migrate_db=True)


def start_workers(platform: Platform) -> list[DeliveryWorker]:
    workers = [DeliveryWorker(platform, concurrency=2, poll_seconds=0.05) for _ in range(2)]
    for worker in workers:
        worker.start()
    return workers


def stop_workers(workers: list[DeliveryWorker]) -> None:
    for worker in workers:
        worker.stop()


async def bare_httpx(url: str, count: int, concurrency: int) -> float:
    """Deliveries/s of a bare async loop posting the same payloads (unsigned, no outbox)."""
    bodies = [canonical_json(payload(i)) for i in range(count)]
    queue = iter(range(count))
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        async def post_all() -> None:
            for i in queue:
                await client.post(url, content=bodies[i], headers={
                    "content-type": "application/json", "webhook-id": f"bare_{i}"})

        start = time.perf_counter()
        await asyncio.gather(*(post_all() for _ in range(concurrency)))
        return count / (time.perf_counter() - start)


def throughput(platform: Platform, receiver: Receiver, pairs: list[tuple[int, int]],
               messages: int, max_seconds: float) -> None:
    out("\n== (a) throughput to a local webhook receiver, two delivery workers ==")
    receiver.reset()
    bare = asyncio.run(bare_httpx(receiver.url, messages, concurrency=16))
    receiver.reset()
    for start in range(0, messages, 5000):
        chunk = [pairs[i % len(pairs)] for i in range(start, min(start + 5000, messages))]
        enqueue_rows(platform, TENANT, chunk, priority=1, start=start)
    workers = start_workers(platform)
    took = receiver.wait_for(messages, max_seconds)
    stop_workers(workers)
    out(f"bare httpx async loop (16 in flight): {bare:10,.0f} posts/s")
    if took is None:
        out(f"signed deliveries: only {receiver.count():,} of {messages:,} in {max_seconds} s "
            "(stopped at --max-seconds)")
        return
    rate = messages / took
    out(f"signed deliveries (outbox, 2 workers): {rate:8,.0f} deliveries/s "
        f"({messages:,} in {took:.2f} s)")
    out(f"ratio signed / bare: {rate / bare:.0%}   goals: >= 2,000/s "
        f"[{'met' if rate >= 2000 else 'MISSED'}], >= 60 % "
        f"[{'met' if rate >= 0.6 * bare else 'MISSED'}]")


def realtime_lags(platform: Platform, receiver: Receiver, pairs: list[tuple[int, int]],
                  rate: float, seconds: float, stop: threading.Event | None = None
                  ) -> tuple[list[float], int]:
    """Send real-time rows at ``rate``/s for ``seconds``; lags in ms of those received."""
    sent: dict[str, float] = {}
    period = 1.0 / rate
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds and not (stop and stop.is_set()):
        message_id, committed = send_realtime(platform, TENANT, pairs[n % len(pairs)], n)
        sent[message_id] = committed
        n += 1
        time.sleep(max(0.0, start + n * period - time.perf_counter()))
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        got = receiver.times()
        if all(i in got for i in sent):
            break
        time.sleep(0.1)
    return [(got[i] - t) * 1000 for i, t in sent.items() if i in got], len(sent)


def lag(platform: Platform, receiver: Receiver, pairs: list[tuple[int, int]],
        seconds: float) -> None:
    out("\n== (b) lag from commit to receipt at 100 signals/s ==")
    receiver.reset()
    workers = start_workers(platform)
    lags, sent = realtime_lags(platform, receiver, pairs, 100.0, seconds)
    stop_workers(workers)
    p50, p99 = percentile(lags, 50), percentile(lags, 99)
    out(f"{len(lags):,} of {sent:,} received; p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(lags, default=float('nan')):.1f} ms   goal p99 <= 50 ms "
        f"[{'met' if p99 <= 50 else 'MISSED'}]")


def campaign(platform: Platform, receiver: Receiver, pairs: list[tuple[int, int]],
             recipients: int, max_seconds: float) -> None:
    out(f"\n== (c) {recipients:,}-recipient campaign, real-time signals meanwhile ==")
    t0 = time.perf_counter()
    bulk_recipients(platform, TENANT, recipients, receiver.url, prefix="campaign")
    out(f"setup: {recipients:,} subscriptions and endpoints inserted in "
        f"{time.perf_counter() - t0:.1f} s")
    receiver.reset()
    runner = EmbeddedRunner(platform, concurrency=2, poll_seconds=0.05)
    workers = start_workers(platform)
    runner.start()
    started = time.perf_counter()
    # the campaign reaches every subscription of the tenant: the benchmark's real-time
    # recipients from (a) and (b) too
    total = recipients + len(pairs)
    start_campaign(platform, TENANT, NewCampaign(
        tenant_id=TENANT, subject="Benchmark announcement", body="Markets close early."))
    done = threading.Event()
    result: dict[str, float | None] = {}

    def watch() -> None:
        result["took"] = receiver.wait_for(total, max_seconds)
        done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lags, sent = realtime_lags(platform, receiver, pairs, 20.0, max_seconds, stop=done)
    watcher.join()
    runner.stop(grace=5)
    stop_workers(workers)
    took = result.get("took")
    campaign_count = receiver.count() - len(lags)
    if took is None:
        out(f"campaign: {campaign_count:,} of {total:,} delivered within {max_seconds} s "
            f"(stopped at --max-seconds, {time.perf_counter() - started:.1f} s)")
    else:
        out(f"campaign: {total:,} delivered in {took:.1f} s ({total / took:,.0f}/s), "
            "fan-out included")
    p99 = percentile(lags, 99)
    out(f"real-time meanwhile (20/s): {len(lags):,} of {sent:,} received; p50 "
        f"{percentile(lags, 50):.1f} ms, p99 {p99:.1f} ms   goal p99 <= 100 ms "
        f"[{'met' if p99 <= 100 else 'MISSED'}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: scratch PostgreSQL, else SQLite")
    parser.add_argument("--messages", type=int, default=20_000, help="for (a)")
    parser.add_argument("--lag-seconds", type=float, default=10.0, help="for (b)")
    parser.add_argument("--campaign", type=int, default=100_000, help="recipients for (c)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="per phase")
    parser.add_argument("--skip", default="", help="phases to skip, e.g. 'c' or 'ab'")
    args = parser.parse_args()
    url, drop = (args.database_url, None) if args.database_url else scratch_database()
    out(f"database: {url.split('@')[-1]}; python {sys.version.split()[0]}; "
        f"{os.cpu_count()} cores")
    receiver = start_receiver()
    try:
        platform = make_platform(url)
        subs, eps = bulk_recipients(platform, TENANT, 100, receiver.url, prefix="rt")
        pairs = list(zip(subs, eps, strict=True))
        if "a" not in args.skip:
            throughput(platform, receiver, pairs, args.messages, args.max_seconds)
        if "b" not in args.skip:
            lag(platform, receiver, pairs, args.lag_seconds)
        if "c" not in args.skip:
            campaign(platform, receiver, pairs, args.campaign, args.max_seconds)
        platform.close()
    finally:
        receiver.stop()
        if drop:
            drop_database(drop)


if __name__ == "__main__":
    main()
