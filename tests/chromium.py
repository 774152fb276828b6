"""Headless Chromium for tests that look at pages the way a person would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium_or_skip() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "headless Chromium is not installed (Debian package chromium; make tools)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def screenshot(url: str, out: Path, tmp: Path, size: str = "1200,1800",
               budget_ms: int = 8000) -> Path:
    binary = chromium_or_skip()
    subprocess.run([binary, *FLAGS, f"--user-data-dir={tmp / 'chrome-profile'}",
                    f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
                    f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)
    return out


def dump_dom(url: str, tmp: Path, budget_ms: int = 8000) -> str:
    binary = chromium_or_skip()
    result = subprocess.run([binary, *FLAGS, f"--user-data-dir={tmp / 'chrome-profile-dom'}",
                             f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                            check=True, capture_output=True, timeout=120, text=True)
    return result.stdout
