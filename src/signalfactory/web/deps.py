"""The platform a page works with: the one the API app was started with."""

from __future__ import annotations

from fastapi import Request

from signalfactory.services.platform import Platform


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform
