"""`raftplane restore`: seed the first node of a new cluster from a backup file.

The data directory gets what a node that had applied the backup's revision R would hold,
and nothing of the cluster the backup came from:
- `store/`: the backup's store (revision R), so the node serves it from its first moment
  (an Envoy that reconnects never sees an older or empty configuration);
- `raft/snapshot`: a seed snapshot of the same data at log index R (snapshot.write_seed),
  naming no members. pysyncobj loads it at start, so the new cluster's log continues at
  R + 1 and every revision it hands out is above the backup's. The other nodes start empty
  (`--join`) and receive this snapshot from the restored node once it leads.
No journal, term or vote: the new cluster elects its first leader in term 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from raftplane.cluster import snapshot
from raftplane.storage import backup
from raftplane.storage.store import Store


class RestoreRefused(Exception):
    """The backup cannot be restored here (the message says why and what to do)."""


def restore(backup_path: str | Path, data_dir: str | Path, secret: str) -> backup.BackupInfo:
    """Verify the backup at `backup_path` and seed the empty `data_dir` with it.

    `secret` is the new cluster's secret: it must be the one the backup was sealed with.
    Raises RestoreRefused.
    """
    try:
        info = backup.verify(backup_path)
    except (backup.BackupInvalid, OSError) as exc:
        raise RestoreRefused(f"{exc}; nothing was restored") from None
    if info.header.get("secretCheck") != backup.secret_check(secret):
        raise RestoreRefused(
            "this backup was taken under another cluster secret: its signing keys and secrets "
            "are sealed with it and could not be opened. Restore with the cluster secret of "
            "the cluster it came from (--cluster-secret-file) and run the new cluster with it")
    if info.revision < 2:
        raise RestoreRefused(f"the backup holds revision {info.revision}: an empty store, "
                             "nothing to restore (start a new cluster instead)")
    data_dir = Path(data_dir)
    store_dir, raft_dir = data_dir / "store", data_dir / "raft"
    used = [p for p in (store_dir, raft_dir) if p.exists() and any(p.iterdir())]
    if used:
        raise RestoreRefused(
            f"{data_dir} already holds a node's data ({', '.join(str(p) for p in used)}): a "
            "restore seeds a new node. Choose an empty --data-dir")
    try:
        _seed(backup_path, info, store_dir, raft_dir)
    except BaseException:
        for path in (store_dir, raft_dir):  # both were empty: leave them so again
            shutil.rmtree(path, ignore_errors=True)
        raise
    return info


def _seed(backup_path: str | Path, info: backup.BackupInfo, store_dir: Path,
          raft_dir: Path) -> None:
    raft_dir.mkdir(parents=True, exist_ok=True)
    seed = raft_dir / "snapshot"
    with open(backup_path, "rb") as f:
        f.seek(info.data_offset)
        snapshot.write_seed(seed, info.revision, f, info.data_length)
    store = Store(store_dir)
    try:
        snapshot.read(seed, store)
        if store.applied_index != info.revision:
            raise RestoreRefused(
                f"the backup's store holds revision {store.applied_index}, its header says "
                f"{info.revision}: refusing a backup that contradicts itself")
    finally:
        store.close()
