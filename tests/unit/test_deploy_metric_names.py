"""Alert rules and dashboards query only the metrics the application exports.

A dashboard panel or alert on a misspelt metric shows "no data" or never fires, and nothing
else would notice. The list below is the contract with the application's /metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))

HISTOGRAMS = {
    "http_request_duration_seconds",
    "signalfactory_job_duration_seconds",
    "backtest_duration_seconds",
    "signalfactory_signal_latency_seconds",
    "delivery_attempt_duration_seconds",
    "delivery_lag_seconds",
    "signalfactory_trading_order_seconds",
    "signalfactory_exchange_request_seconds",
}
SERIES = {
    "signalfactory_ready",
    "signalfactory_jobs_queued",
    "signalfactory_jobs_running",
    "signalfactory_jobs_total",
    "signalfactory_dead_letter_jobs",
    "signalfactory_job_worker_losses_total",
    "logic_executions_total",
    "signalfactory_signals_produced_total",
    "signalfactory_market_data_last_bar_timestamp_seconds",
    "signalfactory_market_data_max_staleness_seconds",
    "signalfactory_collector_breaker_open",
    "backup_last_success_timestamp_seconds",
    "signalfactory_backup_rpo_seconds",
    "signalfactory_backup_size_bytes",
    "signalfactory_db_connections_in_use",
    "signalfactory_db_connections_max",
    "signalfactory_read_only",
    "deliveries_total",
    "signalfactory_delivery_queue_depth",
    "signalfactory_delivery_dead_letter",
    "signalfactory_trading_orders_total",
    "signalfactory_trading_open_positions",
    "signalfactory_trading_exposure",
    "signalfactory_trading_equity",
    "signalfactory_trading_pnl",
    "signalfactory_trading_daily_loss_ratio",
    "signalfactory_trading_state",
    "signalfactory_trading_kill_switch_engaged",
    "signalfactory_trading_reconciliation_mismatches_total",
    "signalfactory_trading_reconciliations_total",
    "signalfactory_trading_read_only",
    "signalfactory_exchange_errors_total",
    "signalfactory_api_refusals_by_key_total",
    "signalfactory_database_size_bytes",
    "signalfactory_database_size_limit_bytes",
    "signalfactory_anomaly_score",
    "up",
}
#: exported by kube-state-metrics, cAdvisor (kubelet) and the node exporter, not by the app
EXTERNAL = {
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_resource_limits",
    "container_memory_working_set_bytes",
    "node_filesystem_avail_bytes",
}
#: recording rules of deploy/prometheus/rules.yml (Prometheus computes them, not the app)
RECORDED = {
    "signalfactory:http_request_duration_seconds:p95_5m",
    "signalfactory:http_request_duration_seconds:p95_vs_last_week",
}
KNOWN = SERIES | EXTERNAL | RECORDED | {
    f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
_OPERATORS = {"and", "or", "unless", "bool", "offset"}
_MODIFIERS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _OPERATORS | _MODIFIERS | {"inf", "nan", "Inf", "NaN"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions or keywords."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING):
        expr = pattern.sub(" ", expr)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def rule_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.stem}: {panel['title']}", target["expr"]))
    return found


def test_metric_names_finds_metrics_and_ignores_functions_labels_and_keywords() -> None:
    expr = (
        'sum by (kind) (rate(signalfactory_jobs_total{status=~"failed|dead"}[15m])) '
        "/ on (kind) group_left sum(rate(signalfactory_jobs_total[$__rate_interval])) > 0.1 "
        "and time() - max(backup_last_success_timestamp_seconds offset 5m) > 1e3"
    )
    assert metric_names(expr) == {
        "signalfactory_jobs_total",
        "backup_last_success_timestamp_seconds",
    }


def test_metric_names_reports_an_unknown_metric() -> None:
    names = metric_names("rate(http_requests_total[5m])")
    assert names == {"http_requests_total"}
    assert not names <= KNOWN


@pytest.mark.parametrize(("where", "expr"), rule_expressions(), ids=lambda v: str(v)[:60])
def test_alert_rule_uses_only_exported_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: found no metric in {expr!r}"
    assert names <= KNOWN, f"{where}: unknown metrics {sorted(names - KNOWN)}"


@pytest.mark.parametrize(("where", "expr"), dashboard_expressions(), ids=lambda v: str(v)[:60])
def test_dashboard_panel_uses_only_exported_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: found no metric in {expr!r}"
    assert names <= KNOWN, f"{where}: unknown metrics {sorted(names - KNOWN)}"


def test_dashboards_cover_every_exported_metric() -> None:
    """Each metric the app exports is on some dashboard, or nobody would look at it."""
    used = set().union(*(metric_names(expr) for _, expr in dashboard_expressions()))
    bases = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    missing = (SERIES | HISTOGRAMS) - bases - used
    assert not missing, f"metrics on no dashboard: {sorted(missing)}"


def test_every_known_metric_is_defined_by_the_application() -> None:
    """The list above must not drift from what observability/metrics.py actually registers."""
    from prometheus_client import REGISTRY

    import signalfactory.observability.metrics  # noqa: F401  (registers the metrics)

    # prometheus_client has no public list of the names a collector exports; a labelled metric
    # without children yields no samples from collect().
    registered = {name for names in REGISTRY._collector_to_names.values() for name in names}
    exported_by_prometheus = {"up"} | EXTERNAL | RECORDED
    missing = KNOWN - registered - exported_by_prometheus
    assert not missing, f"not defined in the application: {sorted(missing)}"
