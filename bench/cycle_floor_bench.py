"""How close one worker cycle comes to what the vendor simulator allows on this machine.

    C2C_LOG_LEVEL=ERROR .venv/bin/python bench/cycle_floor_bench.py --stations 10000 --latency-ms 50 --rounds 3

The cycle goal is stated against the I/O limit (stations x latency / concurrency), which no client
reaches here: the simulator is a threaded Python server on the same two cores, and its own time
per request adds to every request's latency. So each round runs two contenders, each in its own
process with its own simulator (and, for the worker, its own Redis and Mosquitto), in an order that
alternates from round to round:

- `worker`: `bench/worker_bench.py cycle` (a warm-up cycle, the simulator's clock one interval on,
  then the timed cycle: fetch, map, publish QoS 1, PUBACK, cursor write for every station);
- `floor`: a bare client with the same shape: `concurrency` threads, each with one kept-alive
  `http.client` connection, asking for every station's readings in the same window and reading
  each answer whole, nothing else (no JSON, no mapping, no MQTT, no Redis); also a warm-up pass
  and a timed pass.

Reported: each contender's cycle time and ratio to the I/O limit per round, and the median of the
per-round ratios worker / floor (1.0: the worker costs the cycle nothing beyond the vendor's answers).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from bench.rounds import contender, median, median_ratio, orders
from bench.worker_bench import INTERVAL_S, t0_for_sim
from tests.support.simulator import SimulatorProcess

API_KEY = "sim-key"


def _pass(base_url: str, paths: list[str], concurrency: int) -> float:
    """Every path asked for once over `concurrency` kept-alive connections; the seconds it took."""
    host = urlsplit(base_url)
    todo = iter(paths)
    lock = threading.Lock()
    failures: list[str] = []

    def lane() -> None:
        conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)
        while True:
            with lock:
                path = next(todo, None)
            if path is None:
                break
            conn.request("GET", path, headers={"X-Api-Key": API_KEY})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(f"{path}: {answer.status}")
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=lane) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[:3]}")
    return took


def floor_run(args: argparse.Namespace) -> dict:
    """The bare client, one warm-up pass and one timed pass against a simulator of its own."""
    t0 = t0_for_sim()
    sim = SimulatorProcess(
        stations=args.stations, latency_ms=args.latency_ms, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
    ).start(timeout=60)
    try:
        ids = [f"site-{i:05d}" for i in range(1, args.stations + 1)]

        def paths(since: str, until: str) -> list[str]:
            query = urlencode({"since": since, "until": until, "limit": 500})
            return [f"/v1/sites/{sid}/telemetry?{query}" for sid in ids]

        fmt = "%Y-%m-%dT%H:%M:%SZ"
        _pass(sim.url, paths((t0 - timedelta(seconds=INTERVAL_S)).strftime(fmt), t0.strftime(fmt)), args.concurrency)
        sim.advance_clock(INTERVAL_S)
        later = t0 + timedelta(seconds=INTERVAL_S)
        took = _pass(sim.url, paths(t0.strftime(fmt), later.strftime(fmt)), args.concurrency)
    finally:
        sim.stop()
    return {"contender": "floor", "cycle_s": round(took, 3)}


def compare(args: argparse.Namespace) -> dict:
    limit_s = args.stations * args.latency_ms / 1000 / args.concurrency
    shape = [f"--stations={args.stations}", f"--latency-ms={args.latency_ms}", f"--concurrency={args.concurrency}"]
    runs: dict[str, list[float]] = {"worker": [], "floor": []}
    load = [os.getloadavg()[0]]
    for _, order in orders(list(runs), args.rounds):
        for name in order:
            if name == "worker":
                result = contender(HERE.parent / "worker_bench.py", ["cycle", *shape], timeout=1800)
            else:
                result = contender(HERE, ["floor-run", *shape], timeout=1800)
            runs[name].append(float(result["cycle_s"]))
    load.append(os.getloadavg()[0])
    return {
        "bench": "cycle-floor",
        "stations": args.stations,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "io_limit_s": round(limit_s, 3),
        "cycle_s": runs,
        "ratio_to_io_limit": {name: [round(v / limit_s, 3) for v in values] for name, values in runs.items()},
        "median_ratio_to_io_limit": {name: round(median(values) / limit_s, 3) for name, values in runs.items()},
        "ratio_worker_vs_floor": round(median_ratio(runs["worker"], runs["floor"]), 3),
        "loadavg": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    for p in (parser, sub.add_parser("floor-run")):
        p.add_argument("--stations", type=int, default=10_000)
        p.add_argument("--latency-ms", type=float, default=50.0)
        p.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = floor_run(args) if args.cmd == "floor-run" else compare(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
