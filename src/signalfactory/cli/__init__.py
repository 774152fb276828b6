"""The ``signalfactory`` command line (Typer + rich). Each command calls a service."""

from signalfactory.cli.main import app, main

__all__ = ["app", "main"]
