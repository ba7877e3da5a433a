"""After the heal: read every key on every node into the history, and hold every node's audit
trail against what the clients were told.

The final reads are local reads at `minRevision=top`, where `top` is the revision of a
barrier committed after the reads were invoked: each read sees the state at some revision
committed within its interval, so the checker may take it as a linearizable read.
The audit trail (one event per applied write, written in apply) shows every write a node
applied: an acknowledged write missing there is lost; a key and action applied more often
than clients asked (ok plus unknown ops) means something was applied twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.history import History, Op
from tests.chaos.workload import TEAM
from tests.system.conftest import Cluster
from tests.system.http import call, eventually

ACTION = {"create": "create", "update": "replace", "delete": "delete"}
APPLIED = {"created", "replaced", "deleted"}
FINAL_READER = 900  # process ids of the final reads: 900 + node number


@dataclass
class FinalCheck:
    """What every node holds after the heal, against what clients were told."""

    top: int = 0
    lost: list[str] = field(default_factory=list)  # acknowledged writes missing on a node
    duplicated: list[str] = field(default_factory=list)  # applied more than asked
    differing: list[str] = field(default_factory=list)  # nodes unlike the first node

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.differing)


def pages(url: str, token: str | None = None) -> list[dict]:
    """Every item of a paginated list (`items`, `nextCursor`)."""
    items: list[dict] = []
    cursor = ""
    sep = "&" if "?" in url else "?"
    while True:
        r = call("GET", f"{url}{sep}limit=1000&cursor={cursor}", timeout=40)
        assert r.status == 200, (url, r.status, r.body)
        items += r.body["items"]
        cursor = r.body["nextCursor"]
        if not cursor:
            return items


def barrier(cluster: Cluster, timeout: float = 60.0) -> int:
    """Commit a no-op on the leader (a linearizable read); its revision."""
    def confirmed() -> int | None:
        r = call("GET", f"{cluster.api(cluster.leader(timeout=timeout))}/clusters/"
                        f"barrier?consistency=linearizable", timeout=10)
        return r.revision if r.status in (200, 404) else None

    return eventually(confirmed, timeout=timeout, interval=0.1)


def final_check(cluster: Cluster, history: History, keys: list[str],
                timeout: float = 60.0) -> FinalCheck:
    """Wait for every node to apply a barrier, read everything on every node, compare."""
    cluster.wait_ready(timeout=timeout)
    ids = sorted(cluster.nodes)
    handles = {(n, k): history.invoke(FINAL_READER + i, k, "read")
               for i, n in enumerate(ids) for k in keys}
    out = FinalCheck(top=barrier(cluster, timeout))
    states = {n: pages(f"{cluster.api(n)}/clusters?team={TEAM}&minRevision={out.top}"
                          f"&waitSeconds=30") for n in ids}
    for (n, key), handle in handles.items():
        item = next((x for x in states[n] if x["name"] == key), None)
        handle.ok(value=item and item.get("serviceName"), revision=item and item["revision"])
    trails = {n: [e for e in pages(f"{cluster.api(n)}/audit?team={TEAM}")
                  if e["kind"] == "clusters"] for n in ids}
    first = ids[0]
    out.differing = [n for n in ids[1:]
                     if states[n] != states[first] or trails[n] != trails[first]]
    for n in ids:
        lost, duplicated = compare(history.ops, trails[n])
        out.lost += [f"{n}: {x}" for x in lost]
        out.duplicated += [f"{n}: {x}" for x in duplicated]
    return out


def compare(ops: list[Op], trail: list[dict]) -> tuple[list[str], list[str]]:
    """(acknowledged writes missing from `trail`, key/actions applied more than asked)."""
    applied = [e for e in trail if e["result"] in APPLIED]
    at = {(e["revision"], e["resource"], e["action"]) for e in applied}
    writes = [op for op in ops if op.kind != "read"]
    lost = [op.describe() for op in writes if op.status == "ok"
            and (op.revision, op.key, ACTION[op.kind]) not in at]
    asked = Counter((op.key, ACTION[op.kind]) for op in writes if op.status != "fail")
    done = Counter((e["resource"], e["action"]) for e in applied)
    duplicated = [f"{key} {action}: applied {n} times, asked {asked[key, action]}"
                  for (key, action), n in sorted(done.items()) if n > asked[key, action]]
    return lost, duplicated
