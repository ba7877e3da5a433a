"""Durable state under the crashes a new user meets: the whole cluster killed over and over
with small compaction thresholds, a power cut that damages LMDB, a stalled follower."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.system.conftest import Cluster, start_cluster
from tests.system.http import call, eventually
from tests.system.test_faults import all_clusters, assert_holds, write_clusters

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def compacting_cluster(tmp_path_factory):
    """3 nodes that snapshot and compact their journals every 20 entries."""
    c = start_cluster(tmp_path_factory, "compacting",
                      extra_args=["--log-compaction-entries", "20"])
    try:
        c.ensure_team("t1")
        yield c
    finally:
        c.stop()


class Writers:
    """Threads creating uniquely named clusters through random nodes; what was acknowledged."""

    def __init__(self, c: Cluster, threads: int = 4) -> None:
        self.c = c
        self.acked: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, writer: int) -> None:
        rng = random.Random(writer)
        for i in range(100_000):  # bounded; stops long before
            if self.stop.is_set():
                return
            name = f"w{writer}-{i}"
            body = {"name": name, "team": "t1",
                    "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
            node = rng.choice(list(self.c.nodes))
            try:
                r = call("POST", self.c.api(node) + "/clusters", body, timeout=3,
                         headers={"Idempotency-Key": name})
            except Exception:
                self.stop.wait(0.05)  # node down: pace the retries of a dead address
                continue
            if r.status == 201:
                with self.lock:
                    self.acked[name] = r.body["revision"]
            else:
                self.stop.wait(0.05)


def test_whole_cluster_killed_repeatedly_loses_no_acknowledged_write(compacting_cluster):
    """Issue 9's reproduction: --log-compaction-entries 20, four writers through random
    nodes, every node SIGKILLed together again and again."""
    c = compacting_cluster
    rounds = 8
    with Writers(c) as writers:
        for _ in range(rounds):
            before = len(writers.acked)
            eventually(lambda b=before: len(writers.acked) >= b + 30, timeout=60)
            for node_id in c.nodes:
                c.kill(node_id)
            for node_id in c.nodes:
                c.spawn(node_id)
            c.wait_ready(timeout=60)
    acked = dict(writers.acked)
    print(f"{len(acked)} acknowledged writes over {rounds} whole-cluster kills")
    assert len(acked) >= rounds * 30
    c.wait_ready(timeout=60)
    assert_holds(c, list(c.nodes), acked)
    for node_id in c.nodes:
        log = (c.data_dir / "logs" / f"{node_id}.log").read_text()
        assert "exceeds journal end" not in log, node_id


def test_power_cut_that_damages_lmdb_is_repaired_from_snapshot_and_journal(compacting_cluster):
    """Window 7: after a power cut LMDB (sync=False) may hold damaged pages; the node
    rebuilds its store from the fsynced snapshot and journal instead of trusting it."""
    c = compacting_cluster
    victim = c.followers()[0]
    acked = write_clusters(c, c.leader(), "before", 70)  # a few snapshots + compactions
    all_clusters(c, victim, max(acked.values()))
    c.kill(victim)
    data = c.data_dir / "nodes" / victim / "store" / "data.mdb"
    with data.open("r+b") as f:  # pages that never reached the disk: garbage
        size = data.stat().st_size
        for offset in range(4096 * 2, size, 4096 * 3):
            f.seek(offset)
            f.write(b"\xa5" * 4096)
    c.spawn(victim, env={"RAFTPLANE_BOOT_ID": "a-later-boot"})  # the machine rebooted
    c.wait_ready(timeout=60)
    acked |= write_clusters(c, c.leader(), "after", 10)
    assert_holds(c, list(c.nodes), acked)
    log = (c.data_dir / "logs" / f"{victim}.log").read_text()
    assert "rebuilt from the Raft snapshot and journal" in log, log[-3000:]


def test_a_clean_restart_on_another_boot_keeps_the_store(compacting_cluster):
    c = compacting_cluster
    victim = c.followers()[0]
    acked = write_clusters(c, c.leader(), "kept", 5)
    all_clusters(c, victim, max(acked.values()))
    c.kill(victim, sig=15)  # SIGTERM: a clean stop
    c.spawn(victim, env={"RAFTPLANE_BOOT_ID": "yet-another-boot"})
    c.wait_ready(timeout=60)
    assert_holds(c, list(c.nodes), acked)
    log = (c.data_dir / "logs" / f"{victim}.log").read_text()
    assert "power-loss" not in log and "rebuilt from" not in log


def test_a_stalled_follower_does_not_depose_the_leader(compacting_cluster):
    """pysyncobj campaigns before it reads its sockets; with PreVote a follower that
    wakes from a stall longer than the election timeout rejoins without a new term."""
    c = compacting_cluster
    leader = c.leader()
    term = c.status(leader)["term"]
    for victim in c.followers():
        c.pause(victim)
        time.sleep(2.5)  # the fault itself: a stall past the longest election timeout
        c.resume(victim)
        acked = write_clusters(c, leader, f"after-stall-{victim}", 3)
        eventually(lambda v=victim, a=acked: (s := c.status(v)) is not None
                   and s["appliedIndex"] >= max(a.values()), timeout=30)
    status = c.status(leader)
    assert status["role"] == "leader" and status["term"] == term, status
    r = call("GET", c.api(leader) + "/cluster/status")
    assert r.status == 200 and r.body["leader"] == leader
