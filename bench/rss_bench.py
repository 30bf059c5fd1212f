"""RSS of the worker process over many short cycles: flat after warm-up, or where it grows.

    .venv/bin/python bench/rss_bench.py --cycles 1000 --warmup 100 --stations 50
    .venv/bin/python bench/rss_bench.py --cycles 300 --tracemalloc     # where the growth is allocated

The worker runs as its own process (the container's entry point) against a real Mosquitto, Redis
and vendor simulator (0 ms latency, one new reading per station per cycle: the simulator's clock
moves one reading interval before each signal). After every cycle the driver reads the worker's
RSS (psutil). Reported: RSS at the start and the end of the measured window (medians of 20 samples
each), the largest deviation from the start, and the least-squares slope in KiB per cycle.

`--tracemalloc` runs the same entry point with tracemalloc (bench/traced_worker.py), takes a
snapshot after the warm-up and one at the end, and prints the allocation sites that grew most
(by traceback). Tracing costs memory, so that mode's RSS is not the figure to record.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil

from bench.rounds import median, print_result
from bench.worker_driver import DrivenWorker, worker_env
from tests.support.services import MosquittoBroker, RedisServer
from tests.support.simulator import SimulatorProcess
from tests.worker.conftest import seed_cursors, station_ids

ENV = "rss"
WINDOW = 20  # samples whose median stands for "start" and "end"


def slope_kib_per_cycle(samples: list[int]) -> float:
    n = len(samples)
    mean_x, mean_y = (n - 1) / 2, sum(samples) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(samples))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den / 1024


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} not written after {timeout}s")
        time.sleep(0.05)


def snapshot(worker: DrivenWorker, directory: Path, n: int) -> tracemalloc.Snapshot:
    os.kill(worker.pid, signal.SIGUSR1)
    wait_for(directory / f"snapshot-{n}.done")
    return tracemalloc.Snapshot.load(str(directory / f"snapshot-{n}.bin"))


def growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int) -> list[dict]:
    skip = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    stats = after.filter_traces(skip).compare_to(before.filter_traces(skip), "traceback")
    out = []
    for stat in stats[:top]:
        frames = [f"{f.filename.replace(str(ROOT) + '/', '')}:{f.lineno}" for f in stat.traceback]
        out.append({"size_diff_kib": round(stat.size_diff / 1024, 1), "count_diff": stat.count_diff, "at": frames})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000, help="measured cycles after the warm-up")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--top", type=int, default=12, help="allocation sites to print with --tracemalloc")
    args = parser.parse_args()

    interval_s = 10
    total = args.warmup + args.cycles
    # The simulator's clock starts far enough back that `total` intervals later it is still in the past.
    t0 = (datetime.now(UTC) - timedelta(seconds=interval_s * (total + 60))).replace(microsecond=0)
    work = Path(tempfile.mkdtemp(prefix="c2c-rss-"))
    (work / "redis").mkdir()
    (work / "snapshots").mkdir()
    redis_server = RedisServer(work / "redis").start()
    broker = MosquittoBroker(work / "mosquitto").start()
    sim = SimulatorProcess(
        stations=args.stations,
        latency_ms=0,
        reading_interval_s=interval_s,
        clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0",
    ).start(timeout=60)
    worker = None
    try:
        seed_cursors(redis_server.url, ENV, station_ids(args.stations), t0)
        env = worker_env(
            env=ENV,
            mqtt_url=broker.url,
            redis_url=redis_server.url,
            source_url=sim.url,
            concurrency=args.concurrency,
            status_file=work / "status.json",
            C2C_LOG_LEVEL="ERROR",
        )
        command: tuple[str, ...] = ("-m", "functions.sync_worker", "run")
        if args.tracemalloc:
            env["C2C_BENCH_SNAPSHOT_DIR"] = str(work / "snapshots")
            command = (str(ROOT / "bench" / "traced_worker.py"),)
        worker = DrivenWorker(env, work / "worker.log", command=command).start()
        proc = psutil.Process(worker.pid)
        rss: list[int] = []
        cycle_s: list[float] = []
        before = None
        started = time.monotonic()
        for n in range(total):
            if n == args.warmup and args.tracemalloc:
                before = snapshot(worker, work / "snapshots", 0)
            sim.advance_clock(interval_s)
            run = worker.cycle(timeout=60)
            if run.record.stations_synced != args.stations or run.record.readings_published != args.stations:
                raise RuntimeError(f"cycle {n}: {run.record.model_dump_json()}")
            if n >= args.warmup:
                rss.append(proc.memory_info().rss)
                cycle_s.append(run.wall_s)
        start_rss, end_rss = median(rss[:WINDOW]), median(rss[-WINDOW:])
        result: dict = {
            "bench": "rss",
            "tracemalloc": args.tracemalloc,
            "stations": args.stations,
            "concurrency": args.concurrency,
            "warmup_cycles": args.warmup,
            "cycles": args.cycles,
            "median_cycle_s": round(median(cycle_s), 4),
            "elapsed_s": round(time.monotonic() - started, 1),
            "rss_start_mib": round(start_rss / 2**20, 2),
            "rss_end_mib": round(end_rss / 2**20, 2),
            "rss_change_pct": round((end_rss - start_rss) / start_rss * 100, 2),
            "rss_max_deviation_pct": round(max(abs(r - start_rss) for r in rss) / start_rss * 100, 2),
            "slope_kib_per_cycle": round(slope_kib_per_cycle(rss), 3),
            "rss_every_100_cycles_mib": [round(r / 2**20, 2) for r in rss[::100]],
        }
        result["flat_within_5pct"] = result["rss_max_deviation_pct"] <= 5.0
        if args.tracemalloc and before is not None:
            after = snapshot(worker, work / "snapshots", 1)
            result["top_growth"] = growth(before, after, args.top)
        (work / "result.json").write_text(json.dumps(result, indent=2))
        print_result(result)
    finally:
        if worker is not None:
            worker.stop()
        sim.stop()
        broker.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
