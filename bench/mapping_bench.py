"""CPU per reading of what the worker does between a decoded vendor answer and a queued payload,
this tree against another (a "before" tree): no network, so the few microseconds are not lost in
the noise of a whole cycle on a shared machine.

    .venv/bin/python bench/mapping_bench.py compare --before /path/to/before-worktree --rounds 7

Per answer, as `HttpJsonSource.fetch_batch` and `CycleRunner._send` do it: the two request times
written, every item's time read (with its zone and the previous time of its series) and its values
mapped to a `Reading`, every reading encoded by `transform.to_message`. The answers are the shipped
vendor configs' own shapes: the simulator's (one reading of 15 values, ISO 8601 `Z` times, what
`cpu_bench.py` times per station) and SolarEdge's storageData (one battery, 96 quarter-hours of 4
values, site-local `%Y-%m-%d %H:%M:%S` times in Europe/Berlin). Decoding is timed apart (`decode`),
stdlib `json.loads` against `orjson.loads` on the same bytes. Each tree is its own process, order
alternating per round; figures are process CPU (`time.process_time`) per reading, median of
per-round ratios.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parents[1]
CASES = ("simulator", "solaredge-storage")


def _answer(case: str) -> tuple[str, int, bytes, int]:
    """(vendor config, endpoint index, answer bytes, readings in it)."""
    if case == "simulator":
        telemetry = importlib.import_module("simulator.telemetry")
        item = telemetry.reading(telemetry.profile(42, "site-00001"), 1_717_243_200)
        body = {"site_id": "site-00001", "interval_s": 60, "until": item["timestamp"], "data": [item]}
        return "simulator", 0, json.dumps(body).encode(), 1
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 6, 1, tzinfo=UTC)
    telemetries = [
        {
            "timeStamp": (start + timedelta(minutes=15 * i)).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            "power": -1200.5 + i,
            "stateOfCharge": 40.0 + i / 10,
            "lifeTimeEnergyCharged": 123456.0 + i,
            "lifeTimeEnergyDischarged": 98765.0 + i,
        }
        for i in range(96)
    ]
    body = {"storageData": {"batteryCount": 1, "batteries": [{"serialNumber": "BAT-1", "telemetries": telemetries}]}}
    return "solaredge", 1, json.dumps(body).encode(), len(telemetries)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(args.root).resolve()))
    http_json = importlib.import_module("functions.sync_worker.source.http_json")
    mapping = importlib.import_module("functions.sync_worker.source.mapping")
    to_message = importlib.import_module("functions.sync_worker.transform").to_message
    vendor, index, raw, per_answer = _answer(args.case)
    cfg = http_json.load_vendor_config(vendor).readings[index]
    mapper = mapping.ReadingMapper(cfg)
    zone = ZoneInfo("Europe/Berlin") if cfg.station_zone else None
    since, until = datetime(2024, 5, 31, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC)
    body = json.loads(raw)

    def one_answer() -> int:
        http_json._format_time(since, cfg.time_format, zone)
        http_json._format_time(until, cfg.time_format, zone)
        previous: dict[object, datetime] = {}
        sent = 0
        for parent, item in mapper.flatten(mapper.items(body)):
            key = mapper.order_key(parent, item)
            ts = mapper.timestamp(item, zone, previous.get(key))
            previous[key] = ts
            to_message(mapper.reading("site-1", item, ts, parent))
            sent += 1
        return sent

    if one_answer() != per_answer:
        raise RuntimeError(f"{args.case}: mapped fewer readings than the answer has")
    answers = max(1, args.readings // per_answer)
    cpu0 = time.process_time()
    for _ in range(answers):
        one_answer()
    cpu = time.process_time() - cpu0
    return {"root": args.root, "case": args.case, "us_per_reading": round(cpu * 1e6 / (answers * per_answer), 3)}


def _decode(args: argparse.Namespace) -> dict[str, Any]:
    import orjson

    _, _, raw, per_answer = _answer(args.case)
    loads = orjson.loads if args.decoder == "orjson" else json.loads
    answers = max(1, args.readings // per_answer)
    cpu0 = time.process_time()
    for _ in range(answers):
        loads(raw)
    cpu = time.process_time() - cpu0
    return {"decoder": args.decoder, "case": args.case, "us_per_answer": round(cpu * 1e6 / answers, 3)}


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench.rounds import contender, median, median_ratio, orders

    trees = {"before": str(Path(args.before).resolve()), "after": str(HERE)}
    result: dict[str, Any] = {"bench": "mapping", "rounds": args.rounds, "readings": args.readings}
    for case in CASES:
        runs: dict[str, list[float]] = {name: [] for name in trees}
        for _, order in orders(list(trees), args.rounds):
            for name in order:
                run = contender(
                    Path(__file__), ["run", f"--root={trees[name]}", f"--case={case}", f"--readings={args.readings}"]
                )
                runs[name].append(run["us_per_reading"])
        decoded: dict[str, list[float]] = {"json": [], "orjson": []}
        for _, order in orders(list(decoded), args.rounds):
            for name in order:
                run = contender(
                    Path(__file__), ["decode", f"--decoder={name}", f"--case={case}", f"--readings={args.readings}"]
                )
                decoded[name].append(run["us_per_answer"])
        result[case] = {
            "us_per_reading": runs,
            "median_us_per_reading": {name: median(v) for name, v in runs.items()},
            "ratio_after_vs_before": round(median_ratio(runs["after"], runs["before"]), 3),
            "decode_us_per_answer": {name: median(v) for name, v in decoded.items()},
            "ratio_orjson_vs_json": round(median_ratio(decoded["orjson"], decoded["json"]), 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="one tree, one case, in this process (started by `compare`)")
    run.add_argument("--root", default=str(HERE))
    run.add_argument("--case", choices=CASES, default="simulator")
    decode = sub.add_parser("decode", help="one decoder, one case, in this process (started by `compare`)")
    decode.add_argument("--decoder", choices=("json", "orjson"), default="json")
    decode.add_argument("--case", choices=CASES, default="simulator")
    compare = sub.add_parser("compare")
    compare.add_argument("--before", required=True)
    compare.add_argument("--rounds", type=int, default=7)
    for p in (run, decode, compare):
        p.add_argument("--readings", type=int, default=100_000)
    args = parser.parse_args()
    handler = {"run": _run, "decode": _decode, "compare": _compare}[args.cmd]
    print(json.dumps(handler(args)), flush=True)


if __name__ == "__main__":
    main()
