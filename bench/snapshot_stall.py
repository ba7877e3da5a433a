"""How long a Raft snapshot of a large store stalls the tick thread.

Fills a real LMDB store (`--megabytes` of resources), then writes a snapshot two ways and
measures the longest gap of a loop that stands in for pysyncobj's tick thread (it wakes
every millisecond, as heartbeats and elections need):
- inline: the copy runs in the tick thread (pysyncobj's custom serializer, before);
- worker: the read txn is opened in the tick thread, the copy runs in a worker thread
  (raftplane/cluster/snapshot.py, now).

    .venv/bin/python bench/snapshot_stall.py --megabytes 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from pysyncobj.config import SERIALIZER_STATE

from raftplane.cluster import snapshot
from raftplane.storage.store import Store
from raftplane.wire import log_entry_pb2 as wire


def fill(store: Store, megabytes: int) -> int:
    """Apply entries of 100 cluster puts (~10 KiB each) until the store holds `megabytes`."""
    value = json.dumps({"name": "x", "team": "", "endpoints": [
        {"host": "127.0.0.1", "port": 9000 + i} for i in range(300)]})
    index, written = 1, 0
    while written < megabytes << 20:
        entry = wire.LogEntry(format_version=1, proposed_at_ms=1)
        for _ in range(100):
            put = entry.commands.add().put
            put.kind, put.name, put.value_json = "clusters", f"c{index}-{written}", value.encode()
            written += len(value)
        index += 1
        store.apply_entry(index, entry.SerializeToString())
    return index


def longest_gap(work, period: float = 0.001) -> tuple[float, float]:
    """Run `work()` while a 1 ms loop ticks; (work seconds, longest gap between ticks)."""
    done = threading.Event()
    gaps: list[float] = []

    def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(period)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    thread = threading.Thread(target=ticker)
    thread.start()
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    done.set()
    thread.join()
    return took, max(gaps, default=took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        last = fill(store, args.megabytes)
        entries = ((b"a", last, 1), (b"b", last - 1, 1), [])
        print(f"store: {store.stats()['usedBytes'] / 1e6:.0f} MB, {last} entries")
        inline, worker = [], []
        for _ in range(args.repeat):
            path = str(Path(tmp) / "snapshot")

            def copy_inline(path: str = path) -> None:
                # the tick thread is busy for the whole copy: measured as the work's time
                snapshot.write(path, entries, store)

            took, _ = longest_gap(copy_inline)
            inline.append(took)

            def copy_in_worker(path: str = path) -> None:
                files = snapshot.SnapshotFiles(path, 1 << 16, store)
                files.serialize((None, *entries), last)
                while files.checkSerializing()[0] == SERIALIZER_STATE.SERIALIZING:
                    time.sleep(0.005)

            _, gap = longest_gap(copy_in_worker)
            worker.append(gap)
        print(f"inline copy: tick thread blocked {statistics.median(inline) * 1000:.0f} ms "
              f"(median of {args.repeat})")
        print(f"worker copy: longest tick gap {statistics.median(worker) * 1000:.1f} ms "
              f"(median of {args.repeat})")
        store.close()


if __name__ == "__main__":
    main()
