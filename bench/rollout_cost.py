"""What a canary rollout costs a node: the overlay rebuilt per applied entry while a rollout
watches, and the Envoys' stats stream (per message).

In-process, real LMDB store filled as in bench/delta_cost.py. (1) With N clusters in the
dataplane's view: one applied cluster change, then ``CanaryRouter.after_apply`` with one
rollout active and one canary stream on it (the overlay is rebuilt and the canary's view
computed again), against the same change without a rollout. (2) ``request_counts`` +
``EnvoyStats.record`` on a stats message of F metric families (an Envoy sends its used
counters and gauges each flush; F grows with its listeners and clusters).

    .venv/bin/python bench/rollout_cost.py
    .venv/bin/python bench/rollout_cost.py --sizes 100 1000 --changes 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.delta_cost import TEAM, Writer, cluster, dataplane_resources
from raftplane.api import bodies
from raftplane.storage.store import Store
from raftplane.wire import envoy_stats_pb2
from raftplane.wire import log_entry_pb2 as wire
from raftplane.xds.cache import XdsCache
from raftplane.xds.canary import ROLLOUTS, CanaryRouter
from raftplane.xds.envoy_stats import EnvoyStats, request_counts
from raftplane.xds.types import CLUSTER

DP = "dp"


def _rollout_entry(writer: Writer, plan: list[list[object]]) -> tuple[int, bytes]:
    record = {"id": "r1", "team": TEAM, "dataplane": f"{TEAM}/{DP}", "state": "canary",
              "canaries": ["canary"], "plan": plan}
    entry = wire.LogEntry(format_version=1, proposed_at_ms=int(time.time() * 1000))
    entry.commands.add().put.CopyFrom(wire.Put(kind=ROLLOUTS, name=f"{TEAM}/r1", team=TEAM,
                                               value_json=json.dumps(record).encode()))
    writer.index += 1
    return writer.index, entry.SerializeToString()


def overlay_cost(size: int, changes: int) -> tuple[float, float]:
    """(µs per applied change without a rollout, with one rollout and a canary stream)."""
    out = []
    for with_rollout in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store")
            writer = Writer(store)
            writer.put_all([("teams", {"name": TEAM})])
            writer.put_all(list(dataplane_resources(DP, size, 20000)))
            cache = XdsCache(store)
            cache.load_all()
            router = CanaryRouter(cache, store)
            seen: list[frozenset[str]] = []
            source = router.for_envoy(f"{TEAM}/{DP}", "canary", lambda: None)
            source.watch(f"{TEAM}/{DP}", seen.append)
            if with_rollout:
                changed = bodies.validate_resource("clusters", cluster(f"{DP}-c0", 1))
                index, data = _rollout_entry(writer, [["clusters", f"{DP}-c0", changed]])
                keys = writer.apply(index, data)
                cache.apply_changes(index, keys)
                router.after_apply(index, keys)
            spent = []
            for i in range(changes):
                index, data = writer.entry([("clusters", cluster(f"{DP}-c{1 + i % (size - 1)}",
                                                                 2000 + i))])
                keys = writer.apply(index, data)
                start = time.process_time()
                cache.apply_changes(index, keys)
                router.after_apply(index, keys)
                source.view(f"{TEAM}/{DP}").resources.get(CLUSTER)
                spent.append(time.process_time() - start)
            out.append(statistics.median(spent) * 1e6)
            store.close()
    return out[0], out[1]


def stats_cost(families: int, messages: int = 200) -> float:
    """µs to read one stats message of `families` metric families."""
    message = envoy_stats_pb2.StreamMetricsMessage()
    for i in range(families):
        name = (f"http.l{i}.downstream_rq_completed" if i % 50 == 0
                else f"cluster.c{i}.upstream_cx_total")
        message.envoy_metrics.add(name=name).metric.add().counter.value = i
    raw = message.SerializeToString()
    stats = EnvoyStats()
    start = time.process_time()
    for _ in range(messages):
        parsed = envoy_stats_pb2.StreamMetricsMessage.FromString(raw)
        stats.record("e", "t/dp", *request_counts(parsed))
    return (time.process_time() - start) / messages * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--families", type=int, nargs="+", default=[300, 3000, 30000])
    args = parser.parse_args(argv)
    print("| clusters in view | change, no rollout | change, rollout active | ratio |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        plain, rollout = overlay_cost(size, args.changes)
        print(f"| {size:,} | {plain:,.0f} µs | {rollout:,.0f} µs | {rollout / plain:.1f}x |",
              flush=True)
    print()
    print("| metric families per message | read + record |")
    print("|---:|---:|")
    for families in args.families:
        print(f"| {families:,} | {stats_cost(families):,.0f} µs |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
