"""Benchmarks of the sync worker (issue 3). Run from the repo root:

    .venv/bin/python bench/worker_bench.py cycle   --stations 10000 --latency-ms 50 --concurrency 32
    .venv/bin/python bench/worker_bench.py publish --readings 50000

`cycle`: a real mosquitto, redis-server and vendor simulator (separate processes); the worker runs in
this process. A first cycle warms the station list; then the simulator's clock moves one reading
interval and the second cycle (one request and one reading per station) is timed against the I/O
limit N x latency / concurrency. The peak RSS of this process (the worker plus this harness) is
reported as the worker's memory at N stations.

`publish`: the worker's publish pipeline (transform, QoS 1 within the in-flight window, PUBACK
tracking, fenced cursor writes per page) fed by a zero-latency in-memory source, against raw paho
QoS 1 (`max_inflight_messages` = the same window, `wait_for_publish` at the end) on one connection
to the same broker, in the same script. Also the worker with the simulator at 0 ms latency.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import redis  # noqa: E402

from functions.common.state import StateKeys  # noqa: E402
from functions.sync_worker.wiring import build_source, build_uplink  # noqa: E402
from functions.sync_worker.cycle import CycleRunner  # noqa: E402
from functions.sync_worker.settings import load_settings  # noqa: E402
from functions.sync_worker.source.base import Reading, Station  # noqa: E402
from functions.sync_worker.store import Lease, StateStore, connect_redis, format_cursor  # noqa: E402
from tests.support.services import MosquittoBroker, RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

INTERVAL_S = 60


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Services:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="c2c-bench-"))
        (self.tmp / "redis").mkdir()
        self.redis = RedisServer(self.tmp / "redis").start()
        self.broker = MosquittoBroker(self.tmp / "mosquitto").start()
        self.sim: SimulatorProcess | None = None

    def stop(self) -> None:
        for part in (self.sim, self.broker, self.redis):
            if part is not None:
                part.stop()


def t0_for_sim() -> datetime:
    return (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def make_runner(svc: Services, source, *, concurrency: int, page_size: int = 500):
    settings = load_settings(
        env="bench",
        mqtt_url=svc.broker.url,
        redis_url=svc.redis.url,
        source_url=svc.sim.url if svc.sim else None,
        source_api_key="sim-key",
        concurrency=concurrency,
        page_size=page_size,
        mqtt_client_id="c2c-bench",
    )
    client = connect_redis(svc.redis.url)
    lease = Lease(client, settings.state_keys, "bench", ttl_s=30)
    assert lease.try_acquire()
    uplink = build_uplink(settings).start()
    assert uplink.wait_connected(10)
    runner = CycleRunner(
        source,
        uplink,
        StateStore(client, settings.state_keys, lease),
        concurrency=concurrency,
        page_size=page_size,
        backfill_window_s=settings.backfill_window_s,
        puback_timeout_s=settings.puback_timeout_s,
        lease_held=lambda: lease.held,
    )
    return settings, runner, uplink, lease


def seed(svc: Services, stations: list[str], ts: datetime) -> None:
    client = redis.Redis.from_url(svc.redis.url)
    keys = StateKeys("c2c:bench")
    for i in range(0, len(stations), 1000):
        client.hset(keys.cursors, mapping={s: format_cursor(ts) for s in stations[i : i + 1000]})


def bench_cycle(args: argparse.Namespace) -> dict:
    svc = Services()
    try:
        t0 = t0_for_sim()
        svc.sim = SimulatorProcess(
            stations=args.stations, latency_ms=args.latency_ms, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
        ).start(timeout=60)
        ids = [f"site-{i:05d}" for i in range(1, args.stations + 1)]
        seed(svc, ids, t0 - timedelta(seconds=INTERVAL_S))
        settings = load_settings(
            env="bench", source_url=svc.sim.url, source_api_key="sim-key", concurrency=args.concurrency
        )
        source = build_source(settings)
        t_list = time.perf_counter()
        stations = source.list_stations()
        list_s = time.perf_counter() - t_list
        _, runner, uplink, lease = make_runner(svc, source, concurrency=args.concurrency)
        warm = runner.run(stations)  # warm-up: pools, threads; one reading per station
        svc.sim.advance_clock(INTERVAL_S)
        timed = runner.run(stations)
        rec = timed.record
        limit_s = args.stations * args.latency_ms / 1000 / args.concurrency
        result = {
            "bench": "cycle",
            "stations": args.stations,
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "station_list_s": round(list_s, 2),
            "warmup_cycle_s": round(warm.record.duration_ms / 1000, 2),
            "cycle_s": round(rec.duration_ms / 1000, 2),
            "io_limit_s": round(limit_s, 2),
            "ratio": round(rec.duration_ms / 1000 / limit_s, 3) if limit_s else None,
            "synced": rec.stations_synced,
            "failed": rec.stations_failed,
            "published": rec.readings_published,
            "rss_peak_mb": round(rss_peak_mb(), 1),
        }
        uplink.close()
        runner.close()
        lease.release()
        source.close()
        return result
    finally:
        svc.stop()


class MemorySource:
    """Zero-latency source: `per_station` readings per station, generated on demand."""

    def __init__(self, stations: int, per_station: int, t0: datetime) -> None:
        self.stations = [Station(f"site-{i:05d}") for i in range(1, stations + 1)]
        self.per_station = per_station
        self.t0 = t0

    def list_stations(self) -> list[Station]:
        return self.stations

    def fetch_readings(self, station: Station, since: datetime, until: datetime, limit: int) -> list[Reading]:
        out = []
        for i in range(self.per_station):
            ts = self.t0 + timedelta(seconds=INTERVAL_S * i)
            if since < ts <= until:
                out.append(
                    Reading(
                        station.station_id,
                        ts,
                        {
                            "soc_pct": 50.0 + i % 50,
                            "battery_power_kw": -3.2,
                            "battery_voltage_v": 768.1,
                            "cell_temp_max_c": 31.5,
                            "energy_charged_kwh": 1234.5 + i,
                        },
                    )
                )
                if len(out) >= limit:
                    break
        return out

    def close(self) -> None:
        pass


def raw_paho_rate(broker: MosquittoBroker, n: int, payload: bytes, window: int) -> float:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-paho")
    client.max_inflight_messages_set(window)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    time.sleep(0.2)
    start = time.perf_counter()
    infos = [client.publish(f"c2c/bench/stations/site-{i % 100:05d}/telemetry", payload, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return n / elapsed


def bench_publish(args: argparse.Namespace) -> dict:
    svc = Services()
    try:
        t0 = t0_for_sim()
        per_station = args.readings // args.stations
        source = MemorySource(args.stations, per_station, t0 - timedelta(seconds=INTERVAL_S * per_station))
        seed(svc, [s.station_id for s in source.stations], t0 - timedelta(seconds=INTERVAL_S * (per_station + 1)))
        _, runner, uplink, lease = make_runner(svc, source, concurrency=args.concurrency)
        sample = (
            b'{"schema":1,"message_id":"site-00001:2024-06-01T12:00:00.000000Z","station_id":"site-00001",'
            b'"ts":"2024-06-01T12:00:00.000000Z","values":{"soc_pct":50.0,"battery_power_kw":-3.2,'
            b'"battery_voltage_v":768.1,"cell_temp_max_c":31.5,"energy_charged_kwh":1234.5}}'
        )
        # Alternate worker and raw runs: the machine is shared, so load drifts between runs.
        worker_rates, raw_rates = [], []
        for _ in range(args.rounds):
            seed_all = [s.station_id for s in source.stations]
            redis.Redis.from_url(svc.redis.url).delete(StateKeys("c2c:bench").cursors)
            seed(svc, seed_all, t0 - timedelta(seconds=INTERVAL_S * (per_station + 1)))
            start = time.perf_counter()
            result = runner.run(source.stations)
            worker_rates.append(result.record.readings_published / (time.perf_counter() - start))
            raw_rates.append(raw_paho_rate(svc.broker, args.readings, sample, window=20))
        worker_rate, raw_rate = sorted(worker_rates)[len(worker_rates) // 2], sorted(raw_rates)[len(raw_rates) // 2]
        uplink.close()
        runner.close()
        lease.release()

        sim_rate = None
        if args.with_simulator:
            svc.sim = SimulatorProcess(
                stations=args.stations, latency_ms=0, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
            ).start(timeout=60)
            redis.Redis.from_url(svc.redis.url).delete(StateKeys("c2c:bench").cursors)
            seed(svc, [s.station_id for s in source.stations], t0 - timedelta(seconds=INTERVAL_S * per_station))
            settings = load_settings(
                env="bench", source_url=svc.sim.url, source_api_key="sim-key", concurrency=args.concurrency
            )
            http_source = build_source(settings)
            stations = http_source.list_stations()
            _, runner2, uplink2, lease2 = make_runner(svc, http_source, concurrency=args.concurrency)
            start = time.perf_counter()
            rec2 = runner2.run(stations).record
            sim_rate = rec2.readings_published / (time.perf_counter() - start)
            uplink2.close()
            runner2.close()
            lease2.release()
            http_source.close()
        return {
            "bench": "publish",
            "readings": result.record.readings_published,
            "stations": args.stations,
            "concurrency": args.concurrency,
            "max_inflight": 20,
            "worker_memory_source_msgs_per_s": round(worker_rate),
            "raw_paho_msgs_per_s": round(raw_rate),
            "ratio": round(worker_rate / raw_rate, 3),
            "rounds": args.rounds,
            "worker_runs": [round(r) for r in worker_rates],
            "raw_runs": [round(r) for r in raw_rates],
            "worker_simulator_0ms_msgs_per_s": round(sim_rate) if sim_rate else None,
            "ratio_simulator": round(sim_rate / raw_rate, 3) if sim_rate else None,
        }
    finally:
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    cycle = sub.add_parser("cycle")
    cycle.add_argument("--stations", type=int, default=10_000)
    cycle.add_argument("--latency-ms", type=float, default=50.0)
    cycle.add_argument("--concurrency", type=int, default=32)
    publish = sub.add_parser("publish")
    publish.add_argument("--readings", type=int, default=50_000)
    publish.add_argument("--stations", type=int, default=100)
    publish.add_argument("--concurrency", type=int, default=32)
    publish.add_argument("--with-simulator", action="store_true")
    publish.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.getLogger("sync-worker").setLevel(logging.ERROR)
    out = bench_cycle(args) if args.bench == "cycle" else bench_publish(args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
