"""Keep followers from dropping log entries they already hold (pysyncobj 0.3.17 bug).

pysyncobj's follower deletes every entry after `prevLogIdx` on each AppendEntries, with no
term check, and its leader re-sends pipelined batches. A re-sent, older batch then cuts off
entries the follower already acknowledged, while the leader still counts them as held.

Raft's rule (Figure 2, AppendEntries 3-4): delete only from the first *conflicting* entry
(same index, other term) and append what is missing. `rewrite_append_entries` turns a
message into one that obeys it: entries the follower already holds are stripped and
`prevLogIdx` advanced past them; `truncate_from` says which deletion (if any) the message
may cause; the leader's commit index is clamped to what this message proved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Entry = tuple[bytes, int, int]  # (command, index, term), pysyncobj's journal tuple
# A pysyncobj message: a dict whose fields (and their types) depend on its "type".
Message = dict[str, Any]
EntryLookup = Callable[[int], Entry | None]


def rewrite_append_entries(message: Message, lookup: EntryLookup) -> int | None:
    """Rewrite a regular AppendEntries `message` in place.

    Returns the index from which the follower may delete entries (the first new entry,
    which conflicts or lies past the follower's log end), or None when it must delete none.
    """
    if message.get("prevLogIdx") is None:
        # The leader holds no entry just before what this follower asked for (it asked
        # beyond the leader's log): pysyncobj answers with this node's log end; nothing goes.
        return None
    entries: Sequence[Entry] = message.get("entries") or []
    skip = 0
    for _command, index, term in entries:
        held = lookup(index)
        if held is None or held[2] != term:
            break
        skip += 1
    if skip:
        last = entries[skip - 1]
        message["prevLogIdx"], message["prevLogTerm"] = last[1], last[2]
        message["entries"] = list(entries[skip:])
    remaining = message.get("entries") or []
    verified_up_to = message["prevLogIdx"] + len(remaining)
    if message.get("commit_index", 0) > verified_up_to:
        # Only entries this message matched or carried are known to equal the leader's.
        message["commit_index"] = verified_up_to
    return remaining[0][1] if remaining else None
