"""Benchmarks of the sync worker. Run from the repo root:

    .venv/bin/python bench/worker_bench.py cycle   --stations 10000 --latency-ms 50 --concurrency 32
    .venv/bin/python bench/worker_bench.py publish --readings 50000

`cycle`: a real mosquitto, redis-server and vendor simulator (separate processes); the worker runs in
this process. A first cycle warms the station list; then the simulator's clock moves one reading
interval and the second cycle (one request and one reading per station) is timed against the I/O
limit N x latency / concurrency; so is the first cycle with the station list read before it. The
peak RSS of this process (the worker plus this harness) is reported as the worker's memory at N
stations.

`batched`: a batched vendor: the simulator's /v2 `realtime` endpoint (POST, session login, up to
100 sites per request, a snapshot with the answer's time) and nothing else of simulator_v2.yaml.
After a warm-up cycle the simulator's clock moves one snapshot step; the second cycle is timed and
its vendor requests counted on the simulator's side (N / 100 expected).

`vendor`: a shipped vendor definition (`--vendor fusionsolar|solaredge`) read by the real worker
process (`python -m functions.sync_worker run`, driven cycle by cycle over Redis pub/sub) against
that vendor's mock (vendor_mocks/, every documented limit enforced) served from this process. The
mock's durations are scaled as in `make demo VENDOR=...` (c2c_sync/demo/vendors.py) so one
`--interval` is one vendor period (FusionSolar: its 5-minute budget; SolarEdge: a quarter-hour), and
the definition's alike (a FusionSolar budget raised to Roundup(stations/100) calls). A cycle is
signalled every `--interval` (or when the previous ended, if later); reported per cycle: the worker's
cycle time, the vendor calls the mock answered by interface, the calls it refused, stations deferred.

`publish`: the worker's publish pipeline (transform, QoS 1 within the in-flight window, PUBACK
tracking, fenced cursor writes per page) fed by a zero-latency in-memory source, against raw paho
QoS 1 (`max_inflight_messages` = the same window, `wait_for_publish` at the end) on one connection
to the same broker; with `--with-simulator` also the worker fed by the simulator at 0 ms latency.
Each contender runs in its own process (`publish-run`), their order alternates from round to round,
and the ratios reported are medians of the per-round ratios (see bench/rounds.py).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt
import redis

from bench.rounds import contender, median, median_ratio, orders, print_result
from functions.common.state import StateKeys
from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.settings import load_settings
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    Reading,
    ReadingBatch,
    Station,
    UnbatchedSource,
    sorted_page,
)
from functions.sync_worker.store import Lease, StateStore, connect_redis, format_cursor
from functions.sync_worker.wiring import build_source, build_uplink
from tests.support.services import MosquittoBroker, RedisServer
from tests.support.simulator import SimulatorProcess

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


def make_runner(
    mqtt_url: str, redis_url: str, source_url: str | None, source: Any, *, concurrency: int, page_size: int = 500
):
    settings = load_settings(
        env="bench",
        mqtt_url=mqtt_url,
        redis_url=redis_url,
        source_url=source_url or None,
        source_api_key="sim-key",
        concurrency=concurrency,
        page_size=page_size,
        mqtt_client_id="c2c-bench",
    )
    client = connect_redis(redis_url)
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


def seed(redis_url: str, stations: list[str], ts: datetime) -> None:
    client = redis.Redis.from_url(redis_url)
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
        seed(svc.redis.url, ids, t0 - timedelta(seconds=INTERVAL_S))
        settings = load_settings(
            env="bench", source_url=svc.sim.url, source_api_key="sim-key", concurrency=args.concurrency
        )
        source = build_source(settings)
        t_list = time.perf_counter()
        stations = source.list_stations()
        list_s = time.perf_counter() - t_list
        _, runner, uplink, lease = make_runner(
            svc.broker.url, svc.redis.url, svc.sim.url, source, concurrency=args.concurrency
        )
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
            # The first cycle a worker runs also lists the stations: that one against the same I/O limit.
            "first_cycle_with_list_s": round(list_s + warm.record.duration_ms / 1000, 2),
            "first_cycle_ratio": round((list_s + warm.record.duration_ms / 1000) / limit_s, 3) if limit_s else None,
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


class MemorySource(UnbatchedSource):
    """Zero-latency source: `per_station` readings per station, generated on demand."""

    def __init__(self, stations: int, per_station: int, t0: datetime) -> None:
        self.stations = [Station(f"site-{i:05d}") for i in range(1, stations + 1)]
        self.per_station = per_station
        self.t0 = t0

    def list_stations(self) -> list[Station]:
        return self.stations

    def fetch_readings(
        self,
        station: Station,
        since: datetime,
        until: datetime,
        limit: int,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        resume: object | None = None,
    ) -> ReadingBatch:
        since = resume if isinstance(resume, datetime) else since  # the next page of a full one
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
        return sorted_page(out, since, until, limit)

    def close(self) -> None:
        pass


def raw_paho_rate(mqtt_url: str, n: int, payload: bytes, window: int) -> float:
    port = int(mqtt_url.rsplit(":", 1)[1])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-paho")
    client.max_inflight_messages_set(window)
    client.connect("127.0.0.1", port)
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


#: What raw paho publishes: one prebuilt payload the size of a worker message.
RAW_SAMPLE = (
    b'{"schema":1,"message_id":"site-00001:2024-06-01T12:00:00.000000Z","station_id":"site-00001",'
    b'"ts":"2024-06-01T12:00:00.000000Z","values":{"soc_pct":50.0,"battery_power_kw":-3.2,'
    b'"battery_voltage_v":768.1,"cell_temp_max_c":31.5,"energy_charged_kwh":1234.5}}'
)
#: The publish contenders; each runs in its own process (`publish-run`), the first is the baseline.
PUBLISH_CONTENDERS = ("raw-paho", "worker-memory", "worker-simulator")


def publish_run(args: argparse.Namespace) -> dict:
    """One contender, one measurement, in this process (started by `publish` for each round)."""
    if args.contender == "raw-paho":
        return {"contender": args.contender, "msgs_per_s": raw_paho_rate(args.mqtt_url, args.readings, RAW_SAMPLE, 20)}
    t0 = datetime.fromisoformat(args.t0)
    per_station = args.readings // args.stations
    since = t0 - timedelta(seconds=INTERVAL_S * per_station)
    source: Any
    if args.contender == "worker-memory":
        source = MemorySource(args.stations, per_station, since + timedelta(seconds=INTERVAL_S))
        stations = source.stations
    else:
        settings = load_settings(
            env="bench", source_url=args.source_url, source_api_key="sim-key", concurrency=args.concurrency
        )
        source = build_source(settings)
        stations = source.list_stations()
    client = redis.Redis.from_url(args.redis_url)
    client.delete(StateKeys("c2c:bench").cursors)
    seed(args.redis_url, [s.station_id for s in stations], since)
    _, runner, uplink, lease = make_runner(
        args.mqtt_url, args.redis_url, args.source_url, source, concurrency=args.concurrency
    )
    start = time.perf_counter()
    record = runner.run(stations).record
    elapsed = time.perf_counter() - start
    uplink.close()
    runner.close()
    lease.release()
    source.close()
    if record.readings_published != per_station * len(stations):
        raise RuntimeError(f"{args.contender} published {record.readings_published} of {per_station * len(stations)}")
    return {"contender": args.contender, "msgs_per_s": record.readings_published / elapsed}


def bench_publish(args: argparse.Namespace) -> dict:
    """Alternating rounds of the contenders, each its own process, against one broker and Redis."""
    svc = Services()
    try:
        t0 = t0_for_sim()
        names = list(PUBLISH_CONTENDERS[:2])
        if args.with_simulator:
            svc.sim = SimulatorProcess(
                stations=args.stations, latency_ms=0, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
            ).start(timeout=60)
            names.append("worker-simulator")
        common = [
            f"--mqtt-url={svc.broker.url}",
            f"--redis-url={svc.redis.url}",
            f"--source-url={svc.sim.url if svc.sim else ''}",
            f"--t0={t0.isoformat()}",
            f"--readings={args.readings}",
            f"--stations={args.stations}",
            f"--concurrency={args.concurrency}",
        ]
        rates: dict[str, list[float]] = {name: [] for name in names}
        for _, order in orders(names, args.rounds):
            for name in order:
                run = contender(Path(__file__), ["publish-run", f"--contender={name}", *common])
                rates[name].append(run["msgs_per_s"])
        baseline = rates["raw-paho"]
        result: dict[str, Any] = {
            "bench": "publish",
            "readings": args.readings,
            "stations": args.stations,
            "concurrency": args.concurrency,
            "max_inflight": 20,
            "rounds": args.rounds,
            "runs_msgs_per_s": {name: [round(r) for r in values] for name, values in rates.items()},
            "median_msgs_per_s": {name: round(median(values)) for name, values in rates.items()},
        }
        for name in names[1:]:
            result[f"ratio_{name.replace('-', '_')}_vs_raw"] = round(median_ratio(rates[name], baseline), 3)
        return result
    finally:
        svc.stop()


def bench_batched(args: argparse.Namespace) -> dict:
    from functions.sync_worker.source.http_json import HttpJsonSource, load_vendor_config

    svc = Services()
    try:
        t0 = t0_for_sim()
        svc.sim = SimulatorProcess(
            stations=args.stations, latency_ms=args.latency_ms, clock=t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"
        ).start(timeout=60)
        full = load_vendor_config("simulator_v2")
        config = full.model_copy(update={"readings": [ep for ep in full.readings if ep.name == "realtime"]})
        (batch,) = [ep.batch for ep in config.readings]
        assert batch is not None
        source = HttpJsonSource(
            config, base_url=svc.sim.url, secrets={"api_key": "sim-key"}, pool_size=args.concurrency
        )
        stations = source.list_stations()
        _, runner, uplink, lease = make_runner(
            svc.broker.url, svc.redis.url, svc.sim.url, source, concurrency=args.concurrency
        )
        warm = runner.run(stations)
        svc.sim.advance_clock(300)  # the next snapshot step: new values for every site
        before = svc.sim.admin("GET", "/_v2")["served"].get("realtime", 0)
        timed = runner.run(stations)
        requests = svc.sim.admin("GET", "/_v2")["served"].get("realtime", 0) - before
        rec = timed.record
        per_request = batch.size
        request_count = -(-args.stations // per_request)
        limit_s = request_count * args.latency_ms / 1000 / min(args.concurrency, request_count)
        result = {
            "bench": "batched",
            "stations": args.stations,
            "stations_per_request": per_request,
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "requests_per_cycle": requests,
            "warmup_cycle_s": round(warm.record.duration_ms / 1000, 2),
            "cycle_s": round(rec.duration_ms / 1000, 2),
            "io_limit_s": round(limit_s, 3),
            "synced": rec.stations_synced,
            "failed": rec.stations_failed,
            "published": rec.readings_published,
        }
        uplink.close()
        runner.close()
        lease.release()
        source.close()
        return result
    finally:
        svc.stop()


def bench_vendor(args: argparse.Namespace) -> dict:
    import os

    from bench.worker_driver import DrivenWorker, worker_env
    from c2c_sync.demo.vendors import MockVendor

    svc = Services()
    mock: MockVendor | None = None
    worker: DrivenWorker | None = None
    try:
        mock = MockVendor(
            args.vendor, args.stations, args.interval, svc.tmp / "vendor", latency_s=args.latency_ms / 1000
        ).start()
        env_name = f"bench-{args.vendor}"
        environment = worker_env(
            env=env_name,
            mqtt_url=svc.broker.url,
            redis_url=svc.redis.url,
            source_url=mock.url,
            concurrency=args.concurrency,
            status_file=svc.tmp / "worker-status.json",
        )
        environment.update(mock.worker_environment())
        if "api_key" not in mock.secrets():
            environment.pop("C2C_SOURCE_API_KEY")  # the simulator's key: this definition reads others
        mock.seed_cursors(redis.Redis.from_url(svc.redis.url), StateKeys.for_env(env_name), mock.station_ids())
        worker = DrivenWorker(environment, svc.tmp / "worker.log").start()
        cycles: list[dict[str, Any]] = []
        times: list[float] = []
        counts: list[float] = []
        started = time.monotonic()
        for i in range(args.cycles):
            time.sleep(max(0.0, started + i * args.interval - time.monotonic()))
            before = mock.usage()
            run = worker.cycle()
            after = mock.usage()
            calls = {k: n - before.calls.get(k, 0) for k, n in after.calls.items() if n - before.calls.get(k, 0)}
            rec = run.record
            times.append(rec.duration_ms / 1000)
            counts.append(sum(calls.values()))
            cycles.append(
                {
                    "cycle_s": round(rec.duration_ms / 1000, 2),
                    "wall_s": round(run.wall_s, 2),
                    "vendor_calls": sum(calls.values()),
                    "calls_by_interface": calls,
                    "refused": sum(after.refusals.values()) - sum(before.refusals.values()),
                    "synced": rec.stations_synced,
                    "deferred": rec.stations_deferred,
                    "failed": rec.stations_failed,
                    "published": rec.readings_published,
                }
            )
        usage = mock.usage()
        steady = slice(1, None) if len(cycles) > 1 else slice(None)  # the first cycle also lists stations
        return {
            "bench": "vendor",
            "vendor": args.vendor,
            "definition": mock.name,
            "stations": args.stations,
            "interval_s": args.interval,
            "vendor_time": mock.periods(),
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "cycles": cycles,
            "median_steady_cycle_s": round(median(times[steady]), 2),
            "median_steady_vendor_calls": median(counts[steady]),
            "refused_total": sum(usage.refusals.values()),
            "refusals": usage.refusals,
            "max_in_flight": usage.max_in_flight,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        if worker is not None:
            worker.stop()
        if mock is not None:
            mock.stop()
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    cycle = sub.add_parser("cycle")
    cycle.add_argument("--stations", type=int, default=10_000)
    cycle.add_argument("--latency-ms", type=float, default=50.0)
    cycle.add_argument("--concurrency", type=int, default=32)
    batched = sub.add_parser("batched")
    batched.add_argument("--stations", type=int, default=10_000)
    batched.add_argument("--latency-ms", type=float, default=50.0)
    batched.add_argument("--concurrency", type=int, default=32)
    vendor = sub.add_parser("vendor")
    vendor.add_argument("--vendor", choices=("fusionsolar", "solaredge"), required=True)
    vendor.add_argument("--stations", type=int, default=1_000)
    vendor.add_argument("--cycles", type=int, default=5)
    vendor.add_argument("--interval", type=float, default=6.0, help="seconds per vendor period (and cycle)")
    vendor.add_argument("--latency-ms", type=float, default=50.0, help="SolarEdge mock: hold of each call")
    vendor.add_argument("--concurrency", type=int, default=32)
    publish = sub.add_parser("publish")
    publish.add_argument("--readings", type=int, default=50_000)
    publish.add_argument("--stations", type=int, default=100)
    publish.add_argument("--concurrency", type=int, default=32)
    publish.add_argument("--with-simulator", action="store_true")
    publish.add_argument("--rounds", type=int, default=5)
    run = sub.add_parser("publish-run", help="one publish contender in this process (started by `publish`)")
    run.add_argument("--contender", choices=PUBLISH_CONTENDERS, required=True)
    for flag in ("--mqtt-url", "--redis-url", "--source-url", "--t0"):
        run.add_argument(flag, required=True)
    run.add_argument("--readings", type=int, required=True)
    run.add_argument("--stations", type=int, required=True)
    run.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    import logging

    logging.getLogger("sync-worker").setLevel(logging.ERROR)
    commands = {
        "cycle": bench_cycle,
        "batched": bench_batched,
        "vendor": bench_vendor,
        "publish": bench_publish,
        "publish-run": publish_run,
    }
    print_result(commands[args.bench](args))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
