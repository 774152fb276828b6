"""The read engine for ``SIGNALFACTORY_DATABASE_READ_URL``, failing over to the primary.

Read-only units of work (``Database.read()``) use it. When the replica cannot be reached, reads
fail over to the primary instead of failing: the primary holds the same data (fresher, even), so
serving from it is correct, and losing only extra read capacity should not take the API down.
/readyz reports the replica as ``degraded`` (still 200, so a load balancer keeps the
instances in service) and ``signalfactory_read_replica_up`` drops to 0 for alerting.

How: the read engine's ``do_connect`` hook opens the replica connection itself; when that
fails it hands the pool a connection to the primary instead and marks the replica down for
``retry_seconds``. A fall-back connection taken from the pool after that time is discarded
(the pool then reconnects, trying the replica again), so reads return to the replica by
themselves once it is back. Pooled connections to a replica that died are caught by the
pool's pre-ping. Every read unit of work gets this without knowing.

Not covered: a replica that dies in the middle of a query fails that query (the client gets
a 5xx and retries); a replica that lags serves rows up to its lag old (paths that must read
their own writes use the primary: see ``get_scan`` and the jobs service).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from signalfactory.adapters.storage.db import create_db_engine, normalise_url
from signalfactory.domain.errors import BadInputError
from signalfactory.observability.logging import get_logger
from signalfactory.observability.metrics import (
    READ_FAILOVERS,
    REPLICA_UP,
)

log = get_logger("signalfactory.read_replica")


FALLBACK = "read_replica_fallback"


@dataclass
class ReplicaState:
    """Whether the replica is usable; shared by the connect hook and the readiness probe."""

    retry_seconds: float = 10.0
    down_until: float = 0.0
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def mark_down(self, error: BaseException) -> None:
        with self._lock:
            was_up = self.down_until == 0.0
            self.down_until = time.monotonic() + self.retry_seconds
            self.last_error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}" \
                if str(error) else type(error).__name__
        REPLICA_UP.set(0)
        if was_up:
            log.warning("read replica unreachable; reads fail over to the primary",
                        error=self.last_error, retry_seconds=self.retry_seconds)

    def mark_up(self) -> None:
        with self._lock:
            was_down = self.down_until != 0.0
            self.down_until = 0.0
            self.last_error = None
        REPLICA_UP.set(1)
        if was_down:
            log.info("read replica reachable again; reads go back to it")


def _connect_args(engine: Engine) -> tuple[list[Any], dict[str, Any]]:
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    if engine.dialect.name == "sqlite":
        cparams.setdefault("timeout", 10)  # as create_db_engine does
    return list(cargs), dict(cparams)


def create_read_engine(read_url: str, primary: Engine, *, retry_seconds: float = 10.0,
                       connect_timeout: int = 3, pool_size: int = 5,
                       max_overflow: int = 5) -> tuple[Engine, ReplicaState]:
    """The engine behind ``SqlDatabase.reader`` and the state its probe reports."""
    read_url = normalise_url(read_url)
    if make_url(read_url).get_backend_name() != primary.dialect.name:
        raise BadInputError(
            "SIGNALFACTORY_DATABASE_READ_URL must name the same kind of database as the "
            f"primary ({primary.dialect.name}); it is a replica of it")
    engine = create_db_engine(read_url, pool_size=pool_size, max_overflow=max_overflow)
    state = ReplicaState(retry_seconds=retry_seconds)
    REPLICA_UP.set(1)
    primary_cargs, primary_cparams = _connect_args(primary)
    is_pg = engine.dialect.name == "postgresql"

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Dialect, record: ConnectionPoolEntry, cargs: list[Any],
                 cparams: dict[str, Any]) -> DBAPIConnection:
        if not state.is_down:
            if is_pg:
                # A blackholed replica must not hold a request for the OS's TCP timeout.
                cparams.setdefault("connect_timeout", connect_timeout)
            try:
                connection = dialect.connect(*cargs, **cparams)
            except Exception as error:  # the driver's connect errors vary; any means down
                state.mark_down(error)
            else:
                record.info[FALLBACK] = False
                state.mark_up()
                return connection
        record.info[FALLBACK] = True
        READ_FAILOVERS.inc()
        return dialect.connect(*primary_cargs, **primary_cparams)

    @event.listens_for(engine, "checkout")
    def _retry_replica(_dbapi: DBAPIConnection, record: ConnectionPoolEntry,
                       _proxy: PoolProxiedConnection) -> None:
        if record.info.get(FALLBACK) and not state.is_down:
            # The pool discards this primary connection and connects again (replica first).
            raise exc.DisconnectionError("read replica may be back; reconnecting")

    return engine, state


def replica_probe(engine: Engine, state: ReplicaState,
                  timeout: int = 2) -> Callable[[], str]:
    """A readiness check that connects to the replica itself (never to the fallback)."""
    cargs, cparams = _connect_args(engine)
    if engine.dialect.name == "postgresql":
        cparams["connect_timeout"] = timeout

    def probe() -> str:
        try:
            connection = engine.dialect.connect(*cargs, **cparams)
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
            finally:
                connection.close()
        except Exception as error:  # any failure means reads are on the primary
            state.mark_down(error)
            return (f"degraded: read replica unreachable ({state.last_error}); reads fail "
                    "over to the primary")
        state.mark_up()
        return "ok"

    return probe
