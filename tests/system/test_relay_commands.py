"""A follower builds a plain resource write's command and relays only it
(api/command_relay.py): its answers are those the leader gives, and the leader proposes a
relayed command only under a valid peer proof."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from raftplane.cluster.relay import RELAY_CONTENT_TYPE, RELAY_PATH, RelayCommand, encode_requests
from raftplane.wire import log_entry_pb2 as wire
from tests.system.http import Reply, call

pytestmark = pytest.mark.timeout(120)

TEAM = "relaycmd"
# Headers whose values differ between any two answers.
VARYING = {"date", "content-length", "x-raftplane-revision", "etag", "location"}


def body(name: str, port: int = 9000) -> dict[str, object]:
    return {"name": name, "team": TEAM, "endpoints": [{"host": "127.0.0.1", "port": port}]}


def route_requests(api_root: str, method: str, route: str) -> int:
    """Requests of `method` on `route` the node at `api_root` ran (its /metrics)."""
    with urllib.request.urlopen(api_root + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    pattern = (r'^raftplane_http_requests_total\{(?=[^}]*method="' + method + r'")(?=[^}]*'
               + re.escape(f'route="{route}"') + r')[^}]*\} (\S+)$')
    return sum(int(float(m)) for m in re.findall(pattern, text, flags=re.M))


def shape(reply: Reply) -> tuple[int, dict[str, str], object]:
    """Status, headers (values that vary with the write left out) and body keys. A relayed
    answer also names the leader in every answer, as it did when the request was relayed."""
    headers = {k: ("*" if k in VARYING else v) for k, v in reply.headers.items()
               if k != "x-raftplane-leader"}
    keys = sorted(reply.body) if isinstance(reply.body, dict) else reply.body
    return reply.status, headers, keys


def same_but_name(a: Reply, b: Reply) -> None:
    assert shape(a) == shape(b)
    for key in ("type", "title", "status"):
        if isinstance(a.body, dict) and key in a.body:
            assert a.body[key] == b.body[key]


def test_follower_answers_equal_leader_answers(shared_cluster):
    shared_cluster.ensure_team(TEAM)
    leader = shared_cluster.leader()
    on_leader, on_follower = shared_cluster.api(leader), shared_cluster.api(
        shared_cluster.followers()[0])
    leader_root = shared_cluster.nodes[leader].api
    created = [call("POST", f"{on_leader}/clusters", body("rc-l"))]
    ran_before = route_requests(leader_root, "POST", "/api/v1/clusters")
    created.append(call("POST", f"{on_follower}/clusters", body("rc-f")))
    same_but_name(*created)
    assert created[1].status == 201 and created[1].headers["x-raftplane-leader"] == leader
    assert created[1].headers["location"].endswith("/clusters/rc-f")
    assert created[1].body["revision"] == created[1].revision
    # The follower ran it; the leader only proposed its command.
    assert route_requests(leader_root, "POST", "/api/v1/clusters") == ran_before

    replaced = [call("PUT", f"{api}/clusters/rc-{who}", body(f"rc-{who}", 9001),
                     headers={"If-Match": f'"{reply.revision}"'})
                for who, api, reply in (("l", on_leader, created[0]),
                                        ("f", on_follower, created[1]))]
    same_but_name(*replaced)
    assert replaced[1].status == 200 and replaced[1].body["endpoints"][0]["port"] == 9001

    refusals = {
        "409 exists": lambda who, api: call("POST", f"{api}/clusters", body(f"rc-{who}")),
        "412 stale": lambda who, api: call("PUT", f"{api}/clusters/rc-{who}", body(f"rc-{who}"),
                                           headers={"If-Match": '"1"'}),
        "404 missing": lambda who, api: call("DELETE", f"{api}/clusters/rc-none-{who}"),
        "422 invalid": lambda who, api: call("POST", f"{api}/clusters", {"name": "x"}),
        "401 stranger": lambda who, api: call("POST", f"{api}/clusters", body("rc-s"),
                                              auth="not-a-token"),
    }
    for what, send in refusals.items():
        pair = [send(who, api) for who, api in (("l", on_leader), ("f", on_follower))]
        assert pair[0].status == int(what[:3]), (what, pair[0].body)
        same_but_name(*pair)
        assert pair[1].headers["x-raftplane-leader"] == leader
        if what == "412 stale":
            assert pair[1].body["currentRevision"] == replaced[1].revision

    deleted = [call("DELETE", f"{api}/clusters/rc-{who}")
               for who, api in (("l", on_leader), ("f", on_follower))]
    same_but_name(*deleted)
    assert deleted[1].body == {"kind": "clusters", "name": "rc-f", "deleted": True,
                               "revision": deleted[1].revision}


def test_idempotent_replay_through_a_follower(shared_cluster):
    shared_cluster.ensure_team(TEAM)
    on_leader = shared_cluster.api(shared_cluster.leader())
    on_follower = shared_cluster.api(shared_cluster.followers()[0])
    replies = {}
    for who, api in (("l", on_leader), ("f", on_follower)):
        key = {"Idempotency-Key": f"rc-key-{who}"}
        first = call("POST", f"{api}/clusters", body(f"rc-idem-{who}"), headers=key)
        again = call("POST", f"{api}/clusters", body(f"rc-idem-{who}"), headers=key)
        other = call("POST", f"{api}/clusters", body(f"rc-idem2-{who}"), headers=key)
        assert first.status == again.status == 201 and again.body == first.body
        assert again.headers["idempotent-replayed"] == "true"
        assert again.revision == first.revision
        assert other.status == 422 and other.body["type"].endswith("idempotency-key-reused")
        replies[who] = (first, again, other)
    for leader_reply, follower_reply in zip(replies["l"], replies["f"], strict=True):
        same_but_name(leader_reply, follower_reply)


def test_a_relayed_command_without_the_peer_proof_is_refused(shared_cluster):
    shared_cluster.ensure_team(TEAM)
    leader = shared_cluster.leader()
    on_leader = shared_cluster.api(leader)
    command = wire.Command(idempotency_key="forged-1")
    command.put.CopyFrom(wire.Put(kind="clusters", name="rc-forged", mode=wire.PUT_MODE_CREATE,
                                  team=TEAM, value_json=json.dumps(body("rc-forged")).encode()))
    command.principal.token_id, command.principal.name = "forged", "admin"
    data = encode_requests([RelayCommand(command.SerializeToString(), None, "POST x")])
    before = call("GET", f"{on_leader}/clusters?limit=1").revision
    for proof in (None, "n1:0:00", f"n1:{10**9}:" + "0" * 64):
        headers = {"Content-Type": RELAY_CONTENT_TYPE}
        if proof is not None:
            headers["X-Raftplane-Peer-Proof"] = proof
        req = urllib.request.Request(shared_cluster.nodes[leader].api + RELAY_PATH, data=data,
                                     method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 401
    assert call("GET", f"{on_leader}/clusters/rc-forged").status == 404
    barrier = call("GET", f"{on_leader}/clusters?limit=1&consistency=linearizable").revision
    for node_id in shared_cluster.nodes:
        got = call("GET", f"{shared_cluster.api(node_id)}/clusters/rc-forged"
                          f"?minRevision={barrier}")
        assert got.status == 404
    assert barrier >= before
