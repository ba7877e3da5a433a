"""The README's commands, run as written: the Quick start's API calls, then "Filters and JWT
auth at the edge", with bash and curl against a running cluster and a real Envoy.

The README's fixed ports (upstream 9000, listener 10000) are used as written; only `API` and
the admin token file are pointed at the test's cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.envoy import Envoy
from tests.system.http import poll
from tests.system.test_filters_live import EchoUpstream, active_listeners, send

pytestmark = pytest.mark.timeout(120)
README = Path(__file__).resolve().parents[2] / "README.md"


def shell_blocks(section: str) -> list[str]:
    """The ```sh blocks of the README section headed ``## <section>``."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", text[start:end if end != -1 else None], re.S)


def run(script: str, workdir: Path, api: str, token: str) -> str:
    """Run a README block with bash, as a reader would after the Quick start's exports."""
    script = script.replace("API=http://127.0.0.1:PORT", f"API={api}")
    script = script.replace(".venv/bin/python", sys.executable)
    env = {**os.environ, "API": api, "AUTH": f"Authorization: Bearer {token}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def json_values(text: str) -> list:
    """The JSON values curl printed back to back (no newline between bodies)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        value, i = decoder.raw_decode(text, i)
        out.append(value)
    return out


def test_the_readme_quick_start_and_jwt_walkthrough(shared_cluster, tmp_path):
    node = shared_cluster.nodes[shared_cluster.followers()[0]]
    (tmp_path / ".dev-cluster").mkdir()
    (tmp_path / ".dev-cluster" / "admin-token").write_text(shared_cluster.admin_token)
    quick_start = shell_blocks("Quick start")[1]
    assert quick_start.startswith("export AUTH=")
    created = json_values(run(quick_start, tmp_path, node.api, shared_cluster.admin_token))
    assert [c.get("name") for c in created] == [
        "payments", "edge", "echo", "echo-routes", "edge-http"], created
    upstream = EchoUpstream(port=9000)  # the README's upstream port
    envoy = None
    try:
        envoy = Envoy(node.api + "/api/v1", "payments", "edge", tmp_path)
        poll(lambda: "edge-http" in active_listeners(envoy), timeout=30)
        (jwt_block,) = shell_blocks("Filters and JWT auth at the edge")
        *setup, without, with_token = jwt_block.rstrip("\n").split("\n")
        *_, created_filter, listener = json_values(
            run("\n".join(setup), tmp_path, node.api, shared_cluster.admin_token))
        assert created_filter["name"] == "edge-jwt" and listener["name"] == "edge-http"
        # the README's reader types the next command after Envoy has the change; wait for it
        poll(lambda: send(10000, "GET", "/").status == 401, timeout=20)
        out = run(f"{without}\n{with_token}", tmp_path, node.api, shared_cluster.admin_token)
        assert out.startswith("401\n"), out  # without a token
        (echo,) = json_values(out[4:])  # with one: the upstream's echo
        assert echo["headers"]["x-user"] == "alice", out
        # the bulk apply example: a dry run against what the Quick start made
        apply_block = shell_blocks("Apply, follow, look back, undo")[0]
        (plan,) = json_values(run(apply_block, tmp_path, node.api, shared_cluster.admin_token))
        assert plan["dryRun"] and plan["counts"] == {
            "created": 1, "replaced": 0, "unchanged": 1, "deleted": 0}, plan
        # the fleet example: a dry run, a write that waits for the Envoy, a status
        fleet_block = shell_blocks("Apply, follow, look back, undo")[3]
        dry, written, status = json_values(
            run(fleet_block, tmp_path, node.api, shared_cluster.admin_token))
        assert dry["dryRun"] and dry["valid"], dry
        assert dry["dataplanes"][0]["changes"]["eds"]["changed"] == ["echo"], dry
        assert written["name"] == "echo" and written["endpoints"][0]["port"] == 9000, written
        assert status["envoys"][0]["dataplane"] == "payments/edge", status
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.close()
