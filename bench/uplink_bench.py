"""CPU per published message of the worker's publish path, by thread, this tree against another.

    C2C_LOG_LEVEL=ERROR .venv/bin/python bench/uplink_bench.py compare --before /path/to/before-worktree --rounds 6
    C2C_MQTT_PROTOCOL=5 C2C_LOG_LEVEL=ERROR .venv/bin/python bench/uplink_bench.py compare --before ... --rounds 4

Each contender is its own process (`run`) importing the worker from its own tree (`--root`), with
its own Redis and Mosquitto: the cycle of `worker_bench.py publish` (an in-memory source with no
latency, `--readings` over 100 stations, 32 lanes, QoS 1, cursor writes) timed once, and the CPU
time of each of the process's threads read from /proc before and after: the station lanes, the
connection's sender thread and paho's network thread (which reads the PUBACKs). The rate is
reported too, but on a shared 2-core machine it follows the other processes' load; the CPU per
message is the steadier figure. Rounds alternate the order of the two trees; the figure is the
median of per-round ratios (bench/rounds.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by native thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def _kind(name: str) -> str:
    if name.startswith("paho"):
        return "paho_network"
    if name.startswith("mqtt-send"):
        return "sender"
    if name == "MainThread":
        return "main"
    return "lanes"


def _run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    wb = importlib.import_module("bench.worker_bench")
    svc = wb.Services()
    try:
        t0 = wb.t0_for_sim()
        per_station = args.readings // 100
        since = t0 - timedelta(seconds=wb.INTERVAL_S * per_station)
        source = wb.MemorySource(100, per_station, since + timedelta(seconds=wb.INTERVAL_S))
        wb.seed(svc.redis.url, [s.station_id for s in source.stations], since)
        _, runner, uplink, lease = wb.make_runner(
            svc.broker.url, svc.redis.url, None, source, concurrency=args.concurrency
        )
        before = _thread_cpu()
        cpu0, start = time.process_time(), time.perf_counter()
        record = runner.run(source.stations).record
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        after = _thread_cpu()
        names = {t.native_id: t.name for t in threading.enumerate()}
        uplink.close()
        runner.close()
        lease.release()
        n = record.readings_published
        if n != per_station * 100:
            raise RuntimeError(f"published {n} of {per_station * 100}")
        by_kind: dict[str, float] = {}
        for tid, seconds in after.items():
            kind = _kind(names.get(tid, ""))
            by_kind[kind] = by_kind.get(kind, 0.0) + seconds - before.get(tid, 0.0)
        return {
            "root": str(root),
            "protocol": os.environ.get("C2C_MQTT_PROTOCOL", "3.1.1"),
            "msgs_per_s": round(n / elapsed),
            "cpu_us_per_msg": round(cpu * 1e6 / n, 2),
            "thread_cpu_us_per_msg": {k: round(v * 1e6 / n, 2) for k, v in sorted(by_kind.items())},
            "loadavg": os.getloadavg()[0],
        }
    finally:
        svc.stop()


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench.rounds import contender, median, median_ratio, tree_rounds

    shape = [f"--readings={args.readings}", f"--concurrency={args.concurrency}"]
    runs, load = tree_rounds(
        args.before, HERE, args.rounds, lambda tree: contender(Path(__file__), ["run", f"--root={tree}", *shape])
    )
    cpu = {name: [r["cpu_us_per_msg"] for r in rs] for name, rs in runs.items()}
    rate = {name: [r["msgs_per_s"] for r in rs] for name, rs in runs.items()}
    kinds = sorted({k for rs in runs.values() for r in rs for k in r["thread_cpu_us_per_msg"]})
    threads = {
        name: {k: median([r["thread_cpu_us_per_msg"].get(k, 0.0) for r in rs]) for k in kinds}
        for name, rs in runs.items()
    }
    return {
        "bench": "uplink",
        "protocol": os.environ.get("C2C_MQTT_PROTOCOL", "3.1.1"),
        "readings": args.readings,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "cpu_us_per_msg": cpu,
        "msgs_per_s": rate,
        "median_thread_cpu_us_per_msg": threads,
        "ratio_cpu_after_vs_before": round(median_ratio(cpu["after"], cpu["before"]), 3),
        "ratio_rate_after_vs_before": round(median_ratio(rate["after"], rate["before"]), 3),
        "loadavg": load,
    }


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("run", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--readings", type=int, default=30_000)
        p.add_argument("--concurrency", type=int, default=32)
    sub.choices["run"].add_argument("--root", default=str(HERE))
    sub.choices["compare"].add_argument("--before", required=True)
    sub.choices["compare"].add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    result = _compare(args) if args.cmd == "compare" else _run(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
