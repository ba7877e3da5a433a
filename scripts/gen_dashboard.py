"""Write deploy/grafana/raftplane.json, the Grafana dashboard of a raftplane cluster.

Every query uses a metric raftplane exports (tests/system/test_deploy.py checks the names
against a live node's /metrics). Run: .venv/bin/python scripts/gen_dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "raftplane.json"

# (title, unit, [(PromQL, legend)]) per panel, two panels a row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Leader and term", "short", [
        ("max by (pod) (raftplane_raft_is_leader)", "{{pod}} leads"),
        ("max(raftplane_raft_term)", "term")]),
    ("Commit index and applied revision", "short", [
        ("max(raftplane_raft_commit_index)", "commit index"),
        ("raftplane_applied_revision", "applied {{pod}}")]),
    ("Apply lag (commit - applied)", "short", [
        ("max(raftplane_raft_commit_index) - on() group_right raftplane_applied_revision",
         "{{pod}}")]),
    ("Writes by outcome", "ops", [
        ("sum by (outcome) (rate(raftplane_write_outcomes_total[1m]))", "{{outcome}}")]),
    ("Forwarded writes", "ops", [
        ("sum by (status) (rate(raftplane_forwarded_writes_total[1m]))", "{{status}}")]),
    ("HTTP p99 latency by route", "s", [
        ("histogram_quantile(0.99, sum by (le, route) "
         "(rate(raftplane_http_request_seconds_bucket[5m])))", "{{route}}")]),
    ("HTTP requests", "reqps", [
        ("sum by (status) (rate(raftplane_http_requests_total[1m]))", "{{status}}")]),
    ("Journal group commits", "ops", [
        ("rate(raftplane_journal_syncs[1m])", "syncs {{pod}}"),
        ("rate(raftplane_journal_synced_entries[1m])", "entries {{pod}}")]),
    ("Proposed entries and commands", "ops", [
        ("rate(raftplane_proposed_entries[1m])", "entries {{pod}}"),
        ("rate(raftplane_proposed_commands[1m])", "commands {{pod}}")]),
    ("xDS streams", "short", [
        ("sum by (pod, stream) (raftplane_xds_streams)", "{{pod}} {{stream}}")]),
    ("xDS pushes", "ops", [
        ("sum by (type) (rate(raftplane_xds_pushes_total[1m]))", "{{type}}")]),
    ("xDS push p99 (applied -> sent)", "s", [
        ("histogram_quantile(0.99, sum by (le, type) "
         "(rate(raftplane_xds_push_seconds_bucket[5m])))", "{{type}}")]),
    ("xDS NACKs", "ops", [
        ("sum by (type) (rate(raftplane_xds_nacks_total[5m]))", "{{type}}")]),
    ("Store size", "bytes", [
        ("raftplane_store_used_bytes", "used {{pod}}"),
        ("raftplane_store_map_size_bytes", "map {{pod}}")]),
    ("Audit trail and idempotency records", "short", [
        ("raftplane_audit_events", "audit events {{pod}}"),
        ("raftplane_idempotency_keys", "idempotency keys {{pod}}")]),
    ("Oldest audit revision held", "short", [
        ("raftplane_audit_oldest_revision", "{{pod}}")]),
]


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(queries)],
    }


def dashboard() -> dict[str, Any]:
    return {
        "title": "raftplane",
        "uid": "raftplane",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "tags": ["raftplane", "envoy", "raft"],
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT} ({len(PANELS)} panels)")
