"""`make demo` (raftplane dev --demo): a cluster, an upstream and an Envoy that serves."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.timeout(150)


def test_dev_demo_serves_through_envoy_and_stops_cleanly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftplane", "dev", "--demo", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"curl -s (http://127\.0\.0\.1:\d+/hello)", line)
            url = match.group(1) if match else None
        assert url, "".join(lines)
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert b"hello from the demo upstream" in resp.read()
        assert (tmp_path / "cluster.json").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, "".join(lines) + out
    assert "stopping nodes" in out
