"""What a backup costs: time and size for N resources, and write latency while it runs.

Starts a 3-node LocalCluster, creates N clusters in one team, then measures, each for
--seconds, W writer threads replacing clusters on the leader (each write timed):
- baseline: no backup;
- during backups: `raftplane backup`'s download (raftplane.backup_command.download) from the
  leader, back to back. A write counts as "during" when it started while one was in flight.
Then restores the last backup into a temporary data dir (`raftplane restore`'s code) and
times that. Prints the store's size, the backup's size, the copy (read transaction) time,
the download time and the latency summaries.

    .venv/bin/python bench/backup_cost.py --resources 5000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _cli import add_run_options, bench_parser, run_main
from _stats import SUMMARY_HEADER, Summary
from _xds_setup import BenchCluster, local_cluster

TEAM = "backup-bench"


def body(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "team": TEAM, "endpoints": [{"host": "10.0.0.1", "port": port}]}


def fill(bc: BenchCluster, resources: int) -> None:
    bc.call("POST", bc.leader, "/teams", {"name": TEAM}, what="team")

    def create(i: int) -> None:
        bc.call("POST", bc.leader, "/clusters", body(f"c{i:06d}", 1000 + i % 50000),
                what=f"cluster {i}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(resources)))


def timed_writes(bc: BenchCluster, writers: int, seconds: float
                 ) -> list[tuple[float, float]]:
    """(start, milliseconds) of every replace from `writers` threads over `seconds`."""
    samples: list[tuple[float, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def writer(w: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            started = time.monotonic()
            bc.call("PUT", bc.leader, f"/clusters/c{w:06d}", body(f"c{w:06d}", 2000 + i),
                    what="replace")
            with lock:
                samples.append((started, (time.monotonic() - started) * 1000))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return samples


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--resources", type=int, default=5000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0)
    add_run_options(ap, repeat=1, repeat_help="(one run)", max_seconds=600)
    args = ap.parse_args()
    with local_cluster(args.work_dir, args.keep_dirs, "backup-bench-") as bc:
        started = time.monotonic()
        fill(bc, args.resources)
        print(f"# created {args.resources} clusters in {time.monotonic() - started:.1f} s")
        out = Path(tempfile.mkdtemp(prefix="backup-bench-out-", dir=args.work_dir))
        try:
            measure(bc, args, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return 0


def measure(bc: BenchCluster, args: argparse.Namespace, out: Path) -> None:
    """Baseline writes, writes during back-to-back backups, one restore; print them."""
    from raftplane.backup_command import download
    from raftplane.cluster.config import read_secret
    from raftplane.cluster.restore import restore
    from raftplane.storage import backup
    from raftplane.storage.store import Store

    cluster = bc.cluster
    token, api = cluster.admin_token, cluster.nodes[bc.leader].api
    baseline = timed_writes(bc, args.writers, args.seconds)

    runs: list[tuple[float, float, backup.BackupInfo]] = []
    stop = threading.Event()

    failed: list[BaseException] = []

    def backups() -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                t0 = time.monotonic()
                info = download(api, token, out / f"b{n % 2}.backup")
                runs.append((t0, time.monotonic(), info))
        except BaseException as exc:
            failed.append(exc)

    runner = threading.Thread(target=backups)
    runner.start()
    try:
        during = timed_writes(bc, args.writers, args.seconds)
    finally:
        stop.set()
        runner.join()
    if failed or not runs:
        raise RuntimeError(f"backups failed: {failed}")
    in_flight = [d for s, d in during if any(a <= s < b for a, b, _ in runs)]
    status = bc.call("GET", bc.leader, "/cluster/status", what="status")
    last = runs[-1][2]
    t0 = time.monotonic()
    restore(out / f"b{len(runs) % 2}.backup", out / "restored",
            read_secret(cluster.secret_file))
    restore_seconds = time.monotonic() - t0
    restored = Store(out / "restored" / "store")
    try:
        held, kept = restored.counts(), restored.stats()
    finally:
        restored.close()
    size = last.data_offset + last.data_length + backup.TRAILER_SIZE
    downloads = sorted(b - a for a, b, _ in runs)
    copies = sorted(float(info.header["copySeconds"]) for _, _, info in runs)
    print(f"resources: {args.resources}; store used {status['store']['usedBytes'] / 1e6:.1f}"
          f" MB; backup file {size / 1e6:.1f} MB (revision {last.revision})")
    print(f"it holds: {sum(held.values())} records of the API ({held.get('clusters', 0)} "
          f"clusters), {kept['auditEvents']} audit events, {kept['idempotencyKeys']} "
          "idempotency keys")
    print(f"backups: {len(runs)}; copy (read txn) median {copies[len(copies) // 2]:.3f} s, "
          f"max {copies[-1]:.3f} s; whole download median "
          f"{downloads[len(downloads) // 2]:.2f} s, max {downloads[-1]:.2f} s")
    print(f"restore into an empty data dir: {restore_seconds:.2f} s")
    print(f"writes ({args.writers} writers, replace on the leader):")
    print("| when | " + SUMMARY_HEADER[2:])
    print("|---|---|---|---|---|---|")
    print("| no backup " + Summary.of([d for _, d in baseline]).cells())
    print("| backup in flight " + Summary.of(in_flight).cells())


if __name__ == "__main__":
    sys.exit(run_main(main))
