"""The watch stream on a real cluster: changes in apply order as server-sent events, filtered
by kind and team, resumed on another node with Last-Event-ID exactly once, 410 for a start the
node no longer holds."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(90)
TEAM = "watch"


class Watcher:
    """One SSE connection; reads events until told how many."""

    def __init__(self, api: str, token: str, query: str, last_id: str | None = None) -> None:
        url = urllib.parse.urlsplit(api)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", f"/api/v1/watch?{query}", headers=headers)
        self.response = self.conn.getresponse()

    def events(self, count: int) -> list[dict]:
        out: list[dict] = []
        fields: dict[str, str] = {}
        while len(out) < count:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if not line:
                if "data" in fields:
                    out.append({"id": fields.get("id"), "event": fields.get("event"),
                                "data": json.loads(fields["data"])})
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
        return out

    def close(self) -> None:
        self.conn.close()


def test_a_watcher_resumes_on_another_node_and_sees_each_change_once(shared_cluster):
    c = shared_cluster
    c.ensure_team(TEAM)
    c.ensure_team(TEAM + "-other")
    leader_api = c.api(c.leader())
    start = call("GET", f"{leader_api}/teams/{TEAM}").headers["x-raftplane-revision"]
    follower_a, follower_b = (c.nodes[n].api for n in c.followers()[:2])
    query = f"fromRevision={int(start) + 1}&kinds=clusters&team={TEAM}"
    writes: list[tuple[int, str, str]] = []  # (revision, event, name) as answered

    def write_all() -> None:
        for i in range(30):
            name = f"watch-{i % 10}"
            endpoint = {"host": "127.0.0.1", "port": 8000 + i}
            if i < 10:
                r = call("POST", f"{leader_api}/clusters",
                         {"name": name, "team": TEAM, "endpoints": [endpoint]})
                event = "put"
            elif i < 20:
                r = call("PUT", f"{leader_api}/clusters/{name}",
                         {"name": name, "team": TEAM, "endpoints": [endpoint]})
                event = "put"
            else:
                r = call("DELETE", f"{leader_api}/clusters/{name}")
                event = "delete"
            assert r.status in (200, 201), r.body
            writes.append((r.body["revision"], event, name))
            # noise the filters drop: another team, another kind
            call("POST", f"{leader_api}/clusters", {"name": f"noise-{i}", "team": TEAM + "-other",
                                                    "endpoints": [endpoint]})

    watcher = Watcher(follower_a, c.admin_token, query)
    assert watcher.response.status == 200
    assert watcher.response.getheader("Content-Type").startswith("text/event-stream")
    writer = threading.Thread(target=write_all)
    writer.start()
    try:
        first = watcher.events(12)
    finally:
        watcher.close()
    resumed = Watcher(follower_b, c.admin_token, query, last_id=first[-1]["id"])
    try:
        rest = resumed.events(18)
    finally:
        resumed.close()
        writer.join(timeout=60)
    seen = [(int(e["id"]), e["event"], e["data"]["name"]) for e in first + rest]
    assert seen == writes
    assert all(e["data"]["revision"] == int(e["id"]) for e in first + rest)
    puts = [e for e in first + rest if e["event"] == "put"]
    assert all(e["data"]["resource"]["name"] == e["data"]["name"] for e in puts)
    assert all("resource" not in e["data"] for e in first + rest if e["event"] == "delete")
    # the 11th write changed watch-0's port: the event carries the resource as of then
    assert puts[10]["data"]["resource"]["endpoints"][0]["port"] == 8010


def test_watch_refuses_what_it_cannot_serve(shared_cluster):
    api = shared_cluster.api(shared_cluster.leader())
    assert call("GET", f"{api}/watch?kinds=nope").status == 400
    assert call("GET", f"{api}/watch?fromRevision=x").status == 400
    token = call("POST", f"{api}/tokens", {"name": "watch-reader", "scopes": ["clusters:read"],
                                           "teams": [TEAM]}).body["token"]
    reply = call("GET", f"{api}/watch?kinds=secrets", auth=token)
    assert reply.status == 403 and reply.body["errors"][0]["field"] == "kinds"


def test_a_start_no_longer_held_is_410_with_the_oldest_revision(tmp_path_factory):
    from tests.system.test_retention import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("watch-410"), 1, log_level="INFO")
    cluster.prepare()
    cluster.node_args.setdefault("n1", []).extend(["--audit-max-events", "3"])
    cluster.start()
    try:
        cluster.wait_ready(timeout=60)
        api = cluster.api(cluster.leader(timeout=30))
        for team in ("w1", "w2", "w3", "w4", "w5"):
            assert call("POST", f"{api}/teams", {"name": team}).status == 201
        # one node: each write was applied (and pruned what it pruned) before it answered
        reply = call("GET", f"{api}/watch?fromRevision=1", timeout=5)
        assert reply.status == 410, reply.body
        assert reply.body["oldestRevision"] > 1
        assert "list the resources" in reply.body["detail"]
        # reads and diffs at a revision no longer held are 410 too, with the same oldest
        for path in ("teams/w1?atRevision=1", "teams?atRevision=1", "diff?from=1"):
            reply = call("GET", f"{api}/{path}")
            assert reply.status == 410, (path, reply.body)
            assert reply.body["oldestRevision"] > 1
    finally:
        cluster.stop()
