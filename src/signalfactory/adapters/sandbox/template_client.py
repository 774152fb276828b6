"""The server's handle on the template process (see ``template``): start it, ask it to fork
workers or kill one, and learn how each worker ended."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from signalfactory.domain.errors import OperationalError, TemporaryError

#: the template's interpreter flags: no user site (-s), no site (-S), no script or current
#: directory on the path (-P), no bytecode writes (-B); the environment is built from scratch
#: instead of -E, so that the sandbox's own PYTHONHASHSEED=0 keeps runs deterministic
PYTHON_FLAGS = ("-s", "-S", "-P", "-B")
MAX_EXITS_KEPT = 1024
BOOT = ("import json,sys;c=json.loads(sys.argv[1]);sys.path[:0]=c['paths'];"
        "from signalfactory.adapters.sandbox.template import main;main(c)")
TEMPLATE_ENV = {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "NUMEXPR_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                "LC_ALL": "C.UTF-8"}


def import_paths() -> list[str]:
    """Where the template finds this package and the installed ones (nothing else)."""
    import numpy
    import pandas
    import talib

    import signalfactory

    found: list[str] = [str(Path(signalfactory.__file__).resolve().parent.parent)]
    for module in (numpy, pandas, talib):
        found.append(str(Path(str(module.__file__)).resolve().parent.parent))
    found += [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(found))


def read_roots() -> list[str]:
    """What a worker may open read-only when it is not in an empty root (not root)."""
    roots = [*import_paths(), sysconfig.get_paths()["stdlib"],
             sysconfig.get_paths()["platstdlib"]]
    return list(dict.fromkeys(os.path.realpath(r) for r in roots))


class TemplateProcess:
    """One running template. Thread-safe; a dead template is replaced by the pool."""

    def __init__(self, runtime_dir: Path, *, python: str | None = None,
                 start_timeout: float = 180.0) -> None:
        self.runtime_dir = runtime_dir
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._forked: dict[int, tuple[int, int]] = {}
        # how recent workers ended, for the pool to name a limit; bounded (most are never
        # asked about: a worker retired or killed on purpose)
        self._exits: OrderedDict[int, int] = OrderedDict()
        self._ready = False
        self._dead = False
        self._next_id = 0
        self.pid = 0
        self.started_seconds = 0.0
        server_end, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctl = server_end
        started = time.perf_counter()
        log = (runtime_dir / "template.log").open("ab")
        try:
            config = {"paths": import_paths(), "fd": template_end.fileno()}
            self._process = subprocess.Popen(  # noqa: S603 -- our interpreter, fixed args
                [self.python, *PYTHON_FLAGS, "-c", BOOT, json.dumps(config)],
                pass_fds=(template_end.fileno(),), env=dict(TEMPLATE_ENV),
                cwd=str(runtime_dir), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, start_new_session=True)
        finally:
            log.close()
            template_end.close()
        self._reader = threading.Thread(target=self._read, name="sandbox-template",
                                        daemon=True)
        self._reader.start()
        with self._cond:
            ready = self._cond.wait_for(lambda: self._ready or self._dead, start_timeout)
        if not ready or self._dead:
            self.close()
            raise OperationalError(f"the sandbox template process did not start: "
                                   f"{self._log_tail()}")
        self.started_seconds = time.perf_counter() - started

    def _log_tail(self) -> str:
        try:
            text = (self.runtime_dir / "template.log").read_text(errors="replace")
        except OSError:
            return "no log"
        return text.strip().splitlines()[-1][:300] if text.strip() else "no output"

    def _read(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._ctl, 65536, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                with self._cond:
                    self._dead = True
                    self._cond.notify_all()
                return
            message: dict[str, Any] = json.loads(data)
            with self._cond:
                op = message.get("op")
                if op == "ready":
                    self.pid = int(message["pid"])
                    self._ready = True
                elif op == "forked" and fds:
                    self._forked[int(message["id"])] = (int(message["pid"]), fds[0])
                    fds = fds[1:]
                elif op == "exit":
                    self._exits[int(message["pid"])] = int(message["status"])
                    while len(self._exits) > MAX_EXITS_KEPT:
                        self._exits.popitem(last=False)
                self._cond.notify_all()
            for fd in fds:
                os.close(fd)

    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            try:
                self._ctl.send(json.dumps(message).encode())
            except OSError as exc:
                raise TemporaryError(f"the sandbox template process is gone ({exc})") from exc

    @property
    def alive(self) -> bool:
        return not self._dead and self._process.poll() is None

    def fork(self, limits: dict[str, Any], timeout: float) -> tuple[int, socket.socket]:
        """A new worker: its pid and the server's end of its socket."""
        with self._cond:
            self._next_id += 1
            request = self._next_id
        self._send({"op": "fork", "id": request, "limits": limits})
        with self._cond:
            if not self._cond.wait_for(lambda: request in self._forked or self._dead, timeout):
                raise TemporaryError("the sandbox template did not fork a worker in time")
            if request not in self._forked:
                raise TemporaryError("the sandbox template process died")
            pid, fd = self._forked.pop(request)
        return pid, socket.socket(fileno=fd)

    def kill(self, pid: int) -> None:
        """SIGKILL a worker (by the template, which knows whether the pid is still its)."""
        with contextlib.suppress(TemporaryError):
            self._send({"op": "kill", "pid": pid})

    def exit_status(self, pid: int, timeout: float) -> int | None:
        """How the worker ended (a wait status), None if not known within ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self._dead, timeout)
            return self._exits.pop(pid, None)

    def forget(self, pid: int) -> None:
        with self._cond:
            self._exits.pop(pid, None)

    def close(self) -> None:
        with contextlib.suppress(TemporaryError):
            self._send({"op": "exit"})
        with contextlib.suppress(OSError):
            self._ctl.shutdown(socket.SHUT_RDWR)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)
        self._ctl.close()
