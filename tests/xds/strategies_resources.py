"""Hypothesis strategies of whole request bodies: listeners (filter chains with random TLS
settings, HTTP connection managers with random ``httpFilters`` and inline route configs with
``typedPerFilterConfig``, TCP proxies) and clusters (random upstream TLS)."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from tests.xds.strategies_filters import FILTERS, UNKNOWN_FILTERS, filter_of, per_route
from tests.xds.strategies_values import (
    CA_SECRETS,
    CERTIFICATE_SECRETS,
    DATAPLANE,
    FILTER_RESOURCES,
    ROUTE_CONFIG,
    TEAM,
    bools,
    cluster_refs,
    edge_ints,
    edge_nums,
    fields,
    lists,
    mostly,
    odd,
    rarely,
    secret_refs,
    sometimes,
    with_unknown,
)

Strategy = st.SearchStrategy[Any]


def names() -> Strategy:
    return mostly(st.sampled_from(["l", "a.b", "A_b-1", "9", "x" * 128]),
                  st.sampled_from(["", "-a", "a b", "x" * 129, "é", 5]), one_in=40)


# TLS ----------------------------------------------------------------------------------------

SERVER_NAMES = ("a.example", "*.a.example", "B.Example", "api.b.example", "xn--bcher-kva.example",
                "a" * 63 + ".example", "localhost", "a-b.c-d.example")
BAD_SERVER_NAMES = ("*", "a..b", "*.*.a", "-a.example", "a.example.", "10.0.0.1", "é.example",
                    "x" * 254, "a_b.example", "*a.example", "")


def server_names(group: int) -> Strategy:
    """SNI names of one filter chain; chains of different groups never share a name."""
    own = [re.sub("example", f"g{group}.example", n, flags=re.IGNORECASE)
           if "example" in n.lower() else n + str(group) for n in SERVER_NAMES]
    name = mostly(st.sampled_from(own), st.sampled_from(BAD_SERVER_NAMES))
    many = st.sampled_from([100, 101]).map(
        lambda n: [f"h{i}.g{group}.example" for i in range(n)])
    return mostly(lists(name, min_size=1, unique=True), many, one_in=16)


def downstream_tls(group: int | None) -> Strategy:
    """A filter chain's ``tls``: certificate, client verification, version, ALPN, and SNI
    names of ``group`` (None: no serverNames)."""
    alpn = mostly(st.sampled_from(["h2", "http/1.1", "acme-tls/1", "x", "~" * 32]),
                  st.sampled_from(["", " ", "a" * 33, "é", "h2 ", "h\x002"]))
    optional = {"minVersion": mostly(st.sampled_from(["TLSv1_2", "TLSv1_3"]),
                                     st.sampled_from(["TLSv1_1", "TLSv1_0", "tls1.3"])),
                "alpn": lists(alpn, long=9)}
    required = {"certificateSecret": secret_refs(CERTIFICATE_SECRETS)}
    if group is not None:
        required["serverNames"] = server_names(group)
    verify = st.one_of(  # requireClientCertificate needs validationContextSecret
        st.just({}), fields({"validationContextSecret": secret_refs(CA_SECRETS)},
                            {"requireClientCertificate": bools()}),
        mostly(st.just({}), st.fixed_dictionaries({"requireClientCertificate": st.just(True)})))
    return st.tuples(with_unknown(fields(required, optional)), verify).map(
        lambda parts: {**parts[0], **parts[1]})


UPSTREAM_SNI = ("up.example", "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61,
                "localhost", "UP.Example", "xn--bcher-kva.example")
BAD_UPSTREAM_SNI = ("*.up.example", "10.0.0.1", "a b", "", "x" * 254, "a..b")


def upstream_tls() -> Strategy:
    sni = mostly(st.sampled_from(UPSTREAM_SNI), st.sampled_from(BAD_UPSTREAM_SNI))
    return with_unknown(fields({}, {
        "serverName": sni, "validationContextSecret": secret_refs(CA_SECRETS),
        "clientCertificateSecret": secret_refs(CERTIFICATE_SECRETS)}))


# Clusters -----------------------------------------------------------------------------------

IP_HOSTS = ("10.0.0.1", "10.0.0.2", "::1", "2001:db8::1", "127.0.0.1", "0.0.0.0", "::")
DNS_HOSTS = ("svc.example", "a-b.example", "localhost", "x" * 63 + ".example", "UPPER.example")


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    """A cluster body: IP (EDS) or hostname (STRICT_DNS) endpoints, upstream TLS or not."""
    hosts = draw(st.sampled_from([IP_HOSTS, DNS_HOSTS]))
    host = mostly(st.sampled_from(hosts), st.sampled_from([*IP_HOSTS[:1], *DNS_HOSTS[:1],
                                                          "bad_host", "1.2.3.999"]), one_in=40)
    endpoint = with_unknown(fields(
        {"host": host, "port": edge_ints(1, 65535)}, {"weight": edge_ints(1, 128)}))
    use_tls = draw(st.booleans())
    tls = {"tlsServerName": mostly(st.sampled_from(UPSTREAM_SNI),
                                   st.sampled_from(BAD_UPSTREAM_SNI)),
           "tls": upstream_tls()}
    if not use_tls and not draw(rarely(10)):  # TLS settings without useTls: refused
        tls = {}
    optional = {
        "connectTimeoutSeconds": edge_nums(0, 3600, positive=True),
        **tls,
        "protocol": mostly(st.sampled_from(["HTTP1", "HTTP2"]), st.just("HTTP3")),
        "lbPolicy": st.sampled_from(["ROUND_ROBIN", "LEAST_REQUEST", "RING_HASH", "MAGLEV"]),
        "dnsLookupFamily": st.sampled_from(["AUTO", "V4_ONLY", "V6_ONLY", "ALL"]),
        "serviceName": mostly(st.just("svc"), st.just("")),
    }
    required = {"name": names(), "team": st.just(TEAM),
                "endpoints": lists(endpoint, min_size=1, max_size=3)}
    if use_tls:
        required["useTls"] = mostly(st.just(True), st.sampled_from(["true", 1]))
    else:
        optional["useTls"] = st.just(False)
    return draw(with_unknown(fields(required, optional)))


# Listeners ----------------------------------------------------------------------------------

FILTER_NAMES = ("f1", "f2", "auth", "envoy.filters.http.cors", "x" * 128)


def _typed_per_filter_config(targets: dict[str, str]) -> Strategy:
    """``typedPerFilterConfig``: overrides of some of the chain's filters, keyed by filter
    type (an inline entry without a name) or filter resource name (``targets`` maps each key
    to the filter type); in dirty examples also other keys."""
    key = st.sampled_from(["unknown", "", "f1", *sorted(FILTERS)])
    if targets:
        key = mostly(st.sampled_from(sorted(targets)), key)
    return st.dictionaries(key, st.just(None), min_size=1, max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({k: per_route(targets.get(k, k)) for k in chosen}))


@st.composite
def _inline_route_config(draw: st.DrawFn, targets: dict[str, str]) -> dict[str, Any]:
    hosts = []
    for i, domain in enumerate(["*", "a.example", "b.example:8080"][:draw(st.integers(1, 3))]):
        route: dict[str, Any] = {"name": f"r{i}",
                                 "match": {"path": {"type": "prefix", "value": "/"}},
                                 "action": {"type": "forward", "cluster": draw(cluster_refs())}}
        if draw(sometimes(6)):
            route["typedPerFilterConfig"] = draw(_typed_per_filter_config(targets))
        host: dict[str, Any] = {"name": f"vh{i}", "domains": [domain], "routes": [route]}
        if draw(sometimes(4)):
            host["typedPerFilterConfig"] = draw(_typed_per_filter_config(targets))
        hosts.append(host)
    return {"virtualHosts": hosts}


@st.composite
def connection_managers(draw: st.DrawFn) -> dict[str, Any]:
    """An httpConnectionManager filter: random httpFilters, RDS or an inline route config."""
    # Filters of distinct types in random order (sampling types one by one favours the
    # first); in dirty examples also unknown types and types twice.
    kinds: list[str] = draw(st.permutations(sorted(FILTERS)))[:draw(st.integers(0, 6))]
    if draw(rarely(8)) and kinds:
        kinds.append(kinds[0])
    name = mostly(st.sampled_from(FILTER_NAMES), st.sampled_from(["", "a b"]))
    entries: Any = [draw(with_unknown(fields({"filter": mostly(filter_of(kind), UNKNOWN_FILTERS,
                                                                one_in=60)}, {"name": name})))
                    for kind in kinds]
    for ref in draw(st.lists(st.sampled_from(sorted(FILTER_RESOURCES)), max_size=2,
                             unique=True)):  # filter resources, by reference
        entries.insert(draw(st.integers(0, len(entries))), {"filterRef": ref})
    if draw(rarely(20)):
        entries.append({"filterRef": draw(st.sampled_from(["missing", "", "a b"]))})
    entries = draw(mostly(st.just(entries), st.sampled_from(["x", {}, None])))
    targets: dict[str, str] = {}  # the keys an override may use, and their filter types
    for entry in entries if isinstance(entries, list) else []:
        kind = (entry.get("filter") or {}).get("type")
        if "filterRef" in entry and entry["filterRef"] in FILTER_RESOURCES:
            targets[entry["filterRef"]] = FILTER_RESOURCES[entry["filterRef"]]["filterType"]
        elif isinstance(kind, str) and kind in FILTERS and not entry.get("name"):
            targets[kind] = kind
    out: dict[str, Any] = {"name": "hcm", "type": "httpConnectionManager", "httpFilters": entries}
    route = draw(st.integers(0, 9))
    if route in (1, 2, 3):
        out["routeConfigName"] = draw(mostly(st.just(ROUTE_CONFIG), st.just("missing-rc")))
    else:
        out["inlineRouteConfig"] = draw(_inline_route_config(targets))
    if draw(rarely(30)):  # both, or neither
        if draw(st.booleans()):
            out.pop("inlineRouteConfig", None)
            out.pop("routeConfigName", None)
        else:
            out.update(routeConfigName=ROUTE_CONFIG,
                       inlineRouteConfig=draw(_inline_route_config(targets)))
    return out


def tcp_proxies() -> Strategy:
    return st.fixed_dictionaries({"name": st.just("tcp"), "type": st.just("tcpProxy"),
                                  "cluster": cluster_refs()})


@st.composite
def listeners(draw: st.DrawFn) -> dict[str, Any]:
    """A listener body: 1-3 filter chains, each plaintext or TLS, HTTP or TCP."""
    protocol = draw(mostly(st.sampled_from(["HTTP", "TCP"]), st.sampled_from(["UDP", "http"]),
                           one_in=40))
    chains = []
    # At most one plaintext chain and one TLS chain without serverNames (else two chains
    # match the same connections), rarely not.
    kinds = draw(st.lists(st.sampled_from(["plain", "tls", "sni"]), min_size=1, max_size=3))
    if not draw(rarely(30)):
        kinds = [k for i, k in enumerate(kinds) if k == "sni" or k not in kinds[:i]]
    for i, kind in enumerate(kinds):
        tcp = protocol == "TCP"
        if draw(rarely(40)):  # the other protocol's filter
            tcp = not tcp
        chain: dict[str, Any] = {"filters": [draw(tcp_proxies() if tcp
                                                  else connection_managers())]}
        if kind != "plain":
            chain["tls"] = draw(downstream_tls(i if kind == "sni" else None))
        if draw(st.booleans()):
            chain["name"] = draw(mostly(st.sampled_from([f"c{i}", "main"]), odd()))
        chains.append(chain)
    body: dict[str, Any] = {"name": draw(names()), "team": TEAM, "port": draw(edge_ints(1, 65535)),
                            "filterChains": chains}
    if protocol != "HTTP" or draw(st.booleans()):
        body["protocol"] = protocol
    optional = draw(fields({}, {
        "address": mostly(st.sampled_from(["0.0.0.0", "::", "127.0.0.1", "::1"]),
                          st.sampled_from(["localhost", "1.2.3.999", "fe80::1%eth0"])),
        "dataplaneId": mostly(st.just(DATAPLANE), st.sampled_from(["nodp", "a b"]))}))
    return draw(with_unknown(st.just({**body, **optional})))
