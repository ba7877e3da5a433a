"""In-process microbenchmark of the write path: Store.apply_entry for N creates.

One entry per create (as the API proposes them): a team, then N clusters of that team
referencing it, then N listeners on distinct ports (the port-claim path). Prints seconds
and entries per second. Usage: python bench/apply_creates.py [N] [repeats]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire


def _entry(kind: str, name: str, body: dict, team: str, refs: list[tuple[str, str]]) -> bytes:
    e = wire.LogEntry(format_version=1, proposed_at_ms=1_700_000_000_000)
    cmd = e.commands.add(idempotency_key=f"k-{kind}-{name}", request_fingerprint=b"fp")
    cmd.put.CopyFrom(wire.Put(kind=kind, name=name, mode=wire.PUT_MODE_CREATE, team=team,
                              value_json=json.dumps(body).encode()))
    for k, n in refs:
        cmd.put.references.add(kind=k, name=n, field="team")
    return e.SerializeToString()


def run(n: int) -> float:
    entries = [_entry("teams", "t", {"name": "t"}, "", [])]
    half = n // 2
    entries += [_entry("clusters", f"c{i}", {"name": f"c{i}", "team": "t"}, "t", [("teams", "t")])
                for i in range(half)]
    entries += [_entry("listeners", f"l{i}", {"name": f"l{i}", "team": "t", "port": 1000 + i},
                       "t", [("teams", "t")]) for i in range(n - half)]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        start = time.perf_counter()
        for index, data in enumerate(entries, start=1):
            [result] = store.apply_entry(index, data)
            assert result.outcome.ok, result
        elapsed = time.perf_counter() - start
        store.close()
    return elapsed


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    times = sorted(run(n) for _ in range(repeats))
    print(f"{n} creates: best {times[0]:.3f}s median {times[len(times) // 2]:.3f}s "
          f"({n / times[0]:.0f}/s best)")
