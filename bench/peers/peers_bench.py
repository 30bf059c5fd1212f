"""The sync worker against a Node-RED 5 flow doing the same job, side by side on this machine.

    .venv/bin/python bench/peers/peers_bench.py --stations 1000 --latency-ms 0 --concurrency 32 --rounds 7

Both contenders are long-lived processes, as in production: the worker (the container's entry point,
signals over Redis pub/sub) and Node-RED (bench/peers/nodered.py: inject -> http request -> mqtt
out, installed from npm on first use). `--with-floor` adds three Python floors, long-lived too
(bench/peers/python_floor.py), timed and metered as Node-RED is. They read the same station list from the same vendor
simulator (its own process) at the same vendor concurrency and publish QoS 1 to the same Mosquitto.

Each round the simulator's clock moves one reading interval (one new reading per station), then
each contender runs one cycle, in an order that alternates from round to round; a few untimed
warm-up cycles each come first (`--warmup`: Node-RED's CPU per cycle keeps falling for the first
few while V8 compiles the flow). A cycle's time is from the start signal (the worker) or the inject
(Node-RED) to the worker's run-history record, respectively to the last of its readings reaching an
independent subscriber; its CPU is the contender's process CPU over that span (psutil, user +
system, children included). Reported per contender: stations/s and CPU seconds per 1,000 stations
(medians), and the medians of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.arrivals import Arrivals
from bench.peers.nodered import NodeRed, ensure_installed, flow
from bench.peers.python_floor import FloorProcess
from bench.rounds import CpuMeter, median, median_ratio, orders, print_result
from bench.worker_driver import DrivenWorker, worker_env
from tests.support.services import MosquittoBroker, RedisServer, free_port
from tests.support.simulator import SimulatorProcess
from tests.worker.conftest import seed_cursors, station_ids

INTERVAL_S = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the simulator's latency per request")
    parser.add_argument("--concurrency", type=int, default=32, help="vendor requests in flight, both contenders")
    parser.add_argument(
        "--nodered-lanes",
        type=int,
        default=None,
        help="Node-RED requests in flight (default: --concurrency; 0: every station's request at once, "
        "what the flow does without a bound)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed cycles each first (Node-RED's JIT needs a few to settle)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per cycle")
    parser.add_argument(
        "--with-floor",
        action="store_true",
        help="three more contenders: the leanest Python doing the flow's job, on one event loop (floor), on one "
        "thread per lane (floor-threads), and on the event loop with cursors moved after the PUBACKs (floor-acked); "
        "bench/peers/python_floor.py",
    )
    args = parser.parse_args()
    floors = ("floor", "floor-threads", "floor-acked") if args.with_floor else ()
    contenders = ("worker", "nodered", *floors)
    ensure_installed()

    stations = station_ids(args.stations)
    lanes = args.concurrency if args.nodered_lanes is None else (args.nodered_lanes or args.stations)
    # The simulator's clock is frozen in the past and moved by hand: every reading is known in advance.
    t0 = (datetime.now(UTC) - timedelta(seconds=INTERVAL_S * (args.warmup + args.rounds + 60))).replace(
        second=0, microsecond=0
    )
    work = Path(tempfile.mkdtemp(prefix="c2c-peers-"))
    (work / "redis").mkdir()
    redis_server = RedisServer(work / "redis").start()
    broker = MosquittoBroker(work / "mosquitto").start()
    sim = SimulatorProcess(
        stations=args.stations, latency_ms=args.latency_ms, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
    ).start(timeout=60)
    arrivals = Arrivals("127.0.0.1", broker.port).start()
    worker = nodered = None
    floor: dict[str, FloorProcess] = {}
    try:
        seed_cursors(redis_server.url, "worker", stations, t0)
        worker = DrivenWorker(
            worker_env(
                env="worker",
                mqtt_url=broker.url,
                redis_url=redis_server.url,
                source_url=sim.url,
                concurrency=args.concurrency,
                status_file=work / "status.json",
                C2C_LOG_LEVEL="ERROR",
            ),
            work / "worker.log",
        ).start()
        nodered = NodeRed(
            work / "node-red",
            flow(
                stations=stations,
                lanes=lanes,
                vendor_url=sim.url,
                api_key="sim-key",
                since=t0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                broker_host="127.0.0.1",
                broker_port=broker.port,
                client_id="nodered-bench",
                topic="c2c/nodered/stations/{station_id}/telemetry",
            ),
            port=free_port(),
        ).start()
        nodered.wait_ready()
        deadline = time.monotonic() + 30
        while broker.connections_from("nodered-bench") < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Node-RED did not connect to the broker: {nodered.log_tail()}")
            time.sleep(0.1)

        def run_worker(expected: int) -> tuple[float, float]:
            run = worker.cycle(timeout=args.timeout)
            if run.record.stations_synced != args.stations or run.record.readings_published != args.stations:
                raise RuntimeError(f"worker cycle incomplete: {run.record.model_dump_json()}")
            arrivals.wait_for("worker", expected, args.timeout)
            return run.wall_s, run.cpu_s

        def run_nodered(expected: int) -> tuple[float, float]:
            meter = CpuMeter(nodered.pid)
            cpu0, start = meter.seconds(), time.perf_counter()
            nodered.trigger()
            last = arrivals.wait_for("nodered", expected, args.timeout)
            return last - start, meter.seconds() - cpu0

        def floor_runner(name: str) -> Callable[[int], tuple[float, float]]:
            def run(expected: int) -> tuple[float, float]:
                meter = CpuMeter(floor[name].pid)
                cpu0, start = meter.seconds(), time.perf_counter()
                floor[name].trigger()
                last = arrivals.wait_for(name, expected, args.timeout)
                floor[name].finished()
                done, cpu = time.perf_counter(), meter.seconds() - cpu0
                if name != "floor-acked":
                    return last - start, cpu
                # Its cycle ends with every cursor written, which may be after the last arrival.
                if (written := cursors.hlen("c2c:floor-acked:cursors")) != args.stations:
                    raise RuntimeError(f"floor-acked wrote {written} cursors, not {args.stations}")
                return max(last, done) - start, cpu

            return run

        cursors = redis.Redis.from_url(redis_server.url)
        for name in floors:
            floor[name] = FloorProcess(
                name=name,
                vendor_url=sim.url,
                broker_port=broker.port,
                stations=args.stations,
                lanes=lanes,
                since=t0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                redis_url=redis_server.url if name == "floor-acked" else None,
                threads=name == "floor-threads",
            )
        runners = {"worker": run_worker, "nodered": run_nodered, **{name: floor_runner(name) for name in floors}}
        wall: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        for warm in range(args.warmup):  # station list, pools, JIT; not timed
            sim.advance_clock(INTERVAL_S)
            for name in contenders:
                runners[name]((warm + 1) * args.stations)
        for r, order in orders(contenders, args.rounds):
            sim.advance_clock(INTERVAL_S)
            for name in order:
                cycle_s, cpu_s = runners[name]((args.warmup + r + 1) * args.stations)
                wall[name].append(cycle_s)
                cpu[name].append(cpu_s)
            print(
                f"round {r + 1}: "
                + ", ".join(f"{n} {args.stations / wall[n][-1]:.0f} st/s {cpu[n][-1]:.2f} cpu-s" for n in contenders),
                file=sys.stderr,
                flush=True,
            )
        for name, body in arrivals.samples.items():
            print(f"{name} first message: {json.dumps(body, sort_keys=True)}", file=sys.stderr)
        per_1000 = {n: [c / args.stations * 1000 for c in cpu[n]] for n in contenders}
        rate = {n: [args.stations / w for w in wall[n]] for n in contenders}
        print_result(
            {
                "bench": "peers",
                "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                "stations": args.stations,
                "latency_ms": args.latency_ms,
                "concurrency": args.concurrency,
                "nodered_lanes": lanes,
                "rounds": args.rounds,
                "warmup_cycles": args.warmup,
                "io_limit_s": round(args.stations * args.latency_ms / 1000 / args.concurrency, 3),
                "median_stations_per_s": {n: round(median(rate[n]), 1) for n in contenders},
                "median_cpu_s_per_1000_stations": {n: round(median(per_1000[n]), 3) for n in contenders},
                "median_cycle_s": {n: round(median(wall[n]), 3) for n in contenders},
                "ratio_stations_per_s_worker_vs_nodered": round(median_ratio(rate["worker"], rate["nodered"]), 3),
                "ratio_cpu_per_station_worker_vs_nodered": round(
                    median_ratio(per_1000["worker"], per_1000["nodered"]), 3
                ),
                **{
                    f"ratio_{what}_{name.replace('-', '_')}_vs_nodered": round(
                        median_ratio(values[name], values["nodered"]), 3
                    )
                    for name in floors
                    for what, values in (("stations_per_s", rate), ("cpu_per_station", per_1000))
                },
                "runs_cycle_s": {n: [round(w, 3) for w in wall[n]] for n in contenders},
                "runs_cpu_s": {n: [round(c, 3) for c in cpu[n]] for n in contenders},
            }
        )
    finally:
        for process in floor.values():
            process.stop()
        for part in (nodered, worker):
            if part is not None:
                part.stop()
        arrivals.stop()
        sim.stop()
        broker.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
