"""xDS under faults: real Envoys keep carrying traffic while the nemesis runs against the
control plane, and converge to the final revision after the heal; quorum loss answers 503
fast while Envoys keep their config, and heals without operator action; routes moving to
clusters an Envoy did not have drop no request."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.envoys import holds, request_loop, start_envoy, stored_versions
from tests.chaos.nemesis import Nemesis
from tests.chaos.netcluster import NetCluster
from tests.chaos.run import NODE_ARGS, heal
from tests.faults.toxiproxy import start_toxiproxy
from tests.system.conftest import start_cluster
from tests.system.envoy import Envoy, Upstream
from tests.system.http import call, eventually, poll
from tests.system.test_xds import TEAM, Dataplane, forward, route_config, versions

QUORUM_LOSS_SECONDS = 8.0  # past pysyncobj's leaderFallbackTimeout (3 s)
XDS_SCHEDULE = ["kill-xds-replica", "cut-xds", "kill-leader", "pause-leader", "split",
                "isolate-follower", "latency", "restart-all", "kill-follower"]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetCluster]:
    """A 3-node NetCluster (its own toxiproxy), stopped afterwards whatever happens."""
    with start_toxiproxy() as toxiproxy:
        cluster = NetCluster(tmp_path / "cluster", 3, toxiproxy, extra_args=NODE_ARGS)
        try:
            cluster.start()
            cluster.wait_ready(timeout=60)
            cluster.ensure_team(TEAM)
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def upstreams() -> Iterator[dict[str, Upstream]]:
    ups = {name: Upstream(name) for name in ("alpha", "beta")}
    yield ups
    for up in ups.values():
        up.close()


def stopped_afterwards() -> Iterator[list]:
    """A list for things with a stop() (Envoys, request loops), stopped at teardown."""
    started: list = []
    yield started
    for thing in started:
        thing.stop()


envoys = pytest.fixture(stopped_afterwards, name="envoys")
traffic = pytest.fixture(stopped_afterwards, name="traffic")


def routes(n: int, dp: Dataplane) -> list[dict]:
    """Route config number `n`: traffic to "/" always reaches alpha; both clusters in use."""
    return [forward(f"v{n}", f"/v{n}/", dp.cluster_name("beta")),
            forward("all", "/", dp.cluster_name("alpha"))]


class RouteWriter:
    """Changes the dataplanes' routes through random nodes while faults go on."""

    def __init__(self, c: NetCluster, dps: list[Dataplane], pace: float = 0.3) -> None:
        self.c, self.dps, self.pace = c, dps, pace
        self.acked = 0
        self.tried = 0
        self._n = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def write(self, dp: Dataplane, api: str) -> int | None:
        n = next(self._n)
        try:
            r = call("PUT", f"{api}/route-configs/{dp.rc}", route_config(dp.rc, routes(n, dp)),
                     headers={"Idempotency-Key": f"routes-{dp.name}-{n}"}, timeout=4,
                     auth=self.c.admin_token)
        except OSError:
            return None
        return revision_of(r)

    def _loop(self) -> None:
        rng = random.Random(1)
        while not self._stop.is_set() and self.tried < 2000:
            self.tried += 1
            node = rng.choice(sorted(self.c.nodes))
            self.acked += self.write(rng.choice(self.dps), self.c.client_api(node)) is not None
            self._stop.wait(self.pace)  # pacing between writes

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def converge(c: NetCluster, dps: list[Dataplane], envoys: list[Envoy],
             timeout: float = 60.0) -> float:
    """Seconds until every Envoy runs the revisions the leader holds for its dataplane (read
    again at each poll: a write forwarded before the heal may still land)."""
    started = time.monotonic()
    leader = c.leader(timeout=timeout)
    for envoy, dp in zip(envoys, dps, strict=True):
        remaining = max(0.0, timeout - (time.monotonic() - started))
        ok, _ = poll(lambda e=envoy, d=dp: holds(e, stored_versions(c, leader, d)),
                     timeout=remaining, interval=0.1)
        assert ok, (f"{dp.name}: Envoy holds {versions(envoy)}, {leader} stores "
                    f"{stored_versions(c, leader, dp)}; "
                    f"xDS: {call('GET', c.api(leader) + '/xds/connections').body}")
    return time.monotonic() - started


def revision_of(reply) -> int | None:
    """The revision a successful write answered, else None."""
    return reply.body["revision"] if reply.status in (200, 201) else None


@pytest.mark.timeout(240)
def test_envoys_carry_traffic_through_every_fault(net, upstreams, envoys, traffic, tmp_path):
    c = net
    leader = c.leader()
    dps = [Dataplane(c, c.api(leader), upstreams) for _ in range(2)]
    for dp, delta in zip(dps, (False, True), strict=True):
        envoys.append(start_envoy(c, dp, tmp_path, delta=delta))
        eventually(lambda dp=dp: dp.serves("/", "alpha /"), timeout=30)
    traffic += [request_loop(dp) for dp in dps]
    writer = RouteWriter(c, dps)
    nemesis = Nemesis(c, XDS_SCHEDULE, seed=9, hold=2.5, rest=1.0)
    try:
        nemesis.run()
    finally:
        heal(c)
        writer.stop()
    healed = time.monotonic()
    final = [eventually(lambda dp=dp: writer.write(dp, c.api(c.leader())), timeout=30)
             for dp in dps]
    took = converge(c, dps, envoys)
    for t in traffic:
        t.stop()
    print(*nemesis.log, sep="\n")
    print(f"requests through Envoy: {sum(t.sent for t in traffic)}, failed: "
          f"{sum(len(t.failures) for t in traffic)}; route writes acked {writer.acked} of "
          f"{writer.tried}; final revisions {final}; Envoys converged {took:.2f}s after the "
          f"final write ({time.monotonic() - healed:.2f}s after the heal)")
    assert all(t.failures == [] for t in traffic), [t.failures[:5] for t in traffic]
    assert all(t.sent > 500 for t in traffic)
    assert sorted(nemesis.injected) == sorted(XDS_SCHEDULE)
    assert all(took is not None for _, took in nemesis.recovery), nemesis.recovery
    for envoy, dp, revision in zip(envoys, dps, final, strict=True):
        assert int(versions(envoy)[f"rds:{dp.rc}"].split(".")[0]) >= revision


@pytest.mark.timeout(180)
def test_quorum_loss_fails_writes_fast_keeps_envoy_config_and_heals_alone(
        net, upstreams, envoys, traffic, tmp_path):
    c = net
    dp = Dataplane(c, c.api(c.leader()), upstreams)
    envoys.append(start_envoy(c, dp, tmp_path))
    eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
    before = versions(envoys[0])
    traffic.append(request_loop(dp))
    body = {"name": "during-quorum-loss", "team": TEAM,
            "endpoints": [{"host": "127.0.0.1", "port": 9000}]}
    ids = sorted(c.nodes)
    try:
        cut = time.monotonic()
        c.partition(*({n} for n in ids))  # no node reaches another: no quorum anywhere
        for n in ids:  # once a node sees its peer connections gone, 503 at once
            eventually(lambda n=n: call("POST", c.client_api(n) + "/clusters", body,
                                        timeout=5).status == 503, timeout=30)
        noticed = time.monotonic() - cut
        slowest, probes = 0.0, itertools.cycle(ids)
        while time.monotonic() - cut < QUORUM_LOSS_SECONDS:  # hold the outage, probing it
            n = next(probes)
            started = time.monotonic()
            r = call("POST", c.client_api(n) + "/clusters", body, timeout=5)
            slowest = max(slowest, time.monotonic() - started)
            assert r.status == 503 and r.headers.get("retry-after"), (n, r.status, r.body)
            local = call("GET", f"{c.client_api(n)}/route-configs/{dp.rc}", timeout=5)
            assert local.status == 200  # local reads keep being served
            time.sleep(0.05)  # pacing of the probes
        assert dp.get("/quorum-lost") == (200, "alpha /quorum-lost")
        assert versions(envoys[0]) == before  # Envoy keeps its config
        assert slowest < 1.0, slowest
    finally:
        c.heal()  # no operator action beyond reconnecting the network
    healed = time.monotonic()
    api = c.client_api(ids[0])
    revision = eventually(lambda: revision_of(call("PUT", f"{api}/route-configs/{dp.rc}",
                                                   route_config(dp.rc, [forward(
                                                       "all", "/", dp.cluster_name("beta"))]),
                                                   timeout=5)), timeout=30)
    writable = time.monotonic() - healed
    eventually(lambda: dp.serves("/after", "beta /after"), timeout=30)
    converged = time.monotonic() - healed
    loop = traffic[0]
    loop.stop()
    print(f"every node answered 503 {noticed:.2f}s after the partition (then, for "
          f"{QUORUM_LOSS_SECONDS:g}s, within {slowest * 1000:.0f} ms); writable again "
          f"{writable:.2f}s after the heal (revision {revision}); Envoy on the new routes "
          f"{converged:.2f}s after the heal; requests {loop.sent}, failed "
          f"{len(loop.failures)}")
    # Through the whole outage and its heal, Envoy served every request (alpha, then beta).
    assert loop.failures == [], loop.failures[:5]
    names = [i["name"] for i in call("GET", f"{c.api(c.leader())}/clusters?team={TEAM}"
                                            f"&minRevision={revision}").body["items"]]
    assert "during-quorum-loss" not in names


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_routes_moving_to_a_new_cluster_drop_no_request(tmp_path_factory, upstreams, envoys,
                                                         traffic, tmp_path, mode):
    """Regression: routes were pushed with the cluster they newly use, before Envoy had that
    cluster's endpoints; it ran them at once and answered 503 (no cluster) meanwhile."""
    c = start_cluster(tmp_path_factory, "switch")
    try:
        c.ensure_team(TEAM)
        dp = Dataplane(c, c.api(c.leader()), upstreams)
        envoys.append(Envoy(dp.api, TEAM, dp.name, tmp_path, delta=mode == "delta"))
        eventually(lambda: dp.serves("/", "alpha /"), timeout=30)
        traffic += [request_loop(dp, pace=0.0) for _ in range(4)]
        for i in range(20):  # each switch adds one cluster to the Envoy and removes the other
            target = dp.cluster_name("beta" if i % 2 == 0 else "alpha")
            dp.set_routes([forward("all", "/", target)])
            eventually(lambda t=target: dp.serves("/x", f"{t.rpartition('-')[2]} /x"),
                       timeout=20)
        for loop in traffic:
            loop.stop()
        print(f"{mode}: {sum(t.sent for t in traffic)} requests over 20 route switches")
        assert [t.failures for t in traffic] == [[]] * 4
        assert envoys[0].stat(f"http.{dp.name}-listener.no_cluster") == 0
    finally:
        c.stop()
