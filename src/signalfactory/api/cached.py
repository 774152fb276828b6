"""Hot GET reads served through the platform cache (see ``adapters/cache.py``).

The cached value is the response body itself, so a hit costs one cache round trip and no
database connection, model validation or JSON encoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import Response
from pydantic import BaseModel

from signalfactory.services.platform import Platform


def cached_response(platform: Platform, namespace: str, parts: Sequence[object],
                    load: Callable[[], BaseModel], *, tenant_id: int | None = None) -> Response:
    """``load()`` as JSON, from the cache when ``namespace`` has not changed since.

    Pass ``tenant_id`` whenever the body depends on the caller's tenant.
    """
    return cached_json(platform, namespace, parts, lambda: load().model_dump_json(),
                       tenant_id=tenant_id)


def cached_json(platform: Platform, namespace: str, parts: Sequence[object],
                load_json: Callable[[], str], *, tenant_id: int | None = None) -> Response:
    """As ``cached_response``, for a loader that writes the JSON body itself."""
    body = platform.cache.get_or_load(namespace, parts, load_json, tenant_id=tenant_id)
    return Response(content=body, media_type="application/json")
