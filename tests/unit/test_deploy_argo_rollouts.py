"""Argo Rollouts manifests (deploy/k8s/rollouts): offline schema validation, the canary's
abort thresholds, and the wiring between the Rollout, its AnalysisTemplate, the API Deployment
and the runbook.

The schemas are a strict subset of the argoproj.io/v1alpha1 API (tests/fixtures/argo_rollouts,
see its README for where the field lists come from)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.test_deploy_metric_names import KNOWN, metric_names
from tests.unit.test_deploy_prometheus import RUNBOOK, require_tool, run_tool, runbook_anchors

ROOT = Path(__file__).resolve().parents[2]
ROLLOUTS = ROOT / "deploy" / "k8s" / "rollouts"
FIXTURES = ROOT / "tests" / "fixtures" / "argo_rollouts"
SCHEMAS = {"Rollout": "rollout.schema.json", "AnalysisTemplate": "analysistemplate.schema.json"}
API_FIELDS: dict[str, list[str]] = json.loads((FIXTURES / "api-fields.json").read_text())["fields"]

# Where each API type sits in the schemas, to check the subset against the published fields.
TYPE_AT = {
    "Rollout": {
        "spec": "RolloutSpec",
        "spec.analysis": "AnalysisRunStrategy",
        "spec.workloadRef": "ObjectRef",
        "spec.strategy": "RolloutStrategy",
        "spec.strategy.canary": "CanaryStrategy",
        "spec.strategy.canary.analysis": "RolloutAnalysisBackground",
        "spec.strategy.canary.analysis.templates[]": "AnalysisTemplateRef",
        "spec.strategy.canary.analysis.args[]": "AnalysisRunArgument",
        "spec.strategy.canary.analysis.args[].valueFrom": "ArgumentValueFrom",
        "spec.strategy.canary.steps[]": "CanaryStep",
        "spec.strategy.canary.steps[].analysis": "RolloutAnalysis",
        "spec.strategy.canary.steps[].pause": "RolloutPause",
        "spec.strategy.canary.steps[].setCanaryScale": "SetCanaryScale",
    },
    "AnalysisTemplate": {
        "spec": "AnalysisTemplateSpec",
        "spec.args[]": "Argument",
        "spec.args[].valueFrom": "ValueFrom",
        "spec.metrics[]": "Metric",
        "spec.metrics[].provider": "MetricProvider",
        "spec.metrics[].provider.prometheus": "PrometheusMetric",
    },
}


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(ROLLOUTS.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / SCHEMAS[kind]).read_text())
    return loaded


def one(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents() if doc["kind"] == kind]
    return found


def at(node: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return node


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_matches_the_argo_rollouts_schema(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema(doc["kind"])).validate(doc)


@pytest.mark.parametrize(("kind", "path", "typo"), [
    ("Rollout", ("spec", "strategy", "canary"), "stepz"),
    ("Rollout", ("spec", "workloadRef"), "scaledown"),
    ("AnalysisTemplate", ("spec", "metrics", 0), "failureCondtion"),
    ("AnalysisTemplate", ("spec", "metrics", 0, "provider", "prometheus"), "adress"),
])
def test_schema_refuses_a_misspelt_field(kind: str, path: tuple[str | int, ...],
                                         typo: str) -> None:
    doc = one(kind)
    node: Any = doc
    for key in path:
        node = node[key]
    node[typo] = node.get(typo, 1)
    with pytest.raises(jsonschema.ValidationError, match=typo):
        jsonschema.Draft202012Validator(schema(kind)).validate(doc)


@pytest.mark.parametrize(("kind", "path"), [(k, p) for k, paths in TYPE_AT.items()
                                            for p in paths])
def test_schema_allows_only_fields_the_argo_api_has(kind: str, path: str) -> None:
    allowed = set(at(schema(kind), path)["properties"])
    assert allowed <= set(API_FIELDS[TYPE_AT[kind][path]]), allowed - set(
        API_FIELDS[TYPE_AT[kind][path]])


def test_rollout_takes_over_the_api_deployment_and_the_hpa() -> None:
    rollout = one("Rollout")
    api = next(doc for doc in yaml.safe_load_all((ROOT / "deploy/k8s/api.yaml").read_text())
               if doc["kind"] == "Deployment")
    ref = rollout["spec"]["workloadRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1", "Deployment", api["metadata"]["name"])
    assert rollout["spec"]["selector"] == api["spec"]["selector"]
    assert rollout["metadata"]["namespace"] == api["metadata"]["namespace"]
    kustomization = yaml.safe_load((ROLLOUTS / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {"..", "analysis-template.yaml", "rollout.yaml"}
    (patch,) = kustomization["patches"]
    assert patch["target"] == {"kind": "HorizontalPodAutoscaler", "name": "signalfactory-api"}
    assert yaml.safe_load(patch["patch"])[0]["value"]["kind"] == "Rollout"


def test_canary_steps_and_analysis_from_the_first_step() -> None:
    canary = one("Rollout")["spec"]["strategy"]["canary"]
    assert [s.get("setWeight") for s in canary["steps"] if "setWeight" in s] == [20, 50]
    analysis = canary["analysis"]
    assert analysis["startingStep"] == 1
    template = one("AnalysisTemplate")
    assert [t["templateName"] for t in analysis["templates"]] == [template["metadata"]["name"]]
    # every template argument without a default is supplied by the Rollout
    needed = {a["name"] for a in template["spec"]["args"] if "value" not in a}
    assert needed <= {a["name"] for a in analysis["args"]}


def test_analysis_aborts_on_10_percent_errors_or_p95_over_10_seconds() -> None:
    metrics = {m["name"]: m for m in one("AnalysisTemplate")["spec"]["metrics"]}
    assert metrics["error-ratio"]["failureCondition"] == "result[0] > 0.1"
    assert metrics["p95-latency"]["failureCondition"] == "result[0] > 10"
    assert "histogram_quantile(0.95," in metrics["p95-latency"]["provider"]["prometheus"]["query"]
    for metric in metrics.values():
        assert metric["failureLimit"] == 0  # one bad measurement aborts
        # no successCondition: a quiet canary (NaN, no traffic) is not inconclusive
        assert "successCondition" not in metric


def _queries() -> list[str]:
    args = {"canary-hash": "abc123", "prometheus-address": "http://prometheus:9090"}
    found = []
    for metric in one("AnalysisTemplate")["spec"]["metrics"]:
        query = metric["provider"]["prometheus"]["query"]
        found.append(re.sub(r"\{\{args\.([\w-]+)\}\}", lambda m: args[m.group(1)], query))
    return found


def test_analysis_queries_are_valid_promql_on_exported_metrics(tmp_path: Path) -> None:
    queries = _queries()
    for query in queries:
        assert metric_names(query) <= KNOWN, metric_names(query) - KNOWN
    promtool = require_tool("promtool")
    rules = [{"record": f"canary:check:{i}", "expr": q} for i, q in enumerate(queries)]
    rule_file = tmp_path / "canary.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "canary", "rules": rules}]}))
    result = run_tool(promtool, "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_explains_promotion_and_abort() -> None:
    assert "canary-releases-with-argo-rollouts" in runbook_anchors()
    section = RUNBOOK.read_text().split("## Canary releases with Argo Rollouts", 1)[1]
    section = section.split("\n## ", 1)[0]
    for command in ("kubectl argo rollouts promote", "kubectl argo rollouts abort",
                    "kubectl argo rollouts get rollout", "kubectl apply -k deploy/k8s/rollouts"):
        assert command in section, command
