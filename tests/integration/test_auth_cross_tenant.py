"""No key of one tenant reads or writes another tenant's resources (every resource type)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api_harness import BACKENDS, ApiHarness, module_platform
from tests.cross_tenant import RESOURCES, TenantResource, assert_tenant_isolation

shared_platform = pytest.fixture(scope="module", params=BACKENDS)(module_platform)


@pytest.fixture
def api(shared_platform: Any) -> Iterator[ApiHarness]:
    with ApiHarness(shared_platform) as harness:
        yield harness


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_foreign_resources_are_invisible(api: ApiHarness, resource: TenantResource) -> None:
    assert_tenant_isolation(api, resource)


def test_the_isolation_check_catches_a_leak(api: ApiHarness) -> None:
    """The helper itself must fail when an endpoint ignores the tenant."""

    @api.app.get("/api/v1/test/leaky/{key_id}")
    def leaky(key_id: int) -> dict[str, int]:
        return {"id": key_id}

    from tests.cross_tenant import API_KEYS, Probe

    leaky_resource = TenantResource(kind="leaky", create=API_KEYS.create,
                                    state=API_KEYS.state,
                                    probes=(Probe("GET", "/api/v1/test/leaky/{id}"),))
    with pytest.raises(AssertionError):
        assert_tenant_isolation(api, leaky_resource)
