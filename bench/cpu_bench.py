"""CPU seconds per 1,000 stations of one worker cycle, this tree against another (a "before" tree).

    .venv/bin/python bench/cpu_bench.py compare --before /path/to/before-worktree --rounds 5
    .venv/bin/python bench/cpu_bench.py profile --stations 2000   # where the CPU goes (cProfile)
    .venv/bin/python bench/cpu_bench.py run --source memory --stations 10000   # no vendor call

Each contender is its own process (`run`), importing the worker from its own tree (`--root`), with
its own Redis, Mosquitto and vendor simulator (0 ms latency, separate processes, so their CPU is not
counted). It lists the stations, runs one warm-up cycle (pools, threads, one reading per station),
moves the simulator's clock one reading interval, and measures the process CPU time (user + system,
every thread) of the second cycle: fetch, map, publish, PUBACK and cursor write for every station,
and what each kind of thread spent (the station lanes, paho's network thread, the sender, the
settler; from /proc). With `--source memory` the readings come from memory instead of a vendor.
The rounds alternate the order of the two trees; the figure is the median of per-round ratios.

`profile` runs the same timed cycle in this process with a cProfile per station thread, merged.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def _run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    wb = importlib.import_module("bench.worker_bench")
    load_settings = importlib.import_module("functions.sync_worker.settings").load_settings
    build_source = importlib.import_module("functions.sync_worker.wiring").build_source
    SimulatorProcess = importlib.import_module("tests.support.simulator").SimulatorProcess

    svc = wb.Services()
    try:
        t0 = wb.t0_for_sim()
        list_s = list_cpu = 0.0
        if args.source == "memory":
            # Readings from memory, none from a vendor: what the cycle, the publish path and the
            # cursor writes cost alone. Warm-up and timed cycle each get stations of their own,
            # one new reading each.
            source = wb.MemorySource(2 * args.stations, 1, t0)
            wb.seed(svc.redis.url, [s.station_id for s in source.stations], t0 - timedelta(seconds=1))
            warm, stations = source.stations[args.stations :], source.stations[: args.stations]
        else:
            svc.sim = SimulatorProcess(
                stations=args.stations, latency_ms=args.latency_ms, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
            ).start(timeout=60)
            ids = [f"site-{i:05d}" for i in range(1, args.stations + 1)]
            wb.seed(svc.redis.url, ids, t0 - timedelta(seconds=wb.INTERVAL_S))
            settings = load_settings(
                env="bench", source_url=svc.sim.url, source_api_key="sim-key", concurrency=args.concurrency
            )
            source = build_source(settings)
            cpu0, t_list = time.process_time(), time.perf_counter()
            stations = warm = source.list_stations()
            list_s, list_cpu = time.perf_counter() - t_list, time.process_time() - cpu0
        _, runner, uplink, lease = wb.make_runner(
            svc.broker.url, svc.redis.url, svc.sim.url if svc.sim else "", source, concurrency=args.concurrency
        )
        runner.run(warm)
        if svc.sim is not None:
            svc.sim.advance_clock(wb.INTERVAL_S)
        profiles: list[Any] = []
        if args.profile:
            import cProfile

            inner = runner._run_unit

            def profiled(*a: Any, **kw: Any) -> Any:
                prof = cProfile.Profile(time.thread_time)
                profiles.append(prof)
                return prof.runcall(inner, *a, **kw)

            runner._run_unit = profiled
        threads0 = _thread_cpu()
        cpu0 = time.process_time()
        rec = runner.run(stations).record
        cpu = time.process_time() - cpu0
        by_thread = _spent_by_kind(threads0)
        uplink.close()
        runner.close()
        lease.release()
        source.close()
        if rec.stations_synced != args.stations or rec.readings_published != args.stations:
            raise RuntimeError(f"synced {rec.stations_synced}, published {rec.readings_published} of {args.stations}")
        if profiles:
            import pstats

            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                stats.add(prof)
            stats.sort_stats(args.sort).print_stats(args.top)
            if args.dump:
                stats.dump_stats(args.dump)
        return {
            "root": str(root),
            "stations": args.stations,
            "cycle_s": round(rec.duration_ms / 1000, 3),
            "cpu_s": round(cpu, 3),
            "cpu_ms_per_station": round(cpu * 1000 / args.stations, 4),
            "cpu_ms_per_station_by_thread": {
                name: round(seconds * 1000 / args.stations, 4) for name, seconds in by_thread.items()
            },
            "list_s": round(list_s, 3),
            "list_cpu_s": round(list_cpu, 3),
            "loadavg": os.getloadavg()[0],
        }
    finally:
        svc.stop()


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """Each live thread's name and CPU seconds (user + system, from /proc), by native id."""
    tick = os.sysconf("SC_CLK_TCK")
    now: dict[int, tuple[str, float]] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        now[thread.native_id or 0] = (thread.name, (int(fields[11]) + int(fields[12])) / tick)
    return now


def _spent_by_kind(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each kind of thread spent since `before` (a `_thread_cpu()`), summed by name
    without its number ("station_7" -> "station"), largest first."""
    spent: dict[str, float] = {}
    for tid, (name, seconds) in _thread_cpu().items():
        kind = re.sub(r"[-_]?\d+$", "", name)
        spent[kind] = spent.get(kind, 0.0) + seconds - before.get(tid, (name, 0.0))[1]
    return dict(sorted(spent.items(), key=lambda item: -item[1]))


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench.rounds import contender, median, median_ratio, tree_rounds

    shape = [
        f"--stations={args.stations}",
        f"--latency-ms={args.latency_ms}",
        f"--concurrency={args.concurrency}",
        f"--source={args.source}",
    ]
    runs, load = tree_rounds(
        args.before, HERE, args.rounds, lambda tree: contender(Path(__file__), ["run", f"--root={tree}", *shape])
    )
    cpu = {name: [r["cpu_ms_per_station"] for r in rs] for name, rs in runs.items()}
    cyc = {name: [r["cycle_s"] for r in rs] for name, rs in runs.items()}
    return {
        "bench": "cpu",
        "stations": args.stations,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "cpu_ms_per_station": cpu,
        "cycle_s": cyc,
        "median_cpu_ms_per_station": {name: median(v) for name, v in cpu.items()},
        "ratio_cpu_after_vs_before": round(median_ratio(cpu["after"], cpu["before"]), 3),
        "ratio_cycle_after_vs_before": round(median_ratio(cyc["after"], cyc["before"]), 3),
        "loadavg": load,
    }


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("run", "profile", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--stations", type=int, default=2000)
        p.add_argument("--latency-ms", type=float, default=0.0)
        p.add_argument("--concurrency", type=int, default=32)
        p.add_argument(
            "--source",
            choices=("simulator", "memory"),
            default="simulator",
            help="memory: readings from memory, no vendor call (the cycle, publish path and cursors alone)",
        )
    sub.choices["run"].add_argument("--root", default=str(HERE))
    sub.choices["profile"].add_argument("--root", default=str(HERE))
    sub.choices["profile"].add_argument("--sort", default="tottime")
    sub.choices["profile"].add_argument("--top", type=int, default=45)
    sub.choices["profile"].add_argument("--dump", help="write the merged pstats here too")
    sub.choices["compare"].add_argument("--before", required=True)
    sub.choices["compare"].add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.cmd == "compare":
        result = _compare(args)
    else:
        args.profile = args.cmd == "profile"
        result = _run(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
