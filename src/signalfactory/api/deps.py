"""Dependencies, as ``Annotated`` aliases the routers declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from signalfactory.services.platform import Platform


async def get_platform(request: Request) -> Platform:
    # async: a sync dependency costs every request a hop to a worker thread and back
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]
