"""Named crash points at every step where durable state changes (off unless set).

`RAFTPLANE_FAILPOINTS` holds comma-separated `name=action` pairs, read once per process:

- `kill`: SIGKILL this process the first time the point is reached;
- `kill@N`: SIGKILL it the N-th time (1-based), e.g. the third snapshot, not the first;
- `kill%P`: SIGKILL it with probability P percent each time (seeded by
  `RAFTPLANE_FAILPOINTS_SEED`, so a schedule can be replayed).

A point that is not named costs one dict lookup. The fault suite (tests/chaos/
test_failpoints.py) kills nodes at each point under writes and checks that no acknowledged
write is lost; docs/reliability.md lists the points and what was run.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys

log = logging.getLogger(__name__)

# Every point, in the order a write meets them. Tests and docs iterate this.
POINTS: dict[str, str] = {
    "journal-append": "an entry was written to the journal file, not yet synced",
    "journal-sync": "the journal was just fsynced, nothing acknowledged yet",
    "meta-write": "the new term/vote file is written and synced, not yet renamed into place",
    "lmdb-commit": "an entry's LMDB transaction just committed (apply), callbacks not run",
    "snapshot-write": "a snapshot is written to its temporary file, not yet fsynced or renamed",
    "snapshot-rename": "a snapshot was renamed into place; the journal is not compacted yet",
    "journal-compact": "the compacted journal is written to its temporary file, not renamed",
    "journal-compact-rename": "the compacted journal was renamed into place",
    "snapshot-receive": "a snapshot received from the leader is on disk, not yet installed",
    "snapshot-install": "a received snapshot replaced LMDB; the journal is not reset yet",
}


def _parse(text: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for part in text.split(","):
        name, _, action = part.strip().partition("=")
        if not name:
            continue
        if name not in POINTS:
            raise ValueError(f"RAFTPLANE_FAILPOINTS names an unknown point '{name}' "
                             f"(known: {', '.join(POINTS)})")
        points[name] = action or "kill"
    return points


_ACTIVE = _parse(os.environ.get("RAFTPLANE_FAILPOINTS", ""))
_HITS: dict[str, int] = {}
_RANDOM = random.Random(int(os.environ.get("RAFTPLANE_FAILPOINTS_SEED", "0") or 0))


def hit(name: str) -> None:
    """Reach the point `name`: SIGKILL this process if the point is armed for this hit."""
    action = _ACTIVE.get(name)
    if action is None:
        return
    count = _HITS[name] = _HITS.get(name, 0) + 1
    if action == "kill":
        fire = count == 1
    elif action.startswith("kill@"):
        fire = count == int(action[5:])
    elif action.startswith("kill%"):
        fire = _RANDOM.random() * 100 < float(action[5:])
    else:
        raise ValueError(f"failpoint {name}: unknown action '{action}'")
    if fire:
        # One line on stderr (not the logger: its handler may buffer) so a test can tell
        # the kill came from the point and not from something else.
        sys.stderr.write(f'{{"level": "critical", "msg": "failpoint {name} fired (hit '
                         f'{count})", "failpoint": "{name}"}}\n')
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> dict[str, str]:
    """The points set for this process (for a startup log line)."""
    return dict(_ACTIVE)
