"""CPU of one `PublishBatch` round trip per page, this tree against another (a "before" tree).

    .venv/bin/python bench/publish_batch_bench.py compare --before /path/to/before-worktree --rounds 7

What a station thread and paho's network thread do per page around the PUBACKs: a batch created,
one publish added, the batch handed to a resolver thread that acks it (after yielding, so the
waiter is already blocked, as it is for a real PUBACK), the waiter woken. Process CPU of both
threads per round trip; each tree its own process, order alternating, median of per-round ratios.
"""

from __future__ import annotations

import argparse
import importlib
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(args.root).resolve()))
    batch_cls = importlib.import_module("functions.sync_worker.uplink.batch").PublishBatch
    handed: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def resolver() -> None:
        while (batch := handed.get()) is not None:
            time.sleep(0)
            batch.acked()

    thread = threading.Thread(target=resolver)
    thread.start()
    cpu0 = time.process_time()
    for _ in range(args.pages):
        batch = batch_cls()
        batch.added(1)
        handed.put(batch)
        batch.wait(5.0)
    cpu = time.process_time() - cpu0
    handed.put(None)
    thread.join()
    return {"root": args.root, "us_per_page": round(cpu * 1e6 / args.pages, 2)}


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench.rounds import contender, median, median_ratio, orders

    trees = {"before": str(Path(args.before).resolve()), "after": str(HERE)}
    runs: dict[str, list[float]] = {name: [] for name in trees}
    for _, order in orders(list(trees), args.rounds):
        for name in order:
            run = contender(Path(__file__), ["run", f"--root={trees[name]}", f"--pages={args.pages}"])
            runs[name].append(run["us_per_page"])
    return {
        "bench": "publish_batch",
        "us_per_page": runs,
        "median_us_per_page": {name: median(v) for name, v in runs.items()},
        "ratio_after_vs_before": round(median_ratio(runs["after"], runs["before"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="one tree in this process (started by `compare`)")
    run.add_argument("--root", default=str(HERE))
    compare = sub.add_parser("compare")
    compare.add_argument("--before", required=True)
    compare.add_argument("--rounds", type=int, default=7)
    for p in (run, compare):
        p.add_argument("--pages", type=int, default=30_000)
    args = parser.parse_args()
    print(json.dumps(_compare(args) if args.cmd == "compare" else _run(args)), flush=True)


if __name__ == "__main__":
    main()
