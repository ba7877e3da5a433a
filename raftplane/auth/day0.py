"""Day 0: the first leader of a new cluster creates the one-time setup token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from raftplane.auth import setup_token
from raftplane.auth.state import AUTH, BOOTSTRAP, AuthState, put_command
from raftplane.cluster.errors import ClusterError
from raftplane.cluster.node import ClusterNode
from raftplane.storage.results import Outcome
from raftplane.wire import log_entry_pb2 as wire

log = logging.getLogger(__name__)

SETUP_TOKEN_FILE = "setup-token"
ATTEMPTS = 5


def setup_token_hook(node: ClusterNode, state: AuthState) -> Callable[[], Awaitable[None]]:
    """A leader hook: make sure the cluster has a setup token, exactly once."""

    async def hook() -> None:
        path = Path(node.config.data_dir) / SETUP_TOKEN_FILE
        for _ in range(ATTEMPTS):
            if not node.is_leader or state.bootstrap() is not None:
                return
            # Written before proposing: if the outcome is unknown but the entry lands, the
            # token is still on disk here.
            token = path.read_text().strip() if path.exists() else setup_token.new_setup_token()
            setup_token.write_setup_token_file(path, token)
            record = {"name": BOOTSTRAP, "setupTokenHash": setup_token.hash_token(token),
                      "initialized": False, "createdBy": node.config.node_id}
            try:
                result = await node.propose(put_command(AUTH, BOOTSTRAP, record,
                                                        wire.PUT_MODE_CREATE))
            except ClusterError as exc:
                log.warning("setup token not recorded yet: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if result.outcome is Outcome.CREATED:
                log.warning(
                    "new cluster: one-time setup token %s (also in %s, mode 0600). Exchange it "
                    "for the first admin token with POST /api/v1/bootstrap/initialize", token, path)
                return
            stored = state.bootstrap() or {}
            if stored.get("setupTokenHash") != setup_token.hash_token(token):
                path.unlink(missing_ok=True)  # another leader's token won
            return

    return hook
