"""What the change log (watch, history, atRevision, diff, rollback) costs: apply time per
write and store bytes per write, with the log written and with it turned off.

Applies `--writes` cluster writes (each an update of one of `--resources` clusters, so the
store stays the same size) to a real LMDB store, one entry per write as apply does, in
alternating rounds with and without the log (the log is switched off by making
`changes.record` a no-op); prints the median apply time per write of each and the bytes the
`changes` and `history` databases hold per write.

    .venv/bin/python bench/change_log_cost.py --writes 4000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from raftplane.storage import changes
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire

CLUSTER = {"team": "bench", "endpoints": [{"host": "10.0.0.1", "port": 8080},
                                          {"host": "10.0.0.2", "port": 8080}],
           "connectTimeoutSeconds": 5, "useTls": False, "lbPolicy": "ROUND_ROBIN",
           "dnsLookupFamily": "AUTO", "protocol": "HTTP1"}


def entry(name: str, port: int) -> bytes:
    body = {**CLUSTER, "name": name, "endpoints": [{"host": "10.0.0.1", "port": port}]}
    out = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    out.commands.add().put.CopyFrom(wire.Put(kind="clusters", name=name, team="bench",
                                             value_json=json.dumps(body).encode()))
    return out.SerializeToString()


def run(path: Path, writes: int, resources: int, logged: bool) -> tuple[float, int]:
    """Seconds per write applied, and bytes of the change log per write."""
    store = Store(path)
    original = changes.record
    if not logged:
        changes.record = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        entries = [entry(f"c{i % resources}", 1000 + i % 50000) for i in range(writes)]
        started = time.perf_counter()
        for index, data in enumerate(entries, start=1):
            store.apply_entry(index, data)
        elapsed = time.perf_counter() - started
        with store.read() as txn:
            used = 0
            for db in ("changes", "history"):
                stat = txn.stat(store._dbs[db])
                used += stat["psize"] * (stat["branch_pages"] + stat["leaf_pages"]
                                         + stat["overflow_pages"])
        return elapsed / writes, used // writes
    finally:
        changes.record = original
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=4000)
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with_log, without, sizes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for logged in (True, False):
                seconds, size = run(Path(tmp) / f"{round_}-{logged}", args.writes,
                                    args.resources, logged)
                (with_log if logged else without).append(seconds)
                if logged:
                    sizes.append(size)
    on, off = statistics.median(with_log), statistics.median(without)
    print(f"apply per write, change log on:  {on * 1e6:7.1f} us (median of {args.rounds})")
    print(f"apply per write, change log off: {off * 1e6:7.1f} us")
    print(f"cost: +{(on - off) * 1e6:.1f} us per write ({on / off - 1:+.0%}); "
          f"change log + history index: {statistics.median(sizes)} bytes per write")


if __name__ == "__main__":
    main()
