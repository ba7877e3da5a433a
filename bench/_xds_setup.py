"""The xDS benches' cluster and resources (convergence.py and fanout.py).

A LocalCluster started in-process (its node processes are our children), one team and
dataplane whose listener and route config reference one cluster.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _http import http_json
from _raftplane_api import TEAM, read_cluster_json

DATAPLANE = "dp1"
XDS_CLUSTER = "bench-upstream"
XDS_ROUTES = "bench-routes"
XDS_LISTENER = "bench-listener"


def must(status_body: tuple[int, Any], what: str, ok: Sequence[int] = (200, 201)) -> Any:
    """The body of a setup call, or RuntimeError naming ``what``."""
    status, body = status_body
    if status not in ok:
        raise RuntimeError(f"{what}: HTTP {status} {body}")
    return body


@dataclass
class BenchCluster:
    """A started LocalCluster, its leader and the admin token's headers."""

    cluster: Any  # raftplane.devcluster.LocalCluster
    leader: str
    headers: dict[str, str]
    keep: bool = False  # set to keep the data dir (e.g. after failed measurements)

    def base(self, node_id: str) -> str:
        """Base URL of a node's REST API (``.../api/v1``)."""
        return str(self.cluster.nodes[node_id].api) + "/api/v1"

    def follower(self) -> str:
        return next(i for i in self.cluster.nodes if i != self.leader)

    def call(
        self,
        method: str,
        node_id: str,
        path: str,
        body: Any | None = None,
        *,
        what: str,
        ok: Sequence[int] = (200, 201),
        timeout: float = 10.0,
    ) -> Any:
        """An authenticated setup call on one node; its body, or RuntimeError naming ``what``."""
        url = self.base(node_id) + path
        return must(http_json(method, url, body, timeout, self.headers), what, ok)


@contextlib.contextmanager
def local_cluster(
    work_dir: str | None, keep: bool, prefix: str, extra_args: Sequence[str] = ()
) -> Iterator[BenchCluster]:
    """A fresh 3-node LocalCluster (log level WARNING) in a temp dir; always stopped.

    ``extra_args`` are more ``raftplane serve`` flags for every node.

    The API token is the admin token that cluster.json's ``adminTokenFile`` names. The dir
    (with the node logs) is kept with ``keep``, ``BenchCluster.keep`` or on an error (not on
    Ctrl-C).
    """
    from raftplane.devcluster import LocalCluster

    data_dir = tempfile.mkdtemp(prefix=prefix, dir=work_dir)
    cluster = LocalCluster(Path(data_dir), 3, log_level="WARNING", extra_args=list(extra_args))
    try:
        cluster.start()
        cluster.wait_ready(timeout=60)
        nodes = read_cluster_json(str(cluster.cluster_file))
        if not nodes[0].token:
            raise RuntimeError(f"no admin token in {cluster.cluster_file}")
        bc = BenchCluster(cluster, cluster.leader(timeout=30), nodes[0].headers)
        yield bc
        keep = keep or bc.keep
    except Exception:
        keep = True
        raise
    finally:
        try:
            cluster.stop()
        finally:  # a (second) Ctrl-C during stop() must not leave nodes or the dir behind
            for n in cluster.nodes.values():
                if n.process is not None and n.process.poll() is None:
                    n.process.kill()
                    n.process.wait(timeout=10)
            if keep:
                print(f"# kept {data_dir} (node logs in logs/)", file=sys.stderr)
            else:
                shutil.rmtree(data_dir, ignore_errors=True)


def route_config(variant: int, extra_clusters: Sequence[str] = ()) -> dict[str, Any]:
    """The bench route config; the two variants differ in the route's name and prefix.
    ``extra_clusters`` each get a route of their own (so the dataplane's view holds them)."""
    prefix = "/" if variant % 2 == 0 else "/v"
    route = {
        "name": f"variant-{variant % 2}",
        "match": {"path": {"type": "prefix", "value": prefix}},
        "action": {"type": "forward", "cluster": XDS_CLUSTER},
    }
    extra = [
        {
            "name": f"to-{name}",
            "match": {"path": {"type": "prefix", "value": f"/{name}/"}},
            "action": {"type": "forward", "cluster": name},
        }
        for name in extra_clusters
    ]
    vhost = {"name": "all", "domains": ["*"], "routes": [*extra, route]}
    return {"name": XDS_ROUTES, "team": TEAM, "virtualHosts": [vhost]}


def cluster_body(
    upstream_port: int, connect_timeout: float = 5, name: str = XDS_CLUSTER
) -> dict[str, Any]:
    """The bench cluster (one endpoint: the upstream)."""
    return {
        "name": name,
        "team": TEAM,
        "connectTimeoutSeconds": connect_timeout,
        "endpoints": [{"host": "127.0.0.1", "port": upstream_port}],
    }


def create_dataplane(
    bc: BenchCluster, upstream_port: int, listen_port: int, extra_clusters: int = 0
) -> int:
    """Team, dataplane, cluster, route config and listener via the leader; last revision.
    ``extra_clusters`` more clusters are in the dataplane's view (a route each)."""
    lead = bc.leader
    bc.call("POST", lead, "/teams", {"name": TEAM}, what="team", ok=(201, 409))
    bc.call("POST", lead, f"/teams/{TEAM}/dataplanes", {"name": DATAPLANE}, what="dataplane")
    bc.call("POST", lead, "/clusters", cluster_body(upstream_port), what="cluster")
    extra = [f"bench-extra-{i}" for i in range(extra_clusters)]
    for name in extra:
        bc.call("POST", lead, "/clusters", cluster_body(upstream_port, name=name), what=name)
    bc.call("POST", lead, "/route-configs", route_config(0, extra), what="route config")
    hcm = {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": XDS_ROUTES}
    listener = {
        "name": XDS_LISTENER,
        "team": TEAM,
        "address": "127.0.0.1",
        "port": listen_port,
        "dataplaneId": DATAPLANE,
        "filterChains": [{"filters": [hcm]}],
    }
    return int(bc.call("POST", lead, "/listeners", listener, what="listener")["revision"])


def bench_connections(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The bench dataplane's streams in a ``GET /api/v1/xds/connections`` answer."""
    return [c for c in doc["connections"] if c["dataplane"] == f"{TEAM}/{DATAPLANE}"]


def xds_connections(bc: BenchCluster, node_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """``GET /api/v1/xds/connections`` of one node: its streams of the bench dataplane."""
    return bench_connections(
        bc.call("GET", node_id, "/xds/connections", what="xds connections", timeout=timeout)
    )


def acked_version(conn: dict[str, Any], short: str) -> str:
    """A stream's ``ackedVersion`` of one type (``cds``, ``rds``, ...), or ``""``."""
    return str(conn["types"].get(short, {}).get("ackedVersion", ""))
