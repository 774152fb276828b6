"""Database unreachable: the trading worker goes read-only within 5 s and sends no order while
it lasts; the order that was in flight when the database went is reconciled once it is back.

The worker (job runner and watchdog threads) reaches PostgreSQL through a TCP proxy the test
cuts; bars keep arriving meanwhile through a direct connection (another process's collector),
each asking the bot for an order.
"""

from __future__ import annotations

import base64
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.trading.orders import FILLED, PENDING
from signalfactory.observability.metrics import TRADING_READ_ONLY
from signalfactory.services.platform import Platform
from signalfactory.services.trading import bots
from signalfactory.settings import load_settings
from signalfactory.testing.exchange_simulator import ExchangeSimulator
from signalfactory.workers.runner import EmbeddedRunner
from signalfactory.workers.trading import TradingWorker
from tests.conftest import create_pg_database, drop_pg_database
from tests.integration.test_trading_kill import FLIP, MINUTE, flip_bars
from tests.tcp_proxy import TcpProxy
from tests.trading_setup import sim_account, sim_symbol, store_strategy, write_slice

SETTINGS = {"trading_probe_seconds": 0.5, "trading_tick_seconds": 0.5,
            "trading_reconcile_seconds": 1.0, "job_lease_seconds": 2.0,
            "job_poll_seconds": 0.05, "job_backoff_seconds": 0.2, "retention_cron": ""}


def _wait(condition: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if callable(condition) and condition():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _orders(platform: Platform, bot_id: int) -> dict[str, str]:
    with platform.database.read(primary=True) as uow:
        return {o.client_order_id: o.status for o in uow.orders.find(bot_id=bot_id)}


def _detail(platform: Platform, bot_id: int) -> list[tuple[object, ...]]:
    with platform.database.read(primary=True) as uow:
        return [(o.id, o.status, o.side, o.bar_ns, o.created_at, o.reason)
                for o in uow.orders.find(bot_id=bot_id)]


def _progress(platform: Platform, bot_id: int) -> int:
    with platform.database.read(primary=True) as uow:
        runtime = uow.bots.runtime(bot_id)
    return runtime.last_bar_ns if runtime is not None else 0


@pytest.mark.postgres
def test_unreachable_database_means_read_only_within_5_s_and_no_orders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = create_pg_database()
    proxy = TcpProxy("127.0.0.1", 5432).start()
    monkeypatch.setenv("SIGNALFACTORY_DELIVERY_KEY", base64.b64encode(os.urandom(32)).decode())
    direct = build_platform(load_settings(home=tmp_path / "direct", database_url=url,
                                          **SETTINGS), migrate_db=True)
    proxied_url = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + "?connect_timeout=2"
    worker_platform = build_platform(load_settings(home=tmp_path / "worker",
                                                   database_url=proxied_url, **SETTINGS))
    runner = EmbeddedRunner(worker_platform, concurrency=2)
    trading = TradingWorker(worker_platform)
    series = flip_bars(60, seed=3)
    try:
        write_slice(direct, [series], 0, 20, MINUTE)
        store_strategy(direct, "flip", FLIP, timeframe="1m")
        with ExchangeSimulator([sim_symbol("BTC", price=float(series.close[19]))],
                               balances={"USDT": 1_000_000}) as sim:
            account = sim_account(direct, sim)
            bot = bots.create_bot(direct, 1, name="ro", strategy="flip", account_id=account.id,
                                  symbols=["BTC/USDT"], allocation=50_000, whole_units=False,
                                  size_value=0.3, timeframe="1m")
            bots.start_bot(direct, 1, bot.id)
            runner.start()
            trading.start()
            next_bar = 20

            def new_bar() -> None:
                nonlocal next_bar
                sim.set_price("BTCUSDT", float(series.close[next_bar]))
                write_slice(direct, [series], next_bar, next_bar + 1, MINUTE)
                next_bar += 1

            _wait(lambda: _progress(direct, bot.id) == int(series.ts[19]), 10,
                  "the first tick (it notes the newest bar: the bot trades what follows)")
            new_bar()
            _wait(lambda: len(sim.orders()) == 1, 10, "the first order")
            # the next order is in flight (slow exchange) when the database goes away
            sim.set_latency(1.0, path="/api/v3/order")
            new_bar()
            _wait(lambda: PENDING in _orders(direct, bot.id).values(), 10, "a pending order")
            proxy.stop()
            cut = time.monotonic()
            _wait(lambda: worker_platform.trading.read_only is not None, 5.0, "read-only")
            to_read_only = time.monotonic() - cut
            assert to_read_only <= 5.0
            sim.set_latency(0.0, path="/api/v3/order")
            assert TRADING_READ_ONLY._value.get() == 1
            time.sleep(max(cut + 1.3 - time.monotonic(), 0))  # the slow answer is done
            sent = len(sim.orders())
            assert sent == 2  # the first order, and the one in flight at the cut
            for _ in range(2):  # bars keep coming; no order may leave meanwhile
                new_bar()
                time.sleep(0.6)
            assert len(sim.orders()) == sent
            assert worker_platform.trading.read_only is not None
            in_flight = [c for c, s in _orders(direct, bot.id).items() if s == PENDING]
            assert len(in_flight) == 1, _detail(direct, bot.id)
            # the database is back: read-only ends, the in-flight order is reconciled
            proxy = TcpProxy("127.0.0.1", 5432, listen_port=proxy.port).start()
            _wait(lambda: worker_platform.trading.read_only is None, 5, "the end of read-only")
            _wait(lambda: _orders(direct, bot.id)[in_flight[0]] == FILLED, 10,
                  "the in-flight order reconciled")
            new_bar()
            _wait(lambda: len(sim.orders()) > sent, 10, "trading again")
            _wait(lambda: PENDING not in _orders(direct, bot.id).values(), 10, "settling")
            assert max(Counter(o.client_order_id for o in sim.orders()).values()) == 1

            def held_and_fills() -> tuple[float, list[object]]:
                with direct.database.read(primary=True) as uow:
                    return (sum(p.quantity for p in uow.positions.find(bot_id=bot.id)),
                            list(uow.orders.fills(bot_id=bot.id)))

            def on_exchange() -> float:
                free, locked = sim.balances()["BTC"]
                return float(free + locked)

            # the fills of the last orders may still be on their way into the database (an
            # acknowledgement, or the next reconciliation): positions must reach the
            # simulator's balance, not merely be near it at one instant
            def settled() -> bool:
                # equal on two reads half a second apart, with nothing pending: a bar's exit
                # and entry go out as two batches, so one equal instant can fall between them
                if abs(held_and_fills()[0] - on_exchange()) > 1e-9:
                    return False
                time.sleep(0.5)
                return (abs(held_and_fills()[0] - on_exchange()) <= 1e-9
                        and PENDING not in _orders(direct, bot.id).values())

            _wait(settled, 20, "positions equal to the simulator's balance")
            held, fills = held_and_fills()
            assert held == pytest.approx(on_exchange(), abs=1e-9)
            assert len(fills) == len(sim.trades())
            print(f"read-only {to_read_only:.2f} s after the cut; {sent} orders before, "
                  f"{len(sim.orders()) - sent} after")
    finally:
        if proxy._listener is None:
            proxy = TcpProxy("127.0.0.1", 5432, listen_port=proxy.port).start()
        trading.stop()
        runner.stop(grace=2)
        worker_platform.close()
        direct.close()
        proxy.stop()
        drop_pg_database(url)
