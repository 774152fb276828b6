"""The bot worker of the trading kill test, as a zygote: it imports everything once, then forks
a fresh worker process per command, so fifty SIGKILLs cost fifty forks, not fifty Python
start-ups (four seconds each on a busy two-core machine).

Protocol on stdin/stdout, one line each:

- ``spawn <point> <occurrence>`` → the child's pid. The child builds its platform from the
  environment (a new database connection: nothing crosses the fork), starts the embedded job
  runner and the trading worker (which queues a reconciling tick for every running bot), and
  runs until killed. With a ``point`` other than ``-`` it SIGKILLs itself the
  ``occurrence``-th time the order path passes that checkpoint.
- ``wait <pid> <seconds>`` → ``exited <status>`` or ``running``.

The zygote itself opens no connection and starts no thread before forking.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time


def _child(point: str, occurrence: int, log_path: str) -> None:
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    from signalfactory.bootstrap import build_platform
    from signalfactory.workers.runner import EmbeddedRunner
    from signalfactory.workers.trading import TradingWorker

    print(f"worker {os.getpid()} forked: kill point {point} #{occurrence}", flush=True)
    platform = build_platform()
    if point != "-":
        seen = [0]

        def crash(name: str) -> None:
            if name == point:
                seen[0] += 1
                if seen[0] >= occurrence:
                    os.kill(os.getpid(), signal.SIGKILL)

        platform.trading.checkpoint_hook = crash
    runner = EmbeddedRunner(platform, concurrency=2, poll_seconds=0.02)
    trading = TradingWorker(platform)
    runner.start()
    trading.start()
    while True:
        time.sleep(3600)


def _warm_up() -> None:
    """Run once what every child runs first, so the children inherit it: the lazily imported
    modules of a platform, and numba's compiled kernels of the rule evaluator and of the
    engine's decision and sizing (compiling them costs a second in each child otherwise)."""
    import numpy as np

    from signalfactory.bootstrap import build_platform
    from signalfactory.domain.backtest.config import BacktestConfig
    from signalfactory.domain.bars import BarSeries
    from signalfactory.domain.strategies import RuleStrategy
    from signalfactory.domain.trading.capital import size_entry
    from signalfactory.domain.trading.decisions import BarSignals, decide

    build_platform().close()  # its engine is disposed: no connection crosses the fork
    n = 50
    close = 100.0 + np.sin(np.arange(n, dtype=np.float64))
    series = BarSeries("W/USDT", np.arange(n, dtype=np.int64) * 60_000_000_000, close,
                       close + 1, close - 1, close, np.ones(n))
    RuleStrategy.from_text("warm", "entry: close > open\nexit: close < open").evaluate(series)
    decide(0.0, BarSignals(long_entry=True), "long")
    size_entry(equity=1000.0, cash=1000.0, price=100.0, side="buy",
               config=BacktestConfig(whole_units=False))


def main() -> None:
    # Everything the child needs, imported before the first fork.
    import ccxt  # noqa: F401 - imported for the children
    import croniter  # noqa: F401 - the embedded runner's job schedules
    import numpy  # noqa: F401

    import signalfactory.adapters.exchanges.ccxt_ack
    import signalfactory.adapters.storage.unit_of_work
    import signalfactory.bootstrap
    import signalfactory.services.trading.runner
    import signalfactory.services.trading.tasks
    import signalfactory.workers.runner
    import signalfactory.workers.trading  # noqa: F401
    # what the platform now makes or imports on first use, which every child would
    # otherwise import again after its fork (tens of ms each on a busy machine, before its
    # first order: the kills then land before any order and the test proves less)
    for lazy in ("adapters.storage.tables", "adapters.storage.signal_events",
                 "services.audit.log", "services.streaming.ports", "adapters.channels.webhook",
                 "adapters.channels.email", "adapters.channels.apprise_channel",
                 "services.sandbox.strategies"):
        importlib.import_module("signalfactory." + lazy)
    from signalfactory.services.jobs.registry import ensure_tasks_loaded

    ensure_tasks_loaded()
    _warm_up()
    log_path = sys.argv[1]
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "spawn":
            pid = os.fork()
            if pid == 0:
                try:
                    _child(parts[1], int(parts[2]), log_path)
                finally:
                    os._exit(70)
            print(pid, flush=True)
        elif parts[0] == "wait":
            pid, deadline = int(parts[1]), time.monotonic() + float(parts[2])
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    print(f"exited {status}", flush=True)
                    break
                if time.monotonic() >= deadline:
                    print("running", flush=True)
                    break
                time.sleep(0.01)


if __name__ == "__main__":
    main()
