"""Node configuration: from command-line flags or RAFTPLANE_* environment variables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """The node cannot start with this configuration (the message says why)."""


@dataclass(frozen=True)
class Member:
    """One member of the cluster and how to reach it (a voter unless `voter` is False)."""

    id: str
    raft: str  # host:port of its Raft listener
    api: str  # base URL of its REST API, e.g. http://127.0.0.1:8080
    xds: str = ""  # host:port of its xDS gRPC listener
    voter: bool = True  # False: a non-voting member (replicates, serves, never votes)

    @classmethod
    def parse(cls, text: str) -> Member:
        """Parse `id=ID,raft=HOST:PORT,api=URL[,xds=HOST:PORT][,voter=false]`."""
        fields = dict(
            (k.strip(), v.strip())
            for k, v in (part.split("=", 1) for part in text.split(",") if "=" in part)
        )
        missing = {"id", "raft", "api"} - fields.keys()
        if missing:
            raise ConfigError(f"member '{text}' lacks {', '.join(sorted(missing))}")
        voter = fields.get("voter", "true").lower() not in ("false", "0", "no")
        return cls(fields["id"], fields["raft"], fields["api"].rstrip("/"), fields.get("xds", ""),
                   voter)

    def __str__(self) -> str:
        return f"id={self.id},raft={self.raft},api={self.api},xds={self.xds}"

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "raft": self.raft, "api": self.api, "xds": self.xds,
                "voter": self.voter}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Member:
        return cls(str(doc["id"]), str(doc["raft"]), str(doc["api"]).rstrip("/"),
                   str(doc.get("xds") or ""), bool(doc.get("voter", True)))


@dataclass(frozen=True)
class XdsTls:
    """PEM files for mutual TLS on xDS, and the CA that signs Envoy client certificates."""

    cert: Path  # this node's server certificate
    key: Path
    ca: Path  # verifies Envoy client certificates (and is what Envoys trust)
    ca_key: Path | None = None  # lets this node issue Envoy client certificates

    def read(self) -> tuple[bytes, bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()


@dataclass(frozen=True)
class ApiTls:
    """PEM files for HTTPS on the REST API; `ca` verifies the other nodes when forwarding."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class NodeConfig:
    """Everything one node needs to run."""

    node_id: str
    data_dir: Path
    members: tuple[Member, ...]
    api_listen: str = "127.0.0.1:8080"
    raft_listen: str = ""  # defaults to this member's raft address
    xds_listen: str = ""  # where this node serves xDS ("" = this member's xds address)
    xds_dns_name: str = ""  # host:port of a headless Service naming every replica
    xds_tls: XdsTls | None = None  # mTLS for xDS; None needs xds_insecure
    xds_insecure: bool = False  # serve plain-text xDS (explicit opt-in)
    api_tls: ApiTls | None = None  # HTTPS on the REST API and between nodes
    secret: str | None = None
    write_timeout: float = 10.0  # seconds a write may wait for commit+apply before 504
    forward_timeout: float = 15.0
    # Seconds without a leader after which authenticated REST reads answer 503 (unless the
    # client asks ?consistency=stale): a cut-off node stops honouring tokens it cannot check.
    max_stale: float = 30.0
    max_body_bytes: int = 1 << 20
    # Retention this node puts into the entries it proposes as leader (apply uses the entry's).
    audit_max_age: float = 30 * 86400.0  # seconds; 0: no age limit
    audit_max_events: int = 1_000_000  # 0: no count limit
    idempotency_ttl: float = 86400.0  # seconds an Idempotency-Key's result is kept
    raft_options: dict[str, object] = field(default_factory=dict)  # SyncObjConf's
    # Peer id -> host:port to dial instead of its member address (proxies, NAT).
    raft_dial: dict[str, str] = field(default_factory=dict)
    parent_pid: int = 0  # stop once this process is no longer our parent (dev clusters)
    # Seconds a SIGTERM waits for leadership to move to another voter before stopping.
    handover_timeout: float = 5.0
    # Each node serves at most ceil(cluster streams / healthy nodes x factor) xDS streams,
    # at least `floor` (xds/shed.py); factor 0 turns shedding off.
    xds_share_factor: float = 1.1
    xds_share_floor: int = 100
    xds_share_period: float = 2.0  # seconds between asking the peers their stream counts
    xds_drain_rate: float = 10.0  # streams shed per second past the share (0: only new)
    # Started with --join: it joins a cluster that has its state, so it holds no election
    # while it is empty (a node added to a running cluster, the empty members of a
    # restored one).
    join: bool = False

    @property
    def me(self) -> Member:
        for member in self.members:
            if member.id == self.node_id:
                return member
        raise ConfigError(f"node id '{self.node_id}' is not among the members")

    @property
    def peers(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.id != self.node_id)

    def member_by_raft(self, raft_addr: str) -> Member | None:
        return next((m for m in self.members if m.raft == raft_addr), None)

    def validate(self) -> None:
        """Refuse configurations that are unsafe or cannot work."""
        _ = self.me
        ids = [m.id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ConfigError("member ids must be unique")
        if not self.secret:
            raise ConfigError(
                "refusing to start without a cluster secret: Raft peer traffic is pickled, so "
                "an unauthenticated port lets anyone run code in the node (a multi-node "
                "cluster), and the secret also seals the token signing key at rest. Pass "
                "--cluster-secret-file (or RAFTPLANE_CLUSTER_SECRET_FILE)."
            )
        if self.xds_tls is None and not self.xds_insecure:
            raise ConfigError(
                "xDS needs mutual TLS (--xds-tls-cert/--xds-tls-key/--xds-tls-ca, see "
                "`raftplane certs`) or an explicit --xds-insecure for plain text"
            )
        plain = [m.id for m in self.members if not m.api.startswith("https://")]
        if self.api_tls is not None and plain:
            raise ConfigError(
                f"with --api-tls-* every member's api URL must be https:// (not: "
                f"{', '.join(plain)}): forwarded writes carry the caller's token")
        if self.api_tls is None and self.me.api.startswith("https://"):
            raise ConfigError(f"member {self.node_id}'s api URL is https:// but no "
                              "--api-tls-cert/--api-tls-key/--api-tls-ca were given")
        if self.max_stale <= 0:
            raise ConfigError("--max-stale must be a positive number of seconds")
        if self.idempotency_ttl < 60 or self.audit_max_age < 0 or self.audit_max_events < 0:
            raise ConfigError("--idempotency-ttl must be at least 1m (retries must find the "
                              "result); --audit-retention and --audit-max-events not negative")
        if self.xds_share_factor < 0 or self.xds_share_floor < 0 or self.xds_drain_rate < 0:
            raise ConfigError("--xds-share-factor, --xds-share-floor and --xds-drain-rate "
                              "must not be negative")
        if self.xds_share_factor and self.xds_share_factor < 1:
            raise ConfigError("--xds-share-factor must be 0 (off) or at least 1: below 1 the "
                              "nodes' shares cannot hold every stream")
        if self.xds_share_period <= 0:
            raise ConfigError("--xds-share-period must be a positive number of seconds")
        if self.secret is not None and len(self.secret) < 16:
            raise ConfigError("the cluster secret must be at least 16 characters")


def read_secret(path: str | os.PathLike[str]) -> str:
    """Read a cluster secret file (whitespace stripped)."""
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read cluster secret file {path}: {exc}") from exc
    if not secret:
        raise ConfigError(f"cluster secret file {path} is empty")
    return secret


def members_from_text(text: str) -> tuple[Member, ...]:
    """Members from `;`-separated member specs, or a JSON cluster file's `nodes` list."""
    text = text.strip()
    if text.startswith("{"):
        nodes = json.loads(text)["nodes"]
        return tuple(Member.from_json(n) for n in nodes)
    return tuple(Member.parse(part) for part in text.split(";") if part.strip())
