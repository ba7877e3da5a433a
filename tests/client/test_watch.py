"""watch: the server-sent events parser, and a resume after a drop in the middle of a revision
that prints every change exactly once."""

from __future__ import annotations

import json

import pytest

from raftplane.cli import main
from raftplane.client.watch import Event, Resumer, parse_events
from tests.client.stub import Answer, Stub

pytestmark = pytest.mark.timeout(20)


def sse(revision: int, name: str, event: str = "put") -> bytes:
    data = {"kind": "clusters", "name": name, "team": "t", "revision": revision}
    return f"id: {revision}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def test_parse_events_skips_comments_and_drops_a_cut_off_event():
    lines = [b": watching\n", b"\n", b"id: 3\n", b"event: put\n", b"data: {\"a\":\n",
             b"data: 1}\n", b"\n", b": keepalive\n", b"\n", b"id: 4\n", b"data: {}\n"]
    assert list(parse_events(lines)) == [Event("3", "put", '{"a":\n1}')]


def test_the_resumer_restarts_inside_the_last_revision_and_skips_what_was_printed():
    r = Resumer()
    assert r.last_event_id() is None
    assert r.fresh(6, {"kind": "clusters", "team": "t", "name": "a"})
    assert r.last_event_id() == "5"
    assert not r.fresh(6, {"kind": "clusters", "team": "t", "name": "a"})
    assert r.fresh(6, {"kind": "clusters", "team": "t", "name": "b"})
    assert r.fresh(7, {"kind": "clusters", "team": "t", "name": "a"})


def test_a_dropped_stream_is_resumed_with_last_event_id_exactly_once(capsys, monkeypatch):
    monkeypatch.delenv("RAFTPLANE_CONFIG", raising=False)
    streams = iter([
        [b": watching\n\n", sse(5, "a"), sse(6, "b"), b"id: 6\nevent: put\ndata: {\"ki"],
        [b": watching\n\n", sse(6, "b"), sse(6, "c"), sse(7, "a", "delete")],
    ])

    def answer(seen):
        if seen.path.startswith("/api/v1/cluster/status"):
            return Answer(200, {"revision": 4})
        return Answer(200, headers={"Content-Type": "text/event-stream"},
                      chunks=next(streams))

    with Stub(answer) as stub:
        assert main(["watch", "--server", stub.url, "--kinds", "cluster", "--count", "4"]) == 0
    watches = [s for s in stub.seen if s.path.startswith("/api/v1/watch")]
    assert watches[0].path == "/api/v1/watch?kinds=clusters&fromRevision=5"
    assert "last-event-id" not in watches[0].headers
    assert watches[1].headers["last-event-id"] == "5"
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["5\tput\tclusters\tt\ta", "6\tput\tclusters\tt\tb",
                                         "6\tput\tclusters\tt\tc",
                                         "7\tdelete\tclusters\tt\ta"]
    assert "resuming" in captured.err


def test_a_start_the_node_no_longer_holds_is_exit_1(capsys):
    gone = {"title": "Gone", "detail": "changes before revision 9 are no longer held here"}
    with Stub(lambda seen: Answer(410, gone)) as stub:
        assert main(["watch", "--server", stub.url, "--from-revision", "2"]) == 1
    assert "410 Gone: changes before revision 9" in capsys.readouterr().err
