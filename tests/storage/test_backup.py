"""The backup file: a consistent store copy in an envelope that restore can trust."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import pytest

from raftplane.storage import backup
from raftplane.storage.store import Store
from tests.storage.test_store import entry, put

pytestmark = pytest.mark.timeout(60)

SECRET = "s" * 32


def fill(store: Store, first: int, last: int) -> None:
    """Entry i creates team t{i} (so the revision says exactly which teams exist)."""
    for i in range(first, last + 1):
        store.apply_entry(i, entry(put("teams", f"t{i}", {"name": f"t{i}"})))


def write_backup(store: Store, path: Path) -> backup.BackupCopy:
    copy = backup.take(store, secret=SECRET, source="n1", workdir=path.parent)
    try:
        with open(path, "wb") as f:
            backup.write(f, copy)
    finally:
        copy.close()
    return copy


def data_of(path: Path, info: backup.BackupInfo, into: Path) -> Store:
    """Open the LMDB data a verified backup carries as a store."""
    into.mkdir()
    with open(path, "rb") as f:
        f.seek(info.data_offset)
        (into / "data.mdb").write_bytes(f.read(info.data_length))
    return Store(into)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "db")
    fill(s, 2, 41)
    yield s
    s.close()


def test_a_backup_holds_the_store_at_its_revision_and_verifies(store, tmp_path):
    path = tmp_path / "b.backup"
    copy = write_backup(store, path)
    info = backup.verify(path)
    assert info.revision == copy.revision == 41
    assert info.sha256 == copy.sha256 and path.stat().st_size == copy.size
    assert info.header["source"] == "n1"
    assert info.header["secretCheck"] == backup.secret_check(SECRET)
    assert SECRET not in path.read_bytes().decode(errors="replace")
    restored = data_of(path, info, tmp_path / "restored")
    try:
        assert restored.applied_index == 41
        assert restored.counts() == {"teams": 40}
        assert restored.get("teams", "t41") == store.get("teams", "t41")
    finally:
        restored.close()


def test_a_copy_taken_under_writes_is_exactly_the_state_at_its_revision(store, tmp_path):
    stop, writing = threading.Event(), threading.Event()

    def writer() -> None:
        index = 42
        while not stop.is_set() and index < 20_000:
            fill(store, index, index)
            writing.set()
            index += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        copies = [write_backup(store, tmp_path / f"b{i}.backup") for i in range(3)]
    finally:
        stop.set()
        thread.join(timeout=30)
    assert all(copy.revision > 41 for copy in copies)
    for i in range(len(copies)):
        path = tmp_path / f"b{i}.backup"
        info = backup.verify(path)
        restored = data_of(path, info, tmp_path / f"r{i}")
        try:
            assert restored.applied_index == info.revision
            # Entries 2..revision and nothing after: one read transaction's view.
            assert restored.counts() == {"teams": info.revision - 1}
            assert restored.get("teams", f"t{info.revision}") is not None
            assert restored.get("teams", f"t{info.revision + 1}") is None
        finally:
            restored.close()


@pytest.mark.parametrize("where", ["data", "header", "trailer"])
def test_a_flipped_byte_is_refused(store, tmp_path, where):
    path = tmp_path / "b.backup"
    write_backup(store, path)
    raw = bytearray(path.read_bytes())
    info = backup.verify(path)
    offset = {"data": info.data_offset + info.data_length // 2,
              "header": raw.index(b'"source"') + 2,
              "trailer": len(raw) - backup.TRAILER_SIZE + 3}[where]
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(backup.BackupInvalid, match="damaged"):
        backup.verify(path)


def test_a_cut_or_padded_file_is_refused(store, tmp_path):
    path = tmp_path / "b.backup"
    write_backup(store, path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(backup.BackupInvalid, match="cut short"):
        backup.verify(path)
    path.write_bytes(whole + b"\0")
    with pytest.raises(backup.BackupInvalid, match="too long"):
        backup.verify(path)


def test_other_files_and_formats_are_refused(tmp_path):
    path = tmp_path / "b.backup"
    path.write_bytes(b"RAFTPLANE-SNAPSHOT-2\n" + b"\0" * 100)
    with pytest.raises(backup.BackupInvalid, match="not a raftplane backup"):
        backup.verify(path)
    blob = json.dumps({"format": 2, "revision": 5, "dataLength": 0}).encode()
    path.write_bytes(backup.MAGIC + struct.pack(">I", len(blob)) + blob)
    with pytest.raises(backup.BackupInvalid, match="format 2"):
        backup.verify(path)
    path.write_bytes(backup.MAGIC + struct.pack(">I", 5) + b"{nope")
    with pytest.raises(backup.BackupInvalid, match="unreadable header"):
        backup.verify(path)


def test_the_secret_check_tells_secrets_apart_without_showing_them():
    check = backup.secret_check(SECRET)
    assert check == backup.secret_check(SECRET) and len(check) == 32
    assert check != backup.secret_check("t" * 32) and SECRET not in check
