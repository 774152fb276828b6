"""Kubernetes manifests: offline schema validation and the "restricted" Pod Security rules.

Schemas come from the kubernetes-validate package, which ships them, so no cluster and no
network are needed. Without the package these tests skip, except under CI=true.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# Oldest release we support (the native preStop `sleep` action is on by default from 1.30),
# and the newest the schemas know.
K8S_VERSIONS = ["1.30", "latest"]
NAMESPACE = "signalfactory"
APP_UID = 10001
SECRET_MOUNT = "/run/secrets/signalfactory"


def load_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in MANIFEST_FILES:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


DOCUMENTS = load_documents()


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    return found


def pod_template(document: dict[str, Any]) -> dict[str, Any] | None:
    kind = document["kind"]
    if kind == "Pod":
        return document
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return cast(dict[str, Any], document["spec"]["template"])
    if kind == "CronJob":
        return cast(dict[str, Any], document["spec"]["jobTemplate"]["spec"]["template"])
    return None


POD_TEMPLATES = [
    (f"{doc['kind']}/{doc['metadata']['name']}", template)
    for _, doc in DOCUMENTS
    if (template := pod_template(doc)) is not None
]


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *spec.get("initContainers", []),
        *spec.get("containers", []),
        *spec.get("ephemeralContainers", []),
    ]


# --- offline schema validation -------------------------------------------------------------


def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as module  # optional dev dependency
    except ImportError:
        message = "kubernetes-validate not installed (pip install kubernetes-validate)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return module


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    "document",
    [doc for _, doc in DOCUMENTS],
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in DOCUMENTS],
)
def test_manifest_matches_the_kubernetes_schema(document: dict[str, Any], version: str) -> None:
    validator = kubernetes_validate()
    if version == "latest":
        version = validator.utils.latest_version()
    # strict: unknown fields (typos such as livenessProb) are errors, not silently dropped.
    # A kind or apiVersion the release does not know raises SchemaNotFoundError: a failure.
    validator.validate(document, version, strict=True)


def test_schema_validation_rejects_a_misspelt_field() -> None:
    validator = kubernetes_validate()
    broken = copy.deepcopy(named("Deployment", "signalfactory-api"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["livenessProb"] = container.pop("livenessProbe")
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, "1.30", strict=True)


# --- Pod Security Standard "restricted" ------------------------------------------------------

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(template: dict[str, Any]) -> list[str]:
    """Violations of the Pod Security Standard "restricted" (which includes "baseline")."""
    spec = template["spec"]
    pod_sc = spec.get("securityContext", {})
    problems = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"{field} is true")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} uses {sorted(kinds)}")
    if pod_sc.get("windowsOptions", {}).get("hostProcess"):
        problems.append("hostProcess pod")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    pod_seccomp = pod_sc.get("seccompProfile", {}).get("type")
    if pod_seccomp not in {None, "RuntimeDefault", "Localhost"}:
        problems.append(f"pod seccompProfile {pod_seccomp}")
    for container in all_containers(spec):
        name = container["name"]
        sc = container.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot") is False or not (
            sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")
        ):
            problems.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", {}).get("type") or pod_seccomp
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount")
    return problems


def test_every_workload_has_a_pod_template() -> None:
    names = {name for name, _ in POD_TEMPLATES}
    assert {
        "Deployment/signalfactory-api",
        "Deployment/signalfactory-worker",
        "Deployment/signalfactory-beat",
        "Job/signalfactory-migrate",
    } <= names


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_pod_passes_restricted_pod_security(name: str, template: dict[str, Any]) -> None:
    assert restricted_violations(template) == []


def _first_container(template: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], template["spec"]["containers"][0])


BREAKAGES: dict[str, Callable[[dict[str, Any]], object]] = {
    "host network": lambda t: t["spec"].update(hostNetwork=True),
    "hostPath volume": lambda t: t["spec"]["volumes"].append(
        {"name": "h", "hostPath": {"path": "/"}}
    ),
    "privileged": lambda t: _first_container(t)["securityContext"].update(privileged=True),
    "privilege escalation": lambda t: _first_container(t)["securityContext"].pop(
        "allowPrivilegeEscalation"
    ),
    "root allowed": lambda t: (
        t["spec"]["securityContext"].pop("runAsNonRoot"),
        _first_container(t)["securityContext"].pop("runAsNonRoot"),
    ),
    "uid 0": lambda t: _first_container(t)["securityContext"].update(runAsUser=0),
    "no seccomp": lambda t: (
        t["spec"]["securityContext"].pop("seccompProfile"),
        _first_container(t)["securityContext"].pop("seccompProfile"),
    ),
    "unconfined seccomp": lambda t: _first_container(t)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "keeps capabilities": lambda t: _first_container(t)["securityContext"].update(capabilities={}),
    "adds NET_ADMIN": lambda t: _first_container(t)["securityContext"]["capabilities"].update(
        add=["NET_ADMIN"]
    ),
    "host port": lambda t: _first_container(t).update(ports=[{"containerPort": 1, "hostPort": 1}]),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_restricted_check_catches(breakage: str) -> None:
    template = copy.deepcopy(named("Deployment", "signalfactory-api")["spec"]["template"])
    BREAKAGES[breakage](template)
    assert restricted_violations(template)


# --- our own hardening and resources ------------------------------------------------------


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_pod_runs_as_app_user_on_a_read_only_root_with_writable_tmp_and_home(
    name: str, template: dict[str, Any]
) -> None:
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == APP_UID
    assert spec["securityContext"]["fsGroup"] == APP_UID
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    home = named("ConfigMap", "signalfactory-config")["data"]["SIGNALFACTORY_HOME"]
    for container in all_containers(spec):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] in empty_dirs
        assert mounts[home] in empty_dirs


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_every_container_has_cpu_and_memory_requests_and_limits(
    name: str, template: dict[str, Any]
) -> None:
    for container in all_containers(template["spec"]):
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), container["name"]


def test_api_probes_livez_for_liveness_and_readyz_for_readiness() -> None:
    container = _first_container(named("Deployment", "signalfactory-api")["spec"]["template"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 8000
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"


def test_api_rolls_out_without_losing_capacity() -> None:
    strategy = named("Deployment", "signalfactory-api")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_beat_runs_exactly_once() -> None:
    beat = named("Deployment", "signalfactory-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in objects("HorizontalPodAutoscaler")}
    assert "signalfactory-beat" not in targets


@pytest.mark.parametrize("name", ["signalfactory-api", "signalfactory-worker"])
def test_api_and_worker_autoscale(name: str) -> None:
    (hpa,) = [
        h
        for h in objects("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]
        == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    ]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    named("Deployment", name)


@pytest.mark.parametrize("deployment", objects("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_every_deployment_has_a_pdb_with_max_unavailable_1(deployment: dict[str, Any]) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    matching = [
        pdb
        for pdb in objects("PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(matching) == 1
    assert matching[0]["spec"]["maxUnavailable"] == 1
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_api_service_selects_api_pods_on_the_http_port() -> None:
    service = named("Service", "signalfactory-api")
    template = named("Deployment", "signalfactory-api")["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    port_names = {p["name"] for p in _first_container(template)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


# --- network policies --------------------------------------------------------------------


def policy_selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector: dict[str, str] = policy["spec"]["podSelector"].get("matchLabels", {})
    return selector.items() <= labels.items()


def test_default_deny_covers_every_pod_both_ways() -> None:
    deny = named("NetworkPolicy", "default-deny-all")
    assert deny["spec"]["podSelector"] == {}
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


@pytest.mark.parametrize("component", ["api", "worker", "beat", "migrate"])
def test_every_component_may_resolve_dns_and_reach_postgres_and_redis(component: str) -> None:
    labels = {"app.kubernetes.io/name": "signalfactory", "app.kubernetes.io/component": component}
    allowed = set()
    for policy in objects("NetworkPolicy"):
        if policy_selects(policy, labels):
            for rule in policy["spec"].get("egress", []):
                allowed |= {(p["protocol"], p["port"]) for p in rule.get("ports", [])}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 6379)} <= allowed


def test_ingress_reaches_the_api_on_8000_and_worker_metrics_on_9100_only() -> None:
    allowed = {"api": {("TCP", 8000)}, "worker": {("TCP", 9100)}}
    ingress_policies = [p for p in objects("NetworkPolicy") if p["spec"].get("ingress")]
    assert {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in ingress_policies} == set(allowed)
    for policy in ingress_policies:
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for rule in policy["spec"]["ingress"]:
            assert {(p["protocol"], p["port"]) for p in rule["ports"]} == allowed[component]
            if component == "worker":  # Prometheus only
                assert [s["namespaceSelector"]["matchLabels"] for s in rule["from"]] == [
                    {"kubernetes.io/metadata.name": "monitoring"}]


def test_scraped_pods_declare_the_port_their_process_serves_metrics_on() -> None:
    for name in ("signalfactory-api", "signalfactory-worker"):
        template = named("Deployment", name)["spec"]["template"]
        port = int(template["metadata"]["annotations"]["prometheus.io/port"])
        (container,) = template["spec"]["containers"]
        assert port in {p["containerPort"] for p in container["ports"]}
        args = container["args"]
        if "--metrics-port" in args:
            assert int(args[args.index("--metrics-port") + 1]) == port


# --- secrets and configuration -----------------------------------------------------------

SECRET_WORDS = ("SECRET", "KEY", "PASSWORD", "TOKEN")


def test_configmap_holds_paths_to_secret_files_never_secrets() -> None:
    data = named("ConfigMap", "signalfactory-config")["data"]
    example = named("Secret", "signalfactory-secrets")["stringData"]
    file_settings = {k: v for k, v in data.items() if k.endswith("_FILE")}
    assert {
        "SIGNALFACTORY_DATABASE_PASSWORD_FILE",
        "SIGNALFACTORY_BACKUP_KEY_FILE",
        "SIGNALFACTORY_ARCHIVE_SIGNING_KEY_FILE",
    } <= set(file_settings)
    for key in data:
        if any(word in key for word in SECRET_WORDS) and not key.endswith("_FILE"):
            pytest.fail(f"ConfigMap carries secret-looking {key}")
    assert urlparse(data["SIGNALFACTORY_DATABASE_URL"]).password is None
    for path in file_settings.values():
        directory, _, secret_key = path.rpartition("/")
        assert directory == SECRET_MOUNT
        assert secret_key in example


def test_secret_example_holds_only_placeholders_and_is_not_applied() -> None:
    secret = named("Secret", "signalfactory-secrets")
    for key, value in secret["stringData"].items():
        assert value.startswith("<") and value.endswith(">"), f"{key} looks like a real value"
    assert (
        "kubectl -n signalfactory create secret generic"
        in (K8S / "secret.example.yaml").read_text()
    )


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_pods_get_secrets_as_read_only_files(name: str, template: dict[str, Any]) -> None:
    spec = template["spec"]
    secret_volumes = {
        v["name"]
        for v in spec["volumes"]
        if v.get("secret", {}).get("secretName") == "signalfactory-secrets"
    }
    for container in all_containers(spec):
        mounts = [m for m in container["volumeMounts"] if m["name"] in secret_volumes]
        assert [(m["mountPath"], m.get("readOnly")) for m in mounts] == [(SECRET_MOUNT, True)]
        assert container["envFrom"] == [{"configMapRef": {"name": "signalfactory-config"}}]
        for env in container.get("env", []):
            if any(word in env["name"] for word in SECRET_WORDS):
                assert "value" not in env, f"{env['name']} set inline"


# --- namespace and kustomization ---------------------------------------------------------


def test_namespace_enforces_restricted_and_everything_lives_in_it() -> None:
    namespace = named("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for _, doc in DOCUMENTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_kustomization_applies_every_manifest_except_the_template_and_the_job() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    expected = {p.name for p in MANIFEST_FILES} - {"secret.example.yaml", "migrate-job.yaml"}
    assert set(kustomization["resources"]) == expected
    images = {c["image"].split(":")[0] for _, t in POD_TEMPLATES for c in all_containers(t["spec"])}
    assert images == {image["name"] for image in kustomization["images"]}
