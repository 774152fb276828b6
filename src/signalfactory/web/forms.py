"""The few forms the dashboard handles itself (sign-in, sign-out): parsed without a
multipart library, checked against a CSRF token."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from fastapi import Request

MAX_FORM_BYTES = 16_384


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as single values."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                          max_num_fields=20)
    except ValueError:  # more fields than any of our forms has: not one of them
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


def same_token(sent: str | None, expected: str | None) -> bool:
    # bytes: compare_digest refuses str with non-ASCII characters (a hostile form field)
    return bool(sent and expected) and secrets.compare_digest(str(sent).encode(),
                                                              str(expected).encode())
