"""What one process knows about trading beyond the database: whether it is read-only (the
database is unreachable) and which bot runners to wake when bars arrive.

Read-only mode is a per-process fact: it is set by whoever first fails to reach the database
(a runner's write, the watchdog's probe) and cleared by the watchdog once a probe succeeds.
While it lasts no order is sent: the order path refuses before it would write the pending row,
and that write could not succeed anyway (the pending row is written before sending).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signalfactory.services.trading.ports import Exchange

#: what an adapter was built with: account id, active key slot, when that key last changed
AdapterVersion = tuple[int, int, str]


@dataclass(frozen=True)
class ReadOnly:
    since_monotonic: float
    reason: str


class TradingRuntime:
    """Per-process trading state, shared by the runners and the watchdog of a process."""

    def __init__(self, owner: str | None = None) -> None:
        self._lock = threading.Lock()
        self._read_only: ReadOnly | None = None
        self._wakers: set[threading.Event] = set()
        self._bot_locks: dict[int, threading.Lock] = {}
        self.entered_read_only = 0
        #: when the database was last probed (time.monotonic), see services.trading.watchdog
        self.last_probe = 0.0
        #: who holds bot leases taken by this process. A stable id (set from
        #: SIGNALFACTORY_TRADING_WORKER_ID) lets a restarted worker take its leases back at
        #: once instead of waiting for them to expire; it must be unique per worker.
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: bots this process has reconciled since it started (each is reconciled first)
        self.reconciled: set[int] = set()
        #: exchange adapters by account with the key version they were built with, reused
        #: across ticks (ccxt loads markets once); see services.trading.sessions
        self.exchanges: dict[int, tuple[AdapterVersion, Exchange]] = {}
        #: called with the name of each point of the order path as it is passed; tests use
        #: it to kill the process at exact points (None in production)
        self.checkpoint_hook: Callable[[str], None] | None = None

    def checkpoint(self, name: str) -> None:
        hook = self.checkpoint_hook
        if hook is not None:
            hook(name)

    def bot_lock(self, bot_id: int) -> threading.Lock:
        """Serialises one bot's ticks inside this process (leases do it across processes)."""
        with self._lock:
            lock = self._bot_locks.get(bot_id)
            if lock is None:
                lock = self._bot_locks[bot_id] = threading.Lock()
            return lock

    # -- read-only mode --
    @property
    def read_only(self) -> ReadOnly | None:
        return self._read_only

    def enter_read_only(self, reason: str) -> bool:
        """Returns True when this call switched the mode on."""
        with self._lock:
            if self._read_only is not None:
                return False
            self._read_only = ReadOnly(time.monotonic(), reason)
            self.entered_read_only += 1
        self.wake_all()
        return True

    def leave_read_only(self) -> ReadOnly | None:
        """Returns what ended (None when the mode was off)."""
        with self._lock:
            ended, self._read_only = self._read_only, None
        if ended is not None:
            self.wake_all()
        return ended

    # -- wake-ups --
    def add_waker(self, event: threading.Event) -> None:
        with self._lock:
            self._wakers.add(event)

    def remove_waker(self, event: threading.Event) -> None:
        with self._lock:
            self._wakers.discard(event)

    def wake_all(self) -> None:
        with self._lock:
            wakers = list(self._wakers)
        for event in wakers:
            event.set()
