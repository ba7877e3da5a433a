"""A local cluster whose every link can be cut or degraded with Toxiproxy.

pysyncobj keeps one TCP connection per pair of nodes, opened by the node with the greater
address, and identifies a peer by the address it announces. So each pair gets one proxy on
the opener's side (`--raft-dial`), and the peer stays the same peer through it. Clients and
Envoys reach each node's REST API and xDS through proxies of their own.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.faults.toxiproxy import ToxiproxyHandle, proxy_for
from tests.system.conftest import Cluster
from tests.system.http import register_token


class NetCluster(Cluster):
    """A LocalCluster with a proxy on every Raft link and in front of every API and xDS port."""

    def __init__(self, data_dir: Path, nodes: int, toxiproxy: ToxiproxyHandle, **kw) -> None:
        super().__init__(data_dir, nodes, **kw)
        self.toxiproxy = toxiproxy
        self.raft_links: dict[frozenset[str], object] = {}
        self.api_proxies: dict[str, tuple[object, str]] = {}
        self.xds_proxies: dict[str, tuple[object, str]] = {}

    def start(self) -> NetCluster:
        self.prepare()
        for a, b in itertools.combinations(sorted(self.nodes), 2):
            na, nb = self.nodes[a], self.nodes[b]
            opener, target = (na, nb) if na.raft > nb.raft else (nb, na)
            proxy, listen = proxy_for(self.toxiproxy, f"raft-{opener.id}-{target.id}",
                                      target.raft)
            self.raft_links[frozenset((a, b))] = proxy
            self.node_args.setdefault(opener.id, []).extend(["--raft-dial",
                                                             f"{target.id}={listen}"])
        for node_id, node in self.nodes.items():
            self.api_proxies[node_id] = proxy_for(self.toxiproxy, f"api-{node_id}",
                                                  node.api.removeprefix("http://"))
            self.xds_proxies[node_id] = proxy_for(self.toxiproxy, f"xds-{node_id}", node.xds)
        for node_id in self.nodes:
            self.spawn(node_id)
        return self

    def wait_ready(self, *args, **kwargs) -> None:
        super().wait_ready(*args, **kwargs)
        for _, listen in self.api_proxies.values():  # requests via proxies carry it too
            register_token(f"http://{listen}", self.admin_token)

    def client_api(self, node_id: str) -> str:
        """The node's REST API as clients reach it (through its proxy)."""
        return f"http://{self.api_proxies[node_id][1]}/api/v1"

    def xds_endpoints(self) -> list[tuple[str, int]]:
        """Every node's xDS address as Envoys reach it (through its proxy)."""
        return [(host, int(port)) for _, listen in self.xds_proxies.values()
                for host, _, port in [listen.rpartition(":")]]

    # ---- link faults ------------------------------------------------------------------------
    def links_between(self, group_a: set[str], group_b: set[str]) -> list:
        return [proxy for pair, proxy in self.raft_links.items()
                if len(pair & group_a) == 1 and len(pair & group_b) == 1]

    def partition(self, *groups: set[str]) -> None:
        """Cut every Raft link between different groups."""
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                for proxy in self.links_between(a, b):
                    proxy.disable()

    def isolate(self, node_id: str) -> None:
        self.partition({node_id}, set(self.nodes) - {node_id})

    def heal(self) -> None:
        """Reconnect every link (Raft, API, xDS) and remove every toxic."""
        for proxy in self.raft_links.values():
            for toxic in list(proxy.toxics()):
                proxy.destroy_toxic(toxic)
            proxy.enable()
        for proxy, _ in [*self.api_proxies.values(), *self.xds_proxies.values()]:
            if not proxy.enabled:
                proxy.enable()

    def degrade(self, toxic: str, attributes: dict, toxicity: float = 1.0) -> None:
        """Add a toxic to every Raft link, both directions."""
        for proxy in self.raft_links.values():
            for stream in ("upstream", "downstream"):
                proxy.add_toxic(type=toxic, stream=stream, toxicity=toxicity,
                                attributes=attributes, name=f"{toxic}-{stream}")
