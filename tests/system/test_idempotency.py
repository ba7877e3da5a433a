"""Idempotency-Key on a real cluster: one key, two principals of two teams, no shared answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.system.http import call

pytestmark = pytest.mark.timeout(180)


def team_token(c, team: str) -> str:
    c.ensure_team(team)
    r = call("POST", c.api(c.leader()) + "/tokens",
             {"name": f"{team}-ci", "scopes": ["clusters:write"], "teams": [team],
              "expiresInSeconds": 3600})
    assert r.status == 201, r.body
    return r.body["token"]


def create(api: str, token: str, team: str, name: str, key: str):
    return call("POST", api + "/clusters", {"name": name, "team": team, "endpoints": [
        {"host": "127.0.0.1", "port": 9000}]}, headers={"Idempotency-Key": key}, auth=token)


def test_two_teams_using_one_key_each_get_their_own_result(shared_cluster):
    c = shared_cluster
    tokens = {team: team_token(c, team) for team in ("idem-red", "idem-blue")}
    leader, follower = c.api(c.leader()), c.api(c.followers()[0])
    # One after the other: the second team's write is applied, not refused as a reuse.
    red = create(leader, tokens["idem-red"], "idem-red", "idem-red-a", "deploy-1")
    blue = create(follower, tokens["idem-blue"], "idem-blue", "idem-blue-a", "deploy-1")
    assert red.status == 201 and red.body["team"] == "idem-red", red.body
    assert blue.status == 201 and blue.body["team"] == "idem-blue", blue.body
    # A retry by each replays its own answer.
    again = create(follower, tokens["idem-red"], "idem-red", "idem-red-a", "deploy-1")
    assert again.status == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.body == red.body
    # At the same time (both pass the leader's pre-check before either is applied): each
    # still gets its own resource, never the other team's.
    jobs = [(api, team, f"{team}-race-{i}", f"race-{i}")
            for i in range(8) for api, team in ((leader, "idem-red"), (follower, "idem-blue"))]
    with ThreadPoolExecutor(len(jobs)) as pool:
        replies = list(pool.map(lambda j: create(j[0], tokens[j[1]], j[1], j[2], j[3]), jobs))
    for (_, team, name, _), reply in zip(jobs, replies, strict=True):
        assert reply.status == 201, (name, reply.status, reply.body)
        assert reply.body["name"] == name and reply.body["team"] == team
        other = "idem-blue" if team == "idem-red" else "idem-red"
        assert other not in json.dumps(reply.body)
