"""Prometheus metrics of one node (its own registry, served at /metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from raftplane.storage.store import StoreStats


class ApiMetrics:
    """Counters and gauges of the REST API and the Raft node."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("raftplane_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("raftplane_http_request_seconds", "HTTP request latency",
                                 ["method", "route"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                          5, 10))
        self.forwarded = Counter("raftplane_forwarded_writes_total",
                                 "Writes relayed to the leader", ["status"], registry=r)
        self.write_outcomes = Counter("raftplane_write_outcomes_total",
                                      "Applied write outcomes on this leader", ["outcome"],
                                      registry=r)
        self.role = Gauge("raftplane_raft_is_leader", "1 when this node leads", registry=r)
        self.term = Gauge("raftplane_raft_term", "Current Raft term", registry=r)
        self.commit_index = Gauge("raftplane_raft_commit_index", "Raft commit index", registry=r)
        self.applied_index = Gauge("raftplane_applied_revision", "Last applied revision",
                                   registry=r)
        self.journal_syncs = Gauge("raftplane_journal_syncs", "Journal fsyncs (group commits)",
                                   registry=r)
        self.journal_entries = Gauge("raftplane_journal_synced_entries",
                                     "Journal entries made durable", registry=r)
        self.log_entries = Gauge("raftplane_proposed_entries", "Log entries proposed here",
                                 registry=r)
        self.log_commands = Gauge("raftplane_proposed_commands",
                                  "Commands proposed here (several per entry)", registry=r)
        self.store_used = Gauge("raftplane_store_used_bytes",
                                "LMDB bytes in use (pages up to the highest used)", registry=r)
        self.store_map_size = Gauge("raftplane_store_map_size_bytes",
                                    "LMDB map size (grows by doubling)", registry=r)
        self.audit_events = Gauge("raftplane_audit_events", "Audit events kept", registry=r)
        self.audit_oldest = Gauge("raftplane_audit_oldest_revision",
                                  "Revision of the oldest audit event kept (0: none)", registry=r)
        self.idempotency_keys = Gauge("raftplane_idempotency_keys",
                                      "Idempotency-Key results kept", registry=r)

    def observe_store(self, stats: StoreStats) -> None:
        """Set the store gauges from `Store.stats()`."""
        self.store_used.set(stats["usedBytes"])
        self.store_map_size.set(stats["mapSize"])
        self.audit_events.set(stats["auditEvents"])
        self.audit_oldest.set(stats["oldestAuditRevision"] or 0)
        self.idempotency_keys.set(stats["idempotencyKeys"])
