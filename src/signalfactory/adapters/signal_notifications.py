"""PostgreSQL LISTEN: wake the live stream when another process commits signals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from signalfactory.observability.logging import get_logger

log = get_logger("signalfactory.stream")


class PostgresCommitNotifications:
    """``CommitNotifications`` over a dedicated psycopg connection LISTENing on ``channel``.

    The connection is opened only when ``listen`` runs (a serving process's stream hub);
    while it is down the hub keeps polling, so a lost connection only delays events.
    """

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel

    async def listen(self, wake: Callable[[], None]) -> None:
        import psycopg
        from psycopg import sql

        delay = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo,
                                                                 autocommit=True) as aconn:
                    await aconn.execute(sql.SQL("LISTEN {}").format(
                        sql.Identifier(self.channel)))
                    delay = 1.0
                    async for _note in aconn.notifies():
                        wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polling goes on meanwhile
                log.warning("live stream LISTEN connection lost; polling meanwhile",
                            error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
