"""Binance's error responses: ``{"code": -1022, "msg": "..."}`` with an HTTP 4xx status."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg


def mandatory(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                       "or malformed.")
    return value
