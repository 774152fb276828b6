"""The template process: a clean interpreter that preloads what strategies may use and forks
sandbox workers on request, so that a fresh worker starts in milliseconds, not the ~0.6 s
numpy, pandas and TA-Lib take to import.

The server spawns it (never forks it: no server state, descriptor or secret is inherited)
as ``python -s -S -P -B -c ...`` with an environment built from scratch (thread counts,
``PYTHONHASHSEED=0``) and only the import paths of the standard library, the installed
packages and this package. It runs no user code itself. It clears its environment after
the imports, so workers start with none.

Control channel: a ``SOCK_SEQPACKET`` socket to the server, one JSON message per packet:

- server -> template: ``{"op": "fork", "id": N, "limits": {...}}``, ``{"op": "kill",
  "pid": P}`` (only a pid still unreaped is signalled, so a reused pid is never hit),
  ``{"op": "exit"}``;
- template -> server: ``{"op": "ready", "pid": P}``, ``{"op": "forked", "id": N, "pid": P}``
  carrying the worker's end of a new socket pair (``SCM_RIGHTS``), ``{"op": "exit", "pid":
  P, "status": S}`` (the raw wait status: the server names the limit a worker died of).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import pwd
import select
import signal
import socket
import sys
from typing import Any

import numpy as np

PRELOAD = ("__future__", "math", "random", "numpy", "numpy.linalg", "numpy.fft",
           "numpy.random", "numpy.polynomial", "numpy.ma", "pandas", "pyarrow.pandas_compat",
           "talib",
           "signalfactory.domain.bars", "signalfactory.domain.indicators",
           "signalfactory.domain.rules", "signalfactory.domain.strategies",
           "signalfactory.adapters.sandbox.worker")


def preload() -> None:
    """Import everything a strategy may use and compile the numba kernels of the built-in
    indicators once, so that no worker imports or compiles anything."""
    for name in PRELOAD:
        importlib.import_module(name)

    from signalfactory.domain.bars import BarSeries, BarUniverse
    from signalfactory.domain.indicators import compute
    from signalfactory.domain.indicators.registry import BUILTINS

    n = 120
    close = 100.0 + np.sin(np.arange(n) / 5.0)
    bars = BarUniverse.from_series([BarSeries("WARM", np.arange(n, dtype=np.int64), close,
                                              close + 1.0, close - 1.0, close,
                                              np.full(n, 1000.0))])
    # numba compiles per argument type, and a worker's bars are read-only arrays (a mapped
    # memfd): compile for both, here, where compiling is allowed
    frozen = BarUniverse(**{name: getattr(bars, name) for name in
                            ("symbols", "offsets", "ts", "open", "high", "low", "close",
                             "volume")})
    for name in ("offsets", "ts", "open", "high", "low", "close", "volume"):
        array = getattr(frozen, name).copy()
        array.setflags(write=False)
        object.__setattr__(frozen, name, array)
    for universe in (bars, frozen):
        for indicator in BUILTINS:
            compute(indicator.name, universe)
        for name in ("rsi", "macd", "bbands", "atr", "sma", "ema"):
            compute(name, universe)
    _warm_pandas(close)


def _warm_pandas(close: np.ndarray[Any, np.dtype[np.float64]]) -> None:
    """Run pandas' common operations once: each imports modules lazily on first use, and a
    worker may import nothing (its audit hook refuses it)."""
    import pandas as pd

    n = close.shape[0]
    df = pd.DataFrame({"c": close, "sym": np.repeat([0, 1], [n // 2, n - n // 2])})
    df["ts"] = pd.to_datetime(np.arange(n, dtype=np.int64) * 86_400 * 10**9)
    grouped = df.groupby("sym")["c"]
    grouped.pct_change()
    grouped.transform(lambda s: s.rolling(5, min_periods=1).mean())
    grouped.shift(1)
    grouped.cumsum()
    df["c"].rank(pct=True)
    df.set_index("ts").groupby("sym")["c"].resample("7D").last()
    df.set_index("ts")["c"].resample("W").ohlc()
    df["c"].ewm(span=5).mean()
    df["c"].rolling(10).agg(["mean", "std", "min", "max", "median", "sum"])
    df["c"].rolling(10).apply(lambda w: w[-1] - w[0], raw=True)
    df["c"].expanding().max()
    df["c"].diff().clip(lower=0).fillna(0).where(df["c"] > 0).dropna()
    df.describe()
    df.merge(df, on="sym").head()
    pd.concat([df, df]).reset_index(drop=True)
    df.pivot_table(index="sym", values="c", aggfunc="mean")
    df["c"].quantile([0.1, 0.9])
    df.corr(numeric_only=True)
    df["c"].astype("float32").round(2).to_numpy()
    pd.Series(close).value_counts(bins=3)
    pd.cut(df["c"], 3)
    pd.qcut(df["c"], 3, duplicates="drop")
    repr(df)
    str(df["c"].head())
    np.quantile(close, [0.1, 0.9])
    np.linalg.lstsq(np.vstack([np.arange(10.0), np.ones(10)]).T, close[:10], rcond=None)
    np.fft.rfft(close[:64])
    np.random.default_rng(1).normal(size=3)
    np.corrcoef(close[:50], close[50:100])
    np.polynomial.polynomial.polyfit(np.arange(10.0), close[:10], 1)


def _nobody() -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return (65534, 65534)
    return entry.pw_uid, entry.pw_gid


class Template:
    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.children: set[int] = set()
        self.nobody = _nobody() if os.geteuid() == 0 else None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.ctl, [data], fds)
        else:
            self.ctl.send(data)

    def fork(self, message: dict[str, Any]) -> None:
        from signalfactory.adapters.sandbox import worker

        server_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                config = worker.WorkerConfig.of(message["limits"], os.getppid(), self.nobody)
                worker.main(worker_end, config)
            finally:
                os._exit(4)
        worker_end.close()
        self.children.add(pid)
        self.send({"op": "forked", "id": message.get("id"), "pid": pid},
                  [server_end.fileno()])
        server_end.close()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"op": "exit", "pid": pid, "status": status})

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            ready, _, _ = select.select([self.ctl.fileno(), self.wake_r], [], [])
            if self.wake_r in ready:
                os.read(self.wake_r, 4096)
                self.reap()
            if self.ctl.fileno() not in ready:
                continue
            data, fds, _flags, _addr = socket.recv_fds(self.ctl, 65536, 4)
            for fd in fds:
                os.close(fd)
            if not data:
                return
            message = json.loads(data)
            op = message.get("op")
            if op == "fork":
                self.fork(message)
            elif op == "kill":
                pid = int(message["pid"])
                if pid in self.children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            elif op == "exit":
                return

    def stop(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main(config: dict[str, Any]) -> None:
    # No parent-death signal here: it follows the server *thread* that spawned us, and
    # server threads come and go. The control socket is the tie instead: when the server
    # process ends, for whatever reason, the kernel closes its end and the loop below ends,
    # killing every worker.
    ctl = socket.socket(fileno=int(config["fd"]))
    preload()
    os.environ.clear()
    gc.collect()
    gc.freeze()  # workers share the preloaded objects' pages instead of copying them
    template = Template(ctl)
    try:
        template.serve()
    finally:
        template.stop()
        sys.stderr.flush()
        os._exit(0)
