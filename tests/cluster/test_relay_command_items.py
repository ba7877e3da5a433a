"""Relay batches carry commands (cluster/relay.RelayCommand) under a peer proof."""

from __future__ import annotations

import pytest

from raftplane.cluster import peer_proof
from raftplane.cluster.relay import (
    RelayCommand,
    RelayFormatError,
    RelayRequest,
    decode_requests,
    encode_requests,
    has_commands,
)

pytestmark = pytest.mark.timeout(10)


def test_commands_and_requests_travel_in_one_batch() -> None:
    items = [RelayRequest("POST", "/api/v1/clusters", [("A", "b")], b"{}"),
             RelayCommand(b"\x0a\x01x", ["team-a"], "POST /api/v1/clusters"),
             RelayCommand(b"", None, "DELETE /api/v1/clusters/x")]
    assert decode_requests(encode_requests(items)) == items
    assert has_commands(items) and not has_commands(items[:1])


def test_a_malformed_command_refuses_the_batch() -> None:
    data = encode_requests([RelayCommand(b"x", None, "a")]).replace(b'"a":"a"', b'"a":7 ')
    with pytest.raises(RelayFormatError):
        decode_requests(data)


def test_the_proof_binds_secret_body_and_time() -> None:
    proof = peer_proof.sign("s3cret", "n2", b"body")
    assert peer_proof.verify("s3cret", proof, b"body")
    assert not peer_proof.verify("other", proof, b"body")
    assert not peer_proof.verify("s3cret", proof, b"body!")
    assert not peer_proof.verify(None, proof, b"body")
    assert not peer_proof.verify("s3cret", "", b"body")
    stale = peer_proof.sign("s3cret", "n2", b"body", now=1_000_000)
    assert not peer_proof.verify("s3cret", stale, b"body")
