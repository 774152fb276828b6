"""deploy/compose.yaml: the services, their commands, healthchecks, secrets and mounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]

APP_COMMANDS = {
    "api": ["serve", "--host", "0.0.0.0", "--port", "8000"],  # noqa: S104 - inside a container
    "worker": ["worker", "--queues", "realtime,default", "--metrics-port", "9100",
               "--metrics-host", "0.0.0.0"],  # noqa: S104
    "worker-bulk": ["worker", "--queues", "bulk", "--delivery-concurrency", "0",
                    "--metrics-port", "9100", "--metrics-host", "0.0.0.0"],  # noqa: S104
    "beat": ["beat"],
    "migrate": ["init"],
}
HEALTHCHECKED = ["api", "postgres", "redis", "prometheus", "alertmanager", "grafana"]
# setting suffix -> compose secret holding it
APP_SECRETS = {
    "DATABASE_PASSWORD": "postgres_password",
    "BACKUP_KEY": "backup_key",
    "ARCHIVE_SIGNING_KEY": "archive_signing_key",
}
SECRET_NAME = re.compile(r"SECRET|KEY|PASSWORD|PASSWD|TOKEN|CREDENTIAL", re.I)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_all_services_exist() -> None:
    expected = {"api", "worker", "beat", "migrate", "postgres", "redis"}
    expected |= {"prometheus", "alertmanager", "grafana"}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize(("name", "command"), APP_COMMANDS.items())
def test_app_service_runs_its_command_from_the_repository_image(
    name: str, command: list[str]
) -> None:
    service = SERVICES[name]
    assert service["command"] == command
    build = service["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", ["api", "worker", "worker-bulk", "beat"])
def test_app_services_wait_for_a_successful_migration(name: str) -> None:
    depends = SERVICES[name]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", HEALTHCHECKED)
def test_long_running_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert not check.get("disable")
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check["interval"] and check["retries"]


def test_api_healthcheck_probes_livez() -> None:
    assert any("/livez" in part for part in SERVICES["api"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["worker", "beat", "migrate"])
def test_services_without_http_disable_the_image_http_healthcheck(name: str) -> None:
    # The image's HEALTHCHECK calls /livez; these processes serve no HTTP, so it would mark
    # them unhealthy forever.
    assert SERVICES[name]["healthcheck"] == {"disable": True}


@pytest.mark.parametrize("name", APP_COMMANDS)
def test_app_service_reads_secrets_from_files(name: str) -> None:
    service = SERVICES[name]
    assert set(service["secrets"]) >= set(APP_SECRETS.values())
    env = environment(service)
    for setting, secret in APP_SECRETS.items():
        assert env[f"SIGNALFACTORY_{setting}_FILE"] == f"/run/secrets/{secret}"
    # The URL names host, user and database; the password is only in the secret file.
    url = urlparse(env["SIGNALFACTORY_DATABASE_URL"])
    assert url.hostname == "postgres" and url.password is None
    postgres_env = environment(SERVICES["postgres"])
    assert postgres_env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert url.username == postgres_env["POSTGRES_USER"]


@pytest.mark.parametrize("name", list(SERVICES))
def test_no_service_has_a_secret_value_in_its_environment(name: str) -> None:
    for key, value in environment(SERVICES[name]).items():
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            pytest.fail(f"{name}: {key}={value!r} puts a secret in the compose file")
    for key, value in environment(SERVICES[name]).items():
        if key.endswith("_FILE"):
            mounted = {f"/run/secrets/{s}" for s in SERVICES[name].get("secrets", [])}
            assert value in mounted, f"{name}: {key} points at a file that is not mounted"


def test_secret_files_live_in_the_git_ignored_secrets_directory() -> None:
    ignore = (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignore
    for name, secret in COMPOSE["secrets"].items():
        path = (DEPLOY / secret["file"]).resolve()
        assert path.parent == DEPLOY / "secrets", name


@pytest.mark.parametrize("name", APP_COMMANDS)
def test_app_containers_are_hardened(name: str) -> None:
    service = SERVICES[name]
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert "app-data:/var/lib/signalfactory" in service["volumes"]
    assert environment(service)["SIGNALFACTORY_HOME"] == "/var/lib/signalfactory"


def test_bind_mount_sources_exist_and_named_volumes_are_declared() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
            else:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} undeclared"


def test_prometheus_scrapes_the_api_service_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "signalfactory-api"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in SERVICES
    assert port == SERVICES[host]["command"][SERVICES[host]["command"].index("--port") + 1]
    assert job["metrics_path"] == "/metrics"
    alertmanager = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    assert urlparse(f"//{alertmanager}").hostname in SERVICES


def test_prometheus_and_alertmanager_configs_are_mounted_where_they_are_read() -> None:
    prometheus = SERVICES["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    alertmanager = SERVICES["alertmanager"]
    assert "./alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "alertmanager_slack_webhook" in alertmanager["secrets"]


def test_prometheus_scrapes_every_worker_on_its_metrics_port() -> None:
    command = SERVICES["worker"]["command"]
    port = int(command[command.index("--metrics-port") + 1])
    assert "ports" not in SERVICES["worker"], "metrics stay on the compose network"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "signalfactory-worker"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["worker", "worker-bulk"] and discovery["port"] == port
    bulk = SERVICES["worker-bulk"]["command"]
    assert int(bulk[bulk.index("--metrics-port") + 1]) == port
