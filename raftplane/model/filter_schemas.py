"""Body definitions of the HTTP filter types that have one (``FILTER_SCHEMAS``), their
per-route overrides (``PER_ROUTE_SCHEMAS``), and what they name: clusters (references checked
at write time) and secrets (served over SDS by name).

Pure data and pure functions over validated JSON; the xDS translators of these types
(``raftplane.xds.translate.filters``) validate with the same definitions.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from raftplane.model import lexical as names
from raftplane.model.lexical import HEADER_NAME_PATTERN
from raftplane.model.schema import Arr, Bool, Errors, Int, Num, Obj, Str, at, dicts, fail, item

CLUSTER_REF = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
                  doc="The name of an existing cluster.")
SECRET_REF = Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN, message=names.NAME_MESSAGE,
                 doc="The name of a genericSecret secret, served to Envoy over SDS.")
_HEADER = Str(max_len=256, pattern=HEADER_NAME_PATTERN.replace("^:?", "^"),
              message="must be an HTTP header name (not a pseudo-header)")
_URL_PATH = Str(max_len=2048, check=names.path_problem, doc='Starts with "/".')
_TIMEOUT = Num(positive=True, maximum=3600)
_TEXT = Str(max_len=1024)


def _no_controls(value: str) -> str | None:
    return "must not contain control characters" if re.search(r"[\x00-\x1f\x7f]", value) \
        else None


def _formatted_problem(value: str) -> str | None:
    """A value Envoy reads with its substitution formatter (%REQ(x)% and the like)."""
    return _no_controls(value) or names.format_string_problem(value)


def _uri_problem(value: str) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return "must be an http or https URL"
    if parts.scheme not in ("http", "https") or not parts.netloc or re.search(r"[\s\x00-\x1f]",
                                                                                value):
        return "must be an http or https URL"
    return None


_URI = Str(max_len=2048, check=_uri_problem, extra={"format": "uri"})


def _kind(name: str) -> Str:
    return Str(enum=(name,))


def _exactly_one(*keys: str) -> Any:
    def check(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
        if sum(key in raw for key in keys) != 1:
            fail(errors, path, "must set exactly one of " + ", ".join(keys))
    return check


def _one_of(*keys: str) -> dict[str, Any]:
    return {"oneOf": [{"required": [key]} for key in keys]}


def _unique(list_key: str, key: str) -> Any:
    def check(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
        seen: dict[Any, str] = {}
        for i, member in dicts(out.get(list_key)):
            value, member_path = member.get(key), item(at(path, list_key), i)
            if value in seen:
                fail(errors, at(member_path, key), f"duplicates {seen[value]}.{key}")
            elif value is not None:
                seen[value] = member_path
    return check


# jwt_auth ---------------------------------------------------------------------------------

ALLOW_MISSING = "allow_missing"


def _b64url(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value or not re.fullmatch(r"[A-Za-z0-9_-]+=*", value):
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


_EC_CURVES = {"P-256": 32, "P-384": 48, "P-521": 66}


def jwk_problem(key: Mapping[str, Any]) -> str | None:
    """Why Envoy's JWKS parser would reject this JSON Web Key (None: it accepts it)."""
    kty = key.get("kty")
    if kty == "RSA":
        if _b64url(key.get("n")) is None or _b64url(key.get("e")) is None:
            return "an RSA key needs base64url members n and e"
    elif kty == "EC":
        size = _EC_CURVES.get(key.get("crv", ""))
        x, y = _b64url(key.get("x")), _b64url(key.get("y"))
        if size is None:
            return "an EC key needs crv P-256, P-384 or P-521"
        if x is None or y is None or len(x) != size or len(y) != size:
            return f"an EC key on {key['crv']} needs base64url x and y of {size} bytes"
        from cryptography.hazmat.primitives.asymmetric import ec
        curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
        try:
            ec.EllipticCurvePublicNumbers(int.from_bytes(x), int.from_bytes(y),
                                          curve[key["crv"]]).public_key()
        except ValueError:
            return "x and y are not a point on the curve"
    elif kty == "oct":
        if _b64url(key.get("k")) is None:
            return "an oct key needs a base64url member k"
    elif kty == "OKP":
        x = _b64url(key.get("x"))
        if key.get("crv") != "Ed25519" or x is None or len(x) != 32:
            return "an OKP key needs crv Ed25519 and a 32-byte base64url x"
    else:
        return "kty must be RSA, EC, oct or OKP"
    for member in ("kid", "alg", "use"):
        if member in key and not isinstance(key[member], str):
            return f"{member} must be a string"
    return _alg_problem(kty, key.get("crv"), key.get("alg") or "")


_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _alg_problem(kty: str, crv: Any, alg: str) -> str | None:
    """Envoy refuses a JWKS whose key names an algorithm of another kind of key."""
    if not alg:
        return None
    if kty == "EC":
        wanted = _EC_ALGS[crv]
    else:
        wanted = {"RSA": "RS256, RS384, RS512, PS256, PS384 or PS512", "oct": "HS256, HS384 or "
                  "HS512", "OKP": "EdDSA"}[kty]
    fits = (alg == wanted if kty in ("EC", "OKP")
            else alg.startswith({"RSA": ("RS", "PS"), "oct": ("HS",)}[kty]))
    return None if fits else f"alg {alg!r} is not one for this {kty} key: use {wanted}"


def _check_jwks(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    for i, key in dicts(out.get("keys")):
        problem = jwk_problem(key)
        if problem:
            fail(errors, item(at(path, "keys"), i), problem)


_JWKS = Obj(fields={"keys": Arr(items=Obj(fields={"kty": Str(max_len=8)}, required=("kty",),
                                          open=True), min_items=1)},
            required=("keys",), checks=(_check_jwks,), doc="A JSON Web Key Set.")
_PROVIDER = Obj(
    fields={
        "name": Str(max_len=names.NAME_MAX, pattern=names.NAME_PATTERN,
                    message=names.NAME_MESSAGE, doc="Unique; rules and routes name it."),
        "issuer": _TEXT,
        "audiences": Arr(items=_TEXT),
        "remoteJwks": Obj(fields={"uri": _URI, "cluster": CLUSTER_REF,
                                  "cacheDurationSeconds": Num(minimum=0.001, maximum=86400 * 30),
                                  "timeoutSeconds": _TIMEOUT},
                          required=("uri", "cluster")),
        "localJwks": Obj(fields={"inline": _JWKS}, required=("inline",)),
        "forwardPayloadHeader": _HEADER,
        "forward": Bool(default=False, doc="Keep the JWT in the request sent upstream."),
        "claimToHeaders": Arr(items=Obj(fields={"claim": _TEXT, "header": _HEADER},
                                        required=("claim", "header"))),
    },
    required=("name", "issuer"),
    checks=(_exactly_one("remoteJwks", "localJwks"),),
    extra=_one_of("remoteJwks", "localJwks"),
)
_PATH_MATCH = Obj(fields={"prefix": _URL_PATH, "path": _URL_PATH},
                  checks=(_exactly_one("prefix", "path"),), extra=_one_of("prefix", "path"))


def _check_jwt(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    providers = {p.get("name") for _, p in dicts(out.get("providers"))}
    if ALLOW_MISSING in providers:
        fail(errors, at(path, "providers"), f"{ALLOW_MISSING!r} is reserved, not a provider name")
    for i, rule in dicts(out.get("rules")):
        requires = rule.get("requires")
        if isinstance(requires, str) and requires != ALLOW_MISSING and requires not in providers:
            fail(errors, at(item(at(path, "rules"), i), "requires"),
                 f"must name a provider or be {ALLOW_MISSING!r}")


JWT_AUTH = Obj(
    fields={
        "type": _kind("jwt_auth"),
        "providers": Arr(items=_PROVIDER, min_items=1),
        "rules": Arr(items=Obj(
            fields={"match": _PATH_MATCH,
                    "requires": Str(max_len=names.NAME_MAX,
                                    doc=f"A provider name, or {ALLOW_MISSING!r}.")},
            required=("match", "requires")), doc="First match applies; no match: no JWT check."),
    },
    required=("providers",),
    checks=(_unique("providers", "name"), _check_jwt),
)
JWT_AUTH_PER_ROUTE = Obj(
    fields={"requirement": Str(max_len=names.NAME_MAX,
                               doc=f"A provider name of the filter, or {ALLOW_MISSING!r}."),
            "disabled": Bool(const=True)},
    checks=(_exactly_one("requirement", "disabled"),),
    extra=_one_of("requirement", "disabled"),
)

# oauth2 -----------------------------------------------------------------------------------

_HEADER_MATCH = Obj(fields={"header": _HEADER, "exact": Str(min_len=0, max_len=1024),
                            "prefix": _TEXT, "present": Bool(const=True)},
                    required=("header",),
                    checks=(_exactly_one("exact", "prefix", "present"),),
                    extra=_one_of("exact", "prefix", "present"))
OAUTH2 = Obj(
    fields={
        "type": _kind("oauth2"),
        "tokenEndpoint": Obj(fields={"cluster": CLUSTER_REF, "uri": _URI,
                                     "timeoutSeconds": _TIMEOUT},
                             required=("cluster", "uri")),
        "authorizationEndpoint": _URI,
        "redirectUri": Str(max_len=2048, check=_formatted_problem,
                           doc='May use Envoy formatters, e.g. '
                           '"%REQ(x-forwarded-proto)%://%REQ(:authority)%/callback"; '
                           '"%%" is a literal "%".'),
        "redirectPathMatcher": _URL_PATH,
        "signoutPath": _URL_PATH,
        "clientId": Str(max_len=1024, check=_no_controls),
        "clientSecret": SECRET_REF,
        "hmacSecret": SECRET_REF,
        "authScopes": Arr(items=Str(max_len=256, pattern=r"^[!#-\[\]-~]+$",
                                    message="must be an OAuth scope token")),
        "forwardBearerToken": Bool(default=False),
        "authType": Str(enum=("URL_ENCODED_BODY", "BASIC_AUTH"), default="URL_ENCODED_BODY",
                        doc="How the client credentials reach the token endpoint: in the form "
                        "body (client_secret_post) or as HTTP Basic (client_secret_basic)."),
        "passThroughMatchers": Arr(items=_HEADER_MATCH,
                                   doc="Requests matching any of these skip OAuth."),
    },
    required=("tokenEndpoint", "authorizationEndpoint", "redirectUri",
              "redirectPathMatcher", "signoutPath", "clientId", "clientSecret", "hmacSecret"),
)

# rate_limit -------------------------------------------------------------------------------

_ACTION = Obj(
    fields={"type": Str(enum=("generic_key", "request_header", "remote_address")),
            "key": Str(max_len=256, doc="generic_key (default generic_key), request_header."),
            "value": Str(max_len=1024, doc="generic_key only; required."),
            "header": Str(max_len=256, pattern=HEADER_NAME_PATTERN,
                          message="must be an HTTP header name",
                          doc="request_header only; required.")},
    required=("type",),
)


def _check_action(out: dict[str, Any], raw: Mapping[str, Any], path: str, errors: Errors) -> None:
    allowed = {"generic_key": ("value", "key"), "request_header": ("header", "key"),
               "remote_address": ()}.get(out.get("type", ""))
    if allowed is None:
        return
    for key in ("key", "value", "header"):
        if key in raw and key not in allowed:
            fail(errors, at(path, key), f"is not allowed for {out['type']} actions")
    for key in allowed[:1]:
        if key not in raw:
            fail(errors, at(path, key), f"is required for {out['type']} actions")
    if out.get("type") == "request_header" and "key" not in raw:
        fail(errors, at(path, "key"), "is required for request_header actions")


_DESCRIPTORS = Arr(
    items=Obj(fields={"actions": Arr(items=Obj(
        fields=_ACTION.fields, required=_ACTION.required, checks=(_check_action,)),
        min_items=1)}, required=("actions",)),
    doc="Each item produces one descriptor: its actions' entries, in order.",
)
RATE_LIMIT = Obj(
    fields={
        "type": _kind("rate_limit"),
        "domain": Str(max_len=256, check=_no_controls),
        "rateLimitService": Obj(fields={"cluster": CLUSTER_REF, "timeoutSeconds": _TIMEOUT},
                                required=("cluster",),
                                doc="A gRPC (HTTP2) cluster speaking the rate limit service API."),
        "failureModeDeny": Bool(default=False),
        "stage": Int(minimum=0, maximum=10, default=0),
        "descriptors": _DESCRIPTORS,
    },
    required=("domain", "rateLimitService"),
)
RATE_LIMIT_PER_ROUTE = Obj(fields={"descriptors": _DESCRIPTORS}, required=("descriptors",))

# custom_response --------------------------------------------------------------------------

_CUSTOM = Obj(
    fields={
        "statusCodes": Arr(items=Int(minimum=100, maximum=599), min_items=1,
                           doc="Upstream response codes this entry replaces."),
        "body": Str(min_len=0, max_len=65536),
        "statusCode": Int(minimum=200, maximum=599, doc="Default: the upstream code."),
        "headers": Arr(items=Obj(fields={"name": _HEADER,
                                         "value": Str(min_len=0, max_len=8192,
                                                      check=_formatted_problem,
                                                      doc='Envoy formatters allowed; "%%" '
                                                      'is a literal "%".')},
                                 required=("name", "value"))),
    },
    required=("statusCodes",),
)


def _check_custom(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                  errors: Errors) -> None:
    seen: dict[int, str] = {}
    for i, entry in dicts(out.get("responses")):
        entry_path = item(at(path, "responses"), i)
        for j, code in enumerate(entry.get("statusCodes") or []):
            if code in seen:
                fail(errors, item(at(entry_path, "statusCodes"), j), f"duplicates {seen[code]}")
            elif isinstance(code, int):
                seen[code] = item(at(entry_path, "statusCodes"), j)


CUSTOM_RESPONSE = Obj(
    fields={"type": _kind("custom_response"), "responses": Arr(items=_CUSTOM, min_items=1)},
    required=("responses",),
    checks=(_check_custom,),
)

# ext_authz / ext_proc ---------------------------------------------------------------------

_GRPC = Obj(fields={"cluster": CLUSTER_REF}, required=("cluster",),
            doc="An HTTP2 cluster serving the gRPC API.")
EXT_AUTHZ = Obj(
    fields={
        "type": _kind("ext_authz"),
        "grpc": _GRPC,
        "http": Obj(fields={"cluster": CLUSTER_REF, "pathPrefix": _URL_PATH,
                            "allowedHeaders": Arr(items=_HEADER,
                                                  doc="Request headers sent to the service.")},
                    required=("cluster",)),
        "failureModeAllow": Bool(default=False),
        "timeoutSeconds": Num(positive=True, maximum=3600, default=0.2),
    },
    checks=(_exactly_one("grpc", "http"),),
    extra=_one_of("grpc", "http"),
)
DISABLED = Obj(fields={"disabled": Bool(const=True)}, required=("disabled",))

_HEADER_MODES = ("DEFAULT", "SEND", "SKIP")
_BODY_MODES = ("NONE", "STREAMED", "BUFFERED", "BUFFERED_PARTIAL")
EXT_PROC = Obj(
    fields={
        "type": _kind("ext_proc"),
        "grpc": _GRPC,
        "processingMode": Obj(fields={
            "requestHeaderMode": Str(enum=_HEADER_MODES, default="SEND"),
            "responseHeaderMode": Str(enum=_HEADER_MODES, default="SEND"),
            "requestBodyMode": Str(enum=_BODY_MODES, default="NONE"),
            "responseBodyMode": Str(enum=_BODY_MODES, default="NONE"),
        }),
        "failureModeAllow": Bool(default=False),
        "timeoutSeconds": Num(positive=True, maximum=3600, default=0.2,
                              doc="Per message to the processor."),
    },
    required=("grpc",),
)

FILTER_SCHEMAS: Mapping[str, Obj] = MappingProxyType({
    "jwt_auth": JWT_AUTH,
    "oauth2": OAUTH2,
    "rate_limit": RATE_LIMIT,
    "custom_response": CUSTOM_RESPONSE,
    "ext_authz": EXT_AUTHZ,
    "ext_proc": EXT_PROC,
})
PER_ROUTE_SCHEMAS: Mapping[str, Obj] = MappingProxyType({
    "jwt_auth": JWT_AUTH_PER_ROUTE,
    "rate_limit": RATE_LIMIT_PER_ROUTE,
    "ext_authz": DISABLED,
    "ext_proc": DISABLED,
})


def check_http_filter(out: dict[str, Any], raw: Mapping[str, Any], path: str,
                      errors: Errors) -> None:
    """An ``Obj`` check: a filter object of a type with a definition is validated by it."""
    schema = FILTER_SCHEMAS.get(raw.get("type"))  # type: ignore[arg-type]
    if schema is not None:
        result = schema.validate(dict(raw), path, errors)
        if isinstance(result, dict):
            out.clear()
            out.update(result)


def filter_clusters(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(cluster name, relative field path) of each cluster a filter object names."""
    kind = spec.get("type")
    found: list[tuple[str, str]] = []

    def add(obj: Any, path: str) -> None:
        if isinstance(obj, dict) and isinstance(obj.get("cluster"), str):
            found.append((obj["cluster"], at(path, "cluster")))

    if kind == "jwt_auth":
        for i, provider in dicts(spec.get("providers")):
            add(provider.get("remoteJwks"), at(item("providers", i), "remoteJwks"))
    elif kind == "oauth2":
        add(spec.get("tokenEndpoint"), "tokenEndpoint")
    elif kind == "rate_limit":
        add(spec.get("rateLimitService"), "rateLimitService")
    elif kind in ("ext_authz", "ext_proc"):
        add(spec.get("grpc"), "grpc")
        add(spec.get("http"), "http")
    return found


def filter_secrets(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(secret name, relative field path) of each secret a filter object names."""
    if spec.get("type") != "oauth2":
        return []
    return [(spec[key], key) for key in ("clientSecret", "hmacSecret")
            if isinstance(spec.get(key), str)]


__all__ = ["FILTER_SCHEMAS", "PER_ROUTE_SCHEMAS", "check_http_filter",
           "filter_clusters", "filter_secrets", "jwk_problem"]
