"""Apprise: one Apprise URL per endpoint (Telegram ``tgram://``, Slack, Discord, ntfy,
Gotify, MQTT ``mqtt://``, ``json://``, ``mailto://`` and the rest of its 100+ services).

Apprise is imported on the first send or check (it loads every plugin). Apprise keeps no
state and raises nothing: the outcome is its ``AppriseResult``, one ``NotifyResult`` per
service with the log lines of that service's attempt (captured per call, so concurrent
sends never see each other's lines). A failure is returned with those lines, never
swallowed. Self-hosted services (json, xml, form, ntfy, gotify, mqtt) connect wherever the
URL says, so their hosts pass the same SSRF guard as webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from signalfactory.adapters.channels.addresses import resolve_public
from signalfactory.adapters.channels.pacing import Pacer, paced_out, target_keys
from signalfactory.domain.delivery import SendResult
from signalfactory.domain.errors import BadInputError

if TYPE_CHECKING:
    from apprise.result import NotifyResult

MAX_URL_CHARS = 4096
#: schemes whose host is wherever the user points it (not a fixed public service)
SELF_HOSTED = {"json", "jsons", "xml", "xmls", "form", "forms", "ntfy", "ntfys", "gotify",
               "gotifys", "mqtt", "mqtts", "apprise", "apprises"}
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def check_apprise_url(url: str, allow_private: bool = False) -> str:
    """The URL, once Apprise knows its scheme and its plugin accepts it (BadInputError
    naming the problem otherwise); self-hosted services' hosts must be public unless
    ``allow_private``."""
    url = url.strip()
    if not url or len(url) > MAX_URL_CHARS:
        raise BadInputError(f"an Apprise URL has 1 to {MAX_URL_CHARS} characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    import apprise  # here, not at module level: it loads every plugin
    if not scheme:
        raise BadInputError(f"{_redact(url)!r} is not an Apprise URL (scheme://...)")
    plugins = apprise.NotificationManager()  # type: ignore[no-untyped-call]  # a singleton
    if scheme not in plugins:
        raise BadInputError(f"unknown Apprise scheme {scheme!r}:// (see "
                            "https://github.com/caronc/apprise/wiki for the services)")
    if apprise.Apprise.instantiate(url) is None:
        raise BadInputError(f"Apprise cannot use {_redact(url)!r}: its {scheme}:// plugin "
                            "rejected the URL (missing token, host, or bad option)")
    if scheme in SELF_HOSTED and not allow_private:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise BadInputError(f"Apprise URL port is malformed: {exc}") from exc
        if not parts.hostname:
            raise BadInputError(f"Apprise {scheme}:// URL has no host")
        resolve_public(parts.hostname,
                       port or _DEFAULT_PORTS.get(scheme, 443 if scheme.endswith("s") else 80),
                       what=f"Apprise {scheme}://")
    return url


def _redact(url: str) -> str:
    """The scheme and host only: Apprise URLs carry tokens and passwords."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}/..."
    except ValueError:
        return url.split("://", 1)[0] + "://..."


class AppriseChannel:
    kind = "apprise"

    def __init__(self, timeout_s: float, allow_private: bool = False,
                 pacer: Pacer | None = None, max_pacing_wait_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.pacer = pacer or Pacer()
        #: longest a send waits for its destination's rate (well under a worker's lease)
        self.max_pacing_wait_s = max_pacing_wait_s

    def check_target(self, target: str) -> str:
        """``Channel.check_target``: a scheme Apprise knows, a URL its plugin accepts."""
        return check_apprise_url(target, allow_private=self.allow_private)

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes, *, html: str | None = None,
             max_per_second: float | None = None) -> SendResult:
        try:
            url = check_apprise_url(target, allow_private=self.allow_private)
        except BadInputError as exc:
            return SendResult(ok=False, error=f"refused: {exc}")
        import apprise

        notifier = apprise.Apprise()
        if not notifier.add(url):
            return SendResult(ok=False, error=f"refused: Apprise rejected {_redact(url)}")
        if self.pacer.wait(target_keys(url, max_per_second),
                           self.max_pacing_wait_s) is None:
            return paced_out(self.max_pacing_wait_s)
        started = time.perf_counter()
        outcome = notifier.notify(body=body or subject, title=subject,
                                  timeout=self.timeout_s)
        latency = time.perf_counter() - started
        if bool(outcome):
            return SendResult(ok=True, latency_s=latency)
        failures = tuple(_describe(service) for service in outcome if not bool(service))
        call_lines = tuple(entry.message for entry in outcome.call_logs())
        problems = failures or call_lines or (f"Apprise returned {outcome.status.name}",)
        return SendResult(ok=False, latency_s=latency, error="; ".join(problems)[:1000],
                          failures=problems)


def _describe(service: NotifyResult) -> str:
    """``<service> <url without secrets>: <status>: <its log lines>`` of one failed service
    (``service.url`` is Apprise's privacy form; redacted again, as it may keep a token)."""
    lines = " | ".join(entry.message for entry in service.logs())
    return (f"{service.name} {_redact(service.url)}: {service.status.name}: "
            f"{lines or 'no detail logged'}")
