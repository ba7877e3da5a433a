"""`raftplane backup` (download a node's backup, verified) and `raftplane restore`.

Both run through the client commands' dispatch (raftplane.client.run: messages on stderr,
exit codes 0 ok, 1 refused, 2 usage, 3 unreachable); `backup` takes the same connection
flags, variables and config file as the other client commands.
"""

from __future__ import annotations

import argparse
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from raftplane.client.config import add_connection_flags, resolve
from raftplane.client.errors import EXIT_CODES_HELP, ClientError, Unavailable, UsageError
from raftplane.storage import backup

CHUNK = 1 << 20


class BackupFailed(ClientError):
    """The backup was refused, or arrived damaged (nothing was kept): exit 1."""


def download(server: str, token: str | None, out: Path, *, ca_file: str | None = None,
             query: dict[str, str] | None = None, timeout: float = 30.0) -> backup.BackupInfo:
    """Fetch GET /api/v1/cluster/backup from the node at `server` into `out`, verified.

    The file is written next to `out`, checked end to end (its trailer's SHA-256 and the
    one the node announced in X-Raftplane-Checksum), fsynced and only then renamed to `out`.
    Raises BackupFailed (refused, damaged) or Unavailable (no answer, 5xx).
    """
    url = server.rstrip("/") + "/api/v1/cluster/backup"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    part = out.with_name(out.name + ".part")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout, context=context) as resp, \
                open(part, "wb") as f:
            announced = resp.headers.get("X-Raftplane-Checksum", "")
            while chunk := resp.read(CHUNK):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        info = backup.verify(part)
        if announced != f"sha256={info.sha256}":
            raise BackupFailed(f"the node announced {announced or 'no checksum'}, the file "
                               f"received has sha256={info.sha256}")
        os.replace(part, out)
        return info
    except urllib.error.HTTPError as exc:
        detail = f"{url} answered {exc.code}: {exc.read().decode(errors='replace')}"
        raise (Unavailable(detail, exc.code) if exc.code >= 500 else BackupFailed(detail)
               ) from None
    except backup.BackupInvalid as exc:
        raise BackupFailed(f"the backup received is not intact: {exc}") from None
    except OSError as exc:
        raise Unavailable(f"{url}: {exc}") from None
    finally:
        part.unlink(missing_ok=True)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `backup` and `restore` subcommands."""
    p = sub.add_parser("backup", help="download a consistent copy of the store (verified)",
                       epilog=EXIT_CODES_HELP)
    add_connection_flags(p)
    p.add_argument("-o", "--out", required=True, help="the backup file to write")
    p.add_argument("--min-revision", type=int, default=0, metavar="REVISION",
                   help="wait until the node has applied this revision (e.g. your last "
                        "write's) before it copies")
    p.set_defaults(client_run=_backup, offline=True)
    p = sub.add_parser("restore", help="seed a new cluster's first node from a backup file",
                       epilog=EXIT_CODES_HELP)
    p.add_argument("--from", dest="source", required=True, help="the backup file")
    p.add_argument("--data-dir", required=True, help="the new node's (empty) data directory")
    p.add_argument("--cluster-secret-file", default=os.environ.get(
                   "RAFTPLANE_CLUSTER_SECRET_FILE"),
                   help="the cluster secret the backup was taken under (the new cluster "
                        "runs with it too) [RAFTPLANE_CLUSTER_SECRET_FILE]")
    p.add_argument("--revision-floor", type=int, default=0, metavar="REVISION",
                   help="the new cluster's revisions start above this one (the old cluster's "
                        "last revision, if its Envoys saw changes after the backup)")
    p.set_defaults(client_run=_restore, offline=True)


def _backup(args: argparse.Namespace) -> int:
    settings = resolve(args)
    if not settings.token:
        raise UsageError("no token: a backup needs admin:all or cluster:read without teams "
                         "(--token, --token-file, RAFTPLANE_TOKEN or the config file)")
    query = {"minRevision": str(args.min_revision)} if args.min_revision else None
    info = download(settings.server, settings.token, Path(args.out),
                    ca_file=settings.ca_file, query=query, timeout=settings.timeout)
    size = info.data_offset + info.data_length + backup.TRAILER_SIZE
    print(f"backup of revision {info.revision} from {info.header['source']}: {args.out}, "
          f"{size} bytes, sha256={info.sha256}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from raftplane.cluster.config import ConfigError, read_secret
    from raftplane.cluster.restore import RestoreRefused, restore

    if not args.cluster_secret_file:
        raise UsageError("--cluster-secret-file is required: the backup's signing keys and "
                         "secrets are sealed with the cluster secret")
    try:
        secret = read_secret(args.cluster_secret_file)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        info = restore(args.source, args.data_dir, secret, revision_floor=args.revision_floor)
    except RestoreRefused as exc:
        raise BackupFailed(f"restore refused: {exc}") from None
    above = max(info.revision, args.revision_floor)
    print(f"restored revision {info.revision} (sha256={info.sha256}) into {args.data_dir}; "
          f"new revisions start above {above}. Start this node with the same cluster secret "
          "and the new cluster's members; start the other members with empty data "
          "directories and --join (this node's API URL): they copy the state from it.")
    return 0
