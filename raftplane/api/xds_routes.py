"""REST views of the xDS side: bootstraps, what a dataplane is served, who is connected."""

from __future__ import annotations

import json

import yaml
from aiohttp import web
from google.protobuf import json_format

from raftplane.api.context import NODE, XDS
from raftplane.api.problems import Problem, field_problem
from raftplane.api.reads import int_param, revision_headers
from raftplane.api.resources import Route, visible_teams
from raftplane.xds.bootstrap import build_bootstrap
from raftplane.xds.types import PUSH_ORDER, SHORT_NAMES


def _dataplane(request: web.Request) -> tuple[str, str]:
    team, name = request.match_info["team"], request.match_info["name"]
    teams = visible_teams(request)
    found = request.app[NODE].store.get("dataplanes", f"{team}/{name}", teams=teams)
    if found is None:
        raise Problem(404, f"no dataplane '{name}' in team '{team}'")
    return team, name


def _replicas(request: web.Request) -> list[tuple[str, int]]:
    config = request.app[NODE].config
    if config.xds_dns_name:
        host, _, port = config.xds_dns_name.rpartition(":")
        return [(host, int(port))]
    out = []
    for member in config.members:
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
    admin_port = int_param(request, "adminPort", 9901, 1, 65535)
    doc = build_bootstrap(team, name, _replicas(request), delta=mode == "delta",
                          admin_port=admin_port)
    if fmt == "json":
        return web.json_response(doc)
    return web.Response(text=yaml.safe_dump(doc, sort_keys=False), content_type="application/yaml")


async def dataplane_config(request: web.Request) -> web.StreamResponse:
    team, name = _dataplane(request)
    view = request.app[XDS].cache.view(f"{team}/{name}")
    body = {"dataplane": f"{team}/{name}", "revision": request.app[XDS].cache.revision}
    for type_url in PUSH_ORDER:
        body[SHORT_NAMES[type_url]] = {
            "version": view.versions.get(type_url, ""),
            "resources": [
                {"name": r.name, "version": r.version,
                 "resource": json_format.MessageToDict(r.message)}
                for r in view.resources.get(type_url, {}).values()
            ],
        }
    return web.json_response(body, headers=revision_headers(request),
                             dumps=lambda v: json.dumps(v, indent=1))


async def connections(request: web.Request) -> web.StreamResponse:
    teams = visible_teams(request)
    conns = [c.as_json() for c in request.app[XDS].connections.all()
             if teams is None or c.dataplane.split("/", 1)[0] in teams]
    return web.json_response({"node": request.app[NODE].config.node_id, "connections": conns},
                             headers=revision_headers(request))


def xds_routes() -> list[Route]:
    tag = ("xDS",)
    base = "/api/v1/teams/{team}/dataplanes/{name}"
    return [
        Route("GET", base + "/bootstrap", bootstrap, "dataplanes:read",
              "Envoy bootstrap for this dataplane (?format=json, ?xds=delta, ?adminPort=)",
              statuses=(200, 400, 404), tags=tag),
        Route("GET", base + "/config", dataplane_config, "dataplanes:read",
              "The xDS resources this node serves to the dataplane", statuses=(200, 404),
              tags=tag),
        Route("GET", "/api/v1/xds/connections", connections, "dataplanes:read",
              "Envoys connected to this node: versions sent, ACKed, last NACK", tags=tag),
    ]
