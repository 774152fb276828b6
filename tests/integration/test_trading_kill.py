"""The kill test: the bot's worker process SIGKILLed at random points of the order path, 50
times (SQLite; 8 on PostgreSQL), trading through the real ccxt client against the exchange
simulator. After a restart and reconciliation: no order reached the exchange twice (the
simulator counts orders per client order id), every order and every trade the exchange made
is stored (none lost, none twice), and the bot's positions equal the simulator's balances.

Kills land at the named checkpoints of the order path (after the pending row committed,
before the request, after the answer, after the acknowledgement committed, during
reconciliation) or at a random moment; some answers are also dropped by the simulator after
it accepted the order. Bars arrive every few hundred milliseconds, each one asking for an order
(the strategy buys on a rising bar and sells on a falling one).

While working on it: ``KILL_TEST_KILLS=6 KILL_TEST_LOG_LEVEL=INFO`` runs fewer kills and
keeps the workers' log lines (in ``workers.log`` of the test's directory).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from signalfactory.bootstrap import build_platform
from signalfactory.domain.bars import BarSeries
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.trading.bots import Bot
from signalfactory.domain.trading.orders import TERMINAL_STATUSES
from signalfactory.services.platform import Platform
from signalfactory.services.trading import bots
from signalfactory.services.trading.reconcile import reconcile
from signalfactory.services.trading.sessions import open_session
from signalfactory.testing.exchange_simulator import ExchangeSimulator
from tests.trading_setup import sim_account, sim_symbol, store_strategy, write_slice

ROOT = Path(__file__).resolve().parents[2]
MINUTE = Timeframe.parse("1m")
FLIP = "entry: close > open\nexit: close < open"
POINTS = ("after_pending", "before_send", "after_send", "after_ack", "reconcile_lookup")
START_NS = 1_700_000_000 * 10**9


class Zygote:
    """The forking worker host of ``tests.trading_kill_worker``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.trading_kill_worker", str(log)], cwd=ROOT,
            env={**os.environ, **env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, start_new_session=True)
        assert self._read() == "ready"

    @property
    def _out(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def _read(self) -> str:
        return self._out.readline().strip()

    def _send(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def spawn(self, point: str = "-", occurrence: int = 1) -> int:
        return int(self._send(f"spawn {point} {occurrence}"))

    def wait(self, pid: int, seconds: float) -> bool:
        """True when the child has exited (and is reaped)."""
        return self._send(f"wait {pid} {seconds}").startswith("exited")

    def kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        assert self.wait(pid, 10)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def flip_bars(n: int, seed: int) -> BarSeries:
    """Rising and falling minutes in turn (with noise), so nearly every bar asks for an
    order: a buy on a rising bar when flat, a sell on a falling one when long."""
    rng = np.random.default_rng(seed)
    ts = START_NS + np.arange(n, dtype=np.int64) * MINUTE.nanoseconds
    opens = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    moves = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * rng.uniform(0.002, 0.01, n)
    closes = opens * (1 + moves)
    highs, lows = np.maximum(opens, closes) * 1.001, np.minimum(opens, closes) * 0.999
    return BarSeries("BTC/USDT", ts, opens, highs, lows, closes, np.full(n, 10.0))


@pytest.fixture
def kill_env(sf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {**sf_env,
           "SIGNALFACTORY_DELIVERY_KEY": base64.b64encode(os.urandom(32)).decode(),
           # a restarted worker takes its bots back at once (its leases are its own)
           "SIGNALFACTORY_TRADING_WORKER_ID": "kill-test-worker",
           "SIGNALFACTORY_TRADING_LEASE_SECONDS": "5",
           "SIGNALFACTORY_TRADING_TICK_SECONDS": "1",
           "SIGNALFACTORY_TRADING_RECONCILE_SECONDS": "2",
           "SIGNALFACTORY_JOB_LEASE_SECONDS": "1", "SIGNALFACTORY_JOB_BACKOFF_SECONDS": "0.1",
           "SIGNALFACTORY_JOB_POLL_SECONDS": "0.02", "SIGNALFACTORY_RETENTION_CRON": "",
           "SIGNALFACTORY_LOG_FORMAT": "json",
           "SIGNALFACTORY_LOG_LEVEL": os.environ.get("KILL_TEST_LOG_LEVEL", "WARNING")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def kp(kill_env: dict[str, str]) -> Iterator[Platform]:
    platform = build_platform(migrate_db=True)
    try:
        yield platform
    finally:
        platform.close()


def _settled(platform: Platform, bot: Bot, since: float) -> bool:
    """No order of the bot is working and it reconciled after ``since`` (wall clock)."""
    with platform.database.read(primary=True) as uow:
        working = [o for o in uow.orders.find(bot_id=bot.id, limit=100_000)
                   if o.status not in TERMINAL_STATUSES]
        runtime = uow.bots.runtime(bot.id)
    reconciled = runtime is not None and runtime.reconciled_at is not None and (
        runtime.reconciled_at.timestamp() >= since)
    return not working and reconciled


def test_sigkill_in_the_order_path_doubles_nothing_and_loses_nothing(
        kp: Platform, kill_env: dict[str, str], backend: str, tmp_path: Path) -> None:
    kills = int(os.environ.get("KILL_TEST_KILLS", 0)) or (50 if backend == "sqlite" else 8)
    series = flip_bars(40 + 3 * kills + 10, seed=7)
    write_slice(kp, [series], 0, 40, MINUTE)
    store_strategy(kp, "flip", FLIP, timeframe="1m")
    log = tmp_path / "workers.log"
    with ExchangeSimulator([sim_symbol("BTC", price=float(series.close[39]))],
                           balances={"USDT": 1_000_000}) as sim:
        account = sim_account(kp, sim)
        bot = bots.create_bot(kp, 1, name="survivor", strategy="flip", account_id=account.id,
                              symbols=["BTC/USDT"], allocation=50_000, sizing="fraction",
                              size_value=0.3, whole_units=False, timeframe="1m")
        bots.start_bot(kp, 1, bot.id)
        zygote = Zygote(kill_env, log)
        rng = random.Random(20241205)
        by_checkpoint, next_bar = 0, 40

        def new_bar() -> None:
            nonlocal next_bar
            sim.set_price("BTCUSDT", float(series.close[next_bar]))
            write_slice(kp, [series], next_bar, next_bar + 1, MINUTE)
            next_bar += 1

        try:
            for k in range(kills):
                point = rng.choice([*POINTS, "-"])
                pid = zygote.spawn(point, rng.randint(1, 2))
                if k % 6 == 3:
                    sim.drop_response_next()  # accepted, then the answer is lost
                new_bar()
                if point != "-":
                    if zygote.wait(pid, 0.8):
                        by_checkpoint += 1  # it killed itself at the checkpoint
                        continue
                    new_bar()  # not reached yet: one more bar, then a kill at random
                time.sleep(rng.uniform(0.05, 0.3))
                zygote.kill(pid)
            # the last restart: it reconciles, trades one more bar, and settles
            pid = zygote.spawn()
            new_bar()
            since = time.time()
            deadline = time.monotonic() + 30
            while not _settled(kp, bot, since) and time.monotonic() < deadline:
                time.sleep(0.1)
            zygote.kill(pid)
        finally:
            zygote.close()
        assert _settled(kp, bot, since), log.read_text()[-4000:]
        report = reconcile(open_session(kp, bots.get_bot(kp, 1, bot.id)))

        with kp.database.read(primary=True) as uow:
            orders = uow.orders.find(bot_id=bot.id, limit=100_000)
            fills = uow.orders.fills(bot_id=bot.id, limit=100_000)
            positions = uow.positions.find(bot_id=bot.id)
        sim_orders, sim_trades = sim.orders(), sim.trades()
        per_id = Counter(o.client_order_id for o in sim_orders)
        # no duplicate: every client order id reached the exchange once at most
        assert max(per_id.values()) == 1, per_id.most_common(3)
        # nothing lost: every order the exchange has is stored, in the state it has there
        stored = {o.client_order_id: o for o in orders}
        assert set(per_id) <= set(stored)
        for order in sim_orders:
            mine = stored[order.client_order_id]
            assert mine.status == "filled" and mine.exchange_order_id == str(order.order_id)
            assert mine.filled_quantity == pytest.approx(float(order.executed_qty), abs=1e-12)
        # the orders that never reached the exchange ended without trading
        for cid, order in stored.items():
            if cid not in per_id:
                assert order.status in ("expired", "rejected") and order.filled_quantity == 0
        # every trade stored once, none missing
        assert Counter(f.trade_id for f in fills) == Counter(str(t.trade_id)
                                                             for t in sim_trades)
        # positions are what the exchange holds
        free, locked = sim.balances()["BTC"]
        assert sum(p.quantity for p in positions) == pytest.approx(float(free + locked),
                                                                   abs=1e-9)
        assert report.mismatches == 0, report
        assert len(sim_orders) >= kills // 2, "too few orders to prove anything"
        assert by_checkpoint >= kills // 4, by_checkpoint
        print(f"{backend}: {kills} kills ({by_checkpoint} at checkpoints), "
              f"{len(sim_orders)} orders, {len(sim_trades)} trades, "
              f"{len(orders) - len(per_id)} decisions expired or refused")
