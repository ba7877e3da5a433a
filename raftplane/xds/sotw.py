"""State-of-the-world xDS (ADS and the per-type services)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from envoy.service.discovery.v3 import discovery_pb2

from raftplane.xds.cache import XdsResource, set_version
from raftplane.xds.connections import ConnectionRegistry
from raftplane.xds.encoded import EncodedBody, ResponseBodies, SotwResponse
from raftplane.xds.per_type import GRPC
from raftplane.xds.retention import retained_clusters
from raftplane.xds.stream import StreamBase, ViewWatcher, next_nonce
from raftplane.xds.types import CLUSTER, ENDPOINT, PUSH_ORDER, ROUTE, SHORT_NAMES, WILDCARD_TYPES

if TYPE_CHECKING:
    from raftplane.xds.stream import Context


@dataclass
class _TypeState:
    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    nonce: str = ""
    sent_version: str | None = None
    sent: dict[str, XdsResource] = field(default_factory=dict)  # shared: never changed
    body: EncodedBody | None = None  # what was sent, encoded (keeps it shared while held)
    acked: dict[str, XdsResource] = field(default_factory=dict)
    must_answer: bool = False
    answered: bool = True  # Envoy answered (ACK or NACK) the last response sent
    # Resources Envoy rejected, name -> version: later responses carry the version it last
    # accepted instead (or leave a new one out) until a write changes the resource.
    quarantine: dict[str, str] = field(default_factory=dict)


_NAME_CHARS = "A-Za-z0-9._@-"


def named_in(error: str, rejected: dict[str, str]) -> dict[str, str]:
    """Those of `rejected` that Envoy's error names (it names the listeners and clusters it
    refused), or all of them when it names none."""
    named = {name: version for name, version in rejected.items()
             if re.search(f"(?<![{_NAME_CHARS}]){re.escape(name)}(?![{_NAME_CHARS}])", error)}
    return named or rejected


class SotwStream(StreamBase):
    """One SotW stream: full sets for CDS/LDS, named resources for EDS/RDS."""

    kind = "ads"
    api_type = GRPC

    def __init__(self, cache: ViewWatcher, registry: ConnectionRegistry, context: Context,
                 only_type: str | None = None, identity_from_certificate: bool = False,
                 bodies: ResponseBodies | None = None) -> None:
        super().__init__(cache, registry, context, only_type, identity_from_certificate)
        self._types: dict[str, _TypeState] = {t: _TypeState() for t in PUSH_ORDER}
        # Response bodies shared with the node's other streams (encoded.py).
        self._bodies = bodies if bodies is not None else ResponseBodies()
        self._holding = False  # routes held back: a CDS or EDS ACK may release them

    def awaiting(self) -> bool:
        return any(not state.answered for state in self._types.values())

    def holding(self) -> bool:
        return self._holding

    def handle_request(self, request: discovery_pb2.DiscoveryRequest) -> list[SotwResponse]:
        type_url = request.type_url or self.only_type or ""
        state = self._types.get(type_url)
        if state is None or (self.only_type and type_url != self.only_type):
            return []
        if state.nonce and request.response_nonce != state.nonce:
            return []  # answers an older response: a newer request will follow
        conn = self._connection()
        status = conn.type(type_url)
        if state.nonce:
            state.answered = True
        if request.HasField("error_detail"):
            self.registry.record_nack(conn, type_url, state.sent_version or "",
                                      request.error_detail.message)
            # Quarantine what the rejected response changed; the rest goes out again with
            # the rejected resources at the version Envoy last accepted.
            rejected = {name: r.version for name, r in state.sent.items()
                        if (old := state.acked.get(name)) is None or old.version != r.version}
            rejected = named_in(request.error_detail.message, rejected)
            if not rejected:
                return []  # nothing to leave out: do not resend the rejected set
            state.quarantine.update(rejected)
            self._report_quarantine(type_url, state)
            return self.push(frozenset({type_url}))
        if state.nonce:
            conn.nacked.pop(type_url, None)
        routes_accepted = False
        if state.nonce:
            status.acked_version = request.version_info
            routes_accepted = type_url == ROUTE and state.acked is not state.sent
            state.acked = state.sent
        names = set(request.resource_names)
        wildcard = type_url in WILDCARD_TYPES and (not names or "*" in names)
        if not state.requested or wildcard != state.wildcard or names != state.names:
            state.must_answer = True  # first request on this stream or a new subscription
        elif not routes_accepted and not (self._holding and type_url in (CLUSTER, ENDPOINT)):
            return []  # a plain ACK: changes arrive through the cache watch
        state.requested, state.wildcard, state.names = True, wildcard, names - {"*"}
        return self.push(frozenset())

    def push(self, types: frozenset[str]) -> list[SotwResponse]:
        view = self.cache.view(self._dataplane())
        keep = retained_clusters(self._types[ROUTE].acked, view.resources.get(ROUTE, {}))
        held = self.held_routes(view.resources.get(ROUTE, {}))
        self._holding = bool(held)
        out: list[SotwResponse] = []
        for type_url in PUSH_ORDER:
            state = self._types[type_url]
            if not state.requested or (types and type_url not in types):
                continue  # a cache change names the types it changed (a request: none)
            current = view.resources.get(type_url, {})
            version = view.versions.get(type_url) if state.wildcard else None
            if type_url in (CLUSTER, ENDPOINT) and keep - current.keys():
                current, version = dict(current), None
                for name in keep - current.keys():
                    if (kept := self.cache.resource(type_url, name)) is not None:
                        current[name] = kept
            desired = current if state.wildcard else {n: current[n] for n in sorted(state.names)
                                                      if n in current}
            if state.quarantine:
                desired, version = self._quarantined(type_url, state, desired), None
            if type_url == ROUTE and held:  # what Envoy was sent until the clusters are warm
                if held & desired.keys() - state.sent.keys():
                    continue  # never sent here yet: no answer at all rather than an empty one
                desired = {n: state.sent[n] if n in held else r for n, r in desired.items()}
            response = self._respond(type_url, state, desired, version)
            if response is not None:
                out.append(response)
        return out

    def resync(self) -> None:
        for state in self._types.values():
            state.sent_version = None

    def _quarantined(self, type_url: str, state: _TypeState,
                     desired: dict[str, XdsResource]) -> dict[str, XdsResource]:
        """`desired` with each rejected resource at the version Envoy last accepted (left
        out if it never accepted one); a resource changed since is released."""
        out = dict(desired)
        for name, version in list(state.quarantine.items()):
            current = desired.get(name)
            if current is None or current.version != version:
                del state.quarantine[name]  # a write changed it: try the new version
                continue
            accepted = state.acked.get(name)
            if accepted is not None:
                out[name] = accepted
            else:
                del out[name]
        self._report_quarantine(type_url, state)
        return out

    def _report_quarantine(self, type_url: str, state: _TypeState) -> None:
        conn = self._connection()
        if state.quarantine:
            conn.quarantined[type_url] = dict(state.quarantine)
        else:
            conn.quarantined.pop(type_url, None)

    def _respond(self, type_url: str, state: _TypeState, desired: dict[str, XdsResource],
                 version: str | None = None) -> SotwResponse | None:
        version = version or set_version(desired.values())
        if version == state.sent_version and not state.must_answer:
            return None
        state.must_answer = False
        state.answered = False
        state.nonce = next_nonce()
        state.sent_version = version
        body = self._bodies.body(type_url, version, desired,
                                 lambda resource: self.packed(type_url, resource),
                                 self.api_type if self.only_type else None)
        state.body, state.sent = body, body.members
        status = self._connection().type(type_url)
        status.sent_version = version
        status.responses += 1
        status.last_resources = len(desired)
        self.observe_push(type_url, SHORT_NAMES[type_url])
        return SotwResponse(body, state.nonce)
