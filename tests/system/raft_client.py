"""Write straight into the Raft log, below the API (to inject what the API would refuse).

A read-only pysyncobj member that knows the cluster secret can propose entries; the
cluster applies them like any other. Tests use it to prove what Envoy does with config
the API never accepts.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from pysyncobj import SyncObj, SyncObjConf, replicated

from raftplane.wire import log_entry_pb2 as wire


class _Injector(SyncObj):
    def __init__(self, peers: list[str], secret: str) -> None:
        super().__init__(None, peers, SyncObjConf(password=secret, appendEntriesUseBatch=False,
                                                  commandsWaitLeader=True))

    @replicated
    def apply_entry(self, data: bytes) -> None:  # same method table as the real node
        return None


def inject_put(cluster_file: str, secret: str, kind: str, name: str, resource: dict,
               team: str, timeout: float = 20.0) -> None:
    """Replace (kind, name) with `resource` through the Raft log, unvalidated."""
    peers = [n["raft"] for n in json.loads(Path(cluster_file).read_text())["nodes"]]
    entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    command = entry.commands.add()
    command.put.CopyFrom(wire.Put(kind=kind, name=name, team=team,
                                  value_json=json.dumps(resource).encode()))
    injector = _Injector(peers, secret)
    done = threading.Event()
    outcome: list = []
    try:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            if injector._getLeader() is None:
                time.sleep(0.05)
                continue

            def on_result(result: object, error: int) -> None:
                outcome.append(error)
                done.set()

            injector.apply_entry(entry.SerializeToString(), callback=on_result)
            done.wait(timeout=5)
            if outcome and outcome[-1] != 0:
                outcome.clear()
                done.clear()
        if not outcome or outcome[-1] != 0:
            raise TimeoutError(f"injection not applied (outcome {outcome})")
    finally:
        injector.destroy()
