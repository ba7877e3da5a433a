"""Leader forwarding: a follower relays a write to the leader and the answer back.

One hop only: a request that already was forwarded is never forwarded again (a leader
change in between answers 503 and the client retries). An Idempotency-Key is added when
the client sent none, so the follower's own retry, or the client's after a 504, can never
apply twice.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, MultiMapping

from raftplane.cluster import peer_proof
from raftplane.cluster.errors import NoLeader, OutcomeUnknown
from raftplane.cluster.relay import (
    RELAY_CONTENT_TYPE,
    RELAY_PATH,
    BatchRefused,
    RelayAnswer,
    RelayBatcher,
    RelayCommand,
    RelayItem,
    RelayRequest,
    encode_requests,
    has_commands,
    read_answer,
)

FORWARDED_BY = "X-Raftplane-Forwarded-By"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length",
}
BATCHED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LEGACY_RETRY_SECONDS = 60.0  # how long a leader that refused commands is sent requests


@dataclass
class Relayed:
    """The leader's answer, to be returned to the client as it is."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


class Forwarder:
    """Relays HTTP requests to another node's API; with `batch`, concurrent writes travel
    together (relay.py), each with the same outcomes as when sent alone."""

    def __init__(self, node_id: str, timeout: float,
                 ssl_context: ssl.SSLContext | None = None, *, batch: bool = False,
                 secret: str | None = None) -> None:
        self._node_id = node_id
        self._secret = secret
        self._legacy: dict[str, float] = {}  # leader base URL -> when it refused commands
        self._timeout = timeout
        self._ssl = ssl_context if ssl_context is not None else True  # True: default checks
        self._session: aiohttp.ClientSession | None = None
        self.batcher = RelayBatcher(self._send_batch) if batch else None

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=self._timeout, sock_connect=2.0),
                auto_decompress=False,
            )
            # aiohttp resends a PUT or DELETE once when the connection breaks (RFC 9112
            # retrying of idempotent methods). Here the first copy may already be proposed:
            # a resend that then finds the leader gone would answer 503, "nothing written",
            # for a write that commits. One send only; a broken connection is unknown (504).
            # The switch is private (aiohttp 3.11+): pyproject.toml pins the tested range and
            # tests/cluster/test_forwarding_once.py fails if the attribute goes away.
            self._session._retry_connection = False
        return self._session

    async def forward(
        self, base_url: str, method: str, path_qs: str, headers: MultiMapping[str], body: bytes,
        idempotency_key: str | None,
    ) -> Relayed:
        """Send the request to `base_url` and return its answer.

        Raises NoLeader when nothing reached the leader, OutcomeUnknown when the request
        was sent but no answer came back.
        """
        out = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)
        out[FORWARDED_BY] = self._node_id
        if idempotency_key:
            out["Idempotency-Key"] = idempotency_key
        if (self.batcher is not None and method in BATCHED_METHODS
                and len(body) < self.batcher.max_batch_bytes // 2):
            try:
                return await self._forward_batched(base_url, method, path_qs, out, body)
            except BatchRefused:
                pass  # the leader ran none of it (an older release?): send it alone
        return await self._forward_one(base_url, method, path_qs, out, body)

    def takes_commands(self, base_url: str) -> bool:
        """Whether writes to the leader at `base_url` may travel as commands: batching is
        on, this node can sign them, and that leader did not refuse them lately."""
        if self.batcher is None or not self._secret:
            return False
        refused_at = self._legacy.get(base_url)
        return refused_at is None or time.monotonic() - refused_at > LEGACY_RETRY_SECONDS

    async def forward_command(self, base_url: str, command: RelayCommand) -> RelayAnswer:
        """Send one built command to the leader at `base_url` in a batch; its answer.

        Raises BatchRefused when the leader ran none of it (an older release, or it did not
        accept this node's proof: send the request the old way), NoLeader when nothing
        reached it, OutcomeUnknown when it was sent but no answer came back."""
        assert self.batcher is not None
        future = self.batcher.submit(base_url, command)
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise OutcomeUnknown(f"the leader at {base_url} did not answer in time") from None
        except BatchRefused:
            self._legacy[base_url] = time.monotonic()
            raise

    async def _forward_batched(self, base_url: str, method: str, path_qs: str,
                               headers: CIMultiDict[str], body: bytes) -> Relayed:
        assert self.batcher is not None
        request = RelayRequest(method, path_qs, list(headers.items()), body)
        future = self.batcher.submit(base_url, request)
        try:
            answer = await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            raise OutcomeUnknown(f"the leader at {base_url} did not answer in time") from None
        return Relayed(answer.status, CIMultiDict(answer.headers), answer.body)

    async def _send_batch(self, base_url: str, requests: list[RelayItem],
                          deliver: Callable[[RelayAnswer], None]) -> None:
        """One batch to `base_url`; each answer is delivered as it arrives."""
        headers = {"Content-Type": RELAY_CONTENT_TYPE, FORWARDED_BY: self._node_id}
        data = encode_requests(requests)
        if has_commands(requests):
            headers[peer_proof.PEER_PROOF] = peer_proof.sign(self._secret or "", self._node_id,
                                                             data)
        try:
            async with self._client().post(
                base_url + RELAY_PATH, data=data, headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout + 1.0, sock_connect=2.0),
            ) as resp:
                if resp.status != 200:
                    await resp.read()
                    raise BatchRefused(f"HTTP {resp.status}")
                for _ in requests:
                    deliver(await read_answer(resp.content.readexactly))
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise NoLeader(f"the leader at {base_url} is unreachable: {exc}") from exc
        except (TimeoutError, EOFError, aiohttp.ClientError) as exc:
            raise OutcomeUnknown(f"the leader at {base_url} did not answer: {exc!r}") from exc

    async def _forward_one(self, base_url: str, method: str, path_qs: str,
                           out: CIMultiDict[str], body: bytes) -> Relayed:
        try:
            async with self._client().request(
                method, base_url + path_qs, headers=out, data=body, allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                relayed = CIMultiDict(
                    (k, v) for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP
                )
                return Relayed(resp.status, relayed, payload)
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise NoLeader(f"the leader at {base_url} is unreachable: {exc}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise OutcomeUnknown(f"the leader at {base_url} did not answer: {exc!r}") from exc
