"""A node restarted after its Raft journal lost its newest bytes (a torn write) either
recovers from its peers or refuses to start with a clear message; it never serves state
that differs from the others'."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from raftplane.cluster.journal import RECORD
from tests.system.conftest import Cluster
from tests.system.http import call, eventually
from tests.system.test_faults import all_clusters, write_clusters

pytestmark = pytest.mark.timeout(150)


def journal(c: Cluster, node_id: str) -> Path:
    return c.data_dir / "nodes" / node_id / "raft" / "journal"


def records_end(path: Path) -> int:
    """Where the journal's records end (its length)."""
    return path.stat().st_size


def exit_code(c: Cluster, node_id: str, timeout: float = 30.0) -> int | None:
    """The node's exit code if it exits within `timeout`, else None (it runs)."""
    try:
        return c.nodes[node_id].process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def same_state(c: Cluster, acked: dict[str, int]) -> None:
    """Every node holds every acknowledged write and the same clusters and audit trail."""
    from tests.chaos.final import pages

    top = max(acked.values())
    for n in c.nodes:  # caught up (an empty node knows the token's signing key only then)
        eventually(lambda n=n: (s := c.status(n)) and s["appliedIndex"] >= top, timeout=60)
    views = {n: all_clusters(c, n, top) for n in c.nodes}
    trails = {n: pages(f"{c.api(n)}/audit") for n in c.nodes}
    for n, view in views.items():
        assert {k: view.get(k) for k in acked} == acked, n
        assert view == views["n1"] and trails[n] == trails["n1"], n


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path, 3)
    try:
        c.start()
        c.wait_ready(timeout=60)
        c.ensure_team("t1")
        yield c
    finally:
        c.stop()


def test_journal_that_lost_applied_entries_refuses_to_start_clearly(cluster):
    c = cluster
    victim = c.followers()[0]
    acked = write_clusters(c, c.leader(), "before", 20)
    all_clusters(c, victim, max(acked.values()))  # the victim applied every one of them
    c.kill(victim)
    path = journal(c, victim)
    end = records_end(path)
    with path.open("r+b") as f:  # a torn write: the newest 50 bytes of the records are gone
        f.truncate(end - 50)
    acked |= write_clusters(c, c.leader(), "while-down", 5)
    c.spawn(victim)
    code = exit_code(c, victim)
    log = (c.data_dir / "logs" / f"{victim}.log").read_text()
    if code is None:  # it chose to recover: then it must hold exactly what the others hold
        c.wait_ready(timeout=60)
        same_state(c, acked)
        return
    assert code != 0
    assert "journal" in log and "torn" in log and "data directory" in log, log[-3000:]
    assert "Traceback" not in log.split("node started")[-1], log[-3000:]
    # What the message asks of the operator: move the node's data away; it rejoins empty.
    data = c.data_dir / "nodes" / victim
    data.rename(data.with_name(f"{victim}.torn"))
    c.spawn(victim)
    c.wait_ready(timeout=60)
    same_state(c, acked)


def test_torn_append_of_a_new_entry_is_dropped_and_the_node_catches_up(cluster):
    c = cluster
    victim = c.followers()[0]
    acked = write_clusters(c, c.leader(), "before", 10)
    all_clusters(c, victim, max(acked.values()))
    c.kill(victim)
    path = journal(c, victim)
    end = records_end(path)
    with path.open("r+b") as f:  # a record half written: its head, part of its command
        f.seek(end)
        f.write(RECORD.pack(200, 0, 10**6, 9) + b"\x07" * 60)
    acked |= write_clusters(c, c.leader(), "while-down", 5)
    started = time.monotonic()
    c.spawn(victim)
    c.wait_ready(timeout=60)
    same_state(c, acked)
    print(f"{victim} caught up {time.monotonic() - started:.2f}s after its restart")
    assert exit_code(c, victim, timeout=1) is None, "a torn unacknowledged append must not " \
                                                     "stop the node"
    r = call("GET", c.api(victim) + "/cluster/status")
    assert r.status == 200 and r.body["appliedIndex"] >= max(acked.values())
    log = (c.data_dir / "logs" / f"{victim}.log").read_text()
    assert "torn" in log and "dropped" in log, log[-2000:]
