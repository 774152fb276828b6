"""Alert rules: promtool checks and unit tests, rule metadata, runbook anchors, Alertmanager.

promtool comes with Debian's `prometheus` package. Without it these tests skip, except under
CI=true, where a missing promtool is a broken build rather than a reason to skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "operations.md"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))

# The alerts the operations issue asks for, by what they watch.
REQUIRED_ALERTS = {
    "SignalFactoryHighErrorRate",  # 5xx > 5 % for 5 min
    "SignalFactorySlowResponses",  # p95 > 1 s
    "SignalFactoryInstanceDown",
    "SignalFactoryNotReady",
    "SignalFactoryReadOnly",  # writes refused (primary unreachable or operator switch)
    "SignalFactoryJobBacklogGrowing",
    "SignalFactoryJobsFailing",
    "SignalFactoryMarketDataStale",
    "SignalFactoryCollectorCircuitOpen",  # a source's breaker refusing runs for 15 min
    "SignalFactoryBackupTooOld",
    "SignalFactoryDeadLetterBacklog",
    "SignalFactoryJobsDying",  # a job moved to the dead letter, per kind
    "SignalFactoryJobWorkersLost",  # workers killed mid-job (not counted as failures)
    "SignalFactoryScheduledOpsFailed",  # backup, backup prune, archive, data prune failed
    "SignalFactoryDatabaseConnectionsHigh",
    "SignalFactoryDeliverySuccessRateLow",  # a channel under 95 % over 10 min
    "SignalFactoryDeliveryDeadLetterGrowing",  # DLQ > 0 and growing over 30 min
    "SignalFactoryDeliveryLagHigh",  # real-time lag p95 > 10 s
    "SignalFactoryKillSwitchEngaged",  # trading: a kill switch engaged or not yet resumed
    "SignalFactoryTradingDailyLossNearLimit",  # daily loss above 80 % of its limit
    "SignalFactoryExchangeErrorRate",  # > 10 % of exchange requests fail for 5 min
    "SignalFactoryReconciliationMismatch",  # exchange and database disagree
    "SignalFactoryCrashLooping",  # >= 3 restarts in 15 min (kube-state-metrics)
    "SignalFactoryMemoryNearLimit",  # working set > 90 % of the limit (cAdvisor)
    "SignalFactoryRefusedRequestSurge",  # > 100 refusals in 10 min per tenant and key
    "SignalFactoryDiskFullSoon",  # predict_linear: filesystem full within 4 h
    "SignalFactoryDatabaseFullSoon",  # predict_linear: database at its size limit within 4 h
    "SignalFactoryAnomaly",  # a key figure far from its hour-of-week baseline; p95 vs last week
}


def require_tool(name: str, package: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} not on PATH (install Debian's `{package}` package)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return path


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {github_anchor(h) for h in headings}


# --- promtool ------------------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_rule_file() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load(RULES.read_text())
    every_rule = [rule for group in doc["groups"] for rule in group["rules"]]  # and recordings
    assert f"SUCCESS: {len(every_rule)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = run_tool(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_a_threshold_changes(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: loosening one must make them fail."""
    promtool = require_tool("promtool")
    original = RULES.read_text()
    loosened = original.replace("> 0.05", "> 0.5", 1)
    assert loosened != original
    (tmp_path / "rules.yml").write_text(loosened)
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for test_file in RULE_TESTS:
        (tests_dir / test_file.name).write_text(test_file.read_text())
    result = run_tool(promtool, "test", "rules", *map(str, sorted(tests_dir.glob("*.yml"))))
    assert result.returncode != 0
    assert "SignalFactoryHighErrorRate" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "original", "changed"),
    [
        ("SignalFactoryDeliverySuccessRateLow", "< 0.95", "< 0.85"),
        ("SignalFactoryDeliverySuccessRateLow", "< 0.95", "< 0.98"),
        ("SignalFactoryDeliveryLagHigh", " ) > 10", " ) > 60"),
        ("SignalFactoryDeliveryDeadLetterGrowing", "[30m])) > 0", "[30m])) >= 0"),
    ],
    ids=lambda v: str(v),
)
def test_delivery_promtool_tests_pin_each_threshold(
    tmp_path: Path, alert: str, original: str, changed: str
) -> None:
    """Moving a delivery threshold either way makes a firing or a quiet case fail."""
    promtool = require_tool("promtool")
    rules = RULES.read_text()
    assert rules.count(original) == 1
    (tmp_path / "rules.yml").write_text(rules.replace(original, changed))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    delivery_tests = PROM_DIR / "tests" / "delivery.yml"
    (tests_dir / delivery_tests.name).write_text(delivery_tests.read_text())
    result = run_tool(promtool, "test", "rules", str(tests_dir / delivery_tests.name))
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "original", "changed"),
    [
        ("SignalFactoryTradingDailyLossNearLimit", "_ratio) > 0.8", "_ratio) > 0.95"),
        ("SignalFactoryTradingDailyLossNearLimit", "_ratio) > 0.8", "_ratio) >= 0.8"),
        ("SignalFactoryExchangeErrorRate", "_count[5m]))\n            > 0.1",
         "_count[5m]))\n            > 0.25"),
        ("SignalFactoryExchangeErrorRate", "_count[5m]))\n            > 0.1",
         "_count[5m]))\n            > 0.05"),
        ("SignalFactoryExchangeErrorRate", '{kind!="rejected"}', ""),
        ("SignalFactoryKillSwitchEngaged", "_engaged) >= 1", "_engaged) >= 2"),
        ("SignalFactoryReconciliationMismatch", "mismatches_total[15m])) > 0",
         "mismatches_total[15m])) > 1"),
    ],
    ids=lambda v: str(v),
)
def test_trading_promtool_tests_pin_each_threshold(
    tmp_path: Path, alert: str, original: str, changed: str
) -> None:
    """Moving a trading threshold either way makes a firing or a quiet case fail."""
    promtool = require_tool("promtool")
    rules = RULES.read_text()
    assert rules.count(original) == 1
    (tmp_path / "rules.yml").write_text(rules.replace(original, changed))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    trading_tests = PROM_DIR / "tests" / "trading.yml"
    (tests_dir / trading_tests.name).write_text(trading_tests.read_text())
    result = run_tool(promtool, "test", "rules", str(tests_dir / trading_tests.name))
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("alert", "original", "changed"),
    [
        ("SignalFactoryCrashLooping", "[15m])) >= 3", "[15m])) >= 20"),
        ("SignalFactoryMemoryNearLimit", "            > 0.9\n", "            > 0.96\n"),
        ("SignalFactoryMemoryNearLimit", "            > 0.9\n", "            > 0.8\n"),
        ("SignalFactoryRefusedRequestSurge", "[10m])) > 100", "[10m])) > 300"),
        ("SignalFactoryRefusedRequestSurge", "[10m])) > 100", "[10m])) > 50"),
        ("SignalFactoryDiskFullSoon", "[6h], 4 * 3600) < 0", "[6h], 2 * 3600) < 0"),
        ("SignalFactoryDiskFullSoon", "[6h], 4 * 3600) < 0", "[6h], 9 * 3600) < 0"),
        ("SignalFactoryDatabaseFullSoon", "bytes[6h], 4 * 3600))", "bytes[6h], 2 * 3600))"),
        ("SignalFactoryDatabaseFullSoon", "bytes[6h], 4 * 3600))", "bytes[6h], 99 * 3600))"),
    ],
    ids=lambda v: str(v),
)
def test_platform_promtool_tests_pin_each_threshold(
    tmp_path: Path, alert: str, original: str, changed: str
) -> None:
    """Moving a platform threshold either way makes a firing or a quiet case fail."""
    promtool = require_tool("promtool")
    rules = RULES.read_text()
    assert rules.count(original) == 1
    (tmp_path / "rules.yml").write_text(rules.replace(original, changed))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    platform_tests = PROM_DIR / "tests" / "platform.yml"
    (tests_dir / platform_tests.name).write_text(platform_tests.read_text())
    result = run_tool(promtool, "test", "rules", str(tests_dir / platform_tests.name))
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("test_file", "original", "changed"),
    [
        ("anomaly.yml", "(signalfactory_anomaly_score) > 5", "(signalfactory_anomaly_score) > 8"),
        ("anomaly.yml", "(signalfactory_anomaly_score) > 5", "(signalfactory_anomaly_score) > 4"),
        ("anomaly_latency.yml", "p95_vs_last_week > 2)", "p95_vs_last_week > 30)"),
        ("anomaly_latency.yml", "p95_5m > 0.25)", "p95_5m > 0.2)"),
    ],
    ids=lambda v: str(v),
)
def test_anomaly_promtool_tests_pin_each_threshold(
    tmp_path: Path, test_file: str, original: str, changed: str
) -> None:
    """Moving an anomaly threshold either way makes a firing or a quiet case fail."""
    promtool = require_tool("promtool")
    rules = RULES.read_text()
    assert rules.count(original) == 1
    (tmp_path / "rules.yml").write_text(rules.replace(original, changed))
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    source = PROM_DIR / "tests" / test_file
    (tests_dir / test_file).write_text(source.read_text())
    result = run_tool(promtool, "test", "rules", str(tests_dir / test_file))
    assert result.returncode != 0
    assert "alertname: SignalFactoryAnomaly" in result.stdout + result.stderr


def test_anomaly_alert_threshold_is_the_domain_threshold() -> None:
    """The rule's score bound and the scan's are one number (domain/anomaly.py THRESHOLD)."""
    from signalfactory.domain.anomaly import THRESHOLD

    (rule,) = [r for r in alert_rules() if r["alert"] == "SignalFactoryAnomaly"]
    bound = re.search(r"\(signalfactory_anomaly_score\) > ([\d.]+)", rule["expr"])
    assert bound is not None and float(bound.group(1)) == THRESHOLD


def test_promtool_check_config_accepts_prometheus_yml() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "check", "config", str(PROM_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool has no bare expression checker, so each query becomes a recording rule."""
    promtool = require_tool("promtool")
    grafana_vars = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
    rules: list[dict[str, str]] = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in grafana_vars.items():
                    expr = expr.replace(var, value)
                rules.append({"record": f"dashboard:check:{len(rules)}", "expr": expr})
    assert rules
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_tool(promtool, "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


# --- rule metadata -------------------------------------------------------------------------


def test_all_required_alerts_exist_once() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert sorted(names) == sorted(set(names)), "duplicate alert names"
    assert set(names) == REQUIRED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_rule_has_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_runbook_url_points_at_an_existing_runbook_section(rule: dict[str, Any]) -> None:
    anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
    assert anchor in runbook_anchors()


def test_error_rate_rule_uses_5_percent_for_5_minutes() -> None:
    rule = next(r for r in alert_rules() if r["alert"] == "SignalFactoryHighErrorRate")
    assert rule["for"] == "5m"
    assert re.search(r">\s*0\.05\s*$", rule["expr"].strip())


def promtool_cases() -> dict[str, dict[str, int]]:
    """Per alert: how many test evaluations expect it firing and how many expect silence."""
    cases: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                counts = cases.setdefault(case["alertname"], {"firing": 0, "quiet": 0})
                counts["firing" if case.get("exp_alerts") else "quiet"] += 1
    return cases


@pytest.mark.parametrize("name", sorted(REQUIRED_ALERTS))
def test_every_alert_has_a_firing_and_a_not_firing_promtool_case(name: str) -> None:
    counts = promtool_cases().get(name, {"firing": 0, "quiet": 0})
    assert counts["firing"] >= 1, f"{name}: no promtool case expects it to fire"
    assert counts["quiet"] >= 1, f"{name}: no promtool case expects it to stay quiet"


def test_github_anchor_matches_github_rules() -> None:
    assert github_anchor("SignalFactoryHighErrorRate") == "signalfactoryhigherrorrate"
    assert github_anchor("RTO and RPO targets") == "rto-and-rpo-targets"
    assert github_anchor("Deploy with systemd") == "deploy-with-systemd"


# --- Alertmanager --------------------------------------------------------------------------


def test_alertmanager_routes_reference_defined_receivers_and_keep_secrets_in_files() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {route["receiver"] for route in routes if "receiver" in route} <= receivers
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack, "webhook URL must come from api_url_file"
            assert slack["api_url_file"].startswith("/run/secrets/")
    assert "runbook_url" in ALERTMANAGER.read_text()


def test_amtool_accepts_alertmanager_config() -> None:
    amtool = require_tool("amtool", "prometheus-alertmanager")
    result = run_tool(amtool, "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


# --- runbook structure -------------------------------------------------------------------


def test_runbook_has_the_operations_sections() -> None:
    anchors = runbook_anchors()
    for section in (
        "deploy-on-one-machine-with-make-up",
        "deploy-with-docker-compose",
        "deploy-on-kubernetes",
        "deploy-with-systemd",
        "upgrade-with-migrations",
        "scale-out",
        "backup-and-restore",
        "restore-procedure",
        "disaster-recovery-drill",
        "rto-and-rpo-targets",
        "rotating-secrets-and-keys",
        "backup-key",
        "archive-signing-key",
        "api-keys",
    ):
        assert section in anchors, section


def test_runbook_internal_links_resolve() -> None:
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert links
    assert set(links) <= runbook_anchors()
