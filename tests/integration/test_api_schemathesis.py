"""Property-based API tests generated from the OpenAPI document (schemathesis).

Every documented operation is called with generated requests by an admin key of a seeded
tenant (sample bars, built-in and own strategies, a stored scan): the schema's examples,
schemathesis' coverage phase (boundary and invalid values, unexpected methods) and fuzzed
ones. Every check schemathesis has runs on every response (``ALL_CHECKS``): no 5xx, documented
status codes, content types, headers and bodies, schema-valid requests accepted and
schema-violating ones refused, 405 with ``Allow`` for undocumented methods, authentication
not ignored, deleted resources gone... Two of them run with the by-design exceptions listed
in ``BY_DESIGN`` (each explained there), narrowed to exactly those cases. Runs on SQLite and
on PostgreSQL (which refuses NUL characters and out-of-range integers that SQLite accepts).

Bounded and deterministic (8 fuzzed examples per operation besides the coverage phase,
derandomised) so it fits in ``make test``: about 60 s for both backends on 2 cores.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import Failure
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from signalfactory.api import create_app
from signalfactory.api.problems import PROBLEM_TYPE_BASE
from signalfactory.bootstrap import build_platform
from signalfactory.services.marketdata.sample import store_sample
from signalfactory.services.platform import Platform
from signalfactory.services.scans.scan import ScanRequest, run_scan
from signalfactory.services.strategies.catalog import add_strategy, ensure_builtins
from signalfactory.settings import Settings
from tests.api_harness import BACKENDS, DELIVERY_TEST_KEY, ApiHarness
from tests.conftest import create_pg_database, drop_pg_database

load_all_checks()

#: Checks that run with exceptions the platform means to have, and why.
BY_DESIGN = {
    "positive_data_acceptance": (
        "A schema-valid request may still be refused (422, problem type bad-input) by a "
        "domain rule JSON Schema cannot state: the grammar of a rule text, a name that must "
        "exist, an opaque cursor, a timeframe of the supported range, cross-field rules such "
        "as quiet hours that must not be empty. Excused only for those: a 422 of type "
        "'validation' (the server's own schema check) or a refusal by a rule the document "
        "does state (bad-symbol, bad-time) on schema-valid input still fails the test."),
    "negative_data_rejection": (
        "A query parameter given twice where the document declares one value: the server "
        "takes the last one (Starlette's convention, which browsers and proxies rely on) "
        "instead of refusing the request. Excused only for that coverage scenario "
        "(duplicate_parameter); any other schema-violating request that is accepted fails. "
        "A 413 (a body over the request-size limit, refused before it is parsed) is a "
        "rejection too, though schemathesis' list of expected statuses lacks it."),
}
#: The rules the document states (as patterns): a refusal by one of them is never excused.
DOCUMENTED_RULES = frozenset({"bad-symbol", "bad-time"})


def _problem(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def positive_data_acceptance_but_domain_rules(ctx: Any, response: Any, case: Any) -> Any:
    try:
        return positive_data_acceptance(ctx, response, case)
    except Failure:
        problem = _problem(response)
        if (response.status_code == 422 and problem.get("type") == PROBLEM_TYPE_BASE + "bad-input"
                and problem.get("rule") not in DOCUMENTED_RULES):
            return None
        raise


def negative_data_rejection_but_duplicate_parameters(ctx: Any, response: Any,
                                                     case: Any) -> Any:
    data = case.meta.phase.data if case.meta is not None else None
    if (isinstance(data, CoveragePhaseData)
            and data.scenario == CoverageScenario.DUPLICATE_PARAMETER):
        return None
    # The fuzzing phase repeats query parameters too (``?tag=a&tag=b``): the same by-design
    # case (the server takes the last value), met outside the coverage phase.
    if any(isinstance(value, list) for value in (case.query or {}).values()):
        return None
    # A generated body past the 1 MiB limit (met in some test orders only, a 4.8 MB source)
    # is refused unread: a problem with status 413, not a schemathesis-listed status.
    if response.status_code == 413 and _problem(response).get("status") == 413:
        return None
    return negative_data_rejection(ctx, response, case)


_WRAPPED: dict[Callable[..., Any], Callable[..., Any]] = {
    positive_data_acceptance: positive_data_acceptance_but_domain_rules,
    negative_data_rejection: negative_data_rejection_but_duplicate_parameters,
}
#: every check schemathesis registers, the by-design ones in their narrowed form
ALL_CHECKS = [_WRAPPED.get(check, check) for check in CHECKS.get_all()]


def test_every_check_schemathesis_has_runs() -> None:
    names = {check.__name__ for check in CHECKS.get_all()}
    assert len(names) >= 14 and "positive_data_acceptance" in names
    assert set(BY_DESIGN) <= names
    run = {check.__name__.split("_but_")[0] for check in ALL_CHECKS}
    assert run == names


MAX_EXAMPLES = 8
RULE = ("entry: crosses_above(sma(close, 5), sma(close, 20))\n"
        "exit: crosses_below(sma(close, 5), sma(close, 20))")

# The document comes from an app that is never started (no engine, no I/O), so pytest can
# collect one test per operation; requests go in-process to the seeded app of the fixture.
# (schemathesis' lazy ``pytest.from_fixture`` loader does not work with pytest 9.)
# The live stream is excluded: SSE answers never end (a generated request would hang until a
# timeout), and WebSocket routes are not in an OpenAPI document at all. The stream's tests
# cover its handshake, filters and refusals.
schema = schemathesis.openapi.from_dict(create_app().openapi()).exclude(
    path_regex=r"^/api/v1/stream/")


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiHarness, str]]:
    home = tmp_path_factory.mktemp("schemathesis")
    url = (f"sqlite:///{home / 'sf.db'}" if request.param == "sqlite"
           else create_pg_database())
    platform: Platform = build_platform(Settings(home=home / "home", database_url=url,
                                                 bar_store="columnar",
                                                 delivery_key=DELIVERY_TEST_KEY),
                                        migrate_db=True)
    try:
        platform.bar_subscribers.clear()  # no live evaluation while seeding
        store_sample(platform, symbols=6, bars=260, seed=5)
        # Not entered: schemathesis starts the app's lifespan itself on the first call.
        api = ApiHarness(platform)
        tenant = api.tenant("fuzz", tier="enterprise")
        key = api.key(tenant, "admin")
        with platform.database.write() as uow:
            ensure_builtins(uow)
            add_strategy(uow, tenant, "fuzz_cross", rule_text=RULE)
        run_scan(platform, ScanRequest(tenant_id=tenant, strategy="sma_cross", top=5))
        yield api, key
    finally:
        platform.close()
        if request.param != "sqlite":
            drop_pg_database(url)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any,
                                              seeded: tuple[ApiHarness, str]) -> None:
    api, key = seeded
    if case.method == "DELETE" and case.path.startswith("/api/v1/keys/"):
        # A generated id may name the seeded key: revoke from another tenant, with a fresh
        # key each time (which a generated id may name, too).
        key = api.key(api.tenant("revoker"), "admin")
    if case.headers and "Idempotency-Key" in case.headers:
        # Generated keys repeat across generated requests; a key reused with another request
        # is refused by design (422 idempotency-key-reused, tested in test_idempotency).
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    # The checks that send requests of their own (another method, no key...) use the
    # schema's app: the seeded one of this backend.
    case.operation.app = case.operation.schema.app = api.app
    case.call_and_validate(headers=ApiHarness.auth(key), checks=ALL_CHECKS)


# -- values the generator rarely hits with a bounded budget ------------------------------
# Each field of each operation in turn gets a value that databases refuse or that overflows
# dates and 64-bit integers; everything else of the request stays valid (the document's
# examples). The same checks apply.

HOSTILE = {"string": "a\x00b", "integer": 2**63 + 1, "number": 1e308,
           "date-time": "9999-12-31T00:00:00Z"}  # a whole day: "by the end of it" overflows


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _kind(document: dict[str, Any], node: dict[str, Any]) -> str | None:
    node = _resolve(document, node)
    for option in node.get("anyOf", [node]):
        option = _resolve(document, option)
        if option.get("format") == "date-time":
            return "date-time"
        if option.get("type") in HOSTILE:
            return str(option["type"])
    return None


def _example(param_or_prop: dict[str, Any], node: dict[str, Any]) -> Any:
    for source in (param_or_prop, node):
        if source.get("examples"):
            examples = source["examples"]
            return examples[0] if isinstance(examples, list) else next(iter(examples.values()))[
                "value"]
        if "example" in source:
            return source["example"]
        if "default" in source and source["default"] is not None:
            return source["default"]
    return None


def hostile_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, Case keyword arguments) for every operation and field."""
    document = create_app().openapi()
    cases: list[tuple[str, str, dict[str, Any]]] = []
    for path, operations in document["paths"].items():
        if path.startswith("/api/v1/stream/"):
            continue
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            base_path = {p["name"]: _example(p, p.get("schema", {})) or (
                1 if p.get("schema", {}).get("type") == "integer"
                else "6f1c2b9e-4d7a-4e0b-9a53-2f3c8d1e5b7a" if p.get("schema", {}).get(
                    "minLength") == 36 else "sma_cross")
                for p in params if p["in"] == "path"}
            body_schema = (operation.get("requestBody", {}).get("content", {})
                           .get("application/json", {}).get("schema"))
            base_body: dict[str, Any] | None = None
            properties: dict[str, Any] = {}
            if body_schema is not None:
                resolved = _resolve(document, body_schema)
                properties = resolved.get("properties", {})
                # Every field the document gives an example for, so that the request is
                # valid but for the one hostile value and gets past cross-field checks.
                base_body = {name: value for name, prop in properties.items()
                             if (value := _example(prop, _resolve(document, prop))) is not None
                             or name in resolved.get("required", [])}
            for p in params:
                kind = _kind(document, p.get("schema", {}))
                if kind is None or p["in"] not in ("path", "query"):
                    continue
                where = "path_parameters" if p["in"] == "path" else "query"
                values = dict(base_path) if where == "path_parameters" else {}
                values[p["name"]] = HOSTILE[kind]
                kwargs: dict[str, Any] = {"path_parameters": base_path, where: values}
                if base_body is not None:
                    kwargs.update(body=base_body, media_type="application/json")
                cases.append((method.upper(), path, kwargs))
            for name, prop in properties.items():
                kind = _kind(document, prop)
                if kind is not None and base_body is not None:
                    cases.append((method.upper(), path, {
                        "path_parameters": base_path, "media_type": "application/json",
                        "body": {**base_body, name: HOSTILE[kind]}}))
    return cases


def test_hostile_values_are_refused_not_500(seeded: tuple[ApiHarness, str]) -> None:
    api, key = seeded
    schema.app = api.app  # the checks that send probes of their own reach this backend's app
    cases = hostile_cases()
    assert len(cases) > 30, "the document should offer many fields to try"
    for method, path, kwargs in cases:
        case = schema[path][method].Case(**kwargs)
        response = case.call_and_validate(headers=ApiHarness.auth(key), checks=ALL_CHECKS,
                                          app=api.app)
        assert response.status_code < 500, (method, path, kwargs)
