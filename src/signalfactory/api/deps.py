"""Dependencies, as ``Annotated`` aliases the routers declare."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Connection

from signalfactory.services.platform import Platform


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_read_conn(platform: Annotated[Platform, Depends(get_platform)]) -> Iterator[Connection]:
    with platform.reader.connect() as conn:
        yield conn


PlatformDep = Annotated[Platform, Depends(get_platform)]
ReadConnDep = Annotated[Connection, Depends(get_read_conn)]
