"""The write path's checks without a cluster, and batched ``envoy --mode validate`` runs.

``api_write`` runs what a create runs before anything is proposed (body validation, the
translatability check with the filter resources named, the references and the rules) against
a real store holding a fixed world of resources, and says what the API would answer.
``EnvoyBatches`` writes the accepted resources to a store, takes what the xDS cache serves
the dataplane, makes it a static bootstrap as dry runs do, runs Envoy once per batch, and
when a batch fails bisects it down to the failing cases with Envoy's error.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftplane.api.bodies import ValidationFailed, references, stored_name, validate_resource
from raftplane.api.resource_routes import seal_secret
from raftplane.api.writes import OUTCOME_STATUS
from raftplane.model import rules
from raftplane.model.kinds import Kind
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.cache import DataplaneView, XdsCache
from raftplane.xds.envoy_check import static_bootstrap
from raftplane.xds.translate import TranslationError, check_translatable, referenced_filters
from raftplane.xds.types import CLUSTER, ENDPOINT, SECRET
from tests.pki import Pki, ca_secret, certificate_secret
from tests.xds.strategies_values import (
    CA_SECRETS,
    CERTIFICATE_SECRETS,
    CLUSTERS,
    DATAPLANE,
    FILTER_RESOURCES,
    GENERIC_SECRETS,
    ROUTE_CONFIG,
    TEAM,
)
from tests.xds.test_envoy_validate import ENVOY

# The world ------------------------------------------------------------------------------------

CLUSTER_SECRET = "property-test-cluster-secret"
_POOL_CLUSTERS: dict[str, dict[str, Any]] = {
    "api": {"endpoints": [{"host": "10.0.0.1", "port": 8080}]},
    "grpc_h2": {"endpoints": [{"host": "10.0.0.2", "port": 9000}], "protocol": "HTTP2"},
    "Idp.Example-1": {"endpoints": [{"host": "idp.example", "port": 443}], "useTls": True},
    "9dns": {"endpoints": [{"host": "svc.example", "port": 80}]},
}
assert set(_POOL_CLUSTERS) == set(CLUSTERS)


def _world_bodies() -> list[tuple[str, dict[str, Any]]]:
    pki = Pki.create()
    out: list[tuple[str, dict[str, Any]]] = [
        (Kind.TEAMS, {"name": TEAM}), (Kind.DATAPLANES, {"name": DATAPLANE, "team": TEAM})]
    out += [(Kind.CLUSTERS, {"name": name, "team": TEAM, **fields})
            for name, fields in _POOL_CLUSTERS.items()]
    out += [(Kind.SECRETS, certificate_secret(name, TEAM, pki.server("a.example")))
            for name in CERTIFICATE_SECRETS]
    out += [(Kind.SECRETS, ca_secret(name, TEAM, pki, matchSubjectAltNames=["a.example"]))
            for name in CA_SECRETS]
    out += [(Kind.SECRETS, {"name": name, "team": TEAM, "type": "genericSecret",
                            "value": f"v-{name}"}) for name in GENERIC_SECRETS]
    out.append((Kind.ROUTE_CONFIGS, {"name": ROUTE_CONFIG, "team": TEAM, "virtualHosts": [
        {"name": "all", "domains": ["*"], "routes": [
            {"match": {"path": {"type": "prefix", "value": "/"}},
             "action": {"type": "forward", "cluster": "api"}}]}]}))
    out += [(Kind.FILTERS, {"name": name, "team": TEAM, **fields})
            for name, fields in FILTER_RESOURCES.items()]
    return out


class World:
    """A real store holding the resources every generated body may name (``WORLD``), filled
    through apply like the API's writes; also the ``rules.Reader`` of the checks."""

    def __init__(self, directory: Path, bodies: list[tuple[str, dict[str, Any]]]) -> None:
        self.store = Store(directory)
        self.bodies = bodies
        self.index = 0
        self.written: list[tuple[str, str]] = []  # (kind, stored name)
        for kind, body in bodies:
            verdict = self.write(kind, body)
            assert verdict.resource is not None, (kind, body, verdict)

    @classmethod
    def create(cls, directory: Path) -> World:
        return cls(directory, _world_bodies())

    def write(self, kind: str, body: Any) -> Verdict:
        """A create of ``body``: the API's checks, then apply (which checks the rules again)."""
        verdict = api_write(self, kind, body)
        if verdict.resource is not None:
            resource = verdict.resource
            if kind == Kind.SECRETS:  # only ciphertext is stored
                resource = seal_secret(CLUSTER_SECRET, resource)
            entry = wire.LogEntry(format_version=1, proposed_at_ms=1)
            entry.commands.add().put.CopyFrom(wire.Put(
                kind=kind, name=stored_name(kind, resource), mode=wire.PUT_MODE_CREATE,
                value_json=json.dumps(resource).encode(),
                team="" if kind == Kind.TEAMS else resource["team"],
                references=[wire.Reference(kind=r.kind, name=r.name, field=r.field)
                            for r in references(kind, verdict.resource)]))
            self.index += 1
            [result] = self.store.apply_entry(self.index, entry.SerializeToString())
            assert result.outcome.ok, (result, body)  # apply agrees with the checks
            self.written.append((kind, stored_name(kind, resource)))
        return verdict

    def view(self) -> DataplaneView:
        """What the dataplane is served: its listeners and what they name, plus every
        cluster (with its endpoints) and secret of the store, named or not."""
        cache = XdsCache(self.store, CLUSTER_SECRET)
        cache.load_all()
        view = cache.view(f"{TEAM}/{DATAPLANE}")
        out = DataplaneView(view.dataplane, {k: dict(v) for k, v in view.resources.items()})
        for type_url, kind in ((CLUSTER, Kind.CLUSTERS), (ENDPOINT, Kind.CLUSTERS),
                               (SECRET, Kind.SECRETS)):
            for name in [n for k, n in self.written if k == kind]:
                found = cache.resource(type_url, name)
                if found is not None:
                    out.resources.setdefault(type_url, {})[name] = found
        return out


# The API's verdict ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """What the API answers a create: 201 and the stored resource, or a 4xx and its errors."""

    status: int
    resource: dict[str, Any] | None = None
    errors: tuple[tuple[str, str], ...] = ()
    stage: str = ""  # which check refused: body, translation, rules


def api_write(world: World, kind: str, body: Any) -> Verdict:
    """The checks of a create of ``body`` (after a JSON round trip, as sent), in the API's
    order (``resource_routes``): body validation, translation with the filter resources it
    names, then the rules on the leader's state (references, ports)."""
    body = json.loads(json.dumps(body))
    try:
        resource = validate_resource(kind, body)
    except ValidationFailed as exc:
        return Verdict(422, errors=tuple((e.field, e.message) for e in exc.errors),
                       stage="body")
    filters = {name: found for name in referenced_filters(kind, resource)
               if (found := world.store.get(Kind.FILTERS, name)) is not None}
    try:
        check_translatable(kind, resource, filters)
    except TranslationError as exc:
        return Verdict(422, errors=((exc.field, exc.message),), stage="translation")
    refs = references(kind, resource)
    refusal = rules.check_put(world.store, kind=kind, name=stored_name(kind, resource),
                              mode=rules.CREATE, expected=0, team=resource.get("team", ""),
                              resource=resource, refs=refs, current=world.store.get(
                                  kind, stored_name(kind, resource)))
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
            out += [entry["filter"]["type"] if "filter" in entry else "filterRef"
                    for entry in filt.get("httpFilters") or []]
            inline = filt.get("inlineRouteConfig") or {}
            for host in inline.get("virtualHosts") or []:
                out += ["virtual host override"] if host.get("typedPerFilterConfig") else []
                out += ["route override" for route in host["routes"]
                        if route.get("typedPerFilterConfig")]
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
    """One accepted body, and the resource as it goes to Envoy: under a unique name (and a
    listener on a unique port)."""

    kind: str
    body: Any
    resource: dict[str, Any]


def envoy_case(index: int, kind: str, body: Any, resource: dict[str, Any]) -> Case:
    resource = {**resource, "name": f"{resource['name'][:100]}-{index}"}
    if kind == Kind.LISTENERS:
        resource["port"] = 20000 + index
    return Case(kind, body, resource)


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


class EnvoyBatches:
    """The accepted cases written to a store of their own (through apply), served to the
    dataplane by the xDS cache, made a static bootstrap by the dry run's
    ``envoy_check.static_bootstrap``; ``envoy --mode validate`` runs on the world plus a
    batch of cases at a time."""

    def __init__(self, world: World, directory: Path, cases: list[Case]) -> None:
        self.directory = directory
        self.runs = 0
        self.seconds = 0.0
        served = World(directory / "served", world.bodies)
        for case in cases:  # as written: the same checks pass with the new name and port
            assert served.write(case.kind, case.resource).resource is not None, case
        static = static_bootstrap(served.view())["static_resources"]
        served.store.close()
        by_name = {(kind, item["name"]): item for kind, key in (
            (Kind.CLUSTERS, "clusters"), (Kind.LISTENERS, "listeners"))
            for item in static.get(key, [])}
        self.parts = {id(case): by_name[(case.kind, case.resource["name"])]
                      for case in cases}
        owned = {(case.kind, case.resource["name"]) for case in cases}
        self.base_clusters = [c for c in static.get("clusters", [])
                              if (Kind.CLUSTERS, c["name"]) not in owned]
        self.secrets = static.get("secrets", [])

    def validate(self, cases: list[Case]) -> str | None:
        """None if Envoy accepts the world with ``cases``, else its error lines. Deprecation
        warnings count as a failure, as in test_envoy_validate."""
        parts = [(case.kind, self.parts[id(case)]) for case in cases]
        config = {"static_resources": {
            "clusters": self.base_clusters + [p for k, p in parts if k == Kind.CLUSTERS],
            "listeners": [p for k, p in parts if k == Kind.LISTENERS],
            "secrets": self.secrets}}
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
