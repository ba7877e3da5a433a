"""The `raftplane` client commands, run as a user runs them (`python -m raftplane ...` in a
subprocess) against a real cluster through a follower: output and exit codes checked for
apply (1,000 resources from a directory in one revision), get, edit, delete, status, members,
watch, xds dump / connections (with a real Envoy), tokens and name completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from raftplane.devcluster import free_port
from tests.client.test_completion import complete
from tests.system.envoy import Envoy, Upstream, get_through
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(120)
TEAM = "cli"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def server(shared_cluster) -> str:
    shared_cluster.ensure_team(TEAM)
    return shared_cluster.nodes[shared_cluster.followers()[0]].api


@pytest.fixture
def run(server, shared_cluster, tmp_path) -> Run:
    """Run `raftplane ARGS` against a follower with the admin token (env= adds or, with None
    values, removes variables); returns the finished process (text stdout/stderr)."""
    base = os.environ | {"RAFTPLANE_SERVER": server, "RAFTPLANE_TOKEN": shared_cluster.admin_token,
                         "XDG_CONFIG_HOME": str(tmp_path / "no-config"), "COLUMNS": "200"}

    def runner(*argv: str, env: dict[str, str | None] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        environ = dict(base)
        for key, value in (env or {}).items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        return subprocess.run([sys.executable, "-m", "raftplane", *argv], env=environ,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    return runner


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def rows(text: str) -> list[list[str]]:
    """A table's lines split into cells (header first)."""
    return [line.split() for line in text.splitlines() if line.strip()]


def write_thousand(root: Path) -> None:
    """1,000 resources over several files and formats: 1 dataplane, 600 clusters (3 YAML
    files of documents), 300 route configs (a JSON list), 99 listeners (YAML {items})."""
    (root / "clusters").mkdir(parents=True)
    (root / "routes").mkdir()
    (root / "0-dataplane.yaml").write_text(yaml.safe_dump_all([
        {"kind": "team", "name": TEAM},
        {"kind": "dataplane", "name": "cli-dp", "team": TEAM}]))
    for part in range(3):
        (root / "clusters" / f"part-{part}.yaml").write_text(yaml.safe_dump_all([
            {"kind": "Cluster", "name": f"cli-c{i}", "team": TEAM,
             "endpoints": [{"host": "127.0.0.1", "port": 8000}]}
            for i in range(part * 200, part * 200 + 200)]))
    (root / "routes" / "routes.json").write_text(json.dumps([
        {"kind": "route-configs", "name": f"cli-r{i}", "team": TEAM, "virtualHosts": [{
            "name": "all", "domains": ["*"], "routes": [{
                "match": {"path": {"type": "prefix", "value": "/"}},
                "action": {"type": "forward", "cluster": f"cli-c{i}"}}]}]}
        for i in range(300)]))
    (root / "listeners.yml").write_text(yaml.safe_dump({"items": [
        {"kind": "listener", "name": f"cli-l{i}", "team": TEAM, "dataplaneId": "cli-dp",
         "address": "127.0.0.1", "port": 21000 + i, "filterChains": [{"filters": [{
             "name": "hcm", "type": "httpConnectionManager", "routeConfigName": f"cli-r{i}"}]}]}
        for i in range(99)]}))


def test_apply_a_directory_of_a_thousand_resources_in_one_revision(run, tmp_path):
    root = tmp_path / "resources"
    write_thousand(root)
    started = time.monotonic()
    applied = json.loads(ok(run("apply", "-f", str(root), "-o", "json")))
    elapsed = time.monotonic() - started
    print(f"\nraftplane apply -f of 1,000 resources (one process, one request): {elapsed:.2f} s")
    assert applied["counts"] == {"created": 1000, "replaced": 0, "unchanged": 1, "deleted": 0}
    assert len(applied["revisions"]) == 1
    revision = applied["revision"]
    # read back through the CLI, page by page: every one at that same revision
    for kind, count in (("clusters", 600), ("route-configs", 300), ("listeners", 99)):
        listed = json.loads(ok(run("get", kind, "--team", TEAM, "--page-size", "250", "-o",
                                   "json", "--min-revision", str(revision))))["items"]
        mine = [r for r in listed if r["name"].startswith("cli-")]
        assert len(mine) == count and {r["revision"] for r in mine} == {revision}, kind
        assert {r["kind"] for r in mine} == {kind}
    dataplane = json.loads(ok(run("get", "dp", "cli-dp", "--team", TEAM, "-o", "json")))
    assert dataplane["revision"] == revision
    # again: nothing changes, a table per item and the summary
    again = ok(run("apply", "-f", str(root)))
    assert again.splitlines()[-1] == ("applied: 0 created, 0 replaced, 1001 unchanged, "
                                      f"0 deleted at revision {revision}")
    assert ["clusters", "cli-c0", "unchanged"] in rows(again)
    # prune: without cli-c599 in the files it is deleted (dry run first: nothing written)
    part = root / "clusters" / "part-2.yaml"
    part.write_text(yaml.safe_dump_all([d for d in yaml.safe_load_all(part.read_text())
                                        if d["name"] != "cli-c599"]))
    flags = ["--prune", "--team", TEAM, "--prune-kinds", "clusters", "-q"]
    dry = ok(run("apply", "-f", str(root), "--dry-run", *flags))
    assert dry.strip() == ("dry run (nothing written): would be 0 created, 0 replaced, "
                           "1000 unchanged, 1 deleted")
    assert ok(run("get", "cluster", "cli-c599", "-o", "json"))
    pruned = ok(run("apply", "-f", str(root), *flags))
    assert "1 deleted at revision" in pruned
    gone = run("get", "cluster", "cli-c599", "--min-revision", pruned.split()[-1])
    assert gone.returncode == 1 and "404 Not found" in gone.stderr


def test_get_edit_and_delete(run, tmp_path):
    (tmp_path / "c.yaml").write_text(f"kind: cluster\nname: cli-edit\nteam: {TEAM}\n"
                                     "endpoints: [{host: 127.0.0.1, port: 8000}]\n")
    ok(run("apply", "-f", str(tmp_path / "c.yaml")))
    table = rows(ok(run("get", "clusters", "cli-edit")))
    assert table[0] == ["NAME", "TEAM", "ENDPOINTS", "REVISION"]
    assert table[1][:3] == ["cli-edit", TEAM, "127.0.0.1:8000"]
    wide = rows(ok(run("get", "cluster", "cli-edit", "-o", "wide")))
    assert wide[0][-3:] == ["LB", "TLS", "PROTOCOL"] and wide[1][-3:] == [
        "ROUND_ROBIN", "no", "HTTP1"]
    before = yaml.safe_load(ok(run("get", "cluster", "cli-edit", "-o", "yaml")))
    assert before["kind"] == "clusters" and before["endpoints"] == [
        {"host": "127.0.0.1", "port": 8000}]

    editor = tmp_path / "editor.py"  # replaces argv[1] by argv[2] in the file, optionally
    editor.write_text(                # after a PATCH of the same cluster (a concurrent edit)
        "import os, sys, json, urllib.request\n"
        "old, new, race, path = sys.argv[1:]\n"
        "if race == 'race':\n"
        "    req = urllib.request.Request(os.environ['RAFTPLANE_SERVER'] + "
        "'/api/v1/clusters/cli-edit', method='PATCH', data=b'{\"connectTimeoutSeconds\": 9}',"
        " headers={'Authorization': 'Bearer ' + os.environ['RAFTPLANE_TOKEN'], "
        "'Content-Type': 'application/merge-patch+json'})\n"
        "    urllib.request.urlopen(req).read()\n"
        "text = open(path).read()\n"
        "open(path, 'w').write(text.replace(old, new))\n")
    edit = f"{sys.executable} {editor}"
    done = ok(run("edit", "cluster", "cli-edit", env={"EDITOR": f"{edit} 8000 8001 no"}))
    assert done.startswith("clusters/cli-edit replaced (revision ")
    after = json.loads(ok(run("get", "cluster", "cli-edit", "-o", "json")))
    assert after["endpoints"][0]["port"] == 8001 and after["revision"] > before["revision"]
    unchanged = run("edit", "cluster", "cli-edit", env={"EDITOR": f"{edit} x x no"})
    assert unchanged.returncode == 0 and "no changes" in unchanged.stderr
    raced = run("edit", "cluster", "cli-edit", env={"EDITOR": f"{edit} 8001 8002 race"})
    assert raced.returncode == 1, raced.stderr
    assert "was changed by someone else" in raced.stderr
    kept = Path(raced.stderr.split("kept in ")[1].split(":")[0])
    assert "port: 8002" in kept.read_text()
    kept.unlink()
    current = json.loads(ok(run("get", "cluster", "cli-edit", "-o", "json")))
    assert (current["endpoints"][0]["port"], current["connectTimeoutSeconds"]) == (8001, 9)
    secret = run("edit", "secret", "anything")
    assert secret.returncode == 2 and "write-only" in secret.stderr

    deleted = ok(run("delete", "cluster", "cli-edit", "--if-match", str(current["revision"])))
    assert deleted.startswith("clusters/cli-edit deleted (revision ")
    missing = run("delete", "cluster", "cli-edit")
    assert missing.returncode == 1 and "404" in missing.stderr
    assert run("delete", "cluster", "cli-edit", "--ignore-not-found").returncode == 0
    used = run("delete", "cluster", "cli-c0")  # route config cli-r0 forwards to it
    assert used.returncode == 1 and "409" in used.stderr and "cli-r0" in used.stderr


def test_errors_exit_codes_and_the_config_file(run, server, shared_cluster, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"kind: cluster\nname: cli-bad-ok\nteam: {TEAM}\n"
                   "endpoints: [{host: 127.0.0.1, port: 8000}]\n---\n"
                   f"kind: cluster\nname: cli-bad\nteam: {TEAM}\nendpoints: []\n")
    refused = run("apply", "-f", str(bad))
    assert refused.returncode == 1
    assert f"  {bad}#2.endpoints: must not be empty" in refused.stderr.splitlines()
    assert run("get", "cluster", "cli-bad-ok").returncode == 1  # nothing of it applied
    usage = run("get", "widgets")
    assert usage.returncode == 2 and "unknown kind 'widgets'" in usage.stderr
    assert run("get", "clusters", env={"RAFTPLANE_SERVER": None}).returncode == 2
    down = run("status", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 3 and "cannot reach" in down.stderr
    denied = run("get", "clusters", "--token", "not-a-token")
    assert denied.returncode == 1 and "401" in denied.stderr
    # everything from a config file instead (a token file relative to it)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text(shared_cluster.admin_token)
    (tmp_path / "conf" / "client.yaml").write_text(f"server: {server}\ntokenFile: token\n")
    listed = run("get", "teams", env={"RAFTPLANE_SERVER": None, "RAFTPLANE_TOKEN": None,
                                      "XDG_CONFIG_HOME": str(tmp_path / "conf-home"),
                                      "RAFTPLANE_CONFIG": str(tmp_path / "conf" /
                                                              "client.yaml")})
    assert [TEAM] in [r[:1] for r in rows(ok(listed))]


def test_status_members_xds_and_a_real_envoy(run, shared_cluster, server, tmp_path):
    upstream = Upstream("cli-up")
    port = free_port()
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump_all([
        {"kind": "dataplane", "name": "cli-edge", "team": TEAM},
        {"kind": "cluster", "name": "cli-up", "team": TEAM,
         "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]},
        {"kind": "route-config", "name": "cli-up-routes", "team": TEAM, "virtualHosts": [{
            "name": "all", "domains": ["*"], "routes": [{
                "match": {"path": {"type": "prefix", "value": "/"}},
                "action": {"type": "forward", "cluster": "cli-up"}}]}]},
        {"kind": "listener", "name": "cli-edge-http", "team": TEAM, "dataplaneId": "cli-edge",
         "address": "127.0.0.1", "port": port, "filterChains": [{"filters": [{
             "name": "hcm", "type": "httpConnectionManager",
             "routeConfigName": "cli-up-routes"}]}]}]))
    ok(run("apply", "-f", str(tmp_path / "edge.yaml")))
    envoy = None
    try:
        envoy = Envoy(server + "/api/v1", TEAM, "cli-edge", tmp_path)
        eventually(lambda: get_through(port, "/x")[1] == "cli-up /x", timeout=30)
        conns = json.loads(ok(run("xds", "connections", "--all-nodes", "-o", "json")))
        node = next(a["node"] for a in conns["items"] for c in a["connections"]
                    if c["dataplane"] == f"{TEAM}/cli-edge")
        table = rows(ok(run("xds", "connections", "--all-nodes")))
        assert table[0] == ["NODE", "ENVOY", "DATAPLANE", "STREAM", "ACKED", "LAST", "NACK"]
        assert any(r[0] == node and r[2] == f"{TEAM}/cli-edge" for r in table[1:])

        status = ok(run("status"))
        lines = rows(status)
        leader = shared_cluster.leader()
        assert lines[0][:2] == ["leader:", leader]
        assert lines[1] == ["NODE", "ROLE", "REVISION", "LAG", "ENVOYS", "API"]
        nodes = {r[0]: r for r in lines[2:]}
        assert set(nodes) == set(shared_cluster.nodes)
        assert nodes[leader][1] == "leader"
        assert sorted(r[1] for r in nodes.values()) == ["follower", "follower", "leader"]
        assert int(nodes[node][4]) >= 1
        as_json = json.loads(ok(run("status", "-o", "json")))
        assert as_json["leader"] == leader and as_json["hasQuorum"] is True
        assert all(n["reachable"] and n["revision"] > 0 for n in as_json["nodes"])

        dump = rows(ok(run("xds", "dump", "--dataplane", f"{TEAM}/cli-edge", "-o", "table")))
        served = {(r[0], r[1]) for r in dump[2:]}
        assert {("cds", "cli-up"), ("rds", "cli-up-routes"),
                ("lds", "cli-edge-http")} <= served
        full = yaml.safe_load(ok(run("xds", "dump", "--dataplane", "cli-edge", "--team", TEAM)))
        assert full["dataplane"] == f"{TEAM}/cli-edge"
        assert [r["name"] for r in full["lds"]["resources"]] == ["cli-edge-http"]

        members = rows(ok(run("members", "list")))
        assert members[0][:3] == ["ID", "ROLE", "REACHABLE"]
        assert {r[0] for r in members[1:]} == set(shared_cluster.nodes)
    finally:
        if envoy is not None:
            envoy.stop()
        upstream.close()


def test_watch_prints_each_change(run, tmp_path):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump_all([
        {"kind": "cluster", "name": f"cli-w{i}", "team": TEAM,
         "endpoints": [{"host": "127.0.0.1", "port": 8000}]} for i in range(3)]))
    revision = json.loads(ok(run("apply", "-f", str(tmp_path / "w.yaml"), "-o", "json")))[
        "revision"]
    deleted = ok(run("delete", "cluster", "cli-w0"))
    deleted_at = int(deleted.split("revision ")[1].rstrip(")\n"))
    lines = ok(run("watch", "--from-revision", str(revision), "--kinds", "cluster", "--team",
                   TEAM, "--count", "4", timeout=30)).splitlines()
    assert [line.split("\t") for line in lines] == [
        [str(revision), "put", "clusters", TEAM, "cli-w0"],
        [str(revision), "put", "clusters", TEAM, "cli-w1"],
        [str(revision), "put", "clusters", TEAM, "cli-w2"],
        [str(deleted_at), "delete", "clusters", TEAM, "cli-w0"]]
    first = json.loads(ok(run("watch", "--from-revision", str(revision), "--team", TEAM,
                              "--count", "1", "-o", "json", timeout=30)))
    assert first["event"] == "put" and first["resource"]["name"] == "cli-w0"


def test_tokens_create_use_list_and_revoke(run, server):
    created = run("token", "create", "cli-reader", "--scope", "clusters:read", "--team", TEAM,
                  "--expires-in", "1h")
    token = ok(created).strip()
    assert token.count(".") == 2 and "shown only this once" in created.stderr
    mine = rows(ok(run("get", "clusters", "--team", TEAM, "--token", token)))
    assert mine[0][0] == "NAME" and len(mine) > 1
    forbidden = run("get", "route-configs", "--token", token)
    assert forbidden.returncode == 1 and "403" in forbidden.stderr
    listed = json.loads(ok(run("token", "list", "-o", "json")))["items"]
    record = next(t for t in listed if t["name"] == "cli-reader" and not t["revoked"])
    assert record["scopes"] == ["clusters:read"] and record["teams"] == [TEAM]
    assert any(r[:2] == [record["id"], "cli-reader"] for r in rows(ok(run("token", "list"))))
    assert ok(run("token", "revoke", record["id"])).startswith(f"token {record['id']} revoked")
    eventually(lambda: call("GET", f"{server}/api/v1/clusters", auth=token).status == 401)
    revoked = run("get", "clusters", "--token", token)
    assert revoked.returncode == 1 and "401" in revoked.stderr
    assert record["id"] not in ok(run("token", "list"))
    assert record["id"] in ok(run("token", "list", "--all"))


def test_completion_asks_the_server_for_names(server, shared_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("RAFTPLANE_SERVER", server)
    monkeypatch.setenv("RAFTPLANE_TOKEN", shared_cluster.admin_token)
    names = complete("raftplane get listeners cli-l9", tmp_path)
    assert names == ["cli-l9"] + [f"cli-l9{i}" for i in range(9)]


def test_history_diff_rollback_and_the_fleet(run, shared_cluster):
    team = "cli-hist"
    shared_cluster.ensure_team(team)
    api = shared_cluster.api(shared_cluster.leader())

    def put(port: int) -> int:
        body = {"name": "cli-h", "team": team, "endpoints": [{"host": "127.0.0.1", "port": port}]}
        reply = call("PUT" if port != 8001 else "POST",
                     f"{api}/clusters" + ("/cli-h" if port != 8001 else ""), body)
        assert reply.status in (200, 201), reply.body
        return int(reply.body["revision"])

    first, second = put(8001), put(8002)
    table = rows(ok(run("history", "clusters", "cli-h")))
    assert table[0][:2] == ["REVISION", "EVENT"]
    assert [r[:2] for r in table[1:]] == [[str(first), "put"], [str(second), "put"]]
    diff = json.loads(ok(run("diff", str(first), "--team", team, "-o", "json")))
    assert [(i["name"], i["action"]) for i in diff["items"]] == [("cli-h", "changed")]
    out = ok(run("rollback", str(first), "--team", team))
    assert f"rolled back to revision {first}" in out and "cli-h" in out
    assert call("GET", f"{api}/clusters/cli-h").body["endpoints"][0]["port"] == 8001
    assert "nothing changed" in ok(run("rollback", str(first), "--team", team,
                                       "--kinds", "clusters"))
    fleet = json.loads(ok(run("status", "--fleet", "--team", team, "-o", "json")))
    assert fleet["envoys"] == [] and fleet["unreachableReplicas"] == []
    refused = run("rollback", "0", "--team", team)
    assert refused.returncode == 1 and "toRevision" in refused.stderr


def test_transfer_leadership_from_the_cli(run, shared_cluster):
    before = shared_cluster.leader()
    target = next(n for n in shared_cluster.followers())
    done = run("transfer-leadership", "--to", target)
    assert done.returncode == 0, (done.stdout, done.stderr)
    eventually(lambda: shared_cluster.leader() == target, timeout=10)
    assert shared_cluster.leader() == target != before
    members = rows(ok(run("members", "list")))
    assert len(members) == 1 + len(shared_cluster.nodes)  # header + one row per member
