"""Plain SMTP e-mail (stdlib ``smtplib``): a multipart/alternative message, text and HTML.

Target format (the endpoint's sealed target)::

    smtp://[user:password@]host[:port]?from=alerts@example.com&to=a@example.com,b@example.com
    smtp+starttls://...   STARTTLS required before login (default port 587)
    smtps://...           TLS from the first byte (default port 465)

``smtp://`` is plain text on port 25 by default: meant for a relay on a trusted network.
User and password are percent-decoded. The message's ``Message-ID`` derives from the
outbox id, so a repeated attempt is recognisably the same message. Recipients the server
refuses are listed in ``SendResult.failures``; the attempt counts as failed only when
nobody accepted it (a retry would send the accepted ones a second copy).
"""

from __future__ import annotations

import html as html_lib
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from signalfactory.adapters.channels.pacing import Pacer, paced_out, target_keys
from signalfactory.domain.delivery import SendResult
from signalfactory.domain.errors import BadInputError

SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpTarget:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    sender: str
    recipients: tuple[str, ...]


def _address(text: str, what: str) -> str:
    _name, address = parseaddr(text.strip())
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise BadInputError(f"e-mail target: {what} {text!r} is not an e-mail address")
    return address


def parse_smtp_target(target: str) -> SmtpTarget:
    try:
        parts = urlsplit(target.strip())
        port = parts.port
    except ValueError as exc:
        raise BadInputError(f"e-mail target is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadInputError("an e-mail target is smtp://, smtp+starttls:// or smtps://"
                            "host[:port]?from=...&to=... (or use an Apprise mailto:// URL)")
    if not parts.hostname:
        raise BadInputError("e-mail target has no SMTP host")
    if port is not None and not 1 <= port <= 65535:
        raise BadInputError(f"e-mail target port {port} is outside 1..65535")
    query = parse_qs(parts.query)
    senders = query.get("from", [])
    if len(senders) != 1:
        raise BadInputError("e-mail target needs exactly one from=<address>")
    recipients = tuple(_address(r, "recipient") for value in query.get("to", [])
                       for r in value.split(",") if r.strip())
    if not recipients:
        raise BadInputError("e-mail target needs to=<address>[,<address>...]")
    return SmtpTarget(scheme=scheme, host=parts.hostname, port=port or SCHEMES[scheme],
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None,
                      sender=_address(senders[0], "sender"), recipients=recipients)


def check_email_target(target: str) -> str:
    """The target, once it parses (BadInputError saying what is wrong otherwise)."""
    parse_smtp_target(target)
    return target.strip()


def html_from_text(text: str) -> str:
    """An HTML body for a message that has only text: escaped, line breaks kept."""
    return ("<!doctype html><html><body><p>"
            + html_lib.escape(text).replace("\n", "<br>\n") + "</p></body></html>")


def build_message(target: SmtpTarget, message_id: str, timestamp: int, subject: str,
                  body: str, html: str | None) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = target.sender
    message["To"] = ", ".join(target.recipients)
    message["Date"] = formatdate(timestamp, usegmt=True)
    message["Message-ID"] = f"<{message_id}@signalfactory>"
    message.set_content(body)
    message.add_alternative(html if html is not None else html_from_text(body), subtype="html")
    return message


class EmailChannel:
    kind = "email"

    def __init__(self, timeout_s: float, pacer: Pacer | None = None,
                 max_pacing_wait_s: float = 30.0) -> None:
        self.timeout_s = timeout_s
        self.pacer = pacer or Pacer()
        #: longest a send waits for its destination's rate (well under a worker's lease)
        self.max_pacing_wait_s = max_pacing_wait_s

    def _connect(self, target: SmtpTarget) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if target.scheme == "smtps":
            return smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout_s,
                                    context=context)
        smtp = smtplib.SMTP(target.host, target.port, timeout=self.timeout_s)
        if target.scheme == "smtp+starttls":
            smtp.starttls(context=context)
        return smtp

    def check_target(self, target: str) -> str:
        """``Channel.check_target``: an smtp[s]:// target with from= and to=."""
        return check_email_target(target)

    def send(self, target: str, secrets: Sequence[str], message_id: str, timestamp: int,
             subject: str, body: str, payload: bytes, *, html: str | None = None,
             max_per_second: float | None = None) -> SendResult:
        try:
            smtp_target = parse_smtp_target(target)
        except BadInputError as exc:
            return SendResult(ok=False, error=f"refused: {exc}")
        if self.pacer.wait(target_keys(target, max_per_second),
                           self.max_pacing_wait_s) is None:
            return paced_out(self.max_pacing_wait_s)
        message = build_message(smtp_target, message_id, timestamp, subject, body, html)
        started = time.perf_counter()
        try:
            with self._connect(smtp_target) as smtp:
                if smtp_target.username is not None:
                    smtp.login(smtp_target.username, smtp_target.password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            return SendResult(ok=False, latency_s=time.perf_counter() - started,
                              error="every recipient was refused",
                              failures=_refusals(exc.recipients))
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error
            text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
            return SendResult(ok=False, latency_s=time.perf_counter() - started,
                              error=f"SMTP {exc.smtp_code} {text}"[:500])
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(ok=False, latency_s=time.perf_counter() - started,
                              error=f"{type(exc).__name__}: {exc or 'connection failed'}")
        failures = _refusals(refused)
        return SendResult(ok=True, latency_s=time.perf_counter() - started,
                          error=f"{len(failures)} recipient(s) refused" if failures else None,
                          failures=failures)


def _refusals(refused: dict[str, tuple[int, bytes]]) -> tuple[str, ...]:
    return tuple(f"{address}: SMTP {code} {reply.decode('utf-8', 'replace')}"
                 for address, (code, reply) in sorted(refused.items()))
