"""Peer messages: AES-GCM between nodes that both speak it, Fernet + zlib with an older one.

The mixed cluster runs pysyncobj's real transport over TCP on 127.0.0.1: two nodes with
`PeerWireTransport` and one with pysyncobj's own TCPTransport (what a node of the previous
release speaks), all with the same secret.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from cryptography.fernet import Fernet
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.transport import TCPTransport

from raftplane.cluster.peer_wire import (
    PeerCipher,
    PeerMessageRejected,
    PeerWireTransport,
    master_key,
)
from tests.system.http import poll

pytestmark = pytest.mark.timeout(60)

SECRET = "peer-wire-test-secret-0123456789"


def pair(secret: str = SECRET) -> tuple[PeerCipher, PeerCipher]:
    fernet = Fernet(Fernet.generate_key())
    return PeerCipher(fernet, master_key(secret)), PeerCipher(fernet, master_key(secret))


def test_sealed_messages_open_only_once_and_in_order() -> None:
    sender, receiver = pair()
    sender.peer_reads_v2 = True
    first, second = sender.encrypt_at_time(b"one", 7), sender.encrypt_at_time(b"two", 8)
    assert b"one" not in first and first[:1] == b"\xa1"
    assert receiver.extract_timestamp(first) == 7 and receiver.decrypt(first) == b"one"
    assert receiver.decrypt(second) == b"two"
    for replayed in (first, second):
        with pytest.raises(PeerMessageRejected):
            receiver.decrypt(replayed)


def test_a_forged_damaged_or_foreign_message_does_not_open() -> None:
    sender, receiver = pair()
    sender.peer_reads_v2 = True
    token = sender.encrypt_at_time(b"append entries", 1)
    damaged = token[:-1] + bytes([token[-1] ^ 1])
    later = token[:1] + (10**6).to_bytes(8, "big") + token[9:]  # timestamp is authenticated
    with pytest.raises(PeerMessageRejected):
        receiver.decrypt(damaged)
    with pytest.raises(PeerMessageRejected):
        receiver.decrypt(later)
    stranger, _ = pair("another-secret-altogether-0123")
    stranger.peer_reads_v2 = True
    _, fresh = pair()
    with pytest.raises(PeerMessageRejected):
        fresh.decrypt(stranger.encrypt_at_time(b"x", 1))
    assert fresh.decrypt(token) == b"append entries"  # the genuine one still opens


def test_fernet_until_the_peer_says_it_reads_v2_and_fernet_is_always_read() -> None:
    sender, receiver = pair()
    legacy = sender.encrypt_at_time(b"hello", 3)
    assert legacy.startswith(b"gAAAAA")  # a Fernet token: an older node reads it
    assert receiver.extract_timestamp(legacy) == 3 and receiver.decrypt(legacy) == b"hello"


class Counter(SyncObj):  # type: ignore[misc]
    def __init__(self, me: str, others: list[str], transport: type) -> None:
        conf = SyncObjConf(password=SECRET, appendEntriesUseBatch=False, raftMinTimeout=0.4,
                           raftMaxTimeout=0.8, connectionRetryTime=0.2)
        super().__init__(me, others, conf, transportClass=transport)
        self.values: list[int] = []

    @replicated  # type: ignore[untyped-decorator]
    def add(self, value: int) -> None:
        self.values.append(value)


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def mixed_cluster() -> Iterator[list[Counter]]:
    addrs = [f"127.0.0.1:{p}" for p in _ports(3)]
    kinds = [PeerWireTransport, PeerWireTransport, TCPTransport]  # the third: older release
    nodes: list[Counter] = []
    try:
        for me, kind in zip(addrs, kinds, strict=True):
            nodes.append(Counter(me, [a for a in addrs if a != me], kind))
        yield nodes
    finally:
        for node in nodes:
            node.destroy_synchronous()


def _until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    if poll(check, timeout)[0] is None:
        raise AssertionError(f"timed out waiting for {what}")


def _ciphers(node: Counter) -> dict[str, object]:
    connections = node._SyncObj__transport._connections
    return {peer.address: conn.encryptor for peer, conn in connections.items()}


def test_nodes_of_two_releases_form_one_cluster(mixed_cluster: list[Counter]) -> None:
    new_a, new_b, old = mixed_cluster
    _until(lambda: all(n._getLeader() is not None for n in mixed_cluster), "a leader")
    for i, node in enumerate(mixed_cluster * 3):  # every node proposes, whoever leads
        _until(lambda node=node: node._getLeader() is not None, "a known leader")
        node.add(i, sync=True, timeout=10)
    _until(lambda: all(len(n.values) == 9 for n in mixed_cluster), "every node applied all")
    assert new_a.values == new_b.values == old.values
    new_peer = _ciphers(new_a)[new_b.selfNode.address]
    old_peer = _ciphers(new_a)[old.selfNode.address]
    assert isinstance(new_peer, PeerCipher) and new_peer.peer_reads_v2
    assert isinstance(old_peer, PeerCipher) and not old_peer.peer_reads_v2
    assert isinstance(_ciphers(old)[new_a.selfNode.address], Fernet)  # the old node's own

