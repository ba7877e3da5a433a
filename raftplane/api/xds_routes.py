"""REST views of the xDS side: bootstraps, what a dataplane is served, who is connected."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import yaml
from aiohttp import web
from google.protobuf import json_format

from raftplane.api.context import NODE, XDS
from raftplane.api.inputs import visible_teams
from raftplane.api.problems import Problem, field_problem
from raftplane.api.reads import int_param, revision_headers
from raftplane.api.routing import Route
from raftplane.api.writes import set_principal
from raftplane.auth import certs
from raftplane.cluster.errors import ClusterError
from raftplane.model.kinds import Kind
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.bootstrap import SERVICES, ClientTlsFiles, build_bootstrap
from raftplane.xds.types import PUSH_ORDER, SECRET, SHORT_NAMES

DEFAULT_TLS_DIR = "/etc/raftplane/envoy"
NODE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _dataplane(request: web.Request) -> tuple[str, str]:
    team, name = request.match_info["team"], request.match_info["name"]
    teams = visible_teams(request)
    found = request.app[NODE].store.get(Kind.DATAPLANES, f"{team}/{name}", teams=teams)
    if found is None:
        raise Problem(404, f"no dataplane '{name}' in team '{team}'")
    return team, name


def _replicas(request: web.Request) -> list[tuple[str, int]]:
    node = request.app[NODE]
    config = node.config
    if config.xds_dns_name:
        host, _, port = config.xds_dns_name.rpartition(":")
        return [(host, int(port))]
    out = []
    for member in node.members:
        host, _, port = member.xds.rpartition(":")
        if host and port:
            out.append((host.strip("[]"), int(port)))
    return out


async def bootstrap(request: web.Request) -> web.StreamResponse:
    team, name = _dataplane(request)
    fmt = request.query.get("format", "yaml")
    if fmt not in ("yaml", "json"):
        raise field_problem(400, "format", "must be 'yaml' or 'json'")
    mode = request.query.get("xds", "sotw")
    if mode not in ("sotw", "delta"):
        raise field_problem(400, "xds", "must be 'sotw' or 'delta'")
    services = request.query.get("services", "ads")
    if services not in SERVICES:
        raise field_problem(400, "services", "must be 'ads' or 'per-type'")
    admin_port = int_param(request, "adminPort", 9901, 1, 65535)
    tls = None
    if request.app[NODE].config.xds_tls is not None:
        q = request.query
        tls = ClientTlsFiles(q.get("tlsCert", f"{DEFAULT_TLS_DIR}/cert.pem"),
                             q.get("tlsKey", f"{DEFAULT_TLS_DIR}/key.pem"),
                             q.get("tlsCa", f"{DEFAULT_TLS_DIR}/ca.pem"))
    node_id = request.query.get("nodeId")
    if node_id is not None and not NODE_ID.fullmatch(node_id):
        raise field_problem(400, "nodeId", "1-128 characters of A-Z a-z 0-9 . _ : -")
    stats = request.query.get("stats", "false")
    if stats not in ("true", "false"):
        raise field_problem(400, "stats", "must be 'true' or 'false'")
    flush = int_param(request, "statsFlushSeconds", 5, 1, 300) if stats == "true" else None
    doc = build_bootstrap(team, name, _replicas(request), delta=mode == "delta",
                          admin_port=admin_port, tls=tls, services=services, node_id=node_id,
                          stats_flush_seconds=flush)
    if fmt == "json":
        return web.json_response(doc)
    return web.Response(text=yaml.safe_dump(doc, sort_keys=False), content_type="application/yaml")


async def issue_certificate(request: web.Request) -> web.StreamResponse:
    """A client certificate naming this dataplane (SPIFFE URI SAN), for xDS mTLS."""
    team, name = _dataplane(request)
    tls = request.app[NODE].config.xds_tls
    if tls is None or tls.ca_key is None:
        raise Problem(409, "this node cannot issue certificates: start it with --xds-tls-ca "
                      "and --xds-tls-ca-key")
    days = int_param(request, "days", 90, 1, 825)
    ca = certs.load_pem_cert(tls.ca.read_bytes())
    ca_key = certs.load_pem_key(tls.ca_key.read_bytes())
    cert, key = certs.issue_client_cert(ca, ca_key, team, name, days)
    command = wire.Command()
    command.audit.CopyFrom(wire.Audit(action="issue client certificate", team=team,
                                      resource=f"dataplanes/{team}/{name}", result="issued"))
    set_principal(request, command)
    with contextlib.suppress(ClusterError):
        await request.app[NODE].propose_record(command, 2.0)
    return web.json_response({
        "spiffeId": certs.spiffe_id(team, name),
        "certificate": certs.to_pem(cert).decode(),
        "privateKey": certs.key_to_pem(key).decode(),
        "caCertificate": certs.to_pem(ca).decode(),
        "expiresAt": cert.not_valid_after_utc.isoformat(),
    }, status=201)


async def dataplane_config(request: web.Request) -> web.StreamResponse:
    team, name = _dataplane(request)
    view = request.app[XDS].cache.view(f"{team}/{name}")
    body = {"dataplane": f"{team}/{name}", "revision": request.app[XDS].cache.revision}
    for type_url in PUSH_ORDER:
        body[SHORT_NAMES[type_url]] = {
            "version": view.versions.get(type_url, ""),
            "resources": [
                {"name": r.name, "version": r.version,
                 "resource": _secret_summary(request, r.name) if type_url == SECRET
                 else json_format.MessageToDict(r.message)}
                for r in view.resources.get(type_url, {}).values()
            ],
        }
    return web.json_response(body, headers=revision_headers(request),
                             dumps=lambda v: json.dumps(v, indent=1))


def _secret_summary(request: web.Request, name: str) -> dict[str, object]:
    """What the debugging view shows of a secret served over SDS: never its material."""
    stored = request.app[NODE].store.get(Kind.SECRETS, name) or {}
    return {key: stored[key] for key in ("name", "type", "fingerprint", "notAfter")
            if key in stored}


def local_connections(app: web.Application, teams: set[str] | None) -> list[dict[str, Any]]:
    """This node's streams of `teams` (None: all), each with the rollout whose canary its
    Envoy is (or None)."""
    canaries = app[XDS].canaries
    return [c.as_json() | {"rollout": canaries.canary_of(c.dataplane, c.node_id)}
            for c in app[XDS].connections.all()
            if teams is None or c.dataplane.split("/", 1)[0] in teams]


async def connections(request: web.Request) -> web.StreamResponse:
    conns = local_connections(request.app, visible_teams(request))
    return web.json_response({"node": request.app[NODE].config.node_id, "connections": conns},
                             headers=revision_headers(request))


async def envoy_stats(request: web.Request) -> web.StreamResponse:
    """The request counters the Envoys stream to this node (`?stats=true` bootstraps)."""
    teams = visible_teams(request)
    team, name = request.query.get("team"), request.query.get("dataplane")
    if (team is None) != (name is None):
        raise field_problem(400, "dataplane", "team and dataplane go together")
    envoys = [e.as_json() for e in request.app[XDS].stats.envoys(
        f"{team}/{name}" if team else None)
              if teams is None or e.dataplane.split("/", 1)[0] in teams]
    return web.json_response({"node": request.app[NODE].config.node_id, "envoys": envoys})


def xds_routes() -> list[Route]:
    tag = ("xDS",)
    base = "/api/v1/teams/{team}/dataplanes/{name}"
    return [
        Route("GET", base + "/bootstrap", bootstrap, "dataplanes:read",
              "Envoy bootstrap for this dataplane (?format=json, ?xds=delta, "
              "?services=per-type, ?adminPort=)",
              statuses=(200, 400, 404), tags=tag,
              query=("format", "xds", "services", "adminPort", "tlsCert", "tlsKey", "tlsCa",
                     "nodeId", "stats", "statsFlushSeconds")),
        Route("POST", base + "/certificates", issue_certificate, "dataplanes:write",
              "Issue an Envoy client certificate for this dataplane (the key is returned once)",
              statuses=(201, 401, 403, 404, 409), tags=tag),
        Route("GET", base + "/config", dataplane_config, "dataplanes:read",
              "The xDS resources this node serves to the dataplane", statuses=(200, 404),
              tags=tag),
        Route("GET", "/api/v1/xds/connections", connections, "dataplanes:read",
              "Envoys connected to this node: versions sent, ACKed, last NACK", tags=tag),
        Route("GET", "/api/v1/xds/envoy-stats", envoy_stats, "dataplanes:read",
              "Request counters the Envoys stream to this node (?team=&dataplane=)",
              tags=tag, query=("team", "dataplane")),
    ]
