"""Per-key rate limits: RateLimit headers, 429 with Retry-After, isolation between keys.

Runs with the in-memory storage on both database backends and with the Redis storage (the
Redis on 127.0.0.1:6379; skipped with a reason when it is down, failed under CI=true).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from signalfactory.adapters.rate_limits import KeyRateLimiter
from signalfactory.bootstrap import build_rate_limiter
from signalfactory.settings import Settings
from tests.api_harness import BACKENDS, ApiHarness, module_platform

INSTRUMENTS = "/api/v1/instruments"
REDIS_URL = os.environ.get("SIGNALFACTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_limiter(limits: dict[str, str]) -> KeyRateLimiter:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc}); CI=true requires it")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc})")
    # A namespace per test run, so counters of earlier runs (same key ids) never leak in.
    return KeyRateLimiter(REDIS_URL, limits_by_tier=limits,
                          namespace=f"sftest-{uuid.uuid4().hex[:8]}")


shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture(params=["memory", "redis"])
def api(request: pytest.FixtureRequest, shared_platform: Any) -> Iterator[ApiHarness]:
    limits = {"free": "5/minute", "premium": "8/minute"}
    limiter = (_redis_limiter(limits) if request.param == "redis"
               else KeyRateLimiter(limits_by_tier=limits))
    with ApiHarness(shared_platform, limiter=limiter) as harness:
        yield harness


def _headers(response: Any) -> tuple[int, int, int]:
    h = response.headers
    return int(h["ratelimit-limit"]), int(h["ratelimit-remaining"]), int(h["ratelimit-reset"])


def test_headers_count_down_then_429_with_retry_after(api: ApiHarness) -> None:
    key = api.key(api.tenant("acme", tier="free"), "viewer")
    seen = []
    for _ in range(5):
        response = api.client.get(INSTRUMENTS, headers=api.auth(key))
        assert response.status_code == 200
        seen.append(_headers(response))
    assert [remaining for _, remaining, _ in seen] == [4, 3, 2, 1, 0]
    assert all(limit == 5 and 0 < reset <= 60 for limit, _, reset in seen)
    assert api.client.get(INSTRUMENTS, headers=api.auth(key)).headers[
        "ratelimit-policy"] == "5;w=60"
    refused = api.client.get(INSTRUMENTS, headers=api.auth(key))
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["type"].endswith("/rate-limited") and "5 requests per 60 s" in body["detail"]
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60
    limit, remaining, reset = _headers(refused)
    assert (limit, remaining) == (5, 0) and reset == retry_after


def test_one_key_exhausted_never_slows_another(api: ApiHarness) -> None:
    acme = api.tenant("acme", tier="free")
    key_a, key_b = api.key(acme, "viewer"), api.key(acme, "viewer")
    other_tenant_key = api.key(api.tenant("globex", tier="free"), "viewer")
    for _ in range(5):
        api.client.get(INSTRUMENTS, headers=api.auth(key_a))
    for _ in range(3):
        assert api.client.get(INSTRUMENTS, headers=api.auth(key_a)).status_code == 429
    # Same tenant, other key; and another tenant: full budgets, untouched by key A.
    for key in (key_b, other_tenant_key):
        response = api.client.get(INSTRUMENTS, headers=api.auth(key))
        assert response.status_code == 200
        assert _headers(response)[:2] == (5, 4)


def test_limits_follow_the_tier(api: ApiHarness) -> None:
    key = api.key(api.tenant("acme", tier="premium"), "viewer")
    statuses = [api.client.get(INSTRUMENTS, headers=api.auth(key)).status_code
                for _ in range(9)]
    assert statuses == [200] * 8 + [429]


def test_unauthenticated_and_open_responses_carry_no_rate_limit_headers(
        api: ApiHarness) -> None:
    for response in (api.client.get(INSTRUMENTS), api.client.get("/livez")):
        assert "ratelimit-limit" not in response.headers
    # Bad keys are refused by authentication and never consume anyone's budget.
    key = api.key(api.tenant("acme", tier="free"), "viewer")
    for _ in range(10):
        assert api.client.get(INSTRUMENTS,
                              headers=api.auth(key[:-1] + "!")).status_code == 401
    assert _headers(api.client.get(INSTRUMENTS, headers=api.auth(key)))[1] == 4


def test_errors_after_authentication_still_carry_the_headers(api: ApiHarness) -> None:
    key = api.key(api.tenant("acme", tier="free"), "viewer")
    refused = api.client.get("/api/v1/keys", headers=api.auth(key))  # needs admin
    assert refused.status_code == 403
    assert _headers(refused)[:2] == (5, 4)
    invalid = api.client.get(INSTRUMENTS, params={"limit": 0}, headers=api.auth(key))
    assert invalid.status_code == 422 and _headers(invalid)[1] == 3


def test_default_limiter_uses_redis_when_configured() -> None:
    limiter = build_rate_limiter(Settings(redis_url=REDIS_URL))
    assert type(limiter.storage).__name__ == "RedisStorage"
    assert type(build_rate_limiter(Settings()).storage).__name__ == "MemoryWindows"


def test_storage_outage_serves_rather_than_refusing_everyone(shared_platform: Any) -> None:
    # Nothing listens on port 1: every Redis call fails; requests must still be served.
    limiter = KeyRateLimiter("redis://127.0.0.1:1/0", limits_by_tier={"free": "1/minute"})
    with ApiHarness(shared_platform, limiter=limiter) as harness:
        key = harness.key(harness.tenant("acme"), "viewer")
        for _ in range(3):
            assert harness.client.get(INSTRUMENTS,
                                      headers=harness.auth(key)).status_code == 200


def test_memory_windows_move_as_limits_moving_window_does() -> None:
    # The same hits through the library's moving window over its memory storage and
    # through MemoryWindows: the same decisions, counts and window starts.
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    from signalfactory.adapters.rate_limits import MemoryWindows

    item = parse("3/second")
    library, ours = MovingWindowRateLimiter(MemoryStorage()), MemoryWindows()
    outcomes: list[tuple[bool, int]] = []
    for pause in (0.0, 0.0, 0.0, 0.0, 0.4, 0.7, 0.0, 0.0, 1.1):
        time.sleep(pause)
        allowed = library.hit(item, "k")
        start, remaining = library.get_window_stats(item, "k")
        mine = ours.hit(item.key_for("k"), item.amount, int(item.get_expiry()))
        assert mine[0] == allowed and item.amount - mine[2] == remaining
        assert abs(mine[1] + item.get_expiry() - start) < 0.05
        outcomes.append((allowed, remaining))
    # refused on the fourth hit; room again once the first hits left the window
    assert outcomes[3] == (False, 0) and outcomes[5][0] and outcomes[-1] == (True, 2)
