"""PNG plots for docs/benchmarks.md from the JSON that store_size.py and delta_cost.py write.

- ``store_size.png``: write -> Envoy CDS ACK (p50, p99) and the write answer (p50) against
  the resources in the store, next to the import, cold start and catch-up times;
- ``delta_cost.png``: a node's CPU per change (cluster, route config, listener) against the
  clusters in the view and in the store (log-log), with the issue's "flat within 2x" band.

    .venv/bin/python bench/store_size.py --scale 0.1 --json-out docs/plots/data/store-0.1.json
    .venv/bin/python bench/delta_cost.py --json-out docs/plots/data/delta.json
    .venv/bin/python bench/plots.py --store docs/plots/data/store-*.json \\
        --delta docs/plots/data/delta.json --out docs/plots
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from _stats import percentile


def store_total(run: dict[str, Any]) -> int:
    return sum(run["shape"].values())


def plot_store(runs: list[dict[str, Any]], out: Path) -> Path:
    runs = sorted(runs, key=store_total)
    x = [store_total(r) for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, key, q, style in (
        ("write -> CDS ACK p99", "ack_ms", 99, "o-"),
        ("write -> CDS ACK p50", "ack_ms", 50, "s-"),
        ("write answer p50", "write_ms", 50, "^--"),
    ):
        left.plot(x, [percentile(r["changes"][key], q) for r in runs], style, label=label)
    left.axhline(20, color="red", lw=0.8, ls=":", label="target p99 20 ms")
    left.set_xscale("log")
    left.set_xlabel("resources in the store")
    left.set_ylabel("ms")
    left.set_title("one cluster change -> real Envoy (SotW) on a follower")
    left.legend(fontsize=8)
    for label, get, style in (
        ("import via /apply", lambda r: r["import"]["seconds"], "o-"),
        ("cold start -> first CDS", lambda r: r["cold_start"]["xds_s"], "s-"),
        ("new node caught up", lambda r: r["catch_up"]["caught_up_s"], "^-"),
    ):
        right.plot(x, [get(r) for r in runs], style, label=label)
    right.axhline(10, color="red", lw=0.8, ls=":", label="import target 10 s")
    right.axhline(3, color="orange", lw=0.8, ls=":", label="cold start target 3 s")
    right.set_xscale("log")
    right.set_xlabel("resources in the store")
    right.set_ylabel("seconds")
    right.set_title("import, cold start, catch-up")
    right.legend(fontsize=8)
    loads = ", ".join(f"{r['changes']['load']:.1f}" for r in runs)
    fig.suptitle(f"store size (3 nodes, {runs[0]['cores']} cores, load averages {loads})",
                 fontsize=10)
    fig.tight_layout()
    path = out / "store_size.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_delta(results: list[dict[str, Any]], out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    titles = {"view": "N clusters in the dataplane's view",
              "store": "100 in the view, N more in the store"}
    node_steps = ("apply_entry", "apply_changes", "delta_push")
    for ax, series in zip(axes, ("view", "store"), strict=True):
        for change, color in (("cluster", "C0"), ("route", "C1"), ("listener", "C2")):
            rs = sorted((r for r in results if r["series"] == series
                         and r.get("change", "cluster") == change), key=lambda r: r["size"])
            if not rs:
                continue
            x = [r["size"] for r in rs]
            node = [sum(r["cpu_us"][s] for s in node_steps) for r in rs]
            ax.plot(x, node, "o-", color=color, label=f"{change}: node with Delta")
            ax.plot(x, [r["cpu_us"]["sotw_push"] for r in rs], "d--", color=color, alpha=0.6,
                    label=f"{change}: SotW push+ACK")
            if change == "cluster":
                ax.fill_between(x, node[0], node[0] * 2, color="green", alpha=0.12,
                                label=f"within 2x of N={x[0]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N")
        ax.set_title(titles[series], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("CPU µs per change (one node)")
    axes[0].legend(fontsize=7)
    fig.suptitle("CPU one change costs a node (in-process, real LMDB; node with Delta = "
                 "apply + cache + Delta push and ACK)", fontsize=10)
    fig.tight_layout()
    path = out / "delta_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--store", nargs="*", default=[], help="store_size.py --json-out files")
    ap.add_argument("--delta", default="", help="a delta_cost.py --json-out file")
    ap.add_argument("--out", default="docs/plots", help="directory for the PNGs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.store:
        runs = [json.loads(Path(p).read_text()) for p in args.store]
        print(f"wrote {plot_store(runs, out)}")
    if args.delta:
        print(f"wrote {plot_delta(json.loads(Path(args.delta).read_text()), out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
