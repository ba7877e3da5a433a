"""The `raftplane` command: `serve` runs one node, `dev` a local cluster; the other commands
(`apply`, `get`, `status`, ...) talk to any node over the REST API (raftplane.client);
`backup` downloads a copy of the store and `restore` seeds a new cluster from it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import overload

import argcomplete
import uvloop

from raftplane import backup_command, client, logs
from raftplane.cluster.config import (
    ApiTls,
    ConfigError,
    Member,
    NodeConfig,
    XdsTls,
    members_from_text,
    read_secret,
)
from raftplane.storage.retention import parse_duration


@overload
def _env(name: str) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"RAFTPLANE_{name}", default)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run one node (what each StatefulSet pod runs)")
    p.add_argument("--node-id", default=_env("NODE_ID"), help="this node's id [RAFTPLANE_NODE_ID]")
    p.add_argument("--data-dir", default=_env("DATA_DIR"), help="[RAFTPLANE_DATA_DIR]")
    p.add_argument("--api-listen", default=_env("API_LISTEN", "0.0.0.0:8080"),
                   help="REST listen address [RAFTPLANE_API_LISTEN]")
    p.add_argument("--raft-listen", default=_env("RAFT_LISTEN", ""),
                   help="Raft bind address if not the member's raft address "
                        "[RAFTPLANE_RAFT_LISTEN]")
    p.add_argument("--xds-listen", default=_env("XDS_LISTEN", ""),
                   help="xDS gRPC listen address (default: this member's xds address) "
                        "[RAFTPLANE_XDS_LISTEN]")
    p.add_argument("--xds-dns-name", default=_env("XDS_DNS_NAME", ""),
                   help="HOST:PORT that resolves to every replica (a headless Service), used "
                        "in generated bootstraps instead of the member list "
                        "[RAFTPLANE_XDS_DNS_NAME]")
    p.add_argument("--xds-tls-cert", default=_env("XDS_TLS_CERT"),
                   help="PEM server certificate for xDS mTLS [RAFTPLANE_XDS_TLS_CERT]")
    p.add_argument("--xds-tls-key", default=_env("XDS_TLS_KEY"), help="[RAFTPLANE_XDS_TLS_KEY]")
    p.add_argument("--xds-tls-ca", default=_env("XDS_TLS_CA"),
                   help="PEM CA that signs Envoy client certificates [RAFTPLANE_XDS_TLS_CA]")
    p.add_argument("--xds-tls-ca-key", default=_env("XDS_TLS_CA_KEY"),
                   help="the CA's key, to issue Envoy client certificates through the API "
                        "[RAFTPLANE_XDS_TLS_CA_KEY]")
    p.add_argument("--xds-insecure", action="store_true",
                   default=_env("XDS_INSECURE", "") in ("1", "true"),
                   help="serve xDS in plain text, without client certificates "
                        "[RAFTPLANE_XDS_INSECURE=1]")
    p.add_argument("--api-tls-cert", default=_env("API_TLS_CERT"),
                   help="PEM certificate: serve the REST API over HTTPS [RAFTPLANE_API_TLS_CERT]")
    p.add_argument("--api-tls-key", default=_env("API_TLS_KEY"), help="[RAFTPLANE_API_TLS_KEY]")
    p.add_argument("--api-tls-ca", default=_env("API_TLS_CA"),
                   help="PEM CA that signed every node's API certificate; forwarded writes "
                        "only go to a peer it verifies [RAFTPLANE_API_TLS_CA]")
    p.add_argument("--members", default=_env("MEMBERS"),
                   help="'id=n1,raft=HOST:PORT,api=URL[,xds=HOST:PORT];...' or @cluster.json "
                        "[RAFTPLANE_MEMBERS]")
    p.add_argument("--join", default=_env("JOIN"), metavar="URL",
                   help="instead of --members: any member's API URL; this node (added with "
                        "POST /api/v1/cluster/members) takes the member list from it, and on "
                        "a restart from its own store; while empty it holds no election (it "
                        "copies the state from the leader) [RAFTPLANE_JOIN]")
    p.add_argument("--advertise", default=_env("ADVERTISE"),
                   metavar="raft=HOST:PORT,api=URL[,xds=HOST:PORT]",
                   help="with --join and --join-token-file: this node's addresses, so it adds "
                        "itself [RAFTPLANE_ADVERTISE]")
    p.add_argument("--join-token-file", default=_env("JOIN_TOKEN_FILE"),
                   help="an admin token (cluster:write) a joining node adds itself with "
                        "[RAFTPLANE_JOIN_TOKEN_FILE]")
    p.add_argument("--non-voter", action="store_true",
                   default=_env("NON_VOTER", "") in ("1", "true"),
                   help="with --advertise: join as a non-voting member [RAFTPLANE_NON_VOTER=1]")
    p.add_argument("--handover-timeout", type=float,
                   default=float(_env("HANDOVER_TIMEOUT", "5")),
                   help="seconds a stopping leader tries to hand leadership to another voter "
                        "[RAFTPLANE_HANDOVER_TIMEOUT]")
    p.add_argument("--xds-share-factor", type=float,
                   default=float(_env("XDS_SHARE_FACTOR", "1.1")),
                   help="serve at most ceil(cluster's xDS streams / healthy nodes x FACTOR) "
                        "streams; past it new streams get RESOURCE_EXHAUSTED and the oldest "
                        "are shed, so Envoys spread over the replicas; 0: off "
                        "[RAFTPLANE_XDS_SHARE_FACTOR]")
    p.add_argument("--xds-share-floor", type=int,
                   default=int(_env("XDS_SHARE_FLOOR", "100")),
                   help="a node always takes this many xDS streams (small clusters never "
                        "shed) [RAFTPLANE_XDS_SHARE_FLOOR]")
    p.add_argument("--xds-share-period", type=float,
                   default=float(_env("XDS_SHARE_PERIOD", "2")),
                   help="seconds between asking the peers their stream counts "
                        "[RAFTPLANE_XDS_SHARE_PERIOD]")
    p.add_argument("--xds-drain-rate", type=float,
                   default=float(_env("XDS_DRAIN_RATE", "10")),
                   help="streams shed per second while past the share (0: refuse new "
                        "streams only) [RAFTPLANE_XDS_DRAIN_RATE]")
    p.add_argument("--raft-dial", action="append", default=[], metavar="ID=HOST:PORT",
                   help="reach peer ID at HOST:PORT instead of its member address (a proxy "
                        "or NAT; the peer keeps its identity); repeatable")
    p.add_argument("--parent-pid", type=int, default=0, metavar="PID",
                   help="stop once process PID is no longer this node's parent, i.e. when "
                        "the `raftplane dev` or test process that started it died")
    p.add_argument("--cluster-secret-file", default=_env("CLUSTER_SECRET_FILE"),
                   help="file holding the shared cluster secret [RAFTPLANE_CLUSTER_SECRET_FILE]")
    p.add_argument("--write-timeout", type=float, default=float(_env("WRITE_TIMEOUT", "10")),
                   help="seconds a write waits for commit before answering 504")
    p.add_argument("--max-stale", type=float, default=float(_env("MAX_STALE", "30")),
                   help="seconds without a leader after which authenticated REST reads answer "
                        "503 unless they ask ?consistency=stale (xDS keeps serving) "
                        "[RAFTPLANE_MAX_STALE]")
    p.add_argument("--audit-retention", type=parse_duration,
                   default=_env("AUDIT_RETENTION", "30d"),
                   help="prune audit events older than this, e.g. 30d, 12h (0: keep); the "
                        "leader's value applies on every node [RAFTPLANE_AUDIT_RETENTION]")
    p.add_argument("--audit-max-events", type=int,
                   default=int(_env("AUDIT_MAX_EVENTS", "1000000")),
                   help="keep at most this many audit events, the newest (0: no limit) "
                        "[RAFTPLANE_AUDIT_MAX_EVENTS]")
    p.add_argument("--idempotency-ttl", type=parse_duration,
                   default=_env("IDEMPOTENCY_TTL", "24h"),
                   help="how long a repeat with the same Idempotency-Key returns the first "
                        "result (at least 1m) [RAFTPLANE_IDEMPOTENCY_TTL]")
    p.add_argument("--log-compaction-entries", type=int,
                   default=int(_env("LOG_COMPACTION_ENTRIES", "20000")),
                   help="snapshot the store and drop the Raft log once it holds this many entries")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))


def _dev_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dev", help="run a local cluster of node processes on 127.0.0.1")
    p.add_argument("--nodes", type=int, default=3, choices=(1, 3, 5))
    p.add_argument("--data-dir", default=".dev-cluster",
                   help="where node data, the secret and cluster.json go")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--xds-tls", action="store_true",
                   help="create a local CA and serve xDS with mutual TLS (default: plain text, "
                        "with --xds-insecure)")
    p.add_argument("--api-tls", action="store_true",
                   help="serve the REST API over HTTPS (local CA), between nodes too")
    p.add_argument("--demo", action="store_true",
                   help="also start an upstream and a real Envoy configured through the API")


def _certs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("certs", help="create a CA and server certificates for xDS mTLS")
    p.add_argument("--dir", required=True, help="where to write ca.pem, ca-key.pem, NODE.pem ...")
    p.add_argument("--node", action="append", default=[], metavar="NAME=ADDR[,ADDR...]",
                   help="a node and the hostnames/IPs Envoys reach it at; repeatable")
    p.add_argument("--days", type=int, default=825)
    p.add_argument("--overwrite", action="store_true")


def _config_from_args(args: argparse.Namespace) -> NodeConfig:
    missing = [f for f in ("node_id", "data_dir") if not getattr(args, f)]
    if not args.members and not args.join:
        missing.append("members (or --join)")
    if missing:
        raise ConfigError("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    secret = read_secret(args.cluster_secret_file) if args.cluster_secret_file else None
    members: tuple[Member, ...] = ()
    if args.members:
        members_text = args.members
        if members_text.startswith("@"):
            members_text = Path(members_text[1:]).read_text()
        members = members_from_text(members_text)
    joining = not any(m.id == args.node_id for m in members)
    if joining:
        # Not one of the seed members (no --members, or a StatefulSet scaled past them).
        if not args.join:
            raise ConfigError(f"--node-id {args.node_id} is not in --members; add it with "
                              "POST /api/v1/cluster/members and start it with --join")
        members = _joined_members(args, secret)
    me = next((m for m in members if m.id == args.node_id), None)
    tls_files = (args.xds_tls_cert, args.xds_tls_key, args.xds_tls_ca)
    if any(tls_files) and not all(tls_files):
        raise ConfigError("--xds-tls-cert, --xds-tls-key and --xds-tls-ca go together")
    xds_tls = XdsTls(Path(args.xds_tls_cert), Path(args.xds_tls_key), Path(args.xds_tls_ca),
                     Path(args.xds_tls_ca_key) if args.xds_tls_ca_key else None) \
        if all(tls_files) else None
    api_files = (args.api_tls_cert, args.api_tls_key, args.api_tls_ca)
    if any(api_files) and not all(api_files):
        raise ConfigError("--api-tls-cert, --api-tls-key and --api-tls-ca go together")
    api_tls = ApiTls(*(Path(f) for f in api_files)) if all(api_files) else None
    return NodeConfig(
        node_id=args.node_id,
        api_tls=api_tls,
        data_dir=Path(args.data_dir),
        members=members,
        api_listen=args.api_listen,
        xds_listen=args.xds_listen or (me.xds if me else ""),
        xds_dns_name=args.xds_dns_name,
        xds_tls=xds_tls,
        xds_insecure=args.xds_insecure,
        raft_listen=args.raft_listen,
        secret=secret,
        write_timeout=args.write_timeout,
        max_stale=args.max_stale,
        audit_max_age=args.audit_retention,
        audit_max_events=args.audit_max_events,
        idempotency_ttl=args.idempotency_ttl,
        raft_options={"logCompactionMinEntries": args.log_compaction_entries},
        raft_dial=dict(item.split("=", 1) for item in args.raft_dial),
        parent_pid=args.parent_pid,
        handover_timeout=args.handover_timeout,
        xds_share_factor=args.xds_share_factor,
        xds_share_floor=args.xds_share_floor,
        xds_share_period=args.xds_share_period,
        xds_drain_rate=args.xds_drain_rate,
        # Joins a cluster that has the state: no election while empty. A seed member (named
        # by --members) campaigns even with --join set (a new cluster's pods start empty).
        join=joining,
    )


def _joined_members(args: argparse.Namespace, secret: str | None) -> tuple[Member, ...]:
    """--join: the member list from this node's store (a restart) or from the member at the
    URL (a new node)."""
    from raftplane.cluster import api_tls
    from raftplane.cluster.join import fetch_members, stored_members

    stored = stored_members(Path(args.data_dir))
    if stored is not None and any(m.id == args.node_id for m in stored):
        return stored
    if not secret:
        raise ConfigError("--join needs --cluster-secret-file (it proves membership)")
    advertise = None
    if args.advertise:
        advertise = Member.parse(f"id={args.node_id}," + args.advertise)
        advertise = Member(advertise.id, advertise.raft, advertise.api, advertise.xds,
                           voter=not args.non_voter)
    token = read_secret(args.join_token_file) if args.join_token_file else None
    context = None
    if args.api_tls_ca:
        context = api_tls.client_context(ApiTls(Path(args.api_tls_cert or ""),
                                                Path(args.api_tls_key or ""),
                                                Path(args.api_tls_ca)))
    logs.configure(args.log_level, args.node_id)
    return fetch_members(args.join, secret, args.node_id, context=context, token=token,
                         advertise=advertise)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftplane", description=__doc__,
                                     epilog=client.EXIT_CODES_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _dev_parser(sub)
    _certs_parser(sub)
    client.register(sub)
    backup_command.add_parsers(sub)
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if (code := client.run(args)) is not None:
        return code
    if args.command == "certs":
        from raftplane.auth.certs import write_pki

        nodes = {}
        for spec in args.node:
            name, _, addrs = spec.partition("=")
            nodes[name] = [a for a in addrs.split(",") if a]
        try:
            paths = write_pki(args.dir, nodes, days=args.days, overwrite=args.overwrite)
        except (FileExistsError, ValueError) as exc:
            print(f"raftplane certs: {exc}", file=sys.stderr)
            return 2
        print(f"CA: {paths.ca_cert} (key {paths.ca_key}, mode 0600)")
        for name, (cert, key) in paths.nodes.items():
            print(f"{name}: {cert} (key {key})")
        return 0
    if args.command == "serve":
        try:
            config = _config_from_args(args)
            config.validate()
        except ConfigError as exc:
            print(f"raftplane serve: {exc}", file=sys.stderr)
            return 2
        logs.configure(args.log_level, config.node_id)
        from raftplane.cluster.journal import JournalDamaged
        from raftplane.server import run_node

        try:
            uvloop.run(run_node(config))  # libuv's loop: ~10% less CPU per write
        except (JournalDamaged, ConfigError) as exc:
            print(f"raftplane serve: refusing to start: {exc}", file=sys.stderr)
            return 2
        return 0
    from raftplane.dev_command import run_dev

    return run_dev(nodes=args.nodes, data_dir=Path(args.data_dir), log_level=args.log_level,
                   demo=args.demo, xds_tls=args.xds_tls, api_tls=args.api_tls)


if __name__ == "__main__":
    sys.exit(main())
