"""Our listener resource -> Envoy Listener (LDS), and the resources listeners refer to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from raftplane.model.filter_schemas import filter_clusters, filter_secrets
from raftplane.model.kinds import Kind
from raftplane.xds.translate import envoy_names
from raftplane.xds.translate.common import TranslationError, ads_config_source, at, item, pack
from raftplane.xds.translate.filter_refs import (
    NO_FILTERS,
    Filters,
    ResolvedFilter,
    resolve_http_filters,
)
from raftplane.xds.translate.http_filters import HttpFilters, http_filters_to_envoy
from raftplane.xds.translate.routes import build_route_config, route_clusters, route_config_to_envoy
from raftplane.xds.translate.secrets import downstream_tls_context


def listener_to_envoy(listener: dict[str, Any], filters: Filters = NO_FILTERS
                      ) -> listener_pb2.Listener:
    """The Envoy Listener of a validated listener resource (its ``filterRef`` entries resolved
    against ``filters``). HTTP connection managers fetch their route config over ADS (RDS)
    unless it is inline (a connection manager whose filters set virtual host settings, i.e.
    a CORS policy, fetches a copy of it made for that listener: ``listener_route_names``);
    TLS chains get their certificate over ADS (SDS) from the secrets
    ``tls.certificateSecret`` (and ``tls.validationContextSecret``); chains with
    ``tls.serverNames`` match on the SNI."""
    socket = address_pb2.SocketAddress(address=listener.get("address", "0.0.0.0"),
                                       port_value=listener["port"])
    out = listener_pb2.Listener(name=listener["name"],
                                address=address_pb2.Address(socket_address=socket))
    chains = listener["filterChains"]
    mixed = len({"tls" in chain for chain in chains}) > 1
    by_sni = any((chain.get("tls") or {}).get("serverNames") for chain in chains)
    if mixed or by_sni:  # tell TLS from plaintext connections, read the SNI
        out.listener_filters.append(lc.ListenerFilter(
            name=envoy_names.TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())))
    seen: dict[tuple[bool, str], str] = {}
    for i, chain in enumerate(chains):
        chain_path = item("filterChains", i)
        tls = "tls" in chain
        server_names = [n.lower() for n in (chain.get("tls") or {}).get("serverNames") or []]
        for j, key in enumerate(server_names or [""]):
            if (tls, key) in seen:
                field = item(at(chain_path, "tls.serverNames"), j) if key else chain_path
                raise TranslationError(field, f"matches the same connections as "
                                       f"{seen[(tls, key)]}: a listener has one plaintext "
                                       "chain and one TLS chain per server name (and one "
                                       "without serverNames)")
            seen[(tls, key)] = chain_path
        out.filter_chains.append(_filter_chain(listener, i, chain, mixed, filters))
    return out


def _filter_chain(listener: dict[str, Any], index: int, chain: dict[str, Any],
                  mixed: bool, filters: Filters) -> lc.FilterChain:
    chain_path = item("filterChains", index)
    out = lc.FilterChain(name=chain.get("name", ""))
    if mixed:
        out.filter_chain_match.transport_protocol = "tls" if "tls" in chain else "raw_buffer"
    if "tls" in chain:
        if chain["tls"].get("serverNames"):
            out.filter_chain_match.server_names.extend(chain["tls"]["serverNames"])
        out.transport_socket.CopyFrom(_downstream_tls(chain["tls"], at(chain_path, "tls")))
    for j, filt in enumerate(chain["filters"]):
        filter_path = item(at(chain_path, "filters"), j)
        if filt["type"] == "httpConnectionManager":
            config = pack(_connection_manager(listener, filt, filter_path, index, j, filters))
            out.filters.add(name=envoy_names.HTTP_CONNECTION_MANAGER, typed_config=config)
        elif filt["type"] == "tcpProxy":
            proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=listener["name"], cluster=filt["cluster"])
            out.filters.add(name=envoy_names.TCP_PROXY, typed_config=pack(proxy))
        else:
            raise TranslationError(at(filter_path, "type"),
                                   "must be httpConnectionManager or tcpProxy")
    return out


def _downstream_tls(tls: dict[str, Any], path: str) -> base_pb2.TransportSocket:
    if "certificateSecret" not in tls:
        raise TranslationError(at(path, "certificateSecret"), "is required for a TLS chain")
    if tls.get("requireClientCertificate") and "validationContextSecret" not in tls:
        raise TranslationError(at(path, "validationContextSecret"),
                               "is required when requireClientCertificate is true")
    return base_pb2.TransportSocket(name=envoy_names.TLS_TRANSPORT_SOCKET,
                                    typed_config=pack(downstream_tls_context(tls)))


def _connection_manager(listener: dict[str, Any], filt: dict[str, Any], path: str,
                        chain: int, index: int, filters: Filters
                        ) -> hcm_pb2.HttpConnectionManager:
    http_filters = http_filters_to_envoy(filt.get("httpFilters") or [], at(path, "httpFilters"),
                                         filters)
    out = hcm_pb2.HttpConnectionManager(
        stat_prefix=listener["name"],
        codec_type=hcm_pb2.HttpConnectionManager.CodecType.AUTO,
        http_filters=http_filters.filters,
    )
    if "routeConfigName" in filt:
        name = filt["routeConfigName"]
        if http_filters.virtual_host_configs:  # this listener's own copy, with its policy
            name = envoy_names.listener_route_config(name, listener["name"], chain, index)
        out.rds.CopyFrom(hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=name))
        return out
    if "inlineRouteConfig" not in filt:
        raise TranslationError(path, "must set routeConfigName or inlineRouteConfig")
    route_config = build_route_config(
        envoy_names.inline_route_config(listener["name"], chain, index),
        filt["inlineRouteConfig"]["virtualHosts"], at(path, "inlineRouteConfig"), filters)
    _add_virtual_host_configs(route_config, http_filters)
    out.route_config.CopyFrom(route_config)
    return out


def _add_virtual_host_configs(route_config: route_pb2.RouteConfiguration,
                              http_filters: HttpFilters) -> None:
    """Put the filters' virtual host settings (CORS policies) on every virtual host, unless a
    virtual host sets its own for that filter."""
    for host in route_config.virtual_hosts:
        for _, name, config in http_filters.virtual_host_configs:
            if name not in host.typed_per_filter_config:
                host.typed_per_filter_config[name].CopyFrom(config)


def _connection_managers(listener: dict[str, Any]
                         ) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    for i, chain in enumerate(listener["filterChains"]):
        for j, filt in enumerate(chain["filters"]):
            if filt["type"] == "httpConnectionManager":
                yield i, j, item(at(item("filterChains", i), "filters"), j), filt


def listener_route_names(listener: dict[str, Any], filters: Filters = NO_FILTERS
                         ) -> list[tuple[str, str]]:
    """(RDS name, route config) of each route config the listener fetches: the route
    config's own name, or the name of this listener's copy when its connection manager adds
    virtual host settings (a CORS policy) to it."""
    found: dict[str, str] = {}
    for i, j, path, filt in _connection_managers(listener):
        if "routeConfigName" not in filt:
            continue
        route = filt["routeConfigName"]
        http_filters = http_filters_to_envoy(filt.get("httpFilters") or [],
                                             at(path, "httpFilters"), filters)
        name = (envoy_names.listener_route_config(route, listener["name"], i, j)
                if http_filters.virtual_host_configs else route)
        found.setdefault(name, route)
    return list(found.items())


def listener_route_config_to_envoy(listener: dict[str, Any], rds_name: str,
                                   route_config: dict[str, Any], filters: Filters = NO_FILTERS
                                   ) -> route_pb2.RouteConfiguration:
    """The listener's copy ``rds_name`` of ``route_config``, with the virtual host settings of
    the connection manager that fetches it (see ``listener_route_names``)."""
    for i, j, path, filt in _connection_managers(listener):
        route = filt.get("routeConfigName")
        if route is None or envoy_names.listener_route_config(
                route, listener["name"], i, j) != rds_name:
            continue
        http_filters = http_filters_to_envoy(filt.get("httpFilters") or [],
                                             at(path, "httpFilters"), filters)
        out = route_config_to_envoy(route_config, name=rds_name, filters=filters)
        _add_virtual_host_configs(out, http_filters)
        return out
    raise TranslationError("filterChains", f"no connection manager fetches {rds_name!r}")


def referenced_route_configs(listener: dict[str, Any]) -> list[str]:
    """Names of the route configs the listener's connection managers fetch over RDS."""
    found = {filt["routeConfigName"]: None for chain in listener["filterChains"]
             for filt in chain["filters"] if "routeConfigName" in filt}
    return list(found)


def referenced_clusters(resource_kind: str, resource: dict[str, Any],
                        filters: Filters = NO_FILTERS) -> list[str]:
    """Names of the clusters a route config ("route-configs") or listener ("listeners": tcp
    proxies, inline route configs, HTTP filters' services, inline or by ``filterRef``) sends
    traffic to, first-seen order. Others name none."""
    if resource_kind == Kind.ROUTE_CONFIGS:
        return route_clusters(resource["virtualHosts"])
    if resource_kind != Kind.LISTENERS:
        return []
    found: dict[str, None] = {}
    for chain in resource["filterChains"]:
        for filt in chain["filters"]:
            if filt["type"] == "tcpProxy":
                found.setdefault(filt["cluster"])
            if "inlineRouteConfig" in filt:
                found.update(dict.fromkeys(route_clusters(
                    filt["inlineRouteConfig"]["virtualHosts"])))
            for entry in _resolved(filt, filters):  # e.g. ext_authz, remote JWKS
                found.update((name, None) for name, _ in filter_clusters(entry.spec))
    return list(found)


def filter_secrets_of(listener: dict[str, Any], filters: Filters = NO_FILTERS) -> list[str]:
    """Names of the secrets the listener's HTTP filters fetch over SDS (oauth2's)."""
    found: dict[str, None] = {}
    for chain in listener["filterChains"]:
        for filt in chain["filters"]:
            for entry in _resolved(filt, filters):
                found.update((name, None) for name, _ in filter_secrets(entry.spec))
    return list(found)


def _resolved(filt: dict[str, Any], filters: Filters) -> list[ResolvedFilter]:
    """The HTTP filters of a connection manager; a reference that does not resolve (a filter
    deleted under it cannot be: deletes of referenced filters are refused) is left out."""
    entries = [e for e in filt.get("httpFilters") or []
               if "filterRef" not in e or e["filterRef"] in filters]
    return resolve_http_filters(entries, "httpFilters", filters)
