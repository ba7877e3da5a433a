"""Peer traffic needs the cluster secret; garbage on the Raft port changes nothing."""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import subprocess
import sys
import zlib

import pytest

from tests.system.http import call, eventually

pytestmark = pytest.mark.timeout(120)


def test_multi_node_start_without_a_secret_is_refused(tmp_path):
    members = ("id=n1,raft=127.0.0.1:1,api=http://127.0.0.1:2;"
               "id=n2,raft=127.0.0.1:3,api=http://127.0.0.1:4")
    proc = subprocess.run(
        [sys.executable, "-m", "raftplane", "serve", "--node-id", "n1", "--data-dir",
         str(tmp_path), "--members", members, "--api-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "without a cluster secret" in proc.stderr


def test_garbage_and_forged_messages_on_the_raft_port_change_nothing(shared_cluster):
    leader = shared_cluster.leader()
    before = call("GET", shared_cluster.api(leader) + "/cluster/status").body
    host, port = shared_cluster.nodes[leader].raft.rsplit(":", 1)
    forged = zlib.compress(pickle.dumps({"type": "append_entries", "term": 10**9,
                                         "commit_index": 10**9, "entries": []}))
    payloads = [b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", struct.pack("i", len(forged)) + forged,
                struct.pack("i", 2**30) + b"xx", bytes(range(256)) * 40]
    for payload in payloads:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(2)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                s.recv(1024)
    after = call("GET", shared_cluster.api(leader) + "/cluster/status").body
    assert after["role"] == "leader" and after["term"] == before["term"]
    assert shared_cluster.nodes[leader].pid is not None
    # The cluster still takes writes.
    r = call("POST", shared_cluster.api(leader) + "/teams", {"name": "after-garbage"})
    assert r.status == 201


def test_a_node_with_the_wrong_secret_cannot_join(fresh_cluster):
    c = fresh_cluster
    victim = c.followers()[0]
    c.kill(victim)
    c.secret_file.write_text("this-is-not-the-cluster-secret-at-all")
    try:
        c.spawn(victim)
        r = call("POST", c.api(c.leader(among=[i for i in c.nodes if i != victim]))
                 + "/teams", {"name": "secret-test"})
        assert r.status == 201
        # The impostor never learns a leader or the data, and the others never see it.
        status = eventually(lambda: call("GET", c.api(victim) + "/cluster/status").body)
        assert status["leader"] is None and status["revision"] < r.body["revision"]
        for node_id in c.nodes:
            if node_id != victim:
                view = call("GET", c.api(node_id) + "/cluster/status").body
                peer = next(m for m in view["members"] if m["id"] == victim)
                assert peer["reachable"] is False
    finally:
        c.kill(victim)
