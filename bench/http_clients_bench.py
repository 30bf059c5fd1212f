"""CPU per vendor request of candidate HTTP clients, each in its own process, alternating.

    .venv/bin/python bench/http_clients_bench.py --requests 3000 --inflight 32 --rounds 5 \
        [--extra-path /tmp/aiohttp-bench]

Every contender sends the same keep-alive GETs (the worker's readings call: API-key header, a
three-parameter query, a JSON body decoded) to the vendor simulator at 0 ms latency (its own
process, so its CPU is not counted), `--inflight` at a time: threads for the blocking clients, tasks
on one event loop for aiohttp and httpx's async client. The figure is process CPU seconds (user +
system, all threads) per request, and its median of per-round ratios to `requests`.

`c2c-pool` is the worker's own keep-alive pool (functions/sync_worker/source/http_pool.py),
`c2c-transport` the whole vendor call on it (`HttpTransport.request_json`: request built from the
header template, API-key auth, error rules, JSON decoded, first attempt outside tenacity) and
`c2c-source` what a station's readings call costs (`HttpJsonSource.fetch_readings` with the shipped
simulator config: the request filled from the endpoint's templates, the call, the answer mapped to
`Reading`s). `--before <tree>` adds `c2c-transport@before` and `c2c-source@before`: the same
contenders importing the worker from that tree (e.g. a worktree of main), alternating with these.

`requests`, `urllib3` and `http.client` are in the worker's locks; aiohttp and httpx are not, so
they are measured only when importable (`--extra-path` names a directory they were installed to
with `pip install --target`, kept out of the worker's environment).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "sim-key"
PARAMS = {"since": "2024-06-01T11:59:00Z", "until": "2024-06-01T12:00:00Z", "limit": "500"}
HEADERS = {"X-Api-Key": KEY, "Accept": "application/json"}
BLOCKING = ("requests", "urllib3", "http.client", "c2c-pool", "c2c-transport", "c2c-source")
#: The contenders `--before` runs again from the other tree.
BEFORE = ("c2c-transport", "c2c-source")
ASYNC = ("aiohttp", "httpx-async")


def _paths(n: int, stations: int) -> list[str]:
    return [f"/v1/sites/site-{i % stations + 1:05d}/telemetry?{urlencode(PARAMS)}" for i in range(n)]


def _threads(n_threads: int, paths: list[str], make: Callable[[], Callable[[str], object]]) -> None:
    work: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    for p in paths:
        work.put(p)
    for _ in range(n_threads):
        work.put(None)

    def lane() -> None:
        get = make()
        while (path := work.get()) is not None:
            get(path)

    lanes = [threading.Thread(target=lane) for _ in range(n_threads)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()


def run_blocking(name: str, base: str, paths: list[str], inflight: int) -> None:
    if name == "requests":
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_maxsize=inflight, pool_block=True, max_retries=0))

        def make() -> Callable[[str], object]:
            return lambda path: session.get(base + path, headers=HEADERS, timeout=(5, 30)).json()

    elif name == "urllib3":
        import urllib3

        pool = urllib3.PoolManager(maxsize=inflight, block=True)

        def make() -> Callable[[str], object]:
            return lambda path: json.loads(
                pool.request("GET", base + path, headers=HEADERS, retries=False, timeout=30).data
            )

    elif name == "c2c-pool":
        from functions.sync_worker.source.http_message import Headers
        from functions.sync_worker.source.http_pool import KeepAlivePool

        c2c_pool = KeepAlivePool(size=inflight, connect_timeout_s=5, read_timeout_s=30)
        wire = Headers(HEADERS)

        def make() -> Callable[[str], object]:
            return lambda path: json.loads(c2c_pool.send("GET", base + path, None, wire).content)

    elif name == "c2c-transport":
        from functions.sync_worker.source.auth import HeaderSecretAuth
        from functions.sync_worker.source.config import HttpConfig
        from functions.sync_worker.source.transport import HttpTransport

        transport = HttpTransport(HttpConfig(), pool_size=inflight)
        transport.auth = HeaderSecretAuth({"api_key": KEY}, "api_key", "X-Api-Key")

        def make() -> Callable[[str], object]:
            def get(path: str) -> object:
                route, _, _ = path.partition("?")
                return transport.request_json("GET", base + route, PARAMS)[0]

            return get

    elif name == "c2c-source":
        from datetime import UTC, datetime

        from functions.sync_worker.source.base import Station
        from functions.sync_worker.source.http_json import load_source

        source = load_source("simulator", base, {"api_key": KEY}, pool_size=inflight)
        since, until = (
            datetime.fromisoformat(PARAMS[k].replace("Z", "+00:00")).astimezone(UTC) for k in ("since", "until")
        )

        def make() -> Callable[[str], object]:
            def fetch(path: str) -> object:
                batch = source.fetch_readings(Station(path.split("/")[3]), since, until, int(PARAMS["limit"]))
                if len(batch) != 1:
                    raise RuntimeError(f"{path}: {len(batch)} readings, expected 1")
                return batch

            return fetch

    else:
        host = urlsplit(base)

        def make() -> Callable[[str], object]:
            conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)

            def get(path: str) -> object:
                conn.request("GET", path, headers=HEADERS)
                return json.loads(conn.getresponse().read())

            return get

    _threads(inflight, paths, make)


async def run_async(name: str, base: str, paths: list[str], inflight: int) -> None:
    work: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        work.put_nowait(p)
    if name == "aiohttp":
        aiohttp = importlib.import_module("aiohttp")  # not in the locks: see the module docstring

        async with aiohttp.ClientSession(
            base, headers=HEADERS, connector=aiohttp.TCPConnector(limit=inflight)
        ) as session:

            async def lane() -> None:
                while not work.empty():
                    async with session.get(work.get_nowait()) as resp:
                        await resp.json()

            await asyncio.gather(*(lane() for _ in range(inflight)))
    else:
        httpx = importlib.import_module("httpx")

        limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
        async with httpx.AsyncClient(base_url=base, headers=HEADERS, limits=limits) as client:

            async def lane() -> None:
                while not work.empty():
                    (await client.get(work.get_nowait())).json()

            await asyncio.gather(*(lane() for _ in range(inflight)))


def one(args: argparse.Namespace) -> dict:
    if args.root:
        sys.path.insert(0, str(Path(args.root).resolve()))  # the worker of that tree, not of this one
    paths = _paths(args.requests, args.stations)
    warm = _paths(200, args.stations)
    if args.client in BLOCKING:
        run_blocking(args.client, args.url, warm, args.inflight)
        cpu0, t0 = time.process_time(), time.perf_counter()
        run_blocking(args.client, args.url, paths, args.inflight)
    else:
        asyncio.run(run_async(args.client, args.url, warm, args.inflight))
        cpu0, t0 = time.process_time(), time.perf_counter()
        asyncio.run(run_async(args.client, args.url, paths, args.inflight))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"client": args.client, "cpu_ms_per_request": cpu * 1000 / args.requests, "req_per_s": args.requests / wall}


def compare(args: argparse.Namespace) -> dict:
    from bench.rounds import contender, median, median_ratio, orders
    from tests.support.simulator import SimulatorProcess

    names = [n for n in BLOCKING if not args.clients or n in args.clients.split(",")]
    if args.before:
        names += [f"{name}@before" for name in BEFORE]
    env = {}
    if args.extra_path:
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{args.extra_path}"
        sys.path.append(args.extra_path)
    for name in ASYNC if not args.clients else ():
        try:
            __import__(name.split("-")[0])
            names.append(name)
        except ImportError:
            print(f"{name}: not importable, not measured", file=sys.stderr)
    sim = SimulatorProcess(stations=args.stations, latency_ms=0).start(timeout=60)
    try:
        cpu: dict[str, list[float]] = {n: [] for n in names}
        rate: dict[str, list[float]] = {n: [] for n in names}
        load = [os.getloadavg()[0]]
        for _, order in orders(names, args.rounds):
            for name in order:
                client, _, before = name.partition("@")
                out = contender(
                    Path(__file__),
                    [
                        "--one",
                        client,
                        *([f"--root={args.before}"] if before else []),
                        f"--url={sim.url}",
                        f"--requests={args.requests}",
                        f"--inflight={args.inflight}",
                        f"--stations={args.stations}",
                    ],
                    env=env,
                )
                cpu[name].append(out["cpu_ms_per_request"])
                rate[name].append(out["req_per_s"])
        load.append(os.getloadavg()[0])
    finally:
        sim.stop()
    for name in BEFORE if args.before else ():
        ratios = [a / b for a, b in zip(cpu[name], cpu[f"{name}@before"], strict=True)]
        print(f"{name} vs before, per round: {[round(r, 3) for r in ratios]}", file=sys.stderr)
    return {
        "bench": "http-clients",
        "requests": args.requests,
        "inflight": args.inflight,
        "rounds": args.rounds,
        "median_cpu_ms_per_request": {n: round(median(v), 4) for n, v in cpu.items()},
        "cpu_ratio_vs_requests": {n: round(median_ratio(v, cpu["requests"]), 3) for n, v in cpu.items()}
        if "requests" in cpu
        else {},
        "cpu_ratio_vs_before": {
            n: round(median_ratio(cpu[n], cpu[f"{n}@before"]), 3) for n in (BEFORE if args.before else ())
        },
        "cpu_ms_per_request": {n: [round(x, 4) for x in v] for n, v in cpu.items()},
        "median_req_per_s": {n: round(median(v)) for n, v in rate.items()},
        "loadavg": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", choices=[*BLOCKING, *ASYNC], dest="client")
    parser.add_argument("--url")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--extra-path", help="directory holding aiohttp/httpx (pip install --target)")
    parser.add_argument("--clients", help="only these contenders, comma-separated (e.g. c2c-transport,c2c-source)")
    parser.add_argument("--before", help="a tree (e.g. a worktree of main) whose c2c contenders run too")
    parser.add_argument("--root", help=argparse.SUPPRESS)  # --one: import the worker from this tree
    args = parser.parse_args()
    print(json.dumps(one(args) if args.client else compare(args)), flush=True)


if __name__ == "__main__":
    main()
