"""The HTTP client against a scripted server: exit codes, retries with one Idempotency-Key,
and the commands whose server side is not here yet (members, transfer-leadership)."""

from __future__ import annotations

import pytest

from raftplane.cli import main
from tests.client.stub import Answer, Stub

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(autouse=True)
def no_config(monkeypatch, tmp_path):
    for name in ("RAFTPLANE_SERVER", "RAFTPLANE_TOKEN", "RAFTPLANE_TOKEN_FILE",
                 "RAFTPLANE_CONFIG", "RAFTPLANE_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def cli(stub: Stub, *argv: str) -> int:
    return main([*argv, "--server", stub.url, "--token", "tok"])


def test_a_4xx_is_exit_1_with_the_problem_on_stderr(capsys):
    problem = {"title": "Invalid fields", "status": 422, "detail": "x",
               "errors": [{"field": "endpoints", "message": "must not be empty"}]}
    with Stub(lambda seen: Answer(422, problem)) as stub:
        assert cli(stub, "get", "clusters") == 1
    err = capsys.readouterr().err
    assert "error: 422 Invalid fields: x" in err and "  endpoints: must not be empty" in err
    assert stub.seen[0].headers["authorization"] == "Bearer tok"


def test_a_5xx_or_no_server_is_exit_3(capsys):
    with Stub(lambda seen: Answer(500, {"title": "Internal error", "detail": "boom"})) as stub:
        assert cli(stub, "get", "clusters") == 3
    assert "500 boom" in capsys.readouterr().err
    assert main(["get", "clusters", "--server", "http://127.0.0.1:9", "--timeout", "2"]) == 3
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err


def test_usage_errors_are_exit_2(capsys):
    assert main(["get", "clusters"]) == 2
    assert "no server" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["get"])
    assert exited.value.code == 2


def test_a_write_is_retried_on_503_with_the_same_idempotency_key(capsys):
    answers = iter([Answer(503, {"title": "No leader"}, {"Retry-After": "1"}),
                    Answer(504, {"title": "Outcome unknown"}),
                    Answer(200, {"revision": 9}, {"X-Raftplane-Revision": "9"})])
    with Stub(lambda seen: next(answers)) as stub:
        assert cli(stub, "delete", "cluster", "a") == 0
    keys = {s.headers["idempotency-key"] for s in stub.seen}
    assert len(stub.seen) == 3 and len(keys) == 1
    assert capsys.readouterr().out == "clusters/a deleted (revision 9)\n"


def test_lists_follow_next_cursor(capsys):
    def answer(seen):
        if "cursor=p2" in seen.path:
            return Answer(200, {"items": [{"name": "b", "team": "t"}], "nextCursor": None})
        return Answer(200, {"items": [{"name": "a", "team": "t"}], "nextCursor": "p2"})

    with Stub(answer) as stub:
        assert cli(stub, "get", "clusters", "--team", "t", "--page-size", "1", "-o",
                   "json") == 0
    assert [s.path for s in stub.seen] == ["/api/v1/clusters?limit=1&team=t",
                                           "/api/v1/clusters?limit=1&team=t&cursor=p2"]
    assert '"name": "b"' in capsys.readouterr().out


def test_members_and_transfer_leadership_send_what_the_contract_says(capsys):
    with Stub(lambda seen: Answer(202, {"revision": 40})) as stub:
        assert cli(stub, "members", "add", "n4", "--raft", "h4:7000", "--api", "http://h4:8080",
                   "--xds", "h4:18000", "--non-voter") == 0
        assert cli(stub, "members", "remove", "n2") == 0
        assert cli(stub, "transfer-leadership", "--to", "n3") == 0
    assert [(s.method, s.path, s.body) for s in stub.seen] == [
        ("POST", "/api/v1/cluster/members", {"id": "n4", "raft": "h4:7000",
                                             "api": "http://h4:8080", "xds": "h4:18000",
                                             "voter": False}),
        ("DELETE", "/api/v1/cluster/members/n2", None),
        ("POST", "/api/v1/cluster/transfer-leadership", {"to": "n3"}),
    ]
    assert capsys.readouterr().out.splitlines() == [
        "member n4 added as a non-voter (revision 40)", "member n2 removed (revision 40)",
        "leadership transfer to n3 started (revision 40)"]


def test_dataplanes_of_every_team_without_team(capsys):
    def answer(seen):
        if seen.path.startswith("/api/v1/teams?"):
            return Answer(200, {"items": [{"name": "a"}, {"name": "b"}], "nextCursor": None})
        team = seen.path.split("/")[4]
        return Answer(200, {"items": [{"name": f"dp-{team}", "team": team}],
                            "nextCursor": None})

    with Stub(answer) as stub:
        assert cli(stub, "get", "dataplanes") == 0
    assert [r.split()[:2] for r in capsys.readouterr().out.splitlines()[1:]] == [
        ["dp-a", "a"], ["dp-b", "b"]]
    with Stub(answer) as stub:
        assert cli(stub, "get", "dataplanes", "one") == 2  # one dataplane needs its team
