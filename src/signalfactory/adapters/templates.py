"""Message templates: sandboxed Jinja2, one default per channel kind, a subscription's own
template overriding it.

A template is either a plain body, or defines any of the blocks ``subject``, ``text`` and
``html``; a block it leaves out comes from the kind's default (the HTML of an e-mail whose
template has a text but no ``html`` block is its text escaped, so the two never disagree).
The variables are the message payload's keys (``signal``, ``signals``, ``subject``,
``body``, ...) and ``payload``, the whole of it.

Templates are written by tenants and run on our workers: the immutable sandbox refuses
underscore attributes (``''.__class__.__mro__``), unsafe callables and mutation;
``check_template`` refuses them when the template is stored, with the line. HTML blocks
are rendered with autoescape on; text blocks are not HTML and are left alone. Webhooks
have no template: the JSON payload is the message.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Literal

from jinja2 import Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from signalfactory.adapters.message_renderer import JinjaMessageRenderer as JinjaMessageRenderer
from signalfactory.domain.delivery import RenderedMessage, TemplateRenderError
from signalfactory.domain.errors import BadInputError

MAX_TEMPLATE_CHARS = 20_000
MAX_RENDERED_CHARS = 100_000
BLOCKS = ("subject", "text", "html")
Mode = Literal["text", "html"]

_SUBJECT = (
    "{% block subject %}{% if signal is mapping %}{{ signal.side|upper }} {{ signal.symbol }}"
    " ({{ signal.strategy }}){% elif signals %}{{ signals|length }} signals"
    "{% elif subject %}{{ subject }}{% else %}Signal Factory{% endif %}{% endblock %}")
_TEXT = (
    "{% block text %}{% if signal is mapping %}{{ signal.side|upper }} {{ signal.symbol }} at "
    "{{ signal.price }} on {{ signal.timeframe }} ({{ signal.strategy }}"
    "{% if signal.score is defined and signal.score is not none %}, score "
    "{{ signal.score }}{% endif %}){% elif signals %}{{ signals|length }} signals:"
    "{% for s in signals %}\n- {{ s.side|upper }} {{ s.symbol }} at {{ s.price }} "
    "({{ s.strategy }}){% endfor %}{% elif body %}{{ body }}{% else %}{{ payload|tojson }}"
    "{% endif %}{% endblock %}")
_HTML = (
    "{% block html %}<!doctype html><html><body>"
    "{% if signal is mapping %}<p><strong>{{ signal.side|upper }} {{ signal.symbol }}</strong>"
    " at {{ signal.price }}</p><table><tr><th>Strategy</th><td>{{ signal.strategy }}</td></tr>"
    "<tr><th>Timeframe</th><td>{{ signal.timeframe }}</td></tr>"
    "<tr><th>Bar</th><td>{{ signal.bar_ts }}</td></tr></table>"
    "{% elif signals %}<p>{{ signals|length }} signals</p><ul>{% for s in signals %}"
    "<li>{{ s.side|upper }} {{ s.symbol }} at {{ s.price }} ({{ s.strategy }})</li>"
    "{% endfor %}</ul>{% elif body %}<p>{{ body|replace('\\n', '<br>'|safe) }}</p>"
    "{% else %}<pre>{{ payload|tojson }}</pre>{% endif %}</body></html>{% endblock %}")

#: channel kind -> default template (None: the payload is the message)
DEFAULT_TEMPLATES: dict[str, str | None] = {
    "webhook": None,
    "apprise": _SUBJECT + _TEXT,
    "email": _SUBJECT + _TEXT + _HTML,
}

_SAMPLE = {"type": "signal", "signal": {
    "id": 1, "symbol": "AAPL", "side": "buy", "strategy": "sma_cross", "strategy_version": 1,
    "code_hash": "0" * 64,
    "timeframe": "1d", "price": 189.5, "score": 0.8, "bar_ts": "2024-01-02T00:00:00Z",
    "values": {"rsi": 55.0}}}


@functools.cache
def _environment(mode: Mode) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(autoescape=mode == "html", keep_trailing_newline=False)


@functools.lru_cache(maxsize=512)
def _compiled(text: str, mode: Mode) -> tuple[Template, frozenset[str]]:
    env = _environment(mode)
    template = env.from_string(text)
    return template, frozenset(template.blocks)


def _forbidden(tree: nodes.Template) -> Iterator[tuple[int, str]]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            yield node.lineno, f"attribute {name!r} is not accessible (names starting with _)"


def check_template(text: str) -> str:
    """The template, once it parses, uses no forbidden attribute and renders a sample
    signal inside the sandbox (BadInputError with the line and the problem otherwise)."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise BadInputError(f"a template has at most {MAX_TEMPLATE_CHARS} characters")
    for mode in ("text", "html"):
        env = _environment(mode)
        try:
            tree = env.parse(text)
            env.from_string(tree)  # compiling finds unknown filters and tests
        except TemplateSyntaxError as exc:
            raise BadInputError(f"template line {exc.lineno}: {exc.message}") from exc
        except TemplateError as exc:
            raise BadInputError(f"template: {exc.message or exc}") from exc
        forbidden = next(_forbidden(tree), None)
        if forbidden is not None:
            raise BadInputError(f"template line {forbidden[0]}: {forbidden[1]}")
    unknown = sorted(set(_blocks(text)) - set(BLOCKS))
    if unknown:
        raise BadInputError(f"template blocks are {', '.join(BLOCKS)}; unknown: "
                            f"{', '.join(unknown)}")
    try:
        render_message("email", text, _SAMPLE)
    except TemplateRenderError as exc:
        if isinstance(exc.__cause__, SecurityError):
            raise BadInputError(f"template: {exc}") from exc
    return text


def _blocks(text: str) -> frozenset[str]:
    return _compiled(text, "text")[1]


def _render(text: str, mode: Mode, context: Mapping[str, object], block: str | None,
            blank: frozenset[str] = frozenset()) -> str:
    template = _compiled(text, mode)[0]
    ctx: Context = template.new_context(dict(context))
    for name in blank:  # the whole body without its subject or html blocks
        ctx.blocks[name] = [_empty_block]
    render = template.blocks[block] if block is not None else template.root_render_func
    out = "".join(render(ctx))
    if len(out) > MAX_RENDERED_CHARS:
        raise TemplateRenderError(f"the template rendered {len(out)} characters; at most "
                                  f"{MAX_RENDERED_CHARS}")
    return out


def _empty_block(context: Context) -> Iterator[str]:
    return iter(())


def render_message(kind: str, template: str | None,
                   payload: Mapping[str, object]) -> RenderedMessage:
    """Subject, text and HTML of a message to a ``kind`` channel (TemplateRenderError when
    the template fails on this payload)."""
    default = DEFAULT_TEMPLATES.get(kind) or _SUBJECT + _TEXT
    context = {**payload, "payload": payload}
    try:
        if kind == "webhook":
            return RenderedMessage(subject=_render(default, "text", context, "subject").strip(),
                                   body="")
        own = template if template and template.strip() else None
        blocks = _blocks(own) if own else frozenset()
        subject = _render(own if own is not None and "subject" in blocks else default, "text",
                          context, "subject")
        if own is None:
            body = _render(default, "text", context, "text")
        elif "text" in blocks:
            body = _render(own, "text", context, "text")
        else:
            body = _render(own, "text", context, None, blank=blocks & {"subject", "html"})
            if not body.strip():  # only a subject or html block of its own
                body = _render(default, "text", context, "text")
        html: str | None = None
        if kind == "email":
            if own is None:
                html = _render(default, "html", context, "html")
            elif "html" in blocks:
                html = _render(own, "html", context, "html")
    except TemplateRenderError:
        raise
    except SecurityError as exc:
        raise TemplateRenderError(f"template refused by the sandbox: {exc}") from exc
    except Exception as exc:  # any failure inside a tenant's template is that template's
        raise TemplateRenderError(f"template failed: {type(exc).__name__}: {exc}") from exc
    return RenderedMessage(subject=" ".join(subject.split())[:250], body=body.strip(),
                           html=html)
