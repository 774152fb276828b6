"""Templates and static assets of the dashboard and reports."""

from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
LIGHTWEIGHT_CHARTS_JS = STATIC_DIR / "vendor" / "lightweight-charts.standalone.production.js"
