"""What recovers the LMDB store after a power cut: it is rebuilt from the Raft files.

LMDB runs with `sync=False` (an fsync per applied entry on every node would cost the write
path; the Raft journal is already fsynced before anything is acknowledged). A process crash
(SIGKILL, OOM) loses nothing of LMDB: its pages are in the kernel's page cache. A power cut
or kernel crash may lose LMDB's newest transactions, and because LMDB's data and meta pages
then reach the disk in no particular order, may leave a store that is damaged, not only
older. So the store is not trusted after one: the node rebuilds it from what is durable,
the fsynced snapshot (written and renamed with fsync before the journal is compacted
against it) and the fsynced journal, which holds every entry after the snapshot.

How a power cut is told from a process crash: at start a node records the kernel's boot id
(`/proc/sys/kernel/random/boot_id`) in its data directory and removes its clean-stop mark;
a clean stop writes the mark back. Starting without the mark under another boot id means
the machine went down while the node ran: the store is moved aside and rebuilt (pysyncobj
installs the snapshot, then replays the journal up to the commit index). A pod moved to
another machine after a clean stop keeps its store.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CLEAN_STOP = "clean-stop"
LAST_BOOT = "boot-id"


def current_boot_id() -> str:
    """This machine's boot id (RAFTPLANE_BOOT_ID overrides it, for power-cut tests)."""
    override = os.environ.get("RAFTPLANE_BOOT_ID")
    if override:
        return override
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start(data_dir: Path, store_dir: Path) -> bool:
    """Call before opening the store. Returns True when the store was set aside to be
    rebuilt (the machine went down while this node ran)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    clean, last = data_dir / CLEAN_STOP, data_dir / LAST_BOOT
    boot = current_boot_id()
    rebuilt = False
    was_running = last.exists() and not clean.exists()
    if was_running and last.read_text().strip() != boot and store_dir.exists():
        aside = store_dir.with_name(f"{store_dir.name}.power-loss-{int(time.time())}")
        shutil.move(str(store_dir), str(aside))
        log.warning("this node was running when the machine went down (no clean stop, boot "
                    "id changed): its LMDB store may have lost or damaged unsynced pages, so "
                    "it was moved to %s and is rebuilt from the Raft snapshot and journal",
                    aside)
        rebuilt = True
    _write_durably(last, boot)
    if clean.exists():
        clean.unlink()
        _fsync_dir(data_dir)
    return rebuilt


def stop(data_dir: Path) -> None:
    """Call after the store was closed (and synced) on a clean stop."""
    _write_durably(data_dir / CLEAN_STOP, "")
