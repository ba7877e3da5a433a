"""Backup under writes, restore into a new 3-node cluster (one node restored, two empty):
same content at the backup's revision, tokens still valid, revisions continue upwards."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from raftplane.storage import backup
from tests.system.conftest import Cluster
from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(150)

TEAM = "bk"
NAMES = 40  # the writer cycles create / replace / delete over these cluster names
# name -> [(revision, resource or None for deleted)], in revision order
History = dict[str, list[tuple[int, dict | None]]]


def cluster_body(name: str, port: int) -> dict:
    return {"name": name, "team": TEAM, "endpoints": [{"host": "10.0.0.1", "port": port}]}


def write_one(api: str, name: str, i: int, exists: bool) -> tuple[int, dict | None]:
    """Create, replace or delete cluster `name`; (revision, what it now is)."""
    if not exists:
        r = call("POST", api + "/clusters", cluster_body(name, 1000 + i))
        assert r.status == 201, r.body
        return r.revision, r.body
    if i % 3 == 0:
        r = call("DELETE", f"{api}/clusters/{name}")
        assert r.status == 200, r.body
        return r.revision, None
    r = call("PUT", f"{api}/clusters/{name}", cluster_body(name, 1000 + i))
    assert r.status == 200, r.body
    return r.revision, r.body


class Writer(threading.Thread):
    """Writes to the leader until stopped, recording every acknowledged change."""

    def __init__(self, api: str, history: History) -> None:
        super().__init__(daemon=True)
        self.api, self.history = api, history
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                name = f"w{i % NAMES:02d}"
                events = self.history.setdefault(name, [])
                exists = bool(events) and events[-1][1] is not None
                events.append(write_one(self.api, name, i, exists))
        except BaseException as exc:
            self.error = exc


def state_at(history: History, revision: int) -> list[dict]:
    """The team's clusters as the source held them at `revision`, ordered by name."""
    items = []
    for name in sorted(history):
        held = [resource for rev, resource in history[name] if rev <= revision]
        if held and held[-1] is not None:
            items.append(held[-1])
    return items


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftplane", *args], capture_output=True,
                          text=True, timeout=60)


def team_clusters(cluster: Cluster, node_id: str, revision: int) -> list[dict] | None:
    r = call("GET", f"{cluster.api(node_id)}/clusters?team={TEAM}&limit=1000"
                    f"&minRevision={revision}&waitSeconds=5")
    return r.body["items"] if r.status == 200 else None


def test_backup_under_writes_restores_into_a_new_cluster(fresh_cluster, tmp_path_factory):
    src = fresh_cluster
    api = src.api(src.leader())
    src.ensure_team(TEAM)
    secret = call("POST", api + "/secrets", {"name": "bk-hmac", "team": TEAM,
                                            "type": "genericSecret", "value": "v" * 24})
    assert secret.status == 201, secret.body
    history: History = {}
    for i in range(1, 121):  # 120 clusters before the writer starts
        name = f"c{i:03d}"
        history[name] = [write_one(api, name, i, exists=False)]
    work = tmp_path_factory.mktemp("backup")
    file = work / "cluster.backup"
    # Every team's data is in a backup: a token bound to a team may not take one.
    bound = call("POST", api + "/tokens", {"name": "bk-bound", "scopes": ["cluster:read"],
                                          "teams": [TEAM]})
    unbound = call("POST", api + "/tokens", {"name": "bk-ops", "scopes": ["cluster:read"]})
    assert bound.status == unbound.status == 201
    assert call("GET", api + "/cluster/backup", auth=bound.body["token"]).status == 403
    assert call("GET", api + "/cluster/backup", auth=None).status == 401
    ops_token = work / "ops-token"
    ops_token.write_text(unbound.body["token"])

    writer = Writer(api, history)
    writer.start()
    try:
        eventually(lambda: len(history) > 125, timeout=20)  # the writer is writing
        done = run_cli("backup", "--server", src.nodes[src.leader()].api, "--token-file",
                       str(ops_token), "--out", str(file))
        writes_at_backup = sum(len(e) for e in history.values())
        eventually(lambda: sum(len(e) for e in history.values()) > writes_at_backup + 20,
                   timeout=20)  # and went on writing after the copy
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert done.returncode == 0, done.stderr
    info = backup.verify(file)
    revision = info.revision
    assert f"backup of revision {revision} " in done.stdout
    revisions = [rev for events in history.values() for rev, _ in events]
    assert min(revisions) < revision < max(revisions)  # writes before and after the copy
    expected = state_at(history, revision)
    assert len(expected) > 120
    # The source agrees about its own past.
    at = call("GET", f"{api}/clusters?team={TEAM}&limit=1000&atRevision={revision}")
    assert at.status == 200 and at.body["items"] == expected

    # Damaged, or under another secret: refused, the data dir left empty.
    damaged = work / "damaged.backup"
    raw = bytearray(file.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    damaged.write_bytes(bytes(raw))
    refused = run_cli("restore", "--from", str(damaged), "--data-dir", str(work / "x"),
                      "--cluster-secret-file", str(src.secret_file))
    assert refused.returncode == 1 and "damaged" in refused.stderr, refused.stderr
    other_secret = work / "other-secret"
    other_secret.write_text("o" * 32)
    refused = run_cli("restore", "--from", str(file), "--data-dir", str(work / "x"),
                      "--cluster-secret-file", str(other_secret))
    assert refused.returncode == 1 and "another cluster secret" in refused.stderr
    assert not (work / "x" / "store").exists()

    # A new cluster: n1 restored, n2 and n3 empty (--join: no election while empty), all
    # started at once. Same secret; the admin token issued on the source (before the
    # backup) is its token.
    new = Cluster(tmp_path_factory.mktemp("restored"), 3, log_level="INFO")
    shutil.copy(src.secret_file, new.secret_file)
    shutil.copy(src.admin_token_file, new.admin_token_file)
    new.prepare()
    # The old cluster went on after the backup: the new one's revisions start above its
    # last (a Delta Envoy keeps a resource whose version string it already holds).
    floor = src.status(src.leader())["revision"]
    assert floor > revision
    restored = run_cli("restore", "--from", str(file), "--data-dir",
                       str(new.data_dir / "nodes" / "n1"), "--cluster-secret-file",
                       str(new.secret_file), "--revision-floor", str(floor))
    assert restored.returncode == 0, restored.stderr
    new.joined.update({"n2", "n3"})  # --join (through n1), no --members
    try:
        new.start()
        new.wait_ready(timeout=60)  # with the old token: no day-0 setup on this cluster
        for node_id in new.nodes:  # the two empty ones through the restored node's snapshot
            assert eventually(lambda n=node_id: team_clusters(new, n, revision),
                              timeout=30) == expected
        new_api = new.api(new.leader())
        assert call("GET", f"{new_api}/teams").body["items"] == \
            call("GET", f"{api}/teams").body["items"]
        assert call("GET", f"{new_api}/secrets/bk-hmac").body == \
            call("GET", f"{api}/secrets/bk-hmac").body
        # Revisions continue above the old cluster's last, on every node.
        after = call("POST", new_api + "/clusters", cluster_body("after-restore", 80))
        assert after.status == 201 and after.revision > floor, after.body
        for node_id in new.nodes:
            status = eventually(lambda n=node_id: new.status(n), timeout=10)
            assert status["revision"] >= floor
        # The signing keys came back sealed under the same secret: the restored leader
        # issues a new token, and it works.
        issued = call("POST", new_api + "/tokens", {"name": "post-restore",
                                                    "scopes": ["clusters:read"],
                                                    "teams": [TEAM]})
        assert issued.status == 201, issued.body
        listed = call("GET", f"{new_api}/clusters?team={TEAM}&minRevision={after.revision}",
                      auth=issued.body["token"])
        assert listed.status == 200 and "after-restore" in [c["name"] for c in
                                                            listed.body["items"]]
    finally:
        new.stop()
    assert Path(new.data_dir / "nodes" / "n2" / "raft" / "snapshot").exists()
