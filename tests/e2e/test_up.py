"""`signalfactory up` as a user runs it: a real process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _printed_until(proc: subprocess.Popen[bytes], marker: str) -> str:
    """What the process printed up to the line holding ``marker``."""
    assert proc.stdout is not None
    lines = []
    while True:
        line = proc.stdout.readline().decode()
        assert line, "".join(lines)  # the process ended without printing it
        lines.append(line)
        if marker in line:
            return "".join(lines)


def test_up_serves_probes_with_sample_data(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SIGNALFACTORY_HOME": str(tmp_path / "home")}
    env.pop("SIGNALFACTORY_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "signalfactory", "up", "--port", str(port),
         "--sample-symbols", "5", "--sample-bars", "100"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, ready
        assert httpx.get(f"http://127.0.0.1:{port}/livez").status_code == 200
        url = f"http://127.0.0.1:{port}/api/v1/instruments"
        assert httpx.get(url).status_code == 401
        key = subprocess.run(
            [sys.executable, "-m", "signalfactory", "keys", "create", "--tenant", "default",
             "--role", "viewer"], env=env, check=True, capture_output=True).stdout.decode()
        items = httpx.get(url, headers={"Authorization": f"Bearer {key.strip()}"}
                          ).json()["items"]
        assert len(items) == 5
        # The dashboard: `up` printed a one-time sign-in link for the local admin.
        printed = _printed_until(proc, "/signin/link/")
        link = next(w for w in printed.split() if "/signin/link/" in w)
        assert link.startswith(f"http://127.0.0.1:{port}/signin/link/"), printed
        signed = httpx.get(link)
        assert signed.status_code == 303 and "sf_session=" in signed.headers["set-cookie"]
        overview = httpx.get(f"http://127.0.0.1:{port}/", cookies=signed.cookies)
        assert overview.status_code == 200 and "All parts ready" in overview.text
        assert httpx.get(link).status_code == 401  # once only
    finally:
        proc.terminate()
        proc.wait(timeout=20)
