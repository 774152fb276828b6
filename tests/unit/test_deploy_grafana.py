"""Grafana dashboards parse, use the provisioned datasource, and are mounted where provisioning
looks for them in deploy/compose.yaml."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml"))
PROVIDERS = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yaml"))


def load_dashboard(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(path.read_text()))


def compose_mounts(service: str) -> dict[str, PurePosixPath]:
    """Container target of each bind mount of a compose service, keyed by repo-relative source."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = {}
    for volume in compose["services"][service]["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            resolved = (DEPLOY / source).resolve().relative_to(ROOT)
            mounts[resolved.as_posix()] = PurePosixPath(target)
    return mounts


def container_path(repo_path: Path, mounts: dict[str, PurePosixPath]) -> PurePosixPath | None:
    """Where a repository file appears inside the container, through the bind mounts."""
    relative = repo_path.resolve().relative_to(ROOT).as_posix()
    for source, target in mounts.items():
        if relative == source or relative.startswith(source + "/"):
            return target / relative[len(source) :].lstrip("/")
    return None


def provisioned_datasource_uids() -> set[str]:
    return {
        source["uid"]
        for path in DATASOURCES
        for source in yaml.safe_load(path.read_text())["datasources"]
    }


def test_dashboards_cover_api_jobs_signals_freshness_backups_and_deliveries() -> None:
    titles = " ".join(load_dashboard(p)["title"].lower() for p in DASHBOARDS)
    for topic in ("api", "jobs", "signals", "freshness", "backups", "deliveries", "trading"):
        assert topic in titles


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique within a dashboard"
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip()
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{panel['title']!r} overflows"


def test_dashboard_uids_are_unique() -> None:
    uids = [load_dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_uses_the_provisioned_datasource(path: Path) -> None:
    uids = provisioned_datasource_uids()
    for panel in load_dashboard(path)["panels"]:
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids


def test_datasource_points_at_the_compose_prometheus_service() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for path in DATASOURCES:
        for source in yaml.safe_load(path.read_text())["datasources"]:
            url = urlparse(source["url"])
            assert url.hostname in compose["services"]
            assert url.port == 9090


def test_provisioning_directory_is_mounted_where_grafana_reads_it() -> None:
    mounts = compose_mounts("grafana")
    for path in [*DATASOURCES, *PROVIDERS]:
        target = container_path(path, mounts)
        assert target is not None, f"{path} is not mounted into grafana"
        assert target.parts[:4] == ("/", "etc", "grafana", "provisioning")


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    mounts = compose_mounts("grafana")
    for provider_file in PROVIDERS:
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            provider_path = PurePosixPath(provider["options"]["path"])
            for dashboard in DASHBOARDS:
                assert container_path(dashboard, mounts) == provider_path / dashboard.name


def test_container_path_maps_through_mounts() -> None:
    mounts = {"deploy/grafana/dashboards": PurePosixPath("/dash")}
    inside = container_path(ROOT / "deploy/grafana/dashboards/x.json", mounts)
    assert inside == PurePosixPath("/dash/x.json")
    assert container_path(ROOT / "deploy/compose.yaml", mounts) is None
