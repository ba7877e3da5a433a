"""Run one raftplane node: store, Raft, REST API, until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web

from raftplane.api.app import create_app
from raftplane.api.context import AUTH_STATE
from raftplane.api.metrics import ApiMetrics
from raftplane.api.stream_share import follow_peer_streams
from raftplane.auth.day0 import setup_token_hook
from raftplane.cluster import api_tls, power_loss
from raftplane.cluster.config import NodeConfig
from raftplane.cluster.errors import ClusterError
from raftplane.cluster.join import watch_removal
from raftplane.cluster.node import ClusterNode
from raftplane.storage.store import Store
from raftplane.xds.connections import XdsMetrics
from raftplane.xds.runtime import XdsRuntime
from raftplane.xds.shed import ShareSettings, ShedMetrics, StreamShedder

log = logging.getLogger(__name__)


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def _stop_when_orphaned(stop: asyncio.Event, parent: int, period: float = 1.0) -> None:
    """Set `stop` once `parent` is no longer this process's parent (it died: we were
    re-parented)."""
    while os.getppid() == parent:
        await asyncio.sleep(period)
    log.warning("the process that started this node exited; stopping")
    stop.set()


async def hand_over_leadership(node: ClusterNode) -> None:
    """A leader that stops first hands leadership to a caught-up voter, so the cluster takes
    writes again at once instead of after an election timeout (rolling restarts)."""
    if not node.is_leader or not any(m.voter and m.id != node.config.node_id
                                     for m in node.members):
        return
    try:
        moved = await node.transfer_leadership(timeout=node.config.handover_timeout,
                                               await_leader=False)
    except ClusterError as exc:
        log.warning("stopping without handing leadership over: %s", exc)
        return
    log.info("leadership handed over before stopping", extra=moved)


async def run_node(config: NodeConfig) -> None:
    """Serve until a stop signal arrives; then close everything in order."""
    config.validate()
    power_loss.start(config.data_dir, config.data_dir / "store")  # may set the store aside
    store = Store(config.data_dir / "store")
    metrics = ApiMetrics()
    # Serves the store at once; the cluster secret opens the secrets it serves over SDS.
    xds = XdsRuntime.create(store, XdsMetrics(metrics.registry), config.secret)
    node = ClusterNode(config, store)
    xds.follow(node.applied)  # before the loop runs: no applied entry is missed
    app = create_app(node, xds, metrics)
    node.leader_hooks.append(setup_token_hook(node, app[AUTH_STATE]))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = split_host_port(config.api_listen)
    ssl_context = api_tls.server_context(config.api_tls) if config.api_tls else None
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024,
                       ssl_context=ssl_context)
    await site.start()
    share = None
    if config.xds_listen:
        await xds.start(config.xds_listen, config.xds_tls)
        settings = ShareSettings(config.xds_share_factor, config.xds_share_floor,
                                 config.xds_share_period, config.xds_drain_rate)
        xds.shedder = StreamShedder(xds.connections, settings, ShedMetrics(metrics.registry))
        if settings.enabled:
            share = asyncio.get_running_loop().create_task(follow_peer_streams(
                node, xds.shedder,
                api_tls.client_context(config.api_tls) if config.api_tls else None))
    log.info("node started", extra={"api": config.api_listen, "apiTls": bool(ssl_context),
                                    "raft": config.me.raft, "xds": config.xds_listen,
                                    "members": [m.id for m in node.members],
                                    "revision": store.applied_index})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(_stop_when_orphaned(stop, config.parent_pid)) \
        if config.parent_pid else None
    removal = loop.create_task(watch_removal(
        node, config.node_id, config.secret or "",
        api_tls.client_context(config.api_tls) if config.api_tls else None))
    await stop.wait()
    removal.cancel()
    if share is not None:
        share.cancel()
    if watcher is not None:
        watcher.cancel()
    log.info("node stopping")
    await hand_over_leadership(node)
    await xds.stop()
    await runner.cleanup()
    await node.close()
    store.sync()
    store.close()
    power_loss.stop(config.data_dir)
