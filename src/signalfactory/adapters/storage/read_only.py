"""Read-only mode: when writes are refused, and how the mode ends by itself.

Two causes, either one is enough:

- **the primary is unreachable.** A write (or a read on the primary) that fails because the
  connection was refused, cut or timed out marks the primary down. From then on writes are
  refused at once with ``ReadOnlyError`` (503 ``read-only`` with ``Retry-After`` in the API;
  jobs pause) instead of each waiting for a connect timeout, reads that asked for the primary
  go to the replica, and every ``retry_seconds`` one caller probes the primary with a fresh
  connection of its own. The first probe that answers ends the mode, in every process on its
  own: nothing needs to be switched back.
- **an operator switched it on** (``signalfactory ops read-only on`` or ``PUT
  /api/v1/ops/read-only``): a flag file under the home directory. A file and not a row, because
  the switch must work while the database is down, and every process of one installation
  shares its home (the embedded setup; in Kubernetes the home volume). It is read at most once
  per ``flag_check_seconds`` per process, so switching it takes effect within that time.

A write refused here never reached the database: nothing of it is stored. A write cut in the
middle by the failure rolled back on the server (PostgreSQL aborts a transaction whose client
went away), except a COMMIT that reached the server while its answer was lost: that write is
stored although its caller got a 503, which is why clients retry writes with an
``Idempotency-Key``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy.engine import Engine

from signalfactory.observability.logging import get_logger
from signalfactory.observability.recording import metrics

log = get_logger("signalfactory.read_only")

#: Driver messages that mean the server cannot be reached (as opposed to busy or locked).
_UNREACHABLE = ("could not connect", "connection refused", "server closed the connection",
                "terminating connection", "connection timeout", "timeout expired",
                "connection is closed", "consuming input failed", "the connection is lost",
                "connection failed", "no connection to the server")


def is_unreachable(exc: BaseException) -> bool:
    """The database server did not answer (down, cut off), as opposed to busy or locked."""
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return False
    if getattr(exc, "connection_invalidated", False):
        return True
    text = str(exc.orig if getattr(exc, "orig", None) is not None else exc).lower()
    return any(marker in text for marker in _UNREACHABLE)


class ReadOnlyGuard:
    """Whether writes go through, for one process; shared by the unit of work and /readyz."""

    def __init__(self, flag_path: Path, primary: Engine, *, retry_seconds: float = 2.0,
                 connect_timeout: int = 2, flag_check_seconds: float = 0.5) -> None:
        self.flag_path = flag_path
        self.retry_seconds = retry_seconds
        self.flag_check_seconds = flag_check_seconds
        self._engine = primary
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._probing = threading.Lock()
        self.down_since: float | None = None
        self._next_probe = 0.0
        self.last_error: str | None = None
        self._flag: str | None = None
        self._flag_read_at = float("-inf")
        #: entries into and exits from the mode caused by the primary (tests, logs)
        self.entered = 0
        self.left = 0

    # -- the operator's switch --
    def operator_reason(self) -> str | None:
        now = time.monotonic()
        if now - self._flag_read_at >= self.flag_check_seconds:
            try:
                text: str | None = self.flag_path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                text = None
            except OSError as exc:  # an unreadable flag is reported, not ignored
                text = f"the flag file {self.flag_path} cannot be read ({exc.strerror})"
            flag = None if text is None else (text or "switched on by an operator")
            changed, self._flag = flag != self._flag, flag
            self._flag_read_at = now
            if changed:  # switched by another process: this one's gauge follows
                self._gauge()
        return self._flag

    def set_operator(self, reason: str | None) -> None:
        """Switch the mode on (with why) or off, for every process sharing the home."""
        if reason is None:
            self.flag_path.unlink(missing_ok=True)
            self._flag = None
        else:
            self._flag = reason.strip() or "switched on by an operator"
            self.flag_path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.flag_path.with_name(self.flag_path.name + ".tmp")
            scratch.write_text(self._flag, encoding="utf-8")
            scratch.replace(self.flag_path)
        self._flag_read_at = time.monotonic()
        log.warning("read-only mode switched by an operator", on=reason is not None,
                    reason=reason)
        self._gauge()

    # -- the primary --
    @property
    def primary_down(self) -> bool:
        return self.down_since is not None

    def mark_down(self, error: BaseException) -> None:
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = time.monotonic()
                self.entered += 1
            self._next_probe = time.monotonic() + self.retry_seconds
            cause = getattr(error, "orig", None) or error
            self.last_error = (str(cause).splitlines() or [type(cause).__name__])[0][:200]
        if first:
            log.error("primary database unreachable: read-only mode (reads from the replica "
                      "or cache, writes refused with 503)", error=self.last_error)
        self._gauge()

    def mark_up(self) -> None:
        with self._lock:
            if self.down_since is None:
                return
            lasted = time.monotonic() - self.down_since
            self.down_since = None
            self.last_error = None
            self.left += 1
        log.warning("primary database answers again: read-only mode ends",
                    lasted_s=round(lasted, 2))
        self._gauge()

    def probe(self) -> bool:
        """Connect to the primary on a connection of our own (never the pool's) and ask."""
        was_down = self.down_since is not None
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        params: dict[str, Any] = dict(cparams)
        if self._engine.dialect.name == "postgresql":
            params["connect_timeout"] = self._connect_timeout
        try:
            connection = self._engine.dialect.connect(*cargs, **params)
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
            finally:
                connection.close()
        except Exception as exc:  # the driver's errors vary; any of them means still down
            self.mark_down(exc)
            return False
        self.mark_up()
        if was_down:
            # Connections the pool held from before the failure are dead: start afresh.
            self._engine.pool.dispose()
        return True

    def primary_reason(self) -> str | None:
        """Why the primary refuses writes now, probing it again when a probe is due (one
        caller probes; the others answer from the last result)."""
        if self.down_since is None:
            return None
        if time.monotonic() >= self._next_probe and self._probing.acquire(blocking=False):
            try:
                if time.monotonic() >= self._next_probe:
                    self._next_probe = time.monotonic() + self.retry_seconds
                    self.probe()
            finally:
                self._probing.release()
        if self.down_since is None:
            return None
        return f"the primary database is unreachable ({self.last_error})"

    def reason(self) -> str | None:
        """Why writes are refused now; None when they go through."""
        operator = self.operator_reason()
        if operator is not None:
            return f"an operator switched the platform to read-only: {operator}"
        return self.primary_reason()

    def _gauge(self) -> None:
        if (m := metrics()) is not None:
            m.READ_ONLY.set(1 if self.down_since is not None or self._flag is not None else 0)
