"""The ``MessageRenderer`` port, importing Jinja only when a message is first rendered.

Every process builds a Platform, and most (a CLI scan, a backtest) never render a message;
Jinja and its sandbox cost a fresh process tens of milliseconds to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signalfactory.domain.delivery import RenderedMessage


class JinjaMessageRenderer:
    """The ``MessageRenderer`` port over :func:`signalfactory.adapters.templates.render_message`."""

    def render(self, kind: str, template: str | None,
               context: Mapping[str, object]) -> RenderedMessage:
        from signalfactory.adapters.templates import render_message

        return render_message(kind, template, context)
