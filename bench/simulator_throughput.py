"""Throughput of the vendor simulator: telemetry requests/s with C concurrent keep-alive clients.

The clients are lean (http.client, one persistent connection per thread) and spread over a few
processes, so the figure is the server's, not the client library's. Run from the repo root:

    .venv/bin/python bench/simulator_throughput.py --concurrency 64 --latency-ms 0 50 --seconds 8

It starts `python -m simulator` on a free port for each latency, prints one line per run and a
JSON summary. The I/O limit at latency L is concurrency / L requests/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.services import free_port, wait_for_port


def _client_process(
    port: int, threads: int, stations: int, limit: int, seconds: float, start_at: float, out: mp.Queue
) -> None:
    counts = [0] * threads
    errors = [0] * threads
    stop_at = start_at + seconds

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = n
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            sid = f"site-{(i % stations) + 1:05d}"
            conn.request("GET", f"/v1/sites/{sid}/telemetry?limit={limit}", headers={"X-Api-Key": "bench"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                counts[n] += 1
            else:
                errors[n] += 1
            i += threads * 7919
        conn.close()

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((sum(counts), sum(errors)))


def run(concurrency: int, latency_ms: float, seconds: float, stations: int, limit: int, procs: int) -> dict:
    port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--stations",
            str(stations),
            "--latency-ms",
            str(latency_ms),
            "--api-key",
            "bench",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
        out: mp.Queue = mp.Queue()
        start_at = time.time() + 1.0
        per_proc = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
        workers = [
            mp.Process(target=_client_process, args=(port, n, stations, limit, seconds, start_at, out))
            for n in per_proc
            if n
        ]
        for w in workers:
            w.start()
        results = [out.get() for _ in workers]
        for w in workers:
            w.join()
        ok = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        io_limit = concurrency / (latency_ms / 1000.0) if latency_ms else None
        return {
            "concurrency": concurrency,
            "latency_ms": latency_ms,
            "readings_per_request": limit,
            "requests": ok,
            "errors": errors,
            "seconds": seconds,
            "rps": round(ok / seconds, 1),
            "io_limit_rps": io_limit,
            "share_of_io_limit": round(ok / seconds / io_limit, 3) if io_limit else None,
        }
    finally:
        sim.terminate()
        sim.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--stations", type=int, default=10_000)
    ap.add_argument("--limit", type=int, default=5, help="readings per telemetry response")
    ap.add_argument("--client-processes", type=int, default=2)
    ap.add_argument("--output", type=Path, help="also write the JSON summary here (e.g. bench/results/...json)")
    args = ap.parse_args()
    rows = []
    for latency in args.latency_ms:
        row = run(args.concurrency, latency, args.seconds, args.stations, args.limit, args.client_processes)
        rows.append(row)
        print(
            f"latency {latency:>5} ms  concurrency {args.concurrency}  {row['rps']:>8} req/s"
            + (
                f"  ({row['share_of_io_limit']:.0%} of the I/O limit {row['io_limit_rps']:.0f})"
                if row["io_limit_rps"]
                else ""
            )
            + f"  errors {row['errors']}",
            flush=True,
        )
    summary = json.dumps(
        {
            "command": " ".join(["bench/simulator_throughput.py", *sys.argv[1:]]),
            "cpus": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(),
            "runs": rows,
        },
        indent=2,
    )
    print(summary)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(summary + "\n")


if __name__ == "__main__":
    main()
