"""A sandbox worker: forked from the template process, it isolates itself, loads one
uploaded strategy and evaluates it on the bars the server sends, until told to stop.

Isolation, in this order, before any user code runs:

1. die with the template process (``PR_SET_PDEATHSIG``), close every inherited descriptor
   but the connection to the server;
2. as root: a new, empty network namespace (``unshare(CLONE_NEWNET)``: not even loopback is
   up) and ``chroot`` into an empty directory (no file to read, no socket file to reach);
   otherwise the working directory is that empty directory;
3. resource limits: address space (the worker's own plus ``memory_mb``), CPU seconds (per
   call; the hard limit bounds the worker's whole life), open files, file size 0 (nothing
   can be written), no core dumps, no child processes or threads (``RLIMIT_NPROC`` 0);
4. as root: drop to the unprivileged ``nobody`` user (so ``RLIMIT_NPROC`` holds and no
   capability is left) and set ``no_new_privs``;
5. the audit hook and restricted builtins of ``guard``.

The environment is empty (the template cleared it before forking). Every answer is a
frame of ``wire``; the server checks each one. Errors are answered as kinds: ``static``
(the source check), ``refused`` (the audit hook or the import function), ``memory``,
``recursion``, ``error`` (the strategy's own exception, with its line). After any kind but
``error`` the worker exits: it broke a limit.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import random
import resource
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.random.bit_generator as np_bit_generator

from signalfactory.adapters.sandbox import wire
from signalfactory.adapters.sandbox.guard import (
    SandboxRefusalError,
    Violations,
    install_audit_hook,
    safe_builtins,
)
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.strategies.source_check import check_source

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNET = 0x40000000
def lifetime_cpu_seconds(cpu_seconds: float) -> int:
    """CPU seconds a worker may use over its whole life (RLIMIT_CPU's hard limit); the
    server retires a worker before a call could run into it."""
    return max(600, 20 * math.ceil(cpu_seconds))
STRATEGY_FILENAME = "<strategy>"
#: the server's requests carry the symbols and the source (bounded by the upload limit)
SERVER_HEADER_BYTES = 64 << 20


@dataclass(frozen=True)
class WorkerConfig:
    """What the template passes a new worker (from the server's fork request)."""

    cpu_seconds: float
    memory_mb: int
    open_files: int
    empty_root: str
    read_roots: tuple[str, ...]
    template_pid: int
    nobody: tuple[int, int] | None  # (uid, gid) to drop to when running as root

    @classmethod
    def of(cls, raw: dict[str, Any], template_pid: int,
           nobody: tuple[int, int] | None) -> WorkerConfig:
        return cls(cpu_seconds=float(raw["cpu_seconds"]), memory_mb=int(raw["memory_mb"]),
                   open_files=int(raw["open_files"]), empty_root=str(raw["empty_root"]),
                   read_roots=tuple(raw["read_roots"]), template_pid=template_pid,
                   nobody=nobody)


def _vm_bytes() -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _close_fds_except(keep: int) -> None:
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)


def isolate(config: WorkerConfig, sock_fd: int) -> dict[str, bool]:
    """Steps 1-4 of the module docstring; returns which layers are in place."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != config.template_pid:
        os._exit(1)
    _close_fds_except(sock_fd)
    root = os.geteuid() == 0
    layers = {"netns": False, "chroot": False, "nobody": False}
    base_vm = _vm_bytes()
    # Each root-only layer is best effort (a container may lack the capability); the server
    # logs which are missing. The limits and the audit hook below hold in any case.
    if root:
        layers["netns"] = libc.unshare(CLONE_NEWNET) == 0
        try:
            os.chroot(config.empty_root)
            layers["chroot"] = True
        except OSError:
            layers["chroot"] = False
    os.chdir("/" if layers["chroot"] else config.empty_root)
    cpu = max(1, math.ceil(config.cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (config.open_files, config.open_files))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, lifetime_cpu_seconds(config.cpu_seconds)))
    limit_as = base_vm + config.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    if root and config.nobody is not None:
        uid, gid = config.nobody
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            layers["nobody"] = True
        except OSError:
            layers["nobody"] = False
        # a change of user clears the parent-death signal: set it again
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != config.template_pid:
            os._exit(1)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return layers


def cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _next_call_cpu_limit(cpu_seconds: float) -> None:
    """Allow ``cpu_seconds`` of CPU for the next call: a profiling timer (``SIGPROF`` ends
    the process, to the hundredth of a second) and, behind it, ``RLIMIT_CPU`` a second later
    (whole seconds; its ``SIGXCPU`` also ends the process)."""
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = min(hard, math.ceil(cpu_used() + cpu_seconds) + 1)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _call_done() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)


def _seed(seed: int) -> None:
    """Make every generator a strategy can reach start from ``seed``: the legacy global one,
    ``random``, and the entropy numpy draws for an unseeded ``default_rng()``."""
    entropy = random.Random(seed)  # noqa: S311 -- reproducible draws, not secrets
    random.seed(seed)
    np.random.seed(seed & 0xFFFF_FFFF)
    np_bit_generator.randbits = entropy.getrandbits  # type: ignore[attr-defined]


def _where(exc: BaseException) -> str:
    """' (line N in f)' for the deepest frame of the strategy's own code, if any."""
    tb, found = exc.__traceback__, ""
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == STRATEGY_FILENAME:
            found = f" (line {tb.tb_lineno} in {code.co_name})"
        tb = tb.tb_next
    return found


def classify(exc: BaseException, violations: Violations) -> wire.Header:
    if violations.first is not None or isinstance(exc, SandboxRefusalError):
        return wire.error_reply("refused", f"the sandbox refused {violations.first or exc}")
    if isinstance(exc, MemoryError):
        return wire.error_reply("memory", f"MemoryError{_where(exc)}")
    if isinstance(exc, RecursionError):
        return wire.error_reply("recursion", f"RecursionError: {exc}{_where(exc)}")
    try:
        text = str(exc)
    except Exception:  # a message that cannot even be printed
        text = "?"
    return wire.error_reply("error", f"{type(exc).__name__}: {text[:1500]}{_where(exc)}")


def _scalar(value: object) -> bool:
    return isinstance(value, bool | int | float | str) and (
        not isinstance(value, float) or math.isfinite(value))


def describe(instance: object, class_name: str) -> wire.Header:
    """The program's metadata (the parent checks it again)."""
    parameters = dict(getattr(instance, "parameters", {}) or {})
    return {"ok": True, "name": str(getattr(instance, "name", class_name))[:100],
            "version": str(getattr(instance, "version", "1"))[:32],
            "required_lookback": int(getattr(instance, "required_lookback", 0) or 0),
            "parameters": {str(k)[:100]: v for k, v in list(parameters.items())[:50]
                           if _scalar(v)}}


class Worker:
    """One loaded program and the bars' shared memory."""

    def __init__(self, sock: socket.socket, config: WorkerConfig, layers: dict[str, bool]
                 ) -> None:
        self.sock = sock
        self.config = config
        self.layers = layers
        self.violations = Violations()
        self.cls: Any = None
        self.parameters: dict[str, Any] = {}
        self.shm: mmap.mmap | None = None

    def load(self, header: wire.Header) -> bool:
        source, class_name = str(header["source"]), str(header["class_name"])
        self.parameters = dict(header.get("parameters") or {})
        try:
            check_source(source, class_name)
            code = compile(source, STRATEGY_FILENAME, "exec", dont_inherit=True)
        except BadInputError as exc:
            wire.send_frame(self.sock, wire.error_reply("static", str(exc)))
            return False
        install_audit_hook(self.violations, [code], self.config.read_roots)
        namespace: dict[str, Any] = {"__name__": "strategy",
                                     "__builtins__": safe_builtins(self.violations)}
        try:
            _next_call_cpu_limit(self.config.cpu_seconds)
            exec(code, namespace)  # noqa: S102 -- the checked source, in the isolated worker
            self.cls = namespace[class_name]
            reply = describe(self.cls(**self.parameters), class_name)
            if self.violations.first is not None:
                raise SandboxRefusalError(self.violations.first)
        except BaseException as exc:  # the strategy's failure, reported to the server
            reply = classify(exc, self.violations)
        finally:
            _call_done()
        reply["layers"] = self.layers
        reply["cpu"] = cpu_used()
        wire.send_frame(self.sock, reply)
        return bool(reply["ok"])

    def map_bars(self) -> None:
        """Take a new memfd from the server (sent with an 8-byte marker)."""
        msg, fds, _flags, _addr = socket.recv_fds(self.sock, 8, 1)
        if len(fds) != 1:
            raise RuntimeError("expected one descriptor with the bars")
        while len(msg) < 8:
            more = self.sock.recv(8 - len(msg))
            if not more:
                raise EOFError
            msg += more
        size = int.from_bytes(msg, "little")
        if self.shm is not None:
            self.shm.close()
        self.violations.mmap_fds.add(fds[0])
        self.shm = mmap.mmap(fds[0], size, mmap.MAP_SHARED, mmap.PROT_READ)
        os.close(fds[0])
        self.violations.mmap_fds.discard(fds[0])

    def fetch(self, column: str) -> None:
        """Ask the server for a bar column the strategy is about to read."""
        wire.send_frame(self.sock, {"op": "need", "column": column})
        answer, _ = wire.recv_frame(self.sock, max_header=SERVER_HEADER_BYTES)
        if answer.get("op") != "have":
            raise RuntimeError(f"the server did not send the {column} bars")

    def run(self, header: wire.Header) -> bool:
        n, symbols = int(header["n"]), list(header["symbols"])
        parts: list[memoryview] = []
        try:
            if self.shm is None:
                raise RuntimeError("no bars were shared")
            _next_call_cpu_limit(self.config.cpu_seconds)
            _seed(int(header["seed"]))
            universe = wire.LazyBars(self.shm, symbols, n, self.fetch, wire.EAGER_COLUMNS)
            evaluation = self.cls(**self.parameters).evaluate(universe)
            if self.violations.first is not None:
                raise SandboxRefusalError(self.violations.first)
            try:  # what the strategy returned, checked here and again by the server
                reply, parts = wire.encode_evaluation(evaluation, n)
            except Exception as exc:
                reply = wire.error_reply("output", f"{type(exc).__name__}: {exc}"[:1500])
        except BaseException as exc:  # reported to the server
            reply, parts = classify(exc, self.violations), []
        finally:
            _call_done()
        reply["cpu"] = cpu_used()
        wire.send_frame(self.sock, reply, parts)
        return bool(reply["ok"]) or reply["kind"] == "error"

    def serve(self) -> None:
        header, _ = wire.recv_frame(self.sock, max_header=SERVER_HEADER_BYTES)
        if header.get("op") != "load" or not self.load(header):
            return
        while True:
            header, _ = wire.recv_frame(self.sock, max_header=SERVER_HEADER_BYTES)
            op = header.get("op")
            if op == "bars":
                self.map_bars()
            elif op == "run":
                if not self.run(header):
                    return
            else:
                return


def main(sock: socket.socket, config: WorkerConfig) -> None:
    """The forked child's whole life; never returns."""
    code = 0
    try:
        layers = isolate(config, sock.fileno())
        Worker(sock, config, layers).serve()
    except (wire.WireError, EOFError, OSError):
        code = 0  # the server went away or gave up on us
    except BaseException:
        code = 3
    os._exit(code)
