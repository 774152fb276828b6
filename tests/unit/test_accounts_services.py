"""Accounts use cases against the in-memory platform: tenants, keys, quotas, idempotency."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from signalfactory.domain.accounts import Principal, QuotaExceededError
from signalfactory.domain.api_keys import digest, generate_key
from signalfactory.domain.errors import BadInputError, ConflictError, NotFoundError
from signalfactory.services.accounts import idempotency
from signalfactory.services.accounts import tenants as accounts
from signalfactory.services.accounts.quotas import enforce_quota, quota_usage
from signalfactory.services.platform import Platform
from signalfactory.services.streaming.subscriptions import add_subscription
from signalfactory.testing import FixedClock, InMemoryDatabase, memory_platform


@pytest.fixture
def platform() -> Platform:
    return memory_platform(clock=FixedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC)))


def _state(platform: Platform) -> object:
    database = platform.database
    assert isinstance(database, InMemoryDatabase)
    return copy.deepcopy(database.state.__dict__)


def _principal(tenant_id: int, tier: str = "free") -> Principal:
    return Principal(tenant_id=tenant_id, tenant_name="t", tier=tier, role="trader",
                     key_id=None, key_prefix=None)


def _tenant(platform: Platform, name: str = "acme", tier: str = "free") -> int:
    with platform.database.write() as uow:
        return accounts.create_tenant(uow, name, tier).id


# -- tenants and keys ------------------------------------------------------------------------

def test_tenant_lifecycle_and_bad_input_leaves_state_unchanged(platform: Platform) -> None:
    acme = _tenant(platform, "  acme ")
    with platform.database.write() as uow:
        assert accounts.tenant_by_name(uow, "acme").tier == "free"
        assert accounts.set_tier(uow, "acme", "premium").tier == "premium"
    before = _state(platform)
    for bad in (lambda uow: accounts.create_tenant(uow, "acme"),
                lambda uow: accounts.create_tenant(uow, "x" * 101),
                lambda uow: accounts.create_tenant(uow, "globex", "platinum"),
                lambda uow: accounts.set_tier(uow, "acme", "gold"),
                lambda uow: accounts.set_tier(uow, "nobody", "free")):
        with pytest.raises(BadInputError), platform.database.write() as uow:
            bad(uow)
    assert _state(platform) == before
    with platform.database.read() as uow:
        listed = {t.name: t for t in accounts.list_tenants(uow)}
    assert listed["acme"].id == acme and listed["acme"].tier == "premium"
    assert listed["acme"].active_keys == 0
    with pytest.raises(ConflictError), platform.database.write() as uow:
        accounts.create_tenant(uow, "acme")


def test_keys_authenticate_until_revoked_and_record_use_once_a_minute(
        platform: Platform) -> None:
    acme = _tenant(platform)
    with platform.database.write() as uow:
        new, key_id = accounts.create_key(uow, acme, "trader", "ci", now=platform.clock.now())
    principal = accounts.authenticate(platform, new.secret)
    assert (principal.tenant_id, principal.role, principal.key_id) == (acme, "trader", key_id)
    assert principal.key_prefix == new.prefix and principal.tier == "free"
    with platform.database.read() as uow:
        (record,) = accounts.list_keys(uow, acme)
        assert uow.accounts.key_by_digest(digest(new.secret)) == record
    assert record.last_used_at == platform.clock.now() and record.status == "active"
    clock = platform.clock
    assert isinstance(clock, FixedClock)
    clock.advance(30)
    accounts.authenticate(platform, new.secret)
    with platform.database.read() as uow:
        assert accounts.list_keys(uow, acme)[0].last_used_at == record.last_used_at
    with platform.database.write() as uow:
        resolved = accounts.resolve_key(uow, new.secret)  # a whole key resolves by prefix
        assert resolved.id == key_id
        assert accounts.revoke_key(uow, key_id, now=clock.now())
        assert not accounts.revoke_key(uow, key_id, now=clock.now())
    with pytest.raises(accounts.KeyRefusedError) as refused:
        accounts.authenticate(platform, new.secret)
    assert refused.value.reason == "revoked_key"
    with pytest.raises(accounts.KeyRefusedError) as refused:  # well formed, never stored
        accounts.authenticate(platform, generate_key().secret)
    assert refused.value.reason == "unknown_key"


def test_resolve_key_refuses_bad_unknown_and_other_tenants_keys(platform: Platform) -> None:
    acme, globex = _tenant(platform, "acme"), _tenant(platform, "globex")
    with platform.database.write() as uow:
        _, key_id = accounts.create_key(uow, acme, "admin", now=platform.clock.now())
    before = _state(platform)
    with platform.database.write() as uow:
        with pytest.raises(BadInputError, match="neither a key id"):
            accounts.resolve_key(uow, "hello")
        with pytest.raises(NotFoundError):
            accounts.resolve_key(uow, str(key_id), tenant_id=globex)
        with pytest.raises(BadInputError, match="role"):
            accounts.create_key(uow, acme, "root", now=platform.clock.now())
    assert _state(platform) == before


# -- quotas -----------------------------------------------------------------------------------

def test_a_refused_daily_quota_leaves_the_counters_unchanged(platform: Platform) -> None:
    acme = _principal(_tenant(platform))
    now = platform.clock.now()
    for _ in range(10):
        with platform.database.write() as uow:
            enforce_quota(uow, acme, "backtests", now=now)
    before = _state(platform)
    with pytest.raises(QuotaExceededError) as refused, platform.database.write() as uow:
        enforce_quota(uow, acme, "backtests", now=now)
    assert refused.value.retry_after == 12 * 3600 and refused.value.used == 10
    assert _state(platform) == before
    # A request that fails after its quota check rolls the use back with it.
    with pytest.raises(BadInputError), platform.database.write() as uow:
        enforce_quota(uow, acme, "scans", now=now)
        raise BadInputError("the universe is empty")
    with platform.database.read() as uow:
        usage = quota_usage(uow, acme, now)
    assert (usage["backtests_today"].used, usage["scans_today"].used) == (10, 0)
    with platform.database.write() as uow:  # a new UTC day has fresh room
        enforce_quota(uow, acme, "backtests", now=now + timedelta(hours=12))


def test_subscription_quota_counts_what_the_tenant_holds(platform: Platform) -> None:
    tenant = _tenant(platform)
    free = _principal(tenant)
    for name in ("a", "b"):
        with platform.database.write() as uow:
            enforce_quota(uow, free, "subscriptions")
            add_subscription(uow, tenant, name, symbols=["AAA"])
    before = _state(platform)
    with pytest.raises(QuotaExceededError) as refused, platform.database.write() as uow:
        enforce_quota(uow, free, "subscriptions")
        add_subscription(uow, tenant, "c")
    assert str(refused.value) == "free tier allows 2 subscriptions; delete one or upgrade"
    assert refused.value.retry_after is None and refused.value.used == 2
    assert _state(platform) == before
    with platform.database.write() as uow:  # another tenant has its own room
        enforce_quota(uow, _principal(_tenant(platform, "globex")), "subscriptions")
        enforce_quota(uow, _principal(tenant, "enterprise"), "subscriptions")
    with pytest.raises(ValueError, match="unknown quota kind"), \
            platform.database.write() as uow:
        enforce_quota(uow, free, "widgets")


# -- idempotency ------------------------------------------------------------------------------

def test_idempotency_claim_replay_mismatch_and_in_flight(platform: Platform) -> None:
    acme = _tenant(platform)
    first = idempotency.claim(platform, acme, "k1", "POST", "/api/v1/x", "hash-a")
    assert first.outcome == "new" and first.record_id is not None
    assert idempotency.claim(platform, acme, "k1", "POST", "/api/v1/x", "hash-a"
                             ).outcome == "in_flight"
    idempotency.complete(platform, first.record_id, 201, [("content-type", "json")], b"{}")
    replay = idempotency.claim(platform, acme, "k1", "POST", "/api/v1/x", "hash-a")
    assert replay.outcome == "replay" and replay.response is not None
    assert (replay.response.status_code, replay.response.headers, replay.response.body) == (
        201, (("content-type", "json"),), b"{}")
    assert idempotency.claim(platform, acme, "k1", "POST", "/api/v1/x", "hash-b"
                             ).outcome == "mismatch"
    # Keys belong to a tenant: another tenant's identical key runs.
    globex = _tenant(platform, "globex")
    assert idempotency.claim(platform, globex, "k1", "POST", "/api/v1/x", "hash-b"
                             ).outcome == "new"


def test_idempotency_release_takeover_and_expiry(platform: Platform) -> None:
    acme = _tenant(platform)
    clock = platform.clock
    assert isinstance(clock, FixedClock)
    claim = idempotency.claim(platform, acme, "k", "POST", "/p", "h")
    assert claim.record_id is not None
    idempotency.release(platform, claim.record_id)  # e.g. the request was a 422
    again = idempotency.claim(platform, acme, "k", "POST", "/p", "h")
    assert again.outcome == "new" and again.record_id != claim.record_id
    clock.advance(minutes=6)  # its process died: a retry takes the claim over
    taken = idempotency.claim(platform, acme, "k", "POST", "/p", "h")
    assert (taken.outcome, taken.record_id) == ("new", again.record_id)
    assert taken.record_id is not None
    idempotency.complete(platform, taken.record_id, 200, [], b"ok")
    assert idempotency.purge_expired(platform) == 0
    clock.advance(hours=24)
    assert idempotency.claim(platform, acme, "k", "POST", "/p", "other").outcome == "new"
    clock.advance(hours=25)
    assert idempotency.purge_expired(platform) == 1
