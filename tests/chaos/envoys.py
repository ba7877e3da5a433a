"""Real Envoys fed through the xDS proxies of a NetCluster, with a bounded request loop.

Builds on tests/system (Envoy, Upstream, Dataplane): here an Envoy's bootstrap names every
replica by its xDS proxy, so the nemesis can cut Envoy->xDS links too.
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos.netcluster import NetCluster
from tests.system.envoy import Envoy, Traffic
from tests.system.http import call
from tests.system.test_xds import TEAM, Dataplane, versions


def start_envoy(c: NetCluster, dp: Dataplane, workdir: Path, delta: bool = False) -> Envoy:
    """An Envoy for `dp` whose xDS cluster is every node's xDS proxy."""
    endpoints = [{"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}}
                 for h, p in c.xds_endpoints()]

    def via_proxies(bootstrap: dict) -> None:
        for cluster in bootstrap["static_resources"]["clusters"]:
            cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": endpoints}]

    return Envoy(dp.api, TEAM, dp.name, workdir, delta=delta, edit=via_proxies)


def request_loop(dp: Dataplane, pace: float = 0.01) -> Traffic:
    """A bounded request loop through `dp`'s Envoy listener, long enough for a chaos run."""
    return Traffic(dp.port, "/chaos", seconds=300.0, max_requests=40_000, pace=pace)


def stored_versions(c: NetCluster, node_id: str, dp: Dataplane) -> dict[str, str]:
    """The revision of each resource of `dp` as `node_id` holds it, keyed like `versions`."""
    api = c.api(node_id)
    out = {f"lds:{dp.name}-listener": call("GET", f"{api}/listeners/{dp.name}-listener"),
           f"rds:{dp.rc}": call("GET", f"{api}/route-configs/{dp.rc}")}
    for up in ("alpha", "beta"):
        name = dp.cluster_name(up)
        out[f"cds:{name}"] = call("GET", f"{api}/clusters/{name}")
    return {k: str(r.body["revision"]) for k, r in out.items() if r.status == 200}


def holds(envoy: Envoy, expected: dict[str, str]) -> bool:
    """Does `envoy` run every resource at the revision `expected` names?"""
    try:
        held = versions(envoy)
    except (TypeError, KeyError):  # admin not answering
        return False
    return all(held.get(k, "").split(".")[0] == v for k, v in expected.items())
