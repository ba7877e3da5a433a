"""`raftplane dev`: a LocalCluster in the foreground until Ctrl-C, with a banner (and --demo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from raftplane.devcluster import LocalCluster, free_port

if TYPE_CHECKING:
    from raftplane.demo import DemoUpstream


def run_dev(nodes: int, data_dir: Path, log_level: str = "INFO", demo: bool = False,
            xds_tls: bool = False, api_tls: bool = False) -> int:
    """Start a local cluster, print how to use it, stay in the foreground until Ctrl-C.

    With `demo`, also start an upstream and a real Envoy configured through a follower.
    """
    cluster = LocalCluster(data_dir, nodes, log_level=log_level, xds_tls=xds_tls,
                           api_tls=api_tls)
    stop = False
    envoy = upstream = None

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
        print(f"starting {nodes} raftplane node(s) in {cluster.data_dir} ...", flush=True)
        cluster.wait_ready(timeout=60)
        leader = cluster.leader()
        print(_banner(cluster, leader), flush=True)
        if demo:
            envoy, upstream = _start_demo(cluster, leader)
        while not stop:
            for node in cluster.nodes.values():
                if node.process and node.process.poll() is not None:
                    print(f"node {node.id} exited with {node.process.returncode}; see "
                          f"{cluster.data_dir}/logs/{node.id}.log", flush=True)
                    node.process = None
            time.sleep(0.5)
    except TimeoutError as exc:
        print(f"raftplane dev: {exc}; see the logs in {cluster.data_dir}/logs", file=sys.stderr)
        return 1
    finally:
        if envoy is not None:
            envoy.terminate()
            envoy.wait(timeout=15)
        if upstream is not None:
            upstream.close()
        print("stopping nodes ...", flush=True)
        cluster.stop()
    return 0


def _start_demo(cluster: LocalCluster, leader: str) -> tuple[subprocess.Popen[bytes], DemoUpstream]:
    from raftplane import demo

    follower = next((n for n in cluster.nodes.values() if n.id != leader),
                    cluster.nodes[leader])
    state_file = cluster.data_dir / "demo.json"
    ports = json.loads(state_file.read_text()) if state_file.exists() else {
        "listener": free_port(), "admin": free_port()}
    state_file.write_text(json.dumps(ports))
    upstream = demo.DemoUpstream()
    context = cluster.ssl_context
    demo.configure(follower.api, cluster.admin_token, upstream.port, ports["listener"], context)
    envoy = demo.start_envoy(follower.api, cluster.admin_token, cluster.data_dir,
                             ports["admin"], context)
    answer = demo.wait_for_traffic(ports["listener"])
    print(os.linesep.join([
        "",
        f"Envoy is running (admin http://127.0.0.1:{ports['admin']}), configured through "
        f"{follower.id} (a follower) for dataplane {demo.TEAM}/{demo.DATAPLANE}:",
        f"  curl -s http://127.0.0.1:{ports['listener']}/hello",
        f"  -> {answer.strip()}",
        "What Envoy is told, and which Envoys are connected to this node:",
        f"  curl -s -H \"$AUTH\" {follower.api}/api/v1/teams/{demo.TEAM}/dataplanes/"
        f"{demo.DATAPLANE}/config",
        f"  curl -s -H \"$AUTH\" {follower.api}/api/v1/xds/connections",
        "",
    ]), flush=True)
    return envoy, upstream


def _banner(cluster: LocalCluster, leader: str) -> str:
    lines = ["", "raftplane cluster is up:"]
    for n in cluster.nodes.values():
        role = "leader" if n.id == leader else "follower"
        lines.append(f"  {n.id}  api {n.api}  raft {n.raft}  xds {n.xds}  ({role}, pid {n.pid})")
    follower = next(n for n in cluster.nodes.values() if n.id != leader) \
        if len(cluster.nodes) > 1 else cluster.nodes[leader]
    api = follower.api
    curl = f"curl -s --cacert {cluster.pki_dir / 'ca.pem'}" if cluster.api_tls else "curl -s"
    lines += [
        f"  cluster file: {cluster.cluster_file}",
        f"  admin token:  {cluster.admin_token_file} (mode 0600)",
        f"  xDS:          mutual TLS, CA {cluster.pki_dir / 'ca.pem'}" if cluster.xds_tls else
        "  xDS:          PLAIN TEXT (--xds-insecure): any process that reaches the xDS port "
        "gets config; use --xds-tls for mutual TLS",
        f"  REST API:     HTTPS (also between nodes), CA {cluster.pki_dir / 'ca.pem'}"
        if cluster.api_tls else
        "  REST API:     plain HTTP on 127.0.0.1; use --api-tls for HTTPS (also between nodes)",
        "",
        "Try it (writes may go to any node; followers forward them to the leader):",
        f"  export AUTH=\"Authorization: Bearer $(cat {cluster.admin_token_file})\"",
        f"  {curl} -H \"$AUTH\" -XPOST {api}/api/v1/teams -d '{{\"name\": \"payments\"}}'",
        f"  {curl} -H \"$AUTH\" -XPOST {api}/api/v1/clusters -d '{{\"name\": \"echo\", "
        "\"team\": \"payments\", \"endpoints\": [{\"host\": \"127.0.0.1\", "
        "\"port\": 9000}]}'",
        f"  {curl} -H \"$AUTH\" {api}/api/v1/clusters/echo",
        f"  {curl} -H \"$AUTH\" {api}/api/v1/cluster/status",
        "",
        "Ctrl-C stops every node.",
    ]
    return os.linesep.join(lines)
