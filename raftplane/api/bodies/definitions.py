"""The body of each resource kind, as data: one definition per kind drives both validation
and the JSON Schema published in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from raftplane.api.bodies import checks
from raftplane.model import filter_schemas
from raftplane.model import lexical as names
from raftplane.model.kinds import Kind
from raftplane.model.schema import UINT32_MAX, Arr, Bool, Int, Num, Obj, Str
from raftplane.xds.translate.filters import FILTER_TYPES

NAME = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE)
TEAM = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
           doc="The owning team.")
HOST = Str(max_len=253, check=names.host_problem, extra=names.HOST_FORMATS)
PORT = Int(minimum=1, maximum=65535)
URL_PATH = Str(max_len=2048, check=names.path_problem, doc='Starts with "/".')
REGEX = Str(max_len=1024, check=names.regex_problem, extra={"format": "regex"},
            doc="RE2 syntax: no lookaround, backreferences, atomic or possessive constructs.")
UINT32 = Int(minimum=0, maximum=UINT32_MAX)
WEIGHT = Int(minimum=1, maximum=UINT32_MAX)
DURATION = Num(positive=True, maximum=86400)
DESCRIPTION = Str(min_len=0, max_len=1024)

_ENDPOINT = Obj(
    fields={"host": HOST, "port": PORT, "weight": Int(minimum=1, maximum=128)},
    required=("host", "port"),
)
_HEALTH_CHECK = Obj(
    fields={
        "type": Str(enum=("http", "tcp")),
        "path": Str(max_len=2048, check=names.path_problem, doc="http only; required for http."),
        "intervalSeconds": Num(positive=True, maximum=86400, default=10),
        "timeoutSeconds": Num(positive=True, maximum=86400, default=5),
        "healthyThreshold": Int(minimum=1, maximum=UINT32_MAX, default=2),
        "unhealthyThreshold": Int(minimum=1, maximum=UINT32_MAX, default=3),
        "expectedStatuses": Arr(items=Int(minimum=100, maximum=599), min_items=1,
                                doc="http only."),
    },
    required=("type",),
    checks=(checks.check_health_check,),
    extra={"if": {"properties": {"type": {"const": "http"}}}, "then": {"required": ["path"]}},
)
_THRESHOLDS = Obj(fields={key: UINT32 for key in (
    "maxConnections", "maxPendingRequests", "maxRequests", "maxRetries")})

CLUSTER = Obj(
    fields={
        "name": NAME,
        "team": TEAM,
        "serviceName": Str(max_len=253),
        "endpoints": Arr(items=_ENDPOINT, min_items=1,
                         doc="All IP addresses (served through EDS) or all hostnames "
                         "(STRICT_DNS)."),
        "connectTimeoutSeconds": Num(positive=True, maximum=3600, default=5),
        "useTls": Bool(default=False),
        "tlsServerName": Str(max_len=253, check=names.hostname_problem,
                             extra={"format": "hostname"}, doc="SNI; only when useTls is true."),
        "lbPolicy": Str(enum=("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"),
                        default="ROUND_ROBIN"),
        "dnsLookupFamily": Str(enum=("AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL"),
                               default="AUTO"),
        "healthChecks": Arr(items=_HEALTH_CHECK),
        "circuitBreakers": Obj(fields={"default": _THRESHOLDS, "high": _THRESHOLDS}),
        "outlierDetection": Obj(fields={
            "consecutive5xx": UINT32,
            "intervalSeconds": DURATION,
            "baseEjectionTimeSeconds": DURATION,
            "maxEjectionPercent": Int(minimum=0, maximum=100),
        }),
        "protocol": Str(enum=("HTTP1", "HTTP2"), default="HTTP1"),
        "tls": Obj(fields={
            "serverName": Str(max_len=253, check=names.hostname_problem,
                              extra={"format": "hostname"}, doc="SNI sent upstream."),
            "validationContextSecret": Str(
                max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
                doc="A certificateValidationContext secret of the same team: verify the "
                "upstream's certificate."),
            "clientCertificateSecret": Str(
                max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
                doc="A tlsCertificate secret of the same team: the client certificate (mTLS)."),
        }, doc="Upstream TLS settings; only when useTls is true."),
    },
    required=("name", "team", "endpoints"),
    checks=(checks.check_endpoints, checks.check_tls_server_name, checks.check_upstream_tls),
    extra={"dependentSchemas": {"tlsServerName": {"properties": {"useTls": {"const": True}},
                                                  "required": ["useTls"]}}},
)


def _matcher(name: Str) -> Obj:
    return Obj(
        fields={"name": name, "value": Str(min_len=0, max_len=1024), "regex": REGEX,
                "present": Bool()},
        required=("name",),
        checks=(checks.check_one_matcher,),
        extra={"oneOf": [{"required": [key]} for key in ("value", "regex", "present")]},
    )


_MATCH = Obj(
    fields={
        "path": Obj(
            fields={"type": Str(enum=("prefix", "exact", "regex", "template")),
                    "value": Str(max_len=2048, doc='prefix and exact start with "/"; regex is '
                                 'RE2; template is like "/users/{id}".')},
            required=("type", "value"),
            checks=(checks.check_path_value,),
        ),
        "headers": Arr(items=_matcher(Str(max_len=256, pattern=names.HEADER_NAME_PATTERN,
                                          message="must be an HTTP header name"))),
        "queryParameters": Arr(items=_matcher(Str(max_len=256))),
    },
    required=("path",),
)
_RETRY_ON = (
    "5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "http3-post-connect-failure",
    "envoy-ratelimited",
)
_ACTION = Obj(
    fields={
        "type": Str(enum=tuple(checks.ACTION_FIELDS)),
        "cluster": NAME,
        "timeoutSeconds": Num(minimum=0, maximum=86400, doc="0 disables the timeout."),
        "prefixRewrite": URL_PATH,
        "retryPolicy": Obj(
            fields={"maxRetries": Int(minimum=0, maximum=UINT32_MAX, default=1),
                    "retryOn": Arr(items=Str(enum=_RETRY_ON), min_items=1),
                    "perTryTimeoutSeconds": DURATION},
            required=("retryOn",),
        ),
        "clusters": Arr(items=Obj(fields={"name": NAME, "weight": WEIGHT},
                                  required=("name", "weight")), min_items=1),
        "hostRedirect": HOST,
        "pathRedirect": URL_PATH,
        "responseCode": Int(enum=(301, 302, 303, 307, 308),
                            extra={"default": 301, "description": "redirect only"}),
    },
    required=("type",),
    checks=(checks.check_action,),
    extra={"allOf": checks.action_rules()},
)

FILTER_REF = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
                 doc="A filter resource of the same team (GET /api/v1/filters).")
PER_FILTER_CONFIG = Obj(
    open=True, checks=(checks.check_per_filter_config,),
    doc='Per filter: a filter type (the filter of that type without a name) or a filter '
    'resource\'s name -> {"disabled": true} or the type\'s per-route settings (see '
    "perRouteOverride and perRouteSchema in GET /api/v1/filter-types).")
_VIRTUAL_HOSTS = Arr(
    items=Obj(
        fields={
            "name": NAME,
            "domains": Arr(items=Str(max_len=260, check=names.domain_problem), min_items=1,
                           doc="Unique across all virtual hosts of the route config."),
            "routes": Arr(items=Obj(fields={"name": NAME, "match": _MATCH, "action": _ACTION,
                                            "typedPerFilterConfig": PER_FILTER_CONFIG},
                                    required=("match", "action"), checks=(checks.check_route,))),
            "typedPerFilterConfig": PER_FILTER_CONFIG,
        },
        required=("name", "domains", "routes"),
    ),
    min_items=1,
    doc="Names unique within the route config.",
)
ROUTE_CONFIG = Obj(
    fields={"name": NAME, "team": TEAM, "virtualHosts": _VIRTUAL_HOSTS},
    required=("name", "team", "virtualHosts"),
    checks=(checks.check_virtual_hosts,),
)
_FILTER = Obj(
    fields={
        "name": NAME,
        "type": Str(enum=("httpConnectionManager", "tcpProxy")),
        "routeConfigName": NAME,
        "inlineRouteConfig": Obj(fields={"virtualHosts": _VIRTUAL_HOSTS},
                                 required=("virtualHosts",), checks=(checks.check_virtual_hosts,)),
        "httpFilters": Arr(items=Obj(
            fields={"name": NAME,
                    "filter": Obj(fields={"type": Str(max_len=128)}, required=("type",),
                                  open=True, checks=(filter_schemas.check_http_filter,),
                                  doc="Types with a definition: see GET /api/v1/filter-types."),
                    "filterRef": FILTER_REF},
            checks=(checks.check_http_filter_entry,),
            extra={"oneOf": [{"required": ["filter"]},
                             {"required": ["filterRef"], "not": {"required": ["name"]}}]},
        ), doc="In order, inline ({filter}) or by name ({filterRef}); the router filter is "
            "appended last when absent."),
        "cluster": NAME,
    },
    required=("name", "type"),
    checks=(checks.check_filter,),
    extra={"if": {"properties": {"type": {"const": "tcpProxy"}}},
           "then": {"required": ["cluster"]},
           "else": {"oneOf": [{"required": ["routeConfigName"]},
                              {"required": ["inlineRouteConfig"]}]}},
)
_DOWNSTREAM_TLS = Obj(
    fields={
        "certificateSecret": Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN,
                                 message=names.NAME_MESSAGE,
                                 doc="A tlsCertificate secret of the same team."),
        "validationContextSecret": Str(
            max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
            doc="A certificateValidationContext secret of the same team: verify clients."),
        "requireClientCertificate": Bool(default=False,
                                         doc="Needs validationContextSecret."),
        "minVersion": Str(enum=("TLSv1_2", "TLSv1_3"), default="TLSv1_2"),
        "alpn": Arr(items=Str(max_len=32, pattern=r"[!-~]+",
                              message="must be a protocol id such as h2 or http/1.1"),
                    max_items=8),
        "serverNames": Arr(items=Str(max_len=253, check=names.server_name_problem),
                           max_items=100,
                           doc='SNI names this chain serves ("*.example.com" allowed); each '
                           "in one chain of the listener only."),
    },
    required=("certificateSecret",),
    checks=(checks.check_downstream_tls,),
)
LISTENER = Obj(
    fields={
        "name": NAME,
        "team": TEAM,
        "address": Str(max_len=45, check=names.ip_problem, default="0.0.0.0",
                       extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
        "port": PORT,
        "dataplaneId": Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN,
                           message=names.NAME_MESSAGE, doc="A dataplane of the same team."),
        "protocol": Str(enum=("HTTP", "TCP"), default="HTTP",
                        doc="HTTP needs httpConnectionManager filters, TCP tcpProxy filters."),
        "filterChains": Arr(items=Obj(
            fields={
                "name": NAME,
                "tls": _DOWNSTREAM_TLS,
                "filters": Arr(items=_FILTER, min_items=1, max_items=1,
                               doc="httpConnectionManager and tcpProxy are terminal filters."),
            },
            required=("filters",),
        ), min_items=1),
    },
    required=("name", "team", "port", "filterChains"),
    checks=(checks.check_listener,),
)
TEAM_SPEC = Obj(
    fields={"name": NAME, "description": DESCRIPTION, "displayName": Str(max_len=256)},
    required=("name",),
)
DATAPLANE = Obj(
    fields={"name": NAME, "team": TEAM, "gatewayHost": HOST, "description": DESCRIPTION},
    required=("name", "team"),
)

SECRET = Obj(
    fields={
        "name": NAME,
        "team": TEAM,
        "type": Str(enum=("tlsCertificate", "certificateValidationContext", "genericSecret")),
        "certificateChain": Str(max_len=65536, doc="tlsCertificate: PEM, leaf first.",
                                extra={"writeOnly": True}),
        "privateKey": Str(max_len=65536, doc="tlsCertificate: PEM, unencrypted; never "
                          "returned.", extra={"writeOnly": True}),
        "trustedCa": Str(max_len=262144, doc="certificateValidationContext: PEM CA bundle.",
                         extra={"writeOnly": True}),
        "matchSubjectAltNames": Arr(items=Str(max_len=253), max_items=100,
                                    doc="certificateValidationContext: accepted SANs "
                                    "(exact).", extra={"writeOnly": True}),
        "value": Str(max_len=65536, doc="genericSecret: never returned.",
                     extra={"writeOnly": True}),
    },
    required=("name", "team", "type"),
    checks=(checks.check_secret,),
    doc="Reads never return the material: they show fingerprint and notAfter instead.",
)

FILTER = Obj(
    fields={
        "name": NAME,
        "team": TEAM,
        "filterType": Str(enum=tuple(FILTER_TYPES), doc="See GET /api/v1/filter-types; "
                          "cannot change while listeners or route configs use the filter."),
        "config": Obj(open=True, default={}, doc="The filter type's settings (its schema "
                      "in GET /api/v1/filter-types, without type)."),
    },
    required=("name", "team", "filterType"),
    checks=(checks.check_filter_config,),
    doc="A reusable HTTP filter, attached to listeners by {filterRef: name}.",
)

KIND_SPECS: Mapping[str, Obj] = MappingProxyType({
    Kind.TEAMS: TEAM_SPEC,
    Kind.CLUSTERS: CLUSTER,
    Kind.ROUTE_CONFIGS: ROUTE_CONFIG,
    Kind.LISTENERS: LISTENER,
    Kind.DATAPLANES: DATAPLANE,
    Kind.SECRETS: SECRET,
    Kind.FILTERS: FILTER,
})
