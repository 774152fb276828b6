"""Message text of a delivery: a subject and a plain-text body per channel kind.

Small on purpose: templates per subscription (sandboxed Jinja2) replace ``render`` without
touching the dispatcher, which only needs ``(subject, body)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.delivery import Delivery


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
