"""Message text of a delivery: the template context of a payload, rendered by the platform's
``MessageRenderer`` (sandboxed Jinja2: one default per channel kind, a subscription's own
template over it); plain default text where a platform has no renderer (memory tests).
"""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.delivery import Delivery, RenderedMessage
from signalfactory.services.delivery.ports import MessageRenderer


def _signal_line(payload: dict[str, object]) -> str:
    score = payload.get("score")
    scored = f" score {score:g}" if isinstance(score, int | float) else ""
    return (f"{payload.get('side', '?')} {payload.get('symbol', '?')} at "
            f"{payload.get('price', '?')} ({payload.get('strategy', '?')}, "
            f"{payload.get('timeframe', '?')} bar {payload.get('bar_ts', '?')}){scored}")


def render(delivery: Delivery, endpoint_kind: str,
           template: str | None = None) -> tuple[str, str]:
    """Subject and body of one message. ``template`` (a subscription's override) is not
    interpreted yet: the default text is used for every kind."""
    payload = delivery.payload
    kind = str(payload.get("type", "message"))
    if kind == "signal.created":
        return (f"Signal: {payload.get('side', '?')} {payload.get('symbol', '?')}",
                _signal_line(payload))
    subject = str(payload.get("subject") or kind)
    return subject, str(payload.get("body") or payload.get("text") or subject)


def render_digest(deliveries: Sequence[Delivery], endpoint_kind: str,
                  template: str | None = None) -> tuple[str, str]:
    """One message listing several signals (digest mode)."""
    lines = [_signal_line(d.payload) for d in deliveries]
    return f"{len(lines)} signals", "\n".join(f"- {line}" for line in lines)


def digest_payload(deliveries: Sequence[Delivery]) -> dict[str, object]:
    """A digest's webhook payload: the signals it lists, as ``signal.created`` would send
    each of them."""
    return {"type": "signal.digest", "count": len(deliveries),
            "signals": [{k: v for k, v in d.payload.items() if k != "type"}
                        for d in deliveries]}


def message_context(deliveries: Sequence[Delivery]) -> dict[str, object]:
    """What a template sees: ``signal`` (one signal), ``signals`` (a digest) or the payload's
    own fields (``subject``/``body`` of a campaign or a test), and ``type``."""
    if len(deliveries) > 1:
        return {"type": "signal.digest",
                "signals": [{k: v for k, v in d.payload.items() if k != "type"}
                            for d in deliveries]}
    payload = deliveries[0].payload
    if payload.get("type") == "signal.created":
        return {"type": "signal.created",
                "signal": {k: v for k, v in payload.items() if k != "type"}}
    return dict(payload)


def render_unit(renderer: MessageRenderer | None, deliveries: Sequence[Delivery],
                endpoint_kind: str, template: str | None) -> RenderedMessage:
    """The message of one send (one row, or a digest's rows). ``TemplateRenderError`` from a
    stored template propagates: the dispatcher dead-letters on it."""
    if renderer is not None:
        return renderer.render(endpoint_kind, template, message_context(deliveries))
    if len(deliveries) == 1:
        subject, body = render(deliveries[0], endpoint_kind, template)
    else:
        subject, body = render_digest(deliveries, endpoint_kind, template)
    return RenderedMessage(subject=subject, body=body)
