"""CPU per create spent validating the request body: today's hand-written validator against
msgspec and pydantic v2 models of the same three bodies (cluster, listener, route config).

Each candidate turns the raw request bytes into a validated value, as the write path does
(today: ``json.loads`` then ``validate_resource``). The library models carry the same field
constraints and run the same lexical checks (host, domain, path, RE2 regex) the API needs,
so the figures compare like with like; the cross-field rules (endpoint mix, action fields,
duplicate domains, ...) are left out of the library models, which favours the libraries.

Also prints what each answers for the body of tests/api's `test_messages_are_specific`
(endpoints[0].port = 0) and for a body with several errors, to compare the messages.

    .venv/bin/python bench/validate_bodies.py            # 10,000 per body, best of 5
    .venv/bin/python bench/validate_bodies.py -n 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pydantic
from msgspec import Meta, Struct

from raftplane.api.bodies import ValidationFailed, validate_resource
from raftplane.model import lexical as names

CLUSTER = {
    "name": "payments-backend", "team": "payments", "serviceName": "payments.internal",
    "endpoints": [{"host": f"10.0.{i}.{i + 10}", "port": 8443, "weight": 10} for i in range(4)],
    "connectTimeoutSeconds": 2, "useTls": True, "tlsServerName": "payments.internal",
    "lbPolicy": "LEAST_REQUEST",
    "healthChecks": [{"type": "http", "path": "/healthz", "intervalSeconds": 5,
                      "expectedStatuses": [200, 204]}],
    "circuitBreakers": {"default": {"maxConnections": 1000, "maxRequests": 2000}},
    "outlierDetection": {"consecutive5xx": 5, "intervalSeconds": 10,
                         "baseEjectionTimeSeconds": 30, "maxEjectionPercent": 50},
    "protocol": "HTTP2",
}


def _route(i: int) -> dict[str, Any]:
    if i % 3 == 2:
        match = {"path": {"type": "regex", "value": rf"^/v{i}/items/[0-9]+$"},
                 "headers": [{"name": "x-tenant", "value": "gold"}]}
    else:
        match = {"path": {"type": "prefix", "value": f"/api/v{i}"}}
    action = {"type": "forward", "cluster": "payments-backend", "timeoutSeconds": 15,
              "retryPolicy": {"maxRetries": 2, "retryOn": ["5xx", "reset"]}}
    if i % 4 == 3:
        action = {"type": "weighted", "clusters": [{"name": "payments-backend", "weight": 90},
                                                   {"name": "payments-canary", "weight": 10}]}
    return {"name": f"route-{i}", "match": match, "action": action}


ROUTE_CONFIG = {
    "name": "payments-routes", "team": "payments",
    "virtualHosts": [
        {"name": f"vhost-{h}", "domains": [f"api{h}.example.com", f"api{h}.example.com:8443"],
         "routes": [_route(h * 4 + i) for i in range(4)]}
        for h in range(2)
    ],
}
LISTENER = {
    "name": "payments-ingress", "team": "payments", "address": "0.0.0.0", "port": 10443,
    "dataplaneId": "edge", "protocol": "HTTP",
    "filterChains": [{
        "name": "default",
        "filters": [{
            "name": "hcm", "type": "httpConnectionManager",
            "routeConfigName": "payments-routes",
            "httpFilters": [{"filter": {"type": "cors", "allowOrigins": ["https://a.example"]}},
                            {"filter": {"type": "local_rate_limit", "maxTokens": 100}}],
        }],
    }],
}
BODIES = {"clusters": CLUSTER, "route-configs": ROUTE_CONFIG, "listeners": LISTENER}


# ---- msgspec: Structs with Meta constraints; lexical checks in __post_init__ --------------

Name = Annotated[str, Meta(min_length=1, max_length=names.NAME_MAX, pattern=names.NAME_PATTERN)]
Port = Annotated[int, Meta(ge=1, le=65535)]
UInt32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
Seconds = Annotated[float, Meta(gt=0, le=86400)]


def _check(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


class MEndpoint(Struct, forbid_unknown_fields=True, omit_defaults=True):
    host: Annotated[str, Meta(max_length=253)]
    port: Port
    weight: Annotated[int, Meta(ge=1, le=128)] | None = None

    def __post_init__(self) -> None:
        _check(names.host_problem(self.host))


class MHealthCheck(Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["http", "tcp"]
    path: Annotated[str, Meta(max_length=2048)] | None = None
    intervalSeconds: Seconds = 10
    timeoutSeconds: Seconds = 5
    healthyThreshold: Annotated[int, Meta(ge=1, le=2**32 - 1)] = 2
    unhealthyThreshold: Annotated[int, Meta(ge=1, le=2**32 - 1)] = 3
    expectedStatuses: Annotated[list[Annotated[int, Meta(ge=100, le=599)]],
                                Meta(min_length=1)] | None = None


class MThresholds(Struct, forbid_unknown_fields=True, omit_defaults=True):
    maxConnections: UInt32 | None = None
    maxPendingRequests: UInt32 | None = None
    maxRequests: UInt32 | None = None
    maxRetries: UInt32 | None = None


class MCircuitBreakers(Struct, forbid_unknown_fields=True, omit_defaults=True):
    default: MThresholds | None = None
    high: MThresholds | None = None


class MOutlier(Struct, forbid_unknown_fields=True, omit_defaults=True):
    consecutive5xx: UInt32 | None = None
    intervalSeconds: Seconds | None = None
    baseEjectionTimeSeconds: Seconds | None = None
    maxEjectionPercent: Annotated[int, Meta(ge=0, le=100)] | None = None


class MCluster(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    team: Name
    endpoints: Annotated[list[MEndpoint], Meta(min_length=1)]
    serviceName: Annotated[str, Meta(min_length=1, max_length=253)] | None = None
    connectTimeoutSeconds: Annotated[float, Meta(gt=0, le=3600)] = 5
    useTls: bool = False
    tlsServerName: Annotated[str, Meta(max_length=253)] | None = None
    lbPolicy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH",
                      "MAGLEV"] = "ROUND_ROBIN"
    dnsLookupFamily: Literal["AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"] = "AUTO"
    healthChecks: list[MHealthCheck] | None = None
    circuitBreakers: MCircuitBreakers | None = None
    outlierDetection: MOutlier | None = None
    protocol: Literal["HTTP1", "HTTP2"] = "HTTP1"

    def __post_init__(self) -> None:
        if self.tlsServerName is not None:
            _check(names.hostname_problem(self.tlsServerName))


class MPathMatch(Struct, forbid_unknown_fields=True):
    type: Literal["prefix", "exact", "regex", "template"]
    value: Annotated[str, Meta(min_length=1, max_length=2048)]

    def __post_init__(self) -> None:
        check = {"prefix": names.path_problem, "exact": names.path_problem,
                 "regex": names.regex_problem, "template": names.template_problem}[self.type]
        _check(check(self.value))


class MMatcher(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    value: Annotated[str, Meta(max_length=1024)] | None = None
    regex: Annotated[str, Meta(min_length=1, max_length=1024)] | None = None
    present: bool | None = None


class MMatch(Struct, forbid_unknown_fields=True, omit_defaults=True):
    path: MPathMatch
    headers: list[MMatcher] | None = None
    queryParameters: list[MMatcher] | None = None


class MRetry(Struct, forbid_unknown_fields=True, omit_defaults=True):
    retryOn: Annotated[list[Literal["5xx", "gateway-error", "reset", "connect-failure",
                                    "retriable-4xx", "refused-stream"]], Meta(min_length=1)]
    maxRetries: UInt32 = 1
    perTryTimeoutSeconds: Seconds | None = None


class MWeighted(Struct, forbid_unknown_fields=True):
    name: Name
    weight: Annotated[int, Meta(ge=1, le=2**32 - 1)]


class MAction(Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["forward", "weighted", "redirect"]
    cluster: Name | None = None
    timeoutSeconds: Annotated[float, Meta(ge=0, le=86400)] | None = None
    prefixRewrite: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    retryPolicy: MRetry | None = None
    clusters: Annotated[list[MWeighted], Meta(min_length=1)] | None = None
    hostRedirect: Annotated[str, Meta(max_length=253)] | None = None
    pathRedirect: Annotated[str, Meta(max_length=2048)] | None = None
    responseCode: Literal[301, 302, 303, 307, 308] | None = None


class MRoute(Struct, forbid_unknown_fields=True, omit_defaults=True):
    match: MMatch
    action: MAction
    name: Name | None = None


class MVirtualHost(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    domains: Annotated[list[Annotated[str, Meta(min_length=1, max_length=260)]],
                       Meta(min_length=1)]
    routes: list[MRoute]
    typedPerFilterConfig: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for domain in self.domains:
            _check(names.domain_problem(domain))


class MRouteConfig(Struct, forbid_unknown_fields=True):
    name: Name
    team: Name
    virtualHosts: Annotated[list[MVirtualHost], Meta(min_length=1)]


class MHttpFilter(Struct, forbid_unknown_fields=True, omit_defaults=True):
    filter: dict[str, Any]
    name: Name | None = None


class MFilter(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    type: Literal["httpConnectionManager", "tcpProxy"]
    routeConfigName: Name | None = None
    inlineRouteConfig: dict[str, Any] | None = None
    httpFilters: list[MHttpFilter] | None = None
    cluster: Name | None = None


class MTls(Struct, forbid_unknown_fields=True, omit_defaults=True):
    secretName: Name | None = None


class MChain(Struct, forbid_unknown_fields=True, omit_defaults=True):
    filters: Annotated[list[MFilter], Meta(min_length=1, max_length=1)]
    name: Name | None = None
    tls: MTls | None = None


class MListener(Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    team: Name
    port: Port
    filterChains: Annotated[list[MChain], Meta(min_length=1)]
    address: Annotated[str, Meta(max_length=45)] = "0.0.0.0"
    dataplaneId: Name | None = None
    protocol: Literal["HTTP", "TCP"] = "HTTP"

    def __post_init__(self) -> None:
        _check(names.ip_problem(self.address))


MSGSPEC = {"clusters": MCluster, "route-configs": MRouteConfig, "listeners": MListener}
_DECODERS = {kind: msgspec.json.Decoder(t) for kind, t in MSGSPEC.items()}


# ---- pydantic v2: the same shapes as BaseModels (strict, extra forbidden) ------------------

class PModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)


PName = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=names.NAME_MAX,
                                                  pattern=names.NAME_PATTERN)]
PPort = Annotated[int, pydantic.Field(ge=1, le=65535)]
PUInt32 = Annotated[int, pydantic.Field(ge=0, le=2**32 - 1)]
PSeconds = Annotated[float, pydantic.Field(gt=0, le=86400), pydantic.Strict(False)]


def _after(check: Callable[[str], str | None]):
    def run(value: str) -> str:
        _check(check(value))
        return value

    return pydantic.AfterValidator(run)


class PEndpoint(PModel):
    host: Annotated[str, pydantic.Field(max_length=253), _after(names.host_problem)]
    port: PPort
    weight: Annotated[int, pydantic.Field(ge=1, le=128)] | None = None


class PHealthCheck(PModel):
    type: Literal["http", "tcp"]
    path: Annotated[str, pydantic.Field(max_length=2048)] | None = None
    intervalSeconds: PSeconds = 10
    timeoutSeconds: PSeconds = 5
    healthyThreshold: Annotated[int, pydantic.Field(ge=1, le=2**32 - 1)] = 2
    unhealthyThreshold: Annotated[int, pydantic.Field(ge=1, le=2**32 - 1)] = 3
    expectedStatuses: Annotated[list[Annotated[int, pydantic.Field(ge=100, le=599)]],
                                pydantic.Field(min_length=1)] | None = None


class PThresholds(PModel):
    maxConnections: PUInt32 | None = None
    maxPendingRequests: PUInt32 | None = None
    maxRequests: PUInt32 | None = None
    maxRetries: PUInt32 | None = None


class PCircuitBreakers(PModel):
    default: PThresholds | None = None
    high: PThresholds | None = None


class POutlier(PModel):
    consecutive5xx: PUInt32 | None = None
    intervalSeconds: PSeconds | None = None
    baseEjectionTimeSeconds: PSeconds | None = None
    maxEjectionPercent: Annotated[int, pydantic.Field(ge=0, le=100)] | None = None


class PCluster(PModel):
    name: PName
    team: PName
    endpoints: Annotated[list[PEndpoint], pydantic.Field(min_length=1)]
    serviceName: Annotated[str, pydantic.Field(min_length=1, max_length=253)] | None = None
    connectTimeoutSeconds: Annotated[float, pydantic.Field(gt=0, le=3600),
                                     pydantic.Strict(False)] = 5
    useTls: bool = False
    tlsServerName: Annotated[str, pydantic.Field(max_length=253),
                             _after(names.hostname_problem)] | None = None
    lbPolicy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH",
                      "MAGLEV"] = "ROUND_ROBIN"
    dnsLookupFamily: Literal["AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"] = "AUTO"
    healthChecks: list[PHealthCheck] | None = None
    circuitBreakers: PCircuitBreakers | None = None
    outlierDetection: POutlier | None = None
    protocol: Literal["HTTP1", "HTTP2"] = "HTTP1"


class PPathMatch(PModel):
    type: Literal["prefix", "exact", "regex", "template"]
    value: Annotated[str, pydantic.Field(min_length=1, max_length=2048)]

    @pydantic.model_validator(mode="after")
    def _value(self) -> PPathMatch:
        check = {"prefix": names.path_problem, "exact": names.path_problem,
                 "regex": names.regex_problem, "template": names.template_problem}[self.type]
        _check(check(self.value))
        return self


class PMatcher(PModel):
    name: Annotated[str, pydantic.Field(min_length=1, max_length=256)]
    value: Annotated[str, pydantic.Field(max_length=1024)] | None = None
    regex: Annotated[str, pydantic.Field(min_length=1, max_length=1024)] | None = None
    present: bool | None = None


class PMatch(PModel):
    path: PPathMatch
    headers: list[PMatcher] | None = None
    queryParameters: list[PMatcher] | None = None


class PRetry(PModel):
    retryOn: Annotated[list[Literal["5xx", "gateway-error", "reset", "connect-failure",
                                    "retriable-4xx", "refused-stream"]],
                       pydantic.Field(min_length=1)]
    maxRetries: PUInt32 = 1
    perTryTimeoutSeconds: PSeconds | None = None


class PWeighted(PModel):
    name: PName
    weight: Annotated[int, pydantic.Field(ge=1, le=2**32 - 1)]


class PAction(PModel):
    type: Literal["forward", "weighted", "redirect"]
    cluster: PName | None = None
    timeoutSeconds: Annotated[float, pydantic.Field(ge=0, le=86400),
                              pydantic.Strict(False)] | None = None
    prefixRewrite: Annotated[str, pydantic.Field(min_length=1, max_length=2048)] | None = None
    retryPolicy: PRetry | None = None
    clusters: Annotated[list[PWeighted], pydantic.Field(min_length=1)] | None = None
    hostRedirect: Annotated[str, pydantic.Field(max_length=253)] | None = None
    pathRedirect: Annotated[str, pydantic.Field(max_length=2048)] | None = None
    responseCode: Literal[301, 302, 303, 307, 308] | None = None


class PRoute(PModel):
    match: PMatch
    action: PAction
    name: PName | None = None


class PVirtualHost(PModel):
    name: PName
    domains: Annotated[list[Annotated[str, pydantic.Field(min_length=1, max_length=260),
                                      _after(names.domain_problem)]],
                       pydantic.Field(min_length=1)]
    routes: list[PRoute]
    typedPerFilterConfig: dict[str, Any] | None = None


class PRouteConfig(PModel):
    name: PName
    team: PName
    virtualHosts: Annotated[list[PVirtualHost], pydantic.Field(min_length=1)]


class PHttpFilter(PModel):
    filter: dict[str, Any]
    name: PName | None = None


class PFilter(PModel):
    name: PName
    type: Literal["httpConnectionManager", "tcpProxy"]
    routeConfigName: PName | None = None
    inlineRouteConfig: dict[str, Any] | None = None
    httpFilters: list[PHttpFilter] | None = None
    cluster: PName | None = None


class PTls(PModel):
    secretName: PName | None = None


class PChain(PModel):
    filters: Annotated[list[PFilter], pydantic.Field(min_length=1, max_length=1)]
    name: PName | None = None
    tls: PTls | None = None


class PListener(PModel):
    name: PName
    team: PName
    port: PPort
    filterChains: Annotated[list[PChain], pydantic.Field(min_length=1)]
    address: Annotated[str, pydantic.Field(max_length=45), _after(names.ip_problem)] = "0.0.0.0"
    dataplaneId: PName | None = None
    protocol: Literal["HTTP", "TCP"] = "HTTP"


PYDANTIC = {"clusters": PCluster, "route-configs": PRouteConfig, "listeners": PListener}


# ---- the candidates: raw request bytes -> validated value --------------------------------

def today(kind: str) -> Callable[[bytes], object]:
    return lambda raw: validate_resource(kind, json.loads(raw))


def with_msgspec(kind: str) -> Callable[[bytes], object]:
    return _DECODERS[kind].decode


def with_msgspec_as_dict(kind: str) -> Callable[[bytes], object]:
    """What the write path would need: the normalized resource as a dict again."""
    decode = _DECODERS[kind].decode
    return lambda raw: msgspec.to_builtins(decode(raw))


def with_pydantic(kind: str) -> Callable[[bytes], object]:
    return PYDANTIC[kind].model_validate_json


def with_pydantic_as_dict(kind: str) -> Callable[[bytes], object]:
    model = PYDANTIC[kind]
    return lambda raw: model.model_validate_json(raw).model_dump(exclude_none=True)


CANDIDATES = {
    "hand-written (json.loads + validate_resource)": today,
    "msgspec Decoder(Struct).decode": with_msgspec,
    "msgspec decode + to_builtins": with_msgspec_as_dict,
    "pydantic model_validate_json": with_pydantic,
    "pydantic model_validate_json + model_dump": with_pydantic_as_dict,
}


def measure(fn: Callable[[bytes], object], raw: bytes, n: int, repeat: int) -> float:
    """Best of `repeat` runs of n calls: CPU microseconds per call."""
    fn(raw)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(n):
            fn(raw)
        best = min(best, time.process_time() - started)
    return best / n * 1e6


def messages() -> None:
    bad_port = json.dumps({**CLUSTER, "endpoints": [{"host": "10.0.0.1", "port": 0}]}).encode()
    several = json.dumps({"name": "bad name", "endpoints": [{"host": "10.0.0.1", "port": True}],
                          "lbPolicy": "FASTEST", "surprise": 1}).encode()
    for label, raw in (("endpoints[0].port = 0", bad_port), ("four errors", several)):
        print(f"\n{label}:")
        try:
            today("clusters")(raw)
        except ValidationFailed as exc:
            print("  hand-written:", [(e.field, e.message) for e in exc.errors])
        try:
            with_msgspec("clusters")(raw)
        except msgspec.ValidationError as exc:
            print("  msgspec:     ", str(exc))
        try:
            with_pydantic("clusters")(raw)
        except pydantic.ValidationError as exc:
            print("  pydantic:    ", [(e["loc"], e["msg"]) for e in exc.errors()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="validations per body and run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    args = parser.parse_args()
    print(f"msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}; "
          f"CPU µs per body, best of {args.repeat} x {args.n}")
    header = f"| candidate | {' | '.join(BODIES)} |"
    print(header)
    print("|---|" + "---:|" * len(BODIES))
    for label, make in CANDIDATES.items():
        cells = []
        for kind, body in BODIES.items():
            raw = json.dumps(body).encode()
            cells.append(f"{measure(make(kind), raw, args.n, args.repeat):.1f}")
        print(f"| {label} | {' | '.join(cells)} |")
    messages()


if __name__ == "__main__":
    main()
