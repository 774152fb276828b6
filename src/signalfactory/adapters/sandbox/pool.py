"""The process pool that runs uploaded strategies: ``ProcessSandbox`` (the ``StrategySandbox``
port).

Workers are forked by the template process (``template``), isolate themselves (``worker``)
and load one program each; the pool keeps them warm and hands a call to an idle worker of
the same program (same source hash, class and parameters), so the code is loaded once per
worker. At most ``pool_size`` workers live at once; when all are taken by other programs the
least recently used idle one is replaced. A worker that breaks a limit, refuses an
operation, answers something malformed or goes silent is killed and never reused.

Per call the server writes the bars into the worker's memfd (sealed against resizing, so
the worker cannot make the server's mapping fault), sends a small ``run`` frame with the
deterministic seed, and waits at most the wall-clock limit for the answer, which
``wire.decode_evaluation`` checks before anything uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import mmap
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signalfactory.adapters.sandbox import wire
from signalfactory.adapters.sandbox.template_client import TemplateProcess, read_roots
from signalfactory.adapters.sandbox.worker import lifetime_cpu_seconds
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.errors import TemporaryError
from signalfactory.domain.sandbox import (
    ProgramInfo,
    SandboxError,
    SandboxLimits,
    SandboxProgram,
    SandboxResult,
)
from signalfactory.domain.strategies.base import StrategyParam
from signalfactory.observability.logging import get_logger

log = get_logger("signalfactory.sandbox")

ProgramKey = tuple[str, str, tuple[tuple[str, StrategyParam], ...]]
_KIND_LIMIT = {"memory": "memory", "recursion": "recursion", "refused": "refused",
               "static": "refused", "output": "output"}


@dataclass(eq=False)
class WorkerProcess:
    """The server's side of one worker."""

    pid: int
    sock: socket.socket
    key: ProgramKey
    info: ProgramInfo | None = None
    cpu: float = 0.0
    shm: mmap.mmap | None = None
    shm_size: int = 0
    killed: bool = False
    layers: Mapping[str, bool] = field(default_factory=dict)
    #: the columns of this call's bars already written for the worker
    supplied: set[str] = field(default_factory=set)

    def call(self, header: wire.Header, *, deadline: float, max_payload: int,
             universe: BarUniverse | None = None) -> tuple[wire.Header, memoryview]:
        """Send a request and wait for its answer, writing each bar column the worker asks
        for on the way (at most once each)."""
        wire.send_frame(self.sock, header)
        while True:
            answer, payload = wire.recv_frame(self.sock, deadline=deadline,
                                              max_payload=max_payload)
            if answer.get("op") != "need":
                return answer, payload
            column = answer.get("column")
            if universe is None or column not in wire.COLUMNS or column in self.supplied:
                raise wire.WireError(f"asked for bars it cannot have: {column!r}")
            if self.shm is None:
                raise wire.WireError("no shared memory for the bars")
            wire.write_column(memoryview(self.shm), universe, str(column))
            self.supplied.add(str(column))
            wire.send_frame(self.sock, {"op": "have"})

    def share_bars(self, universe: BarUniverse) -> None:
        """Make room for the bars where the worker maps them (a bigger memfd when they
        outgrow it) and write their layout; columns follow when the worker reads them."""
        needed = wire.bars_size(universe.n_bars, universe.n_instruments)
        if self.shm is None or needed > self.shm_size:
            size = max(1 << 20, math.ceil(needed * 1.25 / mmap.PAGESIZE) * mmap.PAGESIZE)
            fd = os.memfd_create("signalfactory-bars", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                os.ftruncate(fd, size)
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                            fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
                mapped = mmap.mmap(fd, size)
                wire.send_frame(self.sock, {"op": "bars"})
                socket.send_fds(self.sock, [size.to_bytes(8, "little")], [fd])
            finally:
                os.close(fd)
            if self.shm is not None:
                self.shm.close()
            self.shm, self.shm_size = mapped, size
        wire.write_offsets(memoryview(self.shm), universe)
        for column in wire.EAGER_COLUMNS:
            wire.write_column(memoryview(self.shm), universe, column)
        self.supplied = set(wire.EAGER_COLUMNS)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.shm is not None:
            with contextlib.suppress(BufferError):
                self.shm.close()
            self.shm = None


def run_seed(code_hash: str, universe: BarUniverse) -> int:
    """The same program on the same bars gets the same seed: the code hash, the symbols,
    the layout, the first and last bar time and each instrument's last bar (hashing every
    bar would cost more than many strategies do)."""
    digest = hashlib.sha256(code_hash.encode())
    digest.update("\n".join(universe.symbols).encode())
    digest.update(universe.offsets.astype("<i8").tobytes())
    if universe.n_bars:
        digest.update(universe.ts[[0, -1]].astype("<i8").tobytes())
        ends = universe.offsets[1:][universe.offsets[1:] > universe.offsets[:-1]] - 1
        for column in (universe.open, universe.high, universe.low, universe.close,
                       universe.volume):
            digest.update(column[ends].astype("<f8").tobytes())
    return int.from_bytes(digest.digest()[:8], "little")


def _loaded(worker: WorkerProcess) -> ProgramInfo:
    if worker.info is None:  # every worker is loaded before it is handed out
        raise SandboxError("the worker has no program loaded", limit="crash")
    return worker.info


def _check_info(header: Mapping[str, Any]) -> ProgramInfo:
    name, version = header.get("name"), header.get("version")
    lookback, params = header.get("required_lookback"), header.get("parameters")
    if not (isinstance(name, str) and isinstance(version, str) and isinstance(lookback, int)
            and isinstance(params, dict) and 0 <= lookback <= 1_000_000):
        raise SandboxError("the strategy describes itself wrongly: it needs a str name and "
                           "version and an int required_lookback in 0..1000000",
                           limit="output")
    clean = {str(k): v for k, v in params.items()
             if isinstance(v, bool | int | float | str)}
    return ProgramInfo(name=name, version=version, required_lookback=lookback,
                       parameters=clean)


class ProcessSandbox:
    """Uploaded strategies in pooled, isolated worker processes (see the module docstring)."""

    def __init__(self, limits: SandboxLimits, pool_size: int = 2, *,
                 python: str | None = None) -> None:
        self.limits = limits
        self.pool_size = max(1, pool_size)
        self.python = python
        self._cond = threading.Condition()
        self._idle: OrderedDict[ProgramKey, list[WorkerProcess]] = OrderedDict()
        self._count = 0
        self._template: TemplateProcess | None = None
        self._template_lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._runtime: Path | None = None
        self._closed = False
        self._layers_logged = False
        #: workers forked so far, and how long the last fresh one took to load (seconds)
        self.spawned = 0
        self.last_fresh_seconds = 0.0

    # -- the template ----------------------------------------------------------------------

    def _ensure_template(self) -> TemplateProcess:
        with self._template_lock:
            if self._closed:
                raise TemporaryError("the strategy sandbox is shut down")
            if os.getpid() != self._owner_pid:  # a forked copy of the server: start afresh
                self._owner_pid = os.getpid()
                self._template, self._runtime = None, None
                with self._cond:
                    self._idle.clear()
                    self._count = 0
            if self._template is not None and self._template.alive:
                return self._template
            if self._template is not None:  # it died: so did its idle workers
                self._template.close()
                with self._cond:
                    dead = [w for ws in self._idle.values() for w in ws]
                    self._idle.clear()
                    self._count -= len(dead)
                    self._cond.notify_all()
                for worker in dead:
                    worker.killed = True
                    worker.close()
            if self._runtime is None:
                self._runtime = Path(tempfile.mkdtemp(prefix="signalfactory-sandbox-"))
                empty = self._runtime / "root"
                empty.mkdir()
                empty.chmod(0o555)
            self._template = TemplateProcess(self._runtime, python=self.python)
            return self._template

    def warm_up(self) -> float:
        """Start the template now (otherwise the first call does); its start-up seconds."""
        return self._ensure_template().started_seconds

    def _worker_limits(self) -> dict[str, Any]:
        if self._runtime is None:
            raise TemporaryError("the sandbox template is not running")
        return {"cpu_seconds": self.limits.cpu_seconds, "memory_mb": self.limits.memory_mb,
                "open_files": self.limits.open_files,
                "empty_root": str(self._runtime / "root"), "read_roots": read_roots()}

    # -- acquiring and releasing workers ---------------------------------------------------

    def _acquire(self, program: SandboxProgram) -> tuple[WorkerProcess, bool]:
        """An idle worker of this program (warm), else a new one (fresh: True)."""
        key: ProgramKey = program.key
        victim: WorkerProcess | None = None
        deadline = time.monotonic() + max(self.limits.wall_seconds * 2, 10.0)
        self._ensure_template()  # started on first use; replaced (idle workers too) if dead
        with self._cond:
            while True:
                if self._closed:
                    raise TemporaryError("the strategy sandbox is shut down")
                idle = self._idle.get(key)
                if idle:
                    worker = idle.pop()
                    return worker, False
                if self._count < self.pool_size:
                    self._count += 1
                    break
                victim = self._oldest_idle()
                if victim is not None:
                    break  # replaced: the count stays
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TemporaryError(f"all {self.pool_size} sandbox workers are busy; "
                                         "try again shortly")
                self._cond.wait(left)
        if victim is not None:
            self._kill(victim)
        try:
            return self._spawn(program), True
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            raise

    def _oldest_idle(self) -> WorkerProcess | None:
        for key, workers in self._idle.items():
            if workers:
                victim = workers.pop(0)
                if not workers:
                    del self._idle[key]
                return victim
        return None

    def _release(self, worker: WorkerProcess, keep: bool) -> None:
        retire = worker.cpu + self.limits.cpu_seconds + 2 > lifetime_cpu_seconds(
            self.limits.cpu_seconds)
        if not keep or retire or worker.killed:
            self._kill(worker)
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            return
        with self._cond:
            if self._closed:
                keep = False
            else:
                self._idle.setdefault(worker.key, []).append(worker)
                self._idle.move_to_end(worker.key)
                self._cond.notify_all()
        if not keep:
            self._kill(worker)

    def _kill(self, worker: WorkerProcess) -> None:
        if not worker.killed:
            worker.killed = True
            template = self._template
            if template is not None:
                template.kill(worker.pid)
        worker.close()

    # -- spawning, loading and calling -----------------------------------------------------

    def _spawn(self, program: SandboxProgram) -> WorkerProcess:
        started = time.perf_counter()
        template = self._ensure_template()
        pid, sock = template.fork(self._worker_limits(), timeout=10.0)
        self.spawned += 1
        worker = WorkerProcess(pid=pid, sock=sock, key=program.key)
        request = {"op": "load", "source": program.source, "class_name": program.class_name,
                   "parameters": dict(program.parameters)}
        try:
            header = self._call(worker, request, max_payload=0)
            worker.layers = {str(k): bool(v)
                             for k, v in dict(header.get("layers", {})).items()}
            worker.info = _check_info(header)
        except BaseException:
            self._kill(worker)  # a worker whose program did not load serves nothing
            raise
        if not self._layers_logged:
            self._layers_logged = True
            missing = sorted(k for k, v in worker.layers.items() if not v)
            (log.warning if missing else log.debug)(
                "sandbox worker isolation", layers=dict(worker.layers), missing=missing,
                note="netns, chroot and nobody need root" if missing else "")
        self.last_fresh_seconds = time.perf_counter() - started
        return worker

    def _call(self, worker: WorkerProcess, request: wire.Header, *, max_payload: int,
              universe: BarUniverse | None = None) -> wire.Header:
        """Send one request and return the worker's ok answer; anything else kills the
        worker and raises SandboxError naming what stopped it."""
        header, _payload = self._exchange(worker, request, max_payload, universe)
        return header

    def _exchange(self, worker: WorkerProcess, request: wire.Header, max_payload: int,
                  universe: BarUniverse | None) -> tuple[wire.Header, memoryview]:
        deadline = time.monotonic() + self.limits.wall_seconds
        try:
            if universe is not None:
                worker.share_bars(universe)
            header, payload = worker.call(request, deadline=deadline, max_payload=max_payload,
                                          universe=universe)
        except wire.WireError as exc:
            raise self._stopped(worker, exc) from None
        except OSError as exc:
            raise self._stopped(worker, wire.WireError(str(exc), eof=True)) from None
        cpu = header.get("cpu")
        worker.cpu = float(cpu) if isinstance(cpu, int | float) else worker.cpu
        if header.get("ok") is True:
            return header, payload
        kind, message = str(header.get("kind", "error")), str(header.get("message", ""))
        limit = _KIND_LIMIT.get(kind)
        if kind == "memory":
            message = f"exceeded the {self.limits.describe('memory')}: {message}"
        elif kind == "recursion":
            message = f"recursed too deep: {message}"
        elif kind == "output":
            message = f"the strategy's result was refused: {message}"
        if kind != "error":  # a limit or a refusal: this worker is done
            self._kill(worker)
        raise SandboxError(message[:wire.MAX_ERROR_CHARS], limit=limit)

    def _stopped(self, worker: WorkerProcess, exc: wire.WireError) -> SandboxError:
        """Kill a worker that broke the protocol or the clock; name what stopped it."""
        template = self._template
        was_alive = not exc.eof
        self._kill(worker)
        if exc.timeout:
            if template is not None:
                template.exit_status(worker.pid, 2.0)
            return SandboxError(f"stopped: exceeded the {self.limits.describe('wall')}",
                                limit="wall")
        if was_alive:
            return SandboxError(f"stopped: the worker's answer was refused ({exc})",
                                limit="output")
        status = template.exit_status(worker.pid, 2.0) if template is not None else None
        return self._death(status)

    def _death(self, status: int | None) -> SandboxError:
        if status is None:
            return SandboxError("stopped: the worker went away without an answer",
                                limit="crash")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig in (signal.SIGXCPU, signal.SIGPROF):
                return SandboxError(f"stopped: exceeded the {self.limits.describe('cpu')}",
                                    limit="cpu")
            if sig == signal.SIGXFSZ:
                return SandboxError("stopped: tried to write a file (the file size limit "
                                    "is 0)", limit="files")
            if sig == signal.SIGKILL:
                return SandboxError(f"stopped: killed (SIGKILL), past the "
                                    f"{self.limits.describe('cpu')} or the "
                                    f"{self.limits.describe('memory')}", limit="memory")
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ \
                else str(sig)
            return SandboxError(f"stopped: the worker crashed ({name}), e.g. a stack "
                                f"overflow from deep recursion or memory exhausted in "
                                f"native code ({self.limits.describe('memory')})",
                                limit="crash")
        return SandboxError(f"stopped: the worker exited with code {os.WEXITSTATUS(status)}",
                            limit="crash")

    # -- the port --------------------------------------------------------------------------

    def load(self, program: SandboxProgram) -> ProgramInfo:
        worker, _fresh = self._acquire(program)
        self._release(worker, keep=True)
        return _loaded(worker)

    def evaluate(self, program: SandboxProgram, universe: BarUniverse) -> SandboxResult:
        started = time.perf_counter()
        worker, fresh = self._acquire(program)
        keep = False
        try:
            request = {"op": "run", "n": universe.n_bars, "symbols": list(universe.symbols),
                       "seed": run_seed(program.code_hash, universe)}
            header, payload = self._exchange(worker, request, wire.max_reply_bytes(
                universe.n_bars), universe)
            try:
                evaluation = wire.decode_evaluation(header, payload, universe)
            except SandboxError:
                self._kill(worker)
                raise
            keep = True
            return SandboxResult(evaluation=evaluation, info=_loaded(worker), fresh_worker=fresh,
                                 seconds=time.perf_counter() - started)
        except SandboxError as exc:
            keep = not worker.killed and exc.limit is None
            raise
        finally:
            self._release(worker, keep)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for worker in workers:
            self._kill(worker)
        with self._template_lock:
            if self._template is not None and os.getpid() == self._owner_pid:
                self._template.close()
            self._template = None
            if self._runtime is not None and os.getpid() == self._owner_pid:
                shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None

    @property
    def isolation(self) -> Mapping[str, bool]:
        """Which OS layers the last worker reported (netns, chroot, nobody)."""
        with self._cond:
            for workers in self._idle.values():
                for worker in workers:
                    return dict(worker.layers)
        return {}
