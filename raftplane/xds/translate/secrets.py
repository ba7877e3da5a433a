"""A secret with its material -> Envoy Secret (SDS), and the TLS contexts that name secrets.

The input of ``secret_to_envoy`` is a secret as validated by the API (its type's fields at the
top level); the xDS cache passes the stored secret with its sealed material opened.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from raftplane.xds.translate.common import TranslationError, ads_config_source

_TLS_VERSIONS = {"TLSv1_2": common_pb2.TlsParameters.TLSv1_2,
                 "TLSv1_3": common_pb2.TlsParameters.TLSv1_3}


def secret_to_envoy(secret: dict[str, Any]) -> secret_pb2.Secret:
    """The Envoy Secret of a secret and its material (inline data sources)."""
    out = secret_pb2.Secret(name=secret["name"])
    kind = secret.get("type")
    if kind == "tlsCertificate":
        out.tls_certificate.CopyFrom(common_pb2.TlsCertificate(
            certificate_chain=_inline(secret, "certificateChain"),
            private_key=_inline(secret, "privateKey")))
    elif kind == "certificateValidationContext":
        context = common_pb2.CertificateValidationContext(trusted_ca=_inline(secret, "trustedCa"))
        for name in secret.get("matchSubjectAltNames") or []:
            context.match_typed_subject_alt_names.append(common_pb2.SubjectAltNameMatcher(
                san_type=_san_type(name), matcher=string_pb2.StringMatcher(exact=name)))
        out.validation_context.CopyFrom(context)
    elif kind == "genericSecret":
        out.generic_secret.CopyFrom(secret_pb2.GenericSecret(secret=_inline(secret, "value")))
    else:
        raise TranslationError("type", "must be tlsCertificate, certificateValidationContext "
                               "or genericSecret")
    return out


def _inline(secret: dict[str, Any], field: str) -> base_pb2.DataSource:
    value = secret.get(field)
    if not isinstance(value, str) or not value:
        raise TranslationError(field, f"is required for {secret.get('type')} secrets")
    return base_pb2.DataSource(inline_string=value)


def _san_type(name: str) -> Any:
    San = common_pb2.SubjectAltNameMatcher
    if "://" in name or name.startswith("spiffe:"):
        return San.URI
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return San.EMAIL if "@" in name else San.DNS
    return San.IP_ADDRESS


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    """Fetch secret `name` over the aggregated stream (SDS through ADS)."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_config_source())


def downstream_tls_context(tls: dict[str, Any]) -> tls_pb2.DownstreamTlsContext:
    """A listener chain's `tls` object as Envoy's DownstreamTlsContext."""
    common = tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=_TLS_VERSIONS[tls.get("minVersion", "TLSv1_2")]),
        tls_certificate_sds_secret_configs=[sds(tls["certificateSecret"])],
        alpn_protocols=list(tls.get("alpn") or []),
    )
    if "validationContextSecret" in tls:
        common.validation_context_sds_secret_config.CopyFrom(sds(tls["validationContextSecret"]))
    out = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    # Explicit whenever clients are verified: Envoy 1.40 warns of a deprecated default when a
    # validation context comes without require_client_certificate.
    if "validationContextSecret" in tls or tls.get("requireClientCertificate", False):
        out.require_client_certificate.CopyFrom(
            wrappers_pb2.BoolValue(value=tls.get("requireClientCertificate", False)))
    return out


def upstream_tls_context(tls: dict[str, Any], sni: str, alpn: list[str]
                         ) -> tls_pb2.UpstreamTlsContext:
    """A cluster's `tls` object (and its SNI and ALPN) as Envoy's UpstreamTlsContext."""
    out = tls_pb2.UpstreamTlsContext(sni=sni)
    if alpn or tls:
        common = tls_pb2.CommonTlsContext(alpn_protocols=alpn)
        if "clientCertificateSecret" in tls:
            common.tls_certificate_sds_secret_configs.append(sds(tls["clientCertificateSecret"]))
        if "validationContextSecret" in tls:
            common.validation_context_sds_secret_config.CopyFrom(
                sds(tls["validationContextSecret"]))
        out.common_tls_context.CopyFrom(common)
    return out


def referenced_secrets(kind: str, resource: dict[str, Any]) -> list[str]:
    """Names of the secrets a listener ("listeners") or cluster ("clusters") fetches over SDS."""
    found: dict[str, None] = {}
    if kind == "listeners":
        for chain in resource.get("filterChains") or []:
            tls = chain.get("tls") or {}
            for key in ("certificateSecret", "validationContextSecret"):
                if key in tls:
                    found.setdefault(tls[key])
    elif kind == "clusters" and resource.get("useTls"):
        tls = resource.get("tls") or {}
        for key in ("clientCertificateSecret", "validationContextSecret"):
            if key in tls:
                found.setdefault(tls[key])
    return list(found)
