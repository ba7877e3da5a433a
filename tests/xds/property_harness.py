"""The write path's checks without a cluster, and batched ``envoy --mode validate`` runs.

``api_write`` runs what a create runs before anything is proposed (body validation, the
translatability check, the references and the rules on the leader's state) against a fixed
``WORLD`` of existing resources, and says what the API would answer. ``EnvoyBatches`` puts the
accepted resources into static bootstraps, runs Envoy once per batch, and when a batch fails
bisects it down to the failing cases with Envoy's error.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from raftplane.api.bodies import ValidationFailed, references, stored_name, validate_resource
from raftplane.api.writes import OUTCOME_STATUS
from raftplane.model import rules
from raftplane.model.kinds import Kind
from raftplane.xds.translate import TranslationError, check_translatable, secret_to_envoy
from raftplane.xds.translate.common import pack
from tests.pki import Pki, ca_secret, certificate_secret
from tests.xds.strategies_values import (
    CA_SECRETS,
    CERTIFICATE_SECRETS,
    CLUSTERS,
    DATAPLANE,
    GENERIC_SECRETS,
    ROUTE_CONFIG,
    TEAM,
)
from tests.xds.test_envoy_validate import ENVOY, _dict, static_cluster, static_listener
from tests.xds.test_tls_validate import _static_sds

# The world ------------------------------------------------------------------------------------

_POOL_CLUSTERS: dict[str, dict[str, Any]] = {
    "api": {"endpoints": [{"host": "10.0.0.1", "port": 8080}]},
    "grpc_h2": {"endpoints": [{"host": "10.0.0.2", "port": 9000}], "protocol": "HTTP2"},
    "Idp.Example-1": {"endpoints": [{"host": "idp.example", "port": 443}], "useTls": True},
    "9dns": {"endpoints": [{"host": "svc.example", "port": 80}]},
}
assert set(_POOL_CLUSTERS) == set(CLUSTERS)


def _world_secrets() -> list[dict[str, Any]]:
    pki = Pki.create()
    out: list[dict[str, Any]] = []
    for name in CERTIFICATE_SECRETS:
        out.append(certificate_secret(name, TEAM, pki.server("a.example", "*.a.example")))
    for name in CA_SECRETS:
        out.append(ca_secret(name, TEAM, pki, matchSubjectAltNames=["a.example",
                                                                     "spiffe://t/x"]))
    out += [{"name": name, "team": TEAM, "type": "genericSecret", "value": f"v-{name}"}
            for name in GENERIC_SECRETS]
    return out


@dataclass
class World:
    """The resources every generated body may name, validated, in a ``rules.Reader``."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(cls) -> World:
        world = cls()
        world.put(Kind.TEAMS, {"name": TEAM})
        world.put(Kind.DATAPLANES, {"name": DATAPLANE, "team": TEAM})
        for name, fields in _POOL_CLUSTERS.items():
            world.put(Kind.CLUSTERS, {"name": name, "team": TEAM, **fields})
        for secret in _world_secrets():
            world.put(Kind.SECRETS, secret)
        world.put(Kind.ROUTE_CONFIGS, {"name": ROUTE_CONFIG, "team": TEAM, "virtualHosts": [
            {"name": "all", "domains": ["*"], "routes": [
                {"match": {"path": {"type": "prefix", "value": "/"}},
                 "action": {"type": "forward", "cluster": "api"}}]}]})
        return world

    def put(self, kind: str, body: dict[str, Any]) -> None:
        resource = validate_resource(kind, body)
        check_translatable(kind, resource)
        self.resources[(kind, stored_name(kind, resource))] = resource

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for (k, _), r in self.resources.items() if k == kind]

    # rules.Reader
    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.resources.get((kind, name))

    def port_holder(self, listener: dict[str, Any]) -> str | None:
        return None  # each generated listener is written alone

    def referrers(self, kind: str, name: str) -> list[tuple[str, str]]:
        return []

    def team_members(self, team: str, limit: int) -> list[tuple[str, str]]:
        return []

    def envoy_resources(self) -> dict[str, list[dict[str, Any]]]:
        """The world as static Envoy resources (clusters and secrets)."""
        return {"clusters": [_dict(static_cluster(c)) for c in self.of_kind(Kind.CLUSTERS)],
                "secrets": [_dict(secret_to_envoy(s)) for s in self.of_kind(Kind.SECRETS)]}


# The API's verdict ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """What the API answers a create: 201 and the stored resource, or a 4xx and its errors."""

    status: int
    resource: dict[str, Any] | None = None
    errors: tuple[tuple[str, str], ...] = ()
    stage: str = ""  # which check refused: body, translation, rules


def api_write(world: World, kind: str, body: Any) -> Verdict:
    """Run the checks of a create of ``body`` (after a JSON round trip, as sent)."""
    body = json.loads(json.dumps(body))
    try:
        resource = validate_resource(kind, body)
    except ValidationFailed as exc:
        return Verdict(422, errors=tuple((e.field, e.message) for e in exc.errors),
                       stage="body")
    try:
        check_translatable(kind, resource)
    except TranslationError as exc:
        return Verdict(422, errors=((exc.field, exc.message),), stage="translation")
    refs = references(kind, resource)
    refusal = rules.check_put(world, kind=kind, name=stored_name(kind, resource),
                              mode=rules.CREATE, expected=0, team=resource.get("team", ""),
                              resource=resource, refs=refs, current=None)
    if refusal is not None:
        return Verdict(OUTCOME_STATUS[refusal.outcome], stage="rules",
                       errors=tuple((e["field"], e["message"]) for e in refusal.errors))
    stored: dict[str, Any] = json.loads(json.dumps(resource, allow_nan=False))
    return Verdict(201, resource=stored)


def features(kind: str, resource: dict[str, Any]) -> list[str]:
    """What an accepted resource exercises (filter types, TLS settings), for the figures."""
    if kind == Kind.CLUSTERS:
        tls = resource.get("tls") or {}
        return (["upstream TLS"] if resource.get("useTls") else []) + [
            f"upstream {key}" for key in ("clientCertificateSecret", "validationContextSecret")
            if key in tls]
    out: list[str] = []
    for chain in resource["filterChains"]:
        tls = chain.get("tls") or {}
        out += ["TLS chain"] if tls else []
        out += [f"chain {key}" for key in ("serverNames", "alpn", "validationContextSecret")
                if tls.get(key)]
        for filt in chain["filters"]:
            out += [entry["filter"]["type"] for entry in filt.get("httpFilters") or []]
    return out


_STEP = re.compile(r"\[(\d+)\]")


def field_resolves(body: Any, path: str) -> bool:
    """True when the error path names a member of ``body`` (its last key may be absent: a
    required or conditional member). Keys may themselves contain dots."""
    if path == "":
        return True
    step = _STEP.match(path)
    if step:
        index = int(step.group(1))
        return (isinstance(body, list) and index < len(body)
                and field_resolves(body[index], path[step.end():].removeprefix(".")))
    if not isinstance(body, dict):
        return False
    for key in body:
        named = isinstance(key, str) and (path == key or path.startswith((key + ".", key + "[")))
        if named and field_resolves(body[key], path[len(key):].removeprefix(".")):
            return True
    return "." not in path and "[" not in path


def check_refusal(body: Any, verdict: Verdict) -> None:
    """A refusal is a clean 4xx: at least one error, each naming a field of the body."""
    assert 400 <= verdict.status < 500, verdict
    assert verdict.errors, verdict
    for path, message in verdict.errors:
        assert isinstance(path, str) and path, verdict
        assert isinstance(message, str) and message, verdict
        assert field_resolves(json.loads(json.dumps(body)), path), (path, verdict)


# Envoy ------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One accepted resource, as the Envoy resources it adds to a bootstrap."""

    kind: str
    body: Any
    clusters: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[dict[str, Any]] = field(default_factory=list)


def envoy_case(world: World, index: int, kind: str, body: Any, resource: dict[str, Any]
               ) -> Case:
    """The accepted ``resource`` under a unique name (and a listener on a unique port), as
    the xDS cache would translate it, RDS and SDS made static."""
    resource = {**resource, "name": f"{resource['name'][:100]}-{index}"}
    case = Case(kind, body)
    if kind == Kind.CLUSTERS:
        case.clusters.append(_static_sds(_dict(static_cluster(resource))))
    else:
        resource["port"] = 20000 + index
        routes = {r["name"]: r for r in world.of_kind(Kind.ROUTE_CONFIGS)}
        case.listeners.append(_static_sds(_dict(static_listener(resource, routes))))
    return case


def with_per_route(case: Case, filter_name: str, config: Message) -> Case:
    """``case`` (a listener with inline route configs) with ``config`` as the per-route config
    of filter ``filter_name`` on every virtual host, as Envoy gets it in a route config."""
    packed = _dict(pack(config))
    for listener in case.listeners:
        for chain in listener["filter_chains"]:
            for filt in chain["filters"]:
                for host in filt["typed_config"].get("route_config", {}).get("virtual_hosts", []):
                    host.setdefault("typed_per_filter_config", {})[filter_name] = packed
    return case


def _error_lines(stderr: str) -> str:
    """Envoy's complaint: from its first critical or error line (a proto validation error
    spans several lines), else the deprecation warnings, else the last lines."""
    lines = stderr.splitlines()
    first = next((i for i, line in enumerate(lines)
                  if "[critical]" in line or "[error]" in line), None)
    if first is not None:
        return "\n".join(lines[first:])[:4000]
    warnings = [line for line in lines if "deprecated" in line.lower()]
    return "\n".join(warnings or lines[-5:])[:4000]


@dataclass
class EnvoyBatches:
    """Runs ``envoy --mode validate`` on bootstraps of the world plus a batch of cases."""

    world: World
    directory: Path
    runs: int = 0
    seconds: float = 0.0

    def validate(self, cases: list[Case]) -> str | None:
        """None if Envoy accepts the world with ``cases``, else its error lines. Deprecation
        warnings count as a failure, as in test_envoy_validate."""
        base = self.world.envoy_resources()
        config = {"static_resources": {
            "clusters": base["clusters"] + [c for case in cases for c in case.clusters],
            "listeners": [item for case in cases for item in case.listeners],
            "secrets": base["secrets"]}}
        path = self.directory / f"bootstrap-{self.runs}.json"
        path.write_text(json.dumps(config))
        started = time.monotonic()
        result = subprocess.run([str(ENVOY), "--mode", "validate", "-c", str(path),
                                 "--log-level", "warn"], capture_output=True, text=True,
                                timeout=120, check=False)
        self.runs += 1
        self.seconds += time.monotonic() - started
        path.unlink()
        if result.returncode != 0 or "deprecated" in result.stderr.lower():
            return _error_lines(result.stderr) or f"exit status {result.returncode}"
        return None

    def failures(self, cases: list[Case], limit: int = 5) -> list[tuple[Case, str]]:
        """The cases Envoy rejects (up to ``limit``), each with Envoy's error, found by
        bisecting the batches that fail."""
        found: list[tuple[Case, str]] = []

        def bisect(batch: list[Case], error: str | None) -> None:
            if len(found) >= limit or error is None:
                return
            if len(batch) == 1:
                found.append((batch[0], error))
                return
            half = len(batch) // 2
            for part in (batch[:half], batch[half:]):
                bisect(part, self.validate(part))

        bisect(cases, self.validate(cases))
        return found

    def check_all(self, cases: list[Case], batch_size: int) -> list[tuple[Case, str]]:
        """Every case, in batches of ``batch_size``: the failing ones with their errors."""
        out: list[tuple[Case, str]] = []
        for start in range(0, len(cases), batch_size):
            out += self.failures(cases[start:start + batch_size])
        return out


def describe(failures: list[tuple[Case, str]], dump: Callable[[Any], str] = json.dumps) -> str:
    """A readable report of failing cases: the request body, then Envoy's error."""
    return "\n\n".join(f"{case.kind} body:\n{dump(case.body)}\nEnvoy:\n{error}"
                       for case, error in failures)
