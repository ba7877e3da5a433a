"""deploy/: every manifest valid for Kubernetes (kubernetes-validate's offline schemas,
strict), the ServiceMonitor pointing at a Service port that exists, the StatefulSet's
settings all read by `raftplane serve`, and the Grafana dashboard using only metrics a live
node exports."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor"}  # no offline schema: checked by hand below


def manifests() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


@pytest.mark.parametrize(("file", "doc"), [
    pytest.param(f, d, id=f"{f}:{d['kind']}/{d['metadata']['name']}") for f, d in manifests()
    if d["kind"] not in CRD_KINDS])
def test_manifest_is_valid_kubernetes(file: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_service_monitor_scrapes_a_port_of_one_service() -> None:
    docs = [d for _, d in manifests()]
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service"
                and wanted.items() <= d["metadata"].get("labels", {}).items()]
    selected = [tuple(sorted(s["spec"]["selector"].items())) for s in services]
    assert len(selected) == len(set(selected)) == 2, "voters and non-voters, each pod once"
    for service in services:
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_every_statefulset_setting_is_read_by_serve() -> None:
    cli = (ROOT / "raftplane" / "cli.py").read_text()
    read = set(re.findall(r'_env\("([A-Z_]+)"', cli))
    for doc in (d for _, d in manifests() if d["kind"] == "StatefulSet"):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "serve"
        names = {e["name"].removeprefix("RAFTPLANE_") for e in container["env"]
                 if e["name"].startswith("RAFTPLANE_")}
        assert names <= read, f"not read by `raftplane serve`: {names - read}"


def test_the_dashboard_uses_only_exported_metrics(shared_cluster) -> None:
    node = next(iter(shared_cluster.nodes.values()))
    with urllib.request.urlopen(node.api + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    exported |= {f"{name}_bucket" for name in exported} | {
        f"{name}_total" for name in exported}
    dashboard = (DEPLOY / "grafana" / "raftplane.json").read_text()
    used = set(re.findall(r"raftplane_[a-z0-9_]+", dashboard))
    assert used, "the dashboard queries raftplane metrics"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
