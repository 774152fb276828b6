"""/metrics: request latency by route template, data freshness per source, readiness."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from signalfactory.api import create_app
from signalfactory.bootstrap import build_platform
from tests.helpers import cli


def _value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_expose_freshness_latency_and_readiness(sf_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    assert cli("sample", "--symbols", "3", "--bars", "30").exit_code == 0
    csv = tmp_path / "ZZZ.csv"
    csv.write_text("date,open,high,low,close,volume\n2030-01-02,1,2,1,1.5,10\n"
                   "2030-01-03,1,2,1,1.5,10\n")
    assert cli("ingest", str(csv)).exit_code == 0
    with TestClient(create_app(build=build_platform)) as client:
        client.get("/readyz")
        client.get("/api/v1/instruments")
        text = client.get("/metrics").text
    sample_ts = _value(text, "signalfactory_market_data_last_bar_timestamp_seconds",
                       source="sample", timeframe="1d")
    files_ts = _value(text, "signalfactory_market_data_last_bar_timestamp_seconds",
                      source="files", timeframe="1d")
    assert sample_ts is not None and files_ts is not None
    assert files_ts == 1893628800.0  # 2030-01-03T00:00:00Z
    assert _value(text, "signalfactory_market_data_max_staleness_seconds", source="files",
                  timeframe="1d") == 3 * 86400 + 3 * 86400
    assert _value(text, "signalfactory_ready") == 1.0
    # Routes are templates, never raw paths: bounded cardinality.
    assert 'route="/api/v1/instruments"' in text and 'status="401"' in text
    assert "ZZZ" not in text and str(tmp_path) not in text
