"""Peer messages sealed with AES-GCM and not compressed, where both ends speak it.

pysyncobj seals each peer message with Fernet (AES-CBC + HMAC-SHA256, base64) after zlib:
on a 3-node cluster at one write at a time that was a quarter of the leader's Python time
(docs/benchmarks.md). `PeerCipher` offers Fernet's three methods that pysyncobj's
TcpConnection calls, per connection: it reads both Fernet tokens and its own (AES-256-GCM,
key derived from the cluster secret with PBKDF2, nonces never reused: a random key id per
connection and a counter), and writes its own only once the peer said it reads them. What
it writes is never compressed (loopback or LAN; pysyncobj's receiver detects zlib by its
header, so we let it take either), still authenticated before it is unpickled.

The peer says so in pysyncobj's key exchange: each end's random connection key ends with
`V2_MARK`. A node of an older release treats that key as opaque bytes (it only compares
it), never marks its own and so keeps getting Fernet + zlib: nodes of two releases still
form one cluster during a rolling upgrade.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib as _zlib
from typing import Any

import pysyncobj.tcp_connection as _tcp_connection
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj import pickle as _pysyncobj_pickle
from pysyncobj.monotonic import monotonic as monotonic_time
from pysyncobj.transport import TCPTransport

V2_MARK = b"/raftplane-peer-v2"
_VERSION = b"\xa1"  # never the first byte of a Fernet token (base64 text)
_HEAD = struct.Struct(">cQ16sQ")  # version, timestamp, key id, counter
_SALT = b"raftplane peer wire v2"


class PeerMessageRejected(ValueError):
    """A sealed message that does not open: forged, damaged, replayed or another secret."""


@functools.lru_cache(maxsize=8)
def master_key(secret: str) -> bytes:
    """The cluster's peer key (PBKDF2-SHA256, as costly to guess as pysyncobj's Fernet key)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=_SALT, iterations=100_000)
    return kdf.derive(secret.encode())


def _connection_key(master: bytes, key_id: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=key_id, info=b"peer messages")
    return AESGCM(hkdf.derive(master))


class PeerCipher:
    """One connection's sealing, shaped like the Fernet object pysyncobj expects."""

    def __init__(self, fernet: Fernet, master: bytes) -> None:
        self._fernet = fernet
        self._master = master
        self.peer_reads_v2 = False
        self._key_id = os.urandom(16)
        self._sealer = _connection_key(master, self._key_id)
        self._sent = 0
        self._peer_key_id: bytes | None = None
        self._peer_key: AESGCM | None = None
        self._received = 0
        self._opened: tuple[bytes | None, bytes] = (None, b"")

    # ---- Fernet's interface, as pysyncobj's TcpConnection calls it ---------------------------
    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        if not self.peer_reads_v2:
            return self._fernet.encrypt_at_time(data, current_time)
        self._sent += 1
        head = _HEAD.pack(_VERSION, current_time, self._key_id, self._sent)
        return head + self._sealer.encrypt(head[-12:], data, head)

    def extract_timestamp(self, token: bytes) -> int:
        if token[:1] != _VERSION:
            return self._fernet.extract_timestamp(token)
        self._opened = (token, self._open(token))
        timestamp: int = _HEAD.unpack_from(token)[1]
        return timestamp

    def decrypt(self, token: bytes) -> bytes:
        if token[:1] != _VERSION:
            return self._fernet.decrypt(token)
        opened, self._opened = self._opened, (None, b"")  # opened by extract_timestamp
        if opened[0] is token:
            return opened[1]
        return self._open(token)

    # ---- ours --------------------------------------------------------------------------------
    def _open(self, token: bytes) -> bytes:
        if len(token) < _HEAD.size + 16:
            raise PeerMessageRejected("too short")
        _version, _ts, key_id, counter = _HEAD.unpack_from(token)
        if self._peer_key_id is not None and key_id != self._peer_key_id:
            raise PeerMessageRejected("another connection's key")
        if counter <= self._received:
            raise PeerMessageRejected("replayed or reordered")
        key = self._peer_key if self._peer_key_id is not None else None
        if key is None:
            key = _connection_key(self._master, key_id)
        head = token[:_HEAD.size]
        try:
            plain = key.decrypt(head[-12:], token[_HEAD.size:], head)
        except InvalidTag:
            raise PeerMessageRejected("does not open with the cluster secret") from None
        self._peer_key_id, self._peer_key = key_id, key  # pinned once one opened
        self._received = counter
        return plain


class _Zlib:
    """pysyncobj's TcpConnection decompresses every message it receives; ours may come
    uncompressed (pickles start with 0x80, zlib streams with 0x78)."""

    compress = staticmethod(_zlib.compress)

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return _zlib.decompress(data) if data[:1] == b"\x78" else data


_tcp_connection.zlib = _Zlib


def _send(conn: Any, message: object) -> None:
    """TcpConnection.send, compressing only for a peer that does not read v2."""
    if conn.sendRandKey:
        message = (conn.sendRandKey, message)
    data = _pysyncobj_pickle.dumps(message)
    cipher: PeerCipher = conn.encryptor
    if not cipher.peer_reads_v2:
        data = _zlib.compress(data, 3)
    data = cipher.encrypt_at_time(data, int(monotonic_time()))
    conn._TcpConnection__writeBuffer += struct.pack("i", len(data)) + data
    conn._TcpConnection__trySendBuffer()


def _use_cipher(conn: Any, cipher: PeerCipher) -> None:
    conn.encryptor = cipher
    conn.send = functools.partial(_send, conn)


class PeerWireTransport(TCPTransport):  # type: ignore[misc]  # pysyncobj ships no types
    """pysyncobj's TCP transport whose connections use `PeerCipher` (marked key exchange)."""

    _syncObj: Any  # set by TCPTransport.__init__

    def _cipher(self) -> PeerCipher:
        secret = self._syncObj.conf.password
        fernet = self._syncObj.encryptor
        return PeerCipher(fernet, master_key(secret))

    def _onNewIncomingConnection(self, conn: Any) -> None:
        super()._onNewIncomingConnection(conn)
        if self._syncObj.encryptor:
            _use_cipher(conn, self._cipher())

    def _onIncomingMessageReceived(self, conn: Any, message: object) -> None:
        if self._syncObj.encryptor and not conn.sendRandKey:  # the dialler's key
            conn.sendRandKey = message
            if isinstance(message, bytes) and message.endswith(V2_MARK):
                conn.encryptor.peer_reads_v2 = True
            conn.recvRandKey = os.urandom(32) + V2_MARK
            conn.send(conn.recvRandKey)
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onOutgoingConnected(self, conn: Any) -> None:
        if not self._syncObj.encryptor:
            super()._onOutgoingConnected(conn)
            return
        _use_cipher(conn, self._cipher())  # a fresh one per connection, also on a redial
        conn.setOnMessageReceivedCallback(
            functools.partial(self._onOutgoingMessageReceived, conn))
        conn.recvRandKey = os.urandom(32) + V2_MARK
        conn.send(conn.recvRandKey)

    def _onOutgoingMessageReceived(self, conn: Any, message: object) -> None:
        if not conn.sendRandKey and isinstance(message, bytes) and message.endswith(V2_MARK):
            conn.encryptor.peer_reads_v2 = True
        super()._onOutgoingMessageReceived(conn, message)
