"""Membership and leadership transfer with real node processes, under writes.

Each test runs a cluster of its own (it changes the members). A background writer creates
clusters through the running members and retries only `503` (nothing written) with the
same Idempotency-Key; every other failure counts. At the end every acknowledged write is on
every member.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from raftplane.devcluster import LocalNode
from tests.system.conftest import Cluster, start_cluster
from tests.system.envoy import Envoy, Traffic, Upstream
from tests.system.http import call, eventually, register_token
from tests.system.test_faults import assert_holds
from tests.system.test_xds import Dataplane

pytestmark = pytest.mark.timeout(240)
TEAM = "edge"  # Dataplane's team
ELECTION_MIN_TIMEOUT = 0.4  # raftMinTimeout (cluster/raft.py): the least an election waits


class Writer:
    """Creates clusters through the given members from a thread until stopped."""

    def __init__(self, cluster: Cluster, prefix: str, targets) -> None:
        self.cluster, self.prefix, self.targets = cluster, prefix, targets
        self.acked: dict[str, int] = {}
        self.failures: list[object] = []
        self.retried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for i in itertools.count():
            if self._stop.is_set() or i >= 5000:
                return
            self._write(f"{self.prefix}-{i}")

    def _write(self, name: str) -> None:
        body = {"name": name, "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
        deadline = time.monotonic() + 20
        for attempt in itertools.count():
            targets = self.targets()
            node = targets[attempt % len(targets)]
            try:
                r = call("POST", self.cluster.api(node) + "/clusters", body, timeout=10,
                         headers={"Idempotency-Key": name})
            except OSError as exc:  # the writer's own target went away: not the cluster's
                r = None
                if time.monotonic() > deadline:
                    self.failures.append((name, node, repr(exc)))
                    return
            if r is not None and r.status == 201:
                self.acked[name] = r.body["revision"]
                return
            if r is not None and (r.status != 503 or time.monotonic() > deadline):
                self.failures.append((name, node, r.status, r.body))
                return
            self.retried += 1
            self._stop.wait(0.05)  # back-off before a retry, not synchronisation

    def wait_for(self, count: int, timeout: float = 30) -> None:
        mark = len(self.acked)
        eventually(lambda: len(self.acked) >= mark + count, timeout=timeout)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(timeout=30)
        assert self.failures == [], self.failures[:5]
        return self.acked


@pytest.fixture
def own_cluster(tmp_path_factory):
    clusters: list[Cluster] = []

    def start(name: str) -> Cluster:
        cluster = start_cluster(tmp_path_factory, name)
        clusters.append(cluster)
        cluster.ensure_team(TEAM)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


def running(cluster: Cluster) -> list[str]:
    return [i for i, n in cluster.nodes.items() if n.pid]


def term_of(cluster: Cluster, node_id: str) -> int:
    return cluster.status(node_id)["term"]


def add_member(cluster: Cluster, through: str, node: LocalNode, voter: bool = True) -> dict:
    r = call("POST", cluster.api(through) + "/cluster/members",
             {"id": node.id, "raft": node.raft, "api": node.api, "xds": node.xds,
              "voter": voter})
    assert r.status == 202, r.body
    return r.body


def cli(cluster: Cluster, through: str, *argv: str) -> str:
    """`raftplane ARGV` (the operator CLI) against node `through`; its output (exit 0)."""
    env = os.environ | {"RAFTPLANE_SERVER": cluster.nodes[through].api,
                        "RAFTPLANE_TOKEN": cluster.admin_token,
                        "XDG_CONFIG_HOME": str(cluster.data_dir / "no-config")}
    done = subprocess.run([sys.executable, "-m", "raftplane", *argv], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


def start_joined(cluster: Cluster, node_id: str, voter: bool = True,
                 with_cli: bool = False) -> LocalNode:
    """Add a new member through the API (or the CLI), start it with an empty data dir and
    --join."""
    node = cluster.add_node(node_id)
    if with_cli:
        out = cli(cluster, cluster.leader(), "members", "add", node_id, "--raft", node.raft,
                  "--api", node.api, "--xds", node.xds)
        assert node_id in out, out
    else:
        add_member(cluster, cluster.leader(), node, voter)
    cluster.spawn(node_id)
    register_token(node.api, cluster.admin_token)
    top = cluster.status(cluster.leader())["revision"]
    eventually(lambda: (cluster.status(node_id) or {}).get("revision", 0) >= top, timeout=60)
    return node


def member_roles(cluster: Cluster, node_id: str) -> dict[str, str]:
    return {m["id"]: m["role"] for m in cluster.status(node_id)["members"]}


def test_transfer_leadership_under_writes_waits_for_no_election(own_cluster):
    c = own_cluster("transfer")
    leader = c.leader()
    term = term_of(c, leader)
    writer = Writer(c, "tl", lambda: running(c))
    try:
        writer.wait_for(20)
        target = next(i for i in c.nodes if i != leader)
        started = time.monotonic()
        r = call("POST", c.api(leader) + "/cluster/transfer-leadership", {"to": target})
        took = time.monotonic() - started
        assert r.status == 202, r.body
        first = r.body
        assert r.body["to"] == target and r.body["from"] == leader, r.body
        assert r.headers["x-raftplane-revision"] == str(r.body["revision"])
        assert c.leader() == target
        # One term further, and faster than the least an election would wait.
        assert term_of(c, target) == term + 1
        assert r.body["seconds"] < ELECTION_MIN_TIMEOUT, r.body
        assert took < ELECTION_MIN_TIMEOUT + 0.5, took
        writer.wait_for(20)
        # Through a follower (relayed to the leader), without a target: the most caught-up.
        r = call("POST", c.api(leader) + "/cluster/transfer-leadership")
        assert r.status == 202 and r.body["from"] == target, r.body
        assert c.leader() == r.body["to"] != target
        writer.wait_for(20)
        # The leader removes itself: it hands over, then relays the removal.
        gone = c.leader()
        writer.targets = lambda: [i for i in c.nodes if i != gone]
        r = call("DELETE", c.api(gone) + f"/cluster/members/{gone}")
        assert r.status == 202 and gone not in {m["id"] for m in r.body["members"]}, r.body
        assert r.headers["x-raftplane-leader"] != gone
        eventually(lambda: c.status(gone)["removed"], timeout=20)
        writer.wait_for(20)
    finally:
        acked = writer.stop()
    c.forget_node(gone)
    assert_holds(c, list(c.nodes), acked)
    print(f"transfer: {first['seconds'] * 1000:.0f} ms; {len(acked)} writes, "
          f"{writer.retried} retried after 503")


def test_refusals(own_cluster):
    c = own_cluster("refuse")
    leader = c.leader()
    api = c.api(leader)
    assert call("POST", api + "/cluster/transfer-leadership", {"to": leader}).status == 409
    assert call("POST", api + "/cluster/transfer-leadership", {"to": "nope"}).status == 409
    assert call("DELETE", api + "/cluster/members/nope").status == 404
    r = call("POST", api + "/cluster/members", {"id": "x", "raft": "nohost", "api": "ftp://x"})
    assert r.status == 422 and {e["field"] for e in r.body["errors"]} == {"raft", "api"}, r.body
    existing = c.nodes[c.followers()[0]]
    r = call("POST", api + "/cluster/members",
             {"id": "n9", "raft": existing.raft, "api": "http://127.0.0.1:1"})
    assert r.status == 409, r.body
    # One voter down of three: growing to four would leave no reachable quorum (3 of 4).
    down = c.followers()[0]
    c.kill(down)
    up = [i for i in c.nodes if i != down]
    leader = c.leader(among=up)
    eventually(lambda: not next(m for m in c.status(leader)["members"]
                                if m["id"] == down)["reachable"], timeout=10)
    r = call("POST", c.api(leader) + "/cluster/members",
             {"id": "n4", "raft": "127.0.0.1:1", "api": "http://127.0.0.1:2"})
    assert r.status == 409 and "quorum" in r.body["detail"], r.body
    # ... and removing a live voter would leave one of two.
    other = next(i for i in up if i != leader)
    r = call("DELETE", c.api(leader) + f"/cluster/members/{other}")
    assert r.status == 409 and "quorum" in r.body["detail"], r.body
    # The member list needs a token with cluster:read or the cluster secret.
    assert call("GET", c.api(leader) + "/cluster/members", auth=None).status == 401
    r = call("GET", c.api(leader) + "/cluster/members",
             headers={"Authorization": "RaftplaneJoin n9:1:00"})
    assert r.status == 401, r.body


def test_grow_to_five_and_shrink_back_under_writes_with_envoy(own_cluster, tmp_path):
    c = own_cluster("grow")
    upstream = Upstream("alpha")
    envoy = traffic = None
    writer = Writer(c, "gr", lambda: [i for i in ("n1", "n2", "n3") if c.nodes[i].pid])
    try:
        dp = Dataplane(c, c.api(c.leader()), {"alpha": upstream})
        envoy = Envoy(c.api("n1"), TEAM, dp.name, tmp_path)
        eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
        traffic = Traffic(dp.port, "/grow")
        writer.wait_for(10)
        started = time.monotonic()
        for node_id in ("n4", "n5"):
            start_joined(c, node_id, with_cli=node_id == "n5")
            writer.wait_for(10)
        grown = time.monotonic() - started
        leader = c.leader()
        roles = member_roles(c, leader)
        assert roles == dict.fromkeys(("n1", "n2", "n3", "n4", "n5"), "voter"), roles
        status = c.status(leader)
        assert all(m["reachable"] for m in status["members"]), status["members"]
        # Five voters: two may fail. Kill two old ones; the other three keep the quorum.
        down = [i for i in ("n1", "n2", "n3") if i != leader][:2]
        for node_id in down:
            c.kill(node_id)
        survivors = running(c)
        c.leader(among=survivors, timeout=30)
        mark = len(writer.acked)
        writer.targets = lambda: survivors
        eventually(lambda: len(writer.acked) >= mark + 10, timeout=30)
        for node_id in down:
            c.spawn(node_id)
        c.wait_ready(timeout=60)
        writer.targets = lambda: [i for i in ("n1", "n2", "n3") if c.nodes[i].pid]
        writer.wait_for(10)
        # Shrink back: remove n5 and n4 (through a follower: relayed).
        started = time.monotonic()
        for node_id in ("n5", "n4"):
            follower = next(i for i in ("n1", "n2", "n3") if i != c.leader())
            if node_id == "n4":  # the CLI, through a follower
                assert node_id in cli(c, follower, "members", "remove", node_id)
            else:
                r = call("DELETE", c.api(follower) + f"/cluster/members/{node_id}")
                assert r.status == 202, r.body
                assert node_id not in {m["id"] for m in r.body["members"]}
            if node_id == "n5":  # it learns it was removed (from the leader's list)
                eventually(lambda: c.status("n5")["removed"], timeout=20)
            c.forget_node(node_id)
            writer.wait_for(10)
        shrunk = time.monotonic() - started
        leader = c.leader()
        assert member_roles(c, leader) == dict.fromkeys(("n1", "n2", "n3"), "voter")
        mark = traffic.sent
        eventually(lambda: traffic.sent > mark + 20, timeout=10)
    finally:
        if traffic is not None:
            traffic.stop()
        if envoy is not None:
            envoy.stop()
        upstream.close()
        acked = writer.stop()
    assert traffic.failures == [], traffic.failures[:5]
    assert_holds(c, ["n1", "n2", "n3"], acked)
    print(f"grow 3->5: {grown:.1f} s, shrink 5->3: {shrunk:.2f} s; {len(acked)} writes, "
          f"{traffic.sent} Envoy requests, 0 failed")


def test_replace_a_sigkilled_node_by_an_empty_one(own_cluster):
    c = own_cluster("replace")
    victim = c.followers()[0]  # a leader's SIGKILL costs in-flight writes a 504 (test_faults)
    kept = [i for i in c.nodes if i != victim]
    stale_flags = c.data_dir / "cluster-at-start.json"
    stale_flags.write_text(c.cluster_file.read_text())
    writer = Writer(c, "rp", lambda: kept)
    try:
        writer.wait_for(20)
        c.kill(victim)
        r = call("DELETE", c.api(c.leader(among=kept)) + f"/cluster/members/{victim}")
        assert r.status == 202, r.body
        c.forget_node(victim)
        writer.wait_for(10)
        # The new node adds itself: --join with --advertise and an admin token.
        node = c.add_node("n4")
        c.spawn("n4", args=["--advertise", f"raft={node.raft},api={node.api},xds={node.xds}",
                            "--join-token-file", str(c.admin_token_file)])
        register_token(node.api, c.admin_token)
        top = c.status(c.leader())["revision"]
        eventually(lambda: (c.status("n4") or {}).get("revision", 0) >= top, timeout=60)
        writer.wait_for(20)
        assert member_roles(c, c.leader()) == dict.fromkeys([*kept, "n4"], "voter")
        # The member list is replicated: a restarted member takes it from its store, not
        # from its flags (here a --members file that still names the old node, not n4).
        restarted = next(i for i in kept if i != c.leader())
        c.kill(restarted)
        c.spawn(restarted, args=["--members", f"@{stale_flags}"])
        c.wait_ready(timeout=60)
        assert member_roles(c, restarted) == dict.fromkeys([*kept, "n4"], "voter")
        writer.wait_for(10)
    finally:
        acked = writer.stop()
    assert_holds(c, [*kept, "n4"], acked)


def test_rolling_restart_with_sigterm_under_writes_and_envoy_traffic(own_cluster, tmp_path):
    """Each node in turn: SIGTERM (a leader hands over first), start again, ready."""
    c = own_cluster("rolling")
    upstream = Upstream("alpha")
    envoy = traffic = writer = None
    stopping: set[str] = set()
    handovers = []
    try:
        dp = Dataplane(c, c.api(c.leader()), {"alpha": upstream})
        envoy = Envoy(c.api("n1"), TEAM, dp.name, tmp_path)
        eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
        traffic = Traffic(dp.port, "/rolling")
        writer = Writer(c, "rr", lambda: [i for i in running(c) if i not in stopping])
        writer.wait_for(20)
        for node_id in sorted(c.nodes, key=lambda i: i == c.leader()):  # the leader last
            term = term_of(c, c.leader())
            was_leader = c.leader() == node_id
            stopping.add(node_id)
            c.kill(node_id, signal.SIGTERM)
            others = [i for i in c.nodes if i != node_id]
            new_leader = c.leader(among=others)
            if was_leader:
                assert term_of(c, new_leader) == term + 1
                handovers = [json.loads(line) for line in
                             (c.data_dir / "logs" / f"{node_id}.log").read_text().splitlines()
                             if "leadership handed over" in line]
                assert len(handovers) == 1 and handovers[0]["to"] == new_leader, handovers
            writer.wait_for(10)
            c.spawn(node_id)
            c.wait_ready(timeout=60)
            stopping.discard(node_id)
            writer.wait_for(10)
        mark = traffic.sent
        eventually(lambda: traffic.sent > mark + 20, timeout=10)
    finally:
        if traffic is not None:
            traffic.stop()
        if envoy is not None:
            envoy.stop()
        upstream.close()
        acked = writer.stop() if writer is not None else {}
    assert traffic.failures == [], traffic.failures[:5]
    assert handovers and handovers[0]["seconds"] < ELECTION_MIN_TIMEOUT, handovers
    assert_holds(c, list(c.nodes), acked)
    print(f"rolling restart: handover {handovers[0]['seconds'] * 1000:.0f} ms; "
          f"{len(acked)} writes ({writer.retried} retried), {traffic.sent} Envoy requests, "
          "0 failed")


def only_replica(port: int):
    """A bootstrap edit: the Envoy talks xDS to the replica at `port` only."""

    def edit(bootstrap: dict) -> None:
        for cluster in bootstrap["static_resources"]["clusters"]:
            for group in cluster.get("load_assignment", {}).get("endpoints", []):
                group["lb_endpoints"] = [
                    e for e in group["lb_endpoints"]
                    if e["endpoint"]["address"]["socket_address"]["port_value"] == port]

    return edit


def test_a_non_voter_serves_reads_and_envoy_and_never_votes(own_cluster, tmp_path):
    c = own_cluster("nonvoter")
    upstream = Upstream("alpha")
    envoy = traffic = writer = None
    try:
        dp = Dataplane(c, c.api(c.leader()), {"alpha": upstream})
        node = start_joined(c, "nv1", voter=False)
        writer = Writer(c, "nv", lambda: ["nv1"])  # writes through the non-voter: relayed
        envoy = Envoy(c.api("nv1"), TEAM, dp.name, tmp_path,
                      edit=only_replica(int(node.xds.rsplit(":", 1)[1])))
        eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
        traffic = Traffic(dp.port, "/nv")
        writer.wait_for(20)
        leader = c.leader(among=["n1", "n2", "n3"])
        view = {m["id"]: m for m in c.status(leader)["members"]}
        assert view["nv1"]["role"] == "nonVoter" and view["nv1"]["reachable"], view["nv1"]
        assert isinstance(view["nv1"]["lag"], int), view["nv1"]
        own = c.status("nv1")
        assert own["voter"] is False and own["leader"] == leader, own
        # Reads on the non-voter: read-your-writes with minRevision.
        seen = dict(writer.acked)  # the writer goes on meanwhile
        top = max(seen.values())
        r = call("GET", c.api("nv1") + f"/clusters?limit=1000&minRevision={top}")
        assert r.status == 200 and int(r.headers["x-raftplane-revision"]) >= top
        assert set(seen) <= {item["name"] for item in r.body["items"]}
        # It does not hurt the quorum: down, the three voters go on.
        writer.targets = lambda: ["n1", "n2", "n3"]
        c.kill("nv1")
        writer.wait_for(10)
        c.spawn("nv1")
        eventually(lambda: (c.status("nv1") or {}).get("revision", 0) >= top, timeout=30)
        acked = writer.stop()
        # Nor does it help: with two voters of three down there is no leader, ever.
        term = c.status("nv1")["term"]
        down = [next(i for i in ("n1", "n2", "n3") if i != leader), leader]
        for node_id in down:
            c.kill(node_id)
        alone = next(i for i in ("n1", "n2", "n3") if i not in down)
        deadline = time.monotonic() + 6 * ELECTION_MIN_TIMEOUT
        while time.monotonic() < deadline:  # an observation window: nobody may win
            r = call("POST", c.api(alone) + "/clusters", {"name": "never", "team": TEAM,
                     "endpoints": [{"host": "127.0.0.1", "port": 9}]})
            assert r.status == 503, r.body
            assert c.status(alone)["role"] != "leader"
            assert c.status("nv1")["role"] == "follower"
        # Envoy kept serving from the non-voter all along.
        mark = traffic.sent
        eventually(lambda: traffic.sent > mark + 20, timeout=10)
        for node_id in down:
            c.spawn(node_id)
        c.wait_ready(timeout=60)
        assert c.status("nv1")["term"] > term  # a new leader was elected by voters only
        r = call("DELETE", c.api(c.leader()) + "/cluster/members/nv1")
        assert r.status == 202, r.body
        eventually(lambda: c.status("nv1")["removed"], timeout=20)
    finally:
        if traffic is not None:
            traffic.stop()
        if envoy is not None:
            envoy.stop()
        upstream.close()
        if writer is not None:
            writer.stop()
    assert traffic.failures == [], traffic.failures[:5]
    assert_holds(c, ["n1", "n2", "n3"], acked)
