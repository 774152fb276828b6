"""The HTTP API: an application factory, routers, schemas and dependencies."""

from signalfactory.api.app import create_app

__all__ = ["create_app"]
