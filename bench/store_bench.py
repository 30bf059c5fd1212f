"""CPU of the worker's Redis writes per station, this tree against another (a "before" tree).

    .venv/bin/python bench/store_bench.py compare --before /path/to/before-worktree --rounds 5
    .venv/bin/python bench/store_bench.py cycles --before /path/to/before-worktree --rounds 5

`cycles` runs `cpu_bench.py run` (a whole timed cycle) for each tree with hiredis and without it
(hidden from redis-py in that process, which then packs and parses in Python), in this venv,
alternating the four contenders' order; ratios are against the before tree without hiredis.

What a station lane does in Redis after its page's PUBACKs, without the vendor, the broker or the
mapping around it (`cpu_bench` measures the whole cycle): `--lanes` threads write `--stations`
cursors, each with `--digests` late-values digests (a vendor with a lookback remembers one per
reading sent; the plain cycle has none), and with `--budgets` each first takes a vendor call from
that many budgets (the account's, then the station's); with `--reads` it first reads that many
digests in one MGET (a vendor with a lookback checks a page's late values). `--work-us` spins that
much CPU per station before its write (the fetch, mapping and publish of a real lane): lanes then
finish apart, the groups are small as in a cycle (about 3 writes), not all 32 lanes at once. The
worker's CPU (this process, every thread) and Redis's CPU of the timed pass are measured after a
warm-up pass (pool, scripts). Each contender is its own process, run by its own tree's interpreter
(`<tree>/.venv`, so each with the packages its tree locks: hiredis or not), importing the store
from its tree (`--root`), with its own redis-server; the rounds alternate their order; the figures
are medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    import psutil

    store = importlib.import_module("functions.sync_worker.store")
    StateKeys = importlib.import_module("functions.common.state").StateKeys
    RedisServer = importlib.import_module("c2c_sync.demo.services").RedisServer

    with tempfile.TemporaryDirectory(prefix="c2c-store-bench-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            assert server.proc is not None
            redis_proc = psutil.Process(server.proc.pid)
            client = store.connect_redis(server.url)
            keys = StateKeys("c2c:bench")
            lease = store.Lease(client, keys, "bench", ttl_s=60)
            assert lease.try_acquire()
            state = store.StateStore(client, keys, lease)
            grouped_digests = "digests" in state.advance_cursor.__code__.co_varnames
            ids = [f"site-{i:05d}" for i in range(args.stations)]

            def lane_write(sid: str, at: datetime) -> None:
                spin_until = time.thread_time() + args.work_us / 1e6
                while time.thread_time() < spin_until:
                    pass
                if args.budgets:
                    budgets = [("@vendor:bench", 10**9, 3600.0), (f"@station:bench:{sid}", 10**6, 3600.0)]
                    assert state.take_call(budgets[: args.budgets])
                digests = [(f"{sid}:{at:%H%M}:{j}", "0123456789abcdef") for j in range(args.digests)]
                if args.reads:
                    state.seen_digests([f"{sid}:{j}" for j in range(args.reads)])
                if grouped_digests:
                    state.advance_cursor(sid, at, digests=digests, digest_ttl_s=7200)
                else:  # the tree before: the cycle remembered the digests in a pipeline of its own
                    if digests:
                        state.remember_digests(digests, 7200)
                    state.advance_cursor(sid, at)

            def cycle(at: datetime) -> None:
                with ThreadPoolExecutor(args.lanes) as pool:
                    list(pool.map(lambda sid: lane_write(sid, at), ids))

            cycle(T0)  # warm-up: connections, scripts
            redis0, cpu0, wall0 = redis_proc.cpu_times(), time.process_time(), time.perf_counter()
            cycle(T0 + timedelta(minutes=1))
            cpu, wall, redis1 = time.process_time() - cpu0, time.perf_counter() - wall0, redis_proc.cpu_times()
            moved = sum(1 for v in client.hvals(keys.cursors) if v.startswith("2024-06-01T12:01"))
            if moved != args.stations:
                raise RuntimeError(f"{moved} of {args.stations} cursors moved")
            lease.release()
            redis_cpu = (redis1.user + redis1.system) - (redis0.user + redis0.system)
            return {
                "root": str(root),
                "cpu_ms_per_station": round(cpu * 1000 / args.stations, 4),
                "redis_cpu_ms_per_station": round(redis_cpu * 1000 / args.stations, 4),
                "wall_s": round(wall, 3),
                "loadavg": os.getloadavg()[0],
            }
        finally:
            server.stop()


def _contender(tree: str, args: list[str]) -> dict[str, Any]:
    """One `run` in its own process, under the tree's own venv when it has one."""
    from bench.rounds import contender

    python = Path(tree) / ".venv" / "bin" / "python"
    return contender(Path(__file__), args, python=str(python) if python.exists() else None, cwd=tree)


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench.rounds import median, median_ratio, tree_rounds

    shape = [
        f"--stations={args.stations}",
        f"--lanes={args.lanes}",
        f"--digests={args.digests}",
        f"--budgets={args.budgets}",
        f"--reads={args.reads}",
        f"--work-us={args.work_us}",
    ]
    runs, load = tree_rounds(
        args.before, HERE, args.rounds, lambda tree: _contender(tree, ["run", f"--root={tree}", *shape])
    )
    figures: dict[str, Any] = {}
    for field in ("cpu_ms_per_station", "redis_cpu_ms_per_station", "wall_s"):
        after, before = [r[field] for r in runs["after"]], [r[field] for r in runs["before"]]
        figures[field] = {
            "before_median": round(median(before), 4),
            "after_median": round(median(after), 4),
            # Redis's CPU of a short run can read 0 (its clock ticks are 10 ms): no ratio then.
            "ratio_median": round(median_ratio(after, before), 3) if all(before) else None,
            # With --work-us the ratio is diluted by the spun CPU; the difference is what was saved.
            "saved_median": round(median([b - a for a, b in zip(after, before, strict=True)]), 4),
            "before": before,
            "after": after,
        }
    return {
        "stations": args.stations,
        "lanes": args.lanes,
        "digests": args.digests,
        "budgets": args.budgets,
        "reads": args.reads,
        "work_us": args.work_us,
        "rounds": args.rounds,
        **figures,
        "loadavg_min_max": [min(load), max(load)],
    }


#: Run a script with hiredis hidden from redis-py (it falls back to its Python packer and parser).
_NO_HIREDIS = (
    "import runpy, sys; sys.modules['hiredis'] = None; sys.argv = sys.argv[1:];"
    " runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _cycles(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench.rounds import median, median_ratio, orders

    trees = {"before": str(Path(args.before).resolve()), "after": str(HERE)}
    names = [f"{tree}{suffix}" for tree in trees for suffix in ("", "+hiredis")]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    load = [os.getloadavg()[0]]
    cpu_bench = str(HERE / "bench" / "cpu_bench.py")
    for _, order in orders(names, args.rounds):
        for name in order:
            tree = trees[name.removesuffix("+hiredis")]
            run = [cpu_bench, "run", f"--root={tree}", f"--stations={args.stations}"]
            cmd = [sys.executable, *run] if name.endswith("+hiredis") else [sys.executable, "-c", _NO_HIREDIS, *run]
            proc = subprocess.run(
                cmd, cwd=HERE, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(HERE)}
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        load.append(os.getloadavg()[0])
    base = [r["cpu_ms_per_station"] for r in runs["before"]]
    return {
        "stations": args.stations,
        "rounds": args.rounds,
        "cpu_ms_per_station_median": {n: median([r["cpu_ms_per_station"] for r in runs[n]]) for n in names},
        "cpu_ratio_vs_before_median": {
            n: round(median_ratio([r["cpu_ms_per_station"] for r in runs[n]], base), 3) for n in names[1:]
        },
        "cycle_s_median": {n: median([r["cycle_s"] for r in runs[n]]) for n in names},
        "loadavg_min_max": [min(load), max(load)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    cycles = sub.add_parser("cycles")
    cycles.add_argument("--before", required=True)
    cycles.add_argument("--rounds", type=int, default=5)
    cycles.add_argument("--stations", type=int, default=1000)
    for name in ("run", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--stations", type=int, default=2000)
        p.add_argument("--lanes", type=int, default=32)
        p.add_argument("--digests", type=int, default=0, help="digests remembered per station write")
        p.add_argument("--budgets", type=int, default=0, choices=(0, 1, 2), help="budgets each call takes from")
        p.add_argument("--reads", type=int, default=0, help="digests read (one MGET) per station before its write")
        p.add_argument("--work-us", type=int, default=0, help="CPU spun per station before its write")
        if name == "run":
            p.add_argument("--root", default=str(HERE))
        else:
            p.add_argument("--before", required=True)
            p.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    from bench.rounds import print_result

    print_result(_run(args) if args.cmd == "run" else _compare(args) if args.cmd == "compare" else _cycles(args))
    return 0


if __name__ == "__main__":
    sys.path.append(str(HERE))  # bench.rounds; a contender's own tree goes first (`_run`)
    raise SystemExit(main())
