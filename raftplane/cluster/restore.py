"""`raftplane restore`: seed the first node of a new cluster from a backup file.

The data directory gets what a node that had applied the backup's revision R would hold,
and nothing of the cluster the backup came from:
- `store/`: the backup's store (revision R), so the node serves it from its first moment
  (an Envoy that reconnects never sees an older or empty configuration), without the old
  cluster's replicated member list: the new cluster's members come from its flags;
- `raft/snapshot`: a seed snapshot of the same data at log index R (snapshot.write_seed),
  naming no members. pysyncobj loads it at start, so the new cluster's log continues at
  R + 1 and every revision it hands out is above the backup's. The other nodes start empty
  (`--join`: no election while empty) and receive this snapshot from the restored node
  once it leads.
No journal, term or vote: the new cluster elects its first leader in term 1.
`revision_floor` moves R up (see `seed`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from raftplane.cluster import snapshot
from raftplane.storage import backup
from raftplane.storage.store import Store


class RestoreRefused(Exception):
    """The backup cannot be restored here (the message says why and what to do)."""


def restore(backup_path: str | Path, data_dir: str | Path, secret: str, *,
            revision_floor: int = 0) -> backup.BackupInfo:
    """Verify the backup at `backup_path` and seed the empty `data_dir` with it.

    `secret` is the new cluster's secret: it must be the one the backup was sealed with.
    The new cluster's revisions continue above the backup's, and above `revision_floor`
    when that is higher (the old cluster's last revision: see `seed`). Raises
    RestoreRefused.
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
        seed(backup_path, info, data_dir, revision_floor)
    except BaseException:
        for path in (store_dir, raft_dir):  # both were empty: leave them so again
            shutil.rmtree(path, ignore_errors=True)
        raise
    return info


def seed(backup_path: str | Path, info: backup.BackupInfo, data_dir: Path,
         revision_floor: int = 0) -> None:
    """Install the verified backup's store into `data_dir`, then its seed snapshot.

    With a `revision_floor` above the backup's revision the store's applied index is moved
    up to it (nothing is applied in between): a Delta xDS Envoy that reconnects reports the
    versions it holds and is not sent a resource again whose version string matches, so
    the new cluster must not hand out a revision the old one already used for other
    content.
    """
    store = Store(data_dir / "store")
    try:
        with tempfile.TemporaryDirectory(dir=data_dir) as tmp, open(backup_path, "rb") as f:
            f.seek(info.data_offset)
            with open(Path(tmp) / "data.mdb", "wb") as out:
                left = info.data_length
                while left:
                    chunk = f.read(min(backup.CHUNK, left))
                    if not chunk:
                        raise RestoreRefused(f"{backup_path} changed while it was restored")
                    out.write(chunk)
                    left -= len(chunk)
            store.replace_from(tmp)
        if store.applied_index != info.revision:
            raise RestoreRefused(
                f"the backup's store holds revision {store.applied_index}, its header says "
                f"{info.revision}: refusing a backup that contradicts itself")
        store.forget_members()  # the old cluster's: the new one's come from its flags
        if revision_floor > store.applied_index:
            store.mark_applied(revision_floor)
        store.sync()
        raft_dir = data_dir / "raft"
        raft_dir.mkdir(parents=True, exist_ok=True)
        snapshot.write_seed(raft_dir / "snapshot", store)
    finally:
        store.close()
