"""Property: every listener (random HTTP filters, per-route overrides, TLS chains) and cluster
(random upstream TLS) the API accepts is accepted by a real Envoy (``envoy --mode validate``),
so an accepted write is never NACKed; every one it refuses gets a clean 4xx naming a field.

Random bodies go through the checks of a create (``property_harness.api_write``); accepted
ones are batched into a few static bootstraps, each validated by one Envoy run, and a failing
batch is bisected down to the failing case. Deterministic (derandomized) and bounded in CI;
``RAFTPLANE_PROPERTY_EXAMPLES=3000`` runs a longer search locally, ``RAFTPLANE_PROPERTY_SEED=7``
another one (``-s`` prints figures).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from raftplane.model.kinds import Kind
from raftplane.xds.translate.filters import FILTER_TYPES
from tests.xds.property_harness import (
    Case,
    EnvoyBatches,
    World,
    api_write,
    check_refusal,
    describe,
    envoy_case,
    features,
    field_resolves,
)
from tests.xds.strategies_filters import FILTERS, per_route
from tests.xds.strategies_resources import clusters, listeners

EXAMPLES = int(os.environ.get("RAFTPLANE_PROPERTY_EXAMPLES", "400"))
SEED = os.environ.get("RAFTPLANE_PROPERTY_SEED")
BATCH = 250  # cases per Envoy run
INLINE_ROUTES = {"virtualHosts": [
    {"name": "all", "domains": ["*"], "routes": [
        {"match": {"path": {"type": "prefix", "value": "/"}},
         "action": {"type": "forward", "cluster": "api"}}]},
    {"name": "admin", "domains": ["admin.example"], "routes": [
        {"match": {"path": {"type": "prefix", "value": "/"}},
         "action": {"type": "forward", "cluster": "grpc_h2"}}]}]}


def _search(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Derandomized settings, or a search seeded by RAFTPLANE_PROPERTY_SEED (local runs)."""
    chosen = settings(max_examples=examples, derandomize=SEED is None, deadline=None,
                      database=None, suppress_health_check=[HealthCheck.too_slow,
                                                            HealthCheck.data_too_large])

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        return chosen(test) if SEED is None else seed(int(SEED))(chosen(test))
    return apply


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = World.create(tmp_path_factory.mktemp("world"))
    yield made
    made.store.close()


def _bodies() -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(st.tuples(st.just(Kind.LISTENERS), listeners()),
                     st.tuples(st.just(Kind.LISTENERS), listeners()),
                     st.tuples(st.just(Kind.CLUSTERS), clusters()))


@pytest.mark.timeout(max(120, EXAMPLES // 2))
def test_accepted_filters_and_tls_pass_envoy_validate(world: World, tmp_path: Path) -> None:
    """Random listeners and clusters: each refusal is a clean 4xx naming a field of the body,
    each accepted one passes ``envoy --mode validate``."""
    started = time.monotonic()
    cases: list[Case] = []
    outcomes: Counter[str] = Counter()
    exercised: Counter[str] = Counter()

    @_search(EXAMPLES)
    @given(_bodies())
    def write(kind_and_body: tuple[str, Any]) -> None:
        kind, body = kind_and_body
        verdict = api_write(world, kind, body)
        if verdict.resource is None:
            check_refusal(body, verdict)
            outcomes[f"{kind} refused ({verdict.stage})"] += 1
            return
        outcomes[f"{kind} accepted"] += 1
        exercised.update(features(kind, verdict.resource))
        cases.append(envoy_case(len(cases), kind, body, verdict.resource))

    write()
    generated = time.monotonic() - started
    envoy = EnvoyBatches(world, tmp_path, cases)
    failures = envoy.check_all(cases, BATCH)
    print(f"\n{sum(outcomes.values())} writes ({dict(sorted(outcomes.items()))}); "
          f"{len(cases)} accepted, {envoy.runs} Envoy runs in {envoy.seconds:.1f} s; "
          f"generation and API checks {generated:.1f} s; accepted features: "
          f"{dict(sorted(exercised.items()))}")
    assert not failures, "Envoy rejects what the API accepted:\n" + describe(
        failures, lambda body: json.dumps(body)[:3000])
    # The search reaches Envoy with most filter types and TLS, not only refusals.
    assert len(cases) >= EXAMPLES // 10, outcomes
    assert {"TLS chain", "upstream TLS"} <= set(exercised), exercised
    assert len(set(exercised) & set(FILTERS)) >= min(12, EXAMPLES // 20), exercised


PER_ROUTE_TYPES = sorted(kind for kind, t in FILTER_TYPES.items() if t.per_route_override)


def _with_override(kind: str) -> st.SearchStrategy[tuple[str, dict[str, Any], Any]]:
    return st.tuples(st.just(kind), FILTERS[kind](), per_route(kind))


@pytest.mark.timeout(max(120, EXAMPLES // 4))
def test_per_route_overrides_pass_envoy_validate(world: World, tmp_path: Path) -> None:
    """A filter of each type with per-route settings, and a random override of it on a
    virtual host and a route (``typedPerFilterConfig`` keyed by the type): what the API
    accepts, Envoy accepts."""
    cases: list[Case] = []
    outcomes: Counter[str] = Counter()

    @_search(max(EXAMPLES // 4, 20))
    @given(st.sampled_from(PER_ROUTE_TYPES).flatmap(_with_override))
    def override(case: tuple[str, dict[str, Any], Any]) -> None:
        kind, spec, config = case
        hosts = copy.deepcopy(INLINE_ROUTES["virtualHosts"])
        hosts[0]["typedPerFilterConfig"] = {kind: config}
        hosts[1]["routes"][0]["typedPerFilterConfig"] = {kind: config}
        body = {"name": "per-route", "team": "prop", "port": 1, "filterChains": [{"filters": [
            {"name": "hcm", "type": "httpConnectionManager", "httpFilters": [{"filter": spec}],
             "inlineRouteConfig": {"virtualHosts": hosts}}]}]}
        verdict = api_write(world, Kind.LISTENERS, body)
        if verdict.resource is None:
            check_refusal(body, verdict)
            overridden = any(".typedPerFilterConfig." in field for field, _ in verdict.errors)
            outcomes[f"{kind} override refused" if overridden else "filter refused"] += 1
            return
        outcomes[f"{kind} override accepted"] += 1
        cases.append(envoy_case(len(cases), Kind.LISTENERS, body, verdict.resource))

    override()
    envoy = EnvoyBatches(world, tmp_path, cases)
    failures = envoy.check_all(cases, BATCH)
    print(f"\nper-route: {dict(sorted(outcomes.items()))}; {envoy.runs} Envoy runs in "
          f"{envoy.seconds:.1f} s")
    assert not failures, "Envoy rejects an override the API accepted:\n" + describe(
        failures, lambda body: json.dumps(body)[:3000])
    assert len(cases) >= 5, outcomes


def test_a_case_envoy_rejects_is_found_with_its_error(world: World, tmp_path: Path) -> None:
    """The check can fail: a listener Envoy refuses, hidden among good ones, is bisected out
    with Envoy's message, in a handful of runs."""
    good = {"name": "ok", "team": "prop", "port": 1, "filterChains": [{"filters": [
        {"name": "hcm", "type": "httpConnectionManager", "routeConfigName": "rc-main"}]}]}
    cases = [envoy_case(i, Kind.LISTENERS, good, good) for i in range(8)]
    envoy = EnvoyBatches(world, tmp_path, cases)
    broken = envoy.parts[id(cases[5])]  # as served, then broken behind the API's back
    broken["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].insert(0, {
        "name": "bad-lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": "function ("}}})
    [(case, error)] = envoy.failures(cases)
    assert case is cases[5]
    assert "script load error" in error
    assert envoy.runs <= 7


@pytest.mark.parametrize(("body", "path", "resolves"), [
    ({"a": {"b": [1, {"c": 2}]}}, "a.b[1].c", True),
    ({"a": {"b": [1]}}, "a.b[1]", False),
    ({"a": {}}, "a.missing", True),
    ({"a": {}}, "a.missing.deeper", False),
    ({"t": {"envoy.filters.http.cors": {"x": 1}}}, "t.envoy.filters.http.cors.x", True),
    ({"a": 1}, "a.b", False),
])
def test_error_paths_must_name_a_member(body: Any, path: str, resolves: bool) -> None:
    assert field_resolves(body, path) is resolves
