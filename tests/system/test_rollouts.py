"""Canary rollouts with real Envoys on two replicas, streaming their own stats: a change that
sends the canary's traffic to a dead upstream rolls back by itself (the canary's 5xx rate
rose); a good change is promoted and reaches every Envoy; the canary alone sees the change
while it is watched (each Envoy's /config_dump)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from raftplane.devcluster import free_port
from tests.system.envoy import Envoy, Traffic
from tests.system.http import call, eventually
from tests.system.test_filters_live import EchoUpstream, active_listeners, send
from tests.system.test_fleet import only_replica

pytestmark = pytest.mark.timeout(150)
TEAM = "canary"
DP = "edge"


def routes(*prefixes: tuple[str, str]) -> dict:
    return {"name": "edge-routes", "team": TEAM, "virtualHosts": [{
        "name": "all", "domains": ["*"], "routes": [{
            "name": prefix.strip("/") or "root",
            "match": {"path": {"type": "prefix", "value": prefix}},
            "action": {"type": "forward", "cluster": cluster}} for prefix, cluster in prefixes]}]}


def clusters_of(envoy: Envoy) -> set[str]:
    return envoy.cluster_names("dynamic_active_clusters")


def build_plane(c, workdir, envoys: dict[str, Envoy], upstream: EchoUpstream) -> int:
    """The team's dataplane, an upstream, a listener (its port is returned) and two Envoys
    with their own node ids, each pinned to one follower, streaming their stats."""
    c.ensure_team(TEAM)
    api = c.api(c.leader())
    port = free_port()
    assert call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": DP}).status == 201
    assert call("POST", f"{api}/clusters", {
        "name": "edge-up", "team": TEAM,
        "endpoints": [{"host": "127.0.0.1", "port": upstream.port}]}).status == 201
    assert call("POST", f"{api}/route-configs", routes(("/", "edge-up"))).status == 201
    assert call("POST", f"{api}/listeners", {
        "name": "edge-l", "team": TEAM, "dataplaneId": DP, "address": "127.0.0.1",
        "port": port, "filterChains": [{"filters": [{
            "name": "hcm", "type": "httpConnectionManager",
            "routeConfigName": "edge-routes"}]}]}).status == 201
    for node_id, replica in zip(("edge-a", "edge-b"), c.followers()[:2], strict=True):
        envoys[node_id] = Envoy(api, TEAM, DP, workdir, edit=only_replica(c.nodes[replica].xds),
                                query=f"nodeId={node_id}&stats=true&statsFlushSeconds=1")
    for envoy in envoys.values():
        eventually(lambda e=envoy: "edge-l" in active_listeners(e), timeout=30)
    # both stream their counters (to the replica each is pinned to)
    eventually(lambda: {e["nodeId"] for node in c.followers()[:2] for e in call(
        "GET", f"{c.api(node)}/xds/envoy-stats?team={TEAM}&dataplane={DP}").body["envoys"]}
               == set(envoys), timeout=20)
    return port


@pytest.fixture(scope="module")
def plane(shared_cluster, tmp_path_factory):
    upstream = EchoUpstream()
    envoys: dict[str, Envoy] = {}
    try:
        port = build_plane(shared_cluster, tmp_path_factory.mktemp("rollouts"), envoys,
                           upstream)
        yield shared_cluster, shared_cluster.api(shared_cluster.leader()), port, envoys
    finally:
        for envoy in envoys.values():
            envoy.stop()
        upstream.close()


def watch(api: str, location: str, timeout: float = 60) -> dict:
    """The rollout once it ended."""
    return eventually(lambda: (r := call("GET", api.removesuffix("/api/v1") + location).body)
                      .get("state") != "canary" and r, timeout=timeout)


def test_a_canary_sent_to_a_dead_upstream_rolls_back_by_itself(plane):
    _, api, port, envoys = plane
    dead = {"kind": "clusters", "name": "edge-dead", "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": free_port()}]}
    bad_routes = {"kind": "route-configs", **routes(("/", "edge-dead"))}
    traffic = Traffic(port, seconds=60, max_requests=3000, pace=0.01)
    try:
        reply = call("POST", f"{api}/rollouts", {
            "team": TEAM, "dataplane": DP, "change": {"items": [dead, bad_routes]},
            "canaryPercent": 50, "watchSeconds": 20, "minRequests": 5})
        assert reply.status == 201, reply.body
        rollout = reply.body
        assert rollout["state"] == "canary" and len(rollout["canaries"]) == 1
        assert rollout["envoys"] == 2
        [canary] = rollout["canaries"]
        [other] = set(envoys) - {canary}
        # only the canary is served the change (while it is being watched)
        eventually(lambda: "edge-dead" in clusters_of(envoys[canary]), timeout=15)
        assert "edge-dead" not in clusters_of(envoys[other])
        fleet = call("GET", f"{api}/revisions/1/status?team={TEAM}&dataplane={DP}").body
        assert {e["nodeId"]: e["rollout"] for e in fleet["envoys"]} == {
            canary: f"{TEAM}/{rollout['id']}", other: None}
        ended = watch(api, reply.headers["location"])
    finally:
        traffic.stop()
    assert ended["state"] == "rolled-back", ended
    assert "5xx" in ended["reason"], ended
    observed = ended["observed"]
    assert observed["canary"]["rate"] > 0.5 and observed["baseline"]["rate"] < 0.05, observed
    assert ended["endedAt"] < rollout["deadline"]  # stopped early: it did not wait out 20 s
    # the canary is back on the stored state; nothing of the change was committed
    eventually(lambda: "edge-dead" not in clusters_of(envoys[canary]), timeout=15)
    assert call("GET", f"{api}/clusters/edge-dead").status == 404
    stored = call("GET", f"{api}/route-configs/edge-routes").body
    assert stored["virtualHosts"][0]["routes"][0]["action"]["cluster"] == "edge-up"
    assert all(send(port, "GET", "/").status == 200 for _ in range(10))
    listed = call("GET", f"{api}/rollouts?team={TEAM}").body["items"]
    assert listed[0]["id"] == rollout["id"] and "plan" not in listed[0]


def test_a_good_change_is_promoted_after_the_watch_and_reaches_every_envoy(plane):
    _, api, port, envoys = plane
    better = {"kind": "route-configs", **routes(("/v2", "edge-up"), ("/", "edge-up"))}
    traffic = Traffic(port, seconds=60, max_requests=3000, pace=0.01)
    try:
        reply = call("POST", f"{api}/rollouts", {
            "team": TEAM, "dataplane": DP, "change": {"items": [better]},
            "canaryPercent": 50, "watchSeconds": 4, "minRequests": 5})
        assert reply.status == 201, reply.body
        # one rollout per dataplane at a time
        again = call("POST", f"{api}/rollouts", {
            "team": TEAM, "dataplane": DP, "change": {"items": [better]},
            "canaryPercent": 50, "watchSeconds": 4})
        assert again.status == 409, again.body
        ended = watch(api, reply.headers["location"])
    finally:
        traffic.stop()
    assert ended["state"] == "promoted", (ended["reason"], ended.get("observed"))
    assert ended["observed"]["canary"]["requests"] >= 5 and not traffic.failures
    assert ended["endedAt"] >= reply.body["deadline"]
    stored = call("GET", f"{api}/route-configs/edge-routes").body
    assert stored["revision"] == ended["revision"]  # the change and the record's end: one entry
    assert [r["match"]["path"]["value"] for r in stored["virtualHosts"][0]["routes"]] == \
        ["/v2", "/"]

    def has_v2(envoy: Envoy) -> bool:
        return any(r["match"].get("prefix") == "/v2"
                   for entry in envoy.dynamic("dynamic_route_configs")
                   for host in entry["route_config"].get("virtual_hosts", [])
                   for r in host.get("routes", []))

    for envoy in envoys.values():
        eventually(lambda e=envoy: has_v2(e), timeout=15)
    # each step is audited under the rollout's name: its start and its promotion
    audit = call("GET", f"{api}/audit?team={TEAM}&limit=200").body
    events = audit.get("items", audit.get("events", []))
    steps = {e["revision"] for e in events if e["kind"] == "rollouts"
             and e["resource"] == f"{TEAM}/{reply.body['id']}" and e["result"] != "refused"}
    assert steps == {reply.body["revision"], ended["revision"]}, events[:5]


def test_two_rollouts_started_at_once_on_one_dataplane_one_wins(plane):
    _, api, _, _ = plane
    change = {"kind": "route-configs", **routes(("/race", "edge-up"), ("/", "edge-up"))}
    body = {"team": TEAM, "dataplane": DP, "change": {"items": [change]},
            "canaryPercent": 50, "watchSeconds": 120}
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: call("POST", f"{api}/rollouts", body), range(2)))
    assert sorted(r.status for r in replies) == [201, 409], [r.body for r in replies]
    [won] = [r for r in replies if r.status == 201]
    aborted = call("POST", api.removesuffix("/api/v1") + won.headers["location"] + "/abort", {})
    assert aborted.status == 200, aborted.body


def test_a_rollout_is_refused_with_the_field_at_fault(plane):
    _, api, _, _ = plane
    good = {"kind": "route-configs", **routes(("/", "edge-up"), ("/x", "edge-up"))}
    body = {"team": TEAM, "dataplane": DP, "change": {"items": [good]}, "canaryPercent": 0,
            "watchSeconds": 5}
    reply = call("POST", f"{api}/rollouts", body)
    assert reply.status == 422 and reply.body["errors"][0]["field"] == "canaryPercent"
    reply = call("POST", f"{api}/rollouts", body | {"canaryPercent": 10, "dataplane": "nope"})
    assert reply.status == 422 and reply.body["errors"][0]["field"] == "dataplane"
    broken = {"kind": "route-configs", **routes(("/", "no-such-cluster"))}
    reply = call("POST", f"{api}/rollouts", body | {"canaryPercent": 10,
                                                    "change": {"items": [broken]}})
    assert reply.status == 422 and reply.body["errors"][0]["field"].startswith(
        "change.items[0]"), reply.body
    unused = {"kind": "clusters", "name": "edge-unused", "team": TEAM,
              "endpoints": [{"host": "127.0.0.1", "port": 9}]}
    reply = call("POST", f"{api}/rollouts", body | {"canaryPercent": 10,
                                                    "change": {"items": [unused]}})
    assert reply.status == 422 and reply.body["errors"][0]["field"] == "change", reply.body
    assert call("POST", f"{api}/teams/{TEAM}/dataplanes", {"name": "empty"}).status == 201
    reply = call("POST", f"{api}/rollouts", body | {"canaryPercent": 10, "dataplane": "empty"})
    assert reply.status == 409 and "no Envoy" in reply.body["detail"]


def test_a_canary_that_nacks_rolls_back_at_once(plane):
    """Envoy's validate mode accepts a listener on a port another process holds, a live Envoy
    refuses to bind it (a NACK): the canary's NACK ends the rollout long before its window."""
    _, api, _, envoys = plane
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        extra = {"kind": "listeners", "name": "edge-taken", "team": TEAM, "dataplaneId": DP,
                 "address": "127.0.0.1", "port": taken.getsockname()[1], "filterChains": [{
                     "filters": [{"name": "hcm", "type": "httpConnectionManager",
                                  "routeConfigName": "edge-routes"}]}]}
        reply = call("POST", f"{api}/rollouts", {
            "team": TEAM, "dataplane": DP, "change": {"items": [extra]},
            "canaryPercent": 50, "watchSeconds": 60})
        assert reply.status == 201, reply.body
        ended = watch(api, reply.headers["location"], timeout=30)
    finally:
        taken.close()
    assert ended["state"] == "rolled-back" and "rejected" in ended["reason"], ended
    assert ended["canaries"][0] in ended["reason"]
    assert call("GET", f"{api}/listeners/edge-taken").status == 404
    [canary] = ended["canaries"]
    eventually(lambda: "edge-taken" not in active_listeners(envoys[canary]), timeout=15)


def test_abort_and_a_leader_change_roll_back(plane):
    c, api, _, _ = plane
    change = {"kind": "route-configs", **routes(("/abort", "edge-up"), ("/", "edge-up"))}
    body = {"team": TEAM, "dataplane": DP, "change": {"items": [change]},
            "canaryPercent": 50, "watchSeconds": 120}
    reply = call("POST", f"{api}/rollouts", body)
    assert reply.status == 201, reply.body
    follower = c.api(c.followers()[0])  # abort from any node: relayed to the leader
    aborted = call("POST", follower.removesuffix("/api/v1") + reply.headers["location"]
                   + "/abort", {})
    assert aborted.status == 200 and aborted.body["state"] == "rolled-back", aborted.body
    assert "aborted by" in aborted.body["reason"]
    again = call("POST", api.removesuffix("/api/v1") + reply.headers["location"] + "/abort", {})
    assert again.status == 409
    # an ended rollout can be forgotten (its record would keep its team from being deleted)
    gone = call("DELETE", api.removesuffix("/api/v1") + reply.headers["location"])
    assert gone.status == 204, gone.body
    assert call("GET", api.removesuffix("/api/v1") + reply.headers["location"]).status == 404

    # the watch's credentials stay with its leader: a new leader rolls the rollout back
    reply = call("POST", f"{api}/rollouts", body)
    assert reply.status == 201, reply.body
    moved = call("POST", f"{api}/cluster/transfer-leadership", {})
    assert moved.status in (200, 202), moved.body
    ended = watch(c.api(c.leader()), reply.headers["location"], timeout=30)
    assert ended["state"] == "rolled-back" and "leader changed" in ended["reason"], ended
    stored = call("GET", f"{c.api(c.leader())}/route-configs/edge-routes").body
    assert "/abort" not in str(stored)


def test_the_cli_follows_a_rollout_to_its_end(plane, tmp_path):
    c, api, _, _ = plane
    change = tmp_path / "routes.yaml"
    change.write_text(json.dumps({"kind": "route-configs",
                                  **routes(("/cli", "edge-up"), ("/", "edge-up"))}))
    env = os.environ | {"RAFTPLANE_SERVER": c.nodes[c.followers()[0]].api,
                        "RAFTPLANE_TOKEN": c.admin_token,
                        "XDG_CONFIG_HOME": str(tmp_path / "no-config"), "COLUMNS": "200"}

    def raftplane(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "raftplane", *argv], env=env,
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    done = raftplane("rollout", "start", "-f", str(change), "--dataplane", DP, "--percent",
                     "50", "--watch", "3", "--min-requests", "0")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "promoted" in done.stdout and "started: canaries" in done.stderr
    listed = raftplane("rollout", "list", "--team", TEAM, "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["items"][0]["state"] == \
        "promoted"
    assert "/cli" in str(call("GET", f"{api}/route-configs/edge-routes").body)


def test_a_rollout_whose_leader_is_killed_is_rolled_back_by_the_next(fresh_cluster, tmp_path):
    c = fresh_cluster
    upstream = EchoUpstream()
    envoys: dict[str, Envoy] = {}
    try:
        build_plane(c, tmp_path, envoys, upstream)
        leader = c.leader()
        change = {"kind": "route-configs", **routes(("/kill", "edge-up"), ("/", "edge-up"))}
        reply = call("POST", f"{c.api(leader)}/rollouts", {
            "team": TEAM, "dataplane": DP, "change": {"items": [change]},
            "canaryPercent": 50, "watchSeconds": 120})
        assert reply.status == 201, reply.body
        [canary] = reply.body["canaries"]

        def prefixes(envoy: Envoy) -> str:
            return str([entry["route_config"] for entry in envoy.dynamic("dynamic_route_configs")])

        eventually(lambda: "/kill" in prefixes(envoys[canary]), timeout=15)
        c.kill(leader)  # SIGKILL: its watch dies with it
        survivor = c.api(c.leader(timeout=30))
        ended = watch(survivor, reply.headers["location"], timeout=30)
        assert ended["state"] == "rolled-back" and "leader changed" in ended["reason"], ended
        eventually(lambda: "/kill" not in prefixes(envoys[canary]), timeout=15)
        assert "/kill" not in str(call("GET", f"{survivor}/route-configs/edge-routes").body)
    finally:
        for envoy in envoys.values():
            envoy.stop()
        upstream.close()
