"""SotW responses encoded once and shared by every stream that sends the same one.

A DiscoveryResponse is `version_info` (field 1), `resources` (2), `type_url` (4) and `nonce`
(5). The Envoys of a dataplane that hold the same subscription are sent the same first three
on every change; only the nonce differs per stream. So the shared part is serialized once per
distinct (type, version, resources, per-type API) and each stream appends its own nonce field:
a protobuf message may be encoded as the concatenation of its fields' encodings.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client import Counter

from raftplane.xds.cache import XdsResource

_NONCE_TAG = bytes([5 << 3 | 2])  # field 5, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def nonce_field(nonce: str) -> bytes:
    """The encoding of `DiscoveryResponse.nonce` alone."""
    raw = nonce.encode()
    return _NONCE_TAG + _varint(len(raw)) + raw


class EncodedBody:
    """What streams sending one set of resources share: the set (read-only), its packed
    resources and, once a stream writes it, its serialized bytes."""

    __slots__ = ("__weakref__", "_data", "members", "resources", "type_url", "version")

    def __init__(self, type_url: str, version: str, members: dict[str, XdsResource],
                 resources: list[Any]) -> None:
        self.type_url = type_url
        self.version = version
        self.members = members  # never changed: streams keep it as what they sent
        self.resources = resources  # packed Any messages, in the order sent
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        """The response without its nonce, serialized on first use."""
        if self._data is None:
            self._data = discovery_pb2.DiscoveryResponse(
                version_info=self.version, type_url=self.type_url,
                resources=self.resources).SerializeToString()
        return self._data


class SotwResponse:
    """One stream's response: a shared body and its own nonce. Reads like the
    DiscoveryResponse it encodes (version_info, type_url, nonce, resources)."""

    __slots__ = ("body", "nonce")

    def __init__(self, body: EncodedBody, nonce: str) -> None:
        self.body = body
        self.nonce = nonce

    @property
    def version_info(self) -> str:
        return self.body.version

    @property
    def type_url(self) -> str:
        return self.body.type_url

    @property
    def resources(self) -> list[Any]:
        return self.body.resources

    def SerializeToString(self) -> bytes:
        """The wire bytes: the shared body, then this stream's nonce."""
        return self.body.data + nonce_field(self.nonce)

    def decoded(self) -> discovery_pb2.DiscoveryResponse:
        """The DiscoveryResponse these bytes encode (tests, debugging)."""
        return discovery_pb2.DiscoveryResponse.FromString(self.SerializeToString())


class ResponseBodies:
    """The bodies streams are sending, by (type, version, per-type API), held weakly: a body
    lives while a stream still holds it as what it sent, and is freed after."""

    def __init__(self, encoded: Counter | None = None, shared: Counter | None = None) -> None:
        self._bodies: weakref.WeakValueDictionary[tuple[str, str, int | None], EncodedBody] = \
            weakref.WeakValueDictionary()
        self._encoded = encoded
        self._shared = shared

    def body(self, type_url: str, version: str, desired: Mapping[str, XdsResource],
             pack: Callable[[XdsResource], Any], api: int | None) -> EncodedBody:
        """The body for `desired` at `version`: the one another stream sends, if it holds
        the same resources, else a new one (`pack` gives each resource's Any)."""
        key = (type_url, version, api)
        found = self._bodies.get(key)
        if found is not None and found.members == desired:  # values: same objects, fast
            if self._shared is not None:
                self._shared.inc()
            return found
        body = EncodedBody(type_url, version, dict(desired), [pack(r) for r in desired.values()])
        self._bodies[key] = body
        if self._encoded is not None:
            self._encoded.inc()
        return body

    def __len__(self) -> int:
        return len(self._bodies)
