"""What persistent connections buy over a WAN: the sync worker vs a per-run function vs Node-RED.

    make bench-wan          # = .venv/bin/python bench/wan/wan_bench.py   (root: it builds namespaces)
    .venv/bin/python bench/wan/wan_bench.py --stations 300 --cycles 22 --broker-rtt-ms 40 --vendor-rtt-ms 80

The broker (Mosquitto, TLS), the vendor simulator, Redis, the contenders and this driver each live in
their own network namespace (bench/wan/topology.py), joined through a router namespace that delays
client<->broker and client<->vendor traffic (half the round trip each way) and counts TCP SYNs per
link. Everything is torn down at the end, on failure and on Ctrl-C/SIGTERM.

Contenders, all in the client namespace, all at the same vendor concurrency, each its own process:
- `worker`: the sync worker (the container's entry point), persistent MQTT/TLS, HTTP and Redis
  connections; one cycle per start signal (Redis pub/sub);
- `per-run`: bench/wan/per_run.py — connects, lists, fetches, publishes, disconnects every run;
- `nodered`: the Node-RED 5 flow of bench/peers (inject -> http request -> mqtt out, TLS to the broker).
Each round the simulator's clock moves one reading interval, then each contender runs one cycle
(order alternating per round). Per cycle: its time (to the worker's run-history record, the
function's own end, or Node-RED's last reading at a subscriber next to the broker) and the TCP
connections it opened to the broker and to the vendor (router counters; a long-lived contender's
connections at start are counted in its first cycle). Plot: bench/wan_cycles.png; figures:
bench/results/wan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.arrivals import Arrivals
from bench.peers.nodered import NodeRed, ensure_installed, flow
from bench.rounds import CpuMeter, median, median_ratio, orders, print_result
from bench.wan.topology import Link, Topology, address, exit_on_signals, netem_available
from bench.worker_driver import DrivenWorker, worker_env
from c2c_sync.demo.services import require_binary, wait_for_port
from tests.support.tls import TestCA
from tests.worker.conftest import seed_cursors, station_ids

INTERVAL_S = 60
CONTENDERS = ("worker", "per-run", "nodered")
BROKER_PORT, VENDOR_PORT, REDIS_PORT, NODERED_PORT = 8883, 8080, 6379, 1880
PLOT = ROOT / "bench" / "wan_cycles.png"
RESULT = ROOT / "bench" / "results" / "wan.json"


def wait_for_line(path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {path} after {timeout}s")
        time.sleep(0.05)


def start_services(topo: Topology, work: Path, args: argparse.Namespace, t0: datetime, ca: TestCA) -> None:
    server = ca.server_certificate(ip_addresses=(address("broker"),))
    conf = work / "mosquitto.conf"
    conf.write_text(
        f"listener {BROKER_PORT} {address('broker')}\n"
        f"cafile {ca.cert_path}\ncertfile {server.cert_path}\nkeyfile {server.key_path}\ntls_version tlsv1.2\n"
        "user root\nallow_anonymous true\npersistence false\n"
        f"log_dest file {work / 'mosquitto.log'}\nlog_type error\nlog_type notice\nconnection_messages true\n"
        "max_inflight_messages 0\nmax_queued_messages 0\n" + ("set_tcp_nodelay true\n" if args.broker_nodelay else "")
    )
    topo.spawn("broker", [require_binary("mosquitto"), "-c", str(conf)], log=work / "mosquitto.out")
    (work / "redis").mkdir()
    topo.spawn(
        "cache",
        [
            require_binary("redis-server"),
            *("--bind", address("cache"), "--port", str(REDIS_PORT), "--protected-mode", "no"),
            *("--save", "", "--appendonly", "no", "--dir", str(work / "redis")),
        ],
        log=work / "redis.log",
    )
    topo.spawn(
        "vendor",
        [
            sys.executable,
            "-m",
            "simulator",
            *("--host", address("vendor"), "--port", str(VENDOR_PORT), "--stations", str(args.stations)),
            *("--latency-ms", "0", "--clock", t0.strftime("%Y-%m-%dT%H:%M:%SZ") + "@0"),
        ],
        log=work / "simulator.log",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    for leaf, port in (("broker", BROKER_PORT), ("cache", REDIS_PORT), ("vendor", VENDOR_PORT)):
        wait_for_port(port, timeout=30, host=address(leaf))


def advance_clock(seconds: int) -> None:
    req = urllib.request.Request(
        f"http://{address('vendor')}:{VENDOR_PORT}/_clock",
        data=json.dumps({"advance_s": seconds}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


class PerRun:
    """bench/wan/per_run.py in the client namespace, one run per `run` line."""

    def __init__(self, args: argparse.Namespace, ca_file: Path, log: Path, netns: str) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 - held for the process; close() closes it
        self.proc = subprocess.Popen(
            [
                *("ip", "netns", "exec", netns, sys.executable, str(ROOT / "bench" / "wan" / "per_run.py")),
                f"--vendor-url=http://{address('vendor')}:{VENDOR_PORT}",
                f"--mqtt-host={address('broker')}",
                f"--mqtt-port={BROKER_PORT}",
                f"--ca-file={ca_file}",
                f"--redis-url=redis://{address('cache')}:{REDIS_PORT}/0",
                f"--concurrency={args.concurrency}",
                f"--max-inflight={args.max_inflight}",
                "--env=per-run",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self._read()  # ready

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"per-run function exited {self.proc.wait()}")
        return json.loads(line)

    def run(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


STYLES = {"worker": ("-", "o"), "per-run": ("--", "s"), "nodered": (":", "^")}


def plot(cycles: dict[str, list[dict]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_time, ax_broker, ax_vendor) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    for name, runs in cycles.items():
        line, marker = STYLES.get(name, ("-", "."))
        xs = range(1, len(runs) + 1)
        ax_time.plot(xs, [r["cycle_s"] for r in runs], linestyle=line, marker=marker, label=name)
        for ax, key in ((ax_broker, "broker_connections"), (ax_vendor, "vendor_connections")):
            total, cumulative = 0, []
            for r in runs:
                total += r[key]
                cumulative.append(total)
            ax.plot(xs, cumulative, linestyle=line, marker=marker, label=name)
    ax_time.set_ylabel("cycle time (s)")
    ax_broker.set_ylabel("broker connections (TLS)\ncumulative")
    ax_vendor.set_ylabel("vendor connections (HTTP)\ncumulative")
    ax_vendor.set_xlabel("cycle (the first includes each contender's start)")
    ax_vendor.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_time.set_title(
        f"{args.stations} stations, vendor concurrency {args.concurrency}, in-flight window {args.max_inflight}\n"
        f"RTT {args.broker_rtt_ms} ms to the broker (TLS), {args.vendor_rtt_ms} ms to the vendor"
    )
    for ax in (ax_time, ax_broker, ax_vendor):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=22, help="per contender (the first includes its start)")
    parser.add_argument("--broker-rtt-ms", type=int, default=40)
    parser.add_argument("--vendor-rtt-ms", type=int, default=80)
    parser.add_argument(
        "--max-inflight", type=int, default=20, help="QoS 1 publishes awaiting PUBACK (worker and per-run function)"
    )
    parser.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="Mosquitto's set_tcp_nodelay (off by default: its small PUBACKs then wait on Nagle)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per cycle")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--result", type=Path, default=RESULT)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench-wan builds network namespaces: run it as root")
    exit_on_signals()
    netem, netem_detail = netem_available()
    ensure_installed()
    stations = station_ids(args.stations)
    t0 = (datetime.now(UTC) - timedelta(seconds=INTERVAL_S * (args.cycles + 60))).replace(second=0, microsecond=0)
    work = Path(tempfile.mkdtemp(prefix="c2c-wan-"))
    links = [
        Link("client", "broker", args.broker_rtt_ms // 2),
        Link("client", "vendor", args.vendor_rtt_ms // 2),
    ]
    worker = nodered = per_run = arrivals = None
    with Topology(links) as topo:
        try:
            topo.enter("bench")
            topo.spawn("router", [sys.executable, str(ROOT / "bench" / "wan" / "delay.py")], log=work / "delay.log")
            wait_for_line(work / "delay.log", "ready")
            topo.count_rules()
            topo.delay_rules()
            ca = TestCA(work / "pki")
            start_services(topo, work, args, t0, ca)
            redis_url = f"redis://{address('cache')}:{REDIS_PORT}/0"
            for env in ("worker", "per-run"):
                seed_cursors(redis_url, env, stations, t0)
            arrivals = Arrivals(address("broker"), BROKER_PORT, ca_file=ca.cert_path).start()

            startup: dict[str, dict[tuple[str, str], int]] = {}
            before = topo.syn_counts()
            worker = DrivenWorker(
                worker_env(
                    env="worker",
                    mqtt_url=f"mqtts://{address('broker')}:{BROKER_PORT}",
                    redis_url=redis_url,
                    source_url=f"http://{address('vendor')}:{VENDOR_PORT}",
                    concurrency=args.concurrency,
                    status_file=work / "worker-status.json",
                    C2C_MQTT_CA_FILE=str(ca.cert_path),
                    C2C_MAX_INFLIGHT=str(args.max_inflight),
                    C2C_LOG_LEVEL="ERROR",
                ),
                work / "worker.log",
                prefix=("ip", "netns", "exec", topo.ns("client")),
            ).start()
            startup["worker"], before = diff(topo.syn_counts(), before), topo.syn_counts()
            per_run = PerRun(args, ca.cert_path, work / "per-run.log", topo.ns("client"))
            startup["per-run"], before = diff(topo.syn_counts(), before), topo.syn_counts()
            nodered = NodeRed(
                work / "node-red",
                flow(
                    stations=stations,
                    lanes=args.concurrency,
                    vendor_url=f"http://{address('vendor')}:{VENDOR_PORT}",
                    api_key="sim-key",
                    since=t0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    broker_host=address("broker"),
                    broker_port=BROKER_PORT,
                    client_id="nodered-bench",
                    topic="c2c/nodered/stations/{station_id}/telemetry",
                    ca_file=ca.cert_path,
                ),
                port=NODERED_PORT,
                host=address("client"),
                prefix=("ip", "netns", "exec", topo.ns("client")),
            ).start()
            nodered.wait_ready()
            wait_for_line(work / "mosquitto.log", "as nodered-bench")
            startup["nodered"] = diff(topo.syn_counts(), before)

            def run_worker(expected: int) -> tuple[float, float]:
                run = worker.cycle(timeout=args.timeout)
                if run.record.readings_published != args.stations:
                    raise RuntimeError(f"worker cycle incomplete: {run.record.model_dump_json()}")
                return run.wall_s, run.cpu_s

            def run_per_run(expected: int) -> tuple[float, float]:
                meter = CpuMeter(per_run.proc.pid)
                cpu0, start = meter.seconds(), time.perf_counter()
                out = per_run.run()
                if out["published"] != args.stations:
                    raise RuntimeError(f"per-run function published {out['published']} of {args.stations}")
                return time.perf_counter() - start, meter.seconds() - cpu0

            def run_nodered(expected: int) -> tuple[float, float]:
                meter = CpuMeter(nodered.pid)
                cpu0, start = meter.seconds(), time.perf_counter()
                nodered.trigger()
                last = arrivals.wait_for("nodered", expected, args.timeout)
                return last - start, meter.seconds() - cpu0

            runners = {"worker": run_worker, "per-run": run_per_run, "nodered": run_nodered}
            cycles: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
            for r, order in orders(CONTENDERS, args.cycles):
                advance_clock(INTERVAL_S)
                for name in order:
                    syn0 = topo.syn_counts()
                    wall, cpu = runners[name]((r + 1) * args.stations)
                    opened = diff(topo.syn_counts(), syn0)
                    if r == 0:
                        opened = {
                            k: opened.get(k, 0) + startup[name].get(k, 0) for k in set(opened) | set(startup[name])
                        }
                    cycles[name].append(
                        {
                            "cycle_s": round(wall, 3),
                            "cpu_s": round(cpu, 3),
                            "broker_connections": opened.get(("client", "broker"), 0),
                            "vendor_connections": opened.get(("client", "vendor"), 0),
                            "redis_connections": opened.get(("client", "cache"), 0),
                        }
                    )
                print(
                    f"cycle {r + 1}: "
                    + ", ".join(
                        f"{n} {cycles[n][-1]['cycle_s']:.2f} s ({cycles[n][-1]['broker_connections']} broker, "
                        f"{cycles[n][-1]['vendor_connections']} vendor conns)"
                        for n in CONTENDERS
                    ),
                    file=sys.stderr,
                    flush=True,
                )
            result = summarize(cycles, args, netem, netem_detail)
            args.result.parent.mkdir(parents=True, exist_ok=True)
            args.result.write_text(json.dumps({**result, "per_cycle": cycles}, indent=1) + "\n")
            plot(cycles, args, args.plot)
            print_result(result)
        finally:
            for part in (nodered, worker):
                if part is not None:
                    part.stop()
            if per_run is not None:
                per_run.close()
            if arrivals is not None:
                arrivals.stop()
    print(f"topology torn down; work files in {work}", file=sys.stderr)


def diff(after: dict[tuple[str, str], int], before: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def summarize(cycles: dict[str, list[dict]], args: argparse.Namespace, netem: bool, netem_detail: str) -> dict:
    steady = {name: [c["cycle_s"] for c in runs[1:]] for name, runs in cycles.items()}
    return {
        "bench": "wan",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "stations": args.stations,
        "concurrency": args.concurrency,
        "cycles": args.cycles,
        "broker_rtt_ms": args.broker_rtt_ms,
        "vendor_rtt_ms": args.vendor_rtt_ms,
        "max_inflight": args.max_inflight,
        "broker_tcp_nodelay": args.broker_nodelay,
        "delay": "tc netem" if netem else "iptables NFQUEUE + bench/wan/delay.py (no sch_netem in this kernel)",
        "netem_probe": netem_detail,
        "first_cycle_s": {n: runs[0]["cycle_s"] for n, runs in cycles.items()},
        "median_cycle_s_after_first": {n: round(median(v), 3) for n, v in steady.items()},
        "ratio_cycle_time_vs_worker": {
            n: round(median_ratio(steady[n], steady["worker"]), 3) for n in CONTENDERS if n != "worker"
        },
        "broker_connections": {n: sum(c["broker_connections"] for c in runs) for n, runs in cycles.items()},
        "vendor_connections": {n: sum(c["vendor_connections"] for c in runs) for n, runs in cycles.items()},
        "median_cpu_s_per_cycle": {n: round(median([c["cpu_s"] for c in runs[1:]]), 3) for n, runs in cycles.items()},
    }


if __name__ == "__main__":
    main()
