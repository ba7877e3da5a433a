"""Our route config resource -> Envoy RouteConfiguration (RDS, or inline in a listener)."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import extension_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import regex_pb2

from raftplane.xds.translate import envoy_names
from raftplane.xds.translate.common import (
    TranslationError,
    at,
    duration,
    exact,
    header_value,
    item,
    pack,
    regex,
    uint32,
)
from raftplane.xds.translate.filter_refs import NO_FILTERS, Filters
from raftplane.xds.translate.per_route import per_filter_configs

UINT32_MAX = 2**32 - 1
_REDIRECT_CODES = {
    301: rc.RedirectAction.RedirectResponseCode.MOVED_PERMANENTLY,
    302: rc.RedirectAction.RedirectResponseCode.FOUND,
    303: rc.RedirectAction.RedirectResponseCode.SEE_OTHER,
    307: rc.RedirectAction.RedirectResponseCode.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.RedirectResponseCode.PERMANENT_REDIRECT,
}


def route_config_to_envoy(
    route_config: dict[str, Any], *, name: str | None = None, filters: Filters = NO_FILTERS
) -> route_pb2.RouteConfiguration:
    """The Envoy RouteConfiguration of a validated route config, named ``name`` (default: the
    resource's name). Also accepts a listener's ``inlineRouteConfig`` when ``name`` is given.
    ``typedPerFilterConfig`` keys naming filter resources resolve against ``filters``."""
    return build_route_config(name or route_config["name"], route_config["virtualHosts"], "",
                              filters)


def build_route_config(
    name: str, virtual_hosts: list[dict[str, Any]], path: str, filters: Filters = NO_FILTERS
) -> route_pb2.RouteConfiguration:
    """A RouteConfiguration from virtual hosts found at JSON path ``path`` (for errors)."""
    hosts_path = at(path, "virtualHosts")
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[_virtual_host(host, item(hosts_path, i), filters)
                       for i, host in enumerate(virtual_hosts)],
    )


def route_clusters(virtual_hosts: list[dict[str, Any]]) -> list[str]:
    """Names of the clusters that forward and weighted actions send to, first-seen order."""
    found: dict[str, None] = {}
    for host in virtual_hosts:
        for route in host.get("routes") or []:
            action = route["action"]
            if action["type"] == "forward":
                found.setdefault(action["cluster"])
            elif action["type"] == "weighted":
                for target in action["clusters"]:
                    found.setdefault(target["name"])
    return list(found)


def _virtual_host(host: dict[str, Any], path: str, filters: Filters) -> rc.VirtualHost:
    routes_path = at(path, "routes")
    out = rc.VirtualHost(
        name=host["name"],
        domains=host["domains"],
        routes=[_route(route, item(routes_path, i), filters)
                for i, route in enumerate(host["routes"])],
    )
    if "typedPerFilterConfig" in host:
        for key, config in per_filter_configs(host["typedPerFilterConfig"],
                                              at(path, "typedPerFilterConfig"), filters).items():
            out.typed_per_filter_config[key].CopyFrom(config)
    return out


def _route(route: dict[str, Any], path: str, filters: Filters) -> rc.Route:
    out = rc.Route(name=route.get("name", ""), match=_match(route["match"], at(path, "match")))
    if "typedPerFilterConfig" in route:
        for key, config in per_filter_configs(route["typedPerFilterConfig"],
                                              at(path, "typedPerFilterConfig"), filters).items():
            out.typed_per_filter_config[key].CopyFrom(config)
    action, action_path = route["action"], at(path, "action")
    if action["type"] == "redirect":
        out.redirect.CopyFrom(_redirect(action, action_path))
    elif action["type"] in ("forward", "weighted"):
        out.route.CopyFrom(_route_action(action, action_path))
    else:
        raise TranslationError(at(action_path, "type"), "must be forward, weighted or redirect")
    return out


def _match(match: dict[str, Any], path: str) -> rc.RouteMatch:
    out = rc.RouteMatch()
    kind, value = match["path"]["type"], match["path"]["value"]
    if kind == "prefix":
        out.prefix = value
    elif kind == "exact":
        out.path = value
    elif kind == "regex":
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=value))
    elif kind == "template":
        template = uri_template_match_pb2.UriTemplateMatchConfig(path_template=value)
        out.path_match_policy.CopyFrom(extension_pb2.TypedExtensionConfig(
            name=envoy_names.URI_TEMPLATE_MATCHER, typed_config=pack(template)))
    else:
        raise TranslationError(at(path, "path.type"), "must be prefix, exact, regex or template")
    for header in match.get("headers") or []:
        matcher = rc.HeaderMatcher(name=header["name"])
        if "present" in header:
            matcher.present_match = header["present"]  # false: the header must be absent
        else:
            matcher.string_match.CopyFrom(_string_match(header))
        out.headers.append(matcher)
    for i, param in enumerate(match.get("queryParameters") or []):
        query = rc.QueryParameterMatcher(name=param["name"])
        if "present" in param:
            if not param["present"]:
                raise TranslationError(item(at(path, "queryParameters"), i) + ".present",
                                       "Envoy cannot match an absent query parameter")
            query.present_match = True
        else:
            query.string_match.CopyFrom(_string_match(param))
        out.query_parameters.append(query)
    return out


def _string_match(matcher: dict[str, Any]) -> Any:
    return exact(matcher["value"]) if "value" in matcher else regex(matcher["regex"])


def _route_action(action: dict[str, Any], path: str) -> rc.RouteAction:
    out = rc.RouteAction()
    if action["type"] == "forward":
        out.cluster = action["cluster"]
    else:
        targets = action["clusters"]
        if sum(target["weight"] for target in targets) > UINT32_MAX:
            raise TranslationError(at(path, "clusters"),
                                   f"the sum of the weights must be at most {UINT32_MAX}")
        out.weighted_clusters.CopyFrom(rc.WeightedCluster(clusters=[
            rc.WeightedCluster.ClusterWeight(name=target["name"], weight=uint32(target["weight"]))
            for target in targets]))
    if "timeoutSeconds" in action:
        out.timeout.CopyFrom(duration(action["timeoutSeconds"]))
        out.timeout.SetInParent()  # 0 s disables the timeout: keep it present
    if "prefixRewrite" in action:
        out.prefix_rewrite = header_value(action["prefixRewrite"], at(path, "prefixRewrite"))
    if "retryPolicy" in action:
        retry = action["retryPolicy"]
        policy = rc.RetryPolicy(retry_on=",".join(retry["retryOn"]),
                                num_retries=uint32(retry.get("maxRetries", 1)))
        if "perTryTimeoutSeconds" in retry:
            policy.per_try_timeout.CopyFrom(duration(retry["perTryTimeoutSeconds"]))
        out.retry_policy.CopyFrom(policy)
    return out


def _redirect(action: dict[str, Any], path: str) -> rc.RedirectAction:
    code = action.get("responseCode", 301)
    if code not in _REDIRECT_CODES:
        raise TranslationError(at(path, "responseCode"), "must be 301, 302, 303, 307 or 308")
    out = rc.RedirectAction(response_code=_REDIRECT_CODES[code])
    if "hostRedirect" in action:
        out.host_redirect = action["hostRedirect"]
    if "pathRedirect" in action:
        out.path_redirect = header_value(action["pathRedirect"], at(path, "pathRedirect"))
    return out
