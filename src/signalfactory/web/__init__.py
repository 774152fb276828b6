"""The dashboard: server-rendered pages and their static assets, served by the API process.

``mount_dashboard(app)`` (web/app.py) adds the pages at ``/`` and the assets at ``/static``.
Pages read through the same services the API uses; every change a page makes goes through
the JSON API itself (signed in by the session cookie), so the API's role checks, quotas and
errors are the only ones.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).with_name("static")
TEMPLATES_DIR = Path(__file__).with_name("templates")
LIGHTWEIGHT_CHARTS_JS = STATIC_DIR / "vendor" / "lightweight-charts.standalone.production.js"
